"""Per-row run options of a batch manifest: the columns a row may carry besides `target` and `clip`.

Every option of `nfs.options.RetargetOptions` is a column (by its field name, or by its command-line flag without
the dashes: `smooth` for `smoothing_sigma`), except `device`, which is the batch's. A cell is checked by the option's
own bounds and choices (`OptionSpec.check`), so a bad value fails its own row with a message naming the column;
an empty cell takes the batch's value (`--exports`, `--gain` ... on the command line), and that in turn the
documented default.
"""
from __future__ import annotations

import dataclasses

from nfs.options import OptionError, RetargetOptions, option_specs, parse_exports as parse_export_list

BATCH_WIDE = ("device",)               # one value for the whole batch (--device), not per row
PREPARE_OPTIONS = ("force", "open_mouth")   # options that change the prepared target (part of its key)
CLIP_OPTIONS = ("neutral_frame", "keep_neutral", "dead_zone", "shape_gains")   # applied when the clip is loaded
                                                                                # (part of its key)


class RowOptionError(ValueError):
    """A manifest cell that is not a valid value for its column."""


def row_columns() -> dict[str, str]:
    """{manifest column: RetargetOptions field}: each field's name, and its flag's name where it differs."""
    columns = {}
    for name, spec in option_specs().items():
        if name in BATCH_WIDE:
            continue
        columns[name] = name
        columns.setdefault(spec.flag.lstrip("-").replace("-", "_"), name)
    return columns


ROW_OPTIONS = row_columns()


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on", "y"):
        return True
    if value in ("0", "false", "no", "off", "n"):
        return False
    raise OptionError(f"expected yes/no (true/false, 1/0), got {text!r}")


def parse_exports(text: str) -> tuple | None:
    """'auto' (or empty) -> None (the run's default), 'all' -> every kind, else a checked list (comma, ';' or
    space separated)."""
    return parse_export_list(text.replace(";", ",").replace(" ", ",")) if text.strip() else None


def parse_cell(name: str, text: str):
    """One cell's text -> the option's value, checked by the option's own spec."""
    spec = option_specs()[name]
    if spec.kind == "bool":
        return spec.check(_flag(text))
    if spec.kind == "choices":
        return parse_exports(text)
    return spec.check(text)


def column_name(header: str) -> str:
    return header.strip().lower().replace("-", "_").replace(" ", "_")


def check_columns(headers: list[str]) -> list[str]:
    """The option columns among a manifest's headers; an unknown column is an error naming the known ones."""
    names = [column_name(h) for h in headers]
    unknown = [h for h, n in zip(headers, names) if n not in ROW_OPTIONS and n not in ("target", "clip")]
    if unknown:
        raise ValueError(f"unknown manifest column {', '.join(repr(u) for u in unknown)}; columns: target, clip, "
                         f"and the options {', '.join(sorted(set(ROW_OPTIONS)))}")
    return [n for n in names if n in ROW_OPTIONS]


def parse_row_options(cells: dict[str, str], defaults: RetargetOptions) -> RetargetOptions:
    """One row's options: its non-empty cells over `defaults`, validated. Raises RowOptionError naming the
    column."""
    values = {}
    for column, text in cells.items():
        if text is None or not str(text).strip():
            continue
        try:
            values[ROW_OPTIONS[column]] = parse_cell(ROW_OPTIONS[column], str(text).strip())
        except OptionError as e:
            message = str(e)
            message = message.partition(": ")[2] if message.startswith("--") else message
            raise RowOptionError(f"column {column}: {message}") from None
    try:
        return dataclasses.replace(defaults, **values).validated()
    except OptionError as e:
        raise RowOptionError(str(e)) from None


def retarget_keywords(options: RetargetOptions) -> dict:
    """The `retarget` keyword arguments of a row's options (the device is the batch's, passed on its own)."""
    keywords = options.retarget_kwargs()
    keywords.pop("device", None)
    return keywords


def options_record(options: RetargetOptions) -> dict:
    """The options as plain JSON values (the completion record compares them)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(dataclasses.asdict(options).items())
            if k not in BATCH_WIDE}
