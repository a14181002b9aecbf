"""Time and peak memory of the avatar export: a Ready Player Me-like avatar of about 26k vertices (the test factory's
avatar with its head subdivided once: head, teeth, tongue, eyes, hair cards, glasses, skinned body and outfit) and a
600-frame clip, and the output file's size against the input's. Prints the CPU flags.

    python bench/bench_avatar.py                  # the export alone, then the whole retarget (prepare included)
    python bench/bench_avatar.py --stages export  # the export alone (synthetic shapes on the head's vertices)
    python bench/bench_avatar.py --frames 600 --repeat 3
    python bench/bench_avatar.py --stages export --subdivide 4 --repeat 1   # a head of about 1.3M vertices

The retarget is forced (`force=True`): the timing does not depend on the alignment confidence, which is printed.

Each stage runs in a fresh child process that reports its own peak resident set size (ru_maxrss): the baseline after
imports and inputs, and the peak after the work. Timings on a shared machine are noisy: the minimum of --repeat runs
is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2 ** 30


def talk_weights(n_frames: int):
    """(n_frames, 53) ICT weights: the built-in `talk` clip tiled to n_frames."""
    import numpy as np
    from nfs.io import load_builtin_clip
    clip = load_builtin_clip("talk")
    codes = np.asarray(clip.codes, np.float32)
    return np.resize(codes, (n_frames, codes.shape[1])), clip


def stage_export(folder: Path, n_frames: int, repeat: int, subdivide: int = 1) -> dict:
    import numpy as np
    import avatar_factory as af
    from nfs.avatar_export import arkit_rig, export_avatar
    from nfs.io import load_mesh
    src = folder / "avatar.glb"
    af.write_avatar(src, af.AvatarSpec(subdivide=subdivide))
    raw = load_mesh(src, max_vertices=None)
    codes, _ = talk_weights(n_frames)
    rng = np.random.default_rng(0)
    near = (np.linalg.norm(raw.vertices - [0.0, 1.58, 0.0], axis=1) < 0.13).astype(np.float32)
    ict_shapes = np.empty((53, raw.n_vertices, 3), np.float32)
    for k in range(53):                  # one shape at a time: the inputs stay float32
        ict_shapes[k] = rng.standard_normal((raw.n_vertices, 3), dtype=np.float32) * np.float32(1e-3) * near[:, None]
    base = peak_gib()
    times = []
    for _ in range(repeat):
        t, cpu = time.perf_counter(), time.process_time()
        shapes, weights = arkit_rig(ict_shapes, codes)
        out = folder / "avatar_out.glb"
        export_avatar(out, src.read_bytes(), src.name, raw, shapes, weights, 30.0, clip_name="talk")
        times.append(time.perf_counter() - t)
        cpu = time.process_time() - cpu
    return {"stage": "export", "cpu_s": cpu, "vertices": raw.n_vertices, "frames": n_frames, "seconds_min": min(times),
            "seconds_all": times, "input_mb": src.stat().st_size / 1e6, "output_mb": out.stat().st_size / 1e6,
            "baseline_gib": base, "peak_gib": peak_gib()}


def stage_retarget(folder: Path, n_frames: int) -> dict:
    import numpy as np
    import avatar_factory as af
    from nfs.clips import Clip
    from nfs.io import load_mesh
    from nfs.pipeline import load_shipped_model, retarget
    src = folder / "avatar.glb"
    af.write_avatar(src, af.AvatarSpec(subdivide=1))
    raw = load_mesh(src)
    codes, clip = talk_weights(n_frames)
    import dataclasses
    clip = dataclasses.replace(clip, codes=codes, name="talk600")
    model = load_shipped_model(None)[0]
    base = peak_gib()
    t = time.perf_counter()
    r = retarget(raw, clip, folder / "out", model=model, exports=("avatar",), device="cpu", force=True)
    total = time.perf_counter() - t
    out = r.exports["avatar"]
    del np
    return {"stage": "retarget", "vertices": raw.n_vertices, "frames": n_frames, "seconds": total,
            "timings": {k: round(v, 2) for k, v in r.timings.items()}, "input_mb": src.stat().st_size / 1e6,
            "output_mb": Path(out).stat().st_size / 1e6, "baseline_gib": base, "peak_gib": peak_gib(),
            "confidence": r.target.alignment.confidence}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stages", default="export,retarget")
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--subdivide", type=int, default=1, help="rounds of subdivision of the avatar's head (export stage)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        with tempfile.TemporaryDirectory() as tmp:
            fig = stage_export(Path(tmp), a.frames, a.repeat, a.subdivide) if a.child == "export" else \
                stage_retarget(Path(tmp), a.frames)
        print("RESULT " + json.dumps(fig))
        return 0
    from nfs.model.precision import cpu_flags
    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    print(f"CPU flags: {' '.join(flags) or '(none of avx2 / avx512f / avx512_bf16 / amx_bf16)'}; "
          f"{os.cpu_count()} cores")
    for stage in a.stages.split(","):
        run = subprocess.run([sys.executable, __file__, "--child", stage, "--frames", str(a.frames),
                              "--repeat", str(a.repeat), "--subdivide", str(a.subdivide)], capture_output=True, text=True, cwd=ROOT)
        line = next((x for x in run.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"{stage}: failed\n{run.stderr[-3000:]}")
            return 1
        fig = json.loads(line[7:])
        ratio = fig["output_mb"] / fig["input_mb"]
        if stage == "export":
            print(f"avatar export, {fig['vertices']:,} vertices x {fig['frames']} frames: "
                  f"{fig['seconds_min']:.2f} s (min of {len(fig['seconds_all'])}: "
                  f"{', '.join(f'{s:.2f}' for s in fig['seconds_all'])}; last run {fig['cpu_s']:.2f} s CPU), peak RSS {fig['peak_gib']:.2f} GiB "
                  f"(baseline {fig['baseline_gib']:.2f}), file {fig['input_mb']:.2f} MB -> {fig['output_mb']:.2f} MB "
                  f"(x{ratio:.1f})")
        else:
            print(f"retarget to the avatar, {fig['vertices']:,} vertices x {fig['frames']} frames: "
                  f"{fig['seconds']:.1f} s ({fig['timings']}), peak RSS {fig['peak_gib']:.2f} GiB "
                  f"(baseline {fig['baseline_gib']:.2f}), file {fig['input_mb']:.2f} MB -> {fig['output_mb']:.2f} MB "
                  f"(x{ratio:.1f}), alignment confidence {fig['confidence']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
