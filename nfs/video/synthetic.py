"""Face videos rendered from the ICT model with known weights: the honest test input of the video source.

The ICT skin gets a skin tone, red lips, darker brows, white sclera and dark irises, and a dark disc is placed inside
the mouth so an open jaw shows a dark interior instead of the background: enough for MediaPipe to take it for a face.
Rendering is the project's own rasterizer (`nfs.render.render_shaded`), orthographic, frontal.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from nfs.ict import EXPRESSION_NAMES, load_ict
from nfs.regions import REGION_NAMES, ict_region_labels
from nfs.render import VIEW_CENTER, render_shaded

SKIN_RGB = (0.80, 0.60, 0.48)
LIP_RGB = (0.62, 0.30, 0.30)
BROW_RGB = (0.30, 0.20, 0.14)
SCLERA_RGB = (0.92, 0.90, 0.86)
IRIS_RGB = (0.10, 0.07, 0.05)
MOUTH_RGB = (0.08, 0.03, 0.03)
IRIS_DEGREES = 24.0
LASH_RGB = (0.10, 0.07, 0.05)
LASH_WIDTH_CM = 0.2
BACKGROUND_RGB = (70, 88, 110)


@functools.lru_cache(maxsize=1)
def face_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Colours (V + disc, 3) float, faces (F, 3) of skin + eyeballs + mouth disc, the disc vertices (D, 3), and the
    number of model vertices (skin + eyeballs)."""
    ict = load_ict()
    n_model = len(ict.neutral)
    faces = [ict.faces]
    colors = np.tile(np.asarray(SKIN_RGB), (n_model, 1))
    labels = ict_region_labels()
    skin = np.arange(ict.skin_count)
    lip_ids = [REGION_NAMES.index("upper_lip"), REGION_NAMES.index("lower_lip")]
    lips = skin[np.isin(labels, lip_ids)]
    mouth_y = 0.5 * (ict.neutral[skin[labels == lip_ids[0]], 1].min() + ict.neutral[skin[labels == lip_ids[1]], 1].max())
    red = lips[np.abs(ict.neutral[lips, 1] - mouth_y - 0.1) < 0.75]       # the vermilion, not the skin around it
    colors[red] = LIP_RGB
    # brows: the brow regions' upper half, a band that a detector reads as eyebrows
    for side in ("brow_L", "brow_R"):
        idx = skin[labels == REGION_NAMES.index(side)]
        y = ict.neutral[idx, 1]
        colors[idx[y > np.median(y)]] = BROW_RGB
    # lash lines: the upper lids where they lie on the eyeball (their margin), LASH_WIDTH_CM deep
    from scipy.spatial import cKDTree
    near, _ = cKDTree(ict.neutral[ict.skin_count:]).query(ict.neutral[:ict.skin_count])
    upper_lid = np.isin(labels, [REGION_NAMES.index("upper_eyelid_L"), REGION_NAMES.index("upper_eyelid_R")])
    colors[:ict.skin_count][upper_lid & (near < LASH_WIDTH_CM)] = LASH_RGB
    material = np.repeat(ict.poly_material, ict.poly_counts - 2)      # fan triangulation: n - 2 triangles a polygon
    names = ict.material_names
    for mat in ("M_ScleraLeft", "M_ScleraRight"):
        ball = np.unique(ict.faces[material == names.index(mat)])
        colors[ball] = SCLERA_RGB
        out = ict.neutral[ball] - ict.neutral[ball].mean(0)
        front = out[:, 2] / np.linalg.norm(out, axis=1) > np.cos(np.deg2rad(IRIS_DEGREES))
        colors[ball[front]] = IRIS_RGB                      # the sclera shell hides the iris shell: paint it
    # mouth interior: an elliptic disc behind the lips, facing the camera
    centre = np.array([0.0, mouth_y - 0.3, ict.neutral[lips, 2].min() - 0.8])
    ring = np.linspace(0, 2 * np.pi, 33)[:-1]
    disc = np.concatenate([centre[None], centre + np.stack([2.3 * np.cos(ring), 1.2 * np.sin(ring),
                                                           np.zeros_like(ring)], 1)])
    k = np.arange(len(ring))
    disc_faces = np.stack([np.zeros_like(k), 1 + k, 1 + (k + 1) % len(ring)], 1) + n_model
    colors = np.concatenate([colors, np.tile(np.asarray(MOUTH_RGB), (len(disc), 1))])
    return colors, np.concatenate(faces + [disc_faces]), disc, n_model


def yaw_pitch_roll_matrix(yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """(3, 3) head rotation: yaw about +Y, then pitch about +X, then roll about +Z (degrees)."""
    y, p, r = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def turn_eyes(v: np.ndarray, skin_count: int, n_model: int, gaze_deg) -> None:
    """Turn both eyeballs of ICT vertices `v` in place about their centres: gaze (yaw, pitch) degrees, yaw > 0 toward
    the subject's left (+x), pitch > 0 up. ICT's eyeLook shapes move the lids only; this moves the irises."""
    yaw, pitch = np.deg2rad(gaze_deg)
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), np.sin(pitch)], [0, -np.sin(pitch), np.cos(pitch)]])
    rot = ry @ rx
    balls = np.arange(skin_count, n_model)
    for side in (v[balls, 0] > 0, v[balls, 0] <= 0):
        idx = balls[side]
        c = v[idx].mean(0)
        v[idx] = (v[idx] - c) @ rot.T + c


def render_face(weights: np.ndarray | None = None, identity: np.ndarray | None = None, size: int = 480,
                rotation: np.ndarray | None = None, shift_cm=(0.0, 0.0), width: int | None = None,
                gaze_deg=None) -> np.ndarray:
    """(size, width or size, 3) uint8 frontal render of the ICT face with expression `weights` (53,) and optional
    `identity` (100,), the head turned by `rotation` (3, 3) about the view centre and moved by `shift_cm` (x, y), the
    eyes turned by `gaze_deg` (yaw, pitch; see `turn_eyes`)."""
    colors, faces, disc, n_model = face_scene()
    ict = load_ict()
    v = ict.vertices(identity, weights, n_model).astype(np.float64)
    if gaze_deg is not None and np.any(gaze_deg):
        turn_eyes(v, ict.skin_count, n_model, gaze_deg)
    # the disc opens with the jaw: its lower rim follows the chin down
    chin = ict.expression_deltas[EXPRESSION_NAMES.index("jawOpen"), :ict.skin_count, 1].argmin()
    drop = v[chin] - ict.vertices(identity, None, n_model)[chin]
    d = disc.copy()
    d[1:, 1] += np.where(disc[1:, 1] < disc[0, 1], min(drop[1], 0.0), 0.0)   # its lower rim drops with the jaw
    v = np.concatenate([v, d])
    if rotation is not None:
        v = (v - VIEW_CENTER) @ np.asarray(rotation).T + VIEW_CENTER
    v[:, :2] += np.asarray(shift_cm, np.float64)
    img = render_shaded(v, faces, colors=colors, size=size)
    background = (img == 255).all(-1)
    img[background] = BACKGROUND_RGB
    if width is not None and width != size:
        out = np.empty((size, width, 3), np.uint8)
        out[:] = BACKGROUND_RGB
        left = (width - size) // 2
        out[:, max(left, 0):max(left, 0) + min(size, width)] = img[:, max(-left, 0):max(-left, 0) + min(size, width)]
        img = out
    return img


def test_weights(n_frames: int = 48, seed: int = 0, bilateral: bool = True) -> np.ndarray:
    """(n_frames, 53) known weights for a test clip: jawOpen, eyeBlink_L/R, mouthSmile_L/R and browInnerUp_L/R follow
    smooth bumps, each group with its own timing and the first frames neutral. `bilateral`: left and right move
    together (blinks, smiles, brows as people mostly make them); otherwise each side has its own timing (winks,
    half smiles)."""
    rng = np.random.default_rng(seed)
    w = np.zeros((n_frames, len(EXPRESSION_NAMES)), np.float32)
    t = np.arange(n_frames)
    lead = max(4, n_frames // 10)
    pairs = [("eyeBlink_L", "eyeBlink_R"), ("mouthSmile_L", "mouthSmile_R"), ("browInnerUp_L", "browInnerUp_R")]
    groups = [("jawOpen",)] + (pairs if bilateral else [(n,) for pair in pairs for n in pair])
    slots = np.linspace(lead + 2, n_frames - 3, 2 * len(groups))
    order = rng.permutation(len(slots))
    for g, names in enumerate(groups):
        curve = np.zeros(n_frames)
        for c in slots[order[2 * g:2 * g + 2]]:
            width = rng.uniform(1.5, 3.0)
            curve = np.maximum(curve, rng.uniform(0.6, 1.0) * np.exp(-0.5 * ((t - c) / width) ** 2))
        curve[:lead] = 0.0
        for n in names:
            w[:, EXPRESSION_NAMES.index(n)] = curve
    return w


def write_video(path, frames, fps: float = 30.0) -> Path:
    """Frames (T, H, W, 3) uint8 -> an H.264 MP4 (or any container ffmpeg picks from the suffix) at `fps`."""
    import imageio_ffmpeg

    frames = list(frames)
    h, w = frames[0].shape[:2]
    path = Path(path)
    codec = "libvpx" if path.suffix.lower() == ".webm" else "libx264"
    params = ["-crf", "12"] if codec == "libx264" else ["-b:v", "4M"]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec=codec, quality=None,
                                         output_params=params, macro_block_size=1)
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()
    return path


def write_y4m(path, frames, fps: int = 30) -> Path:
    """Frames (T, H, W, 3) uint8 -> a YUV4MPEG2 file (4:2:0), the format Chromium's fake camera reads."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{int(fps)}:1 Ip A1:1 C420jpeg\n".encode())
        for img in frames:
            rgb = img.astype(np.float32)
            y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
            u = (rgb[..., 2] - y) * 0.564 + 128
            v = (rgb[..., 0] - y) * 0.713 + 128
            sub = lambda c: c[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2).mean((1, 3))  # noqa: E731
            f.write(b"FRAME\n")
            for plane in (y, sub(u), sub(v)):
                f.write(np.clip(np.round(plane), 0, 255).astype(np.uint8).tobytes())
    return Path(path)
