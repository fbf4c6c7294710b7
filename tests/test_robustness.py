"""Bad and awkward input never stops a batch: each video ends ok (maybe degraded) or failed, in one line.

One real `emocli process` run (two workers) goes over the whole corpus of
tests/media_corpus.py; the tests below read what it left: exit code, console,
summary.csv and each timeline.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import model_args
from media_corpus import FACE_AT, FACE_SCALE, build_corpus
from typer.testing import CliRunner

from emocli.cli import app
from emocli.labels import LABELS
from emocli.media import probe

P = {m: [f"{m}_p_{label}" for label in LABELS] for m in ("face", "voice", "fused")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, face_image):
    root = tmp_path_factory.mktemp("corpus") / "in"
    return root, build_corpus(root, face_image)


@pytest.fixture(scope="module")
def batch(corpus, models, tmp_path_factory):
    """One batch over the corpus, as a user would run it: its own process, --quiet, two workers."""
    root, cases = corpus
    out = tmp_path_factory.mktemp("corpus-out")
    # The .m4a is named explicitly: inside folders only video containers are picked up.
    cmd = [
        sys.executable,
        "-m",
        "emocli",
        "process",
        str(root),
        str(root / "voice_memo.m4a"),
        "-o",
        str(out),
        "--quiet",
        "--workers",
        "2",
        *model_args(models),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False).set_index("video")
    return out, done, summary


def timeline(batch, corpus, name: str) -> pd.DataFrame:
    out, _, _ = batch
    root, cases = corpus
    rel = cases[name].path.relative_to(root)
    return pd.read_csv(out / rel.with_suffix(".csv"))


def test_every_input_ends_ok_or_failed_as_expected(corpus, batch):
    root, cases = corpus
    out, _, summary = batch
    assert sorted(summary.index) == sorted(str(c.path) for c in cases.values())
    wrong = []
    for name, case in cases.items():
        row = summary.loc[str(case.path)]
        if row["status"] != case.status or case.error.lower() not in row["error"].lower():
            wrong.append(f"{name}: {row['status']} {row['error']!r}, expected {case.status} {case.error!r}")
        if case.status == "ok":
            if float(row["speech_s"]) > float(row["duration_s"]):
                wrong.append(f"{name}: speech_s {row['speech_s']} > duration_s {row['duration_s']}")
            rel = case.path.relative_to(root)
            csv, png = out / rel.with_suffix(".csv"), out / rel.with_suffix(".png")
            if not (csv.is_file() and png.is_file() and len(pd.read_csv(csv)) == int(row["intervals"]) > 0):
                wrong.append(f"{name}: outputs missing or the timeline has holes")
        elif "\n" in row["error"]:
            wrong.append(f"{name}: the error takes more than one line")
    assert not wrong, "\n".join(wrong)


def test_exit_code_and_one_console_line_per_failure(corpus, batch):
    _, cases = corpus
    _, done, summary = batch
    assert done.returncode == 1
    assert done.stdout == ""
    said = summary[summary["error"] != ""]  # the failures, and the notes on ok videos cut short
    expected = sorted(
        f"{video}: {'' if status == 'failed' else 'note: '}{error}"
        for video, status, error in zip(said.index, said["status"], said["error"], strict=True)
    )
    assert sorted(done.stderr.splitlines()) == expected
    assert (said["status"] == "failed").sum() == sum(c.status == "failed" for c in cases.values())
    notes = said[said["status"] == "ok"]["error"].to_dict()
    assert notes == {
        str(cases["truncated (faststart)"].path): "decoded 0.9 of 2.0 s",
        str(cases["no audio"].path): "no audio stream (faces only)",
        str(cases["one frame"].path): "no audio stream (faces only)",
        str(cases["audio only (.m4a)"].path): "no video stream (voice only)",
        str(cases["audio only (.mp4)"].path): "no video stream (voice only)",
    }


def test_no_audio_gives_a_face_only_timeline(batch, corpus):
    df = timeline(batch, corpus, "no audio")
    assert len(df) == 2 and df["face_id"].notna().all()
    assert not df["voice_active"].any() and df["voice_emotion"].isna().all()
    assert np.allclose(df[P["fused"]].to_numpy(), df[P["face"]].to_numpy())


@pytest.mark.parametrize("name", ["audio only (.m4a)", "audio only (.mp4)"])
def test_no_video_gives_a_voice_only_timeline(batch, corpus, name):
    df = timeline(batch, corpus, name)
    assert df["t_start"].tolist() == [0.0, 1.0]  # one row per interval, none for faces
    assert df["face_id"].isna().all() and df["voice_active"].all()
    assert np.allclose(df[P["fused"]].to_numpy(), df[P["voice"]].to_numpy())


def test_very_short_videos_get_one_short_interval(batch, corpus):
    one = timeline(batch, corpus, "one frame")
    assert (one["t_start"].tolist(), one["t_end"].tolist(), one["face_id"].tolist()) == ([0.0], [0.1], [0])
    short = timeline(batch, corpus, "shorter than an interval")
    assert (short["t_start"].tolist(), short["t_end"].tolist(), short["face_id"].tolist()) == ([0.0], [0.4], [0])


def test_rotated_phone_video_boxes_the_face_in_the_upright_frame(batch, corpus):
    _, _, summary = batch
    df = timeline(batch, corpus, "rotated 90")
    width, height = 120, 160  # stored 160x120, displayed turned a quarter
    face_x, face_y, face_side = 5, 20, 220 * FACE_SCALE  # where rotated() pasted the face, upright
    for r in df.itertuples():
        assert 0 <= r.face_x and r.face_x + r.face_w <= width and 0 <= r.face_y and r.face_y + r.face_h <= height
        cx, cy = r.face_x + r.face_w / 2, r.face_y + r.face_h / 2
        assert face_x < cx < face_x + face_side and face_y < cy < face_y + face_side


def test_damaged_and_odd_videos_still_give_timelines(batch, corpus):
    face_y, face_x = FACE_AT[0]
    for name, rows in [
        ("corrupted middle", 2),
        ("truncated (faststart)", 1),  # 0.9 s of its 2 s are there (a note says so)
        ("variable frame rate", 3),
        ("VP9/Opus webm", 1),  # 1 s: the few milliseconds Opus adds join the interval
    ]:
        df = timeline(batch, corpus, name)
        assert len(df) == rows and df["face_id"].notna().all(), name
        assert (abs(df["face_x"] + df["face_w"] / 2 - (face_x + 55)) < 20).all(), name  # on the face
    tiny = timeline(batch, corpus, "33x17 frames")
    assert len(tiny) == 1 and tiny["face_id"].isna().all() and tiny["voice_active"].all()


def test_names_cases_and_folders_map_to_distinct_outputs(batch):
    out, _, _ = batch
    for rel in ["CLIP.csv", "entrevista café 1.csv", "entrevista café 1.png", "a/clip.csv", "b/clip.csv", "legacy.csv"]:
        assert (out / rel).is_file(), rel
    a, b = pd.read_csv(out / "a/clip.csv"), pd.read_csv(out / "b/clip.csv")
    assert a["video"].iloc[0].endswith("a/clip.mp4") and b["video"].iloc[0].endswith("b/clip.mp4")


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads a chmod 000 file; the dangling symlink case covers unreadable input"
)
def test_unreadable_file_is_in_the_corpus(corpus):
    _, cases = corpus
    assert cases["no read permission"].status == "failed"


def test_debug_shows_the_traceback(corpus, models, tmp_path):
    root, _ = corpus
    args = [
        "process",
        str(root / "empty.mp4"),
        "-o",
        str(tmp_path),
        *model_args(models),
        "--quiet",
    ]
    quiet = CliRunner().invoke(app, args)
    loud = CliRunner().invoke(app, [*args, "--debug"])
    assert (quiet.exit_code, loud.exit_code) == (1, 1)
    assert quiet.output.strip() == f"{root / 'empty.mp4'}: empty file (0 bytes)"
    assert "Traceback" in loud.output and "MediaError" in loud.output


def test_corpus_paths_are_real(corpus):
    """Guard for the builders: each case's file is where it says, and the names are what they claim."""
    _, cases = corpus
    assert cases["non-ASCII name with spaces"].path.name == "entrevista café 1.mp4"
    assert Path(cases["dangling symlink"].path).is_symlink() and not cases["dangling symlink"].path.exists()
    assert cases["zero bytes"].path.stat().st_size == 0


def annotate(cases: dict, names: list[str], out: Path, models) -> None:
    """`emocli process CASES -o OUT --annotate` (CSV and video only) in this process; it must exit 0."""
    files = [str(cases[name].path) for name in names]
    result = CliRunner().invoke(
        app,
        [
            "process",
            *files,
            "-o",
            str(out),
            *model_args(models),
            "--annotate",
            "--no-plot",
            "--quiet",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output


def test_annotate_gives_audio_only_input_no_video_and_resumes(corpus, models, tmp_path):
    _, cases = corpus
    names = ["audio only (.mp4)", "no audio"]
    annotate(cases, names, tmp_path, models)
    assert (tmp_path / "podcast.csv").is_file() and not (tmp_path / "podcast.mp4").exists()
    annotated = probe(tmp_path / "silent_film.mp4")
    assert annotated.has_video and not annotated.has_audio
    annotate(cases, names, tmp_path, models)
    assert pd.read_csv(tmp_path / "summary.csv")["status"].tolist() == ["skipped", "skipped"]


def test_annotate_odd_sizes_and_audio_an_mp4_cannot_copy(corpus, models, tmp_path):
    """33x17 frames are padded to even sides for H.264 4:2:0; Opus from a webm is encoded to AAC."""
    _, cases = corpus
    annotate(cases, ["33x17 frames", "VP9/Opus webm"], tmp_path, models)
    (tiny,) = tmp_path.glob(f"{cases['33x17 frames'].path.stem}.mp4")
    (webm,) = tmp_path.glob(f"{cases['VP9/Opus webm'].path.stem}.mp4")
    assert (probe(tiny).width, probe(tiny).height) == (34, 18)
    assert probe(cases["VP9/Opus webm"].path).audio_codec == "opus" and probe(webm).audio_codec == "aac"
