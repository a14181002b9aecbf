"""Automatic alignment to the ICT frame: recovers known similarity transforms in any units and
orientation (including upside-down and facing -Z), handles other topologies and face-only crops,
and gives junk a low confidence."""
import json
import time

import fast_simplification
import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from nfs.ict import load_ict
from nfs.geometry.fits import umeyama_batch
from nfs.geometry.rotations import axis_rotations, rotation_angle_deg
from nfs.mesh import Alignment, align_to_ict, fit_residual_cm, refine_alignment
from nfs.mesh.align import snapped_unit

UPSIDE_DOWN = Rotation.from_euler("x", 180, degrees=True).as_matrix()
FACING_MINUS_Z = Rotation.from_euler("y", 180, degrees=True).as_matrix()
Z_UP = Rotation.from_euler("x", 90, degrees=True).as_matrix()


@pytest.fixture(scope="module")
def ict():
    return load_ict()


@pytest.fixture(scope="module")
def identity(ict):
    """A random ICT identity (cm, ICT frame) and its alignment as given."""
    v, f = ict.skin_mesh(ict.sample_identities(1, seed=11)[0])
    v = v.astype(np.float64)
    return v, f, align_to_ict(v, f)


def _move(v, rotation, scale, seed):
    """User-frame copy of ICT-frame points: p_user = scale * R p + t."""
    t = np.random.default_rng(seed).normal(size=3) * 30 * scale
    return scale * v @ rotation.T + t, t


def _assert_recovers(a: Alignment, rotation, scale, degrees=1.0, relative=0.01):
    """The alignment undoes p_user = scale * rotation @ p_ict + t."""
    assert rotation_angle_deg(a.rotation @ rotation, np.eye(3)) < degrees
    assert abs(a.scale * scale - 1) < relative


@pytest.mark.parametrize("rotation, scale, seed", [
    (UPSIDE_DOWN, 0.01, 0),                                          # metres, upside-down
    (FACING_MINUS_Z, 10.0, 1),                                       # millimetres, back to front
    (Rotation.random(random_state=3).as_matrix(), 1 / 20, 2),        # no unit, arbitrary rotation
    (Z_UP @ Rotation.random(random_state=8).as_matrix(), 10.0, 3),
], ids=["upside_down_m", "facing_minus_z_mm", "random_nounit", "random_mm"])
def test_recovers_similarity_of_ict_neutral(ict, rotation, scale, seed):
    v, f = ict.skin_mesh()
    v_user, t = _move(v.astype(np.float64), rotation, scale, seed)
    a = align_to_ict(v_user, f)
    _assert_recovers(a, rotation, scale)
    np.testing.assert_allclose(a.apply(v_user), v, atol=0.05)  # cm
    assert not a.is_partial and a.confidence > 0.9 and a.residual_cm < 0.05
    assert a.orientation_margin > 1.5  # wrong orientations fit clearly worse
    assert np.isclose(np.linalg.det(a.rotation), 1.0)


def test_random_identity_is_aligned_consistently(identity):
    """An identity's own best fit differs from the neutral by a few degrees/percent (its shape differs);
    moving it must move the alignment exactly with it."""
    v, f, reference = identity
    assert rotation_angle_deg(reference.rotation, np.eye(3)) < 8 and abs(reference.scale - 1) < 0.1
    rotation = Rotation.random(random_state=21).as_matrix()
    v_user, _ = _move(v, rotation, 10.0, 4)
    a = align_to_ict(v_user, f)
    assert rotation_angle_deg(a.rotation @ rotation, reference.rotation) < 1.0
    assert abs(a.scale * 10.0 / reference.scale - 1) < 0.01
    np.testing.assert_allclose(a.apply(v_user), reference.apply(v), atol=0.1)
    assert not a.is_partial and a.confidence > 0.3


@pytest.mark.parametrize("size, units_per_cm", [(1.06, 0.01), (0.93, 10.0), (1.04, 1 / 2.54)])
def test_a_head_of_a_persons_size_keeps_its_own_size(ict, size, units_per_cm):
    """A head a few per cent bigger or smaller than ICT's mean face, in metres, millimetres or inches, is aligned
    at its unit's exact scale (as a given alignment would be), not shrunk or grown to the mean face: its motions
    then keep their size."""
    v, f = ict.skin_mesh(None)
    rotation = Rotation.random(random_state=8).as_matrix()
    v_user, _ = _move(size * v.astype(np.float64), rotation, units_per_cm, 9)
    a = align_to_ict(v_user, f)
    assert a.scale * units_per_cm == pytest.approx(1.0, abs=1e-12)
    assert rotation_angle_deg(a.rotation @ rotation, np.eye(3)) < 1.0
    np.testing.assert_allclose(a.apply(v_user), size * v + (a.apply(v_user) - size * v).mean(0), atol=0.05)


def test_a_head_far_from_a_persons_size_keeps_the_fitted_scale(ict):
    """A toy-sized head (0.6x, in metres) is no common unit's: it is scaled to the mean face, as before."""
    v, f = ict.skin_mesh(None)
    v_user, _ = _move(0.6 * v.astype(np.float64), np.eye(3), 0.01, 3)
    a = align_to_ict(v_user, f)
    assert a.scale * 0.01 * 0.6 == pytest.approx(1.0, rel=0.01)
    assert snapped_unit(100.0 / 0.6) is None
    assert snapped_unit(97.2) == 100.0 and snapped_unit(0.104) == 0.1 and snapped_unit(2.4) == 2.54


def test_decimated_identity_with_other_topology(identity):
    v, f, reference = identity
    v_low, f_low = fast_simplification.simplify(v.astype(np.float32), f, target_reduction=0.7)
    assert len(v_low) < 0.4 * len(v)
    rotation = Rotation.random(random_state=5).as_matrix()
    v_user, _ = _move(v_low.astype(np.float64), rotation, 0.01, 6)
    a = align_to_ict(v_user, f_low)
    assert rotation_angle_deg(a.rotation @ rotation, reference.rotation) < 1.0
    assert abs(a.scale * 0.01 / reference.scale - 1) < 0.01
    assert not a.is_partial


@pytest.mark.parametrize("region, rotation, scale", [
    ("face", UPSIDE_DOWN @ Rotation.random(random_state=1).as_matrix(), 0.01),
    ("narrow_face", FACING_MINUS_Z, 10.0),
])
def test_face_crops_align_one_sided(ict, region, rotation, scale):
    v, f = ict.skin_mesh(region=region)
    v_user, _ = _move(v.astype(np.float64), rotation, scale, 7)
    a = align_to_ict(v_user, f)
    _assert_recovers(a, rotation, scale, degrees=2.0, relative=0.02)
    assert a.is_partial and a.confidence > 0.8 and a.face_coverage > 0.9
    assert a.orientation_margin > 1.5


def test_explicit_partial_flag(ict):
    v, f = ict.skin_mesh(region="face")
    rotation = Rotation.random(random_state=9).as_matrix()
    v_user, _ = _move(v.astype(np.float64), rotation, 1 / 20, 8)
    a = align_to_ict(v_user, f, partial=True)
    _assert_recovers(a, rotation, 1 / 20, degrees=2.0, relative=0.02)
    assert a.is_partial and a.candidates_tried > 100


@pytest.mark.parametrize("region", ["skin", "face"])
def test_wrong_orientations_fit_worse_even_after_refinement(ict, identity, region):
    """Start ICP upside-down or back to front on purpose: it settles in a clearly worse fit than the
    automatic winner, which is the right way up."""
    v, f, a = identity
    if region != "skin":
        v, f = ict.skin_mesh(ict.sample_identities(1, seed=11)[0], region=region)
        a = align_to_ict(v, f)
        assert a.is_partial and rotation_angle_deg(a.rotation, np.eye(3)) < 8
    for flip in (UPSIDE_DOWN, FACING_MINUS_Z):
        start = Alignment(a.scale, flip @ a.rotation, flip @ a.translation, a.residual_cm, a.confidence,
                          a.is_partial, 1)
        wrong = refine_alignment(v, f, start)
        assert rotation_angle_deg(wrong.rotation, a.rotation) > 90
        assert wrong.residual_cm > 2.5 * a.residual_cm and wrong.confidence < 0.5 * a.confidence
    assert abs(fit_residual_cm(v, f, a) - a.residual_cm) < 0.05


def test_junk_gets_low_confidence(identity):
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.1)
    rng = np.random.default_rng(0)
    blob_vertices = rng.normal(size=(500, 3))
    blob_faces = rng.integers(0, 500, size=(1000, 3))
    good = identity[2].confidence
    for vertices, faces in ((sphere.vertices, sphere.faces), (blob_vertices, blob_faces)):
        a = align_to_ict(vertices, faces)
        assert a.confidence < 0.3 and a.confidence < 0.5 * good


def test_alignment_maps_points_vectors_and_json(identity):
    a = identity[2]
    rng = np.random.default_rng(2)
    p, d = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    np.testing.assert_allclose(a.inverse(a.apply(p)), p, atol=1e-9)
    np.testing.assert_allclose(a.apply(p + d) - a.apply(p), a.apply_vectors(d), atol=1e-9)
    np.testing.assert_allclose(a.inverse_vectors(a.apply_vectors(d)), d, atol=1e-9)
    back = Alignment.from_dict(json.loads(json.dumps(a.to_dict())))
    np.testing.assert_allclose(back.apply(p), a.apply(p), atol=1e-12)
    assert back.is_partial == a.is_partial and back.candidates_tried == a.candidates_tried


def test_helpers():
    rotations = axis_rotations()
    assert rotations.shape == (24, 3, 3)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0)
    assert len({r.tobytes() for r in rotations.round(6)}) == 24
    rng = np.random.default_rng(4)
    src = rng.normal(size=(2, 50, 3))
    rotation = Rotation.random(2, random_state=4).as_matrix()
    dst = 3.0 * np.einsum("kij,knj->kni", rotation, src) + np.array([1.0, 2.0, 3.0])
    scale, rot, trans = umeyama_batch(src, dst, np.ones((2, 50)))
    np.testing.assert_allclose(scale, 3.0)
    np.testing.assert_allclose(rot, rotation, atol=1e-9)
    np.testing.assert_allclose(trans, [[1.0, 2.0, 3.0]] * 2, atol=1e-9)


def test_speed_on_an_11k_vertex_head(ict):
    v, f = ict.skin_mesh()
    v_user, _ = _move(v.astype(np.float64), Rotation.random(random_state=13).as_matrix(), 0.01, 9)
    fit_residual_cm(v, f, Alignment(1.0, np.eye(3), np.zeros(3), 0.0, 1.0, False, 1))  # builds the template
    start = time.process_time()
    align_to_ict(v_user, f)
    assert time.process_time() - start < 2.0  # CPU seconds: typically ~0.5 s on 2 shared cores
