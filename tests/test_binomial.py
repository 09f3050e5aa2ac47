"""Clopper–Pearson: golden values from SciPy and statsmodels, exact coverage, bad input."""
import numpy as np
import pytest
from scipy import stats

from confbounds import clopper_pearson
from confbounds.coverage import exact_binomial_coverage


def _triples(count=3000, seed=1):
    rng = np.random.default_rng(seed)
    n = rng.integers(1, 2000, size=count)
    # one third k = 0 or k = n, the rest uniform
    k = rng.integers(0, n + 1)
    k[: count // 6] = 0
    k[count // 6: count // 3] = n[count // 6: count // 3]
    alpha = rng.choice([1e-6, 1e-3, 0.01, 0.05, 0.1, 0.2, 0.5, 0.9], size=count)
    return k, n, alpha


# SciPy's binomtest finds each endpoint with brentq at its default xtol = 2e-12 (absolute), so
# near 0 its values carry a relative error up to ~1e-9 (checked against mpmath at 50 digits in
# test_matches_mpmath below: ours agree to 1e-13 there, SciPy's brentq does not).  We therefore
# compare with rtol = 1e-10 plus brentq's own absolute tolerance; docs/validation.md records it.
BRENTQ_XTOL = 2e-12


@pytest.mark.parametrize("side", ["lower", "upper", "two-sided"])
def test_matches_scipy_binomtest(side):
    # Golden values: scipy.stats.binomtest(k, n, alternative).proportion_ci(method="exact"),
    # SciPy's own Clopper-Pearson implementation (a one-sided test gives a one-sided interval).
    k, n, alpha = _triples()
    ours = clopper_pearson(k, n, alpha, side=side)
    alt = {"lower": "greater", "upper": "less", "two-sided": "two-sided"}[side]
    ref = np.array([
        tuple(stats.binomtest(int(a), int(b), alternative=alt).proportion_ci(confidence_level=1 - c, method="exact"))
        for a, b, c in zip(k, n, alpha)
    ])
    tol = dict(rtol=1e-10, atol=BRENTQ_XTOL)
    if side == "lower":
        np.testing.assert_allclose(ours, ref[:, 0], **tol)
    elif side == "upper":
        np.testing.assert_allclose(ours, ref[:, 1], **tol)
    else:
        np.testing.assert_allclose(ours[0], ref[:, 0], **tol)
        np.testing.assert_allclose(ours[1], ref[:, 1], **tol)


def test_matches_scipy_beta_ppf():
    # Golden values: the defining formula (theory §3) through scipy.stats.beta.ppf, to rtol 1e-10, no atol.
    k, n, alpha = _triples(seed=4)
    low = clopper_pearson(k, n, alpha)
    up = clopper_pearson(k, n, alpha, side="upper")
    ref_low = np.where(k == 0, 0.0, stats.beta.ppf(alpha, k, n - k + 1))
    ref_up = np.where(k == n, 1.0, stats.beta.ppf(1 - alpha, k + 1, n - k))
    np.testing.assert_allclose(low, ref_low, rtol=1e-10, atol=0)
    np.testing.assert_allclose(up, ref_up, rtol=1e-10, atol=0)


def test_matches_mpmath():
    # Golden values: 50-digit mpmath inversion of the binomial tail, on cases where SciPy's
    # binomtest (brentq) is off by ~1e-9 relative.
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    cases = [(0, 1900, 0.9), (3, 1000, 1e-6), (1, 50, 0.05), (49, 50, 0.05), (700, 1999, 0.001)]
    for k, n, a in cases:
        ours = clopper_pearson(k, n, a, side="upper")
        # upper endpoint p solves P(Bin(n, p) <= k) = a, i.e. I_p(k + 1, n - k) = 1 - a
        ref = mp.findroot(lambda p: mp.betainc(k + 1, n - k, 0, p, regularized=True) - (1 - mp.mpf(a)),
                          mp.mpf(ours), tol=mp.mpf(10) ** -40)
        assert ours == pytest.approx(float(ref), rel=1e-13)
        assert ours >= float(ref) * (1 - 1e-15)  # rounded outward


def test_matches_statsmodels_beta():
    # Golden values: statsmodels.stats.proportion.proportion_confint(method="beta"), two-sided.
    from statsmodels.stats.proportion import proportion_confint

    k, n, alpha = _triples(seed=2)
    low, high = clopper_pearson(k, n, alpha, side="two-sided")
    ref_low, ref_high = proportion_confint(k, n, alpha=alpha, method="beta")
    ref_low = np.nan_to_num(ref_low, nan=0.0)  # statsmodels returns nan at k = 0 in some versions
    ref_high = np.nan_to_num(ref_high, nan=1.0)
    np.testing.assert_allclose(low, ref_low, rtol=1e-10, atol=0)
    np.testing.assert_allclose(high, ref_high, rtol=1e-10, atol=0)


def test_textbook_values():
    # Closed forms: k = n gives lower alpha^(1/n); k = 0 gives upper 1 - alpha^(1/n).
    for n in (1, 5, 37, 1000):
        assert clopper_pearson(n, n, 0.05) == pytest.approx(0.05 ** (1 / n), rel=1e-12)
        assert clopper_pearson(n, n, 0.05) <= 0.05 ** (1 / n)  # safety margin is outward
        assert clopper_pearson(0, n, 0.05, side="upper") == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-12)
    assert clopper_pearson(0, 10, 0.05) == 0.0
    assert clopper_pearson(10, 10, 0.05, side="upper") == 1.0


def test_broadcast_and_scalar_types():
    out = clopper_pearson(np.arange(11), 10, 0.05)
    assert out.shape == (11,)
    assert np.all(np.diff(out) > 0)  # monotone in k
    assert isinstance(clopper_pearson(3, 10, 0.05), float)
    lo, hi = clopper_pearson([[1], [2]], [10, 20, 30], 0.1, side="two-sided")
    assert lo.shape == hi.shape == (2, 3)
    assert np.all(lo < hi)


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 17, 30, 50])
def test_exact_coverage(n, alpha):
    ps = np.concatenate([np.linspace(0, 1, 401), [1e-9, 1 - 1e-9]])
    low = exact_binomial_coverage(lambda k, m: clopper_pearson(k, m, alpha), n, ps)
    up = exact_binomial_coverage(lambda k, m: clopper_pearson(k, m, alpha, side="upper"), n, ps, side="upper")
    assert low.min() >= 1 - alpha
    assert up.min() >= 1 - alpha


def test_nested_in_alpha():
    k, n, _ = _triples(500, seed=3)
    a = clopper_pearson(k, n, 0.01)
    b = clopper_pearson(k, n, 0.05)
    assert np.all(a <= b)


@pytest.mark.parametrize(
    "args, match",
    [
        ((11, 10, 0.05), "k must be <= n"),
        ((-1, 10, 0.05), "non-negative"),
        ((2.5, 10, 0.05), "non-integer"),
        ((1, 0, 0.05), "n must be >= 1"),
        ((1, 10, 0.0), "alpha"),
        ((1, 10, 1.0), "alpha"),
        ((1, 10, float("nan")), "alpha"),
        ((np.array([]), 10, 0.05), "empty"),
        ((float("inf"), 10, 0.05), "finite"),
    ],
)
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        clopper_pearson(*args)


def test_bad_side():
    with pytest.raises(ValueError, match="'left'"):
        clopper_pearson(1, 10, 0.05, side="left")


def test_clopper_pearson_estimate_is_scipys_starting_point():
    """The unverified estimate (forecasts only) agrees with the verified bound to 1e-9 relative, scalar and
    vectorised give the same numbers, and the closed-form edges are exact."""
    from confbounds.binomial import clopper_pearson_estimate

    k = np.array([0, 1, 7, 500, 9_999, 10_000])
    for side in ("lower", "upper"):
        est = clopper_pearson_estimate(k, 10_000, 1e-4, side)
        ver = clopper_pearson(k, 10_000, 1e-4, side)
        assert est.shape == k.shape
        np.testing.assert_allclose(est, ver, rtol=1e-9, atol=0)
        assert [clopper_pearson_estimate(int(v), 10_000, 1e-4, side) for v in k] == est.tolist()
    assert clopper_pearson_estimate(0, 10, 0.05, "lower") == 0.0
    assert clopper_pearson_estimate(10, 10, 0.05, "upper") == 1.0
    with pytest.raises(ValueError, match="side"):
        clopper_pearson_estimate(1, 10, 0.05, "two-sided")
