"""Simplex maps ``s: R^m -> Delta^{m-1}`` turning logits into class scores (theory §1).

* ``hardmax``: the one-hot vector of the argmax (ties go to the smallest index, as ``numpy.argmax``);
* ``softmax`` with temperature ``T``: ``exp(z_k / T) / sum_j exp(z_j / T)`` (computed after subtracting the row
  maximum, which leaves it unchanged);
* ``sparsemax``: the Euclidean projection of ``z`` onto the probability simplex, ``argmin_{p in Delta} ||p - z||``
  (Martins & Astudillo, ICML 2016, Algorithm 1 / Proposition 1): sort ``z`` decreasingly,
  ``k(z) = max{k : 1 + k z_(k) > sum_{j<=k} z_(j)}``, ``tau = (sum_{j<=k(z)} z_(j) - 1) / k(z)``,
  ``p = max(z - tau, 0)``. It is exact (no iteration) and outputs exact zeros outside the support.

The NumPy functions are the reference implementations (float64). ``torch_hardmax``, ``torch_softmax`` and
``torch_sparsemax`` are the same maps on torch tensors (any device), imported lazily: ``import backends.simplex``
does not import torch. The ONNX sampler applies the NumPy maps to the graph's logits.

References
----------
A. F. T. Martins and R. F. Astudillo, "From softmax to sparsemax: a sparse model of attention and multi-label
classification", ICML 2016.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SIMPLEX_MAPS", "check_simplex", "check_temperature", "hardmax", "softmax", "sparsemax",
           "apply_simplex", "torch_hardmax", "torch_softmax", "torch_sparsemax", "torch_apply_simplex"]

SIMPLEX_MAPS = ("hard", "softmax", "sparsemax")


def check_simplex(simplex) -> str:
    if simplex not in SIMPLEX_MAPS:
        raise ValueError(f"simplex must be one of {SIMPLEX_MAPS}, got {simplex!r}")
    return simplex


def check_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    t = float(temperature)
    if not (np.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return t


def _as_logits(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim not in (1, 2) or z.shape[-1] < 1:
        raise ValueError(f"logits must have shape (m,) or (batch, m) with m >= 1, got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits must be finite, got a non-finite value "
                         f"{z[~np.isfinite(z)].ravel()[0]!r}")
    return z


def hardmax(logits) -> np.ndarray:
    """One-hot argmax of each row (ties: smallest index).

    Examples
    --------
    >>> hardmax([[1.0, 3.0, 3.0], [0.0, -1.0, -2.0]])
    array([[0., 1., 0.],
           [1., 0., 0.]])
    """
    z = _as_logits(logits)
    out = np.zeros_like(z)
    idx = np.argmax(z, axis=-1)
    np.put_along_axis(out, np.expand_dims(idx, -1), 1.0, axis=-1)
    return out


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Softmax of ``logits / temperature`` along the last axis.

    Examples
    --------
    >>> softmax([0.0, np.log(3.0)]).round(6)
    array([0.25, 0.75])
    >>> softmax([0.0, np.log(3.0)], temperature=0.5).round(6)
    array([0.1, 0.9])
    """
    t = check_temperature(temperature)
    z = _as_logits(logits) / t
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sparsemax(logits) -> np.ndarray:
    """Euclidean projection of each row onto the probability simplex (Martins & Astudillo 2016, Alg. 1).

    Examples
    --------
    >>> sparsemax([0.0, 1.5, 0.1])
    array([0., 1., 0.])
    >>> sparsemax([[1.0, 0.5, -1.0]])
    array([[0.75, 0.25, 0.  ]])
    """
    z = _as_logits(logits)
    z = z - z.max(axis=-1, keepdims=True)  # projection is translation invariant along (1, ..., 1)
    zs = -np.sort(-z, axis=-1)
    ks = np.arange(1, z.shape[-1] + 1, dtype=np.float64)
    cums = np.cumsum(zs, axis=-1)
    support = 1.0 + ks * zs > cums  # true exactly for k = 1..k(z) (k = 1 always); take the max as defined
    kz = np.max(np.where(support, np.arange(1, z.shape[-1] + 1), 0), axis=-1, keepdims=True)
    tau = (np.take_along_axis(cums, kz - 1, axis=-1) - 1.0) / kz
    return np.maximum(z - tau, 0.0)


def apply_simplex(logits, simplex: str, temperature: float = 1.0) -> np.ndarray:
    """Apply the simplex map named ``simplex`` ("hard", "softmax", "sparsemax") in NumPy."""
    check_simplex(simplex)
    if simplex == "hard":
        return hardmax(logits)
    if simplex == "softmax":
        return softmax(logits, temperature)
    return sparsemax(logits)


# ----------------------------------------------------------------------------------------------- torch versions


def torch_hardmax(logits):
    """Torch version of :func:`hardmax` for a tensor of shape (batch, m) (ties: smallest index)."""
    import torch

    out = torch.zeros_like(logits)
    out.scatter_(-1, torch.argmax(logits, dim=-1, keepdim=True), 1.0)
    return out


def torch_softmax(logits, temperature: float = 1.0):
    """Torch version of :func:`softmax`."""
    import torch

    t = check_temperature(temperature)
    return torch.softmax(logits / t, dim=-1)


def torch_sparsemax(logits):
    """Torch version of :func:`sparsemax` (same algorithm: sort, cumulative sum, threshold)."""
    import torch

    z = logits - logits.max(dim=-1, keepdim=True).values
    zs = torch.sort(z, dim=-1, descending=True).values
    ks = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    cums = torch.cumsum(zs, dim=-1)
    support = 1.0 + ks * zs > cums
    kz = torch.where(support, torch.arange(1, z.shape[-1] + 1, device=z.device), 0).max(dim=-1, keepdim=True).values
    tau = (torch.gather(cums, -1, kz - 1) - 1.0) / kz.to(z.dtype)
    return torch.clamp(z - tau, min=0.0)


def torch_apply_simplex(logits, simplex: str, temperature: float = 1.0):
    check_simplex(simplex)
    if simplex == "hard":
        return torch_hardmax(logits)
    if simplex == "softmax":
        return torch_softmax(logits, temperature)
    return torch_sparsemax(logits)
