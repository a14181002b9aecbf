"""MediaPipe face detection (short range) and the 468-point face landmark model, run with the LiteRT interpreter.

The two `.tflite` files ship in third_party/mediapipe/ (Apache-2.0; see its README). Nothing is downloaded.

Coordinates: image pixels, x right, y down, pixel (i, j) has its centre at (j + 0.5, i + 0.5). Landmark z is the
model's relative depth in the same pixel scale (smaller = nearer the camera), as MediaPipe defines it.

Tracking follows MediaPipe's own face mesh graph: the detector finds a face, a rotated square region of interest
around it (1.5 times the box, upright by the eye line) is cropped to 192 x 192 for the landmark model, and the next
frame's region comes from this frame's landmarks; the detector runs again only when the landmark model's face score
drops below the threshold.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image


from nfs.resources import MEDIAPIPE_DIR as MODEL_DIR
DETECTOR_PATH = MODEL_DIR / "face_detection_short_range.tflite"
LANDMARK_PATH = MODEL_DIR / "face_landmark.tflite"
N_LANDMARKS = 468
DETECTOR_SIZE = 128
LANDMARK_SIZE = 192
DETECTION_THRESHOLD = 0.5
FACE_THRESHOLD = 0.5
ROI_SCALE = 1.5                 # the landmark crop is this many times the face box (MediaPipe's value)
RIGHT_EYE_CORNER, LEFT_EYE_CORNER = 33, 263   # the subject's right / left outer eye corners (ROI rotation)


def _interpreter(path, threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:  # pragma: no cover - requirements.txt installs it
        raise RuntimeError("the video source needs the ai-edge-litert package (pip install -r requirements.txt)") from e
    if not os.path.isfile(path):
        raise FileNotFoundError(f"missing model file {path}; see third_party/mediapipe/README.md")
    it = Interpreter(model_path=str(path), num_threads=threads)
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
        # (x, y) = centre + R(angle) @ ((u, v) - out/2) * k
        return np.array([[c * k, -s * k, self.cx - (c * k * out_size / 2 - s * k * out_size / 2)],
                         [s * k, c * k, self.cy - (s * k * out_size / 2 + c * k * out_size / 2)]])


def crop(image: Image.Image, region: Region, out_size: int) -> np.ndarray:
    """(out, out, 3) uint8 bilinear crop of a PIL image along a rotated region (outside the image: black)."""
    m = region.crop_matrix(out_size)
    out = image.transform((out_size, out_size), Image.Transform.AFFINE, data=tuple(m.ravel()),
                          resample=Image.Resampling.BILINEAR)
    return np.asarray(out)


def _angle(p_right: np.ndarray, p_left: np.ndarray) -> float:
    """Rotation that makes the line from the subject's right eye to the left eye horizontal (MediaPipe's rule)."""
    a = -np.arctan2(-(p_left[1] - p_right[1]), p_left[0] - p_right[0])
    return float((a + np.pi) % (2 * np.pi) - np.pi)


class FaceDetector:
    """MediaPipe's short-range (selfie distance) face detector."""

    def __init__(self, threads: int = 1):
        self.it = _interpreter(DETECTOR_PATH, threads)
        self.inp = self.it.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self.it.get_output_details()}
        self.out_boxes, self.out_scores = outs["regressors"], outs["classificators"]

    def detect(self, image: Image.Image) -> tuple[Region, float] | None:
        """The most confident face as a landmark-model region and its score, or None below the threshold."""
        w, h = image.size
        side = float(max(w, h))                                  # letterbox the frame into a square
        square = Region(w / 2, h / 2, side, 0.0)
        x = crop(image, square, DETECTOR_SIZE).astype(np.float32) / 127.5 - 1.0
        self.it.set_tensor(self.inp, x[None])
        self.it.invoke()
        raw = self.it.get_tensor(self.out_boxes)[0]
        scores = _sigmoid(self.it.get_tensor(self.out_scores)[0, :, 0])
        best = int(np.argmax(scores))
        if scores[best] < DETECTION_THRESHOLD:
            return None
        # weighted average of the boxes overlapping the best one (MediaPipe's weighted non-maximum suppression)
        anchors = detector_anchors()
        boxes = raw[:, :4] / DETECTOR_SIZE
        centres = anchors + boxes[:, :2]
        sizes = boxes[:, 2:4]
        lo, hi = centres - sizes / 2, centres + sizes / 2
        inter = np.prod(np.clip(np.minimum(hi, hi[best]) - np.maximum(lo, lo[best]), 0, None), axis=1)
        iou = inter / (np.prod(sizes, 1) + np.prod(sizes[best]) - inter + 1e-12)
        group = (iou > 0.3) & (scores > DETECTION_THRESHOLD)
        wts = scores[group] / scores[group].sum()
        keypoints = (anchors[group, None] + raw[group, 4:16].reshape(-1, 6, 2) / DETECTOR_SIZE)
        kp = np.einsum("n,nkc->kc", wts, keypoints)
        centre = wts @ centres[group]
        size = wts @ sizes[group]
        to_image = lambda p: (p - 0.5) * side + np.array([w / 2, h / 2])   # noqa: E731 - square crop -> pixels
        c = to_image(centre)
        eye_r, eye_l = to_image(kp[0]), to_image(kp[1])
        region = Region(float(c[0]), float(c[1]), float(max(size) * side * ROI_SCALE), _angle(eye_r, eye_l))
        return region, float(scores[best])


class FaceLandmarker:
    """MediaPipe's 468-point face landmark model (no attention; the attention variant needs custom ops)."""

    def __init__(self, threads: int = 1):
        self.it = _interpreter(LANDMARK_PATH, threads)
        self.inp = self.it.get_input_details()[0]["index"]
        outs = sorted(self.it.get_output_details(), key=lambda d: -int(np.prod(d["shape"])))
        self.out_points, self.out_face = outs[0]["index"], outs[1]["index"]

    def landmarks(self, image: Image.Image, region: Region) -> tuple[np.ndarray, float]:
        """(468, 3) landmarks in image pixels (x, y, relative depth z) and the face score (0..1) for a region."""
        x = crop(image, region, LANDMARK_SIZE).astype(np.float32) / 255.0
        self.it.set_tensor(self.inp, x[None])
        self.it.invoke()
        pts = self.it.get_tensor(self.out_points).reshape(N_LANDMARKS, 3).astype(np.float64)
        score = float(_sigmoid(self.it.get_tensor(self.out_face).ravel()[0]))
        m = region.crop_matrix(LANDMARK_SIZE)
        out = np.empty_like(pts)
        out[:, :2] = pts[:, :2] @ m[:, :2].T + m[:, 2]
        out[:, 2] = pts[:, 2] * region.size / LANDMARK_SIZE
        return out, score


def region_from_landmarks(points: np.ndarray) -> Region:
    """The next frame's crop from this frame's landmarks: their box in the upright (eye-line) frame, 1.5 times."""
    angle = _angle(points[RIGHT_EYE_CORNER], points[LEFT_EYE_CORNER])
    c, s = np.cos(angle), np.sin(angle)
    xy = points[:, :2]
    centre = xy.mean(0)
    upright = (xy - centre) @ np.array([[c, -s], [s, c]])      # rotate by -angle
    lo, hi = upright.min(0), upright.max(0)
    mid = centre + np.array([[c, -s], [s, c]]) @ ((lo + hi) / 2)
    return Region(float(mid[0]), float(mid[1]), float(max(hi - lo) * ROI_SCALE), angle)


@dataclass
class Tracked:
    """Landmarks of one frame (None when no face was found) and how they were found."""

    points: np.ndarray | None     # (468, 3) px
    score: float
    detected: bool                # the detector ran on this frame


class FaceTracker:
    """Landmarks frame after frame: detect, then follow the face with the landmark model's own region."""

    def __init__(self, threads: int = 1):
        self.detector = FaceDetector(threads)
        self.landmarker = FaceLandmarker(threads)
        self.region: Region | None = None

    def reset(self) -> None:
        self.region = None

    def __call__(self, frame: np.ndarray) -> Tracked:
        image = Image.fromarray(np.ascontiguousarray(frame[..., :3]))
        detected = False
        if self.region is not None:
            pts, score = self.landmarker.landmarks(image, self.region)
            if score >= FACE_THRESHOLD:
                self.region = region_from_landmarks(pts)
                return Tracked(pts, score, False)
        found = self.detector.detect(image)
        detected = True
        if found is None:
            self.region = None
            return Tracked(None, 0.0, detected)
        pts, score = self.landmarker.landmarks(image, found[0])
        if score < FACE_THRESHOLD:
            self.region = None
            return Tracked(None, score, detected)
        # one more pass from the landmarks' own region: the detector's box is coarser than the tracked one
        region = region_from_landmarks(pts)
        pts2, score2 = self.landmarker.landmarks(image, region)
        if score2 >= score:
            pts, score, region = pts2, score2, region_from_landmarks(pts2)
        self.region = region
        return Tracked(pts, score, detected)
