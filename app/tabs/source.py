"""Tab 2 · Source: a built-in clip or an uploaded take (Live Link Face CSV, OBJ-sequence zip, Multiface zip, .npz),
with smoothing, gain and the network correction; the frame-rate field goes back to the clip's own rate with each
new clip."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from nfs.io import CLIP_EXTENSIONS

from app.controls import option_checkbox, option_slider
from app.demo_assets import builtin_clips
from app.tabs import video
from app.tabs.common import HEAVY, guarded

CLIP_TYPES = list(CLIP_EXTENSIONS)
CLIP_KINDS = ("built-in clip", "uploaded file", video.VIDEO_KIND)
DEFAULT_CLIP = "smile"


def clip_spec(kind: str, builtin: str | None, file, session=None) -> tuple[str, str]:
    """(what `Session.set_clip` loads, the clip's key) of the chosen source."""
    if kind == CLIP_KINDS[2]:
        return video.session_video_spec(session)
    if kind == CLIP_KINDS[1]:
        if not file:
            raise ValueError("upload a clip file first (CSV, OBJ-sequence zip, Multiface zip or .npz)")
        path = Path(file if isinstance(file, str) else file.name)
        return str(path), f"file:{path}"
    if not builtin:
        raise ValueError("choose a built-in clip")
    return builtin, f"builtin:{builtin}"


def build(app, w) -> None:
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


def wire(app, w) -> None:
    @guarded
    def on_clip(session_state, kind, builtin, file, request: gr.Request):
        session = app.session(session_state, request)
        spec, key = clip_spec(kind, builtin, file, session)
        session.set_clip(spec, key)
        return session, app.clip_markdown(session)

    app.after_change(w, w.clip_kind.input(on_clip, [w.state, w.clip_kind, w.clip_pick, w.clip_file],
                                          [w.state, w.clip_info], api_visibility="private",
                                          show_progress_on=[w.clip_info]))

    @guarded
    def on_builtin_clip(session_state, builtin, request: gr.Request):
        session = app.session(session_state, request)
        spec, key = clip_spec(CLIP_KINDS[0], builtin, None)
        session.set_clip(spec, key)
        return session, app.clip_markdown(session), CLIP_KINDS[0]

    app.after_change(w, w.clip_pick.input(on_builtin_clip, [w.state, w.clip_pick],
                                          [w.state, w.clip_info, w.clip_kind], api_name="set_clip",
                                          show_progress_on=[w.clip_info]))

    @guarded
    def on_clip_file(session_state, file, request: gr.Request, progress=gr.Progress()):
        session = app.session(session_state, request)
        progress(0.1, desc="reading the clip")
        spec, key = clip_spec(CLIP_KINDS[1], None, file)
        session.set_clip(spec, key)
        return session, app.clip_markdown(session), CLIP_KINDS[1]

    app.after_change(w, w.clip_file.upload(on_clip_file, [w.state, w.clip_file],
                                           [w.state, w.clip_info, w.clip_kind], api_name="set_clip_file",
                                           concurrency_id=HEAVY, show_progress_on=[w.clip_info]))


def wire_fps_field(app, w) -> None:
    """The frame-rate field belongs to a clip: any new clip (built-in, file, video) sets it back to 0 (the clip's
    own rate), so a rate chosen for one take is never applied silently to the next."""
    @guarded
    def on_clip_shown(session_state, fps, request: gr.Request):
        session = app.session(session_state, request)
        if session.fps_field_clip_key == session.clip_key:
            return fps
        session.fps_field_clip_key = session.clip_key
        return 0

    w.clip_info.change(on_clip_shown, [w.state, w.fps_pick], [w.fps_pick], api_visibility="private",
                       concurrency_limit=None, show_progress="hidden")
