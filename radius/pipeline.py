"""The Python API of a run: :func:`certify_dataset` and :func:`recertify`.

:func:`certify_dataset` builds a :class:`radius.run.spec.RunSpec` from its
keyword arguments and runs it with the local engine
(:func:`radius.engines.local.run_local`): for every input draw ``n0``
*selection* and ``n`` *estimation* samples from the seeds
:func:`radius.run.spec.input_seeds` ``(seed, i)``, certify, append one row to
the results TSV and flush (Cohen, Rosenfeld & Kolter, ICML 2019,
``certify.py``).  Selection and estimation samples come from different seeds,
so the top class chosen on the selection samples is independent of the
samples the bound uses (theory §1).

Resume: the samples of input ``i`` depend only on ``(seed, i)``, so rerunning
the same call after a crash continues after the last complete row and writes
the same file as an uninterrupted run (except the ``time`` column); see
:mod:`radius.run.files`.  :func:`recertify` recomputes certificates from a
raw-counts log under any other method, without the model.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import numpy as np

from .run import files
from .run.progress import progress_bar
from .run.spec import RunSpec, check_int, input_seeds
from .run.step import Samples, bound_one
from .run.writer import dry_run, open_run

__all__ = ["certify_dataset", "recertify", "input_seeds"]


def _sampler_noise(sampler) -> Dict[str, Any]:
    """The spec's noise fields of an in-memory sampler: sound (grid, clip) if it draws sound noise, else float."""
    sound = getattr(sampler, "sound", None)
    if sound is None:
        return {"noise": "float"}
    d = sound.describe()
    return {"noise": "sound", "grid": d["grid"], "clip": tuple(d["clip"])}


def certify_dataset(sampler, inputs, labels=None, *, sigma: float, alpha: float = 0.001, n0: int = 100,
                    n: int = 10_000, radius: str = "R2", reduction: str = "exact", bound: Any = "betting",
                    lipschitz: Optional[float] = None, output_range: Optional[float] = None, seed: int = 0,
                    out: Optional[str] = None, counts_log: Optional[str] = None, limit: Optional[int] = None,
                    progress: bool = True, mode: str = "counts", model_id: Any = None,
                    overlap: bool = True) -> list:
    """Certify every input of a data set with the smoothed classifier of ``sampler``.

    Parameters
    ----------
    sampler : backends.base.Sampler
        ``counts(x, n, seed)`` (and ``scores`` for ``mode="scores"``); its
        ``sigma`` must equal ``sigma``; in scores mode its ``simplex`` and
        ``temperature`` are recorded in the metadata.  A sampler that draws
        sound noise (``sampler.sound``, :class:`backends.noise.SoundNoise`)
        runs a ``noise="sound"`` spec with its grid and clip: the radius then
        accounts for the threshold-rounding bound ``sampler.sound.tv_bound(dim)``
        (theory §7), which the exact reduction with R2 cannot (refused).
    inputs : array_like, shape (N, ...), or iterable of (x, y)
        The inputs (in the space where the noise is added); with
        ``labels=None``, an iterable of ``(x, y)`` pairs.
    labels : array_like of int, shape (N,), optional
        True classes in ``[0, sampler.num_classes)``.
    sigma : float
        Noise level (> 0), the sampler's.
    alpha : float
        Failure probability of *each* certificate (default 0.001).
    n0, n : int
        Selection and estimation sample sizes per input.
    radius, reduction, bound, lipschitz, output_range
        The method, as in :func:`radius.certificate.certify` (``bound`` only in
        scores mode; ``lipschitz``/``output_range`` only with ``R1``).
    seed : int
        Run seed; input ``i`` uses the seeds :func:`input_seeds` ``(seed, i)``.
    out, counts_log : str, optional
        Results TSV and raw-counts log (appended and flushed per input; resumed
        if they exist with the same metadata, refused if they hold another
        run's results; every kept row is recomputed from its stored counts).
    limit : int, optional
        Certify only the first ``limit`` inputs.
    progress : bool
        A tqdm progress bar on stderr.
    mode : {"counts", "scores"}
        Hard smoothing from count vectors (default), or soft smoothing from
        ``(n, m)`` score matrices (no counts log in this mode).
    model_id : str or dict, optional
        Identity of the model in the metadata (the CLI passes the loader's
        SHA-256).  Default: ``sampler.model_hash``, else a fingerprint of the
        sampler's counts on a fixed probe.
    overlap : bool
        Compute each input's bound while the next one is sampled (same certificates).

    Returns
    -------
    list of Certificate
        One per input, in order (kept rows recomputed from their counts; ``None``
        for kept rows in scores mode).

    Notes
    -----
    Each certificate holds with probability ``>= 1 - alpha`` on its own
    (theory §2); the certified accuracy of a data set is an average of such
    events, as in Cohen et al.  Choosing a method after looking at the
    results is not covered.

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
    from .engines.local import run_local

    simplex = temperature = None
    if mode == "scores":
        simplex = getattr(sampler, "simplex", None)
        t = getattr(sampler, "temperature", None)
        temperature = None if t is None or simplex != "softmax" else float(t)
    spec = RunSpec(sigma=sigma, alpha=alpha, n0=n0, n=n, seed=seed, mode=mode, simplex=simplex,
                   temperature=temperature, radius=radius, reduction=reduction,
                   bound=bound, lipschitz=lipschitz, output_range=output_range, model=model_id,
                   **_sampler_noise(sampler))
    return run_local(spec, sampler, inputs, labels, out=out, counts_log=counts_log, limit=limit,
                     progress=progress, overlap=overlap)


def recertify(counts_log: str, *, radius: Optional[str] = None, reduction: Optional[str] = None,
              alpha: float = 0.001, bound: Any = None, lipschitz: Optional[float] = None,
              output_range: Optional[float] = None, out: Optional[str] = None, limit: Optional[int] = None,
              progress: bool = False) -> list:
    """Recompute certificates from a raw-counts log under another method.

    The model is not touched: the selection and estimation counts of every
    input come from the log (validated line by line:
    :func:`radius.run.files.read_counts_log`); sigma, n0 and n come from its
    metadata.  With the same method and alpha the result (and the TSV written
    to ``out``, apart from the ``time`` column) equals the direct run's.

    A sequential run's log is *replayed* under its own confidence sequence
    (:func:`radius.sequential.replay_row`): its estimation sample size was
    chosen by the stopping rule, so a fixed-n bound on those counts would not
    be valid (optional stopping); a method given for such a log is refused.

    Parameters
    ----------
    counts_log : str
        Path of the log.
    radius, reduction, alpha, bound, lipschitz, output_range
        As in :func:`radius.certificate.certify` (defaults R2, exact).
    out : str, optional
        Write a results TSV (same format and metadata as a direct run).
    limit : int, optional
        Only the first ``limit`` logged inputs.

    Returns
    -------
    list of Certificate

    Notes
    -----
    Every method's certificates are valid at level ``alpha`` on their own.
    Reporting, per input, the best of several methods computed on the same
    counts is *not*: it needs alpha split over the methods (theory §7).
    """
    meta, recs = files.read_counts_log(counts_log)
    if limit is not None:
        limit = check_int(limit, "limit")
        recs = recs[:limit]
    labels = np.array([r["label"] for r in recs], dtype=np.int64)
    if meta.get("sequential") is not None:
        return _replay_sequential(counts_log, meta, recs, labels, alpha=alpha, out=out, progress=progress,
                                  method=dict(radius=radius, reduction=reduction, bound=bound,
                                              lipschitz=lipschitz, output_range=output_range))
    try:
        spec = RunSpec.from_counts_metadata(meta, alpha=alpha, radius=radius, reduction=reduction, bound=bound,
                                            lipschitz=lipschitz, output_range=output_range)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{counts_log}: {e}") from None
    dry_run(spec)
    run = open_run(spec, out, None, labels, len(recs)) if out is not None else None
    certs: List[Any] = []
    bar = progress_bar(len(recs), 0, enabled=progress, label="recertify")
    try:
        for i, rec in enumerate(recs):
            r = bound_one(Samples(i, rec["label"], np.asarray(rec["selection"], dtype=np.int64),
                                  np.asarray(rec["estimation"], dtype=np.int64), 0.0, False), spec)
            if run is not None and i >= run.start:
                run.write_result(r)
            certs.append(r.cert)
            bar.update()
        bar.close()
    finally:
        if run is not None:
            run.close()
    return certs


def _replay_sequential(path, meta, recs, labels, *, alpha, out, progress, method) -> list:
    from .run.spec import SequentialSpec
    from .sequential import replay_record

    given = {k: v for k, v in method.items() if v is not None}
    if given:
        raise ValueError(f"{path}: is a sequential run's counts log; its estimation sample sizes were chosen by "
                         f"the stopping rule (optional stopping), so a fixed-n method ({', '.join(f'{k}={v!r}' for k, v in given.items())}) "
                         "on its counts would not be valid; it can only be replayed under its own confidence "
                         "sequence (give no method)")
    seq = SequentialSpec(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["sequential"].items()})
    spec = RunSpec(sigma=meta["sigma"], alpha=alpha, n0=meta["n0"], seed=meta["seed"], noise=meta.get("noise", "float"),
                   backend=meta.get("backend"), model=meta.get("model"), data=meta.get("data"),
                   num_classes=meta["num_classes"], batch_size=meta.get("batch_size"), sequential=seq)
    run = open_run(spec, out, None, labels, len(recs)) if out is not None else None
    certs = []
    bar = progress_bar(len(recs), 0, enabled=progress, label="replay")
    try:
        for i, rec in enumerate(recs):
            t0 = time.perf_counter()
            try:
                cert, extra = replay_record(spec, rec)
            except ValueError as e:
                raise ValueError(f"{path}, line {i + 2}: {e}") from None
            if run is not None and i >= run.start:
                run.write(i, files.format_row(i, rec["label"], cert, time.perf_counter() - t0, rec["selection"],
                                              rec["estimation"], extra), None)
            certs.append(cert)
            bar.update()
        bar.close()
    finally:
        if run is not None:
            run.close()
    return certs
