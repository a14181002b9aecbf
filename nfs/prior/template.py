"""Template prior: the ICT expression blendshapes carried to any mesh through closest points on an ICT face fitted
to it. With `NFSConfig.template_prior`, the decoder predicts a correction on top of this transfer, so training
starts from the nearest-point solution and learns what it misses (shape warps, lips, crops, discretization).

The ICT face the closest points are taken on is the identity model (100 modes) fitted to the target by a
regularised point-to-surface least squares (`fit_ict_identity`), not the mean face: on held-out ICT identities
closest points on the mean face put upper-lip vertices on the lower lip and the like (0.25 mm mean error of the
transfer), on the fitted face they land where they belong.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.spatial import cKDTree

from nfs.blas_threads import single_blas_thread
from nfs.geometry.falloff import plateau
from nfs.geometry.normals import vertex_normals
from nfs.geometry.operators import laplacian_and_mass
from nfs.geometry.openings import (LOCAL_GEODESICS_ABOVE, boundary_loops, carry_radially, geodesic_distances,
                                   geodesic_distances_near, grow_within, loop_halves, mask_components,
                                   polar_hang, radial_fill, sparse_adjacency)
from nfs.geometry.surface import closest_points_exact, closest_points_on_mesh, vertex_face_table
from nfs.geometry.triangle_math import unit_normals
from nfs.ict import EXPRESSION_NAMES, N_EXPRESSION
from nfs.ict_derived import derived_opening_sides
from nfs.prior.face_fit import FaceFit, beyond_border, fit_ict_face, skin_template
from nfs.prior.fold_guard import (IMAGE_ON_FACE_CM, LOOSE_FIT_CM, ON_SURFACE_CM, FrameGuard, SourceImage, guard_folds,
                                  mesh_tables, needs_guard, smooth_offset)
from nfs.prior.opening_warp import MIN_CHANGE, fit_opening_warp, matching_loop, opening_corners
from nfs.prior.registration import register_about_openings
from nfs.progress import checkpoint
from nfs.regions import REGION_NAMES, ict_region_labels

@dataclass(frozen=True)
class Opening:
    """A hole of the ICT skin whose two sides must never be mixed up: its upper and lower region labels, the radius
    (cm, geodesic on the target) within which target vertices are given a side, and the margin (cm) of geodesic
    distance below which a vertex is on the seam (a target that models the opening closed)."""

    name: str
    upper: str
    lower: str
    radius_cm: float
    clear_margin_cm: float          # a vertex's side is clear when one side is this much nearer than the other
    seam_margin_cm: float = 0.15


OFF_SURFACE_CM = 0.15    # a vertex this far from the fitted face is geometry ICT does not have there
STRETCH_REACH = 3.0      # geometry spanning a joined opening is followed this many opening radii (geodesic)
MOUTH_SHRINK_REACH = 2.0   # a smaller mouth's scaling falls off within this many mouth radii (a shrink never folds)
# a stylised mouth registers the fitted face within this many mouth half-widths, a stylised eye within this many
# eye half-widths (`register_openings`). Measured on the eval's anime head: farther (mouth 2, eyes 3) reached its
# 0.4x nose and turned 200 more triangles over there; the whole face registered turned 170 more.
MOUTH_REACH = 1.5
EYE_REACH = 3.0
BLINK_SHAPES = tuple(EXPRESSION_NAMES.index(n) for n in ("eyeBlink_L", "eyeBlink_R"))   # the shapes closing the lids
CORNER_SHARE = 0.2       # the frame guard mends the lids' bands this near an eye's corners (a share of its width)
MIN_NORMAL_DOT = -0.3    # near an opening, a closest triangle whose normal is against the vertex's is not taken
CONTACT_SLACK = 4.0      # the other side of an opening counts as touching within this many fit residuals

OPENINGS = (Opening("mouth", "upper_lip", "lower_lip", 2.0, 0.4),
            Opening("eye_L", "upper_eyelid_L", "lower_eyelid_L", 1.0, 0.2),
            Opening("eye_R", "upper_eyelid_R", "lower_eyelid_R", 1.0, 0.2))


@functools.lru_cache(maxsize=1)
def ict_opening_loops() -> dict[str, np.ndarray]:
    """Boundary loop (vertex indices) of each ICT skin opening, by name (the one whose vertices carry the
    opening's lip / lid labels most)."""
    _, tf, _, _ = skin_template()
    labels = ict_region_labels()
    out = {}
    for loop in boundary_loops(tf):
        for o in OPENINGS:
            ids = [REGION_NAMES.index(o.upper), REGION_NAMES.index(o.lower)]
            if np.isin(labels[loop], ids).mean() > 0.4:
                out[o.name] = loop
    return out


def opening_sides(points: np.ndarray, faces: np.ndarray, face: np.ndarray, closest_labels: np.ndarray,
                  closest_dist: np.ndarray, spanning: np.ndarray | None = None
                  ) -> list[tuple[Opening, np.ndarray, np.ndarray, np.ndarray]]:
    """Which side of each opening (mouth, eyes) the target's vertices near it lie on, by geodesic distance on the
    target surface (heat method) from two source sets per opening: the upper and lower arcs of the target's own
    boundary loop there (a lip slit, an eye hole) or, where the target has none (lips or lids joined, a mouth
    bag), the target vertices that sit on the fitted ICT face's upper or lower lip (lid) well away from the
    other one. A slit or hole makes the other side a long way round,
    so inner lips, lid rims and geometry hanging inside the mouth (a mouth bag) follow the side they are attached
    to; where the target joins the sides (a closed mouth or closed eyes) the two distances meet on the seam.

    points (V, 3) and face (S, 3) in the ICT frame (cm), faces (F, 3), closest_labels (V,) the ICT region label
    at each vertex's closest point and closest_dist (V,) its distance. Returns (opening, side (V,) int8 with +1
    upper / -1 lower / 0 where neither side is clearly nearer or beyond opening.radius_cm, seam (V,) bool: on a
    target that joins the sides (no boundary loop there) the vertices about equally far from both, stretch (V,)
    bool: there too, the geometry off the fitted face near the opening, or `spanning` it: (V,) bool, vertices
    whose closest point is on the face's border, off to the side) for each opening the target has."""
    labels_ict = ict_region_labels()
    skin_labels = labels_ict[: len(face)]
    loops = boundary_loops(faces) if len(faces) else []
    right, up = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    requests, found = [], []
    for o in OPENINGS:
        ict_loop = ict_opening_loops().get(o.name)
        if ict_loop is None:
            continue
        centre = face[ict_loop].mean(0)
        size = float(np.linalg.norm(face[ict_loop] - centre, axis=1).max())
        up_id, low_id = REGION_NAMES.index(o.upper), REGION_NAMES.index(o.lower)
        sources = [[], []]
        for loop in loops:
            c = points[loop].mean(0)
            extent = float(np.linalg.norm(points[loop] - c, axis=1).max())
            if np.linalg.norm(c - centre) < 0.5 * size and 0.3 * size < extent < 2.0 * size:
                upper, lower = loop_halves(points, loop, right, up)
                sources[0].append(upper)
                sources[1].append(lower)
        has_loop = bool(sources[0])
        for k, (own, other) in enumerate(((up_id, low_id), (low_id, up_id))):
            if has_loop:
                break                               # the target's own opening splits the sides
            other_pts = face[skin_labels == other]
            cand = np.nonzero((closest_labels == own) & (closest_dist < 0.15))[0]
            if len(cand) and len(other_pts):
                far, _ = cKDTree(other_pts).query(points[cand])
                sources[k].append(cand[far > 0.3])
        upper, lower = (np.unique(np.concatenate(x)) if x else np.zeros(0, np.int64) for x in sources)
        if len(upper) and len(lower):
            requests += [upper, lower]
            found.append((o, has_loop))
    if not found:
        return []
    if len(points) <= LOCAL_GEODESICS_ABOVE:
        dist = geodesic_distances(points, faces, requests)
    else:   # a dense scan: each opening's two distances solved near it, not over the whole mesh
        dist = np.concatenate([geodesic_distances_near(points, faces, requests[2 * i:2 * i + 2],
                                                       (STRETCH_REACH + 1.0) * o.radius_cm)
                               for i, (o, _) in enumerate(found)])
    # off the face: farther than the fit's typical residual allows (the tighter the fit, the tighter the bound)
    off_surface_cm = float(np.clip(4.0 * np.median(closest_dist), 0.05, OFF_SURFACE_CM))
    out = []
    for i, (o, has_loop) in enumerate(found):
        d_up, d_low = dist[2 * i], dist[2 * i + 1]
        near = np.minimum(d_up, d_low) < o.radius_cm
        clear = near & (np.abs(d_up - d_low) > o.clear_margin_cm)
        side = np.where(clear, np.where(d_up < d_low, 1, -1), 0).astype(np.int8)
        seam = near & (np.abs(d_up - d_low) < o.seam_margin_cm) & (not has_loop)
        # geometry off the ICT surface across a joined opening (a cap over the eye, a bag behind the lips) is to
        # stretch between the sides, whichever side it is nearer
        off_face = closest_dist > off_surface_cm
        if spanning is not None:
            off_face = off_face | spanning
        stretch = near & off_face & (not has_loop)
        if stretch.any():       # a bag deeper than the radius hangs from the opening as a whole
            reach = np.minimum(d_up, d_low) < STRETCH_REACH * o.radius_cm
            stretch = grow_within(faces, stretch, off_face & reach)
        out.append((o, side, seam, stretch))
    return out


@functools.lru_cache(maxsize=1)
def ict_opening_sides() -> dict[str, np.ndarray]:
    """(S,) int8 side of every ICT skin vertex for each opening (`opening_sides` on the ICT mean skin itself),
    so that a target and the ICT face are split by one and the same rule (shipped, `nfs.ict_derived`)."""
    return derived_opening_sides(compute_ict_opening_sides)


def compute_ict_opening_sides() -> dict[str, np.ndarray]:
    """`ict_opening_sides` computed from the ICT model."""
    mean, tf, _, _ = skin_template()
    labels = ict_region_labels()[: len(mean)]
    return {o.name: side for o, side, _, _ in opening_sides(mean, tf, mean, labels, np.zeros(len(mean)))}


def side_aware_closest_points(q: np.ndarray, faces: np.ndarray | None, face: np.ndarray, tf: np.ndarray):
    """Closest points of q (V, 3) on the fitted face (S, 3) with triangles tf, that never cross an opening: a
    vertex on the upper side of the mouth (`opening_sides`) whose closest point lies on the lower side of the ICT
    mouth (`ict_opening_sides`) is moved to its closest point among the triangles off that side, and so on for
    each side of each opening. Near an opening, a vertex whose closest triangle faces away from it (the inner
    surfaces of the lips or lids where they touch, a mouth corner folded in) takes its closest *compatible* point
    instead (`closest_points_on_mesh` with normals). Returns (tri (V,), bary (V, 3), labels (V,) the ICT region at
    each closest point, and the masks (V,) of `opening_sides`: seam, stretch, and trusted (clearly on one side and
    off the seam, or on the fitted face within the fit's typical residual; never stretch))."""
    labels_ict = ict_region_labels()
    _, tri, bary, dist = closest_points_exact(q, face, tf)
    nearest = tf[tri, np.argmax(bary, axis=1)]
    seam, stretch, clear = np.zeros(len(q), bool), np.zeros(len(q), bool), np.zeros(len(q), bool)
    if faces is None or not len(faces):
        return tri, bary, labels_ict[nearest], seam, stretch, clear
    face_normals = np.cross(face[tf[:, 1]] - face[tf[:, 0]], face[tf[:, 2]] - face[tf[:, 0]])
    face_normals /= np.maximum(np.linalg.norm(face_normals, axis=1, keepdims=True), 1e-20)
    corner_normals = face_normals[tri]                    # (V, 3) unit normal of each vertex's closest triangle
    normals = _outward_normals(q, faces, corner_normals)
    facing_away = (corner_normals * normals).sum(1) < MIN_NORMAL_DOT
    slack_cm = float(np.clip(2.0 * np.median(dist), 0.01, 0.1))
    ict_sides = ict_opening_sides()
    loops = ict_opening_loops()
    spanning = beyond_border(q, face, tf, tri, bary, corner_normals)
    for o, side, on_seam, off_face in opening_sides(q, faces, face, labels_ict[nearest], dist, spanning):
        seam |= on_seam
        stretch |= off_face
        clear |= side != 0
        centre = face[loops[o.name]].mean(0)
        near = np.linalg.norm(q - centre, axis=1) < o.radius_cm + np.linalg.norm(face[loops[o.name]] - centre,
                                                                                  axis=1).max()
        ict_side = ict_sides[o.name]
        for sign in (1, -1, 0):
            if sign:
                wrong_side = (side == sign) & (ict_side[nearest] == -sign)
                redo = wrong_side | ((side == sign) & near & facing_away)
            else:
                wrong_side = np.zeros(len(q), bool)
                redo = (side == 0) & near & facing_away & ~off_face
            redo = np.nonzero(redo)[0]
            if not len(redo):
                continue
            allowed, used, sub, table = _side_triangles(tf, ict_side, sign)
            _, t2, b2, d2 = closest_points_on_mesh(q[redo], face[used], sub, k_candidates=24, table=table,
                                                   point_normals=normals[redo], min_normal_dot=MIN_NORMAL_DOT)
            # a vertex moved for its normal alone takes the compatible point only about as near as the first (a
            # surface folded against another); farther, it is its own normal that leans (beside a cap, a crease).
            # A vertex on the wrong side but sitting on the fitted face is moved only where the other side is about
            # as near (lips or lids touching): elsewhere its geometry is the side it is on, and the target's own
            # split of the opening is what differs (a corner placed otherwise than the fitted face's)
            touching = d2 <= dist[redo] + CONTACT_SLACK * slack_cm
            take = np.where(wrong_side[redo], touching | (dist[redo] > slack_cm), d2 <= dist[redo] + slack_cm)
            redo, t2, b2 = redo[take], t2[take], b2[take]
            tri[redo], bary[redo] = allowed[t2], b2
            nearest[redo] = tf[tri[redo], np.argmax(bary[redo], axis=1)]
    # trusted: clearly on one side, or sitting on the fitted face as tightly as the fit allows
    trusted = ((clear & ~seam) | (dist <= slack_cm)) & ~stretch
    return tri, bary, labels_ict[nearest], seam, stretch, trusted


def _side_triangles(tf: np.ndarray, ict_side: np.ndarray, sign: int):
    """The triangles of tf (F, 3) off the -sign side of an opening (ict_side (S,), `ict_opening_sides`; all of them
    for sign 0): their indices (A,), the vertices they use (U,), themselves over those vertices (A, 3) and its
    vertex -> faces table. Kept per opening and sign for the ICT skin (the same for every target)."""
    skin_faces = skin_template()[1]
    if tf is skin_faces or (tf.shape == skin_faces.shape and np.array_equal(tf, skin_faces)):
        for name, side in ict_opening_sides().items():
            if side is ict_side:
                return _ict_side_triangles(name, sign)
    return _compute_side_triangles(tf, ict_side, sign)


@functools.lru_cache(maxsize=16)
def _ict_side_triangles(name: str, sign: int):
    out = _compute_side_triangles(skin_template()[1], ict_opening_sides()[name], sign)
    for a in out:
        a.setflags(write=False)
    return out


def _compute_side_triangles(tf: np.ndarray, ict_side: np.ndarray, sign: int):
    allowed = np.nonzero(~(ict_side[tf] == -sign).any(1))[0] if sign else np.arange(len(tf))
    used, sub = np.unique(tf[allowed], return_inverse=True)        # candidates come from used vertices only
    sub = sub.reshape(-1, 3)
    return allowed, used, sub, vertex_face_table(sub, len(used))


def _outward_normals(q: np.ndarray, faces: np.ndarray, closest_normals: np.ndarray) -> np.ndarray:
    """(V, 3) unit vertex normals of the target, turned to agree with the fitted face's on the whole (a mesh
    wound inside out is not a reason to refuse its closest points); closest_normals (V, 3): the fitted face's
    normal at each vertex's closest point."""
    normals = vertex_normals(q, faces)
    return normals if np.median((closest_normals * normals).sum(1)) >= 0 else -normals


@single_blas_thread()
def template_expression_basis(vertices_ict: np.ndarray, fit_identity: bool = True,
                              faces: np.ndarray | None = None, warp_openings: bool = True,
                              fold_guard: bool = True, with_frame_guard: bool = False):
    """(V, 3) vertices in the ICT frame (cm) -> (53, V, 3) ICT expression deltas at each vertex's closest point
    (barycentric interpolation) on the ICT face fitted to the vertices (identity, rest pose and a refined rigid
    motion; with `fit_identity=False`: the mean face as the vertices are).

    With the target's `faces` (F, 3): closest points never cross the mouth or an eye (`side_aware_closest_points`),
    seams where the target joins lips or lids are relaxed (`smooth_lip_seam`), a target whose eyes are modelled
    wider open than ICT's (rest eyeBlink < 0) gets blink shapes that still close them, and with `warp_openings`
    eyes modelled bigger, smaller or moved against the fitted face (stylised proportions) are met by a local warp
    of the fitted face whose Jacobian carries the deltas (`nfs.prior.opening_warp`), and a narrower mouth by a
    registration of the fitted face onto the target about it (`register_openings`) and deltas scaled to its width
    (`scale_to_mouth`). With `fold_guard`, shapes that turn triangles over where the fitted face keeps its surface
    facing are mended (`nfs.prior.fold_guard`). With `with_frame_guard`, returns (basis, `FrameGuard` or None):
    the guard that mends the mixes of shapes frame by frame (None where the fitted face matches the head,
    `needs_guard`, and without faces or an identity fit)."""
    mean, tf, deltas, _ = skin_template()
    v = np.asarray(vertices_ict, np.float64)
    fit = fit_ict_face(v) if fit_identity else FaceFit(np.zeros(1), 1.0, np.eye(3), np.zeros(3))
    checkpoint()                                   # a cancelled preparation stops between these steps
    face = fit.face() if fit_identity else mean
    q = fit.to_model(v)
    warp = None
    if fit_identity and warp_openings and faces is not None and len(faces):
        warp = fit_opening_warp(q, np.asarray(faces, np.int64), face, ict_opening_loops())
    if warp is not None:
        rest_face, face = face, warp.apply(face)
    unregistered = face
    if fit_identity and warp_openings and faces is not None and len(faces):
        registered = register_openings(q, np.asarray(faces, np.int64), face, tf, warp)
        face = face if registered is None else registered
    checkpoint()
    tri, bary, labels, seam, stretch, trusted = side_aware_closest_points(q, faces if fit_identity else None, face, tf)
    checkpoint()
    out = interpolate_deltas(deltas, tf[tri], bary)
    if warp is not None:       # the deltas at the unwarped closest point, pushed through the warp there
        out = _through_warp(out, warp, rest_face, tf, tri, bary)
    if fit_identity and warp_openings and faces is not None and len(faces):
        out = scale_to_mouth(out, q, np.asarray(faces, np.int64), unregistered, tf, tri, bary, in_place=True)
    out = fit.vectors_from_model(out, out=out).astype(np.float32, copy=False)
    assert out.shape[0] == N_EXPRESSION
    rest = fit.expression_weights()
    out = _blink_fixed(out, rest)
    checkpoint()
    if faces is not None and len(faces):
        coin_toss = lip_ambiguity(q, face, tf, labels)
        hung = np.zeros(len(q), bool)
        if stretch.any():
            loop_values = _opening_loop_deltas("mouth", deltas, tf, fit, warp, rest_face if warp is not None else None)
            hung = hang_caps(out, q, np.asarray(faces, np.int64), stretch, face[ict_opening_loops()["mouth"]],
                             _blink_fixed(loop_values, rest))
        out = smooth_lip_seam(out, np.asarray(faces, np.int64), labels, coin_toss | seam,
                              keep=(trusted & ~coin_toss) | hung, stretch=stretch & ~hung,
                              vertices=v, in_place=True)
    frame_guard = None
    if (fold_guard or with_frame_guard) and fit_identity and faces is not None and len(faces):
        eye_rims = np.zeros(len(q), bool)
        lid_rims = np.zeros(len(q), bool)       # the rims but for their corners, where the lids hardly move
        loops = boundary_loops(np.asarray(faces, np.int64))
        for name in ("eye_L", "eye_R"):
            loop = matching_loop(q, loops, face, ict_opening_loops()[name])
            if loop is not None:
                eye_rims[loop] = True
                corners = np.stack(opening_corners(q, loop))
                width = float(np.linalg.norm(corners[1] - corners[0]))
                to_corner = np.linalg.norm(q[loop][:, None] - corners[None], axis=2).min(1)
                lid_rims[loop[to_corner > CORNER_SHARE * width]] = True
        closest = np.einsum("vjc,vj->vc", face[tf[tri]], bary)
        off_by = np.linalg.norm(q - closest, axis=1)
        guarded = needs_guard(off_by, stretch)
        # a guarded head's per-shape guard and frame guard walk the mesh by the same tables: built once
        tables = mesh_tables(np.asarray(faces, np.int64), len(v)) if guarded and fold_guard else None
        if fold_guard:
            out = guard_folds(out, v, np.asarray(faces, np.int64), fit.face(), tf, deltas, tri, bary, off_by,
                              held=stretch, pinned=eye_rims,
                              lid_shapes=BLINK_SHAPES, shape_scale=_blink_scale(rest), tables=tables)
        if with_frame_guard:
            image = SourceImage(fit.face(), tf, deltas, tri, bary, _blink_scale(rest))
            moving = np.zeros(len(out[0]), bool)          # a frame can turn only triangles some shape moves
            for shape in out:                              # (one shape at a time: no (53, V, 3) temporary)
                moving |= (shape != 0).any(axis=1)
            if guarded:
                frame_guard = FrameGuard(v, np.asarray(faces, np.int64), image, held=stretch, pinned=lid_rims,
                                         lid_shapes=BLINK_SHAPES, off_surface=off_by > ON_SURFACE_CM, moving=moving,
                                         tables=tables, off_image=off_by > IMAGE_ON_FACE_CM)
            else:
                # the fit's looseness and the frame guard walk the mesh by the same tables: built once
                tables = mesh_tables(np.asarray(faces, np.int64), len(v))
                signed = ((q - closest) * unit_normals(face, tf[tri])[0]).sum(1)
                loose = smooth_offset(tables[0], signed, off_by > ON_SURFACE_CM) > LOOSE_FIT_CM
                mean_image = SourceImage(mean, tf, deltas, tri, bary, _blink_scale(rest)) if loose else None
                frame_guard = FrameGuard(v, np.asarray(faces, np.int64), image, held=stretch,
                                         off_surface=off_by > ON_SURFACE_CM, faithful=True, moving=moving,
                                         tables=tables, mean_image=mean_image)
    return (out, frame_guard) if with_frame_guard else out


def _blink_scale(rest: np.ndarray) -> np.ndarray:
    """(53,) how much each shape is scaled to still close eyes modelled wider open than ICT's (rest (53,): the
    fitted face's expression weights; the blink shapes where eyeBlink < -0.05, by 1 - eyeBlink)."""
    scale = np.ones(len(rest))
    for k in BLINK_SHAPES:
        if rest[k] < -0.05:
            scale[k] = 1.0 - rest[k]
    return scale


def _blink_fixed(deltas: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Deltas (53, N, 3) float32 whose blink shapes are scaled, in place, by `_blink_scale`."""
    for k, factor in enumerate(_blink_scale(rest)):
        if factor != 1.0:
            deltas[k] *= np.float32(factor)
    return deltas


@functools.lru_cache(maxsize=4)
def _loop_corners(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Each vertex of an ICT opening's loop as a point of the ICT skin: a triangle of it (L,) and the one-hot
    barycentric coordinates (L, 3) that pick the vertex."""
    loop, tf = ict_opening_loops()[name], skin_template()[1]
    first = np.full(int(tf.max()) + 1, -1, np.int64)
    first[tf[::-1].ravel()] = np.repeat(np.arange(len(tf))[::-1], 3)      # a triangle using each vertex
    tri = first[loop]
    return tri, (tf[tri] == loop[:, None]).astype(np.float64)


def _opening_loop_deltas(name: str, deltas: np.ndarray, tf: np.ndarray, fit: FaceFit, warp,
                         rest_face: np.ndarray | None) -> np.ndarray:
    """(53, L, 3) float32 deltas at the fitted face's own loop of an ICT opening, carried as every vertex's are
    (through the opening warp's Jacobian, into the target's frame)."""
    tri, bary = _loop_corners(name)
    out = interpolate_deltas(deltas, tf[tri], bary)
    if warp is not None:
        out = _through_warp(out, warp, rest_face, tf, tri, bary)
    return fit.vectors_from_model(out, out=out).astype(np.float32, copy=False)


CAP_FLAT_CM = 0.15   # geometry across the mouth this near the membrane spanned by the face's mouth loop is a cap
CAP_EDGE_CM = 0.05   # a vertex beside a cap this near its membrane, inside the loop, is the cap's too
CAP_EDGE_DEPTH = 0.02   # inside the loop: at least this far from it toward the centroid (polar depth s)


def hang_caps(basis: np.ndarray, points: np.ndarray, faces: np.ndarray, stretch: np.ndarray, loop: np.ndarray,
              loop_values: np.ndarray) -> np.ndarray:
    """A cap across joined lips (a scan's or an artist's membrane over the mouth: a connected part of `stretch`
    around the fitted face's mouth loop, every vertex of it within CAP_FLAT_CM of the membrane the loop spans when
    shrunk toward its centroid) hangs from the face's own mouth loop, where the lips part: each vertex takes the
    loop's values at its angle about the loop's centroid and the loop's mean, blended by how far in it sits
    (`polar_hang`). One continuous coordinate, the same for every vertex and every shape, so the cap opens as a
    membrane; hung from the target's own rim instead (vertices a little way up the lips, whose deltas are not
    the parting line's) its slivers turned over. A bag hanging behind the lips is farther from that membrane and
    is left to `radial_fill`.

    basis (53, V, 3) written in place; points (V, 3) in the fitted face's frame (cm); faces (F, 3); stretch (V,)
    bool; loop (L, 3) the fitted face's mouth loop, loop_values (53, L, 3) the deltas there. Returns (V,) bool:
    the vertices hung. Vertices beside a cap that lie on its membrane inside the loop (a scan re-tessellated
    across where the lips end and the cap begins, `_membrane_grown`) hang with it.
    """
    hung = np.zeros(len(points), bool)
    centre = loop.mean(0)
    size = float(np.linalg.norm(loop - centre, axis=1).max())
    mean = loop_values.mean(1, keepdims=True)
    for part in mask_components(faces, stretch):
        if np.linalg.norm(points[part].mean(0) - centre) > size:
            continue
        if _off_membrane(points[part], loop)[1].max() > CAP_FLAT_CM:
            continue
        part = _membrane_grown(part, points, faces, loop)
        a, b, w, s = polar_hang(points[part], loop)
        at = w[None, :, None] * loop_values[:, a] + (1 - w)[None, :, None] * loop_values[:, b]
        basis[:, part] = ((1 - s)[None, :, None] * at + s[None, :, None] * mean).astype(basis.dtype)
        hung[part] = True
    return hung


def _off_membrane(points: np.ndarray, loop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How deep inside the loop (L, 3) points (N, 3) sit (`polar_hang`'s s, (N,)) and how far (N,) cm they are from
    the membrane the loop spans when shrunk toward its centroid."""
    a, b, w, s = polar_hang(points, loop)
    membrane = (1 - s)[:, None] * (w[:, None] * loop[a] + (1 - w)[:, None] * loop[b]) + s[:, None] * loop.mean(0)
    return s, np.linalg.norm(points - membrane, axis=1)


def _membrane_grown(part: np.ndarray, points: np.ndarray, faces: np.ndarray, loop: np.ndarray,
                    max_rings: int = 8) -> np.ndarray:
    """A cap's vertices (part) with the vertices around it, ring by ring, that sit within CAP_EDGE_CM of the
    membrane its loop spans and inside the loop (depth above CAP_EDGE_DEPTH)."""
    region = np.zeros(len(points), bool)
    region[part] = True
    for _ in range(max_rings):
        ring = np.zeros(len(points), bool)
        ring[faces[region[faces].any(1)]] = True
        idx = np.nonzero(ring & ~region)[0]
        if not len(idx):
            break
        s, off = _off_membrane(points[idx], loop)
        on = (s > CAP_EDGE_DEPTH) & (off < CAP_EDGE_CM)
        if not on.any():
            break
        region[idx[on]] = True
    return np.nonzero(region)[0]


def _through_warp(deltas: np.ndarray, warp, rest_face: np.ndarray, tf: np.ndarray, tri: np.ndarray,
                  bary: np.ndarray, block: int = 1 << 16) -> np.ndarray:
    """Deltas (K, V, 3) float32 at closest points (tri (V,), bary (V, 3) on the unwarped face rest_face (S, 3),
    triangles tf) pushed through the warp's Jacobian there, in place, a block of vertices at a time."""
    for s0 in range(0, deltas.shape[1], block):
        sl = slice(s0, s0 + block)
        at = np.einsum("vjc,vj->vc", rest_face[tf[tri[sl]]], bary[sl])
        jac = np.ascontiguousarray(warp.jacobian(at).astype(np.float32).transpose(1, 2, 0))     # (3, 3, n)
        for k in range(len(deltas)):          # J @ d per vertex, with rows of coordinates (einsum's sums, 4x faster)
            d = np.ascontiguousarray(deltas[k, sl].T)                                   # (3, n)
            deltas[k, sl] = (jac[:, 0] * d[0] + jac[:, 1] * d[1] + jac[:, 2] * d[2]).T
    return deltas


def register_openings(q: np.ndarray, faces: np.ndarray, face: np.ndarray, tf: np.ndarray, warp
                      ) -> np.ndarray | None:
    """The fitted face (S, 3) registered onto the target (q (V, 3), faces (F, 3), model frame) about its stylised
    openings (`register_about_openings`): the mouth where the target's mouth opening is narrower corner to corner
    than the fitted face's by more than MIN_CHANGE (a mouth the identity fit cannot shrink), within MOUTH_REACH
    half-widths, and each eye the opening warp `warp` met (None: none), within EYE_REACH. None where there is
    none: a mouth the fitted face matches (any ICT identity), a wider one, or none (lips joined), and eyes as
    the fitted face's."""
    loops = boundary_loops(faces)
    openings = []
    mouth = fit_opening_warp(q, faces, face, ict_opening_loops(), openings=("mouth",))
    if mouth is not None and float(mouth.linear[0, 0, 0]) < -MIN_CHANGE:
        openings.append(("mouth", MOUTH_REACH))
    if warp is not None:
        openings += [(name, EYE_REACH) for name in warp.names]
    pairs = []
    for name, reach in openings:
        loop = matching_loop(q, loops, face, ict_opening_loops()[name])
        if loop is not None:
            pairs.append((ict_opening_loops()[name], loop, reach))
    return register_about_openings(face, tf, q, faces, pairs) if pairs else None


def interpolate_deltas(deltas: np.ndarray, corners: np.ndarray, bary: np.ndarray, block: int = 1 << 16
                       ) -> np.ndarray:
    """(K, S, 3) per-template-vertex deltas at barycentric points: corners (V, 3) template vertices, bary (V, 3)
    -> (K, V, 3) float32, a block of vertices at a time (no (K, V, 3, 3) gather)."""
    k = len(deltas)
    out = np.empty((k, len(corners), 3), np.float32)
    w = np.asarray(bary, np.float32)
    # one row of 3K values per template vertex: each corner is one contiguous gather, not K strided ones (the same
    # products and sums, so the same bits)
    rows = np.ascontiguousarray(np.asarray(deltas).transpose(1, 0, 2)).reshape(deltas.shape[1], -1)
    for s0 in range(0, len(corners), block):
        c, b = corners[s0:s0 + block], w[s0:s0 + block]
        acc = rows[c[:, 0]] * b[:, 0, None]
        acc += rows[c[:, 1]] * b[:, 1, None]
        acc += rows[c[:, 2]] * b[:, 2, None]
        out[:, s0:s0 + block] = acc.reshape(len(c), k, 3).transpose(1, 0, 2)
    return out


def scale_to_mouth(deltas: np.ndarray, q: np.ndarray, faces: np.ndarray, face: np.ndarray, tf: np.ndarray,
                   tri: np.ndarray, bary: np.ndarray, in_place: bool = False) -> np.ndarray:
    """Deltas (53, V, 3) carried at ICT's size (model frame) scaled to the target's own mouth: where the target's
    mouth opening (its boundary loop there) is narrower corner to corner than the fitted face's by more than
    MIN_CHANGE, each vertex's deltas are scaled by 1 + w (s - 1) in every direction (a smaller mouth pouts and
    rolls its lips less deep too: on the anime head 6 % fewer triangles turned over than scaling them in the face
    plane alone), s the head's mouth width over the wider of the fitted face's and ICT's mean face's (the deltas are
    the mean face's; the identity fit narrows the face's mouth part of the way toward a stylised one: on the anime
    head to 0.91 of the mean's, and measured against it the lip gap at jawOpen = 1 was 1.31x the truth's, against
    the mean's 1.19x; an ICT identity with a narrow mouth, stylised, is scaled that much too far) and w a plateau the size of the mouth with a Wendland fall-off (`mouth_warp`'s
    weights) at its closest point (tri (V,), bary (V, 3) on face (S, 3), the fitted face before its registration
    about the mouth, triangles tf), so a half-size mouth opens half as far. The correspondence comes from the
    registration (`register_openings`; warping the face with the same plateau turned triangles over at the mouth
    corners), and the warp's fall-off gradient is left out (with it the stylised head turned 39 more over). A mouth the fitted face matches, a wider
    one (scaling a mouth widened alone by 1.09 in both directions made a feature-scaled head 7 % worse), or none
    (lips joined) leaves the deltas as they are. `in_place`: scale `deltas` itself."""
    warp = fit_opening_warp(q, faces, face, ict_opening_loops(), openings=("mouth",))
    if warp is None:
        return deltas
    s = float(warp.linear[0, 0, 0]) + 1.0
    if s > 1.0 - MIN_CHANGE:    # a wider mouth is left: one wider only (a feature-scaled head) got worse
        return deltas
    # ICT's deltas are made for the mean face's mouth: where the fit narrowed the face's mouth toward the head's, the
    # head's width is measured against the mean face's instead
    s *= min(opening_width(face) / opening_width(skin_template()[0]), 1.0)
    outer = warp.inner * MOUTH_SHRINK_REACH
    at = np.einsum("vjc,vj->vc", face[tf[tri]], bary)
    w = plateau(np.linalg.norm(at - warp.centers[0], axis=-1), warp.inner[0], outer[0])
    scale = (1.0 + w * (s - 1.0)).astype(np.float32)
    out = deltas if in_place else deltas.copy()
    out *= scale[None, :, None]
    return out


def opening_width(face: np.ndarray, name: str = "mouth") -> float:
    """Corner-to-corner width (cm) of an opening (`OPENINGS`' names) of an ICT skin (S, 3)."""
    left, right = opening_corners(face, ict_opening_loops()[name])
    return float(np.linalg.norm(right - left))


def lip_ambiguity(vertices: np.ndarray, face: np.ndarray, face_triangles: np.ndarray, labels: np.ndarray,
                  margin_cm: float = 0.05) -> np.ndarray:
    """(V,) bool: lip vertices about as close to the other lip of the ICT face as to their own (within margin_cm),
    i.e. vertices whose choice of lip is a coin toss (a mouth modelled closed, where the lips meet)."""
    ict_labels = ict_region_labels()
    out = np.zeros(len(vertices), bool)
    lips = [REGION_NAMES.index("upper_lip"), REGION_NAMES.index("lower_lip")]
    on_lip = np.isin(labels, lips)
    if not on_lip.any():
        return out
    idx = np.nonzero(on_lip)[0]
    dist = []
    for lip in lips:
        tris = face_triangles[(ict_labels[face_triangles] == lip).any(1)]
        dist.append(closest_points_on_mesh(vertices[idx], face, tris)[3])
    with np.errstate(invalid="ignore"):      # a vertex with no candidate on either lip (inf - inf) is no toss-up
        out[idx] = np.abs(dist[0] - dist[1]) < margin_cm
    return out


def opening_side_values(labels: np.ndarray) -> np.ndarray:
    """(V,) 1 where a vertex's closest point is on the upper lip or an upper lid, 0 on the lower ones, 0.5
    elsewhere (labels (V,): the ICT region at each vertex's closest point)."""
    out = np.full(len(labels), 0.5)
    for o in OPENINGS:
        out[labels == REGION_NAMES.index(o.upper)] = 1.0
        out[labels == REGION_NAMES.index(o.lower)] = 0.0
    return out


LAPLACIAN_MARGIN = 4     # rings of the mesh around the lip seam's free vertices that their Laplacian is built on


def _grown(faces: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(V,) bool `mask` grown by one ring: every vertex of a triangle touching it."""
    out = mask.copy()
    out[faces[mask[faces].any(1)]] = True
    return out


def smooth_lip_seam(basis: np.ndarray, faces: np.ndarray, labels: np.ndarray, ambiguous: np.ndarray | None = None,
                    rings: int = 2, keep: np.ndarray | None = None, stretch: np.ndarray | None = None,
                    vertices: np.ndarray | None = None, in_place: bool = False) -> np.ndarray:
    """Where the target mesh joins the two sides of an opening (an edge between a vertex carried from the upper
    lip and one from the lower lip, or from the upper and lower lid: a mouth or eye modelled closed), closest
    points split the seam vertices between the sides and opening the mouth (closing the eye) tears spikes or
    crumples the surface. The basis on the seam and `rings` rings around it is replaced by the harmonic
    interpolation (graph Laplacian) of the basis around it, so the seam stretches smoothly instead. `keep`
    (vertices whose transfer is trusted: clearly on one side of an opening, or on the fitted face) stay as they are; `stretch` (geometry off the face across a
    joined opening: a cap over an eye, a bag) is always filled. With the rest `vertices` (V, 3) the fill is
    harmonic for the cotangent Laplacian, else for the graph Laplacian. A mesh with a lip slit
    or eye holes has no such edges except at the corners, where the sides meet on ICT too."""
    pairs = [(REGION_NAMES.index(o.upper), REGION_NAMES.index(o.lower)) for o in OPENINGS]
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    la, lb = labels[edges[:, 0]], labels[edges[:, 1]]
    on_seam = np.zeros(len(edges), bool)
    for upper, lower in pairs:
        on_seam |= ((la == upper) & (lb == lower)) | ((la == lower) & (lb == upper))
    seam = edges[on_seam]
    if ambiguous is not None:
        seam = seam[ambiguous[seam].any(1)]
    n = len(labels)
    free = np.zeros(n, bool)
    free[seam.ravel()] = True
    if not free.any() and (stretch is None or not stretch.any()):
        return basis
    for _ in range(rings):
        free = _grown(faces, free)
    if keep is not None:
        free &= ~keep
    if stretch is not None:
        free |= stretch
    if not free.any():
        return basis
    # the harmonic fill, solved directly with the cotangent (robust) Laplacian of the target's rest shape, which
    # keeps the fill's triangles in proportion (a relaxation left half-way keeps steps that fold triangles). Only
    # the free vertices' rows are needed: the Laplacian is built on the part of the mesh within LAPLACIAN_MARGIN
    # rings of them (its intrinsic Delaunay flips are local), not on the whole mesh (a minute and gigabytes at a
    # million vertices).
    near = free
    for _ in range(LAPLACIAN_MARGIN):
        near = _grown(faces, near)
    part = faces[near[faces].any(1)]
    used, local_faces = np.unique(part, return_inverse=True)
    local_faces = local_faces.reshape(-1, 3)
    if vertices is not None:
        laplacian = laplacian_and_mass(np.asarray(vertices, np.float64)[used], local_faces)[0]
    else:
        adjacency = sparse_adjacency(local_faces, len(used))
        laplacian = (sp.diags(np.asarray(adjacency.sum(1)).ravel()) - adjacency).tocsr()
    local_free = free[used]
    f_loc, h_loc = np.nonzero(local_free)[0], np.nonzero(~local_free)[0]
    f_idx, h_idx = used[f_loc], used[h_loc]
    rows = laplacian[f_loc]
    l_ff = rows[:, f_loc].tocsc() + 1e-9 * sp.eye(len(f_idx), format="csc")
    # only the held vertices next to the free ones enter the solve (a few rings, not the whole mesh)
    l_fh = rows[:, h_loc].tocsc()
    cols = np.nonzero(np.diff(l_fh.indptr))[0]
    held = basis[:, h_idx[cols]].transpose(1, 0, 2).reshape(len(cols), -1).astype(np.float64)
    solved = spla.splu(l_ff).solve(-(l_fh[:, cols] @ held))
    out = basis if in_place and basis.dtype == np.float32 else np.array(basis, np.float32, copy=True)
    out[:, f_idx] = solved.reshape(len(f_idx), len(basis), 3).transpose(1, 0, 2)
    if stretch is not None and stretch.any() and vertices is not None:
        # geometry spanning the opening (a cap, a bag) hangs from its rim radially, as such geometry is built; a
        # harmonic fill of a cap that is flat at rest (lips that touch) folds it when the mouth opens
        out = carry_radially(out, radial_fill(vertices, faces, stretch, rim_side=opening_side_values(labels)),
                             in_place=True)
    return out


