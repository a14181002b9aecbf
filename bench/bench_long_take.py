"""Long-take benchmark: a 4,030-row, 60 fps iPhone Live Link Face take onto a 5k-vertex head, with the OBJ zip,
animated GLB and rig GLB (`--exports`).

Writes a synthetic Live Link CSV (the built-in clips at 60 fps with capture-like jitter, blinks and head rotation
columns), runs the one pipeline (`retarget`) as the CLI does and prints the wall time of every stage, the animated
GLB's morph-target count and maximum error against the decoded frames (reported by the exporter for every frame,
and re-checked here on frames decoded again and read back from the file), the glTF validator's verdict on every
GLB, and the MP4 preview's rendering rate. Prints figures; nothing is asserted.

    python bench/bench_long_take.py [--target assets/targets/stylized_head.obj] [--rows 4030] [--device auto]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nfs import REPO_ROOT as ROOT
from nfs.arkit import ARKIT_NAMES, ict_to_arkit_weights
from nfs.io import list_builtin_clips, load_builtin_clip, load_clip
from nfs.pipeline import PREVIEW_DEFAULT_MAX_FRAMES, decode, load_shipped_model, retarget

ROTATIONS = ("HeadYaw HeadPitch HeadRoll LeftEyeYaw LeftEyePitch LeftEyeRoll "
             "RightEyeYaw RightEyePitch RightEyeRoll").split()


def synthetic_livelink_take(path: Path, rows: int = 4030, rate: int = 60, seed: int = 0) -> Path:
    """A Live Link Face CSV of `rows` samples at `rate` Hz: built-in clips in random order and strength,
    upsampled from 30 fps, plus capture jitter, fast blinks and head rotations, as the iPhone app writes it."""
    rng = np.random.default_rng(seed)
    parts, n = [], 0
    while n < rows:
        codes = load_builtin_clip(rng.choice(list_builtin_clips())).codes
        t = np.arange(0, len(codes) - 1, 30.0 / rate)
        up = np.stack([np.interp(t, np.arange(len(codes)), codes[:, j]) for j in range(codes.shape[1])], 1)
        parts.append(up * rng.uniform(0.6, 1.15))
        n += len(up)
    arkit = ict_to_arkit_weights(np.concatenate(parts)[:rows])
    arkit += rng.normal(0.0, 0.015, arkit.shape) * (arkit > 0.02)            # sensor jitter on active shapes
    blink = [ARKIT_NAMES.index(n) for n in ("eyeBlinkLeft", "eyeBlinkRight")]
    for start in rng.choice(rows - 8, rows // 240, replace=False):           # ~4-frame blinks every 4 s
        arkit[start:start + 6, blink] = np.maximum(arkit[start:start + 6, blink], [[0.5], [1], [1], [1], [1], [0.5]])
    arkit = np.clip(arkit, 0.0, 1.0)
    names = [n[0].upper() + n[1:] for n in ARKIT_NAMES]
    lines = [",".join(["Timecode", "BlendShapeCount"] + names + ROTATIONS)]
    start = (14 * 3600 + 5 * 60 + 9) * rate
    for i in range(rows):
        f = start + i
        secs, ff = divmod(f, rate)
        tc = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}:{ff:02d}.000"
        rot = 0.1 * np.sin(i / rate * np.array([0.3, 0.5, 0.2, 1, 1, 0, 1, 1, 0]))
        lines.append(",".join([tc, "61"] + [f"{x:.6f}" for x in arkit[i]] + [f"{x:.5f}" for x in rot]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_helper(name: str):
    """A module of tests/ (the GLB reader, the validator runner), loaded by path: they are not part of nfs."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module          # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


class StageClock:
    """Progress callback that records when the pipeline enters each stage: wall time and this process's CPU time
    (all threads; on a shared machine the CPU time is the steadier figure)."""

    def __init__(self):
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        self.last = ""
        self.cpu: dict[str, float] = {}      # stage -> CPU seconds spent in it

    def __call__(self, fraction: float, message: str) -> None:
        head = message.split(" · ")[0].split(":")[0]
        if head != self.last:
            now = time.process_time()
            if self.last:
                self.cpu[self.last] = self.cpu.get(self.last, 0.0) + now - self.c0
            self.c0 = now
            if "frame" not in message:
                print(f"  {time.perf_counter() - self.t0:7.2f} s  {head}", flush=True)
        self.last = head


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default=str(ROOT / "assets" / "targets" / "stylized_head.obj"))
    p.add_argument("--rows", type=int, default=4030)
    p.add_argument("--device", default="auto")
    p.add_argument("--exports", default="obj_zip,glb,rig", help="exports written (the glb and rig are checked)")
    p.add_argument("--correction", action="store_true", help="decode with the network's correction (default: the "
                   "template prior alone, as the pipeline does)")
    p.add_argument("--check-frames", type=int, default=120, help="frames decoded again to re-check the GLB")
    p.add_argument("--preview-frames", type=int, default=60, help="frames rendered to time the MP4 preview")
    p.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    p.add_argument("--warm-cache", action="store_true",
                   help="use the operator cache as it is (default: an empty one, as on a first run)")
    a = p.parse_args()
    import torch
    flags = open("/proc/cpuinfo").read()
    print("CPU flags: " + (" ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags)
                           or "none of avx2/avx512"))

    from nfs.model.precision import describe_device
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {describe_device(a.device)}")
    work = Path(a.out or tempfile.mkdtemp(prefix="nfs_long_take_"))
    work.mkdir(parents=True, exist_ok=True)
    if not a.warm_cache:
        os.environ["NFS_CACHE"] = tempfile.mkdtemp(prefix="cache_", dir=work)
    take = synthetic_livelink_take(work / "take_livelink.csv", a.rows)
    model, _ = load_shipped_model()

    t0 = time.perf_counter()
    clip = load_clip(take)
    t_load = time.perf_counter() - t0
    print(f"Live Link take: {a.rows} rows at 60 Hz -> clip of {clip.n_frames} frames at {clip.fps:g} fps "
          f"({clip.duration_s:.1f} s); read in {t_load:.2f} s")
    out = work / "out"
    t0, c0 = time.perf_counter(), time.process_time()
    clock = StageClock()
    result = retarget(a.target, clip, out, model=model, exports=tuple(a.exports.split(",")), progress=clock,
                      device=a.device, correction=a.correction)
    cpu = time.process_time() - c0
    print(f"positions: {'template prior + network correction' if a.correction else 'template prior alone'}")
    wall = time.perf_counter() - t0 + t_load
    print(f"target {result.target.name}: {result.target.n_vertices:,} vertices; "
          "prepare: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.target.timings.items()))
    print("stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in {"read take": t_load, **result.timings}.items()))
    print(f"END TO END (read take .. {a.exports} written): {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"({result.source.n_frames / result.timings['decode']:.1f} frames/s decoded); load average "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    print("CPU seconds per stage (all threads): " + ", ".join(f"{k} {v:.2f}" for k, v in clock.cpu.items())
          + f"; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f} GiB")
    if "obj_zip" in result.exports:
        import zipfile
        with zipfile.ZipFile(result.exports["obj_zip"]) as zf:
            text = sum(i.file_size for i in zf.infolist())
        print(f"OBJ zip: {text / 1e6:.0f} MB of OBJ text in {result.timings['obj_zip']:.2f} s "
              f"({text / 1e6 / result.timings['obj_zip']:.0f} MB/s), "
              f"{result.exports['obj_zip'].stat().st_size / 1e6:.0f} MB on disk")
    g = result.glb
    print(f"animated GLB: {g.n_frames} frames, {g.n_targets} morph targets, max error {g.max_error_mm:.4f} mm over "
          f"every frame and vertex (bound {g.tolerance * result.target.alignment.scale * 10:.3g} mm), "
          f"{result.exports['glb'].stat().st_size / 2 ** 20:.1f} MB")

    # independent check: decode some frames again (the worst ones by the exporter's account, and a spread) and
    # compare with the positions the GLB file itself gives at those frames
    read_glb_frames = test_helper("glb_reader").read_glb_frames
    errs = result.sequence.frame_errors
    idx = np.unique(np.concatenate([np.argsort(errs)[-a.check_frames // 2:],
                                    np.linspace(0, len(errs) - 1, a.check_frames // 2).astype(int)]))
    decoded = np.concatenate(list(decode(result.target, result.source.codes[idx])))
    from_file = read_glb_frames(result.exports["glb"], idx)
    check = np.linalg.norm(from_file - decoded, axis=-1).max() * result.target.alignment.scale * 10
    print(f"re-check on {len(idx)} frames decoded again and read back from the GLB: max error {check:.4f} mm")
    print(f"rig GLB: {result.exports['rig'].stat().st_size / 2 ** 20:.1f} MB; linear rig vs network on this take "
          f"{result.rig_error_mm:.3f} mm mean")

    gltf_validator = test_helper("gltf_validator")
    if gltf_validator.available():
        for rep in gltf_validator.validate(result.exports["glb"], result.exports["rig"]):
            print(f"glTF validator, {Path(rep['path']).name}: {rep['errors']} errors, {rep['warnings']} warnings, "
                  f"{rep['infos']} infos" + "".join(f"\n    {m}" for m in rep["messages"][:5]))
    else:
        print("glTF validator: not installed (node + `npm ci` in the repository root)")

    # the MP4 preview (left out of takes this long by default): its rendering rate at the default size
    from nfs.export import PreviewVideoWriter
    from nfs.pipeline import source_preview_frames
    from nfs.render import render_shaded
    n = min(a.preview_frames, result.source.n_frames)
    frames = result.frames()[:n]
    src = source_preview_frames(result.source, clip)
    skin = result.target.clean.original_index[result.target.clean.skin_vertices]
    t0 = time.perf_counter()
    with PreviewVideoWriter(work / "preview_probe.mp4", result.source.fps) as video:
        for i in range(n):
            sv, sf = src(i)
            tv = result.target.alignment.apply(frames[i][skin])
            video.add(np.concatenate([render_shaded(sv, sf, size=320), render_shaded(tv, result.target.skin_faces,
                                                                                    size=320)], axis=1))
    rate = n / (time.perf_counter() - t0)
    print(f"MP4 preview (640 x 320, rendered + encoded): {rate:.1f} frames/s -> {result.source.n_frames / rate:.0f} s "
          f"for this take; off by default above {PREVIEW_DEFAULT_MAX_FRAMES} frames")
    print(f"files in {out}: " + ", ".join(sorted(q.name for q in out.iterdir())))


if __name__ == "__main__":
    main()
