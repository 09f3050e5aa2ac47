"""The coverage tools themselves: they must refuse malformed bounds, fail a bad bound and pass a good one.

The bad bound is the one a user writes first: the Wald bound ``p_hat - z sqrt(p_hat (1 - p_hat) / n)``
(undercovers near p = 0 and 1; Brown, Cai and DasGupta 2001), in its scalar form (one outcome or one sample
at a time, ``math.sqrt``) and its vectorised form. It must FAIL through every entry point; Clopper–Pearson
(``confbounds.clopper_pearson``) must PASS through every entry point.
"""
import math

import numpy as np
import pytest
from scipy import stats

from confbounds import clopper_pearson
from confbounds.coverage import (
    Bernoulli,
    Beta,
    Binomial,
    ExactCoverage,
    SampleFamily,
    Trinomial,
    assert_coverage,
    binomial_cases,
    check_bound_output,
    count_vectors,
    exact_binomial_coverage,
    exact_trinomial_coverage,
    monte_carlo_coverage,
    multinomial_cases,
    sample_cases,
    score_matrices,
    trinomial_log_pmf_table,
    trinomial_outcomes,
)

ALPHA = 0.05
Z = stats.norm.ppf(1 - ALPHA)  # 1.6449; the one-sided Wald bound's quantile


# ---------------------------------------------------------------------------------------- the user's bounds
def wald_scalar(k, n):
    """Wald lower bound on p from one count (Python numbers only)."""
    p = k / n
    return p - Z * math.sqrt(p * (1 - p) / n)


def wald_vec(k, n):
    p = np.asarray(k) / n
    return p - Z * np.sqrt(p * (1 - p) / n)


def wald_sample_scalar(x):
    """Wald lower bound on the mean of one 0/1 sample x (n,); on an (n, r) block it pools everything."""
    p = float(np.mean(x))
    return p - Z * math.sqrt(p * (1 - p) / x.shape[0])


def wald_sample_vec(x):
    p = x.mean(axis=0)
    return p - Z * np.sqrt(p * (1 - p) / x.shape[0])


def wald_margin_scalar(x1, x2, x3):
    """Wald lower bound on the margin q1 - q2 from trinomial counts."""
    n = x1 + x2 + x3
    d = (x1 - x2) / n
    var = ((x1 + x2) / n - d * d) / n
    return d - Z * math.sqrt(max(var, 0.0))


def wald_margin_vec(x1, x2, x3):
    n = x1 + x2 + x3
    d = (x1 - x2) / n
    return d - Z * np.sqrt(np.maximum((x1 + x2) / n - d * d, 0.0) / n)


def cp_sample_vec(x, alpha=ALPHA):
    """Clopper–Pearson lower bound on p from 0/1 samples: the count of ones."""
    return clopper_pearson(np.rint(x.sum(axis=0)).astype(np.int64), x.shape[0], alpha)


def cp_sample_scalar(x, alpha=ALPHA):
    return float(clopper_pearson(int(round(float(x.sum()))), x.shape[0], alpha))


def cp_margin_vec(x1, x2, x3):
    """Valid lower bound on q1 - q2: CP lower on q1 minus CP upper on q2, alpha/2 each (Bonferroni)."""
    n = x1 + x2 + x3
    return clopper_pearson(x1, n, ALPHA / 2) - clopper_pearson(x2, n, ALPHA / 2, side="upper")


def cp_margin_scalar(x1, x2, x3):
    return float(cp_margin_vec(x1, x2, x3))


N = 30


# ---------------------------------------------------------------------- Wald fails through every entry point
def test_wald_fails_exact_binomial_coverage():
    for res in (exact_binomial_coverage(wald_vec, N, alpha=ALPHA),
                exact_binomial_coverage(wald_scalar, N, alpha=ALPHA, vectorized=False)):
        assert isinstance(res, ExactCoverage) and res.alpha == ALPHA
        assert res.passed is False and res.worst_coverage < 0.5
        assert res.worst_param > 0.9  # near 1: k = n gives the bound 1 (Brown, Cai, DasGupta 2001, fig. 1)
    # both forms give the same coverages
    a = exact_binomial_coverage(wald_vec, N, np.linspace(0, 1, 101), alpha=ALPHA)
    b = exact_binomial_coverage(wald_scalar, N, np.linspace(0, 1, 101), alpha=ALPHA, vectorized=False)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the scalar form fed arrays cannot pass silently (math.sqrt refuses an array)
    with pytest.raises(TypeError):
        exact_binomial_coverage(wald_scalar, N, alpha=ALPHA)


def test_wald_fails_exact_trinomial_coverage():
    q = np.array([[0.98, 0.01, 0.01], [0.5, 0.3, 0.2], [0.2, 0.1, 0.7]])
    truth = lambda qq: qq[:, 0] - qq[:, 1]  # noqa: E731
    for cov in (exact_trinomial_coverage(wald_margin_vec, N, q, truth, vectorized=True),
                exact_trinomial_coverage(wald_margin_scalar, N, q, truth)):
        # P(x1 = 30) = 0.98^30 = 0.545: the bound is then 1 > 0.97, so coverage <= 0.455
        assert cov[0] <= 1 - 0.98 ** 30 + 1e-12 and cov.min() < 1 - ALPHA
    with pytest.raises(ValueError, match=r"returned shape \(\) but must return shape \(496,\)"):
        exact_trinomial_coverage(lambda a, b, c: wald_margin_scalar(int(a[0]), int(b[0]), int(c[0])), N, q, truth,
                                 vectorized=True)


def test_wald_fails_monte_carlo_coverage():
    draw = lambda rng, s: (rng.random(s) < 0.98).astype(float)  # noqa: E731
    # the known false pass: one Wald number for the whole batch used to give passed=True, misses=0
    with pytest.raises(ValueError, match=r"returned shape \(\) but must return shape \(.*\).*vectorized=False"):
        monte_carlo_coverage(wald_sample_scalar, draw, 0.98, n=N, alpha=ALPHA, reps=2000, seed=0)
    # correctly called, both forms fail; the miss rate is P(all 30 ones) = 0.98^30 = 0.545 (the 55 %)
    for res in (monte_carlo_coverage(wald_sample_vec, draw, 0.98, n=N, alpha=ALPHA, reps=2000, seed=0),
                monte_carlo_coverage(wald_sample_scalar, draw, 0.98, n=N, alpha=ALPHA, reps=2000, seed=0,
                                     vectorized=False)):
        assert not res.passed and abs(res.miss_rate - 0.98 ** 30) < 0.05


def test_reducing_the_wrong_axis_is_refused():
    # x.mean(axis=1) returns shape (n,); chunks never hold exactly n repetitions, so it cannot match (r,)
    for reps in (N, 2 * N, N + 1, 7):
        with pytest.raises(ValueError, match="must return shape"):
            monte_carlo_coverage(lambda x: x.mean(axis=1) - 1.0, lambda rng, s: rng.random(s), 0.5, n=N,
                                 alpha=ALPHA, reps=reps, chunk_elements=N * N)


@pytest.mark.parametrize("family, bound, vectorized", [
    ("binomial", wald_vec, True),
    ("binomial", wald_scalar, False),
    (Trinomial(steps=20), wald_margin_vec, True),
    (Trinomial(steps=20), wald_margin_scalar, False),
    ("bernoulli", wald_sample_vec, True),
    ("bernoulli", wald_sample_scalar, False),
    (Beta(params=[(0.5, 0.01)]), wald_sample_vec, True),  # mean 0.98, nearly Bernoulli: miss rate ~0.3
    (Beta(params=[(0.5, 0.01)]), wald_sample_scalar, False),
])
def test_wald_fails_assert_coverage(family, bound, vectorized):
    with pytest.raises(AssertionError, match=r"UNDERCOVERS .*worst parameter (p|q|params) = ") as info:
        assert_coverage(bound, family=family, n=N, alpha=ALPHA, side="lower", vectorized=vectorized, reps=1000)
    msg = str(info.value)
    assert f"alpha = {ALPHA}" in msg and f"n = {N}" in msg


@pytest.mark.parametrize("family, bound", [("binomial", wald_scalar), ("trinomial", wald_margin_scalar),
                                           ("bernoulli", wald_sample_scalar)])
def test_scalar_form_called_vectorised_never_passes(family, bound):
    with pytest.raises((ValueError, TypeError)):
        assert_coverage(bound, family=family, n=N, alpha=ALPHA, side="lower", reps=500)


def test_wald_fails_hypothesis_strategy():
    """hypothesis, drawing (p, n, alpha), finds a parameter where Wald's exact coverage is below 1 - alpha."""
    from hypothesis import find, settings

    case = find(binomial_cases(max_n=60),
                lambda c: not exact_binomial_coverage(wald_vec, c.n, c.p, alpha=ALPHA).passed,
                settings=settings(max_examples=500, database=None))
    assert exact_binomial_coverage(wald_vec, case.n, case.p).min() < 1 - ALPHA


# ---------------------------------------------------------------- Clopper–Pearson passes every entry point
@pytest.mark.parametrize("n", [1, 2, 7, 30, 100])
def test_cp_passes_exact_binomial_coverage(n):
    for side in ("lower", "upper"):
        res = exact_binomial_coverage(lambda k, m: clopper_pearson(k, m, ALPHA, side=side), n, side=side,
                                      alpha=ALPHA)
        assert res.passed is True and res.min() >= 1 - ALPHA
    res = exact_binomial_coverage(lambda k, m: clopper_pearson(k, m, ALPHA, side="two-sided"), n,
                                  side="two-sided", alpha=ALPHA)
    assert res.passed is True
    res = exact_binomial_coverage(lambda k, m: float(clopper_pearson(k, m, ALPHA)), n, alpha=ALPHA,
                                  vectorized=False)
    assert res.passed is True


def test_exact_search_finds_the_supremum_of_the_miss_probability():
    # CP's miss probability approaches alpha just below each bound value (P_p(K >= j) = alpha at p = b_j);
    # the critical points find it, so CP at level 0.05 fails a promise of 0.04999. A grid alone would not
    # (measured: largest miss 0.0499999999999993 at the jump points, 0.049926 on the 101-point grid).
    res = exact_binomial_coverage(lambda k, m: clopper_pearson(k, m, 0.05), 30, alpha=0.04999)
    assert res.passed is False and 0.049999 < np.max(res.miss) <= 0.05
    grid = exact_binomial_coverage(lambda k, m: clopper_pearson(k, m, 0.05), 30, np.linspace(0, 1, 101),
                                   alpha=0.04999)
    assert grid.passed is True  # why the default search includes the jump points


def test_cp_passes_exact_trinomial_coverage():
    q = np.array([[0.98, 0.01, 0.01], [0.5, 0.3, 0.2], [0.2, 0.1, 0.7], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    truth = lambda qq: qq[:, 0] - qq[:, 1]  # noqa: E731
    for cov in (exact_trinomial_coverage(cp_margin_vec, N, q, truth, vectorized=True),
                exact_trinomial_coverage(cp_margin_scalar, N, q, truth)):
        assert cov.min() >= 1 - ALPHA


def test_cp_passes_monte_carlo_coverage():
    draw = lambda rng, s: (rng.random(s) < 0.98).astype(float)  # noqa: E731
    for res in (monte_carlo_coverage(cp_sample_vec, draw, 0.98, n=N, alpha=ALPHA, reps=4000, seed=1),
                monte_carlo_coverage(cp_sample_scalar, draw, 0.98, n=N, alpha=ALPHA, reps=1000, seed=1,
                                     vectorized=False)):
        assert res.passed and res.miss_rate <= ALPHA + 0.02


@pytest.mark.parametrize("family, bound, vectorized", [
    ("binomial", lambda k, n: clopper_pearson(k, n, ALPHA), True),
    ("binomial", lambda k, n: float(clopper_pearson(k, n, ALPHA)), False),
    (Trinomial(steps=20), cp_margin_vec, True),
    (Trinomial(steps=20), cp_margin_scalar, False),
    ("bernoulli", cp_sample_vec, True),
    ("bernoulli", cp_sample_scalar, False),
])
def test_cp_passes_assert_coverage(family, bound, vectorized):
    rep = assert_coverage(bound, family=family, n=N, alpha=ALPHA, side="lower", vectorized=vectorized, reps=1000)
    assert rep.passed and rep.n == N and rep.alpha == ALPHA and rep.params_checked > 1
    assert rep.worst_miss <= ALPHA + (0.03 if rep.method == "monte carlo" else 0.0)


def test_cp_two_sided_through_assert_coverage():
    cp2 = lambda k, n: clopper_pearson(k, n, ALPHA, side="two-sided")  # noqa: E731
    rep = assert_coverage(cp2, family="binomial", n=N, alpha=ALPHA, side="two-sided")
    assert rep.passed and rep.side == "two-sided"
    # the same interval promised at alpha/2 fails: each side alone misses up to alpha/2
    with pytest.raises(AssertionError, match="UNDERCOVERS"):
        assert_coverage(cp2, family="binomial", n=N, alpha=ALPHA / 2, side="two-sided")
    z = stats.norm.ppf(1 - ALPHA / 2)
    wald2 = lambda k, n: (k / n - z * np.sqrt(k / n * (1 - k / n) / n),  # noqa: E731
                          k / n + z * np.sqrt(k / n * (1 - k / n) / n))
    with pytest.raises(AssertionError, match="UNDERCOVERS"):
        assert_coverage(wald2, family="binomial", n=N, alpha=ALPHA, side="two-sided")
    draw = lambda rng, s: (rng.random(s) < 0.3).astype(float)  # noqa: E731
    res = monte_carlo_coverage(lambda x: cp2(np.rint(x.sum(0)).astype(int), x.shape[0]), draw, 0.3, n=N,
                               alpha=ALPHA, reps=3000, side="two-sided", seed=4)
    assert res.passed


def test_cp_passes_hypothesis_strategies():
    from hypothesis import given, settings

    @settings(max_examples=60, deadline=None, database=None)
    @given(binomial_cases(max_n=80))
    def check(c):
        # exact coverage at the drawn true p and alpha; and the drawn k lies in [0, n]
        assert exact_binomial_coverage(lambda k, n: clopper_pearson(k, n, c.alpha), c.n, c.p, alpha=c.alpha).passed
        assert 0 <= c.k <= c.n and 0 <= clopper_pearson(c.k, c.n, c.alpha) <= 1

    check()


# ---------------------------------------------------------------------------------- malformed bound output
@pytest.mark.parametrize("out, match", [
    (lambda k, n: k > 3, "must return real numbers.*bool"),
    (lambda k, n: k + 0j, "must return real numbers.*complex"),
    (lambda k, n: np.array([None] * (n + 1)), "must return real numbers.*object"),
    (lambda k, n: 0.0, r"returned shape \(\) but must return shape \(6,\)"),
    (lambda k, n: np.zeros((n + 1, 1)), r"returned shape \(6, 1\) but must return shape \(6,\)"),
    (lambda k, n: np.zeros(n), r"returned shape \(5,\)"),
    (lambda k, n: np.where(k == 2, np.nan, 0.0), r"returned NaN at k = 2 \(n = 5\)"),
])
def test_malformed_binomial_outputs_are_refused(out, match):
    with pytest.raises(ValueError, match=match):
        exact_binomial_coverage(out, 5, 0.5)
    with pytest.raises(ValueError, match=match):
        assert_coverage(out, family="binomial", n=5, alpha=ALPHA)


def test_infinite_bounds_are_accepted():
    res = exact_binomial_coverage(lambda k, n: np.full(n + 1, -np.inf), 5, alpha=ALPHA)
    assert res.passed and res.min() == 1.0
    res = exact_binomial_coverage(lambda k, n: np.full(n + 1, np.inf), 5, alpha=ALPHA)
    assert not res.passed and res.min() == 0.0


def test_malformed_two_sided_outputs_are_refused():
    with pytest.raises(ValueError, match=r"two-sided and must return a pair \(low, high\)"):
        exact_binomial_coverage(lambda k, n: k / n, 5, side="two-sided")
    with pytest.raises(ValueError, match="empty interval: low 1.0 > high 0.0 at k = 0"):
        exact_binomial_coverage(lambda k, n: (np.ones(n + 1), np.zeros(n + 1)), 5, side="two-sided")
    with pytest.raises(ValueError, match=r"\(high end\) returned NaN at k = 1"):
        exact_binomial_coverage(lambda k, n: (k * 0.0, np.where(k == 1, np.nan, 1.0)), 5, side="two-sided")


def test_malformed_sample_outputs_are_refused():
    d = lambda rng, s: rng.random(s)  # noqa: E731
    with pytest.raises(ValueError, match=r"returned NaN at repetition"):
        monte_carlo_coverage(lambda x: np.full(x.shape[1], np.nan), d, 0.5, n=5, alpha=ALPHA, reps=10)
    with pytest.raises(ValueError, match=r"returned shape \(3, 10\) but must return shape \(5, 10\)"):
        monte_carlo_coverage(lambda x: np.zeros((3, x.shape[1])), d, 0.5, n=5, alpha=ALPHA, reps=10)
    with pytest.raises(ValueError, match="must return real numbers.*bool"):
        monte_carlo_coverage(lambda x: x.mean(0) > 0.5, d, 0.5, n=5, alpha=ALPHA, reps=10)
    with pytest.raises(ValueError, match=r"draw\(rng, size=\(5, 10\)\) returned shape \(10,\)"):
        monte_carlo_coverage(lambda x: x.mean(0), lambda rng, s: rng.random(10), 0.5, n=5, alpha=ALPHA, reps=10)
    with pytest.raises(ValueError, match=r"vectorized=False\) returned shape \(5, 1\)"):
        monte_carlo_coverage(lambda x: np.zeros((5, 1)), d, 0.5, n=5, alpha=ALPHA, reps=3, vectorized=False)


def test_check_bound_output_directly():
    low, high = check_bound_output((np.zeros(3), np.ones(3)), (3,), "two-sided")
    assert low.dtype == np.float64 and high.shape == (3,)
    assert check_bound_output(np.arange(3), (3,), "lower").dtype == np.float64  # ints are real numbers
    with pytest.raises(ValueError, match="side must be one of"):
        check_bound_output(np.zeros(3), (3,), "both")


# ------------------------------------------------------------------------------------- the existing checks
def test_binomial_coverage_of_point_estimate_is_about_half():
    # The point estimate k/n as a "lower bound" covers p = 1/2 exactly when k <= n/2:
    # P(Bin(10, 1/2) <= 5) = 638/1024 (hand count).
    cov = exact_binomial_coverage(lambda k, n: k / n, 10, 0.5, alpha=0.05)
    assert float(cov) == pytest.approx(638 / 1024, rel=1e-12)
    assert cov.passed is False and cov.worst_param == 0.5
    with pytest.raises(TypeError, match="use .passed"):
        bool(cov)  # `assert exact_binomial_coverage(...)` cannot pass by accident
    assert exact_binomial_coverage(lambda k, n: k / n, 10, 0.5).passed is None  # no alpha, no verdict


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
    b = lambda x1, x2, x3: clopper_pearson(x1, x1 + x2 + x3, 0.1)  # noqa: E731
    q = np.array([[0.3, 0.3, 0.4], [0.9, 0.05, 0.05], [0.5, 0.0, 0.5]])
    tri = exact_trinomial_coverage(b, 12, q, truth_fn=lambda qq: qq[:, 0], vectorized=True)
    bino = exact_binomial_coverage(lambda k, n: clopper_pearson(k, n, 0.1), 12, q[:, 0])
    np.testing.assert_allclose(tri, np.asarray(bino), rtol=1e-12)
    tri_loop = exact_trinomial_coverage(b, 12, q, truth_fn=lambda qq: qq[:, 0])
    np.testing.assert_allclose(tri, tri_loop, rtol=1e-12)
    rep = assert_coverage(b, family=Trinomial(truth=lambda qq: qq[:, 0]), n=12, alpha=0.1)
    assert rep.passed and rep.params_checked == 41 * 42 // 2


def test_monte_carlo_flags_anticonservative_bound():
    # The sample mean as a lower bound misses about half the time.
    res = monte_carlo_coverage(lambda x: x.mean(axis=0), lambda rng, s: rng.random(s), 0.5,
                               n=20, alpha=0.05, reps=4000, seed=1)
    assert not res.passed and res.miss_rate > 0.4


def test_monte_carlo_passes_valid_bound_and_counts_paths():
    # Hoeffding's lower bound (Hoeffding 1963) on U(0,1) data: valid.
    n, a = 30, 0.1
    hoeff = lambda x: x.mean(axis=0) - np.sqrt(np.log(1 / a) / (2 * n))  # noqa: E731
    res = monte_carlo_coverage(hoeff, lambda rng, s: rng.random(s), 0.5, n=n, alpha=a, reps=5000, seed=2)
    assert res.passed and res.reps == 5000
    # A path whose last entry is the mean: any-time misses are counted.
    path = lambda x: np.cumsum(x, axis=0) / np.arange(1, x.shape[0] + 1)[:, None]  # noqa: E731
    res2 = monte_carlo_coverage(path, lambda rng, s: rng.random(s), 0.5, n=n, alpha=a, reps=2000, seed=3)
    # the final row alone misses about half the time; over the whole path far more often
    last = monte_carlo_coverage(lambda x: path(x)[-1], lambda rng, s: rng.random(s), 0.5, n=n, alpha=a, reps=2000,
                                seed=3)
    assert last.miss_rate < 0.6 < 0.8 < res2.miss_rate and not res2.passed
    # the same path one repetition at a time
    res3 = monte_carlo_coverage(lambda x: np.cumsum(x) / np.arange(1, len(x) + 1), lambda rng, s: rng.random(s),
                                0.5, n=n, alpha=a, reps=2000, seed=3, vectorized=False)
    assert res3.misses == res2.misses


def test_monte_carlo_chunking_is_deterministic():
    f = lambda x: x.mean(axis=0) - 0.1  # noqa: E731
    d = lambda rng, s: rng.random(s)  # noqa: E731
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
    with pytest.raises(ValueError, match=r"reps must be an integer >= 1, got 0"):  # was ZeroDivisionError
        monte_carlo_coverage(lambda x: x.mean(0), lambda r, s: r.random(s), 0.5, n=5, alpha=0.1, reps=0)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        exact_binomial_coverage(lambda k, n: k / n, 0, 0.5)
    with pytest.raises(ValueError, match=r"p must be probabilities in \[0, 1\]"):
        exact_binomial_coverage(lambda k, n: k / n, 5, 1.5)
    with pytest.raises(ValueError, match="give the parameters p= when truth_fn is given"):
        exact_binomial_coverage(lambda k, n: k / n, 5, truth_fn=lambda p: p)
    with pytest.raises(ValueError, match="true_value must be finite"):
        monte_carlo_coverage(lambda x: x.mean(0), lambda r, s: r.random(s), np.nan, n=5, alpha=0.1, reps=10)
    with pytest.raises(ValueError, match="test_level must lie in"):
        monte_carlo_coverage(lambda x: x.mean(0), lambda r, s: r.random(s), 0.5, n=5, alpha=0.1, test_level=0)
    with pytest.raises(ValueError, match="family must be one of"):
        assert_coverage(lambda k, n: k / n, family="poisson", n=5, alpha=0.1)
    with pytest.raises(ValueError, match="ps must be probabilities"):
        Bernoulli(ps=[1.2])
    with pytest.raises(ValueError, match="sample_cases needs a sample family"):
        sample_cases("binomial")


def test_user_family_and_report():
    # a user's own law: exponential(1) clipped to [0, 1] has mean 1 - 1/e
    fam = SampleFamily("clipped-exponential", lambda rng, size, lam: np.minimum(rng.exponential(1 / lam, size), 1.0),
                       lambda lam: (1 - np.exp(-lam)) / lam, params=[1.0, 3.0])
    hoeff = lambda x: x.mean(axis=0) - np.sqrt(np.log(1 / ALPHA) / (2 * x.shape[0]))  # noqa: E731
    rep = assert_coverage(hoeff, family=fam, n=40, alpha=ALPHA, reps=2000, seed=5)
    assert rep.passed and rep.method == "monte carlo" and rep.test_level == pytest.approx(1e-3 / 2)
    assert "Bonferroni over 2 parameters" in rep.message()
    assert len(rep.details) == 2
    rep = assert_coverage(lambda k, n: clopper_pearson(k, n, ALPHA), family=Binomial(ps=[0.1, 0.5]), n=10,
                          alpha=ALPHA)
    assert rep.params_checked == 2


def test_strategies():
    from hypothesis import given, settings

    @settings(max_examples=50, deadline=None, database=None)
    @given(count_vectors(m=4, max_n=50))
    def check_counts(cv):
        counts, n = cv
        assert counts.shape == (4,) and counts.sum() == n and np.all(counts >= 0)

    @settings(max_examples=30, deadline=None, database=None)
    @given(score_matrices(n_max=20, m=5))
    def check_scores(s):
        assert s.shape[1] == 5 and s.shape[0] >= 2
        np.testing.assert_allclose(s.sum(axis=1), 1.0, rtol=1e-9)
        assert np.all((s >= 0) & (s <= 1))

    @settings(max_examples=50, deadline=None, database=None)
    @given(multinomial_cases(m=3, max_n=40))
    def check_multinomial(c):
        assert c.q.shape == (3,) and abs(c.q.sum() - 1) < 1e-12 and np.all(c.q >= 0)
        assert c.counts.sum() == c.n and np.all(c.counts[c.q == 0] == 0)  # data really come from q
        assert 0 < c.alpha < 1

    @settings(max_examples=40, deadline=None, database=None)
    @given(sample_cases("beta", max_n=30), sample_cases("bernoulli", max_n=30))
    def check_samples(b, c):
        assert b.x.shape == (b.n,) and np.all((b.x >= 0) & (b.x <= 1))
        assert b.truth == pytest.approx(b.param[0] / (b.param[0] + b.param[1]))
        assert set(np.unique(c.x)) <= {0.0, 1.0} and c.truth == c.param

    @settings(max_examples=40, deadline=None, database=None)
    @given(binomial_cases(max_n=30))
    def check_binomial(c):
        assert 0 <= c.k <= c.n and 0 <= c.p <= 1
        if c.p == 0:
            assert c.k == 0
        if c.p == 1:
            assert c.k == c.n

    check_counts()
    check_scores()
    check_multinomial()
    check_samples()
    check_binomial()
