"""Frames of a face video (MP4 / WebM / MOV / AVI / MKV through imageio-ffmpeg) or of a folder of images."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np

from nfs.io.registry import VIDEO_EXTENSIONS as VIDEO_SUFFIXES
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_IMAGE_FPS = 30.0
MAX_FPS = 240.0


class VideoError(ValueError):
    """A video could not be read; the message is one line and names the file."""


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def image_files(folder: Path) -> list[Path]:
    """Image files of a folder in natural order of their names."""
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: _natural_key(p.name))


def is_video_source(path) -> bool:
    """True for a video file by suffix, or a folder holding images and no OBJ frames."""
    path = Path(path)
    if path.is_dir():
        return bool(image_files(path)) and not any(p.suffix.lower() == ".obj" for p in path.iterdir())
    return path.suffix.lower() in VIDEO_SUFFIXES


def video_info(path) -> tuple[float, int | None, tuple[int, int]]:
    """(fps, frame count or None when unknown, (width, height)) of a video file or an image folder."""
    path = Path(path)
    if path.is_dir():
        files = image_files(path)
        if not files:
            raise VideoError(f"{path.name}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        from PIL import Image
        with Image.open(files[0]) as im:
            return DEFAULT_IMAGE_FPS, len(files), im.size
    meta, frames = _open(path)
    frames.close()
    return _fps(meta), _count(meta), tuple(meta["size"])


def _open(path: Path):
    import imageio_ffmpeg

    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path.name}: the file is empty (0 bytes; a recording that captured nothing?)")
    try:
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = gen.__next__()
    except (RuntimeError, OSError, StopIteration) as e:
        msg = str(e).strip().splitlines()
        raise VideoError(f"{path.name}: not a readable video ({msg[-1][:120] if msg else 'ffmpeg failed'})") from None
    if not meta.get("size") or meta["size"][0] <= 0:
        raise VideoError(f"{path.name}: the file has no video stream")
    return meta, gen


def _fps(meta) -> float:
    fps = float(meta.get("fps") or 0.0)
    return fps if 0.0 < fps <= MAX_FPS else 0.0


def _count(meta) -> int | None:
    n = meta.get("nframes")
    duration, fps = meta.get("duration"), _fps(meta)
    if isinstance(n, (int, float)) and np.isfinite(n) and 0 < n < 1e9:
        return int(n)
    if duration and fps:
        return int(round(float(duration) * fps))
    return None


STANDARD_RATES = (15.0, 24.0, 25.0, 30.0, 48.0, 50.0, 60.0)


def measured_fps(path) -> float:
    """Frames per second of a video that reports none (browser MediaRecorder WebM: timestamps but no rate): its
    frame count over its duration, snapped to a standard rate within 3 %; 0.0 when it cannot be measured."""
    import imageio_ffmpeg
    try:
        n, secs = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (RuntimeError, OSError, ValueError):
        return 0.0
    if n < 2 or not secs or secs <= 0:
        return 0.0
    rate = n / secs
    rate = next((r for r in STANDARD_RATES if abs(rate - r) <= 0.03 * r), round(rate, 2))
    return rate if 1.0 <= rate <= MAX_FPS else 0.0


def lacks_duration(path) -> bool:
    """True for a video file whose container states no duration (a browser MediaRecorder WebM)."""
    path = Path(path)
    if path.is_dir():
        return False
    meta, gen = _open(path)
    gen.close()
    d = meta.get("duration")
    return not (isinstance(d, (int, float)) and np.isfinite(d) and d > 0)


def remux_with_duration(path, out) -> Path | None:
    """Copy a video's streams into a new file of the same container (no re-encoding), which writes the duration
    and index that browser recordings lack (their players show no length); None when ffmpeg refuses."""
    import subprocess

    import imageio_ffmpeg
    out = Path(out)
    tmp = out.with_name(out.stem + ".part" + out.suffix)
    try:
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(path), "-c", "copy",
                        str(tmp)], check=True, capture_output=True, timeout=120)
        tmp.replace(out)                       # whole or nothing: never a half-written file under the name
        return out
    except (subprocess.SubprocessError, OSError):
        tmp.unlink(missing_ok=True)
        return None


def read_frames(path, max_frames: int) -> tuple[Iterator[np.ndarray], float, list[str]]:
    """An iterator of (H, W, 3) uint8 frames, the frame rate and warnings. A video's own rate is kept; one that
    reports none (some browser recordings) is resampled by ffmpeg to 30 frames/s, with a warning. At most
    `max_frames` frames are read (more is an error, raised while iterating)."""
    path = Path(path)
    warnings: list[str] = []
    if path.is_dir():
        files = image_files(path)
        if not files:
            raise VideoError(f"{path.name}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        if len(files) > max_frames:
            raise VideoError(f"{path.name}: {len(files)} images is more than the limit of {max_frames} frames")

        def images():
            from PIL import Image, UnidentifiedImageError
            for f in files:
                try:
                    with Image.open(f) as im:
                        yield np.asarray(im.convert("RGB"))
                except (UnidentifiedImageError, OSError):
                    raise VideoError(f"{path.name}/{f.name}: not a readable image") from None

        return images(), DEFAULT_IMAGE_FPS, warnings
    meta, gen = _open(path)
    fps = _fps(meta)
    if fps == 0.0:
        import imageio_ffmpeg
        gen.close()
        fps = measured_fps(path)
        if fps:
            warnings.append(f"the video reports no frame rate (a browser recording?); measured {fps:g} frames/s "
                            "from its frames and duration")
        else:
            fps = DEFAULT_IMAGE_FPS
            warnings.append(f"the video reports no usable frame rate; resampled to {fps:g} frames/s")
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24", output_params=["-r", f"{fps:g}"])
        meta = gen.__next__()
    w, h = meta["size"]

    def frames():
        n = 0
        try:
            for raw in gen:
                n += 1
                if n > max_frames:
                    raise VideoError(f"{path.name}: more than the limit of {max_frames} frames")
                yield np.frombuffer(raw, np.uint8).reshape(h, w, 3)
        finally:
            gen.close()

    return frames(), fps, warnings
