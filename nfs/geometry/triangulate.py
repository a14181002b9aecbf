"""Polygons to triangles."""
from __future__ import annotations

import numpy as np


def fan_triangulate(counts: np.ndarray, flat_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polygons given as sizes (P,) and concatenated corner indices -> (F, 3) int64 triangles and (F,) int64
    index of the polygon each came from, in polygon order; polygon p gives corners (0, k + 1, k + 2) for
    k = 0 .. counts[p] - 3. Polygons with fewer than 3 corners give nothing."""
    counts = np.asarray(counts, np.int64)
    flat_indices = np.asarray(flat_indices, np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    n_tris = np.maximum(counts - 2, 0)
    polygon = np.repeat(np.arange(len(counts)), n_tris)
    k = np.arange(len(polygon)) - np.repeat(np.cumsum(n_tris) - n_tris, n_tris)
    first = starts[polygon]
    tris = np.stack([flat_indices[first], flat_indices[first + k + 1], flat_indices[first + k + 2]], axis=1)
    return tris.reshape(-1, 3), polygon
