"""FACS slider edits: offsets added to the clip's 53 ICT weights, for the whole clip or around one frame.

A frame edit is eased in and out over +-`FRAME_EDIT_HALF_WIDTH_S` (raised cosine) so it does not pop for a
single frame; at the edited frame the offset is exactly the slider values. The total offset of a clip is
``whole + sum_k window(t - k) * key_k`` and is what `retarget(code_offset=...)` receives, (T, 53).
"""
from __future__ import annotations

import json

import numpy as np

from nfs.pipeline import EXPRESSION_NAMES, N_EXPRESSION

FRAME_EDIT_HALF_WIDTH_S = 0.25
SLIDER_RANGE = (-1.0, 1.0)
SCOPES = ("whole clip", "current frame")

_GROUP_PREFIXES = {
    "brows": ("brow",),
    "eyes": ("eye",),
    "cheeks": ("cheek",),
    "nose": ("nose",),
    "jaw": ("jaw",),
    "mouth": ("mouth",),
}


def facs_groups() -> dict[str, list[str]]:
    """Group name -> the ICT expression names in it (all 53, each once, in EXPRESSION_NAMES order)."""
    groups = {g: [n for n in EXPRESSION_NAMES if n.startswith(prefixes)] for g, prefixes in _GROUP_PREFIXES.items()}
    assert sum(len(v) for v in groups.values()) == N_EXPRESSION
    return groups


def window(n_frames: int, centre: int, fps: float) -> np.ndarray:
    """(T,) raised-cosine weights, 1 at `centre`, 0 beyond the half width."""
    half = max(1.0, FRAME_EDIT_HALF_WIDTH_S * fps)
    d = np.abs(np.arange(n_frames) - centre) / half
    return np.where(d < 1.0, 0.5 * (1.0 + np.cos(np.pi * np.minimum(d, 1.0))), 0.0).astype(np.float32)


class Edits:
    """Slider offsets for one clip: `whole` (53,) and `keys` {frame: (53,)}."""

    def __init__(self):
        self.whole = np.zeros(N_EXPRESSION, np.float32)
        self.keys: dict[int, np.ndarray] = {}

    @property
    def active(self) -> bool:
        return bool(np.any(self.whole) or any(np.any(v) for v in self.keys.values()))

    def values(self, scope: str, frame: int) -> np.ndarray:
        """The slider values of a scope (the key at `frame` for frame edits)."""
        if scope == SCOPES[0]:
            return self.whole.copy()
        return self.keys.get(int(frame), np.zeros(N_EXPRESSION, np.float32)).copy()

    def set(self, scope: str, frame: int, values) -> None:
        v = np.clip(np.asarray(values, np.float32).reshape(N_EXPRESSION), *SLIDER_RANGE)
        if not np.isfinite(v).all():
            raise ValueError("slider values must be finite")
        if scope == SCOPES[0]:
            self.whole = v
        elif scope == SCOPES[1]:
            if np.any(v):
                self.keys[int(frame)] = v
            else:
                self.keys.pop(int(frame), None)
        else:
            raise ValueError(f"unknown edit scope {scope!r}; choose one of {SCOPES}")

    def clear_keys(self) -> None:
        self.keys.clear()

    def reset(self) -> None:
        self.whole[:] = 0
        self.keys.clear()

    def offsets(self, n_frames: int, fps: float) -> np.ndarray:
        """(T, 53) total offset of every frame."""
        out = np.repeat(self.whole[None], n_frames, axis=0)
        for frame, key in self.keys.items():
            if 0 <= frame < n_frames:
                out += window(n_frames, frame, fps)[:, None] * key[None]
        return out

    def copy(self) -> "Edits":
        e = Edits()
        e.whole = self.whole.copy()
        e.keys = {k: v.copy() for k, v in self.keys.items()}
        return e

    def listing(self) -> str:
        """The edits by shape name, e.g. 'whole clip: jawOpen +0.30, browInnerUp_L +0.20; frame 12: mouthSmile_L
        +0.40' ('no edits' when there are none)."""
        def named(v: np.ndarray) -> str:
            return ", ".join(f"{EXPRESSION_NAMES[i]} {v[i]:+.2f}" for i in np.nonzero(v)[0])

        parts = [f"whole clip: {named(self.whole)}"] if np.any(self.whole) else []
        parts += [f"frame {k}: {named(self.keys[k])}" for k in sorted(self.keys)]
        return "; ".join(parts) if parts else "no edits"

    def describe(self) -> str:
        parts = []
        if np.any(self.whole):
            parts.append(f"whole clip: {int(np.count_nonzero(self.whole))} shapes")
        if self.keys:
            parts.append(f"frame edits at {', '.join(str(k) for k in sorted(self.keys))}")
        return "; ".join(parts) if parts else "no edits"


def parse_offsets_json(text: str) -> np.ndarray:
    """'{"jawOpen": 0.4, ...}' (ICT names) or a list of 53 numbers -> (53,) offsets."""
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(f"offsets: not valid JSON ({e.msg} at character {e.pos})") from None
    out = np.zeros(N_EXPRESSION, np.float32)
    if isinstance(data, list):
        if len(data) != N_EXPRESSION:
            raise ValueError(f"offsets: a list needs {N_EXPRESSION} numbers, got {len(data)}")
        out[:] = np.asarray(data, np.float32)
    elif isinstance(data, dict):
        unknown = sorted(set(data) - set(EXPRESSION_NAMES))
        if unknown:
            raise ValueError(f"offsets: unknown shape names {', '.join(unknown[:5])}")
        for name, value in data.items():
            out[EXPRESSION_NAMES.index(name)] = float(value)
    else:
        raise ValueError("offsets: give an object {name: value} or a list of 53 numbers")
    return out
