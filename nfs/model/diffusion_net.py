"""DiffusionNet (Sharp et al. 2022), written for this project: learned spectral diffusion, spatial gradient
features and per-vertex MLPs. Inputs are (B, V, C) features of B meshes that share one set of operators."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import warnings
warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant checks)")
from torch import nn


@dataclass
class OperatorTensors:
    """Torch form of `nfs.geometry.operators.Operators` (float32)."""

    mass: torch.Tensor    # (V,)
    evals: torch.Tensor   # (k,)
    evecs: torch.Tensor   # (V, k)
    gradX: torch.Tensor   # (V, V) sparse CSR
    gradY: torch.Tensor   # (V, V) sparse CSR
    normals: torch.Tensor  # (V, 3)

    @property
    def n_vertices(self) -> int:
        return self.mass.shape[0]

    def to(self, device) -> "OperatorTensors":
        return OperatorTensors(*(getattr(self, f).to(device) for f in ("mass", "evals", "evecs", "gradX", "gradY",
                                                                         "normals")))


def sparse_to_torch(m: sp.spmatrix) -> torch.Tensor:
    m = m.tocsr().astype(np.float32)
    return torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(np.int64)),
                                   torch.from_numpy(m.indices.astype(np.int64)),
                                   torch.from_numpy(m.data), size=m.shape)


def operators_to_torch(ops, k_eig: int | None = None) -> OperatorTensors:
    """Convert numpy `Operators`, keeping the first k_eig eigenpairs."""
    k = ops.evals.shape[0] if k_eig is None else min(k_eig, ops.evals.shape[0])
    return OperatorTensors(torch.from_numpy(np.asarray(ops.mass, np.float32)),
                           torch.from_numpy(np.asarray(ops.evals[:k], np.float32)),
                           torch.from_numpy(np.ascontiguousarray(ops.evecs[:, :k], np.float32)),
                           sparse_to_torch(ops.gradX), sparse_to_torch(ops.gradY),
                           torch.from_numpy(np.asarray(ops.normals, np.float32)))


def sparse_apply(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(V, V) sparse @ (B, V, C) dense -> (B, V, C), in float32."""
    b, v, c = x.shape
    with torch.autocast(x.device.type, enabled=False):
        flat = x.float().permute(1, 0, 2).reshape(v, b * c)
        return (m @ flat).reshape(v, b, c).permute(1, 0, 2)


class LearnedTimeDiffusion(nn.Module):
    """Heat diffusion of each channel for a learned time, in the truncated spectral basis."""

    def __init__(self, channels: int):
        super().__init__()
        self.log_time = nn.Parameter(torch.full((channels,), -4.0))

    def forward(self, x: torch.Tensor, ops: OperatorTensors) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # spectral sums over all vertices stay float32
            x = x.float()
            time = torch.exp(self.log_time)  # positive by construction
            spec = torch.einsum("vk,bvc->bkc", ops.evecs, x * ops.mass[None, :, None])
            decay = torch.exp(-ops.evals[:, None] * time[None, :])
            return torch.einsum("vk,bkc->bvc", ops.evecs, spec * decay[None])


class SpatialGradientFeatures(nn.Module):
    """Rotation-invariant features <grad x, A grad x> with A a learned complex-linear map per channel pair."""

    def __init__(self, channels: int):
        super().__init__()
        self.a_re = nn.Linear(channels, channels, bias=False)
        self.a_im = nn.Linear(channels, channels, bias=False)

    def forward(self, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
        b_re = self.a_re(gx) - self.a_im(gy)
        b_im = self.a_re(gy) + self.a_im(gx)
        return torch.tanh(gx * b_re + gy * b_im)


class MLP(nn.Sequential):
    def __init__(self, sizes: list[int], dropout: float = 0.0):
        layers = []
        for i in range(len(sizes) - 1):
            if i > 0:
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
                layers.append(nn.ReLU())
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        super().__init__(*layers)


class DiffusionNetBlock(nn.Module):
    def __init__(self, width: int, dropout: float, gradient_features: bool = True):
        super().__init__()
        self.diffusion = LearnedTimeDiffusion(width)
        self.gradient_features = SpatialGradientFeatures(width) if gradient_features else None
        n_in = width * (3 if gradient_features else 2)
        self.mlp = MLP([n_in, width, width], dropout)

    def forward(self, x: torch.Tensor, ops: OperatorTensors) -> torch.Tensor:
        diffused = self.diffusion(x, ops)
        parts = [x, diffused.to(x.dtype)]
        if self.gradient_features is not None:
            gx = sparse_apply(ops.gradX, diffused).to(x.dtype)
            gy = sparse_apply(ops.gradY, diffused).to(x.dtype)
            parts.append(self.gradient_features(gx, gy))
        return x + self.mlp(torch.cat(parts, dim=-1))


class DiffusionNet(nn.Module):
    """(B, V, c_in) -> (B, V, c_out) on meshes sharing operators."""

    def __init__(self, c_in: int, c_out: int, width: int = 128, n_blocks: int = 4, dropout: float = 0.0,
                 gradient_features: bool = True):
        super().__init__()
        self.first = nn.Linear(c_in, width)
        self.blocks = nn.ModuleList(DiffusionNetBlock(width, dropout, gradient_features) for _ in range(n_blocks))
        self.last = nn.Linear(width, c_out)

    def forward(self, x: torch.Tensor, ops: OperatorTensors) -> torch.Tensor:
        h = self.first(x)
        for block in self.blocks:
            h = block(h, ops)
        return self.last(h)


def mass_weighted_mean(x: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """(B, V, C) -> (B, C) surface-area-weighted mean over vertices."""
    w = (mass / mass.sum())[None, :, None]
    return (x.float() * w).sum(1)
