"""Live webcam puppeteering speed on this machine: frames/s from camera frame to viewer and the latency through the
chain (nfs/video/live.py: Face Landmarker v2 -> calibration -> the target's baked rig -> head pose -> viser viewer update),
with timestamps at each step. Frames come from the rendered face video (tests/data/video/face_expressions.mp4) paced
as a 30 frames/s camera; the target is assets/targets/stylized_head.obj prepared with the shipped model; the viewer is
a real viser server (app/viewer.py) with a browser-less scene.

    PYTHONPATH=. python bench/bench_live.py [--seconds 10] [--threads 2] [--fps 30]

Prints the CPU count and flags, frames/s drawn, the mean and 95th-percentile latency from a frame's capture to its
viewer update, and each step's share. The leg from the browser to the server (Gradio's streaming webcam) is not in
this figure: tests/test_video_app.py's fake-camera test prints the rate the server receives frames at.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from nfs import REPO_ROOT
from nfs.model.precision import cpu_flags


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2, help="LiteRT threads per model")
    p.add_argument("--fps", type=float, default=30.0, help="the simulated camera's frame rate")
    a = p.parse_args()
    from app.tabs.video import live_content
    from nfs.video.live import LiveChain
    from app.viewer import Viewer
    from nfs.pipeline import load_shipped_model, prepare_target, rig_shapes
    from nfs.video.reader import read_frames

    frames = [f.copy() for f in read_frames(REPO_ROOT / "tests" / "data" / "video" / "face_expressions.mp4", 1000)[0]]
    target = prepare_target(REPO_ROOT / "assets" / "targets" / "stylized_head.obj", load_shipped_model(None)[0])
    neutral, deltas = rig_shapes(target)
    chain = LiveChain(threads=a.threads, window=100_000)
    chain.set_target(neutral, deltas, target.alignment)
    viewer = Viewer(port=0)
    viewer.show(live_content(chain, target.name, target.raw.faces))
    flags = cpu_flags()
    shown = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags) or "none"
    print(f"cpus {os.cpu_count()}, flags: {shown}; camera {a.fps:g} frames/s 640x480, target {len(neutral)} "
          f"vertices, LiteRT threads {a.threads}")
    start = time.perf_counter()
    i = dropped = 0
    while time.perf_counter() - start < a.seconds:
        due = start + i / a.fps                       # the camera's capture time of frame i
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)
        elif now - due > 1.0 / a.fps:                  # the chain fell behind: this frame is stale, take the next
            i += 1
            dropped += 1
            continue
        chain.process(frames[i % len(frames)], captured=due, draw=viewer.refresh)
        i += 1
    t = np.array(chain._times)
    lat = (t[:, 3] - t[:, 0]) * 1000
    st = chain.stats()
    print(f"drawn {len(t)} of {i} camera frames in {a.seconds:g} s: {len(t) / (t[-1, 3] - t[0, 0]):.1f} frames/s "
          f"(dropped {dropped} stale frames)")
    print(f"latency capture -> viewer updated: mean {lat.mean():.1f} ms, p95 {np.percentile(lat, 95):.1f} ms, "
          f"max {lat.max():.1f} ms")
    print(f"  of which: waiting + reading {st.read_ms:.1f} ms, calibration + rig + pose {st.rig_ms:.1f} ms, "
          f"viewer update {st.draw_ms:.1f} ms (means)")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
