"""Sound noise end to end: RunSpec fields, the loader bridge, the local engine and the CLI (issue 14 wiring).

Sound-noise certificates charge the threshold-rounding total variation of
``backends.noise.SoundNoise.tv_bound`` to alpha: with ``N = n0 + n`` samples every bound is computed at
``alpha - N * tv`` rounded down (``radius.certificate.certify(noise="sound", noise_tv=)``; docs/soundness.md).
"""
from __future__ import annotations


import numpy as np
import pytest

from backends.base import ArraySampler
from backends.noise import SoundNoise
from radius import results as res
from radius.certificate import certify
from radius.cli import main
from radius.radii import r_mono
from radius.run.files import str_to_counts
from radius.run.spec import RunSpec



def _charged(alpha, n_samples, tv):
    """alpha - n_samples * tv, rounded down: the level a sound-noise certificate computes its bounds at."""
    return float(np.nextafter(alpha - n_samples * tv, 0.0))

SOUND = dict(noise="sound", grid="1/16", reduction="cohen", radius="Rmono", n=200)


# ------------------------------------------------------------------------------------------------ the spec

def test_spec_records_grid_and_clip_exactly():
    s = RunSpec(sigma=0.25, **SOUND)
    assert s.grid == "1/16" and s.clip == ("-2", "3")  # backends.noise.default_clip(0.25) = (-2, 3)
    m = s.metadata()
    assert m["noise"] == "sound" and m["grid"] == "1/16" and m["clip"] == ["-2", "3"]
    assert RunSpec(sigma=0.25, **{**SOUND, "grid": 1 / 16, "clip": (0, 1)}).clip == ("0", "1")
    # a float run's metadata has no sound keys (older files still resume)
    assert not {"grid", "clip", "noise_tv", "noise_detail"} & set(RunSpec(sigma=0.25).metadata())


@pytest.mark.parametrize("kw,match", [
    (dict(grid="1/16"), "grid='1/16' applies only to noise='sound'"),
    (dict(clip=(0, 1)), "clip=.* applies only to noise='sound'"),
    (dict(noise_tv=1e-15), "noise_tv=.* applies only to noise='sound'"),
    (dict(noise="sound"), "needs grid"),
    (dict(noise="sound", grid="1/16", reduction="cohen", radius="Rmono", clip=(0.3, 1)), "not a multiple"),
    (dict(noise="sound", grid="1/16", reduction="cohen", radius="Rmono", clip=(0,)), "clip must be a pair"),
    (dict(noise="sound", grid="1/16", reduction="cohen", radius="Rmono", noise_tv=-1.0), "noise_tv"),
    (dict(noise="gaussian"), "noise must be one of"),
])
def test_spec_refuses(kw, match):
    with pytest.raises(ValueError, match=match):
        RunSpec(sigma=0.25, **kw)


def test_spec_refuses_sound_in_sequential_runs():
    from radius.run.spec import SequentialSpec

    with pytest.raises(ValueError, match="does not apply to a sequential run"):
        RunSpec(sigma=0.25, noise="sound", grid="1/16", sequential=SequentialSpec(radii=(0.5,)))


def test_counts_metadata_round_trip_keeps_the_noise():
    s = RunSpec(sigma=0.25, **SOUND).with_model(noise_tv=2e-15, noise_detail=SoundNoise(0.25, "1/16").describe())
    import json

    meta = json.loads(json.dumps(s.sampling_metadata()))
    r = RunSpec.from_counts_metadata(meta, reduction="cpm", radius="R2")
    assert (r.noise, r.grid, r.clip, r.noise_tv) == ("sound", "1/16", ("-2", "3"), 2e-15)
    assert r.cert_kwargs()["noise_tv"] == 2e-15


# ----------------------------------------------------------------------------------- sampler and engine

def _linear(z):
    z = z.reshape(len(z), -1)
    return np.stack([z.mean(axis=1), 0.5 - z.mean(axis=1)], axis=1)


def test_sampler_noise_must_match_the_spec():
    from radius.engines.local import run_local

    x, y = np.full((2, 8), 0.5), np.array([0, 0])
    sound = ArraySampler(_linear, 2, sigma=0.25, noise="sound", grid="1/16", clip=(0, 1))
    with pytest.raises(ValueError, match="draws sound noise"):
        run_local(RunSpec(sigma=0.25, n=100, reduction="cohen", radius="Rmono"), sound, x, y, progress=False)
    other = RunSpec(sigma=0.25, **{**SOUND, "clip": (-2, 3)})
    with pytest.raises(ValueError, match="clip"):
        run_local(other, sound, x, y, progress=False)
    floaty = ArraySampler(_linear, 2, sigma=0.25)
    with pytest.raises(ValueError, match="build it with noise='sound'"):
        run_local(RunSpec(sigma=0.25, **SOUND), floaty, x, y, progress=False)


def test_certify_dataset_charges_the_sampler_tv_to_alpha():
    from confbounds import clopper_pearson
    from radius import certify_dataset

    x, y = np.full((2, 8), 0.5), np.array([0, 0])
    sound = ArraySampler(_linear, 2, sigma=0.25, noise="sound", grid="1/16", clip=(0, 1))
    tv = sound.sound.tv_bound(8)
    assert tv > 0
    certs = certify_dataset(sound, x, y, sigma=0.25, n=500, reduction="cohen", radius="Rmono", progress=False)
    plain = certify_dataset(sound, x, y, sigma=0.25, n=500, reduction="cohen", radius="Rmono", progress=False,
                            overlap=False)
    for c, p in zip(certs, plain):
        assert c == p
    from radius.run.spec import input_seeds

    level = _charged(0.001, 100 + 500, tv)
    assert 0 < 0.001 - level < 1e-12
    for i, c in enumerate(certs):
        assert c.noise == "sound" and c.noise_tv == tv and c.alpha == 0.001 and c.alpha_each == level
        s_sel, s_est = input_seeds(0, i)
        est = sound.counts(x[i], 500, s_est)
        raw = certify(sound.counts(x[i], 100, s_sel), est, sigma=0.25, reduction="cohen", radius="Rmono")
        # the bound is the Clopper-Pearson bound at the charged level, never above the float-noise one
        assert c.p_a_lower == clopper_pearson(int(est[c.top]), 500, level)
        assert c.p_a_lower <= raw.p_a_lower and c.radius <= raw.radius


def test_open_sampler_forwards_sound_noise_to_torch_and_onnx():
    pytest.importorskip("torch")
    from backends.models import DIGITS_FACTORY, default_model_path
    from radius.run.model import noise_fields, open_sampler

    spec = RunSpec(sigma=0.25, **SOUND)
    onnx = default_model_path(0.25)
    pt = str(default_model_path(0.25, "pt"))
    for path, kw in ((str(onnx), {}), (pt, {"factory": DIGITS_FACTORY})):
        s, _ = open_sampler(path, spec, batch_size=100, device="cpu", input_shape=(1, 8, 8), **kw)
        assert s.sound is not None and s.sound.describe()["grid"] == "1/16", path
        f = noise_fields(s, spec, 64)
        assert f["noise_tv"] == SoundNoise(0.25, "1/16").tv_bound(64) and f["noise_detail"]["clip"] == ["-2", "3"]
    s, _ = open_sampler(pt, RunSpec(sigma=0.25), device="cpu", input_shape=(1, 8, 8), factory=DIGITS_FACTORY)
    assert s.sound is None and s.noise == "numpy"  # float noise: NumPy's stream, as before


# ------------------------------------------------------------------------------------------------- the CLI

def test_cli_sound_run_metadata_and_resume_refusal(tmp_path, capsys):
    out, log = tmp_path / "s.tsv", tmp_path / "s.jsonl"
    base = ["certify", "--limit", "3", "--n", "200", "--n0", "50", "--reduction", "cohen", "--radius", "Rmono",
            "--out", str(out), "--counts-log", str(log), "--no-progress"]
    assert main(base + ["--noise", "sound", "--grid", "1/16"]) == 0, capsys.readouterr().err
    cfg, cols = res.read_tsv(str(out))
    tv = SoundNoise(0.25, "1/16").tv_bound(64)  # the digits inputs have 64 coordinates, clip (-2, 3)
    assert cfg["noise"] == "sound" and cfg["grid"] == "1/16" and cfg["clip"] == ["-2", "3"]
    assert cfg["noise_tv"] == tv and cfg["noise_detail"]["grid"] == "1/16" and cfg["noise_detail"]["bits"] == 62
    # each p_a_lower is the Clopper-Pearson bound of its stored counts at alpha - (n0 + n) tv
    from confbounds import clopper_pearson

    level = _charged(0.001, 50 + 200, tv)
    for sel, est, pa, rad in zip(cols["selection_counts"], cols["estimation_counts"], cols["p_a_lower"],
                                 cols["radius"]):
        e = str_to_counts(est)
        raw = certify(str_to_counts(sel), e, sigma=0.25, reduction="cohen", radius="Rmono")
        top = int(np.argmax(str_to_counts(sel)))
        assert pa == clopper_pearson(int(e[top]), 200, level)
        assert pa <= raw.p_a_lower and rad <= r_mono(raw.p_a_lower, 0.25)
    text = out.read_text()
    capsys.readouterr()
    assert main(base + ["--noise", "sound", "--grid", "1/16"]) == 0  # same command: resumes, nothing to do
    assert out.read_text() == text
    for other in (["--noise", "float"], [], ["--noise", "sound", "--grid", "1/256"]):
        assert main(base + other) == 2
        err = capsys.readouterr().err
        assert "confbounds certify: error:" in err and "Traceback" not in err, err
        assert "noise" in err or "grid" in err, err
    assert out.read_text() == text


def test_cli_refuses_sound_without_a_grid(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["certify", "--limit", "1", "--noise", "sound"]) == 2
    assert "needs grid" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cli_sound_run_with_the_default_method(tmp_path, capsys):
    """exact/R2 (the default) under sound noise: the coupling charge applies to every reduction."""
    out = tmp_path / "e.tsv"
    assert main(["certify", "--limit", "2", "--n", "200", "--n0", "50", "--noise", "sound", "--grid", "1/16",
                 "--out", str(out), "--counts-log", str(tmp_path / "e.jsonl"), "--no-progress"]) == 0, \
        capsys.readouterr().err
    cfg, cols = res.read_tsv(str(out))
    assert cfg["noise"] == "sound" and len(cols["radius"]) == 2


def test_certify_noise_arguments_are_checked():
    sel, est = np.array([2, 95, 3]), np.array([10, 980, 10])
    with pytest.raises(ValueError, match="applies only to noise='sound'"):
        certify(sel, est, sigma=0.5, noise_tv=1e-16)
    with pytest.raises(ValueError, match="noise must be one of"):
        certify(sel, est, sigma=0.5, noise="gaussian")
    with pytest.raises(ValueError, match="noise_tv must be a number"):
        certify(sel, est, sigma=0.5, noise="sound", noise_tv=1.5)
    with pytest.raises(ValueError, match="no level is left"):
        certify(sel, est, sigma=0.5, noise="sound", noise_tv=1e-6)
    c = certify(sel, est, sigma=0.5, noise="sound", noise_tv=1e-12)
    f = certify(sel, est, sigma=0.5)
    assert c.noise == "sound" and f.noise == "float" and c.margin_lower <= f.margin_lower
