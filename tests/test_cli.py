"""The `confbounds` command on the real shipped ONNX digits models (small --limit and --n)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radius import results as res
from radius.cli import main

REPO = Path(__file__).resolve().parents[1]


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_certify_recertify_report(tmp_path, capsys):
    out, log = tmp_path / "c.tsv", tmp_path / "c.jsonl"
    rc, so, se = run(["certify", "--limit", 6, "--n", 300, "--n0", 50, "--out", out, "--counts-log", log,
                      "--no-progress"], capsys)
    assert rc == 0, se
    assert "6 inputs: certified accuracy" in so
    cfg, cols = res.read_tsv(str(out))
    assert cfg["sigma"] == 0.25 and cfg["n"] == 300 and cfg["reduction"] == "exact" and cfg["radius"] == "R2"
    # the model is identified by the loader's identity of the shipped file (its SHA-256; no path)
    from backends.models import default_model_path
    from radius.run.model import model_identity

    assert cfg["model"] == model_identity(str(default_model_path(0.25))) and "path" not in cfg["model"]
    assert cfg["noise"] == "float" and cfg["backend"] is None
    assert cols["idx"].tolist() == list(range(6))
    # the shipped sigma=0.25 model is 98.9% accurate on clean test data; with n=300 most are certified
    assert cols["correct"].sum() >= 4

    out2 = tmp_path / "cohen.tsv"
    rc, so, se = run(["recertify", log, "--reduction", "cohen", "--radius", "Rmono", "--out", out2,
                      "--no-progress"], capsys)
    assert rc == 0, se
    _, cols2 = res.read_tsv(str(out2))
    assert set(cols2["reduction"]) == {"cohen"} and set(cols2["radius_kind"]) == {"Rmono"}
    assert cols2["estimation_counts"].tolist() == cols["estimation_counts"].tolist()

    png = tmp_path / "plot.png"
    rc, so, se = run(["report", out, out2, "--radii", 0, 0.5, "--plot", png], capsys)
    assert rc == 0, se
    assert "exact/R2" in so and "cohen/Rmono" in so and "acc@0.5" in so and "ACR" in so
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_certify_npz_data_and_torch_model(tmp_path, capsys):
    from backends.models import default_model_path, load_digits_split

    x, y = load_digits_split("test")
    data = tmp_path / "d.npz"
    np.savez(data, x=x[:3], y=y[:3])
    out = tmp_path / "t.tsv"
    rc, so, se = run(["certify", "--data", data, "--model", default_model_path(0.5, "pt"), "--sigma", 0.5,
                      "--factory", "backends.models:DigitsCNN",
                      "--n", 200, "--n0", 20, "--reduction", "cohen", "--radius", "Rmono", "--out", out,
                      "--counts-log", "none", "--no-progress"], capsys)
    assert rc == 0, se
    _, cols = res.read_tsv(str(out))
    assert cols["label"].tolist() == y[:3].tolist()
    assert not any(p.name.endswith(".jsonl") for p in tmp_path.iterdir())


@pytest.mark.parametrize("argv, message", [
    (["certify", "--sigma", "0"], "sigma"),
    (["certify", "--sigma", "-1"], "sigma"),
    (["certify", "--sigma", "0.3"], "sigma"),  # no shipped model for 0.3
    (["certify", "--reduction", "holm"], "reduction"),
    (["certify", "--radius", "R9"], "radius"),
    (["certify", "--n", "0"], "n=0"),
    (["certify", "--limit", "100000"], "limit"),
    (["certify", "--data", "nope.npz"], "nope.npz: no such file"),
    (["certify", "--data", "digits.csv"], "--data"),
    (["certify", "--model", "model.h5"], "--model"),
    (["certify", "--mode", "scores", "--simplex", "soft"], "simplex"),
    (["recertify", "missing.jsonl", "--out", "x.tsv"], "missing.jsonl: no such file"),
    (["report", "missing.tsv"], "missing.tsv: no such file"),
    (["certify", "--noise", "sound"], "noise='sound' needs grid"),
    (["certify", "--noise", "sound", "--grid", "0.3", "--reduction", "cohen", "--radius", "Rmono"],
     "not a multiple of the grid step 3/10"),
    (["certify", "--noise", "sound", "--grid", "abc", "--reduction", "cohen", "--radius", "Rmono"], "grid must be"),
    (["certify", "--grid", "1/16"], "--grid does not apply here"),
    (["certify", "--data", "x.npy"], "--labels"),
])
def test_bad_arguments_give_clear_errors(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    rc, so, se = run(argv + ["--no-progress"] if argv[0] == "certify" else argv, capsys)
    assert rc == 2
    assert "error:" in se and message in se
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_bad_npz_files(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "nokeys.npz", a=np.zeros(3))
    rc, _, se = run(["certify", "--data", "nokeys.npz", "--no-progress"], capsys)
    assert rc == 2 and "nokeys.npz: has no array 'x'" in se and "--x-key" in se
    np.savez(tmp_path / "shape.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.zeros(3, np.int64))
    rc, _, se = run(["certify", "--data", "shape.npz", "--no-progress"], capsys)
    assert rc == 2 and "labels" in se
    np.savez(tmp_path / "wrongx.npz", x=np.zeros((2, 1, 7, 7), np.float32), y=np.zeros(2, np.int64))
    rc, _, se = run(["certify", "--data", "wrongx.npz", "--n", "10", "--no-progress"], capsys)
    assert rc == 2 and "shape" in se
    np.savez(tmp_path / "labels.npz", x=np.zeros((2, 1, 8, 8), np.float32), y=np.array([0, 10]))
    rc, _, se = run(["certify", "--data", "labels.npz", "--no-progress"], capsys)
    assert rc == 2 and "labels" in se


def test_demo_small(tmp_path, capsys):
    rc, so, se = run(["demo", "--out-dir", tmp_path / "demo", "--limit", 8, "--n", 200, "--n0", 30,
                      "--no-progress"], capsys)
    assert rc == 0, se
    from radius.demo import methods

    pairs = methods()
    assert len(pairs) == 9  # 4 reductions x (R2, R1) + cohen/Rmono
    for red, rad in pairs:
        assert f"{red}/{rad}" in so
        assert (tmp_path / "demo" / f"sigma0.25_n200_{red}_{rad}.tsv").exists()
        assert (tmp_path / "demo" / f"sigma0.5_n200_{red}_{rad}.tsv").exists()
    assert "sigma=0.25" in so and "sigma=0.5" in so
    assert (tmp_path / "demo" / "certified_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "demo" / "table.md").read_text().count("\n") == 2 + 2 * 9
    # every method saw the same counts: one log per noise level, sampled once
    logs = sorted(p.name for p in (tmp_path / "demo").glob("counts_*.jsonl"))
    assert logs == ["counts_sigma0.25_n200.jsonl", "counts_sigma0.5_n200.jsonl"]
    # recertifying in background processes (default) or in order in this process (--workers 0): same results
    rc, so0, se = run(["demo", "--out-dir", tmp_path / "seq", "--limit", 8, "--n", 200, "--n0", 30, "--workers", 0,
                       "--no-progress"], capsys)
    assert rc == 0, se
    assert (tmp_path / "seq" / "table.md").read_text() == (tmp_path / "demo" / "table.md").read_text()
    for p in (tmp_path / "demo").glob("sigma*.tsv"):
        a = [ln.split("\t")[:5] + ln.split("\t")[6:] for ln in p.read_text().splitlines()]
        b = [ln.split("\t")[:5] + ln.split("\t")[6:] for ln in (tmp_path / "seq" / p.name).read_text().splitlines()]
        assert a == b, p.name


def test_console_script_entry_point(tmp_path):
    """`python -m radius --help` and the `confbounds` console script both reach radius.cli.main."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "radius", "--help"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "certify" in r.stdout and "demo" in r.stdout
    r = subprocess.run([sys.executable, "-m", "radius", "certify", "--sigma", "0", "--no-progress"],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 2 and "sigma" in r.stderr


def test_certify_scores_mode_softmax(tmp_path, capsys):
    out = tmp_path / "soft.tsv"
    rc, so, se = run(["certify", "--mode", "scores", "--simplex", "softmax", "--limit", 2, "--n", 200, "--n0", 20,
                      "--reduction", "bonferroni", "--bound", "bernstein", "--out", out, "--no-progress"], capsys)
    assert rc == 0, se
    cfg, cols = res.read_tsv(str(out))
    assert cfg["mode"] == "scores" and cfg["simplex"] == "softmax"
    assert cols["estimation_counts"].tolist() == ["", ""]  # no counts in scores mode
    rc, _, se = run(["certify", "--mode", "scores", "--simplex", "sparsemax", "--limit", 2, "--n", 200, "--n0", 20,
                     "--reduction", "bonferroni", "--bound", "bernstein", "--out", out, "--no-progress"], capsys)
    assert rc == 2 and "simplex" in se  # another configuration on the same file


def test_npz_keys_and_npy_pairs(tmp_path, capsys):
    """--data reads an .npz with chosen keys, or an .npy of inputs with an .npy of labels (--labels)."""
    from backends.models import load_digits_split

    x, y = load_digits_split("test")
    np.savez(tmp_path / "k.npz", images=x[:3], targets=y[:3])
    np.save(tmp_path / "x.npy", x[:3])
    np.save(tmp_path / "y.npy", y[:3])
    common = ["--n", 100, "--n0", 20, "--reduction", "cohen", "--radius", "Rmono", "--counts-log", "none",
              "--no-progress"]
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    rc, _, se = run(["certify", "--data", tmp_path / "k.npz", "--x-key", "images", "--y-key", "targets",
                     "--out", a, *common], capsys)
    assert rc == 0, se
    rc, _, se = run(["certify", "--data", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--out", b, *common],
                    capsys)
    assert rc == 0, se
    ca, cb = res.read_tsv(str(a)), res.read_tsv(str(b))
    assert ca[0]["data"] == cb[0]["data"]  # the same arrays: the same data identity
    assert ca[1]["radius"].tolist() == cb[1]["radius"].tolist()
    np.save(tmp_path / "y2.npy", y[:2])
    rc, _, se = run(["certify", "--data", tmp_path / "x.npy", "--labels", tmp_path / "y2.npy", *common], capsys)
    assert rc == 2 and "x.npy" in se and "labels must have shape" in se


def test_file_system_errors_are_clean(tmp_path, capsys):
    """A bad output path is a one-line error with exit status 2, never a traceback."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    common = ["--limit", 2, "--n", 100, "--n0", 20, "--no-progress"]
    cases = [
        (["--out", tmp_path / "afile" / "r.tsv", "--counts-log", "none"], "afile"),
        (["--out", tmp_path / "adir", "--counts-log", "none"], "is a directory"),
        (["--out", tmp_path / "r.tsv", "--counts-log", tmp_path / "afile" / "c.jsonl"], "afile"),
        (["--out", ro / "r.tsv", "--counts-log", "none"], "ro"),
    ]
    try:
        for extra, msg in cases:
            rc, _, se = run(["certify", *common, *extra], capsys)
            if extra[1] == ro / "r.tsv" and os.access(ro, os.W_OK):
                continue  # running as a user who may write anyway (root): nothing to refuse
            assert rc == 2, (extra, se)
            assert "confbounds certify: error:" in se and msg in se and "Traceback" not in se, se
        rc, _, se = run(["report", tmp_path / "adir"], capsys)
        assert rc == 2 and "is a directory" in se
        rc, _, se = run(["report", tmp_path / "afile", "--plot", tmp_path / "afile" / "p.png"], capsys)
        assert rc == 2 and "error:" in se and "Traceback" not in se
    finally:
        ro.chmod(0o700)


def test_header_only_files_of_a_failed_run_do_not_block_the_rerun(tmp_path, capsys):
    """A first run that fails before its first row leaves only preambles; the corrected rerun starts afresh."""
    out, log = tmp_path / "r.tsv", tmp_path / "c.jsonl"
    common = ["--n0", 20, "--out", out, "--counts-log", log, "--no-progress"]
    from radius.run import files
    from radius.run.spec import RunSpec

    # what a run killed (or failed) right after opening its files leaves: the preambles of another configuration
    spec = RunSpec(sigma=0.25, n=50, n0=20)
    out.write_text(files.meta_line(files.TSV_FORMAT, spec.metadata()) + "\t".join(files.COLUMNS) + "\n")
    log.write_text(files.meta_line(files.LOG_FORMAT, spec.sampling_metadata()))
    rc, so, se = run(["certify", "--limit", 2, "--n", 100, *common], capsys)
    assert rc == 0, se
    cfg, cols = res.read_tsv(str(out))
    assert cfg["n"] == 100 and cols["idx"].tolist() == [0, 1]
    # with a row in it, the file of another configuration is refused
    rc, _, se = run(["certify", "--limit", 2, "--n", 120, *common], capsys)
    assert rc == 2 and "another run" in se and "n: file has 100, this run has 120" in se


def test_sequential_is_an_ordinary_run(tmp_path, capsys):
    """--sequential writes the results TSV with metadata and a counts log; recertify replays it and report reads
    it; a fixed-n method on its counts is refused (optional stopping)."""
    out, log = tmp_path / "s.tsv", tmp_path / "s.jsonl"
    rc, so, se = run(["certify", "--sequential", "--radii", 0.25, 0.5, "--max-n", 2000, "--limit", 4,
                      "--out", out, "--counts-log", log, "--no-progress"], capsys)
    assert rc == 0, se
    cfg, cols = res.read_tsv(str(out))
    assert cfg["sequential"]["radii"] == [0.25, 0.5] and cfg["model"]["sha256"] and cfg["data"]
    assert cols["idx"].tolist() == [0, 1, 2, 3] and "decisions" in cols
    rep = tmp_path / "replay.tsv"
    rc, _, se = run(["recertify", log, "--out", rep, "--no-progress"], capsys)
    assert rc == 0, se
    assert [ln.split("\t")[:5] + ln.split("\t")[6:] for ln in rep.read_text().splitlines()] == \
           [ln.split("\t")[:5] + ln.split("\t")[6:] for ln in out.read_text().splitlines()]
    rc, _, se = run(["recertify", log, "--reduction", "cohen", "--out", tmp_path / "x.tsv"], capsys)
    assert rc == 2 and "optional stopping" in se
    rc, so, se = run(["report", out], capsys)
    assert rc == 0 and "cohen/Rmono" in so


def test_model_flags_are_forwarded_to_the_loader(tmp_path, capsys, monkeypatch):
    """--input-shape, --num-classes, --normalize, --factory reach backends.loading.load_sampler; --noise and
    --backend only when not the default; a value the loader refuses is a clean error."""
    import backends.loading as loading

    seen = {}
    real = loading.load_sampler

    def spy(model, **kw):
        seen.clear()
        seen.update(kw)
        kw = {k: v for k, v in kw.items() if k not in ("noise", "backend", "factory")}
        return real(model, **kw)

    monkeypatch.setattr(loading, "load_sampler", spy)
    from backends.models import default_model_path

    model = str(default_model_path(0.25))
    common = ["--model", model, "--limit", 1, "--n", 50, "--n0", 10, "--counts-log", "none", "--no-progress",
              "--reduction", "cohen", "--radius", "Rmono"]
    rc, _, se = run(["certify", *common, "--out", tmp_path / "a.tsv", "--num-classes", 10,
                     "--normalize", "0.0", "1.0"], capsys)
    assert rc == 0, se
    assert seen["num_classes"] == 10 and seen["normalize"] == (0.0, 1.0) and seen["input_shape"] == (1, 8, 8)
    assert "noise" not in seen and "backend" not in seen  # defaults are not forwarded
    rc, _, se = run(["certify", *common, "--out", tmp_path / "b.tsv", "--input-shape", 1, 8, 8,
                     "--normalize", "0,0", "1,1", "--noise", "sound", "--grid", "1/16", "--clip", "-1", "2",
                     "--backend", "onnx"], capsys)
    assert seen["noise"] == "sound" and seen["backend"] == "onnx" and seen["normalize"] == ([0.0, 0.0], [1.0, 1.0])
    assert seen["grid"] == "1/16" and seen["clip"] == ("-1", "2")
    monkeypatch.setattr(loading, "load_sampler", real)
    with pytest.raises(SystemExit) as ex:  # argparse's choices: float, sound
        main([str(a) for a in ["certify", *common, "--out", tmp_path / "c.tsv", "--noise", "quantum"]])
    se = capsys.readouterr().err
    assert ex.value.code == 2 and "invalid choice: 'quantum'" in se
    rc, _, se = run(["certify", *common, "--out", tmp_path / "c.tsv", "--normalize", "a", "1"], capsys)
    assert rc == 2 and "--normalize MEAN" in se
