"""Import costs: `import confbounds` (and backends, radius) must not pull in heavy modules.

Each check runs a fresh interpreter and reads ``sys.modules`` (no timings).
``import confbounds`` resolves its public names lazily (module ``__getattr__``),
so it imports neither NumPy, Numba nor SciPy; a bound pulls in only what its
module needs (``scipy.stats`` only through ``confbounds.coverage``).
"""
import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "onnxruntime", "cvxpy", "ray", "matplotlib")
# the bare `scipy` package is cheap and Numba imports it; its heavy parts are watched one by one
WATCH = HEAVY + ("numpy", "numba", "scipy.special", "scipy.stats", "hypothesis")


def _loaded_after(stmt, watch=HEAVY):
    code = f"import sys; {stmt}; print(','.join(m for m in {tuple(watch)!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_confbounds_is_light():
    assert _loaded_after("import confbounds, confbounds.coverage") == ""


def test_import_confbounds_imports_almost_nothing():
    assert _loaded_after("import confbounds", WATCH) == ""


@pytest.mark.parametrize("name, allowed", [
    ("phi_inv_taylor", {"numpy"}),
    ("betting_ci", {"numpy", "numba"}),
    ("empirical_bernstein", {"numpy", "numba"}),
    ("tail_prob", {"numpy", "numba"}),
    ("margin_lower_bound", {"numpy", "numba", "scipy.special"}),
    ("clopper_pearson", {"numpy", "numba", "scipy.special"}),
])
def test_a_bound_imports_only_what_it_needs(name, allowed):
    loaded = _loaded_after(f"import confbounds; confbounds.{name}", WATCH)
    got = set(loaded.split(",")) - {""}
    assert got <= allowed, (name, got - allowed)
    assert "numpy" in got  # the check sees the modules the bound really imports


def test_coverage_imports_scipy_stats_on_use():
    assert "scipy.stats" in _loaded_after("import confbounds; confbounds.coverage", WATCH).split(",")


def test_lazy_names_resolve_to_the_submodule_objects():
    code = ("import json, importlib, confbounds; print(json.dumps([n for n, m in confbounds._LAZY.items() "
            "if getattr(confbounds, n) is not getattr(importlib.import_module('confbounds.' + m), n)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
    code = "import confbounds; print(sorted(confbounds.__all__) == sorted(set(dir(confbounds)) & set(confbounds.__all__)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "True"


def test_unknown_attribute_is_an_attribute_error():
    code = "import confbounds\ntry:\n    confbounds.nope\nexcept AttributeError as e:\n    print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "nope" in out.stdout


def test_jit_cache_locator_installed_before_the_first_dispatcher():
    code = ("import confbounds.trinomial\nconfbounds.lazyjit.materialize()\nfrom numba.core import caching\n"
            "impl = getattr(caching, 'CacheImpl', None) or caching._CacheImpl\n"
            "print([c.__name__ for c in impl._locator_classes][:3])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "ConfboundsCacheLocator" in out.stdout


def test_backends_and_radius_are_lazy():
    assert _loaded_after("import backends, radius") == ""


def test_submodules_are_attributes():
    code = "import confbounds; print(confbounds.margin.__name__, confbounds.trinomial.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["confbounds.margin", "confbounds.trinomial"]
