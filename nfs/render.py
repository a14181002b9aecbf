"""A small CPU software rasterizer (numpy only) for meshes in the ICT frame (cm, +Y up, face looks +Z).

Orthographic cameras look down -Z at a FIXED box in ICT centimetres that holds a whole ICT head, so
images of different meshes line up pixel for pixel. Triangles are rasterized in batches grouped by
their pixel bounding-box size (no per-pixel or per-triangle Python loop), each over the pixels of its
own bounding box; the nearest fragment per pixel wins via a depth sort.
"""
from __future__ import annotations

import numpy as np

from nfs.geometry.normals import vertex_normals

# Fixed view box: centre of the ICT skin's bounding box (x -12.4..12.4, y -19.3..14.5, z -9.2..13.1)
# and a half extent covering the head's 33.8 cm height plus a margin. Depth spans the same extent.
VIEW_CENTER = np.array([0.0, -2.4, 1.9])
VIEW_HALF_EXTENT = 18.0
VIEWS = ("front", "side", "three_quarter")
_VIEW_YAW_DEG = {"front": 0.0, "side": -90.0, "three_quarter": -35.0}  # negative: turn the _L side to camera
_LIGHT = np.array([-0.35, 0.45, 1.0]) / np.linalg.norm([-0.35, 0.45, 1.0])


def rasterize(px: np.ndarray, py: np.ndarray, depth: np.ndarray, faces: np.ndarray,
              height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer rasterization in pixel space.

    px, py: (V,) pixel coordinates (x right, y down; pixel (i, j) has its centre at (j + 0.5, i + 0.5)).
    depth: (V,) larger = nearer the camera. faces: (F, 3) vertex indices.
    Returns face_id (H, W) int64 (-1 where nothing is drawn) and barycentric weights (H, W, 3) float32.
    """
    f = np.asarray(faces, np.int64)
    tx, ty, tz = px[f], py[f], depth[f]
    finite = np.isfinite(tx).all(1) & np.isfinite(ty).all(1) & np.isfinite(tz).all(1)
    tx, ty, tz = (np.where(finite[:, None], t, -1.0) for t in (tx, ty, tz))   # non-finite -> off screen
    j0 = np.clip(np.ceil(tx.min(1) - 0.5), 0, width).astype(np.int64)
    j1 = np.clip(np.floor(tx.max(1) - 0.5), -1, width - 1).astype(np.int64)
    i0 = np.clip(np.ceil(ty.min(1) - 0.5), 0, height).astype(np.int64)
    i1 = np.clip(np.floor(ty.max(1) - 0.5), -1, height - 1).astype(np.int64)
    area = (tx[:, 1] - tx[:, 0]) * (ty[:, 2] - ty[:, 0]) - (tx[:, 2] - tx[:, 0]) * (ty[:, 1] - ty[:, 0])
    live = (j1 >= j0) & (i1 >= i0) & (np.abs(area) > 1e-12) & finite
    span = np.maximum(j1 - j0, i1 - i0) + 1
    bucket = np.where(live, np.ceil(np.log2(np.maximum(span, 1))).astype(np.int64), -1)

    frag_pix, frag_depth, frag_face, frag_bary = [], [], [], []
    for b in np.unique(bucket[bucket >= 0]):
        side = 1 << int(b)
        tris = np.nonzero(bucket == b)[0]
        # keep each batch's candidate pixels to a few million
        per_batch = max(1, 4_000_000 // (side * side))
        for start in range(0, len(tris), per_batch):
            t = tris[start:start + per_batch]
            # the pixels of each triangle's bounding box, triangle by triangle, row by row
            box_w, box_h = j1[t] - j0[t] + 1, i1[t] - i0[t] + 1
            count = box_w * box_h
            owner = np.repeat(np.arange(len(t)), count)
            at = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
            di, dj = np.divmod(at, box_w[owner])
            jj, ii = j0[t][owner] + dj, i0[t][owner] + di
            x, y = jj + 0.5, ii + 0.5
            x0, x1, x2 = (tx[t, k][owner] for k in range(3))
            y0, y1, y2 = (ty[t, k][owner] for k in range(3))
            a = area[t][owner]
            w0 = ((x1 - x) * (y2 - y) - (x2 - x) * (y1 - y)) / a
            w1 = ((x2 - x) * (y0 - y) - (x0 - x) * (y2 - y)) / a
            w2 = 1.0 - w0 - w1
            inside = np.nonzero((w0 >= -1e-7) & (w1 >= -1e-7) & (w2 >= -1e-7))[0]
            tri = t[owner[inside]]
            w = np.stack([w0[inside], w1[inside], w2[inside]], axis=1)
            frag_pix.append(ii[inside] * width + jj[inside])
            frag_depth.append((w * tz[tri]).sum(1))
            frag_face.append(tri)
            frag_bary.append(w)

    face_id = np.full(height * width, -1, np.int64)
    bary = np.zeros((height * width, 3), np.float32)
    if frag_pix:
        pix = np.concatenate(frag_pix)
        order = np.argsort(-np.concatenate(frag_depth), kind="stable")
        pix_sorted = pix[order]
        uniq, first = np.unique(pix_sorted, return_index=True)   # first = nearest fragment per pixel
        win = order[first]
        face_id[uniq] = np.concatenate(frag_face)[win]
        bary[uniq] = np.concatenate(frag_bary)[win]
    return face_id.reshape(height, width), bary.reshape(height, width, 3)


def to_pixels(vertices: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ICT-frame (V, 3) cm -> (V,) pixel x (column), pixel y (row, down) and depth in 0..1 (1 = nearest)
    for the frontal camera of the fixed view box; pixel (i, j) has its centre at x = j + 0.5, y = i + 0.5."""
    rel = (np.asarray(vertices, np.float64) - VIEW_CENTER) / VIEW_HALF_EXTENT   # -1..1 inside the box
    px = (rel[:, 0] + 1.0) * 0.5 * size
    py = (1.0 - rel[:, 1]) * 0.5 * size
    depth = (rel[:, 2] + 1.0) * 0.5
    return px, py, depth


def _interpolate(values: np.ndarray, faces: np.ndarray, face_id: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Per-pixel barycentric blend of per-vertex values (V, C) -> (H, W, C); zero on the background."""
    hit = face_id >= 0
    out = np.zeros(face_id.shape + (values.shape[1],), np.float64)
    corners = values[faces[face_id[hit]]]                      # (P, 3, C)
    out[hit] = np.einsum("pk,pkc->pc", bary[hit].astype(np.float64), corners)
    return out


def render_normal_depth(vertices: np.ndarray, faces: np.ndarray, size: int = 256) -> np.ndarray:
    """Frontal orthographic normal + depth map of a mesh in the ICT frame (cm).

    Returns (4, size, size) float32: channels 0..2 the interpolated unit vertex normal (x, y, z; image
    row 0 is the top, column 0 the character's right), channel 3 the depth, scaled to (0, 1] over the
    fixed view box with 1 nearest the camera. Background pixels are 0 in all channels.
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    px, py, depth = to_pixels(v, size)
    face_id, bary = rasterize(px, py, depth, f, size, size)
    normals = _interpolate(vertex_normals(v, f), f, face_id, bary)
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    d = _interpolate(depth[:, None], f, face_id, bary)[..., 0]
    d = np.where(face_id >= 0, np.clip(d, 1e-4, 1.0), 0.0)
    return np.concatenate([normals.transpose(2, 0, 1), d[None]], axis=0).astype(np.float32)


def view_rotation(view: str) -> np.ndarray:
    """(3, 3) rotation about +Y applied to the mesh (around VIEW_CENTER) before the frontal camera.

    "front": as is; "side": the character's left (+X) side faces the camera; "three_quarter": 35 degrees
    toward that side.
    """
    if view not in _VIEW_YAW_DEG:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    t = np.deg2rad(_VIEW_YAW_DEG[view])
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def render_shaded(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None, size: int = 512,
                  view: str = "front", interpolate_colors: bool = True) -> np.ndarray:
    """Lambertian render on a white background -> (size, size, 3) uint8.

    colors: optional (V, 3) per-vertex RGB, uint8 0..255 or float 0..1; default light grey.
    interpolate_colors=False paints each pixel with the colour of its nearest triangle corner (crisp
    label boundaries). Faces are lit from both sides.
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    v = (v - VIEW_CENTER) @ view_rotation(view).T + VIEW_CENTER
    if colors is None:
        rgb = np.full((len(v), 3), 0.82)
    else:
        rgb = np.asarray(colors)
        rgb = rgb / 255.0 if rgb.dtype == np.uint8 or rgb.max() > 1.0 else rgb.astype(np.float64)
    px, py, depth = to_pixels(v, size)
    face_id, bary = rasterize(px, py, depth, f, size, size)
    hit = face_id >= 0
    normals = _interpolate(vertex_normals(v, f), f, face_id, bary)
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    normals *= np.where(normals[..., 2:3] < 0, -1.0, 1.0)     # two-sided lighting
    shade = 0.3 + 0.7 * np.clip(normals @ _LIGHT, 0.0, 1.0)
    if interpolate_colors:
        base = _interpolate(rgb, f, face_id, bary)
    else:
        base = np.zeros(face_id.shape + (3,))
        corner = bary[hit].argmax(axis=1)
        base[hit] = rgb[f[face_id[hit], corner]]
    img = np.where(hit[..., None], base * shade[..., None], 1.0)
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
