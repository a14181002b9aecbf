"""Checks of the DiffusionNet operators (nfs/geometry/operators.py) and of closest points / barycentric
embeddings (nfs/geometry/surface.py), on the real ICT skin and a decimated copy."""
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import trimesh

import nfs.geometry.operators as operators_module
from nfs.geometry.operators import Operators, compute_operators, get_operators, operator_field_names
from nfs.geometry.remesh import decimate, identity_embedding
from nfs.geometry.surface import closest_point_on_triangles, closest_points_on_mesh, embed_mesh
from nfs.ict import SKIN_VERTEX_COUNT, load_ict

K_SKIN, K_DECIMATED = 16, 32  # small bases keep the eigensolves to a few seconds on a busy CPU


@pytest.fixture(scope="module")
def skin():
    v, f = load_ict().skin_mesh()
    return v.astype(np.float64), f


@pytest.fixture(scope="module")
def decimated(skin):
    return decimate(*skin, 1500)


@pytest.fixture(scope="module")
def skin_ops(skin):
    return compute_operators(*skin, k_eig=K_SKIN)


@pytest.fixture(scope="module")
def decimated_ops(decimated):
    return compute_operators(*decimated, k_eig=K_DECIMATED)


@pytest.fixture(params=["skin", "decimated"])
def mesh_and_ops(request):
    """(vertices, faces, operators, k) of the ICT skin or its decimated copy."""
    if request.param == "skin":
        return (*request.getfixturevalue("skin"), request.getfixturevalue("skin_ops"), K_SKIN)
    return (*request.getfixturevalue("decimated"), request.getfixturevalue("decimated_ops"), K_DECIMATED)


def test_shapes_and_dtypes(mesh_and_ops):
    v, f, ops, k = mesh_and_ops
    n = len(v)
    assert isinstance(ops, Operators) and ops.k == k
    assert ops.mass.shape == (n,) and ops.evals.shape == (k,) and ops.evecs.shape == (n, k)
    assert ops.L.shape == ops.gradX.shape == ops.gradY.shape == (n, n)
    assert ops.normals.shape == (n, 3) and ops.frames.shape == (n, 3, 3)
    for name in operator_field_names():
        value = getattr(ops, name)
        data = value.data if sp.issparse(value) else value
        assert np.isfinite(data).all(), name


def test_decimated_copy_is_smaller(decimated):
    assert 1200 < len(decimated[0]) < 1800 < SKIN_VERTEX_COUNT


def test_laplacian_symmetric_zero_row_sums_psd(mesh_and_ops):
    v, f, ops, _ = mesh_and_ops
    L = ops.L.tocsr().astype(np.float64)
    scale = abs(L).max()
    assert abs(L - L.T).max() <= 1e-12 * scale
    assert np.abs(L @ np.ones(L.shape[0])).max() <= 1e-9 * scale
    assert (L.diagonal() > 0).all()
    # positive semi-definite: the smallest eigenvalue (shift-invert about -1) is ~0, not negative
    lowest = sla.eigsh(L, k=1, sigma=-1.0, which="LM", return_eigenvectors=False)[0]
    assert lowest > -1e-8 * scale and abs(lowest) < 1e-6 * scale
    x = np.random.default_rng(0).standard_normal((L.shape[0], 5))
    assert (np.einsum("vi,vi->i", x, L @ x) > 0).all()


def test_mass_is_positive_and_sums_to_the_area(mesh_and_ops):
    v, f, ops, _ = mesh_and_ops
    assert (ops.mass > 0).all()
    area = trimesh.Trimesh(v, f, process=False).area
    assert np.isclose(ops.mass.astype(np.float64).sum(), area, rtol=1e-5)


def test_eigenbasis(mesh_and_ops):
    v, f, ops, k = mesh_and_ops
    evecs = ops.evecs.astype(np.float64)
    gram = evecs.T @ (ops.mass[:, None].astype(np.float64) * evecs)
    assert np.abs(gram - np.eye(k)).max() < 1e-3, "mass-orthonormal"
    assert (np.diff(ops.evals) >= 0).all(), "ascending"
    assert abs(ops.evals[0]) < 1e-5 * ops.evals[-1] and ops.evals[1] > 1e-4 * ops.evals[-1]
    # the first eigenvector of a connected mesh is constant: 1 / sqrt(area)
    assert np.allclose(np.abs(evecs[:, 0]), 1 / np.sqrt(ops.mass.sum()), rtol=1e-3)
    # they solve L x = lambda M x
    residual = ops.L @ evecs - ops.mass[:, None] * evecs * ops.evals[None]
    assert np.linalg.norm(residual, axis=0).max() < 1e-3 * np.linalg.norm(ops.L @ evecs, axis=0).max()


@pytest.mark.parametrize("a", [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.3, -0.5, 0.8)])
def test_gradient_of_a_linear_function(mesh_and_ops, a):
    """grad (a . x) on the surface is the tangent projection of a."""
    v, f, ops, _ = mesh_and_ops
    a = np.asarray(a)
    fx = v @ a
    grad = np.stack([ops.gradX @ fx, ops.gradY @ fx], 1)
    expected = np.stack([ops.frames[:, 0] @ a, ops.frames[:, 1] @ a], 1)
    err = np.linalg.norm(grad - expected, axis=1) / np.linalg.norm(a)
    coarse = len(v) < SKIN_VERTEX_COUNT
    assert np.median(err) < (0.05 if coarse else 0.02)
    assert np.percentile(err, 90) < (0.25 if coarse else 0.1)
    # constants have no gradient
    assert np.abs(ops.gradX @ np.ones(len(v))).max() < 1e-8


def test_frames_are_orthonormal_right_handed_with_the_normal(mesh_and_ops):
    v, f, ops, _ = mesh_and_ops
    fr = ops.frames.astype(np.float64)
    assert np.abs(fr @ fr.transpose(0, 2, 1) - np.eye(3)).max() < 1e-5
    assert np.allclose(np.linalg.det(fr), 1.0, atol=1e-5)
    assert np.allclose(fr[:, 2], ops.normals, atol=1e-6)


def test_normals_point_out_of_a_sphere_and_its_spectrum():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    ops = compute_operators(sphere.vertices, sphere.faces, k_eig=16)
    radial = sphere.vertices / np.linalg.norm(sphere.vertices, axis=1, keepdims=True)
    assert ((ops.normals * radial).sum(1) > 0.99).all()
    # eigenvalues of the unit sphere: l (l + 1) with multiplicity 2 l + 1
    assert np.allclose(ops.evals[1:4], 2.0, rtol=0.02)
    assert np.allclose(ops.evals[4:9], 6.0, rtol=0.03)
    assert np.allclose(ops.evals[9:16], 12.0, rtol=0.03)
    assert np.isclose(ops.mass.sum(), sphere.area, rtol=1e-5)


def test_non_manifold_mesh_still_works():
    """Three triangles sharing one edge (a fin)."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0.5, 1, 0], [0.5, -1, 0], [0.5, 0, 1.0]])
    f = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    assert not trimesh.Trimesh(v, f, process=False).is_volume
    ops = compute_operators(v, f, k_eig=8)
    assert ops.k == 3  # clipped to V - 2
    assert (ops.mass > 0).all() and np.isclose(ops.mass.sum(), 1.5, rtol=1e-5)
    for name in ("mass", "evals", "evecs", "normals", "frames"):
        assert np.isfinite(getattr(ops, name)).all()
    gram = ops.evecs.T @ (ops.mass[:, None] * ops.evecs)
    assert np.abs(gram - np.eye(3)).max() < 1e-4
    assert abs(ops.evals[0]) < 1e-6 and (np.diff(ops.evals) >= 0).all()
    L = ops.L.toarray()
    assert np.allclose(L, L.T) and np.allclose(L.sum(1), 0, atol=1e-9)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_vertices_raise(tmp_path, bad):
    sphere = trimesh.creation.icosphere(subdivisions=1)
    v = np.array(sphere.vertices)
    v[3, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        compute_operators(v, sphere.faces, k_eig=4)
    with pytest.raises(ValueError):
        get_operators(v, sphere.faces, k_eig=4, cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.npz"))


# --- cache ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_mesh():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(0)
    return np.array(sphere.vertices) * (1 + 0.05 * rng.standard_normal((len(sphere.vertices), 1))), sphere.faces


def assert_same_operators(a, b, exact):
    for name in operator_field_names():
        x, y = getattr(a, name), getattr(b, name)
        if sp.issparse(x):
            assert (x != y).nnz == 0 if exact else abs(x - y).max() <= 1e-6 * abs(x).max(), name
        else:
            assert np.array_equal(x, y) if exact else np.allclose(x, y), name


def test_cache_hit_returns_the_stored_arrays(tmp_path, small_mesh, monkeypatch):
    v, f = small_mesh
    first = get_operators(v, f, k_eig=8, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp*"))

    def no_compute(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(operators_module, "compute_operators", no_compute)
    second = get_operators(v, f, k_eig=8, cache_dir=tmp_path)
    third = get_operators(v, f, k_eig=8, cache_dir=tmp_path)
    assert_same_operators(second, third, exact=True)
    # dense arrays are float32 in both; the sparse matrices are stored as float32
    for name in ("mass", "evals", "evecs", "normals", "frames"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name
    assert_same_operators(first, second, exact=False)
    with np.load(files[0], allow_pickle=False) as d:
        assert np.array_equal(d["evecs"], second.evecs)


def test_one_cache_file_serves_every_k(tmp_path, small_mesh, monkeypatch):
    """A cached basis with k pairs serves any smaller k (cut, no eigensolve); a larger k recomputes and replaces it;
    other geometry has its own file."""
    v, f = small_mesh
    a = get_operators(v, f, k_eig=8, cache_dir=tmp_path)
    calls = []
    real = operators_module.compute_operators
    monkeypatch.setattr(operators_module, "compute_operators", lambda *x, **y: calls.append(x[2]) or real(*x, **y))
    b = get_operators(v, f, k_eig=6, cache_dir=tmp_path)
    assert a.k == 8 and b.k == 6 and calls == []
    np.testing.assert_array_equal(b.evecs, a.evecs[:, :6])
    np.testing.assert_array_equal(b.evals, a.evals[:6])
    assert len(list(tmp_path.glob("*.npz"))) == 1
    c = get_operators(v, f, k_eig=10, cache_dir=tmp_path)
    assert c.k == 10 and calls == [10] and len(list(tmp_path.glob("*.npz"))) == 1
    assert get_operators(v, f, k_eig=8, cache_dir=tmp_path).k == 8 and calls == [10]
    get_operators(v * 1.01, f, k_eig=6, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2


@pytest.mark.parametrize("corruption", ["garbage", "truncated", "empty", "bad_crc"])
def test_corrupted_cache_file_is_recomputed(tmp_path, small_mesh, corruption):
    v, f = small_mesh
    reference = get_operators(v, f, k_eig=8, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npz")
    raw = path.read_bytes()
    corrupt = {"garbage": b"not a cache file" * 8, "truncated": raw[: len(raw) // 2], "empty": b"",
               "bad_crc": raw[:3000] + bytes(200) + raw[3200:]}[corruption]
    path.write_bytes(corrupt)
    ops = get_operators(v, f, k_eig=8, cache_dir=tmp_path)
    # recomputed (eigenvector signs may differ between ARPACK runs, so compare what is basis-free)
    assert np.allclose(ops.mass, reference.mass) and np.allclose(ops.evals, reference.evals, rtol=1e-4)
    assert abs(ops.L - reference.L).max() <= 1e-6 * abs(reference.L).max()
    assert path.read_bytes() != corrupt, "the bad file was replaced"
    assert np.array_equal(get_operators(v, f, k_eig=8, cache_dir=tmp_path).evecs, ops.evecs)


def test_use_cache_false_writes_nothing(tmp_path, small_mesh, monkeypatch):
    monkeypatch.setenv("NFS_CACHE", str(tmp_path))
    ops = get_operators(*small_mesh, k_eig=4, use_cache=False)
    assert ops.k == 4 and not any(tmp_path.rglob("*.npz"))


# --- closest points and embeddings ------------------------------------------------------------------------------

def brute_force_closest(p, a, b, c):
    """Closest point on one triangle: the plane projection when inside, else the best of the three edges."""
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n)
    q = p - ((p - a) @ n) * n
    t = np.linalg.lstsq(np.stack([b - a, c - a], 1), q - a, rcond=None)[0]
    candidates = []
    if t.min() >= 0 and t.sum() <= 1:
        candidates.append(q)
    for s, e in ((a, b), (b, c), (c, a)):
        u = np.clip((p - s) @ (e - s) / ((e - s) @ (e - s)), 0, 1)
        candidates.append(s + u * (e - s))
    return min(candidates, key=lambda x: np.linalg.norm(x - p))


TRIANGLES = {
    "acute": np.array([[0.0, 0.0, 0.0], [2.0, 0.2, 0.0], [0.7, 1.5, 0.3]]),
    "obtuse": np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [2.6, 0.4, -0.2]]),
}


@pytest.mark.parametrize("shape", sorted(TRIANGLES))
def test_closest_point_on_a_triangle_in_each_voronoi_region(shape):
    a, b, c = TRIANGLES[shape]
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n)
    centroid = (a + b + c) / 3
    pts, expect_bary = [], []
    corners = (a, b, c)
    for i, vtx in enumerate(corners):  # vertex regions: along the outward bisector of the corner
        u, w = (corners[j] - vtx for j in range(3) if j != i)
        out = -(u / np.linalg.norm(u) + w / np.linalg.norm(w))
        pts.append(vtx + 0.5 * out / np.linalg.norm(out))
        expect_bary.append(np.eye(3)[i])
    for i, j in ((0, 1), (1, 2), (2, 0)):  # edge regions: outward from the edge midpoint, in the plane
        s, e = corners[i], corners[j]
        out = np.cross(e - s, n)
        out /= np.linalg.norm(out)
        pts.append(0.5 * (s + e) + 0.3 * out)
        w = np.zeros(3)
        w[[i, j]] = 0.5
        expect_bary.append(w)
    pts.append(centroid)  # face region
    expect_bary.append(np.full(3, 1 / 3))
    base = np.array(pts)
    for lift in (0.0, 0.7, -1.3):  # the same regions above and below the plane
        p = base + lift * n
        got, bary = closest_point_on_triangles(p, *(np.repeat(x[None], len(p), 0) for x in (a, b, c)))
        assert np.allclose(bary, expect_bary, atol=1e-9)
        assert np.allclose(got, np.array(expect_bary) @ np.stack([a, b, c]), atol=1e-9)
        ref = np.array([brute_force_closest(x, a, b, c) for x in p])
        assert np.allclose(got, ref, atol=1e-9)


def test_closest_points_on_random_triangles_match_brute_force():
    rng = np.random.default_rng(3)
    tri = rng.standard_normal((500, 3, 3))
    p = rng.standard_normal((500, 3)) * 2
    got, bary = closest_point_on_triangles(p, tri[:, 0], tri[:, 1], tri[:, 2])
    ref = np.array([brute_force_closest(p[i], *tri[i]) for i in range(len(p))])
    assert np.allclose(np.linalg.norm(got - p, axis=1), np.linalg.norm(ref - p, axis=1), atol=1e-9)
    assert np.allclose(got, ref, atol=1e-7)
    assert bary.min() >= -1e-12 and np.allclose(bary.sum(1), 1)
    assert np.allclose(np.einsum("ni,nic->nc", bary, tri), got)


def test_closest_points_on_mesh_match_brute_force():
    rng = np.random.default_rng(4)
    sphere = trimesh.creation.icosphere(subdivisions=1)
    v = np.array(sphere.vertices) * rng.uniform(0.8, 1.2, (len(sphere.vertices), 1))
    f = np.asarray(sphere.faces)
    p = rng.standard_normal((100, 3)) * 0.8
    pts, tri, bary, dist = closest_points_on_mesh(p, v, f)
    all_d = np.array([[np.linalg.norm(brute_force_closest(x, *v[t]) - x) for t in f] for x in p])
    assert np.allclose(dist, all_d.min(1), atol=1e-9)
    assert np.allclose(pts, np.einsum("ni,nic->nc", bary, v[f[tri]]), atol=1e-9)


@pytest.mark.parametrize("case", ["sphere", "grid_ties", "isolated_vertices"])
def test_closest_points_on_mesh_skip_only_farther_triangles(case, monkeypatch):
    """The candidates dropped by their lower bounds (`_TriangleBounds`) change nothing: every output bit for bit
    as projecting each point onto all its candidates, also where points are equally near two triangles (a flat
    grid, points on its vertices and edges) and where vertices without triangles are among the nearest."""
    import nfs.geometry.surface as surface
    rng = np.random.default_rng(7)
    if case == "sphere":
        sphere = trimesh.creation.icosphere(subdivisions=3)
        v, f = np.array(sphere.vertices) * rng.uniform(0.9, 1.1, (len(sphere.vertices), 1)), np.asarray(sphere.faces)
        p = rng.standard_normal((3000, 3)) * 0.7
    else:
        g = np.stack(np.meshgrid(np.arange(12.0), np.arange(12.0)), -1).reshape(-1, 2)
        v = np.c_[g, np.zeros(len(g))]
        idx = np.arange(144).reshape(12, 12)
        a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
        f = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
        p = np.c_[rng.integers(0, 23, (2000, 2)) / 2.0, rng.integers(-2, 3, 2000) / 4.0]
        if case == "isolated_vertices":
            v = np.concatenate([v, np.c_[rng.uniform(0, 11, (300, 2)), rng.uniform(-0.1, 0.1, 300)]])
    pruned = closest_points_on_mesh(p, v, f)
    assert surface._TriangleBounds is not None
    monkeypatch.setattr(surface, "_TriangleBounds", lambda *args: None)       # every candidate projected on
    everything = closest_points_on_mesh(p, v, f)
    for got, want in zip(pruned, everything):
        np.testing.assert_array_equal(got, want)


def test_closest_points_on_mesh_hint_changes_nothing():
    """A hint per point (a fit's previous nearest triangles, random triangles, triangles that are no candidate,
    -1) only bounds the search: every output bit for bit as without it, also on a grid with ties."""
    rng = np.random.default_rng(11)
    sphere = trimesh.creation.icosphere(subdivisions=4)
    v, f = np.array(sphere.vertices) * rng.uniform(0.95, 1.05, (len(sphere.vertices), 1)), np.asarray(sphere.faces)
    p = rng.standard_normal((3000, 3)) * 0.6
    plain = closest_points_on_mesh(p, v, f)
    moved = closest_points_on_mesh(p + rng.normal(0, 0.01, p.shape), v * 1.01, f)[1]      # the last round's
    for hint in (moved, plain[1], rng.integers(0, len(f), len(p)), np.full(len(p), -1)):
        for got, want in zip(closest_points_on_mesh(p, v, f, hint=hint), plain):
            np.testing.assert_array_equal(got, want)
    g = np.stack(np.meshgrid(np.arange(12.0), np.arange(12.0)), -1).reshape(-1, 2)
    gv = np.c_[g, np.zeros(len(g))]
    idx = np.arange(144).reshape(12, 12)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    gf = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    gp = np.c_[rng.integers(0, 23, (2000, 2)) / 2.0, rng.integers(-2, 3, 2000) / 4.0]
    plain = closest_points_on_mesh(gp, gv, gf)
    for got, want in zip(closest_points_on_mesh(gp, gv, gf, hint=rng.integers(0, len(gf), len(gp))), plain):
        np.testing.assert_array_equal(got, want)


def test_embedding_of_a_decimated_skin_interpolates_linear_fields(skin, decimated):
    v, f = skin
    vd, fd = decimated
    emb = embed_mesh(vd, fd, v, f)
    assert emb.n_vertices == len(vd) and emb.n_template == len(v) and np.array_equal(emb.faces, fd)
    assert emb.bary.min() >= 0 and np.allclose(emb.bary.sum(1), 1, atol=1e-6)
    on_surface = emb.apply(v)
    assert np.linalg.norm(on_surface - vd, axis=1).max() < 0.2  # decimated vertices lie near the skin (cm)
    rng = np.random.default_rng(5)
    m, c = rng.standard_normal((3, 4)), rng.standard_normal(4)
    field = v @ m + c  # a linear field on the template
    assert np.allclose(emb.apply(field), on_surface @ m + c, atol=1e-4)
    assert np.allclose(emb.matrix() @ field, on_surface @ m + c, atol=1e-4)
    batched = emb.apply(np.stack([field, 2 * field]))
    assert batched.shape == (2, len(vd), 4) and np.allclose(batched[1], 2 * batched[0], atol=1e-5)
    nearest = emb.nearest_template_vertex()
    assert np.array_equal(nearest, f[emb.tri_index][np.arange(len(vd)), emb.bary.argmax(1)])


def test_identity_embedding_reproduces_the_template(skin):
    v, f = skin
    emb = identity_embedding(len(v), f, f)
    assert np.array_equal(emb.apply(v), v)
    assert np.array_equal(emb.nearest_template_vertex(), np.arange(len(v)))


def test_operator_cache_is_capped_with_lru_eviction(tmp_path, monkeypatch):
    """NFS_CACHE_MB caps the cache folder: the least recently used file goes first, a cache hit counts as a use,
    and 0 keeps nothing."""
    import os
    import time as _time

    import trimesh

    from nfs.geometry.operators import cache_limit_bytes, get_operators

    meshes = [trimesh.creation.icosphere(2, radius=r) for r in (1.0, 2.0, 3.0)]
    cache = tmp_path / "ops"
    monkeypatch.setenv("NFS_CACHE_MB", "100")
    paths = []
    for i, m in enumerate(meshes[:2]):
        get_operators(m.vertices, m.faces, 8, cache_dir=cache)
        paths.append(max(cache.glob("*.npz"), key=os.path.getmtime))
        os.utime(paths[-1], (1e9 + i, 1e9 + i))  # distinct, ordered use times
    size = paths[0].stat().st_size
    get_operators(meshes[0].vertices, meshes[0].faces, 8, cache_dir=cache)  # a hit: mesh 0 becomes the newest
    assert paths[0].stat().st_mtime > _time.time() - 60
    monkeypatch.setenv("NFS_CACHE_MB", str(2.5 * size / 1e6))  # room for two files
    get_operators(meshes[2].vertices, meshes[2].faces, 8, cache_dir=cache)
    left = set(cache.glob("*.npz"))
    assert paths[0] in left and paths[1] not in left and len(left) == 2
    monkeypatch.setenv("NFS_CACHE_MB", "0")
    get_operators(meshes[1].vertices, meshes[1].faces, 8, cache_dir=cache)
    assert len(set(cache.glob("*.npz"))) <= 2 and paths[1] not in set(cache.glob("*.npz"))
    for bad in ("lots", "-1", "inf"):
        monkeypatch.setenv("NFS_CACHE_MB", bad)
        with pytest.raises(ValueError, match="NFS_CACHE_MB"):
            cache_limit_bytes()


def brute_force_distances(points, v, f):
    """Distance of each point to its nearest triangle, trying every triangle."""
    out = np.empty(len(points))
    for i in range(0, len(points), 50):
        q = points[i:i + 50]
        qq, ff = np.repeat(q, len(f), 0), np.tile(f, (len(q), 1))
        pts, _ = closest_point_on_triangles(qq, v[ff[:, 0]], v[ff[:, 1]], v[ff[:, 2]])
        out[i:i + 50] = np.linalg.norm(pts - qq, axis=1).reshape(len(q), len(f)).min(1)
    return out


@pytest.mark.parametrize("index", ["aabb", "kdtree"])
def test_exact_closest_points_match_brute_force(decimated, index):
    """Both spatial indexes (libigl's box tree, the KD-trees over triangle centroids) find the nearest triangle of
    every point, near the surface and far from it, with triangles of very different sizes (a few made 30x
    larger)."""
    from nfs.geometry.surface import closest_points_exact
    v, f = decimated
    v = v.copy()
    rng = np.random.default_rng(5)
    big = rng.choice(len(v), 12, replace=False)
    v[big] += rng.normal(0, 3.0, (12, 3))                 # stretch the triangles around a few vertices
    size = np.ptp(v, 0).max()
    points = np.concatenate([v[rng.choice(len(v), 300)] + rng.normal(0, 0.003 * size, (300, 3)),
                             rng.uniform(v.min(0) - 0.2 * size, v.max(0) + 0.2 * size, (200, 3))])
    pt, tri, bary, dist = closest_points_exact(points, v, f, block=128, index=index)
    np.testing.assert_allclose(dist, brute_force_distances(points, v, f), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(pt - points, axis=1), dist, atol=1e-12)
    np.testing.assert_allclose((bary[:, :, None] * v[f[tri]]).sum(1), pt, atol=1e-9)


def test_surface_proxy_carries_values_back_to_every_vertex(skin):
    """A dense mesh (the ICT skin subdivided, ~45k vertices) gets a proxy of a few thousand vertices; a linear
    function of position carried back from the proxy lands within the proxy's distance of the true value, and
    a smaller mesh is its own proxy."""
    from nfs.geometry.proxy import make_proxy
    v, f = trimesh.remesh.subdivide(*skin)
    proxy = make_proxy(v, f, n_vertices=3000)
    assert proxy is not None and 2500 <= len(proxy.vertices) <= 3500 and proxy.n_dense == len(v)
    assert np.allclose(proxy.bary.sum(1), 1.0, atol=1e-5) and (proxy.bary >= 0).all()
    field = proxy.vertices @ np.array([1.0, -2.0, 0.5]) + 3.0
    carried = proxy.carry(np.stack([field, -field], 1))
    on_proxy = (proxy.bary[:, :, None] * proxy.vertices[proxy.faces[proxy.tri]]).sum(1)
    expected = on_proxy @ np.array([1.0, -2.0, 0.5]) + 3.0
    np.testing.assert_allclose(carried[:, 0], expected, atol=1e-4)
    np.testing.assert_allclose(carried[:, 1], -expected, atol=1e-4)
    # the proxy lies on the surface: its points are near the dense vertices (cm; the skin is ~20 cm across)
    assert np.percentile(np.linalg.norm(on_proxy - v, axis=1), 99) < 0.1
    assert make_proxy(*skin) is None


def test_geodesics_near_the_sources_match_the_whole_mesh(skin, monkeypatch):
    """On a dense mesh distances from vertex sets are shortest paths over the part of the mesh near their sources:
    within the reach they agree with the whole mesh's heat-method geodesics to a few %, beyond it they are 'far'."""
    import nfs.geometry.openings as openings
    v, f = skin
    sources = [np.array([100]), np.array([2000, 2001])]
    whole = openings.geodesic_distances(v, f, sources)
    monkeypatch.setattr(openings, "LOCAL_GEODESICS_ABOVE", 1000)
    reach = 3.0                                                       # cm; the skin is ~20 cm across
    near = openings.geodesic_distances_near(v, f, sources, reach)
    inside = whole < 0.9 * reach
    assert inside.sum() > 100 and (near[whole > 1.3 * reach] > reach).all()
    # paths over edges and across neighbouring triangles: a few % longer than the surface's geodesics
    rel = np.abs(near[inside] - whole[inside]) / np.maximum(whole[inside], 0.3)
    assert np.median(rel) < 0.05 and np.percentile(rel, 95) < 0.15
