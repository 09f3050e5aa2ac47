"""Empirical Bernstein and Hoeffding bounds on the mean of bounded samples.

Both bounds follow the call conventions of ``docs/conventions.md``: samples
``x`` of shape ``(n,)`` give a float, shape ``(n, k)`` bounds every column and
gives shape ``(k,)``; ``side="two-sided"`` returns ``(low, high)`` with
``alpha/2`` per side.  Samples are rescaled from ``bounds=(a, b)`` to [0, 1]
internally and the bound is mapped back.

Sources
-------
* Empirical Bernstein: Maurer, A. and Pontil, M. (2009), "Empirical Bernstein
  bounds and sample variance penalization", COLT, Theorem 4: for i.i.d.
  ``X_i`` in [0, 1], ``n >= 2`` and ``delta`` in (0, 1), with probability at
  least ``1 - delta``

  ``E X >= mean - sqrt(2 V ln(2/delta) / n) - 7 ln(2/delta) / (3 (n - 1))``

  with ``V`` the unbiased sample variance.  The one-sided statement already
  carries ``ln(2/delta)`` (theory §5 and erratum 8.6: the seed report's
  ``ln(1/delta)`` is wrong).
* Hoeffding: Hoeffding, W. (1963), "Probability inequalities for sums of
  bounded random variables", JASA 58, Theorem 2: ``E X >= mean -
  sqrt(ln(1/delta) / (2 n))`` for ``X_i`` in [0, 1].

Rounding (theory §2.4)
-------------------
Means and variances are computed by recursive summation in [0, 1] units
(two-pass variance); the forward error of such a sum is at most
``(n - 1) u sum|terms|`` (Higham, *Accuracy and Stability of Numerical
Algorithms*, 2nd ed., eq. 4.4), so the mean is off by at most ``n u`` and the
variance by a relative ``O(n u)``.  Every bound is moved outward by
:func:`fp_margin` ``= 16 (n + 1) u`` in [0, 1] units (``u`` the unit
round-off), which dominates these errors and the rescaling error, and then by
``4 u (|a| + (b - a))`` when mapped back to ``[a, b]``.  Lower bounds are then
clamped to ``a`` and upper bounds to ``b`` (the mean lies in ``[a, b]``, so
clamping cannot break coverage).
"""
from __future__ import annotations

import math
from typing import Tuple, Union

import numpy as np
from .lazyjit import njit

from . import aot
from ._validate import check_alpha, check_samples, check_side

__all__ = ["empirical_bernstein", "hoeffding", "fp_margin"]

_U = np.finfo(float).eps / 2.0  # unit round-off

Result = Union[float, np.ndarray, Tuple[Union[float, np.ndarray], Union[float, np.ndarray]]]


def fp_margin(n: int) -> float:
    """Safety margin (in [0, 1] units) subtracted from lower / added to upper bounds.

    ``16 (n + 1) u`` with ``u = 2**-53``; see the module docstring.
    """
    return 16.0 * (n + 1) * _U


def to_unit(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """Rescale checked samples from ``[a, b]`` to ``[0, 1]``.

    Division (not multiplication by ``1/(b-a)``) is monotone under rounding,
    so the result stays inside [0, 1].  Returns ``x`` itself when
    ``(a, b) == (0, 1)``.
    """
    if a == 0.0 and b == 1.0:
        return x
    return (x - a) / (b - a)


def from_unit_lower(low, n: int, a: float, b: float) -> np.ndarray:
    """Map a lower bound from [0, 1] units back to ``[a, b]``, rounding down."""
    w = b - a
    low = np.asarray(low, dtype=float) - fp_margin(n)
    out = a + w * low - 4.0 * _U * (abs(a) + w)
    return np.maximum(out, a)


def from_unit_upper(high, n: int, a: float, b: float) -> np.ndarray:
    """Map an upper bound from [0, 1] units back to ``[a, b]``, rounding up."""
    w = b - a
    high = np.asarray(high, dtype=float) + fp_margin(n)
    out = a + w * high + 4.0 * _U * (abs(a) + w)
    return np.minimum(out, b)


def finish(value, one_d: bool):
    """Return a float for one-dimensional input, else the array."""
    value = np.asarray(value, dtype=float)
    if one_d:
        return float(value.reshape(-1)[0])
    return value


@njit(cache=True)
def _mean_var(y):
    """Column means and unbiased variances of ``y`` (n, k), two-pass, row-major."""
    n, k = y.shape
    mean = np.zeros(k)
    for i in range(n):
        for j in range(k):
            mean[j] += y[i, j]
    for j in range(k):
        mean[j] /= n
    var = np.zeros(k)
    if n > 1:
        for i in range(n):
            for j in range(k):
                d = y[i, j] - mean[j]
                var[j] += d * d
        for j in range(k):
            var[j] /= n - 1
    return mean, var


@njit(cache=True)
def _mean_var_1d(y):
    n = y.shape[0]
    s = 0.0
    for i in range(n):
        s += y[i]
    m = s / n
    ss = 0.0
    for i in range(n):
        d = y[i] - m
        ss += d * d
    v = ss / (n - 1) if n > 1 else 0.0
    return m, v


def _moments(y: np.ndarray):
    """Means and unbiased variances per column of a C-contiguous (n, k) array."""
    if y.shape[1] == 1:
        m, v = _mean_var_1d_call(np.ascontiguousarray(y[:, 0]))
        return np.array([m]), np.array([v])
    return _mean_var_call(np.ascontiguousarray(y))


def _eb_radius(var: np.ndarray, n: int, alpha_side: float) -> np.ndarray:
    """Maurer–Pontil Thm 4 deviation in [0, 1] units at level ``alpha_side``."""
    log_term = math.log(2.0 / alpha_side)
    return np.sqrt(2.0 * np.maximum(var, 0.0) * log_term / n) + 7.0 * log_term / (3.0 * (n - 1))


def _two_sided_or_one(center, radius_fn, alpha, side, n, a, b, one_d):
    if side == "two-sided":
        r = radius_fn(alpha / 2.0)
        low = from_unit_lower(center - r, n, a, b)
        high = from_unit_upper(center + r, n, a, b)
        return finish(low, one_d), finish(high, one_d)
    r = radius_fn(alpha)
    if side == "lower":
        return finish(from_unit_lower(center - r, n, a, b), one_d)
    return finish(from_unit_upper(center + r, n, a, b), one_d)


def empirical_bernstein(x, alpha: float, side: str = "lower", bounds=(0.0, 1.0)) -> Result:
    """Empirical Bernstein bound on the mean (Maurer & Pontil 2009, Theorem 4).

    Parameters
    ----------
    x : array_like, shape (n,) or (n, k)
        I.i.d. samples inside ``bounds``; ``n >= 2`` (the bound needs a
        sample variance).  Columns of a 2-D array are bounded separately.
    alpha : float
        Failure probability in (0, 1).  One-sided bounds use
        ``ln(2/alpha)`` as Theorem 4 states; ``"two-sided"`` uses
        ``alpha/2`` per side (union bound).
    side : {"lower", "upper", "two-sided"}
    bounds : (a, b)
        Known range of the samples; nothing is clipped.

    Returns
    -------
    float (1-D input), ndarray (k,) (2-D input), or ``(low, high)``.

    Notes
    -----
    In [0, 1] units the lower bound is
    ``mean - sqrt(2 V ln(2/alpha) / n) - 7 ln(2/alpha) / (3 (n - 1))``
    with ``V`` the unbiased sample variance; the upper bound mirrors it.  The
    result is rounded outward by :func:`fp_margin` and clamped to ``[a, b]``.

    References
    ----------
    Maurer, A. and Pontil, M. (2009). Empirical Bernstein bounds and sample
    variance penalization. COLT 2009, Theorem 4.

    Examples
    --------
    >>> import numpy as np
    >>> from confbounds import empirical_bernstein
    >>> x = np.random.default_rng(0).beta(2, 5, size=10_000)
    >>> low = empirical_bernstein(x, 0.05)
    >>> bool(low <= 2 / 7), round(low, 3)
    (True, 0.281)
    """
    check_side(side)
    alpha = check_alpha(alpha)
    arr, one_d = check_samples(x, bounds, min_n=2)
    a, b = float(bounds[0]), float(bounds[1])
    y = to_unit(arr, a, b)
    n = y.shape[0]
    mean, var = _moments(y)
    return _two_sided_or_one(mean, lambda al: _eb_radius(var, n, al), alpha, side, n, a, b, one_d)


def hoeffding(x, alpha: float, side: str = "lower", bounds=(0.0, 1.0)) -> Result:
    """Hoeffding's bound on the mean of bounded i.i.d. samples (Hoeffding 1963).

    Parameters
    ----------
    x : array_like, shape (n,) or (n, k)
        I.i.d. samples inside ``bounds``, ``n >= 1``.
    alpha : float
        Failure probability in (0, 1); two-sided uses ``alpha/2`` per side.
    side : {"lower", "upper", "two-sided"}
    bounds : (a, b)

    Returns
    -------
    float, ndarray (k,), or ``(low, high)``.

    Notes
    -----
    In [0, 1] units: ``mean -/+ sqrt(ln(1/alpha) / (2 n))``.  It ignores the
    variance and serves as the baseline of the tightness tests.  Rounded
    outward like :func:`empirical_bernstein`.

    References
    ----------
    Hoeffding, W. (1963). Probability inequalities for sums of bounded random
    variables. JASA 58(301), 13–30, Theorem 2.

    Examples
    --------
    >>> import numpy as np
    >>> from confbounds import hoeffding
    >>> round(hoeffding(np.full(100, 0.5), 0.05), 4)
    0.3776
    """
    check_side(side)
    alpha = check_alpha(alpha)
    arr, one_d = check_samples(x, bounds, min_n=1)
    a, b = float(bounds[0]), float(bounds[1])
    y = to_unit(arr, a, b)
    n = y.shape[0]
    mean, _ = _moments(y)
    return _two_sided_or_one(
        mean, lambda al: np.full_like(mean, math.sqrt(math.log(1.0 / al) / (2.0 * n))), alpha, side, n, a, b, one_d
    )


# Python callers use the kernels compiled ahead of time when they are built (confbounds.aot)
(_mean_var_call, _mean_var_1d_call) = aot.bind(
    _mean_var, _mean_var_1d)
