"""radius: certified radii, the certify pipeline and the ``confbounds`` CLI."""
from __future__ import annotations

import importlib

_LAZY = {
    "r_mono": "radius.radii",
    "r2": "radius.radii",
    "r1": "radius.radii",
    "r_mono_lip": "radius.radii",
    "r_multi_lip": "radius.radii",
    "Certificate": "radius.certify",
    "certify": "radius.certify",
    "certify_dataset": "radius.pipeline",
    "recertify": "radius.pipeline",
    "certify_sequential": "radius.sequential",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'radius' has no attribute {name!r}")
