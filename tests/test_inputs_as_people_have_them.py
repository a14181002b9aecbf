"""Inputs as people have them: compressed glTF written by the real encoders, STL scans, partial UVs,
Live Link takes and zips made by Finder. Each is checked for what a user expects, not only for not crashing."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from scipy.spatial import cKDTree

from nfs import REPO_ROOT
from nfs.io import MeshError, load_clip, load_mesh, load_mesh_bytes

from data_makers import bad_inputs as corpus  # noqa: E402

BAD = REPO_ROOT / "tests" / "data" / "bad"


@pytest.fixture(scope="module")
def head():
    return corpus.head_mesh()


def _same_triangles(raw, v, f, tolerance):
    """Every triangle of the loaded mesh is a triangle of (v, f) with corners within `tolerance`."""
    dist, idx = cKDTree(v).query(raw.vertices)
    assert dist.max() <= tolerance, dist.max()
    loaded = {tuple(sorted(t)) for t in idx[raw.faces].tolist()}
    assert loaded == {tuple(sorted(t)) for t in f.tolist()}


def test_draco_glb_matches_the_uncompressed_mesh_to_its_quantisation(head):
    import DracoPy

    v, f = head
    for bits in (11, 14):
        data = corpus.draco_glb(v, f, quantization_bits=bits)
        assert b"KHR_draco_mesh_compression" in data and len(data) < len(corpus.plain_glb(v, f))
        raw = load_mesh_bytes(data, "head_draco.glb")
        step = np.ptp(v, axis=0).max() / (2**bits - 1)  # Draco quantises on a cube over the largest extent
        _same_triangles(raw, v, f, tolerance=step)
        assert len(raw.vertices) == len(v)
    assert DracoPy.decode(DracoPy.encode(v.astype(np.float32), f.astype(np.uint32))).points.shape == v.shape
    on_disk = load_mesh(BAD / "draco.glb")
    _same_triangles(on_disk, v, f, tolerance=np.ptp(v, axis=0).max() / (2**14 - 1))


def test_meshopt_glb_matches_the_uncompressed_mesh_exactly(head):
    v, f = head
    data = corpus.meshopt_glb(v, f)
    assert b"EXT_meshopt_compression" in data
    raw = load_mesh_bytes(data, "head_meshopt.glb")
    plain = load_mesh_bytes(corpus.plain_glb(v, f), "head.glb")
    np.testing.assert_array_equal(raw.vertices, plain.vertices)  # lossless codec on float32 positions
    _same_triangles(raw, v, f, tolerance=1e-5)
    _same_triangles(load_mesh(BAD / "meshopt.glb"), v, f, tolerance=1e-5)


def test_required_extensions_and_uris_are_named(head, tmp_path):
    v, f = head
    with pytest.raises(MeshError, match="needs the glTF extension KHR_fancy_future_compression"):
        load_mesh_bytes(corpus.plain_glb(v, f, extensions_required=["KHR_fancy_future_compression"]), "x.glb")
    looks = load_mesh_bytes(corpus.plain_glb(v, f, extensions_required=["KHR_materials_unlit"]), "unlit.glb")
    assert len(looks.vertices) == len(v)
    with pytest.raises(MeshError, match="outside the file's folder"):
        load_mesh(BAD / "gltf_outside_uri.gltf")
    with pytest.raises(MeshError, match="scale 0"):
        load_mesh(BAD / "node_scale_zero.glb")


def test_stl_scan_is_merged_before_the_vertex_limit(head):
    from nfs.geometry.remesh import subdivide_midpoint as subdivide

    v, f = head
    for _ in range(2):
        v, f = subdivide(v, f)
    corners = 3 * len(f)
    data = corpus.binary_stl(v, f)
    raw = load_mesh_bytes(data, "scan.stl", max_vertices=corners // 2)  # the corners alone are over the limit
    assert len(raw.vertices) == len(np.unique(v.astype(np.float32), axis=0)) < corners // 2
    _same_triangles(raw, v, f, tolerance=1e-4)
    with pytest.raises(MeshError, match="triangle count"):
        load_mesh_bytes(data[:-50], "cut.stl")


def test_partial_uvs_never_give_nan(tmp_path):
    from nfs.export import export_obj_sequence_zip
    from nfs.pipeline import uv_for_export

    raw = load_mesh(BAD / "partial_uv.obj")
    uv, uv_faces = uv_for_export(raw)
    assert uv is not None and np.isfinite(uv).all()
    export_obj_sequence_zip(tmp_path / "seq.zip", raw.faces, iter([raw.vertices[None]]), uv=uv, uv_faces=uv_faces)
    with zipfile.ZipFile(tmp_path / "seq.zip") as zf:
        text = zf.read(zf.namelist()[0]).decode()
    assert "nan" not in text.lower() and text.count("\nvt ") > 0


def test_misleading_errors_are_fixed():
    for name, expect in (("coordinates_1e200.obj", "coordinates too large"),
                         ("identical_vertices.obj", "all vertices are at the same point"),
                         ("stl_wrong_count.stl", "triangle count")):
        with pytest.raises(MeshError, match=expect):
            load_mesh(BAD / name)


def test_livelink_takes():
    shared = load_clip(BAD / "livelink_shared_timecode.csv")
    assert shared.n_frames == 300 and any("timecode" in w for w in shared.warnings)
    short = load_clip(BAD / "livelink_25_rows_30fps.csv")
    assert short.fps == 30 and abs(short.duration_s - 24 / 30) < 0.05, short.duration_s
    bom = load_clip(BAD / "livelink_bom_no_count.csv")
    assert bom.n_frames > 1 and np.allclose(bom.codes[0], load_clip(BAD / "livelink_no_tongue.csv").codes[0])
    clipped = load_clip(BAD / "livelink_clipped.csv")
    assert clipped.codes.max() <= 1.0 and clipped.codes.min() >= 0.0 and clipped.warnings


def test_cli_prints_clip_warnings(capsys, tmp_path):
    from nfs.__main__ import main as cli_main

    # the target is refused (not a face) after the clip is read: the warning is printed first
    code = cli_main(["retarget", "--target", str(BAD / "cube.obj"), "--clip", str(BAD / "livelink_clipped.csv"),
                     "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "warning: clipped" in err and "Traceback" not in err


def test_finder_zip_and_two_takes():
    clip = load_clip(BAD / "macos_finder.zip")
    assert clip.n_frames == 2
    with pytest.raises(ValueError, match="2 take folders") as err:
        load_clip(BAD / "two_takes.zip")
    assert "take_a" in str(err.value) and "take_b" in str(err.value)


def test_declared_sizes_are_checked_before_allocating():
    import tracemalloc

    tracemalloc.start()
    for name in ("huge_header.npz", "ply_huge_count.ply"):
        with pytest.raises(ValueError, match="declares"):
            (load_clip if name.endswith(".npz") else load_mesh)(BAD / name)
    assert tracemalloc.get_traced_memory()[1] < 50e6
    tracemalloc.stop()


def test_manifest_has_every_issue17_case():
    manifest = json.loads((BAD / "MANIFEST.json").read_text())
    names = {c["file"] for c in manifest["cases"]}
    for name in ("draco.glb", "meshopt.glb", "head_with_torso.obj", "cube.obj", "sphere.obj", "flat_disk.obj",
                 "single_triangle.obj", "partial_uv.obj", "livelink_semicolon.csv", "two_takes.zip",
                 "macos_finder.zip", "huge_header.npz", "stl_wrong_count.stl", "node_scale_zero.glb"):
        assert name in names, name
    assert len(manifest["cases"]) >= 70
