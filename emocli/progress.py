"""The batch's console: one rich progress display in the main process, one line per failure."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class BatchProgress:
    """Videos done / total, the file(s) being processed, elapsed time and ETA; silent with ``quiet``.

    Only this object writes to the console, and only from the main process, so output
    from parallel workers never interleaves. Failures print one line each, even quiet.
    """

    def __init__(self, total: int, done: int = 0, quiet: bool = False, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.failed = 0
        self._running: dict[str, None] = {}  # names of the videos in flight, oldest first
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

    def _current(self) -> str:
        names = list(self._running)
        if not names:
            return ""
        return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} more)"

    def started(self, job) -> None:
        self._running[job.source.name] = None
        if self._progress is not None:
            self._progress.update(self._task, current=self._current())

    def finished(self, job, row: dict) -> None:
        self._running.pop(job.source.name, None)
        if row["status"] == "failed":
            self.failed += 1
        if row["error"]:
            # Errors, and notes on what an ok video lacks (media cut short), go out even with
            # --quiet: one readable line per video.
            self.console.print(
                f"{job.name}: {row['error']}",
                style="red" if row["status"] == "failed" else "yellow",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        if self._progress is not None:
            self._progress.update(self._task, advance=1, current=self._current())

    def report(self, rows: Iterable[dict], summary: Path) -> None:
        """The closing line: how many videos ended how, and where the summary is."""
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        parts = [f"{counts[s]} {s}" for s in ("ok", "skipped", "failed") if counts.get(s)]
        self.print(f"{', '.join(parts)}; summary: {summary}")

    def print(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False, markup=False, soft_wrap=True)
