"""Our expression-weight CSV: a ``frame`` column and the 53 ICT shape names, one row per frame."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nfs.clips import DEFAULT_FPS, MAX_FRAMES, Clip, ClipError, check_frame_count, codes_clip
from nfs.ict import EXPRESSION_NAMES
from nfs.io.csv_table import column_index, read_csv_table, to_float

EXTENSIONS = (".csv",)


def load_codes_csv(path, fps: float = DEFAULT_FPS, max_frames: int = MAX_FRAMES, name: str | None = None) -> Clip:
    """Our weight CSV: header ``frame`` + the 53 ICT names (any order, case-insensitive), one row
    per frame at `fps`. Returns a codes Clip (T, 53)."""
    path = Path(path)
    header, rows = read_csv_table(path, max_frames)
    what = path.name
    cols = column_index(header, ("frame",) + tuple(EXPRESSION_NAMES), (), what)
    check_frame_count(len(rows), what, max_frames)
    table = to_float(rows, cols, header, what)
    frame_no = table[:, 0]
    if np.isfinite(frame_no).all() and len(frame_no) > 1 and (np.diff(frame_no) <= 0).any():
        row = int(np.argmax(np.diff(frame_no) <= 0)) + 2
        raise ClipError(f"{what}: the frame column must increase, row {row} does not")
    return codes_clip(name or path.stem, table[:, 1:], fps, max_frames)


def save_codes_csv(path, codes: np.ndarray, decimals: int = 3):
    """Write (T, 53) ICT weights as our CSV (header ``frame`` + ICT names)."""
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or codes.shape[1] != len(EXPRESSION_NAMES):
        raise ValueError(f"codes must be (T, 53), got {codes.shape}")
    lines = [",".join(("frame",) + tuple(EXPRESSION_NAMES))]
    fmt = ",".join([f"%.{decimals}f"] * codes.shape[1])
    for t, row in enumerate(np.round(codes, decimals) + 0.0):  # + 0.0 turns -0.0 into 0.0
        lines.append(f"{t}," + fmt % tuple(row))
    Path(path).write_text("\n".join(lines) + "\n")
