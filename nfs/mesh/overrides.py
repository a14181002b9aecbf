"""Manual alignment overrides: compose an `Alignment` from the automatic one and the user's choices
(which axis of the mesh is up, whether it faces the other way, a scale factor)."""
from __future__ import annotations

import numpy as np

from nfs.mesh.align import Alignment, alignment_confidence, fit_residual_cm

UP_AXES = ("auto", "+Y", "-Y", "+Z", "-Z", "+X", "-X")


def _axis(name: str) -> np.ndarray:
    v = np.zeros(3)
    v["XYZ".index(name[1])] = 1.0 if name[0] == "+" else -1.0
    return v


def compose_alignment(auto: Alignment, skin_points: np.ndarray, skin_faces: np.ndarray, up: str = "auto",
                      flip: bool = False, scale_factor: float = 1.0) -> Alignment | None:
    """The automatic alignment with the user's overrides, or None when nothing is overridden.

    up: the mesh's own up axis ("+Z" for a Z-up file) or "auto" to keep the automatic rotation; the facing
    direction is the automatic one made perpendicular to the chosen up. flip turns the mesh 180 degrees
    about the up axis. scale_factor multiplies the automatic scale. The skin's centroid stays where the
    automatic alignment put it; residual and confidence are measured again (`fit_residual_cm`, the face coverage
    taken as sufficient). skin_points (S, 3), skin_faces (Fs, 3): the target's skin in the user's frame."""
    if up not in UP_AXES:
        raise ValueError(f"up axis must be one of {', '.join(UP_AXES)}, got {up!r}")
    scale_factor = float(scale_factor)
    if not np.isfinite(scale_factor) or not 0.01 <= scale_factor <= 100.0:
        raise ValueError(f"scale factor must be between 0.01 and 100, got {scale_factor}")
    if up == "auto" and not flip and scale_factor == 1.0:
        return None
    rot = np.asarray(auto.rotation, np.float64)
    if up != "auto":
        u = _axis(up)
        f = rot.T @ np.array([0.0, 0.0, 1.0])     # the user direction the automatic fit turned to face +Z
        f -= (f @ u) * u
        if np.linalg.norm(f) < 1e-6:                # automatic facing was along the chosen up: pick any
            f = np.roll(u, 1)
            f -= (f @ u) * u
        f /= np.linalg.norm(f)
        rot = np.stack([np.cross(u, f), u, f])      # rows: user X', up, facing -> ICT X, Y, Z
    if flip:
        rot = np.diag([-1.0, 1.0, -1.0]) @ rot
    pts = np.asarray(skin_points, np.float64)
    centroid = pts.mean(0)
    scale = auto.scale * scale_factor
    translation = auto.apply(centroid) - scale * rot @ centroid
    out = Alignment(scale=float(scale), rotation=rot, translation=translation, residual_cm=0.0, confidence=0.0,
                    is_partial=auto.is_partial, candidates_tried=0)
    out.residual_cm = fit_residual_cm(pts, skin_faces, out)
    out.confidence = alignment_confidence(out.residual_cm)
    return out
