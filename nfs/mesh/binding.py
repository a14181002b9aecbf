"""How the parts of a user's mesh that are not skin (eyes, teeth, lashes) follow the animated skin."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from nfs.geometry.fits import rigid_fits
from nfs.mesh.clean import CleanMesh


@dataclass
class SecondaryBinding:
    """How every vertex of the user's mesh follows the skin.

    Skin vertices take their own displacement. Each other component (eyeball, teeth, lashes) moves rigidly with
    the least-squares rigid motion of the skin around it (its `anchors`, the nearest 5% of the skin), so eyes
    and teeth never deform. Vertices removed by cleaning stay put. `matrix` (V_in, S) maps per-skin-vertex
    values (labels, weights) to every original vertex by inverse-distance blending, for display."""

    matrix: sp.csr_matrix                    # (V_in, S) display mapping
    skin_matrix: sp.csr_matrix               # (V_in, S) 1 where an original vertex is a skin vertex
    components: list = field(default_factory=list)  # [(original vertex indices (n,), anchor skin indices (m,))]

    @classmethod
    def build(cls, clean: CleanMesh, k: int = 4, anchor_fraction: float = 0.05) -> "SecondaryBinding":
        n_clean, skin = len(clean.vertices), clean.skin_vertices
        kept = np.nonzero(clean.to_clean >= 0)[0]
        pick = sp.csr_matrix((np.ones(len(kept)), (kept, clean.to_clean[kept])),
                             shape=(len(clean.to_clean), n_clean))
        own = sp.csr_matrix((np.ones(len(skin)), (skin, np.arange(len(skin)))), shape=(n_clean, len(skin)))
        rows, cols, vals = [skin], [np.arange(len(skin))], [np.ones(len(skin))]
        others = np.setdiff1d(np.arange(n_clean), skin)
        tree = cKDTree(clean.vertices[skin])
        components = []
        if len(others):
            kk = min(k, len(skin))
            dist, nn = tree.query(clean.vertices[others], k=kk)
            dist, nn = dist.reshape(len(others), kk), nn.reshape(len(others), kk)
            w = 1.0 / np.maximum(dist, 1e-9) ** 2
            w /= w.sum(1, keepdims=True)
            rows.append(np.repeat(others, kk))
            cols.append(nn.ravel())
            vals.append(w.ravel())
            n_anchor = int(min(len(skin), max(16, anchor_fraction * len(skin))))
            for comp in clean.other_components:
                _, anchors = tree.query(clean.vertices[comp].mean(0), k=n_anchor)
                original = np.nonzero(np.isin(clean.to_clean, comp))[0]
                components.append((original.astype(np.int64), np.atleast_1d(anchors).astype(np.int64)))
        per_clean = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                  shape=(n_clean, len(skin)))
        return cls((pick @ per_clean).tocsr().astype(np.float32), (pick @ own).tocsr().astype(np.float32),
                   components)

    def displacements(self, base: np.ndarray, skin_disp: np.ndarray) -> np.ndarray:
        """Per-vertex displacements (T, V_in, 3) of the user's mesh from skin displacements (T, S, 3), both in
        the user's frame; base (V_in, 3) is the user's rest mesh."""
        out = np.stack([self.skin_matrix @ d for d in skin_disp]).astype(np.float32)
        skin_rest = None
        for original, anchors in self.components:
            if skin_rest is None:
                skin_rest = np.asarray(self.skin_matrix.T @ base) / np.maximum(
                    np.asarray(self.skin_matrix.sum(0)).ravel(), 1)[:, None]
            rest = skin_rest[anchors]
            r, t = rigid_fits(rest, rest[None] + skin_disp[:, anchors])
            x = base[original]
            out[:, original] = np.einsum("tij,nj->tni", r, x) + t[:, None] - x[None]
        return out
