"""Faces modelled the way artists and scanners model them, made from ICT identities with exact ground truth: a lip
slit (the mouth modelled slightly open), eye holes with the lids apart, a mouth bag behind the lips, lips or lids
joined into one surface (closed mouth, closed eyes), and stylised proportions (eyes, mouth, nose scaled).

The ICT deltas are linear, so a re-posed neutral keeps them: a slit bakes jawOpen into the rest shape and the ICT
expression shapes stay the truth. Lids modelled apart bake a negative blink into the rest and scale the blink shapes
so that a blink still closes the eye (what an artist's rig of that head does). Added geometry (bags, caps) carries
the displacements of the loop it is attached to, interpolated towards the loop's mean (`loop_fill`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nfs.data.warps import FeatureScaleWarp, push_through
from nfs.geometry.openings import boundary_loops, carry_into_fill, loop_fill, loop_halves
from nfs.ict import EXPRESSION_NAMES

JAW = EXPRESSION_NAMES.index("jawOpen")
BLINKS = (EXPRESSION_NAMES.index("eyeBlink_L"), EXPRESSION_NAMES.index("eyeBlink_R"))
MOUTH_BAG_DEPTH_CM = 2.5
EYE_SOCKET_DEPTH_CM = 1.2


@dataclass
class ArtistStyle:
    """How a face departs from ICT's modelling. Zero / False everywhere is the plain ICT face."""

    rest_jaw: float = 0.0            # jawOpen baked into the rest shape: a lip slit (0.05-0.25 typical)
    lids_apart: float = 0.0          # -eyeBlink baked into the rest (0.2-0.4): eye holes wider, blink still closes
    mouth_bag: bool = False          # a bag behind the mouth opening, attached to the inner lips
    bag_cavity_cm: float = 0.0       # the bag's upper and lower halves bulge this far apart (a mouth cavity)
    join_lips: bool = False          # the mouth opening capped: one surface, lips joined
    join_lids: bool = False          # the eye openings capped: closed eyes modelled as skin
    eye_sockets: bool = False        # a closed socket behind each eye hole (a game head's eyeballs sit in it)
    feature_scales: tuple = ()       # (eyes, mouth, nose) scale factors about their centres, e.g. 0.7-1.6
    flatten: float = 1.0             # depth (z) of the whole head scaled by this about the face's front (anime: < 1)

    @property
    def is_plain(self) -> bool:
        return self == ArtistStyle()


def random_style(rng: np.random.Generator, real_heads: bool = False) -> ArtistStyle:
    """A random artist-like style: slit (+ lids apart, + bag), joined lips / lids, or stylised proportions. With
    `real_heads`, half of the styles are the heads people bring that ICT models least like (`real_head_style`)."""
    if real_heads and rng.random() < 0.5:
        return real_head_style(rng)
    u = rng.random()
    if u < 0.35:
        return ArtistStyle(rest_jaw=float(rng.uniform(0.05, 0.25)),
                           lids_apart=float(rng.uniform(0.2, 0.4)) if rng.random() < 0.6 else 0.0,
                           mouth_bag=bool(rng.random() < 0.5))
    if u < 0.55:
        return ArtistStyle(join_lips=bool(rng.random() < 0.7), join_lids=bool(rng.random() < 0.7) or False)
    scales = tuple(float(x) for x in rng.uniform(0.7, 1.6, 3))
    return ArtistStyle(rest_jaw=float(rng.uniform(0.0, 0.2)) if rng.random() < 0.5 else 0.0, feature_scales=scales)


def real_head_style(rng: np.random.Generator) -> ArtistStyle:
    """A head ICT models least like: anime-like proportions (big eyes, small mouth and nose, a flatter face; half
    the time), a game head (lips over a closed mouth bag with a cavity, closed eye sockets) or lips modelled closed
    (a quarter each)."""
    u = rng.random()
    if u < 0.5:
        scales = (float(rng.uniform(1.3, 1.6)), float(rng.uniform(0.55, 0.75)), float(rng.uniform(0.5, 0.75)))
        return ArtistStyle(feature_scales=scales, flatten=float(rng.uniform(0.75, 0.9)))
    if u < 0.75:
        return ArtistStyle(mouth_bag=True, bag_cavity_cm=float(rng.uniform(1.0, 2.0)), eye_sockets=True)
    return ArtistStyle(join_lips=True)


def feature_centres(ict_vertices: np.ndarray, landmarks68: np.ndarray) -> dict[str, np.ndarray]:
    """Centres (3,) cm of the left and right eye, the mouth and the nose from the 68 landmarks of an ICT mesh."""
    lm = ict_vertices[landmarks68]
    return {"eye_L": lm[42:48].mean(0), "eye_R": lm[36:42].mean(0), "mouth": lm[60:68].mean(0),
            "nose": lm[[27, 28, 29, 30, 31, 33, 35]].mean(0)}


def feature_warp(centres: dict[str, np.ndarray], scales: tuple) -> FeatureScaleWarp:
    """Eyes scaled by scales[0] (x, y), the mouth by scales[1] (x, y), the nose by scales[2] (y, z) about their
    centres, each inside a plateau whose fall-off widens with the scaling so the warp never folds."""
    e, m, n = scales
    mats = [np.diag([e, e, 1.0]), np.diag([e, e, 1.0]), np.diag([m, m, 1.0]), np.diag([1.0, n, n])]
    inner = np.array([1.2, 1.2, 2.0, 1.5])
    spread = np.array([abs(e - 1), abs(e - 1), abs(m - 1), abs(n - 1)])
    outer = inner * (2.5 + 4.0 * spread)
    keys = ("eye_L", "eye_R", "mouth", "nose")
    return FeatureScaleWarp(np.stack([centres[k] for k in keys]).astype(np.float64), inner, outer,
                            np.stack(mats) - np.eye(3)[None])


def find_openings(vertices: np.ndarray, faces: np.ndarray, centres: dict[str, np.ndarray],
                  max_distance_cm: float = 1.5) -> dict[str, np.ndarray]:
    """The boundary loop of the mouth and of each eye (the loop whose centroid is nearest the feature centre,
    within max_distance_cm), by name."""
    out = {}
    loops = boundary_loops(faces)
    for name in ("mouth", "eye_L", "eye_R"):
        best = None
        for loop in loops:
            d = np.linalg.norm(vertices[loop].mean(0) - centres[name])
            if d < max_distance_cm and (best is None or d < best[0]):
                best = (d, loop)
        if best is not None:
            out[name] = best[1]
    return out


@dataclass
class StyledMesh:
    """A face mesh in an artist style: vertices (V, 3) cm, faces (F, 3), ground-truth basis (53, V, 3), labels
    (V,), and `n_original`: vertices before that number are the input mesh's, the rest were added (bag, caps)."""

    vertices: np.ndarray
    faces: np.ndarray
    basis: np.ndarray
    labels: np.ndarray
    n_original: int


def apply_style(vertices: np.ndarray, faces: np.ndarray, basis: np.ndarray, labels: np.ndarray,
                centres: dict[str, np.ndarray], style: ArtistStyle) -> StyledMesh:
    """Re-pose, warp and re-model the openings of a face mesh in the ICT frame (vertices (V, 3) cm, faces (F, 3),
    ground-truth basis (53, V, 3), region labels (V,)); `centres` from `feature_centres` of the same identity."""
    v = np.asarray(vertices, np.float64).copy()
    b = np.asarray(basis, np.float32).copy()
    f = np.asarray(faces, np.int64)
    loops = find_openings(v, f, centres)            # found on the rest shape ICT models (lips touching)
    v += style.rest_jaw * b[JAW]
    for k in BLINKS:
        v -= style.lids_apart * b[k]
        b[k] *= np.float32(1.0 + style.lids_apart)
    if style.feature_scales:
        warp = feature_warp(centres, style.feature_scales)
        b = push_through(warp.jacobian(v), b)
        v = warp.apply(v)
    if style.flatten != 1.0:        # a linear map: its Jacobian carries every delta alike
        front = float(v[:, 2].max())
        v[:, 2] = front + style.flatten * (v[:, 2] - front)
        b[..., 2] *= np.float32(style.flatten)
    new_v, new_f, new_b, new_l = [v], [f], [b], [np.asarray(labels)]
    count = len(v)

    def add(loop, rings, offset, close, spread=None):
        nonlocal count
        pts, fs, w = loop_fill(v, loop, count, rings=rings, offset=offset, close=close, spread=spread)
        nearest = loop[np.argmax(w[:, :-1], axis=1)] if w.shape[1] > 1 else loop[:len(pts)]
        new_v.append(pts)
        new_f.append(fs)
        new_b.append(carry_into_fill(b, loop, w))
        new_l.append(np.asarray(labels)[nearest])
        count += len(pts)

    if "mouth" in loops and (style.mouth_bag or style.join_lips):
        if style.mouth_bag:
            spread = None
            if style.bag_cavity_cm:
                upper, lower = loop_halves(v, loops["mouth"], np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
                up = np.isin(loops["mouth"], upper).astype(float) - np.isin(loops["mouth"], lower)
                spread = np.outer(up, [0.0, 0.5 * style.bag_cavity_cm, 0.0])
            add(loops["mouth"], 4, np.array([0.0, 0.0, -MOUTH_BAG_DEPTH_CM]), True, spread)
        else:
            add(loops["mouth"], 3, None, True)
    if style.join_lids:
        for name in ("eye_L", "eye_R"):
            if name in loops:
                add(loops[name], 3, np.array([0.0, 0.0, 0.25]), True)
    elif style.eye_sockets:
        for name in ("eye_L", "eye_R"):
            if name in loops:
                add(loops[name], 3, np.array([0.0, 0.0, -EYE_SOCKET_DEPTH_CM]), True)
    return StyledMesh(np.concatenate(new_v).astype(np.float32), np.concatenate(new_f),
                      np.concatenate(new_b, axis=1).astype(np.float32), np.concatenate(new_l), len(v))
