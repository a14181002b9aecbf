"""A decimated stand-in for a dense mesh, and the way back: what is computed per vertex on the proxy (operators,
network features, skinning weights) is carried to every vertex of the dense mesh by barycentric interpolation at
its closest point on the proxy's surface.

DiffusionNet and the encoders are resolution-agnostic by design: a scan of a million vertices and its decimated
copy of a few thousand describe the same surface, and the proxy costs seconds where the dense mesh's spectral
operators cost minutes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nfs.geometry.surface import closest_points_exact

PROXY_VERTICES = 6000       # vertices of the proxy (a few thousand: the network's training meshes have 3k-12k)
PROXY_ABOVE = 12000         # meshes with more vertices than this get a proxy


@dataclass
class SurfaceProxy:
    """A decimated copy (vertices (P, 3), faces (Fp, 3)) and each dense vertex's place on it: the proxy triangle
    `tri` (V,) and barycentric coordinates `bary` (V, 3) of its closest point."""

    vertices: np.ndarray
    faces: np.ndarray
    tri: np.ndarray
    bary: np.ndarray

    @property
    def n_dense(self) -> int:
        return len(self.tri)

    def carry(self, values: np.ndarray) -> np.ndarray:
        """Per-proxy-vertex values (P, C) or (P,) -> per-dense-vertex values (V, C) / (V,), interpolated
        barycentrically (in the values' dtype; float16/bfloat16-free numpy types only)."""
        values = np.asarray(values)
        corners = self.faces[self.tri]                                       # (V, 3)
        bary = self.bary.astype(values.dtype if values.dtype.kind == "f" else np.float64)
        if values.ndim == 1:
            return (values[corners] * bary).sum(1)
        out = values[corners[:, 0]] * bary[:, :1]
        out += values[corners[:, 1]] * bary[:, 1:2]
        out += values[corners[:, 2]] * bary[:, 2:]
        return out


    def dense_nearest(self, dense_vertices: np.ndarray) -> np.ndarray:
        """(P,) the dense vertex nearest to each proxy vertex (to read dense per-vertex values, e.g. deformed
        copies of the dense mesh, on the proxy)."""
        from scipy.spatial import cKDTree

        return cKDTree(np.asarray(dense_vertices, np.float64)).query(self.vertices)[1]


def decimate(vertices: np.ndarray, faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric-error decimation (fast_simplification) to about `n_vertices`; unreferenced vertices dropped.
    Returns vertices (P, 3) float64 and faces (Fp, 3) int64."""
    import fast_simplification

    v = np.asarray(vertices, np.float32)
    f = np.asarray(faces, np.int32)
    reduction = float(np.clip(1.0 - n_vertices / max(len(v), 1), 0.0, 0.999))
    pv, pf = fast_simplification.simplify(v, f, target_reduction=reduction)
    pv, pf = np.asarray(pv, np.float64), np.asarray(pf, np.int64)
    area2 = np.linalg.norm(np.cross(pv[pf[:, 1]] - pv[pf[:, 0]], pv[pf[:, 2]] - pv[pf[:, 0]]), axis=1)
    pf = pf[(area2 > 0) & (pf[:, 0] != pf[:, 1]) & (pf[:, 1] != pf[:, 2]) & (pf[:, 0] != pf[:, 2])]
    used = np.unique(pf)
    remap = np.full(len(pv), -1, np.int64)
    remap[used] = np.arange(len(used))
    return pv[used], remap[pf]


def make_proxy(vertices: np.ndarray, faces: np.ndarray, n_vertices: int | None = None,
               above: int | None = None) -> SurfaceProxy | None:
    """A proxy of about `n_vertices` (default PROXY_VERTICES) for a mesh of more than `above` (default
    PROXY_ABOVE) vertices; None for a smaller mesh: it is its own proxy."""
    n_vertices = PROXY_VERTICES if n_vertices is None else n_vertices
    above = PROXY_ABOVE if above is None else above
    if len(vertices) <= above:
        return None
    pv, pf = decimate(vertices, faces, n_vertices)
    if len(pf) == 0:
        return None
    _, tri, bary, _ = closest_points_exact(vertices, pv, pf)
    bary = np.clip(bary, 0.0, 1.0)
    bary /= np.maximum(bary.sum(1, keepdims=True), 1e-12)
    return SurfaceProxy(pv, pf, tri, bary.astype(np.float32))
