"""Speed of one exact trinomial margin bound, next to clopper_pearson in the same run.

Median wall time of one ``margin_lower_bound(method="exact")`` at n = 100,
10^4 and 10^5 for the linear and probit margins (alpha = 0.001, the project
default), on three count vectors per n (x3 = 5%, 10% and 40% of n).  The memo
cache of exact results is cleared before every timed call (tables of log k!
stay cached per n, as in a real run where n is fixed).  Baseline: one scalar
``clopper_pearson`` call and the Bonferroni method, timed in the same run; the
JSON records the ratios.

Targets (issue 3): <= 5 ms at n = 100; <= 10 ms linear and <= 50 ms probit at
n = 10^5.  The signomial (GP) route is benchmarked by the owner of
``confbounds/signomial.py``; its slot in the JSON is ``"signomial"``.

Usage::

    .venv/bin/python benchmarks/exact_speed.py            # full run
    .venv/bin/python benchmarks/exact_speed.py --quick    # n = 100 and 10^4 only
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

from confbounds import clopper_pearson  # noqa: E402
from confbounds import margin as mg  # noqa: E402
from confbounds.margin import margin_lower_bound  # noqa: E402

ALPHA = 0.001
FRACTIONS = [(0.90, 0.05), (0.60, 0.30), (0.50, 0.10)]  # x3 = 5%, 10%, 40%


def _median_time(fn, reps, clear=False):
    ts = []
    for _ in range(reps):
        if clear:
            mg._exact_cached.cache_clear()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip n = 10^5")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "exact_speed.json"))
    args = ap.parse_args(argv)
    ns = [100, 10_000] if args.quick else [100, 10_000, 100_000]

    t0 = time.perf_counter()
    margin_lower_bound(80, 10, 100, ALPHA)
    margin_lower_bound(80, 10, 100, ALPHA, margin="probit")
    compile_s = time.perf_counter() - t0

    rows = []
    for n in ns:
        reps = {100: 30, 10_000: 5, 100_000: 3}[n]
        for f1, f2 in FRACTIONS:
            x1, x2 = int(f1 * n), int(f2 * n)
            cp = _median_time(lambda: clopper_pearson(x1, n, ALPHA), 200)
            for margin in ("linear", "probit"):
                margin_lower_bound(x1, x2, n, ALPHA, margin=margin)  # tables for this n
                ex = _median_time(lambda: margin_lower_bound(x1, x2, n, ALPHA, margin=margin), reps, clear=True)
                bf = _median_time(lambda: margin_lower_bound(x1, x2, n, ALPHA, margin=margin,
                                                             method="bonferroni"), 100)
                mg._exact_cached.cache_clear()
                r = margin_lower_bound(x1, x2, n, ALPHA, margin=margin, full=True)
                b = margin_lower_bound(x1, x2, n, ALPHA, margin=margin, method="bonferroni")
                row = dict(n=n, x1=x1, x2=x2, x3=n - x1 - x2, margin=margin, exact_ms=ex * 1e3,
                           bonferroni_ms=bf * 1e3, clopper_pearson_ms=cp * 1e3, ratio_exact_to_cp=ex / cp,
                           exact_bound=r.bound, bonferroni_bound=b, tail_evaluations=r.nodes)
                rows.append(row)
                print(f"n={n:>6} x=({x1},{x2},{n - x1 - x2}) {margin:6s} exact {ex * 1e3:9.2f} ms "
                      f"(x{ex / cp:8.0f} CP)  bonferroni {bf * 1e3:6.3f} ms  CP {cp * 1e3:6.3f} ms  "
                      f"evals {r.nodes:5d}  exact {r.bound:+.5f} bonf {b:+.5f}", flush=True)

    med = {}
    for n in ns:
        for margin in ("linear", "probit"):
            med[f"{margin}_n{n}_median_ms"] = statistics.median(
                r["exact_ms"] for r in rows if r["n"] == n and r["margin"] == margin)
    targets = {"n100_ms": 5.0, "linear_n100000_ms": 10.0, "probit_n100000_ms": 50.0}
    out = dict(
        benchmark="exact_speed",
        alpha=ALPHA,
        machine=dict(platform=platform.platform(), processor=platform.processor(), cpu_count=os.cpu_count(),
                     load_average=os.getloadavg(), python=sys.version.split()[0], numpy=np.__version__,
                     numba=numba.__version__),
        numba_compile_or_cache_load_s=compile_s,
        rows=rows,
        medians=med,
        targets=targets,
        signomial=dict(note="signomial route at n = 100 is timed by the owner of confbounds/signomial.py"),
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(med, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
