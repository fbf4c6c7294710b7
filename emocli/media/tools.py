"""The bundled ffmpeg, and the one-line error every media module raises.

Every ffmpeg runs in its own process group: a terminal's Ctrl-C reaches emocli alone,
which stops its ffmpegs itself, after it has decided what to keep.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path


class MediaError(RuntimeError):
    """A file that cannot be read as media; the message is one readable line."""


@lru_cache(maxsize=1)
def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_command(*args: str) -> list[str]:
    """The bundled ffmpeg with ``args``: no banner, no reading of stdin, errors only on stderr."""
    return [ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", *args]


# The first line of ffmpeg's complaint that says what is wrong, without its path prefix.
_ERRORS = (
    "Invalid data found",
    "moov atom not found",
    "does not contain any stream",
    "Permission denied",
    "No such file",
    "End of file",
    "Invalid argument",
    "could not find codec parameters",
)


_PREFIX = re.compile(r"^(\[[^\]]*@ ?0x[0-9a-f]+\]\s*)+")


def ffmpeg_error(path: Path, stderr: str) -> str:
    lines = [_PREFIX.sub("", ln.replace(str(path), "")).lstrip(": ").strip() for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln]
    for line in lines:
        if any(e in line for e in _ERRORS):
            return line
    return lines[-1] if lines else "unreadable"
