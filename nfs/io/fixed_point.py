"""Decimal text of many float rows at array speed: each number rounded to a fixed number of decimals as an integer
(``round(x * 10**p)``) and its digits laid out with array arithmetic, no per-number Python formatting.

`fixed_point_rows(rows, prefix, precision)` gives the numbers of ``prefix + "%.{p}f %.{p}f ...\\n"`` per row in
columns of one width: each number is right-aligned in its column with spaces (``v  0.125000 -0.500000  2.000000``;
readers of whitespace-separated text see the same values). A value that rounds to zero is written without a minus
sign, and a value lying within about 1e-16 of a rounding midpoint may round to the other side (one unit in the
last decimal).

Two layouts of the same text: the usual one (3 to 8 decimals, up to 6 integer digits) builds each number's text as
whole machine words: the digits of four-digit groups become their ASCII bytes inside one uint32 by splitting each
lane in two twice (a division done as a multiply and a shift), the sign, integer digits and point come from a
small table by the number of integer digits, and the words are stored straight into the line buffer. Other
precisions and magnitudes lay the digits out one column at a time.
"""
from __future__ import annotations

import numpy as np

MAX_EXACT = float(2 ** 52)   # rounded integers below this are exact in float64
BLOCK_ROWS = 4096


def fits_fixed_point(values: np.ndarray, precision: int) -> bool:
    """Whether every value, scaled by 10**precision, is exactly representable as an integer (|x| < 2**52)."""
    return values.size == 0 or float(np.abs(values).max()) * 10.0 ** precision < MAX_EXACT


def _digits_block_columns(rows: np.ndarray, prefix: bytes, precision: int, n_int: int) -> np.ndarray:
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


_U4 = np.uint32
_U8 = np.uint64


def four_digit_ascii(x: np.ndarray) -> np.ndarray:
    """Integers uint32 in [0, 10**4) -> the same shape of uint32 whose four bytes in memory are the ASCII digits,
    most significant first (zero padded), on a little-endian machine. Exact: a lane // 100 as (lane * 5243) >> 19 below 43,690, a lane // 10
    as (lane * 103) >> 10 below 170; no lane's product reaches the next lane."""
    x = np.asarray(x, _U4)
    q = x * _U4(5243)
    q >>= _U4(19)
    v = x - q * _U4(100)
    v <<= _U4(16)
    v |= q                                         # two 16-bit lanes, each < 100, high pair first
    q = v * _U4(103)
    q >>= _U4(10)
    q &= _U4(0x000F000F)
    v -= q * _U4(10)
    v <<= _U4(8)
    v |= q                                         # four bytes, each < 10
    v |= _U4(0x30303030)
    return v


def _word_view(buf: np.ndarray, dtype, offset: int, shape: tuple[int, int], strides: tuple[int, int]) -> np.ndarray:
    """A (possibly unaligned) strided view of `dtype` words into the byte buffer `buf`."""
    return np.ndarray(shape, dtype=dtype, buffer=buf, offset=offset, strides=strides)


def _head_tables(n_int: int) -> tuple[np.ndarray, np.ndarray]:
    """For a number with d integer digits (index d, 1..n_int): the mask of the head word's bytes that keep their
    digit, and the bytes around them (spaces, the point; with the minus sign at index d + n_int + 1)."""
    keep = np.zeros(n_int + 1, _U8)
    fill = np.zeros(2 * (n_int + 1), _U8)
    for d in range(1, n_int + 1):
        head = bytearray(b" " * (n_int + 1 - d) + b"0" * d + b".")
        keep[d] = int.from_bytes(bytes(0 if i <= n_int - d else 255 for i in range(n_int + 1)), "little")
        head[n_int + 1 - d:n_int + 1] = bytes(d)
        fill[d] = int.from_bytes(bytes(head), "little")
        head[n_int - d] = ord("-")
        fill[n_int + 1 + d] = int.from_bytes(bytes(head), "little")
    return keep, fill


def _digits_block_words(rows: np.ndarray, prefix: bytes, precision: int, n_int: int) -> np.ndarray:
    """`_digits_block_columns`' text for 3 <= precision <= 8 and n_int <= 6, built from whole words: per number a
    head word (sign, integer digits, point: n_int + 2 <= 8 bytes) and overlapping uint32 words for the decimals
    and the separator. Heads are stored first (a head word's spare bytes fall on its own decimals, stored next),
    then the decimals, then the prefix."""
    n, c = rows.shape
    p = precision
    scaled = rows * 10.0 ** p
    np.rint(scaled, out=scaled)
    negative = scaled < 0
    np.abs(scaled, out=scaled)
    w = (scaled / 10.0 ** p).astype(_U4)          # integer part (truncated: exact, the scaled values are integers)
    f = (scaled - w * 10.0 ** p).astype(_U4)       # decimals as an integer below 10**p
    width = n_int + p + 3                          # sign, integer digits, point, decimals, separator
    line = len(prefix) + c * width
    buf = np.empty(n * line, np.uint8)
    # head: [sign or space][integer digits, leading zeros as spaces][.] in the low bytes of a uint64
    if n_int <= 4:
        digits = four_digit_ascii(w).astype(_U8) << _U8(32)
    else:
        high = w // _U4(10000)
        digits = four_digit_ascii(high).astype(_U8) | (four_digit_ascii(w - high * _U4(10000)).astype(_U8) << _U8(32))
    digits >>= _U8(8 * (8 - n_int) - 8)            # the n_int integer digits into bytes 1..n_int
    n_digits = np.ones(w.shape, np.intp)
    for k in range(1, n_int):
        n_digits += w >= _U4(10 ** k)
    keep, fill = _head_tables(n_int)
    head = digits & keep[n_digits]
    head |= fill[n_digits + negative * (n_int + 1)]
    if n_int <= 2:                                 # a word no longer than the head and its decimals
        head = head.astype(_U4)
    _word_view(buf, head.dtype, len(prefix), (n, c), (line, width))[:] = head
    # decimals and separator: p + 1 characters stored as uint32 words at offsets 0, 4, ... and p - 3 (overlapping)
    for o in sorted(set(range(0, p - 3, 4)) | {p - 3}):
        if o == p - 3:                             # the last three decimals and the separator
            group = f - f // _U4(1000) * _U4(1000)
            group *= _U4(10)
        else:                                      # decimals o .. o + 3
            group = f // _U4(10 ** (p - o - 4)) if o + 4 < p else f.copy()
            group -= group // _U4(10000) * _U4(10000)
        words = four_digit_ascii(group)
        if o == p - 3:
            words &= _U4(0x00FFFFFF)
            sep = np.full(c, ord(" "), _U4)
            sep[-1] = ord("\n")
            words |= sep << _U4(24)
        _word_view(buf, _U4, len(prefix) + n_int + 2 + o, (n, c), (line, width))[:] = words
    out = buf.reshape(n, line)
    out[:, :len(prefix)] = np.frombuffer(prefix, np.uint8)
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
        block = rows[s:s + BLOCK_ROWS]
        if 3 <= precision <= 8 and n_int <= 6 and np.little_endian:
            chars = _digits_block_words(block, prefix, precision, n_int)
        else:
            chars = _digits_block_columns(block, prefix, precision, n_int)
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
