"""Result files of a run (compatibility name): everything lives in :mod:`radius.run.files`.

Kept so that ``radius.results.read_tsv`` and friends keep working; new code
imports :mod:`radius.run.files`.
"""
from __future__ import annotations

from .run.files import (COLUMNS, LOG_FORMAT, SEQUENTIAL_COLUMNS, TSV_FORMAT, FileError, array_hash,
                        counts_record, counts_to_str, file_hash, format_row, read_counts_log, read_tsv,
                        str_to_counts)

__all__ = ["TSV_FORMAT", "LOG_FORMAT", "COLUMNS", "SEQUENTIAL_COLUMNS", "FileError", "array_hash", "file_hash",
           "format_row", "counts_record", "counts_to_str", "str_to_counts", "read_tsv", "read_counts_log"]
