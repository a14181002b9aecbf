"""Fuzzing the loaders: whatever the bytes, a loader returns a valid result or raises its own
one-line error (MeshError / ClipError), never another exception.

Kept small (max_examples ~100-150, no deadline) so the file runs in well under 30 s on a busy CPU.
"""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfs.clips import MAX_FRAMES, Clip, ClipError
from nfs.io import load_codes_csv, load_livelink_csv, load_mesh_sequence
from nfs.arkit import ARKIT_NAMES
from nfs.ict import EXPRESSION_NAMES
from nfs.io import DEFAULT_MAX_VERTICES, MeshError, RawMesh, load_mesh_bytes

N_EXAMPLES = int(os.environ.get("NFS_FUZZ_EXAMPLES", 150))  # raise it for a longer local hunt
FUZZ = settings(max_examples=N_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_raw_mesh(mesh: RawMesh) -> None:
    v, f = mesh.vertices, mesh.faces
    assert v.ndim == 2 and v.shape[1] == 3 and 0 < len(v) <= DEFAULT_MAX_VERTICES
    assert np.isfinite(v).all()
    assert f.ndim == 2 and f.shape[1] == 3 and len(f) > 0 and f.dtype.kind == "i"
    assert f.min() >= 0 and f.max() < len(v)
    assert len(mesh.face_polygon) == len(f)
    if mesh.uv is not None:
        assert mesh.uv.shape == (len(v), 2)
    if mesh.corner_uv is not None:
        assert mesh.corner_uv.shape == (len(f), 3, 2)


def load_or_mesh_error(data: bytes, filename: str) -> None:
    try:
        mesh = load_mesh_bytes(data, filename)
    except MeshError as e:
        assert str(e) and "\n" not in str(e)
        return
    check_raw_mesh(mesh)


# ------------------------------------------------------------------------------------------- meshes


@FUZZ
@given(data=st.binary(max_size=2048), ext=st.sampled_from([".obj", ".obj", ".off", ".ply", ".stl", ".glb"]))
def test_random_bytes_never_crash_the_mesh_loader(data, ext):
    load_or_mesh_error(data, "x" + ext)


NUMBER = st.one_of(
    st.integers(-5, 5).map(str),
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr),
    st.sampled_from(["nan", "-inf", "1e400", "-0", "0x1F", "1,5", "1.2.3", "", "abc", "1e", "+", "∞", "\x00"]),
)
INDEX = st.one_of(st.integers(-12, 12), st.integers(-2**70, 2**70)).map(str)
CORNER = st.one_of(
    INDEX,
    st.builds(lambda a, b: f"{a}/{b}", INDEX, INDEX),
    st.builds(lambda a, c: f"{a}//{c}", INDEX, INDEX),
    st.builds(lambda a, b, c: f"{a}/{b}/{c}", INDEX, INDEX, INDEX),
    st.sampled_from(["/", "//", "1/", "/1", "x", "1/2/3/4", "1.5", "#", ""]),
)
SEP = st.sampled_from([" ", " ", " ", "  ", "\t", " \\\n "])


def _line(tag, items):
    return st.builds(lambda xs, sep: tag + sep + sep.join(xs), st.lists(items, min_size=0, max_size=5), SEP)


OBJ_LINE = st.one_of(
    _line("v", NUMBER), _line("v", NUMBER), _line("v", NUMBER),
    _line("vt", NUMBER), _line("vn", NUMBER),
    _line("f", CORNER), _line("f", CORNER), _line("f", CORNER), _line("l", CORNER),
    st.sampled_from(["", "# comment", "o head", "g skin", "s off", "usemtl skin", "mtllib x.mtl", "   ", "v", "f",
                     "f ", "f 1 2 3", "f -1 -2 -3", "f 1/1 2/2 3/3", "vt 0 0", "\ufeffv 0 0 0", "vp 1 2"]),
    st.text(max_size=20),
)
VALID_VERTICES = ["v 0 0 0", "v 1 0 0", "v 0 1 0", "v 0 0 1"]


@FUZZ
@given(lines=st.lists(OBJ_LINE, max_size=40), prefix=st.booleans(), newline=st.sampled_from(["\n", "\r\n", "\r"]),
       encoding=st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16"]))
def test_structured_obj_text_gives_a_valid_mesh_or_a_mesh_error(lines, prefix, newline, encoding):
    text = newline.join((VALID_VERTICES if prefix else []) + lines)
    load_or_mesh_error(text.encode(encoding, errors="replace"), "x.obj")


OFF_ROW = st.one_of(
    st.lists(NUMBER, max_size=4).map(" ".join),
    st.lists(st.integers(-4, 6), min_size=1, max_size=6).map(lambda xs: " ".join(map(str, xs))),
    st.sampled_from(["3 0 1 2", "4 0 1 2 3", "# comment", "", "99999999999999999999999 0 1 2", "-3 0 1 2 3 3"]),
)


@FUZZ
@given(header=st.sampled_from(["OFF", "COFF", "NOFF", "OFF 4 2 0", "off", "OF", ""]),
       counts=st.tuples(st.integers(-2, 6), st.integers(-2, 6), st.integers(-1, 1)), with_counts=st.booleans(),
       rows=st.lists(OFF_ROW, max_size=14))
def test_structured_off_text_gives_a_valid_mesh_or_a_mesh_error(header, counts, with_counts, rows):
    lines = [header] + ([" ".join(map(str, counts))] if with_counts else []) + rows
    load_or_mesh_error("\n".join(lines).encode(), "x.off")


@FUZZ
@given(n_v=st.integers(1, 30), faces=st.lists(st.lists(st.integers(-35, 35), min_size=3, max_size=6), min_size=1,
                                                 max_size=30), seed=st.integers(0, 2**16))
def test_plausible_obj_faces_load_exactly_or_are_refused(n_v, faces, seed):
    """Mostly-valid OBJ: when it loads, every triangle corner is the vertex the file named (negative
    indices relative to the vertices above the face line, all of which come first here)."""
    v = np.random.default_rng(seed).normal(size=(n_v, 3)).round(4)
    text = "".join(f"v {x} {y} {z}\n" for x, y, z in v) + "".join("f " + " ".join(map(str, c)) + "\n" for c in faces)
    try:
        mesh = load_mesh_bytes(text.encode(), "x.obj")
    except MeshError:
        absolute = [i if i > 0 else n_v + 1 + i for c in faces for i in c]
        if all(1 <= i <= n_v for i in absolute):  # valid indices: refused only for naming no extent at all
            used = v[np.unique(absolute) - 1]
            assert not (np.ptp(used, axis=0) > 0).any()
        return
    check_raw_mesh(mesh)
    want = [[(i - 1 if i > 0 else n_v + i) for i in (c[0], c[k], c[k + 1])]
            for c in faces for k in range(1, len(c) - 1)]
    np.testing.assert_array_equal(mesh.faces, np.array(want).reshape(-1, 3))
    np.testing.assert_allclose(mesh.vertices, v)


# ------------------------------------------------------------------------------------------- CSV clips


def check_codes_clip(clip: Clip) -> None:
    assert clip.kind == "codes"
    assert clip.codes.shape[1] == len(EXPRESSION_NAMES) and 0 < len(clip.codes) <= MAX_FRAMES
    assert np.isfinite(clip.codes).all() and clip.codes.min() >= 0 and clip.codes.max() <= 1
    assert np.isfinite(clip.fps) and clip.fps > 0


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "clip.csv"


def load_csv_or_clip_error(loader, path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        clip = loader(path)
    except ClipError as e:
        assert str(e) and "\n" not in str(e)
        return
    check_codes_clip(clip)


CELL = st.one_of(
    st.floats(-2, 2).map(lambda x: f"{x:.3f}"),
    st.sampled_from(["0", "1", "0.5", "nan", "inf", "-inf", "", " ", "x", "1e999", '"1,2"', '"a\nb"', '"', "1;2"]),
)
CODES_HEADER = ["frame"] + list(EXPRESSION_NAMES)
LIVELINK_HEADER = ["Timecode", "BlendShapeCount"] + [n[0].upper() + n[1:] for n in ARKIT_NAMES] + ["HeadYaw"]


def _mutated_header(base):
    """The valid header, sometimes with a column dropped, renamed, duplicated, re-cased or added."""
    def mutate(ops):
        cols = list(base)
        for op, k, name in ops:
            k %= len(cols)
            if op == "drop" and len(cols) > 1:
                cols.pop(k)
            elif op == "dup":
                cols.insert(k, cols[k])
            elif op == "case":
                cols[k] = cols[k].upper()
            elif op == "add":
                cols.insert(k, name)
        return cols
    ops = st.lists(st.tuples(st.sampled_from(["drop", "dup", "case", "add", "keep", "keep"]), st.integers(0, 60),
                             st.sampled_from(["junk", "", "Timecode", "frame", "JawOpen", "é"])), max_size=3)
    return ops.map(mutate)


def _timecode(i, jitter):
    return st.sampled_from([f"00:00:{i // 60:02d}:{i % 60:02d}.{jitter}", f"00:00:00:{i}", "garbage", "",
                            f"23:59:59:{i % 60:02d}", f"1:2:3;{i % 30}"])


def _rows(header, timecode: bool):
    n = len(header)
    row = st.lists(CELL, min_size=n, max_size=n + 1 if n else 1)
    if timecode:
        row = st.builds(lambda r, tc: ([tc] + r[1:]) if r else r, row,
                        st.integers(0, 500).flatmap(lambda i: _timecode(i, 0)))
    return st.lists(row, max_size=12)


def _csv_text(header_strategy, timecode: bool):
    def render(header_rows):
        header, rows = header_rows
        return "\n".join(",".join(r) for r in [header] + rows) + "\n"
    return header_strategy.flatmap(lambda h: _rows(h, timecode).map(lambda rows: (h, rows))).map(render)


def _valid_codes_csv(n_rows):
    rows = [[str(t)] + ["0.5"] * len(EXPRESSION_NAMES) for t in range(n_rows)]
    return "\n".join(",".join(r) for r in [CODES_HEADER] + rows) + "\n"


@FUZZ
@given(text=st.one_of(_csv_text(_mutated_header(CODES_HEADER), False), st.text(max_size=300),
                      st.integers(1, 20).map(_valid_codes_csv)),
       raw=st.binary(max_size=64), use_raw=st.booleans(), crlf=st.booleans())
def test_codes_csv_gives_a_valid_clip_or_a_clip_error(csv_path, text, raw, use_raw, crlf):
    data = raw if use_raw and raw else (text.replace("\n", "\r\n") if crlf else text).encode("utf-8")
    load_csv_or_clip_error(load_codes_csv, csv_path, data)


@FUZZ
@given(text=st.one_of(_csv_text(_mutated_header(LIVELINK_HEADER), True), st.text(max_size=300)))
def test_livelink_csv_gives_a_valid_clip_or_a_clip_error(csv_path, text):
    load_csv_or_clip_error(load_livelink_csv, csv_path, text.encode("utf-8"))


# ------------------------------------------------------------------------------------------- zips


def _frame_zip() -> bytes:
    tetra = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for t in range(3):
            zf.writestr(f"frame_{t:03d}.obj", tetra.replace("v 0 0 1", f"v 0 0 {1 + t / 10}"))
    return buf.getvalue()


FRAME_ZIP = _frame_zip()


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(FRAME_ZIP) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, len(FRAME_ZIP))))
def test_corrupted_frame_zip_gives_a_clip_or_a_clip_error(tmp_path_factory, flips, cut):
    data = bytearray(FRAME_ZIP)
    for at, value in flips:
        data[at] = value
    path = tmp_path_factory.getbasetemp() / "fuzz_frames.zip"
    path.write_bytes(bytes(data[:cut]))
    try:
        clip = load_mesh_sequence(path)
    except ClipError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert clip.kind == "meshes" and np.isfinite(clip.frames).all()
    assert clip.faces.min() >= 0 and clip.faces.max() < clip.frames.shape[1]
