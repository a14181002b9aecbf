"""The app's page in a Playwright browser page: waits that say what the page showed when they time out, the
controls the browser tests use, screenshots, and the requests the page made (to prove it stays on this machine)."""
from __future__ import annotations

import base64
import io
import json
import urllib.parse
from pathlib import Path

import numpy as np

STATUS_BOXES = ("#run-status", "#target-info", "#clip-info", "#edit-status", "#video-info")


class AppPage:
    """A Playwright `Page` with the app's vocabulary; every request the page (and its frames) makes is recorded."""

    def __init__(self, page):
        self.page = page
        self.requests: list[str] = []
        self._devtools = None
        page.on("request", lambda request: self.requests.append(request.url))

    # ------------------------------------------------------------------------------------------ reading
    def eval(self, expression: str):
        return self.page.evaluate(expression)

    def wait_for(self, expression: str, timeout: float = 60.0, what: str = ""):
        """The (truthy) value of a JavaScript expression once it is truthy; TimeoutError naming `what` and the
        page's status boxes after `timeout` seconds."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        try:
            return self.page.wait_for_function(expression, timeout=timeout * 1000, polling=250).json_value()
        except PlaywrightTimeout:
            raise TimeoutError(f"waited {timeout:.0f} s for {what or expression}; the page then showed: "
                               f"{self.state()}") from None

    def state(self) -> str:
        """What a person would look at when something hangs: the status boxes and any message on screen."""
        try:
            return str(self.eval(f"""JSON.stringify(Object.fromEntries(
                {json.dumps(list(STATUS_BOXES))}
                    .map(s => [s, document.querySelector(s) ? document.querySelector(s).innerText : 'missing'])
                    .concat([['toasts', [...document.querySelectorAll('[data-testid=toast-body]')]
                        .map(t => t.innerText)]])))"""))[:3000]
        except Exception as e:  # noqa: BLE001 - a diagnostic must not hide the timeout
            return f"(unreadable: {e})"

    def text(self, selector: str) -> str:
        return self.eval(f"(document.querySelector({json.dumps(selector)}) || {{innerText: ''}}).innerText")

    def file_names(self, selector: str) -> list[str]:
        return self.eval(f"[...document.querySelectorAll({json.dumps(selector + ' td.filename')})]"
                         ".map(td => td.getAttribute('aria-label'))")

    def slider_value(self, name: str) -> float:
        return float(self.eval(f"document.querySelector('#slider-{name} input[type=number]').value"))

    def external_requests(self) -> list[str]:
        """Requests to any host but this machine (none expected: the app works offline)."""
        return [u for u in self.requests if u.startswith("http") and urllib.parse.urlparse(u).hostname
                not in ("127.0.0.1", "localhost")]

    def devtools(self):
        """Chromium's DevTools session of this page (Playwright's CDP session)."""
        if self._devtools is None:
            self._devtools = self.page.context.new_cdp_session(self.page)
        return self._devtools

    # ------------------------------------------------------------------------------------------ acting
    def open(self, url: str) -> None:
        """The app's page, once its run button and its embedded viewer are there."""
        self.page.goto(url)
        self.wait_for("!!document.querySelector('#run-btn') && !!document.querySelector('#viewer-frame iframe')",
                      60, "the page and the viewer iframe")

    # Clicks, typing and files go to the element directly (its click(), DOM events, the file chooser's files): the
    # locator actions wait for animation frames, which the page's software-WebGL viewer on a busy 2-core machine
    # can hold back for tens of seconds.
    def click(self, selector: str) -> None:
        self.eval(f"document.querySelector({json.dumps(selector)}).click()")

    def tab(self, label: str) -> None:
        self.eval(f"[...document.querySelectorAll('button[role=tab]')].find(t => t.innerText.includes("
                  f"{json.dumps(label)})).click()")

    def pick_demo_target(self, name: str, timeout: float = 180.0) -> None:
        self.tab("Target")
        radio = f"#demo-targets input[value={json.dumps(name)}]"
        self.wait_for(f"!!document.querySelector({json.dumps(radio)})", 20, "the demo targets")
        self.click(radio)
        self.wait_for(f"document.querySelector('#target-info').innerText.includes({json.dumps(name)})", timeout,
                      f"the demo target {name}")

    def set_file(self, selector: str, path: Path) -> None:
        """Choose a file in a file input, as its file chooser does (Chromium's DOM.setFileInputFiles)."""
        devtools = self.devtools()
        root = devtools.send("DOM.getDocument", {"depth": -1, "pierce": True})["root"]["nodeId"]
        node = devtools.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        assert node, f"no element {selector}"
        devtools.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(path)]})

    def set_slider(self, name: str, value: float) -> None:
        """Type a value into a slider's number box, as a user does (input, change, Enter, leave the box)."""
        self.page.eval_on_selector(f"#slider-{name} input[type=number]", """(el, value) => {
            const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
            el.focus(); set.call(el, value);
            el.dispatchEvent(new Event('input', {bubbles: true}));
            el.dispatchEvent(new Event('change', {bubbles: true}));
            el.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true}));
            el.blur(); }""", str(value))

    def dismiss_notices(self) -> None:
        """Close viser's "software WebGL" notice (headless Chromium renders WebGL on the CPU) in every frame."""
        for frame in self.page.frames:
            try:
                frame.evaluate("document.querySelectorAll('.mantine-Notification-closeButton').forEach(b => b.click())")
            except Exception:  # noqa: BLE001 - a frame that navigated away meanwhile
                pass

    def screenshot(self, path: Path) -> np.ndarray:
        """The page as shown now (Chromium's own capture: Playwright's screenshot waits for web fonts that a
        viewer page offline may never finish loading)."""
        from PIL import Image
        data = base64.b64decode(self.devtools().send("Page.captureScreenshot", {"format": "png"})["data"])
        path.write_bytes(data)
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def bounding_box(self, selector: str) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of an element in the viewport, in CSS pixels."""
        return tuple(self.eval(f"(r => [r.left, r.top, r.right, r.bottom])(document.querySelector("
                               f"{json.dumps(selector)}).getBoundingClientRect())"))


def drawn_fraction(img: np.ndarray, box=None) -> float:
    """Fraction of pixels in a box (x0, y0, x1, y1) that are clearly not background: coloured or mid-grey
    shading (the viewer's background is white, its panel and text are small)."""
    if box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        img = img[max(0, y0):y1, max(0, x0):x1]
    rgb = img.astype(np.int16)
    shaded = (rgb.max(-1) < 235) & (rgb.min(-1) > 40)
    return float(shaded.mean()) if shaded.size else 0.0
