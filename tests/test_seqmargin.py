"""Tests of confbounds.seqmargin: threshold tables, margin confidence sequences, validity under optional stopping.

Validity is tested where it is hardest: the true parameter sits *exactly* on the boundary that is being decided
(``p_A = c`` for the tables, ``g(q) = theta`` for the margin bounds), so every certification is an error.  Each
stream is read after every sample (tables, two one-sided CSs) or at every look of a dense fixed schedule (joint
Dirichlet CS), and a run counts as an error if the bound *ever* crosses (the worst stopping rule: stop at the
first crossing).  The error rate must be ``<= alpha`` by a one-sided exact binomial test at level 1e-3, with a
large ``alpha = 0.1`` and ``>= 1000`` runs so that a violation is detectable.  A negative control (fixed-n
Clopper-Pearson re-read after every sample, no correction) shows that the same test rejects an invalid procedure.
"""
import math

import mpmath as mp
import numpy as np
import pytest
from scipy import special, stats

from confbounds import clopper_pearson
from confbounds.mixture import beta_binomial_cs
from confbounds.seqmargin import (ThresholdTable, bonferroni_margin_cs, dirichlet_margin_certifies,
                                  dirichlet_margin_lower, futile, margin_from_bounds, mixture_threshold_table,
                                  selection_buckets)

TEST_LEVEL = 1e-3
ALPHA = 0.1


def _rate_ok(errors: int, reps: int, alpha: float) -> bool:
    """One-sided exact binomial test of ``H0: P(error) <= alpha``: passes when ``P(Bin(reps, alpha) >= errors)``
    exceeds TEST_LEVEL."""
    return float(stats.binom.sf(errors - 1, reps, alpha)) > TEST_LEVEL


def _mp_log_m(k, t, c, a, b):
    """``log M_t(c)`` of the beta-binomial mixture in 50-digit arithmetic (mpmath), the reference of the tables."""
    mp.mp.dps = 50
    k, t, c, a, b = mp.mpf(k), mp.mpf(t), mp.mpf(c), mp.mpf(a), mp.mpf(b)
    lb = lambda x, y: mp.loggamma(x) + mp.loggamma(y) - mp.loggamma(x + y)  # noqa: E731
    return lb(a + k, b + t - k) - lb(a, b) - k * mp.log(c) - (t - k) * mp.log(1 - c)


# ------------------------------------------------------------------------------------------------- tables

@pytest.mark.parametrize("c,alpha,prior", [(0.9, 0.001, (1.0, 0.1)), (0.99865, 0.001, (1.0, 0.1)),
                                           (0.6, 0.05, (0.5, 0.5))])
def test_table_matches_mpmath_definition(c, alpha, prior):
    # certify[t] is the smallest k > c t with log M_t(c) >= log(1/alpha): checked in 50 digits (mpmath) at k and
    # k - 1; refute[t] likewise from below.  The only allowed disagreement is inside the safety margin (1e-6 here).
    max_n = 20_000
    tab = mixture_threshold_table(c, max_n, alpha, prior)
    thr = mp.log(1 / mp.mpf(alpha))
    for t in [1, 2, 7, 50, 333, 1000, 4321, 20_000]:
        k = int(tab.certify[t])
        if k <= t:
            assert k > c * t and _mp_log_m(k, t, c, *prior) >= thr
            assert k - 1 <= c * t or _mp_log_m(k - 1, t, c, *prior) < thr + 1e-6
        else:
            assert k == t + 1 and (t <= c * t or _mp_log_m(t, t, c, *prior) < thr + 1e-6)
        r = int(tab.refute[t])
        if r >= 0:
            assert r < c * t and _mp_log_m(r, t, c, *prior) >= thr
            assert r + 1 >= c * t or _mp_log_m(r + 1, t, c, *prior) < thr + 1e-6


def test_table_agrees_with_mixture_cs():
    # The table decision equals "beta_binomial_cs lower end > c" except where beta_binomial_cs's own (wider)
    # rounding margin makes it more conservative: then the table certifies at most a few counts earlier.
    c, alpha, prior = 0.95, 0.001, (1.0, 0.1)
    tab = mixture_threshold_table(c, 30_000, alpha, prior)
    ts = np.array([10, 100, 500, 1000, 5000, 12345, 30_000])
    k = tab.certify[ts]
    lo_at = beta_binomial_cs(np.minimum(k, ts), ts, alpha, prior=prior)
    lo_before = beta_binomial_cs(np.minimum(k - 1, ts), ts, alpha, prior=prior)
    assert np.all(lo_before <= c)
    assert np.all((k > ts) | (lo_at > c) | (beta_binomial_cs(np.minimum(k + 3, ts), ts, alpha, prior=prior) > c))


def test_unreachable_by_brute_force():
    # unreachable[t] = largest k from which no s in (t, max_n] has k + (s - t) >= certify[s]; brute force.
    tab = mixture_threshold_table(0.8, 300, 0.05, (1.0, 1.0))
    for t in range(1, 300):
        ks = [k for k in range(t + 1) if not any(k + s - t >= tab.certify[s] for s in range(t + 1, 301))]
        want = max(ks) if ks else -1
        assert tab.unreachable[t] == want, t
    assert tab.unreachable[300] == 300


def test_final_look_share():
    # final_share = s: the CS at (1 - s) alpha, and at max_n the smaller of its count and the Clopper-Pearson
    # count at s alpha (recomputed here with confbounds.clopper_pearson)
    c, max_n, alpha = 0.99, 5000, 0.001
    plain = mixture_threshold_table(c, max_n, alpha * 0.5)
    tab = mixture_threshold_table(c, max_n, alpha, final_share=0.5)
    assert np.array_equal(tab.certify[:-1], plain.certify[:-1]) and np.array_equal(tab.refute, plain.refute)
    k = int(tab.certify[max_n])
    assert k < plain.certify[max_n]
    assert clopper_pearson(k, max_n, alpha * 0.5) > c >= clopper_pearson(k - 1, max_n, alpha * 0.5)
    assert np.all(tab.unreachable <= plain.unreachable)
    with pytest.raises(ValueError, match="final_share"):
        mixture_threshold_table(c, max_n, alpha, final_share=1.0)


@pytest.mark.parametrize("c", [0.9, float(special.ndtr(2.0))])
def test_final_look_valid_under_optional_stopping(c):
    # CS at alpha/2 read after every sample plus Clopper-Pearson at alpha/2 at max_n, p at the boundary
    reps, max_n = 1500, 1000
    tab = mixture_threshold_table(c, max_n, ALPHA, (1.0, 0.1), final_share=0.5)
    k = _bernoulli_paths(np.random.default_rng(7), c, reps, max_n)
    wrong = (k >= tab.certify[None, 1:]) | (k <= tab.refute[None, 1:])
    errors = int(np.sum(wrong.any(axis=1)))
    assert _rate_ok(errors, reps, ALPHA), errors


def test_table_rejects_bad_arguments():
    with pytest.raises(ValueError, match="c must lie"):
        mixture_threshold_table(1.0, 10, 0.1)
    with pytest.raises(ValueError, match="max_n"):
        mixture_threshold_table(0.5, 0, 0.1)
    with pytest.raises(ValueError, match="alpha"):
        mixture_threshold_table(0.5, 10, 1.5)
    with pytest.raises(ValueError, match="prior"):
        mixture_threshold_table(0.5, 10, 0.1, prior=(0, 1))


def test_futility_is_monotone_in_progress():
    # a hand-checked case: 900/1000 projects floor(900 + 0.919 * 99000) < 99000 (futile); 995/1000 does not
    assert futile(900, 1000, 99_000, 100_000) and not futile(995, 1000, 99_000, 100_000)
    assert futile(99_000 - 1, 100_000, 99_000, 100_000) and not futile(99_000, 100_000, 99_000, 100_000)


# --------------------------------------------------------------------------- optional stopping: the tables

def _bernoulli_paths(rng, p, reps, n):
    return np.cumsum(rng.random((reps, n)) < p, axis=1, dtype=np.int64)


@pytest.mark.parametrize("c", [0.5, 0.9, float(special.ndtr(3.0))])
def test_table_decisions_valid_under_optional_stopping(c):
    # p exactly at the boundary: certifying OR refuting c at any t <= max_n is an error (one Ville event at alpha)
    reps, max_n = 1500, 2000
    tab = mixture_threshold_table(c, max_n, ALPHA, (1.0, 0.1))
    k = _bernoulli_paths(np.random.default_rng(1), c, reps, max_n)
    wrong = (k >= tab.certify[None, 1:]) | (k <= tab.refute[None, 1:])
    errors = int(np.sum(wrong.any(axis=1)))
    assert _rate_ok(errors, reps, ALPHA), errors


def test_negative_control_rereading_clopper_pearson_is_rejected():
    # fixed-n Clopper-Pearson at alpha re-read after every sample (no correction), p at the boundary: the error
    # rate is far above alpha and the same binomial test rejects it, so the validity tests can fail.
    reps, max_n, c = 1000, 1000, 0.9
    k = _bernoulli_paths(np.random.default_rng(2), c, reps, max_n)
    t = np.arange(1, max_n + 1)[None, :]
    lo = clopper_pearson(k, np.broadcast_to(t, k.shape), ALPHA, side="lower")
    errors = int(np.sum((lo > c).any(axis=1)))
    assert not _rate_ok(errors, reps, ALPHA), errors
    assert errors / reps > 2 * ALPHA


# -------------------------------------------------------------------------- margin CSs: two one-sided CSs

def test_selection_buckets():
    assert selection_buckets([0, 95, 3, 0, 2]) == [[2], [4], [0, 3]]
    assert selection_buckets([5, 5], top=1) == [[0]]
    assert selection_buckets([0, 10, 0]) == [[0, 2]]
    with pytest.raises(ValueError, match="top"):
        selection_buckets([1, 2, 3], top=5)
    with pytest.raises(ValueError, match="1-D"):
        selection_buckets([[1, 2]])


def test_bonferroni_pair_alpha_split_and_shapes():
    # lower end at share_a * alpha, upper ends at (1 - share_a) alpha / K: recomputed from beta_binomial_cs
    lo, hi = bonferroni_margin_cs(950, [30, 20], 1000, alpha=0.01, share_a=0.6)
    assert lo == pytest.approx(float(beta_binomial_cs(950, 1000, 0.006, prior=(1.0, 0.1))), rel=1e-14)
    assert hi == pytest.approx(float(beta_binomial_cs(30, 1000, 0.002, side="upper", prior=(0.1, 1.0))), rel=1e-14)
    # arrays: a path of 4 times, 2 buckets
    lo, hi = bonferroni_margin_cs([9, 95, 950, 9500], [[1, 0], [3, 2], [30, 20], [300, 200]],
                                  [10, 100, 1000, 10_000], alpha=0.01)
    assert lo.shape == (4,) and hi.shape == (4,) and np.all(np.diff(lo) > 0) and np.all(np.diff(hi) < 0)
    with pytest.raises(ValueError, match="exceeds t"):
        bonferroni_margin_cs(9, [1, 1], 10, 0.01)
    with pytest.raises(ValueError, match="share_a"):
        bonferroni_margin_cs(9, [1], 10, 0.01, share_a=1.0)
    assert margin_from_bounds(0.975, 0.025) == pytest.approx(2 * 1.959963984540054)  # scipy ndtri(0.975)


def _trinomial_paths(rng, q, reps, n):
    u = rng.random((reps, n))
    a = np.cumsum(u < q[0], axis=1, dtype=np.int64)
    b = np.cumsum((u >= q[0]) & (u < q[0] + q[1]), axis=1, dtype=np.int64)
    return a, b


def _boundary_q(theta, q2, probit):
    q1 = float(special.ndtr(special.ndtri(q2) + theta)) if probit else q2 + theta
    return np.array([q1, q2, 1.0 - q1 - q2])


@pytest.mark.parametrize("margin,q2", [("probit", 0.05), ("probit", 0.004), ("linear", 0.1)])
def test_bonferroni_margin_valid_under_optional_stopping(margin, q2):
    # classes (A, B, C) with q = (1 - 2 q2, q2, q2) and buckets [B], [C] fixed in advance: the margin
    # theta = g(q_A, max(q_B, q_C)) is the true value, every bound > theta is an error; read after every sample.
    reps, max_n = 1000, 600
    q = np.array([1 - 2 * q2, q2, q2])
    theta = float(margin_from_bounds(q[0], q[1], margin))
    ka, kb = _trinomial_paths(np.random.default_rng(3), q, reps, max_n)
    t = np.broadcast_to(np.arange(1, max_n + 1), ka.shape)
    lo, hi = bonferroni_margin_cs(ka, np.stack([kb, t - ka - kb], axis=-1), t, ALPHA)
    errors = int(np.sum((margin_from_bounds(lo, hi, margin) > theta).any(axis=1)))
    assert _rate_ok(errors, reps, ALPHA), errors


# ----------------------------------------------------------------------------- joint Dirichlet mixture CS

def test_dirichlet_certify_matches_grid_of_the_curve():
    # Reference: the minimum of log M over a fine grid of the curve g(q) = theta (an upper estimate of the true
    # minimum).  Certified implies grid minimum >= log(1/alpha); a grid minimum clearly above the level must be
    # certified (the branch-and-bound is not allowed to be uselessly conservative).
    x = np.array([950, 30, 20])
    alpha = 0.001
    a = np.array([1.0, 0.1, 0.1])
    ct = (special.gammaln(x + a).sum() - special.gammaln((x + a).sum())
          - special.gammaln(a).sum() + special.gammaln(a.sum()))
    for theta in np.linspace(2.0, 3.4, 15):
        z = np.linspace(-12, -theta / 2, 400_001)[:-1]
        q1, q2 = special.ndtr(z + theta), special.ndtr(z)
        q3 = 1 - q1 - q2
        grid_min = float(np.min(ct - x[0] * np.log(q1) - x[1] * np.log(q2) - x[2] * np.log(q3)))
        cert = dirichlet_margin_certifies(x, theta, alpha)
        if cert:
            assert grid_min >= math.log(1 / alpha)
        if grid_min > math.log(1 / alpha) + 1e-3:
            assert cert, theta


def test_dirichlet_lower_is_monotone_and_in_range():
    lo_probit = dirichlet_margin_lower([950, 30, 20], 0.001)
    lo_lin = dirichlet_margin_lower([950, 30, 20], 0.001, margin="linear")
    mle = special.ndtri(0.95) - special.ndtri(0.03)
    assert 0 < lo_probit < mle and 0 < lo_lin < 0.95 - 0.03
    assert dirichlet_margin_lower([960, 30, 10], 0.001) >= lo_probit  # one trial moved from rest to A
    assert dirichlet_margin_lower([0, 3, 7], 0.001) == -math.inf
    with pytest.raises(ValueError, match="counts"):
        dirichlet_margin_certifies([1, 2], 1.0, 0.1)
    with pytest.raises(ValueError, match="prior"):
        dirichlet_margin_certifies([5, 2, 3], 1.0, 0.1, prior=(1, 1))


@pytest.mark.parametrize("margin,theta,q2", [("probit", 2.0, 0.05), ("linear", 0.6, 0.1)])
def test_dirichlet_margin_valid_under_optional_stopping(margin, theta, q2):
    # trinomial (A, bucket, rest) exactly on g(q) = theta; read at every look of a dense fixed schedule
    # (t = 5, 6, ..., then every ~5 %, up to 600); an error is certifying theta at any look.
    reps = 1000
    q = _boundary_q(theta, q2, margin == "probit")
    looks = np.unique(np.concatenate([np.arange(5, 40), np.round(40 * 1.05 ** np.arange(60)).astype(int)]))
    looks = looks[looks <= 600]
    ka, kb = _trinomial_paths(np.random.default_rng(4), q, reps, int(looks[-1]))
    errors = 0
    for r in range(reps):
        for t in looks:
            a, b = int(ka[r, t - 1]), int(kb[r, t - 1])
            if dirichlet_margin_certifies([a, b, t - a - b], theta, ALPHA, margin=margin):
                errors += 1
                break
    assert _rate_ok(errors, reps, ALPHA), errors
