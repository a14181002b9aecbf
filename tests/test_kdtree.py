"""KD-tree queries split over the cores (nfs.geometry.kdtree): the same answers as scipy's own query, point for
point, for one or k neighbours, approximate and bounded queries and any shape of query points, also in a forked
child process (whose pool is its own)."""
import multiprocessing

import numpy as np
import pytest
from scipy.spatial import cKDTree

from nfs.geometry.kdtree import MIN_POINTS_PER_THREAD, query


@pytest.mark.parametrize("shape,kwargs", [((7, 900, 3), {}), ((5000, 3), {"k": 8}), ((3, 2100, 3), {"eps": 0.5}),
                                          ((4500, 3), {"distance_upper_bound": 0.3}), ((10, 3), {}),
                                          ((0, 3), {})])
def test_split_queries_answer_as_scipy(shape, kwargs):
    rng = np.random.default_rng(len(shape) + shape[0])
    tree = cKDTree(rng.normal(size=(20_000, 3)))
    points = rng.normal(size=shape)
    want = tree.query(points, **kwargs)
    got = query(tree, points, **kwargs)
    for a, b in zip(want, got):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def _child(conn):
    rng = np.random.default_rng(1)
    tree = cKDTree(rng.normal(size=(5000, 3)))
    points = rng.normal(size=(4 * MIN_POINTS_PER_THREAD, 3))
    conn.send(bool(np.array_equal(query(tree, points)[1], tree.query(points)[1])))


def test_a_forked_child_queries_on_its_own_pool():
    rng = np.random.default_rng(0)
    tree = cKDTree(rng.normal(size=(5000, 3)))
    query(tree, rng.normal(size=(4 * MIN_POINTS_PER_THREAD, 3)))          # the parent's pool is running
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child,))
    proc.start()
    assert parent.poll(60), "the forked child's query did not finish"
    assert parent.recv() is True
    proc.join(10)
