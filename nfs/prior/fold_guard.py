"""Fold guards for the template prior: no expression shape (`guard_folds`, when the basis is built) and no decoded
frame's mix of shapes (`FrameGuard`, per frame) may turn a triangle of the target over where the ICT face it was
carried from keeps its surface facing.

Closest-point transfer carries ICT-sized deltas; on a head shaped unlike ICT (a small nose, a narrow mouth, lips
modelled closed) neighbouring vertices receive deltas from points of the face that move apart, and a triangle of
the target turns over at weight 1 where no triangle of the source does. For each shape, such triangles' vertices
(and a ring around them) get the harmonic interpolation (cotangent Laplacian of the target's rest shape) of the
deltas around them, blended with as much of their own deltas as leaves nothing turned, grown ring by ring where
triangles are still turned. What no fill mends is, as a last resort, scaled down smoothly about it (as little as
leaves nothing turned there: a slightly smaller motion rather than a fold). Shapes that each keep their triangles
facing can still fold one together; the frame guard mends those per frame the same way, then unfolds what is left
by the least change around it (`nfs.prior.unfold`). The fills run on heads with a notable share of vertices off
the fitted face (GUARDED_SHARE, `needs_guard`): where the fitted ICT face matches the head (an ICT head, a remesh,
a crop, lips or lids modelled closed) the transfer is the source's own deformation, the basis is left bit for bit
and a frame is only unfolded where it turns a triangle the source's own deformation does not (on a head it matches
only loosely, `smooth_offset`, where ICT's mean face does not turn it clearly too).
"""
from __future__ import annotations

import copy
import threading
from collections import OrderedDict

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from nfs.geometry.openings import sparse_adjacency
from nfs.geometry.operators import laplacian_and_mass
from nfs.geometry.triangle_math import corner_rows, cross_rows, dot_rows, gathered_normals, unit_normals
from nfs.prior.unfold import unfold

TURNED_COS = 0.0           # a triangle whose normal has turned past 90 degrees from its rest normal is turned over
KEEP_SHARES = (0.75, 0.5, 0.25, 0.0)   # shares of a shape's own deltas tried in a fill, largest first
SOURCE_FACING_COS = float(np.cos(np.radians(75.0)))   # the source keeps its surface facing: within 75 degrees
HOST_BARY = 1e-4           # a closest point lies on a source triangle's corner where its weight is above this
SOURCE_COLLAPSED = 0.1     # ... and above this fraction of its rest area (a collapsed triangle has no direction)
FILL_RINGS = 1             # rings grown around a turned triangle's corners before the first fill
MAX_ROUNDS = 4             # fills per shape, each grown wider around the triangles still turned (a fold no
#                            fill within a few rings mends is the shape's own, not a local one: it is left)
LAPLACIAN_MARGIN = 3       # rings of the mesh kept around the free vertices for their Laplacian rows
ON_SURFACE_CM = 0.1        # a target vertex this near its closest point on the fitted face is on it
IMAGE_ON_FACE_CM = 0.025   # a guarded head's fold can be the source's own only where its triangle is this near the
#                            fitted face (the feature-scaled head's mouth corner, 0.26-0.42 mm off, folded with its
#                            image where its truth did not)
GUARDED_SHARE = 0.02       # the guard runs on heads with more than this share of vertices off the fitted face
LOOSE_FIT_CM = 0.0015      # a head the fitted face matches, but off it by a smooth offset whose median is above this,
#                            is matched only loosely (a warped ICT head: 24 um; an ICT head, a remesh or a crop of
#                            one: 0.8-2.8 um; a copy rounded or jittered by tens of um 5-8: its offset is noise)
OFFSET_SMOOTHING = 10      # neighbour averagings of the signed offset that take its noise out
MEAN_FOLD_COS = -0.1       # ... and a fold there is the source's own only where ICT's mean face turns its image too,
#                            clearly: past 96 degrees, no tie (at 90 with ties, as the fitted face's image is judged,
#                            the Wendland warp kept 2 of its 16 turned triangles; at 90 without, 1)
RIM_RINGS = 2              # rings around the pinned rims (the eyes') that keep their own deltas too in the shapes
#                            that close the lids
OTHER_RIM_RINGS = 0        # ... and in the other shapes
REFERENCE_RINGS = 3        # rings of deltas a triangle off the fitted face is judged by
ATTENUATE_FALLOFF = (2.0, 4.0, 8.0)   # radii (in the largest delta's lengths) over which a last-resort
#                                  attenuation eases out, widest tried last
ATTENUATE_RADIUS_CM = 1.0  # ... and at most this far (wider took the anime mouth's opening and doubled a
#                            feature-scaled head's inner-face error)
ATTENUATE_MAX_SHARE = 0.5  # an attenuation may take at most this share of the shape's motion
ATTENUATE_STEPS = 7        # bisection steps for the attenuation's strength (1/128 of the shape's deltas)


def _normals_rows(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(3, F) un-normalised normals of faces (F, 3) on points (V, 3)."""
    a, b, c = corner_rows(points, faces)
    return cross_rows(b - a, c - a)


def mesh_tables(faces: np.ndarray, n_vertices: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """What the guards walk the mesh with: the (V, V) vertex adjacency with the diagonal, and the (V, F) table of
    the triangles around each vertex."""
    adjacency = (sparse_adjacency(faces, n_vertices) + sp.eye(n_vertices, format="csr")).tocsr()
    incident = sp.csr_matrix((np.ones(faces.size, bool), (faces.ravel(), np.repeat(np.arange(len(faces)), 3))),
                             shape=(n_vertices, len(faces)))
    return adjacency, incident


def _row_columns(matrix: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """The column indices of the stored entries in rows (n,) of a CSR matrix, concatenated (no sparse slicing:
    the guards ask for a few rows thousands of times)."""
    starts, ends = matrix.indptr[rows], matrix.indptr[np.asarray(rows) + 1]
    lengths = ends - starts
    at = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
    return matrix.indices[at]


def turned_triangles(vertices: np.ndarray, faces: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(K, F) bool: triangle f of faces (F, 3) points against its rest normal on vertices (V, 3) moved by shape
    k of basis (K, V, 3) at weight 1."""
    vertices = np.asarray(vertices, np.float32)         # a sign test: single precision is plenty
    rest = _normals_rows(vertices, faces)
    rest /= np.maximum(np.sqrt(dot_rows(rest, rest)), 1e-30)
    out = np.zeros((len(basis), len(faces)), bool)
    for k in range(len(basis)):
        moved = _normals_rows(vertices + np.asarray(basis[k], np.float32), faces)
        out[k] = dot_rows(moved, rest) < TURNED_COS * np.sqrt(dot_rows(moved, moved))
    return out


class SourceImage:
    """Each target vertex's closest point on the source face (S, 3) (tri (V,) into triangles (T, 3), bary (V, 3))
    and the source's deltas (K, S, 3) there, each shape scaled by shape_scale (K,) as the target's basis is (the
    blink shapes of eyes modelled wider open than ICT's): the image of a target triangle on the source, and how
    the source's own deformation moves it."""

    def __init__(self, face: np.ndarray, triangles: np.ndarray, deltas: np.ndarray, tri: np.ndarray,
                 bary: np.ndarray, shape_scale: np.ndarray | None = None):
        self.face = np.asarray(face, np.float64)
        self.triangles = np.asarray(triangles, np.int64)
        self._incident = None                                      # (S, T) built when first needed
        self.corners = self.triangles[tri]                         # (V, 3)
        self.bary = np.asarray(bary, np.float64)
        self.deltas = deltas
        self.scale = np.ones(len(deltas)) if shape_scale is None else np.asarray(shape_scale, np.float64)
        self.rest = np.einsum("vjc,vj->vc", self.face[self.corners], self.bary)

    def _weights(self, k) -> tuple[np.ndarray, np.ndarray]:
        """The shapes (n,) a shape index or a mix of weights (K,) uses, and their scaled weights (n,)."""
        if np.ndim(k) == 0:
            return np.array([int(k)]), self.scale[[int(k)]]
        w = np.asarray(k, np.float64)
        used = np.nonzero(w)[0]
        return used, w[used] * self.scale[used]

    def _mixed(self, k, points: np.ndarray) -> np.ndarray:
        """(n, 3) the source's deltas at its own points (n,) under shape k (an index) or the mix of weights k."""
        used, w = self._weights(k)
        return np.tensordot(w, self.deltas[used[:, None], points[None]].astype(np.float64), axes=1)

    def at(self, k, verts: np.ndarray) -> np.ndarray:
        """(n, 3) the closest points of target vertices verts (n,) moved by shape k at weight 1 (k an index), or
        by the mix of shapes with weights k (K,)."""
        moved = self._mixed(k, self.corners[verts].ravel()).reshape(len(verts), 3, 3)
        return self.rest[verts] + np.einsum("vjc,vj->vc", moved, self.bary[verts])

    def image_facing(self, k, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For the images of target triangles faces (n, 3) under shape k (an index, or weights (K,) of a mix): the
        cosine (n,) of each one's normal with its rest normal, whether it collapsed below SOURCE_COLLAPSED of its
        rest area (n,), and the target vertices (m,) with each triangle's corners among them (n, 3)."""
        verts, local = np.unique(faces, return_inverse=True)
        local = local.reshape(-1, 3)
        rest = _normals_rows(self.rest[verts], local)
        moved = _normals_rows(self.at(k, verts), local)
        rest_len, moved_len = np.sqrt(dot_rows(rest, rest)), np.sqrt(dot_rows(moved, moved))
        cos = dot_rows(moved, rest) / np.maximum(moved_len * rest_len, 1e-30)
        return cos, moved_len <= SOURCE_COLLAPSED * rest_len, verts, local

    def keeps_facing(self, k, faces: np.ndarray, facing_cos: float = SOURCE_FACING_COS) -> np.ndarray:
        """(n,) bool: the images of target triangles faces (n, 3) stay within 75 degrees (acos facing_cos) of their
        rest normal and above SOURCE_COLLAPSED of their rest area under shape k (an index, or weights (K,) of a
        mix)."""
        cos, collapsed = self.image_facing(k, faces)[:2]
        return (cos > facing_cos) & ~collapsed

    def turns_host(self, k, verts: np.ndarray) -> np.ndarray:
        """(n,) bool: a source triangle that the closest point of each target vertex verts (n,) lies on (its host,
        or every triangle around the source vertex or edge the point sits on) is turned over by shape k (an index,
        or weights (K,) of a mix)."""
        if self._incident is None:
            self._incident = mesh_tables(self.triangles, len(self.face))[1]
        corners, bary = self.corners[verts], self.bary[verts]
        on = bary > HOST_BARY                                            # (n, 3) the corners the point lies on
        first = corners[np.arange(len(verts)), on.argmax(1)]
        lengths = np.diff(self._incident.indptr)[first]
        owner = np.repeat(np.arange(len(verts)), lengths)
        cand = _row_columns(self._incident, first)                       # triangles around each first corner
        tv = self.triangles[cand]                                        # (k, 3)
        holds = np.ones(len(cand), bool)
        for j in range(3):               # a candidate must hold every corner the point lies on
            need = on[owner, j]
            holds &= ~need | (tv == corners[owner, j][:, None]).any(1)
        cand, owner = cand[holds], owner[holds]
        tris, inverse = np.unique(cand, return_inverse=True)
        pts, local = np.unique(self.triangles[tris], return_inverse=True)
        rest = self.face[pts]
        moved = rest + self._mixed(k, pts)
        local = local.reshape(-1, 3)
        n_rest, n_moved = _normals_rows(rest, local), _normals_rows(moved, local)
        turned = dot_rows(n_rest, n_moved) < 0
        out = np.zeros(len(verts), bool)
        out[owner[turned[inverse.ravel()]]] = True
        return out

    def explains(self, k, faces: np.ndarray, facing_cos: float) -> np.ndarray:
        """(n,) bool: shape k (an index, or weights (K,) of a mix) folds the source where target triangles faces
        (n, 3) lie: their image collapses, or turns past acos(facing_cos) where one of the source's own triangles
        under it turns over too (an image spanning a crease of the source, a sliver there, can turn where no
        triangle of the source does)."""
        cos, collapsed, verts, local = self.image_facing(k, faces)
        turned = cos <= facing_cos
        if turned.any():
            asked = np.unique(local[turned])                  # only the corners of turned images
            host = np.zeros(len(verts), bool)
            host[asked] = self.turns_host(k, verts[asked])
            turned[turned] = host[local[turned]].any(1)
        return collapsed | turned


def _grow(adjacency: sp.csr_matrix, mask: np.ndarray, rings: int = 1) -> np.ndarray:
    """(V,) bool mask grown by `rings` rings of the mesh whose (V, V) vertex adjacency (with the diagonal) is
    given."""
    out = np.array(mask, bool, copy=True)
    for _ in range(rings):
        out[_row_columns(adjacency, np.nonzero(out)[0])] = True
    return out


class _LocalLaplacian:
    """The cotangent Laplacian of the target's rest shape on the part of the mesh around a region, rebuilt wider
    when a fill reaches beyond it."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, adjacency: sp.csr_matrix):
        self.vertices, self.faces, self.adjacency = vertices, faces, adjacency
        self.inner = np.zeros(len(vertices), bool)

    def rows(self, free: np.ndarray) -> tuple[np.ndarray, sp.csr_matrix]:
        """(the mesh vertices the Laplacian is built on (n,), its (n, n) rows) covering free (V,) bool."""
        if (free & ~self.inner).any():
            self._build(free | self.inner)
        return self.used, self.laplacian

    def _build(self, region: np.ndarray):
        near = _grow(self.adjacency, region, LAPLACIAN_MARGIN + 2)
        part = self.faces[near[self.faces].any(1)]
        self.used, local = np.unique(part, return_inverse=True)
        self.laplacian = laplacian_and_mass(self.vertices[self.used], local.reshape(-1, 3))[0]
        self.inner = _grow(self.adjacency, region, 2)


def _harmonic_solver(free: np.ndarray, lap: _LocalLaplacian) -> tuple:
    """What the harmonic interpolation on the free vertices (V,) bool needs: (their indices (n,), the LU of their
    Laplacian block, its (n, m) coupling to the m held vertices around them, those vertices' indices (m,))."""
    used, laplacian = lap.rows(free)
    local_free = free[used]
    f_loc, h_loc = np.nonzero(local_free)[0], np.nonzero(~local_free)[0]
    rows = laplacian[f_loc]
    l_ff = rows[:, f_loc].tocsc() + 1e-9 * sp.eye(len(f_loc), format="csc")
    l_fh = rows[:, h_loc].tocsc()
    cols = np.nonzero(np.diff(l_fh.indptr))[0]
    return used[f_loc], spla.splu(l_ff), l_fh[:, cols].tocsr(), used[h_loc[cols]]


def _harmonic_values(values: np.ndarray, free: np.ndarray, lap: _LocalLaplacian, solver: tuple | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The harmonic interpolation of values (V, 3) on the free vertices (V,) bool from the rest: (their indices
    (n,), their values (n, 3)); `solver`: `_harmonic_solver(free, lap)` when already at hand."""
    at, lu, coupling, held = solver if solver is not None else _harmonic_solver(free, lap)
    return at, lu.solve(-(coupling @ values[held].astype(np.float64)))


def _keeps_facing(rest: np.ndarray, moved: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(n,) bool: triangles faces (n, 3) of positions moved (V, 3) stay within 75 degrees of their normal on rest
    (V, 3) and above SOURCE_COLLAPSED of their rest area."""
    r, m = gathered_normals(rest, faces), gathered_normals(moved, faces)
    r_len, m_len = np.linalg.norm(r, axis=1), np.linalg.norm(m, axis=1)
    cos = (m * r).sum(1) / np.maximum(m_len * r_len, 1e-30)
    return (cos > SOURCE_FACING_COS) & (m_len > SOURCE_COLLAPSED * r_len)


def _turned(rest: np.ndarray, moved: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(n,) bool: triangles faces (n, 3) of positions moved (V, 3) point against their normal on rest (V, 3)
    (turned more than acos(TURNED_COS))."""
    r, m = gathered_normals(rest, faces), gathered_normals(moved, faces)
    return (m * r).sum(1) < TURNED_COS * np.linalg.norm(m, axis=1) * np.linalg.norm(r, axis=1)


def needs_guard(surface_distance: np.ndarray, held: np.ndarray | None = None) -> bool:
    """Whether a head is guarded: more than GUARDED_SHARE of its vertices (V,) are farther than ON_SURFACE_CM
    (surface_distance (V,) cm) from the fitted face, not counting `held` (V,) bool vertices (geometry spanning a
    joined opening). Elsewhere the transfer is the source's own deformation and is left bit for bit."""
    return needs_guard_off(np.asarray(surface_distance) > ON_SURFACE_CM, held)


def smooth_offset(adjacency: sp.csr_matrix, signed: np.ndarray, off_surface: np.ndarray) -> float:
    """The median size (cm) of the smooth part of a head's signed offset from the fitted face: signed (V,) cm along
    the face's normal at each vertex averaged with its neighbours (adjacency (V, V) with the diagonal, as
    `mesh_tables` gives it) OFFSET_SMOOTHING times (a jittered or rounded copy's offsets cancel, a warp's stay);
    off_surface (V,) bool vertices are left out."""
    s = np.where(off_surface, 0.0, np.asarray(signed, np.float64))
    counts = np.asarray(adjacency @ (~off_surface).astype(np.float64)).ravel()
    for _ in range(OFFSET_SMOOTHING):
        s = np.where(off_surface, 0.0, (adjacency @ s) / np.maximum(counts, 1.0))
    on = ~np.asarray(off_surface, bool)
    return float(np.median(np.abs(s[on]))) if on.any() else 0.0


def needs_guard_off(off_surface: np.ndarray, held: np.ndarray | None = None) -> bool:
    """`needs_guard` of a head whose vertices off the fitted face (V,) bool are known (a guard's `off_surface`)."""
    off = np.asarray(off_surface, bool)
    if held is not None:
        off = off & ~np.asarray(held, bool)
    return bool(off.mean() > GUARDED_SHARE) if len(off) else False


def guard_folds(basis: np.ndarray, vertices: np.ndarray, faces: np.ndarray, source_face: np.ndarray,
                source_triangles: np.ndarray, source_deltas: np.ndarray, tri: np.ndarray, bary: np.ndarray,
                surface_distance: np.ndarray, held: np.ndarray | None = None,
                pinned: np.ndarray | None = None, lid_shapes: tuple = (),
                shape_scale: np.ndarray | None = None,
                tables: tuple[sp.csr_matrix, sp.csr_matrix] | None = None) -> np.ndarray:
    """The template basis (K, V, 3) float32 on the target (vertices (V, 3), faces (F, 3)) with no shape turning a
    triangle over at weight 1 where the source does not turn its surface: the source is the fitted ICT face
    source_face (S, 3) with triangles source_triangles and deltas source_deltas (K, S, 3), and each target vertex's
    closest point on it is (tri (V,), bary (V, 3)), surface_distance (V,) cm away. Runs where more than
    GUARDED_SHARE of the vertices are off the fitted face (farther than ON_SURFACE_CM). A triangle on the fitted
    face is turned by the source where its image there is (`SourceImage`); one off it (a feature far smaller or
    flatter than ICT's) where the harmonic interpolation of the deltas around it (REFERENCE_RINGS rings) turns it
    too. Triangles touching `held` (V,) bool vertices (geometry spanning a joined
    opening, which hangs from its rim by design) are left as they are; `pinned` (V,) bool vertices (the rims of the
    eyes) keep their deltas, and in the shapes lid_shapes (indices into basis: those that close the lids) RIM_RINGS
    rings around them too; shape_scale (K,): how the basis scales each source shape (`SourceImage`). What no fill
    mends is attenuated locally (`_attenuate_groups`); tables: the mesh's `mesh_tables` when already built.
    Returns basis itself, modified in place where anything was turned over."""
    if not needs_guard(surface_distance, held):
        return basis
    off_surface = np.asarray(surface_distance) > ON_SURFACE_CM
    held = np.zeros(len(off_surface), bool) if held is None else np.asarray(held, bool)
    v = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    turned = turned_triangles(v, faces, basis)
    if held.any():
        turned &= ~held[faces].any(1)[None]
    shapes = np.nonzero(turned.any(1))[0]
    if not len(shapes):
        return basis
    image = SourceImage(source_face, source_triangles, source_deltas, tri, bary, shape_scale)
    adjacency, incident = mesh_tables(faces, len(v)) if tables is None else tables
    # the rims of the head's eyes and RIM_RINGS rings around them keep their own deltas in the shapes that close
    # the lids (lid_shapes): a lid's front edge, a ring or two off ICT's rim, carries how far it closes (filled, an
    # anime head's lids stopped 1.9 mm short of closing); the other shapes keep the rims' deltas only
    pinned = np.zeros(len(v), bool) if pinned is None else np.asarray(pinned, bool)
    movable_lids = ~held & ~_grow(adjacency, pinned, RIM_RINGS) if pinned.any() else ~held
    movable_rest = ~held & ~_grow(adjacency, pinned, OTHER_RIM_RINGS) if pinned.any() else ~held
    lap = _LocalLaplacian(v, faces, adjacency)
    corners = np.zeros(len(v), bool)
    corners[faces[turned.any(0)].ravel()] = True
    # one Laplacian around every turned triangle, as far as the fills and references reach
    lap.rows(_grow(adjacency, corners, FILL_RINGS + MAX_ROUNDS * (MAX_ROUNDS + 1) // 2) & movable_rest)

    candidates = {k: np.nonzero(turned[k])[0] for k in shapes}     # where the last resort looks
    for k in shapes:
        movable = movable_lids if k in lid_shapes else movable_rest
        values = basis[k].astype(np.float64)
        idx = np.nonzero(turned[k])[0]
        # the deltas around the turned triangles off the fitted face, interpolated (the reference they are judged by)
        off = off_surface[faces[idx]].any(1)
        reference = v + values              # positions under the interpolated deltas
        if off.any():
            around = np.zeros(len(v), bool)
            around[faces[idx[off]].ravel()] = True
            at, solved = _harmonic_values(values, _grow(adjacency, around, REFERENCE_RINGS) & movable, lap)
            reference[at] = v[at] + solved

        def unexplained(tris: np.ndarray) -> np.ndarray:
            """The turned triangles tris (n,) under shape k that neither the source nor the deltas around them
            turn."""
            tris = tris[~held[faces[tris]].any(1)]
            on = ~off_surface[faces[tris]].any(1)
            out = np.zeros(len(tris), bool)
            out[on] = image.keeps_facing(k, faces[tris[on]], FRAME_FACING_COS)
            out[~on] = _keeps_facing(v, reference, faces[tris[~on]])
            return tris[out]

        folded = unexplained(idx)
        if not len(folded):
            continue
        free = np.zeros(len(v), bool)
        free[faces[folded].ravel()] = True
        free = _grow(adjacency, free, FILL_RINGS) & movable
        trial = v + values                  # positions under the shape, the free vertices' rewritten per trial
        best, best_count = None, len(folded)
        for round_ in range(MAX_ROUNDS):
            at, harmonic = _harmonic_values(values, free, lap)
            near = np.unique(_row_columns(incident, at))
            for keep in KEEP_SHARES:            # as much of the shape's own deltas as leaves nothing turned
                filled = harmonic + keep * (values[at] - harmonic)
                trial[at] = v[at] + filled
                still = near[_turned(v, trial, faces[near])]
                still = unexplained(still) if len(still) else still
                if len(still) < best_count:
                    best, best_count = (at, filled), len(still)
                if not len(still):
                    break
            if best_count == 0:
                break
            seeds = np.zeros(len(v), bool)
            seeds[faces[still].ravel()] = True
            free |= _grow(adjacency, seeds, FILL_RINGS + round_ + 1) & movable
        if best is not None:       # the fill that leaves the fewest turned over
            basis[k][best[0]] = best[1]
            candidates[k] = np.union1d(candidates[k], _row_columns(incident, best[0]))
    # the last resort: what no fill mended (and the eyes' bands, which are not filled) is attenuated locally
    rest_unit = unit_normals(v, faces)[0]
    for k in shapes:
        _attenuate_turned(basis[k], v, faces, rest_unit, image, k, candidates[k], adjacency, incident, ~held,
                          pinned if k in lid_shapes else None)
    return basis


def _source_turns(image: SourceImage, k: int, faces: np.ndarray) -> np.ndarray:
    """(n,) bool: the images of target triangles faces (n, 3) on the source turn over under shape k (past 90
    degrees, keeping a share of their area: a collapsed image has no direction to judge by)."""
    verts, local = np.unique(faces, return_inverse=True)
    local = local.reshape(-1, 3)
    rest = _normals_rows(image.rest[verts], local)
    moved = _normals_rows(image.at(k, verts), local)
    rest_len, moved_len = np.sqrt(dot_rows(rest, rest)), np.sqrt(dot_rows(moved, moved))
    return (dot_rows(moved, rest) < 0) & (moved_len > SOURCE_COLLAPSED * rest_len)


def _turned_facing(rest_unit: np.ndarray, moved: np.ndarray, faces: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(n,) bool: triangles tris (n,) of faces on positions moved (V, 3) point against their unit rest normals
    rest_unit (F, 3)."""
    m = gathered_normals(moved, faces[tris])
    return (m * rest_unit[tris]).sum(1) < TURNED_COS * np.linalg.norm(m, axis=1)


def _attenuate_turned(values: np.ndarray, v: np.ndarray, faces: np.ndarray, rest_unit: np.ndarray,
                      image: SourceImage, k: int, candidates: np.ndarray, adjacency: sp.csr_matrix,
                      incident: sp.csr_matrix, movable: np.ndarray, pinned: np.ndarray | None) -> None:
    """Shape k's deltas values (V, 3) (float32, in place) scaled down about the triangles among candidates (n,)
    it still turns over at weight 1 (and its source does not), `_attenuate_groups`. The eyes' rims (`pinned`)
    keep their deltas."""
    turned = candidates[_turned_facing(rest_unit, v + values, faces, candidates)]
    if not len(turned):
        return
    turned = turned[~_source_turns(image, k, faces[turned])]
    turned = turned[movable[faces[turned]].all(1)]
    if not len(turned):
        return
    trial = v + values

    def still(at: np.ndarray, moved_at: np.ndarray, near: np.ndarray) -> np.ndarray:
        trial[at] = v[at] + moved_at
        tris = near[_turned_facing(rest_unit, trial, faces, near)]
        trial[at] = v[at] + values[at]
        return tris[~_source_turns(image, k, faces[tris])] if len(tris) else tris

    _attenuate_groups(values, v, faces, turned, movable & ~pinned if pinned is not None else movable,
                      adjacency, incident, still)


def _attenuate_groups(values: np.ndarray, v: np.ndarray, faces: np.ndarray, turned: np.ndarray,
                      scalable: np.ndarray, adjacency: sp.csr_matrix, incident: sp.csr_matrix, still) -> None:
    """One shape's deltas values (V, 3) (float32, in place) scaled down smoothly about each connected group of
    triangles turned (n,): a factor 1 - a * falloff, the falloff 1 on the group's corners and a ring around them
    and easing to 0 (smoothstep) over ATTENUATE_FALLOFF times the group's largest delta (at most
    ATTENUATE_RADIUS_CM), a the smallest (bisected) for which still(at (m,), deltas there (m, 3), triangles near
    (n,)) finds none of the triangles near turned, at most ATTENUATE_MAX_SHARE of the shape's motion removed; only
    scalable (V,) bool vertices change. A group no such attenuation mends is left as it is."""
    seeds = np.zeros(len(v), bool)
    seeds[faces[turned].ravel()] = True
    core = _grow(adjacency, seeds, 1)
    n_groups, group = connected_components(adjacency[core][:, core], directed=False)
    core_idx = np.nonzero(core)[0]
    total = float(np.linalg.norm(values, axis=1).sum())
    for g in range(n_groups):
        members = core_idx[group == g]
        reach = float(np.linalg.norm(values[members], axis=1).max())
        member_tree = cKDTree(v[members])
        others = np.setdiff1d(turned, np.unique(_row_columns(incident, members)))   # other groups' triangles
        # only the vertices in the group's box grown by the widest falloff can be within reach (a dense scan's
        # million vertices are not all asked)
        lo_box, hi_box = v[members].min(0) - ATTENUATE_RADIUS_CM, v[members].max(0) + ATTENUATE_RADIUS_CM
        in_box = np.nonzero(((v >= lo_box) & (v <= hi_box)).all(1))[0]
        for widths in ATTENUATE_FALLOFF:
            radius = min(widths * reach, ATTENUATE_RADIUS_CM)
            dist, _ = member_tree.query(v[in_box], distance_upper_bound=radius)
            near_v = in_box[np.isfinite(dist)]
            dist = dist[np.isfinite(dist)]
            x = np.clip(dist / max(radius, 1e-9), 0.0, 1.0)
            weight = 1.0 - x * x * (3.0 - 2.0 * x)          # smoothstep: 1 on the group, 0 a radius away
            keep = scalable[near_v] & (weight > 0)
            at, weight = near_v[keep], weight[keep, None]
            if not len(at):
                break
            near = np.setdiff1d(np.unique(_row_columns(incident, at)), others)
            own = values[at].astype(np.float64)
            if len(still(at, own * (1.0 - weight), near)):
                continue                  # a wider falloff may mend what this one cannot
            lo, hi = 0.0, 1.0
            for _ in range(ATTENUATE_STEPS):
                mid = 0.5 * (lo + hi)
                lo, hi = (lo, mid) if not len(still(at, own * (1.0 - mid * weight), near)) else (mid, hi)
            if hi * float((weight[:, 0] * np.linalg.norm(own, axis=1)).sum()) > ATTENUATE_MAX_SHARE * total:
                continue
            values[at] = (own * (1.0 - hi * weight)).astype(values.dtype)
            break


FRAME_FACING_COS = -0.5    # a frame's fold is mended unless the source's mix turns the triangle's image past 120
#                            degrees (a fold the source itself makes, such as a lip rolling in) or collapses it: on
#                            the heads guarded the image is not faithful, so its slight folds explain nothing
#                            (judged at 88 degrees, the feature-scaled head kept 29 turned triangles, now 4)
FRAME_MAX_ROUNDS = 6       # fills per frame, each grown wider (eight mended the anime mouth's inner corners at jawOpen
#                            = 1 but creased its lips there: 14 saw-tooth edges against 1)
FRAME_MAX_FOLDED = 500      # a frame folding more triangles than this (or this share of them) is left as decoded:
FRAME_MAX_FOLDED_SHARE = 0.01   # a shape far from any face (forced through) would cost seconds a frame to mend
FAITHFUL_TIE_COS = SOURCE_FACING_COS   # on a head the fitted face matches, a fold is the source's own where its
#                            image turns past 90 degrees, or past 75 where the frame turns the triangle no further than
#                            105 (both about edge-on: a tie; judged at 90 alone, the Wendland warp kept 8 turned
#                            triangles, not 16, but the 6k remesh's error rose 0.4 %: ties the truth turns)
UNFOLD_RINGS = (1, 3)      # rings of free vertices around what is left turned, the second where the first leaves any
SOLVERS_KEPT = 256          # harmonic fills' factorisations kept per target (a few MB)
FRAME_KEEP_STEPS = 6       # bisection steps for the share of a frame's own displacement a fill keeps (1/64)


class FrameGuard:
    """The fold guard for whole frames: `guard_folds` mends each shape alone, but a mix of shapes can still turn
    a triangle over where its source keeps its surface facing (two shapes pulling a small feature's triangle two
    ways). Per decoded frame, the triangles turned over that the source's same mix does not turn past 120 degrees
    (`SourceImage`, FRAME_FACING_COS) get the harmonic interpolation of the displacement around them, keeping as
    much of their own as leaves nothing turned (bisected, so a fold that is only starting is mended by a change
    that is only starting: no jump from frame to frame), grown ring by ring; what no fill mends is attenuated
    locally (`_attenuate_groups`); what is still turned is unfolded by the least change (`_unfold_frame`). Frames
    the source explains are left bit for bit. Built once per target (`template_expression_basis(...,
    with_frame_guard=True)`); on the heads `needs_guard` does not pick (the fitted face matches them) it is
    `faithful`: no fills, only the unfolding, of folds the source's own deformation does not make."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, image: SourceImage,
                 held: np.ndarray | None = None, pinned: np.ndarray | None = None, lid_shapes: tuple = (),
                 off_surface: np.ndarray | None = None, faithful: bool = False, moving: np.ndarray | None = None,
                 tables: tuple[sp.csr_matrix, sp.csr_matrix] | None = None,
                 off_image: np.ndarray | None = None, mean_image: SourceImage | None = None):
        self.faithful = faithful
        self.v = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64)
        self.image = image
        # on a faithful head fitted only loosely: the image on ICT's mean face, which must fold a triangle too for
        # the fold to be the source's own (ICT's slight folds in its mixes depend on the identity; one the fitted
        # identity makes and the mean face does not is not the head's when the identity is not quite the head's)
        self.mean_image = mean_image
        n = len(self.v)
        held = np.zeros(n, bool) if held is None else np.asarray(held, bool)
        pinned = np.zeros(n, bool) if pinned is None else np.asarray(pinned, bool)
        self.off_surface = np.zeros(n, bool) if off_surface is None else np.asarray(off_surface, bool)
        # vertices too far off the fitted face for a guarded head's fold there to be the source's own
        self.off_image = self.off_surface if off_image is None else np.asarray(off_image, bool) | self.off_surface
        self.held, self.pinned = held, pinned
        self.moving = None if moving is None else np.asarray(moving, bool)
        self.judged = ~held[self.faces].any(1)          # (F,) triangles spanning a joined opening hang by design
        self.rest_unit = unit_normals(self.v, self.faces)[0]
        # the triangles each frame is checked on: judged, with a corner some shape moves
        checked = self.judged if moving is None else self.judged & np.asarray(moving, bool)[self.faces].any(1)
        self._checked = np.nonzero(checked)[0]
        self._checked_faces = self.faces[self._checked]
        self._rest_rows = np.ascontiguousarray(self.rest_unit[self._checked].T.astype(np.float32))   # (3, C)
        self._v32 = self.v.astype(np.float32)
        self._tables = tables             # the mesh's adjacency and triangle tables, built when first needed
        # the eyes' rims keep their motion; the RIM_RINGS rings around them are mended, then given back as much of
        # their own motion as the lids close (the largest weight of lid_shapes: a blink closes the lids as its
        # shape does, a frame without one is mended there as anywhere)
        self.movable = ~held & ~pinned
        self.band = _grow(self.adjacency, pinned, RIM_RINGS) & self.movable if pinned.any() else np.zeros(n, bool)
        self.lid_shapes = np.asarray(lid_shapes, np.int64)
        self._lap = None
        self._solvers = OrderedDict()     # free vertices -> `_harmonic_solver`: the frames of a take fold alike
        self._lock = threading.Lock()     # the app may decode one target from two requests at once: the
        #                                   Laplacian and the solvers are built as frames ask for them

    def extended(self, vertices: np.ndarray, faces: np.ndarray, kept: np.ndarray,
                 faithful: bool | None = None) -> "FrameGuard":
        """The guard of a mesh built from this guard's and vertices of its own (a mouth interior added at
        intake): vertices (V', 3) and faces (F', 3) of that mesh, kept (V',) bool marking this guard's vertices
        (in their order). The added vertices have no image on the source: they move, are never held or pinned,
        and a fold of a triangle touching one is never the source's own. `faithful` overrides this guard's
        kind (a faithful guard pins nothing)."""
        kept = np.asarray(kept, bool)
        idx = np.nonzero(kept)[0]
        if len(idx) != len(self.v):
            raise ValueError(f"kept marks {len(idx)} vertices; the guard has {len(self.v)}")

        def grown(values, fill):
            out = np.full((len(kept),) + values.shape[1:], fill, values.dtype)
            out[idx] = values
            return out

        def grown_image(source: SourceImage) -> SourceImage:
            image = copy.copy(source)                 # an added vertex's image: the source's first vertex
            image.corners = grown(source.corners, 0)
            image.bary = grown(source.bary, 0.0)
            image.bary[~kept, 0] = 1.0
            image.rest = np.einsum("vjc,vj->vc", image.face[image.corners], image.bary)
            return image

        image = grown_image(self.image)
        mean_image = None if self.mean_image is None else grown_image(self.mean_image)
        moving = None if self.moving is None else grown(self.moving, True)
        faithful = self.faithful if faithful is None else bool(faithful)
        pinned = None if faithful else grown(self.pinned, False)
        return FrameGuard(vertices, faces, image, held=grown(self.held, False), pinned=pinned,
                          lid_shapes=() if faithful else tuple(self.lid_shapes),
                          off_surface=grown(self.off_surface, True), faithful=faithful, moving=moving,
                          off_image=grown(self.off_image, True), mean_image=mean_image if faithful else None)

    def _mesh(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        if self._tables is None:
            self._tables = mesh_tables(self.faces, len(self.v))
        return self._tables

    @property
    def adjacency(self) -> sp.csr_matrix:
        return self._mesh()[0]

    @property
    def incident(self) -> sp.csr_matrix:
        return self._mesh()[1]

    @property
    def lap(self) -> _LocalLaplacian:
        if self._lap is None:
            self._lap = _LocalLaplacian(self.v, self.faces, self.adjacency)
        return self._lap

    def __getstate__(self) -> dict:
        """A prepared target travels between processes (batch on Ray returns it from its task): without the lock
        and the factorisations, which are rebuilt as frames ask for them."""
        state = self.__dict__.copy()
        state["_lock"], state["_solvers"] = None, OrderedDict()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _harmonic(self, values: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = np.flatnonzero(free).tobytes()
        solver = self._solvers.get(key)
        if solver is None:
            solver = self._solvers[key] = _harmonic_solver(free, self.lap)
            if len(self._solvers) > SOLVERS_KEPT:
                self._solvers.popitem(last=False)
        else:
            self._solvers.move_to_end(key)
        return _harmonic_values(values, free, self.lap, solver)

    def turned(self, displacement: np.ndarray) -> np.ndarray:
        """(n,) indices of the judged triangles that displacement (V, 3) (one frame) turns over."""
        moved = _normals_rows(self._v32 + np.asarray(displacement, np.float32), self._checked_faces)
        return self._checked[dot_rows(moved, self._rest_rows) < 0.0]

    def mend(self, displacements: np.ndarray, weights: np.ndarray) -> int:
        """Mend frames displacements (T, V, 3) float32 (cm, in place) decoded from the shape weights (T, K);
        returns how many frames changed."""
        changed = 0
        for t in range(len(displacements)):
            tris = self.turned(displacements[t])
            if not len(tris):
                continue
            w = np.asarray(weights[t], np.float64)
            with self._lock:
                mended = False
                if not self.faithful:
                    mended = self._mend_frame(displacements[t], w, tris)
                    if mended is None:
                        continue
                    if mended:
                        tris = self.turned(displacements[t])
                changed += bool(self._unfold_frame(displacements[t], w, tris) or mended)
        return changed

    def _explained(self, w: np.ndarray, tris: np.ndarray, moved: np.ndarray) -> np.ndarray:
        """(n,) bool: the fold of triangles tris (n,) in the frame's positions moved (V, 3) is the source's own
        under the mix w: on a head the fitted face matches, where their image collapses or turns past 90 degrees,
        or past 75 where the frame turns them no further than 105 (both about edge-on: a tie); on the others
        (`SourceImage.explains`) where it collapses, or turns past 120 and a source triangle under it turns over. A
        triangle off the fitted face (a corner farther than ON_SURFACE_CM from it; on the guarded heads, than
        IMAGE_ON_FACE_CM) has no faithful image there and never is. On a faithful head fitted loosely
        (`mean_image`), the image on ICT's mean face must turn past acos(MEAN_FOLD_COS) too."""
        out = ~(self.off_surface if self.faithful else self.off_image)[self.faces[tris]].any(1)
        if not out.any():
            return out
        on = tris[out]
        if not self.faithful:
            out[out] = self.image.explains(w, self.faces[on], FRAME_FACING_COS)
            return out
        r, m = gathered_normals(self.v, self.faces[on]), gathered_normals(moved, self.faces[on])
        frame_cos = (m * r).sum(1) / np.maximum(np.linalg.norm(m, axis=1) * np.linalg.norm(r, axis=1), 1e-30)

        def folds(image: SourceImage, faces: np.ndarray, frame: np.ndarray, tie_cos: float,
                  fold_cos: float = 0.0) -> np.ndarray:
            image_cos, collapsed = image.image_facing(w, faces)[:2]
            tie = (image_cos <= tie_cos) & (frame > -tie_cos)
            return collapsed | (image_cos <= fold_cos) | tie

        explained = folds(self.image, self.faces[on], frame_cos, FAITHFUL_TIE_COS)
        if self.mean_image is not None and explained.any():
            explained[explained] = folds(self.mean_image, self.faces[on[explained]], frame_cos[explained],
                                         tie_cos=-1.0, fold_cos=MEAN_FOLD_COS)
        out[out] = explained
        return out

    def _unfold_frame(self, frame: np.ndarray, w: np.ndarray, tris: np.ndarray) -> bool:
        """The last step for a frame (V, 3) float32 (in place) under weights w (K,) with the triangles tris
        turned: those whose fold is not the source's own (`_explained`) are unfolded by the least change around
        them that turns no other triangle (`nfs.prior.unfold`), grown wider while any is left. Returns whether
        the frame changed."""
        tris = tris[self.judged[tris]]
        if not len(tris):
            return False
        moved = self.v + frame.astype(np.float64)
        bad = tris[~self._explained(w, tris, moved)]
        if not len(bad) or len(bad) > max(FRAME_MAX_FOLDED, FRAME_MAX_FOLDED_SHARE * len(self.faces)):
            return False
        seeds = np.zeros(len(self.v), bool)
        seeds[self.faces[bad].ravel()] = True
        for rings in UNFOLD_RINGS:
            free = np.nonzero(_grow(self.adjacency, seeds, rings) & self.movable)[0]
            near = np.unique(_row_columns(self.incident, free))
            around = near[self.judged[near]]
            kept = ~_turned(self.v, moved, self.faces[around])      # nothing the frame keeps facing turns
            kept[~kept] = ~self._explained(w, around[~kept], moved)
            constrained = around[kept]
            trial = moved.copy()
            if not unfold(self.v, trial, self.faces, free, constrained, near):
                break
        frame[:] = trial - self.v
        return True

    def _unexplained(self, w: np.ndarray, tris: np.ndarray) -> np.ndarray:
        """The triangles among tris (n,) that are judged and whose image on the source the mix w does not turn past
        120 degrees (FRAME_FACING_COS; a triangle off the fitted face has no faithful image there: it is never
        explained)."""
        tris = tris[self.judged[tris]]
        if not len(tris):
            return tris
        keep = self.off_surface[self.faces[tris]].any(1)
        on = ~keep
        keep[on] = self.image.keeps_facing(w, self.faces[tris[on]], FRAME_FACING_COS)
        return tris[keep]

    def _mend_frame(self, frame: np.ndarray, w: np.ndarray, tris: np.ndarray) -> bool | None:
        v, faces = self.v, self.faces
        status = np.full(len(faces), -1, np.int8)   # a fold of triangle f unexplained under w (1) or not (0)

        def unexplained(t: np.ndarray) -> np.ndarray:
            new = t[status[t] < 0]
            if len(new):
                status[new] = 0
                status[self._unexplained(w, new)] = 1
            return t[status[t] == 1]

        folded = unexplained(tris)
        if len(folded) > max(FRAME_MAX_FOLDED, FRAME_MAX_FOLDED_SHARE * len(faces)):
            return None              # a head so unlike a face that mending is no remedy
        if not len(folded):
            return False
        values = frame.astype(np.float64)
        trial = v + values
        free = np.zeros(len(v), bool)
        free[faces[folded].ravel()] = True
        free = _grow(self.adjacency, free, FILL_RINGS) & self.movable
        best, best_count, touched = None, len(folded), folded
        for round_ in range(FRAME_MAX_ROUNDS):
            at, harmonic = self._harmonic(values, free)
            if not len(at):
                break
            near = np.unique(_row_columns(self.incident, at))
            own = values[at]

            def left(keep: float) -> np.ndarray:
                trial[at] = v[at] + harmonic + keep * (own - harmonic)
                still = near[_turned(v, trial, faces[near])]
                return unexplained(still)

            still = left(0.0)
            if not len(still):
                lo, hi = 0.0, 1.0              # lo leaves nothing turned, hi (the frame's own) does
                for _ in range(FRAME_KEEP_STEPS):
                    mid = 0.5 * (lo + hi)
                    lo, hi = (mid, hi) if not len(left(mid)) else (lo, mid)
                best, best_count = (at, harmonic + lo * (own - harmonic)), 0
                break
            if len(still) < best_count:
                best, best_count = (at, harmonic), len(still)
            trial[at] = v[at] + own
            seeds = np.zeros(len(v), bool)
            seeds[faces[still].ravel()] = True
            free |= _grow(self.adjacency, seeds, FILL_RINGS + round_ + 1) & self.movable
        if best is not None:
            values[best[0]] = best[1]
            touched = np.union1d(folded, _row_columns(self.incident, best[0]))
        if best_count:                       # the last resort: attenuated locally
            trial = v + values
            left_over = touched[_turned_facing(self.rest_unit, trial, faces, touched)]
            left_over = unexplained(left_over)
            left_over = left_over[self.movable[faces[left_over]].all(1)]
            if len(left_over):
                def still_turned(at_: np.ndarray, moved_at: np.ndarray, near_: np.ndarray) -> np.ndarray:
                    trial[at_] = v[at_] + moved_at
                    out = near_[_turned_facing(self.rest_unit, trial, faces, near_)]
                    trial[at_] = v[at_] + values[at_]
                    return unexplained(out)

                _attenuate_groups(values, v, faces, left_over, self.movable, self.adjacency, self.incident,
                                  still_turned)
        closing = float(np.clip(w[self.lid_shapes].max(), 0.0, 1.0)) if len(self.lid_shapes) else 0.0
        if closing > 0 and self.band.any():
            values[self.band] += closing * (frame[self.band] - values[self.band])
        frame[:] = values
        return True
