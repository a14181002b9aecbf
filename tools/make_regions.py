"""Regenerate nfs/resources/ict_regions.npz: anatomical region labels for the 11,248 ICT skin vertices.

The labels come from the ICT expression basis: each vertex is scored per region by how strongly the
blendshape families that drive that region move it (every shape normalised to its own peak), with
positional gates from the ICT neutral and its 68 landmarks (left/right, above/below the eye opening and
the lip line, chin vs neck). Vertices that no shape moves (scalp, ears, neck) are split by position.
The labels are then smoothed by majority vote over mesh neighbours, small islands are merged into
their surroundings, and the left half is copied from the right by the exact mirror map of the mesh.

Deterministic: no randomness, so rerunning reproduces the file bit for bit.

    python tools/make_regions.py            # writes nfs/resources/ict_regions.npz
    python tools/make_regions.py --figure   # ... and assets/regions.png (front and side views, legend)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import Delaunay, cKDTree


from nfs.ict import EXPRESSION_NAMES, SKIN_VERTEX_COUNT, load_ict
from nfs.regions import REGION_NAMES, REGIONS_PATH, mirror_region_index

REGION = {name: i for i, name in enumerate(REGION_NAMES)}


def vertex_adjacency(faces: np.ndarray, n: int) -> sp.csr_matrix:
    """(n, n) symmetric 0/1 adjacency of mesh edges."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    a = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(np.float64)
    return a.tocsr()


def mirror_partner(vertices: np.ndarray) -> np.ndarray:
    """(V,) index of each vertex's mirror image across x = 0 (nearest neighbour of (-x, y, z))."""
    _, idx = cKDTree(vertices).query(vertices * np.array([-1.0, 1.0, 1.0]))
    return idx


def boundary_loops(faces: np.ndarray, n: int) -> list[np.ndarray]:
    """Vertex sets of the open boundary loops of the mesh (eye openings, mouth, neck cut)."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, count = np.unique(e, axis=0, return_counts=True)
    b = uniq[count == 1]
    a = sp.coo_matrix((np.ones(len(b)), (b[:, 0], b[:, 1])), shape=(n, n))
    _, comp = connected_components(a, directed=False)
    verts = np.unique(b)
    return [verts[comp[verts] == c] for c in np.unique(comp[verts])]


def sigmoid(x: np.ndarray, width: float) -> np.ndarray:
    """Soft step 0 -> 1 around x = 0, `width` wide."""
    return 0.5 * (1.0 + np.tanh(0.5 * x / width))


def shape_activity(model, n: int) -> dict[str, np.ndarray]:
    """Per-shape (V,) displacement magnitude, each normalised to its own peak (0..1)."""
    mag = np.linalg.norm(model.expression_deltas[:, :n].astype(np.float64), axis=2)
    mag /= np.maximum(mag.max(axis=1, keepdims=True), 1e-12)
    return dict(zip(EXPRESSION_NAMES, mag))


def auricle_mask(v: np.ndarray) -> np.ndarray:
    """(V,) bool: vertices of the left (+X) auricle.

    Around the ear a smooth quadratic x(y, z) is fitted to the side of the head; vertices standing out
    more than 3 mm from it form the helix rim, and the ear is everything on that side whose (z, y)
    projection falls inside the rim's convex hull (rim, concha, tragus).
    """
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    oval = ((z - 0.3) / 2.1) ** 2 + ((y - 0.9) / 3.0) ** 2   # the ear's neighbourhood on the head side
    ring = (oval > 1.1) & (oval < 2.0) & (x > 4.0)
    basis = np.stack([np.ones_like(y), y, z, y * y, z * z, y * z], axis=1)
    coef, *_ = np.linalg.lstsq(basis[ring], x[ring], rcond=None)
    rim = (oval < 1.3) & (x > 4.0) & (x - basis @ coef > 0.3)
    hull = Delaunay(np.stack([z[rim], y[rim]], axis=1))
    return (x > 4.0) & (oval < 1.5) & (hull.find_simplex(np.stack([z, y], axis=1)) >= 0)


def left_half_scores(v: np.ndarray, act: dict, eye_loop: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """(V, N_REGIONS) region scores for the character's left (+X) half, from the _L shapes and position.

    Only rows with x >= 0 are meaningful; the other half is mirrored from them afterwards.
    """
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    ax = np.abs(x)

    def a(*names):
        return np.max([act[nm] for nm in names], axis=0)

    lid = a("eyeBlink_L", "eyeWide_L", "eyeLookUp_L", "eyeLookDown_L", "eyeLookIn_L", "eyeLookOut_L")
    squint = act["eyeSquint_L"]
    brow_down = act["browDown_L"]
    brow_any = a("browDown_L", "browOuterUp_L", "browInnerUp_L", "browInnerUp_R")
    cheek = a("cheekSquint_L", "cheekPuff_L", "noseSneer_L")
    lips_body = a("mouthRollUpper", "mouthRollLower", "mouthFunnel", "mouthClose", "mouthPucker")
    upper_drive = a("mouthRollUpper", "mouthShrugUpper", "mouthUpperUp_L")
    lower_drive = a("mouthRollLower", "mouthShrugLower", "mouthLowerDown_L", "jawOpen")
    corner = a("mouthDimple_L", "mouthSmile_L", "mouthStretch_L")
    jaw = a("jawOpen", "jawLeft", "jawRight")
    chin_drive = act["mouthShrugLower"]

    # landmarks (Multi-PIE 68): left side of the character = landmark points with x > 0
    brow_y = lm[22:27, 1].mean()
    nasion_y, subnasal_y = lm[27, 1], lm[33, 1]
    corner_l = lm[54]
    chin = lm[8]

    # eye opening: split its rim into upper and lower halves by the corner-to-corner line
    rim = v[eye_loop]
    medial, lateral = rim[np.argmin(np.abs(rim[:, 0]))], rim[np.argmax(np.abs(rim[:, 0]))]
    slope = (lateral[1] - medial[1]) / (lateral[0] - medial[0])
    rim_upper = rim[:, 1] > medial[1] + slope * (rim[:, 0] - medial[0])
    dist_eye, nearest_rim = cKDTree(rim).query(v)
    above_eye = rim_upper[nearest_rim]
    eye_c = rim.mean(axis=0)

    s = np.zeros((len(v), len(REGION_NAMES)))
    face_front = sigmoid(z - 2.0, 0.7)                     # in front of the ear plane
    # eyes
    near_eye = sigmoid(1.6 - dist_eye, 0.25)
    s[:, REGION["upper_eyelid_L"]] = np.maximum(lid, 0.6 * squint) * near_eye * above_eye * 2.0
    s[:, REGION["lower_eyelid_L"]] = np.maximum(lid, squint) * near_eye * (~above_eye) * 1.4
    # brow and forehead
    s[:, REGION["brow_L"]] = np.maximum(brow_down, 0.6 * brow_any) * sigmoid(brow_y + 1.3 - y, 0.3) * sigmoid(x - 0.6, 0.2)
    s[:, REGION["forehead"]] = (0.4 + brow_any) * sigmoid(brow_any - 0.04, 0.01) * sigmoid(y - (brow_y + 0.6), 0.3) * sigmoid(6.5 - ax, 0.4) * face_front
    # nose: the ridge between the eyes down to the nostrils, widening towards the base
    half_width = 0.9 + 1.4 * np.clip((nasion_y - y) / (nasion_y - subnasal_y), 0.0, 1.0)
    in_nose = sigmoid(half_width - ax, 0.15) * sigmoid(y - (subnasal_y - 0.15), 0.1) * sigmoid(nasion_y + 0.6 - y, 0.2)
    s[:, REGION["nose"]] = 1.2 * in_nose * sigmoid(z - 9.0, 0.3)
    # cheek
    # cheek above, jaw below a line from just under the mouth corner back to the ear lobe (mandible ramus)
    jaw_top = np.interp(z, [2.0, corner_l[2]], [-2.0, corner_l[1] - 0.8])
    s[:, REGION["cheek_L"]] = (0.35 + cheek) * sigmoid(eye_c[1] - 0.6 - y, 0.4) * sigmoid(y - jaw_top, 0.3) * sigmoid(z - 1.5, 0.4) * 0.7
    # lips, split at the lip line by which shapes drive them
    lower_lip = lower_drive > upper_drive
    lip = lips_body * sigmoid(corner_l[0] - 0.3 - ax, 0.2)
    s[:, REGION["upper_lip"]] = lip * (~lower_lip) * 1.2 + upper_drive * sigmoid(y - subnasal_y, 0.2) * 0  # philtrum below
    s[:, REGION["lower_lip"]] = lip * lower_lip * 1.2
    # philtrum and upper-lip skin: driven by upper-lip shapes, below the nose
    s[:, REGION["upper_lip"]] += upper_drive * sigmoid(subnasal_y - y, 0.15) * sigmoid(corner_l[0] - 0.5 - ax, 0.3)
    d_corner = np.linalg.norm(v - corner_l, axis=1)
    s[:, REGION["mouth_corner_L"]] = corner * sigmoid(1.1 - d_corner, 0.15) * 1.6
    # chin and jaw
    below_lip = sigmoid(corner_l[1] - 0.3 - y, 0.3)
    s[:, REGION["chin"]] = np.maximum(chin_drive, 0.5 * jaw) * sigmoid(2.6 - ax, 0.3) * below_lip
    s[:, REGION["jaw_L"]] = (0.45 + jaw) * sigmoid(ax - 2.2, 0.3) * sigmoid(jaw_top - y, 0.3) * sigmoid(z - 1.0, 0.4)
    # temple: side of the head between eye, brow and ear
    s[:, REGION["temple_L"]] = 0.6 * sigmoid(ax - 5.8, 0.3) * sigmoid(y - (eye_c[1] - 1.5), 0.4) * sigmoid(brow_y + 3.0 - y, 0.5) * sigmoid(z - 1.0, 0.5)
    # ear: the auricle, found as the rim that stands out from the side of the head, plus what it encloses
    s[:, REGION["ear_L"]] = 3.0 * auricle_mask(v)
    # neck below the jaw line / under the chin; scalp everywhere else
    # the jaw line runs from under the chin back to the jaw angle below the ear, then round the nape
    jaw_line = np.interp(z, [-10.0, -2.0, 1.0, chin[2]], [-4.6, -5.0, -5.8, chin[1] - 0.7])
    s[:, REGION["neck"]] = 3.0 * sigmoid(jaw_line - y, 0.15)
    # scalp: the unmoved rest, weaker on the lower face in front of the ear so the cheek reaches the ear
    s[:, REGION["scalp"]] = 0.3 * (1.0 - 0.6 * sigmoid(z - 1.0, 0.3) * sigmoid(eye_c[1] - 1.0 - y, 0.4))
    return s


def smooth_labels(labels: np.ndarray, adj: sp.csr_matrix, allowed: np.ndarray, rounds: int) -> np.ndarray:
    """Majority vote over each vertex and its ring-1 neighbours, `rounds` times (ties keep the old label).

    allowed: (V, N_REGIONS) bool, the labels a vertex may take (midline vertices: no sided regions).
    """
    adj = adj + sp.eye(adj.shape[0], format="csr")
    for _ in range(rounds):
        votes = adj @ np.eye(allowed.shape[1])[labels]
        votes[np.arange(len(labels)), labels] += 0.5
        votes[~allowed] = -1.0
        labels = votes.argmax(axis=1)
    return labels


def merge_islands(labels: np.ndarray, adj: sp.csr_matrix, n_labels: int) -> np.ndarray:
    """Give every connected piece of a region, except its largest, to the most common neighbouring region."""
    labels = labels.copy()
    rows, cols = adj.nonzero()
    for _ in range(10):
        changed = False
        for r in range(n_labels):
            mask = labels == r
            if not mask.any():
                continue
            same = mask[rows] & mask[cols]
            sub = sp.coo_matrix((np.ones(same.sum()), (rows[same], cols[same])), shape=adj.shape)
            _, comp = connected_components(sub, directed=False)
            pieces, sizes = np.unique(comp[mask], return_counts=True)
            for p in pieces[np.argsort(-sizes)][1:]:
                verts = np.nonzero(mask & (comp == p))[0]
                nb = adj[verts].nonzero()[1]
                nb = nb[labels[nb] != r]
                if len(nb):
                    labels[verts] = np.bincount(labels[nb], minlength=n_labels).argmax()
                    changed = True
        if not changed:
            break
    return labels


def mirror_from_left(labels: np.ndarray, vertices: np.ndarray, partner: np.ndarray) -> np.ndarray:
    """Copy labels of x > 0 vertices onto their x < 0 partners with _L and _R swapped."""
    flip = mirror_region_index()
    out = labels.copy()
    right = vertices[:, 0] < 0
    out[right] = flip[labels[partner[right]]]
    return out


def make_labels() -> np.ndarray:
    """(11248,) int64 region index per ICT skin vertex."""
    model = load_ict()
    n = SKIN_VERTEX_COUNT
    v, faces = model.skin_mesh()
    v = v.astype(np.float64)
    act = shape_activity(model, n)
    lm = v[model.landmarks68]
    loops = boundary_loops(faces, n)
    eye_loop = max((lp for lp in loops if v[lp, 0].mean() > 1.0), key=len)
    partner = mirror_partner(v)

    # scores use the _L shapes, so only the x >= 0 half is trusted; the rest is mirrored from it
    scores = left_half_scores(v, act, eye_loop, lm)
    # a vertex on the symmetry plane is its own mirror, so it may only take a midline region
    sided = np.array([nm[-2:] in ("_L", "_R") for nm in REGION_NAMES])
    allowed = ~(np.abs(v[:, :1]) < 1e-5) | ~sided[None, :]
    labels = np.where(allowed, scores, -np.inf).argmax(axis=1)
    labels = mirror_from_left(labels, v, partner)
    adj = vertex_adjacency(faces, n)
    labels = smooth_labels(labels, adj, allowed, rounds=6)
    labels = mirror_from_left(labels, v, partner)
    labels = merge_islands(labels, adj, len(REGION_NAMES))
    labels = mirror_from_left(labels, v, partner)
    labels = smooth_labels(labels, adj, allowed, rounds=1)  # settles any midline vertex an island merge touched
    labels = mirror_from_left(labels, v, partner)
    return labels


def save_figure(labels: np.ndarray, path: Path, size: int = 560) -> None:
    """Front and side renders of the ICT neutral skin coloured by region, with a legend, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from PIL import Image

    from nfs.regions import region_colors
    from nfs.render import render_shaded

    v, faces = load_ict().skin_mesh()
    colors = region_colors()
    views = []
    for view in ("front", "side"):   # rendered at twice the size and downsampled to smooth the edges
        img = render_shaded(v, faces, colors[labels], size=2 * size, view=view, interpolate_colors=False)
        views.append(np.asarray(Image.fromarray(img).resize((size, size), Image.LANCZOS)))
    fig = plt.figure(figsize=(13.5, 5.6), dpi=100)
    for k, (img, title) in enumerate(zip(views, ("front", "side (character's left)"))):
        ax = fig.add_axes([0.01 + 0.36 * k, 0.02, 0.36, 0.9])
        ax.imshow(img)
        ax.set_title(title, fontsize=11)
        ax.axis("off")
    counts = np.bincount(labels, minlength=len(REGION_NAMES))
    handles = [Patch(facecolor=colors[i] / 255.0, edgecolor="0.3", label=f"{name} ({counts[i]})")
               for i, name in enumerate(REGION_NAMES)]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.74, 0.5), fontsize=9, frameon=False,
               title="ICT skin regions (vertices)", title_fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    labels = make_labels()
    REGIONS_PATH.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(REGIONS_PATH, labels=labels.astype(np.int8), names=np.array(REGION_NAMES, dtype=np.str_))
    counts = np.bincount(labels, minlength=len(REGION_NAMES))
    for name, c in zip(REGION_NAMES, counts):
        print(f"{name:16s} {c:6d}")
    print(f"wrote {REGIONS_PATH}")
    if "--figure" in sys.argv[1:]:
        figure = Path(__file__).resolve().parents[1] / "assets" / "regions.png"
        save_figure(labels, figure)
        print(f"wrote {figure}")


if __name__ == "__main__":
    main()
