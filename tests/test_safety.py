"""A user's files are sacred: outputs never land on inputs, reruns are honest, write
failures are one line per video, odd names and special files are handled, and training
and evaluation check their inputs first.

Each test runs the real command (in this process, or its own where signals or resource
limits matter) on small generated clips.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import EXAMPLES
from media_corpus import clip
from typer.testing import CliRunner

from emocli.batch import discover, record_path
from emocli.cli import app
from emocli.outputs import SUMMARY_COLUMNS

SECONDS = 2.0


@pytest.fixture(scope="module")
def source(tmp_path_factory, face_image) -> Path:
    """One healthy 2 s clip (a face and a tone), copied into each test's own input folder."""
    return clip(tmp_path_factory.mktemp("source") / "clip.mp4", face_image, SECONDS)


def models_args(models) -> list[str]:
    return ["--face-model", str(models["face_model"]), "--voice-model", str(models["voice_model"])]


def cli(*args, models=None):
    extra = models_args(models) if models else []
    return CliRunner().invoke(app, [*map(str, args), *extra, "--no-plot", "--quiet", "--workers", "1"])


def emocli(*args, models, preexec_fn=None, timeout=120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "emocli", "process", *map(str, args), *models_args(models), "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn)


def summary(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "summary.csv", keep_default_na=False)


def inputs(tmp_path: Path, source: Path, *names: str) -> Path:
    folder = tmp_path / "in"
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / name)
    return folder


# ---------------------------------------------------------------- 1. no output on an input


def test_annotated_output_onto_its_input_is_refused_before_any_work(source, models, tmp_path):
    folder = inputs(tmp_path, source, "a.mp4", "b.mp4")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = CliRunner().invoke(app, ["process", str(folder), "-o", str(folder), "--annotate", *models_args(models)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "would overwrite the input" in result.output
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing written, nothing changed


def test_a_file_of_the_users_at_an_output_name_is_never_written_over(source, models, tmp_path):
    folder = inputs(tmp_path, source, "notes.mp4")
    (folder / "notes.csv").write_text("my own notes\n")
    result = cli("process", folder, "-o", folder, models=models)
    assert result.exit_code == 2 and "notes.csv exists and is not the file emocli wrote there" in result.output
    assert (folder / "notes.csv").read_text() == "my own notes\n"


def test_output_folder_inside_the_input_is_never_walked(source, models, tmp_path):
    folder = inputs(tmp_path, source, "a.mp4", "sub/b.mp4")
    out = folder / "out"
    for _ in range(2):
        result = cli("process", folder, "-o", out, "--annotate", models=models)
        assert result.exit_code == 0, result.output
    assert sorted(summary(out)["video"]) == sorted([str(folder / "a.mp4"), str(folder / "sub" / "b.mp4")])
    assert summary(out)["status"].tolist() == ["skipped", "skipped"]
    assert not (out / "out").exists()
    # Outputs written beside their inputs (-o the input folder): the annotated videos are outputs, not inputs.
    mov = inputs(tmp_path / "mov", source, "c.mov")
    assert cli("process", mov, "-o", mov, "--annotate", models=models).exit_code == 0
    assert (mov / "c.mp4").is_file() and [j.source.name for j in discover([mov], tmp_path / "x")] == ["c.mov"]


def test_outputs_of_an_older_emocli_inside_an_input_are_not_inputs(source, tmp_path):
    """An older emocli left out/ with summary.csv and an annotated demo.mp4 (no records)."""
    folder = inputs(tmp_path, source, "demo.mp4", "out/demo.mp4", "inplace/talk.mp4")
    (folder / "out" / "summary.csv").write_text(
        f"{','.join(SUMMARY_COLUMNS)}\n{folder / 'demo.mp4'},ok,,2.0,2,1,2.0,sad,1\n"
    )
    # Processed in place without --annotate: its summary names the video itself, an input.
    (folder / "inplace" / "summary.csv").write_text(
        f"{','.join(SUMMARY_COLUMNS)}\n{folder / 'inplace/talk.mp4'},ok,,2,2,1,2,sad,1\n"
    )
    found = sorted(str(j.source.relative_to(folder)) for j in discover([folder], tmp_path / "elsewhere"))
    assert found == ["demo.mp4", "inplace/talk.mp4"]


# ---------------------------------------------------------------- 3. exit codes, write errors


@pytest.mark.parametrize("case", ["missing input", "empty folder", "-o is a file", "-o under a file"])
def test_bad_usage_is_one_line_and_exit_2(source, tmp_path, case):
    folder = inputs(tmp_path, source, "a.mp4")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("mine")
    target, out = {
        "missing input": (tmp_path / "nope.mp4", tmp_path / "out"),
        "empty folder": (tmp_path / "empty", tmp_path / "out"),
        "-o is a file": (folder, tmp_path / "file.txt"),
        "-o under a file": (folder, tmp_path / "file.txt" / "out"),
    }[case]
    result = CliRunner().invoke(app, ["process", str(target), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert (tmp_path / "file.txt").read_text() == "mine"


def test_summary_that_cannot_be_written_is_one_line_and_the_batch_goes_on(source, models, tmp_path):
    folder = inputs(tmp_path, source, "a.mp4", "b.mp4")
    out = tmp_path / "out"
    (out / "summary.csv").mkdir(parents=True)  # a folder in its place
    result = cli("process", folder, "-o", out, models=models)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"summary not written: cannot write {out / 'summary.csv'}: Is a directory"
    ]
    assert (out / "a.csv").is_file() and (out / "b.csv").is_file()  # both videos done
    assert not [p for p in out.iterdir() if ".part-" in p.name]


def test_an_output_that_cannot_be_written_fails_that_video_alone(source, models, tmp_path):
    folder = inputs(tmp_path, source, "a.mp4", "b.mp4")
    out = tmp_path / "out"
    assert cli("process", folder, "-o", out, models=models).exit_code == 0
    (out / "a.csv").unlink()
    (out / "a.csv").mkdir()  # a folder where a's timeline goes
    result = cli("process", folder, "-o", out, "--overwrite", models=models)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"{folder / 'a.mp4'}: cannot write {out / 'a.csv'}: Is a directory"]
    assert summary(out)["status"].tolist() == ["failed", "ok"]


def test_a_full_disk_fails_each_video_in_one_line(source, models, tmp_path):
    """A file-size limit stands in for a full disk: writes past it fail (EFBIG) as ENOSPC would."""
    folder = inputs(tmp_path, source, "a.mp4", "b.mp4")
    out = tmp_path / "out"

    def limit():  # the timelines and the summary fit; the plots (about 25 kB) do not
        resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, 12_000))

    done = emocli(folder, "-o", out, "--workers", "2", models=models, preexec_fn=limit)
    assert done.returncode == 1
    lines = sorted(done.stderr.splitlines())
    assert lines == [f"{folder / n}.mp4: cannot write {out / n}.png: File too large" for n in ("a", "b")], done.stderr
    assert summary(out)["status"].tolist() == ["failed", "failed"]
    assert not [p for p in out.iterdir() if ".part-" in p.name]


def test_a_redo_that_fails_while_writing_leaves_the_earlier_outputs_whole(source, models, tmp_path):
    folder = inputs(tmp_path, source, "a.mp4")
    out = tmp_path / "out"
    assert emocli(folder, "-o", out, models=models).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "summary.csv"}
    assert {"a.csv", "a.people.csv", "a.png"} <= set(before)

    def limit():  # the new timeline fits, the new plot does not
        resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, 12_000))

    done = emocli(folder, "-o", out, "--interval", "0.5", models=models, preexec_fn=limit)
    assert done.returncode == 1 and "File too large" in done.stderr
    # Not one new output renamed into place beside the old ones, no temporary left.
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "summary.csv"} == before
    assert emocli(folder, "-o", out, models=models).returncode == 0
    assert summary(out)["status"].tolist() == ["skipped"]  # the first run's outputs, whole and current


def test_unwritable_output_folder_is_refused_before_any_work(source, models, tmp_path):
    folder = inputs(tmp_path, source, "a.mp4", "b.mp4")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    prefix = []
    if os.geteuid() == 0:  # root writes anywhere: run as root without that power
        if shutil.which("setpriv") is None:
            pytest.skip("running as root, and no setpriv to drop CAP_DAC_OVERRIDE")
        caps = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]
    cmd = [*prefix, sys.executable, "-m", "emocli", "process", str(folder), "-o", str(out), *models_args(models)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        out.chmod(0o755)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"-o {out}: cannot write there (Permission denied)"]
    assert "Results saved" not in done.stdout and not list(out.iterdir())


# ---------------------------------------------------------------- 5. names and special files


def test_longest_names_and_a_video_named_like_the_summary(source, models, tmp_path):
    long = "é" * 125 + ".mp4"  # 254 bytes: every output, temporary and record name must shorten
    folder = inputs(tmp_path, source, long, "summary.mp4", "x.mp4", "x.people.mp4")
    out = tmp_path / "out"
    result = cli("process", folder, "-o", out, models=models)
    assert result.exit_code == 0, result.output
    (timeline,) = [p for p in out.glob("é*.csv") if not p.name.endswith(".people.csv")]
    assert timeline.with_name(timeline.name.removesuffix(".csv") + ".people.csv").is_file()
    assert (out / "summary.mp4.csv").is_file()
    assert len(pd.read_csv(out / "summary.mp4.csv")) == 2 and len(summary(out)) == 4
    # x.people.mp4's timeline is not x.mp4's people (x.people.csv)
    assert "face_id" in pd.read_csv(out / "x.people.csv") and (out / "x.people.mp4.csv").is_file()
    assert not [p for p in out.iterdir() if ".part-" in p.name]
    again = cli("process", folder, "-o", out, models=models)
    assert summary(out)["status"].tolist() == ["skipped"] * 4, again.output


def test_fifo_socket_and_folder_model_never_block(source, models, tmp_path):
    folder = inputs(tmp_path, source, "a.mp4")
    os.mkfifo(folder / "pipe.mp4")
    os.symlink("/dev/null", folder / "null.mp4")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "live.mp4"))
    try:
        done = emocli(folder, "-o", tmp_path / "out", models=models, timeout=60)
        named = emocli(folder / "pipe.mp4", "-o", tmp_path / "out2", models=models, timeout=60)
    finally:
        sock.close()
    assert done.returncode == 1 and named.returncode == 1
    rows = summary(tmp_path / "out").set_index("video")
    assert rows.loc[str(folder / "pipe.mp4"), "error"] == "not a regular file (a FIFO)"
    assert rows.loc[str(folder / "live.mp4"), "error"] == "not a regular file (a socket)"
    assert rows.loc[str(folder / "null.mp4"), "error"] == "not a regular file (a device)"
    assert rows.loc[str(folder / "a.mp4"), "status"] == "ok"
    assert named.stderr.strip() == f"{folder / 'pipe.mp4'}: not a regular file (a FIFO)"
    result = CliRunner().invoke(
        app,
        [
            "process",
            str(folder / "a.mp4"),
            "-o",
            str(tmp_path / "o3"),
            "--face-model",
            str(tmp_path),
            "--voice-model",
            str(models["voice_model"]),
        ],
    )
    assert (
        result.exit_code == 1
        and result.output.strip() == f"{tmp_path}: is a folder, not a model file (--face-model takes a .onnx file)"
    )


# ---------------------------------------------------------------- 2. honest reruns


def test_rerun_with_other_options_or_a_changed_video_redoes_it_and_says_why(source, models, tmp_path):
    folder = inputs(tmp_path, source, "a.mp4")
    out = tmp_path / "out"
    assert cli("process", folder, "-o", out, models=models).exit_code == 0
    one_second = pd.read_csv(out / "a.csv")
    record = json.loads(record_path(out / "a").read_text())
    assert record["key"]["interval"] == 1.0 and record["outputs"] == ["a.people.csv", "a.csv"]

    runner = CliRunner()
    base = ["process", str(folder), "-o", str(out), *models_args(models), "--no-plot", "--workers", "1"]
    finer = runner.invoke(app, [*base, "--interval", "0.5"])
    assert finer.exit_code == 0
    assert f"{folder / 'a.mp4'}: redone: its outputs were made with --interval 1.0 (now 0.5)" in finer.output
    assert summary(out)["status"].tolist() == ["ok"]
    assert len(pd.read_csv(out / "a.csv")) == 2 * len(one_second)

    same = runner.invoke(app, [*base, "--interval", "0.5"])
    assert summary(out)["status"].tolist() == ["skipped"] and "redone" not in same.output

    other_model = tmp_path / "face2.onnx"  # the same model under another name is the same model
    shutil.copy(models["face_model"], other_model)
    moved = runner.invoke(app, [*base, "--interval", "0.5", "--face-model", str(other_model)])
    assert summary(out)["status"].tolist() == ["skipped"], moved.output

    os.utime(folder / "a.mp4", ns=(1, 1))  # the video was replaced since
    changed = runner.invoke(app, [*base, "--interval", "0.5"])
    assert "redone: the video file changed (its size or modification time) after its outputs were made" in (
        changed.output
    )
    assert summary(out)["status"].tolist() == ["ok"]

    # switches and defaults as typed, not as Python writes them
    views = runner.invoke(app, [*base, "--interval", "0.5", "--face-views", "--face-weight", "0.3"])
    assert "--one-face-view (now --face-views)" in views.output
    assert "--face-weight not given (now 0.3)" in views.output

    record_path(out / "a").unlink()  # outputs of an emocli that kept no record
    legacy = runner.invoke(app, [*base, "--interval", "0.5"])
    assert "redone: its outputs carry no record" in legacy.output and summary(out)["status"].tolist() == ["ok"]

    record_path(out / "a").write_text("{not json")  # a record that cannot be read
    unreadable = runner.invoke(app, [*base, "--interval", "0.5"])
    assert f"redone: its record {record_path(out / 'a')} could not be read" in unreadable.output
    (out / "a.csv").unlink()  # the timeline gone, its record still there
    gone = runner.invoke(app, [*base, "--interval", "0.5"])
    assert f"redone: its timeline {out / 'a.csv'} is missing" in gone.output


def test_a_redo_removes_the_outputs_of_the_earlier_analysis_and_a_skip_needs_current_ones(source, models, tmp_path):
    folder = inputs(tmp_path, source, "a.mp4")
    out = tmp_path / "out"
    runner = CliRunner()
    base = ["process", str(folder), "-o", str(out), *models_args(models), "--workers", "1"]
    assert runner.invoke(app, [*base, "--output-format", "csv,json"]).exit_code == 0
    assert (out / "a.png").is_file() and (out / "a.json").is_file()

    # Another interval, no plot or JSON asked for: the old ones showed the old timeline.
    finer = runner.invoke(app, [*base, "--interval", "0.5", "--no-plot"])
    assert "--interval 1.0 (now 0.5); its a.png, a.json from then will be removed" in finer.output
    assert not (out / "a.png").exists() and not (out / "a.json").exists()
    # The plot asked for again: drawn from the current timeline, the video not analysed again.
    again = runner.invoke(app, [*base, "--interval", "0.5"])
    assert f"{folder / 'a.mp4'}: its plot written from its timeline (its analysis is current)" in again.output
    assert summary(out)["status"].tolist() == ["skipped"] and (out / "a.png").is_file()

    # The same analysis with fewer outputs asked for: the plot is still its own, and kept.
    plot = (out / "a.png").read_bytes()
    assert runner.invoke(app, [*base, "--interval", "0.5", "--no-plot", "--overwrite"]).exit_code == 0
    assert (out / "a.png").read_bytes() == plot
    runner.invoke(app, [*base, "--interval", "0.5"])
    assert summary(out)["status"].tolist() == ["skipped"]

    # A plot the record does not name (left by a run that did not finish writing it) is not
    # trusted: drawn again from the timeline.
    record = json.loads(record_path(out / "a").read_text())
    record["outputs"].remove("a.png")
    record_path(out / "a").write_text(json.dumps(record))
    stale = runner.invoke(app, [*base, "--interval", "0.5"])
    assert "its plot written from its timeline" in stale.output and (out / "a.png").read_bytes() == plot

    # A record without the video's facts (an older emocli's): the plot needs the analysis again.
    record = json.loads(record_path(out / "a").read_text())
    del record["facts"]
    record_path(out / "a").write_text(json.dumps(record))
    (out / "a.png").unlink()
    older = runner.invoke(app, [*base, "--interval", "0.5"])
    assert f"redone: its plot {out / 'a.png'} is missing" in older.output
    assert summary(out)["status"].tolist() == ["ok"]


def test_a_file_put_where_emocli_wrote_an_output_is_never_overwritten_deleted_or_taken_as_current(
    source, models, tmp_path
):
    """Outputs are emocli's by name and size, as its record wrote them: the user's own file
    under an output's name (a JSON, a replaced annotated video, a CSV cut short) is refused
    before any work, or left alone when this run does not write that name."""
    folder = inputs(tmp_path, source, "a.mp4")
    out = tmp_path / "out"
    runner = CliRunner()
    base = ["process", str(folder), "-o", str(out), *models_args(models), "--workers", "1", "--no-plot"]
    assert runner.invoke(app, [*base, "--annotate"]).exit_code == 0

    mine = b"the user's own notes"
    (out / "a.json").write_bytes(mine)  # a name this run would write: refused, untouched
    refused = runner.invoke(app, [*base, "--output-format", "json"])
    assert (
        refused.exit_code == 2 and f"{out / 'a.json'} exists and is not the file emocli wrote there" in refused.output
    )
    assert (out / "a.json").read_bytes() == mine
    (out / "a.json").unlink()

    (out / "a.mp4").write_bytes(mine)  # the annotated video replaced; not asked for, analysis changed
    redo = runner.invoke(app, [*base, "--interval", "0.5"])
    assert redo.exit_code == 0 and "a.mp4 from then will be removed" not in redo.output
    assert (out / "a.mp4").read_bytes() == mine
    assert "a.mp4" not in json.loads(record_path(out / "a").read_text())["outputs"]

    csv_file = out / "a.csv"
    csv_file.write_text(csv_file.read_text().splitlines()[0] + "\n")  # cut to its header
    cut = runner.invoke(app, [*base, "--interval", "0.5"])
    assert cut.exit_code == 2 and f"{csv_file} exists and is not the file emocli wrote there" in cut.output


def test_a_signal_while_outputs_asked_for_later_are_written_unwinds_with_the_summary(
    source, models, tmp_path, monkeypatch
):
    import signal

    import emocli.batch

    folder = inputs(tmp_path, source, "a.mp4", "b.mp4")
    out = tmp_path / "out"
    assert cli("process", folder, "-o", out, models=models).exit_code == 0
    before = (out / "summary.csv").read_text()
    complete = emocli.batch.complete_job

    def stopped_at_b(job, late):
        if job.name.endswith("b.mp4"):
            os.kill(os.getpid(), signal.SIGTERM)
        return complete(job, late)

    monkeypatch.setattr(emocli.batch, "complete_job", stopped_at_b)
    result = cli("process", folder, "-o", out, "--output-format", "json", models=models)
    assert result.exit_code == 143 and "interrupted" in result.output
    assert (out / "a.json").is_file() and not (out / "b.json").exists()
    assert (out / "summary.csv").read_text() != before and summary(out)["status"].tolist() == ["skipped"]
    assert not [p for p in out.iterdir() if ".part-" in p.name]


def test_a_run_killed_while_renaming_in_place_still_knows_its_annotated_video(models, tmp_path):
    """Outputs beside their source (a.flv, annotated as a.mp4): a run killed between its
    renames leaves a pending record; with summary.csv lost too, a.mp4 is still an output,
    not a new input that would overwrite itself."""
    from emocli.job import _mark_pending

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(EXAMPLES / "crema-d" / "1001_DFA_HAP_XX.flv", folder / "a.flv")
    assert cli("process", folder, "-o", folder, "--annotate", models=models).exit_code == 0
    assert (folder / "a.mp4").is_file()
    _mark_pending(folder / "a", json.loads(record_path(folder / "a").read_text())["outputs"])
    (folder / "summary.csv").unlink()
    again = cli("process", folder, "-o", folder, "--annotate", models=models)
    assert again.exit_code == 0, again.output
    assert summary(folder)["video"].tolist() == [str(folder / "a.flv")]


def test_a_second_run_into_the_same_folder_waits_its_turn(source, models, tmp_path):
    """Two runs at once in one OUT would take each other's outputs for current: the second
    is refused (exit 2) while the first holds the folder."""
    import fcntl

    folder = inputs(tmp_path, source, "a.mp4")
    out = tmp_path / "out"
    out.mkdir()
    held = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a first run does
        second = cli("process", folder, "-o", out, models=models)
        assert second.exit_code == 2 and "another emocli run is writing there" in second.output
        assert not (out / "a.csv").exists()
    finally:
        os.close(held)
    assert cli("process", folder, "-o", out, models=models).exit_code == 0  # its turn


def test_outputs_asked_for_later_come_from_the_timeline_but_an_annotated_video_from_the_video(source, models, tmp_path):
    """JSON asked for on a rerun is the one a fresh run writes; an annotated video needs the
    faces' tracks, which only the analysis has."""
    folder = inputs(tmp_path, source, "a.mp4")
    runner = CliRunner()
    base = ["process", str(folder), *models_args(models), "--workers", "1", "--no-plot"]
    assert runner.invoke(app, [*base, "-o", str(tmp_path / "fresh"), "--output-format", "json"]).exit_code == 0
    out = tmp_path / "out"
    assert runner.invoke(app, [*base, "-o", str(out)]).exit_code == 0
    later = runner.invoke(app, [*base, "-o", str(out), "--output-format", "json"])
    assert "its JSON timeline written from its timeline" in later.output
    assert json.loads((out / "a.json").read_text()) == json.loads((tmp_path / "fresh" / "a.json").read_text())
    assert json.loads(record_path(out / "a").read_text())["outputs"] == ["a.people.csv", "a.csv", "a.json"]
    skip = runner.invoke(app, [*base, "-o", str(out), "--output-format", "json"])
    assert "skipped" in skip.output and summary(out)["status"].tolist() == ["skipped"]
    annotated = runner.invoke(app, [*base, "-o", str(out), "--output-format", "json", "--annotate"])
    assert f"redone: its annotated video {out / 'a.mp4'} is missing" in annotated.output
    assert summary(out)["status"].tolist() == ["ok"] and (out / "a.mp4").is_file()


# ---------------------------------------------------------------- 8. training and evaluation inputs


@pytest.mark.parametrize(
    "args, message",
    [
        (["--val-fraction", "2"], "--val-fraction must be between 0 and 1 (exclusive), not 2.0"),
        (["--val-fraction", "0"], "--val-fraction must be between 0 and 1 (exclusive), not 0.0"),
        (["--lr", "-1"], "--lr must be a positive learning rate, not -1.0"),
        (["--epochs", "0"], "--epochs"),  # typer's own range check
    ],
)
def test_train_face_checks_its_values_before_tensorflow(tmp_path, args, message):
    code = f"""
import sys
import time
from typer.testing import CliRunner
from emocli.cli import app
from emocli.outputs import SUMMARY_COLUMNS
r = CliRunner().invoke(app, ["train", "face", "--data", {str(tmp_path)!r}, "--out", {str(tmp_path / "run")!r}, *{args!r}])
print(r.exit_code, "tensorflow" in sys.modules)
print(r.output)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    status, _, output = done.stdout.partition("\n")
    assert status == "2 False", done.stdout + done.stderr
    assert message in output and "Traceback" not in output
    assert not (tmp_path / "run").exists()


def test_labels_csv_rows_whose_file_is_gone_or_class_unknown_are_left_out_with_a_warning(tmp_path):
    from conftest import tone, write_wav

    from emocli.datasets import find_audio

    write_wav(tmp_path / "here.wav", tone(1.0))
    rows = ["here.wav,angry,1", "gone.wav,sad,1", "here.wav,joyful,2", "here.wav,grief,2", "here.wav,grief,3"]
    (tmp_path / "labels.csv").write_text("path,emotion,speaker\n" + "\n".join(rows) + "\n")
    with pytest.warns(UserWarning) as said:
        items = find_audio([tmp_path])
    assert [(i.path.name, i.label) for i in items] == [("here.wav", "angry"), ("here.wav", "happy")]
    lines = [str(w.message) for w in said]
    assert f"{tmp_path / 'gone.wav'}: unreadable, skipped (listed in labels.csv, no such file)" in lines
    assert f"{tmp_path / 'labels.csv'}: clips of classes outside the seven labels left out: grief (2)" in lines


def test_evaluate_writes_its_picture_in_out_or_here_never_beside_the_model(face_onnx, tmp_path, monkeypatch):
    import cv2
    import numpy as np

    data = tmp_path / "faces"
    for label, level in (("happy", 220), ("sad", 30)):
        (data / label).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(data / label / f"{i}.png"), np.full((48, 48), level, np.uint8))
    (data / "contempt").mkdir()  # a class emocli does not know: one warning line, with its count
    cv2.imwrite(str(data / "contempt" / "0.png"), np.full((48, 48), 99, np.uint8))
    model = tmp_path / "models" / "face.onnx"
    model.parent.mkdir()
    shutil.copy(face_onnx, model)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.setattr("emocli.labels._warned", set())  # an unknown class warns once a process

    table = CliRunner().invoke(app, ["evaluate", str(model), "--data", str(data)])
    assert table.exit_code == 0, table.output
    assert (here / "face-confusion.png").is_file() and not (model.parent / "face-confusion.png").exists()
    warnings = [line for line in table.output.splitlines() if "warning" in line]
    assert warnings == [f"warning: {data / 'contempt'}: 1 image in a folder not named after an emotion: skipped"]
    again = CliRunner().invoke(app, ["evaluate", str(model), "--data", str(data)])  # from the dataset cache
    assert [line for line in again.output.splitlines() if "warning" in line] == warnings

    out = tmp_path / "pictures"
    as_json = CliRunner().invoke(app, ["evaluate", str(model), "--data", str(data), "--json", "--out", str(out)])
    assert as_json.exit_code == 0
    report = json.loads(as_json.stdout)
    assert report["n"] == 6 and (out / "face-confusion.png").is_file()
    assert [p.name for p in model.parent.iterdir()] == ["face.onnx"]


def test_evaluate_finds_the_face_in_a_photograph_as_process_does(face_onnx, face_image, tmp_path):
    """The stand-in model calls a bright crop happy and a dark one sad: a bright face in a dark
    photograph is happy only if the face, not the whole picture, is classified."""
    import cv2
    import numpy as np
    from conftest import scene

    from emocli.evaluate import face_inputs
    from emocli.faces import FaceDetector, align_face

    photo = scene(face_image, at=((60, 300),), brightness=1.8)
    photo[photo == 90] = 10  # the scene's grey background, dark
    data = tmp_path / "faces" / "train" / "happy"  # one split only: it is the one scored
    data.mkdir(parents=True)
    cv2.imwrite(str(data / "photo.png"), photo)
    cv2.imwrite(str(data / "empty.png"), np.full((360, 640, 3), 10, np.uint8))  # no face: scored whole
    cv2.imwrite(str(data / "crop.png"), np.full((48, 48), 230, np.uint8))  # a face crop already: as it is

    result = CliRunner().invoke(app, ["evaluate", str(face_onnx), "--data", str(data.parents[1]), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["split"], report["n"], report["photographs"], report["detected"]) == ("train", 3, 2, 1)
    assert report["accuracy"] == pytest.approx(2 / 3)  # the empty photograph is dark: sad
    assert "warning: no face found in 1 of 2 photographs: each was classified whole" in result.stderr
    table = CliRunner().invoke(app, ["evaluate", str(face_onnx), "--data", str(data.parents[1]), "-o", str(tmp_path)])
    assert "faces detected and cropped in 1 of 2 photographs" in table.stdout

    inputs, photographs, detected = face_inputs([data / "crop.png", data / "photo.png"], 0.15)
    assert photographs.tolist() == [False, True] and detected.tolist() == [False, True]
    assert inputs[0].shape == (48, 48, 3)
    with FaceDetector(min_score=0.5, max_faces=1, min_face=0.0) as detector:
        expected = align_face(photo, detector.detect(photo)[0], 0.15)
    assert np.array_equal(inputs[1], expected) and max(expected.shape) < 300


# ---------------------------------------------------------------- 6. signals


def _session_processes(sid: int) -> list[str]:
    """Processes still alive in session ``sid`` (the batch and everything it started)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            alive.append(text[: text.rindex(")") + 1])
    return alive


@pytest.mark.parametrize(
    "signum, workers, engine", [(signal.SIGTERM, 2, "local"), (signal.SIGINT, 1, "local"), (signal.SIGTERM, 2, "ray")]
)
def test_a_signal_stops_everything_keeps_what_finished_and_a_rerun_completes_it(
    source, models, tmp_path, signum, workers, engine
):
    if engine == "ray":
        pytest.importorskip("ray")
    folder = inputs(tmp_path, source, *[f"v{i}.mp4" for i in range(5)])
    reference = tmp_path / "reference"
    assert emocli(folder, "-o", reference, "--no-plot", "--workers", "1", models=models).returncode == 0

    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "emocli",
        "process",
        str(folder),
        "-o",
        str(out),
        "--no-plot",
        "--quiet",
        "--workers",
        str(workers),
        "--engine",
        engine,
        *models_args(models),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if len((out / "summary.csv").read_text().splitlines()) > 1:
                break  # one video finished and on record, others in flight
        time.sleep(0.02)
    proc.send_signal(signum)
    said, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert said == ""  # --quiet: nothing on stdout (Ray's lines about the workers it saw stopped neither)
    assert err.strip().splitlines() == [
        f"interrupted: the videos that finished are in {out / 'summary.csv'}; rerun to do the rest"
    ]
    time.sleep(0.5)  # the kernel reaps what the batch waited for
    assert _session_processes(proc.pid) == [], "workers, ffmpeg or the resource tracker outlived the batch"
    assert not list(out.glob(".*.part-*")), "temporaries left behind"
    done = summary(out)
    assert 1 <= len(done) < 5 and set(done["status"]) == {"ok"}  # what finished, and only that

    rerun = emocli(folder, "-o", out, "--no-plot", "--workers", "2", models=models)
    assert rerun.returncode == 0, rerun.stderr
    statuses = summary(out)["status"].tolist()
    assert statuses.count("ok") + statuses.count("skipped") == 5 and statuses.count("skipped") >= len(done)
    csvs = {p.name: p.read_bytes() for p in out.glob("v*.csv")}
    assert csvs == {p.name: p.read_bytes() for p in reference.glob("v*.csv")}
