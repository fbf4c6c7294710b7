"""Average exported models in one file: `emocli export A.onnx B.onnx -o C.onnx`.

Each member keeps its own graph and precision (an int8 pair beside a float32 net that
does not quantize well, say); the file's output is the mean of the members' outputs.
Voice members may each have their own feature scaler: the file reads features standardised
with the first member's, and an affine map in front of every other member turns them into
its own. A member's softmax temperature calibrates that member alone and is dropped; the
average's own is given as ``temperature``. The file hears speech at the first member's
``level_range`` (members trained on other corpora may each have their own), or at
``level_range``, and fills narrowband windows as the first member does, or where
``fill_narrowband``. ``weights`` make it a weighted mean, and ``half`` stores the float32
weights as float16 (half the file; a Cast at load, so it still computes in float32). It
needs ONNX alone, not TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..usage import UsageError
from .export import SCALER, ExportError, _card_metrics, _comparable, _scaler_map, _set_metadata

PARITY_TOLERANCE = 1e-5  # the same graphs, run together: only float summation order differs
HALF_TOLERANCE = 2e-3  # on probabilities, with every weight rounded to float16
HALF_MIN_SIZE = 1024  # smaller tensors (biases, scalers) stay float32: they save nothing


def combine_models(
    files: list[str | Path],
    out: str | Path,
    force: bool = False,
    metrics_json: str | Path | None = None,
    temperature: float | None = None,
    weights: list[float] | None = None,
    half: bool = False,
    level_range: tuple[float, float] | None = None,
    fill_narrowband: bool = False,
    log=print,
) -> dict:
    """Write ``out``: one model averaging the exported ``files``; returns a summary."""
    import onnx
    import onnxruntime as ort
    from onnx import compose, helper, numpy_helper

    from .. import __version__
    from ..models import ModelError, ModelInfo, read_info
    from ..outputs import atomic_path

    files, out = [Path(f) for f in files], Path(out)
    if len(files) < 2:
        raise ExportError("averaging exported models needs two or more .onnx files")
    if out.exists() and not force:
        raise FileExistsError(f"{out}: already exists; pass --force to overwrite it")
    if any(out.resolve() == f.resolve() for f in files):
        raise ExportError(f"{out}: is one of the models to average; write the average to another file")
    try:
        infos = [read_info(f) for f in files]
    except ModelError as e:
        raise ExportError(str(e)) from e
    task = infos[0].task
    if any(i.task != task for i in infos):
        raise ExportError(f"cannot average models of different tasks: {', '.join(sorted({i.task for i in infos}))}")
    if any(i.labels != infos[0].labels for i in infos):
        raise ExportError("cannot average models with different labels")
    if weights is not None and (len(weights) != len(files) or not all(w > 0 for w in weights)):
        raise UsageError(
            f"--weights takes one positive number per model ({len(files)}), not {','.join(f'{w:g}' for w in weights)}"
        )
    shares = np.full(len(files), 1 / len(files)) if weights is None else np.asarray(weights) / np.sum(weights)
    if temperature is not None and task != "voice":
        raise UsageError("--temperature applies to voice models only (their softmax temperature)")
    if temperature is not None and not temperature > 0:  # also NaN
        raise UsageError(f"--temperature must be above 0, not {temperature}")
    if level_range is not None and (task != "voice" or not level_range[0] <= level_range[1]):
        raise UsageError("--level-range takes a voice model's LOW,HIGH speech levels in dBFS, LOW <= HIGH")
    if fill_narrowband and task != "voice":
        raise UsageError("--fill-narrowband applies to voice models only")
    if len({f.resolve() for f in files}) < len(files):
        log("note: a file is named more than once: averaging it with itself only weighs it more")
    own = [_comparable(i.preprocess) for i in infos]
    free = {*SCALER, "level_range", "fill_narrowband"} if task == "voice" else set()
    differ = sorted({k for p in own for k in set(p) | set(own[0]) if p.get(k) != own[0].get(k)} - free)
    if differ:
        raise ExportError(f"cannot average models whose preprocess differs: {', '.join(differ)}")

    protos = [onnx.load(str(f)) for f in files]
    opsets = {next((o.version for o in p.opset_import if o.domain in ("", "ai.onnx")), None) for p in protos}
    if len(opsets) > 1:
        raise ExportError(f"cannot average models of different ONNX opsets ({sorted(opsets)}); export them alike")
    shapes = {tuple(_dims(p.graph.input[0])[1:]) for p in protos}
    if len(shapes) > 1 or any(len(p.graph.input) != 1 or len(p.graph.output) != 1 for p in protos):
        raise ExportError("cannot average models with different inputs")

    # (scale, shift) in front of each member; a face model's mean and std are part of its preprocess, not a scaler
    scalers = [_scaler_map(p, own[0]) if task == "voice" else (None, None) for p in own]
    members = [compose.add_prefix(p, f"member_{i}/") for i, p in enumerate(protos)]
    x, probabilities = protos[0].graph.input[0], protos[0].graph.output[0]
    nodes, constants = [], []
    for i, (m, (scale, shift)) in enumerate(zip(members, scalers, strict=True)):
        feed = m.graph.input[0].name
        if scale is None:
            nodes.append(helper.make_node("Identity", [x.name], [feed], name=f"member_{i}/input"))
        else:
            constants += [
                numpy_helper.from_array(scale, f"member_{i}/scale"),
                numpy_helper.from_array(shift, f"member_{i}/shift"),
            ]
            nodes.append(helper.make_node("Mul", [x.name, f"member_{i}/scale"], [f"member_{i}/scaled"]))
            nodes.append(helper.make_node("Add", [f"member_{i}/scaled", f"member_{i}/shift"], [feed]))
        nodes.extend(m.graph.node)
    for i, (m, share) in enumerate(zip(members, shares, strict=True)):
        constants.append(numpy_helper.from_array(np.asarray(share, np.float32), f"member_{i}/share"))
        nodes.append(helper.make_node("Mul", [m.graph.output[0].name, f"member_{i}/share"], [f"member_{i}/weighted"]))
    nodes.append(helper.make_node("Sum", [f"member_{i}/weighted" for i in range(len(members))], [probabilities.name]))
    graph = helper.make_graph(
        nodes,
        f"average_of_{len(members)}",
        [x],
        [probabilities],
        initializer=constants + [t for m in members for t in m.graph.initializer],
        value_info=[v for m in members for v in m.graph.value_info],
    )
    domains: dict[str, int] = {}
    for p in protos:
        for o in p.opset_import:
            domains[o.domain] = max(domains.get(o.domain, 0), o.version)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in domains.items()])
    proto.ir_version = max(p.ir_version for p in protos)
    if half:
        _store_half(proto)
    onnx.checker.check_model(proto)

    metrics = json.loads(Path(metrics_json).read_text()) if metrics_json is not None else None
    if metrics is None:
        log("note: no --metrics-json, so the card carries no metrics (a member's figures are not the average's)")
    preprocess = infos[0].preprocess
    if task == "voice":
        preprocess = {k: v for k, v in preprocess.items() if k != "temperature"}
        if temperature is not None:
            preprocess["temperature"] = float(temperature)
        else:
            log("note: no --temperature, so the average's probabilities are not calibrated")
        if level_range is not None:
            preprocess["level_range"] = [float(v) for v in level_range]
        if fill_narrowband:
            preprocess["fill_narrowband"] = True
    # Members' precisions once each; "float16 storage" (a member's, or this file's) said once, at the end.
    storage = ", float16 storage"
    precisions = list(dict.fromkeys(i.precision.removesuffix(storage) for i in infos))
    stored_half = half or any(i.precision.endswith(storage) for i in infos)
    info = ModelInfo(out, task, infos[0].labels, preprocess, _card_metrics(metrics), __version__)
    info.precision = " + ".join(precisions) + (storage if stored_half else "")
    _set_metadata(proto, info)

    # Random inputs in the file's own scale; each member is fed them in its own.
    shape = [d if d else 201 for d in _dims(x)[1:]]
    inputs = np.random.default_rng(0).uniform(0.0, 1.0, (8, *shape)).astype(np.float32)

    def run(path, scaler=(None, None)) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        fed = inputs if scaler[0] is None else (inputs * scaler[0] + scaler[1]).astype(np.float32)
        return session.run(None, {session.get_inputs()[0].name: fed})[0]

    outputs = [run(f, scaler) for f, scaler in zip(files, scalers, strict=True)]
    expected = np.sum([share * o for share, o in zip(shares, outputs, strict=True)], axis=0)
    tolerance = HALF_TOLERANCE if half else PARITY_TOLERANCE
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
        diff = float(np.abs(run(tmp) - expected).max())
        log(f"parity: max |average file - mean of the members| = {diff:.2e} (tolerance {tolerance:.0e})")
        if not diff <= tolerance:
            raise ExportError(f"the averaged file differs from its members' mean by {diff:.2e}; not written")
    size = out.stat().st_size
    log(f"wrote {out} ({task}, average of {len(files)}, {size / 1e6:.2f} MB)")
    return {"path": str(out), "task": task, "size_bytes": size, "max_abs_diff": diff, "metadata": info.to_metadata()}


def _store_half(proto) -> None:
    """Every large float32 initializer stored as float16, cast back to float32 in front of its users
    (onnxruntime folds the Cast when it loads the file, so inference costs what it did)."""
    from onnx import TensorProto, helper, numpy_helper

    casts = []
    for init in proto.graph.initializer:
        if init.data_type != TensorProto.FLOAT or np.prod(init.dims) < HALF_MIN_SIZE:
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{name}/float16"))
        casts.append(helper.make_node("Cast", [init.name], [name], to=TensorProto.FLOAT, name=f"{name}/cast"))
    nodes = casts + list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)


def _dims(value_info) -> list[int]:
    """An input's dimensions, 0 where it is free (a batch or a time axis, whatever its name)."""
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]
