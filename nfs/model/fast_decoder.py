"""Inference-only decoder for one encoded target, with GroupNorm folded into the matrix products.

`NFSNetwork.decode` runs Linear -> GroupNorm -> ReLU per layer. Per frame only the local code changes, and the
normalisation is a per-(frame, channel) scale `s` and shift `t`, so each hidden layer can be rewritten as

    relu(s * (g + b) + t) = |s| * (max(g, -d) + d),     d = b + t / |s|

where `g` is the bare matrix product and `b` a per-channel constant carried from the previous layer. The factor
`|s|` goes into the next layer's (C, C) matrix, `d` into its carried constant, so what is left per layer is one
matrix product, the statistics (each channel's mean and variance over vertices, one pass) and one in-place `max`.
Channels whose GroupNorm weight is negative have their sign flipped in the matrices once, so `|s|` is always the
right factor; means are unflipped before they are combined over a group.

bfloat16 precision: each product is (nearly) centred over vertices, its centre moved into the carried constant, so
the statistics, taken in bfloat16 with float accumulation, need no cancellation (some channels have a mean 30
times their spread). Frames are decoded one at a time into preallocated buffers so that a frame's activations stay
in cache and no multi-megabyte tensor is mapped afresh per layer.

On the CPU, where a C++ compiler is at hand, the statistics, the group arithmetic and the `max` of each layer run
in one call of a compiled kernel (`csrc/folded_decoder.cpp`, built by `cpu_kernels.py`), which also re-centres the
clamped activations on a sampled mean (carried exactly) instead of centring each product's output: `_frame_fused`.

Result: `NFSNetwork.decode`'s displacements (float32: to 1e-5 mm; bfloat16: to ~0.03 mm), about 4x faster than
bfloat16 autocast on the plain decoder, which spends most of its time in GroupNorm's variance over vertices.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from nfs.model.cpu_kernels import cpu_kernels_available
from nfs.model.network import POSITION_SCALE, NFSNetwork, TargetEncoding


@dataclass
class FoldedDecoder:
    """Everything needed to decode expression codes on one target; build with `FoldedDecoder.build`."""

    static: torch.Tensor          # (V, W) frame-independent part of the first layer, sign-folded, centred
    static_mean: torch.Tensor     # (W,) float32 its mean over vertices
    weights: torch.Tensor         # (V, code) skinning weights centred over vertices, compute dtype
    weights_mean: torch.Tensor    # (code,) float32
    code_matrix: torch.Tensor     # (code, W) first-layer rows for z_LE, sign-folded, float32
    hidden: list                  # (W, W) float32 matrices of layers 2.., input x @ M, output sign-folded
    out_matrix: torch.Tensor      # (W, 3) float32
    out_bias: torch.Tensor        # (3,) float32
    signs: list                   # per normalised layer (W,) float32 +-1 (sign of the GroupNorm weight)
    gamma_abs: list               # per normalised layer (W,) float32
    beta: list                    # per normalised layer (W,) float32
    groups: int
    eps: float
    prior: torch.Tensor | None    # (n_expression, V * 3) float32 template basis, cm
    n_expression: int
    dtype: torch.dtype
    correction: bool = True       # False: the network's output is off and not computed (the prior alone)
    weights_expression: torch.Tensor | None = None  # (V, n_expression) contiguous copy of the ICT-weight columns
    fused: bool = False           # CPU: each layer's normalisation runs in the compiled kernel (cpu_kernels.py)

    @property
    def n_vertices(self) -> int:
        return self.static.shape[0]

    @property
    def code_dim(self) -> int:
        """Size of the expression code z_GE it decodes."""
        return self.code_matrix.shape[0]

    def without_correction(self) -> "FoldedDecoder":
        """The same decoder with the network's output switched off: only the template prior remains (the network
        is not evaluated at all, so decoding is one product of the codes with the prior's basis)."""
        return replace(self, correction=False)

    @classmethod
    @torch.no_grad()
    def build(cls, model: NFSNetwork, encoding: TargetEncoding, dtype: torch.dtype = torch.bfloat16
              ) -> "FoldedDecoder":
        """Fold `model`'s decoder for the target `encoding` (from `encode_target`); dtype is the activation type."""
        cfg = model.cfg
        linears = [m for m in model.decoder if isinstance(m, torch.nn.Linear)]
        norms = [m for m in model.decoder if not isinstance(m, (torch.nn.Linear, torch.nn.ReLU))]
        signs = [torch.where(n.weight.float() < 0, -1.0, 1.0) for n in norms]
        first = linears[0].weight.float().T * signs[0]              # (in, W), output channels sign-folded
        static_in = encoding.static.float()                         # (1, V, n_s)
        n_s, c = static_in.shape[-1], cfg.code_dim
        static = static_in @ first[:n_s] + (encoding.z_id.float() @ first[n_s + c:])[:, None, :]
        hidden = [lin.weight.float().T * s_out for lin, s_out in zip(linears[1:], signs[1:])]
        prior = None
        if encoding.prior is not None:
            prior = encoding.prior.float().reshape(encoding.prior.shape[0], -1).contiguous()
        static, weights = static[0], encoding.weights[0].float()
        static_mean, weights_mean = static.mean(0), weights.mean(0)
        fused = static.device.type == "cpu" and cpu_kernels_available()
        return cls(fused=fused, static=(static - static_mean).to(dtype).contiguous(), static_mean=static_mean,
                   weights=(weights - weights_mean).to(dtype).contiguous(), weights_mean=weights_mean,
                   code_matrix=first[n_s:n_s + c].contiguous(), hidden=hidden,
                   out_matrix=model.decoder_out.weight.float().T.contiguous(),
                   out_bias=model.decoder_out.bias.float().clone(), signs=signs,
                   gamma_abs=[n.weight.float().abs() for n in norms], beta=[n.bias.float().clone() for n in norms],
                   groups=cfg.decoder_groups, eps=norms[0].eps, prior=prior, n_expression=cfg.n_expression,
                   dtype=dtype,
                   weights_expression=(weights - weights_mean)[:, :cfg.n_expression].to(dtype).contiguous())

    def _normalise(self, g: torch.Tensor, carried: torch.Tensor, layer: int):
        """In place g <- max(g, -d): layer `layer`'s GroupNorm + ReLU of (g + carried), g (V, W) one frame,
        carried (W,) float32; returns the factor |s| (W,) and constant d (W,) that the next product absorbs."""
        w = g.shape[1]
        # per-channel mean and (biased) variance over vertices in one float32 pass (Welford): half the time of a
        # sum and a sum of squares in bfloat16, and exact where those cancel
        mean_g, var_g = torch.batch_norm_update_stats(g, None, None, 1.0)
        sq_g = var_g + mean_g.square()
        mean = mean_g + carried                                     # statistics of g + carried (flipped space)
        sq = sq_g + 2.0 * carried * mean_g + carried.square()
        mean_grp = (mean * self.signs[layer]).reshape(self.groups, -1).mean(-1, keepdim=True)
        var_grp = sq.reshape(self.groups, -1).mean(-1, keepdim=True) - mean_grp.square()
        rstd = torch.rsqrt(var_grp.clamp_min(0.0) + self.eps).expand(self.groups, w // self.groups).reshape(w)
        mean_c = mean_grp.expand(self.groups, w // self.groups).reshape(w)
        gain = rstd * self.gamma_abs[layer]                         # |s|
        shift = self.beta[layer] - mean_c * gain * self.signs[layer]  # t (flipped space)
        scale = gain.clamp_min(1e-12)
        d = carried + shift / scale
        g.clamp_min_((-d).to(g.dtype))
        return scale, d

    def _centred_product(self, y: torch.Tensor, scale: torch.Tensor, d: torch.Tensor, matrix: torch.Tensor,
                         out: torch.Tensor | None = None):
        """Next pre-activation of y_true = |s| * (y + d), y (V, in): returns (g, carried) with
        y_true @ matrix = g + carried; in bfloat16 g (V, out) is nearly centred over vertices (the centre moved into
        `carried`)."""
        per_frame = scale[:, None] * matrix                                           # (in, out) float32
        carried = (scale * d) @ matrix
        if self.dtype == torch.float32:
            # float32 statistics need no centring; a plain product also spares addmm's copy of the broadcast
            # centre into `out` (a full pass over the activations per layer)
            if matrix.shape[1] < 16:
                # a product with a few columns (the 3 of the output layer) runs 3-4x faster as (out, in) @ y^T
                # than as y @ (in, out) in MKL on the CPU
                return torch.mm(per_frame.T.contiguous(), y.T).T, carried
            return torch.mm(y, per_frame, out=out), carried
        # the centre needs only be near the mean (its exact value is carried): every 8th vertex estimates it
        sample = y[::8]
        centre = ((sample.sum(0).float() / sample.shape[0]) @ per_frame).to(self.dtype)  # (out,)
        if matrix.shape[1] < 16:           # the output layer: as (out, in) @ y^T, as in float32 above
            g = torch.addmm(-centre[:, None], per_frame.T.to(self.dtype).contiguous(), y.T).T
            return g, carried + centre.float()
        g = torch.addmm(-centre, y, per_frame.to(self.dtype), out=out)
        return g, carried + centre.float()

    @property
    def device(self) -> torch.device:
        return self.static.device

    @torch.no_grad()
    def __call__(self, z_ge: torch.Tensor, batch_frames: int | None = None) -> torch.Tensor:
        """Expression codes (B, code) -> displacements (B, V, 3) float32 on the decoder's device, cm (network
        correction + prior). On the CPU frames are decoded one at a time (a frame's activations stay in cache); on
        a GPU `batch_frames` at a time (default 32) in batched products."""
        z = z_ge.float().to(self.device)
        if batch_frames is None:
            batch_frames = 1 if self.device.type == "cpu" else 32
        out = torch.empty(z.shape[0], self.n_vertices, 3, device=self.device)
        if not self.correction:
            out.zero_()
        elif batch_frames <= 1:
            # activations ping-pong between preallocated buffers: fresh multi-megabyte tensors per layer would be
            # mapped and page-faulted anew every time, which costs as much as the matrix products
            buffers = [torch.empty(self.n_vertices, self.static.shape[1], dtype=self.dtype, device=self.device)
                       for _ in range(2)]
            # codes of ICT weights (Live Link, built-in clips) have only their first n_expression entries set: the
            # first product then needs only those columns of the skinning weights (a strided view, no copy)
            used = self.n_expression if not z[:, self.n_expression:].any() else z.shape[1]
            frame = self._frame_fused if self.fused else self._frame
            for i in range(z.shape[0]):
                out[i] = frame(z[i], buffers, used)
        else:
            for s in range(0, z.shape[0], batch_frames):
                out[s:s + batch_frames] = self._frames(z[s:s + batch_frames])
        out /= POSITION_SCALE
        if self.prior is not None:
            out += (z[:, :self.n_expression] @ self.prior).reshape(out.shape)
        return out

    def _frames(self, z: torch.Tensor) -> torch.Tensor:
        """Batched `_frame`: z (B, code) -> network output (B, V, 3) float32, network units, without the prior.
        The same algebra with a leading frame axis (batched products), for GPUs."""
        code_mat = z[:, :, None] * self.code_matrix                                   # (B, code, W)
        carried = self.static_mean + (self.weights_mean @ code_mat)                    # (B, W)
        b = z.shape[0]
        g = torch.baddbmm(self.static.expand(b, -1, -1), self.weights.expand(b, -1, -1), code_mat.to(self.dtype))
        scale, d = self._normalise_batched(g, carried, 0)
        for layer, matrix in enumerate(self.hidden, start=1):
            g, carried = self._centred_product_batched(g, scale, d, matrix)
            scale, d = self._normalise_batched(g, carried, layer)
        out, carried = self._centred_product_batched(g, scale, d, self.out_matrix)
        return out.float() + (carried + self.out_bias)[:, None, :]

    def _normalise_batched(self, g: torch.Tensor, carried: torch.Tensor, layer: int):
        """`_normalise` for g (B, V, W), carried (B, W): in place g <- max(g, -d); returns |s| and d, (B, W)."""
        b, v, w = g.shape
        mean_g = g.sum(1, dtype=torch.float32) / v
        sq_g = (g * g).sum(1, dtype=torch.float32) / v
        mean = mean_g + carried
        sq = sq_g + 2.0 * carried * mean_g + carried.square()
        mean_grp = (mean * self.signs[layer]).reshape(b, self.groups, -1).mean(-1, keepdim=True)
        var_grp = sq.reshape(b, self.groups, -1).mean(-1, keepdim=True) - mean_grp.square()
        rstd = torch.rsqrt(var_grp.clamp_min(0.0) + self.eps).expand(b, self.groups, w // self.groups).reshape(b, w)
        mean_c = mean_grp.expand(b, self.groups, w // self.groups).reshape(b, w)
        gain = rstd * self.gamma_abs[layer]
        shift = self.beta[layer] - mean_c * gain * self.signs[layer]
        scale = gain.clamp_min(1e-12)
        d = carried + shift / scale
        torch.maximum(g, (-d).to(g.dtype)[:, None, :], out=g)
        return scale, d

    def _centred_product_batched(self, y: torch.Tensor, scale: torch.Tensor, d: torch.Tensor, matrix: torch.Tensor):
        """`_centred_product` for y (B, V, in), scale and d (B, in): returns g (B, V, out), carried (B, out)."""
        per_frame = scale[:, :, None] * matrix                                         # (B, in, out) float32
        sample = y[:, ::8]
        centre = ((sample.sum(1, dtype=torch.float32) / sample.shape[1])[:, None, :] @ per_frame)  # (B, 1, out)
        centre = centre.to(self.dtype)
        g = torch.baddbmm(-centre, y, per_frame.to(self.dtype))
        return g, ((scale * d)[:, None, :] @ matrix)[:, 0] + centre[:, 0].float()

    def _first_product(self, z: torch.Tensor, g: torch.Tensor, used: int | None) -> torch.Tensor:
        """The first layer's product for code z (code,) into g (V, W); returns its carried constant (W,) float32.
        Only the first `used` code entries are multiplied (the rest are zero)."""
        code_mat = z[:, None] * self.code_matrix                                      # (code, W)
        # the first product is centred over vertices by construction; its mean is carried exactly
        carried = self.static_mean + self.weights_mean @ code_mat
        used = used or len(z)
        # ICT-weight codes: the contiguous copy of their columns (a strided slice slows the product by ~10 %)
        weights = self.weights_expression if used == self.n_expression and self.weights_expression is not None \
            else self.weights[:, :used]
        torch.addmm(self.static, weights, code_mat[:used].to(self.dtype), out=g)
        return carried

    def _frame(self, z: torch.Tensor, buffers: list, used: int | None = None) -> torch.Tensor:
        """z (code,) -> network output (V, 3) float32 in network units, without the prior; buffers: two
        (V, W) tensors of the compute dtype."""
        g, spare = buffers
        carried = self._first_product(z, g, used)
        scale, d = self._normalise(g, carried, 0)
        for layer, matrix in enumerate(self.hidden, start=1):
            nxt, carried = self._centred_product(g, scale, d, matrix, out=spare)
            g, spare = nxt, g
            scale, d = self._normalise(g, carried, layer)
        out, carried = self._centred_product(g, scale, d, self.out_matrix)
        return out.float() + (carried + self.out_bias)

    def _frame_fused(self, z: torch.Tensor, buffers: list, used: int | None = None) -> torch.Tensor:
        """`_frame` with each layer's statistics, group arithmetic and clamp in one call of the compiled kernel
        (`torch.ops.nfs_kernels.normalise_`), which also re-centres the clamped activations (bfloat16): each
        layer is then one kernel call, one bare product and three small products."""
        g, spare = buffers
        carried = self._first_product(z, g, used)
        centre = self.dtype != torch.float32
        normalise = torch.ops.nfs_kernels.normalise_
        # scale_offset (2, W): the true activation is scale * (g + offset), g as the kernel left it
        scale_offset = normalise(g, carried, self.signs[0], self.gamma_abs[0], self.beta[0], self.groups, self.eps,
                                 centre)
        for layer, matrix in enumerate(self.hidden, start=1):
            scale, offset = scale_offset
            carried = (scale * offset) @ matrix
            torch.mm(g, (scale[:, None] * matrix).to(self.dtype), out=spare)
            g, spare = spare, g
            scale_offset = normalise(g, carried, self.signs[layer], self.gamma_abs[layer], self.beta[layer],
                                     self.groups, self.eps, centre)
        scale, offset = scale_offset
        carried = (scale * offset) @ self.out_matrix + self.out_bias
        # the 3-column output product runs 3-4x faster as (3, W) @ y^T than as y @ (W, 3) in the CPU BLAS
        out = torch.mm((scale[:, None] * self.out_matrix).T.to(self.dtype).contiguous(), g.T).T
        return out.float() + carried


@dataclass
class LazyFoldedDecoder:
    """A target's decoder whose network part is folded only when the network's correction is first asked for: the
    template prior alone (the default) decodes as one product of the codes with the prior's basis and needs neither
    the target's encoding (`encode`, called then: operators and encoders run on first use) nor the (V, decoder
    width) folded tensors, which at a million vertices are gigabytes. Copies made by `without_correction` share the
    folded decoder once it is built."""

    model: NFSNetwork
    encode: Callable[[], TargetEncoding]   # the target's encoding, computed (once) when first called
    basis: torch.Tensor | None             # (n_expression, V, 3) template prior, cm, on `device`
    n_vertices: int
    device: torch.device
    dtype: torch.dtype
    correction: bool = True
    _folded: dict = None            # {"decoder": FoldedDecoder} once built, shared by copies

    def __post_init__(self):
        if self._folded is None:
            self._folded = {}

    @property
    def encoding(self) -> TargetEncoding:
        """The target's encoding (computed on first use)."""
        return self.encode()

    @property
    def code_dim(self) -> int:
        return self.model.cfg.code_dim

    @property
    def n_expression(self) -> int:
        return self.model.cfg.n_expression

    @property
    def prior(self) -> torch.Tensor | None:
        """(n_expression, V * 3) float32 template basis, cm (None without a template prior)."""
        p = self.basis if self.model.cfg.template_prior else None
        return None if p is None else p.float().reshape(p.shape[0], -1)

    def folded(self) -> FoldedDecoder:
        """The decoder folded for this target (built on first use, then kept)."""
        if "decoder" not in self._folded:
            self._folded["decoder"] = FoldedDecoder.build(self.model, self.encoding, self.dtype)
        return self._folded["decoder"]

    def without_correction(self) -> "LazyFoldedDecoder":
        return replace(self, correction=False)

    @torch.no_grad()
    def __call__(self, z_ge: torch.Tensor, batch_frames: int | None = None) -> torch.Tensor:
        """Expression codes (B, code) -> displacements (B, V, 3) float32 cm, as `FoldedDecoder.__call__`."""
        prior = self.prior
        if self.correction or prior is None:
            return self.folded()(z_ge, batch_frames)
        z = z_ge.float().to(self.device)
        return (z[:, :self.n_expression] @ prior).reshape(z.shape[0], self.n_vertices, 3)
