"""Repairing a user mesh and finding its skin.

Every repair is counted in a `CleanReport`; `CleanMesh.to_clean` / `original_index` map between
the user's vertex order and the cleaned arrays so results can be written back in the user's order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from nfs.geometry.triangle_math import triangle_areas
from nfs.io.mesh import DEFAULT_MAX_VERTICES, MeshError

MERGE_TOLERANCE = 1e-7  # duplicate-vertex tolerance, relative to the bounding-box diagonal


@dataclass
class CleanReport:
    """What `clean_mesh` changed. Vertex/face counts refer to the input unless named otherwise."""

    input_vertices: int = 0
    input_faces: int = 0
    duplicate_vertices_merged: int = 0
    unreferenced_vertices_removed: int = 0
    degenerate_faces_removed: int = 0
    duplicate_faces_removed: int = 0
    n_components: int = 0
    skin_vertices: int = 0
    skin_faces: int = 0
    skin_area_fraction: float = 0.0
    other_component_sizes: list[int] = field(default_factory=list)  # vertex counts, largest area first
    body_vertices: int = 0             # vertices below the neck (a body): they stay still
    skin_chosen_by_face: bool = False  # the skin is not the largest component: the face was found on another

    def summary(self) -> list[str]:
        """Human-readable lines, one per fact, repairs only when they happened."""
        lines = [f"input: {self.input_vertices:,} vertices, {self.input_faces:,} triangles"]
        repairs = [
            (self.duplicate_vertices_merged, "duplicate vertices merged"),
            (self.unreferenced_vertices_removed, "unreferenced vertices removed"),
            (self.degenerate_faces_removed, "degenerate triangles removed"),
            (self.duplicate_faces_removed, "duplicate triangles removed"),
        ]
        lines += [f"{n:,} {what}" for n, what in repairs if n]
        if not any(n for n, _ in repairs):
            lines.append("no repairs needed")
        lines.append(f"skin: {self.skin_vertices:,} vertices, {self.skin_faces:,} triangles "
                     f"({100 * self.skin_area_fraction:.1f}% of the surface area)")
        if self.skin_chosen_by_face:
            lines.append("skin: the component carrying the face (not the largest one)")
        if self.body_vertices:
            lines.append(f"body: {self.body_vertices:,} vertices below the neck stay still")
        if self.other_component_sizes:
            sizes = ", ".join(f"{n:,}" for n in self.other_component_sizes[:8])
            more = " ..." if len(self.other_component_sizes) > 8 else ""
            lines.append(f"{len(self.other_component_sizes)} other components kept apart "
                         f"(eyes, teeth, lashes...): {sizes}{more} vertices")
        return lines


@dataclass
class CleanMesh:
    """A repaired mesh split into the skin and the other components.

    vertices: (V, 3) float64, same units as the input; faces: (F, 3) int64 into `vertices`.
    original_index: (V,) one input vertex index for each cleaned vertex.
    to_clean: (V_in,) cleaned index of each input vertex, -1 where it was removed.
    skin_vertices: (S,) indices into `vertices` of the skin component (ascending).
    skin_faces: (Fs, 3) triangles indexing the compact array ``vertices[skin_vertices]``.
    other_components: index arrays into `vertices`, one per other component, largest area first; they follow
    the skin rigidly.
    body_vertices: (B,) indices into `vertices` below the neck (a body cut from the head, parts under it):
    they stay still (see `nfs.mesh.head.split_head`).
    """

    vertices: np.ndarray
    faces: np.ndarray
    original_index: np.ndarray
    to_clean: np.ndarray
    skin_vertices: np.ndarray
    skin_faces: np.ndarray
    other_components: list[np.ndarray]
    report: CleanReport
    body_vertices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def skin_points(self) -> np.ndarray:
        """(S, 3) positions of the skin vertices."""
        return self.vertices[self.skin_vertices]

    @property
    def skin_original_index(self) -> np.ndarray:
        """(S,) the input vertex of each skin vertex."""
        return self.original_index[self.skin_vertices]

    def skin_to_original(self, values: np.ndarray, fill=np.nan) -> np.ndarray:
        """Per-skin-vertex values (S, ...) -> per-input-vertex values (V_in, ...); `fill` where an input
        vertex is not on the skin."""
        values = np.asarray(values)
        per_clean = np.full((len(self.vertices),) + values.shape[1:], fill, dtype=np.result_type(values, type(fill)))
        per_clean[self.skin_vertices] = values
        out = np.full((len(self.to_clean),) + values.shape[1:], fill, dtype=per_clean.dtype)
        kept = self.to_clean >= 0
        out[kept] = per_clean[self.to_clean[kept]]
        return out


def clean_mesh(vertices: np.ndarray, faces: np.ndarray, max_vertices: int = DEFAULT_MAX_VERTICES) -> CleanMesh:
    """Merge duplicate vertices, drop degenerate/duplicate triangles and unreferenced vertices, split
    components and pick the skin (largest by surface area). vertices (V, 3), faces (F, 3)."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    _validate(vertices, faces, max_vertices)
    report = CleanReport(input_vertices=len(vertices), input_faces=len(faces))

    # 1. merge coincident vertices (grid rounding at a tolerance relative to the bbox diagonal)
    merged_of, first_original = _merge_duplicates(vertices)
    report.duplicate_vertices_merged = len(vertices) - len(first_original)
    faces = merged_of[faces]

    # 2. degenerate triangles: a repeated corner, or zero area
    points = vertices[first_original]
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    area = triangle_areas(points, faces)
    diagonal = _diagonal(vertices)
    flat = area <= (1e-12 * diagonal) ** 2
    keep = ~(repeated | flat)
    report.degenerate_faces_removed = int((~keep).sum())
    faces = faces[keep]

    # 3. duplicate triangles: same corner set, either orientation; keep the first
    first_face, _ = _unique_rows(np.sort(faces, axis=1))
    report.duplicate_faces_removed = len(faces) - len(first_face)
    faces = faces[np.sort(first_face)]
    if len(faces) == 0:
        raise MeshError("no usable triangles left after removing degenerate ones")

    # 4. unreferenced vertices (never used by a kept triangle); input = merged + removed + kept
    used = np.zeros(len(points), bool)
    used[faces.reshape(-1)] = True
    compact = np.cumsum(used) - 1
    report.unreferenced_vertices_removed = int((~used).sum())
    points = points[used]
    original_index = first_original[used]
    faces = compact[faces]
    to_clean = np.where(used[merged_of], compact[merged_of], -1)

    # 5. connected components; the skin is the largest by area
    labels, n_components = face_components(len(points), faces)
    face_label = labels[faces[:, 0]]
    component_area = np.bincount(face_label, weights=triangle_areas(points, faces), minlength=n_components)
    by_area = np.argsort(-component_area, kind="stable")
    skin_label = by_area[0]
    skin_vertices = np.nonzero(labels == skin_label)[0]
    skin_index = np.full(len(points), -1)
    skin_index[skin_vertices] = np.arange(len(skin_vertices))
    skin_faces = skin_index[faces[face_label == skin_label]]
    other_components = [np.nonzero(labels == c)[0] for c in by_area[1:]]

    report.n_components = int(n_components)
    report.skin_vertices = len(skin_vertices)
    report.skin_faces = len(skin_faces)
    report.skin_area_fraction = float(component_area[skin_label] / component_area.sum())
    report.other_component_sizes = [len(c) for c in other_components]
    return CleanMesh(points, faces, original_index, to_clean, skin_vertices, skin_faces, other_components, report)


def _validate(vertices: np.ndarray, faces: np.ndarray, max_vertices: int) -> None:
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise MeshError(f"vertices must have shape (V, 3) with V > 0, got {vertices.shape}")
    if max_vertices is not None and len(vertices) > max_vertices:
        raise MeshError(f"too many vertices ({len(vertices):,} > limit {max_vertices:,}); decimate the mesh first")
    if faces.size == 0:
        raise MeshError("point clouds are not supported")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise MeshError(f"faces must be triangles with shape (F, 3), got {faces.shape}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshError(f"face index out of range ({int(faces.max())} with {len(vertices)} vertices)")
    if not np.isfinite(vertices).all():
        raise MeshError("non-finite coordinates (NaN or inf) in the vertices")


def _diagonal(vertices: np.ndarray) -> float:
    return float(np.linalg.norm(vertices.max(0) - vertices.min(0)))


def _merge_duplicates(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (merged index of every input vertex (V,), first input vertex of every merged vertex (M,));
    merged vertices keep the order of their first occurrence."""
    tolerance = max(MERGE_TOLERANCE * _diagonal(vertices), np.finfo(np.float64).tiny)
    keys = np.round((vertices - vertices.min(0)) / tolerance).astype(np.int64)
    first, inverse = _unique_rows(keys)
    order = np.argsort(first)            # unique rows sorted by first occurrence
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)], first[order]


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of an integer array (N, C): the index of each one's first occurrence (U,) and each row's
    distinct row (N,), as `np.unique(rows, axis=0, return_index=True, return_inverse=True)` gives them, by a
    stable sort on the columns (several times faster than sorting the rows as opaque records)."""
    order = np.lexsort(rows.T[::-1])
    ordered = rows[order]
    new = np.ones(len(rows), bool)
    new[1:] = (ordered[1:] != ordered[:-1]).any(1)
    inverse = np.empty(len(rows), np.int64)
    inverse[order] = np.cumsum(new) - 1
    return order[new], inverse


def face_components(n_vertices: int, faces: np.ndarray) -> tuple[np.ndarray, int]:
    """Vertex labels (V,) of the face-connected components, and their number."""
    rows = faces.reshape(-1)
    cols = np.roll(faces, 1, axis=1).reshape(-1)
    graph = sp.coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n_vertices, n_vertices))
    n, labels = connected_components(graph, directed=False)
    return labels, n
