"""Openings of a surface (mouth slits, eye holes): ordered boundary loops, geodesic distances from vertex sets
(heat method), side labels across an opening, and surfaces that close or line an opening (caps, mouth bags)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


_LAST_LOOPS: dict = {}          # recent calls' faces digest -> loops: the prior asks for one mesh's thrice,
_KEPT_LOOPS = 3                 # between asks for the ICT skin's own


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Ordered boundary loops of a triangle mesh (F, 3): each an int64 array of vertex indices following the
    boundary half-edges (a -> b where the face has a -> b and no face has b -> a), so a cap whose faces traverse each
    loop edge backwards is consistently oriented with the mesh. Non-manifold boundary vertices (two outgoing boundary
    half-edges) end a walk early; loops shorter than 3 are dropped. The answers for the last three meshes are kept
    (by the faces' content; loops are copied out, never shared)."""
    import hashlib

    f = np.ascontiguousarray(faces, np.int64)
    key = (f.shape, hashlib.blake2b(f.data, digest_size=16).digest())
    if key not in _LAST_LOOPS:
        while len(_LAST_LOOPS) >= _KEPT_LOOPS:
            _LAST_LOOPS.pop(next(iter(_LAST_LOOPS)))       # the oldest first
        _LAST_LOOPS[key] = _boundary_loops(f)
    return [loop.copy() for loop in _LAST_LOOPS[key]]


def _boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    f = np.asarray(faces, np.int64)
    half = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    n = int(f.max()) + 1 if len(f) else 0
    key = half[:, 0] * n + half[:, 1]
    reverse = half[:, 1] * n + half[:, 0]
    # a half-edge is on the boundary when its reverse is no half-edge: looked up in the sorted keys (one sort of
    # the keys alone; `np.isin` sorts both arrays together, several times slower on a big mesh)
    keys = np.sort(key)
    at = np.minimum(np.searchsorted(keys, reverse), max(len(keys) - 1, 0))
    boundary = half[keys[at] != reverse] if len(keys) else half
    nxt = dict(zip(boundary[:, 0].tolist(), boundary[:, 1].tolist()))
    loops, seen = [], set()
    for start in boundary[:, 0].tolist():
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen and v in nxt:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        if len(loop) >= 3 and v == start:
            loops.append(np.asarray(loop, np.int64))
    return loops


def _heat_distance_robust(vertices: np.ndarray, faces: np.ndarray, source_sets: list[np.ndarray]) -> np.ndarray:
    """Varadhan's heat-kernel distance d = sqrt(-4 t log u) with the robust Laplacian (any mesh, also
    non-manifold): (len(sets), V), inf where no heat arrives. Only its ordering between source sets is used."""
    import robust_laplacian

    L, M = robust_laplacian.mesh_laplacian(np.asarray(vertices, np.float64), np.asarray(faces, np.int64))
    h = float(np.mean(np.linalg.norm(vertices[faces[:, 0]] - vertices[faces[:, 1]], axis=1)))
    t = h * h
    solve = spla.factorized((M + t * L).tocsc())
    out = []
    for src in source_sets:
        delta = np.zeros(len(vertices))
        delta[src] = 1.0
        u = np.clip(solve(M @ delta), 1e-300, None)
        u /= u.max()
        out.append(np.sqrt(np.maximum(-4 * t * np.log(u), 0.0)))
    return np.stack(out)


def geodesic_distances(vertices: np.ndarray, faces: np.ndarray, source_sets: list[np.ndarray]) -> np.ndarray:
    """Geodesic distance on the surface (vertex units) from each vertex set: (len(source_sets), V).

    Heat method (potpourri3d's `MeshHeatMethodDistanceSolver`, intrinsic Delaunay); on meshes it refuses
    (non-manifold) the robust Laplacian's heat kernel (Varadhan) stands in. Vertices not connected to a set get
    a large distance."""
    import potpourri3d as pp3d

    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    used = np.zeros(len(v), bool)
    used[f.ravel()] = True
    sets = [np.asarray(s, np.int64)[used[np.asarray(s, np.int64)]] for s in source_sets]
    out = np.full((len(sets), len(v)), np.inf)
    try:
        solver = pp3d.MeshHeatMethodDistanceSolver(v, f)
        for i, s in enumerate(sets):
            if len(s):
                out[i] = solver.compute_distance_multisource(s.tolist())
    except (RuntimeError, ValueError):
        live = [i for i, s in enumerate(sets) if len(s)]
        if live:
            out[live] = _heat_distance_robust(v, f, [sets[i] for i in live])
    out[:, ~used] = np.inf
    return np.where(np.isfinite(out), out, 1e9)


LOCAL_GEODESICS_ABOVE = 300_000  # meshes with more vertices measure geodesics only near the sources, along edges


def geodesic_distances_near(vertices: np.ndarray, faces: np.ndarray, source_sets: list[np.ndarray],
                            reach: float) -> np.ndarray:
    """`geodesic_distances` where only distances up to `reach` (vertex units) matter: (len(source_sets), V). On a
    mesh of more than LOCAL_GEODESICS_ABOVE vertices they are shortest paths (Dijkstra) along the edges and across
    each pair of neighbouring triangles (`surface_graph`) of the part of the mesh within Euclidean distance `reach`
    of the sources (no path shorter than `reach` leaves it), and vertices beyond 1.1 `reach` get 1e9. Time and memory
    grow with that part, not with a heat solver of the whole mesh (gigabytes at a million vertices); on a fine mesh
    the paths are a few % longer than the surface's geodesics, alike from every source set, so the sides they tell
    apart are the same."""
    from scipy.sparse.csgraph import dijkstra
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    sets = [np.asarray(s, np.int64) for s in source_sets]
    sources = np.unique(np.concatenate(sets)) if sets else np.zeros(0, np.int64)
    if len(v) <= LOCAL_GEODESICS_ABOVE or not len(sources) or not len(f):
        return geodesic_distances(v, f, sets)
    limit = 1.1 * reach                           # paths a little longer than the geodesics still count as inside
    tree, inside, block = cKDTree(v[sources]), np.zeros(len(v), bool), 1 << 18
    for s0 in range(0, len(v), block):            # which vertices lie within `limit` of a source, a block at a time
        inside[s0:s0 + block] = np.isfinite(tree.query(v[s0:s0 + block], distance_upper_bound=limit)[0])
    sub_faces = f[inside[f].all(1)]
    used = np.unique(sub_faces)
    remap = np.full(len(v), -1, np.int64)
    remap[used] = np.arange(len(used))
    graph = surface_graph(v[used], remap[sub_faces])
    out = np.full((len(sets), len(v)), 1e9)
    for i, s in enumerate(sets):
        local = remap[s][remap[s] >= 0]
        if len(local):
            d = dijkstra(graph, directed=False, indices=local, min_only=True, limit=limit)
            out[i, used] = np.where(np.isfinite(d), d, 1e9)
    return out


def surface_graph(vertices: np.ndarray, faces: np.ndarray) -> sp.csr_matrix:
    """(V, V) upper-triangular sparse graph of a triangle mesh for shortest paths: its edges, and the segment
    between the two far corners of every pair of triangles sharing an edge (a path may cut across the pair instead
    of following two edges, which brings path lengths on a fine mesh within a few % of the geodesics); weights are
    Euclidean lengths."""
    f = np.asarray(faces, np.int64)
    n = len(vertices)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    opposite = np.concatenate([f[:, 2], f[:, 0], f[:, 1]])
    lo, hi = edges.min(1), edges.max(1)
    key = lo * n + hi
    order = np.argsort(key, kind="stable")
    key, opposite = key[order], opposite[order]
    shared = np.nonzero(key[1:] == key[:-1])[0]                 # an edge of two triangles: their far corners
    pairs = np.concatenate([np.stack([lo[order], hi[order]], 1),
                            np.stack([opposite[shared], opposite[shared + 1]], 1)])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    a, b = pairs.min(1), pairs.max(1)
    _, first = np.unique(a * n + b, return_index=True)              # each pair once
    a, b = a[first], b[first]
    length = np.linalg.norm(vertices[a] - vertices[b], axis=1)
    graph = sp.csr_matrix((length, (a, b)), shape=(n, n))
    return graph


def side_labels(distances_a: np.ndarray, distances_b: np.ndarray, radius: float) -> np.ndarray:
    """(V,) int8: +1 where side a's sources are geodesically nearer, -1 where side b's are, 0 beyond `radius`
    of both (vertices far from the opening keep no side)."""
    near = np.minimum(distances_a, distances_b) < radius
    return np.where(near, np.where(distances_a <= distances_b, 1, -1), 0).astype(np.int8)


def loop_halves(points: np.ndarray, loop: np.ndarray, right: np.ndarray, up: np.ndarray,
                corner_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Split an opening's loop at its two corners (the extreme points along `right`) into the upper and lower
    arcs (by their mean height along `up`); `corner_fraction` of each arc's length next to the corners is left
    out (the corners belong to both sides). Returns (upper vertices, lower vertices)."""
    x = points[loop] @ right
    i, j = int(np.argmin(x)), int(np.argmax(x))
    n = len(loop)
    arc1 = loop[np.arange(i, i + ((j - i) % n) + 1) % n]
    arc2 = loop[np.arange(j, j + ((i - j) % n) + 1) % n]

    def trim(arc):
        k = int(round(corner_fraction * len(arc)))
        return arc[k:len(arc) - k] if len(arc) > 2 * k + 1 else arc[len(arc) // 2:len(arc) // 2 + 1]

    arc1, arc2 = trim(arc1), trim(arc2)
    if (points[arc1] @ up).mean() >= (points[arc2] @ up).mean():
        return arc1, arc2
    return arc2, arc1


# --------------------------------------------------------------------------------- closing and lining openings


def loop_fill(points: np.ndarray, loop: np.ndarray, first_index: int, rings: int = 3,
              offset: np.ndarray | None = None, close: bool = True, spread: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concentric rings inside a boundary loop, each the loop shrunk towards its centroid (and moved by
    `offset` times the ring's depth fraction, e.g. into the head for a mouth bag), closed by a centre vertex.

    points (V, 3); loop (L,) ordered as `boundary_loops` gives it; new vertices are numbered from first_index.
    Returns new vertices (N, 3), faces (G, 3) over old + new indices (oriented consistently with the mesh), and
    the interpolation matrix W (N, L + 1) that gives every new vertex from the loop's vertices and their mean
    (W @ concat(values[loop], mean) carries per-vertex values, e.g. displacements, into the fill). `spread`
    (L, 3): each loop vertex's ring copies are moved by it times sin(pi s), s the ring's depth fraction (a bag
    behind lips that touch opens into a cavity instead of two coincident sheets)."""
    loop = np.asarray(loop, np.int64)
    n_loop = len(loop)
    centre = points[loop].mean(0)
    offset = np.zeros(3) if offset is None else np.asarray(offset, np.float64)
    new_v, weights, faces = [], [], []
    previous = loop
    for r in range(1, rings + 1):
        s = r / (rings + 1)                                     # 0 at the loop, 1 at the centre
        w = np.zeros((n_loop, n_loop + 1))
        w[np.arange(n_loop), np.arange(n_loop)] = 1 - s
        w[:, -1] = s
        ring = first_index + sum(len(x) for x in new_v) + np.arange(n_loop)
        bulge = 0.0 if spread is None else np.sin(np.pi * s) * np.asarray(spread, np.float64)
        new_v.append((1 - s) * points[loop] + s * centre + s * offset + bulge)
        weights.append(w)
        nxt = np.roll(np.arange(n_loop), -1)
        faces.append(np.stack([previous[nxt], previous, ring], 1))
        faces.append(np.stack([previous[nxt], ring, ring[nxt]], 1))
        previous = ring
    if close:
        c = first_index + sum(len(x) for x in new_v)
        new_v.append((centre + offset)[None])
        w = np.zeros((1, n_loop + 1))
        w[0, -1] = 1.0
        weights.append(w)
        nxt = np.roll(np.arange(n_loop), -1)
        faces.append(np.stack([previous[nxt], previous, np.full(n_loop, c)], 1))
    return np.concatenate(new_v), np.concatenate(faces).astype(np.int64), np.concatenate(weights)


def carry_into_fill(values: np.ndarray, loop: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-vertex values (..., V, C) -> the fill's values (..., N, C) by its interpolation matrix (N, L + 1)."""
    on_loop = values[..., loop, :]
    stacked = np.concatenate([on_loop, on_loop.mean(-2, keepdims=True)], axis=-2)
    return np.einsum("nl,...lc->...nc", weights, stacked).astype(values.dtype)


SHALLOW_HOPS = 2     # a spanning component at most this many hops deep is graded along spokes, not by hops


def sparse_adjacency(faces: np.ndarray, n: int) -> sp.csr_matrix:
    """(n, n) 0/1 vertex adjacency of a triangle mesh."""
    f = np.asarray(faces, np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    a = sp.coo_matrix((np.ones(2 * len(e)), (e.ravel(), e[:, ::-1].ravel())), shape=(n, n)).tocsr()
    a.data[:] = 1.0
    return a


def radial_fill(vertices: np.ndarray, faces: np.ndarray, region: np.ndarray, tie_cm: float = 0.02,
                max_component: int = 20000, rim_side: np.ndarray | None = None) -> list[tuple]:
    """How geometry spanning an opening (a cap, a mouth bag: `region`, (V,) bool) hangs from its rim: each vertex
    as a blend of one rim vertex ("behind" it, seen from the rim's centre) and the mean of the rim, by depth.

    For every connected component of the region that touches the rest of the mesh: its rim (the outside vertices
    adjacent to it), and per component vertex the depth s in [0, 1] (hops from the rim over hops from the rim plus
    hops to the component's deepest vertices) and the rim vertex it hangs from: the one nearest to where the vertex
    would sit on the rim if the component's level (its vertices at the same hop count) were scaled back out to
    it, about its centre; where two rim vertices are about as near (`tie_cm`: lips that touch at rest), the one
    fewer hops away, so an upper-lip cap vertex never hangs from the lower lip. A component built by `loop_fill`
    is reproduced exactly. Components larger than `max_component` are left out. A component at most SHALLOW_HOPS
    deep (a scan's cap, re-tessellated coarser than such rings) has no levels to grade by: each vertex hangs from
    the two rim vertices whose spokes (from the rim's centre) pass nearest it, blended by how near, its depth the
    fraction of the spoke out to it (`_spokes`).

    With `rim_side` ((V,) float: 1 on one side of the opening, 0 on the other, 0.5 where neither, e.g. the upper
    and the lower lip), a vertex whose nearest rim vertices tie across the two sides (a scan's cap, re-tessellated
    along lips that touch, where hops alternate from one vertex to the next) hangs from both, by a weight solved
    harmonically (graph Laplacian) over those vertices from the rim's sides and the other vertices' choices, so the
    membrane opens smoothly between the sides instead of alternating; a vertex with one side's rim vertices alone
    near hangs from its one as before.

    vertices (V, 3), faces (F, 3). Returns [(component (N,), rim (R,), hang (N,) index into rim, s (N,), other
    (N,) index into rim, weight (N,) of hang against other)]."""
    from scipy.sparse.csgraph import connected_components, dijkstra

    v = np.asarray(vertices, np.float64)
    region = np.asarray(region, bool)
    adj = sparse_adjacency(faces, len(v))
    inside = np.nonzero(region)[0]
    if not len(inside):
        return []
    touching = np.asarray(adj @ region.astype(np.float64)).ravel() > 0
    rim_all = np.nonzero(~region & touching)[0]
    _, label = connected_components(adj[inside][:, inside], directed=False)
    out = []
    for c in np.unique(label):
        comp = inside[label == c]
        rim = rim_all[np.asarray(adj[rim_all][:, comp].sum(1)).ravel() > 0]
        if not len(rim) or len(comp) > max_component:
            continue
        nodes = np.concatenate([rim, comp])
        graph = adj[nodes][:, nodes]
        n_rim = len(rim)
        from_rim = dijkstra(graph, indices=np.arange(n_rim), unweighted=True, min_only=True)[n_rim:]
        deep = np.nonzero(from_rim == from_rim.max())[0] + n_rim
        to_deep = dijkstra(graph, indices=deep, unweighted=True, min_only=True)[n_rim:]
        s = from_rim / np.maximum(from_rim + to_deep, 1e-9)
        centre = v[rim].mean(0)
        hang = np.zeros(len(comp), np.int64)
        other, weight = hang.copy(), np.ones(len(comp))
        torn = np.zeros(len(comp), bool)                # ties across the two sides
        side = None if rim_side is None else np.asarray(rim_side, np.float64)[rim]
        if from_rim.max() <= SHALLOW_HOPS:   # too few levels to grade the depth by: along the spokes instead
            hang, s, other, torn, weight = _spokes(v[comp], v[rim], side, tie_cm)
            if torn.any():
                weight = np.where(torn, _side_weights(graph, n_rim, side, hang, torn), weight)
            out.append((comp, rim, hang, s, other, weight))
            continue
        for level in np.unique(from_rim)[:-1]:          # the deepest vertices hang from the rim's mean alone
            at = np.nonzero(from_rim == level)[0]
            on_rim = centre + (v[comp[at]] - v[comp[at]].mean(0)) / np.maximum(1.0 - s[at, None], 1e-6)
            dist = np.linalg.norm(on_rim[:, None, :] - v[rim][None], axis=-1)         # (A, R)
            near = dist <= dist.min(1, keepdims=True) + tie_cm
            hops = np.full(dist.shape, np.inf)
            ambiguous = np.nonzero(near.sum(1) > 1)[0]
            for chunk in np.array_split(ambiguous, max(1, len(ambiguous) // 256)):
                if len(chunk):
                    hops[chunk] = dijkstra(graph, indices=n_rim + at[chunk], unweighted=True,
                                           limit=float(level) + 2.0)[:, :n_rim]
            hops[near.sum(1) == 1] = 0.0
            score = np.where(near, np.minimum(hops, 1e6), 2e6)       # unreachable in a few hops: by distance
            hang[at] = np.argmin(score + 1e-3 * dist, axis=1)
            other[at] = hang[at]
            if side is not None:
                up, low = near & (side[None] == 1.0), near & (side[None] == 0.0)
                tie = up.any(1) & low.any(1)
                torn[at] = tie
                hang[at] = np.where(tie, np.argmin(np.where(up, score + 1e-3 * dist, np.inf), axis=1), hang[at])
                other[at] = np.where(tie, np.argmin(np.where(low, score + 1e-3 * dist, np.inf), axis=1), hang[at])
        if torn.any():
            deepest = from_rim == from_rim.max()
            weight = np.where(torn, _side_weights(graph, n_rim, side, hang, torn | deepest), 1.0)
        out.append((comp, rim, hang, s, other, weight))
    return out


def _spokes(points: np.ndarray, rim: np.ndarray, side: np.ndarray | None, tie_cm: float):
    """Each point (N, 3) on the spoke from the rim's (R, 3) centre to one rim vertex: the rim vertex whose spoke
    passes nearest it (within its length), and its depth s = 1 - the fraction of the spoke out to it. Returns
    (hang (N,), s (N,), other (N,): the nearest spoke on the other side where both sides' spokes pass within
    tie_cm of the nearest (side (R,) as `radial_fill`'s rim_side), torn (N,) bool: those)."""
    centre = rim.mean(0)
    spoke = rim - centre                                                         # (R, 3)
    rel = points - centre
    t = np.clip(rel @ spoke.T / np.maximum((spoke ** 2).sum(1), 1e-12)[None], 0.0, 1.0)      # (N, R)
    off = np.linalg.norm(rel[:, None, :] - t[..., None] * spoke[None], axis=-1)
    order = np.argsort(off, axis=1)
    hang, rows = order[:, 0], np.arange(len(points))
    # between the two nearest spokes, by how near each passes
    other = order[:, 1] if off.shape[1] > 1 else hang.copy()
    o1, o2 = off[rows, hang], off[rows, other]
    weight = np.where(o1 + o2 > 0, o2 / np.maximum(o1 + o2, 1e-12), 1.0)
    torn = np.zeros(len(points), bool)
    if side is not None:
        near = off <= off[rows, hang][:, None] + tie_cm
        up, low = near & (side[None] == 1.0), near & (side[None] == 0.0)
        torn = up.any(1) & low.any(1)
        hang = np.where(torn, np.argmin(np.where(up, off, np.inf), axis=1), hang)
        other = np.where(torn, np.argmin(np.where(low, off, np.inf), axis=1), other)
    depth = 1.0 - (weight * t[rows, hang] + (1.0 - weight) * t[rows, other])
    return hang, depth, other, torn, weight


def _side_weights(graph: sp.csr_matrix, n_rim: int, rim_side: np.ndarray, hang: np.ndarray, free: np.ndarray
                  ) -> np.ndarray:
    """(N,) harmonic weight in [0, 1] (graph Laplacian of `graph`: the rim's n_rim nodes, then the component's N)
    over the component's `free` vertices, held at rim_side (R,) on the rim and at the side of the rim vertex each
    other component vertex hangs from (hang (N,))."""
    known = np.concatenate([rim_side, rim_side[hang]])
    free = np.concatenate([np.zeros(n_rim, bool), free])
    lap = (sp.diags(np.asarray(graph.sum(1)).ravel()) - graph).tocsr()
    f_idx, h_idx = np.nonzero(free)[0], np.nonzero(~free)[0]
    l_ff = lap[f_idx][:, f_idx].tocsc() + 1e-9 * sp.eye(len(f_idx), format="csc")
    solved = spla.spsolve(l_ff, -(lap[f_idx][:, h_idx] @ known[h_idx]))
    out = known.copy()
    out[f_idx] = np.clip(np.atleast_1d(solved), 0.0, 1.0)
    return out[n_rim:]


def mask_components(faces: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    """The connected parts (vertex indices) of the vertices in mask ((V,) bool) over the mesh's edges (faces (F, 3))."""
    from scipy.sparse.csgraph import connected_components

    idx = np.nonzero(np.asarray(mask, bool))[0]
    if not len(idx):
        return []
    adj = sparse_adjacency(faces, len(mask))
    _, label = connected_components(adj[idx][:, idx], directed=False)
    return [idx[label == c] for c in np.unique(label)]


def polar_hang(points: np.ndarray, loop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where points (N, 3) sit on a membrane spanning a closed loop (L, 3) made of copies of the loop shrunk toward
    its centroid (as `loop_fill` builds one, with any number of rings): in the loop's best-fit plane, the ray from
    the centroid through each point crosses the loop's edge between two loop vertices a and b (angular order) at
    `weight` of a against b, and the point's radius is 1 - s of the crossing's. Returns (a (N,), b (N,), weight
    (N,), s (N,) in [0, 1]: 0 on the loop, 1 at its centroid). One continuous coordinate across the whole
    opening, no per-vertex choice of a side. The loop is taken as star-shaped about its centroid in that plane
    (an opening's rim: a mouth, an eye)."""
    centre = loop.mean(0)
    _, _, vt = np.linalg.svd(loop - centre, full_matrices=False)
    plane = vt[:2].T                                                    # (3, 2)
    rel_loop, rel = (loop - centre) @ plane, (points - centre) @ plane
    ang_loop, rad_loop = np.arctan2(rel_loop[:, 1], rel_loop[:, 0]), np.hypot(rel_loop[:, 0], rel_loop[:, 1])
    ang, rad = np.arctan2(rel[:, 1], rel[:, 0]), np.hypot(rel[:, 0], rel[:, 1])
    order = np.argsort(ang_loop)
    k = np.searchsorted(ang_loop[order], ang) % len(order)
    b, a = order[k], order[k - 1]
    # where the ray from the centroid through the point crosses the loop's edge a-b (in the plane)
    edge = rel_loop[b] - rel_loop[a]
    cross = lambda u, v: u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]      # noqa: E731
    denom = cross(rel, edge)
    ok = np.abs(denom) > 1e-12 * np.maximum(rad * np.linalg.norm(edge, axis=1), 1e-30)
    frac = np.clip(np.where(ok, -cross(rel, rel_loop[a]) / np.where(ok, denom, 1.0), 0.0), 0.0, 1.0)
    radius = np.linalg.norm(rel_loop[a] + frac[:, None] * edge, axis=1)
    s = np.clip(1.0 - rad / np.maximum(radius, 1e-12), 0.0, 1.0)
    return a, b, 1.0 - frac, s


def carry_radially(values: np.ndarray, fill: list, in_place: bool = False) -> np.ndarray:
    """Per-vertex values (..., V, C) with each `radial_fill` component replaced by (1 - s) times the value at the
    rim it hangs from (its rim vertex, or the blend of two by their weight) plus s times the rim's mean (a copy, or
    `values` itself with `in_place`)."""
    out = values if in_place else np.array(values, copy=True)
    for comp, rim, hang, s, other, weight in fill:
        mean = values[..., rim, :].mean(-2, keepdims=True)
        at_rim = weight[:, None] * values[..., rim[hang], :] + (1.0 - weight)[:, None] * values[..., rim[other], :]
        out[..., comp, :] = ((1.0 - s)[:, None] * at_rim + s[:, None] * mean).astype(out.dtype)
    return out


def grow_within(faces: np.ndarray, seeds: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """(V,) bool: the seeds and every `allowed` vertex connected to one through allowed vertices (seeds and
    allowed: (V,) bool)."""
    from scipy.sparse.csgraph import connected_components

    seeds, allowed = np.asarray(seeds, bool), np.asarray(allowed, bool) | np.asarray(seeds, bool)
    idx = np.nonzero(allowed)[0]
    if not seeds.any() or not len(idx):
        return seeds.copy()
    adj = sparse_adjacency(faces, len(allowed))
    _, label = connected_components(adj[idx][:, idx], directed=False)
    keep = np.isin(label, np.unique(label[seeds[idx]]))
    out = seeds.copy()
    out[idx[keep]] = True
    return out

