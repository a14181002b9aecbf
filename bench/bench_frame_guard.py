"""Frame guard benchmark: decoding speed of the template prior (the default path) on the eval's heads with and
without the per-frame fold mending, over a smooth clip interpolated from the eval's 46 expression frames, with the
triangles turned over each way (those the truth keeps within 75 degrees of their rest normal, `metrics.turned_over`).
Prints the machine's CPU flags and the peak memory of the run; nothing is asserted.

    python bench/bench_frame_guard.py [--categories anime,stylised,warp_features,remesh_25k] [--frames 400]
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from eval_heads import machine_line, model_ict_and_codes
from nfs.data.benchmark import SIZES, build_expressions, build_target
from nfs.eval import metrics as M
from nfs.eval.run import decode_all, prepare_target


def smooth_clip(weights: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames, K) weights linearly interpolated through the rows of weights (T, K)."""
    x = np.linspace(0, len(weights) - 1, n_frames)
    i0 = np.floor(x).astype(int)
    i1 = np.minimum(i0 + 1, len(weights) - 1)
    a = (x - i0)[:, None]
    return ((1 - a) * weights[i0] + a * weights[i1]).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--categories", default="anime,stylised,warp_features,remesh_25k")
    parser.add_argument("--frames", type=int, default=400)
    args = parser.parse_args()
    print(machine_line())
    weights = smooth_clip(build_expressions(SIZES["full"]).weights, args.frames)
    model, ict, codes = model_ict_and_codes(weights)
    for category in args.categories.split(","):
        target = build_target(category, 0, ict)
        prepared = prepare_target((target.vertices, target.faces), model, use_cache=False, name=target.name,
                                  alignment=target.pipeline_alignment()).without_correction()
        skin_faces = target.faces[target.skin_mask[target.faces].all(1)]
        truth = (target.vertices[None] + np.einsum("tk,kvc->tvc", weights, target.basis)).astype(np.float32)
        truth_cos = M.truth_facing_cos(target.vertices, truth, skin_faces)
        guard = prepared.frame_guard
        line = [f"{category} ({target.n_vertices:,} vertices, {args.frames} frames):"]
        for name, g in ((("guarded" if guard is not None else "decoded"), guard), ("unguarded", None)):
            prepared.frame_guard = g
            t0 = time.perf_counter()
            frames = decode_all(prepared, codes)
            seconds = time.perf_counter() - t0
            pos = target.vertices[None] + target.to_ict.apply_vectors(frames - target.vertices[None])
            turned = M.turned_over(M.facing_cos(target.vertices, pos, skin_faces), truth_cos)
            line.append(f"{name} {seconds:.2f} s ({args.frames / seconds:.0f} frames/s), {turned} turned over;")
            if guard is None:
                line.append("(no frame guard on this head: the fitted face matches it)")
                break
        prepared.frame_guard = guard
        print(" ".join(line), flush=True)
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (the truth's frames "
          "included)")


if __name__ == "__main__":
    main()
