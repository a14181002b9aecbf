"""Preparing an upload in the app: the staged progress line with its own time left, and the Cancel button.

The preparation runs on a worker thread while the event's own thread waits for it or for Cancel: a cancelled
event returns at once (the session keeps the target it had), and the worker stops within the block of work it is
in (`nfs.progress.checkpoint`, with the token active on its thread) or at its next step, raising `Cancelled`
there, before anything after is computed or kept (the session removes the copy of the
upload it was preparing; caches are written whole or not at all). Once the session has taken the new target
(`CancelToken.commit`), Cancel no longer applies and the event finishes normally. Each preparation has its own
token, so a new upload right after a cancel is not stopped by it.
"""
from __future__ import annotations

import contextvars
import threading
from typing import Callable, TypeVar

from nfs.pipeline import PREPARE_STAGES, CancelToken, Cancelled, Progress, RunProgress

T = TypeVar("T")
CANCELLED_MESSAGE = "preparation cancelled: the target loaded before is kept"


class Preparations:
    """The current preparation's token per session (one preparation at a time per session)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tokens: dict[str, CancelToken] = {}

    def start(self, sid: str) -> CancelToken:
        with self._lock:
            token = self._tokens[sid] = CancelToken()
        return token

    def cancel(self, sid: str) -> bool:
        """Stop the session's running preparation; False when none was running or it had already finished."""
        with self._lock:
            token = self._tokens.pop(sid, None)
        return token is not None and token.cancel()

    def finish(self, sid: str, token: CancelToken) -> None:
        with self._lock:
            if self._tokens.get(sid) is token:
                del self._tokens[sid]


def run_cancellable(work: Callable[[Progress], T], emit: Progress, token: CancelToken,
                    stages: list[str] = PREPARE_STAGES, poll_s: float = 0.1) -> T:
    """`work(progress)` on a worker thread, reported to `emit` as the app's staged line (`RunProgress` over
    `stages`: the step k of n, its own time left, the whole preparation's and the time elapsed, re-sent every
    quarter second). Returns its result, re-raises its error, or raises `Cancelled` as soon as `token` is
    cancelled; `work` stops itself through the same token (`token.watch` on its steps, `token.commit` before it
    keeps its result)."""
    outcome: dict = {}
    done = threading.Event()
    with RunProgress(emit, stages) as line:
        def worker() -> None:
            try:
                outcome["value"] = work(line)
            except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
                outcome["error"] = e
            finally:
                done.set()

        # in a copy of this context: Gradio finds the event's progress channel through context variables
        threading.Thread(target=contextvars.copy_context().run, args=(worker,), name="prepare-target",
                         daemon=True).start()
        while not done.wait(poll_s):
            if token.cancelled:
                raise Cancelled(CANCELLED_MESSAGE)
    if "error" in outcome:
        if isinstance(outcome["error"], Cancelled):
            raise Cancelled(CANCELLED_MESSAGE) from None
        raise outcome["error"]
    return outcome["value"]
