"""Anatomical regions on the ICT skin (11,248 vertices), stored in nfs/resources/ict_regions.npz.

Every skin vertex carries one of ``N_REGIONS`` labels; left/right regions (``_L`` = character's left,
+X) are mirror images of each other. The file is produced by tools/make_regions.py from the ICT
expression basis (which shapes move a vertex) and the neutral geometry.
"""
from __future__ import annotations

import functools

import numpy as np

from nfs.resources import REGIONS_PATH

REGION_NAMES = (
    "forehead",
    "brow_L", "brow_R",
    "upper_eyelid_L", "upper_eyelid_R",
    "lower_eyelid_L", "lower_eyelid_R",
    "nose",
    "cheek_L", "cheek_R",
    "upper_lip", "lower_lip",
    "mouth_corner_L", "mouth_corner_R",
    "chin",
    "jaw_L", "jaw_R",
    "temple_L", "temple_R",
    "ear_L", "ear_R",
    "neck",
    "scalp",
)
N_REGIONS = len(REGION_NAMES)

# One hue per anatomical part; the character's left is the lighter shade, the right the darker one.
_PART_COLORS = {
    "forehead": (122, 200, 230),
    "brow": (150, 90, 40),
    "upper_eyelid": (240, 80, 160),
    "lower_eyelid": (170, 120, 230),
    "nose": (240, 170, 40),
    "cheek": (120, 200, 90),
    "upper_lip": (230, 40, 50),
    "lower_lip": (150, 20, 60),
    "mouth_corner": (250, 230, 60),
    "chin": (40, 110, 200),
    "jaw": (60, 170, 160),
    "temple": (200, 200, 150),
    "ear": (230, 120, 90),
    "neck": (150, 150, 150),
    "scalp": (90, 90, 110),
}


def mirror_region_name(name: str) -> str:
    """Name of the mirror-image region (brow_L <-> brow_R; midline regions map to themselves)."""
    if name.endswith("_L"):
        return name[:-2] + "_R"
    if name.endswith("_R"):
        return name[:-2] + "_L"
    return name


def mirror_region_index() -> np.ndarray:
    """(N_REGIONS,) int64: for each region, the index of its mirror region."""
    return np.array([REGION_NAMES.index(mirror_region_name(n)) for n in REGION_NAMES], dtype=np.int64)


def region_colors() -> np.ndarray:
    """(N_REGIONS, 3) uint8 RGB palette; a left region is a lighter shade of its right partner's hue."""
    out = []
    for name in REGION_NAMES:
        base = np.array(_PART_COLORS[name[:-2] if name[-2:] in ("_L", "_R") else name], dtype=np.float64)
        if name.endswith("_L"):
            base = base + (255.0 - base) * 0.3
        elif name.endswith("_R"):
            base = base * 0.75
        out.append(base)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _load_labels() -> np.ndarray:
    data = np.load(REGIONS_PATH, allow_pickle=False)
    names = tuple(str(s) for s in data["names"])
    if names != REGION_NAMES:
        raise ValueError(f"{REGIONS_PATH} names {names} differ from REGION_NAMES; rerun tools/make_regions.py")
    labels = data["labels"].astype(np.int64)
    labels.setflags(write=False)
    return labels


def ict_region_labels() -> np.ndarray:
    """(11248,) int64 region index of every ICT skin vertex (read-only, cached)."""
    return _load_labels()


def region_vertex_indices(name: str) -> np.ndarray:
    """Indices of the ICT skin vertices in region `name`."""
    return np.nonzero(ict_region_labels() == REGION_NAMES.index(name))[0]
