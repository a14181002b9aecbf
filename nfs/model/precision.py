"""Which device and floating-point type to compute in on this machine."""
from __future__ import annotations

import os

import torch

from nfs.model.cpu_features import cpu_flags, cpu_has_bf16  # noqa: F401  (cpu_flags: read here by the benchmarks)
from nfs.options import DEVICES  # noqa: F401  (auto, cpu, cuda: the device option's choices)


def inference_dtype(device: torch.device | str = "cpu") -> torch.dtype:
    """bfloat16 on GPUs and on CPUs with native bfloat16 matmul, float32 elsewhere. NFS_CPU_DTYPE=float32 keeps a
    CPU with bfloat16 in float32 (the exact path, and what AVX2-only machines run)."""
    if torch.device(device).type == "cuda":
        return torch.bfloat16
    choice = os.environ.get("NFS_CPU_DTYPE", "auto").strip().lower() or "auto"
    if choice not in ("auto", "float32"):
        raise ValueError(f"NFS_CPU_DTYPE must be auto or float32, got {choice!r}")
    return torch.bfloat16 if choice == "auto" and cpu_has_bf16() else torch.float32


def model_autocast(device: torch.device | str = "cpu"):
    """Autocast to `inference_dtype(device)` (disabled where that is float32)."""
    dev = torch.device(device)
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=inference_dtype(dev) == torch.bfloat16)




def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> the first CUDA GPU when torch sees one, else the CPU; "cpu" / "cuda" / "cuda:N" as asked (a clear
    error when CUDA is asked for and torch has no GPU: the CPU build of torch, or no driver)."""
    if isinstance(device, torch.device):
        dev = device
    else:
        name = str(device or "auto").strip().lower()
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if name != "cpu" and not name.startswith("cuda"):
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for but torch sees no GPU (the CPU build of torch, or no driver); "
                         "use --device cpu or install the CUDA build of torch (README)")
    return dev


def describe_device(device: torch.device | str) -> str:
    """One line: the device and the number type inference uses on it."""
    dev = resolve_device(device)
    dtype = "bfloat16" if inference_dtype(dev) == torch.bfloat16 else "float32"
    if dev.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(dev)} ({dtype})"
    from nfs.model.cpu_kernels import kernel_status
    why = ("native bfloat16 matmul" if dtype == "bfloat16" else "NFS_CPU_DTYPE=float32" if cpu_has_bf16()
           else "no native bfloat16 on this CPU")
    return f"CPU, {torch.get_num_threads()} threads ({dtype}: {why}; decoder normalisation: {kernel_status()})"
