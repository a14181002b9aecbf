"""Is the aligned candidate a face, and is it the right way up? MediaPipe's face detector and landmark model on our
own render of it.

The candidate (the user's mesh moved into the ICT frame by an alignment) is rendered frontally, shaded grey, by the
project's rasterizer (`nfs.render.render_shaded`, its fixed view box holds an ICT head). The render is turned by
0, 90, 180 and 270 degrees and the face detector runs on each; on the best turn the landmark model places its 468
landmarks. Where a face really is where the alignment says, the landmarks land where the same landmarks of the ICT
face project (`nfs.video.correspondence`): a 2D similarity from those projections to the detected landmarks is then
close to the identity (no turn, scale near 1, little shift). The face score is

    detector score x landmark model's face score x agreement (each 0..1),
    agreement = exp(-(turn / 25 deg)^2 - (log scale / 0.3)^2 - (shift / 0.6 eye distances)^2)

A cube, a sphere or a hand gives the detector nothing (score 0); a torus seen face-on may pass the detector but
not the landmark model (its face score drops to a few per cent); a real head, with hair cards, a hat, glasses, a
closed mouth bag or stylised proportions, scores 0.6-0.95. The detected turn says how to turn the alignment when it
put the face upside down or sideways (`FaceCheck.turn`).
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from nfs.render import VIEW_CENTER, VIEW_HALF_EXTENT, render_shaded, to_pixels

RENDER_SIZE = 320
TURNS_DEG = (0, 90, 180, 270)    # image turns tried (counter-clockwise); the first that the detector likes wins
TURN_TOLERANCE_DEG = 25.0
SCALE_TOLERANCE = 0.3            # log scale
SHIFT_TOLERANCE = 0.6            # eye distances
# landmarks compared with the ICT face: brows, eye corners, nose, mouth corners, chin (MediaPipe's topology)
COMPARED = (70, 105, 107, 336, 334, 300, 33, 133, 362, 263, 168, 6, 4, 1, 61, 291, 0, 17, 152, 199)
RIGHT_EYE, LEFT_EYE = (33, 133), (362, 263)

_lock = threading.Lock()


@dataclass
class FaceCheck:
    """What the face detector saw in the render of an aligned candidate.

    score: detector score x presence x agreement, in [0, 1]; detector: the detector's score (0 when it found
    nothing); presence: the landmark model's face score; agreement: how well the landmarks sit where the ICT face's do;
    turn_deg: the in-plane angle (degrees) from where the ICT face's landmarks project to where the face's were
    found, i.e. the turn about the ICT forward axis (+Z) that puts the seen face upright (`turn`); scale: landmark
    spread over the ICT face's; shift: landmark offset in eye distances.
    """

    score: float
    detector: float = 0.0
    presence: float = 0.0
    agreement: float = 0.0
    turn_deg: float = 0.0
    scale: float = float("nan")
    shift: float = float("nan")

    @property
    def turn(self) -> np.ndarray:
        """(3, 3) rotation about the ICT forward axis (+Z) that puts the seen face upright: apply it after the
        alignment (``turn @ alignment.rotation``) when the face was found turned."""
        t = np.radians(self.turn_deg)
        c, s = np.cos(t), np.sin(t)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@functools.lru_cache(maxsize=1)
def _models():
    """The face detector and landmark model (loaded once; used under a lock: interpreters are not re-entrant)."""
    from nfs.video.landmarks import FaceDetector, FaceLandmarker

    return FaceDetector(), FaceLandmarker()


def detect_face(image: Image.Image) -> tuple[object, float] | None:
    """The most confident face's landmark region and detector score, or None (the video source's detector, which
    lists every face found; a detector giving one (region, score) pair or None works too)."""
    detector, _ = _models()
    found = detector.detect(image)
    if found is None or isinstance(found, tuple):
        return found
    if not found:
        return None
    best = max(found, key=lambda d: d.score)
    return best.region, float(best.score)


def face_landmarks(image: Image.Image, region) -> tuple[np.ndarray, float]:
    """(468, 2) landmark pixels (x right, y down) and the landmark model's face score for a detected region;
    models with more landmarks (iris points) keep the first 468, which share the face mesh topology."""
    _, landmarker = _models()
    points, score = landmarker.landmarks(image, region)
    return np.asarray(points, np.float64)[:468, :2], float(score)


@functools.lru_cache(maxsize=1)
def _expected() -> np.ndarray:
    """(468, 2) render pixels of the landmarks on the ICT mean face (the frontal camera of the view box)."""
    from nfs.video.correspondence import load_correspondence

    px, py, _ = to_pixels(load_correspondence().points, RENDER_SIZE)
    return np.stack([px, py], axis=1)


def render_candidate(vertices_ict: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(RENDER_SIZE, RENDER_SIZE, 3) uint8 frontal grey render of a mesh in the ICT frame (cm); triangles with a
    corner in front of the view box (nearer the camera than anything of a head) are left out."""
    v = np.asarray(vertices_ict, np.float64)
    f = np.asarray(faces, np.int64)
    front = VIEW_CENTER[2] + VIEW_HALF_EXTENT
    keep = (v[f, 2] < front).all(1)
    return render_shaded(v, f[keep], size=RENDER_SIZE)


def _similarity_2d(src: np.ndarray, dst: np.ndarray) -> tuple[complex, complex]:
    """Least-squares dst ~ a * src + b for (n, 2) points as complex numbers: a = scale * e^(i angle)."""
    s = src[:, 0] + 1j * src[:, 1]
    d = dst[:, 0] + 1j * dst[:, 1]
    sc, dc = s - s.mean(), d - d.mean()
    a = (np.conj(sc) @ dc) / max(float(np.real(np.conj(sc) @ sc)), 1e-12)
    return a, d.mean() - a * s.mean()


def check_render(image: np.ndarray) -> FaceCheck:
    """Face check of a render made by `render_candidate` (see the module docstring)."""
    base = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    size = base.size[0]
    best = None
    with _lock:
        for turn in TURNS_DEG:
            img = base.rotate(turn) if turn else base         # PIL: counter-clockwise, exact for quarter turns
            found = detect_face(img)
            if found is not None and (best is None or found[1] > best[2]):
                best = (turn, img, found[1], found[0])
        if best is None:
            return FaceCheck(0.0)
        turn, img, detector, region = best
        points, presence = face_landmarks(img, region)
    # the landmarks back in the unturned image: PIL turned the image counter-clockwise about its centre
    t = np.radians(turn)
    c = np.array([size / 2, size / 2])
    # on screen (y down) a counter-clockwise turn takes p to c + M (p - c), M = [[cos, sin], [-sin, cos]]; undo it
    turn_back = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    points = (points - c) @ turn_back + c
    expected = _expected() * (size / RENDER_SIZE)
    idx = np.array(COMPARED)
    a, b = _similarity_2d(expected[idx], points[idx])
    scale = float(abs(a))
    angle = float(np.degrees(np.angle(a)))                    # image frame (y down): positive = clockwise on screen
    eyes = np.linalg.norm(expected[list(RIGHT_EYE)].mean(0) - expected[list(LEFT_EYE)].mean(0))
    centre = expected[idx].mean(0)
    moved = a * (centre[0] + 1j * centre[1]) + b
    shift = float(abs(moved - (centre[0] + 1j * centre[1])) / eyes)
    agreement = float(np.exp(-(angle / TURN_TOLERANCE_DEG) ** 2 - (np.log(max(scale, 1e-6)) / SCALE_TOLERANCE) ** 2
                             - (shift / SHIFT_TOLERANCE) ** 2))
    return FaceCheck(float(detector * presence * agreement), float(detector), float(presence), agreement, angle, scale,
                     shift)


def check_face_render(vertices_ict: np.ndarray, faces: np.ndarray) -> FaceCheck:
    """Face check of a mesh already in the ICT frame (cm): render, detect, compare with the ICT face."""
    return check_render(render_candidate(vertices_ict, faces))


FIT_WEIGHT = 0.5                 # a geometric fit alone (no face seen) counts for at most half its confidence


def face_confidence(check: FaceCheck, fit_confidence: float) -> float:
    """The confidence that an aligned candidate is a face: the face check's score, or half the geometric fit's
    confidence (`nfs.mesh.align.alignment_confidence`) when that is higher (a face the detector does not read,
    e.g. a very stylised one, that fits ICT's shape well)."""
    fit = float(fit_confidence) if np.isfinite(fit_confidence) else 0.0
    return float(max(check.score, FIT_WEIGHT * fit))
