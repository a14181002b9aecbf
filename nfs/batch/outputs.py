"""A pair's output folder, written whole or not at all, and how a finished one is recognised.

A pair is written into a hidden sibling (``DIR/<target>/.<clip>.partial-XXXX/``); its record
(``batch_pair.json``: what the outputs were made from, and every file's name, size and SHA-256) is written there
last; then the folder is renamed onto ``DIR/<target>/<clip>/`` in one step. So a final name only ever holds a
finished pair, and a worker killed mid-pair leaves only a hidden partial folder, which the next run removes.

A pair is complete when its folder's record parses, names the same inputs (target and clip content, options,
model) and every file it lists is there with its recorded size.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path

RECORD_NAME = "batch_pair.json"
PARTIAL_MARK = ".partial-"


def new_partial_dir(final: Path) -> Path:
    """A new empty hidden folder next to `final`, on the same file system (so the commit is one rename)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = final.with_name(f".{final.name}{PARTIAL_MARK}{secrets.token_hex(4)}")
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary folder next to {final}")


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_record(folder: Path, inputs: dict, extra: dict | None = None) -> list[str]:
    """Write the record of a finished pair's `folder` (its files must all be written); returns the file names."""
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != RECORD_NAME)
    record = {"inputs": inputs,
              "files": [{"name": n, "bytes": (folder / n).stat().st_size, "sha256": _sha(folder / n)} for n in files],
              **(extra or {})}
    tmp = folder / f".{RECORD_NAME}.part"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    os.replace(tmp, folder / RECORD_NAME)
    return files


def commit(partial: Path, final: Path) -> None:
    """Move a finished partial folder onto its final name. An older folder there (other inputs, or not a finished
    pair) is moved aside first and removed after, so the final name is never half-written."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{secrets.token_hex(4)}")
        os.rename(final, old)
    os.rename(partial, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_record(final: Path) -> dict | None:
    try:
        record = json.loads((final / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def finished_files(final: Path, inputs: dict) -> list[str] | None:
    """The file names of a complete pair made from `inputs`, or None when it is not complete."""
    record = read_record(final)
    if record is None or record.get("inputs") != json.loads(json.dumps(inputs)):
        return None
    try:
        for f in record["files"]:
            if (final / f["name"]).stat().st_size != f["bytes"]:
                return None
        return [f["name"] for f in record["files"]]
    except (OSError, KeyError, TypeError):
        return None


def remove_partials(out: Path) -> int:
    """Remove the hidden partial / replaced folders a killed or failed run left under `out` (two levels)."""
    removed = 0
    if not out.is_dir():
        return 0
    for target_dir in out.iterdir():
        if not target_dir.is_dir() or target_dir.name.startswith("."):
            continue
        for p in target_dir.iterdir():
            if p.name.startswith(".") and (PARTIAL_MARK in p.name or ".old-" in p.name) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
    return removed
