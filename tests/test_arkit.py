"""The one ARKit <-> ICT map (nfs/arkit.py): Apple's 52 names, the weight matrix both ways, names in any spelling."""
import numpy as np

from nfs.arkit import (ARKIT_NAMES, arkit_key, arkit_to_ict_matrix, ict_to_arkit_name, ict_to_arkit_weights,
                       match_arkit_names)
from nfs.ict import EXPRESSION_NAMES, N_EXPRESSION

# Apple's 52 ARKit blendshape names.
ARKIT_52 = set("""
eyeBlinkLeft eyeLookDownLeft eyeLookInLeft eyeLookOutLeft eyeLookUpLeft eyeSquintLeft eyeWideLeft
eyeBlinkRight eyeLookDownRight eyeLookInRight eyeLookOutRight eyeLookUpRight eyeSquintRight eyeWideRight
jawForward jawLeft jawRight jawOpen mouthClose mouthFunnel mouthPucker mouthLeft mouthRight
mouthSmileLeft mouthSmileRight mouthFrownLeft mouthFrownRight mouthDimpleLeft mouthDimpleRight
mouthStretchLeft mouthStretchRight mouthRollLower mouthRollUpper mouthShrugLower mouthShrugUpper
mouthPressLeft mouthPressRight mouthLowerDownLeft mouthLowerDownRight mouthUpperUpLeft mouthUpperUpRight
browDownLeft browDownRight browInnerUp browOuterUpLeft browOuterUpRight cheekPuff cheekSquintLeft
cheekSquintRight noseSneerLeft noseSneerRight tongueOut
""".split())


def test_arkit_names_are_apples_52():
    assert len(ARKIT_NAMES) == 52 and len(set(ARKIT_NAMES)) == 52
    assert set(ARKIT_NAMES) == ARKIT_52
    assert ict_to_arkit_name("eyeBlink_L") == "eyeBlinkLeft" and ict_to_arkit_name("jawOpen") == "jawOpen"


def test_arkit_to_ict_matrix():
    m = arkit_to_ict_matrix()
    assert m.shape == (52, N_EXPRESSION)
    assert np.array_equal(m.sum(0), np.ones(N_EXPRESSION)), "every ICT shape is driven by exactly one ARKit name"
    assert not m[ARKIT_NAMES.index("tongueOut")].any(), "tongueOut maps to nothing"
    for shared in ("browInnerUp", "cheekPuff"):
        row = m[ARKIT_NAMES.index(shared)]
        assert {EXPRESSION_NAMES[j] for j in np.nonzero(row)[0]} == {shared + "_L", shared + "_R"}
    for j, name in enumerate(EXPRESSION_NAMES):
        assert m[ARKIT_NAMES.index(ict_to_arkit_name(name)), j] == 1
    singles = [i for i, n in enumerate(ARKIT_NAMES) if n not in ("browInnerUp", "cheekPuff", "tongueOut")]
    assert np.array_equal(m[singles].sum(1), np.ones(len(singles)))


def test_arkit_weights_round_trip():
    rng = np.random.default_rng(2)
    arkit = rng.uniform(0, 1, (3, 52)).astype(np.float32)
    ict_w = arkit @ arkit_to_ict_matrix()
    j_l, j_r = EXPRESSION_NAMES.index("browInnerUp_L"), EXPRESSION_NAMES.index("browInnerUp_R")
    k = ARKIT_NAMES.index("browInnerUp")
    assert np.allclose(ict_w[:, j_l], arkit[:, k]) and np.allclose(ict_w[:, j_r], arkit[:, k])
    back = ict_to_arkit_weights(ict_w)
    expected = arkit.copy()
    expected[:, ARKIT_NAMES.index("tongueOut")] = 0
    assert back.shape == (3, 52) and np.allclose(back, expected, atol=1e-6)
    # an asymmetric ICT pair is averaged into the shared ARKit weight
    w = np.zeros(N_EXPRESSION, np.float32)
    w[j_l], w[j_r] = 1.0, 0.2
    assert np.isclose(ict_to_arkit_weights(w)[k], 0.6)


def test_rig_spellings_match_arkit_names():
    rig = ["eyeBlink_L", "EyeBlinkRight", "jawOpen", "mouthSmileL", "mouth_smile_right", "browInnerUp", "mouthFunnel",
           "mouthRollUpper", "viseme_aa", "Wolf3D_extra"]
    matched, unmatched = match_arkit_names(rig)
    assert matched == {"eyeBlink_L": "eyeBlinkLeft", "EyeBlinkRight": "eyeBlinkRight", "jawOpen": "jawOpen",
                       "mouthSmileL": "mouthSmileLeft", "mouth_smile_right": "mouthSmileRight",
                       "browInnerUp": "browInnerUp", "mouthFunnel": "mouthFunnel", "mouthRollUpper": "mouthRollUpper"}
    assert unmatched == ["viseme_aa", "Wolf3D_extra"]
    assert len({arkit_key(n) for n in ARKIT_NAMES}) == 52              # no two ARKit names fold together
    assert arkit_key("browInnerUp_L") != arkit_key("browInnerUp")      # an ICT half is not the shared ARKit name
