"""Error metrics of predicted expression displacements against ground truth (plain numpy).

Displacements and positions are in ICT centimetres; every metric reports millimetres (x10) unless named. The
geometry they measure with (`vertex_normals`, `facing_cos`, rigid fits) is the eval runner's too.
"""
from __future__ import annotations

import numpy as np

from nfs.geometry.fits import rigid_fits
from nfs.geometry.normals import vertex_normals

CM_TO_MM = 10.0
# dlib-68 landmark pairs whose distance is a closure gap: upper/lower eyelid and inner upper/lower lip
EYELID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))
LIP_PAIRS = ((61, 67), (62, 66), (63, 65))


def vertex_errors_mm(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-vertex position error (T, M) in mm of displacements pred, gt (T, V, 3) cm, on mask (V,) vertices."""
    d = pred - gt if mask is None else pred[:, mask] - gt[:, mask]
    return np.linalg.norm(d, axis=-1) * CM_TO_MM


def position_stats(err_mm: np.ndarray) -> dict:
    """mean, RMS and 95th percentile (mm) of per-vertex errors (any shape)."""
    e = np.asarray(err_mm, np.float64).ravel()
    if e.size == 0:
        return {"mean_mm": np.nan, "rms_mm": np.nan, "p95_mm": np.nan}
    return {"mean_mm": float(e.mean()), "rms_mm": float(np.sqrt((e ** 2).mean())),
            "p95_mm": float(np.percentile(e, 95))}


def mean_squared_error_mm2(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """The paper's protocol figure: mean over frames and mask vertices of the squared per-vertex error, mm^2."""
    e = vertex_errors_mm(pred, gt, mask)
    return float((e.astype(np.float64) ** 2).mean()) if e.size else float("nan")


def amplitude_gain(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """Least-squares gain g minimising |g gt - pred| over frames and mask vertices: <pred, gt> / <gt, gt>.
    1 = the right amplitude, < 1 = damped (too small) expressions."""
    p, g = pred[:, mask].astype(np.float64), gt[:, mask].astype(np.float64)
    den = float((g * g).sum())
    return float((p * g).sum() / den) if den > 0 else float("nan")


def normal_angle_deg(pred_pos: np.ndarray, gt_pos: np.ndarray, faces: np.ndarray, mask: np.ndarray,
                     gt_normals: np.ndarray | None = None) -> float:
    """Mean angle (degrees) between predicted and ground-truth vertex normals of deformed meshes (T, V, 3),
    over frames and mask vertices; `gt_normals` (T, V, 3): the truth's, when already computed."""
    n_p = vertex_normals(pred_pos, faces)[:, mask]
    n_g = (vertex_normals(gt_pos, faces) if gt_normals is None else gt_normals)[:, mask]
    cos = np.clip((n_p * n_g).sum(-1), -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean())


def gap_error_mm(pred_pos: np.ndarray, gt_pos: np.ndarray, pairs: np.ndarray) -> float:
    """Closure error: mean over frames and vertex pairs (P, 2) of | |p_a - p_b| - |g_a - g_b| | in mm
    (eyelid or lip opening of the prediction vs the ground truth). NaN without pairs."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        return float("nan")
    gp = np.linalg.norm(pred_pos[:, pairs[:, 0]] - pred_pos[:, pairs[:, 1]], axis=-1)
    gg = np.linalg.norm(gt_pos[:, pairs[:, 0]] - gt_pos[:, pairs[:, 1]], axis=-1)
    return float(np.abs(gp - gg).mean() * CM_TO_MM)


def landmark_pairs(landmarks: np.ndarray, pairs) -> np.ndarray:
    """(P, 2) target vertex pairs for dlib landmark index pairs, skipping missing (-1) or coincident ones."""
    out = [(landmarks[a], landmarks[b]) for a, b in pairs
           if landmarks[a] >= 0 and landmarks[b] >= 0 and landmarks[a] != landmarks[b]]
    return np.array(out, np.int64).reshape(-1, 2)


def jitter_mm(displacement: np.ndarray, segments, mask: np.ndarray) -> float:
    """Temporal jitter: mean norm of the second difference x[t+1] - 2 x[t] + x[t-1] (mm / frame^2) over the
    mask vertices and the interior frames of each (name, start, stop) run of consecutive frames."""
    vals = []
    for _, s, e in segments:
        x = displacement[s:e][:, mask]
        if len(x) >= 3:
            vals.append(np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1).ravel())
    return float(np.concatenate(vals).mean() * CM_TO_MM) if vals else float("nan")


def code_error(recovered: np.ndarray, weights: np.ndarray) -> float:
    """Mean absolute difference of (T, 53) FACS weights."""
    return float(np.abs(np.asarray(recovered) - np.asarray(weights)).mean())


def label_agreement(pred: np.ndarray, gt: np.ndarray) -> float:
    """Percentage of vertices whose predicted region label equals the ground-truth one (gt < 0 ignored)."""
    ok = gt >= 0
    return float(100.0 * (pred[ok] == gt[ok]).mean()) if ok.any() else float("nan")


def rigid_residual_mm(rest: np.ndarray, moved: np.ndarray) -> float:
    """How far (T, N, 3) moved copies of rest points (N, 3) are from a rigid motion of them: mean distance (mm)
    after the best rotation + translation per frame (Kabsch)."""
    rot, shift = rigid_fits(rest, moved)
    fitted = np.einsum("nj,tij->tni", np.asarray(rest, np.float64), rot) + shift[:, None]
    return float(np.linalg.norm(fitted - moved, axis=-1).mean() * CM_TO_MM)


def gap_ratio(pred_pos: np.ndarray, gt_pos: np.ndarray, pairs: np.ndarray) -> float:
    """Mean landmark-pair distance of the prediction over the truth's, in one frame: pred_pos / gt_pos (V, 3),
    pairs (P, 2) vertex indices. 1 = the gap opens (closes) exactly as far as the truth's."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if not len(pairs):
        return float("nan")
    gap = lambda x: np.linalg.norm(x[pairs[:, 0]] - x[pairs[:, 1]], axis=-1).mean()  # noqa: E731
    return float(gap(pred_pos) / max(gap(gt_pos), 1e-9))


TRUTH_FACING_COS = np.cos(np.radians(75.0))   # the truth keeps a triangle facing: within 75 degrees of its rest
TRUTH_COLLAPSED = 0.1   # ... and at least this fraction of its rest area (a collapsed triangle has no direction)


def _normals_and_areas(x: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit triangle normals (..., F, 3) and twice the triangle areas (..., F) of positions x (..., V, 3)."""
    n = np.cross(x[..., faces[:, 1], :] - x[..., faces[:, 0], :], x[..., faces[:, 2], :] - x[..., faces[:, 0], :])
    length = np.linalg.norm(n, axis=-1)
    return n / np.maximum(length, 1e-30)[..., None], length


def facing_cos(rest: np.ndarray, pos: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(T, F) cosine between each triangle's normal in frames pos (T, V, 3) and at rest (V, 3)."""
    return (_normals_and_areas(pos, faces)[0] * _normals_and_areas(rest, faces)[0]).sum(-1)


def truth_facing_cos(rest: np.ndarray, truth_pos: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """`facing_cos` of the truth, with -1 where the truth collapses a triangle (below TRUTH_COLLAPSED of its rest
    area): a triangle squeezed to a line has no direction to keep, so turning it is a tie, not a fold."""
    (n_rest, a_rest), (n_pos, a_pos) = _normals_and_areas(rest, faces), _normals_and_areas(truth_pos, faces)
    collapsed = a_pos < TRUTH_COLLAPSED * np.maximum(a_rest, 1e-30)
    return np.where(collapsed, -1.0, (n_pos * n_rest).sum(-1))


def turned_over(pred_cos: np.ndarray, truth_cos: np.ndarray, truth_facing: float = TRUTH_FACING_COS) -> int:
    """Number of triangles whose normal turns over (points against its rest normal, `facing_cos` < 0) in some
    predicted frame while the truth's same frame keeps it facing (cosine above truth_facing: a triangle the truth
    itself turns edge-on, such as a cap stretched across an opened mouth, or collapses (`truth_facing_cos`), is a
    tie, not a fold; with truth_facing=0 any triangle the truth does not turn over counts). pred_cos / truth_cos
    (T, F)."""
    return int(((pred_cos < 0) & (truth_cos > truth_facing)).any(0).sum())


SAWTOOTH_EXCESS_DEG = 60.0    # an edge folds this much sharper than the truth's: a tooth of a saw
MOUTH_RADIUS_CM = 3.0         # the saw-tooth is looked for within this of the mouth's centre


def interior_edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) indices of the two triangles on each edge shared by exactly two triangles of faces (F, 3)."""
    f = np.asarray(faces, np.int64)
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    owner = np.tile(np.arange(len(f)), 3)
    _, inv, counts = np.unique(e, axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    two = counts[inv] == 2
    order = np.argsort(inv[two], kind="stable")
    return owner[two][order].reshape(-1, 2)


def sawtooth_edges(rest: np.ndarray, pred_pos: np.ndarray, gt_pos: np.ndarray, faces: np.ndarray,
                   centre: np.ndarray, radius_cm: float = MOUTH_RADIUS_CM,
                   excess_deg: float = SAWTOOTH_EXCESS_DEG) -> tuple[int, float]:
    """A saw-tooth at the mouth (strips of triangles alternating between the upper and the lower lip): the
    interior edges within radius_cm of centre (3,) at rest (V, 3) whose two triangles' normals meet at an angle
    more than excess_deg sharper in the prediction pred_pos (V, 3) than in the truth gt_pos (V, 3), one frame.
    Returns (count, share of the region's interior edges in %)."""
    f = np.asarray(faces, np.int64)
    near = (np.linalg.norm(rest[f] - centre, axis=-1) < radius_cm).all(1)
    pairs = interior_edges(f[near])
    if not len(pairs):
        return 0, float("nan")
    f = f[near]

    def angles(x):
        n = _normals_and_areas(x, f)[0]
        return np.degrees(np.arccos(np.clip((n[pairs[:, 0]] * n[pairs[:, 1]]).sum(-1), -1.0, 1.0)))

    teeth = angles(pred_pos) > angles(gt_pos) + excess_deg
    return int(teeth.sum()), float(100.0 * teeth.mean())


def still_error_mm(gt: np.ndarray, mask: np.ndarray) -> float:
    """Mean per-vertex error (mm) of not moving at all (a zero displacement) against the truth (T, V, 3) cm on the
    mask's vertices: what any method has to beat."""
    return float(np.linalg.norm(gt[:, mask], axis=-1).mean() * CM_TO_MM) if mask.any() else float("nan")
