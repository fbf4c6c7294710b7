"""Video and audio I/O with the bundled ffmpeg and OpenCV: probe, frames, audio, encode.

Every ffmpeg runs in its own process group: a terminal's Ctrl-C reaches emocli alone,
which stops its ffmpegs itself, after it has decided what to keep.

Everything streams: frames are decoded once, in order, and only the sampled ones are
kept; audio is read from one ffmpeg pipe with a bounded buffer. Memory therefore
depends on the interval and window, never on the length of the video.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

VIDEO_EXTS = frozenset(".mp4 .mov .m4v .mkv .avi .webm .flv .wmv .mpg .mpeg .ts .3gp".split())


class MediaError(RuntimeError):
    """A file that cannot be read as media; the message is one readable line."""


@lru_cache(maxsize=1)
def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class MediaInfo:
    """What a file holds, on its presentation timeline: 0 is where the earliest of the
    streams analysed starts, and a stream that starts later is placed where it is seen or
    heard. The streams analysed are the default (else the first) video and audio ones."""

    path: Path
    duration: float  # seconds of media present, from its packets (not what a header claims)
    has_video: bool
    has_audio: bool
    width: int = 0  # as displayed, after rotation
    height: int = 0
    fps: float = 0.0
    rotation: int = 0
    video_start: float = 0.0  # the video stream's start (seconds, the file's own clock)
    audio_codec: str = ""  # of the audio stream analysed, as ffmpeg names it (aac, mp3, pcm_s16le, ...)
    origin: float = 0.0  # the file's clock at the timeline's 0: the earliest start of the streams analysed
    audio_start: float = 0.0  # the audio stream's start (seconds, the file's own clock)
    video_stream: int = -1  # index in the file of the video stream analysed (ffmpeg's -map 0:N)
    audio_stream: int = -1  # index of the audio stream analysed
    claimed: float = 0.0  # the duration the container's header states (0: none)

    @property
    def video_offset(self) -> float:
        """Where the video's first frame sits on the timeline."""
        return self.video_start - self.origin

    @property
    def audio_offset(self) -> float:
        """Where the audio's first sample sits on the timeline."""
        return self.audio_start - self.origin

    @property
    def note(self) -> str:
        """A word when the media ends well before its header says (a cut-short download or
        copy): what was there to decode, of what was claimed."""
        if self.claimed > self.duration + max(0.5, 0.005 * self.claimed):
            return f"decoded {self.duration:.1f} of {self.claimed:.1f} s"
        return ""


# The first line of ffmpeg's complaint that says what is wrong, without its path prefix.
_ERRORS = ("Invalid data found", "moov atom not found", "does not contain any stream", "Permission denied",
           "No such file", "End of file", "Invalid argument", "could not find codec parameters")  # fmt: skip


_PREFIX = re.compile(r"^(\[[^\]]*@ ?0x[0-9a-f]+\]\s*)+")


def _ffmpeg_error(path: Path, stderr: str) -> str:
    lines = [_PREFIX.sub("", ln.replace(str(path), "")).lstrip(": ").strip() for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln]
    for line in lines:
        if any(e in line for e in _ERRORS):
            return line
    return lines[-1] if lines else "unreadable"


def _not_a_file(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return f"broken symbolic link (to {os.readlink(path)})"
    if path.is_dir():
        return "a folder, not a file"
    if path.exists():  # never opened: a FIFO would block the batch until something writes to it
        kind = "a FIFO" if path.is_fifo() else "a socket" if path.is_socket() else "a device"
        return f"not a regular file ({kind})"
    return "no such file"


def probe(path: str | Path) -> MediaInfo:
    """Streams, size, rate, rotation, start times and the media's true duration, read as data
    with PyAV (libav's own reading of the file): the packets say where each stream starts
    and ends, whatever its header claims; the first frame says how to turn it upright."""
    import av

    path = Path(path)
    if not path.is_file():
        raise MediaError(_not_a_file(path))
    if not os.access(path, os.R_OK):
        raise MediaError("permission denied")
    if path.stat().st_size == 0:
        raise MediaError("empty file (0 bytes)")
    with _libav_errors() as logs:
        try:
            container = av.open(str(path), metadata_errors="ignore")
        except (av.FFmpegError, OSError) as e:
            messages = "\n".join(message for _, _, message in logs) + "\n" + str(e)
            raise MediaError(f"not a readable media file ({_ffmpeg_error(path, messages)})") from None
        try:
            return _facts(path, container)
        finally:
            container.close()


@contextlib.contextmanager
def _libav_errors():
    """libav's error messages of the block, kept (not printed): the one-line reason of a failure."""
    import av.logging

    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs:
            yield logs
    finally:
        av.logging.set_level(level)


def _preferred(streams: list):
    """The stream a player picks: the one marked default, else the first."""
    import av

    for s in streams:
        if s.disposition & av.stream.Disposition.default:
            return s
    return streams[0] if streams else None


def _seconds(value, time_base) -> float | None:
    return None if value is None or time_base is None else float(value * time_base)


def _facts(path: Path, container) -> MediaInfo:
    import av

    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    video, audio = _preferred(videos), _preferred(list(container.streams.audio))
    claimed = container.duration / 1e6 if container.duration and container.duration > 0 else 0.0
    spans, rotation = _scan(container, [s for s in (video, audio) if s is not None], video)
    # A stream whose packets are all gone (a truncated file) is not there to analyse.
    video = video if video is not None and video.index in spans else None
    audio = audio if audio is not None and audio.index in spans else None
    if video is None and audio is None:
        return MediaInfo(path, 0.0, False, False, claimed=claimed)
    starts, end = {}, max(spans[s.index][1] for s in (video, audio) if s is not None)
    for s in (video, audio):
        if s is not None:  # the header's start accounts for edit lists and encoder priming
            header = _seconds(s.start_time, s.time_base)
            starts[s.index] = header if header is not None else spans[s.index][0]
    origin = min(starts.values())
    info = dict(path=path, duration=max(0.0, end - origin), has_video=video is not None,
                has_audio=audio is not None, origin=origin, claimed=claimed)  # fmt: skip
    if audio is not None:
        codec = audio.codec_context.codec
        info.update(audio_codec=getattr(codec, "canonical_name", "") or codec.name, audio_start=starts[audio.index],
                    audio_stream=audio.index)  # fmt: skip
    if video is not None:
        width, height = video.codec_context.width, video.codec_context.height
        if rotation in (90, 270):
            width, height = height, width
        rate = video.average_rate or video.guessed_rate or video.base_rate
        info.update(width=width, height=height, fps=float(rate) if rate else 0.0, rotation=rotation,
                    video_start=starts[video.index], video_stream=video.index)  # fmt: skip
    return MediaInfo(**info)


def _scan(container, streams: list, video) -> tuple[dict[int, tuple[float, float]], int]:
    """Per stream index, where its packets start and end (seconds, the file's clock), read
    from every packet (a demux, no decoding: a header that lies about the length, or a
    file cut short, shows here); and the rotation of the video's first decodable frame."""
    import av

    first: dict[int, int] = {}  # per stream, in its own time base (integers: the scan's cost is per packet)
    last: dict[int, int] = {}
    rotation, tries = None if video is not None else 0, 0
    if video is not None:
        video.codec_context.thread_count = 1  # one frame wanted: no threads to start
    try:
        for packet in container.demux(*streams):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None or packet.size == 0 or packet.is_discard:
                continue
            i, end = packet.stream_index, stamp + (packet.duration or 0)
            if i not in first:
                first[i], last[i] = stamp, end
            elif stamp < first[i]:
                first[i] = stamp
            if end > last[i]:
                last[i] = end
            if rotation is None and i == video.index and tries < 64:
                tries += 1
                with contextlib.suppress(av.FFmpegError):
                    for frame in packet.decode():
                        rotation = int(round(frame.rotation)) % 360
                        break
    except (av.FFmpegError, OSError):
        pass  # damaged or cut short: the packets read so far are the media there is
    bases = {s.index: s.time_base for s in streams}
    spans = {i: (float(first[i] * bases[i]), float(last[i] * bases[i])) for i in first}
    return spans, rotation or 0


def _audio_command(path: str | Path, sample_rate: int, stream: int = -1) -> list[str]:
    """ffmpeg: audio stream ``stream`` (-1: the first), every channel mixed down to mono,
    float32 at ``sample_rate``, on stdout."""
    source = f"0:{stream}" if stream >= 0 else "0:a:0"
    return [ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path),
            "-map", source, "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]  # fmt: skip


def finite(samples: np.ndarray) -> np.ndarray:
    """``samples`` with NaN and infinite values (a broken float track) made silence."""
    if np.isfinite(samples).all():
        return samples
    return np.where(np.isfinite(samples), samples, np.float32(0))


def read_audio(path: str | Path, sample_rate: int = 16_000, stream: int = -1) -> np.ndarray:
    """The whole audio track (``stream``; -1: the first) as mono float32 at ``sample_rate``
    (for short clips), non-finite samples silenced."""
    proc = subprocess.run(_audio_command(path, sample_rate, stream), capture_output=True, process_group=0)
    if proc.returncode != 0:
        raise MediaError(_ffmpeg_error(Path(path), proc.stderr.decode(errors="replace")))
    return finite(np.frombuffer(proc.stdout, dtype=np.float32).copy())


class AudioStream:
    """Windows of the audio track, read from one ffmpeg pipe, for increasing centre times.

    Only the samples that a later window can still need are kept, so memory is bounded
    by the window and the step between centres. ``offset`` (seconds) is where the track's
    first sample lies on the timeline: before it, as past its end, there is silence.
    Non-finite samples (a broken float track) are silence too.
    """

    CHUNK = 1 << 16  # bytes per read

    def __init__(self, path: str | Path, sample_rate: int = 16_000, stream: int = -1, offset: float = 0.0):
        self.sample_rate = sample_rate
        self._proc = subprocess.Popen(
            _audio_command(path, sample_rate, stream), stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0
        )
        self._buf = np.zeros(0, np.float32)
        self._start = max(0, int(round(offset * sample_rate)))  # timeline sample index of _buf[0]
        self._eof = False
        self._pending = b""

    def _fill(self, until: int) -> None:
        parts = [self._buf]
        have = self._start + len(self._buf)
        while have < until and not self._eof:
            data = self._pending + self._proc.stdout.read(self.CHUNK)
            if len(data) == len(self._pending):
                self._eof = True
                break
            usable = len(data) - len(data) % 4
            self._pending = data[usable:]
            chunk = finite(np.frombuffer(data[:usable], np.float32))
            parts.append(chunk)
            have += len(chunk)
        if len(parts) > 1:
            self._buf = np.concatenate(parts)

    def window(self, center: float, seconds: float) -> np.ndarray:
        """Samples of [center - seconds/2, center + seconds/2], zero-padded past the ends."""
        n = int(round(seconds * self.sample_rate))
        begin = int(round(center * self.sample_rate)) - n // 2
        end = begin + n
        self._fill(end)
        out = np.zeros(n, np.float32)
        lo, hi = max(begin, self._start), min(end, self._start + len(self._buf))
        if hi > lo:
            out[lo - begin : hi - begin] = self._buf[lo - self._start : hi - self._start]
        # Windows only move forward: what lies before this one is never needed again.
        drop = min(len(self._buf), max(0, begin - self._start))
        if drop:
            self._buf = self._buf[drop:]
            self._start += drop
        return out

    @property
    def samples_read(self) -> int:
        return self._start + len(self._buf)

    def close(self) -> str:
        """Stop ffmpeg; returns its error text, if it had one."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
        self._proc.stdout.close()
        self._proc.stderr.close()
        return err.strip()

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _quiet_opencv(cv2) -> None:
    """Keep OpenCV's decoder chatter (``[h264 @ 0x..] error while decoding``) off stderr.

    A damaged file is reported once, as one line, by the batch; the decoder would
    otherwise print a line per bad packet. The ffmpeg level is read at the first
    capture of the process; a value the user set is kept.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "0")  # AV_LOG_PANIC
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _pick(times: list[float], frames: Iterator[tuple[float, np.ndarray]], tol: float, reach: float,
          period: float, late: float | None = None, end: float = math.inf,
          ) -> Iterator[tuple[float, np.ndarray | None]]:  # fmt: skip
    """Match decoded ``frames`` ((timeline time, image), in time order) to ``times``.

    Each time gets the first frame at or after it (less ``tol``, half a frame, for
    timestamps that jitter), if it comes within ``late`` (default ``tol``; more where the
    decoder skips frames no other refers to): the frames the decoders below pass on.
    Where no frame is that
    close (a gap: before a late-starting video, after a video that ends early, between the
    frames of a slide show), the frame still on screen (shown for ``period`` seconds) is
    used; with a low frame rate (``period`` of at least ``reach``), else the nearest frame
    within ``reach`` (half an interval); else None: nothing was shown then. A time past
    the media's ``end`` (in a final interval shorter than the sampling step) gets the
    last frame, if that is within ``reach`` of the end.
    """
    prev, cand = None, next(frames, None)
    low = period >= reach > 0
    late = tol if late is None else late
    for t in times:
        while cand is not None and cand[0] < t - tol:
            prev, cand = cand, next(frames, None)
        if cand is not None and cand[0] <= t + late:
            yield t, cand[1]
        elif prev is not None and t < prev[0] + period + tol:
            yield t, prev[1]
        elif low and (near := [f for f in (prev, cand) if f is not None and abs(f[0] - t) <= reach]):
            yield t, min(near, key=lambda f: abs(f[0] - t))[1]
        elif t >= end and cand is None and prev is not None and end - prev[0] <= reach:
            yield t, prev[1]
        else:
            yield t, None


def _tolerance(fps: float, reach: float) -> tuple[float, float]:
    """(rounding tolerance, frame period) for a stream at ``fps`` frames per second."""
    period = 1.0 / fps if fps > 0 else 0.04
    return min(0.5 * period, reach) if reach > 0 else 0.5 * period, period


class FrameReader:
    """Decoded frames (BGR, rotation applied) at requested times, in one forward pass, with OpenCV.

    ``offset`` is where the video's first frame lies on the timeline (a video that starts
    after the audio); ``reach`` is half the analysis interval (see ``_pick``).
    """

    # Past this gap, seeking to the next sample beats decoding everything in between.
    SEEK_GAP_S = 5.0

    def __init__(self, path: str | Path, offset: float = 0.0, reach: float = 0.0, end: float = math.inf):
        import cv2

        _quiet_opencv(cv2)
        self._cv2 = cv2
        self.offset, self.reach, self.end = offset, reach, end
        self.cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not self.cap.isOpened():
            raise MediaError("no decodable video stream")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 0.0

    def frames_at(self, times: list[float]) -> Iterator[tuple[float, np.ndarray | None]]:
        """Yield ``(t, frame)`` for each time, as ``_pick`` matches them."""
        times = list(times)
        tol, period = _tolerance(self.fps, self.reach)
        yield from _pick(times, self._candidates(times, tol), tol, self.reach, period, end=self.end)

    def _candidates(self, times: list[float], tol: float) -> Iterator[tuple[float, np.ndarray]]:
        """Per time, the first frame at or after it (less ``tol``), once; only those are converted."""
        cv2 = self._cv2
        k, last_ts = 0, -1.0
        tail = self.end - (FrameSampler.SKIP_GAP + 1) * (1.0 / self.fps if self.fps > 0 else 0.04)
        while k < len(times):
            if last_ts >= 0 and times[k] - last_ts > self.SEEK_GAP_S:
                self.cap.set(cv2.CAP_PROP_POS_MSEC, max(0.0, times[k] - self.offset - 1.0) * 1000.0)
            if not self.cap.grab():
                return
            ts = self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 + self.offset
            last_ts = ts
            if ts < times[k] - tol and not (ts >= tail and times[-1] >= tail):
                continue  # neither the first frame for a time nor one of the last (as FrameSampler's)
            ok, frame = self.cap.retrieve()
            while k < len(times) and times[k] <= ts + tol:
                k += 1  # the times this frame is the first one for
            if ok:
                yield ts, frame

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            ok, frame = self.cap.read()
            if not ok:
                return
            yield frame

    def close(self) -> None:
        self.cap.release()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FrameSampler:
    """``FrameReader.frames_at`` for an evenly spaced grid of times, from one ffmpeg process.

    ffmpeg decodes in its own threads, picks the candidate frames with a ``select``
    expression (per time, the first frame at or after it, less half a frame; a frame
    that is first for several times is passed once), converts only those to BGR and
    pipes them here with their exact timestamps (``-stats_enc_pre``, on a pipe of its
    own), where a thread reads ahead while the caller works and ``_pick`` matches them to
    the times. Decoding costs what ``ffmpeg -i X -f null -`` costs, about half of OpenCV's
    ``grab`` loop, and overlaps with the caller.

    ``skip`` is the decoder's discard level. The default, ``noref``, does not decode
    frames that no other frame refers to (most B-frames): nothing else changes, the
    sampled frame is at most a couple of frames later than FrameReader's, and an H.264
    talking-head video decodes in 0.7x the time. ``none`` gives FrameReader's frames
    exactly. ``bidir`` (every B-frame skipped, 0.35x) is not offered: x264 with B-pyramid
    lets P-frames refer to B-frames, and the demo video's I/P-frames then differ by up to
    200 grey levels.

    ``threads`` is ffmpeg's decoding threads (0: its own choice, one per core and more).
    The caller's analysis needs a core too: decoding threads beyond the cores left to them
    only take turns with it (benchmarks/floor.py: one thread on two cores, 1.33x decode
    against 1.42x in the same run).
    """

    AHEAD = 2  # decoded frames buffered ahead of the caller
    SKIP_GAP = 4  # frames in a row that skipping non-reference frames may leave out (x264: 3 B-frames)

    def __init__(self, path: str | Path, info: MediaInfo, fps: float, skip: str = "noref", threads: int = 0,
                 reach: float = 0.0):  # fmt: skip
        self.path, self.info, self.fps, self.skip, self.threads = Path(path), info, fps, skip, threads
        self.reach = reach
        self._proc: subprocess.Popen | None = None
        self._err = None
        self._stamps = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @staticmethod
    def grid(times: list[float]) -> tuple[float, float] | None:
        """``(first, step)`` when ``times[:-1]`` is evenly spaced and the last is not before it."""
        if len(times) < 2:
            return (times[0], 1.0) if times else None
        first, step = times[0], times[1] - times[0]
        if step <= 0 or times[-1] < times[-2]:
            return None
        for k, t in enumerate(times[:-1]):
            if abs(t - (first + k * step)) > 1e-9 * max(1.0, abs(t)):
                return None
        return first, step

    def _select(self, times: list[float], tol: float, tail: float) -> str:
        first, step = self.grid(times)  # type: ignore[misc]
        n = len(times)
        time = f"if(lt(ld(0),{n - 1}),{first!r}+ld(0)*{step!r},{times[-1]!r})"
        # The last frames too (from ``tail`` on) where the last time falls among them: the
        # one still on screen then may be one that no time came first for.
        last = f"+gte(ld(1),{tail!r})" if times[-1] >= tail else ""
        # Registers: 0 = index of the next time; 1 = this frame's timeline time; 2 = whether it is taken.
        return (
            f"st(1,t-({self.info.origin!r}));"
            f"st(2,gt(lt(ld(0),{n})*gte(ld(1)+{tol!r},{time}){last},0));"
            f"while(lt(ld(0),{n})*lte({time},ld(1)+{tol!r}),st(0,ld(0)+1));ld(2)"
        )

    def frames_at(self, times: list[float]) -> Iterator[tuple[float, np.ndarray | None]]:
        """As ``FrameReader.frames_at``; ``times`` must pass ``grid``."""
        times = list(times)
        if not times:
            return
        tol, period = _tolerance(self.fps, self.reach)
        tail = self.info.duration - (self.SKIP_GAP + 1) * period
        w, h = self.info.width, self.info.height
        threads = ["-threads", str(self.threads)] if self.threads > 0 else []
        source = f"0:{self.info.video_stream}" if self.info.video_stream >= 0 else "0:v:0"
        stamps_r, stamps_w = os.pipe()
        cmd = [ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-copyts", "-skip_frame:v", self.skip, *threads,
               "-i", str(self.path), "-map", source,
               "-vf", f"select='{self._select(times, tol, tail)}'", "-fps_mode", "passthrough", "-pix_fmt", "bgr24",
               "-stats_enc_pre_fmt", "{ptsi} {tbi}", "-stats_enc_pre", f"pipe:{stamps_w}",
               "-f", "rawvideo", "-"]  # fmt: skip
        self._err = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err, pass_fds=(stamps_w,),
                                          process_group=0)  # fmt: skip
        finally:
            os.close(stamps_w)
        self._stamps = os.fdopen(stamps_r, "rb")
        frames: queue.Queue = queue.Queue(self.AHEAD)
        self._thread = threading.Thread(target=self._read, args=(self._proc, w, h, frames), daemon=True)
        self._thread.start()
        first = frames.get()
        if first is None and self._proc.wait() != 0:
            # ffmpeg could not decode what OpenCV opened: let OpenCV do it all.
            with FrameReader(self.path, self.info.video_offset, self.reach, self.info.duration) as reader:
                yield from reader.frames_at(times)
            return

        def decoded() -> Iterator[tuple[float, np.ndarray]]:
            item = first
            while item is not None:
                yield item
                item = frames.get()

        # Skipped frames (noref) leave gaps of a few frames: the next decoded one stands in.
        late = tol if self.skip == "none" else max(tol, min(self.SKIP_GAP * period, self.reach or 1.0))
        yield from _pick(times, decoded(), tol, self.reach, period, late, self.info.duration)

    def _read(self, proc: subprocess.Popen, w: int, h: int, out: queue.Queue) -> None:
        size = w * h * 3
        origin = Fraction(self.info.origin).limit_denominator(1 << 40)
        try:
            while True:
                frame = np.empty((h, w, 3), np.uint8)
                view, got = memoryview(frame).cast("B"), 0
                while got < size:
                    k = proc.stdout.readinto(view[got:])
                    if not k:
                        break
                    got += k
                if got < size:
                    break
                stamp = self._stamps.readline().split()
                try:  # the frame's timestamp in its stream's time base, as ffmpeg had it
                    t = float(int(stamp[0]) * Fraction(stamp[1].decode()) - origin)
                except (IndexError, ValueError, ZeroDivisionError):
                    break  # no timestamp (NOPTS): such frames cannot be placed
                if not self._put(out, (t, frame)):
                    return
        finally:
            self._put(out, None)

    def _put(self, out: queue.Queue, item) -> bool:
        """Hand ``item`` to the caller unless ``close`` comes first; False when it did."""
        while not self._stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        self._stop.set()
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
        if self._thread is not None:
            self._thread.join()  # it sees the end of ffmpeg's output, or the stop
        if self._proc is not None:
            self._proc.stdout.close()
        if self._stamps is not None:
            self._stamps.close()
        if self._err is not None:
            self._err.close()

    def __enter__(self) -> FrameSampler:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def frame_sampler(info: MediaInfo, times: list[float], threads: int = 0, reach: float = 0.0):
    """The cheaper reader of ``info.path`` for these times: FrameSampler (decoding on
    ``threads``) for an even grid with steps within FrameReader's seek gap, else
    FrameReader (which seeks across long gaps). ``reach``: half the analysis interval,
    how far a low-frame-rate video's nearest frame may be used (``_pick``)."""
    g = FrameSampler.grid(times)
    w, h = info.width, info.height
    # Odd sizes: ffmpeg's and OpenCV's colour conversions differ at chroma edges; keep OpenCV's pixels.
    if g is None or g[1] > FrameReader.SEEK_GAP_S or w <= 0 or h <= 0 or w % 2 or h % 2:
        return FrameReader(info.path, info.video_offset, reach, info.duration)
    if info.fps > 0:
        return FrameSampler(info.path, info, info.fps, _skip(info.fps, reach), threads, reach)
    reader = FrameReader(
        info.path, info.video_offset, reach, info.duration
    )  # libav did not say the rate: OpenCV's reading of it
    if reader.fps <= 0:
        return reader
    reader.close()
    return FrameSampler(info.path, info, reader.fps, _skip(reader.fps, reach), threads, reach)


def _skip(fps: float, reach: float) -> str:
    """The decoder's discard level: ``noref`` where the frames it leaves out are close
    together, ``none`` where each frame stands for a good part of an interval (a low rate)."""
    return "noref" if reach <= 0 or FrameSampler.SKIP_GAP / fps <= reach else "none"


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def decoder_threads(cores: int | None = None) -> int:
    """ffmpeg threads for a video's frames while its analysis runs beside them on ``cores``
    (default: the usable cores): all but the one the analysis needs, at least one."""
    return max(1, (usable_cores() if cores is None else cores) - 1)


def filter_arg(value: str) -> str:
    """``value`` escaped for use as an option value inside an ffmpeg filtergraph."""
    for ch in "\\':":  # the option level
        value = value.replace(ch, "\\" + ch)
    for ch in "\\'[],;":  # the graph level
        value = value.replace(ch, "\\" + ch)
    return value


# Audio codecs an MP4 holds as they are: copied, they cost nothing and lose nothing.
MP4_AUDIO = frozenset(["aac", "mp3", "alac"])


def render_filtered(source: str | Path, out: str | Path, filters: list[str], commands: str = "",
                    audio_codec: str | None = "aac", size: tuple[int, int] | None = None, preset: str = "ultrafast",
                    crf: int = 23, streams: tuple[int, int] = (-1, -1)) -> None:  # fmt: skip
    """``source`` through the video ``filters`` into H.264 (yuv420p) MP4 with the source's
    audio, in one ffmpeg run: every frame kept with its timestamp, rotation applied.

    ``audio_codec`` is the source's (``MediaInfo.audio_codec``): one an MP4 holds is copied
    (encoding AAC was a tenth of an annotated video's time), another is encoded to AAC;
    None leaves the audio out. ``size`` (width, height as displayed), when known and even,
    drops the filter that pads odd sides for yuv420p (and copies every frame to do so).

    ``streams`` are the indexes of the video and audio streams to use (``MediaInfo``'s, the
    ones analysed; -1: the first of each).

    ``commands`` is a ``sendcmd`` script (``TIME [enter] filter@name option value, ...;``)
    that changes the filters' options as the video plays, so a drawing that changes once
    per interval costs a few filters, not a filter per interval nor a blended full-frame
    overlay (which doubled the cost of encoding).
    """
    chain = list(filters)
    script = None
    if commands:
        fd, script = tempfile.mkstemp(prefix="emocli-cmds-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(commands)
        chain.insert(0, f"sendcmd=f={filter_arg(script)}")
    if size is None or size[0] % 2 or size[1] % 2:
        chain.append("pad=ceil(iw/2)*2:ceil(ih/2)*2")
    # x264 threads itself, and decoding is about a fifth of a transcode's CPU: decoding threads
    # beyond that share of the cores only add overhead (two cores: one thread, 7 % faster;
    # benchmarks/README.md).
    threads = str(max(1, usable_cores() // 4))
    cmd = [ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-threads", threads, "-i", str(source),
           "-map", f"0:{streams[0]}" if streams[0] >= 0 else "0:v:0", "-vf", ",".join(chain)]  # fmt: skip
    if audio_codec is not None:
        copy = audio_codec in MP4_AUDIO
        cmd += ["-map", f"0:{streams[1]}" if streams[1] >= 0 else "0:a:0?",
                *(["-c:a", "copy"] if copy else ["-c:a", "aac", "-b:a", "128k"])]  # fmt: skip
        if audio_codec.startswith("pcm_f"):  # float PCM may hold NaN or infinities: AAC refuses them
            cmd += ["-af", "aeval=exprs=if(isnan(val(ch))+isinf(val(ch))\\,0\\,val(ch)):c=same"]
    cmd += ["-fps_mode", "passthrough", "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", "-f", "mp4", str(out)]  # fmt: skip
    try:
        proc = subprocess.run(cmd, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, process_group=0)
    finally:
        if script is not None:
            os.unlink(script)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise MediaError(f"encoding failed: {err.splitlines()[-1] if err else 'ffmpeg error'}")
