"""Decoding: expression codes -> frames of the user's mesh (original vertex order, frame and units), and the
network baked into a 53-shape linear rig."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from nfs.ict import N_EXPRESSION
from nfs.pipeline.target import PreparedTarget
from nfs.progress import Progress, no_progress


@torch.no_grad()
def decode_skin(target: PreparedTarget, codes: np.ndarray, chunk_frames: int | None = None) -> Iterator[np.ndarray]:
    """Skin displacements in the ICT frame (cm), chunks of (t, S, 3), by the decoder folded for this target (on
    its device; default chunks: 4 frames on the CPU, 64 on a GPU, decoded there 32 at a time), with the triangles
    a mix of shapes turns over (and its source does not) mended on the template prior's path
    (`PreparedTarget.frame_guard`; the network's correction, when on, is decoded as the network gives it)."""
    if chunk_frames is None:
        chunk_frames = 4 if target.decoder.device.type == "cpu" else 64
    guard = None if target.decoder.correction else target.frame_guard
    for start in range(0, len(codes), chunk_frames):
        z = torch.from_numpy(np.ascontiguousarray(codes[start:start + chunk_frames], np.float32))
        disp = target.decoder(z).cpu().numpy()
        if guard is not None:
            guard.mend(disp, codes[start:start + chunk_frames, :N_EXPRESSION])
        yield disp


def decode(target: PreparedTarget, codes: np.ndarray, chunk_frames: int | None = None) -> Iterator[np.ndarray]:
    """Animated positions of the user's whole mesh, chunks of (t, V_in, 3), in its original vertex order,
    frame and units (the inverse alignment applied); other components follow the skin."""
    base = target.raw.vertices.astype(np.float32)
    for disp in decode_skin(target, codes, chunk_frames):
        user = target.alignment.inverse_vectors(disp.reshape(-1, 3)).reshape(disp.shape).astype(np.float32)
        yield base[None] + target.binding.displacements(base, user)


def decode_all(target: PreparedTarget, codes: np.ndarray) -> np.ndarray:
    """(T, V_in, 3) all frames at once (short clips and tests)."""
    return np.concatenate(list(decode(target, codes)))


def rig_shapes(target: PreparedTarget, progress: Progress = no_progress) -> tuple[np.ndarray, np.ndarray]:
    """Bake the network into a linear rig on the user's mesh: neutral (V_in, 3) = decode(0) and the 53 shape
    deltas (53, V_in, 3) = decode(e_k) - decode(0), in the user's units."""
    codes = np.zeros((N_EXPRESSION + 1, target.decoder.code_dim), np.float32)
    codes[1:, :N_EXPRESSION] = np.eye(N_EXPRESSION)
    chunks = []
    for chunk in decode(target, codes):
        chunks.append(chunk)
        done = sum(len(c) for c in chunks)
        progress(done / len(codes), f"{done}/{len(codes)} shapes")
    frames = np.concatenate(chunks)
    del chunks
    neutral = frames[0].copy()
    frames[1:] -= neutral[None]                      # in place: (53, V, 3) is large on a dense mesh
    return neutral, frames[1:]


def linear_rig_error_mm(target: PreparedTarget, neutral: np.ndarray, deltas: np.ndarray, weights: np.ndarray,
                        frames: np.ndarray) -> float:
    """Mean per-vertex distance (mm) on the skin between the baked linear rig with `weights` (n, 53) and the
    network's `frames` (n, V_in, 3)."""
    skin = target.clean.skin_original_index
    flat = deltas[:, skin].reshape(len(deltas), -1)            # (53, S * 3): one product per few frames
    total, frames = 0.0, np.asarray(frames)
    for s0 in range(0, len(weights), 8):
        lin = neutral[None, skin] + (np.asarray(weights[s0:s0 + 8], flat.dtype) @ flat).reshape(-1, len(skin), 3)
        total += float(np.linalg.norm(lin - frames[s0:s0 + 8, skin], axis=-1).sum())
    err_user = total / max(len(weights) * len(skin), 1)
    return float(err_user * target.alignment.scale * 10.0)
