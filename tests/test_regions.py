"""Checks of the ICT skin region labels (nfs/regions.py, nfs/resources/ict_regions.npz)."""
import importlib.util

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from nfs import REPO_ROOT
from nfs.ict import EXPRESSION_NAMES, SKIN_VERTEX_COUNT, load_ict
from nfs.regions import (N_REGIONS, REGION_NAMES, REGIONS_PATH, ict_region_labels, mirror_region_index,
                         region_colors, region_vertex_indices)


@pytest.fixture(scope="module")
def ict():
    return load_ict()


@pytest.fixture(scope="module")
def labels():
    return ict_region_labels()


def region_of(name):
    return REGION_NAMES.index(name)


def test_every_skin_vertex_has_a_valid_label(labels):
    assert labels.shape == (SKIN_VERTEX_COUNT,) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < N_REGIONS
    assert 18 <= N_REGIONS <= 26


def test_file_stores_plain_arrays():
    data = np.load(REGIONS_PATH, allow_pickle=False)
    assert data["labels"].dtype == np.int8
    assert tuple(str(s) for s in data["names"]) == REGION_NAMES


def test_every_region_non_empty_and_mostly_one_piece(ict, labels):
    faces = ict.region_faces("skin")
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    for r, name in enumerate(REGION_NAMES):
        inside = labels == r
        assert inside.sum() >= 50, name
        keep = inside[edges[:, 0]] & inside[edges[:, 1]]
        graph = sp.coo_matrix((np.ones(keep.sum()), (edges[keep, 0], edges[keep, 1])), shape=(len(labels),) * 2)
        _, comp = connected_components(graph, directed=False)
        largest = np.bincount(comp[inside]).max()
        assert largest >= 0.95 * inside.sum(), name


def test_labels_are_mirror_symmetric(ict, labels):
    v = ict.neutral[:SKIN_VERTEX_COUNT]
    _, partner = cKDTree(v).query(v * np.array([-1.0, 1.0, 1.0]))
    mismatch = np.mean(mirror_region_index()[labels[partner]] != labels)
    assert mismatch < 0.01


def test_mirror_index_pairs_left_and_right():
    flip = mirror_region_index()
    assert np.array_equal(flip[flip], np.arange(N_REGIONS))
    assert REGION_NAMES[flip[region_of("brow_L")]] == "brow_R"
    assert flip[region_of("nose")] == region_of("nose")


def test_palette_is_distinct():
    colors = region_colors()
    assert colors.shape == (N_REGIONS, 3) and colors.dtype == np.uint8
    assert len(np.unique(colors, axis=0)) == N_REGIONS


def test_landmarks_fall_in_the_expected_regions(ict, labels):
    name = [REGION_NAMES[k] for k in labels[ict.landmarks68]]
    # Multi-PIE numbering: 17-21 the character's right brow (-X), 22-26 the left (+X)
    assert all(n == "brow_R" for n in name[17:22]) and all(n == "brow_L" for n in name[22:27])
    assert all(n == "nose" for n in name[27:36])
    assert all(n in ("upper_eyelid_R", "lower_eyelid_R") for n in name[36:42])
    assert all(n in ("upper_eyelid_L", "lower_eyelid_L") for n in name[42:48])
    assert all(n in ("upper_lip", "lower_lip", "mouth_corner_L", "mouth_corner_R") for n in name[48:68])
    assert name[51] == "upper_lip" and name[57] == "lower_lip"
    assert name[48] == "mouth_corner_R" and name[54] == "mouth_corner_L"
    assert name[8] == "chin"


def test_blink_moves_the_left_eyelids(ict, labels):
    motion = np.linalg.norm(ict.expression_deltas[EXPRESSION_NAMES.index("eyeBlink_L"), :SKIN_VERTEX_COUNT], axis=1)
    moved = labels[motion > 0.2 * motion.max()]
    lids = np.isin(moved, [region_of("upper_eyelid_L"), region_of("lower_eyelid_L")])
    assert lids.mean() > 0.9
    assert np.mean(moved == region_of("upper_eyelid_L")) > 0.5


def test_coarse_anatomy(ict):
    v = ict.neutral[:SKIN_VERTEX_COUNT]

    def centre(name):
        return v[region_vertex_indices(name)].mean(axis=0)

    assert centre("ear_L")[0] > 6.0 and centre("ear_R")[0] < -6.0
    assert centre("brow_L")[1] > centre("upper_eyelid_L")[1] > centre("lower_eyelid_L")[1] > centre("cheek_L")[1]
    assert centre("forehead")[1] > centre("brow_L")[1]
    assert centre("upper_lip")[1] > centre("lower_lip")[1] > centre("chin")[1] > centre("neck")[1]
    assert centre("scalp")[2] < centre("forehead")[2]
    assert abs(centre("nose")[0]) < 0.1 and centre("nose")[2] > centre("cheek_L")[2]


def test_generator_reproduces_the_stored_labels(labels):
    spec = importlib.util.spec_from_file_location("make_regions", REPO_ROOT / "tools" / "make_regions.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert np.array_equal(tool.make_labels(), labels)
