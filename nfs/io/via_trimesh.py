"""Formats read through trimesh (with ``process=False``, so vertex order is kept): scenes flattened into one
`RawMesh`, each geometry moved by its world transform."""
from __future__ import annotations

import io

import numpy as np

from nfs.io.mesh import MeshError, MeshPart, RawMesh, parts_read_notes


def trimesh_load(file_obj, file_type: str, filename: str):
    """trimesh.load of a file object or path; any failure becomes a one-line MeshError."""
    import trimesh

    try:
        return trimesh.load(file_obj, file_type=file_type, process=False)
    except MeshError:
        raise
    except Exception as exc:  # trimesh raises many kinds of errors on bad input
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise MeshError(f"{filename}: unreadable {file_type.upper()} file ({reason})") from None


def read_with_trimesh(data: bytes, file_type: str, filename: str) -> RawMesh:
    """Bytes of a single-mesh format (PLY, STL) -> RawMesh, not yet checked."""
    import trimesh

    loaded = trimesh_load(io.BytesIO(data), file_type, filename)
    if isinstance(loaded, trimesh.Scene):
        return scene_to_raw(loaded, filename, file_type)
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


def _trimesh_uv(mesh) -> np.ndarray | None:
    uv = getattr(getattr(mesh, "visual", None), "uv", None)
    if uv is not None and len(uv) == len(mesh.vertices):
        return np.asarray(uv, np.float64)
    return None


def scene_to_raw(scene, filename: str, file_type: str) -> RawMesh:
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
        if not abs(np.linalg.det(transform[:3, :3])) > 1e-30:
            raise MeshError(f"{filename}: node {str(node)[:40]!r} has scale 0 (a degenerate transform): its mesh "
                            "collapses to a point, line or plane")
        v = v @ transform[:3, :3].T + transform[:3, 3]
        f = np.asarray(geom.faces, np.int64)
        vertices.append(v)
        faces.append(f + n_v)
        uvs.append(_trimesh_uv(geom))
        parts.append(MeshPart(str(node), n_v, len(v), n_f, len(f)))
        n_v += len(v)
        n_f += len(f)
    notes = parts_read_notes(parts, skipped, f"{filename}: unreadable {file_type.upper()} file (no triangle meshes "
                             "inside)", "geometries", "scene transforms")
    uv = np.concatenate(uvs) if all(u is not None for u in uvs) else None
    f_all = np.concatenate(faces)
    return RawMesh(np.concatenate(vertices), f_all, np.arange(len(f_all)), uv=uv, parts=parts, notes=notes)
