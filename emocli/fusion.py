"""Decision-level fusion: one probability vector from the face's and the voice's."""

from __future__ import annotations

import numpy as np

from .models import ModelInfo

MODES = ("weighted", "face", "voice")


def default_face_weight(face: ModelInfo | None, voice: ModelInfo | None) -> float:
    """The face's share, proportional to each model's measured macro-F1 (0.5 when unknown)."""
    f = face.score if face else None
    v = voice.score if voice else None
    if f is None or v is None or f + v <= 0:
        return 0.5
    return f / (f + v)


def fuse(
    face: np.ndarray | None, voice: np.ndarray | None, mode: str = "weighted", face_weight: float = 0.5
) -> np.ndarray | None:
    """Weighted mean of the two distributions; a missing modality falls back to the other.

    ``mode="face"``/``"voice"`` uses that modality alone (None when it is missing).
    """
    if mode not in MODES:
        raise ValueError(f"fusion must be one of {MODES}, not {mode!r}")
    if mode == "face":
        return face
    if mode == "voice":
        return voice
    if face is None:
        return voice
    if voice is None:
        return face
    fused = face_weight * np.asarray(face) + (1.0 - face_weight) * np.asarray(voice)
    return fused / fused.sum()
