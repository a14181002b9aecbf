"""The evaluation benchmark's data: held-out ICT identities on many discretizations, crops and shapes, each with the
exact ground-truth expression displacement at every one of its vertices, and the expression frames they are
driven with. `Benchmark` hands them to the eval runner (`nfs.eval.run.run_benchmark`), which does not import them.

Every target is built deterministically from an identity seed >= ``EVAL_SEED_BASE`` (itself above
``HELD_OUT_SEED_BASE``, which training never draws; the first held-out seeds are used by training's validation,
so evaluation starts 1,000 seeds higher). Ground truth is linear in the 53 FACS weights, so each target stores a
basis: ``gt_displacement = weights @ target.basis``.

Categories
  ict              the ICT skin topology (11,248 vertices), ICT frame
  remesh_3k/6k     quadric decimation of the skin to ~3k / ~6k vertices, jittered, embedded in the template
  remesh_25k       decimation to ~6.3k, one midpoint subdivision (~25k), jittered, embedded
  crop_face        ICT face region (9,409 vertices)
  crop_narrow      ICT narrow face (6,706 vertices)
  neck_cut         skin with everything below y = -12.5 cm removed (largest component kept)
  exaggerated      the first 10 identity coefficients at |c| = 3..4 (random signs)
  warp_wendland    a compactly supported Wendland C2 RBF warp (training only sees Gaussian RBF warps)
  warp_features    feature-targeted scaling: bigger eyes, longer nose, wider mouth around landmark centres
  eyes             skin + the two eyeballs (three components)
  auto_align       the ICT topology moved by a random rotation, metre or millimetre scale and translation;
                   the pipeline's automatic alignment has to find the ICT frame again
  slit             an artist head: the mouth modelled slightly open (jawOpen 0.05-0.25 baked into the rest) and
                   the lids apart (eyeBlink -0.2..-0.4 baked, blink shapes scaled so a blink still closes)
  slit_bag         the same with a mouth bag behind the lips (attached to the inner lip loop)
  joined_lips      the mouth opening capped: one surface, lips joined (a scan's closed mouth)
  joined_lids      the eye openings capped: closed eyes modelled as skin over the eyeball
  stylised         eyes, mouth and nose scaled 0.7-1.6 about their centres (local plateau warps)
  closed_scan      a scan's closed mouth: lips joined by a cap, the whole head re-tessellated at ~7k vertices with
                   jitter, so the lip contact line is triangulated at scan density, not along ICT's lip edges
  game_head        a Ready Player Me-style head: the skin re-tessellated at ~5k vertices, its lips touching over a
                   closed mouth bag with a cavity, closed eye sockets behind the eye holes (both extruded from
                   the low-poly mesh's own loops), separate eyeballs and two rows of teeth
  anime            anime proportions: the nose 0.4x (height and depth), the mouth 0.5x, the eyes 1.8x about their
                   centres, one after the other (each fold-free, so their composition is), the head flattened to
                   0.75 of its depth
On artist heads the added geometry (bag, caps) is not scored for position (it is not ICT's face) but counts for
triangle flips.
On warped targets the ground truth is the warp's Jacobian at the neutral applied to the ICT displacement
(the first-order definition deformation transfer uses).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from nfs.data.artist import ArtistStyle, apply_style, feature_centres
from nfs.data.subjects import HELD_OUT_SEED_BASE
from nfs.data.warps import ComposedWarp, FeatureScaleWarp, plateau, push_through, wendland
from nfs.geometry.remesh import decimate, jitter_on_surface, subdivide_midpoint
from nfs.geometry.normals import vertex_normals
from nfs.geometry.surface import SurfaceEmbedding, closest_points_on_mesh, embed_mesh
from nfs.ict import EXPRESSION_NAMES, FACE_VERTEX_COUNT, NARROW_FACE_VERTEX_COUNT, N_IDENTITY, ICTFaceModel, load_ict
from nfs.io import load_builtin_clip
from nfs.mesh.align import Alignment
from nfs.regions import REGION_NAMES, ict_region_labels

EVAL_SEED_BASE = HELD_OUT_SEED_BASE + 1000   # training validation uses HELD_OUT_SEED_BASE + 0..9
EXPRESSION_SEED = 7_000_001                  # random FACS combinations of the benchmark
NECK_CUT_Y_CM = -12.5
CATEGORIES = ("ict", "remesh_3k", "remesh_6k", "remesh_25k", "crop_face", "crop_narrow", "neck_cut",
              "exaggerated", "warp_wendland", "warp_features", "eyes", "auto_align",
              "slit", "slit_bag", "joined_lips", "joined_lids", "stylised", "closed_scan", "game_head", "anime")
# artist-modelled heads (`nfs.data.artist`): the slit categories, the joined ones, stylised proportions, and the
# heads people bring that ICT models least like (a closed-mouth scan, a game head, anime proportions)
ARTIST_CATEGORIES = ("slit", "slit_bag", "joined_lips", "joined_lids", "stylised", "closed_scan", "game_head",
                     "anime")
REAL_HEAD_CATEGORIES = ("closed_scan", "game_head", "anime")
CLOSED_SCAN_VERTICES = 7000
GAME_HEAD_VERTICES = 5000
ANIME_SCALES = (1.8, 0.5, 0.4)      # eyes, mouth, nose
ANIME_FLATTEN = 0.75
EYE_FALLOFF = 4.0                   # an anime eye warp reaches this many plateau radii


# ----------------------------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class BenchmarkSize:
    """How big a benchmark run is. The same expression frames are used on every target."""

    name: str
    identities: int            # held-out identities in the `ict` category
    identities_other: int      # held-out identities in every other category
    categories: tuple = CATEGORIES
    clips: tuple = ("angry", "blinks", "jaw_cheeks", "pucker_funnel", "smile", "sneer_asym", "surprise", "talk")
    clip_window: int = 4       # frames taken from each clip (one window around its most active frame)
    clip_stride: int = 2       # every 2nd clip frame (15 fps)
    random_frames: int = 12    # sparse random FACS combinations (`sample_expressions`)
    cycle_frames: int = 4      # frames re-encoded for the cycle-consistency metric

    def n_identities(self, category: str) -> int:
        return self.identities if category == "ict" else self.identities_other

    @property
    def seed_base(self) -> int:
        """The first identity seed of every category (`EVAL_SEED_BASE`), for the report."""
        return EVAL_SEED_BASE

    @property
    def artist_categories(self) -> tuple:
        """The categories of artist-modelled heads (`ARTIST_CATEGORIES`), for the report's artist table."""
        return ARTIST_CATEGORIES


SIZES = {
    "full": BenchmarkSize("full", identities=3, identities_other=1),
    "quick": BenchmarkSize("quick", identities=2, identities_other=1,
                           categories=("ict", "remesh_3k", "crop_face", "warp_wendland", "eyes"),
                           clips=("blinks", "talk", "smile"), clip_window=6, random_frames=4, cycle_frames=3),
}


# ----------------------------------------------------------------------------------------------- expressions


@dataclass
class ExpressionSet:
    """The benchmark's source frames.

    weights: (T, 53) ICT FACS weights. segments: (name, start, stop) runs of consecutive clip frames
    (temporal metrics are computed inside each run). The frames after the last segment are random combinations.
    """

    weights: np.ndarray
    segments: list = field(default_factory=list)
    probe_jaw: int = -1        # the frame with jawOpen = 1 alone (lip gap)
    probe_blink: int = -1      # the frame with both eyeBlinks = 1 alone (lid gap)

    @property
    def n_frames(self) -> int:
        return len(self.weights)

    def random_frame_indices(self) -> np.ndarray:
        start = self.segments[-1][2] if self.segments else 0
        return np.arange(start, self.n_frames)


def clip_window(codes: np.ndarray, length: int, stride: int) -> np.ndarray:
    """(length, 53) frames at `stride` around the most active frame of a (T, 53) clip."""
    span = (length - 1) * stride + 1
    peak = int(np.argmax(codes.sum(1)))
    start = int(np.clip(peak - span // 2, 0, max(0, len(codes) - span)))
    idx = np.minimum(start + stride * np.arange(length), len(codes) - 1)
    return codes[idx]


def build_expressions(size: BenchmarkSize) -> ExpressionSet:
    """Clip windows followed by random sparse combinations (fixed seed)."""
    from nfs.data.subjects import sample_expressions
    frames, segments = [], []
    for name in size.clips:
        w = clip_window(load_builtin_clip(name).codes, size.clip_window, size.clip_stride)
        start = sum(len(f) for f in frames)
        segments.append((name, start, start + len(w)))
        frames.append(w)
    probes = np.zeros((2, len(EXPRESSION_NAMES)), np.float32)
    probes[0, EXPRESSION_NAMES.index("jawOpen")] = 1.0
    probes[1, [EXPRESSION_NAMES.index("eyeBlink_L"), EXPRESSION_NAMES.index("eyeBlink_R")]] = 1.0
    start = sum(len(f) for f in frames)
    segments.append(("probes", start, start + 2))
    frames.append(probes)
    frames.append(sample_expressions(np.random.default_rng(EXPRESSION_SEED), size.random_frames))
    return ExpressionSet(np.concatenate(frames).astype(np.float32), segments, probe_jaw=start,
                         probe_blink=start + 1)


# ----------------------------------------------------------------------------------------------- warps


def wendland_gradient(d: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. x of psi(|d| / R) with d = x - c: -20 (1 - s)^3 d / R^2. d (..., 3), radius broadcastable
    to d[..., 0]; returns (..., 3). Smooth at the centre."""
    s = np.linalg.norm(d, axis=-1) / radius
    t = np.clip(1.0 - s, 0.0, None)
    return (-20.0 * t ** 3 / radius ** 2)[..., None] * d


WENDLAND_MAX_SLOPE = 20.0 * 0.25 * 0.75 ** 3   # max_s |psi'(s)| = 2.109, at s = 1/4


@dataclass
class WendlandWarp:
    """x -> x + sum_k a_k psi(|x - c_k| / R_k), compactly supported (zero beyond R_k). Units cm.

    centers (K, 3), radii (K,), amplitudes (K, 3)."""

    centers: np.ndarray
    radii: np.ndarray
    amplitudes: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) -> (N, 3)."""
        d = x[:, None, :] - self.centers[None]
        phi = wendland(np.linalg.norm(d, axis=-1) / self.radii[None])
        return x + phi @ self.amplitudes

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) -> (N, 3, 3) d warp / d x."""
        d = x[:, None, :] - self.centers[None]
        grad = wendland_gradient(d, self.radii[None])          # (N, K, 3)
        return np.eye(3)[None] + np.einsum("ki,nkj->nij", self.amplitudes, grad)


def random_wendland_warp(points: np.ndarray, rng: np.random.Generator, n_centers: int = 4,
                         strength: float = 0.6, radius_range=(3.0, 7.0)) -> WendlandWarp:
    """Random warp with sum_k |a_k| max|grad psi_k| <= strength < 1 (so the Jacobian stays invertible)."""
    centers = points[rng.integers(0, len(points), n_centers)].astype(np.float64)
    radii = rng.uniform(*radius_range, n_centers)
    dirs = rng.standard_normal((n_centers, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    share = rng.dirichlet(np.ones(n_centers)) * strength
    amplitudes = dirs * (share * radii / WENDLAND_MAX_SLOPE)[:, None]
    return WendlandWarp(centers, radii, amplitudes)


def feature_scale_warp(neutral: np.ndarray, landmarks68: np.ndarray, rng: np.random.Generator) -> FeatureScaleWarp:
    """Bigger eyes (x, y scaled 1.2..1.35), a longer nose (y 1.2..1.35, z 1.1) and a wider mouth (x 1.2..1.35)
    around centres from the 68 landmarks of the neutral (V, 3) cm."""
    lm = neutral[landmarks68]
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    nose = lm[[27, 28, 29, 30, 31, 33, 35]].mean(0)
    mouth = lm[48:60].mean(0)
    e, n, m = rng.uniform(1.2, 1.35, 3)
    scales = [np.diag([e, e, 1.0]), np.diag([e, e, 1.0]), np.diag([1.0, n, 1.1]), np.diag([m, 1.0, 1.0])]
    return FeatureScaleWarp(np.stack([eye_l, eye_r, nose, mouth]).astype(np.float64),
                            inner=np.array([1.2, 1.2, 1.5, 2.0]), outer=np.array([3.6, 3.6, 4.2, 5.2]),
                            linear=np.stack(scales) - np.eye(3)[None])


# ----------------------------------------------------------------------------------------------- targets


@dataclass
class EvalTarget:
    """One target mesh with its ground truth.

    vertices (V, 3) float64 and faces (F, 3): the mesh handed to the pipeline (user frame and units).
    basis (53, V, 3) float32: ground-truth displacement per unit FACS weight, ICT frame, cm.
    to_ict: the true similarity user -> ICT frame (identity except for `auto_align`).
    auto_align: the pipeline must find the alignment itself (no override).
    face_mask / inner_mask (V,): vertices of the ICT face / narrow face region (errors are measured there).
    skin_mask (V,): skin vertices (eyeballs excluded). labels (V,): ICT region labels (-1 off the skin).
    landmarks (68,): target vertex of each dlib landmark, -1 where the target lacks it.
    ict_index (V,) or None: ICT vertex index of each vertex when the topology is a subset of the ICT mesh.
    """

    name: str
    category: str
    seed: int
    vertices: np.ndarray
    faces: np.ndarray
    basis: np.ndarray
    face_mask: np.ndarray
    inner_mask: np.ndarray
    skin_mask: np.ndarray
    labels: np.ndarray
    landmarks: np.ndarray
    to_ict: Alignment
    auto_align: bool = False
    ict_index: np.ndarray | None = None
    source_with_eyes: bool = False     # baselines transfer from the ICT head with eyeballs
    eyeball_mask: np.ndarray | None = None   # (V,) the eyeballs' vertices; None: every vertex off the skin

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)

    def ict_vertices(self) -> np.ndarray:
        """(V, 3) neutral in the (true) ICT frame, cm."""
        return self.to_ict.apply(self.vertices)

    def gt_displacement(self, weights: np.ndarray) -> np.ndarray:
        """(T, 53) -> (T, V, 3) ground-truth displacement, ICT frame, cm."""
        return np.einsum("tk,kvc->tvc", np.asarray(weights, np.float32), self.basis)

    def pipeline_alignment(self) -> Alignment | None:
        """The alignment `prepare_target` is given: None for `auto_align` (it must find one), else the identity
        (the mesh is in the ICT frame)."""
        return None if self.auto_align else identity_alignment()


def identity_alignment() -> Alignment:
    """Scale 1, rotation I, translation 0: the mesh is already in the ICT frame."""
    return Alignment(1.0, np.eye(3), np.zeros(3), 0.0, 1.0, False, 0)


def held_out_coeffs(seed: int) -> np.ndarray:
    """(100,) identity coefficients of a held-out identity (as `nfs.train.held_out_subjects` draws them)."""
    return np.random.default_rng(seed).standard_normal(N_IDENTITY).astype(np.float32)


def exaggerated_coeffs(seed: int) -> np.ndarray:
    """(100,) coefficients whose first 10 (largest) modes have |c| in [3, 4], random signs; the rest N(0, 1)."""
    rng = np.random.default_rng([seed, 11])
    c = rng.standard_normal(N_IDENTITY)
    c[:10] = rng.choice([-1.0, 1.0], 10) * rng.uniform(3.0, 4.0, 10)
    return c.astype(np.float32)


def _region_masks(template_index: np.ndarray, skin: np.ndarray | None = None):
    face = (template_index < FACE_VERTEX_COUNT) & (template_index >= 0)
    inner = (template_index < NARROW_FACE_VERTEX_COUNT) & (template_index >= 0)
    if skin is not None:
        face, inner = face & skin, inner & skin
    return face, inner


def map_landmarks(target_vertices: np.ndarray, target_labels: np.ndarray, landmark_points: np.ndarray,
                  landmark_labels: np.ndarray, max_distance_cm: float = 0.6) -> np.ndarray:
    """(68,) nearest target vertex to each landmark point among vertices with the landmark's region label
    (so an upper-lip landmark never lands on the lower lip); -1 when none is within max_distance_cm."""
    out = -np.ones(len(landmark_points), np.int64)
    for i, (p, lab) in enumerate(zip(landmark_points, landmark_labels)):
        cand = np.nonzero(target_labels == lab)[0]
        if len(cand) == 0:
            continue
        d = np.linalg.norm(target_vertices[cand] - p, axis=1)
        if d.min() <= max_distance_cm:
            out[i] = cand[int(np.argmin(d))]
    return out


def subset_target(ict: ICTFaceModel, name: str, category: str, seed: int, coeffs: np.ndarray, keep: np.ndarray,
                  faces: np.ndarray, n_model_vertices: int | None = None) -> EvalTarget:
    """A target whose vertices are ICT vertices `keep` (ascending) with faces over ICT indices (all in keep)."""
    n = int(keep.max()) + 1 if n_model_vertices is None else n_model_vertices
    allv = ict.vertices(coeffs, None, n)
    remap = -np.ones(n, np.int64)
    remap[keep] = np.arange(len(keep))
    skin = keep < ict.skin_count
    labels = np.full(len(keep), -1, np.int64)
    labels[skin] = ict_region_labels()[keep[skin]]
    face, inner = _region_masks(np.where(skin, keep, -1))
    lm = remap[ict.landmarks68]
    return EvalTarget(name, category, seed, allv[keep].astype(np.float64), remap[faces],
                      ict.expression_deltas[:, keep].astype(np.float32), face, inner, skin, labels, lm,
                      identity_alignment(), ict_index=keep)


def embedded_target(ict: ICTFaceModel, name: str, category: str, seed: int, coeffs: np.ndarray,
                    emb: SurfaceEmbedding) -> EvalTarget:
    """A new discretization of the skin given as an embedding in the ICT skin template."""
    n = ict.skin_count
    vertices = emb.apply(ict.vertices(coeffs, None, n).astype(np.float64))
    basis = emb.apply(ict.expression_deltas[:, :n])
    nearest = emb.nearest_template_vertex()
    labels = ict_region_labels()[nearest]
    face, inner = _region_masks(nearest)
    lm_idx = ict.landmarks68
    lm = map_landmarks(vertices, labels, ict.vertices(coeffs, None, n)[lm_idx], ict_region_labels()[lm_idx])
    return EvalTarget(name, category, seed, vertices, emb.faces, basis.astype(np.float32), face, inner,
                      np.ones(len(vertices), bool), labels, lm, identity_alignment())


def remesh_embedding(ict: ICTFaceModel, count: int, rng: np.random.Generator, subdivide: bool = False,
                     jitter: float = 0.2) -> SurfaceEmbedding:
    """Decimate the ICT mean skin to ~count vertices (~count/4 before one subdivision when `subdivide`),
    jitter on the surface, project back (barycentric embedding)."""
    tv, tf = ict.neutral[: ict.skin_count].astype(np.float64), ict.region_faces("skin")
    v, f = decimate(tv, tf, count // 4 if subdivide else count)
    if subdivide:
        v, f = subdivide_midpoint(v, f)
    v = jitter_on_surface(v, f, jitter, rng)
    return embed_mesh(v, f, tv, tf)


def largest_component(faces: np.ndarray, n: int) -> np.ndarray:
    """(F,) bool: faces of the largest vertex-connected component."""
    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    _, lab = connected_components(coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)), directed=False)
    face_lab = lab[faces[:, 0]]
    return face_lab == np.bincount(face_lab).argmax()


def warped_target(ict: ICTFaceModel, name: str, category: str, seed: int, coeffs: np.ndarray, warp) -> EvalTarget:
    """The ICT skin of an identity pushed through a warp; GT basis = J(neutral) @ ICT basis."""
    t = subset_target(ict, name, category, seed, coeffs, np.arange(ict.skin_count), ict.region_faces("skin"))
    jac = warp.jacobian(t.vertices)
    t.basis = push_through(jac, t.basis)
    t.vertices = warp.apply(t.vertices)
    return t


def anime_warp(centres: dict[str, np.ndarray], scales: tuple = ANIME_SCALES,
               flatten: float = ANIME_FLATTEN) -> ComposedWarp:
    """Anime proportions about the feature centres (`feature_centres`): the nose scaled by scales[2] in height and
    depth, then the mouth by scales[1] in width and height, then each eye by scales[0] in the face plane, then the
    whole head's depth by `flatten` about its front. Shrinking never folds with any fall-off (the radial stretch
    stays above 1 + a > 0), so the nose and the mouth fall off within 1.5 cm of their plateaus and do not reach
    each other; an eye grows, and its fall-off is three times its plateau wide (a growing plateau warp folds below ~1.6x)."""
    e, m, n = scales

    def one(key, linear, inner, outer, at):
        return FeatureScaleWarp(at[None].astype(np.float64), np.array([inner]), np.array([outer]),
                                (np.diag(linear) - np.eye(3))[None])

    nose = one("nose", [1.0, n, n], 1.5, 3.0, centres["nose"])
    mouth = one("mouth", [m, m, 1.0], 2.0, 3.5, nose.apply(centres["mouth"][None])[0])
    warps = [nose, mouth]
    for key in ("eye_L", "eye_R"):
        at = centres[key][None]
        for w in warps:
            at = w.apply(at)
        warps.append(one(key, [e, e, 1.0], 1.2, 1.2 * EYE_FALLOFF, at[0]))
    front = max(c[2] for c in centres.values()) + 2.0
    warps.append(LinearWarp(np.diag([1.0, 1.0, flatten]), np.array([0.0, 0.0, front])))
    return ComposedWarp(tuple(warps))


@dataclass
class LinearWarp:
    """x -> c + M (x - c): one linear map about a point (a flattened head). matrix (3, 3), centre (3,) cm."""

    matrix: np.ndarray
    centre: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        return self.centre + (np.asarray(x, np.float64) - self.centre) @ self.matrix.T

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.matrix, (len(x), 3, 3)).copy()


def artist_style(category: str, rng: np.random.Generator) -> ArtistStyle:
    """The artist modelling of an artist category's target (random within the category's ranges)."""
    if category == "closed_scan":
        return ArtistStyle(join_lips=True)
    if category == "game_head":
        return ArtistStyle(mouth_bag=True, bag_cavity_cm=1.5, eye_sockets=True)
    if category in ("slit", "slit_bag"):
        return ArtistStyle(rest_jaw=float(rng.uniform(0.05, 0.25)), lids_apart=float(rng.uniform(0.2, 0.4)),
                           mouth_bag=category == "slit_bag")
    if category == "joined_lips":
        return ArtistStyle(join_lips=True)
    if category == "joined_lids":
        return ArtistStyle(join_lids=True)
    scales = rng.uniform(0.7, 1.6, 3)
    scales[rng.integers(0, 3)] = rng.choice([0.7, 1.6])        # at least one feature at the range's end
    return ArtistStyle(feature_scales=tuple(float(x) for x in scales))


def styled_target(ict: ICTFaceModel, name: str, category: str, seed: int, coeffs: np.ndarray,
                  style: ArtistStyle) -> EvalTarget:
    """The ICT skin of an identity modelled as `style` says; added vertices (bag, caps) are off every mask but
    the skin's."""
    t = subset_target(ict, name, category, seed, coeffs, np.arange(ict.skin_count), ict.region_faces("skin"))
    return restyled(t, style, feature_centres(t.vertices, ict.landmarks68))


def restyled(t: EvalTarget, style: ArtistStyle, centres: dict) -> EvalTarget:
    """A skin target modelled as `style` says (`apply_style`; `centres` from `feature_centres` of its identity),
    in place; added vertices (bag, caps, sockets) are off every mask but the skin's."""
    styled = apply_style(t.vertices, t.faces, t.basis, t.labels, centres, style)
    extra = len(styled.vertices) - styled.n_original
    off = np.zeros(extra, bool)
    t.vertices, t.faces, t.basis = styled.vertices.astype(np.float64), styled.faces, styled.basis
    t.face_mask, t.inner_mask = np.concatenate([t.face_mask, off]), np.concatenate([t.inner_mask, off])
    t.skin_mask = np.concatenate([t.skin_mask, ~off])
    t.labels = np.concatenate([t.labels, -np.ones(extra, np.int64)])
    if extra or style.feature_scales:
        t.ict_index = None
    return t


def remeshed_styled_target(ict: ICTFaceModel, target: EvalTarget, count: int, rng: np.random.Generator,
                           jitter: float = 0.2) -> EvalTarget:
    """A styled target (`styled_target`: skin with any cap or bag) re-tessellated as a scan would be: decimated to
    ~count vertices, jittered on the surface, embedded back (barycentric ground truth). Masks and labels come from
    each new vertex's nearest styled vertex (added geometry stays off the face masks)."""
    tv, tf = target.vertices, target.faces
    v, f = decimate(tv, tf, count)
    v = jitter_on_surface(v, f, jitter, rng)
    # by normals, so a vertex of the upper lip is not embedded on the lower lip it touches
    _, tri, bary, _ = closest_points_on_mesh(v, tv, tf, point_normals=vertex_normals(v, f), min_normal_dot=0.0)
    emb = SurfaceEmbedding(np.asarray(f, np.int64), tri, bary.astype(np.float32), np.asarray(tf, np.int64), len(tv))
    nearest = emb.nearest_template_vertex()
    vertices = emb.apply(tv)
    labels = target.labels[nearest]
    lm = map_landmarks(vertices, labels, tv[target.landmarks], target.labels[target.landmarks])
    return EvalTarget(target.name, target.category, target.seed, vertices, emb.faces,
                      emb.apply(target.basis).astype(np.float32), target.face_mask[nearest],
                      target.inner_mask[nearest], target.skin_mask[nearest], labels, lm, identity_alignment())


def teeth_rows(skin: np.ndarray, landmarks68: np.ndarray, segments: int = 16) -> list[np.ndarray]:
    """Two rows of teeth behind the lips of a head (skin (V, 3) cm, ICT frame) as closed boxes bent along an arch:
    [(vertices (N, 3), faces (G, 3))] for the upper and the lower row (a game head's separate teeth)."""
    lips = landmarks68[60:68]
    mouth = skin[lips[lips >= 0]].mean(0)
    out = []
    for top, bottom in ((mouth[1] + 0.05, mouth[1] - 0.75), (mouth[1] - 0.95, mouth[1] - 1.7)):
        angle = np.linspace(-1.2, 1.2, segments + 1)
        front = np.stack([1.9 * np.sin(angle), np.zeros_like(angle), mouth[2] - 0.7 - 1.6 * (1 - np.cos(angle))], 1)
        inner = front * np.array([0.75, 1.0, 1.0]) - np.array([0.0, 0.0, 0.35])
        inner[:, 2] = front[:, 2] - 0.5
        ring = [front + [mouth[0], top, 0], front + [mouth[0], bottom, 0], inner + [mouth[0], bottom, 0],
                inner + [mouth[0], top, 0]]
        v = np.stack(ring, 1).reshape(-1, 3)                   # (segments + 1) x 4 around the box's section
        faces = []
        for i in range(segments):
            for j in range(4):
                a, b = 4 * i + j, 4 * i + (j + 1) % 4
                c, d = a + 4, b + 4
                faces += [[a, c, b], [b, c, d]]
        for cap, flip in ((0, False), (4 * segments, True)):
            tri = [[cap, cap + 1, cap + 2], [cap, cap + 2, cap + 3]]
            faces += [t[::-1] for t in tri] if flip else tri
        out.append((v, np.asarray(faces, np.int64)))
    return out


def game_head_target(ict: ICTFaceModel, target: EvalTarget) -> EvalTarget:
    """A styled skin (bag, sockets) with ICT's eyeballs and two rows of teeth added as separate components. The
    truth keeps the eyeballs and the upper teeth still (the ICT model's eyeballs do not move) and moves the lower
    teeth with the mean displacement of the chin; neither the teeth nor the eyeballs are scored for position."""
    n = len(target.vertices)
    eyes = np.arange(ict.skin_count, len(ict.neutral))
    coeffs = held_out_coeffs(target.seed)
    eye_v = ict.vertices(coeffs, None, len(ict.neutral))[eyes].astype(np.float64)
    eye_f = ict.eyeball_faces() - ict.skin_count + n
    upper, lower = teeth_rows(target.vertices, target.landmarks)
    jaw = target.basis[:, target.labels == REGION_NAMES.index("chin")].mean(1)          # (53, 3)
    parts_v = [target.vertices, eye_v, upper[0], lower[0]]
    offsets = np.cumsum([0] + [len(x) for x in parts_v])
    faces = np.concatenate([target.faces, eye_f, upper[1] + offsets[2], lower[1] + offsets[3]])
    k = target.basis.shape[0]
    basis = np.concatenate([target.basis, np.zeros((k, len(eye_v) + len(upper[0]), 3), np.float32),
                            np.repeat(jaw[:, None], len(lower[0]), 1).astype(np.float32)], axis=1)
    extra = offsets[-1] - n
    off = np.zeros(extra, bool)
    eyeball = np.concatenate([np.zeros(n, bool), np.ones(len(eye_v), bool), np.zeros(extra - len(eye_v), bool)])
    return EvalTarget(target.name, target.category, target.seed, np.concatenate(parts_v), faces, basis,
                      np.concatenate([target.face_mask, off]), np.concatenate([target.inner_mask, off]),
                      np.concatenate([target.skin_mask, off]), np.concatenate([target.labels, -np.ones(extra, int)]),
                      target.landmarks, identity_alignment(), eyeball_mask=eyeball)


def random_similarity(rng: np.random.Generator) -> Alignment:
    """A random user frame: uniform random rotation, metres (0.01 per cm) or millimetres (10 per cm), a random
    offset. Returned as the true user -> ICT transform."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    rot = q * np.sign(np.diag(r))[None]
    if np.linalg.det(rot) < 0:
        rot[:, 0] *= -1
    units_per_cm = float(rng.choice([0.01, 10.0]))
    offset = rng.normal(0, 20.0, 3) * units_per_cm          # user units
    # user = units * rot @ ict + offset  ->  ict = rot.T (user - offset) / units
    scale = 1.0 / units_per_cm
    return Alignment(scale, rot.T, -scale * rot.T @ offset, 0.0, 1.0, False, 0)


def build_target(category: str, index: int, ict: ICTFaceModel | None = None) -> EvalTarget:
    """The index-th target of a category (identity seed EVAL_SEED_BASE + index)."""
    ict = ict or load_ict()
    seed = EVAL_SEED_BASE + index
    coeffs = held_out_coeffs(seed)
    rng = np.random.default_rng([seed, CATEGORIES.index(category)])
    name = f"{category}/{seed}"
    skin_faces = ict.region_faces("skin")
    if category == "ict":
        return subset_target(ict, name, category, seed, coeffs, np.arange(ict.skin_count), skin_faces)
    if category in ("remesh_3k", "remesh_6k", "remesh_25k"):
        count = {"remesh_3k": 3000, "remesh_6k": 6000, "remesh_25k": 25000}[category]
        emb = remesh_embedding(ict, count, rng, subdivide=category == "remesh_25k",
                               jitter=0.15 if category == "remesh_25k" else 0.2)
        return embedded_target(ict, name, category, seed, coeffs, emb)
    if category in ("crop_face", "crop_narrow"):
        region = "face" if category == "crop_face" else "narrow_face"
        n = ict.region_vertex_count(region)
        return subset_target(ict, name, category, seed, coeffs, np.arange(n), ict.region_faces(region))
    if category == "neck_cut":
        v = ict.vertices(coeffs)
        keep_v = v[:, 1] >= NECK_CUT_Y_CM
        f = skin_faces[keep_v[skin_faces].all(1)]
        f = f[largest_component(f, ict.skin_count)]
        return subset_target(ict, name, category, seed, coeffs, np.unique(f), f, ict.skin_count)
    if category == "exaggerated":
        return subset_target(ict, name, category, seed, exaggerated_coeffs(seed), np.arange(ict.skin_count),
                             skin_faces)
    if category == "warp_wendland":
        v = ict.vertices(coeffs, None, NARROW_FACE_VERTEX_COUNT).astype(np.float64)
        return warped_target(ict, name, category, seed, coeffs, random_wendland_warp(v, rng))
    if category == "warp_features":
        v = ict.vertices(coeffs).astype(np.float64)
        return warped_target(ict, name, category, seed, coeffs, feature_scale_warp(v, ict.landmarks68, rng))
    if category == "eyes":
        t = subset_target(ict, name, category, seed, coeffs, np.arange(len(ict.neutral)), ict.faces)
        t.source_with_eyes = True
        return t
    if category == "auto_align":
        t = subset_target(ict, name, category, seed, coeffs, np.arange(ict.skin_count), skin_faces)
        t.to_ict = random_similarity(rng)
        t.vertices = t.to_ict.inverse(t.vertices)
        t.auto_align = True
        return t
    if category == "anime":
        v = ict.vertices(coeffs).astype(np.float64)
        return warped_target(ict, name, category, seed, coeffs, anime_warp(feature_centres(v, ict.landmarks68)))
    if category == "game_head":      # a low-poly skin, then the bag and sockets extruded from its own loops
        t = subset_target(ict, name, category, seed, coeffs, np.arange(ict.skin_count), skin_faces)
        centres = feature_centres(t.vertices, ict.landmarks68)
        t = remeshed_styled_target(ict, t, GAME_HEAD_VERTICES, rng, jitter=0.1)
        return game_head_target(ict, restyled(t, artist_style(category, rng), centres))
    if category in ARTIST_CATEGORIES:
        t = styled_target(ict, name, category, seed, coeffs, artist_style(category, rng))
        if category == "closed_scan":
            return remeshed_styled_target(ict, t, CLOSED_SCAN_VERTICES, rng)
        return t
    raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")


def target_specs(size: BenchmarkSize, categories: tuple | None = None) -> list[tuple[str, int]]:
    """(category, index) of every target of a benchmark size, in category order (`build_target` builds one)."""
    cats = size.categories if categories is None else tuple(c for c in size.categories if c in categories)
    return [(c, i) for c in cats for i in range(size.n_identities(c))]


def build_targets(size: BenchmarkSize, categories: tuple | None = None) -> list[EvalTarget]:
    """All targets of a benchmark size, in category order."""
    ict = load_ict()
    return [build_target(c, i, ict) for c, i in target_specs(size, categories)]


@dataclass(frozen=True)
class Benchmark:
    """One run's benchmark, handed to `nfs.eval.run.run_benchmark`: its size, the categories run (None: all of the
    size's), the expression frames and the targets, built one at a time in whichever process evaluates them."""

    size: BenchmarkSize
    categories: tuple | None = None

    def expressions(self) -> ExpressionSet:
        return build_expressions(self.size)

    def specs(self) -> list[tuple[str, int]]:
        """(category, index) of every target, in category order."""
        return target_specs(self.size, self.categories)

    def target(self, category: str, index: int) -> EvalTarget:
        return build_target(category, index)
