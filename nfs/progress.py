"""Progress and time left for runs made of stages, shared by the command line, the pipeline, the app and batch runs.

A run reports ``progress(fraction, message)``: fraction 0..1 of the whole run, message ``"stage: detail"`` where the
detail may hold a count ``"i/n ..."``. One rule estimates time left everywhere (`rate_eta`: the rate so far,
extrapolated), and one writes it (`format_eta`). Three consumers:

- `StageProgress`: inside the pipeline, each stage owns a span of one bar and its messages get its time left;
- `ConsoleBar`: the command line's one-line bar on stderr;
- `RunProgress`: the app's line, "stage 4/8 · writing the OBJ zip: 120/600 frames · about 6 s left in this stage ·
  whole run about 40 s left · 31 s elapsed", re-sent by a heartbeat so a quiet step still shows a moving clock.

A run is stopped from outside through a `CancelToken`: its `watch(progress)` callback raises `Cancelled` at the
run's next progress report after `cancel()`, so the run stops between two of its steps, before anything of the
step after is computed or written. Inside a step, long computations call `checkpoint()` between their blocks: while
a token is `active` on the thread, that raises `Cancelled` too, so a cancelled step stops within a block of work.
"""
from __future__ import annotations

import contextlib
import contextvars
import re
import sys
import threading
import time
from typing import Callable

Progress = Callable[[float, str], None]
_COUNT = re.compile(r"(\d+)\s*/\s*(\d+)")
MIN_ELAPSED_S = 0.2     # no estimate before this much time has passed (the first rate is noise)


def no_progress(fraction: float, message: str) -> None:
    """A progress callback that reports nothing."""


def rate_eta(elapsed: float, done: float, total: float) -> float | None:
    """Seconds left when `done` of `total` took `elapsed` seconds at a steady rate; None while unknown (nothing
    done yet, or under MIN_ELAPSED_S)."""
    if done <= 0 or elapsed < MIN_ELAPSED_S:
        return None
    return max(0.0, elapsed / done * (total - done))


def format_eta(seconds: float | None) -> str:
    """'about 12 s left', 'about 3 min 05 s left', or 'estimating time left' while unknown (None)."""
    if seconds is None:
        return "estimating time left"
    if seconds < 1:
        return "under 1 s left"
    if seconds < 90:
        return f"about {seconds:.0f} s left"
    return f"about {seconds // 60:.0f} min {seconds % 60:02.0f} s left"


def format_seconds(seconds: float) -> str:
    """'42 s', '8 min 05 s': to the second, so an elapsed time visibly moves every second."""
    s = int(round(max(0.0, seconds)))
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s"


def parse_count(text: str) -> tuple[int, int] | None:
    """(i, n) of the first 'i/n' in a progress message, or None."""
    m = _COUNT.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


class Cancelled(Exception):
    """The run was stopped by the user (`CancelToken.cancel`)."""


_ACTIVE_TOKEN: contextvars.ContextVar["CancelToken | None"] = contextvars.ContextVar("nfs_cancel_token", default=None)


def checkpoint() -> None:
    """Raise `Cancelled` when the run on this thread (its `CancelToken.active`) was cancelled; nothing otherwise.
    Costs a context-variable lookup: call it between blocks of a long computation, never inside a tight loop."""
    token = _ACTIVE_TOKEN.get()
    if token is not None:
        token.check()


class CancelToken:
    """A flag another thread sets to stop a run (`cancel`); the run sees it at its next progress report
    (`watch`) or where it calls `check`. Once the run has `commit`ted its result, it can no longer be cancelled."""

    def __init__(self):
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._committed = False

    def cancel(self) -> bool:
        """Ask the run to stop; False when it had already committed its result (nothing is stopped)."""
        with self._lock:
            if self._committed:
                return False
            self._event.set()
            return True

    def commit(self) -> None:
        """The point of no return: raise `Cancelled` if `cancel` came first, else make later cancels no-ops."""
        with self._lock:
            self.check()
            self._committed = True

    def reset(self) -> None:
        with self._lock:
            self._event.clear()
            self._committed = False

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise `Cancelled` if `cancel` was called."""
        if self._event.is_set():
            raise Cancelled("stopped by the user")

    def wait(self, timeout: float) -> bool:
        """Block until `cancel` is called or `timeout` seconds pass; True when cancelled."""
        return self._event.wait(timeout)

    @contextlib.contextmanager
    def active(self):
        """Within this block, `checkpoint()` on this thread raises `Cancelled` once `cancel` was called."""
        reset = _ACTIVE_TOKEN.set(self)
        try:
            yield self
        finally:
            _ACTIVE_TOKEN.reset(reset)

    def watch(self, progress: Progress) -> Progress:
        """`progress`, raising `Cancelled` before a report once `cancel` was called."""
        def report(fraction: float, message: str) -> None:
            self.check()
            progress(fraction, message)
        return report


class CountClock:
    """Time left in a stage from the rate of its count ('i/n'): the count's rate since it was first seen in this
    stage (a new stage name, or a count going back, starts again)."""

    def __init__(self):
        self.stage: str | None = None
        self.start: tuple[float, int] | None = None     # (time, count) when the stage's count began

    def eta(self, stage: str, count: tuple[int, int] | None, now: float | None = None) -> float | None:
        now = time.perf_counter() if now is None else now
        if stage != self.stage:
            self.stage, self.start = stage, None
        if count is None:
            return None
        i, n = count
        if self.start is None or i < self.start[1]:
            self.start = (now, i)
        t0, i0 = self.start
        return rate_eta(now - t0, i - i0, n - i0)


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
            eta = rate_eta(elapsed, fraction, 1.0) if fraction > 0.01 else None
            self.progress(lo + (hi - lo) * fraction, f"{message} · {format_eta(eta)}")

        return report


class ConsoleBar:
    """A one-line progress bar on stderr; "stage: i/n ..." messages get the stage's time left."""

    def __init__(self, stream=None, width: int = 30):
        self.stream, self.width, self.clock = stream, width, CountClock()

    def __call__(self, fraction: float, message: str) -> None:
        stream = self.stream or sys.stderr
        name, _, detail = message.partition(":")
        count = parse_count(detail)
        if count is not None:
            message += " · " + format_eta(self.clock.eta(name, count))
        else:
            self.clock.eta(name, None)
        n = int(self.width * max(0.0, min(1.0, fraction)))
        stream.write(f"\r[{'#' * n}{'.' * (self.width - n)}] {100 * fraction:5.1f}% {message[:90]:<90}")
        stream.flush()
        if fraction >= 1.0:
            stream.write("\n")


class RunProgress:
    """The app's progress line for a long event (see the module docstring). Callable as a pipeline progress
    callback; use as a context manager to run the heartbeat, which re-sends the line to `emit` every
    `heartbeat_s` seconds."""

    def __init__(self, emit: Progress, stages: list[str], heartbeat_s: float = 0.25):
        self.emit, self.stages, self.heartbeat_s = emit, list(stages), heartbeat_s
        self.t0 = time.perf_counter()
        self.fraction, self.stage, self.detail = 0.0, 0, ""
        self.clock = CountClock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lines: list[str] = []

    def __call__(self, fraction: float, message: str) -> None:
        name, _, detail = message.partition(":")
        with self._lock:
            self.fraction = max(self.fraction, min(max(float(fraction), 0.0), 1.0))
            if name.strip() in self.stages:
                self.stage = self.stages.index(name.strip())
                self.detail = detail.strip()
            else:                                   # a message from inside the current stage
                self.detail = message.strip()
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

    def line(self) -> str:
        now = time.perf_counter()
        with self._lock:
            name = self.stages[self.stage] if self.stages else ""
            parts = [f"stage {self.stage + 1}/{len(self.stages)} · {name}" + (f": {self.detail}" if self.detail
                                                                               else "")]
            stage_left = self.clock.eta(name, parse_count(self.detail), now)
            if stage_left is not None:
                parts.append(f"about {format_seconds(stage_left)} left in this stage")
            elapsed = now - self.t0
            if self.fraction > 0.05 and elapsed > 2.0:
                whole = max(stage_left or 0.0, rate_eta(elapsed, self.fraction, 1.0) or 0.0)
                parts.append(f"whole run about {format_seconds(whole)} left")
            parts.append(f"{format_seconds(elapsed)} elapsed")
            return " · ".join(parts)

    def _send(self) -> None:
        text = self.line()
        self.lines.append(text)
        del self.lines[:-200]
        self.emit(self.fraction, text)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._send()

    def __enter__(self) -> "RunProgress":
        # the heartbeat runs in a copy of the caller's context: a web framework that finds its progress channel
        # through context variables (Gradio does) still receives the re-sent line
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._beat,),
                                        name="progress-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
