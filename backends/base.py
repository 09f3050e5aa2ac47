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

from typing import Callable, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy as np

__all__ = ["Sampler", "ArraySampler", "num_classes_of", "check_sampler_args", "check_logits", "check_sigma", "check_batch_size",
           "check_num_classes", "as_input_array", "describe_input", "check_columns", "check_normalize",
           "broadcast_normalize", "numpy_noisy_batches"]


@runtime_checkable
class Sampler(Protocol):
    sigma: float
    num_classes: int
    simplex: str

    def counts(self, x: np.ndarray, n: int, seed: int) -> np.ndarray: ...

    def scores(self, x: np.ndarray, n: int, seed: int, columns: Optional[Sequence[int]] = None) -> np.ndarray: ...


def num_classes_of(sampler, example=None) -> int:
    """The class count of ``sampler``; if it is not known yet, found from ``example`` (one input).

    Samplers that learn the input shape lazily (:class:`backends.torch_sampler.TorchSampler`,
    :class:`backends.onnx_sampler.OnnxSampler` without ``input_shape``) expose ``bind_input(x)``: it fixes the
    input shape to ``x``'s and runs one noise-free forward pass. Callers holding the data (the run layer)
    pass its first input here, so a user's model needs no ``input_shape`` or ``num_classes`` attribute.

    Examples
    --------
    >>> s = ArraySampler(lambda z: np.stack([z[:, 0], -z[:, 0]], axis=1), 2, sigma=1.0)
    >>> num_classes_of(s)
    2
    """
    try:
        m = sampler.num_classes
    except AttributeError:
        m = None
    if m is None:
        bind = getattr(sampler, "bind_input", None)
        if bind is None or example is None:
            raise ValueError(f"the class count of {type(sampler).__name__} is not known: give it num_classes= "
                             "(or input_shape=), or pass an example input")
        m = bind(example)
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"sampler.num_classes must be a positive integer, got {m!r}")
    return int(m)


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
        raise ValueError(f"{what} holds a non-finite value {float(arr[tuple(bad)])!r} at row {int(bad[0])}{where}")
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
    noise : {"float", "sound"}
        ``"float"`` (default): ``x + sigma * eps``, ``eps`` standard normal in
        float64.  ``"sound"``: the rounded Gaussian on the grid ``grid`` within
        ``clip`` (:class:`backends.noise.SoundNoise`; inputs must lie on the
        grid), see :func:`numpy_noisy_batches`.
    grid, clip :
        Grid step and clip range of ``noise="sound"`` (refused otherwise);
        ``grid`` is required with it, ``clip`` defaults to
        :func:`backends.noise.default_clip`.

    Noise is drawn with ``numpy.random.default_rng(seed)`` in float64, batch by
    batch, so results are reproducible and memory is bounded by the batch.
    Used for linear base classifiers with known smoothed probabilities in the
    soundness tests, and for any model a user can express in NumPy.
    """

    def __init__(self, logits_fn: Callable[[np.ndarray], np.ndarray], num_classes: int, *, sigma: float,
                 batch_size: int = 1000, simplex: str = "hard", temperature: float = 1.0, noise: str = "float",
                 grid=None, clip=None):
        from .noise import make_sound_noise

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
        self.sound = make_sound_noise(noise, self.sigma, grid, clip)
        self.noise = noise

    def _batches(self, x, n, seed):
        if self.sound is not None:
            for done, noisy in numpy_noisy_batches(x, self.sigma, n, seed, self.batch_size, np.float64, self.sound):
                b = noisy.shape[0]
                logits = check_logits(self.logits_fn(noisy), b, where=f" (batch starting at sample {done})")
                if logits.shape[1] != self.num_classes:
                    raise ValueError(f"model output has {logits.shape[1]} classes, expected {self.num_classes}")
                yield logits
            return
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


# ------------------------------------------------------------------------------------------------------------
# Helpers shared by the torch and ONNX samplers (ArraySampler above does not use them).


def check_sigma(sigma) -> float:
    """``sigma`` must be a finite real number > 0 (the noise standard deviation, in input space)."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.integer, np.floating)):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    s = float(sigma)
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    return s


def check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def check_num_classes(num_classes) -> Optional[int]:
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer or None, got {num_classes!r}")
    return int(num_classes)


def as_input_array(x, name: str = "x") -> np.ndarray:
    """One input as a NumPy array of real numbers, all finite (torch tensors are copied to the host)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers (float or integer dtype), got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array (one input, without a batch axis), got a scalar {arr!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got a non-finite value {arr[~np.isfinite(arr)].ravel()[0]!r}")
    return arr


def describe_input(x: np.ndarray) -> str:
    """A short name of one input for error messages: its shape and a SHA-1 prefix of its bytes."""
    import hashlib

    arr = np.ascontiguousarray(x)
    return f"input x of shape {arr.shape} (sha1 {hashlib.sha1(arr.tobytes()).hexdigest()[:12]})"


class _BatchWhere:
    """Lazy ``where`` suffix: formatted (and the input hashed) only when an error message needs it."""

    __slots__ = ("x", "seed", "start", "b", "batch_size")

    def __init__(self, x, seed, start, b, batch_size):
        self.x, self.seed, self.start, self.b, self.batch_size = x, seed, start, b, batch_size

    def __str__(self) -> str:
        return (f" in batch {self.start // self.batch_size} (noise samples {self.start}..{self.start + self.b - 1}, "
                f"seed {self.seed}) for {describe_input(self.x)}")

    __format__ = lambda self, spec: format(str(self), spec)  # noqa: E731


def batch_where(x: np.ndarray, seed: int, start: int, b: int, batch_size: int) -> _BatchWhere:
    """The ``where`` suffix naming the input and the batch, for :func:`check_logits` (formatted lazily)."""
    return _BatchWhere(x, seed, start, b, batch_size)


def check_columns(columns, num_classes: int) -> Optional[np.ndarray]:
    """``columns`` of a score matrix: None (all) or a non-empty 1-D list of class indices in [0, m)."""
    if columns is None:
        return None
    cols = np.asarray(columns)
    if cols.ndim != 1 or cols.size == 0 or cols.dtype.kind not in "iu":
        raise ValueError(f"columns must be a non-empty 1-D sequence of integer class indices, got {columns!r}")
    if np.any(cols < 0) or np.any(cols >= num_classes):
        raise ValueError(f"columns must lie in [0, {num_classes}), got {cols.tolist()!r}")
    return cols.astype(np.int64)


def check_normalize(normalize):
    """``normalize=(mean, std)``: scalars or arrays; std > 0; all finite. Returns float64 arrays or None."""
    if normalize is None:
        return None
    try:
        mean, std = normalize
    except (TypeError, ValueError):
        raise ValueError(f"normalize must be None or a pair (mean, std), got {normalize!r}") from None
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
        raise ValueError(f"normalize (mean, std) must be finite, got {normalize!r}")
    if np.any(std <= 0):
        raise ValueError(f"normalize std must be > 0, got {std.tolist()!r}")
    return mean, std


def broadcast_normalize(normalize, shape: Tuple[int, ...]):
    """Shape ``(mean, std)`` for one input of ``shape``.

    A 1-D mean/std whose length is ``shape[0]`` (and ``len(shape) >= 2``) is per channel (channel first,
    as torchvision's ``Normalize``); otherwise they must broadcast to ``shape``.
    """
    if normalize is None:
        return None
    out = []
    for name, v in zip(("mean", "std"), normalize):
        if v.ndim == 1 and len(shape) >= 2 and v.shape[0] == shape[0] and v.shape[0] != shape[-1]:
            v = v.reshape((shape[0],) + (1,) * (len(shape) - 1))
        elif v.ndim == 1 and len(shape) >= 2 and v.shape[0] == shape[0] == shape[-1] and v.shape[0] > 1:
            raise ValueError(f"normalize {name} of length {v.shape[0]} is ambiguous for inputs of shape {shape} "
                             "(channel or last axis?); pass it with an explicit shape, e.g. (C, 1, 1)")
        try:
            np.broadcast_to(v, shape)
        except ValueError:
            raise ValueError(f"normalize {name} of shape {v.shape} does not broadcast to the input shape "
                             f"{shape}") from None
        out.append(v)
    return tuple(out)


def numpy_noisy_batches(x: np.ndarray, sigma: float, n: int, seed: int, batch_size: int, dtype=np.float32,
                        sound=None):
    """Yield ``(start, batch)``: ``batch = x + sigma * eps`` with ``eps`` from ``default_rng(seed)``.

    The noise of the whole call is one stream, ``rng.standard_normal((b, *x.shape), dtype=dtype)`` per batch,
    and the sum is formed in ``dtype``, so the ONNX sampler and ``TorchSampler(noise="numpy")`` see
    bit-identical inputs. Memory: one batch.

    With ``sound`` (a :class:`backends.noise.SoundNoise` whose ``sigma`` equals ``sigma``) the batch is instead
    the rounded Gaussian on the grid, ``Q(x + eps)``: ``x`` must lie on the grid (ValueError naming the first
    value off it), the grid indices come from ``rng.integers`` and exact integer thresholds
    (:meth:`backends.noise.SoundNoise.sample_numpy`), and the batch holds the grid values in ``dtype``
    (Voráček & Hein, ICLR 2023; ``docs/soundness.md``).
    """
    rng = np.random.default_rng(seed)
    if sound is not None:
        if float(sound.sigma) != float(sigma):
            raise ValueError(f"sound noise has sigma={sound.sigma!r}, the sampler sigma={sigma!r}")
        k = sound.indices(x)
        values = sound.values.astype(dtype)
        start = 0
        while start < n:
            b = min(batch_size, n - start)
            yield start, values[sound.sample_numpy(k, b, rng)]
            start += b
        return
    xd = np.asarray(x, dtype=dtype)
    s = np.asarray(sigma, dtype=dtype)
    start = 0
    while start < n:
        b = min(batch_size, n - start)
        batch = rng.standard_normal((b, *xd.shape), dtype=dtype)
        np.multiply(batch, s, out=batch)
        np.add(batch, xd, out=batch)
        yield start, batch
        start += b
