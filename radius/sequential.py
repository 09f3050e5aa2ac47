"""Anytime-valid sequential certification: stop sampling as soon as the answer is known.

Fixed-n certification (Cohen, Rosenfeld & Kolter, ICML 2019: ``n = 100,000`` noisy copies per input) spends most
forward passes on inputs whose outcome is clear after a few hundred.  Here the estimation samples are drawn in
growing batches and a *time-uniform* confidence sequence (CS) on the top-class probability ``p_A`` is read after
each batch; sampling stops when the requested answer is known.

Procedure (one input)
---------------------
1. ``n0`` **selection** samples choose the top class ``y`` (argmax of their counts), as in Cohen et al.
2. **Estimation** samples (independent of the selection ones) are drawn in batches of ``batch_size``,
   ``batch_size * growth``, ... .  After each batch the CS gives ``L_t <= p_A <= U_t``
   (``p_A = P(F(x + eps) = y)`` for hard smoothing, ``E[F_y(x + eps)]`` for soft scores with ``bound="betting"``).
3. For every requested radius ``r`` with threshold ``c_r = Phi(r / sigma)``:
   *certified* once ``L_t > c_r`` (so ``R_mono = sigma Phi^-1(L_t) > r``), *refuted* once ``U_t < c_r`` (even
   the exact ``p_A`` would not give ``R_mono >= r``).  A decision, once made, is kept.
4. Stop when (a) every requested radius is decided, and/or (b) with ``tolerance``, the radius is pinned:
   ``R_up - R_low <= tolerance`` with ``R_low = max(0, sigma Phi^-1(L_t))``, ``R_up = max(0, sigma Phi^-1(U_t))``;
   when both ``radii`` and ``tolerance`` are given, both must hold; or (c) ``max_n`` estimation samples are drawn
   (undecided radii stay ``"undecided"``).  *Futility* (``futility_z``, a power/cost heuristic that makes no
   claim): a radius that could not be certified by ``max_n`` even if every remaining sample succeeded at the
   optimistic rate ``p_hat + z sqrt(p_hat (1 - p_hat) / t)`` is marked ``"futile"`` (not certified) and counts
   as decided for stopping.  Any stopping rule is valid here (see below); futility only trades a little power
   for many fewer samples on inputs that sit just below a threshold.
5. The certificate is Cohen's: prediction ``y`` and radius ``R_mono = sigma Phi^-1(L_tau)`` at the stopping time
   ``tau`` (abstain, ``-1``, when ``L_tau <= 1/2``).

Alpha accounting
----------------
One *two-sided* confidence sequence at total level ``alpha`` is used for everything:
``P(exists t: p_A < L_t or p_A > U_t) <= alpha``.

* ``bound="mixture"`` (default, counts): the beta-binomial conjugate mixture
  (:func:`confbounds.mixture.beta_binomial_cs`); both endpoints come from one Ville event at level ``alpha`` (no
  split).
* ``bound="betting"`` (counts or soft scores): the hedged betting CS of Waudby-Smith & Ramdas
  (:func:`confbounds.betting.betting_cs`, ``side="two-sided"``): lower and upper at ``alpha/2`` each; the
  running intersection over every ``t`` is used.
* ``bound="cp-looks"`` (counts): a group-sequential alternative.  The look times ``t_1 < ... < t_J = max_n``
  (:func:`look_schedule`) are fixed before sampling and the procedure can only stop at them, so one-sided
  Clopper-Pearson bounds at look ``j`` at levels ``alpha_j^lower`` and ``alpha_j^upper`` with
  ``sum_j (alpha_j^lower + alpha_j^upper) = alpha`` (:func:`look_alphas`: by default half of alpha at the last
  look, the rest spread evenly, and 90 % of each look's share on the lower side) hold simultaneously at all
  looks by the union bound (alpha spending, Bonferroni over looks and sides).  It is time-uniform over the
  looks only, and is usually tighter than the mixture for interior ``p_A`` when ``J`` is about 10.

On the complement of that single event (probability ``>= 1 - alpha``), at *every* time simultaneously, every
certified and every refuted decision for *every* radius is correct, and the reported radius is a valid
certificate.  Because the guarantee is simultaneous over time, reading the CS after every batch, stopping at a
data-dependent time (optional stopping) and the running intersection ``max L``, ``min U`` over looks are all
valid; no alpha is spent per look or per radius.  Selection samples are independent of the estimation samples,
so the guarantee holds conditionally on the chosen class.  The data-set scheduler gives every input its own CS at
``alpha`` (a per-input guarantee, as fixed-n certification).

Safe rounding: ``c_r`` is compared with a margin of ``1e-12`` (certified needs ``L_t > c_r + 1e-12``, refuted needs
``U_t < c_r - 1e-12``), which dominates the error of ``scipy.special.ndtr``; the CS endpoints themselves are
rounded outward by their modules.

References
----------
Cohen, Rosenfeld, Kolter (ICML 2019), Theorem 1 and the CERTIFY algorithm.  Robbins (1970); Howard, Ramdas,
McAuliffe, Sekhon (Ann. Statist. 2021), time-uniform confidence sequences and conjugate mixtures.
Waudby-Smith & Ramdas (JRSS-B 2024), betting CS.  Ville (1939), maximal inequality.  Horvath et al. (ICLR 2022)
and Voracek (NeurIPS 2024) for sequential/adaptive sampling in randomized smoothing.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from scipy import special

from confbounds._validate import check_alpha, check_choice

from .certificate import Certificate

__all__ = ["SequentialCertificate", "SequentialRun", "certify_sequential", "certify_dataset_sequential",
           "look_schedule", "look_alphas", "batch_model",
           "SEQUENTIAL_PRIOR", "BOUNDS"]

BOUNDS = ("mixture", "betting", "cp-looks")
#: Beta mixing prior of the mixture CS used here: fixed before seeing data, it puts extra mass near p = 1
#: where the top-class probability of a good smoothed classifier lives (any fixed prior keeps validity).
SEQUENTIAL_PRIOR = (1.0, 0.1)
#: Comparison margin for ``Phi(r / sigma)`` (see the module docstring).
_THR_MARGIN = 1e-12
#: Purpose tags of the per-input seeds (arbitrary distinct constants).
_SEL, _EST = 0x5E9E1, 0x5E9E2

CERTIFIED, REFUTED, UNDECIDED, FUTILE = "certified", "refuted", "undecided", "futile"


@dataclass(frozen=True, eq=False)
class SequentialCertificate(Certificate):
    """A :class:`radius.certificate.Certificate` (``radius_kind="Rmono"``, ``reduction="cohen"``) plus the sequence.

    Extra attributes
    ----------------
    p_a_upper : float
        Upper end of the CS on ``p_A`` at the stopping time.
    forward_passes : int
        Selection plus estimation samples drawn (``n0 + n``).
    decisions : dict
        ``{radius: "certified" | "refuted" | "futile" | "undecided"}`` for each requested radius; only
        ``"certified"`` and ``"refuted"`` are claims (each holds on the CS event).
    stopped_by : str
        ``"decided"`` (all radii decided), ``"tolerance"``, ``"decided+tolerance"`` or ``"max_n"``.
    looks : int
        Number of times the CS was read (estimation batches).
    radius_upper : float
        ``max(0, sigma Phi^-1(U))``: no Cohen-style certificate from this ``p_A`` exceeds it (on the CS event).
    """

    p_a_upper: float = float("nan")
    forward_passes: int = 0
    decisions: Dict[float, str] = field(default_factory=dict)
    stopped_by: str = ""
    looks: int = 0
    radius_upper: float = float("nan")

    def to_row(self) -> dict:
        row = super().to_row()
        row["decisions"] = "|".join(f"{r:g}:{d}" for r, d in self.decisions.items())
        return row


@dataclass
class SequentialRun:
    """Result of :func:`certify_dataset_sequential`.

    Attributes
    ----------
    certificates : list of SequentialCertificate
    labels : ndarray
    forward_passes : int
        Total noisy copies evaluated (selection + estimation, all inputs).
    model_calls : int
        Number of model batches run.
    fill_rate : float
        ``forward_passes / (model_calls * model_batch_size)``: 1.0 means every batch was full.
    wall_time : float
        Seconds.
    model_batch_size : int
    mixed : bool
        Whether batches mixed several inputs (False: the sampler exposes no batch model; per-input fallback).
    """

    certificates: List[SequentialCertificate]
    labels: np.ndarray
    forward_passes: int
    model_calls: int
    fill_rate: float
    wall_time: float
    model_batch_size: int
    mixed: bool

    def certified_accuracy(self, r: float) -> float:
        """Fraction of inputs predicted correctly *and* certified at ``r`` (decision ``"certified"``)."""
        hits = [c.prediction == int(y) and c.decisions.get(float(r)) == CERTIFIED
                for c, y in zip(self.certificates, self.labels)]
        return float(np.mean(hits)) if hits else float("nan")


# --------------------------------------------------------------------------------------------- arguments

def _pos_int(v, name: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _check_args(sigma, alpha, radii, tolerance, max_n, n0, batch_size, growth, bound, prior, seed):
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}") from None
    if isinstance(sigma, bool) or not (np.isfinite(s) and s > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    alpha = check_alpha(alpha)
    check_choice(bound, "bound", BOUNDS)
    rr: Tuple[float, ...] = ()
    if radii is not None:
        arr = np.atleast_1d(np.asarray(radii, dtype=float)) if not isinstance(radii, str) else None
        if arr is None or arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"radii must be a non-empty 1-D sequence of numbers > 0, got {radii!r}")
        bad = ~(np.isfinite(arr) & (arr > 0))
        if np.any(bad):
            raise ValueError(f"radii must be finite and > 0, got {arr[bad].tolist()!r}")
        rr = tuple(sorted(set(float(r) for r in arr)))
    tol = None
    if tolerance is not None:
        try:
            tol = float(tolerance)
        except (TypeError, ValueError):
            raise ValueError(f"tolerance must be a number > 0, got {tolerance!r}") from None
        if isinstance(tolerance, bool) or not (np.isfinite(tol) and tol > 0):
            raise ValueError(f"tolerance must be a finite number > 0, got {tolerance!r}")
    if not rr and tol is None:
        raise ValueError("give radii (radii to decide) and/or tolerance (pin the radius); both are None")
    max_n = _pos_int(max_n, "max_n")
    n0 = _pos_int(n0, "n0")
    batch_size = _pos_int(batch_size, "batch_size")
    if max_n < batch_size:
        raise ValueError(f"max_n = {max_n} is smaller than one batch (batch_size = {batch_size})")
    try:
        g = float(growth)
    except (TypeError, ValueError):
        raise ValueError(f"growth must be a number >= 1, got {growth!r}") from None
    if not (np.isfinite(g) and g >= 1):
        raise ValueError(f"growth must be a finite number >= 1, got {growth!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if bound == "mixture":
        from confbounds.mixture import check_prior

        prior = check_prior(prior)
    return s, alpha, rr, tol, max_n, n0, batch_size, g, prior


def _seed(seed: int, idx: int, purpose: int, j: int = 0) -> int:
    hi, lo = np.random.SeedSequence([int(seed), int(idx), purpose, int(j)]).generate_state(2, np.uint32)
    return (int(hi) << 31) | (int(lo) >> 1)


# ----------------------------------------------------------------------------------------- the sequence

def look_schedule(batch_size: int, growth: float, max_n: int) -> np.ndarray:
    """Cumulative estimation sample sizes at which the CS is read: ``t_j = sum_{i<=j} ceil(b g^i)``, capped at
    ``max_n`` (the last look is ``max_n``).  Fixed before sampling, so Bonferroni over looks (``cp-looks``) is valid.

    >>> look_schedule(100, 2.0, 1000).tolist()
    [100, 300, 700, 1000]
    """
    out = []
    t = 0
    j = 0
    while t < max_n:
        t = min(max_n, t + int(math.ceil(batch_size * growth ** j)))
        out.append(t)
        j += 1
    return np.asarray(out, dtype=np.int64)


def look_alphas(alpha: float, looks: int, final_share: Optional[float] = 0.5, lower_share: float = 0.9):
    """Alpha spent by ``bound="cp-looks"`` at each planned look, lower and upper side.

    Look ``j`` gets the weight ``w_j``: ``final_share`` for the last look (at ``max_n``) and
    ``(1 - final_share) / (J - 1)`` for each earlier one (uniform ``1/J`` if ``final_share`` is None or ``J = 1``);
    its lower bound is at ``alpha w_j lower_share`` and its upper bound at ``alpha w_j (1 - lower_share)``.  The
    weights sum to 1, so by the union bound every bound at every look holds simultaneously with probability
    ``>= 1 - alpha``.  Spending more at the last look helps the inputs that need all ``max_n`` samples; spending
    more on the lower side helps certification (the upper side only serves refutations).

    >>> lo, up = look_alphas(0.001, 3, 0.5, 0.9)
    >>> [round(float(v), 6) for v in lo], [round(float(v), 6) for v in up], round(float(lo.sum() + up.sum()), 12)
    ([0.000225, 0.000225, 0.00045], [2.5e-05, 2.5e-05, 5e-05], 0.001)
    """
    if looks == 1 or final_share is None:
        w = np.full(looks, 1.0 / looks)
    else:
        w = np.full(looks, (1.0 - final_share) / (looks - 1))
        w[-1] = final_share
    return alpha * w * lower_share, alpha * w * (1.0 - lower_share)


class _Sequence:
    """State of one input's estimation phase: running CS and decisions (shared by both entry points)."""

    def __init__(self, top, *, sigma, alpha, radii, tol, max_n, batch_size, growth, bound, prior, betting_method,
                 futility_z, final_share=0.5, lower_share=0.9):
        self.top = int(top)
        self.sigma, self.alpha, self.radii, self.tol = sigma, alpha, radii, tol
        self.max_n, self.batch_size, self.growth = max_n, batch_size, growth
        self.bound, self.prior, self.betting_method = bound, prior, betting_method
        self.k = 0
        self.t = 0
        self.low, self.high = 0.0, 1.0
        self.looks = 0
        self.history: List[np.ndarray] = []  # betting only
        self.thr = {r: float(special.ndtr(r / sigma)) for r in radii}
        self.decisions = {r: UNDECIDED for r in radii}
        self.stopped_by = ""
        self.plan = look_schedule(batch_size, growth, max_n)
        self.futility_z = futility_z
        self.alpha_lower, self.alpha_upper = look_alphas(alpha, len(self.plan), final_share, lower_share)

    def next_size(self) -> int:
        if self.stopped_by:
            return 0
        return int(self.plan[self.looks] - self.t)

    def update(self, successes: Optional[int] = None, values: Optional[np.ndarray] = None, size: int = 0) -> bool:
        """Add one batch (a success count, or the score values for betting); return True when done."""
        if values is not None:
            values = np.asarray(values, dtype=np.float64).ravel()
            size = values.size
            self.history.append(values)
            self.k += float(values.sum())
        else:
            self.k += int(successes)
        self.t += int(size)
        self.looks += 1
        if self.t != self.plan[self.looks - 1]:
            raise RuntimeError(f"internal: look {self.looks} at t = {self.t}, planned {self.plan[self.looks - 1]}")
        if self.bound in ("mixture", "cp-looks"):
            lo, hi = self._count_bound(int(self.k), self.t)
        else:
            from confbounds.betting import betting_cs

            x = np.concatenate(self.history)
            lo_p, hi_p = betting_cs(x, self.alpha, side="two-sided", bounds=(0.0, 1.0), method=self.betting_method)
            lo, hi = float(np.max(lo_p)), float(np.min(hi_p))  # running intersection over every t
        self.low, self.high = max(self.low, float(lo)), min(self.high, float(hi))
        for r, c in self.thr.items():
            if self.decisions[r] != UNDECIDED:
                continue
            if self.low > c + _THR_MARGIN:
                self.decisions[r] = CERTIFIED
            elif self.high < c - _THR_MARGIN:
                self.decisions[r] = REFUTED
        self._futility()
        decided = all(d != UNDECIDED for d in self.decisions.values())  # certified, refuted or futile
        pinned = self.tol is not None and self.radius_upper() - self.radius_lower() <= self.tol
        if (not self.radii or decided) and (self.tol is None or pinned):
            self.stopped_by = ("decided+tolerance" if self.radii and self.tol is not None
                               else "decided" if self.radii else "tolerance")
        elif self.t >= self.max_n:
            self.stopped_by = "max_n"
        return bool(self.stopped_by)

    def _count_bound(self, k: int, t: int) -> Tuple[float, float]:
        if self.bound == "mixture":
            from confbounds.mixture import beta_binomial_cs

            lo, hi = beta_binomial_cs(k, t, self.alpha, side="two-sided", prior=self.prior)
        else:  # Clopper-Pearson at each planned look, union bound over looks and sides (see look_alphas)
            from confbounds.binomial import clopper_pearson

            j = int(np.searchsorted(self.plan, t))
            if j >= len(self.plan) or self.plan[j] != t:
                raise RuntimeError(f"internal: cp-looks read at t = {t}, which is not a planned look")
            lo = clopper_pearson(k, t, self.alpha_lower[j], side="lower")
            hi = clopper_pearson(k, t, self.alpha_upper[j], side="upper")
        return float(lo), float(hi)

    def _futility(self) -> None:
        """Give up radii that cannot be certified by ``max_n`` even at an optimistic success rate.

        Optimistic rate ``p~ = p_hat + z sqrt(max(p_hat (1 - p_hat), 1/t) / t)``; if the lower bound at ``max_n``
        with ``k + p~ (max_n - t)`` successes is still ``<= Phi(r / sigma)``, radius ``r`` is marked ``"futile"``
        (not certified).  This only chooses when to stop; it makes no claim, so validity is untouched.
        """
        und = [r for r, d in self.decisions.items() if d == UNDECIDED]
        if self.futility_z is None or not und or self.t >= self.max_n:
            return
        ph = self.k / self.t
        pt = min(1.0, ph + self.futility_z * math.sqrt(max(ph * (1.0 - ph), 1.0 / self.t) / self.t))
        kf = int(min(self.max_n, math.floor(self.k + pt * (self.max_n - self.t))))
        if self.bound == "betting":  # heuristic projection with the mixture bound
            from confbounds.mixture import beta_binomial_cs

            lo_f = float(beta_binomial_cs(kf, self.max_n, self.alpha, side="lower", prior=self.prior))
        else:
            lo_f = self._count_bound(kf, self.max_n)[0]
        for r in und:
            if lo_f <= self.thr[r] + _THR_MARGIN:
                self.decisions[r] = FUTILE

    def radius_lower(self) -> float:
        from .radii import r_mono

        return float(r_mono(self.low, self.sigma)) if self.low > 0.5 else 0.0

    def radius_upper(self) -> float:
        if self.high >= 1.0:
            return math.inf
        return max(0.0, self.sigma * float(special.ndtri(self.high)))

    def certificate(self, selection: np.ndarray, n0: int, m: int, kind: str) -> SequentialCertificate:
        order = np.argsort(-np.asarray(selection, dtype=float), kind="stable")
        runner = int(order[1]) if len(order) > 1 else -1
        r = self.radius_lower()
        pred = self.top if self.low > 0.5 else -1
        with np.errstate(divide="ignore"):
            margin = 2.0 * float(special.ndtri(self.low)) if self.low > 0 else -math.inf
        return SequentialCertificate(
            prediction=pred, radius=r if pred != -1 else 0.0, top=self.top, runner_up=runner,
            p_a_lower=self.low, p_b_upper=1.0 - self.low, margin_lower=margin, margin="probit",
            radius_kind="Rmono", reduction="cohen", bound=self.bound, alpha=self.alpha, alpha_each=self.alpha,
            n_tests=1, sigma=self.sigma, n0=n0, n=self.t, m=m, kind=kind, p_a_upper=self.high,
            forward_passes=n0 + self.t, decisions={float(k): v for k, v in self.decisions.items()},
            stopped_by=self.stopped_by, looks=self.looks, radius_upper=self.radius_upper())


def _score_column(sampler) -> bool:
    """Whether ``bound="betting"`` bounds a soft score column (True) or the hard indicator (False)."""
    return getattr(sampler, "simplex", "hard") != "hard"


def certify_sequential(sampler, x, *, sigma, alpha: float = 0.001, radii=None, tolerance=None, max_n: int,
                       n0: int = 100, batch_size: int = 200, growth: float = 2.0, seed: int = 0,
                       bound: str = "mixture", prior=SEQUENTIAL_PRIOR,
                       betting_method: str = "hedged", futility_z: Optional[float] = 2.0,
                       final_share: Optional[float] = 0.5, lower_share: float = 0.9) -> SequentialCertificate:
    """Certify one input with anytime-valid sequential sampling (see the module docstring).

    Parameters
    ----------
    sampler : Sampler
        Anything with ``counts(x, n, seed)`` (and ``scores(x, n, seed, columns)`` for ``bound="betting"``) and
        ``num_classes``; only its public methods are used.
    x : array_like
        One input.
    sigma : float
        Noise level the sampler uses (checked against ``sampler.sigma`` when it has one).
    alpha : float
        Total failure probability of the certificate *and* of all decisions, at every stopping time.
    radii : sequence of float > 0, optional
        Radii to decide (certified / refuted).
    tolerance : float > 0, optional
        Stop once ``R_up - R_low <= tolerance``.  At least one of ``radii`` / ``tolerance`` is required.
    max_n : int
        Cap on estimation samples (``>= batch_size``).
    n0 : int
        Selection samples (choose the top class).
    batch_size, growth : int, float
        Estimation batch ``j`` (``j = 0, 1, ...``) has ``ceil(batch_size * growth**j)`` samples (capped by
        ``max_n``); the CS is read after each.
    seed : int
        Selection and batch seeds are derived from ``(seed, purpose, j)`` with :class:`numpy.random.SeedSequence`.
    bound : {"mixture", "betting"}
        ``"mixture"``: beta-binomial mixture CS on the hard top-class indicator (uses ``counts``);
        ``"betting"``: hedged betting CS on the top-class column of ``scores`` (the sampler's simplex map; the
        indicator for a hardmax sampler).
    prior : (a, b)
        Beta prior of the mixture (default :data:`SEQUENTIAL_PRIOR`).
        ``"cp-looks"``: Clopper-Pearson at each planned look, alpha spent by :func:`look_alphas` (counts).
    betting_method : {"hedged", "prpl-eb"}
    futility_z : float or None
        Futility rule (module docstring, step 4); None disables it.  It never affects validity.
    final_share, lower_share : float
        ``bound="cp-looks"`` only: alpha spending over looks and sides (:func:`look_alphas`; default half of
        alpha at the last look, 90 % of each look's alpha on the lower bound).  Ignored by the other bounds.

    Returns
    -------
    SequentialCertificate
        ``.prediction``, ``.radius`` (Cohen's ``R_mono`` from the CS lower bound), ``.forward_passes``
        (``n0 + n``), ``.decisions``, ``.stopped_by``.

    Raises
    ------
    ValueError
        ``radii`` not all finite and > 0, ``tolerance <= 0``, neither given, ``max_n < batch_size``, non-positive
        ``n0`` / ``batch_size``, ``growth < 1``, bad ``alpha`` / ``sigma`` / ``bound`` / ``prior``, or ``sigma``
        different from the sampler's.

    Examples
    --------
    >>> import numpy as np
    >>> from backends.base import ArraySampler
    >>> w = np.array([1.0, 0.0])
    >>> s = ArraySampler(lambda z: np.stack([-(z @ w), z @ w], axis=1), 2, sigma=0.5, batch_size=4096)
    >>> c = certify_sequential(s, np.array([1.0, 0.0]), sigma=0.5, radii=[0.25, 2.0], max_n=100_000)
    >>> c.prediction, c.decisions, c.forward_passes < 10_000   # p_A = Phi(2) = 0.977
    (1, {0.25: 'certified', 2.0: 'refuted'}, True)
    """
    sigma, alpha, rr, tol, max_n, n0, batch_size, growth, prior = _check_args(
        sigma, alpha, radii, tolerance, max_n, n0, batch_size, growth, bound, prior, seed)
    _check_sampler_sigma(sampler, sigma)
    check_choice(betting_method, "betting_method", ("hedged", "prpl-eb"))
    selection = np.asarray(sampler.counts(x, n0, _seed(seed, 0, _SEL)))
    top = int(np.argmax(selection))
    seq = _Sequence(top, sigma=sigma, alpha=alpha, radii=rr, tol=tol, max_n=max_n, batch_size=batch_size,
                    growth=growth, bound=bound, prior=prior, betting_method=betting_method,
                    futility_z=_check_futility(futility_z), **_check_shares(final_share, lower_share))
    soft = bound == "betting"
    while True:
        b = seq.next_size()
        s_j = _seed(seed, 0, _EST, seq.looks)
        if soft:
            vals = np.asarray(sampler.scores(x, b, s_j, columns=[top]))[:, 0]
            done = seq.update(values=vals)
        else:
            c = np.asarray(sampler.counts(x, b, s_j))
            done = seq.update(successes=int(c[top]), size=b)
        if done:
            break
    kind = "scores" if soft and _score_column(sampler) else "counts"
    return seq.certificate(selection, n0, int(len(selection)), kind)


def _check_shares(final_share, lower_share) -> dict:
    if final_share is not None:
        try:
            f = float(final_share)
        except (TypeError, ValueError):
            raise ValueError(f"final_share must be None or a number in (0, 1), got {final_share!r}") from None
        if not (0.0 < f < 1.0):
            raise ValueError(f"final_share must be None or a number in (0, 1), got {final_share!r}")
        final_share = f
    try:
        lo = float(lower_share)
    except (TypeError, ValueError):
        raise ValueError(f"lower_share must be a number in (0, 1), got {lower_share!r}") from None
    if not (0.0 < lo < 1.0):
        raise ValueError(f"lower_share must be a number in (0, 1), got {lower_share!r}")
    return {"final_share": final_share, "lower_share": lo}


def _check_futility(z):
    if z is None:
        return None
    try:
        v = float(z)
    except (TypeError, ValueError):
        raise ValueError(f"futility_z must be None or a number >= 0, got {z!r}") from None
    if isinstance(z, bool) or not (np.isfinite(v) and v >= 0):
        raise ValueError(f"futility_z must be None or a finite number >= 0, got {z!r}")
    return v


def _check_sampler_sigma(sampler, sigma: float) -> None:
    s = getattr(sampler, "sigma", None)
    if s is not None and not math.isclose(float(s), sigma, rel_tol=1e-12, abs_tol=0.0):
        raise ValueError(f"sigma = {sigma!r} differs from the sampler's noise level sampler.sigma = {s!r}")


# --------------------------------------------------------------------------------------- data-set scheduler

def batch_model(sampler) -> Optional[Tuple[Callable[[np.ndarray], np.ndarray], np.dtype]]:
    """The sampler's batch model ``inputs (b, *x.shape) -> logits (b, m)`` in input space, and its noise dtype.

    Uses public attributes only: ``logits(inputs)`` of :class:`backends.onnx_sampler.OnnxSampler` and
    :class:`backends.torch_sampler.TorchSampler` (which apply ``normalize``), ``logits_fn`` of
    :class:`backends.base.ArraySampler`.  Returns None when the sampler has neither; the scheduler then falls
    back to one input per call (``sampler.counts`` / ``sampler.scores``).
    """
    fn = getattr(sampler, "logits", None)
    if callable(fn):
        dtype = getattr(sampler, "input_dtype", None)
        if dtype is None:
            tdt = str(getattr(sampler, "dtype", "float32"))
            dtype = np.float64 if "64" in tdt else np.float32
        return fn, np.dtype(dtype)
    fn = getattr(sampler, "logits_fn", None)
    if callable(fn):
        return fn, np.dtype(np.float64)
    return None


class _Job:
    __slots__ = ("i", "stage", "remaining", "size", "rng", "acc", "vals")

    def __init__(self, i, stage, size, rng):
        self.i, self.stage, self.remaining, self.size, self.rng = i, stage, size, size, rng
        self.acc = 0          # successes (or selection counts array)
        self.vals: List[np.ndarray] = []


def certify_dataset_sequential(sampler, inputs, labels, *, sigma, alpha: float = 0.001, radii=None,
                               tolerance=None, max_n: int, n0: int = 100, batch_size: int = 200,
                               growth: float = 2.0, seed: int = 0, bound: str = "mixture",
                               prior=SEQUENTIAL_PRIOR, betting_method: str = "hedged",
                               futility_z: Optional[float] = 2.0, final_share: Optional[float] = 0.5,
                               lower_share: float = 0.9, model_batch_size: Optional[int] = None,
                               out: Optional[str] = None, progress: bool = False) -> SequentialRun:
    """Sequentially certify a data set, keeping every model batch full by mixing undecided inputs.

    Every input runs the procedure of :func:`certify_sequential` (its own CS at level ``alpha``; selection and
    estimation noise from per-input seeds derived from ``(seed, index, purpose, batch)``).  The scheduler keeps a
    FIFO of sampling requests (the ``n0`` selection copies of an input, or its next estimation batch) and packs
    the noisy copies of several inputs into one forward pass of ``model_batch_size`` rows, taking new inputs from
    the data set whenever the active ones cannot fill the batch.  A request may span several forward passes;
    when it completes, that input's CS is read and it either stops or queues its next batch.  So throughput per
    forward pass does not drop as inputs finish; only the last few passes of the whole run can be partial.

    Parameters
    ----------
    sampler : Sampler
        Needs a batch model (:func:`batch_model`) to mix inputs; otherwise each request is one
        ``sampler.counts`` / ``sampler.scores`` call (``SequentialRun.mixed`` is False).
    inputs : array_like, shape (N, *x.shape)
    labels : array_like of int, shape (N,)
        Used only for :meth:`SequentialRun.certified_accuracy` and the ``correct`` column, never for sampling.
    sigma, alpha, radii, tolerance, max_n, n0, batch_size, growth, seed, bound, prior, betting_method
    futility_z, final_share, lower_share
        As in :func:`certify_sequential`.
    model_batch_size : int, optional
        Rows per forward pass (default ``sampler.batch_size`` or 1000).
    out : str, optional
        Path of a TSV written at the end: one row per input (``idx label prediction radius correct
        forward_passes n p_a_lower p_a_upper stopped_by decisions``) after a ``# confbounds-sequential/1``
        line with the configuration.
    progress : bool
        Print a progress line on stderr.

    Returns
    -------
    SequentialRun
        Certificates in input order, total forward passes, model calls and the batch fill rate.

    Examples
    --------
    >>> import numpy as np
    >>> from backends.base import ArraySampler
    >>> w = np.array([1.0, 0.0])
    >>> s = ArraySampler(lambda z: np.stack([-(z @ w), z @ w], axis=1), 2, sigma=0.5)
    >>> xs = np.array([[1.0, 0.0], [0.2, 0.0], [-1.5, 3.0]])
    >>> run = certify_dataset_sequential(s, xs, [1, 1, 0], sigma=0.5, radii=[0.25], max_n=20_000,
    ...                                  model_batch_size=512)
    >>> [c.decisions[0.25] for c in run.certificates], run.fill_rate > 0.5
    (['certified', 'futile', 'certified'], True)
    """
    sigma, alpha, rr, tol, max_n, n0, batch_size, growth, prior = _check_args(
        sigma, alpha, radii, tolerance, max_n, n0, batch_size, growth, bound, prior, seed)
    _check_sampler_sigma(sampler, sigma)
    check_choice(betting_method, "betting_method", ("hedged", "prpl-eb"))
    xs = np.asarray(inputs)
    if xs.ndim < 2 or xs.shape[0] == 0 or xs.dtype.kind not in "fiu" or not np.all(np.isfinite(xs)):
        raise ValueError(f"inputs must be a finite numeric array of shape (N, *x.shape) with N >= 1, "
                         f"got shape {xs.shape}, dtype {xs.dtype}")
    ys = np.asarray(labels)
    if ys.shape != (xs.shape[0],) or ys.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers of shape ({xs.shape[0]},), got shape {ys.shape}, "
                         f"dtype {ys.dtype}")
    if model_batch_size is None:
        model_batch_size = int(getattr(sampler, "batch_size", 1000))
    B = _pos_int(model_batch_size, "model_batch_size")
    kw = dict(sigma=sigma, alpha=alpha, radii=rr, tol=tol, max_n=max_n, batch_size=batch_size, growth=growth,
              bound=bound, prior=prior, betting_method=betting_method, futility_z=_check_futility(futility_z),
              **_check_shares(final_share, lower_share))
    t0 = time.perf_counter()
    N = xs.shape[0]
    certs: List[Optional[SequentialCertificate]] = [None] * N
    model = batch_model(sampler)
    soft = bound == "betting"
    simplex = getattr(sampler, "simplex", "hard")
    temperature = getattr(sampler, "temperature", 1.0)
    passes = 0
    calls = 0
    prog = _Progress(N, progress)

    if model is None:  # per-input fallback: no mixing possible
        for i in range(N):
            certs[i] = certify_sequential(sampler, xs[i], seed=_seed(seed, i, 0), n0=n0, max_n=max_n,
                                          radii=rr or None, tolerance=tol, batch_size=batch_size, growth=growth,
                                          bound=bound, prior=prior, betting_method=betting_method,
                                          sigma=sigma, alpha=alpha, futility_z=futility_z,
                                          final_share=final_share, lower_share=lower_share)
            passes += certs[i].forward_passes
            prog.update(1)
        sb = int(getattr(sampler, "batch_size", B))
        plan = look_schedule(batch_size, growth, max_n)
        calls = sum(_calls(c.n0, sb) + _calls_seq(c, sb, plan) for c in certs)
        fill = passes / (calls * sb) if calls else float("nan")
        prog.close()
        run = SequentialRun(certs, ys, passes, calls, fill, time.perf_counter() - t0, sb, False)
        if out is not None:
            _write_tsv(out, run, dict(kw, n0=n0, seed=seed))
        return run

    fn, dtype = model
    m = getattr(sampler, "num_classes", None)
    selections: Dict[int, np.ndarray] = {}
    seqs: Dict[int, _Sequence] = {}
    queue: List[_Job] = []   # FIFO of requests with rows still to draw
    head = 0
    next_input = 0
    while True:
        parts = []            # (job, start_row, rows)
        rows = []
        room = B
        while room > 0:
            while head < len(queue) and queue[head].remaining == 0:
                head += 1
            if head >= len(queue):
                if next_input >= N:
                    break
                i = next_input
                next_input += 1
                queue.append(_Job(i, -1, n0, np.random.default_rng(_seed(seed, i, _SEL))))
                continue
            job = queue[head]
            take = min(room, job.remaining)
            x = np.asarray(xs[job.i], dtype=dtype)
            noise = job.rng.standard_normal((take, *x.shape), dtype=dtype)
            noise *= dtype.type(sigma)
            noise += x
            parts.append((job, B - room, take))
            rows.append(noise)
            job.remaining -= take
            room -= take
        if not parts:
            break
        if head > 4096:  # drop finished requests from the front of the queue
            queue = queue[head:]
            head = 0
        batch = np.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]
        logits = np.asarray(fn(batch))
        calls += 1
        passes += len(batch)
        if logits.ndim != 2 or logits.shape[0] != len(batch):
            raise ValueError(f"the sampler's batch model returned shape {logits.shape} for {len(batch)} inputs")
        if m is None:
            m = logits.shape[1]
        am = np.argmax(logits, axis=1)
        probs = None
        if soft and simplex != "hard":
            from backends.simplex import apply_simplex

            probs = apply_simplex(logits, simplex, temperature)
        finished = []
        for job, start, take in parts:
            sl = slice(start, start + take)
            if job.stage < 0:
                job.acc = job.acc + np.bincount(am[sl], minlength=logits.shape[1])
            elif soft:
                top = seqs[job.i].top
                job.vals.append(probs[sl, top].astype(np.float64) if probs is not None
                                else (am[sl] == top).astype(np.float64))
            else:
                job.acc += int(np.count_nonzero(am[sl] == seqs[job.i].top))
            if job.remaining == 0:
                finished.append(job)
        for job in finished:
            i = job.i
            if job.stage < 0:
                selections[i] = np.asarray(job.acc, dtype=np.int64)
                seqs[i] = _Sequence(int(np.argmax(selections[i])), **kw)
                done = False
            else:
                seq = seqs[i]
                if soft:
                    done = seq.update(values=np.concatenate(job.vals))
                else:
                    done = seq.update(successes=job.acc, size=job.size)
            if done:
                certs[i] = seqs.pop(i).certificate(selections.pop(i), n0, int(m),
                                                   "scores" if soft and simplex != "hard" else "counts")
                prog.update(1)
            else:
                seq = seqs[i]
                size = seq.next_size()
                queue.append(_Job(i, seq.looks, size,
                                  np.random.default_rng(_seed(seed, i, _EST, seq.looks))))
    prog.close()
    fill = passes / (calls * B) if calls else float("nan")
    run = SequentialRun(certs, ys, passes, calls, fill, time.perf_counter() - t0, B, True)
    if out is not None:
        _write_tsv(out, run, dict(kw, n0=n0, seed=seed, model_batch_size=B))
    return run


def _calls(n: int, b: int) -> int:
    return -(-int(n) // int(b))


def _calls_seq(c: SequentialCertificate, b: int, plan: np.ndarray) -> int:
    """Model calls of the per-input fallback: one ``counts`` call per look, each split into batches of ``b``."""
    sizes = np.diff(np.concatenate([[0], plan[:c.looks]]))
    return int(sum(_calls(int(v), b) for v in sizes))


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled, self.t0 = total, 0, enabled, time.perf_counter()

    def update(self, k: int) -> None:
        self.done += k
        if self.enabled:
            import sys

            el = time.perf_counter() - self.t0
            sys.stderr.write(f"\rsequential {self.done}/{self.total} ({el:.0f} s)")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            import sys

            sys.stderr.write("\n")


def _write_tsv(path: str, run: SequentialRun, config: dict) -> None:
    import json

    cols = ["idx", "label", "prediction", "radius", "correct", "forward_passes", "n", "p_a_lower", "p_a_upper",
            "stopped_by", "decisions"]
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}
    with open(path, "w") as fh:
        fh.write(f"# confbounds-sequential/1 {json.dumps(cfg, sort_keys=True)}\n")
        fh.write("\t".join(cols) + "\n")
        for i, (c, y) in enumerate(zip(run.certificates, run.labels)):
            row = c.to_row()
            vals = [i, int(y), c.prediction, repr(float(c.radius)), int(c.prediction == int(y)), c.forward_passes,
                    c.n, repr(float(c.p_a_lower)), repr(float(c.p_a_upper)), c.stopped_by, row["decisions"]]
            fh.write("\t".join(str(v) for v in vals) + "\n")
