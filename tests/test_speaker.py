"""Who speaks: the face whose mouth moves with the heard speech gets the voice, the others keep their own emotion."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CLIPS, composite, make_video, scene

import emocli
from emocli.fusion import fuse
from emocli.labels import LABELS
from emocli.speaker import SpeakerDetector

P = {m: [f"{m}_p_{label}" for label in LABELS] for m in ("face", "voice", "fused")}
FPS, SIZE, SR = 25, (240, 480), 16_000
LEFT, RIGHT = (35, 30), (35, 285)  # top-left corners of the two faces (y, x)
SCALE = 0.75


@pytest.fixture(scope="module")
def mouth(face_image) -> tuple[float, float, float]:
    """Where the pasted face's mouth is (x, y, relative to its top-left) and its eye distance, per the detector."""
    from emocli.faces import LEFT_EYE, MOUTH, RIGHT_EYE, FaceDetector

    face = scene(face_image, size=(240, 240), at=((0, 0),), scale=SCALE)
    with FaceDetector() as detector:
        (found,) = detector.detect(face)
    (mx, my), (rx, ry), (lx, ly) = found.keypoint(MOUTH), found.keypoint(RIGHT_EYE), found.keypoint(LEFT_EYE)
    return mx, my, float(np.hypot(lx - rx, ly - ry))


def envelope(speech: np.ndarray, n: int) -> np.ndarray:
    """The speech's loudness at each video frame, 0 (silence) to 1 (its loudest)."""
    half = SR // 25
    rms = np.array(
        [
            np.sqrt(np.mean(speech[max(0, c - half) : c + half] ** 2))
            for c in ((np.arange(n) + 0.5) * SR / FPS).astype(int)
        ]
    )
    return np.clip(rms / rms.max(), 0, 1)


def two_faces(face_image, mouth, open_left: np.ndarray | None, open_right: np.ndarray | None, n: int) -> list:
    """Two copies of a real face; a dark mouth opening drawn on either as ``open_*`` (0-1 per frame) says;
    the right face brighter (the fixture face model: happy) than the left (sad)."""
    import cv2

    mx, my, eyes = mouth
    frames = []
    for i in range(n):
        frame = scene(face_image, size=SIZE, at=(LEFT,), scale=SCALE)
        bright = scene(face_image, size=SIZE, at=(RIGHT,), scale=SCALE, brightness=1.5)
        frame[:, 240:] = bright[:, 240:]
        for (y0, x0), opening in ((LEFT, open_left), (RIGHT, open_right)):
            if opening is not None:
                h = int(round(1 + opening[i] * 0.3 * eyes))
                cv2.ellipse(frame, (int(x0 + mx), int(y0 + my)), (int(0.3 * eyes), h), 0, 0, 360, (25, 20, 30), -1)
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory, face_image, mouth, speech) -> dict:
    d = tmp_path_factory.mktemp("speaker")
    seconds = 4.0
    n = int(FPS * seconds)
    audio = speech[: int(seconds * SR)]
    env = envelope(audio, n)
    return {
        "left speaks": make_video(d / "left.mp4", two_faces(face_image, mouth, env, None, n), FPS, audio),
        "right speaks": make_video(d / "right.mp4", two_faces(face_image, mouth, None, env, n), FPS, audio),
        "off-screen": make_video(d / "off.mp4", two_faces(face_image, mouth, None, None, n), FPS, audio),
    }


def voiced_faces(df):
    return df[df["voice_active"] & df["face_id"].notna()]


@pytest.mark.parametrize("who", ["left", "right"])
def test_the_face_whose_mouth_moves_with_the_speech_speaks(clips, models, who):
    df = emocli.analyze(clips[f"{who} speaks"], interval=0.5, **models)
    voiced = voiced_faces(df)
    assert voiced["t_start"].nunique() >= 5, "the fixture speech is heard"
    assert df.groupby("t_start").size().eq(2).all() and df["face_id"].nunique() == 2
    is_left = voiced["face_x"] + voiced["face_w"] / 2 < SIZE[1] / 2
    speaker = voiced[is_left == (who == "left")]
    silent = voiced[is_left != (who == "left")]
    assert speaker["face_speaking"].mean() >= 0.8
    assert not silent["face_speaking"].any()
    # the voice goes into the speaker's fused emotion only; the silent face keeps its own
    assert np.allclose(silent[P["fused"]].to_numpy(), silent[P["face"]].to_numpy())
    spoke = speaker[speaker["face_speaking"].astype(bool)]
    mix = fuse(spoke[P["face"]].to_numpy(), spoke[P["voice"]].to_numpy())
    assert np.allclose(spoke[P["fused"]].to_numpy(), mix, atol=1e-6)
    assert not np.allclose(spoke[P["fused"]].to_numpy(), spoke[P["face"]].to_numpy(), atol=1e-3)
    # with --face-weight, the speaker's fused emotion is that weighted mean instead
    weighted = voiced_faces(emocli.analyze(clips[f"{who} speaks"], interval=0.5, face_weight=0.25, **models))
    spoke = weighted[weighted["face_speaking"].astype(bool)]
    mix = 0.25 * spoke[P["face"]].to_numpy() + 0.75 * spoke[P["voice"]].to_numpy()
    assert len(spoke) and np.allclose(spoke[P["fused"]].to_numpy(), mix, atol=1e-6)
    # empty where nobody speaks
    unvoiced = df[~df["voice_active"]]
    assert unvoiced["face_speaking"].isna().all()


def test_an_off_screen_voice_leaves_every_face_its_own_emotion(clips, models):
    df = emocli.analyze(clips["off-screen"], interval=0.5, **models)
    voiced = voiced_faces(df)
    assert len(voiced) >= 10
    assert (voiced["face_speaking"] == False).all()  # noqa: E712  (false, not empty: speech was heard)
    assert voiced["voice_emotion"].notna().all()  # the voice columns still carry the voice
    assert np.allclose(voiced[P["fused"]].to_numpy(), voiced[P["face"]].to_numpy())


def test_crema_d_side_by_side(models, tmp_path):
    """A real talking clip with its sound, beside a real face that stays still: the talking one speaks."""
    out = tmp_path / "pair.mp4"
    graph = "[1:v]trim=end_frame=1,loop=300:1,setpts=N/(30000/1001)/TB[still];[still][0:v]hstack=shortest=1[v]"
    composite(out, ["-i", str(CLIPS / "1001_DFA_HAP_XX.mp4"), "-i", str(CLIPS / "1001_DFA_NEU_XX.mp4")], graph, "0:a")
    df = emocli.analyze(out, interval=0.5, **models)
    voiced = voiced_faces(df)
    assert voiced["t_start"].nunique() >= 2
    talking = voiced["face_x"] > 480  # the talking clip is on the right
    assert voiced[talking]["face_speaking"].mean() >= 0.8
    assert not voiced[~talking]["face_speaking"].any()


def test_speaker_detector_on_patches():
    """Still mouths: nobody; two moving mouths: the one whose opening follows the loudness."""
    rng = np.random.default_rng(0)
    times = [i / 7 for i in range(14)]
    loud = rng.uniform(-8, -2, len(times))
    opening = (loud - loud.min()) / np.ptp(loud)
    detector = SpeakerDetector()
    base = rng.uniform(60, 200, (16, 24)).astype(np.float32)
    for t, e, o, other in zip(times, loud, opening, rng.permutation(opening)):
        detector.add_loudness(t, e)
        for face_id, amount in ((0, o), (1, other), (2, 0.0)):
            patch = base.copy()
            patch[5:11, 6:18] -= 80 * amount  # the mouth opens: dark
            detector.add_mouth(face_id, t, patch + rng.normal(0, 1, patch.shape).astype(np.float32))
    assert detector.speaking([0, 1, 2], times[-1]) == {0: True, 1: False, 2: False}
    assert detector.speaking([1, 2], times[-1]) == {1: True, 2: False}  # the only moving mouth
    assert detector.speaking([2], times[-1]) == {2: False}
