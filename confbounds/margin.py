"""Lower confidence bounds on the margin of a trinomial (theory §4).

``X = (X1, X2, X3) ~ Mult(n; q1, q2, q3)`` counts the top class, a competing
class (or bucket of classes) and the rest.  :func:`margin_lower_bound`
returns a lower bound ``theta_lo`` with ``P(theta_lo <= g(q)) >= 1 - alpha``
for every ``q`` and every ``n`` (theory §2.1), for

* ``margin="linear"``: ``g(q) = q1 - q2`` (first radius);
* ``margin="probit"``: ``g(q) = Phi^{-1}(q1) - Phi^{-1}(q2)`` (second radius;
  ``-inf`` when ``q1 = 0``, ``+inf`` when ``q2 = 0 < q1``);
* ``margin="taylor"``: a lower bound of the *probit* margin by the report's
  Taylor route (theory §4.6), see below.

Methods
-------
``method="exact"`` inverts the exact test of theory §4.2: ``H0(L): g(q) <= L`` is
rejected when the certified supremum (:mod:`confbounds.nuisance`) of
``P_q(T >= t_obs)`` over ``H0(L)`` is ``<= alpha``; the tail includes the
observed value (the report's ``P(theta_hat <= theta_obs)``, theory §8.1, is not
offered).  The supremum is nondecreasing in ``L``; the search brackets the
answer from a normal-approximation guess, stepping down as far as the bottom
of the range (``-1``, ``-40`` for the probit margin: theory §8.2), then bisects
until the bracket is narrower than ``tol`` (default ``1e-3`` standard errors).  A
tested ``L`` whose supremum cannot be placed on one side of ``alpha`` once it
is bracketed within a relative ``UNDECIDED_RTOL = 1e-2``, or within the node
budget, counts as not rejected (conservative).  The returned value is the left
end of the bracket, an ``L`` at which rejection was *certified*, so the result
is valid whatever ``tol`` (``tol`` only costs tightness).  If even the bottom
is not rejected the trivial bound (``-1``, ``-inf``) is returned.  For the
probit margin with ``T(x) <= 0`` (``x1 <= x2``) the bound is ``-inf``: the
closure of every ``H0(L)`` contains ``q = (0, 0, 1)``, where ``T = 0`` surely.

Dominating statistics (theory §4.7; the default)
-------------------------------------------------
``statistic="bonferroni"`` uses ``T(x) = B(x)``, the library's Bonferroni
pair bound of the same margin at the *same* ``alpha`` (below), and
``statistic="cohen"`` uses Cohen's ``B(x) = g(p, 1 - p)``, ``p =
CP_lo(x1, alpha)`` (valid because ``q2 <= 1 - q1``).  Theorem: if ``B`` is a
valid level-``alpha`` lower bound, every ``L < B(x)`` is rejected.  Proof:
for ``q`` with ``g(q) <= L < B(x)``, ``P_q(B(X) >= B(x)) <= P_q(B(X) > g(q))
<= alpha``.  So the exact inversion ``E(x)`` of the test with statistic
``B`` satisfies ``E(x) >= B(x)``; the search starts at ``B(x)`` and the
result is ``max(B(x), L_c)`` with ``L_c`` a certified rejection.  It is
valid (both are ``<= E(x)``, a valid bound) and it is ``>= B(x)`` *exactly*,
not within ``tol`` (branch ``"floor"`` when nothing above ``B(x)`` was
certified).  Both ``B`` are nondecreasing in ``x1`` and nonincreasing in
``x2``, so the tail set ``{B(X) >= t}`` is a staircase in ``(s, x1)``
(:func:`confbounds.trinomial.staircase_table`, a two-pointer sweep over the
verified Clopper–Pearson endpoints, computed once per ``(n, alpha)`` and only on
the range of counts the threshold needs: :func:`_pair_tables_for`) and the
curve reduction, box bound and branch-and-bound of theory §4.3 apply
unchanged.  The staircase is enlarged by a tie tolerance (a superset of the
tail set: conservative).  For ``"cohen"`` the statistic depends on ``x1``
only and the supremum over ``{g(q) <= L}`` sits at ``q = (p, 1 - p, 0)``
with ``g(p, 1 - p) = L``, so the exact inversion *equals* Cohen's bound: it
is returned directly.  For ``n > DOMINATING_MAX_N`` (2e5) the Bonferroni
staircase would need millions of Clopper–Pearson endpoints, and the bound is
``B(x)`` itself (branch ``"floor"``).  Berger–Boos (below) voids the
theorem (its p-value adds ``gamma``) and is refused with these statistics.

``method="bonferroni"`` combines two one-sided Clopper–Pearson bounds at
``alpha/2`` each: lower ``p1_lo`` on ``q1``, upper ``p2_hi`` on ``q2``; the
bound is ``p1_lo - p2_hi`` or ``Phi^{-1}(p1_lo) - Phi^{-1}(p2_hi)`` (union
bound: total failure ``<= alpha``).  ``statistic`` is unused there.

Taylor route (theory §4.6, report Algorithm 6 with the accounting fixed)
---------------------------------------------------------------------
With ``alpha1 = alpha_split * alpha`` and ``alpha2 = alpha - alpha1``
(``alpha1 + alpha2 = alpha``; default ``alpha_split = 0.5``): if the
one-sided Clopper–Pearson lower bound of ``q1`` at level ``alpha1`` exceeds
``1/2``, return a level-``alpha1`` lower bound of the Taylor margin
``Phi^{-1}_M(q1) - Phi^{-1}_M(q2)`` (exact test, or Bonferroni halves at
``alpha1/2``); otherwise the Bonferroni bound of the probit margin at level
``alpha2``.  Validity: if ``q1 >= 1/2`` the Taylor margin is ``<=`` the probit
margin (theory §6), so a miss needs the Taylor bound or the fallback to miss:
probability ``<= alpha1 + alpha2``; if ``q1 < 1/2`` a miss needs the test to
pass wrongly (``<= alpha1``) or the fallback to miss (``<= alpha2``).  The test
and the Taylor bound share ``alpha1`` because they are never both charged.
(The seed report's "fallback at alpha2, Taylor at alpha2, test at alpha1", theory §8.9, is valid
only with ``alpha2 <= alpha/2``: for ``q1 >= 1/2`` both branches can miss.)

Berger–Boos (theory §4.3)
----------------------
``berger_boos=gamma`` (a float in ``(0, alpha)``, or ``True`` for
``gamma = alpha/10``) restricts ``pi = q1 + q2`` to ``pi <= pi_hi``, the
one-sided ``1 - gamma`` Clopper–Pearson upper bound from ``X1 + X2``, and
rejects when the restricted supremum is ``<= alpha - gamma`` (Berger & Boos
1994: the p-value is the restricted supremum plus ``gamma``).  Linear and
probit margins only.

References
----------
Clopper, C. J. and Pearson, E. S. (1934). Biometrika 26(4), 404–413.
Berger, R. L. and Boos, D. D. (1994). JASA 89(427), 1012–1016.
Salman et al. (2019), NeurIPS (the probit margin ``R2``); Cohen et al. (2019), ICML.
"""
from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from scipy import special

from ._validate import check_alpha, check_choice, check_integer_array
from .binomial import binomial_tail_bound, clopper_pearson, clopper_pearson_estimate
from .nuisance import MARGIN_KIND, MARGINS, invert_fast, margin_range, taylor_probit, taylor_tables
from .trinomial import (DEFAULT_TAYLOR_ORDER, LOG_PRUNE_MASS, STATISTICS as TAIL_STATISTICS,
                        check_taylor_order, compact_difference_table, observed_statistic, staircase_table,
                        threshold_table)

__all__ = ["margin_lower_bound", "MarginBound", "METHODS", "MARGINS", "STATISTICS", "DOMINATING_STATISTICS",
           "DEFAULT_STATISTIC", "baseline_bound", "clear_caches"]

METHODS = ("exact", "bonferroni")
#: Statistics that are themselves a valid baseline bound at the same level (theory §4.7).
DOMINATING_STATISTICS = ("bonferroni", "cohen")
STATISTICS = DOMINATING_STATISTICS + TAIL_STATISTICS
#: Default statistic of ``method="exact"``: the result is never below the Bonferroni bound.
DEFAULT_STATISTIC = "bonferroni"
#: Largest ``n`` at which the Bonferroni statistic's staircase is built: it needs ``2 (n + 1)``
#: Clopper–Pearson endpoints (about 0.6 s at n = 1e5, cached per ``(n, level)``).  Above it the
#: inversion is skipped and the bound is ``B(x)`` itself (valid: theory §4.7).
DOMINATING_MAX_N = 200_000
#: Values of a dominating statistic within ``DOMINATING_TIE_RTOL * (1 + |t|)`` below the observed
#: value count as ties and go in the tail (a superset of the tail set: conservative, see
#: :func:`_dominating_kvec`).
DOMINATING_TIE_RTOL = 1e-9
_EPS = float(np.finfo(float).eps)
#: Default bisection tolerance on L, in (approximate) standard errors of the estimate.
TOL_SE = 1e-3
#: A tested L is "undecided" (hence not rejected: conservative) once the branch-and-bound
#: brackets the supremum within this relative width around the threshold; at most about
#: ``UNDECIDED_RTOL / z_alpha`` standard errors of tightness are lost.
UNDECIDED_RTOL = 1e-2
#: Locate-then-certify: certify at the L where the located supremum is about
#: ``thr * exp(-CERT_GAP)`` (2% below the threshold; about ``CERT_GAP / z_alpha``
#: standard errors of tightness).
CERT_GAP = 0.02
#: Binomial tails are pruned where the neglected (and added-back) mass is below
#: ``PRUNE_FRACTION * level`` (or 1e-17 if larger): it inflates the certified
#: supremum by at most a few ``1e-4`` relative, well inside ``CERT_GAP`` (2e-2) and the
#: undecided band ``0.25 (1 - exp(-CERT_GAP))`` (5e-3).  Raised from 1e-7: the
#: Chernoff windows shrink from about 6.8 to 5.5 standard deviations at alpha = 1e-3,
#: about 1.2-1.5x fewer terms per tail (``benchmarks/exact_speed.py``).
PRUNE_FRACTION = 1e-4
#: Default Berger–Boos slack as a fraction of the level, used with ``berger_boos=True``.
BERGER_BOOS_FRACTION = 0.1


@dataclass(frozen=True)
class MarginBound:
    """Full result of :func:`margin_lower_bound` (``full=True``), for audit.

    Attributes
    ----------
    bound : float
        The lower confidence bound (``-inf`` possible for probit/taylor).
    margin, method, statistic : str
    alpha : float
        Total failure probability of :attr:`bound`.
    x1, x2, n : int
    branch : str
        ``"exact"``, ``"bonferroni"``, ``"trivial"`` (nothing rejected, or the
        probit closure case ``x1 <= x2`` of the difference statistic),
        ``"floor"`` (dominating statistic: the bound is ``B(x)``, see the
        module docstring), or for the Taylor route
        ``"taylor-exact"``, ``"taylor-bonferroni"``, ``"fallback"``.
    level : float
        Level at which the returned branch was computed (``alpha``, ``alpha1``
        or ``alpha2``).
    alpha_test : float
        Level of the ``q1 >= 1/2`` test (Taylor route; else 0).
    gamma : float
        Berger–Boos slack (0 when off).
    t_obs : float
        Observed statistic (exact branches; ``B(x)`` for a dominating statistic).
    sup : float
        Certified upper bound of the nuisance supremum at ``L = bound``
        (``<= level - gamma``), NaN when not applicable.
    sup_lower : float
        Tail value (certified lower bound) at :attr:`maximiser`.
    maximiser : tuple of 3 floats
        Best nuisance point found at ``L = bound``.
    tol : float
        Bisection tolerance on ``L`` (the bound is within ``tol`` of the
        exact inversion, below it).
    nodes : int
        Tail evaluations used.
    """

    bound: float
    margin: str
    method: str
    statistic: str
    alpha: float
    x1: int
    x2: int
    n: int
    branch: str
    level: float
    alpha_test: float = 0.0
    gamma: float = 0.0
    t_obs: float = float("nan")
    sup: float = float("nan")
    sup_lower: float = float("nan")
    maximiser: Tuple[float, float, float] = (float("nan"),) * 3
    tol: float = float("nan")
    nodes: int = 0


def _count(v, name):
    """A scalar non-negative integer count (fast path for Python/NumPy ints)."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        iv = int(v)
        if iv < 0:
            raise ValueError(f"{name} must be non-negative, got {v!r}")
        return iv
    arr = np.asarray(v)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar count, got shape {arr.shape}")
    return int(check_integer_array(v, name))


def _check_inputs(x1, x2, n, alpha):
    x1i, x2i, ni = _count(x1, "x1"), _count(x2, "x2"), _count(n, "n")
    if ni < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    for v, iv, name in ((x1, x1i, "x1"), (x2, x2i, "x2")):
        if iv > ni:
            raise ValueError(f"{name} must be <= n, got {name}={v!r} with n={n!r}")
    if x1i + x2i > ni:
        raise ValueError(f"x1 + x2 must be <= n, got x1={x1!r}, x2={x2!r}, n={n!r}")
    return x1i, x2i, ni, check_alpha(alpha)


def _scalar_cp(k, n, level, side) -> float:
    """Scalar one-sided Clopper–Pearson endpoint: the library's one implementation (theory §3)."""
    return float(clopper_pearson(int(k), int(n), float(level), side))


def _down(v: float, k: int = 2) -> float:
    for _ in range(k):
        v = float(np.nextafter(v, -np.inf))
    return v


def _transform(p, margin, M):
    """The margin's coordinate map: ``p`` (linear), ``Phi^{-1}(p)`` (probit), ``Phi^{-1}_M(p)`` (taylor)."""
    if margin == "linear":
        return p
    if margin == "probit":
        return special.ndtri(p)
    return taylor_probit(p, M)


def _combine(a: float, b: float, margin: str) -> float:
    """``a - b`` rounded down: 2 ulps (linear), ``1e-12 (1 + |a| + |b|)`` (probit/taylor: ndtri and
    the Horner sum are accurate to ~1e-15 relative)."""
    if margin == "linear":
        return _down(a - b)
    if a == -math.inf or b == math.inf:
        return -math.inf
    return a - b - 1e-12 * (1.0 + abs(a) + abs(b))


def _bonferroni(x1, x2, n, level, margin, M=None) -> float:
    """Two Clopper–Pearson halves at level/2; the difference rounded down (theory §4.7's pair bound)."""
    lo1 = _scalar_cp(x1, n, level / 2.0, "lower")
    hi2 = _scalar_cp(x2, n, level / 2.0, "upper")
    if margin == "probit" and (lo1 <= 0.0 or hi2 >= 1.0):
        return -math.inf
    if margin == "linear":
        return _down(lo1 - hi2)
    return _combine(float(_transform(lo1, margin, M)), float(_transform(hi2, margin, M)), margin)


def _cohen(x1, n, level, margin, M=None) -> float:
    """Cohen's one-sided bound ``g(p, 1 - p)`` at ``p = CP_lo(x1, level)``: ``2p - 1``, ``2 Phi^{-1}(p)``,
    ``2 Phi^{-1}_M(p)``; valid because ``q2 <= 1 - q1`` and each margin is antisymmetric about 1/2."""
    lo1 = _scalar_cp(x1, n, level, "lower")
    if margin == "linear":
        return _down(2.0 * lo1 - 1.0)
    if margin == "probit" and lo1 <= 0.0:
        return -math.inf
    a = float(_transform(lo1, margin, M))
    return _combine(a, -a, margin)


def baseline_bound(x1, x2, n, alpha, margin: str = "linear", statistic: str = "bonferroni",
                   taylor_order: Optional[int] = None) -> float:
    """The baseline ``B(x)`` that a dominating statistic uses, at level ``alpha`` (theory §4.7).

    ``statistic="bonferroni"``: ``g(CP_lo(x1, alpha/2), CP_hi(x2, alpha/2))``
    (union bound over the two halves); ``"cohen"``: ``g(p, 1 - p)``,
    ``p = CP_lo(x1, alpha)`` (``2 Phi^{-1}(p)`` for the probit margin).  Both
    are rounded down (:func:`_combine`).  ``margin_lower_bound(...,
    statistic=s)`` with ``method="exact"`` is never below
    ``baseline_bound(..., statistic=s)``.

    References
    ----------
    Clopper and Pearson (1934); Cohen, Rosenfeld and Kolter (2019), ICML.

    Examples
    --------
    >>> b = baseline_bound(80, 10, 100, 0.05)
    >>> b == margin_lower_bound(80, 10, 100, 0.05, method="bonferroni")
    True
    >>> margin_lower_bound(80, 10, 100, 0.05) >= b
    True
    """
    check_choice(margin, "margin", MARGINS)
    check_choice(statistic, "statistic", DOMINATING_STATISTICS)
    x1, x2, n, alpha = _check_inputs(x1, x2, n, alpha)
    M = DEFAULT_TAYLOR_ORDER if taylor_order is None else check_taylor_order(taylor_order)
    return _baseline(x1, x2, n, alpha, margin, statistic, M)


def _baseline(x1, x2, n, level, margin, statistic, M):
    if statistic == "bonferroni":
        return _bonferroni(x1, x2, n, level, margin, M)
    return _cohen(x1, n, level, margin, M)


@lru_cache(maxsize=16)
def _cp_store(n, level):
    """Verified ``CP_lo(x, level/2)`` and ``CP_hi(x, level/2)``, ``x = 0..n``, filled on demand (NaN = not
    computed yet), and ``[number of entries still missing]``.  Shared by every margin and every observed
    value at this ``(n, level)``."""
    return np.full(n + 1, np.nan), np.full(n + 1, np.nan), [2 * (n + 1)]


def _cp_range(n, level, side, a, b):
    """Verified ``CP_side(x, n, level/2)`` for ``x = a..b-1``, each endpoint computed once per ``(n, level)``."""
    lo, hi, missing = _cp_store(n, level)
    tab = lo if side == "lower" else hi
    seg = tab[a:b]
    miss = np.isnan(seg)
    if miss.any():
        k = np.arange(a, b, dtype=np.int64)[miss]
        seg[miss] = np.asarray(clopper_pearson(k, n, level / 2.0, side), dtype=float)
        missing[0] -= int(k.size)
    return seg.copy()


def _g_of(p, margin, M):
    with np.errstate(divide="ignore"):
        return np.asarray(_transform(p, margin, M), dtype=float)


@lru_cache(maxsize=32)
def _pair_tables(n, level, margin, M):
    """The full tables ``A[x1] = g(CP_lo(x1, level/2))``, ``Bv[x2] = g(CP_hi(x2, level/2))``, ``x = 0..n``,
    made monotone in the conservative direction (``A`` by a running max, ``Bv`` by a running min from
    the right: both can only raise ``T = A - Bv``); read-only, cached per ``(n, level, margin)``.
    Building them fills the store, after which :func:`_dominating_kvec` reads them instead of
    building partial ones (:func:`_pair_tables_for`)."""
    A = np.maximum.accumulate(_g_of(_cp_range(n, level, "lower", 0, n + 1), margin, M))
    Bv = np.minimum.accumulate(_g_of(_cp_range(n, level, "upper", 0, n + 1), margin, M)[::-1])[::-1].copy()
    A.setflags(write=False)
    Bv.setflags(write=False)
    return A, Bv


#: Up to this ``n`` the Bonferroni staircase is read from the full tables (``2 (n + 1)`` endpoints, a few
#: milliseconds, once per ``(n, level)``); above it, from partial tables until the store is complete.
DOMINATING_FULL_N = 1000


def _search(lo, hi, pred):
    """Smallest ``k`` in ``[lo, hi]`` with ``pred(k)`` for a (heuristically) monotone ``pred``; ``hi + 1`` if none."""
    while lo <= hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid - 1
        else:
            lo = mid + 1
    return lo


#: Extra counts kept on each side of the estimated range of :func:`_pair_tables_for` (heuristic:
#: validity does not depend on it, only on the proven constants outside the range).
RANGE_SLACK = 3
#: Relative margin on the threshold when the range of :func:`_pair_tables_for` is chosen (heuristic).
RANGE_RTOL = 1e-7


def _upper_root_floor(k, n, level):
    """A proven lower bound on the exact root ``r_hi(k)`` of ``P_p(X <= k) = level/2`` (``k < n``).

    A point ``p`` just below SciPy's estimate with ``P_p(X <= k) >= level/2`` verified by
    :func:`confbounds.binomial.binomial_tail_bound` (value minus its error bound); the tail
    decreases in ``p``, so ``p <= r_hi(k)``.  Falls back to the verified ``CP_lo(k, level/2)``
    (``<= r_lo(k) <= r_hi(k)``), which is always valid but a confidence width lower.
    """
    h = level / 2.0
    p = clopper_pearson_estimate(k, n, h, "upper")
    for shrink in (1e-9, 1e-6, 1e-3):
        q = p * (1.0 - shrink)
        if not 0.0 < q < 1.0:
            break
        v, e = binomial_tail_bound(k, n, q, "upper")
        if float(v) - float(e) >= h:
            return q
    return float(_cp_range(n, level, "lower", k, k + 1)[0])


def _pair_tables_for(n, t_eff, level, margin, M):
    """``A``, ``Bv`` for the staircase of ``{A[x1] - Bv[x2] >= t_eff}``, with verified endpoints only where
    the threshold needs them (theory §4.7).

    Verified Clopper–Pearson endpoints (at ``h = level/2``) are computed for ``x1`` in
    ``[i0, i1]`` and ``x2`` in ``[0, j0]``; SciPy's unverified inverse beta
    (:func:`confbounds.binomial.clopper_pearson_estimate`) only chooses the range (validity does
    not depend on it).  Outside it the tables hold proven bounds, so ``A`` stays
    ``>= g(CP_lo(x1))`` and ``Bv <= g(CP_hi(x2))`` everywhere (the staircase's set still contains
    ``{B(x) >= t}``):

    * ``x1 < i0``: ``A = g(CP_hi(i0 - 1))``.  ``CP_lo(x1) <= r_lo(x1) <= r_lo(i0 - 1) <= r_hi(i0 - 1)
      <= CP_hi(i0 - 1)``, with ``r`` the exact roots: verified endpoints lie on the safe side of
      their roots, the roots increase with the count, and ``r_lo(k) <= r_hi(k)`` for ``h <= 1/2``
      (at ``p = r_hi(k)``, ``P(X >= k) >= 1 - h >= h``).
    * ``x1 > i1``: ``A = 1e300`` (above every finite ``g``).
    * ``x2 > j0``: ``Bv = g(p')`` with ``p' <= r_hi(j0 + 1) <= r_hi(x2) <= CP_hi(x2)``
      (:func:`_upper_root_floor`).

    The range is chosen so that these constants lie on the far side of the threshold, where they
    change nothing: then the staircase equals the one of the full tables.
    """
    h = level / 2.0

    def est(k, side):
        p = clopper_pearson_estimate(k, n, h, side)
        return p if margin == "linear" else float(_transform(p, margin, M))

    d = RANGE_RTOL * (1.0 + abs(t_eff))
    b0 = est(0, "upper")
    # x1 below i0 cannot reach t_eff even against x2 = 0; x1 above i1 reaches it even with x2 = n - x1
    i0 = max(_search(0, n, lambda k: est(k, "upper") - b0 >= t_eff - d) - RANGE_SLACK, 0)
    i1 = min(_search(i0, n, lambda k: est(k, "lower") - est(n - k, "upper") >= t_eff + d) + RANGE_SLACK, n)
    # x2 above j0 cannot reach t_eff with any x1 <= min(i1, n - x2) (x1 > i1 is in the set anyway);
    # one proven lower bound of their upper endpoints, g(p') with p' <= r_hi(j0 + 1), stands for all of them
    j0 = min(_search(0, n - 1, lambda k: est(min(i1, n - k - 1), "lower") - est(k + 1, "upper") < t_eff - d)
             + RANGE_SLACK, n)
    A = np.empty(n + 1)
    if i0 > 0:
        A[:i0] = _g_of(_cp_range(n, level, "upper", i0 - 1, i0)[0], margin, M)
    A[i0:i1 + 1] = _g_of(_cp_range(n, level, "lower", i0, i1 + 1), margin, M)
    A[i1 + 1:] = 1e300
    Bv = np.empty(n + 1)
    Bv[:j0 + 1] = _g_of(_cp_range(n, level, "upper", 0, j0 + 1), margin, M)
    if j0 < n:
        Bv[j0 + 1:] = _g_of(_upper_root_floor(j0 + 1, n, level), margin, M)
    A = np.maximum.accumulate(A)
    Bv = np.minimum.accumulate(Bv[::-1])[::-1].copy()
    return A, Bv


def _dominating_kvec(n, t, level, margin, statistic, M):
    """Threshold table ``k(s)`` of the tail set ``{x : B(x) >= t}`` of a dominating statistic, enlarged.

    The set used is ``{x : A[x1] - Bv[x2] >= t - DOMINATING_TIE_RTOL (1 + |t|)}`` with the tables
    of :func:`_pair_tables_for` (Cohen: ``A = 2 g-coordinate``, ``Bv = 0``).  It contains
    ``{x : B(x) >= t}``: the tables only raise ``T`` (proven bounds outside the computed range,
    monotone envelopes inside), and the tie tolerance exceeds the rounding margins of
    :func:`_combine` (``<= 1e-12 (1 + 2 * 40)``) and any disagreement between the scalar and
    vectorised Clopper–Pearson paths.  A larger tail set only raises the certified supremum
    (conservative), and it is a staircase, so theory §4.3's curve reduction applies to it.
    """
    t_eff = t - DOMINATING_TIE_RTOL * (1.0 + abs(t))
    if statistic == "cohen":
        # T depends on x1 only: k(s) = min(k*, s + 1), k* the smallest x1 with T(x1) >= t_eff
        lo_k, hi_k = 0, n + 1
        while lo_k < hi_k:
            mid = (lo_k + hi_k) // 2
            p = _scalar_cp(mid, n, level, "lower")
            a = 2.0 * float(_transform(p, margin, M)) if not (margin == "probit" and p <= 0.0) else -math.inf
            if a >= t_eff:
                hi_k = mid
            else:
                lo_k = mid + 1
        return np.minimum(np.arange(n + 1, dtype=np.int64) + 1, lo_k)
    if n <= DOMINATING_FULL_N or _cp_store(n, level)[2][0] == 0:
        A, Bv = _pair_tables(n, level, margin, M)
    else:
        A, Bv = _pair_tables_for(n, t_eff, level, margin, M)
    return staircase_table(A, Bv, t_eff)


def _guess(t, n, level, margin, statistic, x1, x2, H):
    """Normal-approximation starting point and scale of the search (validity does not depend on it).

    For the difference statistic it depends on ``t = x1 - x2`` only (the
    exact bound is a function of ``t``), using the variance at ``pi = 1``,
    where the supremum usually sits.
    """
    z = float(special.ndtri(1.0 - level)) if level < 0.5 else 0.0
    d = (t / n) if statistic == "difference" else (x1 - x2) / n
    se = math.sqrt(max(1.0 - d * d, 1.0 / n) / n)
    g = min(max(d - z * se, -1.0), 1.0)
    if margin == "linear":
        return g, se
    # probit / taylor: at pi = 1 the curve point is q1 = Phi(L/2), so L = 2 Phi^{-1}((1 + d)/2)
    p = min(max((1.0 + g) / 2.0, 0.5 / n), 1.0 - 0.5 / n)
    m = float(special.ndtri(p))
    dens = max(math.exp(-m * m / 2) / 2.5066282746310002, 1e-300)
    g2 = 2.0 * m
    se2 = se / dens
    if margin == "taylor":
        g2 = min(max(g2, -2 * H), 2 * H)
    return g2, se2


@lru_cache(maxsize=8192)
def _exact_cached(t, n, level, margin, statistic, M, gamma, pihi, guess, se, tol, max_nodes, floor):
    acoef, ccoef, H = taylor_tables(M)
    lo_r, hi_r = margin_range(margin, M)
    if floor > lo_r:
        lo_r = floor  # every L < floor is rejected (theory §4.7): search above it
    if tol is None:
        tol = TOL_SE * max(se, 1.0 / n)
    step0 = 0.5 * max(se, 1.0 / n)
    if statistic in DOMINATING_STATISTICS:
        kvec = _dominating_kvec(n, t, level, margin, statistic, M)
    elif statistic == "difference":
        kvec = compact_difference_table(n, t)  # O(1) memory at any n
    else:
        kvec = threshold_table(n, t, statistic, M)
    res = invert_fast(MARGIN_KIND[margin], n, kvec, acoef, ccoef, H, pihi,
                      level - gamma, lo_r, hi_r, float(guess), float(step0), float(tol), int(max_nodes),
                      max(LOG_PRUNE_MASS, math.log(PRUNE_FRACTION * (level - gamma))), CERT_GAP, 20 * int(max_nodes))
    return tuple(float(v) for v in res[:6]) + (int(res[6]), int(res[7]), float(tol))


def _exact(x1, x2, n, level, margin, statistic, M, gamma, tol, max_nodes):
    """Exact inversion at ``level``; returns a dict of MarginBound fields.

    Results are memoised on everything they depend on (for the difference
    statistic that is ``t = x1 - x2``, not ``x1`` and ``x2`` separately).

    Dominating statistics (theory §4.7): ``t_obs = B(x)``, the baseline at
    the same level; every ``L < B(x)`` is rejected, so the search starts at
    ``B(x)`` and the result is ``max(B(x), certified inversion)``.
    """
    H = taylor_tables(M)[2]
    lo_r, hi_r = margin_range(margin, M)
    trivial = {"linear": -1.0, "probit": -math.inf, "taylor": lo_r}[margin]
    floor = -math.inf
    if statistic in DOMINATING_STATISTICS:
        floor = _baseline(x1, x2, n, level, margin, statistic, M)
        t = floor
        out = dict(t_obs=float(t), gamma=gamma, level=level)
        fl = dict(out, bound=max(floor, trivial), branch="floor", tol=0.0, nodes=0)
        # Cohen: T depends on x1 only and the supremum over {g <= L} is at q1 = g^{-1}-point of
        # (q1, 1 - q1), so the exact inversion *equals* Cohen's bound (theory §4.7): nothing to search.
        if (statistic == "cohen" or floor == -math.inf or floor >= hi_r or floor <= lo_r
                or n > DOMINATING_MAX_N):
            return fl
    else:
        t = observed_statistic(x1, x2, n, statistic, M)
        out = dict(t_obs=float(t), gamma=gamma, level=level)
        if margin == "probit" and t <= 0:
            return dict(out, bound=-math.inf, branch="trivial", tol=0.0, nodes=0)
    pihi = 1.0
    if gamma > 0.0:
        pihi = _scalar_cp(x1 + x2, n, gamma, "upper")
    guess, se = _guess(t, n, level, margin, statistic, x1, x2, H)
    guess = max(guess, floor)
    L, st, ub, lb, q1, q2, nodes, bottom, tol = _exact_cached(
        t, n, level, margin, statistic, M, gamma, pihi, guess, se, tol, max_nodes, floor)
    if bottom or L <= floor:
        if statistic in DOMINATING_STATISTICS:
            return dict(fl, tol=tol, nodes=nodes)
        return dict(out, bound=trivial, branch="trivial", tol=tol, nodes=nodes)
    mx = (q1, q2, max(0.0, 1.0 - q1 - q2)) if q1 == q1 else (float("nan"),) * 3
    return dict(out, bound=L, branch="exact", sup=ub, sup_lower=lb, maximiser=mx, tol=tol, nodes=nodes)


def margin_lower_bound(x1, x2, n, alpha, margin: str = "linear", method: str = "exact",
                       statistic: str = DEFAULT_STATISTIC, taylor_order: Optional[int] = None,
                       berger_boos=None, full: bool = False, *, alpha_split: float = 0.5,
                       tol: Optional[float] = None, max_nodes: int = 400):
    """Lower confidence bound on the margin ``g(q)`` of ``X ~ Mult(n; q1, q2, q3)``.

    Parameters
    ----------
    x1, x2 : int
        Counts of the top class and of the competitor; ``x3 = n - x1 - x2``.
    n : int
        Number of trials (estimation samples only: the classes must have been
        chosen on independent selection samples, theory §1).
    alpha : float in (0, 1)
        Total failure probability: ``P(bound <= g(q)) >= 1 - alpha`` for all q.
    margin : {"linear", "probit", "taylor"}
        ``q1 - q2``, ``Phi^{-1}(q1) - Phi^{-1}(q2)``, or the probit margin via
        the Taylor route (module docstring).
    method : {"exact", "bonferroni"}
    statistic : {"bonferroni", "cohen", "difference", "plugin", "studentized"}
        Test statistic of the exact method (any monotone statistic gives a
        valid bound, theory §4.1).  Default ``"bonferroni"``: ``T(x) = B(x)``,
        the Bonferroni pair bound of the same margin at the same ``alpha``
        (:func:`baseline_bound`); ``"cohen"``: Cohen's ``g(p, 1 - p)``,
        ``p = CP_lo(x1, alpha)`` (``2 Phi^{-1}(p)`` for the probit margin).
        With these two the result is ``>= B(x)`` on every input, exactly
        (module docstring, "Dominating statistics").  ``"difference"``:
        ``X1 - X2``; ``"plugin"``: ``Phi^{-1}_M(X1/n) - Phi^{-1}_M(X2/n)``;
        ``"studentized"``: ``(X1 - X2)/sqrt(X1 + X2 + 1)``.
    taylor_order : int, optional
        ``M`` of ``Phi^{-1}_M`` (Taylor margin, plug-in statistic); default 100.
    berger_boos : None, bool or float
        Berger–Boos slack ``gamma`` (``True``: ``alpha/10``); exact method,
        linear and probit margins, statistics ``"difference"``, ``"plugin"``
        and ``"studentized"`` only (it voids the dominance theorem, so it is
        refused with ``"bonferroni"`` and ``"cohen"``).
    full : bool
        Return a :class:`MarginBound` instead of the float.
    alpha_split : float in (0, 1), keyword-only
        Taylor route: ``alpha1 = alpha_split * alpha`` for the ``q1 >= 1/2``
        test and the Taylor bound, ``alpha2 = alpha - alpha1`` for the fallback.
    tol : float, keyword-only
        Bisection tolerance on ``L`` (default ``1e-3`` standard errors).
    max_nodes : int, keyword-only
        Tail evaluations allowed per tested ``L``; an undecided ``L`` counts
        as not rejected (conservative).

    Returns
    -------
    float or MarginBound

    Raises
    ------
    ValueError
        Negative or non-integer counts, ``x1 + x2 > n``, ``alpha`` outside
        (0, 1), unknown ``margin``/``method``/``statistic``, bad ``berger_boos``.

    Examples
    --------
    >>> b = margin_lower_bound(80, 10, 100, 0.05)
    >>> bonf = margin_lower_bound(80, 10, 100, 0.05, method="bonferroni")
    >>> 0.5 < bonf < b < 0.7
    True
    >>> margin_lower_bound(90, 5, 100, 0.001, margin="probit") > margin_lower_bound(
    ...     90, 5, 100, 0.001, margin="probit", method="bonferroni")
    True
    >>> margin_lower_bound(3, 5, 10, 0.05, margin="probit", statistic="difference")
    -inf
    """
    check_choice(margin, "margin", MARGINS)
    check_choice(method, "method", METHODS)
    check_choice(statistic, "statistic", STATISTICS)
    x1, x2, n, alpha = _check_inputs(x1, x2, n, alpha)
    M = DEFAULT_TAYLOR_ORDER if taylor_order is None else check_taylor_order(taylor_order)
    split = float(alpha_split)
    if not (0.0 < split < 1.0):
        raise ValueError(f"alpha_split must lie in (0, 1), got {alpha_split!r}")
    if tol is not None and not (float(tol) > 0):
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if isinstance(max_nodes, bool) or int(max_nodes) < 8:
        raise ValueError(f"max_nodes must be an integer >= 8, got {max_nodes!r}")

    gamma = 0.0
    if berger_boos is not None and berger_boos is not False:
        if method != "exact":
            raise ValueError(f"berger_boos applies to method='exact' only, got method={method!r}")
        if margin == "taylor":
            raise ValueError("berger_boos is supported for the linear and probit margins, got margin='taylor'")
        if berger_boos is True:
            gamma = BERGER_BOOS_FRACTION * alpha
        else:
            try:
                gamma = float(berger_boos)
            except (TypeError, ValueError):
                raise ValueError(f"berger_boos must be None, a bool or a float in (0, alpha), got {berger_boos!r}") from None
            if not (0.0 < gamma < alpha):
                raise ValueError(f"berger_boos must lie in (0, alpha={alpha}), got {berger_boos!r}")
        if statistic in DOMINATING_STATISTICS:
            raise ValueError(f"berger_boos does not combine with statistic={statistic!r} (the restricted test "
                             "voids the dominance theorem); pass statistic='difference'")

    base = dict(margin=margin, method=method, statistic=statistic, alpha=alpha, x1=x1, x2=x2, n=n)
    if margin == "taylor":
        a1 = split * alpha
        a2 = alpha - a1
        base["alpha_test"] = a1
        passed = _scalar_cp(x1, n, a1, "lower") > 0.5
        if passed and method == "exact":
            r = _exact(x1, x2, n, a1, "taylor", statistic, M, 0.0, tol, max_nodes)
            if r["branch"] == "exact":
                r["branch"] = "taylor-exact"
            res = MarginBound(**base, **r)
        elif passed:
            res = MarginBound(**base, bound=_bonferroni(x1, x2, n, a1, "taylor", M),
                              branch="taylor-bonferroni", level=a1)
        else:
            res = MarginBound(**base, bound=_bonferroni(x1, x2, n, a2, "probit"), branch="fallback", level=a2)
    elif method == "bonferroni":
        res = MarginBound(**base, bound=_bonferroni(x1, x2, n, alpha, margin), branch="bonferroni", level=alpha)
    else:
        r = _exact(x1, x2, n, alpha, margin, statistic, M, gamma, tol, max_nodes)
        res = MarginBound(**base, **r)
    return res if full else res.bound


def clear_caches() -> None:
    """Forget every memoised result and table of this module (exact bounds, Clopper–Pearson stores, staircases).

    Only for measurements: a process that clears them pays what a fresh process pays.  Results never
    depend on the caches.
    """
    for obj in list(globals().values()):
        if callable(getattr(obj, "cache_clear", None)):
            obj.cache_clear()
