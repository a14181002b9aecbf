"""The template prior's fold guard: shapes that turn triangles over where the source keeps its surface facing are
mended locally, and a head the fitted ICT face matches keeps its basis bit for bit."""
import numpy as np
import pytest

from nfs.prior import fold_guard as G


def _grid(n=16, h=0.2):
    """A flat n x n grid in the x-y plane (cm), facing +z: vertices (n*n, 3), faces."""
    x, y = np.meshgrid(np.arange(n) * h, np.arange(n) * h)
    v = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], 1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    return v, np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])


def _source_and_target(spike_cm):
    """A source grid with two smooth shapes (a bump, a slide) and a target grid whose basis carries them, shape 0
    with a spike of spike_cm in x at the middle vertex (as a delta sized for a feature larger than the target's);
    the target is on the source within 1 cm of the spike and 2 mm in front of it farther out. Returns the guard's
    arguments and the middle vertex."""
    v, f = _grid()
    centre = v.mean(0)
    r2 = ((v - centre) ** 2).sum(1)
    deltas = np.zeros((2, len(v), 3), np.float32)
    deltas[0, :, 2] = 0.3 * np.exp(-r2 / 0.5)
    deltas[1, :, 0] = 0.1
    target = v + [0.0, 0.0, 0.2]
    basis = deltas.copy()
    mid = int(np.argmin(r2))
    basis[0, mid, 0] += spike_cm
    tri = np.zeros(len(v), np.int64)
    bary = np.zeros((len(v), 3))
    for t, face in enumerate(f):           # each target vertex's closest point: its own source vertex
        for j, i in enumerate(face):
            tri[i], bary[i] = t, np.eye(3)[j]
    # on the fitted face about the spike, off it (a differently shaped head) farther out
    off_by = np.where(np.linalg.norm(v - v[mid], axis=1) < 1.0, 0.0, 0.2)
    return (basis, target, f, v, f, deltas, tri, bary, off_by), mid


def test_a_too_strong_delta_is_mended_and_nothing_else_moves():
    args, mid = _source_and_target(spike_cm=0.6)
    basis, target, faces = args[0], args[1], args[2]
    before = basis.copy()
    assert G.turned_triangles(target, faces, basis)[0].any()           # the spike turns triangles over
    out = G.guard_folds(*args)
    assert not G.turned_triangles(target, faces, out).any()
    assert np.array_equal(out[1], before[1])                             # the other shape is untouched
    far = np.linalg.norm(target - target[mid], axis=1) > 1.0
    assert np.array_equal(out[0, far], before[0, far])                  # and far from the spike
    assert abs(out[0, mid, 0]) < 0.5 * abs(before[0, mid, 0])


def test_a_fold_the_source_makes_too_is_kept():
    args, _ = _source_and_target(spike_cm=0.6)
    basis, deltas = args[0], args[5]
    deltas[0] = basis[0]                        # the source itself has the spike: the fold is the source's
    before = basis.copy()
    out = G.guard_folds(*args)
    assert np.array_equal(out, before)


def test_a_head_on_the_fitted_face_is_left_alone():
    args, _ = _source_and_target(spike_cm=0.6)
    args = args[:-1] + (np.zeros(len(args[1])),)       # every vertex on the fitted face: the guard does not run
    before = args[0].copy()
    assert np.array_equal(G.guard_folds(*args), before)


@pytest.mark.parametrize("closes_lids", [False, True])
def test_a_fold_beside_an_eye_rim_is_mended_and_the_rim_keeps_its_deltas(closes_lids):
    """A spike one ring off a pinned rim (an eye's): a shape that does not close the lids is filled up to the rim; one
    that does keeps the rim and two rings around it, and what still turns over is scaled down there (the last
    resort). Either way nothing stays turned and the rim keeps its own deltas."""
    args, mid = _source_and_target(spike_cm=0.6)
    basis, target, faces = args[0], args[1], args[2]
    n = int(round(np.sqrt(len(target))))
    rim = np.zeros(len(target), bool)
    rim[np.arange(n) + (mid // n + 1) * n] = True               # the grid row next to the spike
    assert G.turned_triangles(target, faces, basis)[0].any()
    before = basis.copy()
    out = G.guard_folds(*args, pinned=rim, lid_shapes=(0,) if closes_lids else ())
    assert not G.turned_triangles(target, faces, out).any()
    assert np.array_equal(out[0, rim], before[0, rim])
    assert np.array_equal(out[1], before[1])
    assert 0 < abs(out[0, mid, 0]) < abs(before[0, mid, 0])


@pytest.fixture(scope="module")
def ict():
    from nfs.ict import load_ict
    return load_ict()


def test_an_ict_head_keeps_its_template_basis_bit_for_bit(ict, monkeypatch):
    """An ICT identity's skin through the template prior with and without the guard: the same bits."""
    import nfs.prior.template as T
    from nfs.data.benchmark import held_out_coeffs
    v = ict.vertices(held_out_coeffs(1_000_123))[: ict.skin_count].astype(np.float32)
    f = ict.region_faces("skin")
    guarded = T.template_expression_basis(v, faces=f)
    monkeypatch.setattr(T, "guard_folds", lambda basis, *a, **k: basis)
    assert np.array_equal(guarded, T.template_expression_basis(v, faces=f))
