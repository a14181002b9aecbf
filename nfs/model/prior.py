"""Template prior: the ICT expression blendshapes carried to any mesh through closest points on the ICT mean
skin. With `NFSConfig.template_prior`, the decoder predicts a correction on top of this transfer, so training
starts from the nearest-point solution and learns what it misses (shape warps, lips, crops, discretization)."""
from __future__ import annotations

import functools

import numpy as np

from nfs.geometry.surface import closest_points_on_mesh
from nfs.ict import N_EXPRESSION, load_ict


@functools.lru_cache(maxsize=1)
def _template():
    ict = load_ict()
    v, f = ict.skin_mesh()
    return v.astype(np.float64), f, ict.expression_deltas[:, : ict.skin_count]


def template_expression_basis(vertices_ict: np.ndarray) -> np.ndarray:
    """(V, 3) vertices in the ICT frame (cm) -> (53, V, 3) ICT expression deltas at each vertex's closest point
    on the ICT mean skin (barycentric interpolation)."""
    tv, tf, deltas = _template()
    _, tri, bary, _ = closest_points_on_mesh(np.asarray(vertices_ict, np.float64), tv, tf)
    corners = tf[tri]  # (V, 3)
    out = np.einsum("kvjc,vj->kvc", deltas[:, corners], bary.astype(np.float32))
    assert out.shape[0] == N_EXPRESSION
    return out.astype(np.float32)
