"""Benchmark: anytime-valid sequential certification vs fixed-n Cohen on the shipped digits ONNX model.

Fixed n (Cohen, Rosenfeld & Kolter 2019): n0 = 100 selection + n = 100,000 estimation samples per input,
Clopper-Pearson at alpha, R_mono (``radius.certificate.certify(..., radius="Rmono", reduction="cohen")``).
Sequential: ``radius.engines.sequential.certify_dataset_sequential`` at the same alpha, deciding radii 0.25, 0.5, 0.75,
max_n = 100,000, once per ``--bounds`` entry (default: the beta-binomial mixture CS and Clopper-Pearson at the
planned looks); the mixing scheduler packs several inputs per forward pass.  The fixed-n counts are cached in
``--cache`` so the sequential part can be rerun alone.

Reports total forward passes (ratio), certified accuracy at each radius for both, wall-clock of both runs and the
scheduler's batch fill rate.  Writes benchmarks/results/sequential.json.

    .venv/bin/python benchmarks/sequential.py --inputs 200

``--table`` (issue 13): ``bound="table"`` (the mixture CS read after every sample through threshold tables,
look-ahead, futility ``z``, a final Clopper-Pearson look at ``max_n`` with ``final_share`` of alpha) through the
real mixing scheduler and the shipped digits ONNX model, for ``--sigmas``, Rmono and R2 (two one-sided CSs on
selection buckets), radii 0.25 / 0.5 / 0.75 / 1.0, alpha = 0.001.  The fixed-n reference (n = 100,000, Cohen) is
*not* rerun here (2e7 forward passes per sigma): its forward passes are ``inputs * (n + n0)`` and its certified
accuracy is read from ``benchmarks/results/frontier.json`` (simulated streams from class probabilities estimated
with 5e4 / 1e5 model samples; benchmarks/frontier.py), as is the same procedure run there on simulated streams
("ours+final CP"), so the real-scheduler figures can be checked against the simulation.  Writes
``benchmarks/results/sequential_table.json``.

    nice .venv/bin/python benchmarks/sequential.py --table --sigmas 0.5 0.25
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from backends.models import default_model_path, load_digits_split  # noqa: E402
from backends.onnx_sampler import OnnxSampler  # noqa: E402
from radius.certificate import certify  # noqa: E402
from radius.engines.sequential import certify_dataset_sequential  # noqa: E402
from radius.run.spec import input_seeds  # noqa: E402

SIGMA, ALPHA, RADII = 0.25, 0.001, (0.25, 0.5, 0.75)


def fixed_n(sampler, xs, ys, n, n0, seed, cache):
    if cache and os.path.exists(cache):
        d = np.load(cache)
        if d["sel"].shape[0] >= len(xs) and int(d["n"]) == n:
            return d["sel"][:len(xs)], d["est"][:len(xs)], float(d["wall"]) * len(xs) / d["sel"].shape[0], True
    t0 = time.perf_counter()
    sel, est = [], []
    for i, x in enumerate(xs):
        s_sel, s_est = input_seeds(seed, i)
        sel.append(sampler.counts(x, n0, s_sel))
        est.append(sampler.counts(x, n, s_est))
        print(f"\rfixed-n {i + 1}/{len(xs)} ({time.perf_counter() - t0:.0f} s)", end="", file=sys.stderr)
    print(file=sys.stderr)
    wall = time.perf_counter() - t0
    sel, est = np.array(sel), np.array(est)
    if cache:
        np.savez(cache, sel=sel, est=est, n=n, wall=wall)
    return sel, est, wall, False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=200, help="first N inputs of the digits test split")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--n0", type=int, default=100)
    ap.add_argument("--max-n", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=200, help="first estimation batch of the sequential run")
    ap.add_argument("--model-batch-size", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/confbounds_sequential_fixed_n.npz",
                    help="cache of the fixed-n counts ('' disables)")
    ap.add_argument("--growth", type=float, default=2.0)
    ap.add_argument("--futility-z", type=float, default=2.0)
    ap.add_argument("--final-share", type=float, default=0.5, help="cp-looks: share of alpha at the last look")
    ap.add_argument("--lower-share", type=float, default=0.9, help="cp-looks: share of alpha on the lower side")
    ap.add_argument("--bounds", nargs="+", default=["mixture", "cp-looks"], help="sequential bounds to run")
    ap.add_argument("--skip-sequential", action="store_true")
    ap.add_argument("--table", action="store_true", help="run bound='table' (Rmono and R2) instead; see the docstring")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.25, 0.5], help="(--table) noise levels")
    ap.add_argument("--kinds", nargs="+", default=["Rmono", "R2"], help="(--table) radius kinds")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                   "sequential.json"))
    args = ap.parse_args(argv)
    if args.table:
        return table_main(args)

    xs, ys = load_digits_split("test")
    xs, ys = xs[:args.inputs], ys[:args.inputs]
    sampler = OnnxSampler(default_model_path(SIGMA), sigma=SIGMA, batch_size=args.model_batch_size,
                          providers=["CPUExecutionProvider"])
    sampler.counts(xs[0], args.model_batch_size, 0)  # warm-up

    sel, est, wall_fixed, cached = fixed_n(sampler, xs, ys, args.n, args.n0, args.seed, args.cache)
    certs = [certify(s, e, sigma=SIGMA, alpha=ALPHA, radius="Rmono", reduction="cohen") for s, e in zip(sel, est)]
    fixed_acc = {r: float(np.mean([c.prediction == y and c.radius >= r for c, y in zip(certs, ys)])) for r in RADII}
    fixed_passes = int(len(xs) * (args.n + args.n0))
    result = {
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "config": {"sigma": SIGMA, "alpha": ALPHA, "radii": RADII, "inputs": len(xs), "n_fixed": args.n,
                   "n0": args.n0, "max_n": args.max_n, "batch_size": args.batch_size,
                   "model_batch_size": args.model_batch_size, "seed": args.seed},
        "fixed_n": {"forward_passes": fixed_passes, "wall_s": wall_fixed, "wall_from_cache": cached,
                    "certified_accuracy": fixed_acc},
    }
    print(f"fixed n: {fixed_passes} passes, {wall_fixed:.1f} s, certified accuracy {fixed_acc}")
    result["sequential"] = {}
    for bound in ([] if args.skip_sequential else args.bounds):
        run = certify_dataset_sequential(sampler, xs, ys, sigma=SIGMA, alpha=ALPHA, radii=RADII, max_n=args.max_n,
                                         n0=args.n0, batch_size=args.batch_size, growth=args.growth, seed=args.seed,
                                         bound=bound, futility_z=args.futility_z, final_share=args.final_share,
                                         lower_share=args.lower_share,
                                         model_batch_size=args.model_batch_size, progress=True)
        seq_acc = {r: run.certified_accuracy(r) for r in RADII}
        fp = np.array([c.forward_passes for c in run.certificates])
        stops, decisions = {}, {r: {} for r in RADII}
        for c in run.certificates:
            stops[c.stopped_by] = stops.get(c.stopped_by, 0) + 1
            for r in RADII:
                decisions[r][c.decisions[r]] = decisions[r].get(c.decisions[r], 0) + 1
        rec = {
            "bound": bound, "futility_z": args.futility_z, "growth": args.growth, "max_n": args.max_n,
            "batch_size": args.batch_size,
            **({"final_share": args.final_share, "lower_share": args.lower_share} if bound == "cp-looks" else {}),
            "forward_passes": int(run.forward_passes), "wall_s": run.wall_time, "model_calls": run.model_calls,
            "fill_rate": run.fill_rate, "certified_accuracy": seq_acc,
            "per_input_forward_passes": {"median": float(np.median(fp)), "mean": float(fp.mean()),
                                         "p90": float(np.quantile(fp, 0.9)), "max": int(fp.max())},
            "stopped_by": stops, "decisions": decisions,
            "ratio_forward_passes": fixed_passes / run.forward_passes,
            "ratio_wall": wall_fixed / run.wall_time,
            "accuracy_difference_pp": {r: 100 * (seq_acc[r] - fixed_acc[r]) for r in RADII},
            "same_top_class_as_fixed": float(np.mean([a.top == b.top for a, b in zip(run.certificates, certs)])),
        }
        name = bound if bound != "cp-looks" else f"cp-looks(final={args.final_share:g},lower={args.lower_share:g})"
        result["sequential"][name] = rec
        print(f"sequential ({bound}): {run.forward_passes} passes ({rec['ratio_forward_passes']:.1f}x fewer), "
              f"{run.wall_time:.1f} s ({rec['ratio_wall']:.1f}x faster), fill rate {run.fill_rate:.4f}, "
              f"median per input {np.median(fp):.0f}")
        print(f"  certified accuracy {seq_acc}; difference (pp) {rec['accuracy_difference_pp']}; stops {stops}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    if os.path.exists(args.out):  # keep the sequential runs of other configurations on the same baseline
        with open(args.out) as fh:
            old = json.load(fh)
        same = (old.get("fixed_n", {}).get("forward_passes") == fixed_passes
                and old.get("config", {}).get("inputs") == len(xs))
        if same:
            result["sequential"] = {**old.get("sequential", {}), **result["sequential"]}
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2, default=str)
    print(f"wrote {args.out}")


TABLE_RADII = (0.25, 0.5, 0.75, 1.0)


def table_main(args):
    """``--table``: bound='table' through the real scheduler (module docstring)."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "results", "sequential_table.json")
    frontier = os.path.join(here, "results", "frontier.json")
    ref = json.load(open(frontier))["sigmas"] if os.path.exists(frontier) else {}
    result = json.load(open(out)) if os.path.exists(out) else {"runs": {}}
    xs, ys = load_digits_split("test")
    xs, ys = xs[:args.inputs], ys[:args.inputs]
    fixed_passes = int(len(xs) * (args.n + args.n0))
    for sigma in args.sigmas:
        sampler = OnnxSampler(default_model_path(sigma), sigma=sigma, batch_size=args.model_batch_size,
                              providers=["CPUExecutionProvider"])
        sampler.counts(xs[0], args.model_batch_size, 0)  # warm-up
        for kind in args.kinds:
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            run = certify_dataset_sequential(sampler, xs, ys, sigma=sigma, alpha=ALPHA, radii=TABLE_RADII,
                                             max_n=args.max_n, n0=args.n0, batch_size=args.batch_size,
                                             growth=args.growth, seed=args.seed, bound="table", radius_kind=kind,
                                             futility_z=args.futility_z, final_share=args.final_share,
                                             model_batch_size=args.model_batch_size, progress=True)
            wall = time.perf_counter() - t0
            acc = {str(r): 100 * run.certified_accuracy(r) for r in TABLE_RADII}
            fp = np.array([c.forward_passes for c in run.certificates])
            key = f"sigma={sigma:g} {kind} max_n={args.max_n} z={args.futility_z:g} final_share={args.final_share:g}"
            sref = ref.get(f"{sigma:g}" if f"{sigma:g}" in ref else str(sigma), {}).get("methods", {})
            fixed = sref.get("fixed-n Cohen", {}).get(kind, {})
            sim = sref.get(f"ours+final CP (max_n={args.max_n}, z={args.futility_z:g})", {}).get(kind, {})
            rec = {
                "sigma": sigma, "radius_kind": kind, "alpha": ALPHA, "inputs": len(xs), "max_n": args.max_n,
                "futility_z": args.futility_z, "final_share": args.final_share, "n0": args.n0,
                "batch_size": args.batch_size, "growth": args.growth, "model_batch_size": args.model_batch_size,
                "forward_passes": int(run.forward_passes), "model_calls": int(run.model_calls),
                "fill_rate": run.fill_rate, "wall_s": wall, "load_before": load0, "load_after": os.getloadavg()[0],
                "certified_accuracy_pct": acc,
                "per_input_forward_passes": {"median": float(np.median(fp)), "p90": float(np.quantile(fp, 0.9)),
                                             "max": int(fp.max())},
                "fixed_n_forward_passes": fixed_passes, "x_fewer_than_fixed_n": fixed_passes / run.forward_passes,
                "fixed_n_certified_accuracy_pct_simulated": fixed.get("certified_accuracy"),
                "same_procedure_simulated": {"forward_passes": sim.get("forward_passes"),
                                             "certified_accuracy": sim.get("certified_accuracy")},
            }
            result["runs"][key] = rec
            result["machine"] = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                 "python": platform.python_version()}
            print(f"{key}: {run.forward_passes:,} passes ({rec['x_fewer_than_fixed_n']:.1f}x fewer than fixed n), "
                  f"fill {run.fill_rate:.3f}, {wall:.0f} s, load {load0:.1f}; acc {acc}; fixed-n (simulated) "
                  f"{fixed.get('certified_accuracy')}; same procedure simulated {sim.get('forward_passes')} "
                  f"{sim.get('certified_accuracy')}")
            with open(out, "w") as fh:
                json.dump(result, fh, indent=2, default=str)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
