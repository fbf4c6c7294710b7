"""A voice member on a pretrained speaker encoder: `emocli train voice --speaker-encoder FILE`.

Resemblyzer's encoder (GE2E: three LSTM layers over 40-band mel power, trained to tell
thousands of speakers apart in LibriSpeech and VoxCeleb) has heard far more voices, languages
and microphones than the emotion corpora hold. The mean and deviation over a window of each
unit of its first two layers describe how the voice sounds there; a softmax over them,
trained on the emotion corpora with the encoder frozen, errs on other clips than the CNNs do,
so it joins them as a member of the shipped average (`emocli export A.onnx B.onnx --weights`).

The member reads the CNNs' own input (MFCC + log-mel frames), so one file serves both: it
takes the log-mel half back to power, maps the 64 bands onto the encoder's 40 (a
least-squares map fitted on training speech, clipped at zero), keeps every other frame (half the
cost; the statistics hardly move), raises quiet windows to the level the encoder was trained
at, and runs the two layers.
"""

from __future__ import annotations

from dataclasses import asdict

import keras
import numpy as np
from keras import layers

from ..datasets import find_audio, load_waveforms
from ..features import SAMPLE_RATE, FeatureSpec, mel_power
from ..labels import LABELS
from ..outputs import atomic_path
from .run import RunDir, plot_confusion, set_seed
from .torch_checkpoint import read_torch_checkpoint

ENCODER_SPEC = FeatureSpec(n_fft=400, hop=160, n_mels=40, fmin=0.0, fmax=8000.0)  # Resemblyzer's mel frames
ENCODER_LAYERS = 2  # of its three: the third is shaped most by telling speakers apart
FRAME_STRIDE = 2
REFERENCE_DBFS = -30.0  # Resemblyzer raises quieter speech to this level before encoding
MAX_GAIN = 1e4  # power: +40 dB at most, so near-silence is not blown up into noise
HEAD_L2 = 3e-4
HEAD_EPOCHS = 30
MAP_CLIPS = 400  # training clips the 64-to-40-band map is fitted on


@keras.saving.register_keras_serializable(package="emocli")
class LogMelPower(layers.Layer):
    """Mel-band power from the log-mel columns of the voice features, every ``stride``-th frame."""

    def __init__(self, first: int, n_mels: int, stride: int = 1, mean=(), std=(), **kwargs):
        super().__init__(**kwargs)
        self.first, self.n_mels, self.stride = first, n_mels, stride
        self.mean, self.std = list(mean), list(std)

    def call(self, x):
        log_mel = x[:, :: self.stride, self.first : self.first + self.n_mels]
        if self.mean:  # undo the model's scaler on these columns
            log_mel = log_mel * np.asarray(self.std, "float32") + np.asarray(self.mean, "float32")
        return keras.ops.power(10.0, log_mel / 10.0)

    def get_config(self):
        return {
            **super().get_config(),
            "first": self.first,
            "n_mels": self.n_mels,
            "stride": self.stride,
            "mean": self.mean,
            "std": self.std,
        }


@keras.saving.register_keras_serializable(package="emocli")
class ReferenceGain(layers.Layer):
    """Raises a window whose mean power is under ``reference`` to it (``max_gain`` at most)."""

    def __init__(self, reference: float, max_gain: float = MAX_GAIN, **kwargs):
        super().__init__(**kwargs)
        self.reference, self.max_gain = float(reference), float(max_gain)

    def call(self, x):
        level = keras.ops.mean(x, axis=(1, 2), keepdims=True)
        gain = keras.ops.clip(self.reference / keras.ops.maximum(level, 1e-12), 1.0, self.max_gain)
        return x * gain

    def get_config(self):
        return {**super().get_config(), "reference": self.reference, "max_gain": self.max_gain}


@keras.saving.register_keras_serializable(package="emocli")
class MeanStdPooling(layers.Layer):
    """Each channel's mean and standard deviation over time."""

    def call(self, x):
        return keras.ops.concatenate([keras.ops.mean(x, axis=1), keras.ops.std(x, axis=1)], axis=-1)


def lstm_weights(state: dict, layer: int) -> list[np.ndarray]:
    """A torch ``nn.LSTM`` layer's weights in Keras's order: both use gates i, f, g(c), o."""
    w_ih, w_hh = state[f"lstm.weight_ih_l{layer}"], state[f"lstm.weight_hh_l{layer}"]
    bias = state[f"lstm.bias_ih_l{layer}"] + state[f"lstm.bias_hh_l{layer}"]
    return [w_ih.T.astype(np.float32), w_hh.T.astype(np.float32), bias.astype(np.float32)]


def encoder_state(path: str) -> dict:
    """The LSTM weights of a Resemblyzer checkpoint (its ``pretrained.pt``, or the wheel holding it)."""
    checkpoint = read_torch_checkpoint(path)
    state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else None
    needed = [f"lstm.{k}_l{i}" for i in range(ENCODER_LAYERS) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    if not isinstance(state, dict) or any(k not in state for k in needed):
        raise ValueError(f"{path}: not a speaker encoder checkpoint (expected Resemblyzer's LSTM weights)")
    if state["lstm.weight_ih_l0"].shape[1] != ENCODER_SPEC.n_mels:
        raise ValueError(f"{path}: its encoder reads {state['lstm.weight_ih_l0'].shape[1]} mel bands, not 40")
    return state


def band_map(signals: list[np.ndarray], spec: FeatureSpec) -> tuple[np.ndarray, float]:
    """(map, reference): the non-negative ``(spec.n_mels, 40)`` matrix taking the voice
    features' mel power to the encoder's bands (least squares over the frames of ``signals``,
    each frame scaled to unit power, then clipped at 0), and the mean mapped power of speech
    at REFERENCE_DBFS."""
    ours, theirs, levels = [], [], []
    for signal in signals:
        a, b = mel_power(signal, spec), mel_power(signal, ENCODER_SPEC)
        n = min(len(a), len(b))
        total = a[:n].sum(1, keepdims=True)
        keep = total[:, 0] > 1e-8
        ours.append(a[:n][keep] / total[keep])
        theirs.append(b[:n][keep] / total[keep])
    mapping = np.clip(np.linalg.lstsq(np.concatenate(ours), np.concatenate(theirs), rcond=None)[0], 0.0, None)
    for signal in signals:
        rms = float(np.sqrt(np.mean(signal**2)))
        if rms > 1e-6:
            scaled = signal * (10 ** (REFERENCE_DBFS / 20) / rms)
            levels.append(float(np.mean(np.maximum(mel_power(scaled, spec), 1e-10) @ mapping)))
    return mapping.astype(np.float32), float(np.median(levels))


def build_encoder(state: dict, spec: FeatureSpec, mapping: np.ndarray, reference: float) -> keras.Model:
    """Voice features ``(time, spec.n_features)`` -> the encoder's per-window statistics (frozen)."""
    inputs = keras.Input((None, spec.n_features), name="features")
    first = spec.n_mfcc
    mean = list(spec.mean[first : first + spec.n_mels]) if spec.mean else []
    std = list(spec.std[first : first + spec.n_mels]) if spec.mean else []
    x = LogMelPower(first, spec.n_mels, FRAME_STRIDE, mean, std, name="mel_power")(inputs)
    to_bands = layers.Dense(ENCODER_SPEC.n_mels, use_bias=False, trainable=False, name="encoder_bands")
    x = ReferenceGain(reference, name="reference_gain")(to_bands(x))
    pooled = []
    lstms = []
    for i in range(ENCODER_LAYERS):
        lstm = layers.LSTM(state[f"lstm.weight_hh_l{i}"].shape[1], return_sequences=True, trainable=False)
        x = lstm(x)
        lstms.append(lstm)
        pooled.append(MeanStdPooling(name=f"stats_{i}")(x))
    model = keras.Model(inputs, layers.Concatenate(name="statistics")(pooled), name="speaker_encoder")
    to_bands.set_weights([mapping])
    for i, lstm in enumerate(lstms):
        lstm.set_weights(lstm_weights(state, i))
    return model


def fit_head(stats: np.ndarray, y: np.ndarray, seed: int) -> keras.Model:
    """A softmax over standardised statistics (classes weighted to balance), the scaler folded in."""
    mean, std = stats.mean(0), np.maximum(stats.std(0), 1e-6)
    counts = np.bincount(y, minlength=len(LABELS)).astype(np.float64)
    class_weight = np.where(counts > 0, len(y) / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)
    set_seed(seed)
    head = keras.Sequential(
        [keras.Input((stats.shape[1],)), layers.Dense(len(LABELS), kernel_regularizer=keras.regularizers.l2(HEAD_L2))]
    )
    head.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    head.fit(
        ((stats - mean) / std).astype(np.float32),
        y,
        sample_weight=class_weight[y].astype(np.float32),
        batch_size=256,
        epochs=HEAD_EPOCHS,
        verbose=0,
    )
    kernel, bias = head.layers[-1].get_weights()
    inputs = keras.Input((stats.shape[1],), name="statistics")
    dense = layers.Dense(len(LABELS), activation="softmax", name="probabilities")
    model = keras.Model(inputs, dense(inputs), name="head")
    dense.set_weights([kernel / std[:, None], bias - (mean / std) @ kernel])
    return model


def train_voice_encoder(config, out, quiet: bool = False) -> dict:
    """``train_voice`` for ``config.speaker_encoder``: the encoder member in ``out``; returns its metrics."""
    from .voice import _split, held_out_metrics, make_group, speech_level_range

    run = RunDir(out)
    set_seed(config.seed)
    state = encoder_state(config.speaker_encoder)
    items = find_audio(config.data, calm="neutral")
    waves, items = load_waveforms(items, SAMPLE_RATE)
    train, held = _split(items, config)
    # no scaler: the member reads the features as computed, whatever file it joins
    spec = FeatureSpec(level_range=speech_level_range([waves[i] for i in train]))
    labels = np.asarray([LABELS.index(it.label) for it in items], np.int64)
    rng = np.random.default_rng(config.seed)
    sample = rng.choice(train, min(MAP_CLIPS, len(train)), replace=False)
    mapping, reference = band_map([waves[i].astype(np.float32) / 32767.0 for i in sample], spec)
    encoder = build_encoder(state, spec, mapping, reference)

    if not quiet:
        print(f"encoding {len(train)} training clips ...", flush=True)
    stats, y = [], []
    for start in range(0, len(train), 256):  # a chunk's windows at a time: all of them would not fit
        chunk = train[start : start + 256]
        part = make_group("train", [waves[i] for i in chunk], labels[chunk], spec)
        stats.append(encoder.predict(part.windows, batch_size=256, verbose=0))
        y.append(np.repeat(part.y, np.diff(part.bounds)))
    head = fit_head(np.concatenate(stats), np.concatenate(y), config.seed)
    member = keras.Model(encoder.inputs, head(encoder.outputs[0]), name="emocli_voice_encoder")

    groups = [make_group(name, [waves[i] for i in idx], labels[idx], spec) for name, idx in held.items()]
    scored = held_out_metrics(
        groups, lambda x: member.predict(x, batch_size=256, verbose=0), config, items, held, spec, len(train)
    )
    with atomic_path(run / "model.keras") as tmp:
        member.save(tmp)
    run.write_json("config.json", {"task": "voice", **asdict(config), "backend": keras.backend.backend()})
    run.write_json("preprocess.json", {**spec.to_dict(), "temperature": scored["calibration"]["temperature"]})
    metrics = {**scored, "model": f"speaker encoder ({ENCODER_LAYERS} LSTM layers, frozen) + softmax"}
    title = f"held out: mean accuracy {metrics['validation']['accuracy']:.3f} over {len(groups)} groups"
    plot_confusion(metrics["validation"]["pooled"], run / "confusion.png", title)
    run.write_json("metrics.json", metrics)
    return metrics
