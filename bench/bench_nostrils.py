"""Nose and nostril benchmark: the template prior alone (the default path, decoded as the eval decodes it) on the
eval's heads over its 46 frames. Per feature (nose, mouth, eyes: the face vertices within 1 cm of its landmarks) the
mean error, its share of the head's error and the mean motion against the truth's; and beside each nostril (1.5 cm
of landmarks 31-32 and 34-35) the frames with a crease: an edge folding 30 degrees sharper than the truth's.
Prints figures; nothing is asserted.

    python bench/bench_nostrils.py [--categories anime,stylised,warp_features,remesh_25k,closed_scan,game_head]
"""
from __future__ import annotations

import argparse

import numpy as np

from eval_heads import machine_line, model_ict_and_codes
from nfs.data.benchmark import SIZES, build_expressions, build_target
from nfs.eval import metrics as M
from nfs.eval.run import _context, decode_all, prepare_target

FEATURES = {"nose": range(27, 36), "mouth": range(48, 68), "eyes": range(36, 48)}
NOSTRILS = {"subject's right": [31, 32], "subject's left": [34, 35]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--categories", default="anime,stylised,warp_features,remesh_25k,closed_scan,game_head")
    args = parser.parse_args()
    print(machine_line())
    expr = build_expressions(SIZES["full"])
    model, ict, codes = model_ict_and_codes(expr.weights)
    for category in args.categories.split(","):
        target = build_target(category, 0, ict)
        ctx = _context(target, expr)
        prepared = prepare_target((target.vertices, target.faces), model, use_cache=False, name=target.name,
                                  alignment=target.pipeline_alignment())
        user = decode_all(prepared.without_correction(), codes).astype(np.float64) - target.vertices[None]
        pred = target.to_ict.apply_vectors(user)
        v, face = ctx.v0, target.face_mask
        err = np.linalg.norm(pred - ctx.gt, axis=-1).mean(0) * M.CM_TO_MM
        moved = np.linalg.norm(pred, axis=-1).mean(0) * M.CM_TO_MM
        truth_moved = np.linalg.norm(ctx.gt, axis=-1).mean(0) * M.CM_TO_MM
        parts = []
        for name, idx in FEATURES.items():
            points = v[target.landmarks[list(idx)]]
            near = face & (np.linalg.norm(v[:, None] - points[None], axis=2).min(1) < 1.0)
            parts.append(f"{name} {err[near].mean():.3f} mm ({err[near].sum() / err[face].sum():.0%} of the error), "
                         f"motion {moved[near].mean():.2f} / truth {truth_moved[near].mean():.2f} mm")
        creases = []
        for side, idx in NOSTRILS.items():
            centre = v[target.landmarks[idx]].mean(0)
            counts = [M.sawtooth_edges(v, v + pred[f], ctx.gt_pos[f], ctx.skin_faces, centre, radius_cm=1.5,
                                       excess_deg=30.0)[0] for f in range(len(pred))]
            creases.append(f"{side} {sum(c > 0 for c in counts)}/{len(counts)} frames (most edges {max(counts)})")
        print(f"{category}: face {err[face].mean():.3f} mm; " + "; ".join(parts)
              + " | nostril creases: " + ", ".join(creases), flush=True)


if __name__ == "__main__":
    main()
