"""Files nfs ships, found with importlib.resources (never through the repository root).

The ICT-FaceKit model stays in ``third_party/ict-facekit`` with its LICENSE (MediaPipe's face models in
``third_party/mediapipe`` with theirs), the shipped network in ``ckpts/`` and
the built-in clips in ``assets/clips``; the entries here are links to them, so the package finds them wherever it
is imported from.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

RESOURCES = Path(str(files(__name__)))
ICT_MODEL_PATH = RESOURCES / "ict-facekit" / "ict_face_model.npz"   # ICT-FaceKit (MIT), packed by tools/pack_ict.py
REGIONS_PATH = RESOURCES / "ict_regions.npz"                        # the skinning regions on the ICT skin
SHIPPED_MODEL_DIR = RESOURCES / "shipped_model"                     # the trained network (ckpts/nfs_cpu)
BUILTIN_CLIPS_DIR = RESOURCES / "clips"                             # the built-in clips (assets/clips)
MEDIAPIPE_DIR = RESOURCES / "mediapipe"                            # MediaPipe face models (Apache-2.0), third_party
LANDMARK_CORRESPONDENCE_PATH = RESOURCES / "mediapipe_ict.npz"     # 468 landmarks on the ICT skin (nfs/video)
ICT_DERIVED_PATH = RESOURCES / "ict_derived.npz"                   # arrays derived from ICT (nfs/ict_derived.py)
