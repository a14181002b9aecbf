"""Animated GLB and rig GLB at a million vertices: a 1000 x 1000 grid with UVs, a morph sequence of 51 random
targets x 4,030 frames (as a long take's basis is) and 52 rig shapes; prints the CPU flags, the wall and CPU
time of each export, the file sizes and the peak memory (resident set) before and after each. Nothing is asserted.

    python bench/bench_big_glb.py [--side 1000] [--frames 4030] [--targets 51]
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def grid(side: int):
    """A wavy (side x side) grid: vertices (V, 3) float32, faces (F, 3), per-vertex uv (V, 2)."""
    g = np.stack(np.meshgrid(np.linspace(0, 20, side), np.linspace(0, 20, side)), -1).reshape(-1, 2)
    v = np.c_[g, np.sin(g[:, 0]) + np.cos(g[:, 1])].astype(np.float32)
    i = np.arange(side * side).reshape(side, side)
    q = np.stack([i[:-1, :-1], i[1:, :-1], i[1:, 1:], i[:-1, 1:]], -1).reshape(-1, 4)
    return v, np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]]), (g / 20).astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--side", type=int, default=1000)
    p.add_argument("--frames", type=int, default=4030)
    p.add_argument("--targets", type=int, default=51)
    a = p.parse_args()
    from nfs.export import export_animated_glb, export_rig_glb
    from nfs.model.precision import cpu_flags
    from nfs.morph_basis import MorphSequence

    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    print(f"CPU flags: {' '.join(flags) or 'none of avx2/avx512'}; {os.cpu_count()} cores; load average "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    neutral, faces, uv = grid(a.side)
    rng = np.random.default_rng(0)
    out = Path(tempfile.mkdtemp(prefix="nfs_big_glb_"))
    targets = np.empty((a.targets,) + neutral.shape, np.float32)
    for k in range(a.targets):
        targets[k] = rng.standard_normal(neutral.shape, dtype=np.float32) * np.float32(0.01)
    seq = MorphSequence(neutral, targets, rng.uniform(-1, 1, (a.frames, a.targets)).astype(np.float32), 1e-3, 2e-3)
    print(f"{len(neutral):,} vertices, {a.targets} targets x {a.frames} frames; peak RSS with the inputs "
          f"{peak_gib():.2f} GiB")
    for name, write in (("animated GLB", lambda: export_animated_glb(out / "a.glb", neutral, faces, seq, 60.0, uv=uv)),
                        ("rig GLB (52 shapes)", lambda: export_rig_glb(out / "r.glb", neutral, faces, targets[:52],
                                                                       [f"s{k}" for k in range(min(52, a.targets))],
                                                                       uv=uv))):
        before = peak_gib()
        t, c = time.perf_counter(), time.process_time()
        write()
        path = out / ("a.glb" if name.startswith("animated") else "r.glb")
        print(f"{name}: {time.perf_counter() - t:.2f} s wall, {time.process_time() - c:.2f} s CPU, "
              f"{path.stat().st_size / 2 ** 20:.0f} MiB; peak RSS {peak_gib():.2f} GiB (before it {before:.2f})")


if __name__ == "__main__":
    main()
