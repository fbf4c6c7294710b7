"""Peer: emocli against `fer` 25.10 (Haar cascade + its Keras model) on the same video.

    .venv/bin/python benchmarks/peer_fer.py [--repeats 2] [--venv ~/.cache/emocli/fer-venv]

Installs fer into a SEPARATE virtualenv (once): `pip install --no-deps fer==25.10.*` plus
what its Haar path imports (tensorflow-cpu, opencv-contrib-python, pandas, requests,
tqdm, moviepy<2, ffmpeg-python, Pillow, matplotlib, setuptools<81); skips with a
message when that is impossible (no network, no wheels). Then times, interleaved:
  fer @1 fps      fer's Video.analyze(frequency = round(fps), max_results = frames /
                  frequency), i.e. one frame per second like emocli's 1 s interval, on
                  floor.py's 64 s 720p video
  emocli          `emocli process --no-plot --workers 1` on the same video (target: fer /
                  emocli >= 3)
and, once, both at their own defaults on a 20 s cut (fer analyses every frame).
Both are timed as whole commands (interpreter start, imports and model load included);
fer's analyze() time alone is printed too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    cut,
    emocli_cmd,
    fresh_dir,
    interleaved,
    load_note,
    med,
    process_args,
    report,
    run_cmd,
    talking_video,
)  # noqa: E402
from _models import pick  # noqa: E402

PACKAGES = [
    "tensorflow-cpu",
    "opencv-contrib-python",
    "pandas",
    "requests",
    "tqdm",
    "moviepy<2",
    "ffmpeg-python",
    "Pillow",
    "matplotlib",
    "setuptools<81",
]

RUNNER = r"""
import glob, json, os, sys, time
t0 = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import fer
from fer.fer import FER
from fer.classes import Video
video, frequency, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cascade = glob.glob(os.path.join(os.path.dirname(fer.__file__), "**", "haarcascade_frontalface_default.xml"), recursive=True)[0]
import cv2
detector = FER(cascade_file=cascade, mtcnn=False)
t1 = time.perf_counter()
os.chdir(out)
# fer seeks to every frequency-th frame, but once a seek lands past the end OpenCV keeps
# reading the frames after its last position, so without max_results it goes on over
# the tail of the video frame by frame; max_results stops it after the intended samples.
length = int(cv2.VideoCapture(video).get(cv2.CAP_PROP_FRAME_COUNT))
samples = -(-length // frequency)
raw = Video(video, outdir=out).analyze(detector, display=False, frequency=frequency, save_frames=False,
                                       save_video=False, annotate_frames=False, zip_images=False,
                                       max_results=samples if frequency > 1 else None)
t2 = time.perf_counter()
print(json.dumps({"setup_s": t1 - t0, "analyze_s": t2 - t1, "rows": len(raw), "samples": samples}))
"""


def fer_python(venv: Path) -> Path | None:
    py = venv / "bin" / "python"
    if py.is_file() and subprocess.run([py, "-c", "import fer.fer, fer.classes"], capture_output=True).returncode == 0:
        return py
    print(f"installing fer 25.10 into {venv} (once) ...", file=sys.stderr, flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        # One retry: offline, pip's default five, with back-off, keep a user waiting for minutes.
        pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--retries", "1"]
        subprocess.run([*pip, "--no-deps", "fer==25.10.*"], check=True, timeout=1200)
        subprocess.run([*pip, *PACKAGES], check=True, timeout=1800)
        subprocess.run([py, "-c", "import fer.fer, fer.classes"], check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        print(f"SKIPPED: cannot install fer 25.10 and its Haar-path dependencies here ({e})")
        return None
    return py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--venv", type=Path, default=Path.home() / ".cache" / "emocli" / "fer-venv")
    ap.add_argument("--no-defaults", action="store_true", help="skip the every-frame comparison")
    ap.add_argument("--timeout", type=int, default=600, help="seconds before a fer run is stopped (then a lower bound)")
    a = ap.parse_args()
    py = fer_python(a.venv)
    if py is None:
        return
    face, voice, note = pick()
    video = talking_video()
    from emocli.media import probe

    info = probe(video)
    freq = max(1, round(info.fps))
    print(f"video: {video.name}, {info.duration:.1f} s at {info.fps} fps; fer frequency={freq}; {note}; {load_note()}")
    tmp = Path(tempfile.mkdtemp(prefix="emocli-peer-"))
    runner = tmp / "fer_runner.py"
    runner.write_text(RUNNER)
    fer_stats: list[dict] = []

    def fer_run(path: Path, frequency: int):
        def go() -> float:
            out = fresh_dir(tmp / "fer")
            t = time.perf_counter()
            try:
                proc = subprocess.run(
                    [str(py), str(runner), str(path), str(frequency), str(out)],
                    capture_output=True,
                    text=True,
                    timeout=a.timeout,
                )
            except subprocess.TimeoutExpired:
                print(
                    f"  fer did not finish within {a.timeout} s: counted as {a.timeout} s (a lower bound)", flush=True
                )
                fer_stats.append({"setup_s": float("nan"), "analyze_s": float(a.timeout), "rows": 0})
                return float(a.timeout)
            wall = time.perf_counter() - t
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-1500:])
            fer_stats.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            return wall

        return go

    def emocli_run(path: Path):
        def go() -> float:
            out = fresh_dir(tmp / "emo")
            return run_cmd(
                [
                    *emocli_cmd(),
                    "process",
                    *process_args(str(path), str(out), face, voice),
                ]
            )

        return go

    times = interleaved(
        {"emocli (1 s interval)": emocli_run(video), f"fer @1 fps (frequency={freq})": fer_run(video, freq)}, a.repeats
    )
    print()
    report(times, "emocli (1 s interval)", unit_seconds=info.duration)
    speed = med(times[f"fer @1 fps (frequency={freq})"]) / med(times["emocli (1 s interval)"])
    print(
        f"fer / emocli at the same sampling: {speed:.2f}x (target >= 3x); fer analyze() alone: "
        f"{med([s['analyze_s'] for s in fer_stats]):.2f} s, its setup (imports, model): {med([s['setup_s'] for s in fer_stats]):.2f} s"
    )
    last = fer_stats[-1]
    print(
        f"fer sampled {last.get('samples', '?')} frames and returned {last['rows']} with a face; "
        f"emocli sampled {int(-(-info.duration // 1))} intervals"
    )
    if not a.no_defaults:
        short = cut(video, 20, "talking_20s.mp4")
        fer_stats.clear()
        d = interleaved(
            {"emocli defaults (20 s)": emocli_run(short), "fer defaults, every frame (20 s)": fer_run(short, 1)},
            1,
            warmup=False,
        )
        print()
        report(d, "emocli defaults (20 s)", unit_seconds=20.0)
        n = fer_stats[-1]["rows"]
        print(
            f"fer analysed {n} frames: {n / fer_stats[-1]['analyze_s']:.1f} fps in analyze() (design anchor: 9.7 fps)"
        )


if __name__ == "__main__":
    main()
