"""Speed of one exact trinomial margin bound on fresh count vectors, next to Bonferroni in the same run.

Median wall time of ``margin_lower_bound(method="exact")`` at n = 100, 10^4
and 10^5 (alpha = 0.001, the project default), linear and probit margins, for
the default statistic (``"bonferroni"``, theory §4.7) and the difference
statistic.  Every timed call gets a count vector never seen before (drawn
around x3 = 5 %, 10 % and 40 % of n), so the memo cache of results is never hit.
What *is* cached, as in a real run where n and alpha are fixed: the
Clopper–Pearson tables of the Bonferroni staircase, which depend on
``(n, alpha)`` only; their one-off build time is reported separately
(``table_build_s``).  Baseline in the same run: the Bonferroni method (two
scalar Clopper–Pearson calls); the JSON records the ratios and the load
average (the machine is shared).

``--extremes`` also times the default exact bound at n = 10^6, 10^7, 10^8 and
alpha = 1e-3, 1e-12 (x = (0.6n, 0.3n) and x1 = n) and the difference statistic
at n = 10^6 (issue 10: each case should take <= 1 s).

Each row also records the median number of certified tail evaluations per
bound (``MarginBound.nodes``), a machine-independent measure of the work.

Targets (issue 10): n = 10^5: <= 10 ms linear, <= 20 ms probit; n = 100: <= 1 ms.

Usage::

    .venv/bin/python benchmarks/exact_speed.py [--reps 15] [--extremes]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numba  # noqa: E402

from confbounds import margin as mg  # noqa: E402
from confbounds.margin import margin_lower_bound  # noqa: E402

ALPHA = 0.001
FRACTIONS = [(0.90, 0.05), (0.60, 0.30), (0.50, 0.10)]  # x3 = 5%, 10%, 40%


def fresh_vectors(n, f1, f2, reps, rng, seen):
    out = []
    sd = max(1, int(np.sqrt(n) * 3))
    while len(out) < reps:
        x1 = int(f1 * n) + int(rng.integers(-sd, sd + 1))
        x2 = int(f2 * n) + int(rng.integers(-sd, sd + 1))
        if x1 < 0 or x2 < 0 or x1 + x2 > n or (n, x1, x2) in seen:
            continue
        seen.add((n, x1, x2))
        out.append((x1, x2))
    return out


def timed(fn):
    t0 = time.perf_counter()
    v = fn()
    return time.perf_counter() - t0, v


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15, help="fresh vectors per (n, fraction, margin, statistic)")
    ap.add_argument("--ns", default="100,10000,100000")
    ap.add_argument("--extremes", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "exact_speed.json"))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(1)
    seen: set = set()
    load_before = os.getloadavg()

    t0 = time.perf_counter()
    for m in ("linear", "probit"):
        margin_lower_bound(80, 10, 100, ALPHA, margin=m)
        margin_lower_bound(80, 10, 100, ALPHA, margin=m, statistic="difference")
    compile_s = time.perf_counter() - t0

    rows = []
    tables = {}
    for n in [int(v) for v in args.ns.split(",")]:
        for margin in ("linear", "probit"):
            dt, _ = timed(lambda: mg._pair_tables(n, ALPHA, margin, 100))
            tables[f"{margin}_n{n}"] = dt
        for f1, f2 in FRACTIONS:
            for margin in ("linear", "probit"):
                for statistic in ("bonferroni", "difference"):
                    vec = fresh_vectors(n, f1, f2, args.reps, rng, seen)
                    ex, bf, gains, nodes = [], [], [], []
                    for x1, x2 in vec:
                        d1, r = timed(lambda: margin_lower_bound(x1, x2, n, ALPHA, margin=margin,
                                                                 statistic=statistic, full=True))
                        e = r.bound
                        nodes.append(r.nodes)
                        d2, b = timed(lambda: margin_lower_bound(x1, x2, n, ALPHA, margin=margin,
                                                                 method="bonferroni"))
                        ex.append(d1)
                        bf.append(d2)
                        gains.append(e - b)
                    row = dict(n=n, f1=f1, f2=f2, margin=margin, statistic=statistic, vectors=len(vec),
                               exact_ms=statistics.median(ex) * 1e3, bonferroni_ms=statistics.median(bf) * 1e3,
                               ratio_exact_to_bonferroni=statistics.median(ex) / statistics.median(bf),
                               mean_gain_over_bonferroni=float(np.mean(gains)),
                               tail_evaluations_median=float(statistics.median(nodes)))
                    rows.append(row)
                    print(f"n={n:>6} x~({f1},{f2}) {margin:6s} {statistic:10s} exact {row['exact_ms']:8.2f} ms  "
                          f"bonferroni {row['bonferroni_ms']:6.3f} ms  (x{row['ratio_exact_to_bonferroni']:6.0f})  "
                          f"gain {row['mean_gain_over_bonferroni']:+.5f}  tails {row['tail_evaluations_median']:.0f}",
                          flush=True)

    med = {}
    for r in rows:
        key = f"{r['statistic']}_{r['margin']}_n{r['n']}_median_ms"
        med.setdefault(key, []).append(r["exact_ms"])
    med = {k: statistics.median(v) for k, v in med.items()}

    extremes = []
    if args.extremes:
        for n in (10**6, 10**7, 10**8):
            for alpha in (1e-3, 1e-12):
                for x1, x2 in ((int(0.6 * n), int(0.3 * n)), (n, 0)):
                    for margin in ("linear", "probit"):
                        stats_ = ["bonferroni"] + (["difference"] if n <= 10**6 else [])
                        for statistic in stats_:
                            dt, e = timed(lambda: margin_lower_bound(x1, x2, n, alpha, margin=margin,
                                                                     statistic=statistic))
                            b = margin_lower_bound(x1, x2, n, alpha, margin=margin, method="bonferroni")
                            extremes.append(dict(n=n, alpha=alpha, x1=x1, x2=x2, margin=margin,
                                                 statistic=statistic, seconds=dt, exact=e, bonferroni=b))
                            print(f"extreme n={n:>9} alpha={alpha:g} x=({x1},{x2}) {margin:6s} {statistic:10s} "
                                  f"{dt:7.3f} s  exact {e:+.6f}  bonferroni {b:+.6f}", flush=True)

    out = dict(
        benchmark="exact_speed", alpha=ALPHA,
        machine=dict(platform=platform.platform(), processor=platform.processor(), cpu_count=os.cpu_count(),
                     load_average_before=load_before, load_average_after=os.getloadavg(),
                     python=sys.version.split()[0], numpy=np.__version__, numba=numba.__version__),
        numba_compile_or_cache_load_s=compile_s, table_build_s=tables,
        rows=rows, medians=med, extremes=extremes,
        targets={"n100_ms": 1.0, "linear_n100000_ms": 10.0, "probit_n100000_ms": 20.0},
        notes="fresh count vectors (no memo hits); Clopper-Pearson staircase tables cached per (n, alpha)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(med, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
