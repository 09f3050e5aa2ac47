"""Kernels compiled ahead of time (``confbounds.aot``): used, exact, and equal to the just-in-time kernels.

Expected values come from the same public functions run with ``CONFBOUNDS_AOT=0`` (every kernel compiled
by Numba just in time, the path of the previous releases): both paths must give bit-identical results
(compared as ``float.hex``).  No timings here; speed is measured by ``benchmarks/coldstart.py``.

The compiled module must be built for these sources (``python -m confbounds.aot build``, which
``scripts/setup.sh`` runs); a test run that sets ``CONFBOUNDS_AOT=0`` skips the checks that need it.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from confbounds import aot
from test_readonly_install import readonly_runner

ROOT = Path(__file__).resolve().parents[1]

needs_module = pytest.mark.skipif(not aot.enabled(), reason="CONFBOUNDS_AOT=0: the just-in-time path only")

BATTERY = r"""
import json, sys
import numpy as np
import confbounds
from confbounds import nuisance, seqmargin, trinomial
from confbounds.binomial import binomial_tail_bound
from confbounds.mixture import beta_binomial_cs
out = []
def put(v):
    for x in np.atleast_1d(np.asarray(v, dtype=float)).ravel():
        out.append(float(x).hex())
for margin in ("linear", "probit", "taylor"):
    for (x1, x2, n, a) in [(80, 10, 100, 0.05), (15, 3, 20, 0.2), (600, 300, 1000, 1e-3), (975, 9, 1000, 1e-3),
                           (6000, 2500, 10000, 1e-4), (60000, 30000, 100000, 1e-3), (40, 0, 40, 0.01)]:
        for method, stats in (("exact", confbounds.margin.STATISTICS), ("bonferroni", ("bonferroni",))):
            for st in stats:
                if st == "cohen" and margin != "probit":
                    continue
                if n > 1000 and st not in ("bonferroni", "difference"):
                    continue
                put(confbounds.margin_lower_bound(x1, x2, n, a, margin=margin, method=method, statistic=st))
put(confbounds.margin_lower_bound(70, 20, 100, 0.05, statistic='difference', berger_boos=0.001))
put(confbounds.clopper_pearson([0, 1, 5, 999, 1000], 1000, 1e-3, side="two-sided"))
put(confbounds.clopper_pearson(2, 10**9, 1e-15, side="upper"))
put(confbounds.clopper_pearson(np.arange(20), 20, 0.05, randomized=3))
put(binomial_tail_bound(np.arange(10), 30, 0.2, side="upper"))
rng = np.random.default_rng(0)
y = rng.random((300, 3))
for method in ("hedged", "prpl-eb"):
    put(confbounds.betting_ci(y, 0.05, method=method))
    put(confbounds.betting_ci(y[:, 1], 0.01, side="two-sided", method=method))
put(confbounds.betting_cs(y[:100, 0], 0.05))
put(confbounds.empirical_bernstein(y, 0.05))
put(confbounds.empirical_bernstein(y[:, 0], 0.05, side="upper"))
put(beta_binomial_cs(np.array([5, 50, 90]), np.array([10, 100, 100]), 0.01))
put(seqmargin.dirichlet_margin_certifies(np.array([80, 15, 5]), 0.5, 0.01))
put(seqmargin.dirichlet_margin_lower(np.array([80, 15, 5]), 0.01, margin="linear"))
put(confbounds.tail_prob((0.5, 0.2), 60, 10))
put(np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in trinomial.statistic_pmf((0.5, 0.2), 12)]))
put(trinomial.cdf_bounds((0.5, 0.2), 60, 10))
put(confbounds.certified_sup(10, 60, 0.1).upper)
put(nuisance.taylor_probit(np.linspace(0.01, 0.99, 7)))
numba_imported = "numba" in sys.modules
from confbounds.betting import PARALLEL_MIN_ELEMENTS  # the parallel kernel is compiled just in time
put(confbounds.betting_ci(rng.random((PARALLEL_MIN_ELEMENTS // 2 + 1, 2)), 0.05))
print(json.dumps({"values": out, "numba_imported": numba_imported,
                  "loaded": confbounds.aot.loaded_path()}))
"""


def _run(code, **env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE") and k != aot.ENV}
    env.update(PYTHONPATH=str(ROOT), **env_extra)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_module
def test_the_module_is_built_for_these_sources():
    path = aot.loaded_path()
    assert path is not None, ("no compiled kernels for these sources: run `python -m confbounds.aot build` "
                              f"(key {aot.key()}, searched {aot.search_dirs()}); without a C compiler, run the "
                              "tests with CONFBOUNDS_AOT=0")
    assert Path(path).name.startswith(aot.module_name())
    module = aot.load()
    for qual, sigs in aot.KERNELS.items():  # every kernel of the table is exported, once per signature
        for j in range(len(sigs)):
            assert callable(getattr(module, qual.replace(".", "__") + f"__{j}"))


@needs_module
def test_compiled_and_just_in_time_kernels_agree_bit_for_bit(tmp_path):
    jit = _run(BATTERY, CONFBOUNDS_AOT="0", NUMBA_CACHE_DIR=str(tmp_path))
    pre = _run(BATTERY, NUMBA_CACHE_DIR=str(tmp_path / "fresh"))
    assert jit["loaded"] is None and jit["numba_imported"]
    assert pre["loaded"] is not None
    assert len(pre["values"]) == len(jit["values"]) > 300
    assert pre["values"] == jit["values"]
    # every call of the battery ran compiled code: Numba itself was never imported
    assert pre["numba_imported"] is False


@needs_module
def test_first_bounds_compile_nothing(tmp_path):
    code = ("import json, sys, numpy as np, confbounds\n"
            "confbounds.margin_lower_bound(80, 10, 100, 0.05)\n"
            "confbounds.betting_ci(np.random.default_rng(0).random(1000), 0.05)\n"
            "confbounds.clopper_pearson(3, 10, 0.05)\n"
            "print(json.dumps({'numba': 'numba' in sys.modules, 'cache': __import__('os').listdir(%r)}))"
            % str(tmp_path))
    got = _run(code, NUMBA_CACHE_DIR=str(tmp_path))
    assert got == {"numba": False, "cache": []}


def test_other_argument_types_run_just_in_time():
    """The exports check nothing themselves; the guard sends every other type to the Numba dispatcher."""
    from confbounds import binomial, trinomial

    A = np.linspace(0.0, 1.0, 9)
    B = np.linspace(0.0, 0.5, 9)
    ref = trinomial._staircase_call(A, B, 0.1)
    for a, b, t in [(A.astype(np.float32), B, 0.1), (np.repeat(A, 2)[::2], B, 0.1), (A, B, 1),
                    (A, B, np.float32(0.1)), (A.astype(np.float32), B.astype(np.float32), 0.1)]:
        got = trinomial._staircase_call(a, b, t)
        want = trinomial.staircase_table(np.asarray(a, dtype=float), np.asarray(b, dtype=float), float(t))
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(trinomial._staircase_call(A[::-1][::-1].copy(), B, 0.1), ref)
    # int where float64 is declared, numpy int64 where int64 is declared, bool where boolean is declared
    assert binomial._solve_scalar_call(1, 10, 0.05, True, 0.01) == binomial._solve_scalar_call(1.0, 10.0, 0.05,
                                                                                               True, 0.01)
    assert trinomial._kvec_difference_call(np.int64(30), 5).tolist() == trinomial._kvec_difference_call(30, 5).tolist()


def test_guard_accepts_exactly_the_declared_types():
    ns = {}
    expr = {t: aot._check("x", aot._parse(t)[0], ns, str(i))
            for i, t in enumerate(("i8", "f8", "b1", "f8:1Cr", "f8:2C", "i8:1A"))}
    ok = lambda t, x: eval(expr[t], dict(ns, x=x))  # noqa: E731
    a = np.zeros(4)
    ro = np.zeros(4)
    ro.flags.writeable = False
    assert ok("i8", 3) and ok("i8", np.int64(3)) and not ok("i8", True) and not ok("i8", 3.0)
    assert not ok("i8", 2**63) and not ok("i8", np.int32(3))
    assert ok("f8", 3.0) and ok("f8", np.float64(3)) and not ok("f8", 3) and not ok("f8", np.float32(3))
    assert ok("b1", True) and ok("b1", np.bool_(False)) and not ok("b1", 1)
    assert ok("f8:1Cr", a) and ok("f8:1Cr", ro) and not ok("f8:1Cr", a[::2]) and not ok("f8:1Cr", a.astype(np.float32))
    assert not ok("f8:1Cr", a.reshape(2, 2)) and not ok("f8:1Cr", list(a)) and not ok("f8:1Cr", a.astype(">f8"))
    assert ok("f8:2C", np.zeros((2, 2))) and not ok("f8:2C", np.zeros((2, 2)).T) and not ok("f8:2C", ro.reshape(2, 2))
    assert ok("i8:1A", np.arange(6)[::2]) and not ok("i8:1A", np.broadcast_to(np.arange(3), (3,)))
    with pytest.raises(ValueError):
        aot._parse("f4")
    with pytest.raises(ValueError):
        aot._parse("f8:1F")


def test_the_key_follows_every_source_file(tmp_path):
    pkg = tmp_path / "confbounds"
    shutil.copytree(ROOT / "confbounds", pkg, ignore=shutil.ignore_patterns("__pycache__", "_kernels_*"))
    assert aot.key(str(pkg)) == aot.key()
    with open(pkg / "trinomial.py", "a") as f:
        f.write("\n# an edit\n")
    assert aot.key(str(pkg)) != aot.key()


def _readonly(site: Path):
    for p in sorted(site.rglob("*"), reverse=True) + [site]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return readonly_runner(site)  # the same read-only mount as the Numba-cache test


@needs_module
def test_pip_install_compiles_the_kernels_into_a_read_only_package(tmp_path):
    """``pip install`` (setup.py's hook) puts the compiled module in the package: a read-only install runs
    its first bound without Numba, with the same value as the source tree."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "setup.py"):
        shutil.copy(ROOT / name, src)
    shutil.copytree(ROOT / "confbounds", src / "confbounds", ignore=shutil.ignore_patterns("__pycache__", "_kernels_*"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-compile", "--no-index", "--target", str(site), str(src)],
                   check=True, capture_output=True, text=True, cwd=tmp_path)
    built = list((site / "confbounds").glob("_kernels_*"))
    assert len(built) == 1
    prefix = _readonly(site)
    try:
        if prefix is None:
            pytest.skip("running as root without unshare/mount: cannot make a read-only directory")
        code = ("import json, sys, confbounds\nv = confbounds.margin_lower_bound(600, 300, 1000, 1e-3, margin='probit')\n"
                "print(json.dumps({'v': v.hex(), 'numba': 'numba' in sys.modules, "
                "'loaded': confbounds.aot.loaded_path(), 'file': confbounds.__file__}))")
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE") and k != aot.ENV}
        env.update(PYTHONPATH=str(site), HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
        out = subprocess.run(prefix + [sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        got = json.loads(out.stdout.strip().splitlines()[-1])
        from confbounds import margin_lower_bound

        assert got["file"] == str(site / "confbounds" / "__init__.py")
        assert got["loaded"] == str(built[0]) and got["numba"] is False
        assert got["v"] == margin_lower_bound(600, 300, 1000, 1e-3, margin="probit").hex()
    finally:
        for p in [site] + list(site.rglob("*")):
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_kernels_call_kernels_not_the_python_entry_points():
    """The ``*_call`` names bound by ``aot.bind`` are for Python callers; inside a Numba kernel they cannot be
    typed (a parallel kernel that called one failed only above the parallel size threshold)."""
    import ast

    bad = []
    for f in sorted((ROOT / "confbounds").glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.FunctionDef) and any("njit" in ast.unparse(d) for d in node.decorator_list):
                bad += [f"{f.name}:{s.lineno} {node.name} -> {s.id}" for s in ast.walk(node)
                        if isinstance(s, ast.Name) and s.id.endswith("_call")]
    assert bad == []
