"""Train the voice model for voices it never heard: a small 1D CNN over MFCC + log-mel frames.

Protocol: whole corpora (``holdout_corpora``) and whole speakers (``holdout_speakers``, plus
a fraction of every larger corpus's speakers) are left out of training. After every epoch
each held-out group is scored at clip level (softmax averaged over 2 s windows with 50 %
overlap, as ``emocli evaluate`` does); the best epoch is the best mean over the groups, so
no corpus's own test speakers choose the model (``keep="last"``: the last epoch, chosen by
none). A softmax temperature is then fitted on the held-out windows and stored with the
preprocessing, so inference's confidences are calibrated.

Corpora label different subsets of the seven emotions; in each clip's softmax the labels its
corpus never uses weigh ``missing_label_weight`` (``voice_batches.masked_crossentropy``: 0
leaves them out, 1 is the plain cross-entropy), and batches draw corpora and classes evenly
(``voice_batches.sampling_weights``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import keras
import numpy as np
from keras import layers

from ..datasets import AudioItem, find_audio, load_waveforms
from ..evaluate import clip_windows
from ..features import FeatureSpec, as_specified, features_from_mel, mel_power, pitch_features
from ..labels import LABELS
from .run import (
    KEEP,
    Checkpoint,
    RichProgress,
    RunDir,
    check_resume,
    classification_report,
    compile_for_training,
    plot_confusion,
    plot_curves,
    resume_schedule,
    set_seed,
)
from .voice_batches import Augment, MelBatches, masked_crossentropy

# RAVDESS actors 21-24 are kept by the project owners for the final measurement;
# 17-20 (two women, two men) are the held-out RAVDESS speakers here.
DEFAULT_HOLDOUT = ("ravdess:17", "ravdess:18", "ravdess:19", "ravdess:20")
MIN_SPEAKERS_TO_SPLIT = 5  # a corpus with fewer speakers is trained on whole (or held out whole)
LEVEL_CLIPS = 2000  # training clips (drawn with seed 0) whose speech levels set a run's level_range
POOLINGS = ("meanmax", "attention")


@keras.saving.register_keras_serializable(package="emocli")
class AttentiveStatsPooling(layers.Layer):
    """Attention-weighted mean and standard deviation over time (Okabe et al., 2018).

    A small scorer weighs every frame, so the emotional stretches of a window count more
    than its pauses and plain syllables; the deviation keeps how much each channel varies
    (prosody), which a mean alone loses.
    """

    def __init__(self, units: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = layers.Dense(units, activation="tanh")
        self.score = layers.Dense(1)

    def build(self, input_shape):
        self.hidden.build(input_shape)
        self.score.build((*input_shape[:-1], self.units))

    def call(self, x):
        ops = keras.ops
        weights = ops.softmax(self.score(self.hidden(x)), axis=1)
        mean = ops.sum(weights * x, axis=1)
        var = ops.sum(weights * ops.square(x), axis=1) - ops.square(mean)
        return ops.concatenate([mean, ops.sqrt(ops.maximum(var, 1e-6))], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@dataclass
class VoiceConfig:
    data: list[str]
    epochs: int = 30
    steps: int = 0  # batches per epoch; 0: as many as one pass over the training clips
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 64
    dropout: float = 0.3
    holdout_speakers: list[str] = field(default_factory=lambda: list(DEFAULT_HOLDOUT))
    holdout_fraction: float = 0.2  # of the speakers of every corpus with none named in holdout_speakers
    holdout_corpora: list[str] = field(default_factory=list)
    calm: str = "neutral"  # "calm" in training: "neutral" or "drop" (validation always scores it as neutral)
    corpus_power: float = 0.5  # corpora drawn in proportion to size**power
    corpus_weights: dict[str, float] = field(default_factory=dict)  # times each named corpus's share
    pitch: str = "off"  # voicing and pitch beside MFCC + log-mel: "off", "absolute" or "relative" (features.py)
    pooling: str = "meanmax"  # over time: "meanmax" (mean and max) or "attention" (AttentiveStatsPooling)
    augment: Augment = field(default_factory=Augment)
    missing_label_weight: float = 0.3  # of the labels a clip's corpus lacks, in its loss (0: masked out, 1: plain)
    keep: str = "best"  # model.keras: the best epoch on the held-out groups, or the last (run.KEEP)
    seed: int = 0
    speaker_encoder: str = ""  # a Resemblyzer checkpoint: train voice_encoder's member instead of the CNN

    def __post_init__(self):
        if isinstance(self.augment, dict):
            self.augment = Augment(**self.augment)
        if self.pitch not in ("off", "absolute", "relative"):
            raise ValueError(f"pitch must be 'off', 'absolute' or 'relative', not {self.pitch!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {self.pooling!r}")
        if not 0.0 <= self.missing_label_weight <= 1.0:
            raise ValueError(f"missing label weight must be within [0, 1], not {self.missing_label_weight}")
        if self.keep not in KEEP:
            raise ValueError(f"keep must be one of {', '.join(KEEP)}, not {self.keep!r}")
        if self.calm not in ("neutral", "drop"):
            raise ValueError(f"calm must be 'neutral' or 'drop', not {self.calm!r}")
        self.corpus_weights = {name.lower(): float(w) for name, w in self.corpus_weights.items()}
        if any(w <= 0 for w in self.corpus_weights.values()):
            raise ValueError(f"corpus weights must be above 0, not {self.corpus_weights}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout fraction must be within [0, 1), not {self.holdout_fraction}")
        self.holdout_speakers = [speaker_id(s) for s in self.holdout_speakers]  # 17 is ravdess:17


def speaker_id(name: str) -> str:
    """``19`` or ``ravdess:19`` -> ``ravdess:19``; other datasets' ids pass through (``tess:OAF``)."""
    name = name.strip()
    if name.isdigit():
        return f"ravdess:{int(name):02d}"
    dataset, _, speaker = name.partition(":")
    if dataset.lower() == "ravdess" and speaker.isdigit():
        return f"ravdess:{int(speaker):02d}"
    return name


def build_voice_model(
    n_features: int,
    width: int = 64,
    dropout: float = 0.3,
    n_classes: int = len(LABELS),
    pooling: str = "meanmax",
) -> keras.Model:
    """Conv1D blocks over time, then pooling over time (mean and max, or attentive statistics).

    The time axis is left open, so one model scores a 2 s window or a whole clip. The net
    sees each feature's deviation from the window's own mean beside the standardised
    features: cepstral mean normalisation removes much of the speaker's and the
    microphone's fixed colouring, while the raw half keeps level and spectral balance.
    """
    inputs = keras.Input((None, n_features), name="features")
    window_mean = layers.GlobalAveragePooling1D(keepdims=True, name="window_mean")(inputs)
    x = layers.Concatenate(name="with_centered")([inputs, layers.Subtract(name="centered")([inputs, window_mean])])
    x = layers.Conv1D(width, 1, use_bias=False)(x)  # mixes the features once, cheaply
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    for i, mult in enumerate((1, 2, 2, 3)):
        x = layers.Conv1D(width * mult, 5 if i == 0 else 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        if i < 3:
            x = layers.MaxPooling1D(2, padding="same")(x)
    if pooling == "attention":
        x = AttentiveStatsPooling(width, name="pooled")(x)
    else:
        x = layers.Concatenate(name="pooled")([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(width * 2, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="emocli_voice")


def clip_mels(waves: list[np.ndarray], spec: FeatureSpec) -> list[np.ndarray]:
    """Every clip's mel power (``features.mel_power``), what training augments; with
    ``spec.pitch`` each frame also carries the clean signal's ``pitch_features``."""
    from concurrent.futures import ThreadPoolExecutor

    def one(wave: np.ndarray) -> np.ndarray:
        signal = wave.astype(np.float32) / 32767.0
        mel = mel_power(signal, spec)
        return np.concatenate([mel, pitch_features(signal, spec)], axis=1) if spec.pitch else mel

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, waves))


def clip_features(mel: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """The unnormalised features of one of ``clip_mels``'s arrays."""
    features = features_from_mel(mel[:, : spec.n_mels], spec)
    if not spec.pitch:
        return features
    return np.concatenate([features, as_specified(mel[:, spec.n_mels :], spec)], axis=1)


def fit_scaler(mels: list[np.ndarray], spec: FeatureSpec) -> FeatureSpec:
    """The spec with per-feature mean/std over every frame of the (training) clips."""
    frames = np.concatenate([clip_features(m, spec) for m in mels])
    mean, std = frames.mean(0, dtype=np.float64), np.maximum(frames.std(0, dtype=np.float64), 1e-3)
    return FeatureSpec.from_dict({**spec.to_dict(), "mean": mean.round(5).tolist(), "std": std.round(5).tolist()})


def speech_level_range(waves: list[np.ndarray]) -> tuple[float, ...]:
    """``FeatureSpec.level_range`` for training clips (int16): the quartiles of their speech
    levels (``SpeechDetector.speech_level``), from up to LEVEL_CLIPS of them; () if none has speech."""
    from ..vad import default_detector

    detector = default_detector()
    picked = np.random.default_rng(0).permutation(len(waves))[:LEVEL_CLIPS]
    levels = [detector.speech_level(waves[i].astype(np.float32) / 32767.0) for i in picked]
    levels = [v for v in levels if v is not None]
    if not levels:
        return ()
    return tuple(round(float(v), 2) for v in np.percentile(levels, [25, 75]))


def held_out_speakers(items: list[AudioItem], named: set[str], fraction: float) -> set[str]:
    """``named``, plus ``fraction`` of the speakers of every corpus with at least
    MIN_SPEAKERS_TO_SPLIT speakers and none named; picked by a hash of their id, so the
    choice does not move with the data's order or the seed."""
    out = set(named)
    by_corpus: dict[str, set[str]] = {}
    for it in items:
        by_corpus.setdefault(it.dataset, set()).add(it.speaker)
    for speakers in by_corpus.values():
        if speakers & named or len(speakers) < MIN_SPEAKERS_TO_SPLIT:
            continue
        ranked = sorted(speakers, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
        out |= set(ranked[: round(fraction * len(speakers))])
    return out


@dataclass
class Group:
    """A held-out set scored on its own: one whole corpus, or one corpus's held-out speakers."""

    name: str
    windows: np.ndarray  # every clip's windows, stacked
    bounds: np.ndarray  # clip i's windows are windows[bounds[i]:bounds[i + 1]]
    y: np.ndarray

    def clip_probabilities(self, predict) -> np.ndarray:
        return self.per_clip(np.asarray(predict(self.windows)))

    def per_clip(self, window_probs: np.ndarray) -> np.ndarray:
        """Each clip's mean over its windows' probabilities."""
        return np.stack([window_probs[a:b].mean(0) for a, b in zip(self.bounds[:-1], self.bounds[1:])])

    def report(self, probs: np.ndarray) -> dict:
        classes = sorted(set(self.y.tolist()))
        return {
            **classification_report(self.y, probs.argmax(1)),
            "chance": round(1 / len(classes), 4),
            "classes": [LABELS[c] for c in classes],
        }


def make_group(name: str, waves: list[np.ndarray], y: np.ndarray, spec: FeatureSpec) -> Group:
    per_clip = [clip_windows(w.astype(np.float32) / 32767.0, spec) for w in waves]
    bounds = np.cumsum([0] + [len(w) for w in per_clip])
    return Group(name, np.concatenate(per_clip).astype(np.float32), bounds, y)


class GroupValidation(keras.callbacks.Callback):
    """After every epoch: each group's clip-level accuracy; ``val_accuracy`` is their mean.

    Listed before ``Checkpoint``, so the best model is chosen on the mean over groups.
    """

    def __init__(self, core: keras.Model, groups: list[Group]):
        super().__init__()
        self.core, self.groups = core, groups

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.core.predict(x, batch_size=512, verbose=0)

    def reports(self) -> dict[str, dict]:
        return {g.name: g.report(g.clip_probabilities(self.predict)) for g in self.groups}

    def on_epoch_end(self, epoch, logs=None):
        reports = self.reports()
        if logs is not None:
            logs["val_accuracy"] = metrics_mean(reports, "accuracy")
            logs["val_macro_f1"] = metrics_mean(reports, "macro_f1")
            for name, r in reports.items():
                logs[f"val_{name}"] = r["accuracy"]


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The softmax temperature that minimises the held-out negative log-likelihood."""
    log_p = np.log(np.maximum(probs, 1e-12))
    best, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.25), np.log(8.0), 121)):
        z = log_p / t
        z -= z.max(1, keepdims=True)
        nll = float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]))
        if nll < best_nll:
            best, best_nll = float(t), nll
    return round(best, 4)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    confidence, predicted = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    error = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (confidence > lo) & (confidence <= hi)
        if sel.any():
            error += sel.mean() * abs(float(np.mean(predicted[sel] == y[sel])) - float(confidence[sel].mean()))
    return round(error, 4)


def _tempered(probs: np.ndarray, t: float) -> np.ndarray:
    p = np.maximum(probs, 1e-12) ** (1 / t)
    return p / p.sum(1, keepdims=True)


def _split(items: list[AudioItem], config: VoiceConfig) -> tuple[list[int], dict[str, list[int]]]:
    """Indices of the training clips, and of each held-out group."""
    corpora = {it.dataset for it in items}
    wanted = {c.lower() for c in config.holdout_corpora}
    if wanted - corpora:
        raise ValueError(
            f"holdout corpora {sorted(wanted - corpora)} are not in the data (corpora found: {', '.join(sorted(corpora))})"
        )
    named = {speaker_id(s) for s in config.holdout_speakers}
    found = {it.speaker for it in items}
    explicit = config.holdout_speakers != list(DEFAULT_HOLDOUT)
    if explicit and not named & found:
        raise ValueError(
            f"none of the holdout speakers {sorted(named)} is in the data (speakers found: "
            f"{', '.join(sorted(found)[:12])}{' ...' if len(found) > 12 else ''}); pass --holdout-speakers"
        )
    speakers = held_out_speakers(
        [it for it in items if it.dataset not in wanted], named & found, config.holdout_fraction
    )
    train, groups = [], {}
    for i, it in enumerate(items):
        if it.dataset in wanted:
            groups.setdefault(it.dataset, []).append(i)
        elif it.speaker in speakers:
            groups.setdefault(f"{it.dataset}-speakers", []).append(i)
        elif not (config.calm == "drop" and it.source_label.lower() == "calm"):
            train.append(i)
    if not groups:
        raise ValueError(
            "nothing held out to validate on: name --holdout-speakers or --holdout-corpus, "
            "or give corpora with at least five speakers"
        )
    if not train:
        raise ValueError("no training clips left after the holdout")
    return train, dict(sorted(groups.items()))


def metrics_mean(reports: dict[str, dict], key: str) -> float:
    return round(float(np.mean([r[key] for r in reports.values()])), 4)


def dataset_name(sources: list[str]) -> str:
    return "+".join(Path(s).name for s in sources)


def held_out_metrics(
    groups: list[Group], predict, config, items, held: dict, spec: FeatureSpec, train_clips: int
) -> dict:
    """What every voice run reports of its held-out ``groups`` (``predict``: windows -> raw
    probabilities): each group's clip-level scores and their mean, the split, and the softmax
    temperature fitted on all their windows ("calibration")."""
    window_probs = [np.asarray(predict(g.windows)) for g in groups]
    raw = np.concatenate(window_probs)
    window_y = np.concatenate([np.repeat(g.y, np.diff(g.bounds)) for g in groups])
    temperature = fit_temperature(raw, window_y)
    clip_probs = [g.per_clip(p) for g, p in zip(groups, window_probs, strict=True)]
    reports = {g.name: g.report(p) for g, p in zip(groups, clip_probs, strict=True)}
    overall = classification_report(np.concatenate([g.y for g in groups]), np.concatenate(clip_probs).argmax(1))
    held_corpora = sorted(c.lower() for c in config.holdout_corpora)
    held_speakers = {items[i].speaker for name, idx in held.items() if name.endswith("-speakers") for i in idx}
    split = (
        f"held out: corpora {', '.join(held_corpora) or 'none'}; {len(held_speakers)} speakers of "
        f"{sum(name.endswith('-speakers') for name in held)} corpora (metrics.json lists them); clip level, "
        f"{spec.window_s:g} s windows, 50% overlap; score: mean accuracy over the held-out groups"
    )
    return {
        "task": "voice",
        "dataset": dataset_name(config.data),
        "split": split,
        "train_clips": train_clips,
        "held_out_speakers": sorted(held_speakers),
        "calibration": {
            "temperature": temperature,
            "ece_before": expected_calibration_error(raw, window_y),
            "ece_after": expected_calibration_error(_tempered(raw, temperature), window_y),
            "windows": int(len(window_y)),
        },
        "validation": {
            "split": split,
            "accuracy": metrics_mean(reports, "accuracy"),
            "macro_f1": metrics_mean(reports, "macro_f1"),
            "n": overall["n"],
            "per_group": reports,
            "pooled": overall,
        },
    }


def _refuse_other_kind(out: Path, encoder: bool) -> None:
    """A rerun resumes (or redoes) a run of its own kind; it never replaces a CNN run with an
    encoder member or the reverse."""
    config = out / "config.json"
    if not config.is_file():
        return
    held = bool(json.loads(config.read_text()).get("speaker_encoder"))
    if held != encoder:
        kind = "a speaker-encoder member" if held else "a CNN run"
        raise ValueError(f"{out} holds {kind}; train this one into another --out folder")


def train_voice(config: VoiceConfig, out: str | Path, quiet: bool = False) -> dict:
    """Train (or resume) a voice run in ``out``; returns its metrics."""
    _refuse_other_kind(Path(out), bool(config.speaker_encoder))
    if Path(out).is_dir():
        check_resume(RunDir(out), config)
    if config.speaker_encoder:
        from .voice_encoder import train_voice_encoder

        return train_voice_encoder(config, out, quiet)
    run = RunDir(out)
    set_seed(config.seed)
    items = find_audio(config.data, calm="neutral")  # calm dropped, if asked, at the split
    base = FeatureSpec(pitch=config.pitch != "off", pitch_relative=config.pitch == "relative", fill_narrowband=True)
    waves, items = load_waveforms(items, base.sample_rate)
    train, held = _split(items, config)
    base = replace(base, level_range=speech_level_range([waves[i] for i in train]))
    unknown = set(config.corpus_weights) - {items[i].dataset for i in train}
    if unknown:
        raise ValueError(f"corpus weights name corpora not in the training data: {', '.join(sorted(unknown))}")
    labels = np.asarray([LABELS.index(it.label) for it in items], np.int64)
    corpora = [items[i].dataset for i in train]
    mels = clip_mels([waves[i] for i in train], base)
    if run.resumable() and (run / "preprocess.json").is_file():
        spec = FeatureSpec.from_dict(json.loads((run / "preprocess.json").read_text()))
    else:
        spec = fit_scaler(mels, base)
    groups = [make_group(name, [waves[i] for i in idx], labels[idx], spec) for name, idx in held.items()]
    steps = config.steps or int(np.ceil(len(train) / config.batch_size))
    batches = MelBatches(
        mels,
        labels[train],
        corpora,
        spec,
        config.augment,
        config.batch_size,
        steps,
        config.corpus_power,
        config.seed,
        corpus_weights=config.corpus_weights,
        missing_label_weight=config.missing_label_weight,
    )
    if run.resumable():
        model = keras.models.load_model(run / "checkpoint.keras")
        resume_schedule(model, config.lr, config.epochs, steps)
    else:
        model = build_voice_model(spec.n_features, config.width, config.dropout, pooling=config.pooling)
        compile_for_training(model, config.lr, config.epochs, steps, 0.0, loss=masked_crossentropy)
    run.write_json("config.json", {"task": "voice", **asdict(config), "backend": keras.backend.backend()})
    run.write_json("preprocess.json", spec.to_dict())
    start = run.state["epoch"]
    batches.epoch = start
    validation = GroupValidation(model, groups)
    callbacks = [validation, Checkpoint(run, model, keep=config.keep)] + (
        [] if quiet else [RichProgress(config.epochs, steps)]
    )
    if start < config.epochs:
        model.fit(batches, epochs=config.epochs, initial_epoch=start, callbacks=callbacks, verbose=0)

    best = keras.models.load_model(run / "model.keras", compile=False)
    validation.core = best
    scored = held_out_metrics(groups, validation.predict, config, items, held, spec, len(train))
    run.write_json("preprocess.json", {**spec.to_dict(), "temperature": scored["calibration"]["temperature"]})
    metrics = {
        **scored,
        "epochs": run.state["epoch"],
        "keep": config.keep,
        "best_epoch": run.state.get("best_epoch"),  # with keep "last": the last epoch
        "train_corpora": sorted(set(corpora)),
    }
    overall = metrics["validation"]["pooled"]
    title = f"held out: mean accuracy {metrics['validation']['accuracy']:.3f} over {len(groups)} groups"
    plot_confusion(overall, run / "confusion.png", title)
    plot_curves(run)
    run.write_json("metrics.json", metrics)
    return metrics
