"""`emocli export`, `emocli evaluate` and `emocli models`: a model file written, scored, shown."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli import _check_exist, _Command, _extra_args, _fail, _one_line_failures, _require_training, app


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
            help="Face models: quantize to int8 (1.6-3x faster on CPU, most with AVX-512 VNNI; a quarter the size), "
            "calibrated on training faces.",
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
    weights: Annotated[
        str | None,
        typer.Option(
            metavar="W,W,...",
            help="Exported models: each one's share of the average, in order (e.g. 0.8,0.2); they need not sum to 1.",
            show_default="equal shares",
        ),
    ] = None,
    level_range: Annotated[
        str | None,
        typer.Option(
            metavar="LOW,HIGH",
            help="Exported voice models: the speech levels (dBFS) the average hears speech at; a stream's "
            "speech outside them is scaled to the nearer one. Printed by benchmarks/voice_heldout.py "
            "--level-range from the training clips.",
            show_default="the first model's",
        ),
    ] = None,
    fill_narrowband: Annotated[
        bool,
        typer.Option(
            "--fill-narrowband",
            help="Exported voice models: the average hears narrowband windows (a phone line, 8 kHz audio) "
            "with the floor outside the telephone band that training's telephone augmentation leaves "
            "(CNN runs store it on).",
            show_default="the first model's",
        ),
    ] = False,
    half: Annotated[
        bool,
        typer.Option(
            "--half",
            help="Exported models: store the averaged file's float32 weights as float16 (half the size, the "
            "same speed; probabilities within 2e-3, checked before the file is written).",
        ),
    ] = False,
) -> None:
    """Convert a trained model (or several, averaged) to one self-describing ONNX file.

    Labels, preprocessing and metrics travel inside it. Needs pip install 'emocli\\[train]'.

    Example: emocli export runs/face runs/face2 -o face.onnx --int8
    """
    _check_exist(sources)
    if metrics_json is not None:
        _check_metrics_json(metrics_json)
    out = _model_file(sources, output, name)
    onnx_files = [s for s in sources if s.suffix.lower() == ".onnx"]
    if onnx_files:
        if len(onnx_files) < len(sources):
            _fail("export either runs (folders, .keras) or exported models (.onnx), not both", 2)
        if int8 or calibration:
            _fail("--int8 and --calibration apply to runs; exported models keep their own precision", 2)
        try:
            shares = [float(w) for w in weights.split(",")] if weights else None
        except ValueError:
            _fail(f"--weights takes numbers separated by commas, not {weights!r}", 2)
        levels = _level_range(level_range) if level_range is not None else None
        _average_exported(onnx_files, out, force, metrics_json, temperature, shares, half, levels, fill_narrowband)
        return
    if weights or half or level_range is not None or fill_narrowband:
        _fail(
            "--weights, --half, --level-range and --fill-narrowband apply to averaging exported models (.onnx files)",
            2,
        )
    _require_training(export=True)
    from .train.export import ExportError, export_model

    with _one_line_failures(ExportError, FileExistsError, ValueError):
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


def _average_exported(
    files: list[Path],
    out: Path,
    force: bool,
    metrics_json: Path | None,
    temperature: float | None,
    weights: list[float] | None,
    half: bool,
    level_range: tuple[float, float] | None,
    fill_narrowband: bool,
) -> None:
    from importlib.util import find_spec

    if find_spec("onnx") is None:
        _fail("averaging exported models needs onnx: pip install 'emocli[train]'")
    from .train.combine import combine_models
    from .train.export import ExportError

    with _one_line_failures(ExportError, FileExistsError, ValueError):
        combine_models(
            files,
            out,
            force=force,
            metrics_json=metrics_json,
            temperature=temperature,
            weights=weights,
            half=half,
            level_range=level_range,
            fill_narrowband=fill_narrowband,
            log=typer.echo,
        )


def _level_range(text: str) -> tuple[float, float]:
    """--level-range LOW,HIGH: two finite dBFS levels, LOW <= HIGH."""
    import math

    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        _fail(f"--level-range takes LOW,HIGH in dBFS (e.g. -30,-20), not {text!r}", 2)
    if not (math.isfinite(low) and math.isfinite(high) and low <= high <= 0):
        _fail(f"--level-range takes LOW,HIGH in dBFS with LOW <= HIGH <= 0, not {text!r}", 2)
    return low, high


def _check_metrics_json(path: Path) -> None:
    """--metrics-json must be a JSON object (a run's metrics.json, `evaluate --json`'s output)."""
    import json

    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        _fail(f"--metrics-json {path}: no such file", 2)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(f"--metrics-json {path}: not readable as JSON ({e})", 2)
    if not isinstance(value, dict):
        _fail(f"--metrics-json {path}: expected a JSON object (evaluate --json writes one)", 2)


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
            help="Faces: fer2013.csv or a folder of [<split>/]<class>/ images (in photographs the face is found "
            "and cropped first). Voice: audio folders or files (as train voice reads them): --data A B ...",
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
        typer.Option(
            "--json",
            help="Print one JSON object: accuracy, macro_f1, n, labels, confusion, dataset, split; for faces "
            "also views, photographs and detected, for voices per_dataset (each corpus's figures).",
        ),
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
    """Accuracy, macro-F1 and confusion matrix of a model on a labelled dataset.

    Example: emocli evaluate export/voice.onnx --data my_corpus/ (audio files and a labels.csv)
    """
    import json

    from .evaluate import JSON_KEYS, one_line_warnings
    from .evaluate import evaluate as run
    from .models import ModelError

    sources = list(data) + [Path(a) for a in _extra_args(ctx)]
    if out is not None and out.exists() and not out.is_dir():
        _fail(f"-o {out}: is a file, not a folder", 2)
    try:  # with --json, stdout carries the JSON object only (warnings go to stderr)
        with (
            _one_line_failures(ModelError, ValueError),
            one_line_warnings(lambda text: typer.secho(text, fg=typer.colors.YELLOW, err=True)),
        ):
            report = run(
                model, sources, split=split, out=out if as_json else (out or Path.cwd()), face_views=face_views
            )
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
    if len(report.get("per_dataset", {})) > 1:
        for name, part in report["per_dataset"].items():
            console.print(
                f"  {name}: accuracy {part['accuracy']:.4f} (chance {part['chance']:.3f}), "
                f"macro-F1 {part['macro_f1']:.4f}, n={part['n']}"
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
    cards, code = [], 0
    for path in paths:
        try:
            cards.append(_model_card(read_info(path)))
        except ModelError as e:  # said, and the other files' cards still shown
            typer.secho(str(e), fg=typer.colors.RED, err=True)
            code = max(code, 2 if isinstance(e, FileNotFoundError) else 1)
    if as_json:
        typer.echo(json.dumps(cards, indent=2))
    else:
        _print_cards(cards)
    if code:
        raise typer.Exit(code)


def _print_cards(cards: list[dict]) -> None:
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
    from .models import DEFAULT_FACE_PREPROCESS, face_views

    p = info.preprocess
    if info.task == "face":
        p = {**DEFAULT_FACE_PREPROCESS, **p}  # what inference uses where the file is silent
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
        if p.get("level_range"):
            summary += ", speech heard at {:g} to {:g} dBFS".format(*p["level_range"])
        if p.get("fill_narrowband"):
            summary += ", narrowband windows filled"
    return {
        "path": str(info.path),
        "task": info.task,
        "labels": info.labels,
        "preprocess": p,
        "preprocess_summary": summary,
        "metrics": info.metrics,
        "version": info.version,
        "precision": info.precision,
        "size_bytes": info.path.stat().st_size,
    }
