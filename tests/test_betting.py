"""Tests of confbounds.betting against transcriptions of Waudby-Smith & Ramdas (2024).

The reference functions below are written directly from theory §5 (PrPl-EB,
their Thm 2; hedged capital, their Thm 3) in plain Python/NumPy, independent of
the Numba kernels.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from confbounds import betting_ci, betting_cs, empirical_bernstein, hoeffding
from confbounds.betting import ROOT_RTOL, TRUNCATION

C = TRUNCATION
unit_floats = st.floats(0.0, 1.0, allow_nan=False, allow_infinity=False)


# ---------------------------------------------------------------- references
def plug_in(x):
    """mu_{t-1}, sigma2_{t-1} for t = 1..n (theory §5: mu_0 = 1/2, sigma2_0 = 1/4)."""
    mu_prev, var_prev = [0.5], [0.25]
    sx = ssq = 0.0
    for t, xi in enumerate(x, start=1):
        sx += xi
        mu = (0.5 + sx) / (t + 1)
        ssq += (xi - mu) ** 2
        mu_prev.append(mu)
        var_prev.append((0.25 + ssq) / (t + 1))
    return np.array(mu_prev[:-1]), np.array(var_prev[:-1])


def prpl_reference(x, alpha, fixed_n=None):
    """PrPl-EB lower CS L_t (Thm 2), clamped at 0; fixed-n bets if fixed_n is given."""
    L = math.log(1 / alpha)
    mu_prev, var_prev = plug_in(x)
    t = np.arange(1, len(x) + 1)
    if fixed_n is None:
        lam = np.minimum(np.sqrt(2 * L / (var_prev * t * np.log(1 + t))), C)
    else:
        lam = np.minimum(np.sqrt(2 * L / (fixed_n * var_prev)), C)
    v = 4 * (x - mu_prev) ** 2
    psi = (-np.log(1 - lam) - lam) / 4
    path = (np.cumsum(lam * x) - L - np.cumsum(v * psi)) / np.cumsum(lam)
    return np.maximum(path, 0.0)


def hedged_bets(x, alpha, fixed_n=None):
    L = math.log(1 / alpha)
    _, var_prev = plug_in(x)
    t = np.arange(1, len(x) + 1)
    if fixed_n is None:
        return np.sqrt(2 * L / (var_prev * t * np.log(1 + t)))
    return np.sqrt(2 * L / (fixed_n * var_prev))


def log_capital(x, lam_dot, m):
    """log K^+_t(m) for every t (Thm 3): sum log(1 + min(lam_dot, c/m) (x - m))."""
    lam = np.minimum(lam_dot, C / m) if m > 0 else lam_dot
    return np.cumsum(np.log1p(lam * (x - m)))


# ---------------------------------------------------------------- PrPl-EB
@pytest.mark.parametrize("seed,law", [(0, "beta"), (1, "bern"), (2, "three")])
def test_prpl_cs_matches_transcription(seed, law):
    rng = np.random.default_rng(seed)
    n = 2000
    x = {"beta": rng.beta(2, 5, n), "bern": (rng.random(n) < 0.9).astype(float),
         "three": rng.choice([0.0, 0.5, 1.0], n, p=[0.2, 0.3, 0.5])}[law]
    for alpha in (0.05, 0.2):
        ref = prpl_reference(x, alpha)
        got = betting_cs(x, alpha, method="prpl-eb")
        assert got.shape == (n,)
        assert np.all(got <= ref)  # rounded down, never up
        np.testing.assert_allclose(got, ref, atol=1e-9, rtol=0)
        ci = betting_ci(x, alpha, method="prpl-eb")
        ref_ci = prpl_reference(x, alpha, fixed_n=n)[-1]
        assert ci <= ref_ci and ref_ci - ci < 1e-9


def test_prpl_upper_is_mirror_and_two_sided_splits_alpha():
    x = np.random.default_rng(3).beta(5, 2, 500)
    up = betting_cs(x, 0.1, side="upper", method="prpl-eb")
    np.testing.assert_allclose(up, 1 - prpl_reference(1 - x, 0.1), atol=1e-9)
    assert np.all(up >= 1 - prpl_reference(1 - x, 0.1))
    lo, hi = betting_cs(x, 0.1, side="two-sided", method="prpl-eb")
    np.testing.assert_array_equal(lo, betting_cs(x, 0.05, method="prpl-eb"))
    np.testing.assert_array_equal(hi, betting_cs(x, 0.05, side="upper", method="prpl-eb"))


# ---------------------------------------------------------------- hedged CI
@pytest.mark.parametrize("n", [2, 30, 1000, 20000])
@pytest.mark.parametrize("alpha", [0.01, 0.2])
def test_hedged_ci_is_the_root_of_the_log_capital(n, alpha):
    rng = np.random.default_rng(n)
    x = rng.beta(2, 5, n)
    low = betting_ci(x, alpha)
    thr = math.log(1 / alpha)
    lam = hedged_bets(x, alpha, fixed_n=n)
    if low == 0.0:
        # No rejection anywhere: the capital at 0+ stays below 1/alpha.
        assert log_capital(x, lam, 0.0)[-1] < thr + 1e-9
        return
    # The bound is rejected (capital >= 1/alpha) ...
    assert log_capital(x, lam, low)[-1] >= thr - 1e-9
    # ... and is within the relative root tolerance of the boundary: a point just above is accepted.
    above = low * (1 + 3 * ROOT_RTOL) + 1e-14
    assert log_capital(x, lam, above)[-1] < thr


def test_hedged_ci_root_agrees_with_bisection_reference():
    x = np.random.default_rng(7).beta(8, 2, 3000)
    alpha = 0.05
    thr, lam = math.log(1 / alpha), hedged_bets(x, alpha, fixed_n=len(x))
    lo, hi = 0.0, 1.0
    for _ in range(200):  # plain bisection in NumPy, many more steps than needed
        mid = 0.5 * (lo + hi)
        if log_capital(x, lam, mid)[-1] >= thr:
            lo = mid
        else:
            hi = mid
    got = betting_ci(x, alpha)
    assert got <= lo + 1e-15
    assert (lo - got) <= 2 * ROOT_RTOL * lo


def test_hedged_upper_two_sided_and_columns():
    rng = np.random.default_rng(8)
    X = rng.beta(2, 2, (400, 5))
    lo = betting_ci(X, 0.1)
    up = betting_ci(X, 0.1, side="upper")
    for j in range(5):
        assert lo[j] == betting_ci(X[:, j], 0.1)
        assert up[j] == pytest.approx(1 - betting_ci(1 - X[:, j], 0.1), abs=1e-14)
        assert up[j] >= 1 - betting_ci(1 - X[:, j], 0.1)
    l2, h2 = betting_ci(X, 0.1, side="two-sided")
    np.testing.assert_array_equal(l2, betting_ci(X, 0.05))
    np.testing.assert_array_equal(h2, betting_ci(X, 0.05, side="upper"))


@pytest.mark.parametrize("method", ["hedged", "prpl-eb"])
def test_rescaling_from_bounds(method):
    u = np.random.default_rng(9).beta(3, 3, 800)
    a, b = -1.0, 3.0
    got = betting_ci(a + (b - a) * u, 0.05, bounds=(a, b), method=method)
    ref = a + (b - a) * betting_ci(u, 0.05, method=method)
    assert got <= ref + 1e-12 and abs(got - ref) < 1e-9
    path = betting_cs(a + (b - a) * u, 0.05, bounds=(a, b), method=method)
    ref_path = a + (b - a) * betting_cs(u, 0.05, method=method)
    np.testing.assert_allclose(path, ref_path, atol=1e-9)


# ---------------------------------------------------------------- hedged CS
@pytest.mark.parametrize("grid", [50, 1000])
def test_hedged_cs_is_largest_rejected_grid_point(grid):
    rng = np.random.default_rng(10)
    x = rng.choice([0.2, 0.6, 0.9], 300, p=[0.2, 0.3, 0.5])
    alpha = 0.1
    thr = math.log(1 / alpha)
    lam = hedged_bets(x, alpha)
    path = betting_cs(x, alpha, grid_size=grid)
    assert path.shape == (300,)
    ms = np.arange(1, grid) / grid
    caps = np.stack([log_capital(x, lam, m) for m in ms])  # (grid-1, n)
    rejected = caps >= thr
    expected = np.array([ms[np.nonzero(rejected[:, t])[0]].max() if rejected[:, t].any() else 0.0
                         for t in range(len(x))])
    # Same grid point except where the capital is within rounding of the threshold.
    close = np.array([np.any(np.abs(caps[:, t] - thr) < 1e-9) for t in range(len(x))])
    np.testing.assert_allclose(path[~close], expected[~close], atol=1e-14)
    assert np.all(path <= expected + 1e-14)


def test_cs_running_intersection():
    x = np.random.default_rng(11).beta(2, 5, 2000)
    for method in ("hedged", "prpl-eb"):
        raw = betting_cs(x, 0.05, method=method)
        ri = betting_cs(x, 0.05, method=method, running_intersection=True)
        np.testing.assert_array_equal(ri, np.maximum.accumulate(raw))
        lo, hi = betting_cs(x, 0.05, side="two-sided", method=method, running_intersection=True)
        assert np.all(np.diff(lo) >= 0) and np.all(np.diff(hi) <= 0) and np.all(lo <= hi)


def test_cs_columns_and_shapes():
    X = np.random.default_rng(12).random((100, 4))
    for method in ("hedged", "prpl-eb"):
        P = betting_cs(X, 0.05, method=method)
        assert P.shape == (100, 4)
        for j in range(4):
            np.testing.assert_array_equal(P[:, j], betting_cs(X[:, j], 0.05, method=method))


# ---------------------------------------------------------------- tightness
@pytest.mark.parametrize("side", ["lower", "upper"])
def test_tightness_on_low_variance_data(side):
    # Seeded low-variance data: Beta(200, 200) has sd 0.025 on [0, 1].
    x = np.random.default_rng(2024).beta(200, 200, 1000)
    h = betting_ci(x, 0.05, side=side)
    e = empirical_bernstein(x, 0.05, side=side)
    f = hoeffding(x, 0.05, side=side)
    p = betting_ci(x, 0.05, side=side, method="prpl-eb")
    sign = 1 if side == "lower" else -1
    assert sign * h > sign * e > sign * f
    assert sign * p > sign * e
    # Widths (distance from the sample mean), to show the gap is material.
    m = x.mean()
    assert abs(m - h) < 0.8 * abs(m - e) and abs(m - e) < 0.5 * abs(m - f)


# ---------------------------------------------------------------- properties
arrays = hnp.arrays(np.float64, st.integers(1, 40), elements=unit_floats)


@settings(max_examples=80, deadline=None)
@given(arrays, st.floats(0.001, 0.5), st.sampled_from(["hedged", "prpl-eb"]))
def test_nested_in_alpha(x, alpha, method):
    assert betting_ci(x, alpha / 2, method=method) <= betting_ci(x, alpha, method=method)
    assert betting_ci(x, alpha / 2, side="upper", method=method) >= betting_ci(x, alpha, side="upper",
                                                                              method=method)


@settings(max_examples=80, deadline=None)
@given(arrays, unit_floats, st.sampled_from(["hedged", "prpl-eb"]))
def test_monotone_in_last_sample(x, frac, method):
    # The last sample enters only the last factor/term (bets are predictable):
    # hedged: 1 + lambda_n(m)(X_n - m) grows with X_n for every m;
    # PrPl-EB: dL_n/dX_n = (lambda_n - 8 (X_n - mu_{n-1}) psi_E(lambda_n)) / sum lambda > 0
    # since 8 psi_E(l) < l for l <= 1/2.
    y = x.copy()
    y[-1] = x[-1] + frac * (1 - x[-1])
    assert betting_ci(y, 0.05, method=method) >= betting_ci(x, 0.05, method=method)
    assert betting_cs(y, 0.05, method=method)[-1] >= betting_cs(x, 0.05, method=method)[-1]


@settings(max_examples=60, deadline=None)
@given(arrays, st.sampled_from(["hedged", "prpl-eb"]))
def test_bounds_are_ordered_and_in_range(x, method):
    lo, hi = betting_ci(x, 0.1, side="two-sided", method=method)
    assert 0.0 <= lo <= hi <= 1.0
    plo, phi = betting_cs(x, 0.1, side="two-sided", method=method)
    assert np.all(plo >= 0) and np.all(phi <= 1) and np.all(plo <= phi)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("fn", [betting_ci, betting_cs])
def test_bad_input(fn):
    good = np.array([0.1, 0.5, 0.9])
    with pytest.raises(ValueError, match="nan"):
        fn(np.array([0.1, np.nan]), 0.05)
    with pytest.raises(ValueError, match="inf"):
        fn(np.array([0.1, -np.inf]), 0.05)
    with pytest.raises(ValueError, match="2.5"):
        fn(np.array([0.1, 2.5]), 0.05)
    with pytest.raises(ValueError, match="0.1"):
        fn(np.array([0.1, 0.5]), 0.05, bounds=(0.2, 1.0))
    with pytest.raises(ValueError, match="empty"):
        fn(np.zeros((0, 3)), 0.05)
    for bad_alpha in (0.0, 1.0, 2.0, -1e-3, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            fn(good, bad_alpha)
    with pytest.raises(ValueError, match="'kelly'"):
        fn(good, 0.05, method="kelly")
    with pytest.raises(ValueError, match="'both'"):
        fn(good, 0.05, side="both")


def test_bad_grid_size():
    for g in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="grid_size"):
            betting_cs(np.array([0.5, 0.2]), 0.05, grid_size=g)


def test_single_sample_is_allowed_and_trivial():
    assert betting_ci(np.array([0.7]), 0.05) == 0.0
    assert betting_cs(np.array([0.7]), 0.05, method="prpl-eb").tolist() == [0.0]
