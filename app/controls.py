"""The app's controls for the shared run options, made from `nfs.options` (label, bounds, step, default, help), so
the app and the command line cannot disagree."""
from __future__ import annotations

import gradio as gr

from nfs.options import EXPORT_LABELS, option_specs


def _label(name: str) -> str:
    spec = option_specs()[name]
    unit = f" ({spec.unit})" if spec.unit and spec.unit != "x" else ""
    zero = f"; 0: {spec.zero_means}" if spec.zero_means else ""
    return f"{spec.label}{unit}{zero}" if zero else f"{spec.label}{unit}"


def option_slider(name: str, **kwargs) -> gr.Slider:
    """A slider for a numeric option: its bounds, step and default."""
    spec = option_specs()[name]
    return gr.Slider(spec.minimum, spec.maximum, value=spec.default, step=spec.step, label=_label(name),
                     info=spec.help, **kwargs)


def option_number(name: str, **kwargs) -> gr.Number:
    """A number field for a numeric option: its bounds, step and default."""
    spec = option_specs()[name]
    return gr.Number(spec.default, minimum=spec.minimum, maximum=spec.maximum, step=spec.step, label=_label(name),
                     info=spec.help, **kwargs)


def option_checkbox(name: str, **kwargs) -> gr.Checkbox:
    """A checkbox for an on/off option, with its default."""
    spec = option_specs()[name]
    return gr.Checkbox(value=spec.default, label=spec.label, info=spec.help, **kwargs)


def export_choices(kinds) -> list[tuple[str, str]]:
    """(label, kind) pairs of export kinds, for a CheckboxGroup."""
    return [(EXPORT_LABELS[k], k) for k in kinds]
