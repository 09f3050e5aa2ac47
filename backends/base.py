"""The sampler protocol: what ``radius`` needs from a model.

A sampler draws ``n`` Gaussian-noised copies of one input ``x`` (noise
``N(0, sigma^2 I)`` added in input space, before any normalisation), runs the
base model and returns either

* ``counts(x, n, seed)``: an int64 array of shape ``(m,)``, the number of
  noisy copies whose simplex output (hardmax) selected each class, summing to n;
* ``scores(x, n, seed, columns=None)``: a float64 array of shape ``(n, m)``
  (or ``(n, len(columns))``), row i the simplex output ``s(f(x + eps_i))``.

Both are deterministic functions of ``(x, n, seed)``; memory is bounded by the
batch size, not by ``n``.
"""
from __future__ import annotations

from typing import Callable, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = ["Sampler", "ArraySampler", "check_sampler_args", "check_logits"]


@runtime_checkable
class Sampler(Protocol):
    sigma: float
    num_classes: int
    simplex: str

    def counts(self, x: np.ndarray, n: int, seed: int) -> np.ndarray: ...

    def scores(self, x: np.ndarray, n: int, seed: int, columns: Optional[Sequence[int]] = None) -> np.ndarray: ...


def check_sampler_args(n, seed) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(n)


def check_logits(logits: np.ndarray, batch: int, what: str = "model output", where: str = "") -> np.ndarray:
    """Check a model output is a finite (batch, m) array; name the input and batch on error."""
    arr = np.asarray(logits)
    if arr.ndim != 2 or arr.shape[0] != batch:
        raise ValueError(f"{what} must have shape (batch, m) = ({batch}, m), got {arr.shape}{where}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{what} holds a non-finite value {arr[tuple(bad)]!r} at row {int(bad[0])}{where}")
    return arr


class ArraySampler:
    """A sampler for a base classifier written as a NumPy function.

    Parameters
    ----------
    logits_fn : callable
        Maps a batch of inputs, shape ``(b, *x.shape)``, to logits ``(b, m)``.
    num_classes : int
    sigma : float
        Noise level (> 0).
    batch_size : int
    simplex : {"hard", "softmax", "sparsemax"}
    temperature : float

    Noise is drawn with ``numpy.random.default_rng(seed)`` in float64, batch by
    batch, so results are reproducible and memory is bounded by the batch.
    Used for linear base classifiers with known smoothed probabilities in the
    soundness tests, and for any model a user can express in NumPy.
    """

    def __init__(self, logits_fn: Callable[[np.ndarray], np.ndarray], num_classes: int, *, sigma: float,
                 batch_size: int = 1000, simplex: str = "hard", temperature: float = 1.0):
        if not (isinstance(sigma, (int, float, np.floating)) and np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
        if simplex not in ("hard", "softmax", "sparsemax"):
            raise ValueError(f"simplex must be one of ('hard', 'softmax', 'sparsemax'), got {simplex!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.logits_fn = logits_fn
        self.num_classes = int(num_classes)
        self.sigma = float(sigma)
        self.batch_size = int(batch_size)
        self.simplex = simplex
        self.temperature = float(temperature)

    def _batches(self, x, n, seed):
        x = np.asarray(x, dtype=np.float64)
        rng = np.random.default_rng(seed)
        done = 0
        while done < n:
            b = min(self.batch_size, n - done)
            noisy = x[None, ...] + self.sigma * rng.standard_normal((b, *x.shape))
            logits = check_logits(self.logits_fn(noisy), b, where=f" (batch starting at sample {done})")
            if logits.shape[1] != self.num_classes:
                raise ValueError(f"model output has {logits.shape[1]} classes, expected {self.num_classes}")
            yield logits
            done += b

    def counts(self, x, n, seed):
        n = check_sampler_args(n, seed)
        out = np.zeros(self.num_classes, dtype=np.int64)
        for logits in self._batches(x, n, seed):
            out += np.bincount(np.argmax(logits, axis=1), minlength=self.num_classes)
        return out

    def scores(self, x, n, seed, columns=None):
        from . import simplex as smx

        n = check_sampler_args(n, seed)
        cols = None if columns is None else np.asarray(columns, dtype=np.int64)
        parts = []
        for logits in self._batches(x, n, seed):
            if self.simplex == "hard":
                s = smx.hardmax(logits)
            elif self.simplex == "softmax":
                s = smx.softmax(logits, self.temperature)
            else:
                s = smx.sparsemax(logits)
            parts.append(s if cols is None else s[:, cols])
        return np.concatenate(parts, axis=0)
