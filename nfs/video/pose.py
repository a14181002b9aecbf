"""Head pose from the face landmarker's transformation matrices, and its motion applied to the retargeted frames
(optional: `retarget(..., head_pose=True)`).

Each frame's matrix maps MediaPipe's canonical face (cm) into the camera (cm; x right, y up, z toward the viewer, the
same axes as ICT's frontal face). The pose of frame t relative to the neutral frame n is the rotation R_t R_n^T
about the canonical face's origin (the middle of the head) and that origin's motion t_t - t_n. The origin sits at
`pose_pivot` on the ICT head: the canonical face fitted onto the landmarks' ICT points (`nfs.video.correspondence`).
"""
from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=1)
def pose_pivot() -> np.ndarray:
    """(3,) ICT cm: the point the head pose turns about (the canonical face's origin placed on the ICT head)."""
    from nfs.video.correspondence import load_correspondence
    from nfs.video.face_geometry import canonical_face, weighted_similarity

    canonical = canonical_face()[0]
    points = load_correspondence().points
    return weighted_similarity(canonical, points, np.ones(len(points)))[:3, 3]


def rotation_part(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 4, 4) similarity matrices -> (T, 3, 3) rotations and (T,) scales."""
    m = np.asarray(matrices, np.float64)[:, :3, :3]
    scale = np.cbrt(np.linalg.det(m))
    u, _, vt = np.linalg.svd(m / scale[:, None, None])
    return u @ vt, scale


def relative_pose(matrices: np.ndarray, neutral: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3, 3) rotations and (T, 3) translations (cm) of the head relative to frame `neutral`."""
    rot, _ = rotation_part(matrices)
    rel = rot @ rot[neutral].T
    trans = np.asarray(matrices, np.float64)[:, :3, 3] - np.asarray(matrices, np.float64)[neutral, :3, 3]
    return rel, trans


def yaw_pitch_roll(rotations: np.ndarray) -> np.ndarray:
    """(T, 3) degrees: yaw about +Y (the face turning to its left is positive), pitch about +X, roll about +Z, for
    R = Rz(roll) Rx(pitch) Ry(yaw) (`nfs.video.synthetic.yaw_pitch_roll_matrix`)."""
    r = np.asarray(rotations, np.float64)
    yaw = np.arctan2(-r[:, 2, 0], r[:, 2, 2])
    pitch = np.arcsin(np.clip(r[:, 2, 1], -1.0, 1.0))
    roll = np.arctan2(-r[:, 0, 1], r[:, 1, 1])
    return np.degrees(np.stack([yaw, pitch, roll], 1))


def interpolate_matrices(matrices: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T, 4, 4) with invalid frames filled from the nearest valid ones (linear in the entries, re-orthonormalised)."""
    valid = np.asarray(valid, bool)
    if valid.all():
        return matrices
    idx = np.nonzero(valid)[0]
    t = np.arange(len(matrices))
    flat = np.asarray(matrices, np.float64)[idx].reshape(len(idx), 16)
    out = np.stack([np.interp(t, idx, flat[:, c]) for c in range(16)], 1).reshape(-1, 4, 4)
    rot, scale = rotation_part(out)
    out[:, :3, :3] = rot * scale[:, None, None]
    return out


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
