"""The test avatars (tests/avatar_factory.py) are what they claim to be: valid glTF by the Khronos validator, a
Ready Player Me-like structure, VRM extensions, and the real npm encoders' outputs carrying their extensions."""
from __future__ import annotations

import io

import numpy as np
import pytest

import avatar_factory as af
import gltf_validator


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    folder = tmp_path_factory.mktemp("avatars")
    files = {}
    for name, spec in (("rpm.glb", af.AvatarSpec()), ("open.glb", af.AvatarSpec(lips="open")),
                       ("vrm1.vrm", af.AvatarSpec(vrm="1.0")), ("vrm0.vrm", af.AvatarSpec(vrm="0.x"))):
        files[name] = (folder / name, af.write_avatar(folder / name, spec))
    return files


def test_avatar_is_ready_player_me_like(plain):
    path, avatar = plain["rpm.glb"]
    g, binary = af.read_glb(path)
    names = [m["name"] for m in g["meshes"]]
    for expected in ("Wolf3D_Head", "Wolf3D_Teeth", "EyeLeft", "EyeRight", "Wolf3D_Hair", "Wolf3D_Body",
                     "Wolf3D_Outfit_Top", "Wolf3D_Glasses"):
        assert expected in names
    assert len(g["materials"]) == 7 and len(g["images"]) == 7 and len(g["skins"]) == 1
    assert g["animations"][0]["name"] == "Idle"
    head = g["meshes"][names.index("Wolf3D_Head")]
    assert head["extras"]["targetNames"] == list(af.HEAD_TARGETS)
    prim = head["primitives"][0]
    assert {"JOINTS_0", "WEIGHTS_0", "TEXCOORD_0"} <= set(prim["attributes"])
    assert len(g["meshes"][names.index("Wolf3D_Teeth")]["primitives"]) == 2
    # the head is closed at the lips and the eyes (joined lips, bag and sockets): only the neck is open
    from nfs.geometry.openings import boundary_loops
    v = avatar.positions["Wolf3D_Head"][0]
    faces = _indices(g, binary, prim)
    welded = np.unique(np.round(v, 6), axis=0, return_inverse=True)[1].ravel()   # the UV seam's copies welded
    loops = boundary_loops(welded[faces])
    assert len(loops) == 1                                       # the neck's
    from PIL import Image
    for data in avatar.images:
        Image.open(io.BytesIO(data)).load()


def test_open_lips_variant_has_a_mouth_opening(plain):
    path, avatar = plain["open.glb"]
    g, binary = af.read_glb(path)
    from nfs.geometry.openings import boundary_loops
    v = avatar.positions["Wolf3D_Head"][0]
    faces = _indices(g, binary, g["meshes"][0]["primitives"][0])
    points, welded = np.unique(np.round(v, 6), axis=0, return_inverse=True)
    loops = boundary_loops(welded.ravel()[faces])
    assert len(loops) == 2                                       # the neck's and the lips'
    mouth = min(loops, key=len)
    assert np.ptp(points[mouth, 0]) > 0.03 and np.ptp(points[mouth, 1]) < 0.02   # a slit, wider than high


def test_vrm_variants(plain):
    g1, _ = af.read_glb(plain["vrm1.vrm"][0])
    vrm1 = g1["extensions"]["VRMC_vrm"]
    assert vrm1["specVersion"] == "1.0" and g1["nodes"][vrm1["humanoid"]["humanBones"]["head"]["node"]]["name"] == "Head"
    bind = vrm1["expressions"]["preset"]["aa"]["morphTargetBinds"][0]
    assert g1["meshes"][g1["nodes"][bind["node"]]["mesh"]]["name"] == "Wolf3D_Head"
    g0, _ = af.read_glb(plain["vrm0.vrm"][0])
    groups = g0["extensions"]["VRM"]["blendShapeMaster"]["blendShapeGroups"]
    assert [grp["presetName"] for grp in groups] == ["a", "joy", "blink_l"]
    # VRM 0.x faces -Z: the nose (the head's largest z in VRM 1.0) is at the smallest z
    v1 = plain["vrm1.vrm"][1].positions["Wolf3D_Head"][0]
    v0 = plain["vrm0.vrm"][1].positions["Wolf3D_Head"][0]
    assert np.allclose(v0, v1 * np.array([-1.0, 1.0, -1.0]), atol=1e-9)


@pytest.mark.skipif(not gltf_validator.available(), reason="the glTF validator needs node and `npm ci`")
def test_avatars_pass_the_khronos_validator(plain):
    reports = gltf_validator.validate(*(p for p, _ in plain.values()))
    assert [r["errors"] for r in reports] == [0] * len(plain), [r["messages"][:5] for r in reports]


@pytest.mark.skipif(af.encoders_missing() is not None, reason=str(af.encoders_missing()))
def test_real_encoders_write_their_extensions(tmp_path):
    files = af.compressed_avatars(tmp_path)
    expected = {"gltfpack": {"EXT_meshopt_compression", "KHR_mesh_quantization"},
                "gltf_transform_meshopt_webp": {"EXT_meshopt_compression", "KHR_mesh_quantization", "EXT_texture_webp"},
                "gltf_transform_draco": {"KHR_draco_mesh_compression"},
                "vrm1_meshopt_webp": {"EXT_meshopt_compression", "KHR_mesh_quantization", "EXT_texture_webp",
                                      "VRMC_vrm"}}
    for name, extensions in expected.items():
        g, _ = af.read_glb(files[name])
        assert extensions <= set(g.get("extensionsUsed", [])), (name, g.get("extensionsUsed"))
    g, _ = af.read_glb(files["vrm1_meshopt_webp"])
    assert {i["mimeType"] for i in g["images"]} == {"image/webp"}


def _indices(g, binary, prim) -> np.ndarray:
    acc = g["accessors"][prim["indices"]]
    view = g["bufferViews"][acc["bufferView"]]
    dtype = {5123: np.uint16, 5125: np.uint32}[acc["componentType"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    return np.frombuffer(binary, dtype, acc["count"], start).reshape(-1, 3).astype(np.int64)
