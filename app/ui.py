"""The Gradio page, assembled from its tabs and panels (`app/tabs/`: target, source, video, edit, about, the run
panel and the viewer panel), with what their handlers share: the session lookup, the summaries and the outputs
several tabs refresh.

Every handler looks up its `Session` (kept in a gr.State and in the `SessionRegistry` under Gradio's session
hash, so API-only endpoints reach the same session), turns bad input into a one-line gr.Error and leaves the
session's previous state as it was. The heavy events (target upload or demo pick, alignment override, clip file,
run) share one concurrency group, `HEAVY`, limited to the queue's default (`app.py --concurrency`): together at
most that many run at once and the rest wait in the queue, told their place. Slider edits and display changes
are cheap (the rig is baked inside the heavy event that prepared the target) and bypass it.
"""
from __future__ import annotations

import gradio as gr

from nfs.pipeline import EXPRESSION_NAMES

from app import views
from app.edits import SCOPES
from app.state import Session, SessionRegistry
from app.tabs import about, display, edit, run, source, target, video
from app.tabs.common import NO_TARGET, Widgets, bullets, guarded, viewer_html

CSS = """
#viewer-frame iframe {width: 100%; height: 620px; border: 1px solid #8884; border-radius: 8px;}
#run-status {min-height: 2em}
/* download names in full: wrap instead of cutting them to "me….zip" */
[id^=file-] td.filename, [id^=file-] td.filename span, #target-upload td.filename span,
#clip-upload td.filename span
{white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
 word-break: break-all; max-width: none !important;}
"""


class App:
    """Builds the Blocks and holds what the handlers share (model, registry)."""

    def __init__(self, registry: SessionRegistry, card: dict, model_dir: str, untrained: bool = False,
                 max_frames: int = 0):
        self.registry = registry
        self.card, self.model_dir, self.untrained, self.max_frames = card, model_dir, untrained, max_frames

    # ------------------------------------------------------------------------------------------ sessions
    def session(self, session_state, request: gr.Request | None) -> Session:
        if isinstance(session_state, Session) and not session_state.closed:
            session_state.touch()
            return session_state
        return self.session_of(request)

    def session_of(self, request: gr.Request | None) -> Session:
        return self.registry.get(getattr(request, "session_hash", None) or "anonymous")

    # ------------------------------------------------------------------------------------------ page
    def build(self) -> gr.Blocks:
        """The page: every tab laid out first, then each tab's events (wired once every component exists, since
        a change on one tab refreshes outputs on others). A further source tab slots in as another module in
        app/tabs/ with its `build` and `wire`."""
        frames_note = f" Clips are cut to {self.max_frames} frames (--max-frames)." if self.max_frames else ""
        w = Widgets()
        with gr.Blocks(title="Neural Face Skinning", delete_cache=(1800, 3600)) as page:
            w.state = gr.State(None, delete_callback=lambda s: s.close() if isinstance(s, Session) else None)
            gr.Markdown("## Neural Face Skinning — expression cloning onto any face mesh\n"
                        "Upload a face mesh (any topology, units or orientation), choose a source expression clip, "
                        "press **Retarget & export**. The viewer shows the source (left) and your mesh (right); "
                        "colour it by the network's predicted skinning regions or one code dimension's weights."
                        + frames_note)
            with gr.Row(equal_height=False):
                with gr.Column(scale=4, min_width=420):
                    with gr.Tabs(overflow_behavior="wrap"):      # every tab in sight, none behind a menu
                        target.build(self, w)
                        source.build(self, w)
                        video.build(self, w.state, w.clip_info, w.clip_kind, guarded)
                        edit.build(self, w)
                        about.build(self, w)
                    run.build(self, w)
                with gr.Column(scale=7, min_width=560):
                    display.build(self, w)
            self._page_events(page, w)
            target.wire(self, w)
            source.wire(self, w)
            run.wire(self, w)
            source.wire_fps_field(self, w)
            edit.wire(self, w)
            display.wire(self, w)
            edit.api(self)
            display.api(self)
            self._status_api()
        return page

    def _page_events(self, page: gr.Blocks, w: Widgets) -> None:
        @guarded
        def on_load(session_state, clip_name, request: gr.Request):
            session = self.session(session_state, request)
            if session.clip is None and clip_name:
                session.set_clip(clip_name, f"builtin:{clip_name}")
            return (session, viewer_html(session.viewer_url()), self.session_markdown(session),
                    self.clip_markdown(session))

        page.load(on_load, [w.state, w.clip_pick], [w.state, w.viewer, w.session_md, w.clip_info],
                  api_visibility="private", concurrency_limit=None)

        def on_unload(request: gr.Request):
            self.registry.close(request.session_hash)

        page.unload(on_unload)

    def after_change(self, w: Widgets, event) -> None:
        """Chained after a new target or clip: stale results withdrawn, the new pair's sliders shown."""
        @guarded
        def refresh(session_state, scope, request: gr.Request):
            session = self.session(session_state, request)
            return (*self.results_outputs(session), *self.edit_outputs(session, scope))

        event.success(refresh, [w.state, w.scope], [w.run_status, *w.files, w.edit_status, w.carry_btn,
                                                    *w.slider_list],
                      api_visibility="private", concurrency_limit=None, show_progress="hidden")

    def _status_api(self) -> None:
        @guarded
        def status(request: gr.Request) -> dict:
            """This session's target, clip, last result (files) and edits, as JSON."""
            return self.session_of(request).status()

        gr.api(status, api_name="status", concurrency_limit=None)

    # ------------------------------------------------------------------------------------------ shared outputs
    def results_outputs(self, session: Session) -> tuple:
        """(run status, OBJ zip, GLB, rig, MP4, avatar): the last run's files only while it matches what is loaded."""
        result = session.result
        report = bullets(views.result_report(session)) if result is not None else ""
        kinds = ("obj_zip", "glb", "rig", "mp4", "avatar")
        if result is None or not session.result_valid():
            return (report, *[None] * len(kinds))
        return (report, *[str(result.exports[k]) if k in result.exports else None for k in kinds])

    def edit_outputs(self, session: Session, scope: str) -> tuple:
        """(edit status, carry-over button, 53 slider values) of the loaded pair."""
        values = session.edits.values(scope if scope in SCOPES else SCOPES[0],
                                      session.clip_frame(session.current_frame()))
        return (views.edit_report(session), gr.update(visible=session.carry_offer is not None),
                *[float(x) for x in values])

    # ------------------------------------------------------------------------------------------ text
    def target_markdown(self, session: Session, loaded_prefix: bool = False) -> str:
        lines, warnings = views.target_report(session)
        if not lines:
            return NO_TARGET
        if loaded_prefix:
            lines = [f"Still loaded: {lines[0]}"] + lines[1:]
        return bullets(lines, warnings)

    def clip_markdown(self, session: Session) -> str:
        lines = views.clip_report(session)
        return bullets(lines) if lines else "*No clip loaded.*"

    def code_names(self) -> list[str]:
        """Names of the expression code's dimensions: the 53 ICT FACS shapes, then the free dimensions."""
        n = getattr(getattr(self.registry.model, "cfg", None), "code_dim", len(EXPRESSION_NAMES))
        return list(EXPRESSION_NAMES) + [f"free_{j}" for j in range(n - len(EXPRESSION_NAMES))]

    def edit_markdown(self, session: Session, scope: str, frame: int) -> str:
        where = f"frame {frame}" if scope == SCOPES[1] else "the whole clip"
        return f"editing {where} · {session.edits.describe()} · {views.edit_report(session)}" + (
            "  \npress **Retarget & export** to put them in the files" if session.edits.active else "")

    def session_markdown(self, session: Session) -> str:
        return f"This session's viewer: {session.viewer_url() or 'none'} · session temp folder `{session.dir}`"
