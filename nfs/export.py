"""Exports of an animation on the user's mesh.

* ``export_obj_sequence_zip``: one OBJ per frame in a zip, original vertex order.
* ``export_animated_glb``: one mesh, a compact basis of morph targets and a ``weights`` animation keyed at
  every frame, within a stated error bound (``nfs.morph_basis``).
* ``export_rig_glb``: the 53 expression shapes as named morph targets (a blendshape rig).
* ``export_preview_video``: MP4 (libx264, yuv420p) or GIF from RGB images.

Frames arrive as an array (T, V, 3) or an iterable of (t, V, 3) / (V, 3) float arrays, so long clips
stream through in chunks. UVs are per vertex (``uv`` (V, 2)) or per corner (``uv`` (U, 2) with
``uv_faces`` (F, 3)); OBJ-style convention (v = 0 at the bottom), flipped for glTF on export.
The file formats themselves are written by `nfs.io` (OBJ text, the GLB builder, video encoding). Files appear
whole or not at all, with the umask's permissions (`nfs.io.files`).
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pygltflib as gl

from nfs.arkit import ict_to_arkit_name
from nfs.ict import EXPRESSION_NAMES
from nfs.io.gltf import ARRAY_BUFFER, GlbBuilder, add_base_mesh, finish_scene, new_gltf
from nfs.io.fixed_point import fits_fixed_point, fixed_point_rows
from nfs.io.obj import obj_static_text, obj_vertex_text
from nfs.io.zip_stream import ZipStreamWriter
from nfs.io.files import PartialFileWriter, discard, new_partial, publish
from nfs.io.video import VideoWriter as PreviewVideoWriter
from nfs.io.video import as_rgb, save_video

CHUNK = 64


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


# ----------------------------------------------------------------------------------------------
# OBJ


class ObjSequenceZipWriter(PartialFileWriter):
    """Writes a zip with one OBJ per frame as frames arrive (`add`), then moves it into place (`close`); nothing
    is left behind on error (`abort`, or leaving a ``with`` block by an exception).

    Fast: the ``vt``/``f`` lines are formatted and deflated once and every member reuses them
    (`nfs.io.zip_stream`); the ``v`` lines of a chunk of frames are formatted together as fixed-point text
    (`nfs.io.fixed_point`) and deflated on worker threads (zlib level `compresslevel`, 1 by default) while the
    next chunk is formatted. At most a few frames' text are held at a time."""

    def __init__(self, path, faces, n_vertices: int, uv=None, uv_faces=None, *, precision: int = 6,
                 compresslevel: int = 1, name_format: str = "frame_{:05d}.obj", workers: int = 2):
        self.path = Path(path)
        faces, uv, uv_faces = _check_mesh(faces, n_vertices, uv, uv_faces)
        self.n_vertices, self.name_format, self.precision = n_vertices, name_format, precision
        self.number_format = f"%.{precision}f"
        static = obj_static_text(faces, uv, uv_faces, self.number_format).encode("ascii")
        self.count = 0
        self.tmp = new_partial(self.path)
        self.file = open(self.tmp, "wb", buffering=1 << 20)
        self.zip = ZipStreamWriter(self.file, static, compresslevel)
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="obj-zip")
        self.pending: deque = deque()
        head_bytes = 36 * n_vertices
        self.max_pending = max(2 * workers, min(32, (64 << 20) // head_bytes))

    def _vertex_texts(self, chunk: np.ndarray) -> list[bytes]:
        """``v`` lines of each frame of a chunk (t, V, 3)."""
        if fits_fixed_point(chunk, self.precision):
            return fixed_point_rows(chunk.reshape(-1, 3), b"v ", self.precision, group=self.n_vertices)
        return [obj_vertex_text(v, self.number_format).encode("ascii") for v in chunk]

    def _write_ready(self, keep: int) -> None:
        while len(self.pending) > keep:
            name, size, job = self.pending.popleft()
            self.zip.add(name, size, *job.result())

    def add(self, frames) -> None:
        """Frames (t, V, 3) or one frame (V, 3)."""
        for c in iter_frame_chunks(frames, self.n_vertices, 16):
            for text in self._vertex_texts(c):
                self.pending.append((self.name_format.format(self.count), len(text),
                                     self.pool.submit(self.zip.deflate_head, text)))
                self.count += 1
                self._write_ready(self.max_pending)

    def close(self) -> int:
        """Finish the zip and move it onto `path`; returns the number of frames."""
        try:
            if self.count == 0:
                raise ValueError("no frames to export")
            self._write_ready(0)
            self.zip.close()
            self.file.close()
            publish(self.tmp, self.path)
        finally:
            self.abort()
        return self.count

    def abort(self) -> None:
        for _, _, job in self.pending:
            job.cancel()
        self.pending.clear()
        self.pool.shutdown(wait=True)
        self.file.close()
        discard(self.tmp)


def export_obj_sequence_zip(path, faces, frame_chunks, uv=None, uv_faces=None, *, precision: int = 6,
                            compresslevel: int = 1, name_format: str = "frame_{:05d}.obj") -> int:
    """Write a zip with one OBJ per frame (``frame_00000.obj``, ...), vertices in the given order,
    UVs (per vertex or per corner) when given. Frames stream through. Returns the number of frames written."""
    stream = _raw_chunks(frame_chunks)
    first = next(stream, None)
    if first is None:
        raise ValueError("no frames to export")
    with ObjSequenceZipWriter(path, faces, first.shape[-2], uv, uv_faces, precision=precision,
                              compresslevel=compresslevel, name_format=name_format) as writer:
        for c in _prepend(first, stream):
            writer.add(c)
    return writer.count


# ----------------------------------------------------------------------------------------------
# animated GLB


@dataclass
class GlbInfo:
    """What an animated GLB holds: every one of `n_frames` frames as weights on `n_targets` morph targets,
    reconstructed within `max_error` (mesh units; `max_error_mm` when the caller gave the unit)."""

    n_frames: int
    fps: float
    n_targets: int
    max_error: float
    tolerance: float
    max_error_mm: float | None = None


def default_tolerance(neutral: np.ndarray) -> float:
    """1e-4 of the mesh's bounding-box diagonal (0.03 mm on a 30 cm head): the bound used when none is given."""
    v = np.asarray(neutral, np.float64)
    return 1e-4 * max(float(np.linalg.norm(v.max(0) - v.min(0))), 1e-12)


def export_animated_glb(path, neutral, faces, frames, fps: float, uv=None, uv_faces=None, *,
                        tolerance: float | None = None, mm_per_unit: float | None = None, normals: bool = True,
                        name: str = "face", extras: dict | None = None) -> GlbInfo:
    """Animated GLB keeping every frame: base mesh = `neutral` (V, 3), a compact set of morph targets (a basis of
    the sequence's displacements, `nfs.morph_basis`) and a LINEAR ``weights`` animation with one key per frame at
    frame / fps seconds.

    `frames`: a `MorphSequence` already fitted to `neutral`, or positions (T, V, 3) / an iterable of chunks
    (t, V, 3), fitted here so that no vertex of any frame is further than `tolerance` (mesh units; default
    `default_tolerance`) from the frame given. The largest error goes into the animation's and the file's extras
    (in mm too when `mm_per_unit` is given) and the returned `GlbInfo`.
    """
    from nfs.morph_basis import MorphSequence, fit_morph_sequence

    path = Path(path)
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    neutral = np.asarray(neutral, np.float32)
    if neutral.ndim != 2 or neutral.shape[1] != 3 or not np.isfinite(neutral).all():
        raise ValueError(f"neutral must be a finite (V, 3) array, got {neutral.shape}")
    faces, uv, uv_faces = _check_mesh(faces, len(neutral), uv, uv_faces)
    if isinstance(frames, MorphSequence):
        seq = frames
        if seq.neutral.shape != neutral.shape or not np.allclose(seq.neutral, neutral, atol=1e-6):
            raise ValueError("the morph sequence was fitted to another neutral mesh")
    else:
        tol = default_tolerance(neutral) if tolerance is None else float(tolerance)
        seq = fit_morph_sequence(iter_frame_chunks(frames, len(neutral)), neutral, tol)
    if seq.n_frames == 0:
        raise ValueError("no frames to export")
    max_mm = None if mm_per_unit is None else seq.max_error * float(mm_per_unit)
    info = GlbInfo(n_frames=seq.n_frames, fps=float(fps), n_targets=seq.n_targets, max_error=seq.max_error,
                   tolerance=seq.tolerance, max_error_mm=max_mm)
    summary = {"fps": float(fps), "n_frames": seq.n_frames, "n_morph_targets": seq.n_targets,
               "max_error": seq.max_error, "tolerance": seq.tolerance,
               "basis": "orthogonal basis of the sequence's displacements; every frame keyed (LINEAR)"}
    if max_mm is not None:
        summary.update(max_error_mm=max_mm, tolerance_mm=seq.tolerance * float(mm_per_unit))
    g = new_gltf({**(extras or {}), "animation": summary})
    b = GlbBuilder(g)
    attrs, indices, src = add_base_mesh(b, neutral, faces, uv, uv_faces, normals)
    shapes, weights = seq.targets, seq.weights
    if len(shapes) == 0:  # no frame moves: one zero target keeps the animation (and its length) in the file
        shapes, weights = np.zeros((1,) + neutral.shape, np.float32), np.zeros((seq.n_frames, 1), np.float32)
    targets = [gl.Attributes(POSITION=b.array(d if src is None else d[src], "VEC3", ARRAY_BUFFER, minmax=True))
               for d in shapes]
    target_names = [f"basis_{k:03d}" for k in range(len(shapes))]
    finish_scene(g, gl.Primitive(attributes=attrs, indices=indices, targets=targets), target_names, name)
    times = (np.arange(seq.n_frames) / float(fps)).astype(np.float32)
    if seq.n_frames > 1 and not (np.diff(times) > 0).all():
        raise ValueError(f"{seq.n_frames} frames at {fps:g} fps: key times too close for float32")
    t_in = b.array(times, "SCALAR", minmax=True)
    t_out = b.array(np.ascontiguousarray(weights, np.float32).ravel(), "SCALAR")
    g.animations = [gl.Animation(
        name=f"{name}_anim",
        samplers=[gl.AnimationSampler(input=t_in, output=t_out, interpolation="LINEAR")],
        channels=[gl.AnimationChannel(sampler=0, target=gl.AnimationChannelTarget(node=0, path="weights"))],
        extras=summary)]
    _write_glb(b, path)
    return info


# ----------------------------------------------------------------------------------------------
# rig GLB


def _write_glb(builder: GlbBuilder, path) -> None:
    """Write the builder's GLB under a partial name and publish it whole (no half-written file is ever seen)."""
    tmp = new_partial(path)
    try:
        builder.write_glb(tmp)
        publish(tmp, path)
    finally:
        discard(tmp)


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
    _write_glb(b, path)
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
    Written by `nfs.io.video.save_video` (MP4, or GIF for a .gif path or when ffmpeg cannot start), one image at
    a time; returns the path written. `PreviewVideoWriter` takes images as they come."""
    return save_video(path, _images(frames_iter, render_fn), fps, quality=quality)
