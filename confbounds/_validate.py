"""Argument checks shared by every public function of :mod:`confbounds`.

Every check raises :class:`ValueError` whose message names the argument and
the offending value, so a user can see at once what was wrong.  Nothing is
clipped or coerced silently.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

SIDES = ("lower", "upper", "two-sided")


def _show(value) -> str:
    arr = np.asarray(value)
    if arr.size == 1:
        return repr(arr.ravel()[0].item())
    return np.array2string(arr.ravel()[:6], threshold=6) + ("..." if arr.size > 6 else "")


def check_alpha(alpha, name: str = "alpha") -> float:
    """Return ``alpha`` as a float after checking ``0 < alpha < 1``."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), got {alpha!r}") from None
    if not (0.0 < a < 1.0):  # also rejects NaN
        raise ValueError(f"{name} must lie in the open interval (0, 1), got {alpha!r}")
    return a


def check_alpha_array(alpha, name: str = "alpha") -> np.ndarray:
    """Array version of :func:`check_alpha` (for broadcasting functions)."""
    a = np.asarray(alpha, dtype=float)
    bad = ~((a > 0.0) & (a < 1.0))
    if np.any(bad):
        raise ValueError(f"{name} must lie in the open interval (0, 1), got {_show(a[bad])}")
    return a


def check_side(side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    return side


def check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_integer_array(x, name: str) -> np.ndarray:
    """Non-negative integer-valued array (int or integral float), returned as int64."""
    arr = np.asarray(x)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype.kind == "b":
        raise ValueError(f"{name} must hold integer counts, got booleans")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold integer counts, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite integers, got {_show(arr[~np.isfinite(arr)])}")
        frac = arr != np.round(arr)
        if np.any(frac):
            raise ValueError(f"{name} must be integers, got non-integer value(s) {_show(arr[frac])}")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative, got {_show(arr[arr < 0])}")
    return arr.astype(np.int64)


def check_counts(k, n, k_name: str = "k", n_name: str = "n", min_n: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    """Check binomial counts ``0 <= k <= n`` and ``n >= min_n``; return int64 arrays."""
    k_arr = check_integer_array(k, k_name)
    n_arr = check_integer_array(n, n_name)
    if np.any(n_arr < min_n):
        raise ValueError(f"{n_name} must be >= {min_n}, got {_show(n_arr[n_arr < min_n])}")
    try:
        kb, nb = np.broadcast_arrays(k_arr, n_arr)
    except ValueError:
        raise ValueError(f"{k_name} of shape {k_arr.shape} and {n_name} of shape {n_arr.shape} do not broadcast") from None
    over = kb > nb
    if np.any(over):
        raise ValueError(
            f"{k_name} must be <= {n_name}, got {k_name}={_show(kb[over])} with {n_name}={_show(nb[over])}"
        )
    return k_arr, n_arr


def check_bounds(bounds) -> Tuple[float, float]:
    try:
        a, b = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be a pair (a, b) of finite numbers, got {bounds!r}") from None
    if not (np.isfinite(a) and np.isfinite(b) and a < b):
        raise ValueError(f"bounds must be finite with a < b, got {bounds!r}")
    return a, b


def check_samples(x, bounds=(0.0, 1.0), min_n: int = 1, name: str = "x") -> Tuple[np.ndarray, bool]:
    """Check a sample array of shape ``(n,)`` or ``(n, k)``.

    Returns the samples as a float64 array of shape ``(n, k)`` and whether the
    input was one-dimensional.  Raises if the array is empty, holds NaN/inf,
    leaves ``bounds`` or has fewer than ``min_n`` rows.
    """
    a, b = check_bounds(bounds)
    arr = np.asarray(x, dtype=np.float64) if not isinstance(x, np.ndarray) or x.dtype != np.float64 else x
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (n,) or (n, k), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    bad = ~np.isfinite(arr)
    if np.any(bad):
        idx = np.argwhere(bad)[0]
        raise ValueError(f"{name} holds a non-finite value {float(arr[tuple(idx)])!r} at index {tuple(int(i) for i in idx)}")
    lo, hi = arr.min(), arr.max()
    if lo < a or hi > b:
        v = float(lo if lo < a else hi)
        raise ValueError(f"{name} holds the value {v!r}, outside bounds ({a}, {b})")
    n = arr.shape[0]
    if n < min_n:
        raise ValueError(f"{name} has n = {n} samples; this bound needs n >= {min_n}")
    one_d = arr.ndim == 1
    if one_d:
        arr = arr[:, None]
    return arr, one_d
