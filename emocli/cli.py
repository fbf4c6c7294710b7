"""The emocli command line: a thin Typer layer over the library.

Heavy modules (numpy, onnxruntime, mediapipe, and for training TensorFlow) are
imported inside the commands, so `emocli --help` answers at once.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from .usage import LIMITS, span


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


@contextlib.contextmanager
def _one_line_failures(*kinds: type[Exception]) -> Iterator[None]:
    """Within the block, bad usage (a missing input, ``UsageError``) exits 2 and an exception
    of ``kinds`` exits 1, each as its one-line message."""
    from .usage import UsageError

    try:
        yield
    except (FileNotFoundError, UsageError) as e:
        _fail(str(e), 2)
    except kinds as e:
        _fail(str(e))


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


def _check_exist(paths: list) -> None:
    """A missing input path, said before any heavy import (exit 2)."""
    for path in paths:
        if not Path(path).exists():
            _fail(f"{path}: no such file or folder", 2)


def _check_run_paths(data: list, out: Path) -> None:
    """A missing --data and an -o that is a file, said before TensorFlow loads (exit 2)."""
    _check_exist(data)
    if out.exists() and not out.is_dir():
        _fail(f"-o {out}: is a file, not a folder", 2)


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
        help=f"Seconds between samples, {span('interval')}: one timeline row per interval and face.",
        min=LIMITS["interval"][0],
        max=LIMITS["interval"][1],
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
        help=f"Fuse as a weighted mean with this weight ({span('face_weight')}) on the face, instead of the fitted product: the "
        "face's probabilities times the voice's raised to a power below 1 (fitted on audio-visual validation "
        "clips), so the more confident modality leads and the face counts more.",
        show_default="the fitted product",
        min=LIMITS["face_weight"][0],
        max=LIMITS["face_weight"][1],
    ),
]

FaceFramesOption = Annotated[
    int,
    typer.Option(
        metavar="N",
        help=f"Frames per interval whose faces are classified and averaged ({span('face_frames')}).",
        min=LIMITS["face_frames"][0],
    ),
]

MaxFacesOption = Annotated[
    int,
    typer.Option(
        metavar="N",
        help=f"At most this many faces per frame: those already followed first, then the largest ({span('max_faces')}).",
        min=LIMITS["max_faces"][0],
    ),
]

MinFaceOption = Annotated[
    float,
    typer.Option(
        metavar="FRACTION",
        help=f"Ignore faces smaller than this fraction ({span('min_face')}) of the frame's shorter side.",
        min=LIMITS["min_face"][0],
        max=LIMITS["min_face"][1],
    ),
]

MinFaceScoreOption = Annotated[
    float,
    typer.Option(
        metavar="SCORE",
        help=f"Detector score ({span('min_face_score')}) a face needs to count. Lower finds more faces (small, "
        "turned, dim) and more false ones.",
        min=LIMITS["min_face_score"][0],
        max=LIMITS["min_face_score"][1],
    ),
]

VadThresholdOption = Annotated[
    float,
    typer.Option(
        metavar="P",
        help=f"Speech probability ({span('vad_threshold')}) at which the voice-activity detector counts 32 ms "
        "of audio as speech; an interval is voiced when a fifth of its audio window (within the media) is speech. "
        "Lower hears quieter speech, higher rejects more noise.",
        min=LIMITS["vad_threshold"][0],
        max=LIMITS["vad_threshold"][1],
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
            help=f"Seconds of audio, centred on each interval, that the voice model hears ({span('window')}).",
            min=LIMITS["window"][0],
            max=LIMITS["window"][1],
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
        Engine,
        # "\\[": rich would take [ray] for markup and drop it from the help
        typer.Option(help="local: processes on this machine; ray: a Ray cluster (pip install 'emocli\\[ray]')."),
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
            help="--face-views: classify each of an interval's --face-frames crops in every view the face model "
            "names (zooms x mirror) and average them: six times the face-model time, for a little more accuracy "
            "on FER2013 faces and none on faces through a camera. --one-face-view (the default): each crop once.",
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
    with _ctrl_c_after_imports():
        from .batch import BatchOptions, Interrupted, SummaryError, UsageError, run_batch
        from .models import ModelError
        from .pipeline import AnalyzeOptions

    # Each option is named as the field it sets.
    given = {**locals(), "fusion": fusion.value, "engine": engine.value, "formats": _formats(output_format)}
    options = _analyze_options(AnalyzeOptions, given)
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
            help=f"Seconds of audio, centred on each interval, that the voice model hears ({span('window')}); an "
            "interval's rows wait for the half that lies after it.",
            min=LIMITS["window"][0],
            max=LIMITS["window"][1],
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
            help="Seconds without data after which the stream counts as dropped (0.1 or more; 5 s more for the first data after opening).",
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
    try:
        with _ctrl_c_after_imports():
            import onnxruntime  # noqa: F401  (here, not at the first model: see _ctrl_c_after_imports)

            from .batch import UsageError
            from .live import LiveError, LiveOptions, run_live
            from .models import ModelError
            from .pipeline import AnalyzeOptions
    except KeyboardInterrupt:
        typer.echo("stopped by Ctrl-C before the stream opened: nothing written")
        return

    given = {**locals(), "fusion": fusion.value}
    options = _analyze_options(AnalyzeOptions, given)
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
    except KeyboardInterrupt:  # Ctrl-C while the models load: a stop like any other, nothing to write
        typer.echo("stopped by Ctrl-C before the stream opened: nothing written")
        return
    skipped = f" ({summary['skipped']} skipped to stay live)" if summary["skipped"] else ""
    lag = f", lag mean {summary['lag_mean_s']:.2f} s, max {summary['lag_max_s']:.2f} s" if summary["lag_max_s"] else ""
    mostly = f", mostly {summary['dominant_emotion']}" if summary["dominant_emotion"] else ""
    how = {2: "stopped by Ctrl-C", 15: "stopped by SIGTERM"}.get(summary["signal"], "")
    if not quiet or summary["error"]:
        typer.echo(
            f"{how + ': ' if how else ''}{summary['intervals']} interval{'s' * (summary['intervals'] != 1)}{skipped}, "
            f"{summary['faces']} "
            f"face{'s' * (summary['faces'] != 1)}{mostly}{lag} → "
            + (summary["csv"] if Path(summary["csv"]).exists() else "nothing written (no data came)")
        )
    if summary["error"]:
        _fail(f"{source}: the stream dropped and could not be reopened: {summary['error']}")


def _analyze_options(cls, given: dict):
    """``cls`` (AnalyzeOptions) from the command's options; a combination that does not go
    together is one line and exit 2."""
    if given["face_weight"] is not None and given["fusion"] != "weighted":
        _fail(f"--face-weight weighs the face against the voice: it does not go with --fusion {given['fusion']}", 2)
    try:
        return cls(**_fields_of(cls, given))
    except (TypeError, ValueError) as e:
        _fail(str(e), 2)


@contextlib.contextmanager
def _ctrl_c_after_imports() -> Iterator[None]:
    """A Ctrl-C while the heavy libraries import is held until they are in, then raised:
    onnxruntime's extension turns one that lands inside it into an ImportError traceback."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    asked = []
    previous = signal.signal(signal.SIGINT, lambda *_: asked.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if asked:
        raise KeyboardInterrupt


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


def _extra_args(ctx: typer.Context) -> list[str]:
    """`--data A B C`: Click options take one value, so B and C arrive as extra arguments."""
    for arg in ctx.args:
        if arg.startswith("-"):
            _fail(f"no such option: {arg}", 2)
    return list(ctx.args)


# The model commands live in their own modules; importing them registers them on ``app``,
# after process and live, so `emocli --help` lists them in that order.
from . import cli_models, cli_train  # noqa: E402, F401


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
