"""Data sets for a run: arrays, iterables of ``(x, y)`` pairs, ``.npz`` and ``.npy`` files, and their identity."""
from __future__ import annotations

import os
from typing import Any, Iterable, Optional, Tuple

import numpy as np

from .files import FileError, array_hash

__all__ = ["as_dataset", "check_labels", "load_data", "data_identity"]


def as_dataset(inputs: Any, labels: Any = None) -> Tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` arrays from any array-like of inputs plus labels, or from an iterable of ``(x, y)`` pairs.

    Inputs must be finite numbers of one shape; labels integers (floats that
    are whole numbers are accepted; anything else is refused, never rounded).

    >>> x, y = as_dataset([([0.0, 1.0], 1), ([2.0, 3.0], 0)])
    >>> x.shape, y.tolist()
    ((2, 2), [1, 0])
    >>> as_dataset(np.zeros((2, 3)), [0, 1])[1].dtype
    dtype('int64')
    """
    if labels is None:
        if isinstance(inputs, np.ndarray):
            raise ValueError("labels are missing: give inputs and labels, or an iterable of (x, y) pairs")
        xs, ys = [], []
        for k, item in enumerate(inputs):
            try:
                xi, yi = item
            except (TypeError, ValueError):
                raise ValueError(f"item {k} of the data is not an (x, y) pair") from None
            xs.append(np.asarray(xi))
            ys.append(yi)
        if not xs:
            raise ValueError("the data set is empty")
        shapes = {a.shape for a in xs}
        if len(shapes) != 1:
            raise ValueError(f"the inputs have different shapes {sorted(shapes)[:3]}")
        x, y = np.stack(xs), np.asarray(ys)
    else:
        x, y = np.asarray(inputs), np.asarray(labels)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"inputs must be an array of shape (N, ...) with N >= 1, got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"inputs must be numeric, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x.reshape(x.shape[0], -1)))[0]
        raise ValueError(f"inputs hold a non-finite value (input {int(bad[0])})")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have shape (N,) = ({x.shape[0]},) to match inputs of shape {x.shape}, "
                         f"got shape {y.shape}")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    return x, y.astype(np.int64)


def check_labels(y: np.ndarray, num_classes: int) -> None:
    """``ValueError`` unless every label lies in ``[0, num_classes)``."""
    bad = (y < 0) | (y >= num_classes)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(f"labels must lie in [0, {num_classes}) (the model's classes), got {int(y[i])} "
                         f"(input {i})")


def data_identity(x: np.ndarray, y: np.ndarray) -> str:
    """The data's identity in the metadata: SHA-256 (16 hex digits) of inputs and labels."""
    return array_hash(x, y)


def _load_npy(path: str, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileError(f"{path}: no such file ({what})") from None
    except IsADirectoryError:
        raise FileError(f"{path}: is a directory ({what})") from None
    except (ValueError, OSError) as e:
        raise FileError(f"{path}: not a readable .npy/.npz file ({what}): {e}") from None


def load_data(data: str, *, split: str = "test", x_key: str = "x", y_key: str = "y",
              labels: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray, str]:
    """``(x, y, name)`` for ``--data``.

    ``"digits"`` is the bundled data set (``split`` train or test); an
    ``.npz`` file holds the inputs under ``x_key`` and the labels under
    ``y_key``; an ``.npy`` file holds the inputs and ``labels`` names the
    ``.npy`` file of the labels.  Errors name the file.
    """
    if data == "digits":
        if labels is not None:
            raise ValueError("--labels applies to an .npy --data file, not to the bundled digits")
        if split not in ("train", "test"):
            raise ValueError(f"--split must be train or test, got {split!r}")
        from backends.models import load_digits_split

        x, y = load_digits_split(split)
        return x, y, f"digits-{split}"
    low = data.lower()
    name = os.path.splitext(os.path.basename(data))[0]
    if low.endswith(".npz"):
        if labels is not None:
            raise ValueError("--labels applies to an .npy --data file; an .npz holds its labels (--y-key)")
        z = _load_npy(data, "--data")
        with z:
            missing = [k for k in (x_key, y_key) if k not in z.files]
            if missing:
                raise FileError(f"{data}: has no array {missing[0]!r} (it holds {z.files}); choose the keys with "
                                "--x-key and --y-key")
            try:
                x, y = z[x_key], z[y_key]
            except ValueError as e:
                raise FileError(f"{data}: cannot read its arrays: {e}") from None
    elif low.endswith(".npy"):
        if labels is None:
            raise ValueError(f"--data {data!r} is an .npy file of inputs: give the labels' .npy file with --labels")
        x = _load_npy(data, "--data")
        y = _load_npy(labels, "--labels")
    else:
        raise ValueError(f"--data must be 'digits', an .npz file or an .npy file, got {data!r}")
    try:
        x, y = as_dataset(x, y)
    except ValueError as e:
        raise FileError(f"{data}: {e}") from None
    return x, y, name
