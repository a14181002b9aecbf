"""Test fixtures: a small Multiface-style capture written from the ICT model with known weights."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from nfs.geometry.triangulate import fan_triangulate
from nfs.ict import EXPRESSION_NAMES, load_ict
from nfs.io.multiface import MULTIFACE_NEUTRAL
from nfs.io.obj import obj_text


def multiface_fixture_codes(n_frames: int) -> dict[str, np.ndarray]:
    """The ICT weights (n_frames, 53) behind each expression of `write_multiface_fixture`."""
    ramp = np.sin(np.linspace(0.0, np.pi, n_frames)) ** 2
    codes = {}
    neutral = np.zeros((n_frames, len(EXPRESSION_NAMES)), np.float32)
    codes[MULTIFACE_NEUTRAL] = neutral
    jaw = neutral.copy()
    for n, w in (("jawOpen", 0.7), ("browInnerUp_L", 0.6), ("browInnerUp_R", 0.6), ("browOuterUp_L", 0.5),
                 ("browOuterUp_R", 0.5)):
        jaw[:, EXPRESSION_NAMES.index(n)] = w * ramp
    codes["E006_Jaw_Drop_Brows_Up"] = jaw
    smile = neutral.copy()
    for n, w in (("mouthSmile_L", 0.9), ("mouthSmile_R", 0.8), ("cheekSquint_L", 0.4), ("cheekSquint_R", 0.4)):
        smile[:, EXPRESSION_NAMES.index(n)] = w * ramp
    codes["E008_Smile_Mouth_Closed"] = smile
    return codes


def write_multiface_fixture(root, n_frames: int = 5, region: str = "narrow_face", scale: float = 10.0,
                            first_frame: int = 102, frame_step: int = 3, as_zip: bool = False) -> dict[str, np.ndarray]:
    """Write a small Multiface-style dataset from the ICT model (mean identity, `region` skin with
    its UVs, coordinates times `scale`: 10 gives mm like Multiface) under
    ``root/tracked_mesh/<EXPRESSION>/<frame:06d>.obj`` with dummy ``.bin`` and ``_transform.txt``
    siblings. With `as_zip` the same tree is written to ``root`` as a zip file instead.
    Returns `multiface_fixture_codes(n_frames)` (the ground-truth weights per expression)."""
    m = load_ict()
    n_v = m.region_vertex_count(region)
    tri_v, _ = fan_triangulate(m.poly_counts, m.poly_indices)
    tri_uv, _ = fan_triangulate(m.poly_counts, m.poly_uv_indices)
    keep = (tri_v < n_v).all(1)
    faces, uv_faces = tri_v[keep], tri_uv[keep]
    used_uv, uv_faces = np.unique(uv_faces, return_inverse=True)
    uv_faces = uv_faces.reshape(-1, 3)
    uv = m.uv[used_uv]
    codes = multiface_fixture_codes(n_frames)
    files = {}
    for exp, c in codes.items():
        verts = m.vertices(None, c, n_v) * scale
        for k in range(n_frames):
            stem = f"tracked_mesh/{exp}/{first_frame + frame_step * k:06d}"
            files[stem + ".obj"] = obj_text(verts[k], faces, uv=uv, uv_faces=uv_faces).encode()
            files[stem + ".bin"] = verts[k].astype(np.float32).tobytes()
            files[stem + "_transform.txt"] = b"1 0 0 0\n0 1 0 0\n0 0 1 0\n"
    root = Path(root)
    if as_zip:
        root.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(root, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for rel, data in files.items():
                zf.writestr(rel, data)
    else:
        for rel, data in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    return codes
