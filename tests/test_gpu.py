"""Accelerator paths: torch.cuda, onnxruntime's CUDA and TensorRT providers, noise drawn on the device.

Tests marked ``gpu`` skip cleanly without a GPU (``scripts/gpu_check.sh`` runs them where there is one). The
device checks run on the CPU too (the CPU fallback of the same code): the model must receive its noisy batches
on the sampler's device, and no batch-sized tensor may be copied in per batch (host-to-device ``Memcpy HtoD``
on CUDA, batch-shaped ``aten::copy_`` / ``aten::_to_copy`` anywhere), counted with ``torch.profiler`` for one
and for four batches: the counts must be equal.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from backends import OnnxSampler, TorchSampler  # noqa: E402
from backends.models import default_model_path, load_digits_split, load_torch_model  # noqa: E402
from backends.onnx_sampler import resolve_providers  # noqa: E402
from backends.torch_sampler import default_device  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
ORT_PROVIDERS = ort.get_available_providers()
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU (torch.cuda.is_available() is False)")
DEVICES = ["cpu", pytest.param("cuda", marks=[gpu, needs_cuda])]
NOISES = [("float", {}), ("sound", {"grid": "1/16"})]
B = 100  # batch size of the device checks


class DeviceRecorder(torch.nn.Module):
    """Wraps a model; records the device and shape of every batch it receives."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.seen = []

    def forward(self, z):
        self.seen.append((z.device, tuple(z.shape)))
        return self.inner(z)


def batch_copies(fn, batch_shape) -> int:
    """Host-to-device copies and batch-shaped copies while ``fn()`` runs (torch.profiler)."""
    acts = [torch.profiler.ProfilerActivity.CPU]
    if HAS_CUDA:
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts, record_shapes=True) as prof:
        fn()
    n = 0
    for e in prof.events():
        if "Memcpy HtoD" in e.name:
            n += 1
        elif e.name in ("aten::copy_", "aten::_to_copy") and e.input_shapes and \
                tuple(e.input_shapes[0]) == tuple(batch_shape):
            n += 1
    return n


def _x():
    return load_digits_split("test")[0][0]


def test_batch_copies_detects_a_per_batch_copy():
    # the checker itself must be able to fail: a loop that copies every batch in from the host is caught
    shape = (B, 1, 8, 8)

    def copying(nb):
        rng = np.random.default_rng(0)
        for _ in range(nb):
            dst = torch.empty(shape)
            dst.copy_(torch.from_numpy(rng.standard_normal(shape).astype(np.float32)))

    assert batch_copies(lambda: copying(4), shape) > batch_copies(lambda: copying(1), shape)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("noise,kw", NOISES, ids=[n for n, _ in NOISES])
def test_noise_is_drawn_on_the_device_without_per_batch_copies(device, noise, kw):
    torch.set_num_threads(1)
    x = _x()
    model = DeviceRecorder(load_torch_model(0.25))
    s = TorchSampler(model, sigma=0.25, device=device, batch_size=B, num_classes=10, noise=noise, **kw)
    s.counts(x, B, 0)  # warm-up (thresholds moved to the device once, cached)
    model.seen.clear()
    one = batch_copies(lambda: s.counts(x, B, 1), (B, *x.shape))
    four = batch_copies(lambda: s.counts(x, 4 * B, 1), (B, *x.shape))
    assert one == four, (one, four)
    assert len(model.seen) == 5
    assert all(d.type == torch.device(device).type and shp == (B, *x.shape) for d, shp in model.seen)
    # sound noise: every value the model sees is a grid value, drawn on the device
    if noise == "sound":
        thr, values = s.sound.torch_tables(s.device, s.dtype)
        assert thr.device.type == values.device.type == torch.device(device).type
        g = torch.Generator(device=s.device).manual_seed(3)
        k = torch.as_tensor(s.sound.indices(x), device=s.device)
        z = s.sound.sample_torch(k, B, g, thr, values)
        assert z.device.type == torch.device(device).type
        assert bool(torch.isin(z, values).all())


@gpu
@needs_cuda
def test_torch_cuda_default_device_and_reproducibility():
    assert default_device() == "cuda"
    x = _x()
    bench, det = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True  # same kernels both runs
    try:
        _cuda_reproducible(x)
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = bench, det


def _cuda_reproducible(x):
    for noise, kw in NOISES:
        s = TorchSampler(load_torch_model(0.25), sigma=0.25, noise=noise, **kw)
        assert s.device.type == "cuda" and next(s.model.parameters()).device.type == "cuda"
        a, b = s.counts(x, 2000, 7), s.counts(x, 2000, 7)
        assert np.array_equal(a, b) and a.sum() == 2000
        cpu = TorchSampler(load_torch_model(0.25), sigma=0.25, device="cpu", noise=noise, **kw).counts(x, 2000, 7)
        assert int(a.argmax()) == int(cpu.argmax())  # different streams, same smoothed prediction


@pytest.mark.parametrize("provider", [
    pytest.param("CUDAExecutionProvider", marks=[gpu, pytest.mark.skipif(
        "CUDAExecutionProvider" not in ORT_PROVIDERS, reason="onnxruntime has no CUDAExecutionProvider")]),
    pytest.param("TensorrtExecutionProvider", marks=[gpu, pytest.mark.skipif(
        "TensorrtExecutionProvider" not in ORT_PROVIDERS, reason="onnxruntime has no TensorrtExecutionProvider")]),
])
def test_onnx_gpu_providers(provider):
    x, y = load_digits_split("test")
    cpu = OnnxSampler(default_model_path(0.25), sigma=0.25, providers=["CPUExecutionProvider"])
    for noise, kw in NOISES:
        s = OnnxSampler(default_model_path(0.25), sigma=0.25, providers=[provider, "CPUExecutionProvider"],
                        noise=noise, **kw)
        assert s.providers[0] == provider, s.providers
        c = s.counts(x[0], 2000, 3)
        assert c.sum() == 2000 and int(c.argmax()) == int(y[0])
        # same NumPy noise stream: logits equal up to the provider's arithmetic
        z = np.stack([x[0], x[1]])
        np.testing.assert_allclose(s.logits(z), cpu.logits(z), rtol=1e-2, atol=1e-2)


def test_cpu_fallback_provider_resolution():
    # without GPU providers the default is the CPU; with them, TensorRT then CUDA then CPU
    assert resolve_providers(None, ["CPUExecutionProvider"]) == (["CPUExecutionProvider"], False)
    got, explicit = resolve_providers(None, ["CPUExecutionProvider", "CUDAExecutionProvider",
                                             "TensorrtExecutionProvider"])
    assert got == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"] and not explicit
    s = OnnxSampler(default_model_path(0.25), sigma=0.25)
    assert s.providers[-1] == "CPUExecutionProvider"
    if not HAS_CUDA:
        assert default_device() == "cpu"
    c = OnnxSampler(default_model_path(0.25), sigma=0.25, noise="sound", grid="1/16").counts(_x(), 300, 0)
    assert c.sum() == 300
