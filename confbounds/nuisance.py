"""Certified supremum of a trinomial tail over a margin hypothesis (theory §4.3).

For a margin ``g`` and level ``L`` we need

    S(L) = sup { P_q(T >= t_obs) : q in the simplex, g(q) <= L }.

Curve reduction (theory §4.3)
--------------------------
Moving probability from category 3 to 1, from 2 to 3 or from 2 to 1 cannot
decrease ``P(T >= t)`` (couple the trials and relabel), and each such move
raises ``g``; from any point with ``g(q) < L`` such moves reach ``g = L``
(at ``q = (1, 0, 0)`` every margin is maximal).  So the supremum is over the
curve ``{g(q) = L}``, parametrised by a scalar ``u`` along which both ``q1``
and ``q2`` increase:

* linear ``g = q1 - q2``: ``u = pi = q1 + q2 in [|L|, 1]``,
  ``q1 = (u + L)/2``, ``q2 = (u - L)/2``;
* probit ``g = Phi^{-1}(q1) - Phi^{-1}(q2)``: ``u = z = Phi^{-1}(q2) in
  (-inf, -L/2]``, ``q2 = Phi(z)``, ``q1 = Phi(z + L)``;
* Taylor ``g = h(q1) - h(q2)``, ``h = Phi^{-1}_M``: ``u = w = h(q2) in
  [-H + max(0, -L), -L/2]``, ``H = h(1)``, ``q2 = h^{-1}(w)``, ``q1 = h^{-1}(w + L)``.

Box bound and branch-and-bound (theory §4.3)
-----------------------------------------
On a parameter interval ``[a, b]`` every curve point is dominated by the
corner ``(q1(b), q2(a))`` (largest ``q1``, smallest ``q2``; it is in the
simplex since ``q1(b) + q2(a) <= q1(b) + q2(b) <= 1``), so the tail at the
corner bounds the supremum over the interval.  Corners are rounded outward
(``q1`` up, ``q2`` down: relative ``4 eps`` for the linear curve, ``1e-11``
for ``Phi``, ``1e-13`` plus the bisection bracket for ``h^{-1}``) and the tail
is the certified upper bound of :mod:`confbounds.trinomial`.  A
branch-and-bound splits the interval with the largest bound (in two; in
``mode="decide"`` into ``k <= 32`` equal pieces, ``k`` predicted from the
interval's bound and a point value at its midpoint, :func:`_nsplit`: the box
bound overshoots by about ``exp(c sqrt(n) w)`` for width ``w``, so cutting to
the predicted width at once skips the intermediate halvings; the choice of
pieces never affects validity, every piece gets its own box bound) and stops

* ``mode="decide"``: when every bound is ``<= thr`` (certified) or a point's
  certified lower value is ``> thr`` (refuted), or the node budget is spent
  (undecided, which the inversion treats as *not* rejected: conservative);
* ``mode="sup"``: when ``upper - lower <= rtol * lower + atol``, ``atol = 64 (n + 100) eps``
  (a few times the tails' own absolute safety margin).

The inversion's certification step (:func:`invert_fast`) first tries a greedy
left-to-right sweep (:func:`_sweep`): consecutive intervals whose widths are
predicted from the last measured overshoot, each accepted only on its own box
bound, so the accepted intervals cover the curve; it needs about half the tail
evaluations of the best-first split, which remains the fallback (undecided
sweep, Berger–Boos restriction).  The widths are a heuristic: validity does not
depend on them.

The probit parameter starts at ``z = -45``; every interval whose left end is
there is treated as ``[-inf, b]`` (corner ``q2 = 0``), so the closure point
``q = (0, 0, 1)`` is covered.

Berger–Boos restriction (Berger & Boos 1994; theory §4.3 last bullet)
------------------------------------------------------------------
With ``pi_hi`` the one-sided ``1 - gamma`` Clopper–Pearson upper bound of
``pi = q1 + q2`` from ``X1 + X2``, the supremum is taken over
``{g(q) <= L, pi <= pi_hi}`` and the p-value is ``sup + gamma``.  For the
probit margin the restricted set is the curve segment with ``pi <= pi_hi``
(for fixed ``pi`` moving 2 -> 1 reaches any margin); for the linear margin it
is that segment plus, when ``pi_hi < L``, the point ``(pi_hi, 0, 1 - pi_hi)``.

References
----------
Berger, R. L. and Boos, D. D. (1994). P values maximized over a confidence
set for the nuisance parameter. JASA 89(427), 1012–1016.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from .lazyjit import njit

from . import aot
from ._validate import check_choice
from .taylor import taylor_coefficients
from .trinomial import (DEFAULT_TAYLOR_ORDER, LOG_PRUNE_MASS, STATISTICS, check_n, check_taylor_order,
                        tail_core, threshold_table)

__all__ = ["certified_sup", "SupResult", "MARGINS", "MARGIN_KIND", "margin_range", "taylor_tables",
           "probit_margin", "taylor_probit", "invert_fast", "invert_core"]

MARGINS = ("linear", "probit", "taylor")
_KIND = {"linear": 0, "probit": 1, "taylor": 2}
#: Integer code of each margin in the Numba kernels (``kind``).
MARGIN_KIND = _KIND
Z_MIN = -45.0
#: Range searched for the probit margin; beyond it the bound is reported as -inf / capped.
PROBIT_CAP = 40.0
_SQRT2 = math.sqrt(2.0)
_SQRTPI = math.sqrt(math.pi)
_E4 = 4.0 * 2.220446049250313e-16


def probit_margin(q) -> np.ndarray:
    """``Phi^{-1}(q1) - Phi^{-1}(q2)`` for rows of ``q``, with ``-inf`` when ``q1 = 0``
    (including ``q1 = q2 = 0``, the strictest convention) and ``+inf`` when ``q2 = 0 < q1``."""
    from scipy import special

    q = np.atleast_2d(np.asarray(q, dtype=float))
    q1, q2 = q[:, 0], q[:, 1]
    with np.errstate(all="ignore"):
        v = special.ndtri(q1) - special.ndtri(q2)
    v = np.where(q1 <= 0.0, -np.inf, np.where(q2 <= 0.0, np.inf, v))
    return v


@dataclass(frozen=True)
class SupResult:
    """Certified supremum of ``P_q(T >= t_obs)`` over ``{g(q) <= L}`` (theory §4.3).

    Attributes
    ----------
    upper : float
        Certified upper bound of the supremum (box bounds, safe rounding).
    lower : float
        Certified lower bound: the tail's lower bound at :attr:`maximiser`.
    maximiser : tuple of 3 floats
        Best point ``q`` found (on the curve ``g(q) = L``, up to rounding).
    L, t_obs, n, margin, statistic : the problem.
    nodes : int
        Branch-and-bound intervals evaluated.
    converged : bool
        ``upper - lower <= tol * lower + 64 (n + 100) eps`` was reached within the budget
        (``upper`` is certified either way).
    gamma : float
        Berger–Boos slack (0 when unrestricted); the p-value is ``upper + gamma``.
    """

    upper: float
    lower: float
    maximiser: Tuple[float, float, float]
    L: float
    t_obs: float
    n: int
    margin: str
    statistic: str
    nodes: int
    converged: bool
    gamma: float = 0.0


# ---------------------------------------------------------------------------
# numba: curves
# ---------------------------------------------------------------------------
@njit(cache=True)
def _phi(x):
    return 0.5 * math.erfc(-x / 1.4142135623730951)


@njit(cache=True)
def _h(p, acoef):
    z = 0.8862269254527580 * (2.0 * p - 1.0)  # sqrt(pi)/2 * (2p - 1)
    z2 = z * z
    acc = 0.0
    for k in range(acoef.size - 1, -1, -1):
        acc = acc * z2 + acoef[k]
    return 1.4142135623730951 * z * acc


@njit(cache=True)
def _h_array(p, acoef):
    out = np.empty(p.size)
    for i in range(p.size):
        out[i] = _h(p[i], acoef)
    return out


def taylor_probit(p, taylor_order: Optional[int] = None):
    """``Phi^{-1}_M(p)`` (theory §6) by the same Horner evaluation the Taylor curve uses.

    Scalar in, float out; array in, array out (elementwise, same arithmetic).

    Examples
    --------
    >>> round(taylor_probit(0.5), 12), taylor_probit(0.9) < 1.2816
    (0.0, True)
    """
    acoef = taylor_tables(taylor_order)[0]
    if np.ndim(p) == 0:
        return float(_h_call(float(p), acoef))
    return _h_array_call(np.ascontiguousarray(p, dtype=float).ravel(), acoef).reshape(np.shape(p))


@njit(cache=True)
def _hprime(p, ccoef):
    z = 0.8862269254527580 * (2.0 * p - 1.0)
    z2 = z * z
    acc = 0.0
    for k in range(ccoef.size - 1, -1, -1):
        acc = acc * z2 + ccoef[k]
    return 2.5066282746310002 * acc  # sqrt(2 pi) * sum c_k z^{2k}


@njit(cache=True)
def _hinv(v, acoef, ccoef, H):
    """Bracket (plo, phi) of h^{-1}(v): h(plo) <= v <= h(phi) (h evaluated in floating point)."""
    if v <= -H:
        return 0.0, 0.0 if v < -H else 1e-300
    if v >= H:
        return 1.0, 1.0
    # Newton from Phi(v), then verify a bracket; bisection fallback
    p = _phi(v)
    for _ in range(30):
        f = _h(p, acoef) - v
        d = _hprime(p, ccoef)
        step = f / d
        pn = p - step
        if pn <= 0.0:
            pn = 0.5 * p
        if pn >= 1.0:
            pn = 0.5 * (p + 1.0)
        if abs(pn - p) <= 1e-16:
            p = pn
            break
        p = pn
    d = 1e-13
    lo = max(p - d, 0.0)
    hi = min(p + d, 1.0)
    if _h(lo, acoef) <= v and _h(hi, acoef) >= v:
        return lo, hi
    lo = 0.0
    hi = 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if _h(mid, acoef) < v:
            lo = mid
        else:
            hi = mid
    return lo, hi


@njit(cache=True)
def _zbb(L, pihi):
    """Upper end (rounded up) of {z : Phi(z) + Phi(z + L) <= pihi}."""
    lo = Z_MIN
    hi = -0.5 * L
    if _phi(hi) + _phi(hi + L) <= pihi:
        return hi
    if _phi(lo) + _phi(lo + L) > pihi:
        return lo
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if _phi(mid) + _phi(mid + L) <= pihi:
            lo = mid
        else:
            hi = mid
    return hi


@njit(cache=True)
def _range(kind, L, H, pihi):
    if kind == 0:
        u0 = abs(L)
        u1 = min(1.0, pihi)
    elif kind == 1:
        u0 = Z_MIN
        u1 = -0.5 * L
        if pihi < 1.0:
            u1 = min(u1, _zbb(L, pihi))
    else:
        u0 = -H + max(0.0, -L)
        u1 = -0.5 * L
    return u0, u1


@njit(cache=True)
def _clamp_pair(q1, q2):
    if q2 < 0.0:
        q2 = 0.0
    if q2 > 1.0:
        q2 = 1.0
    if q1 < 0.0:
        q1 = 0.0
    if q1 > 1.0 - q2:
        q1 = 1.0 - q2
    return q1, q2


@njit(cache=True)
def _corner(kind, L, a, b, acoef, ccoef, H):
    """Safe upper corner (q1 rounded up, q2 rounded down) dominating the curve on [a, b]."""
    if kind == 0:
        q1 = 0.5 * (b + L) * (1.0 + _E4) + 1e-300
        q2 = 0.5 * (a - L) * (1.0 - _E4)
    elif kind == 1:
        q1 = _phi(b + L) * (1.0 + 1e-11) + 1e-300
        q2 = 0.0 if a <= Z_MIN else _phi(a) * (1.0 - 1e-11)
    else:
        q1 = _hinv(b + L, acoef, ccoef, H)[1] + 1e-13
        q2 = _hinv(a, acoef, ccoef, H)[0] - 1e-13
    return _clamp_pair(q1, q2)


@njit(cache=True)
def _point(kind, L, u, acoef, ccoef, H):
    """A curve point rounded inward (q1 down, q2 up), so g(point) <= L up to an ulp."""
    if kind == 0:
        q1 = 0.5 * (u + L) * (1.0 - _E4)
        q2 = 0.5 * (u - L) * (1.0 + _E4)
    elif kind == 1:
        if u <= Z_MIN:
            return 0.0, 0.0
        q1 = _phi(u + L) * (1.0 - 1e-11)
        q2 = _phi(u) * (1.0 + 1e-11)
    else:
        q1 = _hinv(u + L, acoef, ccoef, H)[0]
        q2 = _hinv(u, acoef, ccoef, H)[1]
    if q1 + q2 > 1.0:
        q1 = 1.0 - q2
    return _clamp_pair(q1, q2)


@njit(cache=True)
def _atol(n):
    """Absolute resolution of the sup: a few times the tails' own absolute safety margin.

    It only ends the search for the sup (a looser resolution costs tightness, never validity).  Raised
    from 64 to 256 ulps per (n + 100) when the tails gained the strict absolute term ``A_F``
    (``confbounds.trinomial``): with 64 the upper bound of a vanishing tail (about 2e-12 at n = 25)
    could never come within resolution of its lower bound 0, and the search ran out of nodes.
    """
    return 256.0 * (n + 100.0) * 2.220446049250313e-16


# ---------------------------------------------------------------------------
# numba: branch-and-bound
# ---------------------------------------------------------------------------
#: Largest number of children of one split (decide mode).
_KMAX = 32


@njit(cache=True)
def _nsplit(ub, pv, thr):
    """Number of children for splitting an interval in decide mode (validity does not depend on it).

    Heuristic: the box bound's overshoot ``log(ub / f)`` grows about linearly with the
    interval's width (module docstring), and ``pv`` (a point value at the midpoint)
    stands for ``f``; widths are cut by ``1.25 log(ub/pv) / log(thr/pv)`` so that most
    children certify at once instead of after several halvings.  Plain bisection
    when there is no usable point value.
    """
    if not (pv > 0.0) or not (pv < thr) or not (ub > thr):
        return 2
    r = 1.25 * math.log(ub / pv) / math.log(thr / pv)
    if not (r < _KMAX):
        return _KMAX
    k = int(math.ceil(r))
    return max(2, k)


@njit(cache=True)
def _bnb(kind, L, n, kvec, acoef, ccoef, H, pihi, thr, mode, rtol, max_nodes, hint, logcut):
    """Branch-and-bound on the curve for level L.

    mode 0 (decide): status 1 = sup <= thr certified; 0 = refuted (a point's certified
    lower value > thr); -1 = undecided (budget, resolution, or upper - lower <= rtol * thr).
    mode 1 (sup): status 2 = converged (upper - lower <= rtol * lower + _atol(n)), -1 = budget.
    Returns (status, upper, lower, best_u, q1, q2, nodes).
    """
    u0, u1 = _range(kind, L, H, pihi)
    best_lb = 0.0
    best_u = np.nan
    bq1 = np.nan
    bq2 = np.nan
    extra_ub = 0.0
    nodes = 0
    if kind == 0 and pihi < L:
        # Berger–Boos, linear: the point (pihi, 0) dominates the off-curve part
        lo = tail_core(n, pihi * (1.0 - _E4), 0.0, kvec, logcut)[0]
        c1, c2 = _clamp_pair(pihi * (1.0 + _E4) + 1e-300, 0.0)
        extra_ub = tail_core(n, c1, c2, kvec, logcut)[1]
        best_lb = lo
        bq1 = pihi
        bq2 = 0.0
        nodes += 2
        if mode == 0 and best_lb > thr:
            return 0, max(extra_ub, best_lb), best_lb, best_u, bq1, bq2, nodes
    if u0 > u1:
        if mode == 0:
            st = 1 if extra_ub <= thr else -1
        else:
            st = 2
        return st, extra_ub, best_lb, best_u, bq1, bq2, nodes
    # candidate points: the hint and both ends of the curve
    for ic in range(3):
        if ic == 0:
            if hint != hint:
                continue
            u = min(max(hint, u0), u1)
        elif ic == 1:
            u = u1
        else:
            u = u0
        p1, p2 = _point(kind, L, u, acoef, ccoef, H)
        lb = tail_core(n, p1, p2, kvec, logcut)[0]
        nodes += 1
        if lb > best_lb or best_u != best_u:
            best_lb = lb
            best_u = u
            bq1 = p1
            bq2 = p2
        if mode == 0 and best_lb > thr:
            return 0, max(best_lb, extra_ub), best_lb, best_u, bq1, bq2, nodes
        if u1 == u0:
            break
    cap = max_nodes + 16 + _KMAX
    A = np.empty(cap)
    B = np.empty(cap)
    UB = np.empty(cap)
    PV = np.zeros(cap)  # certified lower value at the interval's midpoint (0: not evaluated)
    m = 0
    G = 4 if u1 > u0 else 1
    for i in range(G):
        a = u0 + (u1 - u0) * i / G
        b = u1 if i == G - 1 else u0 + (u1 - u0) * (i + 1) / G
        c1, c2 = _corner(kind, L, a, b, acoef, ccoef, H)
        UB[m] = tail_core(n, c1, c2, kvec, logcut)[1]
        A[m] = a
        B[m] = b
        PV[m] = 0.0
        m += 1
        nodes += 1
    while True:
        imax = 0
        for i in range(1, m):
            if UB[i] > UB[imax]:
                imax = i
        ub = max(UB[imax], extra_ub)
        if ub < best_lb:
            ub = best_lb  # cannot happen mathematically; keep upper >= lower
        if mode == 0:
            if ub <= thr:
                return 1, ub, best_lb, best_u, bq1, bq2, nodes
            if best_lb > thr:
                return 0, ub, best_lb, best_u, bq1, bq2, nodes
            if ub - best_lb <= rtol * thr:
                return -1, ub, best_lb, best_u, bq1, bq2, nodes
        else:
            if ub - best_lb <= rtol * best_lb + _atol(n):
                return 2, ub, best_lb, best_u, bq1, bq2, nodes
        if nodes >= max_nodes or m + _KMAX + 1 > cap:
            return -1, ub, best_lb, best_u, bq1, bq2, nodes
        a = A[imax]
        b = B[imax]
        c = 0.5 * (a + b)
        if not (a < c and c < b):
            return -1, ub, best_lb, best_u, bq1, bq2, nodes
        parent = UB[imax]
        k = 2
        if mode == 0:
            k = _nsplit(parent, PV[imax], thr)
        # children [a + (b-a) i/k, a + (b-a)(i+1)/k]; the first replaces imax, the rest are appended
        for side in range(k):
            aa = a if side == 0 else a + (b - a) * side / k
            bb = b if side == k - 1 else a + (b - a) * (side + 1) / k
            if not (aa < bb):
                continue
            c1, c2 = _corner(kind, L, aa, bb, acoef, ccoef, H)
            v = min(parent, tail_core(n, c1, c2, kvec, logcut)[1])
            nodes += 1
            if side == 0:
                idx = imax
            else:
                idx = m
                m += 1
            A[idx] = aa
            B[idx] = bb
            UB[idx] = v
            PV[idx] = 0.0
            # a point is worth evaluating only where it could refute / raise the lower bound
            need = v > thr if mode == 0 else v > best_lb * (1.0 + rtol) + _atol(n)
            if need:
                um = 0.5 * (aa + bb)
                p1, p2 = _point(kind, L, um, acoef, ccoef, H)
                lb = tail_core(n, p1, p2, kvec, logcut)[0]
                nodes += 1
                PV[idx] = lb
                if lb > best_lb:
                    best_lb = lb
                    best_u = um
                    bq1 = p1
                    bq2 = p2


#: Sweep certification (:func:`_sweep`): fraction of the predicted log margin an interval may use,
#: widening probe after this many accepted intervals in a row, and its factor.  Heuristics: validity
#: does not depend on them (every accepted interval has its own certified box bound).
SWEEP_SAFE = 0.95
SWEEP_PROBE = 8
SWEEP_GROW = 2.0
#: Up to this n an undecided sweep is always followed by the best-first split, which can still
#: certify when the supremum is within the undecided band (cheap at small n; above it the split
#: is skipped when the sweep met a point within the band, and the gap is widened instead).
SWEEP_SPLIT_MAX_N = 2000


@njit(cache=True)
def _sweep(kind, L, n, kvec, acoef, ccoef, H, thr, rtol, max_nodes, hint, logcut):
    """Decide ``S(L) <= thr`` by one left-to-right sweep of box bounds along the curve (theory §4.3).

    Same contract and return value as :func:`_bnb` in decide mode (status 1 certified, 0 refuted,
    -1 undecided), without the Berger–Boos restriction (the caller uses :func:`_bnb` there).  The
    curve ``[u0, u1]`` is cut into consecutive intervals ``[u, u + w]``; an interval is accepted when
    the certified tail at its safe corner (:func:`_corner`) is ``<= thr``.  Accepted intervals cover
    the whole curve, so ``S(L) <= max`` of their corner bounds ``<= thr`` (the box bound of theory
    §4.3, unchanged): *which* widths are tried never affects validity.

    Width choice (a heuristic; validity does not depend on it): the corner of ``[u, u + w]`` is a
    curve point at a level raised by ``w/2`` (linear) or ``w`` (probit), so ``log(corner tail)`` is
    about ``ell(u) + C w`` with ``ell = log`` of the tail on the curve.  A rejected corner is followed
    by the point value at ``u`` (which also refutes when ``> thr``), giving ``ell`` and ``C`` exactly
    there; the next width uses ``SWEEP_SAFE`` of the predicted margin ``log(thr) - ell``.  After
    ``SWEEP_PROBE`` acceptances in a row the width is widened by ``SWEEP_GROW`` to re-measure ``C``.
    This greedy cover needs about half the tail evaluations of the best-first :func:`_bnb` split
    (``benchmarks/exact_speed.py``).  A rejected interval whose box bound and left-end point value
    are both within ``rtol * thr`` of ``thr`` (the rule of :func:`_bnb`), a width below the float
    resolution, or the node budget ends it as undecided.
    """
    u0, u1 = _range(kind, L, H, 1.0)
    nodes = 0
    best_lb = 0.0
    best_u = np.nan
    bq1 = np.nan
    bq2 = np.nan
    if u0 > u1:
        return 1, 0.0, 0.0, best_u, bq1, bq2, nodes
    for ic in range(3):
        if ic == 0:
            if hint != hint:
                continue
            u = min(max(hint, u0), u1)
        elif ic == 1:
            u = u1
        else:
            u = u0
        p1, p2 = _point(kind, L, u, acoef, ccoef, H)
        lb = tail_core(n, p1, p2, kvec, logcut)[0]
        nodes += 1
        if lb > best_lb or best_u != best_u:
            best_lb = lb
            best_u = u
            bq1 = p1
            bq2 = p2
        if best_lb > thr:
            return 0, best_lb, best_lb, best_u, bq1, bq2, nodes
    lthr = math.log(thr)
    ub_max = 0.0
    u = u0
    w = u1 - u0
    C = -1.0
    succ = 0
    first = True  # a one-point curve (u0 == u1) still gets its box bound
    while u < u1 or first:
        first = False
        b = u + w
        if b >= u1 or u1 - b < 0.25 * w:
            b = u1
        ww = b - u
        c1, c2 = _corner(kind, L, u, b, acoef, ccoef, H)
        v = tail_core(n, c1, c2, kvec, logcut)[1]
        nodes += 1
        lv = math.log(v) if v > 0.0 else -745.0
        if v <= thr:
            if v > ub_max:
                ub_max = v
            u = b
            succ += 1
            if C > 0.0:
                e = lv - C * ww
                wn = SWEEP_SAFE * (lthr - e) / C
                if succ >= SWEEP_PROBE:
                    wn = max(wn, SWEEP_GROW * ww)
                    succ = 0
                w = min(max(wn, 0.25 * ww), 4.0 * ww)
            else:
                w = 4.0 * ww
        else:
            succ = 0
            p1, p2 = _point(kind, L, u, acoef, ccoef, H)
            lb = tail_core(n, p1, p2, kvec, logcut)[0]
            nodes += 1
            if lb > best_lb:
                best_lb = lb
                best_u = u
                bq1 = p1
                bq2 = p2
            if lb > thr:
                return 0, max(v, best_lb), best_lb, best_u, bq1, bq2, nodes
            if lb >= thr * (1.0 - rtol) and v - lb <= rtol * thr:
                return -1, max(v, best_lb), best_lb, best_u, bq1, bq2, nodes
            ell = math.log(lb) if lb > 0.0 else -745.0
            cn = (lv - ell) / ww
            if cn > 0.0:
                C = cn
            if C > 0.0:
                w = min(SWEEP_SAFE * (lthr - ell) / C, 0.5 * ww)
            else:
                w = 0.125 * ww
            if not (u + w > u):
                return -1, max(v, best_lb), best_lb, best_u, bq1, bq2, nodes
        if nodes >= max_nodes:
            return -1, max(ub_max, best_lb), best_lb, best_u, bq1, bq2, nodes
    return 1, max(ub_max, best_lb), best_lb, best_u, bq1, bq2, nodes


@njit(cache=True)
def invert_core(kind, n, kvec, acoef, ccoef, H, pihi, thr, Lbot, Ltop, Lguess, step0, tol,
                max_nodes, logcut, eps_und=1e-3):
    """Largest L (to ``tol``) at which ``S(L) <= thr`` is certified (theory §4.2).

    Returns (L, status, ub, lb, q1, q2, total_nodes, bottom_flag).  ``bottom_flag``
    is 1 when even ``Lbot`` is not certified (the caller reports the trivial bound).
    """
    hint = np.nan
    total = 0
    # certified-left a, refuted-right b
    a = np.nan
    b = np.nan
    a_ub = np.nan
    a_lb = np.nan
    a_q1 = np.nan
    a_q2 = np.nan
    L = min(max(Lguess, Lbot), Ltop)
    st, ub, lb, bu, q1, q2, nd = _bnb(kind, L, n, kvec, acoef, ccoef, H, pihi, thr, 0, eps_und,
                                      max_nodes, hint, logcut)
    total += nd
    if bu == bu:
        hint = bu
    step = step0
    if st == 1:
        a = L
        a_ub, a_lb, a_q1, a_q2 = ub, lb, q1, q2
        while True:
            if a >= Ltop:
                return a, 1, a_ub, a_lb, a_q1, a_q2, total, 0
            L = min(a + step, Ltop)
            st, ub, lb, bu, q1, q2, nd = _bnb(kind, L, n, kvec, acoef, ccoef, H, pihi, thr, 0,
                                              eps_und, max_nodes, hint, logcut)
            total += nd
            if bu == bu:
                hint = bu
            if st == 1:
                a = L
                a_ub, a_lb, a_q1, a_q2 = ub, lb, q1, q2
                step *= 2.0
            else:
                b = L
                break
    else:
        b = L
        while True:
            if b <= Lbot:
                return Lbot, -1, np.nan, np.nan, np.nan, np.nan, total, 1
            L = max(b - step, Lbot)
            st, ub, lb, bu, q1, q2, nd = _bnb(kind, L, n, kvec, acoef, ccoef, H, pihi, thr, 0,
                                              eps_und, max_nodes, hint, logcut)
            total += nd
            if bu == bu:
                hint = bu
            if st == 1:
                a = L
                a_ub, a_lb, a_q1, a_q2 = ub, lb, q1, q2
                break
            b = L
            step *= 2.0
    while b - a > tol:
        L = 0.5 * (a + b)
        if not (a < L and L < b):
            break
        st, ub, lb, bu, q1, q2, nd = _bnb(kind, L, n, kvec, acoef, ccoef, H, pihi, thr, 0, eps_und,
                                          max_nodes, hint, logcut)
        total += nd
        if bu == bu:
            hint = bu
        if st == 1:
            a = L
            a_ub, a_lb, a_q1, a_q2 = ub, lb, q1, q2
        else:
            b = L
    return a, 1, a_ub, a_lb, a_q1, a_q2, total, 0


@njit(cache=True)
def _approx_sup(kind, L, n, kvec, acoef, ccoef, H, pihi, hint, logcut, K):
    """Best certified point value on the curve at L (a lower bound of S(L)), searched by a
    grid of K points (skipped when K = 0), the hint, both ends and a golden-section refinement.
    Used only to locate the root; never to certify."""
    u0, u1 = _range(kind, L, H, pihi)
    best = 0.0
    bu = np.nan
    if kind == 0 and pihi < L:
        best = tail_core(n, pihi * (1.0 - _E4), 0.0, kvec, logcut)[0]
    if u0 > u1:
        return best, bu
    nc = K + 3
    h = (u1 - u0) / max(K, 4)
    for i in range(nc):
        if i == 0:
            if hint != hint:
                continue
            u = min(max(hint, u0), u1)
        elif i == 1:
            u = u1
        elif i == 2:
            u = u0
        else:
            u = u0 + (u1 - u0) * (i - 2.5) / K
        p1, p2 = _point(kind, L, u, acoef, ccoef, H)
        v = tail_core(n, p1, p2, kvec, logcut)[0]
        if v > best or bu != bu:
            best = v
            bu = u
    if u1 == u0:
        return best, bu
    # golden section on [bu - h, bu + h]
    a = max(u0, bu - h)
    b = min(u1, bu + h)
    gr = 0.6180339887498949
    c = b - gr * (b - a)
    d = a + gr * (b - a)
    p1, p2 = _point(kind, L, c, acoef, ccoef, H)
    fc = tail_core(n, p1, p2, kvec, logcut)[0]
    p1, p2 = _point(kind, L, d, acoef, ccoef, H)
    fd = tail_core(n, p1, p2, kvec, logcut)[0]
    for _ in range(14):
        if fc >= fd:
            b = d
            d = c
            fd = fc
            c = b - gr * (b - a)
            p1, p2 = _point(kind, L, c, acoef, ccoef, H)
            fc = tail_core(n, p1, p2, kvec, logcut)[0]
        else:
            a = c
            c = d
            fc = fd
            d = a + gr * (b - a)
            p1, p2 = _point(kind, L, d, acoef, ccoef, H)
            fd = tail_core(n, p1, p2, kvec, logcut)[0]
    if fc > best:
        best = fc
        bu = c
    if fd > best:
        best = fd
        bu = d
    return best, bu


def invert_fast(kind, n, kvec, acoef, ccoef, H, pihi, thr, Lbot, Ltop, Lguess, step0, tol,
                max_nodes, logcut, cert_gap, cert_nodes):
    """Locate-then-certify inversion (theory §4.2), same contract as :func:`invert_core`.

    1. Find the root L* of ``log(V(L)/thr)``, ``V`` the best point value on the curve
       (:func:`_approx_sup`; a lower bound of S), by a bracketing secant (Illinois) search.
    2. Certify ``S(L_c) <= thr`` at ``L_c = L* - delta`` with ``delta`` from the local slope so
       that ``V(L_c) ~ thr * exp(-cert_gap)``, by one greedy sweep of box bounds (:func:`_sweep`;
       without the Berger–Boos restriction), or the best-first branch-and-bound :func:`_bnb` when
       the sweep is undecided or the restriction is on.  If it finds a point
       above ``thr`` the maximiser moved: restart from it; if undecided widen ``delta``.
    3. After 4 failed attempts fall back to :func:`invert_core` (bisection).
    Only certified ``L`` are returned, so the result is valid whatever happens in step 1.

    This driver is plain Python (a few dozen kernel calls per inversion, a few microseconds
    each) and calls the Numba kernels :func:`_approx_sup`, :func:`_sweep`, :func:`_bnb` and
    :func:`invert_core`: each is compiled on first *use*, so a first call that never needs the
    best-first split or the bisection fallback does not compile them (issue 15, cold start).
    The arithmetic is the IEEE double arithmetic the kernel had (no fast-math, the same libm
    ``log``/``exp``), so the results are bit-identical to the former all-Numba driver.
    """
    # one argument type per kernel whatever the caller passes (no second specialisation)
    kind, n, max_nodes, cert_nodes = int(kind), int(n), int(max_nodes), int(cert_nodes)
    H, pihi, thr, Lbot, Ltop, Lguess, step0, tol, logcut, cert_gap = (
        float(v) for v in (H, pihi, thr, Lbot, Ltop, Lguess, step0, tol, logcut, cert_gap))
    lthr = math.log(thr)
    hint = math.nan
    total = 0
    for attempt in range(4):
        K = 8 if attempt == 0 or hint != hint else 0
        # --- locate the root of h(L) = log V(L) - log thr
        La = min(max(Lguess, Lbot), Ltop)
        v, bu = _approx_sup_call(kind, La, n, kvec, acoef, ccoef, H, pihi, hint, logcut, K)
        total += K + 20
        if bu == bu:
            hint = bu
        ha = (math.log(v) if v > 0 else -745.0) - lthr
        step = step0
        # bracket
        Lb = La
        hb = ha
        ok = True
        for _ in range(60):
            Lb = La - step if ha > 0 else La + step
            if Lb < Lbot or Lb > Ltop:
                Lb = min(max(Lb, Lbot), Ltop)
            v, bu = _approx_sup_call(kind, Lb, n, kvec, acoef, ccoef, H, pihi, hint, logcut, 0)
            total += 20
            if bu == bu:
                hint = bu
            hb = (math.log(v) if v > 0 else -745.0) - lthr
            if (ha > 0) != (hb > 0):
                break
            if Lb == Lbot or Lb == Ltop:
                ok = False
                break
            La = Lb
            ha = hb
            step *= 2.0
        if not ok:
            break  # root outside the range: let the bisection handle the ends
        # Illinois iterations on [La, Lb]
        lo_L, lo_h, hi_L, hi_h = (La, ha, Lb, hb) if ha < 0 else (Lb, hb, La, ha)
        side = 0
        Lr = lo_L
        for _ in range(40):
            if hi_L - lo_L <= tol:
                break
            Lr = lo_L - lo_h * (hi_L - lo_L) / (hi_h - lo_h)
            if not (min(lo_L, hi_L) < Lr < max(lo_L, hi_L)):
                Lr = 0.5 * (lo_L + hi_L)
            v, bu = _approx_sup_call(kind, Lr, n, kvec, acoef, ccoef, H, pihi, hint, logcut, 0)
            total += 20
            if bu == bu:
                hint = bu
            hr = (math.log(v) if v > 0 else -745.0) - lthr
            if abs(hr) < 0.2 * cert_gap:
                break
            if hr < 0:
                lo_L, lo_h = Lr, hr
                if side == -1:
                    hi_h *= 0.5
                side = -1
            else:
                hi_L, hi_h = Lr, hr
                if side == 1:
                    lo_h *= 0.5
                side = 1
        slope = (hi_h - lo_h) / (hi_L - lo_L) if hi_L != lo_L else 0.0
        if not (slope > 0):
            break
        delta = cert_gap / slope
        for _ in range(3):
            Lc = max(Lr - delta, Lbot)
            rt = 0.25 * (1.0 - math.exp(-cert_gap))
            st = -1
            near = False
            if pihi >= 1.0:
                # greedy sweep first; the best-first split only when the sweep is undecided for
                # want of nodes or resolution (not when it found a point within rt of thr, where
                # the split would be undecided too)
                st, ub, lb, bu, q1, q2, nd = _sweep_call(kind, Lc, n, kvec, acoef, ccoef, H, thr, rt,
                                                    cert_nodes // 2, hint, logcut)
                total += nd
                near = st == -1 and lb >= thr * (1.0 - rt) and ub - lb <= rt * thr
            if st == -1 and (not near or n <= SWEEP_SPLIT_MAX_N):
                st, ub, lb, bu, q1, q2, nd = _bnb_call(kind, Lc, n, kvec, acoef, ccoef, H, pihi, thr, 0,
                                                  rt, cert_nodes, hint, logcut)
                total += nd
            if st == 1:
                return Lc, 1, ub, lb, q1, q2, total, 0
            if bu == bu:
                hint = bu
            if st == 0:
                break  # a better maximiser exists: locate again from it
            delta *= 3.0  # undecided (a point within rt of thr): certify lower
        Lguess = Lr
    L, st, ub, lb, q1, q2, nd, bottom = invert_core_call(kind, n, kvec, acoef, ccoef, H, pihi, thr, Lbot,
                                                    Ltop, Lguess, step0, tol, max_nodes, logcut, 1e-2)
    return L, st, ub, lb, q1, q2, total + nd, bottom


# ---------------------------------------------------------------------------
# Python API
# ---------------------------------------------------------------------------
_TAYLOR_CACHE: dict = {}


def taylor_tables(M: Optional[int]):
    """(a_k = c_k/(2k+1), c_k, H = Phi^{-1}_M(1)) for the Taylor curve (theory §6)."""
    M = DEFAULT_TAYLOR_ORDER if M is None else check_taylor_order(M)
    if M not in _TAYLOR_CACHE:
        c = np.asarray(taylor_coefficients(M), dtype=float)
        a = c / (2.0 * np.arange(M + 1) + 1.0)
        H = float(_h_call(1.0, a))
        _TAYLOR_CACHE[M] = (a, c, H)
    return _TAYLOR_CACHE[M]


def margin_range(margin: str, taylor_order: Optional[int] = None) -> Tuple[float, float]:
    """Range of L searched: linear [-1, 1], probit [-40, 40], Taylor [-2H, 2H]."""
    if margin == "linear":
        return -1.0, 1.0
    if margin == "probit":
        return -PROBIT_CAP, PROBIT_CAP
    H = taylor_tables(taylor_order)[2]
    return -2.0 * H, 2.0 * H


def certified_sup(t_obs, n: int, L: float, margin: str = "linear", statistic: str = "difference",
                  taylor_order: Optional[int] = None, tol: float = 1e-4, pi_max: Optional[float] = None,
                  max_nodes: int = 20_000) -> SupResult:
    """Certified supremum of ``P_q(T >= t_obs)`` over ``{q in simplex : g(q) <= L}``.

    Parameters
    ----------
    t_obs : float
        Observed statistic (``x1 - x2`` or the plug-in value, see
        :func:`confbounds.trinomial.observed_statistic`); the tail includes it.
    n : int
    L : float
        Hypothesised margin level.
    margin : {"linear", "probit", "taylor"}
    statistic : {"difference", "plugin", "studentized"}
    taylor_order : int, optional
        ``M`` for the Taylor margin and the plug-in statistic (default 100).
    tol : float
        Relative tolerance: stops when ``upper - lower <= tol * lower + 64 (n + 100) eps``.
    pi_max : float, optional
        Berger–Boos restriction ``q1 + q2 <= pi_max`` (not for the Taylor margin).
    max_nodes : int
        Budget of tail evaluations; ``upper`` stays certified if it is spent
        (then ``converged`` is False).

    Returns
    -------
    SupResult

    Examples
    --------
    >>> r = certified_sup(t_obs=12, n=20, L=0.2)
    >>> r.lower <= r.upper and r.converged
    True
    """
    check_choice(margin, "margin", MARGINS)
    check_choice(statistic, "statistic", STATISTICS)
    n = check_n(n)
    L = float(L)
    if not math.isfinite(L):
        raise ValueError(f"L must be finite, got {L!r}")
    tol = float(tol)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    pihi = 1.0 if pi_max is None else float(pi_max)
    if not (0.0 <= pihi <= 1.0):
        raise ValueError(f"pi_max must lie in [0, 1], got {pi_max!r}")
    if margin == "taylor" and pihi < 1.0:
        raise ValueError("pi_max (Berger–Boos) is supported for the linear and probit margins only")
    kvec = threshold_table(n, t_obs, statistic, taylor_order)
    acoef, ccoef, H = taylor_tables(taylor_order)
    lo_r, hi_r = margin_range(margin, taylor_order)
    if margin == "probit" and not (lo_r <= L <= hi_r):
        raise ValueError(f"L must lie in [{lo_r}, {hi_r}] for the probit margin, got {L!r}")
    if L < lo_r:  # linear / Taylor: the null set {g(q) <= L} is empty
        return SupResult(upper=0.0, lower=0.0, maximiser=(float("nan"),) * 3, L=L, t_obs=float(t_obs),
                         n=n, margin=margin, statistic=statistic, nodes=0, converged=True)
    Lc = min(L, hi_r)  # above the range the null set is the whole simplex, as at the top
    st, ub, lb, bu, q1, q2, nodes = _bnb_call(_KIND[margin], Lc, n, kvec, acoef,
                                         ccoef, H, pihi, 0.0, 1, tol, int(max_nodes), np.nan, LOG_PRUNE_MASS)
    if q1 != q1:
        mx = (float("nan"),) * 3
    else:
        mx = (float(q1), float(q2), float(max(0.0, 1.0 - q1 - q2)))
    return SupResult(upper=float(ub), lower=float(lb), maximiser=mx, L=L, t_obs=float(t_obs), n=n,
                     margin=margin, statistic=statistic, nodes=int(nodes), converged=(st == 2),
                     gamma=0.0)


# Python callers use the kernels compiled ahead of time when they are built (confbounds.aot)
(_approx_sup_call, _sweep_call, _bnb_call, invert_core_call, _h_call, _h_array_call) = aot.bind(
    _approx_sup, _sweep, _bnb, invert_core, _h, _h_array)
