"""Float and sound (discrete-grid) Gaussian noise for the samplers.

Two kinds of noise are offered (the samplers' ``noise=`` option):

* ``"float"`` (the default): ``x + sigma * eps`` with ``eps`` a floating-point standard normal (``torch.randn``
  or NumPy's ``standard_normal``). The noisy copies live on the floating-point grid around ``x``, and a base
  classifier can read that grid: Voráček & Hein (ICLR 2023) build classifiers whose float-smoothed certificate
  is wrong (``docs/soundness.md``; ``tests/test_sound.py`` reproduces such an attack).
* ``"sound"``: the input ``x`` must lie on a declared grid ``lo + k h`` inside a declared clip range
  ``[lo, hi]``; the noisy copy is the grid point ``Q(x + eps)``, where ``eps ~ N(0, sigma^2 I)`` and ``Q``
  rounds every coordinate to the nearest grid point and clips it to ``[lo, hi]``. Because ``x`` is on the
  grid, ``Q(x + eps) = clip(x + h round(eps / h))``: a (clipped) *rounded* Gaussian on the grid, which is drawn
  here without any floating-point arithmetic, by inverting its CDF with exact integer thresholds (below). The
  model only ever sees one of the ``G + 1`` grid values of each coordinate, a deterministic function of the
  integer grid index: it cannot learn which copies are noisy.

Sampling the rounded Gaussian (Voráček & Hein 2023, section 5, "sampling from a fair coin"): with ``B`` bits,
the thresholds are the integers ``T_d = floor(2^B Phi((d + 1/2) h / sigma))`` for the offsets
``d = -G .. G - 1`` (``Phi`` the standard normal CDF, ``G = (hi - lo) / h``), computed once with mpmath at
``prec = 200`` bits. ``U`` is uniform on the integers ``[0, 2^B)`` and the offset is
``e = #{d : T_d <= U} - G``, so ``P(e <= d) = T_d / 2^B`` exactly, for each coordinate. The clipped index is
``clip(k + e, 0, G)``; offsets beyond ``+-G`` are clipped anyway, so the finite table loses nothing.

Rounding. ``|T_d / 2^B - Phi((d + 1/2) h / sigma)| < 2^-B + 2^-190`` (floor, plus the mpmath error at 200 bits),
so for one coordinate the drawn and the ideal distributions (on ``G + 1`` ordered values, ``G`` CDF values)
are within total variation ``sum_j |F_j - F'_j| <= G 2^(1 - B)`` and, the coordinates being independent, the
whole noisy input is within ``tv_bound(dim) = dim G 2^(1 - B)`` of the ideal one. Every smoothed probability
the samples estimate is therefore within ``tv_bound`` of the ideal smoothed probability;
:func:`radius.radii.r_sound` subtracts it (``B = 62``: ``2e-14`` for the digits inputs, ``3.5e-13`` for a
CIFAR image on a ``1/255`` grid).

Uniform integers: NumPy's ``Generator.integers(0, 2**62)`` (masked rejection: exactly uniform) and
``torch.randint(0, 2**62)`` (ATen reduces a 64-bit draw modulo the range, exact for a power-of-two range, on
CPU and CUDA). Both are seeded like the float noise, so the draws are a deterministic function of
``(x, n, seed)`` per device.

References
----------
Voráček, Hein, "Sound randomized smoothing in floating-point arithmetic", ICLR 2023 (arXiv:2207.07209).
Cohen, Rosenfeld, Kolter, "Certified adversarial robustness via randomized smoothing", ICML 2019.
"""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import Optional, Tuple

import numpy as np

__all__ = ["NOISE_KINDS", "SoundNoise", "check_noise_kind", "make_sound_noise", "parse_grid", "default_clip"]

#: the noise kinds a sampler accepts (``"float"`` is the default)
NOISE_KINDS = ("float", "sound")

#: bits of the uniform integers (and of the thresholds); ``2^62`` is a power of two below torch's int64 limit
DEFAULT_BITS = 62

_MAX_LEVELS = 1 << 20

#: top bits of the uniform integer used by the NumPy guide table (a speed-up; the result is exact)
GUIDE_BITS = 16


def check_noise_kind(noise, grid=None, clip=None, allowed=NOISE_KINDS) -> str:
    """Validate ``noise`` and refuse ``grid`` / ``clip`` unless the noise is ``"sound"``.

    Examples
    --------
    >>> check_noise_kind("sound", grid=1/16)
    'sound'
    >>> check_noise_kind("float", grid=1/16)
    Traceback (most recent call last):
    ...
    ValueError: grid=0.0625 only applies to noise='sound', got noise='float'
    """
    if not isinstance(noise, str) or noise not in allowed:
        raise ValueError(f"noise must be one of {tuple(allowed)}, got {noise!r}")
    if noise != "sound":
        for name, v in (("grid", grid), ("clip", clip)):
            if v is not None:
                raise ValueError(f"{name}={v!r} only applies to noise='sound', got noise={noise!r}")
    return noise


def _to_fraction(v, what: str) -> Fraction:
    """An exact fraction from a Fraction, int, string ("1/255", "-2") or float (nearest fraction with
    denominator <= 10^6, which must agree with the float to 1e-12 relative)."""
    if isinstance(v, bool) or v is None:
        raise ValueError(f"{what} must be a number such as 1/255 or '1/16', got {v!r}")
    try:
        if isinstance(v, (float, np.floating)):
            g = float(v)
            if not math.isfinite(g):
                raise ValueError
            f = Fraction(g).limit_denominator(10**6)
            if abs(float(f) - g) > 1e-12 * abs(g):
                raise ValueError
        elif isinstance(v, np.integer):
            f = Fraction(int(v))
        else:
            f = Fraction(v)
    except (ValueError, TypeError, ZeroDivisionError):
        raise ValueError(f"{what} must be a number such as 1/255 or '1/16' (a float must be a fraction with "
                         f"denominator <= 10^6), got {v!r}") from None
    return f


def make_sound_noise(noise: str, sigma: float, grid=None, clip=None) -> "Optional[SoundNoise]":
    """The samplers' constructor rule: a :class:`SoundNoise` for ``noise="sound"`` (``grid`` required), else
    ``None``; ``grid`` / ``clip`` with another noise are refused (a flag either applies or is refused).

    Examples
    --------
    >>> make_sound_noise("float", 0.25) is None
    True
    >>> make_sound_noise("sound", 0.25, grid="1/16").levels  # default clip (-2, 3)
    80
    """
    check_noise_kind(noise, grid, clip)
    if noise != "sound":
        return None
    if grid is None:
        raise ValueError("noise='sound' needs grid= (the step of the input grid, e.g. 1/255 for 8-bit images "
                         "or 1/16 for the digits data)")
    return SoundNoise(sigma, grid, clip)


def parse_grid(grid) -> Fraction:
    """The grid step as an exact positive fraction.

    ``grid`` may be a ``Fraction``, an int, a string such as ``"1/255"``, or a float; a float is read as the
    fraction with denominator ``<= 10^6`` nearest to it, which must agree with it to ``1e-12`` relative
    (``1/255`` typed as ``0.00392156862745098`` is the fraction ``1/255``).

    Examples
    --------
    >>> parse_grid(1/255), parse_grid("1/16"), parse_grid(0.5)
    (Fraction(1, 255), Fraction(1, 16), Fraction(1, 2))
    """
    f = _to_fraction(grid, "grid")
    if f <= 0:
        raise ValueError(f"grid must be > 0, got {grid!r}")
    return f


def default_clip(sigma: float) -> Tuple[int, int]:
    """``(-k, 1 + k)`` with ``k = max(1, ceil(6 sigma))``: inputs in ``[0, 1]`` are clipped only when the
    noise exceeds ``6 sigma`` (probability ``< 2e-9`` per coordinate), as in Voráček & Hein's code.

    Examples
    --------
    >>> default_clip(0.25), default_clip(0.5)
    ((-2, 3), (-3, 4))
    """
    k = max(1, math.ceil(6 * float(sigma)))
    return (-k, 1 + k)


@lru_cache(maxsize=64)
def _thresholds(h: Fraction, sigma: float, levels: int, bits: int) -> np.ndarray:
    """``floor(2^bits Phi((d + 1/2) h / sigma))`` for ``d = -levels .. levels - 1`` (int64, nondecreasing)."""
    import mpmath

    out = np.empty(2 * levels, dtype=np.int64)
    with mpmath.workprec(200):
        s = mpmath.mpf(sigma)  # exact: a binary float
        step = mpmath.mpf(h.numerator) / h.denominator
        scale = mpmath.mpf(2) ** bits
        for i, d in enumerate(range(-levels, levels)):
            z = (d + mpmath.mpf(0.5)) * step / s
            out[i] = int(mpmath.floor(mpmath.ncdf(z) * scale))
    if np.any(np.diff(out) < 0) or out[0] < 0 or out[-1] > (1 << bits):
        raise AssertionError("thresholds are not a nondecreasing table in [0, 2^bits]")  # cannot happen
    return out


class SoundNoise:
    """Rounded Gaussian noise on a grid, drawn from exact integer thresholds (see the module docstring).

    Parameters
    ----------
    sigma : float
        Standard deviation of the Gaussian that is rounded (> 0); the certificate's ``sigma``.
    grid : number, str or Fraction
        Grid step ``h`` (e.g. ``1/255`` for 8-bit images, ``1/16`` for the digits data).
    clip : (lo, hi), optional
        Clip range; ``lo`` and ``hi`` must be grid points (multiples of ``h``), inputs must lie in it and the
        noisy copies are clipped to it. Default :func:`default_clip` ``(sigma)``.
    bits : int
        Bits of the uniform integers and thresholds (default 62, at most 62).

    Attributes
    ----------
    levels : int
        ``G = (hi - lo) / h``; the grid indices are ``0 .. G``.
    thresholds : ndarray of int64, shape (2 G,)
    values : ndarray of float64, shape (G + 1,)
        ``lo + j h`` (each the float64 nearest the exact grid value).

    Examples
    --------
    >>> sn = SoundNoise(0.25, grid="1/16", clip=(0, 1))
    >>> sn.levels, sn.thresholds.shape
    (16, (32,))
    >>> k = sn.indices(np.array([0.0, 0.5, 1.0], dtype=np.float32))
    >>> k.tolist()
    [0, 8, 16]
    >>> v = sn.sample_numpy(k, 4, np.random.default_rng(0))
    >>> v.shape, bool(v.min() >= 0 and v.max() <= 16)
    ((4, 3), True)
    >>> sn.indices(np.array([0.3]))
    Traceback (most recent call last):
    ...
    ValueError: x[0] = 0.3 is not on the grid lo + k*h (h = 1/16, lo = 0); nearest grid value 0.3125
    """

    def __init__(self, sigma: float, grid, clip: Optional[Tuple[float, float]] = None, bits: int = DEFAULT_BITS):
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.integer, np.floating)) \
                or not (math.isfinite(float(sigma)) and float(sigma) > 0):
            raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
        self.sigma = float(sigma)
        self.grid = parse_grid(grid)
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 8 <= bits <= 62:
            raise ValueError(f"bits must be an integer in [8, 62], got {bits!r}")
        self.bits = int(bits)
        if clip is None:
            clip = default_clip(self.sigma)
        try:
            lo, hi = clip
        except (TypeError, ValueError):
            raise ValueError(f"clip must be a pair (lo, hi), got {clip!r}") from None
        flo, fhi = self._grid_point(lo, "clip lo"), self._grid_point(hi, "clip hi")
        if fhi <= flo:
            raise ValueError(f"clip must have lo < hi, got {clip!r}")
        self.lo, self.hi = flo, fhi
        G = (fhi - flo) / self.grid
        if G.denominator != 1:
            raise AssertionError("clip ends on the grid give an integer level count")  # cannot happen
        if G > _MAX_LEVELS:
            raise ValueError(f"clip {clip!r} with grid {self.grid} has {G} levels; at most {_MAX_LEVELS}")
        self.levels = int(G)
        self.thresholds = _thresholds(self.grid, self.sigma, self.levels, self.bits)
        self.values = np.array([float(flo + j * self.grid) for j in range(self.levels + 1)], dtype=np.float64)
        self._torch_cache = {}
        # guide table (NumPy path): the top GUIDE_BITS bits of U name a bucket; where no threshold falls
        # inside the bucket the count #{T_d <= U} is the same for every U in it and is read from the table
        # (exact); the few other buckets (-1) fall back to the binary search.
        shift = self.bits - GUIDE_BITS
        b = np.arange(1 << GUIDE_BITS, dtype=np.int64)
        first = np.searchsorted(self.thresholds, b << shift, side="right")
        last = np.searchsorted(self.thresholds, ((b + 1) << shift) - 1, side="right")
        self._guide = np.where(first == last, first, -1).astype(np.int64)
        self._guide_shift = shift

    def _grid_point(self, v, what) -> Fraction:
        f = _to_fraction(v, what)
        if (f / self.grid).denominator != 1:
            raise ValueError(f"{what} = {v!r} is not a multiple of the grid step {self.grid}")
        return f

    # ------------------------------------------------------------------------------------------ description
    def describe(self) -> dict:
        """Plain values naming this noise, for run metadata."""
        return {"noise": "sound", "grid": str(self.grid), "clip": [str(self.lo), str(self.hi)],
                "bits": self.bits, "sigma": self.sigma}

    def __repr__(self) -> str:
        return f"SoundNoise(sigma={self.sigma}, grid={str(self.grid)!r}, clip=({self.lo}, {self.hi}), bits={self.bits})"

    def tv_bound(self, dim: int) -> float:
        """Total-variation distance between the drawn and the ideal noisy input of ``dim`` coordinates.

        ``dim * G * 2^(1 - bits)`` rounded up (module docstring); pass it to :func:`radius.radii.r_sound`.

        Examples
        --------
        >>> SoundNoise(0.25, grid="1/16", clip=(-2, 3)).tv_bound(64) < 1e-13
        True
        """
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        exact = Fraction(int(dim) * self.levels * 2, 1 << self.bits)
        t = float(exact)
        return t if Fraction(t) >= exact else float(np.nextafter(t, np.inf))

    # ---------------------------------------------------------------------------------------------- inputs
    def indices(self, x) -> np.ndarray:
        """Grid indices ``k`` (int64, shape of ``x``) with ``x = lo + k h``; ValueError naming the first input
        value off the grid or outside the clip range.

        A float value is on the grid when it is within two units in the last place (of its own dtype) of the
        exact grid value, i.e. when it is that value as stored in that dtype; it is then *identified* with it.
        """
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"x must hold real numbers, got dtype {arr.dtype}")
        xf = arr.astype(np.float64)
        if not np.all(np.isfinite(xf)):
            raise ValueError(f"x must be finite, got {xf[~np.isfinite(xf)].ravel()[0]!r}")
        h, lo = float(self.grid), float(self.lo)
        k = np.rint((xf - lo) / h)
        val = lo + k * h
        if arr.dtype.kind == "f":
            dt = arr.dtype
            tol = 2.0 * np.spacing(np.maximum(np.abs(val), np.abs(xf)).astype(dt)).astype(np.float64)
            tol = np.maximum(tol, 2.0 * np.spacing(np.maximum(np.abs(val), np.abs(xf))))
        else:
            tol = np.zeros_like(xf)
        off = np.abs(xf - val) > tol
        if np.any(off):
            idx = tuple(int(i) for i in np.argwhere(off)[0])
            where = idx[0] if len(idx) == 1 else idx
            raise ValueError(f"x[{where}] = {arr[idx].item()!r} is not on the grid lo + k*h (h = {self.grid}, lo = "
                             f"{self.lo}); nearest grid value {val[idx].item()!r}")
        out = (k < 0) | (k > self.levels)
        if np.any(out):
            idx = tuple(int(i) for i in np.argwhere(out)[0])
            where = idx[0] if len(idx) == 1 else idx
            raise ValueError(f"x[{where}] = {arr[idx].item()!r} lies outside the clip range [{self.lo}, {self.hi}]")
        return k.astype(np.int64)

    # ---------------------------------------------------------------------------------------------- NumPy
    def sample_numpy(self, k: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
        """``b`` noisy grid indices of the input with indices ``k``: int64 array ``(b, *k.shape)``."""
        u = rng.integers(0, 1 << self.bits, size=(b, *k.shape), dtype=np.int64)
        e = self.count_below(u)
        e += k - self.levels
        np.clip(e, 0, self.levels, out=e)
        return e

    def count_below(self, u: np.ndarray) -> np.ndarray:
        """``#{d : T_d <= u}`` for int64 ``u`` in ``[0, 2^bits)``: equals ``searchsorted(T, u, "right")``,
        computed with the guide table (one lookup; binary search only in the few buckets holding a threshold).
        """
        e = self._guide[u >> self._guide_shift]
        bad = e < 0
        if bad.any():
            e[bad] = np.searchsorted(self.thresholds, u[bad], side="right")
        return e

    # ---------------------------------------------------------------------------------------------- torch
    def torch_tables(self, device, dtype):
        """``(thresholds, values)`` as tensors on ``device`` (int64, ``dtype``); cached per device and dtype."""
        import torch

        key = (str(device), str(dtype))
        if key not in self._torch_cache:
            self._torch_cache[key] = (torch.as_tensor(self.thresholds, device=device),
                                      torch.as_tensor(self.values, dtype=torch.float64).to(dtype).to(device))
        return self._torch_cache[key]

    def sample_torch(self, k, b: int, generator, thresholds, values):
        """``b`` noisy copies (values, ``values.dtype``, on the device of ``k``) of the input with grid indices
        ``k`` (int64 tensor): ``torch.randint`` with ``generator``, ``searchsorted`` (on CPU tensors: the
        guide table of :meth:`count_below`, same result), clamp and gather, all on the device."""
        import torch

        u = torch.randint(0, 1 << self.bits, (b, *k.shape), generator=generator, device=k.device,
                          dtype=torch.int64)
        if u.device.type == "cpu":  # same memory, no copy: the exact guide table of the NumPy path is faster
            e = torch.from_numpy(self.count_below(u.numpy()))
        else:
            e = torch.searchsorted(thresholds, u, right=True)
        e.add_(k).sub_(self.levels).clamp_(0, self.levels)
        return values[e]
