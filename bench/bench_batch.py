"""Batch throughput: pairs per minute on the local engine with 1 and 2 workers and on a local Ray instance with 2
workers, the share of the workers' time spent preparing targets, and the scaling ratio (2 workers over 1).

    python bench/bench_batch.py                       # 2 targets x 3 clips of 60 frames, exports glb,rig
    python bench/bench_batch.py --targets 2 --clips 6 --frames 120 --runs 2

Each configuration runs the same manifest into a fresh output folder with a fresh operator cache (so no
configuration finds another's cached operators); with --runs N the best of N is kept. Prints the CPU flags, the
cores, the load average before each run (the machine may be shared) and the peak memory of the workers.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nfs import REPO_ROOT  # noqa: E402
from nfs.batch import run_batch  # noqa: E402
from nfs.io import load_clip  # noqa: E402
from nfs.io.codes_csv import save_codes_csv  # noqa: E402
from nfs.model.precision import cpu_flags  # noqa: E402

TARGETS = ("face_crop_metres", "ict_remeshed", "stylized_head", "ict_head_with_teeth")
CLIPS = ("talk", "smile", "blinks", "jaw_cheeks", "surprise", "angry", "sneer_asym", "pucker_funnel")


def make_manifest(folder: Path, n_targets: int, n_clips: int, frames: int) -> Path:
    (folder / "takes").mkdir(parents=True)
    for i in range(n_clips):
        codes = load_clip(CLIPS[i % len(CLIPS)]).codes
        reps = int(np.ceil(frames / len(codes)))
        save_codes_csv(folder / "takes" / f"take{i:02d}_{CLIPS[i % len(CLIPS)]}.csv", np.tile(codes, (reps, 1))[:frames])
    lines = ["target,clip"] + [f"{REPO_ROOT / 'assets' / 'targets' / (TARGETS[i] + '.obj')},takes/*.csv"
                               for i in range(n_targets)]
    path = folder / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def shown_flags() -> str:
    flags = cpu_flags()
    return " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in flags) or "none"


def run_one(manifest: Path, engine: str, workers: int, exports: str, root: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"{engine}{workers}_", dir=root))
    os.environ["NFS_CACHE"] = tempfile.mkdtemp(prefix="cache_", dir=root)      # cold operator cache
    load = os.getloadavg()[0]
    result = run_batch(manifest, out, engine=engine, workers=workers, exports=exports, device="cpu")
    ran = result.count("ok")
    assert result.count("failed") == 0, [p.error for p in result.pairs if p.error]
    return {"engine": engine, "workers": workers, "pairs": ran, "seconds": result.seconds,
            "per_minute": 60 * ran / result.seconds, "prepare_share": result.prepare_share,
            "prepare_s": sum(t["seconds"] for t in result.targets.values()),
            "pair_s": sum(p.seconds for p in result.pairs), "load": load}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=int, default=2, help=f"targets (1 to {len(TARGETS)}, from assets/targets)")
    p.add_argument("--clips", type=int, default=3, help="clips per target")
    p.add_argument("--frames", type=int, default=60, help="frames per clip (30 fps)")
    p.add_argument("--exports", default="glb,rig")
    p.add_argument("--runs", type=int, default=1, help="runs of each configuration (the best is kept)")
    p.add_argument("--configs", default="local:1,local:2,ray:2", help="engine:workers list")
    a = p.parse_args()
    cores = os.cpu_count()
    print(f"CPU flags: {shown_flags()}; {cores} cores; load average {os.getloadavg()[0]:.1f} at start "
          "(other jobs on the machine slow every figure)")
    print(f"manifest: {a.targets} targets x {a.clips} clips of {a.frames} frames, exports {a.exports}")
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        root = Path(tmp)
        manifest = make_manifest(root / "inputs", a.targets, a.clips, a.frames)
        best = {}
        for _ in range(a.runs):
            for config in a.configs.split(","):
                engine, workers = config.split(":")
                r = run_one(manifest, engine, int(workers), a.exports, root)
                print(f"  {engine} x{workers}: {r['pairs']} pairs in {r['seconds']:.1f} s = {r['per_minute']:.1f} "
                      f"pairs/min; target preparation {r['prepare_s']:.1f} s = {100 * r['prepare_share']:.0f} % of "
                      f"the workers' time, pairs {r['pair_s']:.1f} s (load average {r['load']:.1f} before)",
                      flush=True)
                if config not in best or r["per_minute"] > best[config]["per_minute"]:
                    best[config] = r
    print("best of", a.runs, "run(s):")
    print("| engine | workers | pairs/min | wall s | target preparation share |")
    print("|---|---|---|---|---|")
    for r in best.values():
        print(f"| {r['engine']} | {r['workers']} | {r['per_minute']:.1f} | {r['seconds']:.1f} | "
              f"{100 * r['prepare_share']:.0f} % |")
    one = best.get("local:1")
    for config in ("local:2", "ray:2"):
        if one and config in best:
            print(f"scaling {config} over local:1: {best[config]['per_minute'] / one['per_minute']:.2f}x "
                  "(ideal 2.00x)")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak memory of one worker process: {peak:.0f} MB; of this driver "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
