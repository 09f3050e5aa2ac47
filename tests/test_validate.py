"""Shared argument checks: every error names the argument and the bad value."""
import numpy as np
import pytest

from confbounds._validate import (
    check_alpha,
    check_bounds,
    check_choice,
    check_counts,
    check_integer_array,
    check_samples,
)


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, float("nan"), float("inf"), "x", None])
def test_alpha(bad):
    with pytest.raises(ValueError, match="alpha"):
        check_alpha(bad)


def test_alpha_ok():
    assert check_alpha(0.05) == 0.05


def test_counts_messages_name_values():
    with pytest.raises(ValueError, match=r"k must be <= n, got k=12 with n=10"):
        check_counts(12, 10)
    with pytest.raises(ValueError, match=r"non-negative, got -3"):
        check_counts(-3, 10)
    with pytest.raises(ValueError, match=r"non-integer value\(s\) 1.5"):
        check_integer_array([1, 1.5], "k")
    with pytest.raises(ValueError, match="booleans"):
        check_integer_array([True], "k")
    with pytest.raises(ValueError, match="n must be >= 2, got 1"):
        check_counts(1, 1, min_n=2)
    k, n = check_counts(np.array([1.0, 2.0]), 5)
    assert k.dtype == np.int64 and n.dtype == np.int64


def test_samples():
    with pytest.raises(ValueError, match=r"non-finite value nan at index \(2, 0\)"):
        check_samples(np.array([[0.1], [0.2], [np.nan]]))
    with pytest.raises(ValueError, match="holds the value 1.5, outside bounds"):
        check_samples([0.2, 1.5])
    with pytest.raises(ValueError, match="empty"):
        check_samples([])
    with pytest.raises(ValueError, match="n = 1 samples; this bound needs n >= 2"):
        check_samples([0.3], min_n=2)
    with pytest.raises(ValueError, match="shape"):
        check_samples(np.zeros((2, 2, 2)))
    arr, one_d = check_samples([0.1, 0.2])
    assert arr.shape == (2, 1) and one_d
    arr, one_d = check_samples(np.zeros((3, 4)) + 0.5)
    assert arr.shape == (3, 4) and not one_d


def test_bounds_and_choice():
    with pytest.raises(ValueError, match="bounds"):
        check_bounds((1.0, 0.0))
    with pytest.raises(ValueError, match="bounds"):
        check_bounds((0.0, float("inf")))
    with pytest.raises(ValueError, match="method must be one of .* got 'foo'"):
        check_choice("foo", "method", ("a", "b"))
