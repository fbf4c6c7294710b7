"""The batch's console: one rich progress display in the main process, one line per failure."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class BatchProgress:
    """Videos done / total, the current file, elapsed time and ETA; silent with ``quiet``.

    Only this object writes to the console, and only from the main process, so output
    from parallel workers never interleaves.
    """

    def __init__(self, total: int, done: int = 0, quiet: bool = False):
        self.console = Console(stderr=True)
        self.quiet = quiet
        self.failed = 0
        self._progress = None
        if not quiet:
            self._progress = Progress(
                TextColumn("[bold]emocli[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[current]}"),
                console=self.console, transient=False,
            )  # fmt: skip
            self._task = self._progress.add_task("videos", total=total, completed=done, current="")

    def __enter__(self) -> BatchProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def started(self, job) -> None:
        if self._progress is not None:
            self._progress.update(self._task, current=job.source.name)

    def finished(self, job, row: dict) -> None:
        if row["status"] == "failed":
            self.failed += 1
            # Errors go out even with --quiet: one readable line per video.
            self.console.print(f"{job.name}: {row['error']}", style="red", markup=False, highlight=False, soft_wrap=True)
        if self._progress is not None:
            self._progress.update(self._task, advance=1, current=job.source.name)

    def print(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False)


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
