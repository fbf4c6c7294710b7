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

