"""Ahead-of-time compiled kernels: the first call compiles nothing.

Every kernel of :mod:`confbounds` is a Numba function.  Compiled on first use
(just in time), the first exact margin bound of a fresh environment spends
about 8 s of CPU in Numba's compiler, and a process whose on-disk cache is
cold pays that again.  This module compiles the kernels that Python code
calls, once, into one C extension module with :mod:`numba.pycc`, and binds
each Python call site to it:

* ``python -m confbounds.aot build`` (run by ``pip install`` through
  ``setup.py``, and by ``scripts/setup.sh``) writes
  ``confbounds/_kernels_<key><ext>``; where the package directory cannot be
  written, ``<user cache>/confbounds/aot/`` (:func:`confbounds.jitcache.user_cache_dir`).
* :func:`bind` returns, for a kernel, a function that calls the compiled
  export when the arguments have exactly the types it was compiled for, and
  the Numba dispatcher (just-in-time, as before) otherwise.  The exports do
  no type checks of their own (a ``float32`` array passed for ``float64``
  would be read as garbage), so the check in front of them is exact: same
  Python or NumPy scalar type, same dtype, dimension count, layout and
  writability.

What is compiled is the kernels' own Numba source: each export is a one-line
wrapper that calls the kernel's dispatcher, so the kernel is compiled with its
own options (``error_model``, ``inline``) exactly as the just-in-time path
compiles it.  The arithmetic is the same IEEE double arithmetic (no fast-math
anywhere, the same ``libm``), and ``tests/test_aot.py`` checks that the public
functions return bit-identical results either way.

Staleness.  The file name carries a key: a hash of every source file of the
package, the Numba, NumPy and Python versions and the CPU name and features.
A module built from other sources is never loaded; after an edit the kernels
run just in time until the module is rebuilt.  ``CONFBOUNDS_AOT=0`` turns the
compiled module off (the just-in-time path only).

Kernels left out: the ``parallel=True`` variants (``numba.pycc`` does not
compile them; they run only above a size threshold, where compilation is a
small share of the run) and kernels called only from other kernels.

Validity never depends on which path runs: both execute the same code.

References
----------
Numba documentation, "Compiling code ahead of time" (``numba.pycc``),
https://numba.readthedocs.io/en/stable/user/pycc.html
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

__all__ = ["ENV", "KERNELS", "enabled", "key", "module_name", "search_dirs", "load", "loaded_path", "bind",
           "build", "main"]

#: Environment variable: ``0`` (or ``off``, ``no``, ``false``) disables the compiled module.
ENV = "CONFBOUNDS_AOT"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_PREFIX = "_kernels_"

#: ``"module.kernel"`` -> the argument types compiled ahead of time, one entry per signature: the types
#: the package's own Python callers pass (collected by running the test suite); a call with other types
#: runs the kernel just in time.  The notation needs no Numba to read: ``i8``, ``f8``, ``b1`` (int64,
#: float64, boolean scalars) and ``<dtype>:<ndim><layout>[r]`` for arrays, layout ``C`` (contiguous) or
#: ``A`` (any strides), ``r`` read-only.  Input arrays are declared read-only (which accepts writable
#: arrays too; a kernel that wrote into one would not compile) and ``A`` where callers pass views.
#: The return types are Numba's own inference for these arguments.
KERNELS: Dict[str, Tuple[str, ...]] = {
    # exact margin bounds (nuisance.invert_fast, certified_sup, taylor tables)
    "nuisance._approx_sup": ("i8 f8 i8 i8:1Cr f8:1Cr f8:1Cr f8 f8 f8 f8 i8",),
    "nuisance._sweep": ("i8 f8 i8 i8:1Cr f8:1Cr f8:1Cr f8 f8 f8 i8 f8 f8",),
    "nuisance._bnb": ("i8 f8 i8 i8:1Cr f8:1Cr f8:1Cr f8 f8 f8 i8 f8 i8 f8 f8",),
    "nuisance.invert_core": ("i8 i8 i8:1Cr f8:1Cr f8:1Cr f8 f8 f8 f8 f8 f8 f8 f8 i8 f8 f8",),
    "nuisance._h": ("f8 f8:1Cr",),
    "nuisance._h_array": ("f8:1Cr f8:1Cr",),
    # Clopper-Pearson endpoints and binomial tails
    "binomial._solve_many": ("i8:1Ar i8:1Ar f8:1Ar b1 f8:1Ar f8:1Ar f8:1C",),
    "binomial._solve_scalar": ("f8 f8 f8 b1 f8",),
    "binomial._tail_many": ("f8:1Cr f8:1Cr f8:1Cr b1 f8:1Cr f8:1C f8:1C",),
    # trinomial tails and threshold tables
    "trinomial.tail_core": ("i8 f8 f8 i8:1Cr f8",),
    "trinomial._tail_enum": ("i8 f8 f8 i8:1Cr f8",),
    "trinomial._staircase": ("f8:1Cr f8:1Cr f8",),
    "trinomial._kvec_difference": ("i8 i8",),
    "trinomial._kvec_stud": ("i8 f8 b1",),
    "trinomial._kvec_table": ("i8 f8:1Cr f8 b1",),
    "trinomial._lf_table": ("i8",),
    "trinomial._stud": ("i8 i8",),
    "trinomial._all_outcomes_pmf": ("i8 f8 f8 f8:1Cr",),
    # betting, Bernstein, mixture and sequential-margin bounds
    "betting._hedged_ci_1d": ("f8:1Ar f8 f8 f8 f8:1A",),
    "betting._hedged_cs_serial": ("f8:2Ar f8 f8 i8 f8:2C",),
    "betting._prpl_bets": ("f8:2Cr f8 f8 f8:1Cr f8:2C f8:2C",),
    "betting._prpl_sums": ("f8:2Cr f8:2Cr f8:2Cr f8:2Cr f8 f8:2C f8 f8 b1",),
    "bernstein._mean_var": ("f8:2Cr",),
    "bernstein._mean_var_1d": ("f8:1Cr",),
    "mixture._endpoints_kernel": ("f8:1Cr f8:1Cr f8:1Cr f8:1Cr f8 b1 b1 f8:1C f8:1C",),
    "seqmargin._certify_curve": ("f8 f8 f8 f8 b1 f8 f8 i8",),
}

_DTYPES = {"i8": "int64", "f8": "float64", "b1": "bool"}


def _parse(entry: str) -> tuple:
    """One :data:`KERNELS` entry as tuples: ``(dtype,)`` or ``(dtype, ndim, layout, readonly)``.

    >>> _parse("i8 f8:1Cr")
    (('i8',), ('f8', 1, 'C', True))
    """
    out = []
    for tok in entry.split():
        dt, _, arr = tok.partition(":")
        if dt not in _DTYPES:
            raise ValueError(f"confbounds.aot: unknown type {tok!r} in a KERNELS entry")
        if not arr:
            out.append((dt,))
            continue
        ndim, layout, ro = int(arr[0]), arr[1], arr[2:] == "r"
        if layout not in "CA" or arr[2:] not in ("", "r"):
            raise ValueError(f"confbounds.aot: bad array type {tok!r} in a KERNELS entry")
        out.append((dt, ndim, layout, ro))
    return tuple(out)


def _numba_types(entry: str) -> tuple:
    """The Numba argument types of one :data:`KERNELS` entry (for :func:`build`)."""
    from numba.core import types

    scalar = {"i8": types.int64, "f8": types.float64, "b1": types.boolean}
    return tuple(scalar[t[0]] if len(t) == 1 else types.Array(scalar[t[0]], t[1], t[2], readonly=t[3])
                 for t in _parse(entry))


_STATE: Dict[str, object] = {"loaded": False, "module": None, "path": None}


def enabled() -> bool:
    """False when ``CONFBOUNDS_AOT`` turns the compiled module off."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "off", "no", "false")


def key(package_dir: Optional[str] = None) -> str:
    """Key of the compiled module: hash of the package sources, the versions and the platform (20 hex digits).

    The module is compiled for the generic CPU of the architecture (``numba.pycc``'s default: no
    instruction-set extensions), so the CPU model is not part of the key.

    Examples
    --------
    >>> from confbounds import aot
    >>> k = aot.key()
    >>> len(k), aot.module_name() == "_kernels_" + k
    (20, True)
    """
    import importlib.metadata
    import platform

    import numpy

    d = package_dir or _PACKAGE_DIR
    h = hashlib.sha256()
    for name in sorted(os.listdir(d)):
        if name.endswith(".py"):
            h.update(name.encode() + b"\0")
            with open(os.path.join(d, name), "rb") as f:
                h.update(f.read())
            h.update(b"\0")
    try:
        numba_version = importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        numba_version = "none"
    h.update("|".join([numba_version, numpy.__version__, sys.version, sys.platform,
                       platform.machine()]).encode())
    return h.hexdigest()[:20]


def module_name(package_dir: Optional[str] = None) -> str:
    """``_kernels_<key>``, the extension module's name (and file name stem)."""
    return _PREFIX + key(package_dir)


def search_dirs() -> List[str]:
    """Where :func:`load` looks: the package directory, then ``<user cache>/confbounds/aot``."""
    from .jitcache import user_cache_dir

    return [_PACKAGE_DIR, os.path.join(user_cache_dir(), "aot")]


def load():
    """The compiled module of the current sources, or None (not built, stale, or turned off)."""
    if _STATE["loaded"]:
        return _STATE["module"]
    _STATE["loaded"] = True
    if not enabled():
        return None
    try:
        name = module_name()
    except OSError:  # sources not readable as files (a zip import): the kernels run just in time
        return None
    for d in search_dirs():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(d, name + suffix)
            if not os.path.isfile(path):
                continue
            try:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            except ImportError:
                continue  # unreadable or built for something else: the kernels run just in time
            _STATE.update(module=module, path=path)
            return module
    return None


def loaded_path() -> Optional[str]:
    """Path of the loaded compiled module, or None."""
    load()
    return _STATE["path"]


def _qualname(dispatcher) -> str:
    f = dispatcher.py_func
    return f"{f.__module__.rsplit('.', 1)[-1]}.{f.__name__}"


def _export_name(qualname: str, j: int) -> str:
    return qualname.replace(".", "__") + f"__{j}"


def _check(var: str, t: tuple, ns: dict, tag: str) -> str:
    """Python expression that is True iff ``var`` is a value Numba would type exactly as ``t`` (see :func:`_parse`)."""
    import numpy as np

    if len(t) == 1:
        if t[0] == "b1":
            ns["_bool"] = np.bool_
            return f"(type({var}) is bool or type({var}) is _bool)"
        if t[0] == "i8":
            ns["_i8"] = np.int64
            return (f"((type({var}) is int and -9223372036854775808 <= {var} <= 9223372036854775807)"
                    f" or type({var}) is _i8)")
        ns["_f8"] = np.float64
        return f"(type({var}) is float or type({var}) is _f8)"
    dt, ndim, layout, readonly = t
    ns[f"_dt_{tag}"] = np.dtype(_DTYPES[dt])
    ns["_nd"] = np.ndarray
    flags = [f"{var}.flags.aligned"]
    if layout == "C":
        flags.append(f"{var}.flags.c_contiguous")
    if not readonly:
        flags.append(f"{var}.flags.writeable")
    return f"(type({var}) is _nd and {var}.ndim == {ndim} and {var}.dtype == _dt_{tag} and " + " and ".join(flags) + ")"


def _guarded(dispatcher, exports) -> Callable:
    """A function that calls the first export whose argument types match exactly, else the dispatcher."""
    nargs = len(exports[0][1])
    names = ", ".join(f"a{i}" for i in range(nargs))
    ns: dict = {"_jit": dispatcher}
    lines = [f"def call({names}):"]
    for j, (fn, args) in enumerate(exports):
        ns[f"_aot{j}"] = fn
        tests = [_check(f"a{i}", t, ns, f"{j}_{i}") for i, t in enumerate(args)]
        lines.append(f"    if {' and '.join(tests)}:")
        lines.append(f"        return _aot{j}({names})")
    lines.append(f"    return _jit({names})")
    exec("\n".join(lines), ns)  # generated from the signature table above, nothing else
    call = ns["call"]
    call.__name__ = call.__qualname__ = dispatcher.py_func.__name__
    call.__module__ = dispatcher.py_func.__module__
    call.__doc__ = dispatcher.py_func.__doc__
    call.__wrapped__ = dispatcher
    return call


def bind(*dispatchers):
    """For each Numba kernel, the callable Python code should use (see the module docstring).

    The compiled export when the module is built for the current sources and the kernel is in
    :data:`KERNELS`; otherwise the dispatcher itself.  Returns one callable, or a tuple for several.
    """
    module = load()
    out = []
    for d in dispatchers:
        qual = _qualname(d)
        sigs = KERNELS.get(qual)
        fns = [getattr(module, _export_name(qual, j), None) for j in range(len(sigs or ()))] if module else []
        if not sigs or not fns or any(f is None for f in fns):
            out.append(d)
        else:
            out.append(_guarded(d, [(f, _parse(s)) for f, s in zip(fns, sigs)]))
    return out[0] if len(out) == 1 else tuple(out)


def _wrapper(dispatcher, nargs: int):
    names = ", ".join(f"a{i}" for i in range(nargs))
    ns = {"_kernel": dispatcher}
    exec(f"def export({names}):\n    return _kernel({names})\n", ns)
    return ns["export"]


def _writable(d: str) -> bool:
    try:
        os.makedirs(d, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=d, prefix=".probe-")
        probe.close()
        return True
    except OSError:
        return False


def build(into: Optional[str] = None, quiet: bool = True) -> str:
    """Compile every kernel of :data:`KERNELS` into ``<into>/_kernels_<key><ext>``; returns the path.

    ``into`` defaults to the package directory, or ``<user cache>/confbounds/aot`` when that cannot be
    written.  The module is written under a temporary name and renamed, so a concurrent process never
    loads half a file; older ``_kernels_*`` files in the directory are removed.  Takes about a minute.
    """
    import warnings

    os.environ[ENV] = "0"  # the exports wrap the dispatchers, never an older compiled module
    name = module_name()
    if into is None:
        into = next(d for d in search_dirs() + [None] if d is None or _writable(d))
        if into is None:
            raise OSError("confbounds.aot: neither the package directory nor the user cache directory is writable")
    os.makedirs(into, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba.pycc's pending-deprecation notice
        from numba.pycc import CC

        tmp = tempfile.mkdtemp(prefix=".aot-build-", dir=into)
        try:
            cc = CC(name)
            cc.output_dir = tmp
            cc.verbose = not quiet
            for qual in KERNELS:
                importlib.import_module(f"{__package__}.{qual.split('.')[0]}")
            from .lazyjit import materialize

            materialize()  # the module globals are now the Numba dispatchers
            for qual, sigs in KERNELS.items():
                mod, fn = qual.split(".")
                dispatcher = getattr(importlib.import_module(f"{__package__}.{mod}"), fn)
                for j, text in enumerate(sigs):
                    args = _numba_types(text)
                    dispatcher.compile(args)  # just in time once, for Numba's return type
                    ret = dispatcher.overloads[args].signature.return_type
                    cc.export(_export_name(qual, j), ret(*args))(_wrapper(dispatcher, len(args)))
            cc.compile()
            built = [f for f in os.listdir(tmp) if f.startswith(name)]
            if len(built) != 1:
                raise RuntimeError(f"confbounds.aot: numba.pycc wrote {built!r} in {tmp}")
            target = os.path.join(into, built[0])
            for old in os.listdir(into):
                if old.startswith(_PREFIX) and old != built[0]:
                    try:
                        os.remove(os.path.join(into, old))
                    except OSError:
                        pass
            os.replace(os.path.join(tmp, built[0]), target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv=None) -> int:
    """``python -m confbounds.aot {build [--into DIR] | info}``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m confbounds.aot", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="compile the kernels ahead of time")
    b.add_argument("--into", default=None, help="directory (default: the package, else the user cache)")
    sub.add_parser("info", help="key, search directories and the loaded module")
    a = ap.parse_args(argv)
    if a.cmd == "build":
        print(build(a.into))
        return 0
    print(f"key {key()}\nenabled {enabled()}\nsearch {search_dirs()}\nloaded {loaded_path()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
