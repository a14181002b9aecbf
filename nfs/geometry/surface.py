"""Points on triangle meshes: random surface samples, principal axes, closest points, and barycentric embeddings
of one mesh's vertices in another's surface."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from nfs.geometry.kdtree import query as kd_query
from nfs.geometry.triangle_math import corner_rows, cross_rows, dot_rows, norm_rows, row_norms, triangle_normals
from nfs.progress import checkpoint


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0,
                   return_faces: bool = False, return_area: bool = False) -> tuple[np.ndarray, ...]:
    """n area-uniform random points on the surface (n, 3) and their unit face normals (n, 3)
    (and, with return_faces, the sampled triangle of each (n,); with return_area, the surface's total area)."""
    normal = triangle_normals(vertices, faces)
    area = row_norms(normal)
    rng = np.random.default_rng(seed)
    face = rng.choice(len(faces), size=n, p=area / area.sum())
    u, v = rng.random((2, n))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    a, b, c = (np.asarray(vertices)[faces[face, k]] for k in range(3))     # only the sampled triangles' corners
    points = a + u[:, None] * (b - a) + v[:, None] * (c - a)
    normals = normal[face] / np.maximum(area[face], 1e-300)[:, None]
    out = (points, normals) + ((face,) if return_faces else ())
    # (half of each cross product's length is exact in binary: the same total as summing the triangles' areas)
    return out + (float((0.5 * area).sum()),) if return_area else out


def principal_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal standard deviations (3,) ascending and axes as columns (3, 3) of a point set (N, 3)."""
    centred = points - points.mean(0)
    variances, axes = np.linalg.eigh(centred.T @ centred / len(points))
    return np.sqrt(np.maximum(variances, 0)), axes


def closest_point_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray):
    """Closest points of p (N, 3) on triangles (a, b, c) (N, 3 each), vectorised (Ericson, RTCD 5.1.5).

    Returns points (N, 3) and barycentric coordinates (N, 3) w.r.t. (a, b, c).
    """
    # coordinates as rows (3, N): the dot products are sums of contiguous rows, the same sums as `(x * y).sum(1)`
    # in the same order (so the same bits), without numpy's slow reduction over an axis of three
    pt, at, bt, ct = (np.ascontiguousarray(np.asarray(x).T) for x in (p, a, b, c))
    ab, ac, ap = bt - at, ct - at, pt - at
    d1, d2 = dot_rows(ab, ap), dot_rows(ac, ap)
    bp = pt - bt
    d3, d4 = dot_rows(ab, bp), dot_rows(ac, bp)
    cp = pt - ct
    d5, d6 = dot_rows(ab, cp), dot_rows(ac, cp)
    del pt, at, bt, ct, ab, ac, ap, bp, cp
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    denom = va + vb + vc
    denom = np.where(np.abs(denom) < 1e-30, 1e-30, denom)
    v = vb / denom
    w = vc / denom
    bary = np.stack([1 - v - w, v, w], 1)
    # edge regions, then vertex regions (a later region wins where two tests pass), written only where they hold
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ab = np.clip(d1 / (d1 - d3), 0, 1)
        t_ac = np.clip(d2 / (d2 - d6), 0, 1)
        t_bc = np.clip((d4 - d3) / ((d4 - d3) + (d5 - d6)), 0, 1)
    for mask, t, (i, j, k) in ((((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)), t_bc, (0, 1, 2)),
                               (((vb <= 0) & (d2 >= 0) & (d6 <= 0)), t_ac, (1, 0, 2)),
                               (((vc <= 0) & (d1 >= 0) & (d3 <= 0)), t_ab, (2, 0, 1))):
        m = np.nonzero(mask)[0]          # on the edge opposite corner i: corners j, k at 1 - t, t
        if len(m):
            tm = t[m]
            bary[m, i], bary[m, j], bary[m, k] = 0.0, 1 - tm, tm
    for mask, corner in ((((d6 >= 0) & (d5 <= d6)), 2), (((d3 >= 0) & (d4 <= d3)), 1), (((d1 <= 0) & (d2 <= 0)), 0)):
        m = np.nonzero(mask)[0]
        if len(m):
            bary[m] = 0.0
            bary[m, corner] = 1.0
    bary = np.nan_to_num(bary, nan=1 / 3)
    points = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
    return points, bary


INCOMPATIBLE_PENALTY = 1e6   # added to the distance of a candidate triangle that faces the wrong way


def vertex_face_table(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """(V, max degree) the faces around each vertex, padded with -1 (in face order)."""
    f = np.asarray(faces, np.int64)
    order = np.argsort(f.ravel(), kind="stable")
    vert_of = f.ravel()[order]
    face_of = order // 3
    counts = np.bincount(vert_of, minlength=n_vertices)
    max_deg = max(int(counts.max()), 1) if len(counts) else 1
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    table = -np.ones((n_vertices, max_deg), np.int64)
    rank = np.arange(len(vert_of)) - starts[vert_of]
    table[vert_of, rank] = face_of
    return table


def closest_points_on_mesh(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, k_candidates: int = 8,
                           point_normals: np.ndarray | None = None, min_normal_dot: float = 0.0,
                           table: np.ndarray | None = None, hint: np.ndarray | None = None):
    """Closest surface points of points (N, 3) on a mesh. Candidate triangles are those around the
    k nearest mesh vertices (exact for reasonable meshes). With point_normals (N, 3) (unit), the closest
    *compatible* point: triangles whose unit normal has a dot product below min_normal_dot with the point's normal
    are taken only where a point has no other candidate (two surfaces facing each other, such as the inner lips
    where they touch, are told apart). `table`: `vertex_face_table(faces, V)` when the caller keeps it (a fit
    that asks many times on one mesh's moving vertices). `hint` (N,): a triangle per point likely to be its nearest
    (such a fit's previous answer, -1 for none): where it is one of the point's candidates, its distance bounds which
    others are projected on (fewer than around the nearest vertex; the answers are the same, bit for bit, with or
    without it). Returns (points (N,3), tri (N,), bary (N,3), dist (N,))."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    p = np.asarray(points, np.float64)
    if point_normals is not None:
        tri_normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        tri_normals /= np.maximum(np.linalg.norm(tri_normals, axis=1, keepdims=True), 1e-20)
        point_normals = np.asarray(point_normals, np.float64)
    if table is None:                    # vertex -> incident faces (padded table)
        table = vertex_face_table(f, len(v))
    k = min(k_candidates, len(v))
    nn_dist, nn = kd_query(cKDTree(v), p, k=k)
    nn_dist, nn = nn_dist.reshape(len(p), -1), nn.reshape(len(p), -1)
    # candidate triangles of each point, each once (neighbouring vertices share most of their triangles; sorted as
    # 32-bit integers where they fit, twice as fast, the same order)
    cand = table[nn].reshape(len(p), -1)
    cand = np.sort(cand.astype(np.int32) if len(f) < 2 ** 31 else cand, axis=1)
    keep = cand >= 0
    keep[:, 1:] &= cand[:, 1:] != cand[:, :-1]
    rows, cols = np.nonzero(keep)
    tris = cand[rows, cols].astype(np.int64)
    # without normals, the nearest candidate is found projecting onto fewer triangles (`_TriangleBounds`)
    bounds = _TriangleBounds(v, f) if point_normals is None and len(rows) > len(f) else None
    nearest_corner = _nearest_corner(nn, table) if bounds is not None else None
    best_d = np.full(len(p), np.inf)
    best_pt = np.zeros_like(p)
    best_tri = np.zeros(len(p), np.int64)
    best_bary = np.zeros((len(p), 3))
    # all (point, candidate) pairs at once, in slices of a bounded size; rows are sorted, so a point's pairs are
    # contiguous and the nearest candidate of each point is the first of its run after sorting by distance
    step = 1 << 18
    for s0 in range(0, len(rows), step):
        r, t = rows[s0:s0 + step], tris[s0:s0 + step]
        if bounds is None:
            pt, bc, d = _pair_closest_points(p, v, f, r, t)
        else:
            r, t, pt, bc, d = bounds.nearest_candidates(p, v, f, r, t, nearest_corner, hint)
        if point_normals is not None:   # incompatible triangles rank after every compatible one
            d = d + INCOMPATIBLE_PENALTY * ((tri_normals[t] * point_normals[r]).sum(1) < min_normal_dot)
        first = _first_minimum_per_run(r, d)
        sel = r[first]
        better = d[first] < best_d[sel]            # a point's pairs may straddle two slices
        sel, first = sel[better], first[better]
        best_d[sel], best_pt[sel], best_tri[sel], best_bary[sel] = d[first], pt[first], t[first], bc[first]
    if point_normals is not None:
        best_d = np.linalg.norm(best_pt - p, axis=1)
    return best_pt, best_tri, best_bary, best_d


def _pair_closest_points(p: np.ndarray, v: np.ndarray, f: np.ndarray, r: np.ndarray, t: np.ndarray):
    """Closest points (M, 3), barycentrics (M, 3) and distances (M,) of points p[r] on triangles f[t]."""
    tri = f[t]
    pt, bc = closest_point_on_triangles(p[r], v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]])
    return pt, bc, np.linalg.norm(pt - p[r], axis=1)


def _nearest_corner(nn: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(N,) each point's nearest candidate vertex that is a corner of some triangle (-1 where none is); nn (N, k)
    the k nearest vertices, nearest first."""
    has_face = table[nn, 0] >= 0
    first = np.argmax(has_face, axis=1)
    return np.where(has_face.any(1), nn[np.arange(len(nn)), first], -1)


class _TriangleBounds:
    """Lower bounds of the distance from a point to each triangle of a mesh (V, 3), (F, 3): a triangle is no
    nearer to p than |p - c| - r (c the mean of its corners, r the distance from c to its farthest corner) nor
    than p's distance to its plane."""

    def __init__(self, v: np.ndarray, f: np.ndarray):
        a, b, c = corner_rows(v, f)                                        # (3, F) each
        self.centre = (a + b + c) / 3.0
        self.radius = np.sqrt(np.maximum(np.maximum(dot_rows(a - self.centre, a - self.centre),
                                                    dot_rows(b - self.centre, b - self.centre)),
                                         dot_rows(c - self.centre, c - self.centre)))
        normal = cross_rows(b - a, c - a)
        length = norm_rows(normal)
        self.normal = normal / np.where(length > 0, length, np.inf)         # zero for a degenerate triangle
        self.corner = a
        # margins over the rounding of the bounds: relative to the distances compared, and to the coordinates
        self.absolute_margin = 1e-9 * (1.0 + float(np.abs(v).max(initial=0.0)))

    def lower(self, pt: np.ndarray, r: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(M,) lower bounds of the distance from points pt[:, r] ((3, N) rows) to triangles t (M,)."""
        q = np.take(pt, r, axis=1)
        offset = q - np.take(self.centre, t, axis=1)
        sphere = np.sqrt(dot_rows(offset, offset)) - self.radius[t]
        plane = np.abs(dot_rows(q - np.take(self.corner, t, axis=1), np.take(self.normal, t, axis=1)))
        return np.maximum(sphere, plane)

    def nearest_candidates(self, p: np.ndarray, v: np.ndarray, f: np.ndarray, r: np.ndarray, t: np.ndarray,
                           nearest_corner: np.ndarray, hint: np.ndarray | None = None):
        """The (point, candidate triangle) pairs r, t (M,) (sorted by point) less those surely farther than
        another candidate of the same point, with their closest points, barycentrics and distances: first the
        point's `hint` triangle (N,) where it is a candidate, else the triangles around its nearest corner
        (`nearest_corner` (N,)), give each point a distance some candidate reaches, then only the other
        candidates whose lower bound is not beyond it are projected on. No point's nearest candidate, nor one
        tied with it, is dropped (the margin covers rounding; NaNs are kept), and every distance is computed as
        for all pairs, so each point's first nearest candidate is the same. Returns (r, t, points, barycentrics,
        distances) of the kept pairs, in their order."""
        if hint is None:
            first_ring = (f[t] == nearest_corner[r][:, None]).any(1)
        else:
            first_ring = t == np.asarray(hint, np.int64)[r]
            hinted = np.zeros(len(p), bool)
            hinted[r[first_ring]] = True
            other = np.flatnonzero(~hinted[r])               # points without their hint among the candidates
            first_ring[other] = (f[t[other]] == nearest_corner[r[other]][:, None]).any(1)
        ring = np.flatnonzero(first_ring)
        pt1, bc1, d1 = _pair_closest_points(p, v, f, r[ring], t[ring])
        upper = np.full(len(p), np.inf)
        np.minimum.at(upper, r[ring], d1)
        rest = np.flatnonzero(~first_ring)
        pts = np.ascontiguousarray(p.T)
        bound = upper[r[rest]]
        slack = 1e-6 * (bound + self.radius[t[rest]]) + self.absolute_margin
        rest = rest[~(self.lower(pts, r[rest], t[rest]) > bound + slack)]
        pt2, bc2, d2 = _pair_closest_points(p, v, f, r[rest], t[rest])
        kept = np.sort(np.concatenate([ring, rest]))
        at = np.empty(len(r), np.int64)
        at[kept] = np.arange(len(kept))
        pt, bc, d = np.empty((len(kept), 3)), np.empty((len(kept), 3)), np.empty(len(kept))
        pt[at[ring]], bc[at[ring]], d[at[ring]] = pt1, bc1, d1
        pt[at[rest]], bc[at[rest]], d[at[rest]] = pt2, bc2, d2
        return r[kept], t[kept], pt, bc, d


def _first_minimum_per_run(runs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the smallest value in each run of equal, sorted `runs` labels (the first of equal smallest ones),
    run by run: what sorting by (run, value) and taking each run's head gives, without the sort."""
    starts = np.flatnonzero(np.concatenate([[True], runs[1:] != runs[:-1]]))
    if np.isnan(values).any():
        order = np.lexsort((values, runs))
        return order[np.concatenate([[True], runs[order][1:] != runs[order][:-1]])]
    lowest = np.minimum.reduceat(values, starts)
    run_of = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(values))))
    at = np.flatnonzero(values == lowest[run_of])
    return at[np.concatenate([[True], run_of[at][1:] != run_of[at][:-1]])]


def closest_points_exact(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, first_k: int = 4,
                         block: int = 1 << 17, index: str = "auto"):
    """Exact closest surface points of points (N, 3) on a triangle mesh (F, 3). Returns (points (N, 3), tri (N,),
    bary (N, 3), dist (N,)).

    `index`: "aabb" a bounding-box tree of the triangles (libigl's `AABB`, C++, every point's nearest triangle
    exactly; 15-20x faster than the KD-trees on 100k points), "kdtree" the KD-trees of triangle centroids below,
    "auto" the box tree when libigl is installed. Where two triangles are equally near (the closest point on their
    shared edge or corner) either may be returned: the point and its interpolated values are the same."""
    if not len(points):
        return _closest_points_kdtree(points, vertices, faces, first_k, block)
    return TriangleIndex(vertices, faces, index).closest(points, first_k, block)


class TriangleIndex:
    """A triangle mesh (V, 3), (F, 3) indexed once for exact closest points asked many times (a registration's
    iterations onto one target): libigl's box tree when `index` allows it and libigl is installed, else the
    centroid KD-trees of `closest_points_exact`, built per ask."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, index: str = "auto"):
        if index not in ("auto", "aabb", "kdtree"):
            raise ValueError(f"index must be auto, aabb or kdtree, got {index!r}")
        self.vertices = np.ascontiguousarray(vertices, np.float64)
        self.faces = np.ascontiguousarray(faces, np.int64)
        self.tree = None
        if index != "kdtree" and len(self.faces):
            try:
                import igl
            except ImportError:
                if index == "aabb":
                    raise
            else:
                self.tree = igl.AABB()
                self.tree.init(self.vertices, self.faces)

    def closest(self, points: np.ndarray, first_k: int = 4, block: int = 1 << 17):
        """(points (N, 3), tri (N,), bary (N, 3), dist (N,)) of points (N, 3): see `closest_points_exact`."""
        if self.tree is None:
            return _closest_points_kdtree(points, self.vertices, self.faces, first_k, block)
        return _closest_points_aabb(points, self.vertices, self.faces, self.tree, block)


def _closest_points_aabb(points: np.ndarray, v: np.ndarray, f: np.ndarray, tree, block: int):
    """`closest_points_exact` through libigl's AABB tree of (v, f): the nearest triangle of each point, then its
    closest point and barycentric coordinates by `closest_point_on_triangles` (a block of points at a time)."""
    p = np.ascontiguousarray(points, np.float64)
    n = len(p)
    out_pt, out_tri = np.empty((n, 3)), np.empty(n, np.int64)
    out_bary, out_d = np.empty((n, 3)), np.empty(n)
    for s0 in range(0, n, block):
        q = p[s0:s0 + block]
        checkpoint()                                              # a cancelled run stops here
        _, tri, _ = tree.squared_distance(v, f, q)
        corners = f[tri]
        pt, bc = closest_point_on_triangles(q, v[corners[:, 0]], v[corners[:, 1]], v[corners[:, 2]])
        out_pt[s0:s0 + block], out_tri[s0:s0 + block], out_bary[s0:s0 + block] = pt, tri, bc
        out_d[s0:s0 + block] = np.linalg.norm(pt - q, axis=1)
    return out_pt, out_tri, out_bary, out_d


def _closest_points_kdtree(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, first_k: int = 4,
                           block: int = 1 << 17):
    """Exact closest surface points through KD-trees of triangle centroids (no compiled library needed).

    A triangle t is no nearer to p than ``|p - c_t| - r_t`` (c_t its centroid, r_t the largest distance from c_t
    to a corner). Triangles are grouped by r_t (powers of two of the median), one tree per group, so that a few
    large triangles do not widen every search. In each group a point tries the triangles of its `first_k` nearest
    centroids, then, while the farthest of those is not beyond the best distance found plus the group's largest
    r_t, four times as many: no triangle that could be nearer is ever skipped. Points are handled in blocks of
    `block` (bounded scratch memory)."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    p = np.asarray(points, np.float64)
    n = len(p)
    corners = v[f]                                            # (F, 3, 3)
    centroids = corners.mean(1)
    radius = np.linalg.norm(corners - centroids[:, None], axis=2).max(1)
    ref = max(float(np.median(radius)), 1e-300)
    group = np.maximum(0, np.ceil(np.log2(np.maximum(radius, 1e-300) / ref))).astype(np.int64)
    groups = []
    for g in np.unique(group):
        ids = np.nonzero(group == g)[0]
        groups.append((ids, cKDTree(centroids[ids]), float(radius[ids].max())))
    out_pt, out_tri = np.zeros((n, 3)), np.zeros(n, np.int64)
    out_bary, out_d = np.zeros((n, 3)), np.full(n, np.inf)
    for s0 in range(0, n, block):
        sl = slice(s0, min(s0 + block, n))
        q = p[sl]
        best = [out_pt[sl], out_tri[sl], out_bary[sl], out_d[sl]]
        for ids, tree, reach in groups:
            todo = np.arange(len(q))
            k = min(first_k, len(ids))
            while len(todo):
                checkpoint()                                          # a cancelled run stops here
                dc, c = tree.query(q[todo], k=k)
                dc, c = dc.reshape(len(todo), k), c.reshape(len(todo), k)
                valid = dc - reach <= best[3][todo, None]            # others cannot be nearer
                found = _best_of_candidates(q[todo], ids[c], valid, v, f)
                better = found[3] < best[3][todo]
                for a_best, a_found in zip(best, found):
                    a_best[todo[better]] = a_found[better]
                if k >= len(ids):
                    break
                # all k within the bound: a centroid beyond the k-th may still hide a nearer triangle
                more = valid[:, -1] & (dc[:, -1] - reach < best[3][todo])
                todo, k = todo[more], min(4 * k, len(ids))
        out_pt[sl], out_tri[sl], out_bary[sl], out_d[sl] = best
    return out_pt, out_tri, out_bary, out_d


def _best_of_candidates(q: np.ndarray, cand: np.ndarray, valid: np.ndarray, v: np.ndarray, f: np.ndarray,
                        step: int = 1 << 18):
    """Each point's nearest triangle among its candidates: q (m, 3), cand (m, k) triangle indices, valid (m, k)
    which to try. Returns (points, tri, bary, dist) with an infinite distance where a point tried none."""
    m, k = cand.shape
    best_pt, best_tri, best_bary = np.zeros((m, 3)), np.zeros(m, np.int64), np.zeros((m, 3))
    best_d = np.full(m, np.inf)
    per = max(1, step // max(k, 1))
    for s0 in range(0, m, per):
        ok = valid[s0:s0 + per]
        r, j = np.nonzero(ok)
        t = cand[s0:s0 + per][r, j]
        tri = f[t]
        pt, bc = closest_point_on_triangles(q[s0 + r], v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]])
        d = np.full(ok.shape, np.inf)
        d[r, j] = np.linalg.norm(pt - q[s0 + r], axis=1)
        pick = np.argmin(d, axis=1)
        has = np.isfinite(d[np.arange(len(d)), pick])
        pair = np.full(ok.shape, -1, np.int64)
        pair[r, j] = np.arange(len(r))
        sel = pair[np.arange(len(d)), pick][has]
        rows = s0 + np.nonzero(has)[0]
        best_pt[rows], best_tri[rows], best_bary[rows], best_d[rows] = pt[sel], t[sel], bc[sel], \
            np.linalg.norm(pt[sel] - q[rows], axis=1)
    return best_pt, best_tri, best_bary, best_d


@dataclass
class SurfaceEmbedding:
    """A mesh (faces over V' vertices) whose every vertex is a barycentric point of a template's triangles."""

    faces: np.ndarray      # (F', 3) faces of the new mesh
    tri_index: np.ndarray  # (V',) template triangle of each new vertex
    bary: np.ndarray       # (V', 3) barycentric coordinates in that triangle
    template_faces: np.ndarray  # (F, 3)
    n_template: int

    @property
    def n_vertices(self) -> int:
        return len(self.tri_index)

    def matrix(self) -> sp.csr_matrix:
        """(V', n_template) sparse interpolation matrix: new = B @ template_values."""
        corners = self.template_faces[self.tri_index]
        rows = np.repeat(np.arange(self.n_vertices), 3)
        return sp.csr_matrix((self.bary.ravel().astype(np.float32), (rows, corners.ravel())),
                             shape=(self.n_vertices, self.n_template))

    def nearest_template_vertex(self) -> np.ndarray:
        """(V',) template vertex with the largest barycentric weight (for transferring labels)."""
        corners = self.template_faces[self.tri_index]
        return corners[np.arange(self.n_vertices), self.bary.argmax(1)]

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Interpolate template per-vertex values (..., n_template, C) -> (..., V', C)."""
        corners = self.template_faces[self.tri_index]  # (V', 3)
        vals = np.asarray(values)
        return (vals[..., corners, :] * self.bary[..., None]).sum(-2).astype(vals.dtype)


def embed_mesh(vertices: np.ndarray, faces: np.ndarray, template_vertices: np.ndarray,
               template_faces: np.ndarray) -> SurfaceEmbedding:
    """Project a mesh's vertices onto a template surface and keep their barycentric coordinates."""
    _, tri, bary, _ = closest_points_on_mesh(vertices, template_vertices, template_faces)
    return SurfaceEmbedding(np.asarray(faces, np.int64), tri, bary.astype(np.float32),
                            np.asarray(template_faces, np.int64), len(template_vertices))
