"""Decision-level fusion: one probability vector from the face's and the voice's.

By default the two are multiplied, each raised to a power (a product of experts,
``p ∝ face^FACE_EXPONENT * voice^VOICE_EXPONENT``): each interval a confident modality
(a peaked distribution) outweighs an unsure one (a flat one), and the powers temper each
model's own over- or under-confidence. A user's ``--face-weight`` instead asks for a
weighted mean with that fixed share, as before.
"""

from __future__ import annotations

import numpy as np

from .models import ModelInfo

MODES = ("weighted", "face", "voice")

# Fitted by benchmarks/av_validation.py --fusion: FER2013 validation faces paired by label with
# voices the voice model never heard (RAVDESS held-out actors, and whole corpora it never saw,
# where it is weak), so that fusing helps where the voice is good and costs little where it is
# not. Re-run it after a new face or voice model and copy its printed rule and exponents here.
RULE = "product"
FACE_EXPONENT = 1.0
VOICE_EXPONENT = 0.3


def default_face_weight(face: ModelInfo | None, voice: ModelInfo | None) -> float:
    """The face's share, proportional to each model's measured macro-F1 (0.5 when unknown):
    what a weighted mean would use without ``--face-weight``."""
    f = face.score if face else None
    v = voice.score if voice else None
    if f is None or v is None or f + v <= 0:
        return 0.5
    return f / (f + v)


def fuse_with(face: np.ndarray, voice: np.ndarray, rule: str, a: float, b: float = 0.0) -> np.ndarray:
    """Fuse distributions (one per row, or one): ``rule="linear"``, the mean weighted ``a``
    for the face; ``"product"``, ``face**a * voice**b`` normalised."""
    face, voice = np.asarray(face, dtype=np.float64), np.asarray(voice, dtype=np.float64)
    if rule == "linear":
        fused = a * face + (1.0 - a) * voice
    elif rule == "product":
        # In logs, and shifted by the row's maximum: a product of small probabilities underflows.
        logs = a * np.log(np.maximum(face, 1e-12)) + b * np.log(np.maximum(voice, 1e-12))
        fused = np.exp(logs - logs.max(axis=-1, keepdims=True))
    else:
        raise ValueError(f"unknown fusion rule {rule!r}")
    return fused / fused.sum(axis=-1, keepdims=True)


def fuse(
    face: np.ndarray | None, voice: np.ndarray | None, mode: str = "weighted", face_weight: float | None = None
) -> np.ndarray | None:
    """The fused distribution; a missing modality falls back to the other.

    ``mode="weighted"``: with ``face_weight``, the weighted mean; without, the fitted rule
    (``RULE``, ``FACE_EXPONENT``, ``VOICE_EXPONENT``). ``mode="face"``/``"voice"`` uses that
    modality alone (None when it is missing).
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
    if face_weight is not None:
        return fuse_with(face, voice, "linear", face_weight)
    return fuse_with(face, voice, RULE, FACE_EXPONENT, VOICE_EXPONENT)
