"""Openings (mouth slit, eye holes) and the slit-aware template prior, on ICT heads cut and re-modelled the way
artists model them, against labels and displacements known by construction."""
import numpy as np
import pytest

from nfs.data.artist import ArtistStyle, apply_style, feature_centres, find_openings
from nfs.geometry.openings import boundary_loops, geodesic_distances, loop_fill
from nfs.geometry.remesh import decimate
from nfs.geometry.surface import embed_mesh
from nfs.ict import EXPRESSION_NAMES, load_ict
from nfs.prior import fit_ict_face, opening_sides, template_expression_basis
from nfs.regions import REGION_NAMES, ict_region_labels

JAW = EXPRESSION_NAMES.index("jawOpen")
UPPER, LOWER = REGION_NAMES.index("upper_lip"), REGION_NAMES.index("lower_lip")


@pytest.fixture(scope="module")
def ict():
    return load_ict()


def identity_mesh(ict, seed):
    c = np.random.default_rng(seed).standard_normal(100).astype(np.float32)
    v, f = ict.skin_mesh(c)
    return v.astype(np.float64), f, c


def sides_of(v, f):
    """opening_sides as the prior computes them (ICT frame: the fit's rigid motion is tiny here)."""
    from nfs.geometry.surface import closest_points_on_mesh
    from nfs.prior.face_fit import skin_template
    fit = fit_ict_face(v)
    face, q = fit.face(), fit.to_model(v)
    _, tf, _, _ = skin_template()
    _, tri, bary, dist = closest_points_on_mesh(q, face, tf)
    labels = ict_region_labels()[tf[tri, np.argmax(bary, axis=1)]]
    return {o.name: (side, seam) for o, side, seam, _ in opening_sides(q, f, face, labels, dist)}


def test_boundary_loops_and_fill_are_consistently_oriented(ict):
    v, f = ict.skin_mesh()
    loops = boundary_loops(f)
    assert sorted(len(x) for x in loops) == [42, 42, 54, 74]       # eyes, neck, mouth
    mouth = max(loops, key=lambda x: -abs(v[x].mean(0)[1] + 3.0))
    pts, faces, w = loop_fill(v.astype(np.float64), mouth, len(v), rings=3)
    allf = np.concatenate([f, faces])
    e = np.concatenate([allf[:, [0, 1]], allf[:, [1, 2]], allf[:, [2, 0]]])
    assert len({tuple(x) for x in e.tolist()}) == len(e), "every directed edge once: one orientation"
    assert np.allclose(w.sum(1), 1.0)


def test_geodesic_distance_is_a_surface_distance(ict):
    v, f = ict.skin_mesh()
    d = geodesic_distances(v, f, [np.array([0])])[0]
    straight = np.linalg.norm(v - v[0], axis=1)
    beyond = straight > 1.0                                     # the heat method smooths the first millimetres
    assert d[0] == 0 and np.all(d[beyond] >= 0.95 * straight[beyond])   # never (beyond ~5 %) shorter
    far = straight > 5
    assert np.median(d[far] / straight[far]) > 1.05            # a curved face: the way round is longer


@pytest.mark.parametrize("kind", ["slit", "slit remeshed"])
def test_side_labels_on_a_cut_head_match_the_construction(ict, kind):
    """A held-out head with its mouth modelled open (jawOpen 0.2 in the rest): every upper-lip vertex gets the
    upper side of the mouth, every lower-lip vertex the lower side, from geodesics on the target (the straight
    distance across the slit is a few mm; the way round the mouth corner is centimetres)."""
    v, f, _ = identity_mesh(ict, 1_000_321)
    v = v + 0.2 * ict.expression_deltas[JAW, : len(v)]
    labels = ict_region_labels()
    if kind == "slit remeshed":
        v2, f2 = decimate(v, f, 4000)
        labels = labels[embed_mesh(v2, f2, v, f).nearest_template_vertex()]
        v, f = v2, f2
    side, seam = sides_of(v, f)["mouth"]
    up, low = labels == UPPER, labels == LOWER
    assert (side[up] == -1).mean() < 0.01 and (side[low] == 1).mean() < 0.01, "no lip vertex on the wrong side"
    assert (side[up] == 1).mean() > 0.8 and (side[low] == -1).mean() > 0.8, (      # 0: far off, or by a corner
        (side[up] == 1).mean(), (side[low] == -1).mean())
    inner = ict_region_labels()[ict.landmarks68[61:68]]                # the inner lip contour, at the slit
    if kind == "slit":
        assert np.array_equal(side[ict.landmarks68[61:68]][inner != REGION_NAMES.index("mouth_corner_L")],
                              np.where(inner == UPPER, 1, -1)[inner != REGION_NAMES.index("mouth_corner_L")])
    assert not seam.any(), "a slit is no seam"


def test_closest_points_never_cross_the_slit(ict):
    """On a slit head, the prior's jawOpen displacement of every lower-lip vertex is the truth's (it lands on
    ICT's lower lip), and the lip gap at jawOpen = 1 opens as far as the truth's."""
    v, f, c = identity_mesh(ict, 1_000_322)
    centres = feature_centres(v, ict.landmarks68)
    m = apply_style(v, f, ict.expression_deltas[:, : len(v)], ict_region_labels(), centres,
                    ArtistStyle(rest_jaw=0.2, mouth_bag=True))
    basis = template_expression_basis(m.vertices, faces=m.faces)
    lips = np.isin(ict_region_labels(), [UPPER, LOWER])
    err = np.linalg.norm(basis[JAW, : m.n_original][lips] - m.basis[JAW, : m.n_original][lips], axis=-1) * 10
    assert err.max() < 1.0, err.max()
    lm = ict.landmarks68
    pairs = np.array([(lm[61], lm[67]), (lm[62], lm[66]), (lm[63], lm[65])])
    gap = lambda d: np.linalg.norm((m.vertices + d)[pairs[:, 0]] - (m.vertices + d)[pairs[:, 1]], axis=1).mean()
    assert 0.95 < gap(basis[JAW]) / gap(m.basis[JAW]) < 1.05


def test_mouth_bag_follows_the_lip_it_hangs_from(ict):
    """Bag vertices by the upper half of the lip loop take the upper side, those by the lower half the lower."""
    v, f, _ = identity_mesh(ict, 1_000_323)
    centres = feature_centres(v, ict.landmarks68)
    loop = find_openings(v, f, centres)["mouth"]
    m = apply_style(v, f, ict.expression_deltas[:, : len(v)], ict_region_labels(), centres,
                    ArtistStyle(rest_jaw=0.15, mouth_bag=True))
    side, _ = sides_of(m.vertices.astype(np.float64), m.faces)["mouth"]
    first_ring = np.arange(m.n_original, m.n_original + len(loop))     # the bag ring next to the lips
    loop_labels = ict_region_labels()[loop]
    on_upper, on_lower = first_ring[loop_labels == UPPER], first_ring[loop_labels == LOWER]
    assert (side[on_upper] == 1).mean() > 0.9 and (side[on_lower] == -1).mean() > 0.9


def _turned_over(rest, moved, faces):
    """(F,) bool: triangles whose normal points against their rest normal."""
    def normals(x):
        return np.cross(x[faces[:, 1]] - x[faces[:, 0]], x[faces[:, 2]] - x[faces[:, 0]])
    return (normals(moved) * normals(rest)).sum(1) < 0


@pytest.mark.parametrize("style, shapes", [
    (ArtistStyle(join_lips=True), ("jawOpen", "mouthFunnel", "mouthPucker", "mouthSmile_L")),
    (ArtistStyle(join_lids=True), ("eyeBlink_L", "eyeBlink_R", "eyeWide_L")),
])
def test_joined_openings_stretch_without_turning_triangles_over(ict, style, shapes):
    """Lips or lids joined into one surface (a cap over the opening): the ICT vertices keep their own
    displacements (closest points that face the right way, a fit the cap does not pull), the cap stretches, and
    no triangle the truth keeps facing forwards turns over."""
    v, f, _ = identity_mesh(ict, 1_000_001)
    centres = feature_centres(v, ict.landmarks68)
    m = apply_style(v, f, ict.expression_deltas[:, : len(v)], ict_region_labels(), centres, style)
    basis = template_expression_basis(m.vertices, faces=m.faces)
    for name in shapes:
        k = EXPRESSION_NAMES.index(name)
        err = np.linalg.norm(basis[k, : m.n_original] - m.basis[k, : m.n_original], axis=-1) * 10
        assert err.max() < 1.0, (name, err.max())
        truth_over = _turned_over(m.vertices, m.vertices + m.basis[k], m.faces)
        over = _turned_over(m.vertices, m.vertices + basis[k], m.faces) & ~truth_over
        assert over.sum() <= 1, (name, int(over.sum()))


@pytest.mark.parametrize("style", [ArtistStyle(join_lips=True), ArtistStyle(join_lids=True),
                                   ArtistStyle(rest_jaw=0.15, mouth_bag=True)],
                         ids=["joined_lips", "joined_lids", "mouth_bag"])
def test_radial_fill_recovers_how_a_cap_or_bag_hangs_from_its_rim(ict, style):
    """A cap or bag built by `loop_fill` (rings shrunk towards the loop's centre): `radial_fill` finds from the
    mesh alone which rim vertex each added vertex hangs from and how deep it is, so values carried radially are
    the construction's own, also where the lips touch at rest (upper and lower rim vertices coincide)."""
    from nfs.geometry.openings import carry_radially, radial_fill
    v, f, _ = identity_mesh(ict, 1_000_002)
    centres = feature_centres(v, ict.landmarks68)
    m = apply_style(v, f, ict.expression_deltas[:, : len(v)], ict_region_labels(), centres, style)
    added = np.arange(len(m.vertices)) >= m.n_original
    fill = radial_fill(m.vertices, m.faces, added)
    assert sum(len(comp) for comp, *_ in fill) == added.sum()
    values = m.basis.copy()
    values[:, added] = 0.0
    carried = carry_radially(values, fill)
    err = np.abs(carried[:, added] - m.basis[:, added]).max()
    assert err < 1e-4, err


def test_joined_lips_and_bag_keep_facing_in_dense_random_expressions(ict):
    """Dense random expressions (up to 30 shapes at once, like the eval's): no triangle of a mouth cap or a mouth
    bag that the truth keeps facing (within 75 degrees of its rest normal) turns over under the template prior,
    save slivers whose corners all sit on the truth (within 0.1 mm: the truth turns them nearly edge-on too)."""
    from nfs.data.subjects import sample_expressions
    from nfs.eval.metrics import facing_cos
    weights = sample_expressions(np.random.default_rng(5), 24)
    for seed, style in ((1_000_003, ArtistStyle(join_lips=True)), (1_000_004, ArtistStyle(rest_jaw=0.1,
                                                                                          mouth_bag=True))):
        v, f, _ = identity_mesh(ict, seed)
        m = apply_style(v, f, ict.expression_deltas[:, : len(v)], ict_region_labels(),
                        feature_centres(v, ict.landmarks68), style)
        basis = template_expression_basis(m.vertices, faces=m.faces)
        truth, ours = (facing_cos(m.vertices, m.vertices[None] + np.einsum("tk,kvc->tvc", weights, b), m.faces)
                       for b in (m.basis, basis))
        err_mm = np.linalg.norm(np.einsum("tk,kvc->tvc", weights, basis - m.basis), axis=-1) * 10
        off_truth = (err_mm[:, m.faces] > 0.1).any(-1)                      # (T, F)
        turned = ((ours < 0) & (truth > np.cos(np.radians(75.0))) & off_truth).any(0)
        assert turned.sum() == 0, (style, int(turned.sum()))
        assert err_mm.max() < 1.0, (style, float(err_mm.max()))


def test_big_eyes_are_met_by_a_local_warp_so_a_blink_still_closes_them(ict):
    """Eyes modelled 1.4x bigger than the fitted ICT face can make them (stylised proportions): the template prior
    warps the fitted face about each eye opening (width ratio and shift, corner to corner) and pushes the blink
    through the warp's Jacobian, so at eyeBlink = 1 the lid gap is within 0.6 mm of the truth's (about 1 mm off
    without the warp); an ICT head is left as is."""
    from nfs.prior.face_fit import fit_ict_face
    from nfs.prior.opening_warp import fit_opening_warp
    from nfs.prior.template import ict_opening_loops
    v, f, _ = identity_mesh(ict, 1_000_005)
    fit = fit_ict_face(v)
    assert fit_opening_warp(fit.to_model(v), f, fit.face(), ict_opening_loops()) is None
    m = apply_style(v, f, ict.expression_deltas[:, : len(v)], ict_region_labels(),
                    feature_centres(v, ict.landmarks68), ArtistStyle(feature_scales=(1.4, 1.0, 1.0)))
    fit = fit_ict_face(m.vertices)
    warp = fit_opening_warp(fit.to_model(m.vertices), m.faces, fit.face(), ict_opening_loops())
    assert warp is not None and set(warp.names) == {"eye_L", "eye_R"}
    assert (np.diag(warp.linear[0]) > 0.15).sum() == 2          # both eyes found wider, in the face plane
    lm = ict.landmarks68
    lids = np.array([(lm[37], lm[41]), (lm[38], lm[40]), (lm[43], lm[47]), (lm[44], lm[46])])
    blink = np.zeros(len(EXPRESSION_NAMES), np.float32)
    blink[[EXPRESSION_NAMES.index("eyeBlink_L"), EXPRESSION_NAMES.index("eyeBlink_R")]] = 1.0

    def gap_error_mm(basis):
        pos, truth = (m.vertices + np.einsum("k,kvc->vc", blink, b) for b in (basis, m.basis))
        gap = lambda x: np.linalg.norm(x[lids[:, 0]] - x[lids[:, 1]], axis=1)  # noqa: E731
        return float(np.abs(gap(pos) - gap(truth)).mean() * 10)
    warped = gap_error_mm(template_expression_basis(m.vertices, faces=m.faces))
    plain = gap_error_mm(template_expression_basis(m.vertices, faces=m.faces, warp_openings=False))
    assert warped < 0.6 and warped < 0.6 * plain, (warped, plain)


def test_polar_hang_recovers_a_cap_built_by_shrinking_its_loop():
    """Points of rings shrunk toward a bent, elongated loop's centroid (as `loop_fill` builds a cap), and points
    between the ring copies of two loop vertices: `polar_hang` gives back the loop vertices they come from, the
    blend between them and the depth, so values carried that way are the construction's own."""
    from nfs.geometry.openings import polar_hang
    angle = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    loop = np.stack([2.5 * np.cos(angle), 0.4 * np.sin(angle), -0.3 * np.cos(angle) ** 2], 1)   # a mouth's rim
    centre = loop.mean(0)
    values = np.random.default_rng(0).standard_normal((5, len(loop), 3))
    for s_true in (0.0, 0.3, 0.75):
        for frac in (0.0, 0.4):
            i = np.arange(len(loop))
            j = (i + 1) % len(loop)
            on_loop = (1 - frac) * loop[i] + frac * loop[j]
            points = (1 - s_true) * on_loop + s_true * centre
            a, b, w, s = polar_hang(points, loop)
            assert np.allclose(s, s_true, atol=1e-6)
            rebuilt = (1 - s)[:, None] * (w[:, None] * loop[a] + (1 - w)[:, None] * loop[b]) + s[:, None] * centre
            assert np.abs(rebuilt - points).max() < 1e-6
            carried = (1 - s)[None, :, None] * (w[None, :, None] * values[:, a] + (1 - w)[None, :, None]
                                                * values[:, b]) + s[None, :, None] * values.mean(1, keepdims=True)
            truth = (1 - s_true) * ((1 - frac) * values[:, i] + frac * values[:, j]) \
                + s_true * values.mean(1, keepdims=True)
            assert np.abs(carried - truth).max() < 1e-6


def test_hang_caps_hangs_a_thin_cap_and_leaves_a_bag():
    """`hang_caps` takes a connected part of the stretch geometry that lies on the membrane a mouth loop spans
    (a cap across joined lips) and leaves one that hangs deep behind it (a bag)."""
    from nfs.prior.template import hang_caps
    angle = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    loop = np.stack([2.5 * np.cos(angle), 0.4 * np.sin(angle), np.zeros_like(angle)], 1)
    n = len(loop)
    rings = [loop] + [(1 - s) * loop + s * loop.mean(0) for s in (1 / 3, 2 / 3)]
    faces = []
    for r in range(2):
        for k in range(n):
            a, b, c, d = r * n + k, r * n + (k + 1) % n, (r + 1) * n + k, (r + 1) * n + (k + 1) % n
            faces += [[a, b, d], [a, d, c]]
    faces = np.asarray(faces)
    values = np.random.default_rng(1).standard_normal((3, n, 3)).astype(np.float32)
    for depth, hung_expected in ((0.0, True), (1.5, False)):
        points = np.concatenate([r + np.array([0, 0, -depth * (i > 0)]) for i, r in enumerate(rings)])
        stretch = np.arange(len(points)) >= n
        basis = np.zeros((3, len(points), 3), np.float32)
        hung = hang_caps(basis, points, faces, stretch, loop, values)
        assert hung[stretch].all() == hung_expected and not hung[~stretch].any()
        if hung_expected:
            inner = (1 / 3) * values + (2 / 3) * values.mean(1, keepdims=True)
            assert np.abs(basis[:, 2 * n:] - inner).max() < 1e-5
