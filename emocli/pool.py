"""The local engine: a process pool whose workers each load the models once."""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from .batch import BatchOptions, Job, run_job
from .pipeline import AnalyzeOptions, Analyzer

_analyzer: Analyzer | None = None
_batch: BatchOptions | None = None


def _init_worker(options: AnalyzeOptions, batch: BatchOptions, threads: int) -> None:
    global _analyzer, _batch
    import cv2

    cv2.setNumThreads(threads)
    options.threads = threads
    _analyzer = Analyzer(options)
    _batch = batch


def _work(job: Job) -> dict:
    return run_job(_analyzer, job, _batch)


def run_pool(jobs: list[Job], options: AnalyzeOptions, batch: BatchOptions, workers: int, progress):
    """Yield ``(job, summary row)`` as videos finish, ``workers`` at a time."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn, not fork: onnxruntime and mediapipe hold threads that a fork would orphan.
    context = mp.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(options, batch, threads)) as pool:
        pending = {}
        queue = list(jobs)
        while queue or pending:
            while queue and len(pending) < workers * 2:
                job = queue.pop(0)
                pending[pool.submit(_work, job)] = job
                progress.started(job)
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                try:
                    row = future.result()
                except Exception as e:  # a worker that died (killed, out of memory)
                    from .outputs import summary_row

                    row = summary_row(job.name, "failed", error=f"worker crashed: {e}")
                yield job, row
