"""Least-squares rigid and similarity fits between corresponding point sets (Procrustes / Umeyama), batched."""
from __future__ import annotations

import numpy as np


def umeyama_batch(src: np.ndarray, dst: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least-squares similarity per batch item: dst ~ s R src + t.
    src, dst (K, N, 3); weight (K, N) -> s (K,), R (K, 3, 3) with det +1, t (K, 3)."""
    w = weight / np.maximum(weight.sum(1, keepdims=True), 1e-12)
    mu_src = np.einsum("kn,knd->kd", w, src)
    mu_dst = np.einsum("kn,knd->kd", w, dst)
    a = src - mu_src[:, None]
    b = dst - mu_dst[:, None]
    cov = np.einsum("kn,kni,knj->kij", w, b, a)
    var_src = np.einsum("kn,knd->k", w, a * a)
    u, sing, vt = np.linalg.svd(cov)
    d = np.ones((len(src), 3))
    d[:, 2] = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    d[d == 0] = 1.0
    rot = np.einsum("kij,kj,kjl->kil", u, d, vt)
    scale = (sing * d).sum(1) / np.maximum(var_src, 1e-12)
    trans = mu_dst - scale[:, None] * np.einsum("kij,kj->ki", rot, mu_src)
    return scale, rot, trans


def rigid_fits(rest: np.ndarray, moved: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares rotations R (T, 3, 3) and translations t (T, 3) with moved[t] ~ rest @ R[t].T + t[t];
    rest (m, 3), moved (T, m, 3) (Kabsch: the similarity fit's rotation, with the scale held at 1)."""
    moved = np.asarray(moved, np.float64)
    src = np.broadcast_to(np.asarray(rest, np.float64), moved.shape)
    _, rot, _ = umeyama_batch(src, moved, np.ones(moved.shape[:2]))
    return rot, moved.mean(1) - np.einsum("tij,j->ti", rot, src[0].mean(0))
