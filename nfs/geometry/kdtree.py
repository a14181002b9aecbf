"""Nearest-neighbour queries of many points on a KD-tree, split over the cores on a pool of threads kept for the
process (scipy's `workers=-1` starts new threads on every query: on a busy machine starting them took longer than
the alignment's small queries themselves). Each point's answer is the tree's own, whichever thread asks."""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.spatial import cKDTree

MIN_POINTS_PER_THREAD = 2_000     # below this many points per core a query runs on the calling thread

_POOL: dict[int, ThreadPoolExecutor] = {}      # by process id: a forked child starts its own (threads do not fork)
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    with _POOL_LOCK:
        pid = os.getpid()
        if pid not in _POOL:
            _POOL.clear()
            _POOL[pid] = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 1) - 1),
                                            thread_name_prefix="nfs-kdtree")
        return _POOL[pid]


def query(tree: cKDTree, points: np.ndarray, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """`tree.query(points, **kwargs)` (points (..., 3); any keyword but `workers`), the points split over the
    cores when there are many: (distances, indices) shaped as scipy's."""
    points = np.asarray(points, np.float64)
    flat = points.reshape(-1, points.shape[-1])
    parts = min(os.cpu_count() or 1, len(flat) // MIN_POINTS_PER_THREAD)
    if parts <= 1:
        return tree.query(points, **kwargs)
    bounds = np.linspace(0, len(flat), parts + 1).astype(np.int64)
    pool = _pool()
    futures = [pool.submit(tree.query, flat[lo:hi], **kwargs) for lo, hi in zip(bounds[1:-1], bounds[2:])]
    first = tree.query(flat[:bounds[1]], **kwargs)           # the calling thread takes the first part itself
    results = [first] + [f.result() for f in futures]
    k_shape = np.shape(first[0])[1:]
    dist = np.concatenate([r[0] for r in results]).reshape(points.shape[:-1] + k_shape)
    idx = np.concatenate([r[1] for r in results]).reshape(points.shape[:-1] + k_shape)
    return dist, idx
