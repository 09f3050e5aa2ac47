"""Run-to-run variation of the sequential ``bound="table"`` runs of ``benchmarks/sequential.py --table`` (issue 13).

The table scheduler reads the estimation labels one at a time, so the request sizes (``batch_size``, ``growth``)
never change a decision; they change which noise is drawn (seeds are per request) and how many rows of the last
model batch are drawn past the stopping time (about 3 % of the passes). Two runs of the same procedure with
different seeds therefore differ in forward passes and certified accuracy by Monte Carlo noise alone. This script
repeats the real-scheduler run (shipped digits ONNX models, first 200 test inputs, alpha = 0.001, radii 0.25 /
0.5 / 0.75 / 1, max_n = 1e5, futility z = 2, final_share = 0.5, batch 200, growth 2, n0 = 100) for run seeds
0..S-1 and reports, per (sigma, radius kind), the passes and accuracies of every seed and their means.

Run: ``.venv/bin/python benchmarks/sequential_seeds.py --seeds 4`` (about 20 s per run on an idle 2-core
machine). Writes ``benchmarks/results/sequential_table_seeds.json``.

``--fixed-sim 8`` instead prints the simulated fixed-n Cohen reference of ``docs/sequential.md`` (n = 1e5, the
estimated class probabilities of ``benchmarks/frontier.py``) averaged over that many stream seeds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RADII = (0.25, 0.5, 0.75, 1.0)
FIXED_PASSES = 200 * (100_000 + 100)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.25, 0.5])
    ap.add_argument("--kinds", nargs="+", default=["Rmono", "R2"])
    ap.add_argument("--growth", type=float, default=2.0)
    ap.add_argument("--futility-z", type=float, default=2.0)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "sequential_table_seeds.json"))
    ap.add_argument("--fixed-sim", type=int, default=0, help="only the simulated fixed-n reference, over N seeds")
    a = ap.parse_args(argv)
    if a.fixed_sim:
        return fixed_sim(a.fixed_sim, a.sigmas, a.kinds)
    from backends.models import default_model_path, load_digits_split
    from backends.onnx_sampler import OnnxSampler
    from radius.engines.sequential import certify_dataset_sequential

    xs, ys = load_digits_split("test")
    xs, ys = xs[:200], ys[:200]
    out = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
           "config": {"inputs": 200, "alpha": 0.001, "radii": RADII, "max_n": 100_000, "futility_z": a.futility_z,
                      "final_share": 0.5, "batch_size": 200, "growth": a.growth, "n0": 100,
                      "model_batch_size": 1000, "seeds": a.seeds},
           "runs": {}}
    for sigma in a.sigmas:
        s = OnnxSampler(default_model_path(sigma), sigma=sigma, batch_size=1000, providers=["CPUExecutionProvider"])
        for kind in a.kinds:
            rows = []
            for seed in range(a.seeds):
                t0 = time.perf_counter()
                run = certify_dataset_sequential(s, xs, ys, sigma=sigma, alpha=0.001, radii=RADII, max_n=100_000,
                                                 n0=100, batch_size=200, growth=a.growth, seed=seed, bound="table",
                                                 radius_kind=kind, futility_z=a.futility_z, final_share=0.5,
                                                 model_batch_size=1000, progress=False)
                used = sum(c.n + c.n0 for c in run.certificates)
                rows.append({"seed": seed, "forward_passes": int(run.forward_passes),
                             "drawn_past_stop": int(run.forward_passes - used),
                             "certified_accuracy_pct": {str(r): 100 * run.certified_accuracy(r) for r in RADII},
                             "wall_s": time.perf_counter() - t0})
                print(f"sigma={sigma:g} {kind} seed={seed}: {run.forward_passes:,} passes "
                      f"({FIXED_PASSES / run.forward_passes:.2f}x), {rows[-1]['certified_accuracy_pct']}", flush=True)
            fp = np.array([r["forward_passes"] for r in rows])
            acc = {str(r): float(np.mean([x["certified_accuracy_pct"][str(r)] for x in rows])) for r in RADII}
            out["runs"][f"sigma={sigma:g} {kind}"] = {
                "per_seed": rows, "mean_forward_passes": float(fp.mean()),
                "x_fewer_than_fixed_n_of_mean": FIXED_PASSES / float(fp.mean()),
                "mean_certified_accuracy_pct": acc}
            print(f"sigma={sigma:g} {kind}: mean {fp.mean():,.0f} passes ({FIXED_PASSES / fp.mean():.2f}x); "
                  f"mean accuracy {acc}", flush=True)
            with open(a.out, "w") as fh:
                json.dump(out, fh, indent=2)
    print(f"wrote {a.out}")


def fixed_sim(seeds: int, sigmas, kinds):
    """Mean certified accuracy of fixed-n Cohen on simulated streams (``frontier.make_stream``) over ``seeds``."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import frontier as F

    for sigma in sigmas:
        probs, labels, _ = F.load_probs(sigma)
        probs, labels = probs[:200], labels[:200]
        acc = {k: [] for k in kinds}
        for seed in range(seeds):
            streams = [F.make_stream(probs[i], labels[i], i, F.N_FIXED, seed=seed) for i in range(len(labels))]
            for kind in kinds:
                outs = [F.fixed_n_cohen(st, sigma, kind) for st in streams]
                acc[kind].append([100 * np.mean([o.certified[float(r)] and st.top == st.label
                                                  for o, st in zip(outs, streams)]) for r in F.RADII])
        for kind, v in acc.items():
            v = np.array(v)
            print(f"sigma={sigma:g} {kind}: fixed-n mean of {seeds} stream seeds {v.mean(axis=0).round(2).tolist()}, "
                  f"sd {v.std(axis=0).round(2).tolist()}")


if __name__ == "__main__":
    main()
