"""Product upper bound (PUB) of the l2 Lipschitz constant of a torch model.

For a composition ``f = f_K o ... o f_1`` the Lipschitz constant satisfies
``Lip(f) <= prod_k Lip(f_k)``; a residual block ``x + g(x)`` satisfies
``Lip <= 1 + Lip(g)``.  :func:`product_upper_bound` walks an ``nn.Sequential``
tree, tracks the per-sample shape through it and multiplies *rigorous* upper
bounds of the per-layer l2 operator norms / Lipschitz constants:

* ``Linear``: exact spectral norm by SVD (float64).
* ``Conv1d/Conv2d/Conv3d`` on the given input shape: the minimum of

  (a) the exact SVD norm of the materialised operator (the convolution applied
      to the identity basis) when it is small (``dense_limit``), and
  (b) the Fourier bound of Sedghi, Gupta & Long (ICLR 2019): a padded, strided
      convolution equals ``S o R o C o P`` where ``P`` pads (an isometry for
      zero padding; norm ``sqrt(max copies)`` for reflect/replicate/circular
      padding, computed exactly), ``C`` is the *circular* correlation on the
      padded domain, ``R`` keeps the valid outputs (no wrap-around occurs for
      them, so ``R o C`` equals the valid convolution) and ``S`` subsamples by
      the stride.  ``R`` and ``S`` are coordinate restrictions (norm <= 1) and
      the norm of ``C`` is exactly ``max_f ||K_hat(f)||_2`` over the DFT
      frequencies ``f`` of the (dilated, zero-embedded) kernel, each
      ``K_hat(f)`` a ``C_out x C_in`` matrix (block-diagonal over groups).

* ``BatchNorm*`` in eval mode: ``max |gamma| / sqrt(running_var + eps)``.
* Activations: analytic constants (``Sigmoid`` 1/4, ``GELU``
  ``(1 + erf(1))/2 + exp(-1)/sqrt(pi) ~ 1.12890``, see :data:`ACTIVATION_LIPSCHITZ`).
* ``MaxPool``: ``sqrt(max number of windows containing one input)`` (each output
  moves by at most the l_inf change of its window); ``AvgPool``/``AdaptiveAvgPool``:
  Schur test ``sqrt(||A||_1 ||A||_inf)`` for the non-negative pooling matrix,
  or the exact SVD norm when small.
* ``Flatten``, ``Unflatten``, ``Identity``, ``Dropout`` (eval mode): 1.
* :class:`Residual` ``(f)``: ``1 + Lip(f)``.

**Never a power-iteration estimate.**  Power iteration converges to the spectral
norm from *below*; :func:`power_iteration_estimate` is offered only as a
comparison (a lower estimate, labelled as such).  (The AISTATS 2025 code's
convolution iteration returns a ratio <= 1 instead of the norm, theory §8.11; not
reproduced here.)

**Rounding (theory §2.4).**  All norms are computed in float64 from the float32
(or float64) weights, which converts exactly.  Each computed factor is
multiplied by ``1 + rel_margin`` (default :data:`DEFAULT_REL_MARGIN` = 1e-6),
which dominates the backward error of LAPACK's SVD (``O(n eps_64)`` relative to
the norm, ~1e-12 for n <= 10^4) and the product's rounding; the Fourier bound
additionally adds an explicit FFT error term ``10 log2(N) eps_64 sqrt(N) ||W||_F``
(normwise FFT stability), so it stays valid even when the kernel's entries
cancel.  The bound is for the exact-arithmetic function defined by the stored
weights; the float32 rounding of the model's own forward pass is outside its
scope (see Voráček & Hein on sound smoothing in floating point).

References
----------
Szegedy et al., "Intriguing properties of neural networks", ICLR 2014 (product bound).
Sedghi, Gupta, Long, "The singular values of convolutional layers", ICLR 2019.
Delattre, Barthélemy, Araujo, Allauzen, "Efficient bound of Lipschitz constant for
convolutional layers by Gram iteration", ICML 2023 (alternative; not used).
Gao & Pavel, "On the properties of the softmax function", 2017 (softmax is 1-Lipschitz).
Schur test: e.g. Horn & Johnson, Matrix Analysis, 2nd ed., Thm 5.6.9 / ``||A||_2^2 <= ||A||_1 ||A||_inf``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Residual",
    "LayerFactor",
    "LipschitzBound",
    "product_upper_bound",
    "lipschitz_bound",
    "power_iteration_estimate",
    "conv_fourier_bound",
    "dense_operator_matrix",
    "ACTIVATION_LIPSCHITZ",
    "GELU_LIPSCHITZ",
    "DEFAULT_REL_MARGIN",
]

DEFAULT_REL_MARGIN = 1e-6
_EPS64 = float(np.finfo(np.float64).eps)

#: Lipschitz constant of exact GELU ``x Phi(x)``: ``max_x Phi(x) + x phi(x)`` is attained
#: at ``x = sqrt(2)`` (second derivative ``phi(x)(2 - x^2)``), value ``(1 + erf(1))/2 + e^-1/sqrt(pi)``.
GELU_LIPSCHITZ = 0.5 * (1.0 + math.erf(1.0)) + math.exp(-1.0) / math.sqrt(math.pi)

#: Lipschitz constants of parameter-free activations (sup |derivative|).  Entries marked
#: "grid" were maximised on a 1e-5 grid over [-10, 10] in float64 and rounded *up* by
#: >= 5e-7 (the grid error near a smooth maximum is O(h^2) ~ 1e-10); tests re-check them.
ACTIVATION_LIPSCHITZ = {
    "ReLU": 1.0,
    "ReLU6": 1.0,
    "Hardtanh": 1.0,
    "Tanh": 1.0,
    "Softsign": 1.0,  # 1/(1+|x|)^2 <= 1
    "LogSigmoid": 1.0,  # sigmoid(-x) <= 1
    "Sigmoid": 0.25,  # sigmoid' = s(1-s) <= 1/4
    "Hardsigmoid": 1.0 / 6.0,  # slope 1/6 on [-3, 3]
    "Hardswish": 1.5,  # (2x+3)/6 on (-3, 3) has sup 1.5
    "SiLU": 1.09984,  # grid max 1.0998393201 at x ~ 2.3994
    "Mish": 1.08850,  # grid max 1.0884981613 at x ~ 1.4906
    "Identity": 1.0,
    "Flatten": 1.0,
    "Unflatten": 1.0,
}
_GELU_TANH_LIPSCHITZ = 1.12900  # grid max 1.1289930687 at x ~ 1.4185


class Residual(nn.Module):
    """Residual block ``x -> x + f(x)``, bounded by ``1 + Lip(f)``.

    Wrap any supported module (typically an ``nn.Sequential``) whose output has
    the shape of its input.  :func:`product_upper_bound` recognises this class;
    a hand-written module with the same forward is *not* recognised (its
    forward cannot be inspected) and is rejected as unsupported.

    Examples
    --------
    >>> import torch
    >>> blk = Residual(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU()))
    >>> blk(torch.zeros(2, 3)).shape
    torch.Size([2, 3])
    """

    def __init__(self, f: nn.Module):
        super().__init__()
        self.f = f

    def forward(self, x):  # noqa: D401
        return x + self.f(x)


@dataclass
class LayerFactor:
    """One factor of the product bound.

    ``factor`` is a rigorous upper bound of the layer's l2 Lipschitz constant on
    ``in_shape``; ``method`` says how it was obtained; ``estimate`` (optional)
    is a power-iteration *lower estimate* of a linear layer's norm, NOT a bound.
    """

    path: str
    kind: str
    factor: float
    method: str
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]
    estimate: Optional[float] = None
    children: List["LayerFactor"] = field(default_factory=list)


@dataclass
class LipschitzBound:
    """Result of :func:`lipschitz_bound`: ``value = prod(f.factor for f in factors)`` (rounded up)."""

    value: float
    factors: List[LayerFactor]
    input_shape: Tuple[int, ...]
    output_shape: Tuple[int, ...]
    rel_margin: float

    def __float__(self) -> float:
        return self.value

    def table(self) -> str:
        """Human-readable per-layer table."""
        lines = []

        def walk(fs, depth):
            for f in fs:
                est = "" if f.estimate is None else f"  (power-iter estimate, not a bound: {f.estimate:.6g})"
                lines.append(f"{'  ' * depth}{f.path or '<model>'} {f.kind} {f.in_shape}->{f.out_shape}: "
                             f"{f.factor:.6g} [{f.method}]{est}")
                walk(f.children, depth + 1)

        walk(self.factors, 0)
        lines.append(f"product upper bound: {self.value:.6g}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- helpers

def _check_input_shape(input_shape) -> Tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(f"input_shape must be a tuple of positive ints (one input, no batch dim), "
                         f"got {input_shape!r}") from None
    if len(shape) == 0 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1
                                  for s in shape):
        raise ValueError(f"input_shape must be a non-empty tuple of positive ints (one input, no batch dim), "
                         f"got {input_shape!r}")
    return tuple(int(s) for s in shape)


def _up(x: float, rel_margin: float) -> float:
    """Round a computed non-negative upper bound up by the relative margin."""
    return float(x) * (1.0 + rel_margin)


def _run_shape(module: nn.Module, shape: Tuple[int, ...], path: str) -> Tuple[int, ...]:
    """Output shape of ``module`` on one input of ``shape`` (batch of 1), ValueError if it does not fit."""
    p = next(iter(module.parameters()), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    device = p.device if p is not None else torch.device("cpu")
    try:
        with torch.no_grad():
            out = module(torch.zeros((1,) + shape, dtype=dtype, device=device))
    except Exception as exc:  # shape errors come as RuntimeError / IndexError / ValueError
        where = path or "<model>"
        raise ValueError(f"input_shape {shape} does not fit {type(module).__name__} at '{where}': {exc}") from None
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"{type(module).__name__} at '{path}' returns {type(out).__name__}, not a tensor "
                         f"(e.g. return_indices=True is unsupported)")
    if out.shape[0] != 1:
        raise ValueError(f"{type(module).__name__} at '{path}' changed the batch dimension on input_shape {shape}")
    return tuple(out.shape[1:])


def dense_operator_matrix(fn: Callable[[torch.Tensor], torch.Tensor], in_shape: Sequence[int]) -> torch.Tensor:
    """Materialise a linear map as a dense ``(n_out, n_in)`` float64 matrix.

    ``fn`` maps a float64 batch ``(B, *in_shape)`` to ``(B, *out_shape)`` and
    must be linear (no bias).  Column ``j`` is ``fn(e_j)``.
    """
    n_in = int(np.prod(in_shape))
    eye = torch.eye(n_in, dtype=torch.float64).reshape((n_in,) + tuple(in_shape))
    with torch.no_grad():
        out = fn(eye)
    return out.reshape(n_in, -1).T.contiguous()


def _spectral_norm(mat: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(mat.to(torch.float64), ord=2))


# ----------------------------------------------------------------------------- convolutions

def _conv_explicit_padding(conv: nn.modules.conv._ConvNd) -> List[Tuple[int, int]]:
    """(left, right) padding per spatial dim, as torch applies it."""
    nd = len(conv.kernel_size)
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return [(0, 0)] * nd
        # 'same': total d(k-1), left = total // 2 (torch.nn.modules.conv._ConvNd.__init__)
        out = []
        for k, d in zip(conv.kernel_size, conv.dilation):
            tot = d * (k - 1)
            out.append((tot // 2, tot - tot // 2))
        return out
    return [(int(p), int(p)) for p in conv.padding]


def _pad_args(pads: List[Tuple[int, int]]) -> Tuple[int, ...]:
    args: Tuple[int, ...] = ()
    for left, right in reversed(pads):  # F.pad takes the last dim first
        args += (left, right)
    return args


def _pad_copy_factor(mode: str, spatial: Sequence[int], pads: List[Tuple[int, int]]) -> float:
    """Operator norm of the padding map ``P`` (exact): ``sqrt(max_i #copies of input i)``.

    Zero padding copies each input once (an isometry).  For reflect / replicate /
    circular padding, ``P^T P`` is diagonal with the copy counts, and the counts
    are products over the (separable) spatial axes.
    """
    if mode == "zeros":
        return 1.0
    prod = 1
    for n, (left, right) in zip(spatial, pads):
        idx = torch.arange(n, dtype=torch.float64).reshape(1, 1, n)
        padded = F.pad(idx, (left, right), mode=mode).reshape(-1).long()
        prod *= int(torch.bincount(padded, minlength=n).max())
    return math.sqrt(prod)


def _conv_fn(conv: nn.modules.conv._ConvNd, pads) -> Callable[[torch.Tensor], torch.Tensor]:
    nd = len(conv.kernel_size)
    w = conv.weight.detach().to(torch.float64).cpu()
    func = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode

    def fn(x):
        x = F.pad(x, _pad_args(pads), mode=mode) if any(l or r for l, r in pads) else x
        return func(x, w, None, conv.stride, 0, conv.dilation, conv.groups)

    return fn


def conv_fourier_bound(weight: torch.Tensor, padded_spatial: Sequence[int], *, dilation: Sequence[int] = None,
                       stride: Sequence[int] = None, groups: int = 1) -> float:
    """Rigorous upper bound of a valid (unpadded) strided convolution's l2 norm on ``padded_spatial``.

    Unstrided (``stride = 1``): the valid convolution is a restriction of the
    circular correlation on the domain ``padded_spatial`` (no output of the
    valid convolution wraps around, since the dilated kernel extent fits in the
    domain), so its norm is at most that of the circular operator, which is
    exactly ``max_f ||K_hat(f)||_2`` (Sedghi, Gupta, Long, ICLR 2019, main
    theorem), ``K_hat(f)`` the ``C_out x C_in`` DFT of the zero-embedded kernel
    at frequency ``f``.

    Strided (polyphase form): zero-extend the domain ``N`` to ``N' = s
    ceil(N/s)`` (an isometric embedding; valid outputs still do not wrap).  The
    circular strided correlation on ``N'`` is
    ``y[i] = sum_r sum_q k_r[q] x_r[(i + q) mod N'/s]`` with the polyphase
    components ``x_r[j] = x[s j + r]``, ``k_r[q] = k[s q + r]`` (``r`` over the
    ``s_1 s_2 ...`` phases), i.e. a multi-channel circular correlation on the
    domain ``N'/s`` with ``C_in * prod(s)`` input channels, applied to a
    permutation of ``x``.  Its norm is therefore exactly the max over
    frequencies of the ``C_out x (C_in prod(s))`` matrices ``[K_hat_r(f)]_r``,
    at most the unstrided value (striding is a coordinate restriction).

    With ``groups > 1`` the operator is block-diagonal and the norm is the max
    over groups.  Frequencies come from ``rfftn`` (``K_hat(-f) = conj K_hat(f)``
    has the same norm).  An explicit FFT rounding term
    ``10 log2(M) eps sqrt(M) ||W||_F`` (M = number of frequencies' domain size) is
    added; the caller applies the relative margin.

    Examples
    --------
    >>> import torch
    >>> w = torch.zeros(1, 1, 3, 3, dtype=torch.float64); w[0, 0, 1, 1] = 2.0
    >>> round(conv_fourier_bound(w, (6, 6)), 9)
    2.0
    >>> ones = torch.ones(1, 1, 2, 2, dtype=torch.float64)  # sums of disjoint 2x2 blocks: norm sqrt(4)
    >>> round(conv_fourier_bound(ones, (6, 6), stride=(2, 2)), 9), round(conv_fourier_bound(ones, (6, 6)), 9)
    (2.0, 4.0)
    """
    w = weight.detach().to(torch.float64).cpu()
    c_out, c_in_g = w.shape[:2]
    ks = tuple(w.shape[2:])
    nd = len(ks)
    dilation = tuple(int(d) for d in dilation) if dilation is not None else (1,) * nd
    stride = tuple(int(t) for t in stride) if stride is not None else (1,) * nd
    n = tuple(int(s) for s in padded_spatial)
    if len(n) != nd or len(dilation) != nd or len(stride) != nd:
        raise ValueError(f"padded_spatial, dilation and stride must have {nd} entries, got "
                         f"{padded_spatial!r}, {dilation!r}, {stride!r}")
    if min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"stride and dilation must be >= 1, got {stride!r}, {dilation!r}")
    ext = tuple(d * (k - 1) + 1 for k, d in zip(ks, dilation))
    for e, s in zip(ext, n):
        if e > s:
            raise ValueError(f"dilated kernel extent {e} exceeds the domain size {s}")
    if c_out % groups:
        raise ValueError(f"out_channels {c_out} not divisible by groups {groups}")
    # dilated kernel, zero-extended to a multiple of the stride, split into polyphase components
    q = tuple(-(-e // t) for e, t in zip(ext, stride))  # taps per phase
    dil = torch.zeros((c_out, c_in_g) + tuple(qq * t for qq, t in zip(q, stride)), dtype=torch.float64)
    dil[(slice(None), slice(None)) + tuple(slice(0, e, d) for e, d in zip(ext, dilation))] = w
    split = (c_out, c_in_g)
    for qq, t in zip(q, stride):
        split += (qq, t)
    dil = dil.reshape(split)
    perm = (0, 1) + tuple(3 + 2 * i for i in range(nd)) + tuple(2 + 2 * i for i in range(nd))
    phases = int(np.prod(stride))
    poly = dil.permute(perm).reshape((c_out, c_in_g * phases) + q)  # (C_out, C_in_g * phases, *q)
    m = tuple(-(-s // t) for s, t in zip(n, stride))  # circular domain N'/s
    emb = torch.zeros((c_out, c_in_g * phases) + m, dtype=torch.float64)
    emb[(slice(None), slice(None)) + tuple(slice(0, qq) for qq in q)] = poly
    khat = torch.fft.rfftn(emb, dim=tuple(range(2, 2 + nd)))
    khat = khat.reshape(groups, c_out // groups, c_in_g * phases, -1).permute(0, 3, 1, 2)
    val = float(torch.linalg.matrix_norm(khat, ord=2).max())
    m_tot = int(np.prod(m))
    fft_err = 10.0 * (math.log2(m_tot) + 1.0) * _EPS64 * math.sqrt(m_tot) * float(torch.linalg.vector_norm(w))
    return val + fft_err


def _conv_factor(conv, in_shape, out_shape, method, dense_limit, rel_margin):
    nd = len(conv.kernel_size)
    if len(in_shape) != nd + 1 or in_shape[0] != conv.in_channels:
        raise ValueError(f"input_shape {in_shape} does not fit {type(conv).__name__} with in_channels="
                         f"{conv.in_channels} (expected (C={conv.in_channels}, {nd} spatial dims))")
    pads = _conv_explicit_padding(conv)
    spatial = in_shape[1:]
    padded = tuple(s + l + r for s, (l, r) in zip(spatial, pads))
    copy = _pad_copy_factor(conv.padding_mode, spatial, pads)
    fourier = _up(conv_fourier_bound(conv.weight, padded, dilation=conv.dilation, stride=conv.stride,
                                          groups=conv.groups) * copy,
                  rel_margin)
    n_in, n_out = int(np.prod(in_shape)), int(np.prod(out_shape))
    use_dense = method == "dense" or (method == "auto" and max(n_in, n_out) <= dense_limit)
    if use_dense:
        dense = _up(_spectral_norm(dense_operator_matrix(_conv_fn(conv, pads), in_shape)), rel_margin)
        if dense <= fourier:
            return dense, "dense SVD"
    return fourier, "Fourier (circular, padded domain)" + (f" x pad-copy {copy:.4g}" if copy != 1 else "")


# ----------------------------------------------------------------------------- pooling

def _window_counts(n_in: int, n_out: int, k: int, s: int, p: int, d: int) -> int:
    """Max number of pooling windows (1-D) containing one input index."""
    counts = np.zeros(n_in, dtype=np.int64)
    for i in range(n_out):
        idx = i * s - p + d * np.arange(k)
        idx = idx[(idx >= 0) & (idx < n_in)]
        counts[np.unique(idx)] += 1
    return int(counts.max())


def _adaptive_counts(n_in: int, n_out: int) -> int:
    counts = np.zeros(n_in, dtype=np.int64)
    for i in range(n_out):
        start = (i * n_in) // n_out
        end = -((-(i + 1) * n_in) // n_out)  # ceil
        counts[start:end] += 1
    return int(counts.max())


def _tuplify(v, nd):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd


def _maxpool_factor(mod, in_shape, out_shape):
    """sqrt(max overlap): |max(a) - max(b)| <= max|a - b| <= ||a - b||_2 over the window,
    and summing squares over windows counts each input at most ``overlap`` times."""
    adaptive = isinstance(mod, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d))
    nd = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3, nn.AdaptiveMaxPool1d: 1,
          nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3}[type(mod)]
    sp_in, sp_out = in_shape[-nd:], out_shape[-nd:]
    prod = 1
    if adaptive:
        for a, b in zip(sp_in, sp_out):
            prod *= _adaptive_counts(a, b)
    else:
        ks, st = _tuplify(mod.kernel_size, nd), _tuplify(mod.stride, nd)
        pd, dl = _tuplify(mod.padding, nd), _tuplify(mod.dilation, nd)
        for a, b, k, s, p, d in zip(sp_in, sp_out, ks, st, pd, dl):
            prod *= _window_counts(a, b, k, s, p, d)
    return math.sqrt(prod), f"sqrt(max window overlap {prod})"


def _avgpool_factor(mod, in_shape, out_shape, method, dense_limit, rel_margin):
    """Schur test ``||A||_2 <= sqrt(max row sum * max column sum)`` for the non-negative pooling
    matrix ``A`` (row sums ``A 1``, column sums ``A^T 1`` by autograd), or the dense SVD norm."""
    def fn(x):
        return mod(x)

    x = torch.ones((1,) + tuple(in_shape), dtype=torch.float64, requires_grad=True)
    y = fn(x)
    row = float(y.detach().max())
    (col,) = torch.autograd.grad(y.sum(), x)
    schur = _up(math.sqrt(row * float(col.max())), rel_margin)
    n_in, n_out = int(np.prod(in_shape)), int(np.prod(out_shape))
    if method == "dense" or (method == "auto" and max(n_in, n_out) <= dense_limit):
        dense = _up(_spectral_norm(dense_operator_matrix(fn, in_shape)), rel_margin)
        if dense <= schur:
            return dense, "dense SVD"
    return schur, "Schur test sqrt(||A||_1 ||A||_inf)"


# ----------------------------------------------------------------------------- power iteration (NOT a bound)

def power_iteration_estimate(layer: nn.Module, input_shape: Sequence[int], *, n_iter: int = 100,
                             seed: int = 0) -> float:
    """Power-iteration estimate of the operator norm of a Linear/Conv layer -- a LOWER estimate, NOT a bound.

    Iterates ``v <- A^T A v / ||A^T A v||`` with the adjoint ``A^T`` given by
    ``conv_transpose{1,2,3}d`` (zero padding; cropping undoes the padding) or
    autograd (other padding modes), and returns the Rayleigh-type ratio
    ``||A v|| / ||v||`` of the final iterate -- the norm of the operator
    (not a ratio <= 1 of successive iterates, cf. theory §8.11).  In exact
    arithmetic this never exceeds ``||A||_2`` and converges to it from below,
    so it must never be used as a certificate.
    """
    shape = _check_input_shape(input_shape)
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}")
    gen = torch.Generator().manual_seed(int(seed))
    if isinstance(layer, nn.Linear):
        w = layer.weight.detach().to(torch.float64).cpu()
        if shape[-1] != layer.in_features:
            raise ValueError(f"input_shape {shape} does not fit Linear(in_features={layer.in_features})")
        fwd, adj = (lambda v: v @ w.T), (lambda u: u @ w)
        v = torch.randn((1, w.shape[1]), generator=gen, dtype=torch.float64)
    elif isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        nd = len(layer.kernel_size)
        if len(shape) != nd + 1 or shape[0] != layer.in_channels:
            raise ValueError(f"input_shape {shape} does not fit {type(layer).__name__}(in_channels="
                             f"{layer.in_channels})")
        pads = _conv_explicit_padding(layer)
        fwd = _conv_fn(layer, pads)
        v = torch.randn((1,) + shape, generator=gen, dtype=torch.float64)
        if layer.padding_mode == "zeros":
            w = layer.weight.detach().to(torch.float64).cpu()
            tfunc = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
            padded = [s + l + r for s, (l, r) in zip(shape[1:], pads)]
            out_sp = _run_shape(layer, shape, "layer")[1:]
            opad = []
            for n, o, k, s, d in zip(padded, out_sp, layer.kernel_size, layer.stride, layer.dilation):
                opad.append(n - ((o - 1) * s + d * (k - 1) + 1))

            def adj(u):
                z = tfunc(u, w, None, layer.stride, 0, tuple(opad), layer.groups, layer.dilation)
                crop = (slice(None), slice(None)) + tuple(slice(l, l + s) for s, (l, _) in zip(shape[1:], pads))
                return z[crop]
        else:
            def adj(u):
                with torch.enable_grad():
                    x = torch.zeros_like(v, requires_grad=True)
                    (g,) = torch.autograd.grad(fwd(x), x, grad_outputs=u)
                return g
    else:
        raise ValueError(f"power_iteration_estimate supports Linear and Conv1d/2d/3d, got {type(layer).__name__}")
    with torch.no_grad():
        v = v / torch.linalg.vector_norm(v)
        for _ in range(int(n_iter)):
            z = adj(fwd(v))
            nz = torch.linalg.vector_norm(z)
            if nz == 0:
                return 0.0
            v = z / nz
        return float(torch.linalg.vector_norm(fwd(v)) / torch.linalg.vector_norm(v))


# ----------------------------------------------------------------------------- the walk

_SUPPORTED = ("Sequential", "Residual", "Linear", "Conv1d/2d/3d", "BatchNorm1d/2d/3d (eval)",
              "MaxPool1d/2d/3d", "AvgPool1d/2d/3d", "AdaptiveMaxPool*", "AdaptiveAvgPool*",
              "Dropout* (eval)", "LeakyReLU", "PReLU", "ELU", "CELU", "SELU", "GELU", "Softmax",
              *ACTIVATION_LIPSCHITZ)


def _activation_factor(mod) -> Optional[Tuple[float, str]]:
    name = type(mod).__name__
    if type(mod) in (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Tanh, nn.Softsign, nn.LogSigmoid, nn.Sigmoid,
                     nn.Hardsigmoid, nn.Hardswish, nn.SiLU, nn.Mish, nn.Identity, nn.Flatten, nn.Unflatten):
        if isinstance(mod, nn.Hardtanh) and not mod.min_val < mod.max_val:
            return 0.0, "constant"
        return ACTIVATION_LIPSCHITZ[name], "analytic constant"
    if isinstance(mod, nn.LeakyReLU):
        return max(1.0, abs(float(mod.negative_slope))), "max(1, |negative_slope|)"
    if isinstance(mod, nn.PReLU):
        return max(1.0, float(mod.weight.detach().abs().max())), "max(1, max|weight|)"
    if isinstance(mod, nn.ELU):  # derivative alpha e^x on x < 0
        return max(1.0, abs(float(mod.alpha))), "max(1, |alpha|)"
    if isinstance(mod, nn.CELU):  # derivative exp(x/alpha) <= 1 on x < 0 (alpha > 0)
        if not float(mod.alpha) > 0:
            raise ValueError(f"CELU with alpha={mod.alpha!r} <= 0 is not Lipschitz (derivative exp(x/alpha) "
                             f"is unbounded as x -> -inf)")
        return 1.0, "analytic constant"
    if isinstance(mod, nn.SELU):  # scale * alpha * e^x on x < 0
        return 1.0507009873554805 * 1.6732632423543772, "scale*alpha"
    if isinstance(mod, nn.GELU):
        if mod.approximate == "tanh":
            return _GELU_TANH_LIPSCHITZ, "grid max of derivative, rounded up"
        return GELU_LIPSCHITZ, "(1+erf(1))/2 + exp(-1)/sqrt(pi)"
    if isinstance(mod, nn.Softmax):
        if mod.dim is None or mod.dim == 0:
            raise ValueError(f"Softmax(dim={mod.dim!r}) is unsupported: give an explicit dim other than the "
                             f"batch dimension 0")
        return 1.0, "softmax is 1-Lipschitz (Gao & Pavel 2017)"
    return None


def _check_forward_not_overridden(module: nn.Module, path: str) -> None:
    """A subclass (e.g. ``class Net(nn.Sequential)``) is accepted only if it keeps the base forward:
    the bound is derived from the base class's forward, not from code it cannot inspect."""
    base = Residual if isinstance(module, Residual) else next(
        (c for c in type(module).__mro__ if c.__module__.startswith("torch.nn.")), None)
    if base is None or base is nn.Module or type(module).forward is not base.forward:
        raise ValueError(f"unsupported module type {type(module).__name__} at '{path or '<model>'}' "
                         f"(custom forward); supported: {', '.join(_SUPPORTED)}")


def _walk(module: nn.Module, shape: Tuple[int, ...], path: str, ctx: dict) -> Tuple[List[LayerFactor], Tuple]:
    """Return the list of factors (whose product bounds the module) and the output shape."""
    name = type(module).__name__
    _check_forward_not_overridden(module, path)
    if isinstance(module, nn.Sequential):
        factors: List[LayerFactor] = []
        for child_name, child in module.named_children():
            fs, shape = _walk(child, shape, f"{path}.{child_name}" if path else child_name, ctx)
            factors.extend(fs)
        return factors, shape
    if isinstance(module, Residual):
        inner, out = _walk(module.f, shape, f"{path}.f" if path else "f", ctx)
        if out != shape:
            raise ValueError(f"Residual at '{path}': f maps input_shape {shape} to {out}; x + f(x) needs equal shapes")
        prod_inner = 1.0
        for f in inner:
            prod_inner *= f.factor
        val = _up(1.0 + _up(prod_inner, ctx["rel_margin"]), ctx["rel_margin"])
        return [LayerFactor(path, name, val, "1 + Lip(f)", shape, out, children=inner)], out

    if isinstance(module, nn.modules.batchnorm._BatchNorm) and (
            module.training or not module.track_running_stats or module.running_var is None):
        raise ValueError(f"{name} at '{path}' uses batch statistics (training mode or no running stats); "
                         f"call model.eval() -- only eval-mode BatchNorm is a fixed per-sample map")
    if isinstance(module, nn.modules.dropout._DropoutNd) and module.training and module.p > 0:
        raise ValueError(f"{name} at '{path}' is in training mode (random); call model.eval()")
    out = _run_shape(module, shape, path)
    method, rel, dlim = ctx["method"], ctx["rel_margin"], ctx["dense_limit"]
    estimate = None
    act = _activation_factor(module)
    if act is not None:
        val, how = act
    elif isinstance(module, nn.Linear):
        if shape[-1] != module.in_features:
            raise ValueError(f"input_shape {shape} does not fit Linear at '{path}' (in_features={module.in_features})")
        val, how = _up(_spectral_norm(module.weight.detach()), rel), "exact SVD"
    elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        val, how = _conv_factor(module, shape, out, method, dlim, rel)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        scale = 1.0 / torch.sqrt(module.running_var.detach().to(torch.float64) + module.eps)
        if module.affine:
            scale = scale * module.weight.detach().to(torch.float64).abs()
        val, how = _up(float(scale.max()), rel), "max |gamma|/sqrt(var+eps)"
    elif isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
                             nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        val, how = _maxpool_factor(module, shape, out)
        val = _up(val, rel)
    elif isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
                             nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        val, how = _avgpool_factor(module, shape, out, method, dlim, rel)
    elif isinstance(module, nn.modules.dropout._DropoutNd):
        val, how = 1.0, "identity in eval mode"
    else:
        raise ValueError(f"unsupported module type {name} at '{path or '<model>'}'; supported: "
                         f"{', '.join(_SUPPORTED)}")
    if ctx["n_iter"] and isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        estimate = power_iteration_estimate(module, shape, n_iter=ctx["n_iter"], seed=ctx["seed"])
        if estimate > val:  # a lower estimate above a rigorous bound means a bug, never silently
            raise RuntimeError(f"internal check failed at '{path}': power-iteration estimate {estimate!r} "
                               f"exceeds the bound {val!r}")
    return [LayerFactor(path, name, float(val), how, shape, out, estimate)], out


def lipschitz_bound(model: nn.Module, input_shape: Sequence[int], *, n_iter: int = 20, method: str = "auto",
                    dense_limit: int = 2048, rel_margin: float = DEFAULT_REL_MARGIN, seed: int = 0) -> LipschitzBound:
    """Product upper bound with per-layer factors; see :func:`product_upper_bound`."""
    shape = _check_input_shape(input_shape)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if method not in ("auto", "dense", "fourier"):
        raise ValueError(f"method must be one of ('auto', 'dense', 'fourier'), got {method!r}")
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative integer, got {n_iter!r}")
    if isinstance(dense_limit, bool) or not isinstance(dense_limit, (int, np.integer)) or dense_limit < 0:
        raise ValueError(f"dense_limit must be a non-negative integer, got {dense_limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    try:
        rel_margin = float(rel_margin)
    except (TypeError, ValueError):
        raise ValueError(f"rel_margin must be a number in [1e-12, 1), got {rel_margin!r}") from None
    if not (1e-12 <= rel_margin < 1.0):
        raise ValueError(f"rel_margin must lie in [1e-12, 1) (it covers float64 SVD/FFT rounding), got {rel_margin!r}")
    ctx = dict(method=method, rel_margin=rel_margin, dense_limit=int(dense_limit), n_iter=int(n_iter), seed=seed)
    factors, out = _walk(model, shape, "", ctx)
    value = 1.0
    for f in factors:
        value *= f.factor
    return LipschitzBound(_up(value, rel_margin), factors, shape, out, rel_margin)


def product_upper_bound(model: nn.Module, input_shape: Sequence[int], *, n_iter: int = 20, method: str = "auto",
                        dense_limit: int = 2048, rel_margin: float = DEFAULT_REL_MARGIN, seed: int = 0) -> float:
    """Rigorous product upper bound of the l2 Lipschitz constant of ``model`` on inputs of ``input_shape``.

    Parameters
    ----------
    model : torch.nn.Module
        An ``nn.Sequential`` tree (or a single supported layer) of the modules
        listed in the module docstring, :class:`Residual` blocks included.
        BatchNorm and Dropout must be in eval mode.
    input_shape : tuple of int
        Shape of ONE input, without the batch dimension, e.g. ``(1, 8, 8)``.
        Convolution bounds depend on it (the operator is defined on that shape).
    n_iter : int
        Power-iteration steps used only as an internal cross-check (the lower
        estimate must not exceed the bound, else RuntimeError) and reported by
        :func:`lipschitz_bound`; 0 disables.  Never used as the bound.
    method : {"auto", "dense", "fourier"}
        Convolutions/average pooling: "auto" takes the smaller of the Fourier
        (or Schur) bound and the exact dense SVD norm when
        ``max(n_in, n_out) <= dense_limit``; "dense" always materialises;
        "fourier" never does.
    dense_limit : int
        Size limit for materialising an operator in "auto" mode.
    rel_margin : float
        Relative upward margin per computed factor and on the product (theory §2.4).
    seed : int
        Seed of the power-iteration start vectors.

    Returns
    -------
    float
        ``L`` with ``||model(x) - model(y)||_2 <= L ||x - y||_2`` for all inputs
        ``x, y`` of ``input_shape`` (exact arithmetic on the stored weights).

    Raises
    ------
    ValueError
        Unsupported module (the message names its type and path), an
        ``input_shape`` that does not fit a layer, BatchNorm/Dropout in training
        mode, bad arguments.

    Examples
    --------
    >>> import torch
    >>> lin = torch.nn.Linear(2, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = lin.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
    >>> net = torch.nn.Sequential(lin, torch.nn.ReLU(), torch.nn.Sigmoid())
    >>> round(product_upper_bound(net, (2,)), 5)   # 3 * 1 * 1/4
    0.75
    """
    return lipschitz_bound(model, input_shape, n_iter=n_iter, method=method, dense_limit=dense_limit,
                           rel_margin=rel_margin, seed=seed).value
