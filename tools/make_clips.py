"""Generate the built-in expression clips in assets/clips/ (ICT weights, 30 fps, 3 decimals).

Deterministic: fixed seeds, no inputs. Run ``python tools/make_clips.py`` from the repo root.
Curves are built from eased envelopes (smoothstep rise/hold/fall) and Gaussian bumps, so every
shape starts and ends at rest and moves without corners.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


from nfs.clips import DEFAULT_FPS, smooth_codes
from nfs.io import save_codes_csv
from nfs.resources import BUILTIN_CLIPS_DIR as CLIPS_DIR
from nfs.ict import EXPRESSION_NAMES

FPS = DEFAULT_FPS


def ease(x):
    """Smoothstep on [0, 1], clamped outside."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def env(t, start, end, rise=0.3, fall=0.3):
    """1 between start+rise and end-fall, eased to 0 at `start` and `end`."""
    return ease((t - start) / rise) * ease((end - t) / fall)


def bump(t, centre, width):
    """Gaussian bump of height 1, `width` = sigma in seconds."""
    return np.exp(-0.5 * ((t - centre) / width) ** 2)


class Track:
    """(T, 53) weights being composed; `add(name, curve)` accumulates, `L`/`R` suffix pairs via `both`."""

    def __init__(self, duration_s: float):
        self.t = np.arange(int(round(duration_s * FPS))) / FPS
        self.w = np.zeros((len(self.t), len(EXPRESSION_NAMES)))

    def add(self, name: str, curve):
        self.w[:, EXPRESSION_NAMES.index(name)] += curve

    def both(self, stem: str, curve, left: float = 1.0, right: float = 1.0):
        self.add(stem + "_L", left * curve)
        self.add(stem + "_R", right * curve)

    def blink(self, centre: float, depth: float = 1.0, width: float = 0.045):
        self.both("eyeBlink", depth * bump(self.t, centre, width))

    def done(self, sigma_frames: float = 0.0):
        w = np.clip(self.w, 0.0, 1.0)
        if sigma_frames > 0:
            w = smooth_codes(w, sigma_frames)
        return np.clip(w, 0.0, 1.0)


# visemes for `talk`: (shape, weight) pairs; `_` marks an L/R pair
VISEMES = {
    "a": [("jawOpen", 0.55), ("mouthLowerDown_", 0.3), ("mouthUpperUp_", 0.12), ("mouthStretch_", 0.1)],
    "e": [("jawOpen", 0.22), ("mouthStretch_", 0.35), ("mouthSmile_", 0.2), ("mouthLowerDown_", 0.2)],
    "o": [("jawOpen", 0.32), ("mouthFunnel", 0.55), ("mouthPucker", 0.2)],
    "u": [("jawOpen", 0.2), ("mouthPucker", 0.65), ("mouthFunnel", 0.3)],
    "m": [("jawOpen", 0.18), ("mouthClose", 0.16), ("mouthPress_", 0.35), ("mouthShrugUpper", 0.1)],
    "f": [("jawOpen", 0.16), ("mouthRollLower", 0.45), ("mouthUpperUp_", 0.2)],
}


def _apply(tr: Track, shapes, curve, scale=1.0):
    for name, w in shapes:
        if name.endswith("_"):
            tr.both(name[:-1], scale * w * curve)
        else:
            tr.add(name, scale * w * curve)


def talk():
    """8 s of speech-like mouth motion: ~4 syllables/s in three phrases, varied visemes."""
    rng = np.random.default_rng(7)
    tr = Track(8.0)
    t = tr.t
    phrases = [(0.4, 2.6), (3.1, 5.2), (5.7, 7.5)]
    order = list("amoefuaemoa")
    for p, (start, end) in enumerate(phrases):
        s = start + 0.12
        k = 0
        while s < end - 0.1:
            v = order[(k + 3 * p) % len(order)] if rng.random() < 0.7 else rng.choice(list(VISEMES))
            _apply(tr, VISEMES[v], bump(t, s, 0.065), scale=rng.uniform(0.75, 1.1))
            s += rng.uniform(0.21, 0.29)  # ~4 Hz
            k += 1
        # phrase-level emphasis: brows up at the start, a small smile near the end
        tr.both("browInnerUp", 0.35 * env(t, start - 0.1, start + 0.8, 0.25, 0.4))
        tr.both("browOuterUp", 0.2 * env(t, start - 0.1, start + 0.8, 0.25, 0.4))
        tr.both("mouthSmile", 0.15 * env(t, end - 0.8, end + 0.3, 0.3, 0.3))
    tr.add("mouthLeft", 0.06 * env(t, 3.3, 4.6, 0.4, 0.4))
    tr.add("mouthRight", 0.06 * env(t, 5.9, 7.0, 0.4, 0.4))
    for c in (1.35, 2.95, 5.45, 7.7):
        tr.blink(c)
    return tr.done(sigma_frames=1.0)


def smile():
    """4 s: a closed smile that broadens into an open one, then relaxes."""
    tr = Track(4.0)
    t = tr.t
    base = env(t, 0.3, 3.7, 0.6, 0.7)
    broad = env(t, 1.6, 2.9, 0.4, 0.4)
    tr.both("mouthSmile", 0.65 * base + 0.25 * broad, 1.0, 0.95)
    tr.both("cheekSquint", 0.35 * base + 0.2 * broad)
    tr.both("eyeSquint", 0.25 * base + 0.15 * broad)
    tr.both("mouthDimple", 0.25 * base)
    tr.both("mouthUpperUp", 0.1 * base + 0.15 * broad)
    tr.add("jawOpen", 0.25 * broad)
    tr.both("mouthLowerDown", 0.15 * broad)
    tr.blink(3.15)
    return tr.done()


def surprise():
    """4 s: sudden brows up, eyes wide and jaw drop, held, then a slow release."""
    tr = Track(4.0)
    t = tr.t
    e = env(t, 0.5, 3.6, 0.25, 0.8)
    tr.both("browInnerUp", 0.9 * e)
    tr.both("browOuterUp", 0.8 * e)
    tr.both("eyeWide", 0.8 * e)
    tr.add("jawOpen", 0.55 * env(t, 0.55, 3.4, 0.3, 0.8))
    tr.both("mouthLowerDown", 0.3 * env(t, 0.55, 3.4, 0.3, 0.8))
    tr.add("mouthFunnel", 0.25 * env(t, 0.6, 3.3, 0.35, 0.8))
    tr.blink(0.3, 0.8)
    return tr.done()


def blinks():
    """6 s: single and double blinks, a half blink, gaze left/right/up/down."""
    tr = Track(6.0)
    t = tr.t
    for c in (0.6, 1.9, 2.25, 3.95, 5.55):
        tr.blink(c)
    tr.blink(4.85, 0.25, width=0.3)  # lids follow the downward gaze
    left, right = env(t, 1.0, 1.75, 0.2, 0.2), env(t, 2.6, 3.5, 0.2, 0.2)
    up, down = env(t, 4.0, 4.55, 0.15, 0.15), env(t, 4.6, 5.35, 0.15, 0.2)
    tr.add("eyeLookOut_L", 0.65 * left)   # gaze to the subject's left
    tr.add("eyeLookIn_R", 0.65 * left)
    tr.add("eyeLookIn_L", 0.65 * right)
    tr.add("eyeLookOut_R", 0.65 * right)
    tr.both("eyeLookUp", 0.7 * up)
    tr.both("browOuterUp", 0.2 * up)
    tr.both("eyeLookDown", 0.7 * down)
    tr.both("eyeSquint", 0.2 * env(t, 5.7, 6.0, 0.1, 0.1))
    return tr.done()


def pucker_funnel():
    """5 s: pucker, funnel with a slightly open jaw, then a pucker pushed left and right."""
    tr = Track(5.0)
    t = tr.t
    tr.add("mouthPucker", 0.9 * env(t, 0.4, 1.9, 0.35, 0.35))
    fun = env(t, 2.1, 3.5, 0.35, 0.35)
    tr.add("mouthFunnel", 0.85 * fun)
    tr.add("jawOpen", 0.18 * fun)
    side = env(t, 3.6, 4.85, 0.25, 0.3)
    tr.add("mouthPucker", 0.7 * side)
    tr.add("mouthLeft", 0.35 * env(t, 3.6, 4.3, 0.25, 0.25))
    tr.add("mouthRight", 0.35 * env(t, 4.15, 4.85, 0.25, 0.25))
    tr.blink(2.0)
    return tr.done()


def sneer_asym():
    """5 s: a strong left sneer (nose, upper lip, squint, brow), then a weaker right one."""
    tr = Track(5.0)
    t = tr.t
    left, right = env(t, 0.4, 2.2, 0.4, 0.5), env(t, 2.6, 4.6, 0.4, 0.5)
    tr.add("noseSneer_L", 0.85 * left)
    tr.add("mouthUpperUp_L", 0.6 * left)
    tr.add("cheekSquint_L", 0.35 * left)
    tr.add("eyeSquint_L", 0.3 * left)
    tr.add("browDown_L", 0.45 * left)
    tr.add("mouthLeft", 0.1 * left)
    tr.add("noseSneer_R", 0.6 * right)
    tr.add("mouthUpperUp_R", 0.45 * right)
    tr.add("mouthFrown_R", 0.2 * right)
    tr.add("eyeSquint_R", 0.2 * right)
    tr.add("browDown_R", 0.3 * right)
    tr.blink(2.4)
    return tr.done()


def angry():
    """4 s: brows down, squint, pressed lips and frown with a slight jaw thrust."""
    tr = Track(4.0)
    t = tr.t
    e = env(t, 0.4, 3.6, 0.5, 0.6)
    tr.both("browDown", 0.8 * e)
    tr.both("eyeSquint", 0.4 * e)
    tr.both("noseSneer", 0.3 * e)
    tr.both("mouthPress", 0.5 * e)
    tr.both("mouthFrown", 0.45 * e)
    tr.add("mouthShrugLower", 0.3 * e)
    tr.add("jawForward", 0.15 * env(t, 1.2, 3.0, 0.4, 0.4))
    tr.blink(3.8, 0.9)
    return tr.done()


def jaw_cheeks():
    """5 s: jaw left, right and forward, then both cheeks puffed."""
    tr = Track(5.0)
    t = tr.t
    tr.add("jawLeft", 0.6 * env(t, 0.3, 1.3, 0.3, 0.3))
    tr.add("jawRight", 0.6 * env(t, 1.4, 2.4, 0.3, 0.3))
    fwd = env(t, 2.5, 3.4, 0.3, 0.3)
    tr.add("jawForward", 0.6 * fwd)
    tr.add("jawOpen", 0.1 * fwd)
    puff = env(t, 3.5, 4.8, 0.3, 0.35)
    tr.both("cheekPuff", 0.85 * puff)
    tr.add("mouthClose", 0.05 * puff)
    tr.both("mouthPress", 0.2 * puff)
    return tr.done()


def jaw_open_full():
    """5 s: the jaw opened all the way (jawOpen 1.0) twice, held, with the lower lip following."""
    tr = Track(5.0)
    t = tr.t
    for start, end in ((0.3, 2.3), (2.7, 4.7)):
        e = env(t, start, end, 0.5, 0.5)
        tr.add("jawOpen", e)
        tr.both("mouthLowerDown", 0.35 * e)
    tr.blink(2.5)
    return tr.done()


def blinks_full():
    """4 s: full blinks of both eyes (eyeBlink 1.0, held shut), then the left eye, then the right."""
    tr = Track(4.0)
    t = tr.t
    for start in (0.3, 1.0):
        tr.both("eyeBlink", env(t, start, start + 0.45, 0.12, 0.12))
    tr.add("eyeBlink_L", env(t, 1.9, 2.7, 0.15, 0.15))
    tr.add("eyeBlink_R", env(t, 2.9, 3.7, 0.15, 0.15))
    return tr.done()


def smile_full():
    """4 s: a full open smile (mouthSmile 1.0 with cheeks and eyes squinting), held, then released."""
    tr = Track(4.0)
    t = tr.t
    e = env(t, 0.3, 3.7, 0.7, 0.8)
    tr.both("mouthSmile", e)
    tr.both("cheekSquint", 0.6 * e)
    tr.both("eyeSquint", 0.4 * e)
    tr.both("mouthUpperUp", 0.3 * e)
    tr.add("jawOpen", 0.2 * e)
    return tr.done()


def pucker_full():
    """4 s: a full pucker (mouthPucker 1.0), held, released, then a full funnel."""
    tr = Track(4.0)
    t = tr.t
    tr.add("mouthPucker", env(t, 0.3, 2.0, 0.4, 0.4))
    tr.add("mouthFunnel", env(t, 2.2, 3.8, 0.4, 0.4))
    return tr.done()


ROM_SEGMENT_S = 0.8


def range_of_motion():
    """53 x 0.8 s: every ICT shape once, in order, from rest to 1.0 and back; never two at a time."""
    tr = Track(ROM_SEGMENT_S * len(EXPRESSION_NAMES))
    for k, name in enumerate(EXPRESSION_NAMES):
        start = k * ROM_SEGMENT_S
        tr.add(name, env(tr.t, start + 0.05, start + ROM_SEGMENT_S - 0.05, 0.25, 0.25))
    return tr.done()


CLIPS = {f.__name__: f for f in (talk, smile, surprise, blinks, pucker_funnel, sneer_asym, angry, jaw_cheeks,
                                 jaw_open_full, blinks_full, smile_full, pucker_full, range_of_motion)}


def main(out_dir: Path = CLIPS_DIR):
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, make in CLIPS.items():
        codes = make()
        save_codes_csv(out_dir / f"{name}.csv", codes)
        print(f"{name:14s} {len(codes) / FPS:4.1f} s  peak {codes.max():.2f}")


if __name__ == "__main__":
    main()
