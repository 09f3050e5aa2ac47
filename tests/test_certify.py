"""Tests of radius.certify: the API, every (radius, reduction) combination, abstention, bad input."""
import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

import radius
from radius.certificate import RADII, SUPPORTED, Certificate, certify
from radius.reductions import REDUCTIONS

SEL = np.array([2, 95, 3])
EST = np.array([10, 980, 10])


def _scores(n, seed, top=1, m=3):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, m))
    logits[:, top] += 3.0
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


S_SEL, S_EST = _scores(20, 0), _scores(300, 1)


def _kw(r):
    return {"lipschitz": 2.0} if r.endswith("_lip") else {}


ALL = [(r, red) for r in RADII for red in SUPPORTED[r]]


def test_lazy_export_is_the_function():
    # radius/__init__ exports certify lazily from radius.certificate; the name must stay the function
    # even after the module has been imported.
    import radius.certificate  # noqa: F401
    from radius import certify as c1

    assert c1 is certify and radius.certify is certify
    assert radius.certify(SEL, EST, sigma=0.5, reduction="cohen").prediction == 1
    assert radius.Certificate is Certificate


@pytest.mark.parametrize("r,red", [c for c in ALL if not c[0].endswith("_lip")])
def test_every_count_combination(r, red):
    c = certify(SEL, EST, sigma=0.5, alpha=0.001, radius=r, reduction=red)
    assert c.prediction == 1 and c.radius > 0.0
    assert (c.radius_kind, c.reduction, c.n0, c.n, c.m, c.kind) == (r, red, 100, 1000, 3, "counts")
    assert c.alpha_each * c.n_tests == pytest.approx(0.001)
    if red == "exact" and c.bound.startswith("trinomial"):
        assert math.isnan(c.p_a_lower) and math.isnan(c.p_b_upper)
    else:  # exact that chose Cohen or shared-p_A pairs reports both bounds
        assert 0 < c.p_b_upper < c.p_a_lower < 1


@pytest.mark.parametrize("r,red", ALL)
def test_every_score_combination(r, red):
    c = certify(S_SEL, S_EST, sigma=0.5, alpha=0.01, radius=r, reduction=red, bound="bernstein", **_kw(r))
    assert c.kind == "scores" and c.n0 == 20 and c.n == 300 and c.m == 3
    assert c.prediction == 1 and c.radius > 0.0


def test_radius_values_follow_the_formulas():
    sigma = 0.5
    c = certify(SEL, EST, sigma=sigma, radius="R2", reduction="bonferroni")
    assert c.radius == pytest.approx(sigma / 2 * (stats.norm.ppf(c.p_a_lower) - stats.norm.ppf(c.p_b_upper)), rel=1e-9)
    c = certify(SEL, EST, sigma=sigma, radius="R1", reduction="cpm")
    assert c.radius == pytest.approx(sigma * math.sqrt(math.pi / 2) * (c.p_a_lower - c.p_b_upper), rel=1e-9)
    c = certify(SEL, EST, sigma=sigma, radius="R2", reduction="exact")
    assert c.margin == "probit" and c.radius == pytest.approx(sigma / 2 * c.margin_lower, rel=1e-9)
    c = certify(SEL, EST, sigma=sigma, radius="R1", reduction="exact")
    assert c.margin == "linear" and c.radius == pytest.approx(sigma * math.sqrt(math.pi / 2) * c.margin_lower, rel=1e-9)
    # R1 with a Lipschitz base: L_pair = L erf(r / (2 sqrt2 L sigma))
    c = certify(S_SEL, S_EST, sigma=sigma, radius="R1_lip", reduction="bonferroni", bound="bernstein", lipschitz=1.0)
    Lp = 1.0 * math.erf(2 / (2 * math.sqrt(2) * 1.0 * sigma))
    assert c.radius == pytest.approx((c.p_a_lower - c.p_b_upper) / Lp, rel=1e-9)


def test_certificate_is_frozen_and_row_is_plain():
    c = certify(SEL, EST, sigma=0.25, radius="R2", reduction="cpm")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.radius = 3.0
    row = c.to_row()
    for key in ("prediction", "radius", "p_a_lower", "p_b_upper", "margin_lower", "radius_kind", "reduction",
                "bound", "alpha", "sigma", "n0", "n", "runner_up"):
        assert key in row
    for v in row.values():
        assert v is None or type(v) in (int, float, str, bool), (v, type(v))
    assert row["buckets"] == "|".join(",".join(map(str, b)) for b in c.buckets)


def test_index_and_label_are_optional_and_written_to_the_row():
    c = certify(SEL, EST, sigma=0.25)
    assert c.index is None and c.label is None and c.to_row()["index"] is None
    c = certify(SEL, EST, sigma=0.25, index=np.int64(7), label=1)
    row = c.to_row()
    assert (c.index, c.label) == (7, 1) and (row["index"], row["label"]) == (7, 1) and type(row["index"]) is int
    # they are bookkeeping only: the bound does not change
    assert c.radius == certify(SEL, EST, sigma=0.25).radius
    for kw, match in (({"index": -1}, "index must be an integer >= 0"), ({"index": 1.5}, "index must be an integer"),
                      ({"label": 3}, r"label must be an integer in \[0, 3\)"), ({"label": True}, "label must be")):
        with pytest.raises(ValueError, match=match):
            certify(SEL, EST, sigma=0.25, **kw)


def test_exact_r2_equals_cohen_rmono_with_two_classes():
    for sel, est in ((np.array([3, 97]), np.array([20, 980])), (np.array([0, 100]), np.array([0, 100000])),
                     (np.array([40, 60]), np.array([450, 550]))):
        e = certify(sel, est, sigma=0.5, reduction="exact", radius="R2")
        c = certify(sel, est, sigma=0.5, reduction="cohen", radius="Rmono")
        assert e.radius == c.radius and e.prediction == c.prediction and e.n_tests == 1


def test_abstain_gives_minus_one_and_zero_radius():
    for r, red in [c for c in ALL if not c[0].endswith("_lip")]:
        c = certify(np.array([50, 50]), np.array([500, 500]), sigma=0.5, radius=r, reduction=red)
        assert c.prediction == -1 and c.radius == 0.0 and c.abstain
        assert c.margin_lower <= 0


def test_selection_and_estimation_roles():
    # Top chosen on selection: a selection favouring class 0 with an estimation favouring class 1 abstains.
    c = certify(np.array([90, 10, 0]), EST, sigma=0.5, reduction="exact")
    assert c.top == 0 and c.prediction == -1
    # Swapping the two samples changes the result: they are not interchangeable.
    a = certify(SEL, EST, sigma=0.5, reduction="cohen", radius="Rmono")
    b = certify(EST, SEL, sigma=0.5, reduction="cohen", radius="Rmono")
    assert (a.n0, a.n) == (100, 1000) and (b.n0, b.n) == (1000, 100) and a.radius != b.radius


def test_callable_bound_is_used():
    calls = []

    def my_bound(x, alpha, side="lower", bounds=(0.0, 1.0)):
        from confbounds import hoeffding

        calls.append((side, alpha))
        return hoeffding(x, alpha, side=side, bounds=bounds)

    c = certify(S_SEL, S_EST, sigma=0.5, radius="R2", reduction="bonferroni", bound=my_bound)
    assert len(calls) == 3 and all(a == pytest.approx(0.001 / 3) for _, a in calls)
    assert c.bound == "my_bound"


def test_rmono_and_r2_agree_under_cohen():
    a = certify(SEL, EST, sigma=0.5, radius="Rmono", reduction="cohen")
    b = certify(SEL, EST, sigma=0.5, radius="R2", reduction="cohen")
    assert a.radius == pytest.approx(b.radius, rel=1e-12)


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("sigma", [0, -0.5, math.nan, math.inf, None, "x", True])
def test_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        certify(SEL, EST, sigma=sigma)


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, math.nan])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        certify(SEL, EST, sigma=0.5, alpha=alpha)


def test_unknown_names():
    with pytest.raises(ValueError, match="radius.*'R3'"):
        certify(SEL, EST, sigma=0.5, radius="R3")
    with pytest.raises(ValueError, match="reduction.*'holm'"):
        certify(SEL, EST, sigma=0.5, reduction="holm")
    with pytest.raises(ValueError, match="bound.*'bentkus'"):
        certify(S_SEL, S_EST, sigma=0.5, bound="bentkus")


@pytest.mark.parametrize("r,red", [(r, red) for r in RADII for red in REDUCTIONS if red not in SUPPORTED[r]])
def test_unsupported_combinations_name_both(r, red):
    with pytest.raises(ValueError, match=f"{r}.*{red}"):
        certify(S_SEL, S_EST, sigma=0.5, radius=r, reduction=red, **_kw(r))


def test_lipschitz_arguments():
    with pytest.raises(ValueError, match="needs lipschitz"):
        certify(S_SEL, S_EST, sigma=0.5, radius="Rmono_lip", reduction="cohen")
    with pytest.raises(ValueError, match="lipschitz=1.0 is only used"):
        certify(SEL, EST, sigma=0.5, radius="R2", lipschitz=1.0)
    with pytest.raises(ValueError, match="lipschitz"):
        certify(S_SEL, S_EST, sigma=0.5, radius="R1_lip", lipschitz=-1.0)
    with pytest.raises(ValueError, match="output_range"):
        certify(SEL, EST, sigma=0.5, radius="R2", output_range=1.0)
    with pytest.raises(ValueError, match="not Lipschitz"):
        certify(SEL, EST, sigma=0.5, radius="Rmono_lip", reduction="cohen", lipschitz=1.0)


@pytest.mark.parametrize("sel,est,match", [
    (np.array([1, 2, 3]), np.array([1, 2]), "selection has 3 classes but estimation has 2"),
    (np.ones((4, 3)) / 3, np.array([1, 2, 3]), "same kind"),
    (np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), "shape"),
    (np.array([5]), np.array([5]), "at least 2 classes"),
    (np.array([1, -2, 3]), np.array([1, 2, 3]), "selection must be non-negative"),
    (np.array([1, 2, 3]), np.array([1.5, 2, 3]), "estimation must be integers"),
    (np.array([0, 0, 0]), np.array([1, 2, 3]), "selection counts sum to 0"),
    (np.array([1, 2, 3]), np.array([0, 0, 0]), "estimation counts sum to 0"),
    (np.ones((4, 3)) / 3, np.ones((5, 2)) / 2, "selection has 3 classes but estimation has 2"),
    (np.ones((4, 3)) / 3, np.full((5, 3), 0.5), "summing to"),
    (np.ones((4, 3)) / 3, np.array([[1.2, 0.0, 0.0]]), "in \\[0, 1\\]"),
    (np.ones((4, 3)) / 3, np.array([[np.nan, 0.0, 0.0]]), "non-finite"),
    (np.ones((0, 3)), np.ones((5, 3)) / 3, "empty"),
])
def test_bad_samples(sel, est, match):
    with pytest.raises(ValueError, match=match):
        certify(sel, est, sigma=0.5, reduction="cohen", radius="R2")
