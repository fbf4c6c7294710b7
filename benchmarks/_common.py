"""Shared helpers for the benchmarks: cached inputs, models, timing with ratios.

Every script measures a baseline and a subject in the same run, interleaved and
repeated, and reports medians and their ratio: on a shared 2-core machine absolute
seconds drift with the load, ratios much less.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def require(*paths: Path, what: str) -> None:
    """Stop with one line (status 2) when data a benchmark reads is not there: the datasets
    are never in the repository, so each script says what it needs and where it looked."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        print(f"{', '.join(missing)}: not found; this needs {what}", file=sys.stderr)
        sys.exit(2)


ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("EMOCLI_BENCH_CACHE", ROOT / "benchmarks" / ".cache"))
CLIPS = ROOT / "examples" / "crema-d"
PY = sys.executable


def ffmpeg() -> str:
    from emocli.media import ffmpeg as find

    return find()


def emocli_cmd() -> list[str]:
    """`emocli` as a command: the venv's entry point, else `python -m emocli`."""
    exe = Path(PY).with_name("emocli")
    return [str(exe)] if exe.is_file() else [PY, "-m", "emocli"]


def process_args(video: Path, out: Path, face: Path, voice: Path) -> list[str]:
    """`emocli process`'s arguments for one video, as every benchmark times it: CSV only, one worker, quiet."""
    return [
        str(video),
        "-o",
        str(out),
        "--no-plot",
        "--workers",
        "1",
        "-q",
        "--face-model",
        str(face),
        "--voice-model",
        str(voice),
    ]


def clips() -> list[Path]:
    return sorted(CLIPS.glob("*.mp4"))


def _encode(cmd: list[str], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(".part-" + out.name)
    subprocess.run([ffmpeg(), "-hide_banner", "-v", "error", "-y", *cmd, str(tmp)], check=True)
    tmp.replace(out)
    return out


def talking_video(seconds: float = 60.0, size=(1280, 720), name: str | None = None) -> Path:
    """The CREMA-D clips, scaled (aspect kept, padded) to ``size``, concatenated and looped
    until at least ``seconds`` long, H.264 (x264 defaults) + AAC. Cached."""
    w, h = size
    out = CACHE / (name or f"talking_{w}x{h}_{int(seconds)}s.mp4")
    if out.is_file():
        return out
    src = clips()
    one = sum(_duration(p) for p in src)
    loops = max(1, int(-(-seconds // one)))
    files = src * loops
    inputs = [a for p in files for a in ("-i", str(p))]
    parts = "".join(
        f"[{i}:v]scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=30000/1001[v{i}];"
        f"[{i}:a]aresample=44100,aformat=channel_layouts=mono[a{i}];"
        for i in range(len(files))
    )
    concat = "".join(f"[v{i}][a{i}]" for i in range(len(files))) + f"concat=n={len(files)}:v=1:a=1[v][a]"
    print(f"building {out.name} ({len(files)} clips, ~{one * loops:.0f} s) ...", file=sys.stderr, flush=True)
    return _encode(
        [
            *inputs,
            "-filter_complex",
            parts + concat,
            "-map",
            "[v]",
            "-map",
            "[a]",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "23",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-movflags",
            "+faststart",
        ],
        out,
    )


def long_video(minutes: float, size=(320, 240), fps: int = 10) -> Path:
    """A cheap long input: a face still (from a CREMA-D frame) drifting over grey, 10 fps,
    and a tone-plus-noise audio track. Cached."""
    w, h = size
    out = CACHE / f"long_{w}x{h}_{fps}fps_{int(minutes)}min.mp4"
    if out.is_file():
        return out
    still = CACHE / "face_still.png"
    if not still.is_file():
        _encode(
            ["-ss", "1", "-i", str(clips()[0]), "-frames:v", "1", "-vf", "crop=220:220:110:40,scale=120:120"], still
        )
    secs = int(minutes * 60)
    print(f"building {out.name} ...", file=sys.stderr, flush=True)
    return _encode(
        [
            "-f",
            "lavfi",
            "-i",
            f"color=c=gray:s={w}x{h}:r={fps}:d={secs}",
            "-loop",
            "1",
            "-i",
            str(still),
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=220:sample_rate=16000:duration={secs}",
            "-f",
            "lavfi",
            "-i",
            f"anoisesrc=color=pink:amplitude=0.05:sample_rate=16000:duration={secs}",
            "-filter_complex",
            "[0:v][1:v]overlay=x='60+40*sin(t/3)':y=50:shortest=1[v];[2:a][3:a]amix=inputs=2[a]",
            "-map",
            "[v]",
            "-map",
            "[a]",
            "-t",
            str(secs),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "48k",
        ],
        out,
    )


def cut(src: Path, seconds: float, name: str) -> Path:
    out = CACHE / name
    if not out.is_file():
        _encode(["-i", str(src), "-t", str(seconds), "-c", "copy"], out)
    return out


def _duration(path: Path) -> float:
    from emocli.media import probe

    return probe(path).duration


# ---------------------------------------------------------------- timing


CPU: dict[str, list[float]] = {}  # CPU seconds (user + system, whole process tree) per subject
_SUBJECT: list[str | None] = [None]  # the subject `interleaved` is running


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_cmd(cmd: list[str], env: dict | None = None, check: bool = True, label: str | None = None) -> float:
    """Wall seconds of one command (output discarded); its CPU seconds go to ``CPU[label]``.

    CPU time (of the command and every process it waited for, ffmpeg included) moves
    much less than wall time when other jobs load the machine.
    """
    cpu = _children_cpu()
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    wall = time.perf_counter() - t
    label = label or _SUBJECT[0]
    if label:
        CPU.setdefault(label, []).append(_children_cpu() - cpu)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:3]))}... failed: {proc.stderr.decode(errors='replace')[-800:]}")
    return wall


def interleaved(
    subjects: dict[str, Callable[[], float | None]], repeats: int = 3, warmup: bool = True
) -> dict[str, list[float]]:
    """Run every subject once per round, rounds repeated; returns the seconds per subject.

    A subject returns its own seconds, or None to be timed from outside.
    """
    times: dict[str, list[float]] = {k: [] for k in subjects}
    rounds = repeats + (1 if warmup else 0)
    for r in range(rounds):
        order = list(subjects.items())
        if r % 2:
            order.reverse()  # neither side always runs right after the other
        for name, fn in order:
            _SUBJECT[0] = name
            t = time.perf_counter()
            got = fn()
            _SUBJECT[0] = None
            dt = got if got is not None else time.perf_counter() - t
            if r or not warmup:
                times[name].append(dt)
            elif name in CPU:
                CPU[name].pop()  # the warm-up round counts for neither
            print(
                f"  round {r}{' (warm-up)' if warmup and not r else ''}: {name:<28} {dt:7.2f} s",
                file=sys.stderr,
                flush=True,
            )
    return times


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def report(
    times: dict[str, list[float]],
    baseline: str,
    extra: dict[str, float] | None = None,
    unit_seconds: float | None = None,
) -> None:
    """Print medians, ratios against ``baseline`` and, given the media length, speed."""
    base = med(times[baseline])
    print(
        f"{'subject':<30} {'median s':>9} {'min s':>7} {'ratio':>7}" + ("  video-s per wall-s" if unit_seconds else "")
    )
    for name, xs in times.items():
        line = f"{name:<30} {med(xs):9.2f} {min(xs):7.2f} {med(xs) / base:6.2f}x"
        if unit_seconds:
            line += f"  {unit_seconds / med(xs):8.1f}"
        print(line)
    for k, v in (extra or {}).items():
        print(f"{k}: {v}")
    if CPU and baseline in CPU:
        cbase = med(CPU[baseline])
        print(f"\n{'CPU (user+sys, process tree)':<30} {'median s':>9} {'ratio':>7}")
        for name, xs in CPU.items():
            print(f"{name:<30} {med(xs):9.2f} {med(xs) / cbase:6.2f}x")


def load_note() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}"


def children_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
