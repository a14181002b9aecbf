"""The avatar export: the user's glTF / VRM back whole (nodes, meshes, materials, image bytes, skins, animations,
existing targets, VRM extensions), plus the 52 ARKit targets in each primitive's bind space and the clip as a
weights animation; for plain files and for the real encoders' outputs."""
from __future__ import annotations

import numpy as np
import pytest

import avatar_factory as af
import gltf_validator
from nfs.arkit import ARKIT_NAMES, VISEME_NAMES
from nfs.avatar_export import export_avatar
from nfs.io import MeshError, load_mesh, load_mesh_bytes
from nfs.io.gltf_document import read_document

HEAD_CENTRE = np.array([0.0, 1.58, 0.0])


def synthetic_shapes(raw, seed: int = 0) -> np.ndarray:
    """(52, V, 3) smooth deltas (m) on the vertices within 13 cm of the head's centre; tongueOut empty."""
    v = raw.vertices
    near = (np.linalg.norm(v - HEAD_CENTRE, axis=1) < 0.13) & (v[:, 1] > 1.47)
    k = np.arange(1, 53, dtype=np.float64)[:, None]
    field = np.stack([np.sin(k * v[:, 0] * 40 + seed), np.cos(k * v[:, 1] * 30), np.sin(k * v[:, 2] * 20 + k)], -1)
    shapes = 0.002 * field * near[None, :, None]
    shapes[ARKIT_NAMES.index("tongueOut")] = 0.0
    return shapes.astype(np.float32)


def clip_weights(n_frames: int = 12) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 1, (n_frames, 52)).astype(np.float32)


def world_target(doc, raw_out, part, name: str) -> np.ndarray:
    """The exported target `name` of one part, mapped back to world space by the reader's bind-space map."""
    mesh = doc.json["meshes"][part.mesh]
    t = mesh["extras"]["targetNames"].index(name)
    local = doc.accessor(doc.primitive(part.mesh, part.primitive)["targets"][t]["POSITION"])
    return np.einsum("nij,nj->ni", part.linear, local) if part.linear.ndim == 3 else local @ part.linear.T


def check_round_trip(out_path, raw_in, shapes, names=ARKIT_NAMES, atol=4e-6):
    """Every moving part carries `names` and gives back the world deltas it was given."""
    raw_out = load_mesh(out_path)
    doc = read_document(out_path, out_path.name)
    np.testing.assert_allclose(raw_out.vertices, raw_in.vertices, atol=1e-9)   # the base geometry is untouched
    moved = 0
    for part in raw_out.parts:
        rows = slice(part.vertex_offset, part.vertex_offset + part.vertex_count)
        if np.abs(shapes[:, rows]).max(initial=0) == 0:
            continue
        moved += 1
        mesh_names = doc.json["meshes"][part.mesh]["extras"]["targetNames"]
        assert set(names) <= set(mesh_names)
        for k in (0, ARKIT_NAMES.index("jawOpen"), 40):
            np.testing.assert_allclose(world_target(doc, raw_out, part, names[k]), shapes[k, rows], atol=atol)
    assert moved >= 3
    return doc


@pytest.fixture(scope="module")
def plain():
    avatar = af.build_avatar()
    data = avatar.glb()
    return avatar, data, load_mesh_bytes(data, "avatar.glb")


def test_plain_avatar_comes_back_whole_with_the_arkit_targets_and_the_clip(plain, tmp_path):
    avatar, data, raw = plain
    shapes, weights = synthetic_shapes(raw), clip_weights()
    out = tmp_path / "avatar_out.glb"
    info = export_avatar(out, data, "avatar.glb", raw, shapes, weights, 30.0, clip_name="talk")
    g_in, bin_in = af.read_glb_bytes(data)
    g, binary = af.read_glb(out)
    # everything of the input is there, byte for byte where it is data
    for key in ("materials", "textures", "samplers", "skins", "scenes"):
        assert g[key] == g_in[key], key
    assert [n for n in g["nodes"]] == g_in["nodes"]
    doc_in, doc = read_document(data, "in.glb"), read_document(out, "out.glb")
    assert [i.get("name") for i in g["images"]] == [i.get("name") for i in g_in["images"]]
    assert [d for _, d in doc.images()] == avatar.images
    np.testing.assert_array_equal(doc.accessor(g["skins"][0]["inverseBindMatrices"]),
                                  doc_in.accessor(g_in["skins"][0]["inverseBindMatrices"]))
    idle_in, idle = g_in["animations"][0], g["animations"][0]
    assert idle["name"] == "Idle" and idle["channels"] == idle_in["channels"]
    for s_in, s in zip(idle_in["samplers"], idle["samplers"]):
        np.testing.assert_array_equal(doc.accessor(s["output"]), doc_in.accessor(s_in["output"]))
    # the head keeps its own targets first (indices unchanged), eyeBlinkLeft replaced in place by ours
    head = next(m for m in g["meshes"] if m["name"] == "Wolf3D_Head")
    names = head["extras"]["targetNames"]
    assert names[:3] == list(af.HEAD_TARGETS) and set(ARKIT_NAMES) <= set(names)
    assert len(names) == 2 + 52 and len(head["weights"]) == len(names)
    assert info.replaced == ["eyeBlinkLeft"] and not info.kept
    head_in = next(m for m in g_in["meshes"] if m["name"] == "Wolf3D_Head")
    for t in (0, 1):
        np.testing.assert_array_equal(doc.accessor(head["primitives"][0]["targets"][t]["POSITION"]),
                                      doc_in.accessor(head_in["primitives"][0]["targets"][t]["POSITION"]))
    teeth = next(m for m in g["meshes"] if m["name"] == "Wolf3D_Teeth")
    assert teeth["extras"]["targetNames"] == list(ARKIT_NAMES)
    assert all(len(p["targets"]) == 52 for p in teeth["primitives"])
    body = next(m for m in g["meshes"] if m["name"] == "Wolf3D_Body")
    assert "targets" not in body["primitives"][0]                  # still meshes get nothing
    assert "Wolf3D_Body" not in info.meshes and "Wolf3D_Head" in info.meshes
    # the clip: one key per frame, the weights exactly the clip's
    talk = g["animations"][-1]
    assert talk["name"] == "talk"
    head_node = next(i for i, n in enumerate(g["nodes"]) if n.get("name") == "Wolf3D_Head")
    channel = next(c for c in talk["channels"] if c["target"]["node"] == head_node)
    assert channel["target"]["path"] == "weights"
    sampler = talk["samplers"][channel["sampler"]]
    np.testing.assert_allclose(doc.accessor(sampler["input"]).ravel(), np.arange(12) / 30.0, atol=1e-7)
    out_w = doc.accessor(sampler["output"]).reshape(12, len(names))
    for k, name in enumerate(ARKIT_NAMES):
        np.testing.assert_array_equal(out_w[:, names.index(name)], weights[:, k])
    assert not out_w[:, :2].any()                                # the file's own targets stay at their weights
    check_round_trip(out, raw, shapes)


def test_keep_existing_targets_and_visemes(plain, tmp_path):
    avatar, data, raw = plain
    out = tmp_path / "keep.glb"
    info = export_avatar(out, data, "avatar.glb", raw, synthetic_shapes(raw), clip_weights(4), 25.0,
                         keep_existing=True, visemes=True)
    assert info.kept == ["eyeBlinkLeft"] and not info.replaced
    g, _ = af.read_glb(out)
    doc, doc_in = read_document(out, "o.glb"), read_document(data, "i.glb")
    head = next(m for m in g["meshes"] if m["name"] == "Wolf3D_Head")
    names = head["extras"]["targetNames"]
    assert names[:3] == list(af.HEAD_TARGETS) and set(VISEME_NAMES) <= set(names) and len(names) == 3 + 51 + 15
    np.testing.assert_array_equal(doc.accessor(head["primitives"][0]["targets"][2]["POSITION"]),
                                  avatar.head_targets["eyeBlinkLeft"])
    # a viseme is its ARKit mix
    raw_out = load_mesh(out)
    part = next(p for p in raw_out.parts if p.mesh_name == "Wolf3D_Head")
    aa = world_target(doc, raw_out, part, "viseme_aa")
    jaw = world_target(doc, raw_out, part, "jawOpen")
    assert np.abs(aa).max() > 0 and not np.allclose(aa, 0.6 * jaw)   # jawOpen plus the lips
    sil = world_target(doc, raw_out, part, "viseme_sil")
    assert not sil.any()
    del doc_in


@pytest.mark.parametrize("name", ["gltfpack", "gltf_transform_meshopt_webp", "gltf_transform_draco",
                                  "vrm1_meshopt_webp", "vrm0"])
def test_compressed_and_vrm_avatars_come_back_valid(compressed, name, tmp_path):
    src = compressed[name]
    raw = load_mesh(src)
    shapes = synthetic_shapes(raw)
    out = tmp_path / f"out{src.suffix}"
    info = export_avatar(out, src.read_bytes(), src.name, raw, shapes, clip_weights(6), 30.0)
    g_in, _ = af.read_glb(src)
    g, _ = af.read_glb(out)
    check_round_trip(out, raw, shapes, atol=2e-6)
    used = set(g.get("extensionsUsed", []))
    assert not used & {"EXT_meshopt_compression", "KHR_meshopt_compression"}
    assert set(g.get("extensionsRequired", [])) <= used
    if "meshopt" in name or name == "gltfpack":
        assert any("meshopt" in n for n in info.notes)
        assert "KHR_mesh_quantization" in used                     # quantized accessors kept as they were
    if name == "gltf_transform_draco":
        assert any("Draco" in n for n in info.notes)
    # image bytes unchanged (WebP included)
    assert [d for _, d in read_document(out, "o").images()] == [d for _, d in read_document(src, "i").images()]
    assert len(g["nodes"]) == len(g_in["nodes"]) and len(g["materials"]) == len(g_in["materials"])
    assert len(g.get("skins", [])) == len(g_in.get("skins", []))
    if name.startswith("vrm1"):
        vrm, vrm_in = g["extensions"]["VRMC_vrm"], g_in["extensions"]["VRMC_vrm"]
        assert vrm["expressions"]["preset"] == vrm_in["expressions"]["preset"]   # same node and target index
        assert {k: v for k, v in vrm.items() if k != "expressions"} == {k: v for k, v in vrm_in.items()
                                                                          if k != "expressions"}
        bind = vrm["expressions"]["preset"]["aa"]["morphTargetBinds"][0]
        assert g["meshes"][g["nodes"][bind["node"]]["mesh"]]["extras"]["targetNames"][bind["index"]] == "mouthOpen"
        # perfect sync: every ARKit name is a custom expression binding that target on the moving meshes
        assert set(ARKIT_NAMES) <= set(vrm["expressions"]["custom"])
        for b in vrm["expressions"]["custom"]["jawOpen"]["morphTargetBinds"]:
            assert g["meshes"][g["nodes"][b["node"]]["mesh"]]["extras"]["targetNames"][b["index"]] == "jawOpen"
        assert any("VRM 1.0" in n for n in info.notes)
    if name == "vrm0":
        vrm, vrm_in = g["extensions"]["VRM"], g_in["extensions"]["VRM"]
        groups, groups_in = vrm["blendShapeMaster"]["blendShapeGroups"], vrm_in["blendShapeMaster"]["blendShapeGroups"]
        assert groups[: len(groups_in)] == groups_in and out.suffix == ".vrm"
        assert [grp["name"] for grp in groups[len(groups_in):]] == list(ARKIT_NAMES)
        jaw = next(grp for grp in groups if grp["name"] == "jawOpen")
        for b in jaw["binds"]:
            assert g["meshes"][b["mesh"]]["extras"]["targetNames"][b["index"]] == "jawOpen"
    if gltf_validator.available():
        report = gltf_validator.validate(out)[0]
        assert report["errors"] == 0, report["messages"][:5]


def test_bad_input_leaves_nothing(plain, tmp_path):
    avatar, data, raw = plain
    out = tmp_path / "x" / "bad.glb"
    still = np.zeros((52, raw.n_vertices, 3), np.float32)
    with pytest.raises(MeshError, match="no mesh of the avatar moves"):
        export_avatar(out, data, "avatar.glb", raw, still, clip_weights(3), 30.0)
    import json
    g = json.loads(json.dumps(avatar.gltf))
    g["extensionsRequired"] = ["EXT_future_geometry"]
    with pytest.raises(MeshError, match="EXT_future_geometry"):
        export_avatar(out, af.glb_bytes(g, avatar.binary), "future.glb", raw, synthetic_shapes(raw),
                      clip_weights(3), 30.0)
    with pytest.raises(ValueError, match="shapes must be"):
        export_avatar(out, data, "avatar.glb", raw, synthetic_shapes(raw)[:10], clip_weights(3), 30.0)
    assert not out.parent.exists() or not any(out.parent.iterdir())


@pytest.mark.skipif(not gltf_validator.available(), reason="the glTF validator needs node and `npm ci`")
def test_plain_export_passes_the_validator(plain, tmp_path):
    avatar, data, raw = plain
    out = tmp_path / "valid.glb"
    export_avatar(out, data, "avatar.glb", raw, synthetic_shapes(raw), clip_weights(5), 30.0, visemes=True)
    report = gltf_validator.validate(out)[0]
    assert report["errors"] == 0, report["messages"][:5]


def test_avatar_export_is_offered_for_gltf_targets_only(tmp_path):
    from nfs.io import save_obj
    from nfs.pipeline import default_exports, retarget
    assert "avatar" in default_exports(30, gltf_target=True) and "avatar" not in default_exports(30)
    obj = tmp_path / "head.obj"
    avatar = af.build_avatar()
    save_obj(obj, avatar.positions["Wolf3D_Glasses"][0], np.array([[0, 1, 2]]))
    from nfs.io import load_builtin_clip
    with pytest.raises(ValueError, match="avatar export writes a glTF / GLB / VRM target back"):
        retarget(obj, load_builtin_clip("talk"), tmp_path / "out", model=None, exports=("avatar",))
    assert load_mesh_bytes(avatar.glb(), "a.glb").is_gltf and not load_mesh(obj).is_gltf
