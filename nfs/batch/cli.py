"""`python -m nfs batch MANIFEST.csv --out DIR ...`: the batch on the terminal (a live progress line, then the
summary). Exit status 0 when every pair is ok or skipped, 1 when some failed."""
from __future__ import annotations

import sys

from nfs.batch.options import BATCH_WIDE, ROW_OPTIONS
from nfs.options import add_arguments, from_arguments, option_specs
from nfs.batch.run import REPORT_NAME, BatchState, format_state, run_batch


ROW_FIELDS = [name for name in option_specs() if name not in BATCH_WIDE]


class TerminalProgress:
    """The batch's progress on stderr: one line redrawn in place on a terminal, else a line per finished pair."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last_done = -1
        self.width = 0

    def __call__(self, state: BatchState) -> None:
        line = format_state(state)
        if self.tty:
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
            if state.finished:
                self.stream.write("\n")
        elif state.done != self.last_done or state.finished:
            self.stream.write(line + "\n")
            self.last_done = state.done
        self.stream.flush()


def cmd_batch(argv: list[str], parser_class, number) -> int:
    p = parser_class(prog="python -m nfs batch", description=(
        "Retarget every (target, clip) pair of a CSV manifest: columns target,clip (paths relative to the "
        "manifest, globs, or built-in clip names) and optional option columns ("
        + ", ".join(sorted(set(ROW_OPTIONS))) + ": the options below). Outputs go to DIR/<target stem>/<clip stem>/, one row per pair to "
        f"DIR/{REPORT_NAME}; each target is prepared once; a second run skips finished pairs. See docs/batch.md."))
    p.add_argument("manifest", help="the CSV manifest")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: a process pool on this machine (default); ray: a Ray cluster (--address) or a "
                        "local Ray instance")
    p.add_argument("--address", default=None, help="Ray cluster address (host:port, or auto for the cluster this "
                   "machine belongs to); without it a local Ray instance is started")
    p.add_argument("--workers", type=number(int, 1, 4096), default=None,
                   help="jobs at once (local default: min(cores, 4); ray default: the cluster's CPUs)")
    p.add_argument("--threads", type=number(int, 1, 1024), default=None,
                   help="torch threads per job (local default: cores / workers; ray default: 1)")
    p.add_argument("--storage", default="auto", choices=["auto", "shared", "driver"],
                   help="shared: workers read inputs and write DIR themselves (one disk or a network path); "
                        "driver: the driver sends inputs and writes outputs (no shared disk); auto: driver "
                        "with --address, else shared")
    p.add_argument("--max-retries", type=number(int, 0, 100), default=3,
                   help="times a job is run again when its worker process dies (default 3)")
    p.add_argument("--model", default=None, help="model directory (default: the shipped ckpts/nfs_cpu)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: a GPU where the worker has one (Ray: GPU tasks where the cluster reports GPUs)")
    rows = p.add_argument_group("run options", "the value of every row whose cell for the option is empty")
    add_arguments(rows, ROW_FIELDS)
    a = p.parse_args(argv)
    result = run_batch(a.manifest, a.out, engine=a.engine, address=a.address, workers=a.workers,
                       options=from_arguments(a, ROW_FIELDS), device=a.device, model_dir=a.model, storage=a.storage,
                       threads=a.threads, max_retries=a.max_retries, progress=TerminalProgress())
    print("\n".join(result.summary()))
    return 1 if result.count("failed") else 0
