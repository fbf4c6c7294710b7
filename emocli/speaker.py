"""Active-speaker detection: which visible face's mouth moves with the speech that is heard.

Per tracked face, a small grey patch around BlazeFace's mouth keypoint (eyes levelled) is
kept for every sampled frame; per frame, the loudness of the audio at that instant. Over
the last ``history`` seconds a face's mouth *moves* when its patch changes between
consecutive samples by more than a still face's compression noise. While speech is heard:
no moving mouth, nobody speaks (an off-screen voice over listening faces); one, it speaks;
several, the one whose departure from its shape in the quietest moments rises and falls
with the loudness (correlation over the history) speaks. numpy and OpenCV only: a few
tenths of a millisecond per face and frame.

Thresholds and the choice of cues are measured by benchmarks/av_validation.py
``--speaker`` on side-by-side CREMA-D clips. Telling two moving mouths apart is the weak
part: at the pipeline's three frames a second, each on a decoder reference frame tens of
milliseconds off its nominal time, little of the fine timing a synchrony measure needs is
left.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .faces import LEFT_EYE, MOUTH, RIGHT_EYE, Face

PATCH_W, PATCH_H = 24, 16  # the mouth patch, pixels: 1.2 x 0.8 eye distances
LOUDNESS_HALF_S = 0.04  # loudness at an instant: RMS over +-40 ms (a syllable's vowel)

# Measured by benchmarks/av_validation.py --speaker (see the module docstring).
MIN_MOTION = 2.0  # grey levels per pixel between samples: above a still face's compression noise, below a talking mouth
MIN_SAMPLES = 5  # fewer sampled frames with loudness in the history: no correlation, motion decides


def mouth_patch(frame: np.ndarray, face: Face) -> np.ndarray | None:
    """The mouth region of ``face`` in a frame (BGR or grey), eyes levelled, as grey
    PATCH_H x PATCH_W float32; None when the detector gave no mouth keypoint."""
    import cv2

    mouth = face.keypoint(MOUTH)
    if mouth is None:
        return None
    right, left = face.keypoint(RIGHT_EYE), face.keypoint(LEFT_EYE)
    if right is not None and left is not None:
        eyes = float(np.hypot(left[0] - right[0], left[1] - right[1]))
        angle = float(np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0])))
    else:
        eyes, angle = 0.4 * face.w, 0.0
    scale = PATCH_W / max(1.2 * eyes, 1.0)
    m = cv2.getRotationMatrix2D(mouth, angle, scale)
    m[0, 2] += PATCH_W / 2 - mouth[0]
    m[1, 2] += PATCH_H / 2 - mouth[1]
    patch = cv2.warpAffine(frame, m, (PATCH_W, PATCH_H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if patch.ndim == 3:
        patch = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY)
    return patch.astype(np.float32)


def loudness(window: np.ndarray, start: float, times: list[float], sample_rate: int) -> list[float | None]:
    """Log energy of ``window`` (audio whose first sample is at ``start`` seconds) around each
    time; None for a time the window does not cover."""
    half = int(round(LOUDNESS_HALF_S * sample_rate))
    out: list[float | None] = []
    for t in times:
        c = int(round((t - start) * sample_rate))
        lo, hi = c - half, c + half
        if lo < 0 or hi > len(window):
            out.append(None)
            continue
        seg = window[lo:hi].astype(np.float64)
        out.append(float(np.log(np.mean(seg * seg) + 1e-10)))
    return out


def _sync(patches: np.ndarray, energy: np.ndarray) -> float:
    """Correlation between how far the mouth is from its shape in the quietest quarter of the
    samples (closed, at rest) and the loudness: an open mouth goes with a loud vowel."""
    quiet = np.argsort(energy)[: max(1, len(energy) // 4)]
    away = np.abs(patches - patches[quiet].mean(axis=0)).mean(axis=(1, 2))
    if away.std() < 1e-6 or energy.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(away, energy)[0, 1])


class SpeakerDetector:
    """Keeps each track's mouth patches and the loudness for ``history`` seconds, and says
    who speaks at the end of it."""

    def __init__(self, history: float = 2.0):
        self.history = history
        self.mouths: dict[int, deque] = {}
        self.loud: deque = deque()

    def add_loudness(self, t: float, value: float | None) -> None:
        if value is not None:
            self.loud.append((t, value))

    def add_mouth(self, face_id: int, t: float, patch: np.ndarray | None) -> None:
        if patch is None:
            return
        self.mouths.setdefault(face_id, deque()).append((t, patch))

    def _trim(self, now: float) -> None:
        cut = now - self.history - 1e-6
        for q in (self.loud, *self.mouths.values()):
            while q and q[0][0] < cut:
                q.popleft()

    def scores(self, ids: list[int], now: float) -> dict[int, tuple[float, float]]:
        """(motion, sync) per face id over the history that ends at ``now``."""
        self._trim(now)
        loud = dict(self.loud)
        out = {}
        for fid in ids:
            samples = [(t, p) for t, p in self.mouths.get(fid, ()) if t <= now + 1e-6]
            if len(samples) < 2:
                out[fid] = (0.0, 0.0)
                continue
            patches = np.stack([p - p.mean() for _, p in samples])
            motion = float(np.abs(np.diff(patches, axis=0)).mean())
            paired = [(loud[t], p) for (t, _), p in zip(samples, patches) if t in loud]
            sync = 0.0
            if len(paired) >= MIN_SAMPLES:
                sync = _sync(np.stack([p for _, p in paired]), np.array([e for e, _ in paired]))
            out[fid] = (motion, sync if len(paired) >= MIN_SAMPLES else float("nan"))
        return out

    def speaking(self, ids: list[int], now: float) -> dict[int, bool]:
        """Which of ``ids`` speaks in the speech heard up to ``now``: at most one."""
        scores = self.scores(ids, now)
        moving = {fid: s for fid, s in scores.items() if s[0] >= MIN_MOTION}
        speaker = None
        if moving:
            # Synchrony where it was measured, else (the first moments of a video) motion.
            speaker = max(
                moving,
                key=lambda fid: (
                    moving[fid][1] == moving[fid][1],
                    np.nan_to_num(moving[fid][1], nan=-1.0),
                    moving[fid][0],
                ),
            )
        return {fid: fid == speaker for fid in ids}
