"""Anytime-valid decisions on the top-class probability and on the probit / linear margin, from count streams.

Everything here is a *confidence sequence* (CS): a family of bounds that holds simultaneously at every sample size
``t = 1, 2, ...`` with probability ``>= 1 - alpha``, so it may be read after every sample and the data may decide
when to stop (optional stopping).  Three constructions:

1. **Threshold tables for the beta-binomial mixture CS** (:func:`mixture_threshold_table`).  For a fixed boundary
   ``c`` (e.g. ``c = Phi(r / sigma)`` for Cohen's radius ``r``) the mixture CS of
   :mod:`confbounds.mixture` (Robbins 1970; Howard et al. 2021, Section 3) excludes ``c`` from below at time ``t``
   exactly when the success count ``k_t`` reaches an integer ``K_c(t)``.  Precomputing ``K_c(t)`` for
   ``t = 1..max_n`` makes a look cost one integer comparison (the idea of the precomputed thresholds of
   Voracek 2024, applied to the mixture).  The table also gives the *look-ahead* rule: ``r`` can still be
   certified before ``max_n`` only if ``k_t - t >= min_{s > t} (K_c(s) - s)`` (even if every remaining sample is a
   success); :attr:`ThresholdTable.unreachable` holds the largest count at which it cannot.

2. **Two one-sided CSs for the margin** (:func:`bonferroni_margin_cs`): a lower CS on ``p_A`` at ``alpha_A`` and an
   upper CS on each *bucket* of non-top classes at ``alpha_B / K`` (buckets chosen on the selection sample,
   :func:`selection_buckets`); ``alpha_A + alpha_B = alpha``.  Since every class lies in a bucket and ``p_k <=
   p_bucket``, ``max_b U_b >= max_{k != A} p_k`` on the event, and the probit margin ``Phi^-1(L_A) - Phi^-1(U_B)``
   (theory §7, ``R2 = sigma/2 (...)``) and the linear margin ``L_A - U_B`` (``R1``) are anytime-valid lower
   bounds.

3. **A joint Dirichlet-multinomial mixture CS on a trinomial** ``(A, bucket, rest)``
   (:func:`dirichlet_margin_certifies`, :func:`dirichlet_margin_lower`): the conjugate mixture of multinomial
   likelihood ratios
   ``M_t(q) = B(a + x) / (B(a) prod_i q_i^{x_i})`` (``B`` the multivariate beta function) is a non-negative
   martingale with ``M_0 = 1`` under ``q`` (the multinomial case of Robbins 1970 / Howard et al. 2021, Section 3),
   so ``{q : M_t(q) < 1/alpha}`` is a CS for the whole probability vector by Ville's inequality.  The margin
   ``g(q)`` (probit ``Phi^-1(q_1) - Phi^-1(q_2)`` or linear ``q_1 - q_2``) is bounded below by the infimum of ``g``
   over that set: one test instead of two Bonferroni halves.  Per bucket (``K`` buckets at ``alpha / K``, minimum
   over buckets) it is used like the fixed-n ``exact`` reduction (theory §7).

Certification of the joint bound (theory §4.3, adapted).  ``log M_t(q) = c_t - sum_i x_i log q_i`` is convex in
``q`` with its minimum (``<= 0``) at the maximum-likelihood point ``q_hat``.  If ``g(q_hat) > theta``, the minimum
of ``log M_t`` over ``{g(q) <= theta}`` is attained on the curve ``{g(q) = theta}`` (on the segment from any
``q`` with ``g(q) < theta`` to ``q_hat`` the convex function is at most its value at ``q``, and ``g`` crosses
``theta``).  On an interval of the curve's parameter, ``q_1`` and ``q_2`` increase and ``q_3`` decreases, so
``c_t - x_1 log q_1^max - x_2 log q_2^max - x_3 log q_3^max`` (the corner of the box) is a rigorous lower bound of
``log M_t``; a branch-and-bound on it certifies ``min >= log(1/alpha)`` (every ``q`` with ``g(q) <= theta`` is
outside the CS, so ``g(q) > theta`` on the event).  An undecided search (depth or budget exhausted) answers "not
certified": the bound can only lose.

Rounding (theory §2.4).  A point (or a box) counts as rejected only when ``log M - log(1/alpha) >= tol`` with
``tol = 1e-9 * (|c_t| + sum_i x_i |log q_i| + log(1/alpha)) + 1e-12``, far above the error of ``lgamma`` and the
sums; so rounding can only make a certificate harder to obtain.  Tables are built with the same rule.

References
----------
Robbins, H. (1970). Statistical methods related to the law of the iterated logarithm. Ann. Math. Statist. 41(5).
Howard, S. R., Ramdas, A., McAuliffe, J., Sekhon, J. (2021). Time-uniform, nonparametric, nonasymptotic
confidence sequences. Ann. Statist. 49(2), Section 3 (conjugate mixtures).
Ville, J. (1939). Etude critique de la notion de collectif.
Voracek, V. (2024). Treatment of statistical estimation problems in randomized smoothing for adversarial
robustness. NeurIPS 2024 (precomputed decision thresholds for sequential tests).
Cohen, Rosenfeld, Kolter (ICML 2019); Salman et al. (NeurIPS 2019) for the radii.

Examples
--------
>>> tab = mixture_threshold_table(0.9, 2000, alpha=0.001, prior=(1.0, 0.1))
>>> t = 500
>>> k = int(tab.certify[t])
>>> k <= t, tab.certified(k, t), tab.certified(k - 1, t)
(True, True, False)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .lazyjit import njit
import numpy as np
from scipy import special

from . import aot
from ._validate import check_alpha, check_choice, check_counts, check_integer_array
from .mixture import beta_binomial_cs, check_prior

__all__ = ["ThresholdTable", "mixture_threshold_table", "futile", "selection_buckets", "bonferroni_margin_cs",
           "margin_from_bounds", "dirichlet_margin_certifies", "dirichlet_margin_lower", "check_dirichlet_prior",
           "TOP_PRIOR", "BUCKET_PRIOR", "DIRICHLET_PRIOR", "TABLE_REL_TOL"]

#: Beta mixing prior for the top-class probability (mass near 1, where ``p_A`` of a good smoothed classifier
#: lives); any prior fixed before sampling keeps validity.
TOP_PRIOR = (1.0, 0.1)
#: Beta mixing prior for a bucket of non-top classes (mass near 0, the mirror image of :data:`TOP_PRIOR`).
BUCKET_PRIOR = (0.1, 1.0)
#: Dirichlet mixing prior on ``(q_A, q_bucket, q_rest)`` of the joint construction.
DIRICHLET_PRIOR = (1.0, 0.1, 0.1)
#: Relative safety margin of every rejection test here (module docstring, Rounding).
TABLE_REL_TOL = 1e-9
_ABS_TOL = 1e-12


# ------------------------------------------------------------------------------------------ threshold tables

def _log_m(k, t, c, a, b):
    """``log M_t(c)`` of the beta-binomial mixture and its rejection margin (arrays; ``0 < c < 1``)."""
    k = np.asarray(k, dtype=float)
    t = np.asarray(t, dtype=float)
    ct = special.betaln(a + k, b + t - k) - special.betaln(a, b)
    t1 = k * math.log(c)
    t2 = (t - k) * math.log1p(-c)
    return ct - t1 - t2, np.abs(ct) + np.abs(t1) + np.abs(t2)


def _rejected(k, t, c, a, b, log_thr):
    val, scale = _log_m(k, t, c, a, b)
    return val - log_thr >= TABLE_REL_TOL * (scale + log_thr) + _ABS_TOL


@dataclass(frozen=True)
class ThresholdTable:
    """Integer decision thresholds of the beta-binomial mixture CS for one boundary ``c``.

    Index ``t`` runs over ``0..max_n`` (entry 0 is a placeholder).  With ``k`` successes in ``t`` samples:

    Attributes
    ----------
    c, alpha, prior, max_n
        The boundary, the total level, the Beta prior and the horizon.
    final_share
        Share of alpha spent on a fixed-n Clopper-Pearson look at ``max_n`` (0: none; see
        :func:`mixture_threshold_table`).
    certify : ndarray of int64
        Smallest ``k`` with the CS's lower end ``> c`` (``t + 1`` when no count certifies at ``t``).
    refute : ndarray of int64
        Largest ``k`` with the CS's upper end ``< c`` (``-1`` when none).
    unreachable : ndarray of int64
        Largest ``k`` at which ``c`` cannot be certified at any ``s`` in ``(t, max_n]`` even if every remaining
        sample is a success (look-ahead; ``-1`` when every count can still reach it).  This is a statement about
        the procedure, not about ``p``: stopping on it needs no alpha.
    """

    c: float
    alpha: float
    prior: Tuple[float, float]
    max_n: int
    certify: np.ndarray
    refute: np.ndarray
    unreachable: np.ndarray
    final_share: float = 0.0

    def certified(self, k: int, t: int) -> bool:
        """``L_t > c`` (O(1))."""
        return bool(k >= self.certify[t])

    def refuted(self, k: int, t: int) -> bool:
        """``U_t < c`` (O(1))."""
        return bool(k <= self.refute[t])

    def reachable(self, k: int, t: int) -> bool:
        """Whether some continuation up to ``max_n`` can still certify ``c`` (O(1))."""
        return bool(k > self.unreachable[t])


def _cp_certify_count(c: float, n: int, level: float) -> int:
    """Smallest ``k`` with the one-sided Clopper-Pearson lower bound ``> c`` at ``n`` (``n + 1`` when none)."""
    from .binomial import clopper_pearson

    if not clopper_pearson(n, n, level) > c:
        return n + 1
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if clopper_pearson(mid, n, level) > c:
            hi = mid
        else:
            lo = mid + 1
    return lo


def mixture_threshold_table(c: float, max_n: int, alpha: float, prior=TOP_PRIOR,
                            final_share: float = 0.0) -> ThresholdTable:
    """Threshold table of the beta-binomial mixture CS (:func:`confbounds.mixture.beta_binomial_cs`) at ``c``.

    Parameters
    ----------
    c : float in (0, 1)
        Boundary, e.g. ``Phi(r / sigma)`` to decide Cohen's radius ``r``.
    max_n : int >= 1
        Horizon (last sample size tabulated).
    alpha : float
        Level of the CS: ``P(exists t: p < L_t or p > U_t) <= alpha``; both tables come from the same set, so
        certify and refute decisions at every ``t`` are jointly correct with probability ``>= 1 - alpha``.
    prior : (a, b)
        Beta mixing prior (default :data:`TOP_PRIOR`).
    final_share : float in [0, 1)
        Share ``s`` of alpha spent on one fixed-n look: the CS runs at ``(1 - s) alpha`` and, at ``t = max_n``
        only, a one-sided Clopper-Pearson lower bound at ``s alpha`` may also certify (``certify[max_n]`` is the
        smaller of the two counts).  Union bound: every decision at every ``t`` is correct with probability
        ``>= 1 - alpha`` (the Clopper-Pearson event is about the count at the fixed time ``max_n``, whether or not
        the procedure gets there).  Refutations use the CS only.  The idea is the one of group-sequential designs
        and of Horvath et al. (2022, staged sampling): the inputs that need every sample are decided by the
        sharper fixed-n bound.  Default 0 (the plain CS at ``alpha``).

    Returns
    -------
    ThresholdTable

    Notes
    -----
    ``c`` is excluded from below at ``(k, t)`` iff ``k > c t`` and ``log M_t(c) >= log(1/alpha)`` (with the safety
    margin of the module docstring).  ``log M_t(c)`` is convex in ``k`` and ``<= 0`` at ``k = c t`` (a mixture of
    likelihoods never exceeds the maximum likelihood), so for ``k >= c t`` the rejection set is ``{k >= K(t)}`` and
    a bisection over integers finds ``K(t)`` for all ``t`` at once; likewise ``{k <= R(t)}`` below ``c t``.
    ``c`` is excluded from below iff the lower end ``L_t`` of the (open) mixture set exceeds ``c`` (``log M`` is
    convex in ``p`` and ``<= 0`` at ``p_hat``), so the table reproduces ``beta_binomial_cs(k, t, alpha) > c``
    up to the (conservative) safety margin.  Cost: ``O(max_n log max_n)`` vectorised ``betaln`` calls.

    References
    ----------
    Howard et al. (2021), Section 3; Robbins (1970); Voracek (2024) for precomputed thresholds.

    Examples
    --------
    >>> from confbounds.mixture import beta_binomial_cs
    >>> tab = mixture_threshold_table(0.99, 5000, alpha=0.01, prior=(1.0, 0.1))
    >>> k = int(tab.certify[5000])
    >>> lo = beta_binomial_cs([k - 1, k], 5000, 0.01, prior=(1.0, 0.1))
    >>> bool(lo[1] > 0.99 >= lo[0])
    True
    """
    try:
        c = float(c)
    except (TypeError, ValueError):
        raise ValueError(f"c must be a number in (0, 1), got {c!r}") from None
    if not (0.0 < c < 1.0):
        raise ValueError(f"c must lie in the open interval (0, 1), got {c!r}")
    if isinstance(max_n, bool) or not isinstance(max_n, (int, np.integer)) or max_n < 1:
        raise ValueError(f"max_n must be an integer >= 1, got {max_n!r}")
    alpha = check_alpha(alpha)
    a, b = check_prior(prior)
    try:
        share = float(final_share)
    except (TypeError, ValueError):
        raise ValueError(f"final_share must be a number in [0, 1), got {final_share!r}") from None
    if not 0.0 <= share < 1.0:
        raise ValueError(f"final_share must lie in [0, 1), got {final_share!r}")
    log_thr = -math.log(alpha * (1.0 - share))
    t = np.arange(0, max_n + 1, dtype=np.int64)
    # certify: smallest k in [ceil(c t), t] rejected; t + 1 if none
    lo = np.minimum(np.ceil(c * t).astype(np.int64), t)
    hi = t + 1
    ok_top = _rejected(t, t, c, a, b, log_thr) & (t > c * t)
    hi = np.where(ok_top, t, hi)
    lo = np.where(ok_top, lo, hi)
    # invariant: answer in [lo, hi]; hi is rejected (or the sentinel)
    while True:
        act = lo < hi
        if not np.any(act):
            break
        mid = (lo + hi) // 2
        rej = _rejected(mid, t, c, a, b, log_thr) & (mid > c * t)
        hi = np.where(act & rej, mid, hi)
        lo = np.where(act & ~rej, mid + 1, lo)
    certify = hi
    certify[0] = 1  # t = 0: nothing certifies
    # refute: largest k in [0, floor(c t)] rejected; -1 if none
    lo = np.full_like(t, -1)
    hi = np.minimum(np.floor(c * t).astype(np.int64), t)
    ok_bot = _rejected(np.zeros_like(t), t, c, a, b, log_thr) & (t > 0)
    hi = np.where(ok_bot, hi, -1)
    lo = np.where(ok_bot, 0, -1)
    while True:  # invariant: lo rejected (or -1), answer in [lo, hi]
        act = lo < hi
        if not np.any(act):
            break
        mid = (lo + hi + 1) // 2
        rej = _rejected(mid, t, c, a, b, log_thr) & (mid < c * t)
        lo = np.where(act & rej, mid, lo)
        hi = np.where(act & ~rej, mid - 1, hi)
    refute = lo
    refute[0] = -1
    if share > 0:
        certify[max_n] = min(int(certify[max_n]), _cp_certify_count(c, int(max_n), share * alpha))
    # look-ahead: reachable from (k, t) iff k - t >= min_{t < s <= max_n} (certify[s] - s)
    d = certify - t
    suffix = np.empty_like(d)
    suffix[-1] = np.iinfo(np.int64).max // 4
    suffix[:-1] = np.minimum.accumulate(d[::-1])[::-1][1:]
    unreachable = np.clip(suffix + t - 1, -1, t)
    unreachable[-1] = max_n  # at max_n nothing more can happen
    return ThresholdTable(c, alpha, (a, b), int(max_n), certify, refute, unreachable, share)


def futile(k, t, k_needed_at_max, max_n: int, z: float = 2.0):
    """Futility heuristic (validity does not depend on it): ``r`` not certifiable by ``max_n`` at an optimistic rate.

    The optimistic rate is ``p~ = min(1, p_hat + z sqrt(max(p_hat (1 - p_hat), 1/t) / t))``, ``p_hat = k / t``
    (the rule of ``radius.sequential``); ``r`` is futile when the projected count
    ``floor(k + p~ (max_n - t))`` stays below the count ``k_needed_at_max`` that certifies at ``max_n`` (for a
    :class:`ThresholdTable` ``tab``: ``tab.certify[max_n]``).  O(1) per look; ``k`` and ``t`` broadcast (arrays
    give the rule along a whole path).  It makes no claim: stopping on it only gives up a radius (counts as not
    certified), so alpha is untouched.

    >>> futile(900, 1000, 99_000, 100_000), futile(995, 1000, 99_000, 100_000)
    (True, False)
    >>> futile([900, 995], [1000, 1000], 99_000, 100_000).tolist()
    [True, False]
    """
    k_arr = np.asarray(k, dtype=float)
    t_arr = np.asarray(t, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ph = np.where(t_arr > 0, k_arr / np.maximum(t_arr, 1.0), 0.0)
        sd = np.sqrt(np.maximum(ph * (1.0 - ph), 1.0 / np.maximum(t_arr, 1.0)) / np.maximum(t_arr, 1.0))
    pt = np.minimum(1.0, ph + z * sd)
    proj = np.floor(k_arr + pt * np.maximum(max_n - t_arr, 0.0))
    out = (t_arr > 0) & (proj < k_needed_at_max)
    return bool(out) if out.ndim == 0 else out


# ------------------------------------------------------------------------------- two one-sided CSs, buckets

def selection_buckets(selection_counts, top: Optional[int] = None) -> List[List[int]]:
    """Buckets of non-top classes chosen on the *selection* sample (independent of the estimation sample).

    Every non-top class seen in the selection sample gets its own bucket; the classes never seen are merged into
    one bucket (omitted when there are none).  A heuristic (validity does not depend on it): the buckets only
    have to be fixed before the estimation samples are drawn, and every non-top class must be in one.

    >>> selection_buckets([0, 95, 3, 0, 2])
    [[2], [4], [0, 3]]
    """
    cnt = check_integer_array(selection_counts, "selection_counts")
    if cnt.ndim != 1 or cnt.size < 2:
        raise ValueError(f"selection_counts must be a 1-D array of >= 2 class counts, got shape {cnt.shape}")
    y = int(np.argmax(cnt)) if top is None else int(top)
    if not 0 <= y < cnt.size:
        raise ValueError(f"top = {top!r} is not a class index of {cnt.size} classes")
    others = [k for k in range(cnt.size) if k != y]
    seen = sorted((k for k in others if cnt[k] > 0), key=lambda k: (-int(cnt[k]), k))
    unseen = [k for k in others if cnt[k] == 0]
    return [[k] for k in seen] + ([unseen] if unseen else [])


def bonferroni_margin_cs(k_a, k_buckets, t, alpha: float, share_a: float = 0.5, prior_a=TOP_PRIOR,
                         prior_b=BUCKET_PRIOR):
    """Lower CS on ``p_A`` and upper CS on the largest non-top class, from two families of one-sided mixture CSs.

    Parameters
    ----------
    k_a : int or array_like
        Top-class count(s) after ``t`` samples.
    k_buckets : array_like, shape (K,) or (..., K)
        Count of each bucket of non-top classes (buckets from :func:`selection_buckets`; fixed before sampling).
    t : int or array_like
        Samples so far (broadcasts with ``k_a``).
    alpha : float
        Total level: ``alpha_A = share_a * alpha`` for the lower CS on ``p_A`` and ``(1 - share_a) * alpha / K``
        for the upper CS of each bucket (union bound: all hold at every ``t`` with probability ``>= 1 - alpha``).
    share_a : float in (0, 1)
        Share of alpha on the top class (default 1/2).
    prior_a, prior_b : (a, b)
        Beta priors of the mixture CSs (:data:`TOP_PRIOR`, :data:`BUCKET_PRIOR`).

    Returns
    -------
    (p_a_lower, p_b_upper) : floats or arrays
        ``p_b_upper = max_b U_b >= max_{k != A} p_k`` on the event.  Feed them to :func:`margin_from_bounds`.

    Each one-sided bound is one endpoint of :func:`confbounds.mixture.beta_binomial_cs` at its level (valid
    one-sided at that level, module docstring of :mod:`confbounds.mixture`).

    Examples
    --------
    >>> lo, hi = bonferroni_margin_cs(990, [6, 4], 1000, alpha=0.001)
    >>> bool(0.95 < lo < 0.99 and 0.006 < hi < 0.05)
    True
    """
    alpha = check_alpha(alpha)
    try:
        s = float(share_a)
    except (TypeError, ValueError):
        raise ValueError(f"share_a must be a number in (0, 1), got {share_a!r}") from None
    if not 0.0 < s < 1.0:
        raise ValueError(f"share_a must lie in the open interval (0, 1), got {share_a!r}")
    kb = check_integer_array(k_buckets, "k_buckets")
    if kb.ndim == 0 or kb.shape[-1] == 0:
        raise ValueError(f"k_buckets must hold one count per bucket (last axis), got shape {kb.shape}")
    K = kb.shape[-1]
    k_a_arr, t_arr = check_counts(k_a, t, "k_a", "t")
    tot = kb.sum(axis=-1)
    if np.any(np.broadcast_to(tot + k_a_arr, np.broadcast_shapes(tot.shape, k_a_arr.shape, t_arr.shape)) >
              np.broadcast_to(t_arr, np.broadcast_shapes(tot.shape, k_a_arr.shape, t_arr.shape))):
        raise ValueError("k_a + sum(k_buckets) exceeds t")
    lo = beta_binomial_cs(k_a, t, s * alpha, side="lower", prior=prior_a)
    up = beta_binomial_cs(kb, np.asarray(t)[..., None] if np.ndim(t) else t, (1.0 - s) * alpha / K,
                          side="upper", prior=prior_b)
    hi = np.max(up, axis=-1)
    if np.ndim(hi) == 0:
        return float(lo), float(hi)
    return lo, hi


def margin_from_bounds(p_a_lower, p_b_upper, margin: str = "probit"):
    """Margin lower bound from ``(p_A lower, p_B upper)``: probit ``Phi^-1(L) - Phi^-1(U)`` or linear ``L - U``.

    ``R2 = sigma/2 * probit`` (Salman et al. 2019), ``R1 = sigma sqrt(pi/2) * linear`` (theory §7).  Monotone in
    both bounds, so a valid pair gives a valid margin bound on the same event.

    >>> round(float(margin_from_bounds(0.975, 0.025)), 6), round(float(margin_from_bounds(0.7, 0.2, "linear")), 6)
    (3.919928, 0.5)
    """
    check_choice(margin, "margin", ("probit", "linear"))
    lo = np.asarray(p_a_lower, dtype=float)
    hi = np.asarray(p_b_upper, dtype=float)
    with np.errstate(divide="ignore"):
        out = special.ndtri(lo) - special.ndtri(hi) if margin == "probit" else lo - hi
    return float(out) if out.ndim == 0 else out


# ----------------------------------------------------------------------------- joint Dirichlet mixture CS

def check_dirichlet_prior(prior) -> Tuple[float, float, float]:
    """``prior = (a1, a2, a3)``: three finite numbers > 0 (Dirichlet mixing distribution)."""
    try:
        vals = tuple(float(v) for v in prior)
    except (TypeError, ValueError):
        raise ValueError(f"prior must be three numbers > 0, got {prior!r}") from None
    if len(vals) != 3 or not all(np.isfinite(v) and v > 0 for v in vals):
        raise ValueError(f"prior must be three finite numbers > 0, got {prior!r}")
    return vals  # type: ignore[return-value]


@njit(cache=True)
def _log_ndtr(x):
    if x > -5.0:
        return math.log(0.5 * math.erfc(-x / math.sqrt(2.0)))
    # asymptotic-free: erfc is accurate in relative terms for large arguments
    v = 0.5 * math.erfc(-x / math.sqrt(2.0))
    if v <= 0.0:
        return -math.inf
    return math.log(v)


@njit(cache=True)
def _ndtr(x):
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@njit(cache=True)
def _xlog(x, logq):
    if x == 0.0:
        return 0.0
    return x * logq


@njit(cache=True)
def _curve_point(u, theta, probit):
    """``(q1, q2, q3)`` on ``{g(q) = theta}``: probit ``q2 = Phi(u), q1 = Phi(u + theta)``; linear ``u = pi``."""
    if probit:
        q1 = _ndtr(u + theta)
        q2 = _ndtr(u)
    else:
        q1 = 0.5 * (u + theta)
        q2 = 0.5 * (u - theta)
    return q1, q2, 1.0 - q1 - q2


@njit(cache=True)
def _box_lower(x1, x2, x3, ua, ub, theta, probit, ct):
    """Lower bound of ``log M`` over the curve parameter interval ``[ua, ub]`` and its error scale."""
    if probit:
        l1 = _log_ndtr(ub + theta)
        l2 = _log_ndtr(ub)
        q3 = _ndtr(-ua - theta) - _ndtr(ua)
    else:
        l1 = math.log(0.5 * (ub + theta)) if ub + theta > 0 else -math.inf
        l2 = math.log(0.5 * (ub - theta)) if ub - theta > 0 else -math.inf
        q3 = 1.0 - ua
    q3 = min(1.0, q3 * (1.0 + 1e-12) + 1e-300)  # rounded up: the bound can only go down
    l3 = math.log(q3)
    a1 = _xlog(x1, l1)
    a2 = _xlog(x2, l2)
    a3 = _xlog(x3, l3)
    return ct - a1 - a2 - a3, abs(ct) + abs(a1) + abs(a2) + abs(a3)


@njit(cache=True)
def _point_value(x1, x2, x3, u, theta, probit, ct):
    q1, q2, q3 = _curve_point(u, theta, probit)
    if q1 <= 0.0 and x1 > 0 or q2 <= 0.0 and x2 > 0 or q3 <= 0.0 and x3 > 0:
        return math.inf, 0.0
    a1 = _xlog(x1, math.log(q1) if q1 > 0 else 0.0)
    a2 = _xlog(x2, math.log(q2) if q2 > 0 else 0.0)
    a3 = _xlog(x3, math.log(q3) if q3 > 0 else 0.0)
    return ct - a1 - a2 - a3, abs(ct) + abs(a1) + abs(a2) + abs(a3)


@njit(cache=True)
def _certify_curve(x1, x2, x3, theta, probit, ct, log_thr, max_boxes):
    """Certified ``min_{g(q) = theta} log M(q) >= log_thr`` by branch-and-bound (False = not certified)."""
    if probit:
        lo_u = -37.5
        hi_u = -0.5 * theta
        # tail (-inf, lo_u]: q1 <= Phi(lo_u + theta), q2 <= Phi(lo_u), q3 <= 1
        val, sc = _box_lower(x1, x2, x3, -math.inf, lo_u, theta, probit, ct)
        if not (val - log_thr >= TABLE_REL_TOL * (sc + log_thr) + _ABS_TOL):
            return False
    else:
        lo_u = abs(theta)
        hi_u = 1.0
    if not hi_u > lo_u:
        return True  # empty curve: no q with g(q) = theta (then none with g <= theta either)
    stack_a = np.empty(max_boxes + 2)
    stack_b = np.empty(max_boxes + 2)
    stack_a[0] = lo_u
    stack_b[0] = hi_u
    n = 1
    used = 0
    while n > 0:
        n -= 1
        ua = stack_a[n]
        ub = stack_b[n]
        val, sc = _box_lower(x1, x2, x3, ua, ub, theta, probit, ct)
        if val - log_thr >= TABLE_REL_TOL * (sc + log_thr) + _ABS_TOL:
            continue
        um = 0.5 * (ua + ub)
        pv, psc = _point_value(x1, x2, x3, um, theta, probit, ct)
        if not (pv - log_thr >= TABLE_REL_TOL * (psc + log_thr) + _ABS_TOL):
            return False  # a point of the curve is (or may be) inside the confidence set
        used += 1
        if used >= max_boxes or ub - ua <= 1e-13 * max(1.0, abs(ua)):
            return False  # budget exhausted: answer conservatively
        stack_a[n] = ua
        stack_b[n] = um
        stack_a[n + 1] = um
        stack_b[n + 1] = ub
        n += 2
    return True


def _dirichlet_ct(x, prior):
    a = np.asarray(prior, dtype=float)
    xa = x + a
    return (float(np.sum(special.gammaln(xa)) - special.gammaln(np.sum(xa)))
            - float(np.sum(special.gammaln(a)) - special.gammaln(np.sum(a))))


def _check_trinomial(counts):
    x = check_integer_array(counts, "counts")
    if x.shape != (3,):
        raise ValueError(f"counts must be (x_A, x_bucket, x_rest), got shape {x.shape}")
    return x.astype(float)


def _mle_margin(x, probit):
    n = x.sum()
    q1, q2 = x[0] / n, x[1] / n
    if probit:
        with np.errstate(divide="ignore"):
            return float(special.ndtri(q1) - special.ndtri(q2))
    return float(q1 - q2)


def dirichlet_margin_certifies(counts, theta: float, alpha: float, margin: str = "probit",
                               prior=DIRICHLET_PRIOR, max_boxes: int = 20000) -> bool:
    """Whether the Dirichlet-multinomial mixture CS certifies ``g(q) > theta`` at the current counts.

    Parameters
    ----------
    counts : array_like of 3 ints
        ``(x_A, x_bucket, x_rest)`` after ``t = sum(counts)`` samples (bucket fixed on the selection sample).
    theta : float
        Margin boundary (probit: ``2 r / sigma`` for ``R2 >= r``; linear: ``r / (sigma sqrt(pi/2))`` for R1).
    alpha : float
        Level of this CS (with ``K`` buckets, call each at ``alpha / K`` and require all to certify).
    margin : {"probit", "linear"}
    prior : (a1, a2, a3)
        Dirichlet mixing prior (default :data:`DIRICHLET_PRIOR`).
    max_boxes : int
        Branch-and-bound budget; an exhausted budget answers False (conservative).

    Returns
    -------
    bool
        True only if every ``q`` with ``g(q) <= theta`` is certified outside ``{q : M_t(q) < 1/alpha}``; on the
        event of the CS (probability ``>= 1 - alpha`` simultaneously over all ``t``) this implies ``g(q) > theta``.

    Examples
    --------
    >>> dirichlet_margin_certifies([990, 6, 4], 3.0, 0.001), dirichlet_margin_certifies([990, 6, 4], 5.0, 0.001)
    (True, False)
    """
    check_choice(margin, "margin", ("probit", "linear"))
    alpha = check_alpha(alpha)
    x = _check_trinomial(counts)
    pr = check_dirichlet_prior(prior)
    if x.sum() == 0 or x[0] == 0:
        return False
    th = float(theta)
    if not np.isfinite(th):
        raise ValueError(f"theta must be finite, got {theta!r}")
    probit = margin == "probit"
    if _mle_margin(x, probit) <= th:
        return False
    return bool(_certify_curve_call(x[0], x[1], x[2], th, probit, _dirichlet_ct(x, pr), -math.log(alpha),
                               int(max_boxes)))


def dirichlet_margin_lower(counts, alpha: float, margin: str = "probit", prior=DIRICHLET_PRIOR,
                           tol: float = 1e-6) -> float:
    """Lower confidence-sequence bound on the margin from the Dirichlet mixture CS (bisection on ``theta``).

    ``{theta : certified}`` is a down-set (the region ``{g <= theta}`` grows with ``theta``), so bisection
    returns a certified ``theta`` within ``tol`` of the supremum; ``-inf`` (probit) / ``-1`` (linear) when nothing
    is certified.  Valid at every ``t`` simultaneously at level ``alpha``.

    >>> lo = dirichlet_margin_lower([990, 6, 4], 0.001)
    >>> bool(3.0 < lo < 5.0) and dirichlet_margin_certifies([990, 6, 4], lo, 0.001)
    True
    """
    check_choice(margin, "margin", ("probit", "linear"))
    x = _check_trinomial(counts)
    probit = margin == "probit"
    floor = -math.inf if probit else -1.0
    if x.sum() == 0 or x[0] == 0:
        return floor
    top = _mle_margin(x, probit)
    if not np.isfinite(top):
        top = 2 * 8.3  # Phi^-1 of the extreme float64 values
    lo = -8.3 * 2 if probit else -1.0
    if not dirichlet_margin_certifies(x, lo, alpha, margin, prior):
        return floor
    hi = top
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if dirichlet_margin_certifies(x, mid, alpha, margin, prior):
            lo = mid
        else:
            hi = mid
    return float(lo)


# Python callers use the kernels compiled ahead of time when they are built (confbounds.aot)
_certify_curve_call = aot.bind(_certify_curve)
