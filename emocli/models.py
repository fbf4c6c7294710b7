"""ONNX models that describe themselves: metadata contract, sessions, default lookup.

Every key a model carries lives in ``metadata_props`` (docs/contracts.md, "Model metadata"):
``emocli.task``, ``emocli.labels``, ``emocli.preprocess``, ``emocli.metrics``,
``emocli.version``, and ``emocli.precision`` (float32, or int8 for a quantized export).
Inference reads them here and nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .features import FeatureSpec, audio_features, normalize, speech_gain
from .labels import LABELS

TASKS = ("face", "voice")

# The face crop a model was trained on: FER2013 is roughly brow-to-chin, tighter than
# a detector's box is loose; see benchmarks/face_margin.py for the calibration.
DEFAULT_FACE_PREPROCESS = {
    "input_size": [48, 48],
    "grayscale": True,
    "scale": 1.0 / 255.0,
    "mean": 0.0,
    "std": 1.0,
    "crop_margin": 0.1,  # benchmarks/face_margin.py --run: best on validation faces (tied with 0.15); geometry says ~0.09
    "flip_average": True,  # also classify the mirrored face and average: faces are symmetric enough
    # Also classify these zooms of the crop (>1: its centre, enlarged; <1: with its edges
    # extended) and average: the nets are sensitive to the exact framing, and averaging a
    # few framings is worth more accuracy than it costs time (export/README.md).
    "zooms": [0.9167, 1.0, 1.0833],  # 44/48, 1 and 52/48: chosen on validation faces
    "output": "probabilities",
}


def normalize_faces(pixels: np.ndarray, preprocess: dict) -> np.ndarray:
    """uint8 (or float) face pixels as a face model's float32 input, per its preprocess."""
    p = {**DEFAULT_FACE_PREPROCESS, **preprocess}
    return (pixels.astype(np.float32) * float(p["scale"]) - float(p["mean"])) / float(p["std"])


def face_views(preprocess: dict) -> tuple[tuple[float, ...], bool]:
    """(zooms, mirrored): the views a face model's predictions are averaged over.

    A model exported before zooms existed was measured on the crop alone, so a missing
    ``zooms`` means one zoom, not the export default.
    """
    zooms = tuple(float(z) for z in preprocess.get("zooms") or [1.0])
    return zooms, bool(preprocess.get("flip_average", DEFAULT_FACE_PREPROCESS["flip_average"]))


class ModelError(ValueError):
    """A model file that is missing, unreadable or not an emocli model."""


class MissingModelError(ModelError, FileNotFoundError):
    """No file at a model's path: a model error, and a missing input (exit 2 where the
    commands say so)."""


@dataclass
class ModelInfo:
    path: Path
    task: str
    labels: list[str]
    preprocess: dict
    metrics: dict = field(default_factory=dict)
    version: str = ""
    precision: str = "float32"

    def to_metadata(self) -> dict[str, str]:
        return {
            "emocli.task": self.task,
            "emocli.labels": json.dumps(self.labels),
            "emocli.preprocess": json.dumps(self.preprocess),
            "emocli.metrics": json.dumps(self.metrics),
            "emocli.version": self.version,
            "emocli.precision": self.precision,
        }

    @classmethod
    def from_metadata(cls, path: Path, meta: dict[str, str]) -> ModelInfo:
        if "emocli.task" not in meta:
            raise ModelError(f"{path}: not an emocli model (no emocli.task metadata); export it with `emocli export`")
        try:
            info = cls(
                path=Path(path),
                task=meta["emocli.task"],
                labels=json.loads(meta["emocli.labels"]),
                preprocess=json.loads(meta.get("emocli.preprocess", "{}")),
                metrics=json.loads(meta.get("emocli.metrics", "{}") or "{}"),
                version=meta.get("emocli.version", ""),
                precision=meta.get("emocli.precision", "float32"),
            )
        except (KeyError, json.JSONDecodeError) as e:
            raise ModelError(f"{path}: broken emocli metadata ({e})") from e
        if info.task not in TASKS:
            raise ModelError(f"{path}: emocli.task is {info.task!r}, expected one of {TASKS}")
        if not isinstance(info.labels, list) or not all(isinstance(label, str) for label in info.labels):
            raise ModelError(f"{path}: emocli.labels must be a JSON list of label names, not {info.labels!r}")
        if not isinstance(info.preprocess, dict) or not isinstance(info.metrics, dict):
            raise ModelError(f"{path}: emocli.preprocess and emocli.metrics must be JSON objects")
        unknown = [label for label in info.labels if label not in LABELS]
        if unknown:
            raise ModelError(f"{path}: labels {unknown} are not canonical labels {list(LABELS)}")
        return info

    @property
    def score(self) -> float | None:
        """The model's measured macro-F1 (else accuracy): the default fusion weight."""
        for key in ("macro_f1", "accuracy"):
            if isinstance(self.metrics.get(key), (int, float)):
                return float(self.metrics[key])
        return None


def default_model_path(task: str) -> Path | None:
    """The shipped model for a task: inside the installed wheel, else the checkout's export/."""
    here = Path(__file__).resolve().parent
    for folder in (here / "export", here.parent / "export"):
        candidate = folder / f"{task}.onnx"
        if candidate.is_file():
            return candidate
    return None


def _check_model_file(path: Path) -> None:
    if path.is_dir():
        raise ModelError(f"{path}: a folder, not a model file (emocli export turns a training run into a .onnx)")
    if not path.is_file():
        raise MissingModelError(f"{path}: no such model file")


def read_info(path: str | Path) -> ModelInfo:
    """A model's metadata, read by onnxruntime (the one ONNX library inference installs)."""
    import onnxruntime as ort

    path = Path(path)
    _check_model_file(path)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # metadata only: no need to optimise
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises several unrelated types for a bad file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: not a readable ONNX file ({reason})") from e
    info = ModelInfo.from_metadata(path, session.get_modelmeta().custom_metadata_map)
    _check_output(info, session)
    return info


def _check_output(info: ModelInfo, session) -> None:
    """A model must give one value per label it names."""
    shape = session.get_outputs()[0].shape
    width = shape[-1] if shape else None
    if isinstance(width, int) and width != len(info.labels):
        raise ModelError(f"{info.path}: its output has {width} values but its emocli.labels name {len(info.labels)}")


class OnnxModel:
    """An onnxruntime session plus the metadata it was exported with."""

    def __init__(self, path: str | Path, threads: int = 0):
        import onnxruntime as ort

        path = Path(path)
        _check_model_file(path)
        options = ort.SessionOptions()
        # The models are small and see a few faces or one window at a time: one thread
        # (threads=0) is fastest, and threads that spin while idle only steal the cores
        # that decoding and detection need.
        options.intra_op_num_threads = threads if threads > 0 else 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelError(f"{path}: onnxruntime cannot load it ({e})") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo.from_metadata(path, meta)
        _check_output(self.info, self.session)
        given = self.session.get_inputs()[0]
        self.input_name = given.name
        # A graph exported for one input at a time is run one at a time.
        self._one_at_a_time = bool(given.shape) and given.shape[0] == 1
        self._columns = np.array([LABELS.index(label) for label in self.info.labels])

    @property
    def task(self) -> str:
        return self.info.task

    @cached_property
    def temperature(self) -> float:
        """Softmax temperature fitted on held-out data at training (1: uncalibrated), so a
        confidence of 0.9 is right about nine times in ten."""
        return float(self.info.preprocess.get("temperature", 1.0))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities over the canonical LABELS, shape (n, len(LABELS))."""
        batch = batch.astype(np.float32)
        if self._one_at_a_time and len(batch) > 1:
            out = np.concatenate([self.session.run(None, {self.input_name: x[None]})[0] for x in batch])
        else:
            out = self.session.run(None, {self.input_name: batch})[0]
        out = np.asarray(out, dtype=np.float64).reshape(len(batch), -1)
        if self.info.preprocess.get("output", "probabilities") == "logits":
            out = np.exp((out - out.max(axis=1, keepdims=True)) / self.temperature)
        else:
            out = np.clip(out, 0.0, None)
            if self.temperature != 1.0:
                out = np.maximum(out, 1e-12) ** (1.0 / self.temperature)
        out /= np.maximum(out.sum(axis=1, keepdims=True), 1e-12)
        probs = np.zeros((len(batch), len(LABELS)))
        probs[:, self._columns] = out
        return probs


class FaceModel(OnnxModel):
    """Classifies face crops (any size, BGR or gray uint8) into emotion probabilities."""

    def __init__(self, path: str | Path, threads: int = 0, views: bool = True):
        """``views=False`` classifies each crop once, ignoring the model's zooms and mirror."""
        super().__init__(path, threads)
        if self.task != "face":
            raise ModelError(f"{path}: is a {self.task} model, expected a face model")
        self.preprocess = self.info.preprocess
        p = {**DEFAULT_FACE_PREPROCESS, **self.preprocess}
        self.size = tuple(int(v) for v in p["input_size"])  # (height, width)
        self.grayscale = bool(p["grayscale"])
        self.crop_margin = float(p["crop_margin"])
        self.zooms, self.flip_average = face_views(self.preprocess) if views else ((1.0,), False)
        if any(z <= 0 for z in self.zooms):
            raise ModelError(f"{path}: zooms must be positive, not {list(self.zooms)}")

    def prepare(self, crops: list[np.ndarray]) -> np.ndarray:
        """The model's input batch: one image per crop and zoom (crop-major), unflipped."""
        import cv2

        h, w = self.size
        channels = 1 if self.grayscale else 3
        batch = np.empty((len(crops) * len(self.zooms), h, w, channels), np.float32)
        for i, crop in enumerate(crops):
            if self.grayscale and crop.ndim == 3:
                crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
            for j, zoom in enumerate(self.zooms):
                view = cv2.resize(_zoomed(crop, zoom), (w, h), interpolation=cv2.INTER_AREA)
                batch[i * len(self.zooms) + j] = view.reshape(h, w, channels)
        return normalize_faces(batch, self.preprocess)

    def predict(self, crops: list[np.ndarray]) -> np.ndarray:
        """Probabilities per crop, averaged over the model's zooms and (``flip_average``) mirror images."""
        if not crops:
            return np.zeros((0, len(LABELS)))
        batch = self.prepare(crops)
        if self.flip_average:
            batch = np.concatenate([batch, batch[:, :, ::-1]])
        probs = self.run(batch).reshape(-1, len(crops), len(self.zooms), len(LABELS))  # (flips, crops, zooms, labels)
        return probs.mean(axis=(0, 2))


def _zoomed(crop: np.ndarray, zoom: float) -> np.ndarray:
    """``crop`` seen ``zoom`` times closer: its central 1/zoom, or (zoom < 1) itself with replicated edges."""
    if zoom == 1.0:
        return crop
    h, w = crop.shape[:2]
    if zoom > 1.0:
        ch, cw = max(1, round(h / zoom)), max(1, round(w / zoom))
        top, left = (h - ch) // 2, (w - cw) // 2
        return crop[top : top + ch, left : left + cw]
    import cv2

    ph, pw = round(h * (1.0 / zoom - 1.0) / 2), round(w * (1.0 / zoom - 1.0) / 2)
    return cv2.copyMakeBorder(crop, ph, ph, pw, pw, cv2.BORDER_REPLICATE)


class VoiceModel(OnnxModel):
    """Classifies an audio window (mono float32 at the model's sample rate)."""

    def __init__(self, path: str | Path, threads: int = 0):
        super().__init__(path, threads)
        if self.task != "voice":
            raise ModelError(f"{path}: is a {self.task} model, expected a voice model")
        self.spec = FeatureSpec.from_dict(self.info.preprocess)

    @cached_property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    def prepare(self, windows: list[np.ndarray], level: float | None = None) -> np.ndarray:
        gain = np.float32(speech_gain(level, self.spec))
        return np.stack([normalize(audio_features(w * gain, self.spec), self.spec) for w in windows])

    def predict(self, windows: list[np.ndarray], level: float | None = None) -> np.ndarray:
        """Probabilities of each window; ``level``: the dBFS of the stream's speech so far
        (``SpeechTrack.speech_level``), which ``speech_gain`` brings into the model's range."""
        if not windows:
            return np.zeros((0, len(LABELS)))
        return self.run(self.prepare(windows, level))
