"""Train the face model: a compact residual CNN on 48x48 grayscale faces (FER2013)."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from ..datasets import crowd_labels, stratified_split, training_faces
from ..labels import LABELS
from ..models import DEFAULT_FACE_PREPROCESS, normalize_faces
from .face_batches import CAMERA_PRESETS, FaceBatches, blend_targets
from .run import (
    Checkpoint,
    RichProgress,
    RunDir,
    check_resume,
    class_weights,
    classification_report,
    compile_for_training,
    dtype_policy,
    plot_confusion,
    plot_curves,
    resolve_precision,
    resume_schedule,
    set_seed,
)


@dataclass
class FaceConfig:
    data: str
    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 32
    val_fraction: float = 0.1
    label_smoothing: float = 0.1
    class_weight_power: float = 0.5
    precision: str = "auto"
    seed: int = 0  # weights, shuffling and augmentation
    split_seed: int = 0  # which faces are set aside for validation: fixed, so runs compare and ensemble fairly
    init: str | None = None
    crowd_labels: str | None = None  # FER+ labels.csv: soft targets from its votes
    crowd_weight: float = 0.5  # share of the crowd's votes in each target; the rest is the dataset's label
    camera: str = "full"  # CAMERA_PRESETS: degradations of real video faces
    teachers: tuple[str, ...] = ()  # face models (model.keras) whose mean output the net also learns
    teacher_weight: float = 0.7  # share of the teachers' softened output in the loss
    temperature: float = 2.0  # softening of teacher and student distributions

    def __post_init__(self):
        if not (self.epochs >= 1 and self.batch_size >= 1 and self.width >= 4):
            raise ValueError("epochs and batch_size must be at least 1, width at least 4")
        if not self.lr > 0:  # also NaN
            raise ValueError(f"lr must be a positive learning rate, not {self.lr}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), not {self.val_fraction}")
        if not 0 <= self.crowd_weight <= 1:
            raise ValueError(f"crowd_weight must be between 0 and 1, not {self.crowd_weight}")
        if not 0 <= self.teacher_weight <= 1:
            raise ValueError(f"teacher_weight must be between 0 and 1, not {self.teacher_weight}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, not {self.temperature}")
        self.teachers = tuple(self.teachers)
        if self.camera not in CAMERA_PRESETS:
            raise ValueError(f"camera must be one of {', '.join(CAMERA_PRESETS)}, not {self.camera!r}")


def _conv_bn_relu(x, filters: int):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(x)


def _residual_stage(x, filters: int):
    """Halve the resolution first, then two 3x3 convolutions with a projected shortcut."""
    x = layers.MaxPooling2D(2)(x)
    shortcut = layers.BatchNormalization()(layers.Conv2D(filters, 1, use_bias=False)(x))
    y = _conv_bn_relu(x, filters)
    y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same", use_bias=False)(y))
    return layers.Activation("relu")(layers.add([y, shortcut]))


def build_face_model(size: int = 48, width: int = 32, n_classes: int = len(LABELS)) -> keras.Model:
    """Two 3x3 convolutions at full resolution, then three residual stages (24, 12, 6 px).

    About 1.2 M parameters at width 32. Pooling before each stage keeps the work at
    about 0.12 GFLOP-MACs per face, so it trains at roughly 250 faces/s on two CPU
    cores in bfloat16, and the full-resolution stem keeps the fine detail (eyes,
    mouth corners) that 48x48 faces carry.
    """
    inputs = keras.Input((size, size, 1), name="image")
    x = _conv_bn_relu(_conv_bn_relu(inputs, width), width)
    for mult in (2, 4, 8):
        x = _residual_stage(x, width * mult)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.4)(x)
    # float32 head: probabilities stay exact under a mixed-precision policy.
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="emocli_face")


def augmentation() -> keras.Sequential:
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal"),
            layers.RandomRotation(0.05, fill_mode="nearest"),
            layers.RandomZoom(0.1, fill_mode="nearest"),
            layers.RandomTranslation(0.08, 0.08, fill_mode="nearest"),
            layers.RandomContrast(0.2),
            # Occluding part of the face (hands, glasses, hair in FER2013) regularises a net that
            # otherwise memorises training faces; 0.5 is mid-grey in the [0, 1] input.
            layers.RandomErasing(factor=0.5, scale=(0.02, 0.2), fill_value=0.5, value_range=(0.0, 1.0)),
        ],
        name="augment",
    )


def _compile_on_jax(model: keras.Model) -> None:
    """Keras marks its geometric augmentation layers as unfit for XLA, on TensorFlow's
    account. JAX compiles them, and a JAX model that is not compiled runs op by op, many
    times slower; so on JAX the training step is compiled whole."""
    if keras.backend.backend() != "jax":
        return
    for layer in model.get_layer("augment").layers:
        layer.supports_jit = True
    model.jit_compile = True


@keras.saving.register_keras_serializable(package="emocli")
class Distillation(keras.losses.Loss):
    """Cross-entropy to the targets, blended with the distance to a teacher's output.

    The model's output is [student | teacher] probabilities. Both are softened by the
    temperature (p ** (1/T), renormalised) and the student pays ``T**2 x KL(teacher ||
    student)`` on them, Hinton et al.'s distillation loss. The teacher sees the same
    augmented face as the student, so every epoch brings new targets.
    """

    def __init__(self, weight=0.7, temperature=2.0, label_smoothing=0.1, name="distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        self.weight, self.temperature, self.label_smoothing = weight, temperature, label_smoothing

    def call(self, y_true, y_pred):
        ops, k = keras.ops, len(LABELS)
        student, teacher = y_pred[:, :k], y_pred[:, k:]
        hard = keras.losses.categorical_crossentropy(y_true, student, label_smoothing=self.label_smoothing)
        log_s = ops.log_softmax(ops.log(student + 1e-7) / self.temperature, axis=-1)
        log_t = ops.log_softmax(ops.log(teacher + 1e-7) / self.temperature, axis=-1)
        soft = ops.sum(ops.exp(log_t) * (log_t - log_s), axis=-1) * self.temperature**2
        return (1 - self.weight) * hard + self.weight * soft

    def get_config(self):
        return {
            **super().get_config(),
            "weight": self.weight,
            "temperature": self.temperature,
            "label_smoothing": self.label_smoothing,
        }


@keras.saving.register_keras_serializable(package="emocli")
def student_accuracy(y_true, y_pred):
    """Accuracy of the student's half of a [student | teacher] output."""
    k = len(LABELS)
    return keras.ops.cast(
        keras.ops.argmax(y_true[:, :k], axis=-1) == keras.ops.argmax(y_pred[:, :k], axis=-1), "float32"
    )


def _teacher(paths: tuple[str, ...]) -> keras.Model:
    """The teachers as one frozen model: the mean of their probabilities. Dropout off and
    batch statistics frozen, so a teacher's answer depends on the face alone."""
    inputs, outputs = None, []
    for i, path in enumerate(paths):
        try:
            net = keras.models.load_model(path, compile=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a face model ({e})") from e
        for layer in net.layers:
            if isinstance(layer, layers.Dropout):
                layer.rate = 0.0
        if inputs is None:
            inputs = keras.Input(net.input_shape[1:], name="image")
        outputs.append(keras.Model(net.input, net.output, name=f"teacher_{i}")(inputs))
    mean = outputs[0] if len(outputs) == 1 else layers.Average(name="teacher_mean")(outputs)
    teacher = keras.Model(inputs, mean, name="teachers")
    teacher.trainable = False
    return teacher


def _training_model(core: keras.Model, config: FaceConfig, steps: int) -> keras.Model:
    """Augmentation, then the net (and its teachers, when it has any), compiled."""
    if not config.teachers:
        model = keras.Sequential([keras.Input(core.input_shape[1:]), augmentation(), core], name="train_face")
        compile_for_training(model, config.lr, config.epochs, steps, config.label_smoothing)
        return model
    inputs = keras.Input(core.input_shape[1:], name="image")
    x = augmentation()(inputs)
    teacher = _teacher(config.teachers)
    if teacher.input_shape[1:] != core.input_shape[1:]:
        raise ValueError(f"the teachers take {teacher.input_shape[1:]} faces, the net {core.input_shape[1:]}")
    both = layers.Concatenate(name="student_teacher", dtype="float32")([core(x), teacher(x)])
    model = keras.Model(inputs, both, name="distill_face")
    loss = Distillation(config.teacher_weight, config.temperature, config.label_smoothing)
    accuracy = keras.metrics.MeanMetricWrapper(student_accuracy, name="accuracy")
    compile_for_training(model, config.lr, config.epochs, steps, config.label_smoothing, loss, [accuracy])
    return model


def _prepare(x: np.ndarray) -> np.ndarray:
    return normalize_faces(x, DEFAULT_FACE_PREPROCESS)[..., None]


def validation_split(y: np.ndarray, config: FaceConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices: set by ``split_seed`` alone, whatever the run's ``seed``."""
    return stratified_split(y, config.val_fraction, config.split_seed)


def train_face(config: FaceConfig, out: str | Path, quiet: bool = False) -> dict:
    """Train (or resume) a face run in ``out``; returns its metrics."""
    with dtype_policy(resolve_precision(config.precision)):
        return _train(config, RunDir(out), quiet)


def _train(config: FaceConfig, run: RunDir, quiet: bool) -> dict:
    check_resume(run, config, f" (--init {run / 'model.keras'} starts a new cycle from its weights)")
    set_seed(config.seed)
    train = training_faces(config.data)
    tr, va = validation_split(train.y, config)
    y_tr = train.y[tr]
    x_va, y_va = _prepare(train.x[va]), train.y[va]
    k = len(LABELS)
    present = sorted(set(y_tr.tolist()))
    if len(present) < 2:
        which = f"one label only ({LABELS[present[0]]})" if present else "no label"
        raise ValueError(f"{config.data}: training faces of {which}: nothing to tell apart")
    if len(present) < k:
        absent = ", ".join(LABELS[c] for c in range(k) if c not in present)
        warnings.warn(f"{config.data}: no training faces of {absent}: the model will never say them", stacklevel=2)
    crowd = None
    if config.crowd_labels:
        crowd = crowd_labels(config.crowd_labels, config.data, train.names)[tr]
        if np.isnan(crowd).any(axis=1).all():
            raise ValueError(f"{config.crowd_labels}: no row matches an image of {config.data}")
    weights = class_weights(y_tr, k, config.class_weight_power)
    batches = FaceBatches(
        train.x[tr],
        blend_targets(y_tr, crowd, config.crowd_weight, k),
        np.asarray([weights[c] for c in y_tr], np.float32),
        CAMERA_PRESETS[config.camera],
        config.batch_size,
        seed=config.seed,
    )
    steps = len(batches)

    if run.resumable():
        with warnings.catch_warnings():
            # Loading recompiles before _compile_on_jax has marked the augmentation jittable.
            warnings.filterwarnings("ignore", "Model doesn't support `jit_compile", UserWarning)
            model = keras.models.load_model(run / "checkpoint.keras")
        resume_schedule(model, config.lr, config.epochs, steps)
        core = model.get_layer("emocli_face")
    else:
        core = build_face_model(train.x.shape[1], config.width)
        if config.init:
            # A warm restart: a new cosine cycle from an earlier run's weights.
            try:
                core.set_weights(keras.models.load_model(config.init, compile=False).get_weights())
            except ValueError as e:
                raise ValueError(f"{config.init}: not a width-{config.width} face model of this shape ({e})") from e
        model = _training_model(core, config, steps)
    _compile_on_jax(model)
    run.write_json(
        "config.json",
        {
            "task": "face",
            **asdict(config),
            "backend": keras.backend.backend(),
            "policy": keras.mixed_precision.global_policy().name,
        },
    )
    start = run.state["epoch"]
    batches.seek(start)
    callbacks = [Checkpoint(run, core)] + ([] if quiet else [RichProgress(config.epochs, steps)])
    if start < config.epochs:
        model.fit(
            batches,
            validation_data=(x_va, keras.utils.to_categorical(y_va, k)),
            epochs=config.epochs,
            initial_epoch=start,
            callbacks=callbacks,
            verbose=0,
        )
    best = keras.models.load_model(run / "model.keras")
    metrics = {"task": "face", "dataset": Path(config.data).name, "epochs": run.state["epoch"]}
    report = classification_report(y_va, best.predict(x_va, batch_size=256, verbose=0).argmax(1))
    metrics["validation"] = {
        "split": f"{config.val_fraction:.0%} of train, stratified, seed {config.split_seed}",
        "views": 1,  # each face classified once, as `emocli process` does
        **report,
    }
    plot_confusion(
        report,
        run / "confusion.png",
        f"validation: accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}",
    )
    plot_curves(run)
    run.write_json("metrics.json", metrics)
    return metrics
