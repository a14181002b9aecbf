"""`run_batch`: every (target, clip) pair of a manifest retargeted on a local process pool or a Ray cluster.

The driver reads the manifest, skips the pairs whose outputs are complete (`nfs.batch.outputs`), and schedules
three kinds of jobs (`nfs.batch.work`): one preparation per target content (shared by all that target's pairs),
one load per clip content, then the pairs. At most as many jobs are in flight as there are worker slots; pairs
whose target and clip are ready go first, and a new target is opened only while fewer targets than slots are
open, so prepared targets do not pile up in memory (a target is let go when its last pair is done).
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nfs.batch.engines import MAX_RETRIES, Job, LocalEngine, RayEngine
from nfs.batch.manifest import Pair, read_manifest
from nfs.batch.options import parse_exports, retarget_keywords
from nfs.options import RetargetOptions
from nfs.batch.outputs import finished_files, remove_partials
from nfs.batch.work import ClipJob, PairJob, TargetJob, commit_returned_files

REPORT_NAME = "batch_report.csv"
REPORT_COLUMNS = ("target", "clip", "status", "seconds", "error", "outputs", "out_dir", "prepared_target",
                  "attempts", "notes")
KILL_MARKER_ENV = "NFS_BATCH_KILL_ONCE"   # fault injection: see nfs.batch.work


@dataclass
class PairResult:
    row: int
    target: str
    clip: str
    out_rel: str
    status: str = "pending"          # ok / failed / skipped (pending / running while the batch runs)
    seconds: float = 0.0
    error: str = ""
    outputs: list = field(default_factory=list)   # paths relative to the batch's output folder
    prepared_target: str = ""        # the id of the preparation this pair used
    attempts: int = 0
    notes: list = field(default_factory=list)

    def row_dict(self) -> dict:
        return {"target": self.target, "clip": self.clip, "status": self.status, "seconds": f"{self.seconds:.2f}",
                "error": self.error, "outputs": ";".join(self.outputs), "out_dir": self.out_rel,
                "prepared_target": self.prepared_target, "attempts": self.attempts, "notes": " | ".join(self.notes)}


@dataclass
class BatchState:
    """Where a batch stands, for progress displays."""

    total: int
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    running: int = 0
    targets_total: int = 0
    targets_prepared: int = 0
    elapsed: float = 0.0
    eta: float | None = None          # seconds left, None while unknown
    finished: bool = False

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.skipped


@dataclass
class BatchResult:
    out: Path
    engine: str
    pairs: list[PairResult]
    targets: dict          # target key -> {"path", "ok", "seconds", "id", "error", "pairs"}
    clips: dict            # clip key -> {"spec", "ok", "seconds", "error"}
    seconds: float

    @property
    def report(self) -> Path:
        return self.out / REPORT_NAME

    def count(self, status: str) -> int:
        return sum(p.status == status for p in self.pairs)

    @property
    def prepare_share(self) -> float:
        """Target preparation's share of the workers' busy time (prepare + clip loads + pairs)."""
        prep = sum(t["seconds"] for t in self.targets.values())
        busy = prep + sum(c["seconds"] for c in self.clips.values()) + sum(
            p.seconds for p in self.pairs if p.status in ("ok", "failed"))
        return prep / busy if busy > 0 else 0.0

    def summary(self) -> list[str]:
        ran = self.count("ok") + self.count("failed")
        lines = [f"{len(self.pairs)} pairs: {self.count('ok')} ok, {self.count('failed')} failed, "
                 f"{self.count('skipped')} skipped (finished before) in {self.seconds:.1f} s on {self.engine}"]
        prepared = [t for t in self.targets.values() if t["ok"]]
        if self.targets:
            lines.append(f"targets prepared: {len(prepared)} of {len(self.targets)}, once each, for {ran} pairs "
                         f"({sum(t['seconds'] for t in self.targets.values()):.1f} s, "
                         f"{100 * self.prepare_share:.0f} % of the workers' time)")
        if ran and self.seconds > 0:
            lines.append(f"{60 * ran / self.seconds:.1f} pairs per minute")
        for p in self.pairs:
            if p.status == "failed":
                lines.append(f"failed: {p.target} x {p.clip}: {p.error}")
        lines.append(f"report: {self.report}")
        return lines


def model_identity(model_dir: str | None) -> str:
    """The model's files' content hash (part of every pair's record: another model's outputs are not reused)."""
    from nfs.resources import SHIPPED_MODEL_DIR
    folder = Path(model_dir) if model_dir else Path(SHIPPED_MODEL_DIR)
    h = hashlib.sha256()
    for p in sorted(folder.glob("*")):
        if p.is_file():
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def write_report(out: Path, results: list[PairResult]) -> Path:
    """DIR/batch_report.csv, one row per pair, replaced whole (never half-written)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow(r.row_dict())
    path = out / REPORT_NAME
    tmp = out / f".{REPORT_NAME}.part"
    tmp.write_text(buf.getvalue())
    os.replace(tmp, path)
    return path


def _engine(engine: str, workers: int | None, address: str | None, threads: int | None, device: str,
            max_retries: int):
    cores = os.cpu_count() or 1
    if engine == "local":
        n = max(1, workers or min(cores, 4))
        return LocalEngine(n, threads or max(1, cores // n), max_retries)
    if engine == "ray":
        return RayEngine(workers, address, threads or 1, max_retries, device)
    raise ValueError(f"unknown engine {engine!r}; choose local or ray")


def run_batch(manifest: str | Path, out: str | Path, *, engine: str = "local", address: str | None = None,
              workers: int | None = None, exports: str | tuple | None = None, device: str = "auto",
              model_dir: str | None = None, storage: str = "auto", threads: int | None = None,
              max_retries: int = MAX_RETRIES, options: RetargetOptions | None = None,
              progress: Callable[[BatchState], None] | None = None) -> BatchResult:
    """Retarget every (target, clip) pair of `manifest` into `out`/<target stem>/<clip stem>/ and write
    `out`/batch_report.csv. Pairs whose outputs are complete from an earlier run are skipped.

    engine: "local" (a process pool of `workers` processes, default min(cores, 4)) or "ray" (`address` of a running
    cluster, or a local Ray instance with `workers` CPUs). `options` (`nfs.options.RetargetOptions`): the values
    of the rows' empty option cells (default: the documented defaults); `exports` overrides its exports (a tuple,
    or text as on the command line); the device is `device`, for the whole batch. `storage`: "shared" (workers
    read the inputs and write the
    outputs under `out` themselves: one disk, or a network path mounted alike everywhere), "driver" (the driver
    sends the input files and writes the outputs; workers need no shared disk) or "auto" (driver for a Ray
    `address`, else shared). `threads`: torch threads per job (local default: cores / workers; Ray: 1 per CPU the
    task asks for). `progress(BatchState)` is called as the batch moves."""
    started = time.perf_counter()
    out = Path(out)
    defaults = options or RetargetOptions()
    if exports is not None:
        defaults = dataclasses.replace(defaults, exports=parse_exports(exports) if isinstance(exports, str)
                                       else tuple(exports))
    pairs = read_manifest(manifest, defaults.validated())
    if storage == "auto":
        storage = "driver" if engine == "ray" and address else "shared"
    if storage not in ("shared", "driver"):
        raise ValueError(f"storage must be shared, driver or auto, got {storage!r}")
    out.mkdir(parents=True, exist_ok=True)
    remove_partials(out)
    model_id = model_identity(model_dir)
    results = [PairResult(p.row, p.target, p.clip, p.out_rel) for p in pairs]
    pending: list[tuple[Pair, PairResult]] = []
    for pair, result in zip(pairs, results):
        if pair.error:
            result.status, result.error = "failed", pair.error
            continue
        files = finished_files(out / pair.out_rel, pair.inputs_record(model_id))
        if files is not None:
            result.status = "skipped"
            result.outputs = [f"{pair.out_rel}/{f}" for f in files]
        else:
            pending.append((pair, result))
    state = BatchState(total=len(pairs), failed=sum(r.status == "failed" for r in results),
                       skipped=sum(r.status == "skipped" for r in results))
    scheduler = _Scheduler(pending, out, model_id, storage == "driver", device, model_dir,
                           os.environ.get(KILL_MARKER_ENV, ""))
    state.targets_total = len(scheduler.targets)
    if pending:
        runner = _engine(engine, workers, address, threads, device, max_retries)
        scheduler.threads = runner.threads
        try:
            scheduler.run(runner, state, results, progress, started)
        finally:
            runner.close()
        engine_text = runner.describe()
    else:
        engine_text = "nothing to run"
    remove_partials(out)
    write_report(out, results)
    state.elapsed, state.running, state.eta, state.finished = time.perf_counter() - started, 0, 0.0, True
    if progress:
        progress(state)
    targets = {k: {"path": t.spec, "ok": t.summary.get("ok", False), "seconds": t.summary.get("seconds", 0.0),
                   "id": t.summary.get("id", ""), "error": t.summary.get("error", ""), "pairs": t.n_pairs}
               for k, t in scheduler.targets.items() if t.summary is not None}
    clips = {k: {"spec": c.spec, "ok": c.summary.get("ok", False), "seconds": c.summary.get("seconds", 0.0),
                 "error": c.summary.get("error", "")} for k, c in scheduler.clips.items() if c.summary is not None}
    return BatchResult(out, engine_text, results, targets, clips, time.perf_counter() - started)


@dataclass(eq=False)
class _Input:
    """A target or clip of the batch: its job, its state and the pairs still waiting for it."""

    key: str
    spec: str
    job: Job | None = None
    summary: dict | None = None
    handle: object = None            # payload handle once ready
    waiting: int = 0                 # pending pairs that still need it
    n_pairs: int = 0

    @property
    def ready(self) -> bool:
        return self.summary is not None and self.summary.get("ok", False)


class _Scheduler:
    def __init__(self, pending, out: Path, model_id: str, driver_writes: bool, device: str, model_dir, kill_marker):
        self.pending = pending               # [(Pair, PairResult)] not yet submitted
        self.out, self.model_id, self.driver_writes = out, model_id, driver_writes
        self.device, self.model_dir, self.kill_marker = device, model_dir, kill_marker
        self.threads = 1
        self.targets: OrderedDict[str, _Input] = OrderedDict()
        self.clips: OrderedDict[str, _Input] = OrderedDict()
        for pair, _ in pending:
            t = self.targets.setdefault(pair.target_input.key, _Input(pair.target_input.key, pair.target_input.path))
            c = self.clips.setdefault(pair.clip_input.key, _Input(pair.clip_input.key, pair.clip_input.spec))
            t.waiting += 1
            t.n_pairs += 1
            c.waiting += 1
            c.n_pairs += 1
        self.inputs_of = {pair.target_input.key: pair.target_input for pair, _ in pending}
        self.clip_inputs = {pair.clip_input.key: pair.clip_input for pair, _ in pending}
        self.in_flight: list[Job] = []
        self.pair_seconds: list[float] = []

    # ------------------------------------------------------------------ choosing the next job
    def _open_targets(self) -> list[_Input]:
        return [t for t in self.targets.values() if t.job is not None and t.waiting > 0
                and (t.summary is None or t.ready)]

    def _next_job(self, slots: int) -> Job | None:
        for i, (pair, result) in enumerate(self.pending):       # a pair whose target and clip are ready
            t, c = self.targets[pair.target_input.key], self.clips[pair.clip_input.key]
            if t.ready and c.ready:
                del self.pending[i]
                return self._pair_job(pair, result, t, c)
        open_keys = {t.key for t in self._open_targets()}
        for pair, _ in self.pending:                            # a clip an open target's pairs need
            c = self.clips[pair.clip_input.key]
            if pair.target_input.key in open_keys and c.job is None:
                c.job = Job("clip", (self._clip_job(pair.clip_input),), tag=c)
                return c.job
        if len(open_keys) < slots:                              # open the next target
            for pair, _ in self.pending:
                t = self.targets[pair.target_input.key]
                if t.job is None:
                    t.job = Job("prepare", (self._target_job(pair.target_input),), tag=t)
                    return t.job
        return None

    def _target_job(self, target) -> TargetJob:
        data = Path(target.path).read_bytes() if self.driver_writes else None
        return TargetJob(target, self.model_dir, self.device, self.threads, data)

    def _clip_job(self, clip) -> ClipJob:
        path = Path(clip.spec)
        data = path.read_bytes() if self.driver_writes and path.is_file() else None
        return ClipJob(clip, self.threads, data)

    def _pair_job(self, pair: Pair, result: PairResult, t: _Input, c: _Input) -> Job:
        builtin = pair.clip_input.sha.startswith("builtin:")
        spec = PairJob(str(self.out.resolve()), pair.out_rel, Path(pair.target).stem,
                       pair.clip if builtin else Path(pair.clip).stem, pair.inputs_record(self.model_id), retarget_keywords(pair.options), self.model_dir,
                       self.device, self.threads, self.driver_writes, self.kill_marker)
        result.status, result.prepared_target = "running", t.summary.get("id", "")
        return Job("pair", (t.handle, c.handle, spec), tag=(pair, result, t, c))

    # ------------------------------------------------------------------ the loop
    def run(self, engine, state: BatchState, results: list[PairResult], progress, started: float) -> None:
        last_report = 0.0
        while True:
            while len(self.in_flight) < engine.slots:
                job = self._next_job(engine.slots)
                if job is None:
                    break
                self.in_flight.append(engine.submit(job))
            if not self.in_flight:
                break
            for job in engine.wait(0.5):
                self.in_flight.remove(job)
                self._finish(job, engine, state)
            state.running = sum(j.kind == "pair" for j in self.in_flight)
            state.targets_prepared = sum(t.ready for t in self.targets.values())
            now = time.perf_counter()
            state.elapsed = now - started
            state.eta = self._time_left(engine.slots)
            if progress:
                progress(state)
            if now - last_report > 2.0:
                write_report(self.out, results)
                last_report = now
        for pair, result in self.pending:          # left without a job: their target or clip failed
            result.status = "failed"
            result.error = result.error or "not run"
            state.failed += 1
        self.pending.clear()

    def _time_left(self, slots: int) -> float | None:
        """Seconds left: the work still to do (targets to prepare at the mean preparation time, pairs at the mean
        pair time) spread over the worker slots; None until a pair has finished."""
        if not self.pair_seconds:
            return None
        prep = [t.summary["seconds"] for t in self.targets.values() if t.ready]
        to_prepare = sum(1 for t in self.targets.values() if t.summary is None and t.waiting > 0)
        pairs_left = len(self.pending) + sum(j.kind == "pair" for j in self.in_flight)
        work = to_prepare * (sum(prep) / len(prep) if prep else 0.0) + pairs_left * (
            sum(self.pair_seconds) / len(self.pair_seconds))
        return work / max(1, min(slots, pairs_left + to_prepare))

    def _finish(self, job: Job, engine, state: BatchState) -> int:
        summary = job.summary or {"ok": False, "error": "no result"}
        if job.kind in ("prepare", "clip"):
            item: _Input = job.tag
            item.summary, item.handle = summary, job.payload
            if not summary.get("ok"):
                what = "target" if job.kind == "prepare" else "clip"
                self._fail_waiting(item, job.kind, f"{what} {Path(item.spec).name}: {summary.get('error', '')}",
                                   state)
            return 0
        pair, result, t, c = job.tag
        result.attempts = job.attempts
        result.seconds = float(summary.get("seconds", 0.0))
        self.pair_seconds.append(result.seconds)
        result.notes = list(summary.get("notes", []))
        if summary.get("ok"):
            try:
                files = summary["files"]
                if self.driver_writes:
                    files = commit_returned_files(self.out, pair.out_rel, engine.fetch(job.payload),
                                                  pair.inputs_record(self.model_id), result.notes)
                result.status, result.outputs = "ok", [f"{pair.out_rel}/{f}" for f in files]
                state.ok += 1
            except OSError as e:
                result.status, result.error = "failed", f"writing the outputs: {e}"
                state.failed += 1
        else:
            result.status, result.error = "failed", summary.get("error", "")
            state.failed += 1
        for item in (t, c):
            item.waiting -= 1
            if item.waiting == 0:
                item.handle = None       # let the prepared target / clip go
        return 1

    def _fail_waiting(self, item: _Input, kind: str, message: str, state: BatchState) -> None:
        keep = []
        for pair, result in self.pending:
            key = pair.target_input.key if kind == "prepare" else pair.clip_input.key
            if key == item.key:
                result.status, result.error = "failed", message
                state.failed += 1
                other = self.clips[pair.clip_input.key] if kind == "prepare" else self.targets[pair.target_input.key]
                other.waiting -= 1
                if other.waiting == 0:
                    other.handle = None
            else:
                keep.append((pair, result))
        self.pending[:] = keep
        item.waiting = 0
        item.handle = None


def format_state(state: BatchState, width: int = 24) -> str:
    """One line: a bar of pairs done, the counts, targets prepared and the time left."""
    from nfs.progress import format_eta
    frac = state.done / state.total if state.total else 1.0
    n = int(width * frac)
    eta = "done" if state.finished else format_eta(state.eta)
    return (f"[{'#' * n}{'.' * (width - n)}] {state.done}/{state.total} pairs · {state.ok} ok · {state.failed} "
            f"failed · {state.skipped} skipped · {state.running} running · targets {state.targets_prepared}/"
            f"{state.targets_total} prepared · {eta}")

