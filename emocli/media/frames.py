"""Decoded frames (BGR, rotation applied) at requested times: decoded once, in order, and only
the sampled ones kept, by ffmpeg (an even grid of times) or OpenCV (seeking across long gaps).

Both hand over ``Frame`` arrays: each knows its presentation time and carries the small
grey frames decoded since the one handed over before it (``recent``), for who speaks
(speaker.py), which needs mouths many times a second where the analysis needs a few frames."""

from __future__ import annotations

import collections
import math
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .probing import MediaInfo, orientation_of
from .tools import MediaError, ffmpeg_command


class Between(NamedTuple):
    """A grey frame decoded between two sampled ones: its time on the timeline, its pixels,
    and how many pixels of the decoded frame one of its pixels spans (1: full size)."""

    pts: float
    image: np.ndarray
    scale: float


class Frame(np.ndarray):
    """A decoded BGR frame (a numpy array, maybe shrunk: ``scale``) that knows its
    presentation time (``pts``, on the timeline) and brings the grey frames decoded after
    the frame handed over before it, up to its own time (``recent``, ``Between``s in time
    order; None where the sampler passes none). Arrays derived from it carry none of this:
    only the sampler attaches it."""

    pts: float | None
    recent: tuple | None
    scale: float

    def __array_finalize__(self, obj) -> None:
        self.pts = None
        self.scale = 1.0  # decoded-frame pixels per pixel of this one (faces.frame_scale)
        self.recent = None  # None: no grey frames come with this one's source


def _quiet_opencv(cv2) -> None:
    """Keep OpenCV's decoder chatter (``[h264 @ 0x..] error while decoding``) off stderr.

    A damaged file is reported once, as one line, by the batch; the decoder would
    otherwise print a line per bad packet. The ffmpeg level is read at the first
    capture of the process; a value the user set is kept.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "0")  # AV_LOG_PANIC
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _pick(
    times: list[float],
    frames: Iterator[tuple[float, np.ndarray]],
    tol: float,
    reach: float,
    period: float,
    late: float | None = None,
    end: float = math.inf,
) -> Iterator[tuple[float, np.ndarray | None]]:
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


# Grey frames between the samples a second, at most, for who speaks (FrameSampler.BETWEEN_RATE).
BETWEEN_RATE = 15.0


class FrameReader:
    """Decoded frames (BGR, rotation applied) at requested times, in one forward pass, with OpenCV.

    ``offset`` is where the video's first frame lies on the timeline (a video that starts
    after the audio); ``reach`` is half the analysis interval (see ``_pick``). Its frames are
    ``Frame``s, as FrameSampler's: each with its time and, but for ``between=0``, the grey
    frames decoded since the one before (up to ``between`` a second), for who speaks.
    """

    # Past this gap, seeking to the next sample beats decoding everything in between.
    SEEK_GAP_S = 5.0

    def __init__(
        self,
        path: str | Path,
        offset: float = 0.0,
        reach: float = 0.0,
        end: float = math.inf,
        between: float = BETWEEN_RATE,
        size: tuple[int, int] | None = None,
        orientation: tuple[int, int, int, int] | None = None,
    ):
        """``size``: (width, height) as displayed, where the stored pixels are not square;
        ``orientation``: how the stored picture is shown (``MediaInfo.orientation``; None:
        read from the file)."""
        import cv2

        _quiet_opencv(cv2)
        self._cv2 = cv2
        self.offset, self.reach, self.end, self.between, self.size = offset, reach, end, between, size
        self.orientation = tuple(orientation) if orientation is not None else orientation_of(path)
        self.cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not self.cap.isOpened():
            raise MediaError("no decodable video stream")
        # OpenCV turns the picture by the display matrix's angle alone and misses its mirror:
        # the picture is read as stored and oriented here (``oriented``).
        self.cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 0.0

    @classmethod
    def of(cls, info: MediaInfo, reach: float = 0.0, between: float = BETWEEN_RATE) -> FrameReader:
        """The reader of ``info``'s video: placed on its timeline, shown as a player shows it."""
        return cls(info.path, info.video_offset, reach, info.duration, between, _shown_size(info), info.orientation)

    def frames_at(self, times: list[float]) -> Iterator[tuple[float, np.ndarray | None]]:
        """Yield ``(t, frame)`` for each time, as ``_pick`` matches them."""
        times = list(times)
        tol, period = _tolerance(self.fps, self.reach)
        yield from _pick(times, self._candidates(times, tol), tol, self.reach, period, end=self.end)

    def _candidates(self, times: list[float], tol: float) -> Iterator[tuple[float, np.ndarray]]:
        """Per time, the first frame at or after it (less ``tol``), once; only those, and the
        grey frames between them, are converted."""
        cv2 = self._cv2
        k, last_ts = 0, -1.0
        period = 1.0 / self.fps if self.fps > 0 else 0.04
        tail = self.end - (FrameSampler.SKIP_GAP + 1) * period
        gap = max(0.0, 1.0 / self.between - 0.5 * period) if self.between > 0 else math.inf
        greys: list[Between] = []
        grey_at = -math.inf
        while k < len(times):
            if last_ts >= 0 and times[k] - last_ts > self.SEEK_GAP_S:
                self.cap.set(cv2.CAP_PROP_POS_MSEC, max(0.0, times[k] - self.offset - 1.0) * 1000.0)
            if not self.cap.grab():
                return
            ts = self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 + self.offset
            last_ts = ts
            wanted = ts >= times[k] - tol or (ts >= tail and times[-1] >= tail)
            if not wanted and ts - grey_at < gap:
                continue  # neither the first frame for a time nor one of the last (as FrameSampler's), nor a grey one
            ok, frame = self.cap.retrieve()
            if not ok:
                continue
            frame = oriented(frame, self.orientation)
            if self.size and frame.shape[1::-1] != tuple(self.size):  # non-square pixels, made square
                frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
            if ts - grey_at >= gap:
                greys.append(self._grey(frame, ts))
                grey_at = ts
            if not wanted:
                continue
            while k < len(times) and times[k] <= ts + tol:
                k += 1  # the times this frame is the first one for
            frame = frame.view(Frame)
            frame.pts = ts
            frame.recent, greys = (tuple(greys) if self.between > 0 else None), []
            yield ts, frame

    def _grey(self, frame: np.ndarray, ts: float) -> Between:
        """``frame`` grey and at most FrameSampler.BETWEEN_SIDE pixels on its shorter side."""
        cv2 = self._cv2
        h, w = frame.shape[:2]
        gw, gh = shrunk_size(w, h, FrameSampler.BETWEEN_SIDE)
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if (gw, gh) != (w, h):
            grey = cv2.resize(grey, (gw, gh), interpolation=cv2.INTER_AREA)
        return Between(ts, grey, w / gw)

    def close(self) -> None:
        self.cap.release()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def oriented(frame: np.ndarray, orientation: tuple[int, int, int, int]) -> np.ndarray:
    """``frame`` (as stored) as it is shown: turned and mirrored by the display matrix's
    (a, b, c, d) (``MediaInfo.orientation``; (1, 0, 0, 1) leaves it as it is)."""
    import cv2

    a, b, c, d = orientation
    if a == 0:  # a quarter turn: rows become columns
        frame = cv2.transpose(frame)
    rows, cols = (d if a else b) < 0, (a if a else c) < 0
    if rows or cols:
        frame = cv2.flip(frame, -1 if rows and cols else 0 if rows else 1)
    return frame


def shrunk_size(width: int, height: int, side: int) -> tuple[int, int]:
    """``(width, height)``, or shrunk to ``side`` pixels on the shorter side, in even sizes
    (ffmpeg's scaler and YUV 4:2:0 want them); ``side`` 0 or larger: unchanged."""
    s = side / min(width, height) if side > 0 else 1.0
    if s >= 1.0:
        return width, height
    return max(2, 2 * round(width * s / 2)), max(2, 2 * round(height * s / 2))


class FrameSampler:
    """``FrameReader.frames_at`` for an evenly spaced grid of times, from one ffmpeg process.

    ffmpeg decodes in its own threads, picks the candidate frames with a ``select``
    expression (per time, the first frame at or after it, less half a frame; a frame
    that is first for several times is passed once), converts only those to BGR and
    pipes them here with their exact timestamps (``-stats_enc_pre``, on a pipe of its
    own), where a thread reads ahead (``AHEAD`` frames) while the caller works and
    ``_pick`` matches them to the times. Decoding costs what ``ffmpeg -i X -f null -``
    costs, far less than OpenCV's ``grab`` loop, and overlaps with the caller.

    ``skip`` is the decoder's discard level. The default, ``noref``, does not decode
    frames that no other frame refers to (most B-frames): nothing else changes, the
    sampled frame is at most a couple of frames later than FrameReader's, and most of an
    H.264 video's decoding is saved. ``none`` gives FrameReader's frames exactly.
    ``bidir`` (every B-frame skipped) is not offered: x264 with B-pyramid lets P-frames
    refer to B-frames, which it would then decode wrongly.

    ``threads`` is ffmpeg's decoding threads (0: its own choice, one per core and more).
    The caller's analysis needs a core too: decoding threads beyond the cores left to them
    only take turns with it (``resources.Plan.decode_threads``).

    ``between`` frames a second (at most; 0: none) of the decoded frames also come out of the
    same ffmpeg as a second stream, grey and at most ``BETWEEN_SIDE`` pixels on their shorter
    side, and ride on the next sampled ``Frame`` (``recent``): the mouths of who speaks,
    followed at the decoder's rate for a fraction of the cost of handing over every frame.
    A second thread reads them. Which grey frames a sampled frame brings depends on the
    presentation times alone: before handing a frame over, the caller waits until the grey
    stream has gone past the frame's time (or ended), however far behind its reader is.
    While it waits, the sampled frames are read without the ``AHEAD`` bound, so that ffmpeg,
    which writes both streams, is never held up on the sampled one before the grey frame
    that is waited for comes out.
    """

    AHEAD = 2  # decoded frames buffered ahead of the caller
    SKIP_GAP = 4  # frames in a row that skipping non-reference frames may leave out (x264: 3 B-frames)
    # Grey frames between the samples: every reference frame of a 30 fps x264 video (about
    # 15 a second) is what telling two talking mouths apart needs (benchmarks/av_validation.py
    # --speaker); 360 pixels keep a mouth a dozen pixels wide or more in any face the
    # detector finds, and cost a quarter of a 720p frame (benchmarks/floor.py).
    BETWEEN_RATE = BETWEEN_RATE
    BETWEEN_SIDE = 360
    # Sampled frames the face detector would shrink (FaceDetector.DOWNSCALE_ABOVE) come
    # shrunk to its size by ffmpeg's scaler: a 720p frame converted and piped at a quarter of
    # its pixels. Faces stay in the decoded frame's pixels (Frame.scale, faces.frame_scale).
    SHRINK_ABOVE = 480
    SAMPLE_SIDE = 360

    def __init__(
        self,
        path: str | Path,
        info: MediaInfo,
        fps: float,
        skip: str = "noref",
        threads: int = 0,
        reach: float = 0.0,
        between: float = BETWEEN_RATE,
    ):
        self.path, self.info, self.fps, self.skip, self.threads = Path(path), info, fps, skip, threads
        self.reach, self.between = reach, between
        self._proc: subprocess.Popen | None = None
        self._err = None
        self._stamps = None
        self._thread: threading.Thread | None = None
        self._side: threading.Thread | None = None
        self._side_files: list = []
        self._stop = threading.Event()
        # Shared by the caller and both reader threads, under ``_cond``: the sampled frames
        # read ahead (None last), the grey frames not handed over yet, the time of the last
        # grey frame read, whether the grey stream has ended, whether the caller waits for it.
        self._cond = threading.Condition()
        self._ahead: collections.deque = collections.deque()
        self._recent: collections.deque = collections.deque()
        self._grey_at = -math.inf
        self._grey_done = False
        self._wanting = False
        self._grey_until = math.inf  # grey frames after this no sampled frame can bring

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
        # Skipped frames (noref) leave gaps of a few frames: the next decoded one stands in.
        late = tol if self.skip == "none" else max(tol, min(self.SKIP_GAP * period, self.reach or 1.0))
        # No frame handed over lies later (_pick: late, or within reach at a low frame rate).
        self._grey_until = times[-1] + max(late, self.reach) + 1e-3
        w, h = self.info.width, self.info.height
        threads = ["-threads", str(self.threads)] if self.threads > 0 else []
        decode = ["-copyts", "-skip_frame:v", self.skip, *threads, "-i", str(self.path)]
        source = f"0:{self.info.video_stream}" if self.info.video_stream >= 0 else "0:v:0"
        sw, sh = self._shrunk(self.SAMPLE_SIDE if min(w, h) > self.SHRINK_ABOVE else 0)
        scaled = sw != w or self.info.sar != 1.0  # shrunk, or non-square pixels made square
        select = f"select='{self._select(times, tol, tail)}'" + (f",scale={sw}:{sh}:flags=area" if scaled else "")
        stamps_r, stamps_w = os.pipe()
        keep = [stamps_w]
        sampled = ["-fps_mode", "passthrough", "-pix_fmt", "bgr24", "-stats_enc_pre_fmt", "{ptsi} {tbi}"]
        sampled += ["-stats_enc_pre", f"pipe:{stamps_w}", "-f", "rawvideo", "-"]
        if self.between > 0:
            bw, bh = self._shrunk(self.BETWEEN_SIDE)
            side = [os.pipe(), os.pipe()]  # (frames, timestamps) of the grey stream
            keep += [side[0][1], side[1][1]]
            # A frame is taken once at least 1/between seconds (less half a frame) after the last one taken.
            gap = max(0.0, 1.0 / self.between - 0.5 * period)
            pick = f"if(gte(t-ld(0),{gap!r})+not(ld(1)),1+0*(st(0,t)+st(1,1)),0)"
            # The scaler converts to grey on its branch alone: a bare format filter there would
            # make the split (one format on all its outputs) hand grey to the sampled frames too.
            graph = f"[{source}]split[a][b];[a]{select}[s];[b]select='{pick}',scale={bw}:{bh}:flags=area,format=gray[g]"
            cmd = ffmpeg_command(
                *decode,
                "-filter_complex",
                graph,
                "-map",
                "[s]",
                *sampled,
                "-map",
                "[g]",
                "-fps_mode",
                "passthrough",
                "-pix_fmt",
                "gray",
                "-stats_enc_pre_fmt",
                "{ptsi} {tbi}",
                "-stats_enc_pre",
                f"pipe:{side[1][1]}",
                "-f",
                "rawvideo",
                f"pipe:{side[0][1]}",
            )
        else:
            cmd = ffmpeg_command(
                *decode,
                "-map",
                source,
                "-vf",
                select,
                *sampled,
            )
        self._err = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=self._err, pass_fds=tuple(keep), process_group=0
            )
        finally:
            for fd in keep:
                os.close(fd)
        self._stamps = os.fdopen(stamps_r, "rb")
        if self.between > 0:
            self._side_files = [os.fdopen(side[0][0], "rb"), os.fdopen(side[1][0], "rb")]
            self._side = threading.Thread(target=self._read_between, args=(bw, bh, w / bw), daemon=True)
            self._side.start()
        self._thread = threading.Thread(target=self._read, args=(self._proc, sw, sh), daemon=True)
        self._thread.start()
        first = self._get()
        if first is None and self._proc.wait() != 0:
            # ffmpeg could not decode what OpenCV opened: let OpenCV do it all.
            with FrameReader.of(self.info, self.reach, self.between) as reader:
                yield from reader.frames_at(times)
            return

        def decoded() -> Iterator[tuple[float, np.ndarray]]:
            item = first
            while item is not None:
                yield item
                item = self._get()

        handed = None
        for t, frame in _pick(times, decoded(), tol, self.reach, period, late, self.info.duration):
            if frame is not None and frame is not handed and self.between > 0:
                frame.recent = self._take_between(frame.pts)
                handed = frame
            yield t, frame

    def _shrunk(self, side: int) -> tuple[int, int]:
        """The decoded size, or shrunk to ``side`` pixels on its shorter side (even sizes)."""
        return shrunk_size(self.info.width, self.info.height, side)

    def _take_between(self, pts: float) -> tuple:
        """The grey frames up to ``pts`` not handed over yet (those of later times wait for a
        later frame), once the grey stream has gone past ``pts`` or ended: all of them, however
        far behind the grey stream's reader is."""
        with self._cond:
            self._wanting = True
            self._cond.notify_all()  # the sampled frames' reader may read past AHEAD now
            while not (self._grey_done or self._grey_at > pts + 1e-6):
                if self._side is None or not self._side.is_alive():
                    break  # its reader is gone (it marks the end before it leaves): nothing more comes
                self._cond.wait(0.2)
            self._wanting = False
            out = []
            while self._recent and self._recent[0].pts <= pts + 1e-6:
                out.append(self._recent.popleft())
            return tuple(out)

    def _read_between(self, w: int, h: int, scale: float) -> None:
        """Reads the grey stream to its end, whatever happens: ffmpeg writes both streams, and
        one left unread would stall the sampled frames too."""
        data, stamps = self._side_files
        origin = Fraction(self.info.origin).limit_denominator(1 << 40)
        size, placed = w * h, True
        try:
            while len(buf := data.read(size)) == size:
                stamp = stamps.readline().split()
                if not placed or self._stop.is_set():
                    continue
                try:
                    t = float(int(stamp[0]) * Fraction(stamp[1].decode()) - origin)
                except (IndexError, ValueError, ZeroDivisionError):
                    placed = False  # no timestamp (NOPTS): this frame and the rest cannot be placed
                    self._end_between()
                    continue
                # Kept until a sampled frame takes them, without a bound: ffmpeg runs at most
                # a few sampled frames ahead of the caller (AHEAD), and these with it; past
                # the last time asked for, no sampled frame holds it back, and none is kept.
                with self._cond:
                    if t <= self._grey_until:
                        self._recent.append(Between(t, np.frombuffer(buf, np.uint8).reshape(h, w), scale))
                    self._grey_at = max(self._grey_at, t)
                    self._cond.notify_all()
        except (OSError, ValueError):
            if not self._stop.is_set():
                raise  # a pipe closed under a reader that close() stopped ends it quietly
        finally:
            self._end_between()

    def _end_between(self) -> None:
        with self._cond:
            self._grey_done = True
            self._cond.notify_all()

    def _read(self, proc: subprocess.Popen, w: int, h: int) -> None:
        size = w * h * 3
        origin = Fraction(self.info.origin).limit_denominator(1 << 40)
        try:
            while True:
                frame = np.empty((h, w, 3), np.uint8).view(Frame)
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
                frame.pts, frame.scale = t, self.info.width / w
                if not self._put((t, frame)):
                    return
        except (OSError, ValueError):
            if not self._stop.is_set():
                raise  # a pipe closed under a reader that close() stopped ends it quietly
        finally:
            self._put(None)

    def _put(self, item) -> bool:
        """Hand ``item`` to the caller unless ``close`` comes first; False when it did. At most
        ``AHEAD`` wait for the caller, unless it waits for the grey stream (``_take_between``)."""
        with self._cond:
            while len(self._ahead) >= self.AHEAD and not self._wanting:
                if self._stop.is_set():
                    return False
                self._cond.wait(0.2)
            if self._stop.is_set():
                return False
            self._ahead.append(item)
            self._cond.notify_all()
            return True

    def _get(self):
        """The next sampled frame read, (time, frame); None at the end."""
        with self._cond:
            while not self._ahead:
                if not self._thread.is_alive() and not self._ahead:
                    return None  # its reader is gone without a last None (stopped)
                self._cond.wait(0.2)
            item = self._ahead.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
        # A signal can land between a thread's creation and its start: only a started one joins.
        if self._thread is not None and self._thread.ident is not None:
            self._thread.join()  # it sees the end of ffmpeg's output, or the stop
        if self._side is not None and self._side.ident is not None:
            self._side.join()
        for f in self._side_files:
            f.close()
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
        return FrameReader.of(info, reach)
    if info.fps > 0:
        return FrameSampler(info.path, info, info.fps, _skip(info.fps, reach), threads, reach)
    # libav did not say the rate: OpenCV's reading of it
    reader = FrameReader.of(info, reach)
    if reader.fps <= 0:
        return reader
    reader.close()
    return FrameSampler(info.path, info, reader.fps, _skip(reader.fps, reach), threads, reach)


def _shown_size(info: MediaInfo) -> tuple[int, int] | None:
    """(width, height) to scale OpenCV's frames to: where the stored pixels are not square."""
    return (info.width, info.height) if info.sar != 1.0 else None


def _skip(fps: float, reach: float) -> str:
    """The decoder's discard level: ``noref`` where the frames it leaves out are close
    together, ``none`` where each frame stands for a good part of an interval (a low rate)."""
    return "noref" if reach <= 0 or FrameSampler.SKIP_GAP / fps <= reach else "none"
