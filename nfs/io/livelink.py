"""iPhone Live Link Face CSV exports: timecodes and the 52 ARKit weights, mapped to ICT on a uniform time grid at
the take's own rate (or a chosen one)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from nfs.clips import DEFAULT_FPS, MAX_FRAMES, Clip, ClipError, check_frame_count, codes_clip, resample_linear
from nfs.arkit import ARKIT_NAMES, arkit_to_ict_matrix
from nfs.io.csv_table import column_index, read_csv_table, to_float

EXTENSIONS = (".csv",)
OPTIONAL_COLUMNS = ("tongueout",)  # dropped by the mapping to ICT anyway: a take without it is fine
LIVELINK_IGNORED = (
    "timecode", "blendshapecount", "headyaw", "headpitch", "headroll", "lefteyeyaw", "lefteyepitch",
    "lefteyeroll", "righteyeyaw", "righteyepitch", "righteyeroll",
)


def is_livelink_header(header_line: str) -> bool:
    """Whether a CSV's first line is a Live Link Face header (rather than our weight CSV's): a Timecode or
    BlendShapeCount column, or mostly ARKit names (a byte-order mark and any separator tolerated)."""
    line = header_line.lstrip("\ufeff").strip().lower()
    if line.startswith("timecode") or "blendshapecount" in line:
        return True
    fields = {f.strip() for f in re.split(r"[,;\t]", line)}
    return len(fields & {n.lower() for n in ARKIT_NAMES}) >= len(ARKIT_NAMES) // 2


_TIMECODE = re.compile(r"^\s*(\d+):(\d+):(\d+)[:;](\d+)(?:\.(\d+))?\s*$")
_TIMECODE_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 100.0, 120.0)


def _parse_timecodes(codes: list[str], rate: float | None, what: str) -> np.ndarray:
    """`hh:mm:ss:ff.sub` strings -> seconds from the first one.

    The rate of the frame field is inferred from the largest frame number seen (the smallest
    standard rate above it) when the clip crosses a second boundary; otherwise Live Link Face's default 30.
    """
    parts = np.zeros((len(codes), 4))
    for i, s in enumerate(codes):
        m = _TIMECODE.match(s)
        if m is None:
            raise ClipError(f"{what}: row {i + 1}: cannot read timecode {s!r} (expected hh:mm:ss:ff.sss)")
        h, mi, se, fr, sub = m.groups()
        parts[i] = int(h) * 3600 + int(mi) * 60 + int(se), int(fr), float("0." + sub) if sub else 0.0, 0
    secs, frame = parts[:, 0], parts[:, 1] + parts[:, 2]
    if rate is None:
        rate = DEFAULT_FPS  # within one second the frame numbers cannot tell the rate: Live Link Face's default
        if len(np.unique(secs)) > 1:
            top = parts[:, 1].max()
            rate = next((r for r in _TIMECODE_RATES if r > top), top + 1)
    if (parts[:, 1] >= rate).any():
        raise ClipError(f"{what}: timecode frame number {int(parts[:, 1].max())} is not below the rate {rate:g}")
    t = secs + frame / rate
    step = np.diff(t)
    wrap = step < -43200  # recording crossed midnight
    t[1:] += 86400.0 * np.cumsum(wrap)
    step = np.diff(t)
    if (step < 0).any():
        raise ClipError(f"{what}: timecodes go backwards at row {int(np.argmax(step < 0)) + 2}")
    return t - t[0]


def capture_rate(times: np.ndarray) -> float:
    """Samples per second of a take from its sample times (s): one over the median step, snapped to a standard rate
    within 2 % (capture clocks jitter); DEFAULT_FPS for a take of one sample."""
    steps = np.diff(times)
    steps = steps[steps > 0]
    if not len(steps):
        return DEFAULT_FPS
    rate = 1.0 / float(np.median(steps))
    return next((r for r in _TIMECODE_RATES if abs(rate - r) <= 0.02 * r), round(rate, 3))


def load_livelink_csv(path, fps: float | None = None, timecode_fps: float | None = None,
                      max_frames: int = MAX_FRAMES, name: str | None = None) -> Clip:
    """An iPhone Live Link Face CSV export -> codes Clip on a uniform grid at the take's own rate (`capture_rate`:
    a 60 fps take stays 60 fps), or resampled to `fps`.

    Columns (case-insensitive): Timecode, BlendshapeCount, the 52 ARKit names (``EyeBlinkLeft``,
    ``JawOpen``, ...) and head/eye rotations (ignored). ARKit weights map to ICT with
    ``arkit_to_ict_matrix`` (browInnerUp and cheekPuff drive both ICT halves; tongueOut is dropped).
    `timecode_fps` is the rate of the timecode's frame field (inferred when None).
    """
    path = Path(path)
    what = path.name
    header, rows = read_csv_table(path, 8 * max_frames)
    livelink_names = [n[0].upper() + n[1:] for n in ARKIT_NAMES]  # the app's spelling, for messages
    lower = [h.lower() for h in header]
    optional = [n for n in livelink_names if n.lower() in OPTIONAL_COLUMNS and n.lower() not in lower]
    wanted = [n for n in livelink_names if n not in optional]
    cols = column_index(header, wanted, LIVELINK_IGNORED, what)
    if "timecode" not in lower:
        raise ClipError(f"{what}: missing columns: Timecode")
    check_frame_count(len(rows), what, 8 * max_frames)
    times, warnings = spread_repeated_times(
        _parse_timecodes([r[lower.index("timecode")] for r in rows], timecode_fps, what),
        DEFAULT_FPS if fps is None else fps, what)
    arkit = np.zeros((len(rows), len(livelink_names)))
    arkit[:, [livelink_names.index(n) for n in wanted]] = to_float(rows, cols, header, what)
    arkit_cols = [cols[wanted.index(n)] if n in wanted else cols[0] for n in livelink_names]
    bad = ~np.isfinite(arkit)
    if bad.any():
        r, j = np.argwhere(bad)[0]
        raise ClipError(f"{what}: non-finite value at row {r + 1}, {header[arkit_cols[j]]}")
    fps = capture_rate(times) if fps is None else float(fps)
    if not (np.isfinite(fps) and fps > 0):
        raise ClipError(f"{what}: fps must be positive, got {fps}")
    n_out = int(np.floor(times[-1] * fps + 1e-6)) + 1
    check_frame_count(n_out, what, max_frames)
    notes = []
    steps = np.diff(times)
    steps = steps[steps > 0]
    if len(steps):
        take_fps = 1.0 / float(np.median(steps))
        if abs(take_fps - fps) > 0.02 * fps:
            notes.append(f"{take_fps:.3g} fps take resampled to {fps:g} fps ({len(rows)} -> {n_out} frames; use "
                         f"--fps {take_fps:.3g} / the fps field to keep it)")
    arkit = resample_linear(times, arkit, fps)
    return codes_clip(name or path.stem, arkit @ arkit_to_ict_matrix().astype(np.float64), fps, max_frames,
                      list(notes) + warnings)


def spread_repeated_times(times: np.ndarray, fps: float, what: str) -> tuple[np.ndarray, list[str]]:
    """Rows that share a timecode (no sub-frame field) would collapse into one frame: when every row has the
    same time, the rows are taken one per frame at `fps` (the chosen rate, else DEFAULT_FPS); otherwise each run of equal times is spread evenly
    up to the next distinct time. Returns the times and the warnings to show."""
    if len(times) < 2 or not (np.diff(times) == 0).any():
        return times, []
    if times[-1] == times[0]:
        return np.arange(len(times)) / fps, [f"{what}: all {len(times)} rows share one timecode: taken as "
                                              f"consecutive frames at {fps:g} fps"]
    out = times.astype(np.float64).copy()
    starts = np.concatenate([[0], np.nonzero(np.diff(times) > 0)[0] + 1, [len(times)]])
    step = np.median(np.diff(np.unique(times)))
    for a, b in zip(starts[:-1], starts[1:]):
        nxt = times[b] if b < len(times) else times[a] + step
        out[a:b] = times[a] + (nxt - times[a]) * np.arange(b - a) / (b - a)
    repeated = int(len(times) - len(np.unique(times)))
    return out, [f"{what}: {repeated} rows repeat the previous row's timecode: spread evenly within their frame"]
