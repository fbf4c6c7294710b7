"""Scale: `emocli process` on 4 videos with --workers 1 and --workers 2, same run.

    .venv/bin/python benchmarks/scale.py [--repeats 2] [--seconds 20]

Four 20 s 720p talking-face videos (cuts of floor.py's video), CSV only; prints the
median wall time of each and the speed-up of 2 workers over 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cut, emocli_cmd, fresh_dir, interleaved, load_note, med, report, run_cmd, talking_video  # noqa: E402
from _models import pick  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=20)
    a = ap.parse_args()
    face, voice, note = pick()
    print(f"{note}; {load_note()}")
    one = cut(talking_video(), a.seconds, f"talking_{a.seconds}s.mp4")
    tmp = Path(tempfile.mkdtemp(prefix="emocli-scale-"))
    src = fresh_dir(tmp / "in")
    for i in range(4):
        os.link(one, src / f"v{i}.mp4")

    def run(workers: int):
        def go() -> float:
            out = fresh_dir(tmp / "out")
            return run_cmd(
                [
                    *emocli_cmd(),
                    "process",
                    str(src),
                    "-o",
                    str(out),
                    "--no-plot",
                    "--workers",
                    str(workers),
                    "-q",
                    "--face-model",
                    str(face),
                    "--voice-model",
                    str(voice),
                ]
            )

        return go

    times = interleaved({"4 videos, --workers 1": run(1), "4 videos, --workers 2": run(2)}, a.repeats)
    print()
    report(times, "4 videos, --workers 1", unit_seconds=4 * a.seconds)
    print(
        f"speed-up of 2 workers: {med(times['4 videos, --workers 1']) / med(times['4 videos, --workers 2']):.2f}x "
        f"on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
