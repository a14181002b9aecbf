"""MediaPipe's Face Landmarker v2 bundle (`face_landmarker_v2.task`): its files, its landmark counts and the virtual
camera its transformation matrix assumes; what the landmark models (`landmarks`) and the face geometry
(`face_geometry`) both read."""
from __future__ import annotations

import functools
import zipfile

from nfs.resources import MEDIAPIPE_DIR as MODEL_DIR

MODEL_BUNDLE = MODEL_DIR / "face_landmarker_v2.task"
N_LANDMARKS = 478
N_MESH = 468                     # the face mesh proper; 468..477 are the two irises (centre and 4 rim points each)

# MediaPipe's virtual camera for the transformation matrix (its face landmarker's environment).
CAMERA_VERTICAL_FOV_DEG = 63.0
CAMERA_NEAR_CM = 1.0


@functools.lru_cache(maxsize=1)
def bundle_files() -> dict[str, bytes]:
    """The files of `face_landmarker_v2.task` by name (read once)."""
    if not MODEL_BUNDLE.is_file():
        raise FileNotFoundError(f"missing model bundle {MODEL_BUNDLE}; see third_party/mediapipe/README.md")
    with zipfile.ZipFile(MODEL_BUNDLE) as z:
        return {n: z.read(n) for n in z.namelist()}
