"""The stages a `retarget` run reports, in order, and the span of the progress bar each one owns.

A run reports progress(fraction, "stage: detail") with the stage names below, in this order, each stage over its
own span of the fraction; every loop reports at least once per chunk (<= 8 frames) or frame."""
from __future__ import annotations

from dataclasses import dataclass

from nfs.options import EXPORT_KINDS   # the optional stages, one per export
from nfs.progress import Progress

STAGE_NAMES = {"prepare": "preparing the target", "encode": "encoding the clip", "decode": "decoding frames",
               "obj_zip": "writing the OBJ zip", "glb": "writing the animated GLB",
               "rig": "baking the 52-shape ARKit rig", "avatar": "writing the avatar", "mp4": "rendering the preview MP4"}
STAGE_WEIGHTS = {"prepare": 0.25, "encode": 0.05, "decode": 0.15, "obj_zip": 0.15, "glb": 0.1, "rig": 0.05,
                 "avatar": 0.05, "mp4": 0.25}
ALWAYS = ("prepare", "encode", "decode")


@dataclass
class Span:
    """One stage's share [lo, hi] of the run's progress bar."""

    name: str
    lo: float
    hi: float

    def report(self, progress: Progress, fraction: float, detail: str) -> None:
        f = self.lo + (self.hi - self.lo) * min(max(fraction, 0.0), 1.0)
        progress(f, f"{self.name}: {detail}" if detail else self.name)

    def sub(self, progress: Progress) -> Progress:
        """A progress callback for a step inside this stage (its messages become the detail)."""
        return lambda f, m: self.report(progress, f, m)


def _keys(exports) -> list[str]:
    return [k for k in STAGE_WEIGHTS if k in ALWAYS or k in exports]


def run_stages(exports: tuple = EXPORT_KINDS) -> list[str]:
    """The stage names a `retarget` run with these exports reports, in order."""
    return [STAGE_NAMES[k] for k in _keys(exports)]


def stage_spans(exports) -> dict[str, Span]:
    """Stage key -> its Span, for a run with these exports."""
    keys = _keys(exports)
    total = sum(STAGE_WEIGHTS[k] for k in keys)
    spans, lo = {}, 0.0
    for k in keys:
        hi = lo + STAGE_WEIGHTS[k] / total
        spans[k] = Span(STAGE_NAMES[k], lo, hi)
        lo = hi
    return spans
