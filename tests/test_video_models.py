"""Our LiteRT runner of Face Landmarker v2 (nfs/video/landmarks.py, face_geometry.py) against MediaPipe's own Tasks
API (the `mediapipe` package, a test dependency) on the same frames and the same model bundle: the landmarks, the 52
blendshape scores and the facial transformation matrix agree. Both run in image mode (a fresh detection per frame)."""
from __future__ import annotations

import numpy as np
import pytest

from nfs import REPO_ROOT
from nfs.arkit import ARKIT_NAMES
from nfs.video.landmarks import BLENDSHAPE_OUTPUTS, MODEL_BUNDLE, FaceTracker
from nfs.video.reader import read_frames
from nfs.video.synthetic import render_face, yaw_pitch_roll_matrix

mp = pytest.importorskip("mediapipe", reason="the mediapipe package (requirements.txt) is not installed")

DATA = REPO_ROOT / "tests" / "data" / "video"


@pytest.fixture(scope="module")
def pairs():
    """(frame, MediaPipe's result as arrays, ours) for frames of the rendered clips and a turned, rolled head."""
    from mediapipe.tasks.python import BaseOptions, vision
    options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(MODEL_BUNDLE)),
                                           running_mode=vision.RunningMode.IMAGE, num_faces=1,
                                           output_face_blendshapes=True, output_facial_transformation_matrixes=True)
    frames = []
    for name, picks in (("face_expressions.mp4", (0, 17, 33, 50)), ("face_turning.mp4", (12, 30))):
        got, _, _ = read_frames(DATA / name, 1000)
        frames += [f.copy() for i, f in enumerate(got) if i in picks]
    w = np.zeros(53, np.float32)
    frames.append(render_face(w, size=480, width=640, rotation=yaw_pitch_roll_matrix(-15, 5, -25)))
    ours = FaceTracker()
    out = []
    with vision.FaceLandmarker.create_from_options(options) as theirs:
        for f in frames:
            h, wd = f.shape[:2]
            r = theirs.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(f)))
            assert len(r.face_landmarks) == 1
            assert tuple(c.category_name for c in r.face_blendshapes[0]) == BLENDSHAPE_OUTPUTS
            scores = np.zeros(len(ARKIT_NAMES))
            for c in r.face_blendshapes[0][1:]:
                scores[ARKIT_NAMES.index(c.category_name)] = c.score
            ref = dict(points=np.array([[p.x * wd, p.y * h, p.z * wd] for p in r.face_landmarks[0]]),
                       scores=scores, matrix=np.array(r.facial_transformation_matrixes[0]))
            out.append((f, ref, ours(f, track=False)))
    return out


def test_landmarks_equal_mediapipes(pairs):
    for _, ref, got in pairs:
        d = np.linalg.norm(got.points[:, :2] - ref["points"][:, :2], axis=1)
        assert d.mean() < 0.3 and d.max() < 1.5, (d.mean(), d.max())            # pixels, of a ~300 px face
        assert np.abs(got.points[:, 2] - ref["points"][:, 2]).mean() < 0.3


def test_blendshape_scores_equal_mediapipes(pairs):
    for _, ref, got in pairs:
        assert np.abs(got.blendshapes - ref["scores"]).max() < 0.04
    # fed MediaPipe's own landmarks, our blendshape model and matrix give MediaPipe's numbers to float precision
    tracker = FaceTracker()
    for frame, ref, _ in pairs:
        assert np.abs(tracker.blendshape_model.scores(ref["points"]) - ref["scores"]).max() < 1e-4
        size = (frame.shape[1], frame.shape[0])
        assert np.abs(tracker.geometry.matrix(ref["points"], size) - ref["matrix"]).max() < 1e-3


def test_transformation_matrix_equals_mediapipes(pairs):
    for _, ref, got in pairs:
        r_ours, r_theirs = got.matrix[:3, :3], ref["matrix"][:3, :3]
        angle = np.degrees(np.arccos(np.clip((np.trace(r_ours @ r_theirs.T) - 1) / 2, -1, 1)))
        assert angle < 1.0 and np.abs(got.matrix[:3, 3] - ref["matrix"][:3, 3]).max() < 0.3    # degrees, cm
