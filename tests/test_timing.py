"""Times are true: faces and speech land on the media's presentation timeline, whatever
the streams' start times, edit lists, frame rate or header say; the default audio track is
the one heard; broken samples are silence; media cut short is said.

One real `emocli process` run (two workers) goes over the timing corpus of
tests/media_corpus.py; the tests read what it left.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import model_args
from media_corpus import (
    broken_float_audio,
    dv_tape,
    late_audio,
    late_video,
    lying_header,
    slide_show,
    ts_offset,
    two_audio_tracks,
)
from typer.testing import CliRunner

from emocli.cli import app
from emocli.labels import LABELS
from emocli.media import probe

BUILDERS = {
    "late_audio.mp4": late_audio,
    "late_video.mp4": late_video,
    "offset.ts": ts_offset,
    "slides.mp4": slide_show,
    "lying.mkv": lying_header,
    "two_tracks.mp4": two_audio_tracks,
    "broken_float.mov": broken_float_audio,
    "tape.dv": dv_tape,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, face_image):
    root = tmp_path_factory.mktemp("timing") / "in"
    root.mkdir()
    return root, {name: build(root / name, face_image) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def batch(corpus, models, tmp_path_factory):
    root, _ = corpus
    out = tmp_path_factory.mktemp("timing-out")
    cmd = [
        sys.executable,
        "-m",
        "emocli",
        "process",
        str(root),
        "-o",
        str(out),
        "--quiet",
        "--no-plot",
        "--workers",
        "2",
        *model_args(models),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False).set_index("video")
    return out, done, summary


def timeline(batch, name: str) -> pd.DataFrame:
    out, _, _ = batch
    return pd.read_csv(out / (name.rsplit(".", 1)[0] + ".csv"))


def by_interval(df: pd.DataFrame, column: str) -> list:
    """Per interval (in order), whether any of its rows has ``column`` set (true)."""
    values = df[column].notna() if column == "face_id" else df[column].astype(bool)
    return values.groupby(df["t_start"]).any().tolist()


def test_all_ok_and_the_console_says_only_what_was_cut_short(corpus, batch):
    root, _ = corpus
    _, done, summary = batch
    assert done.returncode == 0, done.stderr
    assert set(summary["status"]) == {"ok"}
    # The header claims an hour: the note says how much was there; the slides have no sound;
    # nothing else is said (no numpy warning from the broken float track).
    assert sorted(done.stderr.splitlines()) == [
        f"{root / 'lying.mkv'}: note: decoded 2.3 of 3600.0 s",
        f"{root / 'slides.mp4'}: note: no audio stream (faces only)",
        f"{root / 'tape.dv'}: note: no audio stream (faces only)",
    ]
    assert summary.loc[str(root / "lying.mkv"), "error"] == "decoded 2.3 of 3600.0 s"


def test_audio_that_starts_late_is_heard_where_it_starts(batch):
    df = timeline(batch, "late_audio.mp4")
    assert df["t_start"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    voiced = by_interval(df, "voice_active")
    assert voiced[:2] == [False, False] and voiced[3:] == [True, True]  # speech at 3-5 s, not 0-2 s
    assert by_interval(df, "face_id") == [True, True, True, False, False]  # the video ends at 3 s


def test_video_that_starts_late_is_seen_where_it_starts(batch):
    """An MP4 edit list delays the video by 2 s: its face is at 2-5 s, not 0-3 s."""
    df = timeline(batch, "late_video.mp4")
    assert by_interval(df, "face_id") == [False, False, True, True, True]


def test_timestamps_that_start_late_count_from_the_first(batch, corpus):
    """MPEG-TS starting at 11.4 s: the timeline still starts at 0 and lasts as long as the media."""
    root, _ = corpus
    df = timeline(batch, "offset.ts")
    _, _, summary = batch
    assert df["t_start"].tolist()[:3] == [0.0, 1.0, 2.0]
    assert summary.loc[str(root / "offset.ts"), "duration_s"] == pytest.approx(3.0, abs=0.1)
    assert by_interval(df, "face_id")[:3] == [True, True, True] and any(by_interval(df, "voice_active"))


def test_a_slide_show_has_its_face_in_every_interval(batch):
    """0.5 fps: each frame stands for the intervals it is shown in, or is nearest to."""
    df = timeline(batch, "slides.mp4")
    assert len(by_interval(df, "face_id")) == 10 and all(by_interval(df, "face_id"))


def test_a_frame_rate_header_far_from_the_frames_is_not_believed(corpus, batch):
    """Raw DV says 60000 frames a second; its frames come 29.97 a second, and are found."""
    root, _ = corpus
    assert probe(root / "tape.dv").fps == pytest.approx(30000 / 1001, rel=0.01)
    assert all(by_interval(timeline(batch, "tape.dv"), "face_id"))


def test_duration_comes_from_the_media_not_a_lying_header(batch):
    df = timeline(batch, "lying.mkv")
    assert df["t_start"].tolist() == [0.0, 1.0, 2.0] and df["t_end"].tolist()[-1] == pytest.approx(2.3, abs=0.05)


def test_the_default_audio_track_is_the_one_analysed(batch):
    """Track 0 is a tone (not default): no speech in it. Track 1, the default, is speech."""
    df = timeline(batch, "two_tracks.mp4")
    assert all(by_interval(df, "voice_active"))


def test_the_annotated_video_and_live_keep_the_default_audio_track(corpus, models, tmp_path):
    """The annotated MP4 carries the sound that was analysed, and `emocli live` hears it too."""
    from emocli.media import read_audio
    from emocli.media.stream import parse_source

    root, _ = corpus
    source = root / "two_tracks.mp4"
    result = CliRunner().invoke(
        app, ["process", str(source), "-o", str(tmp_path), "--annotate", "--no-plot", "--quiet", *model_args(models)]
    )
    assert result.exit_code == 0, result.output
    heard = read_audio(source, 16_000, probe(source).audio_stream)
    kept = read_audio(tmp_path / "two_tracks.mp4", 16_000)
    n = min(len(heard), len(kept))
    assert n > 16_000 and np.corrcoef(heard[:n], kept[:n])[0, 1] > 0.95  # the speech, not the tone

    assert parse_source(str(source)).maps == ("0:0", f"0:{probe(source).audio_stream}") == ("0:0", "0:2")


def test_non_finite_samples_are_silence(batch):
    df = timeline(batch, "broken_float.mov")
    voiced = df[df["voice_active"]]
    assert len(voiced) >= 1 and voiced["voice_emotion"].isin(LABELS).all()
    probs = voiced[[f"voice_p_{label}" for label in LABELS]].to_numpy()
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1.0, atol=2e-3)


def test_annotating_broken_float_audio_and_a_late_video(corpus, models, tmp_path):
    root, _ = corpus
    args = [
        "process",
        str(root / "broken_float.mov"),
        str(root / "late_video.mp4"),
        "-o",
        str(tmp_path),
        "--annotate",
        "--no-plot",
        "--quiet",
        "--workers",
        "1",
        *model_args(models),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name, seconds in (("broken_float.mp4", 3.0), ("late_video.mp4", 5.0)):
        info = probe(tmp_path / name)
        assert info.has_video and info.has_audio and info.duration == pytest.approx(seconds, abs=0.15), name
