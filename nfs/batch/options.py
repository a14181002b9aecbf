"""Per-row run options of a batch manifest: the columns a row may carry besides `target` and `clip`, checked one
value at a time so that a bad value fails its own row with a message naming the column.

Each column is one `retarget` option (the same bounds as the command line). A row's empty cell takes the batch's
value (`--exports` and the other batch-wide options), and that in turn the pipeline's default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

MAX_SMOOTH_FRAMES = 120.0
MAX_GAIN = 3.0


class RowOptionError(ValueError):
    """A manifest cell that is not a valid value for its column."""


def _number(kind, low, high, low_open=False) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise RowOptionError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise RowOptionError(f"must be finite, got {text!r}")
        if (value <= low if low_open else value < low) or value > high:
            raise RowOptionError(f"must be in {'(' if low_open else '['}{low:g}, {high:g}], got {text}")
        return value
    return parse


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on", "y"):
        return True
    if value in ("0", "false", "no", "off", "n"):
        return False
    raise RowOptionError(f"expected yes/no (true/false, 1/0), got {text!r}")


def parse_exports(text: str) -> tuple | None:
    """'auto' -> None (the pipeline's default), 'all' -> every kind, else a checked list (comma, space or ';')."""
    from nfs.pipeline import EXPORT_KINDS
    text = text.strip().lower()
    if text in ("", "auto"):
        return None
    if text == "all":
        return tuple(EXPORT_KINDS)
    chosen = tuple(dict.fromkeys(e for e in text.replace(";", ",").replace(" ", ",").split(",") if e))
    unknown = [e for e in chosen if e not in EXPORT_KINDS]
    if unknown:
        raise RowOptionError(f"unknown export {', '.join(unknown)}; choose from {', '.join(EXPORT_KINDS)}, all "
                             "or auto")
    return chosen


@dataclass(frozen=True)
class RowOption:
    column: str        # the manifest column (dashes or underscores both accepted)
    keyword: str       # the `retarget` keyword it sets ("" for options applied before retarget)
    parse: Callable[[str], object]
    help: str


ROW_OPTIONS = {o.column: o for o in (
    RowOption("exports", "exports", parse_exports, "exports to write: glb,rig,obj_zip,mp4,avatar, all or auto"),
    RowOption("fps", "fps", _number(float, 1.0, 1000.0), "resample the clip to this frame rate"),
    RowOption("gain", "gain", _number(float, 0.0, MAX_GAIN), "expression gain on the 53 FACS weights"),
    RowOption("smooth", "smoothing_sigma", _number(float, 0.0, MAX_SMOOTH_FRAMES),
              "temporal Gaussian smoothing sigma, frames"),
    RowOption("glb_tolerance_mm", "glb_tolerance_mm", _number(float, 0.0, 100.0, low_open=True),
              "largest error of the animated GLB, mm"),
    RowOption("correction", "correction", _flag, "add the network's learned correction"),
    RowOption("head_pose", "head_pose", _flag, "video clips: the target follows the head's motion"),
    RowOption("force", "force", _flag, "go on with a target that does not look like a face"),
    RowOption("visemes", "visemes", _flag, "avatar export: also the 15 Oculus visemes as ARKit mixes"),
    RowOption("keep_existing_targets", "keep_existing_targets", _flag,
              "avatar export: keep the avatar's own morph targets of the same names"),
    RowOption("neutral_frame", "", _number(int, 0, 10**7), "video clips: the frame showing the relaxed face"),
)}
PREPARE_OPTIONS = ("force",)           # options that change the prepared target (part of its key)
CLIP_OPTIONS = ("neutral_frame",)      # options applied when the clip is loaded (part of its key)


def column_name(header: str) -> str:
    return header.strip().lower().replace("-", "_").replace(" ", "_")


def check_columns(headers: list[str]) -> list[str]:
    """The option columns among a manifest's headers; an unknown column is an error naming the known ones."""
    names = [column_name(h) for h in headers]
    unknown = [h for h, n in zip(headers, names) if n not in ROW_OPTIONS and n not in ("target", "clip")]
    if unknown:
        raise ValueError(f"unknown manifest column {', '.join(repr(u) for u in unknown)}; columns: target, clip, "
                         f"and options {', '.join(ROW_OPTIONS)}")
    return [n for n in names if n in ROW_OPTIONS]


def parse_row_options(cells: dict[str, str], defaults: dict) -> dict:
    """{column: value} for one row: its non-empty cells parsed, `defaults` (already parsed) for the rest. Raises
    RowOptionError naming the column."""
    values = dict(defaults)
    for column, text in cells.items():
        if text is None or not str(text).strip():
            continue
        try:
            values[column] = ROW_OPTIONS[column].parse(str(text).strip())
        except RowOptionError as e:
            raise RowOptionError(f"column {column}: {e}") from None
    return values


def retarget_keywords(values: dict) -> dict:
    """The `retarget` keyword arguments of parsed row options."""
    return {ROW_OPTIONS[c].keyword: v for c, v in values.items() if ROW_OPTIONS[c].keyword}
