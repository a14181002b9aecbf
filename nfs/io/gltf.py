"""glTF 2.0 / GLB / VRM: reading every triangle primitive of the scene into one mesh (through
`nfs.io.gltf_document`: compressed, quantized, sparse and skinned data as people have it), and the pieces that
write a binary GLB: a buffer builder that can stream large regions from a file, the base mesh with its
attributes, and UV-seam splitting.

glTF needs one UV per vertex, so per-corner UVs split vertices at seams; the split copies carry an
``_ORIG_INDEX`` attribute (their vertex in the original order). UVs are OBJ-style (v = 0 at the bottom) and
flipped for glTF on writing.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pygltflib as gl

from nfs.geometry.normals import vertex_normals
from nfs.io.gltf_document import GltfDocument, read_document
from nfs.io.mesh import DEFAULT_MAX_VERTICES, MeshError, MeshPart, RawMesh, check_not_empty, check_vertex_limit, \
    finish_mesh, parts_read_notes

EXTENSIONS = (".glb", ".gltf", ".vrm")   # .vrm: a GLB with a VRM 0.x or 1.0 extension
FLOAT, UINT = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963


# ----------------------------------------------------------------------------------------------
# reading


def load_gltf(source: bytes | str | Path, filename: str, max_vertices: int | None = DEFAULT_MAX_VERTICES) -> RawMesh:
    """A GLB's / VRM's / glTF's bytes, or the path of a .gltf (whose external buffers are resolved beside it) ->
    RawMesh of every triangle primitive of the scene in world space (skinned meshes in their bind pose), with one
    `MeshPart` per primitive saying where its vertices came from."""
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
    check_not_empty(data, filename)
    doc = read_document(source, filename)
    mesh = finish_mesh(document_mesh(doc, max_vertices), filename, max_vertices)
    mesh.original = Path(source) if isinstance(source, (str, Path)) else source
    return mesh


def document_mesh(doc: GltfDocument, max_vertices: int | None = DEFAULT_MAX_VERTICES) -> RawMesh:
    """The scene's triangle primitives concatenated, in the file's mesh order then node order."""
    nodes = doc.json.get("nodes") or []
    meshes = doc.json.get("meshes") or []
    materials = doc.json.get("materials") or []
    order = doc.scene_nodes()
    with_mesh = [i for i in order if isinstance(nodes[i].get("mesh"), int) and 0 <= nodes[i]["mesh"] < len(meshes)]
    rank = {node: k for k, node in enumerate(order)}
    with_mesh.sort(key=lambda i: (nodes[i]["mesh"], rank[i]))
    # the vertex limit before anything is decoded
    total = 0
    for i in with_mesh:
        for prim in meshes[nodes[i]["mesh"]].get("primitives") or []:
            pos = (prim.get("attributes") or {}).get("POSITION") if isinstance(prim, dict) else None
            if isinstance(pos, int) and 0 <= pos < len(doc.json.get("accessors") or []):
                total += int(doc.json["accessors"][pos].get("count") or 0)
    check_vertex_limit(total, doc.filename, max_vertices)
    world = doc.world_matrices()
    vertices, faces, uvs, parts, skipped = [], [], [], [], []
    n_v = n_f = 0
    for i in with_mesh:
        node, m = nodes[i], nodes[i]["mesh"]
        mesh = meshes[m]
        skin = node.get("skin") if isinstance(node.get("skin"), int) else None
        node_name = str(node.get("name") or f"node{i}")
        prims = mesh.get("primitives") or []
        for p in range(len(prims)):
            positions = doc.attribute(m, p, "POSITION")
            if positions is None or positions.shape[1] != 3:
                skipped.append(f"{node_name} #{p}")
                continue
            tris = doc.triangles(m, p, len(positions))
            if tris is None or len(tris) == 0:
                skipped.append(f"{node_name} #{p}")
                continue
            if tris.min() < 0 or tris.max() >= len(positions):
                bad = int(tris.max()) if tris.max() >= len(positions) else int(tris.min())
                raise MeshError(f"{doc.filename}: face index out of range ({bad} with {len(positions)} vertices "
                                f"in mesh {m} primitive {p})")
            matrix = world[i]
            if skin is not None:
                v, linear = _bind_pose(doc, m, p, skin, positions, world, node_name)
            else:
                if not abs(np.linalg.det(matrix[:3, :3])) > 1e-30:
                    raise MeshError(f"{doc.filename}: node {node_name[:40]!r} has scale 0 (a degenerate transform): "
                                    "its mesh collapses to a point, line or plane")
                v = positions @ matrix[:3, :3].T + matrix[:3, 3]
                linear = matrix[:3, :3].copy()
            uv = doc.attribute(m, p, "TEXCOORD_0")
            uvs.append(None if uv is None or uv.shape != (len(v), 2) else np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1))
            material = prims[p].get("material") if isinstance(prims[p].get("material"), int) else None
            material_name = str((materials[material] or {}).get("name") or "") if material is not None and \
                0 <= material < len(materials) else ""
            name = node_name if len(prims) == 1 else f"{node_name} #{p}"
            parts.append(MeshPart(name, n_v, len(v), n_f, len(tris), node=i, node_name=node_name, mesh=m,
                                  mesh_name=str(mesh.get("name") or ""), primitive=p, material=material,
                                  material_name=material_name, world=matrix.copy(), skinned=skin is not None,
                                  linear=linear))
            vertices.append(v)
            faces.append(tris + n_v)
            n_v += len(v)
            n_f += len(tris)
    notes = parts_read_notes(parts, skipped, f"{doc.filename}: unreadable glTF file (no triangle meshes inside)",
                             "primitives", "node transforms")
    if any(part.skinned for part in parts):
        notes.append("skinned meshes read in their bind pose")
    if doc.compression:
        notes.append("decoded " + ", ".join(sorted(doc.compression)))
    uv = np.concatenate(uvs) if all(u is not None for u in uvs) else None
    f_all = np.concatenate(faces)
    return RawMesh(np.concatenate(vertices), f_all, np.arange(len(f_all)), uv=uv, parts=parts, notes=notes)


def _bind_pose(doc: GltfDocument, m: int, p: int, skin_index: int, positions: np.ndarray, world: np.ndarray,
               node_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions moved by linear blend skinning at rest (sum of weight x joint world x inverse bind), and the
    per-vertex linear maps (n, 3, 3) of that skinning."""
    skins = doc.json.get("skins") or []
    if not 0 <= skin_index < len(skins):
        raise MeshError(f"{doc.filename}: unreadable glTF (node {node_name[:40]!r} uses skin {skin_index}, "
                        "which does not exist)")
    skin = skins[skin_index]
    joints = [j for j in skin.get("joints") or []]
    if not joints or not all(isinstance(j, int) and 0 <= j < len(world) for j in joints):
        raise MeshError(f"{doc.filename}: unreadable glTF (skin {skin_index} has no valid joints)")
    if skin.get("inverseBindMatrices") is not None:
        ibm = doc.accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
        if len(ibm) < len(joints):
            raise MeshError(f"{doc.filename}: unreadable glTF (skin {skin_index}: {len(ibm)} inverse bind "
                            f"matrices for {len(joints)} joints)")
    else:
        ibm = np.broadcast_to(np.eye(4), (len(joints), 4, 4))
    joint_matrices = world[joints] @ ibm[: len(joints)]
    blend = np.zeros((len(positions), 4, 4))
    total = np.zeros(len(positions))
    for k in range(4):
        j = doc.attribute(m, p, f"JOINTS_{k}", as_float=False)
        w = doc.attribute(m, p, f"WEIGHTS_{k}")
        if j is None or w is None:
            break
        j = j.astype(np.int64)
        if len(j) != len(positions) or len(w) != len(positions):
            raise MeshError(f"{doc.filename}: unreadable glTF (mesh {m}: JOINTS / WEIGHTS counts differ from "
                            "POSITION)")
        if j.size and (j.min() < 0 or j.max() >= len(joints)):
            raise MeshError(f"{doc.filename}: unreadable glTF (mesh {m}: a joint index past skin {skin_index}'s "
                            f"{len(joints)} joints)")
        for c in range(j.shape[1]):
            blend += w[:, c, None, None] * joint_matrices[j[:, c]]
            total += w[:, c]
    unweighted = total <= 1e-8
    blend[~unweighted] /= total[~unweighted, None, None]
    blend[unweighted] = world[joints[0]] @ ibm[0] if len(joints) else np.eye(4)
    v = np.einsum("nij,nj->ni", blend[:, :3, :3], positions) + blend[:, :3, 3]
    return v, blend[:, :3, :3].copy()


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


def column_min_max(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-component min and max of an accessor's rows (N, ...) -> two (C,) arrays, one column at a time (numpy's
    ``min(axis=0)`` over (N, 3) rows is ten times slower)."""
    flat = np.asarray(arr).reshape(len(arr), -1)
    return (np.array([flat[:, k].min() for k in range(flat.shape[1])], flat.dtype),
            np.array([flat[:, k].max() for k in range(flat.shape[1])], flat.dtype))


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

    def add(self, data, target=None) -> int:
        """A view of `data` (bytes, or a contiguous array kept by reference and written as it is: not copied, so
        it must not change before `write_glb`)."""
        if isinstance(data, np.ndarray):
            data = memoryview(np.ascontiguousarray(data)).cast("B")
        else:
            data = bytes(data)
        assert len(data) % 4 == 0
        self.pieces.append(data)
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
        view = self.add(arr, target)
        mn, mx = column_min_max(arr) if minmax else (None, None)
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
                if isinstance(p, (bytes, memoryview)):
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
