"""Registration of the fitted ICT face onto a head whose mouth is smaller than any ICT identity's (stylised, anime
proportions), against correspondences known by construction (the head is an ICT head restyled vertex for vertex)."""
import numpy as np
import pytest

from nfs.data.artist import ArtistStyle, apply_style, feature_centres
from nfs.geometry.surface import closest_points_exact
from nfs.ict import load_ict
from nfs.prior.face_fit import fit_ict_face, skin_template
from nfs.prior.template import ict_opening_loops, register_openings
from nfs.regions import ict_region_labels


@pytest.fixture(scope="module")
def ict():
    return load_ict()


def _head(ict, seed, mouth_scale=None):
    c = np.random.default_rng(seed).standard_normal(100).astype(np.float32)
    v, f = ict.skin_mesh(c)
    v = v.astype(np.float64)
    if mouth_scale is None:
        return v, f
    m = apply_style(v, f, ict.expression_deltas[:, : len(v)], ict_region_labels(),
                    feature_centres(v, ict.landmarks68), ArtistStyle(feature_scales=(1.0, mouth_scale, 1.0)))
    return m.vertices.astype(np.float64), m.faces


def test_a_small_mouth_registers_the_fitted_face_onto_the_target_and_an_ict_mouth_is_left(ict):
    """A mouth 0.6x an ICT identity's: the fitted face is registered onto the head about the mouth (its mouth loop
    onto the head's loop, its surface onto the head's), so the ICT point each mouth vertex takes its deltas from
    is at least 35 % nearer the true one than on the fitted face alone; an ICT identity's mouth is not registered."""
    v, f = _head(ict, 1_000_011)
    fit = fit_ict_face(v)
    assert register_openings(fit.to_model(v), np.asarray(f, np.int64), fit.face(), skin_template()[1], None) is None

    v, f = _head(ict, 1_000_011, mouth_scale=0.6)
    f = np.asarray(f, np.int64)
    fit = fit_ict_face(v)
    q, face = fit.to_model(v), fit.face()
    mean, tf = skin_template()[:2]
    registered = register_openings(q, f, face, tf, None)
    assert registered is not None
    loop = ict_opening_loops()["mouth"]
    # the face's mouth loop now lies along the head's (the same ICT loop, restyled), within 0.3 mm
    a, b = q[loop], q[np.roll(loop, -1)]
    x = registered[loop][:, None]
    t = np.clip(((x - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1), 0.0, 1.0)
    assert np.linalg.norm(a + t[..., None] * (b - a) - x, axis=-1).min(1).max() < 0.03
    centre = mean[loop].mean(0)
    near = np.nonzero(np.linalg.norm(mean - centre, axis=1) < 3.0)[0]

    def correspondence_error_mm(x):
        _, tri, bary, _ = closest_points_exact(q[near], x, tf)
        at = np.einsum("vjc,vj->vc", mean[tf[tri]], bary)
        return float(np.median(np.linalg.norm(at - mean[near], axis=1)) * 10)

    before, after = correspondence_error_mm(face), correspondence_error_mm(registered)
    assert after < 0.65 * before, (before, after)
    # far from the mouth the face is not moved
    far = np.linalg.norm(face - face[loop].mean(0), axis=1) > 4.0
    assert np.abs(registered[far] - face[far]).max() == 0.0
