"""glTF 2.0 / GLB: reading scenes through trimesh (geometries concatenated in scene order) and the pieces that
write a binary GLB: a buffer builder that can stream large regions from a file, the base mesh with its
attributes, and UV-seam splitting.

glTF needs one UV per vertex, so per-corner UVs split vertices at seams; the split copies carry an
``_ORIG_INDEX`` attribute (their vertex in the original order). UVs are OBJ-style (v = 0 at the bottom) and
flipped for glTF on writing.
"""
from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pygltflib as gl

from nfs.geometry.normals import vertex_normals
from nfs.io.mesh import DEFAULT_MAX_VERTICES, MeshError, RawMesh, check_not_empty, finish_mesh
from nfs.io.gltf_compressed import plain_glb
from nfs.io.via_trimesh import scene_to_raw, trimesh_load

EXTENSIONS = (".glb", ".gltf")
FLOAT, UINT = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963


# ----------------------------------------------------------------------------------------------
# reading


def load_gltf(source: bytes | str | Path, filename: str, max_vertices: int | None = DEFAULT_MAX_VERTICES) -> RawMesh:
    """A GLB's or glTF's bytes, or the path of a .gltf (whose external buffers are resolved beside it) -> RawMesh
    of every triangle geometry, each moved by its world transform."""
    import trimesh

    file_type = Path(filename).suffix.lower()[1:] or "gltf"
    if isinstance(source, (str, Path)):
        check_not_empty(Path(source).read_bytes(), filename)
        file_obj = str(source)
    else:
        check_not_empty(source, filename)
        file_obj = io.BytesIO(source)
    decoded = plain_glb(source, filename)  # Draco / meshopt decoded, unknown required extensions refused
    if decoded is not None:
        file_obj, file_type = io.BytesIO(decoded), "glb"
    loaded = trimesh_load(file_obj, file_type, filename)
    if isinstance(loaded, trimesh.Trimesh):
        loaded = trimesh.Scene(loaded)
    if not isinstance(loaded, trimesh.Scene):
        raise MeshError(f"{filename}: unreadable GLTF file (no meshes inside)")
    return finish_mesh(scene_to_raw(loaded, filename, file_type), filename, max_vertices)


# ----------------------------------------------------------------------------------------------
# writing


def split_uv_seams(faces, uv, uv_faces, n_vertices: int):
    """Per-corner UVs -> one UV per vertex by splitting vertices at seams.

    Returns (src (V',) original index of each new vertex, faces' (F, 3), uv' (V', 2)); vertices no
    face uses are kept (uv 0) so every original vertex has a copy.
    """
    pairs = np.stack([faces.ravel(), uv_faces.ravel()], axis=1)
    unused = np.setdiff1d(np.arange(n_vertices), faces.ravel())
    pairs = np.concatenate([pairs, np.stack([unused, np.full_like(unused, -1)], axis=1)])
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    inv = inv.ravel()
    new_uv = np.where(uniq[:, 1:2] >= 0, np.asarray(uv, np.float32)[np.maximum(uniq[:, 1], 0)], 0.0)
    return uniq[:, 0], inv[: faces.size].reshape(-1, 3), new_uv.astype(np.float32)


class GlbBuilder:
    """Collects the GLB binary chunk: in-memory pieces plus streamed regions from a temp file."""

    def __init__(self, gltf: gl.GLTF2):
        self.gltf = gltf
        self.pieces: list = []  # bytes, or (file object, offset, length)
        self.offset = 0

    def _view(self, length: int, target=None) -> int:
        self.gltf.bufferViews.append(gl.BufferView(buffer=0, byteOffset=self.offset, byteLength=length, target=target))
        self.offset += length
        return len(self.gltf.bufferViews) - 1

    def add(self, data: bytes, target=None) -> int:
        assert len(data) % 4 == 0
        self.pieces.append(bytes(data))
        return self._view(len(data), target)

    def add_stream(self, fh, file_offset: int, length: int, target=None) -> int:
        self.pieces.append((fh, file_offset, length))
        return self._view(length, target)

    def accessor(self, view: int, count: int, type_: str, component=FLOAT, min_=None, max_=None) -> int:
        acc = gl.Accessor(bufferView=view, componentType=component, count=int(count), type=type_,
                          min=None if min_ is None else [float(x) for x in np.atleast_1d(min_)],
                          max=None if max_ is None else [float(x) for x in np.atleast_1d(max_)])
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def array(self, arr: np.ndarray, type_: str, target=None, minmax=False) -> int:
        arr = np.ascontiguousarray(arr)
        component = UINT if arr.dtype == np.uint32 else FLOAT
        arr = arr.astype(np.uint32 if component == UINT else np.float32, copy=False)
        view = self.add(arr.tobytes(), target)
        flat = arr.reshape(len(arr), -1)
        mn, mx = (flat.min(0), flat.max(0)) if minmax else (None, None)
        return self.accessor(view, len(arr), type_, component, mn, mx)

    def write_glb(self, path: Path):
        """Header, JSON chunk, BIN chunk (streamed pieces copied from their files)."""
        self.gltf.buffers = [gl.Buffer(byteLength=self.offset)]
        js = self.gltf.gltf_to_json(separators=(",", ":"), indent=None).encode("utf-8")
        js += b" " * (-len(js) % 4)
        total = 12 + 8 + len(js) + 8 + self.offset
        with open(path, "wb") as f:
            f.write(b"glTF" + struct.pack("<II", 2, total))
            f.write(struct.pack("<I", len(js)) + b"JSON" + js)
            f.write(struct.pack("<I", self.offset) + b"BIN\0")
            for p in self.pieces:
                if isinstance(p, bytes):
                    f.write(p)
                else:
                    fh, off, length = p
                    fh.seek(off)
                    _copy_exact(fh, f, length)


def _copy_exact(src, dst, length: int, block: int = 1 << 22):
    while length > 0:
        buf = src.read(min(block, length))
        if not buf:
            raise IOError("temporary morph-target file ended early")
        dst.write(buf)
        length -= len(buf)


def add_base_mesh(b: GlbBuilder, neutral, faces, uv, uv_faces, normals: bool):
    """Add indices/POSITION/NORMAL/TEXCOORD_0 (and _ORIG_INDEX when split). Returns
    (attributes, indices accessor, src index (V',) or None)."""
    n_v = len(neutral)
    src = None
    vert_uv = uv
    out_faces = faces
    if uv is not None and uv_faces is not None:
        src, out_faces, vert_uv = split_uv_seams(faces, uv, uv_faces, n_v)
    base = neutral if src is None else neutral[src]
    attrs = gl.Attributes(POSITION=b.array(base, "VEC3", ARRAY_BUFFER, minmax=True))
    if normals:
        n = vertex_normals(neutral, faces).astype(np.float32)
        attrs.NORMAL = b.array(n if src is None else n[src], "VEC3", ARRAY_BUFFER)
    if vert_uv is not None:
        attrs.TEXCOORD_0 = b.array(np.stack([vert_uv[:, 0], 1.0 - vert_uv[:, 1]], 1), "VEC2", ARRAY_BUFFER)
    if src is not None:
        setattr(attrs, "_ORIG_INDEX", b.array(src.astype(np.float32), "SCALAR", ARRAY_BUFFER))
    indices = b.array(out_faces.astype(np.uint32).ravel(), "SCALAR", ELEMENT_ARRAY_BUFFER)
    return attrs, indices, src


def new_gltf(extras=None) -> gl.GLTF2:
    g = gl.GLTF2(asset=gl.Asset(generator="nfs", version="2.0"), scene=0)
    g.materials = [gl.Material(name="skin", pbrMetallicRoughness=gl.PbrMetallicRoughness(
        baseColorFactor=[0.8, 0.68, 0.6, 1.0], metallicFactor=0.0, roughnessFactor=0.6))]
    if extras:
        g.extras = extras
    return g


def finish_scene(g: gl.GLTF2, prim: gl.Primitive, target_names: list[str], name: str):
    prim.material = 0
    g.meshes = [gl.Mesh(name=name, primitives=[prim], weights=[0.0] * len(target_names),
                        extras={"targetNames": list(target_names)})]
    g.nodes = [gl.Node(name=name, mesh=0)]
    g.scenes = [gl.Scene(nodes=[0])]
