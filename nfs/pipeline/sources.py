"""Source clips: loading one from a name or a file (face videos included, through `nfs.video`), and the per-frame
expression codes a clip gives (`encode_source`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from nfs.clips import MAX_FRAMES, Clip, ClipError, apply_gain, smooth_codes
from nfs.geometry.normals import vertex_normals
from nfs.geometry.operators import Operators, get_operators
from nfs.ict import N_EXPRESSION
from nfs.io import registry
from nfs.mesh.align import align_to_ict
from nfs.mesh.clean import clean_mesh
from nfs.model.diffusion_net import operators_to_torch
from nfs.model.network import NFSNetwork
from nfs.model.precision import model_autocast, resolve_device
from nfs.pipeline.models import model_on
from nfs.progress import Progress, no_progress
from nfs.prior import fit_ict_weights, template_expression_basis
from nfs.render import render_normal_depth


# ----------------------------------------------------------------------------------------------- loading clips

def video_calibration(neutral_frame: int | None = None, subtract_neutral: bool = True, dead_zone: float = 0.0,
                      gains: dict | str | None = None):
    """How a face video's scores become weights (`nfs.video.Calibration`): the relaxed face's frame (None: chosen
    automatically), whether its scores are taken off, a dead zone and per-shape gains {ARKit or ICT name: gain} or
    as text ("eyeBlink=1.3, jawOpen=1.2"); unknown gain names are refused here, before any video is read."""
    from nfs.video import Calibration
    from nfs.video.calibrate import gain_vector, parse_gains
    if isinstance(gains, str):
        gains = parse_gains(gains)
    if not 0.0 <= float(dead_zone) <= 0.9:
        raise ValueError(f"dead zone must be between 0 and 0.9, got {dead_zone}")
    calibration = Calibration(neutral_frame=neutral_frame, subtract_neutral=bool(subtract_neutral),
                              dead_zone=float(dead_zone), gains=dict(gains or {}))
    gain_vector(calibration.gains)
    return calibration


def load_face_video(path: str | Path, neutral_frame: int | None = None, max_frames: int = MAX_FRAMES,
                    progress: Callable[[float, str], None] | None = None, calibration=None) -> Clip:
    """A face video or a folder of images as a clip: MediaPipe's face model read as the 53 ICT weights, a
    `nfs.video.VideoClip` at the video's frame rate. neutral_frame: the frame (from 0) of the relaxed face (None:
    chosen automatically), or a whole `calibration` (`video_calibration`); `progress(fraction, message)` while
    tracking. nfs.video loads on first use."""
    from nfs.video import load_video_clip
    if calibration is None:
        calibration = video_calibration(neutral_frame)
    return load_video_clip(path, calibration, max_frames=max_frames, progress=progress)


def video_lacks_duration(path) -> bool:
    """True for a video file whose container states no duration (a browser recording)."""
    from nfs.video.reader import lacks_duration
    return lacks_duration(path)


def remux_video_with_duration(path, out) -> Path | None:
    """The video's streams copied into `out` (same container, no re-encoding), which then states its duration;
    None when ffmpeg refuses."""
    from nfs.video.reader import remux_with_duration
    return remux_with_duration(path, out)


def live_chain(threads: int = 2):
    """A live camera -> weights -> rig chain (`nfs.video.live.LiveChain`); nfs.video loads on first use."""
    from nfs.video.live import LiveChain
    return LiveChain(threads=threads)


def is_face_video(spec) -> bool:
    """True when `spec` names an existing face video file or a folder of images (not OBJ frames)."""
    path = Path(str(spec))
    if not path.exists() or str(spec) in registry.list_builtin_clips():
        return False
    from nfs.video.reader import is_video_source
    return is_video_source(path)


def load_clip(spec: str | Path, max_frames: int = MAX_FRAMES, neutral_frame: int | None = None,
              progress: Callable[[float, str], None] | None = None, calibration=None) -> Clip:
    """A clip from a built-in name or any clip file `nfs.io.load_clip` reads, or a face video / folder of images
    (`load_face_video`, with its `neutral_frame` or whole `calibration` and `progress`; `neutral_frame` is refused
    for other clips)."""
    if is_face_video(spec):
        return load_face_video(spec, neutral_frame, max_frames=max_frames, progress=progress,
                               calibration=calibration)
    if neutral_frame is not None:
        raise ClipError(f"{Path(str(spec)).name}: --neutral-frame applies to video clips only")
    return registry.load_clip(spec, max_frames=max_frames)


# ----------------------------------------------------------------------------------------------- encoding

@dataclass
class SourceCodes:
    """Per-frame expression codes of a source clip."""

    name: str
    fps: float
    codes: np.ndarray     # (T, code_dim) z_GE; first 53 dims are ICT FACS weights
    source_kind: str      # codes / meshes

    @property
    def weights(self) -> np.ndarray:
        return self.codes[:, :N_EXPRESSION]

    @property
    def n_frames(self) -> int:
        return len(self.codes)


@torch.no_grad()
def encode_source(clip: Clip, model: NFSNetwork, *, smoothing_sigma: float = 0.0, gain=1.0,
                  chunk_frames: int = 16, mesh_encoder: str = "fit",
                  progress: Progress = no_progress, device: str | torch.device = "auto") -> SourceCodes:
    """Expression codes for every frame of a clip. ICT coefficient clips are used as they are. Mesh sequences are
    aligned with their neutral's alignment, then either fitted with the ICT blendshapes carried to the source
    through closest points (`mesh_encoder="fit"`, bounded least squares, the default: more accurate than our
    CPU-trained expression encoder) or passed through the network's expression encoder ("network").
    Optional temporal Gaussian smoothing (sigma in frames, edge-padded) and per-shape gain. The network encoder
    runs on `device` (auto: a GPU when there is one)."""
    code_dim = model.cfg.code_dim
    if clip.kind == "codes":
        codes = np.zeros((clip.n_frames, code_dim), np.float32)
        codes[:, :N_EXPRESSION] = clip.codes
    else:
        if mesh_encoder not in ("fit", "network"):
            raise ValueError(f"mesh_encoder must be 'fit' or 'network', got {mesh_encoder!r}")
        codes = _encode_mesh_frames(clip, model_on(model, resolve_device(device)), chunk_frames, progress,
                                    fit=mesh_encoder == "fit")
    if smoothing_sigma > 0:
        codes = smooth_codes(codes, smoothing_sigma)
    if not np.isscalar(gain) or gain != 1.0:
        codes[:, :N_EXPRESSION] = apply_gain(codes[:, :N_EXPRESSION], gain)
    return SourceCodes(clip.name, clip.fps, codes.astype(np.float32), clip.kind)


def _encode_mesh_frames(clip: Clip, model: NFSNetwork, chunk_frames: int, progress: Progress,
                        fit: bool = True) -> np.ndarray:
    neutral = clip.neutral if clip.neutral is not None else clip.frames[0]
    clean = clean_mesh(neutral, clip.faces)
    keep = clean.skin_original_index
    align = align_to_ict(clean.skin_points, clean.skin_faces)
    n_ict = align.apply(clean.skin_points).astype(np.float32)
    if fit:
        basis = template_expression_basis(n_ict, faces=clean.skin_faces)
        codes = np.zeros((clip.n_frames, model.cfg.code_dim), np.float32)
        for start in range(0, clip.n_frames, 64):
            frames = clip.frames[start:start + 64][:, keep]
            disp = np.einsum("ij,tvj->tvi", align.rotation * align.scale, frames - np.asarray(neutral)[keep])
            codes[start:start + len(frames), :N_EXPRESSION] = fit_ict_weights(disp, basis)
            progress(min(1.0, (start + len(frames)) / clip.n_frames), "fitting source frames")
        return codes
    ops = get_operators(n_ict, clean.skin_faces, model.cfg.k_eig)
    chunks = (np.stack([align.apply(f[keep]) for f in clip.frames[start:start + chunk_frames]])
              for start in range(0, clip.n_frames, chunk_frames))
    return encode_expression_frames(model, chunks, clean.skin_faces, ops, clip.n_frames, progress)


@torch.no_grad()
def encode_expression_frames(model: NFSNetwork, chunks: Iterable[np.ndarray], faces: np.ndarray, ops: Operators,
                             n_frames: int | None = None, progress: Progress = no_progress) -> np.ndarray:
    """The network's expression encoder on frames of one skin: chunks (t, S, 3) in the ICT frame (cm), all with the
    neutral's faces (F, 3) and operators -> codes (T, code_dim), the 53 FACS weights clipped to [0, 1].
    `n_frames` (the total, when known) scales the progress reports."""
    dev = next(model.parameters()).device
    ot = operators_to_torch(ops, model.cfg.k_eig).to(dev)
    out, done = [], 0
    for chunk in chunks:
        frames = np.asarray(chunk, np.float32)
        normals = vertex_normals(frames, faces).astype(np.float32)
        images = np.stack([render_normal_depth(f, faces, model.cfg.image_size) for f in frames])
        with model_autocast(dev):
            z = model.encode_expression(torch.from_numpy(frames).to(dev), torch.from_numpy(normals).to(dev), ot,
                                        torch.from_numpy(images).to(dev))
        out.append(z.float().cpu().numpy())
        done += len(frames)
        if n_frames:
            progress(min(1.0, done / n_frames), "encoding source frames")
    codes = np.concatenate(out)
    codes[:, :N_EXPRESSION] = np.clip(codes[:, :N_EXPRESSION], 0.0, 1.0)
    return codes


def head_pose_rows(clip: Clip, src_fps: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(rotations (T, 3, 3), translations (T, 3)) of a video clip's head motion at the clip's own rate (resampled
    from `src_fps`, the rate of its fit, when the clip was), or None for a clip without one."""
    fit = getattr(clip, "fit", None)
    if fit is None:
        return None
    rot, trans = np.asarray(fit.rotations, np.float64), np.asarray(fit.translations, np.float64)
    if abs(clip.fps - src_fps) > 1e-9:
        from nfs.clips import resample_rows
        rot = resample_rows(rot.reshape(len(rot), 9), src_fps, clip.fps).reshape(-1, 3, 3)
        u, _, vt = np.linalg.svd(rot)           # blended rotations back onto the nearest rotations
        rot = u @ vt
        trans = resample_rows(trans, src_fps, clip.fps)
    n = clip.n_frames
    if len(rot) < n:                             # never short of rows: the last pose holds
        rot = np.concatenate([rot, np.repeat(rot[-1:], n - len(rot), 0)])
        trans = np.concatenate([trans, np.repeat(trans[-1:], n - len(trans), 0)])
    return rot[:n], trans[:n]


def source_preview_frames(source: SourceCodes, clip: Clip | None) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """frame index -> (vertices, faces) of the source to show beside the result (ICT generic face for codes)."""
    from nfs.ict import load_ict
    if clip is not None and clip.kind == "meshes":
        align = align_to_ict(clip.neutral if clip.neutral is not None else clip.frames[0], clip.faces)
        return lambda i: (align.apply(clip.frames[i]), clip.faces)
    ict = load_ict()
    faces = ict.region_faces("skin")
    return lambda i: (ict.vertices(None, source.weights[i]), faces)
