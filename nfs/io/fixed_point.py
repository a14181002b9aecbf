"""Decimal text of many float rows at array speed: each number rounded to a fixed number of decimals as an integer
(``round(x * 10**p)``) and its digits laid out with array arithmetic, no per-number Python formatting.

`fixed_point_rows(rows, prefix, precision)` gives the numbers of ``prefix + "%.{p}f %.{p}f ...\\n"`` per row in
columns of one width: each number is right-aligned in its column with spaces (``v  0.125000 -0.500000  2.000000``;
readers of whitespace-separated text see the same values). A value that rounds to zero is written without a minus
sign, and a value lying within about 1e-16 of a rounding midpoint may round to the other side (one unit in the
last decimal).
"""
from __future__ import annotations

import numpy as np

MAX_EXACT = float(2 ** 52)   # rounded integers below this are exact in float64
BLOCK_ROWS = 1 << 12         # rows laid out at once: small enough for the scratch arrays to stay in cache (about
                             # 1.6 times the text per CPU-second of 65,536-row blocks on a 2-core AVX2 VM)


def fits_fixed_point(values: np.ndarray, precision: int) -> bool:
    """Whether every value, scaled by 10**precision, is exactly representable as an integer (|x| < 2**52)."""
    return values.size == 0 or float(np.abs(values).max()) * 10.0 ** precision < MAX_EXACT


def _digits_block(rows: np.ndarray, prefix: bytes, precision: int, n_int: int) -> np.ndarray:
    """One block of rows (n, C) float64 -> (n, len(prefix) + C * width) uint8 characters, spaces where nothing is
    written (suppressed leading zeros, an absent sign)."""
    n, c = rows.shape
    scaled = np.rint(rows * 10.0 ** precision)
    negative = scaled < 0
    mag = np.abs(scaled).astype(np.int64)
    unit = 10 ** precision
    whole = mag // unit
    small = np.int32 if unit < 2 ** 31 else np.int64
    frac = (mag - whole * unit).astype(small)
    width = 1 + n_int + 1 + precision + 1          # sign, integer digits, point, decimals, separator
    chars = np.empty((n, c, width), np.uint8)
    minus = (negative & (mag > 0)).view(np.uint8)
    rest = whole.astype(np.int32) if n_int < 10 else whole
    prev = np.ones_like(minus)                     # 1 where the number has more than k - 1 digits
    for k in range(n_int + 1):      # integer digits, right to left; leading zeros blank, the sign just before
        if k == 0:
            quot = rest // 10
            chars[..., n_int] = (rest - quot * 10).astype(np.uint8) + 48
            rest = quot
            continue
        has_digit = (whole >= 10 ** k).view(np.uint8) if k < 19 else np.zeros_like(minus)
        first_blank = prev - has_digit                  # the column just left of the number's first digit
        prev = has_digit
        if k == n_int:               # the sign's own column (never a digit)
            chars[..., 0] = 32 + 13 * (minus * first_blank)
            break
        quot = rest // 10
        digit = (rest - quot * 10).astype(np.uint8)
        chars[..., n_int - k] = 32 + has_digit * (digit + 16) + 13 * (minus * first_blank)
        rest = quot
    chars[..., n_int + 1] = ord(".")
    rest = frac
    for k in range(precision):                     # decimals, right to left
        quot = rest // 10
        chars[..., width - 2 - k] = (rest - quot * 10).astype(np.uint8) + 48
        rest = quot
    chars[..., width - 1] = ord(" ")
    chars[:, -1, width - 1] = ord("\n")
    out = np.empty((n, len(prefix) + c * width), np.uint8)
    out[:, :len(prefix)] = np.frombuffer(prefix, np.uint8)
    out[:, len(prefix):] = chars.reshape(n, c * width)
    return out


def fixed_point_rows(rows: np.ndarray, prefix: bytes = b"", precision: int = 6,
                     group: int | None = None) -> list[bytes]:
    """Rows (N, C) of finite floats -> text lines ``prefix x y ...\\n`` with `precision` decimals, as one bytes
    object per `group` consecutive rows (all rows in one when `group` is None). Rows whose scaled values do not
    fit exactly in float64 integers (|x| * 10**precision >= 2**52) raise ValueError: format them otherwise."""
    rows = np.asarray(rows, np.float64)
    if rows.ndim != 2:
        raise ValueError(f"rows must be (N, C), got {rows.shape}")
    if not fits_fixed_point(rows, precision):
        raise ValueError("values too large for fixed-point text at this precision")
    n = len(rows)
    group = max(n, 1) if group is None else int(group)
    if n == 0:
        return [b""]
    top = int(np.rint(np.abs(rows).max() * 10.0 ** precision)) // 10 ** precision
    n_int = max(1, len(str(top)))
    out: list[bytes] = []
    pending: list[bytes] = []
    for s in range(0, n, BLOCK_ROWS):
        chars = _digits_block(rows[s:s + BLOCK_ROWS], prefix, precision, n_int)
        start = 0
        for r in range((s // group + 1) * group - s, len(chars) + 1, group):   # groups ending in this block
            pending.append(chars[start:r].tobytes())
            out.append(b"".join(pending) if len(pending) > 1 else pending[0])
            pending, start = [], r
        if start < len(chars):
            pending.append(chars[start:].tobytes())
    if pending:
        out.append(b"".join(pending))
    return out
