"""Mains hum taken out of a track before the voice-activity detector and the voice model hear it.

A ground loop or a lamp's dimmer puts a steady tone at the mains frequency (50 or 60 Hz) and
its harmonics under everything a microphone records. The voice model was trained on studio
speech and hears hum as emotion (mostly sadness), so each line is found, fitted as a sinusoid
and subtracted: speech loses only the sliver of its spectrum at that exact frequency.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

MAINS_HZ = (50.0, 60.0)
HARMONICS = 8  # per mains frequency: up to 400 and 480 Hz
TOLERANCE = 0.01  # a grid runs within 1 % of its nominal frequency
LINE_DB = 15.0  # a line this far above the spectrum 4-15 Hz around it is hum: speech glides
WINDOW_S = 1.0  # how much of the recording each fit sees
MIN_S = 0.5  # the least a fit needs: lines 10 Hz apart stay apart
REFIT_S = 0.5  # a stream delivered in small pieces is refitted this often, extrapolated between
PAD = 8  # zero padding of the spectrum that places each line to an eighth of its bin


class HumRemover:
    """Takes mains hum out of a stream of samples, chunk by chunk, with no look-ahead. Each fit
    looks at the last ``WINDOW_S`` of the stream for steady lines near 50 and 60 Hz and their
    harmonics (``LINE_DB`` above their surroundings), places each line's frequency, fits a
    sinusoid to each by least squares and subtracts them. A stream without hum passes
    unchanged, at the cost of one short spectrum per fit."""

    def __init__(self, sample_rate: int):
        self._sr = sample_rate
        self._window = max(1, round(WINDOW_S * sample_rate))
        self._refit = max(1, round(REFIT_S * sample_rate))
        self._tail = np.zeros(0)  # the last samples seen, up to a window (float64)
        self._seen = 0  # samples seen so far
        self._stale = self._refit  # samples since the last fit
        self._lines = np.zeros(0)  # Hz
        self._coef = np.zeros(0)  # cosine and sine amplitude of each line
        self._origin = 0  # the stream sample at which the fit's time is 0

    @property
    def lines(self) -> np.ndarray:
        """The frequencies (Hz) subtracted from the last chunk; empty where there was no hum."""
        return self._lines

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        if len(chunk) > self._window:
            pieces = range(0, len(chunk), self._window)
            return np.concatenate([self(chunk[k : k + self._window]) for k in pieces])
        if not len(chunk):
            return chunk
        self._tail = np.concatenate([self._tail, chunk.astype(np.float64)])[-self._window :]
        start = self._seen
        self._seen += len(chunk)
        self._stale += len(chunk)
        if self._stale >= self._refit:
            self._fit()
        if not len(self._lines):
            return chunk
        return (chunk - self._sinusoids(start, len(chunk)) @ self._coef).astype(np.float32)

    def _fit(self) -> None:
        self._stale = 0
        self._origin = self._seen - len(self._tail)
        if len(self._tail) < MIN_S * self._sr:
            self._lines = np.zeros(0)
            return
        self._lines = find_lines(self._tail, self._sr)
        if len(self._lines):
            basis = self._sinusoids(self._origin, len(self._tail))
            self._coef = np.linalg.lstsq(basis, self._tail, rcond=None)[0]

    def _sinusoids(self, start: int, n: int) -> np.ndarray:
        """Cosine and sine of each line at stream samples ``start`` to ``start + n``."""
        t = (start - self._origin + np.arange(n)) / self._sr
        phase = 2 * np.pi * t[:, None] * self._lines[None, :]
        return np.concatenate([np.cos(phase), np.sin(phase)], axis=1)


CANDIDATES_HZ = np.unique([base * k for base in MAINS_HZ for k in range(1, HARMONICS + 1)])


def _peaks(power: np.ndarray, hz_per_bin: float) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate frequency, where its strongest bin within ``TOLERANCE`` lies (Hz,
    parabolic interpolation of the log power) and how far it stands above its surroundings
    (dB: against the median of the bins 4-15 Hz to either side)."""
    lo = np.floor(CANDIDATES_HZ * (1 - TOLERANCE) / hz_per_bin).astype(int)
    hi = np.ceil(CANDIDATES_HZ * (1 + TOLERANCE) / hz_per_bin).astype(int)
    search = lo[:, None] + np.arange((hi - lo).max() + 1)
    inside = search <= hi[:, None]
    peak = lo + np.argmax(np.where(inside, power[np.minimum(search, len(power) - 1)], -1.0), axis=1)
    near, far = max(1, round(4 / hz_per_bin)), max(2, round(15 / hz_per_bin))
    sides = np.concatenate([-np.arange(near, far), np.arange(near, far)])
    floor = np.median(power[peak[:, None] + sides], axis=1)
    a, b, c = (np.log(power[peak + k] + 1e-30) for k in (-1, 0, 1))
    curve = a - 2 * b + c
    shift = np.where(curve < 0, 0.5 * (a - c) / np.where(curve < 0, curve, -1.0), 0.0)
    # A peak on the edge of its range is the skirt of a line outside it, not a line.
    db = np.where((peak > lo) & (peak < hi), 10 * np.log10((power[peak] + 1e-30) / (floor + 1e-30)), -np.inf)
    return (peak + shift) * hz_per_bin, db


@lru_cache(maxsize=4)
def _hann(n: int) -> np.ndarray:
    return np.hanning(n)


def find_lines(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """The mains lines (Hz) standing ``LINE_DB`` above the spectrum around them in ``samples``
    (at least ``MIN_S`` long): a plain spectrum screens, a padded one places the lines."""
    n = len(samples)
    tapered = samples * _hann(n)
    # An unpadded bin can split a line in two: screen 4 dB lower than the padded test.
    if _peaks(np.abs(np.fft.rfft(tapered)) ** 2, sample_rate / n)[1].max() < LINE_DB - 4:
        return np.zeros(0)
    hz, db = _peaks(np.abs(np.fft.rfft(tapered, PAD * n)) ** 2, sample_rate / (PAD * n))
    lines: list[float] = []
    for f in np.sort(hz[db > LINE_DB]):  # 300 Hz is both grids' harmonic: one line
        if not lines or f - lines[-1] > 1.0:
            lines.append(f)
    return np.asarray(lines)
