"""Many videos: discovery, output layout, resume, and the local and Ray engines.

Each video is tried, reported and left behind: a failure is one line in summary.csv
and on the console, and the batch goes on. Outputs are written atomically, the CSV
last, so a video whose CSV exists is complete and a rerun skips it.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .media import VIDEO_EXTS
from .outputs import AnnotatedVideoWriter, CsvWriter, PlotWriter, summary_row, write_summary
from .pipeline import AnalyzeOptions, Analyzer


@dataclass
class BatchOptions:
    annotate: bool = False
    plot: bool = True
    workers: int | None = None
    engine: str = "local"
    ray_address: str | None = None
    overwrite: bool = False
    quiet: bool = False
    debug: bool = False


@dataclass(frozen=True)
class Job:
    source: Path
    stem: Path  # output path without suffix: OUT/<relative dir>/<stem>

    @property
    def name(self) -> str:
        return str(self.source)


def discover(inputs: list[str | Path], out: str | Path) -> list[Job]:
    """Video files under ``inputs`` (recursively, any-case extensions) and their output stems.

    Outputs mirror the inputs' layout relative to their common folder, so ``a/clip.mp4``
    and ``b/clip.mp4`` land in ``OUT/a/`` and ``OUT/b/``. An explicitly named file is
    taken whatever its extension; inside folders only video extensions count.
    """
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file())
        elif item.exists() or item.is_symlink():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    files = list(dict.fromkeys(p.absolute() for p in files))
    if not files:
        raise FileNotFoundError(f"no video files ({', '.join(sorted(VIDEO_EXTS))}) in {', '.join(map(str, inputs))}")
    anchors = [p.parent for p in files] + [Path(i).absolute() for i in inputs if Path(i).is_dir()]
    root = Path(os.path.commonpath(anchors))
    jobs, taken = [], set()
    for path in files:
        rel = path.relative_to(root)
        stem = Path(out) / rel.with_suffix("")
        if stem in taken:  # clip.mp4 next to clip.mov: keep both, by full name
            stem = Path(out) / rel
        taken.add(stem)
        jobs.append(Job(path, stem))
    return jobs


def writers(job: Job, batch: BatchOptions) -> list:
    """The outputs a job needs, the CSV last: its presence marks the job complete."""
    ws = []
    if batch.annotate:
        ws.append(AnnotatedVideoWriter(job.source))
    if batch.plot:
        ws.append(PlotWriter())
    ws.append(CsvWriter())
    return ws


def is_complete(job: Job, batch: BatchOptions) -> bool:
    return all(w.path(job.stem).is_file() for w in writers(job, batch))


def run_job(analyzer: Analyzer, job: Job, batch: BatchOptions) -> dict:
    """Analyse one video and write its outputs; never raises for a bad video."""
    start = time.perf_counter()
    try:
        timeline = analyzer.analyze(job.source)
        for writer in writers(job, batch):
            writer.write(timeline, job.stem)
    except Exception as e:  # one bad file must not stop the batch
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if batch.debug:
            message += "\n" + traceback.format_exc()
        return summary_row(job.name, "failed", error=message, seconds=time.perf_counter() - start)
    return summary_row(job.name, "ok", timeline, seconds=time.perf_counter() - start)


def skipped_row(job: Job) -> dict:
    timeline = pd.read_csv(CsvWriter().path(job.stem))
    timeline["voice_active"] = timeline["voice_active"].astype(str).str.lower() == "true"
    return summary_row(job.name, "skipped", timeline)


def run_batch(inputs: list[str | Path], out: str | Path, options: AnalyzeOptions, batch: BatchOptions) -> pd.DataFrame:
    """Process every video under ``inputs`` into ``out``; returns (and writes) the summary."""
    from .progress import BatchProgress

    out = Path(out)
    jobs = discover(inputs, out)
    rows: dict[Job, dict] = {}
    todo = []
    for job in jobs:
        if not batch.overwrite and is_complete(job, batch):
            try:
                rows[job] = skipped_row(job)
                continue
            except Exception:  # an unreadable earlier CSV: do the video again
                pass
        todo.append(job)
    workers = max(1, min(batch.workers or os.cpu_count() or 1, len(todo) or 1))

    def save() -> None:
        write_summary([rows[j] for j in jobs if j in rows], out / "summary.csv")

    with BatchProgress(len(jobs), done=len(rows), quiet=batch.quiet) as progress:
        if batch.engine == "ray":
            from .ray_engine import run_ray

            results = run_ray(todo, options, batch)
        elif workers == 1:
            results = _run_here(todo, options, batch, progress)
        else:
            from .pool import run_pool

            results = run_pool(todo, options, batch, workers, progress)
        for job, row in results:
            rows[job] = row
            progress.finished(job, row)
            save()
    save()
    return pd.DataFrame([rows[j] for j in jobs], columns=list(next(iter(rows.values())).keys()))


def _run_here(jobs: list[Job], options: AnalyzeOptions, batch: BatchOptions, progress):
    if not jobs:
        return
    with Analyzer(options) as analyzer:
        for job in jobs:
            progress.started(job)
            yield job, run_job(analyzer, job, batch)
