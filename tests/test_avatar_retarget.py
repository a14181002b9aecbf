"""The avatar through the whole product: `python -m nfs retarget` on a Ready Player Me-like GLB writes the avatar
back (the default export for glTF / VRM) with the 52 ARKit targets made from the shipped model's rig, tongueOut
from the tongue part, and the clip's ARKit weights as its animation; the rig GLB has exactly the 52 ARKit names."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import avatar_factory as af
from glb_reader import read_rig_glb
from nfs import REPO_ROOT
from nfs.arkit import ARKIT_NAMES, ict_to_arkit_weights
from nfs.ict import EXPRESSION_NAMES
from nfs.io import load_mesh, save_codes_csv
from nfs.io.gltf_document import read_document


@pytest.mark.slow
def test_cli_retargets_an_avatar_and_writes_it_back(tmp_path):
    target = tmp_path / "avatar.glb"
    af.write_avatar(target)
    codes = np.zeros((6, 53))
    for name, peak in (("jawOpen", 0.8), ("mouthSmile_L", 0.6), ("browInnerUp_L", 0.5), ("browInnerUp_R", 0.3)):
        codes[:, EXPRESSION_NAMES.index(name)] = peak * np.linspace(0, 1, 6)
    clip = tmp_path / "talk.csv"
    save_codes_csv(clip, codes)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "nfs", "retarget", "--target", str(target), "--clip", str(clip),
                          "--out", str(out), "--exports", "rig,avatar", "--device", "cpu"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "tongueOut" not in run.stdout           # the avatar has a tongue part: no note about an empty tongueOut
    result = out / "avatar_talk_avatar.glb"
    assert result.is_file() and "avatar: " in run.stdout
    _, _, deltas, names = read_rig_glb(out / "avatar_rig.glb")
    assert names == list(ARKIT_NAMES) and deltas.shape[0] == 52
    g, _ = af.read_glb(result)
    doc = read_document(result, result.name)
    meshes = {m["name"]: m for m in g["meshes"]}
    head = meshes["Wolf3D_Head"]
    assert set(ARKIT_NAMES) <= set(head["extras"]["targetNames"]) and head["extras"]["targetNames"][:2] == \
        ["mouthOpen", "mouthSmile"]
    assert len(g["materials"]) == 7 and len(g["images"]) == 7 and len(g["skins"]) == 1
    # the jaw opens the head and moves the lower teeth; the tongue part carries tongueOut
    raw = load_mesh(result)
    parts = {(p.mesh_name, p.primitive): p for p in raw.parts}

    def target_of(mesh, prim, name):
        t = meshes[mesh]["extras"]["targetNames"].index(name)
        return doc.accessor(meshes[mesh]["primitives"][prim]["targets"][t]["POSITION"])

    assert np.linalg.norm(target_of("Wolf3D_Head", 0, "jawOpen"), axis=1).max() > 0.005      # metres
    lower, upper = target_of("Wolf3D_Teeth", 1, "jawOpen"), target_of("Wolf3D_Teeth", 0, "jawOpen")
    assert np.linalg.norm(lower, axis=1).mean() > 5 * np.linalg.norm(upper, axis=1).mean()
    assert np.linalg.norm(target_of("Wolf3D_Tongue", 0, "tongueOut"), axis=1).max() > 0.005
    assert not target_of("Wolf3D_Head", 0, "tongueOut").any()
    # the animation is the clip's ARKit weights, frame by frame
    anim = next(a for a in g["animations"] if a["name"] == "talk")
    node = next(i for i, n in enumerate(g["nodes"]) if n.get("name") == "Wolf3D_Head")
    sampler = anim["samplers"][next(c["sampler"] for c in anim["channels"] if c["target"]["node"] == node)]
    weights = doc.accessor(sampler["output"]).reshape(6, -1)
    expected = ict_to_arkit_weights(codes)
    for k, name in enumerate(ARKIT_NAMES):
        np.testing.assert_allclose(weights[:, head["extras"]["targetNames"].index(name)], expected[:, k], atol=1e-6)
    assert parts[("Wolf3D_Head", 0)].skinned


@pytest.mark.slow
@pytest.mark.skipif(af.encoders_missing() is not None, reason=str(af.encoders_missing()))
def test_a_compressed_vrm_retargets_and_stays_a_vrm(tmp_path):
    """A VRM 1.0 compressed like a VRoid export (meshopt + quantization + WebP) through the Python API."""
    from nfs.io import load_builtin_clip
    from nfs.pipeline import load_shipped_model, retarget
    import dataclasses
    plain = tmp_path / "plain.glb"
    af.write_avatar(plain, af.AvatarSpec(vrm="1.0"))
    packed = tmp_path / "packed.glb"
    af.gltf_transform("optimize", plain, packed, *af.VROID_LIKE)
    vrm = tmp_path / "vroid.vrm"
    af.attach_vrm(packed, vrm, "1.0")
    clip = load_builtin_clip("jaw_open_full")
    clip = dataclasses.replace(clip, codes=clip.codes[:8])
    r = retarget(load_mesh(vrm), clip, tmp_path / "out", model=load_shipped_model(None)[0], exports=("avatar",))
    assert r.exports["avatar"].suffix == ".vrm"
    assert any("meshopt" in n for n in r.notes)
    g, _ = af.read_glb(r.exports["avatar"])
    g_in, _ = af.read_glb(vrm)
    vrm, vrm_in = g["extensions"]["VRMC_vrm"], g_in["extensions"]["VRMC_vrm"]
    assert vrm["expressions"]["preset"] == vrm_in["expressions"]["preset"] and vrm["humanoid"] == vrm_in["humanoid"]
    assert set(ARKIT_NAMES) <= set(vrm["expressions"]["custom"])                   # perfect sync
    assert {i["mimeType"] for i in g["images"]} == {"image/webp"} and "KHR_mesh_quantization" in g["extensionsUsed"]
    head = next(m for m in g["meshes"] if m["name"] == "Wolf3D_Head")
    assert set(ARKIT_NAMES) <= set(head["extras"]["targetNames"])
