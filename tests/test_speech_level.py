"""A recording's level does not decide the voice's emotion: the stream's speech is heard at
the levels the voice model was trained on (``FeatureSpec.level_range``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import CLIPS, build_onnx, tone, write_wav

import emocli
from emocli.evaluate import clip_windows
from emocli.features import FeatureSpec, speech_gain
from emocli.labels import LABELS
from emocli.media import read_audio

SR = 16_000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Two real sentences (CREMA-D) with a second of silence between: about 5.5 s."""
    clips = [read_audio(CLIPS / f"1001_DFA_{e}_XX.mp4", SR) for e in ("NEU", "ANG")]
    return np.concatenate([clips[0], np.zeros(SR, np.float32), clips[1]])


def db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)))


def test_the_speech_level_is_the_speech_s_alone(detector, speech):
    level = detector.speech_level(speech)
    assert level > db(speech)  # the pause does not lower it
    padded = np.concatenate([np.zeros(3 * SR, np.float32), speech, np.zeros(3 * SR, np.float32)])
    assert detector.speech_level(padded) == pytest.approx(level, abs=0.3)
    assert detector.speech_level(speech * np.float32(0.1)) == pytest.approx(level - 20, abs=0.5)
    assert detector.speech_level(tone(3.0)) is None  # a tone is not speech
    assert detector.speech_level(np.zeros(SR, np.float32)) is None


def test_the_level_heard_window_by_window_is_the_whole_s(detector, speech):
    track = detector.track()
    levels = []
    for begin in range(-SR, len(speech), SR):  # 2 s windows, 1 s apart, as the pipeline hears them
        window = np.zeros(2 * SR, np.float32)
        lo, hi = max(begin, 0), min(begin + 2 * SR, len(speech))
        window[lo - begin : hi - begin] = speech[lo:hi]
        track.window(window, begin)
        levels.append(track.speech_level)
    assert levels[0] is not None and levels[-1] == pytest.approx(detector.speech_level(speech), abs=0.01)


@pytest.mark.parametrize(
    "level, expected_db", [(-40.0, 10.0), (-25.0, 0.0), (-30.0, 0.0), (-20.0, 0.0), (-8.0, -12.0), (None, 0.0)]
)
def test_speech_outside_the_range_is_brought_to_its_nearer_end(level, expected_db):
    spec = FeatureSpec(level_range=(-30.0, -20.0))
    assert 20 * np.log10(speech_gain(level, spec)) == pytest.approx(expected_db)
    assert speech_gain(level, FeatureSpec()) == 1.0  # a model without a range hears levels as they are


def test_the_range_travels_in_the_model_file():
    spec = FeatureSpec(level_range=(-29.9, -20.0))
    assert FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert FeatureSpec.from_dict({k: v for k, v in spec.to_dict().items() if k != "level_range"}).level_range == ()


def levelled_voice(voice_onnx, path, level_range):
    """The tests' voice model (the mean log-mel level decides angry against neutral) with a range."""
    import onnx

    proto = onnx.load(str(voice_onnx))
    meta = {p.key: p.value for p in proto.metadata_props}
    spec = FeatureSpec.from_dict(json.loads(meta["emocli.preprocess"]))
    w = np.zeros((spec.n_features, len(LABELS)))
    b = np.zeros(len(LABELS))
    # angry above -64 dB of mean log-mel, neutral below: the example speech 6 dB down has windows
    # on both sides (-82 to -55)
    w[spec.n_mfcc :, LABELS.index("angry")], b[LABELS.index("angry")] = 1.0 / spec.n_mels, 64.0
    w[spec.n_mfcc :, LABELS.index("neutral")], b[LABELS.index("neutral")] = -1.0 / spec.n_mels, -64.0
    preprocess = {**spec.to_dict(), "level_range": list(level_range)}
    return build_onnx(path, "voice", preprocess, "features", ["N", "T", spec.n_features], [1], w, b)


def voice_of(analyzer, path) -> np.ndarray:
    rows = analyzer.timeline(path).rows
    return np.array([r.voice.p for r in rows if r.voice is not None])


def test_a_quiet_or_hot_recording_gets_the_voice_its_speech_has_at_the_models_level(
    tmp_path, models, detector, speech, voice_onnx
):
    """The same speech recorded 26 dB quieter and 10 dB hotter: heard as it is, a model that
    learnt levels calls the quiet one neutral and the hot one angry; heard at its level
    range, all three get the voice of the speech brought into it, interval by interval."""
    level = detector.speech_level(speech)
    assert np.abs(speech).max() < 0.33  # 10 dB hotter still within full scale
    quiet = write_wav(tmp_path / "quiet.wav", speech * np.float32(0.05))
    hot = write_wav(tmp_path / "hot.wav", speech * np.float32(3.0))
    at_range = write_wav(tmp_path / "at.wav", speech * np.float32(10 ** ((level - 6 - level) / 20)))
    levelled = levelled_voice(voice_onnx, tmp_path / "levelled.onnx", (level - 6, level - 6))
    plain = levelled_voice(voice_onnx, tmp_path / "plain.onnx", ())
    with emocli.Analyzer(face_model=models["face_model"], voice_model=plain) as analyzer:
        heard = {p.stem: voice_of(analyzer, p) for p in (quiet, hot)}
    assert {LABELS[k] for k in heard["quiet"].argmax(1)} == {"neutral"}
    assert np.mean(heard["hot"].argmax(1) == LABELS.index("angry")) > 0.5
    with emocli.Analyzer(face_model=models["face_model"], voice_model=levelled) as analyzer:
        heard = {p.stem: voice_of(analyzer, p) for p in (quiet, hot, at_range)}
    assert len(heard["quiet"]) == len(heard["hot"]) == len(heard["at"]) >= 4
    # The same labels; the probabilities as close as the level heard so far allows (it is
    # estimated from the speech frames the detector finds, a few more or less at each level).
    for other in ("quiet", "hot"):
        assert heard[other].argmax(1).tolist() == heard["at"].argmax(1).tolist()
        np.testing.assert_allclose(heard[other], heard["at"], atol=0.15)
    assert len(set(heard["at"].argmax(1).tolist())) == 2  # the range's windows fall on both sides


def test_speech_within_the_range_is_heard_as_it_is(tmp_path, models, detector, speech, voice_onnx):
    level = detector.speech_level(speech)
    wav = write_wav(tmp_path / "speech.wav", speech)
    voices = []
    for name, level_range in (("wide", (level - 10, level + 10)), ("none", ())):
        model = levelled_voice(voice_onnx, tmp_path / f"{name}.onnx", level_range)
        with emocli.Analyzer(face_model=models["face_model"], voice_model=model) as analyzer:
            voices.append(voice_of(analyzer, wav))
    assert len(voices[0]) >= 4
    np.testing.assert_array_equal(voices[0], voices[1])


def test_evaluate_hears_each_clip_at_the_models_level(detector, speech):
    spec = FeatureSpec(level_range=(-30.0, -30.0))
    quiet, loud = (clip_windows(speech * np.float32(g), spec)[..., spec.n_mfcc :] for g in (0.1, 3.0))  # log-mel
    speaking = quiet > -60  # bands above the silence between the sentences
    np.testing.assert_allclose(quiet[speaking], loud[speaking], atol=0.5)  # dB: 29.5 apart as recorded
    as_recorded = clip_windows(speech * np.float32(0.1), FeatureSpec())[..., spec.n_mfcc :]
    assert np.median(quiet[speaking] - as_recorded[speaking]) == pytest.approx(19.0, abs=0.5)  # -49 -> -30 dBFS


def test_training_stores_the_quartiles_of_its_clips_speech_levels(detector):
    from emocli.train.voice import speech_level_range

    clips = [read_audio(p, SR) for p in sorted(CLIPS.glob("*.mp4"))]
    levels = sorted(detector.speech_level(c) for c in clips)
    waves = [np.round(c * 32767).astype(np.int16) for c in clips] + [np.round(tone(2.0) * 32767).astype(np.int16)]
    low, high = speech_level_range(waves)  # the tone has no speech: it does not count
    assert np.percentile(levels, 25) == pytest.approx(low, abs=0.02)
    assert np.percentile(levels, 75) == pytest.approx(high, abs=0.02)
    assert speech_level_range(waves[-1:]) == ()
