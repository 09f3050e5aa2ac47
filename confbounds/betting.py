"""Betting confidence bounds and confidence sequences for bounded means.

Implements two constructions of Waudby-Smith & Ramdas (JRSS-B 2024) on data
rescaled from ``bounds=(a, b)`` to [0, 1] (theory §5):

* **PrPl-EB** (predictable plug-in empirical Bernstein, their Theorem 2),
  closed form.  With ``mu_t = (1/2 + sum_{i<=t} X_i) / (t + 1)``,
  ``s2_t = (1/4 + sum_{i<=t} (X_i - mu_i)^2) / (t + 1)`` (``mu_0 = 1/2``,
  ``s2_0 = 1/4``), bets ``lambda_t = min(sqrt(2 log(1/alpha) /
  (s2_{t-1} t log(1 + t))), c)``, ``v_i = 4 (X_i - mu_{i-1})^2`` and
  ``psi_E(l) = (-log(1 - l) - l) / 4``, the lower confidence sequence is
  ``L_t = (sum lambda_i X_i - log(1/alpha) - sum v_i psi_E(lambda_i)) /
  sum lambda_i``.  The fixed-n interval (:func:`betting_ci`) uses
  ``lambda_t = min(sqrt(2 log(1/alpha) / (n s2_{t-1})), c)`` and reports
  ``L_n``.
* **Hedged capital** (their Theorem 3).  ``K_t(m) = prod_{i<=t} (1 +
  lambda_i(m) (X_i - m))`` with ``lambda_i(m) = min(|lambdadot_i|, c/m)`` and
  ``lambdadot_i = sqrt(2 log(1/alpha) / (s2_{i-1} i log(1 + i)))`` (confidence
  sequence) or ``sqrt(2 log(1/alpha) / (n s2_{i-1}))`` (fixed n).  Under
  ``E X = m`` it is a non-negative martingale, so by Ville's inequality
  ``{m : K_t(m) < 1/alpha}`` covers the mean at every t with probability
  ``>= 1 - alpha``.  Each factor is non-increasing in ``m`` (both
  ``lambda_i(m)`` and ``X_i - m`` shrink, and ``lambda_i(m) (m - X_i) =
  min(lambdadot_i (m - X_i), c (1 - X_i/m))`` grows), hence the lower bound
  is ``sup{m : K_t(m) >= 1/alpha}`` and any ``m`` with ``K_t(m) >= 1/alpha``
  is a valid lower bound.

One-sided bounds use ``theta = 1`` (only ``K^+``; ``log(1/alpha)`` in the
bets).  Upper bounds are lower bounds of ``1 - X`` mapped back (that is
``K^-`` of the paper).  ``side="two-sided"`` is the paper's ``theta = 1/2``:
the set ``{m : max(K^+/2, K^-/2) < 1/alpha}`` equals the lower and upper
bound each at ``alpha/2`` (bets with ``log(2/alpha)``), which is what we
return.  The truncation constant is :data:`TRUNCATION` ``c = 1/2`` (the
paper suggests 1/2 or 3/4).

Numerics and rounding (theory §2.4)
--------------------------------
* The bets ``lambda`` are whatever the floating-point computation gives:
  any predictable bet keeps the martingale property, so their rounding
  cannot break validity.
* Hedged capital arithmetic: the factors ``1 + z_i``, ``z_i = lambda_i(m)
  (X_i - m)``, are multiplied in chunks of 32 (each factor lies in
  ``[1 - c, 1 + max lambda]``, so no overflow) and the logs of the chunk
  products are summed with Neumaier compensation: one ``log`` per 32
  samples.  ``z_i`` carries at most three roundings (``c/m``, ``X_i - m``,
  the product), so a factor errs by at most ``u + 6.03 u |z_i|`` relative
  (``1 + z_i >= 1/2``); a running bound ``err = 4u t + 8u sum|z_i| +
  2u sum|log P| + 4u |S| + 4 t u^2 sum|log P|`` covers these, the
  products, ``log`` and the summation (``u = 2**-53``).  A point ``m``
  counts as rejected only if ``log K - err >= log(1/alpha)``: every
  reported lower bound is a point certified to have ``K_t(m) >= 1/alpha``
  in exact arithmetic.
* Hedged fixed-n root: safeguarded Newton/bisection on the certified
  log-capital keeping a bracket ``[lo, hi]`` (``lo`` certified rejected,
  ``hi`` not) until ``hi - lo <= 1e-10 hi``; ``lo`` is returned, so the
  root-finding error can only lower the bound.  No grid.
* Hedged confidence sequence: an exact root at every ``t`` costs
  ``O(n^2)``.  ``betting_cs`` instead reports, at each ``t``, the largest
  point of the grid ``{j / G : j = 1..G-1}`` (``G = grid_size``, default
  1000, in [0, 1] units, so the resolution is ``(b - a) / G``) whose
  capital is certified ``>= 1/alpha``, or ``a`` if there is none.  By
  monotonicity this is the exact CS lower bound rounded *down* to the
  grid.  The capital at each grid point is evaluated lazily (cached
  partial products, advanced only when the search visits the point; the
  search gallops from the previous answer and bisects), which gives exactly
  the full-grid answer at a cost of a few multiplications per sample plus
  ``t`` for every visit of a point last seen long ago.  Rejection is tested
  as ``P >= threshold`` on the pending chunk product, with a certified
  threshold renewed once per chunk (no ``log`` per test).
* PrPl-EB: the three sums have non-negative terms, so recursive summation
  errs by at most ``t u`` relative (Higham 2002, eq. 4.4); ``L_t`` is
  lowered by ``16 (t + 1) u (S_1 + 4 Lambda + S_2 + log(1/alpha)) /
  Lambda``.
* Rescaling ``(x - a)/(b - a)`` and the map back add ``8 u`` and
  ``4 u (|a| + b - a)``; lower bounds are clamped at ``a`` and upper bounds
  at ``b`` (valid because the mean lies in ``[a, b]``).

References
----------
Waudby-Smith, I. and Ramdas, A. (2024). Estimating means of bounded random
variables by betting. JRSS-B 86(1), 1–27. Theorem 2 (PrPl-EB), Theorem 3 and
Section 4 (hedged capital, fixed-n bets), Remark on running intersections.
"""
from __future__ import annotations

import math
from typing import Tuple, Union

import numpy as np
from .lazyjit import njit, prange

from . import aot
from ._validate import check_alpha, check_choice, check_samples, check_side
from .bernstein import finish, to_unit

__all__ = ["betting_ci", "betting_cs", "TRUNCATION", "ROOT_RTOL", "METHODS"]

#: Truncation ``c`` of the bets (Waudby-Smith & Ramdas suggest 1/2 or 3/4).
TRUNCATION = 0.5
#: Relative tolerance of the hedged fixed-n root (bracket width / bound).
ROOT_RTOL = 1e-10
METHODS = ("hedged", "prpl-eb")

_U = np.finfo(float).eps / 2.0

Result = Union[float, np.ndarray, Tuple[Union[float, np.ndarray], Union[float, np.ndarray]]]


# --------------------------------------------------------------------------
# kernels (all in [0, 1] units, lower bounds only; upper bounds by mirroring)
# --------------------------------------------------------------------------
@njit(cache=True, inline="always", error_model="numpy")
def _hedged_bets(y, log_thr, n_fixed, out):
    """Predictable bets lambdadot_t of the hedged capital (untruncated).

    ``n_fixed > 0``: fixed-n bets ``sqrt(2 log_thr / (n s2_{t-1}))``;
    otherwise the CS bets ``sqrt(2 log_thr / (s2_{t-1} t log(1 + t)))``.
    Returns (mean, s2_n) of the sample for the root finder's initial guess.
    """
    n = y.shape[0]
    var_prev = 0.25
    sum_x = 0.0
    sum_sq = 0.0
    for i in range(n):
        t = i + 1.0
        if n_fixed > 0:
            out[i] = math.sqrt(2.0 * log_thr / (n_fixed * var_prev))
        else:
            out[i] = math.sqrt(2.0 * log_thr / (var_prev * t * math.log(1.0 + t)))
        x = y[i]
        sum_x += x
        mu_t = (0.5 + sum_x) / (t + 1.0)
        d = x - mu_t
        sum_sq += d * d
        var_prev = (0.25 + sum_sq) / (t + 1.0)
    return sum_x / n, var_prev


_CHUNK = 32  # factors multiplied before one log is taken (no overflow: each factor in [1 - c, 1 + lambda])


@njit(cache=True, error_model="numpy")
def _hedged_ci_1d(y, log_thr, c, rtol, lam):
    """Certified hedged fixed-n lower bound of one column ``y`` (n,) in [0, 1] units.

    One kernel (bets, capital, root) so that the first call compiles little
    code (with ``error_model="numpy"``: no ``ZeroDivisionError`` branches; no
    divisor here can be zero except ``m * m`` underflowing for ``m < 1e-154``,
    which gives an infinite derivative, hence a bisection step).  ``lam`` (n,)
    is scratch space for the bets.

    *Capital.* ``log K^+(m)`` is accumulated over the factors ``1 + z_i``,
    ``z_i = lambda_i(m) (X_i - m)``, multiplied in chunks of :data:`_CHUNK`,
    the log of each chunk product added with Neumaier compensation (one
    ``log`` per 32 samples).  Its certified lower value subtracts
    ``err = 4u t + 8u sum|z| + 2u (sum|log P| + |log P_pending|) + 4u |S| +
    4 t u^2 sum|log P|``: ``z`` carries at most three roundings (``c/m``,
    ``X - m``, the product), so a factor ``fl(1 + z)`` errs by at most
    ``u + 6.03 u |z|`` relative (``1 + z >= 1 - c = 1/2``); each product
    step adds ``u``, so a chunk log errs by at most ``1.01 sum(2u + 6.03 u
    |z_i|)`` plus ``u |log P|`` for ``log`` itself; Neumaier summation adds
    ``2u |S| + O(t u^2) sum|log P|``; ``err`` dominates each term.
    ``d log K / dm`` is accumulated for Newton.

    *Root.* ``lo = 0`` is returned unless ``m = 0`` is certified rejected.
    Then safeguarded Newton/bisection on the certified log-capital keeps a
    bracket ``[lo, hi]`` (``lo`` certified rejected, ``hi = 1`` never is:
    ``K(1) <= 1 < 1/alpha``) until ``hi - lo <= rtol * hi``; ``lo`` is
    returned, so root-finding error can only lower the bound.
    """
    n = y.shape[0]
    mean, s2 = _hedged_bets(y, log_thr, float(n), lam)
    guess = mean - math.sqrt(2.0 * s2 * log_thr / n) - log_thr / (2.0 * n)
    lo = 0.0
    hi = 1.0
    m = 0.0
    prev_width = 1.0
    slow = 0
    for it in range(301):  # it = 0 tests m = 0; then at most 300 Newton/bisection steps
        # ---- certified log-capital at m and its derivative ----
        cap = c / m if m > 0.0 else np.inf
        s = 0.0
        comp = 0.0
        sz = 0.0
        sl = 0.0
        der = 0.0
        prod = 1.0
        k = 0
        for i in range(n):
            li = lam[i]
            x = y[i]
            if li <= cap:
                z = li * (x - m)
                der -= li / (1.0 + z)
            else:
                z = cap * (x - m)
                der -= (c * x / (m * m)) / (1.0 + z)
            prod *= 1.0 + z
            sz += abs(z)
            k += 1
            if k == _CHUNK:
                g = math.log(prod)
                tt = s + g
                if abs(s) >= abs(g):
                    comp += (s - tt) + g
                else:
                    comp += (g - tt) + s
                s = tt
                sl += abs(g)
                prod = 1.0
                k = 0
        lp = math.log(prod)
        val = s + comp + lp
        err = (4.0 * _U * n + 8.0 * _U * sz + 2.0 * _U * (sl + abs(lp)) + 4.0 * _U * abs(val)
               + 4.0 * n * _U * _U * sl + 1e-300)
        low = val - err
        # ---- bracket update ----
        if it == 0:
            if low < log_thr:
                return 0.0
            m = guess
            if not (lo < m < hi):
                m = 0.5
            continue
        if low >= log_thr:
            lo = m
        else:
            hi = m
        width = hi - lo
        if width <= rtol * hi or hi < 1e-300:
            break
        if width > 0.6 * prev_width:
            slow += 1
        else:
            slow = 0
        prev_width = width
        mn = -1.0
        if der < 0.0 and slow < 2:
            mn = m - (low - log_thr) / der
            push = 0.4 * rtol * hi
            if low >= log_thr:
                mn += push
            else:
                mn -= push
        if not (lo < mn < hi):
            mn = 0.5 * (lo + hi)
            slow = 0
        m = mn
    return lo


@njit(cache=True, parallel=True)
def _hedged_ci_parallel(y, log_thr, c, rtol, lam, out):
    for j in prange(y.shape[1]):
        out[j] = _hedged_ci_1d(y[:, j], log_thr, c, rtol, lam[:, j])


#: Column loops run on Numba's thread pool only above this many samples
#: (thread start-up costs milliseconds on a busy machine).
PARALLEL_MIN_ELEMENTS = 200_000


def _hedged_ci_cols(y, log_thr, c, rtol):
    """Hedged fixed-n lower bounds of the columns of a Fortran-ordered ``y`` (n, k).

    Small inputs loop over the columns in Python, calling the one kernel
    :func:`_hedged_ci_1d` (its only specialisation: contiguous float64
    columns); the parallel kernel is compiled only for large inputs.
    """
    n, k = y.shape
    out = np.empty(k)
    if k > 1 and y.size >= PARALLEL_MIN_ELEMENTS:
        _hedged_ci_parallel(y, log_thr, c, rtol, np.empty((n, k), order="F"), out)
    else:
        lam = np.empty(n)
        for j in range(k):
            out[j] = _hedged_ci_1d_call(y[:, j], log_thr, c, rtol, lam)
    return out


@njit(cache=True)
def _grid_threshold(row, t0, log_thr, zmax):
    """Certified product threshold of a grid point for the chunk starting after t0 factors.

    With ``S`` the (compensated) sum of completed chunk logs, the point is
    rejected iff the pending product ``P >= exp(log_thr - S + errB) (1 + 4u)``,
    where ``errB`` bounds the error of the certified log-capital (as in
    :func:`_hedged_ci_1d`) anywhere in the next chunk (``|z| <= zmax``, ``|log P| <= LP = 32 max(log(1 + zmax),
    log 2)``) plus the rounding of ``log_thr - S`` and of ``exp``.
    """
    s = row[0] + row[1]
    lp = _CHUNK * max(math.log(1.0 + zmax), math.log(2.0))
    t1 = t0 + _CHUNK
    err = (4.0 * _U * t1 + 8.0 * _U * (row[2] + _CHUNK * zmax) + 2.0 * _U * (row[3] + lp)
           + 4.0 * _U * (abs(s) + lp) + 4.0 * t1 * _U * _U * row[3] + 4.0 * _U * (log_thr + abs(s)) + 1e-300)
    arg = log_thr - s + err
    if arg > 700.0:
        return np.inf
    return math.exp(arg) * (1.0 + 4.0 * _U)


@njit(cache=True)
def _hedged_cs_path(col, log_thr, c, G, out, jcol):
    """Hedged CS lower path of one sequence on the grid j/G (lazy evaluation).

    ``cache[j] = [S, comp, sum|z|, sum|log P|, -, P, pending count,
    threshold]`` holds the capital of grid point j/G after ``upto[j]``
    factors (same arithmetic as :func:`_hedged_ci_1d`: chunked products,
    Neumaier sum of chunk logs).  Point j is rejected at time t iff its
    pending product reaches the certified threshold of
    :func:`_grid_threshold`, renewed at each chunk boundary.

    At each t the search starts from the previous answer ``jb`` and gallops
    up (if ``jb`` is still rejected) or down, then bisects; by monotonicity
    in m it returns the largest rejected grid index, exactly as a full-grid
    scan would, while only the visited points are brought up to date.
    """
    n = col.shape[0]
    lam = np.empty(n)
    _hedged_bets(col, log_thr, 0.0, lam)
    zmax = 0.0
    for i in range(n):
        if lam[i] > zmax:
            zmax = lam[i]
    cache = np.zeros((G + 1, 8))
    thr0 = _grid_threshold(cache[0], 0, log_thr, zmax)
    for q in range(G + 1):
        cache[q, 5] = 1.0
        cache[q, 7] = thr0
    upto = np.zeros(G + 1, dtype=np.int64)
    jb = 0  # largest rejected grid index at the previous time (0: none)
    for t in range(1, n + 1):
        # phase 0: test jb; 1: gallop up from lo; 2: gallop down from hi; 3: bisect (lo, hi)
        if jb == 0:
            phase = 1
            lo = 0
            hi = G
            step = 1
        else:
            phase = 0
            lo = jb
            hi = jb
            step = 1
        while True:
            if phase == 0:
                j = jb
            elif phase == 1:
                if lo + step >= G:
                    phase = 3
                    hi = G
                    continue
                j = lo + step
            elif phase == 2:
                if hi - step < 1:
                    phase = 3
                    lo = 0
                    continue
                j = hi - step
            else:
                if hi - lo <= 1:
                    break
                j = (lo + hi) // 2
            # ---- probe grid point j at time t (inlined: one call site) ----
            if upto[j] < t:
                m = j / G
                cap = c / m
                s = cache[j, 0]
                comp = cache[j, 1]
                sz = cache[j, 2]
                sl = cache[j, 3]
                prod = cache[j, 5]
                k = int(cache[j, 6])
                for i in range(upto[j], t):
                    li = lam[i]
                    if li > cap:
                        li = cap
                    z = li * (col[i] - m)
                    prod *= 1.0 + z
                    sz += abs(z)
                    k += 1
                    if k == _CHUNK:
                        g = math.log(prod)
                        tt = s + g
                        if abs(s) >= abs(g):
                            comp += (s - tt) + g
                        else:
                            comp += (g - tt) + s
                        s = tt
                        sl += abs(g)
                        prod = 1.0
                        k = 0
                        cache[j, 0] = s
                        cache[j, 1] = comp
                        cache[j, 2] = sz
                        cache[j, 3] = sl
                        cache[j, 7] = _grid_threshold(cache[j], i + 1, log_thr, zmax)
                cache[j, 0] = s
                cache[j, 1] = comp
                cache[j, 2] = sz
                cache[j, 3] = sl
                cache[j, 5] = prod
                cache[j, 6] = k
                upto[j] = t
            rej = cache[j, 5] >= cache[j, 7]
            # ---- state update ----
            if phase == 0:
                if rej:
                    phase = 1
                    lo = jb
                    step = 1
                else:
                    phase = 2
                    hi = jb
                    step = 1
            elif phase == 1:
                if rej:
                    lo = j
                    step *= 2
                else:
                    hi = j
                    phase = 3
            elif phase == 2:
                if rej:
                    lo = j
                    phase = 3
                else:
                    hi = j
                    step *= 2
            else:
                if rej:
                    lo = j
                else:
                    hi = j
        jb = lo
        out[t - 1, jcol] = lo / G


@njit(cache=True)
def _hedged_cs_serial(y, log_thr, c, G, out):
    for j in range(y.shape[1]):
        _hedged_cs_path(y[:, j], log_thr, c, G, out, j)


@njit(cache=True, parallel=True)
def _hedged_cs_parallel(y, log_thr, c, G, out):
    for j in prange(y.shape[1]):
        _hedged_cs_path(y[:, j], log_thr, c, G, out, j)


def _hedged_cs_cols(y, log_thr, c, G, out):
    if y.shape[1] > 1 and y.size >= PARALLEL_MIN_ELEMENTS // 10:
        _hedged_cs_parallel(y, log_thr, c, G, out)
    else:
        _hedged_cs_serial_call(y, log_thr, c, G, out)


@njit(cache=True)
def _prpl_bets(y, log_thr, c, scale, mu_prev, lam):
    """Plug-in means ``mu_{t-1}`` and truncated bets of theory §5, per column.

    ``lam_t = min(sqrt(2 log_thr / (s2_{t-1} scale_t)), c)`` with
    ``scale_t = t log(1 + t)`` (CS) or ``n`` (fixed n); ``mu_0 = 1/2``,
    ``s2_0 = 1/4``.
    """
    n, k = y.shape
    sum_x = np.zeros(k)
    sum_sq = np.zeros(k)
    var_prev = np.full(k, 0.25)
    for j in range(k):
        mu_prev[0, j] = 0.5
    two_l = 2.0 * log_thr
    for i in range(n):
        t1 = i + 2.0
        sc = scale[i]
        for j in range(k):
            lj = math.sqrt(two_l / (var_prev[j] * sc))
            lam[i, j] = lj if lj < c else c
            x = y[i, j]
            sum_x[j] += x
            mu_t = (0.5 + sum_x[j]) / t1
            e = x - mu_t
            sum_sq[j] += e * e
            var_prev[j] = (0.25 + sum_sq[j]) / t1
            if i + 1 < n:
                mu_prev[i + 1, j] = mu_t


@njit(cache=True)
def _prpl_sums(y, mu_prev, lam, psi, log_thr, path, a, w, upper):
    """Running PrPl-EB lower bound ``L_t`` in [0, 1] units, mapped to ``[a, a + w]``.

    Fills ``path`` (if it has n rows) and returns the final bounds (k,).
    The three sums have non-negative terms, so recursive summation errs by
    at most ``t u`` relative (Higham 2002, eq. 4.4): ``L_t`` is lowered by
    ``16 (t + 1) u (S_1 + 4 Lambda + S_2 + log(1/alpha)) / Lambda`` and by
    ``8 u`` for the rescaling.  ``upper``: the data were mirrored, report
    ``a + w (1 - L_t)`` rounded up.  Clamped to ``[a, a + w]``.
    """
    n, k = y.shape
    s1 = np.zeros(k)
    s2 = np.zeros(k)
    lsum = np.zeros(k)
    last = np.empty(k)
    store = path.shape[0] == n
    back = 4.0 * _U * (abs(a) + w)
    for i in range(n):
        tu = 16.0 * (i + 2.0) * _U
        for j in range(k):
            x = y[i, j]
            d = x - mu_prev[i, j]
            li = lam[i, j]
            s1[j] += li * x
            s2[j] += 4.0 * d * d * psi[i, j]
            lsum[j] += li
            if store or i == n - 1:
                b = (s1[j] - log_thr - s2[j] - tu * (s1[j] + 4.0 * lsum[j] + s2[j] + log_thr)) / lsum[j] - 8.0 * _U
                if b < 0.0:
                    b = 0.0
                if upper:
                    v = a + w * (1.0 - b) + back
                    if v > a + w:
                        v = a + w
                else:
                    v = a + w * b - back
                    if v < a:
                        v = a
                if store:
                    path[i, j] = v
                if i == n - 1:
                    last[j] = v
    return last


_BLOCK = 1 << 18  # elements per column block of the PrPl-EB passes (cache-friendly)
_SCALE_CACHE = {}


def _cs_scale(n: int) -> np.ndarray:
    """``t log(1 + t)`` for t = 1..n (cached: it does not depend on the data)."""
    have = _SCALE_CACHE.get("cs")
    if have is None or have.shape[0] < n:
        t = np.arange(1.0, max(n, 1024) + 1.0)
        have = t * np.log1p(t)
        have.setflags(write=False)
        _SCALE_CACHE["cs"] = have
    return have[:n]


def _prpl(y: np.ndarray, log_thr: float, c: float, fixed: bool, want_path: bool, a: float, b: float,
          upper: bool):
    """PrPl-EB bounds of every column of ``y`` (n, k) (already mirrored if ``upper``).

    Returns the path (n, k) in original units if ``want_path``, else the
    final bounds (k,).  ``psi_E`` is one vectorised NumPy pass; the rest are
    Numba loops.  Columns are processed in blocks to stay in cache.
    """
    n, k = y.shape
    scale = np.full(n, float(n)) if fixed else _cs_scale(n)
    out = np.empty((n, k)) if want_path else np.empty(k)
    kb = max(1, _BLOCK // n)
    w = b - a
    for j0 in range(0, k, kb):
        blk = np.ascontiguousarray(y[:, j0:j0 + kb])
        mu_prev = np.empty_like(blk)
        lam = np.empty_like(blk)
        _prpl_bets_call(blk, log_thr, c, scale, mu_prev, lam)
        psi = np.negative(lam)
        np.log1p(psi, out=psi)
        np.add(psi, lam, out=psi)
        np.multiply(psi, -0.25, out=psi)  # psi_E(lam) = (-log(1 - lam) - lam) / 4
        if want_path:
            pth = out if kb >= k else np.empty_like(blk)
            _prpl_sums_call(blk, mu_prev, lam, psi, log_thr, pth, a, w, upper)
            if pth is not out:
                out[:, j0:j0 + kb] = pth
        else:
            out[j0:j0 + kb] = _prpl_sums_call(blk, mu_prev, lam, psi, log_thr, np.empty((0, 0)), a, w, upper)
    return out


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------
def _unit_lower_to(low, a, b):
    w = b - a
    out = a + w * (np.asarray(low, dtype=float) - 8.0 * _U) - 4.0 * _U * (abs(a) + w)
    return np.maximum(out, a)


def _unit_upper_to(low_of_mirror, a, b):
    w = b - a
    high = 1.0 - np.asarray(low_of_mirror, dtype=float)
    out = a + w * (high + 8.0 * _U) + 4.0 * _U * (abs(a) + w)
    return np.minimum(out, b)


def _prepare(x, alpha, side, bounds, method, min_n=1):
    check_side(side)
    check_choice(method, "method", METHODS)
    alpha = check_alpha(alpha)
    arr, one_d = check_samples(x, bounds, min_n=min_n)
    a, b = float(bounds[0]), float(bounds[1])
    y = to_unit(arr, a, b)
    return y, one_d, alpha, a, b


def _run(y, side, alpha, kernel):
    """Call ``kernel(data, log_thr, upper)`` for the needed sides.

    Upper bounds are computed on the mirrored data ``1 - y``; two-sided uses
    ``alpha/2`` per side (``log(2/alpha)``).  Returns (low, high) with None
    for a side not asked for.
    """
    if side == "two-sided":
        thr = math.log(2.0 / alpha)
        return kernel(y, thr, False), kernel(1.0 - y, thr, True)
    thr = math.log(1.0 / alpha)
    if side == "lower":
        return kernel(y, thr, False), None
    return None, kernel(1.0 - y, thr, True)


def _pick(low, high, side, shape_fn):
    if side == "two-sided":
        return shape_fn(low), shape_fn(high)
    return shape_fn(low) if side == "lower" else shape_fn(high)


def _to_original(unit_lower, upper, a, b):
    return _unit_upper_to(unit_lower, a, b) if upper else _unit_lower_to(unit_lower, a, b)


def betting_ci(x, alpha: float, side: str = "lower", bounds=(0.0, 1.0), method: str = "hedged") -> Result:
    """Fixed-n betting confidence bound on the mean (Waudby-Smith & Ramdas 2024).

    Parameters
    ----------
    x : array_like, shape (n,) or (n, k)
        I.i.d. samples inside ``bounds`` (n >= 1), used in the given order.
        Columns of a 2-D array are bounded separately.
    alpha : float
        Failure probability in (0, 1).  Two-sided: ``alpha/2`` per side, which
        equals the paper's hedged ``theta = 1/2`` construction.
    side : {"lower", "upper", "two-sided"}
    bounds : (a, b)
        Known range of the samples; nothing is clipped.
    method : {"hedged", "prpl-eb"}
        ``"hedged"``: hedged capital with fixed-n bets (Theorem 3), boundary
        root-found to relative :data:`ROOT_RTOL` on the certified
        log-capital (no grid), rounded down.  ``"prpl-eb"``: closed-form
        PrPl-EB with fixed-n bets (Theorem 2).

    Returns
    -------
    float (1-D input), ndarray (k,) (2-D input), or ``(low, high)``.

    Notes
    -----
    See the module docstring for the formulas, the monotonicity argument and
    the rounding margins.  Lower bounds are clamped at ``a``, upper at ``b``.

    References
    ----------
    Waudby-Smith, I. and Ramdas, A. (2024). Estimating means of bounded random
    variables by betting. JRSS-B 86(1), Theorems 2 and 3.

    Examples
    --------
    >>> import numpy as np
    >>> from confbounds import betting_ci
    >>> x = np.random.default_rng(0).beta(2, 5, size=10_000)
    >>> low = betting_ci(x, 0.05)
    >>> bool(low <= 2 / 7), round(low, 3)
    (True, 0.283)
    """
    y, one_d, alpha, a, b = _prepare(x, alpha, side, bounds, method)
    c = TRUNCATION
    if method == "hedged":
        def kernel(data, thr, upper):
            return _to_original(_hedged_ci_cols(np.asfortranarray(data), thr, c, ROOT_RTOL), upper, a, b)
    else:
        def kernel(data, thr, upper):
            return _prpl(data, thr, c, True, False, a, b, upper)
    low, high = _run(y, side, alpha, kernel)
    return _pick(low, high, side, lambda v: finish(v, one_d))


def betting_cs(x, alpha: float, side: str = "lower", bounds=(0.0, 1.0), method: str = "hedged",
               running_intersection: bool = False, grid_size: int = 1000):
    """Anytime-valid betting confidence sequence: the bound at every t = 1..n.

    Parameters
    ----------
    x : array_like, shape (n,) or (n, k)
        Samples inside ``bounds`` in the order observed (n >= 1).  Columns of a
        2-D array are independent sequences.
    alpha : float
        Failure probability in (0, 1): with probability ``>= 1 - alpha`` the
        bound holds simultaneously at every ``t``.  Two-sided: ``alpha/2`` per
        side (the paper's hedged ``theta = 1/2``).
    side : {"lower", "upper", "two-sided"}
    bounds : (a, b)
    method : {"hedged", "prpl-eb"}
        ``"prpl-eb"``: closed form (Theorem 2).  ``"hedged"``: hedged capital
        (Theorem 3), boundary rounded down to the grid ``j/grid_size`` of the
        unit interval (resolution ``(b - a)/grid_size``, see module notes).
    running_intersection : bool
        Report ``max_{s<=t} L_s`` (and ``min_{s<=t} U_s``); this keeps
        validity because the CS holds at all times simultaneously.
    grid_size : int
        Number of grid cells for the hedged path (>= 2).

    Returns
    -------
    ndarray (n,) for 1-D input, (n, k) for 2-D input, or a ``(low, high)``
    pair of those.

    References
    ----------
    Waudby-Smith, I. and Ramdas, A. (2024). Estimating means of bounded random
    variables by betting. JRSS-B 86(1), Theorems 2 and 3.

    Examples
    --------
    >>> import numpy as np
    >>> from confbounds import betting_cs
    >>> x = np.random.default_rng(0).beta(2, 5, size=1000)
    >>> path = betting_cs(x, 0.05, method="prpl-eb")
    >>> path.shape, bool(np.all(path <= 2 / 7))
    ((1000,), True)
    """
    y, one_d, alpha, a, b = _prepare(x, alpha, side, bounds, method)
    if isinstance(grid_size, bool) or not isinstance(grid_size, (int, np.integer)) or grid_size < 2:
        raise ValueError(f"grid_size must be an integer >= 2, got {grid_size!r}")
    c = TRUNCATION
    n, k = y.shape
    if method == "hedged":
        def kernel(data, thr, upper):
            out = np.empty((n, k))
            _hedged_cs_cols(np.asfortranarray(data), thr, c, int(grid_size), out)
            return _to_original(out, upper, a, b)
    else:
        def kernel(data, thr, upper):
            return _prpl(data, thr, c, False, True, a, b, upper)
    low, high = _run(y, side, alpha, kernel)
    if running_intersection:
        low = None if low is None else np.maximum.accumulate(low, axis=0)
        high = None if high is None else np.minimum.accumulate(high, axis=0)
    return _pick(low, high, side, lambda v: v[:, 0] if one_d else v)


# Python callers use the kernels compiled ahead of time when they are built (confbounds.aot)
(_hedged_ci_1d_call, _hedged_cs_serial_call, _prpl_bets_call, _prpl_sums_call) = aot.bind(
    _hedged_ci_1d, _hedged_cs_serial, _prpl_bets, _prpl_sums)
