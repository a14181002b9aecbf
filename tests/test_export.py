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
from glb_reader import _weights_at, read_glb_frames, read_glb_mesh, read_rig_glb
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


def test_obj_zip_members_check_and_reuse_the_faces(tmp_path, face):
    """Every member passes the zip's CRC check, with the same face lines, and the vertex lines read back as the
    %.6f values (shared tail deflated once, vertex lines as fixed-point text)."""
    frames = face["frames"] * np.float32(3.7) - np.float32(12.0)        # negatives and two integer digits
    E.export_obj_sequence_zip(tmp_path / "c.zip", face["faces"], frames, uv=face["uv"], uv_faces=face["uv_faces"])
    with zipfile.ZipFile(tmp_path / "c.zip") as zf:
        assert zf.testzip() is None
        texts = [zf.read(n).decode() for n in zf.namelist()]
    tails = {t[t.index("\nvt "):] for t in texts}
    assert len(tails) == 1
    for k, text in enumerate(texts):
        rows = [ln.split() for ln in text.splitlines() if ln.startswith("v ")]
        assert all(len(r) == 4 for r in rows)
        np.testing.assert_allclose(np.array([r[1:] for r in rows], float), frames[k], atol=5.1e-7, rtol=0)
        assert [r[1:] for r in rows[:50]] == [[f"{x:.6f}".replace("-0.000000", "0.000000") for x in v]
                                                for v in frames[k, :50].astype(np.float64)]


def test_fixed_point_text_reads_back_as_printf():
    from nfs.io.fixed_point import fixed_point_rows
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 3)) * rng.choice([1e-5, 1.0, 100.0, 1e5], size=(2000, 1))
    x[:3] = [[0.0, -0.0, -1e-9], [-12.5, 0.5, 999999.0], [-9.5, -10.0, -99.5]]
    for group in (None, 1, 7, 2000):
        parts = fixed_point_rows(x, b"v ", 6, group=group)
        assert len(parts) == (1 if group is None else -(-2000 // group))
        lines = b"".join(parts).decode().splitlines()
        assert [ln.split() for ln in lines] == [
            ["v"] + [f"{a:.6f}".replace("-0.000000", "0.000000") for a in row] for row in x]
    with pytest.raises(ValueError, match="too large"):
        fixed_point_rows(np.array([[1e12, 0.0]]), b"", 6)


def test_zip_stream_crc_shift_and_zip64(tmp_path):
    """The CRC of a concatenation from its parts, and an archive of more than 65,535 members (ZIP64 end
    records) read by Python's zipfile and by unzip."""
    import shutil
    import subprocess
    import zlib

    from nfs.io.zip_stream import Crc32Shift, ZipStreamWriter
    rng = np.random.default_rng(0)
    for n in (0, 1, 5, 300):
        shift = Crc32Shift(n)
        for m in (0, 1, 17, 1000):
            a, b = rng.bytes(m), rng.bytes(n)
            assert shift(zlib.crc32(a), zlib.crc32(b)) == zlib.crc32(a + b)
    path = tmp_path / "many.zip"
    with open(path, "wb") as f:
        w = ZipStreamWriter(f, b"f 1 2 3\n")
        for i in range(70000):
            head = f"v {i} 0 0\n".encode()
            w.add(f"m{i:05d}.obj", len(head), *w.deflate_head(head))
        w.close()
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert len(names) == 70000 and zf.read("m69999.obj") == b"v 69999 0 0\nf 1 2 3\n"
        assert zf.testzip() is None
    if shutil.which("unzip"):
        assert subprocess.run(["unzip", "-tqq", str(path)], capture_output=True).returncode == 0


# ---------------------------------------------------------------------------------------------- animated GLB


def test_animated_glb_round_trip(tmp_path, face):
    frames = face["frames"]
    T = len(frames)
    tol = 1e-3  # cm: 0.01 mm
    info = E.export_animated_glb(tmp_path / "a.glb", face["neutral"], face["faces"], chunks(frames), 30.0,
                                 uv=face["uv"], uv_faces=face["uv_faces"], tolerance=tol, mm_per_unit=10.0)
    assert info.n_frames == T and 1 <= info.n_targets < T
    assert info.max_error <= tol and info.max_error_mm == pytest.approx(10 * info.max_error)
    got = read_glb_frames(tmp_path / "a.glb", range(T))   # every frame is keyed
    err = np.linalg.norm(got - frames, axis=-1).max()
    assert err <= tol * 1.01 and err == pytest.approx(info.max_error, rel=0.05, abs=1e-6)
    scene = trimesh.load(tmp_path / "a.glb")
    geom = list(scene.geometry.values())[0]
    assert len(geom.faces) == len(face["faces"])


def test_animated_glb_structure(tmp_path, face):
    frames = face["frames"][:4]
    info = E.export_animated_glb(tmp_path / "s.glb", face["neutral"], face["faces"], frames, 24.0,
                                 extras={"source": "test"})
    data = (tmp_path / "s.glb").read_bytes()
    magic, version, length = struct.unpack("<4sII", data[:12])
    assert magic == b"glTF" and version == 2 and length == len(data) and length % 4 == 0
    (json_len,) = struct.unpack("<I", data[12:16])
    doc = json.loads(data[20:20 + json_len])
    prim = doc["meshes"][0]["primitives"][0]
    k = info.n_targets
    assert len(prim["targets"]) == k and doc["meshes"][0]["extras"]["targetNames"][0] == "basis_000"
    for t in prim["targets"] + [prim["attributes"]]:
        acc = doc["accessors"][t["POSITION"]]
        assert acc["componentType"] == 5126 and len(acc["min"]) == 3 and len(acc["max"]) == 3
    sampler = doc["animations"][0]["samplers"][0]
    assert sampler["interpolation"] == "LINEAR"
    assert doc["animations"][0]["channels"][0]["target"] == {"node": 0, "path": "weights"}
    times = doc["accessors"][sampler["input"]]
    assert times["count"] == 4 and times["max"][0] == pytest.approx(3 / 24)
    weights = doc["accessors"][sampler["output"]]
    assert weights["count"] == 4 * k
    for extras in (doc["extras"]["animation"], doc["animations"][0]["extras"]):
        assert extras["n_frames"] == 4 and extras["max_error"] == pytest.approx(info.max_error)
    assert doc["extras"]["source"] == "test"
    got = read_glb_frames(tmp_path / "s.glb", [0, 1, 2, 3])
    assert np.linalg.norm(got - frames, axis=-1).max() <= info.tolerance * 1.01
    # between keys the LINEAR weights give the blend of the neighbouring frames
    m = read_glb_mesh(tmp_path / "s.glb")
    w = _weights_at(m.animation, 1.5 / 24)
    mid = m.neutral + np.tensordot(w, m.targets, axes=(0, 0))
    assert rel_err(mid, 0.5 * (got[1] + got[2])) < 1e-5


def test_animated_glb_keeps_every_frame_of_a_long_take(tmp_path, face):
    """600 frames (the old writer kept 1 in 3 here) with a blink that lasts one frame: every frame within the
    bound, the blink included, on a basis far smaller than the frame count."""
    rng = np.random.default_rng(0)
    m = load_ict()
    n_v = len(face["neutral"])
    T = 600
    codes = np.zeros((T, 53), np.float32)
    t = np.arange(T) / 30
    codes[:, IDX["jawOpen"]] = 0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t)
    codes[:, IDX["mouthSmile_L"]] = rng.uniform(0, 1, T).cumsum() % 1
    codes[401, IDX["eyeBlink_L"]] = codes[401, IDX["eyeBlink_R"]] = 1.0
    frames = m.vertices(None, codes, n_v)
    tol = 0.005  # cm
    info = E.export_animated_glb(tmp_path / "long.glb", face["neutral"], face["faces"], chunks(frames, 37), 30.0,
                                 tolerance=tol)
    assert info.n_frames == T and info.n_targets <= 20 and info.max_error <= tol
    idx = [0, 400, 401, 402, T - 1]
    got = read_glb_frames(tmp_path / "long.glb", idx)
    assert np.linalg.norm(got - frames[idx], axis=-1).max() <= tol * 1.01
    blink = np.linalg.norm(frames[401] - frames[400], axis=-1).max()
    assert blink > 0.3  # the blink is there (cm), and kept
    # a still take: no motion at all still gives a valid animation of the right length
    still = np.broadcast_to(face["neutral"], (5,) + face["neutral"].shape)
    info = E.export_animated_glb(tmp_path / "still.glb", face["neutral"], face["faces"], still, 30.0)
    assert info.n_frames == 5 and info.max_error == 0.0
    np.testing.assert_allclose(read_glb_frames(tmp_path / "still.glb", [4])[0], face["neutral"], atol=1e-6)


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


# ---------------------------------------------------------------------------------------------- validator


def test_khronos_validator_finds_no_errors(tmp_path, face):
    """Every kind of GLB written here (animated with per-corner UVs split at seams, animated without UVs, a still
    take, the rig, the merged-pair rig) passes the Khronos glTF validator with 0 errors (run when node and the
    npm package are installed: `npm ci` in the repository root)."""
    import gltf_validator
    if not gltf_validator.available():
        pytest.skip("glTF validator not installed (node + `npm ci`)")
    v, f, uv, uv_f = seam_quad()
    still = np.broadcast_to(face["neutral"], (3,) + face["neutral"].shape)
    E.export_animated_glb(tmp_path / "uv.glb", face["neutral"], face["faces"], face["frames"], 30.0, uv=face["uv"],
                          uv_faces=face["uv_faces"], mm_per_unit=10.0)
    E.export_animated_glb(tmp_path / "plain.glb", face["neutral"], face["faces"], chunks(face["frames"]), 60.0)
    E.export_animated_glb(tmp_path / "still.glb", face["neutral"], face["faces"], still, 24.0)
    E.export_animated_glb(tmp_path / "seam.glb", v, f, np.stack([v, v * 1.5]), 30.0, uv=uv, uv_faces=uv_f)
    E.export_rig_glb(tmp_path / "rig.glb", face["neutral"], face["faces"], face["deltas"], uv=face["uv"],
                     uv_faces=face["uv_faces"])
    E.export_rig_glb(tmp_path / "rig51.glb", face["neutral"], face["faces"], face["deltas"], merge_split_pairs=True)
    reports = gltf_validator.validate(*sorted(tmp_path.glob("*.glb")))
    assert len(reports) == 6
    for rep in reports:
        assert rep["errors"] == 0, rep


def test_files_get_the_umask_permissions(tmp_path, face):
    import os
    old = os.umask(0o027)
    try:
        E.export_animated_glb(tmp_path / "a.glb", face["neutral"], face["faces"], face["frames"][:3], 30.0)
        E.export_rig_glb(tmp_path / "r.glb", face["neutral"], face["faces"], face["deltas"][:2], ["a", "b"])
        E.export_obj_sequence_zip(tmp_path / "o.zip", face["faces"], face["frames"][:2])
        E.export_preview_video(tmp_path / "p.mp4", (np.zeros((16, 16, 3), np.uint8) for _ in range(2)), 10)
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {
        n: 0o640 for n in ("a.glb", "r.glb", "o.zip", "p.mp4")}
