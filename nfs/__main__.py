"""Command line: `python -m nfs {train,eval,retarget,prepare,export,clips} ...`."""
from __future__ import annotations

import argparse
import sys


def cmd_train(argv: list[str]) -> int:
    from nfs.train import TrainConfig, Trainer

    p = argparse.ArgumentParser(prog="python -m nfs train", description="Train the NFS network on ICT data. "
                                "Resumes from OUT/latest when it exists.")
    d = TrainConfig()
    p.add_argument("--preset", default=d.preset, help="network size: cpu (default), paper, tiny")
    p.add_argument("--out", default=d.out, help="run directory (checkpoints, log.csv, curve.png)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--frames-per-step", type=int, default=d.frames_per_step)
    p.add_argument("--pool-size", type=int, default=d.pool_size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--validate-every", type=int, default=d.validate_every)
    p.add_argument("--checkpoint-minutes", type=float, default=d.checkpoint_minutes)
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop after this many minutes (0: no limit)")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    p.add_argument("--bf16", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--predicted-code-fraction", type=float, default=d.predicted_code_fraction,
                   help="share of steps whose decoder input is the expression encoder's code (else the known one)")
    p.add_argument("--weight", action="append", default=[], metavar="NAME=VALUE",
                   help="override a loss weight, e.g. --weight blendshape_reconstruction=1")
    p.add_argument("--init-from", default="", help="warm start from a model directory (output layer zeroed)")
    p.add_argument("--init-keep-output", action="store_true",
                   help="with --init-from: keep the output layer too (fine-tune a trained model)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default). On a busy "
                   "machine 1 thread avoids OpenMP threads waiting on each other")
    a = p.parse_args(argv)
    cfg = TrainConfig(preset=a.preset, out=a.out, steps=a.steps, lr=a.lr, frames_per_step=a.frames_per_step,
                      pool_size=a.pool_size, seed=a.seed, validate_every=a.validate_every,
                      checkpoint_minutes=a.checkpoint_minutes, max_minutes=a.max_minutes, device=a.device,
                      bf16=a.bf16, predicted_code_fraction=a.predicted_code_fraction,
                      init_from=a.init_from, init_keep_output=a.init_keep_output)
    for item in a.weight:
        name, _, value = item.partition("=")
        if not hasattr(cfg.weights, name):
            raise ValueError(f"unknown loss weight {name!r}; known: {', '.join(vars(cfg.weights))}")
        setattr(cfg.weights, name, float(value))
    import torch
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    Trainer(cfg, log=lambda m: print(m, flush=True)).run()
    return 0


class _Bar:
    """A one-line progress bar on stderr."""

    def __call__(self, fraction: float, message: str) -> None:
        n = int(30 * max(0.0, min(1.0, fraction)))
        sys.stderr.write(f"\r[{'#' * n}{'.' * (30 - n)}] {100 * fraction:5.1f}% {message[:90]:<90}")
        sys.stderr.flush()
        if fraction >= 1.0:
            sys.stderr.write("\n")


UNITS_HELP = ("Target meshes: OBJ, PLY, STL, OFF, GLB/GLTF in any unit (metres, centimetres, millimetres or none) "
              "and any orientation; they are aligned automatically to the ICT frame and results are written back "
              "in the mesh's own frame, units and vertex order. Clips: a built-in name (see `python -m nfs clips`), "
              "a CSV of the 53 ICT weights (frame + named columns), an iPhone Live Link Face CSV, a folder/zip of "
              "OBJ frames, an .npz with vertices [T,V,3] + faces, or a Multiface tracked_mesh folder/zip.")


def _model_arg(p):
    p.add_argument("--model", default=None, help="model directory (default: the shipped ckpts/nfs_cpu)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the encoders and decoder run: auto (a CUDA GPU when torch sees one), cpu or cuda")


def _load_model(path):
    from nfs.pipeline import load_shipped_model
    return load_shipped_model(path)[0]


def cmd_clips(argv: list[str]) -> int:
    from nfs.io import list_builtin_clips, load_builtin_clip
    argparse.ArgumentParser(prog="python -m nfs clips", description="List the built-in source clips.").parse_args(argv)
    for name in list_builtin_clips():
        c = load_builtin_clip(name)
        print(f"{name:<16} {c.n_frames:5d} frames  {c.duration_s:5.1f} s  {c.fps:.0f} fps")
    return 0


def _prepared_target(name: str, description: str, argv: list[str], outputs: dict[str, str] | None = None):
    """Parse ``--target``, ``--model`` and the required `outputs` flags ({flag: help}) of a command that prepares a
    target, then prepare it. Returns (arguments, PreparedTarget)."""
    from nfs.pipeline import prepare_target
    p = argparse.ArgumentParser(prog=f"python -m nfs {name}", description=f"{description} {UNITS_HELP}")
    p.add_argument("--target", required=True)
    for flag, text in (outputs or {}).items():
        p.add_argument(flag, required=True, help=text)
    _model_arg(p)
    a = p.parse_args(argv)
    return a, prepare_target(a.target, _load_model(a.model), progress=_Bar(), device=a.device)


def cmd_prepare(argv: list[str]) -> int:
    _, prepared = _prepared_target("prepare", "Load, clean and align a target mesh and run the encoders; prints "
                                   "what intake did.", argv)
    print("\n".join(prepared.summary()))
    return 0


def cmd_retarget(argv: list[str]) -> int:
    from nfs.io import load_clip
    from nfs.pipeline import EXPORT_KINDS, PREVIEW_DEFAULT_MAX_FRAMES, retarget
    p = argparse.ArgumentParser(prog="python -m nfs retarget", description="Put a source clip's animation on a "
                                "target mesh and write the exports. " + UNITS_HELP)
    p.add_argument("--target", required=True, help="target mesh file")
    p.add_argument("--clip", required=True, help="built-in clip name or clip file/folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--exports", default="auto",
                   help=f"comma list of {','.join(EXPORT_KINDS)}, or 'all', or 'auto' (default: all but the mp4 "
                        f"preview for takes over {PREVIEW_DEFAULT_MAX_FRAMES} frames)")
    p.add_argument("--fps", type=float, default=None,
                   help="resample the clip to this frame rate (default: keep the source's own rate)")
    p.add_argument("--glb-tolerance-mm", type=float, default=0.1,
                   help="largest error of the animated GLB against the decoded frames, in mm (default 0.1)")
    p.add_argument("--smooth", type=float, default=0.0, help="temporal Gaussian smoothing sigma, in frames")
    p.add_argument("--gain", type=float, default=1.0, help="expression gain on the 53 FACS weights")
    p.add_argument("--no-correction", action="store_true",
                   help="decode with the template prior alone (the network's learned correction off)")
    _model_arg(p)
    a = p.parse_args(argv)
    exports = parse_exports(a.exports, EXPORT_KINDS)
    from nfs.pipeline import as_raw_mesh
    from nfs.model.precision import resolve_device
    target = as_raw_mesh(a.target)  # bad input is reported before the model loads
    clip = load_clip(a.clip)
    resolve_device(a.device)
    r = retarget(target, clip, a.out, model=_load_model(a.model), exports=exports, smoothing_sigma=a.smooth,
                 gain=a.gain, progress=_Bar(), correction=not a.no_correction, fps=a.fps, device=a.device,
                 glb_tolerance_mm=a.glb_tolerance_mm)
    print("\n".join(r.target.summary()))
    print("\n".join(r.summary()))
    for kind, path in r.exports.items():
        print(f"{kind}: {path}")
    return 0


def parse_exports(text: str, kinds: tuple) -> tuple | None:
    """'auto' -> None (the pipeline's default), 'all' -> every kind, else a checked comma list."""
    text = text.strip().lower()
    if text == "auto":
        return None
    if text == "all":
        return tuple(kinds)
    chosen = tuple(e.strip() for e in text.split(",") if e.strip())
    unknown = [e for e in chosen if e not in kinds]
    if unknown:
        raise ValueError(f"unknown export {', '.join(unknown)}; choose from {', '.join(kinds)}, all or auto")
    return chosen


def cmd_export(argv: list[str]) -> int:
    from nfs.export import export_rig_glb
    from nfs.ict import EXPRESSION_NAMES
    from nfs.pipeline import rig_shapes, uv_for_export
    a, prepared = _prepared_target("export", "Bake a target mesh into an ARKit-style 53-shape blendshape rig (GLB).",
                                   argv, {"--rig": "output .glb path"})
    neutral, deltas = rig_shapes(prepared)
    uv, uv_faces = uv_for_export(prepared.raw)
    export_rig_glb(a.rig, neutral, prepared.raw.faces, deltas, EXPRESSION_NAMES, uv=uv, uv_faces=uv_faces)
    print(f"rig: {a.rig}")
    return 0


def cmd_eval(argv: list[str]) -> int:
    from nfs.eval.run import main as eval_main
    return eval_main(argv)


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "retarget": cmd_retarget, "prepare": cmd_prepare,
            "export": cmd_export, "clips": cmd_clips}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python -m nfs {" + ",".join(COMMANDS) + "} [options]   (each command has --help)")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:  # MeshError / ClipError are ValueErrors
        print(f"\nerror: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
