"""Every flag of ``confbounds certify`` either applies or is refused: the catalogue of inapplicable combinations.

Every optional flag is tried on top of every base command line below.  Where a rule of
``radius.cli.INAPPLICABLE`` says the flag does not apply, ``main`` must exit with status 2 and an error
naming the flag, before loading any model or data; everywhere else the flag check must pass.
"""
from __future__ import annotations

import pytest

from radius.cli import INAPPLICABLE, build_parser, check_applicable, main

#: A value for every optional flag of certify (flag -> argv tail).
VALUES = {
    "n": ["--n", "500"], "reduction": ["--reduction", "cohen"], "radius": ["--radius", "R1"],
    "bound": ["--bound", "betting"], "lipschitz": ["--lipschitz", "1.0"], "output_range": ["--output-range", "1"],
    "mode": ["--mode", "scores"], "radii": ["--radii", "0.5"], "tolerance": ["--tolerance", "0.1"],
    "max_n": ["--max-n", "1000"], "seq_bound": ["--seq-bound", "cp-looks"], "address": ["--address", "auto"],
    "workers": ["--workers", "2"], "gpus_per_worker": ["--gpus-per-worker", "0"],
    "cpus_per_worker": ["--cpus-per-worker", "1"], "chunk_size": ["--chunk-size", "2"],
    "simplex": ["--simplex", "softmax"], "temperature": ["--temperature", "2"],
    "counts_log": ["--counts-log", "c.jsonl"], "split": ["--split", "train"], "x_key": ["--x-key", "a"],
    "y_key": ["--y-key", "b"], "labels": ["--labels", "y.npy"], "factory": ["--factory", "m:f"],
    "input_shape": ["--input-shape", "1", "8", "8"], "num_classes": ["--num-classes", "10"],
    "normalize": ["--normalize", "0.5", "0.2"], "grid": ["--grid", "1/16"], "noise": ["--noise", "sound"], "clip": ["--clip", "-2", "3"],
}

BASES = [
    [],
    ["--sequential", "--radii", "0.5"],
    ["--sequential", "--tolerance", "0.1", "--seq-bound", "betting"],
    ["--mode", "scores"],
    ["--mode", "scores", "--simplex", "softmax"],
    ["--engine", "ray"],
    ["--engine", "ray", "--sequential", "--radii", "0.5"],
    ["--radius", "R1", "--reduction", "cpm"],
    ["--data", "d.npz"],
    ["--data", "d.npy", "--labels", "y.npy"],
    ["--model", "m.pt"],
    ["--noise", "sound", "--grid", "1/16", "--reduction", "cohen", "--radius", "Rmono"],
]


def _cases():
    ap = build_parser()
    bad, ok = [], []
    for base in BASES:
        for flag, tail in VALUES.items():
            if any(t in base for t in tail[:1]):
                continue  # the base already gives this flag
            argv = ["certify", *base, *tail]
            a = ap.parse_args(argv)
            rules = [why for k, cond, why in INAPPLICABLE if k == flag and cond(a)]
            (bad if rules else ok).append((argv, flag))
    return bad, ok


BAD, OK = _cases()


def test_every_rule_and_every_flag_is_exercised():
    assert {f for _, f in BAD} == {k for k, _, _ in INAPPLICABLE}, "each rule is hit at least once"
    assert set(VALUES) >= {k for k, _, _ in INAPPLICABLE}
    assert len(BAD) >= 60 and len(OK) >= 60


@pytest.mark.parametrize("argv,flag", BAD, ids=[" ".join(a[1:]) for a, _ in BAD])
def test_inapplicable_flag_is_an_error(argv, flag, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "confbounds certify: error: --" in err and "does not apply" in err, err
    assert not list(tmp_path.iterdir()), "nothing written"


@pytest.mark.parametrize("argv,flag", OK, ids=[" ".join(a[1:]) for a, _ in OK])
def test_applicable_flag_passes_the_check(argv, flag):
    check_applicable(build_parser().parse_args(argv))  # raises ValueError if any flag is refused


def test_sequential_needs_radii_or_tolerance(capsys):
    assert main(["certify", "--sequential"]) == 2
    assert "--sequential needs --radii and/or --tolerance" in capsys.readouterr().err
