"""Opening a mouth modelled closed: a head whose lips are one surface (a dense scan, some game heads) cut along the
lip contact line into an upper and a lower lip edge, with a small mouth interior stitched to both.

The line is found on the ICT face fitted to the head (`nfs.prior.face_fit`): its inner-lip loop gives the mouth
corners and the midline between the upper and the lower lip. The cut follows the level curve, on the target's own
surface, of the height above that midline, from the vertex at one corner to the vertex at the other: triangles it
crosses are split where it crosses their edges (a crossing within `SNAP` of an edge's end goes through that vertex
instead, so no sliver is made), so the lip edge is as smooth as the surface, never a saw-tooth of the mesh's edges.

The user's vertex order is kept: existing vertices keep their indices and positions; the lower lip's copies of the
vertices on the line, the points where the line crosses edges and the mouth interior are appended after them. The
lower lip's copies sit `REST_GAP` of the mesh's size below the upper lip's (micrometres on a head), so the lips
still touch at rest and no tool merges the two edges back as duplicates. The interior is a short bag behind the
lips (`nfs.geometry.openings.loop_fill`), its halves bulging apart into a cavity, so the open mouth is never a
see-through hole.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from nfs.geometry.openings import boundary_loops, loop_fill, loop_halves
from nfs.io.mesh import MeshError, RawMesh
from nfs.mesh.align import Alignment
from nfs.mesh.clean import CleanMesh

SNAP = 0.2                 # a crossing this near an edge's end (fraction of the edge) goes through the vertex
REST_GAP = 1e-5            # the lower lip's copies sit this far (fraction of the mesh's diagonal) below the upper's
INTERIOR_RINGS = 4         # rings of the mouth interior between the lips and its back
INTERIOR_DEPTH = 0.5       # how far the interior reaches behind the lips, in mouth widths (ICT: 2.5 cm)
INTERIOR_CAVITY = 0.3      # how far its halves bulge apart, in mouth widths (ICT: 1.5 cm)
MIN_CLOSED_SHARE = 0.6     # the surface must join the lips over this share of the mouth's width to be cut
LOCAL_REACH = 0.4          # the lip sides are solved within this many mouth widths of the lip line
MIN_SURFACE_SHARE = 0.5    # and pass near the fitted lip line over this share, else no mouth is there
CONTACT_BAND_WIDTHS = 0.2  # lips pressed together lie off the fitted face within this many mouth widths of the line


class MouthCutError(MeshError):
    """The mouth could not be opened (no mouth found, or no clean lip line); the message is one line for the user."""


@dataclass
class MouthCut:
    """What opening the mouth did. Vertex indices are the user's (the cut mesh's) order: indices below
    `n_original` are the file's own vertices, unchanged; the rest were appended.

    upper_edge, lower_edge: (P,) the lip edges corner to corner, in the same order (the corners are shared);
    loop: (L,) the lip opening's boundary loop (both edges) as the mesh's boundary runs; interior: (N,) the
    mouth interior's vertices and interior_weights (N, L + 1) each one's blend of the loop's vertices and their
    mean (`nfs.geometry.openings.loop_fill`), by which it follows the lips; width_cm: the mouth's width."""

    n_original: int
    upper_edge: np.ndarray
    lower_edge: np.ndarray
    loop: np.ndarray
    interior: np.ndarray
    interior_weights: np.ndarray
    width_cm: float

    def note(self, n_vertices: int) -> str:
        """One line for the intake report."""
        return (f"mouth opened along the lip line ({len(self.upper_edge)} points corner to corner): "
                f"{n_vertices - self.n_original:,} vertices appended after the file's {self.n_original:,} "
                "(lower lip edge and mouth interior); the file's vertices keep their indices and positions")

    def on_skin(self, clean: CleanMesh) -> "MouthCut":
        """This cut in the numbering of `clean`'s skin (the cut mesh cleaned: `clean_mesh`, `split_head`)."""
        skin_index = np.full(len(clean.vertices), -1, np.int64)
        skin_index[clean.skin_vertices] = np.arange(len(clean.skin_vertices))
        to_clean = np.asarray(clean.to_clean, np.int64)
        index = np.where(to_clean >= 0, skin_index[np.maximum(to_clean, 0)], -1)
        out = self.remapped(index)
        if min(out.upper_edge.min(), out.lower_edge.min(), out.loop.min(), out.interior.min()) < 0:
            raise MouthCutError("could not open the mouth: the lips are not on the head's skin")
        return out

    def remapped(self, index: np.ndarray) -> "MouthCut":
        """This cut with every vertex index i replaced by index[i] (e.g. the skin's own numbering)."""
        return dataclasses.replace(self, upper_edge=index[self.upper_edge], lower_edge=index[self.lower_edge],
                                   loop=index[self.loop], interior=index[self.interior])
@functools.lru_cache(maxsize=1)
def _ict_mouth_loop() -> np.ndarray:
    """The ICT skin's inner-lip boundary loop (vertex indices)."""
    from nfs.prior.face_fit import skin_template
    from nfs.regions import REGION_NAMES, ict_region_labels
    _, tf, _, _ = skin_template()
    labels = ict_region_labels()
    lips = [REGION_NAMES.index("upper_lip"), REGION_NAMES.index("lower_lip")]
    return max(boundary_loops(tf), key=lambda loop: np.isin(labels[loop], lips).mean())


@dataclass
class LipLine:
    """The fitted face's lip contact line in the ICT model frame (cm): the corners (2, 3), left then right, and
    the midline between the upper and the lower inner lip sampled along x (K,) as heights y (K,) and depths z."""

    corners: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray

    @property
    def width(self) -> float:
        return float(np.linalg.norm(self.corners[1] - self.corners[0]))

    def height(self, p: np.ndarray) -> np.ndarray:
        """(N,) height of points (N, 3) above the midline (cm; level with the corners beyond them)."""
        return p[:, 1] - np.interp(p[:, 0], self.x, self.y)

    def along(self, p: np.ndarray) -> np.ndarray:
        """(N,) position along the mouth: 0 at the left corner, 1 at the right."""
        return (p[:, 0] - self.x[0]) / (self.x[-1] - self.x[0])

    def curve(self, n: int = 400) -> np.ndarray:
        """(n, 3) points of the midline, corner to corner."""
        xs = np.linspace(self.x[0], self.x[-1], n)
        return np.stack([xs, np.interp(xs, self.x, self.y), np.interp(xs, self.x, self.z)], 1)


def lip_line(face: np.ndarray, samples: int = 64) -> LipLine:
    """The lip contact line of a fitted ICT skin `face` (S, 3), model frame."""
    loop = _ict_mouth_loop()
    upper, lower = loop_halves(face, loop, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), corner_fraction=0.0)
    pts = face[loop]
    left, right = pts[np.argmin(pts[:, 0])], pts[np.argmax(pts[:, 0])]
    xs = np.linspace(left[0], right[0], samples)
    mids = []
    for arc in (upper, lower):
        a = face[arc][np.argsort(face[arc][:, 0])]
        mids.append(np.stack([np.interp(xs, a[:, 0], a[:, 1]), np.interp(xs, a[:, 0], a[:, 2])], 1))
    mid = 0.5 * (mids[0] + mids[1])
    return LipLine(np.stack([left, right]), xs, mid[:, 0], mid[:, 1])


def lip_sides(p: np.ndarray, faces: np.ndarray, line: LipLine, face: np.ndarray, dist: np.ndarray,
              reach: float, corners: np.ndarray) -> np.ndarray:
    """(V,) a smooth function on the surface near the mouth: +1 on the upper lip, -1 on the lower (vertices
    whose closest point on the fitted face `face` (S, 3) is on that lip, close to it and well away from the other
    lip, as the template prior reads the sides) and 0 at the `corners` (2,) vertices, harmonic between them
    (cotangent Laplacian). Its zero level runs along the middle of the lips' contact, across the surface, from
    corner to corner (the height above the midline alone is ill-defined where the contact is flat). p (V, 3)
    model frame, faces (F, 3) without degenerate ones, dist (V,) distance to the lip line; vertices beyond
    `reach` of it get the sign of their height above the line."""
    import robust_laplacian

    from nfs.geometry.surface import closest_points_exact
    from nfs.prior.face_fit import skin_template
    from nfs.regions import REGION_NAMES, ict_region_labels

    out = np.where(line.height(p) >= 0, 1.0, -1.0)
    local = dist < reach
    sub = faces[local[faces].all(1)]
    if not len(sub):
        return out
    ids = np.unique(sub)
    remap = np.full(len(p), -1, np.int64)
    remap[ids] = np.arange(len(ids))
    _, tf, _, _ = skin_template()
    labels = ict_region_labels()[: len(face)]
    _, tri, bary, gap = closest_points_exact(p[ids], face, tf)
    at = labels[tf[tri, np.argmax(bary, axis=1)]]
    value = np.zeros(len(ids))
    for name, sign, other in (("upper_lip", 1.0, "lower_lip"), ("lower_lip", -1.0, "upper_lip")):
        mine = np.nonzero((at == REGION_NAMES.index(name)) & (gap < max(0.15, 0.03 * line.width)))[0]
        far, _ = cKDTree(face[labels == REGION_NAMES.index(other)]).query(p[ids[mine]])
        value[mine[far > 0.07 * line.width]] = sign
    fixed = value != 0
    corner_local = remap[corners]
    corner_local = corner_local[corner_local >= 0]
    fixed[corner_local] = True
    value[corner_local] = 0.0
    if not (value > 0).any() or not (value < 0).any():
        return out
    free, held = np.nonzero(~fixed)[0], np.nonzero(fixed)[0]
    lap, mass = robust_laplacian.mesh_laplacian(p[ids].astype(np.float64), remap[sub])
    lap = lap.tocsr()
    a = (lap[free][:, free] + 1e-9 * mass[free][:, free]).tocsc()
    u = value.copy()
    u[free] = spla.spsolve(a, -(lap[free][:, held] @ value[held]))
    out[ids] = u
    return out


def _line_graph(p: np.ndarray, rw: np.ndarray, edges: np.ndarray, f2: np.ndarray, region: np.ndarray, nw: int):
    """The zero level of f2 near the line as a graph: its nodes are the vertices on it (f2 == 0, in `region`) and
    the edges crossing it (from `edges` (E, 2), sorted pairs); two nodes in one face of rw (R, 3) are linked.
    Returns (zero vertices, crossing edges, their crossing fractions, per-face nodes (R, 6): 3 vertex nodes and
    the nodes of edges 0-1, 1-2, 2-0 or -1, node positions, links (K, 2), node of each vertex, edge lookup)."""
    zero = np.nonzero(region & (f2 == 0))[0]
    fa, fb = f2[edges[:, 0]], f2[edges[:, 1]]
    cross_edges = edges[fa * fb < 0]
    n_zero = len(zero)
    node_of_vertex = np.full(nw, -1, np.int64)
    node_of_vertex[zero] = np.arange(n_zero)
    edge_key = cross_edges[:, 0] * nw + cross_edges[:, 1]
    order = np.argsort(edge_key)
    edge_key, cross_edges = edge_key[order], cross_edges[order]
    lam_e = f2[cross_edges[:, 0]] / (f2[cross_edges[:, 0]] - f2[cross_edges[:, 1]])
    node_pos = np.concatenate([p[zero], (1 - lam_e)[:, None] * p[cross_edges[:, 0]]
                               + lam_e[:, None] * p[cross_edges[:, 1]]])

    def edge_node(a, b):
        key = np.minimum(a, b) * nw + np.maximum(a, b)
        if not len(edge_key):
            return np.full(len(key), -1, np.int64)
        i = np.minimum(np.searchsorted(edge_key, key), len(edge_key) - 1)
        return np.where(edge_key[i] == key, n_zero + i, -1)

    tri_nodes = np.full((len(rw), 6), -1, np.int64)
    for k in range(3):
        tri_nodes[:, k] = node_of_vertex[rw[:, k]]
        tri_nodes[:, 3 + k] = edge_node(rw[:, k], rw[:, (k + 1) % 3])
    two = (tri_nodes >= 0).sum(1) == 2
    # two vertices on the line joined by an edge link only when the line really runs along it: the faces on
    # either side of the edge lie on either side of the line (not both on one, the line just touching it)
    along_edge = two & ((tri_nodes[:, :3] >= 0).sum(1) == 2)
    keep = two & ~along_edge
    if along_edge.any():
        rows = np.nonzero(along_edge)[0]
        pair = np.sort(tri_nodes[rows, :3], axis=1)[:, -2:]
        third = np.where(tri_nodes[rows, :3] < 0, rw[rows], -1).max(1)
        side = np.sign(f2[third])
        key = pair[:, 0] * (n_zero + 1) + pair[:, 1]
        both = np.zeros(len(rows), bool)
        for sign in (1.0, -1.0):
            other = np.isin(key, key[side == -sign])
            both |= (side == sign) & other
        keep[rows[both]] = True
    links = np.sort(tri_nodes[keep], axis=1)[:, -2:] if keep.any() else np.zeros((0, 2), np.int64)
    return zero, cross_edges, lam_e, tri_nodes, node_pos, links, node_of_vertex, edge_node


def _sign(x: np.ndarray) -> np.ndarray:
    return np.sign(x).astype(np.int64)


@dataclass
class _Plan:
    """The cut on the raw mesh's skin: triangles replacing their `parent` faces, the appended vertices as blends
    of two raw vertices, and the two lip edges."""

    faces: np.ndarray           # (G, 3) the replacing triangles; ids >= n_raw are new vertices
    parent: np.ndarray          # (G,) the face (of the faces given) each came from
    corner_src: np.ndarray      # (G, 3, 2) the parent's corners blended for each corner (texture coordinates)
    corner_lam: np.ndarray      # (G, 3) blend weight of the second one
    new_a: np.ndarray           # (N,) raw vertex
    new_b: np.ndarray           # (N,) raw vertex
    new_lam: np.ndarray         # (N,) position = (1 - lam) a + lam b
    new_lower: np.ndarray       # (N,) bool: a lower lip copy (moved by the rest gap)
    upper_edge: np.ndarray      # (P,) raw / new ids corner to corner
    lower_edge: np.ndarray      # (P,)


def plan_cut(points: np.ndarray, faces: np.ndarray, weld: np.ndarray, line: LipLine, face: np.ndarray
             ) -> _Plan | None:
    """Where to cut a mesh's lips: points (V, 3) in the fitted face's model frame (cm), faces (F, 3) the skin's
    triangles (raw indices), weld (V,) the id of each raw vertex once coincident ones are merged (topology is
    read through it, so a texture seam does not stop the cut), face (S, 3) the fitted ICT skin whose `line` it
    is. None when the lips are already apart (a slit, an open mouth); MouthCutError when no mouth is near the
    fitted one or no clean line joins the corners."""
    n_raw = len(points)
    nw = int(weld.max()) + 1
    rep = np.full(nw, -1, np.int64)
    rep[weld[::-1]] = np.arange(n_raw)[::-1]            # the first raw vertex of each welded one
    wf = weld[faces]
    ok = (wf[:, 0] != wf[:, 1]) & (wf[:, 1] != wf[:, 2]) & (wf[:, 2] != wf[:, 0])
    p = points[np.maximum(rep, 0)]
    used = np.zeros(nw, bool)
    used[wf[ok].ravel()] = True
    t_val = line.along(p)
    curve = line.curve()
    dist, _ = cKDTree(curve).query(p)
    dist[~used] = np.inf
    width = line.width
    centre = curve.mean(0)
    near_mouth = np.nonzero(ok & (np.linalg.norm(p[wf[:, 0]] - centre, axis=1) < 0.6 * width))[0]
    if not len(near_mouth):
        raise MouthCutError("no mouth found: the mesh has no surface where the fitted face's mouth is")
    e = wf[near_mouth][:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    h = float(np.median(np.linalg.norm(p[e[:, 0]] - p[e[:, 1]], axis=1)))
    radius = max(0.06 * width, 2.0 * h)
    # the surface must pass along the fitted lip line over most of the mouth's width
    bins = np.linspace(0.1, 0.9, 17)
    near_line = (dist < radius) & (t_val > 0.1) & (t_val < 0.9)
    surface_share = np.mean(np.histogram(t_val[near_line], bins)[0] > 0)
    if surface_share < MIN_SURFACE_SHARE:
        raise MouthCutError(f"no mouth found: the surface passes near the fitted face's lip line over only "
                            f"{surface_share:.0%} of the mouth's width")
    # the corners: the mesh's vertices nearest the fitted face's mouth corners
    corner_ids = []
    for c in line.corners:
        d = np.where(used, np.linalg.norm(p - c, axis=1), np.inf)
        k = int(np.argmin(d))
        if d[k] > max(0.1 * width, 3.0 * h):
            raise MouthCutError("no mouth found: the mesh has no vertex near a corner of the fitted face's mouth")
        corner_ids.append(k)
    f_val = lip_sides(p, wf[ok], line, face, dist, LOCAL_REACH * width, np.asarray(corner_ids))
    # the surface must join the lips across the line over most of its width, else they are apart already
    tri = np.nonzero(ok)[0]
    in_tube = (dist[wf[tri]] < 2.0 * radius).all(1)
    s = _sign(f_val)[wf[tri]]
    crossing = tri[in_tube & (s.max(1) > 0) & (s.min(1) < 0)]
    closed_share = np.mean(np.histogram(t_val[wf[crossing]].mean(1), bins)[0] > 0)
    if closed_share < MIN_CLOSED_SHARE:
        return None
    region = (dist < 2.0 * radius) & (t_val > -0.2) & (t_val < 1.2)
    region[corner_ids] = True
    rt = np.nonzero(ok & region[wf].all(1))[0]            # faces near the line
    rw = wf[rt]
    edges = np.unique(np.sort(rw[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)
    # snap crossings near an edge's end to that vertex, never making a triangle that lies on the line
    f2 = f_val.copy()
    fa, fb = f2[edges[:, 0]], f2[edges[:, 1]]
    cross = fa * fb < 0
    lam = np.where(cross, fa / np.where(cross, fa - fb, 1.0), 0.5)
    snap = np.zeros(nw, bool)
    snap[edges[cross & (lam < SNAP), 0]] = True
    snap[edges[cross & (lam > 1 - SNAP), 1]] = True
    for _ in range(10):
        flat = (np.where(snap, 0.0, f2)[rw] == 0).all(1)
        if not flat.any():
            break
        for k in np.nonzero(flat)[0]:
            corners = [w for w in rw[k] if snap[w] and w not in corner_ids]
            if corners:
                snap[max(corners, key=lambda w: abs(f2[w]))] = False
    f2 = np.where(snap, 0.0, f2)
    # the line: the piece of the zero level that runs along most of the mouth, from the vertex where it passes
    # nearest one corner to the vertex where it passes nearest the other
    for attempt in range(3):
        zero, cross_edges, lam_e, tri_nodes, node_pos, links, node_of_vertex, edge_node = _line_graph(
            p, rw, edges, f2, region & used, nw)
        n_zero, n_nodes = len(zero), len(node_pos)
        if not len(links):
            raise MouthCutError("could not open the mouth: no lip line joins its corners")
        w = np.linalg.norm(node_pos[links[:, 0]] - node_pos[links[:, 1]], axis=1) + 1e-9
        graph = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([links[:, 0], links[:, 1]]),
                                                        np.concatenate([links[:, 1], links[:, 0]]))),
                              shape=(n_nodes, n_nodes)).tocsr()
        _, component = connected_components(graph, directed=False)
        node_t = line.along(node_pos)
        cover = [np.sum(np.histogram(node_t[component == c], bins)[0] > 0) for c in range(component.max() + 1)]
        best = np.nonzero(component == int(np.argmax(cover)))[0]
        ends, snapped = [], False
        for c in line.corners:
            k = int(best[np.argmin(np.linalg.norm(node_pos[best] - c, axis=1))])
            if np.linalg.norm(node_pos[k] - c) > max(0.15 * width, 3.0 * h):
                raise MouthCutError("could not open the mouth: the lips' contact does not reach a mouth corner")
            if k >= n_zero:                     # end at a vertex: the nearer end of the crossed edge
                a_, b_ = cross_edges[k - n_zero]
                f2[a_ if lam_e[k - n_zero] < 0.5 else b_] = 0.0
                snapped = True
            ends.append(k)
        if not snapped:
            break
    else:
        raise MouthCutError("could not open the mouth: the lip line does not end at the mouth's corners")
    start, goal = ends
    dmat, pred = dijkstra(graph, indices=start, return_predecessors=True)
    if not np.isfinite(dmat[goal]):
        raise MouthCutError("could not open the mouth: no lip line joins its corners")
    path = [goal]
    while path[-1] != start:
        path.append(pred[path[-1]])
    path = np.asarray(path[::-1])
    if len(path) < 3:
        raise MouthCutError("could not open the mouth: the lip line is too short")
    on_path = np.zeros(n_nodes, bool)
    on_path[path[1:-1]] = True                               # the corners stay shared
    # every face touching the path: the region's, and those reaching out of it from a vertex on the line
    path_vertex = np.zeros(nw, bool)
    path_vertex[zero[path[(path < n_zero) & on_path[path]]]] = True
    extra = np.setdiff1d(np.nonzero(ok & path_vertex[wf].any(1))[0], rt)
    if len(extra):
        xw = wf[extra]
        x_nodes = np.full((len(extra), 6), -1, np.int64)
        for k in range(3):
            x_nodes[:, k] = node_of_vertex[xw[:, k]]
            x_nodes[:, 3 + k] = edge_node(xw[:, k], xw[:, (k + 1) % 3])
        rt, rw, tri_nodes = np.concatenate([rt, extra]), np.concatenate([rw, xw]), np.concatenate([tri_nodes, x_nodes])
    # split the faces the path crosses; the others keep their corners, the lower side's taking the lower copies
    new_a, new_b, new_lam, new_lower = [], [], [], []
    new_id: dict = {}

    def new_vertex(key, a, b, lam_ab, lower):
        if key not in new_id:
            new_id[key] = n_raw + len(new_a)
            new_a.append(a)
            new_b.append(b)
            new_lam.append(lam_ab)
            new_lower.append(lower)
        return new_id[key]

    def edge_point(node, ra, rb, lower):
        a, _ = cross_edges[node - n_zero]
        lam_ab = lam_e[node - n_zero] if weld[ra] == a else 1.0 - lam_e[node - n_zero]
        lo, hi = min(ra, rb), max(ra, rb)
        return new_vertex(("e", lo, hi, lower), lo, hi, lam_ab if ra == lo else 1.0 - lam_ab, lower)

    out_faces, out_parent, out_src, out_lam = [], [], [], []
    for k in range(len(rt)):
        nodes = tri_nodes[k]
        vnodes, enodes = nodes[:3], nodes[3:]
        touches = (vnodes >= 0) & on_path[np.maximum(vnodes, 0)]
        crossed = (enodes >= 0) & on_path[np.maximum(enodes, 0)]
        if not touches.any() and not crossed.any():
            continue
        raw_f = faces[rt[k]]
        ws = rw[k]
        sg = _sign(f2[ws])
        if crossed.sum() == 2:              # one corner alone on its side: a triangle and a quad (two triangles)
            a = [c for c in range(3) if crossed[c] and crossed[(c + 2) % 3]][0]
            b, c = (a + 1) % 3, (a + 2) % 3
            pieces = [((("v", a), ("e", a), ("e", c)), sg[a]),
                      ((("e", a), ("v", b), ("v", c)), sg[b]),
                      ((("e", a), ("v", c), ("e", c)), sg[b])]
        elif crossed.sum() == 1:            # the line through a corner and across the opposite edge
            b = int(np.nonzero(crossed)[0][0])
            a, c = (b + 2) % 3, (b + 1) % 3
            if sg[a] != 0:
                raise MouthCutError("could not open the mouth cleanly: the lip line branches")
            pieces = [((("v", a), ("v", b), ("e", b)), sg[b]),
                      ((("v", a), ("e", b), ("v", c)), sg[c])]
        else:                               # touching the line at a corner or along an edge: not split
            nonzero = sg[sg != 0]
            if len(nonzero) and (nonzero == nonzero[0]).all():
                side = nonzero[0]
            else:
                side = _sign(np.array([f_val[ws].mean()]))[0]
            pieces = [((("v", 0), ("v", 1), ("v", 2)), side)]
        for spec, side in pieces:
            lower = bool(side < 0)
            ids, src, lams = [], [], []
            for kind, corner in spec:
                if kind == "v":
                    rv = int(raw_f[corner])
                    node = node_of_vertex[ws[corner]]
                    if lower and node >= 0 and on_path[node]:
                        rv = new_vertex(("v", rv), rv, rv, 0.0, True)
                    ids.append(rv)
                    src.append((corner, corner))
                    lams.append(0.0)
                else:
                    ra, rb = int(raw_f[corner]), int(raw_f[(corner + 1) % 3])
                    vid = edge_point(enodes[corner], ra, rb, lower)
                    j = vid - n_raw
                    ids.append(vid)
                    src.append((corner, (corner + 1) % 3))
                    lams.append(new_lam[j] if new_a[j] == ra else 1.0 - new_lam[j])
            out_faces.append(ids)
            out_parent.append(rt[k])
            out_src.append(src)
            out_lam.append(lams)
    # the two lip edges along the path
    upper, lower = [], []
    for node in path:
        if node < n_zero:
            rv = int(rep[zero[node]])
            upper.append(rv)
            lower.append(new_id.get(("v", rv), rv))
        else:
            a, b = cross_edges[node - n_zero]
            keys = [kk for kk in new_id if kk[0] == "e" and {weld[kk[1]], weld[kk[2]]} == {a, b}]
            up = [new_id[kk] for kk in keys if not kk[3]]
            lo = [new_id[kk] for kk in keys if kk[3]]
            if not up or not lo:
                raise MouthCutError("could not open the mouth cleanly: the lip line leaves the lips")
            upper.append(up[0])
            lower.append(lo[0])
    return _Plan(np.asarray(out_faces, np.int64), np.asarray(out_parent, np.int64),
                 np.asarray(out_src, np.int64), np.asarray(out_lam, np.float64),
                 np.asarray(new_a, np.int64), np.asarray(new_b, np.int64), np.asarray(new_lam, np.float64),
                 np.asarray(new_lower, bool), np.asarray(upper, np.int64), np.asarray(lower, np.int64))


# --------------------------------------------------------------------------------------------- the user's mesh

def _mouth_interior(model_points: np.ndarray, loop_ids: np.ndarray, along: np.ndarray, upper: np.ndarray,
                    width: float, first_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bag behind the open lips (`loop_fill`), model frame: loop_ids (L,) the lip loop as the mesh's boundary
    runs, their points (L, 3), positions along the mouth (L,) and upper-lip flags (L,). Returns new points
    (N, 3), faces (G, 3) over loop ids and first_index + new, and the interpolation weights (N, L + 1)."""
    n = len(loop_ids)
    up = np.where(upper, 1.0, -1.0) * np.sin(np.pi * np.clip(along, 0.0, 1.0))
    spread = np.outer(up, [0.0, 0.5 * INTERIOR_CAVITY * width, 0.0])
    pts, faces, weights = loop_fill(model_points, np.arange(n), n, rings=INTERIOR_RINGS,
                                    offset=np.array([0.0, 0.0, -INTERIOR_DEPTH * width]), close=True, spread=spread)
    ids = np.concatenate([loop_ids, first_index + np.arange(len(pts))])
    faces = np.where(faces < n, ids[np.minimum(faces, n - 1)], first_index + faces - n)
    return pts, faces, weights


def _check_closed(faces: np.ndarray, loop: np.ndarray) -> None:
    """Every edge of the lip loop is held by exactly one lip face and one interior face, wound oppositely (the cut
    is clean and the interior closes it); MouthCutError otherwise."""
    n = int(faces.max()) + 1
    half = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    keys, counts = np.unique(half[:, 0] * n + half[:, 1], return_counts=True)
    a, b = loop, np.roll(loop, -1)

    def count(x, y):
        k = x * n + y
        i = np.minimum(np.searchsorted(keys, k), len(keys) - 1)
        return np.where(keys[i] == k, counts[i], 0)

    if not ((count(a, b) == 1) & (count(b, a) == 1)).all():
        raise MouthCutError("could not open the mouth cleanly: the cut along the lips is not a clean edge")


def open_mouth(raw: RawMesh, clean: CleanMesh, alignment: Alignment, fit=None) -> tuple[RawMesh, MouthCut | None]:
    """The user's mesh with its mouth opened (see the module's notes), and what was done; (raw, None) when the
    lips are already apart (a slit or an open mouth: nothing to cut). `clean` and `alignment` are the mesh's
    cleaning and head alignment (`nfs.mesh.clean.clean_mesh`, `nfs.mesh.head.find_head`); `fit` the ICT face
    fitted to its skin (`nfs.prior.face_fit.fit_ict_face` of the skin in the ICT frame) when it is known.
    Raises MouthCutError when no mouth is found or the lip line cannot be cut cleanly."""
    from nfs.prior.face_fit import fit_ict_face

    fit = fit if fit is not None else fit_ict_face(alignment.apply(clean.skin_points))
    face = fit.face()
    line = lip_line(face)
    n_raw = raw.n_vertices
    skin_clean = np.zeros(len(clean.vertices), bool)
    skin_clean[clean.skin_vertices] = True
    to_clean = np.asarray(clean.to_clean, np.int64)
    on_skin = (to_clean >= 0) & skin_clean[np.maximum(to_clean, 0)]
    skin_face_ids = np.nonzero(on_skin[raw.faces].all(1))[0]
    if not len(skin_face_ids):
        raise MouthCutError("no mouth found: the mesh has no skin")
    weld = np.where(to_clean >= 0, to_clean, len(clean.vertices) + np.arange(n_raw))
    model = fit.to_model(alignment.apply(raw.vertices))
    plan = plan_cut(model, raw.faces[skin_face_ids], weld, line, face)
    if plan is None:
        return raw, None
    parent = skin_face_ids[plan.parent]
    # the appended vertices: the lower lip's copies and the line's points, then the mouth interior
    user = np.asarray(raw.vertices, np.float64)
    new_v = (1 - plan.new_lam)[:, None] * user[plan.new_a] + plan.new_lam[:, None] * user[plan.new_b]
    down = alignment.inverse_vectors(fit.vectors_from_model(np.array([0.0, -1.0, 0.0])))
    diagonal = float(np.linalg.norm(np.ptp(user, axis=0)))
    new_v[plan.new_lower] += REST_GAP * diagonal * down / np.linalg.norm(down)
    n_line = len(new_v)
    # each cut face replaced in place by its first piece (a multi-part file's face ranges stay valid), the other
    # pieces appended
    faces = np.array(raw.faces, np.int64, copy=True)
    is_first = np.zeros(len(plan.faces), bool)
    is_first[np.unique(plan.parent, return_index=True)[1]] = True
    faces[parent[is_first]] = plan.faces[is_first]
    rest = np.nonzero(~is_first)[0]
    # the lip loop, ordered as the mesh's boundary runs (the upper lip's faces hold the edge upper[0] -> upper[1])
    upper, lower = plan.upper_edge, plan.lower_edge
    loop = np.concatenate([upper, lower[-2:0:-1]])
    pieces = plan.faces
    if not ((pieces == upper[0]) & (np.roll(pieces, -1, axis=1) == upper[1])).any():
        loop = loop[::-1]
    all_model = np.concatenate([model, fit.to_model(alignment.apply(new_v))])
    first_index = n_raw + n_line
    bag_model, bag_faces, bag_w = _mouth_interior(all_model[loop], loop, line.along(all_model[loop]),
                                                  np.isin(loop, upper[1:-1]), line.width, first_index)
    bag_user = alignment.inverse((bag_model - fit.translation) @ fit.rotation / fit.scale)
    vertices = np.concatenate([user, new_v, bag_user]).astype(raw.vertices.dtype)
    faces = np.concatenate([faces, pieces[rest], bag_faces])
    _check_closed(faces, loop)
    # polygons, texture coordinates and parts follow
    polygon = np.asarray(raw.face_polygon, np.int64)
    polygon = np.concatenate([polygon, polygon[parent[rest]],
                              (polygon.max(initial=-1) + 1) + np.arange(len(bag_faces))])
    uv = corner_uv = None
    if raw.uv is not None:
        line_uv = (1 - plan.new_lam)[:, None] * raw.uv[plan.new_a] + plan.new_lam[:, None] * raw.uv[plan.new_b]
        both = np.concatenate([raw.uv, line_uv])
        stacked = np.concatenate([both[loop], both[loop].mean(0, keepdims=True)])
        uv = np.concatenate([both, bag_w @ stacked]).astype(raw.uv.dtype)
    if raw.corner_uv is not None:
        cu = np.asarray(raw.corner_uv)
        parent_uv = cu[parent]                                               # (G, 3 corners, 2)
        g = np.arange(len(plan.faces))[:, None]
        piece_uv = ((1 - plan.corner_lam)[..., None] * parent_uv[g, plan.corner_src[..., 0]]
                    + plan.corner_lam[..., None] * parent_uv[g, plan.corner_src[..., 1]])
        corner_uv = np.array(cu, copy=True)
        corner_uv[parent[is_first]] = piece_uv[is_first]
        # the interior's corners: the lip loop's texture coordinates (their mean over the faces meeting each),
        # blended inward as the interior's points are
        vertex_uv = np.zeros((len(vertices), 2))
        hits = np.zeros(len(vertices))
        lip_faces = np.concatenate([faces[:len(raw.faces)], pieces[rest]])
        lip_uv = np.concatenate([corner_uv, piece_uv[rest]])
        np.add.at(vertex_uv, lip_faces.ravel(), lip_uv.reshape(-1, 2))
        np.add.at(hits, lip_faces.ravel(), 1.0)
        vertex_uv /= np.maximum(hits, 1.0)[:, None]
        stacked = np.concatenate([vertex_uv[loop], vertex_uv[loop].mean(0, keepdims=True)])
        vertex_uv[first_index:] = bag_w @ stacked
        corner_uv = np.concatenate([corner_uv, piece_uv[rest], vertex_uv[bag_faces]]).astype(cu.dtype)
    parts = raw.parts
    if len(parts) == 1:
        parts = [dataclasses.replace(parts[0], vertex_count=len(vertices), face_count=len(faces))]
    cut = MouthCut(n_raw, upper, lower, loop, first_index + np.arange(len(bag_model)), bag_w, line.width)
    out = dataclasses.replace(raw, vertices=vertices, faces=faces, face_polygon=polygon, uv=uv,
                              corner_uv=corner_uv, parts=parts, notes=list(raw.notes) + [cut.note(len(vertices))])
    return out, cut


# --------------------------------------------------------------------------------------------- the prior


def open_mouth_prior(vertices_ict: np.ndarray, faces: np.ndarray, cut: MouthCut, with_frame_guard: bool = False):
    """The template prior (`nfs.prior.template_expression_basis`, (53, V, 3) cm) of a skin whose mouth was
    opened (`cut` in the skin's numbering): the prior of the skin without its mouth interior, where the lip
    opening is a slit whose edges follow their own lips, and the interior carried from the lip loop as it was
    built (its blend weights), so it hangs from both lips and opens with them. The lip edges and the rings
    around them are filled from their own lip (`_follow_own_lip`) and a lone vertex that took the other lip's
    motion takes its neighbours' (`_mend_strays`). With `with_frame_guard`, returns (basis, the skin's
    `FrameGuard` or None): the guard of the skin without its interior, extended to it (a fold touching the
    interior is never the source's own); faithful (only unfolding) unless vertices beyond the lips' contact
    band (CONTACT_BAND_WIDTHS of the mouth's width about the lip line: lips pressed together lie off the fitted
    face's parted ones, as they did before the cut) are off the fitted face (`needs_guard_off`)."""
    from nfs.geometry.openings import carry_into_fill
    from nfs.prior import template_expression_basis

    n = len(vertices_ict)
    inside = np.zeros(n, bool)
    inside[cut.interior] = True
    outside = np.nonzero(~inside)[0]
    remap = np.full(n, -1, np.int64)
    remap[outside] = np.arange(len(outside))
    kept = faces[~inside[faces].any(1)]
    # the fold guard would mend the lip edges' strays before `_follow_own_lip` does, from the other lip too
    sub = template_expression_basis(vertices_ict[outside], faces=remap[kept], fold_guard=False,
                                    with_frame_guard=with_frame_guard)
    sub, guard = sub if with_frame_guard else (sub, None)
    basis = np.zeros((len(sub), n, 3), np.float32)
    basis[:, outside] = sub
    del sub
    _follow_own_lip(basis, vertices_ict, kept, cut)
    _mend_strays(basis, kept)
    basis[:, cut.interior] = carry_into_fill(basis, cut.loop, cut.interior_weights)
    if not with_frame_guard:
        return basis
    if guard is not None:
        from nfs.prior.fold_guard import needs_guard_off
        line = vertices_ict[np.concatenate([cut.upper_edge, cut.lower_edge])]
        near, _ = cKDTree(line).query(vertices_ict[outside], distance_upper_bound=CONTACT_BAND_WIDTHS * cut.width_cm)
        faithful = not needs_guard_off(guard.off_surface, held=np.isfinite(near))
        guard = guard.extended(vertices_ict, faces, ~inside, faithful=faithful)
    return basis, guard


def _follow_own_lip(basis: np.ndarray, vertices: np.ndarray, faces: np.ndarray, cut: MouthCut,
                    rings: int = 2) -> None:
    """Closest points alone put lip edge points near a corner (where the fitted face's lips meet) on either lip,
    and step from point to point where the line crosses the mesh's triangles: in place, the lip edges and
    `rings` rings of vertices around them take the harmonic fill (cotangent Laplacian of the rest shape
    `vertices` (V, 3), faces (F, 3) without the mouth interior) of the deltas around them; the cut is a free
    boundary of the fill, so each edge follows its own lip."""
    import robust_laplacian

    from nfs.geometry.openings import sparse_adjacency

    n = basis.shape[1]
    adjacency = sparse_adjacency(faces, n)
    free = np.zeros(n, bool)
    free[cut.upper_edge] = free[cut.lower_edge] = True
    for _ in range(rings):
        free |= (adjacency @ free.astype(np.float64)) > 0
    free[cut.interior] = False
    used = np.zeros(n, bool)
    used[faces.ravel()] = True
    held = used & ~free
    laplacian, _ = robust_laplacian.mesh_laplacian(np.asarray(vertices, np.float64), np.asarray(faces, np.int64))
    laplacian = laplacian.tocsr()
    f_idx, h_idx = np.nonzero(free)[0], np.nonzero(held)[0]
    l_ff = laplacian[f_idx][:, f_idx].tocsc() + 1e-9 * sp.eye(len(f_idx), format="csc")
    l_fh = laplacian[f_idx][:, h_idx].tocsc()
    cols = np.nonzero(np.diff(l_fh.indptr))[0]
    around = basis[:, h_idx[cols]].transpose(1, 0, 2).reshape(len(cols), -1).astype(np.float64)
    solved = spla.splu(l_ff).solve(-(l_fh[:, cols] @ around))
    basis[:, f_idx] = solved.reshape(len(f_idx), len(basis), 3).transpose(1, 0, 2).astype(basis.dtype)


def _mend_strays(basis: np.ndarray, faces: np.ndarray, ratio: float = 4.0, floor_cm: float = 0.5) -> None:
    """Near the lips' contact closest points can put a lone vertex on the other lip (a spike when the jaw opens):
    in place, a vertex whose deltas (53, V, 3) stand far from its neighbours' mean (over faces (F, 3)) while they
    agree (more than `ratio` times their own spread about that mean, and more than `floor_cm` over the 53
    shapes) takes their mean."""
    from nfs.geometry.openings import sparse_adjacency

    adjacency = sparse_adjacency(faces, basis.shape[1]).tocsr()
    degree = np.maximum(np.asarray(adjacency.sum(1)).ravel(), 1.0)
    mean = np.stack([adjacency @ b for b in basis]) / degree[None, :, None]
    deviation = np.linalg.norm(basis - mean, axis=(0, 2))
    rows, cols = adjacency.nonzero()
    spread = np.bincount(rows, weights=np.linalg.norm(basis[:, cols] - mean[:, rows], axis=(0, 2)),
                         minlength=basis.shape[1]) / degree
    stray = (deviation > ratio * spread) & (deviation > floor_cm)
    basis[:, stray] = mean[:, stray].astype(basis.dtype)


def open_target_mouth(raw: RawMesh, clean: CleanMesh, alignment: Alignment
                      ) -> tuple[RawMesh, CleanMesh, MouthCut | None]:
    """`open_mouth` for target preparation: the cut mesh, cleaned and with its head split as `clean` was
    (`nfs.mesh.head.split_head` under `alignment`), and the cut; lips already apart leave the mesh as it is,
    with a note saying so."""
    from nfs.mesh.clean import clean_mesh
    from nfs.mesh.head import split_head

    cut_raw, cut = open_mouth(raw, clean, alignment)
    if cut is None:
        note = "mouth left as it is: the lips are already apart (a slit or an open mouth), nothing to open"
        return dataclasses.replace(raw, notes=list(raw.notes) + [note]), clean, None
    cut_clean = split_head(clean_mesh(cut_raw.vertices, cut_raw.faces), alignment)
    return cut_raw, cut_clean, cut
