"""The app's progress line for a long event: `nfs.progress.RunProgress` (the stage k of n, its own progress, the
time left, and a heartbeat that keeps the clock moving), under the name the app's handlers use."""
from __future__ import annotations

from nfs.pipeline import Progress as Emit  # noqa: F401  (a progress callback: (fraction, message) -> None)
from nfs.pipeline import RunProgress as StageProgress  # noqa: F401
