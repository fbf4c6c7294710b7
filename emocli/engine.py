"""The loop every parallel engine shares: keep each worker busy with one job, and hand
back each job's outcome as it finishes."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from .job import Job


def in_flight(
    queue: deque[Job],
    capacity: int,
    submit: Callable[[Job], object],
    ready: Callable[[list], list],
    progress,
    pending: dict,
) -> Iterator[tuple[object, Job]]:
    """Submit jobs from ``queue``, at most ``capacity`` at once (so "started" means running),
    and yield ``(handle, job)`` for each one ``ready`` returns as finished.

    ``pending`` (handle -> job) is the caller's: what is still running when the caller
    stops early (a signal, a crashed pool) is there for it to stop or retry.
    """
    while queue or pending:
        while queue and len(pending) < capacity:
            job = queue.popleft()
            pending[submit(job)] = job
            progress.started(job)
        for handle in ready(list(pending)):
            yield handle, pending.pop(handle)
