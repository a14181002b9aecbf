"""Compressed and extended glTF: what the file needs is checked before anything is read, and compressed geometry
is decoded into a plain GLB that the ordinary reader takes.

- ``KHR_draco_mesh_compression`` primitives are decoded with DracoPy (Google's Draco decoder);
- ``EXT_meshopt_compression`` buffer views are decoded with the meshoptimizer package (the codec gltfpack
  writes), filters included;
- any other *required* extension that changes geometry is refused with a message naming it (material and
  texture extensions only change looks, and the geometry is read without them);
- buffer URIs must be data URIs or files inside the glTF's own folder.
"""
from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np

from nfs.io.mesh import MeshError

DRACO = "KHR_draco_mesh_compression"
MESHOPT = "EXT_meshopt_compression"
MESHOPT_KHR = "KHR_meshopt_compression"
# required extensions whose absence only changes how the mesh looks, not where its vertices are
LOOKS_ONLY_PREFIXES = ("KHR_materials_", "KHR_texture_", "EXT_texture_", "KHR_lights_", "EXT_lights_")
COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
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
    """The required extensions this reader decodes; refuses any other one that changes geometry."""
    required = gltf.get("extensionsRequired") or []
    if not isinstance(required, list):
        raise MeshError(f"{filename}: unreadable glTF JSON (extensionsRequired is not a list)")
    unknown = [e for e in required if e not in (DRACO, MESHOPT, MESHOPT_KHR)
               and not str(e).startswith(LOOKS_ONLY_PREFIXES)]
    if unknown:
        raise MeshError(f"{filename}: needs the glTF extension{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(map(str, unknown))}, which nfs cannot read; export again without "
                        f"{'them' if len(unknown) > 1 else 'it'}")
    used = set(required) | set(gltf.get("extensionsUsed") or [])
    return used & {DRACO, MESHOPT, MESHOPT_KHR}


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


def decompress(gltf: dict, binary: bytes, filename: str, folder: Path | None = None) -> bytes:
    """A plain GLB (bytes) holding the same scene with Draco primitives and meshopt views decoded; every buffer
    (BIN chunk, data URIs, files beside a .gltf) is gathered into one BIN chunk."""
    extensions = check_extensions(gltf, filename)
    check_uris(gltf, filename, folder)
    buffers = [buffer_bytes(gltf, i, binary, folder, filename) if not _is_fallback(b) else b""
               for i, b in enumerate(gltf.get("buffers") or [])]
    out = bytearray()
    views = gltf.get("bufferViews") or []
    new_views = []
    for i, view in enumerate(views):
        data = _view_bytes(view, buffers, filename, i)
        new_views.append({k: v for k, v in view.items() if k not in ("buffer", "byteOffset", "extensions")}
                         | {"buffer": 0, "byteOffset": len(out), "byteLength": len(data)})
        out += data + b"\0" * (-len(data) % 4)
    gltf = dict(gltf, bufferViews=new_views)
    if DRACO in extensions:
        gltf, out = _decode_draco(gltf, out, filename)
    gltf["buffers"] = [{"byteLength": len(out)}]
    for key in ("extensionsRequired", "extensionsUsed"):
        left = [e for e in gltf.get(key) or [] if e not in (DRACO, MESHOPT, MESHOPT_KHR)]
        gltf[key] = left
        if not left:
            del gltf[key]
    return _glb(gltf, bytes(out))


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


def _decode_draco(gltf: dict, out: bytearray, filename: str) -> tuple[dict, bytearray]:
    """Replace every Draco primitive's attributes and indices by new plain accessors."""
    import DracoPy

    accessors = list(gltf.get("accessors") or [])
    views = list(gltf["bufferViews"])
    meshes = json.loads(json.dumps(gltf.get("meshes") or []))

    def add(array: np.ndarray, type_: str, component: int) -> int:
        data = np.ascontiguousarray(array).tobytes()
        views.append({"buffer": 0, "byteOffset": len(out), "byteLength": len(data)})
        out.extend(data + b"\0" * (-len(data) % 4))
        flat = array.reshape(len(array), -1)
        acc = {"bufferView": len(views) - 1, "componentType": component, "count": int(len(array)), "type": type_}
        if type_ == "VEC3":
            acc |= {"min": flat.min(0).astype(float).tolist(), "max": flat.max(0).astype(float).tolist()}
        accessors.append(acc)
        return len(accessors) - 1

    for m, mesh in enumerate(meshes):
        for p, prim in enumerate(mesh.get("primitives") or []):
            ext = (prim.get("extensions") or {}).get(DRACO)
            if not ext:
                continue
            view = ext.get("bufferView")
            if not (isinstance(view, int) and 0 <= view < len(views)):
                raise MeshError(f"{filename}: Draco primitive {m}.{p} has no compressed data")
            start = views[view]["byteOffset"]
            blob = bytes(out[start: start + views[view]["byteLength"]])
            try:
                decoded = DracoPy.decode(blob)
            except Exception as e:  # DracoPy raises its own errors on corrupt data
                raise MeshError(f"{filename}: corrupt Draco data in mesh {m} ({str(e)[:80]})") from None
            points = np.asarray(decoded.points, np.float32).reshape(-1, 3)
            faces = np.asarray(getattr(decoded, "faces", np.zeros((0, 3))), np.uint32).reshape(-1)
            if len(points) == 0 or len(faces) == 0:
                raise MeshError(f"{filename}: the Draco data of mesh {m} holds no triangles")
            attributes = {"POSITION": add(points, "VEC3", 5126)}
            uv = getattr(decoded, "tex_coord", None)
            if "TEXCOORD_0" in (ext.get("attributes") or {}) and uv is not None and len(uv) == len(points):
                attributes["TEXCOORD_0"] = add(np.asarray(uv, np.float32).reshape(-1, 2), "VEC2", 5126)
            prim["attributes"] = attributes
            prim["indices"] = add(faces, "SCALAR", 5125)
            prim.pop("targets", None)
            prim["extensions"] = {k: v for k, v in prim["extensions"].items() if k != DRACO}
            if not prim["extensions"]:
                del prim["extensions"]
    return dict(gltf, accessors=accessors, bufferViews=views, meshes=meshes), out


def _glb(gltf: dict, binary: bytes) -> bytes:
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(binary), b"BIN\0") + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def plain_glb(source: bytes | str | Path, filename: str) -> bytes | None:
    """The file as a plain GLB when it uses Draco or meshopt compression (decoded), after checking required
    extensions and URIs; None when it can go to the reader as it is."""
    folder = None
    if isinstance(source, (str, Path)):
        folder = Path(source).parent
        source = Path(source).read_bytes()
    if source[:4] == b"glTF":
        gltf, binary = split_glb(source, filename)
    else:
        gltf, binary = _parse_json(source, filename), b""
    check_uris(gltf, filename, folder)
    if not check_extensions(gltf, filename):
        return None
    return decompress(gltf, binary, filename, folder)
