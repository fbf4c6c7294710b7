"""emocli: a fused audio-visual emotion timeline from videos.

import emocli
timeline = emocli.analyze("interview.mp4")   # a pandas DataFrame, one row per interval and face
"""

__version__ = "0.1.0"
# Where each public name lives; imported on first use, so `emocli --help` does not pay for
# numpy, onnxruntime and mediapipe.
_LAZY = {
    "analyze": "pipeline",
    "Analyzer": "pipeline",
    "AnalyzeOptions": "pipeline",
    "MediaError": "media",
    "ModelError": "models",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'emocli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
