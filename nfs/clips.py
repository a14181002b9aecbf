"""Source expression clips: the `Clip` type, its checks, and the operations on clips (resampling, smoothing, gain).

* ``codes`` clips carry (T, 53) ICT weights in ``nfs.ict.EXPRESSION_NAMES`` order.
* ``meshes`` clips carry (T, V, 3) frames plus faces and a neutral (units as stored in the files:
  ICT fixtures are cm, Multiface is mm); the expression encoder turns them into codes later.

The file formats that give clips live in `nfs.io` (`nfs.io.load_clip` picks one from a name or a file).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from nfs.ict import EXPRESSION_NAMES

DEFAULT_FPS = 30.0
MAX_FRAMES = 10_000
WEIGHT_TOLERANCE = 0.05          # weights beyond [-tol, 1 + tol] are reported when clipped
WEIGHT_CEILING = 1.5             # the largest expression weight after gain or slider edits (weights may exaggerate)


class ClipError(ValueError):
    """A clip source was rejected; the message is one line and names the culprit."""


@dataclass
class Clip:
    """One source animation.

    Exactly one of ``codes`` (T, 53) float32 ICT weights, or ``frames`` (T, V, 3) float32 with
    ``faces`` (F, 3) int64 and ``neutral`` (V, 3) float32. ``fps`` is frames per second;
    ``warnings`` collects non-fatal fixes made while loading (e.g. clipped weights).
    """

    name: str
    fps: float
    codes: np.ndarray | None = None
    frames: np.ndarray | None = None
    faces: np.ndarray | None = None
    neutral: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self):
        if (self.codes is None) == (self.frames is None):
            raise ClipError(f"clip {self.name!r}: give exactly one of codes or frames")
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise ClipError(f"clip {self.name!r}: fps must be positive, got {self.fps}")
        self.fps = float(self.fps)
        if self.codes is not None:
            self.codes = np.asarray(self.codes, np.float32)
            if self.codes.ndim != 2 or self.codes.shape[1] != len(EXPRESSION_NAMES):
                raise ClipError(f"clip {self.name!r}: codes must be (T, 53), got {self.codes.shape}")
        else:
            self.frames = np.asarray(self.frames, np.float32)
            if self.frames.ndim != 3 or self.frames.shape[2] != 3:
                raise ClipError(f"clip {self.name!r}: frames must be (T, V, 3), got {self.frames.shape}")
            if self.faces is None or self.neutral is None:
                raise ClipError(f"clip {self.name!r}: a mesh clip needs faces and neutral")
            self.neutral = np.asarray(self.neutral, np.float32)
            self.faces = np.asarray(self.faces, np.int64)
            if self.neutral.shape != self.frames.shape[1:]:
                raise ClipError(f"clip {self.name!r}: neutral has shape {self.neutral.shape}, "
                                f"frames have {self.frames.shape[1:]}")

    @property
    def kind(self) -> str:
        """"codes" or "meshes"."""
        return "codes" if self.codes is not None else "meshes"

    @property
    def n_frames(self) -> int:
        return len(self.codes if self.codes is not None else self.frames)

    @property
    def duration_s(self) -> float:
        """Playback length in seconds (n_frames / fps)."""
        return self.n_frames / self.fps


# ----------------------------------------------------------------------------------------------
# building checked clips (every loader ends here)


def check_frame_count(n: int, what: str, max_frames: int):
    """Refuse an empty clip or one longer than `max_frames`; `what` names the source in the message."""
    if n == 0:
        raise ClipError(f"{what}: the clip is empty (no frames)")
    if n > max_frames:
        raise ClipError(f"{what}: {n} frames is more than the limit of {max_frames}")


def codes_clip(name: str, codes: np.ndarray, fps: float, max_frames: int, warnings=None) -> Clip:
    """Check (T, 53) weights, clip them to [0, 1] and wrap them in a Clip."""
    codes = np.asarray(codes, np.float64)
    check_frame_count(len(codes), name, max_frames)
    bad = ~np.isfinite(codes)
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise ClipError(f"{name}: non-finite weight {codes[t, j]} at frame {t}, {EXPRESSION_NAMES[j]}")
    warnings = list(warnings or [])
    far = (codes < -WEIGHT_TOLERANCE) | (codes > 1 + WEIGHT_TOLERANCE)
    if far.any():
        cols = sorted({EXPRESSION_NAMES[j] for j in np.nonzero(far.any(0))[0]})
        warnings.append(f"clipped {int(far.sum())} weights far outside [0, 1] (range {codes.min():.3g}.."
                        f"{codes.max():.3g}) in {', '.join(cols)}")
    return Clip(name=name, fps=fps, codes=np.clip(codes, 0.0, 1.0).astype(np.float32), warnings=warnings)


def mesh_clip(name, frames, faces, neutral, fps, warnings=None) -> Clip:
    """Check a stacked (T, V, 3) sequence (counts were checked while reading)."""
    frames = np.asarray(frames, np.float32)
    faces = np.asarray(faces, np.int64)
    neutral = np.asarray(neutral, np.float32)
    n_v = frames.shape[1]
    if neutral.shape != (n_v, 3):
        raise ClipError(f"{name}: the neutral has {len(neutral)} vertices but the frames have {n_v}")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ClipError(f"{name}: faces must be a non-empty (F, 3) array, got {faces.shape}")
    if faces.min() < 0 or faces.max() >= n_v:
        raise ClipError(f"{name}: face indices run outside 0..{n_v - 1}")
    if not np.isfinite(neutral).all():
        raise ClipError(f"{name}: the neutral has non-finite coordinates")
    bad = ~np.isfinite(frames).all(axis=(1, 2))
    if bad.any():
        raise ClipError(f"{name}: frame {int(np.argmax(bad))} has non-finite coordinates")
    return Clip(name=name, fps=fps, frames=frames, faces=faces, neutral=neutral, warnings=list(warnings or []))


# ----------------------------------------------------------------------------------------------
# operations on clips


def resample_linear(times: np.ndarray, values: np.ndarray, fps: float) -> np.ndarray:
    """Resample (N, C) values taken at increasing `times` (s, repeats allowed) onto a uniform grid
    0, 1/fps, ... <= times[-1] by linear interpolation. Returns (T, C)."""
    keep = np.concatenate([[True], np.diff(times) > 0])
    times, values = times[keep], values[keep]
    n = int(np.floor(times[-1] * fps + 1e-6)) + 1
    grid = np.arange(n) / fps
    return np.stack([np.interp(grid, times, values[:, c]) for c in range(values.shape[1])], axis=1)


def resample_rows(values: np.ndarray, src_fps: float, fps: float) -> np.ndarray:
    """Per-frame values (T, ...) at `src_fps` -> (T', ...) at `fps` over the same duration (frames at 0, 1/fps, ...
    up to the last frame's time), by linear interpolation between the neighbouring source frames."""
    values = np.asarray(values)
    n_src = len(values)
    n = int(np.floor((n_src - 1) / src_fps * fps + 1e-6)) + 1
    pos = np.arange(n) / fps * src_fps                      # fractional source frame of each new frame
    lo = np.minimum(np.floor(pos).astype(np.int64), n_src - 1)
    hi = np.minimum(lo + 1, n_src - 1)
    w = (pos - lo).astype(np.float32).reshape((-1,) + (1,) * (values.ndim - 1))
    return (values[lo] * (1 - w) + values[hi] * w).astype(np.float32)


def resample_clip(clip: Clip, fps: float | None, max_frames: int = MAX_FRAMES) -> Clip:
    """The clip at another frame rate (`resample_rows` of its weights or vertex positions); the clip itself when
    `fps` is None or its own rate."""
    if fps is None or abs(float(fps) - clip.fps) < 1e-9:
        return clip
    fps = float(fps)
    if not (np.isfinite(fps) and 1.0 <= fps <= 1000.0):
        raise ClipError(f"fps must be between 1 and 1000, got {fps:g}")
    check_frame_count(int(np.floor((clip.n_frames - 1) / clip.fps * fps + 1e-6)) + 1, f"{clip.name} at {fps:g} fps",
                      max_frames)
    note = f"resampled from {clip.fps:g} to {fps:g} fps"
    if clip.kind == "codes":
        return replace(clip, fps=fps, codes=resample_rows(clip.codes, clip.fps, fps), warnings=clip.warnings + [note])
    return replace(clip, fps=fps, frames=resample_rows(clip.frames, clip.fps, fps), warnings=clip.warnings + [note])


def smooth_codes(codes: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing along time (axis 0) of (T, ...) codes; the ends are padded with their edge
    values, so a clip that ends on a pose stays on it. sigma <= 0 returns a copy."""
    from scipy.ndimage import gaussian_filter1d

    codes = np.asarray(codes, np.float32)
    if sigma_frames <= 0 or len(codes) < 2:
        return codes.copy()
    return gaussian_filter1d(codes, float(sigma_frames), axis=0, mode="nearest").astype(np.float32)


def apply_gain(codes: np.ndarray, gain) -> np.ndarray:
    """Scale (T, 53) weights by a scalar or per-shape (53,) gain, clipped to [0, WEIGHT_CEILING]."""
    codes = np.asarray(codes, np.float32)
    gain = np.asarray(gain, np.float32)
    if gain.ndim not in (0, 1) or (gain.ndim == 1 and gain.shape[0] != codes.shape[-1]):
        raise ValueError(f"gain must be a scalar or ({codes.shape[-1]},), got {gain.shape}")
    if not np.isfinite(gain).all():
        raise ValueError("gain must be finite")
    return np.clip(codes * gain, 0.0, WEIGHT_CEILING).astype(np.float32)
