"""Object File Format (OFF): read here, keeping the file's face order (trimesh reorders OFF faces)."""
from __future__ import annotations

import numpy as np

from nfs.geometry.triangulate import fan_triangulate
from nfs.io.mesh import DEFAULT_MAX_VERTICES, MeshError, RawMesh, check_not_empty, check_vertex_limit, finish_mesh
from nfs.io.text import decode_text, parse_floats

EXTENSIONS = (".off",)


def load_off(data: bytes, filename: str, max_vertices: int | None = DEFAULT_MAX_VERTICES) -> RawMesh:
    """An OFF file's bytes -> RawMesh (polygons fan-triangulated)."""
    check_not_empty(data, filename)
    text = decode_text(data, filename, "OFF")
    rows = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    rows = [r for r in rows if r]
    head = rows[0].split() if rows else [""]
    if not head[0].upper().endswith("OFF"):
        raise MeshError(f"{filename}: unreadable OFF file (missing OFF header)")
    rest = ([" ".join(head[1:])] if len(head) > 1 else []) + rows[1:]  # counts may share the header line
    if not rest:
        raise MeshError(f"{filename}: unreadable OFF file (bad vertex/face counts)")
    try:
        n_v, n_f = (int(x) for x in rest[0].split()[:2])
    except (ValueError, IndexError):
        raise MeshError(f"{filename}: unreadable OFF file (bad vertex/face counts)") from None
    if n_v < 0 or n_f < 0:
        raise MeshError(f"{filename}: unreadable OFF file (negative vertex/face counts)")
    check_vertex_limit(n_v, filename, max_vertices)
    if len(rest) < 1 + n_v + n_f:
        raise MeshError(f"{filename}: truncated OFF file ({len(rest) - 1} rows, header promises {n_v + n_f})")
    vertices = parse_floats(rest[1 : 1 + n_v], 3, filename, "vertex")
    if n_f == 0:
        raise MeshError("point clouds are not supported")
    try:
        face_rows = [np.array(r.split(), dtype=np.int64) for r in rest[1 + n_v : 1 + n_v + n_f]]
    except (ValueError, OverflowError):  # OverflowError: a number beyond int64
        raise MeshError(f"{filename}: malformed face row") from None
    counts = np.array([row[0] for row in face_rows], np.int64)
    if (counts < 0).any() or any(len(row) < 1 + c for row, c in zip(face_rows, counts)):
        raise MeshError(f"{filename}: malformed face row (negative count or fewer indices than its count)")
    flat = np.concatenate([row[1 : 1 + c] for row, c in zip(face_rows, counts)]) if n_f else np.zeros(0, np.int64)
    faces, polygon = fan_triangulate(counts, flat)
    notes = [f"triangulated {int((counts > 3).sum())} polygons with more than 3 corners"] if (counts > 3).any() else []
    return finish_mesh(RawMesh(vertices, faces, polygon, notes=notes), filename, max_vertices)
