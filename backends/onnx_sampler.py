"""Sampler for an ONNX graph on onnxruntime (see :mod:`backends.base` for the protocol).

Noise is drawn in NumPy, ``numpy.random.default_rng(seed)``, in the graph's input dtype, one batch at a time
(:func:`backends.base.numpy_noisy_batches`), added in input space before the optional ``normalize``; the
simplex map is applied in NumPy (float64) to the graph's logits. Memory is bounded by one batch (plus the
``(n, len(columns))`` result of :meth:`OnnxSampler.scores`).

Execution providers: by default the best available of TensorRT, CUDA (with CPU fallback) and CPU. Providers
asked for explicitly are never dropped silently: if none of them is installed a ``ValueError`` is raised; if
some are missing or onnxruntime did not activate them, one ``RuntimeWarning`` names them when the sampler is
built.
"""
from __future__ import annotations

import warnings
from os import PathLike
from typing import Optional, Sequence

import numpy as np

from .base import (as_input_array, batch_where, broadcast_normalize, check_batch_size, check_columns,
                   check_logits, check_normalize, check_num_classes, check_sampler_args, check_sigma,
                   numpy_noisy_batches)
from .simplex import apply_simplex, check_simplex, check_temperature

__all__ = ["OnnxSampler", "resolve_providers"]

_PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_ONNX_FLOAT = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


def _provider_name(p) -> str:
    return p[0] if isinstance(p, (tuple, list)) else p


def resolve_providers(providers, available: Sequence[str]):
    """The provider list to request and whether it was given explicitly.

    ``providers=None``: the available ones among TensorRT, CUDA, CPU, in that order. Otherwise the given list
    (names or ``(name, options)`` pairs) minus the ones not installed: a ``ValueError`` if none is left, one
    ``RuntimeWarning`` naming the missing ones if some are.
    """
    if providers is None:
        return [p for p in _PREFERRED if p in available] or list(available), False
    if isinstance(providers, str) or (isinstance(providers, tuple) and len(providers) == 2
                                      and isinstance(providers[1], dict)):
        providers = [providers]  # one provider, by name or as (name, options)
    providers = list(providers)
    if not providers:
        raise ValueError("providers must be None or a non-empty list of onnxruntime execution providers")
    missing = [_provider_name(p) for p in providers if _provider_name(p) not in available]
    kept = [p for p in providers if _provider_name(p) in available]
    if not kept:
        raise ValueError(f"requested ONNX execution provider(s) {missing} are not available in this "
                         f"onnxruntime build; available: {list(available)}")
    if missing:
        warnings.warn(f"requested ONNX execution provider(s) {missing} are not available (available: "
                      f"{list(available)}); running on {[_provider_name(p) for p in kept]}",
                      RuntimeWarning, stacklevel=3)
    return kept, True


class OnnxSampler:
    """Draw counts or score matrices of an ONNX classifier under Gaussian noise.

    Parameters
    ----------
    model_path_or_bytes : str, path or bytes
        The ONNX model (file path or serialised bytes). The graph maps ``(batch, *x.shape)`` to ``(batch, m)``
        logits; its batch axis must be dynamic.
    sigma : float
        Noise standard deviation (> 0), in the input space of ``x`` (before ``normalize``).
    batch_size : int
        Noisy copies per ``session.run``.
    providers : list, optional
        onnxruntime execution providers; default TensorRT/CUDA when available, with CPU fallback.
    input_name : str, optional
        Graph input to feed; required when the graph has several inputs.
    simplex : {"hard", "softmax", "sparsemax"}
        Simplex map of :meth:`scores` (``counts`` counts the argmax).
    temperature : float
        Softmax temperature (> 0).
    normalize : (mean, std), optional
        Applied after the noise: the graph sees ``(x + eps - mean) / std``.
    num_classes : int, optional
        Checked against the graph's static output width when it has one, else against every model output.
        Default: read from the graph's output shape when static, else found by one noise-free forward pass (of
        a zero input) as soon as the input shape is known.
    session_options : onnxruntime.SessionOptions, optional
    input_shape : tuple of int, optional
        Shape of one input (no batch axis), checked against the graph's input. Default: the graph's input
        shape when it is static, else the shape of the first input sampled (then fixed: later inputs of another
        shape are refused).
    noise : {"float", "sound"}
        ``"float"`` (default): NumPy Gaussian noise added in the input dtype. ``"sound"``: the rounded
        Gaussian on the grid ``grid`` within ``clip`` (:class:`backends.noise.SoundNoise`, Voráček & Hein,
        ICLR 2023): ``x`` must lie on the grid; drawn on the host from exact integer thresholds
        (:func:`backends.base.numpy_noisy_batches`).
    grid, clip :
        Grid step (required with ``noise="sound"``) and clip range (default
        :func:`backends.noise.default_clip`); refused with float noise.

    Notes
    -----
    ``x`` may have any real dtype; it is rounded to the graph's floating input dtype (float32 for the shipped
    models) before the noise, drawn in that dtype, is added; values that overflow it are rejected.

    Examples
    --------
    >>> from backends.models import default_model_path, load_digits_split
    >>> x, y = load_digits_split("test")
    >>> s = OnnxSampler(default_model_path(0.25), sigma=0.25, providers=["CPUExecutionProvider"])
    >>> c = s.counts(x[0], n=200, seed=0)
    >>> s.num_classes, int(c.sum()), int(c.argmax()) == int(y[0])
    (10, 200, True)
    """

    def __init__(self, model_path_or_bytes, *, sigma: float, batch_size: int = 1000, providers=None,
                 input_name: Optional[str] = None, simplex: str = "hard", temperature: float = 1.0,
                 normalize=None, num_classes: Optional[int] = None, session_options=None,
                 input_shape: Optional[Sequence[int]] = None, noise: str = "float", grid=None, clip=None):
        import onnxruntime as ort

        from .noise import make_sound_noise

        self.sigma = check_sigma(sigma)
        self.batch_size = check_batch_size(batch_size)
        self.simplex = check_simplex(simplex)
        self.temperature = check_temperature(temperature)
        self.normalize = check_normalize(normalize)
        self._num_classes = check_num_classes(num_classes)
        self.sound = make_sound_noise(noise, self.sigma, grid, clip)
        self.noise = noise
        if not isinstance(model_path_or_bytes, (str, bytes, PathLike)):
            raise ValueError("model_path_or_bytes must be a file path or the serialised model bytes, got "
                             f"{type(model_path_or_bytes).__name__}")
        model = model_path_or_bytes if isinstance(model_path_or_bytes, bytes) else str(model_path_or_bytes)

        requested, explicit = resolve_providers(providers, ort.get_available_providers())
        self.session = ort.InferenceSession(model, sess_options=session_options, providers=requested)
        active = self.session.get_providers()
        inactive = [_provider_name(p) for p in requested if _provider_name(p) not in active]
        if inactive and (explicit or any(p != "CPUExecutionProvider" for p in inactive)):
            warnings.warn(f"onnxruntime did not activate the execution provider(s) {inactive} (active: {active})",
                          RuntimeWarning, stacklevel=2)
        self.providers = active

        inputs = self.session.get_inputs()
        if input_name is None:
            if len(inputs) != 1:
                raise ValueError(f"the ONNX graph has {len(inputs)} inputs {[i.name for i in inputs]}; "
                                 "pass input_name=")
            meta = inputs[0]
        else:
            named = [i for i in inputs if i.name == input_name]
            if not named:
                raise ValueError(f"input_name {input_name!r} is not an input of the ONNX graph; inputs: "
                                 f"{[i.name for i in inputs]}")
            meta = named[0]
        self.input_name = meta.name
        if meta.type not in _ONNX_FLOAT:
            raise ValueError(f"ONNX graph input {meta.name!r} has type {meta.type}; Gaussian noise needs a "
                             f"floating-point input ({sorted(_ONNX_FLOAT)})")
        self.input_dtype = np.dtype(_ONNX_FLOAT[meta.type])
        shape = list(meta.shape)
        if not shape:
            raise ValueError(f"ONNX graph input {meta.name!r} is a scalar; expected (batch, *x.shape)")
        if isinstance(shape[0], int):
            raise ValueError(f"ONNX graph input {meta.name!r} has a fixed batch dimension {shape[0]}; export it "
                             "with a dynamic batch axis")
        self.graph_input_shape = tuple(d if isinstance(d, int) else None for d in shape[1:])
        outputs = self.session.get_outputs()
        self.output_name = outputs[0].name
        oshape = list(outputs[0].shape)
        if len(oshape) == 2 and isinstance(oshape[1], int):
            if self._num_classes is not None and self._num_classes != int(oshape[1]):
                raise ValueError(f"num_classes={self._num_classes} but the ONNX graph output "
                                 f"{self.output_name!r} has {oshape[1]} classes")
            self._num_classes = int(oshape[1])
        # the input shape: given, else static in the graph, else fixed by the first input (see _check_x)
        self.input_shape = None
        if input_shape is not None:
            shp = tuple(int(d) for d in input_shape)
            self._check_x(np.zeros(shp, dtype=self.input_dtype))  # must fit the graph
            self.input_shape = shp
        elif all(d is not None for d in self.graph_input_shape):
            self.input_shape = tuple(self.graph_input_shape)
        if self._num_classes is None and self.input_shape is not None:
            # one noise-free forward pass finds the class count (a given one is checked on every model output)
            self.logits(np.zeros((1, *self.input_shape), dtype=self.input_dtype))

    # -------------------------------------------------------------------------------------------- properties
    @property
    def num_classes(self) -> int:
        if self._num_classes is None:
            raise AttributeError("num_classes is not known yet: pass num_classes= or input_shape=, or call "
                                 "bind_input(x) (or counts/scores) once")
        return self._num_classes

    def bind_input(self, x) -> int:
        """Fix the input shape to ``x``'s (checked if already known) and return the class count.

        Runs one noise-free forward pass of ``x`` when the class count is not known yet.
        """
        arr = self._check_x(x)
        if self._num_classes is None:
            self.logits(arr[None, ...])
        return self._num_classes

    # ---------------------------------------------------------------------------------------------- helpers
    def _check_x(self, x) -> np.ndarray:
        arr = as_input_array(x)
        g = self.graph_input_shape
        if arr.ndim != len(g) or any(d is not None and d != a for d, a in zip(g, arr.shape)):
            want = tuple("?" if d is None else d for d in g)
            raise ValueError(f"x has shape {arr.shape}, but the ONNX graph input {self.input_name!r} expects one "
                             f"input of shape {want} (batch axis excluded)")
        known = getattr(self, "input_shape", None)
        if known is not None and arr.shape != known:
            raise ValueError(f"x must have shape {known} (one input, no batch axis; fixed by input_shape= or "
                             f"by the first input), got {arr.shape}")
        with np.errstate(over="ignore"):
            cast = arr.astype(self.input_dtype)
        if not np.all(np.isfinite(cast)):
            raise ValueError(f"x does not fit the ONNX graph input dtype {self.input_dtype} (overflow)")
        if known is None:
            self.input_shape = tuple(arr.shape)  # the first input fixes the shape
        return arr

    def _norm(self, shape):
        nrm = broadcast_normalize(self.normalize, shape)
        return None if nrm is None else tuple(v.astype(self.input_dtype) for v in nrm)

    def _run(self, batch: np.ndarray, where: str, norm) -> np.ndarray:
        if norm is not None:
            np.subtract(batch, norm[0], out=batch)
            np.divide(batch, norm[1], out=batch)
        out = self.session.run([self.output_name], {self.input_name: batch})[0]
        b = batch.shape[0]
        if not isinstance(out, np.ndarray) or out.dtype.kind != "f":
            raise ValueError(f"model output must be a floating-point (batch, m) array, got "
                             f"{getattr(out, 'dtype', type(out).__name__)}{where}")
        check_logits(out, b, where=where)
        if self._num_classes is None:
            self._num_classes = int(out.shape[1])
        elif out.shape[1] != self._num_classes:
            raise ValueError(f"model output has {out.shape[1]} classes, expected num_classes={self._num_classes}"
                             f"{where}")
        return out

    def _logit_batches(self, x: np.ndarray, n: int, seed: int):
        norm = self._norm(x.shape)
        for start, batch in numpy_noisy_batches(x, self.sigma, n, seed, self.batch_size, self.input_dtype,
                                                self.sound):
            yield start, self._run(batch, batch_where(x, seed, start, len(batch), self.batch_size), norm)

    # ------------------------------------------------------------------------------------------- public API
    def logits(self, inputs) -> np.ndarray:
        """Logits of a batch of inputs ``(b, *x.shape)`` given in input space (``normalize`` is applied).

        No noise is added; inputs are cast to the graph's input dtype.
        """
        arr = np.asarray(inputs)
        if arr.dtype.kind not in "fiu" or arr.ndim != len(self.graph_input_shape) + 1:
            raise ValueError(f"inputs must be a real array of shape (batch, *x.shape), got dtype {arr.dtype}, "
                             f"shape {arr.shape}")
        if len(arr) == 0:
            raise ValueError("inputs is an empty batch")
        self._check_x(arr[0])
        batch = np.array(arr, dtype=self.input_dtype, copy=True)
        return self._run(batch, " (logits of a given batch)", self._norm(arr.shape[1:]))

    def counts(self, x, n: int, seed: int) -> np.ndarray:
        """Class counts of ``argmax f(x + eps_i)``, ``i = 1..n``: int64 array of shape ``(m,)`` summing to n."""
        n = check_sampler_args(n, seed)
        x = self._check_x(x)
        acc = None
        for _, logits in self._logit_batches(x, n, seed):
            c = np.bincount(np.argmax(logits, axis=1), minlength=logits.shape[1])
            acc = c if acc is None else acc + c
        return acc.astype(np.int64, copy=False)

    def scores(self, x, n: int, seed: int, columns: Optional[Sequence[int]] = None) -> np.ndarray:
        """Score matrix: row i is ``s(f(x + eps_i))`` (float64, shape ``(n, m)`` or ``(n, len(columns))``)."""
        n = check_sampler_args(n, seed)
        x = self._check_x(x)
        if self._num_classes is not None:
            check_columns(columns, self._num_classes)
        out = None
        cols = None
        for start, logits in self._logit_batches(x, n, seed):
            if out is None:
                cols = check_columns(columns, logits.shape[1])
                out = np.empty((n, logits.shape[1] if cols is None else len(cols)), dtype=np.float64)
            s = apply_simplex(logits, self.simplex, self.temperature)
            out[start:start + len(s)] = s if cols is None else s[:, cols]
        return out

    def __repr__(self) -> str:
        return (f"OnnxSampler(sigma={self.sigma}, batch_size={self.batch_size}, providers={self.providers!r}, "
                f"simplex={self.simplex!r}, noise={self.noise!r})")
