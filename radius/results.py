"""Result files of a certification run: the results TSV and the raw-counts log.

Two append-only files, both flushed after every input so a crash loses at most
the input being processed:

* **results TSV** (one row per input).  The first line is a metadata line
  ``# confbounds-certify/1 {json}`` recording the run configuration; the second
  line is the column header; then one row per input.  The first six columns are
  those of Cohen, Rosenfeld & Kolter (ICML 2019, ``code/certify.py``):
  ``idx label predict radius correct time``; the others record the bounds, the
  method and the raw counts.  Read it with
  ``pandas.read_csv(path, sep="\\t", comment="#")`` (or ``skiprows=1``) or
  with :func:`read_tsv`.
* **raw-counts log** (JSON lines).  The first line records the *sampling*
  configuration (model, data, sigma, n0, n, seed, ...); every other line holds
  the selection and estimation counts of one input.  :func:`radius.pipeline.recertify`
  recomputes certificates from it under any method without touching the model.

Resuming (:func:`open_tsv`, :func:`open_counts_log`): an existing file is
accepted only if its metadata equals the current configuration (otherwise a
``ValueError`` lists the differing keys: results of different runs are never
mixed); its complete rows are kept, and a partially written last line (the
process was killed while writing it) is truncated away.

Every value is written deterministically (integers with ``str``, floats with
``repr``, the shortest string that round-trips), so a resumed run's file equals
an uninterrupted run's byte for byte except the ``time`` column (wall-clock
seconds spent on that input in the process that computed it).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from typing import IO, Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

__all__ = [
    "TSV_FORMAT", "LOG_FORMAT", "COLUMNS", "SAMPLING_KEYS", "CERT_KEYS",
    "array_hash", "file_hash", "format_row", "open_tsv", "open_counts_log",
    "read_tsv", "read_counts_log", "counts_to_str", "str_to_counts", "counts_record",
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

#: Configuration keys that fix the samples (shared by the TSV and the counts log).
SAMPLING_KEYS: Tuple[str, ...] = ("model", "data", "sigma", "n0", "n", "seed", "batch_size", "mode")
#: Configuration keys that fix how samples become certificates (TSV only).
CERT_KEYS: Tuple[str, ...] = ("alpha", "radius", "reduction", "bound", "lipschitz", "output_range")


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
    """``[3, 0, 97] -> "3,0,97"`` (empty string for ``None``)."""
    if counts is None:
        return ""
    return ",".join(str(int(c)) for c in np.asarray(counts).ravel())


def str_to_counts(s: str) -> Optional[np.ndarray]:
    """Inverse of :func:`counts_to_str`."""
    if s == "":
        return None
    return np.array([int(c) for c in s.split(",")], dtype=np.int64)


def format_row(idx: int, label: int, cert, time_s: float, selection=None, estimation=None) -> str:
    """One TSV line (with trailing newline) for a certificate.

    ``cert`` is a :class:`radius.certificate.Certificate` (attributes
    ``prediction, radius, top, runner_up, p_a_lower, p_b_upper, margin_lower,
    margin, radius_kind, reduction, bound, alpha, n_tests, sigma, n0, n``;
    ``p_a_lower``/``p_b_upper`` are ``nan`` for the exact reduction, which
    bounds the margin directly).  ``correct`` is 1 when the
    prediction equals the label (an abstention is never correct), as in Cohen
    et al.
    """
    pred = int(cert.prediction)
    g = lambda name: getattr(cert, name, None)  # noqa: E731  (optional attributes)
    values = [
        int(idx), int(label), pred, float(cert.radius), int(pred == int(label)), f"{time_s:.4f}",
        g("top"), g("runner_up"), cert.p_a_lower, cert.p_b_upper, cert.margin_lower, g("margin"),
        cert.radius_kind, cert.reduction, cert.bound, cert.alpha, g("n_tests"), cert.sigma, cert.n0, cert.n,
        counts_to_str(selection), counts_to_str(estimation),
    ]
    return "\t".join(_fmt(v) for v in values) + "\n"


def _meta_line(kind: str, config: Mapping[str, Any]) -> str:
    return f"# {kind} " + json.dumps(dict(config), sort_keys=True, separators=(",", ":")) + "\n"


def _parse_meta(line: str, kind: str, path: str) -> Dict[str, Any]:
    prefix = f"# {kind} "
    if not line.startswith(prefix):
        raise ValueError(
            f"{path!r} is not a {kind} file (its first line is {line[:60]!r}); refusing to append to it"
        )
    try:
        return json.loads(line[len(prefix):])
    except json.JSONDecodeError:
        raise ValueError(f"{path!r}: unreadable metadata line {line[:80]!r}") from None


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> List[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: file has {old.get(k)!r}, this run has {new.get(k)!r}" for k in keys
            if old.get(k) != new.get(k)]


def _canonical(config: Mapping[str, Any]) -> Dict[str, Any]:
    """Round-trip through JSON so comparisons see what the file stores."""
    return json.loads(json.dumps(dict(config), sort_keys=True))


# ---------------------------------------------------------------------------
# opening for append (resume)
# ---------------------------------------------------------------------------

def _lock(fb, path: str) -> None:
    """Exclusive advisory lock (POSIX ``flock``): two processes never append to one file."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover  (Windows: no advisory lock)
        return
    try:
        fcntl.flock(fb.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fb.close()
        raise ValueError(f"{path!r} is being written by another process; refusing to append to it") from None


def _open_append(path: str, preamble: str, kind: str, config: Mapping[str, Any], what: str,
                 row_ok) -> Tuple[IO[str], List[str]]:
    """Open ``path`` for appending after checking its preamble; return the kept rows.

    ``row_ok(line_without_newline, position)`` says whether a line is a valid
    row at 0-based ``position``.  The file is truncated after the last valid
    complete row; a complete but invalid row followed by more data means the
    file is corrupt (or was edited) and is refused.  The file stays locked
    (``flock``) until it is closed.
    """
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fb = open(path, "a+b")  # creates, never truncates; writes go to the end
    _lock(fb, path)
    try:
        fb.seek(0)
        data = fb.read()
        pre = preamble.encode()
        rows: List[str] = []
        if len(data) < len(pre) and pre.startswith(data):
            # empty file, or killed while writing the preamble: start afresh
            fb.truncate(0)
            fb.write(pre)
            fb.flush()
        else:
            rows = _check_existing(data, pre, path, kind, config, what, row_ok, fb)
    except BaseException:
        fb.close()
        raise
    return io.TextIOWrapper(fb, encoding="utf-8", newline="\n"), rows


def _check_existing(data: bytes, pre: bytes, path, kind, config, what, row_ok, fb) -> List[str]:
    text = data.decode("utf-8", errors="replace")
    first = text.split("\n", 1)[0]
    old = _parse_meta(first, kind, path)
    diffs = _diff(old, _canonical(config))
    if diffs:
        raise ValueError(
            f"{path!r} holds results of another run ({'; '.join(diffs)}); refusing to mix them. "
            f"Choose another {what} path or delete the file to start afresh."
        )
    if not data.startswith(pre):
        raise ValueError(f"{path!r}: the header after the metadata line is not the expected one; refusing to append")
    body = data[len(pre):]
    rows: List[str] = []
    keep = len(pre)
    pos = 0
    while pos < len(body):
        nl = body.find(b"\n", pos)
        if nl < 0:
            break  # partial last line (killed mid-write): drop it
        line = body[pos:nl].decode("utf-8", errors="replace")
        if not row_ok(line, len(rows)):
            if body[nl + 1:].strip():
                raise ValueError(
                    f"{path!r}: row {len(rows)} ({line[:60]!r}) is malformed or out of order and more data follows; "
                    "the file is corrupt, refusing to append to it"
                )
            break
        rows.append(line)
        pos = nl + 1
        keep = len(pre) + pos
    if keep < len(data):
        fb.truncate(keep)
        fb.flush()
    return rows


def open_tsv(path: str, config: Mapping[str, Any]) -> Tuple[IO[str], List[str]]:
    """Open a results TSV for appending; returns ``(file, kept_rows)``.

    A new file gets the metadata line and the header.  An existing file must
    carry exactly ``config`` (else ``ValueError``); its complete rows, whose
    ``idx`` must run 0, 1, 2, ... in order, are kept and anything after them
    (a partially written line) is truncated.
    """
    preamble = _meta_line(TSV_FORMAT, config) + "\t".join(COLUMNS) + "\n"

    def ok(line: str, i: int) -> bool:
        fields = line.split("\t")
        return len(fields) == len(COLUMNS) and fields[0] == str(i)

    return _open_append(path, preamble, TSV_FORMAT, config, "--out", ok)


def open_counts_log(path: str, config: Mapping[str, Any]) -> Tuple[IO[str], List[Dict[str, Any]]]:
    """Open a raw-counts log for appending; returns ``(file, kept_records)``.

    Same rules as :func:`open_tsv`; ``config`` is the sampling configuration
    only, so one log serves certificates under any method.
    """
    preamble = _meta_line(LOG_FORMAT, config)
    parsed: List[Dict[str, Any]] = []

    def ok(line: str, i: int) -> bool:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            return False
        if not (isinstance(rec, dict) and rec.get("idx") == i and "selection" in rec and "estimation" in rec):
            return False
        parsed.append(rec)
        return True

    f, _ = _open_append(path, preamble, LOG_FORMAT, config, "--counts-log", ok)
    return f, parsed


def counts_record(idx: int, label: int, selection, estimation) -> str:
    """One counts-log line (with trailing newline)."""
    rec = {"idx": int(idx), "label": int(label),
           "selection": [int(c) for c in np.asarray(selection).ravel()],
           "estimation": [int(c) for c in np.asarray(estimation).ravel()]}
    return json.dumps(rec, separators=(",", ":")) + "\n"


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------

_INT_COLS = {"idx", "label", "predict", "correct", "top", "runner_up", "n_tests", "n0", "n"}
_FLOAT_COLS = {"radius", "p_a_lower", "p_b_upper", "margin_lower", "alpha", "sigma"}


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


def read_tsv(path: str) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """Read a results TSV: ``(config, columns)`` with numeric columns as arrays.

    A partially written last line is ignored.  Works on Cohen et al.'s plain
    files too (no metadata line: ``config`` is empty; only the columns present
    are returned).
    """
    with open(path, "r", encoding="utf-8") as f:
        lines = f.read().split("\n")
    lines = lines[:-1]  # the part after the last newline is empty or partial
    config: Dict[str, Any] = {}
    if lines and lines[0].startswith("# "):
        config = _parse_meta(lines[0], TSV_FORMAT, path)
        lines = lines[1:]
    if not lines:
        raise ValueError(f"{path!r} has no header line")
    header = lines[0].split("\t")
    for need in ("label", "predict", "radius", "correct"):
        if need not in header:
            raise ValueError(f"{path!r} lacks the column {need!r} (header: {header})")
    rows = [ln.split("\t") for ln in lines[1:] if ln.strip()]
    bad = [i for i, r in enumerate(rows) if len(r) != len(header)]
    if bad:
        raise ValueError(f"{path!r}: row {bad[0]} has {len(rows[bad[0]])} fields, header has {len(header)}")
    cols: Dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        vals = [r[j] for r in rows]
        if name in _INT_COLS:
            cols[name] = np.array([int(v) if v != "" else -1 for v in vals], dtype=np.int64)
        elif name == "time":
            cols[name] = np.array([_parse_time(v) for v in vals], dtype=np.float64)
        elif name in _FLOAT_COLS:
            cols[name] = np.array([float(v) if v != "" else np.nan for v in vals], dtype=np.float64)
        else:
            cols[name] = np.array(vals, dtype=object)
    return config, cols


def read_counts_log(path: str) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """Read a raw-counts log: ``(sampling_config, records)`` in idx order.

    A partially written last line is ignored; any other malformed line raises.
    """
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    lines = text.split("\n")
    if not lines or not lines[0]:
        raise ValueError(f"{path!r} is empty, not a counts log")
    config = _parse_meta(lines[0], LOG_FORMAT, path)
    body = lines[1:-1]  # the last piece is empty or a partial line
    records = []
    for i, line in enumerate(body):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path!r}: line {i + 2} is not valid JSON: {line[:60]!r}") from None
        if rec.get("idx") != i:
            raise ValueError(f"{path!r}: line {i + 2} has idx {rec.get('idx')!r}, expected {i}")
        records.append(rec)
    return config, records
