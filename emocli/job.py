"""One video's job, what any engine runs: analyse it, write its outputs, return its summary row.

The local process, the pool's workers and Ray's actors all run jobs through a ``Worker``
(the models loaded once, or why they could not be) and ``run_job``; none of them prints.
A video's outputs are all written to temporaries, then renamed into place together (the CSV
last), then a record of what made them (``.<stem>.emocli``, hidden beside them) is written,
from which a rerun decides to skip or redo.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

from .outputs import (
    AnnotatedVideoWriter,
    CsvWriter,
    JsonWriter,
    PeopleWriter,
    PlotWriter,
    atomic_path,
    short_name,
    summary_row,
    write_all,
)
from .pipeline import AnalyzeOptions, Analyzer
from .resources import Plan
from .timeline import Timeline


@dataclass
class BatchOptions:
    annotate: bool = False
    plot: bool = True
    formats: tuple[str, ...] = ("csv",)  # timeline formats; the CSV is always written
    workers: int | None = None  # None: one per two usable cores (or the Ray cluster's CPUs)
    engine: str = "local"
    ray_address: str | None = None
    overwrite: bool = False
    quiet: bool = False
    debug: bool = False
    # What the analysis depends on (options, models, emocli version): set by run_batch and
    # recorded beside each video's outputs, so a rerun can tell whether they are still valid.
    key: dict | None = None
    plan: Plan | None = None  # set by run_batch: threads for the annotated video's render


@dataclass(frozen=True)
class Job:
    source: Path
    stem: Path  # output path without suffix: OUT/<relative dir>/<stem>
    # The video as the user knows it: relative to the working folder (where the batch was
    # started, not where a worker runs) when inside it.
    name: str = ""

    def __post_init__(self):
        if not self.name:
            try:
                name = str(self.source.relative_to(Path.cwd()))
            except ValueError:
                name = str(self.source)
            object.__setattr__(self, "name", name)

    def anywhere(self) -> Job:
        """The job with absolute paths, for a worker whose working folder may be another."""
        return replace(self, source=self.source.absolute(), stem=self.stem.absolute())


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP: the batch stops, cleans up, and exits ``128 + signal``."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def writers(job: Job, batch: BatchOptions, has_video: bool = True) -> list:
    """The outputs a job needs, the CSV last: its presence marks the job complete.

    An audio-only source gets no annotated video, even with --annotate: there is
    nothing to draw on, and its voice timeline is still worth having.
    """
    ws = []
    if batch.annotate and has_video:
        threads = batch.plan.render_threads if batch.plan is not None else 0
        ws.append(AnnotatedVideoWriter(job.source, threads))
    if batch.plot:
        ws.append(PlotWriter())
    ws.append(PeopleWriter())
    if "json" in batch.formats:
        ws.append(JsonWriter())
    ws.append(CsvWriter())
    return ws


# ---------------------------------------------------------------- records: honest reruns

RECORD_SUFFIX = ".emocli"


def record_path(stem: Path) -> Path:
    """Where the record of ``stem``'s outputs lives: hidden, beside them."""
    return stem.with_name(f".{short_name(stem.name, len(RECORD_SUFFIX) + 1)}{RECORD_SUFFIX}")


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def source_id(source: Path) -> dict:
    st = source.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _mark_pending(stem: Path, names: list[str]) -> None:
    """Replace ``stem``'s record by a pending one before its outputs are renamed into place:
    until the new record is written, a rerun redoes the video rather than trust outputs
    half old, half new (and knows a run was cut short, not that an older emocli made them).
    It still names the outputs, old and new: an annotated video beside its source is never
    taken for an input."""
    with atomic_path(record_path(stem)) as tmp:
        tmp.write_text(json.dumps({"pending": True, "outputs": names}) + "\n", encoding="utf-8")


def _pending_names(stem: Path, writers_: list, record: dict) -> list[str]:
    """The outputs ``record`` names and those ``writers_`` are about to write."""
    return list(dict.fromkeys([*record.get("outputs", []), *(w.path(stem).name for w in writers_)]))


def written_here(record: dict | None, path: Path) -> bool:
    """Whether ``path`` (an output name beside ``record``) is the file emocli wrote there: the
    record names it with its size. A record from before sizes were kept, or one marked
    pending (a run stopped while renaming its outputs into place), vouches for every name."""
    if record is None:
        return False
    if record.get("pending") or "sizes" not in record:
        return True
    try:
        return not path.is_symlink() and record["sizes"].get(path.name) == path.stat().st_size
    except (OSError, AttributeError):
        return False


def _sizes(paths: list[Path]) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in paths}


def _write_record(job: Job, batch: BatchOptions, outputs: list[Path], timeline: Timeline, note: str) -> None:
    record = {
        "key": batch.key,
        "source": str(job.source),
        "source_id": source_id(job.source),
        "outputs": [p.name for p in outputs],
        # Each output's size as written: a file put there since under the same name is not
        # emocli's to overwrite, delete or report as current.
        "sizes": _sizes(outputs),
        "has_video": bool(timeline.facts.get("has_video", True)),
        "note": note,
        # The detector's seconds of speech are not in the CSV: a skipped row reports them from here.
        "speech_s": timeline.speech_s,
        # The video's facts too: an output asked for later is written from the CSV and these.
        "facts": {k: v for k, v in timeline.facts.items() if isinstance(v, str | int | float | bool | None)},
    }
    _save_record(job.stem, record)


def _save_record(stem: Path, record: dict) -> None:
    with atomic_path(record_path(stem)) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def complete_job(job: Job, writers_: list) -> dict:
    """Write ``writers_``' outputs (asked for now, missing) from the timeline on record,
    without analysing the video again: its analysis is current (``batch.later_outputs``).
    The summary row is the skipped one's."""
    record = read_json(record_path(job.stem)) or {}
    timeline = Timeline.read_csv(CsvWriter().path(job.stem))
    timeline.facts.update(record["facts"])
    names = _pending_names(job.stem, writers_, record)
    written = write_all(timeline, job.stem, writers_, lambda: _mark_pending(job.stem, names))
    record["outputs"] = list(dict.fromkeys([*record.get("outputs", []), *(p.name for p in written)]))
    record["sizes"] = {**record.get("sizes", {}), **_sizes(written)}
    _save_record(job.stem, record)
    return summary_row(job.name, "skipped", timeline, error=str(record.get("note") or ""))


def _earlier_outputs(job: Job, batch: BatchOptions, record: dict, written: list[Path]) -> list[Path]:
    """Outputs an earlier run recorded that this one did not write (a plot or annotated video
    not asked for now): kept, and recorded again, when the same options, models and source
    made them; otherwise deleted, for they show another analysis than the new timeline."""
    names = {p.name for p in written}
    earlier = [
        job.stem.with_name(n)
        for n in record.get("outputs", [])
        if isinstance(n, str) and n == Path(n).name and n not in names and n != record_path(job.stem).name
    ]
    try:
        current = record.get("key") == batch.key and record.get("source_id") == source_id(job.source)
    except OSError:
        current = False
    kept = []
    for path in earlier:
        if not path.is_file() or same_file(path, job.source) or not written_here(record, path):
            continue  # gone, the input itself, or a file put there since: not emocli's to touch
        if current:
            kept.append(path)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return kept


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (False when either is missing or unreadable)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# ---------------------------------------------------------------- running a job


def error_line(e: BaseException) -> str:
    """One readable line for a failure: the exception's first line, or its type when it says nothing."""
    if isinstance(e, OSError) and e.strerror:
        target = e.filename2 if isinstance(e, FileExistsError) and e.filename2 else e.filename
        where = f"cannot write {_named(target)}: " if target else ""
        return f"{where}{e.strerror}"
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


def _named(target) -> str:
    """An output path as the user knows it: a temporary stands for its final name."""
    path = Path(os.fsdecode(target))
    if path.name.startswith(".") and ".part-" in path.name:
        head, _, tail = path.name[1:].partition(".part-")
        suffix = tail.lstrip("0123456789")
        return str(path.with_name(head + suffix))
    return str(path)


def run_job(analyzer: Analyzer, job: Job, batch: BatchOptions) -> dict:
    """Analyse one video and write its outputs; never raises for a bad video or a failed write.

    Only the summary row comes back: the timeline is written and dropped here, so a
    worker's memory does not grow with the number of videos it has done. The row's
    ``error`` of an ok video holds a note when its media ended before its header said.
    """
    start = time.perf_counter()
    try:
        timeline = analyzer.timeline(job.source, name=job.name)
        note = str(timeline.facts.get("note") or "")
        has_video = bool(timeline.facts.get("has_video", True))
        earlier = read_json(record_path(job.stem)) or {}
        # Until the new record is written, a rerun redoes the video rather than trust
        # outputs half renamed.
        needed = writers(job, batch, has_video)
        names = _pending_names(job.stem, needed, earlier)
        written = write_all(timeline, job.stem, needed, lambda: _mark_pending(job.stem, names))
        if batch.key is not None:
            written += _earlier_outputs(job, batch, earlier, written)
            _write_record(job, batch, written, timeline, note)
    except Exception as e:  # one bad file must not stop the batch
        message = error_line(e)
        if batch.debug:
            message += "\n" + traceback.format_exc()
        return summary_row(job.name, "failed", error=message, seconds=time.perf_counter() - start)
    return summary_row(job.name, "ok", timeline, error=note, seconds=time.perf_counter() - start)


class Worker:
    """An engine's worker (a pool process, a Ray actor): its share of the cores taken, the
    models loaded once, then one job per call. Models that cannot load fail each job with
    one line, rather than a traceback that would break the pool."""

    def __init__(self, options: AnalyzeOptions, batch: BatchOptions, plan: Plan):
        import cv2

        cv2.setNumThreads(plan.cores)
        self.batch = batch
        self.analyzer: Analyzer | None = None
        self.load_error = ""
        try:
            self.analyzer = Analyzer(options)
        except Exception as e:
            self.load_error = f"cannot load the models: {error_line(e)}"

    def run(self, job: Job) -> dict:
        if self.analyzer is None:
            return summary_row(job.name, "failed", error=self.load_error)
        return run_job(self.analyzer, job, self.batch)


def planned(options: AnalyzeOptions, plan: Plan) -> AnalyzeOptions:
    """``options`` with the plan's threads (a decoder thread count the caller set is kept) and
    its model paths absolute (a worker may run in another folder)."""
    models = {
        f"{task}_model": Path(path).absolute()
        for task, path in (("face", options.face_model), ("voice", options.voice_model))
        if path is not None
    }
    return replace(
        options, threads=plan.model_threads, decode_threads=options.decode_threads or plan.decode_threads, **models
    )
