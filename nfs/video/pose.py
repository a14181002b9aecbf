"""A video's head motion applied to the retargeted frames (optional: `retarget(..., head_pose=True)`)."""
from __future__ import annotations

import numpy as np

from nfs.video.correspondence import load_correspondence


def pose_pivot() -> np.ndarray:
    """(3,) ICT cm: the point the head pose turns about (the centre of the landmarks' ICT points)."""
    return load_correspondence().points.mean(0)


def apply_head_pose(frames: np.ndarray, alignment, rotations: np.ndarray, translations: np.ndarray,
                    chunk: int = 64) -> None:
    """Turn and move every frame (T, V, 3) (user frame and units, e.g. a memory-mapped array) in place by the head
    pose: rotations (T, 3, 3) about `pose_pivot` and translations (T, 3) cm, both in the ICT frame; `alignment` maps
    the user's frame to ICT's."""
    c = pose_pivot()
    for s in range(0, len(frames), chunk):
        v = alignment.apply(np.asarray(frames[s:s + chunk]))            # (t, V, 3) ICT cm
        r, t = rotations[s:s + chunk], translations[s:s + chunk]
        moved = (v - c) @ r.transpose(0, 2, 1) + c + t[:, None]
        frames[s:s + chunk] = alignment.inverse(moved).astype(frames.dtype)
