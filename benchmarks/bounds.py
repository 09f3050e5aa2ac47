"""Speed of the confbounds bounds against same-run baselines (issue 2 targets).

Run: ``.venv/bin/python benchmarks/bounds.py`` (``--reps 5`` for a quick run).
Writes ``benchmarks/results/bounds.json`` and prints medians.

Each item is timed with its baseline in ABBA order (ours, base, base, ours, ...),
wall clock (``time.perf_counter``) and process CPU time; medians are reported,
plus the median of per-pair wall-clock ratios.  Numba functions are warmed up
(compiled or loaded from cache) before timing.

Items and targets (issue 2):

* ``clopper_pearson`` on 10^6 (k, n) pairs vs ``scipy.stats.beta.ppf`` on the
  same arrays (lower bound ``beta.ppf(alpha, k, n - k + 1)``): ratio <= 1.5
  (issue 10: every endpoint is verified by a tail evaluation, and must stay
  within ~1.5x of the unverified SciPy quantile);
* ``betting_ci`` hedged, n = 10^5, root to relative 1e-10: <= 20 ms.  Baseline:
  the hedged capital evaluated with NumPy on a fixed grid of 1000 candidate
  means (the grid approach of confseq's ``betting_ci``), n = 10^5;
* ``betting_cs`` PrPl-EB whole path, n = 10^6: <= 50 ms.  Baseline: a NumPy
  transcription of theory §5 (cumulative sums);
* ``empirical_bernstein``, n = 10^6: <= 10 ms.  Baseline: the NumPy one-liner
  (``mean``, ``var(ddof=1)``) without input checks.

Information only: ``betting_cs`` hedged (grid 1000) at n = 10^4 and 10^5;
``clopper_pearson`` on 10^5 pairs with n log-uniform up to 10^9 (vs ``beta.ppf``),
and one scalar call ``clopper_pearson(k, n, alpha)`` with Python ints (the path
``margin.py`` and the reductions use) vs one scalar ``scipy.special.betaincinv``.
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

from scipy import special, stats  # noqa: E402

import confbounds  # noqa: E402
from confbounds import betting_ci, betting_cs, clopper_pearson, empirical_bernstein  # noqa: E402


def _time(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def compare(ours, base, reps):
    """ABBA timing; returns a dict of medians (ms) and ratios."""
    ours(), base()  # warm-up (Numba cache / compile, page faults)
    ow, oc, bw, bc, ratios = [], [], [], [], []
    for i in range(reps):
        order = (ours, base) if i % 2 == 0 else (base, ours)
        res = {}
        for f in order:
            res[f] = _time(f)
        ow.append(res[ours][0]); oc.append(res[ours][1])
        bw.append(res[base][0]); bc.append(res[base][1])
        ratios.append(res[ours][0] / res[base][0])
    med = statistics.median
    return {
        "ours_wall_ms": 1e3 * med(ow), "ours_cpu_ms": 1e3 * med(oc),
        "base_wall_ms": 1e3 * med(bw), "base_cpu_ms": 1e3 * med(bc),
        "ratio_of_medians": med(ow) / med(bw), "median_pair_ratio": med(ratios), "reps": reps,
    }


def single(fn, reps):
    fn()
    w, c = zip(*(_time(fn) for _ in range(reps)))
    return {"ours_wall_ms": 1e3 * statistics.median(w), "ours_cpu_ms": 1e3 * statistics.median(c), "reps": reps}


# ------------------------------------------------------------------ baselines
def numpy_grid_hedged_ci(x, alpha, grid=1000, c=0.5):
    """Hedged capital (fixed-n bets) on a fixed grid with NumPy, as confseq's grid method does."""
    n = len(x)
    L = math.log(1 / alpha)
    t = np.arange(1, n + 1)
    mu = (0.5 + np.cumsum(x)) / (t + 1)
    var = (0.25 + np.cumsum((x - mu) ** 2)) / (t + 1)
    var_prev = np.concatenate(([0.25], var[:-1]))
    lam_dot = np.sqrt(2 * L / (n * var_prev))
    best = 0.0
    for m in np.arange(1, grid) / grid:  # one O(n) pass per grid point
        lam = np.minimum(lam_dot, c / m)
        if np.sum(np.log1p(lam * (x - m))) >= L:
            best = m
    return best


def numpy_prpl_cs(x, alpha, c=0.5):
    n = len(x)
    L = math.log(1 / alpha)
    t = np.arange(1, n + 1)
    mu = (0.5 + np.cumsum(x)) / (t + 1)
    var = (0.25 + np.cumsum((x - mu) ** 2)) / (t + 1)
    var_prev = np.concatenate(([0.25], var[:-1]))
    mu_prev = np.concatenate(([0.5], mu[:-1]))
    lam = np.minimum(np.sqrt(2 * L / (var_prev * t * np.log1p(t))), c)
    psi = (-np.log1p(-lam) - lam) / 4
    return np.maximum((np.cumsum(lam * x) - L - np.cumsum(4 * (x - mu_prev) ** 2 * psi)) / np.cumsum(lam), 0)


def numpy_eb(x, alpha):
    n = len(x)
    lg = math.log(2 / alpha)
    return x.mean() - math.sqrt(2 * x.var(ddof=1) * lg / n) - 7 * lg / (3 * (n - 1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bounds.json"))
    args = ap.parse_args(argv)
    reps = args.reps
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()
    results = {}

    # Clopper–Pearson: 10^6 random (k, n) pairs, n in [1, 10^4].
    nn = rng.integers(1, 10_001, 10**6)
    kk = rng.integers(0, nn + 1)
    alpha = 0.001
    results["clopper_pearson_1e6_pairs"] = compare(
        lambda: clopper_pearson(kk, nn, alpha),
        lambda: stats.beta.ppf(alpha, kk, nn - kk + 1),
        reps,
    )
    results["clopper_pearson_1e6_pairs"]["target"] = "ratio <= 1.5"
    nb = np.floor(10 ** rng.uniform(0, 9, 10**5)).astype(np.int64)
    kb = rng.integers(0, nb + 1)
    results["clopper_pearson_1e5_pairs_n_to_1e9_info"] = compare(
        lambda: clopper_pearson(kb, nb, alpha),
        lambda: stats.beta.ppf(alpha, kb, nb - kb + 1),
        max(3, reps // 4),
    )

    def scalar_ours():
        for _ in range(1000):
            clopper_pearson(500, 1000, 0.001)

    def scalar_base():
        for _ in range(1000):
            special.betaincinv(500.0, 501.0, 0.001)

    results["clopper_pearson_scalar_x1000_info"] = compare(scalar_ours, scalar_base, reps)

    x5 = rng.beta(2, 5, 10**5)
    results["betting_ci_hedged_n1e5"] = compare(
        lambda: betting_ci(x5, 0.05, method="hedged"),
        lambda: numpy_grid_hedged_ci(x5, 0.05),
        max(3, reps // 4),
    )
    results["betting_ci_hedged_n1e5"]["target"] = "ours_wall_ms <= 20"
    ours, base = betting_ci(x5, 0.05), numpy_grid_hedged_ci(x5, 0.05)
    results["betting_ci_hedged_n1e5"]["bound_ours"] = ours
    results["betting_ci_hedged_n1e5"]["bound_grid_baseline"] = base

    x6 = rng.beta(2, 5, 10**6)
    results["betting_cs_prpl_n1e6"] = compare(
        lambda: betting_cs(x6, 0.05, method="prpl-eb"),
        lambda: numpy_prpl_cs(x6, 0.05),
        reps,
    )
    results["betting_cs_prpl_n1e6"]["target"] = "ours_wall_ms <= 50"
    results["empirical_bernstein_n1e6"] = compare(
        lambda: empirical_bernstein(x6, 0.05),
        lambda: numpy_eb(x6, 0.05),
        reps,
    )
    results["empirical_bernstein_n1e6"]["target"] = "ours_wall_ms <= 10"

    x4 = rng.beta(2, 5, 10**4)
    results["betting_cs_hedged_n1e4_info"] = single(lambda: betting_cs(x4, 0.05, method="hedged"), reps)
    results["betting_cs_hedged_n1e5_info"] = single(lambda: betting_cs(x5, 0.05, method="hedged"), max(3, reps // 4))
    results["betting_ci_prpl_n1e5_info"] = single(lambda: betting_ci(x5, 0.05, method="prpl-eb"), reps)

    machine = {
        "platform": platform.platform(), "python": platform.python_version(), "machine": platform.machine(),
        "processor": platform.processor(), "cpu_count": os.cpu_count(),
        "numpy": np.__version__, "confbounds": confbounds.__version__,
        "numba": __import__("numba").__version__, "scipy": __import__("scipy").__version__,
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = {"machine": machine, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))

    print(f"machine: {machine['platform']}, {machine['cpu_count']} CPUs, load {load_before} -> {machine['loadavg_after']}")
    for k, v in results.items():
        line = f"{k:34s} ours {v['ours_wall_ms']:9.3f} ms wall ({v['ours_cpu_ms']:.3f} ms cpu)"
        if "base_wall_ms" in v:
            line += f" | base {v['base_wall_ms']:9.3f} ms | ratio {v['ratio_of_medians']:.3f}"
        if "target" in v:
            line += f" | target {v['target']}"
        print(line)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
