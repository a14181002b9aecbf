"""How the parts of a user's mesh that are not skin (eyes, teeth, tongue, lashes) follow the animated skin:
with the jaw, the skull or the skin around them (roles decided in `nfs.mesh.bones`)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from nfs.geometry.fits import rigid_fits
from nfs.mesh import bones
from nfs.mesh.align import Alignment
from nfs.mesh.clean import CleanMesh


@dataclass
class BoundComponent:
    """One secondary component: its original vertex indices (n,), the skin indices (m,) of its own rigid fit
    (the nearest 5 % of the skin), per-vertex weights (n, 4) over the motions of `nfs.mesh.bones` (skin, own
    rigid fit, jaw, skull) and its role ("jaw", "skull", "mouth", "eye" or "local")."""

    original: np.ndarray
    anchors: np.ndarray
    weights: np.ndarray
    role: str = "local"


@dataclass
class SecondaryBinding:
    """How every vertex of the user's mesh follows the skin.

    Skin vertices take their own displacement. Every other component (eyeball, teeth, tongue, lashes) moves
    with a blend of rigid motions chosen in the ICT frame (`nfs.mesh.bones`): lower teeth and tongue with the
    rigid fit of the chin skin (the jaw), upper teeth and eyeballs with the skin no expression moves (the
    skull), lashes, brows and other small parts lying on moving skin with that skin, and anything else (hair
    cards, hats, glasses, an outfit) not at all; vertices of a mouth bag touching the lips stay attached to them.
    Without an alignment every component follows the rigid fit of the skin around it. So teeth and eyes never
    deform, and the lower teeth drop as far as the chin. Vertices removed by cleaning stay put. `matrix` (V_in, S) maps per-skin-vertex values (labels, weights, displacements) to every original
    vertex by inverse-distance blending."""

    matrix: sp.csr_matrix                    # (V_in, S) display mapping
    skin_matrix: sp.csr_matrix               # (V_in, S) 1 where an original vertex is a skin vertex
    components: list = field(default_factory=list)  # [BoundComponent]
    jaw_anchors: np.ndarray | None = None    # (m,) skin indices of the chin (None: no chin on this mesh)
    skull_anchors: np.ndarray | None = None  # (m,) skin indices no expression moves (None: identity)
    seam_matrix: sp.csr_matrix | None = None  # (V_in, S) fading weights of body vertices near the head

    @classmethod
    def build(cls, clean: CleanMesh, alignment: Alignment | None = None, k: int = 4,
              anchor_fraction: float = 0.05, seam: float = 0.0,
              hints: np.ndarray | None = None) -> "SecondaryBinding":
        """`alignment` (user -> ICT frame) lets teeth, tongue and eyes find their bones; without it every
        component follows the skin around it. A body below the neck (`clean.body_vertices`) stays still, except
        within `seam` (user units) of the head, where it takes a fading share of the nearest skin vertex's
        displacement so the cut never tears. `hints` (V_in,): what the file's part names say of each input vertex
        (`nfs.mesh.parts.part_hints`), used where a component's geometry leaves its role open."""
        n_clean, skin = len(clean.vertices), clean.skin_vertices
        kept = np.nonzero(clean.to_clean >= 0)[0]
        pick = sp.csr_matrix((np.ones(len(kept)), (kept, clean.to_clean[kept])),
                             shape=(len(clean.to_clean), n_clean))
        own = sp.csr_matrix((np.ones(len(skin)), (skin, np.arange(len(skin)))), shape=(n_clean, len(skin)))
        rows, cols, vals = [skin], [np.arange(len(skin))], [np.ones(len(skin))]
        others = np.setdiff1d(np.arange(n_clean), skin)
        tree = cKDTree(clean.vertices[skin])
        components, jaw, skull = [], None, None
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
            points_ict = skin_ict = None
            if alignment is not None:
                points_ict = alignment.apply(clean.vertices)
                skin_ict = points_ict[skin]
                jaw, skull = bones.anchor_sets(skin_ict)
                f = clean.skin_faces
                edge_cm = float(np.linalg.norm(points_ict[skin][f[:, 0]] - points_ict[skin][f[:, 1]], axis=1).mean()
                                ) if len(f) else 1.0
            position = np.full(n_clean, -1)
            for comp in clean.other_components:
                _, anchors = tree.query(clean.vertices[comp].mean(0), k=n_anchor)
                original = np.nonzero(np.isin(clean.to_clean, comp))[0].astype(np.int64)
                position[comp] = np.arange(len(comp))
                if points_ict is None:
                    weights, role = np.tile(np.float32([0, 1, 0, 0]), (len(comp), 1)), "local"
                else:
                    hint = 0 if hints is None else int(np.bincount(hints[clean.original_index[comp]]).argmax())
                    weights, role = bones.component_weights(points_ict[comp], skin_ict, edge_cm, jaw is not None,
                                                            hint)
                components.append(BoundComponent(original, np.atleast_1d(anchors).astype(np.int64),
                                                 weights[position[clean.to_clean[original]]], role))
        per_clean = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                  shape=(n_clean, len(skin)))
        seam_matrix = None
        body = clean.body_vertices
        if len(body) and seam > 0:
            dist, nn = tree.query(clean.vertices[body], distance_upper_bound=seam)
            near = dist < seam
            fade = (1 - dist[near] / seam) ** 2
            seam_matrix = (pick @ sp.csr_matrix((fade, (body[near], nn[near])), shape=(n_clean, len(skin)))).tocsr()
        return cls((pick @ per_clean).tocsr().astype(np.float32), (pick @ own).tocsr().astype(np.float32),
                   components, jaw, skull, seam_matrix)

    def roles(self) -> dict[str, int]:
        """How many components follow each bone, e.g. {"jaw": 16, "skull": 18, "eye": 2}."""
        out: dict[str, int] = {}
        for c in self.components:
            out[c.role] = out.get(c.role, 0) + 1
        return out

    def displacements(self, base: np.ndarray, skin_disp: np.ndarray) -> np.ndarray:
        """Per-vertex displacements (T, V_in, 3) of the user's mesh from skin displacements (T, S, 3), both in
        the user's frame; base (V_in, 3) is the user's rest mesh."""
        out = np.stack([self.skin_matrix @ d for d in skin_disp]).astype(np.float32)
        if self.seam_matrix is not None:
            out += np.stack([self.seam_matrix @ d for d in skin_disp]).astype(np.float32)
        if not self.components:
            return out
        skin_rest = np.asarray(self.skin_matrix.T @ base) / np.maximum(
            np.asarray(self.skin_matrix.sum(0)).ravel(), 1)[:, None]
        n_t = len(skin_disp)

        def fit(anchors):
            if anchors is None:
                return np.broadcast_to(np.eye(3), (n_t, 3, 3)), np.zeros((n_t, 3))
            rest = skin_rest[anchors]
            return rigid_fits(rest, rest[None] + skin_disp[:, anchors])

        bone_motion = {bones.JAW: fit(self.jaw_anchors), bones.SKULL: fit(self.skull_anchors)}
        for c in self.components:
            x = base[c.original]
            d = np.zeros((n_t, len(x), 3))
            for column in (bones.LOCAL, bones.JAW, bones.SKULL):
                w = c.weights[:, column]
                if not w.any():
                    continue
                r, t = fit(c.anchors) if column == bones.LOCAL else bone_motion[column]
                d += w[None, :, None] * (np.einsum("tij,nj->tni", r, x) + t[:, None] - x[None])
            w = c.weights[:, bones.SKIN]
            if w.any():
                rows = self.matrix[c.original]
                d += w[None, :, None] * np.stack([rows @ s for s in skin_disp])
            out[:, c.original] = d
        return out
