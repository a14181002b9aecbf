"""Live puppeteering from a camera: each frame is read by the Face Landmarker, calibrated to the person, evaluated
on the target's baked linear rig (and on the ICT face), turned with the person's head, and handed to a drawing
callback at once. Recording keeps the frames' readings; on stop the take becomes a `VideoClip` at its measured frame
rate, ready for the sliders and exports. The app's Video tab streams the browser's webcam into it and draws in its
viewer; bench/bench_live.py times it.

Timestamps through the chain: the frame's capture (the caller's, or its arrival), after reading, after the rig,
after the drawing callback; `stats()` gives frames/s and the latencies.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

MAX_TAKE_FRAMES = 30 * 60 * 5    # a recorded take keeps at most 5 minutes at 30 frames/s


@dataclass
class LiveStats:
    frames: int = 0
    fps: float = 0.0                   # frames drawn per second over the last STATS_WINDOW frames
    latency_ms: float = 0.0            # capture (or arrival) -> viewer updated, mean over the window
    read_ms: float = 0.0               # Face Landmarker, mean over the window
    rig_ms: float = 0.0                # calibration + rig + head pose
    draw_ms: float = 0.0               # viewer update
    no_face: int = 0
    jaw_open: float = 0.0              # the latest frame's jawOpen weight
    blinks: tuple = (0.0, 0.0)         # the latest eyeBlink_L, eyeBlink_R
    head_yaw_pitch: tuple = (0.0, 0.0) # degrees, from the neutral
    target_moved_mm: float = 0.0       # the farthest target vertex from its rest (no head pose), mm at ICT size
    take_frames: int = 0
    recording: bool = False


@dataclass
class LiveChain:
    """Frames -> Face Landmarker -> calibrated ICT weights -> rig -> viewer (see the module docstring)."""

    threads: int = 2
    window: int = 60
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        from nfs.video import Calibration
        from nfs.video.landmarks import FaceTracker
        from nfs.video.pose import pose_pivot
        pose_pivot()                                      # computed once, before the first frame
        self.tracker = FaceTracker(self.threads)
        self.calibration = Calibration()
        self.neutral_scores: np.ndarray | None = None
        self.neutral_matrix: np.ndarray | None = None
        self.weights = np.zeros(53, np.float32)
        self.rotation = np.eye(3)
        self.translation = np.zeros(3)
        self.target_vertices: np.ndarray | None = None     # (V, 3) ICT cm, the latest frame
        self.source_vertices: np.ndarray | None = None
        self._times = deque(maxlen=self.window)             # (capture, read, rig, drawn) per frame
        self.recording = False
        self.take: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []
        self.frame_size = (0, 0)
        self.no_face = 0
        self.frames = 0
        self._rig = None
        self.target_motion = 0.0                            # cm: the farthest target vertex from its rest, no pose
        from nfs.ict import load_ict
        ict = load_ict()
        n = ict.skin_count
        self._ict_neutral = np.asarray(ict.neutral[:n], np.float32)
        self._ict_deltas = np.ascontiguousarray(ict.expression_deltas[:, :n].reshape(53, -1), np.float32)

    # ------------------------------------------------------------------------------------------ set-up
    def set_target(self, neutral: np.ndarray | None, deltas: np.ndarray | None, alignment) -> None:
        """The target's baked rig (user units: neutral (V, 3), deltas (53, V, 3)) and its alignment to ICT."""
        with self._lock:
            self._rig = None if neutral is None else (np.asarray(neutral, np.float32),
                                                      np.asarray(deltas, np.float32).reshape(len(deltas), -1),
                                                      alignment)

    def reset_neutral(self) -> None:
        """The next frame with a face becomes the neutral (its scores taken off, its head pose the rest pose)."""
        with self._lock:
            self.neutral_scores = None
            self.neutral_matrix = None

    # ------------------------------------------------------------------------------------------ the chain
    def process(self, frame: np.ndarray, captured: float | None = None, draw=None) -> bool:
        """One (H, W, 3) uint8 frame; `captured` its capture time (perf_counter; default now); `draw()` updates the
        viewer. Returns whether a face was read."""
        from nfs.arkit import arkit_to_ict_matrix
        from nfs.video.calibrate import calibrate_scores
        from nfs.video.pose import pose_pivot, rotation_part

        t0 = time.perf_counter() if captured is None else captured
        got = self.tracker(frame)
        t1 = time.perf_counter()
        with self._lock:
            self.frames += 1
            self.frame_size = (frame.shape[1], frame.shape[0])
            if got.points is None:
                self.no_face += 1
                return False
            if self.neutral_scores is None:
                self.neutral_scores, self.neutral_matrix = got.blendshapes.copy(), got.matrix.copy()
            scores = calibrate_scores(got.blendshapes[None], self.neutral_scores, self.calibration)[0]
            self.weights = np.clip(scores @ arkit_to_ict_matrix(), 0.0, 1.0).astype(np.float32)
            rot, _ = rotation_part(np.stack([got.matrix, self.neutral_matrix]))
            self.rotation = rot[0] @ rot[1].T
            self.translation = got.matrix[:3, 3] - self.neutral_matrix[:3, 3]
            if self.recording and len(self.take) < MAX_TAKE_FRAMES:
                self.take.append((t0, got.blendshapes.copy(), got.matrix.copy(), got.points.copy()))
            pivot = pose_pivot()
            src = self._ict_neutral + (self.weights @ self._ict_deltas).reshape(self._ict_neutral.shape)
            self.source_vertices = (src.astype(np.float64) - pivot) @ self.rotation.T + pivot
            if self._rig is not None:
                neutral, deltas, align = self._rig
                move = (self.weights @ deltas).reshape(neutral.shape)
                v = align.apply((neutral + move).astype(np.float64))
                self.target_motion = float(np.linalg.norm(move, axis=1).max()) * align.scale   # ICT cm
                self.target_vertices = (v - pivot) @ self.rotation.T + pivot
            t2 = time.perf_counter()
        if draw is not None:
            draw()
        t3 = time.perf_counter()
        with self._lock:
            self._times.append((t0, t1, t2, t3))
        return True

    def stats(self) -> LiveStats:
        with self._lock:
            t = np.array(self._times) if self._times else np.zeros((0, 4))
            from nfs.ict import EXPRESSION_NAMES
            from nfs.video.pose import yaw_pitch_roll
            w = self.weights
            yaw, pitch, _ = yaw_pitch_roll(self.rotation[None])[0]
            out = LiveStats(frames=self.frames, no_face=self.no_face,
                            jaw_open=float(w[EXPRESSION_NAMES.index("jawOpen")]),
                            blinks=(float(w[EXPRESSION_NAMES.index("eyeBlink_L")]),
                                    float(w[EXPRESSION_NAMES.index("eyeBlink_R")])),
                            head_yaw_pitch=(float(yaw), float(pitch)), target_moved_mm=10 * self.target_motion,
                            take_frames=len(self.take), recording=self.recording)
        if len(t) >= 2:
            out.fps = (len(t) - 1) / max(t[-1, 3] - t[0, 3], 1e-9)
        if len(t):
            out.latency_ms = 1000 * float((t[:, 3] - t[:, 0]).mean())
            out.read_ms = 1000 * float((t[:, 1] - t[:, 0]).mean())
            out.rig_ms = 1000 * float((t[:, 2] - t[:, 1]).mean())
            out.draw_ms = 1000 * float((t[:, 3] - t[:, 2]).mean())
        return out

    # ------------------------------------------------------------------------------------------ recording
    def start_recording(self) -> None:
        with self._lock:
            self.take = []
            self.recording = True

    def stop_recording(self, name: str = "webcam_take"):
        """The recorded take as a VideoClip at its measured frame rate (calibrated like a video file)."""
        from nfs.clips import ClipError, resample_linear
        from nfs.io.livelink import capture_rate
        from nfs.video.source import Tracks, VideoClip, bridge_missing, read_tracks
        with self._lock:
            self.recording = False
            take, size, cal = list(self.take), self.frame_size, self.calibration
        if len(take) < 2:
            raise ClipError("the live take has fewer than 2 frames with a face: record a little longer")
        times = np.array([x[0] for x in take]) - take[0][0]
        fps = capture_rate(times)
        scores = resample_linear(times, np.stack([x[1] for x in take]), fps)
        mats = resample_linear(times, np.stack([x[2] for x in take]).reshape(len(take), 16), fps).reshape(-1, 4, 4)
        points = resample_linear(times, np.stack([x[3] for x in take]).reshape(len(take), -1),
                                 fps).reshape(len(scores), -1, 3)
        n = len(scores)
        tracks = Tracks(points, scores, mats, np.ones(n, bool), np.ones(n, int), size)
        weights, fit, found, notes = read_tracks(tracks, fps, cal, name)
        return VideoClip(name=name, fps=fps, codes=weights, warnings=notes, landmarks=bridge_missing(points, found),
                         found=found, frame_size=size, fit=fit, source_path="")
