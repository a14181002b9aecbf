"""Write the demo target meshes bundled with the app to assets/targets/ (small OBJ files).

Deterministic: fixed seeds, no inputs. Run ``python tools/make_demo_targets.py`` from the repo root.

* ``ict_remeshed.obj``  an ICT identity (seed 11, sigma 1) on its whole skin, quadric-decimated to about 4k
  vertices, so its topology differs from the template's.
* ``face_crop_metres.obj``  another identity's face region only (no scalp, no neck), in metres, turned so it
  looks along +X with +Z up and moved off the origin: the automatic alignment has work to do.
* ``stylized_head.obj``  a head from exaggerated identity modes (|c| = 3 on the first modes, a few with
  flipped signs), decimated to about 5k vertices.
"""
from __future__ import annotations


import numpy as np


from nfs import REPO_ROOT
from nfs.geometry.remesh import decimate
from nfs.ict import N_IDENTITY, load_ict
from nfs.io import save_obj

TARGETS_DIR = REPO_ROOT / "assets" / "targets"


def rotation(axis: str, degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def remeshed_identity(ict) -> tuple[np.ndarray, np.ndarray]:
    coeffs = ict.sample_identities(1, seed=11)[0]
    v, f = ict.skin_mesh(coeffs, region="skin")
    return decimate(v, f, 4000)


def face_crop_in_metres(ict) -> tuple[np.ndarray, np.ndarray]:
    coeffs = ict.sample_identities(1, seed=23)[0]
    v, f = ict.skin_mesh(coeffs, region="face")
    v, f = decimate(v, f, 3500)
    # ICT looks along +Z with +Y up; this mesh looks along +X with +Z up (a Z-up DCC convention), in metres,
    # placed away from the origin
    turn = rotation("z", 90.0) @ rotation("x", 90.0)
    return (v / 100.0) @ turn.T + np.array([0.4, -0.25, 1.1]), f


def stylized_head(ict) -> tuple[np.ndarray, np.ndarray]:
    coeffs = np.zeros(N_IDENTITY, np.float32)
    signs = np.array([1, -1, 1, 1, -1, 1, -1, 1], np.float32)
    coeffs[: len(signs)] = 3.0 * signs
    v, f = ict.skin_mesh(coeffs, region="skin")
    return decimate(v, f, 5000)


DEMOS = {
    "ict_remeshed": remeshed_identity,
    "face_crop_metres": face_crop_in_metres,
    "stylized_head": stylized_head,
}


def main() -> int:
    TARGETS_DIR.mkdir(parents=True, exist_ok=True)
    ict = load_ict()
    for name, make in DEMOS.items():
        v, f = make(ict)
        path = TARGETS_DIR / f"{name}.obj"
        save_obj(path, np.round(v, 6), f)
        print(f"{path.relative_to(REPO_ROOT)}: {len(v)} vertices, {len(f)} triangles, "
              f"{path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
