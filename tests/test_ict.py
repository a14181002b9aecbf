"""Checks of the packed ICT-FaceKit model (nfs/ict.py, third_party/ict-facekit/ict_face_model.npz)."""
import numpy as np
import pytest
import scipy.sparse as sp
import trimesh
from scipy.sparse.csgraph import connected_components

from nfs import REPO_ROOT
from nfs.geometry.triangulate import fan_triangulate
from nfs.ict import (EXPRESSION_NAMES, FACE_VERTEX_COUNT, ICT_PATH, N_EXPRESSION, N_IDENTITY,
                     NARROW_FACE_VERTEX_COUNT, SKIN_VERTEX_COUNT, load_ict)

ORIGINAL_PATH = REPO_ROOT.parent / "shared" / "data" / "ict-facekit" / "ict_facekit.npz"
# Vertex ranges of the original 26,719-vertex ICT model that tools/pack_ict.py keeps.
ORIGINAL_SKIN_END, ORIGINAL_EYEBALLS = 11248, (21451, 24591)



@pytest.fixture(scope="module")
def ict():
    return load_ict()


def components(faces, n_vertices):
    """Number of vertex-connected components and the label of each vertex."""
    f = np.asarray(faces)
    adj = sp.coo_matrix((np.ones(f.size), (f.ravel(), np.roll(f, 1, axis=1).ravel())), shape=(n_vertices,) * 2)
    return connected_components(adj, directed=False)


# --- sizes and topology ---------------------------------------------------------------------------------------

def test_vertex_counts(ict):
    assert SKIN_VERTEX_COUNT == ict.skin_count == 11248
    assert FACE_VERTEX_COUNT == 9409 and NARROW_FACE_VERTEX_COUNT == 6706
    n_eyeballs = (ORIGINAL_EYEBALLS[1] - ORIGINAL_EYEBALLS[0])
    assert ict.neutral.shape == (SKIN_VERTEX_COUNT + n_eyeballs, 3) and ict.neutral.dtype == np.float32
    assert ict.identity_deltas.shape == (N_IDENTITY, len(ict.neutral), 3)
    assert ict.expression_deltas.shape == (N_EXPRESSION, len(ict.neutral), 3)
    assert ict.expression_names == tuple(EXPRESSION_NAMES) and len(EXPRESSION_NAMES) == 53


@pytest.mark.parametrize("region,count", [("skin", 11248), ("face", 9409), ("narrow_face", 6706)])
def test_regions_are_vertex_prefixes_used_by_their_faces(ict, region, count):
    v, f = ict.skin_mesh(region=region)
    assert ict.region_vertex_count(region) == count
    assert v.shape == (count, 3)
    assert np.array_equal(np.unique(f), np.arange(count)), "every region vertex is used, nothing beyond"
    assert ict.region_mask(region).sum() == count and ict.region_mask(region)[:count].all()
    n_comp, _ = components(f, count)
    assert n_comp == 1


def test_unknown_region_is_rejected(ict):
    with pytest.raises(ValueError, match="unknown region"):
        ict.region_vertex_count("ears")


def test_faces_are_valid_triangles(ict):
    f = ict.faces
    assert f.ndim == 2 and f.shape[1] == 3 and np.issubdtype(f.dtype, np.integer)
    assert f.min() == 0 and f.max() == len(ict.neutral) - 1
    assert np.array_equal(np.unique(f), np.arange(len(ict.neutral))), "no unused vertex"
    assert np.all((f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])), "no repeated corner"
    assert len(np.unique(np.sort(f, axis=1), axis=0)) == len(f), "no duplicate triangle"
    # fan triangulation of 128 triangles + 14,212 quads
    assert len(ict.poly_counts) == 14340 and set(np.unique(ict.poly_counts)) == {3, 4}
    assert len(f) == (ict.poly_counts - 2).sum() == 28552
    skin = trimesh.Trimesh(ict.neutral[:SKIN_VERTEX_COUNT], ict.region_faces("skin"), process=False)
    assert skin.area_faces.min() > 0, "no degenerate skin triangle"
    assert skin.is_winding_consistent
    assert len(skin.faces) + len(ict.eyeball_faces()) == len(f), "no triangle mixes skin and eyeball vertices"


def test_skin_is_one_component_and_eyeballs_two_more(ict):
    n = len(ict.neutral)
    n_comp, label = components(ict.faces, n)
    skin_labels = np.unique(label[:SKIN_VERTEX_COUNT])
    assert len(skin_labels) == 1 and not np.isin(label[SKIN_VERTEX_COUNT:], skin_labels).any()
    # Beyond the skin: two eyeballs, left (+x, the face looks along +z) and right (-x), 1,570 vertices each.
    # Note each eyeball is made of two closed, vertex-disjoint shells (sclera and iris), so the whole model
    # has 1 + 2 x 2 vertex-connected components.
    assert n_comp == 5
    eye_v = ict.neutral[SKIN_VERTEX_COUNT:]
    eye_label = label[SKIN_VERTEX_COUNT:]
    left, right = eye_v[:, 0] > 0, eye_v[:, 0] < 0
    assert left.sum() == right.sum() == 1570 and (left | right).all()
    assert set(eye_label[left]).isdisjoint(eye_label[right]), "no component spans both eyes"
    assert len(np.unique(eye_label[left])) == len(np.unique(eye_label[right])) == 2
    for side in (left, right):
        centre = eye_v[side].mean(0)
        assert np.linalg.norm(eye_v[side] - centre, axis=1).max() < 2.5  # an eyeball, ~2 cm radius
    eye_f = ict.eyeball_faces()
    for lab in np.unique(eye_label):
        shell = eye_f[label[eye_f[:, 0]] == lab]
        assert trimesh.Trimesh(ict.neutral, shell, process=False).is_watertight
    # mirror images of each other
    assert np.allclose(np.sort(eye_v[left][:, 0]), np.sort(-eye_v[right][:, 0]), atol=1e-3)


def test_triangulate_fans_polygons():
    counts = np.array([4, 3, 5])
    idx = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    tris, owner = fan_triangulate(counts, idx)
    assert owner.tolist() == [0, 0, 1, 2, 2, 2]
    assert tris.tolist() == [[0, 1, 2], [0, 2, 3], [4, 5, 6], [7, 8, 9], [7, 9, 10], [7, 10, 11]]


def test_landmarks_lie_on_the_skin(ict):
    assert ict.landmarks68.shape == (68,) and len(np.unique(ict.landmarks68)) == 68
    assert ict.landmarks68.min() >= 0 and ict.landmarks68.max() < SKIN_VERTEX_COUNT


def test_packed_file_needs_no_pickle():
    with np.load(ICT_PATH, allow_pickle=False) as d:
        for name in d.files:
            assert d[name].dtype != object, name


# --- the linear model -----------------------------------------------------------------------------------------

def test_vertices_is_the_linear_model(ict):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, N_IDENTITY)).astype(np.float32)
    e1, e2 = rng.uniform(0, 1, (2, N_EXPRESSION)).astype(np.float32)
    v0 = ict.vertices()
    assert v0.shape == (SKIN_VERTEX_COUNT, 3) and np.array_equal(v0, ict.neutral[:SKIN_VERTEX_COUNT])
    explicit = (ict.neutral + np.einsum("i,ivc->vc", a, ict.identity_deltas)
                + np.einsum("e,evc->vc", e1, ict.expression_deltas))[:SKIN_VERTEX_COUNT]
    assert np.allclose(ict.vertices(a, e1), explicit, atol=1e-4)

    def offset(i, e):
        return ict.vertices(i, e).astype(np.float64) - v0

    assert np.allclose(offset(a + b, e1 + e2), offset(a, e1) + offset(b, e2), atol=1e-4)
    assert np.allclose(offset(2.5 * a, -1.5 * e1), 2.5 * offset(a, None) - 1.5 * offset(None, e1), atol=1e-4)
    assert np.allclose(offset(np.zeros(N_IDENTITY), np.zeros(N_EXPRESSION)), 0)


def test_vertices_broadcasts_and_counts(ict):
    rng = np.random.default_rng(1)
    ids = rng.standard_normal((2, N_IDENTITY))
    exps = rng.uniform(0, 1, (4, 1, N_EXPRESSION))
    v = ict.vertices(ids[None], exps)  # (1, 2) x (4, 1) -> (4, 2)
    assert v.shape == (4, 2, SKIN_VERTEX_COUNT, 3) and v.dtype == np.float32
    assert np.allclose(v[3, 1], ict.vertices(ids[1], exps[3, 0]), atol=1e-5)
    full_v, full_f = ict.full_mesh(ids[0])
    assert full_v.shape == (len(ict.neutral), 3) and full_f is ict.faces
    assert np.allclose(full_v[:SKIN_VERTEX_COUNT], ict.vertices(ids[0]))
    face_v, _ = ict.skin_mesh(ids[0], exps[0, 0], region="face")
    assert np.allclose(face_v, ict.vertices(ids[0], exps[0, 0])[:FACE_VERTEX_COUNT])


def test_sample_identities_reproducible_by_seed(ict):
    a = ict.sample_identities(5, seed=3)
    assert a.shape == (5, N_IDENTITY) and a.dtype == np.float32
    assert np.array_equal(a, ict.sample_identities(5, seed=3))
    assert not np.allclose(a, ict.sample_identities(5, seed=4))
    assert np.allclose(ict.sample_identities(5, seed=3, sigma=2.0), 2 * a)
    many = ict.sample_identities(400, seed=0)
    assert abs(many.mean()) < 0.02 and abs(many.std() - 1) < 0.02


def test_left_shapes_move_the_left_side(ict):
    """_L shapes act on +x (the subject's left: the face looks along +z), _R on -x."""
    x = ict.neutral[:SKIN_VERTEX_COUNT, 0]
    for j, name in enumerate(EXPRESSION_NAMES):
        if name.endswith(("_L", "_R")):
            mag = np.linalg.norm(ict.expression_deltas[j, :SKIN_VERTEX_COUNT], axis=1)
            centroid_x = (mag * x).sum() / mag.sum()
            assert (centroid_x > 1.0) if name.endswith("_L") else (centroid_x < -1.0), name


# --- against the original release -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def original():
    if not ORIGINAL_PATH.exists():
        pytest.skip(f"original ICT-FaceKit arrays not found at {ORIGINAL_PATH}")
    with np.load(ORIGINAL_PATH, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def kept_vertices():
    return np.concatenate([np.arange(ORIGINAL_SKIN_END), np.arange(*ORIGINAL_EYEBALLS)])


def test_packed_matches_original_release(ict, original):
    keep = kept_vertices()
    assert np.array_equal(ict.neutral, original["neutral"][keep]), "neutral is stored exactly"
    for name in ("identity_deltas", "expression_deltas"):
        err_cm = np.abs(getattr(ict, name) - original[name][:, keep]).max()
        assert err_cm < 0.001, f"{name}: max error {err_cm * 10:.5f} mm"  # < 0.01 mm
    assert tuple(str(s) for s in original["expression_names"]) == ict.expression_names
    assert np.array_equal(keep[ict.landmarks68], original["landmarks68"])


def test_packed_polygons_match_original_release(ict, original):
    keep = kept_vertices()
    counts, idx = original["face_vertex_counts"], original["face_vertex_indices"]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    kept_mask = np.zeros(len(original["neutral"]), bool)
    kept_mask[keep] = True
    inside = np.array([kept_mask[idx[s:s + c]].all() for s, c in zip(starts, counts)])
    assert np.array_equal(counts[inside], ict.poly_counts)
    orig_idx = np.concatenate([idx[s:s + c] for s, c in zip(starts[inside], counts[inside])])
    assert np.array_equal(keep[ict.poly_indices], orig_idx)
    uv_idx = np.concatenate([original["face_uv_indices"][s:s + c] for s, c in zip(starts[inside], counts[inside])])
    assert np.array_equal(ict.uv[ict.poly_uv_indices], original["uv"][uv_idx])
    assert np.array_equal(ict.poly_material, original["face_material"][inside])
