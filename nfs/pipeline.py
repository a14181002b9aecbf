"""The retargeting pipeline shared by the app, the CLI and the tests.

prepare_target(mesh, model) -> PreparedTarget   (intake, cleaning, alignment, operators, render, encoders)
encode_source(clip, model)  -> SourceCodes      (per-frame expression codes; ICT clips need no encoder)
decode(target, codes) -> chunks of frames in the user's original vertex order, frame and units

The app and the eval reach nfs only through the pipeline, `nfs.io` and `nfs.export`; the names they need from
lower modules are re-exported here: the expression and region names (`EXPRESSION_NAMES`, `N_EXPRESSION`,
`REGION_NAMES`, `region_colors`), `Clip`, `Alignment`, `render_shaded` and the device helpers.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np
import torch

from nfs.arkit import ARKIT_NAMES, ict_to_arkit_shapes, ict_to_arkit_weights
from nfs.clips import WEIGHT_CEILING, Clip, apply_gain, smooth_codes
from nfs.geometry.normals import vertex_normals
from nfs.geometry.operators import Operators, get_operators
from nfs.ict import EXPRESSION_NAMES, N_EXPRESSION
from nfs.io.mesh import MeshError, RawMesh
from nfs.io.obj import corner_uv_table
from nfs.io.registry import load_mesh
from nfs.mesh.align import Alignment, align_to_ict
from nfs.mesh.binding import SecondaryBinding
from nfs.mesh.clean import CleanMesh, clean_mesh
from nfs.mesh.overrides import UP_AXES, compose_alignment  # noqa: F401 (UP_AXES: the choices of manual_alignment)
from nfs.model.checkpoint import load_model, weights_hash
from nfs.model.config import get_preset
from nfs.mesh.head import find_head, split_head
from nfs.mesh.parts import part_hints
from nfs.model.diffusion_net import operators_to_torch
from nfs.model.fast_decoder import FoldedDecoder
from nfs.model.network import NFSNetwork, TargetEncoding
from nfs.model.precision import describe_device, inference_dtype, model_autocast, resolve_device  # noqa: F401
from nfs.model.cpu_kernels import cpu_kernels_available, kernel_status  # noqa: F401  (the app warms the kernel)
from nfs.prior import fit_ict_weights, template_expression_basis
from nfs.regions import N_REGIONS, REGION_NAMES, region_colors  # noqa: F401 (the names: re-exported)
from nfs.render import render_normal_depth, render_shaded
from nfs.resources import SHIPPED_MODEL_DIR

if TYPE_CHECKING:
    from nfs.export import GlbInfo
    from nfs.morph_basis import MorphSequence

# below this face confidence (`nfs.mesh.faceness`: MediaPipe's face detector and landmarks on a render of the aligned
# head, or half the geometric fit's confidence when that is higher) a target is refused as not a face unless forced.
# tools/calibrate_face_threshold.py; docs/face_check.md lists the faces' and non-faces' confidences.
MIN_FACE_CONFIDENCE = 0.35
SEAM_CM = 3.0  # a body cut below the neck follows the head's displacement over this distance from the cut
Progress = Callable[[float, str], None]


def _no_progress(fraction: float, message: str) -> None:
    pass


@functools.lru_cache(maxsize=2)
def load_shipped_model(directory: str | None = None) -> tuple[NFSNetwork, dict]:
    """The trained model shipped in ckpts/ (safetensors + model card), loaded once."""
    path = Path(directory) if directory else SHIPPED_MODEL_DIR
    if not path.exists():
        raise FileNotFoundError(f"no trained model at {path}: train one with `python -m nfs train` "
                                "and copy runs/<name>/best there")
    return load_model(path)


def untrained_model(preset: str = "cpu") -> NFSNetwork:
    """A randomly initialised network of a preset (`nfs.model.config`), in eval mode: development without a
    checkpoint (the app's --random-init)."""
    return NFSNetwork(get_preset(preset, n_regions=N_REGIONS)).eval()


_DEVICE_COPIES: "weakref.WeakKeyDictionary[NFSNetwork, dict]" = weakref.WeakKeyDictionary()


def model_on(model: NFSNetwork, device: torch.device) -> NFSNetwork:
    """`model` itself when its weights are on `device`, else a copy moved there (made once per model and device),
    so a model shared by several sessions is never moved under another's feet."""
    if next(model.parameters()).device == device:
        return model
    copies = _DEVICE_COPIES.setdefault(model, {})
    if str(device) not in copies:
        copies[str(device)] = copy.deepcopy(model).to(device).eval()
    return copies[str(device)]


@dataclass
class PreparedTarget:
    """Everything decoding needs about one target mesh."""

    key: str
    name: str
    raw: RawMesh                 # the user's mesh as loaded (original order, units, UVs)
    clean: CleanMesh
    alignment: Alignment
    skin_vertices_ict: np.ndarray  # (S, 3) cm, ICT frame
    skin_faces: np.ndarray       # (Fs, 3)
    ops: Operators
    image: np.ndarray            # (4, 256, 256)
    encoding: TargetEncoding     # torch tensors, no grad
    decoder: FoldedDecoder       # the decoder folded for this target (fast per-frame decoding)
    region_labels: np.ndarray    # (S,) argmax of the skinning encoder's logits
    skinning_weights: np.ndarray  # (S, code_dim)
    binding: SecondaryBinding
    timings: dict = field(default_factory=dict)

    @property
    def n_vertices(self) -> int:
        """Vertices of the user's mesh (all components, original order)."""
        return self.raw.n_vertices

    def without_correction(self) -> "PreparedTarget":
        """This target decoded by the template prior alone (the network's learned correction off); regions and
        skinning weights are the network's as before. Its own cache key, so baked rigs do not mix."""
        return dataclasses.replace(self, key=self.key + ":prior", decoder=self.decoder.without_correction())

    def region_labels_original(self, fill: int = -1) -> np.ndarray:
        """(V_in,) predicted region per original vertex (nearest skin region for other components)."""
        nearest = np.asarray(self.binding.matrix.argmax(axis=1)).ravel()
        labels = self.region_labels[nearest]
        labels[np.asarray(self.binding.matrix.sum(1)).ravel() == 0] = fill
        return labels

    def summary(self) -> list[str]:
        a = self.alignment
        lines = list(self.clean.report.summary())
        lines.append(f"alignment: scale {a.scale:.4g} cm per unit, residual {a.residual_cm:.2f} cm, confidence "
                     f"{a.confidence:.2f}" + (f" (face check {a.face_score:.2f}, fit {a.fit_confidence:.2f})"
                                              if np.isfinite(a.face_score) else ""))
        if np.isfinite(a.coverage) and np.isfinite(a.face_coverage):
            kind = ("partial face" if a.face_coverage < 0.9 else "face only" if a.coverage < 0.6
                    else "head" if a.coverage < 0.9 else "whole head")
            lines.append(f"coverage: {kind}, {a.face_coverage:.0%} of the ICT face and {a.coverage:.0%} of its "
                         "head and neck")
        lines.append("prepare: " + ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items()))
        return lines


def manual_alignment(target: PreparedTarget, auto: Alignment, up: str = "auto", flip: bool = False,
                     scale_factor: float = 1.0) -> Alignment | None:
    """`auto` (the target's automatic alignment) with the user's overrides for its skin: `up` one of `UP_AXES`,
    `flip` a half turn about up, `scale_factor` times the scale; None when nothing is overridden."""
    return compose_alignment(auto, target.clean.skin_points, target.clean.skin_faces, up, flip, scale_factor)


class NotAFaceError(MeshError):
    """The target's automatic alignment is too unsure for it to be a face (`force=True` goes on anyway)."""


def check_face(alignment: Alignment, source: str = "", threshold: float = MIN_FACE_CONFIDENCE) -> None:
    """Refuse a target whose face confidence is below `threshold`, with a one-line message."""
    if alignment.confidence < threshold:
        name = f"{Path(source).name}: " if source else ""
        raise NotAFaceError(f"{name}this does not look like a face (face confidence {alignment.confidence:.2f}, "
                            f"below {threshold:.2f}); check the file, or force it (--force, or 'use anyway' in "
                            "the app)")


def content_key(raw: RawMesh, extra: str = "") -> str:
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(raw.vertices, np.float64).tobytes())
    h.update(np.ascontiguousarray(raw.faces, np.int64).tobytes())
    h.update(extra.encode())
    return h.hexdigest()[:16]


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


_PREPARED = _LRU(8)


def as_raw_mesh(mesh) -> RawMesh:
    """A path, a RawMesh or a (vertices, faces) pair -> RawMesh."""
    if isinstance(mesh, RawMesh):
        return mesh
    if isinstance(mesh, (str, Path)):
        return load_mesh(mesh)
    if isinstance(mesh, tuple) and len(mesh) == 2:
        v, f = np.asarray(mesh[0], np.float64), np.asarray(mesh[1], np.int64)
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
            raise MeshError("expected vertices (V, 3) and triangle faces (F, 3)")
        return RawMesh(v, f, np.arange(len(f)), source="array")
    raise MeshError(f"cannot read a mesh from {type(mesh).__name__}")


@torch.no_grad()
def prepare_target(mesh, model: NFSNetwork, *, alignment: Alignment | None = None,
                   progress: Progress = _no_progress, use_cache: bool = True, name: str = "",
                   device: str | torch.device = "auto", force: bool = False) -> PreparedTarget:
    """Intake, clean, align, operators, image feature, identity code and skinning weights of a target mesh.
    Cached by the mesh's content, the model's weights, the alignment override and the device, so the same upload
    is prepared once per model. `device`: auto (a CUDA GPU when there is one), cpu or cuda: where the encoders and
    the folded decoder run (bfloat16 on GPUs and on CPUs with native bfloat16, float32 elsewhere).

    The head is found on any mesh (`nfs.mesh.head.find_head`): only it goes through the network; a body below
    the neck stays still. A target whose face confidence (`nfs.mesh.faceness`) is below MIN_FACE_CONFIDENCE raises
    `NotAFaceError` unless `force`; a given `alignment` (fixed by hand) is never refused."""
    dev = resolve_device(device)
    timings = {}
    t = time.perf_counter()
    raw = as_raw_mesh(mesh)
    clean = clean_mesh(raw.vertices, raw.faces)
    timings["clean"] = time.perf_counter() - t
    key = content_key(raw, f"{weights_hash(model)}:{alignment.to_dict() if alignment else 'auto'}:{dev}")
    if use_cache and key in _PREPARED:
        _PREPARED.move_to_end(key)
        cached = _PREPARED[key]
        if alignment is None and not force:
            check_face(cached.alignment, raw.source)
        # same geometry: reuse the heavy work, but keep this upload's own name, file and UVs
        return dataclasses.replace(cached, raw=raw, name=name or Path(raw.source or "mesh").stem)
    progress(0.1, "aligning to the ICT frame")
    t = time.perf_counter()
    if alignment is None:
        alignment, clean = find_head(clean)
        if not force:
            check_face(alignment, raw.source)
    else:
        clean = split_head(clean, alignment)
    skin_v, skin_f = clean.skin_points, clean.skin_faces
    v_ict = alignment.apply(skin_v).astype(np.float32)
    timings["align"] = time.perf_counter() - t
    progress(0.4, "computing operators")
    t = time.perf_counter()
    ops = get_operators(v_ict, skin_f, model.cfg.k_eig)
    timings["operators"] = time.perf_counter() - t
    progress(0.7, "rendering and encoding")
    t = time.perf_counter()
    image = render_normal_depth(v_ict, skin_f, size=model.cfg.image_size)
    timings["render"] = time.perf_counter() - t
    t = time.perf_counter()
    prior = (torch.from_numpy(template_expression_basis(v_ict, faces=skin_f)) if model.cfg.template_prior
             else None)
    timings["prior"] = time.perf_counter() - t
    t = time.perf_counter()
    model = model_on(model.eval(), dev)
    with model_autocast(dev):
        ot = operators_to_torch(ops, model.cfg.k_eig).to(dev)
        enc = model.encode_target(torch.from_numpy(v_ict)[None].to(dev), ot, torch.from_numpy(image)[None].to(dev),
                                  None if prior is None else prior.to(dev))
    decoder = FoldedDecoder.build(model, enc, inference_dtype(dev))
    timings["encoders"] = time.perf_counter() - t
    t = time.perf_counter()
    binding = SecondaryBinding.build(clean, alignment, seam=SEAM_CM / alignment.scale,
                                     hints=part_hints(raw.parts, len(raw.vertices)))
    timings["binding"] = time.perf_counter() - t
    prepared = PreparedTarget(
        key=key, name=name or Path(raw.source or "mesh").stem, raw=raw, clean=clean, alignment=alignment,
        skin_vertices_ict=v_ict, skin_faces=skin_f, ops=ops, image=image, encoding=enc, decoder=decoder,
        region_labels=enc.logits[0].float().argmax(-1).cpu().numpy(),
        skinning_weights=enc.weights[0].float().cpu().numpy(),
        binding=binding, timings=timings)
    if use_cache:
        _PREPARED.put(key, prepared)
    progress(1.0, "target ready")
    return prepared


@dataclass
class SourceCodes:
    """Per-frame expression codes of a source clip."""

    name: str
    fps: float
    codes: np.ndarray     # (T, code_dim) z_GE; first 53 dims are ICT FACS weights
    source_kind: str      # codes / meshes

    @property
    def weights(self) -> np.ndarray:
        return self.codes[:, :N_EXPRESSION]

    @property
    def n_frames(self) -> int:
        return len(self.codes)


@torch.no_grad()
def encode_source(clip: Clip, model: NFSNetwork, *, smoothing_sigma: float = 0.0, gain=1.0,
                  chunk_frames: int = 16, mesh_encoder: str = "fit",
                  progress: Progress = _no_progress, device: str | torch.device = "auto") -> SourceCodes:
    """Expression codes for every frame of a clip. ICT coefficient clips are used as they are. Mesh sequences are
    aligned with their neutral's alignment, then either fitted with the ICT blendshapes carried to the source
    through closest points (`mesh_encoder="fit"`, bounded least squares, the default: more accurate than our
    CPU-trained expression encoder) or passed through the network's expression encoder ("network").
    Optional temporal Gaussian smoothing (sigma in frames, edge-padded) and per-shape gain. The network encoder
    runs on `device` (auto: a GPU when there is one)."""
    code_dim = model.cfg.code_dim
    if clip.kind == "codes":
        codes = np.zeros((clip.n_frames, code_dim), np.float32)
        codes[:, :N_EXPRESSION] = clip.codes
    else:
        if mesh_encoder not in ("fit", "network"):
            raise ValueError(f"mesh_encoder must be 'fit' or 'network', got {mesh_encoder!r}")
        codes = _encode_mesh_frames(clip, model_on(model, resolve_device(device)), chunk_frames, progress,
                                    fit=mesh_encoder == "fit")
    if smoothing_sigma > 0:
        codes = smooth_codes(codes, smoothing_sigma)
    if not np.isscalar(gain) or gain != 1.0:
        codes[:, :N_EXPRESSION] = apply_gain(codes[:, :N_EXPRESSION], gain)
    return SourceCodes(clip.name, clip.fps, codes.astype(np.float32), clip.kind)


def _encode_mesh_frames(clip: Clip, model: NFSNetwork, chunk_frames: int, progress: Progress,
                        fit: bool = True) -> np.ndarray:
    neutral = clip.neutral if clip.neutral is not None else clip.frames[0]
    clean = clean_mesh(neutral, clip.faces)
    keep = clean.skin_original_index
    align = align_to_ict(clean.skin_points, clean.skin_faces)
    n_ict = align.apply(clean.skin_points).astype(np.float32)
    if fit:
        basis = template_expression_basis(n_ict, faces=clean.skin_faces)
        codes = np.zeros((clip.n_frames, model.cfg.code_dim), np.float32)
        for start in range(0, clip.n_frames, 64):
            frames = clip.frames[start:start + 64][:, keep]
            disp = np.einsum("ij,tvj->tvi", align.rotation * align.scale, frames - np.asarray(neutral)[keep])
            codes[start:start + len(frames), :N_EXPRESSION] = fit_ict_weights(disp, basis)
            progress(min(1.0, (start + len(frames)) / clip.n_frames), "fitting source frames")
        return codes
    ops = get_operators(n_ict, clean.skin_faces, model.cfg.k_eig)
    chunks = (np.stack([align.apply(f[keep]) for f in clip.frames[start:start + chunk_frames]])
              for start in range(0, clip.n_frames, chunk_frames))
    return encode_expression_frames(model, chunks, clean.skin_faces, ops, clip.n_frames, progress)


@torch.no_grad()
def encode_expression_frames(model: NFSNetwork, chunks: Iterable[np.ndarray], faces: np.ndarray, ops: Operators,
                             n_frames: int | None = None, progress: Progress = _no_progress) -> np.ndarray:
    """The network's expression encoder on frames of one skin: chunks (t, S, 3) in the ICT frame (cm), all with the
    neutral's faces (F, 3) and operators -> codes (T, code_dim), the 53 FACS weights clipped to [0, 1].
    `n_frames` (the total, when known) scales the progress reports."""
    dev = next(model.parameters()).device
    ot = operators_to_torch(ops, model.cfg.k_eig).to(dev)
    out, done = [], 0
    for chunk in chunks:
        frames = np.asarray(chunk, np.float32)
        normals = vertex_normals(frames, faces).astype(np.float32)
        images = np.stack([render_normal_depth(f, faces, model.cfg.image_size) for f in frames])
        with model_autocast(dev):
            z = model.encode_expression(torch.from_numpy(frames).to(dev), torch.from_numpy(normals).to(dev), ot,
                                        torch.from_numpy(images).to(dev))
        out.append(z.float().cpu().numpy())
        done += len(frames)
        if n_frames:
            progress(min(1.0, done / n_frames), "encoding source frames")
    codes = np.concatenate(out)
    codes[:, :N_EXPRESSION] = np.clip(codes[:, :N_EXPRESSION], 0.0, 1.0)
    return codes


@torch.no_grad()
def decode_skin(target: PreparedTarget, codes: np.ndarray, chunk_frames: int | None = None) -> Iterator[np.ndarray]:
    """Skin displacements in the ICT frame (cm), chunks of (t, S, 3), by the decoder folded for this target (on
    its device; default chunks: 4 frames on the CPU, 64 on a GPU, decoded there 32 at a time)."""
    if chunk_frames is None:
        chunk_frames = 4 if target.decoder.device.type == "cpu" else 64
    for start in range(0, len(codes), chunk_frames):
        z = torch.from_numpy(np.ascontiguousarray(codes[start:start + chunk_frames], np.float32))
        yield target.decoder(z).cpu().numpy()


def decode(target: PreparedTarget, codes: np.ndarray, chunk_frames: int | None = None) -> Iterator[np.ndarray]:
    """Animated positions of the user's whole mesh, chunks of (t, V_in, 3), in its original vertex order,
    frame and units (the inverse alignment applied); other components follow the skin."""
    base = target.raw.vertices.astype(np.float32)
    for disp in decode_skin(target, codes, chunk_frames):
        user = target.alignment.inverse_vectors(disp.reshape(-1, 3)).reshape(disp.shape).astype(np.float32)
        yield base[None] + target.binding.displacements(base, user)


def decode_all(target: PreparedTarget, codes: np.ndarray) -> np.ndarray:
    """(T, V_in, 3) all frames at once (short clips and tests)."""
    return np.concatenate(list(decode(target, codes)))


def rig_shapes(target: PreparedTarget, progress: Progress = _no_progress) -> tuple[np.ndarray, np.ndarray]:
    """Bake the network into a linear rig on the user's mesh: neutral (V_in, 3) = decode(0) and the 53 shape
    deltas (53, V_in, 3) = decode(e_k) - decode(0), in the user's units."""
    codes = np.zeros((N_EXPRESSION + 1, target.decoder.code_dim), np.float32)
    codes[1:, :N_EXPRESSION] = np.eye(N_EXPRESSION)
    chunks = []
    for chunk in decode(target, codes):
        chunks.append(chunk)
        done = sum(len(c) for c in chunks)
        progress(done / len(codes), f"{done}/{len(codes)} shapes")
    frames = np.concatenate(chunks)
    return frames[0], frames[1:] - frames[0][None]


# --------------------------------------------------------------------------------------------------------------
# one call from a mesh and a clip to files: used by the app, the CLI and the tests

EXPORT_KINDS = ("obj_zip", "glb", "rig", "mp4", "avatar")   # avatar: the input glTF / VRM back, with ARKit targets
# The MP4 preview is drawn by the CPU software renderer (about 10-20 frames/s at 2 x 320 px on 2 cores), so by
# default it is only written for takes up to this many frames; asking for "mp4" explicitly writes it at any length.
PREVIEW_DEFAULT_MAX_FRAMES = 600
GLB_TOLERANCE_MM = 0.1   # default bound on the animated GLB's error against the decoded frames


def default_exports(n_frames: int, gltf_target: bool = False) -> tuple[str, ...]:
    """Every export, less the MP4 preview for takes longer than PREVIEW_DEFAULT_MAX_FRAMES, and the avatar export
    only for a glTF / VRM target (`gltf_target`)."""
    return tuple(k for k in EXPORT_KINDS if (k != "mp4" or n_frames <= PREVIEW_DEFAULT_MAX_FRAMES)
                 and (k != "avatar" or gltf_target))


def preview_note(n_frames: int) -> str:
    """Why the default leaves the MP4 preview out for a take of `n_frames` ('' when it does not)."""
    if n_frames <= PREVIEW_DEFAULT_MAX_FRAMES:
        return ""
    return (f"MP4 preview not written by default for takes over {PREVIEW_DEFAULT_MAX_FRAMES} frames (this one has "
            f"{n_frames}; the preview renders at ~10-20 frames/s): choose it explicitly to get it")


@dataclass
class RetargetResult:
    target: PreparedTarget
    source: SourceCodes
    sequence: "MorphSequence"    # every decoded frame as morph weights (within its max_error), user frame and units
    exports: dict                # kind -> Path
    rig_error_mm: float | None   # mean distance between the baked linear rig and the network on this clip
    timings: dict
    glb: "GlbInfo | None" = None  # what the animated GLB holds (morph targets, max error)
    notes: list = field(default_factory=list)  # what the user should know (exports left out, resampling)
    device: str = "cpu"
    rig: tuple | None = None     # (neutral (V_in, 3), deltas (53, V_in, 3)) when the rig was exported

    def frames(self) -> "MorphSequence":
        """The animated positions (T, V_in, 3) as an array-like (indexing reconstructs frames): the decoded frames
        to within `sequence.max_error` (<= the GLB tolerance, 0.1 mm by default)."""
        return self.sequence

    @property
    def max_error_mm(self) -> float:
        return self.sequence.max_error * self.target.alignment.scale * 10.0

    def summary(self) -> list[str]:
        """Lines for the CLI and the app: frames, timings, exports and their accuracy."""
        lines = [f"{self.source.n_frames} frames at {self.source.fps:g} fps on {self.device}; "
                 + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items())]
        if self.glb is not None:
            lines.append(f"animated GLB: every frame on {self.glb.n_targets} morph target"
                         f"{'' if self.glb.n_targets == 1 else 's'}, max error "
                         f"{self.glb.max_error_mm:.4f} mm against the decoded frames (bound "
                         f"{self.glb.tolerance * self.target.alignment.scale * 10:.3g} mm)")
        if self.rig_error_mm is not None:
            lines.append(f"baked rig vs network on this clip: {self.rig_error_mm:.3f} mm mean")
        return lines + list(self.notes)


class StageProgress:
    """Reports a run made of stages as one progress bar: each stage owns a span of the bar, and every message
    gets the stage's time left, estimated from its own rate so far (`stage(name)` returns the callback the
    stage reports its own 0..1 fraction to)."""

    def __init__(self, progress: Progress, spans: dict):
        self.progress, self.spans = progress, spans
        self.started: dict = {}

    def stage(self, name: str) -> Progress:
        lo, hi = self.spans[name]
        self.started[name] = time.perf_counter()

        def report(fraction: float, message: str) -> None:
            fraction = min(max(float(fraction), 0.0), 1.0)
            elapsed = time.perf_counter() - self.started[name]
            eta = elapsed * (1.0 - fraction) / fraction if fraction > 0.01 and elapsed > 0.2 else None
            self.progress(lo + (hi - lo) * fraction, f"{message} · {format_eta(eta)}")

        return report


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating time left"
    if seconds < 1:
        return "under 1 s left"
    if seconds < 90:
        return f"about {seconds:.0f} s left"
    return f"about {seconds // 60:.0f} min {seconds % 60:02.0f} s left"


def uv_for_export(raw: RawMesh) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(uv, uv_faces) in the form the exporters take: per-vertex uv, or a uv table with per-corner indices."""
    if raw.uv is not None:  # never write NaN texture coordinates (a loader that left gaps: zeros)
        return np.nan_to_num(raw.uv, nan=0.0), None
    if raw.corner_uv is not None:
        return corner_uv_table(np.nan_to_num(raw.corner_uv, nan=0.0))
    return None, None


def template_skin() -> tuple[np.ndarray, np.ndarray]:
    """The ICT neutral skin every target is aligned to: vertices (S, 3) float64 cm and faces (F, 3)."""
    from nfs.ict import load_ict
    ict = load_ict()
    return np.asarray(ict.neutral[: ict.skin_count], np.float64), ict.region_faces("skin")


def source_preview_frames(source: SourceCodes, clip: Clip | None) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """frame index -> (vertices, faces) of the source to show beside the result (ICT generic face for codes)."""
    from nfs.ict import load_ict
    if clip is not None and clip.kind == "meshes":
        align = align_to_ict(clip.neutral if clip.neutral is not None else clip.frames[0], clip.faces)
        return lambda i: (align.apply(clip.frames[i]), clip.faces)
    ict = load_ict()
    faces = ict.region_faces("skin")
    return lambda i: (ict.vertices(None, source.weights[i]), faces)


# A run reports progress(fraction, "stage: detail") with the stage names below, in this order, each stage
# over its own span of the fraction; every loop reports at least once per chunk (<= 8 frames) or frame.
STAGE_NAMES = {"prepare": "preparing the target", "encode": "encoding the clip", "decode": "decoding frames",
               "obj_zip": "writing the OBJ zip", "glb": "writing the animated GLB",
               "rig": "baking the 52-shape ARKit rig", "avatar": "writing the avatar", "mp4": "rendering the preview MP4"}
_STAGE_WEIGHTS = {"prepare": 0.25, "encode": 0.05, "decode": 0.15, "obj_zip": 0.15, "glb": 0.1, "rig": 0.05,
                  "avatar": 0.05, "mp4": 0.25}


@dataclass
class _Span:
    name: str
    lo: float
    hi: float

    def report(self, progress: Progress, fraction: float, detail: str) -> None:
        f = self.lo + (self.hi - self.lo) * min(max(fraction, 0.0), 1.0)
        progress(f, f"{self.name}: {detail}" if detail else self.name)

    def sub(self, progress: Progress) -> Progress:
        """A progress callback for a step inside this stage (its messages become the detail)."""
        return lambda f, m: self.report(progress, f, m)


def run_stages(exports: tuple = EXPORT_KINDS) -> list[str]:
    """The stage names a `retarget` run with these exports reports, in order."""
    return [STAGE_NAMES[k] for k in _STAGE_WEIGHTS if k in ("prepare", "encode", "decode") or k in exports]


def _stage_spans(exports) -> dict[str, _Span]:
    keys = [k for k in _STAGE_WEIGHTS if k in ("prepare", "encode", "decode") or k in exports]
    total = sum(_STAGE_WEIGHTS[k] for k in keys)
    spans, lo = {}, 0.0
    for k in keys:
        hi = lo + _STAGE_WEIGHTS[k] / total
        spans[k] = _Span(STAGE_NAMES[k], lo, hi)
        lo = hi
    return spans


def retarget(target_mesh, clip: Clip, out_dir: str | Path, *, model: NFSNetwork,
             exports: tuple | None = None, smoothing_sigma: float = 0.0, gain=1.0,
             alignment: Alignment | None = None, code_offset: np.ndarray | None = None,
             progress: Progress = _no_progress, chunk_frames: int | None = None, video_size: int = 320,
             correction: bool = False, fps: float | None = None, device: str | torch.device = "auto",
             glb_tolerance_mm: float = GLB_TOLERANCE_MM, head_pose: bool = False,
             force: bool = False, visemes: bool = False, keep_existing_targets: bool = False) -> RetargetResult:
    """Prepare the target (or take `target_mesh` as it is when it is a `PreparedTarget`), encode the clip, decode
    every frame once into a compact morph basis (`nfs.morph_basis`,
    within `glb_tolerance_mm` of every decoded frame, held in memory: nothing but the exports is written to
    `out_dir`), then stream the chosen exports from it chunk by chunk (`exports`: a subset of EXPORT_KINDS; None:
    `default_exports`, which leaves the MP4 preview out of long takes). The animated GLB is the basis itself; the
    OBJ zip and the preview are its frames, within the same bound.

    `fps` resamples the clip (default: its own rate). `code_offset` (53,) or (T, 53) at the clip's own rate is added
    to the FACS weights (slider edits); with a template-prior model (the shipped one) positions come from the prior
    alone unless `correction=True` adds the network's learned correction (off by default: the prior alone is more
    accurate in every category of `python -m nfs eval`; the network's regions and skinning weights are used either
    way); `head_pose` applies
    a video clip's head motion to each decoded chunk (`nfs.video.pose`); `force` prepares a target that does not
    look like a face. `device`: auto, cpu or cuda. `progress(fraction, "stage: detail")` with the stage names of
    `run_stages(exports)`, in that order. The avatar export (`nfs.avatar_export`; the default for a glTF / VRM
    target) writes the input file back whole with the 52 ARKit targets (`visemes`: and the 15 Oculus visemes;
    `keep_existing_targets`: targets of those names already in the file are kept instead of replaced) and the clip
    as an animation of their weights."""
    from nfs.clips import resample_clip, resample_rows
    from nfs.export import ObjSequenceZipWriter, PreviewVideoWriter, export_animated_glb, export_rig_glb
    from nfs.morph_basis import MorphBasisBuilder

    dev = resolve_device(device)
    notes = []
    src_fps = clip.fps
    clip = resample_clip(clip, fps)
    if clip.fps != src_fps:
        notes.append(f"clip resampled from {src_fps:g} to {clip.fps:g} fps ({clip.n_frames} frames)")
    prepared = target_mesh if isinstance(target_mesh, PreparedTarget) else None   # (a batch shares one per target)
    target_mesh = prepared.raw if prepared is not None else as_raw_mesh(target_mesh)
    gltf_target = target_mesh.is_gltf
    if exports is None:
        exports = default_exports(clip.n_frames, gltf_target)
        if preview_note(clip.n_frames):
            notes.append(preview_note(clip.n_frames))
    exports = tuple(dict.fromkeys(exports))
    unknown = set(exports) - set(EXPORT_KINDS)
    if unknown:
        raise ValueError(f"unknown export kinds {sorted(unknown)}; choose from {', '.join(EXPORT_KINDS)}")
    if "avatar" in exports and not gltf_target:
        raise ValueError("the avatar export writes a glTF / GLB / VRM target back; this target is not one "
                         "(choose the rig or animated GLB instead)")
    if not (np.isfinite(glb_tolerance_mm) and glb_tolerance_mm > 0):
        raise ValueError(f"the GLB tolerance must be positive, got {glb_tolerance_mm}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spans = _stage_spans(exports)
    timings = {}
    t = time.perf_counter()
    spans["prepare"].report(progress, 0.0, "")
    if prepared is not None:
        target = prepared
    else:
        target = prepare_target(target_mesh, model, alignment=alignment, force=force,
                                progress=spans["prepare"].sub(progress), device=dev)
    if not correction and model.cfg.template_prior:   # without a template prior the network is the positions
        target = target.without_correction()
    timings["prepare"] = time.perf_counter() - t
    t = time.perf_counter()
    spans["encode"].report(progress, 0.0, "")
    source = encode_source(clip, model, smoothing_sigma=smoothing_sigma, gain=gain,
                           progress=spans["encode"].sub(progress), device=dev)
    if code_offset is not None:
        offset = np.asarray(code_offset, np.float32)
        if offset.ndim == 2 and clip.fps != src_fps:
            offset = resample_rows(offset, src_fps, clip.fps)[:source.n_frames]
        source.codes[:, :N_EXPRESSION] = np.clip(source.codes[:, :N_EXPRESSION] + offset, 0, WEIGHT_CEILING)
    timings["encode"] = time.perf_counter() - t

    n_frames = source.n_frames
    faces = target.raw.faces
    uv, uv_faces = uv_for_export(target.raw)
    stem = f"{target.name}_{source.name}".replace(" ", "_")
    neutral = target.raw.vertices.astype(np.float32)
    mm_per_unit = target.alignment.scale * 10.0
    basis = MorphBasisBuilder(neutral, glb_tolerance_mm / mm_per_unit)
    paths, rig_error = {}, None
    pose = head_pose_rows(clip, src_fps) if head_pose else None
    if pose is not None:
        from nfs.video.pose import apply_head_pose
    # frames the baked rig is compared on (a spread of 60), kept exactly as they are decoded
    rig_idx = np.linspace(0, n_frames - 1, min(60, n_frames)).astype(int) if "rig" in exports else np.zeros(0, int)
    rig_frames = {}
    t = time.perf_counter()
    done = 0
    span = spans["decode"]
    span.report(progress, 0.0, f"0/{n_frames} frames")
    for chunk in decode(target, source.codes, chunk_frames):
        if pose is not None:            # the video's head motion, on this chunk's own frames
            apply_head_pose(chunk, target.alignment, *(rows[done:done + len(chunk)] for rows in pose))
        basis.add(chunk)
        for i in rig_idx[(rig_idx >= done) & (rig_idx < done + len(chunk))]:
            rig_frames[int(i)] = chunk[i - done].copy()
        done += len(chunk)
        span.report(progress, 0.98 * done / n_frames, f"{done}/{n_frames} frames")
    span.report(progress, 0.98, f"{n_frames}/{n_frames} frames, finishing the morph basis")
    sequence = basis.finish()
    timings["decode"] = time.perf_counter() - t

    def chunks(span: "_Span", size: int = 8):
        """The frames in chunks, reporting each one as the writer asks for the next."""
        for s in range(0, n_frames, size):
            span.report(progress, s / n_frames, f"{s}/{n_frames} frames")
            yield sequence[s:s + size].astype(np.float32)
        span.report(progress, 1.0, f"{n_frames}/{n_frames} frames, finishing the file")

    if "obj_zip" in exports:
        t = time.perf_counter()
        paths["obj_zip"] = out / f"{stem}_obj.zip"
        with ObjSequenceZipWriter(paths["obj_zip"], faces, len(neutral), uv, uv_faces) as obj:
            for chunk in chunks(spans["obj_zip"]):
                obj.add(chunk)
        timings["obj_zip"] = time.perf_counter() - t
    glb = None
    if "glb" in exports:
        t = time.perf_counter()
        spans["glb"].report(progress, 0.0, f"every frame on {sequence.n_targets} morph targets")
        paths["glb"] = out / f"{stem}.glb"
        glb = export_animated_glb(paths["glb"], neutral, faces, sequence, source.fps, uv=uv, uv_faces=uv_faces,
                                  mm_per_unit=mm_per_unit, extras={"source": source.name, "target": target.name})
        spans["glb"].report(progress, 1.0, "written")
        timings["glb"] = time.perf_counter() - t
    rig = None
    if "rig" in exports:
        t = time.perf_counter()
        neutral_rig, deltas = rig_shapes(target, lambda f, m: spans["rig"].report(progress, 0.6 * f, m))
        spans["rig"].report(progress, 0.6, "writing the rig GLB")
        paths["rig"] = out / f"{target.name}_rig.glb"
        export_rig_glb(paths["rig"], neutral_rig, faces, ict_to_arkit_shapes(deltas), ARKIT_NAMES, uv=uv,
                       uv_faces=uv_faces)
        spans["rig"].report(progress, 0.9, "measuring the rig against the network")
        rig_error = linear_rig_error_mm(target, neutral_rig, deltas, source.weights[rig_idx],
                                        np.stack([rig_frames[int(i)] for i in rig_idx]))
        rig = (neutral_rig, deltas)
        timings["rig"] = time.perf_counter() - t
    if "avatar" in exports:
        t = time.perf_counter()
        span = spans["avatar"]
        if rig is None:
            rig = rig_shapes(target, lambda f, m: span.report(progress, 0.6 * f, m))
        span.report(progress, 0.6, "writing the avatar")
        suffix = ".vrm" if target.raw.source.lower().endswith(".vrm") else ".glb"
        paths["avatar"] = out / f"{stem}_avatar{suffix}"
        info = write_avatar(paths["avatar"], target, rig[1], source, visemes=visemes,
                            keep_existing=keep_existing_targets)
        notes += info.notes
        span.report(progress, 1.0, "written")
        timings["avatar"] = time.perf_counter() - t
    if "mp4" in exports:
        t = time.perf_counter()
        src_frame = source_preview_frames(source, clip)
        skin = target.clean.skin_original_index
        span = spans["mp4"]
        with PreviewVideoWriter(out / f"{stem}_preview.mp4", source.fps) as video:
            for i in range(n_frames):
                span.report(progress, i / n_frames, f"{i}/{n_frames} frames")
                sv, sf = src_frame(i)
                tv = target.alignment.apply(sequence[i][skin])
                video.add(np.concatenate([render_shaded(sv, sf, size=video_size),
                                          render_shaded(tv, target.skin_faces, size=video_size)], axis=1))
            span.report(progress, 1.0, f"{n_frames}/{n_frames} frames, finishing the file")
        paths["mp4"] = video.path    # the writer moved the finished file into place on closing
        timings["preview"] = time.perf_counter() - t
    progress(1.0, "done")
    return RetargetResult(target, source, sequence, paths, rig_error, timings, glb=glb, notes=notes,
                          device=str(dev), rig=rig)


def write_avatar(path, target: PreparedTarget, ict_shapes: np.ndarray, source: SourceCodes, *,
                 visemes: bool = False, keep_existing: bool = False):
    """The target's own glTF / VRM file back with the 52 ARKit targets made from the baked rig (`ict_shapes`
    (53, V_in, 3)) and the source's weights as an animation; tongueOut from a part named like a tongue (else
    zero, and said so). Returns `nfs.avatar_export.AvatarExportInfo`."""
    from nfs.avatar_export import export_avatar, tongue_out_shape
    shapes = ict_to_arkit_shapes(ict_shapes)
    forward = target.alignment.rotation.T @ np.array([0.0, 0.0, 1.0])     # the face's direction, user frame
    tongue, moved = tongue_out_shape(target.raw, forward)
    shapes[ARKIT_NAMES.index("tongueOut")] = tongue
    notes = [] if moved else ["tongueOut is present and empty: the avatar has no part named as a tongue"]
    raw = target.raw
    return export_avatar(path, raw.original, raw.source, raw, shapes, ict_to_arkit_weights(source.weights),
                         source.fps, visemes=visemes, keep_existing=keep_existing, clip_name=source.name,
                         notes=notes)


def head_pose_rows(clip: Clip, src_fps: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(rotations (T, 3, 3), translations (T, 3)) of a video clip's head motion at the clip's own rate (resampled
    from `src_fps`, the rate of its fit, when the clip was), or None for a clip without one."""
    fit = getattr(clip, "fit", None)
    if fit is None:
        return None
    rot, trans = np.asarray(fit.rotations, np.float64), np.asarray(fit.translations, np.float64)
    if abs(clip.fps - src_fps) > 1e-9:
        from nfs.clips import resample_rows
        rot = resample_rows(rot.reshape(len(rot), 9), src_fps, clip.fps).reshape(-1, 3, 3)
        u, _, vt = np.linalg.svd(rot)           # blended rotations back onto the nearest rotations
        rot = u @ vt
        trans = resample_rows(trans, src_fps, clip.fps)
    n = clip.n_frames
    if len(rot) < n:                             # never short of rows: the last pose holds
        rot = np.concatenate([rot, np.repeat(rot[-1:], n - len(rot), 0)])
        trans = np.concatenate([trans, np.repeat(trans[-1:], n - len(trans), 0)])
    return rot[:n], trans[:n]


def linear_rig_error_mm(target: PreparedTarget, neutral: np.ndarray, deltas: np.ndarray, weights: np.ndarray,
                        frames: np.ndarray) -> float:
    """Mean per-vertex distance (mm) on the skin between the baked linear rig with `weights` (n, 53) and the
    network's `frames` (n, V_in, 3)."""
    skin = target.clean.skin_original_index
    lin = neutral[None, skin] + np.einsum("tk,kvc->tvc", weights, deltas[:, skin])
    err_user = np.linalg.norm(lin - np.asarray(frames)[:, skin], axis=-1).mean()
    return float(err_user * target.alignment.scale * 10.0)
