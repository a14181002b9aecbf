"""Write assets/mouth_cut.png: the eval's closed-mouth scan head (`closed_scan`, its lips one surface) at
jawOpen = 1 by the template prior, as it is and with its mouth opened (`--open-mouth`, `nfs.mesh.mouth_cut`), and
print the figures docs/results.md quotes: the lip gap along the cut line and the triangles turned over.

Run from the repo root: ``python tools/make_mouth_cut_figure.py`` (about a minute on a 2-core CPU).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from nfs.data.benchmark import build_target, identity_alignment  # noqa: E402
from nfs.ict import EXPRESSION_NAMES  # noqa: E402
from nfs.io.mesh import RawMesh  # noqa: E402
from nfs.mesh.clean import clean_mesh  # noqa: E402
from nfs.mesh.mouth_cut import open_mouth, open_mouth_prior  # noqa: E402
from nfs.prior import template_expression_basis  # noqa: E402
from nfs.render import VIEW_CENTER, render_shaded, to_pixels, view_rotation  # noqa: E402

OUT = ROOT / "assets" / "mouth_cut.png"
JAW = EXPRESSION_NAMES.index("jawOpen")
SIZE = 1400                      # render size (pixels for the 36 cm view box), cropped to the mouth
VIEW = "three_quarter"
SKIN, INSIDE, TURNED = np.array([0.82, 0.80, 0.78]), np.array([0.55, 0.22, 0.24]), np.array([1.0, 0.45, 0.0])


def turned(rest, moved, faces):
    n0 = np.cross(rest[faces[:, 1]] - rest[faces[:, 0]], rest[faces[:, 2]] - rest[faces[:, 0]])
    n1 = np.cross(moved[faces[:, 1]] - moved[faces[:, 0]], moved[faces[:, 2]] - moved[faces[:, 0]])
    return (n0 * n1).sum(1) < 0


def panel(moved, faces, inside, flipped, centre):
    colors = np.tile(SKIN, (len(moved), 1))
    colors[inside] = INSIDE
    colors[np.unique(faces[flipped])] = TURNED
    img = render_shaded(moved, faces, colors, size=SIZE, view=VIEW)
    p = (centre - VIEW_CENTER) @ view_rotation(VIEW).T + VIEW_CENTER
    px, py, _ = to_pixels(p[None], SIZE)
    cm = SIZE / 36.0                                   # pixels per cm of the view box
    x, y = int(px[0]), int(py[0])
    return img[max(0, y - int(2.0 * cm)):y + int(5.0 * cm), max(0, x - int(4.0 * cm)):x + int(4.0 * cm)]


def main() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = build_target("closed_scan", 0)
    raw = RawMesh(t.vertices.copy(), t.faces.copy(), np.arange(len(t.faces)), source="closed_scan.obj")
    cut_raw, cut = open_mouth(raw, clean_mesh(raw.vertices, raw.faces), identity_alignment())
    weights = np.zeros((1, len(EXPRESSION_NAMES)), np.float32)
    weights[0, JAW] = 1.0
    closed_basis, closed_guard = template_expression_basis(raw.vertices, faces=raw.faces, with_frame_guard=True)
    opened_basis, opened_guard = open_mouth_prior(cut_raw.vertices, cut_raw.faces, cut, with_frame_guard=True)
    closed_frame, opened_frame = closed_basis[None, JAW].copy(), opened_basis[None, JAW].copy()
    closed_guard.mend(closed_frame, weights)                   # decoded as the pipeline does: through the guard
    opened_guard.mend(opened_frame, weights)
    closed, opened = raw.vertices + closed_frame[0], cut_raw.vertices + opened_frame[0]
    turned_closed = turned(raw.vertices, closed, raw.faces)
    turned_open = turned(cut_raw.vertices, opened, cut_raw.faces)
    gap = np.linalg.norm(opened[cut.upper_edge] - opened[cut.lower_edge], axis=1)[1:-1]
    inside = np.zeros(len(opened), bool)
    inside[cut.interior] = True
    print(f"closed_scan, jawOpen = 1 (template prior): {cut_raw.n_vertices - raw.n_vertices} vertices appended "
          f"after {raw.n_vertices}; lip line {len(cut.upper_edge)} points corner to corner")
    print(f"lip gap along the line (cm): min {gap.min():.2f}, median {np.median(gap):.2f}, max {gap.max():.2f}")
    print(f"triangles turned over: closed {turned_closed.sum()} of {len(raw.faces)}, opened {turned_open.sum()} of "
          f"{len(cut_raw.faces)} ({np.isin(cut_raw.faces[turned_open], cut.interior).any(1).sum()} in the mouth "
          "interior)")
    centre = cut_raw.vertices[cut.upper_edge].mean(0)
    images = [panel(closed, raw.faces, np.zeros(len(closed), bool), turned_closed, centre),
              panel(opened, cut_raw.faces, inside, turned_open, centre)]
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2), dpi=90)
    titles = [f"lips one surface: a membrane across the mouth\n{turned_closed.sum()} triangles turned (orange)",
              f"--open-mouth: lips parted, mouth interior\n{turned_open.sum()} triangles turned (orange)"]
    for ax, img, title in zip(axes, images, titles):
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle("closed-mouth scan head at jawOpen = 1", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT)
    from PIL import Image
    Image.open(OUT).convert("RGB").quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(OUT, optimize=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
