"""A read-only install compiles once per machine: the second process finds the Numba cache.

The package is installed with pip into a temporary ``--target`` directory which
is then made read-only (``chmod -R a-w``; for root, who ignores permission
bits, a read-only bind mount in a private mount namespace via ``unshare -m``).
Two fresh processes call :func:`confbounds.betting_ci`.  The checks read
Numba's own per-dispatcher statistics (``Dispatcher.stats``: cache path,
cache hits and misses) and the cache files on disk; no timings.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, os, sys
import numpy as np
import confbounds
from numba.core.registry import CPUDispatcher
pkg = os.path.dirname(confbounds.__file__)
try:  # is the package directory really read-only for this process?
    open(os.path.join(pkg, "__probe_write__"), "w").close()
    os.remove(os.path.join(pkg, "__probe_write__"))
    writable = True
except OSError:
    writable = False
x = np.random.default_rng(0).random(500)
low = confbounds.betting_ci(x, 0.05)
from confbounds import betting, jitcache
paths, hits, misses = set(), 0, 0
for obj in vars(betting).values():
    if isinstance(obj, CPUDispatcher) and obj.stats.cache_path:
        st = obj.stats
        if st.cache_hits or st.cache_misses:
            paths.add(st.cache_path)
            hits += sum(st.cache_hits.values())
            misses += sum(st.cache_misses.values())
print(json.dumps({"file": confbounds.__file__, "writable": writable, "low": low, "paths": sorted(paths),
                  "hits": hits, "misses": misses, "installed": jitcache.installed(),
                  "numba_dir": jitcache.numba_cache_dir()}))
"""


def _install(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "confbounds", src / "confbounds", ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-compile", "--no-index", "--target", str(site), str(src)],
                   check=True, capture_output=True, text=True, cwd=tmp_path)
    assert (site / "confbounds" / "betting.py").is_file()
    for p in sorted(site.rglob("*"), reverse=True) + [site]:  # chmod -R a-w
        mode = p.stat().st_mode
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return site


def readonly_runner(site: Path):
    """argv prefix that runs a command with ``site`` read-only for this process, or None."""
    if os.geteuid() != 0:
        return []
    if shutil.which("unshare") is None:
        return None
    s = str(site)
    wrap = ["unshare", "-m", "sh", "-c",
            f"mount --bind '{s}' '{s}' && mount -o remount,ro,bind '{s}' '{s}' && exec \"$@\"", "sh"]
    ok = subprocess.run(wrap + ["true"], capture_output=True)
    return wrap if ok.returncode == 0 else None


def _probe(prefix, site, tmp_path, **extra_env):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NUMBA_CACHE") and k not in ("CONFBOUNDS_CACHE_DIR", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    env.update(extra_env)
    out = subprocess.run(prefix + [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def readonly_site(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ro")
    (tmp_path / "home").mkdir()
    site = _install(tmp_path)
    prefix = readonly_runner(site)
    if prefix is None:
        pytest.skip("running as root without unshare/mount: cannot make a read-only directory")
    yield tmp_path, site, prefix
    for p in [site] + list(site.rglob("*")):
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_second_process_finds_the_cache(readonly_site):
    tmp_path, site, prefix = readonly_site
    first = _probe(prefix, site, tmp_path)
    second = _probe(prefix, site, tmp_path)
    expected_dir = tmp_path / "xdg" / "confbounds" / "numba"
    for run in (first, second):
        assert run["file"] == str(site / "confbounds" / "__init__.py")
        assert run["writable"] is False  # the premise: the package directory is read-only
        assert run["installed"] is True
        assert run["numba_dir"] == str(expected_dir)
        assert len(run["paths"]) == 1 and Path(run["paths"][0]).parent == expected_dir
    assert first["low"] == second["low"]
    # first process: compiled every kernel and wrote the cache.  Second: loaded the entry kernel from it
    # (its callees are linked into its machine code, so they are not looked up) and compiled nothing.
    assert first["misses"] >= 1 and first["hits"] == 0
    assert second["hits"] >= 1 and second["misses"] == 0
    cache = Path(first["paths"][0])
    assert sorted(p.suffix for p in cache.iterdir()) and {p.suffix for p in cache.iterdir()} == {".nbi", ".nbc"}
    assert not list(site.rglob("*.nbi"))  # nothing was (or could be) written next to the package


def test_user_numba_cache_dir_wins(readonly_site):
    tmp_path, site, prefix = readonly_site
    user = tmp_path / "user_numba"
    run = _probe(prefix, site, tmp_path, NUMBA_CACHE_DIR=str(user))
    assert len(run["paths"]) == 1 and Path(run["paths"][0]).parent == user
    assert list(user.rglob("*.nbi"))


def test_no_writable_home_falls_back_to_a_private_tmp_dir(readonly_site):
    """Package and user cache both unwritable: Numba alone would raise at import; we use <tmp>/confbounds-<uid>."""
    tmp_path, site, prefix = readonly_site
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    run = _probe(prefix, site, tmp_path, HOME=str(blocker), XDG_CACHE_HOME=str(blocker / "cache"),
                 TMPDIR=str(tmpdir))
    expected = tmpdir / f"confbounds-{os.getuid()}" / "numba"
    assert len(run["paths"]) == 1 and Path(run["paths"][0]).parent == expected
    assert stat.S_IMODE((tmpdir / f"confbounds-{os.getuid()}").stat().st_mode) == 0o700
    assert list(expected.rglob("*.nbi"))
