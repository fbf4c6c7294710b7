"""What ``emocli live`` writes as it goes: the timeline CSV row by row, the annotated
fragmented MP4 frame by frame, and the boxes and labels drawn on a frame."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import numpy as np

from .labels import LABELS
from .media.stream import AudioBuffer
from .media.tools import ffmpeg_command
from .timeline import COLUMNS, Row


class LiveCsv:
    """The timeline CSV, opened once (never over an existing file), a header, then rows
    appended and flushed interval by interval, cells as ``Timeline.write_csv`` writes them."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "x", newline="", encoding="utf-8")
        self._out = csv.writer(self._file, lineterminator="\n")
        self._out.writerow(COLUMNS)
        self._file.flush()

    def write(self, rows: list[Row]) -> None:
        self._out.writerows(row.to_cells() for row in rows)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class LiveVideo:
    """The annotated picture and the sound (16 kHz mono, AAC) as fragmented MP4 (H.264),
    written by ffmpeg as frames come: every fragment is playable, so the file is too,
    whenever the run stops. Frame ``n`` is at ``n / rate`` s, as in the stream; the sound is
    fed in step with the frames, so neither of ffmpeg's inputs waits on the other."""

    def __init__(self, path: Path, size: tuple[int, int], rate: float, audio: AudioBuffer | None):
        w, h = size
        self.path, self.rate, self.next = path, rate, 0
        self.audio, self.heard = audio, 0  # samples of sound written
        self._last: np.ndarray | None = None
        sound: list[str] = []
        read = None
        if audio is not None:
            read, write = os.pipe()
            sound = ["-f", "f32le", "-ar", str(audio.sample_rate), "-ac", "1", "-i", f"pipe:{read}"]
        cmd = ffmpeg_command(
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgr24",
            "-s",
            f"{w}x{h}",
            "-r",
            f"{rate:.9g}",
            "-i",
            "pipe:0",
            *sound,
            "-map",
            "0:v",
            *(["-map", "1:a", "-c:a", "aac", "-b:a", "64k"] if sound else []),
            "-vf",
            "pad=ceil(iw/2)*2:ceil(ih/2)*2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            str(max(1, round(rate))),  # a keyframe, hence a fragment, every second
            "-movflags",
            "frag_keyframe+empty_moov+default_base_moof",
            "-f",
            "mp4",
            str(path),
        )
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            pass_fds=(read,) if read is not None else (),
            process_group=0,
        )
        self._sound = None
        if read is not None:
            os.close(read)
            self._sound = os.fdopen(write, "wb", buffering=0)

    def write(self, n: int, frame: np.ndarray) -> None:
        """Frame ``n`` of the grid; frames that never came are the one before, repeated."""
        if n < self.next:
            return
        try:
            while self.next <= n:
                self._proc.stdin.write(
                    np.ascontiguousarray(frame if self.next == n or self._last is None else self._last).tobytes()
                )
                self.next += 1
                self._hear(self.next / self.rate)
        except (BrokenPipeError, ValueError):
            return
        self._last = frame

    def _hear(self, until: float) -> None:
        """The sound up to ``until`` s (silence where none was heard)."""
        if self._sound is None:
            return
        end = round(until * self.audio.sample_rate)
        if end > self.heard:
            self._sound.write(self.audio.window(self.heard, end - self.heard).tobytes())
            self.heard = end

    def close(self) -> None:
        for pipe in (self._proc.stdin, self._sound):
            try:
                if pipe is not None:
                    pipe.close()
            except BrokenPipeError:
                pass
        self._proc.wait()


def draw(frame: np.ndarray, rows: list[Row], t: float | None = None) -> np.ndarray:
    """``frame`` with the faces of ``rows`` (one interval's) boxed and tagged, and the voice's label;
    boxes where each face was followed nearest ``t``. Tags are text on a patch of the label's
    colour, as ``process --annotate`` draws them."""
    import cv2

    from .outputs import COLOURS, dark_ink, face_tag

    out = frame.copy()
    scale = max(0.4, min(out.shape[:2]) / 700)
    thick = max(1, round(2 * scale))

    def tag(text: str, label: str, x: int, bottom: int, size: float) -> None:
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, size, thick)
        bottom = max(bottom, h + base + 2)
        cv2.rectangle(out, (x, bottom - h - base - 2), (x + w + 4, bottom), tuple(reversed(COLOURS[label])), -1)
        ink = (0, 0, 0) if dark_ink(label) else (255, 255, 255)
        cv2.putText(out, text, (x + 2, bottom - base), cv2.FONT_HERSHEY_SIMPLEX, size, ink, thick, cv2.LINE_AA)

    for r in rows:
        if not r.face:
            continue
        x, y, w, h = r.face.box
        if t is not None and r.face.track:
            _, x, y, w, h = min(r.face.track, key=lambda p: abs(p[0] - t))
        label, text = face_tag(r)
        cv2.rectangle(out, (x, y), (x + w, y + h), tuple(reversed(COLOURS[label])), thick)
        tag(text, label, x, y - thick, 0.5 * scale)
    if rows and rows[0].voice_active and rows[0].voice:
        label = rows[0].voice.label
        tag(f"voice {label}", label, 8, out.shape[0] - 8, 0.6 * scale)
    return out


def fused_label(rows: list[Row]) -> str:
    """The interval in one word: the speaker's fused emotion, else the mean of its rows' fused
    probabilities (every face, or the voice alone); '-' when there is none."""
    speaker = [r for r in rows if r.face and r.face.speaking and r.fused]
    if speaker:
        return speaker[0].fused.label
    probs = [r.fused.p for r in rows if r.fused]
    return LABELS[int(np.argmax(np.mean(probs, axis=0)))] if probs else "-"
