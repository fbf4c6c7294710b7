"""Where the wall time of one `emocli process` goes, by the main thread's clock.

    .venv/bin/python benchmarks/stage_clock.py [--repeats 5] [--ref REF] [VIDEO]

Runs `emocli process VIDEO --no-plot --workers 1 -q` in a child Python whose pipeline
calls are wrapped with timers (no sampler, so unlike py-spy nothing is slowed down) and
prints medians over interleaved rounds of:
  start             interpreter start to the models starting to load: imports, discovery
  load models       Analyzer.__init__: onnxruntime sessions, mediapipe's detector
  to first frame    from there to the frame sampler starting (probe, decoders started)
  analysis          the loop over intervals, up to the timeline being returned
    face / detect / voice / audio / who speaks / frame wait   main-thread seconds inside the loop
  write + exit      CSV and summary written, interpreter shut down
  total             the child's wall time
``--ref`` runs the code of a git ref (or a folder holding an emocli package) too.
Defaults to the 64 s 720p talking-face video of floor.py and the models of _models.pick().
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def child(argv: list[str]) -> None:
    """Run the CLI in this process with timers around the pipeline; print the marks as JSON."""
    t0 = time.perf_counter()
    marks: dict[str, float] = {}
    spent = dict.fromkeys(["face", "detect", "voice", "audio", "who speaks", "frame wait"], 0.0)
    import emocli.cli as cli
    import emocli.faces as faces
    import emocli.media as media
    import emocli.models as models
    import emocli.pipeline as pipeline
    import emocli.speaker as speaker

    def timed(owner, name: str, key: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t

        setattr(owner, name, wrapper)

    def marked(owner, name: str, begin: str, end: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*a, **k):
            marks.setdefault(begin, time.perf_counter() - t0)
            try:
                return inner(*a, **k)
            finally:
                marks[end] = time.perf_counter() - t0

        setattr(owner, name, wrapper)

    timed(models.FaceModel, "predict", "face")
    timed(faces.FaceDetector, "detect", "detect")
    timed(models.VoiceModel, "predict", "voice")
    timed(media.AudioStream, "window", "audio")
    for name in ("add_mouth", "speaking"):
        timed(speaker.SpeakerDetector, name, "who speaks")
    marked(pipeline.Analyzer, "__init__", "load", "loaded")
    # the batch calls timeline() since the Timeline object; analyze() before it
    marked(
        pipeline.Analyzer, "timeline" if hasattr(pipeline.Analyzer, "timeline") else "analyze", "analyse", "analysed"
    )
    frames_at = media.FrameSampler.frames_at

    def sampled(self, times):
        marks.setdefault("first frame", time.perf_counter() - t0)
        frames = frames_at(self, times)
        while True:
            t = time.perf_counter()
            try:
                item = next(frames)
            except StopIteration:
                return
            finally:
                spent["frame wait"] += time.perf_counter() - t
            yield item

    media.FrameSampler.frames_at = sampled
    sys.argv = ["emocli", "process", *argv]
    try:
        cli.main()
    except SystemExit:
        pass
    marks["end"] = time.perf_counter() - t0
    print("MARKS " + json.dumps({"marks": marks, "spent": spent}))


def stages(out: dict, wall: float, python_start: float) -> dict[str, float]:
    m, s = out["marks"], out["spent"]
    return {
        "start": python_start + m["load"],
        "load models": m["loaded"] - m["load"],
        "to first frame": m["first frame"] - m["loaded"],
        "analysis": m["analysed"] - m["first frame"],
        **{f"  {k}": v for k, v in s.items()},
        "write + exit": wall - python_start - m["analysed"],
        "total": wall,
    }


def main() -> None:
    from _common import PY, fresh_dir, load_note, med, process_args, talking_video
    from _models import pick
    from floor import ref_tree

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", nargs="?", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ref", help="also clock the code of this git ref (or a folder holding an emocli package)")
    a = ap.parse_args()
    video = a.video or talking_video()
    face, voice, note = pick()
    print(f"video: {video.name}; {note}; {load_note()}")
    tmp = Path(tempfile.mkdtemp(prefix="emocli-clock-"))
    here = Path(__file__).resolve().parent.parent
    variants = {"now": str(here)}
    if a.ref:
        variants[f"@{a.ref}"] = str(ref_tree(a.ref))
    # Interpreter start-up before the child's first line: `python -c pass`, measured here.
    t = time.perf_counter()
    subprocess.run([PY, "-c", "pass"], check=True)
    python_start = time.perf_counter() - t
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(a.repeats):
        for name, tree in variants.items():
            out = fresh_dir(tmp / "out")
            cmd = [
                PY,
                "-P",
                __file__,
                "--child",
                *process_args(str(video), str(out), face, voice),
            ]
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": tree})
            wall = time.perf_counter() - t
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MARKS ")]
            if proc.returncode != 0 or not line:
                sys.exit(f"{name}: emocli process failed:\n{proc.stderr[-2000:]}")
            results[name].append(stages(json.loads(line[0][6:]), wall, python_start))
    print(f"\nmedians of {a.repeats} interleaved rounds, seconds")
    print(f"{'stage':<18}" + "".join(f"{v:>12}" for v in variants))
    for stage in results["now"][0]:
        print(f"{stage:<18}" + "".join(f"{med([r[stage] for r in results[v]]):12.2f}" for v in variants))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
