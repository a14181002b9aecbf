"""The Video source tab: upload a face video or record one with the webcam; it is read by MediaPipe's Face
Landmarker v2 (52 ARKit scores, mapped to ICT weights, and the head pose) with progress, and becomes the session's source clip ("video" in the Source tab).

Frames without a face are reported by number and bridged; a video without any face is a clear error. The viewer
draws the tracked landmarks beside the source and target heads.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from nfs.io import VIDEO_EXTENSIONS as VIDEO_SUFFIXES
from nfs.pipeline import load_face_video

VIDEO_KIND = "video (Video tab)"
MAX_VIDEO_MB = 200


def session_video_spec(session) -> tuple[None, str]:
    """(spec, key) of the session's video for `Session.set_clip` (the clip is kept in the session)."""
    if session is None or session.video_clip is None:
        raise ValueError("no video yet: upload one or record with the webcam in the Video tab")
    return None, session.video_key


def load_video_into_session(session, path, neutral_frame, head_pose: bool, progress=None):
    """Track and fit a video and make it the session's source. Returns the clip."""
    from app.session import check_upload, truncate_clip

    if not path:
        raise ValueError("no video received: upload one or record with the webcam")
    path = Path(path)
    check_upload(path, VIDEO_SUFFIXES, MAX_VIDEO_MB, "video")
    neutral = None if neutral_frame is None or int(neutral_frame) < 0 else int(neutral_frame)
    clip = load_face_video(path, neutral, progress=progress)
    clip = truncate_clip(clip, session.max_frames)
    key = f"video:{path}:{neutral}"
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


def build(app, state, clip_info, clip_kind, guarded) -> None:
    """The Video tab's components and events (inside the page's Blocks and tab group)."""
    with gr.Tab("2b · Video"):
        gr.Markdown("Drive the face from a plain video: your face, frontal, filling a good part of the frame. "
                    "Upload a video (MP4, WebM, MOV) or record one with the webcam; its 52 ARKit blendshape scores "
                    "(MediaPipe Face Landmarker) become the 53 ICT expressions, then **Retarget & export** uses it (source: *video*).")
        # audio is kept as it came (dropping it would need a system ffmpeg; the reader ignores it anyway), and with
        # an upload source too Gradio does not mirror recordings: the face keeps its own left and right
        video = gr.Video(sources=["upload", "webcam"], label="face video", elem_id="video-input")
        with gr.Row():
            neutral = gr.Number(-1, precision=0, label="neutral frame (-1: automatic)", elem_id="video-neutral")
            head_pose = gr.Checkbox(False, label="the target follows the head's motion", elem_id="video-head-pose")
        use_btn = gr.Button("Use this video", elem_id="video-use")
        info = gr.Markdown("*No video yet.*", elem_id="video-info")

        @guarded
        def on_video(st, path, neutral_frame, pose, request: gr.Request, progress=gr.Progress()):
            s = app.session(st, request)
            clip = load_video_into_session(s, path, neutral_frame, bool(pose), lambda f, m: progress(f, desc=m))
            for w in clip.warnings:
                gr.Warning(w)
            return s, video_report(clip), app.clip_markdown(s), VIDEO_KIND

        @guarded
        def on_change(st, path, neutral_frame, pose, request: gr.Request, progress=gr.Progress()):
            if not path:                    # the video was cleared: keep the session's clip as it is
                return gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return on_video(st, path, neutral_frame, pose, request, progress)

        outputs = [state, info, clip_info, clip_kind]
        # `change` fires once the file is on the server, for an upload and for a finished webcam recording alike
        # (`stop_recording` fires before the recording is uploaded)
        video.change(on_change, [state, video, neutral, head_pose], outputs, api_name="set_video",
                     concurrency_id="heavy")
        use_btn.click(on_video, [state, video, neutral, head_pose], outputs, api_visibility="private",
                      concurrency_id="heavy")
