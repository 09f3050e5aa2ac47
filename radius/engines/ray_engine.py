"""Certify a data set on a Ray cluster: one sampler per actor, results written by the driver.

:func:`certify_dataset_ray` is :func:`radius.pipeline.certify_dataset` spread
over Ray actors (Moritz et al., "Ray: A Distributed Framework for Emerging AI
Applications", OSDI 2018).  We do not schedule anything ourselves beyond a work
queue: Ray places the actors (one per GPU with ``gpus_per_worker=1``, on any
node of the cluster), restarts the ones that die, and ships inputs and results.

How a run works
---------------
1. The driver starts ``workers`` actors.  Each builds its own sampler *once*
   from a :class:`ModelSpec` (a model file path or an importable factory,
   sigma, batch size -- never a pickled sampler) and reports the model's
   identity, its number of classes and its batch size; all actors must agree.
2. The driver opens (or resumes) the results TSV and the raw-counts log with
   the same metadata as the local engine (:func:`radius.engines.local.open_run`),
   so a run started by one engine can be resumed by the other.
3. The input indices not yet done form a work queue; each actor holds at most
   ``queue_depth`` tasks of ``chunk_size`` inputs at a time.  An actor
   certifies input ``i`` with the per-input seeds
   :func:`radius.pipeline.input_seeds` ``(seed, i)``
   (:func:`radius.engines.local.certify_one`), so the certificate does not
   depend on which actor computed it or when.
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

import argparse
import collections
import math
import os
import pickle
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import results as res
from .local import InputResult, cert_config, certify_one, dry_run, open_run, precheck_files

__all__ = ["ModelSpec", "certify_dataset_ray", "code_fingerprint", "add_ray_arguments", "cmd_certify_ray", "main"]

#: A task whose actor died is redone; an input whose tasks killed their actor this often is reported.
_MAX_ATTEMPTS = 4
#: Consecutive failed pings after which an actor counts as dead for good (restarts exhausted).
_MAX_PINGS = 3
_OBJECT_STORE = 200 * 2 ** 20


# ---------------------------------------------------------------------------
# model spec: how an actor builds its sampler
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    """A serialisable recipe for a sampler, built once in every actor.

    Parameters
    ----------
    path : str, optional
        An ``.onnx`` file (:class:`backends.onnx_sampler.OnnxSampler`) or a
        torch ``.pt``/``.pth`` file (TorchScript, pickled module or digits-CNN
        state dict; :class:`backends.torch_sampler.TorchSampler`), as
        ``confbounds certify --model``.  Must exist at this path on every node.
        Default (neither ``path`` nor ``factory``): the shipped digits model
        for ``sigma``.
    sigma : float, optional
        Noise level; filled in from :func:`certify_dataset_ray`'s ``sigma``.
    batch_size : int
        Noisy copies per model call.
    providers : list of str, optional
        onnxruntime execution providers (default: CUDA when the actor has a
        GPU and onnxruntime-gpu is installed, else CPU).
    device : str, optional
        Torch device (default ``"cuda"`` when the actor was given a GPU, else
        ``"cpu"``).
    threads : int, optional
        Intra-op threads of the model runtime (default: the actor's
        ``cpus_per_worker``, at least 1).
    factory : callable, optional
        An importable top-level function ``factory(sigma=..., batch_size=...,
        **factory_kwargs) -> sampler`` for models the two file kinds do not
        cover (pickled by reference, so its module must be importable on
        every node).
    factory_kwargs : dict
    model_id : str, optional
        The model's identity recorded in the metadata.  Default: the SHA-256
        of ``path`` (as the CLI), else ``sampler.model_hash``, else a
        fingerprint of the sampler's counts on a fixed probe.
    """

    path: Optional[str] = None
    sigma: Optional[float] = None
    batch_size: int = 1000
    providers: Optional[Tuple[str, ...]] = None
    device: Optional[str] = None
    threads: Optional[int] = None
    factory: Optional[Callable[..., Any]] = None
    factory_kwargs: Mapping[str, Any] = field(default_factory=dict)
    model_id: Optional[str] = None

    def resolved_path(self) -> Optional[str]:
        """The model file (the shipped digits model when neither path nor factory is given)."""
        if self.path is not None:
            return str(self.path)
        if self.factory is None:
            from backends.models import default_model_path

            return str(default_model_path(self.sigma))
        return None

    def load(self, gpus: float = 0.0):
        """Build the sampler (called once per actor)."""
        if self.sigma is None:
            raise ValueError("ModelSpec.sigma is not set")
        if self.factory is not None:
            return self.factory(sigma=self.sigma, batch_size=self.batch_size, **dict(self.factory_kwargs))
        path = self.resolved_path()
        if not os.path.exists(path):
            raise ValueError(f"model file {path!r} does not exist on this node")
        threads = self.threads
        low = path.lower()
        if low.endswith(".onnx"):
            import onnxruntime as ort

            from backends.onnx_sampler import OnnxSampler

            so = ort.SessionOptions()
            # no spinning threads between runs (they take CPU from the bounds; as radius.cli.onnx_sampler)
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if threads is not None:
                so.intra_op_num_threads = int(threads)
                so.inter_op_num_threads = 1
            providers = list(self.providers) if self.providers is not None else None
            if providers is None and not gpus:
                providers = ["CPUExecutionProvider"]
            return OnnxSampler(path, sigma=self.sigma, batch_size=self.batch_size, providers=providers,
                               session_options=so)
        if low.endswith((".pt", ".pth")):
            import torch

            from backends.torch_sampler import TorchSampler

            from ..cli import _load_torch

            if threads is not None:
                torch.set_num_threads(int(threads))
            device = self.device or ("cuda" if gpus and torch.cuda.is_available() else "cpu")
            return TorchSampler(_load_torch(path).to(device), sigma=self.sigma, batch_size=self.batch_size,
                                device=device)
        raise ValueError(f"model must be an .onnx or a torch .pt/.pth file, got {path!r}")


def _as_spec(model, sigma: float, batch_size: int) -> ModelSpec:
    if model is None:
        spec = ModelSpec(sigma=sigma, batch_size=batch_size)
    elif isinstance(model, (str, os.PathLike)):
        spec = ModelSpec(path=os.fspath(model), sigma=sigma, batch_size=batch_size)
    elif isinstance(model, ModelSpec):
        spec = model
        if spec.sigma is None:
            spec = replace(spec, sigma=sigma)
        elif not math.isclose(float(spec.sigma), sigma, rel_tol=0, abs_tol=0):
            raise ValueError(f"sigma={sigma!r} differs from the model spec's sigma={spec.sigma!r}")
    else:
        raise ValueError(f"model must be a file path, a ModelSpec or None, got {type(model).__name__} "
                         "(a sampler object is not shipped to the actors: describe how to build it)")
    if spec.path is not None:
        low = spec.path.lower()
        if not low.endswith((".onnx", ".pt", ".pth")):
            raise ValueError(f"model must be an .onnx or a torch .pt/.pth file, got {spec.path!r}")
    if spec.factory is not None and spec.path is not None:
        raise ValueError("give a ModelSpec either a path or a factory, not both")
    return spec


# ---------------------------------------------------------------------------
# the actor (a plain class; wrapped by ray.remote only when the engine runs)
# ---------------------------------------------------------------------------

class _Worker:
    """Holds one sampler; certifies the inputs it is sent."""

    def __init__(self, spec: ModelSpec, run: Dict[str, Any], gpus: float = 0.0):
        self.created = time.perf_counter()
        self.spec = spec
        self.run_cfg = dict(run)
        self.sampler = spec.load(gpus)
        self.pid = os.getpid()
        self.started = time.perf_counter()

    def info(self, x0) -> Dict[str, Any]:
        """Model identity, classes, batch size and sigma as the driver records them.

        Also warms up: imports the certificate code and compiles its Numba
        kernels on a tiny dummy sample, so the first real input is not slower.
        """
        from ..pipeline import _model_id

        s = self.sampler
        t0 = time.perf_counter()
        try:
            dry_run(self.run_cfg["cert_kwargs"], int(s.num_classes), self.run_cfg["n0"], self.run_cfg["n"],
                    self.run_cfg["mode"])
        except ValueError:
            pass  # the driver runs the same check and reports the error
        warmup = time.perf_counter() - t0
        path = self.spec.resolved_path()
        if self.spec.model_id is not None:
            mid = str(self.spec.model_id)
        elif path is not None:
            mid = res.file_hash(path)
        else:
            mid = _model_id(s, np.asarray(x0)[None], None)
        bs = getattr(s, "batch_size", None)
        return {"model_id": mid, "num_classes": int(s.num_classes), "batch_size": None if bs is None else int(bs),
                "sigma": getattr(s, "sigma", None), "pid": self.pid, "node": os.uname().nodename,
                "load_s": self.started - self.created, "warmup_s": warmup, "code": code_fingerprint()}

    def ping(self) -> int:
        """Answers once the actor is alive (after a restart, once its sampler is rebuilt)."""
        return self.pid

    def certify(self, items: Sequence[Tuple[int, Any, int, Any]]) -> Tuple[int, List[InputResult]]:
        """Certify ``items`` = ``[(idx, x, label, known_counts_or_None), ...]``; returns ``(pid, results)``."""
        c = self.run_cfg
        out = []
        for idx, x, label, counts in items:
            out.append(certify_one(self.sampler, np.asarray(x), label, idx, seed=c["seed"], n0=c["n0"], n=c["n"],
                                   cert_kwargs=c["cert_kwargs"], mode=c["mode"], counts=counts))
        return self.pid, out


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

def certify_dataset_ray(model, inputs, labels, *, sigma: float, alpha: float = 0.001, n0: int = 100,
                        n: int = 10_000, radius: str = "R2", reduction: str = "exact", bound: str = "betting",
                        lipschitz: Optional[float] = None, output_range: Optional[float] = None, seed: int = 0,
                        out: Optional[str] = None, counts_log: Optional[str] = None, limit: Optional[int] = None,
                        progress: bool = True, mode: str = "counts", workers: int = 2,
                        gpus_per_worker: float = 0, cpus_per_worker: float = 1, address: Optional[str] = None,
                        batch_size: int = 1000, chunk_size: int = 1, queue_depth: int = 2, max_restarts: int = 3,
                        runtime_env: Optional[Mapping[str, Any]] = None,
                        ray_init_kwargs: Optional[Mapping[str, Any]] = None,
                        stats: Optional[Dict[str, Any]] = None,
                        on_result: Optional[Callable[[int, list], None]] = None) -> list:
    """Certify every input of a data set on Ray actors; same files and results as the local engine.

    Parameters
    ----------
    model : str, ModelSpec or None
        Model file (``.onnx``/``.pt``/``.pth``), a :class:`ModelSpec`, or
        ``None`` for the shipped digits model of ``sigma``.  Each actor builds
        its own sampler from it once.
    inputs, labels, sigma, alpha, n0, n, radius, reduction, bound, lipschitz, output_range, seed, out, counts_log, limit, progress, mode
        As in :func:`radius.pipeline.certify_dataset`; the TSV and counts log
        have the same format and metadata (the model is identified by its
        file's SHA-256, as the CLI does).
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
        Noisy copies per model call (used when ``model`` is a path or None).
    chunk_size : int
        Inputs per Ray task (1: best load balance; more amortises Ray's per-task
        overhead when an input takes only milliseconds).
    queue_depth : int
        Tasks in flight per actor (2 keeps an actor busy while a result travels).
    max_restarts : int
        Restarts of each actor by Ray (-1: unlimited).
    runtime_env : dict, optional
        Ray runtime environment of the actors (e.g. ``{"py_modules": [...]}``
        when the nodes lack confbounds).
    ray_init_kwargs : dict, optional
        Extra arguments of ``ray.init``.
    stats : dict, optional
        Filled with counters of the run: ``startup_s``, ``wall_s``,
        ``compute_s`` (sum of per-input time in the actors), ``tasks``,
        ``actor_failures``, ``resubmitted``, ``duplicates``, ``bytes_sent``,
        ``bytes_received`` (pickled sizes of task arguments and results),
        ``receive_times`` (driver clock of every new result), ``pids``,
        ``task_pids`` (``(worker, pid)`` of every successful task),
        ``work_s`` and ``driver_cpu_s`` (wall and driver CPU seconds of the
        work loop), ``inputs`` (certified in this call).
    on_result : callable, optional
        ``on_result(results_received, actor_handles)`` after every task result
        (a hook for monitoring and for the fault-tolerance tests).

    Returns
    -------
    list of Certificate
        One per input, in index order (as :func:`radius.pipeline.certify_dataset`).

    Notes
    -----
    Validity is the local engine's: each certificate holds with probability
    ``>= 1 - alpha`` on its own, and the samples of input ``i`` depend only on
    ``(seed, i)`` -- not on the actor, the order, restarts or resumes.

    Examples
    --------
    Not run here (starts a Ray cluster)::

        from backends.models import load_digits_split
        x, y = load_digits_split("test")
        certs = certify_dataset_ray(None, x, y, sigma=0.25, n=10_000, workers=2,
                                    out="results/digits.tsv", counts_log="results/digits.counts.jsonl")
    """
    from ..pipeline import _MODES, Progress, _cert_kwargs, _check_data, _check_pos_int, _check_sigma

    t_start = time.perf_counter()
    sigma = _check_sigma(sigma)
    spec = _as_spec(model, sigma, _check_pos_int(batch_size, "batch_size"))
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if mode == "scores" and counts_log is not None:
        raise ValueError("counts_log is only available in mode='counts' (score matrices are not logged)")
    n0 = _check_pos_int(n0, "n0")
    n = _check_pos_int(n, "n")
    seed = _check_pos_int(seed, "seed", minimum=0)
    workers = _check_pos_int(workers, "workers")
    chunk_size = _check_pos_int(chunk_size, "chunk_size")
    queue_depth = _check_pos_int(queue_depth, "queue_depth")
    for name, v in (("gpus_per_worker", gpus_per_worker), ("cpus_per_worker", cpus_per_worker)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a finite number >= 0, got {name}={v!r}")
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < -1:
        raise ValueError(f"max_restarts must be an integer >= -1, got max_restarts={max_restarts!r}")
    x_all = np.asarray(inputs)
    if x_all.ndim < 1 or x_all.shape[0] == 0:
        raise ValueError(f"inputs must be an array of shape (N, ...) with N >= 1, got shape {x_all.shape}")
    if limit is not None:
        limit = _check_pos_int(limit, "limit")
        if limit > x_all.shape[0]:
            raise ValueError(f"limit={limit} exceeds the number of inputs ({x_all.shape[0]})")
    kw = _cert_kwargs(sigma, alpha, radius, reduction, bound, lipschitz, output_range)
    path = spec.resolved_path()
    if path is not None and address is None and not _ray_connected() and not os.path.exists(path):
        raise ValueError(f"model file {path!r} does not exist")
    driver_hash = None
    if spec.model_id is None and path is not None and os.path.exists(path):
        driver_hash = res.file_hash(path)
    known: Dict[str, Any] = {"sigma": sigma, "n0": n0, "n": n, "seed": seed, "mode": mode}
    if spec.model_id is not None or driver_hash is not None:
        known["model"] = spec.model_id if spec.model_id is not None else driver_hash
    code = code_fingerprint()
    dry_run(kw, 2, n0, n, mode)  # method names and parameters (again with the model's classes below)
    precheck_files(out, counts_log, known, cert_config(kw))  # a wrong command fails before workers start

    import ray
    from ray.exceptions import RayActorError, RayTaskError

    st: Dict[str, Any] = stats if stats is not None else {}
    st.update(tasks=0, actor_failures=0, resubmitted=0, duplicates=0, bytes_sent=0, bytes_received=0,
              compute_s=0.0, receive_times=[], pids=set(), task_pids=[], workers=workers)
    started = _connect(address, max(1, math.ceil(workers * cpus_per_worker)), ray_init_kwargs)
    actors: list = []
    files = None
    try:
        run_cfg = {"seed": seed, "n0": n0, "n": n, "mode": mode, "cert_kwargs": kw}
        opts: Dict[str, Any] = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker,
                                "max_restarts": max_restarts, "max_task_retries": 0}
        if runtime_env:
            opts["runtime_env"] = dict(runtime_env)
        threads = spec.threads if spec.threads is not None else max(1, int(cpus_per_worker))
        wspec = replace(spec, threads=threads)
        remote_cls = ray.remote(_Worker)
        actors = [remote_cls.options(**opts).remote(wspec, run_cfg, gpus_per_worker) for _ in range(workers)]

        # every actor loaded the same model: identity, classes, batch size
        try:
            infos = ray.get([a.info.remote(x_all[0]) for a in actors])
        except RayTaskError as e:
            raise e.as_instanceof_cause() from None
        except RayActorError as e:
            raise RuntimeError(f"a Ray worker could not start (building the sampler failed): {e}") from None
        st["startup_s"] = time.perf_counter() - t_start
        st["actor_load_s"] = [i["load_s"] for i in infos]
        st["actor_warmup_s"] = [i["warmup_s"] for i in infos]
        ids = {i["model_id"] for i in infos}
        if len(ids) != 1:
            raise ValueError(f"the actors loaded different models (identities {sorted(ids)}); the model file must "
                             "be the same on every node")
        model_id = ids.pop()
        other = sorted({i["code"] for i in infos} - {code})
        if other:
            raise ValueError(f"the Ray workers run another version of confbounds/backends/radius than the driver "
                             f"(source fingerprints {other} != {code}); install the same version on every node")
        if driver_hash is not None and model_id != driver_hash:
            raise ValueError(f"the actors' model {path!r} (SHA-256 {model_id}) differs from the driver's copy "
                             f"({driver_hash})")
        info = infos[0]
        s_sigma = info["sigma"]
        if s_sigma is not None and not math.isclose(float(s_sigma), sigma, rel_tol=0, abs_tol=0):
            raise ValueError(f"sigma={sigma!r} differs from the sampler's noise level {s_sigma!r}; "
                             "a certificate is only valid for the noise actually added")
        m = info["num_classes"]
        x, y = _check_data(x_all, labels, m)
        N = x.shape[0] if limit is None else limit
        dry_run(kw, m, n0, n, mode)

        sampling = None
        if out is not None or counts_log is not None:
            sampling = {"model": model_id, "data": res.array_hash(x, y), "sigma": sigma, "n0": n0, "n": n,
                        "seed": seed, "batch_size": info["batch_size"], "mode": mode, "num_classes": m}
        files = open_run(out, counts_log, sampling, cert_config(kw), y, N, kw)
        certs = list(files.kept_certs)
        bar = Progress(N, files.start, enabled=progress)

        # inputs whose counts are logged are only re-certified; the actors do that too (cheap)
        todo = collections.deque(range(files.start, N))
        attempts: Dict[int, int] = collections.Counter()
        inflight: Dict[Any, Tuple[int, List[int]]] = {}
        load = [0] * workers  # tasks in flight per actor
        state = ["ok"] * workers  # ok | probing (a ping is in flight after a failure) | dead
        ping_fails = [0] * workers
        pending: Dict[int, InputResult] = {}
        received = 0
        measure = stats is not None
        t_work, cpu_work = time.perf_counter(), time.process_time()
        while files.next_idx < N:
            for w in range(workers):
                while state[w] == "ok" and load[w] < queue_depth and todo:
                    chunk = [todo.popleft() for _ in range(min(chunk_size, len(todo)))]
                    items = [(i, x[i], int(y[i]), files.known_counts(i) if mode == "counts" else None)
                             for i in chunk]
                    if measure:
                        st["bytes_sent"] += _nbytes(items)
                    inflight[actors[w].certify.remote(items)] = (w, chunk)
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
                    files.write(r)
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


# ---------------------------------------------------------------------------
# command line: `confbounds certify --engine ray ...`
# ---------------------------------------------------------------------------

def add_ray_arguments(p: argparse.ArgumentParser, engine_default: str = "local") -> None:
    """Add ``--engine --address --workers --gpus-per-worker --cpus-per-worker --chunk-size`` to ``certify``."""
    g = p.add_argument_group("engine")
    g.add_argument("--engine", default=engine_default, choices=("local", "ray"),
                   help=f"local (this process) or ray (actors on a Ray cluster); default {engine_default}")
    g.add_argument("--address", default=None,
                   help="Ray cluster to join: auto, HOST:PORT or ray://HOST:10001 (default: start a local one)")
    g.add_argument("--workers", type=int, default=2, help="Ray actors, one model each (default 2)")
    g.add_argument("--gpus-per-worker", type=float, default=0, help="GPUs per actor (default 0)")
    g.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs per actor (default 1)")
    g.add_argument("--chunk-size", type=int, default=1, help="inputs per Ray task (default 1)")


def cmd_certify_ray(a) -> int:
    """``confbounds certify --engine ray``: the arguments of ``certify`` plus :func:`add_ray_arguments`'."""
    from ..cli import _summary, load_data
    from ..pipeline import _check_sigma

    sigma = _check_sigma(a.sigma)
    x, y, dname = load_data(a.data, a.split)
    if a.model is not None and not os.path.exists(a.model):
        raise ValueError(f"--model file {a.model!r} does not exist")
    from backends.models import default_model_path
    from ..cli import default_paths

    out, log = default_paths(a, dname, a.model or default_model_path(sigma), sigma)
    certs = certify_dataset_ray(a.model, x, y, sigma=sigma, alpha=a.alpha, n0=a.n0, n=a.n, radius=a.radius,
                                reduction=a.reduction, bound=a.bound, lipschitz=a.lipschitz,
                                output_range=a.output_range, seed=a.seed, out=out, counts_log=log, limit=a.limit,
                                progress=not a.no_progress, mode=a.mode, workers=a.workers,
                                gpus_per_worker=a.gpus_per_worker, cpus_per_worker=a.cpus_per_worker,
                                address=a.address, batch_size=a.batch_size, chunk_size=a.chunk_size)
    sys.stdout.write(_summary(certs, y, out))
    if log:
        sys.stdout.write(f"counts log: {log}\n")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m radius.engines.ray_engine ARGS`` = ``confbounds certify --engine ray ARGS``."""
    from ..cli import build_parser

    ap = build_parser()
    sub = next(act for act in ap._actions if isinstance(act, argparse._SubParsersAction))
    sub.choices["certify"].set_defaults(engine="ray")  # build_parser added the engine arguments
    a = ap.parse_args(["certify", *(sys.argv[1:] if argv is None else argv)])
    try:
        if a.engine != "ray":
            from ..cli import _cmd_certify

            return _cmd_certify(a)
        return cmd_certify_ray(a)
    except ValueError as e:
        sys.stderr.write(f"\nconfbounds certify: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("\nconfbounds certify: interrupted; rerun the same command to resume\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
