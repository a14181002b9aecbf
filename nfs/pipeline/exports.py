"""The export stages of a run: each writes one file from the decoded frames (`DecodedRun`), reporting its
progress to its own span."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from nfs.clips import Clip
from nfs.arkit import ARKIT_NAMES, ict_to_arkit_shapes, ict_to_arkit_weights
from nfs.io.mesh import RawMesh
from nfs.io.obj import corner_uv_table
from nfs.pipeline.decoding import linear_rig_error_mm, rig_shapes
from nfs.pipeline.sources import SourceCodes, source_preview_frames
from nfs.pipeline.stages import EXPORT_KINDS, Span
from nfs.pipeline.target import PreparedTarget
from nfs.progress import Progress
from nfs.render import render_shaded

if TYPE_CHECKING:
    from nfs.avatar_export import AvatarExportInfo
    from nfs.export import GlbInfo
    from nfs.morph_basis import MorphSequence

# The MP4 preview is drawn by the CPU software renderer (about 10-20 frames/s at 2 x 320 px on 2 cores), so by
# default it is only written for takes up to this many frames; asking for "mp4" explicitly writes it at any length.
PREVIEW_DEFAULT_MAX_FRAMES = 600
GLB_TOLERANCE_MM = 0.1   # default bound on the animated GLB's error against the decoded frames
RIG_CHECK_FRAMES = 60    # frames (a spread over the clip) the baked rig is compared to the network on


def default_exports(n_frames: int, gltf_target: bool = False) -> tuple[str, ...]:
    """Every export, less the MP4 preview for takes longer than PREVIEW_DEFAULT_MAX_FRAMES, and the avatar export
    only for a glTF / VRM target (`gltf_target`)."""
    return tuple(k for k in EXPORT_KINDS if (k != "mp4" or n_frames <= PREVIEW_DEFAULT_MAX_FRAMES)
                 and (k != "avatar" or gltf_target))


def preview_note(n_frames: int) -> str:
    """Why the default leaves the MP4 preview out for a take of `n_frames` ('' when it does not)."""
    if n_frames <= PREVIEW_DEFAULT_MAX_FRAMES:
        return ""
    return (f"MP4 preview not written by default for takes over {PREVIEW_DEFAULT_MAX_FRAMES} frames (this one has "
            f"{n_frames}; the preview renders at ~10-20 frames/s): choose it explicitly to get it")


def uv_for_export(raw: RawMesh) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(uv, uv_faces) in the form the exporters take: per-vertex uv, or a uv table with per-corner indices."""
    if raw.uv is not None:  # never write NaN texture coordinates (a loader that left gaps: zeros)
        return np.nan_to_num(raw.uv, nan=0.0), None
    if raw.corner_uv is not None:
        return corner_uv_table(np.nan_to_num(raw.corner_uv, nan=0.0))
    return None, None


def rig_check_frames(n_frames: int) -> np.ndarray:
    """Indices of the frames the baked rig is compared on (a spread of RIG_CHECK_FRAMES over the clip)."""
    return np.linspace(0, n_frames - 1, min(RIG_CHECK_FRAMES, n_frames)).astype(int)


@dataclass
class DecodedRun:
    """What the export stages share: the target, the source's codes, the clip, every decoded frame as a morph
    sequence (user frame and units) and the frames kept for the rig's check."""

    target: PreparedTarget
    source: SourceCodes
    clip: Clip
    sequence: "MorphSequence"
    rig_frames: dict = field(default_factory=dict)   # frame index -> (V_in, 3) exactly as decoded

    @property
    def n_frames(self) -> int:
        return self.source.n_frames

    @property
    def stem(self) -> str:
        """The exports' file name stem: target and source names."""
        return f"{self.target.name}_{self.source.name}".replace(" ", "_")

    @property
    def neutral(self) -> np.ndarray:
        return self.target.raw.vertices.astype(np.float32)

    @property
    def mm_per_unit(self) -> float:
        return self.target.alignment.scale * 10.0

    def chunks(self, progress: Progress, span: Span, size: int = 8) -> Iterator[np.ndarray]:
        """The frames in chunks of (t, V_in, 3), reporting each one as the writer asks for the next."""
        n = self.n_frames
        for s in range(0, n, size):
            span.report(progress, s / n, f"{s}/{n} frames")
            yield self.sequence[s:s + size].astype(np.float32)
        span.report(progress, 1.0, f"{n}/{n} frames, finishing the file")


def write_obj_zip(run: DecodedRun, out: Path, progress: Progress, span: Span) -> Path:
    """A zip of one OBJ per frame (the user's faces and UVs)."""
    from nfs.export import ObjSequenceZipWriter
    uv, uv_faces = uv_for_export(run.target.raw)
    path = out / f"{run.stem}_obj.zip"
    with ObjSequenceZipWriter(path, run.target.raw.faces, len(run.neutral), uv, uv_faces) as obj:
        for chunk in run.chunks(progress, span):
            obj.add(chunk)
    return path


def write_glb(run: DecodedRun, out: Path, progress: Progress, span: Span) -> tuple[Path, "GlbInfo"]:
    """The animated GLB: the morph sequence itself, played at the source's rate."""
    from nfs.export import export_animated_glb
    uv, uv_faces = uv_for_export(run.target.raw)
    span.report(progress, 0.0, f"every frame on {run.sequence.n_targets} morph targets")
    path = out / f"{run.stem}.glb"
    info = export_animated_glb(path, run.neutral, run.target.raw.faces, run.sequence, run.source.fps, uv=uv,
                               uv_faces=uv_faces, mm_per_unit=run.mm_per_unit,
                               extras={"source": run.source.name, "target": run.target.name})
    span.report(progress, 1.0, "written")
    return path, info


def write_rig(run: DecodedRun, out: Path, progress: Progress,
              span: Span) -> tuple[Path, tuple[np.ndarray, np.ndarray], float]:
    """The network baked into a rig GLB with the 52 ARKit shapes; (path, (neutral, ICT deltas (53, V_in, 3)), mean
    error in mm of the rig against the decoded frames kept in `run.rig_frames`)."""
    from nfs.export import export_rig_glb
    target = run.target
    uv, uv_faces = uv_for_export(target.raw)
    neutral, deltas = rig_shapes(target, lambda f, m: span.report(progress, 0.6 * f, m))
    span.report(progress, 0.6, "writing the rig GLB")
    path = out / f"{target.name}_rig.glb"
    export_rig_glb(path, neutral, target.raw.faces, ict_to_arkit_shapes(deltas), ARKIT_NAMES, uv=uv,
                   uv_faces=uv_faces)
    span.report(progress, 0.9, "measuring the rig against the network")
    idx = rig_check_frames(run.n_frames)
    error = linear_rig_error_mm(target, neutral, deltas, run.source.weights[idx],
                                np.stack([run.rig_frames[int(i)] for i in idx]))
    return path, (neutral, deltas), error


def write_avatar(path, target: PreparedTarget, ict_shapes: np.ndarray, source: SourceCodes, *,
                 visemes: bool = False, keep_existing: bool = False) -> "AvatarExportInfo":
    """The target's own glTF / VRM file back with the 52 ARKit targets made from the baked rig (`ict_shapes`
    (53, V_in, 3), `rig_shapes`) and the source's weights as an animation; tongueOut from a part named like a
    tongue (else zero, and said so in the info's notes). `visemes`: the 15 Oculus visemes too; `keep_existing`:
    targets of those names already in the file are kept instead of replaced."""
    from nfs.avatar_export import export_avatar, tongue_out_shape
    raw = target.raw
    shapes = ict_to_arkit_shapes(ict_shapes)
    forward = target.alignment.rotation.T @ np.array([0.0, 0.0, 1.0])     # the face's direction, user frame
    tongue, moved = tongue_out_shape(raw, forward)
    shapes[ARKIT_NAMES.index("tongueOut")] = tongue
    notes = [] if moved else ["tongueOut is present and empty: the avatar has no part named as a tongue"]
    return export_avatar(path, raw.original, raw.source, raw, shapes, ict_to_arkit_weights(source.weights),
                         source.fps, visemes=visemes, keep_existing=keep_existing, clip_name=source.name,
                         notes=notes)


def write_avatar_export(run: DecodedRun, out: Path, progress: Progress, span: Span, ict_shapes: np.ndarray, *,
                        visemes: bool = False, keep_existing: bool = False) -> tuple[Path, "AvatarExportInfo"]:
    """The avatar export stage (`write_avatar`), named after the run (.vrm for a VRM target)."""
    span.report(progress, 0.6, "writing the avatar")
    suffix = ".vrm" if run.target.raw.source.lower().endswith(".vrm") else ".glb"
    path = out / f"{run.stem}_avatar{suffix}"
    info = write_avatar(path, run.target, ict_shapes, run.source, visemes=visemes, keep_existing=keep_existing)
    span.report(progress, 1.0, "written")
    return path, info


def write_preview(run: DecodedRun, out: Path, progress: Progress, span: Span, video_size: int = 320) -> Path:
    """The MP4 preview: the source beside the result, `video_size` pixels square each."""
    from nfs.export import PreviewVideoWriter
    target, n = run.target, run.n_frames
    src_frame = source_preview_frames(run.source, run.clip)
    skin = target.clean.skin_original_index
    with PreviewVideoWriter(out / f"{run.stem}_preview.mp4", run.source.fps) as video:
        for i in range(n):
            span.report(progress, i / n, f"{i}/{n} frames")
            sv, sf = src_frame(i)
            tv = target.alignment.apply(run.sequence[i][skin])
            video.add(np.concatenate([render_shaded(sv, sf, size=video_size),
                                      render_shaded(tv, target.skin_faces, size=video_size)], axis=1))
        span.report(progress, 1.0, f"{n}/{n} frames, finishing the file")
    return video.path    # the writer moved the finished file into place on closing
