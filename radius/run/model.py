"""Build a run's sampler from a model file, through the one model loader (:mod:`backends.loading`).

:func:`open_sampler` is what the CLI and the Ray actors call: it forwards the
spec's score map (simplex, temperature) and, only when they differ from the
defaults, its ``noise`` (with ``grid`` and ``clip`` for sound noise, which a
torch model draws on its device) and ``backend`` (with the default float noise a torch
model draws NumPy's noise stream, as the ONNX sampler does, so every export of
one model gives the same counts and certificates); the loader's refusal of a value it
does not support becomes a ``ValueError`` naming the flag.  :func:`sampler_identity`
gives the identity recorded in the metadata of a run on an in-memory sampler;
:func:`noise_fields` the sampler's noise description and threshold-rounding bound.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .files import array_hash
from .spec import PROBE, RunSpec, derive_seed

__all__ = ["open_sampler", "model_identity", "sampler_identity", "default_model", "noise_fields"]


def default_model(sigma: float) -> str:
    """The shipped digits ONNX model for ``sigma`` (``--model`` omitted)."""
    from backends.models import default_model_path

    return str(default_model_path(sigma))


def model_identity(model: str, factory: Optional[str] = None) -> Dict[str, Any]:
    """The model's identity for the metadata (the loader's, without the path: a moved file is the same model)."""
    from backends.loading import model_identity as ident

    d = dict(ident(model, factory=factory)) if factory is not None else dict(ident(model))
    d.pop("path", None)
    return d


def open_sampler(model: str, spec: RunSpec, *, batch_size: int = 1000, device: Optional[str] = None,
                 input_shape: Optional[Sequence[int]] = None, num_classes: Optional[int] = None,
                 normalize: Optional[Tuple[Any, Any]] = None, factory: Optional[str] = None,
                 **sampler_kwargs) -> Tuple[Any, Dict[str, Any]]:
    """``(sampler, identity)`` for a model file under ``spec`` (sigma, simplex, temperature, noise, backend)."""
    from backends.loading import load_sampler

    if not isinstance(model, (str, os.PathLike)) or not os.path.exists(model):
        raise ValueError(f"--model file {str(model)!r} does not exist")
    kw: Dict[str, Any] = dict(sampler_kwargs)
    identity = model_identity(model, factory)
    if spec.noise != "float":
        kw["noise"] = spec.noise
        if spec.noise == "sound":  # torch samplers draw it on the device (torch.randint), ONNX on the host
            kw["grid"] = spec.grid
            kw["clip"] = tuple(spec.clip)
    elif identity.get("format") != "onnx" and spec.backend != "onnx":
        # torch samplers draw the same float Gaussian noise as the ONNX sampler (NumPy's stream from the
        # input's seed), so every format of one model gives the same counts and the same certificates
        kw.setdefault("noise", "numpy")
    if spec.backend is not None:
        kw["backend"] = spec.backend
    if spec.mode == "scores":
        kw["simplex"] = spec.simplex
        if spec.temperature is not None:
            kw["temperature"] = spec.temperature
    try:
        sampler = load_sampler(model, sigma=spec.sigma, batch_size=batch_size, device=device,
                               input_shape=input_shape, num_classes=num_classes, normalize=normalize,
                               factory=factory, **kw)
    except TypeError as e:  # an installed loader without this option
        raise ValueError(f"the installed model loader does not accept these options ({e}); "
                         f"noise={spec.noise!r}, backend={spec.backend!r}") from None
    return sampler, identity


def sampler_identity(sampler, x0: np.ndarray) -> str:
    """Identity of an in-memory sampler: ``sampler.model_hash`` if it has one, else a fingerprint.

    The fingerprint is a hash of the sampler's counts on ``x0`` with a fixed
    seed (two models that differ on that probe get different identities; a
    heuristic, validity does not depend on it).
    """
    h = getattr(sampler, "model_hash", None)
    if h:
        return str(h)
    probe = sampler.counts(x0, 256, derive_seed(0, 0, PROBE))
    return f"{type(sampler).__name__}:probe:{array_hash(np.asarray(probe, dtype=np.int64))}"


def noise_fields(sampler, spec: RunSpec, dim: int) -> Dict[str, Any]:
    """``{"noise_tv", "noise_detail"}`` of a sound-noise sampler for :meth:`RunSpec.with_model` (``{}`` for float).

    The sampler's noise must be the spec's: a sampler that draws sound noise
    (``sampler.sound`` set) under a float spec, or the reverse, is refused, as
    is one whose grid, clip or sigma differ (checked by the spec).
    ``noise_tv = sampler.sound.tv_bound(dim)``, ``dim`` the number of
    coordinates of one input (theory §7; docs/soundness.md).

    >>> from backends.base import ArraySampler
    >>> s = ArraySampler(lambda z: z[:, :2], 2, sigma=0.5, noise="sound", grid="1/16", clip=(0, 1))
    >>> f = noise_fields(s, RunSpec(sigma=0.5, noise="sound", grid="1/16", clip=(0, 1), reduction="cohen",
    ...                             radius="Rmono"), 64)
    >>> f["noise_detail"]["grid"], 0 < f["noise_tv"] < 1e-15
    ('1/16', True)
    """
    sound = getattr(sampler, "sound", None)
    if spec.noise != "sound":
        if sound is not None:
            raise ValueError(f"the sampler draws sound noise ({sound!r}) but the run has noise={spec.noise!r}; "
                             "give noise='sound' with its grid and clip")
        return {}
    if sound is None:
        raise ValueError(f"noise='sound' (grid {spec.grid}) but the sampler draws "
                         f"{getattr(sampler, 'noise', 'float')!r} noise; build it with noise='sound'")
    return {"noise_tv": float(sound.tv_bound(int(dim))), "noise_detail": sound.describe()}
