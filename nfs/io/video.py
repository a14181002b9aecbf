"""Video files: MP4 (libx264, yuv420p) through imageio-ffmpeg, or GIF through Pillow."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from nfs.io.files import PartialFileWriter, discard, new_partial, publish

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


class VideoWriter(PartialFileWriter):
    """Encodes a video as images arrive (`add`), one at a time: MP4 (libx264, yuv420p, odd sizes padded to even)
    or, for ``.gif`` paths or when ffmpeg cannot start, GIF (kept in memory: short clips). `close` moves the file
    into place (umask permissions) and returns its path; nothing is left behind on error (`abort`, or leaving a
    ``with`` block by an exception)."""

    def __init__(self, path, fps: float, *, quality: float = 7.0, preset: str = "veryfast"):
        if not (np.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be positive, got {fps}")
        self.path, self.fps, self.quality, self.preset = Path(path), float(fps), quality, preset
        self.shape = None
        self.count = 0
        self._ffmpeg = None
        self._gif: list | None = None
        self.tmp: Path | None = None

    def _start(self, first: np.ndarray) -> None:
        self.shape = first.shape
        if self.path.suffix.lower() != ".gif":
            try:
                import imageio_ffmpeg

                self.tmp = new_partial(self.path)
                self._ffmpeg = imageio_ffmpeg.write_frames(
                    str(self.tmp), (first.shape[1], first.shape[0]), fps=self.fps, codec="libx264",
                    pix_fmt_in="rgb24", pix_fmt_out="yuv420p", quality=self.quality, macro_block_size=1,
                    ffmpeg_log_level="error", output_params=["-preset", self.preset, "-f", "mp4"])
                self._ffmpeg.send(None)
                return
            except (ImportError, RuntimeError, OSError, BrokenPipeError):
                self._ffmpeg = None
                discard(self.tmp)
                self.path = self.path.with_suffix(".gif")
        self._gif = []

    def add(self, image) -> None:
        """One RGB image (H, W, 3) (uint8, or float in [0, 1]) or a batch (n, H, W, 3)."""
        a = np.asarray(image)
        for img in (a if a.ndim == 4 else [a]):
            img = _even(as_rgb(img))
            if self.shape is None:
                self._start(img)
            elif img.shape != self.shape:
                raise ValueError(f"image size changed from {self.shape} to {img.shape}")
            if self._ffmpeg is not None:
                self._ffmpeg.send(img.tobytes())
            else:
                self._gif.append(img)
            self.count += 1

    def close(self) -> Path:
        if self.count == 0:
            self.abort()
            raise ValueError("no frames for the preview")
        try:
            if self._ffmpeg is not None:
                self._ffmpeg.close()
                self._ffmpeg = None
                publish(self.tmp, self.path)
            else:
                from PIL import Image

                tmp = self.tmp = new_partial(self.path)
                frames = [Image.fromarray(x) for x in self._gif]
                frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                               duration=max(int(round(1000 / self.fps)), 20), loop=0)
                self._gif = None
                publish(tmp, self.path)
        finally:
            self.abort()
        return self.path

    def abort(self) -> None:
        if self._ffmpeg is not None:
            try:
                self._ffmpeg.close()
            except Exception:  # ffmpeg already gone: the partial file is removed below either way
                pass
            self._ffmpeg = None
        discard(self.tmp)


def save_video(path, images: Iterable[np.ndarray], fps: float, *, quality: float = 7.0) -> Path:
    """Encode RGB images (H, W, 3) uint8 at `fps`, streamed one at a time (`VideoWriter`). ``.gif`` paths are
    written as GIF; otherwise MP4 with libx264/yuv420p (odd sizes padded to even). If ffmpeg cannot start, a GIF
    is written next to `path` instead. Returns the path written."""
    writer = VideoWriter(path, fps, quality=quality)
    with writer:
        for img in images:
            writer.add(img)
    return writer.path
