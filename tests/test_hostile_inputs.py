"""Hostile and odd uploads: every case of tests/data/bad/MANIFEST.json through the loaders, the
pipeline's first steps and the CLI. Refused inputs give one line naming the problem (and, except where
noted, the file); valid-but-odd ones are accepted and prepared. Nothing is ever written outside the
output folder. The corpus is written by tests/data_makers/bad_inputs.py; the large cases are made here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from nfs import REPO_ROOT
from nfs.__main__ import main as cli_main
from nfs.clips import MAX_FRAMES, ClipError
from nfs.io import DEFAULT_MAX_VERTICES, MeshError, load_mesh
from nfs.model.checkpoint import save_model
from nfs.model.config import get_preset
from nfs.model.network import NFSNetwork
from nfs.mesh.clean import clean_mesh
from nfs.pipeline import as_raw_mesh, load_clip, prepare_target
from nfs.regions import N_REGIONS

from data_makers import bad_inputs as corpus  # noqa: E402

BAD = REPO_ROOT / "tests" / "data" / "bad"
MANIFEST = json.loads((BAD / "MANIFEST.json").read_text())
CASES = {c["file"]: c for c in MANIFEST["cases"]}
REFUSED = sorted(n for n, c in CASES.items() if not c["accepted"])
ACCEPTED = sorted(n for n, c in CASES.items() if c["accepted"])
# messages that cannot name the file: fixed wording pinned by tests/test_mesh_io.py, and clean_mesh (arrays only)
FILELESS = ("point clouds are not supported", "no usable triangles left")
# a case's minimum: the corpus grows with every input a user reported (36 cases at first, 70 later)
MIN_CASES = 70
VALID_TARGET = BAD / "negative_indices.obj"  # a tetrahedron: the target for CLI runs of the clip cases


def tiny_model() -> NFSNetwork:
    torch.manual_seed(0)
    return NFSNetwork(get_preset("tiny", n_regions=N_REGIONS)).eval()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("tiny_model")
    save_model(path, model, {"note": "hostile-input tests"})
    return path


def run_loaders(case: dict, path: Path, model: NFSNetwork):
    """What the app and the CLI call: load_mesh (as_raw_mesh) and prepare_target for a target, load_clip
    for a clip."""
    if case["role"] == "target":
        as_raw_mesh(path)
        return prepare_target(path, model, use_cache=False)
    return load_clip(path)


def assert_one_line(message: str, case: dict, path: Path) -> None:
    assert message and "\n" not in message and "Traceback" not in message
    assert case["expect"].lower() in message.lower(), message
    if not message.startswith(FILELESS):
        assert path.name in message or path.stem in message, message


def evil_files(*bases: Path) -> list[Path]:
    """Anything a traversal / absolute zip member could have produced, seen from the given folders."""
    names = list(corpus.TRAVERSAL_MEMBERS) + [corpus.ABSOLUTE_MEMBER]
    found = {p for p in [Path(corpus.ABSOLUTE_MEMBER)] if p.exists()}
    for base in bases:
        found |= {p for name in names if (p := (base / name.lstrip("/")).resolve()).exists()}
        found |= {p for p in base.iterdir() if corpus.EVIL_MARKER in p.name} if base.is_dir() else set()
    return sorted(found)


# ------------------------------------------------------------------------------------------- the corpus


def test_corpus_is_complete_and_small():
    on_disk = {p.name for p in BAD.iterdir()} - {"MANIFEST.json"}
    assert on_disk == set(CASES)
    assert len(CASES) >= MIN_CASES
    assert sum((BAD / n).stat().st_size for n in CASES) < 2_000_000
    for case in MANIFEST["cases"] + MANIFEST["large"]:
        assert case["role"] in ("target", "clip") and (case["accepted"] or case["expect"])


# ------------------------------------------------------------------------------------------- loaders


@pytest.mark.parametrize("name", REFUSED)
def test_refused_case_gives_one_line_error(name, tmp_path, model):
    case, path = CASES[name], BAD / name
    before = set(os.listdir(tmp_path.parent))
    with pytest.raises(ValueError) as err:  # MeshError and ClipError are ValueErrors
        run_loaders(case, path, model)
    assert isinstance(err.value, MeshError if case["role"] == "target" else ClipError), repr(err.value)
    assert_one_line(str(err.value), case, path)
    assert set(os.listdir(tmp_path.parent)) == before
    assert not evil_files(tmp_path, tmp_path.parent, BAD, REPO_ROOT, Path.cwd())


def test_accepted_targets_load_exactly():
    tetra = corpus.TETRA_V
    for name in ("latin1.obj", "utf16_bom.obj", "utf8_bom.obj"):
        raw = load_mesh(BAD / name)
        np.testing.assert_array_equal(raw.vertices, tetra, err_msg=name)
        np.testing.assert_array_equal(raw.faces, corpus.TETRA_F, err_msg=name)
    raw = load_mesh(VALID_TARGET)  # relative indices: f -3 -1 -2 after 3 vertices, then after 4
    np.testing.assert_array_equal(raw.faces, [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    assert raw.notes == []


@pytest.mark.parametrize("name", [n for n in ACCEPTED if CASES[n]["role"] == "target"])
def test_every_accepted_target_loads_and_cleans(name):
    raw = load_mesh(BAD / name)
    assert raw.n_vertices > 0 and np.isfinite(raw.vertices).all()
    assert raw.uv is None or np.isfinite(raw.uv).all()
    assert raw.corner_uv is None or np.isfinite(raw.corner_uv).all()
    clean_mesh(raw.vertices, raw.faces)


@pytest.mark.parametrize("name", [n for n in ACCEPTED if CASES[n]["role"] == "clip"])
def test_every_accepted_clip_loads(name):
    clip = load_clip(BAD / name)
    assert clip.n_frames >= 2 and clip.fps > 0
    assert clip.codes is None or (np.isfinite(clip.codes).all() and clip.codes.min() >= 0)


@pytest.mark.parametrize("name", ["nonmanifold_edges.obj", "many_components.obj"])
def test_odd_but_valid_targets_are_prepared(name, model):
    raw = load_mesh(BAD / name)
    prepared = run_loaders(CASES[name], BAD / name, model)
    report = prepared.clean.report
    if name == "nonmanifold_edges.obj":
        edges = np.sort(raw.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        _, count = np.unique(edges, axis=0, return_counts=True)
        assert (count == 3).sum() == 40  # the fins are kept, not repaired away
        assert report.skin_faces == raw.n_faces and report.n_components == 1
    else:
        assert report.n_components == 401 and len(prepared.clean.other_components) == 400
        assert report.skin_vertices < 2000 and report.skin_area_fraction > 0.99  # the head is the skin
    assert prepared.alignment.residual_cm < 0.5  # an ICT head aligns onto ICT
    assert np.isfinite(prepared.skin_vertices_ict).all()
    assert prepared.binding.matrix.shape[0] == raw.n_vertices


# ------------------------------------------------------------------------------------------- large cases


def test_two_million_vertex_mesh_is_refused_before_parsing(tmp_path):
    path = corpus.write_large("two_million_vertices.obj", tmp_path)
    size = path.stat().st_size
    tracemalloc.start()
    t = time.perf_counter()
    with pytest.raises(MeshError, match="too many vertices") as err:
        load_mesh(path)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert f"{corpus.LARGE_VERTICES:,} > limit {DEFAULT_MAX_VERTICES:,}" in str(err.value)
    assert path.name in str(err.value)
    # counted in the raw bytes: no decode, no line list (which took ~10x the file size)
    assert peak < 1.5 * size, f"peak {peak / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"
    assert seconds < 5.0
    print(f"2M-vertex OBJ ({size / 1e6:.0f} MB): refused in {seconds:.2f} s, peak {peak / 1e6:.0f} MB traced")


def test_million_row_csv_is_refused_without_reading_it_all(tmp_path):
    path = corpus.write_large("million_rows.csv", tmp_path)
    size = path.stat().st_size
    tracemalloc.start()
    t = time.perf_counter()
    with pytest.raises(ClipError, match=f"more than {MAX_FRAMES} rows") as err:
        load_clip(path)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert path.name in str(err.value)
    assert peak < 40e6 and peak < size / 4, f"peak {peak / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"
    assert seconds < 5.0
    print(f"10^6-row CSV ({size / 1e6:.0f} MB): refused in {seconds:.2f} s, peak {peak / 1e6:.1f} MB traced")


# ------------------------------------------------------------------------------------------- CLI


def cli_args(case: dict, path: Path, out: Path, model: Path) -> list[str]:
    target, clip = (path, "smile") if case["role"] == "target" else (VALID_TARGET, path)
    return ["retarget", "--target", str(target), "--clip", str(clip), "--out", str(out), "--model", str(model)]


@pytest.mark.parametrize("name", REFUSED)
def test_cli_in_process_prints_one_error_line(name, tmp_path, model_dir, capsys):
    case, path, out = CASES[name], BAD / name, tmp_path / "out"
    assert cli_main(cli_args(case, path, out, model_dir)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ")
    assert_one_line(last[len("error: "):], case, path)
    assert not out.exists() or not any(out.iterdir())


# each run costs a fresh interpreter importing torch (~2 s CPU): a few representative ones, run in parallel;
# every refused case goes through the same cli_main() in-process above
CLI_SUBPROCESS = ["garbage.obj", "traversal.zip", "zip_bomb.zip", "million_rows.csv"]


def test_cli_subprocess_representative_cases(tmp_path, model_dir):
    """Real `python -m nfs retarget` runs (in parallel): exit 2, last stderr line `error: ...`,
    no traceback, nothing written anywhere, the traversal zip included."""
    work = tmp_path / "work"
    work.mkdir()
    large = {c["file"]: c for c in MANIFEST["large"]}
    corpus.write_large("million_rows.csv", work)
    watched = [tmp_path, tmp_path.parent, tmp_path.parent.parent, work, BAD, REPO_ROOT, REPO_ROOT / "tests"]
    before = {d: set(os.listdir(d)) for d in (tmp_path.parent, BAD)}
    runs = {}
    for name in CLI_SUBPROCESS:
        case = CASES.get(name) or large[name]
        path = work / name if name in large else BAD / name
        out = work / f"out_{name}"
        cmd = [sys.executable, "-m", "nfs", *cli_args(case, path, out, model_dir)]
        runs[name] = (case, path, out, subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                                        stderr=subprocess.PIPE, text=True))
    for name, (case, path, out, proc) in runs.items():
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 2, (name, stderr[-2000:])
        assert "Traceback" not in stderr, (name, stderr[-2000:])
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("error: "), (name, last)
        assert_one_line(last[len("error: "):], case, path)
        assert not out.exists() or not any(out.iterdir()), name
    assert not evil_files(*watched, *(work / f"out_{n}" for n in CLI_SUBPROCESS))
    assert {d: set(os.listdir(d)) for d in before} == before
