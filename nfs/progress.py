"""Progress and time left for runs made of stages, shared by the command line, the pipeline and the app.

A run reports ``progress(fraction, message)``: fraction 0..1 of the whole run, message ``"stage: detail"``.
`StageProgress` gives each stage a span of one bar and adds the stage's time left to every message;
`format_eta` writes a time left the same way everywhere.
"""
from __future__ import annotations

import time
from typing import Callable

Progress = Callable[[float, str], None]


def no_progress(fraction: float, message: str) -> None:
    """A progress callback that reports nothing."""


def format_eta(seconds: float | None) -> str:
    """'about 12 s left', 'about 3 min 05 s left', or 'estimating time left' while unknown (None)."""
    if seconds is None:
        return "estimating time left"
    if seconds < 1:
        return "under 1 s left"
    if seconds < 90:
        return f"about {seconds:.0f} s left"
    return f"about {seconds // 60:.0f} min {seconds % 60:02.0f} s left"


class StageProgress:
    """Reports a run made of stages as one progress bar: each stage owns a span of the bar, and every message
    gets the stage's time left, estimated from its own rate so far (`stage(name)` returns the callback the
    stage reports its own 0..1 fraction to)."""

    def __init__(self, progress: Progress, spans: dict):
        self.progress, self.spans = progress, spans
        self.started: dict = {}

    def stage(self, name: str) -> Progress:
        lo, hi = self.spans[name]
        self.started[name] = time.perf_counter()

        def report(fraction: float, message: str) -> None:
            fraction = min(max(float(fraction), 0.0), 1.0)
            elapsed = time.perf_counter() - self.started[name]
            eta = elapsed * (1.0 - fraction) / fraction if fraction > 0.01 and elapsed > 0.2 else None
            self.progress(lo + (hi - lo) * fraction, f"{message} · {format_eta(eta)}")

        return report
