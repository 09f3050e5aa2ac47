"""The shipped example model: a small CNN on scikit-learn's 8x8 digits images.

The network, the trained weights (``backends/models/digits_cnn_sigma{0.25,0.50}.{onnx,pt}``) and the fixed
train/test split (``backends/data/digits.npz``) ship with the package so that the demo, the tests and the radius
pipeline need neither scikit-learn nor a download at run time. They are produced by
``python -m backends.train_digits`` (see that module for the training recipe).

torch is imported lazily: ``import backends.models`` imports only NumPy; ``DigitsCNN`` and
``load_torch_model`` import torch on first use.

Data: the UCI "Optical Recognition of Handwritten Digits" test set as bundled with scikit-learn
(``sklearn.datasets.load_digits``, 1797 images, 16 grey levels), pixels divided by 16 so they lie in [0, 1], shape
``(N, 1, 8, 8)``, split 80/20 stratified by label with ``random_state=0``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np

__all__ = ["DigitsCNN", "SIGMAS", "INPUT_SHAPE", "NUM_CLASSES", "default_model_path", "load_digits_split",
           "load_torch_model", "digits_data_path", "digits_cnn", "DIGITS_FACTORY"]

_HERE = Path(__file__).resolve().parent
MODEL_DIR = _HERE / "models"
DATA_DIR = _HERE / "data"

#: noise levels the shipped models were trained at
SIGMAS = (0.25, 0.5)
INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10

_CLASS = None


def _sigma_tag(sigma) -> str:
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"sigma must be one of {SIGMAS}, got {sigma!r}") from None
    for known in SIGMAS:
        if abs(s - known) < 1e-12:
            return f"{known:.2f}"
    raise ValueError(f"no shipped digits model for sigma={sigma!r}; available: {SIGMAS}")


def default_model_path(sigma: float = 0.25, kind: str = "onnx") -> Path:
    """Path of the shipped digits CNN trained with Gaussian noise augmentation at ``sigma``.

    Parameters
    ----------
    sigma : {0.25, 0.5}
        Noise level of the training augmentation (use the same ``sigma`` for smoothing).
    kind : {"onnx", "pt"}
        ``"onnx"``: the ONNX graph (input ``"input"`` of shape ``(batch, 1, 8, 8)`` float32, output ``"logits"`` of
        shape ``(batch, 10)``); ``"pt"``: the torch state dict of :class:`DigitsCNN`.

    Examples
    --------
    >>> default_model_path(0.25).name
    'digits_cnn_sigma0.25.onnx'
    """
    if kind not in ("onnx", "pt"):
        raise ValueError(f"kind must be one of ('onnx', 'pt'), got {kind!r}")
    return MODEL_DIR / f"digits_cnn_sigma{_sigma_tag(sigma)}.{kind}"


def digits_data_path() -> Path:
    return DATA_DIR / "digits.npz"


def load_digits_split(split: str = "test") -> Tuple[np.ndarray, np.ndarray]:
    """The fixed digits split shipped with the package.

    Parameters
    ----------
    split : {"train", "test"}

    Returns
    -------
    x : float32 array, shape (N, 1, 8, 8), values in [0, 1]
    y : int64 array, shape (N,), labels 0..9

    Examples
    --------
    >>> x, y = load_digits_split("test")
    >>> x.shape, y.shape, x.dtype.name
    ((360, 1, 8, 8), (360,), 'float32')
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be one of ('train', 'test'), got {split!r}")
    with np.load(digits_data_path()) as data:
        return data[f"x_{split}"].astype(np.float32), data[f"y_{split}"].astype(np.int64)


def _build_class():
    import torch
    from torch import nn

    class DigitsCNN(nn.Sequential):
        """Conv(1->16, 3x3) - ReLU - Conv(16->32, 3x3) - ReLU - MaxPool(2) - Linear(512->64) - ReLU - Linear(64->10).

        A plain ``nn.Sequential`` (Conv2d, ReLU, MaxPool2d, Flatten, Linear), so layer-wise Lipschitz
        bounds apply directly. Input ``(batch, 1, 8, 8)`` in [0, 1] (no normalisation layer), output logits
        ``(batch, 10)``.
        """

        input_shape = INPUT_SHAPE
        num_classes = NUM_CLASSES

        def __init__(self):
            super().__init__(
                nn.Conv2d(1, 16, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.Conv2d(16, 32, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Flatten(),
                nn.Linear(32 * 4 * 4, 64),
                nn.ReLU(),
                nn.Linear(64, NUM_CLASSES),
            )

    DigitsCNN.__module__ = __name__
    DigitsCNN.__qualname__ = "DigitsCNN"  # picklable through the module __getattr__
    del torch
    return DigitsCNN


def __getattr__(name):
    global _CLASS
    if name == "DigitsCNN":
        if _CLASS is None:
            _CLASS = _build_class()
        return _CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def digits_cnn():
    """A fresh (untrained) :class:`DigitsCNN`: the factory of the shipped state dicts.

    ``load_sampler(default_model_path(0.25, "pt"), sigma=0.25, factory="backends.models:digits_cnn")`` loads
    the shipped weights through :func:`backends.loading.load_sampler` (CLI: ``--factory``).
    """
    return __getattr__("DigitsCNN")()


#: the ``factory=`` string of the shipped state dicts
DIGITS_FACTORY = "backends.models:digits_cnn"


def load_torch_model(sigma: float = 0.25):
    """The shipped :class:`DigitsCNN` trained at ``sigma``, in eval mode on the CPU.

    Loaded by the one loader (:func:`backends.loading.load_sampler`, state dict + ``factory``, read with
    ``torch.load(weights_only=True)``).
    """
    from .loading import load_module

    return load_module(default_model_path(sigma, "pt"), factory=DIGITS_FACTORY)[0]
