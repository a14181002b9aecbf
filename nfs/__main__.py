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
    a = p.parse_args(argv)
    cfg = TrainConfig(preset=a.preset, out=a.out, steps=a.steps, lr=a.lr, frames_per_step=a.frames_per_step,
                      pool_size=a.pool_size, seed=a.seed, validate_every=a.validate_every,
                      checkpoint_minutes=a.checkpoint_minutes, max_minutes=a.max_minutes, device=a.device,
                      bf16=a.bf16)
    import torch
    if torch.device(cfg.device if cfg.device != "auto" else "cpu").type == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    Trainer(cfg, log=lambda m: print(m, flush=True)).run()
    return 0


COMMANDS = {"train": cmd_train}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python -m nfs {" + ",".join(COMMANDS) + "} [options]   (each command has --help)")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
