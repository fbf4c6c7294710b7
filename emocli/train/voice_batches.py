"""Training batches for the voice model: balanced draws of augmented waveforms, as features.

Real recordings differ from the studio corpora in noise, room, microphone, telephone
band and level, so every training window is perturbed as a waveform first (speed, gain,
noise at a random SNR, reverberation, telephone band, 8-bit mu-law) and only then turned
into features by ``features.audio_features``, the function inference uses.

Draws are balanced: each corpus is drawn in proportion to a power of its size (0.5: the
largest corpus does not drown the small ones) and, within a corpus, each of its classes
equally. Each target carries its corpus's label set, for ``masked_crossentropy``.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from ..features import FeatureSpec, audio_features, normalize
from ..labels import LABELS


@dataclass
class Augment:
    speed: float = 0.1  # resampled by 1 +- this: tempo and pitch together
    gain_db: float = 10.0  # level change, +- this many dB
    noise_p: float = 0.5  # share of windows with added noise ...
    snr_db: tuple[float, float] = (0.0, 25.0)  # ... at an SNR drawn from this range
    reverb_p: float = 0.3
    telephone_p: float = 0.15  # 300-3400 Hz band
    mulaw_p: float = 0.1  # 8-bit mu-law: a codec's quantisation
    time_masks: int = 2  # SpecAugment: masks of up to 10% of the frames each
    freq_masks: int = 2  # ... and of up to 8 mel bands each


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise of power 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.maximum(np.arange(len(spectrum)), 1.0) ** (exponent / 2)
    y = np.fft.irfft(spectrum, n)
    return y / (np.sqrt(np.mean(y**2)) + 1e-9)


def _tonal(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A few harmonic notes with vibrato: music-like background."""
    t = np.arange(n) / sr
    y = np.zeros(n)
    for f0 in rng.uniform(110, 880, rng.integers(1, 4)):
        vibrato = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(3, 7) * t)
        for k in range(1, 5):
            y += np.sin(2 * np.pi * f0 * k * np.cumsum(vibrato) / sr) / k
    return y / (np.sqrt(np.mean(y**2)) + 1e-9)


def _fft_convolve(y: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = len(y) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(y, size) * np.fft.rfft(h, size), size)[: len(y)]


def _band(y: np.ndarray, sr: int, low: float, high: float) -> np.ndarray:
    spectrum = np.fft.rfft(y)
    f = np.fft.rfftfreq(len(y), 1 / sr)
    spectrum[(f < low) | (f > high)] = 0
    return np.fft.irfft(spectrum, len(y))


def augment_waveform(y: np.ndarray, sr: int, a: Augment, rng: np.random.Generator, babble=None) -> np.ndarray:
    """A perturbed copy of a float waveform (same length). ``babble``: another clip, as speech noise."""
    n = len(y)
    y = y.astype(np.float64)
    if rng.random() < a.reverb_p:
        rt60 = rng.uniform(0.15, 0.8)
        t = np.arange(int(sr * rt60)) / sr
        h = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
        h[0] = 1.0 / rng.uniform(0.3, 1.0)  # the direct sound
        wet = _fft_convolve(y, h)
        y = wet * np.sqrt(np.mean(y**2) / (np.mean(wet**2) + 1e-12))
    if rng.random() < a.noise_p:
        kind = rng.integers(0, 5)
        if kind < 3:
            noise = coloured_noise(n, float(kind), rng)
        elif kind == 3:
            noise = _tonal(n, sr, rng)
        else:
            noise = babble if babble is not None and np.any(babble) else coloured_noise(n, 1.0, rng)
            noise = noise / (np.sqrt(np.mean(noise**2)) + 1e-9)
        power = np.mean(y**2) + 1e-10
        y = y + noise * np.sqrt(power / 10 ** (rng.uniform(*a.snr_db) / 10))
    if rng.random() < a.telephone_p:
        y = _band(y, sr, 300.0, 3400.0)
    y *= 10 ** (rng.uniform(-a.gain_db, a.gain_db) / 20)
    peak = np.abs(y).max()
    if peak > 1.0:
        y /= peak
    if rng.random() < a.mulaw_p:
        mu = 255.0
        q = np.round((np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu) + 1) * 127.5)
        c = q / 127.5 - 1
        y = np.sign(c) * np.expm1(np.abs(c) * np.log1p(mu)) / mu
    return y.astype(np.float32)


def crop(wave: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``n``-sample stretch of ``wave``; a shorter clip is placed at random in silence."""
    if len(wave) >= n:
        start = rng.integers(0, len(wave) - n + 1)
        return wave[start : start + n]
    out = np.zeros(n, np.float32)
    start = rng.integers(0, n - len(wave) + 1)
    out[start : start + len(wave)] = wave
    return out


def sampling_weights(corpora: np.ndarray, y: np.ndarray, power: float) -> np.ndarray:
    """Per-clip draw probabilities: corpora by size**power, classes equal within a corpus."""
    w = np.zeros(len(y))
    names, sizes = np.unique(corpora, return_counts=True)
    shares = sizes.astype(float) ** power
    shares /= shares.sum()
    for name, share in zip(names, shares, strict=True):
        in_corpus = corpora == name
        classes = np.unique(y[in_corpus])
        for c in classes:
            members = in_corpus & (y == c)
            w[members] = share / len(classes) / members.sum()
    return w / w.sum()


def label_masks(corpora: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, 7) 0/1: the labels each clip's corpus uses."""
    masks = np.zeros((len(y), len(LABELS)), np.float32)
    for name in np.unique(corpora):
        in_corpus = corpora == name
        masks[np.ix_(in_corpus, np.unique(y[in_corpus]))] = 1.0
    return masks


class WaveBatches(keras.utils.PyDataset):
    """``steps`` batches per epoch of (features, [one-hot | label mask]), drawn with replacement.

    Batch ``b`` of epoch ``e`` comes from ``default_rng([seed, e, b])``, so a resumed run
    draws what an uninterrupted one would.
    """

    def __init__(
        self,
        waves: list[np.ndarray],
        y: np.ndarray,
        corpora: list[str],
        spec: FeatureSpec,
        augment: Augment,
        batch_size: int,
        steps: int,
        power: float = 0.5,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.waves, self.y, self.spec, self.augment = waves, y, spec, augment
        self.batch_size, self.steps, self.seed = batch_size, steps, seed
        self.p = sampling_weights(np.asarray(corpora), y, power)
        self.masks = label_masks(np.asarray(corpora), y)
        self.epoch = 0
        self.n = spec.window_samples

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def window(self, i: int, rng: np.random.Generator) -> np.ndarray:
        a = self.augment
        rate = rng.uniform(1 - a.speed, 1 + a.speed)
        raw = crop(self.waves[i], int(self.n * rate), rng).astype(np.float32) / 32767.0
        y = np.interp(np.linspace(0, len(raw) - 1, self.n), np.arange(len(raw)), raw).astype(np.float32)
        other = self.waves[rng.integers(0, len(self.waves))]
        babble = crop(other, self.n, rng).astype(np.float32) / 32767.0
        y = augment_waveform(y, self.spec.sample_rate, a, rng, babble)
        x = normalize(audio_features(y, self.spec), self.spec)
        for _ in range(a.time_masks):
            width = rng.integers(0, len(x) // 10 + 1)
            start = rng.integers(0, len(x) - width + 1)
            x[start : start + width] = 0.0  # the training mean
        for _ in range(a.freq_masks):
            width = rng.integers(0, 9)
            start = self.spec.n_mfcc + rng.integers(0, self.spec.n_mels - width + 1)
            x[:, start : start + width] = 0.0
        return x

    def __getitem__(self, b: int):
        rng = np.random.default_rng([self.seed, self.epoch, b])
        idx = rng.choice(len(self.y), self.batch_size, p=self.p)
        x = np.stack([self.window(i, rng) for i in idx])
        target = np.concatenate([keras.utils.to_categorical(self.y[idx], len(LABELS)), self.masks[idx]], axis=1)
        return x, target.astype(np.float32)


@keras.saving.register_keras_serializable(package="emocli")
def masked_crossentropy(target, probs):
    """Cross-entropy of the softmax restricted to the clip's corpus's labels.

    ``target`` is [one-hot | mask]. With ``p = softmax(z)``, ``p_y / sum(p * mask)`` is the
    softmax of ``z`` over the masked labels alone, so a corpus that never labels "disgust"
    teaches nothing about how often disgust occurs.
    """
    k = len(LABELS)
    onehot, mask = target[:, :k], target[:, k:]
    ops = keras.ops
    kept = ops.sum(probs * mask, axis=1) + 1e-7
    p_true = ops.sum(probs * onehot, axis=1) + 1e-7
    # Label smoothing within the mask: a tenth of the target spread over the corpus's labels.
    uniform = ops.sum(ops.log(probs + 1e-7) * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)
    return -(0.9 * ops.log(p_true) + 0.1 * uniform) + ops.log(kept)
