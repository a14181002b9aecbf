"""The viewer panel: the session's embedded viser viewer, its colours (shaded, regions, one code dimension's
weight heat map) and the ICT template overlay, with the API calls that drive it (display, seek, viewer_url)."""
from __future__ import annotations

import gradio as gr

from nfs.pipeline import EXPRESSION_NAMES

from app import about
from app.tabs.common import guarded, viewer_html
from app.viewer import MODES

DEFAULT_HEAT_DIM = "jawOpen"


def build(app, w) -> None:
    w.viewer = gr.HTML(viewer_html(""), elem_id="viewer")
    with gr.Row():
        w.mode = gr.Radio(list(MODES), value=MODES[0], label="colours", elem_id="display-mode")
        w.code_dim = gr.Dropdown([(f"{i}: {n}", i) for i, n in enumerate(app.code_names())],
                                 value=EXPRESSION_NAMES.index(DEFAULT_HEAT_DIM),
                                 label="code dimension for the heat map")
        w.show_template = gr.Checkbox(False, label="ICT template overlay")
    w.legend = gr.HTML(about.region_legend_html(), elem_id="legend")


def wire(app, w) -> None:
    @guarded
    def on_display(session_state, mode, dim, show_template, request: gr.Request):
        session = app.session(session_state, request)
        viewer = session.viewer
        if viewer is not None:
            viewer.set_display(mode=mode, code_dim=int(dim if dim is not None else 0),
                               show_template=bool(show_template))
        if mode == MODES[2]:
            names = app.code_names()
            name = names[int(dim)] if dim is not None and 0 <= int(dim) < len(names) else ""
            return about.heat_legend_html(name, viewer.heat_peak if viewer is not None else None)
        return about.region_legend_html()

    for trigger in (w.mode.input, w.code_dim.input, w.show_template.input):
        trigger(on_display, [w.state, w.mode, w.code_dim, w.show_template], w.legend, concurrency_limit=None,
                api_visibility="private")


def api(app) -> None:
    @guarded
    def display(mode: str, code_dim: int, show_template: bool, request: gr.Request) -> str:
        """Viewer colours: 'shaded', 'regions' or 'weight heat map' of code dimension code_dim."""
        viewer = app.session_of(request).viewer
        if viewer is not None:
            viewer.set_display(mode=mode, code_dim=int(code_dim), show_template=bool(show_template))
        return f"{mode}, code dim {int(code_dim)}"

    gr.api(display, api_name="display", concurrency_limit=None)

    @guarded
    def seek(frame: int, request: gr.Request) -> int:
        """Show one frame in this session's viewer (pauses playback); returns the frame shown."""
        viewer = app.session_of(request).viewer
        if viewer is None:
            return 0
        viewer.play(False)
        viewer.seek(int(frame))
        return int(viewer.frame)

    gr.api(seek, api_name="seek", concurrency_limit=None)

    @guarded
    def viewer_url(request: gr.Request) -> str:
        """URL of this session's 3D viewer (viser)."""
        return app.session_of(request).viewer_url()

    gr.api(viewer_url, api_name="viewer_url", concurrency_limit=None)
