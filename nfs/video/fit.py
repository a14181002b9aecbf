"""From tracked 468-point landmarks to ICT weights and a head pose.

1. Landmarks (pixels, y down, z away from the camera) become a right-handed frame like ICT's (x, -y, -z).
2. Rigid motion: each frame is fitted to the neutral frame by a similarity (rotation, translation and scale, for a
   head moving toward the camera) on the stable landmarks only (forehead, nose bridge, temples: see
   `nfs.video.correspondence`); that motion is the head pose, its removal leaves the expression.
3. The neutral frame is mapped into the ICT frame by one similarity onto the landmarks' ICT points, so the
   displacements of every frame from the neutral are in ICT centimetres.
4. Weights: the project's bounded least squares (`nfs.prior.fit_ict_weights`, w in [0, 1]^53) against the ICT
   expression deltas at the landmarks, on weighted features: every landmark (depth weighted down: the model's z is
   the least reliable coordinate), plus difference features where landmarks are sparse and the motion is what
   matters: the lid gap of each eye (upper lid minus lower lid), the inner lip gap and the chin below the upper lip
   (the jaw). A difference of displacements is linear in the displacements, so the same solver fits them.

Default neutral frame (`choose_neutral_frame`): the frame with the least expression measured against the ICT mean
face itself. Every frame's landmarks are put on the landmarks' ICT points by their own similarity (all landmarks,
reliable ones more) and fitted like any frame (same solver, same features); the frame whose weights sum lowest,
averaged over +-2 frames so a single odd frame does not win, is the neutral; frames scoring within a quarter of the
way from that lowest score to the clip's median count as tied and the earliest of them is taken (recordings mostly
start at rest, and expressions the landmarks show weakly, such as raised brows, barely raise the score). The person's own face shape differs from
the ICT mean and shows up as some constant weights, but it is the same in every frame, so what ranks the frames is
their expression: smiles, blinks, raised brows and an open mouth all add weight. The user can override it
(`FitConfig.neutral_frame`, `--neutral-frame`), e.g. for a clip that never relaxes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nfs.clips import smooth_codes
from nfs.ict import EXPRESSION_NAMES
from nfs.geometry.fits import umeyama_batch
from nfs.prior import fit_ict_weights
from nfs.video import correspondence as cm

DEPTH_WEIGHT = 0.3          # landmark z is relative depth from a single image: trusted less than x and y
LID_WEIGHT = 30.0           # weight of each eye's lid gap feature
LIP_WEIGHT = 4.0            # weight of the inner lip gap feature
JAW_WEIGHT = 4.0            # weight of the chin-below-upper-lip feature
BROW_WEIGHT = 10.0          # weight of each brow's height over its eye's corners
PRIOR_WEIGHT = 0.002        # ridge on every weight (per landmark feature units): noise is not explained by many shapes
UNSEEN_WEIGHT = 5.0         # ridge on the gaze shapes: the 468 landmarks carry no iris, so gaze is not observed
UNSEEN_SHAPES = ("eyeLookDown_L", "eyeLookDown_R", "eyeLookIn_L", "eyeLookIn_R", "eyeLookOut_L", "eyeLookOut_R",
                 "eyeLookUp_L", "eyeLookUp_R")
UPPER_FACE_Y_CM = 1.5       # landmarks above this ICT height (the nose's upper half and up) drive the brow/eye shapes
NEUTRAL_TOLERANCE = 0.25    # neutral frame: scores this far from the lowest toward the median count as tied
RIGID_MOTION_CM = 0.1       # landmarks that expressions move by more than this count less in the rigid fit
OUTLINE_WEIGHT = 0.1        # the face's outline is a silhouette: the model guesses it more than it sees it
SPREAD_CM = 0.3             # landmarks the detector places less consistently than this count less
LANDMARK_JITTER_S = 0.05    # default smoothing sigma, seconds: the landmark model's frame-to-frame jitter is
                            # about as large as a brow raise's signal; 50 ms keeps a blink (~150-300 ms)
DEFAULT_FPS = 30.0


@dataclass
class FitConfig:
    """Options of the landmark fit."""

    neutral_frame: int | None = None    # None: `choose_neutral_frame`
    smoothing_sigma: float | None = None  # temporal Gaussian smoothing of the weights, frames (0: off; None: the
                                          # default, LANDMARK_JITTER_S at the video's frame rate)
    depth_weight: float = DEPTH_WEIGHT
    lid_weight: float = LID_WEIGHT
    lip_weight: float = LIP_WEIGHT
    jaw_weight: float = JAW_WEIGHT
    brow_weight: float = BROW_WEIGHT
    prior_weight: float = PRIOR_WEIGHT


@dataclass
class LandmarkFit:
    """Result of `fit_landmarks` for T frames."""

    weights: np.ndarray          # (T, 53) ICT weights in [0, 1]
    rotations: np.ndarray        # (T, 3, 3) head rotation relative to the neutral frame, ICT frame
    translations: np.ndarray     # (T, 3) motion of the head's centre (`pose_pivot`) from the neutral frame, ICT cm
    scales: np.ndarray           # (T,) apparent size relative to the neutral frame (toward the camera > 1)
    neutral_frame: int
    residual_cm: np.ndarray      # (T,) RMS landmark residual of the weight fit, ICT cm


def to_model_frame(points_px: np.ndarray) -> np.ndarray:
    """(..., 468, 3) image landmarks (x right, y down, z away) -> right-handed (x right, y up, z toward the camera)."""
    return np.asarray(points_px, np.float64) * np.array([1.0, -1.0, -1.0])


def rigid_weights(corr) -> np.ndarray:
    """(468,) weight of each landmark in the rigid fit: 1 on the stable landmarks; elsewhere the landmark's
    reliability times 1 / (1 + (m / RIGID_MOTION_CM)^2), m the most any ICT expression moves it, so the many landmarks
    that expressions barely move steady the rotation and the mouth, lids and brows hardly count."""
    motion = np.linalg.norm(corr.basis(), axis=-1).max(0)
    w = _reliability(corr) / (1.0 + (motion / RIGID_MOTION_CM) ** 2)
    w[corr.stable] = 1.0
    return w


def stabilise(points: np.ndarray, neutral: np.ndarray, weights: np.ndarray):
    """Similarity of every frame (T, 468, 3) onto the neutral (468, 3), weighted per landmark (468,) (`rigid_weights`).
    Returns aligned frames (T, 468, 3) and the fits s (T,), R (T, 3, 3), t (T, 3) with aligned = s R p + t."""
    dst = np.broadcast_to(neutral, points.shape)
    s, r, t = umeyama_batch(points, dst, np.broadcast_to(weights, points.shape[:2]))
    aligned = s[:, None, None] * (points @ r.transpose(0, 2, 1)) + t[:, None]
    return aligned, s, r, t


def choose_neutral_frame(points: np.ndarray, valid: np.ndarray | None = None, cfg: FitConfig | None = None) -> int:
    """Index of the default neutral frame of (T, 468, 3) landmarks (model frame); `valid` (T,) marks frames with a
    face. The criterion is written in the module docstring."""
    corr = cm.load_correspondence()
    valid = np.ones(len(points), bool) if valid is None else np.asarray(valid, bool)
    if not valid.any():
        raise ValueError("no frame with a face to take as the neutral")
    n = len(points)
    reliability = np.broadcast_to(_reliability(corr), (n, len(corr.points)))
    s, r, t = umeyama_batch(points, np.broadcast_to(corr.points, points.shape), reliability)
    on_ict = s[:, None, None] * (points @ r.transpose(0, 2, 1)) + t[:, None]
    score = fit_weights(on_ict - corr.points[None], cfg).sum(1).astype(np.float64)
    score = np.convolve(np.pad(score, 2, mode="edge"), np.ones(5) / 5, mode="valid")
    score[~valid] = np.inf
    best, typical = score.min(), np.median(score[valid])
    return int(np.argmax(score <= best + NEUTRAL_TOLERANCE * (typical - best)))     # the earliest such frame


def _reliability(corr) -> np.ndarray:
    """(468,) weight of each landmark: less for ones the detector places inconsistently, and for the face's outline."""
    out = 1.0 / (1.0 + (corr.spread_cm / SPREAD_CM) ** 2)
    out[list(cm.FACE_OVAL)] *= OUTLINE_WEIGHT
    return out


def _features(corr, cfg: FitConfig, landmarks: np.ndarray, differences) -> tuple[np.ndarray, np.ndarray]:
    """Rows (K, 468) of landmark combinations and their weights (K, 3): the chosen landmarks themselves and the
    difference features [(upper, lower, weight)] (lid gaps, lip gap, jaw)."""
    n = len(corr.points)
    rows = [np.eye(n)[landmarks]]
    reliability = _reliability(corr)[landmarks]
    weights = [np.stack([reliability, reliability, cfg.depth_weight * reliability], 1)]
    for a, b, w in differences:
        row = np.zeros(n)
        row[list(a)] += 1.0 / len(a)
        row[list(b)] -= 1.0 / len(b)
        rows.append(row[None])
        weights.append(np.array([[w, w, cfg.depth_weight * w]]))
    return np.concatenate(rows), np.concatenate(weights)


def _halves(corr, cfg: FitConfig):
    """The two independent fits: (shape indices, feature rows, feature weights) of the upper face (brows, eyes: from
    the landmarks above UPPER_FACE_Y and the lid gaps) and of the lower face (all other shapes: from the landmarks
    below it, the lip gap and the jaw)."""
    upper_shapes = np.array([k for k, n in enumerate(EXPRESSION_NAMES) if n.startswith(("brow", "eye"))])
    lower_shapes = np.setdiff1d(np.arange(len(EXPRESSION_NAMES)), upper_shapes)
    above = corr.points[:, 1] > UPPER_FACE_Y_CM
    up = _features(corr, cfg, np.nonzero(above)[0], [(cm.EYE_UPPER_R, cm.EYE_LOWER_R, cfg.lid_weight),
                                                     (cm.EYE_UPPER_L, cm.EYE_LOWER_L, cfg.lid_weight),
                                                     (cm.BROW_R, cm.EYE_CORNERS_R, cfg.brow_weight),
                                                     (cm.BROW_L, cm.EYE_CORNERS_L, cfg.brow_weight)])
    low = _features(corr, cfg, np.nonzero(~above)[0], [(cm.LIP_UPPER_INNER, cm.LIP_LOWER_INNER, cfg.lip_weight),
                                                       (cm.CHIN, cm.LIP_UPPER_INNER, cfg.jaw_weight)])
    return [(upper_shapes, *up), (lower_shapes, *low)]


def fit_weights(disp: np.ndarray, cfg: FitConfig | None = None) -> np.ndarray:
    """(T, 53) ICT weights in [0, 1] from landmark displacements (T, 468, 3) in ICT cm: the upper face (brow and eye
    shapes) and the lower face (the rest) are fitted apart, each from its own landmarks, so that the landmark
    model's habit of moving the whole face a little with any local change does not turn a brow raise into a frown.
    Each half is the project's bounded least squares with a ridge row per shape (gaze shapes held near 0)."""
    cfg = cfg or FitConfig()
    corr = cm.load_correspondence()
    basis = corr.basis()
    n_frames = len(disp)
    weights = np.zeros((n_frames, len(basis)), np.float32)
    for shapes, rows, w in _halves(corr, cfg):
        feat_d = (rows @ disp) * np.sqrt(w)[None]             # (T, K, 3); matmul, far faster than einsum
        feat_b = (rows @ basis[shapes]) * np.sqrt(w)[None]
        # ridge rows: one extra feature per shape that only that shape moves, with zero observed displacement
        ridge = np.full(len(shapes), np.sqrt(cfg.prior_weight * len(rows)))
        unseen = np.isin(shapes, [EXPRESSION_NAMES.index(n) for n in UNSEEN_SHAPES])
        ridge[unseen] = np.sqrt(UNSEEN_WEIGHT * len(rows))
        prior_b = np.zeros((len(shapes), len(shapes), 3))
        prior_b[np.arange(len(shapes)), np.arange(len(shapes)), 0] = ridge
        feat_b = np.concatenate([feat_b, prior_b], axis=1)
        feat_d = np.concatenate([feat_d, np.zeros((n_frames, len(shapes), 3))], axis=1)
        weights[:, shapes] = fit_ict_weights(feat_d, feat_b)
    return weights


def fit_landmarks(points_px: np.ndarray, valid: np.ndarray | None = None, cfg: FitConfig | None = None,
                  fps: float = DEFAULT_FPS) -> LandmarkFit:
    """ICT weights and head pose of every frame from (T, 468, 3) image landmarks at `fps` frames/s. Frames with
    `valid` False (no face) must already hold bridged landmarks (see `bridge_missing`); they are fitted like the
    others."""
    cfg = cfg or FitConfig()
    corr = cm.load_correspondence()
    pts = to_model_frame(points_px)
    n_frames = len(pts)
    neutral_idx = choose_neutral_frame(pts, valid, cfg) if cfg.neutral_frame is None else int(cfg.neutral_frame)
    if not 0 <= neutral_idx < n_frames:
        raise ValueError(f"neutral frame {neutral_idx} is outside the clip's 0..{n_frames - 1}")
    if valid is not None and not valid[neutral_idx]:
        raise ValueError(f"neutral frame {neutral_idx} has no face")
    disp, (s0, r0, t0), (s, r, t) = _displacements(pts, neutral_idx, corr)
    weights = fit_weights(disp, cfg)
    sigma = LANDMARK_JITTER_S * fps if cfg.smoothing_sigma is None else cfg.smoothing_sigma
    if sigma > 0:
        weights = np.clip(smooth_codes(weights, sigma), 0.0, 1.0)
    basis = corr.basis()
    resid = disp - (weights @ basis.reshape(len(basis), -1)).reshape(disp.shape)
    # head pose in the ICT frame, about the landmarks' centre c: frame t's pose is the inverse of its stabilising
    # similarity seen through the neutral's map q = s0 r0 n + t0 (the apparent scale is kept apart)
    rot = np.einsum("ij,tkj,lk->til", r0, r, r0)                 # r0 R_t^T r0^T
    c = corr.points.mean(0)
    c_n = r0.T @ (c - t0) / s0
    c_t = np.einsum("tkj,tk->tj", r, c_n[None] - t) / s[:, None]   # R_t^T (c_n - t_t) / s_t
    trans = s0 * c_t @ r0.T + t0 - c
    return LandmarkFit(weights=weights.astype(np.float32), rotations=rot, translations=trans, scales=1.0 / s,
                       neutral_frame=neutral_idx, residual_cm=np.sqrt((resid ** 2).sum(-1).mean(-1)))


def _displacements(pts: np.ndarray, neutral_idx: int, corr):
    """Displacements (T, 468, 3) in ICT cm of every frame's stabilised landmarks from the neutral frame's, the
    neutral's similarity into the ICT frame (s0, r0, t0) and the stabilising similarities (s, R, t) per frame."""
    neutral = pts[neutral_idx]
    aligned, s, r, t = stabilise(pts, neutral, rigid_weights(corr))
    # the neutral into the ICT frame: one similarity onto the landmarks' ICT points (all landmarks, reliable ones more)
    s0, r0, t0 = (a[0] for a in umeyama_batch(neutral[None], corr.points[None], _reliability(corr)[None]))
    disp = s0 * ((aligned - neutral[None]) @ r0.T)
    return disp, (s0, r0, t0), (s, r, t)


def bridge_missing(points: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T, 468, 3) landmarks with frames where `valid` is False filled by linear interpolation between the nearest
    frames with a face (held constant before the first and after the last)."""
    valid = np.asarray(valid, bool)
    if valid.all():
        return points
    idx = np.nonzero(valid)[0]
    t = np.arange(len(points))
    flat = points[idx].reshape(len(idx), -1)
    out = np.empty((len(points), flat.shape[1]))
    for c in range(flat.shape[1]):
        out[:, c] = np.interp(t, idx, flat[:, c])
    return out.reshape(points.shape)
