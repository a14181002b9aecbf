"""A face video as a source clip: frames -> Face Landmarker v2 (478 landmarks, 52 ARKit scores, transformation
matrix) -> ICT weights (53) and head pose.

`load_video_clip` returns a `VideoClip`, a codes `Clip` (so retargeting, viewer, sliders and exports treat it like a
Live Link take) that also carries the landmarks, the raw ARKit scores, the head pose and which frames had no usable
face. Frames without one (no face, face turned away) are bridged from their neighbours and reported by number; a
second face in view is reported (the largest face is followed); a face upside down is reported and used.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from nfs.clips import MAX_FRAMES, Clip, ClipError
from nfs.video.calibrate import Calibration, scores_to_ict
from nfs.video.landmarks import N_LANDMARKS, FaceTracker
from nfs.video.pose import interpolate_matrices, relative_pose, rotation_part, yaw_pitch_roll
from nfs.video.reader import VideoError, read_frames

Progress = Callable[[float, str], None]
DISPLAY_FACE_HEIGHT_CM = 19.0     # chin to forehead top of the landmark set on the ICT head
DISPLAY_FACE_CENTRE_Y_CM = 0.5
MAX_YAW_DEG = 50.0                # a face turned further than this from the camera is not read (bridged)
UPSIDE_DOWN_ROLL_DEG = 120.0      # a face rolled further than this is reported as upside down


@dataclass
class VideoFit:
    """What the landmarker read from T frames."""

    scores: np.ndarray           # (T, 52) raw ARKit scores (`nfs.arkit.ARKIT_NAMES` order; bridged where missing)
    matrices: np.ndarray         # (T, 4, 4) canonical face (cm) -> camera (cm)
    rotations: np.ndarray        # (T, 3, 3) head rotation relative to the neutral frame (camera = ICT axes)
    translations: np.ndarray     # (T, 3) motion of the head's centre (`pose_pivot`) from the neutral frame, cm
    neutral_frame: int


def bridge_missing(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T, ...) values with frames where `valid` is False filled by linear interpolation between the nearest valid
    frames (held constant before the first and after the last)."""
    valid = np.asarray(valid, bool)
    if valid.all():
        return values
    idx = np.nonzero(valid)[0]
    t = np.arange(len(values))
    flat = np.asarray(values, np.float64)[idx].reshape(len(idx), -1)
    out = np.stack([np.interp(t, idx, flat[:, c]) for c in range(flat.shape[1])], 1)
    return out.reshape(values.shape)


@dataclass
class VideoClip(Clip):
    """A codes clip from a video, with what the landmarker saw.

    landmarks (T, 478, 3) image pixels (missing frames bridged); found (T,) bool (a usable face); frame_size
    (width, height); fit: the `VideoFit` (raw scores, head pose, neutral frame); timings: seconds per stage."""

    landmarks: np.ndarray | None = None
    found: np.ndarray | None = None
    frame_size: tuple = (0, 0)
    fit: VideoFit | None = None
    source_path: str = ""
    timings: dict = field(default_factory=dict)

    def landmarks_cm(self, index: int) -> np.ndarray:
        """(478, 3) landmarks of frame `index` for display beside the heads: x right, y up, z toward the camera, in
        cm at the size of the ICT face (the neutral frame's landmarks span DISPLAY_FACE_HEIGHT_CM), centred on the
        neutral frame's landmarks."""
        ref = self.landmarks[self.fit.neutral_frame if self.fit is not None else 0]
        scale = DISPLAY_FACE_HEIGHT_CM / max(float(np.ptp(ref[:, 1])), 1e-6)
        p = (self.landmarks[min(int(index), len(self.landmarks) - 1)] - ref.mean(0)) * scale
        return p * np.array([1.0, -1.0, -1.0]) + np.array([0.0, DISPLAY_FACE_CENTRE_Y_CM, 0.0])

    @property
    def missing_frames(self) -> list[int]:
        return [] if self.found is None else np.nonzero(~self.found)[0].tolist()

    def frame(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 video frame `index` (read again from the file: frames are not kept in memory)."""
        from nfs.video.reader import read_frames as _read
        frames, _, _ = _read(self.source_path, max(index + 1, 1))
        for i, f in enumerate(frames):
            if i == index:
                out = f.copy()
                frames.close()
                return out
        raise IndexError(index)


def describe_frames(frames: list[int], limit: int = 12) -> str:
    """'3, 4, 5-9, 12' style list of frame numbers (first `limit` runs)."""
    runs, start = [], None
    for i, f in enumerate(frames):
        if start is None:
            start = f
        if i + 1 == len(frames) or frames[i + 1] != f + 1:
            runs.append(str(start) if start == f else f"{start}-{f}")
            start = None
    more = f" and {len(runs) - limit} more runs" if len(runs) > limit else ""
    return ", ".join(runs[:limit]) + more


@dataclass
class Tracks:
    """Per-frame results of `track_frames` for T frames (NaN / identity where no face)."""

    points: np.ndarray        # (T, 478, 3) px
    scores: np.ndarray        # (T, 52)
    matrices: np.ndarray      # (T, 4, 4)
    found: np.ndarray         # (T,) bool
    faces: np.ndarray         # (T,) faces the detector counted
    frame_size: tuple         # (width, height)


def track_frames(frames, tracker: FaceTracker | None = None, progress: Progress | None = None,
                 total: int | None = None) -> Tracks:
    """Face Landmarker v2 on every frame of an iterable of (H, W, 3) uint8 frames."""
    tracker = tracker or FaceTracker()
    tracker.reset()
    points, scores, mats, found, faces, size = [], [], [], [], [], (0, 0)
    for i, frame in enumerate(frames):
        size = (frame.shape[1], frame.shape[0])
        got = tracker(frame)
        ok = got.points is not None
        found.append(ok)
        faces.append(got.faces)
        points.append(got.points if ok else np.full((N_LANDMARKS, 3), np.nan))
        scores.append(got.blendshapes if ok else np.full(52, np.nan))
        mats.append(got.matrix if ok else np.eye(4))
        if progress is not None and i % 10 == 0:
            progress(min(0.99, (i + 1) / total) if total else 0.5, f"tracked {i + 1}{f'/{total}' if total else ''} frames")
    if not points:
        raise VideoError("the video has no frames")
    return Tracks(np.stack(points), np.stack(scores).astype(np.float64), np.stack(mats), np.array(found),
                  np.array(faces), size)


def read_tracks(tracks: Tracks, fps: float, calibration: Calibration, what: str
                ) -> tuple[np.ndarray, VideoFit, np.ndarray, list[str]]:
    """Tracks -> ((T, 53) ICT weights, VideoFit, (T,) usable-face mask, warnings). Frames with no face or a face
    turned away are bridged; several faces and upside-down faces are reported."""
    n = len(tracks.found)
    warnings: list[str] = []
    found = tracks.found.copy()
    if not found.any():
        raise ClipError(f"{what}: no face found in any of its {n} frames (a face should fill a good part "
                        "of the frame, facing the camera)")
    angles = np.full((n, 3), np.nan)
    rot, _ = rotation_part(tracks.matrices[found])
    angles[found] = yaw_pitch_roll(rot)
    turned = found & (np.abs(angles[:, 0]) > MAX_YAW_DEG)
    upside = found & (np.abs(angles[:, 2]) > UPSIDE_DOWN_ROLL_DEG)
    missing = np.nonzero(~found)[0].tolist()
    if missing:
        warnings.append(f"no face in {len(missing)} of {n} frames ({describe_frames(missing)}); "
                        "bridged from the neighbouring frames")
    if turned.any():
        warnings.append(f"the face is turned away from the camera (more than {MAX_YAW_DEG:g} degrees) in "
                        f"{int(turned.sum())} frames ({describe_frames(np.nonzero(turned)[0].tolist())}); "
                        "bridged from the neighbouring frames")
        found &= ~turned
        if not found.any():
            raise ClipError(f"{what}: the face is turned away from the camera in every frame with a face")
    if upside.any():
        warnings.append(f"the face is upside down in {int(upside.sum())} frames "
                        f"({describe_frames(np.nonzero(upside)[0].tolist())}); read as it is")
    several = np.nonzero(tracks.faces > 1)[0].tolist()
    if several:
        warnings.append(f"{int(tracks.faces.max())} faces in view in frames {describe_frames(several)}; "
                        "following the largest")
    scores = bridge_missing(tracks.scores, found)
    matrices = interpolate_matrices(tracks.matrices, found)
    try:
        weights, neutral = scores_to_ict(scores, fps, calibration, found)
    except ValueError as e:
        raise ClipError(f"{what}: {e}") from None
    rotations, translations = relative_pose(matrices, neutral)
    return weights, VideoFit(scores, matrices, rotations, translations, neutral), found, warnings


def load_video_clip(path, calibration: Calibration | None = None, max_frames: int = MAX_FRAMES,
                    name: str | None = None, progress: Progress | None = None, threads: int = 1) -> VideoClip:
    """A face video (or a folder of images) -> VideoClip at the video's own frame rate (see the module docstring);
    a video with no face at all is a ClipError."""
    path = Path(path)
    what = path.name
    calibration = calibration or Calibration()
    timings = {}
    t0 = time.perf_counter()
    try:
        from nfs.video.reader import video_info
        _, total, _ = video_info(path)
        frames, fps, warnings = read_frames(path, max_frames)
        tracks = track_frames(frames, FaceTracker(threads), progress, total)
    except VideoError as e:
        raise ClipError(str(e) if str(e).startswith(what) else f"{what}: {e}") from None
    timings["track"] = time.perf_counter() - t0
    weights, fit, found, notes = read_tracks(tracks, fps, calibration, what)
    if progress is not None:
        progress(1.0, f"read {len(found)} frames")
    return VideoClip(name=name or path.stem, fps=fps, codes=weights, warnings=warnings + notes,
                     landmarks=bridge_missing(tracks.points, found), found=found, frame_size=tracks.frame_size,
                     fit=fit, source_path=str(path), timings=timings)
