"""Figures of the evaluation: per-vertex error heat maps (model vs the best baseline) and a bar chart per category."""
from __future__ import annotations

from pathlib import Path

import numpy as np

HEAT_PREFERENCE = ("ict", "remesh_25k", "warp_features", "remesh_3k", "crop_face", "warp_wendland", "exaggerated",
                   "eyes", "crop_narrow", "neck_cut", "remesh_6k", "auto_align")
BASELINE_NAMES = ("template_prior", "nearest_point", "deformation_transfer")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def colorize(values: np.ndarray, vmax: float, cmap: str = "inferno") -> np.ndarray:
    """(V,) non-negative values -> (V, 3) float RGB in [0, 1], 0..vmax mapped over the colormap."""
    import matplotlib
    return matplotlib.colormaps[cmap](np.clip(values / max(vmax, 1e-9), 0.0, 1.0))[:, :3]


def best_baseline(summary: list[dict], category: str) -> str:
    """The baseline with the lower mean error on a category."""
    rows = {r["method"]: r["mean_mm"] for r in summary if r["category"] == category}
    return min(BASELINE_NAMES, key=lambda m: rows.get(m, np.inf))


def error_heatmaps(heat: list, summary: list[dict], path: Path, n_targets: int = 3, size: int = 360) -> Path:
    """Rows: up to 3 targets (by HEAT_PREFERENCE); columns: model error, best-baseline error (mean over frames,
    mm, shared colour scale per row = 99th percentile of both), rendered with `render_shaded`."""
    from nfs.pipeline import render_shaded
    plt = _pyplot()
    by_cat = {h.category: h for h in heat}
    chosen = [by_cat[c] for c in HEAT_PREFERENCE if c in by_cat][:n_targets]
    fig, axes = plt.subplots(len(chosen), 2, figsize=(7.2, 3.5 * len(chosen)), squeeze=False)
    for row, h in zip(axes, chosen):
        base = best_baseline(summary, h.category)
        vmax = float(np.percentile(np.concatenate([h.errors["model"], h.errors[base]]), 99))
        for ax, method in zip(row, ("model", base)):
            img = render_shaded(h.vertices, h.faces, colors=colorize(h.errors[method], vmax), size=size)
            ax.imshow(img)
            ax.set_axis_off()
            mean = float(np.mean(h.errors[method]))
            ax.set_title(f"{h.name}\n{'NFS model' if method == 'model' else method.replace('_', ' ')} "
                         f"(vertex mean {mean:.2f} mm)", fontsize=8)
        sm = plt.cm.ScalarMappable(cmap="inferno", norm=plt.Normalize(0, vmax))
        fig.colorbar(sm, ax=list(row), fraction=0.03, pad=0.02, label="mean error over frames (mm)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def category_bars(summary: list[dict], path: Path, key: str = "mean_mm") -> Path:
    """Grouped bars: per category, the mean face-region error of the model and the two baselines."""
    plt = _pyplot()
    cats = list(dict.fromkeys(r["category"] for r in summary))
    methods = ("model",) + BASELINE_NAMES
    colors = {"model": "#d62728", "template_prior": "#ff7f0e", "nearest_point": "#1f77b4",
              "deformation_transfer": "#2ca02c"}
    by = {(r["category"], r["method"]): r[key] for r in summary}
    methods = tuple(m for m in methods if any((c, m) in by for c in cats))
    x = np.arange(len(cats))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(cats) + 2), 3.8))
    for i, m in enumerate(methods):
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, [by.get((c, m), np.nan) for c in cats], width,
               label=m.replace("_", " "),
               color=colors[m])
    ax.set_xticks(x)
    ax.set_xticklabels(cats, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("mean per-vertex error, face region (mm)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
