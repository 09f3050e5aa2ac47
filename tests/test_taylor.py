"""Taylor series of Phi^{-1}: exact coefficients, one-sided error, convergence."""
from fractions import Fraction

import numpy as np
import pytest
from scipy.special import ndtri

from confbounds import phi_inv_taylor, taylor_coefficients


def test_coefficients_exact():
    # c_1..c_5 from the issue (OEIS A092676 / A092677).
    c = taylor_coefficients(5, exact=True)
    assert c == [Fraction(1), Fraction(1), Fraction(7, 6), Fraction(127, 90), Fraction(4369, 2520),
                 Fraction(34807, 16200)]


def test_float_coefficients_match_exact():
    exact = taylor_coefficients(30, exact=True)
    np.testing.assert_allclose(taylor_coefficients(30), [float(v) for v in exact], rtol=1e-13)


def test_series_reproduces_erfinv_near_zero():
    # erfinv(x) ~ sqrt(pi)/2 (x + pi x^3/12 + ...): Phi^-1(p) for p near 1/2.
    p = 0.5 + 1e-3
    assert phi_inv_taylor(p, 3) == pytest.approx(ndtri(p), rel=1e-12)


@pytest.mark.parametrize("M", [0, 1, 2, 5, 10, 50, 100, 400])
def test_one_sided_on_dense_grid(M):
    p = np.linspace(0, 1, 20001)[1:-1]
    approx = phi_inv_taylor(p, M)
    exact = ndtri(p)
    hi = p >= 0.5
    assert np.all(approx[hi] <= exact[hi])
    assert np.all(approx[~hi] >= exact[~hi])
    # antisymmetric about 1/2
    np.testing.assert_allclose(approx, -approx[::-1], atol=1e-14)


def test_converges_away_from_edges():
    p = np.linspace(0.02, 0.98, 97)
    errs = [np.max(np.abs(phi_inv_taylor(p, M) - ndtri(p))) for M in (10, 50, 200, 800)]
    assert all(a > b for a, b in zip(errs, errs[1:]))  # strictly decreasing
    assert errs[-1] < 1e-9


def test_finite_at_one():
    # theory §6: Phi^-1_M(1) is finite, about 3.02 for M = 100.
    v = phi_inv_taylor(1.0, 100)
    assert np.isfinite(v) and 3.0 < v < 3.03


@pytest.mark.parametrize("bad", [-1, 2.5, "3", True])
def test_bad_order(bad):
    with pytest.raises(ValueError, match="M must be"):
        taylor_coefficients(bad)


def test_bad_p():
    with pytest.raises(ValueError, match="p must lie in"):
        phi_inv_taylor(np.array([0.5, 1.5]), 5)
    with pytest.raises(ValueError, match="p must lie in"):
        phi_inv_taylor(float("nan"), 5)
