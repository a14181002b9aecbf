"""End to end: start the real `python app.py` and drive it with gradio_client (upload -> run -> export, edits,
bad inputs, session isolation). One app process for the module; clips are cut to 12 frames."""
from __future__ import annotations

import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest


gradio_client = pytest.importorskip("gradio_client")
trimesh = pytest.importorskip("trimesh")

from gradio_client import Client, handle_file  # noqa: E402

from app.demo_assets import demo_target_path  # noqa: E402
from app_harness import running_app, write_expression_csv  # noqa: E402
from glb_reader import read_rig_glb  # noqa: E402
from nfs.io import load_mesh  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def clip_csv(tmp_path_factory) -> Path:
    return write_expression_csv(tmp_path_factory.mktemp("clip") / "smile_short.csv", n_frames=8)


def client(app) -> Client:
    return Client(app.url, verbose=False)


def test_upload_run_export(app, clip_csv, tmp_path):
    c = client(app)
    target = demo_target_path("face_crop_metres")
    n_vertices = load_mesh(target).n_vertices

    t0 = time.perf_counter()
    summary, *_ = c.predict(handle_file(str(target)), api_name="/upload_target")
    assert f"{n_vertices:,} vertices" in summary and "alignment:" in summary and "confidence" in summary
    assert "preparation: computed" in summary or "reused" in summary
    again, *_ = c.predict(handle_file(str(target)), api_name="/upload_target")
    assert "reused" in again, again                       # same content: the cached preparation
    prepare_s = time.perf_counter() - t0

    info, kind = c.predict(handle_file(str(clip_csv)), api_name="/set_clip_file")
    assert "8 frames" in info and kind == "uploaded file"
    edit = c.predict("whole clip", -1, '{"jawOpen": 0.3, "browInnerUp_L": 0.2}', api_name="/edit")
    assert "whole clip: 2 shapes" in edit

    t0 = time.perf_counter()
    out = c.predict("uploaded file", "smile", handle_file(str(clip_csv)), 0.5, 1.0, api_name="/run")
    run_s = time.perf_counter() - t0
    report, obj_zip, glb, rig, mp4 = out[:5]
    assert "← smile_short" in report and "slider edits included" in report
    for f in (obj_zip, glb, rig, mp4):
        assert f and Path(f).is_file() and Path(f).stat().st_size > 0

    with zipfile.ZipFile(obj_zip) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".obj"))
        assert len(names) == 8
        first = zf.read(names[0]).decode()
        assert sum(1 for line in first.splitlines() if line.startswith("v ")) == n_vertices
    scene = trimesh.load(glb, force="scene", process=False)
    assert sum(len(g.vertices) for g in scene.geometry.values()) == n_vertices
    neutral, faces, deltas, names = read_rig_glb(rig)
    assert deltas.shape == (52, n_vertices, 3) and "jawOpen" in names and "tongueOut" in names
    assert np.abs(deltas).max() > 0
    import imageio.v3 as iio
    assert iio.imread(mp4, index=0).ndim == 3

    status = c.predict(api_name="/status")
    assert status["result"]["frames"] == 8 and status["result"]["valid"] and status["result"]["correction"] is False
    assert status["target"]["name"] == "face_crop_metres"

    # the same run with the network's correction on (off by default): its own rig, other positions
    plain = c.predict("uploaded file", "smile", handle_file(str(clip_csv)), 0.5, 1.0, True, api_name="/run")
    assert "network correction on" in plain[0], plain[0]
    status = c.predict(api_name="/status")
    assert status["result"]["valid"] and status["result"]["correction"] is True
    assert "editing frame 2" in c.predict("current frame", 2, '{"jawOpen": 0.5}', api_name="/edit")
    with zipfile.ZipFile(obj_zip) as a, zipfile.ZipFile(plain[1]) as b:
        first = sorted(n for n in a.namelist() if n.endswith(".obj"))[4]
        va = np.array([l.split()[1:4] for l in a.read(first).decode().splitlines() if l.startswith("v ")], float)
        vb = np.array([l.split()[1:4] for l in b.read(first).decode().splitlines() if l.startswith("v ")], float)
    assert va.shape == vb.shape and np.abs(va - vb).max() > 1e-4
    # exports the user chose (the animated GLB only, no preview) at a resampled frame rate
    chosen = c.predict("uploaded file", "smile", handle_file(str(clip_csv)), 0.5, 1.0, True, ["glb"], "never", 60,
                       api_name="/run")
    assert chosen[2] and not any(chosen[i] for i in (1, 3, 4)), chosen[:5]
    assert "at 60 fps" in chosen[0] and "max error" in chosen[0]
    status = c.predict(api_name="/status")
    assert status["result"]["fps"] == 60 and set(status["result"]["exports"]) == {"glb"}
    assert status["result"]["glb_max_error_mm"] <= 0.1 and status["result"]["device"].startswith(("cpu", "cuda"))
    print(f"\nprepare (twice) {prepare_s:.1f} s, run {run_s:.1f} s")


def test_multiface_zip_clip(app, tmp_path):
    """A Multiface-layout zip (tracked mesh frames in mm) goes through the expression encoder."""
    from fixtures import write_multiface_fixture
    archive = tmp_path / "multiface_subject.zip"
    write_multiface_fixture(archive, n_frames=4, as_zip=True)
    c = client(app)
    c.predict("ict_remeshed", api_name="/load_demo_target")
    info, _ = c.predict(handle_file(str(archive)), api_name="/set_clip_file")
    assert "E006_Jaw_Drop_Brows_Up" in info and "4 frames" in info and "mesh sequence" in info
    out = c.predict("uploaded file", "smile", handle_file(str(archive)), 0.0, 1.0, api_name="/run")
    assert "← E006_Jaw_Drop_Brows_Up" in out[0]
    with zipfile.ZipFile(out[1]) as zf:
        assert len([n for n in zf.namelist() if n.endswith(".obj")]) == 4


def test_alignment_override_and_display(app):
    c = client(app)
    c.predict("face_crop_metres", api_name="/load_demo_target")
    summary = c.predict("+Z", False, 1.0, api_name="/override_alignment")
    assert "manual alignment: up +Z" in summary
    assert c.predict("regions", 0, False, api_name="/display").startswith("regions")
    assert c.predict("weight heat map", 26, True, api_name="/display").startswith("weight heat map")
    with pytest.raises(Exception, match="display mode must be one of"):
        c.predict("sparkles", 0, False, api_name="/display")


def test_bad_inputs_give_errors_and_app_keeps_serving(app, clip_csv, tmp_path):
    c = client(app)
    with pytest.raises(Exception, match="load a target mesh first"):
        c.predict("built-in clip", "smile", None, 0.0, 1.0, api_name="/run")

    broken = tmp_path / "broken.obj"
    broken.write_text("v 0 0 0\nv 1 0 0\nf 1 2 7\nthis is not an obj\n")
    with pytest.raises(Exception) as err:
        c.predict(handle_file(str(broken)), api_name="/upload_target")
    message = str(err.value)
    assert "broken.obj" in message and "\n" not in message.strip()

    bad_clip = tmp_path / "bad.csv"
    bad_clip.write_text("frame,notAShape\n0,1\n")
    with pytest.raises(Exception, match="bad.csv"):
        c.predict(handle_file(str(bad_clip)), api_name="/set_clip_file")

    # a good run, then a failing one: the first result survives
    c.predict("ict_remeshed", api_name="/load_demo_target")
    c.predict(handle_file(str(clip_csv)), api_name="/set_clip_file")
    first = c.predict("uploaded file", "smile", handle_file(str(clip_csv)), 0.0, 1.0, api_name="/run")
    with pytest.raises(Exception, match="upload a clip file first"):
        c.predict("uploaded file", "smile", None, 0.0, 1.0, api_name="/run")
    with pytest.raises(Exception, match="greater than maximum"):    # Gradio checks slider ranges itself
        c.predict("uploaded file", "smile", handle_file(str(clip_csv)), 0.0, 9.0, api_name="/run")
    status = c.predict(api_name="/status")
    assert status["result"] is not None and Path(status["result"]["exports"]["glb"]).is_file()
    assert Path(status["result"]["exports"]["obj_zip"]).name == Path(first[1]).name

    # the server still answers, for this client and for a new one
    assert "ict_remeshed" in c.predict("ict_remeshed", api_name="/load_demo_target")[0]
    with urllib.request.urlopen(app.url, timeout=10) as r:
        assert r.status == 200
    assert app.process.poll() is None


def test_sessions_are_isolated(app):
    a, b = client(app), client(app)
    a.predict("stylized_head", api_name="/load_demo_target")
    b.predict("ict_remeshed", api_name="/load_demo_target")
    sa, sb = a.predict(api_name="/status"), b.predict(api_name="/status")
    assert sa["target"]["name"] == "stylized_head" and sb["target"]["name"] == "ict_remeshed"
    assert sa["viewer_url"] and sb["viewer_url"] and sa["viewer_url"] != sb["viewer_url"]
    for url in (sa["viewer_url"], sb["viewer_url"]):
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read(2000).lower()
    a.predict("whole clip", -1, '{"jawOpen": 0.5}', api_name="/edit")
    assert b.predict(api_name="/status")["edits"] == "no edits"


def test_viewer_pool_never_shares_a_viewer():
    from app_harness import free_port
    from app.viewer import ViewerPool

    class Owner:
        pass

    a, b = Owner(), Owner()
    pool = ViewerPool("127.0.0.1", free_port(), max_viewers=1)
    try:
        va = pool.acquire(a)
        assert va is not None and pool.owned_by(va, a)
        assert pool.acquire(b) is None                    # full: b waits rather than seeing a's scene
        pool.release(va, b)                               # only the owner can give it back
        assert pool.owned_by(va, a)
        pool.release(va, a)
        vb = pool.acquire(b)
        assert vb is va and pool.owned_by(vb, b) and vb.content is None
    finally:
        pool.close()


def test_edits_and_alignment_override_units():
    from app.edits import Edits, window
    from nfs.mesh.align import align_to_ict
    from nfs.mesh.clean import clean_mesh
    from nfs.mesh.overrides import compose_alignment

    e = Edits()
    assert not e.active and e.offsets(5, 30.0).shape == (5, 53)
    e.set("current frame", 10, np.eye(53)[26])
    off = e.offsets(30, 30.0)
    assert off[10, 26] == 1.0 and 0 < off[14, 26] < 1 and off[0, 26] == 0 and off[10].sum() == 1.0
    assert window(30, 10, 30.0)[10] == 1.0

    raw = load_mesh(demo_target_path("face_crop_metres"))
    clean = clean_mesh(raw.vertices, raw.faces)
    auto = align_to_ict(clean.skin_points, clean.skin_faces)
    assert compose_alignment(auto, clean.skin_points, clean.skin_faces) is None
    manual = compose_alignment(auto, clean.skin_points, clean.skin_faces, up="+Z", flip=False, scale_factor=2.0)
    assert np.allclose(manual.rotation @ [0, 0, 1], [0, 1, 0])      # the file's +Z becomes ICT up
    assert np.isclose(np.linalg.det(manual.rotation), 1.0) and np.isclose(manual.scale, 2 * auto.scale)
    flipped = compose_alignment(auto, clean.skin_points, clean.skin_faces, up="+Z", flip=True)
    assert np.allclose(flipped.rotation @ [0, 0, 1], [0, 1, 0])
    plain = compose_alignment(auto, clean.skin_points, clean.skin_faces, up="+Z")
    assert np.allclose(flipped.rotation[2], -plain.rotation[2])
    with pytest.raises(ValueError, match="up axis"):
        compose_alignment(auto, clean.skin_points, clean.skin_faces, up="sideways")


def test_page_is_offline_safe(app):
    """The page and the viewer are served locally: no CDN URLs in what the server sends."""
    with urllib.request.urlopen(app.url, timeout=10) as r:
        page = r.read().decode(errors="replace")
    for cdn in ("cdn.jsdelivr", "unpkg.com", "cdnjs", "fonts.googleapis", "googletagmanager"):
        assert cdn not in page, cdn
    assert "NFS app:" in app.log() and "3D viewer:" in app.log()
