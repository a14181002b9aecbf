"""Command line: `python -m nfs {train,eval,retarget,prepare,export,clips,batch} ...`."""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys



class CliError(ValueError):
    """A bad command-line option; main() prints it as one `error:` line and exits 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises CliError (one line, exit 2 from main) instead of printing usage and exiting."""

    def error(self, message: str):
        raise CliError(f"{self.prog}: {message}")


def number(kind=float, low=None, high=None, low_open: bool = False, what: str = ""):
    """An argparse type: a finite int/float within [low, high] (low excluded with low_open)."""
    def parse(text: str):
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            lo = "-inf" if low is None else f"{low:g}"
            hi = "inf" if high is None else f"{high:g}"
            raise argparse.ArgumentTypeError(f"must be in {'(' if low_open else '['}{lo}, {hi}]"
                                             f"{' ' + what if what else ''}, got {text}")
        return value
    parse.__name__ = "integer" if kind is int else "number"
    return parse


def cmd_train(argv: list[str]) -> int:
    from nfs.train import TrainConfig, Trainer

    p = _Parser(prog="python -m nfs train", description="Train the NFS network on ICT data. "
                                "Resumes from OUT/latest when it exists.")
    d = TrainConfig()
    p.add_argument("--preset", default=d.preset, help="network size: cpu (default), paper, tiny")
    p.add_argument("--out", default=d.out, help="run directory (checkpoints, log.csv, curve.png)")
    p.add_argument("--steps", type=number(int, 1, 10**9), default=d.steps)
    p.add_argument("--lr", type=number(float, 0.0, 1.0, low_open=True), default=d.lr)
    p.add_argument("--frames-per-step", type=number(int, 1, 4096), default=d.frames_per_step)
    p.add_argument("--pool-size", type=number(int, 1, 10**6), default=d.pool_size)
    p.add_argument("--seed", type=number(int, 0, 2**32 - 1), default=d.seed)
    p.add_argument("--validate-every", type=number(int, 1, 10**9), default=d.validate_every)
    p.add_argument("--checkpoint-minutes", type=number(float, 0.0, 10**5, low_open=True), default=d.checkpoint_minutes)
    p.add_argument("--max-minutes", type=number(float, 0.0, 10**7), default=0.0,
                   help="stop after this many minutes (0: no limit)")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    p.add_argument("--bf16", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--predicted-code-fraction", type=number(float, 0.0, 1.0), default=d.predicted_code_fraction,
                   help="share of steps whose decoder input is the expression encoder's code (else the known one)")
    p.add_argument("--weight", action="append", default=[], metavar="NAME=VALUE",
                   help="override a loss weight, e.g. --weight blendshape_reconstruction=1")
    p.add_argument("--init-from", default="", help="warm start from a model directory (output layer zeroed)")
    p.add_argument("--init-keep-output", action="store_true",
                   help="with --init-from: keep the output layer too (fine-tune a trained model)")
    p.add_argument("--real-head-styles", action="store_true",
                   help="half of the artist-modelled training heads are ones ICT models least like (anime-like "
                        "proportions, game heads with a mouth bag and eye sockets, lips modelled closed)")
    p.add_argument("--threads", type=number(int, 0, 1024), default=0, help="CPU threads for torch (0: torch's default). On a busy "
                   "machine 1 thread avoids OpenMP threads waiting on each other")
    a = p.parse_args(argv)
    cfg = TrainConfig(preset=a.preset, out=a.out, steps=a.steps, lr=a.lr, frames_per_step=a.frames_per_step,
                      pool_size=a.pool_size, seed=a.seed, validate_every=a.validate_every,
                      checkpoint_minutes=a.checkpoint_minutes, max_minutes=a.max_minutes, device=a.device,
                      bf16=a.bf16, predicted_code_fraction=a.predicted_code_fraction,
                      init_from=a.init_from, init_keep_output=a.init_keep_output,
                      real_head_styles=a.real_head_styles)
    for item in a.weight:
        name, _, value = item.partition("=")
        if not hasattr(cfg.weights, name):
            raise ValueError(f"unknown loss weight {name!r}; known: {', '.join(vars(cfg.weights))}")
        try:
            weight = number(float, 0.0, 1e6, what=f"for --weight {name}")(value)
        except argparse.ArgumentTypeError as e:
            raise CliError(f"argument --weight: {e}") from None
        setattr(cfg.weights, name, weight)
    import torch
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    Trainer(cfg, log=lambda m: print(m, flush=True)).run()
    return 0


def _Bar():
    """The command line's progress bar on stderr (`nfs.progress.ConsoleBar`)."""
    from nfs.progress import ConsoleBar
    return ConsoleBar()


UNITS_HELP = ("Target meshes: OBJ, PLY, STL, OFF, GLB/GLTF/VRM in any unit (metres, centimetres, millimetres or none) "
              "and any orientation; they are aligned automatically to the ICT frame and results are written back "
              "in the mesh's own frame, units and vertex order. Clips: a built-in name (see `python -m nfs clips`), "
              "a CSV of the 53 ICT weights (frame + named columns), an iPhone Live Link Face CSV, a folder/zip of "
              "OBJ frames, an .npz with vertices [T,V,3] + faces, a Multiface tracked_mesh folder/zip, or a face video "
              "(.mp4, .webm, .mov; or a folder of images) fitted with MediaPipe landmarks.")


def _model_arg(p):
    from nfs.options import add_arguments
    p.add_argument("--model", default=None, help="model directory (default: the shipped ckpts/nfs_cpu)")
    add_arguments(p, ["device"])


def _force_arg(p):
    from nfs.options import add_arguments
    add_arguments(p, ["force", "open_mouth"])


def _load_model(path):
    from nfs.pipeline import load_shipped_model
    return load_shipped_model(path)[0]


def cmd_clips(argv: list[str]) -> int:
    from nfs.io import list_builtin_clips, load_builtin_clip
    _Parser(prog="python -m nfs clips", description="List the built-in source clips.").parse_args(argv)
    for name in list_builtin_clips():
        c = load_builtin_clip(name)
        print(f"{name:<16} {c.n_frames:5d} frames  {c.duration_s:5.1f} s  {c.fps:.0f} fps")
    return 0


def _prepared_target(name: str, description: str, argv: list[str], outputs: dict[str, str] | None = None):
    """Parse ``--target``, ``--model`` and the required `outputs` flags ({flag: help}) of a command that prepares a
    target, then prepare it. Returns (arguments, PreparedTarget)."""
    from nfs.pipeline import prepare_target
    p = _Parser(prog=f"python -m nfs {name}", description=f"{description} {UNITS_HELP}")
    p.add_argument("--target", required=True)
    for flag, text in (outputs or {}).items():
        p.add_argument(flag, required=True, help=text)
    _force_arg(p)
    _model_arg(p)
    a = p.parse_args(argv)
    return a, prepare_target(a.target, _load_model(a.model), progress=_Bar(), device=a.device, force=a.force,
                             open_mouth=a.open_mouth)


def cmd_prepare(argv: list[str]) -> int:
    _, prepared = _prepared_target("prepare", "Load, clean and align a target mesh and run the encoders; prints "
                                   "what intake did.", argv)
    print("\n".join(prepared.summary()))
    return 0


def retarget_parser() -> argparse.ArgumentParser:
    """The parser of `python -m nfs retarget`: the target, clip and output, every run option of
    `nfs.options.RetargetOptions`, and the model."""
    from nfs.options import add_arguments
    p = _Parser(prog="python -m nfs retarget", description="Put a source clip's animation on a "
                                "target mesh and write the exports. " + UNITS_HELP)
    p.add_argument("--target", required=True, help="target mesh file")
    p.add_argument("--clip", required=True, help="built-in clip name or clip file/folder")
    p.add_argument("--out", required=True, help="output folder")
    add_arguments(p)
    p.add_argument("--model", default=None, help="model directory (default: the shipped ckpts/nfs_cpu)")
    return p


def cmd_retarget(argv: list[str]) -> int:
    from nfs.options import from_arguments
    from nfs.pipeline import retarget
    a = retarget_parser().parse_args(argv)
    options = from_arguments(a)          # every option checked (e.g. no export named) before any work
    from nfs.model.precision import resolve_device
    from nfs.pipeline import as_raw_mesh, load_clip
    target = as_raw_mesh(a.target)  # bad input is reported before the model loads
    if options.exports is not None and a.exports.strip().lower() == "all" and not target.is_gltf:
        options = dataclasses.replace(options, exports=tuple(k for k in options.exports if k != "avatar"))
    device = resolve_device(options.device)   # once; a clear error before any work when CUDA is absent
    from nfs.pipeline import is_face_video, video_calibration
    calibration = None
    if is_face_video(a.clip):
        calibration = video_calibration(options.neutral_frame, not options.keep_neutral, options.dead_zone,
                                        options.shape_gains)
    elif options.keep_neutral or options.dead_zone or options.shape_gains:
        raise ValueError(f"{a.clip}: --keep-neutral, --dead-zone and --shape-gains apply to video clips only")
    clip = load_clip(a.clip, neutral_frame=options.neutral_frame, progress=_Bar(), calibration=calibration)
    for warning in clip.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    r = retarget(target, clip, a.out, model=_load_model(a.model), progress=_Bar(),
                 **{**options.retarget_kwargs(), "device": device})
    print("\n".join(r.target.summary()))
    print("\n".join(r.summary()))
    for kind, path in r.exports.items():
        print(f"{kind}: {path}")
    return 0


def cmd_export(argv: list[str]) -> int:
    from nfs.arkit import ARKIT_NAMES, ict_to_arkit_shapes
    from nfs.export import export_rig_glb
    from nfs.pipeline import rig_shapes, uv_for_export
    a, prepared = _prepared_target("export", "Bake a target mesh into a blendshape rig (GLB) with the 52 ARKit "
                                   "shapes.", argv, {"--rig": "output .glb path"})
    neutral, deltas = rig_shapes(prepared)
    uv, uv_faces = uv_for_export(prepared.raw)
    export_rig_glb(a.rig, neutral, prepared.raw.faces, ict_to_arkit_shapes(deltas), ARKIT_NAMES, uv=uv,
                   uv_faces=uv_faces)
    print(f"rig: {a.rig}")
    return 0


def cmd_eval(argv: list[str]) -> int:
    """The model and the baselines on the held-out benchmark: the benchmark's data (`nfs.data.benchmark`) handed to
    the eval runner (`nfs.eval.run`); writes the report (`nfs.eval.report`) to assets/eval/."""
    import dataclasses
    import os
    import tempfile
    from pathlib import Path

    from nfs import REPO_ROOT
    from nfs.data.benchmark import SIZES, Benchmark
    from nfs.eval.report import print_report, write_outputs
    from nfs.eval.run import run_benchmark
    from nfs.pipeline import SHIPPED_MODEL_DIR, load_shipped_model
    default_out = REPO_ROOT / "assets" / "eval"
    p = argparse.ArgumentParser(prog="python -m nfs eval", description="Evaluate a trained model and the "
                                "nearest-point / deformation-transfer / ICT-rig baselines on held-out ICT identities "
                                "(remeshed, cropped, stylized, multi-component, auto-aligned); writes tables and "
                                "figures.")
    p.add_argument("--model", default=None, help=f"model directory (default: {SHIPPED_MODEL_DIR})")
    p.add_argument("--quick", action="store_true", help="the small CI subset (a few minutes)")
    p.add_argument("--out", default=None, help=f"output folder (default: {default_out}; with --quick a temp folder)")
    p.add_argument("--categories", default=None, help="comma list of categories to run (default: all of the size)")
    p.add_argument("--identities", type=int, default=None, help="identities in the `ict` category")
    p.add_argument("--identities-other", type=int, default=None, help="identities in every other category")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes sharing the targets (default: 2, or 1 on a single core)")
    a = p.parse_args(argv)
    size = SIZES["quick" if a.quick else "full"]
    if a.identities is not None:
        size = dataclasses.replace(size, identities=a.identities)
    if a.identities_other is not None:
        size = dataclasses.replace(size, identities_other=a.identities_other)
    cats = tuple(c for c in a.categories.split(",") if c) if a.categories else None
    if cats is not None:
        missing = [c for c in cats if c not in size.categories]
        if missing:
            p.error(f"--categories: {', '.join(missing)} not in the {'quick' if a.quick else 'full'} benchmark "
                    f"(its categories: {', '.join(size.categories)})")
    out = Path(a.out) if a.out else (Path(tempfile.gettempdir()) / "nfs_eval_quick" if a.quick else default_out)
    model_dir = a.model or str(SHIPPED_MODEL_DIR)
    try:  # name the model relative to the repository when it lives inside it
        model_dir = str(Path(model_dir).resolve().relative_to(REPO_ROOT))
    except ValueError:
        pass
    model, card = load_shipped_model(a.model)
    model.eval()
    result = run_benchmark(model, Benchmark(size, cats), log=lambda m: print(m, flush=True),
                           workers=max(1, a.workers), model_dir=a.model)
    print_report(result)
    write_outputs(result, out, model_dir, card, figures=not a.no_figures)
    print(f"wrote {out}/results.md, results.csv, summary.csv" + ("" if a.no_figures else ", figures"))
    return 0


def cmd_batch(argv: list[str]) -> int:
    from nfs.batch.cli import cmd_batch as run
    return run(argv, _Parser, number)


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "retarget": cmd_retarget, "prepare": cmd_prepare,
            "export": cmd_export, "clips": cmd_clips, "batch": cmd_batch}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python -m nfs {" + ",".join(COMMANDS) + "} [options]   (each command has --help)")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except (ValueError, FileNotFoundError, RuntimeError, OSError, MemoryError) as e:  # MeshError / ClipError too
        print(f"\nerror: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
