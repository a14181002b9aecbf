"""Mesh sequences: a folder or .zip of OBJ frames (natural order of the file names), or an .npz of arrays."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from nfs.clips import DEFAULT_FPS, MAX_FRAMES, Clip, ClipError, check_frame_count, mesh_clip
from nfs.io.mesh import MeshError
from nfs.io.obj import load_obj, load_obj_vertices
from nfs.io.zipsafe import ZIP_MAX_BYTES, ZIP_MAX_RATIO, open_zip, read_member

EXTENSIONS = (".zip", ".npz")


def natural_key(name: str):
    """Sort key that orders 'frame2' before 'frame10'."""
    return [int(c) if c.isdigit() else c.lower() for c in re.split(r"(\d+)", name)]


def _as_clip_error(err: MeshError, what: str) -> ClipError:
    message = str(err)
    return ClipError(message if message.startswith(what) else f"{what}: {message}")


def read_obj_frames(items: list[tuple[str, Callable[[], bytes]]], what: str, max_frames: int,
                    neutral_item: tuple[str, Callable[[], bytes]] | None):
    """Read (label, reader) OBJ items into frames (T, V, 3) float32; faces (F, 3) and the neutral (V, 3) come
    from `neutral_item` (default: the first frame)."""
    check_frame_count(len(items), what, max_frames)
    first_label, first_read = neutral_item or items[0]
    try:
        first = load_obj(first_read(), f"{what}: {first_label}", max_vertices=None)
    except MeshError as err:
        raise _as_clip_error(err, f"{what}: {first_label}") from None
    neutral, faces = first.vertices.astype(np.float32), first.faces
    frames = np.empty((len(items), len(neutral), 3), np.float32)
    for t, (label, read) in enumerate(items):
        if neutral_item is None and t == 0:
            frames[0] = neutral
            continue
        try:
            v = load_obj_vertices(read(), f"{what}: {label}")
        except MeshError as err:
            raise _as_clip_error(err, f"{what}: {label}") from None
        if len(v) != len(neutral):
            raise ClipError(f"{what}: frame {label} has {len(v)} vertices, expected {len(neutral)}")
        frames[t] = v
    return frames, faces, neutral


def neutral_override(neutral):
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
    arr_neutral = neutral_override(neutral)
    if path.suffix.lower() == ".npz":
        return _load_npz_sequence(path, arr_neutral, neutral, fps, max_frames, max_bytes, max_ratio, name)
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".obj"
                        and not is_system_file(p.name)), key=lambda p: natural_key(p.name))
        items = [(p.name, p.read_bytes) for p in files]
        return _mesh_clip_from_items(items, neutral, arr_neutral, what, fps, max_frames, name)
    if path.suffix.lower() == ".zip" and path.is_file():
        zf, infos = open_zip(path, max_bytes, max_ratio)
        with zf:
            objs = sorted((i for i in infos if i.filename.lower().endswith(".obj") and not is_system_file(i.filename)),
                          key=lambda i: natural_key(i.filename))
            if not objs:
                raise ClipError(f"{what}: no OBJ frames in the zip")
            check_one_take(what, [i.filename for i in objs])
            items = [(i.filename, (lambda i=i: read_member(zf, i, what))) for i in objs]
            return _mesh_clip_from_items(items, neutral, arr_neutral, what, fps, max_frames, name)
    raise ClipError(f"{path}: expected a folder of OBJ files, a .zip or an .npz")


def is_system_file(name: str) -> bool:
    """Files an operating system adds to folders and zips: macOS ``__MACOSX/`` and ``._*`` resource forks,
    ``.DS_Store``, Windows ``Thumbs.db``, and hidden dot files."""
    parts = Path(name).parts
    return any(p == "__MACOSX" for p in parts) or Path(name).name.startswith(".") or \
        Path(name).name.lower() in ("thumbs.db", "desktop.ini")


def check_one_take(what: str, names: list[str]) -> None:
    """Refuse frames spread over several folders (several takes in one zip) instead of joining them."""
    folders = sorted({str(Path(n).parent) for n in names})
    if len(folders) > 1:
        shown = ", ".join(f"{f}/" for f in folders[:4]) + (" ..." if len(folders) > 4 else "")
        raise ClipError(f"{what}: {len(folders)} take folders ({shown}); put one take per zip")


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
    frames, faces, neu = read_obj_frames(items, what, max_frames, neutral_item)
    if arr_neutral is not None:
        neu = arr_neutral
    return mesh_clip(name, frames, faces, neu, fps)


def _load_npz_sequence(path, arr_neutral, neutral, fps, max_frames, max_bytes, max_ratio, name) -> Clip:
    what = path.name
    zf, infos = open_zip(path, max_bytes, max_ratio)  # an .npz is a zip: refuse bombs before np.load
    with zf:
        for info in infos:                             # and headers that claim more than the member holds
            check_npy_header(zf, info, what)
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
    check_frame_count(len(verts), what, max_frames)
    if isinstance(neutral, (str, Path)):
        neu = _read_neutral_vertices(Path(neutral))
    elif arr_neutral is not None:
        neu = arr_neutral
    elif stored_neutral is not None:
        neu = stored_neutral
    else:
        neu = verts[0]
    return mesh_clip(name, verts, faces, neu, fps)


def check_npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> None:
    """Read one .npy member's header (a few hundred bytes) and refuse a declared size beyond what the member
    holds, before numpy allocates it."""
    if not info.filename.endswith(".npy"):
        return
    try:
        with zf.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh, max_header_size=10_000)
    except (ValueError, OSError, zipfile.BadZipFile, SyntaxError) as e:
        raise ClipError(f"{what}: cannot read the npz ({str(e).splitlines()[0][:80]})") from None
    if dtype.hasobject:
        return  # refused by np.load(allow_pickle=False) with its own message
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared > info.file_size:
        raise ClipError(f"{what}: {info.filename} declares shape {tuple(shape)} ({declared / 1e9:.3g} GB) but "
                        f"holds {info.file_size:,} bytes")


def _read_neutral_vertices(path: Path) -> np.ndarray:
    try:
        return load_obj_vertices(path.read_bytes(), path.name)
    except MeshError as err:
        raise _as_clip_error(err, path.name) from None
