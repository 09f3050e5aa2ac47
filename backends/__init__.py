"""backends: turn PyTorch or ONNX models into sample arrays (counts or score matrices).

Heavy frameworks are imported lazily: ``import backends`` imports neither torch
nor onnxruntime; ``backends.TorchSampler`` imports torch on first access.
"""
from __future__ import annotations

import importlib

from .base import Sampler, ArraySampler

_LAZY = {
    "TorchSampler": "backends.torch_sampler",
    "OnnxSampler": "backends.onnx_sampler",
    "hardmax": "backends.simplex",
    "softmax": "backends.simplex",
    "sparsemax": "backends.simplex",
    "product_upper_bound": "backends.lipschitz",
    "default_model_path": "backends.models",
    "load_digits_split": "backends.models",
    "load_sampler": "backends.loading",
    "model_identity": "backends.loading",
    "load_module": "backends.loading",
}

__all__ = ["Sampler", "ArraySampler", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'backends' has no attribute {name!r}")
