"""Writing a zip archive member by member from data compressed here: each member is deflated as it comes, and a
tail that every member ends with (the faces of an OBJ sequence) is deflated once and appended to each member's
own deflate stream, with its CRC-32 combined arithmetically. ZIP64 records are written when the archive passes
4 GiB or 65,535 members. Readers see an ordinary zip (any unzip, Python's zipfile).

Deflate streams may be concatenated at a byte boundary: the member's part is flushed with Z_FULL_FLUSH (byte
aligned, no reference into it from later data, no final block) and the tail, compressed on its own, supplies the
final block (RFC 1951, section 3.2.3).

Members' own parts are deflated by ISA-L (the `isal` package: hand-written SIMD deflate, several times zlib's
speed at levels 1-3 with a similar ratio, and it releases the GIL) where it is installed and the level is 1-3;
zlib otherwise. Either output is plain deflate that any reader inflates.
"""
from __future__ import annotations

import struct
import time
import zlib
from typing import BinaryIO

try:
    from isal import isal_zlib as _isal
except ImportError:         # the stdlib's zlib alone: the same archive, deflated more slowly
    _isal = None

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_END64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<IIQI")
_U32 = 0xFFFFFFFF


def _dos_time(t: float) -> tuple[int, int]:
    y, mo, d, h, mi, s = time.localtime(t)[:6]
    y = max(y, 1980)
    return (h << 11) | (mi << 5) | (s // 2), ((y - 1980) << 9) | (mo << 5) | d


class Crc32Shift:
    """CRC-32 of a concatenation from the parts' CRCs: ``crc(a + b) = shift(crc(a)) ^ crc(b)`` for a fixed
    ``len(b)`` (the shift is linear over GF(2): four 256-entry tables, one per byte of the CRC)."""

    def __init__(self, length: int):
        zeros = bytes(length)
        # register after `length` zero bytes from a register holding one bit (zlib conditions in and out)
        column = [zlib.crc32(zeros, (1 << i) ^ _U32) ^ _U32 for i in range(32)]
        self.tables = []
        for byte in range(4):
            table = [0] * 256
            for value in range(256):
                acc = 0
                for bit in range(8):
                    if value >> bit & 1:
                        acc ^= column[8 * byte + bit]
                table[value] = acc
            self.tables.append(table)

    def __call__(self, crc_a: int, crc_b: int) -> int:
        t = self.tables
        return t[0][crc_a & 255] ^ t[1][crc_a >> 8 & 255] ^ t[2][crc_a >> 16 & 255] ^ t[3][crc_a >> 24] ^ crc_b


class ZipStreamWriter:
    """Members written one after another onto an open binary file `out` (positioned at its start), each as
    ``head`` bytes deflated here followed by the shared `tail` (deflated once). `close()` writes the directory;
    the caller closes the file."""

    def __init__(self, out: BinaryIO, tail: bytes = b"", level: int = 1):
        self.out, self.level = out, level
        self.tail_size = len(tail)
        self.tail_crc = zlib.crc32(tail)
        if tail:
            c = zlib.compressobj(level, zlib.DEFLATED, -15)
            self.tail_deflated = c.compress(tail) + c.flush()
        else:
            self.tail_deflated = b"\x03\x00"        # an empty final fixed-Huffman block
        self.combine = Crc32Shift(self.tail_size)
        self.fast = _isal is not None and 1 <= level <= 3
        self.entries: list[tuple[bytes, int, int, int, int]] = []
        self.offset = 0
        self.time, self.date = _dos_time(time.time())

    def deflate_head(self, head: bytes) -> tuple[bytes, int]:
        """A member's own part deflated up to a byte boundary, and its CRC (thread-safe: zlib runs without the
        GIL, so members can be deflated in parallel and added in order)."""
        z = _isal if self.fast else zlib
        c = z.compressobj(self.level, z.DEFLATED, -15)
        return c.compress(head) + c.flush(z.Z_FULL_FLUSH), z.crc32(head)

    def add(self, name: str, head_size: int, deflated_head: bytes, head_crc: int) -> None:
        """Write one member from `deflate_head`'s result (`head_size`: the head's length before deflating)."""
        raw_name = name.encode("utf-8")
        crc = self.combine(head_crc, self.tail_crc) if self.tail_size else head_crc
        size = head_size + self.tail_size
        packed = len(deflated_head) + len(self.tail_deflated)
        if size > _U32 or packed > _U32:
            raise ValueError(f"zip member {name} is larger than 4 GiB")
        flags = 0x800 if not raw_name.isascii() else 0
        self.out.write(_LOCAL.pack(0x04034B50, 20, flags, 8, self.time, self.date, crc, packed, size,
                                   len(raw_name), 0))
        self.out.write(raw_name)
        self.out.write(deflated_head)
        self.out.write(self.tail_deflated)
        self.entries.append((raw_name, crc, packed, size, self.offset))
        self.offset += _LOCAL.size + len(raw_name) + packed

    def close(self) -> None:
        """Write the central directory (and the ZIP64 end records where needed)."""
        start = self.offset
        directory = bytearray()
        for raw_name, crc, packed, size, offset in self.entries:
            flags = 0x800 if not raw_name.isascii() else 0
            extra = b""
            if offset > _U32:
                extra = struct.pack("<HHQ", 1, 8, offset)
            version = 45 if extra else 20
            directory += _CENTRAL.pack(0x02014B50, (3 << 8) | version, version, flags, 8, self.time, self.date, crc,
                                       packed, size, len(raw_name), len(extra), 0, 0, 0, 0o100644 << 16,
                                       min(offset, _U32))
            directory += raw_name + extra
        self.out.write(directory)
        n, size = len(self.entries), len(directory)
        if n >= 0xFFFF or start > _U32 or size > _U32:
            end64 = start + size
            self.out.write(_END64.pack(0x06064B50, _END64.size - 12, (3 << 8) | 45, 45, 0, 0, n, n, size, start))
            self.out.write(_LOCATOR64.pack(0x07064B50, 0, end64, 1))
        self.out.write(_END.pack(0x06054B50, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF), min(size, _U32),
                                 min(start, _U32), 0))
