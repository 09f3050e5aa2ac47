"""Sound noise end to end: RunSpec fields, the loader bridge, the local engine and the CLI (issue 14 wiring).

The certificate tests need ``radius.certificate.certify(noise_tv=)`` (the threshold-rounding total
variation of ``backends.noise.SoundNoise.tv_bound``, theory §7); they are skipped, with that reason, on a
``certify`` without it.
"""
from __future__ import annotations

import inspect
from fractions import Fraction

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

HAS_TV = "noise_tv" in inspect.signature(certify).parameters
needs_tv = pytest.mark.skipif(not HAS_TV, reason="radius.certificate.certify has no noise_tv= keyword yet "
                                                 "(the lead adds it when merging the 'exact' branch)")

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
    (dict(noise="sound", grid="1/16"), "reduction='exact' and radius='R2' is refused"),
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


@needs_tv
def test_certify_dataset_subtracts_the_sampler_tv():
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
    # recompute without the shift: the run's bound is exactly tv lower (float subtraction of a CP bound)
    from radius.run.spec import input_seeds

    for i, c in enumerate(certs):
        s_sel, s_est = input_seeds(0, i)
        raw = certify(sound.counts(x[i], 100, s_sel), sound.counts(x[i], 500, s_est), sigma=0.25,
                      reduction="cohen", radius="Rmono")
        # in exact arithmetic: the shift is at least tv (here tv = 5.6e-17 < ulp(p_a_lower) / 2, so a
        # round-to-nearest subtraction would not move the bound at all)
        assert Fraction(raw.p_a_lower) - Fraction(c.p_a_lower) >= Fraction(tv) > 0
        assert c.radius <= raw.radius


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

@needs_tv
def test_cli_sound_run_metadata_and_resume_refusal(tmp_path, capsys):
    out, log = tmp_path / "s.tsv", tmp_path / "s.jsonl"
    base = ["certify", "--limit", "3", "--n", "200", "--n0", "50", "--reduction", "cohen", "--radius", "Rmono",
            "--out", str(out), "--counts-log", str(log), "--no-progress"]
    assert main(base + ["--noise", "sound", "--grid", "1/16"]) == 0, capsys.readouterr().err
    cfg, cols = res.read_tsv(str(out))
    tv = SoundNoise(0.25, "1/16").tv_bound(64)  # the digits inputs have 64 coordinates, clip (-2, 3)
    assert cfg["noise"] == "sound" and cfg["grid"] == "1/16" and cfg["clip"] == ["-2", "3"]
    assert cfg["noise_tv"] == tv and cfg["noise_detail"]["grid"] == "1/16" and cfg["noise_detail"]["bits"] == 62
    # each p_a_lower is the Clopper-Pearson bound of its stored counts minus tv
    for sel, est, pa, rad in zip(cols["selection_counts"], cols["estimation_counts"], cols["p_a_lower"],
                                 cols["radius"]):
        raw = certify(str_to_counts(sel), str_to_counts(est), sigma=0.25, reduction="cohen", radius="Rmono")
        assert Fraction(raw.p_a_lower) - Fraction(pa) >= Fraction(tv) and rad <= r_mono(raw.p_a_lower, 0.25)
        assert raw.p_a_lower - pa < 1e-12  # and only that (tv = 2.2e-15, plus one ulp)
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


def test_cli_refuses_sound_without_a_grid_or_with_exact_r2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["certify", "--limit", "1", "--noise", "sound"]) == 2
    assert "needs grid" in capsys.readouterr().err
    assert main(["certify", "--limit", "1", "--noise", "sound", "--grid", "1/16"]) == 2
    assert "reduction='exact' and radius='R2' is refused" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
