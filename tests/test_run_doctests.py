"""The docstring examples of the run layer run (doctest)."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["radius.run.spec", "radius.run.files", "radius.run.step", "radius.run.data", "radius.run.progress",
           "radius.engines.local", "radius.engines.sequential", "radius.pipeline", "radius.report",
           "radius.sequential"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert res.failed == 0
    assert res.attempted > 0 or name in ("radius.run.progress",), f"{name} has no examples"
