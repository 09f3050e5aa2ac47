"""The per-input step of a fixed-n run, its recomputation on resume, and the overlap of bounds with sampling.

One input ``idx`` (Cohen, Rosenfeld & Kolter, ICML 2019, ``certify.py``):
draw ``n0`` selection and ``n`` estimation samples with the seeds
:func:`radius.run.spec.input_seeds` ``(seed, idx)`` (:func:`sample_one`), then
turn them into a :class:`radius.certificate.Certificate` (:func:`bound_one`).
Because the samples depend only on ``(seed, idx)``, any engine that runs the
step for every index, anywhere and in any order, and writes the rows in index
order, writes the same file (except the ``time`` column).

:class:`Overlap` computes input ``i``'s bound in a worker thread while input
``i + 1`` is sampled (the model runtime releases the GIL while it runs; so do
NumPy's large array operations), so the bound leaves the critical path.  The
certificate is computed from the same counts by the same function: it is
identical to the sequential order's.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from . import files
from .spec import RunSpec

__all__ = ["InputResult", "Samples", "sample_one", "bound_one", "certify_one", "check_sampler_counts",
           "tsv_row_checker", "Overlap"]


@dataclass
class Samples:
    """The samples of one input: count vectors (counts mode) or score matrices (scores mode)."""

    idx: int
    label: int
    selection: Any
    estimation: Any
    time: float
    sampled: bool = True


@dataclass
class InputResult:
    """What one input's work produces (small: a certificate and two count vectors).

    ``selection``/``estimation`` are ``None`` in ``"scores"`` mode; ``time`` is
    the wall-clock seconds spent on the input (sampling plus bound).
    """

    idx: int
    label: int
    cert: Any
    selection: Optional[np.ndarray]
    estimation: Optional[np.ndarray]
    time: float
    sampled: bool = True

    def tsv_row(self) -> str:
        """The results-TSV line (:func:`radius.run.files.format_row`)."""
        return files.format_row(self.idx, self.label, self.cert, self.time, self.selection, self.estimation)

    def counts_line(self) -> str:
        """The raw-counts-log line (:func:`radius.run.files.counts_record`)."""
        return files.counts_record(self.idx, self.label, self.selection, self.estimation)


def check_sampler_counts(c, m: int, total: int, what: str, idx: int) -> np.ndarray:
    """A count vector returned by a sampler: ``m`` non-negative integers summing to ``total``."""
    arr = np.asarray(c)
    if arr.shape != (m,) or arr.dtype.kind not in "iu" or int(arr.sum()) != total or np.any(arr < 0):
        raise ValueError(f"sampler returned invalid {what} counts for input {idx}: expected {m} non-negative "
                         f"integers summing to {total}, got shape {arr.shape}, dtype {arr.dtype}, "
                         f"sum {arr.sum() if arr.size else 0}")
    return arr.astype(np.int64)


def sample_one(sampler, x, label: int, idx: int, spec: RunSpec,
               counts: Optional[Tuple[Sequence[int], Sequence[int]]] = None) -> Samples:
    """Draw input ``idx``'s samples (or take ``counts`` from a counts log: no sampling)."""
    t0 = time.perf_counter()
    if spec.mode == "counts":
        if counts is not None:
            return Samples(int(idx), int(label), np.asarray(counts[0], dtype=np.int64),
                           np.asarray(counts[1], dtype=np.int64), time.perf_counter() - t0, False)
        m = int(spec.num_classes if spec.num_classes is not None else sampler.num_classes)
        s_sel, s_est = spec.input_seeds(idx)
        sel = check_sampler_counts(sampler.counts(x, spec.n0, s_sel), m, spec.n0, "selection", idx)
        est = check_sampler_counts(sampler.counts(x, spec.n, s_est), m, spec.n, "estimation", idx)
        return Samples(int(idx), int(label), sel, est, time.perf_counter() - t0)
    s_sel, s_est = spec.input_seeds(idx)
    return Samples(int(idx), int(label), sampler.scores(x, spec.n0, s_sel), sampler.scores(x, spec.n, s_est),
                   time.perf_counter() - t0)


def bound_one(s: Samples, spec: RunSpec) -> InputResult:
    """Turn one input's samples into its certificate (:func:`radius.certificate.certify`)."""
    from ..certificate import certify

    t0 = time.perf_counter()
    cert = certify(s.selection, s.estimation, **spec.cert_kwargs())
    keep = spec.mode == "counts"
    return InputResult(s.idx, s.label, cert, s.selection if keep else None, s.estimation if keep else None,
                       s.time + time.perf_counter() - t0, s.sampled)


def certify_one(sampler, x, label: int, idx: int, spec: RunSpec,
                counts: Optional[Tuple[Sequence[int], Sequence[int]]] = None) -> InputResult:
    """Certify input ``idx``: :func:`sample_one` then :func:`bound_one`.

    Examples
    --------
    >>> from backends.base import ArraySampler
    >>> s = ArraySampler(lambda z: np.stack([z[:, 0], -z[:, 0]], axis=1), 2, sigma=0.5)
    >>> spec = RunSpec(sigma=0.5, n=2000, radius="Rmono", reduction="cohen", num_classes=2)
    >>> r = certify_one(s, np.array([1.0, 0.0]), 0, 3, spec)
    >>> r.idx, r.cert.prediction, int(r.estimation.sum())
    (3, 0, 2000)
    """
    return bound_one(sample_one(sampler, x, label, idx, spec, counts), spec)


def tsv_row_checker(spec: RunSpec, labels: np.ndarray) -> Callable[[Dict[str, Any], str, int], Any]:
    """The resume check of a fixed-n TSV row: recompute it from its stored counts; return its certificate.

    The row's label must be the data's; its counts must be valid for the spec
    (integers, one per class, sums ``n0`` and ``n``); the row written from the
    recomputed certificate (with the stored ``time``) must equal the stored
    line.  In scores mode no samples are stored: the row is checked for its
    format and label only, and ``None`` is returned.
    """
    m = spec.num_classes

    def check(row: Dict[str, Any], line: str, i: int):
        lab = row["label"]
        if i < len(labels) and lab != int(labels[i]):
            raise ValueError(f"label {lab!r} differs from the data's label {int(labels[i])} of input {i}")
        if spec.mode != "counts":
            if row["selection_counts"] is not None or row["estimation_counts"] is not None:
                raise ValueError("a scores-mode row must not hold counts")
            return None
        if row["selection_counts"] is None or row["estimation_counts"] is None:
            raise ValueError("a counts-mode row must hold selection_counts and estimation_counts")
        sel = files.check_counts(row["selection_counts"].tolist(), "selection", m, spec.n0)
        est = files.check_counts(row["estimation_counts"].tolist(), "estimation", m, spec.n)
        res = bound_one(Samples(i, int(lab), sel, est, 0.0), spec)
        stored = line.split("\t")
        fields = res.tsv_row().rstrip("\n").split("\t")
        fields[5] = stored[5]
        if fields != stored:
            bad = next(k for k, (a, b) in enumerate(zip(fields, stored)) if a != b)
            raise ValueError(f"column {files.COLUMNS[bad]!r} holds {stored[bad]!r}, but recomputing the row from "
                             f"its stored counts gives {fields[bad]!r}")
        return res

    return check


class Overlap:
    """Compute each input's bound in one worker thread while the next input is sampled.

    ``submit(samples)`` starts the bound of ``samples`` and returns the result
    of the previous submission (or None); ``drain()`` returns the last one.
    Results come back in submission order, so rows are written in index
    order.  With ``enabled=False`` the bound runs inline (same results).
    """

    def __init__(self, spec: RunSpec, enabled: bool = True):
        self.spec = spec
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bound") if enabled else None
        self.pending = None

    def submit(self, s: Samples) -> Optional[InputResult]:
        prev = self.drain()
        if self.pool is None:
            self.pending = bound_one(s, self.spec)
        else:
            self.pending = self.pool.submit(bound_one, s, self.spec)
        return prev

    def drain(self) -> Optional[InputResult]:
        p, self.pending = self.pending, None
        if p is None or isinstance(p, InputResult):
            return p
        return p.result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
