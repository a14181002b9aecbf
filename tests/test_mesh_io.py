"""Mesh intake on real files: every format round-trips the ICT skin in its vertex order, broken files
give one-line MeshErrors, and clean_mesh counts every repair."""
import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from nfs.geometry.triangulate import fan_triangulate
from nfs.ict import SKIN_VERTEX_COUNT, load_ict
from nfs.io import MeshError, load_mesh, load_mesh_bytes, save_obj, save_ply
from nfs.mesh import clean_mesh


@pytest.fixture(scope="module")
def ict():
    return load_ict()


@pytest.fixture(scope="module")
def skin(ict):
    v, f = ict.skin_mesh(ict.sample_identities(1, seed=3)[0])
    return v.astype(np.float64), f


def _skin_corner_uv(ict):
    """(F, 3, 2) texture coordinates of the skin triangles (the ICT UV layout has seams)."""
    tri_v, _ = fan_triangulate(ict.poly_counts, ict.poly_indices)
    tri_uv, _ = fan_triangulate(ict.poly_counts, ict.poly_uv_indices)
    return ict.uv[tri_uv[(tri_v < ict.skin_count).all(1)]]


# ----------------------------------------------------------------------------- round trips


def test_obj_round_trip_keeps_vertex_order_and_uv_seams(tmp_path, ict, skin):
    v, f = skin
    corner_uv = _skin_corner_uv(ict)
    save_obj(tmp_path / "skin.obj", v, f, uv=corner_uv)
    mesh = load_mesh(tmp_path / "skin.obj")
    assert mesh.vertices.shape == (SKIN_VERTEX_COUNT, 3)
    np.testing.assert_allclose(mesh.vertices, v, rtol=1e-8, atol=1e-7)
    np.testing.assert_array_equal(mesh.faces, f)
    np.testing.assert_allclose(mesh.corner_uv, corner_uv, atol=1e-8)
    assert mesh.uv is None  # seams: no single uv per vertex


def test_obj_per_vertex_uv_and_quads(tmp_path, ict, skin):
    v, _ = skin
    # write the ICT quads by hand: polygons must be fan-triangulated exactly like the model's own faces
    counts, corners = ict.poly_counts, ict.poly_indices
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    is_skin = np.array([corners[s:s + n].max() < ict.skin_count for s, n in zip(starts, counts)])
    uv = (v[:, :2] - v[:, :2].min(0)) / np.ptp(v[:, :2], 0)
    lines = ["v %.9g %.9g %.9g" % tuple(p) for p in v] + ["vt %.9g %.9g" % tuple(t) for t in uv]
    lines += ["f " + " ".join(f"{i + 1}/{i + 1}" for i in corners[s:s + n])
              for s, n, keep in zip(starts, counts, is_skin) if keep]
    (tmp_path / "quads.obj").write_text("\n".join(lines) + "\n")
    mesh = load_mesh(tmp_path / "quads.obj")
    skin_corners = np.concatenate([corners[s:s + n] for s, n, k in zip(starts, counts, is_skin) if k])
    expected, _ = fan_triangulate(counts[is_skin], skin_corners)
    np.testing.assert_array_equal(mesh.faces, expected)
    np.testing.assert_allclose(mesh.uv, uv, atol=1e-8)
    assert mesh.face_polygon.max() == is_skin.sum() - 1
    assert any("triangulated" in note for note in mesh.notes)


def test_obj_negative_indices_and_comments(tmp_path):
    text = "# a quad\no thing\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\ns off\nf -4 -3 -2 -1\n"
    mesh = load_mesh_bytes(text.encode(), "quad.obj")
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])
    # mixed corner formats, tabs, double spaces and relative texture indices take the general parser
    text = ("v 0 0 0\nv 1 0 0\nv 1 1 0 0.5 0.5 0.5\n  v 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvn 0 0 1\n"
            "f 1/1/1  2/2/1 3/3/1\nf\t1//1 3//1 4//1  # comment\nf -4/-4 -2/-2 -1/-1\n")
    mesh = load_mesh_bytes(text.encode(), "mixed.obj")
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [0, 2, 3]])
    np.testing.assert_array_equal(mesh.vertices[2], [1, 1, 0])
    np.testing.assert_array_equal(mesh.corner_uv[0], [[0, 0], [1, 0], [1, 1]])
    # the face without texture indices borrows each vertex's texture coordinate from the faces that name one
    np.testing.assert_array_equal(mesh.corner_uv[1], [[0, 0], [1, 1], [0, 1]])
    assert not np.isnan(mesh.corner_uv).any()
    np.testing.assert_array_equal(mesh.corner_uv[2], [[0, 0], [1, 1], [0, 1]])


def test_ply_stl_off_round_trips(tmp_path, skin):
    v, f = skin
    save_ply(tmp_path / "skin.ply", v, f)
    mesh = load_mesh(tmp_path / "skin.ply")
    np.testing.assert_array_equal(mesh.vertices, v.astype(np.float32))
    np.testing.assert_array_equal(mesh.faces, f)

    tm = trimesh.Trimesh(v, f, process=False)
    (tmp_path / "skin_ascii.ply").write_bytes(trimesh.exchange.ply.export_ply(tm, encoding="ascii"))
    np.testing.assert_allclose(load_mesh(tmp_path / "skin_ascii.ply").vertices, v, atol=1e-6)

    tm.export(tmp_path / "skin.off")
    mesh = load_mesh(tmp_path / "skin.off")
    np.testing.assert_allclose(mesh.vertices, v, atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, f)

    tm.export(tmp_path / "skin.stl")
    mesh = load_mesh(tmp_path / "skin.stl")  # a triangle soup whose coincident corners are merged on reading
    np.testing.assert_allclose(mesh.vertices[mesh.faces], v[f], atol=1e-5)
    assert mesh.n_vertices == SKIN_VERTEX_COUNT
    assert any(f"{3 * len(f):,} corners merged into {SKIN_VERTEX_COUNT:,} vertices" in n for n in mesh.notes)
    cleaned = clean_mesh(mesh.vertices, mesh.faces)
    assert len(cleaned.skin_vertices) == SKIN_VERTEX_COUNT and cleaned.report.n_components == 1


def test_glb_concatenates_geometries_with_scene_transforms(tmp_path, ict):
    v, f = ict.full_mesh()
    eyes = f[(f >= ict.skin_count).all(1)] - ict.skin_count
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.Trimesh(v[:ict.skin_count], ict.region_faces("skin"), process=False), node_name="skin")
    shift = np.eye(4)
    shift[:3, 3] = [1.0, -2.0, 3.0]
    scene.add_geometry(trimesh.Trimesh(v[ict.skin_count:], eyes, process=False), node_name="eyes", transform=shift)
    scene.export(tmp_path / "head.glb")
    mesh = load_mesh(tmp_path / "head.glb")
    assert [(p.name, p.vertex_offset, p.vertex_count) for p in mesh.parts] == [
        ("skin", 0, ict.skin_count), ("eyes", ict.skin_count, len(v) - ict.skin_count)]
    np.testing.assert_allclose(mesh.vertices[:ict.skin_count], v[:ict.skin_count], atol=1e-5)
    np.testing.assert_allclose(mesh.vertices[ict.skin_count:], v[ict.skin_count:] + [1.0, -2.0, 3.0], atol=1e-5)
    np.testing.assert_array_equal(mesh.faces[-len(eyes):], eyes + ict.skin_count)
    same = load_mesh_bytes((tmp_path / "head.glb").read_bytes(), "upload.glb")
    np.testing.assert_array_equal(same.vertices, mesh.vertices)


@settings(max_examples=15, deadline=None)
@given(st.integers(3, 40), st.integers(1, 60), st.integers(0, 2**31 - 1))
def test_obj_round_trip_of_random_meshes(n_vertices, n_faces, seed):
    import tempfile
    from pathlib import Path

    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n_vertices, 3)).astype(np.float32).astype(np.float64) * 10.0 ** rng.integers(-3, 4)
    f = rng.integers(0, n_vertices, size=(n_faces, 3))
    with tempfile.TemporaryDirectory() as d:
        save_obj(Path(d) / "m.obj", v, f)
        if len(np.unique(f)) == 1:            # every face names one vertex: no extent, refused as such
            with pytest.raises(MeshError, match="no extent"):
                load_mesh(Path(d) / "m.obj")
            return
        mesh = load_mesh(Path(d) / "m.obj")
    np.testing.assert_allclose(mesh.vertices, v, rtol=1e-8)
    np.testing.assert_array_equal(mesh.faces, f)


def test_fan_triangulate_mixed_polygons():
    tris, owner = fan_triangulate(np.array([3, 5, 4]), np.arange(12))
    np.testing.assert_array_equal(tris, [[0, 1, 2], [3, 4, 5], [3, 5, 6], [3, 6, 7], [8, 9, 10], [8, 10, 11]])
    np.testing.assert_array_equal(owner, [0, 1, 1, 1, 2, 2])


# ----------------------------------------------------------------------------- broken files


BROKEN = {
    "nan.obj": (b"v 0 0 0\nv 1 nan 0\nv 0 1 0\nf 1 2 3\n", "non-finite coordinates"),
    "range.obj": (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", "face index out of range"),
    "zero.obj": (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "face index out of range"),
    "cloud.obj": (b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", "point clouds are not supported"),
    "empty.obj": (b"", "empty file"),
    "blank.ply": (b"  \n\n", "empty file"),
    "garbage.obj": (bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)), "unreadable OBJ"),
    "words.obj": (b"hello world\nthis is not a mesh\n", "unreadable OBJ"),
    "garbage.ply": (b"ply\nformat ascii 1.0\nelement vertex 3\nnonsense\n", "unreadable PLY"),
    "garbage.stl": (b"\x01\x02\x03 not an stl", "unreadable STL"),
    "garbage.glb": (b"glTF\x02\x00\x00\x00garbage", "unreadable GLB"),
    "garbage.off": (b"COFF?\nxx yy\n", "unreadable OFF"),
    "range.off": (b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n", "face index out of range"),
    "cloud.off": (b"OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", "point clouds are not supported"),
    "mesh.fbx": (b"whatever", "unknown extension .fbx"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_raise_one_line_mesh_errors(tmp_path, name):
    data, message = BROKEN[name]
    (tmp_path / name).write_bytes(data)
    with pytest.raises(MeshError) as err:
        load_mesh(tmp_path / name)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    if message.startswith("point clouds"):
        assert str(err.value) == "point clouds are not supported"


def test_point_cloud_ply_and_nan_ply(tmp_path):
    cloud = trimesh.PointCloud(np.random.default_rng(1).normal(size=(10, 3)))
    cloud.export(tmp_path / "cloud.ply")
    with pytest.raises(MeshError, match="^point clouds are not supported$"):
        load_mesh(tmp_path / "cloud.ply")
    v = np.eye(3)
    v[1, 1] = np.nan
    save_ply(tmp_path / "nan.ply", v, [[0, 1, 2]])
    with pytest.raises(MeshError, match="non-finite"):
        load_mesh(tmp_path / "nan.ply")
    save_ply(tmp_path / "range.ply", np.eye(3), [[0, 1, 7]])
    with pytest.raises(MeshError, match="face index out of range"):
        load_mesh(tmp_path / "range.ply")


def test_vertex_limit(tmp_path, skin):
    v, f = skin
    save_obj(tmp_path / "skin.obj", v, f)
    save_ply(tmp_path / "skin.ply", v, f)
    for name in ("skin.obj", "skin.ply"):
        with pytest.raises(MeshError, match="too many vertices"):
            load_mesh(tmp_path / name, max_vertices=1000)
    assert load_mesh(tmp_path / "skin.obj", max_vertices=SKIN_VERTEX_COUNT).n_vertices == SKIN_VERTEX_COUNT
    with pytest.raises(MeshError, match="too many vertices"):
        clean_mesh(v, f, max_vertices=1000)


# ----------------------------------------------------------------------------- repairs


def test_repairs_are_counted_and_mapped_back(tmp_path, skin):
    v, f = skin
    n = len(v)
    # 5 duplicated vertices used by some faces, 1 unreferenced vertex, 2 degenerate and 2 duplicate faces
    dup_of = np.array([10, 200, 3000, 4000, 11000])
    v_bad = np.concatenate([v, v[dup_of], [[100.0, 100.0, 100.0]]])
    f_bad = f.copy()
    for k, i in enumerate(dup_of):
        rows = np.nonzero((f_bad == i).any(1))[0][:2]
        f_bad[rows] = np.where(f_bad[rows] == i, n + k, f_bad[rows])
    f_bad = np.concatenate([f_bad, [[0, 0, 1], [0, 1, 1]], f[[5]], f[[6]][:, ::-1]])
    save_obj(tmp_path / "bad.obj", v_bad, f_bad)
    raw = load_mesh(tmp_path / "bad.obj")
    cleaned = clean_mesh(raw.vertices, raw.faces)
    report = cleaned.report
    assert report.duplicate_vertices_merged == 5
    assert report.unreferenced_vertices_removed == 1
    assert report.degenerate_faces_removed == 2
    assert report.duplicate_faces_removed == 2
    assert report.n_components == 1 and report.other_component_sizes == []
    assert len(cleaned.vertices) == n
    np.testing.assert_array_equal(cleaned.faces, f)  # first occurrences keep the original order
    # maps between the user's order and the cleaned arrays
    assert cleaned.to_clean[-1] == -1
    np.testing.assert_array_equal(cleaned.to_clean[n:n + 5], dup_of)
    kept = cleaned.to_clean >= 0
    np.testing.assert_allclose(cleaned.vertices[cleaned.to_clean[kept]], raw.vertices[kept], atol=1e-6)
    np.testing.assert_array_equal(cleaned.to_clean[cleaned.original_index], np.arange(n))
    per_input = cleaned.skin_to_original(np.arange(n, dtype=float))
    assert np.isnan(per_input[-1]) and per_input[n + 2] == dup_of[2]
    text = "\n".join(report.summary())
    for phrase in ("5 duplicate vertices merged", "1 unreferenced vertices removed",
                   "2 degenerate triangles removed", "2 duplicate triangles removed"):
        assert phrase in text


def test_zero_area_triangle_is_degenerate():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0]], float)
    cleaned = clean_mesh(v, [[0, 1, 2], [0, 1, 3]])  # second triangle is collinear
    assert cleaned.report.degenerate_faces_removed == 1
    assert cleaned.report.unreferenced_vertices_removed == 1


def test_clean_ict_is_untouched_and_finds_skin_and_eyes(ict):
    v, f = ict.full_mesh()
    cleaned = clean_mesh(v, f)
    report = cleaned.report
    assert report.duplicate_vertices_merged == report.unreferenced_vertices_removed == 0
    assert report.degenerate_faces_removed == report.duplicate_faces_removed == 0
    np.testing.assert_array_equal(cleaned.skin_vertices, np.arange(SKIN_VERTEX_COUNT))
    np.testing.assert_array_equal(cleaned.skin_faces, ict.region_faces("skin"))
    # each ICT eyeball is two closed shells (sclera and iris/cornea): four more components
    assert report.n_components == 5 and len(cleaned.other_components) == 4
    eye_vertices = np.sort(np.concatenate(cleaned.other_components))
    np.testing.assert_array_equal(eye_vertices, np.arange(SKIN_VERTEX_COUNT, len(v)))
    assert "4 other components" in "\n".join(report.summary())


def test_clean_rejects_bad_arrays():
    with pytest.raises(MeshError, match="^point clouds are not supported$"):
        clean_mesh(np.eye(3), np.zeros((0, 3), int))
    with pytest.raises(MeshError, match="face index out of range"):
        clean_mesh(np.eye(3), [[0, 1, 3]])
    with pytest.raises(MeshError, match="non-finite"):
        clean_mesh([[0, 0, 0], [1, 0, 0], [0, np.inf, 0]], [[0, 1, 2]])
