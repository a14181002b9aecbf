"""Reading back the GLBs that nfs.export writes (tests only): split seam vertices merged into the original
vertex order, morph targets, and the weights animation evaluated at given frames."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pygltflib as gl

from nfs.io.gltf import FLOAT, UINT


def _accessor(g: gl.GLTF2, blob: bytes, index: int) -> np.ndarray:
    acc = g.accessors[index]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc.type]
    dtype = {FLOAT: np.float32, UINT: np.uint32, 5123: np.uint16, 5121: np.uint8}[acc.componentType]
    view = g.bufferViews[acc.bufferView]
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    itemsize = np.dtype(dtype).itemsize * width
    stride = view.byteStride or itemsize
    raw = np.frombuffer(blob, np.uint8, count=stride * (acc.count - 1) + itemsize, offset=start)
    if stride == itemsize:
        arr = raw.view(dtype)
    else:
        arr = np.lib.stride_tricks.as_strided(raw, (acc.count, itemsize), (stride, 1)).copy().view(dtype)
    return arr.reshape(acc.count, width) if width > 1 else arr.reshape(acc.count)


@dataclass
class GlbMesh:
    """The first mesh of a GLB written here, in the ORIGINAL vertex order: `neutral` (V, 3),
    `faces` (F, 3), `targets` (K, V, 3) deltas, `target_names`, `uv` (V', 2) of the glTF vertices
    (OBJ convention) or None, `animation` dict (times, weights (n_keys, K), interpolation, extras)."""

    neutral: np.ndarray
    faces: np.ndarray
    targets: np.ndarray
    target_names: list
    uv: np.ndarray | None
    animation: dict | None


def read_glb_mesh(path) -> GlbMesh:
    """Read a GLB from this module back with pygltflib (split vertices merged back)."""
    g = gl.GLTF2.load_binary(str(path))
    blob = g.binary_blob()
    mesh = g.meshes[0]
    prim = mesh.primitives[0]
    pos = _accessor(g, blob, prim.attributes.POSITION)
    faces = _accessor(g, blob, prim.indices).reshape(-1, 3).astype(np.int64)
    orig = getattr(prim.attributes, "_ORIG_INDEX", None)
    src = None if orig is None else np.rint(_accessor(g, blob, orig)).astype(np.int64)
    uv = None
    if prim.attributes.TEXCOORD_0 is not None:
        t = _accessor(g, blob, prim.attributes.TEXCOORD_0)
        uv = np.stack([t[:, 0], 1.0 - t[:, 1]], 1)
    targets = [_accessor(g, blob, t.POSITION if isinstance(t, gl.Attributes) else t["POSITION"])
               for t in (prim.targets or [])]
    targets = np.stack(targets) if targets else np.zeros((0,) + pos.shape, np.float32)
    if src is not None:
        n = int(src.max()) + 1
        merged = np.zeros((n, 3), np.float32)
        merged[src] = pos
        mt = np.zeros((len(targets), n, 3), np.float32)
        mt[:, src] = targets
        pos, targets, faces = merged, mt, src[faces]
    anim = None
    if g.animations:
        a = g.animations[0]
        s = a.samplers[a.channels[0].sampler]
        times = _accessor(g, blob, s.input)
        anim = {"times": times, "weights": _accessor(g, blob, s.output).reshape(len(times), -1),
                "interpolation": s.interpolation or "LINEAR", "extras": a.extras or {}}
    names = list((mesh.extras or {}).get("targetNames", []))
    return GlbMesh(pos.astype(np.float32), faces, targets.astype(np.float32), names, uv, anim)


def _weights_at(anim: dict, t: float) -> np.ndarray:
    times, w = anim["times"], anim["weights"]
    j = int(np.searchsorted(times, t, side="right")) - 1
    if j < 0:
        return w[0]
    if j >= len(times) - 1 or anim["interpolation"] == "STEP":
        return w[min(j, len(times) - 1)]
    a = (t - times[j]) / max(times[j + 1] - times[j], 1e-12)
    return (1 - a) * w[j] + a * w[j + 1]


def read_glb_frames(path, frame_indices: Iterable[int]) -> np.ndarray:
    """Positions (len(frame_indices), V, 3) of an animated GLB at the given source frames, by
    evaluating its weights animation at frame / fps (fps from the animation's extras)."""
    m = read_glb_mesh(path)
    if m.animation is None:
        raise ValueError(f"{path}: no animation")
    fps = float(m.animation["extras"].get("fps", 0.0)) or None
    out = []
    for f in frame_indices:
        # same float32 rounding as the exported key times, so STEP lands on the right key
        t = float(np.float32(f / fps)) if fps else float(m.animation["times"][int(f)])
        w = _weights_at(m.animation, t)
        nz = np.nonzero(w)[0]
        out.append(m.neutral + np.tensordot(w[nz], m.targets[nz], axes=(0, 0)))
    return np.asarray(out, np.float32)


def read_rig_glb(path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(neutral (V, 3), faces (F, 3), deltas (K, V, 3), target names) of a rig GLB."""
    m = read_glb_mesh(path)
    return m.neutral, m.faces, m.targets, m.target_names
