"""Write assets/jaw_open_teeth.png: the app's 3D viewer showing the demo head with its own teeth
(assets/targets/ict_head_with_teeth.obj) with the jaw wide open (jawOpen = 1), beside the source face.

It starts the real app, loads the demo head and the built-in clip ``jaw_open_full`` through gradio_client, sets
the whole-clip jawOpen slider so the head shows jawOpen 1 (the baked rig of one shape is exactly the network's
output for it, teeth binding included), and photographs the session's viewer in headless Chromium (the browser
test's driver). Run from the repo root: ``python tools/make_teeth_screenshot.py``.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

from app_harness import running_app  # noqa: E402
from test_app_browser import Browser, drawn_fraction  # noqa: E402


def capture(b: Browser, path: Path):
    """A screenshot with a patient timeout (software WebGL on a busy machine is slow)."""
    import base64

    import numpy as np
    from PIL import Image
    path.write_bytes(base64.b64decode(b.call("Page.captureScreenshot", timeout=300, format="png")["data"]))
    return np.asarray(Image.open(path).convert("RGB"))

OUT = ROOT / "assets" / "jaw_open_teeth.png"
SCALE = 2                                    # device pixels per CSS pixel: the heads drawn at twice the detail
PANEL_X = 1000                               # CSS pixels: the viewer's control panel starts right of this


def drawn_box(img, pad: int = 24) -> tuple[int, int, int, int]:
    """The box around what is drawn left of the control panel (the two heads and their titles)."""
    left = img[:, : PANEL_X * SCALE].astype(int)
    ys, xs = np.nonzero(left.min(-1) < 235)
    keep = ys < 0.85 * img.shape[0]                 # not the axes widget in the bottom corner
    ys, xs = ys[keep], xs[keep]
    return (max(0, xs.min() - pad), max(0, ys.min() - pad), min(left.shape[1], xs.max() + pad),
            min(img.shape[0], ys.max() + pad))


def main() -> int:
    from gradio_client import Client
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp, running_app(Path(tmp), max_frames=0) as app:
        c = Client(app.url, verbose=False)
        print(c.predict("ict_head_with_teeth", api_name="/load_demo_target")[0].splitlines()[0])
        c.predict("jaw_open_full", api_name="/set_clip")
        c.predict("whole clip", -1, '{"jawOpen": 1.0}', api_name="/edit")
        c.predict("shaded", 26, False, api_name="/display")        # no template overlay over the head
        url = c.predict(api_name="/viewer_url")
        c.predict(45, api_name="/seek")                 # the source's first wide-open frame
        shot = Path(tmp) / "viewer.png"
        b = Browser(size=(1300, 900))
        try:
            b.call("Emulation.setDeviceMetricsOverride", width=1300, height=900, deviceScaleFactor=SCALE, mobile=False)
            b.call("Page.navigate", timeout=300, url=url)
            for _ in range(60):
                time.sleep(0.5)
                if drawn_fraction(capture(b, shot), (0, 150 * SCALE, 900 * SCALE, 850 * SCALE)) > 0.05:
                    break
            b.dismiss_notices()
            time.sleep(1.0)
            capture(b, shot)
        finally:
            b.close()
        img = Image.open(shot).convert("RGB")
        img.crop(drawn_box(np.asarray(img))).save(OUT, optimize=True)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
