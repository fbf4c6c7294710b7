"""Many people on screen: how many of them each interval finds, and whether each keeps one id.

    .venv/bin/python benchmarks/many_faces.py [--ref REF]

Built from the CREMA-D clips in examples/crema-d (one actor, so every person is the same
face: the check is of finding and following, not of telling people apart), 8 s each,
cached in benchmarks/.cache: a video call's 3x2 gallery at 1280x720 (faces about 90 px), a
1280x720 frame of six people at six sizes (faces 48 to 115 px), and a 2x2 grid at 960x720.
For each: the share of (interval, person) pairs with a row on that person, rows that are
nobody (a box on no person), the people who changed id, and the seconds `emocli process`
took. ``--ref`` runs the code of a git ref (or a folder holding an emocli package) as well.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import CACHE, PY, _encode, clips, emocli_cmd, process_args
from _models import pick

SECONDS = 8


def _inputs() -> list[str]:
    out = []
    for clip in clips()[:6]:
        out += ["-stream_loop", "-1", "-t", str(SECONDS), "-i", str(clip)]
    return out


def gallery() -> tuple[Path, list[tuple]]:
    """3x2 tiles of 426x360 (the clip scaled to 320x240, letterboxed) on 1280x720."""
    tiles = "".join(f"[{i}:v]scale=426:320,pad=426:360:0:20:0x202020,setsar=1[t{i}];" for i in range(6))
    layout = "|".join(f"{426 * (i % 3)}_{360 * (i // 3)}" for i in range(6))
    graph = f"{tiles}{''.join(f'[t{i}]' for i in range(6))}xstack=inputs=6:layout={layout},pad=1280:720[v]"
    cells = [(426 * (i % 3), 360 * (i // 3), 426, 360) for i in range(6)]
    return _video("gallery_1280x720", graph), cells


def sizes() -> tuple[Path, list[tuple]]:
    """Six people at six sizes (clips 150 to 360 px high) on a dark 1280x720 frame."""
    heights = [360, 300, 250, 210, 180, 150]
    xs = [0, 480, 880, 0, 420, 800]
    ys = [0, 0, 0, 380, 420, 440]
    scaled = "".join(f"[{i}:v]scale=-2:{h},setsar=1[s{i}];" for i, h in enumerate(heights))
    chain, last = [], "[bg]"
    for i in range(6):
        chain.append(f"{last}[s{i}]overlay={xs[i]}:{ys[i]}:shortest=1[o{i}]")
        last = f"[o{i}]"
    graph = f"color=c=0x202020:s=1280x720:r=25:d={SECONDS}[bg];{scaled}{';'.join(chain)};{last}null[v]"
    cells = [(x, y, round(h * 4 / 3), h) for x, y, h in zip(xs, ys, heights)]
    return _video("sizes_1280x720", graph), cells


def grid() -> tuple[Path, list[tuple]]:
    """2x2 clips of 480x360 at 960x720."""
    graph = "[0:v][1:v][2:v][3:v]xstack=inputs=4:layout=0_0|480_0|0_360|480_360[v]"
    return _video("grid_960x720", graph), [(480 * (i % 2), 360 * (i // 2), 480, 360) for i in range(4)]


def _video(name: str, graph: str) -> Path:
    out = CACHE / f"many_{name}.mp4"
    if not out.exists():
        encode = ["-map", "[v]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
        _encode([*_inputs(), "-filter_complex", graph, *encode, "-c:a", "aac", "-t", str(SECONDS)], out)
    return out


def score(csv: Path, cells: list[tuple]) -> dict:
    """Per video: found (share of interval-person pairs with a row), nobody (rows whose box
    centre is in no person's cell), id changes (people whose rows carry more than one id)."""
    df = pd.read_csv(csv).dropna(subset=["face_id"])
    cx, cy = df["face_x"] + df["face_w"] / 2, df["face_y"] + df["face_h"] / 2
    person = pd.Series(-1, index=df.index)
    for k, (x, y, w, h) in enumerate(cells):
        person[(cx >= x) & (cx < x + w) & (cy >= y) & (cy < y + h)] = k
    df = df.assign(person=person)
    intervals = pd.read_csv(csv)["t_start"].nunique()
    found = df[df["person"] >= 0].groupby("t_start")["person"].nunique().sum()
    changed = sum(df[df["person"] == k]["face_id"].nunique() > 1 for k in range(len(cells)))
    return {
        "found": found / (intervals * len(cells)),
        "nobody": int((df["person"] < 0).sum()),
        "id changes": changed,
    }


def run(video: Path, out: Path, env: dict | None, cmd: list[str], models: tuple[Path, Path]) -> float:
    start = time.monotonic()
    subprocess.run([*cmd, "process", *process_args(video, out, *models)], env=env, check=True)
    return time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", help="also run the code of this git ref (or a folder holding an emocli package)")
    a = ap.parse_args()
    variants = {"now": (None, emocli_cmd())}
    if a.ref:
        from floor import ref_tree

        variants[f"@{a.ref}"] = ({**os.environ, "PYTHONPATH": str(ref_tree(a.ref))}, [PY, "-P", "-m", "emocli"])
    face, voice, note = pick()
    print(note)
    print(f"{'video':22s} {'code':14s} {'found':>6s} {'nobody':>7s} {'id changes':>11s} {'seconds':>8s}")
    tmp = Path(tempfile.mkdtemp(prefix="emocli-many-"))
    for build in (gallery, sizes, grid):
        video, cells = build()
        for label, (env, cmd) in variants.items():
            out = tmp / f"{video.stem}-{label}"
            took = run(video, out, env, cmd, (face, voice))
            s = score(out / f"{video.stem}.csv", cells)
            print(
                f"{video.stem:22s} {label:14s} {s['found']:6.3f} {s['nobody']:7d} "
                f"{s['id changes']:5d} of {len(cells)} {took:8.1f}"
            )


if __name__ == "__main__":
    main()
