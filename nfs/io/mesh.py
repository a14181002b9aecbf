"""The mesh every loader returns (`RawMesh`), its error type, and the checks shared by all mesh formats.

Every loader in `nfs.io` returns a `RawMesh` of triangles whose vertex ``i`` is the file's vertex ``i`` (for
GLB/GLTF: the geometries concatenated in scene order, offsets in ``parts``; for STL: the file's triangle soup).
Problems raise `MeshError` with a one-line message.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_MAX_VERTICES = 1_500_000   # scans run to a million vertices; their network inputs use a proxy


class MeshError(ValueError):
    """A mesh file or array that cannot be used; the message is one line meant for the user."""


@dataclass
class MeshPart:
    """One geometry of a multi-mesh file: its rows in the concatenated arrays.

    For glTF / VRM a part is one primitive of one node's mesh, and says where it came from: merged vertex
    ``vertex_offset + i`` is the primitive's vertex ``i`` (all its vertices, in its order); ``node`` / ``mesh`` /
    ``primitive`` indices and names, its ``material``; ``world`` (4, 4) the node's world transform at rest;
    ``skinned`` (positions are the bind pose: each vertex moved by its joints' world x inverse-bind matrices);
    ``linear`` the map from the primitive's own (bind) space to the merged positions for directions and
    displacements: (3, 3) for the whole part, or (n, 3, 3) per vertex when skinned."""

    name: str
    vertex_offset: int
    vertex_count: int
    face_offset: int
    face_count: int
    node: int | None = None
    node_name: str = ""
    mesh: int | None = None
    mesh_name: str = ""
    primitive: int | None = None
    material: int | None = None
    material_name: str = ""
    world: np.ndarray | None = None
    skinned: bool = False
    linear: np.ndarray | None = None


@dataclass
class RawMesh:
    """A triangle mesh exactly as read from a file.

    vertices: (V, 3) float64 in the file's units and axes (scene transforms applied for GLB/GLTF).
    faces: (F, 3) int64 triangles (polygons fan-triangulated).
    face_polygon: (F,) index of the file polygon each triangle came from.
    uv: (V, 2) per-vertex texture coordinates when the file gives one per vertex, else None.
    corner_uv: (F, 3, 2) texture coordinates per triangle corner (OBJ with vt), else None.
    parts: geometries of a multi-mesh file (one part for single-mesh formats).
    notes: anything the loader changed or ignored, in words.
    original: the file as read (its bytes, or the path of a .gltf whose files lie beside it) for exports that
        write the user's own file back (glTF / VRM only; None otherwise).
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_polygon: np.ndarray
    uv: np.ndarray | None = None
    corner_uv: np.ndarray | None = None
    parts: list[MeshPart] = field(default_factory=list)
    source: str = ""
    notes: list[str] = field(default_factory=list)
    original: bytes | Path | None = field(default=None, repr=False)

    @property
    def is_gltf(self) -> bool:
        """Read from a glTF / GLB / VRM file that can be written back whole."""
        return self.original is not None and Path(self.source).suffix.lower() in (".glb", ".gltf", ".vrm")

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)

    @property
    def n_faces(self) -> int:
        return len(self.faces)


# ----------------------------------------------------------------------------- checks shared by the formats


def check_not_empty(data: bytes, filename: str) -> None:
    """Refuse a file of zero bytes or only white space."""
    if len(data) == 0 or (not data[:65536].strip() and not data.strip()):  # strip() copies: only when needed
        raise MeshError(f"{filename}: empty file")


def check_vertex_limit(n: int, filename: str, max_vertices: int | None) -> None:
    """Refuse more than `max_vertices` vertices (None: no limit)."""
    if max_vertices is not None and n > max_vertices:
        raise MeshError(f"{filename}: too many vertices ({n:,} > limit {max_vertices:,}); decimate the mesh first")


MAX_COORDINATE = 1e15  # beyond this, areas and distances overflow or lose all precision


def parts_read_notes(parts: list, skipped: list[str], unreadable: str, kind: str, joined_by: str) -> list[str]:
    """Notes on how a multi-part file was read, or a MeshError when it held no triangle mesh.

    parts: the parts read; skipped: names of the geometries that are not triangles; unreadable: the message when
    nothing was read; kind: what a part is called ("primitives", "geometries"); joined_by: what placed them."""
    if not parts:
        raise MeshError("point clouds are not supported" if skipped else unreadable)
    notes = [f"ignored {len(skipped)} {kind} that are not triangles ({', '.join(skipped[:3])})"] if skipped else []
    if len(parts) > 1:
        notes.append(f"concatenated {len(parts)} {kind} with their {joined_by}")
    return notes


def check_measurable(vertices: np.ndarray, filename: str = "") -> None:
    """Refuse coordinates so large that areas overflow, and meshes whose vertices all sit at one point."""
    name = f"{filename}: " if filename else ""
    top = float(np.abs(vertices).max()) if len(vertices) else 0.0
    if top > MAX_COORDINATE:
        raise MeshError(f"{name}coordinates too large (up to {top:.3g}); rescale the mesh (limit {MAX_COORDINATE:g})")
    if len(vertices) and not (np.ptp(vertices, axis=0) > 0).any():
        raise MeshError(f"{name}all vertices are at the same point; the mesh has no extent")


def finish_mesh(mesh: RawMesh, filename: str, max_vertices: int) -> RawMesh:
    """Validate a freshly read mesh (shared by all formats)."""
    v, f = mesh.vertices, mesh.faces
    if len(v) == 0:
        raise MeshError(f"{filename}: no vertices found")
    check_vertex_limit(len(v), filename, max_vertices)
    if len(f) == 0:
        raise MeshError("point clouds are not supported")
    if f.min() < 0 or f.max() >= len(v):
        bad = int(f.max()) if f.max() >= len(v) else int(f.min())
        raise MeshError(f"{filename}: face index out of range ({bad} with {len(v)} vertices)")
    if not np.isfinite(v).all():
        n_bad = int((~np.isfinite(v).all(1)).sum())
        raise MeshError(f"{filename}: non-finite coordinates (NaN or inf) in {n_bad} vertices")
    check_measurable(v[np.unique(f)], filename)
    if not mesh.parts:
        mesh.parts = [MeshPart(Path(filename).stem, 0, len(v), 0, len(f))]
    mesh.source = filename
    return mesh
