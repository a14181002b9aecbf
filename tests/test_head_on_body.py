"""Heads on bodies: a head on shoulders, a full body and a head with a separate torso align like the
same head alone (within 2 % in scale, 2 degrees in rotation); only the head goes through the network, the body
below the neck stays still; non-faces are refused unless forced, in the API and the CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation

from nfs.__main__ import main as cli_main
from nfs.clips import Clip
from nfs.geometry.rotations import rotation_angle_deg
from nfs.ict import EXPRESSION_NAMES, load_ict
from nfs.io.obj import save_obj
from nfs.mesh.clean import clean_mesh
from nfs.mesh.head import find_head
from nfs.model.checkpoint import save_model
from nfs.model.config import get_preset
from nfs.model.network import NFSNetwork
from nfs.pipeline import MIN_FACE_CONFIDENCE, NotAFaceError, decode_all, encode_source, prepare_target
from nfs.regions import N_REGIONS

from data_makers import synthetic_bodies as bodies  # noqa: E402
full_body, head_on_shoulders, head_with_separate_torso = (bodies.full_body, bodies.head_on_shoulders,
                                                          bodies.head_with_separate_torso)

ROTATION = Rotation.random(random_state=5).as_matrix()
UNITS = 0.01  # the files are in metres


def to_user(vertices: np.ndarray) -> np.ndarray:
    return UNITS * vertices @ ROTATION.T + np.array([0.2, 1.5, -0.3])


@pytest.fixture(scope="module")
def head():
    ict = load_ict()
    v, f = ict.skin_mesh(ict.sample_identities(1, seed=11)[0])
    return v.astype(np.float64), f


@pytest.fixture(scope="module")
def head_alone(head):
    v, f = head
    return find_head(clean_mesh(to_user(v), f))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = NFSNetwork(get_preset("tiny", n_regions=N_REGIONS)).eval()
    torch.nn.init.normal_(model.decoder_out.weight, std=0.1)  # zero at init: the head would not move at all
    torch.nn.init.normal_(model.decoder_out.bias, std=0.1)
    return model


@pytest.mark.parametrize("build", [head_on_shoulders, full_body, head_with_separate_torso])
def test_head_on_a_body_aligns_like_the_head_alone(head, head_alone, build):
    v, f = head
    reference, _ = head_alone
    bv, bf = build(v, f)
    assert len(bv) > len(v)
    alignment, clean = find_head(clean_mesh(to_user(bv), bf))
    assert abs(alignment.scale / reference.scale - 1) < 0.02, (alignment.scale, reference.scale)
    assert rotation_angle_deg(alignment.rotation, reference.rotation) < 2.0
    assert np.linalg.norm(alignment.translation - reference.translation) < 1.0  # cm
    assert alignment.confidence >= MIN_FACE_CONFIDENCE
    # the skin is the head (not the larger torso), the body stays still
    head_points = set(map(tuple, np.round(to_user(v), 9)))
    skin = np.round(clean.skin_points, 9)
    on_head = np.mean([tuple(p) in head_points for p in skin])
    assert on_head > 0.97 and len(skin) > 0.97 * len(v), (on_head, len(skin))
    assert len(clean.body_vertices) > 0 and clean.report.body_vertices == len(clean.body_vertices)
    print(f"\n{build.__name__}: scale {alignment.scale / reference.scale:.4f} x the head alone's, "
          f"confidence {alignment.confidence:.2f} (alone {reference.confidence:.2f})")


def test_only_the_head_moves(head, model):
    """Through the pipeline: the torso far below the neck stays exactly still, the head moves, and the seam
    under the neck moves less than the neck above it (no tear)."""
    v, f = head
    bv, bf = head_on_shoulders(v, f)
    user = to_user(bv)
    target = prepare_target((user, bf), model, use_cache=False)
    weights = np.zeros((2, len(EXPRESSION_NAMES)), np.float32)
    weights[1, EXPRESSION_NAMES.index("jawOpen")] = 1.0
    frames = decode_all(target, encode_source(Clip("jaw", 30.0, codes=weights), model).codes)
    moved = np.linalg.norm(frames[1] - frames[0], axis=1) / UNITS  # cm, jaw open against the neutral code
    torso = np.arange(len(v), len(bv))
    far = torso[bv[torso, 1] < v[:, 1].min() - 10]
    assert len(far) > 100 and moved[far].max() == 0.0
    assert np.abs(frames[0][far] - user[far].astype(np.float32)).max() == 0.0
    assert moved[: len(v)].max() > 1e-3
    seam = np.setdiff1d(torso, far)
    assert moved[seam].max() <= moved[: len(v)].max() + 1e-6
    assert target.clean.report.body_vertices > 0
    assert any("below the neck stay still" in line for line in target.summary())


def test_non_faces_are_refused_unless_forced(model, tmp_path):
    cube = trimesh.creation.box(extents=(1, 1, 1)).subdivide().subdivide()
    path = tmp_path / "cube.obj"
    save_obj(path, cube.vertices, cube.faces)
    with pytest.raises(NotAFaceError, match="cube.obj: this does not look like a face") as err:
        prepare_target(path, model, use_cache=False)
    assert "\n" not in str(err.value) and "--force" in str(err.value)
    forced = prepare_target(path, model, use_cache=False, force=True)
    assert forced.alignment.confidence < MIN_FACE_CONFIDENCE

    model_dir = tmp_path / "model"
    save_model(model_dir, model, {"note": "non-face test"})
    args = ["retarget", "--target", str(path), "--clip", "smile", "--out", str(tmp_path / "out"),
            "--model", str(model_dir), "--exports", "obj_zip"]
    assert cli_main(args) == 2
    assert cli_main(args + ["--force"]) == 0
    assert any((tmp_path / "out").glob("*_obj.zip"))


@pytest.mark.parametrize("option, value, expect", [
    ("--smooth", "1e9", "--smooth: must be 0 to 20 frames"), ("--smooth", "inf", "must be finite"),
    ("--smooth", "nan", "must be finite"), ("--smooth", "-1", "--smooth: must be 0 to 20"), ("--gain", "1e300", "--gain"),
    ("--gain", "x", "expected a number"),
])
def test_numeric_cli_options_are_bounded(option, value, expect, capsys, tmp_path):
    args = ["retarget", "--target", "t.obj", "--clip", "smile", "--out", str(tmp_path), option, value]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.splitlines()[-1].startswith("error: ") and expect in err, err


@pytest.mark.parametrize("args, expect", [
    (["--steps", "0"], "--steps"), (["--lr", "inf"], "--lr"), (["--frames-per-step", "1e12"], "integer"),
    (["--threads", "-3"], "--threads"), (["--weight", "blendshape_reconstruction=nan"], "--weight"),
])
def test_train_options_are_bounded(args, expect, capsys):
    assert cli_main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.splitlines()[-1].startswith("error: ") and expect in err, err


def test_bodies_are_written_as_files(tmp_path, head):
    """The synthetic bodies are valid meshes: closed where they should be, and loadable as OBJ."""
    v, f = head
    for build in (head_on_shoulders, full_body, head_with_separate_torso):
        bv, bf = build(v, f)
        path = Path(tmp_path) / f"{build.__name__}.obj"
        save_obj(path, bv, bf)
        loaded = trimesh.load(path, process=False)
        assert len(loaded.vertices) == len(bv) and len(loaded.faces) == len(bf)
