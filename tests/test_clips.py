"""Source clips: built-ins, Live Link CSV, mesh sequences (folder/zip/npz), Multiface, safety, editing."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures import write_multiface_fixture
from nfs import REPO_ROOT
from nfs.clips import Clip, ClipError, apply_gain, smooth_codes
from nfs.export import export_obj_sequence_zip
from nfs.io import (list_builtin_clips, load_builtin_clip, load_codes_csv, load_livelink_csv, load_mesh_sequence,
                    load_multiface_sequence, save_codes_csv)
from nfs.io.multiface import MULTIFACE_NEUTRAL
from nfs.io.obj import obj_text
from nfs.resources import BUILTIN_CLIPS_DIR
from nfs.ict import EXPRESSION_NAMES, load_ict

IDX = {n: i for i, n in enumerate(EXPRESSION_NAMES)}
# column order of a real Live Link Face export
LIVELINK_ORDER = (
    "EyeBlinkLeft EyeLookDownLeft EyeLookInLeft EyeLookOutLeft EyeLookUpLeft EyeSquintLeft EyeWideLeft "
    "EyeBlinkRight EyeLookDownRight EyeLookInRight EyeLookOutRight EyeLookUpRight EyeSquintRight EyeWideRight "
    "JawForward JawLeft JawRight JawOpen MouthClose MouthFunnel MouthPucker MouthLeft MouthRight MouthSmileLeft "
    "MouthSmileRight MouthFrownLeft MouthFrownRight MouthDimpleLeft MouthDimpleRight MouthStretchLeft "
    "MouthStretchRight MouthRollLower MouthRollUpper MouthShrugLower MouthShrugUpper MouthPressLeft MouthPressRight "
    "MouthLowerDownLeft MouthLowerDownRight MouthUpperUpLeft MouthUpperUpRight BrowDownLeft BrowDownRight "
    "BrowInnerUp BrowOuterUpLeft BrowOuterUpRight CheekPuff CheekSquintLeft CheekSquintRight NoseSneerLeft "
    "NoseSneerRight TongueOut"
).split()
ROTATIONS = ("HeadYaw HeadPitch HeadRoll LeftEyeYaw LeftEyePitch LeftEyeRoll "
             "RightEyeYaw RightEyePitch RightEyeRoll").split()


def write_livelink(path, n_rows=120, tc_rate=60, per_tc_frame=1, extra=(), drop=(), nan_at=None, start=(12, 34, 56, 7)):
    """A Live Link Face style CSV: 60 samples/s; JawOpen ramps 0..1, BrowInnerUp = 0.5, TongueOut = 0.9."""
    cols = [c for c in LIVELINK_ORDER if c not in drop]
    header = ["Timecode", "BlendShapeCount"] + cols + ROTATIONS + list(extra)
    rng = np.random.default_rng(0)
    h, m, s, f0 = start
    lines = [",".join(header)]
    for i in range(n_rows):
        frames_total = ((h * 60 + m) * 60 + s) * tc_rate + f0 + i // per_tc_frame
        ff = frames_total % tc_rate
        secs = frames_total // tc_rate
        sub = (i % per_tc_frame) / per_tc_frame
        tc = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}:{ff:02d}.{int(round(sub * 1000)):03d}"
        vals = {c: 0.0 for c in cols}
        vals["JawOpen"] = i / (n_rows - 1)
        vals["BrowInnerUp"] = 0.5
        vals["TongueOut"] = 0.9
        if "EyeBlinkLeft" in vals:
            vals["EyeBlinkLeft"] = 0.25
        row = [tc, "61"] + [f"{vals[c]:.6f}" for c in cols] + [f"{x:.4f}" for x in rng.normal(size=9)]
        row += ["0.1"] * len(extra)
        if nan_at is not None and i == nan_at:
            row[2 + cols.index("JawOpen")] = "nan"
        lines.append(",".join(row))
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------- built-ins


def test_builtin_clips_load():
    names = list_builtin_clips()
    assert len(names) >= 6
    assert {"talk", "smile", "surprise", "blinks", "pucker_funnel", "sneer_asym"} <= set(names)
    for n in names:
        c = load_builtin_clip(n)
        assert c.kind == "codes" and c.codes.shape == (c.n_frames, 53) and c.codes.dtype == np.float32
        assert c.fps == 30.0 and 3.0 <= c.duration_s <= (45.0 if n == "range_of_motion" else 10.0)
        assert c.codes.min() >= 0.0 and c.codes.max() <= 1.0 and c.codes.max() > 0.3
        assert c.warnings == []
        assert c.codes[0].max() < 0.1  # starts at rest (eased in)


def test_builtin_clips_reach_the_full_range():
    """jawOpen 1.0, full blinks of both eyes, a full smile and pucker; range_of_motion visits every shape once."""
    def peak(clip, *names):
        return min(load_builtin_clip(clip).codes[:, IDX[n]].max() for n in names)

    assert peak("jaw_open_full", "jawOpen") == 1.0
    assert peak("blinks_full", "eyeBlink_L", "eyeBlink_R") == 1.0
    both = load_builtin_clip("blinks_full").codes[:, [IDX["eyeBlink_L"], IDX["eyeBlink_R"]]].min(1)
    assert (both == 1.0).sum() >= 3                  # both eyes shut together, held for frames
    assert peak("smile_full", "mouthSmile_L", "mouthSmile_R") == 1.0
    assert peak("pucker_full", "mouthPucker") == 1.0
    rom = load_builtin_clip("range_of_motion").codes
    assert ((rom > 0.01).sum(1) <= 1).all()          # never two shapes at a time
    first_peak = [int(np.argmax(rom[:, k] == 1.0)) for k in range(53)]
    assert (rom.max(0) == 1.0).all() and first_peak == sorted(first_peak)   # each shape to 1.0, in order
    for k in range(53):                               # one visit: a single contiguous span of motion
        moving = np.nonzero(rom[:, k] > 0.01)[0]
        assert len(moving) and np.ptp(moving) + 1 == len(moving), EXPRESSION_NAMES[k]


def test_builtin_talk_has_speech_like_motion():
    c = load_builtin_clip("talk").codes
    jaw = c[:, IDX["jawOpen"]]
    peaks = np.sum((jaw[1:-1] > jaw[:-2]) & (jaw[1:-1] >= jaw[2:]) & (jaw[1:-1] > 0.1))
    speaking_s = (jaw > 0.05).sum() / 30.0
    assert 3.0 <= peaks / speaking_s <= 5.5  # syllable rate near 4 Hz
    for n in ("mouthClose", "mouthFunnel", "mouthPucker"):
        assert c[:, IDX[n]].max() > 0.1, n


def test_builtin_clips_match_generator(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_clips", REPO_ROOT / "tools" / "make_clips.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(tmp_path)
    for n in list_builtin_clips():
        assert (tmp_path / f"{n}.csv").read_bytes() == (BUILTIN_CLIPS_DIR / f"{n}.csv").read_bytes(), n


def test_unknown_builtin_lists_available():
    with pytest.raises(ValueError, match="talk"):
        load_builtin_clip("nope")


def test_clip_properties_and_kind_check():
    c = Clip("x", 30.0, codes=np.zeros((45, 53)))
    assert (c.kind, c.n_frames, c.duration_s) == ("codes", 45, 1.5)
    with pytest.raises(ClipError):
        Clip("x", 30.0)
    with pytest.raises(ClipError):
        Clip("x", 30.0, codes=np.zeros((4, 52)))


# ---------------------------------------------------------------------------------------------- codes CSV


def test_codes_csv_round_trip_and_clipping(tmp_path):
    codes = np.random.default_rng(1).uniform(0, 1, (20, 53))
    save_codes_csv(tmp_path / "a.csv", codes)
    c = load_codes_csv(tmp_path / "a.csv")
    assert np.abs(c.codes - codes).max() <= 5e-4 + 1e-6 and c.name == "a"
    codes[3, IDX["jawOpen"]] = 1.8
    codes[4, IDX["mouthSmile_L"]] = -0.5
    save_codes_csv(tmp_path / "b.csv", codes)
    c = load_codes_csv(tmp_path / "b.csv")
    assert c.codes.max() <= 1.0 and c.codes.min() >= 0.0
    assert len(c.warnings) == 1 and "jawOpen" in c.warnings[0] and "mouthSmile_L" in c.warnings[0]


def test_codes_csv_errors(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("frame," + ",".join(EXPRESSION_NAMES[:-1]) + ",wobble\n0," + ",".join(["0"] * 53) + "\n")
    with pytest.raises(ClipError, match="unknown columns: wobble"):
        load_codes_csv(p)
    p.write_text("frame," + ",".join(EXPRESSION_NAMES[:-1]) + "\n0," + ",".join(["0"] * 52) + "\n")
    with pytest.raises(ClipError, match="missing columns: noseSneer_R"):
        load_codes_csv(p)
    p.write_text("frame," + ",".join(EXPRESSION_NAMES) + "\n")
    with pytest.raises(ClipError, match="empty"):
        load_codes_csv(p)
    p.write_text("frame," + ",".join(EXPRESSION_NAMES) + "\n0," + ",".join(["inf"] + ["0"] * 52) + "\n")
    with pytest.raises(ClipError, match="non-finite"):
        load_codes_csv(p)


# ---------------------------------------------------------------------------------------------- Live Link


def test_livelink_loads_resamples_and_maps(tmp_path):
    p = write_livelink(tmp_path / "take.csv", n_rows=120)
    own = load_livelink_csv(p)                        # the take's own rate: 60 samples/s stay 60 fps
    assert own.kind == "codes" and own.fps == 60.0 and own.n_frames == 120
    np.testing.assert_allclose(own.codes[:, IDX["jawOpen"]], np.arange(120) / 119, atol=2e-6)
    c = load_livelink_csv(p, fps=30)
    assert c.kind == "codes" and c.fps == 30.0
    assert c.n_frames == 60  # 119/60 s of samples -> frames 0..59 at 30 fps
    assert c.warnings == ["60 fps take resampled to 30 fps (120 -> 60 frames; use --fps 60 / the fps field to "
                          "keep it)"]
    t = np.arange(60) / 30.0
    np.testing.assert_allclose(c.codes[:, IDX["jawOpen"]], t * 60 / 119, atol=2e-6)
    np.testing.assert_allclose(c.codes[:, IDX["browInnerUp_L"]], 0.5, atol=1e-6)
    np.testing.assert_allclose(c.codes[:, IDX["browInnerUp_R"]], 0.5, atol=1e-6)
    np.testing.assert_allclose(c.codes[:, IDX["eyeBlink_L"]], 0.25, atol=1e-6)
    assert c.codes[:, IDX["eyeBlink_R"]].max() == 0.0
    others = np.delete(c.codes, [IDX[n] for n in ("jawOpen", "browInnerUp_L", "browInnerUp_R", "eyeBlink_L")], axis=1)
    assert others.max() == 0.0  # TongueOut (0.9) and the head/eye rotations went nowhere


def test_livelink_subframes_and_lowercase_header(tmp_path):
    # 60 samples/s stamped with a 30 fps timecode (".000" and ".500" subframes), lower-case names
    p = write_livelink(tmp_path / "take.csv", n_rows=90, tc_rate=30, per_tc_frame=2, start=(23, 59, 59, 10))
    text = p.read_text().split("\n", 1)
    p.write_text(text[0].lower() + "\n" + text[1])
    own = load_livelink_csv(p)  # also crosses midnight; 60 samples/s although the timecode counts 30
    assert own.fps == 60.0 and own.n_frames == 90
    c = load_livelink_csv(p, fps=30)
    assert c.n_frames == 45
    np.testing.assert_allclose(c.codes[:, IDX["jawOpen"]], np.arange(45) * 2 / 89, atol=2e-6)


def test_resample_clip_keeps_the_duration(tmp_path):
    from nfs.clips import resample_clip
    own = load_livelink_csv(write_livelink(tmp_path / "take.csv", n_rows=121))     # 2 s at 60 fps
    assert resample_clip(own, None) is own and resample_clip(own, 60) is own
    half = resample_clip(own, 30)
    assert half.fps == 30 and half.n_frames == 61 and "resampled from 60 to 30 fps" in half.warnings[-1]
    np.testing.assert_allclose(half.codes, own.codes[::2], atol=1e-6)
    back = resample_clip(half, 60)
    np.testing.assert_allclose(back.codes, own.codes, atol=1e-5)       # jawOpen is linear: exact both ways
    with pytest.raises(ClipError, match="fps must be between"):
        resample_clip(own, 0)


def test_livelink_column_errors(tmp_path):
    with pytest.raises(ClipError, match="unknown columns: Foo, Bar"):
        load_livelink_csv(write_livelink(tmp_path / "a.csv", n_rows=4, extra=("Foo", "Bar")))
    with pytest.raises(ClipError, match="missing columns: CheekPuff, JawOpen$"):
        load_livelink_csv(write_livelink(tmp_path / "b.csv", n_rows=4, drop=("JawOpen", "CheekPuff")))


def test_livelink_value_errors(tmp_path):
    with pytest.raises(ClipError, match="non-finite.*JawOpen"):
        load_livelink_csv(write_livelink(tmp_path / "a.csv", n_rows=10, nan_at=3))
    with pytest.raises(ClipError, match="empty"):
        load_livelink_csv(write_livelink(tmp_path / "b.csv", n_rows=0))
    with pytest.raises(ClipError, match="more than the limit of 10"):
        load_livelink_csv(write_livelink(tmp_path / "c.csv", n_rows=60), max_frames=10)
    p = write_livelink(tmp_path / "d.csv", n_rows=4)
    p.write_text(p.read_text().replace("12:34:56:08.000", "garbage"))
    with pytest.raises(ClipError, match="timecode"):
        load_livelink_csv(p)


# ---------------------------------------------------------------------------------------------- meshes


@pytest.fixture(scope="module")
def ict_frames():
    """A few narrow-face ICT frames (cm) with their faces."""
    m = load_ict()
    codes = np.zeros((4, 53), np.float32)
    codes[1, IDX["jawOpen"]] = 0.8
    codes[2, IDX["mouthSmile_L"]] = 1.0
    codes[3, IDX["eyeBlink_R"]] = 1.0
    v, f = m.skin_mesh(None, codes, "narrow_face")
    return v, f


def test_obj_zip_round_trip(tmp_path, ict_frames):
    frames, faces = ict_frames
    export_obj_sequence_zip(tmp_path / "seq.zip", faces, frames)
    c = load_mesh_sequence(tmp_path / "seq.zip")
    assert c.kind == "meshes" and c.frames.shape == frames.shape and c.fps == 30.0
    np.testing.assert_allclose(c.frames, frames, atol=2e-6)
    np.testing.assert_allclose(c.neutral, frames[0], atol=2e-6)
    assert np.array_equal(c.faces, faces)


def test_obj_folder_natural_order_and_neutral(tmp_path, ict_frames):
    frames, faces = ict_frames
    d = tmp_path / "seq"
    d.mkdir()
    for k, name in enumerate(["f2.obj", "f9.obj", "f10.obj"]):  # lexical order would put f10 first
        (d / name).write_text(obj_text(frames[k], faces))
    (tmp_path / "rest.obj").write_text(obj_text(frames[3], faces))
    c = load_mesh_sequence(d, neutral=tmp_path / "rest.obj")
    np.testing.assert_allclose(c.frames, frames[:3], atol=2e-6)
    np.testing.assert_allclose(c.neutral, frames[3], atol=2e-6)


def test_mismatched_vertex_count_names_frame(tmp_path, ict_frames):
    frames, faces = ict_frames
    d = tmp_path / "seq"
    d.mkdir()
    (d / "000.obj").write_text(obj_text(frames[0], faces))
    (d / "001.obj").write_text(obj_text(frames[1], faces))
    (d / "002.obj").write_text(obj_text(frames[2][:-5], faces[(faces < len(frames[2]) - 5).all(1)]))
    with pytest.raises(ClipError, match="002.obj has 6701 vertices, expected 6706"):
        load_mesh_sequence(d)
    with pytest.raises(ClipError, match="more than the limit of 2"):
        load_mesh_sequence(d, max_frames=2)
    (tmp_path / "none").mkdir()
    with pytest.raises(ClipError, match="empty"):
        load_mesh_sequence(tmp_path / "none")


def test_npz_round_trip_and_rejections(tmp_path, ict_frames):
    frames, faces = ict_frames
    np.savez(tmp_path / "a.npz", vertices=frames, faces=faces, neutral=frames[2])
    c = load_mesh_sequence(tmp_path / "a.npz")
    assert np.array_equal(c.frames, frames) and np.array_equal(c.neutral, frames[2])
    bad = frames.copy()
    bad[1, 7, 0] = np.nan
    np.savez(tmp_path / "nan.npz", vertices=bad, faces=faces)
    with pytest.raises(ClipError, match="frame 1 has non-finite"):
        load_mesh_sequence(tmp_path / "nan.npz")
    np.savez(tmp_path / "obj.npz", vertices=np.array([frames[0], None], dtype=object), faces=faces)
    with pytest.raises(ClipError, match="cannot read the npz"):  # object arrays need pickle: refused
        load_mesh_sequence(tmp_path / "obj.npz")
    np.savez(tmp_path / "nofaces.npz", vertices=frames)
    with pytest.raises(ClipError, match="missing arrays: faces"):
        load_mesh_sequence(tmp_path / "nofaces.npz")


def test_zip_path_traversal_rejected(tmp_path, ict_frames):
    frames, faces = ict_frames
    z = tmp_path / "up" / "evil.zip"
    z.parent.mkdir()
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("frames/000.obj", obj_text(frames[0], faces))
        zf.writestr("../evil.obj", obj_text(frames[1], faces))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ClipError, match=r"unsafe member path '\.\./evil\.obj'"):
        load_mesh_sequence(z)
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("/abs/000.obj", obj_text(frames[0], faces))
    with pytest.raises(ClipError, match="unsafe member path"):
        load_mesh_sequence(z)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_zip_bomb_rejected_without_extracting(tmp_path, monkeypatch):
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("000.obj", "w") as f:
            block = b"\0" * (1 << 22)
            for _ in range(16):  # 64 MiB of zeros -> ~64 KiB compressed
                f.write(block)
    assert z.stat().st_size < 1 << 20

    def no_reading(*a, **k):
        raise AssertionError("a member was decompressed")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_reading)
    with pytest.raises(ClipError, match="zip bomb"):
        load_mesh_sequence(z)
    with pytest.raises(ClipError, match="more than the limit of 16 MiB"):
        load_mesh_sequence(z, max_ratio=1e9, max_bytes=16 << 20)
    with pytest.raises(ClipError, match="zip bomb"):
        load_multiface_sequence(z)


# ---------------------------------------------------------------------------------------------- Multiface


@pytest.mark.parametrize("as_zip", [False, True])
def test_multiface_fixture_round_trip(tmp_path, as_zip):
    root = tmp_path / ("subject.zip" if as_zip else "subject")
    codes = write_multiface_fixture(root, n_frames=4, as_zip=as_zip)
    m = load_ict()
    n_v = m.region_vertex_count("narrow_face")
    c = load_multiface_sequence(root)  # default: first non-neutral expression
    assert c.name == "E006_Jaw_Drop_Brows_Up" and c.kind == "meshes"
    assert c.fps == pytest.approx(10.0)  # frames 102, 105, ... of a 30 fps capture
    np.testing.assert_allclose(c.frames, m.vertices(None, codes[c.name], n_v) * 10.0, atol=1e-4)
    np.testing.assert_allclose(c.neutral, m.vertices(None, None, n_v) * 10.0, atol=1e-4)
    assert c.faces.shape == m.region_faces("narrow_face").shape and c.warnings == []
    s = load_multiface_sequence(root, expression="E008_Smile_Mouth_Closed")
    np.testing.assert_allclose(s.frames[2], m.vertices(None, codes[s.name][2], n_v) * 10.0, atol=1e-4)
    with pytest.raises(ClipError, match="available: E001_Neutral_Eyes_Open, E006"):
        load_multiface_sequence(root, expression="E099_Nope")


def test_multiface_without_neutral_folder_warns(tmp_path):
    write_multiface_fixture(tmp_path / "s", n_frames=3)
    import shutil

    shutil.rmtree(tmp_path / "s" / "tracked_mesh" / MULTIFACE_NEUTRAL)
    c = load_multiface_sequence(tmp_path / "s", expression="E008_Smile_Mouth_Closed")
    assert np.array_equal(c.neutral, c.frames[0]) and "first frame" in c.warnings[0]


# ---------------------------------------------------------------------------------------------- editing


def test_smoothing_keeps_ends():
    const = np.full((40, 53), 0.7, np.float32)
    np.testing.assert_allclose(smooth_codes(const, 3.0), const, atol=1e-6)
    step = np.zeros((60, 53), np.float32)
    step[30:] = 1.0
    s = smooth_codes(step, 4.0)
    assert s[-1].min() > 0.999 and s[0].max() < 1e-3  # no sag towards zero at either end
    assert 0.3 < s[30, 0] < 0.7 and np.all(np.diff(s[:, 0]) >= -1e-7)
    np.testing.assert_array_equal(smooth_codes(step, 0), step)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 50), st.floats(0.1, 10.0), st.integers(0, 10_000))
def test_smoothing_stays_in_range(n, sigma, seed):
    codes = np.random.default_rng(seed).uniform(0, 1, (n, 53)).astype(np.float32)
    s = smooth_codes(codes, sigma)
    assert s.shape == codes.shape
    assert (s >= codes.min(0) - 1e-5).all() and (s <= codes.max(0) + 1e-5).all()


def test_apply_gain():
    codes = np.full((5, 53), 0.8, np.float32)
    assert apply_gain(codes, 1.5).max() == pytest.approx(1.2)
    assert apply_gain(codes, 3.0).max() == pytest.approx(1.5)
    g = np.ones(53, np.float32)
    g[IDX["jawOpen"]] = 0.5
    out = apply_gain(codes, g)
    assert out[0, IDX["jawOpen"]] == pytest.approx(0.4) and out[0, 0] == pytest.approx(0.8)
    assert apply_gain(codes, -1.0).min() == 0.0
    with pytest.raises(ValueError):
        apply_gain(codes, np.ones(52))
