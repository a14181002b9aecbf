"""Checks of the numpy software rasterizer (nfs/render.py); no timing assertions."""
import numpy as np
import pytest

from nfs.ict import load_ict
from nfs.regions import ict_region_labels, region_colors, region_vertex_indices
from nfs.render import VIEWS, rasterize, render_normal_depth, render_shaded, to_pixels

SIZE = 128


@pytest.fixture(scope="module")
def ict_mesh():
    return load_ict().skin_mesh()


@pytest.fixture(scope="module")
def normal_depth(ict_mesh):
    return render_normal_depth(*ict_mesh, size=SIZE)


def pixel_of(point, size=SIZE):
    px, py, _ = to_pixels(np.asarray(point, np.float64)[None], size)
    return int(py[0]), int(px[0])


def test_normal_depth_shape_and_range(normal_depth):
    assert normal_depth.shape == (4, SIZE, SIZE) and normal_depth.dtype == np.float32
    depth = normal_depth[3]
    hit = depth > 0
    assert 0.2 < hit.mean() < 0.9
    assert depth.max() <= 1.0
    lengths = np.linalg.norm(normal_depth[:3, hit], axis=0)
    assert np.allclose(lengths, 1.0, atol=1e-3)


def test_background_is_zero(normal_depth):
    hit = normal_depth[3] > 0
    assert np.all(normal_depth[:, ~hit] == 0)
    for corner in (normal_depth[:, 0, 0], normal_depth[:, 0, -1], normal_depth[:, -1, 0], normal_depth[:, -1, -1]):
        assert np.all(corner == 0)


def test_nose_tip_is_nearer_than_the_cheeks(ict_mesh, normal_depth):
    v = ict_mesh[0]
    nose_tip = v[load_ict().landmarks68[30]]
    tip = normal_depth[3][pixel_of(nose_tip)]
    for side in ("cheek_L", "cheek_R"):
        cheek = v[region_vertex_indices(side)].mean(axis=0)
        assert tip > normal_depth[3][pixel_of(cheek)] > 0


def test_normals_face_the_camera_in_the_face_centre(ict_mesh, normal_depth):
    v = ict_mesh[0]
    i, j = pixel_of(v[load_ict().landmarks68[30]])            # nose tip
    assert normal_depth[2, i, j] > 0.8
    i, j = pixel_of([0.0, 8.0, 10.0])                          # middle of the forehead
    patch = normal_depth[:3, i - 2:i + 3, j - 2:j + 3].reshape(3, -1)
    assert patch[2].min() > 0.8 and np.abs(patch[0]).max() < 0.3
    # the character's left cheek (+X, image right) leans towards +X
    i, j = pixel_of(v[region_vertex_indices("cheek_L")].mean(axis=0))
    assert normal_depth[0, i, j] > 0.1 and normal_depth[2, i, j] > 0.3


def test_left_of_the_character_is_on_the_image_right(ict_mesh):
    v = ict_mesh[0]
    assert pixel_of(v[region_vertex_indices("ear_L")].mean(axis=0))[1] > SIZE // 2
    assert pixel_of([0.0, 10.0, 5.0])[0] < pixel_of([0.0, -10.0, 5.0])[0]


def test_mesh_off_the_box_renders(ict_mesh):
    v, f = ict_mesh
    far = render_normal_depth(v + np.array([500.0, 0.0, 0.0], np.float32), f, size=32)
    assert far.shape == (4, 32, 32) and np.all(far == 0)
    half = render_normal_depth(v + np.array([20.0, 0.0, 40.0], np.float32), f, size=32)
    assert 0 < (half[3] > 0).mean() < 0.5
    assert half[3].max() <= 1.0


def test_rasterize_covers_a_triangle_and_keeps_the_nearest():
    px = np.array([2.0, 30.0, 2.0, 2.0, 30.0, 2.0])
    py = np.array([2.0, 2.0, 30.0, 2.0, 2.0, 30.0])
    depth = np.array([0.2, 0.2, 0.2, 0.8, 0.8, 0.8])
    faces = np.array([[0, 1, 2], [3, 5, 4]])               # same triangle twice, the second nearer
    face_id, bary = rasterize(px, py, depth, faces, 32, 32)
    covered = face_id >= 0
    assert abs(covered.sum() - 0.5 * 28 * 28) < 30
    assert np.all(face_id[covered] == 1)
    assert np.allclose(bary[covered].sum(-1), 1.0, atol=1e-5)


def test_shaded_render(ict_mesh):
    v, f = ict_mesh
    colors = region_colors()[ict_region_labels()]
    for view in VIEWS:
        img = render_shaded(v, f, colors, size=96, view=view)
        assert img.shape == (96, 96, 3) and img.dtype == np.uint8
        assert np.all(img[0, 0] == 255) and (img.min(axis=-1) < 250).mean() > 0.15
    plain = render_shaded(v, f, size=64, interpolate_colors=False)
    assert plain.shape == (64, 64, 3)
    with pytest.raises(ValueError):
        render_shaded(v, f, size=32, view="top")
