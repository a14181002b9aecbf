"""Multiface captures: ``tracked_mesh/<EXPRESSION>/<frame:06d>.obj`` in a folder or anywhere inside a zip."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from nfs.clips import MAX_FRAMES, Clip, ClipError, mesh_clip
from nfs.io.mesh_sequence import neutral_override, read_obj_frames
from nfs.io.zipsafe import ZIP_MAX_BYTES, ZIP_MAX_RATIO, open_zip, read_member

MULTIFACE_NEUTRAL = "E001_Neutral_Eyes_Open"
MULTIFACE_FPS = 30.0


def has_multiface_layout(path: Path) -> bool:
    """Whether a folder or a zip holds a Multiface ``tracked_mesh`` tree (a zip must be readable)."""
    if Path(path).is_dir():
        return (Path(path) / "tracked_mesh").is_dir() or Path(path).name == "tracked_mesh"
    with zipfile.ZipFile(path) as zf:
        return any("tracked_mesh/" in n for n in zf.namelist())


_MF_MEMBER = re.compile(r"(?:^|/)tracked_mesh/([^/]+)/(\d+)\.obj$", re.IGNORECASE)


def _multiface_index(root: Path, max_bytes, max_ratio):
    """{expression: [(frame_number, label, reader)]} for a Multiface folder or zip; the zip (or None)."""
    index: dict[str, list] = {}
    if root.is_file() and root.suffix.lower() == ".zip":
        zf, infos = open_zip(root, max_bytes, max_ratio)
        for info in infos:
            m = _MF_MEMBER.search(info.filename.replace("\\", "/"))
            if m:
                index.setdefault(m.group(1), []).append(
                    (int(m.group(2)), info.filename, (lambda i=info: read_member(zf, i, root.name))))
        return index, zf
    if not root.is_dir():
        raise ClipError(f"{root}: expected a Multiface subject folder or a .zip")
    candidates = [root] if root.name == "tracked_mesh" else [root / "tracked_mesh", *root.glob("*/tracked_mesh")]
    mesh_dir = next((c for c in candidates if c.is_dir()), None)
    if mesh_dir is None:
        raise ClipError(f"{root}: no tracked_mesh folder")
    for exp_dir in sorted(p for p in mesh_dir.iterdir() if p.is_dir()):
        for p in exp_dir.iterdir():
            if p.suffix.lower() == ".obj" and p.stem.isdigit():
                index.setdefault(exp_dir.name, []).append((int(p.stem), f"{exp_dir.name}/{p.name}", p.read_bytes))
    return index, None


def load_multiface_sequence(root, expression: str | None = None, neutral=None, capture_fps: float = MULTIFACE_FPS,
                            max_frames: int = MAX_FRAMES, max_bytes: int = ZIP_MAX_BYTES,
                            max_ratio: float = ZIP_MAX_RATIO) -> Clip:
    """One expression of a Multiface subject: ``tracked_mesh/<EXPRESSION>/<frame:06d>.obj``
    (folder, or a zip holding that layout anywhere inside). ``.bin`` and ``_transform.txt`` files
    are ignored, so vertices stay in Multiface's head-aligned frame (mm).

    `expression`: folder name (default: the first one that is not the neutral). `neutral`: None
    (first frame of ``E001_Neutral_Eyes_Open``, else the clip's first frame with a warning), another
    expression folder name, a path to an OBJ or a (V, 3) array. fps is `capture_fps` divided by the
    step between frame numbers (e.g. 000102, 000105, ... -> 10 fps at a 30 fps capture).
    """
    root = Path(root)
    what = root.name
    index, zf = _multiface_index(root, max_bytes, max_ratio)
    try:
        if not index:
            raise ClipError(f"{what}: no tracked_mesh/<expression>/<frame>.obj files")
        names = sorted(index)
        if expression is None:
            others = [n for n in names if n != MULTIFACE_NEUTRAL]
            expression = (others or names)[0]
        if expression not in index:
            raise ClipError(f"{what}: no expression {expression!r}; available: {', '.join(names)}")
        entries = sorted(index[expression], key=lambda e: e[0])
        warnings = []
        numbers = np.array([e[0] for e in entries])
        steps = np.diff(numbers)
        step = float(np.median(steps)) if len(steps) else 1.0
        if len(steps) and (steps != step).any():
            warnings.append(f"frame numbers are unevenly spaced (steps {sorted(set(steps.tolist()))}); "
                            f"fps assumes {step:g}")
        items = [(label, read) for _, label, read in entries]
        neutral_item, arr_neutral = None, neutral_override(neutral)
        if neutral is None or (isinstance(neutral, str) and neutral in index):
            neutral_name = neutral or MULTIFACE_NEUTRAL
            if neutral_name in index:
                _, label, read = min(index[neutral_name], key=lambda e: e[0])
                neutral_item = (label, read)
            else:
                warnings.append(f"no {neutral_name} folder: the clip's first frame is the neutral")
        elif isinstance(neutral, (str, Path)):
            if not Path(neutral).is_file():
                raise ClipError(f"{what}: neutral {str(neutral)!r} is neither an expression folder nor a file")
            neutral_item = (Path(neutral).name, Path(neutral).read_bytes)
        frames, faces, neu = read_obj_frames(items, what, max_frames, neutral_item)
        if arr_neutral is not None:
            neu = arr_neutral
        return mesh_clip(expression, frames, faces, neu, capture_fps / max(step, 1.0), warnings)
    finally:
        if zf is not None:
            zf.close()
