"""Live: latency and CPU share of `emocli live` on a 720p stream at 1 s intervals.

    .venv/bin/python benchmarks/live_latency.py [--seconds 30] [--interval 1.0] [--annotate]

Serves the cached 1280x720 talking-face video (benchmarks/.cache, built by _common) over
HTTP on the loopback with the bundled ffmpeg in real time (-re, copied, as a camera's
encoder would send it), and runs `emocli live URL` with the shipped models on it. Reports
  lag           per interval, from the arrival of the interval's end at emocli to its rows
                flushed to the CSV (what emocli prints), mean / median / max
  CPU           user + system seconds of emocli and its ffmpeg (sampled from /proc), over
                the wall time of the stream: the share of one core, and of the machine
  skipped       intervals dropped to stay live (0 when the machine keeps up)
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, emocli_cmd, ffmpeg, talking_video  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_by_pid(sid: int) -> dict[int, float]:
    """CPU seconds (user + system, the process's own) of every process in session ``sid``."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[3]) == sid:
            out[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="stream length served")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--annotate", action="store_true", help="also write the annotated MP4")
    args = ap.parse_args()

    video = talking_video(60.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [ffmpeg(), "-v", "error", "-re", "-t", f"{args.seconds:g}", "-i", str(video), "-c", "copy"]
        + ["-f", "mpegts", "-listen", "1", url],
        stdin=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    out = Path(tempfile.mkdtemp(prefix="emocli-live-"))
    cmd = [*emocli_cmd(), "live", url, "-o", str(out), "--name", "bench", "--interval", f"{args.interval:g}"]
    cmd += ["--face-model", str(ROOT / "export" / "face.onnx"), "--voice-model", str(ROOT / "export" / "voice.onnx")]
    if args.annotate:
        cmd.append("--annotate")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append((time.monotonic(), line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    cpu: dict[int, float] = {}
    first = None  # CPU and clock when the first interval line came (models loaded, stream flowing)
    while proc.poll() is None:
        cpu.update(_cpu_by_pid(proc.pid))
        if first is None and any(" s: " in text for _, text in lines):
            first = (time.monotonic(), sum(cpu.values()))
        time.sleep(0.2)
    end = (max(t for t, _ in lines) if lines else time.monotonic(), sum(cpu.values()))
    reader.join(timeout=5)
    server.kill()
    server.wait()
    err = proc.stderr.read()
    if proc.returncode != 0 or first is None:
        sys.exit(f"emocli live failed ({proc.returncode}): {err}")
    lags = sorted(float(m.group(1)) for _, text in lines if (m := re.search(r", lag ([\d.]+) s$", text)))
    wall, used = end[0] - first[0], end[1] - first[1]
    cores = os.cpu_count() or 1
    skipped = re.search(r"\((\d+) skipped", lines[-1][1])
    print(
        f"stream: {video.name} (1280x720, 29.97 fps), {args.seconds:g} s served over HTTP, interval {args.interval:g} s"
    )
    print(f"intervals: {len(lags)}, skipped: {skipped.group(1) if skipped else 0}")
    print(f"lag: mean {sum(lags) / len(lags):.2f} s, median {lags[len(lags) // 2]:.2f} s, max {lags[-1]:.2f} s")
    print(
        f"CPU while streaming: {used:.1f} s over {wall:.1f} s = {100 * used / wall:.0f}% of one core, "
        f"{100 * used / wall / cores:.0f}% of this machine's {cores} cores (emocli and its ffmpeg)"
    )
    if err.strip():
        print(f"stderr: {err.strip()}")


if __name__ == "__main__":
    main()
