"""The folded decoder's CPU kernel (csrc/folded_decoder.cpp): built once per machine with the system's C++
compiler, cached, loaded into torch as `torch.ops.nfs_kernels`.

Built with -march=native into NFS_KERNEL_CACHE (default ~/.cache/nfs/kernels; a folder of the system's temporary
directory where that cannot be written) under a name that hashes the source,
the torch version, the compiler and the CPU's flags, so a cache shared between machines never loads code built for
another CPU. A build goes to a private temporary folder and is renamed into place, so concurrent builds cannot
clash and an interrupted one leaves nothing half-written. Where there is no compiler, or NFS_CPU_KERNELS=0, the
decoder runs the same algebra in eager torch (slower); `kernel_status()` says which, and why.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from nfs.model.cpu_features import cpu_flags

SOURCE = Path(__file__).with_name("csrc") / "folded_decoder.cpp"
BUILD_TIMEOUT_S = 300

_status = "not loaded yet"
_LOCK = threading.Lock()


def kernel_dirs() -> list[Path]:
    """Where the built kernel is looked for and written, in order. Not under NFS_CACHE: benchmarks and the eval
    point that at empty folders for cold operator caches, which must not mean a fresh compile."""
    configured = os.environ.get("NFS_KERNEL_CACHE")
    first = Path(configured) if configured else Path.home() / ".cache" / "nfs" / "kernels"
    return [first, Path(tempfile.gettempdir()) / f"nfs-kernels-{os.getuid() if hasattr(os, 'getuid') else 'user'}"]


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def _compile_command(cxx: str, source: Path, target: Path) -> list[str]:
    from torch.utils.cpp_extension import include_paths, library_paths
    includes = [a for p in include_paths() for a in ("-isystem", p)]
    libdir = library_paths()[0]
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    # -fopenmp: ATen's parallel_for is OpenMP in the header; the process reuses torch's own libgomp (same soname)
    return [cxx, "-O3", f"-march={_march()}", "-std=c++17", "-fPIC", "-shared", "-fopenmp",
            f"-D_GLIBCXX_USE_CXX11_ABI={abi}", *includes, str(source), "-o", str(target),
            f"-L{libdir}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{libdir}"]


def _march() -> str:
    """The instruction set to build for: this CPU's own, or NFS_KERNEL_MARCH (e.g. x86-64-v3, to try the AVX2
    code on an AVX-512 machine)."""
    return os.environ.get("NFS_KERNEL_MARCH", "native").strip() or "native"


def _library_name(cxx: str) -> str:
    key = hashlib.sha256()
    flags = " ".join(sorted(cpu_flags())) or platform.machine()
    for part in (SOURCE.read_bytes(), torch.__version__.encode(), cxx.encode(), flags.encode(),
                 sys.version.encode(), _march().encode()):
        key.update(part)
    return f"nfs_kernels_{key.hexdigest()[:16]}.so"


def _build(cxx: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        built = Path(tmp) / target.name
        run = subprocess.run(_compile_command(cxx, SOURCE, built), capture_output=True, text=True,
                             timeout=BUILD_TIMEOUT_S)
        if run.returncode != 0:
            raise RuntimeError(f"{Path(cxx).name} failed ({run.returncode}): {run.stderr.strip()[-800:]}")
        os.chmod(built, 0o755)
        os.replace(built, target)


def cpu_kernels_available() -> bool:
    """Build (first time on this machine, ~10-20 s) and load the kernel; False where that is impossible. Decided
    once per process; callers on several threads wait for the one that builds."""
    with _LOCK:
        return _load_once()


@functools.lru_cache(maxsize=1)
def _load_once() -> bool:
    global _status
    if os.environ.get("NFS_CPU_KERNELS", "1").strip() in ("0", "false", "no", "off"):
        _status = "off (NFS_CPU_KERNELS=0)"
        return False
    cxx = _compiler()
    if cxx is None:
        _status = "unavailable: no C++ compiler (install g++ to build it)"
        return False
    try:
        name = _library_name(cxx)
        target = next((d / name for d in kernel_dirs() if (d / name).exists()), None)
        built_now = target is None
        started = time.perf_counter()
        if built_now:
            logging.getLogger(__name__).info("building the decoder's CPU kernel (once on this machine, ~10 s)")
            for folder in kernel_dirs():
                target = folder / name
                try:
                    _build(cxx, target)
                    break
                except OSError as exc:       # the folder cannot be written: try the next one
                    failure = exc
            else:
                raise failure
        torch.ops.load_library(str(target))
        torch.ops.nfs_kernels.normalise_          # the op is registered
    except Exception as exc:  # noqa: BLE001: any failure leaves the eager path, with the reason on record
        _status = f"unavailable: {type(exc).__name__}: {exc}".strip()[:1000]
        return False
    how = f"built on this machine in {time.perf_counter() - started:.1f} s" if built_now else "cached build"
    _status = f"compiled CPU kernel ({how}: {target})"
    return True


def kernel_status() -> str:
    """One line: whether the compiled CPU kernel is in use, or why not ("not loaded yet" before the first decoder
    is built or `cpu_kernels_available()` is called; asking does not build it)."""
    return _status
