"""Floor: `emocli process` against pure decoding of the same video, in the same run.

    .venv/bin/python benchmarks/floor.py [--repeats 3] [--annotate] [--ref REF]

Builds (once, cached in benchmarks/.cache) a 64 s 1280x720 H.264 talking-face video
from the CREMA-D clips, then times, interleaved and repeated (medians):
  decode        `ffmpeg -i X -f null -` with the bundled ffmpeg (the floor; its own threads)
  decode -threads 1 / -skip_frame nokey   (a single-threaded floor; a keyframes-only bound)
  decode -skip_frame noref      what emocli's frame sampler decodes (frames others refer to)
  transcode (x264 ultrafast)    decode + the cheapest H.264 encode, nothing drawn: the floor
                                of any annotated video (with --annotate)
  process       `emocli process X -o OUT --no-plot --workers 1` (CSV, 1 s interval), the
                same with --face-views (every view the face model names, not only each crop
                and its mirror image), and with the plot (the command's default outputs)
  annotate      the same with --annotate (with --annotate)
  process@REF   the code of git REF (e.g. HEAD) on the same video, for before/after
Targets: process <= 1.25x decode, annotate <= 2.25x decode.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CACHE,
    PY,
    ROOT,
    emocli_cmd,
    ffmpeg,
    fresh_dir,
    interleaved,
    load_note,
    report,
    run_cmd,
    talking_video,
)
from _models import pick  # noqa: E402


def ref_tree(ref: str) -> Path:
    """The emocli package of git ``ref``, exported (git archive) into the cache; or ``ref``
    itself when it is a folder that holds an ``emocli`` package."""
    if (Path(ref) / "emocli" / "__init__.py").is_file():
        return Path(ref).resolve()
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    out = CACHE / f"ref-{sha[:12]}"
    if not (out / "emocli").is_dir():
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", sha, "emocli"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--annotate", action="store_true", help="also time --annotate (target <= 2.25x decode)")
    ap.add_argument(
        "--ref",
        help="also time the code of this git ref (or a folder holding an emocli package) for a before/after ratio",
    )
    ap.add_argument("--video", type=Path, help="another video instead of the generated one")
    a = ap.parse_args()
    video = a.video or talking_video()
    from emocli.media import probe

    seconds = probe(video).duration
    face, voice, note = pick()
    print(f"video: {video.name}, {seconds:.1f} s; {note}; {load_note()}")
    tmp = Path(tempfile.mkdtemp(prefix="emocli-floor-"))
    models = ["--face-model", str(face), "--voice-model", str(voice)]

    def process(*extra: str, env: dict | None = None, cmd: list[str] | None = None, plot: bool = False):
        def go() -> float:
            out = fresh_dir(tmp / "out")
            return run_cmd(
                [
                    *(cmd or emocli_cmd()),
                    "process",
                    str(video),
                    "-o",
                    str(out),
                    *([] if plot else ["--no-plot"]),
                    "--workers",
                    "1",
                    "-q",
                    *models,
                    *extra,
                ],
                env=env,
            )

        return go

    ff = ffmpeg()
    subjects = {
        "decode (ffmpeg -f null)": lambda: run_cmd([ff, "-v", "error", "-i", str(video), "-f", "null", "-"]),
        "decode -threads 1": lambda: run_cmd([ff, "-v", "error", "-threads", "1", "-i", str(video), "-f", "null", "-"]),
        "decode -skip_frame nokey": lambda: run_cmd(
            [ff, "-v", "error", "-skip_frame", "nokey", "-i", str(video), "-an", "-f", "null", "-"]
        ),
        "decode -skip_frame noref": lambda: run_cmd(
            [ff, "-v", "error", "-skip_frame", "noref", "-i", str(video), "-an", "-f", "null", "-"]
        ),
        "process (CSV)": process(),
        # All the face model's views (zooms x mirror) against the default crop + mirror: accuracy against time.
        "process (CSV) --face-views": process("--face-views"),
        "process (CSV + plot)": process(plot=True),
    }
    if a.annotate:
        subjects["transcode (x264 ultrafast)"] = lambda: run_cmd(
            [
                ff,
                "-v",
                "error",
                "-y",
                "-i",
                str(video),
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "aac",
                str(tmp / "transcoded.mp4"),
            ]
        )
        subjects["process --annotate"] = process("--annotate")
    if a.ref:
        ref = {"env": {**os.environ, "PYTHONPATH": str(ref_tree(a.ref))}, "cmd": [PY, "-P", "-m", "emocli"]}
        subjects[f"process @{a.ref}"] = process(**ref)
        subjects[f"process (CSV + plot) @{a.ref}"] = process(**ref, plot=True)
        if a.annotate:
            subjects[f"process --annotate @{a.ref}"] = process("--annotate", **ref)
    times = interleaved(subjects, a.repeats)
    print()
    report(times, "decode (ffmpeg -f null)", unit_seconds=seconds)
    print("targets: process <= 1.25x decode" + (", annotate <= 2.25x decode" if a.annotate else ""))


if __name__ == "__main__":
    main()
