"""What the command line and the library accept: the analysis options' ranges (both refuse
the same values) and the error that says a command was called wrongly."""

from __future__ import annotations

import math
import numbers

# option -> (least, most), both allowed
LIMITS: dict[str, tuple[float, float]] = {
    "interval": (0.05, 3600.0),  # seconds between samples
    "window": (0.2, 60.0),  # seconds of audio around each sample
    "face_weight": (0.0, 1.0),
    "max_faces": (1, math.inf),
    "min_face": (0.0, 1.0),  # fraction of the frame's shorter side
    "min_face_score": (0.01, 0.99),
    "vad_threshold": (0.01, 0.99),
    "frame_rate": (0.1, 120.0),  # frames sampled a second
    "face_frames": (1, math.inf),
}
INTEGERS = frozenset({"max_faces", "face_frames"})


def span(name: str) -> str:
    """The range of ``name`` in words: "0.05 to 3600", "1 or more"."""
    lo, hi = LIMITS[name]
    return f"{lo:g} or more" if hi == math.inf else f"{lo:g} to {hi:g}"


def check(name: str, value) -> float | int:
    """``value`` for option ``name`` as a plain Python number (numpy's too), or an error that
    names both."""
    kind_of = numbers.Integral if name in INTEGERS else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind_of):
        kind = "a whole number" if name in INTEGERS else "a number"
        raise TypeError(f"{name} must be {kind}, not {value!r}")
    lo, hi = LIMITS[name]
    if not lo <= value <= hi:  # NaN fails too
        raise ValueError(f"{name} must be {span(name)}, not {value!r}")
    return int(value) if name in INTEGERS else float(value)


def check_count(name: str, value) -> int:
    """A count of threads: a whole number, 0 (the default choice) or more."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number, not {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, not {value!r}")
    return int(value)


class UsageError(ValueError):
    """Bad usage found before any work (a missing input, an option's value, options that do
    not go together, an output that is a file or would land on an input): one line, exit
    status 2."""
