"""Where the on-disk Numba cache of the confbounds kernels lives.

Every kernel of :mod:`confbounds` is compiled with ``numba.njit(cache=True)``
and its machine code is stored on disk, so each machine compiles it once.
Numba picks the cache directory with a list of *locators*, tried in order
(``numba.core.caching``, numba 0.68):

1. ``NUMBA_CACHE_DIR`` when the user sets it (``UserProvidedCacheLocator``);
2. ``__pycache__`` next to the source file when it is writable
   (``InTreeCacheLocator``), the usual case for a development checkout or a
   user-owned virtual environment;
3. ``<user cache>/numba/<dir>_<sha1 of the dir path>``
   (``UserWideCacheLocator``, Numba's own per-user fallback);
4. IPython cells and zip files.

If no locator finds a writable directory, ``cache=True`` raises
``RuntimeError: cannot cache function`` at *import* time.

:func:`install` adds one locator between 2 and 3 that only serves files of
this package: when the package directory is not writable (a system or
read-only install), the kernels are cached under :func:`numba_cache_dir`,
``<user cache>/confbounds/numba``, with the platform's per-user cache
directory (:func:`user_cache_dir`); if that cannot be written either (no home
directory), under :func:`private_tmp_dir` instead of failing at import.  A
read-only install therefore compiles once per machine and user, not once
per process, and the cache sits next to the other confbounds caches (exported ONNX models, ``backends.export``)
where ``rm -r`` finds it.  A user-set ``NUMBA_CACHE_DIR`` or
``NUMBA_CACHE_LOCATOR_CLASSES`` keeps priority; other packages' Numba
functions are not affected.

:mod:`confbounds` calls :func:`install` before its first kernel module is
imported (``confbounds/__init__.py``), so nothing needs to be done by hand.

Numba checks a cache entry against a hash of the source file, the argument
types, the Numba version and the CPU, so a stale entry is never used; it
does *not* notice when a function called from another module changes
(delete the cache directory after editing a kernel).
"""
from __future__ import annotations

import os
import stat
import sys
import tempfile
from typing import Optional

__all__ = ["CACHE_ENV", "user_cache_dir", "numba_cache_dir", "private_tmp_dir", "install", "installed"]

#: Environment variable that overrides :func:`user_cache_dir` (all confbounds caches).
CACHE_ENV = "CONFBOUNDS_CACHE_DIR"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_STATE = {"installed": False}


def user_cache_dir() -> str:
    """Per-user cache directory of confbounds (platform convention).

    ``$CONFBOUNDS_CACHE_DIR`` if set; otherwise ``%LOCALAPPDATA%\\confbounds\\Cache``
    on Windows, ``~/Library/Caches/confbounds`` on macOS and
    ``$XDG_CACHE_HOME/confbounds`` (default ``~/.cache/confbounds``) elsewhere,
    following the XDG Base Directory Specification.  The directory is not
    created here.

    ``backends.export.user_cache_dir`` follows the same rule (the two packages
    do not import each other; ``tests/test_export.py`` checks they agree).

    References
    ----------
    XDG Base Directory Specification 0.8, ``$XDG_CACHE_HOME``.
    https://specifications.freedesktop.org/basedir-spec/

    Examples
    --------
    >>> import os
    >>> from confbounds.jitcache import user_cache_dir
    >>> os.path.isabs(user_cache_dir())
    True
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return os.path.abspath(os.path.expanduser(env))
    if sys.platform.startswith("win"):
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser(r"~\AppData\Local")
        return os.path.join(base, "confbounds", "Cache")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Caches/confbounds")
    xdg = os.environ.get("XDG_CACHE_HOME")
    if not xdg or not os.path.isabs(xdg):  # the spec says: relative paths are invalid, ignore them
        xdg = os.path.expanduser("~/.cache")
    return os.path.join(xdg, "confbounds")


def numba_cache_dir() -> str:
    """Directory of the compiled kernels when the package directory is read-only.

    ``<user_cache_dir()>/numba``; inside it one subdirectory per installed
    copy of the package (Numba's ``<dir>_<sha1 of the dir path>``).
    """
    return os.path.join(user_cache_dir(), "numba")


def installed() -> bool:
    """Whether :func:`install` has registered the locator in this process."""
    return _STATE["installed"]


def private_tmp_dir() -> Optional[str]:
    """``<tmp>/confbounds-<uid>/numba``, the last resort when the user cache is not writable (POSIX only).

    The ``confbounds-<uid>`` directory is created with mode 0700 and used only if it is a real directory
    owned by this user that nobody else can write to (else None): another user cannot plant cache files.
    """
    if os.name != "posix":
        return None
    base = os.path.join(tempfile.gettempdir(), f"confbounds-{os.getuid()}")
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        st = os.lstat(base)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return os.path.join(base, "numba")


def _make_locator(caching):
    base = getattr(caching, "UserWideCacheLocator", None) or getattr(caching, "_UserWideCacheLocator")

    class ConfboundsCacheLocator(base):
        """Numba cache locator: confbounds' own files -> :func:`numba_cache_dir` (else :func:`private_tmp_dir`)."""

        def __init__(self, py_func, py_file, root=None):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            root = numba_cache_dir() if root is None else root
            self._cache_path = os.path.join(root, self.get_suitable_cache_subpath(py_file))

        def get_cache_path(self):
            return self._cache_path

        @classmethod
        def from_function(cls, py_func, py_file):
            path = os.path.abspath(py_file)
            if not path.startswith(_PACKAGE_DIR + os.sep) or not os.path.exists(path):
                return None  # not ours: Numba's own locators decide
            for get_root in (numba_cache_dir, private_tmp_dir):  # the tmp dir only if the first fails
                root = get_root()
                if root is None:
                    break
                self = cls(py_func, py_file, root)
                try:
                    self.ensure_cache_path()
                except OSError:
                    continue
                return self
            return None

    return ConfboundsCacheLocator


def install() -> bool:
    """Register the confbounds cache locator with Numba (idempotent).

    Inserted right after Numba's in-tree locator, so ``NUMBA_CACHE_DIR`` and a
    writable package directory keep priority.  Returns True when the locator
    is active.  Returns False, leaving Numba's defaults (which then use
    ``<user cache>/numba``), if this Numba has no locator list to extend;
    validity never depends on where the cache lives.

    Examples
    --------
    >>> from confbounds import jitcache
    >>> jitcache.install(), jitcache.installed()
    (True, True)
    """
    if _STATE["installed"]:
        return True
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    classes = getattr(impl, "_locator_classes", None)
    if not isinstance(classes, list):
        return False
    in_tree = [i for i, c in enumerate(classes) if c.__name__ in ("InTreeCacheLocator", "_InTreeCacheLocator")]
    if not in_tree:
        return False
    classes.insert(in_tree[0] + 1, _make_locator(caching))
    _STATE["installed"] = True
    return True
