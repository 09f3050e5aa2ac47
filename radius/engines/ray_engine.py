"""Certify a data set on a Ray cluster: one sampler per actor, results written by the driver.

:func:`certify_dataset_ray` is :func:`radius.pipeline.certify_dataset` spread
over Ray actors (Moritz et al., "Ray: A Distributed Framework for Emerging AI
Applications", OSDI 2018).  We do not schedule anything ourselves beyond a work
queue: Ray places the actors (one per GPU with ``gpus_per_worker=1``, on any
node of the cluster), restarts the ones that die, and ships inputs and results.

How a run works
---------------
1. The driver starts ``workers`` actors.  Each builds its own sampler *once*
   from the model file and the run specification
   (:func:`radius.run.model.open_sampler`: the one model loader, with the
   spec's simplex, temperature, noise and backend -- never a pickled sampler)
   and reports the model's identity, its number of classes and its batch
   size; all actors must agree.
2. The driver opens (or resumes) the results TSV and the raw-counts log with
   the same metadata as the local engine (:func:`radius.run.writer.open_run`),
   so a run started by one engine can be resumed by the other.
3. The input indices not yet done form a work queue; each actor holds at most
   ``queue_depth`` tasks of ``chunk_size`` inputs at a time.  An actor
   certifies input ``i`` with the per-input seeds
   :func:`radius.run.spec.input_seeds` ``(seed, i)``
   (:func:`radius.run.step.certify_one`), so the certificate does not
   depend on which actor computed it or when.  A sequential spec runs the
   sequential scheduler (:func:`radius.sequential.schedule`) on each
   task's inputs; their noise depends only on ``(seed, i)`` as well.
4. Results stream back in completion order; the driver keeps those that
   arrive early and appends rows **in index order**, flushing after each, with
   the same progress bar as the local engine.  The file therefore equals the
   local engine's byte for byte except the ``time`` column.

Fault tolerance
---------------
* An actor that dies (killed, OOM, node lost) is restarted by Ray (up to
  ``max_restarts`` times); the inputs of its unfinished tasks go back to the
  front of the queue and are redone by whichever actor is free.  A result for
  an index already received is dropped, so no row is lost or written twice.
* The driver can be killed at any moment (SIGKILL included): rows are appended
  in order and flushed, so rerunning the same call resumes after the last
  complete row (results received but not yet written -- at most the in-flight
  window -- are recomputed, identically).  Its actors die with it (they are not
  detached).

Ray is imported only when :func:`certify_dataset_ray` runs.
"""
from __future__ import annotations

import collections
import math
import os
import pickle
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..run.data import as_dataset, check_labels, data_identity
from ..run.files import FileError, TSV_FORMAT, LOG_FORMAT, parse_meta
from ..run.model import default_model, model_identity, noise_fields, open_sampler
from ..run.progress import progress_bar
from ..run.spec import RunSpec, check_int
from ..run.step import certify_one
from ..run.writer import dry_run, open_run

__all__ = ["run_ray", "certify_dataset_ray", "code_fingerprint", "precheck_files"]

#: A task whose actor died is redone; an input whose tasks killed their actor this often is reported.
_MAX_ATTEMPTS = 4
#: Consecutive failed pings after which an actor counts as dead for good (restarts exhausted).
_MAX_PINGS = 3
_OBJECT_STORE = 200 * 2 ** 20


# ---------------------------------------------------------------------------
# the actor (a plain class; wrapped by ray.remote only when the engine runs)
# ---------------------------------------------------------------------------

class _Worker:
    """Holds one sampler; certifies the inputs it is sent."""

    def __init__(self, model: str, spec: RunSpec, batch_size: int, loader: Mapping[str, Any], threads: int,
                 gpus: float = 0.0):
        self.created = time.perf_counter()
        self.spec = spec
        kw = {k: v for k, v in loader.items() if k != "device"}
        if str(model).lower().endswith(".onnx") and spec.backend in (None, "onnx"):
            from backends.export import ort_session_options

            so = ort_session_options()  # no spinning threads between runs (the one helper) ...
            so.intra_op_num_threads, so.inter_op_num_threads = int(threads), 1  # ... on the actor's CPU share
            kw["session_options"] = so
        else:
            import torch

            torch.set_num_threads(int(threads))
        device = loader.get("device") or ("cuda" if gpus else None)
        self.sampler, self.identity = open_sampler(model, spec, batch_size=batch_size, device=device, **kw)
        self.pid = os.getpid()
        self.started = time.perf_counter()

    def info(self, dim: int = 1) -> Dict[str, Any]:
        """Model identity, classes, batch size, sigma and noise fields as the driver records them.

        ``dim`` is the number of coordinates of one input (for the sound noise's
        ``noise_tv``, :func:`radius.run.model.noise_fields`).  Also warms up:
        imports the certificate code and compiles its Numba kernels on a tiny
        dummy sample, so the first real input is not slower.
        """
        s = self.sampler
        t0 = time.perf_counter()
        noise = noise_fields(s, self.spec, dim)  # a ValueError here is the actor's failure to start
        try:
            dry_run(self.spec.with_model(num_classes=int(s.num_classes), **noise))
        except ValueError:
            pass  # the driver runs the same check and reports the error
        bs = getattr(s, "batch_size", None)
        return {"model_id": self.identity, "num_classes": int(s.num_classes),
                "batch_size": None if bs is None else int(bs), "sigma": getattr(s, "sigma", None),
                "pid": self.pid, "node": os.uname().nodename, "load_s": self.started - self.created,
                "warmup_s": time.perf_counter() - t0, "code": code_fingerprint(), "noise": noise}

    def ping(self) -> int:
        """Answers once the actor is alive (after a restart, once its sampler is rebuilt)."""
        return self.pid

    def certify(self, spec: RunSpec, items: Sequence[Tuple[int, Any, int, Any]]) -> Tuple[int, list]:
        """Certify ``items`` = ``[(idx, x, label, known_counts_or_None), ...]``; returns ``(pid, results)``."""
        if spec.sequential is not None:
            from .sequential import schedule

            out: list = []
            xs = {i: np.asarray(x) for i, x, _, _ in items}
            ys = {i: lab for i, _, lab, _ in items}
            schedule(self.sampler, spec, xs, ys, [i for i, _, _, _ in items], out.append, spec.batch_size)
            return self.pid, out
        return self.pid, [certify_one(self.sampler, np.asarray(x), label, idx, spec, counts)
                          for idx, x, label, counts in items]


# ---------------------------------------------------------------------------
# connecting
# ---------------------------------------------------------------------------

def _connect(address: Optional[str], num_cpus: int, ray_init_kwargs: Optional[Mapping[str, Any]]) -> bool:
    """Initialise Ray if needed; returns whether this call started it (and must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    kw: Dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address is None:
        kw.update(num_cpus=num_cpus, object_store_memory=_OBJECT_STORE)
    else:
        kw["address"] = address
    kw.update(ray_init_kwargs or {})
    ray.init(**kw)
    return True


def code_fingerprint(roots: Optional[Sequence[str]] = None) -> str:
    """SHA-256 (16 hex digits) of the Python sources of ``confbounds``, ``backends`` and ``radius`` on disk.

    The driver and every worker compute it; different values mean the nodes run
    different versions of the code, whose certificates may differ (in the last
    digits of a bound, or more), so the run is refused.
    """
    import hashlib
    import importlib.util

    if roots is None:  # located without importing them
        roots = [list(importlib.util.find_spec(p).submodule_search_locations)[0]
                 for p in ("confbounds", "backends", "radius")]
    h = hashlib.sha256()
    for root in roots:
        base = os.path.basename(os.path.normpath(root))
        files = []
        for d, dirs, names in os.walk(root):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            files += [os.path.join(d, f) for f in names if f.endswith(".py")]
        for f in sorted(files):
            h.update((base + "/" + os.path.relpath(f, root).replace(os.sep, "/")).encode() + b"\0")
            with open(f, "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()[:16]


def _ray_connected() -> bool:
    """Whether this process is already connected to a Ray cluster (without importing ray)."""
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def _nbytes(obj) -> int:
    return len(pickle.dumps(obj, protocol=5))


# ---------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------

def precheck_files(spec: RunSpec, out: Optional[str], counts_log: Optional[str]) -> None:
    """Refuse early an existing TSV / counts log of another run, on the fields known before any model is loaded.

    :func:`radius.run.writer.open_run` checks the full metadata once the
    actors report the model's identity; this check compares the fields the
    driver already knows so that a wrong command fails in milliseconds.  An
    unreadable or foreign file is left to ``open_run`` to report.
    """
    known = {k: v for k, v in spec.metadata().items()
             if k not in ("model", "data", "num_classes", "batch_size", "noise_tv", "noise_detail")}
    samp = {k: v for k, v in spec.sampling_metadata().items() if k in known}
    for path, kind, cfg, what in ((counts_log, LOG_FORMAT, samp, "--counts-log"), (out, TSV_FORMAT, known, "--out")):
        if path is None:
            continue
        try:
            with open(path, "r", encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        first, _, rest = text.partition("\n")
        if not _ or not rest.strip() or (kind == TSV_FORMAT and not rest.partition("\n")[2].strip()):
            continue  # empty or preamble only: open_run starts afresh
        try:
            old = parse_meta(first, kind, path)
        except ValueError:
            continue
        import json

        new = json.loads(json.dumps(cfg))
        diffs = [f"{k}: file has {old.get(k)!r}, this run has {new[k]!r}" for k in sorted(new) if old.get(k) != new[k]]
        if diffs:
            raise FileError(f"{path}: holds results of another run ({'; '.join(diffs)}); refusing to mix them. "
                            f"Choose another {what} path or delete the file to start afresh.")


def run_ray(spec: RunSpec, model: Optional[str], inputs, labels=None, *, out: Optional[str] = None,
            counts_log: Optional[str] = None, limit: Optional[int] = None, progress: bool = True,
            workers: int = 2, gpus_per_worker: float = 0, cpus_per_worker: float = 1,
            address: Optional[str] = None, batch_size: int = 1000, chunk_size: int = 1, queue_depth: int = 2,
            max_restarts: int = 3, loader: Optional[Mapping[str, Any]] = None,
            runtime_env: Optional[Mapping[str, Any]] = None, ray_init_kwargs: Optional[Mapping[str, Any]] = None,
            stats: Optional[Dict[str, Any]] = None,
            on_result: Optional[Callable[[int, list], None]] = None) -> list:
    """Run ``spec`` over a data set on Ray actors; same files and results as the local engines.

    Parameters
    ----------
    spec : RunSpec
        Fixed-n or sequential.  ``spec.model`` is filled in from the loader's identity of ``model``.
    model : str or None
        Model file (any format :mod:`backends.loading` reads; it must exist at
        this path on every node), or None for the shipped digits model of ``sigma``.
    inputs, labels, out, counts_log, limit, progress
        As in :func:`radius.engines.local.run_local`.
    workers : int
        Number of actors (one sampler each).
    gpus_per_worker, cpus_per_worker : float
        Ray resources of each actor (``gpus_per_worker=1``: one actor per GPU).
    address : str, optional
        Ray cluster to join (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:10001"``).
        ``None``: the Ray session this process is already connected to, else a
        new local cluster (``num_cpus = ceil(workers * cpus_per_worker)``,
        200 MB object store) that is shut down at the end.
    batch_size : int
        Noisy copies per model call.
    chunk_size : int
        Inputs per Ray task (1: best load balance; more amortises Ray's per-task
        overhead, and lets a sequential task mix more inputs per forward pass).
    queue_depth : int
        Tasks in flight per actor.
    max_restarts : int
        Restarts of each actor by Ray (-1: unlimited).
    loader : dict, optional
        Extra arguments of the model loader (``input_shape``, ``num_classes``,
        ``normalize``, ``factory``, ``device``).
    runtime_env, ray_init_kwargs : dict, optional
        Ray runtime environment of the actors; extra arguments of ``ray.init``.
    stats : dict, optional
        Filled with counters of the run (``startup_s``, ``wall_s``,
        ``compute_s``, ``tasks``, ``actor_failures``, ``resubmitted``,
        ``duplicates``, ``bytes_sent``, ``bytes_received``, ``receive_times``,
        ``pids``, ``task_pids``, ``work_s``, ``driver_cpu_s``, ``inputs``).
    on_result : callable, optional
        ``on_result(results_received, actor_handles)`` after every task result.

    Returns
    -------
    list of Certificate
        One per input, in index order.

    Notes
    -----
    Validity is the local engine's: each certificate holds with probability
    ``>= 1 - alpha`` on its own, and the samples of input ``i`` depend only on
    ``(seed, i)`` -- not on the actor, the order, restarts or resumes.
    """
    t_start = time.perf_counter()
    workers = check_int(workers, "workers")
    chunk_size = check_int(chunk_size, "chunk_size")
    queue_depth = check_int(queue_depth, "queue_depth")
    batch_size = check_int(batch_size, "batch_size")
    for name, v in (("gpus_per_worker", gpus_per_worker), ("cpus_per_worker", cpus_per_worker)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a finite number >= 0, got {name}={v!r}")
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < -1:
        raise ValueError(f"max_restarts must be an integer >= -1, got max_restarts={max_restarts!r}")
    if model is not None and not isinstance(model, (str, os.PathLike)):
        raise ValueError(f"model must be a file path or None, got {type(model).__name__} (a sampler object is "
                         "not shipped to the actors: give the model file, which every node loads)")
    path = default_model(spec.sigma) if model is None else os.fspath(model)
    x_all, y_all = as_dataset(inputs, labels)
    N = x_all.shape[0]
    if limit is not None:
        limit = check_int(limit, "limit")
        if limit > N:
            raise ValueError(f"limit={limit} exceeds the number of inputs ({N})")
        N = limit
    if address is None and not _ray_connected() and not os.path.exists(path):
        raise ValueError(f"model file {path!r} does not exist")
    driver_id = model_identity(path) if os.path.exists(path) else None
    code = code_fingerprint()
    dry_run(spec)  # method names and parameters (again with the model's classes below)
    precheck_files(spec, out, counts_log)  # a wrong command fails before workers start

    import ray
    from ray.exceptions import RayActorError, RayTaskError

    st: Dict[str, Any] = stats if stats is not None else {}
    st.update(tasks=0, actor_failures=0, resubmitted=0, duplicates=0, bytes_sent=0, bytes_received=0,
              compute_s=0.0, receive_times=[], pids=set(), task_pids=[], workers=workers)
    started = _connect(address, max(1, math.ceil(workers * cpus_per_worker)), ray_init_kwargs)
    actors: list = []
    files = None
    try:
        opts: Dict[str, Any] = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker,
                                "max_restarts": max_restarts, "max_task_retries": 0}
        if runtime_env:
            opts["runtime_env"] = dict(runtime_env)
        threads = max(1, int(cpus_per_worker))
        remote_cls = ray.remote(_Worker)
        actors = [remote_cls.options(**opts).remote(path, spec, batch_size, dict(loader or {}), threads,
                                                    gpus_per_worker) for _ in range(workers)]
        try:
            infos = ray.get([a.info.remote(int(np.prod(x_all.shape[1:]))) for a in actors])
        except RayTaskError as e:
            raise e.as_instanceof_cause() from None
        except RayActorError as e:
            raise RuntimeError(f"a Ray worker could not start (building the sampler failed): {e}") from None
        st["startup_s"] = time.perf_counter() - t_start
        st["actor_load_s"] = [i["load_s"] for i in infos]
        st["actor_warmup_s"] = [i["warmup_s"] for i in infos]
        import json

        ids = {json.dumps(i["model_id"], sort_keys=True) for i in infos}
        if len(ids) != 1:
            raise ValueError(f"the actors loaded different models (identities {sorted(ids)}); the model file must "
                             "be the same on every node")
        model_id = infos[0]["model_id"]
        other = sorted({i["code"] for i in infos} - {code})
        if other:
            raise ValueError(f"the Ray workers run another version of confbounds/backends/radius than the driver "
                             f"(source fingerprints {other} != {code}); install the same version on every node")
        if driver_id is not None and model_id != driver_id:
            raise ValueError(f"the actors' model {path!r} ({model_id}) differs from the driver's copy ({driver_id})")
        info = infos[0]
        s_sigma = info["sigma"]
        if s_sigma is not None and not math.isclose(float(s_sigma), spec.sigma, rel_tol=0, abs_tol=0):
            raise ValueError(f"sigma={spec.sigma!r} differs from the sampler's noise level {s_sigma!r}; "
                             "a certificate is only valid for the noise actually added")
        m = info["num_classes"]
        check_labels(y_all, m)
        x, y = x_all, y_all
        noises = {json.dumps(i["noise"], sort_keys=True) for i in infos}
        if len(noises) != 1:
            raise ValueError(f"the actors' samplers draw different noise ({sorted(noises)})")
        spec = spec.with_model(model=model_id, num_classes=m, batch_size=info["batch_size"],
                               data=data_identity(x, y), **info["noise"])
        dry_run(spec)
        files = open_run(spec, out, counts_log, y, N)
        certs = list(files.kept_certs)
        bar = progress_bar(N, files.start, enabled=progress,
                           label="sequential" if spec.sequential is not None else "certify")

        # inputs whose counts are logged are only re-certified; the actors do that too (cheap)
        todo = collections.deque(range(files.start, N))
        attempts: Dict[int, int] = collections.Counter()
        inflight: Dict[Any, Tuple[int, Optional[List[int]]]] = {}
        load = [0] * workers  # tasks in flight per actor
        state = ["ok"] * workers  # ok | probing (a ping is in flight after a failure) | dead
        ping_fails = [0] * workers
        pending: Dict[int, Any] = {}
        received = 0
        measure = stats is not None
        spec_ref = ray.put(spec)
        t_work, cpu_work = time.perf_counter(), time.process_time()
        while files.next_idx < N:
            for w in range(workers):
                while state[w] == "ok" and load[w] < queue_depth and todo:
                    chunk = [todo.popleft() for _ in range(min(chunk_size, len(todo)))]
                    items = [(i, x[i], int(y[i]), files.known_counts(i)) for i in chunk]
                    if measure:
                        st["bytes_sent"] += _nbytes(items)
                    inflight[actors[w].certify.remote(spec_ref, items)] = (w, chunk)
                    load[w] += 1
                    st["tasks"] += 1
            if not inflight:
                raise RuntimeError(f"every Ray worker died (restarts exhausted); {N - files.next_idx} inputs are "
                                   "left; the files hold every finished row: rerun to resume")
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                w, chunk = inflight.pop(ref)
                if chunk is None:  # a ping: is the actor back (restarted) or dead for good?
                    try:
                        ray.get(ref)
                        state[w], ping_fails[w] = "ok", 0
                    except RayActorError:
                        ping_fails[w] += 1
                        if ping_fails[w] >= _MAX_PINGS:
                            state[w] = "dead"
                        else:
                            inflight[actors[w].ping.remote()] = (w, None)
                    continue
                load[w] -= 1
                try:
                    pid, results = ray.get(ref)
                except RayActorError:
                    # the actor died with these inputs unfinished: redo them first.  Ray restarts the actor
                    # (tasks sent meanwhile wait for it); a ping tells whether it is back before it gets more.
                    st["actor_failures"] += 1
                    for i in chunk:
                        attempts[i] += 1
                        if attempts[i] >= _MAX_ATTEMPTS:
                            raise RuntimeError(f"input {i} was lost with its Ray worker {attempts[i]} times; "
                                               "giving up (the files hold every finished row)") from None
                    todo.extendleft(reversed(chunk))
                    st["resubmitted"] += len(chunk)
                    if state[w] == "ok":
                        state[w] = "probing"
                        inflight[actors[w].ping.remote()] = (w, None)
                    continue
                except RayTaskError as e:
                    raise e.as_instanceof_cause() from None
                st["pids"].add(pid)
                st["task_pids"].append((w, pid))
                if measure:
                    st["bytes_received"] += _nbytes((pid, results))
                for r in results:
                    if r.idx < files.next_idx or r.idx in pending:
                        st["duplicates"] += 1
                        continue
                    pending[r.idx] = r
                    st["compute_s"] += r.time
                    if measure:
                        st["receive_times"].append(time.perf_counter())
                    bar.update()
                received += 1
                while files.next_idx in pending:
                    r = pending.pop(files.next_idx)
                    files.write(r.idx, r.tsv_row(), r.counts_line() if r.selection is not None else None)
                    certs.append(r.cert)
                if on_result is not None:
                    on_result(received, actors)
        bar.close()
        st["work_s"] = time.perf_counter() - t_work
        st["driver_cpu_s"] = time.process_time() - cpu_work
        st["inputs"] = N - files.start
        st["wall_s"] = time.perf_counter() - t_start
        return certs
    finally:
        if files is not None:
            files.close()
        for a in actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # already gone
                pass
        if started:
            ray.shutdown()


def certify_dataset_ray(model, inputs, labels=None, *, sigma: float, alpha: float = 0.001, n0: int = 100,
                        n: int = 10_000, radius: str = "R2", reduction: str = "exact", bound: Any = "betting",
                        lipschitz: Optional[float] = None, output_range: Optional[float] = None, seed: int = 0,
                        mode: str = "counts", simplex: Optional[str] = None, temperature: Optional[float] = None,
                        noise: str = "float", backend: Optional[str] = None, **engine) -> list:
    """:func:`radius.pipeline.certify_dataset` on Ray actors: the keyword arguments build a
    :class:`radius.run.spec.RunSpec`; ``engine`` holds :func:`run_ray`'s (``out``, ``counts_log``, ``limit``,
    ``progress``, ``workers``, ...).

    Examples
    --------
    Not run here (starts a Ray cluster)::

        from backends.models import load_digits_split
        x, y = load_digits_split("test")
        certs = certify_dataset_ray(None, x, y, sigma=0.25, n=10_000, workers=2,
                                    out="results/digits.tsv", counts_log="results/digits.counts.jsonl")
    """
    spec = RunSpec(sigma=sigma, alpha=alpha, n0=n0, n=n, seed=seed, mode=mode, simplex=simplex,
                   temperature=temperature, noise=noise, backend=backend, radius=radius, reduction=reduction,
                   bound=bound, lipschitz=lipschitz, output_range=output_range)
    return run_ray(spec, model, inputs, labels, **engine)
