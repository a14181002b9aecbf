"""A dense scan-like head for tests of the app on big uploads: the demo stylized head (5,004 vertices, cm)
subdivided 1-to-4 until it has at least the vertices asked (four rounds: about 320,000), every vertex moved
along its normal by a capture-like noise, and a few small round holes cut away from the eyes and mouth, as a
structured-light scan has. Written as binary PLY (float32 positions, about 12 MB at 320k vertices).

Deterministic (fixed seed); made on demand by the tests, nothing is committed.

    python tests/data_makers/dense_scan.py out.ply [--vertices 300000]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nfs import REPO_ROOT
from nfs.geometry.normals import vertex_normals
from nfs.geometry.remesh import subdivide_midpoint
from nfs.io import load_mesh
from nfs.io.ply import save_ply

DEMO_HEAD = REPO_ROOT / "assets" / "targets" / "stylized_head.obj"


def dense_scan_head(min_vertices: int = 300_000, seed: int = 0, noise_mm: float = 0.08, holes: int = 4,
                    hole_mm: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3) float32 cm, faces (F, 3) int64) with V >= `min_vertices` less the holes' vertices."""
    raw = load_mesh(DEMO_HEAD)
    v, f = raw.vertices.astype(np.float64), raw.faces.astype(np.int64)
    while len(v) < min_vertices:
        v, f = subdivide_midpoint(v, f)
    rng = np.random.default_rng(seed)
    v = v + vertex_normals(v, f) * rng.normal(0.0, noise_mm * 0.1, (len(v), 1))
    # holes on the back and sides of the head (behind the face's plane), never on the eyes or mouth
    centre = v.mean(0)
    behind = np.flatnonzero(v[:, 2] < centre[2])
    gone = np.zeros(len(f), bool)
    centroid = v[f].mean(1)
    for c in v[rng.choice(behind, holes, replace=False)]:
        gone |= np.linalg.norm(centroid - c, axis=1) < hole_mm * 0.1
    f = f[~gone]
    used = np.unique(f)
    remap = np.full(len(v), -1, np.int64)
    remap[used] = np.arange(len(used))
    return v[used].astype(np.float32), remap[f]


def write_dense_scan(path: str | Path, min_vertices: int = 300_000, seed: int = 0) -> Path:
    """`dense_scan_head` written as binary PLY at `path`."""
    path = Path(path)
    v, f = dense_scan_head(min_vertices, seed)
    save_ply(path, v, f)
    return path


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--vertices", type=int, default=300_000)
    a = p.parse_args()
    out = write_dense_scan(a.out, a.vertices)
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB")
