"""One glTF reader for files as people have them: the test avatars plain, compressed by the real encoders
(gltfpack, gltf-transform), as VRM 1.0 / 0.x, with sparse and quantized accessors; every primitive in world space
(skinned ones in their bind pose) with where it came from."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

import avatar_factory as af
from nfs.io import MeshError, load_mesh, load_mesh_bytes

MESHES = ("Wolf3D_Head", "Wolf3D_Teeth", "Wolf3D_Tongue", "EyeLeft", "EyeRight", "Wolf3D_Hair", "Wolf3D_Glasses",
          "Wolf3D_Body", "Wolf3D_Outfit_Top")


@pytest.fixture(scope="module")
def avatar():
    return af.build_avatar()


def _all_positions(avatar) -> np.ndarray:
    return np.concatenate([p for name in MESHES for p in avatar.positions[name]])


def test_plain_avatar_every_primitive_in_world_space_with_its_provenance(avatar):
    mesh = load_mesh_bytes(avatar.glb(), "avatar.glb")
    by_mesh: dict = {}
    for part in mesh.parts:
        by_mesh.setdefault(part.mesh_name, []).append(part)
    assert set(by_mesh) == set(MESHES)
    for name in MESHES:
        parts = sorted(by_mesh[name], key=lambda p: p.primitive)
        assert [p.primitive for p in parts] == list(range(len(avatar.positions[name])))
        for part, expected in zip(parts, avatar.positions[name]):
            got = mesh.vertices[part.vertex_offset: part.vertex_offset + part.vertex_count]
            np.testing.assert_allclose(got, expected, atol=1e-6)      # bind pose / node hierarchy applied
            assert part.skinned == (name != "Wolf3D_Glasses") and part.node_name == name
    head = by_mesh["Wolf3D_Head"][0]
    assert head.material_name == "Wolf3D_Skin" and head.linear.shape == (head.vertex_count, 3, 3)
    glasses = by_mesh["Wolf3D_Glasses"][0]
    assert glasses.linear.shape == (3, 3) and not np.allclose(glasses.world[:3, 3], 0)
    assert any("bind pose" in n for n in mesh.notes)


def test_vrm_files_load(tmp_path):
    for version in ("1.0", "0.x"):
        path = tmp_path / f"a{version}.vrm"
        avatar = af.write_avatar(path, af.AvatarSpec(vrm=version))
        mesh = load_mesh(path)
        np.testing.assert_allclose(mesh.vertices, _all_positions(avatar), atol=1e-6)


@pytest.mark.parametrize("name, tolerance_m", [("gltfpack", 2e-4), ("gltf_transform_meshopt_webp", 2e-4),
                                               ("gltf_transform_draco", 5e-4), ("vrm1_meshopt_webp", 2e-4)])
def test_compressed_avatars_match_the_plain_one(compressed, avatar, name, tolerance_m):
    """Every vertex of the encoder's output lies where a vertex of the plain avatar lies (within the encoder's
    quantization), and every plain vertex is still there: meshopt, quantization, Draco, skins and VRM decoded."""
    mesh = load_mesh(compressed[name])
    plain = _all_positions(avatar)
    d_loaded, _ = cKDTree(plain).query(mesh.vertices)
    d_plain, _ = cKDTree(mesh.vertices).query(plain)
    assert d_loaded.max() < tolerance_m and d_plain.max() < tolerance_m, (d_loaded.max(), d_plain.max())
    assert any("decoded" in n for n in mesh.notes)
    if name != "gltfpack":   # gltfpack merges meshes; the others keep them by name
        assert {p.mesh_name for p in mesh.parts} == set(MESHES)


def _glb_with(gltf: dict, binary: bytes) -> bytes:
    return af.glb_bytes(gltf, binary)


def test_sparse_positions(avatar):
    g = json.loads(json.dumps(avatar.gltf))
    binary = bytearray(avatar.binary)
    glasses = next(m for m in g["meshes"] if m["name"] == "Wolf3D_Glasses")
    acc = g["accessors"][glasses["primitives"][0]["attributes"]["POSITION"]]
    view = g["bufferViews"][acc.pop("bufferView")]
    values = np.frombuffer(bytes(binary), np.float32, acc["count"] * 3, view["byteOffset"]).reshape(-1, 3)
    # the whole attribute as sparse substitutions over an implicit zero base (exporters write this for
    # attributes that are mostly zero; readers that ignore `sparse` see every vertex at the origin)
    idx = np.arange(acc["count"], dtype=np.uint16)
    at = len(binary)
    binary += idx.tobytes() + values.tobytes()
    g["bufferViews"] += [{"buffer": 0, "byteOffset": at, "byteLength": idx.nbytes},
                         {"buffer": 0, "byteOffset": at + idx.nbytes, "byteLength": values.nbytes}]
    n = len(g["bufferViews"])
    acc["sparse"] = {"count": int(acc["count"]), "indices": {"bufferView": n - 2, "componentType": 5123},
                     "values": {"bufferView": n - 1}}
    g["buffers"][0]["byteLength"] = len(binary)
    mesh = load_mesh_bytes(_glb_with(g, bytes(binary)), "sparse.glb")
    part = next(p for p in mesh.parts if p.mesh_name == "Wolf3D_Glasses")
    got = mesh.vertices[part.vertex_offset: part.vertex_offset + part.vertex_count]
    np.testing.assert_allclose(got, avatar.positions["Wolf3D_Glasses"][0], atol=1e-6)


@pytest.mark.parametrize("component, dtype, normalized, divisor", [
    (5120, np.int8, True, 127.0), (5121, np.uint8, True, 255.0), (5122, np.int16, True, 32767.0),
    (5123, np.uint16, True, 65535.0), (5122, np.int16, False, 1.0), (5123, np.uint16, False, 1.0)])
def test_quantized_positions_of_every_component_type(component, dtype, normalized, divisor):
    """KHR_mesh_quantization: integer positions, normalized or not, dequantized by the node's scale and offset."""
    rng = np.random.default_rng(component)
    info = np.iinfo(dtype)
    top = min(info.max, 1000)
    q = rng.integers(max(info.min, -top), top, (30, 3)).astype(dtype)
    faces = np.arange(30, dtype=np.uint16).reshape(-1, 3)
    scale, offset = np.array([0.02, 0.03, 0.05]), np.array([0.1, 1.5, -0.2])
    pos_bytes = np.concatenate([q, np.zeros((30, 1), dtype)], 1).tobytes()   # rows padded to 4-byte strides
    stride = 4 * np.dtype(dtype).itemsize
    g = {"asset": {"version": "2.0"}, "extensionsUsed": ["KHR_mesh_quantization"],
         "extensionsRequired": ["KHR_mesh_quantization"], "scene": 0, "scenes": [{"nodes": [0]}],
         "nodes": [{"mesh": 0, "scale": scale.tolist(), "translation": offset.tolist()}],
         "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
         "accessors": [{"bufferView": 0, "componentType": component, "normalized": normalized, "count": 30,
                        "type": "VEC3"},
                       {"bufferView": 1, "componentType": 5123, "count": 30, "type": "SCALAR"}],
         "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(pos_bytes), "byteStride": stride},
                         {"buffer": 0, "byteOffset": len(pos_bytes) + (-len(pos_bytes) % 4), "byteLength": 60}],
         "buffers": [{"byteLength": 0}]}
    binary = pos_bytes + b"\0" * (-len(pos_bytes) % 4) + faces.tobytes()
    g["buffers"][0]["byteLength"] = len(binary)
    mesh = load_mesh_bytes(af.glb_bytes(g, binary), "quantized.glb")
    expected = q.astype(np.float64) / divisor
    expected = (np.maximum(expected, -1.0) if normalized else expected) * scale + offset
    np.testing.assert_allclose(mesh.vertices, expected, rtol=0, atol=1e-12)


def test_unknown_required_extension_is_refused_by_name(avatar):
    g = json.loads(json.dumps(avatar.gltf))
    g["extensionsUsed"] = g.get("extensionsUsed", []) + ["EXT_future_geometry"]
    g["extensionsRequired"] = ["EXT_future_geometry", "KHR_texture_basisu"]
    with pytest.raises(MeshError, match="needs the glTF extension EXT_future_geometry, which nfs cannot read"):
        load_mesh_bytes(af.glb_bytes(g, avatar.binary), "future.glb")
