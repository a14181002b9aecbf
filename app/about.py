"""Text for the About panel: the device in use, the model card, the region legend and the heat-map scale."""
from __future__ import annotations

import html
import platform

import numpy as np

from nfs.pipeline import REGION_NAMES, region_colors

from app.viewer import heat_colors

_CARD_HIDDEN = {"config", "train_config"}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_lines(device: str = "auto") -> list[str]:
    """The device inference runs on (from `--device`), the CPU and the versions."""
    import os

    import torch

    from nfs.pipeline import describe_device
    lines = [f"device: {describe_device(device)} (`--device {device}`)"]
    if torch.cuda.is_available() and describe_device(device).startswith("CPU"):
        lines.append(f"a GPU is available ({torch.cuda.get_device_name(0)}): start with `--device auto` to use it")
    lines.append(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}")
    lines.append(f"torch {torch.__version__}, Python {platform.python_version()}")
    return lines


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return str(value)


def _phase_line(phase) -> str:
    """One training phase of a model card's history: what was done, its steps and minutes, then its other notes."""
    if not isinstance(phase, dict):
        return str(phase)
    head = f"phase {phase.get('phase', '?')}: {phase.get('what', '')}".rstrip(": ")
    if "steps" in phase:
        head += f" ({phase['steps']} steps"
        head += f", {float(phase['wall_time_s']) / 60:.0f} min)" if "wall_time_s" in phase else ")"
    rest = {k: v for k, v in phase.items() if k not in ("phase", "what", "steps", "wall_time_s")}
    return head + "".join(f"; {k.replace('_', ' ')}: {_fmt(v)}" for k, v in rest.items())


def model_card_markdown(card: dict, model_dir: str, untrained: bool = False) -> str:
    if untrained:
        return ("**Model: untrained random weights (`--random-init`, development only).** Results are "
                "meaningless; start the app without `--random-init` to use the shipped model.")
    lines = [f"**Model** from `{model_dir}`"]
    if "training_data" in card:
        lines.append(f"- training data: {card['training_data']}")
    for key in ("preset", "step", "wall_time_s", "device", "bf16"):
        if key in card:
            lines.append(f"- {key.replace('_', ' ')}: {_fmt(card[key])}")
    held_out = {k: v for k, v in card.items() if k.startswith(("val", "held", "test", "eval"))}
    if held_out:
        lines.append("- held-out errors: " + ", ".join(f"{k} {_fmt(v)}" for k, v in held_out.items()))
    else:
        lines.append("- held-out errors: not recorded in this model card (interim checkpoint)")
    others = {k: v for k, v in card.items() if k not in _CARD_HIDDEN | set(held_out)
              and k not in ("training_data", "preset", "step", "wall_time_s", "device", "bf16")}
    for k, v in others.items():
        if k == "history" and isinstance(v, list):
            lines.append("- training phases:")
            lines += [f"  - {_phase_line(phase)}" for phase in v]
            continue
        lines.append(f"- {k.replace('_', ' ')}: {_fmt(v)}")
    cfg = card.get("config", {})
    if cfg:
        lines.append(f"- network: width {cfg.get('width')}, {cfg.get('n_blocks')} blocks, k_eig {cfg.get('k_eig')}, "
                     f"code dim {cfg.get('code_dim')}, {cfg.get('n_regions')} regions")
    return "\n".join(lines)


def _swatch(rgb, text: str) -> str:
    r, g, b = (int(x) for x in rgb)
    return (f'<span style="display:inline-flex;align-items:center;margin:2px 10px 2px 0;font-size:13px">'
            f'<span style="width:14px;height:14px;border-radius:3px;margin-right:5px;border:1px solid #0003;'
            f'background:rgb({r},{g},{b})"></span>{html.escape(text)}</span>')


def region_legend_html() -> str:
    """The predicted-region colours (as drawn by the viewer) with their names."""
    colors = region_colors()
    items = "".join(_swatch(colors[i], name) for i, name in enumerate(REGION_NAMES))
    return f'<div id="region-legend" style="line-height:1.6">{items}</div>'


def heat_legend_html(code_name: str = "", peak: float | None = None) -> str:
    """The heat map's colour bar with ticks in the weight's own units (the network's skinning weight of one code
    dimension, dimensionless), and the scale stated."""
    colors = heat_colors()
    stops = ", ".join(f"rgb({c[0]},{c[1]},{c[2]})" for c in colors)
    of = f" of <b>{html.escape(code_name)}</b>" if code_name else ""
    bar = (f'<span style="display:inline-block;width:200px;height:12px;vertical-align:middle;'
           f'background:linear-gradient(90deg,{stops})"></span>')
    if peak is None or not np.isfinite(peak) or peak <= 0:
        return (f'<div id="heat-legend" style="font-size:13px">skinning weight{of}: {bar} from 0 (dark) to this '
                f'mesh\'s largest weight (yellow); load a target to see the values</div>')
    ticks = "".join(f'<span style="display:inline-block;width:50px;text-align:{a}">{peak * q:.2f}</span>'
                    for q, a in ((0.0, "left"), (0.25, "center"), (0.5, "center"), (0.75, "right")))
    return (f'<div id="heat-legend" style="font-size:13px">skinning weight{of} (the network\'s per-vertex weight, '
            f'dimensionless)<br>{bar} {peak:.2f}<br><span style="display:inline-block;width:200px">{ticks}</span>'
            f'<br>colour scale: 0 to {peak:.2f}, the largest weight of this dimension on this mesh; '
            f'{len(colors)} bands of {peak / len(colors):.2f}</div>')
