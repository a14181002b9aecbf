"""Exports of an animation on the user's mesh.

* ``export_obj_sequence_zip``: one OBJ per frame in a zip, original vertex order.
* ``export_animated_glb``: one mesh, one morph target per (key) frame, a ``weights`` animation.
* ``export_rig_glb``: the 53 expression shapes as named morph targets (a blendshape rig).
* ``export_preview_video``: MP4 (libx264, yuv420p) or GIF from RGB images.

Frames arrive as an array (T, V, 3) or an iterable of (t, V, 3) / (V, 3) float arrays, so long clips
stream through in chunks. UVs are per vertex (``uv`` (V, 2)) or per corner (``uv`` (U, 2) with
``uv_faces`` (F, 3)); OBJ-style convention (v = 0 at the bottom), flipped for glTF on export.
The file formats themselves are written by `nfs.io` (OBJ text, the GLB builder, video encoding).
"""
from __future__ import annotations

import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pygltflib as gl

from nfs.ict import EXPRESSION_NAMES, ict_to_arkit_name
from nfs.io.gltf import ARRAY_BUFFER, GlbBuilder, add_base_mesh, finish_scene, new_gltf
from nfs.io.obj import obj_static_text, obj_vertex_text
from nfs.io.video import as_rgb, save_video

CHUNK = 64
DEFAULT_MAX_MORPH_TARGETS = 256  # WebGL2 guarantees >= 256 texture-array layers (three.js morph textures)


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
    number_format = f"%.{precision}f"
    static = obj_static_text(faces, uv, uv_faces, number_format)
    tmp = _replace_when_done(path)
    count = 0
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
            for c in iter_frame_chunks(_prepend(first, stream), first.shape[-2]):
                for v in c:
                    zf.writestr(name_format.format(count), obj_vertex_text(v, number_format) + static)
                    count += 1
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return count


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

    g = new_gltf()
    b = GlbBuilder(g)
    attrs, indices, src = add_base_mesh(b, neutral, faces, uv, uv_faces, normals)
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
                view = b.add_stream(fh, j * store.rec, store.rec, ARRAY_BUFFER)
                acc = b.accessor(view, n_out, "VEC3", min_=store.mins[j], max_=store.maxs[j])
                targets.append(gl.Attributes(POSITION=acc))
            prim = gl.Primitive(attributes=attrs, indices=indices, targets=targets)
            target_names = [f"frame_{f:05d}" for f in keys]
            finish_scene(g, prim, target_names, name)
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
    g = new_gltf()
    b = GlbBuilder(g)
    attrs, indices, src = add_base_mesh(b, neutral, faces, uv, uv_faces, normals)
    targets = []
    for d in deltas:
        d = d if src is None else d[src]
        targets.append(gl.Attributes(POSITION=b.array(d, "VEC3", ARRAY_BUFFER, minmax=True)))
    finish_scene(g, gl.Primitive(attributes=attrs, indices=indices, targets=targets), target_names, name)
    tmp = _replace_when_done(path)
    try:
        b.write_glb(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target_names


# ----------------------------------------------------------------------------------------------
# preview video


def _images(frames_iter, render_fn) -> Iterator[np.ndarray]:
    """RGB images from images (or batches of them), or from vertex frames/chunks via `render_fn`."""
    for item in frames_iter:
        a = np.asarray(item)
        if render_fn is not None:
            for v in (a[None] if a.ndim == 2 else a):
                yield as_rgb(render_fn(v))
        elif a.ndim == 4:
            yield from (as_rgb(x) for x in a)
        else:
            yield as_rgb(a)


def export_preview_video(path, frames_iter, fps: float, render_fn: Callable | None = None, *,
                         quality: float = 7.0) -> Path:
    """Encode a preview. Items of `frames_iter` are RGB uint8 images (H, W, 3) (or batches), or,
    with `render_fn`, vertex frames (V, 3) / chunks (t, V, 3) that ``render_fn(v) -> image`` draws.
    Written by `nfs.io.video.save_video` (MP4, or GIF for a .gif path or when ffmpeg cannot start); returns the
    path written."""
    return save_video(path, _images(frames_iter, render_fn), fps, quality=quality)
