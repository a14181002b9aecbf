"""New discretizations of a template surface (decimation, re-tessellation, crops) as barycentric embeddings,
so the exact ground truth of any deformation of the template is known at every new vertex."""
from __future__ import annotations

import fast_simplification
import numpy as np

from nfs.geometry.surface import SurfaceEmbedding, embed_mesh


def decimate(vertices: np.ndarray, faces: np.ndarray, target_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to about target_count vertices. Returns (V', 3) float64, (F', 3) int64."""
    reduction = float(np.clip(1.0 - target_count / len(vertices), 0.0, 0.99))
    v, f = fast_simplification.simplify(np.asarray(vertices, np.float32), np.asarray(faces, np.int32),
                                        target_reduction=reduction)
    used = np.unique(f)
    remap = -np.ones(len(v), np.int64)
    remap[used] = np.arange(len(used))
    return np.asarray(v, np.float64)[used], remap[f].astype(np.int64)


def subdivide_midpoint(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One round of 1-to-4 midpoint subdivision (positions stay on the flat triangles)."""
    f = np.asarray(faces, np.int64)
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    uniq, inv = np.unique(e, axis=0, return_inverse=True)
    mids = 0.5 * (vertices[uniq[:, 0]] + vertices[uniq[:, 1]])
    m = inv.reshape(3, -1).T + len(vertices)  # (F, 3): midpoints of edges 01, 12, 20
    a, b, c = f[:, 0], f[:, 1], f[:, 2]
    m01, m12, m20 = m[:, 0], m[:, 1], m[:, 2]
    new_f = np.concatenate([np.stack([a, m01, m20], 1), np.stack([m01, b, m12], 1),
                            np.stack([m20, m12, c], 1), np.stack([m01, m12, m20], 1)])
    return np.concatenate([vertices, mids]), new_f


def jitter_on_surface(vertices: np.ndarray, faces: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Move vertices randomly by up to `amount` x their mean edge length (projection back to the surface follows)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    mean_edge = np.linalg.norm(vertices[e[:, 0]] - vertices[e[:, 1]], axis=1).mean()
    return vertices + rng.uniform(-1, 1, vertices.shape) * amount * mean_edge


def random_discretization(template_vertices: np.ndarray, template_faces: np.ndarray, target_count: int,
                          rng: np.random.Generator, jitter: float = 0.2, subdivide: bool = False) -> SurfaceEmbedding:
    """A decimated (optionally jittered / subdivided) re-tessellation of the template as an embedding."""
    v, f = decimate(template_vertices, template_faces, target_count)
    if jitter > 0:
        v = jitter_on_surface(v, f, jitter, rng)
    if subdivide:
        v, f = subdivide_midpoint(v, f)
    return embed_mesh(v, f, template_vertices, template_faces)


def identity_embedding(n_vertices: int, faces: np.ndarray, template_faces: np.ndarray) -> SurfaceEmbedding:
    """The template's own (prefix) vertices as an embedding: vertex i sits at a corner of a triangle using it."""
    tf = np.asarray(template_faces, np.int64)
    owner = np.full(n_vertices, -1, np.int64)
    corner = np.zeros(n_vertices, np.int64)
    for c in range(3):
        sel = tf[:, c] < n_vertices
        owner[tf[sel, c]] = np.nonzero(sel)[0]
        corner[tf[sel, c]] = c
    bary = np.zeros((n_vertices, 3), np.float32)
    bary[np.arange(n_vertices), corner] = 1.0
    return SurfaceEmbedding(np.asarray(faces, np.int64), owner, bary, tf, int(tf.max()) + 1)
