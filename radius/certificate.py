"""Certify one input: selection + estimation samples -> :class:`Certificate`.

The top class (and the runner-up / CPM buckets) are chosen on the
``selection`` sample only; the bounds use the independent ``estimation``
sample (theory §1).  A reduction (:mod:`radius.reductions`) turns the m-class
problem into a bound on a margin at total level ``alpha``; a radius
(:mod:`radius.radii`) turns that bound into a certified L2 radius.  With
probability ``>= 1 - alpha`` over the estimation sample (for any selection
outcome), a non-abstaining certificate is correct: the smoothed classifier
predicts ``prediction`` at every point within ``radius`` of the input.

Supported (radius, reduction) combinations
-------------------------------------------
==============  =====================================================================================
radius          reductions, and the bound each uses
==============  =====================================================================================
``R2``          all four.  cohen/bonferroni/cpm: ``sigma/2 (Phi^-1(pA) - Phi^-1(pB))``;
                exact: ``sigma/2 P`` with ``P`` the probit-margin bound of the structure it chose on
                the selection sample (Cohen: ``P = 2 Phi^-1(pA)``, so with two classes exact/R2
                equals cohen/Rmono; shared-``pA`` pairs; exact trinomial per bucket for counts;
                for scores the direct margin, ``P = 2 Phi^-1((1 + D)/2)``).
``Rmono``       cohen only (``sigma Phi^-1(pA)`` needs only ``pA``, at the full alpha; another reduction
                would spend alpha on bounds it does not use).  Equals cohen + R2.
``R1``          all four.  ``D / L_pair``, ``L_pair = r/(sigma sqrt(2 pi))`` (``sqrt(2/pi)/sigma`` for the
                default ``output_range=2``); ``D = pA - pB`` (cohen: ``2 pA - 1``), exact: the linear
                margin bound of the structure it chose.
``R1_lip``      as R1 with ``L_pair = L erf(r/(2 sqrt 2 L sigma))``, ``L = lipschitz`` of each pairwise
                difference ``F_y - F_k`` of the base outputs.  Score matrices only.
``Rmono_lip``   cohen only; ``rho_L^-1(pA)`` with ``L = lipschitz`` of each base score component.
                Score matrices only.
``Rmulti_lip``  cohen, bonferroni, cpm; ``(rho_L^-1(pA) - rho_L^-1(pB))/2``.  Score matrices only
                (exact bounds the margin directly and gives no ``pA``, ``pB``).
==============  =====================================================================================

Score matrices must hold simplex outputs: entries in ``[0, 1]``, rows summing
to at most ``1 + SIMPLEX_TOL`` (float rounding); where a guarantee uses the
sum (Cohen's ``p_B := 1 - p_A``, bucket sums, Rmono's ``p_A > 1/2``) the slack is
charged on the safe side.

The ``*_lip`` radii need a Lipschitz base score, which a hardmax (count)
classifier is not, hence "score matrices only".  ``lipschitz`` is refused by
radii that do not use it, and ``output_range`` by all but R1 / R1_lip, so a
given constant is never silently ignored.  Choosing the largest of several
radii on the same samples is not offered (theory §7): it would need alpha split
across the candidates.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Optional, Tuple

import numpy as np

from confbounds import check_alpha, check_choice

from . import radii
from .radii import check_sigma
from .reductions import BOUND_NAMES, REDUCTIONS, SIMPLEX_TOL, as_samples, reduce

__all__ = ["Certificate", "certify", "RADII", "REDUCTIONS", "SUPPORTED", "ABSTAIN"]

ABSTAIN = -1

RADII = ("R2", "Rmono", "R1", "R1_lip", "Rmono_lip", "Rmulti_lip")
#: The smoothings a certificate can be about (docs/soundness.md).
NOISES = ("float", "sound")

#: radius -> reductions it supports
SUPPORTED = {
    "R2": ("cohen", "bonferroni", "cpm", "exact"),
    "Rmono": ("cohen",),
    "R1": ("cohen", "bonferroni", "cpm", "exact"),
    "R1_lip": ("cohen", "bonferroni", "cpm", "exact"),
    "Rmono_lip": ("cohen",),
    "Rmulti_lip": ("cohen", "bonferroni", "cpm"),
}
_MARGIN_OF = {"R2": "probit", "Rmono": "probit", "R1": "linear", "R1_lip": "linear",
              "Rmono_lip": "linear", "Rmulti_lip": "linear"}
_LIP = ("R1_lip", "Rmono_lip", "Rmulti_lip")


@dataclass(frozen=True)
class Certificate:
    """The certificate of one input.

    Attributes
    ----------
    prediction : int
        Certified class, or ``-1`` (abstain) when the margin bound is ``<= 0``.
    radius : float
        Certified L2 radius, ``0.0`` when abstaining.
    top, runner_up : int
        Top class and runner-up chosen on the selection sample.
    p_a_lower, p_b_upper : float
        Bounds on ``p_y`` and ``max_{k != y} p_k``; NaN when ``exact`` chose a
        structure that bounds the margin directly (trinomial, direct margin).
    margin_lower : float
        The margin bound the radius was computed from; ``margin`` says which:
        ``"linear"`` (``p_y - max p_k``) or ``"probit"``.
    radius_kind, reduction, bound : str
        Method names (``bound``: ``"clopper_pearson"`` / ``"trinomial_<statistic>"`` for
        counts, the mean bound for scores).
    alpha, alpha_each : float
        Total level and the level of each of the ``n_tests`` bounds.
    sigma : float
    n0, n, m : int
        Selection size, estimation size, number of classes.
    kind : str
        ``"counts"`` or ``"scores"``.
    buckets : tuple of tuple of int
        Class groups bounded against the top class.
    lipschitz, output_range : float or None
    index, label : int or None
        Optional bookkeeping: the input's index in its data set and its true
        class (``None`` when not given; never used by the bound).
    noise : str
        The noise the certificate assumes: ``"float"`` (Gaussian smoothing) or
        ``"sound"`` (rounded-Gaussian smoothing on a grid, docs/soundness.md).
    noise_tv : float
        Sound noise: the per-sample total-variation bound charged to ``alpha``
        (0 for float noise).
    """

    prediction: int
    radius: float
    top: int
    runner_up: int
    p_a_lower: float
    p_b_upper: float
    margin_lower: float
    margin: str
    radius_kind: str
    reduction: str
    bound: str
    alpha: float
    alpha_each: float
    n_tests: int
    sigma: float
    n0: int
    n: int
    m: int
    kind: str
    buckets: Tuple[Tuple[int, ...], ...] = field(default=())
    lipschitz: Optional[float] = None
    output_range: Optional[float] = None
    index: Optional[int] = None
    label: Optional[int] = None
    noise: str = "float"
    noise_tv: float = 0.0

    def _key(self, cls=None) -> tuple:
        # NaN fields compare equal to NaN (a certificate that crossed a process boundary holds a new
        # NaN object, and tuple comparison only short-cuts on identity)
        return tuple(("nan",) if isinstance(v, float) and v != v else v
                     for v in (getattr(self, f.name) for f in fields(cls or self)))

    def __eq__(self, other) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        # the fields of Certificate only: subclasses may add unhashable ones (a dict of decisions)
        return hash(self._key(Certificate))

    @property
    def abstain(self) -> bool:
        return self.prediction == ABSTAIN

    def to_row(self) -> dict:
        """Plain Python values (int, float, str; None for unset options), for a TSV row.

        ``buckets`` is written as ``"1|2,3,4"`` (buckets separated by ``|``).
        """
        row = asdict(self)
        row["buckets"] = "|".join(",".join(str(int(k)) for k in b) for b in self.buckets)
        for key, v in list(row.items()):
            if isinstance(v, (np.integer,)):
                row[key] = int(v)
            elif isinstance(v, (np.floating,)):
                row[key] = float(v)
        return row


def certify(selection, estimation, *, sigma, alpha=0.001, radius: str = "R2", reduction: str = "exact",
            bound="betting", lipschitz=None, output_range=None, index=None, label=None,
            noise: str = "float", noise_tv: float = 0.0) -> Certificate:
    """Certify one input from independent selection and estimation samples.

    Parameters
    ----------
    selection, estimation : array_like
        Independent samples of the base classifier at the input: both count
        vectors (integers, shape ``(m,)``, hardmax smoothing) or both score
        matrices (floats in ``[0, 1]``, shape ``(n0, m)`` / ``(n, m)``, rows on
        the simplex).  ``selection`` chooses the top class, runner-up and
        buckets; ``estimation`` is bounded.  Reusing one sample for both voids
        the guarantee.
    sigma : float
        Noise level used to draw the samples (> 0).
    alpha : float
        Total failure probability of this certificate, in (0, 1).
    radius : {"R2", "Rmono", "R1", "R1_lip", "Rmono_lip", "Rmulti_lip"}
    reduction : {"cohen", "bonferroni", "cpm", "exact"}
        See the module docstring for the supported combinations and
        :mod:`radius.reductions` for how each splits ``alpha``.
    bound : {"betting", "bernstein", "hoeffding"} or callable
        Mean bound for score matrices (ignored for counts, which use
        Clopper–Pearson or the exact trinomial test).
    lipschitz : float, optional
        Required by the ``*_lip`` radii: for ``R1_lip`` a Lipschitz constant of
        every pairwise difference ``F_y - F_k`` of the base outputs; for
        ``Rmono_lip`` / ``Rmulti_lip`` of every base score component ``F_k``.
    output_range : float, optional
        R1 / R1_lip only: length of an interval holding every ``F_y - F_k``
        (default 2, simplex outputs).
    index, label : int, optional
        Recorded in the certificate (the input's index in its data set, an
        integer ``>= 0``; its true class, an integer in ``[0, m)``); they do not
        change the bound.
    noise : {"float", "sound"}
        The smoothing the certificate is about.  ``"sound"``: the samples were
        drawn with the rounded Gaussian on a grid (:class:`backends.noise.SoundNoise`,
        Voráček & Hein, ICLR 2023); the certificate is about the *ideal* rounded-
        Gaussian smoothed classifier.
    noise_tv : float
        Sound noise only: a bound on the total variation between the law of one
        drawn noisy copy and the ideal one (``SoundNoise.tv_bound(dim)``, the
        threshold rounding).  By a coupling, the ``N = n0 + n`` samples differ
        in law from ideal ones by at most ``N * noise_tv`` in total variation,
        so every bound is computed at ``alpha - N * noise_tv`` (rounded down)
        and the certificate holds at ``alpha`` for the ideal smoothing
        (docs/soundness.md).  Works for every reduction and radius except the
        local-Lipschitz ones, which are refused (``f o Q`` is not Lipschitz).

    Returns
    -------
    Certificate

    Raises
    ------
    ValueError
        Unknown radius / reduction / bound names, an unsupported combination,
        ``sigma <= 0``, ``alpha`` outside (0, 1), samples of the wrong shape or
        kind, selection and estimation with different class counts, a missing
        or superfluous ``lipschitz``.

    Examples
    --------
    >>> import numpy as np
    >>> c = certify(np.array([2, 95, 3]), np.array([10, 980, 10]), sigma=0.5, alpha=0.001,
    ...             radius="Rmono", reduction="cohen")
    >>> c.prediction, round(c.radius, 4)
    (1, 0.889)
    >>> certify(np.array([50, 50]), np.array([500, 500]), sigma=0.5, reduction="bonferroni").prediction
    -1
    """
    s = check_sigma(sigma)
    a = check_alpha(alpha)
    check_choice(radius, "radius", RADII)
    check_choice(reduction, "reduction", REDUCTIONS)
    if not callable(bound):
        check_choice(bound, "bound", BOUND_NAMES)
    if reduction not in SUPPORTED[radius]:
        raise ValueError(
            f"radius={radius!r} with reduction={reduction!r} is not supported; "
            f"{radius} supports reduction in {SUPPORTED[radius]}")
    L = None
    if radius in _LIP:
        if lipschitz is None:
            raise ValueError(f"radius={radius!r} needs lipschitz (a Lipschitz constant of the base scores), got None")
        L = radii.check_positive(lipschitz, "lipschitz", allow_inf=True)
    elif lipschitz is not None:
        raise ValueError(f"lipschitz={lipschitz!r} is only used by radius in {_LIP}, got radius={radius!r}")
    r_range = None
    if output_range is not None:
        if radius not in ("R1", "R1_lip"):
            raise ValueError(f"output_range={output_range!r} is only used by radius 'R1' or 'R1_lip', "
                             f"got radius={radius!r}")
        r_range = radii.check_positive(output_range, "output_range")

    check_choice(noise, "noise", NOISES)
    try:
        tv = float(noise_tv)
    except (TypeError, ValueError):
        raise ValueError(f"noise_tv must be a number in [0, 1), got {noise_tv!r}") from None
    if not (0.0 <= tv < 1.0):
        raise ValueError(f"noise_tv must be a number in [0, 1), got {noise_tv!r}")
    if tv > 0.0 and noise != "sound":
        raise ValueError(f"noise_tv={noise_tv!r} applies only to noise='sound', got noise={noise!r}")
    if noise == "sound" and radius in _LIP:
        raise ValueError(f"noise='sound' with radius={radius!r} is refused: the local-Lipschitz radii do not "
                         "carry over to the rounded Gaussian (f o Q is not Lipschitz; docs/soundness.md)")

    samples = as_samples(selection, estimation)
    a_run = a
    if tv > 0.0:  # coupling: the N drawn copies are within N * tv of ideal ones in total variation
        a_run = float(np.nextafter(a - (samples.n0 + samples.n) * tv, 0.0))
        if not a_run > 0.0:
            raise ValueError(f"noise_tv={noise_tv!r} times the {samples.n0 + samples.n} samples exceeds "
                             f"alpha={alpha!r}: no level is left for the bound")
    index = _opt_index(index, "index", None)
    label = _opt_index(label, "label", samples.m)
    if radius in _LIP and samples.kind != "scores":
        raise ValueError(f"radius={radius!r} needs score matrices of a Lipschitz base classifier; "
                         f"count vectors come from a hardmax classifier, which is not Lipschitz")

    margin = _MARGIN_OF[radius]
    res = reduce(reduction, samples, None, a_run, margin=margin, bound=bound)
    pa, pb, ml = res.p_a_lower, res.p_b_upper, res.margin_lower

    pa_mono = pa
    if samples.kind == "scores" and radius in ("Rmono", "Rmono_lip"):
        # Rows may sum to 1 + SIMPLEX_TOL, so "F_y > 1/2" must be "F_y > (1 + tol)/2"; by convexity of
        # Phi^-1 (and rho_L^-1) on [1/2, 1), lowering p_A by tol/2 shrinks the radius by at least the
        # distance needed.
        pa_mono = max(0.0, pa - SIMPLEX_TOL / 2)
    if radius == "Rmono":
        rad = radii.r_mono(pa_mono, s)
    elif radius == "R2":
        rad = radii.r2(pa, pb, s) if reduction != "exact" else radii.radius_from_probit_margin(ml, s)
    elif radius in ("R1", "R1_lip"):
        if reduction != "exact":
            rad = radii.r1(pa, pb, s, lipschitz=L, output_range=r_range)
        else:
            rad = radii.radius_from_linear_margin(ml, s, lipschitz=L, output_range=r_range)
    elif radius == "Rmono_lip":
        rad = radii.r_mono_lip(pa_mono, s, L)
    else:  # Rmulti_lip
        rad = radii.r_multi_lip(pa, pb, s, L)

    certified = bool(ml > 0) and rad > 0.0
    return Certificate(
        prediction=int(res.top) if certified else ABSTAIN,
        radius=float(rad) if certified else 0.0,
        top=int(res.top),
        runner_up=int(res.runner_up),
        p_a_lower=float(pa),
        p_b_upper=float(pb),
        margin_lower=float(ml),
        margin=res.margin,
        radius_kind=radius,
        reduction=reduction,
        bound=res.bound,
        alpha=a,
        alpha_each=float(res.alpha_each),
        n_tests=int(res.n_tests),
        sigma=s,
        n0=int(samples.n0),
        n=int(samples.n),
        m=int(samples.m),
        kind=samples.kind,
        buckets=tuple(tuple(int(k) for k in b) for b in res.buckets),
        lipschitz=L,
        output_range=r_range,
        index=index,
        label=label,
        noise=noise,
        noise_tv=tv,
    )


def _opt_index(v, name: str, m: Optional[int]) -> Optional[int]:
    """``None`` or a non-negative integer (``< m`` when ``m`` is given); ValueError naming the value."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name} must be an integer or None, got {v!r}")
    v = int(v)
    if v < 0 or (m is not None and v >= m):
        hint = f" in [0, {m})" if m is not None else " >= 0"
        raise ValueError(f"{name} must be an integer{hint}, got {v!r}")
    return v
