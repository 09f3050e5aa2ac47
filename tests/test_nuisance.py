"""Tests of confbounds.nuisance.certified_sup against brute force over the whole simplex.

Reference: a dense grid over the *whole* simplex (not only the curve g = L),
tails by exact enumeration (confbounds.coverage.trinomial_log_pmf_table).
The certified upper bound must dominate the grid maximum over {g(q) <= L};
the reported maximiser must be (up to rounding) in the null set and its
brute-force tail must be >= the reported lower bound.
"""
import numpy as np
import pytest

from confbounds import trinomial as tr
from confbounds.coverage import trinomial_log_pmf_table, trinomial_outcomes
from confbounds.nuisance import SupResult, certified_sup, probit_margin, taylor_tables
from confbounds.taylor import phi_inv_taylor


def _simplex_grid(k):
    i, j = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing="ij")
    keep = i + j <= k
    q1 = i[keep] / k
    q2 = j[keep] / k
    return np.stack([q1, q2, np.clip(1 - q1 - q2, 0, 1)], axis=1)


GRID = _simplex_grid(160)


def _margin(q, margin):
    if margin == "linear":
        return q[:, 0] - q[:, 1]
    if margin == "probit":
        return probit_margin(q)
    M = 100
    return phi_inv_taylor(q[:, 0], M) - phi_inv_taylor(q[:, 1], M)


def _tails(q, n, t, statistic):
    x1, x2, _ = trinomial_outcomes(n)
    if statistic == "difference":
        T = x1 - x2
    elif statistic == "studentized":
        T = (x1 - x2) / np.sqrt(x1 + x2 + 1.0)
    else:
        h = tr.plugin_table(n)
        T = h[x1] - h[x2]
    sel = T >= t - tr.PLUGIN_TIE_RTOL * (1 + abs(t))
    pmf = trinomial_log_pmf_table(n, q)
    return (pmf[:, sel]).sum(axis=1)


CASES = []
_rng = np.random.default_rng(11)
for _margin_name in ("linear", "probit", "taylor"):
    for _stat in ("difference", "plugin", "studentized"):
        for _ in range(3):
            _n = int(_rng.integers(3, 30))
            _x1 = int(_rng.integers(0, _n + 1))
            _x2 = int(_rng.integers(0, _n - _x1 + 1))
            if _margin_name == "linear":
                _L = float(_rng.uniform(-0.8, 0.8))
            else:
                _L = float(_rng.uniform(-2.5, 2.5))
            CASES.append((_margin_name, _stat, _n, _x1, _x2, _L))


@pytest.mark.parametrize("margin,statistic,n,x1,x2,L", CASES)
def test_certified_sup_dominates_dense_grid(margin, statistic, n, x1, x2, L):
    t = tr.observed_statistic(x1, x2, n, statistic)
    r = certified_sup(t, n, L, margin=margin, statistic=statistic, tol=1e-6)
    assert isinstance(r, SupResult)
    g = _margin(GRID, margin)
    inside = g <= L
    grid_sup = float(_tails(GRID[inside], n, t, statistic).max()) if inside.any() else 0.0
    # grid tails are exact up to ~1e-15 summation error
    assert r.upper >= grid_sup - 1e-14, (r, grid_sup)
    assert r.lower <= r.upper
    # resolution: relative tol plus the sup's absolute resolution (nuisance._atol, 256 ulps per n + 100)
    assert r.converged and r.upper - r.lower <= 1e-6 * r.lower + 256 * (n + 100) * 2.3e-16
    if r.lower > 0:
        q = np.asarray(r.maximiser)
        gq = _margin(q[None, :], margin)[0]
        assert gq <= L + 1e-9
        assert float(_tails(q[None, :], n, t, statistic)[0]) >= r.lower - 1e-13


@pytest.mark.parametrize("margin", ["linear", "probit"])
def test_berger_boos_restriction_dominates_grid(margin):
    rng = np.random.default_rng(5)
    for _ in range(6):
        n = int(rng.integers(5, 25))
        x1 = int(rng.integers(0, n + 1))
        x2 = int(rng.integers(0, n - x1 + 1))
        L = float(rng.uniform(-0.5, 0.9)) if margin == "linear" else float(rng.uniform(-1.5, 2.5))
        pmax = float(rng.uniform(0.2, 1.0))
        t = x1 - x2
        r = certified_sup(t, n, L, margin=margin, pi_max=pmax, tol=1e-6)
        inside = (_margin(GRID, margin) <= L) & (GRID[:, 0] + GRID[:, 1] <= pmax)
        grid_sup = float(_tails(GRID[inside], n, t, "difference").max()) if inside.any() else 0.0
        assert r.upper >= grid_sup - 1e-14
        # the restriction can only lower the supremum
        assert r.lower <= certified_sup(t, n, L, margin=margin, tol=1e-6).upper


def test_sup_is_nondecreasing_in_L():
    n, t = 30, 12
    Ls = np.linspace(-0.9, 0.9, 13)
    res = [certified_sup(t, n, L, tol=1e-8) for L in Ls]
    for a, b in zip(res[:-1], res[1:]):
        assert b.upper >= a.lower


def test_sup_on_binomial_edge_known_value():
    # With t = n only x = (n, 0, 0) is in the tail: P = q1^n, maximal on the curve at
    # pi = 1: q1 = (1 + L)/2 (linear), so sup = ((1 + L)/2)^n exactly.
    n, L = 12, 0.3
    r = certified_sup(n, n, L, tol=1e-9)
    ref = ((1 + L) / 2) ** n
    assert r.lower <= ref * (1 + 1e-9) and r.upper >= ref * (1 - 1e-12)
    assert abs(r.upper - ref) <= 1e-6 * ref


def test_taylor_tables_H():
    # theory §6: Phi^{-1}_M(1) is about 3.02 for M = 100
    H = taylor_tables(100)[2]
    assert 3.0 < H < 3.05


def test_bad_input():
    with pytest.raises(ValueError, match="margin"):
        certified_sup(3, 10, 0.1, margin="logit")
    with pytest.raises(ValueError, match="statistic"):
        certified_sup(3, 10, 0.1, statistic="ratio")
    with pytest.raises(ValueError, match="L"):
        certified_sup(3, 10, float("nan"))
    with pytest.raises(ValueError, match="pi_max"):
        certified_sup(3, 10, 0.1, pi_max=1.5)
    with pytest.raises(ValueError, match="tol"):
        certified_sup(3, 10, 0.1, tol=0)
    with pytest.raises(ValueError, match="L must lie"):
        certified_sup(3, 10, 55.0, margin="probit")


@pytest.mark.parametrize("n,x1,x2", [(10_000, 6000, 3000), (10_000, 5000, 1000), (100_000, 60_000, 30_000),
                                     (100_000, 90_000, 5000)])
def test_large_n_certified_sup_dominates_dense_curve(n, x1, x2):
    """Decide-mode branch-and-bound with multi-way splits (nuisance._nsplit) at n = 1e4-1e5:
    at the returned bound L the certified supremum (<= alpha) must dominate the certified
    lower tail value at 1501 points of the curve q1 - q2 = L, pi in [|L|, 1] (both ends and a
    dense patch near pi = 1, where the supremum sits), and the box bound of
    certified_sup(mode "sup") must agree."""
    from confbounds.margin import margin_lower_bound

    alpha = 1e-3
    r = margin_lower_bound(x1, x2, n, alpha, statistic="difference", full=True)
    assert r.branch == "exact" and r.sup <= alpha
    L = r.bound
    pis = np.unique(np.concatenate([np.linspace(abs(L), 1.0, 1001), 1.0 - np.geomspace(1e-9, 1e-2, 500)]))
    t = x1 - x2
    vals = [tr.tail_prob_bounds(((p + L) / 2 * (1 - 1e-15), (p - L) / 2 * (1 + 1e-15)), n, t)[0] for p in pis]
    assert max(vals) <= r.sup
    s = certified_sup(t, n, L, tol=1e-3)
    assert s.upper >= max(vals) and s.lower <= r.sup * (1 + 1e-9)


def test_nsplit_rule():
    """_nsplit: plain bisection without a usable point value; otherwise between 2 and _KMAX,
    growing as the point value approaches the threshold (the heuristic of its docstring)."""
    from confbounds.nuisance import _KMAX, _nsplit

    assert _nsplit(2.0, 0.0, 1.0) == 2
    assert _nsplit(2.0, 1.5, 1.0) == 2  # point above threshold: refuted elsewhere
    # ceil(1.25 log(ub/pv) / log(thr/pv)): 1.58 -> 2, 23.92 -> 24, 229 -> capped at _KMAX
    assert _nsplit(1.2, 0.5, 1.0) == 2
    assert _nsplit(1.2, 0.99, 1.0) == 24
    assert _nsplit(1.2, 0.999, 1.0) == _KMAX == 32
    assert _nsplit(1.0 + 1e-3, 0.9, 1.0) == 2


@pytest.mark.parametrize("margin,statistic,n,x1,x2,L", CASES)
def test_sweep_decides_against_dense_grid(margin, statistic, n, x1, x2, L):
    """nuisance._sweep (the greedy certification of invert_fast) against the brute-force supremum of
    the whole null set {g(q) <= L} (dense simplex grid, exact enumeration) and the independent
    best-first bound certified_sup: below a known lower bound of the true supremum (the grid
    maximum, or certified_sup's point value) it must never certify; when it certifies, its bound
    lies in [that lower bound, thr]; 20 % above certified_sup's upper bound it certifies."""
    from confbounds.nuisance import MARGIN_KIND, _sweep

    t = tr.observed_statistic(x1, x2, n, statistic)
    kvec = tr.threshold_table(n, t, statistic)
    acoef, ccoef, H = taylor_tables(100)
    inside = _margin(GRID, margin) <= L
    grid_sup = float(_tails(GRID[inside], n, t, statistic).max()) if inside.any() else 0.0
    ref = certified_sup(t, n, L, margin=margin, statistic=statistic, tol=1e-6)
    known = max(grid_sup, ref.lower)  # both are lower bounds of the true supremum
    kind = MARGIN_KIND[margin]
    easy = ref.upper * 1.2 + 1e-12
    for thr in (easy, ref.upper * 1.02 + 1e-12, known * 0.98, known * 0.5):
        if not thr > 0:
            continue
        st, ub, lb, bu, q1, q2, nodes = _sweep(kind, L, n, kvec, acoef, ccoef, H, thr, 5e-3, 20_000,
                                               np.nan, tr.LOG_PRUNE_MASS)
        assert st in (-1, 0, 1) and nodes >= 1
        if thr < known:
            assert st != 1, (thr, known, ub)
        if st == 1:
            assert known - 1e-14 <= ub <= thr and lb <= ub
        if thr == easy:
            assert st == 1, (thr, ref)
        if st == 0:
            assert lb > thr and float(_tails(np.array([[q1, q2, max(0.0, 1 - q1 - q2)]]), n, t,
                                                 statistic)[0]) >= lb - 1e-13


def test_sweep_one_point_curve():
    """A curve reduced to one point (linear margin, L = 1: q = (1, 0, 0)) still gets its box bound:
    P(X1 - X2 >= n) = 1 there, so nothing below 1 is certified and 1 is."""
    from confbounds.nuisance import _sweep

    n = 7
    kvec = tr.threshold_table(n, n)
    acoef, ccoef, H = taylor_tables(100)
    assert _sweep(0, 1.0, n, kvec, acoef, ccoef, H, 0.5, 5e-3, 100, np.nan, tr.LOG_PRUNE_MASS)[0] == 0
    st, ub = _sweep(0, 1.0, n, kvec, acoef, ccoef, H, 1.0, 5e-3, 100, np.nan, tr.LOG_PRUNE_MASS)[:2]
    assert st == 1 and ub == 1.0
