"""The one model loader: a model file (or an in-memory torch module) -> a sampler.

:func:`load_sampler` is the only place that turns a user's model into a :class:`backends.base.Sampler`; the
CLI, the Ray engine and the bundled digits model all go through it. :func:`model_identity` names a model for
result files (path, SHA-256 of the bytes, format).

Accepted models
---------------
=========================  ===========================================================================
format                     what ``model`` is
=========================  ===========================================================================
``"onnx"``                 a ``.onnx`` file (onnxruntime, intra-op thread spinning off)
``"torchscript"``          a ``.pt``/``.pth`` file written by ``torch.jit.save``
``"pickle"``               a ``.pt``/``.pth`` file written by ``torch.save(model)`` (a whole ``nn.Module``)
``"state_dict+factory"``   a ``.pt``/``.pth`` file written by ``torch.save(model.state_dict())``, together
                           with ``factory="package.module:callable"`` that builds the empty module
``"module"``               a ``torch.nn.Module`` object (no file)
=========================  ===========================================================================

Safety of ``torch.load``
------------------------
A pickle can run arbitrary code while it is read. The loader first reads every torch file with
``torch.load(..., weights_only=True)``, which only accepts tensors and plain containers (state dicts) and
runs no code. Only when that refuses the file because it holds a pickled ``nn.Module`` does the loader
unpickle it fully (``weights_only=False``): **load pickled modules only from sources you trust**; a state
dict plus ``factory=`` or a TorchScript file avoids full unpickling altogether.

The class count and the input shape
-----------------------------------
The input shape is ``input_shape`` when given, else the shape of the ONNX graph's input when it is static,
else the shape of the first input the sampler sees (fixed at the first call; later inputs of another shape
are refused). The class count comes from one noise-free forward pass as soon as the input shape is known;
``num_classes=``, when given, is checked against that pass (or against every model output).
"""
from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import zipfile
from typing import Any, Dict, Optional

__all__ = ["load_sampler", "model_identity", "load_module", "FORMATS", "TORCH_DEFAULT_NOISE", "TORCH_SUFFIXES",
           "ONNX_SUFFIXES", "BACKENDS"]

#: ``backend=`` of :func:`load_sampler`: None (by the file), "torch" or "onnx" (the file must be of that kind),
#: or "auto" (torch models via ONNX when checked)
BACKENDS = (None, "torch", "onnx", "auto")

#: the ``format`` values of :func:`model_identity`
FORMATS = ("onnx", "torchscript", "pickle", "state_dict+factory", "module")
#: file name endings read as torch files (TorchScript, pickled module or state dict)
TORCH_SUFFIXES = (".pt", ".pth")
#: file name endings read as ONNX graphs
ONNX_SUFFIXES = (".onnx",)

#: noise stream of torch models unless ``noise=`` is given: NumPy's ``default_rng(seed)``, the ONNX sampler's
#: stream (:func:`backends.base.numpy_noisy_batches`), so a model and its ONNX export give the same counts
TORCH_DEFAULT_NOISE = "numpy"

_ZIP_MAGIC = b"PK\x03\x04"
_TRUST = ("it holds a pickled object, and unpickling runs code: load pickled modules only from sources you "
          "trust (a TorchScript file, or a state dict with factory='package.module:callable', needs no "
          "unpickling)")


# --------------------------------------------------------------------------------------------- file kinds
def _check_path(model) -> str:
    path = os.fspath(model)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    if not os.path.exists(path):
        raise ValueError(f"model file {path!r} does not exist")
    if not os.path.isfile(path):
        raise ValueError(f"model {path!r} is not a file")
    return path


def _suffix_kind(path: str) -> str:
    low = path.lower()
    if low.endswith(ONNX_SUFFIXES):
        return "onnx"
    if low.endswith(TORCH_SUFFIXES):
        return "torch"
    raise ValueError(f"model file {path!r} must end in one of {ONNX_SUFFIXES + TORCH_SUFFIXES} "
                     "(an ONNX graph, or a torch TorchScript / pickled module / state dict)")


def _head(path: str, k: int = 4) -> bytes:
    with open(path, "rb") as f:
        return f.read(k)


def _is_torchscript_zip(path: str) -> bool:
    """A TorchScript archive is a zip holding ``<name>/code/...``; ``torch.save`` zips have no ``code/``."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in name or name.startswith("code/") for name in z.namelist())
    except zipfile.BadZipFile:
        return False


def _torch_file_kind(path: str) -> str:
    """``"torchscript"`` or ``"torch.save"`` (a zip or legacy pickle); a ValueError for anything else."""
    head = _head(path)
    if head == _ZIP_MAGIC:
        return "torchscript" if _is_torchscript_zip(path) else "torch.save"
    if head[:1] == b"\x80":  # pickle protocol >= 2: legacy (non-zip) torch.save
        return "torch.save"
    raise ValueError(f"model file {path!r} is not a torch file (neither a torch.save zip archive, a legacy "
                     f"torch pickle, nor a TorchScript archive; it starts with {head!r})")


# ------------------------------------------------------------------------------------------------ factory
def _resolve_factory(factory):
    """``"package.module:callable"`` (or a callable) -> the callable; ValueError naming what is wrong."""
    if callable(factory):
        return factory
    if not isinstance(factory, str) or factory.count(":") != 1:
        raise ValueError(f"factory must be 'package.module:callable' (or a callable), got {factory!r}")
    mod_name, attr = factory.split(":")
    if not mod_name or not attr:
        raise ValueError(f"factory must be 'package.module:callable', got {factory!r}")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ValueError(f"factory {factory!r}: cannot import module {mod_name!r} ({e})") from None
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"factory {factory!r}: module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"factory {factory!r} is not callable")
    return obj


def _factory_name(factory) -> str:
    if isinstance(factory, str):
        return factory
    return f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', repr(factory))}"


# ------------------------------------------------------------------------------------------- torch loading
def _load_torch_module(path: str, factory):
    """``(module, format)`` for a torch file; see the module docstring for the safety rules."""
    import torch

    kind = _torch_file_kind(path)
    if kind == "torchscript":
        if factory is not None:
            raise ValueError(f"model file {path!r} is a TorchScript module; factory={_factory_name(factory)!r} "
                             "applies only to state dicts, drop it")
        try:
            import warnings

            with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript; loading it still works
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(path, map_location="cpu"), "torchscript"
        except Exception as e:  # noqa: BLE001 - any failure is a bad file; name it
            raise ValueError(f"model file {path!r} looks like a TorchScript archive but torch.jit.load failed: "
                             f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" not in str(e).lower():
            raise ValueError(f"model file {path!r} is not a readable torch file ({type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
        # the file holds more than tensors (a pickled module): full unpickling, for trusted files only
        if factory is not None:
            raise ValueError(f"model file {path!r} holds a pickled object, not a state dict; "
                             f"factory={_factory_name(factory)!r} applies only to state dicts, drop it")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e2:  # noqa: BLE001
            raise ValueError(f"model file {path!r} could not be unpickled ({type(e2).__name__}: {e2}); "
                             f"{_TRUST}; a pickled module also needs its class importable under the same "
                             "module path as when it was saved") from None
        if not isinstance(obj, torch.nn.Module):
            raise ValueError(f"model file {path!r} holds a {type(obj).__name__}, not a torch.nn.Module")
        return obj, "pickle"
    except Exception as e:  # noqa: BLE001 - corrupt zip, truncated file, ...
        raise ValueError(f"model file {path!r} is not a readable torch file ({type(e).__name__}: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
    if isinstance(obj, torch.nn.Module):  # possible with custom safe globals
        if factory is not None:
            raise ValueError(f"model file {path!r} holds a whole module; factory= applies only to state dicts")
        return obj, "pickle"
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"model file {path!r} holds a {type(obj).__name__}"
                         f"{' with keys ' + repr(list(obj)[:5]) if isinstance(obj, dict) else ''}, not a module "
                         "or a state dict (a mapping from parameter names to tensors)")
    if factory is None:
        raise ValueError(f"model file {path!r} holds a state dict (weights only); pass "
                         "factory='package.module:callable' naming a function that builds the module "
                         "(CLI: --factory), or save the whole module (torch.save(model)) or a TorchScript "
                         "module (torch.jit.save)")
    build = _resolve_factory(factory)
    try:
        module = build()
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"factory {_factory_name(factory)!r} raised {type(e).__name__}: {e}") from None
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"factory {_factory_name(factory)!r} returned a {type(module).__name__}, not a "
                         "torch.nn.Module")
    try:
        module.load_state_dict(obj, strict=True)
    except RuntimeError as e:
        raise ValueError(f"the state dict in {path!r} does not fit the module built by "
                         f"{_factory_name(factory)!r}: {' '.join(str(e).split())[:400]}") from None
    return module, "state_dict+factory"


# -------------------------------------------------------------------------------------------- ONNX loading
def _onnx_providers(device, providers):
    if device is None:
        return providers
    if providers is not None:
        raise ValueError(f"give either device={device!r} or providers={providers!r} for an ONNX model, not both")
    dev = str(device)
    if dev == "cpu":
        return ["CPUExecutionProvider"]
    if dev == "cuda" or dev.startswith("cuda:"):
        idx = int(dev.split(":")[1]) if ":" in dev else 0
        return [("CUDAExecutionProvider", {"device_id": idx}), "CPUExecutionProvider"]
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N' for an ONNX model, got {device!r}")


def _check_onnx_file(path: str) -> None:
    head = _head(path)
    if head == _ZIP_MAGIC:
        raise ValueError(f"model file {path!r} is not an ONNX model: it is a zip archive (a torch .pt file "
                         "written by torch.save or torch.jit.save?); give it a .pt suffix")
    if head[:1] == b"\x80":
        raise ValueError(f"model file {path!r} is not an ONNX model: it is a Python pickle (a torch .pt file?)")
    if not head:
        raise ValueError(f"model file {path!r} is empty")


def _make_onnx(path: str, *, sigma, batch_size, device, simplex, temperature, input_shape, num_classes, normalize,
               sampler_kwargs):
    from .onnx_sampler import OnnxSampler

    _check_onnx_file(path)
    kw = dict(sampler_kwargs)
    kw["providers"] = _onnx_providers(device, kw.get("providers"))
    # no spinning threads between runs: they take CPU from the bounds computed between model calls
    # (benchmarks/pipeline.py measured the exact bound's share of a run falling several-fold with spinning)
    from .export import ort_session_options

    kw["session_options"] = ort_session_options(kw.get("session_options"))
    try:
        return OnnxSampler(path, sigma=sigma, batch_size=batch_size, simplex=simplex, temperature=temperature,
                           normalize=normalize, num_classes=num_classes, input_shape=input_shape, **kw)
    except (ValueError, TypeError):
        raise
    except Exception as e:  # noqa: BLE001 - onnxruntime's InvalidProtobuf, Fail, InvalidGraph, ...
        if type(e).__module__.startswith("onnxruntime"):
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"model file {path!r} is not a valid ONNX model (onnxruntime: {msg})") from None
        raise


# -------------------------------------------------------------------------------------------------- public
def load_module(model, factory=None):
    """``(module, format)``: the torch module of a ``.pt``/``.pth`` file (or the module itself), in eval mode.

    The torch half of :func:`load_sampler`, same rules (``weights_only=True`` first; full unpickling only for
    a pickled module, which runs code: trusted files only). ONNX files are refused (they have no torch
    module).
    """
    if _is_torch_module(model):
        if factory is not None:
            raise ValueError("factory= applies only to a state-dict file; model is already a torch.nn.Module")
        return model.eval(), "module"
    if not isinstance(model, (str, bytes, os.PathLike)):
        raise ValueError(f"model must be a torch file path (.pt, .pth) or a torch.nn.Module, got "
                         f"{type(model).__name__}")
    path = _check_path(model)
    if _suffix_kind(path) != "torch":
        raise ValueError(f"model file {path!r} is not a torch file (.pt, .pth)")
    module, fmt = _load_torch_module(path, factory)
    return module.eval(), fmt


def load_sampler(model, *, sigma, batch_size=1000, device=None, simplex="hard", temperature=1.0, input_shape=None,
                 num_classes=None, normalize=None, factory=None, backend=None, **sampler_kwargs):
    """A sampler for a model file or an in-memory torch module: the one model loader.

    Parameters
    ----------
    model : str, path or torch.nn.Module
        A ``.onnx`` file; a ``.pt``/``.pth`` file holding a TorchScript module, a pickled ``nn.Module`` or a
        state dict (then ``factory`` is required); or an ``nn.Module`` object.
    sigma : float
        Noise standard deviation (> 0), in input space (before ``normalize``).
    batch_size : int
        Noisy copies per forward pass.
    device : str, optional
        Torch device; for ONNX ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` choose the execution providers.
        Default: CUDA when available, else CPU.
    simplex : {"hard", "softmax", "sparsemax"}
    temperature : float
        As in :class:`backends.torch_sampler.TorchSampler`.
    input_shape : tuple of int, optional
        Shape of one input (no batch axis). Default: the ONNX graph's static input shape, else the shape of
        the first input sampled.
    num_classes : int, optional
        Checked against the model's output width (a ``ValueError`` if they differ). Default: found by one
        forward pass.
    normalize : (mean, std), optional
        The model sees ``(x + eps - mean) / std``.
    factory : str or callable, optional
        ``"package.module:callable"`` building the empty module for a state-dict file; refused for any other
        kind of model.
    backend : {None, "torch", "onnx", "auto"}
        ``None``: ONNX files run on onnxruntime, torch models on torch; ``"torch"`` / ``"onnx"``: the same,
        but a model of the other kind is refused. ``"auto"``: a torch model is exported
        to ONNX once (cached by its hash) and runs on onnxruntime if its logits agree with torch to 1e-5 on a
        probe batch, else on torch with a warning (:func:`backends.export.auto_sampler`: NumPy noise on both
        paths, needs ``input_shape`` or ``model.input_shape``; extra keywords ``probe``, ``atol``,
        ``cache_dir``, ``session_options``). ONNX files are unaffected.
    **sampler_kwargs
        Passed to the sampler's constructor (e.g. ``noise=`` for torch, ``providers=``, ``input_name=`` or
        ``session_options=`` for ONNX; intra-op spinning is turned off in the session options either way).
        Torch models are sampled with ``noise="numpy"`` (:data:`TORCH_DEFAULT_NOISE`) unless ``noise=`` is
        given: the ONNX sampler's noise stream, so the same model gives the same counts and certificates
        whether it is loaded as a pickle, TorchScript, a state dict or its ONNX export. ``noise="torch"``
        draws on the device instead (saves a host-to-device copy per batch on a GPU; other, equally valid,
        draws).

    Returns
    -------
    sampler : backends.torch_sampler.TorchSampler or backends.onnx_sampler.OnnxSampler
        With two extra attributes: ``model_info`` (the dict of :func:`model_identity`) and ``model_hash``
        (its first 16 hex digits, recorded by :func:`radius.certify_dataset` as the model's identity).

    Raises
    ------
    ValueError
        A missing file, an unknown suffix, a file that is not what its suffix says (naming the file; no
        protobuf or unpickling traceback), a state dict without ``factory`` or one that does not fit it, a
        ``factory`` given for anything but a state dict, a class count that differs from ``num_classes``.

    Notes
    -----
    ``torch.load`` runs with ``weights_only=True`` first; a pickled module needs full unpickling, which can
    run code: load those only from sources you trust (module docstring, "Safety of torch.load").

    Examples
    --------
    >>> import torch, numpy as np
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> s = load_sampler(net, sigma=0.5, device="cpu")
    >>> c = s.counts(np.zeros(4, dtype=np.float32), n=100, seed=0)  # input shape (4,) fixed here
    >>> s.num_classes, int(c.sum()), s.model_info["format"]
    (3, 100, 'module')
    """
    from .base import check_num_classes, check_sigma

    sigma = check_sigma(sigma)
    num_classes = check_num_classes(num_classes)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if input_shape is not None:
        input_shape = _check_input_shape(input_shape)
    if _is_torch_module(model):
        if factory is not None:
            raise ValueError("factory= applies only to a state-dict file; model is already a torch.nn.Module")
        module, fmt, path = model, "module", None
    elif isinstance(model, (str, bytes, os.PathLike)):
        path = _check_path(model)
        if _suffix_kind(path) == "onnx":
            if backend == "torch":
                raise ValueError(f"backend='torch' needs a torch model, got the ONNX file {path!r}")
            if factory is not None:
                raise ValueError(f"factory= applies only to torch state-dict files, not to the ONNX model {path!r}")
            sampler = _make_onnx(path, sigma=sigma, batch_size=batch_size, device=device, simplex=simplex,
                                 temperature=temperature, input_shape=input_shape, num_classes=num_classes,
                                 normalize=normalize, sampler_kwargs=sampler_kwargs)
            return _tag(sampler, {"path": path, "sha256": _file_sha256(path), "format": "onnx"})
        module, fmt = _load_torch_module(path, factory)
    else:
        raise ValueError(f"model must be a file path (.onnx, .pt, .pth) or a torch.nn.Module, got "
                         f"{type(model).__name__}")
    if backend == "onnx":
        raise ValueError(f"backend='onnx' needs an ONNX model, got a torch model ({path or type(model).__name__}); "
                         "use backend='auto' to export a torch model to ONNX")
    kw = dict(sampler_kwargs)
    kw.setdefault("noise", TORCH_DEFAULT_NOISE)  # the ONNX sampler's stream: same counts whatever the format
    if backend == "auto":  # torch model at ONNX speed when the export checks out (backends/export.py)
        from .export import auto_sampler

        sampler = auto_sampler(module, sigma=sigma, batch_size=batch_size, device=device, simplex=simplex,
                               temperature=temperature, normalize=normalize, num_classes=num_classes,
                               input_shape=input_shape, **kw)
    else:
        from .torch_sampler import TorchSampler

        sampler = TorchSampler(module, sigma=sigma, batch_size=batch_size, device=device, simplex=simplex,
                               temperature=temperature, normalize=normalize, num_classes=num_classes,
                               input_shape=input_shape, **kw)
    sha = _module_sha256(module) if path is None else _file_sha256(path)
    return _tag(sampler, {"path": path, "sha256": sha, "format": fmt})


def model_identity(model, factory=None) -> Dict[str, Any]:
    """``{"path", "sha256", "format"}`` of a model, as :func:`load_sampler` records it.

    Parameters
    ----------
    model : str, path or torch.nn.Module
    factory : str or callable, optional
        As in :func:`load_sampler` (only for state-dict files).

    Returns
    -------
    dict
        ``path``: the file (None for an in-memory module); ``sha256``: hex digest of the file's bytes (for a
        module: of its class name and its state dict's names, dtypes, shapes and bytes); ``format``: one of
        :data:`FORMATS`. Telling a pickled module from a state dict reads the file with
        ``torch.load(weights_only=True)`` (no code runs).

    Examples
    --------
    >>> from backends.models import default_model_path
    >>> info = model_identity(default_model_path(0.25))
    >>> info["format"], len(info["sha256"])
    ('onnx', 64)
    """
    if _is_torch_module(model):
        if factory is not None:
            raise ValueError("factory= applies only to a state-dict file; model is already a torch.nn.Module")
        return {"path": None, "sha256": _module_sha256(model), "format": "module"}
    if not isinstance(model, (str, bytes, os.PathLike)):
        raise ValueError(f"model must be a file path (.onnx, .pt, .pth) or a torch.nn.Module, got "
                         f"{type(model).__name__}")
    path = _check_path(model)
    if _suffix_kind(path) == "onnx":
        _check_onnx_file(path)
        fmt = "onnx"
    else:
        kind = _torch_file_kind(path)
        if kind == "torchscript":
            fmt = "torchscript"
        else:
            import torch

            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
                fmt = "state_dict+factory" if isinstance(obj, dict) else "pickle"
            except pickle.UnpicklingError as e:
                if "weights only load failed" not in str(e).lower():
                    raise ValueError(f"model file {path!r} is not a readable torch file ({e})") from None
                fmt = "pickle"
            except Exception as e:  # noqa: BLE001
                raise ValueError(f"model file {path!r} is not a readable torch file ({type(e).__name__})") from None
        if fmt == "state_dict+factory" and factory is None:
            raise ValueError(f"model file {path!r} holds a state dict; pass factory='package.module:callable'")
        if fmt != "state_dict+factory" and factory is not None:
            raise ValueError(f"factory= applies only to state-dict files; {path!r} is a {fmt} file")
    return {"path": path, "sha256": _file_sha256(path), "format": fmt}


# ------------------------------------------------------------------------------------------------ helpers
def _is_torch_module(model) -> bool:
    import sys

    torch = sys.modules.get("torch")  # a module object exists only if torch was imported
    return torch is not None and isinstance(model, torch.nn.Module)


def _check_input_shape(shape):
    try:
        dims = tuple(shape)
    except TypeError:
        dims = (shape,)
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) and not hasattr(d, "__index__")
                       for d in dims) or any(int(d) < 1 for d in dims):
        raise ValueError(f"input_shape must be a non-empty tuple of positive integers, got {shape!r}")
    return tuple(int(d) for d in dims)


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _module_sha256(module) -> str:
    h = hashlib.sha256()
    cls = type(module)
    h.update(f"{cls.__module__}.{cls.__qualname__}\n".encode())
    for name, t in module.state_dict().items():
        arr = t.detach().cpu().contiguous()
        h.update(f"{name}:{arr.dtype}:{tuple(arr.shape)}\n".encode())
        h.update(arr.view(-1).view(__import__("torch").uint8).numpy().tobytes() if arr.numel() else b"")
    return h.hexdigest()


def _tag(sampler, info):
    sampler.model_info = dict(info)
    sampler.model_hash = info["sha256"][:16]
    return sampler
