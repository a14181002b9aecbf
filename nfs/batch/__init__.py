"""Batch retargeting: every (target, clip) pair of a manifest, on a local process pool or a Ray cluster.

    result = nfs.batch.run_batch("manifest.csv", "out/", engine="local", workers=2, exports="glb,rig")
    print("\\n".join(result.summary()))

`manifest` (targets and clips, option columns), `work` (what a worker runs), `engines` (process pool, Ray),
`outputs` (pair folders written whole, completion records), `run` (the driver), `cli` (`python -m nfs batch`).
"""
from nfs.batch.run import BatchResult, BatchState, PairResult, format_state, run_batch

__all__ = ["BatchResult", "BatchState", "PairResult", "format_state", "run_batch"]
