"""Tests of radius.sequential: anytime-valid sequential certification.

Validity is checked where the truth is known in closed form: a linear base classifier ``sign(w.x + b)`` under
``N(0, sigma^2 I)`` noise has smoothed probability ``Phi((w.x + b) / (sigma ||w||))`` for class 1 (Cohen et al.
2019, Section 3.2 / Appendix, the linear case), and a sampler that draws the top-class indicator directly from
``Bernoulli(p)`` has ``p_A = p``.  A decision is wrong when it certifies ``r`` while ``p_A <= Phi(r / sigma)`` or
refutes ``r`` while ``p_A >= Phi(r / sigma)``; at ``p_A`` exactly equal to a threshold *every* decision on that
radius is wrong.  The wrong-decision rate must be ``<= alpha`` (one-sided exact binomial test at level 1e-3),
with a large ``alpha = 0.1`` so that a violation is detectable; a negative control (Clopper-Pearson re-read at
every look without correction) shows the same test does detect optional-stopping failures.
"""
import math

import numpy as np
import pytest
from scipy import special, stats

from backends.base import ArraySampler
from confbounds import clopper_pearson
from radius.engines.sequential import certify_dataset_sequential
from radius.sequential import (certify_sequential, look_alphas, look_schedule,
                               SequentialCertificate)

TEST_LEVEL = 1e-3


class BernoulliSampler:
    """A real sampler of a known law: the top-class indicator is Bernoulli(p) (class 1), else class 0.

    ``counts(x, n, seed)`` is ``[n - K, K]`` with ``K ~ Bin(n, p)`` from ``default_rng(seed)``, which has exactly
    the law of the counts of n noisy copies of an input whose smoothed class-1 probability is p.
    """

    num_classes = 2
    simplex = "hard"

    def __init__(self, p, sigma):
        self.p, self.sigma = float(p), float(sigma)

    def counts(self, x, n, seed):
        k = np.random.default_rng(seed).binomial(n, self.p)
        return np.array([n - k, k], dtype=np.int64)

    def scores(self, x, n, seed, columns=None):
        ind = (np.random.default_rng(seed).random(n) < self.p).astype(float)
        s = np.stack([1.0 - ind, ind], axis=1)
        return s if columns is None else s[:, list(columns)]


def _wrong(cert, p_a, sigma):
    """Number of wrong claims of a certificate given the true top-class probability p_a."""
    bad = 0
    for r, d in cert.decisions.items():
        c = special.ndtr(r / sigma)
        bad += (d == "certified" and p_a <= c) or (d == "refuted" and p_a >= c)
    # the reported radius must not exceed the true Cohen radius sigma Phi^-1(p_A)
    true_r = sigma * special.ndtri(p_a) if p_a > 0.5 else 0.0
    bad += cert.prediction != -1 and cert.radius > true_r + 1e-12
    return int(bad > 0)


def _check_rate(errors, reps, alpha):
    p_value = stats.binom.sf(errors - 1, reps, alpha)
    assert p_value > TEST_LEVEL, f"{errors} wrong out of {reps} at alpha={alpha} (p-value {p_value:.2e})"


SIGMA = 0.5
RADII = (0.25, 0.5)            # thresholds Phi(0.5) = 0.6915 and Phi(1) = 0.8413


@pytest.mark.parametrize("bound", ["mixture", "cp-looks"])
@pytest.mark.parametrize("p", [float(special.ndtr(0.5)), float(special.ndtr(1.0)), 0.76, 0.97])
def test_wrong_decisions_at_most_alpha_indicator(bound, p):
    # p = Phi(0.5) and Phi(1) sit exactly at the thresholds of radii 0.25 and 0.5 (sigma = 0.5)
    alpha, reps = 0.1, 1500
    s = BernoulliSampler(p, SIGMA)
    errors = 0
    for rep in range(reps):
        c = certify_sequential(s, np.zeros(1), sigma=SIGMA, alpha=alpha, radii=RADII, max_n=20_000, n0=20,
                               batch_size=50, growth=2.0, seed=rep, bound=bound, futility_z=None)
        p_a = p if c.top == 1 else 1.0 - p
        errors += _wrong(c, p_a, SIGMA)
    _check_rate(errors, reps, alpha)


def test_wrong_decisions_at_most_alpha_betting():
    alpha, reps, p = 0.1, 250, float(special.ndtr(1.0))
    s = BernoulliSampler(p, SIGMA)
    errors = 0
    for rep in range(reps):
        c = certify_sequential(s, np.zeros(1), sigma=SIGMA, alpha=alpha, radii=RADII, max_n=3_000, n0=20,
                               batch_size=100, seed=rep, bound="betting", futility_z=None)
        errors += _wrong(c, p if c.top == 1 else 1.0 - p, SIGMA)
    _check_rate(errors, reps, alpha)


def test_negative_control_uncorrected_looks_fail():
    # Clopper-Pearson at alpha re-read at every look of the same schedule, at the threshold: the wrong-decision
    # rate is far above alpha, and the same binomial test flags it (so the tests above can fail).
    alpha, reps, p = 0.1, 1500, float(special.ndtr(1.0))
    plan = look_schedule(50, 2.0, 20_000)
    rng = np.random.default_rng(0)
    inc = rng.binomial(np.diff(np.concatenate([[0], plan]))[None, :], p, size=(reps, len(plan)))
    k = np.cumsum(inc, axis=1)
    lo, hi = clopper_pearson(k, plan[None, :], alpha, side="two-sided")
    errors = int(np.sum(np.any((lo > p) | (hi < p), axis=1)))
    with pytest.raises(AssertionError):
        _check_rate(errors, reps, alpha)


def test_look_alphas_spend_exactly_alpha():
    # union bound over looks and sides: the levels must add up to alpha (hand-computed for J = 9 looks)
    plan = look_schedule(200, 2.0, 100_000)
    assert plan.tolist() == [200, 600, 1400, 3000, 6200, 12600, 25400, 51000, 100000]
    lo, up = look_alphas(0.001, len(plan), 0.5, 0.9)
    assert math.isclose(lo.sum() + up.sum(), 0.001, rel_tol=1e-12)
    assert math.isclose(lo[-1], 0.001 * 0.5 * 0.9) and math.isclose(up[0], 0.001 * 0.5 / 8 * 0.1)
    lo, up = look_alphas(0.01, 4, None, 0.5)
    assert np.allclose(lo, 0.01 / 8) and np.allclose(up, 0.01 / 8)


def _linear_sampler(w, b, sigma):
    w = np.asarray(w, dtype=float)
    return ArraySampler(lambda z: np.stack([-(z @ w + b), z @ w + b], axis=1), 2, sigma=sigma, batch_size=4096)


@pytest.mark.parametrize("offset", [0.25, 0.5, 0.4, -0.3])
def test_wrong_decisions_at_most_alpha_linear_model(offset):
    # real linear model through ArraySampler and the mixing scheduler; the input sits at signed distance
    # `offset` from the decision boundary, so p_A = Phi(|offset| / sigma): offsets 0.25 and 0.5 are exactly at the
    # thresholds of radii 0.25 and 0.5.
    alpha, reps = 0.1, 400
    w, b = np.array([3.0, 4.0]), -1.0           # ||w|| = 5
    x0 = (offset + 1.0 / 5.0) * w / 5.0         # (w.x0 + b) / ||w|| = offset
    s = _linear_sampler(w, b, SIGMA)
    xs = np.repeat(x0[None, :], reps, axis=0)
    run = certify_dataset_sequential(s, xs, np.zeros(reps, dtype=int), sigma=SIGMA, alpha=alpha, radii=RADII,
                                     max_n=6_000, n0=20, batch_size=50, seed=11, model_batch_size=4096,
                                     futility_z=None)
    p1 = float(special.ndtr(offset / SIGMA))
    errors = sum(_wrong(c, p1 if c.top == 1 else 1.0 - p1, SIGMA) for c in run.certificates)
    _check_rate(errors, reps, alpha)
    assert run.forward_passes == sum(c.forward_passes for c in run.certificates)


def test_decisions_and_certificate_fields():
    # p_A = Phi(2) = 0.977 (x at distance 1 from the boundary, sigma 0.5): radius 0.25 (threshold 0.69) is
    # certified, radius 2.0 (threshold Phi(4) = 0.99997) refuted; R_mono <= sigma Phi^-1(p_A) = 1.
    s = _linear_sampler([1.0, 0.0], 0.0, SIGMA)
    c = certify_sequential(s, np.array([1.0, 0.0]), sigma=SIGMA, alpha=0.001, radii=[2.0, 0.25], max_n=200_000,
                           seed=3)
    assert isinstance(c, SequentialCertificate)
    assert c.decisions == {0.25: "certified", 2.0: "refuted"} and c.stopped_by == "decided"
    assert c.prediction == 1 and c.top == 1 and 0.25 < c.radius < 1.0
    assert c.p_a_lower <= float(special.ndtr(2.0)) <= c.p_a_upper
    assert c.forward_passes == c.n0 + c.n and c.n in set(look_schedule(200, 2.0, 200_000).tolist())
    assert c.radius_kind == "Rmono" and c.reduction == "cohen" and c.p_b_upper == 1 - c.p_a_lower
    row = c.to_row()
    assert row["decisions"] == "0.25:certified|2:refuted" and row["forward_passes"] == c.forward_passes


def test_tolerance_pins_radius():
    s = _linear_sampler([1.0, 0.0], 0.0, SIGMA)
    c = certify_sequential(s, np.array([0.4, 0.0]), sigma=SIGMA, tolerance=0.1, max_n=400_000, seed=1)
    assert c.stopped_by == "tolerance"
    assert c.radius_upper - c.radius <= 0.1
    assert c.radius <= 0.4 <= c.radius_upper  # true R_mono = sigma Phi^-1(Phi(0.8)) = 0.4


def test_futility_stops_early_without_claims():
    # p_A = Phi(0.9) = 0.816, just below the threshold Phi(1) = 0.841 of radius 0.5: futility gives up long
    # before max_n; the decision is "futile" (no claim), never "certified".
    s = BernoulliSampler(float(special.ndtr(0.9)), SIGMA)
    c = certify_sequential(s, None, sigma=SIGMA, radii=[0.5], max_n=1_000_000, seed=0)
    c_off = certify_sequential(s, None, sigma=SIGMA, radii=[0.5], max_n=1_000_000, seed=0, futility_z=None)
    assert c.decisions[0.5] == "futile" and c_off.decisions[0.5] == "refuted"
    assert c.forward_passes < c_off.forward_passes


def test_scheduler_fills_batches_and_is_batch_size_invariant():
    # the noise of each (input, batch) is one stream drawn in chunks, so packing inputs differently into model
    # batches must not change any result: a check that the scheduler never mixes up rows between inputs.
    s = _linear_sampler([1.0, -1.0], 0.2, SIGMA)
    xs = np.random.default_rng(0).normal(size=(30, 2))
    ys = np.zeros(30, dtype=int)
    kw = dict(sigma=SIGMA, alpha=0.01, radii=[0.1, 0.3], max_n=20_000, seed=5)
    a = certify_dataset_sequential(s, xs, ys, model_batch_size=700, **kw)
    b = certify_dataset_sequential(s, xs, ys, model_batch_size=1999, **kw)
    assert [c.to_row() for c in a.certificates] == [c.to_row() for c in b.certificates]
    assert a.mixed and a.forward_passes == b.forward_passes
    assert a.model_calls == math.ceil(a.forward_passes / 700)  # every batch full except the last
    assert a.fill_rate > 0.9
    # the result of input i does not depend on the other inputs (seeds are per index)
    d = certify_dataset_sequential(s, xs[:4], ys[:4], model_batch_size=700, **kw)
    assert d.certificates[3].to_row() == a.certificates[3].to_row()


def test_scheduler_soft_scores_betting(tmp_path):
    s = ArraySampler(lambda z: np.stack([-3 * z[:, 0], 3 * z[:, 0]], axis=1), 2, sigma=SIGMA, simplex="softmax")
    xs = np.array([[1.0, 0.0], [-1.2, 0.5]])
    out = tmp_path / "seq.tsv"
    run = certify_dataset_sequential(s, xs, [1, 0], sigma=SIGMA, alpha=0.01, radii=[0.25], max_n=5_000,
                                     bound="betting", model_batch_size=256, out=str(out))
    assert [c.kind for c in run.certificates] == ["scores", "scores"]
    assert [c.prediction for c in run.certificates] == [1, 0]
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# confbounds-certify/1") and len(lines) == 4  # an ordinary results TSV


def test_fallback_without_batch_model():
    s = BernoulliSampler(0.99, SIGMA)
    run = certify_dataset_sequential(s, np.zeros((3, 1)), [1, 1, 1], sigma=SIGMA, radii=[0.25], max_n=10_000)
    assert not run.mixed and all(c.decisions[0.25] == "certified" for c in run.certificates)


@pytest.mark.parametrize("kw,match", [
    (dict(radii=[0.5, -0.1]), "radii must be finite and > 0"),
    (dict(radii=[0.0]), "radii must be finite and > 0"),
    (dict(radii=[float("nan")]), "radii must be finite and > 0"),
    (dict(radii=[]), "radii must be a non-empty"),
    (dict(radii=None, tolerance=0.0), "tolerance must be a finite number > 0"),
    (dict(radii=None, tolerance=-1), "tolerance must be a finite number > 0"),
    (dict(radii=None), "needs radii"),
    (dict(max_n=100, batch_size=200), "max_n = 100 is smaller than one batch"),
    (dict(growth=0.5), "growth"),
    (dict(bound="wald"), "bound must be one of"),
    (dict(alpha=0.0), "alpha"),
    (dict(sigma=0.25), "differs from the sampler"),
    (dict(futility_z=-1), "futility_z"),
    (dict(prior=(1, 0)), "prior"),
    (dict(final_share=1.0), "final_share"),
    (dict(lower_share=0.0), "lower_share"),
])
def test_bad_input(kw, match):
    s = BernoulliSampler(0.9, SIGMA)
    args = dict(sigma=SIGMA, radii=[0.5], max_n=1000, batch_size=100)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        certify_sequential(s, None, **args)
    with pytest.raises(ValueError, match=match):
        certify_dataset_sequential(s, np.zeros((2, 1)), [0, 0], **args)
