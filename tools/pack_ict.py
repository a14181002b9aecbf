"""Pack ../shared/data/ict-facekit/ict_facekit.npz into the compact file the repo ships.

Keeps the 11,248-vertex skin (face + head/neck) and the two eyeballs as separate components, their polygons
and UVs, the 100 identity and 53 expression deltas (int16 with a per-shape scale, max error < 0.001 mm) and
the 68 landmarks. Run once: ``python tools/pack_ict.py [path/to/ict_facekit.npz]``.
"""
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared/data/ict-facekit/ict_facekit.npz"
DST = ROOT / "third_party/ict-facekit"
SKIN_END = 11248
EYEBALLS = (21451, 24591)


def quantize(deltas):
    """(S, V, 3) float32 -> (S, V, 3) int16 and (S,) float32 scales."""
    scale = np.abs(deltas).reshape(len(deltas), -1).max(1) / 32767.0
    scale = np.maximum(scale, 1e-12).astype(np.float32)
    q = np.round(deltas / scale[:, None, None]).astype(np.int16)
    return q, scale


def main():
    d = np.load(SRC)
    counts, idx, uvidx = d["face_vertex_counts"], d["face_vertex_indices"], d["face_uv_indices"]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    polys = [idx[s:s + c] for s, c in zip(starts, counts)]
    uvpolys = [uvidx[s:s + c] for s, c in zip(starts, counts)]
    keep_v = np.concatenate([np.arange(SKIN_END), np.arange(*EYEBALLS)])
    remap = -np.ones(len(d["neutral"]), np.int64)
    remap[keep_v] = np.arange(len(keep_v))
    keep_f = [i for i, p in enumerate(polys) if (remap[p] >= 0).all()]
    out_counts = np.array([len(polys[i]) for i in keep_f], np.int32)
    out_idx = np.concatenate([remap[polys[i]] for i in keep_f]).astype(np.int32)
    used_uv = np.unique(np.concatenate([uvpolys[i] for i in keep_f]))
    uv_remap = -np.ones(len(d["uv"]), np.int64)
    uv_remap[used_uv] = np.arange(len(used_uv))
    out_uvidx = np.concatenate([uv_remap[uvpolys[i]] for i in keep_f]).astype(np.int32)
    id_q, id_s = quantize(d["identity_deltas"][:, keep_v])
    ex_q, ex_s = quantize(d["expression_deltas"][:, keep_v])
    err = max(np.abs(id_q * id_s[:, None, None] - d["identity_deltas"][:, keep_v]).max(),
              np.abs(ex_q * ex_s[:, None, None] - d["expression_deltas"][:, keep_v]).max())
    print(f"max quantisation error {err * 10:.6f} mm")
    assert err * 10 < 0.01
    DST.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        DST / "ict_face_model.npz",
        neutral=d["neutral"][keep_v].astype(np.float32),
        identity_deltas_q=id_q, identity_scale=id_s,
        expression_deltas_q=ex_q, expression_scale=ex_s,
        identity_names=d["identity_names"], expression_names=d["expression_names"],
        poly_counts=out_counts, poly_indices=out_idx, poly_uv_indices=out_uvidx,
        uv=d["uv"][used_uv].astype(np.float32),
        poly_material=d["face_material"][keep_f], material_names=d["material_names"],
        landmarks68=remap[d["landmarks68"]].astype(np.int32),
        skin_vertex_count=np.int32(SKIN_END),
    )
    shutil.copy(SRC.parent / "LICENSE", DST / "LICENSE")
    print("wrote", DST / "ict_face_model.npz", (DST / "ict_face_model.npz").stat().st_size / 1e6, "MB")


if __name__ == "__main__":
    main()
