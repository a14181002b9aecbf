"""The app's preparation wrapper: the staged line with time left, an immediate return on Cancel with the worker
stopping at its next step, errors and results handed back, and one token per preparation."""
from __future__ import annotations

import threading
import time

import pytest

from app.preparation import CANCELLED_MESSAGE, Preparations, run_cancellable
from nfs.pipeline import PREPARE_STAGES, Cancelled


def _steps(n_steps: int, step_s: float, log: list, token, result="prepared"):
    """A stand-in preparation: each of the first `n_steps` stages reported in turn, then `step_s` of work, then
    the result committed."""
    def work(progress):
        progress = token.watch(progress)
        for k, name in enumerate(PREPARE_STAGES[:n_steps]):
            progress(k / len(PREPARE_STAGES), f"{name}: step detail")
            log.append(name)
            time.sleep(step_s)
        token.commit()
        log.append("committed")
        time.sleep(step_s)                    # work after the commit (the app bakes the rig) is not cancelled
        return result
    return work


def test_the_staged_line_and_the_result():
    lines, log = [], []
    token = Preparations().start("s")
    assert run_cancellable(_steps(3, 0.3, log, token), lambda f, m: lines.append(m), token) == "prepared"
    assert log == PREPARE_STAGES[:3] + ["committed"]
    assert any(m.startswith(f"stage 3/{len(PREPARE_STAGES)} · {PREPARE_STAGES[2]}: step detail") for m in lines)
    assert all("elapsed" in m for m in lines)


def test_cancel_returns_at_once_and_the_worker_stops_at_its_next_step():
    preparations, log = Preparations(), []
    token = preparations.start("s")
    threading.Timer(0.5, lambda: preparations.cancel("s")).start()
    t = time.perf_counter()
    with pytest.raises(Cancelled, match="preparation cancelled"):
        run_cancellable(_steps(5, 1.0, log, token), lambda f, m: None, token)
    assert time.perf_counter() - t < 0.9              # not held until the running step ends
    time.sleep(1.5)                                   # the worker reaches its next report and stops there
    assert log == PREPARE_STAGES[:1] and token.cancelled
    assert not preparations.cancel("s")               # nothing left running for the session
    fresh = preparations.start("s")                   # a new upload has its own token
    assert not fresh.cancelled
    log = []
    threading.Timer(0.6, lambda: preparations.cancel("s")).start()       # comes after the commit: no effect
    assert run_cancellable(_steps(1, 0.3, log, fresh), lambda f, m: None, fresh) == "prepared"
    assert log == PREPARE_STAGES[:1] + ["committed"] and not fresh.cancelled


def test_errors_come_back_as_they_were_raised():
    def broken(progress):
        progress(0.0, "cleaning: x")
        raise ValueError("mesh.obj: no faces")
    with pytest.raises(ValueError, match="no faces"):
        run_cancellable(broken, lambda f, m: None, Preparations().start("s"))
    assert CANCELLED_MESSAGE.startswith("preparation cancelled")


def test_the_worker_reports_through_the_events_context():
    """Gradio finds an event's progress channel in context variables: the worker's reports reach it."""
    import contextvars

    channel = contextvars.ContextVar("channel", default=None)
    got: list = []
    channel.set(got)
    token = Preparations().start("s")
    run_cancellable(_steps(2, 0.0, [], token), lambda f, m: channel.get() is not None and channel.get().append(m),
                    token)
    assert any("aligning" in m for m in got)
