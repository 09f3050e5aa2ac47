"""confbounds: valid confidence bounds for randomized smoothing.

Framework-agnostic statistics on NumPy arrays: counts (binomial, trinomial)
and score matrices.  Nothing here imports torch, onnxruntime, cvxpy or ray.
See ``docs/conventions.md`` for the call conventions shared by every bound.

Start-up
--------
``import confbounds`` is cheap: it imports neither NumPy, Numba nor SciPy.
The public names below are module attributes resolved on first use
(:pep:`562` module ``__getattr__``), so ``confbounds.betting_ci`` imports
only :mod:`confbounds.betting` and what it needs, and ``confbounds.coverage``
(which needs ``scipy.stats``) is imported only when it is used.

Importing a submodule does not import Numba either: the kernels are compiled
ahead of time when the package is installed (:mod:`confbounds.aot`), and Numba
is imported only when a kernel has to be compiled just in time
(:mod:`confbounds.lazyjit`), which first tells Numba where to cache the
compiled kernels when the package directory is read-only
(:mod:`confbounds.jitcache`).
"""
import importlib

__version__ = "0.1.0"

#: public name -> submodule that defines it
_LAZY = {
    "clopper_pearson": "binomial",
    "phi_inv_taylor": "taylor",
    "taylor_coefficients": "taylor",
    "empirical_bernstein": "bernstein",
    "hoeffding": "bernstein",
    "betting_ci": "betting",
    "betting_cs": "betting",
    "margin_lower_bound": "margin",
    "MarginBound": "margin",
    "beta_binomial_cs": "mixture",
    "beta_binomial_cs_path": "mixture",
    "certified_sup": "nuisance",
    "signomial_sup": "signomial",
    "tail_prob": "trinomial",
    # the argument checks every bound uses (docs/conventions.md), public so that other packages share them
    "check_alpha": "_validate",
    "check_choice": "_validate",
    "check_integer_array": "_validate",
}
_SUBMODULES = ("coverage",)
#: every submodule is also reachable as an attribute (``confbounds.margin``), imported on first use
_MODULES = frozenset({"binomial", "taylor", "bernstein", "betting", "margin", "mixture", "nuisance", "signomial",
                      "trinomial", "coverage", "jitcache", "aot", "lazyjit"})

__all__ = list(_LAZY) + list(_SUBMODULES)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module("." + _LAZY[name], __name__), name)
        globals()[name] = value
        return value
    if name in _MODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
