"""The app in a real headless Chromium (Debian `chromium` driven by Playwright, no browser downloads), with every
non-local host unresolvable (as offline), a fresh browser session per test: a retarget run through gradio_client
shows a face in that session's viser viewer, and the full page (pick a demo, upload a clip, run) shows the
retargeted face in its embedded viewer; a new target withdraws the previous result, a refused upload names what is
still loaded, and slider edits belong to their (target, clip) pair. Screenshots go to the test's temp dir; set
NFS_UPDATE_SCREENSHOT=1 to also write assets/app_screenshot.png."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from app_harness import write_expression_csv
from app_page import drawn_fraction

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
SCREENSHOT_ASSET = Path(__file__).resolve().parents[1] / "assets" / "app_screenshot.png"
TARGETS = Path(__file__).resolve().parents[1] / "assets" / "targets"
BAD_MESH = Path(__file__).resolve().parent / "data" / "bad" / "nan_vertices.obj"
EXPORT_BOXES = ("#file-obj", "#file-glb", "#file-rig", "#file-mp4")


@pytest.fixture(scope="module")
def clip_csv(tmp_path_factory) -> Path:
    return write_expression_csv(tmp_path_factory.mktemp("clip") / "smile_jaw.csv", n_frames=10)


def wait_until_drawn(b, shot: Path, box) -> "np.ndarray":  # noqa: F821
    """A screenshot once the viewer has drawn in `box` (it loads its client, connects, then draws; 20 s at
    most), taken again after its software-WebGL notice is closed."""
    for _ in range(40):
        time.sleep(0.5)
        if drawn_fraction(b.screenshot(shot), box) > 0.05:
            break
    b.dismiss_notices()
    time.sleep(0.5)
    return b.screenshot(shot)


def test_viewer_shows_retargeted_face_after_api_run(app, clip_csv, app_page, tmp_path):
    from gradio_client import Client, handle_file
    c = Client(app.url, verbose=False)
    c.predict("stylized_head", api_name="/load_demo_target")
    c.predict(handle_file(str(clip_csv)), api_name="/set_clip_file")
    report = c.predict("uploaded file", "smile", handle_file(str(clip_csv)), 0.0, 1.0, api_name="/run")[0]
    assert "stylized_head ← smile_jaw" in report
    url = c.predict(api_name="/viewer_url")
    assert c.predict(9, api_name="/seek") == 9
    shot = tmp_path / "viewer.png"
    b = app_page
    b.page.set_viewport_size({"width": 1200, "height": 800})
    b.page.goto(url)
    img = wait_until_drawn(b, shot, (0, 150, 850, 750))
    assert drawn_fraction(img, (0, 150, 850, 750)) > 0.05, f"no face drawn in {shot}"
    assert not b.external_requests(), b.external_requests()
    print(f"\nviewer screenshot: {shot}")


def test_page_with_embedded_viewer(app, clip_csv, app_page, tmp_path):
    shot = tmp_path / "app_screenshot.png"
    b = app_page
    b.open(app.url)
    b.pick_demo_target("stylized_head", 120)
    b.tab("Source")
    b.wait_for("!!document.querySelector('#clip-upload input[type=file]')", 20, "the clip upload field")
    b.set_file("#clip-upload input[type=file]", clip_csv)
    b.wait_for("document.querySelector('#clip-info').innerText.includes('smile_jaw')", 60, "the uploaded clip")
    b.click("#run-btn")
    b.wait_for("document.querySelector('#run-status').innerText.includes('←')", 180, "the run to finish")
    b.tab("Target")
    x0, y0, x1, y1 = b.bounding_box("#viewer-frame iframe")
    face_box = (x0, y0 + 80, x0 + 0.6 * (x1 - x0), y1 - 60)    # the face area, left of the viewer's control panel
    img = wait_until_drawn(b, shot, face_box)
    status = b.text("#run-status")
    assert "stylized_head ← smile_jaw" in status
    assert drawn_fraction(img, face_box) > 0.05, f"the embedded viewer shows no face: {shot}"
    assert not b.external_requests(), b.external_requests()
    if os.environ.get("NFS_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, SCREENSHOT_ASSET)
    print(f"\npage screenshot: {shot}")


# ------------------------------------------------------------------------------------------------ session state
def test_new_target_withdraws_the_previous_result(app, app_page):
    """Target A -> run -> upload B: nothing of A's run is shown as B's (status and downloads)."""
    b = app_page
    b.open(app.url)
    b.pick_demo_target("stylized_head", 120)
    b.click("#run-btn")
    b.wait_for("document.querySelector('#run-status').innerText.includes('stylized_head ← smile')", 240, "A's run")
    b.wait_for("document.querySelectorAll('#file-obj td.filename').length > 0", 30, "A's downloads")
    names_a = [n for sel in EXPORT_BOXES for n in b.file_names(sel)]
    assert len(names_a) == 4 and all(n.startswith("stylized_head") for n in names_a), names_a

    b.set_file("#target-upload input[type=file]", TARGETS / "face_crop_metres.obj")
    b.wait_for("document.querySelector('#target-info').innerText.includes('face_crop_metres')", 180, "target B")
    b.wait_for("document.querySelector('#run-status').innerText.includes('No result for face_crop_metres')", 30,
               "A's result withdrawn")
    status = b.text("#run-status")
    shown = [n for sel in EXPORT_BOXES for n in b.file_names(sel)]
    assert shown == [], shown                               # no download of A's run left on B's page
    assert "stylized_head ← smile:" not in status and "files are withdrawn" in status, status


def test_refused_upload_names_what_is_loaded(app, app_page):
    b = app_page
    b.open(app.url)
    b.set_file("#target-upload input[type=file]", TARGETS / "face_crop_metres.obj")
    b.wait_for("document.querySelector('#target-info').innerText.includes('face_crop_metres')", 180,
               "the target")
    b.eval("(x => x && x.click())(document.querySelector('#target-upload button[aria-label=Clear]'))")  # if shown
    b.wait_for("!!document.querySelector('#target-upload input[type=file]')", 20, "an empty target box")
    b.set_file("#target-upload input[type=file]", BAD_MESH)
    b.wait_for("document.querySelector('#target-info').innerText.includes('Not loaded')", 60, "the refusal")
    info = b.text("#target-info")
    assert "nan_vertices.obj" in info and "non-finite" in info, info
    assert "Still loaded: face_crop_metres" in info, info       # the target that is really loaded
    b.wait_for("document.querySelectorAll('#target-upload td.filename').length === 0", 20, "the box emptied")
    toast = "[...document.querySelectorAll('[data-testid=toast-body]')].some(t => t.innerText.includes('non-finite'))"
    b.wait_for(toast, 20, "the error message")
    time.sleep(11)                                               # gradio's default toast lifetime is 10 s
    assert b.eval(toast), "the error message vanished before it was dismissed"


def test_slider_edits_across_a_clip_change(app, app_page, clip_csv):
    """Edits belong to (target, clip): a new clip resets the sliders and offers the old edits, as the page
    says; carrying them over puts them in the next run, listed by name."""
    b = app_page
    b.open(app.url)
    b.pick_demo_target("face_crop_metres")
    b.tab("Edit")
    b.wait_for("[...document.querySelectorAll('button')].some(e => e.innerText.trim().startsWith('jaw ('))", 120,
               "the jaw sliders' accordion")             # drawn once the target's edit panel is refreshed
    b.eval("[...document.querySelectorAll('button')].find(e => e.innerText.trim().startsWith('jaw (')).click()")
    b.wait_for("!!document.querySelector('#slider-jawOpen input[type=number]')", 60, "the sliders")
    edited = "document.querySelector('#edit-status').innerText.includes('jawOpen +0.40')"
    b.set_slider("jawOpen", 0.4)
    try:
        b.wait_for(edited, 30, "the edit")
    except TimeoutError as e:
        # seen once in about ten CI runs: the typed value stayed in the box but no edit arrived; type it again as a
        # person would, and say so (the app log goes into the report when the test fails)
        print(f"typed slider value not taken up, typing it again: {e}")
        b.set_slider("jawOpen", 0.0)
        b.set_slider("jawOpen", 0.4)
        b.wait_for(edited, 60, "the edit, typed a second time")
    assert "face_crop_metres × smile" in b.text("#edit-status")

    b.tab("Source")
    b.wait_for("!!document.querySelector('#clip-upload input[type=file]')", 20, "the clip upload field")
    b.set_file("#clip-upload input[type=file]", clip_csv)
    b.wait_for("document.querySelector('#clip-info').innerText.includes('smile_jaw')", 60, "the new clip")
    b.tab("Edit")
    b.wait_for("document.querySelector('#edit-status').innerText.includes('face_crop_metres × smile_jaw')", 30,
               "the new pair's edits")
    status = b.text("#edit-status")
    assert "face_crop_metres × smile_jaw**: no edits" in status or "smile_jaw: no edits" in status, status
    assert "sliders were reset" in status and "jawOpen +0.40" in status, status    # the old edits, offered
    assert b.slider_value("jawOpen") == 0.0                                        # what the page says
    assert b.eval("!!document.querySelector('#carry-edits') && "
                  "document.querySelector('#carry-edits').offsetParent !== null")

    b.click("#carry-edits")
    b.wait_for("document.querySelector('#edit-status').innerText.includes('carried over')", 30, "the carry-over")
    assert abs(b.slider_value("jawOpen") - 0.4) < 1e-6
    b.click("#run-btn")
    b.wait_for("document.querySelector('#run-status').innerText.includes('face_crop_metres ← smile_jaw:')", 240,
               "the run")
    assert "slider edits included in the exports: whole clip: jawOpen +0.40" in b.text("#run-status")


# ------------------------------------------------------------------------------------------------ frame rate
VIEWER_TIMING = """(() => {
    const all = [...document.querySelectorAll('*')];
    const after = (label, selector) => {
        const i = all.findIndex(e => e.childElementCount === 0 && e.textContent.trim() === label);
        return i < 0 ? null : all.slice(i).find(e => e.matches(selector));
    };
    const frame = after('Frame', '[role=slider]'), fps = after('FPS', 'input');
    return frame && fps ? [Number(frame.getAttribute('aria-valuemax')) + 1, Number(fps.value)] : null;
})()"""


def viewer_timing(b, expected_frames: int | None = None, timeout: float = 60.0) -> tuple[int, float]:
    """(frames, fps) of the embedded viewer's playback controls (its Frame slider and FPS box), once it shows
    `expected_frames` frames (or anything, when None) or `timeout` s have passed."""
    deadline, shown = time.time() + timeout, None
    while time.time() < deadline:
        every = []                          # each viewer frame's (a new run's page may hold a fresh iframe)
        for frame in b.page.frames:
            if frame != b.page.main_frame:
                try:
                    every.append(frame.evaluate(VIEWER_TIMING))
                except Exception:  # noqa: BLE001 - an iframe replaced meanwhile
                    pass
        every = [x for x in every if x]
        shown = next((x for x in every if expected_frames is None or x[0] == expected_frames),
                     every[-1] if every else None)
        if shown and (expected_frames is None or shown[0] == expected_frames):
            break
        time.sleep(0.5)
    assert shown, "the viewer's Frame slider and FPS box were not found"
    return int(shown[0]), float(shown[1])


def test_resampled_run_viewer_and_files_agree(app, app_page, tmp_path):
    """A 30 fps take run at 24 fps: the viewer plays the files' frames at their rate (its frame count and fps
    equal the exported GLB animation's), and a new clip sets the frame-rate field back to the clip's own rate."""
    import urllib.request

    from glb_reader import read_glb_mesh

    take = write_expression_csv(tmp_path / "take_30fps.csv", n_frames=12)      # 12 frames at 30 fps, 0.367 s
    b = app_page
    b.open(app.url)
    b.pick_demo_target("face_crop_metres")
    b.tab("Source")
    b.wait_for("!!document.querySelector('#clip-upload input[type=file]')", 20, "the clip upload field")
    b.set_file("#clip-upload input[type=file]", take)
    b.wait_for("document.querySelector('#clip-info').innerText.includes('take_30fps')", 60, "the take")
    assert viewer_timing(b, 12) == (12, 30.0)
    b.page.eval_on_selector("#fps-pick input", """el => {
        const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
        el.focus(); set.call(el, '24');
        el.dispatchEvent(new Event('input', {bubbles: true}));
        el.dispatchEvent(new Event('change', {bubbles: true}));
        el.blur(); }""")
    b.click("#run-btn")
    status = b.wait_for("document.querySelector('#run-status').innerText.includes('←') && "
                        "document.querySelector('#run-status').innerText", 240, "the run")
    assert "9 frames at 24 fps" in status, status          # (12 - 1) / 30 s at 24 fps: 9 frames
    glb_url = b.wait_for("(document.querySelector('#file-glb a') || {}).href", 30, "the GLB download link")
    glb_path = tmp_path / "run.glb"
    with urllib.request.urlopen(glb_url, timeout=30) as r:
        glb_path.write_bytes(r.read())
    times = read_glb_mesh(glb_path).animation["times"]
    glb_frames, glb_fps = len(times), (len(times) - 1) / float(times[-1])
    frames, fps = viewer_timing(b, glb_frames)
    assert (frames, fps) == (glb_frames, round(glb_fps)) == (9, 24), (frames, fps, glb_frames, glb_fps)

    b.tab("Source")
    b.eval("(x => x && x.click())(document.querySelector('#clip-upload button[aria-label=Clear]'))")
    b.wait_for("!!document.querySelector('#clip-upload input[type=file]')", 20, "an empty clip box")
    b.set_file("#clip-upload input[type=file]", write_expression_csv(tmp_path / "next_take.csv", n_frames=10))
    b.wait_for("document.querySelector('#clip-info').innerText.includes('next_take')", 60, "the next clip")
    try:
        b.wait_for("Number(document.querySelector('#fps-pick input').value) === 0", 30, "the frame-rate field at 0")
    except TimeoutError:
        pass                                                   # the assertion below says what it holds
    assert b.eval("document.querySelector('#fps-pick input').value") == "0"   # the next clip at its own rate
    assert viewer_timing(b, 10) == (10, 30.0)
