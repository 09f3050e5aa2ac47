"""Exact margin bounds at extreme n and alpha (issue 10, "numerics at every scale").

Before the tails accounted for rounding relative to the level, the exact bound stayed valid but
collapsed: linear x = (0.6n, 0.3n), alpha = 1e-3 gave 0.015 at n = 1e6 and 1e-5 at n = 1e7
(Bonferroni 0.297, 0.299); x1 = n = 1000 at alpha = 1e-8 gave 0.016 (Bonferroni 0.962); alpha <= 1e-12
gave the trivial bound.  Here:

* the default exact bound (Bonferroni statistic) is >= Bonferroni for n in {1e6, 1e7, 1e8} and alpha down
  to 1e-12, x1 = n included, and finite;
* the difference statistic (whose tails are evaluated at every n, O(1) memory) is non-trivial there:
  within 1 % of Bonferroni for the linear margin, 2 % for the probit margin at n = 1e6 (it is a linear
  statistic, so it may lose to Bonferroni on the probit margin), and above Bonferroni at x1 = n = 1000
  down to alpha = 1e-16;
* the certified tail brackets the 50-digit value (mpmath) at large n.

Timing is measured in benchmarks/exact_speed.py (``--extremes``), not asserted here.
"""
import math

import mpmath
import numpy as np
import pytest

from confbounds import trinomial as tr
from confbounds.margin import margin_lower_bound

NS = (10**6, 10**7, 10**8)
ALPHAS = (1e-3, 1e-6, 1e-9, 1e-12)
FRACS = ((0.6, 0.3), (1.0, 0.0), (0.99, 0.005), (0.5, 0.45))


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("margin", ["linear", "probit"])
def test_default_exact_dominates_bonferroni_at_large_n(n, margin):
    for alpha in ALPHAS:
        for f1, f2 in FRACS:
            x1, x2 = int(f1 * n), int(f2 * n)
            ex = margin_lower_bound(x1, x2, n, alpha, margin=margin)
            bf = margin_lower_bound(x1, x2, n, alpha, margin=margin, method="bonferroni")
            assert math.isfinite(ex) and ex >= bf, (n, alpha, x1, x2, ex, bf)
            # non-trivial: Bonferroni itself is far from the trivial bound here
            assert bf > (-0.1 if margin == "linear" else -0.5)


@pytest.mark.parametrize("margin,rel", [("linear", 0.01), ("probit", 0.02)])
def test_difference_statistic_does_not_collapse(margin, rel):
    n = 10**6
    for alpha in (1e-3, 1e-12):
        ex = margin_lower_bound(600_000, 300_000, n, alpha, margin=margin, statistic="difference")
        bf = margin_lower_bound(600_000, 300_000, n, alpha, margin=margin, method="bonferroni")
        assert ex >= bf * (1 - rel), (margin, alpha, ex, bf)


@pytest.mark.parametrize("alpha", [1e-8, 1e-12, 1e-16])
def test_x1_equal_n_small_alpha(alpha):
    n = 1000
    bf = margin_lower_bound(n, 0, n, alpha, method="bonferroni")
    assert margin_lower_bound(n, 0, n, alpha, statistic="difference") >= bf
    assert margin_lower_bound(n, 0, n, alpha) >= bf
    # the exact bound cannot exceed the pi = 1 binomial cap 2 CP_lo(n; n, alpha) - 1 = 2 alpha^(1/n) - 1
    assert margin_lower_bound(n, 0, n, alpha) <= 2 * alpha ** (1 / n) - 1 + 1e-12


def _mp_binom_sf(k, n, p, dps=50):
    """P(Bin(n, p) >= k) in 50-digit arithmetic (mpmath): the first term from log-gamma, the next by the
    exact ratio pmf(j + 1)/pmf(j) = (n - j)/(j + 1) p/(1 - p), summed until a term is 1e-45 of the sum
    past the mode (the rest decays geometrically).  ``p`` is the double passed to the library, read exactly."""
    with mpmath.workdps(dps):
        p = mpmath.mpf(p)
        q = 1 - p
        t = mpmath.exp(mpmath.loggamma(n + 1) - mpmath.loggamma(k + 1) - mpmath.loggamma(n - k + 1)
                       + k * mpmath.log(p) + (n - k) * mpmath.log(q))
        s = mpmath.mpf(0)
        j = k
        while j <= n:
            s += t
            if j > n * p and t < s * mpmath.mpf(10) ** -45:
                break
            t *= mpmath.mpf(n - j) / (j + 1) * p / q
            j += 1
        return s


@pytest.mark.parametrize("n,q1,k", [
    (10**6, 0.6, 600_800),         # q3 = 0: X1 - X2 = 2 X1 - n, a binomial tail at ~1.6 sd
    (10**6, 0.6, 602_500),         # ~5 sd, tail ~ 1e-7
    (10**7, 0.7, 7_009_000),       # ~6.2 sd, tail ~ 3e-10
    (10**8, 0.999, 99_901_050),    # near the edge, ~3.3 sd
    (10**5, 0.99, 99_300),         # far tail (9.5 sd), ~ 1e-22: below PRUNE_MASS
])
def test_tail_brackets_mpmath_binomial_cases(n, q1, k):
    # q1 >= 1/2, so 1 - q1 is exact in floating point (Sterbenz) and q3 (resp. q2) is exactly 0
    ref = float(_mp_binom_sf(k, n, q1))
    # q = (q1, 1 - q1, 0): X1 - X2 >= 2k - n  <=>  X1 >= k
    lo, hi = tr.tail_prob_bounds((q1, 1.0 - q1, 0.0), n, 2 * k - n)
    assert lo <= ref <= hi, (lo, ref, hi)
    # tail_prob_bounds prunes at PRUNE_MASS absolute (its neglected mass is added to hi)
    assert hi - lo <= 1e-6 * ref + 3 * tr.PRUNE_MASS, (lo, ref, hi)
    # q = (q1, 0, 1 - q1): X1 - X2 = X1 >= k
    lo, hi = tr.tail_prob_bounds((q1, 0.0, 1.0 - q1), n, k)
    assert lo <= ref <= hi, (lo, ref, hi)
    assert hi - lo <= 1e-6 * ref + 3 * tr.PRUNE_MASS, (lo, ref, hi)
    # pruning relative to the level, as the margin bounds do (logcut = log(PRUNE_FRACTION * level)):
    # the bracket is then tight relative to the tail however small it is
    for q in ((q1, 1.0 - q1), (q1, 0.0)):
        t = 2 * k - n if q[1] > 0 else k
        lo, hi = tr.tail_core(n, q[0], q[1], tr.compact_difference_table(n, t), math.log(1e-7 * ref))
        assert lo <= ref <= hi and hi - lo <= 1e-6 * ref, (q, lo, ref, hi)


def test_tail_brackets_mpmath_trinomial():
    """A genuine trinomial tail at n = 1200, summed in 40-digit arithmetic:
    P(X1 - X2 >= t) = sum_s Bin(s; n, pi) P(Bin(s, rho) >= ceil((s + t)/2))."""
    n, q1, q2 = 1200, 0.55, 0.25
    t = 425  # mean 360, sd ~ 17.5: ~3.7 sd
    with mpmath.workdps(40):
        pi = mpmath.mpf(q1) + mpmath.mpf(q2)
        rho = mpmath.mpf(q1) / pi
        ref = mpmath.mpf(0)
        for s in range(t, n + 1):
            k = -(-(s + t) // 2)
            ws = mpmath.binomial(n, s) * pi ** s * (1 - pi) ** (n - s)
            if ws < mpmath.mpf(10) ** -40:
                continue
            ref += ws * mpmath.betainc(k, s - k + 1, 0, rho, regularized=True)
    ref = float(ref)
    lo, hi = tr.tail_prob_bounds((q1, q2), n, t)
    assert lo <= ref <= hi and hi - lo <= 1e-6 * ref, (lo, ref, hi)


def test_loader_stirling_table_against_mpmath():
    with mpmath.workdps(50):
        for k in range(1, 40):
            exact = mpmath.loggamma(k + 1) - (k + mpmath.mpf(0.5)) * mpmath.log(k) + k - mpmath.log(
                mpmath.sqrt(2 * mpmath.pi))
            assert abs(tr._stirlerr(float(k)) - float(exact)) <= 4e-16 * max(1.0, float(exact)) + 2e-16


def test_loader_log_pmf_error_bound_against_mpmath():
    """_lbin's value is within its own error bound of the 50-digit log pmf, at n up to 1e9."""
    rng = np.random.default_rng(5)
    for m in (10, 1000, 10**6, 10**9):
        for p in (1e-6, 0.3, 0.5, 0.999999):
            sd = math.sqrt(m * p * (1 - p)) + 1
            for dz in (-8.0, -1.0, 0.0, 2.5, 9.0, float(rng.normal())):
                j = int(min(max(round(m * p + dz * sd), 0), m))
                v, err = tr._lbin(m, j, p, 1.0 - p)
                with mpmath.workdps(50):
                    pp = mpmath.mpf(p)
                    qq = mpmath.mpf(1.0 - p)  # the q passed (rounded), as _lbin reads it
                    ref = (mpmath.loggamma(m + 1) - mpmath.loggamma(j + 1) - mpmath.loggamma(m - j + 1)
                           + j * mpmath.log(pp) + (m - j) * mpmath.log(qq))
                    disc = float(m * (pp + qq - 1))
                # the documented contract: the log pmf, or (Loader's form, 0 < j < m) the log pmf minus
                # m (p + q - 1), a discrepancy the callers' parameter margin expm1(4 n eps) covers
                assert abs(disc) <= 2 * m * np.finfo(float).eps
                dev = abs(v - float(ref)) if j in (0, m) else abs(v - float(ref - disc))
                assert dev <= err, (m, p, j, v, float(ref), disc, err)
                assert err <= 1e-11 * (1 + abs(v)), (m, p, j, err)
