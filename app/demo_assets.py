"""Bundled demo targets (assets/targets/, written by tools/make_demo_targets.py) and built-in clips."""
from __future__ import annotations

from pathlib import Path

from nfs.io import list_builtin_clips

TARGETS_DIR = Path(__file__).resolve().parents[1] / "assets" / "targets"

DESCRIPTIONS = {
    "ict_remeshed": "ICT identity, decimated to ~4k vertices (new topology)",
    "face_crop_metres": "face-only crop in metres, Z-up, looking along +X",
    "stylized_head": "stylized head from exaggerated identity modes (|c| = 3)",
    "ict_head_with_teeth": "ICT head with its own teeth, gums, tongue, mouth bag and eyeballs",
}


def demo_targets() -> dict[str, Path]:
    """name -> OBJ path of every bundled demo target, in a stable order."""
    return {p.stem: p for p in sorted(TARGETS_DIR.glob("*.obj"))}


def demo_target_path(name: str) -> Path:
    targets = demo_targets()
    if name not in targets:
        raise ValueError(f"no demo target named {name!r}; choose one of {', '.join(targets) or '(none)'}")
    return targets[name]


def builtin_clips() -> list[str]:
    return list_builtin_clips()
