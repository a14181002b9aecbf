"""The run panel: which files to write, the MP4 preview, frame rate and GLB tolerance; **Retarget & export** with
its progress, the report and the files."""
from __future__ import annotations

import gradio as gr

from nfs.options import option_specs
from nfs.pipeline import PREVIEW_DEFAULT_MAX_FRAMES

from app.controls import export_choices, option_number
from app.progress import StageProgress
from app.state import CLIP_STAGE, FILE_EXPORTS, PREVIEW_CHOICES, stages_of_run
from app.tabs.common import HEAVY, guarded, viewer_html
from app.tabs.source import clip_spec

SHOW_VIEWER = ("() => { const v = document.querySelector('#viewer-frame'); "
               "if (v) v.scrollIntoView({block: 'nearest'}); }")


def build(app, w) -> None:
    with gr.Row():
        w.export_pick = gr.CheckboxGroup(export_choices(FILE_EXPORTS), value=list(FILE_EXPORTS),
                                         label="files to write", elem_id="export-pick")
        w.preview_pick = gr.Radio(list(PREVIEW_CHOICES), value="auto", elem_id="preview-pick",
                                  label=f"MP4 preview (auto: only for takes up to {PREVIEW_DEFAULT_MAX_FRAMES} "
                                        "frames; it renders ~10-20 frames/s)")
        w.fps_pick = option_number("fps", elem_id="fps-pick")
        w.tolerance = option_number("glb_tolerance_mm", elem_id="glb-tolerance")
    w.run_btn = gr.Button("Retarget & export", variant="primary", elem_id="run-btn")
    w.run_status = gr.Markdown("", elem_id="run-status")
    with gr.Row():
        w.f_obj = gr.File(label="OBJ sequence (zip)", interactive=False, elem_id="file-obj")
        w.f_glb = gr.File(label="animated GLB", interactive=False, elem_id="file-glb")
    with gr.Row():
        w.f_rig = gr.File(label="baked rig GLB (52 ARKit shapes)", interactive=False, elem_id="file-rig")
        w.f_mp4 = gr.File(label="preview MP4", interactive=False, elem_id="file-mp4")
    w.f_avatar = gr.File(label="your avatar with 52 ARKit targets and the animation (glTF / VRM uploads)",
                         interactive=False, elem_id="file-avatar")
    w.files = [w.f_obj, w.f_glb, w.f_rig, w.f_mp4, w.f_avatar]


def wire(app, w) -> None:
    @guarded
    def on_run(session_state, kind, builtin, file, smoothing, gain, correction=False, files_wanted=FILE_EXPORTS,
               preview="auto", fps=0, tolerance=option_specs()["glb_tolerance_mm"].default,
               request: gr.Request = None, progress=gr.Progress()):
        session = app.session(session_state, request)
        spec, key = clip_spec(kind, builtin, file, session)
        exports, preview, fps = tuple(files_wanted or ()), preview or "auto", float(fps or 0) or None
        with StageProgress(lambda f, m: progress(f, desc=m), stages_of_run(FILE_EXPORTS + ("mp4",))) as stages:
            stages.stage_named(CLIP_STAGE)
            session.set_clip(spec, key)
            stages.set_stages(stages_of_run(session.export_kinds(exports, preview, fps)[0]))
            session.run(float(smoothing), float(gain), stages, correction=correction is True, exports=exports,
                        preview=preview, fps=fps, glb_tolerance_mm=float(tolerance))
        return (session, *app.results_outputs(session), viewer_html(session.viewer_url()),
                app.target_markdown(session), app.clip_markdown(session), False)

    run = w.run_btn.click(on_run, [w.state, w.clip_kind, w.clip_pick, w.clip_file, w.smoothing, w.gain,
                                   w.correction, w.export_pick, w.preview_pick, w.fps_pick, w.tolerance],
                          [w.state, w.run_status, *w.files, w.viewer, w.target_info, w.clip_info,
                           w.show_template],
                          api_name="run", concurrency_id=HEAVY, show_progress_on=[w.run_status])

    @guarded
    def after_run(session_state, scope, request: gr.Request):
        session = app.session(session_state, request)
        return app.edit_outputs(session, scope)[:2]

    run.success(after_run, [w.state, w.scope], [w.edit_status, w.carry_btn], api_visibility="private",
                concurrency_limit=None, show_progress="hidden")
    # the finished run's viewer in sight: a browser gives a cross-origin frame scrolled out of sight (the page
    # scrolls down to the run button) no animation frames, and the viewer applies what the server sends (the
    # result's frames, its playback controls' frame count and rate) on its next animation frame
    run.success(None, None, None, js=SHOW_VIEWER, api_visibility="private", show_progress="hidden")
