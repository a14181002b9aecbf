"""Smooth, bounded non-rigid warps of face shapes, with their Jacobians (to push expressions through them)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nfs.geometry.falloff import plateau, plateau_gradient, wendland  # noqa: F401  (re-exported)


@dataclass
class GaussianRBFWarp:
    """x -> x + sum_k a_k exp(-|x - c_k|^2 / (2 r_k^2)). Units cm. Used for training."""

    centers: np.ndarray  # (K, 3)
    radii: np.ndarray    # (K,)
    amplitudes: np.ndarray  # (K, 3)

    def _phi(self, x):
        d = x[:, None, :] - self.centers[None]  # (N, K, 3)
        phi = np.exp(-(d ** 2).sum(-1) / (2 * self.radii[None] ** 2))  # (N, K)
        return d, phi

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) -> (N, 3) warped points."""
        _, phi = self._phi(x)
        return (x + phi @ self.amplitudes).astype(np.float32)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) -> (N, 3, 3) Jacobian of the warp."""
        d, phi = self._phi(x)
        grad = -d / (self.radii[None, :, None] ** 2) * phi[..., None]  # (N, K, 3) d phi_k / dx
        return (np.eye(3)[None] + np.einsum("ki,nkj->nij", self.amplitudes, grad)).astype(np.float32)


def random_rbf_warp(points: np.ndarray, rng: np.random.Generator, n_centers: int = 4, strength: float = 0.5,
                    radius_range=(2.0, 6.0)) -> GaussianRBFWarp:
    """A random warp whose Jacobian stays invertible: sum_k |a_k| max|grad phi_k| <= strength < 1."""
    centers = points[rng.integers(0, len(points), n_centers)]
    radii = rng.uniform(*radius_range, n_centers)
    dirs = rng.standard_normal((n_centers, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    max_grad = 1.0 / (radii * np.sqrt(np.e))  # max of |grad phi| for a unit amplitude
    share = rng.dirichlet(np.ones(n_centers)) * strength * rng.uniform(0.3, 1.0)
    amplitudes = dirs * (share / max_grad)[:, None]
    return GaussianRBFWarp(centers.astype(np.float64), radii, amplitudes)


def push_through(jacobians: np.ndarray, displacements: np.ndarray) -> np.ndarray:
    """Displacements (..., N, 3) mapped by per-point Jacobians (N, 3, 3) (first-order deformation transfer)."""
    return np.einsum("nij,...nj->...ni", jacobians, displacements).astype(np.float32)


@dataclass
class FeatureScaleWarp:
    """Local anisotropic scaling about feature centres: x -> x + sum_k w_k(x) A_k (x - c_k), A_k = S_k - I
    (S_k the scaling applied near the centre), w_k = plateau(|x - c_k|; inner_k, outer_k): 1 within inner_k,
    0 beyond outer_k. centers (K, 3) cm, inner (K,), outer (K,) cm, linear (K, 3, 3) = A_k."""

    centers: np.ndarray
    inner: np.ndarray
    outer: np.ndarray
    linear: np.ndarray

    def _parts(self, x):
        d = x[:, None, :] - self.centers[None]                                # (N, K, 3)
        w = plateau(np.linalg.norm(d, axis=-1), self.inner[None], self.outer[None])  # (N, K)
        return d, w

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) -> (N, 3)."""
        d, w = self._parts(x)
        return x + np.einsum("nk,kij,nkj->ni", w, self.linear, d)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """I + sum_k [w_k A_k + (A_k d_k) grad w_k^T]; (N, 3) -> (N, 3, 3)."""
        d, w = self._parts(x)
        grad = plateau_gradient(d, self.inner[None], self.outer[None])        # (N, K, 3)
        ad = np.einsum("kij,nkj->nki", self.linear, d)                        # (N, K, 3)
        return (np.eye(3)[None] + np.einsum("nk,kij->nij", w, self.linear)
                + np.einsum("nki,nkj->nij", ad, grad))


@dataclass
class ComposedWarp:
    """Warps applied one after the other: x -> w_n(... w_1(x)); the Jacobian is the product of each warp's at the
    point it is applied to, so warps that never fold compose into one that never folds, however they overlap.
    Each warp has apply (N, 3) -> (N, 3) and jacobian (N, 3) -> (N, 3, 3)."""

    warps: tuple

    def apply(self, x: np.ndarray) -> np.ndarray:
        for w in self.warps:
            x = w.apply(x)
        return x

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        jac = np.broadcast_to(np.eye(3), (len(x), 3, 3)).copy()
        for w in self.warps:
            jac = np.einsum("nij,njk->nik", w.jacobian(x), jac)
            x = w.apply(x)
        return jac
