"""The emocli command line: a thin Typer layer over the library.

Heavy modules (numpy, onnxruntime, mediapipe, and for training TensorFlow) are
imported inside the commands, so `emocli --help` answers at once.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="emocli",
    help="What emotion the people in a video show on their faces and carry in their voices, over time.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
train_app = typer.Typer(help="Train a face or voice model (Keras); then `emocli export` it.", no_args_is_help=True)
app.add_typer(train_app, name="train")


class Engine(StrEnum):
    local = "local"
    ray = "ray"


class Fusion(StrEnum):
    weighted = "weighted"
    face = "face"
    voice = "voice"


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _require_training() -> None:
    """Training and export live in the `train` extra: say how to get it, not a traceback."""
    from importlib.util import find_spec

    missing = [name for name in ("tensorflow", "keras", "tf2onnx") if find_spec(name) is None]
    if missing:
        _fail(f"training and export need {', '.join(missing)}: pip install 'emocli[train]'")


def _check_training(lr: float, val_fraction: float | None = None) -> None:
    """Values typer's ranges cannot say (open intervals), checked before TensorFlow loads."""
    if not lr > 0:  # also NaN
        _fail(f"--lr must be a positive learning rate, not {lr}", 2)
    if val_fraction is not None and not 0 < val_fraction < 1:
        _fail(f"--val-fraction must be between 0 and 1 (exclusive), not {val_fraction}", 2)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"emocli {version('emocli')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """What emotion the people in a video show on their faces and carry in their voices, over time."""


@app.command()
def process(
    inputs: Annotated[
        list[Path], typer.Argument(help="Video files and/or folders (searched recursively).", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; mirrors the inputs' layout.")],
    interval: Annotated[
        float, typer.Option(help="Seconds between samples: one timeline row per interval and face.", min=0.05)
    ] = 1.0,
    window: Annotated[
        float, typer.Option(help="Seconds of audio, centred on each interval, that the voice model hears.", min=0.2)
    ] = 2.0,
    annotate: Annotated[
        bool,
        typer.Option("--annotate", help="Also write <stem>.mp4 with boxes, ids and labels, and the original sound."),
    ] = False,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write <stem>.png, the emotion over time.")] = True,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Videos processed in parallel (default: half the cores; each video takes one to decode, one to analyse).",
            min=1,
        ),
    ] = None,
    engine: Annotated[
        Engine, typer.Option(help="local: a process pool on this machine; ray: a Ray cluster.")
    ] = Engine.local,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (e.g. 10.0.0.5:6379); default starts a local one.")
    ] = None,
    face_model: Annotated[Path | None, typer.Option(help="Face model (.onnx); default: the shipped one.")] = None,
    voice_model: Annotated[Path | None, typer.Option(help="Voice model (.onnx); default: the shipped one.")] = None,
    fusion: Annotated[
        Fusion, typer.Option(help="weighted: combine both; face or voice: that modality alone.")
    ] = Fusion.weighted,
    face_weight: Annotated[
        float | None,
        typer.Option(
            help="Fuse as a weighted mean with this weight of the face in [0, 1] (default: a product of the two "
            "distributions, fitted on audio-visual validation clips, so the more confident modality counts more "
            "each interval).",
            min=0.0,
            max=1.0,
        ),
    ] = None,
    face_frames: Annotated[
        int,
        typer.Option(help="Frames per interval whose faces are classified and averaged (each with its mirror image).", min=1),
    ] = 3,
    max_faces: Annotated[int, typer.Option(help="At most this many faces per frame, largest first.", min=1)] = 8,
    min_face: Annotated[
        float,
        typer.Option(help="Ignore faces smaller than this fraction of the frame's shorter side.", min=0.0, max=1.0),
    ] = 0.05,
    vad_threshold: Annotated[
        float,
        typer.Option(
            help="Speech probability (0-1) at which the voice-activity detector counts 32 ms of audio as speech; "
            "an interval is voiced when a fifth of its audio window is speech. Lower hears quieter speech, "
            "higher rejects more noise.",
            min=0.01,
            max=0.99,
        ),
    ] = 0.5,
    face_views: Annotated[
        bool,
        typer.Option(
            "--face-views/--one-face-view",
            help="Average the face model's views (zooms x mirror, from its metadata) of each of an interval's "
            "--face-frames, or classify each crop and its mirror image (default): three times less face-model "
            "time, the same accuracy once frames are pooled.",
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Redo videos whose outputs already exist (default: skip them).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display; errors only.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for failed videos.")] = False,
) -> None:
    """Write a timeline CSV (and plot, and optionally an annotated MP4) for every video.

    Example: emocli process examples/demo.mp4 -o out/ --annotate
    """
    from .batch import BatchOptions, Interrupted, SummaryError, UsageError, run_batch
    from .models import ModelError
    from .pipeline import AnalyzeOptions

    options = AnalyzeOptions(
        interval=interval, window=window, face_model=face_model, voice_model=voice_model, fusion=fusion.value,
        face_weight=face_weight, face_frames=face_frames, max_faces=max_faces, min_face=min_face, face_views=face_views,
        vad_threshold=vad_threshold,
    )  # fmt: skip
    batch = BatchOptions(
        annotate=annotate, plot=plot, workers=workers, engine=engine.value, ray_address=ray_address,
        overwrite=overwrite, quiet=quiet, debug=debug,
    )  # fmt: skip
    try:
        summary = run_batch(inputs, out, options, batch)
    except UsageError as e:
        _fail(str(e), 2)
    except (ModelError, FileNotFoundError, ValueError, ImportError, SummaryError) as e:
        _fail(str(e))
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP: what finished is in the summary
        code = e.exit_code if isinstance(e, Interrupted) else 130
        _fail(f"interrupted: the videos that finished are in {out / 'summary.csv'}; rerun to do the rest", code)
    if any(row["status"] == "failed" for row in summary):
        raise typer.Exit(1)


class Precision(StrEnum):
    auto = "auto"
    float32 = "float32"
    mixed_bfloat16 = "mixed_bfloat16"
    mixed_float16 = "mixed_float16"


@train_app.command("face")
def train_face(
    data: Annotated[Path, typer.Option(help="FER2013: fer2013.csv, or a folder of [<split>/]<class>/*.jpg.")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, history, curves, metrics. Rerun to resume.")],
    epochs: Annotated[int, typer.Option(min=1)] = 40,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate (cosine schedule with one warm-up epoch).")] = 2e-3,
    width: Annotated[
        int, typer.Option(help="Filters of the full-resolution stem; each of the three stages doubles them.", min=4)
    ] = 32,
    val_fraction: Annotated[float, typer.Option(help="Share of the training faces set aside for validation.")] = 0.1,
    precision: Annotated[
        Precision,
        typer.Option(
            help="Keras dtype policy. auto: mixed_bfloat16 on CPUs with native bfloat16, else float32; "
            "mixed_float16 is for GPUs."
        ),
    ] = Precision.auto,
    seed: Annotated[int, typer.Option(help="Seed of the weights, shuffling and augmentation.")] = 0,
    split_seed: Annotated[
        int,
        typer.Option(
            help="Seed of the validation split. Keep it (and --val-fraction) the same across runs that you "
            "compare or export together, so none of them has trained on another's validation faces."
        ),
    ] = 0,
    init: Annotated[
        Path | None,
        typer.Option(
            help="Start from this model's weights (an earlier run's model.keras, same --width): "
            "a warm restart with a new learning-rate cycle.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Train the face CNN on 48x48 grayscale faces (FER2013 layout)."""
    _check_training(lr=lr, val_fraction=val_fraction)
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
    )
    try:
        metrics = run(config, out, quiet=quiet)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    v = metrics["validation"]
    typer.echo(f"validation accuracy {v['accuracy']:.4f}, macro-F1 {v['macro_f1']:.4f}; model: {out / 'model.keras'}")


class Calm(StrEnum):
    neutral = "neutral"
    drop = "drop"


def _extra_args(ctx: typer.Context) -> list[str]:
    """`--data A B C`: Click options take one value, so B and C arrive as extra arguments."""
    for arg in ctx.args:
        if arg.startswith("-"):
            _fail(f"no such option: {arg}", 2)
    return list(ctx.args)


def _looks_like_speaker(arg: str) -> bool:
    """`19` or `ravdess:19` (not an existing path): a value of --holdout-speakers A B ..."""
    return not Path(arg).exists() and (arg.isdigit() or (":" in arg and "/" not in arg))


@train_app.command("voice", context_settings={"allow_extra_args": True})
def train_voice(
    ctx: typer.Context,
    data: Annotated[
        list[Path],
        typer.Option(
            help="Corpora: folders with a labels.csv (path,emotion,speaker,...,corpus), RAVDESS or TESS folders, "
            "CREMA-D files, or <class>/ folders of audio: --data A B ...",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(help="Run folder: checkpoints, history, curves, metrics. Rerun to resume.", show_default=False),
    ],
    holdout_speakers: Annotated[
        list[str] | None,
        typer.Option(
            help="Held-out speakers, e.g. ravdess:19 tess:YAF, or bare RAVDESS actors 17 18 [default: RAVDESS 17-20].",
            show_default=False,
        ),
    ] = None,
    holdout_fraction: Annotated[
        float,
        typer.Option(
            help="Also hold out this share of the speakers of every corpus with five or more speakers and none "
            "named in --holdout-speakers (0 to 0.9).",
            min=0.0,
            max=0.9,
        ),
    ] = 0.2,
    holdout_corpus: Annotated[
        list[str] | None,
        typer.Option(
            help="Whole corpora to hold out, by their corpus name (labels.csv's corpus column, or ravdess, tess); "
            "repeat the option or separate names with commas.",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training clips (1 or more).", min=1)] = 30,
    steps: Annotated[
        int, typer.Option(help="Batches per epoch; 0: one pass over the training clips.", min=0)
    ] = 0,
    batch_size: Annotated[int, typer.Option(help="Windows per batch (1 or more).", min=1)] = 64,
    lr: Annotated[
        float, typer.Option(help="Peak learning rate (cosine schedule with one warm-up epoch).", min=1e-6, max=1.0)
    ] = 2e-3,
    width: Annotated[
        int, typer.Option(help="Filters of the first Conv1D block; later blocks have 2x and 3x (4 or more).", min=4)
    ] = 64,
    dropout: Annotated[float, typer.Option(help="Dropout before each dense layer (0 to 0.9).", min=0.0, max=0.9)] = 0.3,
    calm: Annotated[
        Calm,
        typer.Option(help="'calm' clips in training: count as neutral, or drop (validation scores them as neutral)."),
    ] = Calm.neutral,
    seed: Annotated[int, typer.Option(help="Seed of the weights and of the training draws.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train the voice model on MFCC + log-mel windows of augmented speech, validated on held-out
    speakers and corpora (the best epoch is the best mean accuracy over them)."""
    _require_training()
    from .train.voice import DEFAULT_HOLDOUT, VoiceConfig
    from .train.voice import train_voice as run

    extra = _extra_args(ctx)
    speakers = [a for a in extra if holdout_speakers and _looks_like_speaker(a)]
    sources = [str(p) for p in data] + [a for a in extra if a not in speakers]
    holdout = list(holdout_speakers or DEFAULT_HOLDOUT) + speakers
    corpora = [name.strip() for value in holdout_corpus or [] for name in value.split(",") if name.strip()]
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
            seed=seed,
        )
        metrics = run(config, out, quiet=quiet)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    v = metrics["validation"]
    typer.echo(
        f"held out ({len(v['per_group'])} groups): mean clip accuracy {v['accuracy']:.4f}, "
        f"mean macro-F1 {v['macro_f1']:.4f}; model: {out / 'model.keras'}"
    )
    for name, r in v["per_group"].items():
        typer.echo(f"  {name}: accuracy {r['accuracy']:.4f} (chance {r['chance']:.3f}), macro-F1 {r['macro_f1']:.4f}, n={r['n']}")


@app.command("export")
def export(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="A training run folder or a .keras model file; several (same task) export one model "
            "that averages their probabilities.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The .onnx file to write.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    metrics_json: Annotated[
        Path | None,
        typer.Option(
            help="Measured metrics to embed (e.g. `emocli evaluate --json` output) instead of the run's validation."
        ),
    ] = None,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Face models: quantize to int8 (about 3x faster on CPU, a quarter the size), calibrated on training faces.",
        ),
    ] = False,
    calibration: Annotated[
        Path | None,
        typer.Option(help="Faces to calibrate --int8 on (FER layout; default: the run's training data)."),
    ] = None,
) -> None:
    """Convert a trained model (or several, averaged) to one self-describing ONNX file.

    Labels, preprocessing and metrics travel inside it.
    """
    _require_training()
    from .train.export import ExportError, export_model

    try:
        export_model(sources, out, force=force, metrics_json=metrics_json, int8=int8, calibration=calibration,
                     log=typer.echo)  # fmt: skip
    except (ExportError, FileExistsError, FileNotFoundError, ValueError) as e:
        _fail(str(e))


@app.command("evaluate", context_settings={"allow_extra_args": True})
def evaluate(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="An exported model (.onnx).", show_default=False)],
    data: Annotated[
        list[Path],
        typer.Option(help="Faces: fer2013.csv or an image folder. Voice: audio folders/files: --data A B ..."),
    ],
    split: Annotated[str | None, typer.Option(help="Face split to score (default: test if present, else all).")] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the confusion PNG (default: the current folder; with --json, none unless given)."),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help='Print one JSON object: {"accuracy", "macro_f1", "n", "labels", "confusion"}.'),
    ] = False,
) -> None:
    """Accuracy, macro-F1 and confusion matrix of a model on a labelled dataset."""
    import json

    from .evaluate import JSON_KEYS, one_line_warnings
    from .evaluate import evaluate as run
    from .models import ModelError

    sources = list(data) + [Path(a) for a in _extra_args(ctx)]
    if out is not None and out.exists() and not out.is_dir():
        _fail(f"--out {out}: is a file, not a folder", 2)
    try:  # with --json, stdout carries the JSON object only (warnings go to stderr)
        with one_line_warnings(lambda text: typer.secho(text, fg=typer.colors.YELLOW, err=True)):
            report = run(model, sources, split=split, out=out if as_json else (out or Path.cwd()))
    except (ModelError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    except OSError as e:  # the picture could not be written
        _fail(f"cannot write {e.filename or out}: {e.strerror}")
    if as_json:
        typer.echo(json.dumps({k: report[k] for k in JSON_KEYS}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{model.name} on {', '.join(map(str, sources))} ({report.get('split', '')})")
    table.add_column("true \\ predicted")
    for label in report["labels"]:
        table.add_column(label[:8], justify="right")
    table.add_column("F1", justify="right")
    for label, row in zip(report["labels"], report["confusion"], strict=True):
        f1 = report["per_class_f1"].get(label)
        table.add_row(label, *map(str, row), "" if f1 is None else f"{f1:.3f}")
    console = Console()
    console.print(table)
    console.print(
        f"accuracy [bold]{report['accuracy']:.4f}[/], macro-F1 [bold]{report['macro_f1']:.4f}[/], n={report['n']}"
    )
    console.print(f"confusion matrix: {report['confusion_png']}")


@app.command("models")
def models_cmd(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Model files to describe (default: the shipped face and voice models).", show_default=False
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cards as one JSON list.")] = False,
) -> None:
    """The models in use, with their cards: task, labels, preprocessing, metrics, size."""
    import json

    from .models import ModelError, default_model_path, read_info

    if not paths:
        found = {task: default_model_path(task) for task in ("face", "voice")}
        missing = [task for task, p in found.items() if p is None]
        if missing and not as_json:
            typer.secho(f"no shipped {' or '.join(missing)} model found", fg=typer.colors.YELLOW, err=True)
        paths = [p for p in found.values() if p is not None]
        if not paths:
            _fail("no models found: pass model files, or put face.onnx / voice.onnx in export/")
    cards = []
    for path in paths:
        try:
            info = read_info(path)
        except ModelError as e:
            _fail(str(e))
        cards.append(_model_card(info))
    if as_json:
        typer.echo(json.dumps(cards, indent=2))
        return
    for card in cards:
        m = card["metrics"]
        score = ", ".join(f"{k} {m[k]:.4f}" for k in ("accuracy", "macro_f1") if isinstance(m.get(k), (int, float)))
        typer.echo(
            f"{card['task']}: {card['path']} ({card['size_bytes'] / 1e6:.2f} MB, {card['precision']}, "
            f"emocli {card['version'] or '?'})"
        )
        typer.echo(f"  labels: {', '.join(card['labels'])}")
        typer.echo(f"  preprocess: {card['preprocess_summary']}")
        typer.echo(
            f"  metrics: {score or 'none recorded'}"
            + (f" on {m.get('dataset')} ({m.get('split')})" if m.get("dataset") else "")
        )


def _model_card(info) -> dict:
    from .models import face_views

    p = info.preprocess
    if info.task == "face":
        size = "x".join(map(str, p.get("input_size", [])))
        zooms, mirrored = face_views(p)
        views = len(zooms) * (2 if mirrored else 1)
        summary = (f"{size} {'grayscale' if p.get('grayscale') else 'BGR'}, crop margin {p.get('crop_margin')}, "
                   f"{views} view{'s' * (views > 1)} averaged (zooms {', '.join(map(str, zooms))}"
                   f"{', mirrored' if mirrored else ''})")  # fmt: skip
    else:
        summary = (f"{p.get('sample_rate')} Hz, {p.get('window_s')} s windows, {p.get('n_mfcc')} MFCC + {p.get('n_mels')} log-mel, "
                   f"hop {p.get('hop')}, scaler {'yes' if p.get('mean') else 'no'}")  # fmt: skip
    return {"path": str(info.path), "task": info.task, "labels": info.labels, "preprocess_summary": summary,
            "metrics": info.metrics, "version": info.version, "precision": info.precision,
            "size_bytes": info.path.stat().st_size}  # fmt: skip


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
