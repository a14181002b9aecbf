"""Tab 1 · Target: upload a face mesh or pick a bundled demo, see the intake summary, override the alignment."""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from nfs.io import MESH_EXTENSIONS
from nfs.pipeline import PREPARE_STAGES, UP_AXES

from app.controls import option_checkbox
from app.demo_assets import DESCRIPTIONS, demo_target_path, demo_targets
from app.preparation import Preparations, run_cancellable
from app.state import MAX_UPLOAD_MB, RIG_STAGE
from app.tabs.common import HEAVY, NO_TARGET, guarded, one_line, viewer_html
from app.views import target_report

MESH_TYPES = list(MESH_EXTENSIONS)


def build(app, w) -> None:
    demos = demo_targets()
    with gr.Tab("1 · Target"):
        w.target_file = gr.File(label=f"Upload a face mesh: OBJ, PLY, STL, GLB or OFF (max {MAX_UPLOAD_MB} MB)",
                                file_types=MESH_TYPES, type="filepath", elem_id="target-upload")
        w.force_face = gr.Checkbox(False, label="use it even if it does not look like a face",
                                   elem_id="force-face")
        w.open_mouth = option_checkbox("open_mouth", elem_id="open-mouth")
        w.demo_pick = gr.Radio(list(demos), label="…or a bundled demo target", value=None,
                               info=" · ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items() if k in demos),
                               elem_id="demo-targets")
        w.target_info = gr.Markdown(NO_TARGET, elem_id="target-info")
        w.cancel_prepare = gr.Button("Cancel preparation", elem_id="cancel-prepare", size="sm", variant="stop")
        with gr.Accordion("Manual alignment override", open=False):
            gr.Markdown("If the mesh sits wrongly on the blue ICT template in the viewer: say which axis of "
                        "*your file* points up, turn it around, or rescale it.")
            with gr.Row():
                w.up_axis = gr.Dropdown(list(UP_AXES), value="auto", label="up axis of the mesh")
                w.flip = gr.Checkbox(False, label="flip facing (turn 180°)")
                w.scale = gr.Number(1.0, label="scale factor", minimum=0.01, maximum=100)
            w.align_btn = gr.Button("Apply alignment", elem_id="align-btn")


def warn_low_confidence(app, session) -> None:
    for warning in target_report(session)[1]:
        gr.Warning(warning)


def wire(app, w) -> None:
    target_outputs = [w.state, w.target_info, w.viewer, w.up_axis, w.flip, w.scale, w.show_template]

    preparations = Preparations()

    def load(session_state, path, request, progress, name: str, force: bool = False,
             open_mouth: bool = False) -> tuple:
        """Prepare on a worker thread with the staged line (step k of n, time left) until done or cancelled."""
        session = app.session(session_state, request)
        session.last_refusal = ""
        token = preparations.start(session.id)
        try:
            run_cancellable(lambda line: session.load_target(path, line, force=force, open_mouth=open_mouth,
                                                             cancel=token),
                            lambda f, m: progress(f, desc=m), token, PREPARE_STAGES + [RIG_STAGE])
        except Exception as e:
            session.last_refusal = f"{name}: {one_line(e)}"
            raise
        finally:
            preparations.finish(session.id, token)
        warn_low_confidence(app, session)
        return session, app.target_markdown(session), viewer_html(session.viewer_url()), "auto", False, 1.0, True

    @guarded
    def on_upload(session_state, path, force=False, open_mouth=False, request: gr.Request = None,
                  progress=gr.Progress()):
        if not path:
            raise ValueError("no file received")
        return load(session_state, path, request, progress, Path(path).name, bool(force), bool(open_mouth))

    upload = w.target_file.upload(on_upload, [w.state, w.target_file, w.force_face, w.open_mouth], target_outputs,
                                  api_name="upload_target", concurrency_id=HEAVY, show_progress_on=[w.target_info])
    app.after_change(w, upload)

    @guarded
    def on_cancel(session_state, request: gr.Request = None):
        """Stop this session's preparation: its event returns at once and the target loaded before stays."""
        session = app.session(session_state, request)
        if preparations.cancel(session.id):
            gr.Info("Preparation cancelled: the target loaded before is kept.")
        else:
            gr.Info("No preparation is running.")

    w.cancel_prepare.click(on_cancel, [w.state], None, api_name="cancel_preparation", concurrency_limit=None,
                           show_progress="hidden")

    @guarded
    def on_refused(session_state, request: gr.Request):
        """A refused upload: the file box is emptied and the summary names what is really loaded."""
        session = app.session(session_state, request)
        why = session.last_refusal or "the file was refused (see the message)"
        return None, (f"⚠ **Not loaded:** {html.escape(why)}\n\n" + app.target_markdown(session, loaded_prefix=True))

    upload.failure(on_refused, [w.state], [w.target_file, w.target_info], api_visibility="private",
                   concurrency_limit=None, show_progress="hidden")

    @guarded
    def on_demo(session_state, name, request: gr.Request, progress=gr.Progress()):
        if not name:
            raise ValueError("choose a demo target")
        return load(session_state, demo_target_path(name), request, progress, name)

    demo = w.demo_pick.input(on_demo, [w.state, w.demo_pick], target_outputs, api_name="load_demo_target",
                             concurrency_id=HEAVY, show_progress_on=[w.target_info])
    app.after_change(w, demo)

    @guarded
    def on_align(session_state, up_axis, flip, scale, request: gr.Request, progress=gr.Progress()):
        session = app.session(session_state, request)
        session.override_alignment(up_axis, bool(flip), float(scale if scale is not None else 1.0),
                                   lambda f, m: progress(f, desc=m))
        warn_low_confidence(app, session)
        return session, app.target_markdown(session)

    align = w.align_btn.click(on_align, [w.state, w.up_axis, w.flip, w.scale], [w.state, w.target_info],
                              api_name="override_alignment", concurrency_id=HEAVY, show_progress_on=[w.target_info])
    app.after_change(w, align)
