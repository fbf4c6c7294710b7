"""Fusion: the fitted product rule lets the confident modality lead; --face-weight and the modes keep working."""

from __future__ import annotations

import numpy as np
import pytest

from emocli.fusion import FACE_EXPONENT, RULE, VOICE_EXPONENT, fuse, fuse_with
from emocli.labels import LABELS

K = len(LABELS)


def dist(label: str, confidence: float) -> np.ndarray:
    """``confidence`` on ``label``, the rest spread evenly."""
    p = np.full(K, (1 - confidence) / (K - 1))
    p[LABELS.index(label)] = confidence
    return p


def test_the_confident_modality_leads():
    """A sure face outweighs an unsure voice, and a sure voice an unsure (nearly flat) face: the
    same two labels, the confidences swapped, swap the decision."""
    face_sure = fuse(dist("sad", 0.9), dist("fear", 0.3))
    voice_sure = fuse(dist("sad", 0.16), dist("fear", 0.99))
    assert LABELS[int(np.argmax(face_sure))] == "sad"
    assert LABELS[int(np.argmax(voice_sure))] == "fear"
    # and a voice counts for more the surer it is
    unsure = fuse(dist("sad", 0.5), dist("fear", 0.3))
    sure = fuse(dist("sad", 0.5), dist("fear", 0.9))
    assert sure[LABELS.index("fear")] > unsure[LABELS.index("fear")]


def test_rule_is_a_normalised_product_of_powers():
    face, voice = dist("happy", 0.6), dist("sad", 0.5)
    fused = fuse(face, voice)
    assert fused.sum() == pytest.approx(1.0)
    if RULE == "product":
        expected = face**FACE_EXPONENT * voice**VOICE_EXPONENT
        assert np.allclose(fused, expected / expected.sum())
    # rows at once, as the validation script fits them; tiny probabilities do not underflow
    rows = fuse_with(np.stack([face, np.full(K, 1e-300)]), np.stack([voice, voice]), "product", 2.0, 1.0)
    assert np.isfinite(rows).all() and np.allclose(rows.sum(axis=1), 1.0)


def test_face_weight_modes_and_a_missing_modality():
    face, voice = dist("happy", 0.7), dist("angry", 0.6)
    assert np.allclose(fuse(face, voice, face_weight=0.25), 0.25 * face + 0.75 * voice)
    assert fuse(face, voice, "face") is face and fuse(face, voice, "voice") is voice
    assert fuse(None, voice) is voice and fuse(face, None) is face
    assert fuse(face, None, "voice") is None
    with pytest.raises(ValueError, match="fusion must be one of"):
        fuse(face, voice, "loud")


def test_the_plot_says_why_a_video_has_no_fused_emotion():
    from emocli.outputs import plot_title
    from emocli.timeline import Emotion, FaceResult, Row, Timeline

    face = FaceResult(0, (0, 0, 9, 9), 0.9, Emotion.of([0.1, 0, 0, 0.9, 0, 0, 0]), False)
    facts = {"video": "talk/a.mp4", "fusion": "voice"}
    assert plot_title(Timeline([Row("a.mp4", 0.0, 1.0, face, False)], facts)) == (
        "a.mp4: no fused emotion (--fusion voice: no one seen speaking)"
    )
    assert plot_title(Timeline([Row("a.mp4", 0.0, 1.0)], facts)) == "a.mp4: no face or speech found"
    fused = Row("a.mp4", 0.0, 1.0, face, False, None, face.emotion)
    assert plot_title(Timeline([fused], facts)) == "a.mp4: mostly happy"


def test_the_dominant_emotion_is_the_one_fused_for_the_most_seconds():
    """Not the most probability mass: a label second everywhere does not win; a short last
    interval counts for its length; it agrees with the people table's."""
    from emocli.labels import LABELS
    from emocli.timeline import Emotion, FaceResult, Row, Timeline

    def p(**shares):
        rest = (1 - sum(shares.values())) / (len(LABELS) - len(shares))
        return Emotion.of([shares.get(label, rest) for label in LABELS])

    face = FaceResult(0, (0, 0, 9, 9), 0.9, p(neutral=0.5))
    close = p(neutral=0.4, angry=0.35)  # neutral, with angry a close second
    rows = [Row("v", float(t), t + 1.0, face, False, None, close) for t in range(3)]
    rows += [Row("v", 3.0, 4.0, face, False, None, p(angry=0.9)), Row("v", 4.0, 4.5, face, False, None, p(angry=0.9))]
    timeline = Timeline(rows)
    assert timeline.dominant_emotion() == "neutral" == timeline.people()[0]["dominant_fused_emotion"]
