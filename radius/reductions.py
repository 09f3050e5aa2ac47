"""Reductions from m classes to one bound on the multiclass margin (SPEC section 7).

A certificate for the top class ``y`` needs a lower bound on a margin between
``y`` and the *strongest* other class, ``p_y - max_{k != y} p_k`` (linear) or
``Phi^-1(p_y) - Phi^-1(max_{k != y} p_k)`` (probit).  Bounding only the
empirical runner-up is not conservative (SPEC 8.5).  Each reduction below
bounds a quantity that is ``<=`` the true margin, and splits ``alpha`` so the
union of its failure events has probability ``<= alpha`` (SPEC 2.2):

============  ========================================================  =========================
reduction     what is bounded                                           alpha split
============  ========================================================  =========================
``cohen``     lower ``p_A`` only; ``p_B := 1 - p_A_lower``              1 bound at ``alpha``
``bonferroni`` lower ``p_y``, upper ``p_k`` for each of the m-1 others  m bounds at ``alpha/m``
``cpm``       lower ``p_y``, upper on each bucket's total mass           K bounds at ``alpha/K``
``exact``     margin ``y`` vs each bucket (:func:`exact_buckets`), directly  B bounds at ``alpha/B``
============  ========================================================  =========================

K is the number of CPM buckets *including* the top class's own; B is the
number of buckets of other classes chosen for ``exact``.  Buckets (and ``y``) are chosen on the selection
sample only, so, given the selection, the estimation sample is a fresh draw
and each bound holds at its stated level.  Since every other class ``k`` lies
in some bucket ``b`` and ``p_k <= p_b`` (bucket mass), ``max_k p_k <= max_b p_b``,
so a bound on ``p_y - max_b p_b`` (or its probit version, ``Phi^-1`` is
increasing) is a bound on the margin.

Inputs are either count vectors (hardmax smoothing; Clopper–Pearson bounds,
and for ``exact`` the exact trinomial test of :func:`confbounds.margin_lower_bound`
on ``(X_y, X_b, n - X_y - X_b)``) or score matrices of simplex outputs (mean
bounds from :mod:`confbounds`: ``bound="betting" | "bernstein" | "hoeffding"`` or a
callable ``f(x, alpha, side, bounds)``; for ``exact`` the *direct margin* of
SPEC 5: ``Z_i = X_i^y - X_i^b``, one lower bound on ``E[Z]`` per bucket).
For the score case ``exact`` therefore needs no trinomial: it bounds the
linear margin against each bucket with a single test instead of two
Bonferroni halves, and the probit margin follows from
:func:`radius.radii.probit_from_linear_margin`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple, Union

import numpy as np
from scipy import special

from confbounds._validate import check_alpha, check_choice, check_integer_array
from confbounds.binomial import clopper_pearson

__all__ = [
    "ReductionResult",
    "Samples",
    "as_samples",
    "choose_top",
    "cpm_buckets",
    "exact_buckets",
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
    return Samples("scores", sel_s.sum(axis=0), est_s, m, int(sel_s.shape[0]), int(est_s.shape[0]))


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


def exact_buckets(selection_totals, top: int, n0: float, n: int, alpha: float) -> List[Tuple[int, ...]]:
    """Buckets for the ``exact`` reduction, chosen on the selection sample only.

    Candidates: the ``j`` largest other classes (by selection total) as
    singletons and the remaining ones merged into one bucket, ``j = 0..m-1``
    (``j = m - 1``: all singletons; the CPM structure is one of them).  Each
    candidate is scored by a normal-approximation forecast of its margin
    bound at the estimation size ``n``:
    ``min_b (p_y - p_b) - z_{alpha/B} sqrt((p_y + p_b - (p_y - p_b)^2) / n)``
    with ``p_y = (s_y + 1/2) / (n0 + m/2)`` and a bucket mass that adds a
    pseudo-count 1/2 for each class *seen* in the selection plus 1/2 for the
    bucket (a merged bucket of many seen classes is forecast pessimistically;
    classes never seen cost nothing extra when merged).  The best forecast wins (ties: fewer buckets).  Only the
    selection sample and the design constants ``n``, ``alpha`` enter, so the
    choice is independent of the estimation sample and the per-bucket bounds
    stay valid at ``alpha/B``.  Why not CPM's rule: a merged bucket whose
    selection total is just below the runner-up's often carries more
    estimation mass than any single class, which costs more than the smaller
    alpha split saves (checked in ``tests/test_reductions.py``).

    Examples
    --------
    >>> exact_buckets([5, 80, 10, 5], 1, 100, 1000, 0.001)
    [(2,), (0,), (3,)]
    """
    t = np.asarray(selection_totals, dtype=float)
    n0 = float(n0)
    m = t.size
    p_top = (t[top] + 0.5) / (n0 + 0.5 * m)
    others = [int(k) for k in np.argsort(-t, kind="stable") if k != top]
    from scipy.stats import norm

    best, best_score = None, -math.inf
    for j in range(len(others), -1, -1):  # fewer buckets first among ties (j = m-1 .. 0)
        cand = [(k,) for k in others[:j]]
        if others[j:]:
            cand.append(tuple(sorted(others[j:])))
        if not cand:
            continue
        z = float(norm.isf(alpha / len(cand)))
        score = min(
            (p_top - pb) - z * math.sqrt(max(p_top + pb - (p_top - pb) ** 2, 0.0) / n)
            for pb in (_forecast_mass(t[list(b)], n0, m) for b in cand)
        )
        if score > best_score + 1e-15 or (abs(score - best_score) <= 1e-15 and len(cand) < len(best)):
            best, best_score = cand, score
    return best


def _forecast_mass(totals: np.ndarray, n0: float, m: int) -> float:
    seen = int(np.count_nonzero(totals > 0))
    return float((totals.sum() + 0.5 * seen + 0.5) / (n0 + 0.5 * m))


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
        Lower bound on ``p_y``, upper bound on ``max_{k != y} p_k``; NaN when the
        reduction bounds the margin directly (``exact``).
    margin : {"linear", "probit"}
        Which margin ``margin_lower`` bounds.
    margin_lower : float
        Lower bound on ``p_y - max_k p_k`` (linear) or
        ``Phi^-1(p_y) - Phi^-1(max_k p_k)`` (probit; may be ``-inf``).
    alpha_each : float
        Level of each of the ``n_tests`` bounds; ``alpha_each * n_tests <= alpha``.
    bound : str
        The bound used (``"clopper_pearson"``, ``"trinomial"``, or a mean bound).
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


def exact(selection, estimation, alpha, *, margin: str = "linear", bound="betting",
          method: str = "exact", buckets: str = "auto", berger_boos=True) -> ReductionResult:
    """Margin bound against each CPM bucket directly, ``B`` bounds at ``alpha/B``.

    Buckets (selection sample only), ``B`` of them: ``buckets="auto"``
    (default) uses :func:`exact_buckets`, ``"cpm"`` the CPM rule of
    :func:`cpm_buckets`.

    * Counts: for each bucket ``b`` the exact trinomial lower bound of
      :func:`confbounds.margin_lower_bound` on ``g(q_y, q_b)`` from
      ``(X_y, X_b, n - X_y - X_b) ~ Mult(n; p_y, p_b, 1 - p_y - p_b)`` at level
      ``alpha/B``, with ``g`` the linear (``q_y - q_b``) or probit
      (``Phi^-1(q_y) - Phi^-1(q_b)``) margin; the minimum over buckets.
      (SPEC 4; ``method="bonferroni"`` passes through to ``margin_lower_bound``.)
      ``berger_boos=True`` (default) restricts the nuisance ``q_y + q_b`` to a
      Clopper–Pearson interval at ``gamma = alpha/(10 B)`` and tests at
      ``alpha/B - gamma`` inside :func:`confbounds.margin_lower_bound` (SPEC
      4.3; Berger & Boos 1994): it pays off when the rest ``X_3`` is large,
      which is the rule here since the other buckets are in the rest.
    * Scores: the direct margin of SPEC 5: ``Z_i = X_i^y - X_i^b`` (values in
      ``[-1 - SIMPLEX_TOL, 1]``), one lower bound on ``E[Z]`` at ``alpha/B``
      with the chosen mean bound, the minimum ``D`` over buckets; the probit
      margin is ``2 Phi^-1((1 + D)/2)``
      (:func:`radius.radii.probit_from_linear_margin`).

    With ``m = 2`` there is one bucket and the full ``alpha`` goes to one test.
    ``p_a_lower`` and ``p_b_upper`` are NaN: the margin is bounded directly.
    """
    s, a, top, runner = _common(selection, estimation, alpha, margin)
    check_choice(buckets, "buckets", ("auto", "cpm"))
    if buckets == "cpm":
        buckets = cpm_buckets(s.selection_totals, top)
    else:
        buckets = exact_buckets(s.selection_totals, top, s.n0, s.n, a)
    B = len(buckets)
    ae = a / B
    if s.kind == "counts":
        from confbounds import margin_lower_bound

        vals = []
        x1 = int(s.estimation[top])
        for b in buckets:
            x2 = int(s.estimation[list(b)].sum())
            bb = berger_boos if method == "exact" else None
            vals.append(_as_float(margin_lower_bound(x1, x2, s.n, ae, margin=margin, method=method,
                                                     berger_boos=bb)))
        ml = float(min(vals))
        bname = "trinomial" if method == "exact" else f"trinomial_{method}"
    else:
        from .radii import probit_from_linear_margin

        cols = s.estimation[:, [top]] - _bucket_columns(s.estimation, buckets)
        D = float(np.min(_mean_bound(cols, ae, "lower", (-1.0 - SIMPLEX_TOL, 1.0), bound)))
        ml = D if margin == "linear" else float(probit_from_linear_margin(D))
        bname = resolve_bound(bound)[1]
    return ReductionResult("exact", top, runner, tuple(buckets), math.nan, math.nan, margin, ml, ae, B, bname)


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
