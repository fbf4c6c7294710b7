"""Voice-activity detection: Silero VAD v6, the probability of speech in every 32 ms of audio.

The model is Silero's "sequence" ONNX export (``assets/silero_vad_16k_sequence.onnx``, MIT,
from the silero-vad 6.2.3 wheel, whose Python package itself needs torch). One onnxruntime
call scores a block of frames and carries the LSTM state to the next block, with the same
probabilities as the streaming model fed frame by frame, at a small fraction of the cost.
A trained detector, unlike an energy gate, tells speech from noise, music, hum and tones.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
FRAME = 512  # samples per probability: 32 ms
CONTEXT = 64  # samples of the previous frame the model sees before each frame
FRAME_S = FRAME / SAMPLE_RATE
MODEL = Path(__file__).resolve().parent / "assets" / "silero_vad_16k_sequence.onnx"

# A frame is speech at this probability (Silero's own default); an interval's audio
# window is voiced when at least MIN_SPEECH_FRACTION of its frames are speech, so a
# word or two at the window's edge does not make the whole window speech.
DEFAULT_THRESHOLD = 0.5
MIN_SPEECH_FRACTION = 0.2


class SpeechDetector:
    """The Silero model, loaded once; ``track()`` follows one audio stream."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, min_fraction: float = MIN_SPEECH_FRACTION):
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"the VAD threshold must be within (0, 1), not {threshold}")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])
        self.threshold, self.min_fraction = threshold, min_fraction

    def run(self, frames: np.ndarray, state: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, tuple]:
        """Probabilities of ``(n, CONTEXT + FRAME)`` frames, from and to the LSTM ``state``."""
        probs, h, c = self.session.run(None, {"input": frames, "h": state[0], "c": state[1]})
        return np.asarray(probs, np.float32).reshape(-1), (h, c)

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability of every whole 32 ms frame of a 16 kHz mono signal."""
        track = self.track()
        return track.window(np.asarray(audio, np.float32), 0)

    def speech_level(self, audio: np.ndarray) -> float | None:
        """The level of a whole 16 kHz mono signal's speech (``SpeechTrack.speech_level``)."""
        track = self.track()
        track.window(np.asarray(audio, np.float32), 0)
        return track.speech_level

    def is_voiced(self, probs: np.ndarray) -> bool:
        return len(probs) > 0 and float(np.mean(probs >= self.threshold)) >= self.min_fraction

    def track(self) -> SpeechTrack:
        return SpeechTrack(self)


@lru_cache(maxsize=1)
def default_detector() -> SpeechDetector:
    """A detector at the default threshold, loaded once per process (clip by clip scoring)."""
    return SpeechDetector()


def _initial_state() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32)


class SpeechTrack:
    """Frame probabilities of one stream, computed once as windows moving forward reveal it.

    Frame ``k`` covers samples ``[k * FRAME, (k + 1) * FRAME)`` of the stream. Overlapping
    windows share their frames; a gap between windows restarts the model's state there.
    """

    def __init__(self, detector: SpeechDetector):
        self.detector = detector
        self._state = _initial_state()
        self._context = np.zeros(CONTEXT, np.float32)
        self._next = 0  # the first frame not scored yet
        self._first = 0  # frame index of _probs[0]
        self._probs = np.zeros(0, np.float32)
        self.speech_frames = 0  # frames at or above the threshold, over the whole stream
        self._speech_power = 0.0  # their summed mean squares

    def window(self, samples: np.ndarray, begin: int) -> np.ndarray:
        """Probabilities of the whole frames inside ``samples``, which start at stream sample ``begin``.

        Windows must not move backwards. Non-finite samples count as silence.
        """
        samples = np.nan_to_num(np.asarray(samples, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        first = math.ceil(max(begin, 0) / FRAME)
        last = (begin + len(samples)) // FRAME
        if first > self._next:  # a gap: nothing before `first` was heard
            self._state, self._next = _initial_state(), first
            self._context = np.zeros(CONTEXT, np.float32)
            offset = first * FRAME - begin
            if offset >= CONTEXT:
                self._context = samples[offset - CONTEXT : offset].copy()
            self._first, self._probs = first, np.zeros(0, np.float32)
        if last > self._next:
            offset = self._next * FRAME - begin
            frames = samples[offset : offset + (last - self._next) * FRAME].reshape(-1, FRAME)
            contexts = np.concatenate([self._context[None], frames[:-1, -CONTEXT:]])
            probs, self._state = self.detector.run(np.concatenate([contexts, frames], axis=1), self._state)
            self._context = frames[-1, -CONTEXT:].copy()
            speech = probs >= self.detector.threshold
            self.speech_frames += int(np.sum(speech))
            self._speech_power += float(np.sum(np.mean(np.square(frames[speech], dtype=np.float64), axis=1)))
            self._probs = np.concatenate([self._probs, probs])
            self._next = last
        keep = max(0, first - self._first)  # earlier frames are never asked for again
        self._probs, self._first = self._probs[keep:], self._first + keep
        return self._probs[: max(0, last - self._first)]

    @property
    def speech_s(self) -> float:
        return self.speech_frames * FRAME_S

    @property
    def speech_level(self) -> float | None:
        """dBFS of the speech heard so far: the mean power of the frames called speech (None
        before any). What a listener calls the recording's level, whatever its pauses and noise."""
        if not self.speech_frames:
            return None
        return 10.0 * math.log10(max(self._speech_power / self.speech_frames, 1e-12))

    @property
    def heard_until(self) -> int:
        """The stream sample up to which frames have been scored."""
        return self._next * FRAME
