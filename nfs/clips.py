"""Source expression clips: ICT FACS-weight curves or tracked mesh sequences.

Every loader returns a :class:`Clip` and rejects bad input with a one-line :class:`ClipError`.

* ``codes`` clips carry (T, 53) ICT weights in ``nfs.ict.EXPRESSION_NAMES`` order.
* ``meshes`` clips carry (T, V, 3) frames plus faces and a neutral (units as stored in the files:
  ICT fixtures are cm, Multiface is mm); the expression encoder turns them into codes later.

Archives (.zip, .npz) are inspected before anything is decompressed: absolute or ``..`` member
names, symlink members, a total uncompressed size above ``max_bytes`` or a compression ratio above
``max_ratio`` are refused. Members are decompressed in memory only; nothing is written to disk.
"""
from __future__ import annotations

import csv
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from nfs import REPO_ROOT
from nfs.ict import ARKIT_NAMES, EXPRESSION_NAMES, arkit_to_ict_matrix

CLIPS_DIR = REPO_ROOT / "assets" / "clips"
DEFAULT_FPS = 30.0
MAX_FRAMES = 10_000
ZIP_MAX_BYTES = 2 * 1024**3
ZIP_MAX_RATIO = 200.0
# what zipfile / zlib raise on a corrupt archive (a bad UTF-8 name is a ValueError, an encrypted member a
# RuntimeError, an unknown compression method NotImplementedError)
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError)
RATIO_CHECK_MIN_BYTES = 1 << 20  # members smaller than this cannot do harm, whatever their ratio
WEIGHT_TOLERANCE = 0.05          # weights beyond [-tol, 1 + tol] are reported when clipped
GAIN_MAX = 1.5
MULTIFACE_NEUTRAL = "E001_Neutral_Eyes_Open"
MULTIFACE_FPS = 30.0
LIVELINK_IGNORED = (
    "timecode", "blendshapecount", "headyaw", "headpitch", "headroll", "lefteyeyaw", "lefteyepitch",
    "lefteyeroll", "righteyeyaw", "righteyepitch", "righteyeroll",
)


class ClipError(ValueError):
    """A clip source was rejected; the message is one line and names the culprit."""


@dataclass
class Clip:
    """One source animation.

    Exactly one of ``codes`` (T, 53) float32 ICT weights, or ``frames`` (T, V, 3) float32 with
    ``faces`` (F, 3) int64 and ``neutral`` (V, 3) float32. ``fps`` is frames per second;
    ``warnings`` collects non-fatal fixes made while loading (e.g. clipped weights).
    """

    name: str
    fps: float
    codes: np.ndarray | None = None
    frames: np.ndarray | None = None
    faces: np.ndarray | None = None
    neutral: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self):
        if (self.codes is None) == (self.frames is None):
            raise ClipError(f"clip {self.name!r}: give exactly one of codes or frames")
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise ClipError(f"clip {self.name!r}: fps must be positive, got {self.fps}")
        self.fps = float(self.fps)
        if self.codes is not None:
            self.codes = np.asarray(self.codes, np.float32)
            if self.codes.ndim != 2 or self.codes.shape[1] != len(EXPRESSION_NAMES):
                raise ClipError(f"clip {self.name!r}: codes must be (T, 53), got {self.codes.shape}")
        else:
            self.frames = np.asarray(self.frames, np.float32)
            if self.frames.ndim != 3 or self.frames.shape[2] != 3:
                raise ClipError(f"clip {self.name!r}: frames must be (T, V, 3), got {self.frames.shape}")
            if self.faces is None or self.neutral is None:
                raise ClipError(f"clip {self.name!r}: a mesh clip needs faces and neutral")
            self.neutral = np.asarray(self.neutral, np.float32)
            self.faces = np.asarray(self.faces, np.int64)
            if self.neutral.shape != self.frames.shape[1:]:
                raise ClipError(f"clip {self.name!r}: neutral has shape {self.neutral.shape}, "
                                f"frames have {self.frames.shape[1:]}")

    @property
    def kind(self) -> str:
        """"codes" or "meshes"."""
        return "codes" if self.codes is not None else "meshes"

    @property
    def n_frames(self) -> int:
        return len(self.codes if self.codes is not None else self.frames)

    @property
    def duration_s(self) -> float:
        """Playback length in seconds (n_frames / fps)."""
        return self.n_frames / self.fps


# ----------------------------------------------------------------------------------------------
# validation shared by the loaders


def _check_count(n: int, what: str, max_frames: int):
    if n == 0:
        raise ClipError(f"{what}: the clip is empty (no frames)")
    if n > max_frames:
        raise ClipError(f"{what}: {n} frames is more than the limit of {max_frames}")


def _finish_codes(name: str, codes: np.ndarray, fps: float, max_frames: int, warnings=None) -> Clip:
    """Check (T, 53) weights, clip them to [0, 1] and wrap them in a Clip."""
    codes = np.asarray(codes, np.float64)
    _check_count(len(codes), name, max_frames)
    bad = ~np.isfinite(codes)
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise ClipError(f"{name}: non-finite weight {codes[t, j]} at frame {t}, {EXPRESSION_NAMES[j]}")
    warnings = list(warnings or [])
    far = (codes < -WEIGHT_TOLERANCE) | (codes > 1 + WEIGHT_TOLERANCE)
    if far.any():
        cols = sorted({EXPRESSION_NAMES[j] for j in np.nonzero(far.any(0))[0]})
        warnings.append(f"clipped {int(far.sum())} weights far outside [0, 1] (range {codes.min():.3g}.."
                        f"{codes.max():.3g}) in {', '.join(cols)}")
    return Clip(name=name, fps=fps, codes=np.clip(codes, 0.0, 1.0).astype(np.float32), warnings=warnings)


def _finish_meshes(name, frames, faces, neutral, fps, warnings=None) -> Clip:
    """Check a stacked (T, V, 3) sequence (counts were checked while reading)."""
    frames = np.asarray(frames, np.float32)
    faces = np.asarray(faces, np.int64)
    neutral = np.asarray(neutral, np.float32)
    n_v = frames.shape[1]
    if neutral.shape != (n_v, 3):
        raise ClipError(f"{name}: the neutral has {len(neutral)} vertices but the frames have {n_v}")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ClipError(f"{name}: faces must be a non-empty (F, 3) array, got {faces.shape}")
    if faces.min() < 0 or faces.max() >= n_v:
        raise ClipError(f"{name}: face indices run outside 0..{n_v - 1}")
    if not np.isfinite(neutral).all():
        raise ClipError(f"{name}: the neutral has non-finite coordinates")
    bad = ~np.isfinite(frames).all(axis=(1, 2))
    if bad.any():
        raise ClipError(f"{name}: frame {int(np.argmax(bad))} has non-finite coordinates")
    return Clip(name=name, fps=fps, frames=frames, faces=faces, neutral=neutral, warnings=list(warnings or []))


# ----------------------------------------------------------------------------------------------
# weight clips (CSV)


def _read_csv_table(path, max_rows: int) -> tuple[list[str], list[list[str]]]:
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


def _column_index(header: Sequence[str], wanted: Sequence[str], ignored: Sequence[str], what: str) -> list[int]:
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


def _to_float(rows: list[list[str]], cols: list[int], header, what: str) -> np.ndarray:
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


def load_codes_csv(path, fps: float = DEFAULT_FPS, max_frames: int = MAX_FRAMES, name: str | None = None) -> Clip:
    """Our weight CSV: header ``frame`` + the 53 ICT names (any order, case-insensitive), one row
    per frame at `fps`. Returns a codes Clip (T, 53)."""
    path = Path(path)
    header, rows = _read_csv_table(path, max_frames)
    what = path.name
    cols = _column_index(header, ("frame",) + tuple(EXPRESSION_NAMES), (), what)
    _check_count(len(rows), what, max_frames)
    table = _to_float(rows, cols, header, what)
    frame_no = table[:, 0]
    if np.isfinite(frame_no).all() and len(frame_no) > 1 and (np.diff(frame_no) <= 0).any():
        row = int(np.argmax(np.diff(frame_no) <= 0)) + 2
        raise ClipError(f"{what}: the frame column must increase, row {row} does not")
    return _finish_codes(name or path.stem, table[:, 1:], fps, max_frames)


def save_codes_csv(path, codes: np.ndarray, decimals: int = 3):
    """Write (T, 53) ICT weights as our CSV (header ``frame`` + ICT names)."""
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or codes.shape[1] != len(EXPRESSION_NAMES):
        raise ValueError(f"codes must be (T, 53), got {codes.shape}")
    lines = [",".join(("frame",) + tuple(EXPRESSION_NAMES))]
    fmt = ",".join([f"%.{decimals}f"] * codes.shape[1])
    for t, row in enumerate(np.round(codes, decimals) + 0.0):  # + 0.0 turns -0.0 into 0.0
        lines.append(f"{t}," + fmt % tuple(row))
    Path(path).write_text("\n".join(lines) + "\n")


_TIMECODE = re.compile(r"^\s*(\d+):(\d+):(\d+)[:;](\d+)(?:\.(\d+))?\s*$")
_TIMECODE_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 100.0, 120.0)


def _parse_timecodes(codes: list[str], rate: float | None, what: str) -> np.ndarray:
    """`hh:mm:ss:ff.sub` strings -> seconds from the first one.

    The rate of the frame field is inferred from the largest frame number seen (the smallest
    standard rate above it) when the clip crosses a second boundary; otherwise 60 is assumed.
    """
    parts = np.zeros((len(codes), 4))
    for i, s in enumerate(codes):
        m = _TIMECODE.match(s)
        if m is None:
            raise ClipError(f"{what}: row {i + 1}: cannot read timecode {s!r} (expected hh:mm:ss:ff.sss)")
        h, mi, se, fr, sub = m.groups()
        parts[i] = int(h) * 3600 + int(mi) * 60 + int(se), int(fr), float("0." + sub) if sub else 0.0, 0
    secs, frame = parts[:, 0], parts[:, 1] + parts[:, 2]
    if rate is None:
        rate = 60.0
        if len(np.unique(secs)) > 1:
            top = parts[:, 1].max()
            rate = next((r for r in _TIMECODE_RATES if r > top), top + 1)
    if (parts[:, 1] >= rate).any():
        raise ClipError(f"{what}: timecode frame number {int(parts[:, 1].max())} is not below the rate {rate:g}")
    t = secs + frame / rate
    step = np.diff(t)
    wrap = step < -43200  # recording crossed midnight
    t[1:] += 86400.0 * np.cumsum(wrap)
    step = np.diff(t)
    if (step < 0).any():
        raise ClipError(f"{what}: timecodes go backwards at row {int(np.argmax(step < 0)) + 2}")
    return t - t[0]


def resample_linear(times: np.ndarray, values: np.ndarray, fps: float) -> np.ndarray:
    """Resample (N, C) values taken at increasing `times` (s, repeats allowed) onto a uniform grid
    0, 1/fps, ... <= times[-1] by linear interpolation. Returns (T, C)."""
    keep = np.concatenate([[True], np.diff(times) > 0])
    times, values = times[keep], values[keep]
    n = int(np.floor(times[-1] * fps + 1e-6)) + 1
    grid = np.arange(n) / fps
    return np.stack([np.interp(grid, times, values[:, c]) for c in range(values.shape[1])], axis=1)


def load_livelink_csv(path, fps: float = DEFAULT_FPS, timecode_fps: float | None = None,
                      max_frames: int = MAX_FRAMES, name: str | None = None) -> Clip:
    """An iPhone Live Link Face CSV export -> codes Clip resampled to `fps`.

    Columns (case-insensitive): Timecode, BlendshapeCount, the 52 ARKit names (``EyeBlinkLeft``,
    ``JawOpen``, ...) and head/eye rotations (ignored). ARKit weights map to ICT with
    ``arkit_to_ict_matrix`` (browInnerUp and cheekPuff drive both ICT halves; tongueOut is dropped).
    `timecode_fps` is the rate of the timecode's frame field (inferred when None).
    """
    path = Path(path)
    what = path.name
    header, rows = _read_csv_table(path, 8 * max_frames)
    livelink_names = [n[0].upper() + n[1:] for n in ARKIT_NAMES]  # the app's spelling, for messages
    arkit_cols = _column_index(header, livelink_names, LIVELINK_IGNORED, what)
    lower = [h.lower() for h in header]
    if "timecode" not in lower:
        raise ClipError(f"{what}: missing columns: Timecode")
    _check_count(len(rows), what, 8 * max_frames)
    times = _parse_timecodes([r[lower.index("timecode")] for r in rows], timecode_fps, what)
    arkit = _to_float(rows, arkit_cols, header, what)
    bad = ~np.isfinite(arkit)
    if bad.any():
        r, j = np.argwhere(bad)[0]
        raise ClipError(f"{what}: non-finite value at row {r + 1}, {header[arkit_cols[j]]}")
    n_out = int(np.floor(times[-1] * fps + 1e-6)) + 1
    _check_count(n_out, what, max_frames)
    arkit = resample_linear(times, arkit, fps)
    return _finish_codes(name or path.stem, arkit @ arkit_to_ict_matrix().astype(np.float64), fps, max_frames)


def list_builtin_clips() -> list[str]:
    """Names of the clips shipped in assets/clips (sorted)."""
    return sorted(p.stem for p in CLIPS_DIR.glob("*.csv"))


def load_builtin_clip(name: str) -> Clip:
    """A shipped clip by name (30 fps codes)."""
    names = list_builtin_clips()
    if name not in names:
        raise ValueError(f"unknown built-in clip {name!r}; available: {', '.join(names)}")
    return load_codes_csv(CLIPS_DIR / f"{name}.csv", fps=DEFAULT_FPS, name=name)


# ----------------------------------------------------------------------------------------------
# safe archives


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


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> bytes:
    """Decompress one checked member in memory, never past its declared size."""
    try:
        with zf.open(info) as f:
            data = f.read(info.file_size + 1)
    except ZIP_ERRORS as e:
        raise ClipError(f"{what}: member {info.filename!r} is corrupt or unsupported ({e})") from None
    if len(data) > info.file_size:
        raise ClipError(f"{what}: member {info.filename!r} is larger than its header says")
    return data


def _open_zip(path: Path, max_bytes: int, max_ratio: float) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    try:
        zf = zipfile.ZipFile(path)
    except ZIP_ERRORS as e:
        raise ClipError(f"{path.name}: not a readable zip archive ({e})") from None
    try:
        return zf, check_zip(zf, path.name, max_bytes, max_ratio)
    except ClipError:
        zf.close()
        raise


# ----------------------------------------------------------------------------------------------
# OBJ frames


def parse_obj(data: bytes | str, what: str = "obj", want_faces: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices (V, 3) float32 and fan-triangulated faces (F, 3) int64 (None unless `want_faces`)
    of OBJ text; extra vertex columns (colours) and uv/normal indices are ignored."""
    if isinstance(data, bytes):
        data = data.decode("utf-8-sig", errors="replace")
    lines = data.splitlines()
    vlines = [ln[2:] for ln in lines if ln.startswith(("v ", "v\t"))]
    if not vlines:
        raise ClipError(f"{what}: no vertices")
    try:
        flat = np.array(" ".join(vlines).split(), dtype=np.float64)
        if flat.size == 3 * len(vlines):
            verts = flat.reshape(-1, 3)
        else:
            verts = np.array([ln.split()[:3] for ln in vlines], dtype=np.float64)
    except ValueError:
        raise ClipError(f"{what}: unreadable vertex line") from None
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ClipError(f"{what}: vertex lines need three coordinates")
    if not want_faces:
        return verts.astype(np.float32), None
    tris = []
    n_v = len(verts)
    try:
        for ln in lines:
            if not ln.startswith(("f ", "f\t")):
                continue
            idx = [int(tok.split("/", 1)[0]) for tok in ln[2:].split()]
            idx = [i - 1 if i > 0 else n_v + i for i in idx]
            tris.extend((idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1))
    except ValueError:
        raise ClipError(f"{what}: unreadable face line") from None
    faces = np.array(tris, dtype=np.int64).reshape(-1, 3)
    if len(faces) == 0:
        raise ClipError(f"{what}: no faces")
    if faces.min() < 0 or faces.max() >= n_v:
        raise ClipError(f"{what}: face indices run outside the {n_v} vertices")
    return verts.astype(np.float32), faces


def natural_key(name: str):
    """Sort key that orders 'frame2' before 'frame10'."""
    return [int(c) if c.isdigit() else c.lower() for c in re.split(r"(\d+)", name)]


def _stack_obj_frames(items: list[tuple[str, Callable[[], bytes]]], what: str, max_frames: int,
                      neutral_item: tuple[str, Callable[[], bytes]] | None):
    """Read (label, reader) OBJ items into (T, V, 3); faces and neutral come from `neutral_item`
    (default: the first frame)."""
    _check_count(len(items), what, max_frames)
    first_label, first_read = neutral_item or items[0]
    neutral, faces = parse_obj(first_read(), f"{what}: {first_label}")
    frames = np.empty((len(items), len(neutral), 3), np.float32)
    for t, (label, read) in enumerate(items):
        if neutral_item is None and t == 0:
            frames[0] = neutral
            continue
        v, _ = parse_obj(read(), f"{what}: {label}", want_faces=False)
        if len(v) != len(neutral):
            raise ClipError(f"{what}: frame {label} has {len(v)} vertices, expected {len(neutral)}")
        frames[t] = v
    return frames, faces, neutral


def _neutral_override(neutral):
    """A neutral given as an array -> (V, 3) float32; as a path -> None (handled by the caller)."""
    if neutral is None or isinstance(neutral, (str, Path)):
        return None
    arr = np.asarray(neutral, np.float32)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ClipError(f"neutral must be (V, 3), got {arr.shape}")
    return arr


def load_mesh_sequence(path, neutral=None, fps: float = DEFAULT_FPS, max_frames: int = MAX_FRAMES,
                       max_bytes: int = ZIP_MAX_BYTES, max_ratio: float = ZIP_MAX_RATIO,
                       name: str | None = None) -> Clip:
    """A mesh clip from a folder or .zip of OBJ frames (natural order of the file names), or an
    .npz with ``vertices`` (T, V, 3), ``faces`` (F, 3) and optional ``neutral`` (V, 3).

    `neutral`: None (first frame / the npz's ``neutral``), a (V, 3) array, a path to an OBJ file,
    or the name of an OBJ inside the folder/zip. All frames, the first included, are returned.
    """
    path = Path(path)
    what = path.name
    name = name or path.stem
    arr_neutral = _neutral_override(neutral)
    if path.suffix.lower() == ".npz":
        return _load_npz_sequence(path, arr_neutral, neutral, fps, max_frames, max_bytes, max_ratio, name)
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".obj"),
                       key=lambda p: natural_key(p.name))
        items = [(p.name, p.read_bytes) for p in files]
        return _mesh_clip_from_items(items, neutral, arr_neutral, what, fps, max_frames, name)
    if path.suffix.lower() == ".zip" and path.is_file():
        zf, infos = _open_zip(path, max_bytes, max_ratio)
        with zf:
            objs = sorted((i for i in infos if i.filename.lower().endswith(".obj")),
                          key=lambda i: natural_key(i.filename))
            items = [(i.filename, (lambda i=i: _read_member(zf, i, what))) for i in objs]
            return _mesh_clip_from_items(items, neutral, arr_neutral, what, fps, max_frames, name)
    raise ClipError(f"{path}: expected a folder of OBJ files, a .zip or an .npz")


def _mesh_clip_from_items(items, neutral, arr_neutral, what, fps, max_frames, name) -> Clip:
    """Shared tail of the OBJ-based loaders: pick the neutral, stack, validate."""
    neutral_item = None
    if isinstance(neutral, (str, Path)):
        match = [it for it in items if it[0] == str(neutral) or Path(it[0]).name == str(neutral)]
        if match:
            neutral_item = match[0]
        elif Path(neutral).is_file():
            neutral_item = (Path(neutral).name, Path(neutral).read_bytes)
        else:
            raise ClipError(f"{what}: neutral {str(neutral)!r} is neither a frame nor a file")
    frames, faces, neu = _stack_obj_frames(items, what, max_frames, neutral_item)
    if arr_neutral is not None:
        neu = arr_neutral
    return _finish_meshes(name, frames, faces, neu, fps)


def _load_npz_sequence(path, arr_neutral, neutral, fps, max_frames, max_bytes, max_ratio, name) -> Clip:
    what = path.name
    zf, _ = _open_zip(path, max_bytes, max_ratio)  # an .npz is a zip: refuse bombs before np.load
    zf.close()
    try:
        with np.load(path, allow_pickle=False) as d:
            keys = set(d.files)
            missing = sorted({"vertices", "faces"} - keys)
            if missing:
                has = ", ".join(sorted(keys)) or "none"
                raise ClipError(f"{what}: missing arrays: {', '.join(missing)} (has {has})")
            verts = d["vertices"]
            faces = d["faces"]
            stored_neutral = d["neutral"] if "neutral" in keys else None
    except ClipError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise ClipError(f"{what}: cannot read the npz ({str(e).splitlines()[0]})") from None
    if verts.dtype.kind not in "fiu" or verts.ndim != 3 or verts.shape[2] != 3:
        raise ClipError(f"{what}: vertices must be a numeric (T, V, 3) array, got {verts.dtype} {verts.shape}")
    if faces.dtype.kind not in "iu":
        raise ClipError(f"{what}: faces must be integers, got {faces.dtype}")
    _check_count(len(verts), what, max_frames)
    if isinstance(neutral, (str, Path)):
        neu, _ = parse_obj(Path(neutral).read_bytes(), str(neutral), want_faces=False)
    elif arr_neutral is not None:
        neu = arr_neutral
    elif stored_neutral is not None:
        neu = stored_neutral
    else:
        neu = verts[0]
    return _finish_meshes(name, verts, faces, neu, fps)


# ----------------------------------------------------------------------------------------------
# Multiface


_MF_MEMBER = re.compile(r"(?:^|/)tracked_mesh/([^/]+)/(\d+)\.obj$", re.IGNORECASE)


def _multiface_index(root: Path, max_bytes, max_ratio):
    """{expression: [(frame_number, label, reader)]} for a Multiface folder or zip; the zip (or None)."""
    index: dict[str, list] = {}
    if root.is_file() and root.suffix.lower() == ".zip":
        zf, infos = _open_zip(root, max_bytes, max_ratio)
        for info in infos:
            m = _MF_MEMBER.search(info.filename.replace("\\", "/"))
            if m:
                index.setdefault(m.group(1), []).append(
                    (int(m.group(2)), info.filename, (lambda i=info: _read_member(zf, i, root.name))))
        return index, zf
    if not root.is_dir():
        raise ClipError(f"{root}: expected a Multiface subject folder or a .zip")
    candidates = [root] if root.name == "tracked_mesh" else [root / "tracked_mesh", *root.glob("*/tracked_mesh")]
    mesh_dir = next((c for c in candidates if c.is_dir()), None)
    if mesh_dir is None:
        raise ClipError(f"{root}: no tracked_mesh folder")
    for exp_dir in sorted(p for p in mesh_dir.iterdir() if p.is_dir()):
        for p in exp_dir.iterdir():
            if p.suffix.lower() == ".obj" and p.stem.isdigit():
                index.setdefault(exp_dir.name, []).append((int(p.stem), f"{exp_dir.name}/{p.name}", p.read_bytes))
    return index, None


def load_multiface_sequence(root, expression: str | None = None, neutral=None, capture_fps: float = MULTIFACE_FPS,
                            max_frames: int = MAX_FRAMES, max_bytes: int = ZIP_MAX_BYTES,
                            max_ratio: float = ZIP_MAX_RATIO) -> Clip:
    """One expression of a Multiface subject: ``tracked_mesh/<EXPRESSION>/<frame:06d>.obj``
    (folder, or a zip holding that layout anywhere inside). ``.bin`` and ``_transform.txt`` files
    are ignored, so vertices stay in Multiface's head-aligned frame (mm).

    `expression`: folder name (default: the first one that is not the neutral). `neutral`: None
    (first frame of ``E001_Neutral_Eyes_Open``, else the clip's first frame with a warning), another
    expression folder name, a path to an OBJ or a (V, 3) array. fps is `capture_fps` divided by the
    step between frame numbers (e.g. 000102, 000105, ... -> 10 fps at a 30 fps capture).
    """
    root = Path(root)
    what = root.name
    index, zf = _multiface_index(root, max_bytes, max_ratio)
    try:
        if not index:
            raise ClipError(f"{what}: no tracked_mesh/<expression>/<frame>.obj files")
        names = sorted(index)
        if expression is None:
            others = [n for n in names if n != MULTIFACE_NEUTRAL]
            expression = (others or names)[0]
        if expression not in index:
            raise ClipError(f"{what}: no expression {expression!r}; available: {', '.join(names)}")
        entries = sorted(index[expression], key=lambda e: e[0])
        warnings = []
        numbers = np.array([e[0] for e in entries])
        steps = np.diff(numbers)
        step = float(np.median(steps)) if len(steps) else 1.0
        if len(steps) and (steps != step).any():
            warnings.append(f"frame numbers are unevenly spaced (steps {sorted(set(steps.tolist()))}); "
                            f"fps assumes {step:g}")
        items = [(label, read) for _, label, read in entries]
        neutral_item, arr_neutral = None, _neutral_override(neutral)
        if neutral is None or (isinstance(neutral, str) and neutral in index):
            neutral_name = neutral or MULTIFACE_NEUTRAL
            if neutral_name in index:
                _, label, read = min(index[neutral_name], key=lambda e: e[0])
                neutral_item = (label, read)
            else:
                warnings.append(f"no {neutral_name} folder: the clip's first frame is the neutral")
        elif isinstance(neutral, (str, Path)):
            if not Path(neutral).is_file():
                raise ClipError(f"{what}: neutral {str(neutral)!r} is neither an expression folder nor a file")
            neutral_item = (Path(neutral).name, Path(neutral).read_bytes)
        frames, faces, neu = _stack_obj_frames(items, what, max_frames, neutral_item)
        if arr_neutral is not None:
            neu = arr_neutral
        return _finish_meshes(expression, frames, faces, neu, capture_fps / max(step, 1.0), warnings)
    finally:
        if zf is not None:
            zf.close()


def multiface_fixture_codes(n_frames: int) -> dict[str, np.ndarray]:
    """The ICT weights (n_frames, 53) behind each expression of `write_multiface_fixture`."""
    ramp = np.sin(np.linspace(0.0, np.pi, n_frames)) ** 2
    codes = {}
    neutral = np.zeros((n_frames, len(EXPRESSION_NAMES)), np.float32)
    codes[MULTIFACE_NEUTRAL] = neutral
    jaw = neutral.copy()
    for n, w in (("jawOpen", 0.7), ("browInnerUp_L", 0.6), ("browInnerUp_R", 0.6), ("browOuterUp_L", 0.5),
                 ("browOuterUp_R", 0.5)):
        jaw[:, EXPRESSION_NAMES.index(n)] = w * ramp
    codes["E006_Jaw_Drop_Brows_Up"] = jaw
    smile = neutral.copy()
    for n, w in (("mouthSmile_L", 0.9), ("mouthSmile_R", 0.8), ("cheekSquint_L", 0.4), ("cheekSquint_R", 0.4)):
        smile[:, EXPRESSION_NAMES.index(n)] = w * ramp
    codes["E008_Smile_Mouth_Closed"] = smile
    return codes


def write_multiface_fixture(root, n_frames: int = 5, region: str = "narrow_face", scale: float = 10.0,
                            first_frame: int = 102, frame_step: int = 3, as_zip: bool = False) -> dict[str, np.ndarray]:
    """Write a small Multiface-style dataset from the ICT model (mean identity, `region` skin with
    its UVs, coordinates times `scale`: 10 gives mm like Multiface) under
    ``root/tracked_mesh/<EXPRESSION>/<frame:06d>.obj`` with dummy ``.bin`` and ``_transform.txt``
    siblings. With `as_zip` the same tree is written to ``root`` as a zip file instead.
    Returns `multiface_fixture_codes(n_frames)` (the ground-truth weights per expression)."""
    from nfs.export import obj_text  # local import: export does not depend on clips
    from nfs.ict import load_ict, triangulate

    m = load_ict()
    n_v = m.region_vertex_count(region)
    tri_v, _ = triangulate(m.poly_counts, m.poly_indices)
    tri_uv, _ = triangulate(m.poly_counts, m.poly_uv_indices)
    keep = (tri_v < n_v).all(1)
    faces, uv_faces = tri_v[keep], tri_uv[keep]
    used_uv, uv_faces = np.unique(uv_faces, return_inverse=True)
    uv_faces = uv_faces.reshape(-1, 3)
    uv = m.uv[used_uv]
    codes = multiface_fixture_codes(n_frames)
    files = {}
    for exp, c in codes.items():
        verts = m.vertices(None, c, n_v) * scale
        for k in range(n_frames):
            stem = f"tracked_mesh/{exp}/{first_frame + frame_step * k:06d}"
            files[stem + ".obj"] = obj_text(verts[k], faces, uv=uv, uv_faces=uv_faces).encode()
            files[stem + ".bin"] = verts[k].astype(np.float32).tobytes()
            files[stem + "_transform.txt"] = b"1 0 0 0\n0 1 0 0\n0 0 1 0\n"
    root = Path(root)
    if as_zip:
        root.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(root, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for rel, data in files.items():
                zf.writestr(rel, data)
    else:
        for rel, data in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    return codes


# ----------------------------------------------------------------------------------------------
# editing


def smooth_codes(codes: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing along time (axis 0) of (T, ...) codes; the ends are padded with their edge
    values, so a clip that ends on a pose stays on it. sigma <= 0 returns a copy."""
    from scipy.ndimage import gaussian_filter1d

    codes = np.asarray(codes, np.float32)
    if sigma_frames <= 0 or len(codes) < 2:
        return codes.copy()
    return gaussian_filter1d(codes, float(sigma_frames), axis=0, mode="nearest").astype(np.float32)


def apply_gain(codes: np.ndarray, gain) -> np.ndarray:
    """Scale (T, 53) weights by a scalar or per-shape (53,) gain, clipped to [0, 1.5]."""
    codes = np.asarray(codes, np.float32)
    gain = np.asarray(gain, np.float32)
    if gain.ndim not in (0, 1) or (gain.ndim == 1 and gain.shape[0] != codes.shape[-1]):
        raise ValueError(f"gain must be a scalar or ({codes.shape[-1]},), got {gain.shape}")
    if not np.isfinite(gain).all():
        raise ValueError("gain must be finite")
    return np.clip(codes * gain, 0.0, GAIN_MAX).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# one entry point for any source the user names


def _zip_has_multiface_layout(path: Path) -> bool:
    with zipfile.ZipFile(path) as zf:
        return any("tracked_mesh/" in n for n in zf.namelist())


def load_clip(spec: str | Path, max_frames: int = MAX_FRAMES) -> Clip:
    """A clip from a built-in name, an ICT-coefficient or Live Link Face CSV, an OBJ-sequence folder/zip,
    an .npz mesh sequence, or a Multiface-layout folder/zip (detected from the content)."""
    text = str(spec)
    if text in list_builtin_clips():
        return load_builtin_clip(text)
    path = Path(text)
    if not path.exists():
        raise ClipError(f"no built-in clip or file named {text!r}; built-in clips: {', '.join(list_builtin_clips())}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            header = fh.readline()
        if header.lower().startswith("timecode") or "blendshapecount" in header.lower():
            return load_livelink_csv(path, max_frames=max_frames)
        return load_codes_csv(path, max_frames=max_frames)
    if path.is_dir():
        if (path / "tracked_mesh").is_dir() or path.name == "tracked_mesh":
            return load_multiface_sequence(path, max_frames=max_frames)
        return load_mesh_sequence(path, max_frames=max_frames)
    if suffix == ".zip":
        try:
            multiface = _zip_has_multiface_layout(path)
        except ZIP_ERRORS:
            raise ClipError(f"{path.name}: not a readable zip file") from None
        if multiface:
            return load_multiface_sequence(path, max_frames=max_frames)
        return load_mesh_sequence(path, max_frames=max_frames)
    if suffix == ".npz":
        return load_mesh_sequence(path, max_frames=max_frames)
    raise ClipError(f"{path.name}: unsupported clip format {suffix or '(none)'}; use a built-in name, .csv, "
                    ".zip, .npz or a folder of OBJ frames")
