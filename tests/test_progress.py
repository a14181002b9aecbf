"""The one progress module: one time-left rule for the pipeline's stages, the command line's bar and the app's line."""
from __future__ import annotations

import io

from nfs.progress import ConsoleBar, CountClock, RunProgress, StageProgress, format_eta, rate_eta


def test_time_left_rule_and_its_words():
    assert rate_eta(10.0, 25, 100) == 30.0            # 25 in 10 s: 75 more take 30 s
    assert rate_eta(0.1, 5, 100) is None and rate_eta(5.0, 0, 100) is None
    assert format_eta(None) == "estimating time left" and format_eta(0.4) == "under 1 s left"
    assert format_eta(42) == "about 42 s left" and format_eta(185) == "about 3 min 05 s left"


def test_count_clock_restarts_with_each_stage():
    clock = CountClock()
    assert clock.eta("decoding", (10, 100), now=0.0) is None          # the count's start
    assert clock.eta("decoding", (30, 100), now=4.0) == 14.0          # 20 in 4 s: 70 more take 14 s
    assert clock.eta("writing", (5, 50), now=5.0) is None             # a new stage starts again
    assert clock.eta("writing", (15, 50), now=7.0) == 7.0


def test_stage_spans_and_the_bar_agree_on_the_rule():
    seen = []
    stages = StageProgress(lambda f, m: seen.append((f, m)), {"prepare": (0.0, 0.5), "decode": (0.5, 1.0)})
    stages.stage("decode")(0.5, "decoding")
    assert seen[-1][0] == 0.75 and seen[-1][1].startswith("decoding · ")
    out = io.StringIO()
    bar = ConsoleBar(out)
    bar(0.2, "decoding frames: 4/120 frames")
    bar(1.0, "done")
    text = out.getvalue()
    assert "20.0% decoding frames: 4/120 frames · estimating time left" in text and text.endswith("\n")


def test_the_app_line_names_the_stage_of_the_run():
    lines = []
    progress = RunProgress(lambda f, m: lines.append(m), ["loading the clip", "decoding frames", "writing"])
    progress(0.1, "decoding frames: 3/60 frames")
    assert lines[-1].startswith("stage 2/3 · decoding frames: 3/60 frames") and "elapsed" in lines[-1]
    progress.set_stages(["decoding frames", "writing"])
    progress.stage_named("writing", "the file")
    assert lines[-1].startswith("stage 2/2 · writing: the file")


def test_preparation_reports_its_steps_and_stops_when_cancelled():
    """A preparation names its steps in order with rising fractions, and a cancelled one stops at the next step
    without caching anything: the same mesh is prepared from the start afterwards."""
    from nfs import REPO_ROOT
    from nfs.pipeline import PREPARE_STAGES, CancelToken, Cancelled, load_shipped_model, prepare_target
    from nfs.pipeline.target import _PREPARED
    import pytest

    model, _ = load_shipped_model()
    seen, token = [], CancelToken()

    def progress(fraction, message):
        seen.append((fraction, message))
        if message.startswith("template prior:"):
            token.cancel()

    before = len(_PREPARED)
    with pytest.raises(Cancelled):
        prepare_target(REPO_ROOT / "assets" / "targets" / "face_crop_metres.obj", model, progress=token.watch(progress),
                       device="cpu", force=True)
    assert [m.split(":")[0] for _, m in seen] == PREPARE_STAGES[:3]
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1][0] > 0.1
    assert seen[-1][1].endswith("vertices)") and len(_PREPARED) == before
    with pytest.raises(Cancelled):                     # stays cancelled until reset
        token.check()
    token.reset()
    token.check()


def test_a_cancel_stops_a_preparation_inside_its_step():
    """With the token active on the thread, a cancel that comes while the template prior is being computed stops
    it there (from inside the prior's own work, not at the next step's report), and nothing is cached."""
    import traceback

    import pytest

    from nfs import REPO_ROOT
    from nfs.pipeline import CancelToken, Cancelled, load_shipped_model, prepare_target
    from nfs.pipeline.target import _PREPARED

    model, _ = load_shipped_model()
    token = CancelToken()

    def progress(fraction, message):       # reported before the prior starts: the cancel lands inside it
        if message.startswith("template prior:"):
            token.cancel()

    before = len(_PREPARED)
    with token.active(), pytest.raises(Cancelled) as stopped:
        prepare_target(REPO_ROOT / "assets" / "targets" / "stylized_head.obj", model, progress=progress,
                       device="cpu", force=True, use_cache=False)
    frames = [f.name for f in traceback.extract_tb(stopped.value.__traceback__)]
    assert "template_expression_basis" in frames, frames
    assert len(_PREPARED) == before
    token.reset()
    with token.active():                   # not cancelled: the same preparation runs to its end
        assert prepare_target(REPO_ROOT / "assets" / "targets" / "stylized_head.obj", model, device="cpu",
                              force=True, use_cache=False).skin_vertices_ict.shape[0] > 1000


def test_checkpoint_does_nothing_without_an_active_token_or_a_cancel():
    import threading

    import pytest

    from nfs.progress import CancelToken, Cancelled, checkpoint

    checkpoint()                            # no token: nothing happens
    token = CancelToken()
    token.cancel()
    checkpoint()                            # cancelled, but not active on this thread
    raised = []

    def other_thread():
        try:
            with token.active():
                checkpoint()
        except Cancelled:
            raised.append(True)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert raised == [True]
    checkpoint()                            # the other thread's token does not reach this one
    with token.active(), pytest.raises(Cancelled):
        checkpoint()


def test_the_heartbeat_keeps_the_callers_context():
    """The re-sent line reaches a callback that looks its channel up in a context variable (as Gradio's
    progress does), from the heartbeat's own thread."""
    import contextvars
    import time

    channel = contextvars.ContextVar("channel", default=None)
    got = []
    channel.set(got)
    with RunProgress(lambda f, m: channel.get() is not None and channel.get().append(m), ["a"], heartbeat_s=0.05):
        time.sleep(0.4)
    assert len(got) >= 3
