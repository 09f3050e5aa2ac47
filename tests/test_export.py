"""backends.export: torch -> ONNX once (cached by the model's hash), checked on a probe batch, else torch."""
import os
import shutil
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from backends import export  # noqa: E402
from backends.export import auto_sampler, export_onnx, module_hash, ort_session_options  # noqa: E402
from backends.torch_sampler import TorchSampler  # noqa: E402


def _net(seed=0, act=None):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), act or torch.nn.ReLU(), torch.nn.Linear(16, 3))


X = np.array([0.3, -0.2, 0.5, 0.1], dtype=np.float32)


@pytest.mark.parametrize("env", [
    {},
    {"CONFBOUNDS_CACHE_DIR": "/some/where"},
    {"XDG_CACHE_HOME": "/xdg/cache"},
    {"XDG_CACHE_HOME": "relative/ignored"},
])
def test_cache_dir_rule_matches_confbounds(monkeypatch, env):
    from confbounds import jitcache

    for k in ("CONFBOUNDS_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert export.user_cache_dir() == jitcache.user_cache_dir()
    assert export.CACHE_ENV == jitcache.CACHE_ENV
    if "CONFBOUNDS_CACHE_DIR" in env:
        assert export.onnx_cache_dir() == "/some/where/onnx"
    elif env.get("XDG_CACHE_HOME", "").startswith("/"):
        assert export.onnx_cache_dir() == "/xdg/cache/confbounds/onnx"
    elif os.name == "posix" and not export.sys.platform == "darwin":
        assert export.onnx_cache_dir() == os.path.expanduser("~/.cache/confbounds/onnx")


def test_hash_tracks_weights_structure_and_shape():
    a, b = _net(0), _net(0)
    assert module_hash(a, (4,)) == module_hash(b, (4,))
    assert module_hash(a, (4,)) != module_hash(a, (1, 4))
    with torch.no_grad():
        b[0].weight[0, 0] += 1e-7
    assert module_hash(a, (4,)) != module_hash(b, (4,))
    c = _net(0, act=torch.nn.Tanh())  # same weights, another layer
    assert [t.tolist() for t in c.state_dict().values()] == [t.tolist() for t in a.state_dict().values()]
    assert module_hash(a, (4,)) != module_hash(c, (4,))


def test_export_once_then_from_the_cache(tmp_path):
    net = _net(1)
    p1, cached1 = export_onnx(net, (4,), cache_dir=str(tmp_path))
    p2, cached2 = export_onnx(net, (4,), cache_dir=str(tmp_path))
    assert (cached1, cached2) == (False, True) and p1 == p2
    assert os.path.basename(p1) == module_hash(net, (4,)) + ".onnx"
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(p1)]  # no temporary file left behind
    net.train()
    export_onnx(_net(2), (4,), cache_dir=str(tmp_path))
    assert len(os.listdir(tmp_path)) == 2


def test_unwritable_cache_exports_to_memory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    data, cached = export_onnx(_net(1), (4,), cache_dir=str(blocker / "onnx"))
    assert isinstance(data, bytes) and len(data) > 100 and cached is False
    s = auto_sampler(_net(1), sigma=0.5, input_shape=(4,), cache_dir=str(blocker / "onnx"))
    assert s.backend == "onnx" and isinstance(s.onnx_model, bytes)


def test_auto_uses_onnx_and_matches_torch(tmp_path):
    net = _net(3)
    s = auto_sampler(net, sigma=0.5, input_shape=(4,), cache_dir=str(tmp_path), batch_size=300)
    assert type(s).__name__ == "OnnxSampler" and s.backend == "onnx"
    assert s.export_cached is False and 0.0 <= s.probe_max_abs_diff <= export.ATOL
    ref = TorchSampler(net, sigma=0.5, noise="numpy", device="cpu", batch_size=300, num_classes=3)
    np.testing.assert_array_equal(s.counts(X, 5000, 7), ref.counts(X, 5000, 7))
    again = auto_sampler(net, sigma=0.5, input_shape=(4,), cache_dir=str(tmp_path))
    assert again.backend == "onnx" and again.export_cached is True and again.onnx_model == s.onnx_model


def test_auto_with_normalize_matches_torch(tmp_path):
    net = _net(4)
    nrm = (np.full(4, 0.5, dtype=np.float32), np.full(4, 0.25, dtype=np.float32))
    s = auto_sampler(net, sigma=0.5, input_shape=(4,), cache_dir=str(tmp_path), normalize=nrm)
    ref = TorchSampler(net, sigma=0.5, noise="numpy", device="cpu", normalize=nrm, num_classes=3)
    assert s.backend == "onnx"
    np.testing.assert_array_equal(s.counts(X, 3000, 1), ref.counts(X, 3000, 1))


def test_wrong_cached_export_is_caught_by_the_probe(tmp_path):
    """A cached file that is not this model (here: another model's export) must not be used."""
    good, other = _net(5), _net(6)
    p, _ = export_onnx(other, (4,), cache_dir=str(tmp_path))
    shutil.copy(p, tmp_path / (module_hash(good, (4,)) + ".onnx"))
    with pytest.warns(RuntimeWarning, match="staying on torch: torch and onnxruntime logits differ"):
        s = auto_sampler(good, sigma=0.5, input_shape=(4,), cache_dir=str(tmp_path))
    assert type(s).__name__ == "TorchSampler" and s.backend == "torch" and s.noise == "numpy"
    assert s.export_cached is True and s.probe_max_abs_diff > export.ATOL


def test_export_failure_stays_on_torch(tmp_path, monkeypatch):
    def boom(module, shape):
        raise RuntimeError("unsupported operator aten::weird")

    monkeypatch.setattr(export, "_export_bytes", boom)
    with pytest.warns(RuntimeWarning, match="ONNX export failed .*aten::weird"):
        s = auto_sampler(_net(7), sigma=0.5, input_shape=(4,), cache_dir=str(tmp_path))
    assert s.backend == "torch" and s.probe_max_abs_diff is None


def test_cuda_device_stays_on_torch_without_export(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: pytest.fail("exported for a CUDA device"))
    monkeypatch.setattr("backends.torch_sampler.TorchSampler.__init__",
                        lambda self, module, **kw: setattr(self, "kw", kw))  # no GPU needed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = auto_sampler(_net(8), sigma=0.5, input_shape=(4,), device="cuda", cache_dir=str(tmp_path))
    assert s.backend == "torch" and s.kw["device"] == "cuda" and s.kw["noise"] == "numpy"


def test_bad_arguments_are_refused(tmp_path):
    net = _net(9)
    with pytest.raises(ValueError, match="noise='torch'"):
        auto_sampler(net, sigma=0.5, input_shape=(4,), noise="torch", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="input_shape"):
        auto_sampler(net, sigma=0.5, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="input_shape must be"):
        auto_sampler(net, sigma=0.5, input_shape=(0,), cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="probe must have shape"):
        auto_sampler(net, sigma=0.5, input_shape=(4,), probe=np.zeros((3, 5)), cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="atol"):
        auto_sampler(net, sigma=0.5, input_shape=(4,), atol=-1.0, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="torch.nn.Module"):
        auto_sampler("model.pt", sigma=0.5, input_shape=(4,), cache_dir=str(tmp_path))


def test_session_options_do_not_spin():
    so = ort_session_options()
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert so.inter_op_num_threads == 1 and so.intra_op_num_threads == 0


def test_load_sampler_backend_auto(tmp_path):
    from backends.loading import load_sampler
    from backends.models import DIGITS_FACTORY, default_model_path, load_digits_split

    pt = default_model_path(0.25, "pt")
    s = load_sampler(pt, sigma=0.25, factory=DIGITS_FACTORY, backend="auto", cache_dir=str(tmp_path), device="cpu")
    plain = load_sampler(pt, sigma=0.25, factory=DIGITS_FACTORY, noise="numpy", device="cpu")
    assert s.backend == "onnx" and s.model_info["format"] == "state_dict+factory"
    assert s.model_hash == plain.model_hash  # the identity is the model's, not the backend's
    x = load_digits_split("test")[0][0]
    np.testing.assert_array_equal(s.counts(x, 4000, 3), plain.counts(x, 4000, 3))
    onnx = load_sampler(default_model_path(0.25, "onnx"), sigma=0.25, backend="auto", device="cpu")
    assert type(onnx).__name__ == "OnnxSampler"
    with pytest.raises(ValueError, match="backend must be one of"):
        load_sampler(pt, sigma=0.25, factory=DIGITS_FACTORY, backend="tensorrt")
    with pytest.raises(ValueError, match="backend='onnx' needs an ONNX model"):
        load_sampler(pt, sigma=0.25, factory=DIGITS_FACTORY, backend="onnx")
    with pytest.raises(ValueError, match="backend='torch' needs a torch model"):
        load_sampler(default_model_path(0.25, "onnx"), sigma=0.25, backend="torch")
    assert type(load_sampler(pt, sigma=0.25, factory=DIGITS_FACTORY, backend="torch")).__name__ == "TorchSampler"
