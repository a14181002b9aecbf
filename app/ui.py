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

from nfs import EXPRESSION_NAMES, ClipError
from nfs.io import CLIP_EXTENSIONS, MESH_EXTENSIONS, MeshError
from nfs.pipeline import PREVIEW_DEFAULT_MAX_FRAMES, UP_AXES

from app import about
from app.demo_assets import DESCRIPTIONS, builtin_clips, demo_target_path, demo_targets
from app.edits import SCOPES, SLIDER_RANGE, facs_groups, parse_offsets_json
from app.session import FILE_EXPORTS, MAX_UPLOAD_MB, PREVIEW_CHOICES, Session, SessionRegistry
from app.viewer import MODES

log = logging.getLogger("nfs.app")
MESH_TYPES = list(MESH_EXTENSIONS)
CLIP_TYPES = list(CLIP_EXTENSIONS)
CLIP_KINDS = ("built-in clip", "uploaded file")
USER_ERRORS = (MeshError, ClipError, ValueError, FileNotFoundError, zipfile.BadZipFile, OSError)
DEFAULT_CLIP = "smile"
DEFAULT_HEAT_DIM = "jawOpen"
HEAVY = "heavy"  # the one concurrency group of every event that prepares, parses or decodes

CSS = """
#viewer-frame iframe {width: 100%; height: 620px; border: 1px solid #8884; border-radius: 8px;}
#run-status {min-height: 2em}
"""


def one_line(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def guarded(fn):
    """Bad input -> gr.Error with its one-line message; anything else -> a short internal-error message (the
    traceback goes to the log). The session is left as it was before the call."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as e:
            raise gr.Error(one_line(e)) from None
        except Exception as e:  # noqa: BLE001 - the app must keep serving
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error(f"internal error ({type(e).__name__}): {one_line(e)}") from None

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
    def target_markdown(self, s: Session) -> str:
        lines, warnings = s.target_report()
        if not lines:
            return "*No target yet: upload a mesh or pick a demo.*"
        return _bullets(lines, warnings)

    def clip_markdown(self, s: Session) -> str:
        lines = s.clip_report()
        return _bullets(lines) if lines else "*No clip loaded.*"

    def _clip_spec(self, kind: str, builtin: str | None, file) -> tuple[str, str]:
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
        demos = demo_targets()
        clips = builtin_clips()
        default_clip = DEFAULT_CLIP if DEFAULT_CLIP in clips else (clips[0] if clips else None)
        frames_note = f" Clips are cut to {self.max_frames} frames (--max-frames)." if self.max_frames else ""

        with gr.Blocks(title="Neural Face Skinning", delete_cache=(1800, 3600)) as demo:
            state = gr.State(None, delete_callback=lambda s: s.close() if isinstance(s, Session) else None)
            gr.Markdown("## Neural Face Skinning — expression cloning onto any face mesh\n"
                        "Upload a face mesh (any topology, units or orientation), choose a source expression clip, "
                        "press **Retarget & export**. The viewer shows the source (left) and your mesh (right); "
                        "colour it by the network's predicted skinning regions or one code dimension's weights."
                        + frames_note)
            with gr.Row(equal_height=False):
                with gr.Column(scale=4, min_width=420):
                    with gr.Tab("1 · Target"):
                        target_file = gr.File(label=f"Upload a face mesh: OBJ, PLY, STL, GLB or OFF (max "
                                              f"{MAX_UPLOAD_MB} MB)", file_types=MESH_TYPES, type="filepath",
                                              elem_id="target-upload")
                        demo_pick = gr.Radio(list(demos), label="…or a bundled demo target", value=None,
                                             info=" · ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()
                                                             if k in demos),
                                             elem_id="demo-targets")
                        target_info = gr.Markdown("*No target yet: upload a mesh or pick a demo.*",
                                                  elem_id="target-info")
                        with gr.Accordion("Manual alignment override", open=False):
                            gr.Markdown("If the mesh sits wrongly on the blue ICT template in the viewer: say which "
                                        "axis of *your file* points up, turn it around, or rescale it.")
                            with gr.Row():
                                up_axis = gr.Dropdown(list(UP_AXES), value="auto", label="up axis of the mesh")
                                flip = gr.Checkbox(False, label="flip facing (turn 180°)")
                                scale = gr.Number(1.0, label="scale factor", minimum=0.01, maximum=100)
                            align_btn = gr.Button("Apply alignment", elem_id="align-btn")
                    with gr.Tab("2 · Source"):
                        clip_kind = gr.Radio(list(CLIP_KINDS), value=CLIP_KINDS[0], label="source")
                        clip_pick = gr.Dropdown(clips, value=default_clip, label="built-in clip",
                                                elem_id="clip-pick")
                        clip_file = gr.File(label="…or upload: Live Link Face CSV, ICT-weights CSV, OBJ-sequence "
                                            "zip, Multiface tracked_mesh zip or .npz", file_types=CLIP_TYPES,
                                            type="filepath", elem_id="clip-upload")
                        with gr.Row():
                            smoothing = gr.Slider(0, 10, value=0, step=0.5, label="temporal smoothing σ (frames)")
                            gain = gr.Slider(0, 1.5, value=1.0, step=0.05, label="expression gain")
                        correction = gr.Checkbox(value=True, label="network correction (off: the fitted template "
                                                 "prior alone; see README, Results)", elem_id="correction")
                        clip_info = gr.Markdown("*No clip loaded.*", elem_id="clip-info")
                    with gr.Tab("3 · Edit"):
                        gr.Markdown("Offsets added to the clip's FACS weights. *current frame* edits the viewer's "
                                    "frame (eased over ±0.25 s); the viewer updates at once through the baked "
                                    "linear rig, and **Retarget & export** puts the edits into the files.")
                        with gr.Row():
                            scope = gr.Radio(list(SCOPES), value=SCOPES[0], label="edit applies to")
                            grab_btn = gr.Button("Load sliders at the viewer's frame", size="sm")
                            reset_btn = gr.Button("Reset all edits", size="sm")
                        edit_status = gr.Markdown("no edits", elem_id="edit-status")
                        sliders = {}
                        for group, names in facs_groups().items():
                            with gr.Accordion(f"{group} ({len(names)})", open=group == "mouth"):
                                with gr.Row():
                                    for name in names:
                                        sliders[name] = gr.Slider(*SLIDER_RANGE, value=0.0, step=0.01, label=name,
                                                                  min_width=150)
                        slider_list = [sliders[n] for n in EXPRESSION_NAMES]
                    with gr.Tab("About"):
                        gr.Markdown("\n".join(f"- {line}" for line in about.device_lines(self.registry.device)))
                        gr.Markdown(about.model_card_markdown(self.card, self.model_dir, self.untrained))
                        gr.Markdown("**Predicted skinning regions** (colours in the viewer):")
                        gr.HTML(about.region_legend_html())
                        session_md = gr.Markdown("")
                        gr.Markdown("Sessions: every browser tab has its own target, clip, results, temp folder and "
                                    "its own viser viewer server (own port); they are removed when the tab closes "
                                    "(API clients: after an hour idle). Uploading the same mesh again reuses its "
                                    "cached preparation (shown as *reused*).")
                    with gr.Row():
                        export_pick = gr.CheckboxGroup(
                            [("OBJ sequence (zip)", "obj_zip"), ("animated GLB", "glb"), ("baked rig GLB", "rig")],
                            value=list(FILE_EXPORTS), label="files to write", elem_id="export-pick")
                        preview_pick = gr.Radio(list(PREVIEW_CHOICES), value="auto", elem_id="preview-pick",
                                                label=f"MP4 preview (auto: only for takes up to "
                                                      f"{PREVIEW_DEFAULT_MAX_FRAMES} frames; it renders ~10-20 "
                                                      f"frames/s)")
                        fps_pick = gr.Number(0, label="frame rate (0: keep the source's own)", minimum=0,
                                             maximum=240, elem_id="fps-pick")
                    run_btn = gr.Button("Retarget & export", variant="primary", elem_id="run-btn")
                    run_status = gr.Markdown("", elem_id="run-status")
                    with gr.Row():
                        f_obj = gr.File(label="OBJ sequence (zip)", interactive=False, elem_id="file-obj")
                        f_glb = gr.File(label="animated GLB", interactive=False, elem_id="file-glb")
                    with gr.Row():
                        f_rig = gr.File(label="baked rig GLB (53 shapes)", interactive=False, elem_id="file-rig")
                        f_mp4 = gr.File(label="preview MP4", interactive=False, elem_id="file-mp4")
                with gr.Column(scale=7, min_width=560):
                    viewer = gr.HTML(viewer_html(""), elem_id="viewer")
                    with gr.Row():
                        mode = gr.Radio(list(MODES), value=MODES[0], label="colours", elem_id="display-mode")
                        code_dim = gr.Dropdown([(f"{i}: {n}", i) for i, n in enumerate(self.code_names())],
                                               value=EXPRESSION_NAMES.index(DEFAULT_HEAT_DIM),
                                               label="code dimension for the heat map")
                        show_template = gr.Checkbox(False, label="ICT template overlay")
                    legend = gr.HTML(about.region_legend_html(), elem_id="legend")

            # ---------------------------------------------------------------------------------- page life
            @guarded
            def on_load(st, clip_name, request: gr.Request):
                s = self.session(st, request)
                if s.clip is None and clip_name:
                    s.set_clip(clip_name, f"builtin:{clip_name}")
                return s, viewer_html(s.viewer_url()), self.session_markdown(s), self.clip_markdown(s)

            demo.load(on_load, [state, clip_pick], [state, viewer, session_md, clip_info], api_visibility="private",
                      concurrency_limit=None)

            def on_unload(request: gr.Request):
                self.registry.close(request.session_hash)

            demo.unload(on_unload)

            # ---------------------------------------------------------------------------------- target
            @guarded
            def on_upload(st, path, request: gr.Request, progress=gr.Progress()):
                if not path:
                    raise ValueError("no file received")
                s = self.session(st, request)
                s.load_target(path, lambda f, m: progress(f, desc=m))
                self._warn_low_confidence(s)
                return s, self.target_markdown(s), viewer_html(s.viewer_url()), "auto", False, 1.0, True

            target_outputs = [state, target_info, viewer, up_axis, flip, scale, show_template]
            target_file.upload(on_upload, [state, target_file], target_outputs, api_name="upload_target",
                               concurrency_id=HEAVY)

            @guarded
            def on_demo(st, name, request: gr.Request, progress=gr.Progress()):
                if not name:
                    raise ValueError("choose a demo target")
                s = self.session(st, request)
                s.load_target(demo_target_path(name), lambda f, m: progress(f, desc=m))
                self._warn_low_confidence(s)
                return s, self.target_markdown(s), viewer_html(s.viewer_url()), "auto", False, 1.0, True

            demo_pick.input(on_demo, [state, demo_pick], target_outputs, api_name="load_demo_target",
                            concurrency_id=HEAVY)

            @guarded
            def on_align(st, up, flp, sc, request: gr.Request, progress=gr.Progress()):
                s = self.session(st, request)
                s.override_alignment(up, bool(flp), float(sc if sc is not None else 1.0),
                                     lambda f, m: progress(f, desc=m))
                self._warn_low_confidence(s)
                return s, self.target_markdown(s)

            align_btn.click(on_align, [state, up_axis, flip, scale], [state, target_info],
                            api_name="override_alignment", concurrency_id=HEAVY)

            # ---------------------------------------------------------------------------------- source
            @guarded
            def on_clip(st, kind, builtin, file, request: gr.Request):
                s = self.session(st, request)
                spec, key = self._clip_spec(kind, builtin, file)
                s.set_clip(spec, key)
                return s, self.clip_markdown(s)

            clip_kind.input(on_clip, [state, clip_kind, clip_pick, clip_file], [state, clip_info],
                            api_visibility="private")

            @guarded
            def on_builtin_clip(st, builtin, request: gr.Request):
                s = self.session(st, request)
                spec, key = self._clip_spec(CLIP_KINDS[0], builtin, None)
                s.set_clip(spec, key)
                return s, self.clip_markdown(s), CLIP_KINDS[0]

            clip_pick.input(on_builtin_clip, [state, clip_pick], [state, clip_info, clip_kind], api_name="set_clip")

            @guarded
            def on_clip_file(st, file, request: gr.Request, progress=gr.Progress()):
                s = self.session(st, request)
                progress(0.1, desc="reading the clip")
                spec, key = self._clip_spec(CLIP_KINDS[1], None, file)
                s.set_clip(spec, key)
                return s, self.clip_markdown(s), CLIP_KINDS[1]

            clip_file.upload(on_clip_file, [state, clip_file], [state, clip_info, clip_kind], api_name="set_clip_file",
                             concurrency_id=HEAVY)

            # ---------------------------------------------------------------------------------- run
            @guarded
            def on_run(st, kind, builtin, file, sm, gn, corr=True, files_wanted=FILE_EXPORTS, preview="auto",
                       fps=0, request: gr.Request = None, progress=gr.Progress()):
                s = self.session(st, request)
                spec, key = self._clip_spec(kind, builtin, file)
                progress(0.0, desc="loading the clip")
                s.set_clip(spec, key)
                r = s.run(float(sm), float(gn), lambda f, m: progress(f, desc=m), correction=corr is not False,
                          exports=tuple(files_wanted or ()), preview=preview or "auto", fps=float(fps or 0) or None)
                files = [str(r.exports[k]) if k in r.exports else None for k in ("obj_zip", "glb", "rig", "mp4")]
                return (s, _bullets(s.result_report()), *files, viewer_html(s.viewer_url()),
                        self.target_markdown(s), self.clip_markdown(s), False)

            run_btn.click(on_run, [state, clip_kind, clip_pick, clip_file, smoothing, gain, correction, export_pick,
                                   preview_pick, fps_pick],
                          [state, run_status, f_obj, f_glb, f_rig, f_mp4, viewer, target_info, clip_info,
                           show_template],
                          api_name="run", concurrency_id=HEAVY)

            # ---------------------------------------------------------------------------------- edits
            @guarded
            def on_slider(st, sc, *values):
                if not isinstance(st, Session) or st.closed:
                    raise ValueError("this page's session has ended: reload the page")
                st.touch()
                frame = st.apply_edit(sc, np.asarray(values, np.float32))
                s = st
                return self.edit_markdown(s, sc, frame)

            gr.on([sl.release for sl in slider_list] + [sl.input for sl in slider_list], on_slider,
                  [state, scope, *slider_list], edit_status, trigger_mode="always_last", concurrency_limit=None,
                  show_progress="minimal", api_visibility="private")

            @guarded
            def on_grab(st, sc, request: gr.Request):
                s = self.session(st, request)
                v = s.viewer
                if v is not None:
                    v.play(False)
                frame = s.current_frame()
                values = s.edits.values(sc, frame)
                return (self.edit_markdown(s, sc, frame), *[float(x) for x in values])

            for trigger in (scope.change, grab_btn.click):
                trigger(on_grab, [state, scope], [edit_status, *slider_list], concurrency_limit=None,
                        api_visibility="private")

            @guarded
            def on_reset(st, request: gr.Request):
                s = self.session(st, request)
                s.reset_edits()
                return ("no edits", *[0.0] * len(slider_list))

            reset_btn.click(on_reset, [state], [edit_status, *slider_list], concurrency_limit=None,
                            api_name="reset_edits")

            # ---------------------------------------------------------------------------------- display
            @guarded
            def on_display(st, md, dim, tmpl, request: gr.Request):
                s = self.session(st, request)
                v = s.viewer
                if v is not None:
                    v.set_display(mode=md, code_dim=int(dim if dim is not None else 0), show_template=bool(tmpl))
                if md == MODES[2]:
                    names = self.code_names()
                    name = names[int(dim)] if dim is not None and 0 <= int(dim) < len(names) else ""
                    return about.heat_legend_html(name, v.heat_peak if v is not None else None)
                return about.region_legend_html()

            for trigger in (mode.input, code_dim.input, show_template.input):
                trigger(on_display, [state, mode, code_dim, show_template], legend, concurrency_limit=None,
                        api_visibility="private")

            # ---------------------------------------------------------------------------------- API only
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
        return demo

    # ------------------------------------------------------------------------------------------ text
    def code_names(self) -> list[str]:
        """Names of the expression code's dimensions: the 53 ICT FACS shapes, then the free dimensions."""
        n = getattr(getattr(self.registry.model, "cfg", None), "code_dim", len(EXPRESSION_NAMES))
        return list(EXPRESSION_NAMES) + [f"free_{j}" for j in range(n - len(EXPRESSION_NAMES))]

    def edit_markdown(self, s: Session, scope: str, frame: int) -> str:
        where = f"frame {frame}" if scope == SCOPES[1] else "the whole clip"
        return f"editing {where} · {s.edits.describe()}" + (
            " · press **Retarget & export** to put them in the files" if s.edits.active else "")

    def session_markdown(self, s: Session) -> str:
        return f"This session's viewer: {s.viewer_url() or 'none'} · session temp folder `{s.dir}`"
