"""The preparation's faster arithmetic gives the very same numbers as the plain numpy it replaces, and the single
BLAS thread is given back."""
import numpy as np
import trimesh

from nfs.geometry import triangle_math
from nfs.geometry.normals import vertex_normals
from nfs.geometry.surface import TriangleIndex, closest_points_exact, sample_surface
from nfs.mesh.align import surface_moments


def _mesh(seed=0):
    sphere = trimesh.creation.icosphere(subdivisions=3)
    rng = np.random.default_rng(seed)
    v = np.asarray(sphere.vertices) * rng.uniform(0.7, 1.3, (len(sphere.vertices), 1)) + rng.normal(0, 0.01, 3)
    return v, np.asarray(sphere.faces, np.int64)


def test_rows_of_coordinates_give_numpys_bits():
    v, f = _mesh()
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    assert np.array_equal(triangle_math.triangle_normals(v, f), cross)
    assert np.array_equal(triangle_math.row_norms(cross), np.linalg.norm(cross, axis=1))
    assert np.array_equal(triangle_math.triangle_areas(v, f), 0.5 * np.linalg.norm(cross, axis=1))
    some = f[::7]
    assert np.array_equal(triangle_math.gathered_normals(v, some), cross[::7])
    f_flat = np.concatenate([f, [[0, 0, 1]]])                        # a degenerate triangle: a zero normal
    unit, area2 = triangle_math.unit_normals(v, f_flat)
    assert np.allclose(np.linalg.norm(unit[:-1], axis=1), 1.0) and (unit[-1] == 0).all()
    assert np.array_equal(area2[:-1], np.linalg.norm(cross, axis=1)) and area2[-1] == 1e-30


def test_surface_moments_and_samples_match_the_plain_formulas():
    v, f = _mesh(1)
    a, b, c = (v[f[:, k]] for k in range(3))
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    centroid = (area[:, None] * (a + b + c)).sum(0) / (3 * area.sum())
    a, b, c = a - centroid, b - centroid, c - centroid
    second = area * ((a * a).sum(1) + (b * b).sum(1) + (c * c).sum(1) + ((a + b + c) ** 2).sum(1)) / 12
    got = surface_moments(v, f)
    assert np.array_equal(got[0], centroid)
    assert got[1] == float(np.sqrt(second.sum() / area.sum())) and got[2] == float(area.sum())
    points, normals, total = sample_surface(v, f, 500, seed=2, return_area=True)
    assert total == float(area.sum()) and points.shape == (500, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-12)
    # vertex normals: unit, pointing out of the (star-shaped) sphere
    n = vertex_normals(v, f)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-12)
    assert ((n * (v - v.mean(0))).sum(1) > 0).all()


def test_a_triangle_index_asked_twice_answers_like_a_fresh_search():
    v, f = _mesh(3)
    rng = np.random.default_rng(4)
    index = TriangleIndex(v, f)
    for _ in range(2):
        q = rng.normal(0, 1.0, (300, 3))
        got = index.closest(q)
        ref = closest_points_exact(q, v, f, index="kdtree")
        np.testing.assert_allclose(got[3], ref[3], atol=1e-12)
        np.testing.assert_allclose(got[0], ref[0], atol=1e-9)


def test_single_blas_thread_nests_and_gives_the_threads_back():
    from threadpoolctl import threadpool_info

    from nfs.blas_threads import single_blas_thread

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    with single_blas_thread():
        with single_blas_thread():
            assert all(n == 1 for n in blas_threads())
        assert all(n == 1 for n in blas_threads())
    assert blas_threads() == before
