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


def fit_ict_weights(displacements: np.ndarray, basis: np.ndarray, iterations: int = 300,
                    ridge: float = 1e-4) -> np.ndarray:
    """Bounded least-squares FACS weights w in [0, 1]^53 with displacements[t] ~ sum_k w[t, k] basis[k].

    displacements (T, V, 3), basis (53, V, 3) (e.g. `template_expression_basis` of the source neutral), both cm.
    Solved for all frames at once by accelerated projected gradient on the 53x53 normal equations.
    """
    b = basis.reshape(len(basis), -1).astype(np.float64)          # (53, 3V)
    d = displacements.reshape(len(displacements), -1).astype(np.float64)  # (T, 3V)
    gram = b @ b.T
    gram += ridge * np.trace(gram) / len(gram) * np.eye(len(gram))
    rhs = d @ b.T                                                  # (T, 53)
    step = 1.0 / np.linalg.eigvalsh(gram)[-1]
    w = np.clip(rhs @ np.linalg.pinv(gram), 0.0, 1.0)
    y, t = w.copy(), 1.0
    for _ in range(iterations):
        w_next = np.clip(y - step * (y @ gram - rhs), 0.0, 1.0)
        t_next = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        y = w_next + (t - 1) / t_next * (w_next - w)
        w, t = w_next, t_next
    return w.astype(np.float32)
