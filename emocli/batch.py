"""Many videos: discovery, output layout, resume, and the choice of engine.

Each video is tried, reported and left behind: a failure is one line in summary.csv
and on the console, and the batch goes on. A video's outputs are written to temporaries
and renamed into place together, the CSV last, then a record of what made them
(``.<stem>.emocli``, hidden beside them): a rerun skips a video only when that record
says the same options, models and source made outputs that are all still there.
"""

from __future__ import annotations

import contextlib
import csv
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path

from .job import (
    RECORD_SUFFIX,
    BatchOptions,
    Interrupted,
    Job,
    complete_job,
    error_line,
    planned,
    read_json,
    record_path,
    run_job,
    same_file,
    source_id,
    writers,
    written_here,
)
from .media import VIDEO_EXTS
from .outputs import (
    SUMMARY_COLUMNS,
    AnnotatedVideoWriter,
    CsvWriter,
    JsonWriter,
    PeopleWriter,
    PlotWriter,
    part_prefix,
    short_name,
    summary_row,
    write_summary,
)
from .pipeline import AnalyzeOptions, Analyzer
from .resources import Plan
from .timeline import Timeline
from .usage import UsageError

__all__ = ["BatchOptions", "Interrupted", "Job", "SummaryError", "UsageError", "discover", "run_batch"]


class SummaryError(OSError):
    """summary.csv could not be written; the videos' own outputs were."""


# summary.csv is rewritten as videos finish, at most this often (and once at the end):
# rewriting it after every video would cost O(videos²) on a large batch.
SUMMARY_EVERY_S = 2.0


def _special(path: Path) -> bool:
    """A FIFO, socket or device (or a link to one): listed (so it gets a failed row), never opened."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def _videos_in(folder: Path, out: Path | None = None) -> list[Path]:
    """Video files under ``folder``: regular files, broken symbolic links and special files
    with a video name (so they get reported), never emocli's own outputs.

    Linked folders are followed, each real folder walked once (a link back up ends there).
    Hidden files and folders are not inputs: a Mac's ``._clip.mp4`` beside each video holds
    no video. The output folder ``out``, when it lies inside ``folder``, is not walked; where
    outputs share a folder with inputs, the annotated videos that records (or an old
    summary.csv) name as outputs are left out.
    """
    found = []
    out_real = os.path.realpath(out) if out is not None else None
    walked = {os.path.realpath(folder)}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            real = os.path.realpath(here / d)
            if not d.startswith(".") and real != out_real and real not in walked:
                walked.add(real)
                keep.append(d)
        dirnames[:] = keep
        outputs = _outputs_named_in(here, filenames)
        for name in filenames:
            p = here / name
            if p.suffix.lower() not in VIDEO_EXTS or name in outputs or name.startswith("."):
                continue
            if p.is_file() or _special(p) or (p.is_symlink() and not p.exists()):
                found.append(p)
    return sorted(found)


def _outputs_named_in(folder: Path, names: list[str]) -> set[str]:
    """Names in ``folder`` that emocli wrote as annotated videos, by the records beside them,
    or by a summary.csv that an emocli without records left, when the source it names is
    found elsewhere (a video processed in place is its own source: an input)."""
    outputs: set[str] = set()
    for name in names:
        if name.startswith(".") and name.endswith(RECORD_SUFFIX):
            record = read_json(folder / name) or {}
            source = str(record.get("source") or "")
            for output in record.get("outputs", []):
                video = Path(output).suffix.lower() in VIDEO_EXTS
                if video and not same_file(folder / output, Path(source)) and written_here(record, folder / output):
                    outputs.add(output)
    if "summary.csv" in names:
        for source in _summary_videos(folder / "summary.csv"):
            for output in {source.stem + ".mp4", source.name + ".mp4"} & set(names):
                homes = [Path.cwd(), folder.absolute(), *folder.absolute().parents]
                if any(_is_file(home / source) and not same_file(home / source, folder / output) for home in homes):
                    outputs.add(output)
    return outputs


def _summary_videos(path: Path) -> list[Path]:
    """The videos an emocli summary.csv lists (none if it is not one)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = csv.DictReader(f)
            if not rows.fieldnames or rows.fieldnames[: len(SUMMARY_COLUMNS)] != SUMMARY_COLUMNS:
                return []
            return [Path(row["video"]) for row in rows if row.get("video")]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _check_out(out: Path) -> None:
    """-o must be a folder, or a path where one can be made."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: is a file, not a folder")
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"-o {out}: {parent} is a file, not a folder")
            break


def discover(inputs: list[str | Path], out: str | Path) -> list[Job]:
    """Video files under ``inputs`` (recursively, any-case extensions) and their output stems.

    Outputs mirror the inputs' layout relative to their common folder, so ``a/clip.mp4``
    and ``b/clip.mp4`` land in ``OUT/a/`` and ``OUT/b/``. An explicitly named file is
    taken whatever its extension; inside folders only video extensions count, and OUT
    (when it is inside an input folder) is never walked.
    """
    out = Path(out)
    _check_out(out)
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += _videos_in(item, out)
        elif os.path.lexists(item):
            files.append(item)
        else:
            raise UsageError(f"{item}: no such file or folder")
    files = list(dict.fromkeys(p.absolute() for p in files))
    if not files:
        raise UsageError(f"no video files ({', '.join(sorted(VIDEO_EXTS))}) in {', '.join(map(str, inputs))}")
    anchors = [p.parent for p in files] + [Path(i).absolute() for i in inputs if Path(i).is_dir()]
    root = Path(os.path.commonpath(anchors))
    jobs, taken = [], set()
    for path in files:
        rel = path.relative_to(root)
        stem = out / rel.with_suffix("")
        # By full name: clip.mp4 next to clip.mov; a top-level summary.mp4 (summary.csv is the
        # batch's); clip.people.mp4 (clip.people.csv is clip.mp4's people).
        if stem in taken or str(rel.with_suffix("")).lower() == "summary" or stem.name.endswith(".people"):
            stem = out / rel
        # A name so long that an output's suffix would pass the limit: its head and a hash.
        stem = stem.with_name(short_name(stem.name, len(PeopleWriter.suffix)))
        taken.add(stem)
        jobs.append(Job(path, stem))
    return jobs


def check_outputs(jobs: list[Job], batch: BatchOptions, out: Path) -> None:
    """Refuse, before any work, a batch whose outputs would land on one of its inputs."""
    inputs: dict = {}
    for job in jobs:
        inputs[os.path.realpath(job.source)] = job
        with contextlib.suppress(OSError):
            st = job.source.stat()
            inputs[(st.st_dev, st.st_ino)] = job
    targets = [(out / "summary.csv", None)]
    for job in jobs:
        targets += [(w.path(job.stem), job) for w in writers(job, batch)] + [(record_path(job.stem), job)]
    for target, _ in targets:
        hit = inputs.get(os.path.realpath(target))
        if hit is None:
            with contextlib.suppress(OSError):
                st = target.stat()
                hit = inputs.get((st.st_dev, st.st_ino))
        if hit is not None:
            raise UsageError(f"-o {out}: {target} would overwrite the input {hit.name}; choose another folder")
    for job in jobs:
        # A folder in an output's place cannot be written over: that video fails alone, later.
        foreign = [
            t for t, j in targets if j is job and os.path.lexists(t) and not t.is_dir() and not _ours(job.stem, t)
        ]
        if foreign:
            raise UsageError(
                f"-o {out}: {foreign[0]} exists and is not the file emocli wrote there; move it or choose another folder"
            )


def _check_writable(out: Path) -> None:
    """Refuse, before any work, an output folder nothing can be written into (read-only,
    not ours): a real file is tried, for permission bits do not tell (root, ACLs, mounts)."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".emocli-probe-"):
            pass
    except OSError as e:
        raise UsageError(f"-o {out}: cannot write there ({e.strerror})") from e


def _ours(stem: Path, path: Path) -> bool:
    """Whether the file at ``path``, one of ``stem``'s output names, is emocli's: its record
    names it as written (``written_here``), or (an emocli that kept no record) its timeline
    CSV is one."""
    if path == record_path(stem):
        return True
    if record_path(stem).is_file():
        return written_here(read_json(record_path(stem)) or {"pending": True}, path)
    try:
        with open(CsvWriter().path(stem), newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return header[:3] == ["video", "t_start", "t_end"]


# ---------------------------------------------------------------- records: honest reruns

# Options that change how fast a video is analysed, never what comes out.
SPEED_ONLY = frozenset(["threads", "decode_threads"])


_digests: dict[tuple, str] = {}


def _digest(path: Path) -> str:
    """A model file's content hash (cached per size and time): the same file under another
    path is the same model; a retrained file at the same path is not."""
    import hashlib

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _digests:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _digests[key] = h.hexdigest()[:16]
    return _digests[key]


def analysis_key(options: AnalyzeOptions) -> dict:
    """Everything a timeline depends on, as JSON values: each analysis option (a new one
    counts without a change here), the models' contents and the emocli version."""
    from . import __version__
    from .pipeline import _model_path

    key: dict = {"emocli": __version__}
    for f in fields(options):
        if f.name in SPEED_ONLY:
            continue
        value = getattr(options, f.name)
        if f.name.endswith("_model"):
            value = _digest(_model_path(value, f.name.removesuffix("_model")))
        elif isinstance(value, Path):
            value = str(value)
        key[f.name] = value
    return key


def _changes(old: dict, new: dict) -> str:
    """What differs between two analysis keys, as the options a user typed."""
    parts = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) == new.get(name):
            continue
        if name.endswith("_model"):
            parts.append(f"another {name.removesuffix('_model')} model")
        elif name == "emocli":
            parts.append(f"emocli {old.get(name)}")
        elif isinstance(old.get(name), bool) or isinstance(new.get(name), bool):
            parts.append(f"{_flag(name, old.get(name))} (now {_flag(name, new.get(name))})")
        else:
            before, now = (_typed(key.get(name)) for key in (old, new))
            parts.append(f"--{name.replace('_', '-')} {before} (now {now})")
    return ", ".join(parts)


# Switches whose "off" form is not --no-<name>.
_OFF_FLAGS = {"face_views": "--one-face-view"}


def _flag(name: str, value) -> str:
    """A switch as typed: ``--face-views`` or ``--one-face-view``."""
    if value:
        return f"--{name.replace('_', '-')}"
    return _OFF_FLAGS.get(name, f"--no-{name.replace('_', '-')}")


def _typed(value) -> str:
    """An option's value as typed; one left to its default says so."""
    return "not given" if value is None else str(value)


def why_redo(job: Job, batch: BatchOptions) -> str | None:
    """None when ``job``'s outputs are complete and current (skip it); else why it is
    redone: "" when it simply has no outputs yet (or a run was cut short)."""
    csv_path, kept = CsvWriter().path(job.stem), record_path(job.stem)
    record = read_json(kept)
    if not csv_path.is_file():
        return f"its timeline {csv_path} is missing" if record and not record.get("pending") else ""
    if record is None:
        if kept.exists():
            return f"its record {kept} could not be read"
        return "its outputs carry no record of the options that made them"
    if record.get("pending"):
        return "a run was stopped while writing its outputs"
    needed = writers(job, batch, bool(record.get("has_video", True)))
    recorded = [n for n in record.get("outputs", []) if isinstance(n, str)]
    # Outputs of the earlier analysis not asked for now go when the video is redone (job.py).
    leaving = [
        n
        for n in recorded
        if n not in {w.path(job.stem).name for w in needed} and written_here(record, job.stem.with_name(n))
    ]
    going = f"; its {', '.join(leaving)} from then will be removed" if leaving else ""
    if batch.key is not None and record.get("key") != batch.key:
        return f"its outputs were made with {_changes(record.get('key') or {}, batch.key)}{going}"
    try:
        if record.get("source_id") != source_id(job.source):
            return f"the video file changed (its size or modification time) after its outputs were made{going}"
    except OSError:
        return ""  # gone or unreadable now: the analysis says how, in one line
    stale = [
        f"its {w.what} {w.path(job.stem)} is {'missing' if not w.path(job.stem).is_file() else 'not from this analysis'}"
        for w in _lacking(job, needed, record)
    ]
    return ", ".join(stale) if stale else None


def _lacking(job: Job, needed: list, record: dict) -> list:
    """The writers in ``needed`` whose output is missing, or not one ``record`` names (left by
    an analysis made with other options)."""
    recorded = set(record.get("outputs", []))
    return [w for w in needed if not w.path(job.stem).is_file() or w.path(job.stem).name not in recorded]


def later_outputs(job: Job, batch: BatchOptions) -> list | None:
    """The writers of the outputs asked for now that a current analysis lacks (a plot, the
    JSON or people table asked for later), when all can be written from its CSV and record
    without analysing the video again; else None. The annotated video cannot: its boxes
    follow the faces' tracks, which the CSV does not keep."""
    record = read_json(record_path(job.stem))
    if not record or record.get("pending") or "facts" not in record or batch.key is None:
        return None
    try:
        if record.get("key") != batch.key or record.get("source_id") != source_id(job.source):
            return None
    except OSError:
        return None
    late = _lacking(job, writers(job, batch, bool(record.get("has_video", True))), record)
    if not late or any(isinstance(w, AnnotatedVideoWriter | CsvWriter) for w in late):
        return None
    return late


def remove_stale_parts(stem: Path) -> None:
    """Delete temporaries (``.<stem>.part-<pid><suffix>``) that a killed run left for this stem.

    A temporary whose writer is still alive (another run on the same OUT) is left alone.
    """
    if not stem.parent.is_dir():
        return
    kinds = (CsvWriter(), JsonWriter(), PeopleWriter(), PlotWriter(), AnnotatedVideoWriter(stem))
    finals = [w.path(stem) for w in kinds] + [record_path(stem)]
    for final in finals:
        prefix = part_prefix(final)
        for part in stem.parent.glob(f"{_glob_escape(prefix)}*{_glob_escape(final.suffix)}"):
            pid = part.name[len(prefix) :].removesuffix(final.suffix)
            if not pid.isdigit():
                continue  # another output's temporary (".clip.mp4.part-1.csv" is not clip's)
            if int(pid) != os.getpid() and _alive(int(pid)):
                continue
            with contextlib.suppress(OSError):  # gone already, or not ours to delete: never a final name anyway
                part.unlink()


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


def skipped_row(job: Job, status: str = "skipped") -> dict:
    """The summary row of a video whose outputs are current, from its CSV and record."""
    record = read_json(record_path(job.stem)) or {}
    timeline = Timeline.read_csv(CsvWriter().path(job.stem))
    if "speech_s" in record:
        timeline.facts["speech_s"] = record["speech_s"]
    return summary_row(job.name, status, timeline, error=record.get("note", ""))


def _finished_while_stopping(jobs: list[Job], rows: dict, batch: BatchOptions) -> None:
    """Rows for the videos of ``jobs`` that finished while a signal stopped the engine (a
    worker that had written all its outputs before it heard it): their outputs are current."""
    for job in jobs:
        if job not in rows:
            with contextlib.suppress(Exception):  # unfinished, or unreadable: the rerun does it
                if why_redo(job, batch) is None:
                    rows[job] = skipped_row(job, "ok")


def check_models(options: AnalyzeOptions) -> None:
    """Fail once, up front, on a missing or wrong model, rather than once per worker or video."""
    from .models import ModelError, read_info
    from .pipeline import _model_path

    for task, given in (("face", options.face_model), ("voice", options.voice_model)):
        path = _model_path(given, task)
        if path.is_dir():
            raise ModelError(f"{path}: is a folder, not a model file (--{task}-model takes a .onnx file)")
        info = read_info(path)
        if info.task != task:
            raise ModelError(f"{info.path}: is a {info.task} model, expected a {task} model")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise ``Interrupted`` in the main thread,
    so the batch unwinds as it does for Ctrl-C: workers stopped, temporaries removed,
    the summary written. A second signal during that clean-up is ignored, not obeyed
    half-way. Outside the main thread (a library caller's thread) nothing changes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised: list[int] = []

    def handler(signum, frame):
        if not raised:
            raised.append(signum)
            raise Interrupted(signum)

    wanted = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    previous = {s: signal.signal(s, handler) for s in wanted}
    try:
        yield
    except KeyboardInterrupt as e:
        if raised and not isinstance(e, Interrupted):  # Ray, waiting, turns what a handler raises into a bare one
            raise Interrupted(raised[0]) from None
        raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_batch(inputs: list[str | Path], out: str | Path, options: AnalyzeOptions, batch: BatchOptions) -> list[dict]:
    """Process every video under ``inputs`` into ``out``; returns (and writes) the summary:
    a row per video (``outputs.SUMMARY_COLUMNS``), in the order of discovery.

    Raises UsageError (before any work) for bad inputs or outputs, SummaryError (after
    the batch) when summary.csv could not be written, and Interrupted on a signal, after
    the summary of what finished is written.
    """
    if batch.engine not in ("local", "ray"):
        raise ValueError(f"engine must be local or ray, not {batch.engine!r}")
    if batch.ray_address and batch.engine != "ray":
        raise UsageError(f"--ray-address {batch.ray_address}: a Ray cluster runs the batch with --engine ray alone")
    if batch.engine == "ray":
        from .ray_engine import require_ray

        require_ray()  # before any work: without Ray, say how to get it and stop
    out = Path(out)
    jobs = discover(inputs, out)
    check_models(options)
    batch.key = analysis_key(options)
    check_outputs(jobs, batch, out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SummaryError(f"cannot create the output folder {out}: {e.strerror}") from e
    _check_writable(out)
    with _only_run_in(out):
        return _run(jobs, out, options, batch)


@contextlib.contextmanager
def _only_run_in(out: Path) -> Iterator[None]:
    """One batch at a time in ``out``: two at once would each take the other's outputs for
    current. A lock on the folder itself (released when the process ends, however it ends)."""
    import fcntl

    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise UsageError(
                f"-o {out}: another emocli run is writing there; wait for it or choose another folder"
            ) from e
        yield
    finally:
        os.close(fd)


def _run(jobs: list[Job], out: Path, options: AnalyzeOptions, batch: BatchOptions) -> list[dict]:
    """``run_batch`` once its inputs and outputs are checked and ``out`` is its own."""
    from .progress import BatchProgress

    rows: dict[Job, dict] = {}
    saved_at, summary_error = 0.0, ""

    def save(force: bool = False) -> None:
        nonlocal saved_at, summary_error
        if force or time.monotonic() - saved_at >= SUMMARY_EVERY_S:
            saved_at = time.monotonic()
            try:
                write_summary([rows[j] for j in jobs if j in rows], out / "summary.csv")
                summary_error = ""
            except OSError as e:  # the videos' own outputs may still be writable: go on, say it at the end
                summary_error = f"summary not written: {error_line(e)}"

    todo, reasons, completed = [], {}, {}
    remove_stale_parts(out / "summary")
    # Outputs asked for later are written here, before the engine starts: a signal meanwhile
    # unwinds as during the analysis, with the summary of what is done.
    with stop_on_signals():
        try:
            for job in jobs:
                why = None if batch.overwrite else why_redo(job, batch)
                late = later_outputs(job, batch) if why and not batch.overwrite else None
                if late:
                    remove_stale_parts(job.stem)
                    what = ", ".join(w.what for w in late)
                    try:
                        rows[job] = complete_job(job, late)
                        completed[job] = f"its {what} written from its timeline (its analysis is current)"
                        continue
                    except Exception as e:  # an unreadable CSV, an output that cannot be written: analyse again
                        why = f"its {what} could not be written from its timeline ({error_line(e)})"
                if why is None and not batch.overwrite:
                    try:
                        rows[job] = skipped_row(job)
                        continue
                    except Exception:  # an unreadable earlier CSV: do the video again
                        why = "its timeline could not be read back"
                if why:
                    reasons[job] = why
                todo.append(job)
        finally:
            if completed:
                save(force=True)
    for job in todo:
        remove_stale_parts(job.stem)

    with stop_on_signals(), _engine(todo, options, batch) as run:
        with BatchProgress(len(jobs), done=len(rows), quiet=batch.quiet) as progress:
            for job, row in rows.items():
                if job in completed:
                    progress.print(f"{job.name}: {completed[job]}")
                else:
                    progress.skipped(job, row)
            for job, why in reasons.items():
                progress.print(f"{job.name}: redone: {why}")
            results = run(progress)
            try:
                # Again: starting Ray installs its own handlers. On a signal, the engine stops
                # its workers as `results` closes.
                with stop_on_signals(), contextlib.closing(results):
                    for job, row in results:
                        rows[job] = row
                        progress.finished(job, row)
                        save()
            finally:  # also on a signal: what finished is on record for the rerun
                _finished_while_stopping(todo, rows, batch)
                save(force=True)
    progress.report(rows.values(), out, summary_written=not summary_error)
    if summary_error:
        raise SummaryError(summary_error)
    return [rows[j] for j in jobs]


@contextlib.contextmanager
def _engine(todo: list[Job], options: AnalyzeOptions, batch: BatchOptions) -> Iterator[Callable]:
    """The batch's engine, its resource plan made once (``batch.plan``), for the block: yields
    ``run(progress)``, an iterator of ``(job, summary row)`` as videos finish.

    One worker runs in this process, with the models loaded before any output is touched;
    more are a process pool, or Ray's actors, each loading its own.
    """
    if batch.engine == "ray" and todo:
        from .ray_engine import ray_session, run_ray

        with ray_session(batch) as cpus:
            plan = batch.plan = Plan.cluster(batch.workers, cpus, len(todo))
            ready = planned(options, plan)
            yield lambda progress: run_ray(todo, ready, batch, plan, progress)
        return
    plan = batch.plan = Plan.local(batch.workers, len(todo))
    ready = planned(options, plan)
    if plan.workers > 1:
        from .pool import run_pool

        yield lambda progress: run_pool(todo, ready, batch, plan, progress)
        return
    with Analyzer(ready) if todo else contextlib.nullcontext() as analyzer:
        yield lambda progress: _run_here(todo, analyzer, batch, progress)


def _run_here(jobs: list[Job], analyzer: Analyzer | None, batch: BatchOptions, progress) -> Iterator[tuple[Job, dict]]:
    """One worker: this process, no pool to start."""
    for job in jobs:
        progress.started(job)
        yield job, run_job(analyzer, job, batch)
