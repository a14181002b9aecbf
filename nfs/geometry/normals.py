"""Vertex normals of triangle meshes."""
from __future__ import annotations

import numpy as np

ISOLATED_NORMAL = np.array([0.0, 0.0, 1.0])  # the normal of a vertex no face uses (a unit vector, like every other)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) float64 unit area-weighted vertex normals of vertices (V, 3) and triangles (F, 3); vertices no face
    uses (or whose faces cancel out) get `ISOLATED_NORMAL` (+Z)."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    corners = f.ravel()
    n = np.stack([np.bincount(corners, weights=np.repeat(face_n[:, k], 3), minlength=len(v)) for k in range(3)],
                 axis=1)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(norm > 1e-20, n / np.maximum(norm, 1e-20), ISOLATED_NORMAL)
