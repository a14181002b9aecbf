"""Compactly supported fall-off profiles (Wendland C2) and plateaus, with their gradients: the weights of
local warps about a centre."""
from __future__ import annotations

import numpy as np


def wendland(s: np.ndarray) -> np.ndarray:
    """Wendland C2 profile psi(s) = (1 - s)^4 (4 s + 1) for s in [0, 1], 0 beyond; psi(0) = 1."""
    t = np.clip(1.0 - s, 0.0, None)
    return t ** 4 * (4.0 * s + 1.0)


def plateau(r: np.ndarray, inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """1 for r <= inner, Wendland fall-off psi((r - inner) / (outer - inner)) to 0 at r = outer."""
    return wendland(np.clip(r - inner, 0.0, None) / (outer - inner))


def plateau_gradient(d: np.ndarray, inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. x of plateau(|d|) with d = x - c; (..., 3). C1 at r = inner since psi'(0) = 0."""
    r = np.linalg.norm(d, axis=-1)
    width = outer - inner
    s = np.clip(r - inner, 0.0, None) / width
    t = np.clip(1.0 - s, 0.0, None)
    return (-20.0 * s * t ** 3 / (width * np.maximum(r, 1e-12)))[..., None] * d
