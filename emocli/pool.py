"""The local engine: a process pool whose workers each load the models once.

Workers never print: each returns one summary row per video, and the main process
alone talks to the console. A worker that dies (a decoder crash, the out-of-memory
killer) takes only its videos down with it: the pool is restarted, the videos that
were in flight are tried once more, and one that is in flight at two crashes is
reported as failed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from .batch import BatchOptions, Job, error_line, run_job
from .outputs import summary_row
from .pipeline import AnalyzeOptions, Analyzer

MAX_ATTEMPTS = 2  # crashes a video may be in flight at before it is reported failed

class WorkersCannotStart(RuntimeError):
    def __init__(self, jobs: list[Job]):
        super().__init__("workers cannot start")
        self.jobs = jobs


_analyzer: Analyzer | None = None
_batch: BatchOptions | None = None


def _init_worker(options: AnalyzeOptions, batch: BatchOptions, threads: int) -> None:
    """Runs once per worker process: the models and the face detector are loaded here only."""
    global _analyzer, _batch
    import cv2

    cv2.setNumThreads(threads)
    options.threads = threads  # a copy: spawn pickles the options for each worker
    _analyzer = Analyzer(options)
    _batch = batch


def _work(job: Job) -> dict:
    return run_job(_analyzer, job, _batch)


def run_pool(
    jobs: list[Job], options: AnalyzeOptions, batch: BatchOptions, workers: int, progress, work: Callable[[Job], dict] = _work
) -> Iterator[tuple[Job, dict]]:
    """Yield ``(job, summary row)`` as videos finish, ``workers`` at a time."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    queue = deque(jobs)
    attempts = dict.fromkeys(jobs, 0)
    while queue:
        try:
            crashed = yield from _run_until_crash(queue, options, batch, workers, threads, progress, work)
        except WorkersCannotStart as e:
            failed, _ = e.jobs + list(queue), queue.clear()
            for job in failed:
                yield job, summary_row(job.name, "failed", error="worker could not load the models (see --workers 1 --debug)")
            return
        for job in crashed:
            attempts[job] += 1
            if attempts[job] >= MAX_ATTEMPTS:
                yield job, summary_row(job.name, "failed", error="worker crashed (killed, out of memory, or a decoder fault)")
            else:
                queue.appendleft(job)


def _run_until_crash(queue: deque, options, batch, workers: int, threads: int, progress, work) -> Iterator:
    """Drain ``queue`` through one pool; returns the jobs in flight if a worker dies."""
    # spawn, not fork: onnxruntime and mediapipe hold threads that a fork would orphan.
    context = mp.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(options, batch, threads))
    pending: dict = {}
    try:
        while queue or pending:
            # Only as many in flight as there are workers, so "started" means running.
            while queue and len(pending) < workers:
                job = queue.popleft()
                pending[pool.submit(work, job)] = job
                progress.started(job)
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                try:
                    row = future.result()
                except BrokenProcessPool as e:
                    crashed = [job, *pending.values()]
                    pending.clear()
                    if "initializer" in str(e):  # no worker can load the models: nothing will work
                        raise WorkersCannotStart(crashed) from e
                    return crashed
                except Exception as e:  # the job could not even be sent or returned (pickling)
                    row = summary_row(job.name, "failed", error=error_line(e))
                yield job, row
        return []
    finally:
        # On a crash or Ctrl-C, do not wait for the videos still running.
        pool.shutdown(wait=not pending, cancel_futures=True)
