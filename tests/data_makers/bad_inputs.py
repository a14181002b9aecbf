"""Write the hostile-input corpus to tests/data/bad/ (reliability).

Every case is an upload a user (or an attacker) could give the CLI or the app: a target mesh
(``--target``) or a source clip (``--clip``). ``MANIFEST.json`` lists, per file, its role
(``target`` / ``clip``), whether it must be ``accepted`` (valid but odd) or rejected, and for a
rejected one the substring its one-line error must contain. tests/test_hostile_inputs.py runs the
whole manifest through the loaders, the pipeline and the CLI; the app can iterate the same manifest::

    for case in json.loads((BAD / "MANIFEST.json").read_text())["cases"]: ...

Cases too big to commit (2M-vertex mesh, 10^6-row CSV) are not in the folder: `write_large` makes
them on demand (the tests write them to a temporary folder); they are listed under ``"large"``.

Deterministic: fixed seeds, no network. Run ``python tests/data_makers/bad_inputs.py`` from the repo root.
"""
from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import numpy as np


from nfs import REPO_ROOT
from nfs.clips import MAX_FRAMES
from nfs.arkit import ARKIT_NAMES
from nfs.ict import EXPRESSION_NAMES
from nfs.io import DEFAULT_MAX_VERTICES
from nfs.io.obj import obj_text as nfs_obj_text

BAD_DIR = REPO_ROOT / "tests" / "data" / "bad"
# member names of the traversal / absolute zips: a file with this marker must never appear anywhere
EVIL_MARKER = "nfs_evil_"
TRAVERSAL_MEMBERS = (f"../../{EVIL_MARKER}traversal.obj", f"frames/../../../{EVIL_MARKER}traversal2.obj")
ABSOLUTE_MEMBER = f"/tmp/{EVIL_MARKER}absolute.obj"
LARGE_VERTICES = 2_000_000
LARGE_CSV_ROWS = 1_000_000

# --------------------------------------------------------------------------------------- small meshes

TETRA_V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float64)
TETRA_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int64)


def obj_text(v: np.ndarray, f: np.ndarray, digits: int = 6) -> str:
    """An OBJ of vertices (V, 3) and triangles (F, 3), coordinates to `digits` significant digits."""
    return nfs_obj_text(v, f, number_format=f"%.{digits}g")


def head_mesh(n_vertices: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """The ICT mean head's skin (cm), quadric-decimated: a real face for the accepted cases."""
    from nfs.geometry.remesh import decimate
    from nfs.ict import load_ict

    v, f = load_ict().skin_mesh()
    dv, df = decimate(v, f, n_vertices)
    return np.round(dv, 4), df


def nonmanifold(v: np.ndarray, f: np.ndarray, n_fins: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Add `n_fins` triangles, each on an edge that already has two: 3 triangles meet on those edges."""
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    uniq, count = np.unique(edges, axis=0, return_counts=True)
    interior = uniq[count == 2]
    pick = interior[np.linspace(0, len(interior) - 1, n_fins).astype(int)]
    mid = v[pick].mean(1)
    normal = np.cross(v[pick[:, 1]] - v[pick[:, 0]], [0.0, 0.0, 1.0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    apex = np.round(mid + 0.3 * normal + [0.0, 0.0, 0.4], 4)
    new = len(v) + np.arange(n_fins)
    fins = np.stack([pick[:, 0], pick[:, 1], new], axis=1)
    return np.concatenate([v, apex]), np.concatenate([f, fins])


def many_components(v: np.ndarray, f: np.ndarray, n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The head plus `n` separate tiny triangles scattered around it (dust, stray polygons)."""
    rng = np.random.default_rng(seed)
    lo, hi = v.min(0), v.max(0)
    centres = rng.uniform(lo - 2, hi + 2, (n, 1, 3))
    tris = np.round(centres + rng.normal(0, 0.05, (n, 3, 3)), 4).reshape(-1, 3)
    faces = len(v) + np.arange(3 * n).reshape(n, 3)
    return np.concatenate([v, tris]), np.concatenate([f, faces])


# --------------------------------------------------------------------------------------- archives


FIXED_DATE = (2024, 1, 1, 0, 0, 0)  # member timestamps: the corpus is byte-for-byte reproducible


def member(name: str, method=zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, FIXED_DATE)
    info.compress_type = method
    info.external_attr = 0o644 << 16
    return info


def zip_bytes(members: list[tuple[str | zipfile.ZipInfo, bytes]], method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(member(name, method) if isinstance(name, str) else name, data)
    return buf.getvalue()


def symlink_zip() -> bytes:
    """A frame zip whose second member is a symlink (Unix mode S_IFLNK, target text '/etc/passwd')."""
    link = zipfile.ZipInfo("frame_001.obj", FIXED_DATE)
    link.create_system = 3  # Unix
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zip_bytes([("frame_000.obj", obj_text(TETRA_V, TETRA_F).encode()), (link, b"/etc/passwd")],
                     zipfile.ZIP_STORED)


def zip_bomb(n_bytes: int = 256 << 20) -> bytes:
    """One member of `n_bytes` zeros: deflates ~1000x (256 MiB -> ~250 KB)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open(member("frame_000.obj"), "w", force_zip64=True) as fh:
            chunk = bytes(1 << 20)
            for _ in range(n_bytes >> 20):
                fh.write(chunk)
    return buf.getvalue()


def corrupt_member_zip() -> bytes:
    """A stored (uncompressed) frame zip with one payload byte flipped: its CRC no longer matches."""
    frame = obj_text(TETRA_V, TETRA_F).encode()
    data = bytearray(zip_bytes([("frame_000.obj", frame), ("frame_001.obj", frame)], zipfile.ZIP_STORED))
    at = bytes(data).rindex(b"v 1 0 0")  # inside the second member's payload
    data[at + 2] = ord("7")
    return bytes(data)


def pickled_npz() -> bytes:
    """An .npz whose 'vertices' is an object array: loading it needs pickle (code execution)."""
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = {"exec": "print('pwned')"}, [1, 2, 3]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # what np.savez writes, with fixed dates
        for key, arr in (("vertices", obj), ("faces", TETRA_F)):
            with zf.open(member(key + ".npy", zipfile.ZIP_STORED), "w") as fh:
                np.lib.format.write_array(fh, arr, allow_pickle=True)
    return buf.getvalue()


def glb_bytes(v: np.ndarray, f: np.ndarray) -> bytes:
    import trimesh

    return trimesh.Trimesh(v, f, process=False).export(file_type="glb")


def png_bytes() -> bytes:
    """A real (tiny) PNG: 1x1 grey pixel."""
    import struct
    import zlib

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00\x80")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------------------- CSVs


def codes_csv(n_rows: int = 5, columns=None, nan_at: tuple[int, str] | None = None) -> str:
    columns = list(columns if columns is not None else ("frame",) + tuple(EXPRESSION_NAMES))
    lines = [",".join(columns)]
    for t in range(n_rows):
        row = [str(t) if c == "frame" else ("0.25" if c == "jawOpen" else "0") for c in columns]
        if nan_at and nan_at[0] == t:
            row[columns.index(nan_at[1])] = "nan"
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"


def livelink_csv(n_rows: int = 30, nan_at: tuple[int, str] | None = None) -> str:
    names = [n[0].upper() + n[1:] for n in ARKIT_NAMES]
    lines = [",".join(["Timecode", "BlendShapeCount"] + names)]
    for i in range(n_rows):
        row = [f"12:00:00:{i:02d}.000", str(len(names))] + ["0.1"] * len(names)
        if nan_at and nan_at[0] == i:
            row[2 + names.index(nan_at[1])] = "NaN"
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"



# ------------------------------------------------------------------------ builders of inputs as people have them


def glb_container(gltf: dict, binary: bytes) -> bytes:
    """A GLB file: 12-byte header, JSON chunk, BIN chunk (both padded to 4 bytes)."""
    import struct

    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(binary), b"BIN\0") + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def _position_accessor(v: np.ndarray, buffer_view=None) -> dict:
    acc = {"componentType": 5126, "count": int(len(v)), "type": "VEC3",
           "min": v.min(0).astype(float).tolist(), "max": v.max(0).astype(float).tolist()}
    if buffer_view is not None:
        acc["bufferView"] = buffer_view
    return acc


def draco_glb(v: np.ndarray, f: np.ndarray, quantization_bits: int = 14) -> bytes:
    """A GLB whose one primitive is KHR_draco_mesh_compression data written by DracoPy (Google's encoder)."""
    import DracoPy

    blob = DracoPy.encode(np.asarray(v, np.float32), np.asarray(f, np.uint32), quantization_bits=quantization_bits,
                          preserve_order=True)
    gltf = {
        "asset": {"version": "2.0", "generator": "nfs make_bad_inputs (DracoPy)"},
        "extensionsUsed": ["KHR_draco_mesh_compression"], "extensionsRequired": ["KHR_draco_mesh_compression"],
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": "head"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": 4, "extensions": {
            "KHR_draco_mesh_compression": {"bufferView": 0, "attributes": {"POSITION": 0}}}}]}],
        "accessors": [_position_accessor(np.asarray(v, np.float32)),
                      {"componentType": 5125, "count": int(f.size), "type": "SCALAR"}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(blob)}],
        "buffers": [{"byteLength": len(blob) + (-len(blob) % 4)}],
    }
    return glb_container(gltf, blob)


def meshopt_glb(v: np.ndarray, f: np.ndarray) -> bytes:
    """A GLB whose vertex and index buffers are EXT_meshopt_compression data written by the meshoptimizer
    package's encoders (the codec gltfpack uses), with an empty fallback buffer as gltfpack writes it."""
    import meshoptimizer

    v = np.ascontiguousarray(v, np.float32)
    idx = np.ascontiguousarray(f, np.uint32).reshape(-1)
    vb = meshoptimizer.encode_vertex_buffer(v, len(v), 12)
    ib = meshoptimizer.encode_index_buffer(idx, len(idx), len(v))
    pad = -len(vb) % 4
    binary = vb + b"\0" * pad + ib
    raw_v, raw_i = 12 * len(v), 4 * len(idx)
    gltf = {
        "asset": {"version": "2.0", "generator": "nfs make_bad_inputs (meshoptimizer)"},
        "extensionsUsed": ["EXT_meshopt_compression"], "extensionsRequired": ["EXT_meshopt_compression"],
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": "head"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": 4}]}],
        "accessors": [_position_accessor(v, 0), {"bufferView": 1, "componentType": 5125, "count": int(len(idx)),
                                                 "type": "SCALAR"}],
        "bufferViews": [
            {"buffer": 1, "byteOffset": 0, "byteLength": raw_v, "byteStride": 12, "extensions": {
                "EXT_meshopt_compression": {"buffer": 0, "byteOffset": 0, "byteLength": len(vb), "byteStride": 12,
                                            "count": int(len(v)), "mode": "ATTRIBUTES"}}},
            {"buffer": 1, "byteOffset": raw_v, "byteLength": raw_i, "extensions": {
                "EXT_meshopt_compression": {"buffer": 0, "byteOffset": len(vb) + pad, "byteLength": len(ib),
                                            "byteStride": 4, "count": int(len(idx)), "mode": "TRIANGLES"}}},
        ],
        "buffers": [{"byteLength": len(binary) + (-len(binary) % 4)},
                    {"byteLength": raw_v + raw_i, "extensions": {"EXT_meshopt_compression": {"fallback": True}}}],
    }
    return glb_container(gltf, binary)


def plain_glb(v: np.ndarray, f: np.ndarray, node: dict | None = None, extensions_required=()) -> bytes:
    """An uncompressed GLB written by hand (one node, optional node fields and required extensions)."""
    v = np.ascontiguousarray(v, np.float32)
    idx = np.ascontiguousarray(f, np.uint32).reshape(-1)
    binary = v.tobytes() + idx.tobytes()
    gltf = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, **(node or {})}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "accessors": [_position_accessor(v, 0), {"bufferView": 1, "componentType": 5125, "count": int(len(idx)),
                                                 "type": "SCALAR"}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": v.nbytes},
                        {"buffer": 0, "byteOffset": v.nbytes, "byteLength": idx.nbytes}],
        "buffers": [{"byteLength": len(binary)}],
    }
    if extensions_required:
        gltf["extensionsUsed"] = gltf["extensionsRequired"] = list(extensions_required)
    return glb_container(gltf, binary)


def binary_stl(v: np.ndarray, f: np.ndarray, declared: int | None = None) -> bytes:
    """A binary STL of the triangles (normals zero); `declared` overrides the triangle count in the header."""
    import struct

    tris = np.zeros(len(f), np.dtype([("n", "<f4", 3), ("p", "<f4", (3, 3)), ("a", "<u2")]))
    tris["p"] = v[f]
    head = b"nfs test STL".ljust(80, b" ")
    return head + struct.pack("<I", len(f) if declared is None else declared) + tris.tobytes()


def huge_header_npz() -> bytes:
    """An .npz whose 'vertices' header claims shape (100000, 1000000, 3) float64 (2.4 TB) with 8 bytes of data."""
    header = {"descr": "<f8", "fortran_order": False, "shape": (100_000, 1_000_000, 3)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(b"\0" * 8)
    faces = io.BytesIO()
    np.lib.format.write_array(faces, TETRA_F)
    return zip_bytes([("vertices.npy", buf.getvalue()), ("faces.npy", faces.getvalue())], zipfile.ZIP_STORED)


def livelink_rows(times: list[str], values=None, names=None, sep: str = ",", bom: bool = False,
                  count_column: bool = True) -> bytes:
    """A Live Link Face CSV with the given timecodes; values (rows, names) default to 0.1."""
    names = list(names if names is not None else [n[0].upper() + n[1:] for n in ARKIT_NAMES])
    header = ["Timecode"] + (["BlendShapeCount"] if count_column else []) + names
    lines = [sep.join(header)]
    for i, t in enumerate(times):
        row = [f"{x:.3f}" for x in (values[i] if values is not None else [0.1] * len(names))]
        lines.append(sep.join([t] + ([str(len(names))] if count_column else []) + row))
    return (b"\xef\xbb\xbf" if bom else b"") + ("\n".join(lines) + "\n").encode()


def non_face_meshes() -> dict:
    """Meshes that are not faces (what the CLI and the app must refuse unless forced)."""
    import trimesh

    cube = trimesh.creation.box(extents=(1, 1, 1)).subdivide().subdivide()
    sphere = trimesh.creation.icosphere(3)
    disk = trimesh.creation.cylinder(radius=1.0, height=1e-3, sections=48)
    return {"cube.obj": (cube.vertices, cube.faces), "sphere.obj": (sphere.vertices, sphere.faces),
            "flat_disk.obj": (disk.vertices, disk.faces),
            "single_triangle.obj": (np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.0]]), np.array([[0, 1, 2]]))}


def head_with_torso(n_vertices: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """The decimated ICT head on lofted shoulders and torso (one connected surface)."""
    try:
        from . import synthetic_bodies as bodies
    except ImportError:                 # run as a script: this folder is on sys.path
        import synthetic_bodies as bodies
    v, f = head_mesh(n_vertices)
    return bodies.head_on_shoulders(v, f)

# --------------------------------------------------------------------------------------- the corpus


def cases() -> list[dict]:
    """Every committed case: file name, role, expectation, bytes."""
    head_v, head_f = head_mesh()
    tetra = obj_text(TETRA_V, TETRA_F)
    rng = np.random.default_rng(9)
    codes_header = ["frame"] + list(EXPRESSION_NAMES)
    out = []

    def add(name, role, expect, data, note, accepted=False):
        out.append({"file": name, "role": role, "accepted": accepted, "expect": expect, "note": note,
                    "data": data.encode() if isinstance(data, str) else data})

    # ---- target meshes that must be refused
    add("empty.obj", "target", "empty file", b"", "zero bytes")
    add("whitespace.obj", "target", "empty file", b"  \n\n\t\n", "only whitespace")
    add("garbage.obj", "target", "not text", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "random binary bytes with an .obj extension")
    add("nan_vertices.obj", "target", "non-finite", tetra.replace("v 1 0 0", "v nan 0 0"), "a NaN coordinate")
    add("inf_vertices.obj", "target", "non-finite", tetra.replace("v 0 1 0", "v 0 inf -inf"), "inf coordinates")
    add("face_out_of_range.obj", "target", "face index out of range", tetra + "f 1 2 99\n",
        "a face indexing vertex 99 of 4")
    add("point_cloud.obj", "target", "point clouds are not supported",
        "".join(f"v {x:.4g} {y:.4g} {z:.4g}\n" for x, y, z in head_v[:500]), "only v lines")
    add("zero_area_faces.obj", "target", "no usable triangles",
        "v 0 0 0\nv 1 1 1\nv 2 2 2\nv 3 3 3\nf 1 2 3\nf 2 3 4\nf 1 1 2\n", "collinear and repeated corners only")
    add("malformed_vertex.obj", "target", "malformed vertex line", tetra.replace("v 0 0 1", "v 0 zero 1"),
        "a garbage token in a v line")
    add("png_renamed.obj", "target", "not text", png_bytes(), "a PNG image renamed .obj")
    add("obj_renamed.stl", "target", "unreadable STL", tetra, "OBJ text renamed .stl")
    add("utf16_nobom.obj", "target", "not text", tetra.encode("utf-16-le"), "UTF-16 without a byte-order mark")
    full_glb = glb_bytes(head_v, head_f)
    add("truncated.glb", "target", "unreadable GLB", full_glb[: len(full_glb) // 2], "a GLB cut in half")
    add("no_extension", "target", "unknown extension", tetra, "an OBJ without an extension")

    # ---- target meshes that are odd but valid: must load, clean and prepare
    nv, nf = nonmanifold(head_v, head_f)
    add("nonmanifold_edges.obj", "target", None, obj_text(nv, nf),
        "ICT head + 40 fins: 40 edges shared by 3 triangles", accepted=True)
    cv, cf = many_components(head_v, head_f)
    add("many_components.obj", "target", None, obj_text(cv, cf),
        "ICT head + 400 separate tiny triangles", accepted=True)
    neg = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf -3 -1 -2\nv 0 0 1\nf -4 -3 -1\nf -4 -1 -2\nf -3 -2 -1\n"
    add("negative_indices.obj", "target", None, neg, "relative (negative) face indices: a tetrahedron",
        accepted=True)
    add("latin1.obj", "target", None, ("# tête sculptée par Zoë\no tête\n" + tetra).encode("latin-1"),
        "latin-1 comment and object name", accepted=True)
    add("utf16_bom.obj", "target", None, ("# UTF-16 export\n" + tetra).encode("utf-16"),
        "UTF-16 with a byte-order mark", accepted=True)
    add("utf8_bom.obj", "target", None, b"\xef\xbb\xbf" + tetra.encode(),
        "UTF-8 byte-order mark before the first v line", accepted=True)

    # ---- clips that must be refused
    add("traversal.zip", "clip", "unsafe member path",
        zip_bytes([("frame_000.obj", tetra.encode())] + [(m, tetra.encode()) for m in TRAVERSAL_MEMBERS]),
        "members named ../../ (path traversal)")
    add("absolute.zip", "clip", "unsafe member path",
        zip_bytes([("frame_000.obj", tetra.encode()), (ABSOLUTE_MEMBER, tetra.encode())]),
        "a member with an absolute path")
    add("symlink.zip", "clip", "symbolic link", symlink_zip(), "a member that is a symlink to /etc/passwd")
    add("zip_bomb.zip", "clip", "zip bomb", zip_bomb(), "256 MiB of zeros in one member (~1000x)")
    add("corrupt_member.zip", "clip", "corrupt", corrupt_member_zip(), "a stored member whose CRC does not match")
    add("not_a_zip.zip", "clip", "not a readable zip", rng.integers(0, 256, 2048, dtype=np.uint8).tobytes(),
        "random bytes named .zip")
    small = obj_text(TETRA_V, TETRA_F).encode()
    bigger = obj_text(np.concatenate([TETRA_V, [[1, 1, 1]]]), TETRA_F).encode()
    add("mismatched_frames.zip", "clip", "expected 4",
        zip_bytes([("frame_000.obj", small), ("frame_001.obj", small), ("frame_002.obj", bigger)]),
        "OBJ frames with 4, 4 and 5 vertices")
    add("pickled.npz", "clip", "allow_pickle", pickled_npz(), "an object array (pickle) as 'vertices'")
    add("codes_missing_columns.csv", "clip", "missing columns", codes_csv(columns=codes_header[:-3]),
        "the last three ICT columns dropped")
    add("codes_extra_columns.csv", "clip", "unknown columns", codes_csv(columns=codes_header + ["wiggleEars"]),
        "an unknown column")
    add("codes_nan.csv", "clip", "non-finite", codes_csv(nan_at=(2, "jawOpen")), "nan in a weight")
    add("livelink_nan.csv", "clip", "non-finite", livelink_csv(nan_at=(3, "JawOpen")), "NaN in a Live Link CSV")
    add("empty.csv", "clip", "empty", b"", "zero bytes")
    add("binary.csv", "clip", "not UTF-8", rng.integers(128, 256, 1024, dtype=np.uint8).tobytes(),
        "bytes that are not UTF-8")
    add("huge_field.csv", "clip", "field larger than field limit", "frame," + "x" * 300_000 + "\n0,1\n",
        "a 300 kB header field")
    add("unsupported.txt", "clip", "unsupported clip format", tetra, "an unknown clip extension")
    _everyday_cases(add, head_v, head_f, tetra)
    return out


def _everyday_cases(add, head_v, head_f, tetra):
    """Inputs as people have them: compressed glTF, scans, heads on bodies, Live Link and zip quirks."""
    # ---- not faces: refused unless forced
    for name, (v, f) in non_face_meshes().items():
        add(name, "target", "does not look like a face", obj_text(np.asarray(v), np.asarray(f)),
            f"a {name[:-4].replace('_', ' ')}, not a face")
    # ---- heads as people have them: accepted
    tv, tf = head_with_torso()
    add("head_with_torso.obj", "target", None, obj_text(tv, tf), "the head on lofted shoulders and torso", True)
    add("draco.glb", "target", None, draco_glb(head_v, head_f), "KHR_draco_mesh_compression (DracoPy)", True)
    add("meshopt.glb", "target", None, meshopt_glb(head_v, head_f), "EXT_meshopt_compression (meshoptimizer)",
        True)
    add("head.stl", "target", None, binary_stl(head_v, head_f), "binary STL: a triangle soup of the head", True)
    partial = obj_text(head_v, head_f).split("\n")
    vt = [f"vt {x:.4f} {y:.4f}" for x, y in (head_v[:, :2] - head_v[:, :2].min(0)) / np.ptp(head_v[:, :2], 0)]
    faces = [ln for ln in partial if ln.startswith("f ")]
    faces = [("f " + " ".join(f"{i}/{i}" for i in ln[2:].split())) if k % 3 else
             ("f " + " ".join(f"{i}//{i}" for i in ln[2:].split())) for k, ln in enumerate(faces)]
    vn = [f"vn 0 0 1" for _ in range(len(head_v))]
    add("partial_uv.obj", "target", None, "\n".join([ln for ln in partial if ln.startswith("v ")] + vt + vn + faces)
        + "\n", "a third of the faces have no vt (a//n corners)", True)
    # ---- targets that must be refused with the right message
    add("coordinates_1e200.obj", "target", "coordinates too large", obj_text(TETRA_V * 1e200, TETRA_F, 8),
        "coordinates scaled by 1e200")
    add("identical_vertices.obj", "target", "all vertices are at the same point",
        "v 1 2 3\nv 1 2 3\nv 1 2 3\nv 1 2 3\nf 1 2 3\nf 1 3 4\n", "four vertices at one point")
    add("node_scale_zero.glb", "target", "scale 0", plain_glb(head_v, head_f, {"scale": [0.0, 0.0, 0.0]}),
        "the only node has scale 0")
    add("stl_wrong_count.stl", "target", "triangle count", binary_stl(head_v, head_f, declared=len(head_f) + 1000),
        "binary STL header promises 1000 more triangles than it has")
    add("unknown_extension.glb", "target", "KHR_fancy_future_compression",
        plain_glb(head_v, head_f, extensions_required=["KHR_fancy_future_compression"]),
        "a required glTF extension nobody supports")
    add("ply_huge_count.ply", "target", "declares",
        "ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\nproperty float x\nproperty float y\n"
        "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n" + "\0" * 64,
        "a PLY header declaring 4e9 vertices")
    add("off_huge_count.off", "target", "too many vertices", "OFF\n900000000000 1 0\n0 0 0\n3 0 0 0\n",
        "an OFF header declaring 9e11 vertices")
    add("gltf_outside_uri.gltf", "target", "outside",
        json.dumps({"asset": {"version": "2.0"}, "buffers": [{"uri": "../../../../etc/passwd", "byteLength": 64}],
                    "meshes": [], "scenes": [{"nodes": []}]}),
        "a buffer uri pointing outside the file's folder")
    add("ascii_stl_garbage.stl", "target", "unreadable STL", "solid x\nfacet normal 0 0 1\nouter loop\n"
        "vertex 0 0 zero\nendloop\nendfacet\nendsolid x\n", "ASCII STL with a word for a coordinate")
    add("obj_only_lines.obj", "target", "point clouds are not supported", "v 0 0 0\nv 1 0 0\nv 0 1 0\nl 1 2\nl 2 3\n",
        "an OBJ with polylines and no faces")
    add("obj_zero_index.obj", "target", "indices start at 1", tetra + "f 0 1 2\n", "an OBJ face with index 0")
    add("obj_huge_index.obj", "target", "face index out of range", tetra + "f 1 2 99999999999999999999999\n",
        "an OBJ face index beyond 64 bits")
    # ---- Live Link takes as people have them
    ll_names = [n[0].upper() + n[1:] for n in ARKIT_NAMES]
    add("livelink_shared_timecode.csv", "clip", None, livelink_rows(["12:00:00:00.000"] * 300),
        "300 rows with one timecode: taken at the default rate, with a warning", True)
    add("livelink_25_rows_30fps.csv", "clip", None, livelink_rows([f"12:00:00:{i:02d}.000" for i in range(25)]),
        "25 rows inside one second, frame numbers at 30 fps: 0.83 s", True)
    add("livelink_bom_no_count.csv", "clip", None,
        livelink_rows([f"12:00:00:{i:02d}.000" for i in range(10)], bom=True, count_column=False),
        "UTF-8 BOM and no BlendShapeCount column", True)
    add("livelink_semicolon.csv", "clip", "separated by ';'",
        livelink_rows([f"12:00:00:{i:02d}.000" for i in range(10)], sep=";"), "';' instead of ','")
    no_tongue = [n for n in ll_names if n.lower() != "tongueout"]
    add("livelink_no_tongue.csv", "clip", None,
        livelink_rows([f"12:00:00:{i:02d}.000" for i in range(10)], names=no_tongue), "no TongueOut column", True)
    clipped = np.full((10, len(ll_names)), 0.1)
    clipped[3, ll_names.index("JawOpen")], clipped[4, ll_names.index("MouthSmileLeft")] = 1.8, -0.6
    add("livelink_clipped.csv", "clip", None,
        livelink_rows([f"12:00:00:{i:02d}.000" for i in range(10)], values=clipped),
        "weights 1.8 and -0.6: clipped with a warning", True)
    add("livelink_bad_timecode.csv", "clip", "cannot read timecode",
        livelink_rows(["12:00:00:00.000", "noon", "12:00:00:02.000"]), "a row whose timecode is a word")
    # ---- zips as people have them
    frame = obj_text(TETRA_V, TETRA_F).encode()
    add("macos_finder.zip", "clip", None, zip_bytes([("take/frame_0000.obj", frame), ("take/frame_0001.obj", frame),
                                                   ("__MACOSX/take/._frame_0000.obj", b"\0\5\26\7" + b"\0" * 60),
                                                   ("take/.DS_Store", b"\0\0\0\1Bud1" + b"\0" * 40)]),
        "a Finder zip: __MACOSX/._* resource forks and .DS_Store", True)
    add("two_takes.zip", "clip", "2 take folders", zip_bytes(
        [("take_a/frame_0000.obj", frame), ("take_a/frame_0001.obj", frame),
         ("take_b/frame_0000.obj", frame), ("take_b/frame_0001.obj", frame)]), "two take folders in one zip")
    add("zip_no_frames.zip", "clip", "no OBJ frames", zip_bytes([("readme.txt", b"hello")]),
        "a zip without any OBJ frame")
    add("huge_header.npz", "clip", "declares", huge_header_npz(), "an .npy header claiming 2.4 TB")
    add("npz_no_faces.npz", "clip", "faces", _npz({"vertices": np.zeros((2, 4, 3))}), "vertices but no faces")
    add("npz_bad_shape.npz", "clip", "vertices", _npz({"vertices": np.zeros((2, 4, 2)), "faces": TETRA_F}),
        "vertices of shape (2, 4, 2)")
    add("codes_semicolon.csv", "clip", "separated by ';'",
        codes_csv().replace(",", ";"), "an ICT-weights CSV separated by ';'")
    add("codes_only_header.csv", "clip", "no frames", codes_csv(n_rows=0), "a header and nothing else")
    add("codes_text_value.csv", "clip", "not a number", codes_csv().replace("0.25", "high", 1), "a word as a weight")


def _npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for key, arr in arrays.items():
            with zf.open(member(key + ".npy", zipfile.ZIP_STORED), "w") as fh:
                np.lib.format.write_array(fh, np.asarray(arr))
    return buf.getvalue()


def write_corpus(out_dir: Path = BAD_DIR) -> list[dict]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for case in cases():
        (out_dir / case["file"]).write_bytes(case["data"])
        entries.append({k: case[k] for k in ("file", "role", "accepted", "expect", "note")})
    manifest = {
        "about": "Hostile uploads for the CLI and the app. role: target mesh or source clip. "
                 "accepted: must load and prepare; otherwise the one-line error must contain `expect` "
                 "(case-insensitive). `large` cases are generated by tests/data_makers/bad_inputs.py write_large().",
        "cases": entries,
        "large": [
            {"file": "two_million_vertices.obj", "role": "target", "accepted": False, "expect": "too many vertices",
             "note": f"{LARGE_VERTICES:,} vertices, limit {DEFAULT_MAX_VERTICES:,}"},
            {"file": "million_rows.csv", "role": "clip", "accepted": False, "expect": f"more than {MAX_FRAMES} rows",
             "note": f"{LARGE_CSV_ROWS:,} rows, limit {MAX_FRAMES:,} frames"},
        ],
    }
    text = json.dumps(manifest, indent=1)
    for e in manifest["cases"] + manifest["large"]:  # one line per case: easy to read and to diff
        text = text.replace(json.dumps(e, indent=1).replace("\n", "\n  "), json.dumps(e))
    (out_dir / "MANIFEST.json").write_text(text + "\n")
    return entries


def write_large(name: str, out_dir: Path) -> Path:
    """Write one of the large cases into `out_dir` (fast: numpy formatting, ~1 s each)."""
    path = Path(out_dir) / name
    if name == "two_million_vertices.obj":
        n = LARGE_VERTICES
        rng = np.random.default_rng(0)
        v = rng.integers(0, 1000, (n, 3)).astype(np.int32)
        with open(path, "wb") as fh:
            fh.write(("v %d %d %d\n" * 10_000 % tuple(v[:10_000].ravel())).encode())
            # the rest repeat one block: counting, not content, is what the limit is about
            block = ("v %d %d %d\n" * 10_000 % tuple(v[10_000:20_000].ravel())).encode()
            for _ in range((n - 10_000) // 10_000):
                fh.write(block)
            fh.write(b"f 1 2 3\n")
    elif name == "million_rows.csv":
        header = ",".join(["frame"] + list(EXPRESSION_NAMES)) + "\n"
        zeros = ",0" * len(EXPRESSION_NAMES)
        with open(path, "w") as fh:
            fh.write(header)
            for start in range(0, LARGE_CSV_ROWS, 50_000):
                fh.write("".join(f"{t}{zeros}\n" for t in range(start, start + 50_000)))
    else:
        raise ValueError(f"unknown large case {name!r}")
    return path


if __name__ == "__main__":
    written = write_corpus()
    total = sum((BAD_DIR / e["file"]).stat().st_size for e in written)
    for e in written:
        size = (BAD_DIR / e["file"]).stat().st_size
        print(f"{e['file']:<28} {e['role']:<7} {size:>9,} B  {'ACCEPT' if e['accepted'] else e['expect']}")
    print(f"{len(written)} files, {total / 1e6:.2f} MB in {BAD_DIR}")
