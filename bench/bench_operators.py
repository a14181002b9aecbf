"""Operator precompute time per stage (nfs.geometry.operators), on the ICT skin and re-tessellations of it.

    python bench/bench_operators.py [--repeats 3] [--quick]

Each run is one `get_operators(..., use_cache=False)` call whose stages are timed in place:
Laplacian + mass (robust_laplacian), eigensolve (shift-invert ARPACK), gradients (normals, tangent frames and
the least-squares gradient matrices). Prints min / median seconds over the runs. Wall-clock figures: they
depend on the CPU and on whatever else runs on it.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np


import nfs.geometry.operators as ops_module
from nfs.geometry.remesh import decimate, subdivide_midpoint
from nfs.ict import load_ict

STAGES = ("laplacian", "eigensolve", "gradients")
# module functions of nfs.geometry.operators that make up each stage
STAGE_FUNCTIONS = {"laplacian_and_mass": "laplacian", "eigenbasis": "eigensolve", "vertex_normals": "gradients",
                   "tangent_frames": "gradients", "gradient_operators": "gradients"}


class StageTimer:
    """Wraps the stage functions of nfs.geometry.operators so one get_operators call reports its stage times."""

    def __init__(self):
        self.times = dict.fromkeys(STAGES, 0.0)
        self.originals = {}

    def _wrap(self, name, stage):
        fn = getattr(ops_module, name)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.times[stage] += time.perf_counter() - t

        return fn, timed

    def __enter__(self):
        for name, stage in STAGE_FUNCTIONS.items():
            self.originals[name], timed = self._wrap(name, stage)
            setattr(ops_module, name, timed)
        return self

    def __exit__(self, *exc):
        for name, fn in self.originals.items():
            setattr(ops_module, name, fn)


def time_operators(vertices, faces, k, repeats):
    """[{stage: seconds, 'total': seconds}] for `repeats` uncached precomputes."""
    runs = []
    for _ in range(repeats):
        with StageTimer() as timer:
            t = time.perf_counter()
            ops = ops_module.get_operators(vertices, faces, k_eig=k, use_cache=False)
            total = time.perf_counter() - t
        assert ops.k == min(k, len(vertices) - 2)
        runs.append({**timer.times, "total": total})
    return runs


def meshes(quick: bool):
    v, f = load_ict().skin_mesh()
    v = v.astype(np.float64)
    out = [("ICT skin", v, f, 128), ("ICT skin", v, f, 64)]
    if not quick:
        out.append(("ICT skin, subdivided once", *subdivide_midpoint(v, f), 128))
    out.append(("ICT skin, decimated", *decimate(v, f, 2000), 128))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="skip the ~45k-vertex mesh")
    a = p.parse_args(argv)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} at start, {a.repeats} runs each, use_cache=False")
    cols = [*STAGES, "total"]
    header = f"{'mesh':<28}{'V':>8}{'F':>8}{'k':>5}" + "".join(f"{c + ' min/med s':>22}" for c in cols)
    print(header)
    print("-" * len(header))
    for name, v, f, k in meshes(a.quick):
        runs = time_operators(v, f, k, a.repeats)
        cells = []
        for c in cols:
            xs = [r[c] for r in runs]
            cells.append(f"{min(xs):>10.2f} / {statistics.median(xs):<9.2f}")
        print(f"{name:<28}{len(v):>8}{len(f):>8}{k:>5}" + "".join(f"{c:>22}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
