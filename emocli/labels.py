"""The canonical emotion labels and the dataset aliases that map onto them.

This module is the only place that knows label order: models, datasets, CSV columns
and plots all read it from here (or from a model's own metadata, written from here).
"""

from __future__ import annotations

import warnings

# FER2013's order, so a FER class index is a LABELS index.
LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

ALIASES: dict[str, str] = {
    "anger": "angry",
    "ang": "angry",
    "mad": "angry",
    "dis": "disgust",
    "disgusted": "disgust",
    "fearful": "fear",
    "fea": "fear",
    "scared": "fear",
    "afraid": "fear",
    "happiness": "happy",
    "hap": "happy",
    "joy": "happy",
    "joyful": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    "pleasant_surprise": "surprise",
    "pleasant_surprised": "surprise",
    "ps": "surprise",
    "sur": "surprise",
    "neu": "neutral",
}

# RAVDESS "calm" has no FER counterpart: by default it counts as neutral
# (the acted delivery is a low-arousal neutral); training can drop it instead.
CALM = "calm"

_warned: set[str] = set()


def canonical(name: str, calm: str | None = "neutral", warn: bool = True) -> str | None:
    """Map a dataset's class name onto a canonical label; None for a class we skip.

    ``calm`` is what RAVDESS "calm" becomes: "neutral" (default) or None to drop it.
    Unknown classes (e.g. CK+ "contempt") warn once and return None.
    """
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key in LABELS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    if key == CALM:
        return calm
    if warn and key not in _warned:
        _warned.add(key)
        warnings.warn(f"unknown emotion class {name!r}: skipped", stacklevel=2)
    return None
