"""Faces: mediapipe's full-range BlazeFace detector, FER-style crops, and tracking."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets"
DETECTOR_MODEL = ASSETS / "face_detection_full_range_sparse.tflite"  # from mediapipe 0.10.21, Apache-2.0


# mediapipe's package import loads every task; these pull matplotlib.pyplot (drawing) and
# sounddevice (audio) and are never used here: they load on first use instead.
_DEFERRED = frozenset(
    {
        "mediapipe.tasks.python.vision.drawing_utils",
        "mediapipe.tasks.python.vision.drawing_styles",
        "mediapipe.tasks.python.audio",
    }
)


class _Deferred(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports the ``_DEFERRED`` modules as stand-ins that load the real module on first use."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in _DEFERRED else None

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        name = module.__name__

        def __getattr__(attr):
            if sys.modules.get(name) is module:
                del sys.modules[name]
            return getattr(importlib.import_module(name), attr)

        module.__getattr__ = __getattr__


def _import_mediapipe():
    # mediapipe imports TensorFlow only for its docs helpers; hiding TF cuts the import
    # from ~8 s to ~1 s and keeps inference free of TensorFlow; deferring its drawing and
    # audio modules takes another ~1 s off (0.3 s in all).
    hidden = "tensorflow" not in sys.modules
    if hidden:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]
    deferred = _Deferred() if "mediapipe" not in sys.modules else None
    if deferred is not None:
        sys.meta_path.insert(0, deferred)
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core import base_options
    finally:
        if hidden:
            del sys.modules["tensorflow"]
        if deferred is not None:
            sys.meta_path.remove(deferred)
    return mp, vision, base_options


@contextlib.contextmanager
def native_stderr_silenced():
    """mediapipe's C++ core logs INFO lines straight to fd 2; no setting turns them off."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclass(frozen=True)
class Face:
    x: int
    y: int
    w: int
    h: int
    score: float
    # BlazeFace's keypoints in frame pixels: right eye, left eye, nose tip, mouth centre,
    # right ear, left ear ("right" is the person's own, on the image's left).
    keypoints: tuple[tuple[float, float], ...] | None = None

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.w, self.h

    def keypoint(self, k: int) -> tuple[float, float] | None:
        return self.keypoints[k] if self.keypoints and len(self.keypoints) > k else None

    def moved(self, dx: float, dy: float) -> Face:
        """The same face shifted by (dx, dy) pixels (a tracked face in a nearby frame)."""
        kp = tuple((x + dx, y + dy) for x, y in self.keypoints) if self.keypoints else None
        return Face(int(round(self.x + dx)), int(round(self.y + dy)), self.w, self.h, self.score, kp)


RIGHT_EYE, LEFT_EYE, NOSE, MOUTH = 0, 1, 2, 3


def frame_scale(frame: np.ndarray) -> float:
    """Pixels of the decoded frame per pixel of ``frame``: a sampler may hand frames over
    shrunk (media.frames.Frame.scale); faces are always in the decoded frame's pixels."""
    return float(getattr(frame, "scale", 1.0) or 1.0)


class FaceDetector:
    """Every face in a BGR frame, largest first; use as a context manager (closes mediapipe).

    The detector's network sees 192x192 pixels, so frames whose shorter side exceeds
    ``DOWNSCALE_ABOVE`` are shrunk to ``DETECT_SIDE`` first (about twice as fast on
    720p; boxes, mapped back, move by at most a few pixels). A face too small for the
    whole frame's pass (a gallery view, a panel far from the camera) is found in a part of
    the frame (``detect`` with ``region``, ``detect_parts``).
    """

    DETECT_SIDE = 360
    DOWNSCALE_ABOVE = 480
    PART = 0.55  # of the frame's width and height, each of the four parts ``detect_parts`` looks at
    # Looked at closer, texture passes for a face more often: a part's faces need this much
    # more of the detector's confidence than the whole frame's, or to be found again, that
    # sure, in a region three times their size around them (a small real face scores higher
    # there; texture is not found there at all).
    PART_MARGIN = 0.15

    def __init__(
        self,
        min_score: float = 0.5,
        max_faces: int | None = 8,
        min_face: float = 0.05,
        model: Path = DETECTOR_MODEL,
    ):
        """``max_faces``: the largest this many of a frame's faces (None: all)."""
        mp, vision, base_options = _import_mediapipe()
        self._mp = mp
        options = vision.FaceDetectorOptions(
            base_options=base_options.BaseOptions(model_asset_path=str(model)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_score,
        )
        with native_stderr_silenced():
            self._detector = vision.FaceDetector.create_from_options(options)
        self.max_faces, self.min_face, self.min_score = max_faces, min_face, min_score

    def detect(self, frame: np.ndarray, region: tuple | None = None) -> list[Face]:
        """The faces in ``frame``, or with ``region`` (x, y, w, h, decoded-frame pixels) those
        wholly within that part of it, looked at as closely as the part allows."""
        import cv2

        k = frame_scale(frame)
        full_h, full_w = frame.shape[:2]
        x0, y0, x1, y1 = 0, 0, full_w, full_h
        if region is not None:
            rx, ry, rw, rh = (v / k for v in region)
            x0, y0 = max(0, int(rx)), max(0, int(ry))
            x1, y1 = min(full_w, int(math.ceil(rx + rw))), min(full_h, int(math.ceil(ry + rh)))
            if min(x1 - x0, y1 - y0) < 16:
                return []
        image = frame[y0:y1, x0:x1] if region is not None else frame
        h, w = image.shape[:2]
        small = image
        if min(h, w) > self.DOWNSCALE_ABOVE:
            s = self.DETECT_SIDE / min(h, w)
            small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        fx, fy = k * w / sw, k * h / sh
        detections, pad = self._detections(small), 0
        # mediapipe moves a box's corner into the image and keeps its size, so a face cut by
        # the frame's left or top edge comes back shifted into view by up to half its size.
        # Such a frame is looked at again with room on those sides, and the boxes cut at the
        # edge. A face cut by a part's edge inside the frame is left to the pass that sees it whole.
        inner = (x0 > 0, y0 > 0, x1 < full_w, y1 < full_h)  # left, top, right, bottom: inside the frame
        edge = [
            b
            for b in (d.bounding_box for d in detections)
            if (b.origin_x <= 0 and not inner[0]) or (b.origin_y <= 0 and not inner[1])
        ]
        if edge:
            pad = max(max(b.width, b.height) for b in edge)
            detections = self._detections(cv2.copyMakeBorder(small, pad, 0, pad, 0, cv2.BORDER_CONSTANT))
        frame_w, frame_h = round(k * full_w), round(k * full_h)
        faces = []
        for d in detections:
            b = d.bounding_box
            ox, oy = b.origin_x - pad, b.origin_y - pad
            cut = (ox <= 0, oy <= 0, ox + b.width >= sw - 1, oy + b.height >= sh - 1)
            if any(c and i for c, i in zip(cut, inner)):
                continue
            bx, by, bw, bh = ox * fx + k * x0, oy * fy + k * y0, b.width * fx, b.height * fy
            left, top = max(0, round(bx)), max(0, round(by))
            right, bottom = min(frame_w, round(bx + bw)), min(frame_h, round(by + bh))
            if right - left < 2 or bottom - top < 2 or max(bw, bh) < self.min_face * min(frame_h, frame_w):
                continue
            side_x, side_y = sw + pad, sh + pad  # keypoints are shares of the image looked at
            kp = tuple(
                ((p.x * side_x - pad) * fx + k * x0, (p.y * side_y - pad) * fy + k * y0) for p in d.keypoints or ()
            )
            faces.append(Face(left, top, right - left, bottom - top, float(d.categories[0].score), kp or None))
        faces.sort(key=lambda f: f.w * f.h, reverse=True)
        return faces[: self.max_faces] if self.max_faces is not None else faces

    def detect_parts(self, frame: np.ndarray) -> list[Face]:
        """The faces of four overlapping parts of ``frame`` (``PART`` of its sides each, one at
        each corner), each once: faces about half the size the whole frame's pass finds."""
        k = frame_scale(frame)
        h, w = (round(k * v) for v in frame.shape[:2])
        pw, ph = round(self.PART * w), round(self.PART * h)
        found: list[Face] = []
        for x, y in ((0, 0), (w - pw, 0), (0, h - ph), (w - pw, h - ph)):
            found += self.detect(frame, (x, y, pw, ph))
        sure = self.min_score + self.PART_MARGIN
        return [f for f in distinct(found) if f.score >= sure or self._found_close_up(frame, f, sure)]

    def _found_close_up(self, frame: np.ndarray, face: Face, score: float) -> bool:
        """Whether a region three times ``face``'s size around it holds a face over it scoring ``score``."""
        x, y, w, h = face.box
        side = max(w, h)
        region = (x + w / 2 - 1.5 * side, y + h / 2 - 1.5 * side, 3 * side, 3 * side)
        return any(f.score >= score and covered(face.box, f.box) > 0.5 for f in self.detect(frame, region))

    def _detections(self, bgr: np.ndarray) -> list:
        import cv2

        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        with native_stderr_silenced():
            return self._detector.detect(image).detections

    def close(self) -> None:
        with native_stderr_silenced():
            self._detector.close()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def crop_face(frame: np.ndarray, face: Face, margin: float) -> np.ndarray:
    """A square crop centred on the face, ``margin`` of its size added on every side.

    Outside the frame the edge pixels are repeated, so a face at the border keeps the
    framing the model was trained on.
    """
    import cv2

    k = frame_scale(frame)
    side = max(face.w, face.h) * (1.0 + 2.0 * margin) / k
    cx, cy = (face.x + face.w / 2.0) / k, (face.y + face.h / 2.0) / k
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(2, int(round(side)))
    h, w = frame.shape[:2]
    pad = max(0, -x0, -y0, x0 + s - w, y0 + s - h)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return frame[y0 : y0 + s, x0 : x0 + s]


def iou(a: tuple, b: tuple) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def covered(a: tuple, b: tuple) -> float:
    """The share of the smaller of boxes ``a`` and ``b`` that the other covers."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    return iw * ih / max(1, min(aw * ah, bw * bh))


def distinct(faces: list[Face], beside: list[Face] = ()) -> list[Face]:
    """``faces`` less those that are one already in ``beside`` or found twice (the surer kept)."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: f.score, reverse=True):
        if all(covered(face.box, other.box) < 0.5 for other in (*beside, *kept)):
            kept.append(face)
    return sorted(kept, key=lambda f: f.w * f.h, reverse=True)


class FaceTracker:
    """Stable ids for faces across samples: greedy matching on IoU, then on centre distance.

    A track survives ``max_missed`` samples without a match (a turned head, a missed
    detection) before its id is retired; ids are never reused. Faces first seen together
    are numbered from left to right, so in a two-person shot face 0 is the one on the left.
    """

    def __init__(self, min_iou: float = 0.2, max_centre_shift: float = 0.6, max_missed: int = 5):
        self.min_iou, self.max_centre_shift, self.max_missed = min_iou, max_centre_shift, max_missed
        self.tracks: dict[int, tuple[tuple, int]] = {}  # id -> (last box, samples since seen)
        self._next_id = 0

    def _affinity(self, track_box: tuple, box: tuple) -> float:
        overlap = iou(track_box, box)
        if overlap >= self.min_iou:
            return 1.0 + overlap
        tx, ty, tw, th = track_box
        bx, by, bw, bh = box
        dist = np.hypot(tx + tw / 2 - bx - bw / 2, ty + th / 2 - by - bh / 2) / max(tw, th, bw, bh)
        scale = max(tw * th, bw * bh) / max(1, min(tw * th, bw * bh))
        return 1.0 - dist if dist <= self.max_centre_shift and scale < 2.5 else 0.0

    def moved(self, track_id: int, box: tuple) -> None:
        """Where a track's face is expected at the next sample (followed between detections)."""
        if track_id in self.tracks:
            self.tracks[track_id] = (box, self.tracks[track_id][1])

    def affinity(self, track_id: int, box: tuple) -> float:
        """How well ``box`` continues the track (0: not at all)."""
        return self._affinity(self.tracks[track_id][0], box)

    def box(self, track_id: int) -> tuple:
        """Where the track's face was last seen, or is expected next (``moved``)."""
        return self.tracks[track_id][0]

    def seen_ago(self, box: tuple) -> float:
        """Samples since the track ``box`` continues was last seen (inf: it continues none)."""
        return min((m for tb, m in self.tracks.values() if self._affinity(tb, box) > 0), default=math.inf)

    def follows(self, box: tuple) -> bool:
        """Whether ``box`` continues one of the tracks (a face already followed)."""
        return self.seen_ago(box) < math.inf

    def preferred(self, boxes: list[tuple], n: int) -> list[int]:
        """The indices of at most ``n`` of ``boxes``: those that continue a track seen at the
        last sample first, then those that continue one seen before it, then the largest; so
        who stays in view when there are more faces than ``n`` does not change with the sizes
        of their boxes from one frame to the next."""
        order = sorted(range(len(boxes)), key=lambda i: (self.seen_ago(boxes[i]), -boxes[i][2] * boxes[i][3]))
        return sorted(order[:n])

    def lost(self) -> list[int]:
        """Tracks seen at the sample before the last update but not at it."""
        return [tid for tid, (_, missed) in self.tracks.items() if missed == 1]

    def found(self, track_id: int, box: tuple) -> None:
        """A track missed at the last update found after all (near that sample's time)."""
        self.tracks[track_id] = (box, 0)

    def update(self, boxes: list[tuple]) -> list[int]:
        """Ids for ``boxes`` (same order); unmatched boxes start new tracks."""
        pairs = sorted(
            ((self._affinity(tb, b), tid, i) for tid, (tb, _) in self.tracks.items() for i, b in enumerate(boxes)),
            reverse=True,
        )
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for score, tid, i in pairs:
            if score <= 0 or tid in used or ids[i] is not None:
                continue
            ids[i] = tid
            used.add(tid)
        for i in sorted(range(len(boxes)), key=lambda i: boxes[i][0]):
            if ids[i] is None:
                ids[i] = self._next_id
                self._next_id += 1
        for i, box in enumerate(boxes):
            self.tracks[ids[i]] = (box, 0)
        for tid in list(self.tracks):
            if tid not in ids:
                box, missed = self.tracks[tid]
                if missed + 1 > self.max_missed:
                    del self.tracks[tid]
                else:
                    self.tracks[tid] = (box, missed + 1)
        return ids  # type: ignore[return-value]


def eye_angle(face: Face) -> float:
    """Degrees the line from the person's right eye to their left eye rises in the image (0: level)."""
    right, left = face.keypoint(RIGHT_EYE), face.keypoint(LEFT_EYE)
    if right is None or left is None:
        return 0.0
    return float(np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0])))


def align_face(frame: np.ndarray, face: Face, margin: float) -> np.ndarray:
    """``crop_face`` turned so the eyes are level: the framing the face model was trained on
    (FER2013 faces are mostly upright), for a tilted head too. One affine warp; edges
    repeated outside the frame."""
    angle = eye_angle(face)
    if abs(angle) < 3.0:  # within a few degrees a warp only blurs
        return crop_face(frame, face, margin)
    import cv2

    k = frame_scale(frame)
    side = max(face.w, face.h) * (1.0 + 2.0 * margin) / k
    s = max(2, int(round(side)))
    cx, cy = (face.x + face.w / 2.0) / k, (face.y + face.h / 2.0) / k
    m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    m[0, 2] += s / 2.0 - cx
    m[1, 2] += s / 2.0 - cy
    return cv2.warpAffine(frame, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class FaceFollower:
    """Where a detected face went in nearby frames, without running the detector again.

    The face's grey pixels at detection, sampled ``SIDE`` pixels across, are matched
    (normalised cross-correlation) within half the face's size around where it
    was, to a fraction of a sampled pixel: a fraction of a millisecond per face and frame,
    against several for a detection. The search area is sampled on the template's own grid,
    so a face that did not move is found exactly where it was.
    """

    SIDE = 40
    SEARCH = 0.5  # of the face's size, each way: a head crossing a frame in 3 s, sampled 6 times a second

    def __init__(self, frame: np.ndarray, face: Face):
        """``frame``: where ``face`` was detected (BGR or grey)."""
        self.face = face
        self.scale = self.SIDE / max(face.w, face.h, 1)
        self.size = (max(4, round(face.w * self.scale)), max(4, round(face.h * self.scale)))
        self.pad = int(np.ceil(self.SEARCH * self.SIDE))
        self.template = self._sample(frame, face.x, face.y, *self.size)

    def _sample(self, frame: np.ndarray, x: float, y: float, w: int, h: int) -> np.ndarray:
        """``frame`` from (x, y) on (decoded frame pixels), shrunk by ``scale``, as w x h grey
        pixels (edges repeated)."""
        import cv2

        s, k = self.scale, frame_scale(frame)
        m = np.float32([[s * k, 0, -s * x], [0, s * k, -s * y]])
        out = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cv2.cvtColor(out, cv2.COLOR_BGR2GRAY) if out.ndim == 3 else out

    def find(self, frame: np.ndarray, near: Face | None = None) -> Face | None:
        """The face in ``frame`` (another frame of the video), searched around ``near`` (where
        it was last found; default: where it was detected), shifted to where it matches best;
        None where nothing there matches it (gone, covered, turned away, a cut to another shot)."""
        import cv2

        f, p, step = near or self.face, self.pad, 1.0 / self.scale
        w, h = self.size
        area = self._sample(frame, f.x - p * step, f.y - p * step, w + 2 * p, h + 2 * p)
        score = cv2.matchTemplate(area, self.template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(score)
        if not best >= 0.5:  # lost, or a flat picture (NaN): not there
            return None
        dx = bx + _peak(score[by, bx - 1 : bx + 2]) - p
        dy = by + _peak(score[by - 1 : by + 2, bx]) - p
        return f.moved(dx * step, dy * step)


def _peak(three: np.ndarray) -> float:
    """Sub-sample offset (-0.5..0.5) of a maximum from its neighbours (a parabola through three)."""
    if len(three) != 3:
        return 0.0
    left, mid, right = (float(v) for v in three)
    den = left - 2 * mid + right
    return 0.0 if den >= 0 else float(np.clip(0.5 * (left - right) / den, -0.5, 0.5))
