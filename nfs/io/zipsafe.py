"""Reading zip archives safely: the directory is checked before anything is decompressed (absolute or ``..``
member names, symlink members, a total uncompressed size above ``max_bytes`` or a compression ratio above
``max_ratio`` are refused), and members are decompressed in memory only, never past their declared size."""
from __future__ import annotations

import re
import stat
import zipfile
import zlib
from pathlib import Path

from nfs.clips import ClipError

ZIP_MAX_BYTES = 2 * 1024**3
ZIP_MAX_RATIO = 200.0
# what zipfile / zlib raise on a corrupt archive (a bad UTF-8 name is a ValueError, an encrypted member a
# RuntimeError, an unknown compression method NotImplementedError)
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError)
RATIO_CHECK_MIN_BYTES = 1 << 20  # members smaller than this cannot do harm, whatever their ratio


def check_zip(zf: zipfile.ZipFile, what: str, max_bytes: int = ZIP_MAX_BYTES,
              max_ratio: float = ZIP_MAX_RATIO) -> list[zipfile.ZipInfo]:
    """Refuse an archive from its directory alone (nothing is decompressed): absolute or ``..``
    names, symlinks, total size above `max_bytes`, compression ratio above `max_ratio`.
    Returns the file entries."""
    infos = [i for i in zf.infolist() if not i.filename.endswith("/")]  # (is_dir() fails on an empty name)
    total = packed = 0
    for info in infos:
        name = info.filename
        parts = re.split(r"[\\/]+", name)
        if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\0" in name:
            raise ClipError(f"{what}: unsafe member path {name!r} (absolute or '..')")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ClipError(f"{what}: member {name!r} is a symbolic link")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= RATIO_CHECK_MIN_BYTES and ratio > max_ratio:
            raise ClipError(f"{what}: member {name!r} expands {ratio:.0f}x (limit {max_ratio:g}x), refusing a zip bomb")
        total += info.file_size
        packed += info.compress_size
    if total > max_bytes:
        raise ClipError(f"{what}: {total / 2**20:.0f} MiB uncompressed is more than the limit of "
                        f"{max_bytes / 2**20:.0f} MiB")
    if total >= RATIO_CHECK_MIN_BYTES and total / max(packed, 1) > max_ratio:
        raise ClipError(f"{what}: the archive expands {total / max(packed, 1):.0f}x (limit {max_ratio:g}x), "
                        "refusing a zip bomb")
    return infos


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> bytes:
    """Decompress one checked member in memory, never past its declared size."""
    try:
        with zf.open(info) as f:
            data = f.read(info.file_size + 1)
    except ZIP_ERRORS as e:
        raise ClipError(f"{what}: member {info.filename!r} is corrupt or unsupported ({e})") from None
    if len(data) > info.file_size:
        raise ClipError(f"{what}: member {info.filename!r} is larger than its header says")
    return data


def open_zip(path: Path, max_bytes: int = ZIP_MAX_BYTES,
             max_ratio: float = ZIP_MAX_RATIO) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """Open and check a zip file; the caller closes it. Returns the archive and its file entries."""
    try:
        zf = zipfile.ZipFile(path)
    except ZIP_ERRORS as e:
        raise ClipError(f"{path.name}: not a readable zip archive ({e})") from None
    try:
        return zf, check_zip(zf, path.name, max_bytes, max_ratio)
    except ClipError:
        zf.close()
        raise
