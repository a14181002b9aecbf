"""Seam benchmark: the template prior alone (the default path, decoded as the eval decodes it) on the eval's heads
with joined or capped openings, over the eval's 46 frames: triangles turned over (the truth keeping them within 75
degrees of their rest normal, and the strict count: any the truth does not turn), saw-tooth edges at jawOpen = 1,
the mean error on the face region, and which triangles turned (their vertices' jawOpen displacement against the
truth's, and whether they touch added geometry: a cap or a bag). Prints figures; nothing is asserted.

    python bench/bench_seams.py [--categories closed_scan,joined_lips,joined_lids,game_head,slit_bag] [--where]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from eval_heads import machine_line, model_ict_and_codes
from nfs.data.benchmark import SIZES, build_expressions, build_target
from nfs.eval import metrics as M
from nfs.eval.run import _context, decode_all, method_metrics, prepare_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--categories", default="closed_scan,joined_lips,joined_lids,game_head,slit_bag")
    parser.add_argument("--where", action="store_true", help="list the turned triangles")
    args = parser.parse_args()
    print(machine_line())
    expr = build_expressions(SIZES["full"])
    model, ict, codes = model_ict_and_codes(expr.weights)
    jaw = expr.probe_jaw
    for category in args.categories.split(","):
        target = build_target(category, 0, ict)
        ctx = _context(target, expr)
        t0 = time.perf_counter()
        prepared = prepare_target((target.vertices, target.faces), model, use_cache=False, name=target.name,
                                  alignment=target.pipeline_alignment())
        prepare_s = time.perf_counter() - t0
        user = decode_all(prepared.without_correction(), codes).astype(np.float64) - target.vertices[None]
        pred = target.to_ict.apply_vectors(user)
        row = method_metrics(pred, ctx)
        print(f"{category}: turned over {row['flips']} (strict {row['flips_strict']}), saw-tooth edges "
              f"{row.get('sawtooth_jaw', '-')}, mean {row['mean_mm']:.4f} mm, max {row['max_mm']:.2f} mm, "
              f"prepare {prepare_s:.1f} s", flush=True)
        if not args.where:
            continue
        pred_cos = M.facing_cos(ctx.v0, ctx.v0[None] + pred, ctx.skin_faces)
        turned = (pred_cos < 0) & (ctx.truth_cos > M.TRUTH_FACING_COS)
        for f in np.nonzero(turned.any(0))[0]:
            tri = ctx.skin_faces[f]
            added = bool((target.labels[tri] < 0).any())
            moves = " ".join(f"{i}: {pred[jaw, i, 1]:+.2f}/{ctx.gt[jaw, i, 1]:+.2f}" for i in tri)
            print(f"  triangle {f} frames {np.nonzero(turned[:, f])[0].tolist()} added geometry {added} | "
                  f"jawOpen y cm (prior/truth) {moves}")


if __name__ == "__main__":
    main()
