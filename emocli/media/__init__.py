"""Video and audio with the bundled ffmpeg, PyAV and OpenCV, one module per concern:
``probing`` (what a file holds), ``audio`` (the track, whole or as windows), ``frames``
(decoded frames at requested times), ``encoding`` (H.264 out), ``tools`` (the ffmpeg
binary and the one-line error).

Everything streams: frames are decoded once, in order, and only the sampled ones are
kept; audio is read from one ffmpeg pipe with a bounded buffer. Memory therefore depends
on the interval and window, never on the length of the video.
"""

from .audio import AudioStream, finite, read_audio
from .encoding import MP4_AUDIO, filter_arg, render_filtered
from .frames import FrameReader, FrameSampler, frame_sampler
from .probing import VIDEO_EXTS, MediaInfo, probe
from .tools import MediaError, ffmpeg

__all__ = [
    "MP4_AUDIO",
    "VIDEO_EXTS",
    "AudioStream",
    "FrameReader",
    "FrameSampler",
    "MediaError",
    "MediaInfo",
    "filter_arg",
    "finite",
    "frame_sampler",
    "probe",
    "read_audio",
    "render_filtered",
    "ffmpeg",
]
