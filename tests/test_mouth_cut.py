"""Opening a mouth modelled closed (`open_mouth`): the eval's closed-mouth scan head and an ICT head with joined
lips are cut along the lip line; the lips part at jawOpen = 1 along the whole line, the file's vertices keep their
indices and positions, the lip edges are clean curves; lips already apart are left alone; no mouth is a clear
error; the option reaches the prepared target, its cache key and the exports."""
from __future__ import annotations

import zipfile
from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh

from nfs.data.benchmark import build_target, identity_alignment
from nfs.geometry.openings import boundary_loops
from nfs.ict import EXPRESSION_NAMES, load_ict
from nfs.io.mesh import RawMesh
from nfs.mesh.clean import clean_mesh
from nfs.mesh.mouth_cut import MouthCutError, open_mouth, open_mouth_prior, open_target_mouth

JAW = EXPRESSION_NAMES.index("jawOpen")
HEADS = ("closed_scan", "joined_lips")


def _raw(vertices, faces, name="head.obj") -> RawMesh:
    return RawMesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), np.arange(len(faces)), source=name)


def _normals(v, f):
    return np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])


def turned(rest, moved, faces) -> np.ndarray:
    """(F,) bool: triangles whose normal points the other way after the motion."""
    return (_normals(rest, faces) * _normals(moved, faces)).sum(1) < 0


@pytest.fixture(scope="module")
def ict():
    return load_ict()


@pytest.fixture(scope="module", params=HEADS)
def opened(request, ict):
    """(name, raw mesh, cut mesh, cut) of an eval head whose lips are one surface, in the ICT frame."""
    t = build_target(request.param, 0, ict)
    raw = _raw(t.vertices, t.faces, f"{request.param}.obj")
    cut_raw, cut = open_mouth(raw, clean_mesh(raw.vertices, raw.faces), identity_alignment())
    assert cut is not None
    return request.param, raw, cut_raw, cut


@pytest.fixture(scope="module")
def jaw_open(opened):
    """The opened head at jawOpen = 1 by the template prior (`open_mouth_prior`)."""
    _, _, cut_raw, cut = opened
    basis = open_mouth_prior(cut_raw.vertices, cut_raw.faces, cut)
    return cut_raw.vertices + basis[JAW]


def test_the_files_vertices_keep_their_indices_and_new_ones_are_appended(opened):
    name, raw, cut_raw, cut = opened
    n = raw.n_vertices
    assert cut.n_original == n and cut_raw.n_vertices > n
    assert np.array_equal(cut_raw.vertices[:n], raw.vertices)            # positions at rest, bit for bit
    assert (cut.lower_edge[1:-1] >= n).all() and (cut.interior >= n).all()
    assert cut.upper_edge[0] == cut.lower_edge[0] and cut.upper_edge[-1] == cut.lower_edge[-1]   # shared corners
    assert not set(cut.upper_edge[1:-1]) & set(cut.lower_edge[1:-1])
    assert any("appended after the file's" in note for note in cut_raw.notes)
    # the lips are two edges a hair apart: cleaning does not merge them back, and the interior closes the mouth
    again = clean_mesh(cut_raw.vertices, cut_raw.faces)
    before = clean_mesh(raw.vertices, raw.faces)
    assert again.report.duplicate_vertices_merged == before.report.duplicate_vertices_merged
    assert len(boundary_loops(again.skin_faces)) == len(boundary_loops(before.skin_faces))
    gap = np.linalg.norm(cut_raw.vertices[cut.upper_edge[1:-1]] - cut_raw.vertices[cut.lower_edge[1:-1]], axis=1)
    assert 0 < gap.max() < 1e-3                                          # micrometres on a head in cm


def test_the_cut_turns_no_triangle_and_its_lip_edge_is_a_clean_curve(opened):
    name, raw, cut_raw, cut = opened
    v, f = cut_raw.vertices, cut_raw.faces
    # every split triangle faces as the triangle it came from (same area-weighted normal, never reversed)
    n_old = _normals(raw.vertices, raw.faces)
    n_new = _normals(v, f[:len(raw.faces)])
    assert ((n_old * n_new).sum(1) >= 0).all()
    # the lip edge runs corner to corner without turning back: consecutive directions never reverse, and it
    # advances across the mouth at every step (no saw-tooth between the lips)
    for edge in (cut.upper_edge, cut.lower_edge):
        d = np.diff(v[edge], axis=0)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        assert ((d[1:] * d[:-1]).sum(1) > 0).all(), name
        assert (np.diff(v[edge][:, 0]) > 0).all(), name
    assert len(cut.upper_edge) >= 10


def test_the_lips_part_along_the_whole_line_at_jaw_open(opened, jaw_open):
    name, raw, cut_raw, cut = opened
    gap = np.linalg.norm(jaw_open[cut.upper_edge] - jaw_open[cut.lower_edge], axis=1)[1:-1]
    assert gap.min() > 0.2, (name, np.round(gap, 2))                   # cm, every point between the corners
    middle = gap[len(gap) // 3: 2 * len(gap) // 3]
    assert middle.min() > 1.5, (name, np.round(gap, 2))
    # the lower edge goes down with the jaw, the upper stays above it
    assert (jaw_open[cut.lower_edge[1:-1], 1] < jaw_open[cut.upper_edge[1:-1], 1]).mean() > 0.9


def test_few_triangles_turn_over_at_jaw_open(opened, jaw_open):
    """At jawOpen = 1 the opened head's basis (before the frame guard) turns at most 0.25 % of its triangles over
    (next to the corners and in the interior)."""
    name, raw, cut_raw, cut = opened
    flipped = turned(cut_raw.vertices, jaw_open, cut_raw.faces)
    assert flipped.sum() <= 0.0025 * len(cut_raw.faces), (name, flipped.sum())
    assert np.isin(cut_raw.faces[flipped], cut.interior).any(1).sum() <= 8, name


@pytest.mark.parametrize("category", ["slit", "ict"])
def test_lips_already_apart_are_left_as_they_are(ict, category):
    """A lip slit (mouth modelled slightly open) and ICT's own mouth opening are not cut."""
    t = build_target(category, 0, ict)
    raw = _raw(t.vertices, t.faces)
    clean = clean_mesh(raw.vertices, raw.faces)
    noted, clean2, cut = open_target_mouth(raw, clean, identity_alignment())
    assert cut is None and clean2 is clean and np.array_equal(noted.vertices, raw.vertices)
    assert np.array_equal(noted.faces, raw.faces) and any("already apart" in note for note in noted.notes)


def test_no_mouth_is_a_clear_error(ict):
    """A head with no surface where its mouth is (cut away, as on a mask) cannot have its mouth opened: one line
    says so. (A mesh that is no face at all is refused before, by the face check.)"""
    from nfs.io.mesh import MeshError
    from nfs.mesh.mouth_cut import lip_line
    t = build_target(HEADS[0], 0, ict)
    line = lip_line(np.asarray(ict.neutral[: ict.skin_count], np.float64))
    centroid = t.vertices[t.faces].mean(1)
    kept = t.faces[np.linalg.norm(centroid - line.curve().mean(0), axis=1) > 0.9 * line.width]
    raw = _raw(t.vertices, kept, "mask.obj")
    with pytest.raises(MouthCutError, match="^(no mouth found|could not open the mouth)") as caught:
        open_mouth(raw, clean_mesh(raw.vertices, raw.faces), identity_alignment())
    assert isinstance(caught.value, MeshError) and "\n" not in str(caught.value)   # one line, as bad input is told


def test_the_opened_heads_frames_are_unfolded_as_the_closed_heads_are(opened, ict):
    """Over the eval's random expressions the opened head's frame guard (faithful: the lips' contact band is
    all that lies off the fitted face) unfolds what the cut adds: no triangle touching the mouth interior turns
    over, the file's own triangles turn no more over (where the truth keeps them facing) than the closed head's
    do through its own guard, frames that turn nothing come back bit for bit, and the face error is unchanged."""
    from nfs.data.benchmark import SIZES, Benchmark
    from nfs.eval import metrics as M
    from nfs.prior import template_expression_basis

    name, raw, cut_raw, cut = opened
    t = build_target(name, 0, ict)
    expressions = Benchmark(SIZES["full"], (name,)).expressions()
    w = expressions.weights.astype(np.float32)
    truth = t.vertices[None] + t.gt_displacement(expressions.weights)
    n = raw.n_vertices

    basis, guard = open_mouth_prior(cut_raw.vertices, cut_raw.faces, cut, with_frame_guard=True)
    assert guard is not None and guard.faithful, name
    decoded = np.tensordot(w, basis, axes=1)
    frames = decoded.copy()
    guard.mend(frames, w)
    moved = cut_raw.vertices[None] + frames

    interior = np.isin(cut_raw.faces, cut.interior).any(1)
    assert not (M.facing_cos(cut_raw.vertices, moved, cut_raw.faces[interior]) < 0).any(), name
    own = cut_raw.faces[(cut_raw.faces < n).all(1) & t.skin_mask[np.minimum(cut_raw.faces, n - 1)].all(1)]
    truth_cos = M.truth_facing_cos(t.vertices, truth, own)
    opened_turned = M.turned_over(M.facing_cos(t.vertices, moved[:, :n], own), truth_cos)
    before = M.turned_over(M.facing_cos(t.vertices, cut_raw.vertices[None, :n] + decoded[:, :n], own), truth_cos)

    closed_basis, closed_guard = template_expression_basis(raw.vertices, faces=raw.faces, with_frame_guard=True)
    closed = np.tensordot(w, closed_basis, axes=1)
    closed_guard.mend(closed, w)
    closed_faces = raw.faces[t.skin_mask[raw.faces].all(1)]
    closed_turned = M.turned_over(M.facing_cos(t.vertices, raw.vertices[None] + closed, closed_faces),
                                  M.truth_facing_cos(t.vertices, truth, closed_faces))
    assert opened_turned <= closed_turned < before, (name, opened_turned, closed_turned, before)

    quiet = ~(M.facing_cos(cut_raw.vertices, cut_raw.vertices[None] + decoded, cut_raw.faces) < 0).any(1)
    assert quiet.any() and np.array_equal(frames[quiet], decoded[quiet]), name
    error = lambda x: np.linalg.norm(x[:, :n][:, t.face_mask] - truth[:, t.face_mask], axis=-1).mean()  # noqa: E731
    assert error(moved) <= 1.01 * error(cut_raw.vertices[None] + decoded) + 1e-5, name


# ------------------------------------------------------------------------------------------------ pipeline

def _prior_model():
    from nfs.model.config import get_preset
    from nfs.model.network import NFSNetwork
    from nfs.regions import N_REGIONS
    torch.manual_seed(0)
    model = NFSNetwork(get_preset("tiny", n_regions=N_REGIONS)).eval()
    model.cfg = replace(model.cfg, template_prior=True)
    return model


@pytest.mark.slow
def test_the_option_opens_the_prepared_target_and_every_export_carries_it(ict, tmp_path):
    from glb_reader import read_glb_frames, read_rig_glb
    from nfs.clips import Clip
    from nfs.io import save_obj
    from nfs.options import RetargetOptions
    from nfs.pipeline import prepare_target, retarget

    t = build_target("closed_scan", 0, ict)
    path = tmp_path / "scan_mm.obj"
    save_obj(path, t.vertices * 10.0, t.faces)                          # millimetres
    n = len(t.vertices)
    model = _prior_model()
    codes = np.zeros((3, 53), np.float32)
    codes[:, JAW] = [0.0, 0.5, 1.0]
    kwargs = RetargetOptions(open_mouth=True, exports=("obj_zip", "glb", "rig")).retarget_kwargs()
    result = retarget(path, Clip("jaw", 30.0, codes=codes), tmp_path / "out", model=model,
                      **{**kwargs, "device": "cpu"})
    target, cut = result.target, result.target.mouth
    assert cut is not None and target.raw.n_vertices > n and cut.n_original == n
    assert target.frame_guard is not None and target.frame_guard.faithful      # its frames are unfolded too
    assert np.allclose(target.raw.vertices[:n], t.vertices * 10.0)
    assert any("appended" in line for line in target.raw.notes)
    assert any("appended" in line for line in target.summary())           # the CLI's intake report says so
    frames = np.asarray(result.frames())
    assert frames.shape == (3, target.raw.n_vertices, 3)
    gap = np.linalg.norm(frames[2, cut.upper_edge] - frames[2, cut.lower_edge], axis=1)[1:-1]
    assert gap.min() > 1.0 and np.median(gap) > 15.0, np.round(gap, 1)   # mm
    with zipfile.ZipFile(result.exports["obj_zip"]) as zf:
        last = trimesh.load(zf.open(sorted(zf.namelist())[-1]), file_type="obj", process=False)
    assert len(last.vertices) == target.raw.n_vertices
    assert np.linalg.norm(last.vertices - frames[2], axis=1).max() < 0.1
    glb = read_glb_frames(result.exports["glb"], range(3))
    assert glb.shape == frames.shape
    neutral, rig_faces, deltas, _ = read_rig_glb(result.exports["rig"])
    assert deltas.shape[1] == target.raw.n_vertices and len(rig_faces) == len(target.raw.faces)
    # the option is part of the preparation's key: the same file without it is prepared (and cached) apart
    again = prepare_target(path, model, device="cpu", open_mouth=True)
    assert again.reused and again.mouth is not None and again.key.content == target.key.content
    plain = prepare_target(path, model, device="cpu")
    assert not plain.reused and plain.mouth is None and plain.key.content != target.key.content
    assert plain.raw.n_vertices == n
