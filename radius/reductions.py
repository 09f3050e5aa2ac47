"""Reductions from m classes to one bound on the multiclass margin (theory §7).

A certificate for the top class ``y`` needs a lower bound on a margin between
``y`` and the *strongest* other class, ``p_y - max_{k != y} p_k`` (linear) or
``Phi^-1(p_y) - Phi^-1(max_{k != y} p_k)`` (probit).  Bounding only the
empirical runner-up is not conservative (theory §8.5).  Each reduction below
bounds a quantity that is ``<=`` the true margin, and splits ``alpha`` so the
union of its failure events has probability ``<= alpha`` (theory §2.2):

==============  ========================================================  =========================
reduction       what is bounded                                           alpha split
==============  ========================================================  =========================
``cohen``       lower ``p_A`` only; ``p_B := 1 - p_A_lower``              1 bound at ``alpha``
``bonferroni``  lower ``p_y``, upper ``p_k`` for each of the m-1 others   m bounds at ``alpha/m``
``cpm``         lower ``p_y``, upper on each bucket's total mass          K bounds at ``alpha/K``
``exact``       the best of several structures, chosen per input on the   that structure's split
                selection sample (below)
==============  ========================================================  =========================

K is the number of CPM buckets *including* the top class's own.  Buckets (and
``y``) are chosen on the selection sample only.  Since every other class ``k``
lies in some bucket ``b`` and ``p_k <= p_b`` (bucket mass),
``max_k p_k <= max_b p_b``, so a bound on ``p_y - max_b p_b`` (or its probit
version, ``Phi^-1`` is increasing) is a bound on the margin.

The exact reduction
-------------------
``exact`` chooses, per input, one :class:`Structure` out of
:func:`exact_structures`, and bounds the margin with it alone, at the full
``alpha``:

* ``cohen``: Cohen's bound (one Clopper–Pearson bound at ``alpha``; with all
  other classes in one bucket ``q3 = 0`` is known and this *is* the exact
  trinomial bound);
* ``pairs``: a shared lower bound on ``p_y`` and an upper bound on each
  bucket's mass, ``B + 1`` bounds at ``alpha/(B + 1)``.  With singletons this is
  the ``bonferroni`` reduction, with CPM's buckets the ``cpm`` one;
* ``trinomial`` (counts): the exact trinomial bound of
  :func:`confbounds.margin_lower_bound` on ``(X_y, X_b, n - X_y - X_b)`` against
  each bucket at ``alpha/B``, with the dominating statistic ``"bonferroni"``
  (theory §4.7: never below the Bonferroni pair at ``alpha/B``); the minimum over
  buckets.  Berger–Boos is not used: it tests at ``alpha/B - gamma`` and the
  result would no longer dominate the Bonferroni pair at ``alpha/B``;
* ``direct`` (scores): the direct margin of theory §5, ``Z_i = X_i^y - X_i^b``
  (values in ``[-1 - SIMPLEX_TOL, 1]``), one lower bound on ``E[Z]`` per bucket at
  ``alpha/B`` with the chosen mean bound, the minimum ``D`` over buckets; the
  probit margin is ``2 Phi^-1((1 + D)/2)``
  (:func:`radius.radii.probit_from_linear_margin`).

The bucket structures are those of :func:`bucket_family` (the ``j`` largest
other classes alone, the rest merged, ``j = 1..m-1``; and CPM's).  The
structure whose *forecast* bound is largest wins (:func:`choose_structure`):
for counts, the mean of ``max(bound, 0)`` over count vectors drawn from the
posterior predictive of the selection counts (:func:`forecast_draws`; prior:
``Beta(0.15, 0.15)`` on the top class's share, and a ``Dirichlet(s_k + 1/2)``
split of the rest, so classes not seen in the selection may hold mass); for
scores, a normal approximation from the selection scores.  The forecast is a
heuristic: validity does not depend on it.  With two classes only Cohen is
offered (the others spend ``alpha`` on a rest that is known to be empty), so
``exact`` equals ``cohen`` there.

Why the choice costs no alpha.  The structure is a function of the selection
sample only (and of the design constants ``n``, ``alpha``, ``m``).  The
estimation sample is independent of the selection sample, so, conditionally on
the selection, it is a fresh draw from ``Mult(n, p)`` (or ``n`` fresh score
rows), and the chosen structure is a fixed procedure valid at level ``alpha``
for every ``p``.  Hence ``P(miss | selection) <= alpha`` for every selection
outcome, and ``P(miss) <= alpha`` unconditionally.  Choosing the best structure
*after* seeing the estimation sample would instead need ``alpha`` split across
the candidates (theory §7).

Inputs are either count vectors (hardmax smoothing; Clopper–Pearson bounds,
and the exact trinomial test) or score matrices of simplex outputs (mean
bounds from :mod:`confbounds`: ``bound="betting" | "bernstein" | "hoeffding"`` or a
callable ``f(x, alpha, side, bounds)``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
from scipy import special

from confbounds import check_alpha, check_choice, check_integer_array
from confbounds.binomial import clopper_pearson, clopper_pearson_estimate

__all__ = [
    "clear_caches",
    "ReductionResult",
    "Samples",
    "as_samples",
    "choose_top",
    "cpm_buckets",
    "bucket_family",
    "exact_structures",
    "forecast_counts",
    "choose_structure",
    "forecast_draws",
    "Structure",
    "resolve_bound",
    "cohen",
    "bonferroni",
    "cpm",
    "exact",
    "REDUCTIONS",
    "SIMPLEX_TOL",
]

REDUCTIONS = ("cohen", "bonferroni", "cpm", "exact")
MARGINS = ("linear", "probit")
BOUND_NAMES = ("betting", "bernstein", "hoeffding")

#: Rows of a score matrix must sum to at most ``1 + SIMPLEX_TOL`` (simplex
#: outputs up to float rounding; float32 softmax is off by ~1e-7).  Where a
#: bound relies on the simplex (bucket sums, Cohen's ``p_B := 1 - p_A``), the
#: slack is added on the safe side.
SIMPLEX_TOL = 1e-5


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Samples:
    """Validated selection and estimation samples of one input."""

    kind: str                    # "counts" or "scores"
    selection_totals: np.ndarray  # per-class counts or column sums of the selection sample, (m,)
    estimation: np.ndarray       # int64 (m,) counts or float64 (n, m) scores
    m: int
    n0: int
    n: int
    selection: Optional[np.ndarray] = None  # the (n0, m) selection score matrix (scores only)


def _check_scores(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "iuf" or arr.dtype.kind == "b":
        raise ValueError(f"{name} must be a numeric score matrix, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} holds a non-finite value {arr[tuple(bad)]!r} at index {tuple(int(i) for i in bad)}")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} must hold simplex outputs in [0, 1], got the value {lo if lo < 0 else hi!r}")
    sums = arr.sum(axis=1)
    worst = int(np.argmax(sums))
    if sums[worst] > 1.0 + SIMPLEX_TOL:
        raise ValueError(
            f"{name} rows must be simplex outputs summing to <= 1, got row {worst} summing to {sums[worst]!r}")
    return arr


def as_samples(selection, estimation) -> Samples:
    """Validate a pair of samples: both count vectors ``(m,)`` or both score matrices ``(n, m)``.

    Raises ValueError naming the argument for wrong shapes, mixed kinds,
    different class counts, fewer than 2 classes, empty samples, negative or
    non-integer counts, and scores outside the simplex.
    """
    sel = np.asarray(selection)
    est = np.asarray(estimation)
    for name, a in (("selection", sel), ("estimation", est)):
        if a.ndim not in (1, 2):
            raise ValueError(
                f"{name} must be a count vector of shape (m,) or a score matrix of shape (n, m), got shape {a.shape}")
    if sel.ndim != est.ndim:
        kinds = {1: "count vector", 2: "score matrix"}
        raise ValueError(f"selection is a {kinds[sel.ndim]} (shape {sel.shape}) but estimation is a "
                         f"{kinds[est.ndim]} (shape {est.shape}); both must be the same kind")
    if sel.shape[-1] != est.shape[-1]:
        raise ValueError(f"selection has {sel.shape[-1]} classes but estimation has {est.shape[-1]} "
                         f"(shapes {sel.shape} and {est.shape})")
    m = int(est.shape[-1])
    if m < 2:
        raise ValueError(f"need at least 2 classes, got m = {m} (estimation shape {est.shape})")
    if est.ndim == 1:
        sel_c = check_integer_array(sel, "selection")
        est_c = check_integer_array(est, "estimation")
        n0, n = int(sel_c.sum()), int(est_c.sum())
        if n0 < 1:
            raise ValueError(f"selection counts sum to {n0}; need at least one selection sample")
        if n < 1:
            raise ValueError(f"estimation counts sum to {n}; need at least one estimation sample")
        return Samples("counts", sel_c, est_c, m, n0, n)
    sel_s = _check_scores(sel, "selection")
    est_s = _check_scores(est, "estimation")
    return Samples("scores", sel_s.sum(axis=0), est_s, m, int(sel_s.shape[0]), int(est_s.shape[0]), sel_s)


def _samples(selection, estimation) -> Samples:
    if isinstance(selection, Samples):
        return selection
    return as_samples(selection, estimation)


# --------------------------------------------------------------------------- selection-side choices
def choose_top(selection_totals) -> Tuple[int, int]:
    """Top class and runner-up on the selection sample (ties: lowest index).

    Any rule that looks only at the selection sample is valid; we take the
    argmax of the selection counts (or column sums of selection scores).
    """
    t = np.asarray(selection_totals, dtype=float)
    order = np.argsort(-t, kind="stable")
    return int(order[0]), int(order[1])


def cpm_buckets(selection_totals, top: int) -> List[Tuple[int, ...]]:
    """Class-partitioning buckets of the non-top classes, from selection totals only.

    Rule of the AISTATS 2025 code (``core_cpm.py``, Delattre et al.): the
    selection runner-up is its own bucket; while the remaining classes' total
    exceeds the runner-up's, the largest of them becomes its own bucket; the
    rest (each, and together, ``<=`` the runner-up's selection total) form one
    last bucket.  Returns the non-top buckets, runner-up's first (B = K - 1 of
    them; K counts the top class's bucket too).  Ties: lowest index first.

    Examples
    --------
    >>> cpm_buckets([50, 30, 10, 5, 5], 0)
    [(1,), (2, 3, 4)]
    >>> cpm_buckets([40, 20, 12, 5, 5], 0)
    [(1,), (2,), (3, 4)]
    """
    t = np.asarray(selection_totals, dtype=float)
    others = [int(k) for k in np.argsort(-t, kind="stable") if k != top]
    buckets: List[Tuple[int, ...]] = [(others[0],)]
    rest = others[1:]
    runner = t[others[0]]
    while rest and t[rest].sum() > runner:
        buckets.append((rest.pop(0),))
    if rest:
        buckets.append(tuple(sorted(rest)))
    return buckets


# --------------------------------------------------------------------------- mean bounds
def resolve_bound(bound: Union[str, Callable]) -> Tuple[Callable, str]:
    """Return ``(f, name)`` for a mean bound ``f(x, alpha, side, bounds)``.

    Names: ``"betting"`` (:func:`confbounds.betting_ci`, Waudby-Smith & Ramdas
    2024), ``"bernstein"`` (:func:`confbounds.empirical_bernstein`, Maurer &
    Pontil 2009), ``"hoeffding"`` (:func:`confbounds.hoeffding`).  A callable
    is used as given (called on one column of shape ``(n,)`` at a time) and
    must itself be valid at the level it is passed.
    """
    if callable(bound):
        return bound, getattr(bound, "__name__", "callable")
    check_choice(bound, "bound", BOUND_NAMES)
    import confbounds

    f = {"betting": confbounds.betting_ci, "bernstein": confbounds.empirical_bernstein,
         "hoeffding": confbounds.hoeffding}[bound]
    return f, bound


def _mean_bound(x: np.ndarray, alpha: float, side: str, bounds, bound) -> np.ndarray:
    """Bound the mean of each column of ``x`` (shape (n, k)) at level ``alpha`` each."""
    f, name = resolve_bound(bound)
    out = np.empty(x.shape[1])
    for j in range(x.shape[1]):
        out[j] = float(f(np.ascontiguousarray(x[:, j]), alpha, side=side, bounds=bounds))
    return out


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ReductionResult:
    """What a reduction bounded, and at what level.

    Attributes
    ----------
    top, runner_up : int
        Classes chosen on the selection sample.
    buckets : tuple of tuple of int
        Groups of other classes whose masses were bounded (``cohen``: one group,
        all others; ``bonferroni``: singletons).
    p_a_lower, p_b_upper : float
        Lower bound on ``p_y``, upper bound on ``max_{k != y} p_k``; NaN when
        ``exact`` chose a structure that bounds the margin directly.
    margin : {"linear", "probit"}
        Which margin ``margin_lower`` bounds.
    structure : str
        ``exact`` only: the kind of the chosen :class:`Structure` (``"cohen"``,
        ``"pairs"``, ``"trinomial"``, ``"direct"``); ``""`` for the other reductions.
    margin_lower : float
        Lower bound on ``p_y - max_k p_k`` (linear) or
        ``Phi^-1(p_y) - Phi^-1(max_k p_k)`` (probit; may be ``-inf``).
    alpha_each : float
        Level of each of the ``n_tests`` bounds; ``alpha_each * n_tests <= alpha``.
    bound : str
        The bound used (``"clopper_pearson"``, ``"trinomial_<statistic>"``, or a mean bound).
    """

    reduction: str
    top: int
    runner_up: int
    buckets: Tuple[Tuple[int, ...], ...]
    p_a_lower: float
    p_b_upper: float
    margin: str
    margin_lower: float
    alpha_each: float
    n_tests: int
    bound: str
    structure: str = ""


def _pair_margin(pa: float, pb: float, margin: str) -> float:
    if margin == "linear":
        return float(pa - pb)
    with np.errstate(divide="ignore"):
        v = float(special.ndtri(pa) - special.ndtri(pb))
    if pa <= pb:
        return min(v, 0.0)
    return v - 8 * np.finfo(float).eps * (abs(float(special.ndtri(pa))) + abs(float(special.ndtri(pb))))


def _common(selection, estimation, alpha, margin):
    s = _samples(selection, estimation)
    a = check_alpha(alpha)
    check_choice(margin, "margin", MARGINS)
    top, runner = choose_top(s.selection_totals)
    return s, a, top, runner


# --------------------------------------------------------------------------- reductions
def cohen(selection, estimation, alpha, *, margin: str = "linear", bound="betting") -> ReductionResult:
    """Cohen et al.'s one-sided reduction: only a lower bound on ``p_y``.

    ``p_A`` lower bound at the full ``alpha`` (Clopper–Pearson for counts, the
    mean bound for scores); ``p_B := 1 - p_A_lower`` bounds every other class
    because the probabilities (scores) sum to 1.  Linear margin
    ``2 p_A_lower - 1``, probit ``2 Phi^-1(p_A_lower)``.  For scores the
    simplex slack :data:`SIMPLEX_TOL` is added to ``p_B``.

    References
    ----------
    Cohen, Rosenfeld, Kolter, ICML 2019, ``CERTIFY``.
    """
    s, a, top, runner = _common(selection, estimation, alpha, margin)
    if s.kind == "counts":
        pa = float(clopper_pearson(int(s.estimation[top]), s.n, a, "lower"))
        pb = 1.0 - pa
        bname = "clopper_pearson"
    else:
        pa = float(_mean_bound(s.estimation[:, [top]], a, "lower", (0.0, 1.0), bound)[0])
        pb = min(1.0, 1.0 + SIMPLEX_TOL - pa)
        bname = resolve_bound(bound)[1]
    others = tuple(k for k in range(s.m) if k != top)
    return ReductionResult("cohen", top, runner, (others,), pa, pb, margin, _pair_margin(pa, pb, margin),
                           a, 1, bname)


def bonferroni(selection, estimation, alpha, *, margin: str = "linear", bound="betting") -> ReductionResult:
    """Bonferroni over all classes: ``m`` one-sided bounds at ``alpha/m`` each.

    Lower bound on ``p_y`` at ``alpha/m``, upper bound on each of the ``m - 1``
    other ``p_k`` at ``alpha/m``; ``p_B`` is the largest upper bound.  The union
    of the ``m`` failure events has probability ``<= alpha``.
    """
    s, a, top, runner = _common(selection, estimation, alpha, margin)
    ae = a / s.m
    others = [k for k in range(s.m) if k != top]
    if s.kind == "counts":
        pa = float(clopper_pearson(int(s.estimation[top]), s.n, ae, "lower"))
        pb = float(np.max(clopper_pearson(s.estimation[others], s.n, ae, "upper")))
        bname = "clopper_pearson"
    else:
        pa = float(_mean_bound(s.estimation[:, [top]], ae, "lower", (0.0, 1.0), bound)[0])
        pb = float(np.max(_mean_bound(s.estimation[:, others], ae, "upper", (0.0, 1.0), bound)))
        bname = resolve_bound(bound)[1]
    return ReductionResult("bonferroni", top, runner, tuple((k,) for k in others), pa, pb, margin,
                           _pair_margin(pa, pb, margin), ae, s.m, bname)


def _bucket_columns(est: np.ndarray, buckets) -> np.ndarray:
    return np.stack([est[:, list(b)].sum(axis=1) for b in buckets], axis=1)


def cpm(selection, estimation, alpha, *, margin: str = "linear", bound="betting") -> ReductionResult:
    """Class partitioning (AISTATS 2025): ``K`` bounds at ``alpha/K`` each.

    Buckets from :func:`cpm_buckets` on the selection sample; lower bound on
    ``p_y`` and an upper bound on each non-top bucket's total mass, each at
    ``alpha/K`` where ``K = 1 + (number of non-top buckets)``.  ``p_B`` is the
    largest bucket upper bound (``>= max_k p_k``).  Bucket sums of scores lie
    in ``[0, 1 + SIMPLEX_TOL]``.

    References
    ----------
    Delattre et al., "Bridging the theoretical gap in randomized smoothing",
    AISTATS 2025, code ``core_cpm.py`` (``certify_from_log_cpm``).
    """
    s, a, top, runner = _common(selection, estimation, alpha, margin)
    buckets = cpm_buckets(s.selection_totals, top)
    K = len(buckets) + 1
    ae = a / K
    if s.kind == "counts":
        pa = float(clopper_pearson(int(s.estimation[top]), s.n, ae, "lower"))
        masses = np.array([int(s.estimation[list(b)].sum()) for b in buckets])
        pb = float(np.max(clopper_pearson(masses, s.n, ae, "upper")))
        bname = "clopper_pearson"
    else:
        pa = float(_mean_bound(s.estimation[:, [top]], ae, "lower", (0.0, 1.0), bound)[0])
        cols = _bucket_columns(s.estimation, buckets)
        pb = float(np.max(_mean_bound(cols, ae, "upper", (0.0, 1.0 + SIMPLEX_TOL), bound)))
        bname = resolve_bound(bound)[1]
    return ReductionResult("cpm", top, runner, tuple(buckets), pa, pb, margin, _pair_margin(pa, pb, margin),
                           ae, K, bname)


# --------------------------------------------------------------------------- the exact reduction's choice
#: Pseudo-counts of the forecast prior (heuristics: validity does not depend on them).  The rest
#: ``1 - p_y`` is split over the other classes by ``Dirichlet(s_k + FORECAST_SPREAD)`` (every class,
#: seen or not, may carry mass).
FORECAST_SPREAD = 0.5
#: ``Beta(FORECAST_TOP, FORECAST_TOP)`` prior on the top class's share.  Smaller than Jeffreys' 1/2:
#: on digits CNNs a selection with all 100 samples on the top class usually means a non-top mass far
#: below 1/200 (median 1e-3 at sigma = 0.25), where Cohen's bound wins.  Both constants were tuned on
#: separate counts (``benchmarks/methods.py sample --seed 1``, n = 1e3 and 1e4), not on the benchmark's.
FORECAST_TOP = 0.15
#: Bucket structures for which the trinomial candidates are forecast (the cheap CP candidates are
#: forecast for every structure of the family): ``j`` = number of singleton buckets.
TRINOMIAL_SINGLETONS = (1, 2)


def _trinomial_statistic() -> str:
    """The trinomial test statistic of the ``exact`` candidates: ``"bonferroni"`` (theory §4.7:
    the result is never below the Bonferroni pair at the same level), or ``"difference"`` where the
    installed :mod:`confbounds.margin` does not offer it yet."""
    from confbounds import margin as _m

    return "bonferroni" if "bonferroni" in getattr(_m, "STATISTICS", ()) else "difference"


@dataclass(frozen=True)
class Structure:
    """One way the ``exact`` reduction may bound the margin; chosen on the selection sample.

    ``kind``:

    * ``"cohen"``: one lower bound on ``p_y`` at the full ``alpha``; every other class
      is in one bucket whose mass is ``1 - p_y`` (so ``q3 = 0`` is known, and the exact
      trinomial bound reduces to Clopper–Pearson).  Linear margin ``2 p_lo - 1``,
      probit ``2 Phi^-1(p_lo)`` (Cohen et al. 2019).
    * ``"pairs"``: lower bound on ``p_y`` shared by all buckets, an upper bound on each
      bucket's mass; ``B + 1`` bounds at ``alpha/(B + 1)`` (Bonferroni when every bucket
      is a singleton, CPM with CPM's buckets).
    * ``"trinomial"`` (counts) / ``"direct"`` (scores): a margin bound against each
      bucket directly, ``B`` bounds at ``alpha/B``: the exact trinomial test of
      :func:`confbounds.margin_lower_bound` on ``(X_y, X_b, rest)`` with the given
      ``statistic``, or the direct-margin mean bound on ``Z = X^y - X^b`` (theory §5).
    """

    kind: str
    buckets: Tuple[Tuple[int, ...], ...]
    statistic: str = ""

    @property
    def n_tests(self) -> int:
        return {"cohen": 1, "pairs": len(self.buckets) + 1}.get(self.kind, len(self.buckets))


def bucket_family(selection_totals, top: int) -> List[Tuple[Tuple[int, ...], ...]]:
    """Bucket structures the ``exact`` reduction considers, from selection totals only.

    The ``j`` largest other classes (by selection total, ties: lowest index) as
    singletons and the remaining ones merged into one bucket, ``j = 1..m-1``
    (``j = m - 1``: all singletons), then the CPM structure of
    :func:`cpm_buckets` if it is not already listed.

    Examples
    --------
    >>> bucket_family([5, 80, 10, 5], 1)
    [((2,), (0, 3)), ((2,), (0,), (3,))]
    >>> bucket_family([40, 20, 12, 5, 5], 0)
    [((1,), (2, 3, 4)), ((1,), (2,), (3, 4)), ((1,), (2,), (3,), (4,))]
    """
    t = np.asarray(selection_totals, dtype=float)
    others = [int(k) for k in np.argsort(-t, kind="stable") if k != top]
    fam: List[Tuple[Tuple[int, ...], ...]] = []
    for j in range(1, len(others) + 1):
        cand = [(k,) for k in others[:j]]
        if others[j:]:
            cand.append(tuple(sorted(others[j:])))
        if tuple(cand) not in fam:
            fam.append(tuple(cand))
    c = tuple(cpm_buckets(t, top))
    if c not in fam:
        fam.append(c)
    return fam


def exact_structures(selection_totals, top: int, kind: str = "counts") -> List[Structure]:
    """The candidate structures of the ``exact`` reduction, in tie-break order.

    Cohen first; then, for each bucket structure of :func:`bucket_family`, the
    shared-``p_y`` pairs structure; then the trinomial (counts) or direct-margin
    (scores) structure for the first :data:`TRINOMIAL_SINGLETONS` members of the
    family and the CPM one.  With two classes only Cohen is offered: it is then
    exact (``q3 = 0``) and dominates the other two (they spend ``alpha`` on a
    ``q3`` that is known to be 0), so ``exact`` equals ``cohen`` there.
    """
    t = np.asarray(selection_totals, dtype=float)
    m = t.size
    others = tuple(k for k in range(m) if k != top)
    out = [Structure("cohen", (others,))]
    if m == 2:
        return out
    fam = bucket_family(t, top)
    out += [Structure("pairs", b) for b in fam]
    c = tuple(cpm_buckets(t, top))
    direct = [fam[j - 1] for j in TRINOMIAL_SINGLETONS if j <= len(fam)]
    if c not in direct:
        direct.append(c)
    if kind == "counts":
        stat = _trinomial_statistic()
        out += [Structure("trinomial", b, stat) for b in direct]
    else:
        out += [Structure("direct", b) for b in direct]
    return out


def forecast_counts(selection_totals, top: int, n: int) -> np.ndarray:
    """Estimation counts expected from the selection counts (a heuristic: validity does not depend on it).

    ``p_y = (s_y + FORECAST_TOP)/(n0 + 2 FORECAST_TOP)`` (posterior mean of the
    top class's share under a ``Beta(FORECAST_TOP, FORECAST_TOP)`` prior); the
    rest ``1 - p_y`` is split over the other classes in proportion to
    ``s_k + FORECAST_SPREAD`` (a symmetric Dirichlet prior on how the non-top mass
    is shared: a class never seen in the selection may still hold mass, and one
    seen once is not assumed to hold all of it).  Counts ``round(n p_k)`` for the
    other classes, the top class gets the rest.

    Examples
    --------
    >>> forecast_counts([0, 99, 1], 1, 1000).tolist()
    [3, 988, 9]
    """
    t = np.asarray(selection_totals, dtype=float)
    n0 = float(t.sum())
    p_top = (t[top] + FORECAST_TOP) / (n0 + 2.0 * FORECAST_TOP)
    w = t + FORECAST_SPREAD
    w[top] = 0.0
    p = w / w.sum() * (1.0 - p_top)
    x = np.rint(p * n).astype(np.int64)
    x[top] = 0
    x[top] = n - int(x.sum())
    if x[top] < 0:  # cannot happen for p_top > 0; kept as a guard
        x = np.zeros_like(x)
        x[top] = n
    return x


def _count_structure(st: Structure, est: np.ndarray, n: int, top: int, alpha: float, margin: str):
    """``(margin_lower, p_a_lower, p_b_upper, bound_name)`` of a structure on count vector ``est``."""
    xa = int(est[top])
    if st.kind == "cohen":
        pa = float(clopper_pearson(xa, n, alpha, "lower"))
        if margin == "linear":
            ml = 2.0 * pa - 1.0
        else:
            with np.errstate(divide="ignore"):
                ml = 2.0 * float(special.ndtri(pa))
        return ml, pa, 1.0 - pa, "clopper_pearson"
    masses = np.array([int(est[list(b)].sum()) for b in st.buckets])
    if st.kind == "pairs":
        ae = alpha / st.n_tests
        pa = float(clopper_pearson(xa, n, ae, "lower"))
        pb = float(np.max(clopper_pearson(masses, n, ae, "upper")))
        return _pair_margin(pa, pb, margin), pa, pb, "clopper_pearson"
    from confbounds import margin_lower_bound

    ae = alpha / st.n_tests
    ml = min(_as_float(margin_lower_bound(xa, int(xb), n, ae, margin=margin, method="exact",
                                          statistic=st.statistic)) for xb in masses)
    return float(ml), math.nan, math.nan, f"trinomial_{st.statistic}"


def _z(level: float) -> float:
    return float(special.ndtri(1.0 - level))


def _score_forecast(st: Structure, sel: np.ndarray, n: int, top: int, alpha: float, margin: str) -> float:
    """Normal-approximation forecast of a structure's margin bound from the selection scores.

    A mean bound at level ``a`` is forecast as ``mean -/+ z_a sqrt(v / n)`` with
    ``v`` the selection variance plus ``1/(4 (n0 + 1))`` (so a column that was
    constant on the selection is not forecast as noiseless).  Heuristic:
    validity does not depend on it.
    """
    n0 = sel.shape[0]

    def lo(col, a):
        return float(col.mean()) - _z(a) * math.sqrt((float(col.var()) + 0.25 / (n0 + 1)) / n)

    def hi(col, a):
        return float(col.mean()) + _z(a) * math.sqrt((float(col.var()) + 0.25 / (n0 + 1)) / n)

    ya = sel[:, top]
    if st.kind == "cohen":
        pa = min(max(lo(ya, alpha), 0.0), 1.0)
        return _pair_margin(pa, min(1.0, 1.0 + SIMPLEX_TOL - pa), margin)
    cols = _bucket_columns(sel, st.buckets)
    if st.kind == "pairs":
        ae = alpha / st.n_tests
        pa = min(max(lo(ya, ae), 0.0), 1.0)
        pb = min(max(max(hi(cols[:, j], ae) for j in range(cols.shape[1])), 0.0), 1.0)
        return _pair_margin(pa, pb, margin)
    ae = alpha / st.n_tests
    D = min(lo(ya - cols[:, j], ae) for j in range(cols.shape[1]))
    D = min(max(D, -1.0), 1.0)
    if margin == "linear":
        return D
    from .radii import probit_from_linear_margin

    return float(probit_from_linear_margin(D)) if D > 0 else -math.inf


#: Posterior-predictive draws of the count forecast (heuristic: validity does not depend on it).
FORECAST_DRAWS = 64


def forecast_draws(selection_totals, top: int, n: int, draws: int = None) -> np.ndarray:
    """Estimation count vectors drawn from the posterior predictive of the selection counts.

    ``p_y ~ Beta(s_y + FORECAST_TOP, n0 - s_y + FORECAST_TOP)``, the rest
    ``1 - p_y`` split by ``Dirichlet(s_k + FORECAST_SPREAD)`` over the other
    classes, then ``X ~ Mult(n, p)``; ``draws`` rows (default
    :data:`FORECAST_DRAWS`).  The generator is seeded from the selection counts
    and ``n``, so the forecast is a deterministic function of the selection
    sample.  A heuristic: validity does not depend on it.

    Examples
    --------
    >>> x = forecast_draws([0, 99, 1], 1, 1000, draws=4)
    >>> x.shape, bool((x.sum(axis=1) == 1000).all())
    ((4, 3), True)
    """
    t = np.asarray(selection_totals, dtype=float)
    D = FORECAST_DRAWS if draws is None else int(draws)
    n0 = float(t.sum())
    key = [int(round(v * 1000)) & 0xFFFFFFFF for v in t] + [int(n) & 0xFFFFFFFF, int(top)]
    rng = np.random.default_rng(np.random.SeedSequence(key))
    p_top = rng.beta(t[top] + FORECAST_TOP, n0 - t[top] + FORECAST_TOP, size=D)
    w = np.delete(t, top) + FORECAST_SPREAD
    share = rng.dirichlet(w, size=D)
    p = np.empty((D, t.size))
    p[:, top] = p_top
    p[:, [k for k in range(t.size) if k != top]] = share * (1.0 - p_top)[:, None]
    p = np.clip(p, 0.0, None)
    p /= p.sum(axis=1, keepdims=True)
    return rng.multinomial(int(n), p)


def _g(pa, pb, margin):
    """Vectorised pair margin (no rounding margin: forecasts only)."""
    if margin == "linear":
        return pa - pb
    with np.errstate(divide="ignore", invalid="ignore"):
        v = special.ndtri(pa) - special.ndtri(pb)
    return np.where(pa > pb, v, -np.inf)


#: Largest ``n`` whose forecast Clopper–Pearson endpoints are kept in per-``(n, level, side)`` tables.
FORECAST_TABLE_MAX_N = 200_000
#: At most this many tables are kept (least recently created dropped first).
FORECAST_TABLES = 64
_FORECAST_CP: "dict" = {}


def _cp_table(n: int, level: float, side: str) -> np.ndarray:
    """The lazily filled table ``k -> clopper_pearson_estimate(k, n, level, side)`` (NaN = not yet)."""
    key = (n, level, side)
    tab = _FORECAST_CP.get(key)
    if tab is None:
        if len(_FORECAST_CP) >= FORECAST_TABLES:
            _FORECAST_CP.pop(next(iter(_FORECAST_CP)))
        tab = _FORECAST_CP[key] = np.full(n + 1, np.nan)
    return tab


def _cp_forecast(k: np.ndarray, n: int, level: float, side: str) -> np.ndarray:
    """Clopper–Pearson endpoints of the counts ``k`` (any shape) for the forecast, each computed once.

    :func:`confbounds.binomial.clopper_pearson_estimate` (unverified: the forecast is a
    heuristic).  Forecast draws repeat counts often, within one input and across the inputs of
    a run, and the levels are a few fixed fractions of ``alpha``: for ``n <=
    FORECAST_TABLE_MAX_N`` the endpoints are kept in lazily filled tables per ``(n, level,
    side)``, so a run computes each one once.
    """
    k = np.asarray(k, dtype=np.int64)
    if n > FORECAST_TABLE_MAX_N:
        uk, inv = np.unique(k, return_inverse=True)
        return clopper_pearson_estimate(uk, n, level, side)[np.ravel(inv)].reshape(k.shape)
    tab = _cp_table(int(n), float(level), side)
    vals = tab[k]
    miss = np.isnan(vals)
    if miss.any():
        new = np.unique(k[miss])
        tab[new] = clopper_pearson_estimate(new, n, level, side)
        vals = tab[k]
    return vals


def _forecast_scores(specs, X: np.ndarray, n: int, top: int, margin: str) -> np.ndarray:
    """Mean of ``max(pair margin, 0)`` over the rows of ``X`` for each ``(kind, buckets, level)`` spec.

    A spec is a pair bound with every endpoint at ``level``: ``kind == "cohen"`` uses
    ``p_B = 1 - p_A`` (one bucket holding every other class), otherwise ``p_B`` is the largest
    upper endpoint of the buckets' masses.  Vectorised over draws and specs: one matrix product
    gives every bucket's mass, one table look-up per distinct level and side gives the endpoints
    (:func:`_cp_forecast`).  Forecast use only.
    """
    D, m = X.shape
    k = len(specs)
    pa = np.empty((D, k))
    pb = np.empty((D, k))
    xa = X[:, top]
    lo_levels = sorted({lev for _, _, lev in specs})
    lo = {lev: _cp_forecast(xa, n, lev, "lower") for lev in lo_levels}
    W, col_lev, owner = [], [], []
    for j, (kind, buckets, lev) in enumerate(specs):
        pa[:, j] = lo[lev]
        if kind == "cohen":
            pb[:, j] = 1.0 - lo[lev]
            continue
        for bk in buckets:
            w = np.zeros(m, dtype=np.int64)
            w[list(bk)] = 1
            W.append(w)
            col_lev.append(lev)
            owner.append(j)
    if W:
        masses = X @ np.stack(W, axis=1)  # (D, number of bucket columns)
        hi = np.empty(masses.shape)
        col_lev = np.asarray(col_lev)
        for lev in np.unique(col_lev):
            c = np.flatnonzero(col_lev == lev)
            hi[:, c] = _cp_forecast(masses[:, c], n, float(lev), "upper")
        owner = np.asarray(owner)
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        pb[:, owner[starts]] = np.maximum.reduceat(hi, starts, axis=1)
    return np.mean(np.maximum(_g(pa, pb, margin), 0.0), axis=0)


def _spec(st: Structure, alpha: float, per_side: bool = True):
    """The forecast spec of a structure: ``"trinomial"`` gets its floor, the Bonferroni pair at
    ``alpha/B`` (halves ``alpha/(2B)``), which the dominating statistic never falls below."""
    if st.kind == "cohen":
        return ("cohen", st.buckets, alpha)
    if st.kind == "pairs":
        return ("pairs", st.buckets, alpha / st.n_tests)
    return ("pairs", st.buckets, alpha / (2.0 * st.n_tests) if per_side else alpha / st.n_tests)


#: A trinomial candidate's exact gain over its floor is computed only if it could change the choice:
#: if its floor score plus ``TRINOMIAL_GAIN_CAP`` times (pair at ``alpha/B`` per side minus floor,
#: at the forecast counts) exceeds the best other score.  On the benchmark counts the gain was at
#: most 2.2 times that difference (median 1.07).  Heuristic: validity does not depend on it.
TRINOMIAL_GAIN_CAP = 3.0


def choose_structure(samples: "Samples", alpha: float, margin: str, top: int = None) -> Structure:
    """The structure whose forecast bound is largest; a function of the selection sample only.

    Counts: the score of a candidate of :func:`exact_structures` is the mean of
    ``max(bound, 0)`` (what a radius uses) over the posterior-predictive count
    vectors of :func:`forecast_draws`.  A trinomial candidate is scored by the
    Bonferroni pair at its level (a floor of it, theory §4.7) plus the gain of
    the trinomial bound over that floor at the posterior-mean counts
    (:func:`forecast_counts`), computed for the best-scoring trinomial
    candidate only, against its bucket of largest forecast mass, and only
    when it could change the choice (:data:`TRINOMIAL_GAIN_CAP`).  Scores:
    normal-approximation forecasts from the selection scores
    (:func:`_score_forecast`).  Ties keep the earlier candidate (Cohen,
    then fewer tests).  Heuristic: validity does not depend on it.
    """
    if top is None:
        top = choose_top(samples.selection_totals)[0]
    if samples.kind == "counts":
        key = (tuple(int(v) for v in samples.selection_totals), int(top), int(samples.n), float(alpha), margin)
        return _choose_counts(*key)
    cands = exact_structures(samples.selection_totals, top, samples.kind)
    if len(cands) == 1:
        return cands[0]
    scores = [_score_forecast(st, samples.selection, samples.n, top, alpha, margin) for st in cands]
    best = int(np.argmax(scores))  # first maximum: earlier candidates win ties
    return cands[best]


@lru_cache(maxsize=4096)
def _choose_counts(sel: Tuple[int, ...], top: int, n: int, alpha: float, margin: str) -> Structure:
    """:func:`choose_structure` for counts: a deterministic function of the selection counts, ``top``,
    ``n``, ``alpha`` and the margin, memoised (selection vectors repeat often: 192 distinct among the
    360 digits inputs at sigma = 0.25)."""
    totals = np.asarray(sel, dtype=float)
    cands = exact_structures(totals, top, "counts")
    if len(cands) == 1:
        return cands[0]
    X = forecast_draws(totals, top, n)
    scores = _forecast_scores([_spec(st, alpha) for st in cands], X, n, top, margin)
    tri = [i for i, st in enumerate(cands) if st.kind == "trinomial"]
    if tri:
        i = max(tri, key=lambda j: scores[j])
        st = cands[i]
        xf = forecast_counts(totals, top, n)
        # the gain of the trinomial test over its floor, against the bucket with the largest forecast
        # mass (the one that sets the minimum)
        b = max(st.buckets, key=lambda bb: int(xf[list(bb)].sum()))
        one = Structure("trinomial", (b,), st.statistic)
        lev = alpha / st.n_tests
        floor, ceil = _forecast_scores([_spec(one, lev), _spec(one, lev, per_side=False)],
                                       xf[None, :], n, top, margin)
        others = max((scores[j] for j in range(len(cands)) if j not in tri), default=-math.inf)
        if scores[i] > 0 and scores[i] + TRINOMIAL_GAIN_CAP * max(ceil - floor, 0.0) > others:
            full = _count_structure(one, xf, n, top, lev, margin)[0]  # one exact call
            if np.isfinite(full):
                scores[i] += max(full - floor, 0.0)
    best = int(np.argmax(scores))  # first maximum: earlier candidates win ties
    return cands[best]


def exact(selection, estimation, alpha, *, margin: str = "linear", bound="betting",
          structure: Structure = None) -> ReductionResult:
    """The best of several valid structures, chosen per input on the selection sample (theory §7).

    See the module docstring ("The exact reduction").  ``structure`` forces
    one :class:`Structure` (for tests and audits); by default
    :func:`choose_structure` picks it.  ``p_a_lower``/``p_b_upper`` are NaN when
    the chosen structure bounds the margin directly.  The level is ``alpha``
    in total, split as the chosen structure says (``alpha_each * n_tests``).

    References
    ----------
    Cohen, Rosenfeld, Kolter (2019), ICML; Delattre et al. (2025), AISTATS
    (class partitioning); theory §4.7 (dominating statistics), §5 (direct
    margin), §7 (reductions).

    Examples
    --------
    >>> import numpy as np
    >>> r = exact(np.array([2, 95, 3]), np.array([10, 980, 10]), 0.001, margin="probit")
    >>> r.top, r.structure, r.buckets, r.alpha_each * r.n_tests == 0.001
    (1, 'trinomial', ((2,), (0,)), True)
    >>> two = exact(np.array([3, 97]), np.array([20, 980]), 0.001, margin="probit")
    >>> two.structure, two.n_tests  # two classes: Cohen's bound at the full alpha
    ('cohen', 1)
    """
    s, a, top, runner = _common(selection, estimation, alpha, margin)
    st = choose_structure(s, a, margin, top) if structure is None else structure
    if not isinstance(st, Structure):
        raise ValueError(f"structure must be a radius.reductions.Structure or None, got {structure!r}")
    if s.kind == "counts":
        if st.kind not in ("cohen", "pairs", "trinomial"):
            raise ValueError(f"structure kind {st.kind!r} does not apply to count vectors")
        ml, pa, pb, bname = _count_structure(st, s.estimation, s.n, top, a, margin)
    else:
        if st.kind not in ("cohen", "pairs", "direct"):
            raise ValueError(f"structure kind {st.kind!r} does not apply to score matrices")
        ml, pa, pb, bname = _score_structure(st, s.estimation, top, a, margin, bound)
    return ReductionResult("exact", top, runner, tuple(st.buckets), pa, pb, margin, float(ml),
                           a / st.n_tests, st.n_tests, bname, st.kind)


def _score_structure(st: Structure, est: np.ndarray, top: int, alpha: float, margin: str, bound):
    bname = resolve_bound(bound)[1]
    if st.kind == "cohen":
        pa = float(_mean_bound(est[:, [top]], alpha, "lower", (0.0, 1.0), bound)[0])
        pb = min(1.0, 1.0 + SIMPLEX_TOL - pa)
        return _pair_margin(pa, pb, margin), pa, pb, bname
    ae = alpha / st.n_tests
    cols = _bucket_columns(est, st.buckets)
    if st.kind == "pairs":
        pa = float(_mean_bound(est[:, [top]], ae, "lower", (0.0, 1.0), bound)[0])
        pb = float(np.max(_mean_bound(cols, ae, "upper", (0.0, 1.0 + SIMPLEX_TOL), bound)))
        return _pair_margin(pa, pb, margin), pa, pb, bname
    from .radii import probit_from_linear_margin

    D = float(np.min(_mean_bound(est[:, [top]] - cols, ae, "lower", (-1.0 - SIMPLEX_TOL, 1.0), bound)))
    ml = D if margin == "linear" else float(probit_from_linear_margin(D))
    return ml, math.nan, math.nan, bname


def _as_float(v) -> float:
    """Accept a float or an object with a ``lower``/``value``/``bound`` attribute."""
    for attr in ("lower", "value", "bound"):
        if hasattr(v, attr):
            return float(getattr(v, attr))
    return float(v)


def reduce(name: str, selection, estimation, alpha, *, margin: str = "linear", bound="betting") -> ReductionResult:
    """Dispatch to one of :data:`REDUCTIONS` by name."""
    check_choice(name, "reduction", REDUCTIONS)
    return {"cohen": cohen, "bonferroni": bonferroni, "cpm": cpm, "exact": exact}[name](
        selection, estimation, alpha, margin=margin, bound=bound)


def clear_caches() -> None:
    """Forget the forecast's endpoint tables and the memoised structure choices (for measurements only;
    results never depend on them)."""
    _FORECAST_CP.clear()
    _choose_counts.cache_clear()
