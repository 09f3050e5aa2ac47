"""Speed of the signomial/GP route (theory §4.5) against the certified curve search (theory §4.3).

Run: ``.venv/bin/python benchmarks/signomial_speed.py`` (``--quick`` for a smoke run, ``--ns 20 50 100 200``
to choose n).  Writes ``benchmarks/results/signomial_speed.json``.

For each n, ``cases`` random problems (t_obs, L) with the difference statistic (every fourth one with the
probit margin, the others linear) are drawn with a fixed seed: a random count vector and L zero to three
standard errors below its estimated margin, i.e. where a bound inversion tests; for each, ``signomial_sup`` (cvxpy GP condensation; a lower
bound of the sup, never a certificate) and ``confbounds.nuisance.certified_sup`` (certified branch-and-bound
on the curve, tol 1e-4; the baseline) are timed ``reps`` times (wall clock; the process CPU time of the signomial call is recorded too, being less
sensitive to other jobs on a shared machine), after one warm-up call.
Reported per n: median time of each, their ratio (signomial / certified), and the relative gap
``(certified.upper - signomial.value) / certified.upper`` (>= 0 expected; small means the GP found the
maximiser; the certified search stops at relative width 1e-4) and ``(signomial.value - certified.lower) /
certified.lower`` (> 0: the GP candidate beats the certified search's own best point).  Both formulations of ``signomial_sup`` are measured ("homogeneous", the default, and "simplex", theory §4.5's
literal form).  Target: median signomial time <= 2 s at n = 100.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cases(n, k, seed):
    """Problems near where a bound inversion tests: L a few standard errors below the estimate."""
    from scipy import special

    rng = np.random.default_rng(seed + n)
    out = []
    for i in range(k):
        margin = "probit" if i % 4 == 3 else "linear"
        x1 = int(rng.integers(n // 3, n + 1))
        x2 = int(rng.integers(0, n - x1 + 1))
        p1, p2 = x1 / n, x2 / n
        d = float(rng.uniform(0.0, 3.0)) * math.sqrt((p1 + p2 + 1.0 / n) / n) / 2.0
        if margin == "linear":
            L = float(np.clip(p1 - p2 - 2.0 * d, -0.95, 0.95))
        else:
            q1, q2 = max(p1 - d, 1e-3), min(max(p2 + d, 1e-3), 1.0 - 1e-3)
            L = float(special.ndtri(q1) - special.ndtri(q2))
        out.append((x1 - x2, L, margin))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--ns", type=int, nargs="+", default=[20, 50, 100, 200])
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--formulations", nargs="+", default=["homogeneous", "simplex"],
                    help="signomial_sup formulations to time (the first is the headline)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.ns, a.cases, a.reps = [20, 50], 3, 1

    from confbounds.nuisance import certified_sup
    from confbounds.signomial import signomial_sup

    signomial_sup(5, 20, 0.1)  # warm-up: cvxpy import, numba compilation
    certified_sup(5, 20, 0.1)

    rows = []
    for n in a.ns:
        cases = _cases(n, a.cases, a.seed)
        t_cert, certs = [], []
        for t_obs, L, margin in cases:
            tc = []
            for _ in range(a.reps):
                t0 = time.perf_counter()
                rc = certified_sup(t_obs, n, L, margin=margin)
                tc.append(time.perf_counter() - t0)
            t_cert.append(statistics.median(tc))
            certs.append(rc)
        for form in a.formulations:
            t_sig, c_sig, gaps, lgaps, iters, conv = [], [], [], [], [], []
            for (t_obs, L, margin), rc in zip(cases, certs):
                ts, cs = [], []
                for _ in range(a.reps):
                    t0, c0 = time.perf_counter(), time.process_time()
                    rs = signomial_sup(t_obs, n, L, margin=margin, formulation=form)
                    ts.append(time.perf_counter() - t0)
                    cs.append(time.process_time() - c0)
                t_sig.append(statistics.median(ts))
                c_sig.append(statistics.median(cs))
                gaps.append((rc.upper - rs.value) / rc.upper if rc.upper > 0 else 0.0)
                # > 0: the GP candidate beats the certified search's own best point
                lgaps.append((rs.value - rc.lower) / rc.lower if rc.lower > 0 else 0.0)
                iters.append(rs.iterations)
                conv.append(rs.converged)
            row = {
                "n": n,
                "formulation": form,
                "cases": len(t_sig),
                "signomial_median_s": statistics.median(t_sig),
                "signomial_max_s": max(t_sig),
                "signomial_cpu_median_s": statistics.median(c_sig),
                "certified_median_s": statistics.median(t_cert),
                "ratio_signomial_over_certified": statistics.median(t_sig) / statistics.median(t_cert),
                "rel_gap_median": statistics.median(gaps),
                "rel_gap_max": max(gaps),
                "rel_gap_min": min(gaps),
                "rel_vs_certified_lower_median": statistics.median(lgaps),
                "rel_vs_certified_lower_min": min(lgaps),
                "median_iterations": statistics.median(iters),
                "converged": int(sum(conv)),
            }
            rows.append(row)
            print(f"n={n:5d} {form:11s} signomial {row['signomial_median_s']*1e3:8.1f} ms (max "
                  f"{row['signomial_max_s']*1e3:8.1f}, cpu {row['signomial_cpu_median_s']*1e3:7.1f})  certified {row['certified_median_s']*1e3:7.2f} ms  ratio "
                  f"{row['ratio_signomial_over_certified']:7.1f}  gap to upper med {row['rel_gap_median']:.1e} max "
                  f"{row['rel_gap_max']:.1e}  vs lower med {row['rel_vs_certified_lower_median']:.1e} min "
                  f"{row['rel_vs_certified_lower_min']:.1e}  iters {row['median_iterations']}  converged "
                  f"{row['converged']}/{row['cases']}", flush=True)

    out = {
        "benchmark": "signomial_speed",
        "load_average_at_end": os.getloadavg(),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count(), "processor": platform.processor()},
        "settings": {"cases": a.cases, "reps": a.reps, "seed": a.seed,
                     "certified_sup_tol": 1e-4, "signomial": "defaults (tol 1e-8, max_iter 50, 2 starts)",
                     "formulations": a.formulations},
        "target": "signomial median <= 2 s at n = 100",
        "rows": rows,
    }
    path = ROOT / "benchmarks" / "results" / "signomial_speed.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
