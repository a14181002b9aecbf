"""Where MediaPipe's 468 face mesh landmarks sit on the ICT skin: a stored correspondence, built once (used for
the head pose's pivot, `nfs.video.pose.pose_pivot`).

Built by `build_correspondence` (run by tools/make_landmark_correspondence.py, stored in
nfs/resources/mediapipe_ict.npz): the ICT face (a few identities, neutral, with the skin tone of
`nfs.video.synthetic`) is rendered by the project's rasterizer at several head turns, the landmark model is run on
each render, and every landmark's pixel is cast back onto the surface the rasterizer drew there. The camera is the
renderer's fixed orthographic view box, so a pixel names an exact ICT surface point: no alignment is estimated.
Each landmark's hits are averaged over the views that see its surface head-on (normal within 50 degrees of the
camera) on the ICT mean face, then snapped to the skin (closest point). Eyeball hits at the lid margin snap to the
lid.

Stored per landmark: its skin triangle and barycentric coordinates, the mean face point (cm), and the spread of
the hits (cm: how consistently the detector places it). `stable` lists the landmarks the rigid fit uses: forehead,
nose bridge, inner eye corner and temple landmarks away from the face's outline that no ICT expression moves by
more than 1.6 mm and that the detector places consistently (spread under 4 mm).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from nfs.ict import load_ict

from nfs.resources import LANDMARK_CORRESPONDENCE_PATH as CORRESPONDENCE_PATH
STABLE_MAX_MOTION_CM = 0.16
STABLE_MAX_SPREAD_CM = 0.4

# MediaPipe face mesh landmark indices (the model's fixed topology). "Right" is the subject's right (image left).
FOREHEAD = (151, 9, 8, 108, 337, 109, 338, 67, 297)
NOSE_BRIDGE = (168, 6, 197, 195, 5, 133, 362, 243, 463)     # with the inner eye corners beside it
TEMPLES = (71, 301, 68, 298)
# not the face's outline (10, 21, 54, 103, 162, 127, ... 251, 284, 332, 389, 356): the model places silhouette
# landmarks by its shape prior and moves them with expressions (a blink lifts that side's outline)
STABLE_CANDIDATES = FOREHEAD + NOSE_BRIDGE + TEMPLES
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
             149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
EYE_UPPER_R = (161, 160, 159, 158, 157)
EYE_LOWER_R = (163, 144, 145, 153, 154)
EYE_CORNERS_R = (33, 133)
EYE_UPPER_L = (388, 387, 386, 385, 384)
EYE_LOWER_L = (390, 373, 374, 380, 381)
EYE_CORNERS_L = (263, 362)
LIP_UPPER_INNER = (80, 81, 82, 13, 312, 311, 310)
LIP_LOWER_INNER = (88, 178, 87, 14, 317, 402, 318)
LIP_CORNERS_INNER = (78, 308)
LIP_CORNERS_OUTER = (61, 291)
CHIN = (152, 175, 199, 200, 377, 148)
BROW_R = (70, 63, 105, 66, 107, 46, 53, 52, 65, 55)
BROW_L = (300, 293, 334, 296, 336, 276, 283, 282, 295, 285)


@dataclass(frozen=True, eq=False)
class LandmarkCorrespondence:
    """468 landmarks on the ICT skin."""

    triangles: np.ndarray   # (468, 3) ICT skin vertex indices
    bary: np.ndarray        # (468, 3) barycentric coordinates
    points: np.ndarray      # (468, 3) cm, on the ICT mean neutral
    spread_cm: np.ndarray   # (468,) RMS scatter of the hits over the views and identities
    stable: np.ndarray      # (S,) landmark indices for the rigid fit

    def basis(self) -> np.ndarray:
        """(53, 468, 3) ICT expression deltas (cm) at the landmarks."""
        return _basis(self)


@functools.lru_cache(maxsize=1)
def _basis(corr: LandmarkCorrespondence) -> np.ndarray:
    deltas = load_ict().expression_deltas
    return np.einsum("kvjc,vj->kvc", deltas[:, corr.triangles], corr.bary).astype(np.float32)


@functools.lru_cache(maxsize=1)
def load_correspondence(path=CORRESPONDENCE_PATH) -> LandmarkCorrespondence:
    """The stored correspondence (see the module docstring; rebuild with tools/make_landmark_correspondence.py)."""
    with np.load(path, allow_pickle=False) as d:
        return LandmarkCorrespondence(d["triangles"].astype(np.int64), d["bary"].astype(np.float64),
                                      d["points"].astype(np.float64), d["spread_cm"].astype(np.float64),
                                      d["stable"].astype(np.int64))


def _hits(weights_identity: np.ndarray | None, yaw: float, pitch: float, size: int, tracker):
    """One render: (468,) skin-or-eyeball triangle, (468, 3) bary, (468,) cos(view angle) of each landmark's hit."""
    from nfs.geometry.normals import vertex_normals
    from nfs.render import VIEW_CENTER, rasterize, to_pixels
    from nfs.video.synthetic import face_scene, render_face, yaw_pitch_roll_matrix

    rot = yaw_pitch_roll_matrix(yaw, pitch)
    img = render_face(None, weights_identity, size=size, rotation=rot)
    tracker.reset()
    found = tracker(img)
    if found.points is None:
        return None
    found = tracker(img)                     # second pass from the landmarks' own region, as in tracking
    found.points = found.points[:468]        # the face mesh, without the irises
    ict = load_ict()
    _, faces, _, n_model = face_scene()
    faces = faces[(faces < n_model).all(1)]
    v = (ict.vertices(weights_identity, None, n_model).astype(np.float64) - VIEW_CENTER) @ rot.T + VIEW_CENTER
    px, py, depth = to_pixels(v, size)
    face_id, bary = rasterize(px, py, depth, faces, size, size)
    normals = vertex_normals(v, faces)
    j = np.clip(found.points[:, 0].astype(int), 0, size - 1)
    i = np.clip(found.points[:, 1].astype(int), 0, size - 1)
    tri, b = face_id[i, j], bary[i, j].astype(np.float64)
    n = np.einsum("vj,vjc->vc", b, normals[faces[np.maximum(tri, 0)]])
    facing = n[:, 2] / np.maximum(np.linalg.norm(n, axis=1), 1e-12)
    facing[tri < 0] = -1.0
    return faces[np.maximum(tri, 0)], b, facing


def build_correspondence(n_identities: int = 3, yaws=(-30, -15, 0, 15, 30), pitches=(-10, 0, 10), size: int = 480,
                         min_facing: float = np.cos(np.deg2rad(50)), log=print) -> dict:
    """Arrays of the stored correspondence (see the module docstring). Deterministic."""
    from nfs.geometry.surface import closest_points_on_mesh
    from nfs.video.landmarks import N_MESH as N_LANDMARKS, FaceTracker

    ict = load_ict()
    tracker = FaceTracker()
    mean = ict.vertices(None, None, len(ict.neutral)).astype(np.float64)
    identities = [None] + list(ict.sample_identities(n_identities - 1, seed=7, sigma=0.7))
    sums, sq, counts = np.zeros((N_LANDMARKS, 3)), np.zeros(N_LANDMARKS), np.zeros(N_LANDMARKS)
    samples = []
    for k, identity in enumerate(identities):
        for yaw in yaws:
            for pitch in pitches:
                got = _hits(identity, yaw, pitch, size, tracker)
                if got is None:
                    log(f"identity {k} yaw {yaw} pitch {pitch}: no face")
                    continue
                tri, b, facing = got
                p = np.einsum("vj,vjc->vc", b, mean[tri])       # the hit carried to the mean face
                ok = facing >= min_facing
                samples.append((p, ok))
                sums[ok] += p[ok]
                counts[ok] += 1
    if (counts == 0).any():
        # landmarks no view sees head-on (the far jaw line): use every view that hit the head at all
        for p, _ in samples:
            miss = counts == 0
            sums[miss] += p[miss]
        counts[counts == 0] = len(samples)
    centre = sums / counts[:, None]
    for p, ok in samples:
        sq[ok] += ((p[ok] - centre[ok]) ** 2).sum(1)
    spread = np.sqrt(sq / np.maximum(counts, 1))
    skin_v, skin_f = ict.skin_mesh()
    pts, tri, bary, _ = closest_points_on_mesh(centre, skin_v, skin_f)
    triangles = skin_f[tri]
    deltas = ict.expression_deltas[:, :ict.skin_count]
    motion = np.linalg.norm(np.einsum("kvjc,vj->kvc", deltas[:, triangles], bary), axis=-1).max(0)
    cand = np.array(STABLE_CANDIDATES)
    stable = cand[(motion[cand] <= STABLE_MAX_MOTION_CM) & (spread[cand] <= STABLE_MAX_SPREAD_CM)]
    log(f"{len(samples)} views; spread median {np.median(spread):.3f} cm, max {spread.max():.3f} cm; "
        f"{len(stable)} stable landmarks")
    return {"triangles": triangles.astype(np.int32), "bary": bary.astype(np.float32), "points": pts.astype(np.float32),
            "spread_cm": spread.astype(np.float32), "stable": stable.astype(np.int32),
            "views": np.int32(len(samples))}
