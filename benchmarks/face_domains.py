"""Face models on faces unlike FER2013, beside FER2013 validation: the cross-domain check.

Every set goes through emocli's own path where it has one (BlazeFace, eyes levelled,
the model's crop margin and views), so what is scored is what `emocli process` would say:

- ``fer-val``: the FER2013 training faces set aside for validation (10 %, split seed 0,
  as `emocli train face` sets them aside), 48x48 crops as they are.
- ``fer-val-video``: some of those faces as a camera shows them: upscaled to 64-160 px,
  in a 640x360 frame, dimmed, written to an MPEG-4 video and read back, then detected and
  cropped.
- ``yale``: Yale faces (15 people, 1990s studio portraits with shoulders and background):
  happy, neutral, sad, surprise.
- ``crema-d``: frames of the CREMA-D clips (one actor, six emotions), five a second;
  per frame, and per clip with the frames' probabilities averaged.

    python benchmarks/face_domains.py export/face.onnx other.onnx --data ../shared/data \\
        --media ../shared/media/crema-d [--one-view]

``--photographs`` scores `emocli evaluate`'s choice instead: each image classified whole, or
as evaluate classifies a photograph (``evaluate.crop_faces``: the largest face detected and
cropped), on face crops of other sizes (FER2013 public-test faces enlarged; Yale cut to the
detector's box plus a margin), Yale as it is and in a larger frame, and the CREMA-D frames.

None of these is a test split: choose on them, report on sets never looked at.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import cv2
import numpy as np
from _common import require

from emocli.datasets import CREMA_NAME, stratified_split, training_faces
from emocli.faces import FaceDetector, align_face
from emocli.labels import LABELS, canonical
from emocli.models import FaceModel

CREMA_CODES = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}


def fer_validation(data: Path) -> tuple[np.ndarray, np.ndarray]:
    train = training_faces(data / "fer2013")
    va = stratified_split(train.y, 0.1, 0)[1]
    return train.x[va], train.y[va]


def as_video(faces: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Each face in its own frame as a camera might show it, through a lossy video codec."""
    frames = []
    for face in faces:
        side = int(rng.integers(64, 161))
        big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
        pad = side // 2
        ext = cv2.GaussianBlur(cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REFLECT_101), (0, 0), 6)
        ext[pad : pad + side, pad : pad + side] = big
        canvas = np.full((360, 640), 100, np.uint8)
        y0, x0 = int(rng.integers(0, 360 - ext.shape[0] + 1)), int(rng.integers(0, 640 - ext.shape[1] + 1))
        canvas[y0 : y0 + ext.shape[0], x0 : x0 + ext.shape[1]] = ext
        gain = rng.uniform(0.45, 1.0)
        frames.append(cv2.cvtColor((canvas * gain).astype(np.uint8), cv2.COLOR_GRAY2BGR))
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "faces.mp4")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 360))
        for frame in frames:
            writer.write(frame)
        writer.release()
        capture, decoded = cv2.VideoCapture(path), []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            decoded.append(frame)
        capture.release()
    return decoded


def yale(data: Path) -> tuple[list[np.ndarray], np.ndarray]:
    root = data / "yalefaces"
    images, labels = [], []
    with open(root / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            label = canonical(row["emotion"], warn=False)
            if label is not None:
                images.append(cv2.imread(str(root / row["path"])))
                labels.append(LABELS.index(label))
    return images, np.asarray(labels)


def crema_frames(media: Path, per_second: float = 5.0) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Frames of each CREMA-D clip, its label, and which clip each frame is from."""
    frames, labels, clips = [], [], []
    for n, path in enumerate(sorted(p for p in media.glob("*.mp4") if CREMA_NAME.match(p.stem))):
        label = LABELS.index(CREMA_CODES[path.stem.split("_")[2]])
        capture = cv2.VideoCapture(str(path))
        step = max(1, round((capture.get(cv2.CAP_PROP_FPS) or 25) / per_second))
        i = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if i % step == 0:
                frames.append(frame)
                labels.append(label)
                clips.append(n)
            i += 1
        capture.release()
    return frames, np.asarray(labels), np.asarray(clips)


def detected_crops(frames: list[np.ndarray], margin: float, detector: FaceDetector) -> tuple[list, np.ndarray]:
    """The largest face's aligned crop per frame, and which frames had one."""
    crops, found = [], []
    for frame in frames:
        faces = detector.detect(frame)
        found.append(bool(faces))
        if faces:
            crops.append(align_face(frame, faces[0], margin))
    return crops, np.asarray(found)


class MirrorAveraged:
    """A face model that averages each crop's answer with its mirror image's, as the
    pipeline's default (one view) does."""

    def __init__(self, model: FaceModel):
        self.model, self.crop_margin = model, model.crop_margin

    def predict(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return self.model.predict(crops)
        return (self.model.predict(crops) + self.model.predict([c[:, ::-1] for c in crops])) / 2


def photographs_check(models: list[Path], data: Path, media: Path) -> None:
    """Whole image against evaluate's detected crop, per set (one pass per net)."""
    from emocli.datasets import load_faces
    from emocli.evaluate import crop_faces
    from emocli.faces import crop_face

    rng = np.random.default_rng(0)
    test = load_faces(data / "fer2013")["test"]
    pick = rng.choice(len(test), 1500, replace=False)
    yale_images, yale_y = yale(data)
    with FaceDetector(min_score=0.5, max_faces=1, min_face=0.0) as detector:
        boxes = [(image, detector.detect(image)) for image in yale_images]
    sets = {
        f"fer-test at {side} px": (
            [cv2.resize(test.x[i], (side, side), interpolation=cv2.INTER_CUBIC) for i in pick],
            test.y[pick],
        )
        for side in (96, 160)
    }
    for margin in (0.0, 0.1, 0.25, 0.5):
        cut = [cv2.resize(crop_face(im, f[0], margin), (128, 128)) if f else im for im, f in boxes]
        sets[f"yale cut at box + {margin:g}"] = (cut, yale_y)
    sets["yale"] = (yale_images, yale_y)
    framed = []
    for im in yale_images:
        h, w = im.shape[:2]
        canvas = np.full((2 * h, 2 * w, 3), 128, np.uint8)
        canvas[h // 3 : h // 3 + h, w // 2 : w // 2 + w] = im
        framed.append(canvas)
    sets["yale in a frame twice its size"] = (framed, yale_y)
    crema, crema_y, _ = crema_frames(media)
    sets["crema-d frames"] = (crema, crema_y)
    print(f"{'model':<20} {'set':<32} {'n':>5} {'whole':>6} {'detected':>9} {'found':>6}")
    for path in models:
        model = FaceModel(path, views=False)
        for name, (images, y) in sets.items():
            crops, detected = crop_faces(images, model.crop_margin)
            whole = float((model.predict(images).argmax(1) == y).mean())
            found = float((model.predict(crops).argmax(1) == y).mean())
            print(f"{path.name[:20]:<20} {name:<32} {len(y):>5} {whole:>6.3f} {found:>9.3f} {detected.mean():>6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--media", type=Path, default=Path("../shared/media/crema-d"))
    ap.add_argument("--video-faces", type=int, default=700, help="FER validation faces shown through video")
    ap.add_argument("--one-view", action="store_true", help="classify each crop once (the models' views off)")
    ap.add_argument(
        "--mirror",
        action="store_true",
        help="with --one-view: also the mirrored crop, averaged, as `emocli process` does",
    )
    ap.add_argument("--margin", type=float, help="crop with this margin instead of each model's own")
    ap.add_argument("--photographs", action="store_true", help="whole images against evaluate's detected crops")
    args = ap.parse_args()
    require(
        args.data / "fer2013",
        args.data / "yalefaces",
        args.media,
        what="FER2013 and Yale faces under --data and the CREMA-D clips in --media",
    )
    if args.photographs:
        photographs_check(args.models, args.data, args.media)
        return

    rng = np.random.default_rng(0)
    x_va, y_va = fer_validation(args.data)
    pick = rng.permutation(len(y_va))[: args.video_faces]
    video = as_video(x_va[pick], rng)
    yale_images, yale_y = yale(args.data)
    crema, crema_y, crema_clip = crema_frames(args.media)

    print(
        f"{'model':<28} {'fer-val':>8} {'fer-video':>10} {'yale':>6} {'crema-frame':>12} {'crema-clip':>11} {'mean-x':>7}"
    )
    with FaceDetector(min_score=0.3, max_faces=1, min_face=0.0) as detector:
        for path in args.models:
            net = FaceModel(path, views=not args.one_view)
            if args.margin is not None:
                net.crop_margin = args.margin
            model = MirrorAveraged(net) if args.mirror else net
            scores = {"fer-val": float((model.predict(list(x_va)).argmax(1) == y_va).mean())}
            for name, frames, y in (("fer-video", video, y_va[pick]), ("yale", yale_images, yale_y)):
                crops, found = detected_crops(frames, model.crop_margin, detector)
                # an undetected face counts as wrong: the timeline would have no emotion for it
                scores[name] = float((model.predict(crops).argmax(1) == y[found]).sum() / len(y))
            crops, found = detected_crops(crema, model.crop_margin, detector)
            p = model.predict(crops)
            scores["crema-frame"] = float((p.argmax(1) == crema_y[found]).sum() / len(crema_y))
            clip_p = [p[crema_clip[found] == c].mean(0) for c in np.unique(crema_clip[found])]
            clip_y = [crema_y[crema_clip == c][0] for c in np.unique(crema_clip[found])]
            scores["crema-clip"] = float(np.mean(np.argmax(clip_p, 1) == clip_y))
            cross = np.mean([scores["fer-video"], scores["yale"], scores["crema-frame"]])
            print(
                f"{path.name[:28]:<28} {scores['fer-val']:>8.3f} {scores['fer-video']:>10.3f} {scores['yale']:>6.3f} "
                f"{scores['crema-frame']:>12.3f} {scores['crema-clip']:>11.3f} {cross:>7.3f}"
            )
    print(
        f"faces: fer-val {len(y_va)}, fer-video {len(pick)}, yale {len(yale_y)}, crema-d {len(crema_y)} frames "
        f"of {len(np.unique(crema_clip))} clips; mean-x: mean of fer-video, yale and crema-frame"
    )


if __name__ == "__main__":
    main()
