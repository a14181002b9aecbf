"""Unfolding a frame: the least change to a few free vertices that leaves no constrained triangle turned over."""
import numpy as np

from nfs.prior.unfold import UNFOLD_MARGIN, signed_areas, unfold


def _grid(n=12, h=0.1):
    """A flat n x n grid (cm) facing +z: vertices (n*n, 3), faces, the middle vertex."""
    x, y = np.meshgrid(np.arange(n) * h, np.arange(n) * h)
    v = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], 1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    return v, np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)]), int(idx[n // 2, n // 2])


def _rest_unit(v, f):
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def _ring(f, vertex, rings):
    """The vertices within `rings` rings of vertex on faces f."""
    out = {vertex}
    for _ in range(rings):
        out |= set(f[np.isin(f, list(out)).any(1)].ravel().tolist())
    return np.array(sorted(out))


def _frame(v):
    """A smooth bump over the grid with the middle vertex pushed 2.5 grid steps sideways, across its neighbours."""
    centre = v.mean(0)
    moved = v.copy()
    moved[:, 2] += 0.3 * np.exp(-((v - centre) ** 2).sum(1) / 0.05)
    return moved


def test_a_vertex_pushed_across_its_neighbours_is_pulled_back_and_nothing_else_moves():
    v, f, mid = _grid()
    moved = _frame(v)
    moved[mid, 0] += 0.25
    unit = _rest_unit(v, f)
    before = moved.copy()
    assert (signed_areas(moved, f, unit) < 0).sum() >= 2
    free = _ring(f, mid, 2)
    assert unfold(v, moved, f, free, np.arange(len(f))) == 0
    assert not (signed_areas(moved, f, unit) < 0).any()
    others = np.setdiff1d(np.arange(len(v)), free)
    assert np.array_equal(moved[others], before[others])             # only the free vertices move
    assert 0.0 < moved[mid, 0] - v[mid, 0] < 0.25                    # pulled back, not all the way
    # the smooth part of the motion is kept: the free vertices' heights move by far less than the bump
    assert np.abs(moved[free, 2] - before[free, 2]).max() < 0.05


def test_a_frame_with_nothing_turned_comes_back_bit_for_bit():
    v, f, mid = _grid()
    moved = _frame(v)
    before = moved.copy()
    assert unfold(v, moved, f, _ring(f, mid, 2), np.arange(len(f))) == 0
    assert np.array_equal(moved, before)


def test_the_least_change_keeps_a_margin_and_leaves_unconstrained_triangles_alone():
    v, f, mid = _grid()
    moved = _frame(v)
    moved[mid, 0] += 0.25
    unit = _rest_unit(v, f)
    turned = np.nonzero(signed_areas(moved, f, unit) < 0)[0]
    area2 = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    keep = np.setdiff1d(np.arange(len(f)), turned[:1])                # one turned triangle is let be
    unfold(v, moved, f, _ring(f, mid, 2), keep)
    s = signed_areas(moved, f, unit)
    assert (s[turned[1:]] > 0.5 * UNFOLD_MARGIN * area2[turned[1:]]).all()


def test_a_fold_held_by_vertices_that_are_not_free_is_reported():
    v, f, mid = _grid()
    moved = _frame(v)
    moved[mid, 0] += 0.25
    unit = _rest_unit(v, f)
    corner = f[np.nonzero(signed_areas(moved, f, unit) < 0)[0][0]]
    free = np.setdiff1d(_ring(f, mid, 2), corner)                    # the turned triangle's corners all held
    assert unfold(v, moved, f, free, np.arange(len(f))) > 0
