"""Execution engines of :func:`radius.certify_dataset`-style runs.

* :mod:`radius.engines.local` -- the per-input unit of work (:func:`certify_one`)
  and the resume bookkeeping (:func:`open_run`) shared by every engine.
* :mod:`radius.engines.ray_engine` -- :func:`certify_dataset_ray`, the same run
  spread over Ray actors (one sampler per actor, any number of GPUs or nodes).

Nothing here imports Ray at import time; ``import radius.engines`` is light.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "certify_one": "radius.engines.local",
    "InputResult": "radius.engines.local",
    "open_run": "radius.engines.local",
    "ModelSpec": "radius.engines.ray_engine",
    "certify_dataset_ray": "radius.engines.ray_engine",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'radius.engines' has no attribute {name!r}")
