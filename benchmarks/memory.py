"""Memory: peak RSS of `emocli process` (the whole process tree) on 10- and 60-minute inputs.

    .venv/bin/python benchmarks/memory.py [--minutes 10 60] [--annotate]

Generates (once, cached) 320x240 10 fps videos with a face drifting over grey and a
tone-plus-noise track, runs `emocli process --no-plot --workers 1` on each and polls
/proc every 50 ms, summing the RSS of emocli and all its children (ffmpeg included).
Target: <= 1 GB for both; a flat figure from 10 to 60 minutes shows memory does not
grow with the length of the video.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emocli_cmd, fresh_dir, load_note, long_video, process_args  # noqa: E402
from _models import pick  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> int:
    """Bytes of resident memory of ``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            ppid, pages = int(parts[1]), int(parts[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
        rss[int(d)] = pages * PAGE
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def peak(cmd: list[str]) -> tuple[float, int]:
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    top = 0
    while proc.poll() is None:
        top = max(top, tree_rss(proc.pid))
        time.sleep(0.05)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.read().decode(errors="replace")[-800:])
    return time.perf_counter() - t, top


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, nargs="+", default=[10, 60])
    ap.add_argument("--annotate", action="store_true")
    a = ap.parse_args()
    face, voice, note = pick()
    print(f"{note}; {load_note()}")
    tmp = Path(tempfile.mkdtemp(prefix="emocli-mem-"))
    rows = []
    for minutes in a.minutes:
        video = long_video(minutes)
        cmd = [
            *emocli_cmd(),
            "process",
            *process_args(str(video), str(fresh_dir(tmp / "out")), face, voice),
            *(["--annotate"] if a.annotate else []),
        ]
        wall, top = peak(cmd)
        rows.append((minutes, wall, top))
        print(
            f"{minutes:3d} min input: peak RSS (tree) {top / 2**20:7.1f} MiB ({top / 2**30:.2f} of the 1 GiB target), "
            f"{wall:.1f} s wall, {minutes * 60 / wall:.0f} video-s per wall-s",
            flush=True,
        )
    if len(rows) > 1:
        print(f"peak RSS {rows[-1][0]} min / {rows[0][0]} min: {rows[-1][2] / rows[0][2]:.2f}x")


if __name__ == "__main__":
    main()
