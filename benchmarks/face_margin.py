"""Calibrate the face crop: face-model accuracy against crop margin, FER faces placed in frames.

FER2013 faces are tightly framed (roughly brow to chin). emocli finds faces with
BlazeFace, whose box is framed differently, then crops a square with ``margin`` of
the box added on every side. This script pastes FER faces into larger frames (upscaled,
with their edges extended so a wider crop sees plausible surroundings rather than a
flat background), detects them with emocli's detector, crops at several margins and
reports the model's accuracy at each, beside its accuracy on the original 48x48 crops.

    python benchmarks/face_margin.py --model export/face.onnx --run runs/face

``--run`` takes the faces the run set aside for validation (its split seed and fraction), so
the margin is chosen without looking at a test split; ``--data`` scores any other set.

``--photographs DATA MEDIA`` adds a check that needs no labels: the margin at which emocli's
crop of a real photograph (Yale portraits under DATA/yalefaces, frames of the CREMA-D clips
in MEDIA) holds the eyes and mouth as far apart, relative to its side, as FER2013's faces do.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from _common import require

from emocli.datasets import load_faces, stratified_split, training_faces
from emocli.faces import LEFT_EYE, MOUTH, RIGHT_EYE, FaceDetector, crop_face
from emocli.models import FaceModel

MARGINS = (-0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2, 0.3)


def place(face48: np.ndarray, side: int = 192, frame=(360, 640)) -> tuple[np.ndarray, tuple]:
    """The face upscaled to ``side`` px with its borders extended, in the middle of a frame."""
    big = cv2.resize(face48, (side, side), interpolation=cv2.INTER_CUBIC)
    pad = side // 2
    ext = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    ext = cv2.GaussianBlur(ext, (0, 0), 6)
    ext[pad : pad + side, pad : pad + side] = big  # sharp face, blurred surroundings
    h, w = frame
    canvas = np.full((h, w), 110, np.uint8)
    y0, x0 = (h - ext.shape[0]) // 2, (w - ext.shape[1]) // 2
    canvas[max(0, y0) : y0 + ext.shape[0], max(0, x0) : x0 + ext.shape[1]] = ext[
        max(0, -y0) : h - y0, max(0, -x0) : w - x0
    ]
    return cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR), (x0 + pad, y0 + pad, side, side)


def spans(face) -> tuple[float, float]:
    """The distance between the eyes and from their midpoint down to the mouth, in the face's pixels."""
    r, left, m = (np.asarray(face.keypoint(k)) for k in (RIGHT_EYE, LEFT_EYE, MOUTH))
    return float(np.linalg.norm(left - r)), float(m[1] - (r[1] + left[1]) / 2)


def framing_check(fer_spans: np.ndarray, data: Path, media: Path, detector: FaceDetector) -> None:
    """Per photograph set, the margin whose crop matches FER2013's eye and eye-to-mouth spans
    (medians; a crop's side is the box's longer side times 1 + 2 x margin)."""
    from face_domains import crema_frames, yale

    fer = np.median(fer_spans, axis=0)  # per FER side
    print(f"FER2013: eyes {fer[0]:.3f} of the face's side apart, mouth {fer[1]:.3f} below them")
    for name, images in (("yale", yale(data)[0]), ("crema-d frames", crema_frames(media)[0])):
        found = [f[0] for f in map(detector.detect, images) if f]
        ratio = np.array([[*spans(f)] for f in found]) / np.array([[max(f.w, f.h)] for f in found])
        eyes, mouth = ((np.median(ratio, axis=0) / fer) - 1) / 2
        print(
            f"{name}: {len(found)} faces; the margin that matches FER's eye span {eyes:.3f}, its eye-to-mouth {mouth:.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="export/face.onnx")
    ap.add_argument("--run", help="training run folder: use its validation faces (recommended)")
    ap.add_argument("--data", default="../shared/data/fer2013/test", help="FER2013 folder or csv (a held-out split)")
    ap.add_argument("--split", default=None)
    ap.add_argument("--per-class", type=int, default=60, help="faces per class (disgust has fewer)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--photographs", nargs=2, type=Path, metavar=("DATA", "MEDIA"), help="also the label-free check")
    args = ap.parse_args()

    if not args.run:
        require(Path(args.data), what="a held-out FER2013 split (--data) or a training run (--run)")
    if args.photographs:
        require(*args.photographs, what="the data and media folders --photographs names")
    if args.run:
        config = json.loads((Path(args.run) / "config.json").read_text())
        data = training_faces(config["data"])
        pool = stratified_split(data.y, config["val_fraction"], config.get("split_seed", config["seed"]))[1]
    else:
        splits = load_faces(args.data)
        data = splits[args.split] if args.split else (splits.get("test") or next(iter(splits.values())))
        pool = np.arange(len(data.y))
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.permutation(pool[data.y[pool] == c])[: args.per_class] for c in np.unique(data.y[pool])])
    model = FaceModel(args.model)
    direct = float((model.predict(list(data.x[idx])).argmax(1) == data.y[idx]).mean())

    correct = dict.fromkeys(MARGINS, 0)
    found, framing, fer_spans = 0, [], []
    with FaceDetector(min_score=0.3, max_faces=1, min_face=0.0) as detector:
        for i in idx:
            frame, (fx, fy, fs, _) = place(data.x[i])
            faces = detector.detect(frame)
            if not faces:
                continue
            found += 1
            f = faces[0]
            framing.append((max(f.w, f.h) / fs, (f.x + f.w / 2 - fx) / fs - 0.5, (f.y + f.h / 2 - fy) / fs - 0.5))
            fer_spans.append(np.asarray(spans(f)) / fs)
            crops = [crop_face(frame, f, m) for m in MARGINS]
            pred = model.predict(crops).argmax(1)
            for m, p in zip(MARGINS, pred):
                correct[m] += int(p == data.y[i])
        if args.photographs:
            framing_check(np.asarray(fer_spans), *args.photographs, detector)
    acc = {m: correct[m] / max(found, 1) for m in MARGINS}
    best = max(acc, key=acc.get)
    box = np.mean(framing, axis=0) if framing else (0, 0, 0)
    result = {
        "model": args.model,
        "faces": len(idx),
        "detected": found,
        "accuracy_on_48px_crops": direct,
        "accuracy_by_margin": acc,
        "best_margin": best,
        "model_crop_margin": model.crop_margin,
        "box_side_over_fer_side": float(box[0]),
        "box_centre_offset": [float(box[1]), float(box[2])],
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{len(idx)} FER faces, {found} detected in 640x360 frames ({found / len(idx):.0%})")
    print(f"BlazeFace box side = {box[0]:.2f} x the FER crop side; centre offset x {box[1]:+.2f}, y {box[2]:+.2f}")
    print(f"accuracy on the original 48x48 crops: {direct:.3f}")
    for m in MARGINS:
        mark = "  <- best" if m == best else ("  <- model's crop_margin" if abs(m - model.crop_margin) < 1e-9 else "")
        print(f"  margin {m:+.2f}: {acc[m]:.3f}{mark}")


if __name__ == "__main__":
    main()
