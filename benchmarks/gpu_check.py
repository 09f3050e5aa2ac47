"""GPU readiness check (issue 14): the ``gpu`` tests, a sampling and a pipeline benchmark on the GPU, one JSON.

Run through ``bash scripts/gpu_check.sh`` (project venv, overall time limit); directly:
``.venv/bin/python benchmarks/gpu_check.py [--out FILE]``. Default output ``benchmarks/results/gpu_check.json``.

Steps (each with its own time limit, total under 5 minutes on a GPU machine):

1. ``pytest -m gpu tests/test_gpu.py``: torch.cuda, onnxruntime CUDA / TensorRT providers, noise drawn on the
   device without per-batch host copies. Without a GPU they all skip (that is recorded).
2. Sampling: samples per second of ``TorchSampler.counts`` on CUDA with float and with sound noise (digits CNN,
   batch 10^4, n = 2 * 10^5, ABBA order, medians, ``sound_over_float``), and of ``OnnxSampler`` with the CUDA
   provider when onnxruntime has it.
3. Pipeline: ``radius.certify_dataset`` on 100 digits test inputs, ``n = 10^4``, on CUDA (float and sound noise):
   seconds and certified accuracy.

Without a CUDA GPU (``torch.cuda.is_available()`` false and no onnxruntime CUDA/TensorRT provider) steps 2-3
are skipped, the JSON says ``"status": "skipped"`` with the reason, and the exit code is 0. Any failure on a GPU
machine, including running past the 270 s budget (checked between steps and repetitions, so the JSON is written
before the shell script's 295 s kill), gives ``"status": "failed"`` and exit code 1.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
BUDGET_S = 270.0  # scripts/gpu_check.sh kills at 295 s; stop earlier so that the JSON is always written
_DEADLINE = [float("inf")]


def _check_budget(what: str) -> None:
    if time.perf_counter() > _DEADLINE[0]:
        raise TimeoutError(f"time budget of {BUDGET_S:.0f} s reached before {what}")


def run_gpu_tests(timeout: float) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "-rs",
           "tests/test_gpu.py"]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        tail = [ln for ln in r.stdout.splitlines() if ln.strip()][-8:]
        return {"command": " ".join(cmd[1:]), "returncode": r.returncode, "seconds": time.perf_counter() - t0,
                "summary": tail}
    except subprocess.TimeoutExpired:
        return {"command": " ".join(cmd[1:]), "returncode": None, "seconds": timeout, "summary": ["timeout"]}


def sampling(n: int, reps: int, cuda: bool, ort_gpu) -> dict:
    import torch

    from backends import OnnxSampler, TorchSampler, default_model_path, load_digits_split
    from backends.models import load_torch_model

    x = load_digits_split("test")[0][0]
    out = {}
    if cuda:
        samplers = {noise: TorchSampler(load_torch_model(0.25), sigma=0.25, device="cuda", batch_size=10_000,
                                        noise=noise, **({"grid": "1/16"} if noise == "sound" else {}))
                    for noise in ("float", "sound")}
        for s in samplers.values():
            s.counts(x, 10_000, 0)
        t = {"float": [], "sound": []}
        for r in range(reps):
            _check_budget("the end of the torch sampling benchmark")
            for who in (("sound", "float") if r % 2 == 0 else ("float", "sound")):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                samplers[who].counts(x, n, r)
                torch.cuda.synchronize()
                t[who].append(time.perf_counter() - t0)
        out["torch_cuda"] = {"n": n, "reps": reps, "device": torch.cuda.get_device_name(0),
                             "float_samples_per_s": n / statistics.median(t["float"]),
                             "sound_samples_per_s": n / statistics.median(t["sound"]),
                             "sound_over_float": statistics.median(t["sound"]) / statistics.median(t["float"]),
                             "seconds": t}
        print(f"torch cuda: float {out['torch_cuda']['float_samples_per_s']:.0f} samples/s, sound "
              f"{out['torch_cuda']['sound_samples_per_s']:.0f} samples/s, sound/float time "
              f"{out['torch_cuda']['sound_over_float']:.3f}")
    for prov in ort_gpu:
        _check_budget(f"the ONNX {prov} sampling benchmark")
        s = OnnxSampler(default_model_path(0.25), sigma=0.25, batch_size=10_000,
                        providers=[prov, "CPUExecutionProvider"])
        s.counts(x, 10_000, 0)
        ts = []
        for r in range(reps):
            t0 = time.perf_counter()
            s.counts(x, n, r)
            ts.append(time.perf_counter() - t0)
        out[f"onnx_{prov}"] = {"n": n, "reps": reps, "active_providers": s.providers,
                               "samples_per_s": n / statistics.median(ts), "seconds": ts}
        print(f"onnx {prov}: {n / statistics.median(ts):.0f} samples/s")
    return out


def pipeline(limit: int, n: int) -> dict:
    from backends import TorchSampler, load_digits_split
    from backends.models import load_torch_model
    from radius import certify_dataset

    x, y = load_digits_split("test")
    out = {}
    for noise in ("float", "sound"):
        _check_budget(f"the {noise}-noise pipeline benchmark")
        s = TorchSampler(load_torch_model(0.25), sigma=0.25, device="cuda", batch_size=10_000, noise=noise,
                         **({"grid": "1/16"} if noise == "sound" else {}))
        t0 = time.perf_counter()
        certs = certify_dataset(s, x, y, sigma=0.25, n0=100, n=n, radius="Rmono", reduction="cohen", limit=limit,
                                progress=False)
        secs = time.perf_counter() - t0
        acc = float(np.mean([c.prediction == yy for c, yy in zip(certs, y)]))
        out[noise] = {"inputs": limit, "n": n, "seconds": secs, "inputs_per_s": limit / secs,
                      "certified_accuracy_r0": acc}
        print(f"pipeline cuda {noise}: {limit} inputs, n={n}: {secs:.1f} s, certified accuracy at r=0 {acc:.3f}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="GPU readiness check")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_check.json"))
    p.add_argument("--test-timeout", type=float, default=150.0)
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    _DEADLINE[0] = t_start + BUDGET_S
    import onnxruntime
    import torch

    cuda = bool(torch.cuda.is_available())
    ort_gpu = [pv for pv in GPU_PROVIDERS if pv in onnxruntime.get_available_providers()]
    result = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "torch": torch.__version__, "torch_cuda_build": torch.version.cuda,
                          "torch_cuda_available": cuda,
                          "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                          "onnxruntime": onnxruntime.__version__,
                          "onnxruntime_providers": onnxruntime.get_available_providers(),
                          "load_average_at_start": os.getloadavg()}}
    result["gpu_tests"] = run_gpu_tests(args.test_timeout)
    status, code = "ok", 0
    if not cuda and not ort_gpu:
        status = "skipped"
        result["reason"] = ("no GPU: torch.cuda.is_available() is False and onnxruntime has no CUDA/TensorRT "
                            f"execution provider (providers: {onnxruntime.get_available_providers()})")
        if result["gpu_tests"]["returncode"] != 0:
            status, code = "failed", 1
    else:
        try:
            if result["gpu_tests"]["returncode"] != 0:
                raise RuntimeError(f"gpu tests failed: {result['gpu_tests']['summary']}")
            result["sampling"] = sampling(200_000, 6, cuda, ort_gpu)
            if cuda:
                result["pipeline"] = pipeline(100, 10_000)
        except Exception as e:  # recorded in the JSON, exit code 1
            status, code = "failed", 1
            result["error"] = f"{type(e).__name__}: {e}"
    result["status"] = status
    result["seconds"] = time.perf_counter() - t_start
    result["machine"]["load_average_at_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if status == "skipped":
        print(f"gpu_check: SKIPPED for lack of a GPU ({result['reason']}); gpu tests: "
              f"{result['gpu_tests']['summary'][-1] if result['gpu_tests']['summary'] else '?'}; wrote {out}")
    else:
        print(f"gpu_check: {status.upper()} in {result['seconds']:.0f} s; wrote {out}"
              + (f"; {result['error']}" if "error" in result else ""))
    return code


if __name__ == "__main__":
    sys.exit(main())
