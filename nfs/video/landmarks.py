"""MediaPipe Face Landmarker v2, run with the LiteRT interpreter: face detector, 478 landmarks (with irises), the 52
ARKit blendshape scores and the facial transformation matrix (head pose).

The model bundle `face_landmarker_v2.task` (a zip of three `.tflite` models and the canonical face's metadata) ships
in third_party/mediapipe/ (Apache-2.0; see its README). Nothing is downloaded. The pipeline follows MediaPipe's own
face landmarker graph, step for step, so the results equal the `mediapipe` package's on the same frames
(tests/test_video_models.py compares them):

1. detector: the frame letterboxed to 128 x 128, 896 anchors, weighted non-maximum suppression; every face found.
2. region: the face's box turned upright by the eye line (detector keypoints 0 and 1), 1.5 times, square.
3. landmarks: the region cropped to 256 x 256 ([0, 1] colours) -> 478 points and a face presence score; the next
   frame's region is the landmarks' own box (image axes), turned by the eye corners 33 -> 263, 1.5 times, square.
4. blendshapes: 146 of the landmarks (x, y in image pixels) -> 52 scores (`_neutral` then 51 ARKit names).
5. transformation matrix: the first 468 landmarks un-projected through MediaPipe's virtual perspective camera
   (vertical field of view 63 degrees, near plane 1 cm) and fitted to the canonical face (cm) by weighted
   Procrustes on 33 weighted landmarks (`face_geometry`).

Coordinates: image pixels, x right, y down, pixel (i, j) has its centre at (j + 0.5, i + 0.5) (MediaPipe's
normalised coordinates times the image size). Landmark z is the model's relative depth in the same pixel scale
(smaller = nearer the camera).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image

from nfs.arkit import ARKIT_NAMES
from nfs.video.bundle import (CAMERA_NEAR_CM, CAMERA_VERTICAL_FOV_DEG, MODEL_BUNDLE, N_LANDMARKS,  # noqa: F401
                              N_MESH, bundle_files)
DETECTOR_SIZE = 128
LANDMARK_SIZE = 256
DETECTION_THRESHOLD = 0.5
SUPPRESSION_IOU = 0.3
FACE_THRESHOLD = 0.5
ROI_SCALE = 1.5                 # the landmark crop is this many times the face box (MediaPipe's value)
RIGHT_EYE_CORNER, LEFT_EYE_CORNER = 33, 263   # the subject's right / left outer eye corners (region rotation)
RECHECK_FACES_EVERY = 30        # while tracking, the detector runs this often to count the faces in view

# The blendshape model's input: these 146 of the 478 landmarks, in this order (MediaPipe's face blendshapes graph).
BLENDSHAPE_LANDMARKS = np.array([
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78,
    80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149, 150, 152,
    153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246,
    249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312,
    314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381,
    382, 384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472,
    473, 474, 475, 476, 477])
# The model's 52 outputs: `_neutral`, then the ARKit names in alphabetical order (no tongueOut).
BLENDSHAPE_OUTPUTS = ("_neutral",) + tuple(sorted(n for n in ARKIT_NAMES if n != "tongueOut"))
_TO_ARKIT = np.array([ARKIT_NAMES.index(n) for n in BLENDSHAPE_OUTPUTS[1:]])

def _interpreter(name: str, threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:  # pragma: no cover - requirements.txt installs it
        raise RuntimeError("the video source needs the ai-edge-litert package (pip install -r requirements.txt)") from e
    it = Interpreter(model_content=bundle_files()[name], num_threads=threads)
    it.allocate_tensors()
    return it


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -100.0, 100.0)))


@functools.lru_cache(maxsize=1)
def detector_anchors() -> np.ndarray:
    """(896, 2) anchor centres (x, y in 0..1) of the short-range detector: 2 anchors per cell on the stride-8 grid
    (16 x 16), 6 per cell on the stride-16 grid (8 x 8); fixed size 1, so boxes decode relative to the input."""
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = DETECTOR_SIZE // stride
        yy, xx = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        cells = np.stack([xx.ravel(), yy.ravel()], 1)
        out.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


@dataclass
class Region:
    """A rotated square crop: centre (x, y) px, side px, rotation rad (image turned by -angle makes the face upright)."""

    cx: float
    cy: float
    size: float
    angle: float

    def crop_matrix(self, out_size: int) -> np.ndarray:
        """(2, 3) affine from crop pixel coordinates (u, v) to image coordinates (x, y)."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        k = self.size / out_size
        return np.array([[c * k, -s * k, self.cx - (c * k * out_size / 2 - s * k * out_size / 2)],
                         [s * k, c * k, self.cy - (s * k * out_size / 2 + c * k * out_size / 2)]])


def crop(image: Image.Image, region: Region, out_size: int) -> np.ndarray:
    """(out, out, 3) uint8 bilinear crop of a PIL image along a rotated region (outside the image: black).

    Sampled where MediaPipe's crop samples (OpenCV's warp, whose pixel (i, j) sits at (j, i)): output pixel (u, v)
    reads the image at corner + R (u, v) k, taken as pixel indices, a half-pixel shift from the exact crop."""
    m = region.crop_matrix(out_size)
    m[:, 2] += 0.5 - m[:, :2] @ np.array([0.5, 0.5])
    out = image.transform((out_size, out_size), Image.Transform.AFFINE, data=tuple(m.ravel()),
                          resample=Image.Resampling.BILINEAR)
    return np.asarray(out)


def _angle(p_start: np.ndarray, p_end: np.ndarray) -> float:
    """Rotation that makes the line from the subject's right eye to the left eye horizontal (MediaPipe's rule)."""
    a = -np.arctan2(-(p_end[1] - p_start[1]), p_end[0] - p_start[0])
    return float((a + np.pi) % (2 * np.pi) - np.pi)


@dataclass
class Detection:
    """One face found by the detector: the landmark model's region, the score and the box area (px^2)."""

    region: Region
    score: float
    area: float


class FaceDetector:
    """MediaPipe's short-range (selfie distance) face detector, as bundled with the face landmarker."""

    def __init__(self, threads: int = 1):
        self.it = _interpreter("face_detector.tflite", threads)
        self.inp = self.it.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self.it.get_output_details()}
        self.out_boxes, self.out_scores = outs["regressors"], outs["classificators"]

    def detect(self, image: Image.Image) -> list[Detection]:
        """Every face above the threshold, largest first."""
        w, h = image.size
        side = float(max(w, h))                                  # letterbox the frame into a square
        square = Region(w / 2, h / 2, side, 0.0)
        x = crop(image, square, DETECTOR_SIZE).astype(np.float32) / 127.5 - 1.0
        self.it.set_tensor(self.inp, x[None])
        self.it.invoke()
        raw = self.it.get_tensor(self.out_boxes)[0]
        scores = _sigmoid(self.it.get_tensor(self.out_scores)[0, :, 0])
        anchors = detector_anchors()
        boxes = raw[:, :4] / DETECTOR_SIZE
        centres = anchors + boxes[:, :2]
        sizes = np.abs(boxes[:, 2:4])
        lo, hi = centres - sizes / 2, centres + sizes / 2
        keypoints = anchors[:, None] + raw[:, 4:16].reshape(-1, 6, 2) / DETECTOR_SIZE
        to_image = lambda p: (p - 0.5) * side + np.array([w / 2, h / 2])   # noqa: E731 - square crop -> pixels
        left = scores >= DETECTION_THRESHOLD
        found = []
        while left.any():
            # weighted non-maximum suppression: the boxes overlapping the best one are averaged, weighted by score
            best = int(np.argmax(np.where(left, scores, -1.0)))
            inter = np.prod(np.clip(np.minimum(hi, hi[best]) - np.maximum(lo, lo[best]), 0, None), axis=1)
            iou = inter / (np.prod(sizes, 1) + np.prod(sizes[best]) - inter + 1e-12)
            group = left & (iou > SUPPRESSION_IOU)
            group[best] = True
            wts = scores[group] / scores[group].sum()
            kp = np.einsum("n,nkc->kc", wts, keypoints[group])
            c, size = to_image(wts @ centres[group]), wts @ sizes[group] * side
            region = Region(float(c[0]), float(c[1]), float(max(size) * ROI_SCALE),
                            _angle(to_image(kp[0]), to_image(kp[1])))
            found.append(Detection(region, float(scores[best]), float(size[0] * size[1])))
            left &= ~group
        return sorted(found, key=lambda d: -d.area)


class FaceLandmarker:
    """MediaPipe's 478-point face landmark model (v2, with irises)."""

    def __init__(self, threads: int = 1):
        self.it = _interpreter("face_landmarks_detector.tflite", threads)
        self.inp = self.it.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self.it.get_output_details()}
        self.out_points, self.out_face = outs["Identity"], outs["Identity_1"]

    def landmarks(self, image: Image.Image, region: Region) -> tuple[np.ndarray, float]:
        """(478, 3) landmarks in image pixels (x, y, relative depth z) and the face presence score (0..1)."""
        x = crop(image, region, LANDMARK_SIZE).astype(np.float32) / 255.0
        self.it.set_tensor(self.inp, x[None])
        self.it.invoke()
        pts = self.it.get_tensor(self.out_points).reshape(N_LANDMARKS, 3).astype(np.float64)
        score = float(_sigmoid(self.it.get_tensor(self.out_face).ravel()[0]))
        m = region.crop_matrix(LANDMARK_SIZE)
        out = np.empty_like(pts)
        out[:, :2] = pts[:, :2] @ m[:, :2].T + m[:, 2]
        # depth in pixels as MediaPipe scales it: by the length of the crop's x axis in normalised image
        # coordinates (x / width, y / height), so a turned crop in a non-square frame scales z a little more
        w, h = image.size
        out[:, 2] = pts[:, 2] * region.size / LANDMARK_SIZE * np.hypot(np.cos(region.angle), np.sin(region.angle) * w / h)
        return out, score


class BlendshapeModel:
    """MediaPipe's blendshape model: 146 landmarks -> the 52 ARKit scores."""

    def __init__(self, threads: int = 1):
        self.it = _interpreter("face_blendshapes.tflite", threads)
        self.inp = self.it.get_input_details()[0]["index"]
        self.out = self.it.get_output_details()[0]["index"]

    def scores(self, points: np.ndarray) -> np.ndarray:
        """(52,) scores in `nfs.arkit.ARKIT_NAMES` order (tongueOut 0) from (478, 3) landmarks in image pixels."""
        self.it.set_tensor(self.inp, np.asarray(points[BLENDSHAPE_LANDMARKS, :2], np.float32)[None])
        self.it.invoke()
        raw = self.it.get_tensor(self.out).ravel()
        out = np.zeros(len(ARKIT_NAMES), np.float32)
        out[_TO_ARKIT] = raw[1:]
        return out


def region_from_landmarks(points: np.ndarray, frame_size: tuple[int, int]) -> Region:
    """The next frame's crop from this frame's landmarks: their box along the image axes, turned by the eye line,
    1.5 times its longer side (MediaPipe's rule; `frame_size` (width, height) is unused but kept for clarity)."""
    xy = points[:, :2]
    lo, hi = xy.min(0), xy.max(0)
    mid = (lo + hi) / 2
    return Region(float(mid[0]), float(mid[1]), float(max(hi - lo) * ROI_SCALE),
                  _angle(points[RIGHT_EYE_CORNER], points[LEFT_EYE_CORNER]))


@dataclass
class Tracked:
    """What the landmarker saw in one frame (points None when no face was found)."""

    points: np.ndarray | None     # (478, 3) px
    score: float                  # face presence score
    detected: bool                # the detector ran on this frame
    faces: int = 0                # faces the detector counted (when it ran; else the last count)
    blendshapes: np.ndarray | None = None   # (52,) ARKit scores, `nfs.arkit.ARKIT_NAMES` order
    matrix: np.ndarray | None = None        # (4, 4) canonical face (cm) -> camera space (cm)


class FaceTracker:
    """Face Landmarker v2 frame after frame (MediaPipe's VIDEO mode): detect, then follow the face with the landmark
    model's own region; the detector runs again when the face is lost, and every RECHECK_FACES_EVERY frames to count
    the faces in view. With several faces it follows the largest."""

    def __init__(self, threads: int = 1, blendshapes: bool = True, geometry: bool = True):
        from nfs.video.face_geometry import FaceGeometry
        self.detector = FaceDetector(threads)
        self.landmarker = FaceLandmarker(threads)
        self.blendshape_model = BlendshapeModel(threads) if blendshapes else None
        self.geometry = FaceGeometry() if geometry else None
        self.reset()

    def reset(self) -> None:
        self.region: Region | None = None
        self.faces = 0
        self.frames = 0

    def _detect_upside_down(self, image: Image.Image) -> list[Detection]:
        """The detector only finds upright faces: look again in the frame turned half a turn, and turn what it
        finds back (the landmark model then reads the face along its own eye line)."""
        w, h = image.size
        found = self.detector.detect(image.transpose(Image.Transpose.ROTATE_180))
        for d in found:
            r = d.region
            d.region = Region(w - r.cx, h - r.cy, r.size, float((r.angle + 2 * np.pi) % (2 * np.pi) - np.pi))
        return found

    def _finish(self, pts, score, detected, size) -> Tracked:
        bs = self.blendshape_model.scores(pts) if self.blendshape_model is not None else None
        mat = self.geometry.matrix(pts, size) if self.geometry is not None else None
        return Tracked(pts, score, detected, self.faces, bs, mat)

    def __call__(self, frame: np.ndarray, track: bool = True) -> Tracked:
        """Landmarks of one (H, W, 3) uint8 frame; `track=False` detects afresh (MediaPipe's IMAGE mode)."""
        image = Image.fromarray(np.ascontiguousarray(frame[..., :3]))
        size = image.size
        self.frames += 1
        if not track:
            self.region = None
        elif self.region is not None and self.frames % RECHECK_FACES_EVERY == 0:
            self.faces = len(self.detector.detect(image))
        if self.region is not None:
            pts, score = self.landmarker.landmarks(image, self.region)
            if score >= FACE_THRESHOLD:
                self.region = region_from_landmarks(pts, size)
                return self._finish(pts, score, False, size)
        found = self.detector.detect(image)
        self.faces = len(found)
        pts, score = (self.landmarker.landmarks(image, found[0].region)) if found else (None, 0.0)
        if score < FACE_THRESHOLD:
            # the detector finds upright faces only (and may take an upside-down one for a weak, wrong box)
            turned = self._detect_upside_down(image)
            if turned:
                pts2, score2 = self.landmarker.landmarks(image, turned[0].region)
                if score2 > score:
                    pts, score, self.faces = pts2, score2, len(turned)
        if pts is None or score < FACE_THRESHOLD:
            self.region = None
            return Tracked(None, score, True, self.faces)
        self.region = region_from_landmarks(pts, size)
        return self._finish(pts, score, True, size)
