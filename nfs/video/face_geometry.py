"""The facial transformation matrix of MediaPipe's face landmarker: head pose from 468 landmarks.

The canonical face (468 points, cm) and the 33 weighted landmarks of its Procrustes fit come from
`geometry_pipeline_metadata_landmarks.binarypb` in the model bundle (a small protobuf, read here without a protobuf
library). The landmarks are placed in a virtual perspective camera (vertical field of view 63 degrees, near plane
1 cm, image origin top-left): x and y on the near plane, z (relative depth) rescaled by the face's size; a first
weighted Procrustes fit on the projected points gives a scale that un-projects them, a second one refines it, and
the final fit of the canonical face to the un-projected landmarks is the matrix: canonical cm -> camera cm
(x right, y up, z toward the viewer; the face lies at negative z).
"""
from __future__ import annotations

import functools
import struct

import numpy as np

from nfs.video.bundle import CAMERA_NEAR_CM, CAMERA_VERTICAL_FOV_DEG, N_MESH, bundle_files


def _varint(b: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        c = b[i]
        i += 1
        out |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return out, i


def _fields(b: bytes) -> list[tuple[int, int, object]]:
    """(field number, wire type, value) of a protobuf message's top level."""
    i, out = 0, []
    while i < len(b):
        key, i = _varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((num, wire, v))
    return out


def _floats(fields, num) -> np.ndarray:
    """A repeated float field, packed or not."""
    vals = []
    for n, wire, v in fields:
        if n == num:
            vals.extend(struct.unpack(f"<{len(v) // 4}f", v) if wire == 2 else struct.unpack("<f", v))
    return np.array(vals, np.float64)


@functools.lru_cache(maxsize=1)
def canonical_face() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(468, 3) canonical face (cm), (33,) landmark indices and (33,) weights of the Procrustes fit."""
    top = _fields(bundle_files()["geometry_pipeline_metadata_landmarks.binarypb"])
    mesh = _fields(next(v for n, _, v in top if n == 1))
    vertices = _floats(mesh, 3).reshape(-1, 5)[:, :3]          # x, y, z, u, v per vertex
    ids, weights = [], []
    for n, _, v in top:
        if n == 2:
            ref = dict((k, val) for k, _, val in _fields(v))
            ids.append(int(ref.get(1, 0)))
            weights.append(struct.unpack("<f", ref[2])[0] if 2 in ref else 0.0)
    if len(vertices) != N_MESH or not ids:
        raise ValueError("unexpected face geometry metadata in the model bundle")
    return vertices, np.array(ids), np.array(weights)


def weighted_similarity(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(4, 4) similarity (scale * rotation, translation) that best maps source (N, 3) onto target (N, 3) in the
    weighted least-squares sense, without reflection."""
    w = weights / weights.sum()
    cs, ct = w @ source, w @ target
    a, b = source - cs, target - ct
    u, _, vt = np.linalg.svd((b * w[:, None]).T @ a)
    d = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    u[:, 2] *= d
    rot = u @ vt
    scale = float(np.einsum("ij,ij,i->", a @ rot.T, b, w) / np.einsum("ij,ij,i->", a, a, w))
    m = np.eye(4)
    m[:3, :3] = scale * rot
    m[:3, 3] = ct - scale * rot @ cs
    return m


class FaceGeometry:
    """Face landmarks -> the transformation matrix (see the module docstring)."""

    def __init__(self):
        canonical, ids, weights = canonical_face()
        self.ids = ids
        self.canonical = canonical[ids]
        self.weights = weights
        self.near = CAMERA_NEAR_CM
        self.half_height = CAMERA_NEAR_CM * np.tan(np.deg2rad(CAMERA_VERTICAL_FOV_DEG) / 2)

    def _fit(self, points: np.ndarray) -> np.ndarray:
        return weighted_similarity(self.canonical, points[self.ids], self.weights)

    def matrix(self, points_px: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """(4, 4) canonical face (cm) -> camera space (cm) from (>= 468, 3) landmarks in pixels and the frame's
        (width, height)."""
        w, h = frame_size
        half_width = self.half_height * w / h
        p = np.asarray(points_px[:N_MESH], np.float64) / w                      # MediaPipe's normalised units
        p[:, 1] *= w / h
        # onto the near plane: x from -half_width to half_width, y up from -half_height, z in x's scale
        screen = np.stack([p[:, 0] * 2 * half_width - half_width,
                           (1.0 - p[:, 1]) * 2 * self.half_height - self.half_height,
                           p[:, 2] * 2 * half_width], 1)
        depth_offset = screen[:, 2].mean()

        def unproject(scale):
            q = screen.copy()
            q[:, 2] = (q[:, 2] - depth_offset + self.near) / scale
            q[:, :2] *= q[:, 2:3] / self.near
            q[:, 2] *= -1.0                                                  # camera looks down -z
            return q

        flipped = screen * np.array([1.0, 1.0, -1.0])
        first = np.linalg.norm(self._fit(flipped)[:3, 0])
        second = np.linalg.norm(self._fit(unproject(first))[:3, 0])
        return self._fit(unproject(first * second))
