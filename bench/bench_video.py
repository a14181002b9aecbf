"""Video source speed: frames per second of decoding, Face Landmarker v2 (detector, 478 landmarks, 52 blendshape
scores, transformation matrix; LiteRT) and the calibration to ICT weights, on a 640 x 480 face video (the test
fixture tests/data/video/face_expressions.mp4, looped to --frames frames).

    python bench/bench_video.py [--frames 600] [--threads 1]

Prints the machine's CPU count and flags with the figures. The whole source (`load_video_clip`: decode, track, fit)
is timed end to end, then each stage alone, then each model alone per frame (min of the runs, ms).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nfs.model.precision import cpu_flags
from nfs.video.calibrate import Calibration
from nfs.video.landmarks import FaceTracker
from nfs.video.reader import read_frames
from nfs.video.source import load_video_clip, read_tracks, track_frames
from nfs.video.synthetic import write_video

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "video" / "face_expressions.mp4"


def shown_cpu_flags() -> str:
    flags = cpu_flags()
    if not flags:
        return "unknown"
    return " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags) or "none of avx2/avx512"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--threads", type=int, default=1, help="LiteRT threads per model")
    a = p.parse_args()
    frames, fps, _ = read_frames(FIXTURE, 10_000)
    base = list(frames)
    looped = [base[i % len(base)] for i in range(a.frames)]
    h, w = looped[0].shape[:2]
    print(f"cpus {os.cpu_count()}, flags: {shown_cpu_flags()}; {len(looped)} frames of {w}x{h}, LiteRT threads {a.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.mp4"
        write_video(path, looped, fps)
        FaceTracker(a.threads)                     # load once so the timing below is steady state
        t = time.perf_counter()
        clip = load_video_clip(path, threads=a.threads)
        total = time.perf_counter() - t
        print(f"end to end (decode + landmarker + calibration): {clip.n_frames / total:6.1f} frames/s "
              f"({total:.2f} s for {clip.n_frames} frames)")
        t = time.perf_counter()
        decoded = sum(1 for _ in read_frames(path, 10_000)[0])
        dt = time.perf_counter() - t
        print(f"decode only:                                     {decoded / dt:6.1f} frames/s")
    tracker = FaceTracker(a.threads)
    t = time.perf_counter()
    tracks = track_frames(looped, tracker)
    dt = time.perf_counter() - t
    print(f"landmarker only (frames in memory):              {len(looped) / dt:6.1f} frames/s")
    t = time.perf_counter()
    read_tracks(tracks, fps, Calibration(), "bench")
    dt = time.perf_counter() - t
    print(f"calibration + pose only:                         {len(looped) / dt:6.1f} frames/s")
    from PIL import Image
    image = Image.fromarray(looped[0])
    region = tracker.detector.detect(image)[0].region
    pts, _ = tracker.landmarker.landmarks(image, region)
    stages = {"detector": lambda: tracker.detector.detect(image),
              "landmarks (crop + 478-point model)": lambda: tracker.landmarker.landmarks(image, region),
              "blendshapes": lambda: tracker.blendshape_model.scores(pts),
              "transformation matrix": lambda: tracker.geometry.matrix(pts, image.size)}
    for name, run in stages.items():
        times = []
        for _ in range(30):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        print(f"  {name:36s} {1000 * min(times):6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
