"""The sequential engine: anytime-valid sequential certification of a data set, as an ordinary run.

Every input runs the procedure of :mod:`radius.sequential` (its own
confidence sequence at level ``alpha``; theory §6).  The scheduler
(:func:`radius.sequential.schedule`) keeps a FIFO of sampling requests (the ``n0`` selection
copies of an input, or its next estimation batch) and packs the noisy copies
of several inputs into one forward pass of ``model_batch_size`` rows, taking
new inputs whenever the active ones cannot fill the batch, so throughput per
forward pass does not drop as inputs finish.

The noise of input ``i`` comes from its own generators, seeded by
:func:`radius.run.spec.derive_seed` ``(seed, i, purpose, batch)``; it does not
depend on which other inputs share a forward pass.  So a run is an ordinary
run (:func:`run_sequential`): rows are appended in index order and flushed as
soon as they are decided (inputs decided early wait for the ones before them),
with the spec's metadata (model and data identity); a counts log records each
input's selection counts, estimation class counts and cumulative successes
per look, so :func:`radius.pipeline.recertify` replays it and ``report``
reads the TSV; rerunning after a kill (SIGKILL included) resumes after the
last complete row and writes the same file except the ``time`` column.  The
Ray engine runs :func:`schedule` on chunks of inputs in its actors.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import numpy as np

from ..run.progress import progress_bar
from ..run.spec import RunSpec
from ..run.writer import open_run
from ..sequential import SeqResult, SequentialRun, batch_model, schedule

#: ``batch_model``, ``schedule`` and ``SeqResult`` live in :mod:`radius.sequential` (re-exported here).
__all__ = ["batch_model", "schedule", "run_sequential", "SeqResult", "certify_dataset_sequential"]


def run_sequential(spec: RunSpec, sampler, inputs: Any, labels: Any = None, *, out: Optional[str] = None,
                   counts_log: Optional[str] = None, limit: Optional[int] = None, progress: bool = True,
                   model_batch_size: Optional[int] = None) -> SequentialRun:
    """Sequentially certify a data set under ``spec`` (with ``spec.sequential`` set) as an ordinary run.

    Files, resume and validation as :func:`radius.engines.local.run_local`;
    the TSV has the extra columns :data:`radius.run.files.SEQUENTIAL_COLUMNS`
    and the counts log the cumulative successes per look (``bound="betting"``:
    no counts log, and kept rows are checked for their format and label only).
    The returned run's totals (forward passes, calls) count this call's work.
    """
    from .local import prepare

    if spec.sequential is None:
        raise ValueError("run_sequential takes a spec with sequential settings")
    t0 = time.perf_counter()
    spec, x, y, N = prepare(spec, sampler, inputs, labels, limit=limit,
                            identify=out is not None or counts_log is not None)
    run = open_run(spec, out, counts_log, y, N)
    certs: List[Any] = list(run.kept_certs)
    bar = progress_bar(N, run.start, enabled=progress, label="sequential")
    pending: Dict[int, SeqResult] = {}

    def on_result(r: SeqResult) -> None:
        pending[r.idx] = r
        while run.next_idx in pending:
            q = pending.pop(run.next_idx)
            run.write(q.idx, q.tsv_row(), q.counts_line())
            certs.append(q.cert)
            bar.update()

    try:
        st = schedule(sampler, spec, x, y, range(run.start, N), on_result, model_batch_size)
        bar.close()
    finally:
        run.close()
    fill = st["passes"] / (st["calls"] * st["batch"]) if st["calls"] else float("nan")
    return SequentialRun(certs, y[:N], st["passes"], st["calls"], fill, time.perf_counter() - t0, st["batch"],
                         st["mixed"])


def certify_dataset_sequential(sampler, inputs, labels=None, *, sigma, alpha: float = 0.001, radii=None,
                               tolerance=None, max_n: int, n0: int = 100, batch_size: int = 200,
                               growth: float = 2.0, seed: int = 0, bound: str = "mixture", prior=None,
                               betting_method: str = "hedged", futility_z: Optional[float] = 2.0,
                               final_share: Optional[float] = 0.5, lower_share: float = 0.9,
                               radius_kind: str = "Rmono", model_batch_size: Optional[int] = None,
                               out: Optional[str] = None,
                               counts_log: Optional[str] = None, limit: Optional[int] = None,
                               progress: bool = False, model_id: Any = None) -> SequentialRun:
    """Sequentially certify a data set, keeping every model batch full by mixing undecided inputs.

    The keyword arguments build a :class:`radius.run.spec.RunSpec` with a
    :class:`radius.run.spec.SequentialSpec` (see :func:`radius.sequential.certify_sequential`
    for their meaning) and run it with :func:`run_sequential`.

    Examples
    --------
    >>> from backends.base import ArraySampler
    >>> w = np.array([1.0, 0.0])
    >>> s = ArraySampler(lambda z: np.stack([-(z @ w), z @ w], axis=1), 2, sigma=0.5)
    >>> xs = np.array([[1.0, 0.0], [0.2, 0.0], [-1.5, 3.0]])
    >>> run = certify_dataset_sequential(s, xs, [1, 1, 0], sigma=0.5, radii=[0.25], max_n=20_000,
    ...                                  model_batch_size=512)
    >>> [c.decisions[0.25] for c in run.certificates], run.fill_rate > 0.5
    (['certified', 'futile', 'certified'], True)
    """
    from ..run.spec import SEQUENTIAL_PRIOR, SequentialSpec

    if isinstance(radii, str) or (radii is not None and np.size(radii) == 0):
        raise ValueError(f"radii must be a non-empty 1-D sequence of numbers > 0, got radii={radii!r}")
    seq = SequentialSpec(radii=() if radii is None else tuple(np.atleast_1d(np.asarray(radii, float)).tolist()),
                         tolerance=tolerance, max_n=max_n, bound=bound, batch_size=batch_size, growth=growth,
                         futility_z=futility_z, final_share=final_share, lower_share=lower_share,
                         prior=SEQUENTIAL_PRIOR if prior is None else prior, betting_method=betting_method,
                         radius_kind=radius_kind)
    simplex = getattr(sampler, "simplex", None) if seq.soft else None
    t = getattr(sampler, "temperature", None)
    spec = RunSpec(sigma=sigma, alpha=alpha, n0=n0, seed=seed, sequential=seq, simplex=simplex,
                   temperature=float(t) if simplex == "softmax" and t is not None else None, model=model_id)
    return run_sequential(spec, sampler, inputs, labels, out=out, counts_log=counts_log, limit=limit,
                          progress=progress, model_batch_size=model_batch_size)
