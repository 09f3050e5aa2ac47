"""The per-input unit of work and the result-file bookkeeping shared by every engine.

:func:`certify_one` is one iteration of the loop of
:func:`radius.pipeline.certify_dataset` (Cohen, Rosenfeld & Kolter, ICML 2019,
``certify.py``): draw ``n0`` selection and ``n`` estimation samples of input
``idx`` with the per-input seeds :func:`radius.pipeline.input_seeds` ``(seed,
idx)`` and turn them into a :class:`radius.certificate.Certificate`.  Because the
samples of input ``idx`` depend only on ``(seed, idx)``, any engine that runs
:func:`certify_one` for every index, on any machine and in any order, and
writes the results in index order with :class:`RunFiles`, produces the file a
sequential run produces (except the ``time`` column).

:func:`open_run` opens (or resumes) the results TSV and the raw-counts log with
:func:`radius.results.open_tsv` / :func:`radius.results.open_counts_log`
exactly as the local engine does: rows kept from an earlier run are
re-certified from their stored counts, and a log that fell behind the TSV (a
kill between the two writes) is completed from the TSV.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import IO, Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import results as res

__all__ = ["InputResult", "certify_one", "RunFiles", "open_run", "cert_config", "dry_run", "precheck_files"]


def cert_config(kw: Mapping[str, Any]) -> Dict[str, Any]:
    """The certification part of a TSV's metadata, exactly as :mod:`radius.pipeline` writes it."""
    from .. import pipeline

    return pipeline._cert_config(dict(kw))


def dry_run(kw: Mapping[str, Any], num_classes: int, n0: int, n: int, mode: str) -> None:
    """Validate the method before any sampling (:func:`radius.pipeline._dry_run`; n0 and n are not needed)."""
    from .. import pipeline

    pipeline._dry_run(dict(kw), num_classes, mode)


@dataclass
class InputResult:
    """What one input's work produces (small: a certificate and two count vectors).

    ``selection``/``estimation`` are ``None`` in ``"scores"`` mode; ``time`` is
    the wall-clock seconds spent on the input where it was computed.
    """

    idx: int
    label: int
    cert: Any
    selection: Optional[np.ndarray]
    estimation: Optional[np.ndarray]
    time: float
    sampled: bool = True

    def tsv_row(self) -> str:
        """The results-TSV line (:func:`radius.results.format_row`)."""
        return res.format_row(self.idx, self.label, self.cert, self.time, self.selection, self.estimation)

    def counts_line(self) -> str:
        """The raw-counts-log line (:func:`radius.results.counts_record`)."""
        return res.counts_record(self.idx, self.label, self.selection, self.estimation)


def certify_one(sampler, x, label: int, idx: int, *, seed: int, n0: int, n: int, cert_kwargs: Mapping[str, Any],
                mode: str = "counts", num_classes: Optional[int] = None,
                counts: Optional[Tuple[Sequence[int], Sequence[int]]] = None) -> InputResult:
    """Certify input ``idx`` as :func:`radius.pipeline.certify_dataset` does.

    Parameters
    ----------
    sampler : backends.base.Sampler
    x : array
        The input ``inputs[idx]``.
    label, idx : int
        Its true class and its index in the data set (which fixes the seeds).
    seed, n0, n : int
        Run seed and sample sizes.
    cert_kwargs : mapping
        Keyword arguments of :func:`radius.certificate.certify` (``sigma, alpha,
        radius, reduction, bound, lipschitz, output_range``).
    mode : {"counts", "scores"}
    num_classes : int, optional
        Checked against the returned count vectors (default ``sampler.num_classes``).
    counts : (selection, estimation), optional
        Counts already drawn (from a raw-counts log): no sampling.

    Returns
    -------
    InputResult

    Examples
    --------
    >>> from backends.base import ArraySampler
    >>> s = ArraySampler(lambda z: np.stack([z[:, 0], -z[:, 0]], axis=1), 2, sigma=0.5)
    >>> kw = dict(sigma=0.5, alpha=0.001, radius="Rmono", reduction="cohen", bound="betting",
    ...           lipschitz=None, output_range=None)
    >>> r = certify_one(s, np.array([1.0, 0.0]), 0, 3, seed=0, n0=100, n=2000, cert_kwargs=kw)
    >>> r.idx, r.cert.prediction, int(r.estimation.sum())
    (3, 0, 2000)
    """
    from ..certificate import certify
    from ..pipeline import _check_counts, input_seeds

    t0 = time.perf_counter()
    if mode == "counts":
        if counts is not None:
            sel = np.asarray(counts[0], dtype=np.int64)
            est = np.asarray(counts[1], dtype=np.int64)
            sampled = False
        else:
            m = int(num_classes if num_classes is not None else sampler.num_classes)
            s_sel, s_est = input_seeds(seed, idx)
            sel = _check_counts(sampler.counts(x, n0, s_sel), m, n0, "selection", idx)
            est = _check_counts(sampler.counts(x, n, s_est), m, n, "estimation", idx)
            sampled = True
        cert = certify(sel, est, **cert_kwargs)
    elif mode == "scores":
        s_sel, s_est = input_seeds(seed, idx)
        sel = est = None
        sampled = True
        cert = certify(sampler.scores(x, n0, s_sel), sampler.scores(x, n, s_est), **cert_kwargs)
    else:
        raise ValueError(f"mode must be one of ('counts', 'scores'), got {mode!r}")
    return InputResult(int(idx), int(label), cert, sel, est, time.perf_counter() - t0, sampled)


class RunFiles:
    """The open results TSV and counts log of a run; rows must be written in index order.

    Attributes
    ----------
    start : int
        First index without a TSV row (rows ``0..start-1`` were kept).
    logged : int
        Number of inputs whose counts are in the log.
    log_records : list of dict
        The kept log records (``idx``, ``selection``, ``estimation``).
    kept_certs : list
        Certificates of the kept rows, recomputed from their stored counts
        (``None`` for rows without counts, i.e. ``"scores"`` mode).
    """

    def __init__(self, tsv: Optional[IO[str]], log: Optional[IO[str]], log_records: List[Dict[str, Any]],
                 kept_certs: list, start: int):
        self.tsv, self.log = tsv, log
        self.log_records = log_records
        self.logged = len(log_records)
        self.kept_certs = kept_certs
        self.start = start
        self.next_idx = start

    def known_counts(self, idx: int) -> Optional[Tuple[list, list]]:
        """Counts of ``idx`` from the log, if logged."""
        if idx < len(self.log_records):
            r = self.log_records[idx]
            return r["selection"], r["estimation"]
        return None

    def write(self, r: InputResult) -> None:
        """Append the result of input ``r.idx`` (which must be the next index) and flush both files."""
        if r.idx != self.next_idx:
            raise RuntimeError(f"results must be written in index order: expected {self.next_idx}, got {r.idx}")
        if self.log is not None and r.idx >= self.logged and r.selection is not None:
            self.log.write(r.counts_line())
            self.log.flush()
            self.logged += 1
        if self.tsv is not None:
            self.tsv.write(r.tsv_row())
            self.tsv.flush()
        self.next_idx += 1

    def close(self) -> None:
        for fh in (self.tsv, self.log):
            if fh is not None:
                fh.close()
        self.tsv = self.log = None


def open_run(out: Optional[str], counts_log: Optional[str], sampling: Optional[Mapping[str, Any]],
             cert_config: Mapping[str, Any], labels: np.ndarray, total: int,
             cert_kwargs: Mapping[str, Any]) -> RunFiles:
    """Open (or resume) the result files of a run, as :func:`radius.pipeline.certify_dataset` does.

    Parameters
    ----------
    out, counts_log : str or None
        Paths of the results TSV and the raw-counts log.
    sampling : mapping or None
        The sampling configuration (metadata of the log; the TSV's metadata is
        ``sampling`` updated with ``cert_config``).  ``None`` when neither file
        is written.
    cert_config : mapping
        ``alpha, radius, reduction, bound, lipschitz, output_range`` (:func:`cert_config`).
    labels : array of int
        True classes (for log records completed from the TSV).
    total : int
        Number of inputs of the run (rows beyond it are kept but not re-certified).
    cert_kwargs : mapping
        Keyword arguments of :func:`radius.certificate.certify`.
    """
    from ..certificate import certify

    tsv = log = None
    log_recs: List[Dict[str, Any]] = []
    tsv_rows: List[str] = []
    try:
        if counts_log is not None:
            log, log_recs = res.open_counts_log(counts_log, sampling)
        if out is not None:
            cfg = dict(sampling)
            cfg.update(cert_config)
            tsv, tsv_rows = res.open_tsv(out, cfg)
        certs: list = []
        for i, line in enumerate(tsv_rows[:total]):
            f = dict(zip(res.COLUMNS, line.split("\t")))
            sel, est = res.str_to_counts(f["selection_counts"]), res.str_to_counts(f["estimation_counts"])
            if log is not None and i >= len(log_recs):
                # the TSV got ahead of the log (killed in between): complete the log from the TSV
                log.write(res.counts_record(i, labels[i], sel, est))
                log.flush()
                log_recs.append({"idx": i, "selection": sel.tolist(), "estimation": est.tolist()})
            certs.append(None if sel is None else certify(sel, est, **cert_kwargs))
    except BaseException:
        for fh in (tsv, log):
            if fh is not None:
                fh.close()
        raise
    return RunFiles(tsv, log, log_recs, certs, min(len(tsv_rows), total))


def precheck_files(out: Optional[str], counts_log: Optional[str], known: Mapping[str, Any],
                   cert_cfg: Mapping[str, Any]) -> None:
    """Refuse early an existing TSV / counts log of another run, on the keys known before any model is loaded.

    :func:`open_run` checks the full configuration; an engine that must start
    workers before it knows the rest (model identity, classes, batch size)
    calls this first so that a wrong command fails in milliseconds.  Only keys
    present in ``known`` (and, for the TSV, ``cert_cfg``) are compared; an
    unreadable or foreign file is left to :func:`open_run` to report.
    """
    checks = []
    if counts_log is not None:
        checks.append((counts_log, res.LOG_FORMAT, dict(known), "--counts-log"))
    if out is not None:
        checks.append((out, res.TSV_FORMAT, {**known, **cert_cfg}, "--out"))
    for path, kind, cfg, what in checks:
        try:
            with open(path, "r", encoding="utf-8", errors="replace") as f:
                first = f.readline()
        except OSError:
            continue
        if not first.endswith("\n"):
            continue  # empty or killed while writing the metadata: open_run starts afresh
        try:
            old = res._parse_meta(first.rstrip("\n"), kind, path)
        except ValueError:
            continue
        new = res._canonical(cfg)
        diffs = res._diff({k: old.get(k) for k in new}, new)
        if diffs:
            raise ValueError(f"{path!r} holds results of another run ({'; '.join(diffs)}); refusing to mix them. "
                             f"Choose another {what} path or delete the file to start afresh.")
