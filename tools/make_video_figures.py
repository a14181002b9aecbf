"""Figures of the video source (docs/video.md): a strip of input frames beside the retargeted stylized head, and the
recovered weight curves against the rendered truth (tests/data/video/face_expressions.mp4).

    PYTHONPATH=. python tools/make_video_figures.py     # writes assets/video/strip.png and curves.png, prints r
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from nfs import REPO_ROOT
from nfs.ict import EXPRESSION_NAMES
from nfs.io import load_codes_csv
from nfs.pipeline import load_clip, load_shipped_model, prepare_target, retarget
from nfs.render import render_shaded
from nfs.video.reader import read_frames

DATA = REPO_ROOT / "tests" / "data" / "video"
OUT = REPO_ROOT / "assets" / "video"
CURVES = ("jawOpen", "eyeBlink_L", "eyeBlink_R", "mouthSmile_L", "mouthSmile_R", "browInnerUp_L", "browInnerUp_R")


def main() -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    OUT.mkdir(parents=True, exist_ok=True)
    video = DATA / "face_expressions.mp4"
    clip = load_clip(video)
    truth = load_codes_csv(DATA / "face_expressions_weights.csv").codes
    for name in ("face_expressions", "face_turning"):
        c = clip if name == "face_expressions" else load_clip(DATA / f"{name}.mp4")
        t = truth if name == "face_expressions" else load_codes_csv(DATA / f"{name}_weights.csv").codes
        r = {n: np.corrcoef(t[:, EXPRESSION_NAMES.index(n)], c.codes[:, EXPRESSION_NAMES.index(n)])[0, 1]
             for n in CURVES}
        brow = [EXPRESSION_NAMES.index("browInnerUp_L"), EXPRESSION_NAMES.index("browInnerUp_R")]
        r["browInnerUp (mean L/R)"] = np.corrcoef(t[:, brow].mean(1), c.codes[:, brow].mean(1))[0, 1]
        print(name, " ".join(f"{k} {v:.2f}" for k, v in r.items()))

    fig, axes = plt.subplots(len(CURVES), 1, figsize=(7, 9), sharex=True)
    for ax, n in zip(axes, CURVES):
        j = EXPRESSION_NAMES.index(n)
        ax.plot(truth[:, j], "k-", lw=1.5, label="rendered")
        ax.plot(clip.codes[:, j], "C1-", lw=1.5, label="from the video")
        ax.set_ylabel(n, rotation=0, ha="right", fontsize=8)
        ax.set_ylim(-0.05, 1.05)
        ax.text(0.99, 0.8, f"r = {np.corrcoef(truth[:, j], clip.codes[:, j])[0, 1]:.2f}", transform=ax.transAxes,
                ha="right", fontsize=8)
    axes[0].legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(OUT / "curves.png", dpi=90)

    model = load_shipped_model()[0]
    with tempfile.TemporaryDirectory() as tmp:
        r = retarget(REPO_ROOT / "assets" / "targets" / "stylized_head.obj", clip, tmp, model=model, exports=())
        frames = r.frames()
        target = r.target
        skin = target.clean.original_index[target.clean.skin_vertices]
        video_frames = [f.copy() for f in read_frames(video, 1000)[0]]
        picks = [int(np.argmax(truth[:, EXPRESSION_NAMES.index(n)])) for n in ("jawOpen", "eyeBlink_L", "mouthSmile_L",
                                                                               "browInnerUp_L")]
        picks = [clip.fit.neutral_frame] + picks
        tiles = []
        for i in picks:
            src = Image.fromarray(video_frames[i][40:400, 140:500]).resize((240, 240))
            tv = target.alignment.apply(np.asarray(frames[i])[skin])
            dst = Image.fromarray(render_shaded(tv, target.skin_faces, size=480)[60:420, 60:420]).resize((240, 240))
            tiles.append(np.concatenate([np.asarray(src), np.asarray(dst)], axis=0))
        Image.fromarray(np.concatenate(tiles, axis=1)).save(OUT / "strip.png")
    print(f"frames {picks}; wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
