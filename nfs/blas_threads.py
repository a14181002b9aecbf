"""One BLAS thread for numpy's small linear algebra (the alignment's and the face fit's normal equations, a few
thousand rows by about a hundred columns). Two OpenBLAS threads on such products barely help on an idle machine and,
while other processes share the cores, spin against them: the face fit's 8,000 x 109 Gram matrix took 77 ms
instead of 4 ms beside a running test suite. Torch's own threads are left as they are.

`single_blas_thread()` nests and may be entered from several threads at once: the limit is set by the first to
enter and lifted when the last leaves (threadpoolctl; without it, nothing changes)."""
from __future__ import annotations

import threading
from contextlib import contextmanager

_LOCK = threading.Lock()
_STATE = {"depth": 0, "limiter": None}


@contextmanager
def single_blas_thread():
    """Within the block numpy's BLAS runs on one thread (process-wide, restored when the last user leaves)."""
    with _LOCK:
        if _STATE["depth"] == 0:
            try:
                from threadpoolctl import threadpool_limits
                _STATE["limiter"] = threadpool_limits(limits=1, user_api="blas")
            except Exception:              # threadpoolctl missing or no BLAS found: run as configured
                _STATE["limiter"] = None
        _STATE["depth"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["depth"] -= 1
            if _STATE["depth"] == 0 and _STATE["limiter"] is not None:
                _STATE["limiter"].restore_original_limits()
                _STATE["limiter"] = None
