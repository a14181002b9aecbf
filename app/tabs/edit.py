"""Tab 3 · Edit: FACS slider offsets for the loaded (target, clip) pair, over the whole clip or around the viewer's
frame, shown at once through the baked linear rig; carried over from the previous pair on request."""
from __future__ import annotations

import gradio as gr
import numpy as np

from nfs.pipeline import EXPRESSION_NAMES

from app.edits import SCOPES, SLIDER_RANGE, facs_groups, parse_offsets_json
from app.state import Session
from app.tabs.common import guarded


def build(app, w) -> None:
    with gr.Tab("3 · Edit"):
        gr.Markdown("Offsets added to the clip's FACS weights. They belong to the loaded **target × clip** "
                    "pair: a new target or clip starts from its own edits (none at first), and the previous "
                    "pair's edits can be carried over. *current frame* edits the viewer's frame (eased over "
                    "±0.25 s); the viewer updates at once through the baked linear rig, and **Retarget & "
                    "export** puts the edits into the files.")
        with gr.Row():
            w.scope = gr.Radio(list(SCOPES), value=SCOPES[0], label="edit applies to")
            w.grab_btn = gr.Button("Load sliders at the viewer's frame", size="sm")
            w.reset_btn = gr.Button("Reset all edits", size="sm", elem_id="reset-edits")
            w.carry_btn = gr.Button("Carry edits over", size="sm", visible=False, elem_id="carry-edits")
        w.edit_status = gr.Markdown("no edits", elem_id="edit-status")
        w.sliders = {}
        for group, names in facs_groups().items():
            with gr.Accordion(f"{group} ({len(names)})", open=group == "mouth"):
                with gr.Row():
                    for name in names:
                        w.sliders[name] = gr.Slider(*SLIDER_RANGE, value=0.0, step=0.01, label=name,
                                                    min_width=150, elem_id=f"slider-{name}")
        w.slider_list = [w.sliders[n] for n in EXPRESSION_NAMES]


def wire(app, w) -> None:
    @guarded
    def on_slider(session, scope, *values):
        if not isinstance(session, Session) or session.closed:
            raise ValueError("this page's session has ended: reload the page")
        session.touch()
        frame = session.apply_edit(scope, np.asarray(values, np.float32))
        return app.edit_markdown(session, scope, frame), gr.update(visible=session.carry_offer is not None)

    gr.on([slider.release for slider in w.slider_list] + [slider.input for slider in w.slider_list], on_slider,
          [w.state, w.scope, *w.slider_list], [w.edit_status, w.carry_btn], trigger_mode="always_last",
          concurrency_limit=None, show_progress="minimal", api_visibility="private")

    @guarded
    def on_grab(session_state, scope, request: gr.Request):
        session = app.session(session_state, request)
        viewer = session.viewer
        if viewer is not None:
            viewer.play(False)
        frame = session.current_frame()
        values = session.edits.values(scope, session.clip_frame(frame))
        return (app.edit_markdown(session, scope, frame), *[float(x) for x in values])

    for trigger in (w.scope.change, w.grab_btn.click):
        trigger(on_grab, [w.state, w.scope], [w.edit_status, *w.slider_list], concurrency_limit=None,
                api_visibility="private")

    @guarded
    def on_reset(session_state, request: gr.Request):
        session = app.session(session_state, request)
        session.reset_edits()
        return (app.edit_markdown(session, SCOPES[0], session.current_frame()), *[0.0] * len(w.slider_list))

    w.reset_btn.click(on_reset, [w.state], [w.edit_status, *w.slider_list], concurrency_limit=None,
                      api_name="reset_edits")

    @guarded
    def on_carry(session_state, scope, request: gr.Request):
        session = app.session(session_state, request)
        note = session.carry_over()
        out = app.edit_outputs(session, scope)
        return (f"{out[0]}  \n{note}", *out[1:])

    w.carry_btn.click(on_carry, [w.state, w.scope], [w.edit_status, w.carry_btn, *w.slider_list],
                      concurrency_limit=None, api_name="carry_edits")


def api(app) -> None:
    @guarded
    def edit(scope: str, frame: int, offsets_json: str, request: gr.Request) -> str:
        """Set slider offsets: scope 'whole clip' or 'current frame', frame index (-1: the viewer's),
        offsets as JSON {ICT name: value}."""
        session = app.session_of(request)
        shown = session.apply_edit(scope, parse_offsets_json(offsets_json), None if int(frame) < 0 else int(frame))
        return app.edit_markdown(session, scope, shown)

    gr.api(edit, api_name="edit", concurrency_limit=None)
