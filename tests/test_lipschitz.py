"""Tests of backends.lipschitz: the product upper bound (PUB) must be a rigorous upper bound.

Ground truths used below:
* "exact norm": the layer itself (the torch module, bias removed by subtracting its value at 0)
  applied to the identity basis in float64, and numpy's SVD of that matrix (LAPACK gesdd);
* "lower estimates" of a network's Lipschitz constant: spectral norms of exact Jacobians at random
  points, and difference quotients ||f(x) - f(y)|| / ||x - y|| maximised by Adam (gradient ascent);
  any Lipschitz constant must dominate both;
* analytic values stated at each test.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from backends.lipschitz import (  # noqa: E402
    ACTIVATION_LIPSCHITZ,
    GELU_LIPSCHITZ,
    Residual,
    conv_fourier_bound,
    dense_operator_matrix,
    lipschitz_bound,
    power_iteration_estimate,
    product_upper_bound,
)

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny float64 ops: one intra-op thread avoids oversubscription on a shared 2-core CI machine
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


REL = 1e-6  # default margin; a bound may exceed the exact norm by ~2 margins (factor + product)


def exact_norm(module: nn.Module, shape) -> float:
    """Exact l2 operator norm of the linear part of ``module`` on inputs of ``shape`` (float64 SVD)."""
    m = module.double()

    def fn(x):
        return m(x) - m(torch.zeros_like(x))

    a = dense_operator_matrix(fn, shape).numpy()
    return float(np.linalg.svd(a, compute_uv=False)[0])


# --------------------------------------------------------------------------- single layers

@pytest.mark.parametrize("shape_out", [(5, 3), (3, 7), (40, 40)])
def test_linear_bound_is_exact_svd_plus_margin(shape_out):
    torch.manual_seed(1)
    out_f, in_f = shape_out
    lin = nn.Linear(in_f, out_f)
    ex = exact_norm(lin, (in_f,))
    pub = product_upper_bound(lin, (in_f,))
    assert pub >= ex
    assert pub <= ex * (1 + 3 * REL)  # tight: exact SVD + documented margin only


def test_linear_on_extra_leading_dims():
    # Linear acting on the last axis of a (4, 6) input is I_4 (x) W: same norm as W.
    torch.manual_seed(2)
    lin = nn.Linear(6, 3)
    ex = exact_norm(lin, (4, 6))
    pub = product_upper_bound(lin, (4, 6))
    assert ex <= pub <= ex * (1 + 3 * REL)


CONV_CASES = [
    dict(padding=0),
    dict(padding=1),
    dict(padding=2),
    dict(padding=0, stride=2),
    dict(padding=1, stride=2),
    dict(padding=1, stride=(2, 3)),
    dict(padding=2, dilation=2),
    dict(padding=(1, 0), dilation=(1, 2), stride=(1, 2)),
    dict(padding=1, groups=2),
    dict(padding=1, stride=3),
    dict(padding=1, stride=2, groups=2),
    dict(padding=0, stride=(3, 2), dilation=(2, 1)),
    dict(padding="same"),
    dict(padding="same", dilation=2),
    dict(padding="valid"),
    dict(padding=1, padding_mode="reflect"),
    dict(padding=1, padding_mode="circular"),
    dict(padding=2, padding_mode="replicate", stride=2),
]


@pytest.mark.parametrize("kw", CONV_CASES, ids=[str(k) for k in CONV_CASES])
def test_conv2d_bounds_dominate_exact_norm(kw):
    torch.manual_seed(3)
    conv = nn.Conv2d(4, 6, 3, **kw)
    shape = (4, 7, 6)
    ex = exact_norm(conv, shape)
    fourier = product_upper_bound(conv, shape, method="fourier", n_iter=0)
    dense = product_upper_bound(conv, shape, method="dense", n_iter=0)
    auto = product_upper_bound(conv, shape)  # includes the internal power-iteration cross-check
    assert fourier >= ex
    assert dense >= ex and dense <= ex * (1 + 3 * REL)  # dense path is exact + margin
    assert auto == min(auto, fourier) and auto >= ex
    est = power_iteration_estimate(conv, shape, n_iter=150)
    assert est <= ex * (1 + 1e-9)  # a lower estimate (never used as the bound)
    assert est >= 0.95 * ex  # ... that does converge to the norm (not a ratio <= 1, theory §8.11)


@pytest.mark.parametrize("kw", [dict(padding=1), dict(padding=2, stride=3, dilation=2), dict(padding=1, groups=3)])
def test_conv1d_bounds_dominate_exact_norm(kw):
    torch.manual_seed(4)
    conv = nn.Conv1d(3, 6, 3, **kw)
    shape = (3, 11)
    ex = exact_norm(conv, shape)
    assert product_upper_bound(conv, shape, method="fourier") >= ex
    assert ex <= product_upper_bound(conv, shape) <= ex * (1 + 3 * REL)


def test_conv3d_bounds_dominate_exact_norm():
    torch.manual_seed(9)
    conv = nn.Conv3d(2, 3, (3, 2, 3), padding=(1, 0, 1), stride=(1, 2, 1))
    shape = (2, 4, 5, 4)
    ex = exact_norm(conv, shape)
    assert product_upper_bound(conv, shape, method="fourier", n_iter=0) >= ex
    assert ex <= product_upper_bound(conv, shape) <= ex * (1 + 3 * REL)


def test_fourier_formula_is_exact_for_circular_convolution():
    # A circular-mode conv with 'same' padding IS the circular correlation on the N x N domain, whose
    # norm is max_f ||K_hat(f)|| exactly (Sedghi et al. 2019, main theorem): the formula must match, not just bound.
    torch.manual_seed(5)
    conv = nn.Conv2d(3, 5, 3, padding=1, padding_mode="circular")
    ex = exact_norm(conv, (3, 6, 6))
    fb = conv_fourier_bound(conv.weight, (6, 6))
    assert fb >= ex
    assert fb == pytest.approx(ex, rel=1e-9)


@pytest.mark.parametrize("stride", [(2, 2), (3, 1), (1, 2)])
def test_polyphase_fourier_formula_is_exact_for_strided_circular_convolution(stride):
    # Circular padding 1, kernel 3, domain 6 (divisible by the stride): the module is exactly the strided
    # circular correlation on 6 x 6, whose norm the polyphase formula gives exactly (not just bounds).
    torch.manual_seed(15)
    conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular", stride=stride)
    ex = exact_norm(conv, (3, 6, 6))
    fb = conv_fourier_bound(conv.weight, (6, 6), stride=stride)
    assert fb >= ex
    assert fb == pytest.approx(ex, rel=1e-9)
    # and striding can only lower the norm: polyphase value <= unstrided value
    assert fb <= conv_fourier_bound(conv.weight, (6, 6)) * (1 + 1e-12)


def test_fourier_known_value_and_large_domain_tightness():
    # all-ones 3x3 single-channel kernel: circular norm = DC gain = 9 (sum of taps).
    w = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    assert conv_fourier_bound(w, (10, 10)) == pytest.approx(9.0, rel=1e-12)
    assert conv_fourier_bound(w, (10, 10)) >= 9.0
    # zero-padded conv on a larger domain: the Fourier bound approaches the exact norm (within 5% here).
    torch.manual_seed(6)
    conv = nn.Conv2d(2, 2, 3, padding=1)
    ex = exact_norm(conv, (2, 16, 16))
    fo = product_upper_bound(conv, (2, 16, 16), method="fourier")
    assert ex <= fo <= 1.05 * ex


def test_power_iteration_scales_with_the_layer_spec_8_11():
    # theory §8.11: the AISTATS 2025 code returned a ratio <= 1. Ours estimates the norm: scaling the
    # kernel by 10 scales the estimate by 10, above 1, and it stays below the rigorous bound.
    torch.manual_seed(7)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(10.0 / float(torch.linalg.vector_norm(conv.weight)))
    shape = (2, 6, 6)
    est = power_iteration_estimate(conv, shape, n_iter=300)
    ex = exact_norm(conv, shape)
    assert est > 1.0
    assert 0.99 * ex <= est <= ex * (1 + 1e-9)
    assert product_upper_bound(conv, shape) >= ex


def test_batchnorm_eval_is_diagonal_scaling():
    torch.manual_seed(8)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.running_var.copy_(torch.tensor([0.25, 4.0, 1.0]))
        bn.weight.copy_(torch.tensor([1.0, -6.0, 0.5]))
    bn.eval()
    # analytic: max |gamma| / sqrt(var + eps) = 6 / sqrt(4 + 1e-5)
    expect = 6.0 / math.sqrt(4.0 + 1e-5)
    ex = exact_norm(bn, (3, 4, 4))
    pub = product_upper_bound(bn, (3, 4, 4))
    assert ex == pytest.approx(expect, rel=1e-12)
    assert ex <= pub <= ex * (1 + 3 * REL)


# --------------------------------------------------------------------------- activations and pooling

ACTS = [nn.ReLU(), nn.ReLU6(), nn.Hardtanh(), nn.Tanh(), nn.Softsign(), nn.LogSigmoid(), nn.Sigmoid(),
        nn.Hardsigmoid(), nn.Hardswish(), nn.SiLU(), nn.Mish(), nn.GELU(), nn.GELU(approximate="tanh"),
        nn.LeakyReLU(0.1), nn.LeakyReLU(2.5), nn.ELU(), nn.ELU(alpha=2.0), nn.CELU(0.5), nn.SELU()]


@pytest.mark.parametrize("act", ACTS, ids=[repr(a) for a in ACTS])
def test_activation_constant_dominates_derivative(act):
    # sup |f'| on a 1e-5 grid over [-12, 12] (float64 autograd) must not exceed the constant; for the
    # smooth ones the constant must also be attained (within 1e-5) so it is not a loose guess.
    x = torch.linspace(-12, 12, 2_400_001, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(act(x).sum(), x)
    sup = float(g.abs().max())
    pub = product_upper_bound(act, (3,))
    assert sup <= pub
    if not isinstance(act, (nn.SELU, nn.ELU)):  # SELU/ELU sup is approached only as x -> 0-
        assert pub - sup <= 1e-5 * max(1.0, sup)


def test_gelu_constant_closed_form():
    # max of Phi(x) + x phi(x) at x = sqrt(2): (1 + erf(1))/2 + exp(-1)/sqrt(pi) = 1.12890414518...
    assert GELU_LIPSCHITZ == pytest.approx(1.1289041451851, abs=1e-12)
    assert ACTIVATION_LIPSCHITZ["Sigmoid"] == 0.25


def test_softmax_bound():
    # Gao & Pavel (2017): softmax is 1-Lipschitz in l2; random-search lower estimate must stay below.
    sm = nn.Softmax(dim=-1)
    pub = product_upper_bound(sm, (2, 5))
    assert pub >= 1.0 and pub >= _max_ratio(sm, (2, 5), n_starts=2, steps=30)
    with pytest.raises(ValueError, match="Softmax"):
        product_upper_bound(nn.Softmax(dim=0), (5,))


def test_celu_negative_alpha_rejected():
    # CELU with alpha < 0 has derivative exp(x/alpha) -> inf as x -> -inf: no finite constant.
    act = nn.CELU(alpha=1.0)
    act.alpha = -1.0
    with pytest.raises(ValueError, match="CELU"):
        product_upper_bound(act, (3,))


@pytest.mark.parametrize("pool,shape,expect", [
    (nn.MaxPool2d(2), (2, 8, 8), 1.0),                     # disjoint windows
    (nn.MaxPool2d(3, stride=1), (1, 7, 7), 3.0),           # each interior pixel in 9 windows: sqrt(9)
    (nn.MaxPool2d(3, stride=2, padding=1), (1, 7, 7), 2.0),  # 2 x 2 windows: sqrt(4)
    (nn.MaxPool2d(2, stride=1, dilation=2), (1, 7, 7), 2.0),
    (nn.MaxPool1d(4, stride=1), (1, 9), 2.0),
])
def test_maxpool_overlap_bound_is_attained(pool, shape, expect):
    pub = product_upper_bound(pool, shape)
    assert pub == pytest.approx(expect, rel=3 * REL) and pub >= expect
    # Attained: raising one central pixel from 0 to 1 raises every window containing it by 1.
    x = torch.zeros((1,) + shape, dtype=torch.float64)
    y = x.clone()
    y[(0, 0) + tuple(s // 2 for s in shape[1:])] = 1.0
    ratio = float(torch.linalg.vector_norm(pool(y) - pool(x)))
    assert ratio == pytest.approx(expect, rel=1e-12)


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.AvgPool2d(3, 1), nn.AvgPool2d(3, 2, padding=1),
                                  nn.AvgPool2d(3, 2, padding=1, count_include_pad=False, ceil_mode=True),
                                  nn.AdaptiveAvgPool2d((3, 2)), nn.AdaptiveMaxPool2d((3, 4))])
def test_pool_bounds_dominate_exact(pool):
    shape = (2, 7, 6)
    if isinstance(pool, nn.AdaptiveMaxPool2d):
        ex = _max_ratio(pool, shape)  # nonlinear: a lower estimate
    else:
        ex = exact_norm(pool, shape)
        assert product_upper_bound(pool, shape, method="fourier") >= ex  # Schur test alone
    assert product_upper_bound(pool, shape) >= ex


# --------------------------------------------------------------------------- networks vs empirical lower estimates

def _max_ratio(f, shape, n_random=64, n_starts=4, steps=60, seed=0) -> float:
    """Largest ||f(x)-f(y)||/||x-y|| found by random search, exact Jacobian norms and Adam ascent."""
    gen = torch.Generator().manual_seed(seed)
    best = 0.0
    d = int(np.prod(shape))
    # random pairs
    x = torch.randn((n_random,) + tuple(shape), generator=gen, dtype=torch.float64)
    y = x + 1e-3 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        num = torch.linalg.vector_norm((f(x) - f(y)).reshape(n_random, -1), dim=1)
        den = torch.linalg.vector_norm((x - y).reshape(n_random, -1), dim=1)
    best = max(best, float((num / den).max()))
    # exact Jacobian spectral norms at a few random points
    for i in range(4):
        xi = torch.randn((1,) + tuple(shape), generator=gen, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(lambda z: f(z).reshape(-1), xi).reshape(-1, d)
        best = max(best, float(torch.linalg.matrix_norm(jac, ord=2)))
    # normalised gradient ascent on the difference quotient r(x, delta) = ||f(x+delta)-f(x)|| / ||delta||
    for s in range(n_starts):
        x0 = torch.randn((1,) + tuple(shape), generator=gen, dtype=torch.float64).requires_grad_(True)
        dl = (0.1 * torch.randn((1,) + tuple(shape), generator=gen, dtype=torch.float64)).requires_grad_(True)
        for _ in range(steps):
            r = torch.linalg.vector_norm(f(x0 + dl) - f(x0)) / torch.linalg.vector_norm(dl)
            best = max(best, float(r.detach()))
            gx, gd = torch.autograd.grad(r, (x0, dl))
            with torch.no_grad():
                x0 += 0.05 * gx / (torch.linalg.vector_norm(gx) + 1e-30)
                dl += 0.02 * torch.linalg.vector_norm(dl) * gd / (torch.linalg.vector_norm(gd) + 1e-30)
    return best


def _small_cnn():
    torch.manual_seed(10)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.AvgPool2d(2, 1),
                         nn.Flatten(), nn.Linear(4, 5)).double().eval()


def _residual_bn_net():
    torch.manual_seed(11)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.GELU(),
        Residual(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Tanh(),
                               nn.Conv2d(3, 3, 3, padding=1))),
        nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.3), nn.Linear(3 * 3 * 3, 4),
    ).double()
    with torch.no_grad():  # non-trivial running statistics, as after training
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.2, 2.0)
                m.running_mean.uniform_(-1, 1)
                m.weight.uniform_(-2, 2)
    return net.eval()


@pytest.mark.parametrize("make,shape", [(_small_cnn, (1, 8, 8)), (_residual_bn_net, (1, 6, 6))])
def test_pub_dominates_empirical_lipschitz_of_network(make, shape):
    net = make()
    pub = product_upper_bound(net, shape)
    found = _max_ratio(net, shape)
    assert found > 0.0
    assert found <= pub
    # the per-layer table is consistent with the returned value
    res = lipschitz_bound(net, shape)
    assert res.value == pub
    assert res.output_shape == (net(torch.zeros((1,) + shape, dtype=torch.float64)).shape[1],)
    assert np.prod([f.factor for f in res.factors]) <= pub


def test_single_linear_network_bound_is_attained():
    # Lip(Linear) = ||W||_2 exactly; the empirical search must get there and the PUB not exceed it by
    # more than the margin -- guards against a bound that is valid only because it is huge.
    torch.manual_seed(12)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 4)).double()
    pub = product_upper_bound(net, (2, 3))
    found = _max_ratio(net, (2, 3))
    assert found <= pub <= found * (1 + 1e-4)


def test_residual_bound_is_attained_for_psd_branch():
    # For f(x) = W x with W symmetric PSD, ||I + W|| = 1 + ||W||: the residual rule is tight.
    torch.manual_seed(13)
    a = torch.randn(5, 5, dtype=torch.float64)
    w = a @ a.T / 5
    lin = nn.Linear(5, 5, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(w)
    blk = Residual(lin)
    ex = float(torch.linalg.matrix_norm(torch.eye(5, dtype=torch.float64) + w, ord=2))
    pub = product_upper_bound(nn.Sequential(blk), (5,))
    assert ex <= pub <= ex * (1 + 5 * REL)
    res = lipschitz_bound(blk, (5,))
    assert res.factors[0].kind == "Residual" and res.factors[0].children[0].kind == "Linear"


def test_shipped_digits_cnn():
    models = pytest.importorskip("backends.models")
    if not hasattr(models, "load_torch_model"):
        pytest.skip("backends.models.load_torch_model not available")
    try:
        net = models.load_torch_model(0.25)
    except FileNotFoundError as exc:  # weights not shipped in this checkout
        pytest.skip(f"digits model weights missing: {exc}")
    net = net.double().eval()
    res = lipschitz_bound(net, (1, 8, 8))
    assert len(res.factors) == len(net)
    found = _max_ratio(net, (1, 8, 8), n_starts=2, steps=40)
    assert 0.0 < found <= res.value
    # every linear factor is its exact norm (dense SVD for the convs on 8x8, SVD for Linear), so the
    # PUB equals the product of exact layer norms up to the margin
    for f in res.factors:
        if f.kind in ("Conv2d", "Linear"):
            assert f.method in ("dense SVD", "exact SVD")
            assert f.estimate <= f.factor


# --------------------------------------------------------------------------- bad input

def test_unsupported_module_named():
    with pytest.raises(ValueError, match="Softplus"):
        product_upper_bound(nn.Sequential(nn.Linear(3, 3), nn.Softplus()), (3,))
    with pytest.raises(ValueError, match="LSTM"):
        product_upper_bound(nn.LSTM(3, 3), (2, 3))

    class Custom(nn.Module):
        def forward(self, x):
            return x + x

    with pytest.raises(ValueError, match="Custom"):
        product_upper_bound(nn.Sequential(Custom()), (3,))

    class Sneaky(nn.Linear):  # a subclass with its own forward is not the layer we can bound
        def forward(self, x):
            return 100 * super().forward(x)

    with pytest.raises(ValueError, match="Sneaky"):
        product_upper_bound(Sneaky(3, 3), (3,))
    with pytest.raises(ValueError, match="return_indices|tensor"):
        product_upper_bound(nn.MaxPool2d(2, return_indices=True), (1, 4, 4))


@pytest.mark.parametrize("shape", [(3, 8, 8), (8, 8), (1, 1, 8, 8), (1, 2, 2)])
def test_wrong_input_shape_named(shape):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    with pytest.raises(ValueError, match="input_shape"):
        product_upper_bound(net, shape)


@pytest.mark.parametrize("shape", [(), (0, 3), (-1,), (2.5,), "abc", None, (True, 3)])
def test_malformed_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape"):
        product_upper_bound(nn.Linear(3, 3), shape)


def test_training_mode_and_bad_arguments():
    with pytest.raises(ValueError, match="BatchNorm2d.*eval"):
        product_upper_bound(nn.Sequential(nn.BatchNorm2d(1)).train(), (1, 4, 4))
    with pytest.raises(ValueError, match="Dropout.*eval"):
        product_upper_bound(nn.Sequential(nn.Dropout(0.5)).train(), (4,))
    with pytest.raises(ValueError, match="Residual"):
        product_upper_bound(Residual(nn.Linear(3, 4)), (3,))
    with pytest.raises(ValueError, match="method"):
        product_upper_bound(nn.Linear(3, 3), (3,), method="power")
    with pytest.raises(ValueError, match="rel_margin"):
        product_upper_bound(nn.Linear(3, 3), (3,), rel_margin=0.0)
    with pytest.raises(ValueError, match="n_iter"):
        product_upper_bound(nn.Linear(3, 3), (3,), n_iter=-1)
    with pytest.raises(ValueError, match="seed"):
        product_upper_bound(nn.Linear(3, 3), (3,), seed=-2)
    with pytest.raises(ValueError, match="dense_limit"):
        product_upper_bound(nn.Linear(3, 3), (3,), dense_limit=1.5)
    with pytest.raises(ValueError, match="model"):
        product_upper_bound("not a model", (3,))
    with pytest.raises(ValueError, match="ReLU"):
        power_iteration_estimate(nn.ReLU(), (3,))
