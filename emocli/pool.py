"""The local engine: a process pool whose workers each load the models once.

Workers never print: each returns one summary row per video, and the main process
alone talks to the console. A worker that dies (a decoder crash, the out-of-memory
killer) takes only its videos down with it: the pool is restarted, the videos that
were in flight are tried once more, and one in flight at two crashes is reported failed.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from .engine import in_flight
from .job import BatchOptions, Interrupted, Job, Worker, error_line
from .outputs import summary_row
from .pipeline import AnalyzeOptions
from .resources import Plan

MAX_ATTEMPTS = 2  # crashes a video may be in flight at before it is reported failed
CRASHED = "worker crashed (killed, out of memory, or a decoder fault)"

_worker: Worker | None = None
_in_job = False


def _on_sigterm(signum, frame) -> None:
    """The main process stops this worker: mid-video, unwind (temporaries removed, ffmpeg
    stopped) and exit; idle, exit at once."""
    if _in_job:
        raise Interrupted(signum)
    os._exit(128 + signum)


def _init_worker(options: AnalyzeOptions, batch: BatchOptions, plan: Plan) -> None:
    """Runs once per worker process: the models and the face detector are loaded here only."""
    global _worker
    import signal

    # A terminal's Ctrl-C reaches every process of its group: the main process alone decides,
    # and stops the workers with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _worker = Worker(options, batch, plan)


def _work(job: Job) -> dict:
    global _in_job
    _in_job = True
    try:
        return _worker.run(job)
    except Interrupted as e:  # unwound: nothing half-written is left; the row would go nowhere
        os._exit(e.exit_code)
    finally:
        _in_job = False


def run_pool(
    jobs: list[Job],
    options: AnalyzeOptions,
    batch: BatchOptions,
    plan: Plan,
    progress,
    work: Callable[[Job], dict] = _work,
) -> Iterator[tuple[Job, dict]]:
    """Yield ``(job, summary row)`` as videos finish, ``plan.workers`` at a time."""
    queue = deque(jobs)
    attempts = dict.fromkeys(jobs, 0)
    while queue:
        crashed = yield from _run_until_crash(queue, options, batch, plan, progress, work)
        for job in crashed:
            attempts[job] += 1
            if attempts[job] >= MAX_ATTEMPTS:
                yield job, summary_row(job.name, "failed", error=CRASHED)
            else:
                queue.appendleft(job)


def _run_until_crash(queue: deque, options, batch, plan: Plan, progress, work) -> Iterator:
    """Drain ``queue`` through one pool; returns the jobs in flight if a worker dies."""
    # spawn, not fork: onnxruntime and mediapipe hold threads that a fork would orphan.
    context = mp.get_context("spawn")
    pool = ProcessPoolExecutor(
        plan.workers, mp_context=context, initializer=_init_worker, initargs=(options, batch, plan)
    )
    pending: dict = {}

    def finished(futures: list) -> set:
        return wait(futures, return_when=FIRST_COMPLETED)[0]

    try:
        for future, job in in_flight(
            queue, plan.workers, lambda job: pool.submit(work, job), finished, progress, pending
        ):
            try:
                row = future.result()
            except BrokenProcessPool:
                crashed = [job, *pending.values()]
                pending.clear()
                return crashed
            except Exception as e:  # the job could not be sent or its row returned
                row = summary_row(job.name, "failed", error=error_line(e))
            yield job, row
        return []
    finally:
        if pending:  # a signal (or the caller stopped early): stop the videos still running
            _stop_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)


def _stop_workers(pool: ProcessPoolExecutor, grace_s: float = 10.0) -> None:
    """SIGTERM each worker (it unwinds its video: temporaries removed, ffmpeg stopped) and
    wait for it; one that does not exit within ``grace_s`` is killed."""
    import time

    processes = list((getattr(pool, "_processes", None) or {}).values())
    for p in processes:
        with contextlib.suppress(OSError, ValueError):
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in processes:
        with contextlib.suppress(OSError, ValueError):
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
