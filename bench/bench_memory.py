"""Peak memory of `nfs.pipeline.retarget` (exports: OBJ-sequence zip + animated GLB; no video, no rig) on large
inputs. Each case runs in a fresh child process and reports its own peak resident set size
(resource.getrusage(RUSAGE_SELF).ru_maxrss), once after setup (imports, model, mesh, clip) and once after
retarget; wall times are per stage. Goal: peak < 4 GiB for 100k vertices x 1,000 frames.

    python bench/bench_memory.py                 # both cases: 10k x 300, then 100k x 1000
    python bench/bench_memory.py --cases 10k     # one case
    python bench/bench_memory.py --warm-cache    # reuse the operator cache (default: a cold one per case)
    python bench/bench_memory.py --cases 100k --frames 100 --chunk-frames 32   # decode chunk vs peak

The decoder runs on `--chunk-frames` frames at a time (default: retarget's own); for large meshes its activations
(chunk x vertices x decoder width) dominate the peak. The decoded frames are not kept: each chunk streams into the
OBJ zip and into the compact morph basis of the animated GLB (morph targets x vertices, plus per-frame weights).

Targets: the ICT skin re-tessellated (bench_pipeline.head_with_vertices: decimated, then midpoint-subdivided
for large counts). Clip: the built-in `talk` codes clip tiled to the frame count. Model: ckpts/nfs_cpu.
The output folder (the exports, ~GBs for the large case) is a temp dir, removed afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = {"10k": (10_000, 300), "100k": (100_000, 1_000)}
GOAL_GIB = 4.0
CLIP = "talk"


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2 ** 30   # ru_maxrss is KiB on Linux


def child(n_vertices: int, n_frames: int, model_dir: str | None, out_dir: str, chunk_frames: int | None) -> dict:
    """One case in this (fresh) process: returns figures as a dict."""
    t = time.perf_counter()
    import dataclasses

    import numpy as np
    import torch

    from bench_pipeline import head_with_vertices
    from nfs.io import load_clip
    from nfs.pipeline import load_shipped_model, retarget

    model, _ = load_shipped_model(model_dir)
    v, f = head_with_vertices(n_vertices)
    base = load_clip(CLIP)
    reps = -(-n_frames // base.n_frames)
    clip = dataclasses.replace(base, name=f"{CLIP}_x{reps}", codes=np.tile(base.codes, (reps, 1))[:n_frames],
                               warnings=[])
    setup_s, setup_gib = time.perf_counter() - t, peak_rss_gib()

    t = time.perf_counter()
    chunk = {} if chunk_frames is None else {"chunk_frames": chunk_frames}
    result = retarget((v, f), clip, out_dir, model=model, exports=("obj_zip", "glb"), **chunk)
    wall = time.perf_counter() - t
    sizes = {k: p.stat().st_size / 2 ** 20 for k, p in result.exports.items()}
    seq = result.sequence                       # the decoded frames kept in memory as a morph basis
    sizes["morph basis in memory"] = (seq.targets.nbytes + seq.weights.nbytes) / 2 ** 20
    return {"vertices": int(len(v)), "faces": int(len(f)), "frames": int(clip.n_frames), "chunk": chunk_frames,
            "threads": torch.get_num_threads(), "setup_s": setup_s, "setup_peak_gib": setup_gib,
            "retarget_s": wall, "stages_s": {k: round(s, 2) for k, s in result.timings.items()},
            "prepare_s": {k: round(s, 2) for k, s in result.target.timings.items()},
            "peak_gib": peak_rss_gib(), "files_mib": {k: round(s, 1) for k, s in sizes.items()}}


def run_case(name: str, model_dir: str | None, warm_cache: bool, frames: int | None = None,
             chunk_frames: int | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"nfs_bench_memory_{name}_"))
    env = dict(os.environ)
    if not warm_cache:
        env["NFS_CACHE"] = str(work / "cache")          # a cold operator cache: the eigensolve is measured too
    try:
        cmd = [sys.executable, __file__, "--child", name, "--out", str(work / "out")]
        if model_dir:
            cmd += ["--model", model_dir]
        if frames:
            cmd += ["--frames", str(frames)]
        if chunk_frames:
            cmd += ["--chunk-frames", str(chunk_frames)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        total = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"case {name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
        figures["process_s"] = total
        return figures
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--model", default=None, help="model directory (default: the shipped ckpts/nfs_cpu)")
    p.add_argument("--warm-cache", action="store_true", help="use the normal operator cache ($NFS_CACHE)")
    p.add_argument("--frames", type=int, default=None, help="frames of every case (default: 300 / 1,000)")
    p.add_argument("--chunk-frames", type=int, default=None, help="decode chunk (default: retarget's)")
    p.add_argument("--child", choices=list(CASES), help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        n_vertices, n_frames = CASES[a.child]
        print(json.dumps(child(n_vertices, a.frames or n_frames, a.model, a.out, a.chunk_frames)), flush=True)
        return

    print(f"retarget peak RSS (exports obj_zip + glb), one fresh process per case; goal < {GOAL_GIB:g} GiB; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    worst = 0.0
    for name in a.cases:
        r = run_case(name, a.model, a.warm_cache, a.frames, a.chunk_frames)
        worst = max(worst, r["peak_gib"])
        ok = "OK" if r["peak_gib"] < GOAL_GIB else "OVER GOAL"
        print(f"\n{r['vertices']:,} vertices x {r['frames']:,} frames: peak RSS {r['peak_gib']:.2f} GiB ({ok}; "
              f"{r['setup_peak_gib']:.2f} GiB after imports + model + mesh + clip), retarget {r['retarget_s']:.1f} s "
              f"wall ({r['process_s']:.1f} s with process start and setup), {r['threads']} torch threads, decode chunk "
              f"{r['chunk'] or 'default'}")
        print("  retarget stages: " + ", ".join(f"{k} {s:.1f} s" for k, s in r["stages_s"].items()))
        print("  prepare stages:  " + ", ".join(f"{k} {s:.1f} s" for k, s in r["prepare_s"].items()))
        print("  files: " + ", ".join(f"{k} {s:,.0f} MiB" for k, s in r["files_mib"].items()))
    print(f"\nworst peak {worst:.2f} GiB: {'within' if worst < GOAL_GIB else 'OVER'} the {GOAL_GIB:g} GiB goal")


if __name__ == "__main__":
    main()
