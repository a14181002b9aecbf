"""Checks of the NFS network (nfs/model), its losses and checkpoints, and of training (nfs/train.py), with the
`tiny` preset on small decimated subjects so that the whole file runs in well under a minute on a busy CPU."""
import ast
import csv
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import nfs.train as train_module
from nfs import REPO_ROOT
from nfs.data.subjects import SubjectSpec, build_subject, draw_spec
from nfs.ict import EXPRESSION_NAMES, load_ict
from nfs.model.checkpoint import CARD_FILE, MODEL_FILE, load_model, save_model
from nfs.model.config import PRESETS, NFSConfig, get_preset
from nfs.model.diffusion_net import (DiffusionNet, LearnedTimeDiffusion, SpatialGradientFeatures,
                                     mass_weighted_mean, operators_to_torch, sparse_apply)
from nfs.model.losses import jacobian_loss, normal_loss, range_loss, torch_vertex_normals
from nfs.model.network import ImageEncoder, NFSNetwork, TargetEncoding, VertexGroupNorm
from nfs.regions import N_REGIONS
from nfs.train import LossWeights, SubjectTensors, TrainConfig, Trainer

K_EIG, IMAGE_SIZE = 16, 64  # the tiny preset's spectral basis and render size


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: much faster than two on a CPU shared with other work, and deterministic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cfg():
    return get_preset("tiny", n_regions=N_REGIONS)


def small_subject(seed, warp=False, n_vertices=700, region="narrow_face"):
    ict = load_ict()
    spec = SubjectSpec(seed=seed, id_coeffs=ict.sample_identities(1, seed)[0], region=region,
                       target_vertices=n_vertices, warp=warp, rigid_jitter=True)
    return build_subject(ict, spec, k_eig=K_EIG, image_size=IMAGE_SIZE)


@pytest.fixture(scope="module")
def subject():
    return small_subject(11)


@pytest.fixture(scope="module")
def tensors(subject):
    return SubjectTensors(subject, "cpu")


def make_model(cfg, seed=0, random_output=True):
    """A tiny network; the zero-initialised output layer is randomised so that gradients reach the decoder."""
    torch.manual_seed(seed)
    model = NFSNetwork(cfg)
    if random_output:
        torch.nn.init.normal_(model.decoder_out.weight, std=0.1)
        torch.nn.init.normal_(model.decoder_out.bias, std=0.1)
    return model


def frames_of(t, weights):
    return t.vertices[None] + torch.einsum("bk,kvc->bvc", weights, t.basis)


def random_weights(n, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).uniform(0, 0.8, (n, 53)).astype(np.float32))


# --- presets --------------------------------------------------------------------------------------------------

def test_presets(cfg):
    assert set(PRESETS) >= {"paper", "cpu", "tiny"}
    assert cfg.n_regions == N_REGIONS and cfg.k_eig == K_EIG and cfg.image_size == IMAGE_SIZE
    assert get_preset("tiny") is not PRESETS["tiny"], "presets are copied, not shared"
    assert NFSConfig.from_dict(cfg.to_dict()) == cfg
    assert NFSConfig.from_dict({**cfg.to_dict(), "unknown_field": 1}) == cfg
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")
    sizes = {name: sum(p.numel() for p in NFSNetwork(get_preset(name, N_REGIONS)).parameters())
             for name in ("tiny", "cpu")}
    assert sizes["tiny"] < 50_000 < sizes["cpu"]


# --- module shapes ------------------------------------------------------------------------------------------

def test_operators_to_torch(subject, tensors):
    ops = tensors.ops
    n = subject.n_vertices
    assert ops.n_vertices == n and ops.evecs.shape == (n, K_EIG) and ops.evals.shape == (K_EIG,)
    assert ops.gradX.layout == torch.sparse_csr and ops.gradX.shape == (n, n)
    x = torch.randn(2, n, 3)
    expected = subject.ops.gradX @ x[1].numpy()
    assert torch.allclose(sparse_apply(ops.gradX, x)[1], torch.from_numpy(expected).float(), atol=1e-4)
    assert operators_to_torch(subject.ops, k_eig=4).evecs.shape == (n, 4)


@pytest.mark.parametrize("gradient_features", [True, False])
def test_diffusion_net_shapes_and_batch_independence(tensors, gradient_features):
    torch.manual_seed(0)
    net = DiffusionNet(5, 7, width=16, n_blocks=2, gradient_features=gradient_features)
    n = tensors.ops.n_vertices
    x = torch.randn(3, n, 5)
    y = net(x, tensors.ops)
    assert y.shape == (3, n, 7) and torch.isfinite(y).all()
    assert torch.allclose(net(x[1:2], tensors.ops), y[1:2], atol=1e-5)


def test_diffusion_net_runs_on_meshes_of_any_size():
    torch.manual_seed(0)
    net = DiffusionNet(3, 2, width=8, n_blocks=1)
    for n_vertices in (300, 900):
        s = small_subject(20 + n_vertices, n_vertices=n_vertices)
        ops = operators_to_torch(s.ops)
        assert net(torch.from_numpy(s.vertices)[None], ops).shape == (1, s.n_vertices, 2)


def test_learned_diffusion_keeps_constants_and_mean(tensors):
    diffusion = LearnedTimeDiffusion(4)
    n = tensors.ops.n_vertices
    const = torch.full((1, n, 4), 2.5)
    assert torch.allclose(diffusion(const, tensors.ops), const, atol=1e-3)
    x = torch.randn(1, n, 4)
    with torch.no_grad():
        diffusion.log_time.fill_(np.log(1e6))  # long diffusion: the surface average
    assert torch.allclose(diffusion(x, tensors.ops), mass_weighted_mean(x, tensors.ops.mass)[:, None], atol=1e-3)
    gx, gy = torch.randn(2, 1, n, 4).unbind(0)
    assert SpatialGradientFeatures(4)(gx, gy).shape == (1, n, 4)


def test_image_encoder(cfg):
    enc = ImageEncoder(cfg)
    assert enc(torch.randn(2, 4, IMAGE_SIZE, IMAGE_SIZE)).shape == (2, cfg.image_dim)
    assert enc(torch.randn(1, 4, 2 * IMAGE_SIZE, 2 * IMAGE_SIZE)).shape == (1, cfg.image_dim)


def test_vertex_group_norm_normalises_over_vertices():
    torch.manual_seed(0)
    groups, channels, n = 4, 12, 500
    norm = VertexGroupNorm(groups, channels)
    x = torch.randn(2, n, channels) * torch.linspace(0.5, 3, channels) + torch.linspace(-2, 4, channels)
    y = norm(x)  # identity affine at initialisation
    assert y.shape == x.shape and y.dtype == x.dtype
    g = y.reshape(2, n, groups, channels // groups)
    assert torch.allclose(g.mean(dim=(1, 3)), torch.zeros(2, groups), atol=1e-4)
    assert torch.allclose(g.var(dim=(1, 3), unbiased=False), torch.ones(2, groups), atol=1e-3)
    # statistics are per mesh in the batch: rescaling another item changes nothing
    x2 = x.clone()
    x2[1] = x2[1] * 100 + 7
    assert torch.allclose(norm(x2)[0], y[0], atol=1e-5)
    # ... and over all vertices: a vertex's output depends on the others
    assert not torch.allclose(norm(x[:, :100])[:, :10], y[:, :10], atol=1e-3)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2, channels))
        norm.bias.copy_(torch.linspace(-1, 1, channels))
    assert torch.allclose(norm(x), y * norm.weight + norm.bias, atol=1e-4)


def test_network_shapes(cfg, tensors):
    model = make_model(cfg, random_output=False)
    n = tensors.ops.n_vertices
    enc = model.encode_target(tensors.vertices[None], tensors.ops, tensors.image)
    assert isinstance(enc, TargetEncoding)
    assert enc.static.shape == (1, n, 6 + cfg.image_dim)
    assert enc.z_id.shape == (1, cfg.code_dim)
    assert enc.logits.shape == (1, n, cfg.n_regions)
    assert enc.weights.shape == (1, n, cfg.code_dim)
    w = random_weights(3)
    frames = frames_of(tensors, w)
    images = torch.randn(3, 4, IMAGE_SIZE, IMAGE_SIZE)
    z = model.encode_expression(frames, torch_vertex_normals(frames, tensors.faces), tensors.ops, images)
    assert z.shape == (3, cfg.code_dim)
    z_known = model.expression_code_from_weights(w)
    assert z_known.shape == (3, cfg.code_dim) and torch.equal(z_known[:, :53], w) and not z_known[:, 53:].any()
    disp = model.decode(enc, z)
    assert disp.shape == (3, n, 3) and disp.dtype == torch.float32
    assert not disp.any(), "the output layer starts at zero: no displacement before training"


def test_gradients_reach_every_parameter(cfg, subject, tensors):
    model = make_model(cfg)
    model.train()
    w = random_weights(2, seed=1)
    frames = frames_of(tensors, w)
    images = torch.from_numpy(np.stack([subject.image.astype(np.float32)] * 2))
    enc = model.encode_target(tensors.vertices[None], tensors.ops, tensors.image)
    z = model.encode_expression(frames, torch_vertex_normals(frames, tensors.faces), tensors.ops, images)
    gt = torch.einsum("bk,kvc->bvc", w, tensors.basis)
    loss = F.mse_loss(model.decode(enc, z), gt)
    loss.backward()
    groups = ("image_encoder", "identity_encoder", "expression_encoder", "skinning_encoder", "skinning_mlp",
              "decoder", "decoder_out")
    assert {name for name, _ in model.named_children()} == set(groups)
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"zero gradient at {name}"


# --- losses ---------------------------------------------------------------------------------------------------

def test_loss_terms_vanish_at_the_ground_truth(tensors):
    gt = torch.einsum("bk,kvc->bvc", random_weights(2, seed=2), tensors.basis)
    pinv = tensors.pinv
    assert jacobian_loss(gt, gt, tensors.faces, pinv) == 0
    assert jacobian_loss(gt + torch.tensor([1.0, -2.0, 0.5]), gt, tensors.faces, pinv) < 1e-10, "translation-free"
    assert jacobian_loss(gt * 1.1, gt, tensors.faces, pinv) > 0
    rest = tensors.vertices[None]
    assert normal_loss(rest + gt, rest + gt, tensors.faces) < 1e-6
    assert normal_loss(rest + 2 * gt, rest + gt, tensors.faces) > 0
    assert range_loss(torch.tensor([[0.0, 0.5, 1.0]])) == 0
    assert torch.isclose(range_loss(torch.tensor([[-0.5, 1.5]])), torch.tensor(0.25))


# --- one training step ----------------------------------------------------------------------------------------

class _ProbeWeights:
    """LossWeights stand-in that records every loss term when the step multiplies it by its weight, and its
    gradient norm per network part (taken then, while the graph is alive)."""

    def __init__(self, model):
        self.model, self.terms, self.grads = model, {}, {}

    def __getattr__(self, name):
        probe = self

        class Weight(float):
            def __mul__(self, term):
                probe.terms[name] = term
                probe.grads[name] = {}
                if term.requires_grad:
                    named = list(probe.model.named_parameters())
                    grads = torch.autograd.grad(term, [p for _, p in named], retain_graph=True, allow_unused=True)
                    for (pname, _), g in zip(named, grads):
                        part = pname.split(".")[0]
                        norm = 0.0 if g is None else float(g.norm())
                        probe.grads[name][part] = probe.grads[name].get(part, 0.0) + norm
                return float(self) * term

        return Weight(getattr(LossWeights(), name))


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    cfg = TrainConfig(preset="tiny", pool_size=3, frames_per_step=2, out=str(tmp_path_factory.mktemp("run")),
                      steps=20, bf16="off", device="cpu")
    return Trainer(cfg, log=lambda m: None)


def test_train_step_loss_terms(trainer):
    # a step whose target (an ICT identity) and source (warped) are different subjects
    step = next(s for s in range(100) if len(set(np.random.default_rng([0, s, 17]).integers(0, 3, 2))) == 2)
    slot_t, slot_s = np.random.default_rng([0, step, 17]).integers(0, 3, 2)
    subjects = {int(slot_t): small_subject(31, warp=False), int(slot_s): small_subject(32, warp=True)}
    other = ({0, 1, 2} - set(subjects)).pop()
    subjects[other] = subjects[int(slot_t)]
    for slot, s in subjects.items():
        trainer.pool.slots[slot] = (trainer.pool.seed_of(slot, step), s)
    trainer.step = step
    assert subjects[int(slot_t)].is_ict_identity and not subjects[int(slot_s)].is_ict_identity
    probe = _ProbeWeights(trainer.model)
    trainer.cfg.weights = probe
    before = [p.detach().clone() for p in trainer.model.parameters()]
    try:
        out = trainer.train_step()
    finally:
        trainer.cfg.weights = LossWeights()
    names = set(LossWeights().__dict__)
    assert set(probe.terms) == names and names <= set(out)
    for name in names:
        term = probe.terms[name]
        assert term.ndim == 0 and torch.isfinite(term) and float(term) > 0, name
        assert term.requires_grad, f"{name} is not differentiable"
        assert sum(probe.grads[name].values()) > 0, f"{name} has no gradient"
        assert np.isclose(out[name], float(term)), name
    # where each term's gradient goes (the output layer starts at zero, so decoder terms reach decoder_out)
    expected_parts = {"reconstruction": "decoder_out", "reconstruction_l1": "decoder_out", "normal": "decoder_out",
                      "jacobian": "decoder_out",
                      "blendshape_reconstruction": "decoder_out", "expression_code": "expression_encoder",
                      "free_code": "expression_encoder", "blendshape_prior": "expression_encoder",
                      "range": "expression_encoder", "identity_code": "identity_encoder",
                      "region": "skinning_encoder"}
    for name, part in expected_parts.items():
        assert probe.grads[name].get(part, 0) > 0, f"{name} does not reach {part}"
    for name in ("expression_code", "identity_code", "region"):
        assert probe.grads[name]["image_encoder"] > 0, f"{name} does not reach the image encoder"
    weights = LossWeights()
    assert np.isclose(out["loss"], sum(getattr(weights, k) * out[k] for k in names), rtol=1e-5)
    assert np.isfinite(out["grad_norm"]) and out["grad_norm"] > 0
    assert np.isclose(out["rms_mm"], np.sqrt(out["reconstruction"]) * 10, rtol=1e-4)
    assert out["target_vertices"] == subjects[int(slot_t)].n_vertices
    assert trainer.step == step, "train_step leaves the step counter to the loop"
    changed = [not torch.equal(a, b.detach()) for a, b in zip(before, trainer.model.parameters())]
    assert all(changed[i] for i, (n, _) in enumerate(trainer.model.named_parameters()) if n.startswith("decoder_out"))
    assert sum(changed) > len(changed) // 2


# --- checkpoints ----------------------------------------------------------------------------------------------

def test_checkpoint_round_trip(cfg, subject, tensors, tmp_path):
    model = make_model(cfg, seed=3).eval()
    save_model(tmp_path, model, {"note": "test", "step": 7})
    assert (tmp_path / MODEL_FILE).exists() and (tmp_path / CARD_FILE).exists()
    header = (tmp_path / MODEL_FILE).read_bytes()[:9]
    assert header[8:9] == b"{", "safetensors (length + JSON header), not a pickle"
    loaded, card = load_model(tmp_path)
    assert card["note"] == "test" and card["step"] == 7 and NFSConfig.from_dict(card["config"]) == cfg
    assert not loaded.training
    state, state2 = model.state_dict(), loaded.state_dict()
    assert state.keys() == state2.keys() and all(torch.equal(state[k], state2[k]) for k in state)
    w = random_weights(2, seed=4)
    frames = frames_of(tensors, w)
    images = torch.from_numpy(np.stack([subject.image.astype(np.float32)] * 2))
    with torch.no_grad():
        outs = []
        for m in (model, loaded):
            enc = m.encode_target(tensors.vertices[None], tensors.ops, tensors.image)
            z = m.encode_expression(frames, torch_vertex_normals(frames, tensors.faces), tensors.ops, images)
            outs.append((enc.z_id, enc.logits, z, m.decode(enc, z)))
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing")


@pytest.mark.parametrize("keep_output", [False, True])
def test_warm_start_copies_weights_and_zeroes_the_output_unless_asked(cfg, tmp_path, keep_output):
    source = make_model(cfg, seed=5)
    save_model(tmp_path / "source", source, {"step": 1})
    trainer = Trainer(TrainConfig(preset="tiny", pool_size=1, out=str(tmp_path / "run"), device="cpu", bf16="off",
                                  init_from=str(tmp_path / "source"), init_keep_output=keep_output),
                      log=lambda m: None)
    trainer.warm_start(Path(trainer.cfg.init_from))
    got, want = trainer.model.state_dict(), source.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want if not k.startswith("decoder_out"))
    assert want["decoder_out.weight"].abs().sum() > 0
    if keep_output:
        assert torch.equal(got["decoder_out.weight"], want["decoder_out.weight"])
    else:
        assert not got["decoder_out.weight"].any() and not got["decoder_out.bias"].any()


# --- resuming a run -------------------------------------------------------------------------------------------

@pytest.fixture
def small_training_data(monkeypatch):
    """Training subjects as drawn (identity, warp, ...) but on ~600-vertex narrow-face discretizations,
    and one small held-out subject, to keep runs to seconds."""

    def small_spec(seed, rng_seed_offset=0, real_heads=False):
        return replace(draw_spec(seed, rng_seed_offset, real_heads), region="narrow_face", target_vertices=600,
                       subdivide=False)

    def small_held_out(n, k_eig, image_size, region="skin"):
        spec = replace(small_spec(train_module.HELD_OUT_SEED_BASE), warp=False, rigid_jitter=False)
        return [build_subject(load_ict(), spec, k_eig, image_size)]

    monkeypatch.setattr(train_module, "draw_spec", small_spec)
    monkeypatch.setattr(train_module, "held_out_subjects", small_held_out)


def read_log(out):
    with (Path(out) / "log.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_real_head_styles_draw_the_heads_ict_models_least_like_and_leave_the_default_draws_alone():
    """`--real-head-styles`: among the artist-modelled training subjects, anime-like proportions (a flatter face),
    game heads (a mouth bag with a cavity, eye sockets) and closed lips appear, each one builds into a subject
    whose truth keeps its shape count, and without the option every seed draws the recipe it always did."""
    styles = [draw_spec(seed, real_heads=True).style for seed in range(80)]
    anime = [s for s in styles if s.flatten < 1.0]
    game = [s for s in styles if s.eye_sockets and s.mouth_bag and s.bag_cavity_cm > 0]
    closed = [s for s in styles if s.join_lips and not s.join_lids and not s.mouth_bag]
    assert anime and game and closed
    assert all(s.feature_scales[0] > 1.0 and s.feature_scales[1] < 1.0 and s.feature_scales[2] < 1.0 for s in anime)
    for seed in range(80):
        plain, again = draw_spec(seed), draw_spec(seed, real_heads=False)
        assert plain.style == again.style and np.array_equal(plain.id_coeffs, again.id_coeffs)
        assert plain.style.flatten == 1.0 and not plain.style.eye_sockets
    ict = load_ict()
    base = replace(draw_spec(0), region="narrow_face", target_vertices=600, subdivide=False, warp=False)
    for style in (anime[0], game[0]):
        s = build_subject(ict, replace(base, style=style), 16, 16)
        assert s.expression_basis.shape == (len(EXPRESSION_NAMES), s.n_vertices, 3)
        assert np.isfinite(s.expression_basis).all()


def test_resumed_training_matches_an_uninterrupted_run(tmp_path, small_training_data):
    def config(out, **kw):
        return TrainConfig(preset="tiny", out=str(out), steps=4, pool_size=3, frames_per_step=2, refresh_every=2,
                           validate_every=1000, bf16="off", device="cpu", **kw)

    Trainer(config(tmp_path / "once"), log=lambda m: None).run()
    messages = []
    # interrupted after every step by the time limit, then finished: 1 + 1 + 2 steps over three trainers
    for max_minutes in (1e-9, 1e-9, 0.0):
        Trainer(config(tmp_path / "resumed", max_minutes=max_minutes), log=messages.append).run()
    assert "resumed from step 1" in messages and "resumed from step 2" in messages
    once, resumed = read_log(tmp_path / "once"), read_log(tmp_path / "resumed")
    assert [r["step"] for r in once] == [r["step"] for r in resumed] == ["1", "2", "3", "4"]
    for a, b in zip(once, resumed):
        for key in ("loss", "rms_mm", "grad_norm", "lr", "reconstruction", "region", "expression_code"):
            assert np.isclose(float(a[key]), float(b[key]), rtol=1e-3), (a["step"], key)
    assert np.isclose(float(once[-1]["val_mean_mm"]), float(resumed[-1]["val_mean_mm"]), rtol=1e-3)
    w1 = load_file(str(tmp_path / "once" / "latest" / MODEL_FILE))
    w2 = load_file(str(tmp_path / "resumed" / "latest" / MODEL_FILE))
    assert all(torch.allclose(w1[k], w2[k], rtol=1e-3, atol=1e-6) for k in w1)
    assert (tmp_path / "resumed" / "best" / MODEL_FILE).exists()


# --- learning -------------------------------------------------------------------------------------------------

def test_overfits_one_identity_and_one_expression(cfg):
    subject = small_subject(41, n_vertices=500)
    t = SubjectTensors(subject, "cpu")
    model = make_model(cfg, seed=0, random_output=False)
    w = torch.zeros(1, 53)
    w[0, EXPRESSION_NAMES.index("jawOpen")] = 0.8
    w[0, EXPRESSION_NAMES.index("mouthSmile_L")] = 0.6
    gt = torch.einsum("bk,kvc->bvc", w, t.basis)
    z = model.expression_code_from_weights(w)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def error():
        enc = model.encode_target(t.vertices[None], t.ops, t.image)
        return F.mse_loss(model.decode(enc, z), gt)

    with torch.no_grad():
        initial = float(error())
    losses = []
    for _ in range(300):
        loss = error()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    with torch.no_grad():
        final = float(error())
    assert initial > 0.05  # cm^2: a clearly visible expression
    # typically 60-170x lower after 300 steps; Adam at a constant rate still jitters, hence two bounds
    assert min(losses[-50:]) < initial / 50, f"mse {initial:.4f} -> best {min(losses[-50:]):.5f} cm^2"
    assert final < initial / 20, f"mse {initial:.4f} -> {final:.5f} cm^2"


# --- safety ---------------------------------------------------------------------------------------------------

SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "runs", ".pytest_cache"}


def repo_python_files():
    for root, dirs, files in os.walk(REPO_ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".venv")]
        yield from (Path(root) / f for f in files if f.endswith(".py"))


def unsafe_torch_loads(source: str) -> list[int]:
    """Line numbers of torch.load calls (also via `import torch as x` / `from torch import load`)
    without weights_only=True."""
    tree = ast.parse(source)
    torch_names, load_names = {"torch"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            torch_names |= {a.asname or a.name for a in node.names if a.name == "torch"}
        elif isinstance(node, ast.ImportFrom) and node.module == "torch":
            load_names |= {a.asname or a.name for a in node.names if a.name == "load"}
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        is_load = ((isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name)
                    and f.value.id in torch_names) or (isinstance(f, ast.Name) and f.id in load_names))
        if is_load and not any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                               for k in node.keywords):
            bad.append(node.lineno)
    return bad


def test_unsafe_torch_load_detector():
    assert unsafe_torch_loads("import torch\ntorch.load('x')\ntorch.load('y', weights_only=True)\n") == [2]
    assert unsafe_torch_loads("import torch as th\nth.load('x', weights_only=False)\n") == [2]
    assert unsafe_torch_loads("from torch import load as L\nL('x')\n") == [2]
    assert unsafe_torch_loads("import numpy as np\nnp.load('x')\n") == []


def test_torch_load_only_with_weights_only():
    files = list(repo_python_files())
    assert any(p.name == "train.py" for p in files) and Path(__file__).resolve() in {p.resolve() for p in files}
    offenders = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        if "load" not in text:
            continue
        offenders += [f"{path.relative_to(REPO_ROOT)}:{line}" for line in unsafe_torch_loads(text)]
    assert not offenders, f"torch.load without weights_only=True: {offenders}"
