"""The avatar export: the user's own glTF / VRM file back, whole, with the 52 ARKit blendshapes (and optionally the
15 Oculus visemes) as morph targets on every mesh that moves with the face, and the clip as an animation of
those morph weights.

Everything of the input is kept: nodes, meshes, materials, textures and image bytes, skins, animations, morph
targets, extras and extensions (a VRM stays a VRM: targets are only appended or replaced in place, so VRM
expressions that bind targets by index still find theirs). What changes:

- compressed buffer views (EXT / KHR meshopt) are written back decoded, and Draco primitives that receive targets
  are written back as plain accessors (the other Draco primitives stay compressed); `extensionsUsed` /
  `extensionsRequired` say only what is left; quantized accessors (KHR_mesh_quantization) stay as they were;
- every buffer becomes the one binary chunk of a GLB (external files and data URIs embedded, bytes unchanged);
- each moving mesh gets one target per new name, deltas in each primitive's own (bind) space, names in
  ``mesh.extras.targetNames``; a target of the same name already there is replaced in place (default) or kept;
  deltas under a millionth of the avatar's size are written as zero, so partial targets are stored sparse;
- a VRM also gets each new name as an expression binding those targets (VRM 1.0 custom expressions, VRM 0.x blend
  shape groups; "perfect sync"), its own expressions untouched;
- a new animation drives the new targets' weights with the clip's ARKit weights, one key per frame; existing
  weight animations of those meshes are widened with zeros for the new targets.

The file is written under a temporary name and moved into place whole.
"""
from __future__ import annotations

import copy
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nfs.arkit import ARKIT_NAMES, VISEME_NAMES, ict_to_arkit_shapes, ict_to_arkit_weights, viseme_matrix
from nfs.io.files import discard, new_partial, publish
from nfs.io.gltf import column_min_max
from nfs.io.gltf_document import DECODED, DRACO, MESHOPT, MESHOPT_KHR, GltfDocument, read_document
from nfs.io.mesh import MeshError, RawMesh

FLOAT = 5126
MOVING_FRACTION = 1e-4      # a mesh moves when some shape moves a vertex by this fraction of the avatar's size
ZERO_FRACTION = 1e-6        # smaller deltas are written as zero (sparse targets): 0.002 mm on a 2 m avatar
TONGUE_WORDS = ("tongue",)


@dataclass
class AvatarExportInfo:
    """What the avatar export wrote: the path, the meshes that got targets, the target names added, the names it
    replaced or kept, and notes for the user."""

    path: Path
    meshes: list[str]
    target_names: list[str]
    replaced: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def arkit_rig(ict_shapes: np.ndarray, ict_weights: np.ndarray | None = None):
    """(53, V, 3) ICT shapes [and (T, 53) ICT weights] -> (52, V, 3) ARKit shapes [and (T, 52) ARKit weights]."""
    shapes = ict_to_arkit_shapes(ict_shapes)
    return shapes if ict_weights is None else (shapes, ict_to_arkit_weights(ict_weights))


def tongue_out_shape(raw: RawMesh, forward: np.ndarray, reach: float = 0.5) -> tuple[np.ndarray, list[str]]:
    """(V, 3) tongueOut deltas: the parts named like a tongue slide forward (along `forward`, the face's direction
    in the mesh's frame) by `reach` of their own depth, the tip the most and the root not at all. Returns the deltas
    and the names of the parts moved (empty when the file has no tongue part: the shape is then zero)."""
    deltas = np.zeros((raw.n_vertices, 3), np.float32)
    forward = np.asarray(forward, np.float64)
    forward = forward / max(np.linalg.norm(forward), 1e-12)
    moved = []
    for part in raw.parts:
        label = f"{part.mesh_name} {part.node_name} {part.material_name} {part.name}".lower()
        if not any(w in label for w in TONGUE_WORDS):
            continue
        rows = slice(part.vertex_offset, part.vertex_offset + part.vertex_count)
        depth = raw.vertices[rows] @ forward
        span = max(float(np.ptp(depth)), 1e-12)
        ramp = (depth - depth.min()) / span
        deltas[rows] = (ramp[:, None] * reach * span * forward[None]).astype(np.float32)
        moved.append(part.mesh_name or part.name)
    return deltas, moved


def export_avatar(path, source, filename: str, raw: RawMesh, shapes: np.ndarray, weights: np.ndarray, fps: float, *,
                  names=ARKIT_NAMES, visemes: bool = False, keep_existing: bool = False, clip_name: str = "clip",
                  notes: list[str] | None = None) -> AvatarExportInfo:
    """Write the input avatar `source` (its bytes or path; `filename` for messages and the format) to `path` with
    morph targets and an animation.

    raw: the avatar as read by `nfs.io.load_mesh` (its parts say which primitive each vertex came from).
    shapes: (K, V, 3) deltas on raw's vertices in raw's frame and units (K = len(names), ARKit order by default).
    weights: (T, K) the clip's weights for those shapes, one row per frame at `fps`.
    visemes: also add the 15 Oculus visemes (ARKit mixes, weight 0 in the animation; needs the ARKit names).
    keep_existing: where the file already has a target of one of these names, keep it (default: replace it).
    """
    path = Path(path)
    shapes = np.asarray(shapes, np.float32)
    weights = np.asarray(weights, np.float32)
    names = list(names)
    if shapes.ndim != 3 or shapes.shape[0] != len(names) or shapes.shape[1:] != (raw.n_vertices, 3):
        raise ValueError(f"shapes must be ({len(names)}, {raw.n_vertices}, 3), got {shapes.shape}")
    if weights.ndim != 2 or weights.shape[1] != len(names) or len(weights) == 0:
        raise ValueError(f"weights must be (T, {len(names)}) with T >= 1, got {weights.shape}")
    if not (np.isfinite(shapes).all() and np.isfinite(weights).all() and fps > 0):
        raise ValueError("shapes and weights must be finite and fps positive")
    if visemes:
        if names[: len(ARKIT_NAMES)] != list(ARKIT_NAMES):
            raise ValueError("visemes are mixes of the 52 ARKit shapes: pass them in ARKIT_NAMES order")
        mix = viseme_matrix()
        shapes = np.concatenate([shapes, np.einsum("va,a...->v...", mix.astype(np.float32), shapes[: len(ARKIT_NAMES)])])
        weights = np.concatenate([weights, np.zeros((len(weights), len(VISEME_NAMES)), np.float32)], 1)
        names += list(VISEME_NAMES)
    doc = read_document(source, filename)
    writer = _Writer(doc, source)
    info = AvatarExportInfo(path, [], names, notes=list(notes or []))
    size = float(np.linalg.norm(np.ptp(raw.vertices, axis=0))) or 1.0
    shapes = _zero_small(shapes, ZERO_FRACTION * size)
    moving = _moving_meshes(raw, shapes, doc)
    if not moving:
        raise MeshError(f"{filename}: no mesh of the avatar moves with the face; nothing to put targets on")
    node_meshes = {}
    for mesh_index, parts in moving.items():
        new_columns = _add_targets(writer, doc, mesh_index, parts, shapes, names, keep_existing, info)
        node_meshes[mesh_index] = new_columns
        info.meshes.append(str(doc.json["meshes"][mesh_index].get("name") or f"mesh {mesh_index}"))
    _add_animation(writer, node_meshes, weights, fps, clip_name)
    added = _vrm_expressions(writer.g, node_meshes, names)
    if added:
        info.notes.append(f"{added}: the new targets are also VRM expressions by their names (\"perfect sync\")")
    if writer.decoded_draco:
        info.notes.append("Draco-compressed meshes that received targets are written uncompressed")
    if doc.compression & {MESHOPT, MESHOPT_KHR}:
        info.notes.append("meshopt-compressed data is written back uncompressed (quantization kept)")
    writer.finish()
    tmp = new_partial(path)
    try:
        writer.write_glb(tmp)
        publish(tmp, path)
    finally:
        discard(tmp)
    return info


# ----------------------------------------------------------------------------------------------- which meshes


def _row_abs_max(a: np.ndarray) -> np.ndarray:
    """Largest |value| of each row of (N, C), a column at a time (numpy's axis-1 reduce over short rows is slow)."""
    out = np.abs(a[:, 0])
    for c in range(1, a.shape[1]):
        np.maximum(out, np.abs(a[:, c]), out=out)
    return out


def _zero_small(shapes: np.ndarray, threshold: float) -> np.ndarray:
    """A float32 copy of `shapes` (K, V, 3) with each vertex delta shorter than `threshold` set to zero, made one
    shape at a time (no (K, V, 3) temporaries besides the copy)."""
    out = np.zeros(shapes.shape, np.float32)
    for k, shape in enumerate(shapes):
        length2 = shape[:, 0] * shape[:, 0] + shape[:, 1] * shape[:, 1] + shape[:, 2] * shape[:, 2]
        np.copyto(out[k], shape, where=(length2 >= threshold * threshold)[:, None])
    return out



def _moving_meshes(raw: RawMesh, shapes: np.ndarray, doc: GltfDocument) -> dict[int, list]:
    """mesh index -> its parts (first node instance of each primitive), for meshes some shape moves."""
    size = float(np.linalg.norm(np.ptp(raw.vertices, axis=0))) or 1.0
    per_vertex = np.zeros(shapes.shape[1], np.float32)
    for shape in shapes:                      # one shape at a time: no (K, V, 3) temporary
        np.maximum(per_vertex, _row_abs_max(shape), out=per_vertex)
    first_node: dict[int, int] = {}
    out: dict[int, list] = {}
    for part in raw.parts:
        if part.mesh is None:
            continue
        first_node.setdefault(part.mesh, part.node)
        if part.node != first_node[part.mesh]:
            continue
        out.setdefault(part.mesh, []).append(part)
    return {m: parts for m, parts in out.items()
            if any(per_vertex[p.vertex_offset: p.vertex_offset + p.vertex_count].max(initial=0.0) > MOVING_FRACTION * size
                   for p in parts)}


# ----------------------------------------------------------------------------------------------- targets


def _existing_names(mesh: dict) -> list[str]:
    prims = mesh.get("primitives") or []
    n = max((len(p.get("targets") or []) for p in prims), default=0)
    names = (mesh.get("extras") or {}).get("targetNames") if isinstance(mesh.get("extras"), dict) else None
    if not (isinstance(names, list) and len(names) == n):
        first = prims[0].get("extras") if prims and isinstance(prims[0].get("extras"), dict) else {}
        names = first.get("targetNames")
    if not (isinstance(names, list) and len(names) == n):
        names = [str(i) for i in range(n)]       # unnamed targets: three.js names them by index too
    return [str(x) for x in names]


def _add_targets(w: "_Writer", doc: GltfDocument, m: int, parts: list, shapes: np.ndarray, names: list[str],
                 keep_existing: bool, info: AvatarExportInfo) -> dict:
    """Put the shapes on mesh m's primitives. Returns {"count": targets after, "columns": {target index: shape
    index}, "defaults": (count,) default weights, "old_count": targets before}."""
    mesh = w.g["meshes"][m]
    prims = mesh.get("primitives") or []
    existing = _existing_names(mesh)
    old_count = len(existing)
    final_names = list(existing)
    slot: dict[int, int] = {}        # shape index -> target index it is written to
    columns: dict[int, int] = {}     # target index -> shape index driving it in the animation
    for k, name in enumerate(names):
        if name in existing:
            t = existing.index(name)
            columns[t] = k
            if keep_existing:
                info.kept.append(name)
                continue
            slot[k] = t
            info.replaced.append(name)
        else:
            slot[k] = len(final_names)
            columns[slot[k]] = k
            final_names.append(name)
    by_primitive = {p.primitive: p for p in parts}
    for p, prim in enumerate(prims):
        targets = list(prim.get("targets") or [])
        extra_attrs = sorted({a for t in targets for a in t if a != "POSITION"})
        targets += [None] * (len(final_names) - len(targets))
        part = by_primitive.get(p)
        if part is not None and (prim.get("extensions") or {}).get(DRACO):
            w.decode_draco(m, p)
        n_vertices = w.vertex_count(prim)
        inverse = None if part is None else _inverse(part.linear)
        for k, t in slot.items():
            if part is None:
                local = None
            else:
                world = shapes[k, part.vertex_offset: part.vertex_offset + part.vertex_count].astype(np.float64)
                local = np.einsum("nij,nj->ni", inverse, world) if inverse.ndim == 3 else world @ inverse.T
                if len(local) != n_vertices:
                    raise MeshError(f"{doc.filename}: mesh {m} primitive {p} has {n_vertices} vertices in the file "
                                    f"and {len(local)} as read")
            target = {"POSITION": w.target_accessor(local, n_vertices)}
            for a in extra_attrs:
                target[a] = w.zero_accessor(n_vertices, "VEC4" if a == "TANGENT" else "VEC3")
            targets[t] = target
        for t, target in enumerate(targets):
            if target is None:                           # keep-existing left a gap only for names already there
                targets[t] = {"POSITION": w.zero_accessor(n_vertices, "VEC3")}
        prim["targets"] = targets
        if isinstance(prim.get("extras"), dict) and "targetNames" in prim["extras"]:
            prim["extras"]["targetNames"] = list(final_names)
    for node in w.g.get("nodes") or []:            # a node's own default weights cover every target too
        if node.get("mesh") == m and isinstance(node.get("weights"), list):
            node["weights"] = (list(node["weights"]) + [0.0] * len(final_names))[: len(final_names)]
    defaults = list(mesh.get("weights") or [0.0] * old_count)[:old_count]
    defaults += [0.0] * (old_count - len(defaults)) + [0.0] * (len(final_names) - old_count)
    mesh["weights"] = defaults
    extras = mesh.get("extras") if isinstance(mesh.get("extras"), dict) else {}
    extras["targetNames"] = list(final_names)
    mesh["extras"] = extras
    return {"count": len(final_names), "columns": columns, "defaults": np.asarray(defaults, np.float32),
            "old_count": old_count}


def _inverse(linear: np.ndarray) -> np.ndarray:
    """Inverse of a (3, 3) or (n, 3, 3) bind-space map; a degenerate one (a joint scaled to 0) by its
    pseudo-inverse, so its vertices get the part of the delta they can show."""
    try:
        return np.linalg.inv(linear)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(linear)


# ----------------------------------------------------------------------------------------------- VRM


def _vrm_expressions(g: dict, meshes: dict, names: list[str]) -> str:
    """Each new name also becomes a VRM expression binding its target on every moving mesh ("perfect sync": VRM
    apps drive expressions by name): VRM 1.0 `expressions.custom`, VRM 0.x `blendShapeGroups` (preset unknown).
    Expressions the file already has under a name are left as they are. Returns which VRM was extended ('')."""
    exts = g.get("extensions") or {}
    nodes = g.get("nodes") or []
    targets_of = {m: {name: t for t, name in enumerate(g["meshes"][m]["extras"]["targetNames"])} for m in meshes}
    if isinstance(exts.get("VRMC_vrm"), dict):
        expressions = exts["VRMC_vrm"].setdefault("expressions", {})
        custom = expressions.setdefault("custom", {})
        taken = set(custom) | set(expressions.get("preset") or {})
        for name in names:
            if name in taken:
                continue
            binds = [{"node": i, "index": targets_of[n["mesh"]][name], "weight": 1.0}
                     for i, n in enumerate(nodes) if n.get("mesh") in meshes]
            custom[name] = {"morphTargetBinds": binds, "isBinary": False, "overrideBlink": "none",
                            "overrideLookAt": "none", "overrideMouth": "none"}
        return "VRM 1.0"
    if isinstance(exts.get("VRM"), dict):
        master = exts["VRM"].setdefault("blendShapeMaster", {})
        groups = master.setdefault("blendShapeGroups", [])
        taken = {str(grp.get("name")) for grp in groups if isinstance(grp, dict)}
        for name in names:
            if name in taken:
                continue
            binds = [{"mesh": m, "index": targets_of[m][name], "weight": 100} for m in meshes]
            groups.append({"name": name, "presetName": "unknown", "binds": binds, "materialValues": [],
                           "isBinary": False})
        return "VRM 0.x"
    return ""


# ----------------------------------------------------------------------------------------------- animation


def _add_animation(w: "_Writer", meshes: dict, weights: np.ndarray, fps: float, clip_name: str) -> None:
    nodes = w.g.get("nodes") or []
    times = (np.arange(len(weights), dtype=np.float64) / fps).astype(np.float32)
    samplers, channels = [], []
    t_acc = w.array_accessor(times[:, None], "SCALAR", minmax=True)
    for m, spec in meshes.items():
        out = np.repeat(spec["defaults"][None], len(weights), 0)
        for t, k in spec["columns"].items():
            out[:, t] = weights[:, k]
        acc = w.array_accessor(out.reshape(-1, 1), "SCALAR")
        for i, node in enumerate(nodes):
            if node.get("mesh") == m:
                samplers.append({"input": t_acc, "output": acc, "interpolation": "LINEAR"})
                channels.append({"sampler": len(samplers) - 1, "target": {"node": i, "path": "weights"}})
        _widen_weight_animations(w, m, spec)
    if channels:
        w.g.setdefault("animations", []).append({"name": clip_name, "samplers": samplers, "channels": channels})


def _widen_weight_animations(w: "_Writer", m: int, spec: dict) -> None:
    """Existing animations of mesh m's weights get zero columns for the targets added after theirs."""
    old, new = spec["old_count"], spec["count"]
    if new == old or old == 0:
        return
    nodes = {i for i, n in enumerate(w.g.get("nodes") or []) if n.get("mesh") == m}
    for anim in w.g.get("animations") or []:
        widened: dict[int, int] = {}
        for ch in anim.get("channels") or []:
            tgt = ch.get("target") or {}
            if tgt.get("path") != "weights" or tgt.get("node") not in nodes:
                continue
            sampler = (anim.get("samplers") or [])[ch["sampler"]]
            if ch["sampler"] in widened:
                continue
            values = w.doc.accessor(sampler["output"]).reshape(-1, old)
            wide = np.zeros((len(values), new), np.float32)
            wide[:, :old] = values
            sampler["output"] = w.array_accessor(wide.reshape(-1, 1), "SCALAR")
            widened[ch["sampler"]] = sampler["output"]


# ----------------------------------------------------------------------------------------------- writing


class _Writer:
    """The input's JSON (deep copy) with every buffer view's plain bytes laid into one new binary chunk, and new
    accessors appended to it."""

    def __init__(self, doc: GltfDocument, source):
        self.doc = doc
        self.g = copy.deepcopy(doc.json)
        self.bin = bytearray()
        self.decoded_draco: list = []
        folder = Path(source).parent if isinstance(source, (str, Path)) else None
        views = []
        for i, view in enumerate(self.g.get("bufferViews") or []):
            data = doc.views[i]
            new = {k: v for k, v in view.items() if k not in ("buffer", "byteOffset", "byteLength")}
            ext = {k: v for k, v in (new.get("extensions") or {}).items() if k not in (MESHOPT, MESHOPT_KHR)}
            new.pop("extensions", None)
            if ext:
                new["extensions"] = ext
            views.append(self._place(data, new))
        self.g["bufferViews"] = views
        for i, image in enumerate(self.g.get("images") or []):
            uri = image.get("uri")
            if uri is None:
                continue
            mime, data = doc.images()[i]
            if data is None:
                data, mime = self._image_file(folder, str(uri), i)
            self.g["bufferViews"].append(self._place(data, {}))
            image.pop("uri")
            image["bufferView"] = len(self.g["bufferViews"]) - 1
            image["mimeType"] = image.get("mimeType") or mime or _mime_of(data)

    def _image_file(self, folder: Path | None, uri: str, index: int) -> tuple[bytes, str]:
        from urllib.parse import unquote
        if folder is None:
            raise MeshError(f"{self.doc.filename}: image {index} is the external file {uri[:60]}; upload a GLB instead")
        try:
            return (folder / unquote(uri)).read_bytes(), ""
        except OSError:
            raise MeshError(f"{self.doc.filename}: missing external image file {uri[:60]}") from None

    def _place(self, data: bytes, view: dict) -> dict:
        while len(self.bin) % 4:
            self.bin.append(0)
        view = dict(view, buffer=0, byteOffset=len(self.bin), byteLength=len(data))
        self.bin += data
        return view

    def _view(self, data: bytes, target: int | None = None) -> int:
        view = self._place(data, {} if target is None else {"target": target})
        self.g.setdefault("bufferViews", []).append(view)
        return len(self.g["bufferViews"]) - 1

    def _accessor(self, acc: dict) -> int:
        self.g.setdefault("accessors", []).append(acc)
        return len(self.g["accessors"]) - 1

    def array_accessor(self, arr: np.ndarray, type_: str, minmax: bool = False, target: int | None = None,
                       component: int = FLOAT, normalized: bool = False) -> int:
        arr = np.ascontiguousarray(arr)
        acc = {"bufferView": self._view(arr.tobytes(), target), "componentType": component, "count": len(arr),
               "type": type_}
        if normalized:
            acc["normalized"] = True
        if minmax:
            mn, mx = column_min_max(arr)
            acc["min"], acc["max"] = [float(x) for x in mn], [float(x) for x in mx]
        return self._accessor(acc)

    def zero_accessor(self, count: int, type_: str) -> int:
        width = 4 if type_ == "VEC4" else 3
        acc = {"componentType": FLOAT, "count": int(count), "type": type_}
        if type_ == "VEC3":
            acc["min"], acc["max"] = [0.0] * width, [0.0] * width
        return self._accessor(acc)

    def target_accessor(self, local: np.ndarray | None, count: int) -> int:
        """A POSITION target: zeros without data, sparse when few vertices move, else dense float32."""
        if local is None:
            return self.zero_accessor(count, "VEC3")
        local = local.astype(np.float32)
        moved = np.flatnonzero(_row_abs_max(local) > 0)
        if len(moved) == 0:
            return self.zero_accessor(count, "VEC3")
        mn, mx = [[float(x) for x in m] for m in column_min_max(local)]
        if len(moved) * 2 < count:
            index_type, component = (np.uint16, 5123) if count <= 65535 else (np.uint32, 5125)
            idx_view = self._view(moved.astype(index_type).tobytes())
            val_view = self._view(np.ascontiguousarray(local[moved]).tobytes())
            return self._accessor({"componentType": FLOAT, "count": int(count), "type": "VEC3", "min": mn, "max": mx,
                                   "sparse": {"count": int(len(moved)),
                                              "indices": {"bufferView": idx_view, "componentType": component},
                                              "values": {"bufferView": val_view}}})
        acc = {"bufferView": self._view(local.tobytes(), 34962), "componentType": FLOAT, "count": int(count),
               "type": "VEC3", "min": mn, "max": mx}
        return self._accessor(acc)

    def vertex_count(self, prim: dict) -> int:
        return int(self.g["accessors"][prim["attributes"]["POSITION"]]["count"])

    def decode_draco(self, m: int, p: int) -> None:
        """Replace a Draco primitive's attributes and indices by plain accessors of its decoded data."""
        prim = self.g["meshes"][m]["primitives"][p]
        ext = prim["extensions"][DRACO]
        for semantic, acc_index in list(prim["attributes"].items()):
            if semantic not in (ext.get("attributes") or {}):
                continue
            arr = self.doc.attribute(m, p, semantic, as_float=False)
            old = self.doc.json["accessors"][acc_index]
            width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[old["type"]]
            dtype, component = _stored_type(arr, old)
            arr = arr.reshape(len(arr), width).astype(dtype)
            prim["attributes"][semantic] = self.array_accessor(arr, old["type"], minmax=semantic == "POSITION",
                                                               target=34962, component=component,
                                                               normalized=bool(old.get("normalized")) and component != FLOAT)
        faces = self.doc.triangles(m, p, 0).astype(np.uint32).ravel()
        prim["indices"] = self.array_accessor(faces[:, None], "SCALAR", target=34963, component=5125)
        prim["extensions"] = {k: v for k, v in prim["extensions"].items() if k != DRACO}
        if not prim["extensions"]:
            del prim["extensions"]
        self.decoded_draco.append((m, p))

    def finish(self) -> None:
        """Buffers, and the extension lists left consistent with what the file now uses."""
        self.g["buffers"] = [{"byteLength": len(self.bin)}]
        still_draco = any((p.get("extensions") or {}).get(DRACO) for mesh in self.g.get("meshes") or []
                          for p in mesh.get("primitives") or [])
        gone = {MESHOPT, MESHOPT_KHR} | (set() if still_draco else {DRACO})
        for key in ("extensionsUsed", "extensionsRequired"):
            left = [e for e in self.g.get(key) or [] if e not in gone]
            if left:
                self.g[key] = left
            else:
                self.g.pop(key, None)
        for ext in ("extensions",):
            top = self.g.get(ext) or {}
            for name in gone & set(top):
                del top[name]

    def write_glb(self, path) -> None:
        """The GLB onto `path`: header, JSON chunk, then the BIN chunk written from the buffer as it is (no copy
        of the binary data is made)."""
        text = json.dumps(self.g, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        text += b" " * (-len(text) % 4)
        pad = b"\0" * (-len(self.bin) % 4)
        binary_length = len(self.bin) + len(pad)
        total = 12 + 8 + len(text) + 8 + binary_length
        with open(path, "wb") as f:
            f.write(struct.pack("<4sII", b"glTF", 2, total))
            f.write(struct.pack("<I4s", len(text), b"JSON") + text)
            f.write(struct.pack("<I4s", binary_length, b"BIN\0"))
            f.write(memoryview(self.bin))
            f.write(pad)


def _stored_type(arr: np.ndarray, old: dict):
    """The dtype and glTF component type to store a decoded Draco attribute in."""
    if arr.dtype.kind == "f":
        return np.float32, FLOAT
    table = {5121: np.uint8, 5123: np.uint16, 5125: np.uint32, 5120: np.int8, 5122: np.int16}
    component = old.get("componentType")
    if component in table:
        return table[component], component
    return np.float32, FLOAT


def _mime_of(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:2] == b"\xff\xd8":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:12] == b"\xabKTX 20\xbb\r\n\x1a\n":
        return "image/ktx2"
    return "application/octet-stream"
