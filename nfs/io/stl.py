"""STL (binary or ASCII), read through trimesh: a triangle soup, merged later by `clean_mesh`."""
from __future__ import annotations

from nfs.io.mesh import DEFAULT_MAX_VERTICES, RawMesh, check_not_empty, finish_mesh
from nfs.io.via_trimesh import read_with_trimesh

EXTENSIONS = (".stl",)


def load_stl(data: bytes, filename: str, max_vertices: int | None = DEFAULT_MAX_VERTICES) -> RawMesh:
    """An STL file's bytes -> RawMesh with 3 vertices per triangle."""
    check_not_empty(data, filename)
    return finish_mesh(read_with_trimesh(data, "stl", filename), filename, max_vertices)
