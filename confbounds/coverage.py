"""Coverage tools: test any bound, ours or a user's, against its promise.

Three instruments (SPEC section 2.5):

* :func:`exact_binomial_coverage` and :func:`exact_trinomial_coverage` enumerate
  every outcome of ``Bin(n, p)`` or ``Mult(n; q)`` and add up the probability of
  the outcomes whose bound covers the truth.  The bound is evaluated once per
  outcome and reused for every parameter value, so hundreds of parameters cost
  little more than one.
* :func:`monte_carlo_coverage` draws repetitions of a sample-based bound and
  runs a one-sided exact binomial test of ``H0: P(miss) <= alpha`` on the number
  of misses.
* :func:`count_vectors` and :func:`score_matrices` are hypothesis strategies
  (hypothesis is imported only when they are called).

Call conventions
----------------
``side="lower"`` means the bound claims ``bound <= truth``; a miss is
``bound > truth``.  ``side="upper"`` claims ``bound >= truth``.

Examples
--------
Exact coverage of the one-sided Clopper–Pearson lower bound at n = 20:

>>> import numpy as np
>>> from confbounds import clopper_pearson
>>> from confbounds.coverage import exact_binomial_coverage
>>> ps = np.linspace(0, 1, 101)
>>> cov = exact_binomial_coverage(lambda k, n: clopper_pearson(k, n, 0.05), 20, ps)
>>> bool(cov.min() >= 0.95)
True

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

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from scipy import special, stats

from ._validate import check_alpha, check_choice

__all__ = [
    "exact_binomial_coverage",
    "exact_trinomial_coverage",
    "trinomial_outcomes",
    "trinomial_log_pmf_table",
    "monte_carlo_coverage",
    "MonteCarloCoverage",
    "count_vectors",
    "score_matrices",
]


def _covered(bound, truth, side):
    bound = np.asarray(bound, dtype=float)
    if side == "lower":
        return bound <= truth
    return bound >= truth


def exact_binomial_coverage(bound_fn: Callable, n: int, p, side: str = "lower", truth_fn: Optional[Callable] = None):
    """Exact coverage of a count-based bound by enumerating ``k = 0..n``.

    Parameters
    ----------
    bound_fn : callable ``(k, n) -> bound``
        Called once with ``k = np.arange(n + 1)`` (an int array) and must
        return an array of ``n + 1`` bounds.
    n : int
    p : float or array_like
        True success probabilities at which to evaluate coverage.
    side : {"lower", "upper"}
    truth_fn : callable, optional
        Maps ``p`` to the bounded quantity (default: ``p`` itself).

    Returns
    -------
    ndarray of the same shape as ``p``: ``P_p(bound covers truth)``.
    """
    check_choice(side, "side", ("lower", "upper"))
    k = np.arange(n + 1)
    bounds = np.asarray(bound_fn(k, n), dtype=float)
    if bounds.shape != (n + 1,):
        raise ValueError(f"bound_fn must return {n + 1} bounds, got shape {bounds.shape}")
    p_arr = np.atleast_1d(np.asarray(p, dtype=float))
    truth = p_arr if truth_fn is None else np.asarray(truth_fn(p_arr), dtype=float)
    pmf = stats.binom.pmf(k[None, :], n, p_arr[:, None])
    cov = np.sum(pmf * _covered(bounds[None, :], truth[:, None], side), axis=1)
    return cov if np.ndim(p) else float(cov[0])


def trinomial_outcomes(n: int):
    """All outcomes ``(x1, x2, x3)`` of ``Mult(n; q1, q2, q3)`` as three int arrays."""
    x1, x2 = np.divmod(np.arange((n + 1) ** 2), n + 1)
    keep = x1 + x2 <= n
    x1, x2 = x1[keep], x2[keep]
    return x1, x2, n - x1 - x2


def trinomial_log_pmf_table(n: int, q) -> np.ndarray:
    """``P(X = x)`` for every outcome of :func:`trinomial_outcomes` and each row of ``q``.

    ``q`` has shape (3,) or (r, 3); returns shape (outcomes,) or (r, outcomes).
    Uses the multinomial coefficient ``n!/(x1! x2! x3!)`` (SPEC 8.3).
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


def exact_trinomial_coverage(bound_fn: Callable, n: int, q, truth_fn: Callable, side: str = "lower",
                             vectorized: bool = False):
    """Exact coverage of a bound computed from trinomial counts.

    Parameters
    ----------
    bound_fn : callable ``(x1, x2, x3) -> bound``
        Called once per outcome (or once with three arrays if ``vectorized``).
        Outcomes are independent of ``q``, so the bound is computed once and
        reused for every row of ``q``.
    n : int
    q : array_like of shape (3,) or (r, 3)
        True cell probabilities.
    truth_fn : callable
        Maps ``q`` of shape (r, 3) to the true value of the bounded quantity (r,).
    side : {"lower", "upper"}

    Returns
    -------
    float or ndarray (r,) of exact coverages.
    """
    check_choice(side, "side", ("lower", "upper"))
    x1, x2, x3 = trinomial_outcomes(n)
    if vectorized:
        bounds = np.asarray(bound_fn(x1, x2, x3), dtype=float)
    else:
        bounds = np.array([bound_fn(int(a), int(b), int(c)) for a, b, c in zip(x1, x2, x3)], dtype=float)
    q_arr = np.atleast_2d(np.asarray(q, dtype=float))
    truth = np.asarray(truth_fn(q_arr), dtype=float).reshape(-1)
    pmf = trinomial_log_pmf_table(n, q_arr)
    cov = np.sum(pmf * _covered(bounds[None, :], truth[:, None], side), axis=1)
    return cov if np.ndim(q) == 2 else float(cov[0])


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


def monte_carlo_coverage(bound_fn: Callable, draw: Callable, true_value: float, n: int, alpha: float,
                         reps: int = 20_000, side: str = "lower", seed=0, test_level: float = 1e-3,
                         chunk_elements: int = 20_000_000) -> MonteCarloCoverage:
    """Monte Carlo coverage of a sample-based bound with a one-sided binomial test.

    Parameters
    ----------
    bound_fn : callable
        Receives a sample array of shape ``(n, r)`` (``r`` repetitions as
        columns) and returns bounds of shape ``(r,)``, or a path of shape
        ``(n, r)`` (a confidence sequence: a miss is a miss at *any* time).
    draw : callable ``(rng, size) -> array``
        Draws i.i.d. samples of the given shape from the law under test.
    true_value : float
        The true mean (or other bounded quantity).
    n, alpha, reps : int, float, int
    side : {"lower", "upper"}
    seed : int or numpy Generator
    test_level : float
        Level of the one-sided binomial test; the check passes when the
        p-value exceeds it.
    chunk_elements : int
        Repetitions are processed in chunks of at most this many samples.

    Returns
    -------
    MonteCarloCoverage
    """
    check_choice(side, "side", ("lower", "upper"))
    alpha = check_alpha(alpha)
    rng = np.random.default_rng(seed)
    per = max(1, min(reps, chunk_elements // max(n, 1)))
    misses = 0
    done = 0
    while done < reps:
        r = min(per, reps - done)
        x = draw(rng, (n, r))
        b = np.asarray(bound_fn(x), dtype=float)
        if b.ndim == 1 and b.shape != (r,) or b.ndim == 2 and b.shape[1] != r or b.ndim > 2:
            raise ValueError(f"bound_fn returned shape {b.shape} for {r} repetitions")
        miss = ~_covered(b, true_value, side)
        if b.ndim == 2:
            miss = miss.any(axis=0)
        misses += int(miss.sum())
        done += r
    p_value = float(stats.binom.sf(misses - 1, reps, alpha))
    return MonteCarloCoverage(misses, reps, misses / reps, alpha, p_value, test_level, p_value > test_level)


def count_vectors(m: int = 3, max_n: int = 200, min_n: int = 1):
    """Hypothesis strategy for count vectors: ``(counts (m,), n)`` with ``counts.sum() == n``."""
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

    With ``simplex=True`` every row sums to one (a softmax/sparsemax output).
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
