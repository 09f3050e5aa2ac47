"""Coverage tools: test any bound, ours or a user's, against its promise.

Instruments (theory §2, item 5):

* :func:`assert_coverage` is the one-call test: an exact verdict for count
  families (binomial, trinomial: every outcome enumerated, no tolerance), a
  Monte Carlo verdict with a one-sided binomial test for sample families
  (Bernoulli, Beta, or your own :class:`SampleFamily`). It names the worst
  parameter found and raises ``AssertionError`` when the bound undercovers.
* :func:`exact_binomial_coverage` and :func:`exact_trinomial_coverage`
  enumerate every outcome of ``Bin(n, p)`` or ``Mult(n; q)`` and add up the
  probability of the outcomes whose bound misses the truth.  The bound is
  evaluated once per outcome and reused for every parameter value.
* :func:`monte_carlo_coverage` draws repetitions of a sample-based bound and
  runs a one-sided exact binomial test of ``H0: P(miss) <= alpha`` on the
  number of misses.
* :func:`binomial_cases`, :func:`multinomial_cases` and :func:`sample_cases`
  are hypothesis strategies drawing a true parameter, ``n`` and ``alpha``
  together with data from that parameter; :func:`count_vectors` and
  :func:`score_matrices` draw data alone (hypothesis is imported only when a
  strategy is built).

Every entry point checks what the bound returns: real numbers (not bool,
complex or object), exactly one bound per outcome or repetition (a bound that
returns one number for a whole batch is refused, not broadcast), finite or
``+-inf``, never NaN; a two-sided bound returns a pair ``(low, high)`` with
``low <= high``. Anything else raises ``ValueError`` with a message.

Call conventions
----------------
``side="lower"`` means the bound claims ``bound <= truth``; a miss is
``bound > truth``.  ``side="upper"`` claims ``bound >= truth``.
``side="two-sided"``: the bound returns ``(low, high)`` and claims
``low <= truth <= high`` with total failure probability ``alpha`` (how it
splits ``alpha`` between the sides is its own business).
``vectorized=True`` (default): the bound is called once with arrays (all
outcomes, or an ``(n, r)`` block of samples); ``vectorized=False``: once per
outcome with Python ints, or once per repetition with one ``(n,)`` sample.

Examples
--------
Exact coverage of the one-sided Clopper–Pearson lower bound at n = 20, over
the critical parameters (where coverage jumps) and a fine grid:

>>> import numpy as np
>>> from confbounds import clopper_pearson
>>> from confbounds.coverage import exact_binomial_coverage, monte_carlo_coverage
>>> res = exact_binomial_coverage(lambda k, n: clopper_pearson(k, n, 0.05), 20, alpha=0.05)
>>> res.passed, bool(res.min() >= 0.95)
(True, True)

Monte Carlo coverage of a sample-based bound (vectorised over columns):

>>> from confbounds import empirical_bernstein
>>> res = monte_carlo_coverage(
...     lambda x: empirical_bernstein(x, 0.05),
...     lambda rng, size: rng.beta(2, 5, size=size), true_value=2 / 7,
...     n=50, alpha=0.05, reps=2000, seed=0)
>>> res.passed
True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np
from scipy import special, stats

from ._validate import check_alpha, check_choice

__all__ = [
    "assert_coverage",
    "CoverageReport",
    "exact_binomial_coverage",
    "ExactCoverage",
    "exact_trinomial_coverage",
    "trinomial_outcomes",
    "trinomial_log_pmf_table",
    "monte_carlo_coverage",
    "MonteCarloCoverage",
    "check_bound_output",
    "Binomial",
    "Trinomial",
    "Bernoulli",
    "Beta",
    "SampleFamily",
    "binomial_cases",
    "multinomial_cases",
    "sample_cases",
    "BinomialCase",
    "MultinomialCase",
    "SampleCase",
    "count_vectors",
    "score_matrices",
]

_SIDES = ("lower", "upper", "two-sided")


# ------------------------------------------------------------------------------------------ argument checks
def _check_pos_int(v, name: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _check_level(v, name: str = "test_level") -> float:
    try:
        a = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), got {v!r}") from None
    if not (0.0 < a < 1.0):
        raise ValueError(f"{name} must lie in the open interval (0, 1), got {v!r}")
    return a


def _real_array(values, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values)
    except Exception as e:  # noqa: BLE001 - ragged lists and the like
        raise ValueError(f"{what} returned something that is not an array of numbers ({e})") from None
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{what} must return real numbers (a float or int array), got dtype {arr.dtype}"
                         + (" (bool: a bound is a number, not a verdict)" if arr.dtype.kind == "b" else ""))
    return arr.astype(np.float64, copy=False)


def check_bound_output(values, shape: Tuple[int, ...], side: str, what: str = "bound_fn",
                       where: Optional[Callable[[int], str]] = None):
    """Check what a bound returned and return it as float64 (a ``(low, high)`` pair for two-sided bounds).

    Parameters
    ----------
    values : array_like, or a pair of them for ``side="two-sided"``
    shape : tuple of int
        The exact shape required: one bound per outcome or repetition. Nothing is broadcast, so a bound
        that returns one number for a whole batch is refused.
    side : {"lower", "upper", "two-sided"}
    what : str
        Name of the bound in messages.
    where : callable ``flat index -> str``, optional
        Describes the input that produced an entry (for the NaN message).

    Returns
    -------
    ndarray, or a pair of ndarrays for two-sided bounds.

    Raises
    ------
    ValueError
        Not real numbers (bool, complex, object, strings); a shape other than ``shape``; a NaN; for
        two-sided bounds, not a pair or ``low > high``.

    Examples
    --------
    >>> check_bound_output(np.zeros(3), (3,), "lower").shape
    (3,)
    >>> check_bound_output(0.5, (3,), "lower")
    Traceback (most recent call last):
    ...
    ValueError: bound_fn returned shape () but must return shape (3,): one bound per outcome or repetition...
    """
    check_choice(side, "side", _SIDES)
    if side == "two-sided":
        if isinstance(values, np.ndarray) and values.ndim >= 1 and values.shape[0] == 2:
            low, high = values[0], values[1]
        elif isinstance(values, (tuple, list)) and len(values) == 2:
            low, high = values
        else:
            raise ValueError(f"{what} is two-sided and must return a pair (low, high), got "
                             f"{type(values).__name__}{' of shape ' + str(np.shape(values)) if hasattr(values, 'shape') else ''}")
        low = check_bound_output(low, shape, "lower", what + " (low end)", where)
        high = check_bound_output(high, shape, "upper", what + " (high end)", where)
        bad = low > high
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{what} returned an empty interval: low {float(low.flat[i])!r} > high {float(high.flat[i])!r}"
                             f"{' at ' + where(i) if where else ''}")
        return low, high
    arr = _real_array(values, what)
    if arr.shape != tuple(shape):
        hint = (" (it returned one number: a bound that reduces a whole batch to one value is not vectorised; "
                "pass vectorized=False to call it once per outcome or repetition)") if arr.ndim == 0 else ""
        raise ValueError(f"{what} returned shape {arr.shape} but must return shape {tuple(shape)}: one bound per "
                         f"outcome or repetition, nothing is broadcast{hint}")
    nan = np.isnan(arr)
    if np.any(nan):
        i = int(np.flatnonzero(nan)[0])
        raise ValueError(f"{what} returned NaN{' at ' + where(i) if where else f' at index {i}'}; a bound must be "
                         "a number or +-inf")
    return arr


def _call_outcomes(bound_fn, args: Sequence[np.ndarray], side: str, vectorized: bool, what: str, where):
    """Evaluate ``bound_fn`` on every outcome (arrays ``args``), vectorised or one outcome at a time."""
    size = len(args[0])
    if vectorized:
        return check_bound_output(bound_fn(*args), (size,), side, what, where)
    out = [check_bound_output(bound_fn(*(int(a[i]) for a in args)), (), side, what, lambda _, i=i: where(i))
           for i in range(size)]
    if side == "two-sided":
        return np.array([o[0] for o in out]), np.array([o[1] for o in out])
    return np.array(out, dtype=np.float64)


def _miss_mask(bounds, truth, side: str) -> np.ndarray:
    """``miss[i, j]`` for truths ``i`` (rows) and outcomes ``j`` (columns)."""
    t = np.asarray(truth, dtype=np.float64)[:, None]
    if side == "two-sided":
        low, high = bounds
        return (low[None, :] > t) | (high[None, :] < t)
    if side == "lower":
        return bounds[None, :] > t
    return bounds[None, :] < t


# ------------------------------------------------------------------------------------------ exact: binomial
@dataclass(frozen=True, eq=False)
class ExactCoverage:
    """Result of :func:`exact_binomial_coverage`: exact coverages at the parameters evaluated.

    Attributes
    ----------
    n : int
    side : str
    alpha : float or None
        The promised miss probability (None: no verdict asked for).
    params : ndarray
        The parameters evaluated (flattened).
    coverage : ndarray
        ``P_p(bound covers truth)`` for each parameter, in the shape of the ``p`` given (flattened when the
        parameters were searched).
    miss : ndarray
        ``1 - coverage``, summed from the missed outcomes' probabilities (more accurate than ``1 - coverage``).
    worst_param, worst_coverage : float
        The parameter with the largest miss probability, and its coverage.
    passed : bool or None
        ``miss <= alpha`` at every parameter (no tolerance); None when ``alpha`` is None.

    ``min()``, ``float()`` (one parameter) and ``numpy.asarray`` give the coverages. ``bool()`` is refused:
    write ``assert res.passed``.
    """

    n: int
    side: str
    alpha: Optional[float]
    params: np.ndarray
    coverage: Any
    miss: Any
    worst_param: float
    worst_coverage: float
    passed: Optional[bool]

    def min(self) -> float:
        """The smallest coverage found."""
        return float(np.min(self.coverage))

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.coverage, dtype=dtype)

    def __float__(self) -> float:
        if np.size(self.coverage) != 1:
            raise TypeError(f"float() of an ExactCoverage over {np.size(self.coverage)} parameters; use .min()")
        return float(np.asarray(self.coverage).reshape(-1)[0])

    def __bool__(self):
        raise TypeError("the truth value of an ExactCoverage is ambiguous: use .passed (with alpha=) or .min()")

    def __repr__(self) -> str:
        return (f"ExactCoverage(n={self.n}, side={self.side!r}, alpha={self.alpha}, parameters={self.params.size}, "
                f"min coverage={self.worst_coverage!r} at p={self.worst_param!r}, passed={self.passed})")


def _binom_miss(n: int, p: np.ndarray, miss: np.ndarray) -> np.ndarray:
    """``P_p(K in missed set)`` for each row; runs touching 0 or n use cdf/sf (accurate small tails)."""
    k = np.arange(n + 1)
    out = np.empty(len(p))
    for i, (pi, row) in enumerate(zip(p, miss)):
        idx = np.flatnonzero(row)
        if idx.size == 0:
            out[i] = 0.0
            continue
        total = 0.0
        # split into runs of consecutive outcomes
        breaks = np.flatnonzero(np.diff(idx) > 1)
        starts = np.concatenate([[idx[0]], idx[breaks + 1]])
        ends = np.concatenate([idx[breaks], [idx[-1]]])
        for a, b in zip(starts, ends):
            if a == 0 and b == n:
                total += 1.0
            elif b == n:
                total += float(stats.binom.sf(a - 1, n, pi))
            elif a == 0:
                total += float(stats.binom.cdf(b, n, pi))
            else:
                total += float(np.sum(stats.binom.pmf(k[a:b + 1], n, pi)))
        out[i] = min(total, 1.0)
    return out


def _critical_ps(bounds, side: str, grid: int = 1001) -> np.ndarray:
    """Parameters where the coverage of a bound on p can be smallest: the one-sided limits at every bound
    value in [0, 1] (where an outcome starts to miss), plus a uniform grid of ``grid`` points on [0, 1]."""
    pts = [np.linspace(0.0, 1.0, grid)]
    if side in ("lower", "two-sided"):
        b = bounds[0] if side == "two-sided" else bounds
        b = b[(b > 0) & (b <= 1)]
        pts.append(np.nextafter(b, -np.inf))  # just below b_k: outcome k misses (b_k > p)
    if side in ("upper", "two-sided"):
        b = bounds[1] if side == "two-sided" else bounds
        b = b[(b >= 0) & (b < 1)]
        pts.append(np.nextafter(b, np.inf))
    return np.unique(np.concatenate(pts))


def exact_binomial_coverage(bound_fn: Callable, n: int, p=None, side: str = "lower",
                            truth_fn: Optional[Callable] = None, *, alpha: Optional[float] = None,
                            vectorized: bool = True) -> ExactCoverage:
    """Exact coverage of a count-based bound by enumerating ``k = 0..n``.

    Parameters
    ----------
    bound_fn : callable ``(k, n) -> bound``
        ``vectorized=True``: called once with ``k = np.arange(n + 1)`` (an int array) and the int ``n``; must
        return ``n + 1`` bounds (a pair of such arrays for ``side="two-sided"``). ``vectorized=False``: called
        once per ``k`` with Python ints, returning one number (or a pair).
    n : int
    p : float or array_like, optional
        True success probabilities at which to evaluate coverage. Default (only without ``truth_fn``): every
        parameter where the coverage can jump down (just below each lower bound value, just above each
        upper bound value, in [0, 1]) plus 1001 equispaced points of [0, 1]. For bounds monotone in ``k``
        the worst case is among the jump points, so the verdict is exact; otherwise the grid is a search.
    side : {"lower", "upper", "two-sided"}
    truth_fn : callable, optional
        Maps ``p`` to the bounded quantity (default: ``p`` itself).
    alpha : float, optional
        The promised miss probability; gives the verdict ``passed`` (miss probability ``<= alpha`` at every
        parameter, no tolerance).
    vectorized : bool

    Returns
    -------
    ExactCoverage

    Raises
    ------
    ValueError
        Bad arguments, or a bound output that is not one real, non-NaN number per outcome
        (:func:`check_bound_output`).

    References
    ----------
    Brown, L. D., Cai, T. T. and DasGupta, A. (2001). Interval estimation for a binomial proportion.
    Statistical Science 16(2), 101–133 (exact coverage by enumeration; the Wald interval's undercoverage).

    Examples
    --------
    The point estimate k/n as a "lower bound" covers p = 1/2 exactly when k <= 5 (n = 10):

    >>> res = exact_binomial_coverage(lambda k, n: k / n, 10, 0.5, alpha=0.05)
    >>> float(res) == 638 / 1024, res.passed
    (True, False)
    """
    check_choice(side, "side", _SIDES)
    n = _check_pos_int(n, "n")
    alpha = None if alpha is None else check_alpha(alpha)
    k = np.arange(n + 1)

    def where(i):
        return f"k = {i} (n = {n})"

    if vectorized:
        bounds = check_bound_output(bound_fn(k, n), (n + 1,), side, "bound_fn", where)
    else:
        bounds = _call_outcomes(lambda kk: bound_fn(kk, n), [k], side, False, "bound_fn", where)
    if p is None:
        if truth_fn is not None:
            raise ValueError("give the parameters p= when truth_fn is given (the default search assumes the "
                             "bound is on p itself)")
        p_arr = _critical_ps(bounds, side)
        shape = p_arr.shape
    else:
        p_in = np.asarray(p, dtype=float)
        if p_in.size == 0 or not np.all((p_in >= 0) & (p_in <= 1)):
            raise ValueError(f"p must be probabilities in [0, 1], got {p!r}")
        shape = p_in.shape
        p_arr = p_in.reshape(-1)
    truth = p_arr if truth_fn is None else np.asarray(truth_fn(p_arr), dtype=float).reshape(-1)
    if truth.shape != p_arr.shape or np.any(np.isnan(truth)):
        raise ValueError(f"truth_fn must return one non-NaN value per p, got shape {truth.shape}")
    miss = _binom_miss(n, p_arr, _miss_mask(bounds, truth, side))
    cov = 1.0 - miss
    j = int(np.argmax(miss))
    passed = None if alpha is None else bool(np.all(miss <= alpha))
    return ExactCoverage(n=n, side=side, alpha=alpha, params=p_arr, coverage=cov.reshape(shape) if shape else
                         float(cov[0]), miss=miss.reshape(shape) if shape else float(miss[0]),
                         worst_param=float(p_arr[j]), worst_coverage=float(cov[j]), passed=passed)


# ------------------------------------------------------------------------------------------ exact: trinomial
def trinomial_outcomes(n: int):
    """All outcomes ``(x1, x2, x3)`` of ``Mult(n; q1, q2, q3)`` as three int arrays."""
    x1, x2 = np.divmod(np.arange((n + 1) ** 2), n + 1)
    keep = x1 + x2 <= n
    x1, x2 = x1[keep], x2[keep]
    return x1, x2, n - x1 - x2


def trinomial_log_pmf_table(n: int, q) -> np.ndarray:
    """``P(X = x)`` for every outcome of :func:`trinomial_outcomes` and each row of ``q``.

    ``q`` has shape (3,) or (r, 3); returns shape (outcomes,) or (r, outcomes).
    Uses the multinomial coefficient ``n!/(x1! x2! x3!)`` (theory §8.3).
    """
    x = np.stack(trinomial_outcomes(n))  # (3, K)
    q = np.asarray(q, dtype=float)
    qq = np.atleast_2d(q)
    if qq.shape[1] != 3 or np.any(qq < 0) or np.any(np.abs(qq.sum(axis=1) - 1) > 1e-12):
        raise ValueError(f"q must have rows of three non-negative probabilities summing to 1, got {q!r}")
    logc = special.gammaln(n + 1) - special.gammaln(x + 1).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lq = np.log(qq)  # (r, 3)
        terms = np.where(x[None, :, :] == 0, 0.0, x[None, :, :] * lq[:, :, None])
    pmf = np.exp(logc[None, :] + terms.sum(axis=1))
    return pmf if q.ndim == 2 else pmf[0]


def _trinomial_bounds(bound_fn, n, side, vectorized):
    x1, x2, x3 = trinomial_outcomes(n)

    def where(i):
        return f"outcome (x1, x2, x3) = ({x1[i]}, {x2[i]}, {x3[i]})"

    return _call_outcomes(bound_fn, [x1, x2, x3], side, vectorized, "bound_fn", where)


def _trinomial_miss(bounds, n, q_arr, truth_fn, side):
    truth = np.asarray(truth_fn(q_arr), dtype=float).reshape(-1)
    if truth.shape != (len(q_arr),) or np.any(np.isnan(truth)):
        raise ValueError(f"truth_fn must return one non-NaN value per row of q, got shape {truth.shape}")
    pmf = trinomial_log_pmf_table(n, q_arr)
    return np.sum(pmf * _miss_mask(bounds, truth, side), axis=1)


def exact_trinomial_coverage(bound_fn: Callable, n: int, q, truth_fn: Callable, side: str = "lower",
                             vectorized: bool = False):
    """Exact coverage of a bound computed from trinomial counts.

    Parameters
    ----------
    bound_fn : callable ``(x1, x2, x3) -> bound``
        Called once per outcome with Python ints (or once with three int arrays if ``vectorized``; then it
        must return one bound per outcome). Outcomes are independent of ``q``, so the bound is computed once
        and reused for every row of ``q``. Two-sided bounds return ``(low, high)``.
    n : int
    q : array_like of shape (3,) or (r, 3)
        True cell probabilities.
    truth_fn : callable
        Maps ``q`` of shape (r, 3) to the true value of the bounded quantity (r,).
    side : {"lower", "upper", "two-sided"}
    vectorized : bool

    Returns
    -------
    float or ndarray (r,) of exact coverages (for a verdict with the worst ``q`` named, use
    :func:`assert_coverage` with ``family=Trinomial(...)``).

    Raises
    ------
    ValueError
        A bound output that is not one real, non-NaN number per outcome (:func:`check_bound_output`).
    """
    check_choice(side, "side", _SIDES)
    n = _check_pos_int(n, "n")
    bounds = _trinomial_bounds(bound_fn, n, side, vectorized)
    q_arr = np.atleast_2d(np.asarray(q, dtype=float))
    cov = 1.0 - _trinomial_miss(bounds, n, q_arr, truth_fn, side)
    return cov if np.ndim(q) == 2 else float(cov[0])


# ----------------------------------------------------------------------------------------------- Monte Carlo
@dataclass(frozen=True)
class MonteCarloCoverage:
    """Result of :func:`monte_carlo_coverage`.

    Attributes
    ----------
    misses, reps : int
        Repetitions whose bound missed the truth, and repetitions run.
    miss_rate : float
    alpha : float
        The promised miss probability.
    p_value : float
        One-sided exact binomial p-value of ``H0: P(miss) <= alpha``,
        ``P(Bin(reps, alpha) >= misses)``.
    test_level : float
    passed : bool
        ``p_value > test_level``.
    """

    misses: int
    reps: int
    miss_rate: float
    alpha: float
    p_value: float
    test_level: float
    passed: bool


def _chunks(reps: int, n: int, chunk_elements: int):
    """Chunk sizes r summing to reps, never r == n when n > 1 (so a bound reducing the wrong axis, which
    returns shape (n,), cannot pass the shape check for (r,))."""
    per = max(1, min(reps, chunk_elements // max(n, 1)))
    if per == n and n > 1:
        per = n - 1
    done = 0
    while done < reps:
        r = min(per, reps - done)
        if r == n and n > 1:
            r = n - 1
        yield r
        done += r


def _first_of_pair(out, side):
    if side != "two-sided":
        return out
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return out[0]
    if isinstance(out, np.ndarray) and out.ndim >= 1 and out.shape[0] == 2:
        return out[0]
    return out  # check_bound_output refuses it with a message


def _mc_misses(bound_fn, x, side, vectorized, truth) -> np.ndarray:
    """Boolean (r,): did repetition j's bound miss ``truth`` (at any time, for paths)?"""
    n, r = x.shape
    if vectorized:
        out = bound_fn(x)
        path = np.ndim(_first_of_pair(out, side)) == 2
        res = check_bound_output(out, (n, r) if path else (r,), side, "bound_fn",
                                 lambda i: (f"repetition {i % r}, time {i // r + 1}" if path else f"repetition {i}"))
    else:
        outs = [bound_fn(x[:, j]) for j in range(r)]
        path = np.ndim(_first_of_pair(outs[0], side)) == 1
        shape = (n,) if path else ()
        checked = [check_bound_output(o, shape, side, "bound_fn (vectorized=False)", lambda i, j=j: f"repetition {j}")
                   for j, o in enumerate(outs)]
        if side == "two-sided":
            res = (np.stack([c[0] for c in checked], axis=-1), np.stack([c[1] for c in checked], axis=-1))
        else:
            res = np.stack(checked, axis=-1)
    if side == "two-sided":
        miss = (res[0] > truth) | (res[1] < truth)
    elif side == "lower":
        miss = res > truth
    else:
        miss = res < truth
    return miss.any(axis=0) if path else miss


def monte_carlo_coverage(bound_fn: Callable, draw: Callable, true_value: float, n: int, alpha: float,
                         reps: int = 20_000, side: str = "lower", seed=0, test_level: float = 1e-3,
                         chunk_elements: int = 20_000_000, *, vectorized: bool = True) -> MonteCarloCoverage:
    """Monte Carlo coverage of a sample-based bound with a one-sided binomial test.

    Parameters
    ----------
    bound_fn : callable
        ``vectorized=True``: receives a sample array of shape ``(n, r)`` (``r`` repetitions as columns) and
        returns bounds of shape ``(r,)``, or a path of shape ``(n, r)`` (a confidence sequence: a miss is a
        miss at *any* time); a pair of them for ``side="two-sided"``. ``vectorized=False``: receives one
        sample of shape ``(n,)`` and returns one number (or an ``(n,)`` path, or a pair).
    draw : callable ``(rng, size) -> array``
        Draws i.i.d. samples of the given shape from the law under test.
    true_value : float
        The true mean (or other bounded quantity).
    n, alpha, reps : int, float, int
    side : {"lower", "upper", "two-sided"}
    seed : int, SeedSequence or numpy Generator
    test_level : float
        Level of the one-sided binomial test; the check passes when the p-value exceeds it.
    chunk_elements : int
        Repetitions are processed in chunks of at most this many samples (never ``n`` repetitions at once
        when ``n > 1``, so a bound averaging over the wrong axis cannot match the expected shape).
    vectorized : bool

    Returns
    -------
    MonteCarloCoverage

    Raises
    ------
    ValueError
        Bad arguments, ``draw`` not returning the shape asked for, or a bound output that is not one real,
        non-NaN number (or path) per repetition (:func:`check_bound_output`).

    References
    ----------
    Clopper and Pearson (1934) for the exact binomial tail behind the p-value.
    """
    check_choice(side, "side", _SIDES)
    alpha = check_alpha(alpha)
    n = _check_pos_int(n, "n")
    reps = _check_pos_int(reps, "reps")
    chunk_elements = _check_pos_int(chunk_elements, "chunk_elements")
    test_level = _check_level(test_level)
    try:
        truth = float(true_value)
    except (TypeError, ValueError):
        raise ValueError(f"true_value must be a real number, got {true_value!r}") from None
    if not np.isfinite(truth):
        raise ValueError(f"true_value must be finite, got {true_value!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    misses = 0
    for r in _chunks(reps, n, chunk_elements):
        x = np.asarray(draw(rng, (n, r)))
        if x.shape != (n, r):
            raise ValueError(f"draw(rng, size=({n}, {r})) returned shape {x.shape}; it must honour size")
        misses += int(_mc_misses(bound_fn, x, side, vectorized, truth).sum())
    p_value = float(stats.binom.sf(misses - 1, reps, alpha))
    return MonteCarloCoverage(misses, reps, misses / reps, alpha, p_value, test_level, p_value > test_level)


# -------------------------------------------------------------------------------------------------- families
@dataclass(frozen=True)
class Binomial:
    """Count family ``k ~ Bin(n, p)``; the bound is called as ``bound(k, n)`` and bounds ``p``.

    ``ps=None``: the critical parameters of the bound plus a 1001-point grid (see
    :func:`exact_binomial_coverage`).
    """

    ps: Optional[Sequence[float]] = None
    name: str = "binomial"


def _margin(q):
    return q[:, 0] - q[:, 1]


def _simplex_grid(steps: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(steps + 1), np.arange(steps + 1), indexing="ij")
    keep = i + j <= steps
    q1, q2 = i[keep] / steps, j[keep] / steps
    return np.stack([q1, q2, np.clip(1 - q1 - q2, 0, 1)], axis=1)


@dataclass(frozen=True)
class Trinomial:
    """Count family ``(x1, x2, x3) ~ Mult(n; q1, q2, q3)``; the bound is called as ``bound(x1, x2, x3)``.

    Parameters
    ----------
    truth : callable ``q (r, 3) -> (r,)``
        The bounded quantity. Default: the margin ``q1 - q2`` (theory §4.1).
    qs : array (r, 3), optional
        Parameters to check. Default: the grid ``q1, q2 in {0, 1/steps, ..., 1}`` with ``q1 + q2 <= 1``.
    steps : int
        Grid resolution of the default ``qs`` (the verdict is exact at each grid point; between them it is a
        search).
    """

    truth: Callable = _margin
    qs: Any = None
    steps: int = 40
    name: str = "trinomial"

    def params(self) -> np.ndarray:
        if self.qs is not None:
            return np.atleast_2d(np.asarray(self.qs, dtype=float))
        return _simplex_grid(_check_pos_int(self.steps, "steps"))


@dataclass(frozen=True)
class SampleFamily:
    """A law of i.i.d. samples indexed by a parameter, for Monte Carlo coverage.

    Parameters
    ----------
    name : str
    draw : callable ``(rng, size, param) -> array of shape size``
    truth : callable ``param -> float``
        The bounded quantity (usually the mean).
    params : sequence
        Parameters to check.
    """

    name: str
    draw: Callable
    truth: Callable
    params: Sequence[Any]


def Bernoulli(ps: Sequence[float] = (0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98, 0.999)) -> SampleFamily:
    """Samples in {0, 1} with ``P(1) = p`` (float64 0/1 values); bounds ``p``."""
    ps = tuple(float(p) for p in ps)
    if not ps or not all(0 <= p <= 1 for p in ps):
        raise ValueError(f"ps must be probabilities in [0, 1], got {ps!r}")
    return SampleFamily("bernoulli", lambda rng, size, p: (rng.random(size) < p).astype(np.float64),
                        lambda p: p, ps)


def Beta(params: Sequence[Tuple[float, float]] = ((0.5, 0.5), (1, 1), (2, 5), (5, 2), (0.2, 2), (2, 0.2),
                                                    (50, 1), (0.5, 0.01), (0.01, 0.5))) -> SampleFamily:
    """Samples in [0, 1] from ``Beta(a, b)``; bounds the mean ``a / (a + b)``.

    The default parameters include near-Bernoulli laws (``(0.5, 0.01)``: mean 0.98, almost all mass within
    1e-10 of 0 or 1), where bounds built on a normal approximation undercover.
    """
    params = tuple((float(a), float(b)) for a, b in params)
    if not params or not all(a > 0 and b > 0 for a, b in params):
        raise ValueError(f"params must be pairs (a, b) with a, b > 0, got {params!r}")
    return SampleFamily("beta", lambda rng, size, ab: rng.beta(ab[0], ab[1], size=size),
                        lambda ab: ab[0] / (ab[0] + ab[1]), params)


_FAMILIES = {"binomial": Binomial, "trinomial": Trinomial, "bernoulli": Bernoulli, "beta": Beta}


def _family(family):
    if isinstance(family, str):
        if family not in _FAMILIES:
            raise ValueError(f"family must be one of {tuple(_FAMILIES)} or a Binomial/Trinomial/SampleFamily, "
                             f"got {family!r}")
        return _FAMILIES[family]()
    if isinstance(family, (Binomial, Trinomial, SampleFamily)):
        return family
    raise ValueError(f"family must be one of {tuple(_FAMILIES)} or a Binomial/Trinomial/SampleFamily, got "
                     f"{type(family).__name__}")


@dataclass(frozen=True)
class CoverageReport:
    """What :func:`assert_coverage` found (returned when the bound passed).

    Attributes
    ----------
    family : str
    method : {"exact", "monte carlo"}
    n : int
    alpha : float
    side : str
    params_checked : int
    worst_param : object
        The parameter with the largest (estimated) miss probability.
    worst_miss : float
        Its exact miss probability, or its Monte Carlo miss rate.
    worst_p_value : float or None
        Monte Carlo only: the smallest binomial-test p-value.
    test_level : float or None
        Monte Carlo only: the per-parameter level (the overall level divided by the number of parameters).
    passed : bool
    details : tuple
        ``(param, miss, p_value)`` per parameter.
    """

    family: str
    method: str
    n: int
    alpha: float
    side: str
    params_checked: int
    worst_param: Any
    worst_miss: float
    worst_p_value: Optional[float]
    test_level: Optional[float]
    passed: bool
    details: tuple = field(repr=False)

    def message(self) -> str:
        what = f"{self.family} family, n = {self.n}, alpha = {self.alpha}, side = {self.side!r}"
        if self.method == "exact":
            verdict = "covers" if self.passed else "UNDERCOVERS"
            return (f"bound {verdict} ({what}): exact miss probability {self.worst_miss:.6g} "
                    f"{'<=' if self.passed else '>'} alpha = {self.alpha} at the worst parameter "
                    f"{_show_param(self.worst_param)} (enumeration of all outcomes, no tolerance; "
                    f"{self.params_checked} parameters checked)")
        verdict = "no evidence of undercoverage" if self.passed else "UNDERCOVERS"
        return (f"bound: {verdict} ({what}): at the worst parameter {_show_param(self.worst_param)} the miss "
                f"rate is {self.worst_miss:.4g} (alpha = {self.alpha}), one-sided binomial test p-value "
                f"{self.worst_p_value:.3g} vs per-parameter level {self.test_level:.3g} (Bonferroni over "
                f"{self.params_checked} parameters)")


def _show_param(p) -> str:
    if isinstance(p, np.ndarray):
        return "q = (" + ", ".join(f"{v:.6g}" for v in p) + ")"
    if isinstance(p, tuple):
        return "params = (" + ", ".join(f"{v:.6g}" for v in p) + ")"
    return f"p = {p!r}"


def assert_coverage(bound: Callable, *, family, n: int, alpha: float, side: str = "lower",
                    vectorized: bool = True, reps: int = 4000, seed=0, test_level: float = 1e-3) -> CoverageReport:
    """Assert that ``bound`` keeps its promise ``P(miss) <= alpha`` on a family of laws.

    Parameters
    ----------
    bound : callable
        ``"binomial"``: ``bound(k, n)``; ``"trinomial"``: ``bound(x1, x2, x3)``; sample families:
        ``bound(x)`` with ``x`` of shape ``(n, r)`` (or ``(n,)`` with ``vectorized=False``). See the call
        conventions of this module; two-sided bounds return ``(low, high)``.
    family : str or family object
        ``"binomial"`` / :class:`Binomial`, ``"trinomial"`` / :class:`Trinomial`: exact verdict (every outcome
        enumerated, miss probability ``<= alpha`` with no tolerance, at every parameter checked).
        ``"bernoulli"`` / :func:`Bernoulli`, ``"beta"`` / :func:`Beta`, or a :class:`SampleFamily`: Monte Carlo
        verdict, ``reps`` repetitions per parameter and a one-sided exact binomial test of
        ``H0: P(miss) <= alpha`` at level ``test_level / len(params)`` per parameter (Bonferroni), so a valid
        bound fails with probability at most ``test_level``.
    n : int
        Sample size (number of trials).
    alpha : float
        The promised miss probability (for two-sided bounds: of both sides together).
    side : {"lower", "upper", "two-sided"}
    vectorized : bool
        See :func:`exact_binomial_coverage` and :func:`monte_carlo_coverage`.
    reps, seed, test_level
        Monte Carlo only.

    Returns
    -------
    CoverageReport
        When the bound passed (its ``message()`` says what was checked).

    Raises
    ------
    AssertionError
        The bound undercovers; the message names the worst parameter, its miss probability (or rate) and
        the test.
    ValueError
        Bad arguments or a malformed bound output (:func:`check_bound_output`).

    Examples
    --------
    >>> from confbounds import clopper_pearson
    >>> rep = assert_coverage(lambda k, n: clopper_pearson(k, n, 0.05), family="binomial", n=30, alpha=0.05,
    ...                       side="lower")
    >>> rep.passed, rep.method
    (True, 'exact')
    >>> wald = lambda k, n: k / n - 1.645 * np.sqrt(k / n * (1 - k / n) / n)
    >>> assert_coverage(wald, family="binomial", n=30, alpha=0.05, side="lower")
    Traceback (most recent call last):
    ...
    AssertionError: bound UNDERCOVERS (binomial family, n = 30, alpha = 0.05, side = 'lower'): exact miss ...
    """
    check_choice(side, "side", _SIDES)
    alpha = check_alpha(alpha)
    n = _check_pos_int(n, "n")
    fam = _family(family)
    if isinstance(fam, Binomial):
        res = exact_binomial_coverage(bound, n, fam.ps, side, alpha=alpha, vectorized=vectorized)
        miss = np.atleast_1d(res.miss).reshape(-1)
        j = int(np.argmax(miss))
        rep = CoverageReport(fam.name, "exact", n, alpha, side, int(res.params.size), float(res.params[j]),
                             float(miss[j]), None, None, bool(res.passed),
                             tuple(zip(res.params.tolist(), miss.tolist(), [None] * miss.size)))
    elif isinstance(fam, Trinomial):
        qs = fam.params()
        bounds = _trinomial_bounds(bound, n, side, vectorized)
        miss = _trinomial_miss(bounds, n, qs, fam.truth, side)
        j = int(np.argmax(miss))
        rep = CoverageReport(fam.name, "exact", n, alpha, side, len(qs), qs[j], float(miss[j]), None, None,
                             bool(np.all(miss <= alpha)),
                             tuple((tuple(q), float(m), None) for q, m in zip(qs, miss)))
    else:
        params = list(fam.params)
        if not params:
            raise ValueError(f"family {fam.name!r} has no parameters to check")
        reps = _check_pos_int(reps, "reps")
        test_level = _check_level(test_level)
        level = test_level / len(params)
        seeds = np.random.SeedSequence(seed).spawn(len(params)) if not isinstance(seed, np.random.Generator) \
            else [seed] * len(params)
        details = []
        for prm, sd in zip(params, seeds):
            r = monte_carlo_coverage(bound, lambda rng, size, prm=prm: fam.draw(rng, size, prm), fam.truth(prm),
                                     n=n, alpha=alpha, reps=reps, side=side, seed=sd, test_level=level,
                                     vectorized=vectorized)
            details.append((prm, r.miss_rate, r.p_value))
        j = int(np.argmin([d[2] for d in details]))
        rep = CoverageReport(fam.name, "monte carlo", n, alpha, side, len(params), details[j][0], details[j][1],
                             details[j][2], level, bool(all(d[2] > level for d in details)), tuple(details))
    if not rep.passed:
        raise AssertionError(rep.message())
    return rep


# ----------------------------------------------------------------------------------- hypothesis strategies
@dataclass(frozen=True)
class BinomialCase:
    """A true ``p``, ``n``, ``alpha`` and one count ``k ~ Bin(n, p)``."""

    p: float
    n: int
    alpha: float
    k: int


@dataclass(frozen=True)
class MultinomialCase:
    """True cell probabilities ``q`` (m,), ``n``, ``alpha`` and counts ``~ Mult(n; q)``."""

    q: np.ndarray
    n: int
    alpha: float
    counts: np.ndarray


@dataclass(frozen=True)
class SampleCase:
    """A family parameter, its true value, ``n``, ``alpha`` and one sample ``x`` (n,) from the law."""

    param: Any
    truth: float
    n: int
    alpha: float
    x: np.ndarray


def _alphas(alphas):
    from hypothesis import strategies as st

    if alphas is not None:
        vals = [check_alpha(a) for a in alphas]
        return st.sampled_from(vals)
    return st.sampled_from([1e-3, 0.01, 0.05, 0.1, 0.2]) | st.floats(1e-4, 0.5)


def binomial_cases(min_n: int = 1, max_n: int = 200, alphas: Optional[Sequence[float]] = None):
    """Hypothesis strategy: :class:`BinomialCase` with ``k`` drawn from ``Bin(n, p)``.

    ``p`` is drawn from [0, 1] with the edges 0, 1 and near-edge values included; ``k`` comes from a NumPy
    generator seeded by hypothesis (so failures shrink and replay). A property test can use the true ``p``:
    e.g. ``exact_binomial_coverage(bound, case.n, case.p, alpha=case.alpha).passed`` for coverage at the
    drawn parameter, or ``bound(case.k, case.n) <= 1`` for a range property.
    """
    from hypothesis import strategies as st

    min_n = _check_pos_int(min_n, "min_n")
    max_n = _check_pos_int(max_n, "max_n", min_n)

    @st.composite
    def _cases(draw):
        n = draw(st.integers(min_n, max_n))
        p = draw(st.sampled_from([0.0, 1.0, 1e-6, 1 - 1e-6, 0.5]) | st.floats(0.0, 1.0))
        a = draw(_alphas(alphas))
        seed = draw(st.integers(0, 2 ** 32 - 1))
        k = int(np.random.default_rng(seed).binomial(n, p))
        return BinomialCase(float(p), n, float(a), k)

    return _cases()


def multinomial_cases(m: int = 3, min_n: int = 1, max_n: int = 200, alphas: Optional[Sequence[float]] = None):
    """Hypothesis strategy: :class:`MultinomialCase`, counts drawn from ``Mult(n; q)``.

    ``q`` is drawn on the simplex (with zero cells allowed) and normalised exactly to sum to 1 in float.
    """
    from hypothesis import strategies as st

    m = _check_pos_int(m, "m", 2)
    min_n = _check_pos_int(min_n, "min_n")
    max_n = _check_pos_int(max_n, "max_n", min_n)

    @st.composite
    def _cases(draw):
        n = draw(st.integers(min_n, max_n))
        w = np.array(draw(st.lists(st.sampled_from([0.0]) | st.floats(1e-6, 1.0), min_size=m, max_size=m)))
        if w.sum() == 0:
            w[draw(st.integers(0, m - 1))] = 1.0
        q = w / w.sum()
        q[-1] = max(0.0, 1.0 - q[:-1].sum())
        a = draw(_alphas(alphas))
        seed = draw(st.integers(0, 2 ** 32 - 1))
        counts = np.random.default_rng(seed).multinomial(n, q / q.sum()).astype(np.int64)
        return MultinomialCase(q, n, float(a), counts)

    return _cases()


def sample_cases(family="bernoulli", min_n: int = 1, max_n: int = 200, alphas: Optional[Sequence[float]] = None):
    """Hypothesis strategy: :class:`SampleCase` from a sample family (a parameter of ``family.params``).

    ``family`` is ``"bernoulli"``, ``"beta"`` or a :class:`SampleFamily`; the sample ``x`` of shape (n,) is
    drawn from the law at the chosen parameter with a NumPy generator seeded by hypothesis.
    """
    from hypothesis import strategies as st

    fam = _family(family)
    if not isinstance(fam, SampleFamily):
        raise ValueError(f"sample_cases needs a sample family (bernoulli, beta or a SampleFamily), got {fam.name!r}")
    min_n = _check_pos_int(min_n, "min_n")
    max_n = _check_pos_int(max_n, "max_n", min_n)
    params = list(fam.params)

    @st.composite
    def _cases(draw):
        n = draw(st.integers(min_n, max_n))
        prm = draw(st.sampled_from(params))
        a = draw(_alphas(alphas))
        seed = draw(st.integers(0, 2 ** 32 - 1))
        x = np.asarray(fam.draw(np.random.default_rng(seed), (n,), prm), dtype=np.float64)
        return SampleCase(prm, float(fam.truth(prm)), n, float(a), x)

    return _cases()


def count_vectors(m: int = 3, max_n: int = 200, min_n: int = 1):
    """Hypothesis strategy for count vectors: ``(counts (m,), n)`` with ``counts.sum() == n``.

    No true parameter: for coverage properties use :func:`multinomial_cases`.
    """
    from hypothesis import strategies as st

    @st.composite
    def _counts(draw):
        n = draw(st.integers(min_n, max_n))
        cuts = sorted(draw(st.lists(st.integers(0, n), min_size=m - 1, max_size=m - 1)))
        edges = [0] + cuts + [n]
        return np.diff(np.asarray(edges, dtype=np.int64)), n

    return _counts()


def score_matrices(n_max: int = 50, m: int = 3, simplex: bool = True, min_n: int = 2):
    """Hypothesis strategy for score matrices of shape (n, m) with entries in [0, 1].

    With ``simplex=True`` every row sums to one (a softmax/sparsemax output). No true parameter: for
    coverage properties use :func:`sample_cases`.
    """
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    @st.composite
    def _scores(draw):
        n = draw(st.integers(min_n, n_max))
        raw = draw(hnp.arrays(np.float64, (n, m), elements=st.floats(0.0, 1.0, allow_nan=False)))
        if simplex:
            raw = raw + 1e-12
            raw = raw / raw.sum(axis=1, keepdims=True)
        return raw

    return _scores()
