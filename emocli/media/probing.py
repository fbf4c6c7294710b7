"""What a media file holds, read as data with PyAV: streams, start times, rotation, true length."""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .tools import MediaError, ffmpeg_error

VIDEO_EXTS = frozenset(
    ".mp4 .mov .m4v .mkv .avi .webm .flv .wmv .mpg .mpeg .ts .3gp .mts .m2ts .mxf .dv .vob .mod .tod".split()
)


@dataclass(frozen=True)
class MediaInfo:
    """What a file holds, on its presentation timeline: 0 is where the earliest of the
    streams analysed starts, and a stream that starts later is placed where it is seen or
    heard. The streams analysed are the default (else the first) video and audio ones."""

    path: Path
    duration: float  # seconds of media present, from its packets (not what a header claims)
    has_video: bool
    has_audio: bool
    width: int = 0  # as displayed: square pixels (non-square ones scaled), after rotation
    height: int = 0
    sar: float = 1.0  # the stored pixels' width over height (1: square); frames are read scaled to width x height
    fps: float = 0.0
    # How the stored picture is shown (the display matrix's a, b, c, d, each -1, 0 or 1):
    # rotations and the mirror a phone's front camera writes.
    orientation: tuple[int, int, int, int] = (1, 0, 0, 1)
    video_start: float = 0.0  # the video stream's start (seconds, the file's own clock)
    audio_codec: str = ""  # of the audio stream analysed, as ffmpeg names it (aac, mp3, pcm_s16le, ...)
    audio_channels: int = 1
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
        """What the media lacks, in a few words: a stream (so no face, or no speech, is not
        read as a finding), or the time it claims but ends before (a cut-short download or copy)."""
        parts = []
        if not self.has_video:
            parts.append("no video stream (voice only)")
        if not self.has_audio:
            parts.append("no audio stream (faces only)")
        if self.claimed > self.duration + max(0.5, 0.005 * self.claimed):
            parts.append(f"decoded {self.duration:.1f} of {self.claimed:.1f} s")
        return "; ".join(parts)


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
            raise MediaError(f"not a readable media file ({ffmpeg_error(path, messages)})") from None
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
    spans, orientation, packets = _scan(container, [s for s in (video, audio) if s is not None], video)
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
    info = dict(
        path=path,
        duration=max(0.0, end - origin),
        has_video=video is not None,
        has_audio=audio is not None,
        origin=origin,
        claimed=claimed,
    )
    if audio is not None:
        codec = audio.codec_context.codec
        info.update(
            audio_codec=getattr(codec, "canonical_name", "") or codec.name,
            audio_channels=max(1, audio.codec_context.layout.nb_channels),
            audio_start=starts[audio.index],
            audio_stream=audio.index,
        )
    if video is not None:
        width, height = video.codec_context.width, video.codec_context.height
        # Pixels as a player shows them: the stream's aspect ratio, else the codec's (as ffmpeg guesses it).
        aspect = video.sample_aspect_ratio or video.codec_context.sample_aspect_ratio
        sar = float(aspect) if aspect and 0.2 < float(aspect) < 5 else 1.0
        if abs(sar - 1.0) > 1e-3:
            width = max(2, 2 * round(width * sar / 2))
        else:
            sar = 1.0
        if orientation[0] == 0:  # a quarter turn
            width, height = height, width
        info.update(
            width=width,
            height=height,
            fps=_frame_rate(video, spans[video.index], packets[video.index]),
            sar=sar,
            orientation=orientation,
            video_start=starts[video.index],
            video_stream=video.index,
        )
    return MediaInfo(**info)


def _frame_rate(video, span: tuple[float, float], packets: int) -> float:
    """Frames a second: the header's average rate, unless the stream's packets (a frame
    each) over its span say otherwise by more than twice: some headers are far off (raw DV
    claims 60000 a second), and a rate taken for a thousand times the true one finds no
    frame near any sample time."""
    header = video.average_rate or video.guessed_rate or video.base_rate
    header = float(header) if header else 0.0
    length = span[1] - span[0]
    counted = packets / length if packets > 1 and length > 0 else 0.0
    return counted if counted and not 0.5 <= header / counted <= 2.0 else header


def _scan(container, streams: list, video) -> tuple[dict[int, tuple[float, float]], tuple, dict[int, int]]:
    """Per stream index, where its packets start and end (seconds, the file's clock), read
    from every packet (a demux, no decoding: a header that lies about the length, or a
    file cut short, shows here), and how many there are; and the orientation
    (``_orientation``) of the video's first decodable frame."""
    import av

    first: dict[int, int] = {}  # per stream, in its own time base (integers: the scan's cost is per packet)
    last: dict[int, int] = {}
    count: dict[int, int] = {}
    orientation, tries = None if video is not None else (1, 0, 0, 1), 0
    if video is not None:
        video.codec_context.thread_count = 1  # one frame wanted: no threads to start
    try:
        for packet in container.demux(*streams):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None or packet.size == 0 or packet.is_discard:
                continue
            i, end = packet.stream_index, stamp + (packet.duration or 0)
            count[i] = count.get(i, 0) + 1
            if i not in first:
                first[i], last[i] = stamp, end
            elif stamp < first[i]:
                first[i] = stamp
            if end > last[i]:
                last[i] = end
            if orientation is None and i == video.index and tries < 64:
                tries += 1
                with contextlib.suppress(av.FFmpegError):
                    for frame in packet.decode():
                        orientation = _orientation(frame)
                        break
    except (av.FFmpegError, OSError):
        pass  # damaged or cut short: the packets read so far are the media there is
    bases = {s.index: s.time_base for s in streams}
    spans = {i: (float(first[i] * bases[i]), float(last[i] * bases[i])) for i in first}
    return spans, orientation or (1, 0, 0, 1), count


def orientation_of(path: str | Path) -> tuple[int, int, int, int]:
    """The orientation (``MediaInfo.orientation``) of the first video frame of ``path``, read
    without the packet scan ``probe`` makes."""
    import av

    with contextlib.suppress(av.FFmpegError, OSError), av.open(str(path)) as container:
        for frame in container.decode(video=0):
            return _orientation(frame)
    return (1, 0, 0, 1)


def _orientation(frame) -> tuple[int, int, int, int]:
    """The frame's display matrix as (a, b, c, d), each rounded to -1, 0 or 1 (a quarter turn
    and a mirror at most, as players show them); (1, 0, 0, 1) where it has none."""
    import av

    for data in frame.side_data:
        raw = bytes(data)
        if data.type == av.sidedata.sidedata.Type.DISPLAYMATRIX and len(raw) >= 36:
            a, b, _, c, d = (round(v / 65536) for v in struct.unpack("<5i", raw[:20]))
            if {abs(a), abs(b)} == {0, 1} and abs(a) == abs(d) and abs(b) == abs(c):
                return (a, b, c, d)
    return (1, 0, 0, 1)
