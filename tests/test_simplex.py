"""Simplex maps: NumPy references vs hand-computed values, an independent projection, SciPy, and torch."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import softmax as scipy_softmax

from backends.simplex import (apply_simplex, hardmax, softmax, sparsemax, torch_apply_simplex, torch_hardmax,
                              torch_softmax, torch_sparsemax)

torch = pytest.importorskip("torch")

finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False, width=64)
logit_rows = arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 12)), elements=finite)
temperatures = st.floats(0.05, 20.0, allow_nan=False)


def projection_by_bisection(z):
    """Independent reference: p = max(z - tau, 0) with sum p = 1, tau found by bisection.

    Held, Wolfe & Crowder (1974) / Duchi et al. (ICML 2008): the Euclidean projection onto the simplex is a
    soft threshold whose level tau solves the monotone equation sum_k max(z_k - tau, 0) = 1.
    """
    lo, hi = z.max() - 1.0, z.max()  # g(lo) >= 1 >= g(hi) = 0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(z - mid, 0.0).sum() > 1.0:
            lo = mid
        else:
            hi = mid
    return np.maximum(z - 0.5 * (lo + hi), 0.0)


# ------------------------------------------------------------------------------------------- known values


def test_sparsemax_hand_computed():
    # sorted z = (1, 0.5, -1): k=1: 2 > 1; k=2: 1 + 2*0.5 = 2 > 1.5; k=3: 1 - 3 = -2 > 0.5 fails -> k(z) = 2,
    # tau = (1.5 - 1)/2 = 0.25 (Martins & Astudillo 2016, Alg. 1) -> p = (0.75, 0.25, 0)
    np.testing.assert_allclose(sparsemax([1.0, 0.5, -1.0]), [0.75, 0.25, 0.0], atol=1e-15)
    # a gap >= 1 between the top two logits gives a one-hot output
    np.testing.assert_array_equal(sparsemax([[0.0, 2.0, 1.0]]), [[0.0, 1.0, 0.0]])
    # equal logits: the uniform distribution (the projection of a multiple of (1,...,1))
    np.testing.assert_allclose(sparsemax([3.0, 3.0, 3.0, 3.0]), [0.25] * 4)


def test_softmax_hand_computed():
    # logits (0, log 3): exp gives (1, 3) -> (1/4, 3/4); at T = 1/2 exp(2 z) = (1, 9) -> (0.1, 0.9)
    np.testing.assert_allclose(softmax([0.0, np.log(3.0)]), [0.25, 0.75], rtol=1e-14)
    np.testing.assert_allclose(softmax([0.0, np.log(3.0)], temperature=0.5), [0.1, 0.9], rtol=1e-14)


def test_hardmax_ties_go_to_first_index():
    np.testing.assert_array_equal(hardmax([[1.0, 3.0, 3.0]]), [[0.0, 1.0, 0.0]])
    t = torch_hardmax(torch.tensor([[1.0, 3.0, 3.0]]))
    np.testing.assert_array_equal(t.numpy(), [[0.0, 1.0, 0.0]])


def test_softmax_large_logits_no_overflow():
    out = softmax([1000.0, 0.0])
    assert np.all(np.isfinite(out)) and out[0] == 1.0


# ---------------------------------------------------------------------------------------- property tests


@settings(max_examples=200, deadline=None)
@given(logit_rows)
def test_sparsemax_is_the_euclidean_projection(z):
    p = sparsemax(z)
    assert p.shape == z.shape
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    for row, prow in zip(z, p):
        np.testing.assert_allclose(prow, projection_by_bisection(row), atol=1e-9)
        # KKT of min ||p - z||^2 on the simplex: p_k = z_k - tau on the support, z_k <= tau off it
        support = prow > 0
        tau = (row[support] - prow[support]).mean()
        np.testing.assert_allclose(row[support] - prow[support], tau, atol=1e-9)
        assert np.all(row[~support] <= tau + 1e-9)


@settings(max_examples=100, deadline=None)
@given(logit_rows)
def test_sparsemax_translation_invariant_and_sparse(z):
    p = sparsemax(z)
    np.testing.assert_allclose(sparsemax(z + 7.25), p, atol=1e-9)
    # sparse: every logit more than 1 below the row maximum gets exactly zero (tau >= max z - 1)
    far = z < z.max(axis=1, keepdims=True) - 1.0
    assert np.all(p[far] == 0.0)


@settings(max_examples=150, deadline=None)
@given(logit_rows, temperatures)
def test_softmax_temperature_matches_scipy(z, t):
    np.testing.assert_allclose(softmax(z, t), scipy_softmax(z / t, axis=1), rtol=1e-12, atol=1e-300)


@settings(max_examples=150, deadline=None)
@given(logit_rows, temperatures)
def test_torch_versions_match_numpy_float64(z, t):
    zt = torch.from_numpy(z)
    np.testing.assert_allclose(torch_softmax(zt, t).numpy(), softmax(z, t), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(torch_sparsemax(zt).numpy(), sparsemax(z), atol=1e-12)
    np.testing.assert_array_equal(torch_hardmax(zt).numpy(), hardmax(z))


@settings(max_examples=100, deadline=None)
@given(logit_rows, temperatures)
def test_torch_versions_float32_close_to_numpy(z, t):
    zt = torch.from_numpy(z.astype(np.float32))
    z32 = z.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(torch_softmax(zt, t).numpy(), softmax(z32, t), atol=2e-6)
    p = torch_sparsemax(zt).numpy()
    np.testing.assert_allclose(p, sparsemax(z32), atol=1e-4)  # float32 cumulative sums of logits up to 50
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("name", ["hard", "softmax", "sparsemax"])
def test_apply_simplex_dispatch(name):
    z = np.array([[0.3, -1.2, 2.0, 1.9]])
    ref = {"hard": hardmax(z), "softmax": softmax(z, 0.7), "sparsemax": sparsemax(z)}[name]
    np.testing.assert_array_equal(apply_simplex(z, name, 0.7), ref)
    np.testing.assert_allclose(torch_apply_simplex(torch.from_numpy(z), name, 0.7).numpy(), ref, atol=1e-15)


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("t", [0.0, -1.0, float("nan"), float("inf"), "1", True])
def test_bad_temperature(t):
    with pytest.raises(ValueError, match="temperature"):
        softmax([1.0, 2.0], t)
    with pytest.raises(ValueError, match="temperature"):
        torch_softmax(torch.zeros(1, 2), t)


def test_unknown_simplex_map():
    with pytest.raises(ValueError, match="simplex must be one of.*'argmax'"):
        apply_simplex([[1.0, 2.0]], "argmax")
    with pytest.raises(ValueError, match="simplex must be one of"):
        torch_apply_simplex(torch.zeros(1, 2), "entmax")


@pytest.mark.parametrize("fn", [hardmax, softmax, sparsemax])
def test_non_finite_logits_rejected(fn):
    with pytest.raises(ValueError, match="finite.*nan"):
        fn([[1.0, np.nan]])
    with pytest.raises(ValueError, match="shape"):
        fn(np.zeros((2, 2, 2)))


def test_import_does_not_load_torch():
    code = "import sys, backends, backends.simplex, backends.models; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
