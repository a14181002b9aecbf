"""Which loader reads which file: mesh formats by extension, clips by extension and sniffed content, and the
clips shipped with nfs by name. The app's lists of accepted uploads come from here."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from nfs.clips import DEFAULT_FPS, MAX_FRAMES, Clip, ClipError
from nfs.io import gltf, obj, off, ply, stl
from nfs.io.codes_csv import load_codes_csv
from nfs.io.livelink import is_livelink_header, load_livelink_csv
from nfs.io.mesh import DEFAULT_MAX_VERTICES, MeshError, RawMesh
from nfs.io.mesh_sequence import load_mesh_sequence
from nfs.io.multiface import has_multiface_layout, load_multiface_sequence
from nfs.io.zipsafe import ZIP_ERRORS
from nfs.resources import BUILTIN_CLIPS_DIR

MeshLoader = Callable[[bytes, str, int], RawMesh]
MESH_LOADERS: dict[str, MeshLoader] = {
    **{ext: obj.load_obj for ext in obj.EXTENSIONS},
    **{ext: ply.load_ply for ext in ply.EXTENSIONS},
    **{ext: stl.load_stl for ext in stl.EXTENSIONS},
    **{ext: off.load_off for ext in off.EXTENSIONS},
    **{ext: gltf.load_gltf for ext in gltf.EXTENSIONS},
}
MESH_EXTENSIONS = tuple(MESH_LOADERS)              # target meshes: .obj .ply .stl .off .glb .gltf
CLIP_EXTENSIONS = (".csv", ".zip", ".npz")         # clip files (a folder of OBJ frames or a Multiface folder too)
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v")   # face videos: nfs/video (or a folder of images)


# ----------------------------------------------------------------------------- meshes


def mesh_extension(filename: str) -> str:
    """The lower-case extension of a mesh file name; an unknown one raises MeshError listing the known ones."""
    ext = Path(filename).suffix.lower()
    if ext not in MESH_LOADERS:
        shown = ext or "(none)"
        raise MeshError(f"{Path(filename).name}: unknown extension {shown}; expected one of "
                        + ", ".join(MESH_EXTENSIONS))
    return ext


def load_mesh(path: str | Path, max_vertices: int = DEFAULT_MAX_VERTICES) -> RawMesh:
    """Read OBJ/PLY/STL/OFF/GLB/GLTF from disk, keeping the file's vertex order."""
    path = Path(path)
    ext = mesh_extension(path.name)
    if not path.is_file():
        raise MeshError(f"{path.name}: file not found")
    if ext == ".gltf":  # external buffers are resolved relative to the file
        return gltf.load_gltf(path, path.name, max_vertices)
    return MESH_LOADERS[ext](path.read_bytes(), path.name, max_vertices)


def load_mesh_bytes(data: bytes, filename: str, max_vertices: int = DEFAULT_MAX_VERTICES) -> RawMesh:
    """Read an uploaded file's bytes; the format comes from `filename`'s extension."""
    return MESH_LOADERS[mesh_extension(filename)](data, filename, max_vertices)


# ----------------------------------------------------------------------------- clips


def list_builtin_clips() -> list[str]:
    """Names of the clips shipped with nfs (sorted)."""
    return sorted(p.stem for p in BUILTIN_CLIPS_DIR.glob("*.csv"))


def load_builtin_clip(name: str) -> Clip:
    """A shipped clip by name (30 fps codes)."""
    names = list_builtin_clips()
    if name not in names:
        raise ValueError(f"unknown built-in clip {name!r}; available: {', '.join(names)}")
    return load_codes_csv(BUILTIN_CLIPS_DIR / f"{name}.csv", fps=DEFAULT_FPS, name=name)


def load_clip(spec: str | Path, max_frames: int = MAX_FRAMES) -> Clip:
    """A clip from a built-in name, an ICT-coefficient or Live Link Face CSV, an OBJ-sequence folder/zip,
    an .npz mesh sequence or a Multiface-layout folder/zip (detected from the content). Face videos are tracked by
    `nfs.video`, through `nfs.pipeline.load_clip`."""
    text = str(spec)
    if text in list_builtin_clips():
        return load_builtin_clip(text)
    path = Path(text)
    if not path.exists():
        raise ClipError(f"no built-in clip or file named {text!r}; built-in clips: {', '.join(list_builtin_clips())}")
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        raise ClipError(f"{path.name}: a face video; load it with nfs.load_clip (nfs.pipeline.load_clip), which "
                        "tracks the face")
    if suffix == ".csv":
        with open(path, "r", encoding="utf-8-sig", errors="replace") as fh:
            header = fh.readline()
        if is_livelink_header(header):
            return load_livelink_csv(path, max_frames=max_frames)
        return load_codes_csv(path, max_frames=max_frames)
    if path.is_dir() or suffix == ".zip":
        try:
            multiface = has_multiface_layout(path)
        except ZIP_ERRORS:
            raise ClipError(f"{path.name}: not a readable zip file") from None
        if multiface:
            return load_multiface_sequence(path, max_frames=max_frames)
        return load_mesh_sequence(path, max_frames=max_frames)
    if suffix == ".npz":
        return load_mesh_sequence(path, max_frames=max_frames)
    raise ClipError(f"{path.name}: unsupported clip format {suffix or '(none)'}; use a built-in name, .csv, "
                    ".zip, .npz, a folder of OBJ frames, a face video (" + ", ".join(VIDEO_EXTENSIONS) + ") or a folder of images")
