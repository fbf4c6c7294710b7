"""The voice recipe's parts: balanced draws, the masked loss, waveform augmentation, calibration."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
pytest.importorskip("keras")

from emocli.train.voice import fit_temperature, held_out_speakers  # noqa: E402
from emocli.train.voice_batches import (  # noqa: E402
    Augment,
    augment_mel,
    label_masks,
    masked_crossentropy,
    sampling_weights,
)


def test_draws_balance_corpora_by_square_root_and_classes_within_each():
    corpora = np.array(["big"] * 900 + ["small"] * 100)
    y = np.array([0] * 800 + [3] * 100 + [4] * 50 + [6] * 50)
    p = sampling_weights(corpora, y, power=0.5)
    assert p.sum() == pytest.approx(1.0)
    assert p[corpora == "big"].sum() / p[corpora == "small"].sum() == pytest.approx(3.0)  # sqrt(900 / 100)
    assert p[y == 0].sum() == pytest.approx(p[y == 3].sum())  # classes of "big" drawn equally
    assert p[y == 4].sum() == pytest.approx(p[y == 6].sum())


def test_a_corpus_weight_multiplies_that_corpus_share_of_the_draws():
    corpora = np.array(["big"] * 900 + ["small"] * 100)
    y = np.array([0] * 900 + [3] * 100)
    p = sampling_weights(corpora, y, power=0.5, corpus_weights={"small": 6.0})
    assert p.sum() == pytest.approx(1.0)
    assert p[corpora == "small"].sum() / p[corpora == "big"].sum() == pytest.approx(2.0)  # 6 * sqrt(100 / 900)


def test_masked_loss_ignores_labels_the_corpus_never_uses():
    import keras

    masks = label_masks(np.array(["a", "a", "b"]), np.array([0, 3, 4]))
    assert masks[0].tolist() == masks[1].tolist() == [1, 0, 0, 1, 0, 0, 0] and masks[2, 4] == 1 and masks[2].sum() == 1
    target = np.concatenate([np.eye(7)[[0]], masks[[0]]], axis=1).astype(np.float32)
    # Same odds between angry and happy, different mass elsewhere: the same loss.
    p1 = np.array([[0.30, 0.05, 0.05, 0.10, 0.20, 0.20, 0.10]], np.float32)
    p2 = np.array([[0.06, 0.30, 0.30, 0.02, 0.12, 0.10, 0.10]], np.float32)
    l1 = float(keras.ops.convert_to_numpy(masked_crossentropy(target, p1))[0])
    l2 = float(keras.ops.convert_to_numpy(masked_crossentropy(target, p2))[0])
    assert l1 == pytest.approx(l2, abs=1e-5)
    worse = np.array([[0.10, 0.05, 0.05, 0.30, 0.20, 0.20, 0.10]], np.float32)
    assert float(keras.ops.convert_to_numpy(masked_crossentropy(target, worse))[0]) > l1 + 0.5
    # The labels the corpus lacks, weighed in part (--missing-label-weight): p2's mass on them
    # now costs, and the most at weight 1, the plain cross-entropy.
    gaps = []
    for weight in (0.0, 0.5, 1.0):
        partial = np.concatenate([np.eye(7)[[0]], masks[[0]] + weight * (1 - masks[[0]])], axis=1).astype(np.float32)
        loss = [float(keras.ops.convert_to_numpy(masked_crossentropy(partial, p))[0]) for p in (p1, p2)]
        gaps.append(loss[1] - loss[0])
    assert gaps[0] == pytest.approx(0.0, abs=1e-5) and 0.1 < gaps[1] < gaps[2]


@pytest.mark.parametrize("missing", [0.0, 0.25, 1.0])
def test_batches_weigh_the_labels_a_corpus_lacks_as_asked(missing):
    from emocli.features import FeatureSpec, mel_power
    from emocli.train.voice_batches import MelBatches

    spec = FeatureSpec()
    rng = np.random.default_rng(0)
    mels = [mel_power(rng.normal(0, 0.1, 24_000).astype(np.float32), spec) for _ in range(4)]
    spec = FeatureSpec(mean=tuple([0.0] * spec.n_features), std=tuple([1.0] * spec.n_features))
    batches = MelBatches(
        mels, np.array([0, 3, 4, 4]), ["a", "a", "b", "b"], spec, Augment(), 8, 1, missing_label_weight=missing
    )
    x, target = batches[0]
    onehot, mask = target[:, :7], target[:, 7:]
    assert x.shape == (8, spec.window_frames, spec.n_features) and np.all(onehot.sum(1) == 1)
    from_b = onehot[:, 4] == 1
    assert from_b.any() and not from_b.all()  # both corpora drawn
    # corpus "a" labels angry and happy, "b" sad alone; the others weigh ``missing``
    a, b = np.eye(7)[[0, 3]].sum(0), np.eye(7)[4]
    assert np.allclose(mask[from_b], b + missing * (1 - b)) and np.allclose(mask[~from_b], a + missing * (1 - a))


def test_augmented_windows_stay_finite_and_perturb_as_asked():
    from emocli.features import FeatureSpec, band_centres, mel_power
    from emocli.train.voice_batches import noise_bank

    spec = FeatureSpec()
    rng = np.random.default_rng(0)
    t = np.arange(32_000) / 16_000
    voiced = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    mel = mel_power(voiced, spec)
    noises = noise_bank(spec, per_kind=1)
    always = Augment(noise_p=1.0, reverb_p=1.0, telephone_p=0.0)
    augmented = [augment_mel(mel, spec, always, rng, noises) for _ in range(10)]
    outs = [o for o, _ in augmented]
    assert all(o.shape == mel.shape and np.all(np.isfinite(o)) and np.all(o >= 0) for o in outs)
    # Noise fills the pauses: the quietest frames are far louder than in the clean window.
    quiet = mel.sum(1) <= np.percentile(mel.sum(1), 20)
    assert quiet.sum() > 20 and all(o[quiet].mean() > 1e-3 * mel.mean() > mel[quiet].mean() for o in outs)
    # ... so the direct sound's share of those frames' power is small, and never above 1.
    shares = np.stack([share for _, share in augmented])
    assert np.all((shares >= 0) & (shares <= 1)) and shares[:, quiet].mean() < 0.1 < shares[:, ~quiet].mean()
    # The telephone band keeps 300-3400 Hz and drops the rest, at unchanged gain.
    phone = Augment(speed=0, warp=0, gain_db=0, tilt_db=0, noise_p=0, reverb_p=0, telephone_p=1.0)
    out, share = augment_mel(mel, spec, phone, rng, noises)
    assert np.all(share == 1.0)  # no noise, no room: all of it is direct sound
    centres = band_centres(spec)
    inside = (centres >= 300) & (centres <= 3400)
    assert np.allclose(out[:, inside], mel[:, inside]) and np.all(out[:, ~inside] <= mel[:, ~inside] * 1e-3)


def test_temperature_softens_overconfident_probabilities():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 2000)
    right = rng.random(2000) < 0.5  # right half the time ...
    predicted = np.where(right, y, (y + rng.integers(1, 7, 2000)) % 7)
    probs = np.full((2000, 7), 0.01 / 6)
    probs[np.arange(2000), predicted] = 0.99  # ... at 99 % confidence
    t = fit_temperature(probs, y)
    assert t > 2.0
    calibrated = probs ** (1 / t)
    calibrated /= calibrated.sum(1, keepdims=True)
    assert calibrated.max(1).mean() == pytest.approx(0.5, abs=0.1)


def test_speaker_holdout_is_a_fraction_of_larger_corpora_and_stable():
    from emocli.datasets import AudioItem

    items = [
        AudioItem(f"{c}{s}.wav", "happy", f"{c}:{s}", c, "happy")
        for c, n in (("big", 10), ("tiny", 2))
        for s in range(n)
    ]
    held = held_out_speakers(items, set(), 0.2)
    assert len(held) == 2 and all(s.startswith("big:") for s in held)
    assert held == held_out_speakers(list(reversed(items)), set(), 0.2)
    assert held_out_speakers(items, {"big:3"}, 0.2) == {"big:3"}  # named speakers replace the fraction there


def test_pitch_perturbation_follows_noise_and_shifts_the_speaker():
    from emocli.features import VOICED, FeatureSpec, pitch_features
    from emocli.train.voice_batches import perturb_pitch

    t = np.arange(32_000) / 16_000
    tone = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 5)).astype(np.float32) * 0.1
    clean = pitch_features(tone, FeatureSpec())
    rng = np.random.default_rng(0)
    a = Augment(pitch=0.15)
    share = np.full(len(clean), 0.9, np.float32)
    share[:50] = 0.2  # the first half second drowned in noise
    out = perturb_pitch(clean, share, a, rng)
    assert np.allclose(out[:, 0], clean[:, 0] * share)
    assert np.all(out[:50, 1] == 0)  # no longer voiced: no pitch
    voiced = out[50:-5]
    assert np.all(voiced[:, 0] >= VOICED)
    shift = voiced[:, 1] - clean[50:-5, 1]
    assert np.ptp(shift) < 1e-5 and 0 < abs(shift[0]) <= np.log2(1.15) + 1e-6  # one shift for the whole window
    off = perturb_pitch(clean, np.ones(len(clean), np.float32), Augment(pitch=0), rng)
    assert np.allclose(off, clean)
