"""The local engine: run a :class:`radius.run.spec.RunSpec` over a data set in this process.

The loop of Cohen, Rosenfeld & Kolter (ICML 2019, ``certify.py``): for every
input, sample (:func:`radius.run.step.sample_one`), bound
(:func:`radius.run.step.bound_one`), append one row to the results TSV and one
record to the counts log, flush.  The bound of input ``i`` is computed in a
worker thread while input ``i + 1`` is sampled (:class:`radius.run.step.Overlap`);
certificates are identical to the inline order's.  Resume, validation and
locking are :func:`radius.run.writer.open_run`'s.
"""
from __future__ import annotations

from typing import Any, List, Optional

import numpy as np

from ..run.data import as_dataset, check_labels, data_identity
from ..run.model import noise_fields, sampler_identity
from ..run.progress import progress_bar
from ..run.spec import RunSpec, check_int
from ..run.step import Overlap, sample_one
from ..run.writer import dry_run, open_run

__all__ = ["run_local", "prepare"]


def prepare(spec: RunSpec, sampler, inputs: Any, labels: Any = None, *, limit: Optional[int] = None,
            identify: bool = True):
    """Check the sampler against the spec and the data; return ``(spec, x, y, N)`` with identities filled in.

    ``spec.model`` is kept if set, else :func:`radius.run.model.sampler_identity`
    (only when ``identify``, i.e. when files are written).
    """
    import math

    x, y = as_dataset(inputs, labels)
    s_sigma = getattr(sampler, "sigma", None)
    if s_sigma is not None and not math.isclose(float(s_sigma), spec.sigma, rel_tol=0, abs_tol=0):
        raise ValueError(f"sigma={spec.sigma!r} differs from the sampler's noise level {s_sigma!r}; "
                         "a certificate is only valid for the noise actually added")
    try:
        m = int(sampler.num_classes)
    except AttributeError as e:
        raise ValueError(f"the sampler does not know its number of classes ({e})") from None
    if spec.num_classes is not None and spec.num_classes != m:
        raise ValueError(f"num_classes={spec.num_classes} differs from the sampler's {m}")
    check_labels(y, m)
    if spec.mode == "scores":
        for k in ("simplex", "temperature"):
            v = getattr(sampler, k, None)
            if v is not None and getattr(spec, k) is not None and v != getattr(spec, k):
                raise ValueError(f"{k}={getattr(spec, k)!r} differs from the sampler's {k}={v!r}")
    N = x.shape[0]
    if limit is not None:
        limit = check_int(limit, "limit")
        if limit > N:
            raise ValueError(f"limit={limit} exceeds the number of inputs ({N})")
        N = limit
    bs = getattr(sampler, "batch_size", None)
    model = spec.model if spec.model is not None or not identify else sampler_identity(sampler, x[0])
    spec = spec.with_model(model=model, num_classes=m, batch_size=None if bs is None else int(bs),
                           data=data_identity(x, y), **noise_fields(sampler, spec, int(np.prod(x.shape[1:]))))
    dry_run(spec)
    return spec, x, y, N


def run_local(spec: RunSpec, sampler, inputs: Any, labels: Any = None, *, out: Optional[str] = None,
              counts_log: Optional[str] = None, limit: Optional[int] = None, progress: bool = True,
              overlap: bool = True) -> List[Any]:
    """Certify every input with ``sampler`` under ``spec``; returns one certificate per input, in order.

    Parameters
    ----------
    spec : RunSpec
        A fixed-n spec (a sequential one goes to :func:`radius.engines.sequential.run_sequential`).
    sampler : backends.base.Sampler
        Its ``sigma`` must equal ``spec.sigma``.
    inputs, labels
        Any array-like of inputs with labels, or an iterable of ``(x, y)`` pairs (``labels=None``).
    out, counts_log : str, optional
        Results TSV and raw-counts log (appended, flushed per input, resumed).
    limit : int, optional
        Only the first ``limit`` inputs (not part of the metadata: a larger
        limit later extends the same files).
    progress : bool
        A tqdm bar on stderr.
    overlap : bool
        Compute each bound while the next input is sampled (default; same certificates).

    Examples
    --------
    >>> from backends.base import ArraySampler
    >>> s = ArraySampler(lambda z: np.stack([z[:, 0], -z[:, 0]], axis=1), 2, sigma=0.5)
    >>> spec = RunSpec(sigma=0.5, n=2000, reduction="cohen", radius="Rmono")
    >>> [c.prediction for c in run_local(spec, s, [[1.0, 0.0], [-1.0, 0.0]], [0, 1], progress=False)]
    [0, 1]
    """
    if spec.sequential is not None:
        raise ValueError("run_local takes a fixed-n spec; use radius.engines.sequential.run_sequential")
    spec, x, y, N = prepare(spec, sampler, inputs, labels, limit=limit,
                            identify=out is not None or counts_log is not None)
    run = open_run(spec, out, counts_log, y, N)
    ov = Overlap(spec, enabled=overlap)
    try:
        certs = list(run.kept_certs)
        bar = progress_bar(N, run.start, enabled=progress)
        for i in range(run.start, N):
            s = sample_one(sampler, x[i], int(y[i]), i, spec, run.known_counts(i))
            r = ov.submit(s)
            if r is not None:
                run.write_result(r)
                certs.append(r.cert)
                bar.update()
        r = ov.drain()
        if r is not None:
            run.write_result(r)
            certs.append(r.cert)
            bar.update()
        bar.close()
    finally:
        ov.close()
        run.close()
    return certs

