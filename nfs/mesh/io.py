"""Reading and writing user meshes without changing their vertex order.

OBJ and OFF are parsed here (trimesh splits OBJ vertices at UV seams and reorders OFF faces);
PLY, STL and GLB/GLTF go through trimesh with ``process=False``. Every loader returns a
`RawMesh` of triangles whose vertex ``i`` is the file's vertex ``i`` (for GLB/GLTF: the
geometries concatenated in scene order, offsets in ``parts``; for STL: the file's triangle soup).
Problems raise `MeshError` with a one-line message.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_MAX_VERTICES = 200_000
SUPPORTED_EXTENSIONS = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")


class MeshError(ValueError):
    """A mesh file or array that cannot be used; the message is one line meant for the user."""


@dataclass
class MeshPart:
    """One geometry of a multi-mesh file: its rows in the concatenated arrays."""

    name: str
    vertex_offset: int
    vertex_count: int
    face_offset: int
    face_count: int


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
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_polygon: np.ndarray
    uv: np.ndarray | None = None
    corner_uv: np.ndarray | None = None
    parts: list[MeshPart] = field(default_factory=list)
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)

    @property
    def n_faces(self) -> int:
        return len(self.faces)


# ----------------------------------------------------------------------------- public entry points


def load_mesh(path: str | Path, max_vertices: int = DEFAULT_MAX_VERTICES) -> RawMesh:
    """Read OBJ/PLY/STL/OFF/GLB/GLTF from disk, keeping the file's vertex order."""
    path = Path(path)
    ext = _extension(path.name)
    if not path.is_file():
        raise MeshError(f"{path.name}: file not found")
    data = path.read_bytes()
    if ext == ".gltf":  # external buffers are resolved relative to the file
        _check_not_empty(data, path.name)
        return _finish(_read_gltf_scene(str(path), None, path.name), path.name, max_vertices)
    return load_mesh_bytes(data, path.name, max_vertices)


def load_mesh_bytes(data: bytes, filename: str, max_vertices: int = DEFAULT_MAX_VERTICES) -> RawMesh:
    """Read an uploaded file's bytes; the format comes from `filename`'s extension."""
    ext = _extension(filename)
    _check_not_empty(data, filename)
    if ext == ".obj":
        mesh = _read_obj(data, filename, max_vertices)
    elif ext == ".off":
        mesh = _read_off(data, filename, max_vertices)
    elif ext in (".glb", ".gltf"):
        mesh = _read_gltf_scene(io.BytesIO(data), ext[1:], filename)
    else:
        mesh = _read_with_trimesh(data, ext[1:], filename)
    return _finish(mesh, filename, max_vertices)


def save_obj(path: str | Path, vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray | None = None) -> None:
    """Write an OBJ in the given vertex order, coordinates to 9 significant digits (exact for float32).
    uv: (V, 2) per vertex or (F, 3, 2) per corner (deduplicated into a vt table)."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    chunks = ["# written by nfs\n", _format_rows("v", vertices, "%.9g")]
    if uv is None:
        face_rows = _format_int_rows("f", faces + 1)
    else:
        uv = np.asarray(uv, np.float64)
        if uv.shape == (len(vertices), 2):
            uv_table, uv_index = uv, faces
        elif uv.shape == (len(faces), 3, 2):
            uv_table, inverse = np.unique(uv.reshape(-1, 2), axis=0, return_inverse=True)
            uv_index = inverse.reshape(-1, 3)
        else:
            raise MeshError(f"uv must have shape (V, 2) or (F, 3, 2), got {uv.shape}")
        chunks.append(_format_rows("vt", uv_table, "%.9g"))
        pairs = np.stack([faces + 1, uv_index + 1], axis=2).reshape(len(faces), 6)
        face_rows = _format_int_rows("f", pairs, "%d/%d %d/%d %d/%d")
    chunks.append(face_rows)
    Path(path).write_text("".join(chunks))


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


def fan_triangulate(counts: np.ndarray, flat_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polygons given as sizes (P,) and concatenated corner indices -> (F, 3) triangles and (F,) polygon
    index, triangles in polygon order. Polygons with fewer than 3 corners produce nothing."""
    counts = np.asarray(counts, np.int64)
    flat_indices = np.asarray(flat_indices, np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    n_tris = np.maximum(counts - 2, 0)
    polygon = np.repeat(np.arange(len(counts)), n_tris)
    # k-th triangle of a polygon is corners (0, k+1, k+2)
    k = np.arange(len(polygon)) - np.repeat(np.cumsum(n_tris) - n_tris, n_tris)
    first = starts[polygon]
    tris = np.stack([flat_indices[first], flat_indices[first + k + 1], flat_indices[first + k + 2]], axis=1)
    return tris.reshape(-1, 3), polygon


# ----------------------------------------------------------------------------- checks


def _extension(filename: str) -> str:
    ext = Path(filename).suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        shown = ext or "(none)"
        raise MeshError(f"{Path(filename).name}: unknown extension {shown}; expected one of "
                        + ", ".join(SUPPORTED_EXTENSIONS))
    return ext


def _check_not_empty(data: bytes, filename: str) -> None:
    if len(data) == 0 or (not data[:65536].strip() and not data.strip()):  # strip() copies: only when needed
        raise MeshError(f"{filename}: empty file")


def _check_vertex_limit(n: int, filename: str, max_vertices: int) -> None:
    if max_vertices is not None and n > max_vertices:
        raise MeshError(f"{filename}: too many vertices ({n:,} > limit {max_vertices:,}); decimate the mesh first")


def _finish(mesh: RawMesh, filename: str, max_vertices: int) -> RawMesh:
    """Validate a freshly read mesh (shared by all formats)."""
    v, f = mesh.vertices, mesh.faces
    if len(v) == 0:
        raise MeshError(f"{filename}: no vertices found")
    _check_vertex_limit(len(v), filename, max_vertices)
    if len(f) == 0:
        raise MeshError("point clouds are not supported")
    if f.min() < 0 or f.max() >= len(v):
        bad = int(f.max()) if f.max() >= len(v) else int(f.min())
        raise MeshError(f"{filename}: face index out of range ({bad} with {len(v)} vertices)")
    if not np.isfinite(v).all():
        n_bad = int((~np.isfinite(v).all(1)).sum())
        raise MeshError(f"{filename}: non-finite coordinates (NaN or inf) in {n_bad} vertices")
    if not mesh.parts:
        mesh.parts = [MeshPart(Path(filename).stem, 0, len(v), 0, len(f))]
    mesh.source = filename
    return mesh


def _decode_text(data: bytes, filename: str, kind: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with a byte-order mark
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise MeshError(f"{filename}: unreadable {kind} file (broken UTF-16 text)") from None
    if b"\x00" in data[:65536]:
        raise MeshError(f"{filename}: unreadable {kind} file (binary data, not text)")
    try:
        return data.decode("utf-8-sig")  # a UTF-8 byte-order mark must not hide the first line
    except UnicodeDecodeError:
        text = data.decode("latin-1")
        printable = sum(c.isprintable() or c.isspace() for c in text[:65536]) / max(1, len(text[:65536]))
        if printable < 0.95:
            raise MeshError(f"{filename}: unreadable {kind} file (not text)") from None
        return text


def _parse_floats(rows: list[str], width: int, filename: str, what: str) -> np.ndarray:
    """Rows of whitespace-separated numbers -> (N, width) float64 using the first `width` columns."""
    if not rows:
        return np.zeros((0, width))
    split = [r.split() for r in rows]
    try:
        lengths = {len(s) for s in split}
        if len(lengths) == 1 and lengths.pop() >= width:
            arr = np.array(split, dtype=np.float64)[:, :width]
        else:
            arr = np.array([s[:width] for s in split], dtype=np.float64)
    except ValueError:
        raise MeshError(f"{filename}: malformed {what} line (expected {width} numbers)") from None
    if arr.ndim != 2 or arr.shape[1] != width:
        raise MeshError(f"{filename}: malformed {what} line (expected {width} numbers)")
    return arr


# ----------------------------------------------------------------------------- OBJ


def _read_obj(data: bytes, filename: str, max_vertices: int) -> RawMesh:
    # refuse a huge file before decoding and splitting it (a lower bound: lines starting with 'v ')
    _check_vertex_limit(data.count(b"\nv ") + data.startswith(b"v "), filename, max_vertices)
    text = _decode_text(data, filename, "OBJ").replace("\\\n", " ").replace("\t", " ")
    lines = [ln.lstrip() for ln in text.splitlines()]
    v_rows = [ln[2:] for ln in lines if ln.startswith("v ")]
    n_v = len(v_rows)
    if n_v == 0:
        raise MeshError(f"{filename}: unreadable OBJ file (no vertex lines found)")
    _check_vertex_limit(n_v, filename, max_vertices)
    vertices = _parse_floats(v_rows, 3, filename, "vertex")
    uv_table = _parse_floats([ln[3:] for ln in lines if ln.startswith("vt ")], 2, filename, "texture")
    f_rows = [ln[2:].split("#", 1)[0].strip() for ln in lines if ln.startswith("f ")]
    if not f_rows:
        raise MeshError("point clouds are not supported")
    counts, v_idx, vt_idx = _parse_obj_faces(f_rows, filename)

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
            uv = _per_vertex_uv(faces, corner_uv, n_v)
    return RawMesh(vertices, faces, polygon, uv=uv, corner_uv=corner_uv, notes=notes)


def _parse_obj_faces(rows: list[str], filename: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _per_vertex_uv(faces: np.ndarray, corner_uv: np.ndarray, n_vertices: int) -> np.ndarray | None:
    """(V, 2) uv when every corner of a vertex carries the same uv (no seams), else None."""
    uv = np.full((n_vertices, 2), np.nan)
    flat_v = faces.reshape(-1)
    flat_uv = corner_uv.reshape(-1, 2)
    uv[flat_v] = flat_uv
    agrees = np.isclose(uv[flat_v], flat_uv, equal_nan=True).all(1)
    return uv if agrees.all() else None


# ----------------------------------------------------------------------------- OFF


def _read_off(data: bytes, filename: str, max_vertices: int) -> RawMesh:
    text = _decode_text(data, filename, "OFF")
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
    _check_vertex_limit(n_v, filename, max_vertices)
    if len(rest) < 1 + n_v + n_f:
        raise MeshError(f"{filename}: truncated OFF file ({len(rest) - 1} rows, header promises {n_v + n_f})")
    vertices = _parse_floats(rest[1 : 1 + n_v], 3, filename, "vertex")
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
    return RawMesh(vertices, faces, polygon, notes=notes)


# ----------------------------------------------------------------------------- PLY / STL / GLB via trimesh


def _trimesh_load(file_obj, file_type: str, filename: str):
    import trimesh

    try:
        return trimesh.load(file_obj, file_type=file_type, process=False)
    except MeshError:
        raise
    except Exception as exc:  # trimesh raises many kinds of errors on bad input
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise MeshError(f"{filename}: unreadable {file_type.upper()} file ({reason})") from None


def _read_with_trimesh(data: bytes, file_type: str, filename: str) -> RawMesh:
    import trimesh

    loaded = _trimesh_load(io.BytesIO(data), file_type, filename)
    if isinstance(loaded, trimesh.Scene):
        return _scene_to_raw(loaded, filename, file_type)
    if isinstance(loaded, trimesh.PointCloud):
        raise MeshError("point clouds are not supported")
    if not isinstance(loaded, trimesh.Trimesh):
        raise MeshError(f"{filename}: unreadable {file_type.upper()} file (no triangle mesh inside)")
    faces = np.asarray(loaded.faces, np.int64).reshape(-1, 3)
    notes = []
    if file_type == "stl":
        notes.append("STL stores a triangle soup: 3 vertices per triangle, merged later by clean_mesh")
    return RawMesh(np.asarray(loaded.vertices, np.float64).reshape(-1, 3), faces, np.arange(len(faces)),
                   uv=_trimesh_uv(loaded), notes=notes)


def _read_gltf_scene(file_obj, file_type: str | None, filename: str) -> RawMesh:
    import trimesh

    loaded = _trimesh_load(file_obj, file_type or "gltf", filename)
    if isinstance(loaded, trimesh.Trimesh):
        loaded = trimesh.Scene(loaded)
    if not isinstance(loaded, trimesh.Scene):
        raise MeshError(f"{filename}: unreadable GLTF file (no meshes inside)")
    return _scene_to_raw(loaded, filename, file_type or "gltf")


def _trimesh_uv(mesh) -> np.ndarray | None:
    uv = getattr(getattr(mesh, "visual", None), "uv", None)
    if uv is not None and len(uv) == len(mesh.vertices):
        return np.asarray(uv, np.float64)
    return None


def _scene_to_raw(scene, filename: str, file_type: str) -> RawMesh:
    """Concatenate a scene's triangle geometries in the file's mesh order, each moved by its world transform."""
    import trimesh

    vertices, faces, uvs, parts = [], [], [], []
    skipped = []
    n_v = n_f = 0
    # file mesh order (trimesh's node traversal is last-in-first-out), then node order
    geometry_rank = {name: i for i, name in enumerate(scene.geometry)}
    nodes = scene.graph.nodes_geometry
    nodes = sorted(nodes, key=lambda n: (geometry_rank.get(scene.graph[n][1], 0), nodes.index(n)))
    for node in nodes:
        transform, geometry_name = scene.graph[node]
        geom = scene.geometry[geometry_name]
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            skipped.append(str(node))
            continue
        v = np.asarray(geom.vertices, np.float64)
        v = v @ transform[:3, :3].T + transform[:3, 3]
        f = np.asarray(geom.faces, np.int64)
        vertices.append(v)
        faces.append(f + n_v)
        uvs.append(_trimesh_uv(geom))
        parts.append(MeshPart(str(node), n_v, len(v), n_f, len(f)))
        n_v += len(v)
        n_f += len(f)
    if not parts:
        if skipped:
            raise MeshError("point clouds are not supported")
        raise MeshError(f"{filename}: unreadable {file_type.upper()} file (no triangle meshes inside)")
    notes = [f"ignored {len(skipped)} non-triangle geometries ({', '.join(skipped[:3])})"] if skipped else []
    if len(parts) > 1:
        notes.append(f"concatenated {len(parts)} geometries with their scene transforms")
    uv = np.concatenate(uvs) if all(u is not None for u in uvs) else None
    f_all = np.concatenate(faces)
    return RawMesh(np.concatenate(vertices), f_all, np.arange(len(f_all)), uv=uv, parts=parts, notes=notes)


# ----------------------------------------------------------------------------- formatting


def _format_rows(tag: str, rows: np.ndarray, number_format: str) -> str:
    if len(rows) == 0:
        return ""
    fmt = tag + (" " + number_format) * rows.shape[1] + "\n"
    return (fmt * len(rows)) % tuple(rows.reshape(-1).tolist())


def _format_int_rows(tag: str, rows: np.ndarray, row_format: str | None = None) -> str:
    if len(rows) == 0:
        return ""
    row_format = row_format or " ".join(["%d"] * rows.shape[1])
    fmt = tag + " " + row_format + "\n"
    return (fmt * len(rows)) % tuple(rows.reshape(-1).tolist())
