"""`emocli train face` and `emocli train voice`: options validated here, the runs in
``emocli.train`` (TensorFlow is imported there, inside the commands)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from .cli import (
    _check_run_paths,
    _check_training,
    _Command,
    _extra_args,
    _fail,
    _one_line_failures,
    _require_training,
    train_app,
)


class CameraPreset(StrEnum):
    full = "full"
    off = "off"


class Precision(StrEnum):
    auto = "auto"
    float32 = "float32"
    mixed_bfloat16 = "mixed_bfloat16"
    mixed_float16 = "mixed_float16"


_RUN_FOLDER = (
    "Run folder: checkpoints, history, curves, metrics. Rerun with the same options to resume; other options "
    "are refused there."
)


def _run_training(run, config, out: Path, quiet: bool) -> dict:
    """``run(config, out)`` with its warnings as one line each and its failures as one line
    (a missing input exits 2); a run folder it made and left empty is removed."""
    from .evaluate import one_line_warnings

    made = not out.exists()
    with _one_line_failures(ValueError):
        try:
            with one_line_warnings(lambda line: typer.echo(line, err=True)):
                return run(config, out, quiet=quiet)
        except (FileNotFoundError, ValueError):
            if made and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            raise


@train_app.command("face", cls=_Command)
def train_face(
    data: Annotated[
        Path, typer.Option(metavar="PATH", help="FER2013: fer2013.csv, or a folder of [<split>/]<class>/*.jpg.")
    ],
    out: Annotated[
        Path,
        typer.Option("--output", "-o", "--out", metavar="FOLDER", help=_RUN_FOLDER, show_default=False),
    ],
    epochs: Annotated[int, typer.Option(metavar="N", help="Passes over the training faces (1 or more).", min=1)] = 40,
    batch_size: Annotated[int, typer.Option(metavar="N", help="Faces per batch (1 or more).", min=1)] = 64,
    lr: Annotated[
        float, typer.Option(metavar="RATE", help="Peak learning rate (cosine schedule with one warm-up epoch).")
    ] = 2e-3,
    width: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Filters of the full-resolution stem (4 or more); each of the three stages doubles them.",
            min=4,
        ),
    ] = 32,
    val_fraction: Annotated[
        float,
        typer.Option(
            metavar="FRACTION", help="Share of the training faces set aside for validation (between 0 and 1)."
        ),
    ] = 0.1,
    precision: Annotated[
        Precision,
        typer.Option(
            help="Keras dtype policy. auto: mixed_bfloat16 on CPUs with native bfloat16, else float32; "
            "mixed_float16 is for GPUs."
        ),
    ] = Precision.auto,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the weights, shuffling and augmentation.")] = 0,
    split_seed: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Seed of the validation split. Keep it (and --val-fraction) the same across runs that you "
            "compare or export together, so none of them has trained on another's validation faces.",
        ),
    ] = 0,
    init: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Start from this model's weights (an earlier run's model.keras, same --width): "
            "a warm restart with a new learning-rate cycle.",
            show_default="random weights",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    crowd_labels: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Crowd votes per image (FER+ labels.csv: path relative to the file, one vote column per "
            "emotion): train towards a blend of the votes and each image's own label.",
            show_default="the dataset's labels alone",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    crowd_weight: Annotated[
        float,
        typer.Option(
            metavar="SHARE",
            help="Share of the crowd's votes in each target (0 to 1); the rest is the image's label.",
            min=0.0,
            max=1.0,
        ),
    ] = 0.5,
    camera: Annotated[
        CameraPreset,
        typer.Option(
            help="Degrade training faces as video does (blur, small faces upscaled, JPEG blocks, dim light, "
            "noise): full, or off."
        ),
    ] = CameraPreset.full,
    teacher: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="FILE",
            help="Distil: also learn this face model's output (an earlier run's model.keras, any --width) on "
            "the same augmented faces. Repeat for several; their mean is the target.",
            show_default="none",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    teacher_weight: Annotated[
        float,
        typer.Option(metavar="SHARE", help="Share of the teachers' output in the loss (0 to 1).", min=0.0, max=1.0),
    ] = 0.7,
    temperature: Annotated[
        float,
        typer.Option(metavar="T", help="Softening of teacher and student outputs when distilling (above 0)."),
    ] = 2.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train the face CNN on 48x48 grayscale faces (FER2013 layout). Needs pip install 'emocli\\[train]'.

    Example: emocli train face --data fer2013/ -o runs/face --crowd-labels ferplus/labels.csv
    """
    _check_training(lr=lr, val_fraction=val_fraction)
    if not temperature > 0:  # also NaN
        _fail(f"--temperature must be above 0, not {temperature}", 2)
    _check_run_paths([data], out)
    _require_training()
    from .train.face import FaceConfig
    from .train.face import train_face as run

    config = FaceConfig(
        str(data),
        epochs,
        batch_size,
        lr,
        width,
        val_fraction,
        precision=precision.value,
        seed=seed,
        split_seed=split_seed,
        init=str(init) if init else None,
        crowd_labels=str(crowd_labels) if crowd_labels else None,
        crowd_weight=crowd_weight,
        camera=str(camera),
        teachers=tuple(str(t) for t in teacher or ()),
        teacher_weight=teacher_weight,
        temperature=temperature,
    )
    metrics = _run_training(run, config, out, quiet)
    v = metrics["validation"]
    typer.echo(f"validation accuracy {v['accuracy']:.4f}, macro-F1 {v['macro_f1']:.4f}; model: {out / 'model.keras'}")


class AugmentLevel(StrEnum):
    full = "full"
    light = "light"
    off = "off"


class Calm(StrEnum):
    neutral = "neutral"
    drop = "drop"


class PitchFeatures(StrEnum):
    off = "off"
    absolute = "absolute"
    relative = "relative"


class Keep(StrEnum):
    best = "best"
    last = "last"


class Pooling(StrEnum):
    meanmax = "meanmax"
    attention = "attention"


def _looks_like_speaker(arg: str) -> bool:
    """`19` or `ravdess:19` (not an existing path): a value of --holdout-speakers A B ..."""
    return not Path(arg).exists() and (arg.isdigit() or (":" in arg and "/" not in arg))


@train_app.command("voice", cls=_Command, context_settings={"allow_extra_args": True})
def train_voice(
    ctx: typer.Context,
    data: Annotated[
        list[Path],
        typer.Option(
            help="Corpora: folders with a labels.csv (path,emotion,speaker,...,corpus), RAVDESS, TESS, CREMA-D, "
            "EmoDB or SAVEE in their published layouts, or <class>/ folders of audio: --data A B ...",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--output", "-o", "--out", metavar="FOLDER", help=_RUN_FOLDER, show_default=False),
    ],
    holdout_speakers: Annotated[
        list[str] | None,
        typer.Option(
            metavar="CORPUS:SPEAKER",
            help="Held-out speakers, e.g. ravdess:19 tess:YAF, or bare RAVDESS actors 17 18.",
            show_default="RAVDESS actors 17-20",
        ),
    ] = None,
    holdout_fraction: Annotated[
        float,
        typer.Option(
            metavar="SHARE",
            help="Also hold out this share of the speakers of every corpus with five or more speakers and none "
            "named in --holdout-speakers (0 to 0.9).",
            min=0.0,
            max=0.9,
        ),
    ] = 0.2,
    holdout_corpus: Annotated[
        list[str] | None,
        typer.Option(
            metavar="CORPUS",
            help="Whole corpora to hold out, by their corpus name (labels.csv's corpus column, or ravdess, tess); "
            "repeat the option or separate names with commas.",
            show_default="none",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(metavar="N", help="Passes over the training clips (1 or more).", min=1)] = 30,
    steps: Annotated[
        int, typer.Option(metavar="N", help="Batches per epoch; 0: one pass over the training clips.", min=0)
    ] = 0,
    batch_size: Annotated[int, typer.Option(metavar="N", help="Windows per batch (1 or more).", min=1)] = 64,
    lr: Annotated[
        float,
        typer.Option(
            metavar="RATE", help="Peak learning rate (cosine schedule with one warm-up epoch).", min=1e-6, max=1.0
        ),
    ] = 2e-3,
    width: Annotated[
        int,
        typer.Option(
            metavar="N", help="Filters of the first Conv1D block; later blocks have 2x and 3x (4 or more).", min=4
        ),
    ] = 64,
    dropout: Annotated[
        float, typer.Option(metavar="RATE", help="Dropout before each dense layer (0 to 0.9).", min=0.0, max=0.9)
    ] = 0.3,
    calm: Annotated[
        Calm,
        typer.Option(help="'calm' clips in training: count as neutral, or drop (validation scores them as neutral)."),
    ] = Calm.neutral,
    augment: Annotated[
        AugmentLevel,
        typer.Option(
            help="Perturbation of the training windows: full (noise and babble at 0-25 dB SNR in half of them, "
            "rooms, telephone band, microphone tilt, gain, tempo, vocal-tract length), light (milder and rarer), off."
        ),
    ] = AugmentLevel.full,
    corpus_power: Annotated[
        float,
        typer.Option(
            metavar="POWER",
            help="Corpora are drawn in proportion to their size to this power: 0 each corpus equally, "
            "1 each clip equally.",
            min=0.0,
            max=1.0,
        ),
    ] = 0.5,
    corpus_weight: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME=W",
            help="NAME=W: draw corpus NAME W times as often as --corpus-power alone would (e.g. ravdess=3 "
            "for a model meant for acted English); repeat for more corpora.",
            show_default="none",
        ),
    ] = None,
    pitch: Annotated[
        PitchFeatures,
        typer.Option(
            help="Also give the net each frame's voicing and pitch (prosody, which MFCC and mel bands blur): "
            "its log pitch (absolute) or its pitch against the window's median (relative: intonation, not the "
            "speaker's register). The model's metadata records it and inference computes them."
        ),
    ] = PitchFeatures.off,
    pooling: Annotated[
        Pooling,
        typer.Option(
            help="How the net sums a window up over time: the mean and maximum of every channel, or an "
            "attention-weighted mean and standard deviation (frames that carry the emotion weigh more)."
        ),
    ] = Pooling.meanmax,
    missing_label_weight: Annotated[
        float,
        typer.Option(
            metavar="WEIGHT",
            min=0.0,
            max=1.0,
            help="Weight, in each clip's softmax, of the labels its corpus never uses: 0 masks them out (a "
            "corpus without 'fear' never teaches that fear does not occur), 1 is the plain cross-entropy over "
            "all seven; between them a partial mask, which did best on the held-out corpora.",
        ),
    ] = 0.3,
    keep: Annotated[
        Keep,
        typer.Option(
            help="The epoch model.keras keeps: the best mean accuracy over the held-out groups, or the last "
            "(the held-out figures then choose nothing and report the run as it is)."
        ),
    ] = Keep.best,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the weights and of the training draws.")] = 0,
    speaker_encoder: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Train a member on a pretrained speaker encoder instead of the CNN: Resemblyzer's "
            "pretrained.pt, or its wheel (pip download resemblyzer --no-deps). Its first two LSTM layers, "
            "frozen, summarise each window; a softmax over them is trained. The CNN's options (width, "
            "augmentation, epochs, ...) do not apply. Average its export with the CNNs': "
            "emocli export A.onnx B.onnx --weights.",
            show_default="none: the CNN",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train the voice model on MFCC + log-mel windows of augmented speech, validated on held-out
    speakers and corpora (the best epoch is the best mean accuracy over them, unless --keep last).
    Needs pip install 'emocli\\[train]'.

    Example: emocli train voice --data ravdess/ tess/ nemo/ urdu/ -o runs/voice --holdout-corpus urdu
    """
    extra = _extra_args(ctx)
    speakers = [a for a in extra if holdout_speakers and _looks_like_speaker(a)]
    sources = [str(p) for p in data] + [a for a in extra if a not in speakers]
    _check_run_paths(sources, out)
    _require_training()
    from .train.voice import DEFAULT_HOLDOUT, VoiceConfig
    from .train.voice import train_voice as run
    from .train.voice_batches import AUGMENT_PRESETS

    holdout = list(holdout_speakers or DEFAULT_HOLDOUT) + speakers
    corpora = [name.strip() for value in holdout_corpus or [] for name in value.split(",") if name.strip()]
    weights = {}
    for value in corpus_weight or []:
        name, _, weight = value.partition("=")
        try:
            weights[name.strip()] = float(weight)
        except ValueError:
            _fail(f"--corpus-weight takes NAME=W with W a number, not {value!r}", 2)
    try:
        config = VoiceConfig(
            sources,
            epochs=epochs,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            width=width,
            dropout=dropout,
            holdout_speakers=holdout,
            holdout_fraction=holdout_fraction,
            holdout_corpora=corpora,
            calm=calm.value,
            augment=AUGMENT_PRESETS[augment.value],
            corpus_power=corpus_power,
            corpus_weights=weights,
            pitch=pitch.value,
            pooling=pooling.value,
            missing_label_weight=missing_label_weight,
            keep=keep.value,
            seed=seed,
            speaker_encoder=str(speaker_encoder or ""),
        )
    except ValueError as e:
        _fail(str(e))
    metrics = _run_training(run, config, out, quiet)
    v = metrics["validation"]
    typer.echo(
        f"held out ({len(v['per_group'])} groups): mean clip accuracy {v['accuracy']:.4f}, "
        f"mean macro-F1 {v['macro_f1']:.4f}; model: {out / 'model.keras'}"
    )
    for name, r in v["per_group"].items():
        typer.echo(
            f"  {name}: accuracy {r['accuracy']:.4f} (chance {r['chance']:.3f}), macro-F1 {r['macro_f1']:.4f}, n={r['n']}"
        )
