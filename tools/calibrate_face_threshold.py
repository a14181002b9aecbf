"""Face confidence of faces and non-faces, to place the refusal threshold (nfs.pipeline.MIN_FACE_CONFIDENCE).

Faces: the demo targets, a few targets of every evaluation category, heads on bodies
(tests/data_makers/synthetic_bodies.py), the avatar corpus (tests/data_makers/face_corpus.py: an avatar head with a
closed mouth bag, closed sockets and separate eyes and teeth, the same on a body with an outfit, heads with hair
cards, a hat, glasses). Non-faces: a cube, a sphere, a flat disk, a single triangle, a tetrahedron, a torus, a
cylinder, a plane grid, a random triangle soup, a hand, a lumpy blob. Each goes through the same intake as the
product (clean_mesh + find_head) in a random orientation and unit. Prints one line per mesh (the face confidence,
the geometric fit's confidence and the face check's score, see nfs.mesh.faceness) and the gap between the lowest
face and the highest non-face.

    python tools/calibrate_face_threshold.py [--per-category 2] [--only NAME ...]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import trimesh
from scipy.spatial.transform import Rotation

from nfs import REPO_ROOT
from nfs.io import load_mesh
from nfs.mesh.clean import clean_mesh
from nfs.mesh.head import find_head
from nfs.pipeline import MIN_FACE_CONFIDENCE

sys.path.insert(0, str(REPO_ROOT / "tests"))          # the test-data makers (tests/data_makers), shared with the tests


def non_faces() -> dict:
    rng = np.random.default_rng(0)
    grid = trimesh.creation.box(extents=(1, 1, 1)).subdivide().subdivide()
    disk = trimesh.creation.cylinder(radius=1.0, height=1e-3, sections=64)
    blob_v = rng.normal(size=(400, 3))
    plane_v = np.stack(np.meshgrid(np.linspace(0, 1, 30), np.linspace(0, 1, 30), [0.0]), -1).reshape(-1, 3)
    idx = np.arange(900).reshape(30, 30)
    plane_f = np.concatenate([np.stack([idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel()], 1),
                              np.stack([idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()], 1)])
    return {
        "cube": (grid.vertices, grid.faces),
        "sphere": (trimesh.creation.icosphere(4).vertices, trimesh.creation.icosphere(4).faces),
        "flat_disk": (disk.vertices, disk.faces),
        "single_triangle": (np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.0]]), np.array([[0, 1, 2]])),
        "tetrahedron": (np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]]),
                        np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])),
        "torus": (trimesh.creation.torus(1.0, 0.3).vertices, trimesh.creation.torus(1.0, 0.3).faces),
        "cylinder": (trimesh.creation.cylinder(0.3, 2.0).vertices, trimesh.creation.cylinder(0.3, 2.0).faces),
        "plane_grid": (plane_v, plane_f),
        "triangle_soup": (blob_v, rng.integers(0, 400, (800, 3))),
        "hand": corpus().hand(),
        "blob": corpus().blob(),
    }


def corpus():
    from data_makers import face_corpus
    return face_corpus


def faces(per_category: int) -> dict:
    from nfs.data.benchmark import CATEGORIES, build_target
    from nfs.ict import load_ict
    from data_makers import synthetic_bodies as bodies
    full_body, head_on_shoulders, head_with_separate_torso = (bodies.full_body, bodies.head_on_shoulders,
                                                              bodies.head_with_separate_torso)

    out = {f"demo/{p.stem}": (lambda p=p: _loaded(p)) for p in sorted((REPO_ROOT / "assets" / "targets").glob("*.obj"))}
    for category in CATEGORIES:
        for i in range(per_category):
            out[f"eval/{category}/{i}"] = (lambda c=category, i=i: _eval(build_target(c, i)))
    ict = load_ict()
    v, f = ict.skin_mesh(ict.sample_identities(1, seed=11)[0])
    for name, fn in (("head_on_shoulders", head_on_shoulders), ("full_body", full_body),
                     ("head_with_separate_torso", head_with_separate_torso)):
        out[f"body/{name}"] = (lambda fn=fn: fn(v.astype(np.float64), f))
    for name, make in corpus().faces_corpus().items():
        out[f"avatar/{name}"] = make
    return out


def _loaded(path):
    raw = load_mesh(path)
    return raw.vertices, raw.faces


def _eval(target):
    return target.vertices, target.faces


def confidence(vertices, faces, seed: int):
    """The intake's alignment of the mesh in a random orientation and unit, and the seconds it took."""
    rotation = Rotation.random(random_state=seed).as_matrix()
    scale = (0.01, 1.0, 10.0)[seed % 3]
    t = time.perf_counter()
    alignment, _ = find_head(clean_mesh(scale * np.asarray(vertices, float) @ rotation.T, faces))
    return alignment, time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-category", type=int, default=2)
    p.add_argument("--only", nargs="*", default=(), help="only the meshes whose name contains one of these")
    a = p.parse_args(argv)
    rows = {"face": [], "non-face": []}
    for kind, meshes in (("non-face", {k: (lambda m=m: m) for k, m in non_faces().items()}),
                         ("face", faces(a.per_category))):
        for i, (name, make) in enumerate(meshes.items()):
            if a.only and not any(o in name for o in a.only):
                continue
            try:
                found, seconds = confidence(*make(), seed=i)
                c, fit, face = found.confidence, found.fit_confidence, found.face_score
            except ValueError as e:  # refused by cleaning (e.g. no usable triangles): confidence 0
                c, fit, face, seconds = 0.0, 0.0, 0.0, 0.0
                name += f" (refused: {str(e)[:50]})"
            rows[kind].append((c, name))
            print(f"{kind:<9} {c:6.3f}  fit {fit:5.3f}  face {face:5.3f}  {seconds:5.1f} s  {name}", flush=True)
    if rows["face"] and rows["non-face"]:
        lowest_face, highest_non_face = min(rows["face"]), max(rows["non-face"])
        print(f"\nlowest face {lowest_face[0]:.3f} ({lowest_face[1]}); highest non-face {highest_non_face[0]:.3f} "
              f"({highest_non_face[1]}); threshold {MIN_FACE_CONFIDENCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
