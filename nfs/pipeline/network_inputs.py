"""The network's view of a prepared target, computed when first asked for: spectral operators, the rendered image
and the encoders (identity code, region logits, skinning weights), on the target's skin or, for a dense skin, on
its decimated proxy (`nfs.geometry.proxy`) with the results carried back to every vertex.

The default decoding path (the template prior) needs none of it, so a target is ready for its first frame without
the eigen-decomposition and the encoders; the regions view, the learned correction and the evaluation's region
figures compute it once, on first use, and every copy of the prepared target shares the result.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from nfs.geometry.operators import Operators, get_operators
from nfs.geometry.proxy import SurfaceProxy, make_proxy
from nfs.model.diffusion_net import operators_to_torch
from nfs.model.network import NFSNetwork, TargetEncoding
from nfs.model.precision import model_autocast
from nfs.model.proxy_encoding import carry_encoding
from nfs.pipeline.models import model_on


@dataclass
class NetworkView:
    """What the network computed for one target: `ops` and `image` are the proxy's when there is one, the rest is
    per skin vertex (S)."""

    proxy: SurfaceProxy | None
    ops: Operators
    image: np.ndarray              # (4, size, size)
    encoding: TargetEncoding       # (1, S, ...) tensors on the target's device, no grad
    region_labels: np.ndarray      # (S,) argmax of the skinning encoder's logits
    skinning_weights: np.ndarray   # (S, code_dim) float32


class LazyNetworkInputs:
    """Computes a target's `NetworkView` on the first `get()`, once (thread-safe), and keeps it.

    vertices (S, 3) float32 cm in the ICT frame and faces (Fs, 3) of the skin; `prior` (53, S, 3) the template
    basis on `device` (or None), passed into the encoding as it is (not copied); `timings` (a dict) receives the
    stages' seconds when they run."""

    def __init__(self, model: NFSNetwork, vertices: np.ndarray, faces: np.ndarray, prior: torch.Tensor | None,
                 device: torch.device, timings: dict | None = None):
        self.model, self.vertices, self.faces, self.prior, self.device = model, vertices, faces, prior, device
        self.timings = {} if timings is None else timings
        self._lock = threading.Lock()
        self._view: NetworkView | None = None

    def __getstate__(self) -> dict:
        """What a copy in another process gets (a batch's workers): everything but the lock, which is made anew."""
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def computed(self) -> bool:
        """Whether the network's view has been computed (nothing is computed by asking)."""
        return self._view is not None

    def get(self) -> NetworkView:
        """The network's view of the target, computed on the first call."""
        if self._view is None:
            with self._lock:
                if self._view is None:
                    self._view = self._compute()
        return self._view

    def encoding(self) -> TargetEncoding:
        return self.get().encoding

    @torch.no_grad()
    def _compute(self) -> NetworkView:
        from nfs.render import render_normal_depth

        model, v, f, dev = self.model, self.vertices, self.faces, self.device
        t = time.perf_counter()
        proxy = make_proxy(v, f)
        net_v, net_f = (v, f) if proxy is None else (proxy.vertices.astype(np.float32), proxy.faces)
        ops = get_operators(net_v, net_f, model.cfg.k_eig)
        self.timings["operators"] = time.perf_counter() - t
        t = time.perf_counter()
        image = render_normal_depth(net_v, net_f, size=model.cfg.image_size)
        self.timings["render"] = time.perf_counter() - t
        t = time.perf_counter()
        model = model_on(model.eval(), dev)
        with model_autocast(dev):
            ot = operators_to_torch(ops, model.cfg.k_eig).to(dev)
            enc = model.encode_target(torch.from_numpy(np.asarray(net_v, np.float32))[None].to(dev), ot,
                                      torch.from_numpy(image)[None].to(dev),
                                      self.prior if proxy is None else None, require_prior=proxy is None)
        if proxy is not None:
            enc = carry_encoding(enc, proxy, v, f, self.prior)
        self.timings["encoders"] = time.perf_counter() - t
        return NetworkView(proxy, ops, image, enc, enc.logits[0].float().argmax(-1).cpu().numpy(),
                           enc.weights[0].float().cpu().numpy())
