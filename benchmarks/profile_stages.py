"""Where `emocli process` spends its time: py-spy samples bucketed by pipeline stage.

    .venv/bin/python benchmarks/profile.py [VIDEO] [--rate 100] [-- extra emocli args]

Runs `emocli process VIDEO --no-plot --workers 1` under py-spy (``pip install py-spy``)
and prints the share of main-thread samples per stage: import, model/detector load,
decode (frames, and the sampler's threads reading them), audio, detect, face classify,
voice features, voice classify, who speaks, write, other. Idle samples of helper threads
are left out. Defaults to the 60 s 720p talking-face video of floor.py and the models of
_models.pick().
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emocli_cmd, process_args, talking_video  # noqa: E402
from _models import pick  # noqa: E402

# First match wins, scanning each stack from the leaf towards the root.
STAGES = [
    ("import", ("_find_and_load", "_call_with_frames_removed", "<module>")),
    ("model/detector load", ("OnnxModel.__init__", "FaceDetector.__init__", "Analyzer.__init__")),
    ("decode frames", ("FrameReader", "FrameSampler", "_frame_worker", "frames_at")),
    ("audio read", ("AudioStream",)),
    ("detect", ("FaceDetector.detect",)),
    ("face classify", ("FaceModel.", "crop_face")),
    ("voice features", ("audio_features", "voice_active", "normalize")),
    ("voice classify", ("VoiceModel.",)),  # OnnxModel.run is shared: its caller (Face/VoiceModel) decides
    ("who speaks", ("SpeakerDetector", "mouth_patch", "Mouth.samples", "speaker.py")),
    ("tracking+rows", ("FaceTracker", "FaceFollower", "Analyzer._row", "_summary", "fuse")),
    ("dataframe", ("DataFrame", "astype")),
    ("write outputs", ("Writer.write", "CsvWriter", "PlotWriter", "AnnotatedVideoWriter", "write_summary")),
    ("probe", ("probe",)),
]
IDLE = ("thread.py:81)", "Condition.wait", "Event.wait", "_wait_for_tstate_lock", "select (", "poll (")


def classify(stack: list[str]) -> str | None:
    if stack and any(stack[-1].startswith(i) or i in stack[-1] for i in IDLE):
        return None
    if not any("emocli" in f or "cli.py" in f for f in stack) and not any("<module>" in f for f in stack):
        return "other"
    for frame in reversed(stack):
        for stage, keys in STAGES:
            if any(k in frame for k in keys):
                return stage
    return "other"


def summarize(raw: Path) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        stage = classify(stack.split(";"))
        if stage:
            counts[stage] += int(n)
    return dict(counts)


def show(counts: dict[str, int], rate: int, title: str) -> None:
    total = sum(counts.values())
    print(f"{title}: {total / rate:.1f} s of busy samples")
    for stage, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:<22} {n / rate:6.2f} s  {100 * n / total:5.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", nargs="?", type=Path)
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--keep", type=Path, help="save the raw py-spy output here")
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    video = a.video or talking_video()
    face, voice, note = pick()
    print(note)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(a.keep or Path(tmp) / "raw.txt")
        cmd = [
            spy,
            "record",
            "-r",
            str(a.rate),
            "-f",
            "raw",
            "-o",
            str(raw),
            "--",
            *emocli_cmd(),
            "process",
            *process_args(str(video), str(Path(tmp) / "out"), face, voice),
            *a.extra,
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        show(summarize(raw), a.rate, f"emocli process {video.name}")


if __name__ == "__main__":
    main()
