"""Hostile uploads through the real app (`python app.py`, driven with gradio_client): every case of
tests/data/bad/MANIFEST.json goes through the endpoint a browser would use (targets: /upload_target, clips:
/set_clip_file), in one session of the app process that the app tests share.

- refused cases: the call fails with a one-line gr.Error containing the manifest's `expect` (case-insensitive).
  Two files are stopped earlier by Gradio itself, because their extension is not among the upload component's
  file types (`no_extension`, `unsupported.txt`): Gradio's "Invalid file type" message, naming the allowed formats.
- accepted cases load (the target summary has the file's vertex count).
- large cases: the 2,000,000-vertex OBJ (27 MB) is refused quickly by the vertex limit; the 10^6-row CSV
  (113 MB) is over the 50 MB upload limit, refused by the client and by the server (a direct POST: 413);
  a 20,000-row CSV under the size limit is refused by the frame limit.
- nothing lands outside the app's folders: no `nfs_evil_*` file anywhere under /tmp or the repository (the
  traversal and absolute zips), and a refused target leaves nothing in the session folder.
- afterwards the same session (and the server) still does a normal upload -> run -> export.
"""
from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path

import pytest


gradio_client = pytest.importorskip("gradio_client")

from gradio_client import Client, handle_file  # noqa: E402

from data_makers import bad_inputs as corpus  # noqa: E402
from app.demo_assets import demo_target_path  # noqa: E402
from app.state import MAX_UPLOAD_MB  # noqa: E402
from app_harness import write_expression_csv  # noqa: E402
from nfs import REPO_ROOT  # noqa: E402
from nfs.clips import MAX_FRAMES  # noqa: E402
from nfs.pipeline import load_clip  # noqa: E402
from nfs.ict import EXPRESSION_NAMES  # noqa: E402
from nfs.io import load_mesh  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

BAD = REPO_ROOT / "tests" / "data" / "bad"
MANIFEST = json.loads((BAD / "MANIFEST.json").read_text())
CASES = MANIFEST["cases"]
LARGE = {c["file"]: c for c in MANIFEST["large"]}
API = {"target": "/upload_target", "clip": "/set_clip_file"}
SKIP_DIRS = {".git", ".venv", "venv", "runs", "node_modules", "__pycache__", ".pytest_cache"}


def evil_files() -> list[str]:
    """Every file or folder named like a traversal/absolute zip member, under /tmp and the repository."""
    found = []
    for base in (Path("/tmp"), REPO_ROOT):
        for root, dirs, files in os.walk(base, onerror=lambda e: None):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
            found += [os.path.join(root, n) for n in dirs + files if corpus.EVIL_MARKER in n]
    return sorted(found)


def file_types(role: str) -> list[str]:
    """The extensions the app's upload component accepts for a role (imported when first needed: the page's
    module brings Gradio, which the test process needs for nothing else)."""
    from app.tabs.source import CLIP_TYPES
    from app.tabs.target import MESH_TYPES
    return {"target": MESH_TYPES, "clip": CLIP_TYPES}[role]


def filtered_by_gradio(case: dict) -> bool:
    """Gradio's upload component checks the extension against its file_types before the app sees the file."""
    return Path(case["file"]).suffix.lower() not in file_types(case["role"])


def message_of(err: BaseException) -> str:
    return str(err).strip()


@pytest.fixture(scope="module")
def client(app) -> Client:
    """One session of the shared app for the whole corpus; no nfs_evil_* file before it, the app alive after."""
    before = evil_files()
    assert not before, f"nfs_evil_* files exist before the test: {before}"
    yield Client(app.url, verbose=False)
    assert app.process.poll() is None, app.log()[-3000:]


@pytest.fixture(scope="module")
def timings() -> dict:
    return {}


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_manifest_case_through_the_app(case, client, timings):
    path = BAD / case["file"]
    t0 = time.perf_counter()
    if case["accepted"] and case["role"] == "target":
        # forced: the encoding cases hold a tetrahedron, which is not a face
        summary = client.predict(handle_file(str(path)), True, api_name=API[case["role"]])[0]
        n_vertices = load_mesh(path).n_vertices
        assert f"{n_vertices:,} vertices" in summary, summary
        status = client.predict(api_name="/status")
        assert status["target"]["vertices"] == n_vertices, status
    elif case["accepted"]:
        summary = client.predict(handle_file(str(path)), api_name=API[case["role"]])[0]
        assert f"{load_clip(path).n_frames} frames" in summary or "frames" in summary, summary
    else:
        with pytest.raises(Exception) as err:
            client.predict(handle_file(str(path)), api_name=API[case["role"]])
        message = message_of(err.value)
        assert message and "\n" not in message and "Traceback" not in message, message
        if filtered_by_gradio(case):
            assert "invalid file type" in message.lower(), message
            assert all(t in message for t in file_types(case["role"])), message
        else:
            assert case["expect"].lower() in message.lower(), message
    timings[case["file"]] = time.perf_counter() - t0


def test_large_mesh_is_refused_quickly(client, tmp_path):
    case = LARGE["two_million_vertices.obj"]
    path = corpus.write_large(case["file"], tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(path)), api_name=API[case["role"]])
    elapsed = time.perf_counter() - t0
    assert case["expect"] in message_of(err.value).lower(), message_of(err.value)
    assert elapsed < 15, f"the {path.stat().st_size / 1e6:.0f} MB mesh took {elapsed:.1f} s to refuse"
    print(f"\n2,000,000-vertex OBJ ({path.stat().st_size / 1e6:.0f} MB) refused in {elapsed:.2f} s")


def test_large_csv_is_refused_by_size_and_by_frame_count(app, client, tmp_path):
    import httpx

    case = LARGE["million_rows.csv"]
    path = corpus.write_large(case["file"], tmp_path)
    assert path.stat().st_size > MAX_UPLOAD_MB * 1e6
    with pytest.raises(Exception, match="maximum file size"):          # gradio_client checks the limit first
        client.predict(handle_file(str(path)), api_name=API[case["role"]])
    with open(path, "rb") as fh:                                       # a client that does not: the server
        r = httpx.post(app.url + "gradio_api/upload", files={"files": (path.name, fh, "text/csv")}, timeout=120)
    assert r.status_code == 413, (r.status_code, r.text[:300])

    rows = tmp_path / "twenty_thousand_rows.csv"                       # under the size limit: the frame limit
    zeros = ",0" * len(EXPRESSION_NAMES)
    rows.write_text(",".join(["frame"] + list(EXPRESSION_NAMES)) + "\n"
                    + "".join(f"{t}{zeros}\n" for t in range(2 * MAX_FRAMES)))
    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(rows)), api_name=API[case["role"]])
    assert case["expect"] in message_of(err.value), message_of(err.value)


def test_nothing_written_outside_and_app_still_serves(app, client, tmp_path, timings):
    assert app.process.poll() is None, app.log()[-3000:]
    assert not evil_files(), evil_files()
    assert not Path(corpus.ABSOLUTE_MEMBER).exists()

    target = demo_target_path("face_crop_metres")
    n_vertices = load_mesh(target).n_vertices
    summary = client.predict(handle_file(str(target)), api_name="/upload_target")[0]
    assert "**face_crop_metres**" in summary and f"{n_vertices:,} vertices" in summary, summary
    clip = write_expression_csv(tmp_path / "after_hostile.csv", n_frames=6)
    assert "6 frames" in client.predict(handle_file(str(clip)), api_name="/set_clip_file")[0]
    out = client.predict("uploaded file", None, handle_file(str(clip)), 0.0, 1.0, api_name="/run")
    assert "face_crop_metres ← after_hostile" in out[0], out[0]
    for f in out[1:5]:
        assert f and Path(f).is_file() and Path(f).stat().st_size > 0, f
    with zipfile.ZipFile(out[1]) as zf:
        assert len([n for n in zf.namelist() if n.endswith(".obj")]) == 6
    status = client.predict(api_name="/status")
    assert status["result"]["valid"] and status["result"]["frames"] == 6

    # the session folder keeps one copy per accepted target upload (plus this one): refused ones left nothing
    session_dir = Path(status["result"]["exports"]["glb"]).parents[1]
    kept = sorted(p.name for p in (session_dir / "targets").glob("*/*"))
    accepted = sorted([c["file"] for c in CASES if c["accepted"] and c["role"] == "target"] + [target.name])
    assert kept == accepted, kept
    assert not evil_files(), evil_files()
    slowest = sorted(timings.items(), key=lambda kv: -kv[1])[:3]
    print(f"\n{len(timings)} manifest cases in {sum(timings.values()):.1f} s (slowest: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in slowest) + ")")


def test_same_mesh_under_another_name_keeps_its_own_name(client, tmp_path):
    """latin1.obj, utf16_bom.obj and utf8_bom.obj hold the same tetrahedron as negative_indices.obj: each upload
    should be reported (and exported) under its own name."""
    names = {}
    for stem in ("first_name", "second_name"):
        path = tmp_path / f"{stem}.obj"
        path.write_text(corpus.obj_text(corpus.TETRA_V * 2.5, corpus.TETRA_F))
        client.predict(handle_file(str(path)), True, api_name="/upload_target")  # forced: a tetrahedron
        names[stem] = client.predict(api_name="/status")["target"]["name"]
    assert names == {"first_name": "first_name", "second_name": "second_name"}, names
