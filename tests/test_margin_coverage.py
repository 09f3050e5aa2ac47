"""Exact coverage of margin_lower_bound by enumeration (theory §2.5), every n <= 40.

For each n, the bound is computed once per outcome (it does not depend on q)
and the exact coverage ``sum_x P_q(x) 1[bound(x) <= g(q)]`` is evaluated for
>= 200 parameters q per n: Dirichlet(1, 1, 1) draws plus the edges q2 = 0,
q3 = 0, q1 = 1/2, q1 = 0 and the three vertices.  Requirement: coverage
>= 1 - alpha with no tolerance, alpha in {0.01, 0.05, 0.2}.

Statistics: the difference, plug-in and studentized statistics, Berger–Boos, the Bonferroni method, and
(issue 10) the dominating statistics "bonferroni" (the default; linear, probit and the Taylor route) and
"cohen" (theory §4.7), whose result is max(B(x), certified inversion).

The probit truth ``Phi^{-1}(q1) - Phi^{-1}(q2)`` is -inf when q1 = 0 (also at
q = (0, 0, 1), the strictest convention: only a bound of -inf covers it) and
+inf when q2 = 0 < q1 (every bound covers).
"""
import numpy as np
import pytest

from confbounds.coverage import trinomial_log_pmf_table, trinomial_outcomes
from confbounds.margin import margin_lower_bound
from confbounds.nuisance import probit_margin

ALPHAS = (0.01, 0.05, 0.2)
N_MAX = 40


def q_grid(n: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + n)
    e = np.linspace(0.0, 1.0, 21)
    parts = [
        rng.dirichlet([1.0, 1.0, 1.0], size=150),
        np.stack([e, np.zeros_like(e), 1 - e], axis=1),          # q2 = 0
        np.stack([e, 1 - e, np.zeros_like(e)], axis=1),          # q3 = 0
        np.stack([np.full_like(e, 0.5), e / 2, 0.5 - e / 2], 1),  # q1 = 1/2
        np.stack([np.zeros(6), np.linspace(0, 1, 6), 1 - np.linspace(0, 1, 6)], 1),  # q1 = 0
        np.eye(3),
    ]
    q = np.concatenate(parts)
    q = np.clip(q, 0.0, 1.0)
    q[:, 2] = np.clip(1.0 - q[:, 0] - q[:, 1], 0.0, 1.0)
    return q


def truth(q, margin):
    if margin == "linear":
        return q[:, 0] - q[:, 1]
    return probit_margin(q)  # the Taylor route bounds the probit margin


def sweep(margin, method, statistic, **kw):
    worst = np.inf
    covered_q = 0
    for n in range(1, N_MAX + 1):
        x1, x2, _ = trinomial_outcomes(n)
        q = q_grid(n)
        pmf = trinomial_log_pmf_table(n, q)
        th = truth(q, margin)
        for alpha in ALPHAS:
            b = np.array([margin_lower_bound(int(a), int(c), n, alpha, margin=margin, method=method,
                                             statistic=statistic, **kw) for a, c in zip(x1, x2)])
            assert not np.any(np.isnan(b))
            cov = (pmf * (b[None, :] <= th[:, None])).sum(axis=1)
            bad = cov < 1 - alpha
            assert not bad.any(), (margin, method, statistic, n, alpha, q[bad][:3], cov[bad][:3])
            worst = min(worst, float((cov - (1 - alpha)).min()))
        covered_q += q.shape[0]
    return worst, covered_q


CONFIGS = [
    ("linear", "exact", "difference", {}),
    ("probit", "exact", "difference", {}),
    ("taylor", "exact", "difference", {}),
    ("linear", "bonferroni", "difference", {}),
    ("probit", "bonferroni", "difference", {}),
    ("taylor", "bonferroni", "difference", {}),
    ("linear", "exact", "difference", {"berger_boos": True}),
    ("probit", "exact", "difference", {"berger_boos": True}),
]
# The plug-in and studentized statistics have a distinct value per outcome (no sharing across outcomes), so it
# is swept with a coarser bisection tolerance: the returned L is certified whatever tol is.
PLUGIN = [
    ("linear", "exact", "plugin", {"tol": 1e-3}),
    ("probit", "exact", "plugin", {"tol": 1e-3}),
    ("taylor", "exact", "plugin", {"tol": 1e-3}),
    ("linear", "exact", "studentized", {"tol": 1e-3}),
    ("probit", "exact", "studentized", {"tol": 1e-3}),
]


# Dominating statistics (theory §4.7): T = the Bonferroni pair bound or Cohen's bound at the same alpha; the
# result is max(B(x), certified inversion).  Every outcome has its own t (no sharing), hence tol = 1e-3.
DOMINATING = [
    ("linear", "exact", "bonferroni", {"tol": 1e-3}),
    ("probit", "exact", "bonferroni", {"tol": 1e-3}),
    ("taylor", "exact", "bonferroni", {"tol": 1e-3}),
    ("linear", "exact", "cohen", {}),
    ("probit", "exact", "cohen", {}),
]
ALL = CONFIGS + PLUGIN + DOMINATING


@pytest.mark.slow
@pytest.mark.parametrize("margin,method,statistic,kw", ALL,
                         ids=[f"{m}-{me}-{s}-{'-'.join(k)}" for m, me, s, k in ALL])
def test_exact_coverage_all_n(margin, method, statistic, kw):
    worst, nq = sweep(margin, method, statistic, **kw)
    print(f"\n{margin}/{method}/{statistic}/{kw}: min over n<=40, q, alpha of coverage - (1 - alpha) = "
          f"{worst:.3e} ({nq} q values)")
    assert worst >= 0.0
    assert nq >= 200 * N_MAX
