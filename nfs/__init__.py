"""nfs: mesh-agnostic facial expression cloning after Neural Face Skinning (Cha et al., CGF 2025)."""

from pathlib import Path

__version__ = "0.1.0"
REPO_ROOT = Path(__file__).resolve().parents[1]
