"""Exports of an animation on the user's mesh.

* ``export_obj_sequence_zip``: one OBJ per frame in a zip, original vertex order.
* ``export_animated_glb``: one mesh, one morph target per (key) frame, a ``weights`` animation.
* ``export_rig_glb``: the 53 expression shapes as named morph targets (a blendshape rig).
* ``export_preview_video``: MP4 (libx264, yuv420p) or GIF from RGB images.

Frames arrive as an array (T, V, 3) or an iterable of (t, V, 3) / (V, 3) float arrays, so long clips
stream through in chunks. UVs are per vertex (``uv`` (V, 2)) or per corner (``uv`` (U, 2) with
``uv_faces`` (F, 3)); OBJ-style convention (v = 0 at the bottom), flipped for glTF on export.
glTF needs one UV per vertex, so per-corner UVs split vertices at seams; the split copies carry an
``_ORIG_INDEX`` attribute and the readers here merge them back into the original order.
"""
from __future__ import annotations

import math
import os
import struct
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pygltflib as gl

from nfs.geometry.operators import vertex_normals
from nfs.ict import EXPRESSION_NAMES, ict_to_arkit_name

CHUNK = 64
DEFAULT_MAX_MORPH_TARGETS = 256  # WebGL2 guarantees >= 256 texture-array layers (three.js morph textures)
_FLOAT, _UINT = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


# ----------------------------------------------------------------------------------------------
# frame streams


def count_frames(frame_chunks) -> int | None:
    """Number of frames in an array or a list/tuple of chunks; None for a one-shot iterator."""
    if isinstance(frame_chunks, np.ndarray):
        return 1 if frame_chunks.ndim == 2 else len(frame_chunks)
    if isinstance(frame_chunks, (list, tuple)):
        return sum(1 if np.ndim(c) == 2 else len(c) for c in frame_chunks)
    return None


def _raw_chunks(frame_chunks, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Chunks as float32 arrays, single frames lifted to (1, V, 3); no checks."""
    if isinstance(frame_chunks, np.ndarray):
        arr = frame_chunks[None] if frame_chunks.ndim == 2 else frame_chunks
        yield from (arr[s:s + chunk] for s in range(0, len(arr), chunk))
    else:
        for c in frame_chunks:
            c = np.asarray(c, np.float32)
            yield c[None] if c.ndim == 2 else c


def _prepend(first, rest):
    yield first
    yield from rest


def iter_frame_chunks(frame_chunks, n_vertices: int, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Yield float32 (t, V, 3) chunks from (T, V, 3), (V, 3) or an iterable of those; checks V and finiteness."""
    for c in _raw_chunks(frame_chunks, chunk):
        c = np.asarray(c, np.float32)
        if c.ndim != 3 or c.shape[1:] != (n_vertices, 3):
            raise ValueError(f"frame chunk has shape {c.shape}, expected (t, {n_vertices}, 3)")
        if not np.isfinite(c).all():
            raise ValueError("frame chunk has non-finite coordinates")
        yield c


def _check_mesh(faces, n_vertices: int, uv=None, uv_faces=None):
    faces = np.asarray(faces, np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError(f"faces must be a non-empty (F, 3) array, got {faces.shape}")
    if faces.min() < 0 or faces.max() >= n_vertices:
        raise ValueError(f"face indices run outside 0..{n_vertices - 1}")
    if uv is not None:
        uv = np.asarray(uv, np.float32)
        if uv_faces is None:
            if uv.shape != (n_vertices, 2):
                raise ValueError(f"per-vertex uv must be ({n_vertices}, 2), got {uv.shape}")
        else:
            uv_faces = np.asarray(uv_faces, np.int64)
            if uv.ndim != 2 or uv.shape[1] != 2 or uv_faces.shape != faces.shape:
                raise ValueError(f"per-corner uv needs uv (U, 2) and uv_faces {faces.shape}")
            if uv_faces.min() < 0 or uv_faces.max() >= len(uv):
                raise ValueError(f"uv_faces run outside 0..{len(uv) - 1}")
    elif uv_faces is not None:
        raise ValueError("uv_faces given without uv")
    return faces, uv, uv_faces


def _replace_when_done(path: Path):
    """A temporary sibling of `path`, moved onto it by the caller on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    os.close(fd)
    return Path(tmp)


# ----------------------------------------------------------------------------------------------
# OBJ


def _rows(template: str, arr: np.ndarray) -> str:
    """Format each row of `arr` with a %-template in one string operation."""
    if len(arr) == 0:
        return ""
    return (template * len(arr)) % tuple(arr.ravel().tolist())


def obj_vertex_text(vertices: np.ndarray, precision: int = 6) -> str:
    """``v x y z`` lines for (V, 3) positions."""
    return _rows(f"v %.{precision}f %.{precision}f %.{precision}f\n", np.asarray(vertices, np.float64))


def obj_static_text(faces: np.ndarray, uv=None, uv_faces=None) -> str:
    """``vt`` and ``f`` lines (1-based), shared by every frame of a sequence."""
    faces = np.asarray(faces, np.int64) + 1
    if uv is None:
        return _rows("f %d %d %d\n", faces)
    vt = _rows("vt %.6f %.6f\n", np.asarray(uv, np.float64))
    corners = faces if uv_faces is None else np.asarray(uv_faces, np.int64) + 1
    return vt + _rows("f %d/%d %d/%d %d/%d\n", np.stack([faces, corners], axis=2).reshape(len(faces), 6))


def obj_text(vertices, faces, uv=None, uv_faces=None, precision: int = 6) -> str:
    """A whole OBJ file as text."""
    return obj_vertex_text(vertices, precision) + obj_static_text(faces, uv, uv_faces)


def export_obj_sequence_zip(path, faces, frame_chunks, uv=None, uv_faces=None, *, precision: int = 6,
                            compresslevel: int = 1, name_format: str = "frame_{:05d}.obj") -> int:
    """Write a zip with one OBJ per frame (``frame_00000.obj``, ...), vertices in the given order,
    UVs (per vertex or per corner) when given. Returns the number of frames written."""
    path = Path(path)
    stream = _raw_chunks(frame_chunks)
    first = next(stream, None)
    if first is None:
        raise ValueError("no frames to export")
    faces, uv, uv_faces = _check_mesh(faces, first.shape[-2], uv, uv_faces)
    static = obj_static_text(faces, uv, uv_faces)
    tmp = _replace_when_done(path)
    count = 0
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
            for c in iter_frame_chunks(_prepend(first, stream), first.shape[-2]):
                for v in c:
                    zf.writestr(name_format.format(count), obj_vertex_text(v, precision) + static)
                    count += 1
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return count


# ----------------------------------------------------------------------------------------------
# glTF helpers


def split_uv_seams(faces, uv, uv_faces, n_vertices: int):
    """Per-corner UVs -> one UV per vertex by splitting vertices at seams.

    Returns (src (V',) original index of each new vertex, faces' (F, 3), uv' (V', 2)); vertices no
    face uses are kept (uv 0) so every original vertex has a copy.
    """
    pairs = np.stack([faces.ravel(), uv_faces.ravel()], axis=1)
    unused = np.setdiff1d(np.arange(n_vertices), faces.ravel())
    pairs = np.concatenate([pairs, np.stack([unused, np.full_like(unused, -1)], axis=1)])
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    inv = inv.ravel()
    new_uv = np.where(uniq[:, 1:2] >= 0, np.asarray(uv, np.float32)[np.maximum(uniq[:, 1], 0)], 0.0)
    return uniq[:, 0], inv[: faces.size].reshape(-1, 3), new_uv.astype(np.float32)


class _Bin:
    """Collects the GLB binary chunk: in-memory pieces plus streamed regions from a temp file."""

    def __init__(self, gltf: gl.GLTF2):
        self.gltf = gltf
        self.pieces: list = []  # bytes, or (file object, offset, length)
        self.offset = 0

    def _view(self, length: int, target=None) -> int:
        self.gltf.bufferViews.append(gl.BufferView(buffer=0, byteOffset=self.offset, byteLength=length, target=target))
        self.offset += length
        return len(self.gltf.bufferViews) - 1

    def add(self, data: bytes, target=None) -> int:
        assert len(data) % 4 == 0
        self.pieces.append(bytes(data))
        return self._view(len(data), target)

    def add_stream(self, fh, file_offset: int, length: int, target=None) -> int:
        self.pieces.append((fh, file_offset, length))
        return self._view(length, target)

    def accessor(self, view: int, count: int, type_: str, component=_FLOAT, min_=None, max_=None) -> int:
        acc = gl.Accessor(bufferView=view, componentType=component, count=int(count), type=type_,
                          min=None if min_ is None else [float(x) for x in np.atleast_1d(min_)],
                          max=None if max_ is None else [float(x) for x in np.atleast_1d(max_)])
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def array(self, arr: np.ndarray, type_: str, target=None, minmax=False) -> int:
        arr = np.ascontiguousarray(arr)
        component = _UINT if arr.dtype == np.uint32 else _FLOAT
        arr = arr.astype(np.uint32 if component == _UINT else np.float32, copy=False)
        view = self.add(arr.tobytes(), target)
        flat = arr.reshape(len(arr), -1)
        mn, mx = (flat.min(0), flat.max(0)) if minmax else (None, None)
        return self.accessor(view, len(arr), type_, component, mn, mx)

    def write_glb(self, path: Path):
        """Header, JSON chunk, BIN chunk (streamed pieces copied from their files)."""
        self.gltf.buffers = [gl.Buffer(byteLength=self.offset)]
        js = self.gltf.gltf_to_json(separators=(",", ":"), indent=None).encode("utf-8")
        js += b" " * (-len(js) % 4)
        total = 12 + 8 + len(js) + 8 + self.offset
        with open(path, "wb") as f:
            f.write(b"glTF" + struct.pack("<II", 2, total))
            f.write(struct.pack("<I", len(js)) + b"JSON" + js)
            f.write(struct.pack("<I", self.offset) + b"BIN\0")
            for p in self.pieces:
                if isinstance(p, bytes):
                    f.write(p)
                else:
                    fh, off, length = p
                    fh.seek(off)
                    _copy_exact(fh, f, length)


def _copy_exact(src, dst, length: int, block: int = 1 << 22):
    while length > 0:
        buf = src.read(min(block, length))
        if not buf:
            raise IOError("temporary morph-target file ended early")
        dst.write(buf)
        length -= len(buf)


def _base_mesh(b: _Bin, neutral, faces, uv, uv_faces, normals: bool):
    """Add indices/POSITION/NORMAL/TEXCOORD_0 (and _ORIG_INDEX when split). Returns
    (attributes, indices accessor, src index (V',) or None)."""
    n_v = len(neutral)
    src = None
    vert_uv = uv
    out_faces = faces
    if uv is not None and uv_faces is not None:
        src, out_faces, vert_uv = split_uv_seams(faces, uv, uv_faces, n_v)
    base = neutral if src is None else neutral[src]
    attrs = gl.Attributes(POSITION=b.array(base, "VEC3", _ARRAY_BUFFER, minmax=True))
    if normals:
        n = vertex_normals(neutral, faces).astype(np.float32)
        attrs.NORMAL = b.array(n if src is None else n[src], "VEC3", _ARRAY_BUFFER)
    if vert_uv is not None:
        attrs.TEXCOORD_0 = b.array(np.stack([vert_uv[:, 0], 1.0 - vert_uv[:, 1]], 1), "VEC2", _ARRAY_BUFFER)
    if src is not None:
        setattr(attrs, "_ORIG_INDEX", b.array(src.astype(np.float32), "SCALAR", _ARRAY_BUFFER))
    indices = b.array(out_faces.astype(np.uint32).ravel(), "SCALAR", _ELEMENT_ARRAY_BUFFER)
    return attrs, indices, src


def _new_gltf(extras=None) -> gl.GLTF2:
    g = gl.GLTF2(asset=gl.Asset(generator="nfs", version="2.0"), scene=0)
    g.materials = [gl.Material(name="skin", pbrMetallicRoughness=gl.PbrMetallicRoughness(
        baseColorFactor=[0.8, 0.68, 0.6, 1.0], metallicFactor=0.0, roughnessFactor=0.6))]
    if extras:
        g.extras = extras
    return g


def _finish_scene(g: gl.GLTF2, prim: gl.Primitive, target_names: list[str], name: str):
    prim.material = 0
    g.meshes = [gl.Mesh(name=name, primitives=[prim], weights=[0.0] * len(target_names),
                        extras={"targetNames": list(target_names)})]
    g.nodes = [gl.Node(name=name, mesh=0)]
    g.scenes = [gl.Scene(nodes=[0])]


# ----------------------------------------------------------------------------------------------
# animated GLB


@dataclass
class GlbInfo:
    """What an animated GLB holds: `key_frames` (K,) source frame of each morph target."""

    n_frames: int
    fps: float
    key_frames: np.ndarray
    interpolation: str
    note: str

    @property
    def n_targets(self) -> int:
        return len(self.key_frames)


class _TargetStore:
    """Morph deltas of the kept frames in a temp file, fixed-size records in key order.

    Known length: keeps every `stride`-th frame plus the last. Unknown length with a cap: starts at
    stride 1 and doubles the stride (compacting the file) whenever the cap would be exceeded.
    """

    def __init__(self, fh, n_v: int, cap: int | None, n_frames: int | None):
        self.fh, self.rec = fh, n_v * 12
        self.cap, self.n_frames = cap, n_frames
        self.keys: list[int] = []
        self.mins: list[np.ndarray] = []
        self.maxs: list[np.ndarray] = []
        self.pending = None  # (frame, delta) of the newest frame not stored
        self.stride = 1
        if cap is not None and n_frames is not None and n_frames > cap:
            self.stride = math.ceil((n_frames - 1) / (cap - 1))
        self.seen = 0

    def _write(self, frame: int, delta: np.ndarray):
        self.fh.seek(len(self.keys) * self.rec)
        self.fh.write(np.ascontiguousarray(delta, np.float32).tobytes())
        self.keys.append(frame)
        self.mins.append(delta.min(0))
        self.maxs.append(delta.max(0))

    def _double(self):
        keep = [j for j, k in enumerate(self.keys) if k % (2 * self.stride) == 0]
        for new, old in enumerate(keep):
            if new != old:
                self.fh.seek(old * self.rec)
                data = self.fh.read(self.rec)
                self.fh.seek(new * self.rec)
                self.fh.write(data)
        self.keys = [self.keys[j] for j in keep]
        self.mins = [self.mins[j] for j in keep]
        self.maxs = [self.maxs[j] for j in keep]
        self.fh.truncate(len(self.keys) * self.rec)
        self.stride *= 2

    def push(self, delta: np.ndarray):
        frame = self.seen
        self.seen += 1
        growing = self.cap is not None and self.n_frames is None
        if growing and frame % self.stride == 0 and len(self.keys) >= self.cap - 1:
            self._double()
        if frame % self.stride == 0:
            self._write(frame, delta)
            self.pending = None
        else:
            self.pending = (frame, delta.copy())

    def finish(self):
        if self.pending is not None:
            self._write(*self.pending)
            self.pending = None


def export_animated_glb(path, neutral, faces, frame_chunks, fps: float, uv=None, uv_faces=None, *,
                        n_frames: int | None = None, max_morph_targets: int | None = DEFAULT_MAX_MORPH_TARGETS,
                        interpolation: str = "LINEAR", normals: bool = True, name: str = "face") -> GlbInfo:
    """Animated GLB: base mesh = `neutral` (V, 3), one morph target (float32 position deltas) per
    key frame, and an animation on the node's ``weights`` where key k has weight 1 on target k.

    With more frames than `max_morph_targets` (None: no cap) only every k-th frame (and the last)
    is keyed and LINEAR interpolation blends between keys; the returned info and the animation's
    extras say so. `n_frames` lets a one-shot iterator be strided optimally (otherwise the stride
    doubles as frames arrive). Frames are streamed through a temp file, never held together.
    """
    path = Path(path)
    interpolation = interpolation.upper()
    if interpolation not in ("LINEAR", "STEP"):
        raise ValueError(f"interpolation must be LINEAR or STEP, got {interpolation!r}")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    if max_morph_targets is not None and max_morph_targets < 2:
        raise ValueError("max_morph_targets must be at least 2")
    neutral = np.asarray(neutral, np.float32)
    if neutral.ndim != 2 or neutral.shape[1] != 3 or not np.isfinite(neutral).all():
        raise ValueError(f"neutral must be a finite (V, 3) array, got {neutral.shape}")
    faces, uv, uv_faces = _check_mesh(faces, len(neutral), uv, uv_faces)
    n_frames = count_frames(frame_chunks) if n_frames is None else int(n_frames)

    g = _new_gltf()
    b = _Bin(g)
    attrs, indices, src = _base_mesh(b, neutral, faces, uv, uv_faces, normals)
    n_out = len(neutral) if src is None else len(src)
    tmp = _replace_when_done(path)
    try:
        with tempfile.TemporaryFile(dir=path.parent) as fh:
            store = _TargetStore(fh, n_out, max_morph_targets, n_frames)
            for c in iter_frame_chunks(frame_chunks, len(neutral)):
                deltas = c - neutral
                for d in deltas if src is None else deltas[:, src]:
                    store.push(d)
            store.finish()
            if not store.keys:
                raise ValueError("no frames to export")
            if n_frames is not None and store.seen != n_frames:
                raise ValueError(f"n_frames={n_frames} but {store.seen} frames arrived")
            keys = np.array(store.keys)
            k = len(keys)
            targets = []
            for j in range(k):
                view = b.add_stream(fh, j * store.rec, store.rec, _ARRAY_BUFFER)
                acc = b.accessor(view, n_out, "VEC3", min_=store.mins[j], max_=store.maxs[j])
                targets.append(gl.Attributes(POSITION=acc))
            prim = gl.Primitive(attributes=attrs, indices=indices, targets=targets)
            target_names = [f"frame_{f:05d}" for f in keys]
            _finish_scene(g, prim, target_names, name)
            times = (keys / fps).astype(np.float32)
            t_in = b.array(times, "SCALAR", minmax=True)
            t_out = b.array(np.eye(k, dtype=np.float32).ravel(), "SCALAR")
            if k == store.seen:
                note = ""
            else:
                note = (f"{store.seen} frames exceed max_morph_targets={max_morph_targets}: keyed every "
                        f"{store.stride} frames (and the last), LINEAR in between")
                interpolation = "LINEAR"
            g.animations = [gl.Animation(
                name=f"{name}_anim",
                samplers=[gl.AnimationSampler(input=t_in, output=t_out, interpolation=interpolation)],
                channels=[gl.AnimationChannel(sampler=0, target=gl.AnimationChannelTarget(node=0, path="weights"))],
                extras={"fps": float(fps), "n_frames": int(store.seen), "key_stride": int(store.stride), "note": note})]
            b.write_glb(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return GlbInfo(n_frames=store.seen, fps=float(fps), key_frames=keys, interpolation=interpolation, note=note)


# ----------------------------------------------------------------------------------------------
# rig GLB


def rig_target_names(names: Sequence[str] = EXPRESSION_NAMES, merge_split_pairs: bool = False) -> list[str]:
    """Morph-target names for ICT shapes: ARKit names (``eyeBlinkLeft``, ``jawOpen``, ...).

    ICT splits ARKit's browInnerUp and cheekPuff into _L/_R halves. By default the halves stay
    separate targets under their ICT names (``browInnerUp_L``, ``browInnerUp_R``, ``cheekPuff_L``,
    ``cheekPuff_R``), keeping all 53 shapes; with `merge_split_pairs` each pair becomes one target
    named ``browInnerUp`` / ``cheekPuff`` (sum of the halves, as ARKit drives both at once).
    Names that are not ICT shape names pass through unchanged.
    """
    out = []
    for n in names:
        if n not in EXPRESSION_NAMES:
            out.append(n)
        elif ict_to_arkit_name(n) == n[:-2] and n.endswith(("_L", "_R")) and not merge_split_pairs:
            out.append(n)
        else:
            out.append(ict_to_arkit_name(n))
    return list(dict.fromkeys(out)) if merge_split_pairs else out


def export_rig_glb(path, neutral, faces, shape_deltas, names: Sequence[str] = EXPRESSION_NAMES, uv=None,
                   uv_faces=None, *, merge_split_pairs: bool = False, normals: bool = True,
                   name: str = "face_rig") -> list[str]:
    """Baked blendshape rig: base = `neutral` (V, 3), one named morph target per row of
    `shape_deltas` (K, V, 3) (position offsets, float32), names in ``mesh.extras.targetNames``
    (see `rig_target_names`), no animation. Returns the target names."""
    path = Path(path)
    neutral = np.asarray(neutral, np.float32)
    deltas = np.asarray(shape_deltas, np.float32)
    if deltas.ndim != 3 or deltas.shape[1:] != neutral.shape or neutral.shape[-1:] != (3,):
        raise ValueError(f"shape_deltas must be (K, {len(neutral)}, 3), got {deltas.shape}")
    if len(names) != len(deltas):
        raise ValueError(f"{len(names)} names for {len(deltas)} shapes")
    if not (np.isfinite(deltas).all() and np.isfinite(neutral).all()):
        raise ValueError("neutral and shape_deltas must be finite")
    faces, uv, uv_faces = _check_mesh(faces, len(neutral), uv, uv_faces)
    target_names = rig_target_names(names, merge_split_pairs)
    if merge_split_pairs:
        per_shape = [ict_to_arkit_name(n) if n in EXPRESSION_NAMES else n for n in names]
        merged = np.zeros((len(target_names),) + deltas.shape[1:], np.float32)
        for j, n in enumerate(per_shape):
            merged[target_names.index(n)] += deltas[j]
        deltas = merged
    g = _new_gltf()
    b = _Bin(g)
    attrs, indices, src = _base_mesh(b, neutral, faces, uv, uv_faces, normals)
    targets = []
    for d in deltas:
        d = d if src is None else d[src]
        targets.append(gl.Attributes(POSITION=b.array(d, "VEC3", _ARRAY_BUFFER, minmax=True)))
    _finish_scene(g, gl.Primitive(attributes=attrs, indices=indices, targets=targets), target_names, name)
    tmp = _replace_when_done(path)
    try:
        b.write_glb(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target_names


# ----------------------------------------------------------------------------------------------
# read-back


def _accessor(g: gl.GLTF2, blob: bytes, index: int) -> np.ndarray:
    acc = g.accessors[index]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc.type]
    dtype = {_FLOAT: np.float32, _UINT: np.uint32, 5123: np.uint16, 5121: np.uint8}[acc.componentType]
    view = g.bufferViews[acc.bufferView]
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    itemsize = np.dtype(dtype).itemsize * width
    stride = view.byteStride or itemsize
    raw = np.frombuffer(blob, np.uint8, count=stride * (acc.count - 1) + itemsize, offset=start)
    if stride == itemsize:
        arr = raw.view(dtype)
    else:
        arr = np.lib.stride_tricks.as_strided(raw, (acc.count, itemsize), (stride, 1)).copy().view(dtype)
    return arr.reshape(acc.count, width) if width > 1 else arr.reshape(acc.count)


@dataclass
class GlbMesh:
    """The first mesh of a GLB written here, in the ORIGINAL vertex order: `neutral` (V, 3),
    `faces` (F, 3), `targets` (K, V, 3) deltas, `target_names`, `uv` (V', 2) of the glTF vertices
    (OBJ convention) or None, `animation` dict (times, weights (n_keys, K), interpolation, extras)."""

    neutral: np.ndarray
    faces: np.ndarray
    targets: np.ndarray
    target_names: list
    uv: np.ndarray | None
    animation: dict | None


def read_glb_mesh(path) -> GlbMesh:
    """Read a GLB from this module back with pygltflib (split vertices merged back)."""
    g = gl.GLTF2.load_binary(str(path))
    blob = g.binary_blob()
    mesh = g.meshes[0]
    prim = mesh.primitives[0]
    pos = _accessor(g, blob, prim.attributes.POSITION)
    faces = _accessor(g, blob, prim.indices).reshape(-1, 3).astype(np.int64)
    orig = getattr(prim.attributes, "_ORIG_INDEX", None)
    src = None if orig is None else np.rint(_accessor(g, blob, orig)).astype(np.int64)
    uv = None
    if prim.attributes.TEXCOORD_0 is not None:
        t = _accessor(g, blob, prim.attributes.TEXCOORD_0)
        uv = np.stack([t[:, 0], 1.0 - t[:, 1]], 1)
    targets = [_accessor(g, blob, t.POSITION if isinstance(t, gl.Attributes) else t["POSITION"])
               for t in (prim.targets or [])]
    targets = np.stack(targets) if targets else np.zeros((0,) + pos.shape, np.float32)
    if src is not None:
        n = int(src.max()) + 1
        merged = np.zeros((n, 3), np.float32)
        merged[src] = pos
        mt = np.zeros((len(targets), n, 3), np.float32)
        mt[:, src] = targets
        pos, targets, faces = merged, mt, src[faces]
    anim = None
    if g.animations:
        a = g.animations[0]
        s = a.samplers[a.channels[0].sampler]
        times = _accessor(g, blob, s.input)
        anim = {"times": times, "weights": _accessor(g, blob, s.output).reshape(len(times), -1),
                "interpolation": s.interpolation or "LINEAR", "extras": a.extras or {}}
    names = list((mesh.extras or {}).get("targetNames", []))
    return GlbMesh(pos.astype(np.float32), faces, targets.astype(np.float32), names, uv, anim)


def _weights_at(anim: dict, t: float) -> np.ndarray:
    times, w = anim["times"], anim["weights"]
    j = int(np.searchsorted(times, t, side="right")) - 1
    if j < 0:
        return w[0]
    if j >= len(times) - 1 or anim["interpolation"] == "STEP":
        return w[min(j, len(times) - 1)]
    a = (t - times[j]) / max(times[j + 1] - times[j], 1e-12)
    return (1 - a) * w[j] + a * w[j + 1]


def read_glb_frames(path, frame_indices: Iterable[int]) -> np.ndarray:
    """Positions (len(frame_indices), V, 3) of an animated GLB at the given source frames, by
    evaluating its weights animation at frame / fps (fps from the animation's extras)."""
    m = read_glb_mesh(path)
    if m.animation is None:
        raise ValueError(f"{path}: no animation")
    fps = float(m.animation["extras"].get("fps", 0.0)) or None
    out = []
    for f in frame_indices:
        # same float32 rounding as the exported key times, so STEP lands on the right key
        t = float(np.float32(f / fps)) if fps else float(m.animation["times"][int(f)])
        w = _weights_at(m.animation, t)
        nz = np.nonzero(w)[0]
        out.append(m.neutral + np.tensordot(w[nz], m.targets[nz], axes=(0, 0)))
    return np.asarray(out, np.float32)


def read_rig_glb(path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(neutral (V, 3), faces (F, 3), deltas (K, V, 3), target names) of a rig GLB."""
    m = read_glb_mesh(path)
    return m.neutral, m.faces, m.targets, m.target_names


# ----------------------------------------------------------------------------------------------
# preview video


def _as_rgb(img) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        if a.dtype.kind == "f" and a.max(initial=0) <= 1.0:  # float images in [0, 1]
            a = a * 255.0
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"images must be (H, W, 3) RGB, got {a.shape}")
    return np.ascontiguousarray(a[:, :, :3])


def _images(frames_iter, render_fn) -> Iterator[np.ndarray]:
    """RGB images from images (or batches of them), or from vertex frames/chunks via `render_fn`."""
    for item in frames_iter:
        a = np.asarray(item)
        if render_fn is not None:
            for v in (a[None] if a.ndim == 2 else a):
                yield _as_rgb(render_fn(v))
        elif a.ndim == 4:
            yield from (_as_rgb(x) for x in a)
        else:
            yield _as_rgb(a)


def _even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    if h % 2 or w % 2:
        img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return img


def export_preview_video(path, frames_iter, fps: float, render_fn: Callable | None = None, *,
                         quality: float = 7.0) -> Path:
    """Encode a preview. Items of `frames_iter` are RGB uint8 images (H, W, 3) (or batches), or,
    with `render_fn`, vertex frames (V, 3) / chunks (t, V, 3) that ``render_fn(v) -> image`` draws.

    ``.gif`` paths are written as GIF; otherwise MP4 with libx264/yuv420p (odd sizes padded to even).
    If ffmpeg cannot start, a GIF is written next to `path` instead. Returns the path written.
    """
    path = Path(path)
    images = _images(frames_iter, render_fn)
    first = next(images, None)
    if first is None:
        raise ValueError("no frames for the preview")
    first = _even(first)
    if path.suffix.lower() != ".gif":
        try:
            import imageio_ffmpeg

            writer = imageio_ffmpeg.write_frames(
                str(path), (first.shape[1], first.shape[0]), fps=float(fps), codec="libx264", pix_fmt_in="rgb24",
                pix_fmt_out="yuv420p", quality=quality, macro_block_size=1, ffmpeg_log_level="error")
            writer.send(None)
            writer.send(first.tobytes())
        except (ImportError, RuntimeError, OSError, BrokenPipeError):
            path = path.with_suffix(".gif")
        else:
            try:
                for img in images:
                    img = _even(img)
                    if img.shape != first.shape:
                        raise ValueError(f"image size changed from {first.shape} to {img.shape}")
                    writer.send(img.tobytes())
            finally:
                writer.close()
            return path
    from PIL import Image

    frames = [Image.fromarray(first)]
    for img in images:
        img = _even(img)
        if img.shape != first.shape:
            raise ValueError(f"image size changed from {first.shape} to {img.shape}")
        frames.append(Image.fromarray(img))
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=max(int(round(1000 / fps)), 20), loop=0)
    return path
