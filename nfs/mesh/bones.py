"""Which bone carries each part of a head: the skin that moves with the jaw or stays with the skull, and how
each secondary component (teeth, gums, tongue, eyes, lashes...) is bound, all decided in the ICT frame (cm,
+Y up, facing +Z) after alignment.

Bindings are per-vertex weights over four motions (columns of the (n, 4) weight arrays):

* ``SKIN``  the non-rigid displacement of the nearest skin (for vertices that touch the skin, e.g. the rim of
  a mouth bag or an eye socket, so they stay attached);
* ``LOCAL`` the rigid fit of the skin around the component (any part, when there is no alignment);
* ``JAW``   the rigid fit of the chin skin (the ICT "chin" region: on ICT's own jawOpen its rigid fit moves
  the lower teeth within 9 % of their true motion): lower teeth, lower gums, tongue;
* ``SKULL`` the rigid fit of the skin that no expression moves (ICT vertices that move less than 0.2 mm over
  all 53 shapes; identity when a crop has too few): upper teeth and gums, eyeballs (their sockets).

Components inside the mouth follow the jaw below the occlusal plane and the skull above it: whole compact
components (one tooth, a row of teeth) by their centroid, large ones (a bag holding gums and tongue) per vertex
with a smooth blend across the plane. Small parts lying on the skin that expressions move (lashes, brows, an eye
occlusion shell) follow that skin vertex by vertex (role "skin"). Everything else stays still (role "still"):
hair cards, hats, glasses, ears or a scalp modelled apart, a body or an outfit.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy.spatial import cKDTree

from nfs.mesh.parts import EYE_HINT, NO_HINT, STILL_HINT

SKIN, LOCAL, JAW, SKULL = range(4)
JAW_REGIONS = ("chin",)
SKULL_MAX_MOTION_CM = 0.02      # ICT skin that no expression moves more than this
ANCHOR_MATCH_CM = 1.5           # a user skin vertex takes the role of the nearest ICT skin vertex this close
MIN_ANCHORS = 8
OCCLUSAL_Y_CM = -3.1            # ICT: upper teeth centroids -2.0..-2.5, lower -3.7..-4.4
BLEND_BAND_CM = 0.5             # half width of the jaw/skull blend across the occlusal plane
COMPACT_HEIGHT_CM = 3.2         # a mouth component shorter than this (a tooth with its root) moves whole
MOUTH_BOX_CM = ((-3.8, 3.8), (-6.5, -0.5), (1.0, 11.5))
ATTACH_CM = 0.6                 # vertices this close to the skin blend towards its own motion...
TOUCH_FRACTION = 0.3            # ...when a non-rigid component (a mouth bag) touches the skin (closer than this
                                # fraction of the skin's mean edge length): its rim stays on the lips
EYE_RADIUS_CM = (0.7, 2.0)      # an eyeball: a sphere of this radius...
EYE_CENTRE_CM = 1.5             # ...centred this close to an ICT eyeball centre...
EYE_SPHERE_RMS = 0.12           # ...with radial residuals below this fraction of its radius
HUG_CM = 0.3                    # a part lies on the skin: HUG_SHARE of its vertices are this close to it (the
HUG_SHARE = 0.3                 # root of a row of lashes, a brow, an eye occlusion shell; hair cards float off it)
HUG_EXTENT_CM = 8.0             # ...it is no larger than this (a brow, a row of lashes)...
HUG_MOVING_SHARE = 0.5          # ...and at least this share of the skin under it is skin that expressions move
MOVING_CM = 0.3                 # by this much or more (lids, brows, lips, cheeks, chin)


@functools.lru_cache(maxsize=1)
def ict_bone_skin() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ICT neutral skin (S, 3) cm, jaw mask (S,), skull mask (S,), eyeball centres (2, 3) cm)."""
    from nfs.ict import load_ict
    from nfs.regions import REGION_NAMES, ict_region_labels

    ict = load_ict()
    s = ict.skin_count
    skin = np.asarray(ict.neutral[:s], np.float64)
    labels = ict_region_labels()
    jaw = np.isin(labels, [REGION_NAMES.index(r) for r in JAW_REGIONS])
    motion = np.linalg.norm(ict.expression_deltas[:, :s], axis=-1).max(0)
    skull = motion < SKULL_MAX_MOTION_CM
    eyes = np.asarray(ict.neutral[s:], np.float64)
    left = eyes[:, 0] > 0
    centres = np.stack([eyes[left].mean(0), eyes[~left].mean(0)]) if len(eyes) else np.zeros((0, 3))
    return skin, jaw, skull, centres


def anchor_sets(skin_ict: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Indices into the user's skin (S_user, 3 in the ICT frame) of the jaw and skull anchors; None where
    fewer than MIN_ANCHORS match (a crop without a chin or without a scalp)."""
    ict_skin, jaw, skull, _ = ict_bone_skin()
    dist, nn = cKDTree(ict_skin).query(skin_ict)
    near = dist < ANCHOR_MATCH_CM
    out = []
    for mask in (jaw, skull):
        idx = np.nonzero(near & mask[nn])[0]
        out.append(idx.astype(np.int64) if len(idx) >= MIN_ANCHORS else None)
    return out[0], out[1]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _sphere_fit(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Least-squares sphere (centre (3,), radius, rms radial residual) through points (n, 3)."""
    a = np.c_[2.0 * points, np.ones(len(points))]
    b = (points ** 2).sum(1)
    sol = np.linalg.lstsq(a, b, rcond=None)[0]
    centre = sol[:3]
    radius = float(np.sqrt(max(sol[3] + centre @ centre, 0.0)))
    rms = float(np.sqrt(np.mean((np.linalg.norm(points - centre, axis=1) - radius) ** 2)))
    return centre, radius, rms


def is_eyeball(points_ict: np.ndarray) -> bool:
    """A sphere (or spherical cap: an iris) of eyeball size centred near one of ICT's eyeball centres."""
    _, _, _, centres = ict_bone_skin()
    if len(points_ict) < 12 or not len(centres):
        return False
    centre, radius, rms = _sphere_fit(points_ict)
    near = np.linalg.norm(centres - centre, axis=1).min() < EYE_CENTRE_CM
    return bool(near and EYE_RADIUS_CM[0] <= radius <= EYE_RADIUS_CM[1] and rms < EYE_SPHERE_RMS * radius)


def inside_mouth(points_ict: np.ndarray, skin_ict: np.ndarray) -> bool:
    """The component's centroid lies in the mouth box, behind the skin in front of it."""
    c = points_ict.mean(0)
    if not all(lo <= c[i] <= hi for i, (lo, hi) in enumerate(MOUTH_BOX_CM)):
        return False
    front = skin_ict[(np.abs(skin_ict[:, 0] - c[0]) < 1.0) & (np.abs(skin_ict[:, 1] - c[1]) < 1.0)]
    return bool(len(front) and front[:, 2].max() > c[2] + 0.3)


def component_weights(points_ict: np.ndarray, skin_ict: np.ndarray, skin_edge_cm: float,
                      have_jaw: bool = True, hint: int = NO_HINT) -> tuple[np.ndarray, str]:
    """(n, 4) weights over SKIN, LOCAL, JAW, SKULL for one component's vertices (n, 3, ICT frame), and its
    role: "jaw", "skull", "mouth" (blended per vertex), "eye", "skin" (lies on moving skin: follows it) or
    "still" (all weights zero: hair, hat, glasses, anything else). `hint`: what the part's names say
    (`nfs.mesh.parts.name_hint`): an eye part is an eye even when it is no sphere (a VRoid eye white), a hair,
    hat, glasses, body or clothes part stays still even when it lies on moving skin; inside the mouth the
    geometry decides."""
    n = len(points_ict)
    w = np.zeros((n, 4))
    dist, nearest = cKDTree(skin_ict).query(points_ict)
    if have_jaw and inside_mouth(points_ict, skin_ict):
        y = points_ict[:, 1]
        if np.ptp(y) < COMPACT_HEIGHT_CM:
            role = "jaw" if y.mean() < OCCLUSAL_Y_CM else "skull"
            w[:, JAW if role == "jaw" else SKULL] = 1.0
        else:
            role = "mouth"
            w[:, JAW] = _smoothstep((OCCLUSAL_Y_CM + BLEND_BAND_CM - y) / (2 * BLEND_BAND_CM))
            w[:, SKULL] = 1.0 - w[:, JAW]
    elif hint == EYE_HINT or (hint != STILL_HINT and is_eyeball(points_ict)):
        role = "eye"
        w[:, SKULL] = 1.0
    elif hint != STILL_HINT and lies_on_moving_skin(points_ict, skin_ict[nearest], dist):
        role = "skin"
        w[:, SKIN] = 1.0
    else:
        role = "still"
    if role == "mouth" and dist.min() < TOUCH_FRACTION * skin_edge_cm:   # a bag attached to the lips
        stick = np.clip(1.0 - dist / ATTACH_CM, 0.0, 1.0)
        w *= (1.0 - stick)[:, None]
        w[:, SKIN] += stick
    return w.astype(np.float32), role


def lies_on_moving_skin(points_ict: np.ndarray, skin_below: np.ndarray, dist_cm: np.ndarray) -> bool:
    """A small part lying on skin that expressions move (lashes, brows, an eye occlusion shell): points (n, 3) in
    the ICT frame, the nearest user skin point of each (n, 3) and the distance to it (n,) cm."""
    if np.quantile(dist_cm, HUG_SHARE) > HUG_CM or np.ptp(points_ict, axis=0).max() > HUG_EXTENT_CM:
        return False
    ict_skin, _, _, _ = ict_bone_skin()
    d, nn = cKDTree(ict_skin).query(skin_below)
    matched = d < ANCHOR_MATCH_CM
    return bool(matched.any() and (ict_skin_motion()[nn[matched]] >= MOVING_CM).mean() >= HUG_MOVING_SHARE)


@functools.lru_cache(maxsize=1)
def ict_skin_motion() -> np.ndarray:
    """(S,) the largest displacement (cm) of each ICT skin vertex over the 53 expressions."""
    from nfs.ict import load_ict

    ict = load_ict()
    return np.linalg.norm(ict.expression_deltas[:, :ict.skin_count], axis=-1).max(0)
