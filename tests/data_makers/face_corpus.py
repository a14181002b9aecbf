"""Heads and non-faces for the face check (nfs.mesh.faceness) and its threshold.

Every builder returns (vertices (V, 3), faces (F, 3)) in ICT centimetres (+Y up, facing +Z); the callers move them
into a random user frame. Heads are built from ICT identities with the parts avatars carry:

- `avatar_head`: a Ready Player Me-like head: lips joined to a closed mouth bag, eye sockets closed behind separate
  eyeballs, upper and lower teeth rows and a tongue inside the bag;
- `with_hair_cards`, `with_hat`, `with_glasses`: any head plus strands of hair cards (more surface than the
  head), a hat (crown and brim), glasses (two rims, a bridge and temples);
- `on_body`: a head on a lofted torso with arms and legs, and a separate outfit shell.

Non-faces: `cube`, `sphere`, `torus`, `cylinder`, `hand` (a palm with five jointed fingers), `blob` (a lumpy
sphere), each about head-sized.
"""
from __future__ import annotations


import numpy as np
import trimesh

from nfs.data.artist import ArtistStyle, apply_style, feature_centres, find_openings
from nfs.geometry.openings import loop_fill
from nfs.ict import load_ict

def _bodies():
    """tests/data_makers/synthetic_bodies (imported as a package module, or beside this file as a script)."""
    try:
        from . import synthetic_bodies
    except ImportError:
        import synthetic_bodies
    return synthetic_bodies


def join(*meshes):
    """One mesh from several (vertices, faces) pairs, indices shifted."""
    vs, fs, n = [], [], 0
    for v, f in meshes:
        vs.append(np.asarray(v, np.float64))
        fs.append(np.asarray(f, np.int64) + n)
        n += len(v)
    return np.concatenate(vs), np.concatenate(fs)


def _identity(seed: int, sigma: float = 0.8) -> np.ndarray:
    return load_ict().sample_identities(1, seed=seed, sigma=sigma)[0]


def plain_head(seed: int = 3, eyes: bool = True):
    """An ICT identity's skin, with its two eyeballs as separate parts."""
    ict = load_ict()
    v, f = ict.full_mesh(_identity(seed)) if eyes else ict.skin_mesh(_identity(seed))
    return v.astype(np.float64), f


def _teeth_row(y: float, z_front: float, half_width: float, depth: float, height: float, n: int = 12):
    """Separate box teeth along a parabola (the dental arch), front tooth at z_front, in cm."""
    parts = []
    for x in np.linspace(-half_width, half_width, n):
        z = z_front - depth * (x / half_width) ** 2
        w = 2 * half_width / n * 0.85
        box = trimesh.creation.box(extents=(w, height, 0.6))
        box.apply_translation((x, y, z))
        parts.append((box.vertices, box.faces))
    return join(*parts)


def avatar_head(seed: int = 7):
    """A Ready Player Me-like head: joined lips into a closed mouth bag, sockets closed behind separate eyeballs,
    upper and lower teeth and a tongue (all separate parts)."""
    ict = load_ict()
    coeffs = _identity(seed)
    v = ict.vertices(coeffs).astype(np.float64)
    f = ict.region_faces("skin")
    full = ict.vertices(coeffs, n_vertices=len(ict.neutral)).astype(np.float64)
    basis = np.zeros((53, len(v), 3), np.float32)
    labels = np.zeros(len(v), np.int64)
    centres = feature_centres(v, ict.landmarks68)
    styled = apply_style(v, f, basis, labels, centres, ArtistStyle(mouth_bag=True))
    v2, f2 = styled.vertices.astype(np.float64), styled.faces
    loops = find_openings(v2, f2, centres)
    extra_v, extra_f = [v2], [f2]
    count = len(v2)
    for name in ("eye_L", "eye_R"):                       # the socket closed behind the eyeball
        if name in loops:
            pts, fs, _ = loop_fill(v2, loops[name], count, rings=3, offset=np.array([0.0, 0.0, -1.6]))
            extra_v.append(pts)
            extra_f.append(fs)
            count += len(pts)
    skin = (np.concatenate(extra_v), np.concatenate(extra_f))
    eyes = (full[ict.skin_count:], ict.eyeball_faces() - ict.skin_count)
    mouth = centres["mouth"]
    upper = _teeth_row(mouth[1] + 0.55, mouth[2] - 0.9, 2.2, 2.2, 0.9)
    lower = _teeth_row(mouth[1] - 0.6, mouth[2] - 1.1, 2.0, 2.0, 0.8)
    tongue = trimesh.creation.icosphere(2)
    tongue.apply_scale((1.8, 0.45, 2.2))
    tongue.apply_translation((0.0, mouth[1] - 0.9, mouth[2] - 3.0))
    return join(skin, eyes, upper, lower, (tongue.vertices, tongue.faces))


def _top_points(v: np.ndarray, count: int, rng) -> np.ndarray:
    """Indices of head vertices on the scalp (above the brows, not the face)."""
    scalp = np.nonzero((v[:, 1] > 5.0) | ((v[:, 2] < 2.0) & (v[:, 1] > -4.0)))[0]
    return rng.choice(scalp, size=min(count, len(scalp)), replace=False)


def hair_cards(head_v: np.ndarray, count: int = 260, seed: int = 0):
    """Strands of hair cards over the scalp and a fringe on the forehead: each a strip of quads 1.5-2.5 cm wide
    hanging from a scalp point, 0.4-1.2 cm off the skin, 8-18 cm long (far more surface than the head)."""
    rng = np.random.default_rng(seed)
    centre = np.array([0.0, 2.0, 0.0])
    parts = []
    for i in _top_points(head_v, count, rng):
        root = head_v[i]
        out = root - centre
        out /= np.linalg.norm(out)
        root = root + out * rng.uniform(0.4, 1.2)
        down = np.array([0.0, -1.0, 0.0]) + 0.3 * out
        down /= np.linalg.norm(down)
        side = np.cross(out, down)
        side /= max(np.linalg.norm(side), 1e-9)
        length = rng.uniform(8.0, 18.0) if root[2] < 6.0 else rng.uniform(3.0, 5.0)   # a short fringe in front
        width = rng.uniform(1.5, 2.5)
        segs = 4
        rows = [root + t * length * down + out * 0.8 * t * t for t in np.linspace(0, 1, segs + 1)]
        cv = np.concatenate([[r - side * width / 2, r + side * width / 2] for r in rows])
        cf = []
        for s in range(segs):
            a, b, c, d = 2 * s, 2 * s + 1, 2 * s + 2, 2 * s + 3
            cf += [[a, b, c], [b, d, c]]
        parts.append((cv, np.array(cf)))
    return join(*parts)


def hat(head_v: np.ndarray):
    """A hat: a closed crown sitting on the head's top and a wide brim."""
    top = head_v[:, 1].max()
    crown = trimesh.creation.cylinder(radius=10.5, height=9.0, sections=48)
    crown.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    crown.apply_translation((0.0, top + 1.5, -1.0))
    brim = trimesh.creation.annulus(r_min=10.4, r_max=17.0, height=0.4, sections=48)
    brim.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    brim.apply_translation((0.0, top - 2.5, -1.0))
    return join((crown.vertices, crown.faces), (brim.vertices, brim.faces))


def glasses(head_v: np.ndarray):
    """Glasses in front of the eyes: two rims (tori), a bridge and two temples reaching back past the ears."""
    ict = load_ict()
    lm = head_v[ict.landmarks68]
    eye_l, eye_r = lm[42:48].mean(0), lm[36:42].mean(0)
    z = max(eye_l[2], eye_r[2]) + 1.6
    parts = []
    for eye in (eye_l, eye_r):
        rim = trimesh.creation.torus(major_radius=2.3, minor_radius=0.18, major_sections=40, minor_sections=8)
        rim.apply_translation((eye[0], eye[1], z))
        parts.append((rim.vertices, rim.faces))
    tube = _bodies().tube
    parts.append(tube(np.array([eye_r[0] + 2.2, eye_r[1] + 0.5, z]), np.array([eye_l[0] - 2.2, eye_l[1] + 0.5, z]),
                      0.15, n=8, rings=3))
    for eye, side in ((eye_l, 1), (eye_r, -1)):
        start = np.array([eye[0] + side * 2.3, eye[1] + 0.3, z])
        parts.append(tube(start, np.array([side * 7.6, eye[1] + 0.3, z - 11.0]), 0.15, n=8, rings=6))
    return join(*parts)


def on_body(head):
    """The head on a lofted torso (one surface, as a welded head and body read) with arms and legs, and a separate
    outfit shell around the torso."""
    v, f = head
    ict = load_ict()
    n_skin = ict.skin_count
    skin_v, skin_f = v[:n_skin], f[(f < n_skin).all(1)]
    body_v, body_f = _bodies().full_body(skin_v, skin_f)
    rest = f[~(f < n_skin).all(1)]
    whole = join((body_v, body_f), (v[n_skin:], rest - n_skin))
    top = skin_v[:, 1].min() - 8.0
    shirt = trimesh.creation.cylinder(radius=19.0, height=45.0, sections=40)
    shirt.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    shirt.apply_scale((1.0, 1.0, 0.75))
    shirt.apply_translation((0.0, top - 22.5, 0.0))
    return join(whole, (shirt.vertices, shirt.faces))


def avatar_on_body(seed: int = 7):
    """The avatar head with its separate parts, on a body with an outfit."""
    ict = load_ict()
    v, f = avatar_head(seed)
    # the avatar's skin is ICT's skin followed by the added bag and caps: loft the body from the ICT neck loop
    skin_f = f[(f < ict.skin_count).all(1)]
    body_v, body_f = _bodies().full_body(v[:ict.skin_count], skin_f)
    extra = body_v[ict.skin_count:]
    new_f = body_f[~(body_f < ict.skin_count).all(1)]
    new_f = np.where(new_f >= ict.skin_count, new_f - ict.skin_count + len(v), new_f)
    whole_v = np.concatenate([v, extra])
    whole_f = np.concatenate([f, new_f])
    top = v[:ict.skin_count, 1].min() - 8.0
    shirt = trimesh.creation.cylinder(radius=19.0, height=45.0, sections=40)
    shirt.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    shirt.apply_scale((1.0, 1.0, 0.75))
    shirt.apply_translation((0.0, top - 22.5, 0.0))
    return join((whole_v, whole_f), (shirt.vertices, shirt.faces))


# ----------------------------------------------------------------------------- non-faces


def cube():
    box = trimesh.creation.box(extents=(20.0, 20.0, 20.0)).subdivide().subdivide()
    return box.vertices, box.faces


def sphere():
    s = trimesh.creation.icosphere(4, radius=11.0)
    return s.vertices, s.faces


def torus():
    t = trimesh.creation.torus(major_radius=10.0, minor_radius=3.5)
    return t.vertices, t.faces


def cylinder():
    c = trimesh.creation.cylinder(radius=5.0, height=30.0, sections=48)
    return c.vertices, c.faces


def blob(seed: int = 0):
    """A lumpy sphere: an icosphere pushed in and out by a few random smooth bumps."""
    rng = np.random.default_rng(seed)
    s = trimesh.creation.icosphere(4, radius=10.0)
    v = s.vertices.copy()
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    radius = np.ones(len(v))
    for _ in range(8):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        radius += rng.uniform(-0.25, 0.35) * np.exp(-((1 - u @ d) / 0.15) ** 2)
    return u * 10.0 * radius[:, None], s.faces


def hand():
    """A hand about 19 cm long: a flattened palm with five fingers of three tubes each, slightly curled."""
    tube = _bodies().tube
    palm = trimesh.creation.icosphere(3)
    palm.apply_scale((4.5, 5.0, 1.6))
    parts = [(palm.vertices, palm.faces)]
    bases = [(-3.3, 3.8), (-1.1, 4.6), (1.1, 4.7), (3.2, 4.2)]
    lengths = [(3.2, 2.2, 1.8), (3.8, 2.6, 2.0), (3.6, 2.4, 1.9), (2.8, 2.0, 1.6)]
    for (x, y), segs in zip(bases, lengths):
        p, angle = np.array([x, y, 0.0]), 0.0
        for length in segs:
            angle += 0.25
            q = p + length * np.array([0.0, np.cos(angle), np.sin(angle)])
            parts.append(tube(p, q, 0.85, n=10, rings=4))
            p = q
    p = np.array([-4.2, -1.0, 0.3])
    for length, direction in ((3.0, (-0.8, 0.6, 0.3)), (2.4, (-0.5, 0.85, 0.4))):
        d = np.array(direction) / np.linalg.norm(direction)
        q = p + length * d
        parts.append(tube(p, q, 1.0, n=10, rings=4))
        p = q
    return join(*parts)


def faces_corpus() -> dict:
    """name -> builder of every head of the corpus."""
    return {
        "ict head": lambda: plain_head(3),
        "avatar head (closed mouth bag, sockets, teeth)": lambda: avatar_head(7),
        "avatar on a body with an outfit": lambda: avatar_on_body(7),
        "head with hair cards": lambda: _with(plain_head(4), hair_cards),
        "head with a hat": lambda: _with(plain_head(5), hat),
        "head with glasses": lambda: _with(plain_head(6), glasses),
        "avatar with hair, hat and glasses": lambda: _with(_with(_with(avatar_head(8), hair_cards), hat), glasses),
    }


def non_faces_corpus() -> dict:
    return {"cube": cube, "sphere": sphere, "torus": torus, "cylinder": cylinder, "hand": hand, "blob": blob}


def _with(head, part):
    v, f = head
    return join((v, f), part(v))
