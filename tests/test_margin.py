"""Tests of confbounds.margin.margin_lower_bound (exact trinomial margin bounds, theory §4).

Coverage sweeps over all outcomes live in test_margin_coverage.py; here:
known values, structural properties, the theory §8.1 regression and bad input.
"""
import dataclasses
import math

import numpy as np
import pytest
from scipy import special, stats

import confbounds
from confbounds import clopper_pearson
from confbounds.coverage import exact_trinomial_coverage
from confbounds.margin import MarginBound, margin_lower_bound
from confbounds.nuisance import certified_sup


def test_exports_and_types():
    assert confbounds.margin_lower_bound is margin_lower_bound
    assert confbounds.MarginBound is MarginBound
    b = margin_lower_bound(80, 10, 100, 0.05)
    assert isinstance(b, float)
    r = margin_lower_bound(80, 10, 100, 0.05, full=True)
    assert isinstance(r, MarginBound) and r.bound == b
    assert (r.margin, r.method, r.statistic, r.alpha, r.x1, r.x2, r.n) == ("linear", "exact", "bonferroni",
                                                                          0.05, 80, 10, 100)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.bound = 0.0
    # the audit fields: certified sup at the answer is <= alpha, maximiser is a distribution
    assert r.sup <= 0.05 and r.sup_lower <= r.sup
    assert abs(sum(r.maximiser) - 1.0) < 1e-12


def _literal_report_bound(t, n, alpha):
    """The report's eq. (7)/(8) taken literally (theory §8.1): Pi(theta|q) = P(theta_hat <= theta_obs),
    so H0(L) is rejected when sup_{q1 - q2 <= L} P_q(T > t_obs) <= alpha; bisection on [-1, 1]."""
    if certified_sup(t + 1, n, 1.0, tol=1e-5).upper <= alpha:
        return 1.0
    lo, hi = -1.0, 1.0
    while hi - lo > 1e-5:
        mid = 0.5 * (lo + hi)
        if certified_sup(t + 1, n, mid, tol=1e-5).upper <= alpha:
            lo = mid
        else:
            hi = mid
    return lo


def test_spec_8_1_regression_literal_version_undercovers():
    n, alpha = 20, 0.05
    q = np.array([0.95, 0.0, 0.05])
    cache = {}

    def literal(x1, x2, x3):
        t = x1 - x2
        if t not in cache:
            cache[t] = _literal_report_bound(t, n, alpha)
        return cache[t]

    truth = lambda qq: qq[:, 0] - qq[:, 1]
    cov_literal = exact_trinomial_coverage(literal, n, q, truth)
    # theory §8.1: "the exact coverage of the linear-margin bound is 0.64"; X1 = n alone has
    # probability 0.95^20 = 0.358 and the literal version then returns the maximal margin 1.
    assert cache[n] == 1.0
    assert abs(cov_literal - 0.64) < 0.01
    assert cov_literal < 1 - alpha
    cov_lib = exact_trinomial_coverage(lambda a, b, c: margin_lower_bound(a, b, n, alpha), n, q, truth)
    assert cov_lib >= 1 - alpha
    cov_lib = exact_trinomial_coverage(lambda a, b, c: margin_lower_bound(a, b, n, alpha, statistic="difference"),
                                       n, q, truth)
    assert cov_lib >= 1 - alpha


def test_exact_never_exceeds_pi_equal_one_bound():
    # At pi = 1 the tail is binomial, so every rejected L satisfies
    # L <= 2 * CP_lower(ceil((n + t)/2); n, alpha) - 1 (Clopper–Pearson, theory §3); with x3 = 0 it is
    # attained up to the bisection tolerance.
    n, alpha = 30, 0.05
    for x1 in range(n + 1):
        for x2 in range(n - x1 + 1):
            t = x1 - x2
            k = -(-(n + t) // 2)
            cap = 2 * float(clopper_pearson(k, n, alpha)) - 1 if k > 0 else -1.0
            b = margin_lower_bound(x1, x2, n, alpha, statistic="difference")
            assert b <= cap + 1e-12
            if x1 + x2 == n and 0 < x1:
                # tightness ~ CERT_GAP / z standard errors (about 0.01 se); allow 0.03 / sqrt(n)
                assert b >= cap - 0.03 / np.sqrt(n)


def test_bound_depends_on_t_only_and_is_monotone():
    n, alpha = 25, 0.05
    by_t = {}
    for x1 in range(n + 1):
        for x2 in range(n - x1 + 1):
            b = margin_lower_bound(x1, x2, n, alpha, statistic="difference")
            by_t.setdefault(x1 - x2, set()).add(b)
    assert all(len(v) == 1 for v in by_t.values())
    seq = [by_t[t].pop() for t in sorted(by_t)]
    assert all(a <= b for a, b in zip(seq[:-1], seq[1:]))


def test_inversion_is_tight():
    # the sup at the answer is <= alpha (certified); slightly above the answer it exceeds alpha
    for (x1, x2, n) in [(80, 10, 100), (12, 3, 20), (400, 350, 1000)]:
        for margin in ("linear", "probit"):
            r = margin_lower_bound(x1, x2, n, 0.05, margin=margin, statistic="difference", full=True)
            t = x1 - x2
            s_at = certified_sup(t, n, r.bound, margin=margin, tol=1e-6)
            assert s_at.lower <= 0.05
            # documented tightness: within ~UNDECIDED_RTOL / z standard errors; test 0.05 se
            se = (1.0 if margin == "linear" else 3.0) / np.sqrt(n)
            above = certified_sup(t, n, r.bound + 0.05 * se, margin=margin, tol=1e-6)
            assert above.lower > 0.05


def test_probit_x1_equal_n_cap():
    # theory §8.1: no valid bound on Phi^{-1}(q1) - Phi^{-1}(q2) exceeds 2 Phi^{-1}(alpha^(1/n)) when X1 = n
    for n in (20, 100, 1000):
        for alpha in (0.05, 0.001):
            cap = 2 * special.ndtri(alpha ** (1.0 / n))
            b = margin_lower_bound(n, 0, n, alpha, margin="probit")
            assert b <= cap + 1e-12
            assert b >= cap - 5e-3 * (1 + cap)  # attained at q = (q1, 1 - q1, 0) up to the tolerance


def test_probit_closure_case_is_minus_inf():
    # difference statistic: every H0(L) contains q = (0, 0, 1) in its closure, where T = 0 surely
    assert margin_lower_bound(5, 5, 20, 0.05, margin="probit", statistic="difference") == -math.inf
    assert margin_lower_bound(0, 0, 20, 0.05, margin="probit", statistic="difference") == -math.inf
    # the Bonferroni statistic has T(0, 0) = -inf < B(x), so its bound is finite (>= B(x))
    bf = margin_lower_bound(5, 5, 20, 0.05, margin="probit", method="bonferroni")
    assert -math.inf < bf <= margin_lower_bound(5, 5, 20, 0.05, margin="probit")
    assert margin_lower_bound(0, 0, 20, 0.05, margin="probit") == -math.inf
    assert margin_lower_bound(3, 9, 20, 0.05, margin="probit", method="bonferroni") < 0


def test_bonferroni_values():
    n, alpha = 100, 0.05
    lo1 = stats.beta.ppf(alpha / 2, 70, 31)  # Clopper–Pearson from the beta quantile
    hi2 = stats.beta.ppf(1 - alpha / 2, 21, 80)
    assert margin_lower_bound(70, 20, n, alpha, method="bonferroni") == pytest.approx(lo1 - hi2, abs=1e-9)
    assert margin_lower_bound(70, 20, n, alpha, method="bonferroni") <= lo1 - hi2
    pb = margin_lower_bound(70, 20, n, alpha, margin="probit", method="bonferroni")
    assert pb == pytest.approx(special.ndtri(lo1) - special.ndtri(hi2), abs=1e-9)
    assert margin_lower_bound(0, 20, n, alpha, margin="probit", method="bonferroni") == -math.inf


def test_difference_statistic_beats_bonferroni_typically():
    n, alpha = 100, 0.05
    wins = 0
    total = 0
    for x1 in range(40, 101, 5):
        for x2 in range(0, n - x1 + 1, 5):
            total += 1
            wins += margin_lower_bound(x1, x2, n, alpha, statistic="difference") >= margin_lower_bound(
                x1, x2, n, alpha, method="bonferroni")
    assert wins / total >= 0.7


def test_taylor_route_accounting():
    n, alpha = 100, 0.05
    r = margin_lower_bound(80, 10, n, alpha, margin="taylor", full=True)
    assert r.branch == "taylor-exact" and r.alpha_test == pytest.approx(0.025) and r.level == pytest.approx(0.025)
    # the Taylor margin is below the probit margin for q1 >= 1/2, and the level is halved
    # (up to the bisection/undecided tolerance, ~1e-2 standard errors = 2e-3 here)
    assert r.bound <= margin_lower_bound(80, 10, n, 0.025, margin="probit") + 2e-3
    f = margin_lower_bound(40, 30, n, alpha, margin="taylor", full=True)
    assert f.branch == "fallback" and f.alpha_test + f.level == pytest.approx(alpha)
    assert f.bound == margin_lower_bound(40, 30, n, f.level, margin="probit", method="bonferroni")
    s = margin_lower_bound(80, 10, n, alpha, margin="taylor", full=True, alpha_split=0.2)
    assert s.alpha_test == pytest.approx(0.01)
    b = margin_lower_bound(80, 10, n, alpha, margin="taylor", method="bonferroni", full=True)
    assert b.branch == "taylor-bonferroni"


def test_berger_boos_fields():
    r = margin_lower_bound(50, 10, 100, 0.05, berger_boos=0.005, statistic="difference", full=True)
    assert r.gamma == 0.005 and r.sup <= 0.045
    r2 = margin_lower_bound(50, 10, 100, 0.05, berger_boos=True, statistic="difference", full=True)
    assert r2.gamma == pytest.approx(0.005)


@pytest.mark.parametrize("kwargs,match", [
    (dict(x1=8, x2=5, n=10, alpha=0.05), "x1 \\+ x2 must be <= n.*x1=8.*x2=5"),
    (dict(x1=-1, x2=5, n=10, alpha=0.05), "x1 must be non-negative.*-1"),
    (dict(x1=1, x2=-5, n=10, alpha=0.05), "x2 must be non-negative.*-5"),
    (dict(x1=1.5, x2=5, n=10, alpha=0.05), "x1 must be integers.*1.5"),
    (dict(x1=11, x2=0, n=10, alpha=0.05), "x1 must be <= n"),
    (dict(x1=1, x2=1, n=0, alpha=0.05), "n must be >= 1"),
    (dict(x1=1, x2=1, n=10, alpha=0.0), "alpha.*0.0"),
    (dict(x1=1, x2=1, n=10, alpha=1.0), "alpha.*1.0"),
    (dict(x1=1, x2=1, n=10, alpha=-0.1), "alpha.*-0.1"),
    (dict(x1=1, x2=1, n=10, alpha=float("nan")), "alpha.*nan"),
    (dict(x1=1, x2=1, n=10, alpha=0.05, margin="logit"), "margin.*'logit'"),
    (dict(x1=1, x2=1, n=10, alpha=0.05, method="wald"), "method.*'wald'"),
    (dict(x1=1, x2=1, n=10, alpha=0.05, statistic="ratio"), "statistic.*'ratio'"),
    (dict(x1=1, x2=1, n=10, alpha=0.05, berger_boos=0.2), "berger_boos.*0.2"),
    (dict(x1=1, x2=1, n=10, alpha=0.05, berger_boos=0.01, margin="taylor"), "berger_boos.*taylor"),
    (dict(x1=1, x2=1, n=10, alpha=0.05, berger_boos=0.01), "berger_boos.*'bonferroni'"),
    (dict(x1=1, x2=1, n=10, alpha=0.05, berger_boos=0.01, statistic="cohen"), "berger_boos.*'cohen'"),
    (dict(x1=1, x2=1, n=10, alpha=0.05, berger_boos=0.01, method="bonferroni"), "berger_boos.*bonferroni"),
    (dict(x1=1, x2=1, n=10, alpha=0.05, alpha_split=1.0), "alpha_split.*1.0"),
    (dict(x1=1, x2=1, n=10, alpha=0.05, taylor_order=-2), "taylor_order.*-2"),
    (dict(x1=[1, 2], x2=1, n=10, alpha=0.05), "x1 must be a scalar"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        margin_lower_bound(**kwargs)
