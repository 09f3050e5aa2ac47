"""radius: certified radii, the run layer, the engines and the ``confbounds`` CLI."""
from __future__ import annotations

import importlib

_LAZY = {
    "r_mono": "radius.radii",
    "r2": "radius.radii",
    "r1": "radius.radii",
    "r_mono_lip": "radius.radii",
    "r_multi_lip": "radius.radii",
    "Certificate": "radius.certificate",
    "certify": "radius.certificate",
    "certify_dataset": "radius.pipeline",
    "recertify": "radius.pipeline",
    "certify_sequential": "radius.sequential",
    "certify_dataset_sequential": "radius.engines.sequential",
    "RunSpec": "radius.run.spec",
    "SequentialSpec": "radius.run.spec",
    "summarize": "radius.report",
    "certify_dataset_ray": "radius.engines.ray_engine",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'radius' has no attribute {name!r}")
