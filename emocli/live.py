"""``emocli live``: the analysis of ``emocli process``, interval by interval, on a stream as it arrives.

One ffmpeg reads the source (``media.stream``) into buffers keyed by stream time; this loop
takes each interval once its frames and its audio window are there, runs the same per-interval
step as a video file (``Analyzer.step``), appends the rows to ``OUT/<name>.csv`` and flushes
them. When the analysis falls behind (a slow machine, many faces), it jumps to the newest
complete interval rather than drifting, and says so once. It stops at ``--duration``, at the
end of the stream, or on SIGINT/SIGTERM, with every finished interval written.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .labels import LABELS
from .live_outputs import LiveCsv, LiveVideo, draw, fused_label
from .media.frames import Frame, FrameSampler
from .media.stream import KEEP_S, Arrivals, AudioBuffer, FrameBuffer, LiveSource, Source, has_display, parse_source
from .media.tools import MediaError
from .pipeline import AnalyzeOptions, Analyzer, _frame_times, _per_interval
from .timeline import Row

RETRY_WAIT_S = 1.0  # between a dropped stream and the next attempt to open it
OPENING_S = 5.0  # allowed on top of --timeout for a source's first data
MAX_FPS = 30.0  # the most frames a second ffmpeg sends


class LiveError(RuntimeError):
    """The source could not be opened or dropped for good: one line, exit status 1."""


@dataclass
class LiveOptions:
    duration: float | None = None  # seconds of stream to analyse; None: until it ends or a signal
    name: str | None = None  # OUT/<name>.csv; None: live-<start time, UTC>
    annotate: bool = False
    show: bool = False
    quiet: bool = False
    timeout: float = 10.0  # seconds without data after which the stream counts as dropped
    retries: int = 3  # reconnections after a drop (cameras and URLs)


def output_name(started: datetime, name: str | None) -> str:
    return name or f"live-{started:%Y%m%dT%H%M%SZ}"


class _Stop:
    """SIGINT and SIGTERM ask the loop to stop after the interval in hand (main thread only)."""

    def __init__(self):
        self.signum = 0
        self._previous = {}

    def __enter__(self) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)

    def __bool__(self) -> bool:
        return self.signum != 0


class Live:
    """One live run: the source, its buffers, the analysis loop and the outputs."""

    def __init__(
        self,
        source: Source,
        csv_path: Path,
        analyzer: Analyzer,
        live: LiveOptions,
        echo: Callable[[str], None],
        warn: Callable[[str], None],
    ):
        self.source, self.csv_path, self.analyzer, self.live = source, csv_path, analyzer, live
        self.echo, self.warn = echo, warn
        o: AnalyzeOptions = analyzer.options
        self.interval, self.window = o.interval, o.window
        self.sample_rate = analyzer.voice_model.sample_rate
        # The same frames per interval as a video file: an odd number, evenly spread, one in the middle.
        self.per_interval = len(_frame_times([(0.0, o.interval)], o.interval, _per_interval(o, 1e6))[0])
        # Sample times fall on odd multiples of half a sampling step: a grid of twice the
        # sampling rate holds them all exactly. Who speaks follows the mouths in the frames
        # between (grey, as a file's), so the grid is a multiple of that with at least
        # BETWEEN_RATE frames a second; a picture to watch keeps all of them whole. Where
        # the source is opened without sound nobody speaks, so no frames between.
        grid = 2 * self.per_interval / o.interval
        picture = live.annotate or live.show
        heard = not source.silent
        if grid > MAX_FPS:  # very short intervals: each sampled time gets the nearest of MAX_FPS frames a second
            self.rate, sampled = MAX_FPS, 1
        else:
            mult = max(1, math.ceil(FrameSampler.BETWEEN_RATE / grid)) if heard else 1
            self.rate, sampled = grid * mult, 1 if picture else 2 * mult
        # Frames from the interval in hand to the newest: an interval, the audio it waits for, and slack.
        keep_s = min(KEEP_S, 2 * o.interval + o.window / 2 + 2.0)
        keep = max(4, math.ceil(keep_s * self.rate))
        self.frames = FrameBuffer(self.rate, keep, sampled, FrameSampler.BETWEEN_SIDE if heard else 0)
        self.last_shot: float | None = None  # time of the last frame analysed: its mouths go up to there
        self.audio = AudioBuffer(self.sample_rate, int(KEEP_S * self.sample_rate))
        self.arrivals = {"video": Arrivals(), "audio": Arrivals()}
        self.conn: LiveSource | None = None
        self.skipped = 0
        self.intervals = 0
        self.faces: set[int] = set()
        self.lags: list[float] = []
        self.mass = np.zeros(len(LABELS))
        self.annotated: LiveVideo | None = None
        self.window_open = False
        self.last_rows: list[Row] = []
        self.heading = ""  # the first line, once the source is open

    # ------------------------------------------------------------ the source

    def open(self, offset: float = 0.0) -> str:
        """Connect at ``offset`` seconds of stream time; '' when data flows, else why not."""
        conn = LiveSource(self.source, self.frames, self.audio, self.arrivals, offset)
        self.conn = conn
        # ffmpeg reads a second or so of the stream before it sends anything (it finds out what
        # the streams are), and a server may take its time to answer.
        wait = self.live.timeout + OPENING_S
        deadline = time.monotonic() + wait
        while conn.packets == 0 and not conn.ended.is_set():
            if time.monotonic() > deadline:
                conn.close(f"no data for {wait:g} s")
                return conn.error
            if self.stop:
                return ""
            time.sleep(0.02)
        if conn.packets == 0 and conn.ended.is_set():
            return conn.error or "no audio or video stream"
        return ""

    def covered(self, final: bool = False) -> float:
        """Stream seconds that every stream the source has is there for; at its end (``final``),
        the longer one's (a video file's length)."""
        conn = self.conn
        ends = []
        if conn.has_video:
            ends.append(self.frames.until)
        if conn.has_audio:
            ends.append(self.audio.until)
        if not ends:
            return 0.0
        return max(ends) if final else min(ends)

    def arrived(self, t: float) -> float | None:
        """When (monotonic clock) the stream reached ``t`` seconds: every stream it has."""
        conn = self.conn
        walls = [
            self.arrivals[k].when(t) for k, there in (("video", conn.has_video), ("audio", conn.has_audio)) if there
        ]
        return None if not walls or None in walls else max(walls)

    # ------------------------------------------------------------ intervals

    def span(self, i: int) -> tuple[float, float]:
        end = (i + 1) * self.interval
        if self.live.duration is not None:
            end = min(end, self.live.duration)
        return i * self.interval, end

    def needs(self, i: int) -> float:
        """Stream seconds the interval ``i`` needs: its frames, and its audio window centred on its middle."""
        start, end = self.span(i)
        if not (self.conn.has_video or self.conn.has_audio):
            return math.inf  # a connection that never opened
        need = end if self.conn.has_video else 0.0
        if self.conn.has_audio:
            need = max(need, (start + end) / 2 + self.window / 2)
        return need

    def analyse(self, i: int, end_cap: float | None = None) -> list[dict]:
        start, end = self.span(i)
        if end_cap is not None:
            end = min(end, end_cap)
        ts = _frame_times([(start, end)], self.interval, self.per_interval)[0]
        shots = [(t, self.shot(t)) for t in ts] if self.conn.has_video else [(t, None) for t in ts]
        audio = None
        if self.conn.has_audio:
            centre, sr = (start + end) / 2, self.sample_rate
            begin = int(round(centre * sr)) - int(round(self.window * sr)) // 2
            audio = (self.audio.window(begin, int(round(self.window * sr))), begin)
        return self.analyzer.step(self.state, self.source.label, (start, end), shots, audio)

    def shot(self, t: float) -> Frame | None:
        """The frame sampled at ``t``, with the grey frames since the last one analysed (at
        most an interval back: after a skip or a reconnection, the mouths start afresh)."""
        frame = self.frames.at(t, self.interval / 2)
        if frame is None:
            return None
        after = t - self.interval if self.last_shot is None else max(self.last_shot, t - self.interval)
        shot = frame.view(Frame)
        shot.pts, shot.recent = t, tuple(self.frames.between(after, t)) or None
        self.last_shot = t
        return shot

    def emit(self, i: int, rows: list[Row], arrived: float | None) -> None:
        self.csv.write(rows)
        now = time.monotonic()
        lag = None if arrived is None else now - arrived
        if lag is not None:
            self.lags.append(lag)
        self.intervals += 1
        faces = [r.face for r in rows if r.face]
        self.faces.update(face.id for face in faces)
        for r in rows:
            if r.fused:
                self.mass += r.fused.p
        self.last_rows = rows
        if not self.live.quiet:
            start, end = rows[0].t_start, rows[0].t_end
            n = len(faces)
            who = f"{n} face{'s' * (n != 1)}" if n else "no face"
            voice = f", voice {rows[0].voice.label}" if rows[0].voice_active and rows[0].voice else ""
            late = f", lag {lag:.2f} s" if lag is not None else ""
            self.echo(f"{start:8.1f}-{end:.1f} s: {who}, {fused_label(rows)}{voice}{late}")

    def flush_frames(self, before: float, rows: list[Row] | None) -> None:
        """Frames before ``before`` s leave the buffer: into the annotated video (drawn with the
        interval's ``rows``, plain for an interval that was skipped)."""
        for n, frame in self.frames.take(before):
            if self.annotated is not None:
                t = n / self.rate
                self.annotated.write(n, draw(frame, rows, t) if rows else frame)

    def show(self) -> None:
        if not self.window_open:
            return
        import cv2

        frame = self.frames.newest()
        if frame is not None:
            cv2.imshow("emocli live", draw(frame, self.last_rows))
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27) or cv2.getWindowProperty("emocli live", cv2.WND_PROP_VISIBLE) < 1:
            self.stop.signum = self.stop.signum or signal.SIGINT

    def wait(self, seconds: float) -> None:
        if self.window_open:
            self.show()
        time.sleep(seconds)

    # ------------------------------------------------------------ the run

    def run(self) -> dict:
        with _Stop() as self.stop:
            return self._run()

    def _run(self) -> dict:
        error = self.open()
        if error:
            raise LiveError(f"cannot open {self.source.label}: {error}")
        if self.stop:  # before the source sent anything: nothing to write
            self.conn.close()
            return self.summary("")
        self.state = self.analyzer.stream(self.conn.has_audio)
        if not self.live.quiet:
            until = f" for {self.live.duration:g} s" if self.live.duration else ""
            self.echo(f"live: {self.source.label}{until}, {self.heading}")
        self.csv = LiveCsv(self.csv_path)
        try:
            return self._loop()
        finally:
            self.csv.close()
            if self.conn is not None:
                self.conn.close()
            if self.annotated is not None:
                self.annotated.close()
            if self.window_open:
                import cv2

                cv2.destroyAllWindows()

    def _start_picture(self) -> None:
        live, conn = self.live, self.conn
        if live.annotate and conn.has_video and self.annotated is None:
            self.annotated = LiveVideo(
                self.csv_path.with_suffix(".mp4"), conn.size, self.rate, self.audio if conn.has_audio else None
            )
        if live.show and not self.window_open:
            if not conn.has_video:
                self.warn("--show: the stream has no picture")
            elif not has_display():
                self.warn("--show: no display here (DISPLAY is not set); going on without the window")
            else:
                self.window_open = True
        live.show = False  # said once

    def _loop(self) -> dict:
        live = self.live
        error = ""
        i = 0
        attempts = 0
        said_behind = False
        self._start_picture()
        while not self.stop:
            if live.duration is not None and i * self.interval >= live.duration - 1e-9:
                break
            conn = self.conn
            ended = conn.ended.is_set()
            final = ended and not conn.error  # the stream's end: what is there is all there will be
            covered = self.covered(final)
            need = self.needs(i)
            start, end = self.span(i)
            if covered >= need - 1e-9 or (final and covered > start + 0.1 * self.interval):
                # Behind: this interval has had all it needs for more than an interval and a later
                # one has too: jump to the newest such, so the rows stay live instead of drifting.
                # (Judged by what each needs, not by its end: an audio window reaching past the
                # end would otherwise make every short interval look late.)
                newest = i
                while self.needs(newest + 1) <= covered + 1e-9 and (
                    live.duration is None or (newest + 1) * self.interval < live.duration - 1e-9
                ):
                    newest += 1
                arrived = self.arrived(end)
                ready = self.arrived(min(need, covered))
                if newest > i and not ended and ready is not None and time.monotonic() - ready > self.interval:
                    if not said_behind:
                        self.warn(
                            f"the analysis is behind the stream: skipping to its newest interval to stay live "
                            f"(from {start:g} s; the run's end says how many were skipped)"
                        )
                        said_behind = True
                    self.skipped += newest - i
                    self.flush_frames(newest * self.interval, None)
                    i = newest
                    continue
                last = final and covered < end - 1e-9  # the shorter interval the stream ends in
                rows = self.analyse(i, covered if last else None)
                self.emit(i, rows, arrived)
                self.flush_frames(end, rows)
                i += 1
                attempts = 0
                if last:
                    break
                continue
            if ended or conn.stalled(live.timeout):
                reason = conn.error if ended else f"no data for {live.timeout:g} s"
                if not reason:
                    break  # the end of the stream
                if not self.source.retry or attempts >= live.retries:
                    conn.close()
                    error = reason
                    break
                attempts += 1
                conn.close()
                self.warn(
                    f"{self.source.label}: stream dropped ({reason}); reconnecting ({attempts} of {live.retries})"
                )
                dropped = time.monotonic()
                self.wait(RETRY_WAIT_S)
                # Continue the timeline where the wall clock says the stream would be, at an interval's start.
                at = max(covered, i * self.interval) + (time.monotonic() - conn.last_packet)
                offset = math.ceil(at / self.interval - 1e-9) * self.interval
                again = self.open(offset)
                if again:
                    self.conn.ended.set()  # counts as another drop on the next pass
                    self.conn.error = again
                    continue
                self.warn(
                    f"{self.source.label}: reconnected after {time.monotonic() - dropped:.1f} s; "
                    f"the timeline goes on at {offset:g} s"
                )
                self.flush_frames(offset, None)
                i = max(i, round(offset / self.interval))
                continue
            self.wait(0.02)
        return self.summary(error)

    def summary(self, error: str) -> dict:
        k = int(np.argmax(self.mass)) if self.mass.sum() > 0 else -1
        return {
            "intervals": self.intervals,
            "skipped": self.skipped,
            "faces": len(self.faces),
            "dominant_emotion": LABELS[k] if k >= 0 else "",
            "lag_max_s": round(max(self.lags), 3) if self.lags else None,
            "lag_mean_s": round(float(np.mean(self.lags)), 3) if self.lags else None,
            "signal": self.stop.signum,
            "error": error,
        }


def run_live(
    source_text: str,
    out: Path,
    options: AnalyzeOptions,
    live: LiveOptions,
    echo: Callable[[str], None] = print,
    warn: Callable[[str], None] = print,
) -> dict:
    """Analyse ``source_text`` live into ``out``; returns the run's summary (intervals, skipped,
    faces, dominant_emotion, lags, signal, error, csv). Raises batch.UsageError for bad usage
    (exit 2), LiveError when the source cannot be opened (exit 1), ModelError for a bad model."""
    from threadpoolctl import threadpool_limits

    from .batch import UsageError, _check_out, check_models

    try:
        source = parse_source(source_text)
    except MediaError as e:
        if source_text.isdigit():
            raise LiveError(str(e)) from None
        raise UsageError(str(e)) from None
    _check_out(out)
    started = datetime.now(UTC)
    name = output_name(started, live.name)
    if Path(name).name != name or not name:
        raise UsageError(f"--name {name}: a file name, not a path (the folder is -o)")
    csv_path = out / f"{name}.csv"
    for target in [csv_path] + ([csv_path.with_suffix(".mp4")] if live.annotate else []):
        if target.exists() or target.is_symlink():
            raise UsageError(f"-o {out}: {target} exists; choose another --name or folder")
    check_models(options)
    out.mkdir(parents=True, exist_ok=True)
    with Analyzer(options) as analyzer, threadpool_limits(1, user_api="blas"):
        runner = Live(source, csv_path, analyzer, live, echo, warn)
        runner.heading = f"started {started:%Y-%m-%dT%H:%M:%SZ} (UTC) → {csv_path} (Ctrl-C stops)"
        summary = runner.run()
    summary.update(csv=str(csv_path), started=f"{started:%Y-%m-%dT%H:%M:%SZ}")
    return summary
