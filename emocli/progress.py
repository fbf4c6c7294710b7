"""The batch's console, in the main process only, so parallel workers never interleave.

On a terminal: a progress bar on stderr. Where stdout is not a terminal (a log file, a
pipe, a scheduler's capture): one line per video on stdout as it finishes, so a log
shows the batch as it goes. Failures are one line each on stderr, even with ``quiet``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class BatchProgress:
    """Videos done / total, the video(s) in flight, elapsed time and ETA, or a line per video."""

    def __init__(
        self,
        total: int,
        done: int = 0,
        quiet: bool = False,
        console: Console | None = None,
        out: Console | None = None,
    ):
        self.console = console or Console(stderr=True)  # the bar and the errors
        self.out = out or Console()  # per-video lines and the closing lines, where not a terminal
        self.quiet = quiet
        self.failed = 0
        self.lines = not quiet and not self.out.is_terminal
        self._running: dict[str, None] = {}  # names of the videos in flight, oldest first
        self._progress = None
        if not quiet and self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]emocli[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[current]}"),
                console=self.console,
                transient=False,
            )
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

    def skipped(self, job, row: dict) -> None:
        """A video whose outputs were current: counted done from the start, a line where not a terminal."""
        if self.lines:
            self._say(self.out, _line(job, row))

    def finished(self, job, row: dict) -> None:
        self._running.pop(job.source.name, None)
        if row["status"] == "failed":
            self.failed += 1
        elif self.lines:
            self._say(self.out, _line(job, row))
        if row["error"]:
            # Errors, and notes on what an ok video lacks (a stream, or media cut short), go
            # out even with --quiet: one readable line per video.
            failed = row["status"] == "failed"
            self._say(
                self.console, f"{job.name}: {'' if failed else 'note: '}{row['error']}", "red" if failed else "yellow"
            )
        if self._progress is not None:
            self._progress.update(self._task, advance=1, current=self._current())

    def report(self, rows: Iterable[dict], out: Path, summary_written: bool = True) -> None:
        """The closing lines: how many videos ended how (the statuses that occurred, in the
        order ok, skipped, failed), where the summary is, and where the results are when
        any video has them."""
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        parts = [f"{counts[s]} {s}" for s in ("ok", "skipped", "failed") if counts.get(s)]
        where = f"summary: {out / 'summary.csv'}" if summary_written else "no summary written"
        self.print(f"{', '.join(parts)}; {where}")
        if counts.get("ok") or counts.get("skipped"):
            self.print(f"Results saved to {out}")

    def print(self, message: str) -> None:
        if not self.quiet:
            self._say(self.out if self.lines else self.console, message)

    @staticmethod
    def _say(console: Console, message: str, style: str | None = None) -> None:
        console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)


def _line(job, row: dict) -> str:
    return f"{job.name}: {describe(row)} → {job.stem.with_name(job.stem.name + '.csv')}"


def describe(row: dict) -> str:
    """A finished video in a few words: ``12.9 s, 2 faces`` (and ``skipped`` when its outputs were current)."""
    faces = int(row.get("faces") or 0)
    text = f"{float(row.get('duration_s') or 0):.1f} s, {faces} face{'' if faces == 1 else 's'}"
    return f"skipped ({text}: its outputs are current)" if row["status"] == "skipped" else text
