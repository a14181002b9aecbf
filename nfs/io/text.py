"""Text helpers shared by the text formats (OBJ, OFF): decoding uploads and parsing / formatting number rows."""
from __future__ import annotations

import numpy as np

from nfs.io.mesh import MeshError


def decode_text(data: bytes, filename: str, kind: str) -> str:
    """Bytes of a text file -> str (UTF-8 with or without BOM, UTF-16 with BOM, mostly printable latin-1);
    binary data raises `MeshError` naming `kind` (e.g. "OBJ")."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with a byte-order mark
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise MeshError(f"{filename}: unreadable {kind} file (broken UTF-16 text)") from None
    if b"\x00" in data[:65536]:
        raise MeshError(f"{filename}: unreadable {kind} file (binary data, not text)")
    try:
        return data.decode("utf-8-sig")  # a UTF-8 byte-order mark must not hide the first line
    except UnicodeDecodeError:
        text = data.decode("latin-1")
        printable = sum(c.isprintable() or c.isspace() for c in text[:65536]) / max(1, len(text[:65536]))
        if printable < 0.95:
            raise MeshError(f"{filename}: unreadable {kind} file (not text)") from None
        return text


def parse_floats(rows: list[str], width: int, filename: str, what: str) -> np.ndarray:
    """Rows of whitespace-separated numbers -> (N, width) float64 using the first `width` columns."""
    if not rows:
        return np.zeros((0, width))
    split = [r.split() for r in rows]
    try:
        lengths = {len(s) for s in split}
        if len(lengths) == 1 and lengths.pop() >= width:
            arr = np.array(split, dtype=np.float64)[:, :width]
        else:
            arr = np.array([s[:width] for s in split], dtype=np.float64)
    except ValueError:
        raise MeshError(f"{filename}: malformed {what} line (expected {width} numbers)") from None
    if arr.ndim != 2 or arr.shape[1] != width:
        raise MeshError(f"{filename}: malformed {what} line (expected {width} numbers)")
    return arr


def format_rows(template: str, rows: np.ndarray) -> str:
    """Each row of `rows` (N, C) through a %-template (e.g. "v %.6f %.6f %.6f\\n"), in one string operation."""
    if len(rows) == 0:
        return ""
    return (template * len(rows)) % tuple(np.asarray(rows).ravel().tolist())
