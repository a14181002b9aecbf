"""Clip loading with the video source's options, for the command line."""
from __future__ import annotations

from pathlib import Path

from nfs.clips import MAX_FRAMES, Clip, ClipError
from nfs.io import load_clip, load_face_video
from nfs.video.reader import is_video_source


def load_clip_with_video_options(spec, neutral_frame: int | None = None, progress=None,
                                 max_frames: int = MAX_FRAMES) -> Clip:
    """`nfs.io.load_clip`, except that a face video gets the neutral frame option and a progress callback."""
    path = Path(str(spec))
    if path.exists() and is_video_source(path):
        return load_face_video(path, neutral_frame, max_frames=max_frames, progress=progress)
    if neutral_frame is not None:
        raise ClipError(f"{path.name}: --neutral-frame applies to video clips only")
    return load_clip(spec, max_frames=max_frames)
