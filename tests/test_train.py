"""Training, export and evaluation, end to end on tiny generated datasets of every layout.

One module-scoped tree holds FER2013 as csv and as folders, RAVDESS (48 kHz wav), TESS,
CREMA-D and generic <class>/ audio, plus the traps loaders must survive: an unknown
class ("contempt") and unreadable files. Training runs one or two epochs of very narrow
networks, so the whole module stays well within a few minutes on two busy cores.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

# TF 2.21's oneDNN kernels corrupt the heap (glibc malloc abort) when training the
# separable face net at widths below 32 on this CPU; these tests train width 4. Must be
# set before TensorFlow is first imported.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
sf = pytest.importorskip("soundfile")

from typer.testing import CliRunner  # noqa: E402

from emocli.labels import LABELS  # noqa: E402

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "neutral",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}


def _tone(label: str, seconds: float, rate: int, seed: int) -> np.ndarray:
    """A noisy tone whose pitch depends on the emotion: learnable, but not trivially."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 150.0 + 60.0 * LABELS.index(label)
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def _write_faces(root: Path, rng: np.random.Generator) -> None:
    # FER2013 csv: 3 Training + 2 PublicTest rows per class, and one broken row.
    with open(root / "fer2013.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for code in range(7):
            for usage in ["Training"] * 3 + ["PublicTest"] * 2:
                w.writerow([code, " ".join(map(str, rng.integers(0, 256, 48 * 48))), usage])
        w.writerow([3, "not pixels", "Training"])
    # FER folders, train/ and test/, with an unknown class and an unreadable image.
    import cv2

    for split, n in (("train", 4), ("test", 2)):
        for label in LABELS:
            folder = root / "fer" / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    # FER+-style crowd votes for some training faces (paths relative to the table).
    (root / "ferplus").mkdir()
    with open(root / "ferplus" / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["path", "emotion", "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear"]
            + ["contempt", "unknown", "NF"]
        )
        w.writerow(["../fer/train/happy/0.png", "happy", 2, 6, 2, 0, 0, 0, 0, 0, 0, 0])
        w.writerow(["../fer/train/sad/1.png", "sad", 0, 0, 0, 4, 0, 0, 0, 0, 0, 0])
        w.writerow(["../fer/train/angry/0.png", "other", 0, 0, 0, 0, 0, 0, 0, 3, 5, 2])  # no vote for the seven
    (root / "fer" / "train" / "contempt").mkdir()
    cv2.imwrite(str(root / "fer" / "train" / "contempt" / "0.png"), np.zeros((48, 48), np.uint8))
    (root / "fer" / "train" / "happy" / "broken.png").write_bytes(b"not a png")


def _write_audio(root: Path) -> None:
    seed = 0
    # RAVDESS at 48 kHz, published naming; actors 01, 02 train, 17 is held out.
    for actor in ("01", "02", "17"):
        folder = root / "ravdess" / f"Actor_{actor}"
        folder.mkdir(parents=True)
        for code, label in RAVDESS_EMOTIONS.items():
            seed += 1
            sf.write(folder / f"03-01-{code}-01-01-01-{actor}.wav", _tone(label, 1.2, 48_000, seed), 48_000)
    # TESS at 24.4 kHz, with the ps alias.
    for folder_name, label in (("OAF_angry", "angry"), ("YAF_ps", "surprise"), ("YAF_sad", "sad")):
        folder = root / "tess" / folder_name
        folder.mkdir(parents=True)
        seed += 1
        sf.write(folder / f"{folder_name[:3]}_back_{folder_name[4:]}.wav", _tone(label, 1.0, 24_414, seed), 24_414)
    # CREMA-D names.
    (root / "crema").mkdir()
    for code, label in (("ANG", "angry"), ("HAP", "happy"), ("NEU", "neutral")):
        seed += 1
        sf.write(root / "crema" / f"1001_DFA_{code}_XX.wav", _tone(label, 1.5, 16_000, seed), 16_000)
    # Generic <class>/ folders, an unknown class, and an unreadable file.
    for label in ("happy", "contempt", "sad"):
        (root / "generic" / label).mkdir(parents=True)
    sf.write(root / "generic" / "happy" / "a.wav", _tone("happy", 0.8, 22_050, 99), 22_050)
    sf.write(root / "generic" / "contempt" / "b.wav", _tone("happy", 0.8, 22_050, 98), 22_050)
    (root / "generic" / "sad" / "broken.wav").write_bytes(b"RIFF but not really a wav file")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train-data")
    rng = np.random.default_rng(0)
    _write_faces(root, rng)
    _write_audio(root)
    return root


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """Dataset caches go to a temporary folder, never into the user's ~/.cache."""
    old = os.environ.get("EMOCLI_CACHE")
    os.environ["EMOCLI_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("EMOCLI_CACHE", None)
    else:
        os.environ["EMOCLI_CACHE"] = old


def cli(*args: str, ok: bool = True):
    from emocli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if ok and result.exit_code != 0:
        raise AssertionError(
            f"emocli {' '.join(map(str, args))} exited {result.exit_code}:\n{result.output}\n{result.exception!r}"
        )
    return result


# ---------------------------------------------------------------- loaders


def test_face_layouts_skip_unknown_classes_and_broken_files(data):
    from emocli.datasets import load_faces

    with pytest.warns(UserWarning, match="unreadable"):
        from_csv = load_faces(data / "fer2013.csv")
    assert sorted(from_csv) == ["test", "train"]
    assert len(from_csv["train"]) == 21 and len(from_csv["test"]) == 14
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folders = load_faces(data / "fer")
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.png" in messages
    assert len(folders["train"]) == 28 and len(folders["test"]) == 14  # contempt and broken.png skipped
    assert set(folders["train"].counts().values()) == {4}


def test_audio_layouts_are_recognised(data):
    from emocli.datasets import find_audio, load_waveforms

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = find_audio([data / "ravdess", data / "tess", data / "crema", data / "generic"])
        waves, ok = load_waveforms(items, 16_000)
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.wav" in messages  # unreadable: warned, not fatal
    by_dataset = {d: sum(it.dataset == d for it in ok) for d in ("ravdess", "tess", "crema-d", "folder")}
    assert by_dataset == {"ravdess": 24, "tess": 3, "crema-d": 3, "folder": 1}  # contempt and broken.wav skipped
    assert {it.speaker for it in ok if it.dataset == "ravdess"} == {"ravdess:01", "ravdess:02", "ravdess:17"}
    assert {it.label for it in ok if it.dataset == "tess"} == {"angry", "surprise", "sad"}
    assert all(w.dtype == np.int16 and w.ndim == 1 and len(w) > 0 for w in waves)
    # From the cache, in another order: each clip keeps its own samples.
    cached, _ = load_waveforms(items, 16_000)
    again, ok_again = load_waveforms(list(reversed(items)), 16_000)
    assert ok_again == list(reversed(ok)) and all(np.array_equal(a, b) for a, b in zip(again, reversed(cached)))
    assert all(np.array_equal(a, b) for a, b in zip(cached, waves))


def test_emodb_and_savee_are_recognised_by_their_published_names(exported, tmp_path):
    from conftest import tone, write_wav

    from emocli.datasets import find_audio

    names = [
        "emodb/wav/03a01Fa.wav",  # speaker 03, happiness (Freude)
        "emodb/wav/16b10Wb.wav",  # speaker 16, anger (Wut)
        "emodb/wav/08a02Lc.wav",  # boredom (Langeweile): none of the seven, skipped
        "savee/AudioData/DC/sa03.wav",  # sadness, the speaker from the folder
        "savee/ALL/JE_su12.wav",  # surprise, the speaker from the name
        "savee/AudioData/KL/n30.wav",
        "other/happy/a01.wav",  # a SAVEE-like name in a <class>/ folder: the folder's label
    ]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        write_wav(tmp_path / name, tone(0.5))
    with pytest.warns(UserWarning, match="boredom"):
        items = find_audio([tmp_path / "emodb", tmp_path / "savee", tmp_path / "other"])
    found = {(it.path.name, it.label, it.speaker, it.dataset) for it in items}
    assert found == {
        ("03a01Fa.wav", "happy", "emodb:03", "emodb"),
        ("16b10Wb.wav", "angry", "emodb:16", "emodb"),
        ("sa03.wav", "sad", "savee:DC", "savee"),
        ("JE_su12.wav", "surprise", "savee:JE", "savee"),
        ("n30.wav", "neutral", "savee:KL", "savee"),
        ("a01.wav", "happy", "folder:unknown", "folder"),
    }
    # evaluate scores each corpus on its own too
    report = json.loads(
        cli("evaluate", exported["voice"], "--data", tmp_path / "emodb", tmp_path / "savee", "--json").stdout
    )
    assert {name: part["n"] for name, part in report["per_dataset"].items()} == {"emodb": 2, "savee": 3}
    assert report["n"] == 5 and report["dataset"] == "emodb, savee"


# ---------------------------------------------------------------- training


@pytest.fixture(scope="module")
def face_run(data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "face"
    train_face_tiny(data, run, "--crowd-labels", data / "ferplus" / "labels.csv")
    return run


def train_face_tiny(data: Path, run: Path, *extra):
    """`emocli train face` on the tiny FER tree: one epoch of a width-4 net, batches of 16."""
    return cli(
        "train",
        "face",
        "--data",
        data / "fer",
        "--out",
        run,
        "--epochs",
        1,
        "--width",
        4,
        "--batch-size",
        16,
        "-q",
        *extra,
    )


@pytest.fixture(scope="module")
def voice_run(data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "voice"
    train_voice_tiny(data, run, "17", epochs=1)
    return run


def train_voice_tiny(data: Path, run: Path, holdout: str, epochs: int, *extra, ok: bool = True):
    """`emocli train voice` on the tiny RAVDESS/TESS/CREMA-D tree: a width-8 net, batches of 8."""
    return cli(
        "train",
        "voice",
        "--data",
        data / "ravdess",
        data / "tess",
        data / "crema",
        "--out",
        run,
        "--holdout-speakers",
        holdout,
        "--epochs",
        epochs,
        "--width",
        8,
        "--batch-size",
        8,
        "-q",
        *extra,
        ok=ok,
    )


def test_faces_of_one_label_are_refused_and_leave_no_run_folder(tmp_path):
    import cv2

    for i in range(8):
        folder = tmp_path / "one" / "train" / "happy"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), np.random.default_rng(i).integers(0, 255, (48, 48), np.uint8))
    run = tmp_path / "run"
    result = cli("train", "face", "--data", tmp_path / "one", "-o", run, "--epochs", 1, "--width", 4, ok=False)
    assert result.exit_code == 1 and "of one label only (happy): nothing to tell apart" in result.output
    assert not run.exists()


def test_train_face_writes_a_complete_run(face_run):
    for name in (
        "model.keras",
        "checkpoint.keras",
        "state.json",
        "history.csv",
        "curves.png",
        "confusion.png",
        "metrics.json",
        "config.json",
    ):
        assert (face_run / name).is_file(), name
    metrics = json.loads((face_run / "metrics.json").read_text())
    assert metrics["task"] == "face" and 0.0 <= metrics["validation"]["accuracy"] <= 1.0
    config = json.loads((face_run / "config.json").read_text())
    assert config["crowd_labels"].endswith("labels.csv") and config["camera"] == "full"


def test_crowd_labels_are_vote_shares_matched_by_path(data, tmp_path):
    from emocli.datasets import crowd_labels, training_faces

    train = training_faces(data / "fer")
    shares = crowd_labels(data / "ferplus" / "labels.csv", data / "fer", train.names)
    row = dict(zip(train.names, shares))
    happy = row["train/happy/0.png"]
    assert np.allclose(
        happy[[LABELS.index("neutral"), LABELS.index("happy"), LABELS.index("surprise")]], [0.2, 0.6, 0.2]
    )
    assert happy.sum() == pytest.approx(1.0)
    assert row["train/sad/1.png"][LABELS.index("sad")] == 1.0
    assert np.isnan(row["train/angry/0.png"]).all()  # contempt, unknown and not-a-face say nothing of the seven
    assert np.isnan(row["train/fear/0.png"]).all()  # not in the table
    bad = tmp_path / "bad.csv"
    bad.write_text("path,emotion\n../fer/train/happy/0.png,happy\n")
    with pytest.raises(ValueError, match="not a crowd-vote table"):
        crowd_labels(bad, data / "fer", train.names)


def test_blended_targets_keep_the_label_where_the_crowd_is_silent():
    from emocli.train.face_batches import blend_targets

    crowd = np.array([[0, 0, 0, 1, 0, 0, 0], [np.nan] * 7], np.float32)
    t = blend_targets(np.array([6, 2]), crowd, 0.5, 7)
    assert np.allclose(t[0], [0, 0, 0, 0.5, 0, 0, 0.5]) and np.allclose(t[1], np.eye(7)[2])
    assert np.allclose(blend_targets(np.array([6, 2]), crowd, 0.0, 7), np.eye(7)[[6, 2]])


def test_camera_degradations_blur_darken_and_block_a_real_face():
    import cv2

    from emocli.train.face_batches import CAMERA_PRESETS, degrade

    capture = cv2.VideoCapture(str(Path(__file__).parent.parent / "examples" / "crema-d" / "1001_DFA_HAP_XX.mp4"))
    ok, frame = capture.read()
    capture.release()
    assert ok
    h, w = frame.shape[:2]
    face = cv2.resize(cv2.cvtColor(frame[: h // 2, w // 4 : 3 * w // 4], cv2.COLOR_BGR2GRAY), (48, 48))
    rng = np.random.default_rng(0)
    assert np.array_equal(degrade(face, CAMERA_PRESETS["off"], rng), face)
    out = [degrade(face, CAMERA_PRESETS["full"], np.random.default_rng(i)) for i in range(200)]
    assert all(o.shape == face.shape and o.dtype == np.uint8 for o in out)
    sharpness = np.array([cv2.Laplacian(o, cv2.CV_64F).var() for o in out])
    brightness = np.array([o.mean() for o in out])
    base_sharpness = cv2.Laplacian(face, cv2.CV_64F).var()
    assert np.mean(sharpness < 0.5 * base_sharpness) > 0.2  # defocus and small faces upscaled
    assert np.mean(brightness < face.mean() - 20) > 0.1  # dim light
    assert np.mean([np.array_equal(o, face) for o in out]) > 0.1  # some faces stay as they are
    again = degrade(face, CAMERA_PRESETS["full"], np.random.default_rng(7))
    assert np.array_equal(again, out[7])  # a draw is its seed's


def test_face_batches_resume_where_an_uninterrupted_run_would_be():
    from emocli.train.face_batches import CAMERA_PRESETS, FaceBatches

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (50, 48, 48), dtype=np.uint8)
    targets, weights = np.eye(7, dtype=np.float32)[rng.integers(0, 7, 50)], np.ones(50, np.float32)
    running = FaceBatches(faces, targets, weights, CAMERA_PRESETS["full"], 16, seed=3)
    running.on_epoch_end()
    running.on_epoch_end()
    resumed = FaceBatches(faces, targets, weights, CAMERA_PRESETS["full"], 16, seed=3)
    resumed.seek(2)
    assert len(running) == 4
    for b in range(len(running)):
        for a, r in zip(running[b], resumed[b]):
            assert np.array_equal(a, r)
    x, y, sw = running[3]
    assert x.shape == (2, 48, 48, 1) and 0.0 <= x.min() and x.max() <= 1.0 and y.shape == (2, 7) and sw.shape == (2,)


def test_train_voice_holds_out_speakers_and_stores_the_scaler(voice_run):
    from emocli.features import FeatureSpec

    metrics = json.loads((voice_run / "metrics.json").read_text())
    validation = metrics["validation"]
    assert validation["n"] == 8  # actor 17's eight clips (calm scored as neutral)
    assert metrics["held_out_speakers"] == ["ravdess:17"] and list(validation["per_group"]) == ["ravdess-speakers"]
    assert validation["per_group"]["ravdess-speakers"]["chance"] == pytest.approx(1 / 7, abs=1e-3)
    assert metrics["train_clips"] == 16 + 3 + 3
    preprocess = json.loads((voice_run / "preprocess.json").read_text())
    spec = FeatureSpec.from_dict(preprocess)
    assert len(spec.mean) == len(spec.std) == spec.n_features and min(spec.std) > 0
    assert (
        0.25 <= preprocess["temperature"] <= 8.0 and metrics["calibration"]["temperature"] == preprocess["temperature"]
    )
    assert json.loads((voice_run / "config.json").read_text())["task"] == "voice"


def test_train_voice_resumes_where_it_stopped(voice_run, data, tmp_path):
    import shutil

    run = tmp_path / "voice"
    shutil.copytree(voice_run, run)  # a one-epoch run, as if stopped there
    first = (run / "history.csv").read_text().splitlines()
    config = (run / "config.json").read_text()
    # Another loss is another run: refused before anything is written.
    other = train_voice_tiny(data, run, "ravdess:17", 2, "--missing-label-weight", 0.5, ok=False)
    assert other.exit_code == 1 and "missing_label_weight 0.3 (now 0.5)" in other.output
    assert (run / "config.json").read_text() == config
    train_voice_tiny(data, run, "ravdess:17", 2, "--keep", "last")  # more epochs, another kept epoch: resumed
    rows = (run / "history.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[:2] == first  # header, epoch 1 unchanged, epoch 2 added
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2 and state["best_epoch"] == 2  # --keep last: epoch 2, whatever it scored
    assert json.loads((run / "metrics.json").read_text())["keep"] == "last"


def test_a_face_run_resumes_only_with_its_options_and_more_epochs_stretch_its_schedule(data, tmp_path):
    import keras

    run = tmp_path / "face"
    train_face_tiny(data, run)
    config = (run / "config.json").read_text()
    wider = cli(
        "train", "face", "--data", data / "fer", "--out", run, "--epochs", 1, "--width", 8, "--batch-size", 16, ok=False
    )
    assert wider.exit_code == 1 and "width 4 (now 8)" in wider.output and "--init" in wider.output
    assert (run / "config.json").read_text() == config
    train_face_tiny(data, run, "--epochs", 3)
    assert json.loads((run / "state.json").read_text())["epoch"] == 3
    schedule = keras.models.load_model(run / "checkpoint.keras").optimizer._learning_rate.get_config()
    # The cosine runs to the end of epoch 3, not of epoch 1 (where its rate was already 0).
    assert schedule["decay_steps"] == 2 * schedule["warmup_steps"]


def test_train_voice_rejects_absent_holdout_speakers(data, tmp_path):
    tess = ["train", "voice", "--data", data / "tess", "--out", tmp_path / "r", "--epochs", 1, "-q"]
    result = cli(*tess, ok=False)
    assert result.exit_code == 1 and "holdout" in result.output  # TESS: two speakers, too few to split
    named = cli(*tess, "--holdout-speakers", "ravdess:05", ok=False)
    assert named.exit_code == 1 and "ravdess:05" in named.output
    corpus = cli(*tess, "--holdout-corpus", "nope", ok=False)
    assert corpus.exit_code == 1 and "nope" in corpus.output and "tess" in corpus.output


def test_train_voice_rejects_corpus_weights_it_cannot_use(data, tmp_path):
    malformed = cli(
        "train", "voice", "--data", data / "tess", "-o", tmp_path / "m", "--corpus-weight", "tess", ok=False
    )
    assert malformed.exit_code == 2 and "NAME=W" in malformed.output
    absent = train_voice_tiny(data, tmp_path / "r", "ravdess:17", 1, "--corpus-weight", "nope=2", ok=False)
    assert absent.exit_code == 1 and "nope" in absent.output
    assert not (tmp_path / "r" / "model.keras").exists()


def test_train_voice_holds_out_whole_corpora_from_labels_csv(data, tmp_path):
    """Two labels.csv corpora with different label sets: one trains, one is held out whole."""
    for corpus, labels, speakers in (("alpha", ("angry", "happy", "other"), 5), ("beta", ("sad", "calm"), 2)):
        root = tmp_path / corpus
        root.mkdir()
        rows = []
        for k, label in enumerate(labels):
            for spk in range(speakers):
                name = f"{label}_{spk}.wav"
                sf.write(root / name, _tone(label if label in LABELS else "happy", 1.0, 16_000, k * 10 + spk), 16_000)
                rows.append(f"{name},{label},s{spk},female,xx,{corpus.upper()}")
        (root / "labels.csv").write_text("path,emotion,speaker,gender,language,corpus\n" + "\n".join(rows) + "\n")
    run = tmp_path / "run"
    cli(
        "train",
        "voice",
        "--data",
        tmp_path / "alpha",
        tmp_path / "beta",
        "--out",
        run,
        "--holdout-corpus",
        "beta",
        "--epochs",
        1,
        "--width",
        8,
        "--batch-size",
        4,
        "-q",
    )
    metrics = json.loads((run / "metrics.json").read_text())
    groups = metrics["validation"]["per_group"]
    # beta whole (calm counts as neutral); one of alpha's five speakers; "other" is dropped.
    assert sorted(groups) == ["alpha-speakers", "beta"]
    assert groups["beta"]["n"] == 4 and groups["beta"]["classes"] == ["sad", "neutral"]
    assert groups["alpha-speakers"]["n"] == 2 and groups["alpha-speakers"]["chance"] == 0.5
    assert metrics["train_clips"] == 8 and metrics["train_corpora"] == ["alpha"]


# ---------------------------------------------------------------- export


def test_export_voice_writes_metadata_and_checks_parity(voice_run, tmp_path):
    import emocli
    from emocli.features import FeatureSpec
    from emocli.models import VoiceModel, read_info

    out = tmp_path / "voice.onnx"
    result = cli("export", voice_run, "-o", out)
    assert "parity: max |onnxruntime - keras|" in result.output
    info = read_info(out)
    metrics = json.loads((voice_run / "metrics.json").read_text())
    assert info.task == "voice" and info.labels == list(LABELS) and info.version == emocli.__version__
    assert info.preprocess == json.loads((voice_run / "preprocess.json").read_text())
    assert info.metrics["accuracy"] == metrics["validation"]["accuracy"]
    assert {"dataset", "split", "accuracy", "macro_f1"} <= set(info.metrics)
    model = VoiceModel(out)
    assert model.spec == FeatureSpec.from_dict(info.preprocess)
    probs = model.predict([np.zeros(32_000, np.float32), np.sin(np.arange(32_000, dtype=np.float32) / 10) * 0.1])
    assert probs.shape == (2, len(LABELS)) and np.allclose(probs.sum(1), 1.0)

    refused = cli("export", voice_run, "-o", out, ok=False)
    assert refused.exit_code == 1 and "--force" in refused.output
    cli("export", voice_run, "-o", out, "--force")


def test_a_voice_model_trained_with_pitch_carries_it_to_inference(data, tmp_path):
    from emocli.features import FeatureSpec, audio_features, normalize, pitch_features, relative_pitch
    from emocli.models import VoiceModel

    run = tmp_path / "pitch"
    train_voice_tiny(data, run, "17", 1, "--pitch", "relative")
    spec = FeatureSpec.from_dict(json.loads((run / "preprocess.json").read_text()))
    assert spec.pitch and spec.pitch_relative and spec.n_features == 106 and len(spec.mean) == 106
    assert 0 < spec.mean[104] <= 1 and spec.std[104] > 1e-3 and spec.std[105] > 1e-3  # the scaler covers them
    cli("export", run, "-o", tmp_path / "pitch.onnx")
    model = VoiceModel(tmp_path / "pitch.onnx")
    assert model.spec.pitch
    t = np.arange(32_000, dtype=np.float32) / 16_000
    speechlike = (0.1 * np.sin(2 * np.pi * 160 * t) * (1 + np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    features = normalize(audio_features(speechlike, model.spec), model.spec)
    expected = relative_pitch(pitch_features(speechlike))
    assert np.allclose(features[:, 104:] * model.spec.std[104:] + model.spec.mean[104:], expected, atol=1e-4)
    probs = model.predict([speechlike])
    assert probs.shape == (1, len(LABELS)) and np.allclose(probs.sum(1), 1.0)
    assert "voicing and pitch" in cli("models", tmp_path / "pitch.onnx").output


def test_a_voice_model_with_attentive_pooling_resumes_and_exports(data, tmp_path):
    from emocli.models import VoiceModel

    run = tmp_path / "attention"
    train_voice_tiny(data, run, "17", 1, "--pooling", "attention")
    assert json.loads((run / "config.json").read_text())["pooling"] == "attention"
    train_voice_tiny(data, run, "17", 2, "--pooling", "attention")  # resumes from the checkpoint
    assert json.loads((run / "state.json").read_text())["epoch"] == 2
    exported = cli("export", run, "-o", tmp_path / "attention.onnx")
    assert "parity" in exported.output
    t = np.arange(32_000, dtype=np.float32) / 16_000
    tone = (0.1 * np.sin(2 * np.pi * 160 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    probs = VoiceModel(tmp_path / "attention.onnx").predict([tone, np.zeros(32_000, np.float32)])
    assert probs.shape == (2, len(LABELS)) and np.allclose(probs.sum(1), 1.0)
    assert not np.allclose(probs[0], probs[1])  # the pooled statistics follow the input


def test_export_face_run_and_bare_keras_file(face_run, voice_run, tmp_path):
    from emocli.models import DEFAULT_FACE_PREPROCESS, read_info

    face = read_info(cli("export", face_run, "-o", tmp_path / "face.onnx") and tmp_path / "face.onnx")
    assert face.task == "face" and face.preprocess == DEFAULT_FACE_PREPROCESS  # run has no preprocess.json
    bare = tmp_path / "bare.keras"
    bare.write_bytes((voice_run / "model.keras").read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli("export", bare, "-o", tmp_path / "bare.onnx")
    assert read_info(tmp_path / "bare.onnx").task == "voice"  # inferred from the 3-D input
    assert cli("export", tmp_path / "nothing.keras", "-o", tmp_path / "x.onnx", ok=False).exit_code == 2  # missing


def test_export_face_int8_is_measured_before_it_is_written(face_run, data, tmp_path, monkeypatch):
    import emocli.train.export as export
    from emocli.models import FaceModel, read_info

    lines: list[str] = []
    with pytest.raises(export.ExportError, match="agrees with Keras on only"):
        monkeypatch.setattr(export, "INT8_AGREEMENT", 1.01)  # unreachable: the export must refuse
        export.export_model(face_run, tmp_path / "refused.onnx", int8=True, log=lines.append)
    assert not (tmp_path / "refused.onnx").exists() and list(tmp_path.iterdir()) == []

    monkeypatch.setattr(export, "INT8_AGREEMENT", 0.0)  # a one-epoch net's near-uniform outputs flip easily
    lines.clear()
    export.export_model(face_run, tmp_path / "f32.onnx", log=lines.append)
    export.export_model(face_run, tmp_path / "int8.onnx", int8=True, calibration=data / "fer", log=lines.append)
    assert any(line.startswith("int8: top-1 agreement with keras") for line in lines)
    assert read_info(tmp_path / "int8.onnx").precision.startswith("int8")
    assert read_info(tmp_path / "f32.onnx").precision == "float32"
    faces = [np.full((60, 50), v, np.uint8) for v in (30, 120, 220)]
    p32, p8 = FaceModel(tmp_path / "f32.onnx").predict(faces), FaceModel(tmp_path / "int8.onnx").predict(faces)
    assert np.allclose(p8.sum(1), 1.0) and np.abs(p8 - p32).max() < 0.1
    import onnx

    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    made_by = {out: n.op_type for n in graph.node for out in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    # the convolution that reads the pixels keeps float32 weights; the others are dequantized int8
    assert made_by.get(convs[0].input[1]) != "DequantizeLinear"
    assert all(made_by.get(c.input[1]) == "DequantizeLinear" for c in convs[1:]) and len(convs) > 2
    failed = cli("export", face_run, "-o", tmp_path / "x.onnx", "--int8", "--calibration", data / "nothing", ok=False)
    assert failed.exit_code == 2 and "nothing" in failed.output and not (tmp_path / "x.onnx").exists()  # missing input


def test_warm_restart_and_ensemble_export_average_the_runs(face_run, voice_run, data, tmp_path):
    from emocli.models import FaceModel, read_info

    warm = tmp_path / "warm"
    train_face_tiny(data, warm, "--init", face_run / "model.keras", "--seed", 1)
    assert json.loads((warm / "config.json").read_text())["init"] == str(face_run / "model.keras")
    # another --seed, the same validation faces as the run it continues
    assert json.loads((warm / "metrics.json").read_text())["validation"]["split"].endswith("seed 0")
    wrong = cli(
        "train",
        "face",
        "--data",
        data / "fer",
        "--out",
        tmp_path / "wrong",
        "--epochs",
        1,
        "--width",
        8,
        "--init",
        face_run / "model.keras",
        "-q",
        ok=False,
    )
    assert wrong.exit_code == 1 and "not a width-8 face model" in wrong.output

    for name, sources in (("a", [face_run]), ("b", [warm]), ("ab", [face_run, warm])):
        result = cli("export", *sources, "-o", tmp_path / f"{name}.onnx")
    assert "card carries no metrics" in result.output and read_info(tmp_path / "ab.onnx").metrics == {}
    faces = [np.random.default_rng(i).integers(0, 255, (60, 50), np.uint8) for i in range(4)]
    a, b, ab = (FaceModel(tmp_path / f"{n}.onnx").predict(faces) for n in ("a", "b", "ab"))
    assert np.abs(a - b).max() > 1e-4  # two different nets ...
    assert np.allclose(ab, (a + b) / 2, atol=1e-5)  # ... averaged in one file

    mixed = cli("export", face_run, voice_run, "-o", tmp_path / "mixed.onnx", ok=False)
    assert mixed.exit_code == 1 and "different inputs" in mixed.output and not (tmp_path / "mixed.onnx").exists()


def test_distillation_loss_is_crossentropy_plus_the_softened_teacher_divergence():
    import keras

    from emocli.train.face import Distillation

    rng = np.random.default_rng(0)
    student = rng.dirichlet(np.ones(7), 5).astype(np.float32)
    teacher = rng.dirichlet(np.ones(7), 5).astype(np.float32)
    target = np.eye(7, dtype=np.float32)[rng.integers(0, 7, 5)]
    both = np.concatenate([student, teacher], axis=1)

    def per_face(loss, pred):
        return keras.ops.convert_to_numpy(loss.call(keras.ops.convert_to_tensor(target), pred))

    def soften(p, t):
        q = p ** (1 / t)
        return q / q.sum(axis=1, keepdims=True)

    t = 2.0
    hard = -(target * 0.9 + 0.1 / 7) * np.log(student)
    kl = (soften(teacher, t) * np.log(soften(teacher, t) / soften(student, t))).sum(axis=1) * t * t
    got = per_face(Distillation(weight=0.7, temperature=t, label_smoothing=0.1), both)
    assert np.allclose(got, 0.3 * hard.sum(axis=1) + 0.7 * kl, atol=1e-4)
    # a student that already answers as its teacher pays nothing for the teacher's share
    same = np.concatenate([teacher, teacher], axis=1)
    assert np.allclose(per_face(Distillation(weight=1.0, temperature=t), same), 0.0, atol=1e-5)


def test_a_student_learns_from_teachers_and_comes_out_a_plain_face_net(face_run, data, tmp_path):
    from emocli.models import FaceModel
    from emocli.train.face import build_face_model

    student = tmp_path / "student"
    teachers = ("--teacher", face_run / "model.keras", "--teacher", face_run / "model.keras")
    train_face_tiny(data, student, *teachers, "--width", 6, "--temperature", 1)
    config = json.loads((student / "config.json").read_text())
    assert config["teachers"] == [str(face_run / "model.keras")] * 2 and config["temperature"] == 1
    history = (student / "history.csv").read_text().splitlines()
    assert "accuracy" in history[0] and len(history) == 2

    # Rerun for one more epoch: it resumes with its teachers from the checkpoint.
    train_face_tiny(data, student, *teachers, "--width", 6, "--temperature", 1, "--epochs", 2)
    assert json.loads((student / "state.json").read_text())["epoch"] == 2
    import keras

    net = keras.models.load_model(student / "model.keras")
    assert net.count_params() == build_face_model(width=6).count_params()  # no teacher inside
    cli("export", student, "-o", tmp_path / "student.onnx")
    faces = [np.random.default_rng(i).integers(0, 255, (60, 50), np.uint8) for i in range(3)]
    assert FaceModel(tmp_path / "student.onnx").predict(faces).shape == (3, len(LABELS))


def test_a_teacher_of_another_input_is_refused(voice_run, data, tmp_path):
    result = cli(
        "train",
        "face",
        "--data",
        data / "fer",
        "--out",
        tmp_path / "s",
        "--teacher",
        voice_run / "model.keras",
        "--epochs",
        1,
        "--width",
        4,
        "-q",
        ok=False,
    )
    assert result.exit_code == 1 and "the teachers take" in result.output
    bad = cli("train", "face", "--data", data / "fer", "--out", tmp_path / "s", "--temperature", 0, ok=False)
    assert bad.exit_code == 2 and "--temperature must be above 0" in bad.output


def test_validation_faces_depend_on_split_seed_alone():
    from emocli.train.face import FaceConfig, validation_split

    y = np.repeat(np.arange(7), 40)
    _, va = validation_split(y, FaceConfig("x", seed=0))
    _, same = validation_split(y, FaceConfig("x", seed=5))
    _, other = validation_split(y, FaceConfig("x", seed=0, split_seed=1))
    assert len(va) == 28 and np.array_equal(np.sort(va), np.sort(same))
    assert not np.array_equal(np.sort(va), np.sort(other))


# ---------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def exported(face_run, voice_run, tmp_path_factory) -> dict[str, Path]:
    from emocli.train.export import export_model

    folder = tmp_path_factory.mktemp("export")
    for task, run in (("face", face_run), ("voice", voice_run)):
        export_model(run, folder / f"{task}.onnx", log=lambda _: None)
    return {"face": folder / "face.onnx", "voice": folder / "voice.onnx"}


def test_evaluate_voice_json_matches_a_manual_computation(exported, data):
    from emocli.features import audio_features, normalize
    from emocli.media import read_audio
    from emocli.models import VoiceModel

    result = cli("evaluate", exported["voice"], "--data", data / "ravdess" / "Actor_17", "--json")
    report = json.loads(result.stdout)
    assert list(report) == ["accuracy", "macro_f1", "n", "labels", "confusion", "dataset", "split", "per_dataset"]
    assert report["dataset"] == "ravdess" and report["split"] == "clip level, ravdess:17"
    chance = 1 / len({row for row, counts in enumerate(report["confusion"]) if sum(counts)})
    assert report["per_dataset"] == {
        "ravdess": {**{k: report[k] for k in ("accuracy", "macro_f1", "n")}, "chance": chance}
    }

    # By hand: every clip (1.2 s) is shorter than the 2 s window, so it is one window,
    # centred and padded with the features of silence.
    model = VoiceModel(exported["voice"])
    spec = model.spec
    silence = normalize(audio_features(np.zeros(spec.n_fft, np.float32), spec), spec)[0]
    y_true, y_pred = [], []
    for path in sorted((data / "ravdess" / "Actor_17").glob("*.wav")):
        feats = normalize(audio_features(read_audio(path), spec), spec)
        window = np.repeat(silence[None], spec.window_frames, axis=0)
        start = (spec.window_frames - len(feats)) // 2
        window[start : start + len(feats)] = feats
        y_pred.append(int(model.run(window[None]).argmax()))
        y_true.append(LABELS.index(RAVDESS_EMOTIONS[path.stem.split("-")[2]]))
    confusion = np.zeros((7, 7), int)
    np.add.at(confusion, (y_true, y_pred), 1)
    assert report["n"] == 8 and report["labels"] == list(LABELS)
    assert report["confusion"] == confusion.tolist()
    assert report["accuracy"] == pytest.approx(np.trace(confusion) / 8)


def test_evaluate_face_csv_defaults_to_the_test_split(exported, data, tmp_path):
    from emocli.datasets import load_faces
    from emocli.models import FaceModel

    test = load_faces(data / "fer2013.csv")["test"]
    for views, flag in ((1, "--one-face-view"), (6, "--face-views")):  # as `emocli process` runs, or every view
        report = json.loads(cli("evaluate", exported["face"], "--data", data / "fer2013.csv", flag, "--json").stdout)
        predicted = FaceModel(exported["face"], views=views > 1).predict(list(test.x)).argmax(1)
        assert report["n"] == 14 and (report["dataset"], report["split"], report["views"]) == ("fer2013", "test", views)
        assert report["accuracy"] == pytest.approx(float((predicted == test.y).mean()))

    table = cli("evaluate", exported["face"], "--data", data / "fer", "--out", tmp_path)
    assert "macro-F1" in table.output and (tmp_path / "face-confusion.png").is_file()
    wrong = cli("evaluate", exported["face"], "--data", data / "fer", "--split", "nope", ok=False)
    assert wrong.exit_code == 2 and "no split" in wrong.output


def test_an_evaluation_exported_onto_the_card_names_its_dataset_and_split(face_run, data, tmp_path):
    from emocli.models import read_info
    from emocli.train.export import export_model

    plain = tmp_path / "plain.onnx"
    export_model(face_run, plain, log=lambda _: None)
    (tmp_path / "eval.json").write_text(cli("evaluate", plain, "--data", data / "fer2013.csv", "--json").stdout)
    carded = tmp_path / "carded.onnx"
    export_model(face_run, carded, metrics_json=tmp_path / "eval.json", log=lambda _: None)
    measured = json.loads((tmp_path / "eval.json").read_text())
    assert read_info(carded).metrics == {
        "accuracy": measured["accuracy"],
        "macro_f1": measured["macro_f1"],
        "n": 14,
        "views": 1,  # one pass a face, as the card says
        "dataset": "fer2013",
        "split": "test",
    }
    assert "on fer2013 (test)" in cli("models", carded).output


def test_models_lists_cards(exported):
    cards = json.loads(cli("models", exported["face"], exported["voice"], "--json").stdout)
    assert [c["task"] for c in cards] == ["face", "voice"]
    assert all(c["labels"] == list(LABELS) and c["size_bytes"] > 0 and "accuracy" in c["metrics"] for c in cards)
    assert "scaler yes" in cards[1]["preprocess_summary"]
    assert cards[0]["preprocess"]["input_size"] == [48, 48] and len(cards[1]["preprocess"]["mean"]) > 0
    assert "voice:" in cli("models", exported["voice"]).output
    folder = cli("models", exported["voice"].parent, ok=False)
    assert folder.exit_code == 1 and "a folder, not a model file (emocli export turns" in folder.output


def test_a_missing_dataset_or_an_output_that_is_a_file_is_said_before_tensorflow_loads(tmp_path):
    (tmp_path / "taken").write_text("a file")
    (tmp_path / "faces").mkdir()
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom emocli.cli import app\n"
        "r = CliRunner().invoke(app, sys.argv[1:])\n"
        "print(r.exit_code, r.output.strip(), 'tensorflow' in sys.modules, sep='|')\n"
    )
    for args, said in (
        (["face", "--data", tmp_path / "gone", "-o", tmp_path / "run"], f"{tmp_path / 'gone'}: no such file or folder"),
        (
            ["voice", "--data", tmp_path / "gone", "-o", tmp_path / "run"],
            f"{tmp_path / 'gone'}: no such file or folder",
        ),
        (["face", "--data", tmp_path / "faces", "-o", tmp_path / "taken"], f"-o {tmp_path / 'taken'}: is a file"),
    ):
        cmd = [sys.executable, "-c", code, "train", *map(str, args)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        code_, text, tf = out.split("|")
        assert code_ == "2" and said in text and "Traceback" not in text and tf == "False", out
    assert not (tmp_path / "run").exists()


def test_inference_side_never_imports_tensorflow():
    code = (
        "import sys, emocli.evaluate, emocli.metrics, emocli.models, emocli.datasets\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'tf2onnx'})\n"
        "print(heavy); sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_caches_written_at_once_by_several_trainings_all_land_whole(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from emocli.datasets import _save_npz

    path = tmp_path / "waves-x.npz"
    arrays = [np.full(200_000, i, np.int16) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda a: _save_npz(path, waves=a), arrays))
    with np.load(path) as saved:
        assert any(np.array_equal(saved["waves"], a) for a in arrays)
    assert [p.name for p in tmp_path.iterdir()] == ["waves-x.npz"]


def test_a_voice_ensemble_is_calibrated_by_its_own_temperature(face_run, voice_run, data, tmp_path):
    from emocli.models import VoiceModel, read_info

    other = tmp_path / "other"
    train_voice_tiny(data, other, "17", 1, "--seed", 1)
    plain = cli("export", voice_run, other, "-o", tmp_path / "plain.onnx")
    # The runs' own temperatures calibrate each run alone: the mean of two is left uncalibrated.
    assert "not calibrated" in plain.output and "temperature" not in read_info(tmp_path / "plain.onnx").preprocess
    cli("export", voice_run, other, "-o", tmp_path / "calibrated.onnx", "--temperature", 0.5)
    calibrated = VoiceModel(tmp_path / "calibrated.onnx")
    assert calibrated.temperature == 0.5
    t = np.arange(32_000, dtype=np.float32) / 16_000
    windows = [np.sin(2 * np.pi * f * t).astype(np.float32) * 0.1 for f in (150, 220, 330)]
    raw = VoiceModel(tmp_path / "plain.onnx").predict(windows)
    assert np.allclose(calibrated.predict(windows), raw**2 / (raw**2).sum(1, keepdims=True), atol=1e-6)
    refused = cli("export", face_run, "-o", tmp_path / "face.onnx", "--temperature", 2, ok=False)
    assert refused.exit_code == 2 and "--temperature applies to voice models only" in refused.output
    # A run trained before a feature field existed (its preprocess.json without it) joins an
    # ensemble with one that records the field's default; a real difference is named.
    older = tmp_path / "older"
    shutil.copytree(other, older)
    spec = json.loads((older / "preprocess.json").read_text())
    (older / "preprocess.json").write_text(json.dumps({k: v for k, v in spec.items() if not k.startswith("pitch")}))
    cli("export", voice_run, older, "-o", tmp_path / "mixed.onnx")
    (older / "preprocess.json").write_text(json.dumps({**spec, "fmin": 40.0}))
    refused = cli("export", voice_run, older, "-o", tmp_path / "refused.onnx", ok=False)
    assert refused.exit_code == 1 and refused.output.strip().endswith("differ in preprocess.json: fmin")


def test_voice_runs_with_their_own_scalers_average_in_one_file(voice_run, tmp_path):
    from emocli.models import VoiceModel

    # Runs trained on different corpora standardise features with different statistics; the
    # ensemble reads the first's and maps them to each other member's in its graph.
    runs = {}
    for name, shift in (("a", 0.0), ("b", 1.5)):
        run = runs[name] = tmp_path / name
        shutil.copytree(voice_run, run)
        spec = json.loads((run / "preprocess.json").read_text())
        spec.pop("temperature", None)
        spec["mean"] = [m + shift for m in spec["mean"]]
        spec["std"] = [s * (1 + shift) for s in spec["std"]]
        (run / "preprocess.json").write_text(json.dumps(spec))
        cli("export", run, "-o", tmp_path / f"{name}.onnx")
    cli("export", runs["a"], runs["b"], "-o", tmp_path / "ab.onnx")
    rng = np.random.default_rng(0)
    t = np.arange(32_000, dtype=np.float32) / 16_000
    windows = [(np.sin(2 * np.pi * f * t) * 0.1 + rng.normal(0, 0.01, t.size)).astype(np.float32) for f in (150, 330)]
    a, b = (VoiceModel(tmp_path / f"{n}.onnx").predict(windows) for n in ("a", "b"))
    assert not np.allclose(a, b, atol=1e-3)  # the scalers matter ...
    assert np.allclose(VoiceModel(tmp_path / "ab.onnx").predict(windows), (a + b) / 2, atol=1e-5)  # ... and are kept


def test_an_average_hears_speech_at_its_first_members_level_range_or_the_one_given(voice_run, tmp_path):
    from emocli.models import read_info

    files = []
    for name, levels in (("a", [-30.0, -20.0]), ("b", [-42.0, -35.0])):  # runs of other corpora: other levels
        run = tmp_path / name
        shutil.copytree(voice_run, run)
        spec = json.loads((run / "preprocess.json").read_text())
        (run / "preprocess.json").write_text(json.dumps({**spec, "level_range": levels}))
        files.append(tmp_path / f"{name}.onnx")
        cli("export", run, "-o", files[-1])
        assert read_info(files[-1]).preprocess["level_range"] == levels
    cli("export", *files, "-o", tmp_path / "ab.onnx")
    assert read_info(tmp_path / "ab.onnx").preprocess["level_range"] == [-30.0, -20.0]
    cli("export", *files, "-o", tmp_path / "given.onnx", "--level-range", "-28,-22.5")
    assert read_info(tmp_path / "given.onnx").preprocess["level_range"] == [-28.0, -22.5]
    for bad in ("-20,-30", "-30", "loud,-20", "-30,5", "nan,-20"):
        refused = cli("export", *files, "-o", tmp_path / "bad.onnx", "--level-range", bad, ok=False)
        assert refused.exit_code == 2 and "--level-range takes LOW,HIGH" in refused.output
    refused = cli("export", tmp_path / "a", "-o", tmp_path / "run.onnx", "--level-range", "-28,-22", ok=False)
    assert refused.exit_code == 2 and "apply to averaging exported models" in refused.output
    assert not (tmp_path / "bad.onnx").exists() and not (tmp_path / "run.onnx").exists()


def test_voice_runs_store_the_narrowband_fill_and_an_average_takes_its_first_members_or_the_option(voice_run, tmp_path):
    from emocli.models import VoiceModel, read_info

    assert json.loads((voice_run / "preprocess.json").read_text())["fill_narrowband"] is True
    old = tmp_path / "old"  # a run from before the fill: its preprocess has no such key
    shutil.copytree(voice_run, old)
    spec = json.loads((old / "preprocess.json").read_text())
    (old / "preprocess.json").write_text(json.dumps({k: v for k, v in spec.items() if k != "fill_narrowband"}))
    cli("export", old, "-o", tmp_path / "old.onnx")
    cli("export", voice_run, "-o", tmp_path / "new.onnx")
    cli("export", tmp_path / "old.onnx", tmp_path / "new.onnx", "-o", tmp_path / "as-first.onnx")
    cli("export", tmp_path / "old.onnx", tmp_path / "new.onnx", "-o", tmp_path / "filled.onnx", "--fill-narrowband")
    assert not read_info(tmp_path / "as-first.onnx").preprocess.get("fill_narrowband")
    assert read_info(tmp_path / "filled.onnx").preprocess["fill_narrowband"] is True
    rng = np.random.default_rng(0)
    wide = rng.normal(0, 0.05, 32_000).astype(np.float32)
    spectrum = np.fft.rfft(wide)
    spectrum[(np.fft.rfftfreq(32_000, 1 / 16_000) > 3400)] = 0
    narrow = np.fft.irfft(spectrum, 32_000).astype(np.float32)
    plain, filled = (VoiceModel(tmp_path / f"{n}.onnx").predict([wide, narrow]) for n in ("as-first", "filled"))
    np.testing.assert_allclose(filled[0], plain[0], atol=1e-6)  # wideband: as before
    assert not np.allclose(filled[1], plain[1], atol=1e-4)  # narrowband: heard filled
    refused = cli("export", old, "-o", tmp_path / "run.onnx", "--fill-narrowband", ok=False)
    assert refused.exit_code == 2 and "apply to averaging exported models" in refused.output
    assert not (tmp_path / "run.onnx").exists()


@pytest.mark.parametrize("keep, kept_epoch", [("best", 1), ("last", 2)])
def test_a_run_keeps_its_best_or_its_last_epoch(keep, kept_epoch, tmp_path):
    import keras

    from emocli.train.run import Checkpoint, RunDir

    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    checkpoint = Checkpoint(RunDir(tmp_path / "run"), net, keep=keep)
    checkpoint.set_model(net)
    for epoch, score, bias in ((0, 0.6, 1.0), (1, 0.4, 2.0)):  # the second epoch scores worse
        net.layers[-1].bias.assign([bias, bias])
        checkpoint.on_epoch_end(epoch, {"val_accuracy": score})
    kept = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert float(kept.layers[-1].bias.numpy()[0]) == kept_epoch  # the weights of the kept epoch
    assert json.loads((tmp_path / "run" / "state.json").read_text())["best_epoch"] == kept_epoch
    from emocli.train.voice import VoiceConfig

    with pytest.raises(ValueError, match="keep"):  # checked once, before any data is read
        VoiceConfig(["ravdess/"], keep="first")


def test_a_speaker_encoder_member_trains_exports_and_joins_a_weighted_half_average(data, voice_run, tmp_path):
    import onnx
    from torch_checkpoints import encoder_checkpoint

    from emocli.models import VoiceModel, read_info

    wheel = tmp_path / "resemblyzer.whl"
    encoder_checkpoint(wheel, hidden=8)
    run = tmp_path / "member"
    train_voice_tiny(data, run, "17", 1, "--speaker-encoder", wheel)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["held_out_speakers"] == ["ravdess:17"] and metrics["validation"]["n"] == 8
    assert metrics["train_clips"] == 16 + 3 + 3 and "speaker encoder" in metrics["model"]
    assert 0.25 <= json.loads((run / "preprocess.json").read_text())["temperature"] <= 8.0

    # The member reads raw features; the CNN run has a scaler, which the average maps back. (An
    # average drops its members' temperatures: exported at 1, they match it.)
    cli("export", run, "-o", tmp_path / "member.onnx", "--temperature", 1)
    cli("export", voice_run, "-o", tmp_path / "cnn.onnx", "--temperature", 1)
    average = tmp_path / "average.onnx"
    cli("export", tmp_path / "cnn.onnx", tmp_path / "member.onnx", "-o", average, "--weights", "3,1", "--half")
    rng = np.random.default_rng(0)
    t = np.arange(32_000, dtype=np.float32) / 16_000
    windows = [(np.sin(2 * np.pi * f * t) * 0.1 + rng.normal(0, 0.01, t.size)).astype(np.float32) for f in (150, 330)]
    cnn, member = (VoiceModel(tmp_path / f"{n}.onnx").predict(windows) for n in ("cnn", "member"))
    assert not np.allclose(cnn, member, atol=1e-2)
    np.testing.assert_allclose(VoiceModel(average).predict(windows), 0.75 * cnn + 0.25 * member, atol=2e-3)
    assert read_info(average).precision.endswith("float16 storage")
    stored = {i.data_type for i in onnx.load(str(average)).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in stored and onnx.TensorProto.FLOAT in stored  # big tensors halved, small kept

    for args, says in (
        (["--weights", "1"], "one positive number per model"),
        (["--weights", "1,-1"], "one positive number per model"),
        (["--weights", "a,b"], "numbers separated by commas"),
    ):
        result = cli(
            "export", tmp_path / "cnn.onnx", tmp_path / "member.onnx", "-o", tmp_path / "x.onnx", *args, ok=False
        )
        assert result.exit_code != 0 and says in result.output and not (tmp_path / "x.onnx").exists()
    refused = cli("export", run, "-o", tmp_path / "x.onnx", "--half", ok=False)
    assert refused.exit_code == 2 and "exported models" in refused.output
    # A folder holding one kind of run is never overwritten by the other.
    before = (voice_run / "model.keras").read_bytes()
    onto_cnn = train_voice_tiny(data, voice_run, "17", 1, "--speaker-encoder", wheel, ok=False)
    assert onto_cnn.exit_code != 0 and "holds a CNN run" in onto_cnn.output
    assert (voice_run / "model.keras").read_bytes() == before
    onto_member = train_voice_tiny(data, run, "17", 1, ok=False)
    assert onto_member.exit_code != 0 and "holds a speaker-encoder member" in onto_member.output
    bad = train_voice_tiny(data, tmp_path / "bad", "17", 1, "--speaker-encoder", tmp_path / "cnn.onnx", ok=False)
    assert bad.exit_code != 0 and "checkpoint" in bad.output and not (tmp_path / "bad" / "model.keras").exists()
