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


def _mix_that_folds():
    """A target grid whose two shapes each push the middle vertex 0.12 cm along x (0.6 of the grid's spacing:
    neither turns a triangle over alone, both together do) and a source whose same shapes are smooth (a bump and a
    slide): the frame guard, the middle vertex and the weights of a frame with both shapes on."""
    args, mid = _source_and_target(spike_cm=0.0)
    basis, target, faces, sv, sf, deltas, tri, bary = args[:8]
    basis[:, mid, 0] += 0.12
    assert not G.turned_triangles(target, faces, basis).any()
    assert G.turned_triangles(target, faces, basis.sum(0, keepdims=True)).any()
    guard = G.FrameGuard(target, faces, G.SourceImage(sv, sf, deltas, tri, bary))
    return guard, basis, mid


def test_a_mix_of_shapes_that_turns_triangles_is_mended_frame_by_frame():
    guard, basis, mid = _mix_that_folds()
    weights = np.array([[1.0, 1.0], [1.0, 0.0], [0.3, 0.3]])
    frames = np.einsum("tk,kvc->tvc", weights, basis).astype(np.float32)
    raw = frames.copy()
    assert guard.mend(frames, weights) == 1
    assert not len(guard.turned(frames[0]))
    assert np.array_equal(frames[1:], raw[1:])                      # frames that fold nothing keep their bits
    far = np.linalg.norm(guard.v - guard.v[mid], axis=1) > 1.0
    assert np.array_equal(frames[0, far], raw[0, far])              # and a mended frame changes only near its fold
    assert 0 < frames[0, mid, 0] < raw[0, mid, 0]


def test_a_mix_the_source_turns_too_is_kept():
    guard, basis, _ = _mix_that_folds()
    guard.image.deltas = basis.copy()                # the source itself folds there
    frames = basis.sum(0, keepdims=True).astype(np.float32)
    raw = frames.copy()
    assert guard.mend(frames, np.ones((1, 2))) == 0
    assert np.array_equal(frames, raw)


def test_a_fold_that_starts_is_mended_by_a_change_that_starts():
    """Both shapes ramping up together: the mended frames move on smoothly (no frame jumps more than a few times
    the raw clip's own step), and the middle vertex's motion never runs backwards."""
    guard, basis, mid = _mix_that_folds()
    w = np.linspace(0.0, 1.0, 41)
    weights = np.stack([w, w], 1)
    frames = np.einsum("tk,kvc->tvc", weights, basis).astype(np.float32)
    raw_step = np.abs(np.diff(frames, axis=0)).max()
    assert guard.mend(frames, weights) > 0
    assert all(not len(guard.turned(f)) for f in frames)
    assert np.abs(np.diff(frames, axis=0)).max() < 3.0 * raw_step
    assert (np.diff(frames[:, mid, 0]) > -1e-4).all()


def _random_mixes(basis: np.ndarray, seed: int = 3, count: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Weights (count, K) of random mixes of about a third of the shapes, and their frames (count, V, 3)."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0, 1, (count, len(basis))) * (rng.uniform(0, 1, (count, len(basis))) < 0.3)
    return weights, np.einsum("tk,kvc->tvc", weights, basis).astype(np.float32)


def _ict_head_and_mixes(ict):
    """An ICT identity's frame guard (as the pipeline builds it), random mixes' weights and their frames."""
    import nfs.prior.template as T
    from nfs.data.benchmark import held_out_coeffs
    v = ict.vertices(held_out_coeffs(1_000_124))[: ict.skin_count].astype(np.float32)
    basis, guard = T.template_expression_basis(v, faces=ict.region_faces("skin"), with_frame_guard=True)
    return (guard, *_random_mixes(basis))


def _turned_facing_image(guard, frames, weights, facing_cos) -> int:
    """How many triangles the frames turn over whose image the source keeps within acos(facing_cos) of facing."""
    counts = 0
    for f, w in zip(frames, weights):
        t = guard.turned(f)
        counts += int(guard.image.keeps_facing(w, guard.faces[t], facing_cos).sum())
    return counts


def test_an_ict_head_gets_a_faithful_frame_guard_that_keeps_the_sources_own_folds(ict):
    """An ICT identity is on its fitted face: its frame guard is the faithful one (no fills), its random mixes'
    folds are ICT's own (the lips rolling in) and stay, and nothing the source keeps facing comes back turned."""
    guard, weights, frames = _ict_head_and_mixes(ict)
    assert guard is not None and guard.faithful
    raw = frames.copy()
    assert sum(len(guard.turned(f)) for f in frames) > 0      # ICT's own mixes turn triangles (the lips roll)
    guard.mend(frames, weights)
    assert _turned_facing_image(guard, frames, weights, G.SOURCE_FACING_COS) == 0
    assert sum(len(guard.turned(f)) for f in frames) > 0      # ... and still do
    assert np.linalg.norm(frames - raw, axis=-1).max() < 0.01  # cm: the source's own deformation, all but kept


def test_a_guard_forced_onto_an_ict_head_mends_only_slight_folds(ict, monkeypatch):
    """The guard of heads unlike the fitted face, built anyway on an ICT identity: it leaves the folds of random
    mixes of all 53 shapes that the source turns past 120 degrees (the lips rolling in) and mends most of the
    slight ones, moving the frames by little."""
    monkeypatch.setattr(G, "GUARDED_SHARE", -1.0)
    guard, weights, frames = _ict_head_and_mixes(ict)
    assert not guard.faithful
    raw = frames.copy()
    assert sum(len(guard.turned(f)) for f in frames) > 0      # ICT's own mixes turn triangles (the lips roll)
    before = _turned_facing_image(guard, frames, weights, G.FRAME_FACING_COS)
    guard.mend(frames, weights)
    assert _turned_facing_image(guard, frames, weights, G.FRAME_FACING_COS) < 0.5 * before
    moved = np.linalg.norm(frames - raw, axis=-1)
    assert moved.max() < 1.0 and moved.mean() < 0.005           # cm: a few vertices, by millimetres


def test_two_requests_mending_one_target_at_once_get_what_one_alone_gets():
    """The app may decode one prepared target from two requests at once: the guard's lazily built Laplacian and
    solvers are shared, and each request's frames come out as they would alone."""
    import threading
    w = np.linspace(0.0, 1.0, 30)
    weights = np.stack([w, w], 1)
    guard, basis, _ = _mix_that_folds()
    alone = np.einsum("tk,kvc->tvc", weights, basis).astype(np.float32)
    guard.mend(alone, weights)
    guard, basis, _ = _mix_that_folds()
    runs = [np.einsum("tk,kvc->tvc", weights, basis).astype(np.float32) for _ in range(2)]
    threads = [threading.Thread(target=guard.mend, args=(r, weights)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in runs:
        assert np.array_equal(r, alone)


def test_a_fold_off_the_fitted_face_is_mended_even_where_its_image_folds_too():
    """Vertices off the fitted face have no faithful image there: a fold among them is mended whatever the source
    does at their closest points."""
    guard, basis, mid = _mix_that_folds()
    guard.image.deltas = basis.copy()                # the closest points' source folds as the target does
    guard.off_surface = np.linalg.norm(guard.v - guard.v[mid], axis=1) < 0.5
    frames = basis.sum(0, keepdims=True).astype(np.float32)
    assert guard.mend(frames, np.ones((1, 2))) == 1
    assert not len(guard.turned(frames[0]))


def test_a_fold_a_little_off_the_fitted_face_is_not_the_sources_own_on_a_guarded_head():
    """A guarded head's triangle whose corners lie on the fitted face within ON_SURFACE_CM but farther than
    IMAGE_ON_FACE_CM from it (a feature a little unlike the face's) is not its image: its fold is mended though the
    image folds too; the same fold on the face is the source's own and kept."""
    guard, basis, mid = _mix_that_folds()
    guard.image.deltas = basis.copy()                # the closest points' source folds as the target does
    near = np.linalg.norm(guard.v - guard.v[mid], axis=1) < 0.5
    assert not guard.off_surface[near].any() and not guard.faithful
    on_face = basis.sum(0, keepdims=True).astype(np.float32)
    assert guard.mend(on_face, np.ones((1, 2))) == 0                 # on the face: the source's own
    a_little_off = G.FrameGuard(guard.v, guard.faces, guard.image, off_image=near)
    frames = basis.sum(0, keepdims=True).astype(np.float32)
    assert a_little_off.mend(frames, np.ones((1, 2))) == 1
    assert not len(a_little_off.turned(frames[0]))
    assert G.IMAGE_ON_FACE_CM < G.ON_SURFACE_CM


def test_a_loosely_fitted_heads_fold_is_the_sources_own_only_where_the_mean_face_folds_it_too():
    """A faithful guard keeps a fold its image makes; on a head fitted loosely (a `mean_image` given) it keeps it
    only where ICT's mean face turns the image too, clearly (past acos(MEAN_FOLD_COS)): a fold only the fitted
    identity makes is unfolded."""
    import copy
    guard, basis, _ = _mix_that_folds()
    facing = guard.image                              # the source's smooth shapes: the image keeps facing
    folding = copy.copy(facing)
    folding.deltas = basis.copy()                     # the source folds as the target does

    def mend(mean_image) -> tuple[int, int]:
        frames = basis.sum(0, keepdims=True).astype(np.float32)
        g = G.FrameGuard(guard.v, guard.faces, folding, faithful=True, mean_image=mean_image)
        assert len(g.turned(frames[0]))
        return g.mend(frames, np.ones((1, 2))), len(g.turned(frames[0]))

    assert mend(None)[0] == 0                         # the fitted face's image folds: the source's own, kept
    assert mend(folding)[0] == 0                      # ... and the mean face's too: kept
    assert mend(facing) == (1, 0)                     # the mean face keeps it facing: unfolded
    assert G.MEAN_FOLD_COS < 0.0


def test_only_a_loosely_fitted_head_judges_folds_by_the_mean_face_too(ict):
    """The pipeline's faithful guard carries the mean face's image on a warped ICT head (a smooth offset from its
    fitted face, about 24 um at the median), not on an ICT identity (2 um) nor on a copy of one jittered by 30 um
    along its normals (a rounded or noisy file: its offset is noise, not a shape)."""
    import nfs.prior.template as T
    from nfs.data.benchmark import build_target
    from nfs.geometry.normals import vertex_normals
    warped = build_target("warp_wendland", 0, ict)
    _, guard = T.template_expression_basis(warped.vertices.astype(np.float32), faces=warped.faces,
                                           with_frame_guard=True)
    assert guard.faithful and guard.mean_image is not None
    v, f = ict.vertices()[: ict.skin_count].astype(np.float64), ict.region_faces("skin")
    _, guard = T.template_expression_basis(v.astype(np.float32), faces=f, with_frame_guard=True)
    assert guard.faithful and guard.mean_image is None
    jitter = np.random.default_rng(0).normal(0.0, 0.003, len(v))[:, None] * vertex_normals(v, f)
    _, guard = T.template_expression_basis((v + jitter).astype(np.float32), faces=f, with_frame_guard=True)
    assert guard.faithful and guard.mean_image is None


def test_a_frame_folding_most_of_the_mesh_is_left_as_decoded(monkeypatch):
    """A head so unlike a face that a frame folds more triangles than the guard's cap is not mended (mending would
    cost seconds a frame and not help); below the cap the same frame is."""
    guard, basis, _ = _mix_that_folds()
    frames = basis.sum(0, keepdims=True).astype(np.float32)
    raw = frames.copy()
    monkeypatch.setattr(G, "FRAME_MAX_FOLDED", 0)
    monkeypatch.setattr(G, "FRAME_MAX_FOLDED_SHARE", 0.0)
    assert guard.mend(frames, np.ones((1, 2))) == 0
    assert np.array_equal(frames, raw)
    monkeypatch.setattr(G, "FRAME_MAX_FOLDED", 500)
    assert guard.mend(frames, np.ones((1, 2))) == 1


def test_a_guard_travels_between_processes_and_mends_as_before():
    """Batch on Ray returns prepared targets from its tasks (serialised as Ray does, with pickle): a guard that has
    mended frames (a lock and factorisations inside) travels, and mends the same frames the same way."""
    import pickle
    w = np.linspace(0.0, 1.0, 20)
    weights = np.stack([w, w], 1)
    guard, basis, _ = _mix_that_folds()
    here = np.einsum("tk,kvc->tvc", weights, basis).astype(np.float32)
    there = here.copy()
    guard.mend(here, weights)
    moved = pickle.loads(pickle.dumps(guard))
    assert moved.mend(there, weights) > 0
    assert np.array_equal(there, here)
