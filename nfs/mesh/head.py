"""Finding the head on any mesh: a face search for heads on shoulders, bodies and multi-part scenes, the
choice of the skin component by where the face is (not by size), and the cut below the neck.

`locate_face` fits the ICT narrow face *into* the target (template samples pulled onto the target
surface, one-sided and trimmed, so a torso, arms or a back of the head cost nothing) from many starts:
face sizes from 60% down to 7% of the whole mesh's RMS radius, centres spread over the surface at a
spacing below the face size, the template's forward axis on the local surface normal (both signs) turned
in 45 degree steps. A cheap score on a few template points keeps the best few hundred starts; those run
batched point-to-plane ICP and are scored on how much of the face the target covers and on how well the
target near the face fits the template.

`split_head` then takes, under a given alignment, the component that carries the face as the skin, and
cuts it below the neck (a plane under the ICT neck boundary): only the head goes through the network;
the body below the neck stays still (blended at the seam by the pipeline), separate parts above it follow
the skin rigidly. `find_head` ties it together for the pipeline.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from nfs.blas_threads import single_blas_thread
from nfs.geometry.kdtree import query as kd_query
from nfs.geometry.rotations import rotation_from_vector as _rotation_from_vector
from nfs.geometry.surface import sample_surface
from nfs.geometry.triangle_math import triangle_areas
from nfs.mesh.align import (Alignment, Candidates, SampledSurface, align_to_ict, alignment_template, plane_step,
                            refine_alignment, surface_moments)
from nfs.mesh.clean import CleanMesh, face_components
from nfs.mesh.faceness import FaceCheck, check_face_render, face_confidence
from nfs.mesh.parts import eye_pair, head_around_eyes
from nfs.progress import checkpoint

SEARCH_BELOW = 0.35          # the face is searched for over the whole mesh when no alignment is this confident
FACE_LEVELS = 0.6 / np.sqrt(2.0) ** np.arange(7)   # template face RMS radius / target RMS radius tried
CENTRE_SPACING = 1.0         # centres per level: one per cell of this many face radii
TURN_DEGREES = 45.0          # turns of the face about the local normal
PROTRUDING_SHARE = 0.4       # share of the centres (the most protruding) that start a fit
MAX_CENTRES = 500            # at most this many centres per face size
PREFILTER_POINTS = 24        # template points in the cheap score of every start
KEPT_STARTS = 200            # starts that go on to ICP
LOCAL_CHECKED = 32           # starts whose surroundings are checked against the template
ICP_POINTS = 160
ICP_ITERATIONS = 8
SCORE_POINTS = 600
CAP_CM = 3.0                 # template points farther than this from the target count as this far
COVERED_CM = 1.0
HEAD_RADIUS_CM = 30.0        # the part around a located face aligned as a head: this far from the face centre
NECK_MARGIN_CM = 0.5         # the cut plane lies this far below the ICT neck boundary
MIN_BODY_FRACTION = 0.25     # cut only when the part below the neck has at least this share of the head's area
TURN_BACK_DEGREES = 45.0     # a face seen turned more than this in the render of an alignment is turned back


@dataclass
class _FaceTemplate:
    points: np.ndarray    # (M, 3) narrow-face samples, cm
    normals: np.ndarray   # (M, 3)
    rms: float            # RMS radius of the narrow face about its centroid, cm
    centroid: np.ndarray  # (3,) area centroid of the narrow face, cm
    anchor: np.ndarray    # (3,) a point on the face in front of its centroid (nose/upper lip), cm
    box: tuple            # (lo (3,), hi (3,)) ICT-frame box around the face, cm
    neck_point: np.ndarray  # (3,) a point of the cut plane, cm
    neck_down: np.ndarray   # (3,) unit normal of the cut plane pointing away from the head


def _face_samples() -> tuple[np.ndarray, np.ndarray]:
    """(4000, 3) random samples of the ICT narrow face (cm, float64) and their normals, in the order drawn."""
    from nfs.ict import load_ict

    model = load_ict()
    return sample_surface(model.skin_mesh()[0].astype(np.float64), model.region_faces("narrow_face"),
                          4000, seed=5)


def face_search_order() -> np.ndarray:
    """(4000,) the order of `_face_samples` whose prefixes the search uses spread over the whole face (farthest
    point first; shipped, `nfs.ict_derived`)."""
    return _farthest_first(_face_samples()[0], SCORE_POINTS)


def neck_loop_indices() -> np.ndarray:
    """Vertex indices of the ICT skin's lowest boundary loop, the neck (shipped, `nfs.ict_derived`)."""
    from nfs.ict import load_ict

    model = load_ict()
    vertices, faces = model.skin_mesh()
    return _neck_loop(vertices.astype(np.float64), faces)


@functools.lru_cache(maxsize=1)
def _face_template() -> _FaceTemplate:
    from nfs.ict import load_ict
    from nfs.ict_derived import derived

    model = load_ict()
    vertices, faces = model.skin_mesh()
    vertices = vertices.astype(np.float64)
    face_faces = model.region_faces("narrow_face")
    points, normals = _face_samples()
    order = derived("face_search_order", face_search_order)
    points, normals = points[order], normals[order]
    centroid, rms, _ = surface_moments(vertices, face_faces)
    near_axis = np.linalg.norm(points[:, :2] - centroid[:2], axis=1) < 2.0
    anchor = np.array([centroid[0], centroid[1], np.median(points[near_axis, 2])])
    lo, hi = points.min(0) - 2.0, points.max(0) + 2.0
    neck = vertices[derived("neck_loop", neck_loop_indices)]
    down = np.linalg.svd(neck - neck.mean(0))[2][2]
    if down @ (neck.mean(0) - vertices.mean(0)) < 0:
        down = -down
    return _FaceTemplate(points, normals, rms, centroid, anchor, (lo, hi), neck.mean(0) + NECK_MARGIN_CM * down, down)


def _farthest_first(points: np.ndarray, count: int | None = None) -> np.ndarray:
    """An order of the points (N,) whose first `count` (default all) are farthest-point samples, so that every
    prefix up to `count` is spread out; the rest follow in their own order (the search only ever takes prefixes
    up to SCORE_POINTS, or all of the points)."""
    p = np.ascontiguousarray(points, dtype=np.float64)
    count = len(p) if count is None else min(int(count), len(p))
    order = np.zeros(count, np.int64)
    diff = p - p[0]
    dist = np.einsum("ij,ij->i", diff, diff)         # squared distances: the same order, 2x faster than norms
    for i in range(1, count):
        order[i] = int(np.argmax(dist))
        np.subtract(p, p[order[i]], out=diff)
        np.minimum(dist, np.einsum("ij,ij->i", diff, diff), out=dist)
    rest = np.setdiff1d(np.arange(len(p)), order, assume_unique=False)
    return np.concatenate([order, rest])


def _neck_loop(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(n,) indices of the template's vertices on its lowest boundary loop (the neck)."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    uniq, count = np.unique(edges, axis=0, return_counts=True)
    boundary = uniq[count == 1]
    labels, _ = face_components(len(vertices), np.concatenate([boundary, boundary[:, :1]], axis=1))
    on_boundary = np.unique(boundary)
    lowest = min(np.unique(labels[on_boundary]), key=lambda lab: vertices[on_boundary[labels[on_boundary] == lab], 1].mean())
    return on_boundary[labels[on_boundary] == lowest]


# ----------------------------------------------------------------------------- the face search


@single_blas_thread()
def locate_face(vertices: np.ndarray, faces: np.ndarray, seed: int = 0) -> Alignment:
    """Where the face is on any mesh (V, 3), (F, 3): a similarity user -> ICT frame that puts the ICT narrow
    face onto the target surface. residual_cm: mean capped distance from the template face to the target;
    face_coverage: share of the template face within 1 cm of the target; confidence is left at 0 (the caller
    aligns the head it finds and measures that)."""
    face = _face_template()
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    centroid, rms, _ = surface_moments(vertices, faces)
    target = SampledSurface.build((vertices - centroid) / rms, faces, 40_000, seed)

    cand = _starts(target, face)
    n_tried = len(cand.scale)
    cheap = _face_distance(cand, target, face.points[:PREFILTER_POINTS])
    keep = np.argsort(cheap)[:KEPT_STARTS]
    cand = _face_icp(cand.take(keep), target, face, ICP_POINTS, ICP_ITERATIONS)
    cand = cand.take(np.argsort(_face_distance(cand, target, face.points[:SCORE_POINTS]))[:LOCAL_CHECKED])
    score = _face_distance(cand, target, face.points[:SCORE_POINTS]) + _local_misfit(cand, target, face)
    best = np.argsort(score)[:8]                     # a face upside down or sideways fits nearly as well: try those
    cand = _face_icp(_turned(cand.take(best), [0.0, 90.0, 180.0, 270.0]), target, face, SCORE_POINTS // 2,
                     ICP_ITERATIONS)
    score = _face_distance(cand, target, face.points) + _local_misfit(cand, target, face)
    pick = int(np.argmin(score))
    winner = cand.take([pick])
    dist = _face_distances(winner, target, face.points)[0]
    scale = float(winner.scale[0] / rms)
    rotation = winner.rotation[0]
    translation = winner.translation[0] - scale * rotation @ centroid
    return Alignment(scale, rotation, translation, float(dist.mean()), 0.0, True, n_tried,
                     face_coverage=float((dist < COVERED_CM).mean()))


def _starts(target: SampledSurface, face: _FaceTemplate) -> Candidates:
    """Every start: per face size, centres one per cell of the target samples (the most protruding share of
    them: a face sticks out of its surroundings at its own size), the face's forward axis on the local
    outward normal and turned about it in steps."""
    turns = _rotation_from_vector(np.radians(np.arange(0, 360, TURN_DEGREES))[:, None] * np.array([[0, 0, 1.0]]))
    scale, rotation, translation, bounds = [], [], [], []
    for level in FACE_LEVELS:
        centres = _one_per_cell(target.points, CENTRE_SPACING * level)
        normals, bulge = _outward_normals(target.points, centres, 0.25 * level)
        keep = np.zeros(len(centres), bool)             # the most protruding share, at most MAX_CENTRES
        keep[np.argsort(-bulge, kind="stable")[:min(MAX_CENTRES, int(np.ceil(PROTRUDING_SHARE * len(centres))))]] = True
        ambiguous = np.abs(bulge) < 0.02 * level                 # flat: try both sides
        centres = np.concatenate([centres[keep], centres[keep & ambiguous]])
        normals = np.concatenate([normals[keep], -normals[keep & ambiguous]])
        s = face.rms / level                                      # cm per normalised target unit
        rot = (turns[None] @ _to_forward(normals)[:, None]).reshape(-1, 3, 3)
        c = np.repeat(centres, len(turns), axis=0)
        rotation.append(rot)
        translation.append(face.anchor - s * np.einsum("kij,kj->ki", rot, c))
        scale.append(np.full(len(rot), s))
        bounds.append(np.tile([s / 1.5, s * 1.5], (len(rot), 1)))
    rotation = np.concatenate(rotation)
    return Candidates(np.concatenate(scale), rotation, np.concatenate(translation),
                       np.zeros(len(rotation), bool), np.concatenate(bounds))


def _turned(cand: Candidates, degrees) -> Candidates:
    """Each start turned by each of the given angles about the ICT forward axis (Z) through the face anchor."""
    face = _face_template()
    out = cand.take(np.repeat(np.arange(len(cand.scale)), len(degrees)))
    angles = np.tile(np.radians(degrees), len(cand.scale))
    turn = _rotation_from_vector(angles[:, None] * np.array([[0, 0, 1.0]]))
    out.rotation = turn @ out.rotation
    out.translation = np.einsum("kij,kj->ki", turn, out.translation - face.anchor) + face.anchor
    return out


def _to_forward(normals: np.ndarray) -> np.ndarray:
    """(n, 3, 3) smallest rotations taking unit vectors (n, 3) to +Z (a half turn about X for -Z)."""
    out = np.empty((len(normals), 3, 3))
    x, y, c = normals[:, 0], normals[:, 1], normals[:, 2]
    opposite = c < -1 + 1e-9
    k = np.zeros((len(normals), 3, 3))                            # cross(n, z) = (y, -x, 0) as a matrix
    k[:, 0, 2], k[:, 1, 2], k[:, 2, 0], k[:, 2, 1] = -x, -y, x, y
    denom = np.where(opposite, 1.0, 1 + c)[:, None, None]
    out[:] = np.eye(3) + k + k @ k / denom
    out[opposite] = np.diag([1.0, -1.0, -1.0])
    return out


def _one_per_cell(points: np.ndarray, cell: float) -> np.ndarray:
    """The first point in each cubic cell of the given size."""
    keys = np.floor((points - points.min(0)) / cell).astype(np.int64)
    span = keys.max(0) + 1
    _, first = np.unique(keys[:, 0] + span[0] * (keys[:, 1] + span[1] * keys[:, 2]), return_index=True)
    return points[np.sort(first)]


def _outward_normals(points: np.ndarray, centres: np.ndarray, cell: float, k: int = 20):
    """Unit normals (n, 3) at the centres: least-variance axis of their k nearest points on a grid of the
    given spacing (a neighbourhood about a face radius wide, whatever the sampling density), signed so the
    centre lies on their positive side of the neighbourhood's mean; and that height (n,) (the bulge)."""
    grid = _one_per_cell(points, cell)
    k = min(k, len(grid))
    _, idx = cKDTree(grid).query(centres, k=k)
    nbr = grid[idx.reshape(len(centres), k)]
    mean = nbr.mean(1)
    centred = nbr - mean[:, None]
    normals = np.linalg.eigh(np.einsum("nki,nkj->nij", centred, centred))[1][:, :, 0]
    height = ((centres - mean) * normals).sum(1)
    sign = np.where(height < 0, -1.0, 1.0)
    return normals * sign[:, None], np.abs(height)


def _face_distances(cand: Candidates, target: SampledSurface, z: np.ndarray, chunk: int = 4000,
                    eps: float = 0.0) -> np.ndarray:
    """(K, m) distance in ICT cm from template points z (m, 3) to the target, capped at CAP_CM (eps: approximate
    nearest neighbours within a factor 1 + eps)."""
    out = np.empty((len(cand.scale), len(z)))
    for s in range(0, len(cand.scale), chunk):
        part = cand.take(np.arange(s, min(s + chunk, len(cand.scale))))
        dist, _ = kd_query(target.tree, part.backward(z), eps=eps, distance_upper_bound=CAP_CM / part.scale.min())
        out[s:s + len(part.scale)] = np.minimum(dist * part.scale[:, None], CAP_CM)
    return out


def _face_distance(cand: Candidates, target: SampledSurface, z: np.ndarray, eps: float = 0.0) -> np.ndarray:
    return _face_distances(cand, target, z, eps=eps).mean(1)


def _local_misfit(cand: Candidates, target: SampledSurface, face: _FaceTemplate, n: int = 1000) -> np.ndarray:
    """(K,) mean capped distance (cm) to the ICT skin of the target samples that land in the box around the
    template face (0 where none do): a face fitted into a crevice has other surfaces in front of it."""
    template = alignment_template()
    lo, hi = face.box
    y = cand.forward(target.points[:n])
    inside = ((y > lo) & (y < hi)).all(-1)
    dist = np.minimum(kd_query(template.surface.tree, y, distance_upper_bound=CAP_CM)[0], CAP_CM)
    return (dist * inside).sum(1) / np.maximum(inside.sum(1), 1)


def _face_icp(cand: Candidates, target: SampledSurface, face: _FaceTemplate, n_points: int,
              iterations: int, keep_fraction: float = 0.8, eps: float = 0.0) -> Candidates:
    """Trimmed point-to-plane similarity ICP pulling the template face samples onto the target."""
    z, z_normals = face.points[:n_points], face.normals[:n_points]
    for _ in range(iterations):
        _, idx = kd_query(target.tree, cand.backward(z), eps=eps)
        src = target.points[idx]                                   # (K, m, 3) target points
        y = cand.forward(src)
        dist = np.linalg.norm(y - z, axis=-1)
        weight = (dist <= np.quantile(dist, keep_fraction, axis=1, keepdims=True)).astype(np.float64)
        moved = plane_step(cand, y, np.broadcast_to(z, y.shape), np.broadcast_to(z_normals, y.shape), weight)
        ok = np.isfinite(moved.scale) & np.isfinite(moved.translation).all(1) & np.isfinite(moved.rotation).all((1, 2))
        moved.scale[~ok], moved.rotation[~ok], moved.translation[~ok] = (
            cand.scale[~ok], cand.rotation[~ok], cand.translation[~ok])      # a degenerate step: stay
        cand = moved.clamp_scale()
    return cand


# ----------------------------------------------------------------------------- the head and the body


def split_head(clean: CleanMesh, alignment: Alignment) -> CleanMesh:
    """Under `alignment`, the skin becomes the component carrying the ICT face, cut below the neck when a
    body hangs from it; the body (and separate components below the neck) go to `body_vertices`, which stay
    still. Returns `clean` itself when nothing changes."""
    face = _face_template()
    points = alignment.apply(clean.vertices)
    labels, n_comp = face_components(len(clean.vertices), clean.faces)
    face_label = labels[clean.faces[:, 0]]
    area = triangle_areas(points, clean.faces)
    comp_area = np.bincount(face_label, weights=area, minlength=n_comp)
    dist, nearest = cKDTree(points).query(face.points, distance_upper_bound=CAP_CM)
    found = dist < CAP_CM
    votes = np.bincount(labels[nearest[found]], minlength=n_comp)
    skin_label = int(np.argmax(votes + 1e-9 * comp_area)) if votes.any() else int(labels[clean.skin_vertices[0]])

    below = (points - face.neck_point) @ face.neck_down > 0       # (V,) beyond the cut plane
    in_skin = labels == skin_label
    head_face = (face_label == skin_label) & ~below[clean.faces].any(1)
    body_area = area[(face_label == skin_label) & ~head_face].sum()
    if body_area <= MIN_BODY_FRACTION * area[head_face].sum() or not head_face.any():
        head_face = face_label == skin_label                      # no body to cut off
    else:                                                         # the piece of the cut carrying the face
        piece, _ = face_components(len(points), clean.faces[head_face])
        in_head = np.zeros(len(points), bool)
        in_head[clean.faces[head_face]] = True
        hit = nearest[found][in_head[nearest[found]]]
        head_piece = np.bincount(piece[hit]).argmax() if len(hit) else piece[clean.faces[head_face][0, 0]]
        head_face = head_face & (piece[clean.faces[:, 0]] == head_piece)
    skin_vertices = np.unique(clean.faces[head_face])
    if np.array_equal(skin_vertices, clean.skin_vertices) and not len(getattr(clean, "body_vertices", ())):
        return clean
    skin_index = np.full(len(points), -1)
    skin_index[skin_vertices] = np.arange(len(skin_vertices))
    skin_faces = skin_index[clean.faces[head_face]]

    others, body = [], [np.setdiff1d(np.nonzero(in_skin)[0], skin_vertices)]
    for label in np.argsort(-comp_area, kind="stable"):
        if label == skin_label:
            continue
        members = np.nonzero(labels == label)[0]
        (body if below[members].mean() > 0.5 else others).append(members)
    body_vertices = np.sort(np.concatenate(body)).astype(np.int64)

    report = dataclasses.replace(clean.report)
    report.skin_vertices, report.skin_faces = len(skin_vertices), len(skin_faces)
    report.skin_area_fraction = float(area[head_face].sum() / max(area.sum(), 1e-300))
    report.other_component_sizes = [len(c) for c in others]
    report.body_vertices = len(body_vertices)
    report.skin_chosen_by_face = skin_label != labels[clean.skin_vertices[0]]
    return dataclasses.replace(clean, skin_vertices=skin_vertices, skin_faces=skin_faces, other_components=others,
                               body_vertices=body_vertices, report=report)


def find_head(clean: CleanMesh, hints: np.ndarray | None = None) -> tuple[Alignment, CleanMesh]:
    """The alignment of a cleaned mesh and the mesh with its head as the skin. When separate eyeballs mark the
    face (`nfs.mesh.parts`), the skin wrapping them is cut around them and aligned. Otherwise, or when that is
    not confident, the largest component is aligned; when that looks like a face with a body below the neck, the
    head is cut off and aligned on its own; when still nothing is confident the face is searched for over every
    component (`locate_face`), and the head it lands on is cut and aligned. Every result is checked by the face
    detector on a render of it (`nfs.mesh.faceness`): its `confidence` is the face confidence, a face found
    turned is turned back, and the most confident result wins. `hints`: the file's part names as hints of each
    input vertex (`nfs.mesh.parts.part_hints`): parts named as eyes mark the eyes even when they are no spheres."""
    results = []
    pair = eye_pair(clean, hints)                        # separate eyeballs mark the face
    around = None if pair is None else head_around_eyes(clean, pair)
    if around is not None:
        found = align_to_ict(*around)
        head = split_head(clean, found)
        results.append(_checked(clean, refine_alignment(head.skin_points, head.skin_faces, found), head))
        if results[0][0].confidence >= SEARCH_BELOW:
            return results[0]
    checkpoint()
    first, _ = _checked(clean, align_to_ict(clean.skin_points, clean.skin_faces), clean)
    checkpoint()
    results.append((first, clean))
    if first.confidence >= SEARCH_BELOW:                 # a face: is there a body below its neck?
        head = split_head(clean, first)
        if head is clean:
            return max(results, key=lambda r: r[0].confidence)
        results.append(_checked(clean, *_align_head(clean, head)))
    if max(a.confidence for a, _ in results) < SEARCH_BELOW:
        checkpoint()                                   # a cancelled preparation stops before the search
        located = locate_face(clean.vertices, clean.faces)
        around = _around_face(clean, located)          # the search finds where the face is; its orientation
        if around is not None:                         # comes from the whole-head alignment of that part
            results.append(_checked(clean, *_align_head(clean, split_head(clean, align_to_ict(*around)))))
    return max(results, key=lambda r: r[0].confidence)


def _checked(clean: CleanMesh, alignment: Alignment, head: CleanMesh) -> tuple[Alignment, CleanMesh]:
    """The alignment with its face check: the whole mesh rendered under it, `confidence` replaced by the face
    confidence (the geometric one kept as `fit_confidence`). A face seen turned in the image (upside down,
    sideways) is turned back about the view axis, refined and checked again; the better of the two is kept."""
    check = check_face_render(alignment.apply(clean.vertices), clean.faces)
    out = _with_check(alignment, check)
    if check.detector > 0 and abs(check.turn_deg) > TURN_BACK_DEGREES:
        face = _face_template()
        turn = check.turn
        start = dataclasses.replace(alignment, rotation=turn @ alignment.rotation,
                                    translation=turn @ (alignment.translation - face.centroid) + face.centroid)
        turned = refine_alignment(head.skin_points, head.skin_faces, start)
        again = _with_check(turned, check_face_render(turned.apply(clean.vertices), clean.faces))
        if again.confidence > out.confidence:
            return again, split_head(clean, turned)
    return out, head


def _with_check(alignment: Alignment, check: FaceCheck) -> Alignment:
    fit = alignment.confidence if np.isnan(alignment.fit_confidence) else alignment.fit_confidence
    return dataclasses.replace(alignment, confidence=face_confidence(check, fit), fit_confidence=fit,
                               face_score=check.score)


def _around_face(clean: CleanMesh, located: Alignment) -> tuple[np.ndarray, np.ndarray] | None:
    """Vertices and faces of the piece of the mesh within HEAD_RADIUS_CM of the located face's centre (the
    connected piece nearest that centre), or None when nothing is there."""
    face = _face_template()
    centre = located.inverse(face.centroid)
    radius = HEAD_RADIUS_CM / located.scale
    inside = np.linalg.norm(clean.vertices - centre, axis=1) < radius
    faces = clean.faces[inside[clean.faces].all(1)]
    if len(faces) == 0:
        return None
    labels, _ = face_components(len(clean.vertices), faces)
    used = np.unique(faces)
    nearest = used[np.argmin(np.linalg.norm(clean.vertices[used] - centre, axis=1))]
    faces = faces[labels[faces[:, 0]] == labels[nearest]]
    used, compact = np.unique(faces, return_inverse=True)
    return clean.vertices[used], compact.reshape(-1, 3)


def _align_head(clean: CleanMesh, head: CleanMesh) -> tuple[Alignment, CleanMesh]:
    """Align the head on its own, then cut again under that alignment."""
    alignment = align_to_ict(head.skin_points, head.skin_faces)
    return alignment, split_head(clean, alignment)
