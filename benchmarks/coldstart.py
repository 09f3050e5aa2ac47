"""Cold start: imports, the first bounds in a fresh process, and a read-only install's second process.

Run: ``nice .venv/bin/python benchmarks/coldstart.py`` (``--reps 1`` for a smoke run). Writes
``benchmarks/results/coldstart.json``.

Every measurement is a fresh interpreter (``subprocess``); the timed region is inside the child, which
reports wall-clock and process CPU time. "Cold" means a fresh, empty Numba cache directory for every run
(``NUMBA_CACHE_DIR=<new temp dir>``), so all kernels the call needs are compiled, unless they come from the
module compiled ahead of time (``confbounds.aot``; ``scripts/setup.sh`` builds it in the source tree, and the
read-only install below gets it from ``pip install``).  ``--jit`` adds every case with ``CONFBOUNDS_AOT=0``
(the kernels compiled just in time, as before the compiled module), in the same run.

* ``import confbounds``: the import alone.
* first ``betting_ci``: ``import numpy, confbounds`` and the data are outside the timed region; the call
  (including the lazy import of ``confbounds.betting`` and Numba, and compilation) is inside.
* first exact bound: ``confbounds.margin_lower_bound(80, 10, 100, 0.05)``, same rules.
* ``confbounds --help``: the console script's entry point ``radius.cli:main`` (whole process, interpreter
  start included), and which heavy modules it imported.
* read-only install: the package is installed with pip (which byte-compiles it and, through ``setup.py``,
  compiles the kernels ahead of time, as any install does) into a temporary ``--target`` directory made read-only
  (``chmod -R a-w``; for root a read-only bind mount via ``unshare -m``), ``HOME``/``XDG_CACHE_HOME`` point to a
  fresh directory; a first process compiles (and fills the per-user cache), then the second process's first
  exact bound and first ``betting_ci`` are timed.

``--baseline <commit>`` measures the same four cases on that commit's packages in the same run (ratios
recorded). Medians over ``--reps`` runs, compared with the numbers of issue 15 (12.9 s, 2.1-2.5 s, ~4 s, 12-50 s). The
load average is recorded: on a shared machine wall-clock times are at the mercy of other processes, CPU
times much less.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TIMER = "import time as _t\n_w, _c = _t.perf_counter(), _t.process_time()\n"
REPORT = ("import json as _j, sys as _s\n"
          "print(_j.dumps({'wall': _t.perf_counter() - _w, 'cpu': _t.process_time() - _c,"
          " 'heavy': [m for m in ('torch', 'onnxruntime', 'scipy.stats', 'scipy.special', 'numba', 'cvxpy', 'ray',"
          " 'matplotlib') if m in _s.modules]}))\n")

CASES = {
    "import_confbounds": ("", "import confbounds\n"),
    "first_betting_ci": ("import numpy as np, confbounds\nx = np.random.default_rng(0).random(1000)\n",
                         "confbounds.betting_ci(x, 0.05)\n"),
    "first_exact_bound": ("import confbounds\n", "confbounds.margin_lower_bound(80, 10, 100, 0.05)\n"),
    "confbounds_help": ("", "import contextlib, io, sys\nsys.argv = ['confbounds', '--help']\n"
                            "from radius.cli import main\n"
                            "with contextlib.redirect_stdout(io.StringIO()):\n"
                            "    try:\n        main()\n    except SystemExit:\n        pass\n"),
}

ISSUE = {"first_exact_bound": 12.9, "first_betting_ci": (2.1, 2.5), "import_confbounds": 4.0,
         "readonly_second_exact_bound": (12.0, 50.0)}
TARGET = {"first_exact_bound": 3.0, "first_betting_ci": 1.0, "import_confbounds": 0.5,
          "readonly_second_exact_bound": 0.5}


def child(case, env, prefix=()):
    setup, body = CASES[case]
    code = setup + TIMER + body + REPORT
    out = subprocess.run(list(prefix) + [sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def whole_process(case, env):
    """Wall time of the whole child process (interpreter start included)."""
    import time

    t = time.perf_counter()
    r = child(case, env)
    r["process_wall"] = time.perf_counter() - t
    return r


def base_env(pythonpath):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NUMBA_CACHE") and k not in ("CONFBOUNDS_CACHE_DIR", "CONFBOUNDS_AOT")}
    env["PYTHONPATH"] = str(pythonpath)
    return env


def readonly_install(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "setup.py"):  # setup.py: pip compiles the kernels (confbounds.aot)
        shutil.copy(ROOT / name, src)
    for pkg in ("confbounds", "backends", "radius"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.onnx", "*.pt", "*.npz",
                                                                           "_kernels_*"))
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(src)], check=True, cwd=tmp)
    for p in sorted(site.rglob("*"), reverse=True) + [site]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return site


def readonly_prefix(site: Path):
    if os.geteuid() != 0:
        return []
    s = str(site)
    wrap = ["unshare", "-m", "sh", "-c",
            f"mount --bind '{s}' '{s}' && mount -o remount,ro,bind '{s}' '{s}' && exec \"$@\"", "sh"]
    ok = subprocess.run(wrap + ["true"], capture_output=True)
    return wrap if ok.returncode == 0 else None


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--jit", action="store_true",
                    help="also measure every case with CONFBOUNDS_AOT=0 (kernels compiled just in time), same run")
    ap.add_argument("--baseline", default=None,
                    help="git commit to measure the same cases on (same run; e.g. the commit before issue 15)")
    a = ap.parse_args(argv)
    res = {"cases": {}, "issue_15_s": ISSUE, "target_s": TARGET, "load_average": [os.getloadavg()]}
    trees = [("", ROOT, {})]
    if a.jit:
        trees.append(("jit_", ROOT, {"CONFBOUNDS_AOT": "0"}))
    base_tmp = None
    if a.baseline:
        base_tmp = tempfile.TemporaryDirectory()
        arc = subprocess.run(["git", "-C", str(ROOT), "archive", a.baseline, "confbounds", "radius", "backends"],
                             check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", base_tmp.name], input=arc, check=True)
        trees.append(("baseline_", Path(base_tmp.name), {}))
        res["baseline_commit"] = a.baseline

    for case in ("import_confbounds", "first_betting_ci", "first_exact_bound", "confbounds_help"):
        for tag, tree, extra in trees:  # ours and the baseline alternate within each case
            rows = []
            for _ in range(a.reps):
                with tempfile.TemporaryDirectory() as cache:
                    env = base_env(tree)
                    env["NUMBA_CACHE_DIR"] = cache
                    env.update(extra)
                    rows.append(whole_process(case, env))
            res["cases"][tag + case] = {"runs": rows, "median_wall_s": med(rows, "wall"),
                                        "median_cpu_s": med(rows, "cpu"),
                                        "median_process_wall_s": med(rows, "process_wall"),
                                        "heavy_modules": rows[-1]["heavy"]}
            res["load_average"].append(os.getloadavg())
            print(f"{tag + case:31s} wall {med(rows, 'wall'):7.3f} s  cpu {med(rows, 'cpu'):7.3f} s  process "
                  f"{med(rows, 'process_wall'):7.3f} s  heavy {rows[-1]['heavy']}  load {os.getloadavg()[0]:.1f}",
                  flush=True)
        for other in ("baseline_", "jit_") if (a.baseline or a.jit) else ():
            if other + case not in res["cases"]:
                continue
            ours, base = res["cases"][case], res["cases"][other + case]
            ours[f"ratio_{other}over_ours_cpu"] = base["median_cpu_s"] / max(ours["median_cpu_s"], 1e-9)
            ours[f"ratio_{other}over_ours_wall"] = base["median_wall_s"] / max(ours["median_wall_s"], 1e-9)
    if base_tmp is not None:
        base_tmp.cleanup()

    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        site = readonly_install(tmp)
        prefix = readonly_prefix(site)
        try:
            if prefix is None:
                res["cases"]["readonly"] = "skipped: root without unshare/mount"
            else:
                rows = {"first_exact_bound": [], "first_betting_ci": []}
                for r in range(a.reps):
                    home = tmp / f"home{r}"
                    home.mkdir()
                    env = base_env(site)
                    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"))
                    first = {c: child(c, env, prefix) for c in rows}  # fills <home>/cache/confbounds/numba
                    for c in rows:
                        second = child(c, env, prefix)
                        second["first_process"] = first[c]
                        rows[c].append(second)
                    if not list((site / "confbounds").glob("_kernels_*")):  # else nothing is compiled at all
                        assert (home / "cache" / "confbounds" / "numba").is_dir(), "cache not in the per-user dir"
                res["readonly_compiled_module"] = [p.name for p in (site / "confbounds").glob("_kernels_*")]
                for c, rr in rows.items():
                    key = f"readonly_second_{c[len('first_'):]}"
                    res["cases"][key] = {"runs": rr, "median_wall_s": med(rr, "wall"), "median_cpu_s": med(rr, "cpu"),
                                         "first_process_median_wall_s": statistics.median(
                                             x["first_process"]["wall"] for x in rr)}
                    print(f"{key:22s} wall {med(rr, 'wall'):7.3f} s  cpu {med(rr, 'cpu'):7.3f} s  (first process "
                          f"{res['cases'][key]['first_process_median_wall_s']:.2f} s)  load {os.getloadavg()[0]:.1f}",
                          flush=True)
        finally:
            for p in [site] + list(site.rglob("*")):
                p.chmod(p.stat().st_mode | stat.S_IWUSR)

    res["load_average"].append(os.getloadavg())
    res["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                      "cpu_count": os.cpu_count(), "numba": __import__("numba").__version__}
    outdir = ROOT / "benchmarks" / "results"
    outdir.mkdir(parents=True, exist_ok=True)
    with open(outdir / "coldstart.json", "w") as f:
        json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
