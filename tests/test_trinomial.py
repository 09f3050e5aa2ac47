"""Tests of confbounds.trinomial: tails of a statistic of a trinomial count vector.

Reference values come from brute-force enumeration of every outcome with
``confbounds.coverage.trinomial_log_pmf_table`` (independent NumPy code using
the multinomial coefficient n!/(x1! x2! x3!)) and from scipy.stats.binom when
the trinomial degenerates to a binomial (q3 = 0 or q2 = 0).
"""
import numpy as np
import pytest
from scipy import stats

from confbounds import trinomial as tr
from confbounds.coverage import trinomial_log_pmf_table, trinomial_outcomes


def _brute_tail(q, n, t, statistic, strict=False):
    x1, x2, _ = trinomial_outcomes(n)
    pmf = trinomial_log_pmf_table(n, np.asarray(q, dtype=float))
    if statistic == "difference":
        T = x1 - x2
        sel = T > t if strict else T >= t
    else:
        if statistic == "studentized":
            T = (x1 - x2) / np.sqrt(x1 + x2 + 1.0)
        else:
            h = tr.plugin_table(n)
            T = h[x1] - h[x2]
        tie = tr.PLUGIN_TIE_RTOL * (1 + abs(t))
        sel = T > t - tie if strict else T >= t - tie
    return min(1.0, float(pmf[sel].sum()))


def _random_q(rng):
    q = rng.dirichlet([1.0, 1.0, 1.0])
    r = rng.random()
    if r < 0.15:
        q[1] = 0.0
    elif r < 0.3:
        q[2] = 0.0
    elif r < 0.4:
        q[0] = 0.0
    return q / q.sum()


@pytest.mark.parametrize("method", ["recurrence", "enumerate"])
@pytest.mark.parametrize("statistic", ["difference", "plugin", "studentized"])
def test_tail_brackets_brute_force(method, statistic):
    rng = np.random.default_rng(1)
    for _ in range(150):
        n = int(rng.integers(1, 45))
        q = _random_q(rng)
        x1, x2, _ = trinomial_outcomes(n)
        i = int(rng.integers(x1.size))
        t = tr.observed_statistic(int(x1[i]), int(x2[i]), n, statistic)
        exact = _brute_tail(q, n, t, statistic)
        lo, hi = tr.tail_prob_bounds(q, n, t, statistic, method=method)
        # brute force is exact up to ~1e-15 rounding of its own sum
        assert lo <= exact + 1e-14 and exact <= hi + 1e-14, (n, q, t, lo, exact, hi)
        assert hi - lo < 1e-9


@pytest.mark.parametrize("q", [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.5, 0.5, 0.0),
                               (0.0, 0.3, 0.7), (0.3, 0.0, 0.7)])
def test_tail_on_vertices_and_edges(q):
    n = 17
    for t in range(-n, n + 1):
        exact = _brute_tail(q, n, t, "difference")
        lo, hi = tr.tail_prob_bounds(q, n, t)
        assert lo <= exact + 1e-14 and exact <= hi + 1e-14


@pytest.mark.parametrize("n", [50, 1000, 20000])
def test_binomial_special_cases(n):
    # q3 = 0: X1 - X2 = 2 X1 - n, so P(X1 - X2 >= t) = P(X1 >= ceil((n + t)/2)) (scipy.stats.binom)
    for p in (0.3, 0.5, 0.93):
        for frac in (-0.5, 0.0, 0.2, 0.9):
            t = int(frac * n)
            ref = stats.binom.sf(-(-(n + t) // 2) - 1, n, p)
            lo, hi = tr.tail_prob_bounds((p, 1 - p, 0.0), n, t)
            assert lo <= ref * (1 + 1e-9) + 1e-15 and ref * (1 - 1e-9) - 1e-15 <= hi
            assert hi - lo <= 1e-6 * max(ref, 1e-10) + 1e-9
            # q2 = 0: P(X1 >= t)
            lo, hi = tr.tail_prob_bounds((p, 0.0, 1 - p), n, t)
            ref = stats.binom.sf(max(t, 0) - 1, n, p)
            assert lo <= ref * (1 + 1e-9) + 1e-15 and ref * (1 - 1e-9) - 1e-15 <= hi


def test_recurrence_matches_enumeration_large_n():
    n = 3000
    rng = np.random.default_rng(7)
    for _ in range(10):
        q = rng.dirichlet([2.0, 2.0, 2.0])
        t = int(rng.integers(-n // 3, n // 3))
        lo1, hi1 = tr.tail_prob_bounds(q, n, t, method="recurrence")
        lo2, hi2 = tr.tail_prob_bounds(q, n, t, method="enumerate")
        assert lo1 <= hi2 and lo2 <= hi1
        assert hi1 - lo1 < 1e-6


def test_pruned_mass_is_added():
    # A tail far beyond the mean: every term is tiny and pruned, yet the upper
    # bound must stay >= the exact value (here 0.2^n-ish, from scipy) and be > 0.
    n = 400
    q = (0.2, 0.5, 0.3)
    t = n  # only x = (n, 0, 0): probability 0.2^400 = 2.6e-280
    lo, hi = tr.tail_prob_bounds(q, n, t)
    assert hi >= 0.2 ** n
    assert hi > 0.0
    # a moderately far tail, pruned at 1e-17: the added Chernoff mass keeps hi >= exact
    t = int(0.2 * n)
    exact = _brute_tail(q, n, t, "difference")
    lo, hi = tr.tail_prob_bounds(q, n, t)
    assert lo <= exact + 1e-14 <= hi + 2e-14


def test_statistic_pmf_and_cdf():
    rng = np.random.default_rng(3)
    for statistic in ("difference", "plugin", "studentized"):
        for _ in range(20):
            n = int(rng.integers(1, 30))
            q = _random_q(rng)
            vals, probs = tr.statistic_pmf(q, n, statistic)
            assert abs(probs.sum() - 1.0) < 1e-12
            assert np.all(np.diff(vals) > 0)
            t = vals[int(rng.integers(vals.size))]
            # tail from the pmf (values are distinct to far more than the tie tolerance)
            tail = probs[vals >= t - tr.PLUGIN_TIE_RTOL * (1 + abs(t))].sum()
            lo, hi = tr.tail_prob_bounds(q, n, t, statistic)
            assert lo <= tail + 1e-14 and tail <= hi + 1e-14
            clo, chi = tr.cdf_bounds(q, n, t, statistic)
            exact_cdf = 1.0 - _brute_tail(q, n, t, statistic, strict=True)
            assert clo <= exact_cdf + 1e-13 and exact_cdf <= chi + 1e-13


@pytest.mark.parametrize("statistic", ["difference", "plugin", "studentized"])
def test_threshold_table_monotone(statistic):
    # theory §4.1 monotonicity implies k(s) <= k(s+1) <= k(s) + 1
    n = 60
    h = tr.plugin_table(n)
    for x1, x2 in [(0, 0), (10, 5), (30, 30), (60, 0), (0, 60), (3, 40)]:
        t = tr.observed_statistic(x1, x2, n, statistic)
        k = tr.threshold_table(n, t, statistic)
        d = np.diff(k)
        assert np.all((d == 0) | (d == 1))
        # the observed outcome is in its own tail
        assert x1 >= k[x1 + x2]
        if statistic != "difference":
            for s in range(n + 1):
                xs = np.arange(s + 1)
                T = h[xs] - h[s - xs] if statistic == "plugin" else (2 * xs - s) / np.sqrt(s + 1.0)
                inside = T >= t - tr.PLUGIN_TIE_RTOL * (1 + abs(t))
                assert np.array_equal(inside, xs >= k[s])


def test_bad_input():
    with pytest.raises(ValueError, match="statistic"):
        tr.tail_prob((0.2, 0.3, 0.5), 10, 1, statistic="studentised")
    with pytest.raises(ValueError, match="sum to 1"):
        tr.tail_prob((0.2, 0.3, 0.6), 10, 1)
    with pytest.raises(ValueError, match="non-negative"):
        tr.tail_prob((-0.2, 0.7, 0.5), 10, 1)
    with pytest.raises(ValueError, match="n"):
        tr.tail_prob((0.2, 0.3, 0.5), -3, 1)
    with pytest.raises(ValueError, match="method"):
        tr.tail_prob_bounds((0.2, 0.3, 0.5), 10, 1, method="fft")
    with pytest.raises(ValueError, match="taylor_order"):
        tr.tail_prob((0.2, 0.3, 0.5), 10, 0.1, statistic="plugin", taylor_order=-1)


def test_studentized_statistic_is_monotone_under_spec_moves():
    # theory §4.1: T must not decrease under 3 -> 1, 2 -> 3 and 2 -> 1 moves; checked on every outcome
    n = 80
    T = lambda a, b: tr.observed_statistic(a, b, n, "studentized")
    for a in range(n + 1):
        for b in range(n + 1 - a):
            if a + b < n:
                assert T(a + 1, b) >= T(a, b)          # 3 -> 1
            if b > 0:
                assert T(a, b - 1) >= T(a, b)          # 2 -> 3
                assert T(a + 1, b - 1) >= T(a, b)      # 2 -> 1


def test_conditional_tail_ratio_recurrence_brackets_scipy():
    """_sf_bounds sums P(Bin(m, rho) = j) by a ratio recurrence re-anchored every 32 steps on Loader's
    log pmf; widened by the relative margin tail_core applies (anchor log error emax, 160 eps of ratio
    chains), its (lower, upper) must bracket scipy.stats.binom.sf (independent code; 1e-12 relative
    allowed for scipy), for m up to 1e5, rho near 0 and 1 and far tails."""
    rng = np.random.default_rng(23)
    eps = np.finfo(float).eps
    cases = [(100_000, 0.5), (100_000, 1e-4), (100_000, 1 - 1e-4), (50_000, 0.93), (777, 0.31),
             (3, 0.5), (1, 0.99), (40_000, 1e-9)]
    for _ in range(20):
        cases.append((int(rng.integers(1, 100_001)), float(rng.uniform(0.0, 1.0))))
    for m, rho in cases:
        sd = np.sqrt(m * rho * (1 - rho)) + 1
        for dz in (-3.0, 0.0, 1.5, 3.1, 6.0):
            k = int(np.clip(round(m * rho + dz * sd), 1, m))
            lo, hi, _, emax = tr._sf_bounds(m, k, rho, 1.0 - rho, tr._LOGCUT)
            R = np.expm1(emax) + 200 * eps + tr._par_margin(m)
            ref = float(stats.binom.sf(k - 1, m, rho))
            assert lo * (1 - R) <= ref * (1 + 1e-12) + 1e-300, (m, rho, k, lo, ref)
            assert hi * (1 + R) >= ref * (1 - 1e-12), (m, rho, k, hi, ref)
            # pruning adds at most 2 * PRUNE_MASS absolute; terms agree with scipy to 1e-9
            assert hi - lo <= 1e-9 * ref + 3 * tr.PRUNE_MASS, (m, rho, k, lo, hi)


def test_recurrence_matches_enumeration_n_1e5():
    """Main-loop point probabilities are carried from s to s+1 by Pascal ratios (re-anchored
    every 32 steps); the O(n^2)-style enumeration recomputes each conditional tail directly.
    Brackets must overlap at n = 1e5 in the tails used by the margin bounds, and the width of the
    recurrence's bracket is its relative margins plus twice the cancellation term A_F, which is
    below 1e-6 of the tail (relative accounting: module docstring, "Safety")."""
    n = 100_000
    rng = np.random.default_rng(17)
    qs = [(0.6453, 0.3546), (0.6, 0.3), (0.5, 0.1), (0.92, 0.0776), (0.3, 0.3)]
    for _ in range(4):
        qs.append(tuple(rng.dirichlet([2.0, 2.0, 2.0])[:2]))
    for q1, q2 in qs:
        pi = q1 + q2
        sd = np.sqrt(n * (pi - (q1 - q2) ** 2)) + 1
        for dz in (0.0, 3.1, 5.0):
            t = int(round(n * (q1 - q2) + dz * sd))
            lo1, hi1 = tr.tail_prob_bounds((q1, q2), n, t, method="recurrence")
            lo2, hi2 = tr.tail_prob_bounds((q1, q2), n, t, method="enumerate")
            assert lo1 <= hi2 and lo2 <= hi1, (q1, q2, t, lo1, hi1, lo2, hi2)
            kvec = tr.threshold_table(n, t)
            lo3, hi3, V, acc = tr._tail_core_parts(n, q1, q2, kvec, tr._LOGCUT)
            assert (lo3, hi3) == (lo1, hi1)
            assert tr.tail_core(n, q1, q2, tr.compact_difference_table(n, t), tr._LOGCUT) == (lo1, hi1)
            assert hi1 - lo1 <= 1e-6 * hi1 + 3 * tr.PRUNE_MASS, (q1, q2, t, lo1, hi1)
