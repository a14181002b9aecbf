"""The ICT-FaceKit linear face model (MIT), shipped in third_party/ict-facekit/ict_face_model.npz.

Units are centimetres, +Y up, the face looks along +Z. A face is
``neutral + id_coeffs @ identity_deltas + exp_coeffs @ expression_deltas``.
Vertices 0..11247 are the skin (face 0..9408, narrow face 0..6705, head and neck 9409..11247);
the two eyeballs follow (four closed shells: sclera and iris of each eye).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nfs.geometry.triangulate import fan_triangulate
from nfs.resources import ICT_MODEL_PATH as ICT_PATH

N_IDENTITY = 100
N_EXPRESSION = 53
SKIN_VERTEX_COUNT = 11248
FACE_VERTEX_COUNT = 9409
NARROW_FACE_VERTEX_COUNT = 6706
REGION_VERTEX_COUNTS = {"skin": SKIN_VERTEX_COUNT, "face": FACE_VERTEX_COUNT, "narrow_face": NARROW_FACE_VERTEX_COUNT}

EXPRESSION_NAMES = (
    "browDown_L browDown_R browInnerUp_L browInnerUp_R browOuterUp_L browOuterUp_R cheekPuff_L cheekPuff_R "
    "cheekSquint_L cheekSquint_R eyeBlink_L eyeBlink_R eyeLookDown_L eyeLookDown_R eyeLookIn_L eyeLookIn_R "
    "eyeLookOut_L eyeLookOut_R eyeLookUp_L eyeLookUp_R eyeSquint_L eyeSquint_R eyeWide_L eyeWide_R jawForward "
    "jawLeft jawOpen jawRight mouthClose mouthDimple_L mouthDimple_R mouthFrown_L mouthFrown_R mouthFunnel "
    "mouthLeft mouthLowerDown_L mouthLowerDown_R mouthPress_L mouthPress_R mouthPucker mouthRight mouthRollLower "
    "mouthRollUpper mouthShrugLower mouthShrugUpper mouthSmile_L mouthSmile_R mouthStretch_L mouthStretch_R "
    "mouthUpperUp_L mouthUpperUp_R noseSneer_L noseSneer_R"
).split()


@dataclass
class ICTFaceModel:
    """The packed ICT model. Arrays cover skin + eyeballs; `skin_count` vertices are the skin."""

    neutral: np.ndarray            # (V, 3) float32, cm
    identity_deltas: np.ndarray    # (100, V, 3) float32
    expression_deltas: np.ndarray  # (53, V, 3) float32
    poly_counts: np.ndarray        # (P,) polygon sizes
    poly_indices: np.ndarray       # (sum counts,) vertex indices
    poly_uv_indices: np.ndarray    # (sum counts,) uv indices
    uv: np.ndarray                 # (U, 2)
    poly_material: np.ndarray      # (P,)
    material_names: tuple
    landmarks68: np.ndarray        # (68,) vertex indices
    skin_count: int = SKIN_VERTEX_COUNT
    expression_names: tuple = tuple(EXPRESSION_NAMES)
    _faces: np.ndarray = field(default=None, repr=False)

    @property
    def faces(self) -> np.ndarray:
        """(F, 3) triangles of skin + eyeballs."""
        if self._faces is None:
            self._faces, _ = fan_triangulate(self.poly_counts, self.poly_indices)
        return self._faces

    def region_vertex_count(self, region: str = "skin") -> int:
        if region not in REGION_VERTEX_COUNTS:
            raise ValueError(f"unknown region {region!r}; expected one of {sorted(REGION_VERTEX_COUNTS)}")
        return REGION_VERTEX_COUNTS[region]

    def region_faces(self, region: str = "skin") -> np.ndarray:
        """(F, 3) triangles whose vertices all lie in the region (the region's vertices are a prefix)."""
        n = self.region_vertex_count(region)
        f = self.faces
        return f[(f < n).all(1)]

    def region_mask(self, region: str = "skin") -> np.ndarray:
        """(skin_count,) bool mask of the region's vertices on the skin."""
        m = np.zeros(self.skin_count, bool)
        m[: self.region_vertex_count(region)] = True
        return m

    def eyeball_faces(self) -> np.ndarray:
        f = self.faces
        return f[(f >= self.skin_count).all(1)]

    def sample_identities(self, n: int, seed: int = 0, sigma: float = 1.0) -> np.ndarray:
        """(n, 100) identity coefficients ~ N(0, sigma^2), reproducible by seed."""
        return (np.random.default_rng(seed).standard_normal((n, N_IDENTITY)) * sigma).astype(np.float32)

    def vertices(self, id_coeffs=None, exp_coeffs=None, n_vertices: int | None = None) -> np.ndarray:
        """Mesh positions (cm). id_coeffs (..., 100), exp_coeffs (..., 53) broadcast together;
        returns (..., n, 3) for the first n_vertices (default: the skin)."""
        n = self.skin_count if n_vertices is None else n_vertices
        v = self.neutral[:n]
        if id_coeffs is not None:
            v = v + np.tensordot(np.asarray(id_coeffs, np.float32), self.identity_deltas[:, :n], axes=(-1, 0))
        if exp_coeffs is not None:
            v = v + np.tensordot(np.asarray(exp_coeffs, np.float32), self.expression_deltas[:, :n], axes=(-1, 0))
        return np.asarray(v, np.float32)

    def skin_mesh(self, id_coeffs=None, exp_coeffs=None, region: str = "skin") -> tuple[np.ndarray, np.ndarray]:
        """(vertices (V, 3), faces (F, 3)) of a skin region for the given codes."""
        n = self.region_vertex_count(region)
        return self.vertices(id_coeffs, exp_coeffs, n), self.region_faces(region)

    def full_mesh(self, id_coeffs=None, exp_coeffs=None) -> tuple[np.ndarray, np.ndarray]:
        """Skin plus eyeballs (separate components)."""
        return self.vertices(id_coeffs, exp_coeffs, len(self.neutral)), self.faces


@functools.lru_cache(maxsize=1)
def load_ict(path: str | Path = ICT_PATH) -> ICTFaceModel:
    """Load the packed ICT model (cached; no pickle)."""
    d = np.load(path, allow_pickle=False)
    id_d = d["identity_deltas_q"].astype(np.float32)
    id_d *= d["identity_scale"][:, None, None]               # in place: the same products, one pass less
    ex_d = d["expression_deltas_q"].astype(np.float32)
    ex_d *= d["expression_scale"][:, None, None]
    names = tuple(str(s) for s in d["expression_names"])
    assert names == tuple(EXPRESSION_NAMES), "packed ICT expression order differs from EXPRESSION_NAMES"
    return ICTFaceModel(
        neutral=d["neutral"], identity_deltas=id_d, expression_deltas=ex_d,
        poly_counts=d["poly_counts"], poly_indices=d["poly_indices"], poly_uv_indices=d["poly_uv_indices"],
        uv=d["uv"], poly_material=d["poly_material"], material_names=tuple(str(s) for s in d["material_names"]),
        landmarks68=d["landmarks68"], skin_count=int(d["skin_vertex_count"]),
    )
