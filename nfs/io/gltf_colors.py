"""Colours of a glTF / VRM mesh for display: each triangle's base colour (the material's baseColorFactor times its
base-colour texture at the triangle's UV centre), with textures decoded by Pillow (PNG, JPEG, WebP). KTX2 / Basis
textures and images that fail to decode give the material's flat colour, and a note says so; the geometry never
depends on them."""
from __future__ import annotations

import io

import numpy as np

from nfs.io.gltf_document import GltfDocument, read_document
from nfs.io.mesh import RawMesh

FLAT_GREY = np.array([0.78, 0.74, 0.70])       # a material with neither colour nor texture
TEXTURE_SOURCE_EXTENSIONS = ("EXT_texture_webp", "KHR_texture_basisu", "EXT_texture_avif", "MSFT_texture_dds")


def face_colors(raw: RawMesh) -> tuple[np.ndarray | None, list[str]]:
    """(F, 3) uint8 colour per triangle of a mesh read from glTF / VRM (None for other meshes), and notes on the
    textures that are shown as flat colours."""
    if not raw.is_gltf or not raw.parts or raw.parts[0].mesh is None:
        return None, []
    doc = read_document(raw.original, raw.source)
    materials = doc.json.get("materials") or []
    out = np.tile(FLAT_GREY, (raw.n_faces, 1))
    images: dict[int, np.ndarray | None] = {}
    notes: list[str] = []
    for part in raw.parts:
        rows = slice(part.face_offset, part.face_offset + part.face_count)
        material = materials[part.material] if part.material is not None and part.material < len(materials) else {}
        pbr = material.get("pbrMetallicRoughness") or {}
        factor = np.asarray((list(pbr.get("baseColorFactor") or [1, 1, 1, 1]) + [1, 1, 1, 1])[:3], np.float64)
        out[rows] = factor if material else FLAT_GREY
        info = pbr.get("baseColorTexture")
        if not isinstance(info, dict):
            continue
        image_index = _texture_image(doc, info.get("index"))
        if image_index is None:
            continue
        if image_index not in images:
            images[image_index] = _decode(doc, image_index, notes)
        pixels = images[image_index]
        uv = doc.attribute(part.mesh, part.primitive, f"TEXCOORD_{int(info.get('texCoord', 0))}")
        if pixels is None or uv is None or len(uv) != part.vertex_count:
            continue
        faces = raw.faces[rows] - part.vertex_offset
        centre = uv[faces].mean(1)
        h, w = pixels.shape[:2]
        col = np.floor(np.mod(centre[:, 0], 1.0) * w).astype(int).clip(0, w - 1)
        row = np.floor(np.mod(centre[:, 1], 1.0) * h).astype(int).clip(0, h - 1)   # glTF: v = 0 at the top
        out[rows] = pixels[row, col] * factor
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8), notes


def _texture_image(doc: GltfDocument, texture) -> int | None:
    textures = doc.json.get("textures") or []
    if not (isinstance(texture, int) and 0 <= texture < len(textures)):
        return None
    tex = textures[texture]
    source = tex.get("source")
    for name in TEXTURE_SOURCE_EXTENSIONS:        # the extension's image is the one the file means to show
        ext = (tex.get("extensions") or {}).get(name)
        if isinstance(ext, dict) and isinstance(ext.get("source"), int):
            source = ext["source"]
            break
    n = len(doc.json.get("images") or [])
    return source if isinstance(source, int) and 0 <= source < n else None


def _decode(doc: GltfDocument, index: int, notes: list[str]) -> np.ndarray | None:
    """(H, W, 3) float colours of image `index` in [0, 1], or None (with a note) when Pillow cannot show it."""
    from PIL import Image, UnidentifiedImageError
    mime, data = doc.images()[index]
    name = (doc.json["images"][index].get("name") or f"image {index}")
    if data is None:
        notes.append(f"texture {name} is outside the file: shown as a flat colour")
        return None
    if "ktx2" in mime or data[:12] == b"\xabKTX 20\xbb\r\n\x1a\n":
        notes.append(f"texture {name} is KTX2 / Basis (GPU compressed), which the viewer does not decode: shown as "
                     "a flat colour (the file keeps it)")
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (256, 256))
            rgb = img.convert("RGB")
            rgb.thumbnail((256, 256))
            return np.asarray(rgb, np.float64) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as e:
        notes.append(f"texture {name} could not be decoded ({str(e)[:60]}): shown as a flat colour; the geometry "
                     "is unaffected")
        return None
