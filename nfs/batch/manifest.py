"""A batch manifest (CSV with `target,clip` and optional option columns) read into (target, clip) pairs.

A cell is a path (relative to the manifest's folder), a glob (`chars/*.glb`: one pair per match), or for clips a
built-in clip name. Targets and clips are identified by content (SHA-256 of the file, or of a folder's files), so
the same mesh under two names is prepared once, and an edited file is never taken for its finished outputs.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from nfs.batch.options import (CLIP_OPTIONS, PREPARE_OPTIONS, RowOptionError, check_columns, options_record,
                               parse_row_options)
from nfs.options import RetargetOptions

GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class TargetInput:
    """One target mesh to prepare: its file, its content hash and the options that change its preparation."""

    path: str
    sha: str
    force: bool = False
    open_mouth: bool = False

    @property
    def key(self) -> str:
        return f"{self.sha}{':force' if self.force else ''}{':open-mouth' if self.open_mouth else ''}"


@dataclass(frozen=True)
class ClipInput:
    """One source clip to load: a built-in name or a path, its content hash and its loading options."""

    spec: str
    sha: str
    neutral_frame: int | None = None      # face videos: how their scores become weights (`video_calibration`)
    keep_neutral: bool = False
    dead_zone: float = 0.0
    shape_gains: str = ""

    @property
    def calibrated(self) -> bool:
        return self.neutral_frame is not None or self.keep_neutral or bool(self.dead_zone) or bool(self.shape_gains)

    @property
    def key(self) -> str:
        if not self.calibrated:
            return self.sha
        return (f"{self.sha}:neutral={self.neutral_frame}:keep={int(self.keep_neutral)}:dead={self.dead_zone:g}:"
                f"gains={self.shape_gains}")


@dataclass
class Pair:
    """One (target, clip) pair of the manifest and where its outputs go (`out_rel`, relative to the batch's
    output folder). `error` is set when the row cannot run at all (missing file, bad option)."""

    row: int
    target: str                       # as written in the manifest, or the glob's match
    clip: str
    options: RetargetOptions = field(default_factory=RetargetOptions)
    target_input: TargetInput | None = None
    clip_input: ClipInput | None = None
    out_rel: str = ""
    error: str = ""

    def inputs_record(self, model_id: str) -> dict:
        """What a finished pair's outputs were made from: a finished pair is reused only for the same."""
        return {"target_sha": self.target_input.sha, "clip": self.clip_input.key,
                "options": options_record(self.options), "model": model_id}


def safe_stem(name: str) -> str:
    """A file-system-safe folder name for a target or clip stem."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return stem or "unnamed"


def file_sha(path: Path) -> str:
    """SHA-256 (16 hex digits) of a file's bytes, or of a folder's relative names and bytes."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        if p is not path:
            h.update(str(p.relative_to(path)).encode() + b"\0")
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


class _Hashes(dict):
    def of(self, path: Path) -> str:
        key = str(path.resolve())
        if key not in self:
            self[key] = file_sha(path)
        return self[key]


def _expand(cell: str, base: Path, builtin: list[str] | None = None) -> list[str]:
    """A cell -> the specs it names: a built-in clip name as is, a glob's sorted matches, else the path."""
    if builtin is not None and cell in builtin:
        return [cell]
    path = Path(cell).expanduser()
    path = path if path.is_absolute() else base / path
    if GLOB_CHARS.search(cell):
        return sorted(glob.glob(str(path), recursive=True))
    return [str(path)]


def read_manifest(manifest: str | Path, defaults: RetargetOptions | None = None) -> list[Pair]:
    """Every (target, clip) pair of a manifest, in row order (a glob's matches sorted). Problems that concern the
    whole file (missing, no `target`/`clip` column, unknown column) raise ValueError; a problem with one row gives
    that row's pairs an `error` and leaves the others alone."""
    from nfs.io import list_builtin_clips
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"no manifest file {manifest}")
    rows, numbers = [], []          # the rows that are not blank or comments, and their line numbers
    with open(manifest, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        for row in reader:
            if any(c.strip() for c in row) and not row[0].lstrip().startswith("#"):
                rows.append(row)
                numbers.append(reader.line_num)
    if not rows:
        raise ValueError(f"{manifest.name}: empty manifest (expected a header row with target,clip)")
    header = [h.strip().lower() for h in rows[0]]
    if "target" not in header or "clip" not in header:
        raise ValueError(f"{manifest.name}: the header must name the columns target and clip, got {','.join(rows[0])}")
    option_columns = check_columns(rows[0])
    base = manifest.resolve().parent
    builtin = list_builtin_clips()
    hashes = _Hashes()
    pairs: list[Pair] = []
    for number, row in zip(numbers[1:], rows[1:]):
        cells = dict(zip((h.replace("-", "_").replace(" ", "_") for h in header), (c.strip() for c in row)))
        target_cell, clip_cell = cells.get("target", ""), cells.get("clip", "")
        try:
            options = parse_row_options({c: cells.get(c, "") for c in option_columns}, defaults or RetargetOptions())
        except RowOptionError as e:
            pairs.append(Pair(number, target_cell, clip_cell, error=f"row {number}: {e}"))
            continue
        if not target_cell or not clip_cell:
            pairs.append(Pair(number, target_cell, clip_cell, options, error=f"row {number}: empty target or clip"))
            continue
        targets = _expand(target_cell, base)
        clips = _expand(clip_cell, base, builtin)
        if not targets or not clips:
            what = target_cell if not targets else clip_cell
            pairs.append(Pair(number, target_cell, clip_cell, options, error=f"row {number}: no file matches {what!r}"))
            continue
        for target in targets:
            for clip in clips:
                pairs.append(_pair(number, target, clip, options, builtin, hashes))
    _mark_duplicates(pairs)
    return pairs


def _pair(number: int, target: str, clip: str, options: RetargetOptions, builtin: list[str], hashes: _Hashes) -> Pair:
    pair = Pair(number, target, clip, options)
    tpath = Path(target)
    pair.out_rel = f"{safe_stem(tpath.stem)}/{safe_stem(clip if clip in builtin else Path(clip).stem)}"
    if not tpath.exists():
        pair.error = f"row {number}: no target file {target}"
        return pair
    if clip not in builtin and not Path(clip).exists():
        pair.error = (f"row {number}: no built-in clip or file named {clip!r} (built-in clips: "
                      f"{', '.join(builtin)})")
        return pair
    try:
        pair.target_input = TargetInput(str(tpath), hashes.of(tpath), **{k: getattr(options, k)
                                                                          for k in PREPARE_OPTIONS})
        if clip in builtin:
            from nfs.io.registry import BUILTIN_CLIPS_DIR
            sha = f"builtin:{clip}:{hashes.of(Path(BUILTIN_CLIPS_DIR) / f'{clip}.csv')}"
        else:
            sha = hashes.of(Path(clip))
        pair.clip_input = ClipInput(clip, sha, **{k: getattr(options, k) for k in CLIP_OPTIONS})
    except OSError as e:
        pair.error = f"row {number}: cannot read {e.filename or target}: {e.strerror or e}"
    return pair


def _mark_duplicates(pairs: list[Pair]) -> None:
    """A second pair with the same output folder fails (it would overwrite the first's outputs)."""
    seen: dict[str, Pair] = {}
    for pair in pairs:
        if not pair.out_rel:
            continue
        first = seen.setdefault(pair.out_rel, pair)
        if first is not pair and not pair.error:
            pair.error = (f"row {pair.row}: same output folder {pair.out_rel}/ as row {first.row} ({first.target} "
                          f"x {first.clip}); rename a file to tell them apart")
