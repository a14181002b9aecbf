"""Helpers for the app's end-to-end tests: start the real `python app.py` on free ports and wait for it."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nfs import EXPRESSION_NAMES, SHIPPED_MODEL_DIR
from nfs.io import save_codes_csv

APP_ROOT = Path(__file__).resolve().parents[1]  # the checkout, where app.py lives


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningApp:
    url: str
    viewer_port: int
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def shipped_model_present() -> bool:
    d = SHIPPED_MODEL_DIR
    return (d / "model.safetensors").exists() and (d / "model_card.json").exists()


@contextlib.contextmanager
def running_app(log_dir: Path, max_frames: int = 12, timeout_s: float = 180.0, extra_args=()):
    """`python app.py` on free ports (the shipped model; random weights only if no checkpoint is present)."""
    port, viewer_port = free_port(), free_port()
    args = [sys.executable, str(APP_ROOT / "app.py"), "--port", str(port), "--viewer-port", str(viewer_port),
            "--max-frames", str(max_frames), *extra_args]
    if not shipped_model_present():
        args.append("--random-init")
    log_path = Path(log_dir) / f"app_{port}.log"
    gradio_tmp = Path(log_dir) / "gradio_cache"
    gradio_tmp.mkdir(exist_ok=True)
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", GRADIO_TEMP_DIR=str(gradio_tmp))
    with open(log_path, "w") as log:
        proc = subprocess.Popen(args, cwd=APP_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    app = RunningApp(url, viewer_port, proc, log_path)
    try:
        deadline = time.time() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app exited with {proc.returncode}:\n{app.log()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200 and "NFS app:" in app.log():
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise TimeoutError(f"app not ready after {timeout_s} s:\n{app.log()[-3000:]}")
            time.sleep(0.5)
        yield app
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def write_expression_csv(path: Path, n_frames: int = 10, shapes=("mouthSmile_L", "mouthSmile_R", "jawOpen"),
                         peak: float = 1.0) -> Path:
    """A short ICT-weights CSV that rises from neutral to `peak` on `shapes` (a clear expression)."""
    codes = np.zeros((n_frames, len(EXPRESSION_NAMES)), np.float32)
    ramp = np.clip(np.linspace(0.0, 1.6, n_frames), 0.0, 1.0) * peak
    for name in shapes:
        codes[:, EXPRESSION_NAMES.index(name)] = ramp * (0.45 if name == "jawOpen" else 1.0)
    save_codes_csv(path, codes)
    return path
