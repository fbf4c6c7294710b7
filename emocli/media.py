"""Video and audio I/O with the bundled ffmpeg and OpenCV: probe, frames, audio, encode.

Every ffmpeg runs in its own process group: a terminal's Ctrl-C reaches emocli alone,
which stops its ffmpegs itself, after it has decided what to keep.

Everything streams: frames are decoded once, in order, and only the sampled ones are
kept; audio is read from one ffmpeg pipe with a bounded buffer. Memory therefore
depends on the interval and window, never on the length of the video.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
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
    path: Path
    duration: float  # seconds; 0.0 when the container does not say
    has_video: bool
    has_audio: bool
    width: int = 0  # as displayed, after rotation
    height: int = 0
    fps: float = 0.0
    rotation: int = 0
    video_start: float = 0.0  # the video stream's start_time (seconds): frame times count from it
    audio_codec: str = ""  # of the first audio stream, as ffmpeg names it (aac, mp3, pcm_s16le, ...)


_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: (.*)")
_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: (\w*)")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_FPS = re.compile(r"([\d.]+) (?:fps|tbr)")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")
_START = re.compile(r"\bstart (-?[\d.]+)")
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
    """Streams, size, rate, rotation and duration, from ffmpeg's own reading of the file."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(_not_a_file(path))
    if not os.access(path, os.R_OK):
        raise MediaError("permission denied")
    if path.stat().st_size == 0:
        raise MediaError("empty file (0 bytes)")
    proc = subprocess.run(
        [ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, text=True, errors="replace"
    )
    err = proc.stderr
    if "Stream #" not in err:
        raise MediaError(f"not a readable media file ({_ffmpeg_error(path, err)})")
    m = _DURATION.search(err)
    duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else 0.0
    audio = _AUDIO.search(err)
    has_audio, audio_codec = audio is not None, audio.group(1) if audio else ""
    video = [v for v in _VIDEO.findall(err) if "attached pic" not in v]
    if not video:
        return MediaInfo(path, duration, False, has_audio, audio_codec=audio_codec)
    size = _SIZE.search(video[0])
    width, height = (int(size.group(1)), int(size.group(2))) if size else (0, 0)
    fps = _FPS.search(video[0])
    rot = _ROTATION.search(err)
    rotation = int(round(float(rot.group(1)))) % 360 if rot else 0
    if rotation in (90, 270):
        width, height = height, width
    start = _START.search(video[0])
    return MediaInfo(path, duration, True, has_audio, width, height, float(fps.group(1)) if fps else 0.0, rotation,
                     float(start.group(1)) if start else 0.0, audio_codec)  # fmt: skip


def _audio_command(path: str | Path, sample_rate: int) -> list[str]:
    """ffmpeg: the first audio track, mono float32 at ``sample_rate``, on stdout."""
    return [ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path),
            "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]  # fmt: skip


def read_audio(path: str | Path, sample_rate: int = 16_000) -> np.ndarray:
    """The whole first audio track as mono float32 at ``sample_rate`` (for short clips)."""
    proc = subprocess.run(_audio_command(path, sample_rate), capture_output=True, process_group=0)
    if proc.returncode != 0:
        raise MediaError(_ffmpeg_error(Path(path), proc.stderr.decode(errors="replace")))
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


class AudioStream:
    """Windows of the audio track, read from one ffmpeg pipe, for increasing centre times.

    Only the samples that a later window can still need are kept, so memory is bounded
    by the window and the step between centres.
    """

    CHUNK = 1 << 16  # bytes per read

    def __init__(self, path: str | Path, sample_rate: int = 16_000):
        self.sample_rate = sample_rate
        self._proc = subprocess.Popen(
            _audio_command(path, sample_rate), stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0
        )
        self._buf = np.zeros(0, np.float32)
        self._start = 0  # sample index of _buf[0]
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
            chunk = np.frombuffer(data[:usable], np.float32)
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
        drop = max(0, begin - self._start)
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


class FrameReader:
    """Decoded frames (BGR, rotation applied) at requested times, in one forward pass."""

    # Past this gap, seeking to the next sample beats decoding everything in between.
    SEEK_GAP_S = 5.0

    def __init__(self, path: str | Path):
        import cv2

        _quiet_opencv(cv2)
        self._cv2 = cv2
        self.cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not self.cap.isOpened():
            raise MediaError("no decodable video stream")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 0.0

    def frames_at(self, times: list[float]) -> Iterator[tuple[float, np.ndarray | None]]:
        """Yield ``(t, frame)`` for each time: the first frame shown at or after ``t``.

        The first time past the last frame yields the last decoded frame once more;
        later ones yield None (a truncated file has no faces where it has no frames).
        """
        cv2 = self._cv2
        half_frame = 0.5 / self.fps if self.fps > 0 else 0.02
        last_frame, last_ts = None, -1.0
        for t in times:
            if last_ts >= 0 and t - last_ts > self.SEEK_GAP_S:
                self.cap.set(cv2.CAP_PROP_POS_MSEC, max(0.0, (t - 1.0)) * 1000.0)
            frame = None
            while True:
                if not self.cap.grab():
                    break
                ts = self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                last_ts = ts
                if ts + half_frame >= t:
                    ok, frame = self.cap.retrieve()
                    if ok:
                        last_frame = frame
                    break
            if frame is None:
                # Past the end: the last frame stands for the first such time only (the
                # final, partial interval); later ones (a truncated file) get no frame.
                yield t, last_frame
                last_frame = None
            else:
                yield t, frame

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

    ffmpeg decodes in its own threads, picks the sampled frames with a ``select``
    expression that runs FrameReader's rule (per time, the next frame whose timestamp
    plus half a frame reaches it; at least one new frame per time), converts only those
    to BGR and pipes them here, where a thread reads ahead while the caller works. The
    frames are the ones FrameReader picks; decoding costs what ``ffmpeg -i X -f null -``
    costs, about half of OpenCV's ``grab`` loop, and overlaps with the caller.

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

    def __init__(self, path: str | Path, info: MediaInfo, fps: float, skip: str = "noref", threads: int = 0):
        self.path, self.info, self.fps, self.skip, self.threads = Path(path), info, fps, skip, threads
        self._proc: subprocess.Popen | None = None
        self._err = None
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

    def _select(self, times: list[float]) -> str:
        first, step = self.grid(times)  # type: ignore[misc]
        n, half = len(times), 0.5 / self.fps if self.fps > 0 else 0.02
        # Registers: 0 = index of the next time; 1 = that time; 2 = whether this frame is taken.
        return (
            f"st(1,if(lt(ld(0),{n - 1}),{first!r}+ld(0)*{step!r},{times[-1]!r}));"
            f"st(2,lt(ld(0),{n})*gte(t-({self.info.video_start!r})+{half!r},ld(1)));"
            "st(0,ld(0)+ld(2));ld(2)"
        )

    def frames_at(self, times: list[float]) -> Iterator[tuple[float, np.ndarray | None]]:
        """As ``FrameReader.frames_at``; ``times`` must pass ``grid``."""
        times = list(times)
        if not times:
            return
        w, h = self.info.width, self.info.height
        threads = ["-threads", str(self.threads)] if self.threads > 0 else []
        cmd = [ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-copyts", "-skip_frame:v", self.skip, *threads,
               "-i", str(self.path), "-map", "0:v:0",
               "-vf", f"select='{self._select(times)}'", "-fps_mode", "passthrough", "-pix_fmt", "bgr24",
               "-f", "rawvideo", "-"]  # fmt: skip
        self._err = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err, process_group=0)
        frames: queue.Queue = queue.Queue(self.AHEAD)
        self._thread = threading.Thread(target=self._read, args=(self._proc, w, h, len(times), frames), daemon=True)
        self._thread.start()
        last, done = None, False
        for i, t in enumerate(times):
            frame = None if done else frames.get()
            if frame is None and i == 0 and self._proc.wait() != 0:
                # ffmpeg could not decode what OpenCV opened: let OpenCV do it all.
                with FrameReader(self.path) as reader:
                    yield from reader.frames_at(times)
                return
            if frame is None:  # past the last frame: as FrameReader, the last one once, then none
                done = True
                yield t, last
                last = None
                continue
            last = frame
            yield t, frame

    def _read(self, proc: subprocess.Popen, w: int, h: int, n: int, out: queue.Queue) -> None:
        size = w * h * 3
        try:
            for _ in range(n):
                frame = np.empty((h, w, 3), np.uint8)
                view, got = memoryview(frame).cast("B"), 0
                while got < size:
                    k = proc.stdout.readinto(view[got:])
                    if not k:
                        break
                    got += k
                if got < size:
                    break
                if not self._put(out, frame):
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
            self._proc.stdout.close()
        if self._err is not None:
            self._err.close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FrameSampler:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def frame_sampler(info: MediaInfo, times: list[float], threads: int = 0) -> FrameReader | FrameSampler:
    """The cheaper reader of ``info.path`` for these times: FrameSampler (decoding on
    ``threads``) for an even grid with steps within FrameReader's seek gap, else
    FrameReader (which seeks across long gaps)."""
    g = FrameSampler.grid(times)
    w, h = info.width, info.height
    # Odd sizes: ffmpeg's and OpenCV's colour conversions differ at chroma edges; keep OpenCV's pixels.
    if g is None or g[1] > FrameReader.SEEK_GAP_S or w <= 0 or h <= 0 or w % 2 or h % 2:
        return FrameReader(info.path)
    if info.fps > 0:
        return FrameSampler(info.path, info, info.fps, threads=threads)
    reader = FrameReader(info.path)  # ffmpeg did not print a rate: OpenCV's reading of it
    if reader.fps <= 0:
        return reader
    reader.close()
    return FrameSampler(info.path, info, reader.fps, threads=threads)


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
                    crf: int = 23) -> None:  # fmt: skip
    """``source`` through the video ``filters`` into H.264 (yuv420p) MP4 with the source's
    audio, in one ffmpeg run: every frame kept with its timestamp, rotation applied.

    ``audio_codec`` is the source's (``MediaInfo.audio_codec``): one an MP4 holds is copied
    (encoding AAC was a tenth of an annotated video's time), another is encoded to AAC;
    None leaves the audio out. ``size`` (width, height as displayed), when known and even,
    drops the filter that pads odd sides for yuv420p (and copies every frame to do so).

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
           "-map", "0:v:0", "-vf", ",".join(chain)]  # fmt: skip
    if audio_codec is not None:
        copy = audio_codec in MP4_AUDIO
        cmd += ["-map", "0:a:0?", *(["-c:a", "copy"] if copy else ["-c:a", "aac", "-b:a", "128k"])]
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
