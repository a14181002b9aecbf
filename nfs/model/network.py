"""The NFS network: image feature, identity / expression / skinning encoders, skinning block and decoder."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nfs.model.config import NFSConfig
from nfs.model.diffusion_net import DiffusionNet, OperatorTensors, mass_weighted_mean

POSITION_SCALE = 0.1  # ICT centimetres -> network units (1 unit = 10 cm)


class ImageEncoder(nn.Module):
    """(B, 4, S, S) normal+depth render -> (B, image_dim) global feature (4 stride-2 conv blocks, then pooling)."""

    def __init__(self, cfg: NFSConfig):
        super().__init__()
        layers, c_prev = [], 4
        for c in cfg.image_channels:
            layers += [nn.Conv2d(c_prev, c, 3, stride=2, padding=1), nn.GroupNorm(min(4, c), c), nn.ReLU()]
            c_prev = c
        self.conv = nn.Sequential(*layers)
        self.head = nn.Linear(c_prev, cfg.image_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(image).mean(dim=(2, 3)))


class VertexGroupNorm(nn.Module):
    """GroupNorm for (B, V, C) per-vertex features: statistics over all vertices and the channels of a group."""

    def __init__(self, groups: int, channels: int, eps: float = 1e-5):
        super().__init__()
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, v, c = x.shape
        # per-channel statistics over vertices, combined into group statistics, folded into one scale + shift
        var_c, mean_c = torch.var_mean(x.float(), dim=1, unbiased=False)  # (B, C)
        mean_g = mean_c.reshape(b, self.groups, -1).mean(-1, keepdim=True)
        sq_g = (var_c + mean_c.square()).reshape(b, self.groups, -1).mean(-1, keepdim=True)
        rstd = torch.rsqrt((sq_g - mean_g.square()).clamp_min(0) + self.eps)
        scale = (rstd.expand(b, self.groups, c // self.groups).reshape(b, c)) * self.weight
        shift = self.bias - mean_g.expand(b, self.groups, c // self.groups).reshape(b, c) * scale
        return torch.addcmul(shift[:, None, :].to(x.dtype), x, scale[:, None, :].to(x.dtype))


def vertex_inputs(vertices: torch.Tensor, normals: torch.Tensor, image_feature: torch.Tensor) -> torch.Tensor:
    """Per-vertex network input [xyz / 10 cm, normal, image feature]: (B, V, 6 + image_dim)."""
    b, v, _ = vertices.shape
    img = image_feature[:, None, :].expand(b, v, image_feature.shape[-1])
    return torch.cat([vertices * POSITION_SCALE, normals, img], dim=-1)


@dataclass
class TargetEncoding:
    """What the network knows about a target neutral, computed once per target."""

    static: torch.Tensor   # (1, V, 6 + image_dim) vertex inputs
    z_id: torch.Tensor     # (1, code_dim)
    logits: torch.Tensor   # (1, V, n_regions)
    weights: torch.Tensor  # (1, V, code_dim) skinning weights
    prior: torch.Tensor | None = None  # (53, V, 3) template expression basis (cfg.template_prior), cm


class NFSNetwork(nn.Module):
    def __init__(self, cfg: NFSConfig):
        super().__init__()
        self.cfg = cfg
        c_in = 6 + cfg.image_dim
        self.image_encoder = ImageEncoder(cfg)

        def encoder(c_out):
            return DiffusionNet(c_in, c_out, cfg.width, cfg.n_blocks, cfg.dropout, cfg.gradient_features)

        self.identity_encoder = encoder(cfg.code_dim)
        self.expression_encoder = encoder(cfg.code_dim)
        self.skinning_encoder = encoder(cfg.n_regions)
        self.skinning_mlp = nn.Sequential(nn.Linear(cfg.n_regions, cfg.skin_hidden, bias=False), nn.ReLU(),
                                          nn.Linear(cfg.skin_hidden, cfg.skin_hidden, bias=False), nn.ReLU(),
                                          nn.Linear(cfg.skin_hidden, cfg.code_dim, bias=False))
        dec_in = c_in + 2 * cfg.code_dim
        layers = []
        for i in range(cfg.decoder_layers):
            layers.append(nn.Linear(dec_in if i == 0 else cfg.decoder_width, cfg.decoder_width, bias=False))
            layers.append(VertexGroupNorm(cfg.decoder_groups, cfg.decoder_width))
            layers.append(nn.ReLU())
        self.decoder = nn.Sequential(*layers)
        self.decoder_out = nn.Linear(cfg.decoder_width, 3)
        nn.init.zeros_(self.decoder_out.weight)
        nn.init.zeros_(self.decoder_out.bias)

    # --- encoders -------------------------------------------------------------------------------------------
    def encode_target(self, vertices: torch.Tensor, ops: OperatorTensors, image: torch.Tensor,
                      prior: torch.Tensor | None = None, require_prior: bool = True) -> TargetEncoding:
        """vertices (1, V, 3) cm in the ICT frame, image (1, 4, S, S), prior (53, V, 3) from
        `nfs.prior.template_expression_basis` (required when cfg.template_prior, unless `require_prior` is False:
        an encoding of a proxy whose prior is the dense mesh's, given later) -> TargetEncoding."""
        if self.cfg.template_prior and prior is None and require_prior:
            raise ValueError("this model decodes on top of the template prior: pass prior=(53, V, 3)")
        static = vertex_inputs(vertices, ops.normals[None].to(vertices.dtype), self.image_encoder(image))
        z_id = mass_weighted_mean(self.identity_encoder(static, ops), ops.mass)
        logits = self.skinning_encoder(static, ops)
        weights = self.skinning_mlp(torch.softmax(logits.float(), dim=-1).to(static.dtype))
        return TargetEncoding(static, z_id, logits, weights, prior if self.cfg.template_prior else None)

    def encode_expression(self, vertices: torch.Tensor, normals: torch.Tensor, ops: OperatorTensors,
                          image: torch.Tensor) -> torch.Tensor:
        """Source frames (B, V, 3) cm sharing operators, normals (B, V, 3), images (B, 4, S, S) -> z_GE (B, code)."""
        x = vertex_inputs(vertices, normals, self.image_encoder(image))
        return mass_weighted_mean(self.expression_encoder(x, ops), ops.mass)

    # --- decoder --------------------------------------------------------------------------------------------
    def decode(self, target: TargetEncoding, z_ge: torch.Tensor) -> torch.Tensor:
        """Displacements (B, V, 3) in cm for expression codes z_GE (B, code_dim) on an encoded target."""
        b = z_ge.shape[0]
        v = target.static.shape[1]
        z_le = target.weights * z_ge[:, None, :]
        x = torch.cat([target.static.expand(b, v, -1), z_le, target.z_id[:, None, :].expand(b, v, -1)], dim=-1)
        return self.decoder_out(self.decoder(x)).float() / POSITION_SCALE + self.prior_displacement(target, z_ge)

    def prior_displacement(self, target: TargetEncoding, z_ge: torch.Tensor):
        """(B, V, 3) template-prior displacement for the FACS part of z_GE (0 without a prior)."""
        if target.prior is None:
            return 0.0
        n = self.cfg.n_expression
        return torch.einsum("bk,kvc->bvc", z_ge[:, :n].float(), target.prior.float())

    def expression_code_from_weights(self, weights: torch.Tensor) -> torch.Tensor:
        """ICT FACS weights (B, 53) -> z_GE (B, code_dim): first 53 dims are the weights, the rest 0."""
        return F.pad(weights, (0, self.cfg.code_dim - weights.shape[-1]))
