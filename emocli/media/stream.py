"""A live source (camera, network stream, standard input, or a file played at its own pace)
read by one bundled ffmpeg into buffers keyed by stream time.

ffmpeg decodes the source and sends raw frames (BGR, at a fixed rate, timestamps kept) and
16 kHz mono float audio interleaved in one NUT stream on its stdout; a thread demuxes it
with PyAV (no decoding: both are raw) into a frame buffer and an audio buffer, and notes
when each stream time arrived. NUT carries whichever streams the source has, so a source
without sound (a camera) needs no special command. Memory is bounded: only the last
``KEEP_S`` seconds are kept.

Times are seconds from the stream's start: ffmpeg places the first packet at 0, the audio
is padded with silence to begin there too, and a reconnection continues at ``offset``.
"""

from __future__ import annotations

import bisect
import collections
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import FILL_GAPS, MonoSamples
from .frames import Between, shrunk_size
from .tools import MediaError, ffmpeg

KEEP_S = 20.0  # seconds of frames and audio kept behind the newest


@dataclass(frozen=True)
class Source:
    """What ``emocli live`` reads: ``args`` are ffmpeg's input options and input, ``label``
    is how rows and messages name it (a URL without its password), ``kind`` is camera,
    url, stdin or file."""

    args: tuple[str, ...]
    label: str
    kind: str
    # ffmpeg's -map of the video and the audio read: a file's are the streams `emocli process`
    # analyses (those marked default); of another source, the first of each, if any.
    maps: tuple[str, str] = ("0:v:0?", "0:a:0?")

    @property
    def retry(self) -> bool:
        """Whether a source that stops can be opened again (a pipe or a file cannot)."""
        return self.kind in ("camera", "url")

    @property
    def silent(self) -> bool:
        """Whether it is opened without sound: a camera (``camera`` asks for its video alone)."""
        return self.kind == "camera"


URL = re.compile(r"^(rtsp|rtsps|rtmp|rtmps|http|https|udp|srt|tcp|rtp|hls)://", re.IGNORECASE)


def parse_source(text: str, platform: str = sys.platform) -> Source:
    """SOURCE as the user wrote it: a camera index (``0``), a stream URL, ``-`` (stdin), or a
    media file (played at its own pace, as a stream would arrive)."""
    if text == "-":
        return Source(("-i", "pipe:0"), "stdin", "stdin")
    if text.isdigit():
        return camera(int(text), platform)
    if platform == "win32" and text.startswith("video="):
        return Source(("-f", "dshow", "-i", text), f"camera {text[6:]}", "camera")
    if URL.match(text):
        return Source(("-i", text), _without_password(text), "url")
    path = Path(text)
    if not path.is_file():
        what = "no such file" if not path.exists() else "not a file"
        raise MediaError(f"{text}: {what} (nor a camera index, a stream URL such as rtsp://, http://, udp://, or -)")
    from .probing import probe

    try:
        info = probe(path)
    except MediaError as e:
        raise MediaError(f"{text}: {e}") from e
    maps = tuple(
        f"0:{i}" if i >= 0 else default for i, default in zip((info.video_stream, info.audio_stream), Source.maps)
    )
    return Source(("-re", "-i", str(path)), text, "file", maps)


def camera(index: int, platform: str = sys.platform) -> Source:
    """The camera ``index`` through the platform's capture API: v4l2 (/dev/videoN) on Linux,
    AVFoundation on macOS. DirectShow (Windows) names cameras: ``video=NAME``."""
    if platform.startswith("linux"):
        return Source(("-f", "v4l2", "-i", f"/dev/video{index}"), f"camera {index}", "camera")
    if platform == "darwin":
        return Source(("-f", "avfoundation", "-framerate", "30", "-i", f"{index}:none"), f"camera {index}", "camera")
    if platform == "win32":
        raise MediaError(
            'on Windows give the camera by name: emocli live "video=NAME" '
            "(ffmpeg -list_devices true -f dshow -i dummy lists the names)"
        )
    raise MediaError(f"cameras are not supported on {platform}; stream the camera with ffmpeg and read the URL")


def _without_password(url: str) -> str:
    return re.sub(r"^([a-z]+://)[^@/]*@", r"\1", url, flags=re.IGNORECASE)


class FrameBuffer:
    """Frames by index on a grid of ``rate`` per second (frame ``n`` is at ``n / rate`` s).

    Of every ``sampled`` frames one is kept whole (``n % sampled == sampled // 2``: the
    analysed ones; 1: all), up to ``keep`` of them. With ``grey_side``, every frame is also
    kept grey and shrunk to at most that many pixels on its shorter side, the last ``keep``
    of them: the mouths between the analysed frames, for who speaks (``between``).
    """

    def __init__(self, rate: float, keep: int, sampled: int = 1, grey_side: int = 0):
        self.rate = rate
        self._frames: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._grey: collections.OrderedDict[int, Between] = collections.OrderedDict()
        self._keep, self._sampled, self._grey_side = keep, max(1, sampled), grey_side
        self._lock = threading.Lock()
        self.until = 0.0  # stream seconds covered: the end of the newest frame

    def put(self, n: int, frame: np.ndarray) -> None:
        grey = Between(n / self.rate, *_grey(frame, self._grey_side)) if self._grey_side else None
        with self._lock:
            if n % self._sampled == self._sampled // 2:
                self._frames[n] = frame
                while len(self._frames) > self._keep:
                    self._frames.popitem(last=False)
            if grey is not None:
                self._grey[n] = grey
                while len(self._grey) > self._keep:
                    self._grey.popitem(last=False)
            self.until = max(self.until, (n + 1) / self.rate)

    def between(self, after: float, until: float) -> list[Between]:
        """The grey frames from just after ``after`` up to ``until`` seconds, in time order."""
        with self._lock:
            found = [b for b in self._grey.values() if after + 1e-9 < b.pts <= until + 1e-9]
        return sorted(found, key=lambda b: b.pts)

    def at(self, t: float, reach: float) -> np.ndarray | None:
        """The frame on the grid nearest ``t``, or failing that the nearest within ``reach`` seconds."""
        n = round(t * self.rate)
        with self._lock:
            if n in self._frames:
                return self._frames[n]
            near = [k for k in self._frames if abs(k / self.rate - t) <= reach]
        if not near:
            return None
        with self._lock:
            return self._frames.get(min(near, key=lambda k: abs(k / self.rate - t)))

    def take(self, before: float) -> list[tuple[int, np.ndarray]]:
        """Remove and return, in order, the frames before ``before`` seconds."""
        out = []
        with self._lock:
            while self._frames:
                n = next(iter(self._frames))
                if n / self.rate >= before - 1e-9:
                    break
                out.append((n, self._frames.pop(n)))
        return out

    def newest(self) -> np.ndarray | None:
        with self._lock:
            return next(reversed(self._frames.values()), None)


def _grey(frame: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """``frame`` in grey, shrunk to at most ``side`` pixels on its shorter side, and how many of
    its pixels one of the result's spans."""
    import cv2

    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape
    size = shrunk_size(w, h, side)
    if size == (w, h):
        return grey, 1.0
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA), w / size[0]


class AudioBuffer:
    """Mono samples from stream sample 0 on, the last ``keep`` of them kept."""

    def __init__(self, sample_rate: int, keep: int):
        self.sample_rate = sample_rate
        self._keep = keep
        self._parts: list[np.ndarray] = []
        self._buf = np.zeros(0, np.float32)
        self._start = 0  # stream sample index of _buf[0]
        self._end = 0  # one past the newest sample
        self._lock = threading.Lock()

    @property
    def until(self) -> float:
        return self._end / self.sample_rate

    def put(self, first: int, samples: np.ndarray) -> None:
        """``samples`` starting at stream sample ``first``; a gap before them is silence."""
        with self._lock:
            if first > self._end:
                self._parts.append(np.zeros(first - self._end, np.float32))
                self._end = first
            skip = self._end - first  # overlap with what is there: keep the first arrival
            if skip < len(samples):
                self._parts.append(samples[skip:])
                self._end += len(samples) - skip

    def window(self, begin: int, n: int) -> np.ndarray:
        """Samples ``[begin, begin + n)``, zeros where none were heard."""
        with self._lock:
            if self._parts:
                self._buf = np.concatenate([self._buf, *self._parts])
                self._parts = []
                drop = max(0, len(self._buf) - self._keep)
                self._buf, self._start = self._buf[drop:], self._start + drop
            out = np.zeros(n, np.float32)
            lo, hi = max(begin, self._start), min(begin + n, self._start + len(self._buf))
            if hi > lo:
                out[lo - begin : hi - begin] = self._buf[lo - self._start : hi - self._start]
            return out


class Arrivals:
    """When (wall clock) each stream time arrived: (stream seconds covered, wall time) pairs."""

    def __init__(self):
        self._covered: list[float] = []
        self._wall: list[float] = []
        self._lock = threading.Lock()

    def note(self, covered: float, wall: float) -> None:
        with self._lock:
            if not self._covered or covered > self._covered[-1]:
                self._covered.append(covered)
                self._wall.append(wall)
            if len(self._covered) > 4096:
                del self._covered[:2048], self._wall[:2048]

    def when(self, t: float) -> float | None:
        """The wall time at which the stream first covered ``t`` seconds; None if not yet."""
        with self._lock:
            k = bisect.bisect_left(self._covered, t - 1e-6)
            return self._wall[k] if k < len(self._wall) else None


class LiveSource:
    """One connection to ``source``: ffmpeg plus a demuxing thread that fills ``frames`` and
    ``audio`` (shared, so a reconnection continues filling them at ``offset`` seconds)."""

    def __init__(
        self,
        source: Source,
        frames: FrameBuffer,
        audio: AudioBuffer,
        arrivals: dict[str, Arrivals],
        offset: float = 0.0,
    ):
        self.source, self.frames, self.audio, self.arrivals, self.offset = source, frames, audio, arrivals, offset
        self.has_video = self.has_audio = False
        self.size = (0, 0)  # width, height of the frames
        self.opened = threading.Event()  # the streams are known (or it failed before)
        self.ended = threading.Event()  # ffmpeg's output is over
        self.error = ""  # why it ended, when not at the stream's end
        self.packets = 0
        self.last_packet = time.monotonic()
        self._stop = threading.Event()
        # Frames on a fixed grid from 0, so frame n is at n / rate whatever the source's own rate.
        # Non-square pixels (SAR) made square: faces as a player shows them; square ones as they are.
        video = f"fps={frames.rate:.9g}:start_time=0,scale=w='if(eq(sar,1),iw,2*trunc(iw*sar/2))':h=ih,setsar=1"
        cmd = [
            ffmpeg(),
            "-hide_banner",
            "-nostats",
            "-v",
            "error",
            # Read only a second before deciding what the streams are: the first rows come sooner.
            "-analyzeduration",
            "1000000",
            *source.args,
            "-map",
            source.maps[0],
            "-map",
            source.maps[1],
            "-vf",
            video,
            "-c:v",
            "rawvideo",
            "-pix_fmt",
            "bgr24",
            # A stereo pair is mixed here (``to_mono``: a side wired backwards is not mixed away), so
            # ffmpeg leaves mono and stereo as they are and mixes more channels down to a pair.
            "-af",
            f"{FILL_GAPS}:first_pts=0,aformat=channel_layouts=mono|stereo",
            "-ar",
            str(audio.sample_rate),
            "-c:a",
            "pcm_f32le",
            # Interleaving waits for the slower stream at most this long (microseconds).
            "-max_interleave_delta",
            "300000",
            "-flush_packets",
            "1",
            "-f",
            "nut",
            "pipe:1",
        ]
        self._stderr = collections.deque(maxlen=20)
        self._proc = subprocess.Popen(
            cmd,
            stdin=None if source.kind == "stdin" else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,  # a terminal's Ctrl-C reaches emocli, which stops ffmpeg itself
        )
        self._threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._errors, daemon=True),
        ]
        # The stderr reader first: the packet reader's end joins it, so it must have started.
        for thread in reversed(self._threads):
            thread.start()

    def _errors(self) -> None:
        for line in iter(self._proc.stderr.readline, b""):
            text = line.decode(errors="replace").strip()
            if text:
                self._stderr.append(text)

    def _read(self) -> None:
        import av

        try:
            container = av.open(self._proc.stdout, "r", format="nut")
        except (av.error.FFmpegError, OSError, EOFError):
            self._finish()
            return
        try:
            video = next((s for s in container.streams if s.type == "video"), None)
            sound = next((s for s in container.streams if s.type == "audio"), None)
            self.has_video, self.has_audio = video is not None, sound is not None
            if video is not None:
                self.size = (video.codec_context.width, video.codec_context.height)
            mono = MonoSamples(
                self.audio.sample_rate, sound is not None and sound.codec_context.layout.nb_channels == 2
            )
            self.opened.set()
            w, h = self.size
            first = round(self.offset * self.audio.sample_rate)
            for packet in container.demux():
                if self._stop.is_set():
                    break
                if packet.size == 0 or packet.pts is None:
                    continue
                t = float(packet.pts * packet.time_base) + self.offset
                now = time.monotonic()
                self.last_packet = now
                self.packets += 1
                if packet.stream is video:
                    if packet.size != w * h * 3:
                        continue
                    frame = np.frombuffer(bytes(packet), np.uint8).reshape(h, w, 3)
                    self.frames.put(round(t * self.frames.rate), frame)
                    self.arrivals["video"].note(self.frames.until, now)
                elif packet.stream is sound:
                    samples = mono(np.frombuffer(bytes(packet), np.float32))
                    self.audio.put(
                        first + round(float(packet.pts * packet.time_base) * self.audio.sample_rate), samples
                    )
                    self.arrivals["audio"].note(self.audio.until, now)
        except (av.error.FFmpegError, OSError, EOFError, ValueError):
            pass
        finally:
            container.close()
            self._finish()

    def _finish(self) -> None:
        code = self._proc.wait()
        self._threads[1].join(timeout=2)
        if code != 0 and not self._stop.is_set():
            self.error = _reason(list(self._stderr)) or f"ffmpeg stopped (exit status {code})"
        self.opened.set()
        self.ended.set()

    def stalled(self, seconds: float) -> bool:
        """No packet for ``seconds`` (a stream that stopped sending without closing)."""
        return not self.ended.is_set() and time.monotonic() - self.last_packet > seconds

    def close(self, reason: str = "") -> None:
        """Stop ffmpeg; ``reason`` (when given) becomes the error."""
        if reason and not self.ended.is_set():
            self.error = reason
        self._stop.set()
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for thread in self._threads:
            if thread.ident is not None:  # a signal can land before the last one starts
                thread.join(timeout=5)
        for pipe in (self._proc.stdout, self._proc.stderr):
            pipe.close()


def _reason(lines: list[str]) -> str:
    """The line of ffmpeg's complaint that says why, without its ``[tcp @ 0x...]`` prefix."""
    from .tools import _PREFIX

    cleaned = [_PREFIX.sub("", ln).strip() for ln in lines]
    cleaned = [ln for ln in cleaned if ln and not ln.startswith("Error opening input file")]
    for line in cleaned:
        if "Error opening input:" in line:
            return line.split("Error opening input:", 1)[1].strip()
    return cleaned[-1] if cleaned else ""


def has_display(platform: str = sys.platform, environ=os.environ) -> bool:
    """Whether a window can open: macOS and Windows have a desktop; elsewhere X11 or Wayland must be there."""
    if platform in ("darwin", "win32"):
        return True
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))
