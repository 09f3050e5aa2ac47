"""Certify a whole data set: per-input seeds, progress, resume, recertify.

:func:`certify_dataset` runs the loop of Cohen, Rosenfeld & Kolter (ICML 2019,
``certify.py``): for every input draw ``n0`` *selection* samples and ``n``
*estimation* samples, turn them into a certificate with
:func:`radius.certificate.certify`, append one row to the results TSV and flush.
Selection and estimation samples come from two different per-input seeds
(:func:`input_seeds`), so the top class and the buckets chosen on the
selection samples are independent of the samples the bound uses (SPEC 1).

Resume: the samples of input ``i`` depend only on ``(seed, i)``, never on the
inputs before it, so rerunning the same command after a crash continues after
the last complete row and produces the same file as an uninterrupted run
(except the ``time`` column); see :mod:`radius.results`.

:func:`recertify` recomputes certificates from the raw-counts log under any
other method, without the model.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import results as res
from .radii import _check_sigma

__all__ = ["certify_dataset", "recertify", "input_seeds", "Progress"]

#: Purpose tags mixed into the per-input seed (arbitrary distinct constants).
_SELECTION, _ESTIMATION, _PROBE = 0x5E1EC7, 0xE5717A7E, 0x9B0BE

_MODES = ("counts", "scores")


def input_seeds(seed: int, idx: int) -> Tuple[int, int]:
    """Selection and estimation seeds of input ``idx`` in a run with ``seed``.

    Derived with :class:`numpy.random.SeedSequence` from ``(seed, idx, purpose)``
    with two different purpose tags, so the two noise streams are independent
    of each other and of every other input's; each seed is a 63-bit
    non-negative integer (accepted by NumPy and ``torch.Generator``).

    >>> s, e = input_seeds(0, 7)
    >>> s != e and (s, e) == input_seeds(0, 7) and input_seeds(0, 8) != (s, e)
    True
    """
    out = []
    for purpose in (_SELECTION, _ESTIMATION):
        hi, lo = np.random.SeedSequence([int(seed), int(idx), purpose]).generate_state(2, np.uint32)
        out.append((int(hi) << 31) | (int(lo) >> 1))
    return out[0], out[1]


class Progress:
    """A minimal progress bar on stderr (no dependency): count, bar, rate, ETA."""

    def __init__(self, total: int, done: int = 0, enabled: bool = True, stream=None, label: str = "certify",
                 min_interval: float = 0.2):
        self.total, self.done, self.start_done = int(total), int(done), int(done)
        self.enabled = bool(enabled)
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.min_interval = min_interval
        self.t0 = time.perf_counter()
        self._last = -math.inf
        self._draw(force=True)

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        frac = self.done / self.total if self.total else 1.0
        width = 24
        bar = "#" * int(round(width * frac)) + "-" * (width - int(round(width * frac)))
        el = now - self.t0
        new = self.done - self.start_done
        rate = new / el if el > 0 and new > 0 else float("nan")
        eta = (self.total - self.done) / rate if rate == rate and rate > 0 else float("nan")
        eta_s = "--:--" if eta != eta else f"{int(eta) // 60:02d}:{int(eta) % 60:02d}"
        rate_s = "-" if rate != rate else f"{rate:.1f}/s"
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {100 * frac:3.0f}% {rate_s} eta {eta_s} ")
        self.stream.flush()

    def update(self, k: int = 1) -> None:
        self.done += k
        self._draw(force=self.done >= self.total)

    def close(self) -> None:
        if self.enabled:
            if self.done < self.total or self.total == 0:
                self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------

def _check_pos_int(v, name: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={v!r}")
    return int(v)


def _check_data(inputs, labels, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    x = np.asarray(inputs)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"inputs must be an array of shape (N, ...) with N >= 1, got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"inputs must be numeric, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError("inputs hold a non-finite value")
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have shape (N,) = ({x.shape[0]},) to match inputs of shape {x.shape}, "
                         f"got shape {y.shape}")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    bad = (y < 0) | (y >= num_classes)
    if np.any(bad):
        raise ValueError(f"labels must lie in [0, {num_classes}) (the model's classes), got {y[bad][:5].tolist()}")
    return x, y.astype(np.int64)


def _cert_kwargs(sigma, alpha, radius, reduction, bound, lipschitz, output_range) -> Dict[str, Any]:
    return dict(sigma=sigma, alpha=alpha, radius=radius, reduction=reduction, bound=bound,
                lipschitz=lipschitz, output_range=output_range)


def _cert_config(kw: Dict[str, Any]) -> Dict[str, Any]:
    """The certification part of a TSV's configuration (JSON-safe plain values)."""
    def plain(v):
        return v if v is None or isinstance(v, str) else (v.__name__ if callable(v) else float(v))

    return {"alpha": float(kw["alpha"]), "radius": kw["radius"], "reduction": kw["reduction"],
            "bound": plain(kw["bound"]), "lipschitz": plain(kw["lipschitz"]),
            "output_range": plain(kw["output_range"])}


def _dry_run(kw: Dict[str, Any], num_classes: int, mode: str) -> None:
    """Validate method names and parameters before any sampling (errors come from ``certify``).

    Uses tiny dummy samples (n0 = 1, n = 2) so that the check costs next to nothing
    whatever the method.
    """
    from .certificate import certify

    m = max(int(num_classes), 2)
    if mode == "counts":
        sel = np.zeros(m, dtype=np.int64)
        sel[0] = 1
        est = np.zeros(m, dtype=np.int64)
        est[0] = 2
    else:
        sel = np.zeros((1, m))
        sel[:, 0] = 1.0
        est = np.zeros((2, m))
        est[:, 0] = 1.0
    certify(sel, est, **kw)


def _check_counts(c, m: int, total: int, what: str, idx: int) -> np.ndarray:
    arr = np.asarray(c)
    if arr.shape != (m,) or arr.dtype.kind not in "iu" or int(arr.sum()) != total or np.any(arr < 0):
        raise ValueError(f"sampler returned invalid {what} counts for input {idx}: expected {m} non-negative "
                         f"integers summing to {total}, got shape {arr.shape}, dtype {arr.dtype}, "
                         f"sum {arr.sum() if arr.size else 0}")
    return arr.astype(np.int64)


def _opt_int(v):
    return None if v is None else int(v)


def _model_id(sampler, inputs: np.ndarray, model_id: Optional[str]) -> str:
    if model_id is not None:
        return str(model_id)
    h = getattr(sampler, "model_hash", None)
    if h:
        return str(h)
    # no identity available: fingerprint the model by its counts on a fixed probe
    probe = sampler.counts(inputs[0], 256, np.random.SeedSequence([_PROBE]).generate_state(1)[0].item())
    return f"{type(sampler).__name__}:probe:{res.array_hash(np.asarray(probe, dtype=np.int64))}"


# ---------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------

def certify_dataset(sampler, inputs, labels, *, sigma: float, alpha: float = 0.001, n0: int = 100,
                    n: int = 10_000, radius: str = "R2", reduction: str = "exact", bound: str = "betting",
                    lipschitz: Optional[float] = None, output_range: Optional[float] = None, seed: int = 0,
                    out: Optional[str] = None, counts_log: Optional[str] = None, limit: Optional[int] = None,
                    progress: bool = True, mode: str = "counts", model_id: Optional[str] = None) -> list:
    """Certify every input of a data set with the smoothed classifier of ``sampler``.

    Parameters
    ----------
    sampler : backends.base.Sampler
        ``counts(x, n, seed)`` (and ``scores`` for ``mode="scores"``); its
        ``sigma`` must equal ``sigma``.
    inputs : array, shape (N, ...)
        The inputs, in the space where the noise is added.
    labels : array of int, shape (N,)
        True classes in ``[0, sampler.num_classes)``.
    sigma : float
        Noise level (> 0), the sampler's.
    alpha : float
        Failure probability of *each* certificate (default 0.001).
    n0, n : int
        Selection and estimation sample sizes per input.
    radius, reduction, bound, lipschitz, output_range
        Passed to :func:`radius.certificate.certify`.
    seed : int
        Run seed; input ``i`` uses the seeds :func:`input_seeds` ``(seed, i)``.
    out : str, optional
        Results TSV (appended and flushed per input; resumed if it exists with
        the same configuration, refused if it holds another run's results).
    counts_log : str, optional
        Raw-counts log (JSON lines, flushed per input), for :func:`recertify`.
        Inputs already in the log are not sampled again.
    limit : int, optional
        Certify only the first ``limit`` inputs (not part of the configuration:
        a later run with a larger limit extends the same files).
    progress : bool
        Show a progress bar on stderr.
    mode : {"counts", "scores"}
        Hard smoothing from count vectors (default), or soft smoothing from
        ``(n, m)`` score matrices (no counts log in this mode).
    model_id : str, optional
        Identity of the model recorded in the metadata (the CLI passes the
        model file's SHA-256).  Defaults to ``sampler.model_hash`` if present,
        else a fingerprint of the sampler's counts on a fixed probe.

    Returns
    -------
    list of Certificate
        One per certified input, in order.  Rows kept from an earlier run are
        recomputed from their stored counts (in ``"scores"`` mode they are
        ``None``).

    Notes
    -----
    Each certificate holds with probability ``>= 1 - alpha`` on its own (SPEC
    2); the certified accuracy of a data set is an average of such events, as
    in Cohen et al.  Choosing a method after looking at the results is not
    covered.

    Examples
    --------
    >>> from backends.base import ArraySampler
    >>> w = np.array([1.0, -1.0])
    >>> s = ArraySampler(lambda z: np.stack([z @ w, -(z @ w)], axis=1), 2, sigma=0.5)
    >>> certs = certify_dataset(s, np.array([[1.0, 0.0]]), np.array([0]), sigma=0.5, n=2000,
    ...                         reduction="cohen", radius="Rmono", progress=False)
    >>> certs[0].prediction, certs[0].radius > 0
    (0, True)
    """
    from .engines.local import certify_one, open_run

    sigma = _check_sigma(sigma)
    s_sigma = getattr(sampler, "sigma", None)
    if s_sigma is not None and not math.isclose(float(s_sigma), sigma, rel_tol=0, abs_tol=0):
        raise ValueError(f"sigma={sigma!r} differs from the sampler's noise level {s_sigma!r}; "
                         "a certificate is only valid for the noise actually added")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if mode == "scores" and counts_log is not None:
        raise ValueError("counts_log is only available in mode='counts' (score matrices are not logged)")
    n0 = _check_pos_int(n0, "n0")
    n = _check_pos_int(n, "n")
    seed = _check_pos_int(seed, "seed", minimum=0)
    m = getattr(sampler, "num_classes", None)
    if m is None:
        raise ValueError("sampler must have a num_classes attribute")
    m = int(m)
    x, y = _check_data(inputs, labels, m)
    N = x.shape[0]
    if limit is not None:
        limit = _check_pos_int(limit, "limit")
        if limit > N:
            raise ValueError(f"limit={limit} exceeds the number of inputs ({N})")
        N = limit
    kw = _cert_kwargs(sigma, alpha, radius, reduction, bound, lipschitz, output_range)
    _dry_run(kw, m, mode)

    sampling = None
    if out is not None or counts_log is not None:
        sampling = {
            "model": _model_id(sampler, x, model_id), "data": res.array_hash(x, y), "sigma": sigma,
            "n0": n0, "n": n, "seed": seed, "batch_size": _opt_int(getattr(sampler, "batch_size", None)),
            "mode": mode, "num_classes": m,
        }
        if mode == "scores":  # the simplex map shapes the score matrices (counts only see the argmax)
            sampling["simplex"] = getattr(sampler, "simplex", None)
            t = getattr(sampler, "temperature", None)
            sampling["temperature"] = None if t is None else float(t)
    # open or resume both files (rows kept from an earlier run are re-certified from their stored counts)
    run = open_run(out, counts_log, sampling, _cert_config(kw), y, N, kw)
    try:
        certs = list(run.kept_certs)
        bar = Progress(N, run.start, enabled=progress)
        for i in range(run.start, N):
            r = certify_one(sampler, x[i], y[i], i, seed=seed, n0=n0, n=n, cert_kwargs=kw, mode=mode,
                            num_classes=m, counts=run.known_counts(i))  # logged counts are reused
            run.write(r)
            certs.append(r.cert)
            bar.update()
        bar.close()
    finally:
        run.close()
    return certs


def recertify(counts_log: str, *, radius: str = "R2", reduction: str = "exact", alpha: float = 0.001,
              bound: str = "betting", lipschitz: Optional[float] = None, output_range: Optional[float] = None,
              out: Optional[str] = None, limit: Optional[int] = None, progress: bool = False) -> list:
    """Recompute certificates from a raw-counts log under another method.

    The model is not touched: the selection and estimation counts of every
    input come from the log written by :func:`certify_dataset`; sigma, n0 and
    n come from its metadata.  With the same method and alpha the result (and
    the TSV written to ``out``, apart from the ``time`` column) equals that of
    the direct run.

    Parameters
    ----------
    counts_log : str
        Path of the log.
    radius, reduction, alpha, bound, lipschitz, output_range
        As in :func:`radius.certificate.certify`.
    out : str, optional
        Write a results TSV (same format and metadata as a direct run, so it
        can be compared or resumed).
    limit : int, optional
        Only the first ``limit`` logged inputs.

    Returns
    -------
    list of Certificate

    Notes
    -----
    Every method's certificates are valid at level ``alpha`` on their own.
    Reporting, per input, the best of several methods computed on the same
    counts is *not*: it needs alpha split over the methods (SPEC 7).
    """
    from .certificate import certify

    config, recs = res.read_counts_log(counts_log)
    if limit is not None:
        limit = _check_pos_int(limit, "limit")
        recs = recs[:limit]
    sigma = float(config["sigma"])
    kw = _cert_kwargs(sigma, alpha, radius, reduction, bound, lipschitz, output_range)
    m = int(config.get("num_classes") or (len(recs[0]["estimation"]) if recs else 2))
    _dry_run(kw, m, "counts")
    tsv = None
    kept = 0
    if out is not None:
        cfg = dict(config)
        cfg.update(_cert_config(kw))
        tsv, rows = res.open_tsv(out, cfg)
        kept = len(rows)
    certs = []
    bar = Progress(len(recs), 0, enabled=progress, label="recertify")
    try:
        for i, rec in enumerate(recs):
            t0 = time.perf_counter()
            sel = np.asarray(rec["selection"], dtype=np.int64)
            est = np.asarray(rec["estimation"], dtype=np.int64)
            cert = certify(sel, est, **kw)
            if tsv is not None and i >= kept:
                tsv.write(res.format_row(i, rec["label"], cert, time.perf_counter() - t0, sel, est))
                tsv.flush()
            certs.append(cert)
            bar.update()
        bar.close()
    finally:
        if tsv is not None:
            tsv.close()
    return certs
