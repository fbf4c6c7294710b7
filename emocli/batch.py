"""Many videos: discovery, output layout, resume, and the choice of engine.

Each video is tried, reported and left behind: a failure is one line in summary.csv
and on the console, and the batch goes on. Outputs are written atomically, the CSV
last, so a video whose CSV exists is complete and a rerun skips it.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .media import VIDEO_EXTS, probe
from .outputs import AnnotatedVideoWriter, CsvWriter, PlotWriter, summary_row, write_summary
from .pipeline import AnalyzeOptions, Analyzer
from .timeline import Timeline

# summary.csv is rewritten as videos finish, at most this often (and once at the end):
# rewriting it after every video would cost O(videos²) on a large batch.
SUMMARY_EVERY_S = 2.0


@dataclass
class BatchOptions:
    annotate: bool = False
    plot: bool = True
    workers: int | None = None  # None: the cores of this machine (or of the Ray cluster)
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
        """The video as the user knows it: relative to the working folder when inside it."""
        try:
            return str(self.source.relative_to(Path.cwd()))
        except ValueError:
            return str(self.source)


def _videos_in(folder: Path) -> list[Path]:
    """Video files under ``folder``; broken symlinks with a video name too, so they get reported."""
    found = []
    for p in folder.rglob("*"):
        if p.suffix.lower() in VIDEO_EXTS and (p.is_file() or (p.is_symlink() and not p.exists())):
            found.append(p)
    return sorted(found)


def discover(inputs: list[str | Path], out: str | Path) -> list[Job]:
    """Video files under ``inputs`` (recursively, any-case extensions) and their output stems.

    Outputs mirror the inputs' layout relative to their common folder, so ``a/clip.mp4``
    and ``b/clip.mp4`` land in ``OUT/a/`` and ``OUT/b/``. An explicitly named file is
    taken whatever its extension; inside folders only video extensions count.
    """
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += _videos_in(item)
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


def writers(job: Job, batch: BatchOptions, has_video: bool = True) -> list:
    """The outputs a job needs, the CSV last: its presence marks the job complete.

    An audio-only source gets no annotated video, even with --annotate: there is
    nothing to draw on, and its voice timeline is still worth having.
    """
    ws = []
    if batch.annotate and has_video:
        ws.append(AnnotatedVideoWriter(job.source))
    if batch.plot:
        ws.append(PlotWriter())
    ws.append(CsvWriter())
    return ws


def is_complete(job: Job, batch: BatchOptions) -> bool:
    missing = [w for w in writers(job, batch) if not w.path(job.stem).is_file()]
    if not missing:
        return True
    # Only the annotated video missing: complete if the source has no video to annotate.
    return all(isinstance(w, AnnotatedVideoWriter) for w in missing) and not _has_video(job.source)


def _has_video(source: Path) -> bool:
    try:
        return probe(source).has_video
    except Exception:  # unreadable now: do not count the job as done
        return True


def remove_stale_parts(stem: Path) -> None:
    """Delete temporaries (``.<stem>.part-<pid><suffix>``) that a killed run left for this stem.

    A temporary whose writer is still alive (another run on the same OUT) is left alone.
    """
    if not stem.parent.is_dir():
        return
    for part in stem.parent.glob(f".{_glob_escape(stem.name)}.part-*"):
        pid = part.name[len(stem.name) + len(".part-") + 1 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        try:
            part.unlink()
        except OSError:
            pass  # gone already, or not ours to delete: it never has a final name anyway


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def error_line(e: BaseException) -> str:
    """One readable line for a failure: the exception's first line, or its type when it says nothing."""
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


def run_job(analyzer: Analyzer, job: Job, batch: BatchOptions) -> dict:
    """Analyse one video and write its outputs; never raises for a bad video.

    Only the summary row comes back: the timeline is written and dropped here, so a
    worker's memory does not grow with the number of videos it has done.
    """
    start = time.perf_counter()
    try:
        timeline = analyzer.timeline(job.source, name=job.name)
        for writer in writers(job, batch, has_video=timeline.facts.get("has_video", True)):
            writer.write(timeline, job.stem)
    except Exception as e:  # one bad file must not stop the batch
        message = error_line(e)
        if batch.debug:
            message += "\n" + traceback.format_exc()
        return summary_row(job.name, "failed", error=message, seconds=time.perf_counter() - start)
    return summary_row(job.name, "ok", timeline, seconds=time.perf_counter() - start)


def skipped_row(job: Job) -> dict:
    return summary_row(job.name, "skipped", Timeline.read_csv(CsvWriter().path(job.stem)))


def check_models(options: AnalyzeOptions) -> None:
    """Fail once, up front, on a missing or wrong model, rather than once per worker or video."""
    from .models import ModelError, read_info
    from .pipeline import _model_path

    for task, given in (("face", options.face_model), ("voice", options.voice_model)):
        info = read_info(_model_path(given, task))
        if info.task != task:
            raise ModelError(f"{info.path}: is a {info.task} model, expected a {task} model")


def default_workers(batch: BatchOptions, jobs: int) -> int:
    """``--workers``, else one per two cores: each video keeps one busy decoding and one
    analysing, so one worker per core oversubscribes (benchmarks/scale.py)."""
    return max(1, min(batch.workers or (os.cpu_count() or 2) // 2, jobs or 1))


def run_batch(inputs: list[str | Path], out: str | Path, options: AnalyzeOptions, batch: BatchOptions) -> list[dict]:
    """Process every video under ``inputs`` into ``out``; returns (and writes) the summary:
    a row per video (``outputs.SUMMARY_COLUMNS``), in the order of discovery."""
    from .progress import BatchProgress

    if batch.engine not in ("local", "ray"):
        raise ValueError(f"engine must be local or ray, not {batch.engine!r}")
    if batch.engine == "ray":
        from .ray_engine import require_ray

        require_ray()  # before any work: without Ray, say how to get it and stop
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
    for job in todo:
        remove_stale_parts(job.stem)
    remove_stale_parts(out / "summary")
    workers = default_workers(batch, len(todo))
    local = batch.engine == "local" and workers == 1
    # In this process the models load before any output is touched, and loading checks them;
    # other workers load their own, so check the files here once rather than fail in each.
    analyzer = Analyzer(options) if local and todo else None
    if not local:
        check_models(options)
    saved_at = 0.0

    def save(force: bool = False) -> None:
        nonlocal saved_at
        if force or time.monotonic() - saved_at >= SUMMARY_EVERY_S:
            write_summary([rows[j] for j in jobs if j in rows], out / "summary.csv")
            saved_at = time.monotonic()

    engine = contextlib.nullcontext()
    if batch.engine == "ray" and todo:
        from .ray_engine import ray_session

        engine = ray_session(batch)
    models = analyzer if analyzer is not None else contextlib.nullcontext()
    with models, engine, BatchProgress(len(jobs), done=len(rows), quiet=batch.quiet) as progress:
        if batch.engine == "ray":
            from .ray_engine import run_ray

            results = run_ray(todo, options, batch, progress)
        elif local:
            results = _run_here(todo, analyzer, batch, progress)
        else:
            from .pool import run_pool

            results = run_pool(todo, options, batch, workers, progress)
        try:
            for job, row in results:
                rows[job] = row
                progress.finished(job, row)
                save()
        finally:  # also on Ctrl-C: what finished is on record for the rerun
            save(force=True)
    progress.report(rows.values(), out / "summary.csv")
    return [rows[j] for j in jobs]


def _run_here(jobs: list[Job], analyzer: Analyzer | None, batch: BatchOptions, progress) -> Iterator[tuple[Job, dict]]:
    """One worker: this process, no pool to start."""
    for job in jobs:
        progress.started(job)
        yield job, run_job(analyzer, job, batch)
