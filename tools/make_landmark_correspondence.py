"""Regenerate nfs/resources/mediapipe_ict.npz: where MediaPipe's 468 face landmarks sit on the ICT skin.

See nfs/video/correspondence.py for the method. Deterministic (fixed identities and views).

    python tools/make_landmark_correspondence.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from nfs.video.correspondence import CORRESPONDENCE_PATH, build_correspondence


def main() -> int:
    arrays = build_correspondence()
    np.savez_compressed(CORRESPONDENCE_PATH, **arrays)
    print(f"wrote {CORRESPONDENCE_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
