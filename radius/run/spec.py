"""The run specification: one frozen, validated description of a certification run.

A :class:`RunSpec` says everything that fixes a run's results -- the noise
(sigma, noise kind), the samples (n0, n, seed, mode, simplex, temperature,
backend), the method (reduction, radius, bound, alpha, Lipschitz constants),
and the identities of the model and the data -- and nothing about how the run
is executed (engine, workers, progress, paths).  Every engine
(:mod:`radius.engines.local`, :mod:`radius.engines.sequential`,
:mod:`radius.engines.ray_engine`) takes one; only :mod:`radius.cli` builds one
from flags.

This module is the one owner of

* the checks of every field (a ``ValueError`` naming the field and the value;
  a field that does not apply to the run, e.g. a ``reduction`` in a
  sequential run or a ``simplex`` in counts mode, is refused, never ignored);
* the metadata written at the top of the result files (:meth:`RunSpec.metadata`,
  :meth:`RunSpec.sampling_metadata`), which decides whether a file may be
  resumed: any differing field refuses it;
* the one seed rule (:func:`derive_seed`, :func:`input_seeds`): the noise of
  input ``i`` depends only on ``(seed, i, purpose)``, never on the engine, the
  order or the other inputs (theory §1: selection and estimation samples are
  independent).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from confbounds import check_choice

__all__ = ["RunSpec", "SequentialSpec", "derive_seed", "input_seeds", "check_sigma", "check_alpha",
           "check_int", "MODES", "SIMPLEXES", "NOISES", "SOUND_REFUSED_RADII", "BACKENDS", "SEQ_BOUNDS", "SEQ_RADIUS_KINDS",
           "SEQUENTIAL_PRIOR",
           "SELECTION", "ESTIMATION", "PROBE", "SEQ_SELECTION", "SEQ_ESTIMATION"]

MODES = ("counts", "scores")
SIMPLEXES = ("hard", "softmax", "sparsemax")
#: ``noise``: "float" (floating-point Gaussian, the default); "sound" (the rounded Gaussian on a declared grid,
#: :mod:`backends.noise`; needs ``grid``, allows ``clip``).
NOISES = ("float", "sound")
#: Radii that do not carry over to sound noise (``f o Q`` is not Lipschitz; docs/soundness.md).
SOUND_REFUSED_RADII = ("R1_lip", "Rmono_lip", "Rmulti_lip")
#: ``backend``: None (by file type), "onnx", "torch", "auto" (torch exported to ONNX).
BACKENDS = (None, "onnx", "torch", "auto")
SEQ_BOUNDS = ("mixture", "betting", "cp-looks", "table")
#: Radii a sequential run can certify (``"R2"`` needs ``bound="table"``).
SEQ_RADIUS_KINDS = ("Rmono", "R2")
#: Beta mixing prior of the sequential mixture CS (fixed before seeing data; any fixed prior keeps validity).
SEQUENTIAL_PRIOR = (1.0, 0.1)

#: Purpose tags mixed into the per-input seeds (arbitrary distinct constants; changing one changes every result).
SELECTION, ESTIMATION, PROBE = 0x5E1EC7, 0xE5717A7E, 0x9B0BE
SEQ_SELECTION, SEQ_ESTIMATION = 0x5E9E1, 0x5E9E2

_FIXED_DEFAULTS = {"n": 10_000, "reduction": "exact", "radius": "R2", "bound": "betting"}


# ------------------------------------------------------------------------------------------------ seeds

def derive_seed(seed: int, idx: int, purpose: int, *more: int) -> int:
    """The one seed rule: a 63-bit seed from ``(seed, idx, purpose, *more)``.

    :class:`numpy.random.SeedSequence` hashes the tuple, so seeds of different
    inputs, purposes or batches are independent streams; the result is a
    non-negative integer accepted by NumPy and ``torch.Generator``.

    >>> derive_seed(0, 7, SELECTION) == derive_seed(0, 7, SELECTION) != derive_seed(0, 7, ESTIMATION)
    True
    """
    hi, lo = np.random.SeedSequence([int(seed), int(idx), int(purpose), *(int(v) for v in more)]
                                    ).generate_state(2, np.uint32)
    return (int(hi) << 31) | (int(lo) >> 1)


def input_seeds(seed: int, idx: int) -> Tuple[int, int]:
    """Selection and estimation seeds of input ``idx`` in a fixed-n run with ``seed``.

    >>> s, e = input_seeds(0, 7)
    >>> s != e and (s, e) == input_seeds(0, 7) and input_seeds(0, 8) != (s, e)
    True
    """
    return derive_seed(seed, idx, SELECTION), derive_seed(seed, idx, ESTIMATION)


# ----------------------------------------------------------------------------------------------- checks

def check_sigma(sigma) -> float:
    """Noise level as a float; ``ValueError`` naming it unless it is a finite number > 0.

    >>> check_sigma(0.25)
    0.25
    """
    if isinstance(sigma, bool):
        raise ValueError(f"sigma must be a finite number > 0, got sigma={sigma!r}")
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"sigma must be a finite number > 0, got sigma={sigma!r}") from None
    if not (math.isfinite(s) and s > 0.0):
        raise ValueError(f"sigma must be a finite number > 0, got sigma={sigma!r}")
    return s


def check_alpha(alpha, name: str = "alpha") -> float:
    """A failure probability in (0, 1).

    >>> check_alpha(0.001)
    0.001
    """
    if isinstance(alpha, bool):
        raise ValueError(f"{name} must be a number in (0, 1), got {name}={alpha!r}")
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), got {name}={alpha!r}") from None
    if not (0.0 < a < 1.0):
        raise ValueError(f"{name} must be a number in (0, 1), got {name}={alpha!r}")
    return a


def check_int(v, name: str, minimum: int = 1) -> int:
    """An integer ``>= minimum`` (bools and floats refused).

    >>> check_int(3, "n")
    3
    """
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={v!r}")
    return int(v)


def _check_pos_float(v, name: str, allow_zero: bool = False) -> float:
    if isinstance(v, bool):
        raise ValueError(f"{name} must be a finite number > 0, got {name}={v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {name}={v!r}") from None
    if not math.isfinite(f) or f < 0 or (f == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {name}={v!r}")
    return f


def _plain(v):
    """JSON-safe plain value of a method parameter (a callable bound is recorded by name)."""
    if v is None or isinstance(v, (str, bool)):
        return v
    if callable(v):
        return getattr(v, "__name__", repr(v))
    return float(v)


# --------------------------------------------------------------------------------------------- the spec

@dataclass(frozen=True)
class SequentialSpec:
    """How a sequential run samples and stops (see :mod:`radius.sequential`; theory §6).

    Parameters
    ----------
    radii : tuple of float
        Radii to decide (each finite and > 0); may be empty if ``tolerance`` is given.
    tolerance : float, optional
        Stop once the radius is pinned to this width.
    max_n : int
        Cap on estimation samples per input.
    bound : {"mixture", "betting", "cp-looks", "table"}
        The confidence sequence (``"table"``: the mixture CS read after every sample through integer threshold
        tables, :class:`radius.sequential.TableState`).
    radius_kind : {"Rmono", "R2"}
        The certified radius; ``"R2"`` (probit margin, two one-sided CSs) needs ``bound="table"``.
    batch_size, growth : int, float
        Estimation batch ``j`` has ``ceil(batch_size * growth**j)`` samples.
    futility_z, final_share, lower_share, prior, betting_method
        As in :func:`radius.sequential.certify_sequential`.
    """

    radii: Tuple[float, ...] = ()
    tolerance: Optional[float] = None
    max_n: int = 100_000
    bound: str = "mixture"
    batch_size: int = 200
    growth: float = 2.0
    futility_z: Optional[float] = 2.0
    final_share: Optional[float] = 0.5
    lower_share: float = 0.9
    prior: Tuple[float, float] = SEQUENTIAL_PRIOR
    betting_method: str = "hedged"
    radius_kind: str = "Rmono"

    def __post_init__(self):
        rr = self.radii
        if isinstance(rr, str) or rr is None:
            raise ValueError(f"radii must be a sequence of numbers > 0, got radii={rr!r}")
        arr = np.atleast_1d(np.asarray(rr, dtype=float)) if len(tuple(rr)) else np.zeros(0)
        bad = arr[~(np.isfinite(arr) & (arr > 0))]
        if bad.size:
            raise ValueError(f"radii must be finite and > 0, got radii={bad.tolist()!r}")
        object.__setattr__(self, "radii", tuple(sorted(set(float(r) for r in arr))))
        if self.tolerance is not None:
            object.__setattr__(self, "tolerance", _check_pos_float(self.tolerance, "tolerance"))
        if not self.radii and self.tolerance is None:
            raise ValueError("a sequential run needs radii (radii to decide) and/or a tolerance (pin the radius)")
        object.__setattr__(self, "max_n", check_int(self.max_n, "max_n"))
        object.__setattr__(self, "batch_size", check_int(self.batch_size, "batch_size"))
        if self.max_n < self.batch_size:
            raise ValueError(f"max_n = {self.max_n} is smaller than one batch (batch_size = {self.batch_size})")
        check_choice(self.bound, "bound", SEQ_BOUNDS)
        g = _check_pos_float(self.growth, "growth")
        if g < 1:
            raise ValueError(f"growth must be a finite number >= 1, got growth={self.growth!r}")
        object.__setattr__(self, "growth", g)
        if self.futility_z is not None:
            object.__setattr__(self, "futility_z", _check_pos_float(self.futility_z, "futility_z", True))
        if self.final_share is not None:
            f = _check_pos_float(self.final_share, "final_share")
            if not f < 1:
                raise ValueError(f"final_share must be None or a number in (0, 1), got {self.final_share!r}")
            object.__setattr__(self, "final_share", f)
        lo = _check_pos_float(self.lower_share, "lower_share")
        if not lo < 1:
            raise ValueError(f"lower_share must be a number in (0, 1), got {self.lower_share!r}")
        object.__setattr__(self, "lower_share", lo)
        from confbounds.mixture import check_prior

        object.__setattr__(self, "prior", tuple(float(v) for v in check_prior(self.prior)))
        check_choice(self.betting_method, "betting_method", ("hedged", "prpl-eb"))
        check_choice(self.radius_kind, "radius_kind", SEQ_RADIUS_KINDS)
        if self.radius_kind != "Rmono" and self.bound != "table":
            raise ValueError(f"radius_kind={self.radius_kind!r} needs bound='table', got bound={self.bound!r}")
        if self.bound == "table":
            if not self.radii:
                raise ValueError("bound='table' decides radii: give radii (a tolerance alone is not supported)")
            if self.tolerance is not None:
                raise ValueError(f"tolerance={self.tolerance!r} does not apply to bound='table' (it decides radii "
                                 f"only)")

    @property
    def soft(self) -> bool:
        """Whether the sequence bounds score values (betting) rather than the hard indicator."""
        return self.bound == "betting"

    def metadata(self) -> Dict[str, Any]:
        d = asdict(self)
        d["radii"] = list(self.radii)
        d["prior"] = list(self.prior)
        if self.radius_kind == "Rmono":  # files written before radius_kind existed stay resumable
            d.pop("radius_kind")
        return d

    def alpha_split(self, alpha: float) -> str:
        """How ``alpha`` is spent (recorded in the run metadata; ``bound="table"``, see radius.sequential)."""
        s = self.final_share if self.final_share is not None else 0.0
        cs = f"mixture CS (all looks) {(1 - s) * alpha:.6g}"
        if self.radius_kind == "R2":
            cs += " = p_A lower 1/2 + buckets upper 1/2 split evenly over the K buckets"
        if s > 0:
            cs += f"; fixed-n Clopper-Pearson at t = max_n {s * alpha:.6g}"
            if self.radius_kind == "R2":
                cs += " (same split)"
        return cs


@dataclass(frozen=True)
class RunSpec:
    """A frozen, validated certification run (see the module docstring).

    Parameters
    ----------
    sigma : float
        Noise level (finite, > 0); must equal the sampler's.
    alpha : float
        Failure probability of each certificate.
    n0 : int
        Selection samples per input.
    n : int, optional
        Estimation samples per input (fixed-n runs; default 10000).  Refused in
        a sequential run (``sequential.max_n`` caps it there).
    seed : int
        Run seed (>= 0); input ``i`` uses :func:`input_seeds` ``(seed, i)``.
    mode : {"counts", "scores"}, optional
        Hard smoothing from class counts, or soft smoothing from score
        matrices.  Default "counts"; in a sequential run it follows the bound
        ("scores" for betting) and may not be set otherwise.
    simplex : {"hard", "softmax", "sparsemax"}, optional
        Map from logits to scores; scores mode only (default "hard"; None in counts mode).
    temperature : float, optional
        Softmax temperature; only with ``simplex="softmax"`` (default 1; None otherwise).
    noise : {"float", "sound"}
        "float" (default): floating-point Gaussian noise.  "sound": the rounded
        Gaussian on the grid ``grid`` within ``clip`` (:class:`backends.noise.SoundNoise`;
        Voráček & Hein, ICLR 2023).  Sound noise is refused in sequential runs
        (their scheduler draws float noise itself) and with the methods whose
        radius does not carry over to the rounded Gaussian: the local-Lipschitz
        radii (docs/soundness.md).
    grid : number or str, optional
        Step of the sound-noise grid (``1/255``, ``"1/16"``); required with
        ``noise="sound"``, refused otherwise.  Stored as the exact fraction's
        string (:func:`backends.noise.parse_grid`).
    clip : (lo, hi), optional
        Clip range of the sound noise (grid points); allowed only with
        ``noise="sound"`` (default :func:`backends.noise.default_clip` ``(sigma)``,
        recorded explicitly).  Stored as two fraction strings.
    noise_tv : float, optional
        Sound noise only: the total-variation bound of the threshold rounding,
        ``SoundNoise.tv_bound(dim)`` of the sampler at the inputs' dimension
        (theory §7; docs/soundness.md), filled in by the engine
        (:meth:`with_model`) and passed to :func:`radius.certificate.certify`
        as ``noise_tv=``.  Refused with float noise.
    noise_detail : mapping, optional
        The sampler's noise description (``sampler.sound.describe()``), filled
        in by the engine; recorded in the metadata (sound noise only).
    backend : {None, "onnx", "torch", "auto"}
        Model runtime (None: by file type).
    reduction, radius, bound, lipschitz, output_range
        The method (:func:`radius.certificate.certify`); fixed-n runs only.
    model : str or mapping, optional
        Identity of the model (e.g. ``{"sha256": ..., "format": ...}``).
    data : str, optional
        Identity of the data (:func:`radius.run.files.array_hash` of inputs and labels).
    num_classes, batch_size : int, optional
        Filled in once the model is loaded (:meth:`with_model`).
    sequential : SequentialSpec, optional
        Sequential sampling instead of fixed n.

    Examples
    --------
    >>> s = RunSpec(sigma=0.5, n=1000, reduction="cohen", radius="Rmono")
    >>> s.n, s.mode, s.cert_kwargs()["reduction"]
    (1000, 'counts', 'cohen')
    >>> RunSpec(sigma=0.5, simplex="softmax")
    Traceback (most recent call last):
    ...
    ValueError: simplex='softmax' applies only to mode='scores' (counts use the argmax); got mode='counts'
    """

    sigma: float
    alpha: float = 0.001
    n0: int = 100
    n: Optional[int] = None
    seed: int = 0
    mode: Optional[str] = None
    simplex: Optional[str] = None
    temperature: Optional[float] = None
    noise: str = "float"
    grid: Any = None
    clip: Any = None
    noise_tv: Optional[float] = None
    noise_detail: Any = None
    backend: Optional[str] = None
    reduction: Optional[str] = None
    radius: Optional[str] = None
    bound: Any = None
    lipschitz: Optional[float] = None
    output_range: Optional[float] = None
    model: Any = None
    data: Optional[str] = None
    num_classes: Optional[int] = None
    batch_size: Optional[int] = None
    sequential: Optional[SequentialSpec] = None

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        set_("sigma", check_sigma(self.sigma))
        set_("alpha", check_alpha(self.alpha))
        set_("n0", check_int(self.n0, "n0"))
        set_("seed", check_int(self.seed, "seed", minimum=0))
        seq = self.sequential
        if seq is not None:
            if not isinstance(seq, SequentialSpec):
                raise ValueError(f"sequential must be a SequentialSpec or None, got {type(seq).__name__}")
            for k in ("n", "reduction", "radius", "bound", "lipschitz", "output_range"):
                if getattr(self, k) is not None:
                    raise ValueError(f"{k}={getattr(self, k)!r} does not apply to a sequential run (it samples "
                                     f"until decided, up to max_n, and certifies with Cohen's R_mono from the "
                                     f"confidence sequence {seq.bound!r})")
            derived = "scores" if seq.soft else "counts"
            if self.mode is not None and self.mode != derived:
                raise ValueError(f"mode={self.mode!r} does not apply to a sequential run with bound "
                                 f"{seq.bound!r}, which uses mode {derived!r}")
            set_("mode", derived)
        else:
            for k, v in _FIXED_DEFAULTS.items():
                if getattr(self, k) is None:
                    set_(k, v)
            set_("n", check_int(self.n, "n"))
            set_("mode", "counts" if self.mode is None else check_choice(self.mode, "mode", MODES))
            from ..certificate import RADII, SUPPORTED
            from ..reductions import REDUCTIONS

            check_choice(self.radius, "radius", tuple(RADII))
            check_choice(self.reduction, "reduction", tuple(REDUCTIONS))
            if self.reduction not in SUPPORTED.get(self.radius, ()):
                raise ValueError(f"radius={self.radius!r} is not defined with reduction={self.reduction!r}; "
                                 f"use one of {tuple(SUPPORTED.get(self.radius, ()))}")
            if self.mode == "counts" and self.bound != "betting":
                raise ValueError(f"bound={self.bound!r} applies only to mode='scores' (counts use "
                                 "Clopper-Pearson or the trinomial tail)")
            for k in ("lipschitz", "output_range"):
                v = getattr(self, k)
                if v is not None:
                    if self.radius != "R1":
                        raise ValueError(f"{k}={v!r} applies only to radius='R1', got radius={self.radius!r}")
                    set_(k, _check_pos_float(v, k))
        # the score map: only where it shapes the samples (None elsewhere)
        soft = self.mode == "scores"
        if self.simplex is not None and not soft:
            raise ValueError(f"simplex={self.simplex!r} applies only to mode='scores' (counts use the argmax); "
                             f"got mode={self.mode!r}")
        if soft:
            set_("simplex", "hard" if self.simplex is None else check_choice(self.simplex, "simplex", SIMPLEXES))
        if self.temperature is not None:
            if self.simplex != "softmax":
                raise ValueError(f"temperature={self.temperature!r} applies only to simplex='softmax', got "
                                 f"simplex={self.simplex!r}")
            set_("temperature", _check_pos_float(self.temperature, "temperature"))
        elif self.simplex == "softmax":
            set_("temperature", 1.0)
        self._check_noise(set_)
        check_choice(self.backend, "backend", BACKENDS)
        if self.num_classes is not None:
            set_("num_classes", check_int(self.num_classes, "num_classes", minimum=2))
        if self.batch_size is not None:
            set_("batch_size", check_int(self.batch_size, "batch_size"))

    def _check_noise(self, set_) -> None:
        """The noise fields: kind, grid, clip, tv and description (sound-only fields refused otherwise)."""
        check_choice(self.noise, "noise", NOISES)
        if self.noise != "sound":
            for k in ("grid", "clip", "noise_tv", "noise_detail"):
                if getattr(self, k) is not None:
                    raise ValueError(f"{k}={getattr(self, k)!r} applies only to noise='sound', got "
                                     f"noise={self.noise!r}")
            return
        if self.sequential is not None:
            raise ValueError("noise='sound' does not apply to a sequential run (its scheduler draws float "
                             "Gaussian noise itself); use a fixed-n run")
        if self.grid is None:
            raise ValueError("noise='sound' needs grid (the step of the input grid, e.g. 1/255 for 8-bit images "
                             "or 1/16 for the digits data)")
        if self.radius in SOUND_REFUSED_RADII:
            raise ValueError(f"noise='sound' with radius={self.radius!r} is refused: the local-Lipschitz radii do "
                             "not carry over to the rounded Gaussian (f o Q is not Lipschitz; docs/soundness.md)")
        from backends.noise import SoundNoise

        clip = self.clip
        if clip is not None and (isinstance(clip, (str, bytes)) or len(tuple(clip)) != 2):
            raise ValueError(f"clip must be a pair (lo, hi), got clip={clip!r}")
        sn = SoundNoise(self.sigma, self.grid, None if clip is None else tuple(clip))  # the one set of checks
        d = sn.describe()
        set_("grid", d["grid"])
        set_("clip", tuple(d["clip"]))
        if self.noise_tv is not None:
            set_("noise_tv", _check_pos_float(self.noise_tv, "noise_tv", allow_zero=True))
        if self.noise_detail is not None:
            det = dict(self.noise_detail)
            for k in ("grid", "clip", "sigma"):
                want = {"grid": self.grid, "clip": list(self.clip), "sigma": self.sigma}[k]
                got = list(det.get(k)) if k == "clip" and det.get(k) is not None else det.get(k)
                if got != want:
                    raise ValueError(f"the sampler's sound noise has {k}={det.get(k)!r}, the run's {k} is {want!r}")
            set_("noise_detail", det)

    # ----------------------------------------------------------------------------------- derived values

    def with_model(self, *, model: Any = None, num_classes: Optional[int] = None,
                   batch_size: Optional[int] = None, data: Optional[str] = None,
                   noise_tv: Optional[float] = None, noise_detail: Any = None) -> "RunSpec":
        """A copy with the identities known once the model and data are loaded (None keeps a field).

        ``noise_tv`` and ``noise_detail`` (sound noise only) come from the sampler
        (:func:`radius.run.model.noise_fields`).
        """
        kw = {k: v for k, v in (("model", model), ("num_classes", num_classes), ("batch_size", batch_size),
                                ("data", data), ("noise_tv", noise_tv), ("noise_detail", noise_detail))
              if v is not None}
        return replace(self, **kw)

    def cert_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments of :func:`radius.certificate.certify` (fixed-n runs).

        With sound noise they include ``noise="sound"`` and ``noise_tv`` (the
        threshold-rounding total variation per sample, charged to ``alpha`` by
        :func:`radius.certificate.certify`), which must be known by then
        (:meth:`with_model`).
        """
        if self.sequential is not None:
            raise ValueError("a sequential run has no fixed-n method")
        kw = dict(sigma=self.sigma, alpha=self.alpha, radius=self.radius, reduction=self.reduction,
                  bound=self.bound, lipschitz=self.lipschitz, output_range=self.output_range)
        if self.noise == "sound":
            if self.noise_tv is None:
                raise ValueError("noise='sound': the threshold-rounding bound noise_tv is not known yet (it is "
                                 "filled in from the sampler and the input dimension before certifying)")
            kw["noise"] = "sound"
            kw["noise_tv"] = self.noise_tv
        return kw

    def input_seeds(self, idx: int) -> Tuple[int, int]:
        """:func:`input_seeds` ``(self.seed, idx)``."""
        return input_seeds(self.seed, idx)

    @property
    def n_max(self) -> int:
        """Estimation samples per input at most (``n``, or ``max_n`` in a sequential run)."""
        return self.sequential.max_n if self.sequential is not None else int(self.n)

    def sampling_metadata(self) -> Dict[str, Any]:
        """What fixes the samples: the counts log's metadata (and part of the TSV's).

        Resuming a file whose metadata differs in any of these keys is refused.
        """
        d: Dict[str, Any] = {
            "model": self.model, "data": self.data, "sigma": self.sigma, "n0": self.n0, "n": self.n,
            "seed": self.seed, "batch_size": self.batch_size, "mode": self.mode, "num_classes": self.num_classes,
            "noise": self.noise, "backend": self.backend,
        }
        if self.noise == "sound":  # only then: float runs keep the metadata of older files
            d.update(grid=self.grid, clip=list(self.clip), noise_tv=self.noise_tv, noise_detail=self.noise_detail)
        if self.mode == "scores":
            d["simplex"] = self.simplex
            d["temperature"] = self.temperature
        if self.sequential is not None:
            d["sequential"] = self.sequential.metadata()
        return d

    def metadata(self) -> Dict[str, Any]:
        """The results TSV's metadata: :meth:`sampling_metadata` plus the method."""
        d = self.sampling_metadata()
        if self.sequential is None:
            d.update(alpha=self.alpha, radius=self.radius, reduction=self.reduction, bound=_plain(self.bound),
                     lipschitz=_plain(self.lipschitz), output_range=_plain(self.output_range))
        else:
            q = self.sequential
            d.update(alpha=self.alpha, radius=q.radius_kind, reduction="cohen" if q.radius_kind == "Rmono"
                     else "bonferroni", bound=q.bound)
            if q.bound == "table":
                d["alpha_split"] = q.alpha_split(self.alpha)
        return d

    @classmethod
    def from_counts_metadata(cls, meta: Mapping[str, Any], **method) -> "RunSpec":
        """The spec of a recertification: the sampling fields of a counts log with another method."""
        return cls(sigma=meta["sigma"], n0=meta["n0"], n=meta["n"], seed=meta.get("seed", 0),
                   mode="counts", noise=meta.get("noise") or "float", grid=meta.get("grid"),
                   clip=meta.get("clip"), noise_tv=meta.get("noise_tv"), noise_detail=meta.get("noise_detail"),
                   backend=meta.get("backend"),
                   model=meta.get("model"), data=meta.get("data"), num_classes=meta.get("num_classes"),
                   batch_size=meta.get("batch_size"), **method)

