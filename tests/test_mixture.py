"""Tests of confbounds.mixture: the beta-binomial mixture confidence sequence.

Expected values come from (i) numerical integration of the mixture of likelihood ratios (scipy.integrate.quad),
an independent route to the closed form of Robbins (1970); (ii) exact path coverage by dynamic programming over
the count process (a miss at any t = 1..n counts); (iii) Monte Carlo path coverage with the one-sided binomial
test of confbounds.coverage.
"""
import numpy as np
import pytest
from scipy import integrate, stats

from confbounds.coverage import monte_carlo_coverage
from confbounds.mixture import (beta_binomial_cs, beta_binomial_cs_path, beta_binomial_log_martingale)


@pytest.mark.parametrize("k,n,p,prior", [(3, 10, 0.2, (0.5, 0.5)), (7, 10, 0.4, (1, 1)), (40, 50, 0.95, (1, 0.1)),
                                         (0, 5, 0.3, (2, 3))])
def test_log_martingale_matches_numerical_mixture(k, n, p, prior):
    # M_n(p) = int LR(q; p) dBeta(q; a, b), integrated numerically
    a, b = prior
    lr = lambda q: (q / p) ** k * ((1 - q) / (1 - p)) ** (n - k) * stats.beta.pdf(q, a, b)  # noqa: E731
    val, _ = integrate.quad(lr, 0, 1, limit=200, points=[k / n])
    assert np.isclose(np.exp(beta_binomial_log_martingale(k, n, p, prior=prior)), val, rtol=1e-7)


def test_endpoints_are_the_boundary_and_certified_rejected():
    k = np.array([1, 5, 50, 990, 999, 1000, 0])
    n = np.array([10, 10, 100, 1000, 1000, 1000, 1000])
    alpha = 0.01
    lo, hi = beta_binomial_cs(k, n, alpha, side="two-sided")
    thr = np.log(1 / alpha)
    phat = k / n
    assert np.all((lo <= phat) & (phat <= hi))
    for i in range(len(k)):
        if k[i] > 0:  # boundary: log M(lo) >= log(1/alpha) and just inside it is below
            assert beta_binomial_log_martingale(k[i], n[i], lo[i]) >= thr
            assert beta_binomial_log_martingale(k[i], n[i], lo[i] + 1e-6 * (phat[i] - lo[i]) + 1e-9) < thr + 1e-6
        else:
            assert lo[i] == 0.0
        if k[i] < n[i]:
            assert beta_binomial_log_martingale(k[i], n[i], hi[i]) >= thr
        else:
            assert hi[i] == 1.0
    # the one-sided calls return the same endpoints
    assert np.array_equal(beta_binomial_cs(k, n, alpha, side="lower"), lo)
    assert np.array_equal(beta_binomial_cs(k, n, alpha, side="upper"), hi)


def test_all_successes_closed_form():
    # prior Beta(1, 1): M_t(p) = 1 / ((t + 1) p^t) when k = t, so L_t = (alpha / (t + 1))^(1/t)
    t = np.array([1, 10, 100, 10_000])
    lo = beta_binomial_cs(t, t, 0.05, prior=(1, 1))
    assert np.allclose(lo, (0.05 / (t + 1)) ** (1 / t), rtol=1e-9)
    assert np.all(lo <= (0.05 / (t + 1)) ** (1 / t))  # rounded in the safe direction


def _exact_path_miss(n, p, alpha, prior, side):
    """P(miss at some t <= n) by dynamic programming over k_t (the bound depends only on (k_t, t))."""
    alive = np.zeros(n + 1)
    alive[0] = 1.0
    missed = 0.0
    for t in range(1, n + 1):
        new = np.zeros(n + 1)
        new[1:t + 1] += alive[:t] * p
        new[:t] += alive[:t] * (1 - p)
        k = np.arange(t + 1)
        lo, hi = beta_binomial_cs(k, np.full(t + 1, t), alpha, side="two-sided", prior=prior)
        miss = np.zeros(t + 1, dtype=bool)
        if side in ("lower", "two-sided"):
            miss |= lo > p
        if side in ("upper", "two-sided"):
            miss |= hi < p
        missed += new[:t + 1][miss].sum()
        new[:t + 1][miss] = 0.0
        alive = new
    return missed


@pytest.mark.parametrize("p", [0.002, 0.1, 0.5, 0.8413, 0.97, 0.9987])
def test_exact_path_coverage(p):
    alpha = 0.05
    for prior in [(0.5, 0.5), (1, 0.1)]:
        miss = _exact_path_miss(300, p, alpha, prior, "two-sided")
        assert miss <= alpha, (p, prior, miss)


def test_monte_carlo_path_coverage_lower_and_upper():
    # whole path t = 1..1000, 4000 repetitions, alpha = 0.05: a miss at any t counts
    for p, side in [(0.3, "lower"), (0.9, "upper"), (0.99, "lower")]:
        res = monte_carlo_coverage(lambda x: beta_binomial_cs_path(x, 0.05, side=side),
                                   lambda rng, size: rng.random(size) < p, true_value=p,
                                   n=1000, alpha=0.05, reps=4000, side=side, seed=1)
        assert res.passed, res


def test_path_and_running_intersection():
    rng = np.random.default_rng(3)
    x = rng.random((500, 4)) < 0.6
    lo, hi = beta_binomial_cs_path(x, 0.1, side="two-sided")
    k = np.cumsum(x, axis=0)
    t = np.arange(1, 501)[:, None] * np.ones((1, 4), dtype=int)
    assert np.array_equal(lo, beta_binomial_cs(k, t, 0.1))
    lo_r, hi_r = beta_binomial_cs_path(x, 0.1, side="two-sided", running_intersection=True)
    assert np.all(np.diff(lo_r, axis=0) >= 0) and np.all(np.diff(hi_r, axis=0) <= 0)
    assert np.all(lo_r >= lo) and np.all(hi_r <= hi)


def test_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        beta_binomial_cs(1, 2, 1.5)
    with pytest.raises(ValueError, match="k must be <= n"):
        beta_binomial_cs(3, 2, 0.1)
    with pytest.raises(ValueError, match="prior"):
        beta_binomial_cs(1, 2, 0.1, prior=(0, 1))
    with pytest.raises(ValueError, match="side"):
        beta_binomial_cs(1, 2, 0.1, side="both")
    with pytest.raises(ValueError, match="0/1"):
        beta_binomial_cs_path(np.array([0, 1, 2]), 0.1)
    with pytest.raises(ValueError, match="p must lie"):
        beta_binomial_log_martingale(1, 2, 1.5)
