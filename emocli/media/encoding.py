"""H.264 MP4 out of a source video through ffmpeg filters, with the source's audio, in one run."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from .tools import MediaError, ffmpeg_command


def filter_arg(value: str) -> str:
    """``value`` escaped for use as an option value inside an ffmpeg filtergraph."""
    for ch in "\\':":  # the option level
        value = value.replace(ch, "\\" + ch)
    for ch in "\\'[],;":  # the graph level
        value = value.replace(ch, "\\" + ch)
    return value


# Audio codecs an MP4 holds as they are: copied, they cost nothing and lose nothing.
MP4_AUDIO = frozenset(["aac", "mp3", "alac"])


def render_filtered(
    source: str | Path,
    out: str | Path,
    filters: list[str],
    commands: str = "",
    audio_codec: str | None = "aac",
    size: tuple[int, int] | None = None,
    preset: str = "ultrafast",
    crf: int = 23,
    streams: tuple[int, int] = (-1, -1),
    threads: int = 0,
) -> None:
    """``source`` through the video ``filters`` into H.264 (yuv420p) MP4 with the source's
    audio, in one ffmpeg run: every frame kept with its timestamp, rotation applied.

    ``audio_codec`` is the source's (``MediaInfo.audio_codec``): one an MP4 holds is copied
    (encoding it would cost far more than copying), another is encoded to AAC;
    None leaves the audio out. ``size`` (width, height as displayed), when known and even,
    drops the filter that pads odd sides for yuv420p (and copies every frame to do so).

    ``streams`` are the indexes of the video and audio streams to use (``MediaInfo``'s, the
    ones analysed; -1: the first of each). ``threads`` decode the source (0: the resource
    plan's share for one video, ``resources.Plan.render_threads``).

    ``commands`` is a ``sendcmd`` script (``TIME [enter] filter@name option value, ...;``)
    that changes the filters' options as the video plays, so a drawing that changes once
    per interval costs a few filters, not a filter per interval nor a blended full-frame
    overlay (as costly as the encoding itself).
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
    if threads <= 0:
        from ..resources import Plan

        threads = Plan.local().render_threads
    cmd = ffmpeg_command(
        "-y",
        "-threads",
        str(threads),
        "-i",
        str(source),
        "-map",
        f"0:{streams[0]}" if streams[0] >= 0 else "0:v:0",
        "-vf",
        ",".join(chain),
    )
    if audio_codec is not None:
        copy = audio_codec in MP4_AUDIO
        cmd += [
            "-map",
            f"0:{streams[1]}" if streams[1] >= 0 else "0:a:0?",
            *(["-c:a", "copy"] if copy else ["-c:a", "aac", "-b:a", "128k"]),
        ]
        if audio_codec.startswith("pcm_f"):  # float PCM may hold NaN or infinities: AAC refuses them
            cmd += ["-af", "aeval=exprs=if(isnan(val(ch))+isinf(val(ch))\\,0\\,val(ch)):c=same"]
    cmd += [
        "-fps_mode",
        "passthrough",
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-crf",
        str(crf),
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(out),
    ]
    try:
        proc = subprocess.run(cmd, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, process_group=0)
    finally:
        if script is not None:
            os.unlink(script)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise MediaError(f"encoding failed: {err.splitlines()[-1] if err else 'ffmpeg error'}")
