"""The video source on honest input: face videos rendered from the ICT model with known weights, head motion and eye
turns (tests/data/video, made by tests/data_makers/video_fixtures.py with the project's renderer), run through Face
Landmarker v2 (detector, 478 landmarks, blendshape model, transformation matrix). Also: one-sided blinks and smiles,
brows down, gaze, calibration, missing-face frames, two faces, a face turned away or upside down, a video with no
face, image folders, the neutral frame option, the retargeted lip gap and the CLI."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from nfs import REPO_ROOT
from nfs.clips import ClipError
from nfs.io import load_codes_csv
from nfs.pipeline import load_clip
from nfs.ict import EXPRESSION_NAMES
from nfs.video import Calibration, load_video_clip
from nfs.video.reader import read_frames
from nfs.video.synthetic import BACKGROUND_RGB, write_video

DATA = REPO_ROOT / "tests" / "data" / "video"
VIDEO = DATA / "face_expressions.mp4"
TURNING = DATA / "face_turning.mp4"
MIN_CORRELATION = {"jawOpen": 0.8, "eyeBlink_L": 0.8, "eyeBlink_R": 0.8, "mouthSmile_L": 0.8, "mouthSmile_R": 0.8,
                   "browInnerUp": 0.8}


def column(codes: np.ndarray, name: str) -> np.ndarray:
    """A weight curve; browInnerUp (ARKit's single shape) is the mean of the ICT halves."""
    if name == "browInnerUp":
        return codes[:, [EXPRESSION_NAMES.index("browInnerUp_L"), EXPRESSION_NAMES.index("browInnerUp_R")]].mean(1)
    return codes[:, EXPRESSION_NAMES.index(name)]


def correlations(truth: np.ndarray, codes: np.ndarray) -> dict:
    return {n: float(np.corrcoef(column(truth, n), column(codes, n))[0, 1]) for n in MIN_CORRELATION}


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return load_codes_csv(DATA / "face_expressions_weights.csv").codes


@pytest.fixture(scope="module")
def clip():
    return load_clip(VIDEO)       # through the one entry point the CLI and the app use


@pytest.fixture(scope="module")
def turning():
    return load_clip(TURNING)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    got, _, _ = read_frames(VIDEO, 1000)
    return [f.copy() for f in got]


def test_recovered_weights_follow_the_rendered_ones(clip, truth):
    assert clip.kind == "codes" and clip.n_frames == len(truth) and clip.fps == pytest.approx(30.0)
    assert not clip.missing_frames and not clip.warnings
    corr = correlations(truth, clip.codes)
    assert all(corr[n] >= MIN_CORRELATION[n] for n in corr), corr
    # the default neutral is a frame where the rendered face is (nearly) neutral
    assert truth[clip.fit.neutral_frame].sum() < 0.3
    # the head moved sideways and up by up to 1 cm: a translation, no turn
    assert np.degrees(np.arccos(np.clip((np.trace(clip.fit.rotations, axis1=1, axis2=2) - 1) / 2, -1, 1))).max() < 3
    pose = np.loadtxt(DATA / "face_expressions_pose.csv", delimiter=",", skiprows=1)[:, 1:]
    shift = clip.fit.translations[:, :2]
    for axis in (0, 1):           # the render is orthographic: the matrix reads the shift, in cm, roughly
        assert np.corrcoef(shift[:, axis], pose[:, 3 + axis])[0, 1] > 0.8


def test_head_turn_is_recovered_and_removed(turning):
    from nfs.video.pose import yaw_pitch_roll
    truth = load_codes_csv(DATA / "face_turning_weights.csv").codes
    pose = np.loadtxt(DATA / "face_turning_pose.csv", delimiter=",", skiprows=1)[:, 1:]
    yaw, pitch, _ = yaw_pitch_roll(turning.fit.rotations).T
    ref = turning.fit.neutral_frame
    assert np.corrcoef(yaw, pose[:, 0] - pose[ref, 0])[0, 1] > 0.95
    assert np.abs(yaw - (pose[:, 0] - pose[ref, 0])).max() < 3.0      # degrees, from one image each
    assert np.corrcoef(pitch, pose[:, 1] - pose[ref, 1])[0, 1] > 0.8
    # with the turn removed, the expressions still come through
    corr = correlations(truth, turning.codes)
    assert all(corr[n] >= MIN_CORRELATION[n] for n in corr), corr


def test_missing_faces_are_bridged_and_reported(frames, tmp_path):
    blank = np.empty_like(frames[0])
    blank[:] = BACKGROUND_RGB
    gap = (20, 21, 22, 35)
    edited = [blank if i in gap else f for i, f in enumerate(frames[:40])]
    clip = load_video_clip(write_video(tmp_path / "gaps.mp4", edited))
    assert clip.missing_frames == list(gap)
    assert "20-22, 35" in clip.warnings[0] and "bridged" in clip.warnings[0]
    assert np.isfinite(clip.codes).all() and np.isfinite(clip.landmarks).all()
    # a bridged frame lies between its neighbours
    lo, hi = np.minimum(clip.codes[19], clip.codes[23]), np.maximum(clip.codes[19], clip.codes[23])
    assert (clip.codes[21] >= lo - 0.05).all() and (clip.codes[21] <= hi + 0.05).all()


def test_no_face_and_unreadable_videos_are_clear_errors(tmp_path):
    blank = np.empty((240, 320, 3), np.uint8)
    blank[:] = BACKGROUND_RGB
    with pytest.raises(ClipError, match=r"empty\.mp4: no face found in any of its 5 frames"):
        load_clip(write_video(tmp_path / "empty.mp4", [blank] * 5))
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(ClipError, match=r"broken\.mp4: not a readable video"):
        load_clip(bad)


def test_image_folder_and_neutral_override(frames, tmp_path):
    from PIL import Image
    folder = tmp_path / "shots"
    folder.mkdir()
    for i, f in enumerate(frames[:12]):
        Image.fromarray(f).save(folder / f"img_{i}.png")       # natural order: img_2 before img_10
    clip = load_clip(folder)
    assert clip.n_frames == 12 and clip.fps == pytest.approx(30.0)
    assert clip.frame_size == (640, 480)
    fixed = load_video_clip(folder, Calibration(neutral_frame=5, smoothing_s=0.0))
    assert fixed.fit.neutral_frame == 5
    assert fixed.codes[5].max() == 0.0                      # the neutral frame's own scores are taken off
    with pytest.raises(ClipError, match="neutral frame 40 is outside the clip's 0..11"):
        load_video_clip(folder, Calibration(neutral_frame=40))


def test_smoothing_reduces_frame_to_frame_jitter(frames, tmp_path):
    path = write_video(tmp_path / "part.mp4", frames[:30])
    raw = load_video_clip(path, Calibration(smoothing_s=0.0))
    smooth = load_video_clip(path)                 # the default: 0.05 s, 1.5 frames at 30 fps
    jitter = lambda c: np.abs(np.diff(c, axis=0)).mean()  # noqa: E731
    assert jitter(smooth.codes) < 0.8 * jitter(raw.codes)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`python -m nfs retarget --target assets/targets/stylized_head.obj --clip <video> --out ...` (in this process,
    so the lip gap test below reuses the prepared target)."""
    from nfs.__main__ import main
    out = tmp_path_factory.mktemp("cli_out")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        code = main(["retarget", "--target", str(REPO_ROOT / "assets" / "targets" / "stylized_head.obj"),
                     "--clip", str(VIDEO), "--out", str(out), "--exports", "glb"])
    return code, buf.getvalue(), out


def test_cli_video_calibration_options_are_checked():
    from nfs.__main__ import main
    target = str(REPO_ROOT / "assets" / "targets" / "stylized_head.obj")
    for extra, message in ((["--clip", str(VIDEO), "--shape-gains", "mouthWide=2"],
                            "unknown blendshape names in the gains: mouthWide"),
                           (["--clip", str(VIDEO), "--dead-zone", "2"], "--dead-zone: must be 0 to 0.9"),
                           (["--clip", "smile", "--dead-zone", "0.1"], "apply to video clips only")):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["retarget", "--target", target, "--out", "unused"] + extra)
        assert code != 0 and message in err.getvalue(), err.getvalue()


def test_cli_retargets_a_video(cli_run):
    code, stdout, out = cli_run
    assert code == 0, stdout
    assert "60 frames at 30 fps" in stdout
    assert (out / "stylized_head_face_expressions.glb").stat().st_size > 10_000


def test_retargeted_lip_gap_follows_the_jaw(cli_run, truth):
    """The shipped model on the stylized head: the gap between its lips opens and closes with the rendered jaw."""
    from nfs.pipeline import load_shipped_model, prepare_target
    from nfs.regions import REGION_NAMES

    code, _, out = cli_run
    assert code == 0
    target = prepare_target(REPO_ROOT / "assets" / "targets" / "stylized_head.obj",
                            load_shipped_model(None)[0])         # the CLI's model: its preparation is cached
    from glb_reader import read_glb_frames
    frames = read_glb_frames(out / "stylized_head_face_expressions.glb", range(60))  # (T, V, 3) user frame and units
    skin = target.clean.original_index[target.clean.skin_vertices]
    v = target.skin_vertices_ict
    middle = np.abs(v[:, 0]) < 0.6
    heights = []
    for lip in ("upper_lip", "lower_lip"):
        idx = np.nonzero((target.region_labels == REGION_NAMES.index(lip)) & middle)[0]
        assert len(idx) >= 3, lip
        heights.append(np.stack([target.alignment.apply(f[skin[idx]])[:, 1].mean() for f in frames]))
    gap = heights[0] - heights[1]                                             # cm, ICT frame
    jaw = column(truth, "jawOpen")
    assert np.corrcoef(gap, jaw)[0, 1] >= 0.8
    assert gap[jaw > 0.8].mean() - gap[jaw < 0.05].mean() > 0.3         # opens by more than 3 mm


def test_retarget_applies_the_head_pose_chunk_by_chunk(turning, tmp_path):
    """head_pose=True: every streamed chunk gets its own frames' pose (3-frame chunks, so a wrong offset shows), also
    when the clip is resampled; the exports hold the turned frames within the GLB bound."""
    from nfs.pipeline import load_shipped_model, retarget
    from nfs.video.pose import apply_head_pose

    model = load_shipped_model(None)[0]
    target = REPO_ROOT / "assets" / "targets" / "stylized_head.obj"
    kw = dict(model=model, exports=("glb",), chunk_frames=3)
    still = retarget(target, turning, tmp_path / "still", **kw)
    moved = retarget(target, turning, tmp_path / "moved", head_pose=True, **kw)
    mm = still.target.alignment.scale * 10.0
    expect = np.array(still.frames(), np.float32)
    apply_head_pose(expect, still.target.alignment, turning.fit.rotations, turning.fit.translations)
    got = np.asarray(moved.frames())
    assert np.abs(got - np.asarray(still.frames())).max() * mm > 5.0            # the head really turns
    assert np.linalg.norm(got - expect, axis=-1).max() * mm < 0.25            # two 0.1 mm bounds
    half = retarget(target, turning, tmp_path / "half", head_pose=True, fps=turning.fps / 2, **kw)
    assert half.source.n_frames == (turning.n_frames - 1) // 2 + 1
    assert np.linalg.norm(np.asarray(half.frames())[-1] - expect[2 * (half.source.n_frames - 1)], axis=-1).max() \
        * mm < 1.0                                                              # its last frame is the clip's


def test_head_pose_moves_the_target_rigidly(turning):
    """--head-pose: each frame of the result turns and moves by the recovered head pose, about the face centre."""
    from nfs.mesh.align import Alignment
    from nfs.video.pose import apply_head_pose, pose_pivot

    user_mm = np.random.default_rng(0).normal(size=(200, 3)) * 50.0           # a mesh in mm, turned and shifted
    turn = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    turn *= np.sign(np.linalg.det(turn))
    align = Alignment(0.1, turn, np.array([1.0, -2.0, 0.5]), 0.0, 1.0, False, 0)
    frames = np.repeat(user_mm[None], turning.n_frames, axis=0).astype(np.float32)
    apply_head_pose(frames, align, turning.fit.rotations, turning.fit.translations)
    for t in (0, 10, 25):
        moved = align.apply(frames[t])
        expect = (align.apply(user_mm) - pose_pivot()) @ turning.fit.rotations[t].T + pose_pivot() \
            + turning.fit.translations[t]
        assert np.abs(moved - expect).max() < 1e-3                          # cm
    assert np.abs(frames[turning.fit.neutral_frame] - user_mm).max() < 0.05   # mm: the neutral frame stays put


# --- one-sided expressions, brows down, gaze; calibration; faces that cannot be read -----------------------------

@pytest.fixture(scope="module")
def one_sided():
    truth = load_codes_csv(DATA / "face_one_sided_weights.csv").codes
    gaze = np.loadtxt(DATA / "face_one_sided_gaze.csv", delimiter=",", skiprows=1)[:, 1:]
    return load_clip(DATA / "face_one_sided.mp4"), truth, gaze


def test_one_sided_blink_and_half_smile_read_one_sided(one_sided):
    clip, truth, _ = one_sided
    for shape, other in (("eyeBlink_L", "eyeBlink_R"), ("mouthSmile_R", "mouthSmile_L")):
        peak = int(np.argmax(column(truth, shape)))
        got, beside = column(clip.codes, shape)[peak], column(clip.codes, other)[peak]
        assert got >= 0.3 and beside < 0.5 * got, (shape, got, beside)
        assert np.corrcoef(column(truth, shape), column(clip.codes, shape))[0, 1] >= 0.8


def test_brows_down_read(one_sided):
    """Brows lowered on the render read as browDown on both sides (weakly: MediaPipe reads the rendered rest face as
    browOuterUp ~0.3 and the lowered brows as that dropping; eyes looking down read a little browDown too)."""
    clip, truth, _ = one_sided
    rest = int(np.argmin(truth.sum(1)))
    for side in ("browDown_L", "browDown_R"):
        peak = int(np.argmax(column(truth, side)))
        got = column(clip.codes, side)
        assert got[peak] >= got[rest] + 0.05 and got[peak] >= 0.08, (side, got[peak], got[rest])
        assert np.corrcoef(column(truth, side), got)[0, 1] >= 0.5


def test_gaze_follows_the_rendered_eye_turns(one_sided):
    clip, _, gaze = one_sided
    yaw, pitch = gaze.T
    expected = {"eyeLookOut_L": yaw, "eyeLookIn_R": yaw, "eyeLookIn_L": -yaw, "eyeLookOut_R": -yaw,
                "eyeLookUp_L": pitch, "eyeLookUp_R": pitch, "eyeLookDown_L": -pitch, "eyeLookDown_R": -pitch}
    for shape, angle in expected.items():
        r = np.corrcoef(np.clip(angle, 0, None), column(clip.codes, shape))[0, 1]
        assert r >= 0.7, (shape, r)


def test_calibration_neutral_dead_zone_and_gains():
    from nfs.arkit import ARKIT_NAMES
    from nfs.video.calibrate import calibrate_scores, choose_neutral_frame, gain_vector, scores_to_ict
    k = ARKIT_NAMES.index("browDownLeft")
    scores = np.full((20, 52), 0.02)
    scores[:, k] = 0.2                                   # a resting face that reads 0.2 brow down
    scores[12:15, ARKIT_NAMES.index("jawOpen")] = 0.8
    scores[3:5, ARKIT_NAMES.index("eyeLookUpLeft")] = 0.9    # looking around is not an expression
    assert choose_neutral_frame(scores) == 0
    w = calibrate_scores(scores, scores[0], Calibration())
    assert w[:, k].max() == 0.0 and w[13, ARKIT_NAMES.index("jawOpen")] == pytest.approx(0.78 / 0.98)
    scores[8, k] = 1.0
    assert calibrate_scores(scores, scores[0], Calibration())[8, k] == pytest.approx(1.0)   # 1 stays 1
    dz = calibrate_scores(scores, None, Calibration(dead_zone=0.25))
    assert dz[0, k] == 0.0 and dz[13, ARKIT_NAMES.index("jawOpen")] == pytest.approx((0.8 - 0.25) / 0.75)
    g = gain_vector({"eyeBlink": 1.5, "jaw_open": 0.5, "browInnerUp_L": 2.0})
    assert g[ARKIT_NAMES.index("eyeBlinkLeft")] == g[ARKIT_NAMES.index("eyeBlinkRight")] == 1.5
    assert g[ARKIT_NAMES.index("jawOpen")] == 0.5 and g[ARKIT_NAMES.index("browInnerUp")] == 2.0
    with pytest.raises(ValueError, match="unknown blendshape names in the gains: mouthWide"):
        gain_vector({"mouthWide": 2.0})
    from nfs.video.calibrate import parse_gains
    assert parse_gains("eyeBlink=1.3, jawOpen 1.2;mouthSmile_L:0.5") == {"eyeBlink": 1.3, "jawOpen": 1.2,
                                                                         "mouthSmile_L": 0.5}
    with pytest.raises(ValueError, match="cannot read the gain 'eyeBlink'"):
        parse_gains("eyeBlink")
    codes, neutral = scores_to_ict(scores, 30.0, Calibration(gains={"jawOpen": 2.0}, smoothing_s=0.0))
    assert neutral == 0 and codes[13, EXPRESSION_NAMES.index("jawOpen")] == pytest.approx(1.0)
    brow = codes[:, EXPRESSION_NAMES.index("browDown_L")]
    assert codes.shape == (20, 53) and brow[0] == 0.0 and brow[8] == pytest.approx(1.0)


def test_two_faces_follow_the_largest_and_say_so(frames, tmp_path):
    from PIL import Image
    canvas = []
    for f in frames[:8]:
        c = np.empty((480, 960, 3), np.uint8)
        c[:] = BACKGROUND_RGB
        c[:, :640] = f
        c[240:480, 700:960] = np.asarray(Image.fromarray(f[:, 80:560]).resize((260, 240)))    # a smaller face
        canvas.append(c)
    clip = load_video_clip(write_video(tmp_path / "two.mp4", canvas))
    assert any("2 faces in view" in w and "following the largest" in w for w in clip.warnings), clip.warnings
    assert clip.landmarks[:, :, 0].max() < 640                 # every landmark on the large face


def test_face_turned_away_or_upside_down_is_reported(frames, tmp_path):
    from nfs.video.synthetic import render_face, yaw_pitch_roll_matrix
    away = render_face(None, size=480, width=640, rotation=yaw_pitch_roll_matrix(80))
    edited = [away if i in (6, 7) else f for i, f in enumerate(frames[:12])]
    edited += [f[::-1, ::-1].copy() for f in frames[12:16]]                 # the camera turned upside down
    clip = load_video_clip(write_video(tmp_path / "away.mp4", edited))
    said = " ".join(clip.warnings)
    assert "6-7" in said and "bridged" in said, said
    assert "upside down in" in said and "13-15" in said, said
    assert np.isfinite(clip.codes).all()


def test_browser_recording_gets_its_frame_rate_and_duration(tmp_path):
    """A WebM written to a pipe, as a browser's MediaRecorder writes it, states no duration: the reader measures
    its frame rate, and the remuxed copy the player gets back states its length."""
    import subprocess

    import imageio_ffmpeg
    from nfs.video.reader import lacks_duration, measured_fps, remux_with_duration
    rec = tmp_path / "recording.webm"
    with open(rec, "wb") as out:
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(VIDEO), "-frames:v", "24",
                        "-r", "24", "-c:v", "libvpx", "-b:v", "1M", "-f", "webm", "pipe:1"], stdout=out, check=True)
    assert lacks_duration(rec) and measured_fps(rec) == 24.0
    fixed = remux_with_duration(rec, tmp_path / "recording_timed.webm")
    assert fixed is not None and not lacks_duration(fixed)
    assert not list(tmp_path.glob("*.part*"))                      # no half-written file left behind
    assert remux_with_duration(tmp_path / "missing.webm", tmp_path / "out.webm") is None
    assert not (tmp_path / "out.webm").exists()
