"""The network's inputs on a proxy against the full resolution, on the evaluation's meshes: each target is prepared
twice with the shipped model, once encoded at its own resolution and once on a decimated proxy (`--proxy`
vertices, `nfs.geometry.proxy`) whose regions and skinning weights are carried back to every vertex. Prints per
target the region agreement (share of skin vertices with the same predicted region), the skinning weights'
error (mean and 99th percentile of the per-vertex L2 distance, relative to the mean L2 norm of the full-resolution
weights), and the default-path (template prior) positions' difference, which must be zero: the prior never uses
the proxy. Nothing is asserted.

    python bench/bench_proxy.py [--proxy 3000] [--categories ict,remesh_6k,remesh_25k,crop_face,...]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--proxy", type=int, default=3000, help="proxy vertices (meshes above 1.2x this get one)")
    p.add_argument("--categories", default="ict,remesh_6k,remesh_25k,crop_face,warp_wendland,eyes")
    a = p.parse_args()
    os.environ.setdefault("NFS_CACHE", tempfile.mkdtemp(prefix="nfs_proxy_bench_"))
    import nfs.geometry.proxy as proxy_module
    from nfs.data.benchmark import build_target
    from nfs.pipeline import decode_all, load_shipped_model, prepare_target

    from bench_scaling import cpu_line
    print(f"proxy check; {cpu_line()}; load average {os.getloadavg()[0]:.1f}")
    model, _ = load_shipped_model()
    codes = np.zeros((2, model.cfg.code_dim), np.float32)
    codes[1, :53] = 0.5
    agreements = []
    for category in a.categories.split(","):
        target = build_target(category, 0)
        mesh, alignment = (target.vertices, target.faces), target.pipeline_alignment()
        proxy_module.PROXY_ABOVE = 10 ** 9                     # full resolution
        t = time.perf_counter()
        full = prepare_target(mesh, model, alignment=alignment, use_cache=False, device="cpu", force=True)
        t_full = time.perf_counter() - t
        proxy_module.PROXY_ABOVE, proxy_module.PROXY_VERTICES = int(1.2 * a.proxy), a.proxy
        t = time.perf_counter()
        near = prepare_target(mesh, model, alignment=alignment, use_cache=False, device="cpu", force=True)
        t_near = time.perf_counter() - t
        if near.proxy is None:
            print(f"{category:16s} {len(full.skin_vertices_ict):7,d} skin vertices: no proxy at this size")
            continue
        agree = float((near.region_labels == full.region_labels).mean())
        agreements.append(agree)
        w_full, w_near = full.skinning_weights, near.skinning_weights
        err = np.linalg.norm(w_near - w_full, axis=1) / np.linalg.norm(w_full, axis=1).mean()
        pos = np.abs(decode_all(near.without_correction(), codes) - decode_all(full.without_correction(), codes))
        print(f"{category:16s} {len(full.skin_vertices_ict):7,d} skin vertices, proxy {len(near.proxy.vertices):,}: "
              f"regions agree {agree:.1%}; weights error mean {err.mean():.3f}, p99 {np.percentile(err, 99):.3f} "
              f"(relative); prior positions max difference {pos.max():.1e} (mesh units); prepare {t_full:.1f} s "
              f"full, {t_near:.1f} s proxy")
    if agreements:
        print(f"region agreement: min {min(agreements):.1%}, mean {np.mean(agreements):.1%}")


if __name__ == "__main__":
    main()
