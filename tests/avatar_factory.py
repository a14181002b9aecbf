"""Test avatars built from the ICT face model, shaped like the files people bring: a Ready Player Me-like GLB,
VRM 1.0 and VRM 0.x variants, and the same files compressed by the real npm encoders (gltfpack, gltf-transform).

`build_avatar(AvatarSpec(...))` returns an `Avatar` (the glTF JSON as a dict, its binary chunk, and what was put
in, for the tests to compare against); `write_avatar(path, ...)` writes it. The head is the ICT identity of
`assets/targets/ict_head_with_teeth.obj` (its skin, teeth, gums and tongue and eyeballs, ICT centimetres) in
metres at standing height, facing +Z (-Z for VRM 0.x, as UniVRM writes it):

- ``Wolf3D_Head``: the skin, lips joined to a closed mouth bag and eye sockets closed behind the eyeballs (or,
  with ``lips="open"``, an open lip slit and no bag), cylindrical UVs split at the back seam, skinned to
  Neck / Head, existing morph targets ``mouthOpen``, ``mouthSmile``, ``eyeBlinkLeft`` (from ICT shapes);
- ``Wolf3D_Teeth`` (two primitives: upper and lower teeth), ``Wolf3D_Tongue`` (gums and tongue), ``EyeLeft``,
  ``EyeRight`` (skinned to LeftEye / RightEye), ``Wolf3D_Hair`` (alpha-masked cards), ``Wolf3D_Glasses`` (an
  unskinned mesh under the Head bone, with its own translation), ``Wolf3D_Body`` and ``Wolf3D_Outfit_Top``
  (boxes skinned to a 24-joint Mixamo-named skeleton; the top has a ``breathe`` morph target);
- 7 materials, 6 small PNG / JPEG images, an ``Idle`` animation (head nod, spine sway).

Encoders: `gltfpack(src, dst, *flags)`, `gltf_transform(command, src, dst, *flags)` run the npm tools of the
repository's node_modules (`npm ci`); `encoders_missing()` says why they cannot run (the tests skip with it).
"""
from __future__ import annotations

import functools
import io
import json
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

ROOT = Path(__file__).resolve().parents[1]
HEAD_OBJ = ROOT / "assets" / "targets" / "ict_head_with_teeth.obj"
ICT_IDENTITY_SEED, ICT_IDENTITY_SIGMA = 5, 0.8    # the identity of HEAD_OBJ
CM = 0.01                                         # ICT centimetres -> metres
HEAD_OFFSET = np.array([0.0, 1.56, 0.0])          # where the ICT origin sits on the standing avatar (m)
NODE_BIN = ROOT / "node_modules" / ".bin"

FLOAT, UBYTE, USHORT, UINT = 5126, 5121, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963

# (name, parent, head position in metres); Mixamo / Ready Player Me names
SKELETON = [
    ("Hips", None, (0.0, 1.00, 0.0)), ("Spine", "Hips", (0.0, 1.10, 0.0)), ("Spine1", "Spine", (0.0, 1.22, 0.0)),
    ("Spine2", "Spine1", (0.0, 1.34, 0.0)), ("Neck", "Spine2", (0.0, 1.45, -0.01)),
    ("Head", "Neck", (0.0, 1.52, 0.0)), ("HeadTop_End", "Head", (0.0, 1.76, 0.0)),
    ("LeftEye", "Head", (0.032, 1.597, 0.08)), ("RightEye", "Head", (-0.032, 1.597, 0.08)),
    ("LeftShoulder", "Spine2", (0.04, 1.40, 0.0)), ("LeftArm", "LeftShoulder", (0.17, 1.40, 0.0)),
    ("LeftForeArm", "LeftArm", (0.42, 1.40, 0.0)), ("LeftHand", "LeftForeArm", (0.65, 1.40, 0.0)),
    ("RightShoulder", "Spine2", (-0.04, 1.40, 0.0)), ("RightArm", "RightShoulder", (-0.17, 1.40, 0.0)),
    ("RightForeArm", "RightArm", (-0.42, 1.40, 0.0)), ("RightHand", "RightForeArm", (-0.65, 1.40, 0.0)),
    ("LeftUpLeg", "Hips", (0.09, 0.95, 0.0)), ("LeftLeg", "LeftUpLeg", (0.09, 0.52, 0.0)),
    ("LeftFoot", "LeftLeg", (0.09, 0.08, 0.0)), ("RightUpLeg", "Hips", (-0.09, 0.95, 0.0)),
    ("RightLeg", "RightUpLeg", (-0.09, 0.52, 0.0)), ("RightFoot", "RightLeg", (-0.09, 0.08, 0.0)),
    ("LeftToeBase", "LeftFoot", (0.09, 0.02, 0.12)),
]
JOINT = {name: i for i, (name, _, _) in enumerate(SKELETON)}
# body boxes: (bone whose segment it covers, bone it ends at, half thickness in metres)
BODY_SEGMENTS = [("Hips", "Spine2", 0.13), ("Spine2", "Neck", 0.11), ("LeftArm", "LeftForeArm", 0.045),
                 ("LeftForeArm", "LeftHand", 0.04), ("RightArm", "RightForeArm", 0.045),
                 ("RightForeArm", "RightHand", 0.04), ("LeftUpLeg", "LeftLeg", 0.07), ("LeftLeg", "LeftFoot", 0.055),
                 ("RightUpLeg", "RightLeg", 0.07), ("RightLeg", "RightFoot", 0.055)]
VRM1_BONES = {"hips": "Hips", "spine": "Spine", "chest": "Spine1", "upperChest": "Spine2", "neck": "Neck",
              "head": "Head", "leftEye": "LeftEye", "rightEye": "RightEye", "leftShoulder": "LeftShoulder",
              "leftUpperArm": "LeftArm", "leftLowerArm": "LeftForeArm", "leftHand": "LeftHand",
              "rightShoulder": "RightShoulder", "rightUpperArm": "RightArm", "rightLowerArm": "RightForeArm",
              "rightHand": "RightHand", "leftUpperLeg": "LeftUpLeg", "leftLowerLeg": "LeftLeg",
              "leftFoot": "LeftFoot", "rightUpperLeg": "RightUpLeg", "rightLowerLeg": "RightLeg",
              "rightFoot": "RightFoot", "leftToes": "LeftToeBase"}
HEAD_TARGETS = ("mouthOpen", "mouthSmile", "eyeBlinkLeft")   # existing morph targets on Wolf3D_Head


@dataclass
class AvatarSpec:
    """What to build. lips: "joined" (closed mouth bag) or "open" (lip slit, no bag); vrm: None, "1.0" or "0.x";
    texture_format: "png" / "jpeg" / "mixed" (skin JPEG, the rest PNG); broken_texture: one image's bytes are not
    an image; extra_head: a second head beside the first; subdivide: a denser head (benchmarks)."""

    lips: str = "joined"
    vrm: str | None = None
    texture_format: str = "mixed"
    broken_texture: bool = False
    extra_head: bool = False
    subdivide: int = 0          # rounds of 1-to-4 midpoint subdivision of the head (about x4 vertices each)


@dataclass
class Avatar:
    """A built avatar: glTF JSON (dict), its BIN chunk, and what went in (world positions of each mesh's
    primitives in metres, the head's existing target deltas, the image bytes)."""

    gltf: dict
    binary: bytes
    positions: dict = field(default_factory=dict)      # mesh name -> [(V, 3) world positions per primitive]
    head_targets: dict = field(default_factory=dict)   # existing target name -> (V, 3) deltas on Wolf3D_Head
    images: list = field(default_factory=list)         # image bytes in image order

    def glb(self) -> bytes:
        return glb_bytes(self.gltf, self.binary)


# ----------------------------------------------------------------------------------------------- geometry


def _components(faces: np.ndarray, n: int) -> np.ndarray:
    a = sp.coo_matrix((np.ones(faces.size), (faces.ravel(), np.roll(faces, 1, 1).ravel())), (n, n))
    return connected_components(a, directed=False)[1]


def _sub(v, f, keep):
    """Vertices `keep` (bool (V,)) and the faces among them, renumbered."""
    idx = np.full(len(v), -1)
    idx[keep] = np.arange(keep.sum())
    f = f[keep[f].all(1)]
    return v[keep], idx[f]


@functools.lru_cache(maxsize=1)
def _ict_parts():
    """The head OBJ's pieces in ICT cm: skin, gums and tongue, upper teeth, lower teeth, eyeballs L / R (each
    (vertices, faces)), plus the full-resolution ICT skin of the same identity and its expression deltas."""
    from nfs.ict import load_ict
    from nfs.io import load_mesh
    mesh = load_mesh(HEAD_OBJ)
    v, f = mesh.vertices, mesh.faces
    labels = _components(f, len(v))
    first = np.array([np.flatnonzero(labels == c).min() for c in range(labels.max() + 1)])
    order = np.argsort(first)
    sizes = np.bincount(labels)
    centre = np.array([v[labels == c].mean(0) for c in range(len(sizes))])
    skin_c, bag_c, gums_c = order[0], order[1], order[2]
    rest = order[3:]
    eyes = [c for c in rest if sizes[c] > 200]
    teeth = [c for c in rest if sizes[c] <= 200]
    occlusal = np.median(centre[teeth, 1])
    parts = {"skin": labels == skin_c, "tongue": labels == gums_c,
             "teeth_upper": np.isin(labels, [c for c in teeth if centre[c, 1] > occlusal]),
             "teeth_lower": np.isin(labels, [c for c in teeth if centre[c, 1] <= occlusal]),
             "eye_L": np.isin(labels, [c for c in eyes if centre[c, 0] > 0]),
             "eye_R": np.isin(labels, [c for c in eyes if centre[c, 0] <= 0])}
    del bag_c  # the OBJ's own mouth socket is replaced by a bag joined to the lips
    out = {k: _sub(v, f, m) for k, m in parts.items()}
    ict = load_ict()
    coeffs = np.random.default_rng(ICT_IDENTITY_SEED).standard_normal(100).astype(np.float32) * ICT_IDENTITY_SIGMA
    full = ict.vertices(coeffs)
    return out, full, ict


@functools.lru_cache(maxsize=2)
def _head_skin(lips: str):
    """The skin with its openings modelled: (vertices cm, faces, expression deltas (53, V, 3) cm)."""
    from nfs.data.artist import feature_centres, find_openings
    from nfs.geometry.openings import carry_into_fill, loop_fill
    parts, full, ict = _ict_parts()
    v, f = parts["skin"]
    nearest = cKDTree(full).query(v)[1]
    deltas = ict.expression_deltas[:, : ict.skin_count][:, nearest]
    loops = find_openings(v, f, feature_centres(full, ict.landmarks68))
    new_v, new_f, new_d = [v], [f], [deltas]
    count = len(v)
    fills = [("eye_L", 3, np.array([0.0, 0.0, -1.2])), ("eye_R", 3, np.array([0.0, 0.0, -1.2]))]
    if lips == "joined":
        fills.append(("mouth", 4, np.array([0.0, 0.0, -2.5])))
    for name, rings, offset in fills:
        pts, fs, w = loop_fill(v, loops[name], count, rings=rings, offset=offset, close=True)
        new_v.append(pts)
        new_f.append(fs)
        new_d.append(carry_into_fill(deltas, loops[name], w))
        count += len(pts)
    return np.concatenate(new_v), np.concatenate(new_f), np.concatenate(new_d, axis=1), parts


def _split_cylindrical_uv(v: np.ndarray, f: np.ndarray):
    """Cylindrical UVs about +Y with the seam at the back: vertices of triangles across the seam are duplicated.
    Returns (source index (V',), faces (F, 3), uv (V', 2))."""
    centre = v.mean(0)
    u = np.arctan2(v[:, 0] - centre[0], v[:, 2] - centre[2]) / (2 * np.pi) + 0.5
    height = (v[:, 1] - v[:, 1].min()) / max(np.ptp(v[:, 1]), 1e-9)
    across = np.ptp(u[f], axis=1) > 0.5
    src, uv, f = list(range(len(v))), [np.stack([u, 1 - height], 1)], f.copy()
    dup: dict[int, int] = {}
    for t in np.flatnonzero(across):
        for k in range(3):
            i = f[t, k]
            if u[i] < 0.5:
                if i not in dup:
                    dup[i] = len(src)
                    src.append(i)
                    uv.append(np.array([[u[i] + 1.0, 1 - height[i]]]))
                f[t, k] = dup[i]
    uv = np.concatenate(uv)
    uv[:, 0] /= max(uv[:, 0].max(), 1.0)
    return np.array(src), f, uv.astype(np.float32)


def _box(a: np.ndarray, b: np.ndarray, half: float):
    """A box (8 vertices, 12 triangles, outward) around the segment a -> b."""
    axis = b - a
    length = np.linalg.norm(axis)
    d = axis / length
    side = np.cross(d, [0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.cross(d, [1.0, 0.0, 0.0])
    side /= np.linalg.norm(side)
    up = np.cross(side, d)
    corners = np.array([a + (sx * side + sy * up) * half + t * axis
                        for t in (0.0, 1.0) for sx in (-1, 1) for sy in (-1, 1)])
    faces = np.array([[0, 2, 3], [0, 3, 1], [4, 5, 7], [4, 7, 6], [0, 1, 5], [0, 5, 4], [2, 6, 7], [2, 7, 3],
                      [0, 4, 6], [0, 6, 2], [1, 3, 7], [1, 7, 5]])
    centre = corners.mean(0)
    tri = corners[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = (normal * (tri.mean(1) - centre)).sum(1) < 0
    faces[flip] = faces[flip][:, ::-1]
    return corners, faces


def _torus(centre, radius, tube, n=16, m=6):
    """A ring in the XY plane (facing Z)."""
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    b = np.linspace(0, 2 * np.pi, m, endpoint=False)
    A, B = np.meshgrid(a, b, indexing="ij")
    r = radius + tube * np.cos(B)
    pts = np.stack([r * np.cos(A), r * np.sin(A), tube * np.sin(B)], -1).reshape(-1, 3) + centre
    i, j = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
    p00, p10, p01, p11 = i * m + j, (i + 1) % n * m + j, i * m + (j + 1) % m, (i + 1) % n * m + (j + 1) % m
    faces = np.concatenate([np.stack([p00, p10, p11], -1).reshape(-1, 3), np.stack([p00, p11, p01], -1).reshape(-1, 3)])
    return pts, faces


def _hair_cards(head_v: np.ndarray, n_cards: int = 36, seed: int = 3):
    """Flat quads over the scalp (metres): (vertices, faces, uv)."""
    rng = np.random.default_rng(seed)
    top = head_v[:, 1].max()
    centre = np.array([head_v[:, 0].mean(), top - 0.095, head_v[:, 2].mean() - 0.01])
    vs, fs, uvs = [], [], []
    for k in range(n_cards):
        theta = rng.uniform(0, 2 * np.pi)
        phi = rng.uniform(0.0, 1.2)
        d = np.array([np.sin(phi) * np.sin(theta), np.cos(phi), np.sin(phi) * np.cos(theta)])
        if d[2] > 0.5 and phi > 0.7:          # keep the forehead and face clear
            d[2] = -d[2]
        base = centre + d * 0.1
        down = np.array([0.0, -1.0, 0.0]) - d * -d[1]            # -Y in the scalp's tangent plane
        down = down / np.linalg.norm(down) if np.linalg.norm(down) > 1e-6 else np.array([0.0, 0.0, -1.0])
        tangent = np.cross(d, down)
        w, h = 0.03, 0.09
        quad = np.array([base - tangent * w, base + tangent * w, base + tangent * w + down * h + d * 0.01,
                         base - tangent * w + down * h + d * 0.01])
        vs.append(quad)
        fs.append(np.array([[0, 1, 2], [0, 2, 3]]) + 4 * k)
        uvs.append(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32))
    return np.concatenate(vs), np.concatenate(fs), np.concatenate(uvs)


# ----------------------------------------------------------------------------------------------- images


def _image(kind: str, fmt: str, size: int = 32) -> bytes:
    from PIL import Image
    rng = np.random.default_rng(abs(hash(kind)) % 1000)
    base = {"skin": (205, 160, 140), "eye": (240, 240, 240), "teeth": (235, 230, 215), "hair": (60, 40, 25),
            "body": (200, 155, 135), "outfit": (40, 80, 150), "normal": (128, 128, 255)}[kind]
    pix = np.clip(np.array(base)[None, None] + rng.integers(-12, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    if kind == "eye":
        yy, xx = np.mgrid[:size, :size]
        iris = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 5) ** 2
        pix[iris] = (70, 110, 60)
    mode = "RGB"
    if kind == "hair":
        alpha = (np.arange(size)[None, :].repeat(size, 0) % 4 != 0).astype(np.uint8) * 255
        pix = np.concatenate([pix, alpha[..., None]], -1)
        mode = "RGBA"
    buf = io.BytesIO()
    Image.fromarray(pix, mode).save(buf, format="JPEG" if fmt == "jpeg" else "PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------- glTF writing


class _Writer:
    def __init__(self):
        self.g: dict = {"asset": {"version": "2.0", "generator": "nfs test avatar factory"}, "scene": 0,
                        "scenes": [{"name": "Scene", "nodes": []}], "nodes": [], "meshes": [], "materials": [],
                        "textures": [], "images": [], "samplers": [{"magFilter": 9729, "minFilter": 9987}],
                        "accessors": [], "bufferViews": [], "buffers": []}
        self.bin = bytearray()

    def view(self, data: bytes, target=None, stride=None) -> int:
        while len(self.bin) % 4:
            self.bin.append(0)
        view = {"buffer": 0, "byteOffset": len(self.bin), "byteLength": len(data)}
        if target:
            view["target"] = target
        if stride:
            view["byteStride"] = stride
        self.bin += data
        self.g["bufferViews"].append(view)
        return len(self.g["bufferViews"]) - 1

    def accessor(self, arr: np.ndarray, type_: str, target=None, minmax=False) -> int:
        arr = np.ascontiguousarray(arr)
        comp = {np.dtype(np.float32): FLOAT, np.dtype(np.uint32): UINT, np.dtype(np.uint16): USHORT,
                np.dtype(np.uint8): UBYTE}[arr.dtype]
        acc = {"bufferView": self.view(arr.tobytes(), target), "componentType": comp, "count": len(arr),
               "type": type_}
        if minmax:
            flat = arr.reshape(len(arr), -1)
            acc["min"], acc["max"] = flat.min(0).tolist(), flat.max(0).tolist()
        self.g["accessors"].append(acc)
        return len(self.g["accessors"]) - 1

    def node(self, **kw) -> int:
        self.g["nodes"].append(kw)
        return len(self.g["nodes"]) - 1

    def image(self, data: bytes, name: str) -> int:
        mime = "image/jpeg" if data[:2] == b"\xff\xd8" else "image/png"
        self.g["images"].append({"name": name, "bufferView": self.view(data), "mimeType": mime})
        self.g["textures"].append({"sampler": 0, "source": len(self.g["images"]) - 1})
        return len(self.g["textures"]) - 1

    def material(self, name: str, color=(1, 1, 1, 1), texture=None, **extra) -> int:
        pbr = {"baseColorFactor": list(color), "metallicFactor": 0.0, "roughnessFactor": 0.8}
        if texture is not None:
            pbr["baseColorTexture"] = {"index": texture}
        self.g["materials"].append({"name": name, "pbrMetallicRoughness": pbr, **extra})
        return len(self.g["materials"]) - 1

    def primitive(self, v, f, material, uv=None, joints=None, weights=None, targets=None) -> dict:
        from nfs.geometry.normals import vertex_normals
        attrs = {"POSITION": self.accessor(v.astype(np.float32), "VEC3", ARRAY_BUFFER, minmax=True),
                 "NORMAL": self.accessor(vertex_normals(v, f).astype(np.float32), "VEC3", ARRAY_BUFFER)}
        if uv is not None:
            attrs["TEXCOORD_0"] = self.accessor(uv.astype(np.float32), "VEC2", ARRAY_BUFFER)
        if joints is not None:
            attrs["JOINTS_0"] = self.accessor(joints.astype(np.uint8), "VEC4", ARRAY_BUFFER)
            attrs["WEIGHTS_0"] = self.accessor(weights.astype(np.float32), "VEC4", ARRAY_BUFFER)
        index_type = np.uint16 if len(v) < 65536 else np.uint32
        prim = {"attributes": attrs, "indices": self.accessor(f.astype(index_type).ravel(), "SCALAR",
                                                              ELEMENT_ARRAY_BUFFER), "material": material}
        if targets:
            prim["targets"] = [{"POSITION": self.accessor(t.astype(np.float32), "VEC3", minmax=True)} for t in targets]
        return prim

    def mesh(self, name, primitives, target_names=None) -> int:
        mesh = {"name": name, "primitives": primitives}
        if target_names:
            mesh["weights"] = [0.0] * len(target_names)
            mesh["extras"] = {"targetNames": list(target_names)}
        self.g["meshes"].append(mesh)
        return len(self.g["meshes"]) - 1


def glb_bytes(gltf: dict, binary: bytes) -> bytes:
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary = bytes(binary) + b"\0" * (-len(binary) % 4)
    body = struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(binary), b"BIN\0") + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def _rigid(n: int, joint: int):
    joints = np.zeros((n, 4), np.uint8)
    joints[:, 0] = joint
    weights = np.zeros((n, 4), np.float32)
    weights[:, 0] = 1.0
    return joints, weights


def build_avatar(spec: AvatarSpec = AvatarSpec()) -> Avatar:
    """The avatar of `spec` (see the module docstring)."""
    skin_v, skin_f, skin_d, parts = _head_skin(spec.lips)
    if spec.subdivide:
        from nfs.geometry.remesh import subdivide_midpoint
        n_shapes = len(skin_d)
        packed = np.concatenate([skin_v, skin_d.transpose(1, 0, 2).reshape(len(skin_v), -1)], 1)
        for _ in range(spec.subdivide):
            packed, skin_f = subdivide_midpoint(packed, skin_f)
        skin_v, skin_d = packed[:, :3], packed[:, 3:].reshape(len(packed), n_shapes, 3).transpose(1, 0, 2)
    flip = np.diag([-1.0, 1.0, -1.0]) if spec.vrm == "0.x" else np.eye(3)   # VRM 0.x faces -Z

    def world(v_cm):
        return (np.asarray(v_cm, np.float64) * CM + HEAD_OFFSET) @ flip.T

    w = _Writer()
    out = Avatar(gltf=w.g, binary=b"")
    fmt = {"png": ("png",) * 7, "jpeg": ("jpeg",) * 7}.get(spec.texture_format,
                                                          ("jpeg", "png", "png", "png", "jpeg", "png", "png"))
    kinds = ("skin", "normal", "eye", "teeth", "body", "outfit", "hair")
    images = [_image(k, f) for k, f in zip(kinds, fmt)]
    if spec.broken_texture:
        images[5] = b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4
    tex = {k: w.image(data, k) for k, data in zip(kinds, images)}
    out.images = images
    mat = {"skin": w.material("Wolf3D_Skin", texture=tex["skin"], normalTexture={"index": tex["normal"]}),
           "eye": w.material("Wolf3D_Eye", texture=tex["eye"]),
           "teeth": w.material("Wolf3D_Teeth", texture=tex["teeth"]),
           "hair": w.material("Wolf3D_Hair", texture=tex["hair"], alphaMode="MASK", alphaCutoff=0.5,
                              doubleSided=True),
           "glasses": w.material("Wolf3D_Glasses", color=(0.05, 0.05, 0.05, 1.0)),
           "body": w.material("Wolf3D_Body", texture=tex["body"]),
           "outfit": w.material("Wolf3D_Outfit_Top", texture=tex["outfit"])}

    # skeleton: joint nodes with local translations; bind pose = rest pose
    joint_world = {name: np.array(pos) @ flip.T for name, _, pos in SKELETON}
    joint_nodes = {}
    for name, parent, _ in SKELETON:
        local = joint_world[name] - (joint_world[parent] if parent else 0.0)
        joint_nodes[name] = w.node(name=name, translation=[float(x) for x in local])
    for name, parent, _ in SKELETON:
        if parent:
            w.g["nodes"][joint_nodes[parent]].setdefault("children", []).append(joint_nodes[name])
    ibm = np.stack([np.eye(4) for _ in SKELETON]).astype(np.float32)
    for i, (name, _, _) in enumerate(SKELETON):
        ibm[i, :3, 3] = -joint_world[name]
    ibm_acc = w.accessor(np.ascontiguousarray(ibm.transpose(0, 2, 1)).reshape(len(SKELETON), 16), "MAT4")
    w.g["skins"] = [{"name": "Armature", "joints": [joint_nodes[n] for n, _, _ in SKELETON],
                     "inverseBindMatrices": ibm_acc, "skeleton": joint_nodes["Hips"]}]

    # head: seam split UVs, Neck / Head weights, existing targets
    src, head_f, head_uv = _split_cylindrical_uv(skin_v, skin_f)
    head_v = world(skin_v[src])
    t = np.clip((head_v[:, 1] - (joint_world["Neck"][1] + 0.01)) / 0.06, 0.0, 1.0)
    joints = np.zeros((len(head_v), 4), np.uint8)
    joints[:, 0], joints[:, 1] = JOINT["Head"], JOINT["Neck"]
    weights = np.zeros((len(head_v), 4), np.float32)
    weights[:, 0], weights[:, 1] = t, 1 - t
    from nfs.ict import EXPRESSION_NAMES as X
    d = skin_d[:, src] * CM @ flip.T
    existing = {"mouthOpen": d[X.index("jawOpen")], "mouthSmile": d[X.index("mouthSmile_L")] + d[X.index("mouthSmile_R")],
                "eyeBlinkLeft": 0.5 * d[X.index("eyeBlink_L")]}
    out.head_targets = {k: existing[k].astype(np.float32) for k in HEAD_TARGETS}
    mesh_nodes = []

    def add_mesh(name, prims_args, target_names=None, skinned=True, **node_kw):
        prims = [w.primitive(*a, **k) for a, k in prims_args]
        m = w.mesh(name, prims, target_names)
        node = w.node(name=name, mesh=m, **({"skin": 0} if skinned else {}), **node_kw)
        out.positions[name] = [a[0] for a, _ in prims_args]
        return node

    mesh_nodes.append(add_mesh("Wolf3D_Head", [((head_v, head_f, mat["skin"]),
                                                dict(uv=head_uv, joints=joints, weights=weights,
                                                     targets=[out.head_targets[k] for k in HEAD_TARGETS]))],
                               list(HEAD_TARGETS)))
    if spec.extra_head:
        second = head_v + np.array([0.4, 0.0, 0.0])
        mesh_nodes.append(add_mesh("Wolf3D_Head_Twin", [((second, head_f, mat["skin"]),
                                                         dict(uv=head_uv, joints=joints, weights=weights))]))
    teeth = []
    for key in ("teeth_upper", "teeth_lower"):
        v, f = parts[key]
        teeth.append(((world(v), f, mat["teeth"]), dict(uv=np.zeros((len(v), 2)),
                                                         joints=_rigid(len(v), JOINT["Head"])[0],
                                                         weights=_rigid(len(v), JOINT["Head"])[1])))
    mesh_nodes.append(add_mesh("Wolf3D_Teeth", teeth))
    v, f = parts["tongue"]
    mesh_nodes.append(add_mesh("Wolf3D_Tongue", [((world(v), f, mat["teeth"]),
                                                  dict(uv=np.zeros((len(v), 2)), joints=_rigid(len(v), JOINT["Head"])[0],
                                                       weights=_rigid(len(v), JOINT["Head"])[1]))]))
    for key, name, joint in (("eye_L", "EyeLeft", "LeftEye"), ("eye_R", "EyeRight", "RightEye")):
        v, f = parts[key]
        uv = (v[:, :2] - v[:, :2].min(0)) / np.ptp(v[:, :2], 0)
        j, wt = _rigid(len(v), JOINT[joint])
        mesh_nodes.append(add_mesh(name, [((world(v), f, mat["eye"]), dict(uv=uv, joints=j, weights=wt))]))
    hv, hf, huv = _hair_cards(world(skin_v[: len(parts["skin"][0])]) @ flip.T)
    hv = hv @ flip.T
    j, wt = _rigid(len(hv), JOINT["Head"])
    mesh_nodes.append(add_mesh("Wolf3D_Hair", [((hv, hf, mat["hair"]), dict(uv=huv, joints=j, weights=wt))]))
    # glasses: an unskinned mesh under the Head bone, positioned by its own node translation
    from nfs.data.artist import feature_centres
    _, full, ict = _ict_parts()
    centres = feature_centres(full, ict.landmarks68)
    pieces = []
    for eye in ("eye_L", "eye_R"):
        pieces.append(_torus(centres[eye] * CM + np.array([0, 0, 0.025]), 0.022, 0.003))
    gv = np.concatenate([p[0] for p in pieces])
    gf = np.concatenate([pieces[0][1], pieces[1][1] + len(pieces[0][0])])
    bridge_v, bridge_f = _box(centres["eye_R"] * CM + [0.02, 0, 0.025], centres["eye_L"] * CM + [-0.02, 0, 0.025], 0.002)
    gf = np.concatenate([gf, bridge_f + len(gv)])
    gv = np.concatenate([gv, bridge_v])
    glasses_offset = np.array([0.0, 0.04, 0.01])                   # node translation relative to the Head bone
    head_bone_world = joint_world["Head"] @ flip  # un-flipped
    local = (gv + HEAD_OFFSET - head_bone_world - glasses_offset) @ flip.T
    glasses_node = w.node(name="Wolf3D_Glasses", mesh=w.mesh("Wolf3D_Glasses", [w.primitive(local, gf, mat["glasses"])]),
                          translation=[float(x) for x in glasses_offset @ flip.T])
    w.g["nodes"][joint_nodes["Head"]].setdefault("children", []).append(glasses_node)
    out.positions["Wolf3D_Glasses"] = [(gv + HEAD_OFFSET) @ flip.T]
    # body and outfit: boxes per segment, each rigid on its bone
    bv, bf, bj = [], [], []
    for a, b, half in BODY_SEGMENTS:
        v, f = _box(joint_world[a], joint_world[b], half)
        bf.append(f + sum(len(x) for x in bv))
        bv.append(v)
        bj.append(np.full(len(v), JOINT[a]))
    bv, bf, bj = np.concatenate(bv), np.concatenate(bf), np.concatenate(bj)
    j, wt = _rigid(len(bv), 0)
    j[:, 0] = bj
    buv = (bv[:, :2] - bv[:, :2].min(0)) / np.ptp(bv[:, :2], 0)
    mesh_nodes.append(add_mesh("Wolf3D_Body", [((bv, bf, mat["body"]), dict(uv=buv, joints=j, weights=wt))]))
    ov = np.concatenate([_box(joint_world["Hips"], joint_world["Spine2"], 0.14)[0],
                         _box(joint_world["Spine2"], joint_world["Neck"], 0.12)[0]])
    of = np.concatenate([_box(joint_world["Hips"], joint_world["Spine2"], 0.14)[1],
                         _box(joint_world["Spine2"], joint_world["Neck"], 0.12)[1] + 8])
    j, wt = _rigid(len(ov), JOINT["Spine1"])
    breathe = (ov - ov.mean(0)) * np.array([0.04, 0.0, 0.06])
    mesh_nodes.append(add_mesh("Wolf3D_Outfit_Top", [((ov, of, mat["outfit"]),
                                                      dict(uv=(ov[:, :2] - ov[:, :2].min(0)) / np.ptp(ov[:, :2], 0),
                                                           joints=j, weights=wt, targets=[breathe]))], ["breathe"]))
    armature = w.node(name="Armature", children=[joint_nodes["Hips"], *mesh_nodes])
    w.g["scenes"][0]["nodes"] = [armature]

    # an existing animation: the head nods, the spine sways
    times = np.array([0.0, 1.0, 2.0], np.float32)

    def quat(axis, deg):
        a = np.deg2rad(deg) / 2
        return np.concatenate([np.sin(a) * np.asarray(axis, float), [np.cos(a)]])

    nod = np.stack([quat([1, 0, 0], 0), quat([1, 0, 0], 12), quat([1, 0, 0], 0)]).astype(np.float32)
    sway = np.stack([quat([0, 0, 1], 0), quat([0, 0, 1], -4), quat([0, 0, 1], 0)]).astype(np.float32)
    t_acc = w.accessor(times, "SCALAR", minmax=True)
    w.g["animations"] = [{"name": "Idle", "samplers": [
        {"input": t_acc, "output": w.accessor(nod, "VEC4"), "interpolation": "LINEAR"},
        {"input": t_acc, "output": w.accessor(sway, "VEC4"), "interpolation": "LINEAR"}],
        "channels": [{"sampler": 0, "target": {"node": joint_nodes["Head"], "path": "rotation"}},
                     {"sampler": 1, "target": {"node": joint_nodes["Spine"], "path": "rotation"}}]}]

    if spec.vrm:
        add_vrm(w.g, spec.vrm)
    w.g["buffers"] = [{"byteLength": len(w.bin)}]
    out.binary = bytes(w.bin)
    return out


def add_vrm(gltf: dict, version: str) -> dict:
    """Put the VRM extension of `version` ("1.0": VRMC_vrm, "0.x": VRM) on a glTF dict holding the avatar's
    joints and Wolf3D_Head by name (as a VRM exporter would, also after another tool rewrote the file)."""
    node = {n.get("name"): i for i, n in enumerate(gltf["nodes"])}
    mesh = {m.get("name"): i for i, m in enumerate(gltf["meshes"])}
    head_node = next(i for i, n in enumerate(gltf["nodes"]) if n.get("mesh") == mesh["Wolf3D_Head"])
    used = gltf.setdefault("extensionsUsed", [])
    if version == "1.0":
        used.append("VRMC_vrm")
        binds = {"aa": 0, "happy": 1, "blinkLeft": 2}
        gltf.setdefault("extensions", {})["VRMC_vrm"] = {
            "specVersion": "1.0",
            "meta": {"name": "nfs test avatar", "version": "1", "authors": ["nfs tests"],
                     "licenseUrl": "https://vrm.dev/licenses/1.0/", "avatarPermission": "everyone",
                     "commercialUsage": "personalNonProfit", "creditNotation": "required",
                     "allowRedistribution": False, "modification": "prohibited"},
            "humanoid": {"humanBones": {k: {"node": node[v]} for k, v in VRM1_BONES.items()}},
            "expressions": {"preset": {k: {"morphTargetBinds": [{"node": head_node, "index": i, "weight": 1.0}],
                                           "isBinary": False} for k, i in binds.items()}}}
    else:
        used.append("VRM")
        groups = [("A", "a", 0), ("Joy", "joy", 1), ("Blink_L", "blink_l", 2)]
        gltf.setdefault("extensions", {})["VRM"] = {
            "exporterVersion": "nfs-tests", "specVersion": "0.0",
            "meta": {"title": "nfs test avatar", "version": "1", "author": "nfs tests",
                     "allowedUserName": "Everyone", "licenseName": "CC0"},
            "humanoid": {"humanBones": [{"bone": k, "node": node[v], "useDefaultValues": True}
                                        for k, v in VRM1_BONES.items()]},
            "blendShapeMaster": {"blendShapeGroups": [
                {"name": n, "presetName": p, "binds": [{"mesh": mesh["Wolf3D_Head"], "index": i, "weight": 100}],
                 "materialValues": []} for n, p, i in groups]},
            "firstPerson": {"firstPersonBone": node["Head"], "meshAnnotations": []},
            "materialProperties": [{"name": m.get("name", ""), "shader": "VRM_USE_GLTFSHADER"}
                                   for m in gltf.get("materials", [])]}
    return gltf


def write_avatar(path: str | Path, spec: AvatarSpec = AvatarSpec()) -> Avatar:
    """Build the avatar of `spec` and write it as a GLB (or .vrm) at `path`."""
    avatar = build_avatar(spec)
    Path(path).write_bytes(avatar.glb())
    return avatar


# ----------------------------------------------------------------------------------------------- encoders


def encoders_missing() -> str | None:
    """Why the npm encoders cannot run here (None when they can)."""
    if shutil.which("node") is None:
        return "node is not installed"
    for tool in ("gltfpack", "gltf-transform"):
        if not (NODE_BIN / tool).exists():
            return f"npm tool {tool} missing: run `npm ci` in the repository root"
    return None


def _run(args: list, timeout: float = 180.0) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(str(args[0])).name} failed ({done.returncode}): {(done.stderr or done.stdout)[-800:]}")
    return done.stdout + done.stderr


def gltfpack(src: str | Path, dst: str | Path, *flags: str) -> str:
    """Run the npm gltfpack: `gltfpack -i src -o dst flags...` (e.g. "-cc", "-tc")."""
    return _run([NODE_BIN / "gltfpack", "-i", src, "-o", dst, *flags])


def gltf_transform(command: str, src: str | Path, dst: str | Path, *flags: str) -> str:
    """Run the npm gltf-transform CLI: `gltf-transform command src dst flags...` (meshopt, quantize, draco, webp)."""
    return _run([NODE_BIN / "gltf-transform", command, src, dst, *flags])


def read_glb(path: str | Path) -> tuple[dict, bytes]:
    """A GLB file's JSON (dict) and BIN chunk."""
    return read_glb_bytes(Path(path).read_bytes())


def read_glb_bytes(data: bytes) -> tuple[dict, bytes]:
    """A GLB's JSON (dict) and BIN chunk."""
    length = struct.unpack_from("<I", data, 12)[0]
    gltf = json.loads(data[20: 20 + length])
    at = 20 + length
    binary = data[at + 8: at + 8 + struct.unpack_from("<I", data, at)[0]] if at + 8 <= len(data) else b""
    return gltf, binary


def attach_vrm(src: str | Path, dst: str | Path, version: str) -> None:
    """Copy the GLB `src` (e.g. an encoder's output, which drops unknown extensions) to `dst` with the avatar's VRM
    extension put back by node and mesh names."""
    gltf, binary = read_glb(src)
    Path(dst).write_bytes(glb_bytes(add_vrm(gltf, version), binary))


# gltf-transform optimize with only what changes the encoding: meshopt (with quantization) and WebP textures
VROID_LIKE = ("--compress", "meshopt", "--texture-compress", "webp", "--simplify", "false", "--join", "false",
              "--instance", "false", "--flatten", "false", "--palette", "false", "--weld", "false", "--prune", "false")


def compressed_avatars(folder: str | Path) -> dict[str, Path]:
    """The plain avatar written by the factory and compressed by the real encoders, by name:
    gltfpack (-cc: EXT_meshopt_compression + KHR_mesh_quantization; the npm gltfpack is built without BasisU, so
    no KTX2), gltf-transform webp then meshopt (EXT_texture_webp + EXT_meshopt_compression + KHR_mesh_quantization),
    gltf-transform draco, a VRM 1.0 compressed like a VRoid export (webp + meshopt + quantization, the VRM
    extension put back by names) and a plain VRM 0.x. Requires `encoders_missing()` to be None."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / "avatar.glb"
    write_avatar(plain)
    out = {"plain": plain}
    out["gltfpack"] = folder / "avatar_gltfpack.glb"
    gltfpack(plain, out["gltfpack"], "-cc")
    out["gltf_transform_meshopt_webp"] = folder / "avatar_meshopt_webp.glb"
    gltf_transform("optimize", plain, out["gltf_transform_meshopt_webp"], *VROID_LIKE)
    out["gltf_transform_draco"] = folder / "avatar_draco.glb"
    gltf_transform("draco", plain, out["gltf_transform_draco"])
    vrm1 = folder / "avatar_vrm1_plain.glb"
    write_avatar(vrm1, AvatarSpec(vrm="1.0"))
    packed = folder / "avatar_vrm1_packed.glb"
    gltf_transform("optimize", vrm1, packed, *VROID_LIKE)
    out["vrm1_meshopt_webp"] = folder / "avatar_vrm1.vrm"
    attach_vrm(packed, out["vrm1_meshopt_webp"], "1.0")
    out["vrm0"] = folder / "avatar_vrm0.vrm"
    write_avatar(out["vrm0"], AvatarSpec(vrm="0.x"))
    return out
