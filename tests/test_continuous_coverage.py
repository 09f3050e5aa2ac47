"""Monte Carlo coverage of the score-based bounds (theory §2.5, issue 2 "Must show").

Each case draws ``REPS = 20,000`` independent samples of size n from a law with a
known mean, computes the bound (a confidence sequence counts as a miss if it
misses at *any* t = 1..n) and runs the one-sided exact binomial test of
``H0: P(miss) <= alpha`` at level 1e-3 through
:func:`confbounds.coverage.monte_carlo_coverage`.

Laws (all on [0, 1], true means exact):

* ``bern02`` / ``bern98``: Bernoulli(0.02) and Bernoulli(0.98) (near 0 and 1);
* ``beta25``: Beta(2, 5), mean 2/7;
* ``three``: P(0) = 0.1, P(0.6) = 0.3, P(1) = 0.6, mean 0.78;
* ``conf``: 1 - Beta(0.5, 20), mean 1 - 0.5/20.5 (a confident classifier's top score).

At n >= 1000 the two Beta laws are drawn through their quantile function on a
2^16-point midpoint grid (a 65,536-atom law whose exact mean is the truth; it
differs from the Beta mean by < 1e-6): ``numpy``'s Beta sampler would dominate the
run time.  Coverage holds for every law on [0, 1], so the check is as strict.

What runs (lower bounds unless stated; "all laws" = the five above):

* n in {2, 10, 100, 1000}: every method, all laws, alpha in {0.05, 0.2};
* n = 10,000 (budget: the whole file must stay within a few minutes on two
  cores): empirical Bernstein, PrPl-EB CI and PrPl-EB CS on all laws at
  alpha = 0.05 and on ``bern98`` and ``three`` at alpha = 0.2; the hedged CI on
  ``bern98``, ``three``, ``conf`` at alpha = 0.05 and ``three`` at 0.2; the hedged
  CS (grid path, ~1 ms per sequence) on ``three`` and ``conf`` at alpha = 0.05;
* upper bounds: all methods on ``bern02`` and ``conf`` at n in {2, 100, 1000},
  alpha = 0.05; two-sided: all methods on ``beta25`` and ``three`` at n = 100,
  alpha = 0.2 (a miss on either side counts);
* a negative control (the plug-in mean as a "lower bound") that must fail.

Run ``python tests/test_continuous_coverage.py`` to print the table of miss rates.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import stats

from confbounds import betting_ci, betting_cs, empirical_bernstein
from confbounds.coverage import monte_carlo_coverage

REPS = 20_000
TEST_LEVEL = 1e-3
CHUNK = 1 << 18  # samples per chunk: 2 MB arrays stay in cache (memory traffic dominates otherwise)


# ------------------------------------------------------------------ laws
@functools.lru_cache(maxsize=None)
def _quantile_table(a: float, b: float, flip: bool):
    u = (np.arange(1 << 16) + 0.5) / (1 << 16)
    q = stats.beta.ppf(u, a, b)
    if flip:
        q = 1.0 - q
    q = np.clip(q, 0.0, 1.0)  # ppf is in [0, 1] already; guards against -0.0 / 1 + ulp
    return q, float(np.mean(q))


def _bernoulli(p):
    return lambda rng, size: (rng.random(size) < p).astype(np.float64)


def _beta(a, b, flip):
    if flip:
        return lambda rng, size: 1.0 - rng.beta(a, b, size)
    return lambda rng, size: rng.beta(a, b, size)


def _beta_table(a, b, flip):
    table, _ = _quantile_table(a, b, flip)
    return lambda rng, size: table[rng.integers(0, table.size, size)]


def _three(rng, size):
    u = rng.random(size)
    return np.where(u < 0.1, 0.0, np.where(u < 0.4, 0.6, 1.0))


def law(name: str, n: int):
    """(draw, true mean) of a named law; Beta laws are tabulated at n >= 1000."""
    fast = n >= 1000
    if name == "bern02":
        return _bernoulli(0.02), 0.02
    if name == "bern98":
        return _bernoulli(0.98), 0.98
    if name == "three":
        return _three, 0.1 * 0.0 + 0.3 * 0.6 + 0.6 * 1.0
    if name == "beta25":
        if fast:
            return _beta_table(2.0, 5.0, False), _quantile_table(2.0, 5.0, False)[1]
        return _beta(2.0, 5.0, False), 2.0 / 7.0
    if name == "conf":
        if fast:
            return _beta_table(0.5, 20.0, True), _quantile_table(0.5, 20.0, True)[1]
        return _beta(0.5, 20.0, True), 1.0 - 0.5 / 20.5
    raise KeyError(name)


LAWS = ("bern02", "bern98", "beta25", "three", "conf")


# ------------------------------------------------------------------ methods
def method(name: str, alpha: float, side: str):
    """Bound function ``(n, r) -> (r,)`` or a path ``(n, r)``, for ``side`` lower / upper / two-sided.

    For two-sided the returned value is the lower end, replaced by +inf
    (a certain miss under ``side="lower"``) where the upper end misses.
    """
    fns = {
        "eb": lambda X, s: empirical_bernstein(X, alpha, side=s),
        "ci-hedged": lambda X, s: betting_ci(X, alpha, side=s, method="hedged"),
        "ci-prpl": lambda X, s: betting_ci(X, alpha, side=s, method="prpl-eb"),
        "cs-hedged": lambda X, s: betting_cs(X, alpha, side=s, method="hedged"),
        "cs-prpl": lambda X, s: betting_cs(X, alpha, side=s, method="prpl-eb"),
    }
    fn = fns[name]
    if side != "two-sided":
        return lambda X: fn(X, side)
    return fn


def run_case(meth: str, law_name: str, n: int, alpha: float, side: str = "lower", seed: int = 0):
    draw, truth = law(law_name, n)
    fn = method(meth, alpha, side)
    if side == "two-sided":
        def bound(X):
            lo, hi = fn(X, "two-sided")
            return np.where(hi >= truth, lo, np.inf)
        mc_side = "lower"
    else:
        bound = fn
        mc_side = side
    # Distinct, reproducible seed per case.
    case_seed = [seed, n, int(alpha * 1000), LAWS.index(law_name), list(METHODS).index(meth),
                 ("lower", "upper", "two-sided").index(side)]
    return monte_carlo_coverage(bound, draw, truth, n=n, alpha=alpha, reps=REPS, side=mc_side,
                                seed=np.random.SeedSequence(case_seed), test_level=TEST_LEVEL,
                                chunk_elements=CHUNK)


METHODS = {"eb": 2, "ci-hedged": 1, "ci-prpl": 1, "cs-hedged": 1, "cs-prpl": 1}  # name -> min n

SMALL_N = (2, 10, 100, 1000)
ALPHAS = (0.05, 0.2)

CASES = []
for _m in METHODS:
    for _n in SMALL_N:
        for _l in LAWS:
            for _a in ALPHAS:
                CASES.append((_m, _l, _n, _a, "lower"))
LARGE_N = 10_000
for _m in ("eb", "ci-prpl", "cs-prpl"):
    for _l in LAWS:
        CASES.append((_m, _l, LARGE_N, 0.05, "lower"))
    for _l in ("bern98", "three"):
        CASES.append((_m, _l, LARGE_N, 0.2, "lower"))
for _l in ("bern98", "three", "conf"):
    CASES.append(("ci-hedged", _l, LARGE_N, 0.05, "lower"))
CASES.append(("ci-hedged", "three", LARGE_N, 0.2, "lower"))
for _l in ("three", "conf"):
    CASES.append(("cs-hedged", _l, LARGE_N, 0.05, "lower"))
for _m in METHODS:
    for _l in ("bern02", "conf"):
        for _n in (2, 100, 1000):
            CASES.append((_m, _l, _n, 0.05, "upper"))
    for _l in ("beta25", "three"):
        CASES.append((_m, _l, 100, 0.2, "two-sided"))


def _case_id(case):
    m, l, n, a, s = case
    return f"{m}-{l}-n{n}-a{a}-{s}"


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_monte_carlo_coverage(case):
    res = run_case(*case)
    assert res.reps == REPS
    assert res.passed, (case, res)


def test_negative_control_detects_an_invalid_bound():
    # The plug-in mean is not a lower confidence bound: it misses about half the time.
    draw, truth = law("beta25", 100)
    res = monte_carlo_coverage(lambda X: X.mean(axis=0), draw, truth, n=100, alpha=0.05, reps=REPS, seed=1)
    assert not res.passed and res.miss_rate > 0.4


def test_negative_control_cs_counts_a_miss_at_any_time():
    # A "path" that is valid at t = n but equals the running mean earlier must fail:
    # monte_carlo_coverage counts a miss at any t.
    draw, truth = law("three", 50)

    def path(X):
        p = np.cumsum(X, axis=0) / np.arange(1, X.shape[0] + 1)[:, None]
        p[-1] = 0.0
        return p

    res = monte_carlo_coverage(path, draw, truth, n=50, alpha=0.05, reps=REPS, seed=2)
    assert not res.passed


if __name__ == "__main__":  # pragma: no cover - prints the table for docs/validation.md
    import sys
    import time

    only = sys.argv[1] if len(sys.argv) > 1 else ""
    print("| method | law | n | alpha | side | misses / reps | miss rate | p-value | pass | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c in CASES:
        if only and only not in _case_id(c):
            continue
        t0 = time.perf_counter()
        r = run_case(*c)
        dt = time.perf_counter() - t0
        print(f"| {c[0]} | {c[1]} | {c[2]} | {c[3]} | {c[4]} | {r.misses} / {r.reps} | {r.miss_rate:.4f} | "
              f"{r.p_value:.3g} | {'yes' if r.passed else 'NO'} | {dt:.1f} |", flush=True)
