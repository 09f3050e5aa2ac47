"""A torch model certified plainly vs through the automatic ONNX export (``backends.export.auto_sampler``).

Run: ``nice .venv/bin/python benchmarks/torch_vs_onnx.py`` (``--inputs 10`` for a smoke run). Writes
``benchmarks/results/torch_vs_onnx.json``.

* Model: the bundled digits CNN as a torch module (``backends.models.load_torch_model(0.25)``), sigma 0.25.
* Work: certify the first K test inputs (default 100): ``n0 = 100`` selection and ``n = 10^4`` estimation counts
  per input (seeds ``2i`` and ``2i + 1``), then ``radius.certificate.certify`` (defaults: exact reduction, R2,
  alpha 0.001).
* Plain: ``TorchSampler(model, noise="numpy")`` with torch's default threads. Auto: ``auto_sampler(model)``
  (export cached by the model's hash; the one-off export and probe check are timed separately, as
  ``setup``). Both draw the same NumPy noise, so their certificates must be equal (checked and recorded).
* Before timing, one bound is computed so Numba's compilation is not charged to the first run.
* Repetitions alternate plain, auto, plain, auto, ...; medians are compared as ratio = plain / auto
  (target >= 2.5). Wall-clock and process CPU time (all threads) are both recorded with the load average:
  on a shared machine the wall-clock ratio is at the mercy of other processes, the CPU-time ratio much less.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIGMA = 0.25


def certify_all(sampler, xs, n0, n):
    from radius.certificate import certify

    out = []
    for i, x in enumerate(xs):
        sel = sampler.counts(x, n0, 2 * i)
        est = sampler.counts(x, n, 2 * i + 1)
        c = certify(sel, est, sigma=SIGMA)
        out.append((int(c.prediction), float(c.radius)))
    return out


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    res = fn()
    return res, time.perf_counter() - w, time.process_time() - c


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", type=int, default=100)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--n0", type=int, default=100)
    ap.add_argument("--reps", type=int, default=1)
    a = ap.parse_args(argv)

    import torch

    from backends.export import auto_sampler
    from backends.models import load_digits_split, load_torch_model
    from backends.torch_sampler import TorchSampler
    from radius.certificate import certify

    xs = load_digits_split("test")[0][: a.inputs]
    model = load_torch_model(SIGMA)
    certify(np.array([5, 95, 0]), np.array([30, 9970, 0]), sigma=SIGMA)  # compile (or load) the exact bound

    with tempfile.TemporaryDirectory() as cache:  # a fresh export cache: setup includes the export
        (auto, setup_wall, setup_cpu) = timed(lambda: auto_sampler(model, sigma=SIGMA, cache_dir=cache))
        (_, again_wall, again_cpu) = timed(lambda: auto_sampler(model, sigma=SIGMA, cache_dir=cache))
        plain = TorchSampler(model, sigma=SIGMA, noise="numpy", device="cpu")
        runs = {"plain": [], "auto": []}
        certs = {}
        load = [os.getloadavg()]
        for r in range(a.reps):
            for name, s in (("plain", plain), ("auto", auto)):
                res, w, c = timed(lambda: certify_all(s, xs, a.n0, a.n))
                runs[name].append({"wall_s": w, "cpu_s": c})
                certs.setdefault(name, res)
                assert certs[name] == res, f"{name}: certificates changed between repetitions"
                load.append(os.getloadavg())
                print(f"rep {r} {name:5s} wall {w:7.2f} s  cpu {c:7.2f} s  load {os.getloadavg()[0]:.1f}", flush=True)

    med = {k: {m: statistics.median(v[m] for v in runs[k]) for m in ("wall_s", "cpu_s")} for k in runs}
    same = certs["plain"] == certs["auto"]
    differ = [i for i, (p, q) in enumerate(zip(certs["plain"], certs["auto"])) if p != q]
    res = {
        "what": "certify K digits test inputs (n0=100, n=1e4, exact/R2, alpha=0.001): plain TorchSampler vs "
                "backends.export.auto_sampler (ONNX after the probe check)",
        "inputs": a.inputs, "n": a.n, "n0": a.n0, "reps": a.reps,
        "backend_chosen": auto.backend, "backend_reason": auto.backend_reason,
        "probe_max_abs_diff": auto.probe_max_abs_diff,
        "setup_first_wall_s": setup_wall, "setup_first_cpu_s": setup_cpu,
        "setup_cached_wall_s": again_wall, "setup_cached_cpu_s": again_cpu,
        "runs": runs, "median": med,
        "ratio_wall": med["plain"]["wall_s"] / med["auto"]["wall_s"],
        "ratio_cpu": med["plain"]["cpu_s"] / med["auto"]["cpu_s"],
        "same_certificates": same, "differing_inputs": differ,
        "certified": sum(1 for p, rad in certs["auto"] if p >= 0 and rad > 0),
        "torch_threads": torch.get_num_threads(),
        "load_average": load,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "onnxruntime": __import__("onnxruntime").__version__},
    }
    print(f"setup (export + probe) {setup_wall:.2f} s first, {again_wall:.2f} s cached; "
          f"plain {med['plain']['wall_s']:.1f} s, auto {med['auto']['wall_s']:.1f} s wall: ratio "
          f"{res['ratio_wall']:.2f} (cpu ratio {res['ratio_cpu']:.2f}); same certificates: {same}; "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    outdir = ROOT / "benchmarks" / "results"
    outdir.mkdir(parents=True, exist_ok=True)
    with open(outdir / "torch_vs_onnx.json", "w") as f:
        json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
