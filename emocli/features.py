"""Audio features: the one function that both training and inference use.

A model's ``emocli.preprocess`` metadata is a ``FeatureSpec`` (plus the scaler
statistics), so inference computes exactly what the model was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16_000
N_PITCH = 2  # voicing, log2(f0 / 100 Hz)
PITCH_RATE = 8000  # Hz: pitch is tracked on the signal resampled to this rate (harmonics to 4 kHz)
PITCH_FRAME_S = 0.048  # about three periods of the lowest pitch
F0_RANGE = (60.0, 500.0)  # Hz: low male voices to high children's and shouted ones
VOICED = 0.5  # voicing from which a frame's pitch counts
OCTAVE_COST = 0.02  # per octave of longer lag: favours the true period over its multiples
TELEPHONE_BAND = (300.0, 3400.0)  # Hz: what a telephone line passes
TELEPHONE_FLOOR = 1e-4  # power left outside it by the training's telephone augmentation (-40 dB)
NARROWBAND_HZ = 4000.0  # a window with next to nothing above this is narrowband (a phone, 8 kHz audio)


@dataclass(frozen=True)
class FeatureSpec:
    sample_rate: int = SAMPLE_RATE
    window_s: float = 2.0  # the audio window a prediction sees
    n_fft: int = 512
    hop: int = 160
    n_mels: int = 64
    n_mfcc: int = 40
    fmin: float = 20.0
    fmax: float = 8000.0
    pitch: bool = False  # two more features a frame: voicing and log pitch (``pitch_features``)
    pitch_relative: bool = False  # the pitch as the window's own contour (``relative_pitch``)
    # (low, high) dBFS: where the training clips' speech levels mostly lie (``speech_gain``)
    level_range: tuple[float, ...] = ()
    fill_narrowband: bool = False  # narrowband windows get the telephone band's floor (``fill_narrowband``)
    mean: tuple[float, ...] = field(default=(), repr=False)  # per-feature scaler statistics
    std: tuple[float, ...] = field(default=(), repr=False)

    @property
    def n_features(self) -> int:
        return self.n_mfcc + self.n_mels + (N_PITCH if self.pitch else 0)

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @property
    def window_frames(self) -> int:
        return 1 + self.window_samples // self.hop

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"], d["level_range"] = list(self.mean), list(self.std), list(self.level_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["mean"] = tuple(known.get("mean", ()))
        known["std"] = tuple(known.get("std", ()))
        known["level_range"] = tuple(known.get("level_range", ()))
        return cls(**known)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above.
    hz = np.asarray(hz, np.float64)
    mel = hz / (200.0 / 3)
    log = hz >= 1000.0
    return np.where(log, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0)), mel * (200.0 / 3))


@lru_cache(maxsize=8)
def mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular mel filters, Slaney-normalised: ``librosa.filters.mel`` to float32 precision.

    Written out in numpy because importing librosa costs 1-2 s per process, most of a
    short video's processing time; tests/test_features.py checks it against librosa.
    """
    fft_hz = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


@lru_cache(maxsize=8)
def dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    # Orthonormal DCT-II, as librosa.feature.mfcc(norm="ortho").
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)[:, None]
    basis = np.cos(np.pi / n_mels * (n + 0.5) * k) * np.sqrt(2.0 / n_mels)
    basis[0] *= 1.0 / np.sqrt(2.0)
    return basis.astype(np.float32)


def mel_power(signal: np.ndarray, spec: FeatureSpec = FeatureSpec()) -> np.ndarray:
    """Mel-band power ``(frames, n_mels)`` of a mono float signal at ``spec.sample_rate``: one
    frame per ``hop`` samples (centred, reflect-padded, Hann window: librosa's conventions)."""
    y = np.asarray(signal, dtype=np.float32).reshape(-1)
    pad = spec.n_fft // 2
    if len(y) == 0:
        y = np.zeros(1, dtype=np.float32)
    y = np.pad(y, pad, mode="reflect" if len(y) > pad else "constant")
    n_frames = 1 + (len(y) - spec.n_fft) // spec.hop
    frames = np.lib.stride_tricks.as_strided(
        y, shape=(n_frames, spec.n_fft), strides=(y.strides[0] * spec.hop, y.strides[0])
    )
    window = np.hanning(spec.n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return power.astype(np.float32) @ mel_basis(spec.sample_rate, spec.n_fft, spec.n_mels, spec.fmin, spec.fmax).T


@lru_cache(maxsize=8)
def band_centres(spec: FeatureSpec) -> np.ndarray:
    """Each mel band's centre frequency (Hz), from its filter's peak."""
    fft_hz = np.fft.rfftfreq(spec.n_fft, 1.0 / spec.sample_rate)
    return fft_hz[np.argmax(mel_basis(spec.sample_rate, spec.n_fft, spec.n_mels, spec.fmin, spec.fmax), axis=1)]


def fill_narrowband(mel: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """A window's mel power with, where the window is narrowband (its bands above
    ``NARROWBAND_HZ`` hold less than ``TELEPHONE_FLOOR`` of the telephone band's power: a phone
    line, audio sampled at 8 kHz), the bands outside ``TELEPHONE_BAND`` raised to that floor of
    each frame's mean in the band: what the training's telephone augmentation leaves there.
    Left empty they read about -100 dB, further under the speech than anything the nets were
    trained on. Wideband windows pass unchanged."""
    centres = band_centres(spec)
    inside = (centres >= TELEPHONE_BAND[0]) & (centres <= TELEPHONE_BAND[1])
    if mel[:, centres > NARROWBAND_HZ].sum() >= TELEPHONE_FLOOR * mel[:, inside].sum():
        return mel
    out = mel.copy()
    out[:, ~inside] = np.maximum(mel[:, ~inside], TELEPHONE_FLOOR * mel[:, inside].mean(axis=1, keepdims=True))
    return out


def features_from_mel(mel: np.ndarray, spec: FeatureSpec = FeatureSpec()) -> np.ndarray:
    """MFCC + log-mel ``(frames, n_mfcc + n_mels)`` float32 from mel-band power, unnormalised
    (narrowband windows filled first where ``spec.fill_narrowband``)."""
    if spec.fill_narrowband:
        mel = fill_narrowband(mel, spec)
    log_mel = 10.0 * np.log10(np.maximum(mel, 1e-10))
    mfcc = log_mel @ dct_matrix(spec.n_mels, spec.n_mfcc).T
    return np.concatenate([mfcc, log_mel], axis=1).astype(np.float32)


@lru_cache(maxsize=4)
def _pitch_window(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A Hann window and its own normalised autocorrelation (the bias Boersma's method divides out)."""
    window = np.hanning(n + 1)[:-1]
    auto = np.fft.irfft(np.abs(np.fft.rfft(window, 2 * n)) ** 2)[:n]
    return window.astype(np.float32), (auto / auto[0]).astype(np.float32)


def pitch_features(signal: np.ndarray, spec: FeatureSpec = FeatureSpec()) -> np.ndarray:
    """Voicing and pitch ``(frames, 2)``, framed as ``mel_power`` (one frame per ``hop``, centred).

    Voicing is a frame's normalised autocorrelation at its best lag within ``F0_RANGE``
    (Boersma 1993: the windowed frame's autocorrelation divided by the window's); 1 for a
    perfectly periodic frame, near 0 for noise. Pitch is ``log2(f0 / 100 Hz)`` where voicing
    reaches ``VOICED``, else 0. Prosody is what MFCC and mel bands blur: they resolve
    neither the fundamental nor its harmonics on low voices.
    """
    y = np.asarray(signal, dtype=np.float32).reshape(-1)
    n_frames = 1 + len(y) // spec.hop
    sr, hop = min(PITCH_RATE, spec.sample_rate), spec.hop
    if sr < spec.sample_rate and len(y) > 1:  # Fourier resampling: an ideal low-pass, then fewer samples
        hop = spec.hop * sr / spec.sample_rate
        size = int(round(len(y) * sr / spec.sample_rate))
        y = (np.fft.irfft(np.fft.rfft(y)[: size // 2 + 1], size) * (size / len(y))).astype(np.float32)
    n = int(round(PITCH_FRAME_S * sr))
    starts = np.round(np.arange(n_frames) * hop).astype(int)
    y = np.pad(y, (n // 2, n // 2 + int(np.ceil(hop))), mode="constant")
    frames = y[starts[:, None] + np.arange(n)]
    window, window_auto = _pitch_window(n)
    frames = (frames - frames.mean(1, keepdims=True)) * window
    auto = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * n, axis=1)) ** 2, axis=1)[:, :n]
    lo, hi = int(np.ceil(sr / F0_RANGE[1])), int(np.floor(sr / F0_RANGE[0]))
    energy = auto[:, :1]
    r = auto[:, lo : hi + 1] / np.maximum(energy, 1e-10) / window_auto[lo : hi + 1]
    lags = np.arange(lo, hi + 1)
    best = np.argmax(r - OCTAVE_COST * np.log2(lags / lo), axis=1)
    rows = np.arange(n_frames)
    peak = r[rows, best]
    # Parabolic interpolation between the best lag's neighbours: a fraction of a sample.
    left, right = r[rows, np.maximum(best - 1, 0)], r[rows, np.minimum(best + 1, len(lags) - 1)]
    curve = left - 2 * peak + right
    shift = np.where(curve < 0, 0.5 * (left - right) / np.minimum(curve, -1e-9), 0.0)
    voicing = np.where(energy[:, 0] > 1e-7 * n, np.clip(peak, 0.0, 1.0), 0.0)
    f0 = sr / (lags[best] + np.clip(shift, -0.5, 0.5))
    pitch = np.where(voicing >= VOICED, np.log2(f0 / 100.0), 0.0)
    return np.stack([voicing, pitch], axis=1).astype(np.float32)


def relative_pitch(prosody: np.ndarray) -> np.ndarray:
    """``pitch_features`` of one window with each voiced frame's pitch taken from the median
    of the window's voiced frames: its intonation (rises, falls, range), not the speaker's
    register, which says more about who speaks than how they feel."""
    voiced = prosody[:, 1] != 0
    if not voiced.any():
        return prosody
    out = prosody.copy()
    out[voiced, 1] -= np.median(prosody[voiced, 1])
    return out


def as_specified(prosody: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """A window's ``pitch_features`` as ``spec`` feeds them to the net (``relative_pitch``
    with ``spec.pitch_relative``): the one place training and inference both go through."""
    return relative_pitch(prosody) if spec.pitch_relative else prosody


def audio_features(signal: np.ndarray, spec: FeatureSpec = FeatureSpec()) -> np.ndarray:
    """MFCC + log-mel frames of a mono float signal: ``features_from_mel(mel_power(signal))``,
    then with ``spec.pitch`` the ``pitch_features`` of each frame (``relative_pitch`` with
    ``spec.pitch_relative``).

    Training augments the mel power in between; inference goes straight through.
    """
    features = features_from_mel(mel_power(signal, spec), spec)
    if spec.pitch:
        features = np.concatenate([features, as_specified(pitch_features(signal, spec), spec)], axis=1)
    return features


def speech_gain(level_db: float | None, spec: FeatureSpec) -> float:
    """The factor that brings speech heard at ``level_db`` (dBFS, ``SpeechTrack.speech_level``)
    into the model's ``level_range``; 1 when it is there already, or unknown. The nets learnt each
    corpus's recording level along with its emotions, so a microphone's distance or gain moved
    their answers; within the range a recording keeps its level."""
    if not spec.level_range or level_db is None:
        return 1.0
    low, high = spec.level_range
    return float(10 ** ((min(max(level_db, low), high) - level_db) / 20))


def normalize(features: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Apply the model's stored scaler statistics (identity when it has none)."""
    if not spec.mean:
        return features
    return (features - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)


def fit_window(signal: np.ndarray, n_samples: int) -> np.ndarray:
    """Centre-crop or zero-pad a signal to exactly ``n_samples``."""
    if len(signal) >= n_samples:
        start = (len(signal) - n_samples) // 2
        return signal[start : start + n_samples]
    out = np.zeros(n_samples, dtype=np.float32)
    start = (n_samples - len(signal)) // 2
    out[start : start + len(signal)] = signal
    return out
