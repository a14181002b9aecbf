"""Rotation matrices: axis-angle (Rodrigues), the 24 axis-aligned rotations, angles between rotations."""
from __future__ import annotations

import itertools

import numpy as np


def rotation_from_vector(omega: np.ndarray) -> np.ndarray:
    """(K, 3) axis-angle vectors (radians) -> (K, 3, 3) rotation matrices (Rodrigues)."""
    omega = np.asarray(omega, np.float64)
    angle = np.linalg.norm(omega, axis=1)
    axis = omega / np.maximum(angle, 1e-12)[:, None]
    cross = np.zeros((len(omega), 3, 3))
    cross[:, 0, 1], cross[:, 0, 2], cross[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    cross = cross - cross.transpose(0, 2, 1)
    sin, cos = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + sin * cross + (1 - cos) * cross @ cross


def axis_to_axis(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation (3, 3) taking unit vector a (3,) to unit vector b (3,)."""
    v, c = np.cross(a, b), float(a @ b)
    if c < -1 + 1e-9:  # opposite: half turn about any axis perpendicular to a
        perp = np.cross(a, np.eye(3)[np.argmin(np.abs(a))])
        return rotation_from_vector((np.pi * perp / np.linalg.norm(perp))[None])[0]
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


def axis_rotations() -> np.ndarray:
    """(24, 3, 3) proper rotations that map coordinate axes to signed coordinate axes."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            r = np.zeros((3, 3))
            r[np.arange(3), perm] = signs
            if np.linalg.det(r) > 0:
                out.append(r)
    return np.array(out)


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between rotations a (..., 3, 3) and b (..., 3, 3)."""
    cos = (np.einsum("...ij,...ij->...", a, b) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))
