"""End-to-end retargeting through the one pipeline: remeshed and multi-component targets, every source kind,
every export read back. A small freshly initialised network is used so the plumbing is tested on its own
(quality is measured by the evaluation and by tests/test_shipped_model.py)."""
from __future__ import annotations

import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
import trimesh

from nfs import REPO_ROOT
from fixtures import write_multiface_fixture
from glb_reader import read_glb_frames, read_rig_glb
from nfs.clips import Clip
from nfs.io import load_clip
from nfs.geometry.remesh import decimate
from nfs.arkit import ARKIT_NAMES
from nfs.ict import EXPRESSION_NAMES, load_ict
from nfs.io import save_obj
from nfs.model.checkpoint import save_model
from nfs.model.config import get_preset
from nfs.model.network import NFSNetwork
from nfs.pipeline import decode, decode_all, encode_source, prepare_target, retarget, run_stages
from nfs.regions import N_REGIONS


def make_model(seed: int = 0, zero_output: bool = False) -> NFSNetwork:
    torch.manual_seed(seed)
    model = NFSNetwork(get_preset("tiny", n_regions=N_REGIONS)).eval()
    if not zero_output:  # the output layer starts at zero; give it weights so displacements are non-trivial
        torch.nn.init.normal_(model.decoder_out.weight, std=0.05)
    return model


def rotation(deg_x: float, deg_y: float) -> np.ndarray:
    ax, ay = np.deg2rad([deg_x, deg_y])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    return ry @ rx


@pytest.fixture(scope="module")
def ict():
    return load_ict()


@pytest.fixture(scope="module")
def remeshed_head(ict, tmp_path_factory):
    """An ICT identity decimated to another topology, in millimetres, turned and shifted, written as OBJ."""
    v, f = ict.skin_mesh(ict.sample_identities(1, seed=5)[0])
    dv, df = decimate(v, f, 3000)
    user = (dv @ rotation(10, 25).T) * 10.0 + np.array([30.0, -5.0, 12.0])
    path = tmp_path_factory.mktemp("targets") / "remeshed_mm.obj"
    save_obj(path, user, df)
    return path, user, df


def short_clip(n: int = 10) -> Clip:
    codes = np.zeros((n, 53), np.float32)
    codes[:, EXPRESSION_NAMES.index("jawOpen")] = np.linspace(0, 1, n)
    codes[:, EXPRESSION_NAMES.index("mouthSmile_L")] = np.linspace(1, 0, n)
    return Clip("short", 30.0, codes=codes)


def test_zero_displacement_returns_the_users_mesh_exactly(remeshed_head):
    """With a network that predicts no motion, every frame equals the input in its own frame, units and order:
    the inverse alignment and the vertex mapping are exact."""
    path, user, _ = remeshed_head
    model = make_model(zero_output=True)
    target = prepare_target(path, model)
    frames = decode_all(target, encode_source(short_clip(4), model).codes)
    assert frames.shape == (4, len(user), 3)
    np.testing.assert_allclose(frames, np.broadcast_to(user, frames.shape), atol=1e-4)
    assert target.alignment.confidence > 0.5
    # millimetres -> centimetres (this identity is a few percent larger than the mean face it is fitted to)
    assert abs(target.alignment.scale - 0.1) / 0.1 < 0.08
    residual = target.alignment.rotation @ rotation(10, 25)
    assert np.degrees(np.arccos(np.clip((np.trace(residual) - 1) / 2, -1, 1))) < 6.0  # best fit of another face shape


def test_retarget_remeshed_target_writes_and_reads_back_every_export(remeshed_head, tmp_path):
    path, user, faces = remeshed_head
    model = make_model()
    clip = short_clip(10)
    stages = []
    result = retarget(path, clip, tmp_path, model=model, progress=lambda f, m: stages.append((f, m)))
    exact = decode_all(result.target, result.source.codes)       # the decoded frames themselves
    frames = np.asarray(result.frames())
    assert frames.shape == exact.shape == (10, len(user), 3) and np.isfinite(frames).all()
    # frames are rebuilt in float32 (neutral + weights @ targets): a few units in the last place of the coordinates
    rounding = 4 * np.finfo(np.float32).eps * np.abs(exact).max()
    assert np.linalg.norm(frames - exact, axis=-1).max() <= result.sequence.max_error * 1.01 + rounding
    motion = np.linalg.norm(exact - user[None], axis=-1).max()
    assert motion > 1e-3  # the network moved the mesh
    assert {"prepare", "encode", "decode", "rig", "glb", "preview"} <= set(result.timings)
    messages = [m for _, m in stages]
    assert any(m.startswith("decoding frames: 10/10 frames") for m in messages) and messages[-1] == "done"
    # every message names its stage; the stages come in the order run_stages gives (what the app's display counts)
    order = run_stages(tuple(result.exports))
    named = [order.index(m.split(":")[0]) for m in messages[:-1]]
    assert named == sorted(named) and set(named) == set(range(len(order))), messages
    assert [f for f, _ in stages] == sorted(f for f, _ in stages)             # the bar only moves forward
    # only the exports are left in the output folder (no temporary arrays), with the umask's permissions
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in result.exports.values())
    import os
    umask = os.umask(0o022)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in result.exports.values()} == {0o666 & ~umask}
    # OBJ sequence: one OBJ per frame, original vertex order, the morph basis's frames (within its bound)
    with zipfile.ZipFile(result.exports["obj_zip"]) as zf:
        names = sorted(zf.namelist())
        assert len(names) == 10
        mesh = trimesh.load(zf.open(names[7]), file_type="obj", process=False)
    assert np.linalg.norm(mesh.vertices - exact[7], axis=-1).max() <= result.sequence.max_error * 1.01 + 1e-4
    # animated GLB: every frame within the stated bound (0.1 mm; this mesh is in mm)
    glb = read_glb_frames(result.exports["glb"], range(10))
    assert result.glb.n_frames == 10 and result.glb.max_error_mm <= 0.1
    assert 10 * result.target.alignment.scale * np.linalg.norm(glb - exact, axis=-1).max() <= 0.1
    assert any("max error" in line for line in result.summary())
    # baked rig: exactly the 52 ARKit names on the user's mesh, linear rig close to the network on this clip
    neutral, rig_faces, deltas, names = read_rig_glb(result.exports["rig"])
    assert deltas.shape == (52, len(user), 3) and names == list(ARKIT_NAMES)
    assert not deltas[names.index("tongueOut")].any() and np.abs(deltas[names.index("browInnerUp")]).max() > 0
    assert np.array_equal(np.sort(rig_faces, axis=1), np.sort(faces, axis=1))
    assert result.rig_error_mm is not None and np.isfinite(result.rig_error_mm)
    # preview video: readable, one image per frame, source beside target
    import imageio.v3 as iio
    video = iio.imread(result.exports["mp4"])
    assert video.shape[0] == 10 and video.shape[2] > video.shape[1]


def test_retarget_writes_only_the_chosen_exports_and_resamples(remeshed_head, tmp_path):
    path, user, _ = remeshed_head
    model = make_model()
    clip = short_clip(31)                                  # 1 s at 30 fps
    result = retarget(path, clip, tmp_path, model=model, exports=("glb",), fps=60.0)
    assert set(result.exports) == {"glb"} and [p.name for p in tmp_path.iterdir()] == [result.exports["glb"].name]
    assert result.source.fps == 60.0 and result.source.n_frames == 61
    assert any("resampled" in n for n in result.notes)
    kept = retarget(path, clip, tmp_path / "own", model=model, exports=())
    assert kept.source.fps == 30.0 and kept.source.n_frames == 31 and kept.exports == {}
    with pytest.raises(ValueError, match="unknown export"):
        retarget(path, clip, tmp_path / "bad", model=model, exports=("fbx",))


def test_default_exports_leave_the_preview_out_of_long_takes():
    from nfs.pipeline import PREVIEW_DEFAULT_MAX_FRAMES, default_exports, preview_note
    assert "mp4" in default_exports(PREVIEW_DEFAULT_MAX_FRAMES) and preview_note(100) == ""
    assert default_exports(PREVIEW_DEFAULT_MAX_FRAMES + 1) == ("obj_zip", "glb", "rig")
    assert "MP4" in preview_note(4030)


def test_secondary_components_move_rigidly_with_the_skin(ict):
    """Eyeballs (separate components) move rigidly: every pairwise distance inside an eyeball is kept (they
    follow the rigid fit of the skin no expression moves: their sockets)."""
    model = make_model(seed=1)
    v, f = ict.full_mesh()
    target = prepare_target((v, f), model)
    assert target.clean.report.n_components >= 3 and len(target.clean.skin_vertices) == ict.skin_count
    frames = decode_all(target, encode_source(short_clip(3), model).codes)
    disp = frames[-1] - v
    eye = np.arange(ict.skin_count, len(v))
    assert np.linalg.norm(disp[eye], axis=1).max() > 1e-4  # they follow the skin
    assert target.binding.roles() == {"eye": 4}          # sclera and iris of each eye: they follow the skull
    for comp in target.binding.components:
        a, b = comp.original[:50], comp.original[-50:]
        rest = np.linalg.norm(v[a] - v[b], axis=1)
        moved = np.linalg.norm(frames[-1][a] - frames[-1][b], axis=1)
        np.testing.assert_allclose(moved, rest, atol=1e-4)
    assert sorted(np.concatenate([c.original for c in target.binding.components]).tolist()) == eye.tolist()


def test_chunked_decoding_matches_one_batch_and_cache_is_reused(remeshed_head, monkeypatch):
    path, _, _ = remeshed_head
    model = make_model(seed=2)
    target = prepare_target(path, model)
    monkeypatch.setattr("nfs.pipeline.target.clean_mesh",
                        lambda *a, **k: pytest.fail("a cache hit cleaned the mesh again"))
    again = prepare_target(path, model, name="renamed")  # same upload: cached preparation, its own name
    assert again.encoding is target.encoding and again.ops is target.ops and again.name == "renamed"
    assert again.reused and not target.reused
    assert prepare_target(target, model) is target       # a prepared target is never prepared twice
    codes = encode_source(short_clip(9), model).codes
    chunked = np.concatenate(list(decode(target, codes, chunk_frames=4)))
    whole = np.concatenate(list(decode(target, codes, chunk_frames=64)))
    np.testing.assert_allclose(chunked, whole, atol=1e-4)


def write_livelink_csv(path, n: int = 30):
    names = [n_[0].upper() + n_[1:] for n_ in ARKIT_NAMES]
    extra = ["HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw",
             "RightEyePitch", "RightEyeRoll"]
    lines = [",".join(["Timecode", "BlendshapeCount", *names, *extra])]
    for i in range(n):
        w = np.zeros(52)
        w[ARKIT_NAMES.index("jawOpen")] = i / (n - 1)
        lines.append(",".join([f"10:00:00:{i:02d}.000", "61", *(f"{x:.3f}" for x in w), *["0"] * 9]))
    path.write_text("\n".join(lines) + "\n")


def test_every_source_kind_drives_a_remeshed_target(remeshed_head, tmp_path, ict):
    path, user, _ = remeshed_head
    model = make_model(seed=3)
    target = prepare_target(path, model)
    # Live Link Face CSV (60 fps capture resampled to 30 fps)
    ll = tmp_path / "take.csv"
    write_livelink_csv(ll)
    clips = [load_clip("smile"), load_clip(str(ll))]
    # OBJ-sequence zip and npz mesh sequence made from ICT frames
    v, f = ict.skin_mesh(region="face")
    n = ict.region_vertex_count("face")
    weights = np.zeros((4, 53), np.float32)
    weights[:, EXPRESSION_NAMES.index("jawOpen")] = [0, 0.3, 0.6, 0.9]
    seq = ict.vertices(None, weights, n)
    zpath = tmp_path / "seq.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for i, fr in enumerate(seq):
            zf.writestr(f"frame_{i}.obj", "".join(f"v {a} {b} {c}\n" for a, b, c in fr) +
                        "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in f))
    np.savez(tmp_path / "seq.npz", vertices=seq, faces=f)
    clips += [load_clip(str(zpath)), load_clip(str(tmp_path / "seq.npz"))]
    # Multiface tracked-mesh layout
    write_multiface_fixture(tmp_path / "mf", n_frames=3)
    clips.append(load_clip(str(tmp_path / "mf")))
    kinds = set()
    for clip in clips:
        src = encode_source(clip, model)
        assert src.codes.shape == (clip.n_frames, model.cfg.code_dim) and np.isfinite(src.codes).all()
        out = np.concatenate(list(decode(target, src.codes[:3])))
        assert out.shape == (min(3, clip.n_frames), len(user), 3) and np.isfinite(out).all()
        kinds.add(clip.kind)
    assert kinds == {"codes", "meshes"}
    # mesh sequences are fitted with the ICT blendshapes: the jawOpen ramp of the zip comes back
    fitted = encode_source(clips[2], model).weights
    jaw = EXPRESSION_NAMES.index("jawOpen")
    np.testing.assert_allclose(fitted[:, jaw], [0, 0.3, 0.6, 0.9], atol=0.05)
    others = np.delete(fitted, jaw, axis=1)
    assert np.abs(others).max() < 0.1
    # the Live Link jawOpen column drives ICT jawOpen
    ll_codes = encode_source(clips[1], model).weights
    assert ll_codes[-1, EXPRESSION_NAMES.index("jawOpen")] > 0.9


def test_cli_retarget_and_bad_input(remeshed_head, tmp_path):
    path, user, _ = remeshed_head
    model_dir = tmp_path / "model"
    save_model(model_dir, make_model(seed=4), {"note": "test model"})
    env_cmd = [sys.executable, "-m", "nfs", "retarget", "--target", str(path), "--clip", "smile",
               "--out", str(tmp_path / "out"), "--exports", "obj_zip,glb", "--model", str(model_dir)]
    ok = subprocess.run(env_cmd + ["--fps", "60", "--device", "cpu"], cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["remeshed_mm_smile.glb", "remeshed_mm_smile_obj.zip"]
    assert "at 60 fps on cpu" in ok.stdout and "max error" in ok.stdout
    wrong = subprocess.run(env_cmd[:-4] + ["--exports", "glb,fbx"], cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=300)
    assert wrong.returncode == 2 and "unknown export fbx" in wrong.stderr.strip().splitlines()[-1]
    bad = tmp_path / "garbage.obj"
    bad.write_bytes(b"\x00\x01garbage" * 10)
    res = subprocess.run([*env_cmd[:5], str(bad), *env_cmd[6:]], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "garbage.obj" in last and "Traceback" not in res.stderr


def test_template_prior_alone_reproduces_an_unseen_ict_identity(ict, tmp_path):
    """On an ICT identity the fit has never seen, in millimetres and turned, the template prior alone
    (`correction=False`) gives the ICT expression itself, up to the automatic alignment's scale estimate (about 1%
    of the displacement); with the network's correction on, the output differs."""
    from dataclasses import replace as dc_replace
    model = make_model(seed=3)
    model.cfg = dc_replace(model.cfg, template_prior=True)
    c = np.random.default_rng(77).standard_normal(100).astype(np.float32)
    v, f = ict.skin_mesh(c)
    rot, shift = rotation(-8, 20), np.array([5.0, 40.0, -3.0])
    path = tmp_path / "identity_mm.obj"
    save_obj(path, (v @ rot.T) * 10.0 + shift, f)
    clip = short_clip(4)
    truth_ict = ict.expression_deltas[:, :len(v)]
    truth = np.einsum("tk,kvc->tvc", clip.codes, truth_ict) @ rot.T * 10.0       # user frame, mm
    plain = retarget(path, clip, tmp_path / "plain", model=model, exports=(), correction=False)
    moved = plain.frames() - plain.target.raw.vertices[None]
    err = np.linalg.norm(moved - truth, axis=-1)
    assert np.abs(truth).max() > 5.0                        # the clip really opens the jaw (mm)
    assert err.mean() < 0.12 and np.percentile(err, 99) < 1.5, (err.mean(), np.percentile(err, 99))
    corrected = retarget(path, clip, tmp_path / "corrected", model=model, exports=(), correction=True)
    assert np.abs(np.asarray(corrected.frames()) - np.asarray(plain.frames())).max() > 0.01
    # the mode is a field of the key; a prepared target (here the prior-only one) is used as it is, in either mode
    assert (plain.target.key.correction, corrected.target.key.correction) == (False, True)
    assert plain.target.key.content == corrected.target.key.content and plain.target.key != corrected.target.key
    again = retarget(plain.target, clip, tmp_path / "again", model=model, exports=(), correction=True)
    assert again.target.encoding is plain.target.encoding and again.target.key == corrected.target.key
    np.testing.assert_allclose(np.asarray(again.frames()), np.asarray(corrected.frames()), atol=1e-5)


def test_dense_target_gets_its_network_inputs_from_a_proxy(ict):
    from dataclasses import replace as dc_replace
    """A dense head (an ICT identity decimated and subdivided, ~14k vertices) is encoded on a decimated proxy:
    operators and the image are the proxy's, regions and skinning weights are carried to every skin vertex, the
    template prior is the dense mesh's own, and the network's correction decodes at full resolution."""
    import nfs.geometry.proxy as proxy_module
    v, f = ict.skin_mesh(ict.sample_identities(1, seed=7)[0])
    v, f = trimesh.remesh.subdivide(*decimate(v, f, 3600))
    model = make_model(3)
    model.cfg = dc_replace(model.cfg, template_prior=True)
    target = prepare_target((v, f), model, use_cache=False, device="cpu")
    n_skin = len(target.skin_vertices_ict)
    assert target.proxy is not None and n_skin > proxy_module.PROXY_ABOVE
    assert len(target.ops.mass) == len(target.proxy.vertices) < proxy_module.PROXY_ABOVE
    assert target.region_labels.shape == (n_skin,) and target.skinning_weights.shape[0] == n_skin
    assert target.encoding.prior.shape == (53, n_skin, 3)
    # neighbouring vertices carried from the same proxy triangle agree on their region
    same = target.proxy.tri[f[:, 0]] == target.proxy.tri[f[:, 1]]
    assert (target.region_labels[f[same, 0]] == target.region_labels[f[same, 1]]).mean() > 0.9
    codes = encode_source(short_clip(3), model).codes
    frames = decode_all(target, codes)
    assert frames.shape == (3, len(v), 3) and np.isfinite(frames).all()
    prior_only = decode_all(target.without_correction(), codes)
    assert np.abs(frames - prior_only).max() > 0          # the correction ran on every vertex
