"""Certified L2 radii of a Gaussian-smoothed classifier from probability bounds.

Every function maps *bounds* (a lower bound ``p_a_lower`` on the top class's
smoothed probability, an upper bound ``p_b_upper`` on every other class's, or a
lower bound on a margin) to a radius, and returns ``0.0`` when the bound on the
margin is ``<= 0`` (the caller then abstains).  All radii are nondecreasing in
``p_a_lower`` and nonincreasing in ``p_b_upper``, so valid bounds give valid
radii (theory §7).

Rounding never helps the user (theory §2.4): every positive radius is shrunk by
:data:`RADIUS_RTOL` relative plus ``RADIUS_RTOL * sigma`` absolute, three orders
of magnitude above the few-ulp error of ``scipy.special.ndtri`` / ``erf`` and of
the root finding used by the local-Lipschitz radii.

Summary (``Phi`` the standard normal CDF):

=================  =========================================================  ==================
radius             formula                                                    bounds it needs
=================  =========================================================  ==================
``r_mono``         ``sigma Phi^-1(pA)`` (Cohen et al. 2019)                   ``pA`` lower
``r2``             ``sigma/2 (Phi^-1(pA) - Phi^-1(pB))`` (Salman et al. 2019)  ``pA`` lo, ``pB`` up
``r1``             ``(pA - pB) / L_pair``                                     ``pA`` lo, ``pB`` up
``r_mono_lip``     ``rho_L^-1(pA)`` (Delattre et al. 2024/2025)               ``pA`` lower
``r_multi_lip``    ``(rho_L^-1(pA) - rho_L^-1(pB)) / 2``                      ``pA`` lo, ``pB`` up
=================  =========================================================  ==================
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy import special

__all__ = [
    "check_sigma",
    "check_positive",
    "r_mono",
    "r2",
    "r1",
    "r_mono_lip",
    "r_multi_lip",
    "pair_lipschitz",
    "radius_from_linear_margin",
    "radius_from_probit_margin",
    "probit_from_linear_margin",
    "smoothed_ramp",
    "smoothed_ramp_inverse",
    "r_mono_lip_paper",
    "r_sound",
    "r_sound_mono",
    "sound_probability_bounds",
    "sound_linear_margin_lower",
    "RADIUS_RTOL",
]

#: Relative (and, times sigma, absolute) shrink applied to every positive radius.
RADIUS_RTOL = 1e-10

_SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------- checks
def check_sigma(sigma) -> float:
    """Noise level as a float; ValueError naming it unless it is a finite number > 0 (shared by radius)."""
    if isinstance(sigma, bool):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}") from None
    if not (math.isfinite(s) and s > 0.0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    return s


def _check_prob(p, name: str) -> np.ndarray:
    arr = np.asarray(p, dtype=float)
    bad = ~((arr >= 0.0) & (arr <= 1.0))
    if np.any(bad):
        raise ValueError(f"{name} must lie in [0, 1], got {arr[bad].ravel()[:4]!r}")
    return arr


def check_positive(value, name: str, allow_inf: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0, got {value!r}") from None
    ok = v > 0.0 and (math.isfinite(v) or (allow_inf and v == math.inf))
    if not ok:
        raise ValueError(f"{name} must be a {'' if allow_inf else 'finite '}number > 0, got {value!r}")
    return v


def _out(arr, scalar: bool):
    return float(arr) if scalar else arr


def _safe_radius(raw, sigma: float):
    """Shrink a raw radius toward 0 (theory §2.4); nonpositive or NaN values give 0."""
    raw = np.asarray(raw, dtype=float)
    with np.errstate(invalid="ignore"):
        shrunk = raw - RADIUS_RTOL * (np.abs(raw) + sigma)
        out = np.where(np.isnan(raw) | (shrunk <= 0.0), 0.0, shrunk)
    return np.where(raw == np.inf, np.inf, out)


# --------------------------------------------------------------------------- Cohen / Salman
def r_mono(p_a_lower, sigma):
    """Cohen et al.'s radius ``sigma * Phi^-1(p_a_lower)``.

    Parameters
    ----------
    p_a_lower : float or array_like
        A ``1 - alpha`` lower confidence bound on the smoothed probability of
        the top class.  Only this bound is needed: with ``p_A > 1/2`` every
        other class has probability ``< 1/2`` (Cohen's ``p_B := 1 - p_A``).
    sigma : float
        Noise level (> 0).

    Returns
    -------
    float or ndarray
        The radius, ``0.0`` where ``p_a_lower <= 1/2`` (abstain).

    Notes
    -----
    Valid for hard (hardmax) and soft smoothing: ``Phi^-1(F_hat_y)`` is
    ``1/sigma``-Lipschitz for any ``F_y`` with values in ``[0, 1]`` (Salman et
    al. 2019, Lemma 2), and ``F_hat_y > 1/2`` makes ``y`` the top class.

    References
    ----------
    Cohen, Rosenfeld, Kolter, "Certified adversarial robustness via randomized
    smoothing", ICML 2019, Theorem 1 with ``p_B = 1 - p_A``.

    Examples
    --------
    >>> round(r_mono(0.9, 0.5), 6)
    0.640776
    >>> r_mono(0.4, 0.5)
    0.0
    """
    s = check_sigma(sigma)
    p = _check_prob(p_a_lower, "p_a_lower")
    with np.errstate(all="ignore"):
        raw = s * special.ndtri(p)
    return _out(_safe_radius(raw, s), np.ndim(p_a_lower) == 0)


def r2(p_a_lower, p_b_upper, sigma):
    """Salman et al.'s radius ``sigma/2 * (Phi^-1(p_a_lower) - Phi^-1(p_b_upper))``.

    Parameters
    ----------
    p_a_lower : float or array_like
        Lower confidence bound on the top class's smoothed probability.
    p_b_upper : float or array_like
        Upper confidence bound on ``max_{k != y}`` of the other classes'
        smoothed probabilities (a reduction from :mod:`radius.reductions`).
    sigma : float

    Returns
    -------
    float or ndarray
        ``0.0`` where ``p_a_lower <= p_b_upper``.

    Notes
    -----
    For every class ``k``, ``Phi^-1(F_hat_k)`` is ``1/sigma``-Lipschitz (Salman
    et al. 2019, Lemma 2), so ``Phi^-1(F_hat_y) - Phi^-1(F_hat_k)`` decreases at
    rate at most ``2/sigma``; valid for hard and soft smoothing.  Equals
    :func:`r_mono` when ``p_b_upper = 1 - p_a_lower``.

    References
    ----------
    Salman et al., "Provably robust deep learning via adversarially trained
    smoothed classifiers", NeurIPS 2019, Theorem 1 / Lemma 2.  Also Cohen et
    al. 2019, Theorem 1.

    Examples
    --------
    >>> round(r2(0.8, 0.1, 1.0), 6)
    1.061586
    """
    s = check_sigma(sigma)
    a = _check_prob(p_a_lower, "p_a_lower")
    b = _check_prob(p_b_upper, "p_b_upper")
    with np.errstate(all="ignore"):
        raw = 0.5 * s * (special.ndtri(a) - special.ndtri(b))
    raw = np.where(a > b, raw, 0.0)
    return _out(_safe_radius(raw, s), np.ndim(p_a_lower) == 0 and np.ndim(p_b_upper) == 0)


def radius_from_probit_margin(probit_margin_lower, sigma):
    """``R2 = sigma/2 * P`` from a lower bound ``P`` on ``Phi^-1(p_y) - max_k Phi^-1(p_k)``.

    ``P`` may be ``-inf`` (a probit margin bound with no information); the
    radius is then ``0.0``.  Source: Salman et al. 2019 (see :func:`r2`).

    Examples
    --------
    >>> round(radius_from_probit_margin(2.0, 0.25), 9)
    0.25
    """
    s = check_sigma(sigma)
    P = np.asarray(probit_margin_lower, dtype=float)
    if np.any(np.isnan(P)) or np.any(P == np.inf):
        raise ValueError(f"probit_margin_lower must be a number or -inf, got {probit_margin_lower!r}")
    with np.errstate(all="ignore"):
        raw = np.where(P > 0, 0.5 * s * P, 0.0)
    return _out(_safe_radius(raw, s), np.ndim(probit_margin_lower) == 0)


def probit_from_linear_margin(linear_margin_lower):
    """Lower bound ``2 Phi^-1((1 + D)/2)`` on a probit margin from a linear one.

    If ``a, b`` lie in ``[0, 1]`` with ``a - b >= D >= 0`` then
    ``Phi^-1(a) - Phi^-1(b) >= 2 Phi^-1((1 + D)/2)`` (theory §5).

    Proof: increasing ``a`` only increases the difference, so take
    ``a = b + D`` and minimise ``f(b) = Phi^-1(b + D) - Phi^-1(b)`` over
    ``b in [0, 1 - D]``.  ``f'(b) = 1/phi(Phi^-1(b + D)) - 1/phi(Phi^-1(b))``
    and ``1/phi(Phi^-1(p))`` increases in ``|p - 1/2|``, so ``f' < 0`` for
    ``b < (1 - D)/2`` and ``f' > 0`` after: the minimum is at the symmetric
    point ``b = (1 - D)/2``, giving ``2 Phi^-1((1 + D)/2)``.  No simplex
    constraint (``a + b <= 1``) is needed.

    Returns ``-inf`` for ``D <= -1`` and a nonpositive value for ``D <= 0``
    (which then certifies nothing).  The result is shrunk by 8 ulps relative.

    Examples
    --------
    >>> round(probit_from_linear_margin(0.5), 6)
    1.34898
    """
    D = np.asarray(linear_margin_lower, dtype=float)
    if np.any(np.isnan(D)):
        raise ValueError(f"linear_margin_lower must not be NaN, got {linear_margin_lower!r}")
    with np.errstate(all="ignore"):
        v = 2.0 * special.ndtri(np.clip((1.0 + D) / 2.0, 0.0, 1.0))
    v = v - 8 * np.finfo(float).eps * np.abs(v)
    return _out(v, np.ndim(linear_margin_lower) == 0)


# --------------------------------------------------------------------------- R1
def pair_lipschitz(sigma, lipschitz=None, output_range=None) -> float:
    """Lipschitz constant ``L_pair`` of ``F_hat_y - F_hat_k`` after Gaussian smoothing.

    Parameters
    ----------
    sigma : float
        Noise level (> 0).
    lipschitz : float, optional
        A Lipschitz constant ``L`` (L2 -> absolute value) of every pairwise
        difference ``F_y - F_k`` of the *base* classifier's simplex outputs.
        (If the map ``F`` is ``L_F``-Lipschitz from L2 to L2, pass
        ``sqrt(2) * L_F``; if each component is ``L_c``-Lipschitz, ``2 * L_c``.)
        ``None`` (or ``inf``) uses smoothing alone.
    output_range : float, optional
        Length ``r`` of an interval holding every ``F_y - F_k``; default 2.0
        (simplex outputs: ``F_y - F_k in [-1, 1]``).

    Returns
    -------
    float
        ``L * erf(r / (2 sqrt(2) L sigma))``, or its ``L -> inf`` limit
        ``r / (sigma sqrt(2 pi))`` (``sqrt(2/pi)/sigma`` for ``r = 2``), rounded
        up by ``RADIUS_RTOL`` relative.

    Notes
    -----
    Derivation.  Fix a unit direction ``u`` and let ``g = F_y - F_k``.  The
    directional derivative of ``g_hat = g * N(0, sigma^2 I)`` at ``x`` is that of
    the one-dimensional function ``h(s) = E[g(x + s u + eps_perp)]`` at ``s = 0``
    smoothed by ``N(0, sigma^2)``, where ``eps_perp`` is the noise orthogonal to
    ``u``; ``h`` is ``L``-Lipschitz and takes values in an interval of length
    ``r``.  With ``phi_sigma`` the ``N(0, sigma^2)`` density,
    ``d/ds (h * phi_sigma)(0) = int h'(s) phi_sigma(s) ds``.  By the layer-cake
    formula, ``phi_sigma(s) = int_0^{phi_sigma(0)} 1{|s| < b_lam} d lam`` and so
    ``int h' phi_sigma = int_0^{phi_sigma(0)} (h(b_lam) - h(-b_lam)) d lam
    <= int_0^{phi_sigma(0)} min(r, 2 L b_lam) d lam``.  The centred ramp
    ``h(s) = clip(L s, -r/2, r/2)`` attains every term, so the sup equals its
    smoothed slope ``L * P(|eps| <= r/(2L)) = L (2 Phi(r/(2 L sigma)) - 1)
    = L erf(r / (2 sqrt(2) L sigma))``.  Tested against a numerically smoothed
    ramp in ``tests/test_radii.py``.  (The AISTATS 2025 code writes
    ``erf(r/(sqrt(2) L sigma))`` for outputs in ``[0, r]``; our ``r`` is the length
    of the interval of the *difference*, hence the factor 2.)

    References
    ----------
    Delattre, Araujo, Barthelemy, Allauzen, "The Lipschitz-variance-margin
    tradeoff for enhanced randomized smoothing", ICLR 2024; Salman et al. 2019
    (smoothing-alone constant); Tsuzuku, Sato, Sugiyama, NeurIPS 2018.

    Examples
    --------
    >>> round(pair_lipschitz(1.0), 6)        # sqrt(2/pi)
    0.797885
    >>> round(pair_lipschitz(1.0, lipschitz=0.5), 6)
    0.47725
    """
    s = check_sigma(sigma)
    r = 2.0 if output_range is None else check_positive(output_range, "output_range")
    if lipschitz is None or (isinstance(lipschitz, (int, float)) and lipschitz == math.inf):
        val = r / (s * math.sqrt(2.0 * math.pi))
    else:
        L = check_positive(lipschitz, "lipschitz")
        val = L * math.erf(r / (2.0 * _SQRT2 * L * s))
        val = min(val, r / (s * math.sqrt(2.0 * math.pi)))  # erf(z) <= 2z/sqrt(pi); guards rounding
    return val * (1.0 + RADIUS_RTOL)


def radius_from_linear_margin(linear_margin_lower, sigma, lipschitz=None, output_range=None):
    """``R1 = D / L_pair`` from a lower bound ``D`` on ``p_y - max_{k != y} p_k``.

    ``L_pair`` is :func:`pair_lipschitz`; from smoothing alone
    ``R1 = sigma sqrt(pi/2) D``.  ``0.0`` when ``D <= 0``.

    Examples
    --------
    >>> round(radius_from_linear_margin(0.5, 1.0), 6)   # sqrt(pi/2)/2
    0.626657
    """
    s = check_sigma(sigma)
    Lp = pair_lipschitz(s, lipschitz, output_range)
    D = np.asarray(linear_margin_lower, dtype=float)
    if np.any(np.isnan(D)):
        raise ValueError(f"linear_margin_lower must not be NaN, got {linear_margin_lower!r}")
    raw = np.where(D > 0, D / Lp, 0.0)
    return _out(_safe_radius(raw, s), np.ndim(linear_margin_lower) == 0)


def r1(p_a_lower, p_b_upper, sigma, lipschitz=None, output_range=None):
    """First-order (Lipschitz) radius ``(p_a_lower - p_b_upper) / L_pair``.

    Parameters
    ----------
    p_a_lower, p_b_upper : float or array_like
        Lower bound on the top class's smoothed score and upper bound on every
        other class's (a reduction from :mod:`radius.reductions`).
    sigma : float
    lipschitz, output_range : optional
        See :func:`pair_lipschitz`.  Without ``lipschitz`` the constant comes
        from smoothing alone and ``R1 = sigma sqrt(pi/2) (pA - pB)``.

    Notes
    -----
    For ``||delta|| < R1`` and every ``k != y``,
    ``F_hat_y(x + delta) - F_hat_k(x + delta) >= (pA - pB) - L_pair ||delta|| > 0``.
    Always ``<= r2`` for hard smoothing with the same bounds (the probit
    transform is tighter), but it applies the base model's Lipschitz constant.

    References
    ----------
    Tsuzuku, Sato, Sugiyama, "Lipschitz-margin training", NeurIPS 2018
    (margin / Lipschitz radius); Salman et al. 2019 (``sqrt(2/pi)/sigma``);
    Delattre et al., ICLR 2024 and AISTATS 2025 (the ``erf`` constant).

    Examples
    --------
    >>> round(r1(0.8, 0.1, 1.0), 6)     # sqrt(pi/2) * 0.7
    0.87732
    """
    a = _check_prob(p_a_lower, "p_a_lower")
    b = _check_prob(p_b_upper, "p_b_upper")
    out = radius_from_linear_margin(a - b, sigma, lipschitz, output_range)
    return _out(out, np.ndim(p_a_lower) == 0 and np.ndim(p_b_upper) == 0)


# --------------------------------------------------------------------------- local Lipschitz
_GL_T, _GL_W = np.polynomial.legendre.leggauss(24)


def _G(z):
    """Antiderivative of Phi: ``G(z) = z Phi(z) + phi(z)``, accurate for z < 0 too."""
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    pos = z >= 0
    zp = z[pos]
    out[pos] = zp * special.ndtr(zp) + np.exp(-0.5 * zp * zp) / math.sqrt(2 * math.pi)
    zn = z[~pos]
    # G(z) = phi(z) (1 + z sqrt(pi/2) erfcx(-z/sqrt2)) for z < 0 (Phi(z) = phi(z) sqrt(pi/2) erfcx(-z/sqrt2))
    phi = np.exp(-0.5 * zn * zn) / math.sqrt(2 * math.pi)
    out[~pos] = phi * (1.0 + zn * math.sqrt(math.pi / 2) * special.erfcx(-zn / _SQRT2))
    return out


def smoothed_ramp(u, sigma, L):
    """``rho_L(u) = E[clip(1/2 + L (u + eps), 0, 1)]``, ``eps ~ N(0, sigma^2)``.

    The Gaussian smoothing of the steepest ``[0, 1]``-valued ``L``-Lipschitz
    function through 1/2 at 0, evaluated at signed distance ``u``.  Closed form
    ``rho_L(u) = (G(z + w/2) - G(z - w/2)) / w`` with ``z = u/sigma``,
    ``w = 1/(L sigma)``, ``G(z) = z Phi(z) + phi(z)`` (an antiderivative of
    ``Phi``); for ``w < 1`` the average of ``Phi`` over ``[z - w/2, z + w/2]``
    is taken by 24-point Gauss-Legendre quadrature instead (no cancellation).
    ``L = inf`` gives ``Phi(u/sigma)``.
    """
    s = float(sigma)
    u = np.asarray(u, dtype=float)
    if L == math.inf:
        return special.ndtr(u / s)
    w = 1.0 / (L * s)
    z = u / s
    if w >= 1.0:
        return (_G(z + w / 2) - _G(z - w / 2)) / w
    pts = z[..., None] + (w / 2) * _GL_T
    return 0.5 * np.sum(_GL_W * special.ndtr(pts), axis=-1)


_GL_T_LIST = [float(v) for v in _GL_T]
_GL_W_LIST = [float(v) for v in _GL_W]
_SQRT2PI = math.sqrt(2.0 * math.pi)


def _ndtr_scalar(z: float) -> float:
    return 0.5 * math.erfc(-z / _SQRT2)


def _G_scalar(z: float) -> float:
    if z >= 0:
        return z * _ndtr_scalar(z) + math.exp(-0.5 * z * z) / _SQRT2PI
    return math.exp(-0.5 * z * z) / _SQRT2PI * (1.0 + z * math.sqrt(math.pi / 2) * float(special.erfcx(-z / _SQRT2)))


def _smoothed_ramp_scalar(u: float, s: float, L: float) -> float:
    """Scalar :func:`smoothed_ramp` with the ``math`` module (same formulas)."""
    if L == math.inf:
        return _ndtr_scalar(u / s)
    w = 1.0 / (L * s)
    z = u / s
    if w >= 1.0:
        return (_G_scalar(z + w / 2) - _G_scalar(z - w / 2)) / w
    h = w / 2
    return 0.5 * sum(wi * _ndtr_scalar(z + h * ti) for ti, wi in zip(_GL_T_LIST, _GL_W_LIST))


def smoothed_ramp_inverse(p, sigma, L, side: str = "lower"):
    """Solve ``rho_L(u) = p`` for ``u`` by bisection, rounded to ``side``.

    ``side="lower"`` returns a value ``<=`` the root (used for ``p_A``),
    ``"upper"`` a value ``>=`` it (used for ``p_B``).  The root lies in
    ``sigma Phi^-1(p) +- 1/(2L)`` (the ramp lies between two steps shifted by
    ``1/(2L)``).  Bisection keeps ``rho_L(lo) < p <= rho_L(hi)`` and stops at
    ``hi - lo <= 1e-14 (|lo| + sigma)`` or when the floats are adjacent; then
    a safety step of ``RADIUS_RTOL (|u| + sigma)`` outward covers the
    evaluation error of ``rho_L``.  ``p`` in ``(0, 1)``; scalar or array.
    """
    s = float(sigma)
    if np.ndim(p) == 0:
        pf = float(p)
        c = s * float(special.ndtri(pf))
        half = 0.5 / L if L != math.inf else 0.0
        lo = c - half - 1e-12 * (abs(c) + s)
        hi = c + half + 1e-12 * (abs(c) + s)
        for _ in range(200):
            if hi - lo <= 1e-14 * (abs(lo) + s):
                break
            mid = 0.5 * (lo + hi)
            if mid == lo or mid == hi:
                break
            if _smoothed_ramp_scalar(mid, s, L) < pf:
                lo = mid
            else:
                hi = mid
        if side == "lower":
            return lo - RADIUS_RTOL * (abs(lo) + s)
        return hi + RADIUS_RTOL * (abs(hi) + s)
    p = np.asarray(p, dtype=float)
    c = s * special.ndtri(p)
    half = 0.5 / L if L != math.inf else 0.0
    lo = c - half - 1e-12 * (np.abs(c) + s)
    hi = c + half + 1e-12 * (np.abs(c) + s)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.all((mid == lo) | (mid == hi) | (hi - lo <= 1e-14 * (np.abs(lo) + s))):
            break
        below = smoothed_ramp(mid, s, L) < p
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    if side == "lower":
        return lo - RADIUS_RTOL * (np.abs(lo) + s)
    return hi + RADIUS_RTOL * (np.abs(hi) + s)


def r_mono_lip(p1, sigma, L):
    """Local-Lipschitz version of Cohen's radius for an ``L``-Lipschitz base score.

    Parameters
    ----------
    p1 : float
        Lower confidence bound on the top class's smoothed score
        ``F_hat_y(x)``, where the base score ``F_y : R^d -> [0, 1]`` is
        ``L``-Lipschitz (L2 -> absolute value).
    sigma : float
    L : float
        Lipschitz constant of every base score component (> 0; ``inf`` gives
        Cohen's radius).

    Returns
    -------
    float
        ``rho_L^-1(p1)``, the signed distance at which the smoothed ramp of
        slope ``L`` takes the value ``p1`` (:func:`smoothed_ramp`); ``0.0`` when
        ``p1 <= 1/2``.  Tends to ``sigma Phi^-1(p1)`` as ``L -> inf``.

    Notes
    -----
    Source: Delattre et al. (ICLR 2024, AISTATS 2025): among ``[0, 1]``-valued
    ``L``-Lipschitz functions whose Gaussian smoothing equals ``p`` at a point,
    the largest gradient norm of the smoothing there is
    ``M(p) = L (Phi((s0 + 1/L)/sigma) - Phi(s0/sigma))``, attained by the ramp
    from ``s0`` to ``s0 + 1/L`` whose smoothing at 0 is ``p``
    (``p = 1 - L int_{s0}^{s0+1/L} Phi(s/sigma) ds``).  Their code divides
    ``Phi^-1(p1)`` by the local Lipschitz constant of ``Phi^-1 o F_hat``
    evaluated at the centre only (``rho = 0``, their comment).  We integrate
    the same gradient bound instead: along any path ``F_hat_y`` falls at rate
    at most ``M(F_hat_y)``, so it stays above 1/2 for a distance
    ``int_{1/2}^{p1} dp / M(p)``.  Since ``M`` is exactly ``-d rho_L/d u``
    of the ramp (shifting the ramp by ``du`` changes its smoothing by
    ``M du``), the integral equals ``rho_L^-1(p1)``: the certificate is the
    exact radius of the worst-case ramp, so it is tight.  It is ``>=`` the
    paper's value wherever that is valid (checked in the tests) and, unlike a
    value evaluated at ``rho = 0``, needs no argument about the ball.
    Certifies ``y`` (``F_hat_y > 1/2`` makes ``y`` the top class of a simplex
    output).

    Examples
    --------
    >>> round(r_mono_lip(0.9, 0.5, 1e6), 4) == round(r_mono(0.9, 0.5), 4)
    True
    >>> r_mono_lip(0.9, 0.5, 1.0) > r_mono(0.9, 0.5)
    True
    """
    s = check_sigma(sigma)
    Lv = check_positive(L, "L", allow_inf=True)
    p = float(_check_prob(p1, "p1"))
    if p <= 0.5:
        return 0.0
    if p >= 1.0:
        return math.inf
    raw = float(smoothed_ramp_inverse(p, s, Lv, side="lower"))
    return float(_safe_radius(raw, s))


def r_multi_lip(p1, p2, sigma, L):
    """Local-Lipschitz multiclass radius ``(rho_L^-1(p1) - rho_L^-1(p2)) / 2``.

    Parameters
    ----------
    p1 : float
        Lower bound on the top class's smoothed score.
    p2 : float
        Upper bound on ``max_{k != y}`` smoothed score.
    sigma, L :
        As in :func:`r_mono_lip`.

    Notes
    -----
    Source: Delattre et al., AISTATS 2025 (``R_multi^Lip``), with the integral
    form of :func:`r_mono_lip`: ``Psi(p) = rho_L^-1(p)`` satisfies
    ``|d/dt Psi(F_hat_k(x + t v))| <= 1`` for every class ``k`` and unit ``v``,
    so ``Psi(F_hat_y) - Psi(F_hat_k)`` falls at rate at most 2 and stays positive
    for ``||delta|| < (Psi(p1) - Psi(p2))/2``.  ``Psi`` is increasing, so valid
    bounds ``p1 <= F_hat_y``, ``p2 >= max_k F_hat_k`` give a valid radius, for
    any ``p1`` (the paper's centre-evaluated form can exceed it when
    ``p1 < 1/2``).  With ``p2 = 1 - p1`` it equals :func:`r_mono_lip`
    (``rho_L(-u) = 1 - rho_L(u)``).  ``0.0`` when ``p1 <= p2``.

    Examples
    --------
    >>> a = r_multi_lip(0.9, 0.1, 0.5, 2.0); b = r_mono_lip(0.9, 0.5, 2.0)
    >>> abs(a - b) < 1e-8
    True
    """
    s = check_sigma(sigma)
    Lv = check_positive(L, "L", allow_inf=True)
    a = float(_check_prob(p1, "p1"))
    b = float(_check_prob(p2, "p2"))
    if a <= b or a <= 0.0:
        return 0.0
    if a >= 1.0 or b <= 0.0:
        return math.inf
    ua = float(smoothed_ramp_inverse(a, s, Lv, side="lower"))
    ub = float(smoothed_ramp_inverse(b, s, Lv, side="upper"))
    return float(_safe_radius(0.5 * (ua - ub), s))


def r_mono_lip_paper(p1, sigma, L) -> float:
    """The AISTATS 2025 code's ``R_mono^Lip = Phi^-1(p1) / L_loc`` (for cross-checks only).

    ``L_loc = M(p1) / phi(Phi^-1(p1))`` with ``M(p1) = d rho_L / du`` at the
    root; see :func:`r_mono_lip`.  Not used by :func:`radius.certify`.
    """
    s = float(sigma)
    u = float(smoothed_ramp_inverse(p1, s, L, side="lower"))
    # M = L (Phi((c + 1/(2L))/s) - Phi((c - 1/(2L))/s)) at the ramp centre c = -u relative to x
    M = L * (special.ndtr((u + 0.5 / L) / s) - special.ndtr((u - 0.5 / L) / s))
    z = special.ndtri(p1)
    dens = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return float(z / (M / dens))


# --------------------------------------------------------------------------- sound (rounded Gaussian) noise
def sound_probability_bounds(p_a_lower, p_b_upper, tv):
    """Bounds on the *ideal* rounded-Gaussian smoothed probabilities from bounds on the *drawn* ones.

    ``(max(p_a_lower - tv, 0), min(p_b_upper + tv, 1))`` (for ``tv > 0`` each moved one more ulp outward, so
    that rounding the subtraction never helps: ``0.98 - 5e-17`` rounds to ``0.98``), with ``tv`` a bound on the total variation
    between the noise the sampler draws and the ideal rounded Gaussian
    (:meth:`backends.noise.SoundNoise.tv_bound`): every event, in particular "the base classifier says
    ``k``", has probabilities within ``tv`` under the two laws, so valid bounds on the drawn
    probabilities, shifted by ``tv``, are valid bounds on the ideal ones (``docs/soundness.md``; radii: theory §7).

    Examples
    --------
    >>> a, b = sound_probability_bounds(0.9, 0.05, 1e-3)
    >>> round(a, 12), round(b, 12)
    (0.899, 0.051)
    """
    t = float(tv)
    if not (math.isfinite(t) and t >= 0.0):
        raise ValueError(f"tv must be a finite number >= 0, got {tv!r}")
    a = _check_prob(p_a_lower, "p_a_lower")
    b = _check_prob(p_b_upper, "p_b_upper")
    lo, hi = a - t, b + t
    if t > 0.0:  # one ulp outward: the rounded shift never helps the user (theory §2.4; a - t may round to a)
        lo, hi = np.nextafter(lo, -np.inf), np.nextafter(hi, np.inf)
    lo, hi = np.maximum(lo, 0.0), np.minimum(hi, 1.0)
    if np.ndim(p_a_lower) == 0 and np.ndim(p_b_upper) == 0:
        return float(lo), float(hi)
    return lo, hi


def sound_linear_margin_lower(linear_margin_lower, tv):
    """A lower bound on the ideal linear margin ``p_y - max_k p_k`` from one on the drawn law's: ``D - 2 tv``.

    For disjoint events ``A, B`` and laws ``P, P'`` within total variation ``tv``,
    ``|(P(A) - P(B)) - (P'(A) - P'(B))| <= 2 tv``.  Feed the result to :func:`r1`-type radii
    (:func:`radius_from_linear_margin`).  A *probit* margin bound cannot be shifted this way (``Phi^-1``
    has unbounded slope near 0 and 1): under sound noise use the probability bounds of a reduction that
    reports them (:func:`sound_probability_bounds`).

    Examples
    --------
    >>> round(sound_linear_margin_lower(0.5, 1e-3), 12)
    0.498
    """
    t = float(tv)
    if not (math.isfinite(t) and t >= 0.0):
        raise ValueError(f"tv must be a finite number >= 0, got {tv!r}")
    D = np.asarray(linear_margin_lower, dtype=float) - 2.0 * t
    if t > 0.0:  # one ulp down: the rounded shift never helps the user
        D = np.nextafter(D, -np.inf)
    return _out(D, np.ndim(linear_margin_lower) == 0)


def r_sound(p_a_lower, p_b_upper, sigma, tv=0.0):
    """Certified radius under *sound* noise: ``R2`` of the bounds shifted by ``tv``.

    Parameters
    ----------
    p_a_lower, p_b_upper : float or array_like
        Confidence bounds, as for :func:`r2`, on the smoothed probabilities estimated from samples drawn
        with ``noise="sound"`` (:class:`backends.noise.SoundNoise`).
    sigma : float
        The standard deviation of the Gaussian that is rounded to the grid.
    tv : float
        ``SoundNoise.tv_bound(dim)``: the total-variation bound of the threshold rounding (``0`` for the
        ideal rounded Gaussian).

    Returns
    -------
    float or ndarray
        The radius of every *grid point* ``x'`` (on the grid, inside the clip range) at which the
        sound-noise smoothed classifier keeps the prediction; ``0.0`` where the shifted bounds cross.

    Notes
    -----
    Derivation (Voráček & Hein 2023, section 5; ``docs/soundness.md``).  Let ``Q`` round every coordinate
    to the nearest point of the grid ``lo + h Z`` and clip it to ``[lo, hi]``.  For ``x`` on the grid,
    ``Q(x + eps) = clip(x + h round(eps / h))``, so the noisy copies the sampler draws (rounded Gaussian
    offsets) are exactly ``Q(x + eps)`` with ``eps ~ N(0, sigma^2 I)`` continuous.  Hence the sound smoothed
    classifier is ``p_k(x) = P(f(Q(x + eps)) = k)``: the *Gaussian* smoothing of the base classifier
    ``f o Q``, defined on all of ``R^d``.  Cohen et al.'s theorem holds for every measurable base
    classifier, and Salman et al.'s Lemma 2 (``Phi^-1(p_k)`` is ``1/sigma``-Lipschitz) for every
    ``[0, 1]``-valued one, so :func:`r2` applies to ``f o Q`` verbatim: for every ``x'`` with
    ``||x' - x|| < R`` the prediction of ``x' -> argmax_k P(f(Q(x' + eps)) = k)`` is unchanged.  For a grid
    point ``x'`` that is what the sound sampler estimates at ``x'``; for other points it is the classifier
    that rounds its input after adding the noise.  Floating point cannot break this: ``f`` only ever
    receives one of finitely many grid values, a deterministic function of the integer grid index.  The
    only approximation is the threshold rounding, absorbed by ``tv``
    (:func:`sound_probability_bounds`).  The local-Lipschitz radii do *not* carry over: ``f o Q`` is not
    Lipschitz.

    References
    ----------
    Voráček, Hein, "Sound randomized smoothing in floating-point arithmetic", ICLR 2023.
    Cohen, Rosenfeld, Kolter, ICML 2019, Theorem 1; Salman et al., NeurIPS 2019, Lemma 2.

    Examples
    --------
    >>> r_sound(0.8, 0.1, 1.0) == r2(0.8, 0.1, 1.0)
    True
    >>> r_sound(0.8, 0.1, 1.0, tv=1e-3) < r2(0.8, 0.1, 1.0)
    True
    """
    a, b = sound_probability_bounds(p_a_lower, p_b_upper, tv)
    return r2(a, b, sigma)


def r_sound_mono(p_a_lower, sigma, tv=0.0):
    """Cohen's radius under sound noise: ``sigma Phi^-1(p_a_lower - tv)``; see :func:`r_sound`.

    Examples
    --------
    >>> r_sound_mono(0.9, 0.5) == r_mono(0.9, 0.5)
    True
    >>> r_sound_mono(0.5 + 1e-12, 0.5, tv=1e-11)
    0.0
    """
    a, _ = sound_probability_bounds(p_a_lower, 0.0, tv)
    return r_mono(a, sigma)
