"""Truncated Taylor series of the standard normal quantile, ``Phi^{-1}_M``.

Source: the Maclaurin series of the inverse error function,
``erfinv(x) = sum_k c_k/(2k+1) (sqrt(pi) x / 2)^(2k+1)`` with ``c_0 = 1`` and
``c_k = sum_{m=0}^{k-1} c_m c_{k-1-m} / ((m+1)(2m+1))`` (Abramowitz & Stegun;
OEIS A092676/A092677; theory §6), and ``Phi^{-1}(p) = sqrt(2) erfinv(2p-1)``.
Every term has the sign of ``x = 2p - 1``, so the partial sum is ``<= Phi^{-1}(p)``
for ``p >= 1/2`` and ``>=`` for ``p <= 1/2``.
"""
from __future__ import annotations

from fractions import Fraction
from typing import List, Union

import numpy as np

__all__ = ["taylor_coefficients", "phi_inv_taylor", "SAFETY_RTOL"]

#: Relative shrink toward 0 applied to every value of :func:`phi_inv_taylor`
#: (theory §2.4): the truncated series is mathematically no larger in magnitude than
#: ``Phi^{-1}``; once it has converged, floating-point rounding could put it an
#: ulp above ``scipy.special.ndtri``.  Shrinking by 16 ulps keeps the one-sided
#: inequality in floating point without changing any result that matters.
SAFETY_RTOL = 16 * np.finfo(float).eps


def taylor_coefficients(M: int, exact: bool = False) -> Union[np.ndarray, List[Fraction]]:
    """Coefficients ``c_0..c_M`` of the erfinv series (theory §6).

    Parameters
    ----------
    M : int
        Highest order kept, ``M >= 0``.
    exact : bool
        If True return a list of :class:`fractions.Fraction` (exact rationals);
        otherwise a float64 array.

    Examples
    --------
    >>> taylor_coefficients(5, exact=True)[1:]
    [Fraction(1, 1), Fraction(7, 6), Fraction(127, 90), Fraction(4369, 2520), Fraction(34807, 16200)]
    """
    if isinstance(M, bool) or not isinstance(M, (int, np.integer)) or M < 0:
        raise ValueError(f"M must be a non-negative integer, got {M!r}")
    M = int(M)
    if exact:
        c: List[Fraction] = [Fraction(1)]
        for k in range(1, M + 1):
            c.append(sum((c[m] * c[k - 1 - m] / ((m + 1) * (2 * m + 1)) for m in range(k)), Fraction(0)))
        return c
    cf = np.zeros(M + 1)
    cf[0] = 1.0
    for k in range(1, M + 1):
        m = np.arange(k)
        cf[k] = np.sum(cf[m] * cf[k - 1 - m] / ((m + 1.0) * (2.0 * m + 1.0)))
    return cf


def phi_inv_taylor(p, M: int):
    """Order-``M`` Taylor approximation ``Phi^{-1}_M(p)`` of the normal quantile.

    ``Phi^{-1}_M(p) = sqrt(2) * sum_{k<=M} c_k/(2k+1) z^(2k+1)``, ``z = sqrt(pi)(2p-1)/2``.
    It is finite on the closed interval [0, 1] (about 3.02 at p = 1 for M = 100),
    ``<= Phi^{-1}(p)`` for ``p >= 1/2`` and ``>= Phi^{-1}(p)`` for ``p <= 1/2``.
    Values are shrunk toward 0 by the relative margin :data:`SAFETY_RTOL` so the
    inequality also holds in floating point.

    Parameters
    ----------
    p : float or array_like in [0, 1]
    M : int, order (number of terms minus one)

    Examples
    --------
    >>> round(float(phi_inv_taylor(0.5, 10)), 12)
    0.0
    >>> float(phi_inv_taylor(0.9, 50)) <= 1.2815515655446004
    True
    """
    c = taylor_coefficients(M)
    arr = np.asarray(p, dtype=float)
    bad = ~((arr >= 0.0) & (arr <= 1.0))
    if np.any(bad):
        raise ValueError(f"p must lie in [0, 1], got {arr[bad].ravel()[:5]}")
    z = np.sqrt(np.pi) * (2.0 * arr - 1.0) / 2.0
    z2 = z * z
    a = c / (2.0 * np.arange(M + 1) + 1.0)
    acc = np.zeros_like(z)
    for k in range(M, -1, -1):  # Horner in z^2
        acc = acc * z2 + a[k]
    out = np.sqrt(2.0) * z * acc * (1.0 - SAFETY_RTOL)
    return float(out) if np.ndim(p) == 0 else out
