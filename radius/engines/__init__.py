"""Execution engines: each runs a :class:`radius.run.spec.RunSpec` over a data set; none parses flags.

* :mod:`radius.engines.local` -- :func:`run_local`, this process (bounds overlap sampling);
* :mod:`radius.engines.sequential` -- :func:`run_sequential`, anytime-valid sequential sampling;
* :mod:`radius.engines.ray_engine` -- :func:`run_ray`, the same runs spread over Ray actors.

Nothing here imports Ray at import time; ``import radius.engines`` is light.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "run_local": "radius.engines.local",
    "run_sequential": "radius.engines.sequential",
    "run_ray": "radius.engines.ray_engine",
    "certify_dataset_ray": "radius.engines.ray_engine",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'radius.engines' has no attribute {name!r}")
