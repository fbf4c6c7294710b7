"""Mains hum under speech is taken out of every track read, so neither the voice-activity
detector nor the voice model hears it; speech and music without hum pass unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_onnx, make_video, scene, tone, write_wav

import emocli
from emocli.features import FeatureSpec, audio_features
from emocli.labels import LABELS
from emocli.media import read_audio
from emocli.media.hum import HumRemover

SR = 16_000


def mains(seconds: float, hz: float, amplitudes: dict[int, float]) -> np.ndarray:
    """Hum at ``hz`` with each harmonic k at ``amplitudes[k]`` (a phase of its own)."""
    t = np.arange(int(seconds * SR)) / SR
    return sum(a * np.sin(2 * np.pi * hz * k * t + k) for k, a in amplitudes.items()).astype(np.float32)


HUMS = {
    "50 Hz and its third harmonic, -20 dBFS (a ground loop)": (50.0, {1: 0.137, 3: 0.04}),
    "60 Hz running 0.05 Hz slow, three harmonics, -32 dBFS": (59.95, {1: 0.03, 2: 0.015, 3: 0.01}),
}


def db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20)


def removed(samples: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    remover = HumRemover(SR)
    out = np.concatenate([remover(samples[k : k + chunk]) for k in range(0, len(samples), chunk)])
    return out, remover.lines


@pytest.mark.parametrize("hum", HUMS, ids=["50Hz", "60Hz-slow"])
@pytest.mark.parametrize("chunk", [1 << 30, 16_384, 1_024], ids=["whole", "file-chunks", "live-packets"])
def test_hum_under_speech_is_subtracted(speech, hum, chunk):
    hz, amplitudes = HUMS[hum]
    noise = mains(len(speech) / SR, hz, amplitudes)
    out, lines = removed(speech + noise, chunk)
    assert len(out) == len(speech)
    expected = sorted(hz * k for k in amplitudes)
    np.testing.assert_allclose(sorted(lines), expected, atol=0.1)
    # Without look-ahead, a stream in small packets keeps its hum until half a second has
    # come, and its fits see less than a second until one has.
    settled = slice(0 if chunk >= SR else SR, None)
    assert db(out[settled] - speech[settled]) < db(noise) - 25


@pytest.mark.parametrize("chunk", [1 << 30, 16_384, 1_024])
def test_speech_and_music_without_hum_pass_unchanged(speech, chunk):
    chord = sum(tone(len(speech) / SR, f, 0.05) for f in (220.0, 277.2, 329.6, 440.0))
    for clean in (speech, speech + chord, np.zeros(3 * SR, np.float32)):
        out, lines = removed(clean, chunk)
        assert len(lines) == 0
        np.testing.assert_array_equal(out, clean)


def test_a_track_read_has_its_hum_taken_out(tmp_path, speech):
    noise = mains(len(speech) / SR, 50.0, {1: 0.137, 3: 0.04})
    heard = read_audio(write_wav(tmp_path / "hum.wav", speech + noise), SR)
    as_stored = read_audio(write_wav(tmp_path / "clean.wav", speech), SR)
    assert db(heard[SR:] - as_stored[SR:]) < db(noise) - 25


def low_band_voice(path, speech: np.ndarray, hummed: np.ndarray):
    """A voice model that hears hum: angry where the two lowest mel bands (20-110 Hz, below
    nearly all speech) are louder than half-way between the speech's and the hummed speech's."""
    spec = FeatureSpec()
    low = slice(spec.n_mfcc, spec.n_mfcc + 2)
    level = [float(np.mean(audio_features(x, spec)[:, low])) for x in (speech, hummed)]
    w = np.zeros((spec.n_features, len(LABELS)))
    b = np.zeros(len(LABELS))
    w[low, LABELS.index("angry")], b[LABELS.index("angry")] = 0.5, -np.mean(level)
    w[low, LABELS.index("neutral")], b[LABELS.index("neutral")] = -0.5, np.mean(level)
    return build_onnx(path, "voice", spec.to_dict(), "features", ["N", "T", spec.n_features], [1], w, b)


def test_hum_does_not_change_the_voice_of_a_video(tmp_path, models, speech, face_image):
    """The same speech with and without a ground loop's hum, through `emocli process`'s
    reading (AAC in MP4): the voice of every interval is the clean one's, though the model
    calls the hum itself angry."""
    noise = mains(len(speech) / SR, 50.0, {1: 0.137, 3: 0.04})
    voice = low_band_voice(tmp_path / "voice.onnx", speech, speech + noise)
    frames = [scene(face_image)] * int(len(speech) / SR * 5)
    clean = make_video(tmp_path / "clean.mp4", frames, fps=5, audio=speech)
    hummed = make_video(tmp_path / "hummed.mp4", frames, fps=5, audio=speech + noise)
    with emocli.Analyzer(face_model=models["face_model"], voice_model=voice) as analyzer:
        voices = [np.array([r.voice.p for r in analyzer.timeline(p).rows if r.voice]) for p in (clean, hummed)]
        raw = analyzer.voice_model.predict([(speech + noise)[: 2 * SR]])  # the hum as stored
    assert LABELS[int(raw.argmax())] == "angry"
    assert len(voices[0]) == len(voices[1]) >= 3
    assert {LABELS[k] for k in voices[1].argmax(1)} == {LABELS[k] for k in voices[0].argmax(1)} == {"neutral"}
    np.testing.assert_allclose(voices[1], voices[0], atol=0.05)
