r"""The report's signomial program for the nuisance sup, solved by successive GP condensation.

This module answers the question "which ``q`` makes the tail of the test
statistic largest under the null ``g(q) <= L``?" the way the report frames it
(theory §4.5): as a signomial program solved by a sequence of geometric programs
(GPs).  It **proposes** maximisers and **cross-checks** the certified curve
search of :mod:`confbounds.nuisance`; it never certifies anything (theory §2.3 and
8.4): condensation finds local optima only, so the value it returns is a
*lower* bound of the true supremum (it can refute ``sup <= alpha``, never
establish it).

The program
-----------
With ``X ~ Mult(n; q1, q2, q3)`` and a statistic ``T`` (theory §4.1),

.. math::

    \max_{q > 0}\; P_q(T \ge t_{obs}) = \sum_{x:\,T(x) \ge t_{obs}}
    \frac{n!}{x_1!\,x_2!\,x_3!}\, q_1^{x_1} q_2^{x_2} q_3^{x_3}
    \quad\text{s.t.}\quad q_1 + q_2 + q_3 = 1,\; g(q) \le L .

The objective is a posynomial (theory §4.3; multinomial coefficient as in theory
§8.3).  Maximising a posynomial, the equality constraint read as
``q1 + q2 + q3 >= 1`` and, for ``L >= 0``, the margin ``q1 <= L + q2`` all put
a posynomial on the "large" side of an inequality, which a GP does not allow.
Each is replaced at the current point ``q^(k)`` by its *condensation*, the
monomial given by the weighted arithmetic-geometric mean inequality (Boyd,
Kim, Vandenberghe & Hassibi 2007, the parts on local monomial approximation
and on signomial programming by condensation):

.. math::

    \sum_i u_i(q) \;\ge\; \prod_i \Big(\frac{u_i(q)}{w_i}\Big)^{w_i},
    \qquad w_i = \frac{u_i(q^{(k)})}{\sum_j u_j(q^{(k)})},

with equality at ``q^(k)``.  For the tail posynomial the monomial is
``P(q^(k)) * prod_j (q_j / q_j^(k))^{a_j}`` with
``a_j = E_{q^(k)}[X_j | T >= t_obs]``: only three exponents, whatever ``n``.
Each condensed GP is written in the ratio variables ``r_j = q_j / q_j^(k)``
(well scaled near 1) and solved by cvxpy with ``gp=True``; the problem is
DPP-compiled once per call and only its parameters change between steps.

Two formulations (argument ``formulation``):

``"simplex"`` — the program exactly as theory §4.5 states it:

* maximise ``prod_j r_j^{a_j}``;
* ``sum_j q_j^(k) r_j <= 1`` (posynomial, kept exactly) and
  ``prod_j r_j^{-w_j} <= 1``, ``w_j = q_j^(k)`` (condensed ``sum >= 1``);
* linear margin, ``L >= 0``: ``q1 <= L + q2`` with ``L + q2`` condensed to
  ``(L + q2^(k)) (q2/q2^(k))^{v}``, ``v = q2^(k)/(L + q2^(k))``;
  ``L < 0``: ``(q1 + |L|)/q2 <= 1`` is a GP constraint as it stands.

The two sum constraints leave a thin lens-shaped feasible set in log space, on
which the interior-point solver (Clarabel) frequently stops with
"optimal_inaccurate" and makes no progress (seen at n = 200 with the optimum
at ``q3 -> 0``: relative gap 1e-2 to the certified sup).

``"homogeneous"`` (default) — an equivalent program without the lens.  Every
term of ``P`` has degree ``x1 + x2 + x3 = n``, so
``max_{simplex} P = max_{q > 0} P(q) / (q1 + q2 + q3)^n``; the denominator is a
posynomial power on the correct side (kept exactly), the scale is fixed by the
monomial equality ``prod_j r_j^{w_j} = 1`` (the condensed ``sum = 1``), and the
margin is imposed on ``q / sum q``: ``(1 - L) q1 <= (1 + L) q2 + L q3`` (right
side condensed) for ``L >= 0``, ``(1 + |L|) q1 + |L| q3 <= (1 - |L|) q2`` for
``L < 0``.  The result is renormalised to the simplex.

For the linear margin every condensation is an AM-GM *lower* bound of a
posynomial on the large side, so each condensed GP is an inner
approximation: its solution is feasible and the exact tail does not decrease
(a minorise-maximise scheme, which behaves like EM: linear convergence).  Two
additions make it usable: (i) *multi-start*: the tail is evaluated on a coarse
scan of 41 points of the curve ``g(q) = L`` (theory §4.3; one vectorised
enumeration) and the iteration is started from the two best local maxima of
the scan (the tail along the curve is often bimodal, with one mode at an end
of the curve); (ii) *acceleration*: after each GP step a step-doubling line
search along the step (geometric and straight, the latter up to the simplex
boundary) on the exact tail.  The exact tail is recomputed by enumeration at
every accepted point, every point is repaired into the null (``_repair``:
excess ``q1`` moved to ``q3``), and the iteration stops when the relative
change of the tail is ``<= tol``, or when a GP step lowers it by at most
``1e-6`` relative (solver accuracy).

Probit margin
-------------
``Phi^{-1}(q1) - Phi^{-1}(q2) <= L`` is not a signomial.  It is handled by a
local monomial approximation (the log-log tangent, Boyd et al. 2007), inside
an adaptive trust region ``1/tau <= r_j <= tau``: every step is repaired into
the null (``q1`` capped at ``Phi(Phi^{-1}(q2) + L)``, excess to ``q3``) and
accepted only if the exact tail does not decrease, else ``tau`` is shrunk.
In the "simplex" formulation the constraint is ``q1 <= h(q2) =
Phi(Phi^{-1}(q2) + L)`` with ``h`` replaced by its tangent monomial
``h(q2^(k)) (q2/q2^(k))^beta``, ``beta = q2 h'(q2)/h(q2)``; ``log h`` is convex
in ``log q2`` for ``L < 0`` (checked on a grid in ``tests/test_signomial.py``),
so there the tangent is an inner approximation.  In the "homogeneous"
formulation the scale-free ratio ``R(q) = q1 / (S h(q2/S))``, ``S = sum q``, is
replaced by its tangent monomial (exponents ``d log R / d log q_j``).  The
Taylor margin is not supported.

Cost and where it stops being practical
---------------------------------------
The tail posynomial has up to ``(n+1)(n+2)/2`` terms (the outcomes with
``T(x) >= t_obs``), i.e. O(n^2).  It cannot be handed to the GP solver term by
term (it sits on the wrong side of the inequality), so a step costs one O(n^2)
NumPy pass (tail and condensation exponents) plus one 3-variable GP (a few ms
of cvxpy/Clarabel time, most of it cvxpy overhead), and the multi-start scan
one O(41 n^2) pass.  Median time of one call, default formulation
(``benchmarks/signomial_speed.py``: 8 random problems near a bound inversion
per n, 6 linear and 2 probit; process CPU time, and wall time on 2 cores
shared with other jobs at load average 12-17, so the wall times are inflated)::

    n      CPU      wall     certified_sup (wall)
    20     0.05 s   0.44 s   1.4 ms
    50     0.06 s   0.46 s   1.0 ms
    100    0.07 s   0.62 s   0.2 ms
    200    0.04 s   0.16 s   1.1 ms
    500    0.16 s   0.50 s   13 ms
    1000   0.53 s   2.6 s    8.7 ms
    2000   2.5 s    7.6 s    34 ms

The certified curve search is 40 to 2700 times faster.  Up to n of a few
hundred the time is the fixed cvxpy overhead of 5-20 GP steps; from n of about
1000 the O(n^2) enumerations take over and a call takes seconds.  Practical
for n up to a few hundred; beyond that use it only for spot checks.
``docs/validation.md`` has the full table.

References
----------
S. Boyd, S.-J. Kim, L. Vandenberghe, A. Hassibi, "A tutorial on geometric
programming", Optimization and Engineering 8 (2007) 67-127 (monomial
approximation; signomial programming by condensation).
theory §4.3, 4.5 and 8.4.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
from scipy import special

from ._validate import check_choice

__all__ = ["SignomialResult", "signomial_sup", "tail_probability_exact"]

MARGINS = ("linear", "probit")
STATISTICS = ("difference", "plugin")
FORMULATIONS = ("homogeneous", "simplex")
# Probit levels searched (as confbounds.nuisance.PROBIT_CAP); beyond it Phi(-L/2) underflows the curve.
_PROBIT_CAP = 40.0

# Trust region of the condensed GP (ratio q_new / q_old per step).  For the
# inner-approximation cases (linear margin, probit with L < 0) it only keeps
# coordinates whose condensation exponent vanishes from jumping by orders of
# magnitude; for the probit margin with L > 0 it is adapted step by step.
_TAU_MAX = 1.0e3
_TAU_PROBIT = 2.0
_TAU_MIN = 1.0 + 1.0e-6
# A rejected step that lowers the exact tail by at most this relative amount is
# attributed to the solver's accuracy and ends the iteration as converged.
_SOLVER_RTOL = 1.0e-6
#: Order M of Phi^{-1}_M used by the plug-in statistic when taylor_order is None
#: (the same default as confbounds.trinomial).
DEFAULT_TAYLOR_ORDER = 100
# Lower floor on every coordinate (positive variables must stay positive).
_Q_FLOOR = 1.0e-200


@dataclass(frozen=True)
class SignomialResult:
    """Result of :func:`signomial_sup`.

    Attributes
    ----------
    value : float
        ``P_q(T >= t_obs)`` at the final ``q``, recomputed by exact enumeration.
        A **lower** bound of the true supremum (local optimisation).
    q : ndarray of shape (3,)
        The candidate maximiser, in the simplex with ``g(q) <= L`` as computed
        in floating point.  Coordinates are >= 1e-200, except that q1 is 0
        exactly when the probit null forces it below that (``g = -inf``).
    iterations : int
        Number of condensed GPs solved.
    converged : bool
        Whether the relative change of the exact tail fell below ``tol``
        before ``max_iter``.
    history : tuple of float
        Exact tail at the start point and after each accepted step
        (non-decreasing).
    """

    value: float
    q: np.ndarray
    iterations: int
    converged: bool
    history: Tuple[float, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------
# statistic and exact tail
# --------------------------------------------------------------------------

def _outcomes(n: int):
    x1, x2 = np.divmod(np.arange((n + 1) ** 2, dtype=np.int64), n + 1)
    keep = x1 + x2 <= n
    x1, x2 = x1[keep], x2[keep]
    return x1, x2, n - x1 - x2


def _statistic(x1, x2, n: int, statistic: str, taylor_order: Optional[int]):
    if statistic == "difference":
        return (x1 - x2).astype(float)
    from .taylor import phi_inv_taylor

    return phi_inv_taylor(x1 / n, taylor_order) - phi_inv_taylor(x2 / n, taylor_order)


class _TailPosynomial:
    """The tail posynomial ``sum_{T(x) >= t} n!/(x1!x2!x3!) q^x`` of one (n, t)."""

    def __init__(self, n: int, t_obs: float, statistic: str, taylor_order: Optional[int]):
        x1, x2, x3 = _outcomes(n)
        keep = _statistic(x1, x2, n, statistic, taylor_order) >= t_obs
        self.x = np.stack([x1[keep], x2[keep], x3[keep]]).astype(float)  # (3, K)
        # log multinomial coefficient n!/(x1! x2! x3!) (theory §8.3)
        self.logc = special.gammaln(n + 1.0) - special.gammaln(self.x + 1.0).sum(axis=0)
        self.n = n
        self.size = self.x.shape[1]

    def log_value_and_exponents(self, q) -> Tuple[float, np.ndarray]:
        """``log P(q)`` and the condensation exponents ``a_j = E_q[X_j | T >= t]``."""
        q = np.asarray(q, dtype=float)
        if np.all(q > 0):
            terms = np.log(q) @ self.x
        else:  # 0 * log(0) = 0 for the coordinates with zero count
            with np.errstate(divide="ignore", invalid="ignore"):
                lq = np.log(q)
                terms = np.where(self.x > 0, self.x * lq[:, None], 0.0).sum(axis=0)
        lw = self.logc + terms
        m = np.max(lw)
        if not np.isfinite(m):
            return -math.inf, np.zeros(3)
        w = np.exp(lw - m)
        s = w.sum()
        logp = float(m + math.log(s))
        a = (self.x @ w) / s
        return logp, a

    def log_values(self, Q) -> np.ndarray:
        """``log P(q)`` for each row of ``Q`` (shape (r, 3), positive entries), in chunks of rows."""
        Q = np.asarray(Q, dtype=float)
        if np.any(Q <= 0):
            return np.array([self.log_value_and_exponents(q)[0] for q in Q])
        lQ = np.log(Q)
        out = np.empty(len(Q))
        step = max(1, 2_000_000 // max(self.size, 1))  # at most ~16 MB per chunk
        for i in range(0, len(Q), step):
            lw = self.logc[None, :] + lQ[i:i + step] @ self.x  # (rows, K)
            out[i:i + step] = special.logsumexp(lw, axis=1)
        return out

    def value(self, q) -> float:
        if self.size == 0:
            return 0.0
        return math.exp(self.log_value_and_exponents(q)[0])


def tail_probability_exact(q, n: int, t_obs: float, statistic: str = "difference",
                           taylor_order: Optional[int] = None) -> float:
    """``P_q(T >= t_obs)`` by direct enumeration of the trinomial outcomes.

    Floating-point sum in log space (relative error of order ``1e-13``); no
    safe-side rounding, so use it for cross-checks and lower bounds only.

    Examples
    --------
    >>> round(tail_probability_exact([0.5, 0.25, 0.25], 2, 1), 10)  # P(X1 - X2 >= 1)
    0.5
    """
    n_i, t, stat, M = _check_common(t_obs, n, statistic, taylor_order)
    q_arr = np.asarray(q, dtype=float)
    if q_arr.shape != (3,) or np.any(~np.isfinite(q_arr)) or np.any(q_arr < 0) or abs(q_arr.sum() - 1) > 1e-9:
        raise ValueError(f"q must be three non-negative probabilities summing to 1, got {q!r}")
    return _TailPosynomial(n_i, t, stat, M).value(q_arr)


# --------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------

def _check_common(t_obs, n, statistic, taylor_order):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) and not (
            isinstance(n, float) and float(n).is_integer()):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    n = int(n)
    try:
        t = float(t_obs)
    except (TypeError, ValueError):
        raise ValueError(f"t_obs must be a finite number, got {t_obs!r}") from None
    if not math.isfinite(t):
        raise ValueError(f"t_obs must be a finite number, got {t_obs!r}")
    check_choice(statistic, "statistic", STATISTICS)
    if statistic == "plugin":
        if taylor_order is None:
            taylor_order = DEFAULT_TAYLOR_ORDER
        if isinstance(taylor_order, bool) or not isinstance(taylor_order, (int, np.integer)) or taylor_order < 0:
            raise ValueError(f"taylor_order must be a non-negative integer, got {taylor_order!r}")
        taylor_order = int(taylor_order)
    return n, t, statistic, taylor_order


def _margin_value(q, margin: str) -> float:
    if margin == "linear":
        return float(q[0] - q[1])
    if q[0] <= 0.0:
        return -math.inf  # q1 = 0: the strictest convention (as confbounds.nuisance.probit_margin)
    return float(special.ndtri(q[0]) - special.ndtri(q[1]))


def _start_point(L: float, margin: str) -> np.ndarray:
    """A feasible interior point on the curve ``g(q) = L`` (theory §4.3)."""
    if margin == "linear":
        pi = 0.5 * (abs(L) + 1.0)
        q = np.array([(pi + L) / 2.0, (pi - L) / 2.0, 1.0 - pi])
    else:
        q2 = 0.5 * float(special.ndtr(-L / 2.0))
        q1 = float(special.ndtr(special.ndtri(q2) + L))
        q = np.array([q1, q2, 1.0 - q1 - q2])
    return _repair(q / q.sum(), L, margin)


def _curve_points(L: float, margin: str) -> np.ndarray:
    """Interior points along the curve ``g(q) = L`` (theory §4.3), shape (r, 3).

    Linear margin: ``pi`` on a grid of ``[|L|, 1]``; probit margin: ``q2`` on a
    linear plus geometric grid of ``(0, Phi(-L/2)]`` (the tail often peaks near
    ``q2 -> 0`` there).  Ends are pulled inside by 1e-3 of the range.
    """
    frac = np.linspace(1e-3, 1.0 - 1e-3, 41)
    if margin == "linear":
        pi = abs(L) + frac * (1.0 - abs(L))
        Q = np.stack([(pi + L) / 2.0, (pi - L) / 2.0, 1.0 - pi], axis=1)
    else:
        frac = np.concatenate([np.logspace(-10, -3, 8)[:-1], frac])
        q2 = frac * float(special.ndtr(-L / 2.0))
        q1 = special.ndtr(special.ndtri(q2) + L)
        Q = np.stack([q1, q2, np.maximum(1.0 - q1 - q2, 1e-12)], axis=1)
    return np.array([_repair(q / q.sum(), L, margin) for q in Q])


def _start_points(post, L: float, margin: str, k: int = 2):
    """Multi-start: the ``k`` best local maxima of the tail on a coarse curve scan.

    The scan costs one vectorised O(r n^2) enumeration and only chooses where
    the condensation starts; the candidate itself comes from the GP iteration.
    """
    Q = _curve_points(L, margin)
    lv = post.log_values(Q)
    left = np.concatenate([[-np.inf], lv[:-1]])
    right = np.concatenate([lv[1:], [-np.inf]])
    peaks = np.flatnonzero((lv >= left) & (lv >= right) & np.isfinite(lv))
    if peaks.size == 0:
        return [Q[len(Q) // 2]]
    order = peaks[np.argsort(-lv[peaks], kind="stable")]
    return [Q[i] for i in order[:k]]


def _repair(q: np.ndarray, L: float, margin: str) -> np.ndarray:
    """Restore the simplex and ``g(q) <= L`` without leaving the null.

    Linear margin: excess ``q1 - q2 - L`` is moved from q1 to q3, then (if q1
    is exhausted) from q3 to q2; both moves lower ``q1 - q2``.  Probit margin:
    q1 is capped at ``Phi(Phi^{-1}(q2) + L)`` and the excess goes to q3.  Every
    coordinate is then floored at :data:`_Q_FLOOR` (the GP needs positive
    variables) and a final few-ulp nudge makes the constraint hold as computed
    in floating point.  Where the floor itself would break the constraint
    (probit with a cap below the floor, e.g. ``L = -30`` and small ``q2``), q1
    is set to exactly 0 instead (``g = -inf``): a boundary point of the null.
    """
    q = np.maximum(np.asarray(q, dtype=float), 0.0)
    q = q / q.sum()
    if margin == "linear":
        excess = q[0] - q[1] - L
        if excess > 0:
            d1 = min(excess, q[0])
            q = np.array([q[0] - d1, q[1], q[2] + d1])
            d2 = min(max(q[0] - q[1] - L, 0.0), q[2])
            q = np.array([q[0], q[1] + d2, q[2] - d2])
    else:
        cap = float(special.ndtr(special.ndtri(q[1]) + L))
        if q[0] > cap:
            q = np.array([cap, q[1], q[2] + (q[0] - cap)])
    q = np.maximum(q, _Q_FLOOR)
    for _ in range(200):
        if _margin_value(q, margin) <= L:
            return q
        d = 4e-16 * max(q[0], q[1], abs(L), _Q_FLOOR)
        if q[0] > 2 * d:
            q = np.array([q[0] - d, q[1], q[2] + d])
        else:
            q = np.array([q[0], q[1] + d, q[2] - d])
    if _margin_value(q, margin) > L:
        q = np.array([0.0, q[1], q[2] + q[0]])  # g = -inf (q1 = 0): in every null
    return q


# --------------------------------------------------------------------------
# the condensed GP
# --------------------------------------------------------------------------

class _CondensedGP:
    """DPP-compiled condensed GP in the ratio variables ``r = q / q^(k)``."""

    def __init__(self, L: float, margin: str):
        import cvxpy as cp  # lazy: confbounds must not import cvxpy at import time

        self.cp = cp
        self.L = L
        self.margin = margin
        r = cp.Variable(3, pos=True)
        self.r = r
        self.a = [cp.Parameter(nonneg=True) for _ in range(3)]   # objective exponents
        self.w = [cp.Parameter(pos=True) for _ in range(3)]      # sum >= 1 condensation
        self.qk = cp.Parameter(3, pos=True)                      # current point
        self.tau = cp.Parameter(pos=True)                        # trust region
        objective = cp.Maximize(r[0] ** self.a[0] * r[1] ** self.a[1] * r[2] ** self.a[2])
        cons = [
            self.qk[0] * r[0] + self.qk[1] * r[1] + self.qk[2] * r[2] <= 1,
            1 / (r[0] ** self.w[0] * r[1] ** self.w[1] * r[2] ** self.w[2]) <= 1,
            r <= self.tau,
            1 / (self.tau * r) <= 1,
        ]
        self.posy_margin = margin == "linear" and L < 0
        # linear margin and probit with L <= 0: every approximation is an AM-GM / convex-tangent inner one
        self.inner = margin == "linear" or L <= 0
        if self.posy_margin:
            # (q1 + |L|) / q2 <= 1:  cA r1 / r2 + cB / r2 <= 1
            self.cA = cp.Parameter(pos=True)
            self.cB = cp.Parameter(pos=True)
            cons.append(self.cA * r[0] / r[1] + self.cB / r[1] <= 1)
        else:
            # q1 <= monomial(q2):  c r1 / r2^v <= 1
            self.c = cp.Parameter(pos=True)
            self.v = cp.Parameter(nonneg=True)
            cons.append(self.c * r[0] / r[1] ** self.v <= 1)
        self.problem = cp.Problem(objective, cons)

    def step(self, qk: np.ndarray, a: np.ndarray, tau: float, solver: Optional[str]) -> Optional[np.ndarray]:
        L = self.L
        self.qk.value = qk
        for j in range(3):
            self.a[j].value = float(max(a[j], 0.0))
            self.w[j].value = float(qk[j] / qk.sum())
        self.tau.value = float(tau)
        if self.posy_margin:
            self.cA.value = float(qk[0] / qk[1])
            self.cB.value = float(-L / qk[1])
        elif self.margin == "linear":
            self.c.value = float(qk[0] / (L + qk[1]))
            self.v.value = float(qk[1] / (L + qk[1]))
        else:
            z = float(special.ndtri(qk[1]))
            h = float(special.ndtr(z + L))
            # beta = q2 h'(q2) / h(q2), h'(q2) = phi(z + L) / phi(z); computed in log space
            log_beta = (math.log(qk[1]) - 0.5 * (z + L) ** 2 + 0.5 * z * z - float(special.log_ndtr(z + L)))
            self.c.value = float(qk[0] / h)
            self.v.value = float(math.exp(log_beta))
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "solution may be inaccurate": we re-check exactly
                self.problem.solve(gp=True, solver=solver)
        except self.cp.error.SolverError:
            return None
        if self.problem.status not in ("optimal", "optimal_inaccurate") or self.r.value is None:
            return None
        return qk * np.asarray(self.r.value, dtype=float)


class _HomogeneousGP:
    """Condensed GP of the equivalent homogeneous program, ratio variables ``r = q / q^(k)``.

    ``P`` is homogeneous of degree ``n`` (every term has ``x1 + x2 + x3 = n``),
    so ``max_{simplex} P(q) = max_{q > 0} P(q) / (q1 + q2 + q3)^n``.  The
    denominator is a posynomial power on the correct side (kept exactly); only
    ``P`` is condensed.  The objective is scale-free, so the scale is fixed by
    the monomial equality ``prod_j r_j^{w_j} = 1`` (``w = q^(k)``), which is the
    condensation of ``q1 + q2 + q3 = 1`` at ``q^(k)``.  The margin is written
    homogeneously, ``g(q / sum q) <= L``:

    * linear, ``L >= 0``: ``(1 - L) q1 <= (1 + L) q2 + L q3``, right side condensed
      (inner approximation);
    * linear, ``L < 0``: ``(1 + |L|) q1 + |L| q3 <= (1 - |L|) q2``, a GP constraint as is;
    * probit: ``R(q) = q1 / (S h(q2 / S)) <= 1`` (``S = sum q``), ``R`` replaced by
      its local monomial approximation (Boyd et al. 2007, section 8:
      exponents ``d log R / d log q_j``), followed by repair and an acceptance test.
    """

    def __init__(self, L: float, margin: str, n: int):
        import cvxpy as cp  # lazy: confbounds must not import cvxpy at import time

        self.cp = cp
        self.L = L
        self.margin = margin
        r = cp.Variable(3, pos=True)
        self.r = r
        self.a = [cp.Parameter(nonneg=True) for _ in range(3)]   # condensation exponents of P
        self.w = [cp.Parameter(pos=True) for _ in range(3)]      # scale: condensed sum
        self.qk = cp.Parameter(3, pos=True)                      # current point
        self.tau = cp.Parameter(pos=True)                        # trust region
        mono = r[0] ** self.a[0] * r[1] ** self.a[1] * r[2] ** self.a[2]
        total = self.qk[0] * r[0] + self.qk[1] * r[1] + self.qk[2] * r[2]
        objective = cp.Maximize(mono / total ** int(n))
        cons = [
            r[0] ** self.w[0] * r[1] ** self.w[1] * r[2] ** self.w[2] == 1,
            r <= self.tau,
            1 / (self.tau * r) <= 1,
        ]
        self.kind = "posy" if (margin == "linear" and L < 0) else ("mono" if margin == "linear" else "probit")
        self.inner = margin == "linear"  # the probit tangent of R is not known to be inner
        if self.kind == "posy":
            self.cA = cp.Parameter(pos=True)
            self.cB = cp.Parameter(pos=True)
            cons.append(self.cA * r[0] / r[1] + self.cB * r[2] / r[1] <= 1)
        elif self.kind == "mono":
            self.c = cp.Parameter(pos=True)
            self.v2 = cp.Parameter(nonneg=True)
            self.v3 = cp.Parameter(nonneg=True)
            cons.append(self.c * r[0] / (r[1] ** self.v2 * r[2] ** self.v3) <= 1)
        else:
            self.c = cp.Parameter(pos=True)
            self.gp_ = [cp.Parameter(nonneg=True) for _ in range(3)]
            self.gn_ = [cp.Parameter(nonneg=True) for _ in range(3)]
            num = r[0] ** self.gp_[0] * r[1] ** self.gp_[1] * r[2] ** self.gp_[2]
            den = r[0] ** self.gn_[0] * r[1] ** self.gn_[1] * r[2] ** self.gn_[2]
            cons.append(self.c * num / den <= 1)
        self.problem = cp.Problem(objective, cons)

    def step(self, qk: np.ndarray, a: np.ndarray, tau: float, solver: Optional[str]) -> Optional[np.ndarray]:
        L = self.L
        qk = qk / qk.sum()
        self.qk.value = qk
        for j in range(3):
            self.a[j].value = float(max(a[j], 0.0))
            self.w[j].value = float(qk[j])
        self.tau.value = float(tau)
        if self.kind == "posy":
            ell = -L
            self.cA.value = float((1 + ell) * qk[0] / ((1 - ell) * qk[1]))
            self.cB.value = float(ell * qk[2] / ((1 - ell) * qk[1]))
        elif self.kind == "mono":
            C = (1 + L) * qk[1] + L * qk[2]
            self.c.value = float((1 - L) * qk[0] / C)
            self.v2.value = float((1 + L) * qk[1] / C)
            self.v3.value = float(L * qk[2] / C)
        else:
            z = float(special.ndtri(qk[1]))
            h = float(special.ndtr(z + L))
            beta = math.exp(math.log(qk[1]) - 0.5 * (z + L) ** 2 + 0.5 * z * z - float(special.log_ndtr(z + L)))
            # d log R / d log q_j at a point with sum q = 1 (they sum to zero: R is scale-free)
            gam = np.array([1.0 - qk[0] + beta * qk[0], -qk[1] - beta * (1.0 - qk[1]), -qk[2] + beta * qk[2]])
            self.c.value = float(qk[0] / h)
            for j in range(3):
                self.gp_[j].value = float(max(gam[j], 0.0))
                self.gn_[j].value = float(max(-gam[j], 0.0))
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "solution may be inaccurate": we re-check exactly
                self.problem.solve(gp=True, solver=solver)
        except self.cp.error.SolverError:
            return None
        if self.problem.status not in ("optimal", "optimal_inaccurate") or self.r.value is None:
            return None
        q = qk * np.asarray(self.r.value, dtype=float)
        return q / q.sum()


# --------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------

def signomial_sup(t_obs, n, L, margin: str = "linear", statistic: str = "difference", q0=None,
                  max_iter: int = 50, tol: float = 1e-8, solver: Optional[str] = None,
                  taylor_order: Optional[int] = None, formulation: str = "homogeneous") -> SignomialResult:
    """Local maximiser of ``P_q(T >= t_obs)`` over ``{q in simplex : g(q) <= L}`` by GP condensation.

    Successive condensation of the report's signomial program (theory §4.5; Boyd
    et al. 2007); see the module docstring for the exact GP
    solved at each step.  The result is a *candidate* maximiser: its exact
    tail is a lower bound of the supremum, never a certificate (theory §8.4).
    For the certified supremum use :func:`confbounds.nuisance.certified_sup`.

    Parameters
    ----------
    t_obs : float
        Observed value of the statistic; the tail includes it (``T >= t_obs``).
    n : int
        Number of trials, ``n >= 1``.
    L : float
        Null boundary of the margin.  Linear margin: ``-1 < L < 1``; probit
        margin: ``-40 <= L <= 40``.
    margin : {"linear", "probit"}
        ``g(q) = q1 - q2`` or ``Phi^{-1}(q1) - Phi^{-1}(q2)`` (theory §4.1).  The
        probit constraint is approximated locally (module docstring).
    statistic : {"difference", "plugin"}
        ``T = X1 - X2`` or ``Phi^{-1}_M(X1/n) - Phi^{-1}_M(X2/n)`` with
        ``M = taylor_order`` (default 100, as in :mod:`confbounds.trinomial`).
    q0 : array_like of shape (3,), optional
        Start point: positive, summing to one, with ``g(q0) <= L``; a single
        run from it.  Default: multi-start from the two best local maxima of
        a 41-point scan of the curve ``g(q) = L`` (module docstring).
    max_iter : int
        Maximum number of condensed GPs, ``>= 1``.
    tol : float
        Stop when the relative change of the exact tail is ``<= tol``.
    solver : str, optional
        cvxpy solver name (default: cvxpy's choice, Clarabel).
    taylor_order : int, optional
        Order ``M`` of the plug-in statistic (default 100).
    formulation : {"homogeneous", "simplex"}
        ``"simplex"``: the program exactly as theory §4.5 states it (``sum q <= 1``
        kept, ``sum q >= 1`` condensed).  ``"homogeneous"`` (default): the
        equivalent scale-free program ``max P(q) / (sum q)^n`` (module
        docstring), which avoids the thin feasible lens between ``sum q <= 1``
        and its condensation on which the interior-point solver often stops
        with "optimal_inaccurate".

    Returns
    -------
    SignomialResult

    Raises
    ------
    ValueError
        Bad ``t_obs``, ``n``, ``L``, ``margin``, ``statistic``, ``q0``,
        ``max_iter`` or ``tol`` (the message names the value).
    ImportError
        If cvxpy is not installed (``pip install confbounds[gp]``).

    Notes
    -----
    Cost per step: one O(n^2) enumeration plus one 3-variable GP; practical
    up to ``n`` of a few hundred: at n = 100 about 0.07 s of CPU (0.6 s wall
    on a loaded machine), at n = 2000 2.5 s of CPU (module docstring).

    Examples
    --------
    >>> res = signomial_sup(t_obs=6, n=20, L=0.1)
    >>> bool(0.0 < res.value <= 1.0) and bool(res.q[0] - res.q[1] <= 0.1 + 1e-12)
    True
    """
    n, t, statistic, taylor_order = _check_common(t_obs, n, statistic, taylor_order)
    check_choice(margin, "margin", MARGINS)
    check_choice(formulation, "formulation", FORMULATIONS)
    try:
        L = float(L)
    except (TypeError, ValueError):
        raise ValueError(f"L must be a finite number, got {L!r}") from None
    if not math.isfinite(L):
        raise ValueError(f"L must be a finite number, got {L!r}")
    if margin == "linear" and not (-1.0 < L < 1.0):
        raise ValueError(f"L must lie in the open interval (-1, 1) for the linear margin, got {L!r}")
    if margin == "probit" and not (-_PROBIT_CAP <= L <= _PROBIT_CAP):
        raise ValueError(f"L must lie in [-{_PROBIT_CAP}, {_PROBIT_CAP}] for the probit margin, got {L!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    try:
        tol_f = float(tol)
    except (TypeError, ValueError):
        raise ValueError(f"tol must be a positive number, got {tol!r}") from None
    if not (tol_f > 0 and math.isfinite(tol_f)):
        raise ValueError(f"tol must be a positive number, got {tol!r}")

    if q0 is None:
        q = _start_point(L, margin)
    else:
        q = np.asarray(q0, dtype=float)
        if q.shape != (3,) or np.any(~np.isfinite(q)) or np.any(q <= 0) or abs(q.sum() - 1.0) > 1e-9:
            raise ValueError(f"q0 must be three positive probabilities summing to 1, got {q0!r}")
        if _margin_value(q, margin) > L + 1e-12:
            raise ValueError(f"q0 = {q0!r} violates the null g(q0) <= L = {L!r} ({margin} margin)")
        q = _repair(q, L, margin)

    post = _TailPosynomial(n, t, statistic, taylor_order)
    if post.size == 0:  # empty tail: P = 0 everywhere
        return SignomialResult(0.0, q, 0, True, (0.0,))
    if post.size == (n + 1) * (n + 2) // 2:  # every outcome in the tail: P = 1 everywhere
        return SignomialResult(1.0, q, 0, True, (1.0,))

    gp = _HomogeneousGP(L, margin, n) if formulation == "homogeneous" else _CondensedGP(L, margin)
    if q0 is None:
        starts = _start_points(post, L, margin)
    else:
        starts = [q]
    best = None
    for q_start in starts:
        res = _run(gp, post, q_start, L, margin, max_iter, tol_f, solver)
        if best is None or res.value > best.value:
            best = res
    return best


def _extrapolate(post, q, q_new, logp, L, margin):
    """Step-doubling line searches along the GP step (MM acceleration).

    Two directions are tried, each for ``s = 2, 4, 8, ...`` while the exact tail
    keeps increasing: geometric, ``q * (q_new / q)**s``, and straight,
    ``q + s (q_new - q)`` up to (and including) the step at which a coordinate
    reaches the floor, which lands boundary maximisers (``q3 -> 0``) in one
    step.  Every trial point is renormalised and repaired, so it is feasible.
    Returns ``(q, log tail, exponents)`` of the best point, or None if no
    trial improves on ``logp``.
    """
    best = None
    q = np.maximum(q, _Q_FLOOR)  # a repaired point may have q1 = 0 (see _repair)
    q_new = np.maximum(q_new, _Q_FLOOR)
    lr = np.log(q_new) - np.log(q)
    s = 2.0
    while s <= 2.0 ** 30:  # geometric
        with np.errstate(over="ignore", under="ignore"):
            z = np.log(q) + s * lr
            qs = np.exp(z - np.max(z))
        qs = _repair(qs / qs.sum(), L, margin)
        lp, a = post.log_value_and_exponents(qs)
        if not lp > logp:
            break
        best, logp = (qs, lp, a), lp
        s *= 2.0
    d = q_new - q
    neg = d < 0
    s_max = float(np.min((q[neg] - _Q_FLOOR) / -d[neg])) if np.any(neg) else 2.0 ** 30
    s = 2.0
    while True:  # straight, ending on the boundary
        s_try = min(s, s_max)
        if s_try <= 1.0:
            break
        qs = _repair(np.maximum(q + s_try * d, _Q_FLOOR), L, margin)
        lp, a = post.log_value_and_exponents(qs)
        if not lp > logp:
            break
        best, logp = (qs, lp, a), lp
        if s_try >= s_max or s >= 2.0 ** 30:
            break
        s *= 2.0
    return best


def _run(gp, post, q, L, margin, max_iter, tol_f, solver) -> SignomialResult:
    """MM / trust-region iteration from one start point (see the module docstring)."""
    logp, a = post.log_value_and_exponents(q)
    history = [math.exp(logp)]
    inner = gp.inner
    tau = _TAU_MAX if inner else _TAU_PROBIT
    converged = False
    it = 0
    while it < max_iter:
        it += 1
        q_gp = gp.step(np.maximum(q, _Q_FLOOR), a, tau, solver)
        if q_gp is None:
            if inner or tau <= _TAU_MIN:
                break
            tau = math.sqrt(tau)
            continue
        q_new = _repair(q_gp, L, margin)
        logp_new, a_new = post.log_value_and_exponents(q_new)
        if logp_new < logp:
            # inner steps are ascent up to solver accuracy; an outer (probit)
            # step that lost value is rejected and the trust region shrunk.
            if logp - logp_new <= _SOLVER_RTOL:
                converged = True
                break
            if inner or tau <= _TAU_MIN:
                break
            tau = math.sqrt(tau)
            continue
        ext = _extrapolate(post, q, q_new, logp_new, L, margin)
        if ext is not None:
            q_new, logp_new, a_new = ext
        change = logp_new - logp  # relative change of P (log scale)
        q, logp, a = q_new, logp_new, a_new
        history.append(math.exp(logp))
        if not inner:
            tau = min(tau * tau, _TAU_MAX)
        if change <= tol_f:
            converged = True
            break
    # a probability: a summation rounding above 1 is lowered to 1 (the safe side for a lower bound)
    return SignomialResult(min(float(math.exp(logp)), 1.0), q, it, converged,
                           tuple(min(h, 1.0) for h in history))
