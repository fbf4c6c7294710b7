"""The shipped models travel inside the wheel and are found from an installed copy."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest
from conftest import ROOT

from emocli.models import ModelInfo, default_model_path, read_info


@pytest.mark.parametrize("task", ["face", "voice"])
def test_shipped_models_describe_themselves(task):
    path = ROOT / "export" / f"{task}.onnx"
    assert path.is_file(), f"export/{task}.onnx is missing"
    assert default_model_path(task) == path
    info: ModelInfo = read_info(path)
    assert info.task == task and len(info.labels) >= 6
    assert {"dataset", "split", "accuracy", "macro_f1"} <= set(info.metrics)
    assert path.stat().st_size <= (10 if task == "face" else 5) * 2**20


def test_wheel_carries_models_and_finds_them_installed(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    wheel = next(tmp_path.glob("emocli-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "emocli/export/face.onnx",
        "emocli/export/voice.onnx",
        "emocli/export/README.md",
        "emocli/assets/face_detection_full_range_sparse.tflite",
        "emocli/assets/LICENSE.mediapipe",
    ):
        assert needed in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)], check=True
    )
    code = "import emocli.models as m; print(m.default_model_path('face')); print(m.default_model_path('voice'))"
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, check=True
    )
    face, voice = out.stdout.split()
    assert face == str(target / "emocli" / "export" / "face.onnx")
    assert voice == str(target / "emocli" / "export" / "voice.onnx")
