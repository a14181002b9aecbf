"""CSV tables for the clip formats: header and rows with line-numbered errors, column lookup, numbers."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from nfs.clips import ClipError


def read_csv_table(path, max_rows: int) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV (BOM and blank lines tolerated)."""
    path = Path(path)
    if not path.is_file():
        raise ClipError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise ClipError(f"{path.name}: the file is empty")
            header = [h.strip() for h in header]
            if len(header) == 1:
                sep = next((c for c in (";", "\t", "|") if c in header[0]), None)
                if sep is not None:
                    shown = "tab" if sep == "\t" else f"'{sep}'"
                    raise ClipError(f"{path.name}: the fields are separated by {shown} (expected ','); "
                                    "export the CSV with commas")
            rows = []
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise ClipError(f"{path.name}: line {reader.line_num} has {len(row)} fields, "
                                    f"the header has {len(header)}")
                rows.append(row)
                if len(rows) > max_rows:
                    raise ClipError(f"{path.name}: more than {max_rows} rows")
        except UnicodeDecodeError:
            raise ClipError(f"{path.name}: not a text CSV file (not UTF-8) near line {reader.line_num + 1}") from None
        except csv.Error as e:
            raise ClipError(f"{path.name}: unreadable CSV at line {reader.line_num} ({e})") from None
    return header, rows


def column_index(header: Sequence[str], wanted: Sequence[str], ignored: Sequence[str], what: str) -> list[int]:
    """Case-insensitive lookup of `wanted` columns; unknown or missing ones -> ClipError listing them."""
    lower = [h.lower() for h in header]
    dup = sorted({h for h in lower if lower.count(h) > 1})
    if dup:
        raise ClipError(f"{what}: duplicate columns: {', '.join(dup)}")
    known = {w.lower() for w in wanted} | {w.lower() for w in ignored}
    unknown = [h for h, lo in zip(header, lower) if lo not in known]
    if unknown:
        raise ClipError(f"{what}: unknown columns: {', '.join(unknown)}")
    missing = [w for w in wanted if w.lower() not in lower]
    if missing:
        raise ClipError(f"{what}: missing columns: {', '.join(missing)}")
    return [lower.index(w.lower()) for w in wanted]


def to_float(rows: list[list[str]], cols: list[int], header, what: str) -> np.ndarray:
    """The given columns of the rows as (N, len(cols)) float64; a non-number -> ClipError naming row and column."""
    try:
        return np.array([[row[c] for c in cols] for row in rows], dtype=np.float64)
    except ValueError:
        for r, row in enumerate(rows):
            for c in cols:
                try:
                    float(row[c])
                except ValueError:
                    raise ClipError(f"{what}: row {r + 1}, column {header[c]}: {row[c]!r} is not a number") from None
        raise
