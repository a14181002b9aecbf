"""The app in a real headless Chromium (Debian `chromium`, no browser downloads), with every non-local host
unresolvable (as offline): a retarget run through gradio_client shows a face in that session's viser viewer,
and the full page, driven over the Chrome DevTools Protocol (pick a demo, upload a clip, run), shows the
retargeted face in its embedded viewer. Screenshots go to the test's temp dir; set NFS_UPDATE_SCREENSHOT=1 to
also write assets/app_screenshot.png."""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest


from app_harness import running_app, write_expression_csv  # noqa: E402

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p and os.path.exists(p)), None)
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="no Chromium at /usr/bin/chromium (apt-get install -y "
                                 "chromium): browser test skipped"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
SCREENSHOT_ASSET = Path(__file__).resolve().parents[1] / "assets" / "app_screenshot.png"
BASE_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
              "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--disable-extensions", "--hide-scrollbars",
              "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost"]


class Browser:
    """Headless Chromium driven over the DevTools protocol (websocket) — just what these tests need."""

    def __init__(self, size=(1400, 1000), extra_flags=()):
        from websockets.sync.client import connect
        self.dir = tempfile.mkdtemp(prefix="nfs_chromium_")
        self.ws = None
        # its own process group, so close() also ends every helper process of this browser
        self.proc = subprocess.Popen([CHROMIUM, *BASE_FLAGS, *extra_flags, f"--user-data-dir={self.dir}",
                                      f"--window-size={size[0]},{size[1]}", "--remote-debugging-port=0",
                                      "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            port_file = Path(self.dir) / "DevToolsActivePort"
            deadline = time.time() + 30
            while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
                if time.time() > deadline:
                    raise TimeoutError("Chromium did not open its DevTools port")
                time.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
            self.ws = connect([p for p in pages if p["type"] == "page"][0]["webSocketDebuggerUrl"], max_size=None,
                              open_timeout=10)
            self.n, self.requests, self.contexts = 0, [], {}
            for method in ("Page.enable", "Network.enable", "Runtime.enable", "DOM.enable"):
                self.call(method)
        except BaseException:
            self.close()
            raise

    def _event(self, msg: dict) -> None:
        if msg.get("method") == "Network.requestWillBeSent":
            self.requests.append(msg["params"]["request"]["url"])
        elif msg.get("method") == "Runtime.executionContextCreated":
            ctx = msg["params"]["context"]
            self.contexts[ctx["id"]] = ctx

    def call(self, method: str, timeout: float = 60.0, **params) -> dict:
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        deadline = time.time() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.time())))
            if "method" in msg:
                self._event(msg)
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expression: str, context_id: int | None = None):
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        if context_id is not None:
            params["contextId"] = context_id
        r = self.call("Runtime.evaluate", **params)
        if "exceptionDetails" in r:
            raise RuntimeError(str(r["exceptionDetails"])[:500])
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, what: str = ""):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.25)
        raise TimeoutError(f"waited {timeout:.0f} s for {what or expression}; the page then showed: {self.state()}")

    def state(self) -> str:
        """What a person would look at when something hangs: the status boxes and any message on screen."""
        try:
            return str(self.eval("""JSON.stringify(Object.fromEntries(
                ['#run-status', '#target-info', '#clip-info', '#edit-status', '#video-info']
                    .map(s => [s, document.querySelector(s) ? document.querySelector(s).innerText : 'missing'])
                    .concat([['toasts', [...document.querySelectorAll('[data-testid=toast-body]')]
                        .map(t => t.innerText)]])))"""))[:3000]
        except Exception as e:  # noqa: BLE001 - a diagnostic must not hide the timeout
            return f"(unreadable: {e})"

    def set_file(self, selector: str, path: Path) -> None:
        root = self.call("DOM.getDocument", depth=-1, pierce=True)["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        assert node, f"no element {selector}"
        self.call("DOM.setFileInputFiles", nodeId=node, files=[str(path)])

    def dismiss_notices(self) -> None:
        """Close viser's "software WebGL" notice (headless Chromium renders WebGL on the CPU) in every frame."""
        for cid in list(self.contexts):
            try:
                self.eval("document.querySelectorAll('.mantine-Notification-closeButton').forEach(b => b.click())", cid)
            except RuntimeError:
                self.contexts.pop(cid, None)      # a context of a navigated-away document

    def screenshot(self, path: Path) -> np.ndarray:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(data)
        from PIL import Image
        return np.asarray(Image.open(path).convert("RGB"))

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:  # noqa: BLE001
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(10)
                break
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(self.dir, ignore_errors=True)


def drawn_fraction(img: np.ndarray, box=None) -> float:
    """Fraction of pixels in a box (x0, y0, x1, y1) that are clearly not background: coloured or mid-grey
    shading (the viewer's background is white, its panel and text are small)."""
    if box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        img = img[max(0, y0):y1, max(0, x0):x1]
    rgb = img.astype(np.int16)
    shaded = (rgb.max(-1) < 235) & (rgb.min(-1) > 40)
    return float(shaded.mean()) if shaded.size else 0.0


@pytest.fixture(scope="module")
def clip_csv(tmp_path_factory) -> Path:
    return write_expression_csv(tmp_path_factory.mktemp("clip") / "smile_jaw.csv", n_frames=10)


def test_viewer_shows_retargeted_face_after_api_run(app, clip_csv, tmp_path):
    from gradio_client import Client, handle_file
    c = Client(app.url, verbose=False)
    c.predict("stylized_head", api_name="/load_demo_target")
    c.predict(handle_file(str(clip_csv)), api_name="/set_clip_file")
    report = c.predict("uploaded file", "smile", handle_file(str(clip_csv)), 0.0, 1.0, api_name="/run")[0]
    assert "stylized_head ← smile_jaw" in report
    url = c.predict(api_name="/viewer_url")
    assert c.predict(9, api_name="/seek") == 9
    shot = tmp_path / "viewer.png"
    b = Browser(size=(1200, 800))
    try:
        b.call("Page.navigate", url=url)
        img = None
        for _ in range(40):                      # the viewer loads its client, connects, then draws
            time.sleep(0.5)
            img = b.screenshot(shot)
            if drawn_fraction(img, (0, 150, 850, 750)) > 0.05:
                break
        b.dismiss_notices()
        time.sleep(0.5)
        img = b.screenshot(shot)
        external = [u for u in b.requests if u.startswith("http") and urllib.parse.urlparse(u).hostname
                    not in ("127.0.0.1", "localhost")]
    finally:
        b.close()
    assert drawn_fraction(img, (0, 150, 850, 750)) > 0.05, f"no face drawn in {shot}"
    assert not external, external
    print(f"\nviewer screenshot: {shot}")


def test_page_with_embedded_viewer(app, clip_csv, tmp_path):
    shot = tmp_path / "app_screenshot.png"
    b = Browser(size=(1400, 1000))
    try:
        b.call("Page.navigate", url=app.url)
        b.wait_for("!!document.querySelector('#run-btn') && !!document.querySelector('#viewer-frame iframe')",
                   60, "the page and the viewer iframe")
        b.eval("document.querySelector('#demo-targets input[value=\"stylized_head\"]').click()")
        b.wait_for("document.querySelector('#target-info').innerText.includes('stylized_head')", 120,
                   "the demo target's intake summary")
        b.eval("[...document.querySelectorAll('button[role=tab]')].find(t => t.innerText.includes('Source')).click()")
        b.wait_for("!!document.querySelector('#clip-upload input[type=file]')", 20, "the clip upload field")
        b.set_file("#clip-upload input[type=file]", clip_csv)
        b.wait_for("document.querySelector('#clip-info').innerText.includes('smile_jaw')", 60, "the uploaded clip")
        b.eval("document.querySelector('#run-btn').click()")
        b.wait_for("document.querySelector('#run-status').innerText.includes('←')", 180, "the run to finish")
        b.eval("[...document.querySelectorAll('button[role=tab]')].find(t => t.innerText.includes('Target')).click()")
        rect = b.eval("(() => { const r = document.querySelector('#viewer-frame iframe').getBoundingClientRect();"
                      " return [r.left, r.top, r.right, r.bottom]; })()")
        # the face area of the iframe (left of the viewer's control panel)
        face_box = (rect[0], rect[1] + 80, rect[0] + 0.6 * (rect[2] - rect[0]), rect[3] - 60)
        img = None
        for _ in range(40):
            time.sleep(0.5)
            img = b.screenshot(shot)
            if drawn_fraction(img, face_box) > 0.05:
                break
        b.dismiss_notices()
        time.sleep(0.5)
        img = b.screenshot(shot)
        status = b.eval("document.querySelector('#run-status').innerText")
        external = [u for u in b.requests if u.startswith("http") and urllib.parse.urlparse(u).hostname
                    not in ("127.0.0.1", "localhost")]
    finally:
        b.close()
    assert "stylized_head ← smile_jaw" in status
    assert drawn_fraction(img, face_box) > 0.05, f"the embedded viewer shows no face: {shot}"
    assert not external, external
    if os.environ.get("NFS_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, SCREENSHOT_ASSET)
    print(f"\npage screenshot: {shot}")


# ------------------------------------------------------------------------------------------------ session state
TARGETS = Path(__file__).resolve().parents[1] / "assets" / "targets"
BAD_MESH = Path(__file__).resolve().parent / "data" / "bad" / "nan_vertices.obj"


def _text(b: Browser, selector: str) -> str:
    return b.eval(f"(document.querySelector({json.dumps(selector)}) || {{innerText: ''}}).innerText")


def _tab(b: Browser, label: str) -> None:
    b.eval(f"[...document.querySelectorAll('button[role=tab]')].find(t => t.innerText.includes({json.dumps(label)}))"
           ".click()")


def _file_names(b: Browser, selector: str) -> list[str]:
    return b.eval(f"[...document.querySelectorAll({json.dumps(selector + ' td.filename')})]"
                  ".map(td => td.getAttribute('aria-label'))")


def _slider_value(b: Browser, name: str) -> float:
    return float(b.eval(f"document.querySelector('#slider-{name} input[type=number]').value"))


def _set_slider(b: Browser, name: str, value: float) -> None:
    """Type a value into a slider's number box, as a user does (input, change, blur)."""
    b.eval(f"""(() => {{ const el = document.querySelector('#slider-{name} input[type=number]');
        const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
        el.focus(); set.call(el, '{value}');
        el.dispatchEvent(new Event('input', {{bubbles: true}}));
        el.dispatchEvent(new Event('change', {{bubbles: true}}));
        el.dispatchEvent(new KeyboardEvent('keydown', {{key: 'Enter', bubbles: true}}));
        el.blur(); }})()""")


@pytest.fixture(scope="module")
def page(app):
    b = Browser(size=(1400, 1000))
    try:
        b.call("Page.navigate", url=app.url)
        b.wait_for("!!document.querySelector('#run-btn') && !!document.querySelector('#viewer-frame iframe')", 60,
                   "the page and the viewer iframe")
        yield b
    finally:
        b.close()


def test_new_target_withdraws_the_previous_result(page):
    """Target A -> run -> upload B: nothing of A's run is shown as B's (status and downloads)."""
    b = page
    b.eval("document.querySelector('#demo-targets input[value=\"stylized_head\"]').click()")
    b.wait_for("document.querySelector('#target-info').innerText.includes('stylized_head')", 120, "target A")
    b.eval("document.querySelector('#run-btn').click()")
    b.wait_for("document.querySelector('#run-status').innerText.includes('stylized_head ← smile')", 240, "A's run")
    b.wait_for("document.querySelectorAll('#file-obj td.filename').length > 0", 30, "A's downloads")
    names_a = [n for sel in ("#file-obj", "#file-glb", "#file-rig", "#file-mp4") for n in _file_names(b, sel)]
    assert len(names_a) == 4 and all(n.startswith("stylized_head") for n in names_a), names_a

    b.set_file("#target-upload input[type=file]", TARGETS / "face_crop_metres.obj")
    b.wait_for("document.querySelector('#target-info').innerText.includes('face_crop_metres')", 180, "target B")
    b.wait_for("document.querySelector('#run-status').innerText.includes('No result for face_crop_metres')", 30,
               "A's result withdrawn")
    status = _text(b, "#run-status")
    shown = [n for sel in ("#file-obj", "#file-glb", "#file-rig", "#file-mp4") for n in _file_names(b, sel)]
    assert shown == [], shown                               # no download of A's run left on B's page
    assert "stylized_head ← smile:" not in status and "files are withdrawn" in status, status


def test_refused_upload_names_what_is_loaded(page):
    b = page
    b.eval("document.querySelector('#target-upload button[aria-label=Clear]').click()")
    b.wait_for("!!document.querySelector('#target-upload input[type=file]')", 20, "an empty target box")
    b.set_file("#target-upload input[type=file]", BAD_MESH)
    b.wait_for("document.querySelector('#target-info').innerText.includes('Not loaded')", 60, "the refusal")
    info = _text(b, "#target-info")
    assert "nan_vertices.obj" in info and "non-finite" in info, info
    assert "Still loaded: face_crop_metres" in info, info       # the target that is really loaded
    b.wait_for("document.querySelectorAll('#target-upload td.filename').length === 0", 20, "the box emptied")
    toast = "[...document.querySelectorAll('[data-testid=toast-body]')].some(t => t.innerText.includes('non-finite'))"
    b.wait_for(toast, 20, "the error message")
    time.sleep(11)                                               # gradio's default toast lifetime is 10 s
    assert b.eval(toast), "the error message vanished before it was dismissed"


def test_slider_edits_across_a_clip_change(page, clip_csv):
    """Edits belong to (target, clip): a new clip resets the sliders and offers the old edits, as the page
    says; carrying them over puts them in the next run, listed by name."""
    b = page
    _tab(b, "Edit")
    b.wait_for("[...document.querySelectorAll('button')].some(e => e.innerText.trim().startsWith('jaw ('))", 20,
               "the jaw sliders' accordion")
    b.eval("[...document.querySelectorAll('button')].find(e => e.innerText.trim().startsWith('jaw (')).click()")
    b.wait_for("!!document.querySelector('#slider-jawOpen input[type=number]')", 20, "the sliders")
    edited = "document.querySelector('#edit-status').innerText.includes('jawOpen +0.40')"
    _set_slider(b, "jawOpen", 0.4)
    try:
        b.wait_for(edited, 30, "the edit")
    except TimeoutError as e:
        # seen once in about ten CI runs: the typed value stayed in the box but no edit arrived; type it again as a
        # person would, and say so (the app log goes into the report when the test fails)
        print(f"typed slider value not taken up, typing it again: {e}")
        _set_slider(b, "jawOpen", 0.0)
        _set_slider(b, "jawOpen", 0.4)
        b.wait_for(edited, 60, "the edit, typed a second time")
    assert "face_crop_metres × smile" in _text(b, "#edit-status")

    _tab(b, "Source")
    b.wait_for("!!document.querySelector('#clip-upload input[type=file]')", 20, "the clip upload field")
    b.set_file("#clip-upload input[type=file]", clip_csv)
    b.wait_for("document.querySelector('#clip-info').innerText.includes('smile_jaw')", 60, "the new clip")
    _tab(b, "Edit")
    b.wait_for("document.querySelector('#edit-status').innerText.includes('face_crop_metres × smile_jaw')", 30,
               "the new pair's edits")
    status = _text(b, "#edit-status")
    assert "face_crop_metres × smile_jaw**: no edits" in status or "smile_jaw: no edits" in status, status
    assert "sliders were reset" in status and "jawOpen +0.40" in status, status    # the old edits, offered
    assert _slider_value(b, "jawOpen") == 0.0                                      # what the page says
    assert b.eval("!!document.querySelector('#carry-edits') && "
                  "document.querySelector('#carry-edits').offsetParent !== null")

    b.eval("document.querySelector('#carry-edits').click()")
    b.wait_for("document.querySelector('#edit-status').innerText.includes('carried over')", 30, "the carry-over")
    assert abs(_slider_value(b, "jawOpen") - 0.4) < 1e-6
    b.eval("document.querySelector('#run-btn').click()")
    b.wait_for("document.querySelector('#run-status').innerText.includes('face_crop_metres ← smile_jaw:')", 240,
               "the run")
    assert "slider edits included in the exports: whole clip: jawOpen +0.40" in _text(b, "#run-status")
