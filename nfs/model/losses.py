"""Loss terms of NFS training. Positions and displacements in cm."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def torch_vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, V, 3) positions, (F, 3) faces -> (B, V, 3) area-weighted unit normals."""
    a, b, c = (vertices[:, faces[:, i]] for i in range(3))
    fn = torch.cross(b - a, c - a, dim=-1)
    n = torch.zeros_like(vertices)
    for i in range(3):
        n = n.index_add(1, faces[:, i], fn)
    return F.normalize(n, dim=-1, eps=1e-12)


def edge_pseudo_inverse(vertices: np.ndarray, faces: np.ndarray, damping: float = 0.1) -> np.ndarray:
    """(F, 2, 3) damped pseudo-inverse (E^T E + lambda I)^-1 E^T of each rest triangle's edge matrix E = [e1 e2]
    (3x2), for deformation gradients; lambda = (damping x mean edge length)^2 keeps slivers from dominating."""
    e = np.stack([vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]]], -1)
    e = e.astype(np.float64)
    lam = (damping * np.linalg.norm(e, axis=1).mean()) ** 2
    ete = np.einsum("fij,fik->fjk", e, e) + lam * np.eye(2)[None]
    return np.einsum("fjk,fik->fji", np.linalg.inv(ete), e).astype(np.float32)


def jacobian_loss(pred_disp: torch.Tensor, gt_disp: torch.Tensor, faces: torch.Tensor, pinv: torch.Tensor):
    """Mean squared difference of per-face deformation gradients (dimensionless), (B, V, 3) displacements.
    The gradients differ by (E_pred - E_gt) @ pinv(E_rest), linear in the displacement difference."""
    d = pred_disp - gt_disp
    de = torch.stack([d[:, faces[:, 1]] - d[:, faces[:, 0]], d[:, faces[:, 2]] - d[:, faces[:, 0]]], -1)  # B,F,3,2
    return torch.einsum("bfij,fjk->bfik", de, pinv).square().mean()


def normal_loss(pred_vertices: torch.Tensor, gt_vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Mean (1 - cos) between predicted and ground-truth vertex normals."""
    return (1 - (torch_vertex_normals(pred_vertices, faces) * torch_vertex_normals(gt_vertices, faces)).sum(-1)).mean()


def quadratic_basis_loss(delta: torch.Tensor, gram: torch.Tensor, n_vertices: int) -> torch.Tensor:
    """Mean squared per-coordinate error of the linear model sum_k delta_k basis_k, from its Gram matrix:
    delta (B, K), gram (K, K) = basis basis^T over all vertices and coordinates."""
    return torch.einsum("bi,ij,bj->b", delta, gram, delta).mean() / (3 * n_vertices)


def range_loss(codes: torch.Tensor) -> torch.Tensor:
    """Keeps FACS dims inside [0, 1]: squared distance outside the interval."""
    return (F.relu(-codes) + F.relu(codes - 1)).square().mean()
