"""PLY: read through trimesh (vertex order kept), written as binary little-endian."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import re

from nfs.io.mesh import DEFAULT_MAX_VERTICES, MeshError, RawMesh, check_not_empty, finish_mesh
from nfs.io.via_trimesh import read_with_trimesh

EXTENSIONS = (".ply",)


def load_ply(data: bytes, filename: str, max_vertices: int | None = DEFAULT_MAX_VERTICES) -> RawMesh:
    """A PLY file's bytes (ASCII or binary) -> RawMesh. The header's element counts are checked against the
    vertex limit and the file's size before anything is allocated."""
    check_not_empty(data, filename)
    check_declared_counts(data, filename, max_vertices)
    return finish_mesh(read_with_trimesh(data, "ply", filename), filename, max_vertices)


def check_declared_counts(data: bytes, filename: str, max_vertices: int | None) -> None:
    """Refuse a header that declares more vertices than the limit, or more elements than the file could hold
    (at least one byte per element)."""
    end = data.find(b"end_header", 0, 1 << 16)
    header = data[: end if end >= 0 else 1 << 16].decode("latin-1")
    for kind, count in re.findall(r"^element\s+(\S+)\s+(\d+)", header, flags=re.M):
        n = int(count)
        if kind == "vertex" and max_vertices is not None and n > max_vertices:
            raise MeshError(f"{filename}: too many vertices (the header declares {n:,} > limit {max_vertices:,}); "
                            "decimate the mesh first")
        if n > len(data):
            raise MeshError(f"{filename}: the header declares {n:,} {kind} elements but the file has only "
                            f"{len(data):,} bytes")


def save_ply(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a binary little-endian PLY in the given vertex order (float32 positions, int32 indices)."""
    vertices = np.asarray(vertices, np.float32)
    faces = np.asarray(faces, np.int64)
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment written by nfs\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    face_record = np.dtype([("n", "u1"), ("idx", "<i4", (3,))])
    records = np.empty(len(faces), face_record)
    records["n"] = 3
    records["idx"] = faces
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(vertices.astype("<f4").tobytes())
        fh.write(records.tobytes())
