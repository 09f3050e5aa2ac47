"""Open (or resume) a run's two files and append results in index order: shared by every engine.

:func:`open_run` opens the results TSV and the counts log
(:func:`radius.run.files.open_tsv` / :func:`radius.run.files.open_counts_log`)
with the spec's metadata, recomputes every kept TSV row from its stored
counts (fixed-n: :func:`radius.run.step.tsv_row_checker`; sequential:
:func:`radius.sequential.replay`) and completes a log that fell behind the
TSV (a kill between the two writes) from the TSV.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import files
from .spec import RunSpec
from .step import tsv_row_checker

__all__ = ["RunWriter", "open_run", "dry_run"]


def dry_run(spec: RunSpec) -> None:
    """Validate the method on tiny dummy samples before any sampling (errors come from ``certify``)."""
    if spec.sequential is not None:
        return
    from ..certificate import certify

    m = max(int(spec.num_classes or 2), 2)
    if spec.mode == "counts":
        sel = np.zeros(m, dtype=np.int64)
        sel[0] = 1
        est = np.zeros(m, dtype=np.int64)
        est[0] = 2
    else:
        sel = np.zeros((1, m))
        sel[:, 0] = 1.0
        est = np.zeros((2, m))
        est[:, 0] = 1.0
    if spec.noise == "sound" and spec.noise_tv is None:  # known once the sampler is loaded; any value checks
        spec = spec.with_model(noise_tv=0.0)
    certify(sel, est, **spec.cert_kwargs())


class RunWriter:
    """The open result files of a run; results must be written in index order.

    Attributes
    ----------
    start : int
        First index without a TSV row (rows ``0..start-1`` were kept).
    kept_certs : list
        Certificates of the kept rows, recomputed from their stored counts
        (``None`` in scores mode, where no samples are stored).
    """

    def __init__(self, spec: RunSpec, tsv, log, log_records: List[Dict[str, Any]], kept_certs: list, start: int):
        self.spec = spec
        self.tsv, self.log = tsv, log
        self.log_records = log_records
        self.logged = len(log_records)
        self.kept_certs = kept_certs
        self.start = start
        self.next_idx = start

    def known_counts(self, idx: int) -> Optional[Tuple[list, list]]:
        """Counts of ``idx`` from the log, if logged (fixed-n runs: they are reused, not resampled)."""
        if self.spec.sequential is None and idx < len(self.log_records):
            r = self.log_records[idx]
            return r["selection"], r["estimation"]
        return None

    def write(self, idx: int, tsv_line: str, log_line: Optional[str]) -> None:
        """Append input ``idx``'s row (it must be the next index) and its log record; flush both."""
        if idx != self.next_idx:
            raise RuntimeError(f"results must be written in index order: expected {self.next_idx}, got {idx}")
        if self.log is not None and idx >= self.logged and log_line is not None:
            self.log.write(log_line)
            self.logged += 1
        if self.tsv is not None:
            self.tsv.write(tsv_line)
        self.next_idx += 1

    def write_result(self, r) -> None:
        """Append an :class:`radius.run.step.InputResult`."""
        self.write(r.idx, r.tsv_row(), r.counts_line() if r.selection is not None else None)

    def close(self) -> None:
        for fh in (self.tsv, self.log):
            if fh is not None:
                fh.close()
        self.tsv = self.log = None


def _sequential_checker(spec: RunSpec, labels: np.ndarray):
    from ..sequential import replay_row

    def check(row: Dict[str, Any], line: str, i: int):
        lab = row["label"]
        if i < len(labels) and lab != int(labels[i]):
            raise ValueError(f"label {lab!r} differs from the data's label {int(labels[i])} of input {i}")
        if spec.sequential.soft:  # betting: the score values are not stored; format and label only
            return None
        cert, extra = replay_row(spec, row)
        fields = files.format_row(i, lab, cert, 0.0, row["selection_counts"], row["estimation_counts"],
                                  extra).rstrip("\n").split("\t")
        stored = line.split("\t")
        fields[5] = stored[5]
        if fields != stored:
            cols = files.COLUMNS + files.SEQUENTIAL_COLUMNS
            bad = next(k for k, (a, b) in enumerate(zip(fields, stored)) if a != b)
            raise ValueError(f"column {cols[bad]!r} holds {stored[bad]!r}, but replaying the row's stored looks "
                             f"gives {fields[bad]!r}")
        return cert

    return check


def open_run(spec: RunSpec, out: Optional[str], counts_log: Optional[str], labels: np.ndarray,
             total: int) -> RunWriter:
    """Open (or resume) the result files of a run described by ``spec`` (identities filled in).

    Parameters
    ----------
    spec : RunSpec
        With ``model``, ``data`` and ``num_classes`` set (they are in the metadata).
    out, counts_log : str or None
        Paths of the results TSV and the raw-counts log.
    labels : array of int
        The data's labels (kept rows must carry them; log records completed from the TSV use them).
    total : int
        Number of inputs of the run (rows beyond it are kept but not re-certified).
    """
    if counts_log is not None and spec.mode != "counts":
        raise ValueError("a counts log applies only to mode='counts' (score matrices are not logged)")
    seq = spec.sequential is not None
    columns = files.COLUMNS + (files.SEQUENTIAL_COLUMNS if seq else ())
    check = _sequential_checker(spec, labels) if seq else tsv_row_checker(spec, labels)
    tsv = log = None
    log_recs: List[Dict[str, Any]] = []
    kept: list = []
    rows: List[Tuple[Dict[str, Any], Any]] = []
    try:
        if counts_log is not None:
            log, log_recs = files.open_counts_log(counts_log, spec.sampling_metadata())
        if out is not None:
            def keep_row(row, line, i):
                c = check(row, line, i)
                rows.append((row, c))
                return c

            tsv, kept = files.open_tsv(out, spec.metadata(), columns, keep_row)
        certs: list = []
        for i, (row, _) in enumerate(rows[:min(len(rows), len(log_recs))]):
            if (row["selection_counts"] is not None
                    and (row["selection_counts"].tolist() != log_recs[i]["selection"]
                         or row["estimation_counts"].tolist() != log_recs[i]["estimation"])):
                raise files.FileError(f"{out}, line {i + 3}: its counts differ from record {i} of the counts log "
                                      f"{counts_log}; the files belong to different runs or were edited")
        for i, (row, cert) in enumerate(rows[:total]):
            if log is not None and i >= len(log_recs):
                # the TSV got ahead of the log (killed in between): complete the log from the TSV
                looks = [int(v) for v in row["looks"].split(",")] if seq else None
                log.write(files.counts_record(i, labels[i], row["selection_counts"], row["estimation_counts"],
                                              looks))
                log_recs.append({"idx": i, "selection": row["selection_counts"].tolist(),
                                 "estimation": row["estimation_counts"].tolist()})
            certs.append(None if cert is None else getattr(cert, "cert", cert))
    except BaseException:
        for fh in (tsv, log):
            if fh is not None:
                fh.close()
        raise
    return RunWriter(spec, tsv, log, log_recs, certs, min(len(kept), total))
