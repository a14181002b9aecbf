"""The CPU's feature flags (/proc/cpuinfo), read once per process: what the precision choice, the compiled
decoder kernel's cache key and the benchmarks' flag lines all read."""
from __future__ import annotations

import functools
from pathlib import Path


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read); read once per process."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 matmul (avx512_bf16 or AMX)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
