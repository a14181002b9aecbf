"""A dense scan-like upload (about 320,000 vertices, tests/data_makers/dense_scan.py) through the page in a real
headless Chromium: the preparation shows its steps (stage k of n) with a clock that moves, Cancel returns the page
at once with the previous state kept, the same file uploaded again is prepared and shown in the viewer, and a run
of the shared app's short clip (12 frames) completes with its downloads."""
from __future__ import annotations

import re
import time

import pytest

from app_page import drawn_fraction
from data_makers.dense_scan import write_dense_scan
from nfs.pipeline import PREPARE_STAGES

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
INFO = "document.querySelector('#target-info').innerText"
STAGE = re.compile(r"stage (\d+)/(\d+) · ([a-z ]+)")


def progress_lines(b, until: str, timeout: float, what: str) -> list[str]:
    """The target box's text every half second until the JavaScript condition `until` holds (the text and the
    condition read in one call, so the text that made the condition hold is among those returned)."""
    seen, deadline = [], time.time() + timeout
    while time.time() < deadline:
        text, done = b.eval(f"[{INFO}, !!({until})]")
        if not seen or seen[-1] != text:
            seen.append(text)
        if done:
            return seen
        time.sleep(0.5)
    raise TimeoutError(f"waited {timeout:.0f} s for {what}; the page then showed: {b.state()}")


def test_dense_scan_shows_its_steps_cancels_and_runs(app, app_page, tmp_path):
    scan = write_dense_scan(tmp_path / "dense_scan.ply")
    b = app_page
    b.open(app.url)
    b.set_file("#target-upload input[type=file]", scan)
    # the staged line: the step k of n by name and an elapsed clock that moves on its own (the heartbeat)
    lines = progress_lines(b, f"/stage [2-9]\\/\\d+ · /.test({INFO})", 600, "the second step of the preparation")
    staged = [m for m in (STAGE.search(t) for t in lines) if m]
    numbers = [int(m.group(1)) for m in staged]
    assert staged and numbers == sorted(numbers), lines[-3:]                      # the steps, in order
    assert all(m.group(3).startswith(PREPARE_STAGES[int(m.group(1)) - 1]) for m in staged   # then the rig's
               if int(m.group(1)) <= len(PREPARE_STAGES)), lines[-3:]
    clocks = progress_lines(b, f"/(\\d+) s elapsed/.test({INFO}) && {INFO}.match(/(\\d+) s elapsed/)[1] >= 3",
                            120, "the clock to pass 3 s")
    assert any("elapsed" in t for t in clocks)

    b.click("#cancel-prepare")
    t = time.time()
    b.wait_for(f"{INFO}.includes('Not loaded') && {INFO}.includes('preparation cancelled')", 30,
               "the cancelled preparation")
    assert time.time() - t < 30
    assert "dense_scan.ply" in b.text("#target-info")

    # the same file again, prepared to the end this time, then shown and run
    b.eval("(x => x && x.click())(document.querySelector('#target-upload button[aria-label=Clear]'))")
    b.wait_for("!!document.querySelector('#target-upload input[type=file]')", 20, "an empty target box")
    b.set_file("#target-upload input[type=file]", scan)
    ready = f"{INFO}.includes('317,052 vertices') && !{INFO}.includes('Not loaded') && !/stage \\d/.test({INFO})"
    lines = progress_lines(b, ready, 1500, "the prepared scan")
    numbers = [int(m.group(1)) for m in (STAGE.search(t) for t in lines) if m]
    assert numbers == sorted(numbers) and len(set(numbers)) >= 3, lines      # the steps, in order
    box = b.bounding_box("#viewer-frame")
    for _ in range(60):                        # the viewer draws the scan (it loads, connects, then draws)
        if drawn_fraction(b.screenshot(tmp_path / "scan.png"), box) > 0.05:
            break
        time.sleep(1.0)
    assert drawn_fraction(b.screenshot(tmp_path / "scan.png"), box) > 0.05
    b.click("#run-btn")
    status = b.wait_for("document.querySelector('#run-status').innerText.includes('dense_scan ← smile:') && "
                        "document.querySelector('#run-status').innerText", 1500, "the run on the scan")
    assert "12 frames" in status, status
    b.wait_for("document.querySelectorAll('#file-obj td.filename').length > 0", 60, "the OBJ zip download")
