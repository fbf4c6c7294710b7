"""Unit costs: per face, per audio window, per detection, and a cold `emocli process`.

    .venv/bin/python benchmarks/unit_costs.py [--repeats 5]

  face classify   FaceModel.predict on the faces of one frame (batch of 1, 2, 4), ms/face
                  (target <= 1 ms/face), for the tiny linear stand-in and the ~0.24 M-param
                  conv stand-in, and export/face.onnx with all its views (zooms x mirror)
                  and with one view
  voice           features + VoiceModel.predict per 2 s window, ms (target <= 5 ms)
  features        audio_features alone, ms/window
  vad             SpeechDetector over one second of audio (what each 1 s interval adds), ms
  hum             HumRemover on one second of a track (every track read goes through it),
                  ms: speech (screened, passed unchanged) and speech under 50 Hz hum (fitted)
  detect          FaceDetector.detect per 720p frame and per 480x360 frame, ms
  cold process    `emocli process` on a 10 s clip minus `python -c "import emocli.cli"`,
                  both timed in this run (target <= 3 s beyond import)
Every figure is a median over interleaved rounds; the ratio to its target is printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import PY, clips, cut, emocli_cmd, fresh_dir, interleaved, load_note, med, run_cmd, talking_video  # noqa: E402
from _models import conv_face, pick, tiny_face, tiny_voice  # noqa: E402


def per_call(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    from emocli.faces import FaceDetector, crop_face
    from emocli.features import FeatureSpec, audio_features
    from emocli.media import FrameReader, read_audio
    from emocli.media.hum import HumRemover
    from emocli.models import FaceModel, VoiceModel
    from emocli.vad import SpeechDetector

    face_path, voice_path, note = pick()
    print(f"{note}; {load_note()}")
    video = talking_video()
    with FrameReader(video) as r:
        frames = [f for _, f in r.frames_at([0.5 + i for i in range(8)])]
    small = [np.ascontiguousarray(f[::2, ::2][:360, 80:560]) for f in frames]  # 480x360, as CREMA-D
    audio = read_audio(clips()[0])
    spec = FeatureSpec()
    window = np.resize(audio, spec.window_samples).astype(np.float32)
    results: dict[str, list[float]] = {}
    with FaceDetector() as det:
        crop = crop_face(frames[0], det.detect(frames[0])[0], 0.15)
        face_models = {"tiny": FaceModel(tiny_face()), "conv": FaceModel(conv_face())}
        if face_path.parent.name == "export":
            face_models["export"] = FaceModel(face_path)
            # The same net on one view (no zooms, no mirror): what each of its views costs.
            face_models["export 1 view"] = FaceModel(face_path, views=False)
        voice = VoiceModel(voice_path if voice_path.parent.name == "export" else tiny_voice())
        subjects = {}
        for name, m in face_models.items():
            for k in (1, 2, 4):
                subjects[f"face {name} batch {k} (ms/face)"] = lambda m=m, k=k: (
                    per_call(lambda: m.predict([crop] * k), 50) / k
                )
        subjects["voice features+predict (ms)"] = lambda: per_call(lambda: voice.predict([window]), 30)
        subjects["features only (ms)"] = lambda: per_call(lambda: audio_features(window, spec), 30)
        speech = SpeechDetector()
        second = window[: spec.sample_rate]
        subjects["vad per second of audio (ms)"] = lambda: per_call(lambda: speech.probabilities(second), 30)
        hummed = second + np.float32(0.1) * np.sin(2 * np.pi * 50 * np.arange(len(second)) / spec.sample_rate)
        for name, x in (("speech", second), ("speech + hum", hummed.astype(np.float32))):
            remover = HumRemover(spec.sample_rate)
            subjects[f"hum per second, {name} (ms)"] = lambda r=remover, x=x: per_call(lambda: r(x), 30)
        subjects["detect 1280x720 (ms)"] = lambda: per_call(lambda: [det.detect(f) for f in frames], 3) / len(frames)
        subjects["detect 480x360 (ms)"] = lambda: per_call(lambda: [det.detect(f) for f in small], 3) / len(small)
        for _ in range(a.repeats):
            for name, fn in subjects.items():
                results.setdefault(name, []).append(fn() * 1000)
    print(f"\n{'unit':<40} {'median':>8} {'min':>8}  target")
    targets = {"face": 1.0, "voice": 5.0}
    for name, xs in results.items():
        tgt = next((v for k, v in targets.items() if name.startswith(k)), None)
        t = f"  <= {tgt:g} ms: {statistics.median(xs) / tgt:.2f}x of target" if tgt else ""
        print(f"{name:<40} {statistics.median(xs):8.2f} {min(xs):8.2f}{t}")

    clip = cut(video, 10, "talking_10s.mp4")
    tmp = Path(tempfile.mkdtemp(prefix="emocli-cold-"))
    cmd = [
        *emocli_cmd(),
        "process",
        str(clip),
        "-o",
        str(tmp / "out"),
        "--no-plot",
        "--workers",
        "1",
        "-q",
        "--face-model",
        str(face_path),
        "--voice-model",
        str(voice_path),
    ]
    times = interleaved(
        {
            "python -c 'import emocli.cli'": lambda: run_cmd([PY, "-c", "import emocli.cli"]),
            "python -c 'import ...' (all)": lambda: run_cmd(
                [PY, "-c", "import emocli.cli, emocli.batch, emocli.pipeline"]
            ),
            "emocli process 10 s clip": lambda: (fresh_dir(tmp / "out"), run_cmd(cmd))[1],
        },
        a.repeats,
    )
    imp, proc = med(times["python -c 'import emocli.cli'"]), med(times["emocli process 10 s clip"])
    print(
        f"\ncold process 10 s clip: {proc:.2f} s; import emocli.cli {imp:.2f} s; "
        f"beyond import {proc - imp:.2f} s (target <= 3 s: {(proc - imp) / 3:.2f}x of target)"
    )


if __name__ == "__main__":
    main()
