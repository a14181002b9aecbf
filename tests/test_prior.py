"""The template prior (nfs/prior/): the ICT identity fit and the expression basis carried through it, on
real ICT identities the fit never saw, whole, remeshed and cropped."""
import numpy as np
import pytest
from scipy.spatial import cKDTree

from nfs.geometry.remesh import decimate
from nfs.ict import FACE_VERTEX_COUNT, load_ict
from nfs.prior import fit_ict_identity, fit_ict_weights, template_expression_basis


@pytest.fixture(scope="module")
def ict():
    return load_ict()


def identity(ict, seed):
    """A held-out-style identity: coefficients (100,) and its skin vertices (S, 3) cm."""
    c = np.random.default_rng(seed).standard_normal(100).astype(np.float32)
    return c, ict.vertices(c)


def transfer_error_mm(ict, basis, index):
    """Mean distance (mm) between the basis and the identity's true expression deltas at vertices `index`."""
    truth = ict.expression_deltas[:, index]
    return float(np.linalg.norm(basis - truth, axis=-1).mean() * 10)


def test_identity_fit_recovers_the_face(ict):
    c, v = identity(ict, 2024)
    fitted = fit_ict_identity(v)
    assert fitted.shape == (100,) and np.isfinite(fitted).all()
    face_fit = ict.vertices(fitted)
    mean_face = ict.vertices(None)
    err_fit = np.linalg.norm(face_fit - v, axis=1)[:FACE_VERTEX_COUNT].mean()
    err_mean = np.linalg.norm(mean_face - v, axis=1)[:FACE_VERTEX_COUNT].mean()
    # the fitted face is several times closer to the target than the mean face (cm)
    assert err_fit < 0.25 * err_mean, (err_fit, err_mean)
    # and the coefficients point the right way
    assert np.dot(fitted, c) / (np.linalg.norm(fitted) * np.linalg.norm(c)) > 0.7


def test_identity_fit_reaches_an_exaggerated_face(ict):
    """A face far from the mean (the 10 largest identity modes at |c| = 3-4): the fit slides all the way into
    place, vertex for vertex (it used to stop 10-13 mm off on the chin, down-weighting the points behind its
    half-way face), and the transferred expressions are the identity's own."""
    rng = np.random.default_rng(77)
    c = rng.standard_normal(100).astype(np.float32)
    c[:10] = rng.choice([-1.0, 1.0], 10) * rng.uniform(3.0, 4.0, 10)
    v = ict.vertices(c)[: ict.skin_count].astype(np.float64)
    fitted = fit_ict_identity(v)
    same_vertex_mm = np.linalg.norm(ict.vertices(fitted)[: ict.skin_count] - v, axis=1)[:FACE_VERTEX_COUNT] * 10
    assert same_vertex_mm.mean() < 0.5, same_vertex_mm.mean()
    basis = template_expression_basis(v, faces=ict.region_faces("skin"))
    index = np.arange(FACE_VERTEX_COUNT)
    assert transfer_error_mm(ict, basis[:, index], index) < 0.05


@pytest.mark.parametrize("kind", ["same topology", "remeshed", "face crop"])
def test_fitted_basis_beats_the_mean_face_basis(ict, kind):
    _, v = identity(ict, 2025)
    faces = ict.skin_mesh()[1]
    index = np.arange(len(v))
    if kind == "remeshed":
        v2, _ = decimate(v.astype(np.float64), faces, 3000)
        _, index = cKDTree(v).query(v2)      # truth: the deltas of the nearest original vertex
        v = v2.astype(np.float32)
    elif kind == "face crop":
        index = np.arange(FACE_VERTEX_COUNT)
        v = v[index]
    fitted = template_expression_basis(v)
    mean = template_expression_basis(v, fit_identity=False)
    assert fitted.shape == mean.shape == (53, len(v), 3)
    e_fit, e_mean = transfer_error_mm(ict, fitted, index), transfer_error_mm(ict, mean, index)
    assert e_fit < 0.6 * e_mean, (kind, e_fit, e_mean)


def test_weights_fit_on_the_fitted_basis_recovers_facs_weights(ict):
    _, v = identity(ict, 2026)
    basis = template_expression_basis(v)
    w = np.zeros((3, 53), np.float32)
    w[0, [10, 20]] = [0.8, 0.4]
    w[1, 30] = 1.0
    w[2, [5, 6, 40]] = [0.3, 0.3, 0.6]
    disp = np.einsum("tk,kvc->tvc", w, ict.expression_deltas[:, :len(v)])
    got = fit_ict_weights(disp, basis)
    assert np.abs(got - w).max() < 0.1, np.abs(got - w).max()


def lip_seam_jump(basis, faces, labels, shape):
    """Largest displacement difference (cm) across an edge joining an upper-lip and a lower-lip vertex."""
    from nfs.regions import REGION_NAMES
    up, low = REGION_NAMES.index("upper_lip"), REGION_NAMES.index("lower_lip")
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    la, lb = labels[e[:, 0]], labels[e[:, 1]]
    seam = e[((la == up) & (lb == low)) | ((la == low) & (lb == up))]
    d = basis[shape]
    return len(seam), float(np.linalg.norm(d[seam[:, 0]] - d[seam[:, 1]], axis=1).max()) if len(seam) else 0.0


def test_closed_mouth_stretches_instead_of_tearing(ict):
    """The stylized demo head models its mouth closed (lips joined by edges): opening the jaw must stretch the
    seam smoothly, not split its vertices between the lips (spikes); a mouth with a slit keeps its exact tear."""
    from app.demo_assets import demo_target_path
    from nfs.geometry.surface import closest_points_on_mesh
    from nfs.ict import EXPRESSION_NAMES
    from nfs.mesh.align import align_to_ict
    from nfs.mesh.clean import clean_mesh
    from nfs.io import load_mesh
    from nfs.prior.face_fit import fit_ict_identity, skin_template
    from nfs.regions import ict_region_labels

    jaw = EXPRESSION_NAMES.index("jawOpen")
    raw = load_mesh(demo_target_path("stylized_head"))
    clean = clean_mesh(raw.vertices, raw.faces)
    v = align_to_ict(clean.skin_points, clean.skin_faces).apply(clean.skin_points)
    f = clean.skin_faces
    mean, tf, _, identity = skin_template()
    fitted_face = mean + np.tensordot(fit_ict_identity(v), identity, axes=1)
    _, tri, bary, _ = closest_points_on_mesh(v, fitted_face, tf)
    labels = ict_region_labels()[tf[tri, np.argmax(bary, axis=1)]]
    n_seam, torn = lip_seam_jump(template_expression_basis(v), f, labels, jaw)
    _, stretched = lip_seam_jump(template_expression_basis(v, faces=f), f, labels, jaw)
    assert n_seam > 10, "the stylized head's mouth is modelled closed"
    assert stretched < 0.4 * torn, (stretched, torn)
    # the ICT topology has a slit: no edge joins the lips and the basis is untouched
    iv, itf = ict.skin_mesh()
    np.testing.assert_array_equal(template_expression_basis(iv, faces=itf), template_expression_basis(iv))
