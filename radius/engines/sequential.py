"""The sequential engine: anytime-valid sequential certification of a data set, as an ordinary run.

Every input runs the procedure of :mod:`radius.sequential` (its own
confidence sequence at level ``alpha``; theory §6).  The scheduler
(:func:`schedule`) keeps a FIFO of sampling requests (the ``n0`` selection
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
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..run import files
from ..run.progress import progress_bar
from ..run.spec import SEQ_ESTIMATION, SEQ_SELECTION, RunSpec, check_int, derive_seed
from ..run.writer import open_run
from ..sequential import SequentialRun, look_schedule, row_extra, run_one_input, sequence_state

__all__ = ["batch_model", "schedule", "run_sequential", "SeqResult", "certify_dataset_sequential"]


def batch_model(sampler) -> Optional[Tuple[Callable[[np.ndarray], np.ndarray], np.dtype]]:
    """The sampler's batch model ``inputs (b, *x.shape) -> logits (b, m)`` in input space, and its noise dtype.

    Uses public attributes only: ``logits(inputs)`` of the ONNX and torch samplers (which apply
    ``normalize``), ``logits_fn`` of :class:`backends.base.ArraySampler`.  Returns None when the sampler has
    neither; the scheduler then falls back to one input per call (``sampler.counts`` / ``sampler.scores``).
    """
    fn = getattr(sampler, "logits", None)
    if callable(fn):
        dtype = getattr(sampler, "input_dtype", None)
        if dtype is None:
            tdt = str(getattr(sampler, "dtype", "float32"))
            dtype = np.float64 if "64" in tdt else np.float32
        return fn, np.dtype(dtype)
    fn = getattr(sampler, "logits_fn", None)
    if callable(fn):
        return fn, np.dtype(np.float64)
    return None


@dataclass
class SeqResult:
    """One decided input: certificate, selection counts, estimation class counts, cumulative successes per look."""

    idx: int
    label: int
    cert: Any
    selection: np.ndarray
    estimation: Optional[np.ndarray]
    looks: Optional[List[int]]
    time: float

    def tsv_row(self) -> str:
        return files.format_row(self.idx, self.label, self.cert, self.time, self.selection, self.estimation,
                                row_extra(self.cert, self.looks))

    def counts_line(self) -> Optional[str]:
        if self.estimation is None:
            return None
        return files.counts_record(self.idx, self.label, self.selection, self.estimation, self.looks)


class _Job:
    __slots__ = ("i", "stage", "remaining", "size", "rng", "acc", "vals", "counts")

    def __init__(self, i, stage, size, rng):
        self.i, self.stage, self.remaining, self.size, self.rng = i, stage, size, size, rng
        self.acc = 0          # successes (or selection counts array)
        self.vals: List[np.ndarray] = []
        self.counts = None    # estimation class counts of this batch


def _calls(n: int, b: int) -> int:
    return -(-int(n) // int(b))


def schedule(sampler, spec: RunSpec, xs: np.ndarray, ys: np.ndarray, indices: Sequence[int],
             on_result: Callable[[SeqResult], None], model_batch_size: Optional[int] = None) -> Dict[str, Any]:
    """Run the inputs ``indices`` (in this order) of ``xs`` under a sequential ``spec``; call ``on_result``
    as each is decided (in decision order).  Returns ``{"passes", "calls", "batch", "mixed"}``."""
    seq = spec.sequential
    sigma, alpha, n0, seed = spec.sigma, spec.alpha, spec.n0, spec.seed
    B = check_int(model_batch_size if model_batch_size is not None
                  else int(getattr(sampler, "batch_size", None) or 1000), "model_batch_size")
    model = batch_model(sampler)
    soft = seq.soft
    table = seq.bound == "table"
    m = spec.num_classes
    passes = calls = 0
    if model is None and table:
        raise ValueError("bound='table' reads every sample's label, so it needs a sampler with a batch model "
                         "(logits or logits_fn), which this one lacks")
    if model is None:  # per-input fallback: no mixing possible
        sb = int(getattr(sampler, "batch_size", B))
        plan = look_schedule(seq.batch_size, seq.growth, seq.max_n)
        for i in indices:
            t0 = time.perf_counter()
            cert, sel, est, looks = run_one_input(sampler, xs[i], sigma=sigma, alpha=alpha, n0=n0, seq=seq,
                                                  seed=seed, idx=i)
            passes += cert.forward_passes
            sizes = np.diff(np.concatenate([[0], plan[:cert.looks]]))
            calls += _calls(n0, sb) + int(sum(_calls(int(v), sb) for v in sizes))
            on_result(SeqResult(int(i), int(ys[i]), cert, sel, est, looks, time.perf_counter() - t0))
        return {"passes": passes, "calls": calls, "batch": sb, "mixed": False}

    fn, dtype = model
    simplex = spec.simplex
    selections: Dict[int, np.ndarray] = {}
    states: Dict[int, Any] = {}
    est_counts: Dict[int, np.ndarray] = {}
    started: Dict[int, float] = {}
    spent: Dict[int, float] = {}
    queue: List[_Job] = []   # FIFO of requests with rows still to draw
    head = 0
    todo = list(indices)
    nxt = 0
    while True:
        parts = []            # (job, start_row, rows)
        rows = []
        room = B
        t_batch = time.perf_counter()
        while room > 0:
            while head < len(queue) and queue[head].remaining == 0:
                head += 1
            if head >= len(queue):
                if nxt >= len(todo):
                    break
                i = todo[nxt]
                nxt += 1
                started[i] = time.perf_counter()
                spent[i] = 0.0
                queue.append(_Job(i, -1, n0, np.random.default_rng(derive_seed(seed, i, SEQ_SELECTION, 0))))
                continue
            job = queue[head]
            take = min(room, job.remaining)
            x = np.asarray(xs[job.i], dtype=dtype)
            noise = job.rng.standard_normal((take, *x.shape), dtype=dtype)
            noise *= dtype.type(sigma)
            noise += x
            parts.append((job, B - room, take))
            rows.append(noise)
            job.remaining -= take
            room -= take
        if not parts:
            break
        if head > 4096:  # drop finished requests from the front of the queue
            queue = queue[head:]
            head = 0
        batch = np.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]
        logits = np.asarray(fn(batch))
        calls += 1
        passes += len(batch)
        if logits.ndim != 2 or logits.shape[0] != len(batch):
            raise ValueError(f"the sampler's batch model returned shape {logits.shape} for {len(batch)} inputs")
        if m is None:
            m = logits.shape[1]
        am = np.argmax(logits, axis=1)
        probs = None
        if soft and simplex != "hard":
            from backends.simplex import apply_simplex

            probs = apply_simplex(logits, simplex, spec.temperature)
        finished = []
        share = (time.perf_counter() - t_batch) / len(batch)
        for job, start, take in parts:
            sl = slice(start, start + take)
            spent[job.i] += share * take
            if job.stage < 0:
                job.acc = job.acc + np.bincount(am[sl], minlength=logits.shape[1])
            elif table:  # per-sample reading: stop at the deciding row; the job's undrawn rows are cancelled
                st = states[job.i]
                st.feed(am[sl])
                if st.stopped_by:
                    job.remaining = 0
            else:
                top = states[job.i].top
                c = np.bincount(am[sl], minlength=logits.shape[1])
                est_counts[job.i] = est_counts[job.i] + c
                if soft:
                    job.vals.append(probs[sl, top].astype(np.float64) if probs is not None
                                    else (am[sl] == top).astype(np.float64))
                else:
                    job.acc += int(c[top])
            if job.remaining == 0:
                finished.append(job)
        for job in finished:
            i = job.i
            t0 = time.perf_counter()
            if job.stage < 0:
                selections[i] = np.asarray(job.acc, dtype=np.int64)
                states[i] = sequence_state(int(np.argmax(selections[i])), sigma, alpha, seq, selections[i])
                est_counts[i] = np.zeros(logits.shape[1], dtype=np.int64)
                done = False
            elif table:
                done = bool(states[i].stopped_by)
            else:
                st = states[i]
                done = st.update(values=np.concatenate(job.vals)) if soft else st.update(successes=job.acc,
                                                                                          size=job.size)
            spent[i] += time.perf_counter() - t0
            if done:
                st = states.pop(i)
                kind = "scores" if soft and simplex != "hard" else "counts"
                cert = st.certificate(selections[i], n0, int(m), kind)
                if table:
                    est_counts.pop(i)
                    est, looks = st.counts.copy(), st.encoded_looks()
                else:
                    est, looks = est_counts.pop(i), (None if soft else list(st.k_looks))
                on_result(SeqResult(int(i), int(ys[i]), cert, selections.pop(i), est, looks, spent.pop(i)))
                started.pop(i, None)
            elif table:  # request j of input i: seed (seed, i, SEQ_ESTIMATION, j)
                st = states[i]
                j = st.requests
                st.requests += 1
                queue.append(_Job(i, j, st.next_size_of(j),
                                  np.random.default_rng(derive_seed(seed, i, SEQ_ESTIMATION, j))))
            else:
                st = states[i]
                queue.append(_Job(i, st.looks, st.next_size(),
                                  np.random.default_rng(derive_seed(seed, i, SEQ_ESTIMATION, st.looks))))
    return {"passes": passes, "calls": calls, "batch": B, "mixed": True}


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
