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

from nfs.geometry.openings import boundary_loops, geodesic_distances, loop_halves, sparse_adjacency
from nfs.geometry.surface import closest_points_on_mesh
from nfs.ict import EXPRESSION_NAMES, N_EXPRESSION, load_ict
from nfs.regions import REGION_NAMES, ict_region_labels

# Expression shapes fitted with the identity to the target's rest pose, with their bounds: a mouth modelled
# slightly open (lip slit) fits jawOpen > 0, eyes modelled wide open fit eyeBlink < 0, so that closest points are
# taken on an ICT face posed like the target and never put a lower-lip vertex on the upper lip. Blinks stop at 0:
# an eye closed over by skin (a scan's cap over the eyeball) must not be read as a closed eyelid.
REST_POSE_BOUNDS = {"jawOpen": (0.0, 0.5), "eyeBlink_L": (-0.6, 0.0), "eyeBlink_R": (-0.6, 0.0)}


@functools.lru_cache(maxsize=1)
def _template():
    """ICT mean skin (S, 3) cm float64, its faces, expression deltas (53, S, 3) and identity deltas (100, S, 3)."""
    ict = load_ict()
    v, f = ict.skin_mesh()
    s = ict.skin_count
    return (v.astype(np.float64), np.asarray(f, np.int64), ict.expression_deltas[:, :s],
            ict.identity_deltas[:, :s].astype(np.float64))


@functools.lru_cache(maxsize=1)
def _pose_deltas() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Indices (P,) of the rest-pose shapes, their deltas (P, S, 3) float64 and bounds (P,), (P,)."""
    _, _, deltas, _ = _template()
    idx = np.array([EXPRESSION_NAMES.index(n) for n in REST_POSE_BOUNDS])
    lo, hi = np.array(list(REST_POSE_BOUNDS.values()), np.float64).T
    return idx, deltas[idx].astype(np.float64), lo, hi


@dataclass
class FaceFit:
    """An ICT face fitted to points: coefficients, and the transform q = scale * p @ rotation.T + translation that
    takes the points into the ICT model's frame (the automatic alignment is close, not exact; `fit_ict_face`
    refines rotation and translation and keeps scale 1)."""

    coeffs: np.ndarray        # (100,) identity coefficients
    scale: float
    rotation: np.ndarray      # (3, 3)
    translation: np.ndarray   # (3,)
    pose: np.ndarray | None = None  # (len(REST_POSE_BOUNDS),) rest-pose expression weights, None: neutral

    def expression_weights(self) -> np.ndarray:
        """(53,) FACS weights of the fitted rest pose (zero but for REST_POSE_BOUNDS' shapes)."""
        w = np.zeros(N_EXPRESSION)
        if self.pose is not None:
            w[_pose_deltas()[0]] = self.pose
        return w

    def to_model(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation

    def vectors_from_model(self, vectors: np.ndarray) -> np.ndarray:
        """(..., 3) displacements in the model frame -> the points' frame."""
        return vectors @ self.rotation / self.scale

    def face(self) -> np.ndarray:
        """(S, 3) the fitted ICT skin, cm: mean + identity modes + the rest pose."""
        mean, _, _, identity = _template()
        out = mean + np.tensordot(self.coeffs.astype(np.float64), identity, axes=1)
        if self.pose is not None:
            out = out + np.tensordot(self.pose, _pose_deltas()[1], axes=1)
        return out


def _rotation(omega: np.ndarray) -> np.ndarray:
    """Rodrigues: rotation matrix of the rotation vector omega (3,)."""
    angle = float(np.linalg.norm(omega))
    if angle < 1e-12:
        return np.eye(3)
    k = omega / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def fit_ict_face(points: np.ndarray, iterations: int = 10, n_points: int = 2000, noise_cm: float = 0.02,
                 point_weight: float = 0.01, rigid: bool = True, seed: int = 0, rest_pose: bool = True) -> FaceFit:
    """The ICT face (100 identity coefficients, and with `rigid` a rotation and translation refining the
    alignment) that best fits points (N, 3) in the ICT frame (cm).

    Alternates closest points of (a fixed random subset of) the points on the current face with a linearised
    least-squares solve: point-to-plane residuals (along the face normal, so the fit does not stall sliding along
    the surface) plus `point_weight` times the point-to-point ones, point noise `noise_cm`, a unit Gaussian prior
    on the coefficients (the ICT model's own scale), none on the rigid motion, and points far from the face
    (non-face parts, stylized features) down-weighted by 1 / (1 + (d / s)^2), s = 1 cm for two iterations, then
    3 x the median distance within [1 mm, 1 cm]. One-sided (points to face), so a
    crop fits the part of the face it covers; points more than 2 mm behind the face (inside the head) are
    down-weighted with a 2 mm scale instead. An ICT identity is recovered to ~0.01 mm in 10 iterations. With `rest_pose`, the weights of REST_POSE_BOUNDS' shapes (jaw, blinks) are fitted too, within their bounds,
    under the same unit prior: the target's rest pose (a mouth modelled open, eyes modelled wide)."""
    mean, faces, _, identity = _template()
    if rest_pose:
        _, pose_deltas, pose_lo, pose_hi = _pose_deltas()
        identity = np.concatenate([identity, pose_deltas])
    p = np.asarray(points, np.float64)
    if len(p) > n_points:
        p = p[np.random.default_rng(seed).choice(len(p), n_points, replace=False)]
    n_modes, n_rigid = len(identity), 6 if rigid else 0
    fit = FaceFit(np.zeros(n_modes), 1.0, np.eye(3), np.zeros(3))
    n_id = n_modes - (len(pose_deltas) if rest_pose else 0)
    for it in range(iterations):
        face = mean + np.tensordot(fit.coeffs, identity, axes=1)
        q = fit.to_model(p)
        _, tri, bary, dist = closest_points_on_mesh(q, face, faces)
        corners = faces[tri]
        normal = np.cross(face[corners[:, 1]] - face[corners[:, 0]], face[corners[:, 2]] - face[corners[:, 0]])
        normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
        # unknowns x = [coefficients, rotation vector omega, translation tau]: the face moves by its modes and
        # the points by q' = q + omega x q + tau; face(c) - q' at the closest point is linear in x:
        # A c - (omega x q) - tau = q - face(0). (No scale: one-sided, shrinking the points would fit anything;
        # the identity modes carry the face's size.)
        a = np.zeros((len(q), 3, n_modes + n_rigid))
        a[:, :, :n_modes] = np.einsum("kvjc,vj->vck", identity[:, corners], bary)
        if rigid:
            qx = np.zeros((len(q), 3, 3))                     # [q]x omega = q x omega = -(omega x q)
            qx[:, 0, 1], qx[:, 0, 2], qx[:, 1, 2] = -q[:, 2], q[:, 1], -q[:, 0]
            qx[:, 1, 0], qx[:, 2, 0], qx[:, 2, 1] = q[:, 2], -q[:, 1], q[:, 0]
            a[:, :, n_modes:n_modes + 3] = qx
            a[:, :, n_modes + 3:] = -np.eye(3)
        r = q - np.einsum("vjc,vj->vc", mean[corners], bary)                           # (N, 3)
        # behind the face (inside the head: a mouth bag, a throat, eye sockets) is down-weighted much harder than
        # in front of it (stylised features), so hidden geometry cannot drag the face in
        # the robust scale shrinks to 3x the median residual as the fit converges (no less than 1 mm), so geometry
        # ICT does not have (a closed-over mouth or eye, a mouth bag) stops pulling the face once the rest fits
        inside = np.einsum("vc,vc->v", q - np.einsum("vjc,vj->vc", face[corners], bary), normal) < -0.2
        scale = np.clip(3.0 * np.median(dist), 0.1, 1.0) if it >= 2 else 1.0
        w = np.sqrt(1.0 / (1.0 + (dist / np.where(inside, 0.2, scale)) ** 2))[:, None]
        rows = np.concatenate([np.einsum("vc,vck->vk", normal, a) * w,
                               np.sqrt(point_weight) * (a * w[:, :, None]).reshape(-1, a.shape[-1])])
        rhs = np.concatenate([np.einsum("vc,vc->v", normal, r) * w[:, 0],
                              np.sqrt(point_weight) * (r * w).reshape(-1)])
        reg = np.zeros(a.shape[-1])
        reg[:n_modes] = noise_cm ** 2
        x = np.linalg.solve(rows.T @ rows + np.diag(reg) + 1e-9 * np.eye(len(reg)), rows.T @ rhs)
        fit.coeffs = x[:n_modes]
        if rest_pose:
            fit.coeffs[n_id:] = np.clip(fit.coeffs[n_id:], pose_lo, pose_hi)
        if rigid:
            rot, tau = _rotation(x[n_modes:n_modes + 3]), x[n_modes + 3:]
            fit.rotation = rot @ fit.rotation
            fit.translation = rot @ fit.translation + tau
    if rest_pose:
        fit.pose = fit.coeffs[n_id:].astype(np.float64)
    fit.coeffs = fit.coeffs[:n_id].astype(np.float32)
    return fit


def fit_ict_identity(points: np.ndarray, **kwargs) -> np.ndarray:
    """ICT identity coefficients (100,) of the face fitted to points (N, 3) in the ICT frame (cm): `fit_ict_face`."""
    return fit_ict_face(points, **kwargs).coeffs


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


OFF_SURFACE_CM = 0.15   # a vertex this far from the fitted face is geometry ICT does not have there

OPENINGS = (Opening("mouth", "upper_lip", "lower_lip", 2.0, 0.4),
            Opening("eye_L", "upper_eyelid_L", "lower_eyelid_L", 1.0, 0.2),
            Opening("eye_R", "upper_eyelid_R", "lower_eyelid_R", 1.0, 0.2))


@functools.lru_cache(maxsize=1)
def ict_opening_loops() -> dict[str, np.ndarray]:
    """Boundary loop (vertex indices) of each ICT skin opening, by name (the one whose vertices carry the
    opening's lip / lid labels most)."""
    _, tf, _, _ = _template()
    labels = ict_region_labels()
    out = {}
    for loop in boundary_loops(tf):
        for o in OPENINGS:
            ids = [REGION_NAMES.index(o.upper), REGION_NAMES.index(o.lower)]
            if np.isin(labels[loop], ids).mean() > 0.4:
                out[o.name] = loop
    return out


def opening_sides(points: np.ndarray, faces: np.ndarray, face: np.ndarray,
                  closest_labels: np.ndarray, closest_dist: np.ndarray) -> list[tuple[Opening, np.ndarray, np.ndarray]]:
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
    bool: there too, the geometry off the fitted face near the opening) for each opening the target has."""
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
    dist = geodesic_distances(points, faces, requests)
    out = []
    for i, (o, has_loop) in enumerate(found):
        d_up, d_low = dist[2 * i], dist[2 * i + 1]
        near = np.minimum(d_up, d_low) < o.radius_cm
        clear = near & (np.abs(d_up - d_low) > o.clear_margin_cm)
        side = np.where(clear, np.where(d_up < d_low, 1, -1), 0).astype(np.int8)
        seam = near & (np.abs(d_up - d_low) < o.seam_margin_cm) & (not has_loop)
        # geometry off the ICT surface across a joined opening (a cap over the eye, a bag behind the lips) is to
        # stretch between the sides, whichever side it is nearer
        stretch = near & (closest_dist > OFF_SURFACE_CM) & (not has_loop)
        out.append((o, side, seam, stretch))
    return out


@functools.lru_cache(maxsize=1)
def ict_opening_sides() -> dict[str, np.ndarray]:
    """(S,) int8 side of every ICT skin vertex for each opening (`opening_sides` on the ICT mean skin itself),
    so that a target and the ICT face are split by one and the same rule."""
    mean, tf, _, _ = _template()
    labels = ict_region_labels()[: len(mean)]
    return {o.name: side for o, side, _, _ in opening_sides(mean, tf, mean, labels, np.zeros(len(mean)))}


def side_aware_closest_points(q: np.ndarray, faces: np.ndarray | None, face: np.ndarray, tf: np.ndarray):
    """Closest points of q (V, 3) on the fitted face (S, 3) with triangles tf, that never cross an opening: a
    vertex on the upper side of the mouth (`opening_sides`) whose closest point lies on the lower side of the ICT
    mouth (`ict_opening_sides`) is moved to its closest point among the triangles off that side, and so on for
    each side of each opening. Returns (tri (V,), bary (V, 3), labels (V,) the ICT region at each closest point,
    and the masks (V,) of `opening_sides`: seam, stretch, and clear (clearly on one side, neither of the others))."""
    labels_ict = ict_region_labels()
    _, tri, bary, dist = closest_points_on_mesh(q, face, tf)
    nearest = tf[tri, np.argmax(bary, axis=1)]
    seam, stretch, clear = np.zeros(len(q), bool), np.zeros(len(q), bool), np.zeros(len(q), bool)
    if faces is not None and len(faces):
        ict_sides = ict_opening_sides()
        for o, side, on_seam, off_face in opening_sides(q, faces, face, labels_ict[nearest], dist):
            seam |= on_seam
            stretch |= off_face
            clear |= side != 0
            ict_side = ict_sides[o.name]
            for sign in (1, -1):
                wrong = np.nonzero((side == sign) & (ict_side[nearest] == -sign))[0]
                if not len(wrong):
                    continue
                allowed = np.nonzero(~(ict_side[tf] == -sign).any(1))[0]
                used, sub = np.unique(tf[allowed], return_inverse=True)   # candidates come from used vertices only
                _, t2, b2, _ = closest_points_on_mesh(q[wrong], face[used], sub.reshape(-1, 3))
                tri[wrong], bary[wrong] = allowed[t2], b2
                nearest[wrong] = tf[tri[wrong], np.argmax(bary[wrong], axis=1)]
    return tri, bary, labels_ict[nearest], seam, stretch, clear & ~seam & ~stretch


def template_expression_basis(vertices_ict: np.ndarray, fit_identity: bool = True,
                              faces: np.ndarray | None = None) -> np.ndarray:
    """(V, 3) vertices in the ICT frame (cm) -> (53, V, 3) ICT expression deltas at each vertex's closest point
    (barycentric interpolation) on the ICT face fitted to the vertices (identity, rest pose and a refined rigid
    motion; with `fit_identity=False`: the mean face as the vertices are).

    With the target's `faces` (F, 3): closest points never cross the mouth or an eye (`side_aware_closest_points`),
    seams where the target joins lips or lids are relaxed (`smooth_lip_seam`), and a target whose eyes are modelled
    wider open than ICT's (rest eyeBlink < 0) gets blink shapes that still close them."""
    mean, tf, deltas, _ = _template()
    v = np.asarray(vertices_ict, np.float64)
    fit = fit_ict_face(v) if fit_identity else FaceFit(np.zeros(1), 1.0, np.eye(3), np.zeros(3))
    face = fit.face() if fit_identity else mean
    q = fit.to_model(v)
    tri, bary, labels, seam, stretch, clear = side_aware_closest_points(q, faces if fit_identity else None, face, tf)
    out = np.einsum("kvjc,vj->kvc", deltas[:, tf[tri]], bary.astype(np.float32))
    out = fit.vectors_from_model(out).astype(np.float32)
    assert out.shape[0] == N_EXPRESSION
    rest = fit.expression_weights()
    for name in ("eyeBlink_L", "eyeBlink_R"):
        k = EXPRESSION_NAMES.index(name)
        if rest[k] < -0.05:
            out[k] *= np.float32(1.0 - rest[k])
    if faces is not None and len(faces):
        ambiguous = lip_ambiguity(q, face, tf, labels) | seam
        out = smooth_lip_seam(out, np.asarray(faces, np.int64), labels, ambiguous, keep=clear, stretch=stretch,
                              vertices=v)
    return out


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
    out[idx] = np.abs(dist[0] - dist[1]) < margin_cm
    return out


def _robust_laplacian(vertices: np.ndarray, faces: np.ndarray) -> sp.csr_matrix:
    """(V, V) cotangent Laplacian of a triangle mesh (`robust_laplacian`: also for non-manifold meshes)."""
    import robust_laplacian

    laplacian, _ = robust_laplacian.mesh_laplacian(np.asarray(vertices, np.float64), np.asarray(faces, np.int64))
    return laplacian.tocsr()


def smooth_lip_seam(basis: np.ndarray, faces: np.ndarray, labels: np.ndarray, ambiguous: np.ndarray | None = None,
                    rings: int = 2, keep: np.ndarray | None = None, stretch: np.ndarray | None = None,
                    vertices: np.ndarray | None = None) -> np.ndarray:
    """Where the target mesh joins the two sides of an opening (an edge between a vertex carried from the upper
    lip and one from the lower lip, or from the upper and lower lid: a mouth or eye modelled closed), closest
    points split the seam vertices between the sides and opening the mouth (closing the eye) tears spikes or
    crumples the surface. The basis on the seam and `rings` rings around it is replaced by the harmonic
    interpolation (graph Laplacian) of the basis around it, so the seam stretches smoothly instead. `keep`
    (vertices clearly on one side of an opening) stay as they are; `stretch` (geometry off the face across a
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
    adjacency = sparse_adjacency(faces, n)
    for _ in range(rings):
        free |= (adjacency @ free.astype(np.float64)) > 0
    if keep is not None:
        free &= ~keep
    if stretch is not None:
        free |= stretch
    # the harmonic fill, solved directly with the cotangent (robust) Laplacian of the target's rest shape, which
    # keeps the fill's triangles in proportion (a relaxation left half-way keeps steps that fold triangles)
    laplacian = _robust_laplacian(vertices, faces) if vertices is not None else (
        sp.diags(np.asarray(adjacency.sum(1)).ravel()) - adjacency).tocsr()
    flat = basis.transpose(1, 0, 2).reshape(n, -1).astype(np.float64)
    f_idx, h_idx = np.nonzero(free)[0], np.nonzero(~free)[0]
    l_ff = laplacian[f_idx][:, f_idx].tocsc() + 1e-9 * sp.eye(len(f_idx), format="csc")
    flat[f_idx] = spla.splu(l_ff).solve(-(laplacian[f_idx][:, h_idx] @ flat[h_idx]))
    return flat.reshape(n, len(basis), 3).transpose(1, 0, 2).astype(np.float32)


def fit_ict_weights(displacements: np.ndarray, basis: np.ndarray, iterations: int = 300,
                    ridge: float = 1e-4) -> np.ndarray:
    """Bounded least-squares FACS weights w in [0, 1]^53 with displacements[t] ~ sum_k w[t, k] basis[k].

    displacements (T, V, 3), basis (53, V, 3) (e.g. `template_expression_basis` of the source neutral), both cm.
    Solved for all frames at once by accelerated projected gradient on the 53x53 normal equations.
    """
    b = basis.reshape(len(basis), -1).astype(np.float64)          # (53, 3V)
    d = displacements.reshape(len(displacements), -1).astype(np.float64)  # (T, 3V)
    gram = b @ b.T
    gram += ridge * np.trace(gram) / len(gram) * np.eye(len(gram))
    rhs = d @ b.T                                                  # (T, 53)
    step = 1.0 / np.linalg.eigvalsh(gram)[-1]
    w = np.clip(rhs @ np.linalg.pinv(gram), 0.0, 1.0)
    y, t = w.copy(), 1.0
    for _ in range(iterations):
        w_next = np.clip(y - step * (y @ gram - rhs), 0.0, 1.0)
        t_next = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        y = w_next + (t - 1) / t_next * (w_next - w)
        w, t = w_next, t_next
    return w.astype(np.float32)
