"""One progress line for a long event: the stage (k of n), its own progress, an ETA, and a display that keeps
moving.

The pipeline reports ``progress(fraction, "stage: detail")`` (see `nfs.pipeline.STAGE_NAMES`); `StageProgress`
turns that into ``"stage 4/8 · writing the OBJ zip: 120/600 frames · about 6 s left (whole run about 40 s) ·
31 s"`` and passes it on. A heartbeat re-sends the line with the elapsed time four times a second, so a step that
reports nothing for a while (computing operators, finishing a file) still shows a moving clock.
"""
from __future__ import annotations

import re
import threading
import time
from typing import Callable

Emit = Callable[[float, str], None]
_COUNT = re.compile(r"(\d+)\s*/\s*(\d+)")


def _seconds(s: float) -> str:
    """'42 s', '8 min 05 s': to the second, so an elapsed time visibly moves every second."""
    s = int(round(max(0.0, s)))
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s"


class StageProgress:
    """Callable as a pipeline progress callback; use as a context manager to run the heartbeat."""

    def __init__(self, emit: Emit, stages: list[str], heartbeat_s: float = 0.25):
        self.emit, self.stages, self.heartbeat_s = emit, list(stages), heartbeat_s
        self.t0 = time.perf_counter()
        self.fraction, self.stage, self.detail = 0.0, 0, ""
        self.stage_t0 = self.t0
        self.stage_count: tuple[int, int] | None = None
        self.count_t0: tuple[float, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lines: list[str] = []

    # ------------------------------------------------------------------------------------------ input
    def __call__(self, fraction: float, message: str) -> None:
        now = time.perf_counter()
        name, _, detail = message.partition(":")
        with self._lock:
            self.fraction = max(self.fraction, min(max(float(fraction), 0.0), 1.0))
            if name.strip() in self.stages:
                k = self.stages.index(name.strip())
                if k != self.stage:
                    self.stage, self.stage_t0, self.count_t0 = k, now, None
                self.detail = detail.strip()
            else:                                   # a message from inside the current stage
                self.detail = message.strip()
            m = _COUNT.search(self.detail)
            self.stage_count = (int(m.group(1)), int(m.group(2))) if m else None
            if self.stage_count is not None and self.count_t0 is None:
                self.count_t0 = (now, self.stage_count[0])
        self._send()

    def set_stages(self, stages: list[str]) -> None:
        """Replace the list of stages once the run's own is known (the current stage keeps its name)."""
        with self._lock:
            current = self.stages[self.stage] if self.stages else None
            self.stages = list(stages)
            self.stage = self.stages.index(current) if current in self.stages else 0

    def stage_named(self, name: str, detail: str = "") -> None:
        """Enter a stage by name (for steps of the app around the pipeline)."""
        self(self.fraction, f"{name}: {detail}" if detail else name)

    # ------------------------------------------------------------------------------------------ output
    def line(self) -> str:
        now = time.perf_counter()
        with self._lock:
            name = self.stages[self.stage] if self.stages else ""
            parts = [f"stage {self.stage + 1}/{len(self.stages)} · {name}" + (f": {self.detail}" if self.detail
                                                                               else "")]
            eta, stage_left = [], 0.0
            if self.stage_count is not None and self.count_t0 is not None:
                (t_start, i_start), (i, n) = self.count_t0, self.stage_count
                if i > i_start and n > 0:
                    stage_left = (now - t_start) / (i - i_start) * (n - i)
                    eta.append(f"about {_seconds(stage_left)} left in this stage")
            elapsed = now - self.t0
            if self.fraction > 0.05 and elapsed > 2.0:
                whole = max(stage_left, elapsed / self.fraction * (1 - self.fraction))
                eta.append(f"whole run about {_seconds(whole)} left")
            parts += eta
            parts.append(f"{_seconds(elapsed)} elapsed")
            return " · ".join(parts)

    def _send(self) -> None:
        text = self.line()
        self.lines.append(text)
        del self.lines[:-200]
        self.emit(self.fraction, text)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._send()

    def __enter__(self) -> "StageProgress":
        self._thread = threading.Thread(target=self._beat, name="progress-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
