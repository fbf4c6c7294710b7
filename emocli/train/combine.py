"""Average exported face models in one file: `emocli export A.onnx B.onnx -o C.onnx`.

Each member keeps its own graph and precision (an int8 pair beside a float32 net that
does not quantize well, say); the file's output is the mean of the members' outputs.
It needs ONNX alone, not TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .export import ExportError, _card_metrics, _comparable, _set_metadata

PARITY_TOLERANCE = 1e-5  # the same graphs, run together: only float summation order differs


def combine_models(
    files: list[str | Path], out: str | Path, force: bool = False, metrics_json: str | Path | None = None, log=print
) -> dict:
    """Write ``out``: one face model averaging the exported ``files``; returns a summary."""
    import onnx
    import onnxruntime as ort
    from onnx import compose, helper

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
    if any(i.task != "face" for i in infos):
        raise ExportError("only face models are averaged as exported files; export voice runs together instead")
    if any(i.labels != infos[0].labels for i in infos):
        raise ExportError("cannot average models with different labels")
    shared = [_comparable(i.preprocess) for i in infos]
    differ = sorted({k for p in shared for k in set(p) | set(shared[0]) if p.get(k) != shared[0].get(k)})
    if differ:
        raise ExportError(f"cannot average models whose preprocess differs: {', '.join(differ)}")

    protos = [onnx.load(str(f)) for f in files]
    opsets = {next((o.version for o in p.opset_import if o.domain in ("", "ai.onnx")), None) for p in protos}
    if len(opsets) > 1:
        raise ExportError(f"cannot average models of different ONNX opsets ({sorted(opsets)}); export them alike")
    shapes = {str(p.graph.input[0].type.tensor_type.shape.dim[1:]) for p in protos}
    if len(shapes) > 1 or any(len(p.graph.input) != 1 or len(p.graph.output) != 1 for p in protos):
        raise ExportError("cannot average models with different inputs")

    members = [compose.add_prefix(p, f"member_{i}/") for i, p in enumerate(protos)]
    image, probabilities = protos[0].graph.input[0], protos[0].graph.output[0]
    nodes = []
    for i, m in enumerate(members):
        nodes.append(helper.make_node("Identity", [image.name], [m.graph.input[0].name], name=f"member_{i}/image"))
        nodes.extend(m.graph.node)
    nodes.append(helper.make_node("Mean", [m.graph.output[0].name for m in members], [probabilities.name]))
    graph = helper.make_graph(
        nodes,
        f"average_of_{len(members)}",
        [image],
        [probabilities],
        initializer=[t for m in members for t in m.graph.initializer],
        value_info=[v for m in members for v in m.graph.value_info],
    )
    domains: dict[str, int] = {}
    for p in protos:
        for o in p.opset_import:
            domains[o.domain] = max(domains.get(o.domain, 0), o.version)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in domains.items()])
    proto.ir_version = max(p.ir_version for p in protos)
    onnx.checker.check_model(proto)

    metrics = json.loads(Path(metrics_json).read_text()) if metrics_json is not None else None
    if metrics is None:
        log("note: no --metrics-json, so the card carries no metrics (a member's figures are not the average's)")
    precisions = list(dict.fromkeys(i.precision for i in infos))
    info = ModelInfo(out, "face", infos[0].labels, infos[0].preprocess, _card_metrics(metrics), __version__)
    info.precision = " + ".join(precisions)
    _set_metadata(proto, info)

    faces = np.random.default_rng(0).uniform(
        0.0, 1.0, (8, *[d.dim_value for d in image.type.tensor_type.shape.dim[1:]])
    )
    faces = faces.astype(np.float32)

    def run(path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: faces})[0]

    expected = np.mean([run(f) for f in files], axis=0)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
        diff = float(np.abs(run(tmp) - expected).max())
        log(f"parity: max |average file - mean of the members| = {diff:.2e} (tolerance {PARITY_TOLERANCE:.0e})")
        if not diff <= PARITY_TOLERANCE:
            raise ExportError(f"the averaged file differs from its members' mean by {diff:.2e}; not written")
    size = out.stat().st_size
    log(f"wrote {out} (face, average of {len(files)}, {size / 1e6:.2f} MB)")
    return {"path": str(out), "task": "face", "size_bytes": size, "max_abs_diff": diff, "metadata": info.to_metadata()}
