"""STL (binary or ASCII): a triangle soup whose coincident corners are merged on reading, so the vertex limit
counts the mesh's real vertices (a scan with 158k triangles has about 79k of them, not 475k corners)."""
from __future__ import annotations

import numpy as np

from nfs.io.mesh import DEFAULT_MAX_VERTICES, MeshError, RawMesh, check_not_empty, check_vertex_limit, finish_mesh
from nfs.io.via_trimesh import read_with_trimesh

EXTENSIONS = (".stl",)
HEADER_BYTES, RECORD_BYTES = 84, 50
BINARY_RECORD = np.dtype([("normal", "<f4", 3), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])


def load_stl(data: bytes, filename: str, max_vertices: int | None = DEFAULT_MAX_VERTICES) -> RawMesh:
    """An STL file's bytes -> RawMesh with coincident corners merged (first-seen order)."""
    check_not_empty(data, filename)
    if _is_binary(data):
        corners = _binary_corners(data, filename)
    else:
        soup = read_with_trimesh(data, "stl", filename)
        corners = soup.vertices[soup.faces].reshape(-1, 3)
    if max_vertices is not None and len(corners) > 3 * max_vertices:
        # even fully merged, a closed mesh has at least half as many vertices as triangles
        check_vertex_limit(len(corners) // 6, filename, max_vertices)
    vertices, faces = merge_corners(corners)
    notes = [f"STL triangle soup: {len(corners):,} corners merged into {len(vertices):,} vertices"]
    return finish_mesh(RawMesh(vertices, faces, np.arange(len(faces)), notes=notes), filename, max_vertices)


def _is_binary(data: bytes) -> bool:
    """Binary unless it reads as ASCII 'solid ...' text (some binary exporters also start with 'solid')."""
    if len(data) >= HEADER_BYTES:
        n = int.from_bytes(data[80:84], "little")
        if HEADER_BYTES + RECORD_BYTES * n == len(data):
            return True
    head = data[:1024].lstrip()
    return not (head[:5].lower() == b"solid" and b"\0" not in data[:1024])


def _binary_corners(data: bytes, filename: str) -> np.ndarray:
    if len(data) < HEADER_BYTES:
        raise MeshError(f"{filename}: unreadable STL file (shorter than the 84-byte binary header)")
    declared = int.from_bytes(data[80:84], "little")
    held, rest = divmod(len(data) - HEADER_BYTES, RECORD_BYTES)
    if declared != held:
        raise MeshError(f"{filename}: broken binary STL: the header's triangle count is {declared:,} but the file "
                        f"holds {held:,} triangles{f' and {rest} stray bytes' if rest else ''}")
    records = np.frombuffer(data, BINARY_RECORD, count=held, offset=HEADER_BYTES)
    return records["corners"].reshape(-1, 3).astype(np.float64)


def merge_corners(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3F, 3) triangle corners -> exactly-equal corners merged: vertices (V, 3) in first-seen order and
    faces (F, 3)."""
    _, first, inverse = np.unique(corners, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return corners[first[order]], rank[inverse.reshape(-1)].reshape(-1, 3)
