"""One call from a mesh and a clip to files (`retarget`), used by the app, the CLI and the tests: prepare the
target, encode the clip, decode every frame once into a morph basis, then run one export stage per file."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nfs.clips import WEIGHT_CEILING, Clip
from nfs.ict import N_EXPRESSION
from nfs.mesh.align import Alignment
from nfs.model.network import NFSNetwork
from nfs.model.precision import resolve_device
from nfs.pipeline.decoding import decode, rig_shapes
from nfs.pipeline.exports import (GLB_TOLERANCE_MM, DecodedRun, default_exports, preview_note, rig_check_frames,
                                  write_avatar_export, write_glb, write_obj_zip, write_preview, write_rig)
from nfs.pipeline.sources import SourceCodes, encode_source, head_pose_rows
from nfs.options import check_exports, option_specs
from nfs.pipeline.stages import Span, stage_spans
from nfs.pipeline.target import PreparedTarget, as_raw_mesh, prepare_target
from nfs.progress import Progress, no_progress

if TYPE_CHECKING:
    from nfs.export import GlbInfo
    from nfs.morph_basis import MorphSequence


@dataclass
class RetargetResult:
    target: PreparedTarget
    source: SourceCodes
    sequence: "MorphSequence"    # every decoded frame as morph weights (within its max_error), user frame and units
    exports: dict                # kind -> Path
    rig_error_mm: float | None   # mean distance between the baked linear rig and the network on this clip
    timings: dict
    glb: "GlbInfo | None" = None  # what the animated GLB holds (morph targets, max error)
    notes: list = field(default_factory=list)  # what the user should know (exports left out, resampling)
    device: str = "cpu"
    rig: tuple | None = None     # (neutral (V_in, 3), deltas (53, V_in, 3)) when the rig was exported

    def frames(self) -> "MorphSequence":
        """The animated positions (T, V_in, 3) as an array-like (indexing reconstructs frames): the decoded frames
        to within `sequence.max_error` (<= the GLB tolerance, 0.1 mm by default)."""
        return self.sequence

    @property
    def max_error_mm(self) -> float:
        return self.sequence.max_error * self.target.alignment.scale * 10.0

    def summary(self) -> list[str]:
        """Lines for the CLI and the app: frames, timings, exports and their accuracy."""
        lines = [f"{self.source.n_frames} frames at {self.source.fps:g} fps on {self.device}; "
                 + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items())]
        if self.glb is not None:
            lines.append(f"animated GLB: every frame on {self.glb.n_targets} morph target"
                         f"{'' if self.glb.n_targets == 1 else 's'}, max error "
                         f"{self.glb.max_error_mm:.4f} mm against the decoded frames (bound "
                         f"{self.glb.tolerance * self.target.alignment.scale * 10:.3g} mm)")
        if self.rig_error_mm is not None:
            lines.append(f"baked rig vs network on this clip: {self.rig_error_mm:.3f} mm mean")
        return lines + list(self.notes)


def add_code_offset(source: SourceCodes, code_offset, src_fps: float) -> None:
    """Add slider edits `code_offset` (53,) or (T, 53) at the clip's own rate `src_fps` to the source's FACS
    weights in place (resampled to the source's rate when it differs), within [0, WEIGHT_CEILING]."""
    from nfs.clips import resample_rows
    offset = np.asarray(code_offset, np.float32)
    if offset.ndim == 2 and source.fps != src_fps:
        offset = resample_rows(offset, src_fps, source.fps)[:source.n_frames]
    source.codes[:, :N_EXPRESSION] = np.clip(source.codes[:, :N_EXPRESSION] + offset, 0, WEIGHT_CEILING)


def decode_run(target: PreparedTarget, source: SourceCodes, clip: Clip, progress: Progress, span: Span, *,
               glb_tolerance_mm: float, chunk_frames: int | None = None, keep_rig_frames: bool = False,
               pose: tuple | None = None) -> DecodedRun:
    """Decode every frame once into a compact morph basis within `glb_tolerance_mm` of every frame (held in
    memory); `pose` (rotations, translations) per frame moves the head (video clips); with `keep_rig_frames` the
    frames the rig is checked on are kept exactly as decoded."""
    from nfs.morph_basis import MorphBasisBuilder
    n_frames = source.n_frames
    neutral = target.raw.vertices.astype(np.float32)
    basis = MorphBasisBuilder(neutral, glb_tolerance_mm / (target.alignment.scale * 10.0))
    if pose is not None:
        from nfs.video.pose import apply_head_pose
    rig_idx = rig_check_frames(n_frames) if keep_rig_frames else np.zeros(0, int)
    rig_frames = {}
    done = 0
    span.report(progress, 0.0, f"0/{n_frames} frames")
    for chunk in decode(target, source.codes, chunk_frames):
        if pose is not None:            # the video's head motion, on this chunk's own frames
            apply_head_pose(chunk, target.alignment, *(rows[done:done + len(chunk)] for rows in pose))
        basis.add(chunk)
        for i in rig_idx[(rig_idx >= done) & (rig_idx < done + len(chunk))]:
            rig_frames[int(i)] = chunk[i - done].copy()
        done += len(chunk)
        span.report(progress, 0.98 * done / n_frames, f"{done}/{n_frames} frames")
    span.report(progress, 0.98, f"{n_frames}/{n_frames} frames, finishing the morph basis")
    return DecodedRun(target, source, clip, basis.finish(), rig_frames)


def retarget(target_mesh, clip: Clip, out_dir: str | Path, *, model: NFSNetwork,
             exports: tuple | None = None, smoothing_sigma: float = 0.0, gain=1.0,
             alignment: Alignment | None = None, code_offset: np.ndarray | None = None,
             progress: Progress = no_progress, chunk_frames: int | None = None, video_size: int = 320,
             correction: bool = False, fps: float | None = None, device: str | torch.device = "auto",
             glb_tolerance_mm: float = GLB_TOLERANCE_MM, head_pose: bool = False,
             force: bool = False, visemes: bool = False, keep_existing_targets: bool = False,
             open_mouth: bool = False) -> RetargetResult:
    """Prepare the target (or take `target_mesh` as it is when it is a `PreparedTarget`), encode the clip, decode every frame once into a compact morph basis (`nfs.morph_basis`,
    within `glb_tolerance_mm` of every decoded frame, held in memory: nothing but the exports is written to
    `out_dir`), then stream the chosen exports from it chunk by chunk (`exports`: a subset of EXPORT_KINDS; None:
    `default_exports`, which leaves the MP4 preview out of long takes). The animated GLB is the basis itself; the
    OBJ zip and the preview are its frames, within the same bound.

    `fps` resamples the clip (default: its own rate). `code_offset` (53,) or (T, 53) at the clip's own rate is added
    to the FACS weights (slider edits); with a template-prior model (the shipped one) positions come from the prior
    alone unless `correction=True` adds the network's learned correction (off by default: the prior alone is more
    accurate in every category of `python -m nfs eval`; the network's regions and skinning weights are used either
    way); `head_pose` applies a video clip's head motion to each decoded chunk (`nfs.video.pose`); `force`
    prepares a target that does not look like a face; `open_mouth` cuts a mouth modelled closed open
    (`nfs.mesh.mouth_cut`: new vertices are appended, so the avatar export, which writes the file back as it
    was, is left out of the default and refused when asked for). `device`: auto, cpu or cuda. `progress(fraction,
    "stage: detail")` with the stage names of `run_stages(exports)`, in that order. The avatar export
    (`nfs.avatar_export`; the default for a glTF / VRM target) writes the input file back whole with the 52 ARKit
    targets (`visemes`: and the 15 Oculus visemes; `keep_existing_targets`: targets of those names already in the
    file are kept instead of replaced) and the clip as an animation of their weights."""
    from nfs.clips import resample_clip

    dev = resolve_device(device)
    notes = []
    src_fps = clip.fps
    clip = resample_clip(clip, fps)
    if clip.fps != src_fps:
        notes.append(f"clip resampled from {src_fps:g} to {clip.fps:g} fps ({clip.n_frames} frames)")
    if not isinstance(target_mesh, PreparedTarget):   # a path or an array: read (and refused) before any work
        target_mesh = as_raw_mesh(target_mesh)
    gltf_target = (target_mesh.raw if isinstance(target_mesh, PreparedTarget) else target_mesh).is_gltf
    chosen = exports is not None
    if exports is None:
        exports = default_exports(clip.n_frames, gltf_target)
        if preview_note(clip.n_frames):
            notes.append(preview_note(clip.n_frames))
    exports = check_exports(exports) if exports else ()     # () decodes only: the result holds the frames
    if "avatar" in exports and not gltf_target:
        raise ValueError("the avatar export writes a glTF / GLB / VRM target back; this target is not one "
                         "(choose the rig or animated GLB instead)")
    glb_tolerance_mm = option_specs()["glb_tolerance_mm"].check(glb_tolerance_mm)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spans = stage_spans(exports)
    timings = {}
    t = time.perf_counter()
    spans["prepare"].report(progress, 0.0, "")
    target = prepare_target(target_mesh, model, alignment=alignment, force=force,   # a PreparedTarget as it is
                            progress=spans["prepare"].sub(progress), device=dev, open_mouth=open_mouth)
    if target.mouth is not None and "avatar" in exports:
        if chosen:
            raise ValueError("the avatar export writes your file back with its own vertices; the opened mouth "
                             "adds vertices to it: choose the rig or the animated GLB, or run without --open-mouth")
        exports = tuple(k for k in exports if k != "avatar")
        notes.append("avatar export left out: the opened mouth adds vertices your file does not have (the rig "
                     "and the animated GLB carry them)")
    if model.cfg.template_prior:   # without a template prior the network is the positions: always on
        target = target.with_correction(correction)
    timings["prepare"] = time.perf_counter() - t
    t = time.perf_counter()
    spans["encode"].report(progress, 0.0, "")
    source = encode_source(clip, model, smoothing_sigma=smoothing_sigma, gain=gain,
                           progress=spans["encode"].sub(progress), device=dev)
    if code_offset is not None:
        add_code_offset(source, code_offset, src_fps)
    timings["encode"] = time.perf_counter() - t

    t = time.perf_counter()
    run = decode_run(target, source, clip, progress, spans["decode"], glb_tolerance_mm=glb_tolerance_mm,
                     chunk_frames=chunk_frames, keep_rig_frames="rig" in exports,
                     pose=head_pose_rows(clip, src_fps) if head_pose else None)
    timings["decode"] = time.perf_counter() - t

    paths, glb, rig, rig_error = {}, None, None, None
    if "obj_zip" in exports:
        t = time.perf_counter()
        paths["obj_zip"] = write_obj_zip(run, out, progress, spans["obj_zip"])
        timings["obj_zip"] = time.perf_counter() - t
    if "glb" in exports:
        t = time.perf_counter()
        paths["glb"], glb = write_glb(run, out, progress, spans["glb"])
        timings["glb"] = time.perf_counter() - t
    if "rig" in exports:
        t = time.perf_counter()
        paths["rig"], rig, rig_error = write_rig(run, out, progress, spans["rig"])
        timings["rig"] = time.perf_counter() - t
    if "avatar" in exports:
        t = time.perf_counter()
        span = spans["avatar"]
        if rig is None:
            rig = rig_shapes(target, lambda f, m: span.report(progress, 0.6 * f, m))
        paths["avatar"], info = write_avatar_export(run, out, progress, span, rig[1], visemes=visemes,
                                                    keep_existing=keep_existing_targets)
        notes += info.notes
        timings["avatar"] = time.perf_counter() - t
    if "mp4" in exports:
        t = time.perf_counter()
        paths["mp4"] = write_preview(run, out, progress, spans["mp4"], video_size)
        timings["preview"] = time.perf_counter() - t
    progress(1.0, "done")
    return RetargetResult(target, source, run.sequence, paths, rig_error, timings, glb=glb, notes=notes,
                          device=str(dev), rig=rig)
