"""certify_dataset / recertify: seeds, independence, files, resume rules, bad input.

Uses a NumPy linear classifier (backends.base.ArraySampler) for speed; the real
ONNX digits model is exercised in test_resume.py and test_cli.py.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from backends.base import ArraySampler
from radius import certify, certify_dataset, recertify
from radius import results as res
from radius.pipeline import input_seeds

M, D = 4, 5
SIGMA = 0.5
_W = np.random.default_rng(1).standard_normal((M, D))


def _logits(z):
    return z @ _W.T


def make_sampler(sigma=SIGMA, m=M, batch_size=500):
    return ArraySampler(_logits, m, sigma=sigma, batch_size=batch_size)


def make_data(k=12, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((k, D))
    y = np.argmax(_logits(x), axis=1)  # mostly correct labels ...
    y[::5] = (y[::5] + 1) % M          # ... and some wrong ones
    return x, y


def strip_time(path):
    """File content with the ``time`` column (6th) blanked: what must match between runs."""
    out = []
    with open(path) as f:
        for i, line in enumerate(f):
            if i < 2:
                out.append(line)
            else:
                fields = line.rstrip("\n").split("\t")
                fields[5] = "T"
                out.append("\t".join(fields) + "\n")
    return "".join(out)


KW = dict(sigma=SIGMA, n0=50, n=400, alpha=0.01, reduction="bonferroni", radius="R2", progress=False)


# ---------------------------------------------------------------------------------------------- seeds

def test_input_seeds_distinct_and_deterministic():
    seen = set()
    for seed in (0, 1, 12345):
        for i in range(200):
            s, e = input_seeds(seed, i)
            assert s != e
            assert (s, e) == input_seeds(seed, i)
            assert 0 <= s < 2 ** 63 and 0 <= e < 2 ** 63
            seen.update((s, e))
    assert len(seen) == 2 * 3 * 200  # no seed is reused anywhere


class RecordingSampler:
    """Wraps a sampler and records every (n, seed) it is asked for."""

    def __init__(self, inner):
        self.inner = inner
        self.sigma, self.num_classes, self.simplex = inner.sigma, inner.num_classes, inner.simplex
        self.batch_size = inner.batch_size
        self.calls = []

    def counts(self, x, n, seed):
        self.calls.append((n, seed))
        return self.inner.counts(x, n, seed)

    def scores(self, x, n, seed, columns=None):
        self.calls.append((n, seed))
        return self.inner.scores(x, n, seed, columns)


def test_selection_and_estimation_use_different_seeds(tmp_path):
    x, y = make_data(10)
    rec = RecordingSampler(make_sampler())
    certify_dataset(rec, x, y, **KW, model_id="toy")
    sel = [s for n, s in rec.calls if n == 50]
    est = [s for n, s in rec.calls if n == 400]
    assert len(sel) == len(est) == 10
    assert set(sel).isdisjoint(est)
    assert len(set(sel)) == 10 and len(set(est)) == 10
    assert [input_seeds(0, i) for i in range(10)] == list(zip(sel, est))


def test_selection_and_estimation_samples_are_independent(tmp_path):
    """At p = 1/2, n0 = n: shared noise would make the two count vectors identical for every input.

    Inputs on the decision boundary of a 2-class linear model (p_A = 1/2 exactly).
    For independent draws P(identical) = P(Bin(64,1/2) = Bin(64,1/2)) = 0.0993
    (sum_k C(64,k)^2 / 4^64); with 40 inputs P(more than 15 identical) < 1e-6.
    """
    w = np.array([1.0, -1.0, 0.0])
    s = ArraySampler(lambda z: np.stack([z @ w, -(z @ w)], axis=1), 2, sigma=1.0)
    x = np.zeros((40, 3))
    x[:, 2] = np.arange(40)  # distinct inputs, all with w.x = 0
    y = np.zeros(40, dtype=np.int64)
    log = tmp_path / "c.jsonl"
    certify_dataset(s, x, y, sigma=1.0, n0=64, n=64, alpha=0.01, reduction="cohen", radius="Rmono",
                    counts_log=str(log), progress=False, model_id="boundary")
    _, recs = res.read_counts_log(str(log))
    same = sum(r["selection"] == r["estimation"] for r in recs)
    assert same <= 15, f"{same}/40 inputs have identical selection and estimation counts"
    # and different inputs get different noise: the estimation counts are not all equal
    assert len({tuple(r["estimation"]) for r in recs}) > 5


def test_pipeline_equals_certify_on_the_sampler_counts():
    x, y = make_data(6)
    s = make_sampler()
    certs = certify_dataset(s, x, y, **dict(KW, reduction="cpm", radius="R1"), seed=7)
    for i, c in enumerate(certs):
        a, b = input_seeds(7, i)
        direct = certify(s.counts(x[i], 50, a), s.counts(x[i], 400, b), sigma=SIGMA, alpha=0.01,
                         reduction="cpm", radius="R1")
        assert c == direct


# ------------------------------------------------------------------------------------------ files

def test_tsv_columns_and_metadata(tmp_path):
    x, y = make_data(5)
    out = tmp_path / "r.tsv"
    certs = certify_dataset(make_sampler(), x, y, **KW, out=str(out), model_id="toy")
    lines = out.read_text().split("\n")
    assert lines[0].startswith("# confbounds-certify/1 ")
    meta = json.loads(lines[0].split(" ", 2)[2])
    for k in ("model", "data", "sigma", "alpha", "n0", "n", "seed", "radius", "reduction", "bound"):
        assert k in meta
    assert meta["model"] == "toy" and meta["n"] == 400 and meta["sigma"] == SIGMA
    assert lines[1].split("\t")[:6] == ["idx", "label", "predict", "radius", "correct", "time"]
    cfg, cols = res.read_tsv(str(out))
    assert cfg == meta
    assert cols["idx"].tolist() == list(range(5))
    assert cols["label"].tolist() == y.tolist()
    assert cols["predict"].tolist() == [c.prediction for c in certs]
    assert cols["radius"].tolist() == [c.radius for c in certs]  # repr round-trips exactly
    assert cols["correct"].tolist() == [int(c.prediction == t) for c, t in zip(certs, y)]
    for i, c in enumerate(certs):
        assert res.str_to_counts(cols["estimation_counts"][i]).sum() == 400
        assert res.str_to_counts(cols["selection_counts"][i]).sum() == 50


def test_rerun_same_config_resumes_and_extends(tmp_path):
    x, y = make_data(10)
    full, part = tmp_path / "full.tsv", tmp_path / "part.tsv"
    certify_dataset(make_sampler(), x, y, **KW, out=str(full), model_id="toy")
    certify_dataset(make_sampler(), x, y, **KW, out=str(part), model_id="toy", limit=4)
    assert len(part.read_text().splitlines()) == 2 + 4
    calls = RecordingSampler(make_sampler())
    certs = certify_dataset(calls, x, y, **KW, out=str(part), model_id="toy")
    assert len(calls.calls) == 2 * 6  # only the 6 missing inputs were sampled
    assert len(certs) == 10
    assert strip_time(part) == strip_time(full)
    # a rerun of a finished run samples nothing and changes nothing
    before = part.read_text()
    calls = RecordingSampler(make_sampler())
    certify_dataset(calls, x, y, **KW, out=str(part), model_id="toy")
    assert calls.calls == [] and part.read_text() == before


def test_partial_last_line_is_truncated(tmp_path):
    x, y = make_data(8)
    full, part = tmp_path / "full.tsv", tmp_path / "part.tsv"
    certify_dataset(make_sampler(), x, y, **KW, out=str(full), model_id="toy")
    certify_dataset(make_sampler(), x, y, **KW, out=str(part), model_id="toy", limit=3)
    with open(part, "a") as f:
        f.write("3\t1\t1\t0.12")  # the process died while writing row 3
    certify_dataset(make_sampler(), x, y, **KW, out=str(part), model_id="toy")
    assert strip_time(part) == strip_time(full)
    _, cols = res.read_tsv(str(part))
    assert cols["idx"].tolist() == list(range(8))  # no duplicate, no lost row


def test_partial_counts_log_line_and_log_behind_tsv(tmp_path):
    x, y = make_data(8)
    full_log = tmp_path / "full.jsonl"
    certify_dataset(make_sampler(), x, y, **KW, counts_log=str(full_log), model_id="toy")
    # log with a torn last record
    log = tmp_path / "a.jsonl"
    certify_dataset(make_sampler(), x, y, **KW, counts_log=str(log), model_id="toy", limit=3)
    with open(log, "a") as f:
        f.write('{"idx":3,"label":1,"selection":[1,')
    certify_dataset(make_sampler(), x, y, **KW, counts_log=str(log), model_id="toy")
    assert log.read_text() == full_log.read_text()
    # TSV ahead of the log (killed between the two writes): the log is completed from the TSV
    out, log2 = tmp_path / "b.tsv", tmp_path / "b.jsonl"
    certify_dataset(make_sampler(), x, y, **KW, out=str(out), counts_log=str(log2), model_id="toy", limit=5)
    lines = log2.read_text().splitlines(keepends=True)
    log2.write_text("".join(lines[:3]))  # metadata + 2 records
    certify_dataset(make_sampler(), x, y, **KW, out=str(out), counts_log=str(log2), model_id="toy")
    assert log2.read_text() == full_log.read_text()


def test_logged_counts_are_reused_without_sampling(tmp_path):
    x, y = make_data(6)
    log = tmp_path / "c.jsonl"
    certify_dataset(make_sampler(), x, y, **KW, counts_log=str(log), model_id="toy")
    calls = RecordingSampler(make_sampler())
    certs = certify_dataset(calls, x, y, **dict(KW, reduction="cohen", radius="Rmono"), counts_log=str(log),
                            model_id="toy", out=str(tmp_path / "cohen.tsv"))
    assert calls.calls == []
    assert all(c.reduction == "cohen" for c in certs)


def test_refuses_tsv_from_another_run(tmp_path):
    x, y = make_data(4)
    out = tmp_path / "r.tsv"
    certify_dataset(make_sampler(), x, y, **KW, out=str(out), model_id="toy")
    before = out.read_bytes()
    others = [
        dict(KW, n=800),
        dict(KW, seed=1),
        dict(KW, alpha=0.001),
        dict(KW, reduction="cohen"),
        dict(KW, radius="R1"),
    ]
    for kw in others:
        with pytest.raises(ValueError, match="another run"):
            certify_dataset(make_sampler(), x, y, **kw, out=str(out), model_id="toy")
    with pytest.raises(ValueError, match="model"):
        certify_dataset(make_sampler(), x, y, **KW, out=str(out), model_id="other-model")
    with pytest.raises(ValueError, match="data"):
        certify_dataset(make_sampler(), x + 1e-9, y, **KW, out=str(out), model_id="toy")
    with pytest.raises(ValueError, match="sigma"):
        certify_dataset(make_sampler(sigma=0.25), x, y, **dict(KW, sigma=0.25), out=str(out), model_id="toy")
    assert out.read_bytes() == before  # refused files are left untouched
    # a file that is not ours at all
    alien = tmp_path / "alien.tsv"
    alien.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\t0.5\t1\t0:00:01\n")
    with pytest.raises(ValueError, match="not a confbounds-certify"):
        certify_dataset(make_sampler(), x, y, **KW, out=str(alien), model_id="toy")
    # a counts log of another run is refused too
    log = tmp_path / "c.jsonl"
    certify_dataset(make_sampler(), x, y, **KW, counts_log=str(log), model_id="toy")
    with pytest.raises(ValueError, match="another run"):
        certify_dataset(make_sampler(), x, y, **dict(KW, n0=60), counts_log=str(log), model_id="toy")


def test_corrupt_row_in_the_middle_is_refused(tmp_path):
    x, y = make_data(6)
    out = tmp_path / "r.tsv"
    certify_dataset(make_sampler(), x, y, **KW, out=str(out), model_id="toy", limit=4)
    lines = out.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace("1\t", "7\t", 1)  # idx 1 -> 7: out of order
    out.write_text("".join(lines))
    with pytest.raises(ValueError, match="corrupt"):
        certify_dataset(make_sampler(), x, y, **KW, out=str(out), model_id="toy")


def test_probe_fingerprint_distinguishes_models(tmp_path):
    """Without a model_id, a sampler is fingerprinted by its counts on a probe: another model is refused."""
    x, y = make_data(3)
    out = tmp_path / "r.tsv"
    certify_dataset(make_sampler(), x, y, **KW, out=str(out))
    other = ArraySampler(lambda z: -_logits(z), M, sigma=SIGMA, batch_size=500)
    with pytest.raises(ValueError, match="model"):
        certify_dataset(other, x, y, **KW, out=str(out))
    certify_dataset(make_sampler(), x, y, **KW, out=str(out))  # the same model resumes


# ------------------------------------------------------------------------------------------- recertify

METHODS = [(red, rad) for rad in ("Rmono", "R2", "R1") for red in ("cohen", "bonferroni", "cpm", "exact")
           if not (rad == "Rmono" and red != "cohen")]  # Rmono is defined with cohen only (radius.certify)


@pytest.mark.parametrize("reduction, radius", METHODS)
def test_recertify_equals_direct_run(tmp_path, reduction, radius):
    x, y = make_data(6)
    log = tmp_path / "c.jsonl"
    certify_dataset(make_sampler(), x, y, **KW, counts_log=str(log), model_id="toy")  # default method
    direct = tmp_path / "direct.tsv"
    certs_d = certify_dataset(make_sampler(), x, y, **dict(KW, reduction=reduction, radius=radius), out=str(direct),
                              model_id="toy")
    again = tmp_path / "re.tsv"
    certs_r = recertify(str(log), reduction=reduction, radius=radius, alpha=0.01, out=str(again))
    assert len(certs_r) == 6 and all(c.reduction == reduction and c.radius_kind == radius for c in certs_r)
    assert certs_r == certs_d
    assert strip_time(again) == strip_time(direct)


def test_recertify_bad_log(tmp_path):
    x, y = make_data(3)
    log = tmp_path / "c.jsonl"
    certify_dataset(make_sampler(), x, y, **KW, counts_log=str(log), model_id="toy")
    with pytest.raises(ValueError, match="radius"):
        recertify(str(log), radius="R7")
    with pytest.raises(ValueError, match="reduction"):
        recertify(str(log), reduction="holm")
    lines = log.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["selection"] = rec["selection"][:-1]  # selection with a different class count
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], json.dumps(rec)]) + "\n")
    with pytest.raises(ValueError, match="class"):
        recertify(str(bad), reduction="bonferroni")
    notalog = tmp_path / "x.jsonl"
    notalog.write_text('{"idx": 0}\n')
    with pytest.raises(ValueError, match="not a confbounds-counts"):
        recertify(str(notalog))


# ------------------------------------------------------------------------------------------- bad input

def test_bad_input_clear_errors(tmp_path):
    x, y = make_data(4)
    s = make_sampler()
    with pytest.raises(ValueError, match="labels"):
        certify_dataset(s, x, y[:3], **KW)
    with pytest.raises(ValueError, match="labels"):
        certify_dataset(s, x, np.array([0, 1, 2, M]), **KW)
    with pytest.raises(ValueError, match="labels"):
        certify_dataset(s, x, y.reshape(2, 2), **KW)
    with pytest.raises(ValueError, match="inputs"):
        certify_dataset(s, np.zeros((0, D)), np.zeros(0, dtype=int), **KW)
    with pytest.raises(ValueError, match="non-finite"):
        certify_dataset(s, np.full((4, D), np.nan), y, **KW)
    for bad_sigma in (0.0, -0.5, float("nan")):
        with pytest.raises(ValueError, match="sigma"):
            certify_dataset(s, x, y, **dict(KW, sigma=bad_sigma))
    with pytest.raises(ValueError, match="sigma"):
        certify_dataset(s, x, y, **dict(KW, sigma=0.25))  # not the sampler's noise level
    with pytest.raises(ValueError, match="radius"):
        certify_dataset(s, x, y, **dict(KW, radius="R3"))
    with pytest.raises(ValueError, match="reduction"):
        certify_dataset(s, x, y, **dict(KW, reduction="holm"))
    with pytest.raises(ValueError, match="not defined with"):
        certify_dataset(s, x, y, **dict(KW, reduction="exact", radius="Rmono"))
    with pytest.raises(ValueError, match="n0"):
        certify_dataset(s, x, y, **dict(KW, n0=0))
    with pytest.raises(ValueError, match="limit"):
        certify_dataset(s, x, y, **KW, limit=5)
    with pytest.raises(ValueError, match="mode"):
        certify_dataset(s, x, y, **KW, mode="soft")
    with pytest.raises(ValueError, match="counts log applies only"):
        certify_dataset(s, x, y, **KW, mode="scores", counts_log=str(tmp_path / "c.jsonl"))
    # a sampler whose input shape does not fit the data: the sampler's own error propagates
    with pytest.raises(ValueError):
        certify_dataset(s, np.zeros((4, D + 1)), y, **KW)
    assert not os.path.exists(tmp_path / "c.jsonl")


def test_bad_sampler_output_detected():
    class Broken(RecordingSampler):
        def counts(self, x, n, seed):
            c = self.inner.counts(x, n, seed)
            return c[:-1]  # drops a class

    x, y = make_data(2)
    with pytest.raises(ValueError, match="sampler returned invalid"):
        certify_dataset(Broken(make_sampler()), x, y, **KW)


def test_progress_bar_is_tqdm_on_stderr(tmp_path, capsys):
    """The one progress bar (tqdm) shows the count; disabled, it writes nothing."""
    x, y = make_data(3)
    certify_dataset(make_sampler(), x, y, **dict(KW, progress=True))
    err = capsys.readouterr().err
    assert "3/3" in err and "certify" in err
    certify_dataset(make_sampler(), x, y, **KW)
    assert capsys.readouterr().err == ""


def test_overlap_gives_identical_certificates(tmp_path):
    """Bounds computed in the worker thread while the next input is sampled equal the inline order's."""
    x, y = make_data(6)
    a = certify_dataset(make_sampler(), x, y, **dict(KW, reduction="exact"), out=str(tmp_path / "a.tsv"))
    b = certify_dataset(make_sampler(), x, y, **dict(KW, reduction="exact"), out=str(tmp_path / "b.tsv"),
                        overlap=False)
    assert len(a) == 6 and a == b
    assert strip_time(tmp_path / "a.tsv") == strip_time(tmp_path / "b.tsv")


def test_certificates_with_nan_fields_compare_equal_after_pickling():
    """A trinomial certificate (NaN p_a_lower) equals its pickled copy (as results from a Ray actor are),
    with equal hashes; a different radius is still different."""
    import dataclasses
    import pickle

    from radius.certificate import certify

    c = certify(np.array([2, 95, 3]), np.array([10, 980, 10]), sigma=0.5)
    assert c.p_a_lower != c.p_a_lower  # NaN: the trinomial structure
    d = pickle.loads(pickle.dumps(c))
    assert d == c and hash(d) == hash(c)
    assert dataclasses.replace(d, radius=d.radius + 1e-9) != c
    from radius.sequential import SequentialCertificate

    fields = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)}
    s = SequentialCertificate(**fields, decisions={0.5: "certified"}, forward_passes=1100)
    t = pickle.loads(pickle.dumps(s))
    assert t == s and hash(t) == hash(s)  # hashable although `decisions` is a dict
    assert dataclasses.replace(t, decisions={0.5: "futile"}) != s


def test_scores_mode_soft_smoothing_and_resume(tmp_path):
    """mode="scores": score matrices (softmax) go to certify; the TSV resumes like in counts mode."""
    x, y = make_data(5)
    soft = ArraySampler(_logits, M, sigma=SIGMA, batch_size=500, simplex="softmax")
    kw = dict(KW, n=300, reduction="bonferroni", radius="R2", mode="scores")
    full, part = tmp_path / "full.tsv", tmp_path / "part.tsv"
    certs = certify_dataset(soft, x, y, **kw, out=str(full), model_id="soft")
    assert all(c.kind == "scores" for c in certs)
    a, b = input_seeds(0, 2)
    direct = certify(soft.scores(x[2], 50, a), soft.scores(x[2], 300, b), sigma=SIGMA, alpha=0.01,
                     reduction="bonferroni", radius="R2")
    assert certs[2] == direct
    certify_dataset(soft, x, y, **kw, out=str(part), model_id="soft", limit=2)
    again = certify_dataset(soft, x, y, **kw, out=str(part), model_id="soft")
    assert again[:2] == [None, None] and again[2:] == certs[2:]  # kept rows have no stored samples
    assert strip_time(part) == strip_time(full)
    # counts mode on the same file is another configuration
    with pytest.raises(ValueError, match="mode"):
        certify_dataset(soft, x, y, **dict(kw, mode="counts"), out=str(part), model_id="soft")


def test_two_writers_on_one_file_are_refused(tmp_path):
    from radius.run import files

    cfg = {"model": "toy", "n": 1}
    f, rows = files.open_tsv(str(tmp_path / "r.tsv"), cfg)
    try:
        with pytest.raises(ValueError, match="another process"):
            files.open_tsv(str(tmp_path / "r.tsv"), cfg)
    finally:
        f.close()
    g, rows = files.open_tsv(str(tmp_path / "r.tsv"), cfg)  # free again once closed
    g.close()
    assert rows == []


def test_iterable_of_pairs_and_array_likes(tmp_path):
    """The Python API takes any array-like of inputs with labels, or an iterable of (x, y) pairs."""
    x, y = make_data(4)
    a = certify_dataset(make_sampler(), x, y, **KW)
    b = certify_dataset(make_sampler(), [(list(xi), int(yi)) for xi, yi in zip(x, y)], **KW)
    c = certify_dataset(make_sampler(), x.tolist(), y.tolist(), **KW)
    assert a == b == c
    with pytest.raises(ValueError, match="not an \\(x, y\\) pair"):
        certify_dataset(make_sampler(), [x[0], x[1]], **KW)


def test_resume_refuses_another_noise_or_backend(tmp_path):
    """Every spec field is in the metadata: a file of another noise kind (or backend) is not resumed."""
    from radius.engines.local import run_local
    from radius.run.spec import RunSpec

    x, y = make_data(3)
    x = np.clip(np.round(x * 16) / 16, -3, 4)  # on the 1/16 grid inside the default clip (-3, 4) of sigma 0.5
    out = str(tmp_path / "r.tsv")
    spec = RunSpec(sigma=SIGMA, n0=50, n=400, alpha=0.01, reduction="bonferroni", model="toy")
    run_local(spec, make_sampler(), x, y, out=out, progress=False)
    sound = ArraySampler(_logits, M, sigma=SIGMA, batch_size=500, noise="sound", grid="1/16")
    cases = [(dict(backend="onnx"), "backend", make_sampler())]
    import inspect

    if "noise_tv" in inspect.signature(certify).parameters:  # sound runs need certify(noise_tv=)
        cases.append((dict(noise="sound", grid="1/16"), "noise", sound))
    for change, key, sampler in cases:
        with pytest.raises(ValueError, match=f"another run.*{key}"):
            run_local(RunSpec(**{**dict(sigma=SIGMA, n0=50, n=400, alpha=0.01, reduction="bonferroni",
                                        model="toy"), **change}), sampler, x, y, out=out, progress=False)
