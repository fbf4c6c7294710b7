"""emocli live on real streams: a loopback HTTP stream served by the bundled ffmpeg in real
time, and a pipe on standard input. Rows must appear while the stream plays, within the
latency bound, and the run must stop cleanly at --duration, at the end, and on signals.
No test opens a camera: the camera branch is checked on an index no machine has."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES, model_args
from media_corpus import clip

from emocli.media import MediaError, ffmpeg
from emocli.media.stream import FrameBuffer, camera, parse_source
from emocli.timeline import COLUMNS

SECONDS = 8  # of the served stream
INTERVAL = 1.0


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    """Six seconds of the demo (a real face, real speech) as MPEG-TS with a keyframe every
    half second, so a client that joins starts at once."""
    path = tmp_path_factory.mktemp("live") / "stream.ts"
    subprocess.run(
        [ffmpeg(), "-v", "error", "-i", str(EXAMPLES / "demo.mp4"), "-t", str(SECONDS), "-c:v", "libx264"]
        + ["-preset", "veryfast", "-g", "15", "-c:a", "aac", "-f", "mpegts", str(path)],
        check=True,
    )
    return path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(path: Path) -> tuple[subprocess.Popen, str]:
    """``path`` served once over HTTP in real time (-re), as a live encoder would send it."""
    url = f"http://127.0.0.1:{_port()}"
    cmd = [ffmpeg(), "-v", "error", "-re", "-i", str(path), "-c", "copy", "-f", "mpegts", "-listen", "1", url]
    server = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # listening
    return server, url


class Run:
    """``emocli live`` in its own session; its stdout lines and the CSV's rows are stamped
    (monotonic clock) as they appear."""

    def __init__(self, models, source: str, out: Path, *args: str, stdin=None, env=None):
        cmd = [sys.executable, "-m", "emocli", "live", source, "-o", str(out), "--name", "t", *model_args(models)]
        self.csv = out / "t.csv"
        self.proc = subprocess.Popen(
            [*cmd, *args],
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=env,
        )
        self.lines: list[tuple[float, str]] = []
        self.rows_seen: dict[float, float] = {}  # t_end -> when its rows were first in the CSV
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def poll_rows(self) -> None:
        with contextlib.suppress(OSError):
            for row in self.rows():
                self.rows_seen.setdefault(float(row["t_end"]), time.monotonic())

    def rows(self) -> list[dict]:
        with open(self.csv, newline="", encoding="utf-8") as f:
            return [r for r in csv.DictReader(f) if None not in r.values() and None not in r]

    def wait_for_rows(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.rows_seen) < n and self.proc.poll() is None and time.monotonic() < deadline:
            self.poll_rows()
            time.sleep(0.02)
        assert len(self.rows_seen) >= n, self.finish()[1]

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.poll_rows()
            time.sleep(0.02)
        if self.proc.poll() is None:
            self.proc.kill()
        err = self.proc.stderr.read()
        self.proc.wait()
        self._reader.join(timeout=5)
        self.poll_rows()
        return self.proc.returncode, err

    def lags(self) -> list[float]:
        """The lags emocli printed, one per interval line (``   3.0-4.0 s: 1 face, happy, lag 0.62 s``)."""
        found = (re.search(r"^\s*[\d.]+-[\d.]+ s: .*, lag ([\d.]+) s$", line) for _, line in self.lines)
        return [float(m.group(1)) for m in found if m]


def session_processes(sid: int) -> list[str]:
    """Processes still alive in session ``sid``: emocli and the ffmpegs it started."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            fields = text[text.rindex(")") + 2 :].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                alive.append(text[: text.rindex(")") + 1])
    return alive


def check_timeline(rows: list[dict], csv_path: Path, intervals: int) -> None:
    """The timeline's columns and rows: consecutive intervals from 0, each complete, a face and speech found."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    assert lines[0] == COLUMNS
    assert all(len(line) == len(COLUMNS) for line in lines), "a row cut short"
    starts = sorted({float(r["t_start"]) for r in rows})
    assert starts == [i * INTERVAL for i in range(intervals)]
    assert sum(1 for r in rows if r["face_id"] != "") >= intervals - 1, "the face on screen was not found"
    assert any(r["voice_active"] == "true" for r in rows), "the speech was not heard"


def test_an_http_stream_gets_its_rows_while_it_plays_within_an_interval_and_a_second(stream, models, tmp_path):
    server, url = serve(stream)
    try:
        run = Run(models, url, tmp_path / "out")
        served_until = None
        first_row_while_playing = False
        deadline = time.monotonic() + 40
        while run.proc.poll() is None and time.monotonic() < deadline:
            run.poll_rows()
            if served_until is None and server.poll() is not None:
                served_until = time.monotonic()  # the server has sent the whole stream
            if run.rows_seen and served_until is None:
                first_row_while_playing = True
            time.sleep(0.02)
        code, err = run.finish()
        served_until = served_until or time.monotonic()
    finally:
        server.kill()
        server.wait()
    assert code == 0, err
    assert first_row_while_playing
    rows = run.rows()
    check_timeline(rows, run.csv, SECONDS)
    first = min(run.rows_seen.values())
    assert served_until - first > 2 * INTERVAL, "the rows came only once the stream was over"
    # emocli's own measure: from the arrival of an interval's end to its rows on disk.
    lags = run.lags()
    assert len(lags) >= SECONDS - 1 and max(lags) <= INTERVAL + 1.0, lags
    # The same seen from outside: the server sends in real time, so the end of interval k
    # leaves it SECONDS - k before it is done; its rows must be on disk an interval and a
    # second later (the first intervals are excluded: they left while emocli was starting).
    for end, seen in run.rows_seen.items():
        if 3 <= end <= SECONDS:
            sent = served_until - (SECONDS - end)
            assert seen - sent <= INTERVAL + 1.0 + 0.3, (end, seen - sent)
    assert "intervals" in run.lines[-1][1] and str(run.csv) in run.lines[-1][1]


def test_a_pipe_on_stdin_stops_at_duration_with_an_annotated_video(stream, models, tmp_path):
    feeder = subprocess.Popen(
        [ffmpeg(), "-v", "quiet", "-re", "-i", str(stream), "-c", "copy", "-f", "mpegts", "-"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    started = time.monotonic()
    try:
        run = Run(
            models, "-", tmp_path / "out", "--duration", "3", "--annotate", "--show", stdin=feeder.stdout, env=env
        )
        feeder.stdout.close()  # emocli's ffmpeg holds the pipe now
        code, err = run.finish()
        took = time.monotonic() - started
    finally:
        feeder.kill()
        feeder.wait()
    assert code == 0, err
    assert took < SECONDS + 4, "it did not stop at --duration"
    assert "no display" in err and err.count("no display") == 1
    rows = run.rows()
    check_timeline(rows, run.csv, 3)
    assert max(float(r["t_end"]) for r in rows) == 3.0
    # The annotated picture: three seconds of frames, decodable to the end.
    mp4 = run.csv.with_suffix(".mp4")
    probe = subprocess.run([ffmpeg(), "-v", "error", "-i", str(mp4), "-f", "null", "-"], capture_output=True, text=True)
    assert probe.returncode == 0 and probe.stderr == ""
    info = subprocess.run([ffmpeg(), "-hide_banner", "-i", str(mp4)], capture_output=True, text=True).stderr
    assert "Duration: 00:00:03" in info or "Duration: 00:00:02.9" in info, info
    assert "Video: h264" in info and "Audio: aac" in info, info


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_a_signal_stops_it_with_every_finished_interval_written(stream, models, tmp_path, signum):
    """SIGINT (Ctrl-C): a clean stop, exit 0. SIGKILL: no clean-up at all, yet the CSV holds
    whole rows and the fragmented MP4 plays."""
    run = Run(models, str(stream), tmp_path / "out", "--annotate")  # a file plays at its own pace
    run.wait_for_rows(2)
    time.sleep(0.3)
    os.kill(run.proc.pid, signum)
    stopped = time.monotonic()
    code, err = run.finish()
    rows = run.rows()
    intervals = len({r["t_start"] for r in rows})
    assert 2 <= intervals < SECONDS
    check_timeline(rows, run.csv, intervals)
    mp4 = run.csv.with_suffix(".mp4")
    probe = subprocess.run([ffmpeg(), "-v", "error", "-i", str(mp4), "-f", "null", "-"], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    if signum == signal.SIGINT:
        assert code == 0, err
        assert time.monotonic() - stopped < 3
        assert run.lines[-1][1].startswith(f"stopped by Ctrl-C: {intervals} intervals")
        time.sleep(0.3)
        assert session_processes(run.proc.pid) == [], "an ffmpeg outlived the run"
    else:
        assert code == -signal.SIGKILL


def test_a_stream_that_stops_sending_is_retried_then_ends_with_an_error(stream, models, tmp_path):
    server, url = serve(stream)
    try:
        run = Run(models, url, tmp_path / "out", "--timeout", "1.5", "--retries", "1")
        run.wait_for_rows(2)
        server.send_signal(signal.SIGSTOP)  # the sender hangs: no data, no end
        code, err = run.finish()
    finally:
        server.kill()
        server.wait()
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[0] == f"{url}: stream dropped (no data for 1.5 s); reconnecting (1 of 1)", err
    assert lines[-1].startswith(f"{url}: the stream dropped and could not be reopened: "), err
    rows = run.rows()
    check_timeline(rows, run.csv, len({r["t_start"] for r in rows}))


def test_a_camera_that_cannot_be_opened_is_one_line_and_exit_1(models, tmp_path):
    if not sys.platform.startswith("linux") or Path("/dev/video63").exists():
        pytest.skip("needs Linux without a /dev/video63")
    proc = subprocess.run(
        [sys.executable, "-m", "emocli", "live", "63", "-o", str(tmp_path / "out"), *model_args(models)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == ["cannot open camera 63: No such file or directory"]
    assert not list((tmp_path / "out").glob("*.csv"))


def test_sources_are_told_apart_and_a_password_never_shows(tmp_path, face_image):
    assert parse_source("-").kind == "stdin"
    url = parse_source("rtsp://user:secret@cam.local:554/stream")
    assert url.kind == "url" and url.label == "rtsp://cam.local:554/stream" and url.retry
    assert camera(2, "linux").args == ("-f", "v4l2", "-i", "/dev/video2")
    assert camera(0, "darwin").args[:2] == ("-f", "avfoundation")
    with pytest.raises(Exception, match="video=NAME"):
        camera(0, "win32")
    assert parse_source("video=Integrated Camera", "win32").args[:2] == ("-f", "dshow")
    video = clip(tmp_path / "clip.mp4", face_image, 1.0)
    assert parse_source(str(video)).args[0] == "-re" and not parse_source(str(video)).retry
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty\.mp4: empty file"):
        parse_source(str(tmp_path / "empty.mp4"))
    with pytest.raises(MediaError, match=r"gone\.mp4: no such file \(nor a camera index"):
        parse_source(str(tmp_path / "gone.mp4"))


def test_an_existing_output_is_never_overwritten(models, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "t.csv").write_text("mine\n")
    proc = subprocess.run(
        [sys.executable, "-m", "emocli", "live", "-", "-o", str(out), "--name", "t", *model_args(models)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "exists" in proc.stderr
    assert (out / "t.csv").read_text() == "mine\n"


def test_help_teaches_in_words_with_every_default():
    from typer.testing import CliRunner

    from emocli.cli import app

    result = CliRunner().invoke(app, ["live", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert not re.search(r"<(bool|int|float|str|path|text)\b|float range|int range|<Path>", result.output)
    for option, default in [("--interval", "1.0"), ("--window", "2.0"), ("--timeout", "10.0"), ("--retries", "3")]:
        assert re.search(rf"{option}\s.*\n?.*default: {re.escape(default)}", result.output), option
    assert "until the stream ends or Ctrl-C" in result.output


def test_an_analysis_slower_than_the_stream_skips_to_stay_live_and_says_so_once(stream, models, tmp_path, monkeypatch):
    """Each interval's analysis made to take 1.4 s of a 1 s interval: the run must jump
    ahead rather than drift, so the lag stays bounded, and say so once."""
    from emocli.live import LiveOptions, run_live
    from emocli.pipeline import AnalyzeOptions, Analyzer

    step = Analyzer.step

    def slow(self, *args, **kwargs):
        time.sleep(1.4)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Analyzer, "step", slow)
    warnings: list[str] = []
    lines: list[str] = []
    summary = run_live(
        str(stream),
        tmp_path / "out",
        AnalyzeOptions(**models),
        LiveOptions(name="t", duration=SECONDS - 2),  # stops before the stream ends: nothing skips at its end
        echo=lines.append,
        warn=warnings.append,
    )
    behind = [w for w in warnings if "behind the stream" in w]
    assert len(behind) == 1, warnings
    assert summary["skipped"] >= 1 and summary["intervals"] + summary["skipped"] <= SECONDS - 2
    # Taken at most an interval after all it needs was there (its frames, then the audio window
    # reaching 0.5 s past its end), then analysed: no drift, whatever the stream's length.
    audio_wait = AnalyzeOptions().window / 2 - INTERVAL / 2
    assert summary["lag_max_s"] <= audio_wait + INTERVAL + 1.4 + 0.8, lines
    with open(tmp_path / "out" / "t.csv", newline="", encoding="utf-8") as f:
        starts = sorted({float(r["t_start"]) for r in csv.DictReader(f)})
    assert len(starts) == summary["intervals"] and starts != [i * INTERVAL for i in range(len(starts))]


def test_the_frame_buffer_keeps_the_analysed_frames_whole_and_every_frame_grey():
    """On a 12 fps grid sampled every 4th frame (2, 6, 10, ...): those come back whole from
    ``at``; every frame comes back grey, shrunk to 360 px, from ``between``, in time order;
    the oldest leave first."""
    import numpy as np

    frames = FrameBuffer(12.0, keep=8, sampled=4, grey_side=360)

    def put(n: int) -> None:
        frame = np.full((720, 1280, 3), n, np.uint8)
        frame[:, :, 2] = 3 * n  # red: the grey is a weighted sum, not one channel
        frames.put(n, frame)

    for n in range(8):
        put(n)
    whole = frames.at(6 / 12, reach=0.5)
    assert whole.shape == (720, 1280, 3) and whole[0, 0, 0] == 6
    assert frames.at(7 / 12, reach=0.5)[0, 0, 0] == 6  # the nearest analysed frame, never a grey one
    grey = frames.between(2 / 12, 6 / 12)
    assert [round(b.pts * 12) for b in grey] == [3, 4, 5, 6]
    assert all(b.image.shape == (360, 640) and b.scale == 2.0 for b in grey)
    assert grey[-1].image[0, 0] == round(0.299 * 18 + 0.587 * 6 + 0.114 * 6)
    for n in range(8, 24):
        put(n)
    assert frames.until == 2.0
    assert [round(b.pts * 12) for b in frames.between(-1.0, 2.0)] == list(range(16, 24))
    assert [n for n, _ in frames.take(1.0)] == [2, 6, 10]
    assert frames.at(1 / 12, reach=0.1) is None


def test_a_camera_without_sound_is_read_on_the_sampling_grid_alone(models, tmp_path):
    """Nobody speaks on a camera (opened without sound), so no frames between the samples
    are decoded or kept for who speaks; a stream with sound gets them."""
    import numpy as np

    from emocli.live import Live, LiveOptions
    from emocli.pipeline import AnalyzeOptions, Analyzer

    with Analyzer(AnalyzeOptions(**models)) as analyzer:
        cam = Live(camera(0, "linux"), tmp_path / "c.csv", analyzer, LiveOptions(), print, print)
        url = Live(parse_source("rtsp://cam.local/s"), tmp_path / "u.csv", analyzer, LiveOptions(), print, print)
    assert cam.rate == 2 * cam.per_interval / cam.interval  # the sample times, nothing between
    assert url.rate >= 15 and url.rate % cam.rate == 0
    shots = {}
    for live in (cam, url):
        for n in range(int(2 * live.rate)):
            live.frames.put(n, np.zeros((480, 640, 3), np.uint8))
        live.shot(0.5)
        shots[live] = live.shot(1.5)
    assert shots[cam] is not None and shots[cam].recent is None
    assert len(shots[url].recent) >= 15  # at least 15 a second since the last shot


def test_the_live_picture_tags_a_face_as_process_does_its_own_emotion_and_the_speakers_fused():
    """The box takes the colour of the face's own emotion; only the speaker's tag adds the
    fused one, so a listener is never shown the speaker's voice."""
    import numpy as np

    from emocli.labels import LABELS
    from emocli.live_outputs import draw
    from emocli.outputs import COLOURS, face_tag
    from emocli.timeline import Emotion, FaceResult, Row

    def emotion(label):
        return Emotion.of([0.7 if k == label else 0.05 for k in LABELS])

    speaker = FaceResult(0, (20, 20, 60, 60), 0.9, emotion("sad"), speaking=True)
    listener = FaceResult(1, (120, 20, 60, 60), 0.9, emotion("surprise"), speaking=False)
    rows = [
        Row("s", 0.0, 1.0, speaker, True, emotion("happy"), emotion("happy")),
        Row("s", 0.0, 1.0, listener, True, emotion("happy"), emotion("surprise")),
    ]
    assert face_tag(rows[0]) == ("sad", "#0 sad 70% - speaks - fused happy 70%")
    assert face_tag(rows[1]) == ("surprise", "#1 surprise 70%")
    out = draw(np.zeros((200, 200, 3), np.uint8), rows)
    for face, label in ((speaker, "sad"), (listener, "surprise")):
        x, y, w, h = face.box
        assert tuple(out[y + h // 2, x]) == tuple(reversed(COLOURS[label]))  # the box's left edge, BGR
        assert tuple(out[y - 2, x + 1]) == tuple(reversed(COLOURS[label]))  # the tag's patch above it


def test_ctrl_c_before_the_stream_opens_is_a_stop_not_a_traceback(monkeypatch, tmp_path):
    """A Ctrl-C while the heavy libraries import is held until they are in (onnxruntime's
    extension would turn it into an ImportError), and one while the models load stops live
    as any Ctrl-C does: exit 0, one line, nothing written."""
    from typer.testing import CliRunner

    import emocli.live
    from emocli.cli import _ctrl_c_after_imports, app

    went_on = []
    with pytest.raises(KeyboardInterrupt):
        with _ctrl_c_after_imports():
            os.kill(os.getpid(), signal.SIGINT)
            went_on.append(True)  # the imports finish first
    assert went_on == [True]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(emocli.live, "run_live", interrupted)
    result = CliRunner().invoke(app, ["live", "0", "-o", str(tmp_path / "out")])
    assert (
        result.exit_code == 0 and result.output.strip() == "stopped by Ctrl-C before the stream opened: nothing written"
    )
    assert not (tmp_path / "out").exists()
