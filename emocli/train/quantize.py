"""Int8 post-training quantization of an exported face model: `emocli export --int8`.

Static quantization (onnxruntime, QDQ, per-channel weights) calibrated on training faces:
the convolutions then run on the CPU's int8 dot-product units, about 3x faster than
float32 here, in a file a quarter the size. Export measures what it costs in agreement
with the float32 model before it writes anything.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

PRECISION = "int8 (onnxruntime static QDQ, per-channel weights; the first convolution float32)"


def sample_faces(data: str | Path, preprocess: dict, n: int, seed: int = 0) -> np.ndarray:
    """``n`` training faces of ``data`` (stratified by class), prepared as the model sees them."""
    from ..datasets import training_faces
    from ..models import normalize_faces

    train = training_faces(data)
    rng = np.random.default_rng(seed)
    per_class = max(1, n // max(1, len(np.unique(train.y))))
    idx = np.concatenate([rng.permutation(np.flatnonzero(train.y == c))[:per_class] for c in np.unique(train.y)])
    return normalize_faces(train.x[rng.permutation(idx)], preprocess)[..., None]


def quantize(source: Path, out: Path, calibration: np.ndarray, batch: int = 32) -> None:
    """Write ``source`` (float32 ONNX) to ``out`` as int8, calibrated on ``calibration``."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration[i : i + batch] for i in range(0, len(calibration), batch))

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {name: x}

    with tempfile.TemporaryDirectory(prefix="emocli-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # ONNX shape inference is enough for a fixed-size image net; the symbolic pass needs sympy.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        # The first convolution, which reads the pixels, stays float32: with one input
        # channel its int8 sums have little headroom, and quantized it moves the top label
        # of many faces for a small share of the net's time.
        graph = onnx.load(str(prepared)).graph
        first = [n.name for n in graph.node if n.op_type == "Conv"][:1]
        quantize_static(
            str(prepared),
            str(out),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            nodes_to_exclude=first,
            weight_type=QuantType.QInt8,
        )


def agreement(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(share of equal top-1 labels, largest probability difference) between two outputs."""
    same = float((reference.argmax(1) == candidate.argmax(1)).mean())
    return same, float(np.abs(reference - candidate).max())
