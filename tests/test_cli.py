"""The command line as users of whisper or ultralytics expect it: help in words, not Python
types; every option with its default; -o/--output a folder; a line per video in a log;
JSON beside the CSV; the detector's threshold exposed."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from conftest import model_args
from media_corpus import clip
from typer.testing import CliRunner

from emocli.cli import app
from emocli.cli_models import _model_file

COMMANDS = [[], ["process"], ["export"], ["evaluate"], ["models"], ["train"], ["train", "face"], ["train", "voice"]]


def _commands(command=None, path=()):
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "emocli")
def test_help_names_values_not_python_types(words):
    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    python = re.compile(r"<(bool|int|float|str|path|text)\b|list\[|float range|int range|\[x[<>]=|\{\w+\}|<Path>")
    assert not python.search(result.output), python.search(result.output).group(0)


def test_help_keeps_every_bracket_its_source_has():
    """rich renders help as markup: an unescaped ``emocli[ray]`` would print as ``emocli``."""
    from rich.markup import escape

    lost = []
    for path, command in _commands():
        for param in command.params:
            for tag in re.findall(r"\[[a-z][\w ,=]*\]", (param.help or "").replace("\\[", "")):
                lost.append(f"{' '.join(path)} --{param.name}: {tag} (write it {escape(tag)})")
    assert not lost, "\n".join(lost)
    shown = CliRunner().invoke(app, ["process", "--help"], env={"COLUMNS": "200"}).output
    assert "pip install 'emocli[ray]'" in shown


def test_every_option_says_what_it_does_and_its_default():
    wrong = []
    for path, command in _commands():
        for param in command.params:
            if param.name in ("help", "version") or param.param_type_name != "option":
                continue
            where = f"{' '.join(path)} --{param.name}"
            if not param.help:
                wrong.append(f"{where}: no help text")
            flag = getattr(param, "is_flag", False)
            if not (param.required or flag or param.default is not None or isinstance(param.show_default, str)):
                wrong.append(f"{where}: a None default that the help does not name")
    assert not wrong, "\n".join(wrong)


def test_version():
    from emocli import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert (result.exit_code, result.output) == (0, f"emocli {__version__}\n")


@pytest.fixture(scope="module")
def video(tmp_path_factory, face_image) -> Path:
    return clip(tmp_path_factory.mktemp("cli") / "clip.mp4", face_image, 3.0)


def _process(video: Path, out: Path, models: dict, *extra: str):
    args = [
        "process",
        str(video),
        "--output",
        str(out),
        *model_args(models),
        "--no-plot",
        *extra,
    ]
    return CliRunner().invoke(app, args, catch_exceptions=False)


def test_output_format_json_holds_the_csv_rows_and_the_facts(video, models, tmp_path):
    result = _process(video, tmp_path, models, "--output-format", "csv,json")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "clip.json").read_text())
    with open(tmp_path / "clip.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(document["rows"]) == len(table) == document["intervals"] == 3
    for row, cells in zip(document["rows"], table, strict=True):
        assert list(row) == list(cells)  # the CSV's columns, in its order
        for column, text in cells.items():
            value = row[column]
            if text == "":
                assert value is None, column
            elif isinstance(value, bool):
                assert text == str(value).lower(), column
            elif isinstance(value, (int, float)):
                assert float(text) == value, column
            else:
                assert text == value, column
    assert document["video"] == str(video)
    assert document["duration_s"] == pytest.approx(3.0, abs=0.05)
    assert document["faces"] == 1 and len(document["people"]) == 1 and document["has_video"] is True


def test_json_alone_still_writes_the_csv_and_a_rerun_adds_json(video, models, tmp_path):
    assert _process(video, tmp_path, models).exit_code == 0
    assert not (tmp_path / "clip.json").exists()
    result = _process(video, tmp_path, models, "--output-format", "json")
    assert result.exit_code == 0 and "its JSON timeline written from its timeline" in result.output
    assert (tmp_path / "clip.json").is_file() and (tmp_path / "clip.csv").is_file()


def test_unknown_output_format_is_bad_usage(video, models, tmp_path):
    result = _process(video, tmp_path, models, "--output-format", "csv,xml")
    assert result.exit_code == 2 and "'xml'" in result.output
    assert not (tmp_path / "summary.csv").exists()


def test_a_log_gets_a_line_per_video_as_it_finishes(video, models, tmp_path):
    """stdout to a pipe, as under nohup, a scheduler or `> log`: the lines arrive, no progress bar."""
    cmd = [
        sys.executable,
        "-m",
        "emocli",
        "process",
        str(video),
        "-o",
        str(tmp_path / "out"),
        "--no-plot",
        *model_args(models),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=video.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"clip.mp4: 3.0 s, 1 face → {tmp_path / 'out' / 'clip.csv'}",
        f"1 ok; summary: {tmp_path / 'out' / 'summary.csv'}",
        f"Results saved to {tmp_path / 'out'}",
    ]
    assert done.stderr == ""


def test_min_face_score_drops_faces_the_detector_doubts(video, models, tmp_path):
    def scores(out: Path) -> list[float]:
        with open(out / "clip.csv", newline="") as f:
            return [float(r["face_score"]) for r in csv.DictReader(f) if r["face_score"]]

    assert _process(video, tmp_path / "default", models).exit_code == 0
    seen = scores(tmp_path / "default")
    assert len(seen) == 3 and max(seen) < 0.98
    strict = f"{max(seen) + 0.01:.2f}"
    assert _process(video, tmp_path / "strict", models, "--min-face-score", strict).exit_code == 0
    assert scores(tmp_path / "strict") == []
    assert _process(video, tmp_path / "bad", models, "--min-face-score", "1.5").exit_code == 2


@pytest.mark.parametrize(
    ("sources", "output", "name", "expected"),
    [
        (["runs/face"], ".", None, "face.onnx"),
        (["runs/face"], "models", None, "models/face.onnx"),
        (["runs/face/model.keras"], "models", None, "models/face.onnx"),
        (["runs/face", "runs/face2"], "models", "ensemble", "models/ensemble.onnx"),
        (["runs/face"], "models", "face-int8.onnx", "models/face-int8.onnx"),
        (["runs/face"], "face.onnx", None, "face.onnx"),  # scripts that name the file keep working
    ],
)
def test_export_writes_into_the_output_folder(sources, output, name, expected):
    assert _model_file([Path(s) for s in sources], Path(output), name) == Path(expected)


def test_export_refuses_a_file_as_folder_and_a_path_as_name(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for args in (["-o", str(tmp_path / "notes.txt")], ["-o", str(tmp_path), "--name", "sub/face"]):
        result = CliRunner().invoke(app, ["export", "runs/face", *args])
        assert result.exit_code == 2, result.output
        assert len(result.output.strip().splitlines()) == 1
