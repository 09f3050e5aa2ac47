"""Benchmark: sequential certification against the published sample-efficient certifiers, on the same streams.

Design (simulation, stated honestly)
------------------------------------
1. Per-input class probabilities: the first ``--inputs`` digits test inputs, at sigma 0.25 and 0.5, are sampled
   ``--prob-n`` times (the probability file records its ``n``; the shipped run used 50,000 at sigma 0.25 and
   100,000 at sigma 0.5, a budget set by a heavily shared machine) through the bundled ONNX model
   (``backends.models.default_model_path(sigma)``); the empirical class frequencies are cached in
   ``benchmarks/results/frontier_probs_sigma{0.25,0.50}.json`` and then *taken as the true* class probabilities.
2. Streams: for input ``i`` a fixed seed draws ``n0 = 100`` selection labels and one categorical stream of
   estimation labels from those probabilities.  Every method reads the *same* selection sample and the *same*
   stream (a prefix of it), so differences come from the procedures alone.  No model runs in this step, so the
   benchmark measures samples (forward passes), not wall time.
3. Decisions: radii 0.25, 0.5, 0.75, 1.0 at alpha = 0.001; the top class and the buckets of non-top classes
   (``confbounds.seqmargin.selection_buckets``) are chosen on the selection sample.  A method stops when every
   radius is decided (certified, refuted or, for ours, futile) or at its sample cap.  Certified accuracy counts
   inputs whose selection top class equals the label and whose radius is certified.  ``Rmono`` uses a CS on
   ``p_A`` at alpha; ``R2`` uses ``p_A`` at alpha/2 and each bucket at alpha/(2K) (union bound).

Methods (reimplemented from the papers; no code copied)
-------------------------------------------------------
* ``fixed-n Cohen``: Cohen, Rosenfeld, Kolter (ICML 2019), CERTIFY: n = 100,000, one-sided Clopper-Pearson.
* ``Voracek union-bound CS``: Voracek (NeurIPS 2024), Section on confidence sequences: Clopper-Pearson intervals
  at the doubling looks ``t_j = 100 * 2^j`` (and max_n), look ``j`` at ``alpha 2^-(j+1)`` (two-sided: half per
  side), union bound over looks (our reading of the construction; the look grid is our choice).
* ``Voracek betting (precomputed thresholds)``: Voracek (NeurIPS 2024): a betting confidence sequence whose
  wealth depends only on ``(k, t)``, so integer decision thresholds can be tabulated and read after every
  sample.  Our instance: constant bets ``lambda = (q - c) / (c (1 - c))`` mixed uniformly over the alternatives
  ``q in {2^-j, 1 - 2^-j : j = 1..24}`` (a discrete mixture of likelihood ratios, a martingale under ``p = c``),
  at level alpha for both ends (theory §7b: the coded form of the original is a level-2alpha test, i.e. it is run
  here at the equivalent of its alpha/2).
* ``Horvath staged``: Horvath et al. (ICLR 2022), adaptive sampling: cumulative stages 100 / 1,000 / 10,000 /
  120,000; at each stage Clopper-Pearson at alpha/4 *per side* (their accounting: the lower side, which carries
  the certificate, spends alpha; refutations spend another alpha on the upper side).
* ``Chen ISS``: Chen et al. (AAAI 2022), input-specific sampling: the sample size is chosen per input from a
  pilot estimate (here the selection sample, which is independent of the estimation stream) as the smallest
  ``n`` whose predicted Cohen radius is within ``kappa = 0.05`` of the predicted radius at ``N = 100,000``; then
  fixed-n Clopper-Pearson on ``n`` fresh samples.
* ``ours``: the beta-binomial mixture CS (``confbounds.mixture``, prior Beta(1, 0.1); buckets Beta(0.1, 1)) read
  after every sample through integer threshold tables (``confbounds.seqmargin.mixture_threshold_table``) for
  Rmono, and on a dense look grid (every sample up to 500, then every 1 %) for R2 (two one-sided CSs,
  ``bonferroni_margin_cs``); plus the futility rule (``futile``, z = 2; a heuristic: validity does not depend
  on it) and the look-ahead rule of the table.

Writes ``benchmarks/results/frontier.json`` and prints the table.

    nice .venv/bin/python benchmarks/frontier.py --estimate     # once: the class probabilities (ONNX)
    nice .venv/bin/python benchmarks/frontier.py                # the comparison (simulation)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numba
import numpy as np
from scipy import special

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from confbounds import clopper_pearson  # noqa: E402
from confbounds.mixture import beta_binomial_cs  # noqa: E402
from confbounds.seqmargin import (BUCKET_PRIOR, TOP_PRIOR, futile, mixture_threshold_table,  # noqa: E402
                                  selection_buckets)

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SIGMAS = (0.25, 0.5)
ALPHA = 0.001
RADII = (0.25, 0.5, 0.75, 1.0)
N0 = 100
N_FIXED = 100_000
HORVATH_STAGES = (100, 1_000, 10_000, 120_000)
ISS_KAPPA = 0.05
STREAM_SEED = 20261202
PROB_SEED = 20261202


# ------------------------------------------------------------------------------------------ probabilities

def probs_path(sigma: float) -> str:
    return os.path.join(RESULTS, f"frontier_probs_sigma{sigma:.2f}.json")


def estimate_probs(sigma: float, inputs: int, n: int, seed: int = PROB_SEED, model_batch_size: int = 1000) -> dict:
    """Class counts of ``n`` noisy copies of each of the first ``inputs`` digits test inputs (bundled ONNX model)."""
    from backends.models import default_model_path, load_digits_split
    from backends.onnx_sampler import OnnxSampler
    from radius.pipeline import input_seeds

    xs, ys = load_digits_split("test")
    xs, ys = xs[:inputs], ys[:inputs]
    sampler = OnnxSampler(default_model_path(sigma), sigma=sigma, batch_size=model_batch_size,
                          providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    counts = []
    for i, x in enumerate(xs):
        counts.append(sampler.counts(x, n, input_seeds(seed, i)[1]).tolist())
        print(f"\rprobs sigma={sigma} {i + 1}/{len(xs)} ({time.perf_counter() - t0:.0f} s)", end="", file=sys.stderr)
    print(file=sys.stderr)
    rec = {"sigma": sigma, "n": n, "seed": seed, "inputs": len(xs), "labels": [int(v) for v in ys],
           "counts": counts, "wall_s": time.perf_counter() - t0, "load_average": list(os.getloadavg()),
           "model": str(default_model_path(sigma).name)}
    os.makedirs(RESULTS, exist_ok=True)
    with open(probs_path(sigma), "w") as fh:
        json.dump(rec, fh)
    return rec


def load_probs(sigma: float):
    with open(probs_path(sigma)) as fh:
        rec = json.load(fh)
    counts = np.asarray(rec["counts"], dtype=float)
    return counts / counts.sum(axis=1, keepdims=True), np.asarray(rec["labels"]), rec


# ---------------------------------------------------------------------------------------------- streams

@dataclass
class Stream:
    """One input's selection sample and estimation stream, reduced to what the methods read.

    ``k_a[t - 1]`` is the top-class count after ``t`` estimation samples; ``k_b[t - 1, b]`` the count of bucket
    ``b``; ``singleton[b]`` whether bucket ``b`` is a single class (only those give a lower bound on
    ``max_{k != A} p_k``).
    """

    top: int
    label: int
    selection: np.ndarray
    buckets: List[List[int]]
    k_a: np.ndarray
    k_b: np.ndarray
    singleton: np.ndarray

    @property
    def length(self) -> int:
        return len(self.k_a)


def make_stream(p: np.ndarray, label: int, idx: int, length: int, seed: int = STREAM_SEED, n0: int = N0) -> Stream:
    """Selection sample and estimation stream of input ``idx`` from class probabilities ``p`` (fixed seed)."""
    rng = np.random.default_rng([seed, idx])
    m = len(p)
    sel = np.bincount(rng.choice(m, size=n0, p=p), minlength=m)
    top = int(np.argmax(sel))
    buckets = selection_buckets(sel, top)
    cls = rng.choice(m, size=length, p=p).astype(np.int16)
    k_a = np.cumsum(cls == top, dtype=np.int64)
    bucket_of = np.full(m, -1)
    for b, members in enumerate(buckets):
        bucket_of[members] = b
    bidx = bucket_of[cls]
    k_b = np.stack([np.cumsum(bidx == b, dtype=np.int64) for b in range(len(buckets))], axis=1)
    singleton = np.array([len(b) == 1 for b in buckets])
    return Stream(top, int(label), sel, buckets, k_a, k_b, singleton)


# ---------------------------------------------------------------------------------------------- decisions

@dataclass
class Outcome:
    """Samples used (estimation only; forward passes add ``n0``), the certified and the refuted radii."""

    n: int
    certified: Dict[float, bool]
    refuted: Dict[float, bool] = field(default_factory=dict)


def first_true(mask: np.ndarray) -> int:
    """Index of the first True along axis 0 (``len(mask)`` when none)."""
    if mask.size == 0:
        return 0
    i = int(np.argmax(mask))
    return i if mask[i] else len(mask)


def decide(looks: np.ndarray, first_cert: Sequence[int], first_ref: Sequence[int],
           first_fut: Optional[Sequence[int]] = None, radii=RADII) -> Outcome:
    """Stop when every radius is decided (first certification, refutation or futility look); decisions are kept."""
    J = len(looks)
    fut = first_fut if first_fut is not None else [J] * len(radii)
    when = [min(c, r, f) for c, r, f in zip(first_cert, first_ref, fut)]
    stop = max(when)
    n = int(looks[-1]) if stop >= J else int(looks[stop])
    cert = {float(r): bool(c < J and c <= min(rf, f)) for r, c, rf, f in zip(radii, first_cert, first_ref, fut)}
    ref = {float(r): bool(rf < J and rf < min(c, f)) for r, c, rf, f in zip(radii, first_cert, first_ref, fut)}
    return Outcome(n, cert, ref)


def _probit(p):
    with np.errstate(divide="ignore"):
        return special.ndtri(np.asarray(p, dtype=float))


def radius_bounds(kind: str, sigma: float, lo_a, hi_a, up_b=None, lo_b=None):
    """``(lower, upper)`` radius bounds from CS ends: Rmono ``sigma Phi^-1(L_A)``; R2 ``sigma/2 (Phi^-1(L_A) -
    Phi^-1(max U_b))`` (upper: ``Phi^-1(U_A) - Phi^-1(max of singleton L_b)``)."""
    if kind == "Rmono":
        low = sigma * _probit(lo_a)
        low = np.where(np.asarray(lo_a) > 0.5, low, -np.inf)
        return low, sigma * _probit(hi_a)
    low = 0.5 * sigma * (_probit(lo_a) - _probit(up_b))
    upp = 0.5 * sigma * (_probit(hi_a) - _probit(lo_b))
    return low, upp


def decide_from_bounds(looks, low, upp, radii=RADII, fut=None) -> Outcome:
    """Decisions from radius bounds at each look: certified once ``low > r``, refuted once ``upp < r``."""
    fc = [first_true(low > r) for r in radii]
    fr = [first_true(upp < r) for r in radii]
    ff = None if fut is None else [first_true(fut[:, i]) for i in range(len(radii))]
    return decide(np.asarray(looks), fc, fr, ff, radii)


def decide_chunked(looks, bounds_fn, radii=RADII, chunk: int = 64) -> Outcome:
    """:func:`decide_from_bounds` evaluated on successive chunks of looks, stopping once every radius is decided.

    ``bounds_fn(looks_chunk) -> (low, upp, fut or None)``.  Same decisions as evaluating every look (decisions
    only depend on the first crossing), at a cost proportional to the stopping time."""
    looks = np.asarray(looks)
    J = len(looks)
    fc, fr, ff = [J] * len(radii), [J] * len(radii), [J] * len(radii)
    for start in range(0, J, chunk):
        sl = looks[start:start + chunk]
        low, upp, fut = bounds_fn(sl)
        for i, r in enumerate(radii):
            if fc[i] == J:
                j = first_true(low > r)
                fc[i] = start + j if j < len(sl) else J
            if fr[i] == J:
                j = first_true(upp < r)
                fr[i] = start + j if j < len(sl) else J
            if fut is not None and ff[i] == J:
                j = first_true(fut[:, i])
                ff[i] = start + j if j < len(sl) else J
        if all(min(a, b, c) < J for a, b, c in zip(fc, fr, ff)):
            break
    return decide(looks, fc, fr, ff, radii)


def _counts_at(s: Stream, looks):
    idx = np.asarray(looks) - 1
    return s.k_a[idx], s.k_b[idx]


def _max_singleton_lower(lo_b, singleton):
    if not np.any(singleton):
        return np.zeros(lo_b.shape[0])
    return np.max(lo_b[:, singleton], axis=1)


# ----------------------------------------------------------------------------- CS families (two-sided, joint)

def cp_cs(k, t, level_per_side):
    """Clopper-Pearson lower and upper ends, each at ``level_per_side`` (arrays broadcast)."""
    return (clopper_pearson(k, t, level_per_side, side="lower"), clopper_pearson(k, t, level_per_side, side="upper"))


#: alternatives of the betting baseline's constant bets (module docstring)
BET_Q = np.concatenate([2.0 ** -np.arange(1, 25), 1.0 - 2.0 ** -np.arange(1, 25)])
_BET_MARGIN = 1e-9
_LQ, _L1Q = np.log(BET_Q), np.log1p(-BET_Q)


@numba.njit(cache=False)
def _bet_logw(k, t, c, lq, l1q):
    """``log W_t(c) = log mean_q (q/c)^k ((1-q)/(1-c))^(t-k)`` (log-sum-exp over the alternatives; ``lq = log q``,
    ``l1q = log(1 - q)``)."""
    lc = math.log(c) if c > 0 else -math.inf
    l1c = math.log1p(-c) if c < 1 else -math.inf
    m = lq.shape[0]
    best = -math.inf
    vals = np.empty(m)
    for j in range(m):
        v = 0.0
        if k > 0:
            v += k * (lq[j] - lc)
        if t - k > 0:
            v += (t - k) * (l1q[j] - l1c)
        vals[j] = v
        if v > best:
            best = v
    if not math.isfinite(best):
        return best
    acc = 0.0
    for j in range(m):
        acc += math.exp(vals[j] - best)
    return best + math.log(acc / m)


def bet_log_wealth(k, t, c):
    """``log W_t(c)`` of the uniform mixture of constant-bet wealths ``prod (1 + lambda_q (X_i - c))`` over
    ``q in BET_Q`` (``lambda_q = (q - c) / (c (1 - c))``): ``log mean_q (q/c)^k ((1-q)/(1-c))^(t-k)``."""
    k, t, c = np.broadcast_arrays(np.asarray(k, float), np.asarray(t, float), np.asarray(c, float))
    out = np.empty(k.shape)
    flat = out.reshape(-1)
    for i, (a, b, cc) in enumerate(zip(k.ravel(), t.ravel(), c.ravel())):
        flat[i] = _bet_logw(a, b, cc, _LQ, _L1Q)
    return out


@numba.njit(cache=False)
def _bet_ends(k, t, thr, lq, l1q, lo, hi):
    for i in range(k.shape[0]):
        ph = k[i] / t[i]
        if k[i] == 0:
            lo[i] = 0.0
        else:
            a, b = 0.0, ph  # a rejected (or 0), b inside
            for _ in range(42):
                mid = 0.5 * (a + b)
                if _bet_logw(k[i], t[i], mid, lq, l1q) >= thr:
                    a = mid
                else:
                    b = mid
            lo[i] = a
        if k[i] == t[i]:
            hi[i] = 1.0
        else:
            a, b = ph, 1.0  # a inside, b rejected (or 1)
            for _ in range(42):
                mid = 0.5 * (a + b)
                if _bet_logw(k[i], t[i], mid, lq, l1q) >= thr:
                    b = mid
                else:
                    a = mid
            hi[i] = b


def bet_cs(k, t, alpha):
    """Ends of ``{c : W_t(c) < 1/alpha}`` (``log W`` is convex in ``c`` and ``<= 0`` at ``k/t``: an interval), by
    bisection that always keeps a rejected point outside (rounding only widens the set); arrays broadcast."""
    k, t = np.broadcast_arrays(np.asarray(k, float), np.asarray(t, float))
    thr = -math.log(alpha) + _BET_MARGIN * (1 - math.log(alpha))
    kf, tf = np.ascontiguousarray(k.ravel()), np.ascontiguousarray(t.ravel())
    lo, hi = np.empty_like(kf), np.empty_like(kf)
    _bet_ends(kf, tf, thr, _LQ, _L1Q, lo, hi)
    return lo.reshape(k.shape), hi.reshape(k.shape)


@numba.njit(cache=False)
def _bet_table(c, max_n, thr, lq, l1q, cert, ref):
    for t in range(1, max_n + 1):
        # certify: smallest k > c t rejected (t + 1: none)
        lo = int(math.floor(c * t)) + 1
        if lo > t or _bet_logw(t, t, c, lq, l1q) < thr:
            cert[t] = t + 1
        else:
            hi = t
            while lo < hi:
                mid = (lo + hi) // 2
                if _bet_logw(mid, t, c, lq, l1q) >= thr:
                    hi = mid
                else:
                    lo = mid + 1
            cert[t] = hi
        # refute: largest k < c t rejected (-1: none)
        top = int(math.ceil(c * t)) - 1
        if top < 0 or _bet_logw(0.0, t, c, lq, l1q) < thr:
            ref[t] = -1
        else:
            lo = 0
            hi = top
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if _bet_logw(mid, t, c, lq, l1q) >= thr:
                    lo = mid
                else:
                    hi = mid - 1
            ref[t] = lo
    cert[0] = 1
    ref[0] = -1


def bet_threshold_table(c: float, max_n: int, alpha: float):
    """Per-sample thresholds of the betting baseline at boundary ``c``: smallest ``k > c t`` with
    ``W_t(c) >= 1/alpha`` (``t + 1``: none) and largest ``k < c t`` (``-1``: none).  ``log W`` is convex in ``k``
    (a log-sum-exp of linear functions) and ``<= 0`` at ``k = c t``, so bisection applies."""
    thr = -math.log(alpha) + _BET_MARGIN * (1 - math.log(alpha))
    cert = np.empty(max_n + 1, dtype=np.int64)
    ref = np.empty(max_n + 1, dtype=np.int64)
    _bet_table(float(c), int(max_n), thr, _LQ, _L1Q, cert, ref)
    return cert, ref


# -------------------------------------------------------------------------------------------------- methods

def fixed_n_cohen(s: Stream, sigma: float, kind: str, alpha: float = ALPHA, n: int = N_FIXED) -> Outcome:
    """Cohen et al. (2019) CERTIFY at fixed ``n``: one-sided Clopper-Pearson lower bound at alpha (Rmono), or
    ``p_A`` at alpha/2 and each bucket upper at alpha/(2K) (R2)."""
    ka, kb = _counts_at(s, [n])
    if kind == "Rmono":
        low, _ = radius_bounds("Rmono", sigma, clopper_pearson(ka, n, alpha), np.ones(1))
    else:
        K = kb.shape[1]
        ub = np.max(clopper_pearson(kb, n, alpha / (2 * K), side="upper"), axis=1)
        low, _ = radius_bounds("R2", sigma, clopper_pearson(ka, n, alpha / 2), None, ub, np.zeros(1))
    return Outcome(n, {float(r): bool(low[0] > r) for r in RADII})


def _ub_rmono_r2(s, sigma, kind, looks, cs_a, cs_b):
    """Radius bounds at ``looks`` from CS families ``cs_a(k, t)`` (top class) and ``cs_b(k, t, K)`` (buckets)."""
    ka, kb = _counts_at(s, looks)
    t = np.asarray(looks)
    if kind == "Rmono":
        lo, hi = cs_a(ka, t, 1)
        return radius_bounds("Rmono", sigma, lo, hi)
    K = kb.shape[1]
    lo, hi = cs_a(ka, t, 2)
    lob, hib = cs_b(kb, t[:, None], K)
    return radius_bounds("R2", sigma, lo, hi, np.max(hib, axis=1), _max_singleton_lower(lob, s.singleton))


def voracek_union(s: Stream, sigma: float, kind: str, alpha: float = ALPHA, max_n: int = N_FIXED,
                  first: int = 100) -> Outcome:
    """Union-bound CS (Voracek 2024): Clopper-Pearson at looks ``first * 2^j`` (and ``max_n``), look ``j`` at
    ``alpha 2^-(j+1)``, half per side; for R2 that alpha is further split alpha/2 (top) and alpha/(2K) per bucket."""
    looks = []
    t = first
    while t < max_n:
        looks.append(t)
        t *= 2
    looks.append(max_n)
    looks = np.asarray(looks)
    lev = alpha * 2.0 ** -(np.arange(len(looks)) + 1)

    def cs_a(k, t, share):
        return cp_cs(k, t, lev / share / 2)

    def cs_b(k, t, K):
        return cp_cs(k, t, (lev / (2 * K) / 2)[:, None])

    low, upp = _ub_rmono_r2(s, sigma, kind, looks, cs_a, cs_b)
    return decide_from_bounds(looks, low, upp)


def horvath_staged(s: Stream, sigma: float, kind: str, alpha: float = ALPHA, stages=HORVATH_STAGES) -> Outcome:
    """Horvath et al. (2022) adaptive sampling: cumulative stages, Clopper-Pearson at alpha/S per side."""
    looks = np.asarray(stages)
    S = len(looks)

    def cs_a(k, t, share):
        return cp_cs(k, t, alpha / share / S)

    def cs_b(k, t, K):
        return cp_cs(k, t, alpha / (2 * K) / S)

    low, upp = _ub_rmono_r2(s, sigma, kind, looks, cs_a, cs_b)
    return decide_from_bounds(looks, low, upp)


def iss_sample_size(pilot_top: int, n0: int, sigma: float, alpha: float = ALPHA, budget: int = N_FIXED,
                    kappa: float = ISS_KAPPA) -> int:
    """Chen et al. (2022) input-specific sample size: the smallest ``n <= budget`` with
    ``R(n) >= R(budget) - kappa``, ``R(n) = sigma Phi^-1(CP_lower(p_hat n, n, alpha))`` at the pilot estimate
    ``p_hat`` (bisection over n; ``R`` is nondecreasing in n at fixed ``p_hat``)."""
    ph = pilot_top / n0

    def rad(n):
        return sigma * float(_probit(clopper_pearson(int(math.floor(ph * n)), n, alpha)))

    target = rad(budget) - kappa
    if not np.isfinite(target):
        return budget
    lo, hi = 1, budget
    while lo < hi:
        mid = (lo + hi) // 2
        if rad(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def chen_iss(s: Stream, sigma: float, kind: str, alpha: float = ALPHA, budget: int = N_FIXED,
             kappa: float = ISS_KAPPA) -> Outcome:
    """Input-specific sampling (Chen et al. 2022): ``n`` from the pilot (selection sample), then fixed-n CP."""
    n = iss_sample_size(int(s.selection[s.top]), int(s.selection.sum()), sigma, alpha, budget, kappa)
    return fixed_n_cohen(s, sigma, kind, alpha, n)


class BetTables:
    """Per-sample thresholds of the betting baseline for each radius (Rmono), built once per sigma."""

    def __init__(self, sigma, max_n=N_FIXED, alpha=ALPHA):
        self.max_n = max_n
        self.tabs = {r: bet_threshold_table(float(special.ndtr(r / sigma)), max_n, alpha) for r in RADII}


def voracek_betting(s: Stream, sigma: float, kind: str, tables: Optional[BetTables] = None, alpha: float = ALPHA,
                    max_n: int = N_FIXED, grid=None) -> Outcome:
    """Betting CS with precomputed thresholds (Voracek 2024; our constant-bet mixture, module docstring).

    Rmono: read after every sample through the integer tables.  R2: the CS ends on the look grid of ours."""
    if kind == "Rmono":
        tables = tables or BetTables(sigma, max_n, alpha)
        k = s.k_a[:max_n]
        looks = np.arange(1, max_n + 1)
        fc = [first_true(k >= tables.tabs[r][0][1:]) for r in RADII]
        fr = [first_true(k <= tables.tabs[r][1][1:]) for r in RADII]
        return decide(looks, fc, fr)
    looks = grid if grid is not None else look_grid(max_n)

    def cs_a(k, t, share):
        return bet_cs(k, t, alpha / share)

    def cs_b(k, t, K):
        return bet_cs(k, np.broadcast_to(t, k.shape), alpha / (2 * K))

    return decide_chunked(looks, lambda lk: (*_ub_rmono_r2(s, sigma, kind, lk, cs_a, cs_b), None))


def look_grid(max_n: int, dense: int = 500, ratio: float = 1.01) -> np.ndarray:
    """Every sample up to ``dense``, then every ``ratio - 1`` relative step, and ``max_n``."""
    g = [np.arange(1, min(dense, max_n) + 1)]
    t = float(dense)
    tail = []
    while t < max_n:
        t = max(t * ratio, t + 1)
        tail.append(min(int(math.ceil(t)), max_n))
    return np.unique(np.concatenate(g + [np.asarray(tail, dtype=np.int64)]))


class OurTables:
    """Mixture-CS threshold tables of ours (Rmono), one per radius, built once per sigma and ``max_n``."""

    def __init__(self, sigma, max_n=N_FIXED, alpha=ALPHA, prior=TOP_PRIOR, final_share=0.0):
        self.max_n = max_n
        self.final_share = final_share
        self.tabs = {r: mixture_threshold_table(float(special.ndtr(r / sigma)), max_n, alpha, prior, final_share)
                     for r in RADII}


def ours(s: Stream, sigma: float, kind: str, tables: Optional[OurTables] = None, alpha: float = ALPHA,
         max_n: int = N_FIXED, futility_z: Optional[float] = 2.0, grid=None, final_share: float = 0.0) -> Outcome:
    """The beta-binomial mixture CS read after every sample (tables) with the futility and look-ahead rules (Rmono);
    R2 from two one-sided mixture CSs on the dense look grid, futility by projecting the counts to ``max_n``.

    ``final_share = s > 0``: the CSs run at ``(1 - s)`` of their alpha and a fixed-n Clopper-Pearson look at
    ``max_n`` gets the rest (union bound; ``confbounds.seqmargin.mixture_threshold_table``)."""
    if kind == "Rmono":
        tables = tables or OurTables(sigma, max_n, alpha, final_share=final_share)
        k = s.k_a[:max_n]
        t = np.arange(1, max_n + 1)
        looks = t
        fc, fr, ff = [], [], []
        for r in RADII:
            tab = tables.tabs[r]
            fc.append(first_true(k >= tab.certify[1:]))
            fr.append(first_true(k <= tab.refute[1:]))
            fut = k <= tab.unreachable[1:]
            if futility_z is not None:
                fut = fut | futile(k, t, int(tab.certify[max_n]), max_n, futility_z)
            ff.append(first_true(fut))
        return decide(looks, fc, fr, ff)
    looks = grid if grid is not None else look_grid(max_n)
    return decide_chunked(looks, lambda lk: _ours_r2_bounds(s, sigma, lk, alpha, max_n, futility_z, final_share))


def _final_r2_ends(ka, kb, max_n, alpha, K, final_share):
    """Clopper-Pearson ends at ``max_n`` of the final look (``final_share`` of alpha, split as the CSs are)."""
    lo = clopper_pearson(ka, max_n, final_share * alpha / 2)
    hi = np.max(clopper_pearson(kb, max_n, final_share * alpha / (2 * K), side="upper"), axis=-1)
    return lo, hi


def _ours_r2_bounds(s: Stream, sigma, looks, alpha, max_n, futility_z, final_share=0.0):
    ka, kb = _counts_at(s, looks)
    K = kb.shape[1]
    t = np.asarray(looks, dtype=np.int64)
    a_cs = alpha * (1.0 - final_share)
    lo_a, hi_a = beta_binomial_cs(ka, t, a_cs / 2, side="two-sided", prior=TOP_PRIOR)
    lo_b, hi_b = beta_binomial_cs(kb, t[:, None], a_cs / (2 * K), side="two-sided", prior=BUCKET_PRIOR)
    if final_share > 0 and t[-1] == max_n:
        lo_f, hi_f = _final_r2_ends(ka[-1], kb[-1], max_n, alpha, K, final_share)
        lo_a = lo_a.copy()
        hi_b = hi_b.copy()
        lo_a[-1] = max(lo_a[-1], lo_f)
        hi_b[-1] = np.minimum(hi_b[-1], hi_f)
    low, upp = radius_bounds("R2", sigma, lo_a, hi_a, np.max(hi_b, axis=1), _max_singleton_lower(lo_b, s.singleton))
    fut = None
    if futility_z is not None:
        # heuristic projection (validity does not depend on it): optimistic rates to max_n, bound at max_n
        tf = t.astype(float)
        pa = ka / tf
        pa_t = np.minimum(1.0, pa + futility_z * np.sqrt(np.maximum(pa * (1 - pa), 1 / tf) / tf))
        ka_f = np.minimum(max_n, np.floor(ka + pa_t * (max_n - tf))).astype(np.int64)
        pb = kb / tf[:, None]
        pb_t = np.maximum(0.0, pb - futility_z * np.sqrt(np.maximum(pb * (1 - pb), 1 / tf[:, None]) / tf[:, None]))
        kb_f = np.minimum(max_n - ka_f[:, None], np.ceil(kb + pb_t * (max_n - tf[:, None]))).astype(np.int64)
        kb_f = np.maximum(kb_f, 0)
        lo_f = beta_binomial_cs(ka_f, max_n, a_cs / 2, side="lower", prior=TOP_PRIOR)
        hi_f = np.max(beta_binomial_cs(kb_f, max_n, a_cs / (2 * K), side="upper", prior=BUCKET_PRIOR), axis=1)
        if final_share > 0:
            lo_c, hi_c = _final_r2_ends(ka_f, kb_f, max_n, alpha, K, final_share)
            lo_f, hi_f = np.maximum(lo_f, lo_c), np.minimum(hi_f, hi_c)
        low_f, _ = radius_bounds("R2", sigma, lo_f, np.ones_like(lo_f), hi_f, np.zeros_like(lo_f))
        fut = np.stack([low_f <= r for r in RADII], axis=1)
    return low, upp, fut


# ---------------------------------------------------------------------------------------------- the driver

METHODS = ("fixed-n Cohen", "Voracek union-bound CS", "Voracek betting", "Horvath staged", "Chen ISS", "ours")


def run_sigma(sigma: float, inputs: Optional[int], max_n_ours: Sequence[int], progress: bool = True,
              max_n_final: Sequence[int] = (), final_share: float = 0.5, final_z: Sequence[float] = (2.0,)) -> dict:
    probs, labels, rec = load_probs(sigma)
    if inputs is not None:
        probs, labels = probs[:inputs], labels[:inputs]
    N = len(labels)
    length = max([N_FIXED, HORVATH_STAGES[-1]] + list(max_n_ours) + list(max_n_final))
    t0 = time.perf_counter()
    our_tabs = {mn: OurTables(sigma, mn) for mn in max_n_ours}
    fin_tabs = {mn: OurTables(sigma, mn, final_share=final_share) for mn in max_n_final}
    bet_tabs = BetTables(sigma)
    grids = {mn: look_grid(mn) for mn in set(max_n_ours) | set(max_n_final) | {N_FIXED}}
    t_tables = time.perf_counter() - t0
    fin_name = lambda mn, z: f"ours+final CP (max_n={mn}, z={z:g})"  # noqa: E731
    names = ([m for m in METHODS if m != "ours"] + [f"ours (max_n={mn})" for mn in max_n_ours]
             + [fin_name(mn, z) for mn in max_n_final for z in final_z])
    res = {name: {kind: {"n": [], "cert": {r: [] for r in RADII}} for kind in ("Rmono", "R2")} for name in names}
    correct = []
    for i in range(N):
        s = make_stream(probs[i], labels[i], i, length)
        correct.append(s.top == s.label)
        for kind in ("Rmono", "R2"):
            outs = {
                "fixed-n Cohen": fixed_n_cohen(s, sigma, kind),
                "Voracek union-bound CS": voracek_union(s, sigma, kind),
                "Voracek betting": voracek_betting(s, sigma, kind, bet_tabs, grid=grids[N_FIXED]),
                "Horvath staged": horvath_staged(s, sigma, kind),
                "Chen ISS": chen_iss(s, sigma, kind),
            }
            for mn in max_n_ours:
                outs[f"ours (max_n={mn})"] = ours(s, sigma, kind, our_tabs[mn], max_n=mn, grid=grids[mn])
            for mn in max_n_final:
                for z in final_z:
                    outs[fin_name(mn, z)] = ours(s, sigma, kind, fin_tabs[mn], max_n=mn, grid=grids[mn],
                                                 final_share=final_share, futility_z=z)
            for name, o in outs.items():
                res[name][kind]["n"].append(o.n)
                for r in RADII:
                    res[name][kind]["cert"][r].append(o.certified[float(r)])
        if progress:
            print(f"\rsigma={sigma} {i + 1}/{N} ({time.perf_counter() - t0:.0f} s)", end="", file=sys.stderr)
    if progress:
        print(file=sys.stderr)
    correct = np.asarray(correct)
    p_top = [float(probs[i][make_stream(probs[i], labels[i], i, 1).top]) for i in range(N)]
    thr = special.ndtr(np.asarray(RADII) / sigma)
    dist = np.min(np.abs(np.asarray(p_top)[:, None] - thr[None, :]), axis=1)
    table = {}
    for name in names:
        table[name] = {}
        for kind in ("Rmono", "R2"):
            n = np.asarray(res[name][kind]["n"])
            passes = int(n.sum() + N * N0)
            acc = {r: float(np.mean(correct & np.asarray(res[name][kind]["cert"][r]))) for r in RADII}
            table[name][kind] = {"forward_passes": passes, "median_per_input": float(np.median(n) + N0),
                                 "max_per_input": int(n.max() + N0), "certified_accuracy": acc,
                                 "estimation_samples_per_input": n.tolist()}
    for kind in ("Rmono", "R2"):
        ref = table["fixed-n Cohen"][kind]
        for name in names:
            row = table[name][kind]
            row["x_fewer_than_fixed_n"] = ref["forward_passes"] / row["forward_passes"]
            row["accuracy_difference_pp"] = {r: 100 * (row["certified_accuracy"][r] - ref["certified_accuracy"][r])
                                             for r in RADII}
            row["within_1pp_of_fixed_n"] = bool(all(d >= -1.0 - 1e-9 for d in row["accuracy_difference_pp"].values()))
    return {"sigma": sigma, "inputs": N, "prob_n": rec["n"], "p_top": p_top,
            "distance_to_nearest_threshold": dist.tolist(), "clean_accuracy_selection": float(correct.mean()),
            "tables_s": t_tables, "wall_s": time.perf_counter() - t0, "methods": table}


def print_table(out: dict) -> None:
    for kind in ("Rmono", "R2"):
        print(f"\nsigma = {out['sigma']}, {kind} ({out['inputs']} inputs, alpha = {ALPHA})")
        head = f"{'method':28s} {'passes':>11s} {'x fewer':>8s} " + " ".join(f"r={r:<5g}" for r in RADII)
        print(head + "  within 1pp")
        for name, row in out["methods"].items():
            r_ = row[kind]
            ca = {float(k): v for k, v in r_["certified_accuracy"].items()}  # JSON keys are strings
            acc = " ".join(f"{100 * ca[float(r)]:7.1f}" for r in RADII)
            print(f"{name:28s} {r_['forward_passes']:11d} {r_['x_fewer_than_fixed_n']:8.2f} {acc}  "
                  f"{'yes' if r_['within_1pp_of_fixed_n'] else 'no'}")


def markdown_tables(result: dict) -> str:
    """The comparison as Markdown (one table per sigma and radius kind), from the merged JSON."""
    lines = []
    for sig, out in result["sigmas"].items():
        for kind in ("Rmono", "R2"):
            lines.append(f"\n**sigma = {sig}, {kind}** ({out['inputs']} inputs, alpha = {ALPHA}; fixed n = "
                         f"{N_FIXED:,} + n0 = {N0})\n")
            lines.append("| method | forward passes | x fewer than fixed n | " +
                         " | ".join(f"r = {r:g}" for r in RADII) + " | within 1 pt of fixed n |")
            lines.append("|---|---:|---:|" + "---:|" * len(RADII) + "---|")
            for name, row in out["methods"].items():
                r_ = row[kind]
                ca = {float(k): v for k, v in r_["certified_accuracy"].items()}
                lines.append(f"| {name} | {r_['forward_passes']:,} | {r_['x_fewer_than_fixed_n']:.2f} | " +
                             " | ".join(f"{100 * ca[float(r)]:.1f}" for r in RADII) +
                             f" | {'yes' if r_['within_1pp_of_fixed_n'] else 'no'} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--estimate", action="store_true", help="(re)estimate the class probabilities with the ONNX model")
    ap.add_argument("--prob-n", type=int, default=100_000)
    ap.add_argument("--sigma", type=float, nargs="+", default=list(SIGMAS))
    ap.add_argument("--inputs", type=int, default=200)
    ap.add_argument("--max-n", type=int, nargs="+", default=[100_000, 200_000], help="max_n of ours (one run each)")
    ap.add_argument("--final-max-n", type=int, nargs="*", default=[100_000, 150_000],
                    help="max_n of ours with a final Clopper-Pearson look (one run each)")
    ap.add_argument("--final-share", type=float, default=0.5, help="share of alpha of the final look")
    ap.add_argument("--final-z", type=float, nargs="+", default=[2.0, 3.0],
                    help="futility z of the final-look variants (one run each; a heuristic)")
    ap.add_argument("--markdown", action="store_true", help="with --merge: also print the Markdown tables")
    ap.add_argument("--merge", action="store_true", help="only merge the per-sigma JSON files into --out")
    ap.add_argument("--out", default=os.path.join(RESULTS, "frontier.json"))
    args = ap.parse_args(argv)
    if args.estimate:
        for s in args.sigma:
            estimate_probs(s, args.inputs, args.prob_n)
        return
    part = lambda s: os.path.join(RESULTS, f"frontier_sigma{s:.2f}.json")  # noqa: E731
    if not args.merge:
        for s in args.sigma:
            load0 = list(os.getloadavg())
            out = run_sigma(s, args.inputs, args.max_n, max_n_final=args.final_max_n, final_share=args.final_share,
                            final_z=args.final_z)
            out["machine"] = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                              "python": platform.python_version(), "load_average_at_start": load0,
                              "load_average_at_end": list(os.getloadavg())}
            out["config"] = {"alpha": ALPHA, "radii": RADII, "n0": N0, "n_fixed": N_FIXED,
                             "stream_seed": STREAM_SEED, "horvath_stages": HORVATH_STAGES, "iss_kappa": ISS_KAPPA,
                             "max_n_ours": args.max_n, "max_n_ours_final": args.final_max_n,
                             "final_share": args.final_share, "final_z": args.final_z, "futility_z_ours": 2.0,
                             "inputs": args.inputs, "r2_look_grid": "1..500, then +1 %",
                             "bet_alternatives": "2^-j and 1 - 2^-j, j = 1..24"}
            with open(part(s), "w") as fh:
                json.dump(out, fh, indent=1, default=str)
            print_table(out)
    result = {"sigmas": {}}
    for s in SIGMAS:
        if os.path.exists(part(s)):
            with open(part(s)) as fh:
                result["sigmas"][f"{s:g}"] = json.load(fh)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    if args.merge:
        for out in result["sigmas"].values():
            print_table(out)
        if args.markdown:
            print(markdown_tables(result))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
