"""Regenerate tests/data/video/: a face video rendered from the ICT model with known weights and head motion.

    python tests/data_makers/video_fixtures.py [--one-sided]

Writes face_expressions.mp4 (640 x 480, 30 frames/s, H.264; the head moves sideways and up, no turn) and
face_turning.mp4 (the head also turns and nods), each with <name>_weights.csv (the true 53 ICT weights per frame, our
clip CSV) and <name>_pose.csv (frame, yaw, pitch, roll in degrees, shift x, y in cm). The face
is rendered by nfs.render through nfs.video.synthetic (skin tone, lash lines, dark irises, dark mouth interior).
Left and right move together (bilateral blinks, smiles and brows); the jaw has its own timing. Also
face_one_sided.mp4: a left-eye blink, a right half smile, brows down, then the eyes turned left, right, up and down
(the eyeballs turned by `nfs.video.synthetic.turn_eyes`, the lids by ICT's eyeLook shapes), with its weights CSV and
<name>_gaze.csv (frame, eye yaw, eye pitch in degrees). Deterministic.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from nfs.io import save_codes_csv
from nfs.video.synthetic import render_face, test_weights, write_video, yaw_pitch_roll_matrix

OUT = Path(__file__).resolve().parents[1] / "data" / "video"
N_FRAMES = 60
SEED = 1


def head_motion(n_frames: int) -> np.ndarray:
    """(T, 5) yaw, pitch, roll (degrees), shift x, y (cm): a slow turn and nod that starts from rest, as much as a
    person facing a webcam moves (larger turns cost the brows and blinks accuracy: see docs/video.md)."""
    t = np.arange(n_frames) / n_frames
    ramp = np.clip(t * 4, 0, 1)
    return np.stack([6 * np.sin(2 * np.pi * t) * ramp, 3 * np.sin(4 * np.pi * t + 0.5) * ramp,
                     2 * np.sin(2 * np.pi * t + 1.0) * ramp, 1.0 * np.sin(2 * np.pi * t) * ramp,
                     0.5 * np.cos(2 * np.pi * t) * ramp - 0.5 * ramp], 1)


def write_fixture(name: str, n_frames: int, seed: int, turn: bool) -> None:
    """One video with its weights and pose CSVs; without `turn` the head only moves sideways (no rotation)."""
    weights = test_weights(n_frames, seed=seed)
    pose = head_motion(n_frames)
    if not turn:
        pose[:, :3] = 0.0
    frames = [render_face(w, size=480, width=640, rotation=yaw_pitch_roll_matrix(*p[:3]), shift_cm=p[3:])
              for w, p in zip(weights, pose)]
    write_video(OUT / f"{name}.mp4", frames, fps=30.0)
    save_codes_csv(OUT / f"{name}_weights.csv", weights)
    header = "frame,yaw_deg,pitch_deg,roll_deg,shift_x_cm,shift_y_cm"
    rows = [f"{i}," + ",".join(f"{v:.4f}" for v in p) for i, p in enumerate(pose)]
    (OUT / f"{name}_pose.csv").write_text(header + "\n" + "\n".join(rows) + "\n")


GAZE_YAW_DEG, GAZE_PITCH_DEG = 25.0, 20.0
ONE_SIDED = (   # (centre frame, {ICT shape: peak weight}, eye (yaw, pitch) degrees at the peak)
    (9, {"eyeBlink_L": 1.0}, (0, 0)),
    (16, {"mouthSmile_R": 0.9}, (0, 0)),
    (23, {"browDown_L": 1.0, "browDown_R": 1.0}, (0, 0)),
    (30, {"eyeLookOut_L": 1.0, "eyeLookIn_R": 1.0}, (GAZE_YAW_DEG, 0)),        # toward the subject's left
    (36, {"eyeLookIn_L": 1.0, "eyeLookOut_R": 1.0}, (-GAZE_YAW_DEG, 0)),
    (42, {"eyeLookUp_L": 1.0, "eyeLookUp_R": 1.0}, (0, GAZE_PITCH_DEG)),
    (48, {"eyeLookDown_L": 1.0, "eyeLookDown_R": 1.0}, (0, -GAZE_PITCH_DEG)),
)


def write_one_sided(name: str = "face_one_sided", n_frames: int = 54) -> None:
    """One-sided expressions and eye turns, one at a time, each a smooth bump (see the module docstring)."""
    from nfs.ict import EXPRESSION_NAMES
    t = np.arange(n_frames)
    weights = np.zeros((n_frames, len(EXPRESSION_NAMES)), np.float32)
    gaze = np.zeros((n_frames, 2))
    for centre, shapes, eyes in ONE_SIDED:
        bump = np.exp(-0.5 * ((t - centre) / 2.0) ** 2)
        for n, peak in shapes.items():
            weights[:, EXPRESSION_NAMES.index(n)] = np.maximum(weights[:, EXPRESSION_NAMES.index(n)], peak * bump)
        gaze += np.outer(bump, eyes)
    frames = [render_face(w, size=480, width=640, gaze_deg=g) for w, g in zip(weights, gaze)]
    write_video(OUT / f"{name}.mp4", frames, fps=30.0)
    save_codes_csv(OUT / f"{name}_weights.csv", weights)
    rows = [f"{i},{g[0]:.4f},{g[1]:.4f}" for i, g in enumerate(gaze)]
    (OUT / f"{name}_gaze.csv").write_text("frame,eye_yaw_deg,eye_pitch_deg\n" + "\n".join(rows) + "\n")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    if "--one-sided" not in sys.argv:
        write_fixture("face_expressions", N_FRAMES, SEED, turn=False)
        write_fixture("face_turning", 40, SEED + 1, turn=True)
    write_one_sided()
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
