"""The eval's results and their report: per (target, method) metric rows, the per-category summary, the
markdown tables, results.md / results.csv / summary.csv / run_info.json and figures (`nfs.eval.run` fills them).
The benchmark is described from what the run was given (`BenchmarkResult.size`, a BenchmarkSize)."""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nfs.eval.baselines import DT_SCREEN

METHODS = ("model", "template_prior", "nearest_point", "deformation_transfer", "ict_rig")
# template_prior: the model with its learned correction switched off (only for models with a template prior)
BASELINES = ("template_prior", "nearest_point", "deformation_transfer")
METHOD_LABELS = {"model": "NFS model", "template_prior": "template prior alone", "nearest_point": "nearest point",
                 "deformation_transfer": "deformation transfer", "ict_rig": "ICT rig (by index)"}
METRIC_FIELDS = ("mean_mm", "rms_mm", "p95_mm", "max_mm", "inner_mse_mm2", "gain", "normal_deg", "eyelid_mm",
                 "lip_mm", "lip_ratio_jaw", "lid_gap_blink_mm", "flips", "flips_strict", "sawtooth_jaw",
                 "sawtooth_jaw_pct", "still_mm",
                 "jitter_mm", "gt_jitter_mm", "eyeball_mm", "eyeball_rigid_mm", "cycle_abs", "cycle_gt_abs",
                 "region_pct", "align_mm", "prepare_s", "frames_per_s")


@dataclass
class HeatMap:
    """Per-vertex mean error over the frames (mm) of each method on one target, for figures."""

    name: str
    category: str
    vertices: np.ndarray   # (V, 3) ICT-frame neutral
    faces: np.ndarray
    errors: dict           # method -> (V,) mm


@dataclass
class BenchmarkResult:
    size: Any                                         # the BenchmarkSize run
    expressions: Any                                  # its ExpressionSet (the source frames)
    rows: list = field(default_factory=list)          # one dict per (target, method)
    heat: list = field(default_factory=list)          # HeatMap of the first target of each category
    wall_s: float = 0.0
    cpu_s: float = 0.0                                # CPU time, all threads, workers included
    compute_dtype: str = ""                           # what the pipeline decoded in: "float32" or "bfloat16"

    def summary(self) -> list[dict]:
        """Per (category, method): means of every metric over the category's targets."""
        out = []
        cats = list(dict.fromkeys(r["category"] for r in self.rows))
        for c in cats:
            for m in METHODS:
                rs = [r for r in self.rows if r["category"] == c and r["method"] == m]
                if not rs:
                    continue
                row = {"category": c, "method": m, "targets": len(rs),
                       "vertices": int(np.mean([r["vertices"] for r in rs]))}
                for k in METRIC_FIELDS:
                    vals = np.array([r.get(k, np.nan) for r in rs], np.float64)
                    row[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
                out.append(row)
        return out


def hardware(compute_dtype: str) -> str:
    """CPU model name and core count (lscpu), torch threads, and whether the model ran in bf16 autocast
    (`compute_dtype`, the pipeline's type on this machine: "bfloat16" or "float32")."""
    name = platform.processor() or "unknown CPU"
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return (f"{name}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads, "
            f"bf16 autocast {'on' if compute_dtype == 'bfloat16' else 'off'}")


def _fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    if isinstance(x, (int, np.integer)):
        return str(x)
    return f"{x:.{digits}f}"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _by(summary: list[dict]) -> dict:
    return {(r["category"], r["method"]): r for r in summary}


def ratio(baseline: float, model: float) -> float:
    """Baseline error / model error (> 1: the model is better)."""
    return baseline / model if model > 0 and np.isfinite(baseline) else float("nan")


def _per_category(summary: list[dict]):
    """(category, the model's row, {method: row} of that category's baselines and ICT rig; {} where absent)."""
    by = _by(summary)
    for c in dict.fromkeys(r["category"] for r in summary):
        yield c, by[(c, "model")], {k: by.get((c, k), {}) for k in (*BASELINES, "ict_rig")}


def position_table(summary: list[dict]) -> str:
    """Face-region position error per category: model, baselines and the model's advantage ratios."""
    rows = []
    for c, m, other in _per_category(summary):
        pr, np_, dt, rig = (other[k] for k in (*BASELINES, "ict_rig"))
        rows.append([c, m["targets"], m["vertices"], _fmt(m["mean_mm"]), _fmt(m["rms_mm"]), _fmt(m["p95_mm"]),
                     _fmt(pr.get("mean_mm")), _fmt(np_.get("mean_mm")), _fmt(dt.get("mean_mm")),
                     _fmt(rig.get("mean_mm")),
                     _fmt(ratio(np_.get("mean_mm", np.nan), m["mean_mm"]), 2),
                     _fmt(ratio(dt.get("mean_mm", np.nan), m["mean_mm"]), 2)])
    return markdown_table(["category", "targets", "verts", "model mean", "model RMS", "model p95", "prior alone",
                           "nearest pt", "def. transfer", "ICT rig", "NP / model", "DT / model"], rows)


def protocol_table(summary: list[dict]) -> str:
    """The paper's figure: mean squared per-vertex error on the inner (narrow) face, mm^2."""
    rows = []
    for c, m, other in _per_category(summary):
        vals = [other[k].get("inner_mse_mm2", np.nan) for k in BASELINES]
        rows.append([c, _fmt(m["inner_mse_mm2"]), *(_fmt(v) for v in vals),
                     *(_fmt(ratio(v, m["inner_mse_mm2"]), 2) for v in vals)])
    return markdown_table(["category", "model", "prior alone", "nearest pt", "def. transfer", "prior / model",
                           "NP / model", "DT / model"], rows)


def network_gain_table(summary: list[dict]) -> str:
    """What the learned correction adds per category: the model against the template prior alone (the same
    pipeline with the correction off), inner-face MSE and mean error; positive % = the network helps."""
    rows = []
    for c, m, other in _per_category(summary):
        pr = other["template_prior"]
        if not pr:
            continue
        gain = lambda k: 100.0 * (pr[k] - m[k]) / pr[k] if pr.get(k, 0) > 0 else float("nan")  # noqa: E731
        rows.append([c, _fmt(m["inner_mse_mm2"]), _fmt(pr["inner_mse_mm2"]), _fmt(gain("inner_mse_mm2"), 1),
                     _fmt(m["mean_mm"]), _fmt(pr["mean_mm"]), _fmt(gain("mean_mm"), 1)])
    return markdown_table(["category", "model inner MSE", "prior alone", "network gain %", "model mean mm",
                           "prior alone", "network gain %"], rows)


def artist_table(summary: list[dict], artist_categories: tuple) -> str:
    """Artist-modelled heads (the rows of `artist_categories`): lip gap at jawOpen = 1 as a ratio to the truth,
    lid gap error at eyeBlink = 1, the largest vertex error of any frame and triangles turned over, per category
    and method."""
    rows = [[r["category"], METHOD_LABELS[r["method"]], _fmt(r["mean_mm"]), _fmt(r["still_mm"]),
             _fmt(r["lip_ratio_jaw"], 3), _fmt(r["lid_gap_blink_mm"], 2),
             _fmt(r["max_mm"], 2), _fmt(r["flips"], 0), _fmt(r["flips_strict"], 0), _fmt(r["sawtooth_jaw"], 0),
             _fmt(r["inner_mse_mm2"])]
            for r in summary if r["category"] in artist_categories and r["method"] != "ict_rig"]
    return markdown_table(["category", "method", "mean mm", "not moving mm", "lip gap ratio @ jawOpen 1",
                           "lid gap error mm @ eyeBlink 1", "max vertex error mm",
                           "triangles turned over (truth within 75 deg)", "turned over, truth not turned over",
                           "saw-tooth edges @ jawOpen 1", "inner MSE mm^2"], rows)


def quality_table(summary: list[dict]) -> str:
    """Normals, closures, temporal jitter, eyeballs per category and method."""
    rows = []
    for r in summary:
        if r["method"] == "ict_rig":
            continue
        rows.append([r["category"], METHOD_LABELS[r["method"]], _fmt(r["gain"], 2), _fmt(r["normal_deg"], 2),
                     _fmt(r["eyelid_mm"]),
                     _fmt(r["lip_mm"]), _fmt(r["jitter_mm"], 4), _fmt(r["gt_jitter_mm"], 4), _fmt(r["eyeball_mm"]),
                     _fmt(r["eyeball_rigid_mm"])])
    return markdown_table(["category", "method", "gain", "normal deg", "eyelid gap mm", "lip gap mm", "jitter mm/fr^2",
                           "GT jitter", "eyeball mm", "eyeball non-rigid mm"], rows)


def model_table(summary: list[dict]) -> str:
    """Model-only metrics: cycle consistency, regions, alignment, runtime."""
    rows = []
    for r in summary:
        if r["method"] != "model":
            continue
        rows.append([r["category"], _fmt(r["cycle_abs"]), _fmt(r["cycle_gt_abs"]), _fmt(r["region_pct"], 1),
                     _fmt(r["align_mm"], 2), _fmt(r["prepare_s"], 2), _fmt(r["frames_per_s"], 1)])
    return markdown_table(["category", "cycle |dw|", "encoder on GT |dw|", "region agree %", "alignment mm",
                           "prepare s", "decode frames/s"], rows)


def baseline_runtime_table(summary: list[dict]) -> str:
    rows = [[r["category"], METHOD_LABELS[r["method"]], _fmt(r["prepare_s"], 2), _fmt(r["frames_per_s"], 1)]
            for r in summary if r["method"] in BASELINES]
    return markdown_table(["category", "method", "build s", "frames/s"], rows)


def overall(summary: list[dict], key: str = "mean_mm") -> dict:
    """Mean over categories of each method's category mean."""
    out = {}
    for m in METHODS:
        vals = [r[key] for r in summary if r["method"] == m and np.isfinite(r[key])]
        out[m] = float(np.mean(vals)) if vals else float("nan")
    return out


def losses(summary: list[dict]) -> list[str]:
    """One line per category where a baseline beats the model on mean error or inner-face MSE."""
    by = _by(summary)
    out = []
    for c in dict.fromkeys(r["category"] for r in summary):
        m = by[(c, "model")]
        parts = []
        for key, unit in (("mean_mm", "mean mm"), ("inner_mse_mm2", "inner MSE mm^2")):
            beat = [(b, by[(c, b)][key]) for b in BASELINES
                    if (c, b) in by and np.isfinite(by[(c, b)][key]) and by[(c, b)][key] < m[key]]
            if beat:
                parts.append(f"{unit} model {m[key]:.3f} vs "
                             + ", ".join(f"{METHOD_LABELS[b]} {v:.3f}" for b, v in beat))
        if parts:
            out.append(f"- `{c}`: " + "; ".join(parts))
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def describe(result: BenchmarkResult) -> list[str]:
    s, e = result.size, result.expressions
    n_clip = e.segments[-1][2] if e.segments else 0
    cats = list(dict.fromkeys(r["category"] for r in result.rows))
    ids = sorted({r["seed"] for r in result.rows})
    return [
        f"- Benchmark `{s.name}`: {len(cats)} categories, {len({r['target'] for r in result.rows})} targets; "
        f"`ict` uses {s.identities} identities, every other category {s.identities_other}.",
        f"- Identities: held-out ICT identity seeds {ids[0]:,}..{ids[-1]:,} (all >= {s.seed_base:,} > 1,000,000: "
        "training never draws seeds >= 1,000,000, and its validation uses the first ten of them).",
        f"- Frames per target: {e.n_frames} = {len(e.segments)} built-in clips x {s.clip_window} frames (stride "
        f"{s.clip_stride} around each clip's most active moment; {n_clip} frames, used for jitter) + "
        f"{e.n_frames - n_clip} random sparse FACS combinations (`sample_expressions`, fixed seed); "
        f"cycle consistency on {s.cycle_frames} of them.",
        "- Errors in the true ICT frame, millimetres, on the target's vertices of the ICT face region "
        "(first 9,409 ICT vertices or their embedding); the protocol figure uses the narrow face (6,706).",
        "- Ground truth: ICT expression displacement at each vertex (barycentric embedding for new "
        "discretizations; the warp Jacobian applied to it for warped shapes).",
    ]


def write_outputs(result: BenchmarkResult, out: Path, model_dir: str, card: dict, figures: bool = True) -> None:
    """results.csv (per target and method), summary.csv (per category and method), results.md, figures."""
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    write_csv(out / "results.csv", result.rows)
    write_csv(out / "summary.csv", summary)
    fig_lines = []
    if figures:
        from nfs.eval.figures import category_bars, error_heatmaps
        heat_path = error_heatmaps(result.heat, summary, out / "error_heatmaps.png")
        bars_path = category_bars(summary, out / "category_bars.png")
        fig_lines = [f"![error heat maps]({heat_path.name})", "", f"![mean error per category]({bars_path.name})", ""]
    ov = overall(summary)
    step = card.get("step", "?")
    md = [
        "# Evaluation: expression cloning on held-out faces",
        "",
        f"Model `{model_dir}` (training step {step}); generated by `python -m nfs eval"
        f"{' --quick' if result.size.name == 'quick' else ''}` in {result.wall_s / 60:.1f} min wall, "
        f"{result.cpu_s / 60:.1f} min CPU time (workers included), on {hardware(result.compute_dtype)} (shared with other jobs: runtimes are "
        "upper bounds).",
        "",
        *describe(result),
        "",
        "## Position error on the face region (mm)",
        "",
        "Mean / RMS / 95th percentile of the per-vertex distance to the ground truth. Ratios > 1: the model is better "
        "than that baseline. The ICT rig reproduces the ground truth by vertex index where the topology is ICT's "
        "(a sanity reference; on warped shapes it is the naive index copy).",
        "",
        position_table(summary),
        "",
        f"Mean over categories: model {ov['model']:.3f} mm, template prior alone {ov['template_prior']:.3f} mm, "
        f"nearest point {ov['nearest_point']:.3f} mm, "
        f"deformation transfer {ov['deformation_transfer']:.3f} mm.",
        "",
        "Where a baseline beats the model:",
        "",
        *(losses(summary) or ["- nowhere (mean error and inner-face MSE)"]),
        "",
        "## Paper protocol: mean squared error on the inner face (mm^2)",
        "",
        "Published on ICT self-retargeting (Cha et al. 2025): NFR 1.99, NFS 0.62, with the paper-size network "
        "trained for 500 epochs on a GPU on ICT + Multiface data. The `ict` row is the comparable one.",
        "",
        protocol_table(summary),
        "",
        "## What the network adds: model vs the template prior alone",
        "",
        "The same pipeline with the decoder's learned correction switched off is the template prior alone; the "
        "gain is (prior - model) / prior, measured per category whichever way it goes.",
        "",
        network_gain_table(summary),
        "",
        "## Artist-modelled heads: slits, bags, joined lips and lids, stylised proportions",
        "",
        "Lip gap ratio: the predicted inner-lip gap (dlib 61-67, 62-66, 63-65) at jawOpen = 1 over the truth's "
        "(1 = the mouth opens as far as the truth). Lid gap error: |predicted - true| eyelid gap at eyeBlink = 1 "
        "(dlib 37-41, 38-40, 43-47, 44-46). Max: the largest per-vertex error on the face region over every "
        "frame. Flipped triangles: skin triangles (added bags and caps included) whose normal turns over against "
        "the rest shape in some frame where the truth's does not (a triangle the truth collapses below 10 % of its "
        "rest area counts as turned by the truth: it has no direction left). Not moving: the mean error of a "
        "zero displacement (every method must beat it). Saw-tooth edges: edges within 3 cm of the mouth whose two "
        "triangles meet more than 60 degrees sharper than the truth's at jawOpen = 1 (strips alternating between "
        "the upper and the lower lip).",
        "",
        artist_table(summary, result.size.artist_categories),
        "",
        "## Shape quality",
        "",
        "Gain: least-squares amplitude of the prediction against the ground truth on the face region (1 = right "
        "size, < 1 = damped expressions). Normal angle error on the face region; eyelid and lip closure error = "
        "|predicted gap - true gap| between "
        "upper/lower landmark pairs (dlib 37-41, 38-40, 43-47, 44-46; inner lips 61-67, 62-66, 63-65); jitter = "
        "mean |second difference| over consecutive clip frames (GT jitter is the source motion itself). "
        "Eyeballs (category `eyes`): the ICT model keeps them still under all 53 expressions, so eyeball mm is "
        "their displacement; non-rigid mm is the residual after the best rigid motion of each eyeball.",
        "",
        quality_table(summary),
        "",
        "## Model: cycle consistency, regions, runtime",
        "",
        "Cycle: the retargeted target frame fed back to the expression encoder; mean |recovered - source| over the "
        "53 weights (encoder on GT: the same on the true target frame). Region agreement: the skinning "
        "encoder's argmax vs ICT region labels carried to the target. Alignment: mean distance (mm) between the "
        "pipeline's and the true ICT placement of the face (0 where the identity alignment was given; for `auto_align` "
        "it includes the best similarity fit of a differently shaped head to the ICT mean head, which is not the "
        "identity's own ICT placement even for a perfect search). "
        "Runtimes on a CPU shared with other jobs.",
        "",
        model_table(summary),
        "",
        "Baselines (correspondence search and factorization per target; solve per frame):",
        "",
        baseline_runtime_table(summary),
        "",
        *fig_lines,
        f"Deformation transfer: gradient-domain least squares, anchored by a weak pull (screen {DT_SCREEN:g}) toward "
        "the nearest-point result; source of both baselines: the ICT mean face (with eyeballs for `eyes`).",
        "",
    ]
    (out / "results.md").write_text("\n".join(md))
    (out / "run_info.json").write_text(json.dumps({
        "model": str(model_dir), "step": step, "size": dataclasses.asdict(result.size),
        "wall_s": result.wall_s, "cpu_s": result.cpu_s, "hardware": hardware(result.compute_dtype),
        "frames": result.expressions.n_frames}, indent=2))


def print_report(result: BenchmarkResult) -> None:
    summary = result.summary()
    print("\nPosition error on the face region (mm)\n" + position_table(summary))
    print("\nInner-face mean squared error (mm^2; published ICT: NFR 1.99, NFS 0.62)\n" + protocol_table(summary))
    print("\nModel vs template prior alone\n" + network_gain_table(summary))
    print("\nArtist-modelled heads\n" + artist_table(summary, result.size.artist_categories))
    print("\n" + quality_table(summary))
    print("\n" + model_table(summary))
    print(f"\n{len(result.rows)} rows in {result.wall_s:.0f} s wall ({result.cpu_s:.0f} s CPU) on {hardware(result.compute_dtype)}")
