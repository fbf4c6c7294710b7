"""Fixtures: tiny ONNX models built with onnx.helper, and real small media made with ffmpeg.

Faces come from the CREMA-D clips in examples/ (a real face the detector must find);
everything else (backgrounds, tones, silence, layouts) is generated here.
"""

from __future__ import annotations

import json
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from emocli.features import FeatureSpec
from emocli.labels import LABELS
from emocli.media import ffmpeg

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CLIPS = EXAMPLES / "crema-d"


def build_onnx(
    path: Path,
    task: str,
    preprocess: dict,
    input_name: str,
    input_shape: list,
    reduce_axes: list[int],
    weights: np.ndarray,
    bias: np.ndarray,
    metrics: dict | None = None,
) -> Path:
    """softmax(mean(x over reduce_axes) @ weights + bias), with emocli metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = weights.shape[1]
    nodes = [
        helper.make_node("ReduceMean", [input_name], ["reduced"], axes=list(reduce_axes), keepdims=1),
        helper.make_node("Flatten", ["reduced"], ["pooled"], axis=1),
        helper.make_node("Gemm", ["pooled", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    inits = [
        numpy_helper.from_array(weights.astype(np.float32), "W"),
        numpy_helper.from_array(bias.astype(np.float32), "B"),
    ]
    graph = helper.make_graph(
        nodes,
        f"tiny_{task}",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", k])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "emocli.task": task,
        "emocli.labels": json.dumps(list(LABELS)),
        "emocli.preprocess": json.dumps(preprocess),
        "emocli.metrics": json.dumps(
            metrics or {"dataset": "synthetic", "split": "none", "accuracy": 0.5, "macro_f1": 0.5}
        ),
        "emocli.version": "test",
    }
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def face_onnx(tmp_path_factory) -> Path:
    """Bright faces are happy, dark faces are sad (mean pixel of the crop decides)."""
    w = np.zeros((1, len(LABELS)))
    b = np.zeros(len(LABELS))
    w[0, LABELS.index("happy")], b[LABELS.index("happy")] = 20.0, -10.0
    w[0, LABELS.index("sad")], b[LABELS.index("sad")] = -20.0, 10.0
    preprocess = {
        "input_size": [48, 48],
        "grayscale": True,
        "scale": 1 / 255,
        "mean": 0.0,
        "std": 1.0,
        "crop_margin": 0.15,
    }
    path = tmp_path_factory.mktemp("models") / "face.onnx"
    return build_onnx(
        path,
        "face",
        preprocess,
        "image",
        ["N", 48, 48, 1],
        [1, 2, 3],
        w,
        b,
        {"dataset": "synthetic", "accuracy": 0.6, "macro_f1": 0.6},
    )


@pytest.fixture(scope="session")
def voice_onnx(tmp_path_factory) -> Path:
    """Loud windows are angry, quiet ones neutral: the mean log-mel level decides (-88 dB:
    a 220 Hz tone at 0.5 full scale gives about -84, at 0.01 about -93)."""
    spec = FeatureSpec()
    w = np.zeros((spec.n_features, len(LABELS)))
    b = np.zeros(len(LABELS))
    w[spec.n_mfcc :, LABELS.index("angry")], b[LABELS.index("angry")] = 1.0 / spec.n_mels, 88.0
    w[spec.n_mfcc :, LABELS.index("neutral")], b[LABELS.index("neutral")] = -1.0 / spec.n_mels, -88.0
    path = tmp_path_factory.mktemp("models") / "voice.onnx"
    return build_onnx(
        path,
        "voice",
        spec.to_dict(),
        "features",
        ["N", "T", spec.n_features],
        [1],
        w,
        b,
        {"dataset": "synthetic", "accuracy": 0.4, "macro_f1": 0.4},
    )


@pytest.fixture(scope="session")
def detector():
    """The voice-activity detector at its default threshold."""
    from emocli.vad import SpeechDetector

    return SpeechDetector()


def model_args(models: dict) -> list[str]:
    """The ``models`` fixture as `emocli process` options."""
    return ["--face-model", str(models["face_model"]), "--voice-model", str(models["voice_model"])]


@pytest.fixture(scope="session")
def models(face_onnx, voice_onnx) -> dict:
    return {"face_model": face_onnx, "voice_model": voice_onnx}


# ---------------------------------------------------------------- media


def write_wav(path: Path, signal: np.ndarray, sr: int = 16_000) -> Path:
    """16-bit PCM: mono, or one column per channel."""
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if signal.ndim == 1 else signal.shape[1])
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return path


def tone(seconds: float, freq: float = 220.0, level: float = 0.3, sr: int = 16_000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def composite(out: Path, inputs: list[str], graph: str, audio: str) -> Path:
    """Encode ``graph`` (an ffmpeg filter graph whose video output is ``[v]``) over ``inputs``
    (ffmpeg input arguments), with the sound of stream ``audio``, as H.264/AAC in ``out``."""
    cmd = [ffmpeg(), "-v", "error", *inputs, "-filter_complex", graph, "-map", "[v]", "-map", audio]
    subprocess.run([*cmd, "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(out)], check=True)
    return out


def make_video(
    path: Path,
    frames,
    fps: float = 10.0,
    audio: np.ndarray | None = None,
    extra: list[str] | None = None,
    codec: list[str] | None = None,
) -> Path:
    """Encode BGR frames (same size) with the bundled ffmpeg, with an optional mono 16 kHz track."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    cmd = [
        ffmpeg(),
        "-hide_banner",
        "-v",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "bgr24",
        "-s",
        f"{w}x{h}",
        "-r",
        str(fps),
        "-i",
        "-",
    ]
    if audio is not None:
        wav = write_wav(path.with_suffix(".src.wav"), audio)
        cmd += ["-i", str(wav), "-map", "0:v", "-map", "1:a", "-c:a", "aac"]
    cmd += codec or ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
    cmd += (extra or []) + [str(path)]
    subprocess.run(cmd, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), check=True)
    if audio is not None:
        wav.unlink()
    return path


@pytest.fixture(scope="session")
def face_image() -> np.ndarray:
    """A real face (CREMA-D actor 1001), cropped loosely from an example clip: BGR, about 180 px."""
    import cv2

    cap = cv2.VideoCapture(str(CLIPS / "1001_DFA_NEU_XX.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok, "examples/crema-d clip unreadable"
    return frame[40:260, 110:330].copy()


def scene(
    face: np.ndarray | None, size=(360, 640), at=((40, 60),), scale: float = 1.0, brightness: float = 1.0
) -> np.ndarray:
    """A grey frame with the face pasted at each top-left ``at`` position."""
    import cv2

    frame = np.full((*size, 3), 90, np.uint8)
    if face is None:
        return frame
    f = cv2.resize(face, None, fx=scale, fy=scale)
    f = np.clip(f.astype(np.float32) * brightness, 0, 255).astype(np.uint8)
    for y, x in at:
        frame[y : y + f.shape[0], x : x + f.shape[1]] = f[: size[0] - y, : size[1] - x]
    return frame


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    """Real speech, 16 kHz mono: two CREMA-D example sentences one after the other (~4.3 s)."""
    from emocli.media import read_audio

    return np.concatenate([read_audio(CLIPS / "1001_DFA_ANG_XX.mp4"), read_audio(CLIPS / "1001_DFA_SAD_XX.mp4")])
