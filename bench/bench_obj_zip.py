"""OBJ-sequence zip writer benchmark: `export_obj_sequence_zip` on the 5k demo head with a moving sequence, timed
by wall clock AND by CPU time (all threads), best of `--runs`, and split into its parts (fixed-point text alone,
deflate alone) so that a slow run shows where the time goes. Prints the CPU flags and the peak memory; nothing is
asserted. Wall time on a shared machine is mostly other jobs' doing: compare CPU figures there.

    python bench/bench_obj_zip.py [--frames 600] [--runs 3] [--deflate isal,zlib]
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from nfs import REPO_ROOT as ROOT


def cpu_flags() -> str:
    flags = open("/proc/cpuinfo").read()
    found = [f for f in ("avx512_bf16", "amx_bf16", "avx512f", "avx2") if f" {f}" in flags]
    return f"{os.cpu_count()} CPUs, flags: {' '.join(found) or 'none of avx2/avx512'}; load average " + \
        " ".join(f"{x:.1f}" for x in os.getloadavg())


def moving_frames(n_frames: int, seed: int = 0):
    """The stylized head (5,004 vertices, cm) with a smooth per-vertex wobble: (T, V, 3) float32, faces, uv."""
    from nfs.io import load_mesh
    mesh = load_mesh(ROOT / "assets" / "targets" / "stylized_head.obj")
    v = mesh.vertices.astype(np.float32)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, (1, len(v), 3)).astype(np.float32)
    t = np.arange(n_frames, dtype=np.float32)[:, None, None]
    return v[None] + 0.3 * np.sin(t / 9.0 + phase), mesh.faces, getattr(mesh, "uv", None)


def timed(fn):
    """(result, wall s, CPU s of this process, all threads)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--deflate", default="isal,zlib", help="deflate back ends to time (isal: ISA-L where installed)")
    a = p.parse_args()
    from nfs.export import export_obj_sequence_zip
    from nfs.io import fixed_point, zip_stream

    print(cpu_flags())
    frames, faces, uv = moving_frames(a.frames)
    print(f"{a.frames} frames x {frames.shape[1]:,} vertices; peak RSS before writing "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    work = Path(tempfile.mkdtemp(prefix="nfs_obj_zip_"))
    isal = getattr(zip_stream, "_isal", None)          # None: a build without ISA-L support
    for backend in a.deflate.split(","):
        if backend == "isal" and isal is None:
            print("isal: not installed")
            continue
        zip_stream._isal = isal if backend == "isal" else None
        best_w = best_c = float("inf")
        for _ in range(a.runs):
            _, w, c = timed(lambda: export_obj_sequence_zip(work / "seq.zip", faces, frames, uv=uv))
            best_w, best_c = min(best_w, w), min(best_c, c)
        with zipfile.ZipFile(work / "seq.zip") as zf:
            text = sum(i.file_size for i in zf.infolist())
        print(f"{backend:5s} OBJ zip: {text / 1e6:.0f} MB of OBJ text, {(work / 'seq.zip').stat().st_size / 1e6:.0f} MB "
              f"zipped; best of {a.runs}: {best_w:.2f} s wall ({text / 1e6 / best_w:.0f} MB/s), {best_c:.2f} s CPU "
              f"({text / 1e6 / best_c:.0f} MB per CPU-second)")
    zip_stream._isal = isal

    # the parts, one thread each: vertex lines as text, then deflating them
    V = frames.shape[1]
    texts, w, c = timed(lambda: [t for s in range(0, len(frames), 16)
                                 for t in fixed_point.fixed_point_rows(frames[s:s + 16].reshape(-1, 3), b"v ", 6, V)])
    size = sum(map(len, texts))
    print(f"parts: vertex lines {size / 1e6:.0f} MB of text ({size / len(frames) / 1e3:.0f} kB a frame): "
          f"formatting {size / 1e6 / w:.0f} MB/s wall, {size / 1e6 / c:.0f} MB per CPU-second")
    writer = zip_stream.ZipStreamWriter(open(os.devnull, "wb"))
    for backend in a.deflate.split(","):
        writer.fast = backend == "isal" and isal is not None
        out, w, c = timed(lambda: sum(len(writer.deflate_head(t)[0]) for t in texts))
        print(f"parts: deflate ({'isal' if writer.fast else 'zlib'} level 1) {size / 1e6 / w:.0f} MB/s wall, "
              f"{size / 1e6 / c:.0f} MB per CPU-second, ratio {out / size:.3f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
