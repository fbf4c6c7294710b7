"""Score an exported model (.onnx) on a labelled dataset: `emocli evaluate`.

Inference side: onnxruntime only, never TensorFlow/Keras (a test checks it). Voice
clips are scored as in training's validation: the softmax of sliding windows
(``spec.window_s`` seconds, 50% overlap) averaged over the clip.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .features import FeatureSpec, audio_features, fit_window, normalize, speech_gain
from .labels import LABELS
from .metrics import classification_report, plot_confusion
from .usage import UsageError

EVALUATE_MAX_S = 60.0  # of a longer clip, its middle minute is scored

# The object docs/contracts.md promises, then what was scored: `emocli export --metrics-json` puts an
# evaluation on the model card, and a card names its dataset and split. views, photographs and
# detected: faces only; per_dataset: voice only (accuracy, macro-F1, n and chance of each corpus).
JSON_KEYS = (
    "accuracy",
    "macro_f1",
    "n",
    "labels",
    "confusion",
    "dataset",
    "split",
    "views",
    "photographs",
    "detected",
    "per_dataset",
)

# An image no larger than this on its shorter side is already a face crop (FER2013's are 48 px)
# and is classified whole; a larger one is a photograph, whose face is found and cropped first.
FACE_CROP_MAX_PX = 64


@contextlib.contextmanager
def one_line_warnings(say: Callable[[str], None]) -> Iterator[None]:
    """Within the block, each warning reaches ``say`` as one line ("warning: ..."), without
    the file, line and source text Python's default display adds. Deprecation notices
    between libraries (numpy's to TensorFlow, say) are not the user's to act on: left out."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message).strip()
        say(f"warning: {text.splitlines()[0] if text else category.__name__}")

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.showwarning = show
        yield


def clip_windows(signal: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """A clip's model inputs, as inference sees speech: ``spec.window_s`` windows of its
    samples, 50% overlap, the last one flush with the clip's end, each turned into
    normalised features on its own. A clip shorter than one window becomes one window,
    centred and zero-padded (``features.fit_window``). A model with a ``level_range`` hears the
    clip scaled as a video's whole speech would be (``features.speech_gain``)."""
    if spec.level_range:
        from .vad import default_detector

        signal = signal * np.float32(speech_gain(default_detector().speech_level(signal), spec))
    n, size = len(signal), spec.window_samples
    if n <= size:
        windows = [fit_window(signal, size)]
    else:
        starts = list(range(0, n - size + 1, max(1, size // 2)))
        if starts[-1] != n - size:
            starts.append(n - size)
        windows = [signal[s : s + size] for s in starts]
    return np.stack([normalize(audio_features(w, spec), spec) for w in windows]).astype(np.float32)


def clip_probabilities(
    clips: list[np.ndarray],
    spec: FeatureSpec,
    predict: Callable[[np.ndarray], np.ndarray],
    chunk: int = 128,
) -> np.ndarray:
    """Per-clip probabilities of float signals: ``predict`` on every window, averaged within each clip."""
    out = []
    for a in range(0, len(clips), chunk):
        windows = [clip_windows(c, spec) for c in clips[a : a + chunk]]
        probs = np.asarray(predict(np.concatenate(windows)))
        bounds = np.cumsum([len(w) for w in windows])[:-1]
        out += [p.mean(0) for p in np.split(probs, bounds)]
    return np.stack(out) if out else np.zeros((0, len(LABELS)))


def evaluate(
    model_path: str | Path,
    data: str | Path | list,
    split: str | None = None,
    out: str | Path | None = None,
    face_views: bool = False,
) -> dict:
    """Accuracy, macro-F1 and confusion of a face or voice model on a labelled dataset.

    ``data``: for faces fer2013.csv or ``[<split>/]<class>/`` image folders (``split``
    defaults to "test" when there is one, else "all", else the only one); in a folder's
    photographs the largest face is found and cropped as `emocli process` crops it
    (``crop_faces``); for voice one or more folders or files in the RAVDESS, TESS, CREMA-D,
    EmoDB, SAVEE or ``<class>/`` layouts, or with a ``labels.csv``. A face model classifies
    each face once, as `emocli process` does, or (``face_views``) over its views. With
    ``out``, writes ``<model>-confusion.png`` there (never beside the model, which may be
    read-only).
    """
    from .models import ModelError, read_info

    model_path = Path(model_path)
    if model_path.is_dir():
        raise ModelError(f"{model_path}: is a folder, not a model file")
    sources = [Path(d) for d in (data if isinstance(data, (list, tuple)) else [data])]
    for source in sources:
        if not source.exists():
            raise FileNotFoundError(f"{source}: no such file or folder")
    info = read_info(model_path)
    if info.task == "face":
        if len(sources) != 1:
            raise UsageError("a face model is evaluated on one dataset (fer2013.csv or an image folder)")
        report = _evaluate_faces(model_path, sources[0], split, face_views)
    else:
        if split is not None:
            raise UsageError("--split applies to face datasets; for voice, pass the folders to score")
        if face_views:
            raise UsageError("--face-views applies to face models")
        report = _evaluate_voice(model_path, sources)
    report = {**report, "model": str(model_path), "task": info.task, "data": [str(s) for s in sources]}
    if out is not None:
        title = (
            f"{model_path.name}: accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f} (n={report['n']})"
        )
        report["confusion_png"] = str(Path(out) / f"{model_path.stem}-confusion.png")
        plot_confusion(report, Path(report["confusion_png"]), title)
    return report


def _evaluate_faces(model_path: Path, source: Path, split: str | None, face_views: bool) -> dict:
    from .datasets import ImageSet, load_faces
    from .models import FaceModel

    splits = load_faces(source)
    name = split or ("test" if "test" in splits else next(iter(splits)) if len(splits) == 1 else "all")
    if name == "all" and name not in splits:  # every split together
        parts = list(splits.values())
        fields = ("x", "y") if parts[0].names is None else ("x", "y", "names", "sides")
        splits[name] = ImageSet(*(np.concatenate([getattr(p, k) for p in parts]) for k in fields))
    if name not in splits:
        raise UsageError(
            f"{source}: no split {name!r} (it has: {', '.join(sorted({*splits, 'all'}))}); pick one with --split"
        )
    images = splits[name]
    model = FaceModel(model_path, views=face_views)
    inputs, photo, detected = list(images.x), np.zeros(len(images), bool), np.zeros(len(images), bool)
    if source.is_dir():
        # Only the photographs are read again: the cached 48x48 crops serve for the rest.
        photo = images.sides > FACE_CROP_MAX_PX
        crops, detected[photo] = crop_faces(read_images([source / n for n in images.names[photo]]), model.crop_margin)
        for i, crop in zip(np.flatnonzero(photo), crops, strict=True):
            inputs[i] = crop
        if missed := int((photo & ~detected).sum()):
            warnings.warn(
                f"no face found in {missed} of {int(photo.sum())} photographs: each was classified whole", stacklevel=2
            )
    probs = np.concatenate([model.predict(inputs[a : a + 512]) for a in range(0, len(inputs), 512)])
    dataset = source.stem if source.is_file() else source.name
    views = len(model.zooms) * (2 if model.flip_average else 1)
    report = {**classification_report(images.y, probs.argmax(1)), "dataset": dataset, "split": name, "views": views}
    return {**report, "photographs": int(photo.sum()), "detected": int(detected.sum())}


def face_inputs(paths: list[Path], margin: float) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """What the face model classifies for each image; which images are photographs (larger
    than a face crop), and in which a face was detected.

    An image of at most ``FACE_CROP_MAX_PX`` on its shorter side is a face crop already and
    is used whole. In a larger one (a photograph, a video frame) the largest face is
    detected and cropped as `emocli process` crops it (``margin`` of its size added on each
    side, eyes level); where none is found the whole image is used, so it is still scored.
    """
    images = read_images(paths)
    photo = np.asarray([min(image.shape[:2]) > FACE_CROP_MAX_PX for image in images], bool)
    detected = np.zeros(len(images), bool)
    crops, detected[photo] = crop_faces([image for image, p in zip(images, photo) if p], margin)
    for i, crop in zip(np.flatnonzero(photo), crops, strict=True):
        images[i] = crop
    return images, photo, detected


def read_images(paths: list[Path]) -> list[np.ndarray]:
    """The images at ``paths`` as BGR arrays."""
    import cv2

    images = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:  # load_faces read it, so it changed since: say so rather than guess
            raise ValueError(f"{path}: no longer a readable image")
        images.append(image)
    return images


def crop_faces(images: list[np.ndarray], margin: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Each image's largest face, cropped as `emocli process` crops it (``margin`` of its size
    added on each side, eyes level), or the image itself where no face is found; and where one
    was."""
    from .faces import FaceDetector, align_face

    crops, detected = [], np.zeros(len(images), bool)
    if not images:
        return crops, detected
    with FaceDetector(min_score=0.5, max_faces=1, min_face=0.0) as detector:
        for i, image in enumerate(images):
            if faces := detector.detect(image):
                image, detected[i] = align_face(image, faces[0], margin), True
            crops.append(image)
    return crops, detected


def _evaluate_voice(model_path: Path, sources: list[Path]) -> dict:
    from .datasets import find_audio, load_waveforms
    from .models import VoiceModel

    model = VoiceModel(model_path)
    spec = model.spec
    waves, items = load_waveforms(find_audio(sources), spec.sample_rate, max_s=EVALUATE_MAX_S)
    probs = clip_probabilities([w.astype(np.float32) / 32767.0 for w in waves], spec, model.run)
    y = np.asarray([LABELS.index(it.label) for it in items], np.int64)
    report = classification_report(y, probs.argmax(1))
    datasets = np.asarray([it.dataset for it in items])
    report["per_dataset"] = {}
    for name in sorted(set(datasets.tolist())):
        part = classification_report(y[datasets == name], probs[datasets == name].argmax(1))
        # chance: the accuracy of guessing among the labels this corpus uses
        chance = 1.0 / len(set(y[datasets == name].tolist()))
        report["per_dataset"][name] = {**{k: part[k] for k in ("accuracy", "macro_f1", "n")}, "chance": chance}
    report["dataset"] = ", ".join(report["per_dataset"])
    report["split"] = (
        "clip level, "
        + ", ".join(sorted({it.speaker for it in items})[:8])
        + (" ..." if len({it.speaker for it in items}) > 8 else "")
    )
    return report
