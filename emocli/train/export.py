"""Export a trained Keras model to one self-describing ONNX file: `emocli export`.

The file carries its own card in ``metadata_props`` (``models.ModelInfo.to_metadata``):
task, labels, preprocessing and measured metrics, so inference needs nothing else.
Export checks that onnxruntime reproduces Keras before it writes anything.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from ..usage import UsageError

# tf2onnx converts through TensorFlow: Keras must run on the TF backend in this process.
# A .keras file saved under torch or jax loads fine here; only the runtime backend matters.
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PARITY_TOLERANCE = 1e-4
SCALER = ("mean", "std")  # members of an ensemble may differ in these: _scaler_map maps one to another
INT8_AGREEMENT = 0.97  # least share of int8 top-1 labels equal to Keras's, else the export fails


class ExportError(RuntimeError):
    """The source cannot be exported, or the ONNX file would not match Keras."""


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _card_metrics(metrics: dict | None) -> dict:
    """The card's metrics (dataset, split, accuracy, macro_f1) from a run's metrics.json or an evaluation."""
    if not metrics:
        return {}
    measured = metrics.get("validation", metrics)
    card = {key: measured[key] for key in ("accuracy", "macro_f1", "n", "views") if key in measured}
    if "per_group" in measured:  # a voice run: each held-out corpus or speaker group, with its chance level
        card["per_group"] = {
            name: {k: r[k] for k in ("accuracy", "macro_f1", "n", "chance") if k in r}
            for name, r in measured["per_group"].items()
        }
    card["dataset"] = metrics.get("dataset", "")  # a run's metrics.json and an evaluation both name it
    split = measured.get("split", "")
    card["split"] = f"validation: {split}" if "validation" in metrics else split
    return card


def _source_parts(source: Path) -> tuple[Path, dict, dict | None, dict | None]:
    """(model.keras, config, preprocess, metrics) of a run folder or a bare .keras file."""
    if source.is_dir():
        model_file = source / "model.keras"
        if not model_file.is_file():
            raise ExportError(f"{source}: no model.keras (is it a training run folder?)")
        config = _read_json(source / "config.json") or {}
        return model_file, config, _read_json(source / "preprocess.json"), _read_json(source / "metrics.json")
    if source.suffix != ".keras" or not source.is_file():
        raise ExportError(f"{source}: expected a training run folder or a .keras file")
    return source, {}, None, None


def _default_preprocess(task: str) -> dict:
    from ..features import FeatureSpec
    from ..models import DEFAULT_FACE_PREPROCESS

    if task == "face":
        return dict(DEFAULT_FACE_PREPROCESS)
    warnings.warn("no preprocess.json: the voice model is exported without scaler statistics", stacklevel=3)
    return FeatureSpec().to_dict()


def _parity_inputs(task: str, shape: tuple, preprocess: dict, rng: np.random.Generator) -> list[np.ndarray]:
    """Random batches in the range the model sees: [0, 1] pixels, or standardised features."""
    if task == "face":
        return [rng.uniform(0.0, 1.0, (8, *shape[1:])).astype(np.float32)]
    from ..features import FeatureSpec

    frames = FeatureSpec.from_dict(preprocess).window_frames
    n_features = shape[-1]
    # Two lengths: the trained window and a longer stretch, since the time axis is open.
    return [
        rng.standard_normal((8, frames, n_features)).astype(np.float32),
        rng.standard_normal((2, 3 * frames + 7, n_features)).astype(np.float32),
    ]


def _float32(model):
    """The same network with float32 compute: a model trained under a mixed-precision
    policy would otherwise export bfloat16 casts that onnxruntime's CPU kernels lack."""

    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model

    def retype(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy":
                return "float32"
            return {k: retype(v) for k, v in node.items()}
        return [retype(v) for v in node] if isinstance(node, list) else node

    copy = model.__class__.from_config(retype(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def _average(members: list):
    """One model whose output is the mean of the members' probabilities: an ensemble in one file."""
    import keras

    for i, member in enumerate(members):
        member.name = f"member_{i}"  # nested models need distinct names
    inputs = keras.Input(tuple(members[0].inputs[0].shape[1:]), name=members[0].inputs[0].name.split(":")[0])
    outputs = keras.layers.Average(name="probabilities")([member(inputs) for member in members])
    return keras.Model(inputs, outputs, name=f"ensemble_of_{len(members)}")


def _rescaled(member, own: dict, shared: dict):
    """``member`` (trained on features standardised with its own scaler, ``own``) as it reads
    features standardised with the ensemble's, ``shared``: the difference is a per-feature
    affine map in front of it, so runs fitted on different corpora can share one file."""
    import keras

    scale, shift = _scaler_map(own, shared)
    if scale is None:
        return member
    inputs = keras.Input(tuple(member.inputs[0].shape[1:]))
    scaled = keras.layers.Rescaling(scale, shift, name="own_scaler")(inputs)
    return keras.Model(inputs, member(scaled), name=member.name)


def _scaler_map(member: dict, shared: dict) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(scale, shift) taking features standardised with ``shared``'s scaler to ``member``'s own:
    (f - mean) / std = x * std0 / std + (mean0 - mean) / std for x = (f - mean0) / std0, where
    no scaler is mean 0 and std 1; (None, None) where the two are the same."""
    if list(member.get("mean") or []) == list(shared.get("mean") or []) and list(member.get("std") or []) == list(
        shared.get("std") or []
    ):
        return None, None
    n = len(member.get("mean") or shared.get("mean"))

    def stats(p):
        if not p.get("mean"):
            return np.zeros(n, np.float32), np.ones(n, np.float32)
        return np.asarray(p["mean"], np.float32), np.asarray(p["std"], np.float32)

    mean, std = stats(member)
    mean0, std0 = stats(shared)
    return (std0 / std).astype(np.float32), ((mean0 - mean) / std).astype(np.float32)


def _comparable(preprocess: dict) -> dict:
    """A run's preprocess as the members of an ensemble must share it: without its temperature,
    and a voice run's with the defaults of fields added since it was trained filled in."""
    from ..features import FeatureSpec

    preprocess = {k: v for k, v in preprocess.items() if k != "temperature"}
    return FeatureSpec.from_dict(preprocess).to_dict() if "n_mfcc" in preprocess else preprocess


def _load_sources(sources: list[Path], metrics_json, log) -> tuple:
    """(model, model file, config, preprocess, metrics) of one source, or of several averaged into one model
    (the first source's file and config; the preprocess they share; no metrics unless measured)."""
    import keras

    from . import voice, voice_encoder  # noqa: F401  (registers the voice models' own layers for loading)

    parts = [_source_parts(source) for source in sources]
    model_file, config, preprocess, metrics = parts[0]
    models = [_float32(keras.models.load_model(part[0], compile=False)) for part in parts]
    if len(models) == 1:
        return models[0], model_file, config, preprocess, metrics
    shapes = {tuple(m.inputs[0].shape[1:]) for m in models}
    if len(shapes) > 1:
        raise ExportError(f"cannot average models with different inputs: {', '.join(sorted(map(str, shapes)))}")
    # A member's temperature calibrates that member alone, not the mean: it is dropped, and
    # the ensemble's own is given to export_model (``temperature``).
    shared = [_comparable(part[2]) for part in parts if part[2] is not None]
    differ = sorted({k for p in shared for k in set(p) | set(shared[0]) if p.get(k) != shared[0].get(k)} - set(SCALER))
    if differ:
        raise ExportError(f"cannot average models whose runs differ in preprocess.json: {', '.join(differ)}")
    preprocess = shared[0] if shared else None
    if preprocess is not None and len(shared) == len(models):
        models = [_rescaled(m, p, preprocess) for m, p in zip(models, shared, strict=True)]
    if metrics_json is None:
        log(
            "note: no --metrics-json, so the card carries no metrics (a run's validation figures are not the ensemble's)"
        )
    return _average(models), model_file, config, preprocess, None


def export_model(
    source: str | Path | list,
    out: str | Path,
    force: bool = False,
    metrics_json: str | Path | None = None,
    opset: int = 17,
    tolerance: float = PARITY_TOLERANCE,
    int8: bool = False,
    calibration: str | Path | None = None,
    temperature: float | None = None,
    log=print,
) -> dict:
    """Convert ``source`` (run folder or .keras) to ``out`` (.onnx); returns a summary.

    A list of sources (runs of the same task) becomes one model that averages their
    probabilities: an ensemble, checked and quantized like a single model.

    Refuses to overwrite ``out`` unless ``force``; raises ExportError when onnxruntime
    differs from Keras by more than ``tolerance`` on random inputs. ``int8`` (face models)
    then quantizes the checked float32 graph, calibrated on ``calibration`` (default: the
    run's training data), and fails when fewer than INT8_AGREEMENT of its top-1 labels on
    other training faces agree with Keras. ``temperature`` (voice) replaces the run's
    softmax temperature: an ensemble's, fitted on held-out windows, as none of its runs has it.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            f"export needs the TensorFlow backend, but Keras was already imported with {keras.backend.backend()}"
        )
    import onnx
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    from .. import __version__
    from ..labels import LABELS
    from ..models import ModelInfo
    from ..outputs import atomic_path

    sources = [Path(p) for p in ([source] if isinstance(source, (str, Path)) else source)]
    out = Path(out)
    if not sources:
        raise ExportError("nothing to export: pass a run folder or a .keras file")
    if out.exists() and not force:
        raise FileExistsError(f"{out}: already exists; pass --force to overwrite it")
    model, model_file, config, preprocess, metrics = _load_sources(sources, metrics_json, log)
    shape = tuple(model.inputs[0].shape)
    task = config.get("task") or {4: "face", 3: "voice"}.get(len(shape))
    if task not in ("face", "voice"):
        raise ExportError(f"{model_file}: cannot tell the task from an input of shape {shape}")
    if model.outputs[0].shape[-1] != len(LABELS):
        raise ExportError(
            f"{model_file}: {model.outputs[0].shape[-1]} outputs, expected {len(LABELS)} ({', '.join(LABELS)})"
        )
    if preprocess is None:
        preprocess = _default_preprocess(task)
    if temperature is not None:
        if task != "voice":
            raise UsageError("--temperature applies to voice models only (their softmax temperature)")
        if not temperature > 0:  # also NaN
            raise UsageError(f"--temperature must be above 0, not {temperature}")
        preprocess = {**preprocess, "temperature": float(temperature)}
    elif task == "voice" and len(sources) > 1:
        log("note: no --temperature, so the ensemble's probabilities are not calibrated")
    if metrics_json is not None:
        metrics = json.loads(Path(metrics_json).read_text())
    info = ModelInfo(out, task, list(LABELS), preprocess, _card_metrics(metrics), __version__)
    if int8:
        if task != "face":
            raise ExportError("--int8 is for face models (the voice model is already fast in float32)")
        calibration = calibration or config.get("data")
        if not calibration:
            raise ExportError(f"{model_file}: --int8 needs training faces to calibrate on: pass --calibration DATA")

    input_name = model.inputs[0].name.split(":")[0]
    signature = (tf.TensorSpec((None, *shape[1:]), tf.float32, name=input_name),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    _set_metadata(proto, info)

    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        diff = 0.0
        for x in _parity_inputs(task, shape, preprocess, np.random.default_rng(0)):
            expected = np.asarray(model(x, training=False))
            diff = max(diff, float(np.abs(session.run(None, {name: x})[0] - expected).max()))
        log(f"parity: max |onnxruntime - keras| = {diff:.2e} (tolerance {tolerance:.0e})")
        if not diff <= tolerance:
            raise ExportError(
                f"{model_file}: ONNX output differs from Keras by {diff:.2e} > {tolerance:.0e}; not written"
            )
        if int8:
            _quantize_in_place(tmp, model, info, calibration, log)
    summary = {
        "path": str(out),
        "task": task,
        "size_bytes": out.stat().st_size,
        "max_abs_diff": diff,
        "input": input_name,
        "metadata": info.to_metadata(),
    }
    log(f"wrote {out} ({task}, {summary['size_bytes'] / 1e6:.2f} MB)")
    return summary


def _set_metadata(proto, info) -> None:
    """The model card into ``metadata_props``, replacing whatever was there."""
    del proto.metadata_props[:]
    for key, value in info.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _quantize_in_place(path: Path, model, info, calibration, log) -> None:
    """Replace the checked float32 file at ``path`` by its int8 version, measured first."""
    import onnx
    import onnxruntime as ort

    from .quantize import PRECISION, agreement, quantize, sample_faces

    faces = sample_faces(calibration, info.preprocess, 1024)
    calibrate, check = faces[::2], faces[1::2]
    fp32 = path.with_name(path.stem + ".fp32.onnx")
    os.replace(path, fp32)
    try:
        quantize(fp32, path, calibrate)
    finally:
        fp32.unlink()
    info.precision = PRECISION
    proto = onnx.load(str(path))
    _set_metadata(proto, info)
    onnx.save(proto, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: check})[0]
    same, diff = agreement(np.asarray(model(check, training=False)), got)
    log(
        f"int8: top-1 agreement with keras {same:.1%} on {len(check)} faces of the calibration data not used to "
        "calibrate; "
        f"max |p difference| {diff:.3f}"
    )
    if same < INT8_AGREEMENT:
        raise ExportError(
            f"int8 model agrees with Keras on only {same:.1%} of faces (< {INT8_AGREEMENT:.0%}); not written"
        )
