"""The coverage tools themselves: they must detect a bad bound and pass a good one."""
import numpy as np
import pytest
from scipy import stats

from confbounds import clopper_pearson
from confbounds.coverage import (
    count_vectors,
    exact_binomial_coverage,
    exact_trinomial_coverage,
    monte_carlo_coverage,
    score_matrices,
    trinomial_log_pmf_table,
    trinomial_outcomes,
)


def test_binomial_coverage_of_point_estimate_is_about_half():
    # The point estimate k/n as a "lower bound" covers p = 1/2 exactly when k <= n/2:
    # P(Bin(10, 1/2) <= 5) = 638/1024 (hand count).
    cov = exact_binomial_coverage(lambda k, n: k / n, 10, 0.5)
    assert cov == pytest.approx(638 / 1024, rel=1e-12)


def test_binomial_coverage_detects_wald():
    # The Wald lower bound p_hat - z sqrt(p_hat(1-p_hat)/n) is known to undercover (Brown, Cai, DasGupta 2001).
    z = stats.norm.ppf(0.95)
    wald = lambda k, n: k / n - z * np.sqrt(k / n * (1 - k / n) / n)
    cov = exact_binomial_coverage(wald, 30, np.linspace(0.01, 0.99, 99))
    assert cov.min() < 0.9


def test_trinomial_outcomes_and_pmf():
    x1, x2, x3 = trinomial_outcomes(7)
    assert len(x1) == 8 * 9 // 2
    assert np.all(x1 + x2 + x3 == 7) and np.all(x3 >= 0)
    q = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    pmf = trinomial_log_pmf_table(7, q)
    np.testing.assert_allclose(pmf.sum(axis=1), 1.0, rtol=1e-12)
    # against scipy.stats.multinomial
    ref = stats.multinomial.pmf(np.stack([x1, x2, x3], 1), 7, q[0])
    np.testing.assert_allclose(pmf[0], ref, rtol=1e-10)
    # degenerate law puts all mass on (7, 0, 0)
    assert pmf[1][(x1 == 7)].item() == pytest.approx(1.0)


def test_trinomial_coverage_matches_binomial_reduction():
    # A bound on q1 that only uses x1: trinomial coverage must equal the binomial one.
    b = lambda x1, x2, x3: clopper_pearson(x1, x1 + x2 + x3, 0.1)
    q = np.array([[0.3, 0.3, 0.4], [0.9, 0.05, 0.05], [0.5, 0.0, 0.5]])
    tri = exact_trinomial_coverage(b, 12, q, truth_fn=lambda qq: qq[:, 0], vectorized=True)
    bino = exact_binomial_coverage(lambda k, n: clopper_pearson(k, n, 0.1), 12, q[:, 0])
    np.testing.assert_allclose(tri, bino, rtol=1e-12)
    tri_loop = exact_trinomial_coverage(b, 12, q, truth_fn=lambda qq: qq[:, 0])
    np.testing.assert_allclose(tri, tri_loop, rtol=1e-12)


def test_monte_carlo_flags_anticonservative_bound():
    # The sample mean as a lower bound misses about half the time.
    res = monte_carlo_coverage(lambda x: x.mean(axis=0), lambda rng, s: rng.random(s), 0.5,
                               n=20, alpha=0.05, reps=4000, seed=1)
    assert not res.passed and res.miss_rate > 0.4


def test_monte_carlo_passes_valid_bound_and_counts_paths():
    # Hoeffding's lower bound (Hoeffding 1963) on U(0,1) data: valid.
    n, a = 30, 0.1
    hoeff = lambda x: x.mean(axis=0) - np.sqrt(np.log(1 / a) / (2 * n))
    res = monte_carlo_coverage(hoeff, lambda rng, s: rng.random(s), 0.5, n=n, alpha=a, reps=5000, seed=2)
    assert res.passed and res.reps == 5000
    # A path whose last entry is the mean: any-time misses are counted.
    path = lambda x: np.cumsum(x, axis=0) / np.arange(1, x.shape[0] + 1)[:, None]
    res2 = monte_carlo_coverage(path, lambda rng, s: rng.random(s), 0.5, n=n, alpha=a, reps=2000, seed=3)
    # the final row alone misses about half the time; over the whole path far more often
    last = monte_carlo_coverage(lambda x: path(x)[-1], lambda rng, s: rng.random(s), 0.5, n=n, alpha=a, reps=2000, seed=3)
    assert last.miss_rate < 0.6 < 0.8 < res2.miss_rate and not res2.passed


def test_monte_carlo_chunking_is_deterministic():
    f = lambda x: x.mean(axis=0) - 0.1
    d = lambda rng, s: rng.random(s)
    a = monte_carlo_coverage(f, d, 0.5, n=10, alpha=0.1, reps=3000, seed=7, chunk_elements=1000)
    b = monte_carlo_coverage(f, d, 0.5, n=10, alpha=0.1, reps=3000, seed=7, chunk_elements=1000)
    assert a == b


def test_bad_arguments():
    with pytest.raises(ValueError, match="side"):
        exact_binomial_coverage(lambda k, n: k / n, 5, 0.5, side="both")
    with pytest.raises(ValueError, match="alpha"):
        monte_carlo_coverage(lambda x: x.mean(0), lambda r, s: r.random(s), 0.5, n=5, alpha=1.5, reps=10)
    with pytest.raises(ValueError, match="q must"):
        trinomial_log_pmf_table(5, [0.5, 0.6, 0.1])
    with pytest.raises(ValueError, match="bound_fn must return"):
        exact_binomial_coverage(lambda k, n: 0.0, 5, 0.5)


def test_strategies():
    from hypothesis import given, settings

    @settings(max_examples=50, deadline=None)
    @given(count_vectors(m=4, max_n=50))
    def check_counts(cv):
        counts, n = cv
        assert counts.shape == (4,) and counts.sum() == n and np.all(counts >= 0)

    @settings(max_examples=30, deadline=None)
    @given(score_matrices(n_max=20, m=5))
    def check_scores(s):
        assert s.shape[1] == 5 and s.shape[0] >= 2
        np.testing.assert_allclose(s.sum(axis=1), 1.0, rtol=1e-9)
        assert np.all((s >= 0) & (s <= 1))

    check_counts()
    check_scores()
