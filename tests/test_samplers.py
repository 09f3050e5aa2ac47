"""TorchSampler and OnnxSampler on the shipped digits CNN (end to end), on tiny hand-built graphs, and on bad input."""
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.stats import binom, norm

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from backends import OnnxSampler, Sampler, TorchSampler, default_model_path, load_digits_split  # noqa: E402
from backends.base import numpy_noisy_batches  # noqa: E402
from backends.models import load_torch_model  # noqa: E402
from backends.simplex import hardmax, softmax, sparsemax  # noqa: E402

CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def digits():
    return load_digits_split("test")


@pytest.fixture(scope="module", params=[0.25, 0.5])
def pair(request):
    """(sigma, onnx sampler, torch sampler fed the same NumPy noise) for one shipped model."""
    s = request.param
    return (s, OnnxSampler(default_model_path(s), sigma=s, batch_size=400, providers=CPU),
            TorchSampler(load_torch_model(s), sigma=s, batch_size=400, device="cpu", noise="numpy"))


def onnx_graph(node_list, inp, out, inits=(), in_type=TensorProto.FLOAT, in_shape=("batch", 2),
               out_shape=("batch", 2)):
    g = helper.make_graph(node_list, "g", [helper.make_tensor_value_info(inp, in_type, list(in_shape))],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, list(out_shape))],
                          initializer=list(inits))
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def linear_onnx(weight):
    """logits = x @ W for x of shape (batch, 2)."""
    w = helper.make_tensor("W", TensorProto.FLOAT, [2, 2], np.asarray(weight, np.float32).ravel().tolist())
    return onnx_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "x", "y", inits=[w])


# ---------------------------------------------------------------------------------- end to end, digits CNN


def test_shipped_models_are_accurate(digits):
    # training script reports ~0.99 / ~0.97 clean test accuracy (backends/models/digits_cnn_metrics.json);
    # a wrong weight file or a broken export would fall far below 0.9
    x, y = digits
    for s in (0.25, 0.5):
        logits = OnnxSampler(default_model_path(s), sigma=s, providers=CPU).logits(x)
        assert (logits.argmax(1) == y).mean() > 0.95


def test_torch_and_onnx_agree_on_logits(pair, digits):
    sigma, so, st_ = pair
    x, _ = digits
    for i in (0, 17, 123):
        for start, batch in numpy_noisy_batches(x[i], sigma, 800, seed=i, batch_size=400):
            lo, lt = so.logits(batch), st_.logits(batch)
            assert lo.shape == lt.shape == (400, 10)
            np.testing.assert_allclose(lo, lt, rtol=0, atol=1e-5)


def test_torch_and_onnx_agree_on_counts_exactly(pair, digits):
    sigma, so, st_ = pair
    x, y = digits
    for i in (0, 1, 2, 50, 200):
        co = so.counts(x[i], 2300, seed=10 + i)  # 5 full batches of 400 and one of 300
        ct = st_.counts(x[i], 2300, seed=10 + i)
        np.testing.assert_array_equal(co, ct)
        assert co.dtype == np.int64 and co.shape == (10,) and co.sum() == 2300


def test_torch_and_onnx_agree_on_scores(pair, digits):
    sigma, so, st_ = pair
    x, _ = digits
    for name in ("softmax", "sparsemax"):
        so.simplex = st_.simplex = name
        try:
            a, b = so.scores(x[3], 900, seed=4), st_.scores(x[3], 900, seed=4)
        finally:
            so.simplex = st_.simplex = "hard"
        assert a.dtype == b.dtype == np.float64 and a.shape == (900, 10)
        np.testing.assert_allclose(a, b, atol=1e-5)  # logits agree to 1e-5; both maps are 1-Lipschitz in sup-norm*2
        np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("make", ["onnx", "torch", "torch-numpy"])
def test_seeded_reruns_identical_and_seeds_differ(make, digits):
    x, _ = digits
    if make == "onnx":
        s = OnnxSampler(default_model_path(0.5), sigma=0.5, batch_size=300, providers=CPU)
    else:
        s = TorchSampler(load_torch_model(0.5), sigma=0.5, batch_size=300,
                         noise="numpy" if make == "torch-numpy" else "torch")
    xi = x[7]
    a = s.counts(xi, 1000, seed=5)
    np.testing.assert_array_equal(a, s.counts(xi, 1000, seed=5))
    assert not np.array_equal(a, s.counts(xi, 1000, seed=6))
    sc = s.scores(xi, 200, seed=5)
    np.testing.assert_array_equal(sc, s.scores(xi, 200, seed=5))
    assert not np.array_equal(sc, s.scores(xi, 200, seed=6))
    # same seed in counts and scores: the hard score matrix's column sums are the counts
    np.testing.assert_array_equal(s.scores(xi, 1000, seed=5).sum(axis=0).astype(np.int64), a)


def test_scores_columns_and_simplex(digits):
    x, _ = digits
    so = OnnxSampler(default_model_path(0.25), sigma=0.25, batch_size=256, providers=CPU, simplex="softmax",
                     temperature=2.0)
    full = so.scores(x[9], 600, seed=1)
    cols = so.scores(x[9], 600, seed=1, columns=[4, 0])
    assert cols.shape == (600, 2)
    np.testing.assert_array_equal(cols, full[:, [4, 0]])
    # the map is the NumPy reference applied to the logits of the same noisy inputs
    batch = np.concatenate([b.copy() for _, b in numpy_noisy_batches(x[9], 0.25, 600, 1, 256)])
    np.testing.assert_allclose(full, softmax(so.logits(batch), 2.0), atol=1e-12)
    so.simplex = "sparsemax"
    np.testing.assert_allclose(so.scores(x[9], 600, seed=1), sparsemax(so.logits(batch)), atol=1e-12)


def test_torch_noise_on_device_stream(digits):
    # noise="torch" draws torch.randn with a generator seeded per call: reproduce by hand for one batch
    x, _ = digits
    model = load_torch_model(0.25)
    s = TorchSampler(model, sigma=0.25, batch_size=500, device="cpu")
    g = torch.Generator().manual_seed(3)
    xt = torch.from_numpy(x[0])
    with torch.inference_mode():
        batch = torch.randn((500, 1, 8, 8), generator=g).mul_(0.25).add_(xt)
        ref = torch.bincount(model(batch).argmax(1), minlength=10).numpy()
    np.testing.assert_array_equal(s.counts(x[0], 500, seed=3), ref)


def test_noise_is_added_before_normalize(digits):
    # TorchSampler(model, normalize=(m, s)) must equal TorchSampler(Normalize-then-model): noise in input space
    x, _ = digits
    base = load_torch_model(0.25)
    mean, std = 0.3, 0.7

    class Norm(torch.nn.Module):
        def forward(self, z):
            return (z - mean) / std

    wrapped = torch.nn.Sequential(Norm(), base)
    a = TorchSampler(base, sigma=0.25, num_classes=10, normalize=(mean, std), noise="numpy").counts(x[1], 800, 2)
    b = TorchSampler(wrapped, sigma=0.25, num_classes=10, noise="numpy").counts(x[1], 800, 2)
    c = OnnxSampler(default_model_path(0.25), sigma=0.25, providers=CPU, normalize=(mean, std)).counts(x[1], 800, 2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    # noise after normalisation (scale sigma/std in the model's space) would be a different experiment
    d = TorchSampler(wrapped, sigma=0.25 / std, num_classes=10, noise="numpy").counts(x[1], 800, 2)
    assert not np.array_equal(a, d)


def test_protocol_and_num_classes():
    so = OnnxSampler(default_model_path(0.25), sigma=0.25, providers=CPU)
    st_ = TorchSampler(load_torch_model(0.25), sigma=0.25)  # model.input_shape -> one forward pass
    assert isinstance(so, Sampler) and isinstance(st_, Sampler)
    assert so.num_classes == st_.num_classes == 10
    lin = TorchSampler(torch.nn.Linear(3, 4), sigma=1.0)
    with pytest.raises(AttributeError, match="num_classes is not known yet"):
        lin.num_classes
    lin.counts(np.zeros(3, np.float32), 5, 0)
    assert lin.num_classes == 4
    assert TorchSampler(torch.nn.Linear(3, 4), sigma=1.0, input_shape=(3,)).num_classes == 4


# ------------------------------------------------------------------------ known smoothed probabilities


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_linear_model_matches_gaussian_probability(backend):
    # logits (x0, 0): class 0 wins iff x0 + sigma*eps0 > 0, probability Phi(x0/sigma) (Cohen et al. 2019, the
    # linear case). x0 = 0.3, sigma = 0.5: Phi(0.6) = 0.7257. Accept the central 1 - 1e-6 binomial range.
    weight = [[1.0, 0.0], [0.0, 0.0]]  # y = x @ W
    if backend == "onnx":
        s = OnnxSampler(linear_onnx(weight), sigma=0.5, providers=CPU, batch_size=4096)
    else:
        lin = torch.nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(weight).T)
        s = TorchSampler(lin, sigma=0.5, batch_size=4096)
    n, p = 40000, norm.cdf(0.6)
    c = s.counts(np.array([0.3, -0.2]), n, seed=0)
    lo, hi = binom.ppf(5e-7, n, p), binom.isf(5e-7, n, p)
    assert lo <= c[0] <= hi, (c, n * p)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 700), batch=st.integers(1, 300), seed=st.integers(0, 2**32))
def test_onnx_counts_invariants(n, batch, seed):
    # counts sum to n; the NumPy noise stream does not depend on the batch size (PCG64 draws sequentially),
    # so an exactly representable linear model gives the same counts for any batch size
    s = OnnxSampler(linear_onnx([[1.0, 0.0], [0.0, 1.0]]), sigma=1.0, providers=CPU, batch_size=batch)
    c = s.counts(np.array([0.1, 0.0]), n, seed)
    assert c.sum() == n and c.dtype == np.int64
    ref = OnnxSampler(linear_onnx([[1.0, 0.0], [0.0, 1.0]]), sigma=1.0, providers=CPU, batch_size=1000)
    np.testing.assert_array_equal(c, ref.counts(np.array([0.1, 0.0]), n, seed))
    np.testing.assert_array_equal(hardmax(s.scores(np.array([0.1, 0.0]), n, seed)).sum(0), c)


# ---------------------------------------------------------------------------------------------- bad input


class Reshape3(torch.nn.Module):
    def forward(self, z):
        return z.reshape(z.shape[0], 2, 1)


class TupleOut(torch.nn.Module):
    def forward(self, z):
        return z, z


class LogModel(torch.nn.Module):
    def forward(self, z):
        return torch.log(z)


class InvModel(torch.nn.Module):
    def forward(self, z):
        return torch.stack([1.0 / (z[:, 0] >= 2.7).to(z.dtype), z[:, 1]], dim=1)  # inf where z0 < 2.7


@pytest.mark.parametrize("model", [Reshape3(), TupleOut()])
def test_torch_output_not_batch_by_m(model):
    s = TorchSampler(model, sigma=1.0, num_classes=2)
    with pytest.raises(ValueError, match=r"model output must have shape \(batch, m\)"):
        s.counts(np.zeros(2), 10, 0)


def test_onnx_output_not_batch_by_m():
    graph = onnx_graph([helper.make_node("Unsqueeze", ["x", "axes"], ["y"])], "x", "y",
                       inits=[helper.make_tensor("axes", TensorProto.INT64, [1], [2])],
                       out_shape=("batch", 2, 1))
    s = OnnxSampler(graph, sigma=1.0, providers=CPU, num_classes=2)
    with pytest.raises(ValueError, match=r"model output must have shape \(batch, m\)"):
        s.counts(np.zeros(2), 10, 0)


def test_non_finite_logits_name_input_and_batch():
    x = np.array([3.0, 0.0])
    # log of a noisy negative coordinate: NaN already in the first batch (x1 = 0, so half the rows)
    cases = [
        TorchSampler(LogModel(), sigma=1.0, batch_size=50, num_classes=2),
        OnnxSampler(onnx_graph([helper.make_node("Log", ["x"], ["y"])], "x", "y"), sigma=1.0, batch_size=50,
                    providers=CPU),
    ]
    for s in cases:
        with pytest.raises(ValueError, match=r"non-finite value nan at row \d+ in batch 0 \(noise samples 0\.\.49, "
                                             r"seed 4\) for input x of shape \(2,\) \(sha1 [0-9a-f]{12}\)"):
            s.counts(x, 500, 4)
        with pytest.raises(ValueError, match="non-finite"):
            s.scores(x, 500, 4)
    # InvModel gives inf where the noisy x0 < 2.7, probability Phi(-3) = 0.00135 per sample: a later batch.
    # The message must name the batch and row of the first offending noise sample; check it against the
    # (batch-size independent) NumPy stream.
    s = TorchSampler(InvModel(), sigma=0.1, batch_size=50, num_classes=2, noise="numpy")
    with pytest.raises(ValueError, match=r"non-finite value inf at row") as err:
        s.counts(x, 20000, 4)
    m = re.search(r"row (\d+) in batch (\d+) \(noise samples (\d+)\.\.(\d+), seed 4\)", str(err.value))
    row, b, lo, hi = map(int, m.groups())
    assert b > 0 and lo == 50 * b and hi == lo + 49
    noisy0 = (3.0 + np.float32(0.1) * np.random.default_rng(4).standard_normal((20000, 2), np.float32))[:, 0]
    first = int(np.argmax(noisy0 < 2.7))
    assert first == lo + row


def test_onnx_wrong_input_shape_or_dtype():
    so = OnnxSampler(default_model_path(0.25), sigma=0.25, providers=CPU)
    for shape in [(8, 8), (1, 8, 9), (1, 1, 8, 8), (64,)]:
        with pytest.raises(ValueError, match=r"expects one input of shape \(1, 8, 8\)"):
            so.counts(np.zeros(shape, np.float32), 10, 0)
    for bad in [np.zeros((1, 8, 8), complex), np.zeros((1, 8, 8), bool), np.full((1, 8, 8), "a"),
                np.zeros((1, 8, 8), object)]:
        with pytest.raises(ValueError, match="x must hold real numbers"):
            so.counts(bad, 10, 0)
    with pytest.raises(ValueError, match="overflow"):
        so.counts(np.full((1, 8, 8), 1e39), 10, 0)
    with pytest.raises(ValueError, match="x must be finite"):
        so.counts(np.full((1, 8, 8), np.nan, np.float32), 10, 0)
    # a graph whose input is an integer tensor cannot take Gaussian noise
    int_graph = onnx_graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], "x", "y",
                           in_type=TensorProto.INT64)
    with pytest.raises(ValueError, match=r"has type tensor\(int64\); Gaussian noise needs a floating-point"):
        OnnxSampler(int_graph, sigma=1.0, providers=CPU)
    with pytest.raises(ValueError, match="input_name 'images' is not an input"):
        OnnxSampler(default_model_path(0.25), sigma=0.25, providers=CPU, input_name="images")
    fixed = onnx_graph([helper.make_node("Identity", ["x"], ["y"])], "x", "y", in_shape=(4, 2), out_shape=(4, 2))
    with pytest.raises(ValueError, match="fixed batch dimension 4"):
        OnnxSampler(fixed, sigma=1.0, providers=CPU)


def test_torch_wrong_input():
    st_ = TorchSampler(load_torch_model(0.25), sigma=0.25)
    with pytest.raises(ValueError, match=r"x must have shape \(1, 8, 8\)"):
        st_.counts(np.zeros((8, 8)), 10, 0)
    with pytest.raises(ValueError, match="x must hold real numbers"):
        st_.counts(np.zeros((1, 8, 8), complex), 10, 0)
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        TorchSampler(lambda z: z, sigma=1.0)


def make(kind, **kw):
    if kind == "onnx":
        return OnnxSampler(default_model_path(0.25), providers=CPU, **kw)
    return TorchSampler(load_torch_model(0.25), **kw)


@pytest.mark.parametrize("kind", ["onnx", "torch"])
@pytest.mark.parametrize("sigma", [0.0, -0.25, float("nan"), float("inf"), None, True, "0.25"])
def test_bad_sigma(kind, sigma):
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        make(kind, sigma=sigma)


@pytest.mark.parametrize("kind", ["onnx", "torch"])
def test_bad_n_seed_simplex_columns_normalize(kind, digits):
    x = digits[0][0]
    s = make(kind, sigma=0.25)
    for n in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="n must be"):
            s.counts(x, n, 0)
        with pytest.raises(ValueError, match="n must be"):
            s.scores(x, n, 0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        s.counts(x, 10, -1)
    with pytest.raises(ValueError, match="simplex must be one of .*'softermax'"):
        make(kind, sigma=0.25, simplex="softermax")
    with pytest.raises(ValueError, match="temperature"):
        make(kind, sigma=0.25, simplex="softmax", temperature=0.0)
    with pytest.raises(ValueError, match=r"columns must lie in \[0, 10\)"):
        s.scores(x, 10, 0, columns=[3, 10])
    with pytest.raises(ValueError, match="normalize std must be > 0"):
        make(kind, sigma=0.25, normalize=(0.5, 0.0))
    with pytest.raises(ValueError, match="batch_size"):
        make(kind, sigma=0.25, batch_size=0)


def test_missing_requested_provider_is_reported_once(digits):
    x = digits[0][0]
    path = default_model_path(0.25)
    with pytest.raises(ValueError, match=r"requested ONNX execution provider\(s\) \['CUDAExecutionProvider'\] are "
                                         r"not available.*available:"):
        OnnxSampler(path, sigma=0.25, providers=["CUDAExecutionProvider"])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        s = OnnxSampler(path, sigma=0.25, providers=["NoSuchExecutionProvider", "CPUExecutionProvider"])
        s.counts(x, 50, 0)
        s.counts(x, 50, 1)
    msgs = [str(w.message) for w in rec if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1 and "NoSuchExecutionProvider" in msgs[0] and "CPUExecutionProvider" in msgs[0]
    assert s.providers == ["CPUExecutionProvider"]
    # asking for what is there, or for the default, is silent
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OnnxSampler(path, sigma=0.25, providers=CPU).counts(x, 10, 0)
        OnnxSampler(path, sigma=0.25).counts(x, 10, 0)
