"""Exports: OBJ-sequence zip, animated GLB, rig GLB, preview video."""
from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest
import trimesh

from nfs import export as E
from glb_reader import read_glb_frames, read_glb_mesh, read_rig_glb
from nfs.geometry.triangulate import fan_triangulate
from nfs.ict import EXPRESSION_NAMES, load_ict

IDX = {n: i for i, n in enumerate(EXPRESSION_NAMES)}


@pytest.fixture(scope="module")
def face():
    """Narrow-face ICT mesh (cm) with per-corner UVs and a short clip of frames (T, V, 3)."""
    m = load_ict()
    n_v = m.region_vertex_count("narrow_face")
    tri_v, _ = fan_triangulate(m.poly_counts, m.poly_indices)
    tri_uv, _ = fan_triangulate(m.poly_counts, m.poly_uv_indices)
    keep = (tri_v < n_v).all(1)
    t = np.linspace(0, 1, 12)
    codes = np.zeros((12, 53), np.float32)
    codes[:, IDX["jawOpen"]] = np.sin(np.pi * t)
    codes[:, IDX["mouthSmile_L"]] = t
    codes[:, IDX["eyeBlink_R"]] = 1 - t
    return {
        "neutral": m.vertices(None, None, n_v), "faces": tri_v[keep], "uv": m.uv, "uv_faces": tri_uv[keep],
        "frames": m.vertices(None, codes, n_v), "deltas": m.expression_deltas[:, :n_v],
    }


def seam_quad():
    """Two triangles sharing an edge whose UVs differ on each side (a seam), plus one unused vertex."""
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [5, 5, 5]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 0], [0.5, 0], [0.5, 0.5], [0.6, 0.5], [0.1, 0.5], [0.6, 0]], np.float32)
    uv_f = np.array([[0, 1, 2], [5, 3, 4]])
    return v, f, uv, uv_f


def rel_err(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def chunks(frames, size=5):
    for s in range(0, len(frames), size):
        yield frames[s:s + size]


# ---------------------------------------------------------------------------------------------- OBJ zip


def test_obj_zip_trimesh_round_trip_with_uv(tmp_path, face):
    frames, faces = face["frames"], face["faces"]
    per_vertex_uv = np.random.default_rng(0).uniform(0, 1, (len(face["neutral"]), 2)).astype(np.float32)
    n = E.export_obj_sequence_zip(tmp_path / "seq.zip", faces, chunks(frames), uv=per_vertex_uv)
    assert n == len(frames)
    with zipfile.ZipFile(tmp_path / "seq.zip") as zf:
        names = zf.namelist()
        assert names[0] == "frame_00000.obj" and len(names) == len(frames)
        for k in (0, len(frames) // 2, len(frames) - 1):
            mesh = trimesh.load(io.BytesIO(zf.read(names[k])), file_type="obj", process=False, maintain_order=True)
            np.testing.assert_allclose(mesh.vertices, frames[k], atol=1e-5)
            assert np.array_equal(mesh.faces, faces)
            np.testing.assert_allclose(mesh.visual.uv, per_vertex_uv, atol=1e-5)


def test_obj_zip_per_corner_uv(tmp_path):
    v, f, uv, uv_f = seam_quad()
    E.export_obj_sequence_zip(tmp_path / "q.zip", f, v[None], uv=uv, uv_faces=uv_f)
    text = zipfile.ZipFile(tmp_path / "q.zip").read("frame_00000.obj").decode()
    assert text.count("\nvt ") + text.startswith("vt ") == len(uv)
    assert "f 1/6 3/4 4/5" in text
    mesh = trimesh.load(io.BytesIO(text.encode()), file_type="obj", process=False)
    assert len(mesh.faces) == 2


def test_obj_zip_rejects_bad_chunks(tmp_path, face):
    bad = [face["frames"][:3], face["frames"][:2, :-1]]
    with pytest.raises(ValueError, match="expected"):
        E.export_obj_sequence_zip(tmp_path / "bad.zip", face["faces"], bad)
    assert not (tmp_path / "bad.zip").exists() and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- animated GLB


def test_animated_glb_round_trip(tmp_path, face):
    frames = face["frames"]
    T = len(frames)
    info = E.export_animated_glb(tmp_path / "a.glb", face["neutral"], face["faces"], chunks(frames), 30.0,
                                 uv=face["uv"], uv_faces=face["uv_faces"], n_frames=T)
    assert info.n_targets == T and info.note == "" and info.interpolation == "LINEAR"
    idx = [0, T // 2, T - 1]
    got = read_glb_frames(tmp_path / "a.glb", idx)
    for g, k in zip(got, idx):
        assert rel_err(g, frames[k]) < 1e-4
    scene = trimesh.load(tmp_path / "a.glb")
    geom = list(scene.geometry.values())[0]
    assert len(geom.faces) == len(face["faces"])


def test_animated_glb_structure(tmp_path, face):
    frames = face["frames"][:4]
    E.export_animated_glb(tmp_path / "s.glb", face["neutral"], face["faces"], frames, 24.0, interpolation="STEP")
    data = (tmp_path / "s.glb").read_bytes()
    magic, version, length = struct.unpack("<4sII", data[:12])
    assert magic == b"glTF" and version == 2 and length == len(data) and length % 4 == 0
    (json_len,) = struct.unpack("<I", data[12:16])
    doc = json.loads(data[20:20 + json_len])
    prim = doc["meshes"][0]["primitives"][0]
    assert len(prim["targets"]) == 4 and doc["meshes"][0]["extras"]["targetNames"][3] == "frame_00003"
    for t in prim["targets"] + [prim["attributes"]]:
        acc = doc["accessors"][t["POSITION"]]
        assert acc["componentType"] == 5126 and len(acc["min"]) == 3 and len(acc["max"]) == 3
    sampler = doc["animations"][0]["samplers"][0]
    assert sampler["interpolation"] == "STEP"
    assert doc["animations"][0]["channels"][0]["target"] == {"node": 0, "path": "weights"}
    times = doc["accessors"][sampler["input"]]
    assert times["count"] == 4 and times["max"][0] == pytest.approx(3 / 24)
    got = read_glb_frames(tmp_path / "s.glb", [0, 1, 2, 3])
    assert max(rel_err(g, f) for g, f in zip(got, frames)) < 1e-6


def test_animated_glb_sparse_keys(tmp_path, face):
    frames = np.concatenate([face["frames"]] * 3)  # 36 frames
    T = len(frames)
    info = E.export_animated_glb(tmp_path / "k.glb", face["neutral"], face["faces"], frames, 30.0,
                                 max_morph_targets=8, interpolation="STEP")
    assert info.n_targets <= 8 and info.key_frames[0] == 0 and info.key_frames[-1] == T - 1
    assert "keyed every" in info.note and info.interpolation == "LINEAR"
    got = read_glb_frames(tmp_path / "k.glb", info.key_frames)
    assert max(rel_err(g, frames[k]) for g, k in zip(got, info.key_frames)) < 1e-6
    a, b = info.key_frames[1], info.key_frames[2]
    mid = (a + b) // 2
    w = (mid - a) / (b - a)
    expect = (1 - w) * frames[a] + w * frames[b]  # LINEAR between neighbouring keys
    assert rel_err(read_glb_frames(tmp_path / "k.glb", [mid])[0], expect) < 1e-5
    # a one-shot generator of unknown length still respects the cap (the stride doubles)
    info2 = E.export_animated_glb(tmp_path / "g.glb", face["neutral"], face["faces"], chunks(frames, 7), 30.0,
                                  max_morph_targets=8)
    assert 2 <= info2.n_targets <= 8 and info2.key_frames[-1] == T - 1
    got = read_glb_frames(tmp_path / "g.glb", info2.key_frames)
    assert max(rel_err(g, frames[k]) for g, k in zip(got, info2.key_frames)) < 1e-6


def test_glb_seam_split_keeps_original_order(tmp_path):
    v, f, uv, uv_f = seam_quad()
    frames = np.stack([v, v + [0, 0, 0.5], v * 1.5])
    E.export_animated_glb(tmp_path / "q.glb", v, f, frames, 30.0, uv=uv, uv_faces=uv_f)
    m = read_glb_mesh(tmp_path / "q.glb")
    assert m.neutral.shape == v.shape and np.array_equal(m.faces, f)
    np.testing.assert_allclose(read_glb_frames(tmp_path / "q.glb", [0, 1, 2]), frames, atol=1e-6)
    assert len(m.uv) == 7  # 4 corners of the seam edge split into 2 + 2 copies, plus the loose vertex


# ---------------------------------------------------------------------------------------------- rig


def test_rig_glb(tmp_path, face):
    names = E.export_rig_glb(tmp_path / "rig.glb", face["neutral"], face["faces"], face["deltas"],
                             uv=face["uv"], uv_faces=face["uv_faces"])
    assert len(names) == 53 and len(set(names)) == 53
    for expect in ("eyeBlinkLeft", "jawOpen", "mouthSmileRight", "browInnerUp_L", "browInnerUp_R", "cheekPuff_L",
                   "noseSneerRight"):
        assert expect in names
    neutral, faces, deltas, read_names = read_rig_glb(tmp_path / "rig.glb")
    assert read_names == names and deltas.shape == face["deltas"].shape and np.array_equal(faces, face["faces"])
    m = load_ict()
    for k in (IDX["jawOpen"], IDX["browInnerUp_R"], 52):
        shape = m.vertices(None, np.eye(53, dtype=np.float32)[k], len(neutral))
        np.testing.assert_allclose(neutral + deltas[k], shape, atol=1e-5)
    doc = trimesh.load(tmp_path / "rig.glb")
    assert len(doc.geometry) == 1


def test_rig_glb_merged_pairs(tmp_path, face):
    names = E.export_rig_glb(tmp_path / "rig51.glb", face["neutral"], face["faces"], face["deltas"],
                             merge_split_pairs=True)
    assert len(names) == 51 and "browInnerUp" in names and "browInnerUp_L" not in names
    _, _, deltas, _ = read_rig_glb(tmp_path / "rig51.glb")
    d = face["deltas"]
    puff = d[IDX["cheekPuff_L"]] + d[IDX["cheekPuff_R"]]
    np.testing.assert_allclose(deltas[names.index("cheekPuff")], puff, atol=1e-6)
    np.testing.assert_allclose(deltas[names.index("jawOpen")], d[IDX["jawOpen"]], atol=0)


# ---------------------------------------------------------------------------------------------- preview


def _render_fn(faces, size=64):
    """The colleague's renderer when it is importable, else vertices drawn as dots (odd size on purpose)."""
    try:
        from nfs.render import render_shaded

        return lambda v: render_shaded(v, faces, size=size)
    except ImportError:
        def draw(v):
            img = np.zeros((size + 1, size + 3, 3), np.uint8)
            xy = (v[:, :2] - v[:, :2].min(0)) / np.ptp(v[:, :2], axis=0).max()
            img[(size - xy[:, 1] * size).astype(int), (xy[:, 0] * size).astype(int)] = 255
            return img

        return draw


def test_preview_video_mp4_and_gif(tmp_path, face):
    import imageio.v3 as iio

    images = (np.full((33, 47, 3), 20 * i, np.uint8) for i in range(6))
    out = E.export_preview_video(tmp_path / "p.mp4", images, 12)
    assert out.suffix == ".mp4"
    video = iio.imread(out)
    assert video.shape[1:] == (34, 48, 3) and len(video) == 6
    batch = np.zeros((2, 16, 16, 3), np.uint8)
    batch[1] = 200  # Pillow merges identical consecutive GIF frames, so make them differ
    gif = E.export_preview_video(tmp_path / "p.gif", [batch], 10)
    assert gif.suffix == ".gif" and iio.imread(gif).shape[0] == 2
    rendered = E.export_preview_video(tmp_path / "r.mp4", chunks(face["frames"][:4], 2), 30,
                                      render_fn=_render_fn(face["faces"]))
    assert len(iio.imread(rendered)) == 4
