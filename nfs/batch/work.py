"""What a batch worker runs: prepare a target, load a clip, retarget one pair. Plain functions of plain job
records, so that a process pool and Ray run the very same code.

Each returns (summary, payload): `summary` a small dict (`ok`, `error`, `seconds`, ...) the driver reads, and
`payload` the prepared target, the loaded clip, or (when the driver writes the outputs) the pair's files.
A failure is returned, not raised: a bad pair fails alone with its message, and Ray retries only a worker that
died (`max_retries`), never a pair that failed on its own.

Fault injection for tests: a pair job whose `kill_marker` names a file that does not exist yet creates it and
kills its own worker process (SIGKILL) after its outputs are written and before they are committed.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from nfs.batch.manifest import ClipInput, TargetInput
from nfs.batch.outputs import commit, new_partial_dir, write_record


@dataclass
class TargetJob:
    target: TargetInput
    model_dir: str | None = None
    device: str = "auto"
    threads: int = 1
    data: bytes | None = None     # the file's bytes, sent by the driver where workers do not share its disk


@dataclass
class ClipJob:
    clip: ClipInput
    threads: int = 1
    data: bytes | None = None     # a clip file's bytes, sent by the driver (built-in clips and folders: None)


@dataclass
class PairJob:
    out: str                      # the batch's output folder (as the workers see it)
    out_rel: str                  # <target stem>/<clip stem>
    target_name: str              # the names the outputs carry (as `nfs retarget` would name them)
    clip_name: str
    inputs: dict                  # what the outputs are made from (the completion record's `inputs`)
    keywords: dict = field(default_factory=dict)   # `retarget` options
    model_dir: str | None = None
    device: str = "auto"
    threads: int = 1
    driver_writes: bool = False   # True: return the files to the driver instead of writing under `out`
    kill_marker: str = ""


def error_message(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _setup(threads: int):
    import torch
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _model(model_dir: str | None):
    from nfs.pipeline import load_shipped_model
    return load_shipped_model(model_dir)[0]


def _local_copy(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="nfs-input-"))
    path = folder / Path(name).name
    path.write_bytes(data)
    return path


def prepare_target_job(job: TargetJob):
    """(summary, PreparedTarget or None). The summary's `id` names this one preparation (host, process, token)."""
    from nfs.pipeline import prepare_target
    t = time.perf_counter()
    path = None
    try:
        _setup(job.threads)
        path = _local_copy(job.data, job.target.path) if job.data is not None else Path(job.target.path)
        prepared = prepare_target(str(path), _model(job.model_dir), device=job.device, force=job.target.force,
                                  open_mouth=job.target.open_mouth, use_cache=False)
    except Exception as e:  # noqa: BLE001  (any failure is this target's, reported with its pairs)
        return {"ok": False, "error": error_message(e), "seconds": time.perf_counter() - t}, None
    finally:
        if job.data is not None and path is not None:
            shutil.rmtree(path.parent, ignore_errors=True)
    summary = {"ok": True, "id": f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}",
               "seconds": time.perf_counter() - t, "vertices": prepared.n_vertices}
    return summary, prepared


def load_clip_job(job: ClipJob):
    """(summary, Clip or None): the clip loaded once (a face video tracked and fitted once) for all its pairs."""
    from nfs.pipeline import is_face_video, load_clip, video_calibration
    t = time.perf_counter()
    path = None
    try:
        _setup(job.threads)
        spec = job.clip.spec
        if job.data is not None:
            path = _local_copy(job.data, spec)
            spec = str(path)
        c = job.clip
        calibration = None
        if is_face_video(spec):
            calibration = video_calibration(c.neutral_frame, not c.keep_neutral, c.dead_zone, c.shape_gains)
        elif c.keep_neutral or c.dead_zone or c.shape_gains:
            raise ValueError("keep_neutral, dead_zone and shape_gains apply to video clips only")
        clip = load_clip(spec, neutral_frame=c.neutral_frame, calibration=calibration)
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "error": error_message(e), "seconds": time.perf_counter() - t}, None
    finally:
        if path is not None:
            shutil.rmtree(path.parent, ignore_errors=True)
    return {"ok": True, "seconds": time.perf_counter() - t, "frames": clip.n_frames}, clip


def _kill_once(marker: str) -> None:
    if not marker:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def retarget_pair_job(prepared, clip, job: PairJob):
    """(summary, files or None): one pair retargeted with a shared prepared target and loaded clip. Outputs are
    written into a hidden partial folder, recorded, and committed onto DIR/<target>/<clip>/ in one rename; or,
    with `driver_writes`, returned as {name: bytes} for the driver to do the same."""
    from nfs.pipeline import retarget
    t = time.perf_counter()
    final = Path(job.out) / job.out_rel
    work = None
    try:
        _setup(job.threads)
        work = Path(tempfile.mkdtemp(prefix="nfs-pair-")) if job.driver_writes else new_partial_dir(final)
        # a target or clip shared by content with another file keeps this pair's own name
        prepared = dataclasses.replace(prepared, name=job.target_name)
        clip = dataclasses.replace(clip, name=job.clip_name)
        result = retarget(prepared, clip, work, model=_model(job.model_dir), device=job.device, **job.keywords)
        notes = list(getattr(clip, "warnings", []) or []) + list(result.notes)
        _kill_once(job.kill_marker)
        summary = {"ok": True, "notes": notes, "frames": result.source.n_frames,
                   "prepare_seconds_in_pair": result.timings.get("prepare", 0.0)}
        if job.driver_writes:
            files = {p.name: p.read_bytes() for p in sorted(work.iterdir()) if p.is_file()}
            summary.update(files=sorted(files), seconds=time.perf_counter() - t)
            return summary, files
        summary["seconds"] = time.perf_counter() - t
        summary["files"] = write_record(work, job.inputs, {"notes": notes})
        commit(work, final)
        work = None
        return summary, None
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "error": error_message(e), "seconds": time.perf_counter() - t}, None
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def commit_returned_files(out: Path, out_rel: str, files: dict, inputs: dict, notes: list) -> list[str]:
    """The driver's side of `driver_writes`: the returned files written and committed like a worker would."""
    final = Path(out) / out_rel
    partial = new_partial_dir(final)
    try:
        for name, data in files.items():
            (partial / Path(name).name).write_bytes(data)
        names = write_record(partial, inputs, {"notes": notes})
        commit(partial, final)
        return names
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


JOBS = {"prepare": prepare_target_job, "clip": load_clip_job, "pair": retarget_pair_job}
