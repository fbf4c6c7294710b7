"""Batches: discovery and layout, parallel and Ray engines, resume, kills, console and exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import model_args
from media_corpus import clip
from typer.testing import CliRunner

from emocli import pool
from emocli.batch import UsageError, discover, remove_stale_parts
from emocli.cli import app
from emocli.job import BatchOptions, Job
from emocli.media import probe
from emocli.pipeline import AnalyzeOptions, Analyzer
from emocli.resources import Plan

SECONDS = 3.0  # each batch video: three intervals of one face and a tone


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory, face_image) -> Path:
    """Four small healthy videos, two of them in a subfolder."""
    d = tmp_path_factory.mktemp("batch")
    for name in ("v0.mp4", "v1.mp4", "sub/v2.mp4", "sub/v3.mp4"):
        clip(d / name, face_image, SECONDS)
    return d


def run_cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def emocli_process(*args, **kwargs) -> subprocess.CompletedProcess:
    """The real command in its own process: what a user's terminal would show, native output included."""
    cmd = [sys.executable, "-m", "emocli", "process", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)


def csvs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.csv")) if p.name != "summary.csv"}


def summary(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "summary.csv", keep_default_na=False)


# ---------------------------------------------------------------- discovery and layout


def test_discover_mirrors_layout_and_keeps_same_names_apart(tmp_path):
    src = tmp_path / "in"
    for name in ("a/clip.mp4", "b/clip.mp4", "c/CLIP.MP4", "c/clip.mov", "c/notes.txt", "x.mp4/inner.mkv"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"")
    os.symlink(src / "nowhere.mp4", src / "dangling.mp4")  # reported, not silently dropped
    for name in ("a/._clip.mp4", ".hidden/x.mp4", "a/.draft.mp4"):  # a Mac's metadata, hidden files: not inputs
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"\x00\x05\x16\x07")
    linked = tmp_path / "elsewhere"  # a linked folder is followed; a link back up is walked once
    (linked / "deep").mkdir(parents=True)
    (linked / "deep" / "far.mp4").write_bytes(b"")
    os.symlink(linked, src / "link")
    os.symlink(src, src / "a" / "up")
    jobs = {
        str(j.source.relative_to(src)): j.stem.relative_to(tmp_path / "out") for j in discover([src], tmp_path / "out")
    }
    assert jobs == {
        "a/clip.mp4": Path("a/clip"),
        "b/clip.mp4": Path("b/clip"),
        "c/CLIP.MP4": Path("c/CLIP"),
        "c/clip.mov": Path("c/clip"),
        "dangling.mp4": Path("dangling"),
        "link/deep/far.mp4": Path("link/deep/far"),
        "x.mp4/inner.mkv": Path("x.mp4/inner"),  # a folder with a video's name is a folder
    }
    # Two inputs with the same stem in one folder keep both, by full name.
    same = discover([src / "a" / "clip.mp4", src / "a" / "clip.mp4", tmp_path / "in" / "b" / "clip.mp4"], "out")
    assert [j.stem for j in same] == [Path("out/a/clip"), Path("out/b/clip")]
    (src / "c" / "clip.mp4").write_bytes(b"")
    stems = [j.stem.name for j in discover([src / "c"], "out")]
    assert sorted(stems) == ["CLIP", "clip", "clip.mp4"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no video files"):
        discover([tmp_path / "empty"], "out")
    with pytest.raises(UsageError, match="no such file or folder"):
        discover([src / "missing.mp4"], "out")


def test_remove_stale_parts_keeps_live_writers_and_other_stems(tmp_path):
    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    stale = [
        tmp_path / f".clip.part-{dead}.csv",
        tmp_path / f".clip.part-{dead}.mp4",
        tmp_path / f".clip.part-{os.getpid()}.png",
    ]
    kept = [tmp_path / f".clip.part-{os.getppid()}.csv", tmp_path / f".clip.mp4.part-{dead}.csv", tmp_path / "clip.csv"]
    for p in stale + kept:
        p.write_text("x")
    remove_stale_parts(tmp_path / "clip")
    assert [p.exists() for p in stale] == [False] * 3
    assert [p.exists() for p in kept] == [True] * 3


# ---------------------------------------------------------------- engines


@pytest.fixture(scope="module")
def one_worker(batch_dir, models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one-worker")
    result = run_cli("process", batch_dir, "-o", out, *model_args(models), "--workers", 1, "--no-plot", "--quiet")
    assert result.exit_code == 0, result.output
    return out


def test_two_workers_give_the_same_csvs_as_one(batch_dir, models, one_worker, tmp_path):
    result = run_cli("process", batch_dir, "-o", tmp_path, *model_args(models), "--workers", 2, "--no-plot", "--quiet")
    assert result.exit_code == 0, result.output
    assert {n for n in csvs(one_worker) if not n.endswith(".people.csv")} == {
        "v0.csv",
        "v1.csv",
        "sub/v2.csv",
        "sub/v3.csv",
    }
    assert csvs(tmp_path) == csvs(one_worker)
    assert summary(tmp_path)["status"].tolist() == ["ok"] * 4


def test_ray_engine_gives_the_same_csvs_as_local(batch_dir, models, one_worker, tmp_path, capfd, monkeypatch):
    """A Ray of its own for the run, even where RAY_ADDRESS names a cluster (not running)."""
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    result = run_cli(
        "process",
        batch_dir,
        "-o",
        tmp_path,
        *model_args(models),
        "--engine",
        "ray",
        "--workers",
        2,
        "--no-plot",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    native = capfd.readouterr()
    assert (result.output, native.out, native.err) == (
        "",
        "",
        "",
    )  # Ray's start-up and worker logs stay off the console
    assert csvs(tmp_path) == csvs(one_worker)
    assert summary(tmp_path)["status"].tolist() == ["ok"] * 4
    assert not ray.is_initialized()  # the local cluster it started is shut down


def test_a_video_that_finished_while_the_engine_stopped_is_in_the_summary(batch_dir, models, one_worker):
    """A worker that wrote all of a video's outputs before it heard the signal: the video is
    ok in the summary (it was missing, though its outputs were whole); one not done is not."""
    from emocli.batch import _finished_while_stopping, analysis_key, discover

    options = AnalyzeOptions(face_model=models["face_model"], voice_model=models["voice_model"])
    batch = BatchOptions(plot=False, key=analysis_key(options))
    jobs = discover([batch_dir], one_worker)
    rows: dict = {jobs[0]: {"status": "ok"}}
    (one_worker / "gone").mkdir(exist_ok=True)
    undone = Job(batch_dir / "v0.mp4", one_worker / "gone" / "v0")
    _finished_while_stopping([*jobs, undone], rows, batch)
    assert [rows[j]["status"] for j in jobs[1:]] == ["ok"] * (len(jobs) - 1) and undone not in rows
    assert rows[jobs[0]] == {"status": "ok"} and rows[jobs[1]]["intervals"] > 0


def test_a_ray_address_without_the_ray_engine_is_refused(batch_dir, models, tmp_path):
    result = run_cli("process", batch_dir, "-o", tmp_path, *model_args(models), "--ray-address", "10.0.0.5:6379")
    assert result.exit_code == 2 and "--engine ray" in result.output
    assert not (tmp_path / "summary.csv").exists()


def test_what_a_cluster_worker_gets_holds_in_any_working_folder(tmp_path, monkeypatch):
    """A cluster's workers run in their own folder: the job they get has absolute paths and
    the video's name as the user gave it; model paths are absolute; no more workers than CPUs."""
    import pickle

    from emocli.job import planned
    from emocli.resources import Plan

    monkeypatch.chdir(tmp_path)
    sent = pickle.dumps(Job(tmp_path / "in/clip.mp4", Path("out/clip")).anywhere())
    monkeypatch.chdir("/")
    got = pickle.loads(sent)
    assert got.source == tmp_path / "in/clip.mp4" and got.stem == tmp_path / "out/clip" and got.name == "in/clip.mp4"
    monkeypatch.chdir(tmp_path)
    ready = planned(AnalyzeOptions(face_model="m/face.onnx", voice_model=None), Plan(1, 1))
    assert ready.face_model == tmp_path / "m/face.onnx" and ready.voice_model is None
    assert Plan.cluster(3, 2, 5).workers == 2 and Plan.cluster(None, 8, 3).workers == 3


def test_a_signal_that_another_library_turns_into_a_bare_ctrl_c_keeps_its_exit_code():
    """Ray, waiting in C++, raises a plain KeyboardInterrupt for whatever the handler raised."""
    from emocli.batch import Interrupted, stop_on_signals

    with pytest.raises(KeyboardInterrupt) as stopped:
        with stop_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            except Interrupted:
                raise KeyboardInterrupt from None
    assert isinstance(stopped.value, Interrupted) and stopped.value.exit_code == 143


def test_ray_engine_without_ray_says_how_to_install(batch_dir, models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    result = CliRunner().invoke(
        app, ["process", str(batch_dir), "-o", str(tmp_path), *model_args(models), "--engine", "ray"]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and 'pip install "emocli[ray]"' in lines[0]
    assert not (tmp_path / "summary.csv").exists()


def _crash_on_bomb(job: Job) -> dict:
    """A worker function that dies the way a segfaulting decoder would, for one video."""
    if "bomb" in job.source.name:
        os._exit(139)
    return pool._work(job)


def test_pool_survives_a_crashing_worker(batch_dir, models, tmp_path):
    jobs = [
        Job(batch_dir / "v0.mp4", tmp_path / "v0"),
        Job(batch_dir / "bomb.mp4", tmp_path / "bomb"),
        Job(batch_dir / "v1.mp4", tmp_path / "v1"),
    ]

    class Silent:
        def started(self, job):
            pass

    options = AnalyzeOptions(face_model=models["face_model"], voice_model=models["voice_model"])
    rows = dict(pool.run_pool(jobs, options, BatchOptions(plot=False), Plan(1, 1), Silent(), work=_crash_on_bomb))
    assert {j.stem.name: r["status"] for j, r in rows.items()} == {"v0": "ok", "bomb": "failed", "v1": "ok"}
    assert rows[jobs[1]]["error"] == pool.CRASHED
    assert (tmp_path / "v1.csv").is_file()


# ---------------------------------------------------------------- resume, kills, console


def test_killed_run_leaves_no_partial_outputs_and_rerun_completes_it(batch_dir, models, tmp_path):
    args = [batch_dir, *model_args(models), "--annotate", "--workers", 1]
    reference = tmp_path / "reference"
    done = emocli_process(*args, "-o", reference, "--quiet")
    # --quiet on an all-ok batch: nothing at all on either stream.
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "emocli", "process", *map(str, args), "-o", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while (
        # a video's final record (written after its outputs), not a pending one nor a temporary
        not [p for p in out.rglob(".*.emocli") if "pending" not in p.read_text()]
        and proc.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-batch: the next video is being analysed or written
    assert proc.wait() == -signal.SIGKILL, "the batch ended before it could be killed"

    finals = [p for p in out.rglob("*") if p.is_file() and ".part-" not in p.name]
    assert any(p.suffix == ".csv" for p in finals)
    for path in finals:  # under its final name, every file is whole
        if path.name == "summary.csv" or path.name.endswith(".people.csv"):
            pd.read_csv(path)
        elif path.suffix == ".csv":
            assert len(pd.read_csv(path)) == round(SECONDS), path
        elif path.suffix == ".png":
            assert cv2.imread(str(path)) is not None, path
        elif path.suffix == ".mp4":
            assert probe(path).duration == pytest.approx(SECONDS, abs=0.15), path
            cap = cv2.VideoCapture(str(path))
            assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == round(SECONDS * 10), path

    rerun = emocli_process(*args, "-o", out, "--quiet")
    assert (rerun.returncode, rerun.stderr) == (0, ""), rerun.stderr
    statuses = summary(out).set_index("video")["status"]
    assert (statuses == "skipped").sum() >= 1 and (statuses == "ok").sum() >= 1 and set(statuses) <= {"ok", "skipped"}
    assert not list(out.rglob("*.part-*")), "the rerun removes what the killed run left half-written"
    assert csvs(out) == csvs(reference)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == sorted(
        p.relative_to(reference) for p in reference.rglob("*")
    )


def test_rerun_skips_done_videos_unless_overwrite(batch_dir, models, one_worker, tmp_path):
    import shutil

    shutil.copytree(one_worker, tmp_path, dirs_exist_ok=True)
    (tmp_path / "v1.csv").unlink()  # as if v1 had failed or been killed
    before = (tmp_path / "v0.csv").stat().st_mtime_ns
    result = run_cli("process", batch_dir, "-o", tmp_path, *model_args(models), "--no-plot", "--workers", 1, "--quiet")
    assert result.exit_code == 0, result.output
    s = summary(tmp_path).set_index("video")
    assert s["status"].to_dict() == {
        str(batch_dir / n): st
        for n, st in [("sub/v2.mp4", "skipped"), ("sub/v3.mp4", "skipped"), ("v0.mp4", "skipped"), ("v1.mp4", "ok")]
    }
    assert s.loc[str(batch_dir / "v0.mp4"), "intervals"] == 3  # a skipped row still describes its video
    first = summary(one_worker).set_index("video")
    assert s["speech_s"].to_dict() == first["speech_s"].to_dict()  # the detector's, as the first run said
    assert (tmp_path / "v0.csv").stat().st_mtime_ns == before
    assert csvs(tmp_path) == csvs(one_worker)

    result = run_cli(
        "process", batch_dir / "v0.mp4", "-o", tmp_path, *model_args(models), "--no-plot", "--overwrite", "--quiet"
    )
    assert result.exit_code == 0, result.output
    assert summary(tmp_path)["status"].tolist() == ["ok"]
    assert (tmp_path / "v0.csv").stat().st_mtime_ns != before


def test_without_a_terminal_a_line_per_video_and_closing_lines(batch_dir, models, one_worker, tmp_path):
    import shutil

    shutil.copytree(one_worker, tmp_path, dirs_exist_ok=True)
    result = run_cli("process", batch_dir, "-o", tmp_path, *model_args(models), "--no-plot")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert "4/4" not in result.output  # no progress bar drawn into a log
    assert lines[-2:] == [f"4 skipped; summary: {tmp_path / 'summary.csv'}", f"Results saved to {tmp_path}"]
    expected = {
        f"{batch_dir / rel}.mp4: skipped (3.0 s, 1 face: its outputs are current) → {tmp_path / rel}.csv"
        for rel in ("v0", "v1", "sub/v2", "sub/v3")
    }
    assert set(lines[:-2]) == expected


@pytest.mark.parametrize(
    "extra",
    [
        ["--workers", "0"],
        ["--engine", "spark"],
        ["--interval", "0"],
        ["--interval", "inf"],
        ["--window", "inf"],
        ["--no-such-option"],
        ["--fusion", "face", "--face-weight", "0.3"],
    ],
)
def test_bad_usage_exits_2(batch_dir, tmp_path, extra):
    result = CliRunner().invoke(app, ["process", str(batch_dir), "-o", str(tmp_path), *extra])
    assert result.exit_code == 2
    assert not (tmp_path / "summary.csv").exists()


@pytest.mark.parametrize(
    "option, value, error",
    [
        ("max_faces", 0, ValueError),
        ("max_faces", 2.5, TypeError),
        ("min_face", 2.0, ValueError),
        ("min_face_score", -1, ValueError),
        ("vad_threshold", 1.5, ValueError),
        ("interval", 0.001, ValueError),
        ("interval", "1", TypeError),
        ("window", float("nan"), ValueError),
    ],
)
def test_the_library_refuses_what_the_command_line_refuses(option, value, error):
    """One set of ranges (emocli.usage): the same values fail from Python, naming the option."""
    with pytest.raises(error, match=option):
        AnalyzeOptions(**{option: value})
    flag = "--" + option.replace("_", "-")
    if not isinstance(value, str):  # the command line reads its text as a number
        result = CliRunner().invoke(app, ["process", ".", "-o", "out", flag, str(value)])
        assert result.exit_code == 2, result.output
    with pytest.raises(ValueError, match="fusion"):
        AnalyzeOptions(fusion="face", face_weight=0.3)
    numpy = AnalyzeOptions(max_faces=np.int64(2), interval=np.float32(0.3))
    assert type(numpy.max_faces) is int and type(numpy.interval) is float  # plain numbers: 3-decimal times
    for wrong in ({"face_views": "no"}, {"threads": 1.5}, {"face_model": 123}):
        with pytest.raises(TypeError, match=next(iter(wrong))):
            AnalyzeOptions(**wrong)
    with pytest.raises(ValueError, match="decode_threads"):
        AnalyzeOptions(decode_threads=-2)


def test_an_analyzer_takes_options_and_keywords_that_replace_them(models):
    with Analyzer(AnalyzeOptions(interval=0.5, **models), interval=2.0) as analyzer:
        assert analyzer.options.interval == 2.0 and analyzer.options.face_model == models["face_model"]
