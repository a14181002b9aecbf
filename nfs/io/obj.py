"""Wavefront OBJ: reading a mesh in the file's vertex order (trimesh would split vertices at UV seams), reading
only the vertex positions (frames of a sequence), and writing meshes and sequence frames."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from nfs.geometry.triangulate import fan_triangulate
from nfs.io.mesh import DEFAULT_MAX_VERTICES, MeshError, RawMesh, check_not_empty, check_vertex_limit, finish_mesh
from nfs.io.text import decode_text, format_rows, parse_floats

EXTENSIONS = (".obj",)


# ----------------------------------------------------------------------------- reading


def load_obj(data: bytes, filename: str, max_vertices: int | None = DEFAULT_MAX_VERTICES) -> RawMesh:
    """An OBJ file's bytes -> RawMesh: polygons fan-triangulated, relative (negative) indices resolved,
    per-corner UVs kept (and per-vertex UVs when there are no seams)."""
    check_not_empty(data, filename)
    lines, vertices = _lines_and_vertices(data, filename, max_vertices)
    n_v = len(vertices)
    uv_table = parse_floats([ln[3:] for ln in lines if ln.startswith("vt ")], 2, filename, "texture")
    f_rows = [ln[2:].split("#", 1)[0].strip() for ln in lines if ln.startswith("f ")]
    if not f_rows:
        raise MeshError("point clouds are not supported")
    counts, v_idx, vt_idx = _parse_faces(f_rows, filename)

    # OBJ is 1-based; negative indices count back from the last vertex defined before the face line
    if (v_idx == 0).any():
        raise MeshError(f"{filename}: face index out of range (0; OBJ indices start at 1)")
    if (v_idx < 0).any() or (vt_idx < 0).any():
        v_before, vt_before = _counts_before_faces(lines)
        v_idx = np.where(v_idx < 0, np.repeat(v_before, counts) + v_idx + 1, v_idx)
        vt_idx = np.where(vt_idx < 0, np.repeat(vt_before, counts) + vt_idx + 1, vt_idx)
    v_idx, vt_idx = v_idx - 1, vt_idx - 1  # vt_idx -1: corner without texture coordinate
    if v_idx.size and (v_idx.max() >= n_v or v_idx.min() < 0):  # no corners at all: a point cloud, below
        bad = int(v_idx.max() + 1) if v_idx.max() >= n_v else int(v_idx.min())
        raise MeshError(f"{filename}: face index out of range ({bad} with {n_v} vertices)")

    notes: list[str] = []
    short = int((counts < 3).sum())
    if short:
        notes.append(f"ignored {short} face lines with fewer than 3 corners")
    faces, polygon = fan_triangulate(counts, v_idx)
    if (counts > 3).any():
        notes.append(f"triangulated {int((counts > 3).sum())} polygons with more than 3 corners")
    corner_uv, uv = None, None
    if len(uv_table) and (vt_idx >= 0).any():
        uv_tris, _ = fan_triangulate(counts, vt_idx)
        if (uv_tris >= len(uv_table)).any() or (uv_tris < -1).any():
            notes.append("ignored texture coordinates: vt index out of range")
        else:
            corner_uv = np.where((uv_tris >= 0)[..., None], uv_table[np.maximum(uv_tris, 0)], np.nan)
            missing = int(np.isnan(corner_uv[..., 0]).sum())
            if missing:
                corner_uv = fill_missing_uv(faces, corner_uv)
                notes.append(f"{missing} face corners had no texture coordinate: filled from the same vertex "
                             "elsewhere or the face's other corners")
            uv = _per_vertex_uv(faces, corner_uv, n_v)
    return finish_mesh(RawMesh(vertices, faces, polygon, uv=uv, corner_uv=corner_uv, notes=notes), filename,
                       max_vertices)


def load_obj_vertices(data: bytes, filename: str, max_vertices: int | None = None) -> np.ndarray:
    """Only the vertex positions (V, 3) float64 of an OBJ file (frames of a sequence share the first one's faces)."""
    check_not_empty(data, filename)
    vertices = _lines_and_vertices(data, filename, max_vertices)[1]
    if not np.isfinite(vertices).all():
        n_bad = int((~np.isfinite(vertices).all(1)).sum())
        raise MeshError(f"{filename}: non-finite coordinates (NaN or inf) in {n_bad} vertices")
    return vertices


def _lines_and_vertices(data: bytes, filename: str, max_vertices: int | None) -> tuple[list[str], np.ndarray]:
    # refuse a huge file before decoding and splitting it (a lower bound: lines starting with 'v ')
    check_vertex_limit(data.count(b"\nv ") + data.startswith(b"v "), filename, max_vertices)
    text = decode_text(data, filename, "OBJ").replace("\\\n", " ").replace("\t", " ")
    lines = [ln.lstrip() for ln in text.splitlines()]
    v_rows = [ln[2:] for ln in lines if ln.startswith("v ")]
    if not v_rows:
        raise MeshError(f"{filename}: unreadable OBJ file (no vertex lines found)")
    check_vertex_limit(len(v_rows), filename, max_vertices)
    return lines, parse_floats(v_rows, 3, filename, "vertex")


def _parse_faces(rows: list[str], filename: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OBJ face rows ('1 2 3', '1/1 2/2 3/3', '1//1 ...', '1/1/1 ...') -> corners per row (P,) and the
    raw vertex and texture indices of all corners (0 where a corner has no texture index)."""
    joined = " ".join(rows)
    if "  " not in joined and all(rows):  # fast path: single spaces and one corner format throughout
        counts = np.fromiter((r.count(" ") + 1 for r in rows), np.int64, len(rows))
        total = int(counts.sum())
        first = rows[0].split(" ", 1)[0]
        slashes, double = first.count("/"), "//" in first
        if joined.count("/") == slashes * total and joined.count("//") == (total if double else 0):
            numbers = joined.replace("//", " ") if double else joined.replace("/", " ")
            fields = 1 + slashes - int(double)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    flat = np.fromstring(numbers, dtype=np.int64, sep=" ")
                except ValueError:  # a non-number (NumPy 2 raises): the general path below reports it
                    flat = np.zeros(0, np.int64)
            if flat.size == total * fields:
                table = flat.reshape(total, fields)
                vt = table[:, 1] if (slashes >= 1 and not double) else np.zeros(total, np.int64)
                return counts, table[:, 0].copy(), vt.copy()
    corners = [r.split() for r in rows]  # general path: any mix of formats and spacing
    counts = np.fromiter((len(c) for c in corners), np.int64, len(corners))
    parts = [t.split("/") for c in corners for t in c]
    try:
        v_idx = np.array([p[0] for p in parts], dtype=np.int64)
        vt_idx = np.array([int(p[1]) if len(p) > 1 and p[1] else 0 for p in parts], dtype=np.int64)
    except (ValueError, OverflowError):  # OverflowError: an index beyond int64
        raise MeshError(f"{filename}: malformed face line") from None
    return counts, v_idx, vt_idx


def _counts_before_faces(lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """For each face line: how many v and vt lines precede it (for OBJ's relative indices)."""
    is_v = np.array([ln.startswith("v ") for ln in lines])
    is_vt = np.array([ln.startswith("vt ") for ln in lines])
    is_f = np.array([ln.startswith("f ") for ln in lines])
    return np.cumsum(is_v)[is_f], np.cumsum(is_vt)[is_f]


def fill_missing_uv(faces: np.ndarray, corner_uv: np.ndarray) -> np.ndarray:
    """(F, 3, 2) corner UVs with NaN where a corner had none -> no NaN: a missing corner takes the UV its vertex
    has at another corner, else the mean of its face's other corners, else (0, 0)."""
    out = np.array(corner_uv, np.float64)
    flat, vert = out.reshape(-1, 2), faces.reshape(-1)
    known = ~np.isnan(flat[:, 0])
    by_vertex = np.full((int(vert.max()) + 1, 2), np.nan)
    by_vertex[vert[known]] = flat[known]
    flat[~known] = by_vertex[vert[~known]]
    still = np.isnan(out[..., 0])
    if still.any():
        with np.errstate(invalid="ignore"):
            face_mean = np.nanmean(np.where(still[..., None], np.nan, out), axis=1) if (~still).any() else None
        if face_mean is not None:
            out = np.where(still[..., None], face_mean[:, None, :], out)
    return np.nan_to_num(out, nan=0.0)


def _per_vertex_uv(faces: np.ndarray, corner_uv: np.ndarray, n_vertices: int) -> np.ndarray | None:
    """(V, 2) uv when every corner of a vertex carries the same uv (no seams), else None."""
    uv = np.full((n_vertices, 2), np.nan)
    flat_v = faces.reshape(-1)
    flat_uv = corner_uv.reshape(-1, 2)
    uv[flat_v] = flat_uv
    agrees = np.isclose(uv[flat_v], flat_uv, equal_nan=True).all(1)
    return uv if agrees.all() else None


# ----------------------------------------------------------------------------- writing


def corner_uv_table(corner_uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-corner UVs (F, 3, 2) -> a table of the distinct UVs (U, 2) and per-corner indices into it (F, 3)."""
    table, inverse = np.unique(np.asarray(corner_uv).reshape(-1, 2), axis=0, return_inverse=True)
    return table, inverse.reshape(-1, 3)


def obj_vertex_text(vertices: np.ndarray, number_format: str = "%.6f") -> str:
    """``v x y z`` lines for (V, 3) positions."""
    return format_rows(f"v {number_format} {number_format} {number_format}\n", np.asarray(vertices, np.float64))


def obj_static_text(faces: np.ndarray, uv=None, uv_faces=None, number_format: str = "%.6f") -> str:
    """``vt`` and ``f`` lines (1-based), shared by every frame of a sequence. uv: (V, 2) per vertex, or a table
    (U, 2) with `uv_faces` (F, 3) indices into it per corner."""
    faces = np.asarray(faces, np.int64) + 1
    if uv is None:
        return format_rows("f %d %d %d\n", faces)
    vt = format_rows(f"vt {number_format} {number_format}\n", np.asarray(uv, np.float64))
    corners = faces if uv_faces is None else np.asarray(uv_faces, np.int64) + 1
    return vt + format_rows("f %d/%d %d/%d %d/%d\n", np.stack([faces, corners], axis=2).reshape(len(faces), 6))


def obj_text(vertices, faces, uv=None, uv_faces=None, number_format: str = "%.6f") -> str:
    """A whole OBJ file as text."""
    return obj_vertex_text(vertices, number_format) + obj_static_text(faces, uv, uv_faces, number_format)


def save_obj(path: str | Path, vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray | None = None) -> None:
    """Write an OBJ in the given vertex order, coordinates to 9 significant digits (exact for float32).
    uv: (V, 2) per vertex or (F, 3, 2) per corner (deduplicated into a vt table)."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    uv_faces = None
    if uv is not None:
        uv = np.asarray(uv, np.float64)
        if uv.shape == (len(faces), 3, 2):
            uv, uv_faces = corner_uv_table(uv)
        elif uv.shape != (len(vertices), 2):
            raise MeshError(f"uv must have shape (V, 2) or (F, 3, 2), got {uv.shape}")
    Path(path).write_text("# written by nfs\n" + obj_text(vertices, faces, uv, uv_faces, "%.9g"))
