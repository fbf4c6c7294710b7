"""Active-speaker detection: which visible face's mouth moves with the speech that is heard.

Per tracked face, a small grey patch around BlazeFace's mouth keypoint (eyes levelled) is
taken in every frame the decoder passes between the analysis's samples (the sampler's grey
``Frame.recent`` frames, about 15 a second, at their exact presentation times; the face's
place interpolated between where it was followed in the samples around them), or, from a
frame source without them, in the sampled frames alone. The loudness of the audio (log
energy over +-40 ms) is kept on a 10 ms grid. Over ``history`` seconds (in a file, those
centred on the interval, within the file; in a live stream, the last):

- a face's mouth *moves* when its patch changes between consecutive samples by more than a
  still face's compression noise;
- its *synchrony* is how much the patch changes from one sample to the next where the
  loudness changes between the same two instants (a correlation, both lightly smoothed),
  scored against the same correlation with the loudness shifted in time (circular shifts
  within the history): a z-score. A mouth opening and closing with the syllables that are
  heard stands out from its shifted copies; a mouth saying something else does not.

While speech is heard, the moving face with the highest synchrony speaks if that synchrony
reaches ``MIN_SYNC`` and beats every other moving mouth's by ``MIN_LEAD``; otherwise nobody
on screen does (an off-screen voice over still or talking faces; two mouths that move
alike with the sound). Where the history holds too few samples for a synchrony (a stream's first
moments, a frame source with no frames between its samples, a video of a few frames a
second), a single mouth that moves as a talking one does (``MIN_MOTION_ALONE``) speaks; of
several moving mouths, none is named (motion alone cannot tell which one is heard). numpy and
OpenCV only: about a tenth of a millisecond per face and frame.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .faces import LEFT_EYE, MOUTH, RIGHT_EYE, Face, frame_scale

PATCH_W, PATCH_H = 24, 16  # the mouth patch, pixels: 1.2 x 0.8 eye distances
LOUDNESS_HALF_S = 0.04  # loudness at an instant: RMS over +-40 ms (a syllable's vowel)
GRID_S = 0.01  # the loudness is kept on this grid; a frame's loudness is that of its nearest point
HISTORY_S = 3.0  # seconds of mouths and loudness a decision looks back over
SMOOTH = 3  # samples averaged (moving mean) in both signals before they are correlated

# Measured by benchmarks/av_validation.py --speaker (see the module docstring).
MIN_MOTION = 1.0  # grey levels per pixel between consecutive samples: above a still face's compression noise
MIN_SAMPLES = 25  # fewer mouth samples with loudness in the history: no synchrony, motion decides
# Where motion alone decides, it must be a talking mouth's: a still picture's sensor and
# compression noise between frames seconds apart is several times MIN_MOTION.
MIN_MOTION_ALONE = 5.0
MIN_SYNC = 1.25  # z-score of the synchrony against shifted loudness: below it, the voice is nobody's on screen
MIN_LEAD = 0.25  # z-score by which the best synchrony must beat the next moving mouth's: else they cannot be told apart
MIN_SHIFT = 4  # samples: the shifted loudness starts this far from the true one (syllables apart)


def _warp(image: np.ndarray, mouth, right, left, width: float) -> np.ndarray:
    """The PATCH_H x PATCH_W grey patch of ``image`` centred on ``mouth`` (points in its pixels),
    turned so the eyes are level."""
    import cv2

    if right is not None and left is not None:
        eyes = float(np.hypot(left[0] - right[0], left[1] - right[1]))
        angle = float(np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0])))
    else:
        eyes, angle = 0.4 * width, 0.0
    scale = PATCH_W / max(1.2 * eyes, 1.0)
    m = cv2.getRotationMatrix2D((float(mouth[0]), float(mouth[1])), angle, scale)
    m[0, 2] += PATCH_W / 2 - mouth[0]
    m[1, 2] += PATCH_H / 2 - mouth[1]
    patch = cv2.warpAffine(image, m, (PATCH_W, PATCH_H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if patch.ndim == 3:
        patch = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY)
    return patch.astype(np.float32)


def _points(face: Face) -> tuple:
    return face.keypoint(MOUTH), face.keypoint(RIGHT_EYE), face.keypoint(LEFT_EYE)


@dataclass
class Mouth:
    """A face's mouth as one sampled frame shows it: ``face`` where it was found there, at
    ``pts`` (None: unknown); ``patch`` from that frame, or, where the frame brought the grey
    frames decoded since the previous sample (``recent``), taken from those instead."""

    face: Face
    pts: float | None
    patch: np.ndarray | None
    recent: tuple = ()

    def samples(self, t: float, before: tuple[float, Face] | None) -> list[tuple[float, np.ndarray]]:
        """(time, patch) of this mouth: per grey frame, the face's place interpolated between
        ``before`` ((time, face) at the previous sample of its track) and here; else the patch
        at ``t`` (the sample's time where its presentation time is unknown)."""
        if self.patch is not None:
            return [(t if self.pts is None else self.pts, self.patch)]
        here = self.pts if self.pts is not None else t
        mouth, right, left = (np.asarray(p, np.float64) if p is not None else None for p in _points(self.face))
        prev = None
        if before is not None and 0 < here - before[0] <= 1.0:
            prev = tuple(np.asarray(p, np.float64) if p is not None else None for p in _points(before[1]))
        out = []
        for b in self.recent:
            pts = [mouth, right, left]
            if prev is not None and prev[0] is not None:
                w = min(1.0, max(0.0, (b.pts - before[0]) / (here - before[0])))
                pts = [p if q is None or p is None else q + w * (p - q) for p, q in zip(pts, prev)]
            pts = [None if p is None else p / b.scale for p in pts]
            out.append((b.pts, _warp(b.image, pts[0], pts[1], pts[2], self.face.w / b.scale)))
        return out


def mouth_patch(frame: np.ndarray, face: Face) -> Mouth | None:
    """The mouth of ``face`` in a sampled frame (BGR or grey; a sampler ``Frame`` brings the
    grey frames decoded before it); None when the detector gave no mouth keypoint."""
    mouth, right, left = _points(face)
    if mouth is None:
        return None
    recent = getattr(frame, "recent", None)
    pts = getattr(frame, "pts", None)
    if recent is None:
        k = frame_scale(frame)
        mouth, right, left = (None if p is None else (p[0] / k, p[1] / k) for p in (mouth, right, left))
        return Mouth(face, pts, _warp(frame, mouth, right, left, face.w / k))
    return Mouth(face, pts, None, tuple(recent))


class Loudness(float):
    """The loudness at one instant (log energy), with the whole window's on the GRID_S grid
    (``track``: the index of its first grid point and the values)."""

    track: tuple[int, np.ndarray]


def loudness(window: np.ndarray, start: float, times: list[float], sample_rate: int) -> list[Loudness | None]:
    """Log energy of ``window`` (audio whose first sample is at ``start`` seconds) around each
    time; None for a time the window does not cover. Each value carries the window's loudness
    on the grid (``Loudness.track``), which the detector reads at its frames' own times."""
    half = int(round(LOUDNESS_HALF_S * sample_rate))
    hop = GRID_S * sample_rate
    first_sample = int(round(start * sample_rate))
    sq = np.concatenate([[0.0], np.cumsum(window.astype(np.float64) ** 2)])
    k0 = int(np.ceil((first_sample + half) / hop))
    k1 = int(np.floor((first_sample + len(window) - half) / hop))
    centres = np.round(np.arange(k0, k1 + 1) * hop).astype(np.int64) - first_sample
    track = (k0, np.log((sq[centres + half] - sq[centres - half]) / (2 * half) + 1e-10))
    out: list[Loudness | None] = []
    for t in times:
        c = int(round((t - start) * sample_rate))
        lo, hi = c - half, c + half
        if lo < 0 or hi > len(window):
            out.append(None)
            continue
        value = Loudness(np.log((sq[hi] - sq[lo]) / (hi - lo) + 1e-10))
        value.track = track
        out.append(value)
    return out


def _smooth(x: np.ndarray) -> np.ndarray:
    return np.convolve(x, np.ones(SMOOTH) / SMOOTH, mode="valid") if len(x) >= SMOOTH else x


def _sync(change: np.ndarray, loud: np.ndarray) -> float:
    """How far the correlation of the mouth's change with the loudness's change stands above
    its correlations with the loudness shifted in time (standard deviations)."""
    m, d = _smooth(change), _smooth(np.abs(np.diff(loud)))
    n = len(m)
    shifts = np.concatenate([[0], np.arange(MIN_SHIFT, n - MIN_SHIFT + 1)])
    if len(shifts) < 4 or m.std() < 1e-6 or d.std() < 1e-6:
        return 0.0
    # Circular shifts keep the loudness's own statistics: the mean and spread of d are the
    # same in every row, so one normalisation serves all.
    rolled = (d - d.mean())[(np.arange(n)[None, :] - shifts[:, None]) % n]
    mc = m - m.mean()
    r = rolled @ mc / (np.linalg.norm(rolled[0]) * np.linalg.norm(mc) + 1e-12)
    null = r[1:]
    return float((r[0] - null.mean()) / (null.std() + 1e-6))


class SpeakerDetector:
    """Keeps each track's mouth samples and the loudness for ``history`` seconds, and says
    who speaks over them: at their end (a live stream), or, where the samples after an
    instant are there too (a file), over the ``history`` seconds centred on it
    (``centred``)."""

    def __init__(self, history: float = HISTORY_S):
        self.history = history
        self.mouths: dict[int, deque] = {}  # face id -> (time, patch), in time order
        self.last: dict[int, tuple[float, Face]] = {}  # face id -> where its mouth was last sampled
        self.loud: deque = deque()  # (time, log energy) at the sampled frames
        self.grid: dict[int, float] = {}  # GRID_S index -> log energy
        self._track = None

    def add_loudness(self, t: float, value: float | None) -> None:
        if value is None:
            return
        self.loud.append((t, float(value)))
        track = getattr(value, "track", None)
        if track is not None and track is not self._track:
            self._track = track
            k0, values = track
            self.grid.update(zip(range(k0, k0 + len(values)), values.tolist()))

    def add_mouth(self, face_id: int, t: float, mouth: Mouth | np.ndarray | None) -> None:
        """``mouth``: from ``mouth_patch`` (or a bare patch, seen at ``t``)."""
        if mouth is None:
            return
        q = self.mouths.setdefault(face_id, deque())
        # Patches are kept less their mean brightness: a mouth's shape, not the light on it.
        if isinstance(mouth, np.ndarray):
            q.append((t, mouth - mouth.mean()))
            return
        last = q[-1][0] if q else -np.inf
        for pts, patch in mouth.samples(t, self.last.get(face_id)):
            if pts > last + 1e-6:
                q.append((pts, patch - patch.mean()))
                last = pts
        self.last[face_id] = (t if mouth.pts is None else mouth.pts, mouth.face)

    def forget(self, before: float) -> None:
        """Let go of what was seen and heard before ``before``: no later decision starts
        earlier. Called every interval, speech or not, so memory stays that of ``history``
        seconds however long a silent stretch lasts."""
        cut = before - 1e-6
        for q in (self.loud, *self.mouths.values()):
            while q and q[0][0] < cut:
                q.popleft()
        for fid in [fid for fid, q in self.mouths.items() if not q and self.last.get(fid, (np.inf,))[0] < cut]:
            del self.mouths[fid], self.last[fid]  # a face gone for longer than the history
        low = int(np.floor(cut / GRID_S)) - 1
        for k in [k for k in self.grid if k < low]:
            del self.grid[k]

    def _energy(self, t: float) -> float | None:
        return self.grid.get(int(round(t / GRID_S)))

    def scores(self, ids: list[int], now: float, start: float | None = None) -> dict[int, tuple[float, float, int]]:
        """(motion, synchrony, samples) per face id over ``start`` (default: ``history``
        before ``now``) to ``now``; synchrony is NaN where fewer than MIN_SAMPLES samples have
        a loudness. Samples before ``start`` are let go: later calls must not start earlier."""
        self.forget(now - self.history if start is None else start)
        out = {}
        for fid in ids:
            samples = [s for s in self.mouths.get(fid, ()) if s[0] <= now + 1e-6]
            if len(samples) < 2:
                out[fid] = (0.0, float("nan"), len(samples))
                continue
            patches = np.stack([p for _, p in samples])
            steps = np.abs(np.diff(patches, axis=0)).mean(axis=(1, 2))
            motion = float(steps.mean())
            energy = [self._energy(t) for t, _ in samples]
            heard = [i for i, e in enumerate(energy) if e is not None]
            sync = float("nan")
            if len(heard) >= MIN_SAMPLES:
                if len(heard) < len(samples):  # a gap in the loudness: changes between the samples heard
                    steps = np.abs(np.diff(patches[heard], axis=0)).mean(axis=(1, 2))
                sync = _sync(steps, np.array([energy[i] for i in heard]))
            out[fid] = (motion, sync, len(heard))
        return out

    def centred(self, t: float, duration: float) -> tuple[float, float]:
        """The ``history`` seconds centred on ``t``, moved to lie within ``[0, duration]``:
        a decision at a video's first or last moments looks at its first or last seconds
        rather than at fewer."""
        start = min(max(0.0, t - self.history / 2), max(0.0, duration - self.history))
        return start, min(start + self.history, duration)

    def speaking(self, ids: list[int], now: float, start: float | None = None) -> dict[int, bool]:
        """Which of ``ids`` speaks in the speech heard from ``start`` (default: ``history``
        before ``now``) to ``now``: at most one. Every face whose mouth was seen then is
        compared, so a speaker missing from ``ids`` (not found in this interval) is still the
        one whose mouth moves with the speech, and no one of ``ids`` is named in its place."""
        scores = self.scores(sorted(set(ids) | set(self.mouths)), now, start)
        moving = {fid: s for fid, s in scores.items() if s[0] >= MIN_MOTION}
        measured = {fid: s for fid, s in moving.items() if s[1] == s[1]}
        speaker = None
        if measured:
            best, *others = sorted(measured, key=lambda fid: -measured[fid][1])
            lead = measured[best][1] - max((measured[fid][1] for fid in others), default=-np.inf)
            speaker = best if measured[best][1] >= MIN_SYNC and lead >= MIN_LEAD else None
        elif len(moving) == 1 and next(iter(moving.values()))[0] >= MIN_MOTION_ALONE:
            (speaker,) = moving
        return {fid: fid == speaker for fid in ids}
