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
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class _Option(TyperOption):
    """An option as the help shows it: its value's name (``SECONDS``, ``FILE``), never a
    Python type; a flag shows nothing. Ranges and defaults are in its help text."""

    def display_type_rich(self, ctx) -> str | None:
        if self.metavar is not None:
            return self.metavar
        if self.is_flag or self.count:
            return None
        if self.type_descriptor.is_choice:
            return "|".join(str(getattr(c, "value", c)) for c in self.type_descriptor.choices or ())
        return self.name.upper()

    def _get_number_range_help_str(self) -> str | None:
        return None


class _Argument(TyperArgument):
    """An argument as the help shows it: ``INPUT...`` (``[PATH]...`` when optional), no type."""

    def display_type_rich(self, ctx) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw.removesuffix("...")
        name = name if self.required else f"[{name}]"
        return name if self.nargs == 1 else name + "..."


def _plain(params: list) -> None:
    for param in params:
        if isinstance(param, TyperOption):
            param.__class__ = _Option
        elif isinstance(param, TyperArgument):
            param.__class__ = _Argument


class _PlainHelp:
    """A command or group whose options and arguments show as ``_Option`` and ``_Argument`` do."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _plain(self.params)

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        _plain([option])
        return option


class _Command(_PlainHelp, TyperCommand):
    pass


class _Group(_PlainHelp, TyperGroup):
    pass


app = typer.Typer(
    name="emocli",
    cls=_Group,
    help="What emotion the people in a video show on their faces and carry in their voices, over time.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
train_app = typer.Typer(
    cls=_Group, help="Train a face or voice model (Keras); then `emocli export` it.", no_args_is_help=True
)
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


def _require_training(export: bool = False) -> None:
    """Training and export live in the `train` extra: say how to get it, not a traceback.

    Training runs on whichever Keras backend KERAS_BACKEND names (JAX or PyTorch on a GPU,
    say); export always converts through TensorFlow and tf2onnx.
    """
    import os
    from importlib.util import find_spec

    needed = ["keras", "tensorflow", "tf2onnx"] if export else ["keras", os.environ.get("KERAS_BACKEND", "tensorflow")]
    missing = [name for name in needed if find_spec(name) is None]
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


# The analysis options `process` and `live` share, declared once.
IntervalOption = Annotated[
    float,
    typer.Option(
        metavar="SECONDS",
        help="Seconds between samples, 0.05 or more: one timeline row per interval and face.",
        min=0.05,
    ),
]

FaceModelOption = Annotated[
    Path | None, typer.Option(metavar="FILE", help="Face model (.onnx).", show_default="the shipped one")
]

VoiceModelOption = Annotated[
    Path | None, typer.Option(metavar="FILE", help="Voice model (.onnx).", show_default="the shipped one")
]

FusionOption = Annotated[
    Fusion, typer.Option(help="weighted: combine face and voice; face or voice: that modality alone.")
]

FaceWeightOption = Annotated[
    float | None,
    typer.Option(
        metavar="W",
        help="Fuse as a weighted mean with this weight (0 to 1) on the face, instead of the product of the two "
        "distributions fitted on audio-visual validation clips, where the more confident modality leads.",
        show_default="the fitted product",
        min=0.0,
        max=1.0,
    ),
]

FaceFramesOption = Annotated[
    int,
    typer.Option(
        metavar="N",
        help="Frames per interval whose faces are classified and averaged (1 or more).",
        min=1,
    ),
]

MaxFacesOption = Annotated[
    int, typer.Option(metavar="N", help="At most this many faces per frame, largest first (1 or more).", min=1)
]

MinFaceOption = Annotated[
    float,
    typer.Option(
        metavar="FRACTION",
        help="Ignore faces smaller than this fraction (0 to 1) of the frame's shorter side.",
        min=0.0,
        max=1.0,
    ),
]

MinFaceScoreOption = Annotated[
    float,
    typer.Option(
        metavar="SCORE",
        help="Detector score (0.01 to 0.99) a face needs to count. Lower finds more faces (small, turned, "
        "dim) and more false ones.",
        min=0.01,
        max=0.99,
    ),
]

VadThresholdOption = Annotated[
    float,
    typer.Option(
        metavar="P",
        help="Speech probability (0.01 to 0.99) at which the voice-activity detector counts 32 ms of audio as "
        "speech; an interval is voiced when a fifth of its audio window is speech. Lower hears quieter speech, "
        "higher rejects more noise.",
        min=0.01,
        max=0.99,
    ),
]


@app.command(cls=_Command)
def process(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUT...", help="Video files and/or folders (searched recursively).", show_default=False
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            "--out",
            metavar="FOLDER",
            help="Output folder; mirrors the inputs' layout.",
            show_default=False,
        ),
    ],
    output_format: Annotated[
        str,
        typer.Option(
            metavar="FORMATS",
            help="Timeline formats, comma-separated: csv, json (<stem>.json: one object with the video's facts "
            "and rows), or all. The CSV is always written: a rerun reads it.",
        ),
    ] = "csv",
    interval: IntervalOption = 1.0,
    window: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Seconds of audio, centred on each interval, that the voice model hears (0.2 or more).",
            min=0.2,
        ),
    ] = 2.0,
    annotate: Annotated[
        bool,
        typer.Option("--annotate", help="Also write <stem>.mp4 with boxes, ids and labels, and the original sound."),
    ] = False,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write <stem>.png, the emotion over time.")] = True,
    workers: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Videos processed in parallel, 1 or more; each takes two cores, one to decode and one to analyse. "
            "With --engine ray: the cluster's CPUs.",
            show_default="half the usable cores",
            min=1,
        ),
    ] = None,
    engine: Annotated[
        Engine, typer.Option(help="local: processes on this machine; ray: a Ray cluster (pip install 'emocli[ray]').")
    ] = Engine.local,
    ray_address: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT", help="Ray cluster to join, e.g. 10.0.0.5:6379.", show_default="start a local Ray"
        ),
    ] = None,
    face_model: FaceModelOption = None,
    voice_model: VoiceModelOption = None,
    fusion: FusionOption = Fusion.weighted,
    face_weight: FaceWeightOption = None,
    face_frames: FaceFramesOption = 3,
    max_faces: MaxFacesOption = 8,
    min_face: MinFaceOption = 0.05,
    min_face_score: MinFaceScoreOption = 0.5,
    vad_threshold: VadThresholdOption = 0.5,
    face_views: Annotated[
        bool,
        typer.Option(
            "--face-views/--one-face-view",
            help="Average the face model's views (zooms x mirror, from its metadata) of each of an interval's "
            "--face-frames, or classify each crop once: six times less face-model time, for a little "
            "less accuracy on FER2013 faces and none on faces through a camera.",
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Redo every video, even those whose outputs are current.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Errors only: no progress, no per-video lines.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for failed videos.")] = False,
) -> None:
    """Write a timeline CSV (and plot, and optionally an annotated MP4) for every video.

    Example: emocli process examples/demo.mp4 -o out/ --annotate
    """
    from .batch import BatchOptions, Interrupted, SummaryError, UsageError, run_batch
    from .models import ModelError
    from .pipeline import AnalyzeOptions

    # Each option is named as the field it sets.
    given = {**locals(), "fusion": fusion.value, "engine": engine.value, "formats": _formats(output_format)}
    options = AnalyzeOptions(**_fields_of(AnalyzeOptions, given))
    batch = BatchOptions(**_fields_of(BatchOptions, given))
    try:
        summary = run_batch(inputs, output, options, batch)
    except UsageError as e:
        _fail(str(e), 2)
    except (ModelError, FileNotFoundError, ValueError, ImportError, SummaryError) as e:
        _fail(str(e))
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP: what finished is in the summary
        code = e.exit_code if isinstance(e, Interrupted) else 130
        _fail(f"interrupted: the videos that finished are in {output / 'summary.csv'}; rerun to do the rest", code)
    if any(row["status"] == "failed" for row in summary):
        raise typer.Exit(1)


@app.command("live", cls=_Command)
def live(
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE",
            help="A camera index (0), a stream URL that ffmpeg reads (rtsp://, rtmp://, http(s)://, udp://, srt://, "
            "tcp://), - for a stream on standard input, or a media file (played at its own pace).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            "--out",
            metavar="FOLDER",
            help="Output folder: <name>.csv grows by one interval's rows at a time.",
            show_default=False,
        ),
    ],
    interval: IntervalOption = 1.0,
    window: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Seconds of audio, centred on each interval, that the voice model hears (0.2 or more); an interval's "
            "rows wait for the half that lies after it.",
            min=0.2,
        ),
    ] = 2.0,
    duration: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Stop after this many seconds of stream (0.01 or more).",
            show_default="until the stream ends or Ctrl-C",
            min=0.01,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Name of the outputs in the folder (NAME.csv, NAME.mp4); an existing one is never overwritten.",
            show_default="live-<start time, UTC>, e.g. live-20261130T094512Z",
        ),
    ] = None,
    annotate: Annotated[
        bool,
        typer.Option(
            "--annotate",
            help="Also write <name>.mp4 as it goes: the picture with boxes, ids and labels, and the sound "
            "(fragmented MP4: playable even if the run is killed).",
        ),
    ] = False,
    show: Annotated[
        bool,
        typer.Option("--show", help="Open a window with the annotated picture, where there is a display (q closes)."),
    ] = False,
    face_model: FaceModelOption = None,
    voice_model: VoiceModelOption = None,
    fusion: FusionOption = Fusion.weighted,
    face_weight: FaceWeightOption = None,
    face_frames: FaceFramesOption = 3,
    max_faces: MaxFacesOption = 8,
    min_face: MinFaceOption = 0.05,
    min_face_score: MinFaceScoreOption = 0.5,
    vad_threshold: VadThresholdOption = 0.5,
    timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Seconds without data after which the stream counts as dropped (0.1 or more).",
            min=0.1,
        ),
    ] = 10.0,
    retries: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Reconnections to a camera or URL that dropped, one second apart, before giving up (0 or more).",
            min=0,
        ),
    ] = 3,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No line per interval; warnings and errors only.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")] = False,
) -> None:
    """Analyse a camera or stream as it arrives: one timeline row set per interval, appended to <name>.csv.

    The same analysis as emocli process (faces, who speaks, voice, fusion). Times are seconds from the
    stream's start; each interval's rows are flushed as it ends, so tail -f or pandas can follow. Stops at
    --duration, at the end of the stream, or on Ctrl-C (exit 0); a stream that drops is reconnected
    --retries times, then the run ends with exit 1.

    Example: emocli live rtsp://camera.local/stream -o out/ --duration 600
    """
    from .batch import UsageError
    from .live import LiveError, LiveOptions, run_live
    from .models import ModelError
    from .pipeline import AnalyzeOptions

    given = {**locals(), "fusion": fusion.value}
    options = AnalyzeOptions(**_fields_of(AnalyzeOptions, given))
    live_options = LiveOptions(**_fields_of(LiveOptions, given))

    def warn(text: str) -> None:
        typer.secho(text, fg=typer.colors.YELLOW, err=True)

    try:
        summary = run_live(source, output, options, live_options, echo=typer.echo, warn=warn)
    except UsageError as e:
        _fail(str(e), 2)
    except (LiveError, ModelError, FileNotFoundError, ValueError, OSError) as e:
        if debug:
            raise
        _fail(str(e))
    skipped = f" ({summary['skipped']} skipped to stay live)" if summary["skipped"] else ""
    lag = f", lag mean {summary['lag_mean_s']:.2f} s, max {summary['lag_max_s']:.2f} s" if summary["lag_max_s"] else ""
    mostly = f", mostly {summary['dominant_emotion']}" if summary["dominant_emotion"] else ""
    how = {2: "stopped by Ctrl-C", 15: "stopped by SIGTERM"}.get(summary["signal"], "")
    if not quiet or summary["error"]:
        typer.echo(
            f"{how + ': ' if how else ''}{summary['intervals']} intervals{skipped}, {summary['faces']} "
            f"face{'s' * (summary['faces'] != 1)}{mostly}{lag} → "
            + (summary["csv"] if Path(summary["csv"]).exists() else "nothing written (no data came)")
        )
    if summary["error"]:
        _fail(f"{source}: the stream dropped and could not be reopened: {summary['error']}")


def _fields_of(cls, values: dict) -> dict:
    """The entries of ``values`` that are fields of the dataclass ``cls``."""
    from dataclasses import fields

    return {f.name: values[f.name] for f in fields(cls) if f.name in values}


TIMELINE_FORMATS = ("csv", "json")


def _formats(value: str) -> tuple[str, ...]:
    """``--output-format csv,json`` (or ``all``) as the formats in a fixed order, csv always among them."""
    asked = {name.strip().lower() for name in value.split(",") if name.strip()}
    if "all" in asked:
        asked = set(TIMELINE_FORMATS)
    unknown = sorted(asked - set(TIMELINE_FORMATS))
    if unknown:
        _fail(f"--output-format: unknown format {unknown[0]!r} (choose from csv, json, all)", 2)
    return tuple(f for f in TIMELINE_FORMATS if f in asked or f == "csv")


class CameraPreset(StrEnum):
    full = "full"
    off = "off"


class Precision(StrEnum):
    auto = "auto"
    float32 = "float32"
    mixed_bfloat16 = "mixed_bfloat16"
    mixed_float16 = "mixed_float16"


_RUN_FOLDER = "Run folder: checkpoints, history, curves, metrics. Rerun to resume."


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
    """Train the face CNN on 48x48 grayscale faces (FER2013 layout).

    Example: emocli train face --data fer2013/ -o runs/face --crowd-labels ferplus/labels.csv
    """
    _check_training(lr=lr, val_fraction=val_fraction)
    if not temperature > 0:  # also NaN
        _fail(f"--temperature must be above 0, not {temperature}", 2)
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
    try:
        metrics = run(config, out, quiet=quiet)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
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


def _extra_args(ctx: typer.Context) -> list[str]:
    """`--data A B C`: Click options take one value, so B and C arrive as extra arguments."""
    for arg in ctx.args:
        if arg.startswith("-"):
            _fail(f"no such option: {arg}", 2)
    return list(ctx.args)


def _looks_like_speaker(arg: str) -> bool:
    """`19` or `ravdess:19` (not an existing path): a value of --holdout-speakers A B ..."""
    return not Path(arg).exists() and (arg.isdigit() or (":" in arg and "/" not in arg))


@train_app.command("voice", cls=_Command, context_settings={"allow_extra_args": True})
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
        typer.Option("--output", "-o", "--out", metavar="FOLDER", help=_RUN_FOLDER, show_default=False),
    ],
    holdout_speakers: Annotated[
        list[str] | None,
        typer.Option(
            help="Held-out speakers, e.g. ravdess:19 tess:YAF, or bare RAVDESS actors 17 18.",
            show_default="RAVDESS actors 17-20",
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
            show_default="none",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training clips (1 or more).", min=1)] = 30,
    steps: Annotated[int, typer.Option(help="Batches per epoch; 0: one pass over the training clips.", min=0)] = 0,
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
            help="Corpora are drawn in proportion to their size to this power: 0 each corpus equally, "
            "1 each clip equally.",
            min=0.0,
            max=1.0,
        ),
    ] = 0.5,
    corpus_weight: Annotated[
        list[str] | None,
        typer.Option(
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
    seed: Annotated[int, typer.Option(help="Seed of the weights and of the training draws.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train the voice model on MFCC + log-mel windows of augmented speech, validated on held-out
    speakers and corpora (the best epoch is the best mean accuracy over them, unless --keep last)."""
    _require_training()
    from .train.voice import DEFAULT_HOLDOUT, VoiceConfig
    from .train.voice import train_voice as run
    from .train.voice_batches import AUGMENT_PRESETS

    extra = _extra_args(ctx)
    speakers = [a for a in extra if holdout_speakers and _looks_like_speaker(a)]
    sources = [str(p) for p in data] + [a for a in extra if a not in speakers]
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
        typer.echo(
            f"  {name}: accuracy {r['accuracy']:.4f} (chance {r['chance']:.3f}), macro-F1 {r['macro_f1']:.4f}, n={r['n']}"
        )


@app.command("export", cls=_Command)
def export(
    sources: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN...",
            help="A training run folder or a .keras model file; several (same task) export one model "
            "that averages their probabilities. Exported models (.onnx) average as they are, each "
            "keeping its graph and precision (a voice model also its feature scaler).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            "--out",
            metavar="FOLDER",
            help="Folder to write the model in (made if missing); a path ending in .onnx is the file itself.",
        ),
    ] = Path("."),
    name: Annotated[
        str | None,
        typer.Option(
            metavar="FILE",
            help="File name of the model in --output.",
            show_default="RUN's folder name + .onnx",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    metrics_json: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Measured metrics to embed (e.g. `emocli evaluate --json` output).",
            show_default="the run's validation metrics",
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
        typer.Option(
            metavar="PATH", help="Faces to calibrate --int8 on (FER layout).", show_default="the run's training data"
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            metavar="T",
            min=0.01,
            help="Voice models: the softmax temperature to store, e.g. an ensemble's, fitted on held-out "
            "windows by benchmarks/voice_heldout.py --temperature.",
            show_default="the run's own (an ensemble has none)",
        ),
    ] = None,
) -> None:
    """Convert a trained model (or several, averaged) to one self-describing ONNX file.

    Labels, preprocessing and metrics travel inside it.

    Example: emocli export runs/face runs/face2 -o face.onnx --int8
    """
    out = _model_file(sources, output, name)
    onnx_files = [s for s in sources if s.suffix.lower() == ".onnx"]
    if onnx_files:
        if len(onnx_files) < len(sources):
            _fail("export either runs (folders, .keras) or exported models (.onnx), not both", 2)
        if int8 or calibration:
            _fail("--int8 and --calibration apply to runs; exported models keep their own precision", 2)
        _average_exported(onnx_files, out, force, metrics_json, temperature)
        return
    _require_training(export=True)
    from .train.export import ExportError, export_model

    try:
        export_model(
            sources,
            out,
            force=force,
            metrics_json=metrics_json,
            int8=int8,
            calibration=calibration,
            temperature=temperature,
            log=typer.echo,
        )
    except (ExportError, FileExistsError, FileNotFoundError, ValueError) as e:
        _fail(str(e))


def _average_exported(
    files: list[Path], out: Path, force: bool, metrics_json: Path | None, temperature: float | None
) -> None:
    from importlib.util import find_spec

    if find_spec("onnx") is None:
        _fail("averaging exported models needs onnx: pip install 'emocli[train]'")
    from .train.combine import combine_models
    from .train.export import ExportError

    try:
        combine_models(files, out, force=force, metrics_json=metrics_json, temperature=temperature, log=typer.echo)
    except (ExportError, FileExistsError, FileNotFoundError, ValueError) as e:
        _fail(str(e))


def _views_a_face(views) -> str:
    """ ", 6 views a face" for a face evaluation's view count; "" where there is none."""
    return f", {views} view{'s' * (views > 1)} a face" if isinstance(views, int) else ""


def _model_file(sources: list[Path], output: Path, name: str | None) -> Path:
    """Where ``export`` writes: ``output/name``, or ``output`` itself when it names a .onnx file."""
    if name is None and output.suffix.lower() == ".onnx" and not output.is_dir():
        return output
    if output.exists() and not output.is_dir():
        _fail(f"-o {output}: is a file, not a folder (a model file's name ends in .onnx)", 2)
    if name is None:
        first = sources[0] if sources else Path("model")
        # runs/face/model.keras is the run runs/face: its model is face.onnx.
        if first.suffix == ".keras":
            name = first.parent.name if first.stem == "model" else first.stem
        else:
            name = first.name
    if Path(name).name != name:
        _fail(f"--name {name}: a file name, not a path (the folder is -o)", 2)
    return output / (name if name.lower().endswith(".onnx") else f"{name}.onnx")


@app.command("evaluate", cls=_Command, context_settings={"allow_extra_args": True})
def evaluate(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="An exported model (.onnx).", show_default=False)],
    data: Annotated[
        list[Path],
        typer.Option(
            metavar="PATH...",
            help="Faces: fer2013.csv or a folder of [<split>/]<class>/ images (in photographs the face is found and cropped first). Voice: audio folders/files: --data A B ...",
            show_default=False,
        ),
    ],
    split: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Face split to score.", show_default="test if present, else all"),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            "--out",
            metavar="FOLDER",
            help="Folder for the confusion-matrix PNG; with --json, none is written unless this is given.",
            show_default="the current folder",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help='Print one JSON object: {"accuracy", "macro_f1", "n", "labels", "confusion"}.'),
    ] = False,
    face_views: Annotated[
        bool,
        typer.Option(
            "--face-views/--one-face-view",
            help="Face models: average each face over the model's views, or classify it once, as `emocli process` "
            "does by default.",
        ),
    ] = False,
) -> None:
    """Accuracy, macro-F1 and confusion matrix of a model on a labelled dataset."""
    import json

    from .evaluate import JSON_KEYS, one_line_warnings
    from .evaluate import evaluate as run
    from .models import ModelError

    sources = list(data) + [Path(a) for a in _extra_args(ctx)]
    if out is not None and out.exists() and not out.is_dir():
        _fail(f"-o {out}: is a file, not a folder", 2)
    try:  # with --json, stdout carries the JSON object only (warnings go to stderr)
        with one_line_warnings(lambda text: typer.secho(text, fg=typer.colors.YELLOW, err=True)):
            report = run(
                model, sources, split=split, out=out if as_json else (out or Path.cwd()), face_views=face_views
            )
    except (ModelError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    except OSError as e:  # the picture could not be written
        _fail(f"cannot write {e.filename or out}: {e.strerror}")
    if as_json:
        typer.echo(json.dumps({k: report[k] for k in JSON_KEYS if k in report}))
        return
    from rich.console import Console
    from rich.table import Table

    views = _views_a_face(report.get("views"))
    table = Table(title=f"{model.name} on {', '.join(map(str, sources))} ({report.get('split', '')}{views})")
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
    if report.get("photographs"):
        console.print(f"faces detected and cropped in {report['detected']} of {report['photographs']} photographs")
    console.print(f"confusion matrix: {report['confusion_png']}")


@app.command("models", cls=_Command)
def models_cmd(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="MODEL...", help="Model files to describe.", show_default="the shipped face and voice models"
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
            + _views_a_face(m.get("views"))
        )


def _model_card(info) -> dict:
    from .models import face_views

    p = info.preprocess
    if info.task == "face":
        size = "x".join(map(str, p.get("input_size", [])))
        zooms, mirrored = face_views(p)
        views = len(zooms) * (2 if mirrored else 1)
        summary = (
            f"{size} {'grayscale' if p.get('grayscale') else 'BGR'}, crop margin {p.get('crop_margin')}, "
            f"one view a face; --face-views: {views} (zooms {', '.join(map(str, zooms))}"
            f"{', mirrored' if mirrored else ''})"
        )
    else:
        summary = (
            f"{p.get('sample_rate')} Hz, {p.get('window_s')} s windows, {p.get('n_mfcc')} MFCC + {p.get('n_mels')} log-mel"
            f"{' + voicing and pitch' if p.get('pitch') else ''}, hop {p.get('hop')}, scaler {'yes' if p.get('mean') else 'no'}"
        )
    return {
        "path": str(info.path),
        "task": info.task,
        "labels": info.labels,
        "preprocess_summary": summary,
        "metrics": info.metrics,
        "version": info.version,
        "precision": info.precision,
        "size_bytes": info.path.stat().st_size,
    }


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
