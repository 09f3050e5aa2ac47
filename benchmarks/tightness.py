"""Tightness: exact trinomial margin bound versus Bonferroni (two Clopper–Pearson halves).

For n in {20, 100, 1000} and every count vector (a dense random sample for
n = 1000), compare ``margin_lower_bound(method="exact")`` with
``method="bonferroni"`` for the linear and probit margins: the fraction of
vectors where exact >= Bonferroni, the mean and the worst gain (exact minus
Bonferroni, over vectors where both are finite).  Vectors are also split by
the share of the third category x3/n, where the exact test pays for the
nuisance supremum at pi = q1 + q2 = 1; there we try the Berger–Boos
restriction (gamma = alpha/10, alpha/50), the studentized statistic
(X1 - X2)/sqrt(X1 + X2 + 1) and the plug-in statistic, and report which wins.
Printed lines (and the "x1>x2" entries of the JSON) use only vectors with
x1 > x2, the ones that can certify; the JSON also keeps all vectors.
Baseline = Bonferroni in the same run.

Usage::

    .venv/bin/python benchmarks/tightness.py [--alpha 0.05] [--n1000 600]
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


def summarise(ex, bf, x3frac):
    ex = np.asarray(ex)
    bf = np.asarray(bf)
    fin = np.isfinite(ex) & np.isfinite(bf)
    gain = ex[fin] - bf[fin]
    res = dict(vectors=int(ex.size), frac_ge=float(np.mean(ex >= bf)), both_finite=int(fin.sum()),
               mean_gain=float(gain.mean()) if gain.size else float("nan"),
               worst_gain=float(gain.min()) if gain.size else float("nan"),
               best_gain=float(gain.max()) if gain.size else float("nan"))
    bands = {}
    for lo, hi in [(0.0, 0.1), (0.1, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1.01)]:
        sel = (x3frac >= lo) & (x3frac < hi)
        f = sel & np.isfinite(ex) & np.isfinite(bf)
        bands[f"x3/n in [{lo:.2f},{min(hi, 1):.2f})"] = dict(
            vectors=int(sel.sum()), frac_ge=float(np.mean(ex[sel] >= bf[sel])) if sel.any() else float("nan"),
            mean_gain=float((ex[f] - bf[f]).mean()) if f.any() else float("nan"))
    res["by_x3"] = bands
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--n1000", type=int, default=600, help="sampled vectors at n = 1000")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tightness.json"))
    args = ap.parse_args(argv)
    alpha = args.alpha
    rng = np.random.default_rng(0)
    results = []
    t_start = time.perf_counter()
    for n in (20, 100, 1000):
        vec = vectors(n, args.n1000, rng)
        x3frac = np.array([(n - a - b) / n for a, b in vec])
        for margin in ("linear", "probit"):
            t0 = time.perf_counter()
            bf = [margin_lower_bound(a, b, n, alpha, margin=margin, method="bonferroni") for a, b in vec]
            variants = {
                "exact": {},
                "exact+berger_boos(alpha/10)": {"berger_boos": alpha / 10},
                "exact+berger_boos(alpha/50)": {"berger_boos": alpha / 50},
            }
            variants["exact+studentized"] = {"statistic": "studentized"}
            if n <= 100:
                variants["exact+plugin"] = {"statistic": "plugin"}
            row = dict(n=n, margin=margin, alpha=alpha)
            for name, kw in variants.items():
                ex = [margin_lower_bound(a, b, n, alpha, margin=margin, **kw) for a, b in vec]
                row[name] = summarise(ex, bf, x3frac)
                # only vectors with x1 > x2 can certify (a bound <= 0 abstains anyway)
                rel = np.array([a > b for a, b in vec])
                row[name]["x1>x2"] = summarise(np.asarray(ex)[rel], np.asarray(bf)[rel], x3frac[rel])
                s = row[name]["x1>x2"]
                print(f"n={n:5d} {margin:6s} {name:28s} frac(exact>=bonf)={s['frac_ge']:.3f} "
                      f"mean gain={s['mean_gain']:+.5f} worst={s['worst_gain']:+.5f}  "
                      + "  ".join(f"{k.split(' in ')[1]}:{v['frac_ge']:.2f}/{v['mean_gain']:+.4f}"
                                  for k, v in s["by_x3"].items()), flush=True)
            row["seconds"] = time.perf_counter() - t0
            # which variant wins per x3 band (largest mean gain over Bonferroni)
            row["winner_by_x3"] = {
                band: max((k for k in variants),
                          key=lambda k: np.nan_to_num(row[k]["x1>x2"]["by_x3"][band]["mean_gain"], nan=-np.inf))
                for band in row["exact"]["by_x3"]}
            results.append(row)
    out = dict(benchmark="tightness", alpha=alpha,
               machine=dict(platform=platform.platform(), cpu_count=os.cpu_count(),
                            load_average=os.getloadavg(), python=sys.version.split()[0]),
               seconds=time.perf_counter() - t_start, results=results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
