"""Numba's ``njit``, imported only when a kernel is compiled just in time.

Every kernel of the package is written with ``@njit(...)`` from this module.  Until Numba is needed the
decorator returns a :class:`Kernel` placeholder that holds the Python function and the options.  When
the kernels compiled ahead of time serve every call (:mod:`confbounds.aot`), a process never imports
Numba (about 0.5 s, plus 0.4 s for its typing registries on the first compilation).

The first time a placeholder is called, or any Numba attribute of it is read (``signatures``,
``stats``, ...), :func:`materialize` imports Numba, installs the package's cache locator
(:func:`confbounds.jitcache.install`), turns *every* placeholder into the ``numba.njit`` dispatcher it
stands for and puts the dispatchers in place of the placeholders in the namespaces of the package's
modules (kernels call each other through module globals, which Numba reads at compile time).  After
that, ``njit`` is ``numba.njit`` itself.  Calling a placeholder kept elsewhere (imported by name before
the switch) calls its dispatcher.

``prange`` is ``range`` for Python and ``numba.prange`` once materialised, in the same way.
"""
from __future__ import annotations

import sys
import threading

__all__ = ["Kernel", "njit", "prange", "materialize", "materialized"]

_LOCK = threading.RLock()
_STATE = {"numba": None}
_KERNELS: list = []


def prange(*args):
    """``range`` until Numba is imported (then module globals named ``prange`` are ``numba.prange``)."""
    return range(*args)


class Kernel:
    """A Numba kernel not yet handed to Numba: ``numba.njit(*args, **kwargs)(py_func)`` on first use."""

    def __init__(self, py_func, args, kwargs):
        self.py_func = py_func
        self._args = args
        self._kwargs = kwargs
        self._dispatcher = None
        self.__name__ = py_func.__name__
        self.__qualname__ = py_func.__qualname__
        self.__module__ = py_func.__module__
        self.__doc__ = py_func.__doc__
        self.__wrapped__ = py_func

    def dispatcher(self):
        """The Numba dispatcher (materialises every kernel of the package the first time)."""
        if self._dispatcher is None:
            materialize()
        return self._dispatcher

    def __call__(self, *args, **kwargs):
        return (self._dispatcher or self.dispatcher())(*args, **kwargs)

    def __getattr__(self, name):  # Numba's attributes: signatures, stats, overloads, ...
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dispatcher(), name)

    def __repr__(self):
        return f"<confbounds kernel {self.__module__}.{self.__qualname__} (not yet compiled)>"


def njit(*args, **kwargs):
    """``numba.njit`` with the same arguments; lazy until :func:`materialize` (see the module docstring)."""
    numba = _STATE["numba"]
    if numba is not None:
        return numba.njit(*args, **kwargs)
    if len(args) == 1 and callable(args[0]) and not kwargs:  # bare @njit
        return njit()(args[0])

    def decorate(py_func):
        k = Kernel(py_func, args, kwargs)
        _KERNELS.append(k)
        return k

    return decorate


def materialized() -> bool:
    """Whether Numba has been imported and the kernels turned into dispatchers."""
    return _STATE["numba"] is not None


def materialize() -> None:
    """Import Numba and replace every :class:`Kernel` of the package by its dispatcher (idempotent)."""
    if _STATE["numba"] is not None:
        return
    with _LOCK:
        if _STATE["numba"] is not None:
            return
        from . import jitcache

        jitcache.install()  # before the first dispatcher with cache=True exists
        import numba

        for k in _KERNELS:
            if k._dispatcher is None:
                k._dispatcher = numba.njit(*k._args, **k._kwargs)(k.py_func)
        package = __name__.rsplit(".", 1)[0] + "."
        placeholder = globals()["prange"]  # this module's own global is replaced in the loop too
        for name, module in list(sys.modules.items()):
            if not name.startswith(package) or module is None:
                continue
            ns = vars(module)
            for attr, value in list(ns.items()):
                if isinstance(value, Kernel):
                    ns[attr] = value._dispatcher
                elif value is placeholder:
                    ns[attr] = numba.prange
        globals()["prange"] = numba.prange  # for modules imported from now on (if not done in the loop)
        _STATE["numba"] = numba  # from now on njit is numba.njit
