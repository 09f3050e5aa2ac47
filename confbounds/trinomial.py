"""Distribution and upper tail of a statistic of a trinomial count vector.

``X = (X1, X2, X3) ~ Mult(n; q1, q2, q3)`` (theory §4).  Two test
statistics are offered (theory §4.1):

* ``"difference"``: ``T(X) = X1 - X2`` (integer valued);
* ``"plugin"``: ``T(X) = Phi^{-1}_M(X1/n) - Phi^{-1}_M(X2/n)``, the report's
  plug-in of the Taylor probit margin (``M = taylor_order``, theory §6);
* ``"studentized"``: ``T(X) = (X1 - X2) / sqrt(X1 + X2 + 1)``.  With
  ``d = x1 - x2``, ``s = x1 + x2``, ``|d| <= s``: a 3 -> 1 move gives
  ``(d+1)/sqrt(s+2) >= d/sqrt(s+1)`` (for ``d >= 0`` this is
  ``(2d+1)(s+1) >= d^2``; for ``d < 0`` both numerator and denominator help),
  a 2 -> 3 move gives ``(d+1)/sqrt(s) >= d/sqrt(s+1)`` (for ``d = -m <= -1``
  this is ``m^2 <= (2m-1)(s+1)``), a 2 -> 1 move raises ``d`` by 2.

All three do not decrease when one trial moves from category 3 to 1, from 2 to 3
or from 2 to 1.  Hence, for a fixed ``s = x1 + x2``, the tail set
``{x1 : T(x1, s - x1) >= t}`` is an up-set ``{x1 >= k(s)}`` and
``k(s) <= k(s+1) <= k(s) + 1``.  With ``S = X1 + X2 ~ Bin(n, pi)``,
``pi = q1 + q2``, and ``X1 | S = s ~ Bin(s, rho)``, ``rho = q1 / pi``,

    P(T >= t) = sum_s Bin(s; n, pi) * P(Bin(s, rho) >= k(s))      (theory §4.4)

which for ``T = X1 - X2`` is ``k(s) = ceil((s + t)/2)``.  Any statistic that is
nondecreasing in ``x1`` and nonincreasing in ``x2`` (the dominating statistics of theory §4.7)
gives such a staircase too: :func:`staircase_table`.  The conditional
tails obey the exact recurrences ``P(Bin(s+1, r) >= k) = P(Bin(s, r) >= k) +
r P(Bin(s, r) = k-1)`` and ``P(Bin(s, r) >= k+1) = P(Bin(s, r) >= k) -
P(Bin(s, r) = k)`` (Pascal's rule), so the whole tail costs ``O(n)`` table
operations; :func:`tail_prob_bounds` with ``method="enumerate"`` instead sums
the multinomial weights of the outcomes one by one (``O(n^2)``).

Safety (theory §2.4 and §4.4): rounding is accounted for relative to the level
-------------------------------------------------------------------------------
Every allowance below is relative to the tail or weighted by the binomial
weights, so the certified bounds stay tight for any level (tested down to
``1e-16``) and any ``n`` (tested to ``1e8``); no table of size ``n`` is built
for the difference statistic (:func:`compact_difference_table`).

* Log-pmf (Loader 2000).  ``log Bin(j; m, p)`` is computed as
  ``stirlerr(m) - stirlerr(j) - stirlerr(m-j) - bd0(j, mp) - bd0(m-j, mq) -
  log(2 pi j (m-j)/m)/2`` with ``q`` passed (never ``1 - p``).  Each call
  returns a bound of its absolute error (:func:`_lbin`: 16 eps of the
  magnitudes summed, the deviance errors of :func:`_bd0`, ``1e-15`` for the
  Stirling series); a log-factorial difference instead loses ``eps log n!``
  (``~4e-7`` at ``n = 1e8``).  ``emax``, the largest such error met in one
  tail, gives the relative margin ``R_log = expm1(emax) + 2 eps`` of every
  anchored term (``~1e-13`` in practice at every ``n``).
* Parameters.  ``pi = q1 + q2``, ``q3`` (Sterbenz order, one rounding), ``rho =
  q1/pi``, ``1 - rho = q2/pi`` are each one rounding away from the exact
  ``q``.  The tail is a posynomial of degree ``n`` in ``(q1, q2, q3)``,
  increasing in each (theory §4.3), so these perturbations and Loader's
  ``m (p + q - 1)`` term change it by a factor ``<= exp(4 n eps)``:
  :func:`_par_margin`, relative (the former ``8 n eps`` was absolute).
* Only the significant range of each binomial is summed; the neglected mass
  is bounded by the Chernoff bound ``P(Bin(m, p) >= k) <= exp(-m KL(k/m ||
  p))`` (written with ``p`` and ``q`` so it bounds the unnormalised sum, its
  exponent rounded upward) and **added** to the upper bound.  The margin
  bounds prune at ``PRUNE_FRACTION * level``, so the pruned mass is relative.
* Ratio recurrences between anchors (every 32 steps: weights
  ``Bin(s+1; n, pi) = Bin(s; n, pi) (n-s)/(s+1) pi/q3``, conditional terms,
  the point probabilities carried from ``s`` to ``s + 1`` by Pascal ratios):
  ``<= 165 eps`` relative each; ``768 eps`` in the relative margin ``R``,
  which also holds ``R_log``, the parameter margin and ``(ns + nops + 8) eps``
  for the products and the sum of positive terms.
* Cancellations in the running conditional tail ``F_s = P(Bin(s, rho) >=
  k(s))`` (recurrence path).  ``F_s = Fbase + sum of signed point
  probabilities`` since its last anchor, so its absolute error is ``<= (R_log
  + 512 eps + nops eps)(U_s + Fbase_s)`` with ``U_s`` the magnitudes of those
  terms (their relative errors and one rounding per addition act on the
  running magnitude, not on ``F``).  The result carries the weighted sum
  ``A_F = (R_log + 512 eps + nops eps) V``, ``V = sum_{s > s_lo} w_s (U_s +
  Fbase_s)``, which is small *relative to the tail* because ``F`` is
  re-anchored: exactly where ``k(s) > s`` (``F_s = 0``) or ``k(s) <= 0``
  (``F_s = 1``), and by a direct sum of positive terms (:func:`_sf_bounds`,
  relative error) once ``U_s + Fbase_s > 1024 F_s`` and ``U_s + Fbase_s > 1e3
  exp(logcut)`` (at most 256 times per tail; when it happens affects speed and
  tightness, never validity).  Clamping ``F`` to
  ``[0, 1]`` is a projection onto a set holding the truth, so it never
  increases the error.
* An absolute ``1e-280`` per operation covers terms flushed to zero (``exp``
  underflow, deviances out of range); it matters only for levels below
  ``~1e-270``.
* The enumeration path sums only positive terms, so ``R`` covers it
  relatively.

References
----------
Loader, C. (2000). Fast and accurate computation of binomial probabilities.
(The saddle-point form of the binomial pmf; R's ``dbinom``.)
Chernoff, H. (1952). A measure of asymptotic efficiency for tests of a
hypothesis based on the sum of observations. Ann. Math. Statist. 23(4).
Hoeffding, W. (1963). JASA 58(301) (the ``exp(-m KL)`` form of the bound).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional, Tuple

import numpy as np
from .lazyjit import njit

from . import aot
from ._validate import check_choice, check_counts
from .taylor import phi_inv_taylor

__all__ = [
    "STATISTICS",
    "DEFAULT_TAYLOR_ORDER",
    "tail_prob",
    "tail_prob_bounds",
    "cdf_bounds",
    "statistic_pmf",
    "observed_statistic",
    "threshold_table",
    "log_factorial_table",
    "plugin_table",
    "staircase_table",
    "compact_difference_table",
    "check_taylor_order",
    "check_n",
    "LOG_PRUNE_MASS",
]

STATISTICS = ("difference", "plugin", "studentized")
#: Default order ``M`` of ``Phi^{-1}_M`` for the plug-in statistic and the Taylor margin.
DEFAULT_TAYLOR_ORDER = 100
#: Mass threshold below which binomial tails are pruned (bounded and added back).
PRUNE_MASS = 1e-17
_LOGCUT = math.log(PRUNE_MASS)
#: ``log(PRUNE_MASS)``: the default pruning level (log scale) of the tail kernels.
LOG_PRUNE_MASS = _LOGCUT
_EPS = float(np.finfo(float).eps)
#: Relative tolerance under which two plug-in statistic values count as tied
#: (ties are put in the tail, the conservative side).
PLUGIN_TIE_RTOL = 1e-9


# ---------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------
@njit(cache=True)
def _lf_table(n):
    out = np.empty(n + 2)
    for i in range(n + 2):
        out[i] = math.lgamma(i + 1.0)
    return out


@lru_cache(maxsize=32)
def _lf_cached(n: int) -> np.ndarray:
    t = _lf_table_call(n)
    t.setflags(write=False)
    return t


def log_factorial_table(n: int) -> np.ndarray:
    """``log(k!)`` for ``k = 0..n+1`` (cached per ``n``)."""
    return _lf_cached(int(n))


@lru_cache(maxsize=32)
def _plugin_cached(n: int, M: int) -> np.ndarray:
    h = np.asarray(phi_inv_taylor(np.arange(n + 1) / n, M), dtype=float)
    h = np.maximum.accumulate(h)  # monotone by construction; guard against rounding
    h.setflags(write=False)
    return h


def plugin_table(n: int, taylor_order: Optional[int] = None) -> np.ndarray:
    """``Phi^{-1}_M(k/n)`` for ``k = 0..n`` (the plug-in statistic's building block)."""
    M = DEFAULT_TAYLOR_ORDER if taylor_order is None else _check_order(taylor_order)
    return _plugin_cached(int(n), int(M))


def check_taylor_order(M) -> int:
    """``taylor_order`` as a non-negative int (ValueError naming the value otherwise)."""
    return _check_order(M)


def _check_order(M) -> int:
    if isinstance(M, bool) or not isinstance(M, (int, np.integer)) or M < 0:
        raise ValueError(f"taylor_order must be a non-negative integer, got {M!r}")
    return int(M)


def observed_statistic(x1: int, x2: int, n: int, statistic: str = "difference",
                       taylor_order: Optional[int] = None) -> float:
    """Value of the statistic ``T`` at the outcome ``(x1, x2, n - x1 - x2)``."""
    check_choice(statistic, "statistic", STATISTICS)
    if statistic == "difference":
        return int(x1) - int(x2)
    if statistic == "studentized":
        return _stud_call(int(x1), int(x2))
    h = plugin_table(n, taylor_order)
    return float(h[int(x1)] - h[int(x2)])


@njit(cache=True)
def _stud(x1, x2):
    return (x1 - x2) / math.sqrt(x1 + x2 + 1.0)


@njit(cache=True)
def _kvec_stud(n, t_eff, strict):
    k = np.empty(n + 1, dtype=np.int64)
    for s in range(n + 1):
        lo = 0
        hi = s + 1
        while lo < hi:
            mid = (lo + hi) // 2
            v = _stud(mid, s - mid)
            ok = v > t_eff if strict else v >= t_eff
            if ok:
                hi = mid
            else:
                lo = mid + 1
        k[s] = lo
    return k


@njit(cache=True)
def _kvec_difference(n, t):
    k = np.empty(n + 1, dtype=np.int64)
    for s in range(n + 1):
        v = (s + t + 1) // 2  # ceil((s + t)/2) for integers
        if v < 0:
            v = 0
        if v > s + 1:
            v = s + 1
        k[s] = v
    return k


@njit(cache=True)
def _kvec_table(n, h, t_eff, strict):
    """k(s) = min{x1 in [0, s] : h[x1] - h[s - x1] >= t_eff} (> if strict); s + 1 if none."""
    k = np.empty(n + 1, dtype=np.int64)
    for s in range(n + 1):
        lo = 0
        hi = s + 1  # answer in [lo, hi]
        while lo < hi:
            mid = (lo + hi) // 2
            v = h[mid] - h[s - mid]
            ok = v > t_eff if strict else v >= t_eff
            if ok:
                hi = mid
            else:
                lo = mid + 1
        k[s] = lo
    return k


@njit(cache=True)
def _staircase(A, Bv, t_eff):
    k = np.empty(A.size, dtype=np.int64)
    # s = 0: the only outcome is (0, 0)
    k[0] = 0 if A[0] - Bv[0] >= t_eff else 1
    for s in range(A.size - 1):
        c = k[s]
        # k(s+1) is k(s) or k(s) + 1: test x1 = k(s), x2 = s + 1 - k(s)
        if c <= s + 1 and A[c] - Bv[s + 1 - c] >= t_eff:
            k[s + 1] = c
        else:
            k[s + 1] = c + 1
    return k


def staircase_table(A, Bv, t_eff) -> np.ndarray:
    """Threshold table of the pair statistic ``T(x1, x2) = A[x1] - Bv[x2]`` (theory §4.7).

    ``A`` and ``Bv`` are nondecreasing arrays of length ``n + 1`` (``-inf``
    allowed in ``A``, ``+inf`` in ``Bv``; never both ``+inf`` in ``A`` and
    ``Bv``), so ``T`` is nondecreasing in ``x1`` and nonincreasing in ``x2``.
    Returns ``k(s)``, ``s = 0..n``: the smallest ``x1 <= s`` with
    ``T(x1, s - x1) >= t_eff`` (``s + 1`` if none).  Monotonicity makes
    ``k(s + 1) - k(s)`` 0 or 1 (a staircase; module docstring), so one
    evaluation of ``T`` per ``s`` decides the step: a two-pointer sweep in
    ``O(n)``.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.arange(6.0); B = np.arange(6.0)      # T = x1 - x2
    >>> staircase_table(A, B, 1.0).tolist() == threshold_table(5, 1).tolist()
    True
    """
    A = np.ascontiguousarray(A, dtype=float)
    Bv = np.ascontiguousarray(Bv, dtype=float)
    if A.ndim != 1 or A.shape != Bv.shape or A.size < 1:
        raise ValueError(f"A and Bv must be 1-d arrays of the same length n + 1, got shapes {A.shape}, {Bv.shape}")
    t_eff = float(t_eff)
    if math.isnan(t_eff):
        raise ValueError(f"t_eff must not be NaN, got {t_eff!r}")
    return _staircase_call(A, Bv, t_eff)


def compact_difference_table(n: int, t) -> np.ndarray:
    """Threshold table of ``X1 - X2 >= t`` in O(1) memory, for :func:`tail_core` at any ``n``.

    ``[_COMPACT, ceil(t)]``: the kernels read ``k(s) = ceil((s + ceil(t))/2)`` clipped to ``[0, s + 1]``,
    the same values :func:`threshold_table` stores (it would need ``8 (n + 1)`` bytes).

    Examples
    --------
    >>> c = compact_difference_table(10, 3)
    >>> [int(_kv(c, s)) for s in range(11)] == threshold_table(10, 3).tolist()
    True
    """
    tf = float(t)
    if not math.isfinite(tf):
        raise ValueError(f"t must be finite, got {t!r}")
    thr = min(max(math.ceil(tf), -int(n) - 1), int(n) + 1)
    return np.array([_COMPACT, thr], dtype=np.int64)


def threshold_table(n: int, t, statistic: str = "difference", taylor_order: Optional[int] = None,
                    strict: bool = False) -> np.ndarray:
    """``k(s)`` for ``s = 0..n``: ``T(x1, s - x1) >= t`` iff ``x1 >= k(s)`` (``> t`` if ``strict``).

    For the plug-in and studentized statistics, values within ``PLUGIN_TIE_RTOL * (1 + |t|)``
    below ``t`` count as ties and are put in the tail (the conservative side
    for an upper bound of ``P(T >= t)``).
    """
    check_choice(statistic, "statistic", STATISTICS)
    n = int(n)
    if statistic == "difference":
        tf = float(t)
        if not math.isfinite(tf):
            raise ValueError(f"t must be finite, got {t!r}")
        thr = math.floor(tf) + 1 if strict else math.ceil(tf)
        thr = min(max(thr, -n - 1), n + 1)
        return _kvec_difference_call(n, int(thr))
    t = float(t)
    if not math.isfinite(t):
        raise ValueError(f"t must be finite, got {t!r}")
    t_eff = t - PLUGIN_TIE_RTOL * (1.0 + abs(t))
    if statistic == "studentized":
        return _kvec_stud_call(n, t_eff, bool(strict))
    h = plugin_table(n, taylor_order)
    return _kvec_table_call(n, h, t_eff, bool(strict))


# ---------------------------------------------------------------------------
# numba kernels
# ---------------------------------------------------------------------------
#: Stirling-series error ``stirlerr(k) = log k! - (k + 1/2) log k + k - log sqrt(2 pi)`` for k = 0..15
#: (Loader 2000, Table values of R's ``stirlerr``; checked against 50-digit mpmath in the tests).
_SFE = np.array([
    0.0,
    0.0810614667953272582196702, 0.0413406959554092940938221, 0.02767792568499833914878929,
    0.02079067210376509311152277, 0.01664469118982119216319487, 0.01387612882307074799874573,
    0.01189670994589177009505572, 0.010411265261972096497478567, 0.009255462182712732917728637,
    0.008330563433362871256469318, 0.007573675487951840794972024, 0.006942840107209529865664152,
    0.006408994188004207068439631, 0.005951370112758847735624416, 0.005554733551962801371038690])
_EPSK = 2.220446049250313e-16
#: Sentinel in ``kvec[0]`` of the compact threshold table of the difference statistic
#: (``kvec = [_COMPACT, t]``: ``k(s) = ceil((s + t)/2)`` clipped to ``[0, s + 1]``), so that
#: ``n = 1e8`` needs no O(n) table.
_COMPACT = -(2 ** 62)


@njit(cache=True, inline="always")
def _kv(kvec, s):
    if kvec[0] == _COMPACT:
        v = (s + kvec[1] + 1) // 2
        if v < 0:
            v = 0
        if v > s + 1:
            v = s + 1
        return v
    return kvec[s]


@njit(cache=True)
def _stirlerr(m):
    """Stirling-series error of ``log m!`` (Loader 2000): table for m <= 15, else the series
    ``1/12m - 1/360m^3 + 1/1260m^5 - 1/1680m^7 + 1/1188m^9`` truncated where the next term is
    below ``2e-16`` absolute (``|err| <= 2e-16 + 4 eps * value``)."""
    if m <= 15:
        return _SFE[int(m)]
    nn = m * m
    if m > 500:
        return (0.0833333333333333333333 - 0.00277777777777777777778 / nn) / m
    if m > 80:
        return (0.0833333333333333333333 - (0.00277777777777777777778 - 0.00079365079365079365079 / nn) / nn) / m
    if m > 35:
        return (0.0833333333333333333333 - (0.00277777777777777777778 - (0.00079365079365079365079
                - 0.000595238095238095238095 / nn) / nn) / nn) / m
    return (0.0833333333333333333333 - (0.00277777777777777777778 - (0.00079365079365079365079
            - (0.000595238095238095238095 - 0.0008417508417508417508 / nn) / nn) / nn) / nn) / m


@njit(cache=True, error_model="numpy")
def _bd0(x, np_):
    """Loader's deviance term ``x log(x/np) + np - x`` (>= 0) and a bound of its absolute rounding error.

    Series in ``v = (x - np)/(x + np)`` when ``|x - np| < 0.1 (x + np)`` (terms positive relative to
    the leading one, shrinking by ``v^2 <= 0.01``: relative error ``<= 40 eps``), else the direct form
    (errors of its terms: ``<= 6 eps (x |log(x/np)| + x + np)``).  The error of ``np`` itself (relative
    ``eps``) moves the value by ``<= 2 eps |x - np|``, added.
    """
    d = x - np_
    if abs(d) < 0.1 * (x + np_):
        v = d / (x + np_)
        s = d * v
        ej = 2.0 * x * v
        v2 = v * v
        for j in range(1, 1000):
            ej *= v2
            s1 = s + ej / (2 * j + 1)
            if s1 == s:
                break
            s = s1
        return s, 40.0 * _EPSK * abs(s) + 2.0 * _EPSK * abs(d) + 1e-300
    lg = math.log(x / np_)
    val = x * lg + np_ - x
    return val, 6.0 * _EPSK * (x * abs(lg) + x + np_) + 1e-300


@njit(cache=True, error_model="numpy")
def _lbin(m, j, p, q):
    """``log Bin(j; m, p)`` written ``log C(m, j) + j log p + (m - j) log q`` (``q`` passed, not
    ``1 - p``), by Loader's saddle-point form (Loader 2000), with a bound of its absolute error.

    ``log C + j log p + (m-j) log q - m (p + q - 1) = stirlerr(m) - stirlerr(j) - stirlerr(m-j)
    - bd0(j, mp) - bd0(m-j, mq) - (log 2 pi + log j + log(m-j) - log m)/2``; the ``m (p + q - 1)``
    discrepancy (``p + q = 1`` up to a few ulps) is in the caller's parameter margin.  No term grows
    with ``m`` except through the deviances, which are ``<= |log level| + log m`` wherever a term
    matters, so the error is a few hundred ulps *relative to the term*, at every ``n``.
    """
    if j < 0 or j > m:
        return -np.inf, 0.0
    if p <= 0.0:
        return (0.0, 0.0) if j == 0 else (-np.inf, 0.0)
    if q <= 0.0:
        return (0.0, 0.0) if j == m else (-np.inf, 0.0)
    if j == 0:
        v = m * math.log(q)
        return v, 3.0 * _EPSK * abs(v) + 1e-300
    if j == m:
        v = m * math.log(p)
        return v, 3.0 * _EPSK * abs(v) + 1e-300
    fm = float(m)
    fj = float(j)
    mp = fm * p
    mq = fm * q
    if mp < 1e-280 or mq < 1e-280:
        # the form would divide by ~0; the term is <= (mp)^j or (mq)^(m-j) <= 1e-280 there (the
        # callers' absolute underflow allowance, 1e-280 per operation, covers dropping it)
        return -np.inf, 0.0
    b1, e1 = _bd0(fj, mp)
    b2, e2 = _bd0(fm - fj, mq)
    s0 = _stirlerr(fm)
    s1 = _stirlerr(fj)
    s2 = _stirlerr(fm - fj)
    lf = 1.8378770664093454836 + math.log(fj) + math.log(fm - fj) - math.log(fm)
    v = s0 - s1 - s2 - b1 - b2 - 0.5 * lf
    mag = abs(s0) + abs(s1) + abs(s2) + b1 + b2 + 0.5 * (1.8378770664093454836 + abs(math.log(fj))
                                                     + abs(math.log(fm - fj)) + abs(math.log(fm)))
    # 8 additions (<= 8 eps of the magnitudes), 3 logs (1 ulp each), the series truncations (2e-16 each)
    err = e1 + e2 + 16.0 * _EPSK * mag + 1e-15
    return v, err


@njit(cache=True, error_model="numpy")
def _log_chernoff(m, k, p, q, upper):
    """log of the Chernoff bound of ``sum_{j >= k} C(m, j) p^j q^(m-j)`` (upper) or ``j <= k``; 0 if trivial.

    With ``p + q`` not exactly 1 the same exponent ``-m (x log(x/p) + (1-x) log((1-x)/q))`` bounds the
    unnormalised sum (it equals ``(p+q)^m exp(-m KL(x || p/(p+q)))``).  The rounding of the exponent is
    bounded by ``8 eps`` of its terms' magnitudes and added (upward).

    Its callers pass ``k`` and ``upper`` through variables typed ``int64`` and ``boolean`` (constants
    would compile one literal specialisation each, issue 15), and there is no eager signature: a
    process that runs the kernels compiled ahead of time (:mod:`confbounds.aot`) compiles nothing.
    """
    mp = m * p
    if upper:
        if k > m:
            return -np.inf
        if k <= mp:
            return 0.0
    else:
        if k < 0:
            return -np.inf
        if k >= mp:
            return 0.0
    x = k / m
    r = 0.0
    mag = 0.0
    if k > 0:
        a = k * math.log(x / p)
        r += a
        mag += abs(a)
    if m - k > 0:
        b = (m - k) * math.log((1.0 - x) / q)
        r += b
        mag += abs(b)
    return -r * (1.0 - 1e-10) + 8.0 * _EPSK * (mag + 1.0)


@njit(cache=True, error_model="numpy")
def _window(m, p, q, logcut):
    """Significant range [jlo, jhi] of Bin(m, p) and Chernoff bounds of the mass below/above it."""
    if p <= 0.0:
        return 0, 0, 0.0, 0.0
    if q <= 0.0:
        return m, m, 0.0, 0.0
    mp = m * p
    jlo = 0
    negl = 0.0
    up = q < 0.0  # False, typed boolean (not a literal)
    if _log_chernoff(m, m - m, p, q, up) <= logcut:
        lo = 0
        hi = int(math.floor(mp))
        while lo < hi:  # invariant: lo satisfies
            mid = (lo + hi + 1) // 2
            if _log_chernoff(m, mid, p, q, up) <= logcut:
                lo = mid
            else:
                hi = mid - 1
        jlo = lo + 1
        negl = math.exp(_log_chernoff(m, lo, p, q, up))
    jhi = m
    negu = 0.0
    up = not up
    if _log_chernoff(m, m, p, q, up) <= logcut:
        lo = int(math.ceil(mp))
        hi = m
        while lo < hi:  # smallest k with chernoff_ge(k) <= logcut; hi satisfies
            mid = (lo + hi) // 2
            if _log_chernoff(m, mid, p, q, up) <= logcut:
                hi = mid
            else:
                lo = mid + 1
        jhi = lo - 1
        negu = math.exp(_log_chernoff(m, lo, p, q, up))
    if jlo > jhi:  # cannot happen mathematically; keep everything
        return 0, m, 0.0, 0.0
    return jlo, jhi, negl, negu


@njit(cache=True, error_model="numpy")
def _sf_bounds(m, k, rho, rc, logcut):
    """(lower, upper, terms, emax) bounds of ``P(Bin(m, rho) >= k)`` (``rc``: ``1 - rho``, passed).

    ``emax``: the largest absolute log error of the anchors (:func:`_lbin`); the caller turns it into
    a relative margin.  Sum of positive terms: relative error.
    """
    if k <= 0:
        return 1.0, 1.0, 0, 0.0
    if k > m:
        return 0.0, 0.0, 0, 0.0
    if rc <= 0.0:
        return 1.0, 1.0, 0, 0.0
    if rho <= 0.0:
        return 0.0, 0.0, 0, 0.0
    jlo, jhi, negl, negu = _window(m, rho, rc, logcut)
    if k > jhi:
        return 0.0, min(1.0, math.exp(_log_chernoff(m, k, rho, rc, rc > 0.0))), 0, 0.0
    s = 0.0
    emax = 0.0
    j0 = k if k > jlo else jlo
    # P(Bin(m, rho) = j) by the ratio recurrence b(j) = b(j-1) (m-j+1)/j rho/(1-rho), re-anchored
    # every 32 steps and whenever the term is tiny; <= 5 roundings per step, so <= 160 eps relative
    ratio = rho / rc
    term = 0.0
    for j in range(j0, jhi + 1):
        if (j - j0) % 32 == 0 or term < 1e-250:
            lv, le = _lbin(m, j, rho, rc)
            term = math.exp(lv)
            if le > emax:
                emax = le
        else:
            term = term * (((m - j + 1) / j) * ratio)
        s += term
    hi = s + negu
    if k < jlo:
        hi += negl
    return min(s, 1.0), min(hi, 1.0), jhi - j0 + 1, emax


@njit(cache=True, error_model="numpy")
def _params(q1, q2):
    """``(pi, pc, rho, rc)``: ``pi = q1 + q2``, ``pc = q3 = 1 - q1 - q2`` (Sterbenz: the larger of
    ``q1, q2`` is subtracted from 1 first, so only the last subtraction rounds, relatively),
    ``rho = q1/pi``, ``rc = q2/pi`` (not ``1 - rho``).  Each of ``pi rho, pi rc, pc`` is within one
    rounding (relative ``eps/2``) of ``q1, q2, q3``, and ``pi + pc``, ``rho + rc`` are within a few
    ulps of 1: the parameter margin :func:`_par_margin` covers both."""
    if q1 < 0.0:
        q1 = 0.0
    if q2 < 0.0:
        q2 = 0.0
    pi = q1 + q2
    if pi >= 1.0:
        pi = 1.0
        pc = 0.0
    elif q1 >= q2:
        pc = (1.0 - q1) - q2
    else:
        pc = (1.0 - q2) - q1
    if pc < 0.0:
        pc = 0.0
    if pi <= 0.0:
        return 0.0, 1.0, 0.0, 0.0
    rho = q1 / pi
    rc = q2 / pi
    return pi, pc, rho, rc


@njit(cache=True, error_model="numpy")
def _par_margin(n):
    """Relative effect of computing with the rounded parameters of :func:`_params` instead of the
    exact ``q``: the tail is a posynomial of degree ``n`` in ``(q1, q2, q3)``, increasing in each, so
    relative perturbations ``<= eps/2`` of ``pi rho, pi rc, pc`` change it by a factor ``<= (1 + eps)^n``,
    and the Loader form's ``m (p + q - 1)`` discrepancies (``<= 2 eps`` per trial) add ``<= 2 n eps`` in
    log; ``expm1(4 n eps)`` covers both with a factor > 1 to spare."""
    return math.expm1(4.0 * n * _EPSK) + 4.0 * _EPSK


@njit(cache=True, error_model="numpy", inline="always")
def tail_core(n, q1, q2, kvec, logcut):
    """(lower, upper) bounds of P(X1 + X2 = s, X1 >= kvec[s] for that s), O(n) recurrence."""
    lo, hi, _, _ = _tail_core_parts(n, q1, q2, kvec, logcut)
    return lo, hi


@njit(cache=True, error_model="numpy")
def _tail_core_parts(n, q1, q2, kvec, logcut):
    """:func:`tail_core` plus ``(V, acc)``: the weighted magnitude its cancellation term acts on, and the
    plain sum ``sum_s w_s F_s`` (module docstring, "Safety")."""
    pi, pc, rho, rc = _params(q1, q2)
    if pi <= 0.0:
        v = 1.0 if _kv(kvec, 0) <= 0 else 0.0
        return v, v, 0.0, v
    s_lo, s_hi, ngl, ngu = _window(n, pi, pc, logcut)
    k = _kv(kvec, s_lo)
    Fl, Fh, nops, emax = _sf_bounds(s_lo, k, rho, rc, logcut)
    F0 = Fh
    acc_l = 0.0
    acc_h = 0.0
    w = 0.0
    wratio = 0.0
    if pc > 0.0:
        wratio = pi / pc
    carry = -1.0
    chain = 0
    U = 0.0
    Fbase = F0  # magnitude of F's last anchor (F0, a direct re-evaluation, or an exact 0 / 1)
    # below this magnitude the cancellation error (~1e-12 of it, weighted by w_s <= 1) is far below the
    # pruning scale exp(logcut): re-anchoring there would cost time for nothing
    mag_floor = 1e3 * math.exp(logcut)
    nre = 0
    V = 0.0  # sum_{s > s_lo} w_s (U_s + Fbase_s)
    for s in range(s_lo, s_hi + 1):
        if s > s_lo:
            j = k - 1
            bb = -1.0
            if j >= 0 and j <= s - 1:
                if carry >= 1e-250 and chain < 32:
                    bb = carry  # P(Bin(s-1, rho) = k-1)
                    chain += 1
                else:
                    lv, le = _lbin(s - 1, j, rho, rc)
                    bb = math.exp(lv)
                    if le > emax:
                        emax = le
                    chain = 0
                b = rho * bb
                Fh += b
                Fl += b
                U += b
            carry = -1.0
            kt = _kv(kvec, s)
            k0 = k
            first = True
            while k < kt:
                if k >= 0 and k <= s:
                    if first and bb >= 0.0 and k >= 1:
                        b = bb * rho * s / k  # P(Bin(s, rho) = k) = P(Bin(s-1, rho) = k-1) rho s / k
                        if k == k0 and kt == k0 + 1:
                            carry = b  # = P(Bin(s, rho) = kt - 1), next step's bb
                    else:
                        lv, le = _lbin(s, k, rho, rc)
                        b = math.exp(lv)
                        if le > emax:
                            emax = le
                    Fh -= b
                    Fl -= b
                    U += b
                first = False
                k += 1
                nops += 1
            while k > kt:
                k -= 1
                if k >= 0 and k <= s:
                    lv, le = _lbin(s, k, rho, rc)
                    b = math.exp(lv)
                    if le > emax:
                        emax = le
                    Fh += b
                    Fl += b
                    U += b
                nops += 1
            if k == k0 and bb >= 0.0 and s - j >= 1:
                carry = bb * rc * s / (s - j)
            if carry < 0.0:
                chain = 32
            nops += 1
            if Fh > 1.0:
                Fh = 1.0
            if Fh < 0.0:
                Fh = 0.0
            if Fl > 1.0:
                Fl = 1.0
            if Fl < 0.0:
                Fl = 0.0
            # re-anchor F where its value is known exactly or the cancellations have piled up:
            # k(s) > s: no x1 at s is in the tail, F_s = 0; k(s) <= 0: F_s = 1; otherwise, once the
            # magnitude behind F's error exceeds 1024 F, evaluate F_s directly as a sum of positive
            # terms (relative error; at most REANCHOR_MAX times per tail: validity does not depend on
            # when it happens, the error terms follow whatever was done)
            if kt > s:
                Fh = 0.0
                Fl = 0.0
                U = 0.0
                Fbase = 0.0
            elif kt <= 0:
                Fh = 1.0
                Fl = 1.0
                U = 0.0
                Fbase = 0.0
            elif U + Fbase > 1024.0 * Fh and U + Fbase > mag_floor and nre < 256:
                Fl, Fh, m2, e2 = _sf_bounds(s, kt, rho, rc, logcut)
                if e2 > emax:
                    emax = e2
                nops += m2
                nre += 1
                U = 0.0
                Fbase = Fh
        if (s - s_lo) % 32 == 0 or w < 1e-250:
            lv, le = _lbin(n, s, pi, pc)
            w = math.exp(lv)
            if le > emax:
                emax = le
        else:
            w = w * (n - s + 1) / s * wratio
        acc_h += w * Fh
        if s > s_lo:
            V += w * (U + Fbase)
        acc_l += w * Fl
    ns = s_hi - s_lo + 1
    # relative: exp of an anchor (log error emax, plus 1 ulp of exp), ratio chains between anchors
    # (<= 32 x 5 roundings: 160 eps, in the weights and in F0's terms), the parameters (_par_margin),
    # the products w F and the sum of ns positive terms (ns + 4 eps)
    R_log = math.expm1(emax) + 2.0 * _EPSK
    R = R_log + 768.0 * _EPSK + _par_margin(n) + (ns + nops + 8.0) * _EPSK
    # cancellation in the running conditional tail F_s: every term of F carries a relative error
    # <= R_log + 165 eps (anchor + carried chain) and every addition to F rounds by <= eps |partial|
    # <= eps (U_s + F0); so |F~_s - F_s| <= (R_log + 512 eps + nops eps)(U_s + F0), and the weighted
    # sum of these is (R_log + 512 eps + nops eps) V, with V's own rounding (<= ns + 4 eps) on top.
    A_F = (R_log + 512.0 * _EPSK + nops * _EPSK) * V * (1.0 + (ns + 8.0) * _EPSK)
    # absolute underflow allowance: terms below ~1e-280 are dropped or flushed to zero
    A0 = 1e-280 * (ns + nops + 10.0)
    hi = ((acc_h + ngl + ngu) * (1.0 + R) + A_F) * (1.0 + 4.0 * _EPSK) + A0
    lo = (acc_l * (1.0 - R) - A_F) * (1.0 - 4.0 * _EPSK)
    if lo < 0.0:
        lo = 0.0
    if hi > 1.0:
        hi = 1.0
    return lo, hi, V, acc_h


@njit(cache=True, error_model="numpy")
def _tail_enum(n, q1, q2, kvec, logcut):
    """Same bounds by enumerating the outcomes (x1, s - x1) of each significant s: O(n^2)."""
    pi, pc, rho, rc = _params(q1, q2)
    if pi <= 0.0:
        v = 1.0 if _kv(kvec, 0) <= 0 else 0.0
        return v, v
    s_lo, s_hi, ngl, ngu = _window(n, pi, pc, logcut)
    acc_l = 0.0
    acc_h = 0.0
    nops = 0
    emax = 0.0
    for s in range(s_lo, s_hi + 1):
        fl, fh, m, e1 = _sf_bounds(s, _kv(kvec, s), rho, rc, logcut)
        nops += m + 2
        lv, le = _lbin(n, s, pi, pc)
        w = math.exp(lv)
        emax = max(emax, e1, le)
        acc_h += w * fh
        acc_l += w * fl
    R = math.expm1(emax) + 770.0 * _EPSK + _par_margin(n) + (nops + 8.0) * _EPSK
    hi = (acc_h + ngl + ngu) * (1.0 + R) * (1.0 + 4.0 * _EPSK) + 1e-280 * (nops + 10.0)
    lo = acc_l * (1.0 - R) * (1.0 - 4.0 * _EPSK)
    return max(lo, 0.0), min(hi, 1.0)


@njit(cache=True)
def _all_outcomes_pmf(n, q1, q2, LF):
    """Exact enumeration of all (n+1)(n+2)/2 outcomes: (x1, x2, probability)."""
    size = (n + 1) * (n + 2) // 2
    x1s = np.empty(size, dtype=np.int64)
    x2s = np.empty(size, dtype=np.int64)
    pr = np.empty(size)
    q3 = 1.0 - q1 - q2
    if q3 < 0.0:
        q3 = 0.0
    l1 = math.log(q1) if q1 > 0 else -np.inf
    l2 = math.log(q2) if q2 > 0 else -np.inf
    l3 = math.log(q3) if q3 > 0 else -np.inf
    i = 0
    for a in range(n + 1):
        for b in range(n + 1 - a):
            c = n - a - b
            r = LF[n] - LF[a] - LF[b] - LF[c]
            if a > 0:
                r += a * l1
            if b > 0:
                r += b * l2
            if c > 0:
                r += c * l3
            x1s[i] = a
            x2s[i] = b
            pr[i] = math.exp(r)
            i += 1
    return x1s, x2s, pr


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------
def _check_q(q) -> Tuple[float, float]:
    arr = np.asarray(q, dtype=float).ravel()
    if arr.size not in (2, 3) or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"q must hold non-negative probabilities (q1, q2[, q3]), got {q!r}")
    total = arr.sum()
    if arr.size == 3 and abs(total - 1.0) > 1e-12:
        raise ValueError(f"q must sum to 1, got {q!r} (sum {total!r})")
    if arr.size == 2 and total > 1.0 + 1e-12:
        raise ValueError(f"q1 + q2 must be <= 1, got {q!r}")
    q1, q2 = float(arr[0]), float(arr[1])
    if q1 + q2 > 1.0:
        q2 = max(0.0, 1.0 - q1)
    return q1, q2


def check_n(n) -> int:
    """A scalar count ``n >= 0`` (ValueError naming the value otherwise)."""
    return _check_n(n)


def _check_n(n) -> int:
    _, n_arr = check_counts(0, n)
    if n_arr.ndim:
        raise ValueError(f"n must be a scalar count, got {n!r}")
    return int(n_arr)


def tail_prob_bounds(q, n: int, t, statistic: str = "difference", taylor_order: Optional[int] = None,
                     method: str = "recurrence") -> Tuple[float, float]:
    """Certified ``(lower, upper)`` bounds of ``P_q(T >= t)``, the observed value included.

    Parameters
    ----------
    q : sequence of 3 (or 2) probabilities ``(q1, q2[, q3])``.
    n : int, number of trials.
    t : float, threshold (``T(x_obs)`` when used as a p-value).
    statistic : {"difference", "plugin", "studentized"}
    taylor_order : int, optional, order ``M`` of the plug-in statistic.
    method : {"recurrence", "enumerate"}
        ``"recurrence"`` is the ``O(n)`` conditional-binomial form (theory §4.4),
        ``"enumerate"`` sums outcome by outcome (``O(n^2)``); both prune with a
        Chernoff bound on the neglected mass and add it to the upper bound.

    Examples
    --------
    >>> lo, hi = tail_prob_bounds((0.5, 0.2, 0.3), 30, 5)
    >>> 0 <= hi - lo < 1e-10
    True
    """
    check_choice(method, "method", ("recurrence", "enumerate"))
    n = _check_n(n)
    q1, q2 = _check_q(q)
    kvec = threshold_table(n, t, statistic, taylor_order)
    fn = tail_core_call if method == "recurrence" else _tail_enum_call
    lo, hi = fn(n, q1, q2, kvec, _LOGCUT)
    return float(lo), float(hi)


def tail_prob(q, n: int, t, statistic: str = "difference", taylor_order: Optional[int] = None) -> float:
    """Upper bound (safe-rounded, theory §2.4) of ``P_q(T >= t)``, the observed value included.

    ``T`` is ``X1 - X2`` (``statistic="difference"``),
    ``Phi^{-1}_M(X1/n) - Phi^{-1}_M(X2/n)`` (``"plugin"``) or
    ``(X1 - X2)/sqrt(X1 + X2 + 1)`` (``"studentized"``), with
    ``X ~ Mult(n; q)``.  Computed in ``O(n)`` by the conditional-binomial
    recurrence of theory §4.4; see the module docstring for the safety margins.

    Examples
    --------
    With ``q3 = 0``, ``X1 - X2 = 2 X1 - n``, a binomial tail:

    >>> from scipy import stats
    >>> p = tail_prob((0.6, 0.4, 0.0), 10, 2)          # P(X1 >= 6)
    >>> bool(abs(p - stats.binom.sf(5, 10, 0.6)) < 1e-12)
    True
    """
    return tail_prob_bounds(q, n, t, statistic, taylor_order)[1]


def cdf_bounds(q, n: int, t, statistic: str = "difference",
               taylor_order: Optional[int] = None) -> Tuple[float, float]:
    """Certified ``(lower, upper)`` bounds of ``P_q(T <= t) = 1 - P_q(T > t)``."""
    n = _check_n(n)
    q1, q2 = _check_q(q)
    kvec = threshold_table(n, t, statistic, taylor_order, strict=True)
    lo, hi = tail_core_call(n, q1, q2, kvec, _LOGCUT)
    return float(max(0.0, 1.0 - hi)), float(min(1.0, 1.0 - lo))


def statistic_pmf(q, n: int, statistic: str = "difference",
                  taylor_order: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Distribution of ``T`` by enumerating every outcome (no pruning; meant for n up to ~2000).

    Returns
    -------
    values, probs : ndarrays
        Sorted distinct values of ``T`` and their probabilities.

    Examples
    --------
    >>> v, p = statistic_pmf((0.5, 0.25, 0.25), 1)
    >>> v.tolist(), p.tolist()
    ([-1, 0, 1], [0.25, 0.25, 0.5])
    """
    n = _check_n(n)
    check_choice(statistic, "statistic", STATISTICS)
    q1, q2 = _check_q(q)
    x1, x2, pr = _all_outcomes_pmf_call(n, q1, q2, log_factorial_table(n))
    if statistic == "difference":
        tv = x1 - x2
    elif statistic == "studentized":
        tv = (x1 - x2) / np.sqrt(x1 + x2 + 1.0)
    else:
        h = plugin_table(n, taylor_order)
        tv = h[x1] - h[x2]
    vals, inv = np.unique(tv, return_inverse=True)
    probs = np.bincount(inv.ravel(), weights=pr, minlength=vals.size)
    return vals, probs


# Python callers use the kernels compiled ahead of time when they are built (confbounds.aot)
(tail_core_call, _tail_enum_call, _staircase_call, _kvec_difference_call, _kvec_stud_call, _kvec_table_call,
 _lf_table_call, _stud_call, _all_outcomes_pmf_call) = aot.bind(
    tail_core, _tail_enum, _staircase, _kvec_difference, _kvec_stud, _kvec_table, _lf_table, _stud,
    _all_outcomes_pmf)
