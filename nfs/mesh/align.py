"""Automatic similarity alignment of a user face/head mesh to the ICT neutral skin.

The result maps user coordinates to ICT coordinates (centimetres, +Y up, face looking +Z):
``p_ict = scale * rotation @ p_user + translation``.

Method. Both surfaces are centred on their area-weighted centroid and normalised by their RMS
radius, so units (m, mm, none) do not matter. Three template hypotheses are tried: the whole skin
(matched both ways: symmetric chamfer) and the ICT face and narrow-face regions (a crop's RMS
radius is only comparable to a crop's; matched one-sided, target -> whole skin, so any crop
boundary works). Each starts from the 24 proper axis rotations plus 24 rotations that put the
target's most telling principal axis on the region's (both signs, 30 degree turns about it), so a
mirror image is never a candidate. All starts run together as one batch of trimmed similarity ICP
(closest points on surface samples via cKDTree, point-to-plane Gauss-Newton steps with scale;
`umeyama_batch` gives the point-to-point variant, which converged several times slower) on a few
hundred samples. The best few under each criterion are refined on more samples; the target is a
whole head if the best two-sided fit covers most of the template. The winner is restarted from
+-8 degree turns (trimmed ICP has nearby local minima) and polished.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import numpy as np
from scipy.spatial import cKDTree

from nfs.blas_threads import single_blas_thread
from nfs.geometry.fits import umeyama_batch
from nfs.geometry.kdtree import query as kd_query
from nfs.geometry.rotations import axis_rotations, axis_to_axis, rotation_angle_deg, rotation_from_vector
from nfs.geometry.surface import principal_axes, sample_surface
from nfs.geometry.triangle_math import corner_rows, cross_rows, dot_rows, norm_rows
from nfs.io.mesh import MeshError

CONFIDENCE_SCALE_CM = 0.5      # confidence = exp(-residual_cm / CONFIDENCE_SCALE_CM)
FULL_COVERAGE = 0.85           # a target covering this fraction of the template area is a whole head
COVERAGE_DISTANCE_CM = 1.0     # a template point is covered if the target passes within this distance
MIN_FACE_COVERAGE = 0.6        # confidence shrinks when less of the ICT narrow face is covered
REVERSE_CAP_CM = 4.0           # template points farther than this from the target count as uncovered
TEMPLATE_REGIONS = ("skin", "face", "narrow_face")
SCALE_RANGE = (0.6, 1.6)       # ICP scale bounds relative to each hypothesis's starting scale
COARSE_SAMPLES = 200           # target and template samples per candidate in the sweep over all starts
COARSE_ITERATIONS = 6
COARSE_PRUNE_AFTER = 3         # sweep iterations on every start before the clearly worse ones stop
COARSE_KEPT_PER_CRITERION = 16 # starts that run the rest of the sweep, best under each criterion
TEMPLATE_COARSE_SAMPLES = 8000
TARGET_COARSE_SAMPLES = 3000
REFINED_PER_CRITERION = 3
REFINE_ITERATIONS = 6
REFINE_SAMPLES = 1000           # target and template samples a refined candidate matches
REFINE_SCORE_SAMPLES = 2000     # ... and is scored on, to choose between the hypotheses
POLISH_ITERATIONS = 4
JITTER_ITERATIONS = 4          # the jittered restarts start near a fit; the polish finishes the winner
JITTER_SAMPLES = 500            # target and template samples a jittered restart matches
JITTER_SCORE_SAMPLES = 2000
JITTER_DEGREES = 8.0
UNIT_CM = (100.0, 2.54, 1.0, 0.1)   # centimetres per file unit: metre, inch, centimetre, millimetre
UNIT_SNAP = 0.1                # a fitted scale within this share of a unit's is that unit (a head the size of a
#                                person's): the head keeps its own size, as a given alignment keeps it


@dataclass
class Alignment:
    """Similarity transform user frame -> ICT frame: ``p_ict = scale * rotation @ p + translation``.

    scale: float (ICT cm per user unit); rotation: (3, 3), det +1; translation: (3,) cm.
    residual_cm: mean distance from the aligned target surface to the ICT skin.
    confidence: exp(-residual_cm / 0.5 cm) * min(1, face_coverage / 0.6), in [0, 1].
    is_partial: the target was treated as a crop (one-sided matching).
    candidates_tried: number of ICP starts.
    coverage: fraction of the ICT skin area the aligned target passes within 1 cm of.
    orientation_margin: score of the best clearly different orientation over the winner's (>1; capped at 99).
    face_coverage: the same as coverage for the ICT narrow face region (eyes, nose, mouth, cheeks).
    fit_confidence: the geometric confidence above, kept when `confidence` is replaced by the face check's
    (`nfs.mesh.faceness.face_confidence`); face_score: that check's score (nan when it did not run).
    """

    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    residual_cm: float
    confidence: float
    is_partial: bool
    candidates_tried: int
    coverage: float = float("nan")
    orientation_margin: float = float("nan")
    face_coverage: float = float("nan")
    fit_confidence: float = float("nan")
    face_score: float = float("nan")

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) user points -> ICT frame."""
        return self.scale * np.asarray(points, np.float64) @ self.rotation.T + self.translation

    def inverse(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) ICT-frame points -> user frame."""
        return (np.asarray(points, np.float64) - self.translation) @ self.rotation / self.scale

    def apply_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """(..., 3) user displacements -> ICT frame (scale and rotation only)."""
        return self.scale * np.asarray(vectors, np.float64) @ self.rotation.T

    def inverse_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """(..., 3) ICT-frame displacements -> user frame."""
        return np.asarray(vectors, np.float64) @ self.rotation / self.scale

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict."""
        return {
            "scale": float(self.scale), "rotation": np.asarray(self.rotation, float).tolist(),
            "translation": np.asarray(self.translation, float).tolist(), "residual_cm": float(self.residual_cm),
            "confidence": float(self.confidence), "is_partial": bool(self.is_partial),
            "candidates_tried": int(self.candidates_tried), "coverage": float(self.coverage),
            "orientation_margin": float(self.orientation_margin), "face_coverage": float(self.face_coverage),
            "fit_confidence": float(self.fit_confidence), "face_score": float(self.face_score),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Alignment":
        return cls(
            scale=float(d["scale"]), rotation=np.asarray(d["rotation"], np.float64).reshape(3, 3),
            translation=np.asarray(d["translation"], np.float64).reshape(3), residual_cm=float(d["residual_cm"]),
            confidence=float(d["confidence"]), is_partial=bool(d["is_partial"]),
            candidates_tried=int(d["candidates_tried"]), coverage=float(d.get("coverage", float("nan"))),
            orientation_margin=float(d.get("orientation_margin", float("nan"))),
            face_coverage=float(d.get("face_coverage", float("nan"))),
            fit_confidence=float(d.get("fit_confidence", float("nan"))),
            face_score=float(d.get("face_score", float("nan"))),
        )


# ----------------------------------------------------------------------------- geometry helpers


def surface_moments(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Area-weighted centroid (3,), RMS distance of the surface from it, and total area."""
    a, b, c = corner_rows(np.asarray(vertices, np.float64), faces)          # (3, F) each
    area = 0.5 * norm_rows(cross_rows(b - a, c - a))
    total = area.sum()
    if not total > 0:
        raise MeshError("the mesh has zero surface area")
    # summed over the triangles as (F, 3) rows, in the order a sum over axis 0 takes them
    centroid = np.ascontiguousarray((area * (a + b + c)).T).sum(0) / (3 * total)
    a, b, c = a - centroid[:, None], b - centroid[:, None], c - centroid[:, None]
    # integral of |x|^2 over a triangle = area/12 * (|a|^2 + |b|^2 + |c|^2 + |a+b+c|^2)
    squares = [dot_rows(x, x) for x in (a, b, c, a + b + c)]
    second = area * (((squares[0] + squares[1]) + squares[2]) + squares[3]) / 12
    return centroid, float(np.sqrt(second.sum() / total)), float(total)


# ----------------------------------------------------------------------------- the template


@dataclass
class SampledSurface:
    """Dense surface samples with a KD-tree, in a fixed frame."""

    points: np.ndarray   # (N, 3)
    normals: np.ndarray  # (N, 3)
    tree: cKDTree
    spacing: float       # typical distance between neighbouring samples

    @classmethod
    def build(cls, vertices, faces, n: int, seed: int) -> "SampledSurface":
        points, normals, area = sample_surface(vertices, faces, n, seed, return_area=True)
        return cls(points, normals, cKDTree(points), float(np.sqrt(area / n)))

    def prefix(self, n: int) -> "SampledSurface":
        """The first n samples (themselves uniformly random) with their own, faster KD-tree."""
        spacing = self.spacing * np.sqrt(len(self.points) / n)
        return SampledSurface(self.points[:n], self.normals[:n], cKDTree(self.points[:n]), float(spacing))

    def distance(self, query: np.ndarray, point_to_plane: bool = False,
                 upper_bound: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
        """Distance of each query point (..., 3) to the surface (inf beyond upper_bound), and the nearest
        sample index. point_to_plane: use the sample's tangent plane within 2 sample spacings."""
        dist, idx = kd_query(self.tree, query, distance_upper_bound=upper_bound)
        idx = np.minimum(idx, len(self.points) - 1)
        if point_to_plane:
            plane = np.abs(_dot_last(query - self.points[idx], self.normals[idx]))
            dist = np.where(dist < 2 * self.spacing, plane, dist)
        return dist, idx


@dataclass
class AlignmentTemplate:
    """The ICT neutral skin prepared for matching (built once per process)."""

    surface: SampledSurface                # whole ICT skin, cm
    coarse: SampledSurface                 # fewer samples of the same, for the sweep over all starts
    sparse: np.ndarray               # (M, 3) template points matched back onto the target
    sparse_normals: np.ndarray
    sparse_in_face: np.ndarray       # (M,) bool: the sample lies on the narrow face region
    region_stats: dict               # region -> (centroid (3,), rms radius)
    region_axes: dict                # region -> (rank of its most distinct principal axis, that axis (3,))


@functools.lru_cache(maxsize=1)
def alignment_template() -> AlignmentTemplate:
    """The ICT neutral skin prepared for matching, shared by the alignment and the head search."""
    from nfs.ict import load_ict
    from nfs.ict_derived import derived

    model = load_ict()
    vertices, faces = model.skin_mesh()
    vertices = vertices.astype(np.float64)
    surface = SampledSurface.build(vertices, faces, 60_000, seed=1)
    stats = {}
    for region in TEMPLATE_REGIONS:
        centroid, rms, _ = surface_moments(vertices, model.region_faces(region))
        stats[region] = (centroid, rms)
    axes = derived("alignment_region_axes", region_axes)
    region_axes_by_name = {region: (int(row[0]), row[1:].copy()) for region, row in zip(TEMPLATE_REGIONS, axes)}
    sparse, sparse_normals, sparse_faces = sample_surface(vertices, faces, 4000, seed=2, return_faces=True)
    sparse_in_face = (faces[sparse_faces] < model.region_vertex_count("narrow_face")).all(1)
    return AlignmentTemplate(surface, surface.prefix(TEMPLATE_COARSE_SAMPLES), sparse, sparse_normals, sparse_in_face,
                     stats, region_axes_by_name)


def region_axes() -> np.ndarray:
    """(len(TEMPLATE_REGIONS), 4) per template region: the rank of its most distinct principal axis (of 20,000
    surface samples) and that axis (3,) (shipped, `nfs.ict_derived`)."""
    from nfs.ict import load_ict

    model = load_ict()
    vertices = model.skin_mesh()[0].astype(np.float64)
    out = np.zeros((len(TEMPLATE_REGIONS), 4))
    for i, region in enumerate(TEMPLATE_REGIONS):
        lengths, axes = principal_axes(sample_surface(vertices, model.region_faces(region), 20_000, seed=3)[0])
        rank = int(np.argmax(_isolation(lengths)))
        out[i] = (rank, *axes[:, rank])
    return out


def _isolation(lengths: np.ndarray) -> np.ndarray:
    """How far each principal length is from the other two, in log ratio (3,)."""
    logs = np.log(np.maximum(lengths, 1e-12))
    gaps = np.abs(logs[:, None] - logs[None, :]) + np.diag([np.inf] * 3)
    return gaps.min(1)


def _principal_starts(target_points: np.ndarray, rank: int, template_axis: np.ndarray) -> np.ndarray:
    """(24, 3, 3) rotations putting the target's principal axis of the given rank onto the template
    region's most distinct axis (both signs), then turning about it in 30 degree steps."""
    target_axis = principal_axes(target_points)[1][:, rank]
    out = []
    for sign in (1.0, -1.0):
        base = axis_to_axis(sign * target_axis, template_axis)
        for angle in np.radians(np.arange(0, 360, 30)):
            out.append(rotation_from_vector((angle * template_axis)[None])[0] @ base)
    return np.array(out)


# ----------------------------------------------------------------------------- batched ICP


@dataclass
class Candidates:
    """K similarity transforms from the normalised target frame to ICT cm."""

    scale: np.ndarray      # (K,)
    rotation: np.ndarray   # (K, 3, 3)
    translation: np.ndarray  # (K, 3)
    symmetric: np.ndarray  # (K,) bool: also pull template points onto the target
    scale_bounds: np.ndarray  # (K, 2)

    def take(self, idx) -> "Candidates":
        return Candidates(self.scale[idx], self.rotation[idx], self.translation[idx], self.symmetric[idx],
                           self.scale_bounds[idx])

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Normalised target points (N, 3), or one set per candidate (K, N, 3) -> (K, N, 3) in ICT cm."""
        return self.scale[:, None, None] * (x @ self.rotation.transpose(0, 2, 1)) + self.translation[:, None]

    def clamp_scale(self) -> "Candidates":
        """Clip each scale into its bounds, keeping the image of the target centroid (the translation) fixed."""
        clamped = np.clip(self.scale, self.scale_bounds[:, 0], self.scale_bounds[:, 1])
        return Candidates(clamped, self.rotation, self.translation, self.symmetric, self.scale_bounds)

    def backward(self, y: np.ndarray) -> np.ndarray:
        """(N, 3) ICT points -> (K, N, 3) in the normalised target frame."""
        return ((y[None] - self.translation[:, None]) @ self.rotation) / self.scale[:, None, None]


def plane_step(cand: Candidates, y: np.ndarray, q: np.ndarray, n: np.ndarray, w: np.ndarray,
                damping: float = 1e-3) -> Candidates:
    """One Gauss-Newton step of weighted point-to-plane similarity ICP.
    y: (K, N, 3) transformed source points, q: (K, N, 3) matches, n: (K, N, 3) unit normals at q, w: (K, N)."""
    centre = (y * w[..., None]).sum(1) / np.maximum(w.sum(1), 1e-12)[:, None]
    lever = y - centre[:, None]
    # residual r = n.(y - q); d r / d(log-scale, omega, shift) = (n.lever, lever x n, n), written out per
    # coordinate (the products and sums of `np.cross` and `.sum(-1)`, so the same bits, several times faster)
    jac = np.empty(lever.shape[:-1] + (7,))                                                  # (K, N, 7)
    jac[..., 0] = _dot_last(lever, n)
    (l0, l1, l2), (n0, n1, n2) = _coordinates(lever), _coordinates(n)
    jac[..., 1] = l1 * n2 - l2 * n1
    jac[..., 2] = l2 * n0 - l0 * n2
    jac[..., 3] = l0 * n1 - l1 * n0
    jac[..., 4:] = n
    res = _dot_last(y - q, n)
    weighted_t = (jac * w[..., None]).transpose(0, 2, 1)
    hess = weighted_t @ jac
    grad = (weighted_t @ res[..., None])[..., 0]
    hess = hess + damping * (np.einsum("kii->ki", hess)[:, :, None] * np.eye(7) + 1e-9 * np.eye(7))
    step = -np.linalg.solve(hess, grad[..., None])[..., 0]
    grow = np.exp(step[:, 0])
    turn = rotation_from_vector(step[:, 1:4])
    # y' = grow * turn (y - centre) + centre + shift, composed with y = s R x + t
    scale = grow * cand.scale
    rotation = turn @ cand.rotation
    translation = grow[:, None] * np.einsum("kij,kj->ki", turn, cand.translation - centre) + centre + step[:, 4:]
    return Candidates(scale, rotation, translation, cand.symmetric, cand.scale_bounds)


def _coordinates(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three coordinates of points (..., 3), each (...)."""
    return x[..., 0], x[..., 1], x[..., 2]


def _dot_last(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(...) dot products of x and y (..., 3) over the last axis: `(x * y).sum(-1)`'s products and sums."""
    (x0, x1, x2), (y0, y1, y2) = _coordinates(x), _coordinates(y)
    return x0 * y0 + x1 * y1 + x2 * y2


def _trim_weights(dist: np.ndarray, keep_fraction: float) -> np.ndarray:
    """(K, N) distances -> 0/1 weights keeping the closest `keep_fraction` pairs of each row."""
    return (dist <= np.quantile(dist, keep_fraction, axis=1, keepdims=True)).astype(np.float64)


def _icp(cand: Candidates, target: SampledSurface, n_target: int, template: AlignmentTemplate, n_template: int,
         iterations: int, method: str = "plane", keep_fraction: float = 0.9, coarse: bool = False) -> Candidates:
    """Similarity ICP on every candidate at once, trimmed (the worst pairs are ignored).
    method 'point': closest points + Umeyama; 'plane': point-to-plane Gauss-Newton.
    coarse: match against the template's coarse samples with approximate nearest neighbours."""
    surface = template.coarse if coarse else template.surface
    eps = 0.5 if coarse else 0.0
    x = target.points[:n_target]
    z = template.sparse[:n_template]
    z_normals = template.sparse_normals[:n_template]
    for _ in range(iterations):
        y = cand.forward(x)                                       # (K, n, 3) in ICT
        dist, idx = kd_query(surface.tree, y, eps=eps)
        match, normal = surface.points[idx], surface.normals[idx]
        weight = _trim_weights(dist, keep_fraction)
        src, dst = np.broadcast_to(x, y.shape), match
        if cand.symmetric.any():                                  # template samples pulled onto the target
            w_back, idx_back = _reverse_matches(cand, target, z, keep_fraction, eps)
            src = np.concatenate([src, target.points[idx_back]], axis=1)
            dst = np.concatenate([dst, np.broadcast_to(z, idx_back.shape + (3,))], axis=1)
            normal = np.concatenate([normal, np.broadcast_to(z_normals, idx_back.shape + (3,))], axis=1)
            weight = np.concatenate([weight, w_back], axis=1)
            y = np.concatenate([y, cand.forward(src[:, n_target:])], axis=1)
        if method == "plane":
            cand = plane_step(cand, y, dst, normal, weight)
        else:
            scale, rotation, translation = umeyama_batch(src, dst, weight)
            cand = Candidates(scale, rotation, translation, cand.symmetric, cand.scale_bounds)
        cand = cand.clamp_scale()
    return cand


def _reverse_matches(cand: Candidates, target: SampledSurface, z: np.ndarray, keep_fraction: float,
                     eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Template samples z (m, 3) matched onto the target for the two-sided candidates: weights (K, m),
    zero for one-sided candidates and beyond REVERSE_CAP_CM, and target sample indices (K, m)."""
    weight = np.zeros((len(cand.scale), len(z)))
    index = np.zeros((len(cand.scale), len(z)), np.int64)
    sym = np.nonzero(cand.symmetric)[0]
    both = cand.take(sym)
    dist, idx = kd_query(target.tree, both.backward(z), eps=eps,
                                  distance_upper_bound=REVERSE_CAP_CM / both.scale.min())
    found = idx < len(target.points)
    dist = np.where(found, dist * both.scale[:, None], REVERSE_CAP_CM)   # cm
    weight[sym] = _trim_weights(dist, keep_fraction) * found
    index[sym] = np.where(found, idx, 0)
    return weight, index


@dataclass
class _Scores:
    one_sided: np.ndarray  # (K,) mean target->template distance, cm
    reverse: np.ndarray    # (K,) mean template->target distance, cm
    coverage: np.ndarray   # (K,) fraction of template samples within COVERAGE_DISTANCE_CM of the target
    face_coverage: np.ndarray  # (K,) the same for the template's narrow face region

    @property
    def chamfer(self) -> np.ndarray:
        return 0.5 * (self.one_sided + self.reverse)

    def full_chamfer(self, cand: Candidates) -> np.ndarray:
        """Chamfer for whole-skin (two-sided) candidates, inf for the crop hypotheses."""
        return np.where(cand.symmetric, self.chamfer, np.inf)


def _score(cand: Candidates, target: SampledSurface, n_target: int, template: AlignmentTemplate, n_template: int,
           point_to_plane: bool = False, coarse: bool = False) -> _Scores:
    """Distances in ICT cm between the candidates' aligned target samples and the template samples."""
    y = cand.forward(target.points[:n_target])
    one_sided = (template.coarse if coarse else template.surface).distance(y, point_to_plane)[0].mean(1)
    z_back = cand.backward(template.sparse[:n_template])
    reverse = target.distance(z_back, point_to_plane, REVERSE_CAP_CM / cand.scale.min())[0] * cand.scale[:, None]
    reverse = np.minimum(reverse, REVERSE_CAP_CM)  # cm; uncovered template parts count as the cap
    covered = reverse < COVERAGE_DISTANCE_CM
    in_face = template.sparse_in_face[:n_template]
    return _Scores(one_sided, reverse.mean(1), covered.mean(1), covered[:, in_face].mean(1))


# ----------------------------------------------------------------------------- entry point


@single_blas_thread()
def align_to_ict(vertices: np.ndarray, faces: np.ndarray, partial: bool | None = None, seed: int = 0) -> Alignment:
    """Find the similarity transform taking a face/head mesh (V, 3), (F, 3) in any units, position and
    axis convention onto the ICT neutral skin. partial: True for a face crop, False for a whole head,
    None to decide from how much of the template the aligned target covers. Pass the skin only
    (see `clean_mesh`): eyes, teeth or a torso count as misfit."""
    template = alignment_template()
    vertices, faces = _check_input(vertices, faces)
    centroid, rms, _ = surface_moments(vertices, faces)
    target = SampledSurface.build((vertices - centroid) / rms, faces, 20_000, seed)
    target_coarse = target.prefix(TARGET_COARSE_SAMPLES)

    # coarse: every start, few samples, approximate nearest neighbours
    cand = _starting_candidates(template, target.points, partial)
    n_tried = len(cand.scale)
    swept, swept_scores = _sweep(cand, target_coarse, template)

    # refine the few best under each criterion, then choose
    best = set(np.argsort(swept_scores.one_sided)[:REFINED_PER_CRITERION].tolist())
    best |= set(np.argsort(swept_scores.full_chamfer(swept))[:REFINED_PER_CRITERION].tolist())
    n, n_score = REFINE_SAMPLES, REFINE_SCORE_SAMPLES
    cand = _icp(swept.take(np.array(sorted(best))), target, n, template, n, REFINE_ITERATIONS)
    scores = _score(cand, target, n_score, template, n_score, point_to_plane=True)
    is_partial = _is_partial(cand, scores) if partial is None else bool(partial)
    criterion = scores.one_sided if is_partial else scores.full_chamfer(cand)
    pick = int(np.argmin(criterion))
    swept_criterion = swept_scores.one_sided if is_partial else swept_scores.full_chamfer(swept)
    margin = _orientation_margin(swept.rotation, swept_criterion, cand.rotation[pick])

    # trimmed ICP has nearby local minima: restart from small turns of the winner, keep the best
    jittered = _jitter(_settle(cand.take([pick]), symmetric=not is_partial), JITTER_DEGREES)
    jittered = _icp(jittered, target, JITTER_SAMPLES, template, JITTER_SAMPLES, JITTER_ITERATIONS)
    jitter_scores = _score(jittered, target, JITTER_SCORE_SAMPLES, template, JITTER_SCORE_SAMPLES, point_to_plane=True)
    best_jitter = int(np.argmin(jitter_scores.one_sided if is_partial else jitter_scores.chamfer))
    winner = jittered.take([best_jitter])
    return _polish(winner, target, template, centroid, rms, is_partial, n_tried, margin)


def _sweep(cand: Candidates, target: SampledSurface, template: AlignmentTemplate) -> tuple[Candidates, _Scores]:
    """Coarse ICP from every start (COARSE_SAMPLES samples, approximate nearest neighbours) and the scores of
    where each ended. After COARSE_PRUNE_AFTER iterations only the COARSE_KEPT_PER_CRITERION best starts under
    each criterion (one-sided, and the two-sided chamfer) go on to COARSE_ITERATIONS; the others keep the scores
    they had then (already clearly worse: only the best few under each criterion are refined)."""
    n = COARSE_SAMPLES
    swept = _icp(cand, target, n, template, n, COARSE_PRUNE_AFTER, coarse=True)
    scores = _score(swept, target, n, template, n, coarse=True)
    keep = set(np.argsort(scores.one_sided)[:COARSE_KEPT_PER_CRITERION].tolist())
    keep |= set(np.argsort(scores.full_chamfer(swept))[:COARSE_KEPT_PER_CRITERION].tolist())
    keep = np.array(sorted(keep))
    rest = _icp(swept.take(keep), target, n, template, n, COARSE_ITERATIONS - COARSE_PRUNE_AFTER, coarse=True)
    rest_scores = _score(rest, target, n, template, n, coarse=True)
    swept = swept.take(np.arange(len(swept.scale)))                      # a copy, then the kept ones updated
    swept.scale[keep], swept.rotation[keep], swept.translation[keep] = rest.scale, rest.rotation, rest.translation
    for field in fields(_Scores):
        getattr(scores, field.name)[keep] = getattr(rest_scores, field.name)
    return swept, scores


@single_blas_thread()
def refine_alignment(vertices: np.ndarray, faces: np.ndarray, initial: Alignment, partial: bool | None = None,
                     seed: int = 0) -> Alignment:
    """Local similarity ICP from a given alignment (e.g. one a user fixed by hand) to the nearest fit.
    partial defaults to initial.is_partial."""
    template = alignment_template()
    vertices, faces = _check_input(vertices, faces)
    is_partial = initial.is_partial if partial is None else bool(partial)
    centroid, rms, _ = surface_moments(vertices, faces)
    target = SampledSurface.build((vertices - centroid) / rms, faces, 20_000, seed)
    # p_ict = s R p + t = (s rms) R (p - c) / rms + (t + s R c)
    start = Candidates(np.array([initial.scale * rms]), np.asarray(initial.rotation, np.float64)[None],
                        (initial.translation + initial.scale * initial.rotation @ centroid)[None],
                        np.array([not is_partial]), np.zeros((1, 2)))
    start = _icp(_settle(start, not is_partial), target, 1000, template, 1000, REFINE_ITERATIONS)
    return _polish(start, target, template, centroid, rms, is_partial, 1, float("nan"))


def fit_residual_cm(vertices: np.ndarray, faces: np.ndarray, alignment: Alignment, seed: int = 0) -> float:
    """Mean distance (ICT cm) from the surface, moved by `alignment`, to the ICT neutral skin."""
    template = alignment_template()
    vertices, faces = _check_input(vertices, faces)
    points, _ = sample_surface(alignment.apply(vertices), faces, 3000, seed)
    return float(template.surface.distance(points, point_to_plane=True)[0].mean())


def alignment_confidence(residual_cm: float, face_coverage: float = MIN_FACE_COVERAGE) -> float:
    """Confidence in [0, 1] of a fit: exp(-residual_cm / CONFIDENCE_SCALE_CM), shrunk when less than
    MIN_FACE_COVERAGE of the ICT narrow face is covered (the default counts the coverage as sufficient)."""
    return float(np.exp(-residual_cm / CONFIDENCE_SCALE_CM) * min(1.0, face_coverage / MIN_FACE_COVERAGE))


def _check_input(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    if len(faces) == 0:
        raise MeshError("point clouds are not supported")
    if not np.isfinite(vertices).all():
        raise MeshError("non-finite coordinates (NaN or inf) in the vertices")
    return vertices, faces


def _settle(cand: Candidates, symmetric: bool) -> Candidates:
    """Fix the matching mode of chosen candidates and let their scale move within 25% of its value."""
    out = cand.take(np.arange(len(cand.scale)))
    out.symmetric = np.full(len(out.scale), symmetric)
    out.scale_bounds = out.scale[:, None] * np.array([0.75, 1.33])
    return out


def _polish(winner: Candidates, target: SampledSurface, template: AlignmentTemplate, centroid: np.ndarray, rms: float,
            is_partial: bool, n_tried: int, margin: float) -> Alignment:
    """Final ICP on more samples, then the transform back in the user's frame with its scores. A scale near a
    common unit's (`snapped_unit`) is fixed at it first, so that a head of a person's size keeps its own size."""
    unit = snapped_unit(float(winner.scale[0] / rms))
    if unit is not None:                  # p_ict = s R (p - c) / rms + t: scaled about the target's centroid
        fixed = np.array([unit * rms])
        winner = Candidates(fixed, winner.rotation, winner.translation, winner.symmetric,
                            np.stack([fixed, fixed], axis=1))
    winner = _icp(winner, target, 3000, template, 3000, POLISH_ITERATIONS)
    final = _score(winner, target, 3000, template, 3000, point_to_plane=True)
    # p_ict = s R (p - c) / rms + t
    scale = float(winner.scale[0] / rms)
    rotation = winner.rotation[0]
    translation = winner.translation[0] - scale * rotation @ centroid
    residual = float(final.one_sided[0])
    face_coverage = float(final.face_coverage[0])
    return Alignment(scale, rotation, translation, residual, alignment_confidence(residual, face_coverage),
                     is_partial, n_tried, float(final.coverage[0]), margin, face_coverage)


def snapped_unit(scale: float) -> float | None:
    """The common unit (`UNIT_CM`, centimetres per file unit) within UNIT_SNAP of a fitted scale (centimetres per
    file unit), or None. ICT's mean face sets the fitted scale, so a head a few per cent bigger than the mean would
    otherwise be shrunk to it and take motions a few per cent too big; a head far from a person's size (a toy, a
    giant) keeps the fitted scale."""
    for unit in UNIT_CM:
        if abs(scale / unit - 1.0) <= UNIT_SNAP:
            return unit
    return None


def _starting_candidates(template: AlignmentTemplate, target_points: np.ndarray, partial: bool | None) -> Candidates:
    """Starts for each template hypothesis: the whole skin (matched both ways unless the target is known
    to be a crop) and, unless it is known to be a whole head, the face and narrow face regions (matched
    one-sided, started at the region's scale). Rotations: the 24 axis rotations, plus 24 that put the
    target's matching principal axis on the region's most distinct one (skipping near-duplicates)."""
    regions = ("skin",) if partial is False else TEMPLATE_REGIONS
    scale, rotation, translation, symmetric, bounds = [], [], [], [], []
    for region in regions:
        region_centroid, region_rms = template.region_stats[region]
        rank, axis = template.region_axes[region]
        rotations = _without_near_duplicates(np.concatenate([axis_rotations(),
                                                             _principal_starts(target_points, rank, axis)]))
        for rot in rotations:
            scale.append(region_rms)
            rotation.append(rot)
            translation.append(region_centroid)
            symmetric.append(region == "skin" and partial is not True)
            bounds.append((SCALE_RANGE[0] * region_rms, SCALE_RANGE[1] * region_rms))
    return Candidates(np.array(scale), np.array(rotation), np.array(translation), np.array(symmetric),
                       np.array(bounds))


def _without_near_duplicates(rotations: np.ndarray, degrees: float = 10.0) -> np.ndarray:
    """Drop rotations within `degrees` of an earlier one."""
    keep = []
    for i, rot in enumerate(rotations):
        if not keep or rotation_angle_deg(rotations[keep], rot).min() > degrees:
            keep.append(i)
    return rotations[keep]


def _jitter(cand: Candidates, degrees: float) -> Candidates:
    """One candidate -> itself plus its rotations by +-degrees about each ICT axis (about the image of
    the target centroid)."""
    turns = [np.eye(3)]
    for axis in np.eye(3):
        for sign in (1, -1):
            turns.append(rotation_from_vector(np.radians(sign * degrees) * axis[None])[0])
    turns = np.array(turns)
    out = cand.take(np.zeros(len(turns), int))
    out.rotation = turns @ out.rotation
    return out


def _is_partial(cand: Candidates, scores: _Scores) -> bool:
    """A whole head: the best two-sided fit covers most of the template and fits the target about as
    well as the best one-sided fit."""
    full = scores.full_chamfer(cand)
    if not np.isfinite(full).any():
        return True
    i = int(np.argmin(full))
    fits_as_well = scores.one_sided[i] <= 1.5 * scores.one_sided.min() + 0.05
    return not (scores.coverage[i] >= FULL_COVERAGE and fits_as_well)


def _orientation_margin(rotations: np.ndarray, criterion: np.ndarray, chosen: np.ndarray) -> float:
    """In the sweep: best score among orientations more than 20 degrees from the chosen rotation over
    the best score near it (capped at 99; large means the orientation is unambiguous)."""
    near = rotation_angle_deg(rotations, chosen) <= 20
    if not near.any() or near.all() or not np.isfinite(criterion[~near]).any():
        return 99.0
    return float(min(99.0, criterion[~near].min() / max(criterion[near].min(), 1e-6)))
