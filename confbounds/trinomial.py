"""Distribution and upper tail of a statistic of a trinomial count vector.

``X = (X1, X2, X3) ~ Mult(n; q1, q2, q3)`` (SPEC section 4).  Two test
statistics are offered (SPEC 4.1):

* ``"difference"``: ``T(X) = X1 - X2`` (integer valued);
* ``"plugin"``: ``T(X) = Phi^{-1}_M(X1/n) - Phi^{-1}_M(X2/n)``, the report's
  plug-in of the Taylor probit margin (``M = taylor_order``, SPEC 6);
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

    P(T >= t) = sum_s Bin(s; n, pi) * P(Bin(s, rho) >= k(s))      (SPEC 4.4)

which for ``T = X1 - X2`` is ``k(s) = ceil((s + t)/2)``.  The conditional
tails obey the exact recurrences ``P(Bin(s+1, r) >= k) = P(Bin(s, r) >= k) +
r P(Bin(s, r) = k-1)`` and ``P(Bin(s, r) >= k+1) = P(Bin(s, r) >= k) -
P(Bin(s, r) = k)`` (Pascal's rule), so the whole tail costs ``O(n)`` table
look-ups; :func:`tail_prob_bounds` with ``method="enumerate"`` instead sums
the multinomial weights of the outcomes one by one (``O(n^2)``).

Safety (SPEC 2.4 and 4.4)
-------------------------
* Weights are computed in log space from a table of ``log k!`` with the
  multinomial coefficient ``n!/(x1! x2! x3!)`` (SPEC 8.3).
* Only the significant range of each binomial is summed.  The neglected mass
  is bounded by the Chernoff bound ``P(Bin(m, p) >= k) <= exp(-m KL(k/m || p))``
  (``k >= mp``; likewise for the lower tail) and **added** to the upper bound.
* Floating-point error: the result is multiplied by ``1 + R`` and ``A`` is
  added, with ``R = 64 eps B + 768 eps`` (``B`` bounds the magnitude of every log term
  summed, so ``R`` dominates the error of ``exp`` of a sum of a few rounded
  log terms; ``768 eps`` covers the binomial weights obtained by the ratio
  recurrence ``Bin(s+1; n, pi) = Bin(s; n, pi) (n-s)/(s+1) pi/(1-pi)`` and the
  conditional-binomial terms ``b(j) = b(j-1) (s-j+1)/j rho/(1-rho)`` of the
  starting tail, both re-anchored on the log table every 32 steps: at most
  ``32 x 5`` roundings each, and the point probabilities ``P(Bin(s, rho) = k)``
  carried from ``s`` to ``s + 1`` by Pascal ratios in the main loop) and
  ``A = 16 eps (number of additions) + 8 n eps + 512 eps U`` (``U``: sum of the
  point probabilities added to or subtracted from the running conditional tail;
  the third term bounds the carried chains' rounding absolutely, since the running
  tail has cancellations; the second term covers the perturbation of ``q`` by a few ulps when forming
  ``pi, rho``: the total-variation distance of two ``n``-fold products is at
  most ``n`` times that of the factors).  The lower bound subtracts the same.
* Cancellations in the running conditional tail (recurrence path, absolute
  term ``A_F``).  ``F_s = F_0 + sum of signed point probabilities b`` (Pascal's
  rule above), and ``F_s`` can be much smaller than ``F_0`` or than the terms,
  so the relative margin ``R`` on the result does not cover the errors of the
  terms: each computed term is ``b (1 + d)`` with ``|d| <= R_log = R - 768 eps
  = 64 eps (B + 1)`` (the ``exp`` of a log-table sum, as above; a carried term
  inherits this from its anchor, its chain's ``<= 165 eps`` being in
  ``512 eps U``), and the starting tail ``F_0`` (a sum of positive terms) is off by
  at most ``(R_log + 160 eps) F_0`` (its ratio chains, ``<= 160 eps``).  Hence
  ``|F~_s - F_s| <= E_F = R_log (U + F_0) + 512 eps (U + F_0)`` for every
  ``s`` (clamping to ``[0, 1]`` is a projection onto a set holding ``F_s``,
  so it never increases the error).  Only the terms met up to ``s`` enter
  ``F_s``, so with ``U_s`` their magnitude sum the error is ``<= E_F(s) =
  (R_log + 512 eps)(U_s + F_0)``, and ``sum_s w~_s F~_s`` (``w~_s`` the
  computed weights, whose own error ``R`` covers relatively) is off by at most
  ``sum_s w~_s E_F(s)``.  This weighting matters: in the far tail ``U_s`` grows
  where ``w_s`` is already small.  At the first summed ``s = s_lo``,
  ``F = F_0`` has only its relative error, already in ``R``, so the sums start
  at ``s_lo + 1``.  With the ``512 eps U`` already in ``A``, the recurrence adds
  ``A_F = (R_log V + 512 eps F_0 W) (1 + 2 (n + 4) eps)``, ``V = sum_{s > s_lo}
  w~_s (U_s + F_0)`` and ``W = sum_{s > s_lo} w~_s`` accumulated in the loop
  (the last factor: rounding of ``V`` and ``W``, at most ``n + 2`` positive
  terms each, and of ``A_F``; ``F_0``: the starting tail's upper bound).  The
  enumeration path sums only positive terms, so ``R`` covers it relatively.

References
----------
Chernoff, H. (1952). A measure of asymptotic efficiency for tests of a
hypothesis based on the sum of observations. Ann. Math. Statist. 23(4).
Hoeffding, W. (1963). JASA 58(301) (the ``exp(-m KL)`` form of the bound).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional, Tuple

import numpy as np
from numba import njit

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
]

STATISTICS = ("difference", "plugin", "studentized")
#: Default order ``M`` of ``Phi^{-1}_M`` for the plug-in statistic and the Taylor margin.
DEFAULT_TAYLOR_ORDER = 100
#: Mass threshold below which binomial tails are pruned (bounded and added back).
PRUNE_MASS = 1e-17
_LOGCUT = math.log(PRUNE_MASS)
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
    t = _lf_table(n)
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
        return _stud(int(x1), int(x2))
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
    return _staircase(A, Bv, t_eff)


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
        return _kvec_difference(n, int(thr))
    t = float(t)
    if not math.isfinite(t):
        raise ValueError(f"t must be finite, got {t!r}")
    t_eff = t - PLUGIN_TIE_RTOL * (1.0 + abs(t))
    if statistic == "studentized":
        return _kvec_stud(n, t_eff, bool(strict))
    h = plugin_table(n, taylor_order)
    return _kvec_table(n, h, t_eff, bool(strict))


# ---------------------------------------------------------------------------
# numba kernels
# ---------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _lbin(m, j, lp, lq, LF):
    r = LF[m] - LF[j] - LF[m - j]
    if j > 0:
        r += j * lp
    if m - j > 0:
        r += (m - j) * lq
    return r


@njit(cache=True, error_model="numpy")
def _log_chernoff(m, k, p, upper):
    """log of the Chernoff bound of P(Bin(m,p) >= k) (upper) or P(Bin(m,p) <= k); 0 if trivial."""
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
    if k > 0:
        r += k * math.log(x / p)
    if m - k > 0:
        r += (m - k) * math.log((1.0 - x) / (1.0 - p))
    # r >= 0 mathematically; a relative slack of 1e-10 moves the bound up.
    return -r * (1.0 - 1e-10)


@njit(cache=True, error_model="numpy")
def _window(m, p, logcut):
    """Significant range [jlo, jhi] of Bin(m, p) and Chernoff bounds of the mass below/above it."""
    if p <= 0.0:
        return 0, 0, 0.0, 0.0
    if p >= 1.0:
        return m, m, 0.0, 0.0
    mp = m * p
    # lower edge: largest k <= floor(mp) with chernoff_le(k) <= logcut
    jlo = 0
    negl = 0.0
    if _log_chernoff(m, 0, p, False) <= logcut:
        lo = 0
        hi = int(math.floor(mp))
        while lo < hi:  # invariant: lo satisfies
            mid = (lo + hi + 1) // 2
            if _log_chernoff(m, mid, p, False) <= logcut:
                lo = mid
            else:
                hi = mid - 1
        jlo = lo + 1
        negl = math.exp(_log_chernoff(m, lo, p, False))
    jhi = m
    negu = 0.0
    if _log_chernoff(m, m, p, True) <= logcut:
        lo = int(math.ceil(mp))
        hi = m
        while lo < hi:  # smallest k with chernoff_ge(k) <= logcut; hi satisfies
            mid = (lo + hi) // 2
            if _log_chernoff(m, mid, p, True) <= logcut:
                hi = mid
            else:
                lo = mid + 1
        jhi = lo - 1
        negu = math.exp(_log_chernoff(m, lo, p, True))
    if jlo > jhi:  # cannot happen mathematically; keep everything
        return 0, m, 0.0, 0.0
    return jlo, jhi, negl, negu


@njit(cache=True, error_model="numpy")
def _sf_bounds(m, k, rho, lr, lrc, LF, logcut):
    """(lower, upper, terms) bounds of P(Bin(m, rho) >= k)."""
    if k <= 0:
        return 1.0, 1.0, 0
    if k > m:
        return 0.0, 0.0, 0
    if rho >= 1.0:
        return 1.0, 1.0, 0
    if rho <= 0.0:
        return 0.0, 0.0, 0
    jlo, jhi, negl, negu = _window(m, rho, logcut)
    if k > jhi:
        return 0.0, min(1.0, math.exp(_log_chernoff(m, k, rho, True))), 0
    s = 0.0
    j0 = k if k > jlo else jlo
    # P(Bin(m, rho) = j) by the ratio recurrence b(j) = b(j-1) (m-j+1)/j rho/(1-rho), re-anchored
    # on the log table every 32 steps and whenever the term is tiny (no subnormal drift); <= 5
    # roundings per step (2 in the ratio), so <= 160 eps relative: covered by _rel_margin.
    ratio = rho / (1.0 - rho)
    term = 0.0
    for j in range(j0, jhi + 1):
        if (j - j0) % 32 == 0 or term < 1e-250:
            term = math.exp(_lbin(m, j, lr, lrc, LF))
        else:
            term = term * (((m - j + 1) / j) * ratio)
        s += term
    hi = s + negu
    if k < jlo:
        hi += negl
    return min(s, 1.0), min(hi, 1.0), jhi - j0 + 1


@njit(cache=True, error_model="numpy")
def _logs(q1, q2):
    pi = q1 + q2
    if pi > 1.0:
        pi = 1.0
    if pi <= 0.0:
        return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    rho = q1 / pi
    if rho > 1.0:
        rho = 1.0
    lpi = math.log(pi)
    lpc = -np.inf if pi >= 1.0 else math.log1p(-pi)
    lr = -np.inf if rho <= 0.0 else math.log(rho)
    lrc = -np.inf if rho >= 1.0 else math.log1p(-rho)
    return pi, rho, lpi, lpc, lr, lrc


@njit(cache=True, error_model="numpy")
def _rel_margin(n, lpi, lpc, lr, lrc, LF):
    b = 3.0 * LF[n]
    for v in (lpi, lpc, lr, lrc):
        if np.isfinite(v):
            b += n * abs(v)
    # + 768 eps: ratio recurrences of at most 32 steps between re-anchorings, in the weights
    # Bin(s; n, pi) (4 roundings a step, 128 eps), in the conditional tails P(Bin(s, rho) = j)
    # summed by _sf_bounds (5 roundings a step, 160 eps) and in the point probabilities carried
    # from s to s + 1 in tail_core (33 steps of <= 5 roundings, 165 eps); relative errors of a
    # product add up.
    return 64.0 * 2.220446049250313e-16 * (b + 1.0) + 768.0 * 2.220446049250313e-16


@njit(cache=True, error_model="numpy")
def tail_core(n, q1, q2, kvec, LF, logcut):
    """(lower, upper) bounds of P(X1 + X2 = s, X1 >= kvec[s] for that s), O(n) recurrence."""
    lo, hi, _, _ = _tail_core_parts(n, q1, q2, kvec, LF, logcut)
    return lo, hi


@njit(cache=True, error_model="numpy")
def _tail_core_parts(n, q1, q2, kvec, LF, logcut):
    """:func:`tail_core` plus ``(V, F0 W)``, the magnitudes its cancellation term ``A_F`` acts on.

    ``V = sum_{s > s_lo} w_s (U_s + F_0)`` and ``W = sum_{s > s_lo} w_s`` (``w_s``: the
    computed weights ``Bin(s; n, pi)``, ``U_s``: the running sum of the magnitudes of the
    terms of ``F`` up to ``s``, ``F_0``: the upper bound of the starting conditional tail at
    ``s_lo``, the lower end of the summed range of ``S``; module docstring).
    """
    eps = 2.220446049250313e-16
    pi, rho, lpi, lpc, lr, lrc = _logs(q1, q2)
    if pi <= 0.0:
        v = 1.0 if kvec[0] <= 0 else 0.0
        return v, v, 0.0, 0.0
    s_lo, s_hi, ngl, ngu = _window(n, pi, logcut)
    k = kvec[s_lo]
    Fl, Fh, nops = _sf_bounds(s_lo, k, rho, lr, lrc, LF, logcut)
    F0 = Fh  # magnitude of the starting conditional tail (its error is absolute, see A)
    acc_l = 0.0
    acc_h = 0.0
    w = 0.0
    wratio = 0.0
    if pi < 1.0:
        wratio = pi / (1.0 - pi)
    # carry = P(Bin(s-1, rho) = k-1) for the next step, obtained from this step's terms by
    # Pascal-type ratios (<= 4 roundings each), re-anchored on the log table every 32 steps
    # and whenever tiny; negative = unknown.  U sums |every term added to / subtracted from
    # F| for the absolute error bound (the terms' relative errors act on U, not on F).
    carry = -1.0
    chain = 0
    U = 0.0
    V = 0.0  # sum_{s > s_lo} w_s (U_s + F0), the weighted magnitude behind A_F
    W = 0.0  # sum_{s > s_lo} w_s
    rc = 1.0 - rho
    for s in range(s_lo, s_hi + 1):
        if s > s_lo:
            j = k - 1
            bb = -1.0
            if j >= 0 and j <= s - 1:
                if carry >= 1e-250 and chain < 32:
                    bb = carry  # P(Bin(s-1, rho) = k-1)
                    chain += 1
                else:
                    bb = math.exp(_lbin(s - 1, j, lr, lrc, LF))
                    chain = 0
                b = rho * bb
                Fh += b
                Fl += b
                U += b
            carry = -1.0
            kt = kvec[s]
            k0 = k
            first = True
            while k < kt:
                if k >= 0 and k <= s:
                    if first and bb >= 0.0 and k >= 1:
                        b = bb * rho * s / k  # P(Bin(s, rho) = k) = P(Bin(s-1, rho) = k-1) rho s / k
                        if k == k0 and kt == k0 + 1:
                            carry = b  # = P(Bin(s, rho) = kt - 1), next step's bb
                    else:
                        b = math.exp(_lbin(s, k, lr, lrc, LF))
                    Fh -= b
                    Fl -= b
                    U += b
                first = False
                k += 1
                nops += 1
            while k > kt:
                k -= 1
                if k >= 0 and k <= s:
                    b = math.exp(_lbin(s, k, lr, lrc, LF))
                    Fh += b
                    Fl += b
                    U += b
                nops += 1
            if k == k0 and bb >= 0.0 and s - j >= 1:
                # P(Bin(s, rho) = j) = P(Bin(s-1, rho) = j) (1 - rho) s / (s - j), j = k - 1
                carry = bb * rc * s / (s - j)
            if carry < 0.0:
                chain = 32  # force re-anchoring
            nops += 1
            # clamp to [0, 1]: keeps Fh >= truth and Fl <= truth
            if Fh > 1.0:
                Fh = 1.0
            if Fh < 0.0:
                Fh = 0.0
            if Fl > 1.0:
                Fl = 1.0
            if Fl < 0.0:
                Fl = 0.0
        # Bin(s; n, pi) by the ratio recurrence, re-anchored on the log table every 32 steps
        if (s - s_lo) % 32 == 0:
            w = math.exp(_lbin(n, s, lpi, lpc, LF))
        else:
            w = w * (n - s + 1) / s * wratio
        acc_h += w * Fh
        if s > s_lo:  # at s_lo, F = F0: its error is relative, covered by R
            V += w * (U + F0)
            W += w
        acc_l += w * Fl
    nops += 2 * (s_hi - s_lo + 1)
    R = _rel_margin(n, lpi, lpc, lr, lrc, LF)
    # absolute: additions, the perturbation of q, and the relative error of the carried ratio
    # chains (<= 165 eps, doubled) acting on U, since F is a running sum with cancellations
    A = 16.0 * eps * (nops + 10) + 8.0 * n * eps + 512.0 * eps * U
    # absolute (A_F): the exp-of-log-table error (<= R_log = R - 768 eps relative) of every term
    # of F -- the exp-based terms, the anchors of the carried chains, and the starting tail F0
    # (whose own ratio chains, <= 160 eps, take the 512 eps F0) -- acts on U_s + F0, not on F_s
    # (cancellations); sum_{s > s_lo} w_s |F~_s - F_s| <= R_log V + 512 eps F0 W; the last
    # factor covers the rounding of V, W (<= n + 2 positive terms each) and of this line.
    A += ((R - 768.0 * eps) * V + 512.0 * eps * F0 * W) * (1.0 + 2.0 * (n + 4) * eps)
    hi = (acc_h + ngl + ngu) * (1.0 + R) + A
    lo = acc_l * (1.0 - R) - A
    if lo < 0.0:
        lo = 0.0
    if hi > 1.0:
        hi = 1.0
    return lo, hi, V, F0 * W


@njit(cache=True, error_model="numpy")
def _tail_enum(n, q1, q2, kvec, LF, logcut):
    """Same bounds by enumerating the outcomes (x1, s - x1) of each significant s: O(n^2)."""
    eps = 2.220446049250313e-16
    pi, rho, lpi, lpc, lr, lrc = _logs(q1, q2)
    if pi <= 0.0:
        v = 1.0 if kvec[0] <= 0 else 0.0
        return v, v
    s_lo, s_hi, ngl, ngu = _window(n, pi, logcut)
    acc_l = 0.0
    acc_h = 0.0
    nops = 0
    for s in range(s_lo, s_hi + 1):
        fl, fh, m = _sf_bounds(s, kvec[s], rho, lr, lrc, LF, logcut)
        nops += m + 2
        w = math.exp(_lbin(n, s, lpi, lpc, LF))
        acc_h += w * fh
        acc_l += w * fl
    R = _rel_margin(n, lpi, lpc, lr, lrc, LF)
    A = 16.0 * eps * (nops + 10) + 8.0 * n * eps
    hi = (acc_h + ngl + ngu) * (1.0 + R) + A
    lo = acc_l * (1.0 - R) - A
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
        ``"recurrence"`` is the ``O(n)`` conditional-binomial form (SPEC 4.4),
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
    LF = log_factorial_table(n)
    fn = tail_core if method == "recurrence" else _tail_enum
    lo, hi = fn(n, q1, q2, kvec, LF, _LOGCUT)
    return float(lo), float(hi)


def tail_prob(q, n: int, t, statistic: str = "difference", taylor_order: Optional[int] = None) -> float:
    """Upper bound (safe-rounded, SPEC 2.4) of ``P_q(T >= t)``, the observed value included.

    ``T`` is ``X1 - X2`` (``statistic="difference"``),
    ``Phi^{-1}_M(X1/n) - Phi^{-1}_M(X2/n)`` (``"plugin"``) or
    ``(X1 - X2)/sqrt(X1 + X2 + 1)`` (``"studentized"``), with
    ``X ~ Mult(n; q)``.  Computed in ``O(n)`` by the conditional-binomial
    recurrence of SPEC 4.4; see the module docstring for the safety margins.

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
    lo, hi = tail_core(n, q1, q2, kvec, log_factorial_table(n), _LOGCUT)
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
    x1, x2, pr = _all_outcomes_pmf(n, q1, q2, log_factorial_table(n))
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
