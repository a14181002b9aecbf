"""The folded decoder's compiled CPU kernel (nfs/model/csrc/folded_decoder.cpp via nfs/model/cpu_kernels.py):
it builds where a C++ compiler is, computes GroupNorm + ReLU exactly as the network defines it (both number types,
vectorised and plain code paths, negative gains, ragged row counts), keeps bfloat16 activations centred, makes the
decoder match the eager path, and a machine without a compiler falls back to that path with the reason on record."""
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from nfs.model.cpu_kernels import cpu_kernels_available, kernel_status

needs_compiler = pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++") or os.environ.get("CXX")),
                                    reason="no C++ compiler on this machine")


@pytest.fixture(scope="module")
def kernels():
    if os.environ.get("NFS_CPU_KERNELS", "1") == "0":
        pytest.skip("NFS_CPU_KERNELS=0")
    assert cpu_kernels_available(), kernel_status()
    return torch.ops.nfs_kernels


def group_norm_relu(h: np.ndarray, signs, gamma_abs, beta, groups: int, eps: float) -> np.ndarray:
    """Reference in float64: h (V, W) is the pre-activation with channel c's sign flipped by signs[c] (the folded
    decoder's convention); the network's GroupNorm (weight signs * gamma_abs, bias beta) + ReLU of the actual one."""
    a = h * signs
    v, w = a.shape
    grouped = a.reshape(v, groups, w // groups)
    mean = grouped.mean(axis=(0, 2), keepdims=True)
    var = grouped.var(axis=(0, 2), keepdims=True)
    normed = ((grouped - mean) / np.sqrt(var + eps)).reshape(v, w)
    return np.maximum(normed * (signs * gamma_abs) + beta, 0.0)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("v,w,groups", [(10_001, 192, 16), (777, 64, 8), (1_000, 40, 4), (9, 32, 2)])
def test_normalise_is_group_norm_and_relu(kernels, dtype, v, w, groups):
    """scale * (g_after + offset) is the network's activation; w=40 runs the plain (non-AVX) loops, v=9 has fewer
    rows than one sampling stride, 10,001 a ragged last block."""
    rng = np.random.default_rng(v + w)
    # channels with their own offsets and spreads, some far off centre (mean 30x the spread), as in real layers
    g64 = rng.normal(0, 1, (v, w)) * rng.uniform(0.2, 3, w) + rng.normal(0, 1, w) * rng.choice([0.1, 30], w)
    g = torch.from_numpy(g64).to(dtype)
    g64 = g.double().numpy()                                   # what the kernel sees
    carried = torch.from_numpy(rng.normal(0, 2, w).astype(np.float32))
    signs = torch.from_numpy(rng.choice([-1.0, 1.0], w).astype(np.float32))
    gamma_abs = torch.from_numpy(rng.uniform(0.0, 2.0, w).astype(np.float32))
    gamma_abs[0] = 0.0                                         # a dead channel
    beta = torch.from_numpy(rng.normal(0, 1, w).astype(np.float32))
    expected = group_norm_relu(g64 + carried.double().numpy(), signs.numpy(), gamma_abs.numpy(), beta.numpy(),
                               groups, 1e-5)
    scale_offset = kernels.normalise_(g, carried, signs, gamma_abs, beta, groups, 1e-5, dtype == torch.bfloat16)
    assert scale_offset.shape == (2, w) and scale_offset.dtype == torch.float32
    scale, offset = scale_offset.double().numpy()
    got = scale * (g.double().numpy() + offset)
    spread = expected.std() + 1e-12
    tol = 1e-4 if dtype == torch.float32 else 2e-2            # bfloat16 keeps 8 bits of the centred activations
    assert np.abs(got - expected).max() < tol * max(spread, expected.max() / 10), np.abs(got - expected).max()
    assert (got[expected == 0] <= tol * spread).all()         # clamped entries are (near) zero, not off by a bias
    if dtype == torch.bfloat16 and v >= 100:
        # the clamped activations are stored centred: each live channel's mean is small against its spread
        after = g.double().numpy()
        live = after.std(0) > 0
        assert (np.abs(after.mean(0)[live]) < 0.25 * after.std(0)[live] + 1e-6).all()


@needs_compiler
def test_normalise_rejects_bad_shapes(kernels):
    g = torch.zeros(10, 12)
    ok = torch.zeros(12)
    with pytest.raises(RuntimeError, match="divisible"):
        kernels.normalise_(g, ok, ok + 1, ok, ok, 5, 1e-5, False)
    with pytest.raises(RuntimeError, match="float32 of length 12"):
        kernels.normalise_(g, torch.zeros(11), ok + 1, ok, ok, 4, 1e-5, False)
    with pytest.raises(RuntimeError, match="contiguous"):
        kernels.normalise_(torch.zeros(12, 10).T, ok, ok + 1, ok, ok, 4, 1e-5, False)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_decoder_matches_eager_path_on_shipped_model(kernels, dtype):
    """The shipped model on a real ICT-derived target: the kernel path against the eager one and against the
    network's own decode (float32 reference)."""
    from nfs.model.fast_decoder import FoldedDecoder
    from nfs.pipeline import load_shipped_model
    from test_fast_decoder import codes, subject_tensors
    model, _ = load_shipped_model()
    t = subject_tensors(7, 3000, model.cfg.k_eig, model.cfg.image_size)
    z = codes(model, 5, seed=9)
    z[:, 53:] = 0.0
    with torch.no_grad():
        enc = model.encode_target(t.vertices[None], t.ops, t.image, t.prior)
        reference = model.decode(enc, z)
    decoder = FoldedDecoder.build(model, enc, dtype)
    assert decoder.fused
    fused, eager = decoder(z), replace(decoder, fused=False)(z)
    err_fused = 10 * (fused - reference).norm(dim=-1)      # mm
    err_eager = 10 * (eager - reference).norm(dim=-1)
    if dtype == torch.float32:
        assert err_fused.max().item() < 1e-3 and err_eager.max().item() < 1e-3
    else:
        assert err_fused.max().item() < 0.1
        # consistent thresholds and centred storage: no worse on average than the eager bfloat16 path
        assert err_fused.mean().item() <= 1.5 * err_eager.mean().item() + 1e-4


def test_without_a_compiler_the_decoder_falls_back_and_says_why(tmp_path):
    """CXX pointing at a compiler that fails: no kernel, a reason on record, and decoding still works."""
    script = (
        "import torch\n"
        "from nfs.model.cpu_kernels import cpu_kernels_available, kernel_status\n"
        "from nfs.model.precision import describe_device\n"
        "ok = cpu_kernels_available()\n"
        "print('AVAILABLE', ok)\n"
        "print('STATUS', kernel_status())\n"
        "print('DEVICE', describe_device('cpu'))\n"
        "from nfs.pipeline import untrained_model\n"
        "from nfs.model.fast_decoder import FoldedDecoder\n"
        "from nfs.model.network import TargetEncoding\n"
        "m = untrained_model('cpu')\n"
        "v = 50\n"
        "enc = TargetEncoding(torch.randn(1, v, 6 + m.cfg.image_dim), torch.randn(1, m.cfg.code_dim), None,\n"
        "                     torch.randn(1, v, m.cfg.code_dim))\n"
        "d = FoldedDecoder.build(m, enc, torch.float32)\n"
        "out = d(torch.randn(2, m.cfg.code_dim))\n"
        "print('FUSED', d.fused, tuple(out.shape), bool(torch.isfinite(out).all()))\n")
    env = dict(os.environ, CXX=shutil.which("false") or "/bin/false", NFS_KERNEL_CACHE=str(tmp_path / "k"),
               TMPDIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "AVAILABLE False" in out
    assert "STATUS unavailable: RuntimeError: false failed" in out
    assert "decoder normalisation: unavailable" in out
    assert "FUSED False (2, 50, 3) True" in out
    assert not any(p.suffix == ".so" for p in tmp_path.rglob("*"))   # nothing half-built left behind


def test_cpu_dtype_override(monkeypatch):
    """NFS_CPU_DTYPE=float32 keeps the CPU in float32 whatever it has; GPUs stay bfloat16; a typo is an error."""
    from nfs.model.precision import cpu_has_bf16, describe_device, inference_dtype
    monkeypatch.delenv("NFS_CPU_DTYPE", raising=False)
    assert inference_dtype("cpu") == (torch.bfloat16 if cpu_has_bf16() else torch.float32)
    monkeypatch.setenv("NFS_CPU_DTYPE", "float32")
    assert inference_dtype("cpu") == torch.float32
    assert inference_dtype("cuda") == torch.bfloat16
    assert "(float32:" in describe_device("cpu")
    monkeypatch.setenv("NFS_CPU_DTYPE", "fp16")
    with pytest.raises(ValueError, match="NFS_CPU_DTYPE must be auto or float32"):
        inference_dtype("cpu")


@needs_compiler
def test_fresh_build_from_several_threads_builds_once(tmp_path):
    """An empty kernel cache and three threads asking at once (an app decoding for several sessions): one build,
    one library in the cache, every thread gets the kernel."""
    script = (
        "import threading\n"
        "from nfs.model.cpu_kernels import cpu_kernels_available, kernel_status\n"
        "results = []\n"
        "threads = [threading.Thread(target=lambda: results.append(cpu_kernels_available())) for _ in range(3)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "print('RESULTS', results)\n"
        "print('STATUS', kernel_status())\n")
    env = dict(os.environ, NFS_KERNEL_CACHE=str(tmp_path / "k"))
    env.pop("NFS_CPU_KERNELS", None)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "RESULTS [True, True, True]" in run.stdout
    assert "STATUS compiled CPU kernel (built on this machine in" in run.stdout
    built = sorted(p.name for p in (tmp_path / "k").iterdir())
    assert len(built) == 1 and built[0].startswith("nfs_kernels_") and built[0].endswith(".so"), built
