"""Tests of the per-sample sequential bound (``bound="table"``) and ``--sequential --radius R2`` in the scheduler.

Validity under optional stopping is checked through the real scheduler (:func:`radius.engines.sequential.schedule`
via :func:`certify_dataset_sequential`) and the real linear model: ``backends.base.ArraySampler`` with logits
``(-z_0, z_0)``, whose class-1 probability at ``x = (r, 0)`` under ``N(0, sigma^2 I)`` noise is exactly
``Phi(r / sigma)`` (Cohen et al. 2019, the linear case), i.e. *on* the threshold of radius ``r``.  There every
claim about ``r`` is wrong: certifying it (Rmono or R2; with two classes ``p_B = 1 - p_A``, so the true R2
radius is ``sigma Phi^-1(p_A) = r`` too), refuting it, or a certificate radius ``> r``.  The data set is 1000
copies of ``x`` (inputs are independent: their seeds differ), ``alpha = 0.1``, and the wrong-claim count must
pass a one-sided exact binomial test against ``alpha`` at level 1e-3.  The negative control replaces the tables
by an uncorrected fixed-n Clopper-Pearson bound at ``alpha`` re-read after every sample; the same test rejects it.
"""
import math

import numpy as np
import pytest
from scipy import special, stats

from backends.base import ArraySampler
from confbounds.mixture import beta_binomial_cs
from confbounds.seqmargin import TOP_PRIOR, ThresholdTable
import radius.sequential as rs
from radius.engines.sequential import certify_dataset_sequential
from radius.pipeline import recertify
from radius.sequential import TableState, certify_sequential, decode_looks, r2_grid, threshold_table
from radius.run.spec import SequentialSpec

TEST_LEVEL = 1e-3
W = np.array([1.0, 0.0])


def _linear(sigma, batch_size=8192):
    return ArraySampler(lambda z: np.stack([-(z @ W), z @ W], axis=1), 2, sigma=sigma, batch_size=batch_size)


def _p_value(errors, reps, alpha):
    return float(stats.binom.sf(errors - 1, reps, alpha))


def _boundary_run(sigma, r, kind, final_share, futility_z, reps=1000, max_n=2000, seed=0):
    xs = np.tile(np.array([r, 0.0]), (reps, 1))
    return certify_dataset_sequential(_linear(sigma), xs, np.ones(reps, dtype=int), sigma=sigma, alpha=0.1,
                                      radii=[r], max_n=max_n, n0=20, batch_size=100, growth=2.0, seed=seed,
                                      bound="table", radius_kind=kind, final_share=final_share,
                                      futility_z=futility_z, model_batch_size=4096)


def _wrong(c, r):
    return c.decisions[r] in ("certified", "refuted") or c.radius > r


@pytest.mark.parametrize("kind,final_share,futility_z", [("Rmono", None, None), ("Rmono", 0.5, None),
                                                         ("Rmono", 0.5, 2.0), ("R2", 0.5, None)])
@pytest.mark.parametrize("sigma,r", [(0.5, 0.5), (0.25, 0.5)])  # p_A = Phi(1) = 0.841, Phi(2) = 0.977
def test_optional_stopping_through_scheduler_at_threshold(sigma, r, kind, final_share, futility_z):
    run = _boundary_run(sigma, r, kind, final_share, futility_z)
    assert len(run.certificates) == 1000 and run.mixed
    assert all(c.top == 1 for c in run.certificates)       # p_A > 1/2: the selection picks class 1
    errors = sum(_wrong(c, r) for c in run.certificates)
    p = _p_value(errors, 1000, 0.1)
    assert p > TEST_LEVEL, f"{errors} wrong claims out of 1000 at alpha = 0.1 (p-value {p:.2e})"
    # not vacuous: the inputs are read for long (the look-ahead gives up near the end, with no claim)
    n = np.array([c.n for c in run.certificates])
    assert np.median(n) > 500, np.median(n)
    print(f"\n{kind} share={final_share} z={futility_z} sigma={sigma} r={r}: {errors}/1000 wrong, "
          f"median n {np.median(n):.0f}")


def _naive_table(c, max_n, alpha, prior, share):
    """Uncorrected fixed-n one-sided Clopper-Pearson at ``alpha`` at every ``t`` (the negative control).

    ``certify[t] = q + 1`` with ``q = binom.ppf(1 - alpha, t, c)`` (so ``P_c(X >= certify[t]) <= alpha``: the
    exact one-sided test of Clopper-Pearson at fixed ``t``); ``refute[t] = binom.ppf(alpha, t, c) - 1``.
    """
    t = np.arange(max_n + 1)
    cert = (stats.binom.ppf(1 - alpha, t, c) + 1).astype(np.int64)
    ref = (stats.binom.ppf(alpha, t, c) - 1).astype(np.int64)
    cert[0], ref[0] = 1, -1
    unreach = np.full(max_n + 1, -1, dtype=np.int64)
    unreach[-1] = max_n
    return ThresholdTable(c, alpha, prior, max_n, cert, ref, unreach, 0.0)


def test_negative_control_uncorrected_relooking_is_rejected(monkeypatch):
    monkeypatch.setattr(rs, "threshold_table", _naive_table)
    run = _boundary_run(0.5, 0.5, "Rmono", None, None)
    errors = sum(c.decisions[0.5] in ("certified", "refuted") for c in run.certificates)
    print(f"\nnegative control: {errors}/1000 wrong")
    assert _p_value(errors, 1000, 0.1) < TEST_LEVEL, errors


# ----------------------------------------------------------------------------- reading and bookkeeping

def _labels(p, n, seed, top=1):
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < p, top, 1 - top)


@pytest.mark.parametrize("p", [0.6, 0.75, 0.84, 0.95])
def test_per_sample_reading_equals_brute_force_cs(p):
    # the tables read after every sample stop at the first t where the mixture CS (beta_binomial_cs, the
    # reference implementation) leaves the threshold; futility off, no final look
    sigma, r, alpha, max_n = 0.5, 0.5, 0.01, 3000
    c_r = float(special.ndtr(r / sigma))
    seq = SequentialSpec(radii=(r,), max_n=max_n, bound="table", futility_z=None, final_share=None,
                         batch_size=100)
    for seed in range(5):
        lab = _labels(p, max_n, seed)
        st = TableState(1, np.array([3, 17]), sigma=sigma, alpha=alpha, seq=seq)
        for chunk in np.array_split(lab, 7):  # chunking must not matter
            st.feed(chunk)
        k = np.cumsum(lab == 1)
        t = np.arange(1, max_n + 1)
        lo, hi = beta_binomial_cs(k, t, alpha, side="two-sided", prior=TOP_PRIOR)
        tab = threshold_table(c_r, max_n, alpha, TOP_PRIOR, 0.0)
        bad = ((lo > c_r) | (hi < c_r))
        first = int(np.argmax(bad)) + 1 if bad.any() else None
        if st.decisions[r] in ("certified", "refuted"):
            # the table's margin is tighter than the endpoint function's: it may decide at most a little earlier
            assert first is None or st.t <= first
            assert (st.decisions[r] == "certified") == (k[st.t - 1] >= tab.certify[st.t])
            if first is not None:
                assert first - st.t <= 2
        else:
            assert first is None or st.t < first  # gave up (look-ahead) before the CS decided
        assert st.t == int(np.sum(st.counts)) and st.k == int(k[st.t - 1])


def test_encoded_looks_roundtrip_and_tamper():
    seq = SequentialSpec(radii=(0.5,), max_n=500, bound="table", futility_z=None, batch_size=50)
    st = TableState(2, np.array([1, 2, 90, 7]), sigma=0.5, alpha=0.1, seq=seq)
    rng = np.random.default_rng(1)
    lab = np.where(rng.random(500) < 0.7, 2, rng.integers(0, 4, 500))
    st.feed(lab)
    enc = st.encoded_looks()
    assert np.all(np.diff(enc) > 0)
    np.testing.assert_array_equal(decode_looks(enc, 4, 2), lab[:st.t])
    with pytest.raises(ValueError, match="strictly increasing"):
        decode_looks(enc[::-1], 4, 2)
    with pytest.raises(ValueError, match="top class"):
        decode_looks([1 * 4 + 2, 10 * 4], 4, 2)


def test_r2_grid():
    g = np.flatnonzero(r2_grid(5000))
    assert g[:1000].tolist() == list(range(1, 1001)) and g[-1] == 5000
    assert np.all(np.diff(g[1000:]) <= np.ceil(g[1000:-1] * 0.002) + 1)


def test_run_files_resume_and_recertify(tmp_path):
    # three classes; R2 end to end: rows, counts log, resume after a torn last line, replay by recertify
    Wm = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    s = ArraySampler(lambda z: z @ Wm.T, 3, sigma=0.5, batch_size=1024)
    xs = np.array([[1.5, 0.0], [0.3, 0.1], [0.0, 2.0], [-1.0, -1.0], [0.6, 0.5]])
    ys = np.array([0, 0, 1, 2, 0])
    kw = dict(sigma=0.5, radii=[0.25, 0.5], max_n=20_000, bound="table", radius_kind="R2", model_batch_size=700)
    out, log = tmp_path / "r.tsv", tmp_path / "r.jsonl"
    run = certify_dataset_sequential(s, xs, ys, out=str(out), counts_log=str(log), **kw)
    full = out.read_text().splitlines()
    assert all(c.radius_kind == "R2" for c in run.certificates)
    assert '"alpha_split"' in full[0] and '"radius_kind":"R2"' in full[0]
    assert [c.decisions[0.25] for c in run.certificates][:3] == ["certified", "futile", "certified"]
    for c in run.certificates:  # a certified radius is carried by the certificate
        for r, d in c.decisions.items():
            assert (d == "certified") <= (c.radius >= r)
    # torn file: cut the last row and the log mid-line, rerun the same call
    out.write_text("\n".join(full[:-2]) + "\n" + full[-2][:17])
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:9])
    certify_dataset_sequential(s, xs, ys, out=str(out), counts_log=str(log), **kw)
    strip = lambda rows: [r.split("\t")[:5] + r.split("\t")[6:] for r in rows]  # noqa: E731 (time column)
    assert strip(out.read_text().splitlines()) == strip(full)
    re_out = tmp_path / "re.tsv"
    recertify(str(log), out=str(re_out))
    assert strip(re_out.read_text().splitlines()[1:]) == strip(full[1:])


def test_rmono_table_certificate_and_final_look():
    s = _linear(0.5)
    c = certify_sequential(s, np.array([1.0, 0.0]), sigma=0.5, radii=[0.25, 2.0], max_n=20_000, bound="table")
    assert c.decisions[0.25] == "certified" and c.decisions[2.0] in ("refuted", "futile")
    assert c.radius >= 0.25 and c.forward_passes >= 100 + c.n and c.n < 1000
    # an input on the margin of the final Clopper-Pearson look runs to max_n
    tab = threshold_table(float(special.ndtr(0.5)), 2000, 0.001, TOP_PRIOR, 0.5)
    tab0 = threshold_table(float(special.ndtr(0.5)), 2000, 0.001, TOP_PRIOR, 0.0)
    assert tab.certify[2000] < tab0.certify[2000]


@pytest.mark.parametrize("kw,match", [
    (dict(bound="table", tolerance=0.1), "tolerance"),
    (dict(bound="mixture", radius_kind="R2"), "needs bound='table'"),
    (dict(bound="table", radius_kind="R1"), "radius_kind"),
])
def test_bad_table_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        certify_sequential(_linear(0.5), np.zeros(2), sigma=0.5, radii=[0.5], max_n=1000, **kw)


def test_table_needs_a_batch_model():
    class CountsOnly:
        num_classes, sigma = 2, 0.5

        def counts(self, x, n, seed):
            return np.array([0, n])

    with pytest.raises(ValueError, match="batch model"):
        certify_sequential(CountsOnly(), np.zeros(2), sigma=0.5, radii=[0.5], max_n=1000, bound="table")


def test_decision_inside_a_chunk_is_kept_while_others_continue():
    # regression: r = 0.25 is certified inside the chunk while the larger radii are still open; the decision
    # must be recorded then (and futility must not fire on the first few samples)
    seq = SequentialSpec(radii=(0.25, 0.5, 0.75, 1.0), max_n=100_000, bound="table", radius_kind="R2")
    st = TableState(3, np.array([0, 0, 0, 60, 0, 30, 0, 0, 10, 0]), sigma=0.5, alpha=0.001, seq=seq)
    st.feed(np.array([5, 3, 3, 8, 5] + [3] * 50))
    assert st.decisions == {0.25: "certified", 0.5: "undecided", 0.75: "undecided", 1.0: "undecided"}
    assert not st.stopped_by and st.t == 55
