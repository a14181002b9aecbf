"""Apple ARKit's 52 blendshape names and the one map between them and the 53 ICT expressions.

Every ARKit source (Live Link Face takes, MediaPipe's blendshape scores from a video) becomes ICT weights through
`arkit_to_ict_matrix`, and every ARKit-named export goes back through `ict_to_arkit_name` / `ict_to_arkit_weights`.
ICT's shapes are the ARKit names in `_L` / `_R` form, with browInnerUp and cheekPuff split into two halves and no
tongueOut. "Left" is the subject's left in both.

Rigs spell the names in several ways (`eyeBlinkLeft`, `EyeBlinkLeft`, `eyeBlink_L`, `eyeBlinkL`); `arkit_key`
folds them to one key so matching by name accepts all of them.
"""
from __future__ import annotations

import functools
import re

import numpy as np

from nfs.ict import EXPRESSION_NAMES, N_EXPRESSION

SPLIT_PAIRS = ("browInnerUp", "cheekPuff")      # one ARKit name, two ICT halves


def ict_to_arkit_name(name: str) -> str:
    """ICT shape name -> ARKit blendshape name (browInnerUp_L/_R and cheekPuff_L/_R share one ARKit name)."""
    if name[:-2] in SPLIT_PAIRS and name.endswith(("_L", "_R")):
        return name[:-2]
    if name.endswith("_L"):
        return name[:-2] + "Left"
    if name.endswith("_R"):
        return name[:-2] + "Right"
    return name


ARKIT_NAMES = tuple(dict.fromkeys(ict_to_arkit_name(n) for n in EXPRESSION_NAMES)) + ("tongueOut",)
assert len(ARKIT_NAMES) == 52


@functools.lru_cache(maxsize=1)
def _matrix() -> np.ndarray:
    m = np.zeros((len(ARKIT_NAMES), N_EXPRESSION), np.float32)
    for j, name in enumerate(EXPRESSION_NAMES):
        m[ARKIT_NAMES.index(ict_to_arkit_name(name)), j] = 1.0
    m.setflags(write=False)
    return m


def arkit_to_ict_matrix() -> np.ndarray:
    """(52, 53) matrix M with ict_weights = arkit_weights @ M (shared ARKit names drive both ICT halves;
    tongueOut has no ICT shape and maps to nothing)."""
    return _matrix().copy()


def ict_to_arkit_weights(ict_weights: np.ndarray) -> np.ndarray:
    """(..., 53) ICT weights -> (..., 52) ARKit weights (split pairs averaged, tongueOut 0)."""
    m = _matrix()
    return np.asarray(ict_weights, np.float32) @ m.T / np.maximum(m.sum(1), 1.0)


def arkit_key(name: str) -> str:
    """A spelling-independent key of an ARKit-style name: `eyeBlinkLeft`, `EyeBlinkLeft`, `eyeBlink_L`,
    `eyeBlinkL`, `eye_blink_left` all give 'eyeblinkleft'; ICT's split halves (`browInnerUp_L`) keep their side."""
    s = re.sub(r"[\s_.\-]", "", name.strip()).lower()
    if name.strip()[:-2] in SPLIT_PAIRS:
        return s                                      # browInnerUp_L -> browinnerupl: an ICT half, not ARKit's
    if s.endswith(("left", "right")):
        return s
    raw = name.strip()
    side = {"l": "left", "r": "right"}.get(raw[-1:].lower())
    if side and (raw[-1].isupper() or raw[-2:-1] in ("_", "-", ".", " ")):     # eyeBlinkL, eyeBlink_l
        return s[:-1] + side
    return s


def match_arkit_names(names) -> tuple[dict[str, str], list[str]]:
    """Match a rig's target names to ARKit names in any spelling: ({rig name: ARKit name}, [rig names not matched])."""
    by_key = {arkit_key(n): n for n in ARKIT_NAMES}
    matched, unmatched = {}, []
    for n in names:
        hit = by_key.get(arkit_key(n))
        if hit is None:
            unmatched.append(n)
        else:
            matched[n] = hit
    return matched, unmatched
