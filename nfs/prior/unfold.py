"""Unfolding a frame: the least change to a few free vertices that leaves no constrained triangle turned over.

The fold guards' fills replace a fold's displacement by a smooth one; where that cannot mend it (a pinned lid rim
pulling its band across, two features' fills meeting) or where no fill runs, the frame is projected instead: the
free vertices move as little as they can (their displacement and its differences along the mesh's edges kept as
near the frame's as possible) while every constrained triangle keeps a share of its rest area facing its rest
normal. Solved by a quadratic penalty on the triangles' signed areas, raised until none is turned (Gauss-Newton
steps with a backtracking line search).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from nfs.geometry.triangle_math import cross_rows, dot_rows, triangle_normals, unit_normals

UNFOLD_MARGIN = 0.02          # a constrained triangle keeps this share of its rest area facing its rest normal
UNFOLD_ANCHOR = 0.01          # weight of each free vertex's own displacement against its edges' differences
UNFOLD_STIFFNESS = (1e2, 1e4, 1e6)   # penalty weights tried in turn, until no constrained triangle is turned
UNFOLD_ITERATIONS = 30        # Gauss-Newton steps per penalty weight
UNFOLD_STEP_CM = 1e-4         # ... until a step moves no vertex farther than this (a micrometre)


def signed_areas(points: np.ndarray, faces: np.ndarray, rest_unit: np.ndarray) -> np.ndarray:
    """(F,) twice each triangle's area along its unit rest normal rest_unit (F, 3) on points (V, 3): negative where
    it is turned over."""
    return (triangle_normals(points, faces) * rest_unit).sum(1)


def unfold(rest: np.ndarray, moved: np.ndarray, faces: np.ndarray, free: np.ndarray,
           constrained: np.ndarray, near: np.ndarray | None = None) -> int:
    """Move the free vertices (n,) of positions moved (V, 3) float64 (in place) as little as keeps each of the
    constrained triangles (m,) (indices into faces (F, 3)) facing its normal on rest (V, 3) with at least
    UNFOLD_MARGIN of its rest area. Only triangles with a free corner can change; near: the indices of those
    triangles when at hand (else found by a pass over faces). Returns how many constrained triangles are still
    turned over (0 unless vertices that are not free hold one so)."""
    free = np.unique(np.asarray(free, np.int64))
    constrained = np.asarray(constrained, np.int64)
    if not len(free) or not len(constrained):
        return 0
    is_free = np.zeros(len(moved), bool)
    is_free[free] = True
    tris = faces[constrained]
    reach = is_free[tris].any(1)
    out_of_reach = tris[~reach]           # constrained triangles no free vertex can change
    tris = tris[reach]
    # the mesh's edges with a free end: their differences are kept near the frame's
    around = faces[is_free[faces].any(1)] if near is None else faces[near]
    e = np.concatenate([around[:, [0, 1]], around[:, [1, 2]], around[:, [2, 0]]])
    e = np.unique(np.sort(e[is_free[e].any(1)], axis=1), axis=0)
    used = np.unique(np.concatenate([free, e.ravel(), tris.ravel()]))   # everything below is local to these
    local = np.full(len(moved), -1, np.int64)
    local[used] = np.arange(len(used))
    tris, e, at = local[tris], local[e], local[free]
    unit, area2 = unit_normals(rest[used], tris)
    floor = UNFOLD_MARGIN * area2
    target = moved[used].astype(np.float64)
    work = target.copy()                  # the vertices not free stay at the frame's positions
    n = len(at)
    # the fit, quadratic in the free vertices' change d (n, 3): UNFOLD_ANCHOR |d|^2 + the edges' differences^2
    # (an edge to a vertex not free has that vertex's change 0)
    slot = np.full(len(used), -1, np.int64)
    slot[at] = np.arange(n)
    i, j = slot[e[:, 0]], slot[e[:, 1]]
    both = (i >= 0) & (j >= 0)
    degree = np.bincount(i[i >= 0], minlength=n) + np.bincount(j[j >= 0], minlength=n)
    quad = (sp.diags(UNFOLD_ANCHOR + degree.astype(np.float64))
            - sp.csr_matrix((np.ones(both.sum()), (i[both], j[both])), shape=(n, n))
            - sp.csr_matrix((np.ones(both.sum()), (j[both], i[both])), shape=(n, n))).tocsr()
    corner = [tris[:, c] for c in range(3)]
    u = np.ascontiguousarray(unit.T)                   # (3, m)
    # each triangle corner's three coordinates as unknowns of the solve (-1: a corner that is not free)
    unknown = np.where(slot[tris][:, :, None] >= 0, 3 * slot[tris][:, :, None] + np.arange(3), -1)   # (m, 3, 3)
    hessian_fit = 2.0 * sp.kron(quad, sp.eye(3), format="csr")

    def edges(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pt = p.T
        p0 = pt[:, corner[0]]
        return pt[:, corner[1]] - p0, pt[:, corner[2]] - p0

    def facing(p: np.ndarray) -> np.ndarray:
        return dot_rows(cross_rows(*edges(p)), u)

    def state(d: np.ndarray, stiffness: float):
        """The energy at the change d (n, 3), and what its gradient and Gauss-Newton Hessian need."""
        qd = quad @ d
        work[at] = target[at] + d
        a, b = edges(work)
        short = floor - dot_rows(cross_rows(a, b), u)
        hit = np.nonzero(short > 0)[0]
        energy = float((d * qd).sum()) + stiffness * float((short[hit] ** 2 / area2[hit]).sum())
        return energy, qd, a, b, short, hit

    def gradient_and_hessian(qd, a, b, short, hit, stiffness: float):
        grad = 2.0 * qd.ravel()
        if not len(hit):
            return grad, hessian_fit
        uh = u[:, hit]
        g1, g2 = cross_rows(b[:, hit], uh), cross_rows(uh, a[:, hit])       # d signed area / d corners 1, 2
        g = np.stack([-(g1 + g2).T, g1.T, g2.T], 1).reshape(len(hit), 9)    # (k, 9)
        idx = unknown[hit].reshape(len(hit), 9)
        scale = -2.0 * stiffness * short[hit] / area2[hit]
        keep = idx >= 0
        grad += np.bincount(idx[keep], (g * scale[:, None])[keep], minlength=3 * n)
        weight = 2.0 * stiffness / area2[hit]
        pair = keep[:, :, None] & keep[:, None, :]
        outer = (g[:, :, None] * g[:, None, :]) * weight[:, None, None]
        rows = np.broadcast_to(idx[:, :, None], pair.shape)[pair]
        cols = np.broadcast_to(idx[:, None, :], pair.shape)[pair]
        return grad, hessian_fit + sp.csr_matrix((outer[pair], (rows, cols)), shape=(3 * n, 3 * n))

    d = np.zeros((n, 3))
    for stiffness in UNFOLD_STIFFNESS:
        current = state(d, stiffness)
        for _ in range(UNFOLD_ITERATIONS):
            grad, hessian = gradient_and_hessian(*current[1:], stiffness)
            step = -spla.spsolve(hessian.tocsc(), grad).reshape(n, 3)
            t = 1.0
            while t > 1e-4:
                trial = state(d + t * step, stiffness)
                if trial[0] <= current[0]:
                    break
                t *= 0.5
            else:
                break
            d, done = d + t * step, current[0] - trial[0] <= 1e-8 * max(current[0], 1e-30)
            current = trial
            if done or np.abs(t * step).max() < UNFOLD_STEP_CM:
                break
        work[at] = target[at] + d
        if (facing(work) > 0).all():
            break
    moved[free] = work[at]
    stuck = int((signed_areas(moved, out_of_reach, unit_normals(rest, out_of_reach)[0]) <= 0).sum())
    return int((facing(work) <= 0).sum()) + stuck
