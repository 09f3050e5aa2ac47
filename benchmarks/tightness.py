"""Tightness: the default exact margin bound (Bonferroni statistic, theory §4.7) versus Bonferroni.

For n in {20, 100, 1000, 10^4, 10^5} (every count vector for n <= 100, a random
sample of vectors from Dirichlet(1, 1, 1) proportions above), compare
``margin_lower_bound(method="exact")`` (default statistic ``"bonferroni"``) with
``method="bonferroni"`` for the linear and probit margins: the fraction of
vectors where exact >= Bonferroni (must be 100 %: it holds by construction),
the mean and maximum gain (exact minus Bonferroni, over vectors where both are
finite) and how often the inversion certified something above ``B(x)``
(branch ``"exact"`` rather than ``"floor"``).  For comparison the older
difference statistic ``X1 - X2`` is run on the same vectors (fraction >=
Bonferroni and mean gain): it is not dominating.  Printed lines and the JSON
"x1>x2" entries use only vectors with x1 > x2 (the ones that can certify).

Usage::

    .venv/bin/python benchmarks/tightness.py [--alpha 0.001] [--sample 300] [--sample-1e5 100]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confbounds.margin import margin_lower_bound  # noqa: E402


def vectors(n, sample, rng):
    if n <= 100:
        return [(a, b) for a in range(n + 1) for b in range(n + 1 - a)]
    out = set()
    while len(out) < sample:
        q = rng.dirichlet([1.0, 1.0, 1.0])
        x = rng.multinomial(n, q)
        out.add((int(x[0]), int(x[1])))
    return sorted(out)


def summarise(ex, bf):
    ex = np.asarray(ex, dtype=float)
    bf = np.asarray(bf, dtype=float)
    fin = np.isfinite(ex) & np.isfinite(bf)
    gain = ex[fin] - bf[fin]
    return dict(vectors=int(ex.size), frac_ge=float(np.mean(ex >= bf)) if ex.size else float("nan"),
                both_finite=int(fin.sum()),
                mean_gain=float(gain.mean()) if gain.size else float("nan"),
                max_gain=float(gain.max()) if gain.size else float("nan"),
                min_gain=float(gain.min()) if gain.size else float("nan"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpha", type=float, default=0.001)
    ap.add_argument("--sample", type=int, default=300, help="sampled vectors at n = 1e3 and 1e4")
    ap.add_argument("--sample-1e5", type=int, default=100, help="sampled vectors at n = 1e5")
    ap.add_argument("--ns", default="20,100,1000,10000,100000")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tightness.json"))
    args = ap.parse_args(argv)
    alpha = args.alpha
    rng = np.random.default_rng(0)
    results = []
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    for n in [int(v) for v in args.ns.split(",")]:
        vec = vectors(n, args.sample_1e5 if n >= 100_000 else args.sample, rng)
        rel = np.array([a > b for a, b in vec])
        for margin in ("linear", "probit"):
            t0 = time.perf_counter()
            bf = [margin_lower_bound(a, b, n, alpha, margin=margin, method="bonferroni") for a, b in vec]
            t_bf = time.perf_counter() - t0
            t0 = time.perf_counter()
            full = [margin_lower_bound(a, b, n, alpha, margin=margin, full=True) for a, b in vec]
            t_ex = time.perf_counter() - t0
            ex = [r.bound for r in full]
            above = float(np.mean([r.branch == "exact" for r, m in zip(full, rel) if m])) if rel.any() else 0.0
            dif = [margin_lower_bound(a, b, n, alpha, margin=margin, statistic="difference") for a, b in vec]
            row = dict(n=n, margin=margin, alpha=alpha, vectors=len(vec),
                       exact=summarise(ex, bf),
                       exact_x1_gt_x2=summarise(np.asarray(ex)[rel], np.asarray(bf)[rel]),
                       frac_certified_above_floor_x1_gt_x2=above,
                       difference=summarise(dif, bf),
                       difference_x1_gt_x2=summarise(np.asarray(dif)[rel], np.asarray(bf)[rel]),
                       seconds_exact=t_ex, seconds_bonferroni=t_bf)
            results.append(row)
            s, d = row["exact_x1_gt_x2"], row["difference_x1_gt_x2"]
            print(f"n={n:6d} {margin:6s} vectors={len(vec):5d}  exact>=bonf {row['exact']['frac_ge']:.3f} "
                  f"(x1>x2: {s['frac_ge']:.3f})  gain mean {s['mean_gain']:+.5f} max {s['max_gain']:+.5f} "
                  f"min {s['min_gain']:+.2e}  above floor {above:.2f}  | difference: >=bonf {d['frac_ge']:.3f} "
                  f"mean {d['mean_gain']:+.5f}  [{t_ex:.1f} s]", flush=True)
    out = dict(benchmark="tightness", alpha=alpha, statistic="bonferroni (default)",
               machine=dict(platform=platform.platform(), cpu_count=os.cpu_count(),
                            load_average_before=load_before, load_average_after=os.getloadavg(),
                            python=sys.version.split()[0]),
               seconds=time.perf_counter() - t_start, results=results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
