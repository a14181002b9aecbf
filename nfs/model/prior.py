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

from nfs.geometry.surface import closest_points_on_mesh
from nfs.ict import N_EXPRESSION, load_ict
from nfs.regions import REGION_NAMES, ict_region_labels


@functools.lru_cache(maxsize=1)
def _template():
    """ICT mean skin (S, 3) cm float64, its faces, expression deltas (53, S, 3) and identity deltas (100, S, 3)."""
    ict = load_ict()
    v, f = ict.skin_mesh()
    s = ict.skin_count
    return (v.astype(np.float64), np.asarray(f, np.int64), ict.expression_deltas[:, :s],
            ict.identity_deltas[:, :s].astype(np.float64))


@dataclass
class FaceFit:
    """An ICT face fitted to points: coefficients, and the transform q = scale * p @ rotation.T + translation that
    takes the points into the ICT model's frame (the automatic alignment is close, not exact; `fit_ict_face`
    refines rotation and translation and keeps scale 1)."""

    coeffs: np.ndarray        # (100,) identity coefficients
    scale: float
    rotation: np.ndarray      # (3, 3)
    translation: np.ndarray   # (3,)

    def to_model(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation

    def vectors_from_model(self, vectors: np.ndarray) -> np.ndarray:
        """(..., 3) displacements in the model frame -> the points' frame."""
        return vectors @ self.rotation / self.scale

    def face(self) -> np.ndarray:
        mean, _, _, identity = _template()
        return mean + np.tensordot(self.coeffs.astype(np.float64), identity, axes=1)


def _rotation(omega: np.ndarray) -> np.ndarray:
    """Rodrigues: rotation matrix of the rotation vector omega (3,)."""
    angle = float(np.linalg.norm(omega))
    if angle < 1e-12:
        return np.eye(3)
    k = omega / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def fit_ict_face(points: np.ndarray, iterations: int = 10, n_points: int = 2000, noise_cm: float = 0.02,
                 point_weight: float = 0.01, rigid: bool = True, seed: int = 0) -> FaceFit:
    """The ICT face (100 identity coefficients, and with `rigid` a rotation and translation refining the
    alignment) that best fits points (N, 3) in the ICT frame (cm).

    Alternates closest points of (a fixed random subset of) the points on the current face with a linearised
    least-squares solve: point-to-plane residuals (along the face normal, so the fit does not stall sliding along
    the surface) plus `point_weight` times the point-to-point ones, point noise `noise_cm`, a unit Gaussian prior
    on the coefficients (the ICT model's own scale), none on the rigid motion, and points far from the face
    (non-face parts, stylized features) down-weighted by 1 / (1 + (d / 1 cm)^2). One-sided (points to face), so a
    crop fits the part of the face it covers. An ICT identity is recovered to ~0.01 mm in 10 iterations."""
    mean, faces, _, identity = _template()
    p = np.asarray(points, np.float64)
    if len(p) > n_points:
        p = p[np.random.default_rng(seed).choice(len(p), n_points, replace=False)]
    n_modes, n_rigid = len(identity), 6 if rigid else 0
    fit = FaceFit(np.zeros(n_modes), 1.0, np.eye(3), np.zeros(3))
    for _ in range(iterations):
        face = fit.face()
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
        w = np.sqrt(1.0 / (1.0 + dist ** 2))[:, None]
        rows = np.concatenate([np.einsum("vc,vck->vk", normal, a) * w,
                               np.sqrt(point_weight) * (a * w[:, :, None]).reshape(-1, a.shape[-1])])
        rhs = np.concatenate([np.einsum("vc,vc->v", normal, r) * w[:, 0],
                              np.sqrt(point_weight) * (r * w).reshape(-1)])
        reg = np.zeros(a.shape[-1])
        reg[:n_modes] = noise_cm ** 2
        x = np.linalg.solve(rows.T @ rows + np.diag(reg) + 1e-9 * np.eye(len(reg)), rows.T @ rhs)
        fit.coeffs = x[:n_modes]
        if rigid:
            rot, tau = _rotation(x[n_modes:n_modes + 3]), x[n_modes + 3:]
            fit.rotation = rot @ fit.rotation
            fit.translation = rot @ fit.translation + tau
    fit.coeffs = fit.coeffs.astype(np.float32)
    return fit


def fit_ict_identity(points: np.ndarray, **kwargs) -> np.ndarray:
    """ICT identity coefficients (100,) of the face fitted to points (N, 3) in the ICT frame (cm): `fit_ict_face`."""
    return fit_ict_face(points, **kwargs).coeffs


def template_expression_basis(vertices_ict: np.ndarray, fit_identity: bool = True,
                              faces: np.ndarray | None = None) -> np.ndarray:
    """(V, 3) vertices in the ICT frame (cm) -> (53, V, 3) ICT expression deltas at each vertex's closest point
    (barycentric interpolation) on the ICT face fitted to the vertices (identity and a refined rigid motion; with
    `fit_identity=False`: the mean face as the vertices are). With the target's `faces` (F, 3), lip seams are
    relaxed (`smooth_lip_seam`)."""
    mean, tf, deltas, _ = _template()
    v = np.asarray(vertices_ict, np.float64)
    fit = fit_ict_face(v) if fit_identity else FaceFit(np.zeros(1), 1.0, np.eye(3), np.zeros(3))
    face = fit.face() if fit_identity else mean
    q = fit.to_model(v)
    _, tri, bary, _ = closest_points_on_mesh(q, face, tf)
    out = np.einsum("kvjc,vj->kvc", deltas[:, tf[tri]], bary.astype(np.float32))
    out = fit.vectors_from_model(out).astype(np.float32)
    assert out.shape[0] == N_EXPRESSION
    if faces is not None and len(faces):
        labels = ict_region_labels()[tf[tri, np.argmax(bary, axis=1)]]
        out = smooth_lip_seam(out, np.asarray(faces, np.int64), labels, lip_ambiguity(q, face, tf, labels))
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


def smooth_lip_seam(basis: np.ndarray, faces: np.ndarray, labels: np.ndarray, ambiguous: np.ndarray | None = None,
                    rings: int = 2, iterations: int = 10) -> np.ndarray:
    """Where the target mesh joins the lips (an edge between a vertex carried from the upper lip and one from the
    lower lip: a mouth modelled closed), closest points split the seam vertices between the lips and opening the
    mouth tears spikes. The basis on the seam and `rings` rings around it is relaxed to the average of its mesh
    neighbours (Jacobi iterations, the rest held), so the seam stretches smoothly instead. A mesh with a lip slit
    has no such edges except at the mouth corners, where the lips meet on ICT too."""
    upper, lower = REGION_NAMES.index("upper_lip"), REGION_NAMES.index("lower_lip")
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    la, lb = labels[edges[:, 0]], labels[edges[:, 1]]
    seam = edges[((la == upper) & (lb == lower)) | ((la == lower) & (lb == upper))]
    if ambiguous is not None:
        seam = seam[ambiguous[seam].any(1)]
    if not len(seam):
        return basis
    n = len(labels)
    adjacency = sp.coo_matrix((np.ones(2 * len(edges)), (edges.ravel(), edges[:, ::-1].ravel())), shape=(n, n)).tocsr()
    adjacency.data[:] = 1.0
    free = np.zeros(n, bool)
    free[seam.ravel()] = True
    for _ in range(rings):
        free |= (adjacency @ free.astype(np.float64)) > 0
    average = sp.diags(1.0 / np.maximum(np.asarray(adjacency.sum(1)).ravel(), 1.0)) @ adjacency
    flat = basis.transpose(1, 0, 2).reshape(n, -1).astype(np.float64)
    for _ in range(iterations):
        flat[free] = (average @ flat)[free]
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
