"""Models for the benchmarks: the shipped export/*.onnx when present, else small stand-ins.

The stand-ins carry the same emocli metadata as real exports. ``tiny`` is the tests'
linear probe (a floor for the model cost); ``conv`` is a small CNN of about 0.2 M
parameters on 48x48 grey faces, closer to what a real face model costs per crop.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from _common import CACHE, ROOT

from emocli.features import FeatureSpec
from emocli.labels import LABELS

META = {"dataset": "synthetic", "split": "none", "accuracy": 0.5, "macro_f1": 0.5}
FACE_PRE = {"input_size": [48, 48], "grayscale": True, "scale": 1 / 255, "mean": 0.0, "std": 1.0, "crop_margin": 0.15}


def _save(graph, task: str, preprocess: dict, path: Path) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(
        model,
        {
            "emocli.task": task,
            "emocli.labels": json.dumps(list(LABELS)),
            "emocli.preprocess": json.dumps(preprocess),
            "emocli.metrics": json.dumps(META),
            "emocli.version": "bench",
        },
    )
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _linear(path: Path, task: str, preprocess: dict, name: str, shape: list, axes: list[int], n_in: int) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("ReduceMean", [name], ["r"], axes=axes, keepdims=1),
        helper.make_node("Flatten", ["r"], ["p"], axis=1),
        helper.make_node("Gemm", ["p", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.1, (n_in, len(LABELS))).astype(np.float32), "W"),
        numpy_helper.from_array(np.zeros(len(LABELS), np.float32), "B"),
    ]
    graph = helper.make_graph(
        nodes,
        f"tiny_{task}",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(LABELS)])],
        inits,
    )
    return _save(graph, task, preprocess, path)


def tiny_face(path: Path = CACHE / "models" / "tiny_face.onnx") -> Path:
    return path if path.is_file() else _linear(path, "face", FACE_PRE, "image", ["N", 48, 48, 1], [1, 2, 3], 1)


def tiny_voice(path: Path = CACHE / "models" / "tiny_voice.onnx") -> Path:
    spec = FeatureSpec()
    if path.is_file():
        return path
    return _linear(path, "voice", spec.to_dict(), "features", ["N", "T", spec.n_features], [1], spec.n_features)


def conv_face(path: Path = CACHE / "models" / "conv_face.onnx") -> Path:
    """Conv(3x3)+ReLU+MaxPool x4 (32, 64, 128, 128 filters), global mean, dense: ~0.24 M params."""
    if path.is_file():
        return path
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Transpose", ["image"], ["x0"], perm=[0, 3, 1, 2])]
    inits = []
    c_in, x = 1, "x0"
    for i, c in enumerate((32, 64, 128, 128)):
        w = rng.normal(0, np.sqrt(2 / (9 * c_in)), (c, c_in, 3, 3)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(c, np.float32), f"b{i}")]
        nodes += [
            helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
            helper.make_node("MaxPool", [f"r{i}"], [f"m{i}"], kernel_shape=[2, 2], strides=[2, 2]),
        ]
        c_in, x = c, f"m{i}"
    inits += [
        numpy_helper.from_array(rng.normal(0, 0.05, (c_in, len(LABELS))).astype(np.float32), "W"),
        numpy_helper.from_array(np.zeros(len(LABELS), np.float32), "B"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_face",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 48, 48, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(LABELS)])],
        inits,
    )
    return _save(graph, "face", FACE_PRE, path)


def params(path: Path) -> int:
    import onnx

    return int(sum(np.prod(t.dims) for t in onnx.load(str(path)).graph.initializer))


def pick(realistic: bool = True) -> tuple[Path, Path, str]:
    """(face model, voice model, a line saying which): export/ first, then stand-ins."""
    face, voice = ROOT / "export" / "face.onnx", ROOT / "export" / "voice.onnx"
    notes = []
    if face.is_file():
        notes.append("face: export/face.onnx")
    else:
        face = conv_face() if realistic else tiny_face()
        notes.append(f"face: stand-in {face.stem} ({params(face) / 1e6:.2f} M params; export/face.onnx absent)")
    if voice.is_file():
        notes.append("voice: export/voice.onnx")
    else:
        voice = tiny_voice()
        notes.append("voice: stand-in tiny_voice (export/voice.onnx absent)")
    return face, voice, "; ".join(notes)
