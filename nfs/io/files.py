"""Files written whole or not at all, with the permissions any program's files get (0666 less the umask).

`new_partial(path)` creates an empty temporary sibling (``.name.XXXX.part``); the writer fills it and `publish`
moves it onto `path` in one step, so a reader never sees half a file and a failed export leaves nothing behind.
(tempfile.mkstemp would make the file owner-only, 0600.)
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def new_partial(path: Path) -> Path:
    """A new empty temporary file next to `path` (its folder created), mode 0666 less the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}")


def publish(tmp: Path, path: Path) -> None:
    """Move a finished temporary file onto its final name (atomic on one file system)."""
    os.replace(tmp, path)


def discard(tmp: Path | None) -> None:
    """Remove a temporary file if it is still there."""
    if tmp is not None and Path(tmp).exists():
        Path(tmp).unlink()


class PartialFileWriter:
    """A file written under a partial name and published when done: as a context manager, `close()` (publish) on
    success and `abort()` (discard the partial file) on an error. Subclasses define both."""

    def close(self):
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            self.close()
        else:
            self.abort()
