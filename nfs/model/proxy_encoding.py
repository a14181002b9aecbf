"""The network's target inputs on a dense mesh through a decimated proxy (`nfs.geometry.proxy`): spectral
operators, the rendered image and the encoders run on the proxy's few thousand vertices; the per-vertex results
(region logits, skinning weights) are carried to every dense vertex barycentrically, and the per-vertex inputs
of the decoder (position, normal, the global image feature) are the dense mesh's own."""
from __future__ import annotations

import numpy as np
import torch

from nfs.geometry.normals import vertex_normals
from nfs.geometry.proxy import SurfaceProxy
from nfs.model.network import POSITION_SCALE, TargetEncoding


def carry_encoding(proxy_encoding: TargetEncoding, proxy: SurfaceProxy, vertices: np.ndarray, faces: np.ndarray,
                   prior: torch.Tensor | None) -> TargetEncoding:
    """A `TargetEncoding` of the proxy (1, P, ...) -> the dense mesh's (1, V, ...): logits and skinning weights
    interpolated at each vertex's closest point on the proxy, static inputs from the dense vertices (V, 3) cm and
    their normals with the proxy's image feature, the identity code and `prior` (53, V, 3) as given."""
    dev, dtype = proxy_encoding.static.device, proxy_encoding.static.dtype
    image_feature = proxy_encoding.static[0, 0, 6:].float().cpu()
    normals = torch.from_numpy(vertex_normals(vertices, faces).astype(np.float32))
    v = torch.from_numpy(np.asarray(vertices, np.float32))
    static = torch.cat([v * POSITION_SCALE, normals, image_feature.expand(len(v), -1)], dim=1)

    def carried(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(proxy.carry(x[0].float().cpu().numpy()))[None].to(dev, dtype)

    return TargetEncoding(static[None].to(dev, dtype), proxy_encoding.z_id, carried(proxy_encoding.logits),
                          carried(proxy_encoding.weights), prior)
