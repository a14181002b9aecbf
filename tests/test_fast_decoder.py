"""The folded inference decoder (nfs/model/fast_decoder.py) must give `NFSNetwork.decode`'s displacements: exactly
in float32 (any weights, negative GroupNorm gains included), to bfloat16 rounding in bfloat16, with and without
the template prior, on real ICT-derived targets."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from nfs.data.subjects import SubjectSpec, build_subject
from nfs.ict import load_ict
from nfs.model.config import get_preset
from nfs.model.fast_decoder import FoldedDecoder
from nfs.model.network import NFSNetwork
from nfs.pipeline import load_shipped_model
from nfs.regions import N_REGIONS
from nfs.train import SubjectTensors


def subject_tensors(seed: int, n_vertices: int, k_eig: int, image_size: int):
    ict = load_ict()
    spec = SubjectSpec(seed=seed, id_coeffs=ict.sample_identities(1, seed)[0], region="narrow_face",
                       target_vertices=n_vertices, warp=False, rigid_jitter=False)
    return SubjectTensors(build_subject(ict, spec, k_eig=k_eig, image_size=image_size), "cpu")


def randomised(model: NFSNetwork, seed: int) -> NFSNetwork:
    """Every decoder parameter random, GroupNorm gains of both signs and zero, so that every folding rule runs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.ndim == 2 else 1.0))
        model.decoder[1].weight[0] = 0.0
        model.decoder_out.weight.copy_(torch.randn(model.decoder_out.weight.shape, generator=g) * 0.1)
        model.decoder_out.bias.copy_(torch.randn(3, generator=g))
    return model.eval()


def codes(model: NFSNetwork, n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    z = np.zeros((n, model.cfg.code_dim), np.float32)
    z[:, :53] = rng.uniform(0, 1, (n, 53)) * (rng.random((n, 53)) < 0.3)
    z[:, 53:] = rng.normal(0, 0.3, (n, model.cfg.code_dim - 53))
    return torch.from_numpy(z)


@pytest.mark.parametrize("template_prior", [False, True])
def test_float32_folding_is_exact_for_random_weights(template_prior):
    torch.manual_seed(0)
    cfg = replace(get_preset("tiny", n_regions=N_REGIONS), template_prior=template_prior, decoder_layers=3)
    model = randomised(NFSNetwork(cfg), seed=1)
    t = subject_tensors(5, 600, cfg.k_eig, cfg.image_size)
    prior = t.prior if template_prior else None
    with torch.no_grad():
        enc = model.encode_target(t.vertices[None], t.ops, t.image, prior)
        z = codes(model, 5, seed=2)
        reference = model.decode(enc, z)
    folded = FoldedDecoder.build(model, enc, torch.float32)(z)
    assert folded.shape == reference.shape == (5, t.vertices.shape[0], 3)
    scale = reference.abs().max().item()
    assert scale > 0.1  # a real, non-trivial output
    np.testing.assert_allclose(folded.numpy(), reference.numpy(), atol=2e-4 * scale)
    # each frame is decoded on its own: one frame alone gives the same displacement as inside a batch
    np.testing.assert_allclose(FoldedDecoder.build(model, enc, torch.float32)(z[2:3])[0].numpy(),
                               folded[2].numpy(), atol=1e-5 * scale)


def test_shipped_model_bfloat16_matches_float32_decode():
    model, _ = load_shipped_model()
    cfg = model.cfg
    t = subject_tensors(7, 3000, cfg.k_eig, cfg.image_size)
    with torch.no_grad():
        enc = model.encode_target(t.vertices[None], t.ops, t.image, t.prior)
        z = codes(model, 4, seed=3)
        z[:, 53:] = 0.0
        reference = model.decode(enc, z)
        correction = reference - model.prior_displacement(enc, z)
    exact = FoldedDecoder.build(model, enc, torch.float32)(z)
    np.testing.assert_allclose(exact.numpy(), reference.numpy(), atol=1e-4)  # cm
    fast = FoldedDecoder.build(model, enc, torch.bfloat16)(z)
    err_mm = 10 * (fast - reference).norm(dim=-1)
    correction_mm = 10 * correction.norm(dim=-1)
    # bfloat16 keeps ~3 significant digits: errors are a small fraction of the network's own correction
    assert err_mm.max().item() < 0.1, err_mm.max().item()
    assert err_mm.mean().item() < 0.25 * correction_mm.mean().item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_batched_frames_match_frame_by_frame(dtype):
    """The batched path (what a GPU runs, `batch_frames` > 1) is the same algebra as the per-frame CPU path:
    checked here on the CPU, with random weights (negative gains included) and the template prior."""
    cfg = replace(get_preset("tiny", n_regions=N_REGIONS), template_prior=True, decoder_layers=3)
    model = randomised(NFSNetwork(cfg), seed=4)
    t = subject_tensors(6, 600, cfg.k_eig, cfg.image_size)
    with torch.no_grad():
        enc = model.encode_target(t.vertices[None], t.ops, t.image, t.prior)
        reference = model.decode(enc, codes(model, 7, seed=5))
    folded = FoldedDecoder.build(model, enc, dtype)
    z = codes(model, 7, seed=5)
    one, batched = folded(z, batch_frames=1), folded(z, batch_frames=3)  # 3 + 3 + 1: a ragged last batch
    scale = reference.abs().max().item()
    assert batched.shape == one.shape == reference.shape
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    np.testing.assert_allclose(batched.numpy(), one.numpy(), atol=tol * scale)
    np.testing.assert_allclose(batched.numpy(), reference.numpy(), atol=(2e-4 if dtype == torch.float32 else 3e-2)
                               * scale)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_bfloat16_decoder_matches_cpu_float32():
    """On a GPU: the encoders and the folded decoder in bfloat16 with batched frames, against the CPU in float32."""
    from nfs.pipeline import decode_skin, prepare_target
    model, _ = load_shipped_model()
    ict = load_ict()
    v, f = ict.skin_mesh()
    cpu = prepare_target((v, f), model, use_cache=False, device="cpu")
    gpu = prepare_target((v, f), model, use_cache=False, device="cuda")
    assert gpu.decoder.device.type == "cuda" and gpu.decoder.dtype == torch.bfloat16
    z = codes(model, 40, seed=6).numpy()
    z[:, 53:] = 0.0
    a = np.concatenate(list(decode_skin(cpu, z)))
    b = np.concatenate(list(decode_skin(gpu, z)))
    err_mm = 10 * np.linalg.norm(a - b, axis=-1)
    assert err_mm.max() < 0.5 and err_mm.mean() < 0.05
