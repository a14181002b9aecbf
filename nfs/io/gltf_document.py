"""A glTF file as people have it, decoded once: the JSON, every buffer view's plain bytes (EXT / KHR meshopt
views decoded with the meshoptimizer package), accessors as arrays (normalized and quantized integers of every
component type, strides, sparse accessors), Draco primitives decoded with DracoPy, and the node hierarchy's world
transforms. `nfs.io.gltf` builds the mesh from it and the avatar export writes the file back from it.

- what the file *requires* is checked first: ``KHR_draco_mesh_compression``, ``EXT_meshopt_compression``,
  ``KHR_meshopt_compression``, ``KHR_mesh_quantization`` are read; material, texture and light extensions only
  change looks (their images are kept byte for byte, never needed for geometry); any other required extension is
  refused with a message naming it;
- buffer and image URIs must be data URIs or files inside the glTF's own folder.

The reader works on the JSON as written (plain dicts), not on a typed model, so that nothing of the file, VRM
extensions and extras included, is lost on the way back out.
"""
from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nfs.io.mesh import MeshError

DRACO = "KHR_draco_mesh_compression"
MESHOPT = "EXT_meshopt_compression"
MESHOPT_KHR = "KHR_meshopt_compression"
QUANTIZATION = "KHR_mesh_quantization"
DECODED = (DRACO, MESHOPT, MESHOPT_KHR)            # compression the reader undoes
READ = DECODED + (QUANTIZATION,)                   # required extensions the reader understands
# required extensions whose absence only changes how the mesh looks, not where its vertices are
LOOKS_ONLY_PREFIXES = ("KHR_materials_", "KHR_texture_", "EXT_texture_", "KHR_lights_", "EXT_lights_")
COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
NORMALIZED_DIVISOR = {5120: 127.0, 5121: 255.0, 5122: 32767.0, 5123: 65535.0, 5125: 4294967295.0}
WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
MAX_DECODED_BYTES = 1 << 31  # 2 GiB: a compressed view may not claim more than this once decoded


def split_glb(data: bytes, filename: str) -> tuple[dict, bytes]:
    """A GLB's JSON (dict) and BIN chunk (bytes, empty when there is none)."""
    if len(data) < 20 or data[:4] != b"glTF":
        raise MeshError(f"{filename}: unreadable GLB file (not a GLB header)")
    version, length = struct.unpack_from("<II", data, 4)
    if version != 2:
        raise MeshError(f"{filename}: unreadable GLB file (version {version}; glTF 2 is supported)")
    if length > len(data):
        raise MeshError(f"{filename}: unreadable GLB file (header says {length:,} bytes, the file has {len(data):,})")
    chunks, at = [], 12
    while at + 8 <= length:
        size, kind = struct.unpack_from("<I4s", data, at)
        if at + 8 + size > length:
            raise MeshError(f"{filename}: unreadable GLB file (a chunk runs past the end)")
        chunks.append((kind, data[at + 8: at + 8 + size]))
        at += 8 + size + (-size % 4 if at + 8 + size < length and size % 4 else 0)
    if not chunks or chunks[0][0] != b"JSON":
        raise MeshError(f"{filename}: unreadable GLB file (no JSON chunk)")
    gltf = _parse_json(chunks[0][1], filename)
    binary = next((c for k, c in chunks[1:] if k == b"BIN\0"), b"")
    return gltf, binary


def _parse_json(text: bytes, filename: str) -> dict:
    try:
        gltf = json.loads(text.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as e:
        raise MeshError(f"{filename}: unreadable glTF JSON ({str(e)[:80]})") from None
    if not isinstance(gltf, dict):
        raise MeshError(f"{filename}: unreadable glTF JSON (not an object)")
    return gltf


def check_extensions(gltf: dict, filename: str) -> set[str]:
    """The compression extensions the file uses (a subset of DECODED); refuses any required extension that changes
    geometry and that this reader does not read, by name."""
    required = gltf.get("extensionsRequired") or []
    if not isinstance(required, list):
        raise MeshError(f"{filename}: unreadable glTF JSON (extensionsRequired is not a list)")
    unknown = [e for e in required if e not in READ and not str(e).startswith(LOOKS_ONLY_PREFIXES)]
    if unknown:
        raise MeshError(f"{filename}: needs the glTF extension{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(map(str, unknown))}, which nfs cannot read; export again without "
                        f"{'them' if len(unknown) > 1 else 'it'}")
    used = set(required) | set(gltf.get("extensionsUsed") or [])
    return used & set(DECODED)


def check_uris(gltf: dict, filename: str, folder: Path | None) -> None:
    """Buffer and image URIs are data URIs or relative paths that stay inside the file's folder."""
    for kind in ("buffers", "images"):
        for item in gltf.get(kind) or []:
            uri = item.get("uri") if isinstance(item, dict) else None
            if not uri or str(uri).startswith("data:"):
                continue
            path = Path(str(uri))
            if path.is_absolute() or ".." in path.parts or ":" in str(uri).split("/")[0]:
                raise MeshError(f"{filename}: a {kind[:-1]} URI points outside the file's folder ({str(uri)[:60]})")
            if folder is not None and not (folder / path).resolve().is_relative_to(folder.resolve()):
                raise MeshError(f"{filename}: a {kind[:-1]} URI points outside the file's folder ({str(uri)[:60]})")


def buffer_bytes(gltf: dict, index: int, binary: bytes, folder: Path | None, filename: str) -> bytes:
    """The bytes of buffer `index`: the GLB BIN chunk, a data URI or a file beside the glTF."""
    buffers = gltf.get("buffers") or []
    if not 0 <= index < len(buffers):
        raise MeshError(f"{filename}: unreadable glTF (buffer {index} does not exist)")
    uri = buffers[index].get("uri")
    if uri is None:
        return binary
    if uri.startswith("data:"):
        try:
            return base64.b64decode(uri.split(",", 1)[1], validate=False)
        except (ValueError, IndexError):
            raise MeshError(f"{filename}: unreadable glTF (broken data URI in buffer {index})") from None
    if folder is None:
        raise MeshError(f"{filename}: needs the external file {uri[:60]}; upload a GLB (binary glTF) instead")
    try:
        return (folder / uri).read_bytes()
    except OSError:
        raise MeshError(f"{filename}: missing external buffer file {uri[:60]}") from None


def _is_fallback(buffer: dict) -> bool:
    ext = (buffer.get("extensions") or {})
    return any(bool((ext.get(name) or {}).get("fallback")) for name in (MESHOPT, MESHOPT_KHR))


def _view_bytes(view: dict, buffers: list[bytes], filename: str, index: int) -> bytes:
    ext = (view.get("extensions") or {})
    meshopt = ext.get(MESHOPT) or ext.get(MESHOPT_KHR)
    if meshopt:
        return _decode_meshopt(meshopt, buffers, filename, index)
    return _slice(buffers, view.get("buffer", 0), view.get("byteOffset", 0), view.get("byteLength", 0), filename,
                  index)


def _slice(buffers: list[bytes], buffer: int, offset: int, length: int, filename: str, index: int) -> bytes:
    if not (isinstance(buffer, int) and 0 <= buffer < len(buffers)):
        raise MeshError(f"{filename}: unreadable glTF (buffer view {index} uses a missing buffer)")
    data = buffers[buffer]
    if not (isinstance(offset, int) and isinstance(length, int)) or offset < 0 or length < 0 \
            or offset + length > len(data):
        raise MeshError(f"{filename}: unreadable glTF (buffer view {index} runs past its buffer: "
                        f"{offset:,} + {length:,} > {len(data):,} bytes)")
    return data[offset: offset + length]


def _decode_meshopt(ext: dict, buffers: list[bytes], filename: str, index: int) -> bytes:
    import meshoptimizer

    count, stride = int(ext.get("count", -1)), int(ext.get("byteStride", -1))
    mode, filt = ext.get("mode", "ATTRIBUTES"), ext.get("filter", "NONE")
    if count < 0 or not 0 < stride <= 256 or count * stride > MAX_DECODED_BYTES:
        raise MeshError(f"{filename}: unreadable meshopt data in buffer view {index} (count {count}, stride {stride})")
    data = _slice(buffers, ext.get("buffer", 0), ext.get("byteOffset", 0), ext.get("byteLength", 0), filename, index)
    try:
        if mode == "ATTRIBUTES":
            out = meshoptimizer.decode_vertex_buffer(count, stride, data)
        elif mode == "TRIANGLES":
            out = meshoptimizer.decode_index_buffer(count, stride, data)
        elif mode == "INDICES":
            out = meshoptimizer.decode_index_sequence(count, stride, data)
        else:
            raise MeshError(f"{filename}: unknown meshopt mode {str(mode)[:20]} in buffer view {index}")
        raw = np.ascontiguousarray(out).view(np.uint8).reshape(-1)[: count * stride]
        if filt and filt != "NONE":
            decode = {"OCTAHEDRAL": meshoptimizer.decode_filter_oct, "QUATERNION": meshoptimizer.decode_filter_quat,
                      "EXPONENTIAL": meshoptimizer.decode_filter_exp}.get(filt)
            if decode is None:
                raise MeshError(f"{filename}: unknown meshopt filter {str(filt)[:20]} in buffer view {index}")
            raw = np.ascontiguousarray(decode(raw.copy(), count, stride)).view(np.uint8).reshape(-1)
    except MeshError:
        raise
    except Exception as e:  # the decoders raise ValueError / RuntimeError on corrupt data
        raise MeshError(f"{filename}: corrupt meshopt data in buffer view {index} ({str(e)[:80]})") from None
    if raw.size != count * stride:
        raise MeshError(f"{filename}: corrupt meshopt data in buffer view {index} (decoded {raw.size} bytes, "
                        f"expected {count * stride})")
    return raw.tobytes()


# ----------------------------------------------------------------------------------------------- the document


@dataclass
class GltfDocument:
    """A read glTF: `json` as written (dict), `views` the plain bytes of every buffer view (meshopt decoded),
    `binary` the GLB's BIN chunk, `filename` for messages, `compression` the compression extensions it used."""

    json: dict
    views: list[bytes]
    filename: str
    compression: set = field(default_factory=set)
    _draco: dict = field(default_factory=dict, repr=False)

    def _list(self, key: str) -> list:
        items = self.json.get(key) or []
        return items if isinstance(items, list) else []

    def _item(self, key: str, index, what: str) -> dict:
        items = self._list(key)
        if not (isinstance(index, int) and 0 <= index < len(items)) or not isinstance(items[index], dict):
            raise MeshError(f"{self.filename}: unreadable glTF ({what} {index} does not exist)")
        return items[index]

    # -- accessors

    def accessor(self, index: int, as_float: bool = True) -> np.ndarray:
        """Accessor `index` as a (count, width) array: float64 with normalized integers mapped to [-1, 1] / [0, 1]
        (KHR_mesh_quantization) when `as_float`, else the stored integers; sparse substitutions applied."""
        acc = self._item("accessors", index, "accessor")
        ctype, type_, count = acc.get("componentType"), acc.get("type"), acc.get("count")
        if ctype not in COMPONENTS or type_ not in WIDTH or not isinstance(count, int) or count < 0:
            raise MeshError(f"{self.filename}: unreadable glTF (accessor {index}: component type {ctype}, "
                            f"type {type_}, count {count})")
        dtype, width = np.dtype(COMPONENTS[ctype]), WIDTH[type_]
        if acc.get("bufferView") is not None:
            arr = self._strided(acc.get("bufferView"), acc.get("byteOffset", 0), count, width, dtype, index)
        else:
            arr = np.zeros((count, width), dtype)
        sparse = acc.get("sparse")
        if isinstance(sparse, dict):
            arr = self._apply_sparse(arr, sparse, width, dtype, index)
        if not as_float:
            return arr
        out = arr.astype(np.float64)
        if acc.get("normalized") and ctype in NORMALIZED_DIVISOR:
            out = np.maximum(out / NORMALIZED_DIVISOR[ctype], -1.0)
        return out

    def _strided(self, view_index, offset, count: int, width: int, dtype: np.dtype, index: int) -> np.ndarray:
        view = self._item("bufferViews", view_index, "buffer view")
        data = self.views[view_index]
        element = width * dtype.itemsize
        stride = view.get("byteStride") or element
        if not isinstance(offset, int) or offset < 0 or not isinstance(stride, int) or stride < element:
            raise MeshError(f"{self.filename}: unreadable glTF (accessor {index}: offset {offset}, stride {stride})")
        if count and offset + (count - 1) * stride + element > len(data):
            raise MeshError(f"{self.filename}: unreadable glTF (accessor {index} runs past its buffer view: "
                            f"{count:,} elements of {element} bytes from offset {offset:,} in {len(data):,} bytes)")
        if count == 0:
            return np.zeros((0, width), dtype)
        if offset % dtype.itemsize or stride % dtype.itemsize:   # misaligned: copy the rows out first
            rows = np.frombuffer(data, np.uint8)[offset: offset + (count - 1) * stride + element]
            rows = np.lib.stride_tricks.as_strided(rows, (count, element), (stride, 1)).copy()
            return rows.view(dtype).reshape(count, width)
        return np.ndarray((count, width), dtype, buffer=data, offset=offset, strides=(stride, dtype.itemsize)).copy()

    def _apply_sparse(self, arr, sparse: dict, width: int, dtype: np.dtype, index: int) -> np.ndarray:
        n = sparse.get("count")
        ind, val = sparse.get("indices") or {}, sparse.get("values") or {}
        ictype = ind.get("componentType")
        if not isinstance(n, int) or n < 0 or ictype not in (5121, 5123, 5125):
            raise MeshError(f"{self.filename}: unreadable glTF (accessor {index}: sparse count {n}, "
                            f"index type {ictype})")
        idx = self._strided(ind.get("bufferView"), ind.get("byteOffset", 0), n, 1, np.dtype(COMPONENTS[ictype]),
                            index).ravel().astype(np.int64)
        values = self._strided(val.get("bufferView"), val.get("byteOffset", 0), n, width, dtype, index)
        if n and (idx.min() < 0 or idx.max() >= len(arr)):
            raise MeshError(f"{self.filename}: unreadable glTF (accessor {index}: a sparse index past its "
                            f"{len(arr):,} elements)")
        arr = arr.copy()
        arr[idx] = values
        return arr

    # -- primitives

    def primitive(self, mesh_index: int, prim_index: int) -> dict:
        """The primitive's JSON (Draco primitives: their attributes refer to decoded arrays, see `attribute`)."""
        mesh = self._item("meshes", mesh_index, "mesh")
        prims = mesh.get("primitives") or []
        if not (0 <= prim_index < len(prims)) or not isinstance(prims[prim_index], dict):
            raise MeshError(f"{self.filename}: unreadable glTF (mesh {mesh_index} primitive {prim_index})")
        return prims[prim_index]

    def attribute(self, mesh_index: int, prim_index: int, semantic: str, as_float: bool = True) -> np.ndarray | None:
        """A vertex attribute of a primitive as an array (None when absent); Draco data decoded."""
        prim = self.primitive(mesh_index, prim_index)
        draco = (prim.get("extensions") or {}).get(DRACO)
        if draco and semantic in (draco.get("attributes") or {}):
            arr = self._draco_decoded(mesh_index, prim_index)["attributes"].get(semantic)
            if arr is not None:
                acc = self._item("accessors", (prim.get("attributes") or {}).get(semantic), "accessor")
                if as_float and acc.get("normalized") and arr.dtype.kind in "iu":
                    return np.maximum(arr.astype(np.float64) / NORMALIZED_DIVISOR[acc["componentType"]], -1.0)
                return arr.astype(np.float64) if as_float else arr
        index = (prim.get("attributes") or {}).get(semantic)
        return None if index is None else self.accessor(index, as_float)

    def triangles(self, mesh_index: int, prim_index: int, n_vertices: int) -> np.ndarray | None:
        """(F, 3) int64 triangles of a primitive (strips and fans unrolled); None for points and lines."""
        prim = self.primitive(mesh_index, prim_index)
        mode = prim.get("mode", 4)
        if mode not in (4, 5, 6):
            return None
        if (prim.get("extensions") or {}).get(DRACO):
            flat = self._draco_decoded(mesh_index, prim_index)["indices"]
        elif prim.get("indices") is not None:
            flat = self.accessor(prim["indices"], as_float=False).ravel().astype(np.int64)
        else:
            flat = np.arange(n_vertices, dtype=np.int64)
        if mode == 4:
            return flat[: len(flat) // 3 * 3].reshape(-1, 3)
        if len(flat) < 3:
            return np.zeros((0, 3), np.int64)
        k = np.arange(len(flat) - 2)
        if mode == 5:   # strip: every other triangle reversed to keep the winding
            tris = np.stack([flat[k], flat[k + 1 + (k % 2)], flat[k + 2 - (k % 2)]], 1)
        else:           # fan
            tris = np.stack([np.full(len(k), flat[0]), flat[k + 1], flat[k + 2]], 1)
        return tris

    def _draco_decoded(self, mesh_index: int, prim_index: int) -> dict:
        key = (mesh_index, prim_index)
        if key not in self._draco:
            import DracoPy
            ext = self.primitive(mesh_index, prim_index)["extensions"][DRACO]
            view = ext.get("bufferView")
            self._item("bufferViews", view, "buffer view")
            try:
                decoded = DracoPy.decode(self.views[view])
            except Exception as e:  # DracoPy raises its own errors on corrupt data
                raise MeshError(f"{self.filename}: corrupt Draco data in mesh {mesh_index} ({str(e)[:80]})") from None
            by_id = {a["unique_id"]: np.asarray(a["data"]) for a in (getattr(decoded, "attributes", None) or [])}
            attributes = {}
            for semantic, uid in (ext.get("attributes") or {}).items():
                if uid in by_id:
                    data = by_id[uid]
                    attributes[semantic] = data.reshape(len(data), -1)
            if "POSITION" not in attributes:
                attributes["POSITION"] = np.asarray(decoded.points, np.float32).reshape(-1, 3)
            faces = np.asarray(getattr(decoded, "faces", np.zeros((0, 3))), np.int64).reshape(-1)
            if len(attributes["POSITION"]) == 0 or len(faces) == 0:
                raise MeshError(f"{self.filename}: the Draco data of mesh {mesh_index} holds no triangles")
            self._draco[key] = {"attributes": attributes, "indices": faces}
        return self._draco[key]

    # -- nodes

    def scene_nodes(self) -> list[int]:
        """Nodes of the default scene (every scene's when none is named; every node when there are no scenes),
        parents before children."""
        scenes = self._list("scenes")
        chosen = self.json.get("scene")
        roots = []
        if scenes:
            picked = [scenes[chosen]] if isinstance(chosen, int) and 0 <= chosen < len(scenes) else scenes
            for s in picked:
                roots += [r for r in (s.get("nodes") or []) if isinstance(r, int)]
        else:
            children = {c for n in self._list("nodes") for c in (n.get("children") or [])}
            roots = [i for i in range(len(self._list("nodes"))) if i not in children]
        order, seen, stack = [], set(), list(reversed(roots))
        nodes = self._list("nodes")
        while stack:
            i = stack.pop()
            if i in seen or not (isinstance(i, int) and 0 <= i < len(nodes)):
                continue
            seen.add(i)
            order.append(i)
            stack += list(reversed([c for c in (nodes[i].get("children") or []) if isinstance(c, int)]))
        return order

    def world_matrices(self) -> np.ndarray:
        """(N, 4, 4) world transform of every node at rest (nodes outside the scene: from their parents too)."""
        nodes = self._list("nodes")
        parent = {}
        for i, n in enumerate(nodes):
            for c in n.get("children") or []:
                if isinstance(c, int) and 0 <= c < len(nodes):
                    parent[c] = i
        world = np.full((len(nodes), 4, 4), np.nan)

        def resolve(i, depth=0):
            if not np.isnan(world[i, 0, 0]):
                return world[i]
            if depth > len(nodes):
                raise MeshError(f"{self.filename}: unreadable glTF (the node hierarchy has a cycle)")
            local = local_matrix(nodes[i])
            world[i] = local if i not in parent else resolve(parent[i], depth + 1) @ local
            return world[i]

        for i in range(len(nodes)):
            resolve(i)
        return world

    def images(self) -> list[tuple[str, bytes | None]]:
        """(mime type, bytes) of every image as stored (None when the bytes live outside the file)."""
        out = []
        for img in self._list("images"):
            data = None
            if img.get("bufferView") is not None and 0 <= img["bufferView"] < len(self.views):
                data = self.views[img["bufferView"]]
            elif str(img.get("uri", "")).startswith("data:"):
                try:
                    data = base64.b64decode(img["uri"].split(",", 1)[1], validate=False)
                except (ValueError, IndexError):
                    data = None
            out.append((str(img.get("mimeType") or ""), data))
        return out


def local_matrix(node: dict) -> np.ndarray:
    """A node's local 4x4 transform from `matrix` (column-major) or translation / rotation (x, y, z, w) / scale."""
    if node.get("matrix") is not None:
        m = np.asarray(node["matrix"], np.float64)
        if m.size == 16:
            return m.reshape(4, 4).T
    out = np.eye(4)
    x, y, z, w = (list(node.get("rotation") or [0, 0, 0, 1]) + [0, 0, 0, 1])[:4]
    norm = np.sqrt(x * x + y * y + z * z + w * w) or 1.0
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    out[:3, :3] = rot * np.asarray((list(node.get("scale") or [1, 1, 1]) + [1, 1, 1])[:3], np.float64)[None, :]
    out[:3, 3] = (list(node.get("translation") or [0, 0, 0]) + [0, 0, 0])[:3]
    return out


def read_document(source: bytes | str | Path, filename: str) -> GltfDocument:
    """A GLB / VRM's bytes or a .gltf's bytes or path (external buffers beside it) -> GltfDocument, after the
    checks of required extensions and URIs; meshopt views decoded now, Draco primitives when first asked."""
    folder = None
    if isinstance(source, (str, Path)):
        folder = Path(source).parent
        source = Path(source).read_bytes()
    if source[:4] == b"glTF":
        gltf, binary = split_glb(source, filename)
    else:
        gltf, binary = _parse_json(source, filename), b""
    compression = check_extensions(gltf, filename)
    check_uris(gltf, filename, folder)
    buffers = [buffer_bytes(gltf, i, binary, folder, filename) if not _is_fallback(b) else b""
               for i, b in enumerate(gltf.get("buffers") or [])]
    views = [_view_bytes(view, buffers, filename, i) for i, view in enumerate(gltf.get("bufferViews") or [])]
    return GltfDocument(gltf, views, filename, compression)
