"""Training of the NFS network on subjects generated from the ICT model (`python -m nfs train`).

A pool of subjects (identity, warp, crop, discretization, operators, render) is rebuilt deterministically from
the step number, so a run resumes exactly from its last checkpoint.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nfs.data.artist import ArtistStyle
from nfs.data.subjects import (GENERIC_SEED, HELD_OUT_SEED_BASE, Subject, SubjectSpec, build_subject, draw_spec,
                               sample_expressions)
from nfs.ict import FACE_VERTEX_COUNT, load_ict
from nfs.model.checkpoint import TRAIN_JSON_FILE, load_train_state, save_model, save_train_state
from nfs.model.config import get_preset
from nfs.model.diffusion_net import operators_to_torch
from nfs.model.losses import (edge_pseudo_inverse, jacobian_loss, normal_loss, quadratic_basis_loss, range_loss,
                              torch_vertex_normals)
from nfs.model.network import NFSNetwork
from nfs.model.precision import inference_dtype, resolve_device
from nfs.regions import N_REGIONS
from nfs.render import render_normal_depth


@dataclass
class LossWeights:
    """Weight of each term of the training loss (`Trainer.train_step`)."""

    reconstruction: float = 10.0          # squared displacement error on the target, cm^2
    normal: float = 1.0                   # vertex normals of the deformed target against the truth's
    jacobian: float = 1.0                 # per-triangle deformation gradients against the truth's
    expression_code: float = 1.0          # encoded expression code's ICT part against the true weights
    free_code: float = 0.1                # the code's free (non-ICT) part kept small
    identity_code: float = 0.05           # identity code against the ICT identity coefficients, where known
    blendshape_prior: float = 1.0         # the code's ICT-weight error measured through the ICT face's Gram
    blendshape_reconstruction: float = 5.0  # decoded displacements on the generic ICT head against its truth
    region: float = 0.1                   # skinning regions against the ICT region labels (cross entropy)
    range: float = 1.0                    # predicted ICT weights kept inside their range
    reconstruction_l1: float = 0.0  # mean per-vertex distance (smoothed): favours exact zeros where the prior is right


@dataclass
class TrainConfig:
    preset: str = "cpu"
    out: str = "runs/cpu"
    steps: int = 20000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    frames_per_step: int = 6
    pool_size: int = 192
    refresh_every: int = 10         # steps per newly built subject
    seed: int = 0
    predicted_code_fraction: float = 0.5  # share of steps decoding the encoder's code instead of the known one
    checkpoint_minutes: float = 3.0
    validate_every: int = 400
    max_minutes: float = 0.0        # stop after this wall time (0 = no limit)
    device: str = "auto"
    bf16: str = "auto"              # auto / on / off
    init_from: str = ""             # warm start: model weights from this directory (decoder output zeroed)
    init_keep_output: bool = False  # warm start keeps the decoder output layer too (fine-tuning a trained model)
    real_head_styles: bool = False  # half of the artist-modelled subjects: anime-like, game heads, closed lips
    weights: LossWeights = field(default_factory=LossWeights)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["weights"] = LossWeights(**d.get("weights", {}))
        return cls(**d)


def smooth_distance(d: torch.Tensor, eps: float = 0.01) -> torch.Tensor:
    """Per-vertex distance |d| of displacement errors (..., 3) in cm, smoothed below eps (0.1 mm) so that its
    gradient is defined at 0: sqrt(|d|^2 + eps^2) - eps."""
    return torch.sqrt(d.float().square().sum(-1) + eps * eps) - eps


class SubjectPool:
    """Subjects by slot; slot j at step s holds a seed that is a pure function of (j, s)."""

    def __init__(self, cfg: TrainConfig, k_eig: int, image_size: int):
        self.cfg, self.k_eig, self.image_size = cfg, k_eig, image_size
        self.ict = load_ict()
        self.slots: dict[int, tuple[int, Subject]] = {}

    def seed_of(self, slot: int, step: int) -> int:
        replaced = step // self.cfg.refresh_every  # replacements done before this step
        n = self.cfg.pool_size
        if replaced <= slot:
            return self.cfg.seed * 10_000_000 + slot
        last = slot + ((replaced - 1 - slot) // n) * n
        return self.cfg.seed * 10_000_000 + n + last

    def get(self, slot: int, step: int) -> Subject:
        seed = self.seed_of(slot, step)
        assert seed < HELD_OUT_SEED_BASE * 100 and seed % 10_000_000 < HELD_OUT_SEED_BASE
        if slot not in self.slots or self.slots[slot][0] != seed:
            spec = draw_spec(seed, real_heads=self.cfg.real_head_styles)
            self.slots[slot] = (seed, build_subject(self.ict, spec, self.k_eig, self.image_size))
        return self.slots[slot][1]

    def fill(self, step: int, log=print) -> None:
        t = time.time()
        for j in range(self.cfg.pool_size):
            self.get(j, step)
        log(f"pool of {self.cfg.pool_size} subjects built in {time.time() - t:.0f} s")


class SubjectTensors:
    """Torch views of a subject, cached on the subject object."""

    def __init__(self, s: Subject, device):
        self.ops = operators_to_torch(s.ops).to(device)
        self.vertices = torch.from_numpy(s.vertices).to(device)
        self.faces = torch.from_numpy(s.faces.astype(np.int64)).to(device)
        self.basis = torch.from_numpy(s.expression_basis).to(device)  # (53, V, 3)
        self.image = torch.from_numpy(s.image.astype(np.float32))[None].to(device)
        self.labels = torch.from_numpy(s.labels.astype(np.int64)).to(device)
        self.pinv = torch.from_numpy(edge_pseudo_inverse(s.vertices, s.faces)).to(device)
        self.id_coeffs = torch.from_numpy(s.spec.id_coeffs).to(device)
        self.prior = torch.from_numpy(s.prior_basis).to(device)


def render_frames(frames: torch.Tensor, faces: np.ndarray, size: int) -> torch.Tensor:
    """(B, V, 3) deformed frames -> (B, 4, S, S) normal/depth renders (no gradient)."""
    v = frames.detach().float().cpu().numpy()
    return torch.from_numpy(np.stack([render_normal_depth(x, faces, size) for x in v])).to(frames.device)


def tensors_of(s: Subject, device) -> SubjectTensors:
    if getattr(s, "_tensors", None) is None:
        s._tensors = SubjectTensors(s, device)
    return s._tensors


VALIDATION_STYLES = (ArtistStyle(),
                     ArtistStyle(rest_jaw=0.15, lids_apart=0.3, mouth_bag=True),
                     ArtistStyle(feature_scales=(1.4, 0.8, 1.25)),
                     ArtistStyle(rest_jaw=0.1, feature_scales=(0.8, 1.35, 0.85)))


def held_out_subjects(n: int, k_eig: int, image_size: int, region: str = "skin") -> list[Subject]:
    """Held-out ICT identities (seeds never used in training) on the ICT topology, no warp or jitter, modelled in
    turn as ICT models them, as an artist head (lip slit, lids apart, mouth bag) and with stylised proportions
    (`VALIDATION_STYLES`)."""
    ict = load_ict()
    out = []
    for i in range(n):
        seed = HELD_OUT_SEED_BASE + i
        c = np.random.default_rng(seed).standard_normal(100).astype(np.float32)
        spec = SubjectSpec(seed=seed, id_coeffs=c, region=region, target_vertices=0, warp=False,
                           rigid_jitter=False, kind="held_out", style=VALIDATION_STYLES[i % len(VALIDATION_STYLES)])
        out.append(build_subject(ict, spec, k_eig, image_size))
    return out


class Trainer:
    def __init__(self, cfg: TrainConfig, log=print):
        self.cfg, self.log = cfg, log
        self.device = resolve_device(cfg.device)
        self.bf16 = cfg.bf16 == "on" or (cfg.bf16 == "auto" and inference_dtype(self.device) == torch.bfloat16)
        torch.manual_seed(cfg.seed)
        self.net_cfg = get_preset(cfg.preset, n_regions=N_REGIONS)
        self.model = NFSNetwork(self.net_cfg).to(self.device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        warmup = min(200, cfg.steps // 10)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min(1.0, (s + 1) / max(warmup, 1)) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.step = 0
        self.wall = 0.0
        self.best_val = float("inf")
        self.history: list[dict] = []
        ict = load_ict()
        face = slice(0, FACE_VERTEX_COUNT)
        exp_b = torch.from_numpy(ict.expression_deltas[:, face].reshape(53, -1)).double()
        id_b = torch.from_numpy(ict.identity_deltas[:, face].reshape(100, -1)).double()
        self.gram_exp = (exp_b @ exp_b.T).float().to(self.device)
        self.gram_id = (id_b @ id_b.T).float().to(self.device)
        self.pool = SubjectPool(cfg, self.net_cfg.k_eig, self.net_cfg.image_size)
        generic = SubjectSpec(seed=GENERIC_SEED, id_coeffs=np.zeros(100, np.float32), region="skin", target_vertices=2000,
                              warp=False, rigid_jitter=False, kind="generic")
        self.generic = build_subject(ict, generic, self.net_cfg.k_eig, self.net_cfg.image_size)
        self.val_subjects = None

    # --- state ----------------------------------------------------------------------------------------------
    def try_resume(self) -> bool:
        latest = self.out / "latest"
        if not (latest / TRAIN_JSON_FILE).exists():
            return False
        from safetensors.torch import load_file
        self.model.load_state_dict(load_file(str(latest / "model.safetensors")))
        meta = load_train_state(latest, self.opt, self.sched)
        self.step, self.wall, self.best_val = meta["step"], meta["wall_s"], meta["best_val"]
        truncate_log(self.out / "log.csv", self.step)
        self.log(f"resumed from step {self.step}")
        return True

    def warm_start(self, directory: Path) -> None:
        """Copy matching weights from another run (encoders, decoder body); unless cfg.init_keep_output, the output
        layer starts at zero so the model starts from the template-prior solution."""
        from safetensors.torch import load_file
        state = load_file(str(directory / "model.safetensors"))
        own = self.model.state_dict()
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape
                  and (self.cfg.init_keep_output or not k.startswith("decoder_out"))}
        self.model.load_state_dict(usable, strict=False)
        self.log(f"warm start: {len(usable)}/{len(own)} tensors from {directory}")

    def save(self, card_extra: dict | None = None) -> None:
        latest = self.out / "latest"
        card = self.card(card_extra)
        save_model(latest, self.model, card)
        save_train_state(latest, self.opt, self.sched, {"step": self.step, "wall_s": self.wall,
                                                        "best_val": self.best_val, "train_config": asdict(self.cfg)})

    def card(self, extra: dict | None = None) -> dict:
        return {"preset": self.cfg.preset, "step": self.step, "wall_time_s": round(self.wall, 1),
                "device": str(self.device), "bf16": self.bf16, "train_config": asdict(self.cfg),
                "training_data": "ICT-FaceKit identities (seeds < 1e6; held-out seeds >= 1e6), RBF-warped shapes, "
                                 "skin/face/narrow-face crops, decimated and re-tessellated discretizations",
                **(extra or {})}

    # --- one step -------------------------------------------------------------------------------------------
    def step_rng(self) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, self.step, 17])

    def train_step(self) -> dict:
        cfg, w = self.cfg, self.cfg.weights
        rng = self.step_rng()
        slot_t, slot_s = rng.integers(0, cfg.pool_size, 2)
        tgt_subject = self.pool.get(int(slot_t), self.step)
        target = tensors_of(tgt_subject, self.device)
        src_subject = self.pool.get(int(slot_s), self.step)
        source = tensors_of(src_subject, self.device)
        generic = tensors_of(self.generic, self.device)
        b = cfg.frames_per_step
        weights = torch.from_numpy(sample_expressions(rng, b)).to(self.device)
        use_pred = rng.random() < cfg.predicted_code_fraction
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            enc = self.model.encode_target(target.vertices[None], target.ops, target.image, target.prior)
            src_frames = source.vertices[None] + torch.einsum("bk,kvc->bvc", weights, source.basis)
            src_normals = torch_vertex_normals(src_frames, source.faces)
            src_images = render_frames(src_frames, src_subject.faces, self.net_cfg.image_size)
            z_pred = self.model.encode_expression(src_frames, src_normals, source.ops, src_images)
            z_known = self.model.expression_code_from_weights(weights)
            disp = self.model.decode(enc, z_pred if use_pred else z_known)
            gen_enc = self.model.encode_target(generic.vertices[None], generic.ops, generic.image, generic.prior)
            gen_disp = self.model.decode(gen_enc, z_pred)
        gt = torch.einsum("bk,kvc->bvc", weights, target.basis)
        gen_gt = torch.einsum("bk,kvc->bvc", weights, generic.basis)
        z_pred, z_id = z_pred.float(), enc.z_id.float()
        ne = self.net_cfg.n_expression
        terms = {
            "reconstruction": F.mse_loss(disp, gt),
            "reconstruction_l1": smooth_distance(disp - gt).mean(),
            "normal": normal_loss(target.vertices[None] + disp, target.vertices[None] + gt, target.faces),
            "jacobian": jacobian_loss(disp, gt, target.faces, target.pinv),
            "expression_code": F.mse_loss(z_pred[:, :ne], weights),
            "free_code": z_pred[:, ne:].square().mean(),
            "blendshape_prior": quadratic_basis_loss(z_pred[:, :ne] - weights, self.gram_exp, FACE_VERTEX_COUNT),
            "blendshape_reconstruction": F.mse_loss(gen_disp, gen_gt),
            "region": F.cross_entropy(enc.logits.float()[0], target.labels),
            "range": range_loss(z_pred[:, :ne]) if not src_subject.is_ict_identity else z_pred.new_zeros(()),
        }
        if tgt_subject.is_ict_identity:
            nid = self.net_cfg.n_identity
            d_id = z_id[:, :nid] - target.id_coeffs[None]
            terms["identity_code"] = d_id.square().mean() + quadratic_basis_loss(d_id, self.gram_id,
                                                                                 FACE_VERTEX_COUNT)
        else:
            terms["identity_code"] = z_id.new_zeros(())
        loss = sum(getattr(w, k) * v for k, v in terms.items())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        out = {k: float(v.detach()) for k, v in terms.items()}
        out.update(loss=float(loss.detach()), grad_norm=float(gnorm), lr=self.sched.get_last_lr()[0],
                   target_vertices=tgt_subject.n_vertices,
                   rms_mm=float(torch.sqrt(F.mse_loss(disp.detach(), gt))) * 10)
        return out

    # --- validation -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, n_subjects: int = 4, n_frames: int = 12) -> dict:
        if self.val_subjects is None:
            self.val_subjects = held_out_subjects(n_subjects, self.net_cfg.k_eig, self.net_cfg.image_size)
        self.model.eval()
        rng = np.random.default_rng(12345)
        errs, rms, pred_errs, region_acc, prior_errs = [], [], [], [], []
        for s in self.val_subjects:
            t = tensors_of(s, self.device)
            weights = torch.from_numpy(sample_expressions(rng, n_frames)).to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                enc = self.model.encode_target(t.vertices[None], t.ops, t.image, t.prior)
                disp = self.model.decode(enc, self.model.expression_code_from_weights(weights))
                frames = t.vertices[None] + torch.einsum("bk,kvc->bvc", weights, t.basis)
                z = self.model.encode_expression(frames, torch_vertex_normals(frames, t.faces), t.ops,
                                                 render_frames(frames, s.faces, self.net_cfg.image_size))
                disp_pred = self.model.decode(enc, z)
            gt = torch.einsum("bk,kvc->bvc", weights, t.basis)
            face = slice(0, FACE_VERTEX_COUNT)
            e = (disp.float() - gt)[:, face].norm(dim=-1) * 10  # mm
            errs.append(float(e.mean()))
            rms.append(float(e.square().mean().sqrt()))
            pred_errs.append(float(((disp_pred.float() - gt)[:, face].norm(dim=-1) * 10).mean()))
            prior = torch.einsum("bk,kvc->bvc", weights, t.prior)
            prior_errs.append(float(((prior - gt)[:, face].norm(dim=-1) * 10).mean()))
            region_acc.append(float((enc.logits[0].argmax(-1) == t.labels).float().mean()))
        return {"val_mean_mm": float(np.mean(errs)), "val_rms_mm": float(np.mean(rms)),
                "val_pred_code_mean_mm": float(np.mean(pred_errs)), "val_region_acc": float(np.mean(region_acc)),
                "val_prior_mean_mm": float(np.mean(prior_errs))}

    # --- loop -----------------------------------------------------------------------------------------------
    def run(self) -> None:
        cfg = self.cfg
        (self.out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
        if not self.try_resume() and cfg.init_from:
            self.warm_start(Path(cfg.init_from))
        self.pool.fill(self.step, self.log)
        log_path = self.out / "log.csv"
        started = time.time()
        wall0 = self.wall
        last_ckpt = time.time()
        fields = None
        while self.step < cfg.steps:
            t0 = time.time()
            row = self.train_step()
            self.step += 1
            self.wall = wall0 + time.time() - started
            row.update(step=self.step, wall_s=round(self.wall, 1), step_s=round(time.time() - t0, 3))
            if self.step % cfg.validate_every == 0 or self.step == cfg.steps:
                row.update(self.validate())
                if row["val_mean_mm"] < self.best_val:
                    self.best_val = row["val_mean_mm"]
                    save_model(self.out / "best", self.model, self.card({k: v for k, v in row.items()
                                                                           if k.startswith("val_")}))
                self.log(f"step {self.step} val {row['val_mean_mm']:.3f} mm (prior alone "
                         f"{row['val_prior_mean_mm']:.3f}, pred code "
                         f"{row['val_pred_code_mean_mm']:.3f}) regions {row['val_region_acc']:.3f}")
            if fields is None:
                fields = ["step", "wall_s", "step_s", "loss", "rms_mm", "lr", "grad_norm", "target_vertices",
                          *LossWeights().__dict__.keys(), "val_mean_mm", "val_rms_mm", "val_pred_code_mean_mm",
                          "val_region_acc", "val_prior_mean_mm"]
                new = not log_path.exists()
                fh = log_path.open("a", newline="")
                writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
                if new:
                    writer.writeheader()
            writer.writerow(row)
            if self.step % 50 == 0:
                fh.flush()
                self.log(f"step {self.step} loss {row['loss']:.4f} rms {row['rms_mm']:.2f} mm "
                         f"{row['step_s']:.2f} s/step lr {row['lr']:.2e}")
            if time.time() - last_ckpt > cfg.checkpoint_minutes * 60 or self.step == cfg.steps:
                fh.flush()
                self.save()
                plot_log(log_path, self.out / "curve.png")
                last_ckpt = time.time()
            if cfg.max_minutes and (time.time() - started) > cfg.max_minutes * 60:
                self.log("time limit reached")
                break
            self.pool.get(int(self.step // cfg.refresh_every) % cfg.pool_size, self.step)  # refresh one slot
        if fields is not None:
            fh.flush()
        self.save()
        plot_log(log_path, self.out / "curve.png")


def truncate_log(log_path: Path, last_step: int) -> None:
    """Drop log rows written after the checkpoint a run resumes from (they will be written again)."""
    if not log_path.exists():
        return
    rows = list(csv.DictReader(log_path.open()))
    if not rows or int(rows[-1]["step"]) <= last_step:
        return
    with log_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["step"]) <= last_step)


def plot_log(log_path: Path, png_path: Path) -> None:
    """Training curve: reconstruction RMS (mm) per step and validation mean error."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = list(csv.DictReader(log_path.open()))
    if not rows:
        return
    step = np.array([float(r["step"]) for r in rows])
    rms = np.array([float(r["rms_mm"]) for r in rows])
    fig, ax = plt.subplots(figsize=(7, 4))
    k = max(1, len(rms) // 200)
    smooth = np.convolve(rms, np.ones(k) / k, mode="valid")
    ax.plot(step[k - 1:], smooth, label="train RMS (mm, running mean)")
    val = [(float(r["step"]), float(r["val_mean_mm"])) for r in rows if r.get("val_mean_mm")]
    if val:
        ax.plot(*zip(*val), "o-", label="held-out mean error (mm)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
