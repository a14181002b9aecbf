"""A face video as a source clip: frames -> MediaPipe landmarks -> ICT weights (53) and head pose.

`load_video_clip` returns a `VideoClip`, a codes `Clip` (so retargeting, viewer, sliders and exports treat it like a
Live Link take) that also carries the landmarks, the head pose and which frames had no face.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from nfs.clips import MAX_FRAMES, Clip, ClipError
from nfs.video.fit import FitConfig, LandmarkFit, bridge_missing, fit_landmarks
from nfs.video.landmarks import N_LANDMARKS, FaceTracker
from nfs.video.reader import VideoError, read_frames

Progress = Callable[[float, str], None]
DISPLAY_FACE_HEIGHT_CM = 19.0     # chin to forehead top of the landmark set on the ICT head
DISPLAY_FACE_CENTRE_Y_CM = 0.5


@dataclass
class VideoClip(Clip):
    """A codes clip from a video, with what the fit saw.

    landmarks (T, 468, 3) image pixels (missing frames bridged); found (T,) bool; frame_size (width, height);
    fit: the `LandmarkFit` (head pose, neutral frame, residuals); timings: seconds per stage."""

    landmarks: np.ndarray | None = None
    found: np.ndarray | None = None
    frame_size: tuple = (0, 0)
    fit: LandmarkFit | None = None
    source_path: str = ""
    timings: dict = field(default_factory=dict)

    def landmarks_cm(self, index: int) -> np.ndarray:
        """(468, 3) landmarks of frame `index` for display beside the heads: x right, y up, z toward the camera, in
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


def track_frames(frames, tracker: FaceTracker | None = None, progress: Progress | None = None,
                 total: int | None = None) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Landmarks of every frame of an iterable of (H, W, 3) uint8 frames: (T, 468, 3) (NaN where no face), found
    (T,) and the frame size (width, height)."""
    tracker = tracker or FaceTracker()
    tracker.reset()
    points, found, size = [], [], (0, 0)
    for i, frame in enumerate(frames):
        size = (frame.shape[1], frame.shape[0])
        got = tracker(frame)
        found.append(got.points is not None)
        points.append(got.points if got.points is not None else np.full((N_LANDMARKS, 3), np.nan))
        if progress is not None and i % 10 == 0:
            progress(min(0.99, (i + 1) / total) if total else 0.5, f"tracked {i + 1}{f'/{total}' if total else ''} frames")
    if not points:
        raise VideoError("the video has no frames")
    return np.stack(points), np.array(found), size


def load_video_clip(path, fit: FitConfig | None = None, max_frames: int = MAX_FRAMES, name: str | None = None,
                    progress: Progress | None = None, threads: int = 1) -> VideoClip:
    """A face video (or a folder of images) -> VideoClip at the video's own frame rate.

    Frames without a face are bridged by interpolating the landmarks of their neighbours and reported in the
    clip's warnings with their numbers; a video with no face at all is a ClipError."""
    path = Path(path)
    what = path.name
    fit = fit or FitConfig()
    timings = {}
    t0 = time.perf_counter()
    try:
        from nfs.video.reader import video_info
        _, total, _ = video_info(path)
        frames, fps, warnings = read_frames(path, max_frames)
        points, found, size = track_frames(frames, FaceTracker(threads), progress, total)
    except VideoError as e:
        raise ClipError(str(e) if str(e).startswith(what) else f"{what}: {e}") from None
    timings["track"] = time.perf_counter() - t0
    if not found.any():
        raise ClipError(f"{what}: no face found in any of its {len(found)} frames (a face should fill a good part "
                        "of the frame, facing the camera)")
    missing = np.nonzero(~found)[0].tolist()
    if missing:
        warnings.append(f"no face in {len(missing)} of {len(found)} frames ({describe_frames(missing)}); "
                        "bridged from the neighbouring frames")
    points = bridge_missing(points, found)
    t1 = time.perf_counter()
    try:
        result = fit_landmarks(points, found, fit, fps)
    except ValueError as e:
        raise ClipError(f"{what}: {e}") from None
    timings["fit"] = time.perf_counter() - t1
    if progress is not None:
        progress(1.0, f"fitted {len(found)} frames")
    return VideoClip(name=name or path.stem, fps=fps, codes=result.weights, warnings=warnings, landmarks=points,
                     found=found, frame_size=size, fit=result, source_path=str(path), timings=timings)
