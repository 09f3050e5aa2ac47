"""Result files of a run: the results TSV, the raw-counts log, their lock, and validation on read.

Two append-only files, both flushed after every input so that a crash loses
at most the input being processed:

* **results TSV**: a metadata line ``# confbounds-certify/1 {json}`` (the run
  specification, :meth:`radius.run.spec.RunSpec.metadata`), the column header,
  then one row per input in index order.  The first six columns are those of
  Cohen, Rosenfeld & Kolter (ICML 2019, ``code/certify.py``):
  ``idx label predict radius correct time``; then bounds, method and raw
  counts (:data:`COLUMNS`); sequential runs add :data:`SEQUENTIAL_COLUMNS`.
  Read it with ``pandas.read_csv(path, sep="\\t", comment="#")`` or
  :func:`read_tsv`.
* **raw-counts log** (JSON lines): a metadata line with the sampling part of
  the specification, then one record per input
  ``{"idx", "label", "selection", "estimation"}`` (sequential runs add
  ``"looks"``, the cumulative successes at each look).
  :func:`radius.pipeline.recertify` recomputes certificates from it.

Every file that is read is validated, and every error names the file, the
line (1-based) and the bad value: the metadata must be a JSON object with the
expected keys; counts must be JSON integers (not ``1.5``, not ``"7"``), one per
class, non-negative, summing to ``n0`` and to ``n``; labels must lie in
``[0, num_classes)``; ``idx`` must run 0, 1, 2, ...  On resume every kept TSV
row is recomputed from its stored counts by the engine (``check_row``) and
must equal the stored row in every column but ``time``.  Only a partially
written last line (no newline: the process was killed while writing it) is
dropped; any other bad line is an error.

Resuming: a file is resumed only if its metadata equals the current run's;
a file that holds only the preamble (a first run that failed before any row)
is started afresh.  Each file is locked (:mod:`filelock`, portable) while
open, so two processes never append to one file.

Values are written deterministically (integers with ``str``, floats with
``repr``), so a resumed run's file equals an uninterrupted run's byte for
byte except the ``time`` column.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "TSV_FORMAT", "LOG_FORMAT", "COLUMNS", "SEQUENTIAL_COLUMNS", "RunFile", "array_hash", "file_hash",
    "format_row", "counts_record", "counts_to_str", "str_to_counts", "open_tsv", "open_counts_log",
    "read_tsv", "read_counts_log", "parse_row", "check_counts", "FileError", "meta_line", "parse_meta",
]

TSV_FORMAT = "confbounds-certify/1"
LOG_FORMAT = "confbounds-counts/1"

#: Columns of the results TSV: Cohen et al.'s six, then bounds, method and counts.
COLUMNS: Tuple[str, ...] = (
    "idx", "label", "predict", "radius", "correct", "time",
    "top", "runner_up", "p_a_lower", "p_b_upper", "margin_lower", "margin",
    "radius_kind", "reduction", "bound", "alpha", "n_tests", "sigma", "n0", "n",
    "selection_counts", "estimation_counts",
)
#: Extra columns of a sequential run (after :data:`COLUMNS`).
SEQUENTIAL_COLUMNS: Tuple[str, ...] = ("p_a_upper", "looks", "stopped_by", "decisions")

_INT_COLS = {"idx", "label", "predict", "correct", "top", "runner_up", "n_tests", "n0", "n"}
_FLOAT_COLS = {"radius", "p_a_lower", "p_b_upper", "margin_lower", "alpha", "sigma", "p_a_upper"}


class FileError(ValueError):
    """A bad file: the message names the file, the line and the value."""


def _err(path: str, line: Optional[int], msg: str) -> FileError:
    where = f"{path}" if line is None else f"{path}, line {line}"
    return FileError(f"{where}: {msg}")


# ---------------------------------------------------------------------------
# hashing and formatting
# ---------------------------------------------------------------------------

def array_hash(*arrays) -> str:
    """SHA-256 (first 16 hex digits) of arrays' dtype, shape and bytes.

    >>> array_hash(np.zeros(3)) == array_hash(np.zeros(3))
    True
    >>> array_hash(np.zeros(3)) == array_hash(np.zeros(3, dtype=np.float32))
    False
    """
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str(a.dtype.str).encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def file_hash(path: str) -> str:
    """SHA-256 (first 16 hex digits) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    s = str(v)
    if "\t" in s or "\n" in s:
        raise ValueError(f"a TSV field may not contain a tab or newline, got {s!r}")
    return s


def counts_to_str(counts) -> str:
    """``[3, 0, 97] -> "3,0,97"`` (empty string for ``None``).

    >>> counts_to_str([3, 0, 97])
    '3,0,97'
    """
    if counts is None:
        return ""
    return ",".join(str(int(c)) for c in np.asarray(counts).ravel())


def str_to_counts(s: str) -> Optional[np.ndarray]:
    """Inverse of :func:`counts_to_str`; ``ValueError`` unless every entry is a plain decimal integer.

    >>> str_to_counts("3,0,97").tolist()
    [3, 0, 97]
    """
    if s == "":
        return None
    parts = s.split(",")
    for p in parts:
        q = p[1:] if p.startswith("-") else p
        if not q.isdigit() or not q.isascii():
            raise ValueError(f"count {p!r} is not an integer")
    return np.array([int(c) for c in parts], dtype=np.int64)


def format_row(idx: int, label: int, cert, time_s: float, selection=None, estimation=None,
               sequential: Optional[Mapping[str, Any]] = None) -> str:
    """One TSV line (with trailing newline) for a certificate.

    ``correct`` is 1 when the prediction equals the label (an abstention is
    never correct), as in Cohen et al.  ``sequential`` holds the values of
    :data:`SEQUENTIAL_COLUMNS` for a sequential run.
    """
    pred = int(cert.prediction)
    g = lambda name: getattr(cert, name, None)  # noqa: E731  (optional attributes)
    values = [
        int(idx), int(label), pred, float(cert.radius), int(pred == int(label)), f"{time_s:.4f}",
        g("top"), g("runner_up"), cert.p_a_lower, cert.p_b_upper, cert.margin_lower, g("margin"),
        cert.radius_kind, cert.reduction, cert.bound, cert.alpha, g("n_tests"), cert.sigma, cert.n0, cert.n,
        counts_to_str(selection), counts_to_str(estimation),
    ]
    if sequential is not None:
        values += [sequential[k] for k in SEQUENTIAL_COLUMNS]
    return "\t".join(_fmt(v) for v in values) + "\n"


def counts_record(idx: int, label: int, selection, estimation, looks: Optional[Sequence[int]] = None) -> str:
    """One counts-log line (with trailing newline)."""
    rec: Dict[str, Any] = {"idx": int(idx), "label": int(label),
                           "selection": [int(c) for c in np.asarray(selection).ravel()],
                           "estimation": [int(c) for c in np.asarray(estimation).ravel()]}
    if looks is not None:
        rec["looks"] = [int(v) for v in looks]
    return json.dumps(rec, separators=(",", ":")) + "\n"


def meta_line(kind: str, config: Mapping[str, Any]) -> str:
    """The first line of a file of ``kind`` with metadata ``config``."""
    return f"# {kind} " + json.dumps(dict(config), sort_keys=True, separators=(",", ":")) + "\n"


def parse_meta(line: str, kind: str, path: str) -> Dict[str, Any]:
    """The metadata of a first line (``FileError`` naming the file unless it is a ``kind`` line)."""
    prefix = f"# {kind} "
    if not line.startswith(prefix):
        raise _err(path, 1, f"not a {kind} file (its first line is {line[:60]!r})")
    try:
        meta = json.loads(line[len(prefix):])
    except json.JSONDecodeError:
        raise _err(path, 1, f"unreadable metadata {line[len(prefix):][:80]!r}") from None
    if not isinstance(meta, dict):
        raise _err(path, 1, f"the metadata must be a JSON object, got {line[len(prefix):][:80]!r}")
    return meta


def _canonical(config: Mapping[str, Any]) -> Dict[str, Any]:
    """Round-trip through JSON so comparisons see what the file stores."""
    return json.loads(json.dumps(dict(config), sort_keys=True))


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> List[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: file has {old.get(k)!r}, this run has {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


# ---------------------------------------------------------------------------
# validation of values
# ---------------------------------------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_counts(v, what: str, m: Optional[int], total: Optional[int]) -> np.ndarray:
    """A count vector from a file: JSON integers, ``m`` of them, non-negative, summing to ``total``.

    Raises ``ValueError`` (without file and line: the caller adds them).
    """
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if not isinstance(v, list) or not v:
        raise ValueError(f"{what} counts must be a non-empty list of integers, got {v!r:.80}")
    bad = [c for c in v if not _is_int(c)]
    if bad:
        raise ValueError(f"{what} counts must be integers, got {bad[0]!r}")
    if m is not None and len(v) != m:
        raise ValueError(f"{what} counts must have one entry per class ({m}), got {len(v)}")
    if any(c < 0 for c in v):
        raise ValueError(f"{what} counts must be >= 0, got {min(v)}")
    if total is not None and sum(v) != total:
        raise ValueError(f"{what} counts must sum to {total}, got sum {sum(v)}")
    return np.asarray(v, dtype=np.int64)


def _check_label(v, m: Optional[int]) -> int:
    if not _is_int(v):
        raise ValueError(f"label must be an integer, got {v!r}")
    if v < 0 or (m is not None and v >= m):
        raise ValueError(f"label {v} is out of range [0, {m})")
    return int(v)


_LOG_META = {"sigma": float, "n0": int, "num_classes": int, "seed": int}


def _check_log_meta(meta: Mapping[str, Any], path: str) -> None:
    for k, t in _LOG_META.items():
        v = meta.get(k)
        ok = (_is_int(v) and v >= (2 if k == "num_classes" else 0 if k == "seed" else 1)) if t is int else \
             (isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0)
        if not ok:
            raise _err(path, 1, f"metadata key {k!r} must be a {'positive integer' if t is int else 'number > 0'}, "
                                f"got {v!r}")
    if meta.get("mode") != "counts":
        raise _err(path, 1, f"metadata key 'mode' must be 'counts', got {meta.get('mode')!r}")
    n = meta.get("n")
    if meta.get("sequential") is None:
        if not (_is_int(n) and n >= 1):
            raise _err(path, 1, f"metadata key 'n' must be a positive integer, got {n!r}")
    elif n is not None:
        raise _err(path, 1, f"metadata key 'n' must be null in a sequential log, got {n!r}")


def check_record(rec: Any, position: int, meta: Mapping[str, Any]) -> Dict[str, Any]:
    """One counts-log record, validated against the log's metadata (``ValueError`` without file/line)."""
    if not isinstance(rec, dict):
        raise ValueError(f"a record must be a JSON object, got {rec!r:.60}")
    seq = meta.get("sequential") is not None
    keys = {"idx", "label", "selection", "estimation"} | ({"looks"} if seq else set())
    if set(rec) != keys:
        raise ValueError(f"a record must have exactly the keys {sorted(keys)}, got {sorted(rec)}")
    if not _is_int(rec["idx"]) or rec["idx"] != position:
        raise ValueError(f"idx must be {position} (records in order), got {rec['idx']!r}")
    m = meta.get("num_classes")
    out = {"idx": position, "label": _check_label(rec["label"], m)}
    out["selection"] = check_counts(rec["selection"], "selection", m, meta["n0"]).tolist()
    if seq:
        looks = rec["looks"]
        if not isinstance(looks, list) or not looks or not all(_is_int(v) for v in looks):
            raise ValueError(f"looks must be a non-empty list of integers, got {looks!r:.60}")
        est = check_counts(rec["estimation"], "estimation", m, None)
        t = int(est.sum())
        if t > int(meta["sequential"]["max_n"]):
            raise ValueError(f"estimation counts sum to {t}, more than max_n = {meta['sequential']['max_n']}")
        if any(b < a for a, b in zip(looks, looks[1:])) or looks[0] < 0:
            raise ValueError(f"looks must be non-decreasing cumulative successes, got {looks!r:.60}")
        out["estimation"] = est.tolist()
        out["looks"] = list(looks)
    else:
        out["estimation"] = check_counts(rec["estimation"], "estimation", m, meta["n"]).tolist()
    return out


def parse_row(line: str, header: Sequence[str]) -> Dict[str, Any]:
    """A TSV row as typed values (``ValueError`` without file/line naming the column and the value)."""
    fields = line.split("\t")
    if len(fields) != len(header):
        raise ValueError(f"the row has {len(fields)} fields, the header has {len(header)}")
    row: Dict[str, Any] = {}
    for name, v in zip(header, fields):
        try:
            if name in _INT_COLS:
                row[name] = int(v) if v not in ("",) else None
                if v.strip() != v or (v and not v.lstrip("-").isdigit()):
                    raise ValueError
            elif name == "time":
                row[name] = _parse_time(v)
            elif name in _FLOAT_COLS:
                row[name] = float(v) if v != "" else float("nan")
            elif name in ("selection_counts", "estimation_counts"):
                row[name] = str_to_counts(v)
            else:
                row[name] = v
        except ValueError:
            raise ValueError(f"column {name!r} holds {v!r:.40}, not a valid value") from None
    return row


def _parse_time(v: str) -> float:
    """Seconds from ``"12.5"`` or Cohen et al.'s ``str(timedelta)`` form ``"0:00:01.5"``."""
    if v == "":
        return float("nan")
    if ":" in v:
        total = 0.0
        for part in v.split(":"):
            total = 60.0 * total + float(part)
        return total
    return float(v)


# ---------------------------------------------------------------------------
# opening for append (resume), with a portable lock
# ---------------------------------------------------------------------------

class RunFile:
    """An append-only, locked result file; ``write`` appends a line and flushes."""

    def __init__(self, path: str, fh, lock):
        self.path, self._fh, self._lock = path, fh, lock

    def write(self, line: str) -> None:
        self._fh.write(line.encode("utf-8"))
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _acquire(path: str):
    from filelock import FileLock, Timeout

    lock = FileLock(path + ".lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise FileError(f"{path}: is being written by another process (lock {path}.lock held); "
                        "refusing to append to it") from None
    return lock


def _open_append(path: str, preamble: str, kind: str, meta: Mapping[str, Any], what: str,
                 check_line: Callable[[str, int, int], Any]) -> Tuple[RunFile, list]:
    """Open ``path`` for appending after validating it; return the file and the checked rows.

    ``check_line(line, position, lineno)`` returns the parsed row or raises
    ``ValueError`` (this function adds the file and the line).  The number of
    preamble lines is ``preamble.count("\\n")``.
    """
    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise FileError(f"{path}: cannot create the directory {d!r}: a file of that name exists") from None
    if os.path.isdir(path):
        raise FileError(f"{path}: is a directory, not a {what} file")
    lock = _acquire(path)
    fb = None
    try:
        fb = open(path, "a+b")  # creates, never truncates; writes go to the end
        fb.seek(0)
        data = fb.read()
        pre = preamble.encode()
        rows: list = []
        n_pre = preamble.count("\n")
        if len(data) < len(pre) and pre.startswith(data):
            fresh = True  # empty, or killed while writing the preamble
        else:
            text = data.decode("utf-8", errors="replace")
            lines = text.split("\n")
            complete = lines[:-1]
            old = parse_meta(lines[0], kind, path)
            body = complete[n_pre:] if len(complete) >= n_pre else []
            fresh = False
            diffs = _diff(old, _canonical(meta))
            if diffs:
                if not any(ln for ln in body) and len(lines) <= n_pre + 1:
                    fresh = True  # only a preamble from a run that failed before its first row
                else:
                    raise _err(path, 1, f"holds results of another run ({'; '.join(diffs)}); refusing to mix "
                                        f"them. Choose another {what} path or delete the file to start afresh.")
            elif not data.startswith(pre):
                head = complete[1] if len(complete) > 1 else lines[1] if len(lines) > 1 else ""
                raise _err(path, 2, f"the header {head[:60]!r} is not the expected one; refusing to append")
            if not fresh:
                keep = len(pre)
                for j, line in enumerate(body):
                    lineno = n_pre + j + 1
                    try:
                        rows.append(check_line(line, j, lineno))
                    except ValueError as e:
                        raise _err(path, lineno, f"{e} (line {line[:60]!r}); the file is corrupt or was edited, "
                                                 "refusing to resume it") from None
                    keep += len(line.encode("utf-8")) + 1
                if keep < len(data):  # a partially written last line (killed mid-write): drop it
                    fb.truncate(keep)
                    fb.flush()
        if fresh:
            fb.truncate(0)
            fb.write(pre)
            fb.flush()
    except BaseException:
        if fb is not None:
            fb.close()
        lock.release()
        raise
    return RunFile(path, fb, lock), rows


def open_tsv(path: str, meta: Mapping[str, Any], columns: Sequence[str] = COLUMNS,
             check_row: Optional[Callable[[Dict[str, Any], str, int], Any]] = None) -> Tuple[RunFile, list]:
    """Open a results TSV for appending; returns ``(file, kept)``.

    Each kept row is parsed (:func:`parse_row`), its ``idx`` must equal its
    position, and ``check_row(row, line, position)`` (the engine's recompute)
    returns what is kept for it (e.g. the recomputed certificate) or raises.
    """
    preamble = meta_line(TSV_FORMAT, meta) + "\t".join(columns) + "\n"

    def check(line: str, i: int, lineno: int):
        row = parse_row(line, columns)
        if row["idx"] != i:
            raise ValueError(f"idx must be {i} (rows in order), got {row['idx']!r}")
        return check_row(row, line, i) if check_row is not None else row

    return _open_append(path, preamble, TSV_FORMAT, meta, "--out", check)


def open_counts_log(path: str, meta: Mapping[str, Any]) -> Tuple[RunFile, List[Dict[str, Any]]]:
    """Open a raw-counts log for appending; returns ``(file, kept_records)`` (validated records)."""
    preamble = meta_line(LOG_FORMAT, meta)
    meta_c = _canonical(meta)

    def check(line: str, i: int, lineno: int):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError("not valid JSON") from None
        return check_record(rec, i, meta_c)

    return _open_append(path, preamble, LOG_FORMAT, meta, "--counts-log", check)


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------

def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FileError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise FileError(f"{path}: cannot read it ({e.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise _err(path, line, "is not UTF-8 text") from None


def read_counts_log(path: str) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """Read and validate a raw-counts log: ``(sampling_metadata, records)`` in idx order.

    A partially written last line (no newline) is ignored; any other bad line
    raises :class:`FileError` naming the file, the line and the value.
    """
    text = _read_text(path)
    lines = text.split("\n")
    if not lines[0]:
        raise _err(path, 1, "is empty, not a counts log")
    meta = parse_meta(lines[0], LOG_FORMAT, path)
    _check_log_meta(meta, path)
    records = []
    for i, line in enumerate(lines[1:-1]):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise _err(path, i + 2, f"not valid JSON: {line[:60]!r}") from None
        try:
            records.append(check_record(rec, i, meta))
        except ValueError as e:
            raise _err(path, i + 2, str(e)) from None
    return meta, records


def read_tsv(path: str) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """Read a results TSV: ``(metadata, columns)`` with numeric columns as arrays.

    Works on Cohen et al.'s plain files too (no metadata line: the metadata is
    empty; only the columns present are returned).  A partially written last
    line is ignored; a bad value raises :class:`FileError` naming the file, the
    line and the value.
    """
    lines = _read_text(path).split("\n")[:-1]  # the part after the last newline is empty or partial
    meta: Dict[str, Any] = {}
    off = 1
    if lines and lines[0].startswith("# "):
        meta = parse_meta(lines[0], TSV_FORMAT, path)
        lines = lines[1:]
        off = 2
    if not lines:
        raise _err(path, off, "has no header line")
    header = lines[0].split("\t")
    for need in ("label", "predict", "radius", "correct"):
        if need not in header:
            raise _err(path, off, f"lacks the column {need!r} (header: {header})")
    rows = []
    for j, ln in enumerate(lines[1:]):
        if not ln.strip():
            continue
        try:
            r = parse_row(ln, header)
        except ValueError as e:
            raise _err(path, off + 1 + j, str(e)) from None
        if not (r["radius"] >= 0) or r["radius"] != r["radius"]:
            raise _err(path, off + 1 + j, f"radius {r['radius']!r} is not a number >= 0")
        if r["correct"] not in (0, 1):
            raise _err(path, off + 1 + j, f"correct must be 0 or 1, got {r['correct']!r}")
        rows.append(r)
    cols: Dict[str, np.ndarray] = {}
    for name in header:
        vals = [r[name] for r in rows]
        if name in _INT_COLS:
            cols[name] = np.array([-1 if v is None else v for v in vals], dtype=np.int64)
        elif name in _FLOAT_COLS or name == "time":
            cols[name] = np.array(vals, dtype=np.float64)
        else:
            cols[name] = np.array([counts_to_str(v) if isinstance(v, np.ndarray) or v is None else v
                                   for v in vals], dtype=object)
    return meta, cols
