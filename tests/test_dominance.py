"""Dominating statistics (theory §4.7): exact >= the baseline it uses as its statistic, with no tolerance.

* property tests (hypothesis, n up to 1e5, alpha from 1e-6 to 0.3): the default exact bound is
  ``>=`` the Bonferroni bound for the linear and probit margins; with ``statistic="cohen"`` the
  probit bound is ``>=`` Cohen's ``2 Phi^{-1}(CP_lo(x1, alpha))``;
* the staircase (two-pointer sweep) equals the brute-force threshold table of the same statistic;
* the enlarged tail set of the Bonferroni statistic contains ``{x : B(x) >= t}`` (checked outcome by
  outcome);
* the Cohen statistic's inversion, run through the generic certified machinery, is not above Cohen's
  closed form (which the module returns) and is within the bisection tolerance of it;
* the prototype values of theory §4.7 (grid-sup prototype, alpha = 0.001) are reproduced.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scipy import special

from confbounds import clopper_pearson
from confbounds import margin as mg
from confbounds.margin import DOMINATING_STATISTICS, baseline_bound, margin_lower_bound
from confbounds.nuisance import _KIND, invert_core, margin_range, taylor_tables
from confbounds.trinomial import staircase_table, threshold_table


@st.composite
def count_vectors(draw, n_max=100_000):
    n = draw(st.one_of(st.integers(1, 60), st.integers(61, 2_000), st.integers(2_001, n_max)))
    x1 = draw(st.integers(0, n))
    x2 = draw(st.one_of(st.integers(0, n - x1), st.integers(0, min(n - x1, 3))))
    alpha = draw(st.floats(1e-6, 0.3))
    return x1, x2, n, alpha


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(count_vectors(), st.sampled_from(["linear", "probit"]))
def test_exact_default_dominates_bonferroni(v, margin):
    x1, x2, n, alpha = v
    ex = margin_lower_bound(x1, x2, n, alpha, margin=margin)
    bf = margin_lower_bound(x1, x2, n, alpha, margin=margin, method="bonferroni")
    assert isinstance(ex, float) and not math.isnan(ex)
    assert ex >= bf, (x1, x2, n, alpha, margin, ex, bf)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(count_vectors())
def test_exact_cohen_dominates_cohen(v):
    x1, x2, n, alpha = v
    ex = margin_lower_bound(x1, x2, n, alpha, margin="probit", statistic="cohen")
    p = float(clopper_pearson(x1, n, alpha, "lower"))  # Cohen et al. (2019): p_A lower bound at level alpha
    cohen = 2.0 * special.ndtri(p) if p > 0 else -math.inf
    # Cohen's value itself, rounded down by the library's documented margin 1e-12 (1 + 2|a|)
    cohen_safe = cohen - 1e-12 * (1.0 + abs(cohen)) if math.isfinite(cohen) else cohen
    assert ex >= cohen_safe
    assert ex >= baseline_bound(x1, x2, n, alpha, margin="probit", statistic="cohen")
    assert ex <= cohen  # the inversion equals Cohen's bound (never above the unrounded value)


def _brute_kvec(A, Bv, t):
    n = A.size - 1
    k = np.empty(n + 1, dtype=np.int64)
    for s in range(n + 1):
        ok = [x1 for x1 in range(s + 1) if A[x1] - Bv[s - x1] >= t]
        k[s] = ok[0] if ok else s + 1
        # the tail set at s is an up-set {x1 >= k(s)}
        assert ok == list(range(k[s], s + 1))
    return k


@pytest.mark.parametrize("margin", ["linear", "probit", "taylor"])
def test_staircase_equals_brute_force(margin):
    n, level = 30, 0.05
    A, Bv = mg._pair_tables(n, level, margin, 100)
    vals = np.unique(np.subtract.outer(A, Bv))
    vals = vals[np.isfinite(vals)]
    for t in list(vals[:: max(1, vals.size // 60)]) + [-np.inf, -50.0, 50.0]:
        k = staircase_table(A, Bv, t)
        assert np.array_equal(k, _brute_kvec(A, Bv, t)), t
        d = np.diff(k)
        assert np.all((d == 0) | (d == 1))
    # the difference statistic is the pair statistic A = Bv = 0..n
    ar = np.arange(n + 1.0)
    for t in range(-n - 1, n + 2):
        assert np.array_equal(staircase_table(ar, ar, t), threshold_table(n, t))


@pytest.mark.parametrize("margin", ["linear", "probit"])
@pytest.mark.parametrize("statistic", DOMINATING_STATISTICS)
def test_enlarged_tail_set_contains_true_tail_set(margin, statistic):
    """For every outcome x_obs and every x with B(x) >= B(x_obs): x1 >= kvec[x1 + x2]."""
    n, level = 25, 0.05
    B = {(a, b): mg._baseline(a, b, n, level, margin, statistic, 100)
         for a in range(n + 1) for b in range(n + 1 - a)}
    for (a0, b0), t in B.items():
        if not math.isfinite(t):
            continue
        k = mg._dominating_kvec(n, t, level, margin, statistic, 100)
        for (a, b), v in B.items():
            if v >= t:
                assert a >= k[a + b], (a0, b0, a, b, v, t)


@pytest.mark.parametrize("x1,x2,n", [(90, 5, 100), (30, 2, 40), (700, 100, 1000)])
def test_cohen_machinery_matches_closed_form(x1, x2, n):
    alpha = 0.01
    margin = "probit"
    t = mg._cohen(x1, n, alpha, margin, 100)
    kvec = mg._dominating_kvec(n, t, alpha, margin, "cohen", 100)
    acoef, ccoef, H = taylor_tables(100)
    lo_r, hi_r = margin_range(margin)
    tol = 1e-5
    L, stt, ub, lb, q1, q2, nodes, bottom = invert_core(_KIND[margin], n, kvec, acoef,
                                                        ccoef, H, 1.0, alpha, lo_r, hi_r, t, 0.05, tol, 400,
                                                        math.log(1e-17))
    assert not bottom
    assert L <= t + 1e-9  # the certified inversion cannot exceed Cohen's bound (theory §4.7, "cohen")
    assert L >= t - 0.01  # and it reaches it up to the bisection / certification tolerance


@pytest.mark.parametrize("margin,x1,x2,n,bonf,dom", [
    # theory §4.7 prototype (grid sup, alpha = 0.001): Bonferroni / dominating
    ("probit", 90, 5, 100, 1.706, 1.799),
    ("probit", 975, 9, 1000, 3.674, 3.728),
    ("linear", 60, 10, 100, 0.197, 0.236),
])
def test_prototype_values(margin, x1, x2, n, bonf, dom):
    alpha = 0.001
    b = margin_lower_bound(x1, x2, n, alpha, margin=margin, method="bonferroni")
    e = margin_lower_bound(x1, x2, n, alpha, margin=margin, full=True)
    assert b == pytest.approx(bonf, abs=1e-3)
    assert e.branch == "exact" and e.bound >= b
    # the prototype's grid sup is a lower bound of the true sup, so its value can only be higher;
    # the certified search stops ~CERT_GAP / z standard errors below the root
    assert dom - 0.004 <= e.bound <= dom + 1e-3


def test_floor_branch_and_large_n():
    # above DOMINATING_MAX_N the bound is B(x) itself
    n = mg.DOMINATING_MAX_N + 1
    r = margin_lower_bound(int(0.6 * n), int(0.3 * n), n, 1e-3, full=True)
    assert r.branch == "floor" and r.bound == baseline_bound(int(0.6 * n), int(0.3 * n), n, 1e-3)
    # probit with x1 = 0: B(x) = -inf = T(0, 0), nothing is rejected
    assert margin_lower_bound(0, 3, 20, 0.05, margin="probit") == -math.inf


@pytest.mark.parametrize("margin", ["linear", "probit"])
def test_partial_tables_give_the_full_staircase(margin):
    """The staircase built from verified endpoints on the needed range only (proven constants outside it)
    equals the one of the full tables: the range heuristic loses no tightness.  Outcomes drawn across
    the simplex, levels 0.05 to 1e-6, n up to 1e4."""
    rng = np.random.default_rng(7)
    for n in (30, 200, 2000, 10_000):
        for level in (0.05, 1e-3, 1e-6):
            A, Bv = mg._pair_tables(n, level, margin, 100)
            for _ in range(12):
                x1 = int(rng.integers(0, n + 1))
                x2 = int(rng.integers(0, n - x1 + 1)) if rng.random() < 0.5 else int(rng.integers(0, min(n - x1, 5) + 1))
                t = mg._baseline(x1, x2, n, level, margin, "bonferroni", 100)
                if not math.isfinite(t):
                    continue
                te = t - mg.DOMINATING_TIE_RTOL * (1.0 + abs(t))
                k = staircase_table(*mg._pair_tables_for(n, te, level, margin, 100), te)
                assert np.array_equal(k, staircase_table(A, Bv, te)), (n, level, x1, x2)
                assert np.array_equal(mg._dominating_kvec(n, t, level, margin, "bonferroni", 100), k)


@pytest.mark.parametrize("margin", ["linear", "probit"])
def test_partial_tables_contain_the_true_tail_set_at_n_120(margin):
    """Validity of the partial tables (built directly: at this n the library reads the full ones), outcome by
    outcome, at an n where the computed range is a small part."""
    n, level = 120, 1e-3
    B = np.full((n + 1, n + 1), -np.inf)
    for a in range(n + 1):
        for b in range(n + 1 - a):
            B[a, b] = mg._baseline(a, b, n, level, margin, "bonferroni", 100)
    for a0, b0 in [(118, 1), (110, 5), (100, 2), (90, 20), (70, 40), (61, 59), (120, 0), (95, 0)]:
        t = B[a0, b0]
        te = t - mg.DOMINATING_TIE_RTOL * (1.0 + abs(t))
        k = staircase_table(*mg._pair_tables_for(n, te, level, margin, 100), te)
        aa, bb = np.nonzero(B >= t)
        assert np.all(aa >= k[aa + bb]), (a0, b0)


@pytest.mark.parametrize("k,n,level", [(0, 100, 0.01), (3, 1000, 1e-3), (50, 10_000, 1e-6), (9_000, 10_000, 1e-3),
                                       (17, 200_000, 1e-9)])
def test_upper_root_floor_is_below_the_exact_root(k, n, level):
    """``_upper_root_floor`` never exceeds the root of ``P_p(X <= k) = level/2``: at its value the 50-digit
    binomial CDF (a direct sum) is ``>= level/2``, and 1e-5 higher it is already below (close to the root)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    p = mg._upper_root_floor(k, n, level)
    h = mpmath.mpf(level) / 2

    def cdf(q):  # P(X <= k), X ~ Binomial(n, q), summed on the shorter side
        q = mpmath.mpf(q)
        term = lambda j: mpmath.binomial(n, j) * q ** j * (1 - q) ** (n - j)
        if k < n / 2:
            return mpmath.fsum(term(j) for j in range(k + 1))
        return 1 - mpmath.fsum(term(j) for j in range(k + 1, n + 1))

    assert cdf(p) >= h
    assert cdf(p * (1 + 1e-5)) < h
