"""Progress bars: tqdm on stderr, the one progress bar of the project."""
from __future__ import annotations

__all__ = ["progress_bar"]


def progress_bar(total: int, done: int = 0, enabled: bool = True, label: str = "certify"):
    """A :class:`tqdm.tqdm` bar over ``total`` inputs starting at ``done`` (disabled: a silent one).

    >>> bar = progress_bar(3, 1, enabled=False)
    >>> bar.disable, bar.total
    (True, 3)
    >>> bar.close()
    """
    from tqdm import tqdm

    return tqdm(total=int(total), initial=int(done), disable=not enabled, desc=label, unit="input",
                dynamic_ncols=True, leave=True)
