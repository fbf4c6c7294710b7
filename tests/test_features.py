"""The one audio-feature function: librosa's conventions, reproduced without importing librosa."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import tone

from emocli.features import FeatureSpec, audio_features, fit_window, mel_basis


@pytest.mark.parametrize(
    "sr,n_fft,n_mels,fmin,fmax", [(16000, 512, 64, 20.0, 8000.0), (22050, 1024, 128, 0.0, 11025.0)]
)
def test_mel_basis_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
    librosa = pytest.importorskip("librosa")
    ours = mel_basis(sr, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.shape == ref.shape
    assert np.allclose(ours, ref, rtol=1e-5, atol=1e-7)


def test_features_match_librosa_mfcc_and_logmel():
    librosa = pytest.importorskip("librosa")
    spec = FeatureSpec()
    rng = np.random.default_rng(0)
    y = (tone(1.0, 300, 0.3) + 0.05 * rng.standard_normal(16000)).astype(np.float32)
    ours = audio_features(y, spec)
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=16000,
        n_fft=512,
        hop_length=160,
        n_mels=64,
        fmin=20,
        fmax=8000,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=2.0,
    )
    log_mel = 10 * np.log10(np.maximum(mel, 1e-10))
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=40, norm="ortho")
    assert ours.shape == (log_mel.shape[1], 104)
    assert np.allclose(ours[:, 40:], log_mel.T, atol=1e-2)
    assert np.allclose(ours[:, :40], mfcc.T, atol=5e-2)


def test_frames_follow_the_hop_and_window():
    spec = FeatureSpec()
    assert audio_features(np.zeros(spec.window_samples, np.float32), spec).shape == (
        spec.window_frames,
        spec.n_features,
    )
    assert len(fit_window(np.ones(10, np.float32), 20)) == 20 and len(fit_window(np.ones(30, np.float32), 20)) == 20


def test_features_import_no_librosa():
    code = "import sys, numpy as np; from emocli.features import audio_features; audio_features(np.ones(16000, np.float32)); print('librosa' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("f0", [80.0, 150.0, 220.0, 400.0])
def test_pitch_of_harmonic_tones_alone_and_under_noise(f0):
    from emocli.features import VOICED, pitch_features

    sr = 16_000
    t = np.arange(2 * sr) / sr
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)).astype(np.float32) * 0.1
    noise = np.random.default_rng(0).standard_normal(len(t)).astype(np.float32)
    noise *= np.sqrt(np.mean(tone**2) / 10)  # 10 dB SNR
    for signal, least_voicing in ((tone, 0.98), (tone + noise, 0.8)):
        p = pitch_features(signal)[5:-5]
        assert p[:, 0].mean() > least_voicing and np.all(p[:, 0] >= VOICED)
        assert np.median(np.abs(p[:, 1] - np.log2(f0 / 100))) * 12 < 0.1  # semitones


def test_pitch_features_are_framed_as_the_mel_bands_and_silent_on_noise():
    from emocli.features import FeatureSpec, audio_features, mel_power, pitch_features

    for n in (1, 100, 999, 16_000, 32_001):
        assert len(pitch_features(np.ones(n, np.float32))) == len(mel_power(np.ones(n, np.float32)))
    noise = np.random.default_rng(1).standard_normal(32_000).astype(np.float32) * 0.1
    p = pitch_features(noise)
    assert p[:, 0].mean() < 0.3 and (p[:, 1] != 0).mean() < 0.05
    assert not pitch_features(np.zeros(32_000, np.float32)).any()
    spec = FeatureSpec(pitch=True)
    features = audio_features(noise, spec)
    assert spec.n_features == features.shape[1] == 106 and np.array_equal(features[:, 104:], p)
    assert FeatureSpec.from_dict(spec.to_dict()) == spec and not FeatureSpec.from_dict({}).pitch


def test_relative_pitch_keeps_the_intonation_and_drops_the_register():
    from emocli.features import pitch_features, relative_pitch

    t = np.arange(32_000) / 16_000
    glide = 2 ** (t / 4)  # a rise of half an octave over the window

    def voice(f0):
        phase = 2 * np.pi * np.cumsum(f0 * glide) / 16_000
        return sum(np.sin(k * phase) / k for k in range(1, 5)).astype(np.float32) * 0.1

    low, high = (relative_pitch(pitch_features(voice(f0)))[10:-10] for f0 in (100.0, 170.0))
    assert np.all(low[:, 0] > 0.9) and np.allclose(low[:, 1], high[:, 1], atol=0.05)  # the same contour
    assert abs(np.median(low[:, 1])) < 0.02 and np.ptp(low[:, 1]) > 0.4  # centred, half an octave's range
    silent = pitch_features(np.zeros(32_000, np.float32))
    assert np.array_equal(relative_pitch(silent), silent)


def telephone(x: np.ndarray) -> np.ndarray:
    """``x`` through an ideal 300-3400 Hz telephone line."""
    spectrum = np.fft.rfft(x)
    hz = np.fft.rfftfreq(len(x), 1 / 16_000)
    spectrum[(hz < 300) | (hz > 3400)] = 0
    return np.fft.irfft(spectrum, len(x)).astype(np.float32)


def test_narrowband_speech_is_heard_as_training_simulates_a_telephone(speech):
    """Training makes a telephone of a wideband window by taking its bands outside 300-3400 Hz
    down to TELEPHONE_FLOOR; a real narrowband window has them empty. Filled, its log-mel there
    lies near the simulation's; left empty, about 20 dB below it. Inside the band, and in
    every wideband window, nothing changes."""
    from emocli.features import TELEPHONE_FLOOR, band_centres, features_from_mel, mel_power

    spec, plain = FeatureSpec(fill_narrowband=True), FeatureSpec()
    outside = (band_centres(spec) < 300) | (band_centres(spec) > 3400)
    for start in range(0, len(speech) - 32_000, 16_000):
        window = speech[start : start + 32_000]
        simulated = features_from_mel(mel_power(window, spec) * np.where(outside, TELEPHONE_FLOOR, 1.0), spec)
        heard, empty = (audio_features(telephone(window), s)[:, spec.n_mfcc :] for s in (spec, plain))
        gap, empty_gap = (np.median(np.abs(h - simulated[:, spec.n_mfcc :])[:, outside]) for h in (heard, empty))
        assert gap < 2.0 and empty_gap > 15.0  # dB
        np.testing.assert_allclose(heard[:, ~outside], empty[:, ~outside])
        np.testing.assert_array_equal(audio_features(window, spec), audio_features(window, plain))
    silence = np.zeros(32_000, np.float32)
    np.testing.assert_array_equal(audio_features(silence, spec), audio_features(silence, plain))


def test_a_recording_made_at_8_khz_is_narrowband(tmp_path, speech):
    from conftest import write_wav

    from emocli.features import fill_narrowband, mel_power
    from emocli.media import read_audio
    from emocli.media.tools import ffmpeg

    wideband = write_wav(tmp_path / "wide.wav", speech)
    phone = tmp_path / "phone.wav"
    subprocess.run([ffmpeg(), "-v", "error", "-i", str(wideband), "-ar", "8000", str(phone)], check=True)
    spec = FeatureSpec(fill_narrowband=True)
    heard = mel_power(read_audio(phone, 16_000)[:32_000], spec)
    assert not np.array_equal(fill_narrowband(heard, spec), heard)
    as_recorded = mel_power(read_audio(wideband, 16_000)[:32_000], spec)
    np.testing.assert_array_equal(fill_narrowband(as_recorded, spec), as_recorded)
