"""Time-uniform confidence sequences for a Bernoulli proportion by the beta-binomial mixture.

Let ``X_1, X_2, ...`` be i.i.d. Bernoulli(p) and ``k_t = X_1 + ... + X_t``.  For a fixed null value ``p``
and a Beta(a, b) mixing distribution on the alternative ``q``, the conjugate mixture of likelihood ratios

    M_t(p) = int_0^1 q^k_t (1 - q)^(t - k_t) dBeta(q; a, b) / (p^k_t (1 - p)^(t - k_t))
           = B(a + k_t, b + t - k_t) / (B(a, b) p^k_t (1 - p)^(t - k_t))

is a non-negative martingale with ``M_0 = 1`` under ``p`` (a mixture of the likelihood-ratio martingales
``prod q^X_i (1 - q)^(1 - X_i) / (p^X_i (1 - p)^(1 - X_i))``, with a mixing law that does not depend on the data;
Robbins 1970, Section 3; Howard et al. 2021, Section 3, conjugate mixtures, beta-binomial case).  Ville's
inequality gives ``P_p(exists t: M_t(p) >= 1/alpha) <= alpha``, so

    C_t = {p in [0, 1] : M_t(p) < 1/alpha}

covers the true ``p`` simultaneously at every ``t`` with probability ``>= 1 - alpha``.  Consequently the bounds
may be read at a data-dependent (stopping) time, after any number of looks: optional stopping and optional
continuation are both valid.  Intersecting ``C_1, ..., C_t`` (``running_intersection=True``) keeps validity.

Shape of the set.  ``log M_t(p) = c_t - k log p - (t - k) log(1 - p)`` with ``c_t = log B(a + k, b + t - k) -
log B(a, b)`` is convex in ``p`` and minimal at ``p_hat = k/t``, where it is ``<= 0`` (a mixture of likelihoods
never exceeds the maximum likelihood).  So ``C_t`` is an interval ``(L_t, U_t)`` containing ``p_hat``, with
``L_t = 0`` when ``k = 0`` and ``U_t = 1`` when ``k = t``.

Alpha accounting.  The *same* set at level ``alpha`` gives both endpoints: ``side="two-sided"`` returns
``(L_t, U_t)`` whose *joint* failure probability over all ``t`` is ``<= alpha`` (no ``alpha/2`` split is needed,
unlike two separate one-sided bounds); ``side="lower"`` / ``"upper"`` return one endpoint of the same set at
level ``alpha`` (valid one-sided at ``alpha``, slightly conservative compared with a one-sided mixture).

Numerics and rounding (theory §2.4).  A point ``p`` counts as *rejected* (outside ``C_t``) only when
``log M_t(p) - log(1/alpha) >= tol`` with the safety margin ``tol = 1e-10 * (|c_t| + k |log p| + (t - k)
|log(1 - p)| + log(1/alpha) + 2 log Gamma(a + b + t) + 2 |log B(a, b)|) + 1e-12``, which dominates the error of
``scipy.special.betaln`` and of the sums (relative error a few ``1e-16`` each).  Each endpoint is found per entry
(Numba) by trying ``p_hat / 2, p_hat / 4, ...`` (upper: ``1 - (1 - p_hat) / 2^j``) until a point is certified
rejected, then Newton steps towards the boundary from outside: ``log M_t`` is convex, so every exact Newton
iterate stays outside the set, and an iterate (aimed at the level ``2 tol``) is accepted only if it is
certified rejected; iteration stops when the step is below ``1e-14 min(p, 1 - p)`` (or ``4e-16``).  Every
reported endpoint is therefore a point certified to lie outside the open interval ``C_t``: rounding and early
stopping can only widen the confidence set, by a relative ``~1e-14``.

References
----------
Robbins, H. (1970). Statistical methods related to the law of the iterated logarithm. Ann. Math. Statist.
41(5), 1397-1409.
Howard, S. R., Ramdas, A., McAuliffe, J. and Sekhon, J. (2021). Time-uniform, nonparametric, nonasymptotic
confidence sequences. Ann. Statist. 49(2), 1055-1080.  Section 3 (conjugate mixtures, the
beta-binomial mixture).
Ville, J. (1939). Etude critique de la notion de collectif. Gauthier-Villars.

Examples
--------
>>> lo, hi = beta_binomial_cs([90], [100], alpha=0.05, side="two-sided")
>>> bool(0.75 < lo[0] < 0.9 < hi[0] < 0.99)
True
>>> import numpy as np
>>> x = np.ones(50)  # a path of 50 successes: bound at every t = 1..50
>>> path = beta_binomial_cs_path(x, alpha=0.05)
>>> path.shape, bool(np.all(np.diff(path) > 0))
((50,), True)
"""
from __future__ import annotations

import math
from typing import Tuple, Union

from .lazyjit import njit
import numpy as np
from scipy import special

from . import aot
from ._validate import check_alpha, check_counts, check_side

__all__ = ["beta_binomial_log_martingale", "beta_binomial_cs", "beta_binomial_cs_path", "check_prior",
           "DEFAULT_PRIOR"]

#: Default mixing distribution Beta(a, b): Jeffreys' Beta(1/2, 1/2).  Small ``b`` (resp. ``a``) puts more mass
#: near 1 (resp. 0) and tightens the bound there; any fixed choice keeps validity.
DEFAULT_PRIOR = (0.5, 0.5)

_REL_TOL = 1e-10
_ABS_TOL = 1e-12

Array = Union[float, np.ndarray]


def check_prior(prior) -> Tuple[float, float]:
    """``prior=(a, b)``: two finite numbers > 0 (the Beta mixing distribution)."""
    try:
        a, b = (float(v) for v in prior)
    except (TypeError, ValueError):
        raise ValueError(f"prior must be a pair (a, b) of numbers > 0, got {prior!r}") from None
    if not (np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0):
        raise ValueError(f"prior must be a pair (a, b) of finite numbers > 0, got {prior!r}")
    return a, b


def _xlogy_safe(k, p):
    # k * log(p) with 0 * log(0) = 0
    return special.xlogy(k, p)


def _log_m_parts(k, n, a, b):
    c = special.betaln(a + k, b + n - k) - special.betaln(a, b)
    scale = np.abs(c) + 2.0 * special.gammaln(a + b + n) + 2.0 * np.abs(special.betaln(a, b))
    return c, scale


def beta_binomial_log_martingale(k, n, p, prior=DEFAULT_PRIOR) -> np.ndarray:
    """``log M_n(p)`` of the beta-binomial mixture after ``k`` successes in ``n`` trials (broadcasts).

    ``M_n(p) = B(a + k, b + n - k) / (B(a, b) p^k (1 - p)^(n - k))`` (Robbins 1970; Howard et al. 2021,
    Section 3); it is ``+inf`` where the null ``p`` is impossible (``p = 0`` with ``k > 0``, ``p = 1`` with ``k < n``).

    >>> float(beta_binomial_log_martingale(0, 0, 0.3))
    0.0
    >>> round(float(np.exp(beta_binomial_log_martingale(3, 3, 0.5, prior=(1, 1)))), 12)  # (1/4) / (1/8)
    2.0
    """
    a, b = check_prior(prior)
    k, n = check_counts(k, n, min_n=0)
    p = np.asarray(p, dtype=float)
    if np.any(~((p >= 0) & (p <= 1))):
        raise ValueError(f"p must lie in [0, 1], got {p[~((p >= 0) & (p <= 1))].ravel()[:3]!r}")
    c, _ = _log_m_parts(k, n, a, b)
    with np.errstate(divide="ignore"):
        return c - _xlogy_safe(k, p) - _xlogy_safe(n - k, 1.0 - p)


@njit(cache=True)
def _is_rejected(k, n, p, c, scale, log_thr):
    """Certified ``log M(p) >= log(1/alpha)`` (the point p lies outside the confidence set)."""
    if p <= 0.0:
        return k > 0
    if p >= 1.0:
        return k < n
    t1 = k * math.log(p)
    t2 = (n - k) * math.log1p(-p)
    val = c - t1 - t2 - log_thr
    tol = _REL_TOL * (scale + abs(t1) + abs(t2) + log_thr) + _ABS_TOL
    return val >= tol


@njit(cache=True)
def _newton_root(k, n, c, scale, log_thr, lower):
    """Endpoint of ``{p : log M(p) < log(1/alpha)}`` on one side of ``p_hat = k/n``.

    ``f(p) = c - k log p - (n - k) log(1 - p) - log(1/alpha)`` is convex with ``f(p_hat) < 0``.  Lower side:
    halve ``p_hat`` until a point is certified rejected, then Newton steps from the left; on a convex decreasing
    function every Newton iterate stays left of the root, and an iterate is accepted only if it is certified
    rejected, so the returned point is always outside the set (a valid, slightly conservative endpoint).  The
    upper side is the mirror image (Newton from the right).
    """
    phat = k / n
    if lower:
        p = phat
        d = phat
        for _ in range(2000):
            d *= 0.5
            p = d
            if _is_rejected(k, n, p, c, scale, log_thr):
                break
    else:
        d = 1.0 - phat
        for _ in range(2000):
            d *= 0.5
            p = 1.0 - d
            if _is_rejected(k, n, p, c, scale, log_thr):
                break
    for _ in range(500):
        t1 = k * math.log(p)
        t2 = (n - k) * math.log1p(-p)
        f = c - t1 - t2 - log_thr
        g = -k / p + (n - k) / (1.0 - p)
        # aim at the level 2 tol (not 0), so that the iterate is certified rejected with room to spare
        tau = 2.0 * (_REL_TOL * (scale + abs(t1) + abs(t2) + log_thr) + _ABS_TOL)
        if g == 0.0 or not math.isfinite(f) or not math.isfinite(g) or f <= tau:
            break
        q = p - (f - tau) / g
        if lower:
            if not (q > p and q < phat):
                break
        else:
            if not (q < p and q > phat):
                break
        if not _is_rejected(k, n, q, c, scale, log_thr):
            break
        step = abs(q - p)
        p = q
        if step <= 4e-16 or step <= 1e-14 * min(p, 1.0 - p):
            break
    return p


@njit(cache=True)
def _endpoints_kernel(k, n, c, scale, log_thr, want_lower, want_upper, lower, upper):
    for i in range(k.shape[0]):
        ki = k[i]
        ni = n[i]
        if want_lower:
            if ki == 0 or ni == 0:
                lower[i] = 0.0
            else:
                lower[i] = _newton_root(ki, ni, c[i], scale[i], log_thr, True)
        if want_upper:
            if ki == ni:
                upper[i] = 1.0
            else:
                upper[i] = _newton_root(ki, ni, c[i], scale[i], log_thr, False)


def _endpoints(k, n, a, b, log_thr, want_lower, want_upper):
    kf = np.ascontiguousarray(k, dtype=np.float64)
    nf = np.ascontiguousarray(n, dtype=np.float64)
    c, scale = _log_m_parts(kf, nf, a, b)
    lower = np.empty_like(kf)
    upper = np.empty_like(kf)
    _endpoints_kernel_call(kf, nf, np.ascontiguousarray(c), np.ascontiguousarray(scale), float(log_thr),
                      bool(want_lower), bool(want_upper), lower, upper)
    return (lower if want_lower else None), (upper if want_upper else None)


def beta_binomial_cs(k, n, alpha: float, side: str = "lower", prior=DEFAULT_PRIOR):
    """Beta-binomial mixture confidence sequence read at running counts ``(k, n)``.

    Parameters
    ----------
    k, n : int or array_like of int
        Successes and trials so far (broadcast together; ``0 <= k <= n``, ``n >= 0``).  Entries may be the
        counts of one stream at several times (a path) or of many independent streams.
    alpha : float
        Total failure probability of the whole sequence, over all times *and* both sides.
    side : {"lower", "upper", "two-sided"}
        ``"two-sided"`` returns ``(lower, upper)``, both endpoints of one set at level ``alpha`` (joint
        coverage ``>= 1 - alpha``, see the module docstring).
    prior : (a, b)
        Beta mixing distribution (default Jeffreys ``(1/2, 1/2)``).

    Returns
    -------
    float or ndarray, or a pair of them: ``L_t`` and/or ``U_t`` with
    ``P(exists t: p < L_t or p > U_t) <= alpha``.

    References
    ----------
    Howard, Ramdas, McAuliffe, Sekhon (2021), Ann. Statist. 49(2), Section 3; Robbins (1970).

    Examples
    --------
    Fixed-n Clopper-Pearson is tighter than an anytime-valid bound at the same n:

    >>> from confbounds import clopper_pearson
    >>> l_cs = float(beta_binomial_cs(980, 1000, 0.001))
    >>> l_cp = float(clopper_pearson(980, 1000, 0.001))
    >>> bool(0.95 < l_cs < l_cp < 0.98)
    True
    """
    alpha = check_alpha(alpha)
    check_side(side)
    a, b = check_prior(prior)
    k_arr, n_arr = check_counts(k, n, min_n=0)
    k_arr, n_arr = np.broadcast_arrays(k_arr, n_arr)
    scalar = k_arr.ndim == 0
    k1 = np.atleast_1d(k_arr).astype(np.int64).ravel()
    n1 = np.atleast_1d(n_arr).astype(np.int64).ravel()
    lower, upper = _endpoints(k1, n1, a, b, -np.log(alpha), side in ("lower", "two-sided"),
                              side in ("upper", "two-sided"))

    def fin(v):
        return float(v[0]) if scalar else v.reshape(k_arr.shape)

    if side == "lower":
        return fin(lower)
    if side == "upper":
        return fin(upper)
    return fin(lower), fin(upper)


def beta_binomial_cs_path(x, alpha: float, side: str = "lower", prior=DEFAULT_PRIOR,
                          running_intersection: bool = False):
    """The mixture confidence sequence at every ``t = 1..n`` of 0/1 observations.

    Parameters
    ----------
    x : array_like of shape (n,) or (n, r)
        Observations in {0, 1} (booleans or integral numbers); columns are independent streams.
    alpha, side, prior
        As in :func:`beta_binomial_cs`.
    running_intersection : bool
        Return ``max_{s<=t} L_s`` / ``min_{s<=t} U_s`` (still valid: the intersection of the sets covers on the
        same event).

    Returns
    -------
    ndarray of shape (n,) or (n, r) (a pair of them for ``"two-sided"``).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((2000, 3)) < 0.7
    >>> lo, hi = beta_binomial_cs_path(x, 0.05, side="two-sided")
    >>> lo.shape, bool(np.all(lo <= hi))
    ((2000, 3), True)
    """
    arr = np.asarray(x)
    if arr.ndim not in (1, 2) or arr.shape[0] == 0:
        raise ValueError(f"x must have shape (n,) or (n, r) with n >= 1, got shape {arr.shape}")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind in "iuf":
        if not np.all((arr == 0) | (arr == 1)):
            bad = arr[~((arr == 0) | (arr == 1))].ravel()[0]
            raise ValueError(f"x must hold 0/1 observations, got the value {bad!r}")
        arr = arr.astype(np.int64)
    else:
        raise ValueError(f"x must hold 0/1 observations, got dtype {arr.dtype}")
    k = np.cumsum(arr, axis=0)
    t = np.arange(1, arr.shape[0] + 1).reshape((-1,) + (1,) * (arr.ndim - 1))
    res = beta_binomial_cs(k, np.broadcast_to(t, k.shape), alpha, side=side, prior=prior)
    if not running_intersection:
        return res
    if side == "lower":
        return np.maximum.accumulate(res, axis=0)
    if side == "upper":
        return np.minimum.accumulate(res, axis=0)
    return np.maximum.accumulate(res[0], axis=0), np.minimum.accumulate(res[1], axis=0)


# Python callers use the kernels compiled ahead of time when they are built (confbounds.aot)
_endpoints_kernel_call = aot.bind(_endpoints_kernel)
