"""Summaries of results TSVs: certified accuracy, average certified radius, plots.

Definitions (Cohen, Rosenfeld & Kolter, ICML 2019, section 4 and their
``analyze.py``; Zhai et al., "MACER", ICLR 2020, for the average certified
radius):

* certified accuracy at radius ``r``: the fraction of inputs whose prediction
  is correct *and* whose certified radius is ``>= r`` (an abstention is never
  correct);
* average certified radius (ACR): the mean over inputs of ``radius * correct``.

Both are averages of per-input certificates, each valid with probability
``>= 1 - alpha``; they are the field's standard summaries, not confidence
statements about the data set.  matplotlib is imported only by
:func:`plot_certified_accuracy` (Agg backend, no display needed).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .run.files import read_tsv

__all__ = ["Result", "load_results", "certified_accuracy", "average_certified_radius", "summarize",
           "check_radii", "summary_rows", "format_table", "plot_certified_accuracy", "DEFAULT_RADII"]

DEFAULT_RADII: Tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class Result:
    """One results TSV: its path, metadata and columns."""

    path: str
    config: Dict[str, Any]
    cols: Dict[str, np.ndarray]
    label: str = ""
    group: str = ""

    @property
    def size(self) -> int:
        return int(self.cols["radius"].shape[0])


def _method_label(config: Dict[str, Any], cols: Dict[str, np.ndarray], path: str) -> str:
    red = config.get("reduction")
    rad = config.get("radius")
    if red is None and "reduction" in cols and cols["reduction"].size:
        red = cols["reduction"][0]
    if rad is None and "radius_kind" in cols and cols["radius_kind"].size:
        rad = cols["radius_kind"][0]
    if red is None and rad is None:
        return os.path.splitext(os.path.basename(path))[0]
    return f"{red}/{rad}"


def _group_label(config: Dict[str, Any]) -> str:
    if not config:
        return ""
    return f"sigma={config.get('sigma')} n0={config.get('n0')} n={config.get('n')} alpha={config.get('alpha')}"


def load_results(paths: Sequence[str]) -> List[Result]:
    """Read results TSVs (this package's, or Cohen et al.'s plain ones)."""
    if not paths:
        raise ValueError("no results files given")
    out = []
    for p in paths:
        config, cols = read_tsv(p)
        out.append(Result(p, config, cols, _method_label(config, cols, p), _group_label(config)))
    return out


def _check_radius_arrays(radius, correct) -> Tuple[np.ndarray, np.ndarray]:
    r = np.asarray(radius, dtype=np.float64)
    c = np.asarray(correct)
    if r.shape != c.shape or r.ndim != 1:
        raise ValueError(f"radius and correct must be 1-D arrays of the same shape, got {r.shape} and {c.shape}")
    if np.any(np.isnan(r)) or np.any(r < 0):
        raise ValueError("radius must be non-negative numbers")
    return r, c.astype(bool)


def check_radii(r, name: str = "radii") -> np.ndarray:
    """Radii at which to report certified accuracy: finite numbers >= 0 (``ValueError`` naming the bad one).

    >>> check_radii([0.0, 0.5]).tolist()
    [0.0, 0.5]
    """
    rs = np.atleast_1d(np.asarray(r, dtype=np.float64))
    bad = rs[~(np.isfinite(rs) & (rs >= 0))]
    if bad.size:
        raise ValueError(f"{name} must be finite numbers >= 0, got {bad[0]!r}")
    if rs.ndim != 1 or rs.size == 0:
        raise ValueError(f"{name} must be a non-empty list of radii, got {r!r}")
    return rs


def certified_accuracy(radius, correct, r) -> np.ndarray:
    """Fraction of inputs with ``correct`` and ``radius >= r``, for each ``r`` (finite, >= 0).

    >>> certified_accuracy([0.0, 0.5, 1.0], [0, 1, 1], [0.0, 0.5, 0.75, 2.0]).tolist()
    [0.6666666666666666, 0.6666666666666666, 0.3333333333333333, 0.0]
    """
    rad, cor = _check_radius_arrays(radius, correct)
    rs = check_radii(r, "r")
    if rad.size == 0:
        return np.full(rs.shape, np.nan)
    ok = np.sort(rad[cor])
    # number of correct inputs with radius >= r
    cnt = ok.size - np.searchsorted(ok, rs, side="left")
    return cnt / rad.size


def average_certified_radius(radius, correct) -> float:
    """Mean of ``radius * correct`` (Zhai et al. 2020).

    >>> average_certified_radius([0.0, 0.5, 1.0], [0, 1, 1])
    0.5
    """
    rad, cor = _check_radius_arrays(radius, correct)
    return float(np.mean(np.where(cor, rad, 0.0))) if rad.size else float("nan")


def summarize(certificates, labels, radii: Sequence[float] = DEFAULT_RADII) -> Dict[str, Any]:
    """Certified accuracy and average certified radius of a list of certificates.

    Parameters
    ----------
    certificates : sequence of Certificate
        One per input (anything with ``prediction`` and ``radius``), e.g. the
        result of :func:`radius.pipeline.certify_dataset`.
    labels : sequence of int
        The inputs' true classes, in the same order.
    radii : sequence of float
        Radii (finite, >= 0) at which to report certified accuracy.

    Returns
    -------
    dict
        ``inputs`` (count), ``certified_accuracy`` (``{radius: fraction of
        inputs predicted correctly with a radius >= it}``), ``acr`` (mean of
        ``radius * correct``, Zhai et al. 2020) and ``abstain`` (fraction of
        abstentions).  Definitions as Cohen et al. (ICML 2019, section 4):
        averages of per-input certificates, each valid with probability
        ``>= 1 - alpha``; not a confidence statement about the data set.

    Examples
    --------
    >>> from types import SimpleNamespace as C
    >>> s = summarize([C(prediction=0, radius=0.5), C(prediction=1, radius=1.0), C(prediction=-1, radius=0.0)],
    ...               [0, 0, 1], radii=[0.0, 0.5])
    >>> s["certified_accuracy"], round(s["acr"], 4), round(s["abstain"], 4)
    ({0.0: 0.3333333333333333, 0.5: 0.3333333333333333}, 0.1667, 0.3333)
    """
    rs = check_radii(radii)
    certs = list(certificates)
    ys = np.asarray(labels)
    if ys.shape != (len(certs),):
        raise ValueError(f"labels must have one entry per certificate ({len(certs)}), got shape {ys.shape}")
    pred = np.array([int(c.prediction) for c in certs], dtype=np.int64)
    rad = np.array([float(c.radius) for c in certs], dtype=np.float64)
    cor = pred == ys.astype(np.int64)
    acc = certified_accuracy(rad, cor, rs)
    return {"inputs": len(certs), "certified_accuracy": {float(r): float(a) for r, a in zip(rs, acc)},
            "acr": average_certified_radius(rad, cor), "abstain": float(np.mean(pred < 0)) if certs else float("nan")}


def summary_rows(results: Sequence[Result], radii: Sequence[float] = DEFAULT_RADII) -> Tuple[List[str], List[List[str]]]:
    """Header and rows of the method comparison table (one row per results file, named in the ``file`` column)."""
    rs = check_radii(radii)
    header = ["file", "setting", "method", "inputs"] + [f"acc@{r:g}" for r in rs] + ["ACR", "abstain"]
    rows = []
    for res in results:
        rad, cor = res.cols["radius"], res.cols["correct"]
        acc = certified_accuracy(rad, cor, rs)
        abst = float(np.mean(res.cols["predict"] < 0)) if res.size else float("nan")
        rows.append([res.path, res.group, res.label, str(res.size)] + [f"{a:.3f}" for a in acc]
                    + [f"{average_certified_radius(rad, cor):.4f}", f"{abst:.3f}"])
    return header, rows


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], style: str = "text") -> str:
    """Render a table as aligned text, markdown or TSV."""
    if style not in ("text", "markdown", "tsv"):
        raise ValueError(f"style must be one of ('text', 'markdown', 'tsv'), got {style!r}")
    if style == "tsv":
        return "\n".join("\t".join(r) for r in [list(header), *rows]) + "\n"
    if style == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join("{:<%d}" % w if i < 3 else "{:>%d}" % w for i, w in enumerate(widths))
    lines = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines) + "\n"


_STYLES = {"Rmono": ":", "R2": "-", "R1": "--"}
_COLORS = {"cohen": "tab:blue", "bonferroni": "tab:orange", "cpm": "tab:green", "exact": "tab:red"}


def plot_certified_accuracy(results: Sequence[Result], path: str, title: Optional[str] = None) -> str:
    """PNG of certified accuracy against radius, one panel per setting, one line per method.

    Uses matplotlib's Agg backend (imported here, not at module import).
    Returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError("no results to plot")
    groups: Dict[str, List[Result]] = {}
    for r in results:
        groups.setdefault(r.group, []).append(r)
    k = len(groups)
    ncol = min(k, 2)
    nrow = (k + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.4 * ncol, 4.4 * nrow), squeeze=False)
    for ax, (g, rs) in zip(axes.ravel(), groups.items()):
        rmax = max([float(np.max(r.cols["radius"])) if r.size else 0.0 for r in rs] + [1e-3])
        grid = np.linspace(0.0, rmax * 1.05, 400)
        for r in rs:
            red, _, kind = r.label.partition("/")
            acc = certified_accuracy(r.cols["radius"], r.cols["correct"], grid)
            color = "black" if kind == "Rmono" else _COLORS.get(red)
            ax.plot(grid, acc, label=r.label, color=color, linestyle=_STYLES.get(kind, "-"), lw=1.6)
        ax.set_xlabel("radius (L2)")
        ax.set_ylabel("certified accuracy")
        ax.set_ylim(0, 1.0)
        ax.set_xlim(0, rmax * 1.05)
        ax.grid(alpha=0.3)
        ax.set_title(g or "results", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
    for ax in axes.ravel()[k:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
