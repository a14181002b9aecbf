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


def ict_to_arkit_shapes(ict_shapes: np.ndarray) -> np.ndarray:
    """(53, V, 3) ICT shape deltas -> (52, V, 3) ARKit shape deltas: each ARKit shape is the sum of its ICT shapes
    (browInnerUp = browInnerUp_L + browInnerUp_R, cheekPuff likewise, as ARKit drives both halves with one weight;
    tongueOut, which ICT lacks, is zero)."""
    return np.einsum("ak,k...->a...", _matrix(), np.asarray(ict_shapes, np.float32)).astype(np.float32)


# The 15 Oculus visemes under the names Ready Player Me avatars carry, each a mix of ARKit shapes (a mouth pose
# for the sound, chosen here by what the lips, jaw and tongue do for it); viseme_sil is the rest pose.
VISEME_NAMES = ("viseme_sil", "viseme_PP", "viseme_FF", "viseme_TH", "viseme_DD", "viseme_kk", "viseme_CH",
                "viseme_SS", "viseme_nn", "viseme_RR", "viseme_aa", "viseme_E", "viseme_I", "viseme_O", "viseme_U")
_BOTH = ("mouthPress", "mouthStretch", "mouthSmile", "mouthUpperUp", "mouthLowerDown", "mouthFrown")
VISEME_MIXES = {
    "viseme_sil": {},
    "viseme_PP": {"mouthPress": 0.6, "mouthRollLower": 0.25, "mouthRollUpper": 0.25, "mouthClose": 0.1},
    "viseme_FF": {"mouthRollLower": 0.55, "mouthUpperUp": 0.2, "jawOpen": 0.08},
    "viseme_TH": {"jawOpen": 0.15, "tongueOut": 0.45, "mouthStretch": 0.1},
    "viseme_DD": {"jawOpen": 0.2, "mouthStretch": 0.2, "mouthLowerDown": 0.1},
    "viseme_kk": {"jawOpen": 0.25, "mouthStretch": 0.15},
    "viseme_CH": {"jawOpen": 0.12, "mouthFunnel": 0.45, "mouthPucker": 0.25, "mouthUpperUp": 0.1},
    "viseme_SS": {"jawOpen": 0.05, "mouthStretch": 0.35, "mouthSmile": 0.15},
    "viseme_nn": {"jawOpen": 0.15, "mouthStretch": 0.1, "mouthLowerDown": 0.1},
    "viseme_RR": {"jawOpen": 0.1, "mouthFunnel": 0.3, "mouthPucker": 0.25},
    "viseme_aa": {"jawOpen": 0.6, "mouthLowerDown": 0.2, "mouthUpperUp": 0.1},
    "viseme_E": {"jawOpen": 0.3, "mouthStretch": 0.3, "mouthSmile": 0.2},
    "viseme_I": {"jawOpen": 0.2, "mouthSmile": 0.35, "mouthStretch": 0.25},
    "viseme_O": {"jawOpen": 0.35, "mouthFunnel": 0.5, "mouthPucker": 0.2},
    "viseme_U": {"jawOpen": 0.15, "mouthPucker": 0.7, "mouthFunnel": 0.2},
}


def viseme_matrix() -> np.ndarray:
    """(15, 52) weights W with viseme shapes = W @ ARKit shapes (VISEME_NAMES order, ARKIT_NAMES columns; a mix
    naming a paired shape without its side drives both sides)."""
    w = np.zeros((len(VISEME_NAMES), len(ARKIT_NAMES)), np.float32)
    for i, name in enumerate(VISEME_NAMES):
        for shape, weight in VISEME_MIXES[name].items():
            sides = [shape + "Left", shape + "Right"] if shape in _BOTH else [shape]
            for s in sides:
                w[i, ARKIT_NAMES.index(s)] = weight
    return w
