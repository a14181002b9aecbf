"""Target preparation: a user's mesh -> `PreparedTarget` (intake, cleaning, head finding and alignment, operators,
render, encoders, folded decoder, secondary binding), cached by content so an upload is prepared once per model."""
from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nfs.blas_threads import single_blas_thread
from nfs.geometry.operators import Operators
from nfs.geometry.proxy import SurfaceProxy
from nfs.io.mesh import MeshError, RawMesh
from nfs.io.registry import load_mesh
from nfs.mesh.align import Alignment
from nfs.mesh.binding import SecondaryBinding
from nfs.mesh.clean import CleanMesh, clean_mesh
from nfs.mesh.head import find_head, split_head
from nfs.mesh.mouth_cut import MouthCut, open_mouth_prior, open_target_mouth
from nfs.mesh.parts import part_hints
from nfs.mesh.overrides import compose_alignment
from nfs.model.checkpoint import weights_hash
from nfs.model.fast_decoder import LazyFoldedDecoder
from nfs.model.network import NFSNetwork, TargetEncoding
from nfs.model.precision import inference_dtype, resolve_device
from nfs.pipeline.models import model_on
from nfs.pipeline.network_inputs import LazyNetworkInputs
from nfs.prior import template_expression_basis
from nfs.prior.fold_guard import FrameGuard
from nfs.progress import Progress, no_progress

# below this face confidence (`nfs.mesh.faceness`: MediaPipe's face detector and landmarks on a render of the aligned
# head, or half the geometric fit's confidence when that is higher) a target is refused as not a face unless forced.
# tools/calibrate_face_threshold.py; docs/face_check.md lists the faces' and non-faces' confidences.
MIN_FACE_CONFIDENCE = 0.35
SEAM_CM = 3.0  # a body cut below the neck follows the head's displacement over this distance from the cut


@dataclass(frozen=True)
class TargetKey:
    """What a prepared target is known by: its preparation's cache key (the raw mesh's content, the model's weights,
    the alignment override and the device) and the decoding mode. Rigs baked from it are kept per key."""

    content: str
    correction: bool = True      # the network's learned correction on (False: the template prior alone)

    def __str__(self) -> str:
        return f"{self.content} ({'network correction' if self.correction else 'template prior'})"


@dataclass
class PreparedTarget:
    """Everything decoding needs about one target mesh."""

    key: TargetKey
    name: str
    raw: RawMesh                 # the user's mesh as loaded (original order, units, UVs)
    clean: CleanMesh
    alignment: Alignment
    skin_vertices_ict: np.ndarray  # (S, 3) cm, ICT frame
    skin_faces: np.ndarray       # (Fs, 3)
    network: LazyNetworkInputs   # operators, render and encoders, computed on first use (shared by copies)
    decoder: LazyFoldedDecoder   # the decoder folded for this target when the correction is first used
    binding: SecondaryBinding
    timings: dict = field(default_factory=dict)
    reused: bool = False         # this preparation came from the cache (nothing was computed again)
    mouth: MouthCut | None = None  # the mouth opened at intake (`open_mouth`): `raw` is the cut mesh
    frame_guard: FrameGuard | None = None  # mends triangles a mix of shapes turns over, frame by frame

    # the network's view of the target: computed when one of these is first read (the template prior, the default
    # decoding path, needs none of them), then kept
    @property
    def ops(self) -> Operators:
        """Spectral operators of the skin (of its proxy when it has one)."""
        return self.network.get().ops

    @property
    def image(self) -> np.ndarray:
        """(4, 256, 256) normal + depth render of the skin (of its proxy when it has one)."""
        return self.network.get().image

    @property
    def encoding(self) -> TargetEncoding:
        """The encoders' output, per skin vertex (torch tensors, no grad)."""
        return self.network.get().encoding

    @property
    def region_labels(self) -> np.ndarray:
        """(S,) argmax of the skinning encoder's logits."""
        return self.network.get().region_labels

    @property
    def skinning_weights(self) -> np.ndarray:
        """(S, code_dim) the network's skinning weights."""
        return self.network.get().skinning_weights

    @property
    def proxy(self) -> SurfaceProxy | None:
        """A dense skin's decimated stand-in (`ops` and `image` are the proxy's), None for a skin of few vertices."""
        return self.network.get().proxy

    @property
    def n_vertices(self) -> int:
        """Vertices of the user's mesh (all components, original order)."""
        return self.raw.n_vertices

    @property
    def correction(self) -> bool:
        """Whether decoding adds the network's learned correction to the template prior."""
        return self.key.correction

    def with_correction(self, on: bool) -> "PreparedTarget":
        """This target decoded with the network's learned correction `on` or off (the template prior alone);
        regions and skinning weights are the network's either way. The mode is part of the key, so baked rigs
        do not mix."""
        if on == self.key.correction:
            return self
        return dataclasses.replace(self, key=dataclasses.replace(self.key, correction=bool(on)),
                                   decoder=dataclasses.replace(self.decoder, correction=bool(on)))

    def without_correction(self) -> "PreparedTarget":
        """This target decoded by the template prior alone (`with_correction(False)`)."""
        return self.with_correction(False)

    def region_labels_original(self, fill: int = -1) -> np.ndarray:
        """(V_in,) predicted region per original vertex (nearest skin region for other components)."""
        nearest = np.asarray(self.binding.matrix.argmax(axis=1)).ravel()
        labels = self.region_labels[nearest]
        labels[np.asarray(self.binding.matrix.sum(1)).ravel() == 0] = fill
        return labels

    def summary(self) -> list[str]:
        """Intake report lines for the CLI and the app: what reading the file changed (the loader's and intake's
        notes: a decoded compression, an opened mouth), the cleaning, the alignment, the preparation's timings."""
        a = self.alignment
        lines = list(self.raw.notes) + list(self.clean.report.summary())
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
    """A short hash of a mesh's vertices and faces (and `extra`)."""
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
@single_blas_thread()        # small normal equations: a second BLAS thread only spins on a busy machine
def prepare_target(mesh, model: NFSNetwork, *, alignment: Alignment | None = None,
                   progress: Progress = no_progress, use_cache: bool = True, name: str = "",
                   device: str | torch.device = "auto", force: bool = False,
                   open_mouth: bool = False) -> PreparedTarget:
    """Intake, clean, align, operators, image feature, identity code and skinning weights of a target mesh.
    Cached by the mesh's content, the model's weights, the alignment override and the device, so the same upload
    is prepared once per model. `device`: auto (a CUDA GPU when there is one), cpu or cuda: where the encoders and
    the folded decoder run (bfloat16 on GPUs and on CPUs with native bfloat16, float32 elsewhere).

    The head is found on any mesh (`nfs.mesh.head.find_head`): only it goes through the network; a body below
    the neck stays still. A target whose face confidence (`nfs.mesh.faceness`) is below MIN_FACE_CONFIDENCE raises
    `NotAFaceError` unless `force`; a given `alignment` (fixed by hand) is never refused.

    `mesh` may be a PreparedTarget: it is returned as it is when `alignment` is None or its own, and prepared from
    its raw mesh with the new alignment otherwise (never prepared twice). The mesh is cleaned only when it is not
    found in the cache (the key hashes the raw content).

    `open_mouth`: a mouth modelled closed (the lips one surface) is cut open along the lip line, with a mouth
    interior (`nfs.mesh.mouth_cut`); the mesh's vertices keep their indices and positions, the new ones are
    appended (`raw` is the cut mesh, `mouth` says what was cut). Lips already apart are left as they are."""
    known_cut = None
    if isinstance(mesh, PreparedTarget):
        if alignment is None or alignment.to_dict() == mesh.alignment.to_dict():
            return mesh
        known_cut, open_mouth = mesh.mouth, open_mouth or mesh.mouth is not None
        mesh = mesh.raw
    dev = resolve_device(device)
    timings = {}
    raw = as_raw_mesh(mesh)
    key = content_key(raw, f"{weights_hash(model)}:{alignment.to_dict() if alignment else 'auto'}:{dev}"
                      + (":open-mouth" if open_mouth else ""))
    if use_cache and key in _PREPARED:
        _PREPARED.move_to_end(key)
        cached = _PREPARED[key]
        if alignment is None and not force:
            check_face(cached.alignment, raw.source)
        # same geometry: reuse the heavy work, but keep this upload's own name, file and UVs (a cut mesh: its own)
        name = name or Path(raw.source or "mesh").stem
        if cached.mouth is not None:
            return dataclasses.replace(cached, raw=dataclasses.replace(cached.raw, source=raw.source), name=name,
                                       reused=True)
        return dataclasses.replace(cached, raw=raw, name=name, reused=True)
    step = _prepare_steps(progress, len(raw.vertices))
    step("cleaning", "merging duplicate vertices, dropping degenerate faces")
    t = time.perf_counter()
    clean = clean_mesh(raw.vertices, raw.faces)
    timings["clean"] = time.perf_counter() - t
    step("aligning", "finding the head and aligning it to the ICT frame")
    t = time.perf_counter()
    if alignment is None:
        alignment, clean = find_head(clean, part_hints(raw.parts, len(raw.vertices)))
        if not force:
            check_face(alignment, raw.source)
    else:
        clean = split_head(clean, alignment)
    mouth = known_cut
    if open_mouth and known_cut is None:
        step("aligning", "opening the mouth along the lip line")
        raw, clean, mouth = open_target_mouth(raw, clean, alignment)
    skin_v, skin_f = clean.skin_points, clean.skin_faces
    v_ict = alignment.apply(skin_v).astype(np.float32)
    timings["align"] = time.perf_counter() - t
    step("template prior", "the 53 ICT expressions carried onto the skin")
    t = time.perf_counter()
    prior, frame_guard = None, None
    if model.cfg.template_prior:
        # the opened lips each follow their own lip, the interior hangs from both
        if mouth is not None:
            basis, frame_guard = open_mouth_prior(v_ict, skin_f, mouth.on_skin(clean), with_frame_guard=True)
        else:
            basis, frame_guard = template_expression_basis(v_ict, faces=skin_f, with_frame_guard=True)
        prior = torch.from_numpy(basis).to(dev)
    timings["prior"] = time.perf_counter() - t
    # operators, render and encoders (regions, skinning weights, the correction) wait until something asks
    model = model_on(model.eval(), dev)
    network = LazyNetworkInputs(model, v_ict, skin_f, prior, dev, timings)
    decoder = LazyFoldedDecoder(model, network.encoding, prior, len(v_ict), dev, inference_dtype(dev))
    step("binding", "parts that follow the skin (eyes, teeth, hair, body)")
    t = time.perf_counter()
    binding = SecondaryBinding.build(clean, alignment, seam=SEAM_CM / alignment.scale,
                                     hints=part_hints(raw.parts, len(raw.vertices)))
    timings["binding"] = time.perf_counter() - t
    prepared = PreparedTarget(
        key=TargetKey(key), name=name or Path(raw.source or "mesh").stem, raw=raw, clean=clean, alignment=alignment,
        skin_vertices_ict=v_ict, skin_faces=skin_f, network=network, decoder=decoder, binding=binding,
        timings=timings, mouth=mouth, frame_guard=frame_guard)
    if use_cache:
        _PREPARED.put(key, prepared)
    progress(1.0, "target ready")
    return prepared


# The steps of a preparation, in order, with their share of its time (measured on 10k-1M heads: the template prior
# dominates); a step's progress starts where the shares before it end. The network's operators, render and encoders
# are not among them: they run when first needed (`nfs.pipeline.network_inputs`).
PREPARE_STEPS = (("cleaning", 0.05), ("aligning", 0.35), ("template prior", 0.55), ("binding", 0.05))
PREPARE_STAGES = [name for name, _ in PREPARE_STEPS]


def _prepare_steps(progress: Progress, n_vertices: int):
    """A callback ``step(name, detail)`` reporting the start of each step of PREPARE_STEPS to `progress` as
    ``"name: detail (V vertices)"`` at the fraction the steps before it take."""
    starts, at = {}, 0.0
    for name, share in PREPARE_STEPS:
        starts[name], at = at, at + share

    def step(name: str, detail: str) -> None:
        progress(starts[name] / at, f"{name}: {detail} ({n_vertices:,} vertices)")

    return step


def template_skin() -> tuple[np.ndarray, np.ndarray]:
    """The ICT neutral skin every target is aligned to: vertices (S, 3) float64 cm and faces (F, 3)."""
    from nfs.ict import load_ict
    ict = load_ict()
    return np.asarray(ict.neutral[: ict.skin_count], np.float64), ict.region_faces("skin")
