"""Clopper–Pearson bounds for a binomial proportion.

Source: Clopper, C. J. & Pearson, E. S. (1934), "The use of confidence or
fiducial limits illustrated in the case of the binomial", Biometrika 26(4).
Lower bound ``BetaInv(alpha; k, n - k + 1)`` (0 when k = 0), upper bound
``BetaInv(1 - alpha; k + 1, n - k)`` (1 when k = n); SPEC section 3.
"""
from __future__ import annotations

from typing import Tuple, Union

import numpy as np
from scipy import special

from ._validate import check_alpha_array, check_counts, check_side

__all__ = ["clopper_pearson", "SAFETY_RTOL"]

#: Relative safety margin applied to every Clopper–Pearson endpoint (SPEC 2.4).
#: ``scipy.special.betaincinv`` (Boost ``ibeta_inv``) is accurate to a few ulps;
#: we move each endpoint outward by ``SAFETY_RTOL`` relative so that rounding
#: can only widen the interval.  It is far below the 1e-10 agreement we test.
SAFETY_RTOL = 64 * np.finfo(float).eps

ArrayLike = Union[float, np.ndarray]


def _lower(k, n, a):
    with np.errstate(all="ignore"):
        val = special.betaincinv(k, n - k + 1.0, a)
    val = np.where(k == 0, 0.0, val)
    return val * (1.0 - SAFETY_RTOL)


def _upper(k, n, a):
    with np.errstate(all="ignore"):
        val = special.betainccinv(k + 1.0, n - k, a)  # complement: avoids rounding 1 - a
    val = np.where(k == n, 1.0, val)
    return np.minimum(val * (1.0 + SAFETY_RTOL), 1.0)


def clopper_pearson(k, n, alpha=0.001, side: str = "lower") -> Union[ArrayLike, Tuple[ArrayLike, ArrayLike]]:
    """Exact (Clopper–Pearson) confidence bound for a binomial proportion.

    Parameters
    ----------
    k : int or array_like of int
        Number of successes, ``0 <= k <= n``.
    n : int or array_like of int
        Number of trials, ``n >= 1``.  Broadcasts with ``k`` and ``alpha``.
    alpha : float or array_like
        Failure probability in (0, 1).  A one-sided bound has coverage
        ``>= 1 - alpha``; a two-sided interval splits ``alpha/2`` per side.
    side : {"lower", "upper", "two-sided"}

    Returns
    -------
    float or ndarray, or a ``(low, high)`` pair for ``side="two-sided"``.

    Notes
    -----
    Lower bound ``B^{-1}(alpha; k, n-k+1)`` (0 if ``k = 0``), upper bound
    ``B^{-1}(1-alpha; k+1, n-k)`` (1 if ``k = n``), where ``B^{-1}`` is the
    inverse regularised incomplete beta function.  Each endpoint is moved
    outward by the relative margin :data:`SAFETY_RTOL` (SPEC 2.4).

    References
    ----------
    Clopper, C. J. and Pearson, E. S. (1934). Biometrika 26(4), 404–413.

    Examples
    --------
    >>> from confbounds import clopper_pearson
    >>> round(float(clopper_pearson(95, 100, 0.05)), 6)
    0.897583
    >>> low, high = clopper_pearson(0, 10, 0.05, side="two-sided")
    >>> float(low), round(float(high), 6)
    (0.0, 0.308497)
    """
    check_side(side)
    k_arr, n_arr = check_counts(k, n)
    a = check_alpha_array(alpha)
    k_f = k_arr.astype(float)
    n_f = n_arr.astype(float)
    k_f, n_f, a = np.broadcast_arrays(k_f, n_f, a)
    scalar = np.ndim(k) == 0 and np.ndim(n) == 0 and np.ndim(alpha) == 0

    def out(v):
        return float(v) if scalar else v

    if side == "lower":
        return out(_lower(k_f, n_f, a))
    if side == "upper":
        return out(_upper(k_f, n_f, a))
    return out(_lower(k_f, n_f, a / 2.0)), out(_upper(k_f, n_f, a / 2.0))
