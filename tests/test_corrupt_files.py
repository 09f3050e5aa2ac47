"""A catalogue of corrupted counts logs and results TSVs: each must be an error naming the file and the line.

A small real run (NumPy linear model) writes a valid TSV and counts log; each case edits one line of a copy
and reads it back through the entry points that read that kind of file: ``recertify`` (and ``certify``
resuming with the log) for counts logs, ``certify`` resuming the TSV and ``report``'s reader for TSVs.  None
may be accepted silently.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from backends.base import ArraySampler
from radius import certify_dataset, recertify
from radius.run.files import read_counts_log, read_tsv

M, D, SIGMA = 3, 4, 0.5
_W = np.random.default_rng(5).standard_normal((M, D))
KW = dict(sigma=SIGMA, n0=30, n=200, alpha=0.01, reduction="bonferroni", radius="R2", progress=False,
          model_id="toy")


def _sampler():
    return ArraySampler(lambda z: z @ _W.T, M, sigma=SIGMA, batch_size=100)


def _data():
    x = np.random.default_rng(6).standard_normal((4, D))
    return x, np.argmax(x @ _W.T, axis=1)


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    d = tmp_path_factory.mktemp("valid")
    x, y = _data()
    certify_dataset(_sampler(), x, y, out=str(d / "r.tsv"), counts_log=str(d / "c.jsonl"), **KW)
    return d


def _edit_line(path, lineno, fn):
    lines = path.read_text().split("\n")
    lines[lineno - 1] = fn(lines[lineno - 1])
    path.write_text("\n".join(lines))


def _rec(fn):
    """Edit a counts-log record (a JSON line) with ``fn(dict)``."""
    def edit(line):
        rec = json.loads(line)
        fn(rec)
        return json.dumps(rec, separators=(",", ":"))
    return edit


def _meta(fn):
    def edit(line):
        prefix, _, js = line.partition(" {")
        meta = json.loads("{" + js)
        fn(meta)
        return prefix + " " + json.dumps(meta, sort_keys=True, separators=(",", ":"))
    return edit


def _set(key, value):
    def f(d):
        d[key] = value
    return f


def _setcount(key, j, value):
    def f(d):
        d[key][j] = value
    return f


LOG_CASES = [
    # (name, line, edit, message part)
    ("count 1.5", 3, _rec(_setcount("estimation", 0, 1.5)), "must be integers, got 1.5"),
    ("count '7' (a string)", 3, _rec(_setcount("estimation", 1, "7")), "must be integers, got '7'"),
    ("count true", 4, _rec(_setcount("selection", 0, True)), "must be integers, got True"),
    ("estimation sum != n", 3, _rec(_setcount("estimation", 0, 0)), "must sum to 200"),
    ("selection sum != n0", 5, _rec(_setcount("selection", 2, 999)), "must sum to 30"),
    ("negative count", 2, _rec(_set("estimation", [-1, 101, 100])), "must be >= 0"),
    ("label == num_classes", 3, _rec(_set("label", M)), "out of range [0, 3)"),
    ("label negative", 2, _rec(_set("label", -1)), "out of range"),
    ("label '1' (a string)", 2, _rec(_set("label", "1")), "label must be an integer"),
    ("one class missing", 4, _rec(_set("selection", [15, 15])), "one entry per class (3)"),
    ("idx out of order", 3, _rec(_set("idx", 5)), "idx must be 1"),
    ("estimation key missing", 2, _rec(lambda d: d.pop("estimation")), "exactly the keys"),
    ("extra key", 2, _rec(_set("radius", 9.99)), "exactly the keys"),
    ("not JSON", 3, lambda line: line[:-3], "not valid JSON"),
    ("record is a list", 2, lambda line: "[1, 2]", "JSON object"),
    ("blank line in the middle", 3, lambda line: "", "not valid JSON"),
    # the metadata says n = 500: the first record (line 2) no longer fits it (the 0.099 -> 0.556 case of issue 11)
    ("header: n changed", 1, _meta(_set("n", 500)), "line 2: estimation counts must sum to 500"),
    ("header: num_classes removed", 1, _meta(lambda m: m.pop("num_classes")), "'num_classes'"),
    ("header: sigma a string", 1, _meta(_set("sigma", "0.5")), "'sigma'"),
    ("header: not JSON", 1, lambda line: line[:-1], "unreadable metadata"),
    ("header: another format", 1, lambda line: "# confbounds-certify/1 {}", "not a confbounds-counts/1 file"),
]

# lines of the TSV: 1 metadata, 2 header, 3.. rows (input 0 on line 3)
COL = {name: j for j, name in enumerate(
    "idx label predict radius correct time top runner_up p_a_lower p_b_upper margin_lower margin radius_kind "
    "reduction bound alpha n_tests sigma n0 n selection_counts estimation_counts".split())}


def _field(name, fn):
    def edit(line):
        f = line.split("\t")
        f[COL[name]] = fn(f[COL[name]])
        return "\t".join(f)
    return edit


def _counts_edit(fn):
    def g(v):
        c = [int(t) for t in v.split(",")]
        fn(c)
        return ",".join(str(t) for t in c)
    return g


TSV_RESUME_CASES = [
    ("radius edited to 9.99", 4, _field("radius", lambda v: "9.99"), "column 'radius' holds '9.99'"),
    ("prediction edited", 3, _field("predict", lambda v: str((int(v) + 1) % M)), "column 'predict'"),
    ("p_a_lower edited", 5, _field("p_a_lower", lambda v: "0.5"), "column 'p_a_lower'"),
    ("correct flipped", 3, _field("correct", lambda v: str(1 - int(v))), "column 'correct'"),
    ("label changed", 3, _field("label", lambda v: str((int(v) + 1) % M)), "differs from the data's label"),
    ("idx out of order", 4, _field("idx", lambda v: "7"), "idx must be 1"),
    ("estimation counts moved between classes", 3,
     _field("estimation_counts", _counts_edit(lambda c: c.__setitem__(0, c[0] + 1) or c.__setitem__(1, c[1] - 1)
                                              if c[1] > 0 else c.__setitem__(2, c[2] - 1))),
     "recomputing the row from its stored counts"),
    ("estimation sum != n", 3, _field("estimation_counts", _counts_edit(lambda c: c.__setitem__(0, c[0] + 5))),
     "must sum to 200"),
    ("selection count 1.5", 4, _field("selection_counts", lambda v: "1.5," + v.split(",", 1)[1]),
     "not a valid value"),
    ("a field missing", 3, lambda line: line.rsplit("\t", 1)[0], "fields"),
    ("header changed", 2, lambda line: line.replace("radius", "rad", 1), "header"),
    ("metadata seed changed", 1, _meta(_set("seed", 4)), "another run"),
]

TSV_READ_CASES = [
    ("radius not a number", 3, _field("radius", lambda v: "abc"), "not a valid value"),
    ("radius negative", 4, _field("radius", lambda v: "-1.0"), "is not a number >= 0"),
    ("radius nan", 4, _field("radius", lambda v: "nan"), "is not a number >= 0"),
    ("correct = 2", 5, _field("correct", lambda v: "2"), "correct must be 0 or 1"),
    ("label 1.5", 3, _field("label", lambda v: "1.5"), "not a valid value"),
]


def _copy(valid, tmp_path):
    for f in ("r.tsv", "c.jsonl"):
        shutil.copy(valid / f, tmp_path / f)
    return tmp_path / "r.tsv", tmp_path / "c.jsonl"


def test_the_catalogue_is_large_enough():
    assert len(LOG_CASES) + len(TSV_RESUME_CASES) + len(TSV_READ_CASES) >= 25


def test_the_valid_files_are_accepted(valid, tmp_path):
    tsv, log = _copy(valid, tmp_path)
    meta, recs = read_counts_log(str(log))
    assert len(recs) == 4 and meta["n"] == 200
    x, y = _data()
    again = certify_dataset(_sampler(), x, y, out=str(tsv), counts_log=str(log), **KW)
    assert len(again) == 4 and tsv.read_text() == (valid / "r.tsv").read_text()
    read_tsv(str(tsv))


@pytest.mark.parametrize("name,line,edit,msg", LOG_CASES, ids=[c[0] for c in LOG_CASES])
def test_corrupted_counts_log(valid, tmp_path, name, line, edit, msg):
    tsv, log = _copy(valid, tmp_path)
    _edit_line(log, line, edit)
    before = log.read_bytes()
    with pytest.raises(ValueError) as e:
        recertify(str(log), reduction="bonferroni", alpha=0.01)
    text = str(e.value)
    assert str(log) in text and (f"line {line}" in text or msg.startswith("line ")) and msg in text, text
    # resuming a run on the corrupted log is refused too (and the file is left as it was)
    x, y = _data()
    with pytest.raises(ValueError) as e2:
        certify_dataset(_sampler(), x, y, counts_log=str(log), **KW)
    assert str(log) in str(e2.value) and "line " in str(e2.value), str(e2.value)
    assert log.read_bytes() == before


@pytest.mark.parametrize("name,line,edit,msg", TSV_RESUME_CASES, ids=[c[0] for c in TSV_RESUME_CASES])
def test_corrupted_tsv_on_resume(valid, tmp_path, name, line, edit, msg):
    tsv, _ = _copy(valid, tmp_path)
    _edit_line(tsv, line, edit)
    before = tsv.read_bytes()
    x, y = _data()
    with pytest.raises(ValueError) as e:
        certify_dataset(_sampler(), x, y, out=str(tsv), **KW)
    text = str(e.value)
    assert str(tsv) in text and f"line {line}" in text and msg in text, text
    assert tsv.read_bytes() == before


@pytest.mark.parametrize("name,line,edit,msg", TSV_READ_CASES, ids=[c[0] for c in TSV_READ_CASES])
def test_corrupted_tsv_for_report(valid, tmp_path, name, line, edit, msg):
    tsv, _ = _copy(valid, tmp_path)
    _edit_line(tsv, line, edit)
    with pytest.raises(ValueError) as e:
        read_tsv(str(tsv))
    text = str(e.value)
    assert str(tsv) in text and f"line {line}" in text and msg in text, text


def test_a_partial_last_line_is_dropped_not_an_error(valid, tmp_path):
    """The one tolerated defect: a last line without newline (killed while writing it)."""
    tsv, log = _copy(valid, tmp_path)
    log.write_text(log.read_text()[:-10])
    tsv.write_text(tsv.read_text()[:-10])
    assert len(read_counts_log(str(log))[1]) == 3
    x, y = _data()
    certify_dataset(_sampler(), x, y, out=str(tsv), counts_log=str(log), **KW)
    assert tsv.read_text() .count("\n") == 6 and len(read_counts_log(str(log))[1]) == 4


# ------------------------------------------------------------------------------ sequential runs' files

@pytest.fixture(scope="module")
def valid_seq(tmp_path_factory):
    from radius.engines.sequential import certify_dataset_sequential

    d = tmp_path_factory.mktemp("seq")
    x, y = _data()
    certify_dataset_sequential(_sampler(), x, y, sigma=SIGMA, radii=[0.25], max_n=2000, n0=30, batch_size=100,
                               out=str(d / "s.tsv"), counts_log=str(d / "s.jsonl"), model_id="toy")
    return d


def _looks_edit(fn):
    return _rec(lambda d: fn(d["looks"]))


SEQ_LOG_CASES = [
    ("a look added", 3, _looks_edit(lambda v: v.append(v[-1])), "looks are logged"),
    ("a look removed", 2, _looks_edit(lambda v: v.pop() if len(v) > 1 else v.__setitem__(0, 0)), ""),
    ("successes edited", 4, _rec(lambda d: d["looks"].__setitem__(-1, d["looks"][-1] - 1)), ""),
    ("looks a string", 2, _rec(_set("looks", "1,2")), "looks must be a non-empty list of integers"),
]


@pytest.mark.parametrize("name,line,edit,msg", SEQ_LOG_CASES, ids=[c[0] for c in SEQ_LOG_CASES])
def test_corrupted_sequential_log(valid_seq, tmp_path, name, line, edit, msg):
    log = tmp_path / "s.jsonl"
    shutil.copy(valid_seq / "s.jsonl", log)
    recertify(str(log))  # the valid log replays
    _edit_line(log, line, edit)
    with pytest.raises(ValueError) as e:
        recertify(str(log))
    text = str(e.value)
    assert str(log) in text and f"line {line}" in text and msg in text, text


def test_edited_sequential_tsv_row_is_refused_on_resume(valid_seq, tmp_path):
    from radius.engines.sequential import certify_dataset_sequential

    tsv = tmp_path / "s.tsv"
    shutil.copy(valid_seq / "s.tsv", tsv)
    def stopped_by(line):  # column 25 of a sequential row (COLUMNS + p_a_upper, looks, stopped_by, decisions)
        f = line.split("\t")
        f[24] = "tolerance"
        return "\t".join(f)

    _edit_line(tsv, 4, stopped_by)
    x, y = _data()
    with pytest.raises(ValueError) as e:
        certify_dataset_sequential(_sampler(), x, y, sigma=SIGMA, radii=[0.25], max_n=2000, n0=30, batch_size=100,
                                   out=str(tsv), model_id="toy")
    assert str(tsv) in str(e.value) and "line 4" in str(e.value) and "replaying" in str(e.value), str(e.value)
