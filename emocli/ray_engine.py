"""The Ray engine: the same jobs as the local pool, spread over a Ray cluster.

One actor per worker CPU loads the models once and then takes videos one at a
time, writing each video's outputs itself (so OUT, like the videos, must be at the
same path on every node: a shared filesystem). Actors never print; the driver alone
talks to the console. Without ``--ray-address`` a local Ray is started for this run
and shut down after it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections import deque
from collections.abc import Iterator

from .engine import in_flight
from .faces import native_stderr_silenced
from .job import BatchOptions, Job, Worker, error_line
from .outputs import summary_row
from .pipeline import AnalyzeOptions
from .resources import Plan, usable_cores

INSTALL_HINT = 'the Ray engine needs Ray: pip install "emocli[ray]"'


def require_ray():
    """The ``ray`` module, or an ImportError whose message says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return ray


class VideoWorker(Worker):
    """A Ray actor: a ``Worker`` on the one CPU Ray reserves for it."""

    def where(self) -> tuple[str, int]:
        """This actor's node and process id: the driver stops the ones on its own node with SIGTERM."""
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()


class RayConnectError(ValueError):
    """The cluster at --ray-address cannot be joined; one line (a ValueError, so the CLI prints it)."""


def _start(ray, batch: BatchOptions) -> bool:
    """Join the cluster at ``batch.ray_address``, or start a local one; True if this call did."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True}
    if batch.ray_address:
        _check_reachable(batch.ray_address)
        try:
            with native_stderr_silenced():  # Ray's C++ client logs every retry to fd 2
                ray.init(address=batch.ray_address, **quiet)
        except Exception as e:  # ConnectionError, an auth error, a version mismatch...
            raise RayConnectError(_connect_error(batch.ray_address, e)) from e
        return True  # our connection to it, which shutdown() closes; the cluster stays up
    # "local": a Ray of its own, even where RAY_ADDRESS is set or a cluster runs on this machine.
    ray.init(address="local", num_cpus=batch.workers or usable_cores(), include_dashboard=False, **quiet)
    return True


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once when nothing listens at HOST:PORT: ray.init would retry for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", "ray://...": let Ray resolve those
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise RayConnectError(
            f"cannot join the Ray cluster at {address}: {reason.lower()} (is `ray start --head` running there?)"
        ) from e


def _connect_error(address: str, error: BaseException) -> str:
    """One line for a failed ray.init(address=...), with the fix when it is Ray's token authentication."""
    first = error_line(error)
    chain = []
    while error is not None and len(chain) < 10:
        chain.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    if any("AuthenticationError" in c or "InvalidAuthToken" in c for c in chain):
        return (
            f"cannot join the Ray cluster at {address}: it uses token authentication; set RAY_AUTH_MODE=token "
            "and give this machine the cluster's token (RAY_AUTH_TOKEN, or ~/.ray/auth_token)"
        )
    return f"cannot join the Ray cluster at {address}: {first}"


@contextlib.contextmanager
def ray_session(batch: BatchOptions) -> Iterator[int]:
    """Ray joined (``batch.ray_address``) or started on this machine for the block, and left
    or shut down after it; yields the cluster's CPU count. The only place Ray starts and stops.

    The batch enters this before its progress display, so a cluster that cannot be
    joined is one line of error and nothing else.
    """
    ray = require_ray()
    started = _start(ray, batch)
    try:
        yield int(ray.cluster_resources().get("CPU", 1))
    finally:
        if started:
            ray.shutdown()


def run_ray(
    jobs: list[Job], options: AnalyzeOptions, batch: BatchOptions, plan: Plan, progress
) -> Iterator[tuple[Job, dict]]:
    """Yield ``(job, summary row)`` as videos finish on ``plan.workers`` actors, within ``ray_session``."""
    if not jobs:
        return
    ray = require_ray()
    worker_class = ray.remote(num_cpus=1)(VideoWorker)
    actors = [worker_class.remote(options, batch, plan) for _ in range(plan.workers)]
    places = [actor.where.remote() for actor in actors]
    idle = deque(actors)
    busy: dict = {}  # object ref -> the actor running it
    pending: dict = {}  # object ref -> job

    def submit(job: Job):
        actor = idle.popleft()
        ref = actor.run.remote(job.anywhere())  # a cluster's workers run in their own folder
        busy[ref] = actor
        return ref

    def finished(refs: list) -> list:
        return ray.wait(refs, num_returns=1)[0]

    try:
        for ref, job in in_flight(deque(jobs), len(actors), submit, finished, progress, pending):
            actor = busy.pop(ref)
            try:
                row = ray.get(ref)
            except ray.exceptions.RayActorError as e:  # the actor's process died: replace it
                row = summary_row(job.name, "failed", error=f"worker crashed: {_ray_error(e)}")
                ray.kill(actor)
                actors.remove(actor)
                actor = worker_class.remote(options, batch, plan)
                actors.append(actor)
            except ray.exceptions.RayError as e:
                row = summary_row(job.name, "failed", error=_ray_error(e))
            idle.append(actor)
            yield job, row
    finally:
        if pending:  # a signal: stop the videos in flight cleanly where this machine can
            _stop_actors(ray, places, list(pending))
        for actor in actors:
            ray.kill(actor)


def _stop_actors(ray, places: list, pending: list, grace_s: float = 10.0) -> None:
    """SIGTERM the actors on this node (Ray raises SystemExit in the video's thread: it
    unwinds, removing its temporaries and stopping its ffmpeg) and give their videos
    ``grace_s`` to end; ray.kill then ends the rest."""
    import signal

    here = ray.get_runtime_context().get_node_id()
    _quiet_worker_deaths(ray)
    try:
        located = ray.get(places, timeout=grace_s)
    except Exception:  # an actor still loading or already gone: ray.kill handles it
        return
    for node, pid in located:
        if node == here:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(Exception):
        ray.wait(pending, num_returns=len(pending), timeout=grace_s)


def _quiet_worker_deaths(ray) -> None:
    """Ray's driver prints a line to stdout for each worker that dies in a task (from a
    thread of its own, a message or two after the fact); those stopped here die on purpose,
    and the console is the batch's."""
    with contextlib.suppress(Exception):
        module = ray._private.worker
        shown = module.print_to_stdstream

        def shown_unless_a_death(data, *args, **kwargs):
            if data.get("pid") != "raylet":
                shown(data, *args, **kwargs)

        module.print_to_stdstream = shown_unless_a_death


def _ray_error(e: Exception) -> str:
    """Ray's errors carry tracebacks and banners; keep the first line that says something."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        return error_line(cause)
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__
