"""Sampler for a ``torch.nn.Module`` (see :mod:`backends.base` for the protocol).

Noise ``N(0, sigma^2 I)`` is drawn on the model's device, batch by batch, from a ``torch.Generator`` seeded
afresh in every call, added to the input in *input space* (before the optional ``normalize=(mean, std)``), and
the model runs under ``torch.inference_mode``. Only one batch of noisy inputs exists at a time; counts are
accumulated on the device. The result is a deterministic function of ``(x, n, seed)`` for a given sampler
(device, dtype, batch size).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .base import (as_input_array, batch_where, broadcast_normalize, check_batch_size, check_columns,
                   check_logits, check_normalize, check_num_classes, check_sampler_args, check_sigma,
                   numpy_noisy_batches)
from .simplex import check_simplex, check_temperature, torch_apply_simplex

__all__ = ["TorchSampler", "default_device"]

_NOISE = ("float", "sound", "torch", "numpy")


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchSampler:
    """Draw counts or score matrices of a torch classifier under Gaussian noise.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch ``(b, *x.shape)`` to logits ``(b, m)``. It is put in eval mode and moved to ``device``
        (``nn.Module.to`` acts in place).
    sigma : float
        Noise standard deviation (> 0), in the input space of ``x`` (before ``normalize``).
    batch_size : int
        Noisy copies per forward pass; memory is bounded by one batch.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    simplex : {"hard", "softmax", "sparsemax"}
        Simplex map used by :meth:`scores` (``counts`` always counts the argmax, i.e. hardmax).
    temperature : float
        Softmax temperature (> 0).
    normalize : (mean, std), optional
        Normalisation applied after the noise: the model sees ``(x + eps - mean) / std``. A 1-D mean/std of
        length ``C`` applies per channel to inputs of shape ``(C, ...)``.
    num_classes : int, optional
        Checked against every model output. Default: found by one noise-free forward pass of a zero
        input when ``input_shape`` is known (given, or ``model.input_shape``), else by the first call
        (``counts``, ``scores``, ``logits`` or ``bind_input``); until then reading :attr:`num_classes` raises
        ``AttributeError``.
    input_shape : tuple of int, optional
        Shape of one input (no batch axis). Default: ``model.input_shape`` if the model has it, else the shape
        of the first input sampled. Once known, inputs of another shape are rejected.
    noise : {"float", "sound", "torch", "numpy"}
        ``"float"`` (default; ``"torch"`` is the same): ``torch.randn`` on the device, generator seeded with
        ``seed``. ``"numpy"``: float noise from ``numpy.random.default_rng(seed)`` on the host, exactly the
        stream of :class:`backends.OnnxSampler` (:func:`backends.base.numpy_noisy_batches`), copied to the
        device per batch: the two samplers then see bit-identical inputs. ``"sound"``: the rounded Gaussian on
        the grid ``grid`` within ``clip`` (:class:`backends.noise.SoundNoise`, Voráček & Hein, ICLR 2023):
        ``x`` must lie on the grid; integer uniforms from ``torch.randint`` with the seeded generator, exact
        integer thresholds, all on the device (no host copy per batch).
    grid, clip :
        Grid step (required with ``noise="sound"``, e.g. ``1/255`` or ``"1/16"``) and clip range (default
        :func:`backends.noise.default_clip`); refused with float noise.

    Notes
    -----
    ``x`` (NumPy array or tensor, any real dtype) is cast to the model's parameter dtype. With
    ``noise="torch"`` the stream depends on the device's generator, so counts are reproducible per device
    (CPU and CUDA give different, equally valid, draws).

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(2, 3)
    >>> s = TorchSampler(model, sigma=0.5, num_classes=3, device="cpu")
    >>> c = s.counts(np.zeros(2, dtype=np.float32), n=100, seed=0)
    >>> int(c.sum()), c.dtype.name
    (100, 'int64')
    """

    def __init__(self, model, *, sigma: float, batch_size: int = 1000, device=None, simplex: str = "hard",
                 temperature: float = 1.0, normalize=None, num_classes: Optional[int] = None,
                 input_shape: Optional[Sequence[int]] = None, noise: str = "float", grid=None, clip=None):
        import torch

        from .noise import check_noise_kind, make_sound_noise

        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.sigma = check_sigma(sigma)
        self.batch_size = check_batch_size(batch_size)
        self.simplex = check_simplex(simplex)
        self.temperature = check_temperature(temperature)
        self.normalize = check_normalize(normalize)
        check_noise_kind(noise, grid, clip, allowed=_NOISE)
        self.noise = "float" if noise == "torch" else noise
        self.sound = make_sound_noise("sound" if noise == "sound" else "float", self.sigma, grid, clip)
        self.device = torch.device(default_device() if device is None else device)
        model.eval()
        model.to(self.device)
        self.model = model
        param = next(iter(model.parameters()), None)
        self.dtype = param.dtype if param is not None and param.dtype.is_floating_point else torch.float32
        self._np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype
        if input_shape is None:
            input_shape = getattr(model, "input_shape", None)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self._num_classes = check_num_classes(num_classes)
        if self._num_classes is None and self.input_shape is not None:
            # one noise-free forward pass finds the class count (a given one is checked on every model output)
            zero = np.zeros((1, *self.input_shape), dtype=self._np_dtype)
            self.logits(zero)

    # -------------------------------------------------------------------------------------------- properties
    @property
    def num_classes(self) -> int:
        if self._num_classes is None:
            raise AttributeError("num_classes is not known yet: pass num_classes= or input_shape= to TorchSampler, "
                                 "or call bind_input(x) (or counts/scores) once")
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
        if self.input_shape is None:
            self.input_shape = tuple(arr.shape)  # the first input fixes the shape
        elif arr.shape != self.input_shape:
            raise ValueError(f"x must have shape {self.input_shape} (one input, no batch axis; fixed by "
                             f"input_shape= or by the first input), got {arr.shape}")
        return arr

    def _norm_tensors(self, shape):
        import torch

        nrm = broadcast_normalize(self.normalize, shape)
        if nrm is None:
            return None
        return tuple(torch.as_tensor(v, dtype=self.dtype, device=self.device) for v in nrm)

    def _forward(self, batch, where: str, norm):
        """Normalise (in place) and run the model on a device tensor; check the output on the device."""
        import torch

        if norm is not None:
            batch.sub_(norm[0]).div_(norm[1])
        out = self.model(batch)
        b = batch.shape[0]
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != b:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"model output must have shape (batch, m) = ({b}, m), got {shape}{where}")
        if not bool(torch.isfinite(out).all()):
            check_logits(out.detach().cpu().numpy(), b, where=where)  # raises, naming the row
        if self._num_classes is None:
            self._num_classes = int(out.shape[1])
        elif out.shape[1] != self._num_classes:
            raise ValueError(f"model output has {out.shape[1]} classes, expected num_classes={self._num_classes}"
                             f"{where}")
        return out

    def _logit_batches(self, x: np.ndarray, n: int, seed: int):
        """Yield ``(start, logits)`` (device tensors) for the n noisy copies of x."""
        import torch

        norm = self._norm_tensors(x.shape)
        with torch.inference_mode():
            if self.sound is not None:
                thr, values = self.sound.torch_tables(self.device, self.dtype)
                k = torch.as_tensor(self.sound.indices(x), device=self.device)  # ValueError if off the grid
                gen = torch.Generator(device=self.device)
                gen.manual_seed(int(seed))
                start = 0
                while start < n:
                    b = min(self.batch_size, n - start)
                    batch = self.sound.sample_torch(k, b, gen, thr, values)
                    yield start, self._forward(batch, batch_where(x, seed, start, b, self.batch_size), norm)
                    start += b
                return
            if self.noise == "numpy":
                for start, batch in numpy_noisy_batches(x, self.sigma, n, seed, self.batch_size, self._np_dtype):
                    t = torch.from_numpy(batch).to(self.device)
                    yield start, self._forward(t, batch_where(x, seed, start, len(batch), self.batch_size), norm)
                return
            xt = torch.as_tensor(np.ascontiguousarray(x), dtype=self.dtype, device=self.device)
            gen = torch.Generator(device=self.device)
            gen.manual_seed(int(seed))
            start = 0
            while start < n:
                b = min(self.batch_size, n - start)
                batch = torch.randn((b, *xt.shape), generator=gen, device=self.device, dtype=self.dtype)
                batch.mul_(self.sigma).add_(xt)
                yield start, self._forward(batch, batch_where(x, seed, start, b, self.batch_size), norm)
                start += b

    # ------------------------------------------------------------------------------------------- public API
    def logits(self, inputs) -> np.ndarray:
        """Logits of a batch of inputs ``(b, *x.shape)`` given in input space (``normalize`` is applied).

        No noise is added: this is the model as the sampler sees it, for cross-checks.
        """
        import torch

        arr = np.asarray(inputs.detach().cpu().numpy() if hasattr(inputs, "detach") else inputs)
        if arr.dtype.kind not in "fiu" or arr.ndim < 2:
            raise ValueError(f"inputs must be a real array of shape (batch, *x.shape), got dtype {arr.dtype}, "
                             f"shape {arr.shape}")
        if self.input_shape is None:
            self.input_shape = tuple(arr.shape[1:])  # the first input fixes the shape
        elif arr.shape[1:] != self.input_shape:
            raise ValueError(f"inputs must have shape (batch, *{self.input_shape}), got {arr.shape}")
        with torch.inference_mode():
            t = torch.as_tensor(np.ascontiguousarray(arr), dtype=self.dtype, device=self.device).clone()
            out = self._forward(t, " (logits of a given batch)", self._norm_tensors(arr.shape[1:]))
            return out.cpu().numpy()

    def counts(self, x, n: int, seed: int) -> np.ndarray:
        """Class counts of ``argmax f(x + eps_i)``, ``i = 1..n``: int64 array of shape ``(m,)`` summing to n."""
        import torch

        n = check_sampler_args(n, seed)
        x = self._check_x(x)
        acc = None
        for _, logits in self._logit_batches(x, n, seed):
            c = torch.bincount(torch.argmax(logits, dim=1), minlength=logits.shape[1])
            acc = c if acc is None else acc.add_(c)
        return acc.cpu().numpy().astype(np.int64, copy=False)

    def scores(self, x, n: int, seed: int, columns: Optional[Sequence[int]] = None) -> np.ndarray:
        """Score matrix: row i is ``s(f(x + eps_i))`` (float64, shape ``(n, m)`` or ``(n, len(columns))``).

        The simplex map runs on the device in float64; only the requested columns are kept, so the host holds
        ``n * len(columns)`` floats plus one batch.
        """
        import torch

        n = check_sampler_args(n, seed)
        x = self._check_x(x)
        if self._num_classes is not None:
            check_columns(columns, self._num_classes)
        out = None
        cols_t = None
        for start, logits in self._logit_batches(x, n, seed):
            if out is None:
                cols = check_columns(columns, logits.shape[1])
                width = logits.shape[1] if cols is None else len(cols)
                out = np.empty((n, width), dtype=np.float64)
                cols_t = None if cols is None else torch.as_tensor(cols, device=self.device)
            s = torch_apply_simplex(logits.to(torch.float64), self.simplex, self.temperature)
            if cols_t is not None:
                s = s.index_select(1, cols_t)
            out[start:start + s.shape[0]] = s.cpu().numpy()
        return out

    def __repr__(self) -> str:
        return (f"TorchSampler(sigma={self.sigma}, batch_size={self.batch_size}, device={str(self.device)!r}, "
                f"simplex={self.simplex!r}, noise={self.noise!r})")
