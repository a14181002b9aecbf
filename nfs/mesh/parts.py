"""What the parts of a multi-part avatar say about where its face is, before any alignment.

Avatars (Ready Player Me, VRoid, game characters) carry their eyeballs as separate meshes: two spheres of the same
size side by side, about four diameters apart. Such a pair marks the eye centres, hence where the face is and how
big it is, whatever else the file holds (a body, an outfit, hair cards with more surface than the head, a hat,
glasses). `eye_pair` finds it among a cleaned mesh's components (no names needed); `head_around_eyes` cuts the
piece of the skin around it (the component that wraps the eyeballs, within a head's reach of them) for the
alignment. Part names (``EyeLeft``, ``Wolf3D_Head``, VRM's ``firstPerson`` annotations) are hints the caller may
add; they are never required.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from nfs.geometry.triangle_math import triangle_areas
from nfs.mesh.clean import CleanMesh, face_components

SPHERE_RMS = 0.12               # an eyeball: radial residuals of its sphere fit below this share of its radius
MIN_EYE_VERTICES = 12
RADIUS_RATIO = 1.2              # the two eyeballs' radii agree within this factor
EYE_DISTANCE_RADII = (2.8, 7.0)  # eye centre distance over eyeball radius (ICT: 6.39 cm / 1.50 cm = 4.3)
ICT_EYE_DISTANCE_CM = 6.39      # ICT's eyeball centres are this far apart
HEAD_REACH_CM = 22.0            # the head piece: skin within this many ICT cm of the eyes' midpoint
WRAP_RADII = 2.2                # the skin wraps an eyeball: it passes within this many radii of its centre


@dataclass
class EyePair:
    """Two separate eyeball parts: their component vertex index arrays, centres (2, 3) and mean radius, in the
    mesh's units. `centres[0]` and `centres[1]` are in no particular left/right order."""

    components: tuple[np.ndarray, np.ndarray]
    centres: np.ndarray
    radius: float

    @property
    def distance(self) -> float:
        return float(np.linalg.norm(self.centres[0] - self.centres[1]))

    @property
    def midpoint(self) -> np.ndarray:
        return self.centres.mean(0)

    @property
    def cm_per_unit(self) -> float:
        """ICT centimetres per mesh unit, from the eye distance."""
        return ICT_EYE_DISTANCE_CM / max(self.distance, 1e-300)


def sphere_fit(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Least-squares sphere through points (n, 3): centre (3,), radius, RMS radial residual."""
    p = np.asarray(points, np.float64)
    shift = p.mean(0)
    q = p - shift
    a = np.c_[2.0 * q, np.ones(len(q))]
    sol = np.linalg.lstsq(a, (q ** 2).sum(1), rcond=None)[0]
    centre = sol[:3]
    radius = float(np.sqrt(max(sol[3] + centre @ centre, 0.0)))
    rms = float(np.sqrt(np.mean((np.linalg.norm(q - centre, axis=1) - radius) ** 2)))
    return centre + shift, radius, rms


def eye_pair(clean: CleanMesh, hints: np.ndarray | None = None) -> EyePair | None:
    """The pair of separate sphere-like components (eyeballs, or sclera and iris shells sharing a centre) of equal
    size at an eye distance, whose surroundings hold a skin that wraps both; None when there is no such pair.
    `hints` (V_in,): name hints of the input vertices (`part_hints`); components named as eyes count as eyes even
    when they are no spheres (a VRoid eye white): their centroid and half their extent stand for centre and
    radius."""
    labels, n = face_components(len(clean.vertices), clean.faces)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n + 1))
    spheres, named = [], []                        # (label, centre, radius, members)
    for label in range(n):
        members = order[bounds[label]:bounds[label + 1]]
        if len(members) < MIN_EYE_VERTICES:
            continue
        centre, radius, rms = sphere_fit(clean.vertices[members])
        extent = np.ptp(clean.vertices[members], axis=0).max()
        # a whole ball or a cap (an iris, a cornea): round, and no larger than its sphere
        if radius > 0 and rms < SPHERE_RMS * radius and extent <= 2.2 * radius:
            spheres.append((label, centre, radius, members))
        if hints is not None and np.bincount(hints[clean.original_index[members]]).argmax() == EYE_HINT:
            named.append((label, clean.vertices[members].mean(0), 0.5 * extent, members))
    return _best_pair(clean, labels, spheres) or _best_pair(clean, labels, named)


def _best_pair(clean: CleanMesh, labels: np.ndarray, spheres: list) -> EyePair | None:
    """Among candidate eyes (label, centre, radius, members): the pair of equal size at an eye distance wrapped by
    one skin; the biggest such pair (a head's eyes, not a toy's)."""
    if len(spheres) < 2:
        return None
    # spheres sharing a centre (sclera + iris + cornea) are one eye: keep the largest of each cluster
    spheres = sorted(spheres, key=lambda s: -s[2])
    eyes = []
    for s in spheres:
        if all(np.linalg.norm(s[1] - e[1]) > 0.5 * e[2] for e in eyes):
            eyes.append(s)
    best = None
    for i in range(len(eyes)):
        for j in range(i + 1, len(eyes)):
            a, b = eyes[i], eyes[j]
            if max(a[2], b[2]) > RADIUS_RATIO * min(a[2], b[2]):
                continue
            r = 0.5 * (a[2] + b[2])
            d = np.linalg.norm(a[1] - b[1]) / r
            if not EYE_DISTANCE_RADII[0] <= d <= EYE_DISTANCE_RADII[1]:
                continue
            pair = EyePair((a[3], b[3]), np.stack([a[1], b[1]]), float(r))
            if _wrapping_skin(clean, pair, labels, exclude={a[0], b[0]}) is None:
                continue
            if best is None or r > best.radius:
                best = pair
    return best


def _wrapping_skin(clean: CleanMesh, pair: EyePair, labels: np.ndarray, exclude: set) -> int | None:
    """The component label of the skin that wraps both eyeballs: the largest-area component (other than the eyes
    and parts sharing their centres) passing within WRAP_RADII radii of both centres, or None."""
    near_cents = []
    tree = cKDTree(clean.vertices)
    for c in pair.centres:
        idx = tree.query_ball_point(c, WRAP_RADII * pair.radius)
        near_cents.append(set(labels[idx].tolist()) - exclude)
    common = near_cents[0] & near_cents[1]
    if not common:
        return None
    area = np.bincount(labels[clean.faces[:, 0]], weights=triangle_areas(clean.vertices, clean.faces),
                       minlength=labels.max() + 1)
    eye_radius_area = 4 * np.pi * pair.radius ** 2
    common = [c for c in common if area[c] > 4 * eye_radius_area]      # not lashes or a cornea
    return max(common, key=lambda c: area[c]) if common else None


def head_around_eyes(clean: CleanMesh, pair: EyePair) -> tuple[np.ndarray, np.ndarray] | None:
    """Vertices and faces of the skin piece around an eye pair: the wrapping component's triangles within a head's
    reach (HEAD_REACH_CM, scaled by the eye distance) of the eyes' midpoint, the connected piece that wraps the
    eyes. None when there is none."""
    labels, _ = face_components(len(clean.vertices), clean.faces)
    skin = _wrapping_skin(clean, pair, labels, exclude={int(labels[pair.components[0][0]]),
                                                         int(labels[pair.components[1][0]])})
    if skin is None:
        return None
    reach = HEAD_REACH_CM / pair.cm_per_unit
    inside = np.linalg.norm(clean.vertices - pair.midpoint, axis=1) < reach
    faces = clean.faces[(labels[clean.faces[:, 0]] == skin) & inside[clean.faces].all(1)]
    if len(faces) == 0:
        return None
    piece, _ = face_components(len(clean.vertices), faces)
    used = np.unique(faces)
    nearest = used[np.argmin(np.linalg.norm(clean.vertices[used] - pair.centres[0], axis=1))]
    faces = faces[piece[faces[:, 0]] == piece[nearest]]
    used, compact = np.unique(faces, return_inverse=True)
    return clean.vertices[used], compact.reshape(-1, 3)


# ----------------------------------------------------------------------------- names as hints

NO_HINT, EYE_HINT, STILL_HINT = 0, 1, 2
EYE_WORDS = {"eye", "eyes", "eyeball", "eyeballs", "eyeleft", "eyeright", "iris", "sclera", "cornea", "pupil"}
STILL_WORDS = {"hair", "hairs", "hat", "cap", "helmet", "hood", "glass", "glasses", "eyewear", "spectacles", "body",
               "outfit", "top", "tops", "bottom", "bottoms", "footwear", "shoe", "shoes", "cloth", "clothes",
               "shirt", "jacket", "pants", "skirt", "dress", "accessory", "accessories", "earring", "necklace"}


def name_words(name: str) -> list[str]:
    """Lower-case words of a mesh, node or material name: split at non-letters and camel case
    ("Wolf3D_Hair" -> wolf, d, hair; "N00_000_00_EyeIris_00_EYE" -> n, eye, iris, eye)."""
    import re

    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+", name)]


def name_hint(*names: str) -> int:
    """What a part's names suggest: EYE_HINT (an eyeball, iris, eye white), STILL_HINT (hair, a hat, glasses,
    a body, clothes) or NO_HINT. Eye words win (a VRoid face mesh's eye primitives are named by material)."""
    words = {w for n in names if n for w in name_words(n)}
    if words & EYE_WORDS:
        return EYE_HINT
    if words & STILL_WORDS:
        return STILL_HINT
    return NO_HINT


def part_hints(parts, n_vertices: int) -> np.ndarray:
    """(n_vertices,) int8 name hint of every input vertex from the file's parts (`nfs.io.mesh.MeshPart`: its
    material, mesh and node names); NO_HINT where a file gives no names."""
    out = np.zeros(n_vertices, np.int8)
    for p in parts or ():
        hint = name_hint(getattr(p, "material_name", ""), getattr(p, "mesh_name", ""), getattr(p, "node_name", ""),
                         p.name if len(parts) > 1 else "")
        out[p.vertex_offset:p.vertex_offset + p.vertex_count] = hint
    return out
