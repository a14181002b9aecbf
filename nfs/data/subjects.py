"""Training / evaluation subjects: an ICT identity, optionally warped, on some discretization of a skin region,
with everything a training step needs precomputed (operators, render, labels, expression basis)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nfs.data.artist import ArtistStyle, apply_style, feature_centres, random_style
from nfs.data.warps import push_through, random_rbf_warp
from nfs.geometry.operators import Operators, compute_operators
from nfs.geometry.remesh import identity_embedding, random_discretization
from nfs.geometry.surface import SurfaceEmbedding
from nfs.ict import ICTFaceModel, N_IDENTITY
from nfs.prior import template_expression_basis
from nfs.regions import ict_region_labels
from nfs.render import render_normal_depth

# Identity seeds >= HELD_OUT_SEED_BASE are reserved for evaluation and never used in training.
HELD_OUT_SEED_BASE = 1_000_000
TRAIN_SEED_LIMIT = HELD_OUT_SEED_BASE
GENERIC_SEED = 2**40  # the mean face used by the blendshape-reconstruction loss
ARTIST_FRACTION = 0.5  # share of training subjects modelled like artist heads (`nfs.data.artist`)


@dataclass
class SubjectSpec:
    """How a subject is made; fully determined by `seed` when drawn with `draw_spec`."""

    seed: int
    id_coeffs: np.ndarray      # (100,)
    region: str = "skin"       # skin / face / narrow_face
    target_vertices: int = 0   # 0 = the ICT topology itself
    subdivide: bool = False
    warp: bool = False
    rigid_jitter: bool = True
    kind: str = "normal"       # identity family, for reports
    style: ArtistStyle = field(default_factory=ArtistStyle)  # lip slit, lids apart, bag, joined, proportions


@dataclass
class Subject:
    spec: SubjectSpec
    vertices: np.ndarray       # (V, 3) neutral, cm, ICT frame
    faces: np.ndarray          # (F, 3)
    expression_basis: np.ndarray  # (53, V, 3) displacement per unit FACS weight (through the warp, if any)
    labels: np.ndarray         # (V,) region labels
    ops: Operators
    image: np.ndarray          # (4, S, S) float16 normal/depth render
    embedding: SurfaceEmbedding = field(repr=False)
    is_ict_identity: bool = True  # False when warped: z_ID has no ICT ground truth
    prior_basis: np.ndarray | None = None  # (53, V, 3) closest-point ICT basis (nfs.prior), as at inference

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)


def draw_spec(seed: int, rng_seed_offset: int = 0, real_heads: bool = False) -> SubjectSpec:
    """A random training subject recipe from a seed (identity family, crop, discretization, warp); `real_heads`:
    half of the artist-modelled subjects are heads ICT models least like (`random_style`)."""
    rng = np.random.default_rng([seed, rng_seed_offset])
    u = rng.random()
    if u < 0.55:
        kind, c = "normal", rng.standard_normal(N_IDENTITY)
    elif u < 0.75:
        kind, c = "wide", np.clip(rng.standard_normal(N_IDENTITY) * 1.8, -3, 3)
    elif u < 0.85:
        kind, c = "mean", np.zeros(N_IDENTITY)
    else:
        kind = "one_hot"
        c = np.zeros(N_IDENTITY)
        c[rng.integers(0, N_IDENTITY)] = rng.choice([-1, 1]) * rng.uniform(1.5, 3.0)
    region = rng.choice(["skin", "face", "narrow_face"], p=[0.5, 0.3, 0.2])
    r = rng.random()
    target = 0 if r < 0.08 else int(rng.integers(1200, 4200))
    subdivide = bool(target and rng.random() < 0.15)
    if subdivide:
        target //= 3
    # artist-like modelling on its own generator, so the recipes above stay what they were for every seed
    style_rng = np.random.default_rng([seed, rng_seed_offset, 3])
    style = random_style(style_rng, real_heads) if style_rng.random() < ARTIST_FRACTION else ArtistStyle()
    return SubjectSpec(seed=seed, id_coeffs=c.astype(np.float32), region=str(region), target_vertices=target,
                       subdivide=subdivide, warp=bool(rng.random() < 0.4), kind=kind, style=style)


def random_rotation(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    a = np.deg2rad(rng.uniform(-max_degrees, max_degrees))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def build_subject(ict: ICTFaceModel, spec: SubjectSpec, k_eig: int = 64, image_size: int = 256) -> Subject:
    """Materialise a subject: embed, warp, jitter, compute operators / render / labels."""
    rng = np.random.default_rng([spec.seed, 7])
    n = ict.region_vertex_count(spec.region)
    tmpl_f = ict.region_faces(spec.region)
    mean_v = ict.neutral[:n].astype(np.float64)
    if spec.target_vertices and spec.target_vertices < n:
        emb = random_discretization(mean_v, tmpl_f, spec.target_vertices, rng, jitter=0.15, subdivide=spec.subdivide)
    else:
        emb = identity_embedding(n, tmpl_f, tmpl_f)
    neutral = emb.apply(ict.vertices(spec.id_coeffs, None, n))
    basis = emb.apply(ict.expression_deltas[:, :n])
    faces = emb.faces
    labels = ict_region_labels()[emb.nearest_template_vertex()]
    if not spec.style.is_plain:
        centres = feature_centres(ict.vertices(spec.id_coeffs), ict.landmarks68)
        styled = apply_style(neutral, faces, basis, labels, centres, spec.style)
        neutral, faces, basis, labels = styled.vertices, styled.faces, styled.basis, styled.labels
    if spec.warp:
        warp = random_rbf_warp(neutral[: min(len(neutral), 6706)], rng)
        basis = push_through(warp.jacobian(neutral), basis)
        neutral = warp.apply(neutral)
    if spec.rigid_jitter:
        rot = random_rotation(rng, 3.0).astype(np.float32)
        s = np.float32(rng.uniform(0.97, 1.03))
        shift = rng.normal(0, 0.3, 3).astype(np.float32)
        neutral = (neutral @ rot.T) * s + shift
        basis = (basis @ rot.T) * s
    ops = compute_operators(neutral, faces, k_eig)
    image = render_normal_depth(neutral, faces, size=image_size).astype(np.float16)
    return Subject(spec, neutral.astype(np.float32), faces, basis.astype(np.float32), labels, ops, image, emb,
                   is_ict_identity=not (spec.warp or spec.style.feature_scales),
                   prior_basis=template_expression_basis(neutral, faces=faces))


def sample_expressions(rng: np.random.Generator, n: int, n_shapes: int = 53) -> np.ndarray:
    """(n, 53) FACS weights: 70% sparse (1-5 active shapes, weights in [0, 1]), 30% dense random."""
    w = np.zeros((n, n_shapes), np.float32)
    for i in range(n):
        if rng.random() < 0.7:
            k = rng.integers(1, 6)
            idx = rng.choice(n_shapes, k, replace=False)
            w[i, idx] = rng.uniform(0.1, 1.0, k)
        else:
            w[i] = rng.uniform(0, 1, n_shapes) * (rng.random(n_shapes) < rng.uniform(0.1, 0.5))
    return w

