"""Cold start, structurally (no timings; speed is measured in ``benchmarks/coldstart.py``).

A first call compiles only what it needs when the kernels are compiled just in time (``CONFBOUNDS_AOT=0``;
with the module compiled ahead of time nothing is compiled at all, ``tests/test_aot.py``): each check runs a fresh interpreter with an empty Numba cache
directory and counts the compiled specialisations of every kernel of the module (``Dispatcher.signatures``).
"""
import json
import os
import subprocess
import sys

COUNT = r"""
import json, sys
import numpy as np
import confbounds
from numba.core.registry import CPUDispatcher
rng = np.random.default_rng(0)
{calls}
out = {{}}
for modname in ("betting", "bernstein"):
    mod = sys.modules.get("confbounds." + modname)
    for name, obj in (vars(mod).items() if mod else ()):
        if isinstance(obj, CPUDispatcher) and obj.signatures and name == obj.py_func.__name__:
            out[modname + "." + name] = len(obj.signatures)
print(json.dumps(out))
"""


def _compiled(calls, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    env["CONFBOUNDS_AOT"] = "0"  # the just-in-time path (tests/test_aot.py checks the compiled one)
    out = subprocess.run([sys.executable, "-c", COUNT.format(calls=calls)], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_first_betting_ci_compiles_one_kernel_once(tmp_path):
    calls = "\n".join([
        "confbounds.betting_ci(rng.random(1000), 0.05)",
        "confbounds.betting_ci(rng.random(300), 0.01, side='two-sided')",
        "confbounds.betting_ci(rng.random((200, 4)), 0.05, side='upper')",
        "confbounds.betting_ci(rng.random(50) * 4 - 2, 0.05, bounds=(-2, 2))",
        "confbounds.betting_ci(rng.random(64).astype(np.float32), 0.05)",
        "confbounds.betting_ci((rng.random(64) < 0.5), 0.05)",
    ])
    # lower, two-sided, upper, 2-D, rescaled, float32 and boolean samples: one specialisation of one kernel
    assert _compiled(calls, tmp_path) == {"betting._hedged_ci_1d": 1}


def test_large_inputs_add_only_the_parallel_kernel(tmp_path):
    from confbounds.betting import PARALLEL_MIN_ELEMENTS

    k = 4
    calls = f"confbounds.betting_ci(rng.random(({PARALLEL_MIN_ELEMENTS // k + 1}, {k})), 0.05)"
    got = _compiled(calls, tmp_path)
    assert got.get("betting._hedged_ci_parallel") == 1
    assert set(got) <= {"betting._hedged_ci_parallel", "betting._hedged_ci_1d"}


def test_prpl_eb_does_not_compile_the_hedged_kernels(tmp_path):
    got = _compiled("confbounds.betting_ci(rng.random(500), 0.05, method='prpl-eb')", tmp_path)
    assert got and not any("hedged" in name for name in got)


EXACT_COUNT = r"""
import json, sys
import confbounds
from numba.core.registry import CPUDispatcher
{calls}
out = {{}}
for modname in ("nuisance", "trinomial"):
    mod = sys.modules.get("confbounds." + modname)
    for name, obj in (vars(mod).items() if mod else ()):
        if isinstance(obj, CPUDispatcher) and obj.signatures and name == obj.py_func.__name__:
            out[modname + "." + name] = [str(s) for s in obj.signatures]
print(json.dumps(out))
"""


def _compiled_exact(calls, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    env["CONFBOUNDS_AOT"] = "0"  # the just-in-time path (tests/test_aot.py checks the compiled one)
    out = subprocess.run([sys.executable, "-c", EXACT_COUNT.format(calls=calls)], capture_output=True,
                         text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_first_exact_bound_compiles_only_what_it_needs(tmp_path):
    # the call of benchmarks/coldstart.py: its sweep certifies at once, so the best-first split and the
    # bisection fallback are never run and must not be compiled (issue 15); the locating kernel and the
    # Chernoff helper have one specialisation each (no literal-argument duplicates)
    got = _compiled_exact("confbounds.margin_lower_bound(80, 10, 100, 0.05)", tmp_path)
    assert "nuisance._sweep" in got and "nuisance._approx_sup" in got  # the check is not vacuous
    assert "nuisance._bnb" not in got and "nuisance.invert_core" not in got
    assert len(got["nuisance._approx_sup"]) == 1 and "Literal" not in got["nuisance._approx_sup"][0]
    assert len(got["trinomial._log_chernoff"]) == 1
    assert "Literal" not in got["trinomial._log_chernoff"][0]


def test_other_margins_and_inputs_reuse_the_same_specialisations(tmp_path):
    got = _compiled_exact("confbounds.margin_lower_bound(80, 10, 100, 0.05)\n"
                          "confbounds.margin_lower_bound(80, 10, 100, 0.05, margin='probit')\n"
                          "confbounds.margin_lower_bound(70, 10, 1000, 0.01, statistic='difference')", tmp_path)
    for name in ("nuisance._sweep", "nuisance._approx_sup", "trinomial._log_chernoff"):
        assert len(got[name]) == 1, (name, got[name])
