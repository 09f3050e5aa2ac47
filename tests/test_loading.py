"""backends.loading: the one model loader, on every accepted format and on bad files."""
import hashlib
import sys
import textwrap
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from backends import load_module, load_sampler, model_identity  # noqa: E402
from backends.base import num_classes_of  # noqa: E402
from backends.loading import FORMATS  # noqa: E402
from backends.models import DIGITS_FACTORY, default_model_path, load_digits_split  # noqa: E402

SIGMA = 0.5
FACTORY_SRC = textwrap.dedent('''
    import torch

    def make_mlp():
        return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

    def make_wrong():
        return torch.nn.Sequential(torch.nn.Linear(6, 4))

    def make_not_module():
        return 42

    def make_raises():
        raise RuntimeError("boom")

    not_callable = 3
''')


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same MLP saved in every format, plus a factory module on sys.path."""
    d = tmp_path_factory.mktemp("models")
    (d / "byo_factories.py").write_text(FACTORY_SRC)
    sys.path.insert(0, str(d))
    m = _mlp().eval()
    paths = {"pickle": d / "mlp_pickled.pt", "torchscript": d / "mlp_script.pt", "state_dict": d / "mlp_state.pth",
             "onnx": d / "mlp.onnx"}
    torch.save(m, paths["pickle"])
    torch.jit.save(torch.jit.script(m), paths["torchscript"])
    torch.save(m.state_dict(), paths["state_dict"])
    torch.onnx.export(m, (torch.zeros(1, 6),), str(paths["onnx"]), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    (d / "garbage.pt").write_bytes(b"not a model at all")
    (d / "garbage.onnx").write_bytes(b"not a model at all")
    (d / "empty.onnx").write_bytes(b"")
    (d / "torch_as.onnx").write_bytes(paths["pickle"].read_bytes())
    (d / "model.h5").write_bytes(b"x")
    torch.save([1, 2, 3], d / "a_list.pt")
    torch.save({"epoch": 3}, d / "not_state.pt")
    yield d, paths, m
    sys.path.remove(str(d))


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


X = np.linspace(-1, 1, 6).astype(np.float32)


def test_every_format_gives_the_same_counts(files):
    d, paths, m = files
    # by default torch samplers draw the ONNX sampler's noise stream (backends.base.numpy_noisy_batches): the
    # same model gives the same counts in every format
    samplers = {
        "module": load_sampler(m, sigma=SIGMA, device="cpu"),
        "pickle": load_sampler(paths["pickle"], sigma=SIGMA, device="cpu"),
        "torchscript": load_sampler(str(paths["torchscript"]), sigma=SIGMA, device="cpu"),
        "state_dict+factory": load_sampler(paths["state_dict"], sigma=SIGMA, device="cpu",
                                           factory="byo_factories:make_mlp"),
        "onnx": load_sampler(paths["onnx"], sigma=SIGMA, device="cpu"),
    }
    assert all(s.noise == "numpy" for k, s in samplers.items() if k != "onnx")
    ref = samplers["module"].counts(X, 2000, 7)
    assert ref.sum() == 2000 and (ref > 0).sum() >= 2  # a non-degenerate reference
    for fmt, s in samplers.items():
        assert s.model_info["format"] == fmt
        c = s.counts(X, 2000, 7)
        assert c.tolist() == ref.tolist(), fmt
        assert s.num_classes == 3 and s.input_shape == (6,)
        assert s.sigma == SIGMA
    # identities: the file's SHA-256, the CLI's 16-digit prefix as model_hash
    for key, fmt in (("pickle", "pickle"), ("torchscript", "torchscript"), ("onnx", "onnx")):
        assert samplers[fmt].model_info == {"path": str(paths[key]), "sha256": _sha(paths[key]), "format": fmt}
        assert samplers[fmt].model_hash == _sha(paths[key])[:16]
        assert model_identity(paths[key]) == samplers[fmt].model_info
    info = model_identity(paths["state_dict"], factory="byo_factories:make_mlp")
    assert info == {"path": str(paths["state_dict"]), "sha256": _sha(paths["state_dict"]),
                    "format": "state_dict+factory"}
    assert set(i["format"] for i in [s.model_info for s in samplers.values()]) == set(FORMATS)


def test_noise_option_reaches_the_torch_sampler(files):
    _, paths, m = files
    dev = load_sampler(m, sigma=SIGMA, device="cpu", noise="torch")
    assert dev.noise == "float"  # "torch" is the alias of the device float stream (torch.randn)
    # the device stream is another (equally valid) draw: same total, generally other counts
    a, b = dev.counts(X, 2000, 7), load_sampler(m, sigma=SIGMA, device="cpu").counts(X, 2000, 7)
    assert a.sum() == b.sum() == 2000 and a.tolist() != b.tolist()
    with pytest.raises(ValueError, match="noise must be one of"):
        load_sampler(m, sigma=SIGMA, noise="bogus")


def test_module_identity_follows_the_weights():
    a, b = _mlp(), _mlp()
    assert model_identity(a) == model_identity(b)
    assert model_identity(a)["path"] is None and len(model_identity(a)["sha256"]) == 64
    with torch.no_grad():
        b[0].weight[0, 0] += 1e-6
    assert model_identity(a)["sha256"] != model_identity(b)["sha256"]


def test_class_count_from_one_forward_pass_and_lazy_input_shape(files):
    d, paths, m = files
    for p in (paths["pickle"], paths["torchscript"]):
        s = load_sampler(p, sigma=SIGMA, device="cpu")
        with pytest.raises(AttributeError, match="num_classes is not known yet"):
            s.num_classes
        assert num_classes_of(s, X) == 3  # one noise-free pass of the first data input
        assert s.input_shape == (6,)
        with pytest.raises(ValueError, match=r"x must have shape \(6,\).*got \(7,\)"):
            s.counts(np.zeros(7, np.float32), 10, 0)
        # given input_shape: the class count is found at construction
        assert load_sampler(p, sigma=SIGMA, device="cpu", input_shape=(6,)).num_classes == 3
        # the first counts call fixes the shape too
        s2 = load_sampler(p, sigma=SIGMA, device="cpu")
        s2.counts(X, 10, 0)
        assert s2.num_classes == 3 and s2.input_shape == (6,)
    # the ONNX graph's static input shape is used at construction
    so = load_sampler(paths["onnx"], sigma=SIGMA, device="cpu")
    assert so.num_classes == 3 and so.input_shape == (6,)
    with pytest.raises(ValueError, match="shape"):
        load_sampler(paths["onnx"], sigma=SIGMA, input_shape=(7,))


def test_num_classes_is_checked(files):
    d, paths, m = files
    with pytest.raises(ValueError, match="num_classes=4 but the ONNX graph output 'logits' has 3 classes"):
        load_sampler(paths["onnx"], sigma=SIGMA, num_classes=4)
    for p in (paths["pickle"], m):
        s = load_sampler(p, sigma=SIGMA, device="cpu", num_classes=4)
        with pytest.raises(ValueError, match="model output has 3 classes, expected num_classes=4"):
            s.counts(X, 10, 0)
        s = load_sampler(p, sigma=SIGMA, device="cpu", num_classes=4, input_shape=(6,))
        with pytest.raises(ValueError, match="model output has 3 classes, expected num_classes=4"):
            s.counts(X, 10, 0)
    assert load_sampler(paths["pickle"], sigma=SIGMA, device="cpu", num_classes=3).num_classes == 3


@pytest.mark.parametrize("name, match", [
    ("missing.pt", r"model file '.*missing.pt' does not exist"),
    ("model.h5", r"model file '.*model.h5' must end in one of \('.onnx', '.pt', '.pth'\)"),
    ("garbage.pt", r"model file '.*garbage.pt' is not a torch file"),
    ("garbage.onnx", r"model file '.*garbage.onnx' is not a valid ONNX model \(onnxruntime: "),
    ("empty.onnx", r"model file '.*empty.onnx' is empty"),
    ("torch_as.onnx", r"model file '.*torch_as.onnx' is not an ONNX model: it is a zip archive"),
    ("a_list.pt", r"model file '.*a_list.pt' holds a list, not a module or a state dict"),
    ("not_state.pt", r"model file '.*not_state.pt' holds a dict with keys \['epoch'\], not a module"),
    ("mlp_state.pth", r"holds a state dict \(weights only\); pass factory='package.module:callable'"),
])
def test_bad_files_give_a_clear_value_error(files, name, match):
    d, _, _ = files
    with pytest.raises(ValueError, match=match) as info:
        load_sampler(d / name, sigma=SIGMA, device="cpu")
    # no protobuf or unpickling traceback chained to it
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)


@pytest.mark.parametrize("factory, match", [
    ("byo_factories:make_wrong", r"the state dict in '.*' does not fit the module built by 'byo_factories:make_wrong'"),
    ("byo_factories:make_not_module", r"returned a int, not a torch.nn.Module"),
    ("byo_factories:make_raises", r"raised RuntimeError: boom"),
    ("byo_factories:not_callable", r"is not callable"),
    ("byo_factories:nope", r"module 'byo_factories' has no attribute 'nope'"),
    ("no_such_module_xyz:f", r"cannot import module 'no_such_module_xyz'"),
    ("byo_factories.make_mlp", r"factory must be 'package.module:callable'"),
    (":make_mlp", r"factory must be 'package.module:callable'"),
])
def test_bad_factories(files, factory, match):
    _, paths, _ = files
    with pytest.raises(ValueError, match=match):
        load_sampler(paths["state_dict"], sigma=SIGMA, device="cpu", factory=factory)


def test_factory_is_refused_where_it_does_not_apply(files):
    _, paths, m = files
    f = "byo_factories:make_mlp"
    with pytest.raises(ValueError, match="holds a pickled object, not a state dict; factory="):
        load_sampler(paths["pickle"], sigma=SIGMA, factory=f)
    with pytest.raises(ValueError, match="is a TorchScript module; factory="):
        load_sampler(paths["torchscript"], sigma=SIGMA, factory=f)
    with pytest.raises(ValueError, match="factory= applies only to torch state-dict files, not to the ONNX"):
        load_sampler(paths["onnx"], sigma=SIGMA, factory=f)
    with pytest.raises(ValueError, match="model is already a torch.nn.Module"):
        load_sampler(m, sigma=SIGMA, factory=f)
    with pytest.raises(ValueError, match="factory= applies only to state-dict files"):
        model_identity(paths["pickle"], factory=f)


def test_weights_only_first(files, monkeypatch):
    """State dicts are read with weights_only=True only; full unpickling only for a pickled module."""
    _, paths, _ = files
    calls = []
    real = torch.load

    def spy(*a, **k):
        calls.append(k.get("weights_only"))
        return real(*a, **k)

    monkeypatch.setattr(torch, "load", spy)
    load_sampler(paths["state_dict"], sigma=SIGMA, device="cpu", factory="byo_factories:make_mlp")
    assert calls == [True]
    calls.clear()
    load_sampler(paths["pickle"], sigma=SIGMA, device="cpu")
    assert calls == [True, False]
    calls.clear()
    load_sampler(paths["torchscript"], sigma=SIGMA, device="cpu")  # torch.jit.load, no unpickling of code
    assert calls == []


def test_onnx_session_options(files):
    import onnxruntime as ort

    _, paths, _ = files
    s = load_sampler(paths["onnx"], sigma=SIGMA, device="cpu")
    assert s.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert s.providers == ["CPUExecutionProvider"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = load_sampler(paths["onnx"], sigma=SIGMA, providers=["CPUExecutionProvider"], session_options=so)
    opts = s.session.get_session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(ValueError, match="give either device='cpu' or providers="):
        load_sampler(paths["onnx"], sigma=SIGMA, device="cpu", providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N' for an ONNX model, got 'tpu'"):
        load_sampler(paths["onnx"], sigma=SIGMA, device="tpu")


def test_bad_arguments(files):
    _, paths, m = files
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        load_sampler(m, sigma=0)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        load_sampler(m, sigma=1.0, num_classes=0)
    with pytest.raises(ValueError, match="input_shape must be a non-empty tuple of positive integers"):
        load_sampler(m, sigma=1.0, input_shape=(0,))
    with pytest.raises(ValueError, match="model must be a file path .* or a torch.nn.Module, got int"):
        load_sampler(3, sigma=1.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        load_sampler(m, sigma=1.0, bogus=1)  # sampler_kwargs reach the constructor, which refuses unknown ones
    with pytest.raises(ValueError, match="not a torch file"):
        load_module(paths["onnx"])


def test_normalize_reaches_the_sampler(files):
    _, paths, m = files
    mean, std = 0.1, 2.0
    a = load_sampler(paths["onnx"], sigma=SIGMA, normalize=(mean, std)).logits(X[None])
    b = m(torch.from_numpy((X[None] - mean) / std)).detach().numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_shipped_digits_model_goes_through_the_loader():
    from backends.models import load_torch_model

    x, y = load_digits_split("test")
    net = load_torch_model(0.25)
    assert not net.training
    s = load_sampler(default_model_path(0.25, "pt"), sigma=0.25, device="cpu", factory=DIGITS_FACTORY)
    so = load_sampler(default_model_path(0.25), sigma=0.25, device="cpu")
    assert s.num_classes == so.num_classes == 10  # DigitsCNN.input_shape -> one forward pass
    assert s.counts(x[0], 300, 1).tolist() == so.counts(x[0], 300, 1).tolist()
    with zipfile.ZipFile(default_model_path(0.25, "pt")) as z:  # the shipped .pt is a plain state dict
        assert not any("/code/" in n for n in z.namelist())
