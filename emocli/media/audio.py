"""The audio track as mono float32 from the bundled ffmpeg: whole (short clips) or as a stream
of windows whose memory is bounded by the window, never by the length of the track."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from .hum import HumRemover
from .tools import MediaError, ffmpeg_command, ffmpeg_error

# Every track is read through this: a gap in its timestamps (packets lost in a recording)
# becomes silence, so what follows stays at its time.
FILL_GAPS = "aresample=async=1"


def _audio_command(path: str | Path, sample_rate: int, stream: int = -1, channels: int = 1) -> list[str]:
    """ffmpeg: audio stream ``stream`` (-1: the first), every channel mixed down to mono (to
    ``channels`` interleaved: 2 keeps a stereo pair for ``to_mono``), float32 at
    ``sample_rate``, on stdout, gaps filled (``FILL_GAPS``)."""
    source = f"0:{stream}" if stream >= 0 else "0:a:0"
    return ffmpeg_command(
        "-i",
        str(path),
        "-map",
        source,
        "-vn",
        "-af",
        FILL_GAPS,
        "-ac",
        str(channels),
        "-ar",
        str(sample_rate),
        "-f",
        "f32le",
        "-",
    )


def finite(samples: np.ndarray) -> np.ndarray:
    """``samples`` with NaN and infinite values (a broken float track) made silence."""
    if np.isfinite(samples).all():
        return samples
    return np.where(np.isfinite(samples), samples, np.float32(0))


class DCBlocker:
    """Takes a direct-current offset (a cheap microphone or sound card) out of a stream of
    samples, chunk by chunk: each sample less the mean of the ``seconds`` up to it. The voice's
    features move with an offset nobody hears, and the training corpora have none; speech,
    above 80 Hz, comes through within 2 %. After ``finite``: a broken sample is silence, never
    a mean that spoils the seconds after it."""

    PIECE = 1 << 20  # samples worked on at once: a long track costs no more memory than this

    def __init__(self, sample_rate: int, seconds: float = 0.25):
        self._n = max(1, round(sample_rate * seconds))
        self._tail = np.zeros(0)  # the last samples before the next chunk (float64)

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        if len(chunk) > self.PIECE:
            return np.concatenate([self(chunk[k : k + self.PIECE]) for k in range(0, len(chunk), self.PIECE)])
        if not len(chunk):
            return chunk
        joined = np.concatenate([self._tail, chunk.astype(np.float64)])
        sums = np.concatenate([[0.0], np.cumsum(joined)])
        end = np.arange(len(self._tail), len(joined)) + 1  # one past each of the chunk's samples
        start = np.maximum(0, end - self._n)
        self._tail = joined[len(joined) - min(len(joined), self._n - 1) :]
        return (chunk - (sums[end] - sums[start]) / (end - start)).astype(np.float32)


# A stereo pair's mix this much quieter than its louder channel is a pair out of phase (a
# microphone wired backwards on one side): the mix cancels the voice; the louder side keeps it.
# A real stereo recording, even a wide one, mixes to more than half its louder side.
CANCELLED = 0.25


def to_mono(pair: np.ndarray) -> np.ndarray:
    """Interleaved stereo samples as mono: mixed as ffmpeg does, or the louder channel where the mix
    cancels out (``CANCELLED``)."""
    pair = pair[: len(pair) - len(pair) % 2].reshape(-1, 2)
    mix = pair.sum(axis=1) * np.float32(np.sqrt(0.5))  # as ffmpeg mixes a stereo pair down
    sides = np.sqrt(np.mean(pair.astype(np.float64) ** 2, axis=0)) if len(pair) else np.zeros(2)
    if sides.max() > 1e-4 and np.sqrt(np.mean(mix.astype(np.float64) ** 2)) < CANCELLED * sides.max():
        return np.ascontiguousarray(pair[:, int(np.argmax(sides))])
    return mix


class MonoSamples:
    """A track's raw float32 samples, chunk by chunk, as the mono the models hear: broken
    samples silenced (``finite``), a stereo pair (``pair``: interleaved) mixed (``to_mono``),
    the offset blocked (``DCBlocker``), mains hum subtracted (``HumRemover``)."""

    def __init__(self, sample_rate: int, pair: bool = False):
        self._pair = pair
        self._dc_block = DCBlocker(sample_rate)
        self._hum = HumRemover(sample_rate)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        samples = finite(raw)
        return self._hum(self._dc_block(to_mono(samples) if self._pair else samples))


def read_audio(path: str | Path, sample_rate: int = 16_000, stream: int = -1) -> np.ndarray:
    """The whole audio track (``stream``; -1: the first) as mono float32 at ``sample_rate``
    (for short clips), non-finite samples silenced."""
    proc = subprocess.run(_audio_command(path, sample_rate, stream), capture_output=True, process_group=0)
    if proc.returncode != 0:
        raise MediaError(ffmpeg_error(Path(path), proc.stderr.decode(errors="replace")))
    return MonoSamples(sample_rate)(np.frombuffer(proc.stdout, dtype=np.float32).copy())


class AudioStream:
    """Windows of the audio track, read from one ffmpeg pipe, for increasing centre times.

    Only the samples that a later window can still need are kept, so memory is bounded
    by the window and the step between centres. ``offset`` (seconds) is where the track's
    first sample lies on the timeline: before it, as past its end, there is silence.
    Non-finite samples (a broken float track) are silence too.
    """

    CHUNK = 1 << 16  # bytes per read

    def __init__(
        self, path: str | Path, sample_rate: int = 16_000, stream: int = -1, offset: float = 0.0, channels: int = 1
    ):
        """``channels``: the stream's; a stereo pair is mixed here (``to_mono``), others by ffmpeg."""
        self.sample_rate = sample_rate
        self._pair = channels == 2
        self._mono = MonoSamples(sample_rate, self._pair)
        self._proc = subprocess.Popen(
            _audio_command(path, sample_rate, stream, 2 if self._pair else 1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
        )
        self._buf = np.zeros(0, np.float32)
        self._start = max(0, int(round(offset * sample_rate)))  # timeline sample index of _buf[0]
        self._eof = False
        self._pending = b""

    def _fill(self, until: int) -> None:
        parts = [self._buf]
        have = self._start + len(self._buf)
        while have < until and not self._eof:
            data = self._pending + self._proc.stdout.read(self.CHUNK)
            if len(data) == len(self._pending):
                self._eof = True
                break
            usable = len(data) - len(data) % (8 if self._pair else 4)
            self._pending = data[usable:]
            chunk = self._mono(np.frombuffer(data[:usable], np.float32))
            parts.append(chunk)
            have += len(chunk)
        if len(parts) > 1:
            self._buf = np.concatenate(parts)

    def window_start(self, center: float, seconds: float) -> int:
        """The stream sample at which ``window(center, seconds)`` begins (negative before 0)."""
        return int(round(center * self.sample_rate)) - int(round(seconds * self.sample_rate)) // 2

    def window(self, center: float, seconds: float) -> np.ndarray:
        """Samples of [center - seconds/2, center + seconds/2], zero-padded past the ends."""
        return self.samples(self.window_start(center, seconds), int(round(seconds * self.sample_rate)))

    def samples(self, begin: int, n: int) -> np.ndarray:
        """``n`` samples from stream sample ``begin`` on, zero-padded past the ends. Calls
        must not move ``begin`` backwards."""
        end = begin + n
        self._fill(end)
        out = np.zeros(n, np.float32)
        lo, hi = max(begin, self._start), min(end, self._start + len(self._buf))
        if hi > lo:
            out[lo - begin : hi - begin] = self._buf[lo - self._start : hi - self._start]
        # Windows only move forward: what lies before this one is never needed again.
        drop = min(len(self._buf), max(0, begin - self._start))
        if drop:
            self._buf = self._buf[drop:]
            self._start += drop
        return out

    def close(self) -> str:
        """Stop ffmpeg; returns its error text, if it had one."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
        self._proc.stdout.close()
        self._proc.stderr.close()
        return err.strip()

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
