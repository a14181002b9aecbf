"""The Gradio page: target intake, source clip, run with progress, FACS edits, exports, display and About.

Every handler looks up its `Session` (kept in a gr.State and in the `SessionRegistry` under Gradio's session
hash, so API-only endpoints reach the same session), turns bad input into a one-line gr.Error and leaves the
session's previous state as it was. The heavy events (target upload or demo pick, alignment override, clip file,
run) share one concurrency group, `HEAVY`, limited to the queue's default (`app.py --concurrency`): together at
most that many run at once and the rest wait in the queue, told their place. Slider edits and display changes
are cheap (the rig is baked inside the heavy event that prepared the target) and bypass it.
"""
from __future__ import annotations

import functools
import html
import logging
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np

from nfs.io import CLIP_EXTENSIONS, MESH_EXTENSIONS, ClipError, MeshError
from nfs.options import option_specs
from nfs.pipeline import EXPRESSION_NAMES, PREVIEW_DEFAULT_MAX_FRAMES, UP_AXES

from app import about, video_tab
from app.controls import export_choices, option_checkbox, option_number, option_slider
from app.demo_assets import DESCRIPTIONS, builtin_clips, demo_target_path, demo_targets
from app.edits import SCOPES, SLIDER_RANGE, facs_groups, parse_offsets_json
from app.progress import StageProgress
from app.session import (CLIP_STAGE, FILE_EXPORTS, MAX_UPLOAD_MB, PREVIEW_CHOICES, Session, SessionRegistry,
                         stages_of_run)
from app.viewer import MODES

log = logging.getLogger("nfs.app")
MESH_TYPES = list(MESH_EXTENSIONS)
CLIP_TYPES = list(CLIP_EXTENSIONS)
CLIP_KINDS = ("built-in clip", "uploaded file", video_tab.VIDEO_KIND)
USER_ERRORS = (MeshError, ClipError, ValueError, FileNotFoundError, zipfile.BadZipFile, OSError)
DEFAULT_CLIP = "smile"
DEFAULT_HEAT_DIM = "jawOpen"
HEAVY = "heavy"  # the one concurrency group of every event that prepares, parses or decodes
NO_TARGET = "*No target yet: upload a mesh or pick a demo.*"

CSS = """
#viewer-frame iframe {width: 100%; height: 620px; border: 1px solid #8884; border-radius: 8px;}
#run-status {min-height: 2em}
/* download names in full: wrap instead of cutting them to "me….zip" */
[id^=file-] td.filename, [id^=file-] td.filename span, #target-upload td.filename span,
#clip-upload td.filename span
{white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
 word-break: break-all; max-width: none !important;}
"""


def one_line(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def guarded(fn):
    """Bad input -> gr.Error with its one-line message (one log line, no traceback); anything else -> a short
    internal-error message (the traceback goes to the log). Errors stay on screen until dismissed. The session is
    left as it was before the call."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as e:
            log.info("refused (%s): %s", fn.__name__, one_line(e))
            raise gr.Error(one_line(e), duration=None, print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - the app must keep serving
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error(f"internal error ({type(e).__name__}): {one_line(e)}", duration=None,
                           print_exception=False) from None

    return wrapper


def _bullets(lines: list[str], warnings: list[str] = ()) -> str:
    out = [f"- {line}" for line in lines]
    out += [f"- ⚠ **{w}**" for w in warnings]
    return "\n".join(out)


def viewer_html(url: str) -> str:
    if not url:
        return ("<div id=\"viewer-frame\">3D viewer not available: every viewer server is in use by another "
                "session (close other tabs, or start the app with a larger --max-viewers). Runs and exports still "
                "work.</div>")
    u = html.escape(url, quote=True)
    return (f'<div id="viewer-frame"><iframe src="{u}" title="NFS 3D viewer" allow="fullscreen"></iframe>'
            f'<div style="font-size:12px;margin-top:4px">3D viewer of this session: <a href="{u}" target="_blank">'
            f'{u}</a> (playback, frame, fps, loop and colours are in its panel)</div></div>')


class Widgets:
    """The page's components, filled in by the tab builders (a plain namespace)."""


class App:
    """Builds the Blocks and holds what the handlers share (model, registry)."""

    def __init__(self, registry: SessionRegistry, card: dict, model_dir: str, untrained: bool = False,
                 max_frames: int = 0):
        self.registry = registry
        self.card, self.model_dir, self.untrained, self.max_frames = card, model_dir, untrained, max_frames

    # ------------------------------------------------------------------------------------------ sessions
    def session(self, state, request: gr.Request | None) -> Session:
        if isinstance(state, Session) and not state.closed:
            state.touch()
            return state
        sid = getattr(request, "session_hash", None) or "anonymous"
        return self.registry.get(sid)

    def session_of(self, request: gr.Request | None) -> Session:
        return self.registry.get(getattr(request, "session_hash", None) or "anonymous")

    # ------------------------------------------------------------------------------------------ handlers
    def target_markdown(self, s: Session, loaded_prefix: bool = False) -> str:
        lines, warnings = s.target_report()
        if not lines:
            return NO_TARGET
        if loaded_prefix:
            lines = [f"Still loaded: {lines[0]}"] + lines[1:]
        return _bullets(lines, warnings)

    def clip_markdown(self, s: Session) -> str:
        lines = s.clip_report()
        return _bullets(lines) if lines else "*No clip loaded.*"

    def _clip_spec(self, kind: str, builtin: str | None, file, session: Session | None = None) -> tuple[str, str]:
        if kind == CLIP_KINDS[2]:
            return video_tab.session_video_spec(session)
        if kind == CLIP_KINDS[1]:
            if not file:
                raise ValueError("upload a clip file first (CSV, OBJ-sequence zip, Multiface zip or .npz)")
            path = Path(file if isinstance(file, str) else file.name)
            return str(path), f"file:{path}"
        if not builtin:
            raise ValueError("choose a built-in clip")
        return builtin, f"builtin:{builtin}"

    def _warn_low_confidence(self, s: Session) -> None:
        for w in s.target_report()[1]:
            gr.Warning(w)

    def build(self) -> gr.Blocks:
        """The page: one builder per tab (laid out first), then each tab's events (wired once every component
        exists, since a change on one tab refreshes outputs on others). A further source tab (e.g. video) slots
        in as another `_*_tab` / `_*_events` pair."""
        frames_note = f" Clips are cut to {self.max_frames} frames (--max-frames)." if self.max_frames else ""
        w = Widgets()
        with gr.Blocks(title="Neural Face Skinning", delete_cache=(1800, 3600)) as demo:
            w.state = gr.State(None, delete_callback=lambda s: s.close() if isinstance(s, Session) else None)
            gr.Markdown("## Neural Face Skinning — expression cloning onto any face mesh\n"
                        "Upload a face mesh (any topology, units or orientation), choose a source expression clip, "
                        "press **Retarget & export**. The viewer shows the source (left) and your mesh (right); "
                        "colour it by the network's predicted skinning regions or one code dimension's weights."
                        + frames_note)
            with gr.Row(equal_height=False):
                with gr.Column(scale=4, min_width=420):
                    with gr.Tabs(overflow_behavior="wrap"):      # every tab in sight, none behind a menu
                        self._target_tab(w)
                        self._source_tab(w)
                        video_tab.build(self, w.state, w.clip_info, w.clip_kind, guarded)
                        self._edit_tab(w)
                        self._about_tab(w)
                    self._run_panel(w)
                with gr.Column(scale=7, min_width=560):
                    self._viewer_panel(w)
            self._page_events(demo, w)
            self._target_events(w)
            self._source_events(w)
            self._run_events(w)
            self._fps_field_events(w)
            self._edit_events(w)
            self._display_events(w)
            self._api_endpoints()
        return demo

    # ------------------------------------------------------------------------------------------ layout
    def _target_tab(self, w: "Widgets") -> None:
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
            with gr.Accordion("Manual alignment override", open=False):
                gr.Markdown("If the mesh sits wrongly on the blue ICT template in the viewer: say which axis of "
                            "*your file* points up, turn it around, or rescale it.")
                with gr.Row():
                    w.up_axis = gr.Dropdown(list(UP_AXES), value="auto", label="up axis of the mesh")
                    w.flip = gr.Checkbox(False, label="flip facing (turn 180°)")
                    w.scale = gr.Number(1.0, label="scale factor", minimum=0.01, maximum=100)
                w.align_btn = gr.Button("Apply alignment", elem_id="align-btn")

    def _source_tab(self, w: "Widgets") -> None:
        clips = builtin_clips()
        default_clip = DEFAULT_CLIP if DEFAULT_CLIP in clips else (clips[0] if clips else None)
        with gr.Tab("2 · Source"):
            w.clip_kind = gr.Radio(list(CLIP_KINDS), value=CLIP_KINDS[0], label="source")
            w.clip_pick = gr.Dropdown(clips, value=default_clip, label="built-in clip", elem_id="clip-pick")
            w.clip_file = gr.File(label="…or upload: Live Link Face CSV, ICT-weights CSV, OBJ-sequence zip, "
                                  "Multiface tracked_mesh zip or .npz", file_types=CLIP_TYPES, type="filepath",
                                  elem_id="clip-upload")
            with gr.Row():
                w.smoothing = option_slider("smoothing_sigma", elem_id="smoothing")
                w.gain = option_slider("gain", elem_id="gain")
            w.correction = option_checkbox("correction", elem_id="correction")
            w.clip_info = gr.Markdown("*No clip loaded.*", elem_id="clip-info")

    def _edit_tab(self, w: "Widgets") -> None:
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

    def _about_tab(self, w: "Widgets") -> None:
        with gr.Tab("About"):
            gr.Markdown("\n".join(f"- {line}" for line in about.device_lines(self.registry.device)))
            gr.Markdown(about.model_card_markdown(self.card, self.model_dir, self.untrained))
            gr.Markdown("**Predicted skinning regions** (colours in the viewer):")
            gr.HTML(about.region_legend_html())
            w.session_md = gr.Markdown("")
            gr.Markdown("Sessions: every browser tab has its own target, clip, results, temp folder and its own "
                        "viser viewer server (own port); they are removed when the tab closes (API clients: after "
                        "an hour idle). Uploading the same mesh again reuses its cached preparation (shown as "
                        "*reused*).")

    def _run_panel(self, w: "Widgets") -> None:
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

    def _viewer_panel(self, w: "Widgets") -> None:
        w.viewer = gr.HTML(viewer_html(""), elem_id="viewer")
        with gr.Row():
            w.mode = gr.Radio(list(MODES), value=MODES[0], label="colours", elem_id="display-mode")
            w.code_dim = gr.Dropdown([(f"{i}: {n}", i) for i, n in enumerate(self.code_names())],
                                     value=EXPRESSION_NAMES.index(DEFAULT_HEAT_DIM),
                                     label="code dimension for the heat map")
            w.show_template = gr.Checkbox(False, label="ICT template overlay")
        w.legend = gr.HTML(about.region_legend_html(), elem_id="legend")

    # ------------------------------------------------------------------------------------------ shared outputs
    def results_outputs(self, s: Session) -> tuple:
        """(run status, OBJ zip, GLB, rig, MP4, avatar): the last run's files only while it matches what is loaded."""
        r = s.result
        report = _bullets(s.result_report()) if r is not None else ""
        kinds = ("obj_zip", "glb", "rig", "mp4", "avatar")
        if r is None or not s.result_valid():
            return (report, *[None] * len(kinds))
        return (report, *[str(r.exports[k]) if k in r.exports else None for k in kinds])

    def edit_outputs(self, s: Session, scope: str) -> tuple:
        """(edit status, carry-over button, 53 slider values) of the loaded pair."""
        values = s.edits.values(scope if scope in SCOPES else SCOPES[0], s.clip_frame(s.current_frame()))
        return (s.edit_report(), gr.update(visible=s.carry_offer is not None),
                *[float(x) for x in values])

    # ------------------------------------------------------------------------------------------ events
    def _page_events(self, demo: gr.Blocks, w: "Widgets") -> None:
        @guarded
        def on_load(session_state, clip_name, request: gr.Request):
            s = self.session(session_state, request)
            if s.clip is None and clip_name:
                s.set_clip(clip_name, f"builtin:{clip_name}")
            return s, viewer_html(s.viewer_url()), self.session_markdown(s), self.clip_markdown(s)

        demo.load(on_load, [w.state, w.clip_pick], [w.state, w.viewer, w.session_md, w.clip_info],
                  api_visibility="private", concurrency_limit=None)

        def on_unload(request: gr.Request):
            self.registry.close(request.session_hash)

        demo.unload(on_unload)

    def _after_change(self, w: "Widgets", event) -> None:
        """Chained after a new target or clip: stale results withdrawn, the new pair's sliders shown."""
        @guarded
        def refresh(session_state, scope, request: gr.Request):
            s = self.session(session_state, request)
            return (*self.results_outputs(s), *self.edit_outputs(s, scope))

        event.success(refresh, [w.state, w.scope], [w.run_status, *w.files, w.edit_status, w.carry_btn,
                                                    *w.slider_list],
                      api_visibility="private", concurrency_limit=None, show_progress="hidden")

    def _target_events(self, w: "Widgets") -> None:
        target_outputs = [w.state, w.target_info, w.viewer, w.up_axis, w.flip, w.scale, w.show_template]

        def load(session_state, path, request, progress, name: str, force: bool = False,
                 open_mouth: bool = False) -> tuple:
            s = self.session(session_state, request)
            s.last_refusal = ""
            try:
                s.load_target(path, lambda f, m: progress(f, desc=m), force=force, open_mouth=open_mouth)
            except Exception as e:
                s.last_refusal = f"{name}: {one_line(e)}"
                raise
            self._warn_low_confidence(s)
            return s, self.target_markdown(s), viewer_html(s.viewer_url()), "auto", False, 1.0, True

        @guarded
        def on_upload(session_state, path, force=False, open_mouth=False, request: gr.Request = None,
                      progress=gr.Progress()):
            if not path:
                raise ValueError("no file received")
            return load(session_state, path, request, progress, Path(path).name, bool(force), bool(open_mouth))

        upload = w.target_file.upload(on_upload, [w.state, w.target_file, w.force_face, w.open_mouth], target_outputs,
                                      api_name="upload_target",
                                      concurrency_id=HEAVY, show_progress_on=[w.target_info])
        self._after_change(w, upload)

        @guarded
        def on_refused(session_state, request: gr.Request):
            """A refused upload: the file box is emptied and the summary names what is really loaded."""
            s = self.session(session_state, request)
            why = s.last_refusal or "the file was refused (see the message)"
            return None, (f"⚠ **Not loaded:** {html.escape(why)}\n\n" + self.target_markdown(s, loaded_prefix=True))

        upload.failure(on_refused, [w.state], [w.target_file, w.target_info], api_visibility="private",
                       concurrency_limit=None, show_progress="hidden")

        @guarded
        def on_demo(session_state, name, request: gr.Request, progress=gr.Progress()):
            if not name:
                raise ValueError("choose a demo target")
            return load(session_state, demo_target_path(name), request, progress, name)

        demo = w.demo_pick.input(on_demo, [w.state, w.demo_pick], target_outputs, api_name="load_demo_target",
                                 concurrency_id=HEAVY, show_progress_on=[w.target_info])
        self._after_change(w, demo)

        @guarded
        def on_align(session_state, up_axis, flip, scale, request: gr.Request, progress=gr.Progress()):
            s = self.session(session_state, request)
            s.override_alignment(up_axis, bool(flip), float(scale if scale is not None else 1.0),
                                 lambda f, m: progress(f, desc=m))
            self._warn_low_confidence(s)
            return s, self.target_markdown(s)

        align = w.align_btn.click(on_align, [w.state, w.up_axis, w.flip, w.scale], [w.state, w.target_info],
                                  api_name="override_alignment", concurrency_id=HEAVY,
                                  show_progress_on=[w.target_info])
        self._after_change(w, align)

    def _source_events(self, w: "Widgets") -> None:
        @guarded
        def on_clip(session_state, kind, builtin, file, request: gr.Request):
            s = self.session(session_state, request)
            spec, key = self._clip_spec(kind, builtin, file, s)
            s.set_clip(spec, key)
            return s, self.clip_markdown(s)

        self._after_change(w, w.clip_kind.input(on_clip, [w.state, w.clip_kind, w.clip_pick, w.clip_file],
                                                [w.state, w.clip_info], api_visibility="private",
                                                show_progress_on=[w.clip_info]))

        @guarded
        def on_builtin_clip(session_state, builtin, request: gr.Request):
            s = self.session(session_state, request)
            spec, key = self._clip_spec(CLIP_KINDS[0], builtin, None)
            s.set_clip(spec, key)
            return s, self.clip_markdown(s), CLIP_KINDS[0]

        self._after_change(w, w.clip_pick.input(on_builtin_clip, [w.state, w.clip_pick],
                                                [w.state, w.clip_info, w.clip_kind], api_name="set_clip",
                                                show_progress_on=[w.clip_info]))

        @guarded
        def on_clip_file(session_state, file, request: gr.Request, progress=gr.Progress()):
            s = self.session(session_state, request)
            progress(0.1, desc="reading the clip")
            spec, key = self._clip_spec(CLIP_KINDS[1], None, file)
            s.set_clip(spec, key)
            return s, self.clip_markdown(s), CLIP_KINDS[1]

        self._after_change(w, w.clip_file.upload(on_clip_file, [w.state, w.clip_file],
                                                 [w.state, w.clip_info, w.clip_kind], api_name="set_clip_file",
                                                 concurrency_id=HEAVY, show_progress_on=[w.clip_info]))

    def _fps_field_events(self, w: "Widgets") -> None:
        """The frame-rate field belongs to a clip: any new clip (built-in, file, video) sets it back to 0 (the
        clip's own rate), so a rate chosen for one take is never applied silently to the next."""
        @guarded
        def on_clip_shown(session_state, fps, request: gr.Request):
            s = self.session(session_state, request)
            if s.fps_field_clip_key == s.clip_key:
                return fps
            s.fps_field_clip_key = s.clip_key
            return 0

        w.clip_info.change(on_clip_shown, [w.state, w.fps_pick], [w.fps_pick], api_visibility="private",
                           concurrency_limit=None, show_progress="hidden")

    def _run_events(self, w: "Widgets") -> None:
        @guarded
        def on_run(session_state, kind, builtin, file, smoothing, gain, correction=False, files_wanted=FILE_EXPORTS,
                   preview="auto", fps=0, tolerance=option_specs()["glb_tolerance_mm"].default,
                   request: gr.Request = None, progress=gr.Progress()):
            s = self.session(session_state, request)
            spec, key = self._clip_spec(kind, builtin, file, s)
            exports, preview, fps = tuple(files_wanted or ()), preview or "auto", float(fps or 0) or None
            with StageProgress(lambda f, m: progress(f, desc=m), stages_of_run(FILE_EXPORTS + ("mp4",))) as stages:
                stages.stage_named(CLIP_STAGE)
                s.set_clip(spec, key)
                stages.set_stages(stages_of_run(s.export_kinds(exports, preview, fps)[0]))
                s.run(float(smoothing), float(gain), stages, correction=correction is True, exports=exports,
                      preview=preview, fps=fps, glb_tolerance_mm=float(tolerance))
            return (s, *self.results_outputs(s), viewer_html(s.viewer_url()), self.target_markdown(s),
                    self.clip_markdown(s), False)

        run = w.run_btn.click(on_run, [w.state, w.clip_kind, w.clip_pick, w.clip_file, w.smoothing, w.gain,
                                       w.correction, w.export_pick, w.preview_pick, w.fps_pick, w.tolerance],
                              [w.state, w.run_status, *w.files, w.viewer, w.target_info, w.clip_info,
                               w.show_template],
                              api_name="run", concurrency_id=HEAVY, show_progress_on=[w.run_status])

        @guarded
        def after_run(session_state, scope, request: gr.Request):
            s = self.session(session_state, request)
            return self.edit_outputs(s, scope)[:2]

        run.success(after_run, [w.state, w.scope], [w.edit_status, w.carry_btn], api_visibility="private",
                    concurrency_limit=None, show_progress="hidden")

    def _edit_events(self, w: "Widgets") -> None:
        @guarded
        def on_slider(session, scope, *values):
            if not isinstance(session, Session) or session.closed:
                raise ValueError("this page's session has ended: reload the page")
            session.touch()
            frame = session.apply_edit(scope, np.asarray(values, np.float32))
            return self.edit_markdown(session, scope, frame), gr.update(visible=session.carry_offer is not None)

        gr.on([sl.release for sl in w.slider_list] + [sl.input for sl in w.slider_list], on_slider,
              [w.state, w.scope, *w.slider_list], [w.edit_status, w.carry_btn], trigger_mode="always_last",
              concurrency_limit=None, show_progress="minimal", api_visibility="private")

        @guarded
        def on_grab(session_state, scope, request: gr.Request):
            s = self.session(session_state, request)
            v = s.viewer
            if v is not None:
                v.play(False)
            frame = s.current_frame()
            values = s.edits.values(scope, s.clip_frame(frame))
            return (self.edit_markdown(s, scope, frame), *[float(x) for x in values])

        for trigger in (w.scope.change, w.grab_btn.click):
            trigger(on_grab, [w.state, w.scope], [w.edit_status, *w.slider_list], concurrency_limit=None,
                    api_visibility="private")

        @guarded
        def on_reset(session_state, request: gr.Request):
            s = self.session(session_state, request)
            s.reset_edits()
            return (self.edit_markdown(s, SCOPES[0], s.current_frame()), *[0.0] * len(w.slider_list))

        w.reset_btn.click(on_reset, [w.state], [w.edit_status, *w.slider_list], concurrency_limit=None,
                          api_name="reset_edits")

        @guarded
        def on_carry(session_state, scope, request: gr.Request):
            s = self.session(session_state, request)
            note = s.carry_over()
            out = self.edit_outputs(s, scope)
            return (f"{out[0]}  \n{note}", *out[1:])

        w.carry_btn.click(on_carry, [w.state, w.scope], [w.edit_status, w.carry_btn, *w.slider_list],
                          concurrency_limit=None, api_name="carry_edits")

    def _display_events(self, w: "Widgets") -> None:
        @guarded
        def on_display(session_state, mode, dim, show_template, request: gr.Request):
            s = self.session(session_state, request)
            v = s.viewer
            if v is not None:
                v.set_display(mode=mode, code_dim=int(dim if dim is not None else 0),
                              show_template=bool(show_template))
            if mode == MODES[2]:
                names = self.code_names()
                name = names[int(dim)] if dim is not None and 0 <= int(dim) < len(names) else ""
                return about.heat_legend_html(name, v.heat_peak if v is not None else None)
            return about.region_legend_html()

        for trigger in (w.mode.input, w.code_dim.input, w.show_template.input):
            trigger(on_display, [w.state, w.mode, w.code_dim, w.show_template], w.legend, concurrency_limit=None,
                    api_visibility="private")

    def _api_endpoints(self) -> None:
        @guarded
        def edit(scope: str, frame: int, offsets_json: str, request: gr.Request) -> str:
            """Set slider offsets: scope 'whole clip' or 'current frame', frame index (-1: the viewer's),
            offsets as JSON {ICT name: value}."""
            s = self.session_of(request)
            f = s.apply_edit(scope, parse_offsets_json(offsets_json), None if int(frame) < 0 else int(frame))
            return self.edit_markdown(s, scope, f)

        gr.api(edit, api_name="edit", concurrency_limit=None)

        @guarded
        def display(mode: str, code_dim: int, show_template: bool, request: gr.Request) -> str:
            """Viewer colours: 'shaded', 'regions' or 'weight heat map' of code dimension code_dim."""
            s = self.session_of(request)
            v = s.viewer
            if v is not None:
                v.set_display(mode=mode, code_dim=int(code_dim), show_template=bool(show_template))
            return f"{mode}, code dim {int(code_dim)}"

        gr.api(display, api_name="display", concurrency_limit=None)

        @guarded
        def seek(frame: int, request: gr.Request) -> int:
            """Show one frame in this session's viewer (pauses playback); returns the frame shown."""
            s = self.session_of(request)
            v = s.viewer
            if v is None:
                return 0
            v.play(False)
            v.seek(int(frame))
            return int(v.frame)

        gr.api(seek, api_name="seek", concurrency_limit=None)

        @guarded
        def viewer_url(request: gr.Request) -> str:
            """URL of this session's 3D viewer (viser)."""
            return self.session_of(request).viewer_url()

        gr.api(viewer_url, api_name="viewer_url", concurrency_limit=None)

        @guarded
        def status(request: gr.Request) -> dict:
            """This session's target, clip, last result (files) and edits, as JSON."""
            return self.session_of(request).status()

        gr.api(status, api_name="status", concurrency_limit=None)

    # ------------------------------------------------------------------------------------------ text
    def code_names(self) -> list[str]:
        """Names of the expression code's dimensions: the 53 ICT FACS shapes, then the free dimensions."""
        n = getattr(getattr(self.registry.model, "cfg", None), "code_dim", len(EXPRESSION_NAMES))
        return list(EXPRESSION_NAMES) + [f"free_{j}" for j in range(n - len(EXPRESSION_NAMES))]

    def edit_markdown(self, s: Session, scope: str, frame: int) -> str:
        where = f"frame {frame}" if scope == SCOPES[1] else "the whole clip"
        return f"editing {where} · {s.edits.describe()} · {s.edit_report()}" + (
            "  \npress **Retarget & export** to put them in the files" if s.edits.active else "")

    def session_markdown(self, s: Session) -> str:
        return f"This session's viewer: {s.viewer_url() or 'none'} · session temp folder `{s.dir}`"
