"""Stylised proportions at the eyes: where a target's eyes are modelled bigger, smaller or moved against the ICT
face fitted to it (an artist's big eyes), the fitted face is warped locally about each eye opening so that its
opening meets the target's, and the expression deltas are pushed through the warp's Jacobian, so a blink closes a
bigger eye. An opening the fitted face already matches (any ICT identity, lids apart: the fit's rest pose takes
those) leaves the face as it is. The mouth could be met the same way, but is not (`WARPED_OPENINGS` says why).

The fit itself cannot do this: its identity modes do not make one feature 1.5x bigger, and its robust weights let
such a feature go rather than drag the face. So the openings' own boundary loops are matched corner to corner: the
width ratio scales the fitted face in the face plane about the fitted opening's corners' midpoint, and the shift of
that midpoint moves it (`OpeningWarp`), within a plateau the size of the opening and a Wendland fall-off, as
`nfs.data.warps.FeatureScaleWarp` models such a head."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nfs.geometry.falloff import plateau, plateau_gradient
from nfs.geometry.openings import boundary_loops

MIN_CHANGE = 0.06          # a width ratio within 1 +- this is taken as matched ...
MIN_SHIFT_CM = 0.1         # ... with its centre moved less than this
# Only the eyes are warped. Measured on the eval's stylised head (eyes 0.82, mouth 0.83, nose 1.6), warping the
# mouth too cut its inner-face error by a further 19 % but turned 84 more triangles over at the mouth corners (363 ->
# 447): ICT's mouth loop is the lips' contact line, and the corners' shift there mixes the mouth's proportions with
# the nose's and the jaw's.
WARPED_OPENINGS = ("eye_L", "eye_R")


@dataclass
class OpeningWarp:
    """x -> x + sum_k w_k(x) (A_k (x - c_k) + t_k), w_k = 1 within inner_k of the centre c_k, a Wendland fall-off
    to 0 at outer_k. centers (K, 3), inner (K,), outer (K,) cm, linear (K, 3, 3) = A_k, shift (K, 3) = t_k cm;
    `names` (K,) the openings."""

    names: tuple
    centers: np.ndarray
    inner: np.ndarray
    outer: np.ndarray
    linear: np.ndarray
    shift: np.ndarray

    def _parts(self, x: np.ndarray):
        """x (N, 3) -> offsets from the centres d (N, K, 3), weights w (N, K), each centre's motion (N, K, 3)."""
        d = np.asarray(x, np.float64)[:, None, :] - self.centers[None]
        w = plateau(np.linalg.norm(d, axis=-1), self.inner[None], self.outer[None])
        return d, w, np.einsum("kij,nkj->nki", self.linear, d) + self.shift[None]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) -> (N, 3) warped points, cm."""
        _, w, moved = self._parts(x)
        return x + np.einsum("nk,nki->ni", w, moved)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) -> (N, 3, 3): I + sum_k [w_k A_k + (A_k d_k + t_k) grad w_k^T]."""
        d, w, moved = self._parts(x)
        grad = plateau_gradient(d, self.inner[None], self.outer[None])               # (N, K, 3)
        return (np.eye(3)[None] + np.einsum("nk,kij->nij", w, self.linear)
                + np.einsum("nki,nkj->nij", moved, grad))


def _corners(points: np.ndarray, loop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The -x and +x extreme points (3,) of a loop: an opening's two corners."""
    x = points[loop, 0]
    return points[loop[int(np.argmin(x))]], points[loop[int(np.argmax(x))]]


def matching_loop(points: np.ndarray, target_loops: list, face: np.ndarray, face_loop: np.ndarray
                  ) -> np.ndarray | None:
    """The target's boundary loop (vertex indices into points (V, 3)) that is the fitted face's (S, 3) opening
    `face_loop`: centred within half the opening's size of it and 0.3-2 times as big, the nearest such; None if
    the target has none (an opening modelled closed)."""
    centre = face[face_loop].mean(0)
    size = float(np.linalg.norm(face[face_loop] - centre, axis=1).max())
    best = None
    for loop in target_loops:
        c = points[loop].mean(0)
        extent = float(np.linalg.norm(points[loop] - c, axis=1).max())
        gap = float(np.linalg.norm(c - centre))
        if gap < 0.5 * size and 0.3 * size < extent < 2.0 * size and (best is None or gap < best[0]):
            best = (gap, loop)
    return None if best is None else best[1]


def fit_opening_warp(points: np.ndarray, faces: np.ndarray, face: np.ndarray,
                     face_loops: dict[str, np.ndarray], openings: tuple = WARPED_OPENINGS) -> OpeningWarp | None:
    """The warp of the fitted face (S, 3) that takes each of its openings (`face_loops`: name -> loop vertex
    indices into face) onto the target's (points (V, 3) in the same frame, cm, faces (F, 3)), or None where
    every opening matches already or the target has none (lips or lids modelled closed)."""
    target_loops = boundary_loops(faces) if len(faces) else []
    names, centers, inner, outer, linear, shift = [], [], [], [], [], []
    for name, ict_loop in face_loops.items():
        if name not in openings:
            continue
        size = float(np.linalg.norm(face[ict_loop] - face[ict_loop].mean(0), axis=1).max())
        loop = matching_loop(points, target_loops, face, ict_loop)
        if loop is None:
            continue
        # corner to corner: the width of an opening is what an artist's proportions change, and it does not
        # depend on how far the lips or lids are apart (the fit's rest pose takes that)
        (fl, fr), (tl, tr) = _corners(face, ict_loop), _corners(points, loop)
        scale = float(np.linalg.norm(tr - tl) / max(np.linalg.norm(fr - fl), 1e-9))
        mid, moved = 0.5 * (fl + fr), 0.5 * (tl + tr) - 0.5 * (fl + fr)
        if abs(scale - 1.0) < MIN_CHANGE and float(np.linalg.norm(moved)) < MIN_SHIFT_CM:
            continue
        names.append(name)
        centers.append(mid)
        inner.append(size)
        outer.append(size * (2.5 + 4.0 * abs(scale - 1.0)))       # a wider fall-off for a bigger change
        linear.append(np.diag([scale - 1.0, scale - 1.0, 0.0]))
        shift.append(moved)
    if not names:
        return None
    return OpeningWarp(tuple(names), np.array(centers), np.array(inner), np.array(outer), np.array(linear),
                       np.array(shift))
