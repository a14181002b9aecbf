"""The viewer's colours of a textured avatar: base-colour textures decoded by Pillow (PNG, JPEG, WebP) and
sampled at each triangle's UVs; KTX2 and broken images give the material's flat colour and a note, and the
geometry is read all the same."""
from __future__ import annotations

import json

import numpy as np
import pytest

import avatar_factory as af
from nfs.io import load_mesh, load_mesh_bytes
from nfs.io.gltf_colors import face_colors


def _part_colors(raw, colors, name):
    p = next(p for p in raw.parts if p.mesh_name == name)
    return colors[p.face_offset: p.face_offset + p.face_count].astype(float)


def test_textures_give_each_mesh_its_colours():
    raw = load_mesh_bytes(af.build_avatar().glb(), "avatar.glb")
    colors, notes = face_colors(raw)
    assert colors.shape == (raw.n_faces, 3) and not notes
    skin, outfit = _part_colors(raw, colors, "Wolf3D_Head"), _part_colors(raw, colors, "Wolf3D_Outfit_Top")
    assert abs(skin.mean(0) - (205, 160, 140)).max() < 15          # the JPEG's skin tone
    assert abs(outfit.mean(0) - (40, 80, 150)).max() < 15          # the PNG's blue
    glasses = _part_colors(raw, colors, "Wolf3D_Glasses")
    assert glasses.max() < 20                                       # untextured: its baseColorFactor


def test_broken_and_ktx2_textures_are_flat_and_said(tmp_path):
    avatar = af.build_avatar(af.AvatarSpec(broken_texture=True))
    raw = load_mesh_bytes(avatar.glb(), "broken.glb")
    colors, notes = face_colors(raw)
    assert any("outfit could not be decoded" in n and "geometry is unaffected" in n for n in notes), notes
    assert abs(_part_colors(raw, colors, "Wolf3D_Outfit_Top").mean(0) - 255).max() < 1   # white factor
    # a KTX2 image (the header is enough to be recognised; its bytes are kept, never decoded)
    g = json.loads(json.dumps(avatar.gltf))
    g["images"][5]["mimeType"] = "image/ktx2"
    g["extensionsUsed"] = ["KHR_texture_basisu"]
    g["extensionsRequired"] = ["KHR_texture_basisu"]
    g["textures"][5] = {"extensions": {"KHR_texture_basisu": {"source": 5}}}
    raw = load_mesh_bytes(af.glb_bytes(g, avatar.binary), "ktx2.glb")
    _, notes = face_colors(raw)
    assert any("KTX2" in n for n in notes), notes


@pytest.mark.skipif(af.encoders_missing() is not None, reason=str(af.encoders_missing()))
def test_webp_textures_decode(tmp_path):
    src = tmp_path / "a.glb"
    af.write_avatar(src)
    packed = tmp_path / "webp.glb"
    af.gltf_transform("webp", src, packed)
    raw = load_mesh(packed)
    colors, notes = face_colors(raw)
    assert not notes and abs(_part_colors(raw, colors, "Wolf3D_Outfit_Top").mean(0) - (40, 80, 150)).max() < 20
