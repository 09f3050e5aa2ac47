"""Throughput of the Ray engine with 1 and 2 workers against the local engine, and Ray's per-input overhead.

Run: ``.venv/bin/python benchmarks/ray_scaling.py`` (``--quick`` for a smoke run).  Writes
``benchmarks/results/ray_scaling.json``.

* Workload: the shipped digits ONNX model (sigma 0.25), the first K test inputs, n0 = 100 and n = 10^4
  samples per input, default method (exact reduction, R2), TSV and counts log written and flushed per input.
* Baselines (same run): the local engine (:func:`radius.pipeline.certify_dataset`) with the CLI's sampler
  (onnxruntime's default threads = all cores) and with one intra-op thread (what one Ray worker gets with
  ``cpus_per_worker=1``).
* Ray: :func:`radius.engines.ray_engine.certify_dataset_ray` on a local cluster (``num_cpus=2``, 200 MB
  object store) with 1 and 2 workers.  ``throughput_work`` counts the work loop only (actors started and warm);
  ``startup_s`` (actor process start, model load, imports and Numba compilation) is reported separately:
  it is paid once per run, whatever the data set size.
* Overhead per input: the same engine with one worker, one task in flight (``queue_depth=1``) and tiny
  samples (n0 = 10, n = 100), so an input costs milliseconds: ``round_trip_overhead = latency_ray -
  worker_compute`` (driver wall time per input minus the time the worker spent on it) is what Ray adds to each
  input when nothing hides it (submission, scheduling, serialisation, result transfer, the driver's write).  ``driver_cpu_per_input`` is the driver's CPU time per input (the only serial part: it bounds the
  rate one driver sustains).  Bytes are the pickled sizes of the task arguments and results per input.
* Repetitions are interleaved (local, local 1 thread, Ray 1, Ray 2, local, ...) and medians reported.  The
  machine is shared (the load average is recorded): wall-clock figures are noisy, ratios within one run are
  what to read.  ``compute_slowdown_2_workers`` (per-input compute time with 2 workers / with 1) shows how much
  the two workers slow each other down on 2 busy cores; ``ray2_scaling_efficiency_given_cpu`` = measured
  speed-up / (2 / slowdown) is the share of the achievable speed-up the engine delivers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIGMA = 0.25
IMAGENET_INPUT_BYTES = 3 * 224 * 224 * 4  # one float32 ImageNet input
IMAGENET_GPU_S = 150.0  # GPU-seconds per image at n = 100,000 (Cohen, Rosenfeld & Kolter 2019, their logs)


def _steady_rate(times):
    """Inputs per second between the 3rd and the last result (after the pipeline has filled)."""
    if len(times) < 5:
        return float("nan")
    t = sorted(times)[2:]
    return (len(t) - 1) / (t[-1] - t[0])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", type=int, default=40)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--n0", type=int, default=100)
    ap.add_argument("--overhead-inputs", type=int, default=60)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.inputs, a.n, a.overhead_inputs, a.reps = 8, 2000, 20, 1

    import ray

    from backends.models import default_model_path, load_digits_split
    from radius.engines.ray_engine import certify_dataset_ray
    from radius.pipeline import certify_dataset
    from radius.run.model import model_identity, open_sampler
    from radius.run.spec import RunSpec

    x, y = load_digits_split("test")
    path = str(default_model_path(SIGMA))
    mid = model_identity(path)
    tmp = tempfile.mkdtemp(prefix="confbounds-ray-bench-")
    load_before = os.getloadavg()
    out: dict = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count(), "ray": ray.__version__, "loadavg_before": load_before},
        "config": {"inputs": a.inputs, "n0": a.n0, "n": a.n, "sigma": SIGMA, "model": "digits_cnn ONNX",
                   "reduction": "exact", "radius": "R2"},
    }
    run = dict(sigma=SIGMA, n0=a.n0, n=a.n, seed=11, progress=False)

    def local(sampler, tag, n0=a.n0, n=a.n, k=a.inputs):
        sampler.counts(x[0], 200, 0)  # warm (session, Numba kernels are warmed by the first certify below)
        certify_dataset(sampler, x[:1], y[:1], sigma=SIGMA, n0=10, n=100, progress=False)
        t, c = time.perf_counter(), time.process_time()
        certify_dataset(sampler, x, y, sigma=SIGMA, n0=n0, n=n, seed=11, limit=k, progress=False,
                        out=os.path.join(tmp, f"{tag}.tsv"), counts_log=os.path.join(tmp, f"{tag}.jsonl"),
                        model_id=mid)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        return {"wall_s": wall, "cpu_s": cpu, "throughput": k / wall, "latency": wall / k}

    s_default, _ = open_sampler(path, RunSpec(sigma=SIGMA), batch_size=1000)
    from backends.export import ort_session_options

    so = ort_session_options()  # no spinning threads (the one helper), one intra-op thread
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    s_one, _ = open_sampler(path, RunSpec(sigma=SIGMA), batch_size=1000, session_options=so)

    def ray_run(w, rep):
        st: dict = {}
        certify_dataset_ray(path, x, y, limit=a.inputs, workers=w, stats=st,
                            out=os.path.join(tmp, f"ray{w}_{rep}.tsv"),
                            counts_log=os.path.join(tmp, f"ray{w}_{rep}.jsonl"), **run)
        return {
            "startup_s": st["startup_s"], "work_s": st["work_s"], "wall_s": st["wall_s"],
            "throughput_work": st["inputs"] / st["work_s"], "throughput_steady": _steady_rate(st["receive_times"]),
            "throughput_end_to_end": st["inputs"] / st["wall_s"],
            "actor_load_s": st["actor_load_s"], "actor_warmup_s": st["actor_warmup_s"],
            "compute_s_per_input": st["compute_s"] / st["inputs"],
            "driver_cpu_per_input": st["driver_cpu_s"] / st["inputs"],
            "bytes_sent_per_input": st["bytes_sent"] / st["inputs"],
            "bytes_received_per_input": st["bytes_received"] / st["inputs"],
        }

    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2 ** 20, log_to_driver=False)
    out["ray_init_s"] = time.perf_counter() - t
    reps: dict = {"local_default_threads": [], "local_1thread": [], "ray_1_workers": [], "ray_2_workers": []}
    try:
        # interleaved repetitions (the machine's load drifts): local, local 1 thread, ray 1, ray 2, local, ...
        for rep in range(a.reps):
            print(f"repetition {rep + 1}/{a.reps}: {a.inputs} inputs at n={a.n}", flush=True)
            reps["local_default_threads"].append(local(s_default, f"local_{rep}"))
            reps["local_1thread"].append(local(s_one, f"local1_{rep}"))
            for w in (1, 2):
                reps[f"ray_{w}_workers"].append(ray_run(w, rep))
            for k, v in reps.items():
                print(f"  {k}: {v[-1]['throughput' if k.startswith('local') else 'throughput_work']:.3f} inputs/s",
                      flush=True)

        print("overhead: 1 worker, 1 task in flight, n0=10, n=100 ...", flush=True)
        k = a.overhead_inputs
        st = {}
        certify_dataset_ray(path, x, y, sigma=SIGMA, n0=10, n=100, seed=11, limit=k, workers=1, queue_depth=1,
                            stats=st, progress=False, out=os.path.join(tmp, "ovh.tsv"),
                            counts_log=os.path.join(tmp, "ovh.jsonl"))
        lat_ray = st["work_s"] / st["inputs"]
        compute = st["compute_s"] / st["inputs"]
        loc = local(s_one, "ovh_local", n0=10, n=100, k=k)
        out["overhead"] = {
            "inputs": k,
            "latency_ray_s": lat_ray,
            "worker_compute_s_per_input": compute,
            "round_trip_overhead_s_per_input": lat_ray - compute,
            "latency_local_1thread_s": loc["latency"],
            "driver_cpu_per_input_s": st["driver_cpu_s"] / st["inputs"],
            "bytes_sent_per_input": st["bytes_sent"] / st["inputs"],
            "bytes_received_per_input": st["bytes_received"] / st["inputs"],
        }
        print(out["overhead"], flush=True)
    finally:
        ray.shutdown()

    def median_of(runs):
        return {key: (statistics.median(r[key] for r in runs) if isinstance(runs[0][key], float) else runs[0][key])
                for key in runs[0]}

    for key, runs in reps.items():
        out[key] = median_of(runs)
        out[key]["repetitions"] = runs
    base = out["local_default_threads"]["throughput"]
    base1 = out["local_1thread"]["throughput"]
    r1, r2 = out["ray_1_workers"]["throughput_work"], out["ray_2_workers"]["throughput_work"]
    # with 2 workers on a shared 2-core box each input may itself take longer (CPU contention, not Ray):
    # f = per-input compute time with 2 workers / with 1; the ideal 2-worker speed-up is then 2 / f
    f = out["ray_2_workers"]["compute_s_per_input"] / out["ray_1_workers"]["compute_s_per_input"]
    out["ratios"] = {
        "ray1_over_local": r1 / base, "ray2_over_local": r2 / base,
        "ray1_over_local_1thread": r1 / base1, "ray2_over_local_1thread": r2 / base1,
        "ray2_over_ray1": r2 / r1,
        "compute_slowdown_2_workers": f,
        "ray2_scaling_efficiency_given_cpu": (r2 / r1) / (2 / f),
    }
    ovh = out["overhead"]
    added = max(ovh["round_trip_overhead_s_per_input"], 0.0)
    drv = ovh["driver_cpu_per_input_s"]
    sent_imagenet = IMAGENET_INPUT_BYTES + ovh["bytes_sent_per_input"]
    eff = IMAGENET_GPU_S / (IMAGENET_GPU_S + added)
    out["projection_8_gpus"] = {
        "gpu_s_per_input": IMAGENET_GPU_S, "overhead_s_per_input": added, "efficiency": eff,
        "throughput_inputs_per_hour": 8 * 3600 / (IMAGENET_GPU_S + added),
        "driver_max_inputs_per_s": 1 / drv if drv > 0 else float("inf"),
        "bytes_per_input_imagenet": sent_imagenet + ovh["bytes_received_per_input"],
        "note": (f"Ray adds ~{added * 1e3:.1f} ms and ~{(ovh['bytes_sent_per_input'] + ovh['bytes_received_per_input']) / 1e3:.1f} kB "
                 f"per input here (plus the input itself: {IMAGENET_INPUT_BYTES / 1e6:.2f} MB for ImageNet). Against "
                 f"{IMAGENET_GPU_S:.0f} GPU-s per ImageNet input at n=1e5 that is a {100 * (1 - eff):.4f}% loss: 8 GPUs "
                 f"(one worker each) certify ~{8 * 3600 / (IMAGENET_GPU_S + added):.0f} inputs/hour, 8x one GPU, "
                 f"50,000 images in ~{50000 * (IMAGENET_GPU_S + added) / 8 / 86400:.1f} days instead of "
                 f"{50000 * IMAGENET_GPU_S / 86400:.0f}. One driver sustains ~{(1 / drv if drv > 0 else float('inf')):.0f} "
                 "inputs/s, far above 8/150 s, so the driver is not the bottleneck; startup (actor start, model load, "
                 "Numba compile) is paid once per run. Scaling stops being linear only when an input costs "
                 "milliseconds (small models, tiny n): then raise --chunk-size."),
    }
    out["machine"]["loadavg_after"] = os.getloadavg()
    print(json.dumps(out["ratios"], indent=1))
    print(out["projection_8_gpus"]["note"])
    dest = ROOT / "benchmarks" / "results" / "ray_scaling.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1, default=float) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
