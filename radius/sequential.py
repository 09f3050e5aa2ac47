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

* ``bound="table"`` (counts; needs a batch model, so it runs through the mixing scheduler :func:`schedule`): the
  mixture CS read after *every* estimation sample through integer threshold tables computed once per run
  (:class:`TableState`), with the look-ahead rule and, by default, a fixed-n Clopper-Pearson look at ``max_n``:
  the CS at ``(1 - final_share) alpha``, the final look at ``final_share * alpha`` (union bound).  It also
  certifies R2 (``radius_kind="R2"``) from two one-sided CSs (``p_A`` lower, buckets of non-top classes upper;
  each level split half on ``p_A``, half over the ``K`` buckets).  The split is recorded in the run metadata
  (``alpha_split``).  It decides radii only (no ``tolerance``).

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

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import special

from .certificate import Certificate
from .run import files
from .run.spec import SEQ_BOUNDS as BOUNDS
from .run.spec import SEQ_ESTIMATION, SEQ_SELECTION, SEQUENTIAL_PRIOR, RunSpec, SequentialSpec, check_alpha, \
    check_int, check_sigma, derive_seed

__all__ = ["SequentialCertificate", "SequentialRun", "SequenceState", "certify_sequential", "run_one_input",
           "replay_record", "replay_row", "row_extra", "look_schedule", "look_alphas", "sequence_state",
           "TableState", "threshold_table", "r2_grid", "decode_looks", "schedule", "batch_model", "SeqResult",
           "SEQUENTIAL_PRIOR", "BOUNDS"]

#: Comparison margin for ``Phi(r / sigma)`` (see the module docstring).
_THR_MARGIN = 1e-12

CERTIFIED, REFUTED, UNDECIDED, FUTILE = "certified", "refuted", "undecided", "futile"


@dataclass(frozen=True, eq=False)
class SequentialCertificate(Certificate):
    """A :class:`radius.certificate.Certificate` (``radius_kind="Rmono"``, ``reduction="cohen"``; with
    ``bound="table"`` also ``radius_kind="R2"``, ``reduction="bonferroni"``) plus the sequence.

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

def _check_args(sigma, alpha, radii, tolerance, max_n, n0, batch_size, growth, bound, prior, seed,
                betting_method="hedged", futility_z=2.0, final_share=0.5, lower_share=0.9, radius_kind="Rmono"):
    """``(sigma, alpha, n0, SequentialSpec)``: every check is the run spec's (:mod:`radius.run.spec`)."""
    from .run.spec import check_int

    s = check_sigma(sigma)
    alpha = check_alpha(alpha)
    if radii is None:
        radii = ()
    elif isinstance(radii, str) or np.ndim(radii) > 1 or np.size(radii) == 0:
        raise ValueError(f"radii must be a non-empty 1-D sequence of numbers > 0, got radii={radii!r}")
    seq = SequentialSpec(radii=tuple(np.atleast_1d(np.asarray(radii, dtype=float)).tolist()), tolerance=tolerance,
                         max_n=max_n, bound=bound, batch_size=batch_size, growth=growth, futility_z=futility_z,
                         final_share=final_share, lower_share=lower_share, prior=prior,
                         betting_method=betting_method, radius_kind=radius_kind)
    check_int(seed, "seed", minimum=0)
    return s, alpha, check_int(n0, "n0"), seq


def sequence_state(top: int, sigma: float, alpha: float, seq: SequentialSpec, selection=None):
    """A fresh :class:`SequenceState` for top class ``top`` under ``seq`` (:class:`TableState` for
    ``bound="table"``, which needs the ``selection`` counts)."""
    if seq.bound == "table":
        return TableState(top, np.asarray(selection), sigma=sigma, alpha=alpha, seq=seq)
    return SequenceState(top, sigma=sigma, alpha=alpha, radii=seq.radii, tol=seq.tolerance, max_n=seq.max_n,
                         batch_size=seq.batch_size, growth=seq.growth, bound=seq.bound, prior=seq.prior,
                         betting_method=seq.betting_method, futility_z=seq.futility_z,
                         final_share=seq.final_share, lower_share=seq.lower_share)


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


class SequenceState:
    """State of one input's estimation phase: running CS, decisions, and the cumulative successes per look."""

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
        self.k_looks: List[int] = []  # cumulative successes at each look (counts)
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
            self.k_looks.append(int(self.k))
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
                       final_share: Optional[float] = 0.5, lower_share: float = 0.9,
                       radius_kind: str = "Rmono") -> SequentialCertificate:
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
    bound : {"mixture", "betting", "cp-looks", "table"}
        ``"table"``: the mixture CS read after every sample (:class:`TableState`; needs a batch model);
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
        ``bound="cp-looks"``: alpha spending over looks and sides (:func:`look_alphas`; default half of
        alpha at the last look, 90 % of each look's alpha on the lower bound).  ``bound="table"``:
        ``final_share`` is the share of alpha on a fixed-n Clopper-Pearson look at ``max_n``
        (:class:`TableState`).  Ignored by the other bounds.
    radius_kind : {"Rmono", "R2"}
        ``"R2"`` (probit margin from two one-sided CSs) needs ``bound="table"``.

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
    sigma, alpha, n0, seq = _check_args(sigma, alpha, radii, tolerance, max_n, n0, batch_size, growth, bound,
                                        prior, seed, betting_method, futility_z, final_share, lower_share,
                                        radius_kind)
    _check_sampler_sigma(sampler, sigma)
    if seq.bound == "table":
        spec = RunSpec(sigma=sigma, alpha=alpha, n0=n0, seed=seed, sequential=seq)
        got = []
        schedule(sampler, spec, np.asarray(x)[None], np.zeros(1, dtype=np.int64), [0], got.append)
        return got[0].cert
    return run_one_input(sampler, x, sigma=sigma, alpha=alpha, n0=n0, seq=seq, seed=seed, idx=0)[0]


def run_one_input(sampler, x, *, sigma: float, alpha: float, n0: int, seq: SequentialSpec, seed: int, idx: int,
                  ) -> Tuple[SequentialCertificate, np.ndarray, Optional[np.ndarray], Optional[List[int]]]:
    """One input through ``sampler.counts`` / ``sampler.scores`` (no batch model needed).

    Seeds: selection :func:`radius.run.spec.derive_seed` ``(seed, idx, SEQ_SELECTION, 0)``, estimation batch
    ``j``: ``(seed, idx, SEQ_ESTIMATION, j)``.  Returns the certificate, the selection counts, the estimation
    class counts (None for betting) and the cumulative successes at each look (None for betting).
    """
    if seq.bound == "table":
        raise ValueError("bound='table' reads every sample's label, so it needs a sampler with a batch model "
                         "(logits or logits_fn; radius.engines.sequential.batch_model), which this one lacks")
    selection = np.asarray(sampler.counts(x, n0, derive_seed(seed, idx, SEQ_SELECTION, 0)))
    top = int(np.argmax(selection))
    state = sequence_state(top, sigma, alpha, seq)
    est = None
    while True:
        b = state.next_size()
        s_j = derive_seed(seed, idx, SEQ_ESTIMATION, state.looks)
        if seq.soft:
            vals = np.asarray(sampler.scores(x, b, s_j, columns=[top]))[:, 0]
            done = state.update(values=vals)
        else:
            c = np.asarray(sampler.counts(x, b, s_j), dtype=np.int64)
            est = c if est is None else est + c
            done = state.update(successes=int(c[top]), size=b)
        if done:
            break
    kind = "scores" if seq.soft and _score_column(sampler) else "counts"
    cert = state.certificate(selection, n0, int(len(selection)), kind)
    return cert, selection.astype(np.int64), est, (None if seq.soft else list(state.k_looks))


def row_extra(cert: SequentialCertificate, looks: Optional[List[int]]) -> dict:
    """The values of the sequential TSV columns (:data:`radius.run.files.SEQUENTIAL_COLUMNS`)."""
    return {"p_a_upper": float(cert.p_a_upper), "looks": "" if looks is None else ",".join(str(v) for v in looks),
            "stopped_by": cert.stopped_by, "decisions": cert.to_row()["decisions"]}


def replay_record(spec: RunSpec, rec) -> Tuple[SequentialCertificate, dict]:
    """Replay a logged sequential input from its selection counts and its cumulative successes per look.

    The confidence sequence and every decision are recomputed exactly as during sampling (same looks, same
    running intersection); the replay must stop at the last logged look, and the estimation counts must sum
    to that look's sample size with ``looks[-1]`` successes for the top class.  ``ValueError`` otherwise.
    """
    seq = spec.sequential
    if seq is None or seq.soft:
        raise ValueError("only a counts-based sequential run (bound mixture, cp-looks or table) can be replayed")
    sel = np.asarray(rec["selection"], dtype=np.int64)
    est = np.asarray(rec["estimation"], dtype=np.int64)
    looks = [int(v) for v in rec["looks"]]
    top = int(np.argmax(sel))
    if seq.bound == "table":
        return _replay_table(spec, sel, est, looks, top)
    state = sequence_state(top, spec.sigma, spec.alpha, seq)
    prev = 0
    for j, k in enumerate(looks):
        if state.stopped_by:
            raise ValueError(f"the sequence stops after look {j}, but {len(looks)} looks are logged")
        b = state.next_size()
        if not 0 <= k - prev <= b:
            raise ValueError(f"look {j + 1} adds {k - prev} successes to a batch of {b}")
        state.update(successes=k - prev, size=b)
        prev = k
    if not state.stopped_by:
        raise ValueError(f"the sequence does not stop after the {len(looks)} logged looks")
    if int(est.sum()) != state.t or int(est[top]) != looks[-1]:
        raise ValueError(f"estimation counts (sum {int(est.sum())}, top class {int(est[top])}) disagree with the "
                         f"looks (t = {state.t}, successes {looks[-1]})")
    cert = state.certificate(sel, spec.n0, int(len(sel)), "counts")
    return cert, row_extra(cert, looks)


def _replay_table(spec: RunSpec, sel, est, looks, top) -> Tuple[SequentialCertificate, dict]:
    """Replay a ``bound="table"`` record: decode its labels and read them again, one sample at a time."""
    m = int(len(sel))
    lab = decode_looks(looks, m, top)
    state = TableState(top, sel, sigma=spec.sigma, alpha=spec.alpha, seq=spec.sequential)
    used = state.feed(lab)
    if not state.stopped_by or used != lab.size:
        raise ValueError(f"the logged labels (tau = {lab.size}) do not end where the sequence stops "
                         f"({'after ' + str(used) if state.stopped_by else 'it does not stop'})")
    if not np.array_equal(est, np.bincount(lab, minlength=m)[:m]):
        raise ValueError(f"estimation counts {est.tolist()} disagree with the logged labels")
    cert = state.certificate(sel, spec.n0, m, "counts")
    return cert, row_extra(cert, looks)


def replay_row(spec: RunSpec, row) -> Tuple[Optional[SequentialCertificate], dict]:
    """:func:`replay_record` for a parsed sequential TSV row (:func:`radius.run.files.parse_row`).

    For a betting (soft) run no successes are stored: ``ValueError``, except that the caller may skip it.
    """
    from .run.files import check_counts

    m = spec.num_classes
    sel = check_counts(row["selection_counts"].tolist() if row["selection_counts"] is not None else None,
                       "selection", m, spec.n0)
    est = check_counts(row["estimation_counts"].tolist() if row["estimation_counts"] is not None else None,
                       "estimation", m, None)
    try:
        looks = [int(v) for v in row["looks"].split(",")]
    except ValueError:
        raise ValueError(f"column 'looks' holds {row['looks']!r:.40}, not a list of integers") from None
    return replay_record(spec, {"selection": sel, "estimation": est, "looks": looks})


def _check_sampler_sigma(sampler, sigma: float) -> None:
    s = getattr(sampler, "sigma", None)
    if s is not None and not math.isclose(float(s), sigma, rel_tol=1e-12, abs_tol=0.0):
        raise ValueError(f"sigma = {sigma!r} differs from the sampler's noise level sampler.sigma = {s!r}")


# ------------------------------------------------------------------------------- per-sample reading (tables)

#: R2 futility (a heuristic) is not applied before this many estimation samples.
FUTILITY_MIN_T = 100
#: R2 looks: every sample up to this size, then every ``R2_GRID_STEP`` relative step (and at ``max_n``).
R2_GRID_DENSE = 1000
R2_GRID_STEP = 0.002


@functools.lru_cache(maxsize=64)
def threshold_table(c: float, max_n: int, alpha: float, prior: Tuple[float, float], final_share: float):
    """:func:`confbounds.seqmargin.mixture_threshold_table`, computed once per ``(c, max_n, alpha, prior, share)``."""
    from confbounds.seqmargin import mixture_threshold_table

    return mixture_threshold_table(c, int(max_n), alpha, prior=prior, final_share=final_share)


@functools.lru_cache(maxsize=16)
def r2_grid(max_n: int) -> np.ndarray:
    """Boolean mask over ``t = 0..max_n``: the sample sizes at which ``radius_kind="R2"`` reads its CSs.

    Every ``t <= 1000``, then ``t_{j+1} = ceil(1.002 t_j)``, and ``max_n``.  Fixed before sampling (it depends on
    ``max_n`` only); a CS may be read at any times, so the grid only trades cost for promptness.

    >>> np.flatnonzero(r2_grid(1010)).tolist()[-4:]
    [1002, 1005, 1008, 1010]
    """
    mask = np.zeros(int(max_n) + 1, dtype=bool)
    mask[1:min(R2_GRID_DENSE, max_n) + 1] = True
    t = R2_GRID_DENSE
    while t < max_n:
        t = min(int(max_n), int(math.ceil(t * (1.0 + R2_GRID_STEP))))
        mask[t] = True
    mask[int(max_n)] = True
    return mask


def _first(mask: np.ndarray) -> int:
    """Index of the first True (``len(mask)`` when none)."""
    i = int(np.argmax(mask)) if mask.size else 0
    return i if mask.size and mask[i] else int(mask.size)


class TableState:
    """One input's estimation phase under ``bound="table"``: the estimation labels are read one sample at a time.

    Rmono (``radius_kind="Rmono"``), per radius ``r`` with ``c_r = Phi(r / sigma)``: the integer tables of the
    beta-binomial mixture CS (:func:`confbounds.seqmargin.mixture_threshold_table`, prior
    :data:`confbounds.seqmargin.TOP_PRIOR`, built once per run by :func:`threshold_table`) are compared with the
    success count after *every* sample: ``k_t >= certify[t]`` certifies ``r``, ``k_t <= refute[t]`` refutes it,
    and ``k_t <= unreachable[t]`` (look-ahead: no continuation to ``max_n`` can certify) or
    :func:`confbounds.seqmargin.futile` (``futility_z``; validity does not depend on it) gives it up
    (``"futile"``, no claim).  Sampling stops at the first sample at which every radius is decided (or at
    ``max_n``); rows drawn after it are ignored (ignoring data drawn after a stopping time keeps validity; the
    scheduler still counts them as forward passes).

    R2 (``radius_kind="R2"``): buckets of non-top classes from the selection sample
    (:func:`confbounds.seqmargin.selection_buckets`); at the looks of :func:`r2_grid`,
    :func:`confbounds.seqmargin.bonferroni_margin_cs` gives ``L_A`` and ``U_B = max_b U_b`` and ``r`` is certified
    when ``sigma / 2 (Phi^-1(L_A) - Phi^-1(U_B)) > r`` (Salman et al. 2019; theory §7).  No refutation (the two
    one-sided CSs do not bound the margin from above); futility (heuristic, validity does not depend on it):
    from ``FUTILITY_MIN_T`` samples on, the counts projected to ``max_n`` at the optimistic rates
    ``p_A + z sd``, ``p_b - z sd`` do not certify.

    Alpha (theory §6): with ``s = final_share`` (None: 0), the mixture CS runs at ``(1 - s) alpha`` at every
    ``t``; at ``t = max_n`` only, a fixed-n one-sided Clopper-Pearson bound at ``s alpha`` may also certify.  For
    R2 each level is split as ``bonferroni_margin_cs`` does: half on ``p_A``, half over the ``K`` buckets
    (``/ K`` each).  Union bound: every decision at every sample and the certificate at the stopping time are
    correct with probability ``>= 1 - alpha`` (the Clopper-Pearson event is about the count at the fixed time
    ``max_n``, whether or not the input gets there).  The split is recorded in the run metadata
    (``alpha_split``).

    Certificate at the stopping time ``tau``: Rmono ``max(sigma Phi^-1(L_tau), largest certified r)`` with
    ``L_tau`` the CS's lower end (and the Clopper-Pearson bound if ``tau = max_n``); R2 likewise from the margin.
    Both hold on the same event as every decision.
    """

    def __init__(self, top: int, selection: np.ndarray, *, sigma: float, alpha: float, seq: SequentialSpec):
        from confbounds.seqmargin import TOP_PRIOR, selection_buckets

        self.top = int(top)
        self.sigma, self.alpha, self.seq = sigma, alpha, seq
        self.radii = seq.radii
        self.max_n = int(seq.max_n)
        self.share = float(seq.final_share) if seq.final_share is not None else 0.0
        self.kind = seq.radius_kind
        self.z = seq.futility_z
        self.thr = {r: float(special.ndtr(r / sigma)) for r in self.radii}
        self.decisions = {r: UNDECIDED for r in self.radii}
        self.plan = look_schedule(seq.batch_size, seq.growth, seq.max_n)
        self.requests = 0     # estimation requests issued (request j is plan[j] - plan[j-1] rows)
        self.drawn = 0        # estimation rows drawn (used or not)
        self.k = 0            # top-class successes among the used rows
        self.t = 0            # used rows
        self.m = int(len(selection))
        self.counts = np.zeros(self.m, dtype=np.int64)
        self.misses: List[Tuple[int, int]] = []   # (1-based sample position, class) of every non-top label
        self.stopped_by = ""
        self.looks = 0
        if self.kind == "Rmono":
            self.tabs = {r: threshold_table(c, self.max_n, alpha, TOP_PRIOR, self.share) for r, c in self.thr.items()}
        else:
            self.buckets = selection_buckets(np.asarray(selection, dtype=np.int64), self.top)
            self.bucket_of = np.full(self.m, -1, dtype=np.int64)
            for j, b in enumerate(self.buckets):
                self.bucket_of[b] = j
            self.kb = np.zeros(len(self.buckets), dtype=np.int64)
            self.grid = r2_grid(self.max_n)

    # -- scheduling
    def next_size_of(self, j: int) -> int:
        """Rows of estimation request ``j`` (``plan[j] - plan[j-1]``; 0 once stopped)."""
        if self.stopped_by or j >= len(self.plan):
            return 0
        return int(self.plan[j] - (self.plan[j - 1] if j else 0))

    # -- reading
    def feed(self, labels: np.ndarray) -> int:
        """Read estimation labels (argmax classes, in sampling order); return how many were used.

        Stops at the first sample at which every radius is decided (or at ``max_n``); later labels are ignored.
        """
        labels = np.asarray(labels, dtype=np.int64).ravel()
        self.drawn += labels.size
        if self.stopped_by or labels.size == 0:
            return 0
        labels = labels[:self.max_n - self.t]
        L = labels.size
        succ = labels == self.top
        k_path = self.k + np.cumsum(succ)
        t_path = self.t + np.arange(1, L + 1)
        und = [r for r, d in self.decisions.items() if d == UNDECIDED]
        events = self._events_rmono(und, k_path, t_path) if self.kind == "Rmono" else \
            self._events_r2(und, labels, k_path, t_path)
        at = [events[r][0] for r in und]
        stop = max(at) if at else 0
        if stop >= L:  # some radius still undecided after these labels
            stop = L - 1 if t_path[-1] >= self.max_n else -1
        lim = L - 1 if stop < 0 else stop  # decisions made by the last used row are kept
        for r in und:
            i, d = events[r]
            if i <= lim:
                self.decisions[r] = d
        used = L if stop < 0 else stop + 1
        lab = labels[:used]
        self.counts += np.bincount(lab, minlength=self.m)[:self.m]
        pos = np.flatnonzero(lab != self.top)
        self.misses.extend(zip((self.t + pos + 1).tolist(), lab[pos].tolist()))
        if self.kind == "R2" and used:
            self.kb += np.bincount(self.bucket_of[lab[pos]], minlength=len(self.buckets))
        self.k = int(k_path[used - 1]) if used else self.k
        self.t += used
        self.looks += used
        if stop >= 0:
            self.stopped_by = "decided" if all(d != UNDECIDED for d in self.decisions.values()) else "max_n"
        return used

    def _events_rmono(self, und, k_path, t_path) -> Dict[float, Tuple[int, str]]:
        from confbounds.seqmargin import futile

        L = k_path.size
        out = {}
        for r in und:
            tab = self.tabs[r]
            ic = _first(k_path >= tab.certify[t_path])
            ir = _first(k_path <= tab.refute[t_path])
            give_up = (k_path <= tab.unreachable[t_path]) & (t_path < self.max_n)
            if self.z is not None:
                give_up |= np.asarray(futile(k_path, t_path, int(tab.certify[self.max_n]), self.max_n, self.z)) & \
                    (t_path < self.max_n)
            ig = _first(give_up)
            i = min(ic, ir, ig)
            out[r] = (i, CERTIFIED if i == ic else REFUTED if i == ir else FUTILE) if i < L else (L, UNDECIDED)
        return out

    def _r2_bounds(self, k_a, kb, t):
        """``(L_A, U_B)`` at the looks ``(k_a, kb, t)`` (arrays): the CSs, plus the Clopper-Pearson look at max_n."""
        from confbounds.seqmargin import bonferroni_margin_cs

        cs_level = (1.0 - self.share) * self.alpha
        lo, hi = bonferroni_margin_cs(k_a, kb, t, cs_level)
        lo, hi = np.atleast_1d(np.asarray(lo, dtype=float)).copy(), np.atleast_1d(np.asarray(hi, dtype=float)).copy()
        if self.share > 0:
            from confbounds.binomial import clopper_pearson

            K = kb.shape[-1]
            fin = np.flatnonzero(np.atleast_1d(t) == self.max_n)
            for i in fin:
                cp_lo = float(clopper_pearson(int(np.atleast_1d(k_a)[i]), self.max_n, self.share * self.alpha / 2,
                                              side="lower"))
                cp_hi = max(float(clopper_pearson(int(v), self.max_n, self.share * self.alpha / (2 * K),
                                                  side="upper")) for v in np.atleast_2d(kb)[i])
                lo[i], hi[i] = max(lo[i], cp_lo), min(hi[i], cp_hi)
        return lo, hi

    def _r2_value(self, lo, hi):
        from confbounds.seqmargin import margin_from_bounds

        return self.sigma / 2.0 * np.atleast_1d(margin_from_bounds(lo, hi))

    def _events_r2(self, und, labels, k_path, t_path) -> Dict[float, Tuple[int, str]]:
        L = labels.size
        gi = np.flatnonzero(self.grid[t_path])
        if gi.size == 0 or not und:
            return {r: (L, UNDECIDED) for r in und}
        K = len(self.buckets)
        onehot = np.zeros((L, K), dtype=np.int64)
        bo = self.bucket_of[labels]
        nz = bo >= 0
        onehot[np.flatnonzero(nz), bo[nz]] = 1
        kb_path = self.kb + np.cumsum(onehot, axis=0)
        ka, kb, tt = k_path[gi], kb_path[gi], t_path[gi]
        val = self._r2_value(*self._r2_bounds(ka, kb, tt))
        fut = np.zeros((len(und), gi.size), dtype=bool)
        if self.z is not None:  # heuristic projection to max_n (validity does not depend on it)
            with np.errstate(invalid="ignore", divide="ignore"):
                pa = ka / tt
                pb = kb / tt[:, None]
                sd_a = np.sqrt(np.maximum(pa * (1 - pa), 1.0 / tt) / tt)
                sd_b = np.sqrt(np.maximum(pb * (1 - pb), 1.0 / tt[:, None]) / tt[:, None])
            rest = (self.max_n - tt).astype(float)
            fa = np.minimum(self.max_n, np.floor(ka + np.minimum(1.0, pa + self.z * sd_a) * rest)).astype(np.int64)
            fb = np.floor(kb + np.maximum(0.0, pb - self.z * sd_b) * rest[:, None]).astype(np.int64)
            tot = fb.sum(axis=1)
            room = self.max_n - fa
            over = tot > room
            if np.any(over):
                fb[over] = np.floor(fb[over] * (room[over] / tot[over])[:, None]).astype(np.int64)
            fval = self._r2_value(*self._r2_bounds(fa, fb, np.full(tt.shape, self.max_n)))
            for j, r in enumerate(und):  # not before FUTILITY_MIN_T samples (tiny t: the sd is meaningless)
                fut[j] = (fval <= r + _THR_MARGIN) & (tt < self.max_n) & (tt >= FUTILITY_MIN_T)
        out = {}
        for j, r in enumerate(und):
            ic = _first(val > r + _THR_MARGIN)
            ig = _first(fut[j])
            i = min(ic, ig)
            out[r] = (int(gi[i]), CERTIFIED if i == ic else FUTILE) if i < gi.size else (L, UNDECIDED)
        return out

    # -- results
    def encoded_looks(self) -> List[int]:
        """The used estimation labels, losslessly, as a strictly increasing list of integers (the counts log's
        ``looks``): ``p m + c`` for every non-top label ``c`` at 1-based position ``p``, then ``(tau + 1) m``."""
        return [p * self.m + c for p, c in self.misses] + [(self.t + 1) * self.m]

    def certificate(self, selection: np.ndarray, n0: int, m: int, kind: str) -> SequentialCertificate:
        order = np.argsort(-np.asarray(selection, dtype=float), kind="stable")
        runner = int(order[1]) if len(order) > 1 else -1
        cert_r = [r for r, d in self.decisions.items() if d == CERTIFIED]
        if self.kind == "Rmono":
            from confbounds.binomial import clopper_pearson
            from confbounds.mixture import beta_binomial_cs

            lo, hi = (beta_binomial_cs(self.k, self.t, (1.0 - self.share) * self.alpha, side="two-sided",
                                       prior=self.tabs[self.radii[0]].prior) if self.t else (0.0, 1.0))
            lo, hi = float(lo), float(hi)
            if self.share > 0 and self.t == self.max_n:
                lo = max(lo, float(clopper_pearson(self.k, self.t, self.share * self.alpha, side="lower")))
            lo = max([lo] + [self.thr[r] for r in cert_r])
            hi = min([hi] + [self.thr[r] for r, d in self.decisions.items() if d == REFUTED])
            pred = self.top if lo > 0.5 else -1
            from .radii import r_mono

            radius = max([float(r_mono(lo, self.sigma))] + cert_r) if pred != -1 else 0.0
            with np.errstate(divide="ignore"):
                margin = 2.0 * float(special.ndtri(lo)) if lo > 0 else -math.inf
            p_b, bound, red, n_tests, r_up = 1.0 - lo, "mixture_table", "cohen", 1, \
                (math.inf if hi >= 1 else max(0.0, self.sigma * float(special.ndtri(hi))))
        else:
            if self.t:
                lo_a, hi_b = self._r2_bounds(np.array([self.k]), self.kb[None, :], np.array([self.t]))
                val = float(self._r2_value(lo_a, hi_b)[0])
                lo, p_b = float(lo_a[0]), float(hi_b[0])
            else:
                val, lo, p_b = -math.inf, 0.0, 1.0
            radius = max([val] + cert_r)
            pred = self.top if radius > 0 else -1
            radius = radius if pred != -1 else 0.0
            margin = 2.0 * radius / self.sigma if pred != -1 else val * 2.0 / self.sigma
            hi, bound, red, n_tests, r_up = 1.0, "mixture_table_bonferroni", "bonferroni", len(self.buckets), math.nan
        return SequentialCertificate(
            prediction=pred, radius=radius, top=self.top, runner_up=runner, p_a_lower=lo, p_b_upper=p_b,
            margin_lower=margin, margin="probit", radius_kind=self.kind, reduction=red, bound=bound,
            alpha=self.alpha, alpha_each=self.alpha, n_tests=n_tests, sigma=self.sigma, n0=n0, n=self.t, m=m,
            kind=kind, p_a_upper=hi, forward_passes=n0 + self.drawn,
            decisions={float(k): v for k, v in self.decisions.items()}, stopped_by=self.stopped_by,
            looks=self.looks, radius_upper=r_up)


def decode_looks(looks: List[int], m: int, top: int) -> np.ndarray:
    """The estimation labels encoded by :meth:`TableState.encoded_looks` (``ValueError`` if malformed)."""
    v = np.asarray(looks, dtype=np.int64)
    if v.size == 0 or v[-1] % m != 0 or np.any(np.diff(v) <= 0):
        raise ValueError(f"looks of a table run must be strictly increasing with a last entry divisible by "
                         f"{m}, got {looks!r:.60}")
    tau = int(v[-1] // m) - 1
    pos, cls = v[:-1] // m, v[:-1] % m
    if tau < 0 or np.any(pos < 1) or np.any(pos > tau) or np.any(cls == top):
        raise ValueError(f"looks of a table run encode a label outside 1..{tau} or of the top class {top}")
    lab = np.full(tau, top, dtype=np.int64)
    lab[pos - 1] = cls
    return lab


# ------------------------------------------------------------------------------------- the mixing scheduler
# (radius.engines.sequential runs it as an ordinary run; it lives here so that certify_sequential can use it)

def batch_model(sampler) -> Optional[Tuple[Callable[[np.ndarray], np.ndarray], np.dtype]]:
    """The sampler's batch model ``inputs (b, *x.shape) -> logits (b, m)`` in input space, and its noise dtype.

    Uses public attributes only: ``logits(inputs)`` of the ONNX and torch samplers (which apply
    ``normalize``), ``logits_fn`` of :class:`backends.base.ArraySampler`.  Returns None when the sampler has
    neither; the scheduler then falls back to one input per call (``sampler.counts`` / ``sampler.scores``).
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


@dataclass
class SeqResult:
    """One decided input: certificate, selection counts, estimation class counts, cumulative successes per look."""

    idx: int
    label: int
    cert: Any
    selection: np.ndarray
    estimation: Optional[np.ndarray]
    looks: Optional[List[int]]
    time: float

    def tsv_row(self) -> str:
        return files.format_row(self.idx, self.label, self.cert, self.time, self.selection, self.estimation,
                                row_extra(self.cert, self.looks))

    def counts_line(self) -> Optional[str]:
        if self.estimation is None:
            return None
        return files.counts_record(self.idx, self.label, self.selection, self.estimation, self.looks)


class _Job:
    __slots__ = ("i", "stage", "remaining", "size", "rng", "acc", "vals", "counts")

    def __init__(self, i, stage, size, rng):
        self.i, self.stage, self.remaining, self.size, self.rng = i, stage, size, size, rng
        self.acc = 0          # successes (or selection counts array)
        self.vals: List[np.ndarray] = []
        self.counts = None    # estimation class counts of this batch


def _calls(n: int, b: int) -> int:
    return -(-int(n) // int(b))


def schedule(sampler, spec: RunSpec, xs: np.ndarray, ys: np.ndarray, indices: Sequence[int],
             on_result: Callable[[SeqResult], None], model_batch_size: Optional[int] = None) -> Dict[str, Any]:
    """Run the inputs ``indices`` (in this order) of ``xs`` under a sequential ``spec``; call ``on_result``
    as each is decided (in decision order).  Returns ``{"passes", "calls", "batch", "mixed"}``."""
    seq = spec.sequential
    sigma, alpha, n0, seed = spec.sigma, spec.alpha, spec.n0, spec.seed
    B = check_int(model_batch_size if model_batch_size is not None
                  else int(getattr(sampler, "batch_size", None) or 1000), "model_batch_size")
    model = batch_model(sampler)
    soft = seq.soft
    table = seq.bound == "table"
    m = spec.num_classes
    passes = calls = 0
    if model is None and table:
        raise ValueError("bound='table' reads every sample's label, so it needs a sampler with a batch model "
                         "(logits or logits_fn), which this one lacks")
    if model is None:  # per-input fallback: no mixing possible
        sb = int(getattr(sampler, "batch_size", B))
        plan = look_schedule(seq.batch_size, seq.growth, seq.max_n)
        for i in indices:
            t0 = time.perf_counter()
            cert, sel, est, looks = run_one_input(sampler, xs[i], sigma=sigma, alpha=alpha, n0=n0, seq=seq,
                                                  seed=seed, idx=i)
            passes += cert.forward_passes
            sizes = np.diff(np.concatenate([[0], plan[:cert.looks]]))
            calls += _calls(n0, sb) + int(sum(_calls(int(v), sb) for v in sizes))
            on_result(SeqResult(int(i), int(ys[i]), cert, sel, est, looks, time.perf_counter() - t0))
        return {"passes": passes, "calls": calls, "batch": sb, "mixed": False}

    fn, dtype = model
    simplex = spec.simplex
    selections: Dict[int, np.ndarray] = {}
    states: Dict[int, Any] = {}
    est_counts: Dict[int, np.ndarray] = {}
    started: Dict[int, float] = {}
    spent: Dict[int, float] = {}
    queue: List[_Job] = []   # FIFO of requests with rows still to draw
    head = 0
    todo = list(indices)
    nxt = 0
    while True:
        parts = []            # (job, start_row, rows)
        rows = []
        room = B
        t_batch = time.perf_counter()
        while room > 0:
            while head < len(queue) and queue[head].remaining == 0:
                head += 1
            if head >= len(queue):
                if nxt >= len(todo):
                    break
                i = todo[nxt]
                nxt += 1
                started[i] = time.perf_counter()
                spent[i] = 0.0
                queue.append(_Job(i, -1, n0, np.random.default_rng(derive_seed(seed, i, SEQ_SELECTION, 0))))
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

            probs = apply_simplex(logits, simplex, spec.temperature)
        finished = []
        share = (time.perf_counter() - t_batch) / len(batch)
        for job, start, take in parts:
            sl = slice(start, start + take)
            spent[job.i] += share * take
            if job.stage < 0:
                job.acc = job.acc + np.bincount(am[sl], minlength=logits.shape[1])
            elif table:  # per-sample reading: stop at the deciding row; the job's undrawn rows are cancelled
                st = states[job.i]
                st.feed(am[sl])
                if st.stopped_by:
                    job.remaining = 0
            else:
                top = states[job.i].top
                c = np.bincount(am[sl], minlength=logits.shape[1])
                est_counts[job.i] = est_counts[job.i] + c
                if soft:
                    job.vals.append(probs[sl, top].astype(np.float64) if probs is not None
                                    else (am[sl] == top).astype(np.float64))
                else:
                    job.acc += int(c[top])
            if job.remaining == 0:
                finished.append(job)
        for job in finished:
            i = job.i
            t0 = time.perf_counter()
            if job.stage < 0:
                selections[i] = np.asarray(job.acc, dtype=np.int64)
                states[i] = sequence_state(int(np.argmax(selections[i])), sigma, alpha, seq, selections[i])
                est_counts[i] = np.zeros(logits.shape[1], dtype=np.int64)
                done = False
            elif table:
                done = bool(states[i].stopped_by)
            else:
                st = states[i]
                done = st.update(values=np.concatenate(job.vals)) if soft else st.update(successes=job.acc,
                                                                                          size=job.size)
            spent[i] += time.perf_counter() - t0
            if done:
                st = states.pop(i)
                kind = "scores" if soft and simplex != "hard" else "counts"
                cert = st.certificate(selections[i], n0, int(m), kind)
                if table:
                    est_counts.pop(i)
                    est, looks = st.counts.copy(), st.encoded_looks()
                else:
                    est, looks = est_counts.pop(i), (None if soft else list(st.k_looks))
                on_result(SeqResult(int(i), int(ys[i]), cert, selections.pop(i), est, looks, spent.pop(i)))
                started.pop(i, None)
            elif table:  # request j of input i: seed (seed, i, SEQ_ESTIMATION, j)
                st = states[i]
                j = st.requests
                st.requests += 1
                queue.append(_Job(i, j, st.next_size_of(j),
                                  np.random.default_rng(derive_seed(seed, i, SEQ_ESTIMATION, j))))
            else:
                st = states[i]
                queue.append(_Job(i, st.looks, st.next_size(),
                                  np.random.default_rng(derive_seed(seed, i, SEQ_ESTIMATION, st.looks))))
    return {"passes": passes, "calls": calls, "batch": B, "mixed": True}
