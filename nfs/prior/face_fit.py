"""The ICT face fitted to a target: identity coefficients (100 modes), the target's rest pose (jaw, blinks) and a
refined rigid motion, by point-to-plane least squares under the model's Gaussian prior (`fit_ict_face`); and FACS
weights fitted to displacements on a basis by bounded least squares (`fit_ict_weights`). No torch here: the
template prior (`nfs.prior.template`) and the mesh-sequence sources build on these fits.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from nfs.blas_threads import single_blas_thread
from nfs.geometry.openings import boundary_loops
from nfs.geometry.rotations import rotation_from_vector
from nfs.geometry.surface import closest_points_on_mesh, vertex_face_table
from nfs.ict import EXPRESSION_NAMES, N_EXPRESSION, N_IDENTITY, load_ict

# Expression shapes fitted with the identity to the target's rest pose, with their bounds: a mouth modelled
# slightly open (lip slit) fits jawOpen > 0, eyes modelled wide open fit eyeBlink < 0, so that closest points are
# taken on an ICT face posed like the target and never put a lower-lip vertex on the upper lip. Blinks stop at 0:
# an eye closed over by skin (a scan's cap over the eyeball) must not be read as a closed eyelid.
REST_POSE_BOUNDS = {"jawOpen": (0.0, 0.5), "eyeBlink_L": (-0.6, 0.0), "eyeBlink_R": (-0.6, 0.0)}


@functools.lru_cache(maxsize=1)
def skin_template():
    """ICT mean skin (S, 3) cm float64, its faces, expression deltas (53, S, 3) and identity deltas (100, S, 3)
    float64 (read-only: the first modes of `_fitted_modes`)."""
    ict = load_ict()
    v, f = ict.skin_mesh()
    s = ict.skin_count
    return (v.astype(np.float64), np.asarray(f, np.int64), ict.expression_deltas[:, :s],
            _fitted_modes()[:N_IDENTITY])


@functools.lru_cache(maxsize=1)
def _fitted_modes() -> np.ndarray:
    """(100 + P, S, 3) float64, read-only: the ICT identity modes on the skin, then the deltas of
    REST_POSE_BOUNDS' expression shapes, in one array (the fit's modes without a copy)."""
    ict = load_ict()
    s = ict.skin_count
    idx = [EXPRESSION_NAMES.index(n) for n in REST_POSE_BOUNDS]
    out = np.empty((N_IDENTITY + len(idx), s, 3))
    out[:N_IDENTITY] = ict.identity_deltas[:, :s]
    out[N_IDENTITY:] = ict.expression_deltas[idx, :s]
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=1)
def _pose_deltas() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Indices (P,) of the rest-pose shapes, their deltas (P, S, 3) float64 and bounds (P,), (P,)."""
    idx = np.array([EXPRESSION_NAMES.index(n) for n in REST_POSE_BOUNDS])
    lo, hi = np.array(list(REST_POSE_BOUNDS.values()), np.float64).T
    return idx, _fitted_modes()[N_IDENTITY:], lo, hi


@functools.lru_cache(maxsize=2)
def _fit_modes(rest_pose: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What every fit works with, built once: the fitted modes (M, S, 3) float64 (the 100 identity modes, then
    with `rest_pose` REST_POSE_BOUNDS' expression shapes), the same as (S, 3, M) (interpolated at each closest
    point) and the skin's vertex -> faces table. Read-only."""
    mean, faces, _, _ = skin_template()
    identity = _fitted_modes() if rest_pose else _fitted_modes()[:N_IDENTITY]
    modes_vck = np.ascontiguousarray(identity.transpose(1, 2, 0))
    table = vertex_face_table(faces, len(mean))
    for a in (modes_vck, table):
        a.flags.writeable = False
    return identity, modes_vck, table


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
    iterations: int = 0             # iterations the fit took (`fit_ict_face`)

    def expression_weights(self) -> np.ndarray:
        """(53,) FACS weights of the fitted rest pose (zero but for REST_POSE_BOUNDS' shapes)."""
        w = np.zeros(N_EXPRESSION)
        if self.pose is not None:
            w[_pose_deltas()[0]] = self.pose
        return w

    def to_model(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation

    def vectors_from_model(self, vectors: np.ndarray, out: np.ndarray | None = None,
                           block: int = 1 << 18) -> np.ndarray:
        """(..., 3) displacements in the model frame -> the points' frame, float32 for float32 input (else
        float64), a block of rows at a time into `out` (may be `vectors` itself)."""
        vectors = np.asarray(vectors)
        dtype = np.float32 if vectors.dtype == np.float32 else np.float64
        flat = np.ascontiguousarray(vectors, dtype).reshape(-1, 3)
        result = np.empty(vectors.shape, dtype) if out is None else out
        dest = result.reshape(-1, 3)
        matrix = (self.rotation / self.scale).astype(dtype)
        for s0 in range(0, len(flat), block):
            dest[s0:s0 + block] = flat[s0:s0 + block] @ matrix
        return result

    def face(self) -> np.ndarray:
        """(S, 3) the fitted ICT skin, cm: mean + identity modes + the rest pose."""
        mean, _, _, identity = skin_template()
        out = mean + np.tensordot(self.coeffs.astype(np.float64), identity, axes=1)
        if self.pose is not None:
            out = out + np.tensordot(self.pose, _pose_deltas()[1], axes=1)
        return out


@single_blas_thread()
def fit_ict_face(points: np.ndarray, iterations: int = 20, n_points: int = 2000, noise_cm: float = 0.02,
                 point_weight: float = 0.01, rigid: bool = True, seed: int = 0, rest_pose: bool = True,
                 converged: float = 1e-3, stages: tuple = ((4, 10), (8, 30))) -> FaceFit:
    """The ICT face (100 identity coefficients, and with `rigid` a rotation and translation refining the
    alignment) that best fits points (N, 3) in the ICT frame (cm).

    Alternates closest points of (a fixed random subset of) the points on the current face with a linearised
    least-squares solve: point-to-plane residuals (along the face normal, so the fit does not stall sliding along
    the surface) plus `point_weight` times the point-to-point ones, point noise `noise_cm`, a unit Gaussian prior
    on the coefficients (the ICT model's own scale), none on the rigid motion, and points far from the face
    (non-face parts, stylized features) down-weighted by 1 / (1 + (d / s)^2), s = 1 cm for two iterations, then
    3 x the median distance within [0.3 mm, 1 cm]. One-sided (points to face), so a crop fits the part of the face
    it covers. Coarse to fine (`stages`: (until iteration, modes free) pairs): the 10 largest identity modes alone
    first, then 30, then all, as a face far from the mean (|c| = 3-4 on its largest modes) otherwise stops in a
    wrong fit 10-13 mm off on the chin, its points sliding along the surface instead of into place. Stops after
    `iterations`, or past the stages once no coefficient moves by more than `converged` (and the rigid motion by
    less than 1e-5 rad and 1e-4 cm): an ICT identity, also an exaggerated one, in 15-20 iterations, to ~0.01 mm; a
    head no ICT identity fits (stylised, warped) runs to `iterations`. With `rest_pose`, the weights of
    REST_POSE_BOUNDS' shapes (jaw, blinks) are fitted too, within their bounds, under the same unit prior: the
    target's rest pose (a mouth modelled open, eyes modelled wide).

    (Points more than 2 mm behind the face were once down-weighted harder, against geometry inside the head; that
    stalled the fit of big identities half-way, while a mouth bag, the case it was for, fits as well without it.)
    """
    mean, faces, _, _ = skin_template()
    identity, modes_vck, table = _fit_modes(bool(rest_pose))
    if rest_pose:
        _, pose_deltas, pose_lo, pose_hi = _pose_deltas()
    p = np.asarray(points, np.float64)
    if len(p) > n_points:
        p = p[np.random.default_rng(seed).choice(len(p), n_points, replace=False)]
    n_modes, n_rigid = len(identity), 6 if rigid else 0
    fit = FaceFit(np.zeros(n_modes), 1.0, np.eye(3), np.zeros(3))
    n_id = n_modes - (len(pose_deltas) if rest_pose else 0)
    may_stop = max([3] + [until for until, _ in stages])    # convergence counts once every mode is free
    tri = None                                          # the last round's nearest triangles: bounds for the next
    # every round's work arrays, allocated once (a round overwrites them whole): the Jacobian (N, 3, M + rigid) and
    # the rows [plane rows; point rows] (4N, M + rigid)
    a = np.zeros((len(p), 3, n_modes + n_rigid))
    modes_rows = modes_vck.reshape(len(modes_vck), -1)                            # (S, 3M), no copy
    row_starts = np.arange(0, 3 * len(p) + 1, 3)
    rows = np.empty((4 * len(p), a.shape[-1]))
    for it in range(iterations):
        face = mean + np.tensordot(fit.coeffs, identity, axes=1)
        q = fit.to_model(p)
        _, tri, bary, dist = closest_points_on_mesh(q, face, faces, table=table, hint=tri)
        corners = faces[tri]
        normal = np.cross(face[corners[:, 1]] - face[corners[:, 0]], face[corners[:, 2]] - face[corners[:, 0]])
        normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
        # unknowns x = [coefficients, rotation vector omega, translation tau]: the face moves by its modes and
        # the points by q' = q + omega x q + tau; face(c) - q' at the closest point is linear in x:
        # A c - (omega x q) - tau = q - face(0). (No scale: one-sided, shrinking the points would fit anything;
        # the identity modes carry the face's size.)
        # the modes at each closest point, sum_j bary_j modes[corner_j]: a sparse (N, S) matrix of the barycentrics
        # times the modes, summed corner by corner in order (the products and sums of an einsum over the gathered
        # corners, without gathering them: 15 MB less a round)
        at_points = sp.csr_matrix((bary.ravel(), corners.ravel(), row_starts), shape=(len(q), len(modes_vck)))
        a[:, :, :n_modes] = (at_points @ modes_rows).reshape(len(q), 3, n_modes)
        if rigid:
            qx = np.zeros((len(q), 3, 3))                     # [q]x omega = q x omega = -(omega x q)
            qx[:, 0, 1], qx[:, 0, 2], qx[:, 1, 2] = -q[:, 2], q[:, 1], -q[:, 0]
            qx[:, 1, 0], qx[:, 2, 0], qx[:, 2, 1] = q[:, 2], -q[:, 1], q[:, 0]
            a[:, :, n_modes:n_modes + 3] = qx
            a[:, :, n_modes + 3:] = -np.eye(3)
        r = q - np.einsum("vjc,vj->vc", mean[corners], bary)                           # (N, 3)
        # the robust scale shrinks to 3x the median residual as the fit converges (no less than 0.3 mm), so geometry
        # ICT does not have (a closed-over mouth or eye, a mouth bag) stops pulling the face once the rest fits
        scale = np.clip(3.0 * np.median(dist), 0.03, 1.0) if it >= 2 else 1.0
        w = np.sqrt(1.0 / (1.0 + (dist / scale) ** 2))
        # a point whose closest point is on the face's open border (the mouth, the eyes, the cut) and off to the
        # side of it is geometry ICT has no surface for (a mouth or eye modelled closed, a cap, a neck): no pull
        w = np.where(beyond_border(q, face, faces, tri, bary, normal), 0.0, w)[:, None]
        # the rows [plane rows; point rows], written in place (the products of concatenating them, no copies)
        np.einsum("vc,vck->vk", normal, a, out=rows[:len(q)])
        rows[:len(q)] *= w
        point_rows = rows[len(q):].reshape(a.shape)
        np.multiply(a, w[:, :, None], out=point_rows)
        point_rows *= np.sqrt(point_weight)
        rhs = np.concatenate([np.einsum("vc,vc->v", normal, r) * w[:, 0],
                              np.sqrt(point_weight) * (r * w).reshape(-1)])
        reg = np.zeros(a.shape[-1])
        reg[:n_modes] = noise_cm ** 2
        for until, n_free in stages:                   # coarse to fine: the largest modes first
            if it < until:
                reg[n_free:n_id] = 1e6
                break
        x = np.linalg.solve(rows.T @ rows + np.diag(reg) + 1e-9 * np.eye(len(reg)), rows.T @ rhs)
        step = float(np.abs(x[:n_modes] - fit.coeffs).max())
        fit.coeffs = x[:n_modes]
        if rest_pose:
            fit.coeffs[n_id:] = np.clip(fit.coeffs[n_id:], pose_lo, pose_hi)
        if rigid:
            rot, tau = rotation_from_vector(x[None, n_modes:n_modes + 3])[0], x[n_modes + 3:]
            fit.rotation = rot @ fit.rotation
            fit.translation = rot @ fit.translation + tau
        still = not rigid or (np.abs(x[n_modes:n_modes + 3]).max() < 1e-5 and np.abs(x[n_modes + 3:]).max() < 1e-4)
        if it >= may_stop and step < converged and still:
            break
    fit.iterations = it + 1
    if rest_pose:
        fit.pose = fit.coeffs[n_id:].astype(np.float64)
    fit.coeffs = fit.coeffs[:n_id].astype(np.float32)
    return fit


def beyond_border(q: np.ndarray, face: np.ndarray, faces: np.ndarray, tri: np.ndarray, bary: np.ndarray,
                   normal: np.ndarray, min_cm: float = 0.02) -> np.ndarray:
    """(N,) bool: points q (N, 3) whose closest point on the face (triangle tri, barycentrics bary, unit triangle
    normal) lies on the face's boundary with the offset mostly sideways (more than min_cm away)."""
    on_border = _border_vertices(len(face))[faces[tri, np.argmax(bary, axis=1)]]
    offset = q - np.einsum("vjc,vj->vc", face[faces[tri]], bary)
    length = np.linalg.norm(offset, axis=1)
    along = np.abs(np.einsum("vc,vc->v", offset, normal))
    return on_border & (length > min_cm) & (along < 0.7 * length)


@functools.lru_cache(maxsize=1)
def _border_vertices(n_vertices: int) -> np.ndarray:
    """(S,) bool: vertices of the ICT skin template on one of its boundary loops."""
    _, faces, _, _ = skin_template()
    out = np.zeros(n_vertices, bool)
    for loop in boundary_loops(faces):
        out[loop] = True
    return out


def fit_ict_identity(points: np.ndarray, **kwargs) -> np.ndarray:
    """ICT identity coefficients (100,) of the face fitted to points (N, 3) in the ICT frame (cm): `fit_ict_face`."""
    return fit_ict_face(points, **kwargs).coeffs


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
