"""A real client reads the avatar export: three.js's GLTFLoader (npm `three`) in Chromium (Debian, through
Playwright, no browser download) loads the exported avatar from a local http server, finds the 52 ARKit targets by
name on the face mesh, plays the clip's animation, and a frame's morphed positions (three.js's own
`getVertexPosition`: morph targets and skinning) equal ours."""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

import avatar_factory as af
from nfs.arkit import ARKIT_NAMES
from nfs.avatar_export import export_avatar
from nfs.io import load_mesh, load_mesh_bytes

ROOT = Path(__file__).resolve().parents[1]
THREE = ROOT / "node_modules" / "three"
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and os.path.exists(p)), None)


def _playwright_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the python package playwright is not installed"
    if CHROMIUM is None:
        return "no Chromium at /usr/bin/chromium (apt-get install -y chromium)"
    if not (THREE / "build" / "three.module.js").exists():
        return "npm package three missing: run `npm ci` in the repository root"
    return None


pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(_playwright_missing() is not None, reason=str(_playwright_missing()))]

PAGE = """<!doctype html><html><head><script type="importmap">
{"imports": {"three": "/three/build/three.module.js", "three/addons/": "/three/examples/jsm/"}}
</script></head><body><script type="module">
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
window.probe = async (url, meshName, clipName, frameTime, vertexCount) => {
  const gltf = await new GLTFLoader().loadAsync(url);
  const found = [];
  gltf.scene.traverse(o => { if (o.isMesh) found.push(o); });
  const head = found.find(o => o.name === meshName || (o.parent && o.parent.name === meshName));
  const clip = gltf.animations.find(a => a.name === clipName);
  const mixer = new THREE.AnimationMixer(gltf.scene);
  mixer.clipAction(clip).play();
  mixer.setTime(frameTime);
  gltf.scene.updateMatrixWorld(true);
  if (head.isSkinnedMesh) head.skeleton.update();
  const p = new THREE.Vector3(), out = [];
  for (let i = 0; i < vertexCount; i++) {
    head.getVertexPosition(i, p);
    p.applyMatrix4(head.isSkinnedMesh ? new THREE.Matrix4() : head.matrixWorld);
    out.push(p.x, p.y, p.z);
  }
  return {names: Object.keys(head.morphTargetDictionary), influences: Array.from(head.morphTargetInfluences),
          dictionary: head.morphTargetDictionary, positions: out, clips: gltf.animations.map(a => a.name),
          skinned: !!head.isSkinnedMesh, tracks: clip.tracks.length};
};
window.ready = true;
</script></body></html>"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web")
    (folder / "three").symlink_to(THREE)
    (folder / "index.html").write_text(PAGE)
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def page(server, browser):
    """One page of the session's browser (pytest-playwright, the system Chromium: tests/conftest.py) for the
    module, with three.js loaded."""
    context = browser.new_context()
    try:
        p = context.new_page()
        p.goto(server[1] + "/index.html")
        p.wait_for_function("window.ready === true", timeout=60_000)
        yield p
    finally:
        context.close()


def _shapes(raw) -> np.ndarray:
    from test_avatar_export import synthetic_shapes
    return synthetic_shapes(raw)


def _check(page, server, src_bytes: bytes, filename: str, tmp_name: str, frame: int = 5, fps: float = 30.0):
    folder, url = server
    raw = load_mesh_bytes(src_bytes, filename)
    shapes = _shapes(raw)
    weights = np.random.default_rng(7).uniform(0, 1, (12, 52)).astype(np.float32)
    out = folder / tmp_name
    export_avatar(out, src_bytes, filename, raw, shapes, weights, fps, clip_name="talk")
    head = next(p for p in load_mesh(out).parts if p.mesh_name == "Wolf3D_Head")
    got = page.evaluate("([u, m, c, t, n]) => window.probe(u, m, c, t, n)",
                        [f"{url}/{tmp_name}", "Wolf3D_Head", "talk", frame / fps, head.vertex_count])
    assert set(ARKIT_NAMES) <= set(got["names"]) and "talk" in got["clips"] and got["skinned"]
    influences = np.array(got["influences"])
    for k, name in enumerate(ARKIT_NAMES):
        assert abs(influences[got["dictionary"][name]] - weights[frame, k]) < 1e-6, name
    rows = slice(head.vertex_offset, head.vertex_offset + head.vertex_count)
    ours = raw.vertices[rows] + np.einsum("k,kvc->vc", weights[frame].astype(np.float64), shapes[:, rows])
    theirs = np.array(got["positions"]).reshape(-1, 3)
    return np.abs(theirs - ours).max(), np.abs(ours - raw.vertices[rows]).max()


def test_threejs_plays_the_exported_avatar(page, server):
    err, motion = _check(page, server, af.build_avatar().glb(), "avatar.glb", "plain_out.glb")
    assert motion > 1e-3 and err < 2e-6, (err, motion)        # float32 in the browser


def test_threejs_plays_an_exported_quantized_avatar(page, server, tmp_path):
    reason = af.encoders_missing()
    if reason:
        pytest.skip(reason)
    src = tmp_path / "avatar.glb"
    af.write_avatar(src)
    packed = tmp_path / "packed.glb"
    af.gltf_transform("optimize", src, packed, *af.VROID_LIKE)   # meshopt + quantization + WebP
    err, motion = _check(page, server, packed.read_bytes(), "packed.glb", "packed_out.glb")
    # the base positions are quantized integers dequantized by the skin's matrices; our targets are float32
    assert motion > 1e-3 and err < 2e-5, (err, motion)
