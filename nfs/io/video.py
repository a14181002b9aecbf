"""Video files: MP4 (libx264, yuv420p) through imageio-ffmpeg, or GIF through Pillow."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

EXTENSIONS = (".mp4", ".gif")


def as_rgb(img) -> np.ndarray:
    """An image (H, W), (H, W, 3) or (H, W, 4), uint8 or float in [0, 1] -> (H, W, 3) uint8 RGB."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        if a.dtype.kind == "f" and a.max(initial=0) <= 1.0:  # float images in [0, 1]
            a = a * 255.0
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"images must be (H, W, 3) RGB, got {a.shape}")
    return np.ascontiguousarray(a[:, :, :3])


def _even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    if h % 2 or w % 2:
        img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return img


def save_video(path, images: Iterable[np.ndarray], fps: float, *, quality: float = 7.0) -> Path:
    """Encode RGB images (H, W, 3) uint8 at `fps`. ``.gif`` paths are written as GIF; otherwise MP4 with
    libx264/yuv420p (odd sizes padded to even). If ffmpeg cannot start, a GIF is written next to `path`
    instead. Returns the path written."""
    path = Path(path)
    images = iter(images)
    first = next(images, None)
    if first is None:
        raise ValueError("no frames for the preview")
    first = _even(first)
    if path.suffix.lower() != ".gif":
        try:
            import imageio_ffmpeg

            writer = imageio_ffmpeg.write_frames(
                str(path), (first.shape[1], first.shape[0]), fps=float(fps), codec="libx264", pix_fmt_in="rgb24",
                pix_fmt_out="yuv420p", quality=quality, macro_block_size=1, ffmpeg_log_level="error")
            writer.send(None)
            writer.send(first.tobytes())
        except (ImportError, RuntimeError, OSError, BrokenPipeError):
            path = path.with_suffix(".gif")
        else:
            try:
                for img in images:
                    img = _even(img)
                    if img.shape != first.shape:
                        raise ValueError(f"image size changed from {first.shape} to {img.shape}")
                    writer.send(img.tobytes())
            finally:
                writer.close()
            return path
    from PIL import Image

    frames = [Image.fromarray(first)]
    for img in images:
        img = _even(img)
        if img.shape != first.shape:
            raise ValueError(f"image size changed from {first.shape} to {img.shape}")
        frames.append(Image.fromarray(img))
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=max(int(round(1000 / fps)), 20), loop=0)
    return path
