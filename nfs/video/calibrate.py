"""From MediaPipe's 52 ARKit scores to ICT weights, calibrated to the person.

People's resting faces read differently (one reads 0.2 browDown at rest, another 0.1 eyeSquint), so a neutral
frame's scores are taken off every frame: w' = (w - n) / (1 - n), clipped to [0, 1], which keeps a full 1 at 1. The
neutral frame is the user's pick or the automatic one (`choose_neutral_frame`). A score that falls below the
person's neutral means its antagonist moved: brows lowered from a resting face that reads some browOuterUp read as
that drop (times ANTAGONIST_GAIN) of browDown, on each side. Then a dead zone (scores below it
read 0, the rest rescaled so 1 stays 1), a per-shape gain, and light smoothing in time. ARKit names become ICT
weights through the one shared map (`nfs.arkit.arkit_to_ict_matrix`), as Live Link takes do.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import re

import numpy as np

from nfs.arkit import ARKIT_NAMES, arkit_key, arkit_to_ict_matrix
from nfs.clips import smooth_codes

SCORE_JITTER_S = 0.05       # default smoothing sigma, seconds: keeps a blink (150-300 ms), takes frame-to-frame jitter
NEUTRAL_TOLERANCE = 0.25    # automatic neutral: frames this far from the lowest score toward the median count as tied
NEUTRAL_WINDOW = 2          # the score of a frame is averaged over +-2 frames, so one odd frame does not win
NEUTRAL_PERCENTILE = 20     # automatic neutral: the frame nearest this percentile of every score over the clip
ANTAGONISTS = (("browOuterUpLeft", "browDownLeft"), ("browOuterUpRight", "browDownRight"))
ANTAGONIST_GAIN = 2.0       # browDown gained per unit of browOuterUp lost below the neutral


@dataclass
class Calibration:
    """How the video's ARKit scores become the clip's weights (CLI options, app fields)."""

    neutral_frame: int | None = None     # the relaxed face's frame (from 0); None: chosen automatically
    subtract_neutral: bool = True        # take the neutral frame's scores off every frame
    dead_zone: float = 0.0               # scores below this (after the neutral) read 0; 0..0.9
    gains: dict = field(default_factory=dict)   # {ARKit or ICT name in any spelling: gain}, e.g. {"eyeBlink": 1.3}
    smoothing_s: float | None = None     # temporal smoothing sigma, seconds (0: off; None: SCORE_JITTER_S)


def choose_neutral_frame(scores: np.ndarray, valid: np.ndarray | None = None) -> int:
    """The frame nearest the clip's resting reading: per ARKit score (gaze left out: looking around is not an
    expression) its NEUTRAL_PERCENTILE-th percentile over the clip (people rest more than they pull faces, and a
    resting face need not read 0: brows may read raised or lowered at rest); the L1 distance to it is averaged over
    +-NEUTRAL_WINDOW frames; frames within NEUTRAL_TOLERANCE of the way from the nearest to the clip's median distance
    count as tied and the earliest is taken (recordings mostly start at rest)."""
    scores = np.asarray(scores, np.float64)
    ok = np.ones(len(scores), bool) if valid is None else np.asarray(valid, bool)
    expressive = np.array([not n.startswith("eyeLook") for n in ARKIT_NAMES])
    rest = np.percentile(scores[ok][:, expressive], NEUTRAL_PERCENTILE, axis=0)
    total = np.where(ok, np.abs(scores[:, expressive] - rest).sum(1), np.nan)
    k = np.ones(2 * NEUTRAL_WINDOW + 1)
    finite = np.isfinite(total)
    padded = np.pad(np.where(finite, total, 0.0), NEUTRAL_WINDOW, mode="edge")
    counts = np.convolve(np.pad(finite.astype(float), NEUTRAL_WINDOW, mode="edge"), k, "valid")
    score = np.where(finite, np.convolve(padded, k, "valid") / np.maximum(counts, 1), np.inf)
    best = score.min()
    typical = np.median(score[np.isfinite(score)])
    return int(np.argmax(score <= best + NEUTRAL_TOLERANCE * (typical - best)))


def parse_gains(text: str | None) -> dict:
    """'eyeBlink=1.3, jawOpen 1.2' -> {'eyeBlink': 1.3, 'jawOpen': 1.2}; a malformed entry is a ValueError."""
    gains = {}
    for part in re.split(r"[,;\n]+", text or ""):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([A-Za-z_][\w.-]*)\s*[=:\s]\s*([0-9]*\.?[0-9]+)", part)
        if m is None:
            raise ValueError(f"cannot read the gain {part!r}: write name=value, e.g. eyeBlink=1.3")
        gains[m.group(1)] = float(m.group(2))
    return gains


def gain_vector(gains: dict) -> np.ndarray:
    """(52,) per-ARKit-name gains from {name: gain}; names may be ARKit or ICT spellings, or a stem that covers
    both sides ("eyeBlink" -> eyeBlinkLeft and eyeBlinkRight). Unknown names are a ValueError naming them."""
    out = np.ones(len(ARKIT_NAMES))
    keys = [arkit_key(n) for n in ARKIT_NAMES]
    unknown = []
    for name, g in (gains or {}).items():
        k = arkit_key(str(name))
        k = {"browinnerupl": "browinnerup", "browinnerupr": "browinnerup", "cheekpuffl": "cheekpuff",
             "cheekpuffr": "cheekpuff"}.get(k, k)
        hits = [i for i, key in enumerate(keys) if key == k] or \
               [i for i, key in enumerate(keys) if key in (k + "left", k + "right")]
        if not hits:
            unknown.append(str(name))
        if not (np.isfinite(float(g)) and 0.0 <= float(g) <= 10.0):
            raise ValueError(f"gain for {name} must be between 0 and 10, got {g}")
        out[hits] = float(g)
    if unknown:
        raise ValueError(f"unknown blendshape names in the gains: {', '.join(unknown)}")
    return out


def calibrate_scores(scores: np.ndarray, neutral: np.ndarray | None, cal: Calibration) -> np.ndarray:
    """(T, 52) ARKit scores -> calibrated (T, 52) in [0, 1] (neutral taken off, dead zone, gains; no smoothing)."""
    w = np.asarray(scores, np.float64)
    if neutral is not None and cal.subtract_neutral:
        n = np.clip(np.asarray(neutral, np.float64), 0.0, 0.95)
        lost = np.clip(n - w, 0.0, None)
        w = (w - n) / (1.0 - n)
        for shape, opposite in ANTAGONISTS:
            i, j = ARKIT_NAMES.index(shape), ARKIT_NAMES.index(opposite)
            w[:, j] = np.maximum(w[:, j], 0.0) + ANTAGONIST_GAIN * lost[:, i]
    dz = float(cal.dead_zone)
    if not 0.0 <= dz <= 0.9:
        raise ValueError(f"dead zone must be between 0 and 0.9, got {dz}")
    w = np.clip(w, 0.0, 1.0)
    if dz > 0:
        w = np.clip((w - dz) / (1.0 - dz), 0.0, 1.0)
    return np.clip(w * gain_vector(cal.gains), 0.0, 1.0)


def scores_to_ict(scores: np.ndarray, fps: float, cal: Calibration, valid: np.ndarray | None = None
                  ) -> tuple[np.ndarray, int]:
    """(T, 52) ARKit scores of a clip -> ((T, 53) ICT weights, the neutral frame used)."""
    t = len(scores)
    neutral = cal.neutral_frame
    if neutral is None:
        neutral = choose_neutral_frame(scores, valid)
    elif not 0 <= int(neutral) < t:
        raise ValueError(f"neutral frame {neutral} is outside the clip's 0..{t - 1}")
    w = calibrate_scores(scores, scores[int(neutral)], cal)
    sigma_s = SCORE_JITTER_S if cal.smoothing_s is None else float(cal.smoothing_s)
    if sigma_s > 0:
        w = smooth_codes(w, sigma_s * fps)
    return np.clip(w @ arkit_to_ict_matrix(), 0.0, 1.0).astype(np.float32), int(neutral)
