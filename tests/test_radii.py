"""Tests of radius.radii: closed forms, limits, and the Lipschitz constants against numerics."""
import math

import numpy as np
import pytest
from scipy import integrate, stats

from radius import r1, r2, r_mono, r_mono_lip, r_multi_lip
from radius.radii import (
    RADIUS_RTOL,
    pair_lipschitz,
    probit_from_linear_margin,
    r_mono_lip_paper,
    radius_from_linear_margin,
    radius_from_probit_margin,
    smoothed_ramp,
    smoothed_ramp_inverse,
)

PS = [0.51, 0.6, 0.75, 0.9, 0.99, 0.999, 0.99999]


# ----------------------------------------------------------------- Cohen / Salman / R1
@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("sigma", [0.12, 0.5, 1.0])
def test_r_mono_is_cohens_formula(p, sigma):
    # Cohen et al. 2019, Thm 1: sigma * Phi^-1(pA); golden value from scipy.stats.norm.ppf
    expected = sigma * stats.norm.ppf(p)
    got = r_mono(p, sigma)
    assert got <= expected
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_r_mono_abstains_at_or_below_half():
    assert r_mono(0.5, 1.0) == 0.0
    assert r_mono(0.3, 1.0) == 0.0
    assert r_mono(0.0, 1.0) == 0.0
    assert r_mono(1.0, 1.0) == math.inf  # pA = 1 exactly: the whole space


def test_r_mono_vectorised():
    p = np.array([0.4, 0.9])
    out = r_mono(p, 0.5)
    assert out.shape == (2,) and out[0] == 0.0 and out[1] == pytest.approx(0.5 * stats.norm.ppf(0.9), rel=1e-9)


@pytest.mark.parametrize("pa,pb", [(0.8, 0.1), (0.5, 0.3), (0.4, 0.35), (0.999, 1e-4)])
def test_r2_salman_formula(pa, pb):
    # Salman et al. 2019: sigma/2 (Phi^-1(pA) - Phi^-1(pB))
    expected = 0.25 / 2 * (stats.norm.ppf(pa) - stats.norm.ppf(pb))
    assert r2(pa, pb, 0.25) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert r2(pa, pb, 0.25) <= expected


@pytest.mark.parametrize("p", PS)
def test_r2_with_complement_equals_r_mono(p):
    assert r2(p, 1 - p, 0.7) == pytest.approx(r_mono(p, 0.7), rel=1e-12)


def test_r2_zero_when_bounds_cross():
    assert r2(0.3, 0.3, 1.0) == 0.0
    assert r2(0.3, 0.4, 1.0) == 0.0


@pytest.mark.parametrize("pa,pb", [(0.8, 0.1), (0.5, 0.3), (0.99, 0.001), (0.34, 0.33)])
def test_r1_smoothing_alone_and_below_r2(pa, pb):
    # theory §7: R1 = sigma sqrt(pi/2) (pA - pB); and R1 <= R2 since (Phi^-1)' >= sqrt(2 pi)
    sigma = 0.5
    assert r1(pa, pb, sigma) == pytest.approx(sigma * math.sqrt(math.pi / 2) * (pa - pb), rel=1e-9, abs=1e-9)
    assert r1(pa, pb, sigma) <= r2(pa, pb, sigma)


def test_r1_zero_when_margin_nonpositive():
    assert r1(0.4, 0.4, 1.0) == 0.0
    assert radius_from_linear_margin(-0.1, 1.0) == 0.0


def test_probit_margin_radius():
    assert radius_from_probit_margin(2.0, 0.5) == pytest.approx(0.5, rel=1e-9)
    assert radius_from_probit_margin(-math.inf, 0.5) == 0.0
    assert radius_from_probit_margin(0.0, 0.5) == 0.0


def test_probit_from_linear_margin_is_the_minimum():
    # brute force: min over a, b in [0, 1] with a - b >= D of Phi^-1(a) - Phi^-1(b)   (theory §5)
    for D in [0.01, 0.2, 0.5, 0.9]:
        b = np.linspace(1e-9, 1 - D - 1e-9, 200001)
        brute = np.min(stats.norm.ppf(b + D) - stats.norm.ppf(b))
        got = probit_from_linear_margin(D)
        assert got <= brute + 1e-12
        assert got == pytest.approx(brute, abs=1e-6)


# ----------------------------------------------------------------- L_pair against a smoothed ramp
def _smoothed_slope_numeric(h, sigma, lim):
    """d/dx E[h(x + eps)] at 0 = E[h(eps) eps]/sigma^2 by adaptive quadrature (Stein's identity)."""
    f = lambda s: h(s) * s * stats.norm.pdf(s, scale=sigma) / sigma**2
    val, err = integrate.quad(f, -lim, lim, limit=400, points=[-lim / 10, 0, lim / 10], epsabs=1e-13, epsrel=1e-12)
    return val


@pytest.mark.parametrize("L,r,sigma", [(1.0, 2.0, 0.5), (4.0, 2.0, 0.25), (0.3, 1.0, 1.0), (10.0, 0.5, 0.12),
                                       (2.0, 2.0, 0.5)])
def test_pair_lipschitz_equals_numerically_smoothed_ramp(L, r, sigma):
    # The worst case of the derivation is the centred ramp clip(L s, -r/2, r/2); its Gaussian smoothing's
    # slope at 0, computed by numerical quadrature, must equal L erf(r / (2 sqrt 2 L sigma)).
    ramp = lambda s: np.clip(L * s, -r / 2, r / 2)
    numeric = _smoothed_slope_numeric(ramp, sigma, 12 * sigma + r / L)
    assert pair_lipschitz(sigma, L, r) == pytest.approx(numeric, rel=1e-7)
    assert pair_lipschitz(sigma, L, r) >= numeric * (1 - 1e-12)


def test_pair_lipschitz_is_a_sup_over_random_lipschitz_functions():
    # Any L-Lipschitz function with range of length r has smoothed slope <= L_pair (random piecewise-linear ones).
    rng = np.random.default_rng(0)
    L, r, sigma = 2.0, 1.5, 0.4
    bound = pair_lipschitz(sigma, L, r)
    grid = np.linspace(-6 * sigma - 2, 6 * sigma + 2, 4001)
    dens = stats.norm.pdf(grid, scale=sigma) * (grid[1] - grid[0])
    best = 0.0
    for _ in range(300):
        slopes = np.clip(rng.normal(rng.uniform(-L, L), L, size=grid.size - 1), -L, L)
        h = np.concatenate([[0.0], np.cumsum(slopes * np.diff(grid))])
        h = np.clip(h - rng.uniform(h.min(), h.max()), -r / 2, r / 2)  # clipping keeps it L-Lipschitz, range <= r
        slope = np.sum(h * grid * dens) / sigma**2
        best = max(best, abs(slope))
        assert abs(slope) <= bound * (1 + 1e-6)
    assert best > 0.3 * bound  # the sample explored non-trivial functions


def test_pair_lipschitz_limits():
    sigma = 0.5
    # L -> inf: smoothing alone, sqrt(2/pi)/sigma for r = 2 (Salman et al. 2019)
    assert pair_lipschitz(sigma) == pytest.approx(math.sqrt(2 / math.pi) / sigma, rel=1e-9)
    assert pair_lipschitz(sigma, 1e9) == pytest.approx(pair_lipschitz(sigma), rel=1e-6)
    # r -> inf: the base constant itself
    assert pair_lipschitz(sigma, 0.7, 1e6) == pytest.approx(0.7, rel=1e-9)
    # R1 with a Lipschitz base is never smaller than from smoothing alone
    assert r1(0.8, 0.1, sigma, lipschitz=1.0) >= r1(0.8, 0.1, sigma)


# ----------------------------------------------------------------- local-Lipschitz radii
@pytest.mark.parametrize("L,sigma", [(0.5, 0.5), (2.0, 0.25), (20.0, 1.0), (0.1, 0.12)])
def test_smoothed_ramp_matches_quadrature(L, sigma):
    ramp = lambda t: np.clip(0.5 + L * t, 0.0, 1.0)
    for u in [-1.0, -0.2, 0.0, 0.05, 0.4, 2.0]:
        f = lambda e: ramp(u + e) * stats.norm.pdf(e, scale=sigma)
        lim = 12 * sigma + 1 / L + abs(u)
        num = integrate.quad(f, -lim, lim, limit=400, points=[-u - 0.5 / L, -u + 0.5 / L], epsabs=1e-14)[0]
        assert float(smoothed_ramp(u, sigma, L)) == pytest.approx(num, abs=1e-12)


def test_smoothed_ramp_inverse_sides():
    for p in [0.01, 0.3, 0.5, 0.8, 0.999]:
        lo = float(smoothed_ramp_inverse(p, 0.5, 2.0, side="lower"))
        hi = float(smoothed_ramp_inverse(p, 0.5, 2.0, side="upper"))
        assert lo < hi and hi - lo < 1e-8
        assert float(smoothed_ramp(lo, 0.5, 2.0)) <= p <= float(smoothed_ramp(hi, 0.5, 2.0))


def test_gradient_bound_of_local_lipschitz_radius():
    # The lemma behind R_mono^Lip (Delattre et al.): an L-Lipschitz h: R -> [0, 1] whose smoothing at 0 equals p
    # has smoothed slope <= M(p) = rho_L'(rho_L^-1(p)). Checked on random Lipschitz functions.
    rng = np.random.default_rng(1)
    L, sigma = 1.5, 0.5
    grid = np.linspace(-8, 8, 8001)
    dens = stats.norm.pdf(grid, scale=sigma) * (grid[1] - grid[0])
    for _ in range(300):
        slopes = np.clip(rng.normal(rng.uniform(-L, L), L, size=grid.size - 1), -L, L)
        h = np.concatenate([[0.0], np.cumsum(slopes * np.diff(grid))])
        h = np.clip(h - rng.uniform(h.min(), h.max()), 0.0, 1.0)
        p = float(np.sum(h * dens))
        if not 1e-6 < p < 1 - 1e-6:
            continue
        slope = abs(np.sum(h * grid * dens) / sigma**2)
        u = float(smoothed_ramp_inverse(p, sigma, L))
        eps = 1e-6
        M = (float(smoothed_ramp(u + eps, sigma, L)) - float(smoothed_ramp(u - eps, sigma, L))) / (2 * eps)
        assert slope <= M * (1 + 1e-4) + 1e-6


@pytest.mark.parametrize("p", [0.55, 0.8, 0.95, 0.999])
def test_r_mono_lip_tends_to_cohen(p):
    sigma = 0.5
    cohen = r_mono(p, sigma)
    vals = [r_mono_lip(p, sigma, L) for L in [0.5, 2.0, 10.0, 1e3, 1e6]]
    assert all(v >= cohen - 1e-9 for v in vals)        # Lipschitz information only helps (up to rounding)
    assert all(a >= b - 1e-12 for a, b in zip(vals, vals[1:]))  # and helps less as L grows
    assert vals[-1] == pytest.approx(cohen, rel=1e-6)
    assert r_mono_lip(p, sigma, math.inf) == pytest.approx(cohen, rel=1e-9)


@pytest.mark.parametrize("p1,p2", [(0.6, 0.3), (0.45, 0.3), (0.9, 0.05), (0.34, 0.33)])
def test_r_multi_lip_tends_to_r2(p1, p2):
    sigma = 0.25
    vals = [r_multi_lip(p1, p2, sigma, L) for L in [1.0, 10.0, 1e6]]
    assert all(v >= r2(p1, p2, sigma) - 1e-9 for v in vals)
    assert vals[-1] == pytest.approx(r2(p1, p2, sigma), rel=1e-5)


@pytest.mark.parametrize("p", [0.55, 0.8, 0.999])
def test_r_multi_lip_with_complement_equals_r_mono_lip(p):
    assert r_multi_lip(p, 1 - p, 0.5, 2.0) == pytest.approx(r_mono_lip(p, 0.5, 2.0), rel=1e-8)


def test_r_mono_lip_is_tight_for_the_ramp():
    # For the base F_1(x) = clip(1/2 + L w.x, 0, 1) (||w|| = 1) the smoothed score at signed distance u is
    # rho_L(u) and the smoothed decision boundary is at u = 0: the true radius is u, and R_mono^Lip(rho_L(u)) = u.
    for L, sigma in [(1.0, 0.5), (3.0, 0.25)]:
        for u in [0.01, 0.2, 0.7]:
            p = float(smoothed_ramp(u, sigma, L))
            got = r_mono_lip(p, sigma, L)
            assert got <= u
            assert got == pytest.approx(u, rel=1e-6)


def test_r_mono_lip_at_least_the_papers_formula():
    # The AISTATS 2025 code's Phi^-1(p1)/L_loc (local constant at the centre) is never above our integral form.
    for L in [0.5, 1.0, 2.0, 10.0]:
        for p in [0.51, 0.7, 0.9, 0.99, 0.9999]:
            assert r_mono_lip_paper(p, 0.5, L) <= r_mono_lip(p, 0.5, L) + 1e-9


def test_lip_radii_zero_cases():
    assert r_mono_lip(0.5, 0.5, 1.0) == 0.0
    assert r_mono_lip(0.2, 0.5, 1.0) == 0.0
    assert r_multi_lip(0.3, 0.3, 0.5, 1.0) == 0.0


def test_safety_shrink_is_applied():
    raw = 0.5 * stats.norm.ppf(0.9)
    assert raw - r_mono(0.9, 0.5) == pytest.approx(RADIUS_RTOL * (raw + 0.5), rel=1e-3)


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("sigma", [0.0, -1.0, math.nan, math.inf, "a"])
def test_bad_sigma(sigma):
    for call in (lambda: r_mono(0.9, sigma), lambda: r2(0.9, 0.1, sigma), lambda: r1(0.9, 0.1, sigma),
                 lambda: r_mono_lip(0.9, sigma, 1.0), lambda: r_multi_lip(0.9, 0.1, sigma, 1.0)):
        with pytest.raises(ValueError, match="sigma"):
            call()


def test_bad_probabilities_and_constants():
    with pytest.raises(ValueError, match="p_a_lower"):
        r_mono(1.2, 1.0)
    with pytest.raises(ValueError, match="p_b_upper"):
        r2(0.9, -0.1, 1.0)
    with pytest.raises(ValueError, match="p_a_lower"):
        r1(math.nan, 0.1, 1.0)
    with pytest.raises(ValueError, match="lipschitz"):
        r1(0.9, 0.1, 1.0, lipschitz=0.0)
    with pytest.raises(ValueError, match="output_range"):
        r1(0.9, 0.1, 1.0, output_range=-2)
    with pytest.raises(ValueError, match="L"):
        r_mono_lip(0.9, 1.0, -1.0)
    with pytest.raises(ValueError, match="p2"):
        r_multi_lip(0.9, 1.5, 1.0, 1.0)
