"""emocli: a fused audio-visual emotion timeline from videos.

import emocli
timeline = emocli.analyze("interview.mp4")   # a pandas DataFrame, one row per interval and face
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["analyze", "__version__"]


def __getattr__(name: str):
    # Lazy, so `emocli --help` does not pay for numpy, onnxruntime and mediapipe.
    if name == "analyze":
        from .pipeline import analyze

        return analyze
    raise AttributeError(f"module 'emocli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"analyze"})
