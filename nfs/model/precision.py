"""Which floating-point type to compute in on this machine."""
from __future__ import annotations

import functools
from pathlib import Path

import torch


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 matmul (avx512_bf16 or AMX); read once per process."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def inference_dtype(device: torch.device | str = "cpu") -> torch.dtype:
    """bfloat16 on GPUs and on CPUs with native bfloat16 matmul, float32 elsewhere."""
    return torch.bfloat16 if torch.device(device).type == "cuda" or cpu_has_bf16() else torch.float32


def model_autocast(device: torch.device | str = "cpu"):
    """Autocast to `inference_dtype(device)` (disabled where that is float32)."""
    dev = torch.device(device)
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=inference_dtype(dev) == torch.bfloat16)
