"""torch models at onnxruntime speed: export once, check, then sample through ONNX.

:func:`auto_sampler` turns a ``torch.nn.Module`` into a sampler that runs onnxruntime when that is safe and
torch otherwise:

1. **Export once, cached by the model's hash.** :func:`export_onnx` writes the model as ONNX (legacy
   TorchScript exporter, opset :data:`OPSET`, dynamic batch axis) to ``<user cache>/onnx/<hash>.onnx``, where
   ``<hash>`` is :func:`module_hash`: the SHA-256 of the module's structure (class, ``repr``, source of
   user-defined ``forward`` methods), of every parameter and buffer (names, dtypes, shapes, bytes), of the
   input shape and of the torch version. Changing a weight, a layer or torch gives a new file; the next
   process with the same model finds the file and skips the export. The file is written to a temporary name
   and renamed, so concurrent processes never see half a file. When the cache directory cannot be written,
   the model is exported to memory for this process only.
2. **Check on a probe batch.** Before any ONNX sample is used, the logits of torch and onnxruntime are
   compared on a probe batch (default: :data:`PROBE_SIZE` inputs drawn uniformly from ``[0, 1]`` plus
   ``N(0, sigma^2)`` noise, seeded; or the caller's ``probe``). ONNX is used only if every logit agrees to
   ``atol`` (default :data:`ATOL` ``= 1e-5``, absolute) and all are finite; otherwise the sampler stays on
   torch and a ``RuntimeWarning`` says why. An export failure (an operator the exporter does not know, a
   data-dependent branch, a missing ``onnx`` package) also falls back to torch with a warning.
3. **Same noise either way.** Both paths draw the noise with NumPy (the stream of
   :func:`backends.base.numpy_noisy_batches`, ``noise="numpy"`` for :class:`~backends.torch_sampler.TorchSampler`),
   so the model sees bit-identical noisy inputs whichever path is taken: counts can differ only where two
   logits are within the checked tolerance of a tie.

Validity does not depend on which path is taken: both are the same classifier up to float rounding, the
probe check is a guard against a wrong export (not a proof), and the certificate is valid for the
classifier that actually produced the samples.

Threads
-------
onnxruntime sessions are created with :func:`ort_session_options`: intra-op and inter-op threads do **not spin**
while waiting for work (``session.intra_op.allow_spinning = 0``, ``session.inter_op.allow_spinning = 0``), so
the bounds computed between model calls get the CPU; ``intra_op_num_threads = 0`` (onnxruntime's default:
one thread per physical core) and sequential execution (``inter_op_num_threads = 1``). Pass your own
``onnxruntime.SessionOptions`` to change the thread counts (spinning is turned off in them too).

Only the CPU benefits: for ``device="cuda..."`` :func:`auto_sampler` stays on torch.
"""
from __future__ import annotations

import hashlib
import inspect
import io
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

__all__ = ["CACHE_ENV", "ATOL", "PROBE_SIZE", "OPSET", "user_cache_dir", "onnx_cache_dir", "module_hash",
           "export_onnx", "ort_session_options", "probe_batch", "max_logit_difference", "auto_sampler"]

#: Environment variable that overrides :func:`user_cache_dir` (same as ``confbounds.jitcache.CACHE_ENV``).
CACHE_ENV = "CONFBOUNDS_CACHE_DIR"
#: Largest absolute difference of torch and onnxruntime logits on the probe batch that admits ONNX.
ATOL = 1e-5
#: Inputs in the default probe batch.
PROBE_SIZE = 64
#: ONNX opset of the export.
OPSET = 17


def user_cache_dir() -> str:
    """Per-user cache directory of confbounds (platform convention).

    ``$CONFBOUNDS_CACHE_DIR`` if set; otherwise ``%LOCALAPPDATA%\\confbounds\\Cache`` on Windows,
    ``~/Library/Caches/confbounds`` on macOS and ``$XDG_CACHE_HOME/confbounds`` (default
    ``~/.cache/confbounds``) elsewhere. The same rule as ``confbounds.jitcache.user_cache_dir`` (the two
    packages do not import each other; ``tests/test_export.py`` checks that they agree).

    References
    ----------
    XDG Base Directory Specification 0.8, ``$XDG_CACHE_HOME``.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return os.path.abspath(os.path.expanduser(env))
    if sys.platform.startswith("win"):
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser(r"~\AppData\Local")
        return os.path.join(base, "confbounds", "Cache")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Caches/confbounds")
    xdg = os.environ.get("XDG_CACHE_HOME")
    if not xdg or not os.path.isabs(xdg):  # the spec says: relative paths are invalid, ignore them
        xdg = os.path.expanduser("~/.cache")
    return os.path.join(xdg, "confbounds")


def onnx_cache_dir() -> str:
    """``<user_cache_dir()>/onnx``: where :func:`export_onnx` keeps exported models."""
    return os.path.join(user_cache_dir(), "onnx")


def _check_shape(input_shape) -> tuple:
    try:
        dims = tuple(input_shape)
    except TypeError:
        dims = (input_shape,)
    if not dims or any(isinstance(d, bool) or not hasattr(d, "__index__") or int(d) < 1 for d in dims):
        raise ValueError(f"input_shape must be a non-empty tuple of positive integers (one input, no batch axis), "
                         f"got {input_shape!r}")
    return tuple(int(d) for d in dims)


def _forward_sources(module) -> str:
    """Source of ``forward`` of every submodule class not defined by torch itself."""
    parts = []
    seen = set()
    for m in module.modules():
        cls = type(m)
        if cls in seen or cls.__module__.startswith("torch."):
            continue
        seen.add(cls)
        try:
            src = inspect.getsource(cls.forward)
        except (OSError, TypeError):
            src = "<no source>"
        parts.append(f"{cls.__module__}.{cls.__qualname__}.forward:\n{src}")
    return "\n".join(parts)


def module_hash(module, input_shape) -> str:
    """SHA-256 (hex) identifying an export of ``module`` for inputs of ``input_shape``.

    Covers the structure (class name, ``repr`` with every layer's hyperparameters, source of ``forward`` of
    user-defined submodule classes), the weights (name, dtype, shape and bytes of every parameter and buffer,
    in ``state_dict`` order), the input shape, the torch version and :data:`OPSET`.
    """
    import torch

    shape = _check_shape(input_shape)
    h = hashlib.sha256()
    cls = type(module)
    for line in (f"{cls.__module__}.{cls.__qualname__}", repr(module), _forward_sources(module),
                 f"input_shape={shape}", f"torch={torch.__version__}", f"opset={OPSET}"):
        h.update(line.encode())
        h.update(b"\n")
    for name, t in module.state_dict().items():
        arr = t.detach().cpu().contiguous()
        h.update(f"{name}:{arr.dtype}:{tuple(arr.shape)}\n".encode())
        if arr.numel():
            h.update(arr.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _param_dtype(module):
    import torch

    p = next(iter(module.parameters()), None)
    return p.dtype if p is not None and p.dtype.is_floating_point else torch.float32


def _export_bytes(module, shape) -> bytes:
    import torch

    dummy = torch.zeros((2, *shape), dtype=_param_dtype(module))
    buf = io.BytesIO()
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings():  # the legacy exporter announces its deprecation on every call
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            with torch.no_grad():
                torch.onnx.export(module, (dummy,), buf, input_names=["x"], output_names=["logits"],
                                  dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=OPSET,
                                  dynamo=False)
    finally:
        module.train(was_training)
    return buf.getvalue()


def export_onnx(module, input_shape, *, cache_dir: Optional[str] = None):
    """The ONNX export of ``module``: a cached file path, or the bytes if the cache is not writable.

    Parameters
    ----------
    module : torch.nn.Module
        On the CPU; exported in eval mode (its training flag is restored afterwards).
    input_shape : tuple of int
        Shape of one input (no batch axis); the batch axis of the graph is dynamic.
    cache_dir : str, optional
        Default :func:`onnx_cache_dir`.

    Returns
    -------
    (str or bytes, bool)
        ``<cache_dir>/<module_hash>.onnx`` (or the serialised model when the directory cannot be written),
        and whether it was already cached (no export in this call).
    """
    shape = _check_shape(input_shape)
    d = Path(onnx_cache_dir() if cache_dir is None else cache_dir)
    path = d / f"{module_hash(module, shape)}.onnx"
    if path.is_file() and path.stat().st_size > 0:
        return str(path), True
    data = _export_bytes(module, shape)
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic: concurrent processes see the whole file or none
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    except OSError:
        return data, False
    return str(path), False


def ort_session_options(options=None):
    """onnxruntime session options without spinning threads (module notes, "Threads").

    ``options`` (an ``onnxruntime.SessionOptions``) is modified in place and returned; default: new options
    with ``intra_op_num_threads = 0`` (one per physical core) and ``inter_op_num_threads = 1``.
    """
    import onnxruntime as ort

    so = ort.SessionOptions() if options is None else options
    if options is None:
        so.intra_op_num_threads = 0
        so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


def probe_batch(input_shape, sigma: float, size: int = PROBE_SIZE, seed: int = 0) -> np.ndarray:
    """Default probe: ``size`` inputs ``U[0, 1]`` plus ``N(0, sigma^2)`` noise, float32, seeded.

    Validity does not depend on it (it only decides which of two implementations of the same model runs).
    """
    rng = np.random.default_rng(seed)
    shape = (int(size), *_check_shape(input_shape))
    return (rng.random(shape) + sigma * rng.standard_normal(shape)).astype(np.float32)


def max_logit_difference(module, onnx_sampler, probe: np.ndarray) -> float:
    """Largest ``|torch logit - onnxruntime logit|`` over ``probe`` (inf if any logit is not finite).

    The sampler's ``normalize=(mean, std)`` is applied to the probe first, as the samplers apply it (after
    the noise); both models then see the same batch.
    """
    import torch

    batch = np.asarray(probe)
    if onnx_sampler.normalize is not None:
        from .base import broadcast_normalize

        mean, std = broadcast_normalize(onnx_sampler.normalize, batch.shape[1:])
        batch = (batch - mean) / std
    batch = batch.astype(onnx_sampler.input_dtype, copy=False)
    with torch.inference_mode():
        t = module(torch.from_numpy(np.ascontiguousarray(batch)).to(_param_dtype(module))).double().numpy()
    o = np.asarray(onnx_sampler.session.run([onnx_sampler.output_name], {onnx_sampler.input_name: batch})[0],
                   dtype=np.float64)
    if t.shape != o.shape or not (np.all(np.isfinite(t)) and np.all(np.isfinite(o))):
        return float("inf")
    return float(np.max(np.abs(t - o))) if t.size else 0.0


def auto_sampler(module, *, sigma: float, input_shape: Optional[Sequence[int]] = None, batch_size: int = 1000,
                 device=None, simplex: str = "hard", temperature: float = 1.0, normalize=None,
                 num_classes: Optional[int] = None, noise: str = "numpy", probe=None, atol: float = ATOL,
                 cache_dir: Optional[str] = None, session_options=None):
    """A sampler for a torch module that runs onnxruntime when the export checks out, else torch.

    Parameters
    ----------
    module : torch.nn.Module
    sigma, batch_size, simplex, temperature, normalize, num_classes
        As in :class:`backends.torch_sampler.TorchSampler` and :class:`backends.onnx_sampler.OnnxSampler`.
    input_shape : tuple of int, optional
        Shape of one input (no batch axis). Default ``module.input_shape``; the export needs it, so without
        either a ``ValueError`` is raised.
    device : str, optional
        ``None`` or ``"cpu"``: try ONNX. A CUDA device: stay on torch (no export).
    noise : {"numpy"}
        Both paths draw NumPy noise (module notes); ``"torch"`` is refused with a ``ValueError`` (use
        :class:`~backends.torch_sampler.TorchSampler` directly for torch's generator).
    probe : array, optional
        Inputs ``(b, *input_shape)`` on which the logits are compared; default :func:`probe_batch`.
    atol : float
        Largest admitted absolute logit difference (default :data:`ATOL`).
    cache_dir : str, optional
        Where exported models are kept (default :func:`onnx_cache_dir`).
    session_options : onnxruntime.SessionOptions, optional
        For the ONNX path (spinning is turned off in them); see :func:`ort_session_options`.

    Returns
    -------
    OnnxSampler or TorchSampler
        With ``backend`` (``"onnx"`` or ``"torch"``), ``backend_reason`` (why), ``onnx_model`` (the cached
        path, bytes, or None), ``export_cached`` (the export was found in the cache) and
        ``probe_max_abs_diff`` (None when no check ran).

    Examples
    --------
    >>> import tempfile, torch, numpy as np
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> s = auto_sampler(net, sigma=0.5, input_shape=(4,), cache_dir=tempfile.mkdtemp())
    >>> s.backend, int(s.counts(np.zeros(4, dtype=np.float32), n=100, seed=0).sum())
    ('onnx', 100)
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if noise != "numpy":
        raise ValueError(f"backend 'auto' draws NumPy noise on both paths (noise='numpy'), got noise={noise!r}; "
                         "use TorchSampler directly for torch's generator")
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not (atol >= 0.0) or atol == float("inf"):
        raise ValueError(f"atol must be a finite number >= 0, got {atol!r}")
    if input_shape is None:
        input_shape = getattr(module, "input_shape", None)
    if input_shape is None:
        raise ValueError("backend 'auto' needs input_shape= (or a module.input_shape attribute) to export the model")
    shape = _check_shape(input_shape)
    from .torch_sampler import TorchSampler

    def on_torch(reason, warn):
        if warn:
            warnings.warn(f"backend 'auto': staying on torch: {reason}", RuntimeWarning, stacklevel=3)
        s = TorchSampler(module, sigma=sigma, batch_size=batch_size, device=device, simplex=simplex,
                         temperature=temperature, normalize=normalize, num_classes=num_classes, input_shape=shape,
                         noise="numpy")
        s.backend, s.backend_reason = "torch", reason
        s.onnx_model, s.export_cached, s.probe_max_abs_diff = onnx_model, cached, diff
        return s

    onnx_model, cached, diff = None, False, None
    if device is not None and str(device) != "cpu":
        return on_torch(f"device {device!r} is not the CPU", warn=False)
    try:
        module.to("cpu")
        onnx_model, cached = export_onnx(module, shape, cache_dir=cache_dir)
        from .onnx_sampler import OnnxSampler

        s = OnnxSampler(onnx_model, sigma=sigma, batch_size=batch_size, providers=["CPUExecutionProvider"],
                        simplex=simplex, temperature=temperature, normalize=normalize, num_classes=num_classes,
                        session_options=ort_session_options(session_options), input_shape=shape)
    except Exception as e:  # noqa: BLE001 - any exporter / onnxruntime failure means: keep torch
        msg = " ".join(str(e).split())[:300]
        return on_torch(f"the ONNX export failed ({type(e).__name__}: {msg})", warn=True)
    pb = probe_batch(shape, sigma) if probe is None else np.asarray(probe)
    if pb.ndim != len(shape) + 1 or pb.shape[1:] != shape or pb.shape[0] < 1:
        raise ValueError(f"probe must have shape (b, *{shape}) with b >= 1, got {pb.shape}")
    diff = max_logit_difference(module, s, pb)
    if not diff <= atol:
        return on_torch(f"torch and onnxruntime logits differ by {diff:.3g} > atol={atol:g} on the probe batch",
                        warn=True)
    s.backend, s.backend_reason = "onnx", f"logits agree to {diff:.3g} <= atol={atol:g} on {pb.shape[0]} probes"
    s.onnx_model, s.export_cached, s.probe_max_abs_diff = onnx_model, cached, diff
    return s
