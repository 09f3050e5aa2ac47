"""Tests of confbounds.bernstein: empirical Bernstein and Hoeffding bounds.

Expected values are recomputed here from the published formulas:
Maurer & Pontil (2009) Thm 4 (with ln(2/delta), theory §5 / erratum 8.6) and
Hoeffding (1963) Thm 2.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from confbounds import empirical_bernstein, hoeffding
from confbounds.bernstein import fp_margin

unit_floats = st.floats(0.0, 1.0, allow_nan=False, allow_infinity=False)


def eb_reference(x, alpha):
    """Maurer–Pontil Thm 4 on [0, 1] data, transcribed directly."""
    n = len(x)
    v = np.var(x, ddof=1)
    lg = math.log(2.0 / alpha)
    return np.mean(x) - math.sqrt(2 * v * lg / n) - 7 * lg / (3 * (n - 1))


def test_eb_matches_maurer_pontil_formula():
    x = np.random.default_rng(0).beta(2, 5, size=300)
    for alpha in (0.001, 0.05, 0.3):
        ref = eb_reference(x, alpha)
        got = empirical_bernstein(x, alpha)
        # Rounded down by the documented margin, never more than 1e-12 away.
        assert got <= ref
        assert ref - got < 1e-12


def test_eb_uses_log_two_over_delta_not_one_over_delta():
    # Erratum 8.6: with ln(1/delta) the bound would be higher (anti-conservative).
    x = np.random.default_rng(1).random(100)
    n, v, m = len(x), np.var(x, ddof=1), np.mean(x)
    wrong = m - math.sqrt(2 * v * math.log(1 / 0.05) / n) - 7 * math.log(1 / 0.05) / (3 * (n - 1))
    assert empirical_bernstein(x, 0.05) < wrong - 1e-3


def test_eb_upper_and_two_sided():
    x = np.random.default_rng(2).random(200)
    n, v, m = len(x), np.var(x, ddof=1), np.mean(x)
    for alpha in (0.01, 0.1):
        lg = math.log(2 / alpha)
        up = m + math.sqrt(2 * v * lg / n) + 7 * lg / (3 * (n - 1))
        assert empirical_bernstein(x, alpha, side="upper") == pytest.approx(min(up, 1.0), abs=1e-12)
        lo, hi = empirical_bernstein(x, alpha, side="two-sided")
        assert lo == empirical_bernstein(x, alpha / 2, side="lower")
        assert hi == empirical_bernstein(x, alpha / 2, side="upper")


def test_eb_clamps_to_range_instead_of_returning_nonsense():
    # n = 2: the deviation term 7 ln(2/delta)/3 exceeds 1, so the bound is the trivial a (resp. b).
    assert empirical_bernstein([0.4, 0.6], 0.05) == 0.0
    assert empirical_bernstein([0.4, 0.6], 0.05, side="upper") == 1.0
    assert empirical_bernstein([3.0, 4.0], 0.05, bounds=(2.0, 5.0)) == 2.0


def test_hoeffding_formula():
    x = np.random.default_rng(3).random(400)
    for alpha in (0.01, 0.2):
        ref = np.mean(x) - math.sqrt(math.log(1 / alpha) / (2 * len(x)))
        got = hoeffding(x, alpha)
        assert got <= ref and ref - got < 1e-12
        lo, hi = hoeffding(x, alpha, side="two-sided")
        assert lo == hoeffding(x, alpha / 2) and hi == hoeffding(x, alpha / 2, side="upper")


def test_columns_are_bounded_separately():
    X = np.random.default_rng(4).random((50, 7))
    for fn in (empirical_bernstein, hoeffding):
        cols = fn(X, 0.05)
        assert cols.shape == (7,)
        for j in range(7):
            assert cols[j] == pytest.approx(fn(X[:, j], 0.05), abs=1e-15)
        lo, hi = fn(X, 0.05, side="two-sided")
        assert lo.shape == hi.shape == (7,) and np.all(lo < hi)


def test_rescaling_from_bounds():
    u = np.random.default_rng(5).beta(3, 3, size=500)
    a, b = -2.0, 6.0
    x = a + (b - a) * u
    got = empirical_bernstein(x, 0.05, bounds=(a, b))
    ref = a + (b - a) * eb_reference(u, 0.05)
    assert got <= ref + 1e-12 and abs(got - ref) < 1e-9


def test_margin_is_documented_size():
    assert fp_margin(10**6) == pytest.approx(16 * (10**6 + 1) * 2.0**-53)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.integers(2, 40), elements=unit_floats), st.floats(0.001, 0.5))
def test_eb_nested_in_alpha(x, alpha):
    # Smaller alpha -> larger ln(2/alpha) -> lower (not higher) bound.
    assert empirical_bernstein(x, alpha / 2) <= empirical_bernstein(x, alpha)
    assert hoeffding(x, alpha / 2) <= hoeffding(x, alpha)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.integers(2, 40), elements=unit_floats), st.integers(0, 39), unit_floats)
def test_eb_monotone_when_raising_a_low_sample(x, idx, frac):
    # dL/dx_i = 1/n - c (x_i - mean)/((n-1) sqrt V) >= 1/n while x_i <= mean, so raising a
    # sample that stays at or below the new sample mean cannot lower the bound.
    i = idx % len(x)
    y = x.copy()
    y[i] = x[i] + frac * (1.0 - x[i])
    if y[i] > np.mean(y) or x[i] > np.mean(x):
        return
    assert empirical_bernstein(y, 0.05) >= empirical_bernstein(x, 0.05) - 1e-12
    # Hoeffding depends on the mean only: monotone in every sample.
    assert hoeffding(y, 0.05) >= hoeffding(x, 0.05) - 1e-15


@pytest.mark.parametrize("fn", [empirical_bernstein, hoeffding])
def test_bad_input(fn):
    good = np.array([0.1, 0.5, 0.9])
    with pytest.raises(ValueError, match="nan"):
        fn(np.array([0.1, np.nan, 0.3]), 0.05)
    with pytest.raises(ValueError, match="inf"):
        fn(np.array([0.1, np.inf, 0.3]), 0.05)
    with pytest.raises(ValueError, match="1.5"):
        fn(np.array([0.1, 1.5]), 0.05)
    with pytest.raises(ValueError, match="-0.2"):
        fn(np.array([-0.2, 0.5]), 0.05)
    with pytest.raises(ValueError, match="empty"):
        fn(np.array([]), 0.05)
    for bad_alpha in (0.0, 1.0, -0.1, 1.2, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            fn(good, bad_alpha)
    with pytest.raises(ValueError, match="'middle'"):
        fn(good, 0.05, side="middle")
    with pytest.raises(ValueError, match="bounds"):
        fn(good, 0.05, bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="shape"):
        fn(np.zeros((2, 2, 2)), 0.05)


def test_eb_needs_two_samples():
    with pytest.raises(ValueError, match="n = 1"):
        empirical_bernstein(np.array([0.5]), 0.05)
    with pytest.raises(ValueError, match="n = 1"):
        empirical_bernstein(np.array([[0.5, 0.2]]), 0.05)
    assert hoeffding(np.array([0.5]), 0.05) == pytest.approx(max(0.0, 0.5 - math.sqrt(math.log(20) / 2)))
