"""The Video source tab: upload a face video or record one with the webcam; it is read by MediaPipe's Face
Landmarker v2 (52 ARKit scores, mapped to ICT weights, and the head pose) with progress, calibrated to the person
(neutral frame, dead zone, per-shape gains) and becomes the session's source clip ("video" in the Source tab).

Beside the video, a plot of the main shapes over time with the chosen frame marked. Frames without a usable face
are reported by number and bridged; a video without any face is a clear error. A browser recording (no duration in
its file) is given back to the player remuxed with its duration, and its frame rate is measured. The live webcam
(`nfs.video.live`, in an accordion of this tab) drives the target as it happens and records takes.
"""
from __future__ import annotations

import time
from pathlib import Path

import gradio as gr
import numpy as np

from nfs.io import VIDEO_EXTENSIONS as VIDEO_SUFFIXES

VIDEO_KIND = "video (Video tab)"
MAX_VIDEO_MB = 200
STREAM_EVERY_S = 1 / 30          # how often the browser sends a live webcam frame
PLOTTED = (("jawOpen", ("jawOpen",)), ("eyeBlink_L", ("eyeBlink_L",)), ("eyeBlink_R", ("eyeBlink_R",)),
           ("mouthSmile_L", ("mouthSmile_L",)), ("mouthSmile_R", ("mouthSmile_R",)),
           ("browInnerUp", ("browInnerUp_L", "browInnerUp_R")), ("browDown", ("browDown_L", "browDown_R")),
           ("mouthFunnel", ("mouthFunnel",)), ("eyeLookOut_L", ("eyeLookOut_L",)), ("eyeLookUp", ("eyeLookUp_L",
                                                                                                 "eyeLookUp_R")))


def session_video_spec(session) -> tuple[None, str]:
    """(spec, key) of the session's video for `Session.set_clip` (the clip is kept in the session)."""
    if session is None or session.video_clip is None:
        raise ValueError("no video yet: upload one or record with the webcam in the Video tab")
    return None, session.video_key


def calibration_from_fields(neutral_frame, subtract=True, dead_zone=0.0, gains_text=""):
    from nfs.pipeline import video_calibration
    neutral = None if neutral_frame is None or int(neutral_frame) < 0 else int(neutral_frame)
    # unknown gain names are refused before the video is read
    return video_calibration(neutral, bool(subtract), float(dead_zone or 0.0), gains_text or "")


def load_video_into_session(session, path, neutral_frame, head_pose: bool, progress=None, subtract=True,
                            dead_zone=0.0, gains_text=""):
    """Read a video and make it the session's source. Returns the clip."""
    from app.state import check_upload, truncate_clip
    from nfs.pipeline import load_face_video

    if not path:
        raise ValueError("no video received: upload one or record with the webcam")
    path = Path(path)
    check_upload(path, VIDEO_SUFFIXES, MAX_VIDEO_MB, "video")
    cal = calibration_from_fields(neutral_frame, subtract, dead_zone, gains_text)
    clip = load_face_video(path, progress=progress, calibration=cal)
    clip = truncate_clip(clip, session.max_frames)
    key = f"video:{path}:{cal}"
    with session.lock:
        session.video_clip, session.video_key = clip, key
        session.head_pose = bool(head_pose)
    session.use_clip(clip, key)
    return clip


def video_report(clip) -> str:
    fit = clip.fit
    lines = [f"**{clip.name}** — {clip.n_frames} frames at {clip.fps:g} fps ({clip.duration_s:.1f} s), "
             f"{clip.frame_size[0]}×{clip.frame_size[1]}",
             f"neutral frame: {fit.neutral_frame}; read in {clip.timings.get('track', 0):.1f} s "
             f"(Face Landmarker v2: 478 landmarks, 52 ARKit scores, head pose)"]
    lines += [f"⚠ **{w}**" for w in clip.warnings]
    return "\n".join(f"- {line}" for line in lines)


def weights_plot(clip, frame: int = 0):
    """A matplotlib figure of the main shapes over the clip's time, the frame `frame` marked."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from nfs.pipeline import EXPRESSION_NAMES
    fig = Figure(figsize=(6.4, 3.2), dpi=100)
    ax = fig.add_subplot(111)
    t = np.arange(clip.n_frames) / clip.fps
    for label, names in PLOTTED:
        curve = clip.codes[:, [EXPRESSION_NAMES.index(n) for n in names]].mean(1)
        if curve.max() > 0.02:
            ax.plot(t, curve, label=label, linewidth=1.2)
    f = int(np.clip(frame, 0, clip.n_frames - 1))
    ax.axvline(f / clip.fps, color="k", linewidth=1.0, linestyle="--")
    ax.text(f / clip.fps, 1.02, f" frame {f}", fontsize=8, va="bottom")
    ax.set_xlim(0, max(t[-1], 1e-3))
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("seconds")
    ax.set_ylabel("weight")
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    return fig


def build(app, state, clip_info, clip_kind, guarded) -> None:
    """The Video tab's components and events (inside the page's Blocks and tab group)."""
    with gr.Tab("2b · Video"):
        gr.Markdown("Drive the face from a plain video: your face, frontal, filling a good part of the frame. "
                    "Upload a video (MP4, WebM, MOV) or record one with the webcam; its 52 ARKit blendshape scores "
                    "(MediaPipe Face Landmarker) become the 53 ICT expressions, then **Retarget & export** uses it "
                    "(source: *video*).")
        with gr.Row():
            # audio is kept as it came (the reader ignores it), and with an upload source too Gradio does not mirror
            # recordings: the face keeps its own left and right
            video = gr.Video(sources=["upload", "webcam"], label="face video", elem_id="video-input")
            with gr.Column():
                plot = gr.Plot(label="weights over time", elem_id="video-plot")
                frame_no = gr.Slider(0, 1, value=0, step=1, label="frame", elem_id="video-frame")
        with gr.Row():
            neutral = gr.Number(-1, precision=0, label="neutral frame (-1: automatic)", elem_id="video-neutral")
            head_pose = gr.Checkbox(False, label="the target follows the head's motion", elem_id="video-head-pose")
        with gr.Accordion("calibration to your face", open=False):
            with gr.Row():
                subtract = gr.Checkbox(True, label="take the neutral frame's scores off every frame",
                                       elem_id="video-subtract")
                dead_zone = gr.Slider(0.0, 0.5, value=0.0, step=0.01, label="dead zone (scores below read 0)",
                                      elem_id="video-dead-zone")
            gains = gr.Textbox("", label="per-shape gains (ARKit or ICT names, or a stem for both sides)",
                               placeholder="eyeBlink=1.3, jawOpen=1.2", elem_id="video-gains")
        use_btn = gr.Button("Use this video", elem_id="video-use")
        info = gr.Markdown("*No video yet.*", elem_id="video-info")

        @guarded
        def on_video(session_state, path, neutral_frame, pose, subtract_neutral, dead_zone_value, gain_text,
                     request: gr.Request, progress=gr.Progress()):
            from nfs.pipeline import remux_video_with_duration, video_lacks_duration
            s = app.session(session_state, request)
            clip = load_video_into_session(s, path, neutral_frame, bool(pose), lambda f, m: progress(f, desc=m),
                                           subtract_neutral, dead_zone_value, gain_text)
            for w in clip.warnings:
                gr.Warning(w)
            shown = gr.skip()
            if path and video_lacks_duration(path):          # a browser recording: give the player its length
                fixed = remux_video_with_duration(path, Path(path).with_name(Path(path).stem + "_timed.webm"))
                if fixed is not None:
                    s.video_display_path = str(fixed)
                    shown = str(fixed)
            start = int(clip.fit.neutral_frame)
            return (s, video_report(clip), app.clip_markdown(s), VIDEO_KIND, weights_plot(clip, start),
                    gr.update(maximum=max(clip.n_frames - 1, 1), value=start), shown)

        @guarded
        def on_change(session_state, path, neutral_frame, pose, subtract_neutral, dead_zone_value, gain_text,
                      request: gr.Request, progress=gr.Progress()):
            s = app.session(session_state, request)
            if not path or str(path) == getattr(s, "video_display_path", None):
                # cleared (the session keeps its clip), or the remuxed copy of the recording just read
                return (gr.skip(),) * 7
            return on_video(session_state, path, neutral_frame, pose, subtract_neutral, dead_zone_value, gain_text,
                            request, progress)

        def on_frame(session_state, frame_index, request: gr.Request):
            s = app.session(session_state, request)
            clip = getattr(s, "video_clip", None)
            return gr.skip() if clip is None else weights_plot(clip, int(frame_index or 0))

        inputs = [state, video, neutral, head_pose, subtract, dead_zone, gains]
        outputs = [state, info, clip_info, clip_kind, plot, frame_no, video]
        # `change` fires once the file is on the server, for an upload and for a finished webcam recording alike
        # (`stop_recording` fires before the recording is uploaded)
        video.change(on_change, inputs, outputs, api_name="set_video", concurrency_id="heavy")
        use_btn.click(on_video, inputs, outputs, api_visibility="private", concurrency_id="heavy")
        frame_no.release(on_frame, [state, frame_no], [plot], api_name="video_frame_plot")
        build_live(app, state, clip_info, clip_kind, guarded, info, plot, frame_no)


def live_chain(session):
    """The session's live chain (`nfs.video.live.LiveChain`), made on first use (its models load once per session)."""
    from nfs.pipeline import live_chain as make_chain
    with session.lock:
        chain = getattr(session, "live_chain", None)
        if chain is None:
            chain = session.live_chain = make_chain()
        return chain


def live_content(chain, target_title: str | None, target_faces: np.ndarray | None):
    """A one-frame ViewContent whose frame functions return the chain's latest vertices."""
    from app.viewer import SourceView, TargetView, ViewContent
    from nfs.pipeline import template_skin
    neutral, faces = template_skin()
    source = SourceView(title="live: webcam (ICT face)", faces=np.asarray(faces),
                        frame=lambda i: chain.source_vertices if chain.source_vertices is not None else neutral)
    target = None
    if target_faces is not None:
        target = TargetView(title=f"live: {target_title}", faces=target_faces,
                            frame=lambda i: chain.target_vertices if chain.target_vertices is not None
                            else chain._rig[2].apply(chain._rig[0].astype(np.float64)))
    return ViewContent(n_frames=1, fps=30.0, source=source, target=target, caption="live webcam")



def live_stats_markdown(session) -> str:
    chain = getattr(session, "live_chain", None)
    if chain is None:
        return "*Live: not started.*"
    stats = chain.stats()
    rec = f" · recording: {stats.take_frames} frames" if stats.recording else ""
    yaw, pitch = stats.head_yaw_pitch
    now = (f" · now: jawOpen {stats.jaw_open:.2f}, eyeBlink {stats.blinks[0]:.2f}/{stats.blinks[1]:.2f}, "
           f"head yaw {yaw:.0f}°, pitch {pitch:.0f}°, target moved {stats.target_moved_mm:.1f} mm")
    return (f"Live: {stats.frames} frames, **{stats.fps:.1f} frames/s** drawn, {stats.latency_ms:.0f} ms from a "
            f"frame's arrival to the viewer (reading {stats.read_ms:.0f} ms, rig {stats.rig_ms:.1f} ms, drawing "
            f"{stats.draw_ms:.1f} ms)"
            f"{'' if not stats.no_face else f' · no face in {stats.no_face} frames'}{now}{rec}")


def build_live(app, state, clip_info, clip_kind, guarded, info, plot, frame_no) -> None:
    """Live webcam puppeteering (`nfs.video.live`): the target follows the face in the viewer as it happens."""

    with gr.Accordion("Live webcam: the target follows your face as it happens", open=False):
        gr.Markdown("Start the webcam below; the viewer shows the ICT face and your target driven by your face. "
                    "The first frame with a face is the neutral: **Set neutral** again while you relax. "
                    "**Record** keeps the live readings; **Stop and use the take** turns them into the video clip "
                    "(sliders and exports as usual).")
        cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="live webcam",
                       webcam_options=gr.WebcamOptions(mirror=False), elem_id="live-cam")
        with gr.Row():
            neutral_btn = gr.Button("Set neutral", elem_id="live-neutral")
            record_btn = gr.Button("Record", elem_id="live-record")
            stop_btn = gr.Button("Stop and use the take", elem_id="live-stop")
        stats = gr.Markdown("*Live: not started.*", elem_id="live-stats")
        timer = gr.Timer(1.0)

        @guarded
        def on_frame(session_state, frame, request: gr.Request):
            if frame is None:
                return
            s = app.session(session_state, request)
            chain = live_chain(s)
            viewer = s.viewer
            key = (s.target.key if s.target is not None else None)
            if getattr(chain, "shown_for", "unset") != key or getattr(chain, "viewer", None) is not viewer:
                if s.target is not None:
                    neutral, deltas = s.ensure_rig()
                    chain.set_target(neutral, deltas, s.target.alignment)
                else:
                    chain.set_target(None, None, None)
                chain.shown_for, chain.viewer = key, viewer
                if viewer is not None:
                    viewer.show(live_content(chain, s.target.name if s.target is not None else None,
                                             s.target.raw.faces if s.target is not None else None))
            chain.process(np.asarray(frame)[..., :3], draw=viewer.refresh if viewer is not None else None)

        @guarded
        def on_neutral(session_state, request: gr.Request):
            live_chain(app.session(session_state, request)).reset_neutral()
            return "*Neutral: the next frame with a face.*"

        @guarded
        def on_record(session_state, request: gr.Request):
            s = app.session(session_state, request)
            live_chain(s).start_recording()
            return live_stats_markdown(s)

        @guarded
        def on_stop(session_state, request: gr.Request):
            s = app.session(session_state, request)
            clip = live_chain(s).stop_recording()
            key = f"live:{time.time():.3f}"
            with s.lock:
                s.video_clip, s.video_key = clip, key
            s.use_clip(clip, key)
            start = int(clip.fit.neutral_frame)
            return (s, video_report(clip), app.clip_markdown(s), VIDEO_KIND, weights_plot(clip, start),
                    gr.update(maximum=max(clip.n_frames - 1, 1), value=start))

        def on_tick(session_state, request: gr.Request):
            return live_stats_markdown(app.session(session_state, request))

        cam.stream(on_frame, [state, cam], [], stream_every=STREAM_EVERY_S, concurrency_limit=1,
                   show_progress="hidden", api_name="live_frame")
        neutral_btn.click(on_neutral, [state], [stats], api_name="live_neutral")
        record_btn.click(on_record, [state], [stats], api_name="live_record")
        stop_btn.click(on_stop, [state], [state, info, clip_info, clip_kind, plot, frame_no], api_name="live_stop")
        timer.tick(on_tick, [state], [stats], show_progress="hidden")
