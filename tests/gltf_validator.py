"""Run the Khronos glTF validator (node + the npm package `gltf-validator`) on exported files.

Development tool for the tests and benchmarks (bench/ loads this file by path); the product does not need node. `npm ci` in the repository root
installs the pinned validator (package.json). `available()` says whether node and the package are there.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gltf_validate.mjs"
PACKAGE = ROOT / "node_modules" / "gltf-validator"


def available() -> bool:
    return shutil.which("node") is not None and PACKAGE.is_dir()


def validate(*paths, timeout: float = 600.0) -> list[dict]:
    """One report per file: {"path", "errors", "warnings", "infos", "hints", "messages"} (counts, message lines)."""
    if not available():
        raise RuntimeError("the glTF validator needs node and `npm ci` in the repository root")
    out = subprocess.run(["node", str(SCRIPT), *map(str, paths)], capture_output=True, text=True, timeout=timeout,
                         check=True, cwd=ROOT)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
