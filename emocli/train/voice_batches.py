"""Training batches for the voice model: balanced draws of augmented windows, as features.

Real recordings differ from the studio corpora in noise, room, microphone, telephone
band and level, so every training window is perturbed. The perturbations act on each
clip's mel-band power (``features.mel_power``), where they are cheap and nearly exact:
power adds (noise at a random SNR, another voice as babble), a room smears it over time
(an exponential reverberation tail), a channel scales bands (telephone band, spectral
tilt, gain), and tempo and vocal-tract length resample its axes. ``features_from_mel``
then gives the features inference computes.

Draws are balanced: each corpus is drawn in proportion to a power of its size (0.5: the
largest corpus does not drown the small ones) and, within a corpus, each of its classes
equally. Each target carries its corpus's label set, for ``masked_crossentropy``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import keras
import numpy as np

from ..features import (
    N_PITCH,
    TELEPHONE_BAND,
    TELEPHONE_FLOOR,
    VOICED,
    FeatureSpec,
    as_specified,
    band_centres,
    features_from_mel,
    mel_power,
)
from ..labels import LABELS


@dataclass
class Augment:
    speed: float = 0.1  # tempo: the time axis resampled by 1 +- this
    warp: float = 0.1  # vocal-tract length: the mel axis stretched by 1 +- this
    gain_db: float = 10.0  # level change, +- this many dB
    tilt_db: float = 6.0  # microphone colour: a spectral slope of +- this many dB over the band
    noise_p: float = 0.5  # share of windows with added noise ...
    snr_db: tuple[float, float] = (0.0, 25.0)  # ... at an SNR drawn from this range
    reverb_p: float = 0.3
    telephone_p: float = 0.15  # 300-3400 Hz band
    pitch: float = 0.15  # the speaker's pitch scaled by 1 +- this (with ``FeatureSpec.pitch``)
    time_masks: int = 2  # SpecAugment: masks of up to 10% of the frames each
    freq_masks: int = 2  # ... and of up to 8 mel bands each


AUGMENT_PRESETS = {
    "full": Augment(),
    "light": Augment(gain_db=6.0, tilt_db=3.0, noise_p=0.25, snr_db=(10.0, 30.0), reverb_p=0.1, telephone_p=0.05),
    # Every perturbation's strength or share at zero (the SNR range then never applies).
    "off": Augment(**{f.name: 0 for f in fields(Augment) if f.name != "snr_db"}),
}


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise of power 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.maximum(np.arange(len(spectrum)), 1.0) ** (exponent / 2)
    y = np.fft.irfft(spectrum, n)
    return y / (np.sqrt(np.mean(y**2)) + 1e-9)


def tonal(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A few harmonic notes with vibrato: a music-like background, unit RMS."""
    t = np.arange(n) / sr
    y = np.zeros(n)
    for f0 in rng.uniform(110, 880, rng.integers(1, 4)):
        vibrato = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(3, 7) * t)
        for k in range(1, 5):
            y += np.sin(2 * np.pi * f0 * k * np.cumsum(vibrato) / sr) / k
    return y / (np.sqrt(np.mean(y**2)) + 1e-9)


def noise_bank(spec: FeatureSpec, seed: int = 0, per_kind: int = 8, seconds: float = 4.0) -> list[np.ndarray]:
    """Mel power of white, pink and brown noise and of music-like tones, 4 s each."""
    rng = np.random.default_rng([seed, 7])
    n = int(seconds * spec.sample_rate)
    signals = [coloured_noise(n, e, rng) for e in (0.0, 1.0, 2.0) for _ in range(per_kind)]
    signals += [tonal(n, spec.sample_rate, rng) for _ in range(per_kind)]
    return [mel_power(0.1 * y.astype(np.float32), spec) for y in signals]


def _resample(x: np.ndarray, n: int, axis: int = 0) -> np.ndarray:
    """Linear interpolation of ``x`` to ``n`` points along ``axis`` (0 or 1)."""
    length = x.shape[axis]
    pos = np.linspace(0, length - 1, n)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, length - 1)
    frac = (pos - i0).astype(np.float32)
    if axis == 0:
        return x[i0] * (1 - frac[:, None]) + x[i1] * frac[:, None]
    return x[:, i0] * (1 - frac) + x[:, i1] * frac


def crop(mel: np.ndarray, n: int, rng: np.random.Generator, floor: np.ndarray) -> np.ndarray:
    """``n`` frames of ``mel`` from a random start; a shorter clip is placed at random in ``floor``."""
    if len(mel) >= n:
        start = rng.integers(0, len(mel) - n + 1)
        return mel[start : start + n].copy()
    out = np.repeat(floor[None], n, axis=0)
    start = rng.integers(0, n - len(mel) + 1)
    out[start : start + len(mel)] = mel
    return out


def reverberate(mel: np.ndarray, hop_s: float, rng: np.random.Generator) -> np.ndarray:
    """A room's exponential tail (RT60 0.15-0.8 s) added to the direct sound, band by band."""
    rt60 = rng.uniform(0.15, 0.8)
    k = np.arange(1, int(rt60 / hop_s) + 1)
    tail = 10 ** (-6.0 * k * hop_s / rt60)  # power falls 60 dB over RT60
    tail *= rng.uniform(0.3, 1.5) / tail.sum()  # reverberant-to-direct energy
    n = len(mel) + len(k)
    size = 1 << (n - 1).bit_length()
    kernel = np.zeros(size)
    kernel[1 : len(k) + 1] = tail
    kernel[0] = 1.0
    wet = np.fft.irfft(np.fft.rfft(mel, size, axis=0) * np.fft.rfft(kernel)[:, None], size, axis=0)[: len(mel)]
    return np.maximum(wet, 0.0).astype(np.float32)


def augment_mel(
    mel: np.ndarray, spec: FeatureSpec, a: Augment, rng: np.random.Generator, noises: list, babble=None
) -> tuple[np.ndarray, np.ndarray]:
    """A perturbed copy of a window's mel power (same shape), and each frame's share of its
    power that is the direct sound (not room or noise). ``babble``: another clip's window."""
    n, bands = mel.shape
    if a.warp > 0:  # band j takes the power of band j * alpha: alpha > 1 sounds like a shorter vocal tract
        mel = _resample(mel, int(round(bands * rng.uniform(1 - a.warp, 1 + a.warp))), axis=1)
        mel = mel[:, :bands] if mel.shape[1] >= bands else np.pad(mel, ((0, 0), (0, bands - mel.shape[1])), "edge")
    direct = mel.sum(1)
    if rng.random() < a.reverb_p:
        mel = reverberate(mel, spec.hop / spec.sample_rate, rng)
    if rng.random() < a.noise_p:
        pick = rng.integers(0, len(noises) + 1)
        noise = babble if pick == len(noises) and babble is not None else noises[pick % len(noises)]
        start = rng.integers(0, max(1, len(noise) - n + 1))
        noise = noise[start : start + n]
        if len(noise) < n:
            noise = np.resize(noise, (n, bands))
        snr = 10 ** (rng.uniform(*a.snr_db) / 10)
        mel = mel + noise * (mel.mean() / (noise.mean() + 1e-12) / snr)
    share = np.minimum((direct + 1e-12) / (mel.sum(1) + 1e-12), 1.0)
    if rng.random() < a.telephone_p:
        centres = band_centres(spec)
        outside = (centres < TELEPHONE_BAND[0]) | (centres > TELEPHONE_BAND[1])
        mel = mel * np.where(outside, TELEPHONE_FLOOR, 1.0).astype(np.float32)
    slope = np.linspace(-0.5, 0.5, bands) * rng.uniform(-a.tilt_db, a.tilt_db)
    gain = rng.uniform(-a.gain_db, a.gain_db)
    return (mel * 10 ** ((slope + gain) / 10)).astype(np.float32), share.astype(np.float32)


def perturb_pitch(prosody: np.ndarray, share: np.ndarray, a: Augment, rng: np.random.Generator) -> np.ndarray:
    """``features.pitch_features`` of the clean window, as the perturbed one would give them:
    voicing falls with the share of noise and room in each frame (a periodic signal's
    normalised autocorrelation scales by its share of the power), and the speaker's pitch
    is shifted as a whole."""
    voicing = prosody[:, 0] * share
    shift = np.log2(rng.uniform(1 - a.pitch, 1 + a.pitch)) if a.pitch > 0 else 0.0
    pitch = np.where((voicing >= VOICED) & (prosody[:, 1] != 0), prosody[:, 1] + shift, 0.0)
    return np.stack([voicing, pitch], axis=1).astype(np.float32)


def sampling_weights(
    corpora: np.ndarray, y: np.ndarray, power: float, corpus_weights: dict[str, float] | None = None
) -> np.ndarray:
    """Per-clip draw probabilities: corpora by size**power (times ``corpus_weights[name]``, 1
    when absent), classes equal within a corpus."""
    w = np.zeros(len(y))
    names, sizes = np.unique(corpora, return_counts=True)
    shares = sizes.astype(float) ** power * [(corpus_weights or {}).get(str(n), 1.0) for n in names]
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


class MelBatches(keras.utils.PyDataset):
    """``steps`` batches per epoch of (features, [one-hot | label mask]), drawn with replacement.

    ``mels`` are the training clips' mel power (``features.mel_power``). Batch ``b`` of
    epoch ``e`` comes from ``default_rng([seed, e, b])``, so a resumed run draws what an
    uninterrupted one would.
    """

    def __init__(
        self,
        mels: list[np.ndarray],
        y: np.ndarray,
        corpora: list[str],
        spec: FeatureSpec,
        augment: Augment,
        batch_size: int,
        steps: int,
        power: float = 0.5,
        seed: int = 0,
        corpus_weights: dict[str, float] | None = None,
        missing_label_weight: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.mels, self.y, self.spec, self.augment = mels, y, spec, augment
        self.batch_size, self.steps, self.seed = batch_size, steps, seed
        self.p = sampling_weights(np.asarray(corpora), y, power, corpus_weights)
        # The labels a clip's corpus lacks count at this weight in its softmax's normaliser
        # (masked_crossentropy): 0 leaves them out, 1 is the plain cross-entropy.
        masks = label_masks(np.asarray(corpora), y)
        self.masks = masks + missing_label_weight * (1.0 - masks)
        self.noises = noise_bank(spec, seed)
        self.floor = mel_power(np.zeros(spec.n_fft, np.float32), spec)[0]
        if spec.pitch:  # clip_mels's arrays carry the clean pitch features after the mel bands
            self.floor = np.concatenate([self.floor, np.zeros(N_PITCH, np.float32)])
        self.mean, self.std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def window(self, i: int, rng: np.random.Generator) -> np.ndarray:
        a, frames = self.augment, self.spec.window_frames
        rate = rng.uniform(1 - a.speed, 1 + a.speed)
        bands = self.spec.n_mels
        clip = _resample(crop(self.mels[i], max(2, int(round(frames * rate))), rng, self.floor), frames)
        babble = crop(self.mels[rng.integers(0, len(self.mels))], frames, rng, self.floor)[:, :bands]
        mel, share = augment_mel(clip[:, :bands], self.spec, a, rng, self.noises, babble)
        x = features_from_mel(mel, self.spec)
        if self.spec.pitch:
            x = np.concatenate([x, as_specified(perturb_pitch(clip[:, bands:], share, a, rng), self.spec)], axis=1)
        x = (x - self.mean) / self.std
        for _ in range(a.time_masks):
            width = rng.integers(0, frames // 10 + 1)
            start = rng.integers(0, frames - width + 1)
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
    """Cross-entropy of the softmax weighted towards the clip's corpus's labels.

    ``target`` is [one-hot | mask]; the mask is 1 for the labels the corpus uses and
    ``missing_label_weight`` for the rest (``MelBatches``). With ``p = softmax(z)``,
    ``p_y / sum(p * mask)``: with weight 0 the softmax of ``z`` over the corpus's labels alone,
    so a corpus that never labels "disgust" teaches nothing about how often disgust occurs;
    with weight 1 the plain cross-entropy.
    """
    k = len(LABELS)
    onehot, mask = target[:, :k], target[:, k:]
    ops = keras.ops
    kept = ops.sum(probs * mask, axis=1) + 1e-7
    p_true = ops.sum(probs * onehot, axis=1) + 1e-7
    # Label smoothing within the mask: a tenth of the target spread over the corpus's labels.
    uniform = ops.sum(ops.log(probs + 1e-7) * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)
    return -(0.9 * ops.log(p_true) + 0.1 * uniform) + ops.log(kept)
