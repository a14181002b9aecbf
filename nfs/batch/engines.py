"""Where batch jobs run: `LocalEngine` (a process pool on this machine) or `RayEngine` (a Ray cluster, or a
local Ray instance). Both run the functions of `nfs.batch.work` and give the driver the same thing back: a
finished job's small summary, and a handle on its payload (the prepared target, the clip, a pair's files) that is
passed on to later jobs without the driver having to hold it (Ray: an object reference; local: the object).

Workers that die are retried: Ray re-runs the task (`max_retries`); the local pool is rebuilt and the jobs that
were in flight are submitted again, up to the same number of retries.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from dataclasses import dataclass, field

from nfs.batch.work import JOBS

MAX_RETRIES = 3
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(eq=False)
class Job:
    kind: str                 # prepare / clip / pair
    args: tuple
    tag: object = None        # the driver's own reference (a key or a pair)
    attempts: int = 0
    summary: dict | None = None
    payload: object = None    # local: the object; Ray: an ObjectRef
    handle: object = field(default=None, repr=False)


def _worker_init(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def _run(kind: str, *args):
    return JOBS[kind](*args)


class LocalEngine:
    """A pool of `workers` processes (spawned, each with `threads` torch threads)."""

    name = "local"

    def __init__(self, workers: int, threads: int = 1, max_retries: int = MAX_RETRIES):
        self.workers, self.threads, self.max_retries = workers, threads, max_retries
        # the workers' BLAS / OpenMP thread pools start when numpy or torch is imported, which a spawned worker
        # may do before its initializer runs (re-importing the caller's main module): so they inherit the count
        # from the environment while the batch runs (values the user set are kept)
        self.saved_env = {k: os.environ.get(k) for k in THREAD_VARIABLES}
        for k in THREAD_VARIABLES:
            os.environ.setdefault(k, str(threads))
        self.pool = self._new_pool()
        self.futures: dict[cf.Future, Job] = {}

    def _new_pool(self):
        return cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_worker_init, initargs=(self.threads,))

    def describe(self) -> str:
        return f"local process pool, {self.workers} worker{'s' if self.workers != 1 else ''}"

    @property
    def slots(self) -> int:
        return self.workers

    def submit(self, job: Job) -> Job:
        job.attempts += 1
        future = self.pool.submit(_run, job.kind, *job.args)
        self.futures[future] = job
        return job

    def running(self) -> int:
        return sum(1 for f in self.futures if f.running())

    def wait(self, timeout: float) -> list[Job]:
        """Jobs finished within `timeout` seconds (their summary and payload set)."""
        if not self.futures:
            return []
        done, _ = cf.wait(list(self.futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        finished, broken = [], False
        for future in done:
            job = self.futures.pop(future)
            try:
                job.summary, job.payload = future.result()
                finished.append(job)
            except cf.process.BrokenProcessPool:
                broken = True
                self.futures[future] = job          # resubmitted below with the others
            except Exception as e:  # noqa: BLE001  (the job's own code returns its errors; this is the transport)
                job.summary = {"ok": False, "error": f"{type(e).__name__}: {e}", "seconds": 0.0}
                finished.append(job)
        if broken:
            finished += self._rebuild()
        return finished

    def _rebuild(self) -> list[Job]:
        """A worker died: every job in flight is lost with the pool; start a new pool and submit them again."""
        lost = list(self.futures.values())
        self.futures.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._new_pool()
        given_up = []
        for job in lost:
            if job.attempts > self.max_retries:
                job.summary = {"ok": False, "seconds": 0.0,
                               "error": f"a worker process died {job.attempts} times running this job"}
                given_up.append(job)
            else:
                self.submit(job)
        return given_up

    def fetch(self, handle):
        return handle

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for k, v in self.saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class RayEngine:
    """Ray tasks, each `num_cpus` CPUs (and `num_gpus` GPUs where the cluster has GPUs and the device allows),
    retried `max_retries` times when their worker dies. `address`: a running cluster ("auto" or host:port, as for
    `ray.init`); None starts a local instance with `workers` CPUs."""

    name = "ray"

    def __init__(self, workers: int | None, address: str | None = None, threads: int = 1,
                 max_retries: int = MAX_RETRIES, device: str = "auto", gpus_per_task: float = 1.0):
        try:
            import ray
        except ImportError:
            raise RuntimeError("the ray engine needs Ray: pip install ray (see requirements.txt)") from None
        self.ray = ray
        self.started_here = not ray.is_initialized()
        if self.started_here:
            if address:
                ray.init(address=address, logging_level="WARNING", log_to_driver=False)
            else:
                ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, logging_level="WARNING",
                         log_to_driver=False)
        resources = ray.cluster_resources()
        self.cpus = int(resources.get("CPU", 1))
        self.gpus = float(resources.get("GPU", 0)) if device != "cpu" else 0.0
        self.workers = workers or self.cpus
        self.threads = threads
        self.gpus_per_task = gpus_per_task if self.gpus > 0 else 0.0
        self.remote = ray.remote(max_retries=max_retries, retry_exceptions=False)(_run)
        self.refs: dict = {}           # summary ObjectRef -> Job

    def describe(self) -> str:
        gpus = f", {self.gpus:g} GPU(s), {self.gpus_per_task:g} per task" if self.gpus_per_task else ""
        return f"Ray, {self.cpus} CPU(s){gpus}, up to {self.workers} tasks at once"

    @property
    def slots(self) -> int:
        return self.workers

    def submit(self, job: Job) -> Job:
        job.attempts += 1
        gpus = self.gpus_per_task if job.kind in ("prepare", "pair") else 0.0
        summary_ref, payload_ref = self.remote.options(num_returns=2, num_cpus=self.threads, num_gpus=gpus).remote(
            job.kind, *job.args)
        job.payload = payload_ref
        self.refs[summary_ref] = job
        return job

    def running(self) -> int:
        return min(len(self.refs), self.workers)

    def wait(self, timeout: float) -> list[Job]:
        if not self.refs:
            return []
        done, rest = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout, fetch_local=True)
        if done and rest:       # and whatever else is ready now
            done += self.ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=True)[0]
        finished = []
        for ref in done:
            job = self.refs.pop(ref)
            try:
                job.summary = self.ray.get(ref)
            except Exception as e:  # noqa: BLE001  (the worker died more than max_retries times, or Ray failed)
                job.summary = {"ok": False, "seconds": 0.0, "error": f"Ray: {type(e).__name__}: "
                               f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
            finished.append(job)
        return finished

    def fetch(self, handle):
        return self.ray.get(handle)

    def close(self) -> None:
        self.refs.clear()
        if self.started_here:
            self.ray.shutdown()
