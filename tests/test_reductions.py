"""Tests of radius.reductions: validity (Monte Carlo), Cohen's exactness, alpha accounting, buckets."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from confbounds import clopper_pearson
from radius import certify
from radius.reductions import (
    REDUCTIONS,
    Structure,
    as_samples,
    bucket_family,
    choose_structure,
    exact_structures,
    forecast_draws,
    bonferroni,
    choose_top,
    cohen,
    cpm,
    cpm_buckets,
    exact,
    reduce,
)

ALPHA = 0.2
REJECT = 1e-3
FUNCS = {"cohen": cohen, "bonferroni": bonferroni, "cpm": cpm, "exact": exact}


def rejects(misses, reps, alpha=ALPHA):
    return stats.binomtest(int(misses), int(reps), alpha, alternative="greater").pvalue < REJECT


def true_margin(p, y, margin):
    other = np.max(np.delete(p, y))
    if margin == "linear":
        return p[y] - other
    return stats.norm.ppf(p[y]) - stats.norm.ppf(other)


# ----------------------------------------------------------------- Monte Carlo validity (counts)
CONFIGS = {
    "m3": np.array([0.5, 0.3, 0.2]),
    "m5_close": np.array([0.4, 0.35, 0.1, 0.1, 0.05]),
    "m10": np.array([0.55, 0.12, 0.09, 0.06, 0.05, 0.04, 0.03, 0.03, 0.02, 0.01]),
}


@pytest.mark.slow
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", ["linear", "probit"])
def test_count_reductions_cover_the_true_multiclass_margin(reduction, margin):
    # For the top class y chosen on the selection sample, P(bound > p_y - max_{k != y} p_k) <= alpha.
    reps = 400 if reduction == "exact" else 1200
    f = FUNCS[reduction]
    for name, p in CONFIGS.items():
        rng = np.random.default_rng(abs(hash((name, reduction, margin))) % 2**32)
        sel = rng.multinomial(10, p, size=reps)
        est = rng.multinomial(100, p, size=reps)
        misses = 0
        for s, e in zip(sel, est):
            r = f(s, e, ALPHA, margin=margin)
            misses += r.margin_lower > true_margin(p, r.top, margin)
        assert not rejects(misses, reps), f"{reduction}/{margin} on {name}: {misses} misses of {reps}"


def _score_population(m, rng):
    """A finite population of simplex rows with known weights: the true mean is exact."""
    V = rng.dirichlet(np.full(m, 0.3), size=12)
    V[:6] = 0.15 * V[:6] + 0.85 * np.eye(m)[0]  # class 0 on top
    w = rng.dirichlet(np.ones(12))
    return V, w, w @ V


@pytest.mark.slow
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_score_reductions_cover_the_true_multiclass_margin(reduction):
    reps = 800
    rng = np.random.default_rng(5)
    for m in (2, 4):
        V, w, mu = _score_population(m, rng)
        misses = {"linear": 0, "probit": 0}
        for _ in range(reps):
            sel = V[rng.choice(12, size=10, p=w)]
            est = V[rng.choice(12, size=100, p=w)]
            for margin in misses:
                r = FUNCS[reduction](sel, est, ALPHA, margin=margin, bound="bernstein")
                misses[margin] += r.margin_lower > true_margin(mu, r.top, margin)
        for margin, k in misses.items():
            assert not rejects(k, reps), f"{reduction}/{margin}, m={m}: {k} misses of {reps}"


def test_reduction_coverage_check_has_power():
    # Negative control: the plug-in margin (no confidence) on the same data misses about half the time.
    p = CONFIGS["m3"]
    rng = np.random.default_rng(3)
    est = rng.multinomial(100, p, size=600)
    misses = sum((e[0] - max(e[1:])) / 100 > true_margin(p, 0, "linear") for e in est)
    assert rejects(misses, 600)


# ----------------------------------------------------------------- Cohen et al. exactly
@pytest.mark.parametrize("nA,n", [(990, 1000), (600, 1000), (99, 100), (100, 100), (480, 1000)])
def test_cohen_reduces_to_cohen_et_al(nA, n):
    # Cohen et al.'s CERTIFY: pA_lower = proportion_confint(nA, n, alpha=2*alpha, method="beta")[0] (their code),
    # radius sigma * Phi^-1(pA_lower), abstain if pA_lower < 1/2.
    alpha, sigma = 0.001, 0.25
    sel = np.array([3, 40, 7])
    est = np.array([n - nA - (n - nA) // 2, nA, (n - nA) // 2])
    c = certify(sel, est, sigma=sigma, alpha=alpha, radius="Rmono", reduction="cohen")
    theirs = proportion_confint(nA, n, alpha=2 * alpha, method="beta")[0]
    assert c.p_a_lower == clopper_pearson(nA, n, alpha, side="lower")
    assert c.p_a_lower == pytest.approx(theirs, rel=1e-12)
    if theirs < 0.5:
        assert c.prediction == -1 and c.radius == 0.0
    else:
        assert c.prediction == 1
        assert c.radius == pytest.approx(sigma * stats.norm.ppf(theirs), rel=1e-9)
        # R2 under Cohen's reduction (p_B := 1 - p_A) is the same radius
        c2 = certify(sel, est, sigma=sigma, alpha=alpha, radius="R2", reduction="cohen")
        assert c2.radius == pytest.approx(c.radius, rel=1e-12)


# ----------------------------------------------------------------- exact vs Bonferroni, CPM vs Bonferroni
TYPICAL = [
    (np.array([1, 95, 2, 2]), np.array([8, 975, 9, 8])),
    (np.array([60, 30, 10]), np.array([590, 310, 100])),
    (np.array([0, 0, 70, 20, 5, 5, 0, 0, 0, 0]), np.array([2, 1, 700, 230, 30, 20, 5, 5, 4, 3])),
    (np.array([0, 0, 0, 100, 0, 0, 0, 0, 0, 0]), np.array([0, 0, 0, 10000, 0, 0, 0, 0, 0, 0])),
    (np.array([10, 90]), np.array([100, 900])),
    (np.array([3, 80, 10, 7]), np.array([300, 8000, 1000, 700])),
]


def _singletons(sel, top):
    return tuple((k,) for k in np.argsort(-np.asarray(sel), kind="stable") if k != top)


@pytest.mark.parametrize("case", range(len(TYPICAL)))
@pytest.mark.parametrize("margin", ["linear", "probit"])
def test_exact_structures_reproduce_the_baselines(case, margin):
    # The candidate set contains the three baselines exactly: forcing the structure gives the same number.
    sel, est = TYPICAL[case]
    top = choose_top(sel)[0]
    others = tuple(k for k in range(len(sel)) if k != top)
    c = exact(sel, est, 0.001, margin=margin, structure=Structure("cohen", (others,)))
    ref = cohen(sel, est, 0.001, margin=margin)
    assert c.p_a_lower == ref.p_a_lower and c.n_tests == 1
    # Cohen's margin is written 2 p - 1 / 2 Phi^-1(p) in exact (what Rmono uses), p - (1 - p) in cohen
    assert c.margin_lower == pytest.approx(ref.margin_lower, rel=1e-12, abs=1e-12)
    if len(sel) > 2:
        b = exact(sel, est, 0.001, margin=margin, structure=Structure("pairs", _singletons(sel, top)))
        assert b.margin_lower == bonferroni(sel, est, 0.001, margin=margin).margin_lower and b.n_tests == len(sel)
        k = exact(sel, est, 0.001, margin=margin, structure=Structure("pairs", tuple(cpm_buckets(sel, top))))
        assert k.margin_lower == cpm(sel, est, 0.001, margin=margin).margin_lower


@settings(max_examples=300, deadline=None)
@given(n=st.sampled_from([1, 10, 100, 1000, 10**5]), p=st.floats(0.0, 1.0), seed=st.integers(0, 2**31),
       sigma=st.sampled_from([0.12, 0.25, 0.5, 1.0]), alpha=st.sampled_from([1e-6, 1e-3, 0.05, 0.3]))
def test_exact_with_two_classes_is_cohen_on_every_input(n, p, seed, sigma, alpha):
    # m = 2: only Cohen is offered (the rest is known to be empty), so exact/R2 equals cohen/Rmono exactly.
    rng = np.random.default_rng(seed)
    sel, est = rng.multinomial(100, [p, 1 - p]), rng.multinomial(n, [p, 1 - p])
    e = certify(sel, est, sigma=sigma, alpha=alpha, reduction="exact", radius="R2")
    c = certify(sel, est, sigma=sigma, alpha=alpha, reduction="cohen", radius="Rmono")
    assert e.radius >= c.radius and e.prediction == c.prediction, (sel, est, e.radius, c.radius)
    assert [s.kind for s in exact_structures(sel, choose_top(sel)[0])] == ["cohen"]


@pytest.mark.parametrize("margin", ["linear", "probit"])
def test_trinomial_structure_dominates_the_bonferroni_pair_at_its_level(margin):
    # The dominating statistic (theory 4.7): per bucket at alpha/B, never below the Bonferroni pair at alpha/B.
    from confbounds import margin as mb

    if "bonferroni" not in mb.STATISTICS:
        pytest.skip("confbounds.margin does not offer the dominating statistic yet")
    for sel, est in TYPICAL:
        top = choose_top(sel)[0]
        if len(sel) == 2:
            continue
        for bk in bucket_family(sel, top):
            st = Structure("trinomial", bk, "bonferroni")
            r = exact(sel, est, 0.001, margin=margin, structure=st)
            assert r.n_tests == len(bk) and r.alpha_each == 0.001 / len(bk)
            floor = min(mb.margin_lower_bound(int(est[top]), int(est[list(b)].sum()), int(est.sum()),
                                              0.001 / len(bk), margin=margin, method="bonferroni") for b in bk)
            assert r.margin_lower >= floor, (sel, est, bk, r.margin_lower, floor)


def test_exact_chooses_on_the_selection_sample_only():
    # The same selection gives the same structure whatever the estimation sample; the forecast is deterministic.
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = rng.dirichlet(np.r_[20.0, np.full(5, 0.5)])
        sel = rng.multinomial(100, p)
        e1, e2 = rng.multinomial(1000, p), rng.multinomial(1000, rng.dirichlet(np.ones(6)))
        r1, r2 = exact(sel, e1, 0.001, margin="probit"), exact(sel, e2, 0.001, margin="probit")
        assert (r1.structure, r1.buckets, r1.n_tests) == (r2.structure, r2.buckets, r2.n_tests)
        assert np.array_equal(forecast_draws(sel, choose_top(sel)[0], 1000),
                              forecast_draws(sel, choose_top(sel)[0], 1000))


def test_exact_choice_follows_the_selection():
    # Non-top mass concentrated on one class: not the Bonferroni over all classes; spread over several classes: a
    # structure with a bucket per seen class, better than Cohen (the theory 4.7 observation on digits logs).
    conc = exact(np.array([97, 3, 0, 0, 0, 0]), np.array([9700, 300, 0, 0, 0, 0]), 0.001, margin="probit")
    assert not (conc.structure == "pairs" and len(conc.buckets) == 5), conc
    spread = exact(np.array([91, 3, 3, 3, 0, 0]), np.array([9100, 300, 300, 300, 0, 0]), 0.001, margin="probit")
    assert spread.structure in ("pairs", "trinomial") and len(spread.buckets) >= 3
    assert spread.margin_lower > cohen(np.array([91, 3, 3, 3, 0, 0]), np.array([9100, 300, 300, 300, 0, 0]),
                                       0.001, margin="probit").margin_lower


def test_exact_refuses_a_structure_of_the_wrong_kind():
    sel, est = TYPICAL[0]
    with pytest.raises(ValueError, match="does not apply to count vectors"):
        exact(sel, est, 0.01, structure=Structure("direct", ((0,), (2, 3))))
    with pytest.raises(ValueError, match="structure must be"):
        exact(sel, est, 0.01, structure="cohen")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cohen", "pairs", "trinomial"])
@pytest.mark.parametrize("margin", ["linear", "probit"])
def test_each_forced_count_structure_covers_the_true_margin(kind, margin):
    # Every candidate is valid on its own (the choice then costs nothing, since it sees the selection only).
    reps = 600
    misses = 0
    for name, p in CONFIGS.items():
        rng = np.random.default_rng(abs(hash((name, kind, margin))) % 2**32)
        for _ in range(reps // len(CONFIGS)):
            sel, est = rng.multinomial(10, p), rng.multinomial(100, p)
            top = choose_top(sel)[0]
            cands = [c for c in exact_structures(sel, top) if c.kind == kind]
            st = cands[int(rng.integers(len(cands)))]
            r = exact(sel, est, ALPHA, margin=margin, structure=st)
            misses += r.margin_lower > true_margin(p, top, margin)
    assert not rejects(misses, reps - reps % len(CONFIGS)), misses


@pytest.mark.parametrize("case", range(len(TYPICAL)))
def test_cpm_beats_or_matches_bonferroni_on_typical_counts(case):
    sel, est = TYPICAL[case]
    assert cpm(sel, est, 0.001).margin_lower >= bonferroni(sel, est, 0.001).margin_lower - 1e-12


# ----------------------------------------------------------------- golden values and alpha accounting
def test_bonferroni_golden_values():
    sel, est = np.array([5, 80, 15]), np.array([50, 800, 150])
    r = bonferroni(sel, est, 0.003)
    assert r.alpha_each == pytest.approx(0.001) and r.n_tests == 3
    # statsmodels' one-sided Clopper-Pearson at alpha/m = 0.001 (two-sided call at 0.002)
    assert r.p_a_lower == pytest.approx(proportion_confint(800, 1000, alpha=0.002, method="beta")[0], rel=1e-12)
    assert r.p_b_upper == pytest.approx(proportion_confint(150, 1000, alpha=0.002, method="beta")[1], rel=1e-12)
    assert r.margin_lower == pytest.approx(r.p_a_lower - r.p_b_upper, rel=1e-14)


def test_cpm_golden_values():
    sel = np.array([50, 30, 10, 5, 5])
    est = np.array([500, 300, 100, 50, 50])
    r = cpm(sel, est, 0.003)
    assert r.buckets == ((1,), (2, 3, 4)) and r.n_tests == 3 and r.alpha_each == pytest.approx(0.001)
    assert r.p_a_lower == pytest.approx(float(clopper_pearson(500, 1000, 0.001)), rel=1e-14)
    assert r.p_b_upper == pytest.approx(float(clopper_pearson(300, 1000, 0.001, side="upper")), rel=1e-14)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_alpha_accounting(reduction):
    sel, est = TYPICAL[2]
    r = reduce(reduction, sel, est, 0.01)
    assert r.alpha_each * r.n_tests == pytest.approx(0.01, rel=1e-12)
    ex = {"cohen": 1, "pairs": len(r.buckets) + 1}.get(r.structure, len(r.buckets))
    expected_tests = {"cohen": 1, "bonferroni": 10, "cpm": len(r.buckets) + 1, "exact": ex}
    flat = sorted(k for b in r.buckets for k in b)
    assert flat == sorted(set(range(10)) - {r.top})
    assert r.n_tests == expected_tests[reduction]


def test_buckets_partition_the_other_classes():
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = int(rng.integers(2, 12))
        sel = rng.multinomial(int(rng.integers(1, 200)), rng.dirichlet(np.ones(m) * 0.5))
        top, runner = choose_top(sel)
        b = cpm_buckets(sel, top)
        flat = sorted(k for bucket in b for k in bucket)
        assert flat == sorted(set(range(m)) - {top})
        assert b[0] == (runner,)
        if len(b[-1]) > 1:  # the merged bucket totals at most the runner-up's selection count
            assert sel[list(b[-1])].sum() <= sel[runner]


def test_cpm_buckets_follow_the_aistats_code():
    # Rule of core_cpm.py: split off the largest remaining class while the rest totals more than the runner-up.
    assert cpm_buckets([50, 30, 10, 5, 5], 0) == [(1,), (2, 3, 4)]
    assert cpm_buckets([40, 20, 15, 15, 10], 0) == [(1,), (2,), (3,), (4,)]
    assert cpm_buckets([40, 20, 12, 5, 5], 0) == [(1,), (2,), (3, 4)]
    assert cpm_buckets([5, 90, 5], 1) == [(0,), (2,)]


def test_choices_use_the_selection_sample_only():
    # The estimation sample favours class 2, but the selection chose class 0: the reduction bounds class 0's margin
    # (and so certifies nothing), it never switches to the estimation's argmax.
    sel, est = np.array([8, 1, 1]), np.array([10, 10, 980])
    for name in REDUCTIONS:
        r = reduce(name, sel, est, 0.001)
        assert r.top == 0 and r.margin_lower < 0
        c = certify(sel, est, sigma=0.5, reduction=name, radius="R2")
        assert c.prediction == -1 and c.radius == 0.0
    # same selection, different estimation: the same buckets
    assert cpm(sel, est, 0.01).buckets == cpm(sel, np.array([300, 300, 400]), 0.01).buckets


def test_score_direct_margin_matches_definition():
    # the direct structure on scores = one lower bound on E[X^y - X^b] per bucket at alpha/B (here B = 1)
    from confbounds import empirical_bernstein

    rng = np.random.default_rng(2)
    p = rng.beta(5, 2, size=200)
    est = np.stack([p, 1 - p], axis=1)
    sel = est[:10]
    est = est[10:]
    r = exact(sel, est, 0.05, bound="bernstein", structure=Structure("direct", ((1,),)))
    z = est[:, 0] - est[:, 1]
    from radius.reductions import SIMPLEX_TOL

    assert r.margin_lower == pytest.approx(empirical_bernstein(z, 0.05, side="lower", bounds=(-1 - SIMPLEX_TOL, 1.0)))
    assert math.isnan(r.p_a_lower) and math.isnan(r.p_b_upper)
    # with two classes the choice itself is Cohen's bound
    two = exact(sel, est, 0.05, bound="bernstein")
    assert two.margin_lower == cohen(sel, est, 0.05, bound="bernstein").margin_lower


def test_score_exact_chooses_among_cohen_pairs_and_direct():
    # Scores concentrated on the top class with the rest spread: the forecast picks a structure with several
    # buckets; the result equals the forced structure's bound (the choice adds nothing to the bound itself).
    rng = np.random.default_rng(4)
    def draw(k):
        top = rng.beta(40, 2, size=k)
        rest = rng.dirichlet(np.ones(4), size=k) * (1 - top)[:, None]
        return np.column_stack([top, rest])
    sel, est = draw(50), draw(2000)
    s = as_samples(sel, est)
    st = choose_structure(s, 0.01, "probit")
    assert st.kind in ("cohen", "pairs", "direct")
    r = exact(sel, est, 0.01, margin="probit", bound="hoeffding")
    assert r.structure == st.kind
    assert r.margin_lower == exact(sel, est, 0.01, margin="probit", bound="hoeffding", structure=st).margin_lower


def test_as_samples_kinds():
    s = as_samples([1, 2, 3], [10, 20, 30])
    assert s.kind == "counts" and s.n0 == 6 and s.n == 60 and s.m == 3
    X = np.full((5, 3), 1 / 3)
    s = as_samples(X, X)
    assert s.kind == "scores" and s.n0 == 5 and s.n == 5 and np.allclose(s.selection_totals, 5 / 3)
