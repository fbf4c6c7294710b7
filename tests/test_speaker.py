"""Who speaks: the face whose mouth moves with the heard speech gets the voice, the others keep their own emotion."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CLIPS, composite, make_video, scene

import emocli
from emocli.faces import FaceTracker
from emocli.fusion import fuse
from emocli.labels import LABELS
from emocli.media.frames import Between
from emocli.speaker import SpeakerDetector, loudness, mouth_patch

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


@pytest.fixture(scope="module")
def talking(tmp_path_factory, face_image, mouth, speech):
    """Both mouths move all along, with real speech envelopes: the left one with the speech
    heard, the right one with another stretch of it (a second talker heard by nobody)."""
    d = tmp_path_factory.mktemp("talking")
    seconds = 6.0
    n = int(FPS * seconds)
    audio = np.concatenate([speech, speech])[: int(seconds * SR)]
    env = envelope(audio, n)
    return make_video(d / "left.mp4", two_faces(face_image, mouth, env, np.roll(env, n // 3), n), FPS, audio)


def test_faces_first_seen_together_are_numbered_left_to_right():
    tracker = FaceTracker()
    right, left, middle = (300, 40, 80, 80), (20, 50, 80, 80), (160, 45, 80, 80)
    assert tracker.update([right, left]) == [1, 0]  # the detector's order is by score, not place
    assert tracker.update([left, right]) == [0, 1]  # the same people keep their ids
    assert tracker.update([right, middle, left]) == [1, 2, 0]  # a newcomer takes the next id


def voiced_faces(df):
    return df[df["voice_active"] & df["face_id"].notna()]


@pytest.mark.parametrize("who", ["left", "right"])
def test_the_face_whose_mouth_moves_with_the_speech_speaks(clips, models, who):
    df = emocli.analyze(clips[f"{who} speaks"], interval=0.5, **models)
    voiced = voiced_faces(df)
    assert voiced["t_start"].nunique() >= 5, "the fixture speech is heard"
    assert df.groupby("t_start").size().eq(2).all() and df["face_id"].nunique() == 2
    # faces first seen together are numbered from left to right; an interval's rows go by id
    assert (df["face_id"] == (df["face_x"] + df["face_w"] / 2 >= SIZE[1] / 2)).all()
    assert df.groupby("t_start")["face_id"].apply(lambda ids: ids.is_monotonic_increasing).all()
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
    # --fusion voice: the speaker's fused emotion is the voice; a listener has none (not the speaker's)
    alone = voiced_faces(emocli.analyze(clips[f"{who} speaks"], interval=0.5, fusion="voice", **models))
    spoke = alone[alone["face_speaking"].astype(bool)]
    assert len(spoke) and np.allclose(spoke[P["fused"]].to_numpy(), spoke[P["voice"]].to_numpy())
    assert alone[~alone["face_speaking"].astype(bool)]["fused_emotion"].isna().all()


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


def test_a_few_frames_a_second_name_a_talking_mouth_not_a_still_noisy_picture(face_image, speech, models, tmp_path):
    """Too few frames for a synchrony: motion alone decides. A still face under heavy sensor
    noise at one frame a second does not speak; a real talking clip at two frames a second does."""
    import subprocess

    from emocli.media import ffmpeg

    rng = np.random.default_rng(0)
    picture = scene(face_image, size=SIZE, at=((20, 120),), scale=1.0).astype(int)
    noisy = [np.clip(picture + rng.integers(-8, 9, picture.shape), 0, 255).astype(np.uint8) for _ in range(4)]
    still = voiced_faces(emocli.analyze(make_video(tmp_path / "still.mp4", noisy, 1, speech[: 4 * SR]), **models))
    assert len(still) >= 3 and not still["face_speaking"].astype(bool).any()
    slow = tmp_path / "slow.mp4"
    cmd = [ffmpeg(), "-v", "error", "-i", str(CLIPS / "1001_DFA_ANG_XX.mp4"), "-r", "2", "-c:a", "copy", str(slow)]
    subprocess.run(cmd, check=True)
    talking = voiced_faces(emocli.analyze(slow, **models))
    assert len(talking) >= 1 and talking["face_speaking"].astype(bool).mean() >= 0.8


def test_of_two_talking_mouths_the_one_in_time_with_the_speech_speaks(talking, models):
    """From the first interval on: a file's first seconds are judged over its first three."""
    voiced = voiced_faces(emocli.analyze(talking, interval=0.5, **models))
    assert voiced["t_start"].nunique() >= 6
    is_left = voiced["face_x"] + voiced["face_w"] / 2 < SIZE[1] / 2
    assert voiced[is_left]["face_speaking"].astype(bool).mean() >= 0.8
    silent = voiced[~is_left]
    assert (~silent["face_speaking"].astype(bool)).mean() >= 0.9
    kept = silent[~silent["face_speaking"].astype(bool)]
    assert np.allclose(kept[P["fused"]].to_numpy(), kept[P["face"]].to_numpy())


def test_an_odd_sized_video_is_judged_as_an_even_one(talking, models, tmp_path):
    """Odd sizes are read with OpenCV: its frames bring the grey frames between samples too,
    so of two talking mouths the one in time with the speech still speaks."""
    import subprocess

    from emocli.media import ffmpeg, frame_sampler, probe

    odd = tmp_path / "odd.mp4"
    crop = ["-vf", "format=yuv444p,crop=479:239:0:0", "-c:v", "libx264", "-c:a", "copy"]
    subprocess.run([ffmpeg(), "-v", "error", "-i", str(talking), *crop, str(odd)], check=True)
    info = probe(odd)
    with frame_sampler(info, [0.5, 1.0, 1.5], reach=0.25) as reader:
        frames = [f for _, f in reader.frames_at([0.5, 1.0, 1.5])]
    assert type(reader).__name__ == "FrameReader" and all(len(f.recent) >= 5 for f in frames[1:])
    voiced = voiced_faces(emocli.analyze(odd, interval=0.5, **models))
    is_left = voiced["face_x"] + voiced["face_w"] / 2 < 479 / 2
    assert voiced[is_left]["face_speaking"].astype(bool).mean() >= 0.8
    assert (~voiced[~is_left]["face_speaking"].astype(bool)).mean() >= 0.9


def test_two_talking_crema_d_faces_side_by_side(models, tmp_path):
    """Real talking faces on both sides (other sentences, started 0.6 s apart), the sound of the left one."""
    out = tmp_path / "two.mp4"
    names = ["ANG", "HAP", "SAD", "NEU"]
    inputs = [a for c in names for a in ("-i", str(CLIPS / f"1001_DFA_{c}_XX.mp4"))]
    graph = (
        "[0:v][0:a][1:v][1:a]concat=n=2:v=1:a=1[l][a];[2:v][3:v]concat=n=2[r0];"
        "[r0]tpad=start_duration=0.6:start_mode=clone[r];[l][r]hstack=shortest=1[v]"
    )
    composite(out, inputs, graph, "[a]")
    voiced = voiced_faces(emocli.analyze(out, interval=0.5, **models))
    assert voiced["t_start"].nunique() >= 3
    is_left = voiced["face_x"] + voiced["face_w"] / 2 < 480
    assert voiced[is_left]["face_speaking"].astype(bool).mean() >= 0.8
    assert (~voiced[~is_left]["face_speaking"].astype(bool)).mean() >= 0.9


def test_a_files_decisions_look_at_the_seconds_centred_on_them_within_the_file():
    detector = SpeakerDetector(history=3.0)
    assert detector.centred(5.0, 60.0) == (3.5, 6.5)
    assert detector.centred(0.25, 60.0) == (0.0, 3.0)  # the first moments: the first three seconds
    assert detector.centred(59.75, 60.0) == (57.0, 60.0)
    assert detector.centred(0.75, 2.0) == (0.0, 2.0)  # a clip shorter than the history: all of it


def test_speaker_detector_on_mouths_between_samples():
    """Mouths seen 15 times a second between samples of 3 a second: still mouths, nobody; two
    moving mouths, the one whose opening follows the loudness; a voice neither follows, or
    both follow alike, nobody."""
    from emocli.faces import Face

    rng = np.random.default_rng(0)
    rate, seconds = 15, 3.0
    syllables = rng.uniform(0, 1, int(seconds * 5) + 2)  # loudness of ~5 syllables a second
    fine = np.repeat(syllables, SR // 5)[: int(seconds * SR)]
    audio = (rng.normal(0, 1, len(fine)) * (0.01 + fine**2)).astype(np.float32)
    times = np.arange(int(seconds * rate)) / rate + 0.5 / rate
    opening = np.array([fine[int(t * SR)] for t in times])
    shifted = np.roll(opening, 11)  # another stretch of speech: talks, but not what is heard
    base = rng.uniform(60, 200, (40, 60)).astype(np.uint8)
    face = Face(10, 5, 40, 40, 0.9, ((20.0, 15.0), (40.0, 15.0), (30.0, 25.0), (30.0, 30.0)))
    samples = [k / 3 + 1 / 6 for k in range(int(seconds * 3))]

    def frames(amount):
        out = []
        for t, a in zip(times, amount):
            img = base.copy()
            img[27:33, 22:38] = np.clip(img[27:33, 22:38] - 100 * a, 0, 255).astype(np.uint8)
            out.append(Between(float(t), img, 1.0))
        return out

    def detector(heard, mouths: dict) -> SpeakerDetector:
        d = SpeakerDetector()
        for t, level in zip(samples, loudness(heard, 0.0, samples, SR)):
            d.add_loudness(t, level)
        for face_id, seen in mouths.items():
            for t in samples:  # each sample brings the grey frames since the one before
                frame = np.zeros((40, 60), np.uint8)
                recent = tuple(b for b in seen if t - 1 / 3 < b.pts <= t)
                mouth = mouth_patch(_frame(frame, t, recent), face)
                d.add_mouth(face_id, t, mouth)
        return d

    still = frames(np.zeros(len(times)))
    heard, other = frames(opening), frames(shifted)
    last = samples[-1]
    assert detector(audio, {0: heard, 1: other, 2: still}).speaking([0, 1, 2], last) == {0: True, 1: False, 2: False}
    assert detector(audio, {1: other, 2: still}).speaking([1, 2], last) == {1: False, 2: False}
    assert detector(audio, {2: still}).speaking([2], last) == {2: False}
    # Two mouths that both open with what is heard cannot be told apart: nobody is named.
    assert detector(audio, {0: heard, 3: frames(opening)}).speaking([0, 3], last) == {0: False, 3: False}
    # A mouth partly in time with the speech is named when it is the only one seen, but not
    # when the speaker's was seen too, even if the speaker has no row now (out of sight).
    partly = frames(0.6 * opening + 0.4 * shifted)
    assert detector(audio, {4: partly}).speaking([4], last) == {4: True}
    assert detector(audio, {0: heard, 4: partly}).speaking([4], last) == {4: False}


def _frame(image: np.ndarray, t: float, recent: tuple):
    """A sampler frame: its time and the grey frames before it."""
    from emocli.media.frames import Frame

    frame = image.view(Frame)
    frame.pts, frame.recent = t, recent
    return frame


def test_live_follows_the_mouths_between_its_samples(face_image, mouth, speech, models, tmp_path):
    """Live, who speaks has only the seconds before each interval, but every frame of them:
    of two talking mouths, the one in time with the speech speaks. The stream comes at half
    speed and is scored from its seventh second, when three seconds of mouths are in."""
    import subprocess
    import time

    import pandas as pd
    from test_live import Run, _port

    from emocli.media.tools import ffmpeg

    seconds = 10.0
    n = int(FPS * seconds)
    audio = np.concatenate([speech] * 4)[: int(seconds * SR)]
    env = envelope(audio, n)
    clip = make_video(tmp_path / "talking.mp4", two_faces(face_image, mouth, env, np.roll(env, n // 4), n), FPS, audio)
    url = f"http://127.0.0.1:{_port()}"
    serve = [ffmpeg(), "-v", "error", "-readrate", "0.5", "-i", str(clip), "-c", "copy", "-f", "mpegts"]
    server = subprocess.Popen([*serve, "-listen", "1", url], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)  # listening
        code, err = Run(models, url, tmp_path / "out", "--interval", "0.5", "-q").finish(timeout=60)
    finally:
        server.kill()
        server.wait()
    assert code == 0, err
    df = pd.read_csv(tmp_path / "out" / "t.csv")
    voiced = df[(df["voice_active"]) & df["face_id"].notna() & (df["t_start"] >= 6.0)]
    assert voiced["t_start"].nunique() >= 6, err
    is_left = voiced["face_x"] + voiced["face_w"] / 2 < SIZE[1] / 2
    assert voiced[is_left]["face_speaking"].astype(bool).mean() >= 0.8
    assert (~voiced[~is_left]["face_speaking"].astype(bool)).mean() >= 0.9


class KeptSpan(SpeakerDetector):
    """A SpeakerDetector that records the widest span of mouth samples it ever held at once."""

    widest = 0.0

    def add_mouth(self, face_id, t, mouth):
        super().add_mouth(face_id, t, mouth)
        times = [s[0] for q in self.mouths.values() for s in q]
        if times:
            KeptSpan.widest = max(KeptSpan.widest, max(times) - min(times))


def test_a_long_silence_keeps_only_the_history_of_mouths(face_image, models, tmp_path, monkeypatch):
    """Who speaks is decided only where there is speech; in a silent stretch the mouths seen
    must still be let go, in a file and in a stream, or memory grows with the video."""
    import emocli.pipeline as pipeline

    monkeypatch.setattr(pipeline, "SpeakerDetector", KeptSpan)
    seconds, fps = 16, 10
    frames = [scene(face_image, size=(240, 320), at=((20, 60),), scale=SCALE)] * (seconds * fps)
    video = make_video(tmp_path / "silent.mp4", frames, fps, np.zeros(seconds * SR, np.float32))
    KeptSpan.widest = 0.0
    df = emocli.analyze(video, interval=1.0, **models)
    assert df["face_id"].notna().all() and not df["voice_active"].any()
    bound = SpeakerDetector().history + 1.0 + 0.5  # a decision's seconds, the interval being read, a sample
    assert 0 < KeptSpan.widest <= bound

    KeptSpan.widest = 0.0
    with pipeline.Analyzer(interval=1.0, **models) as analyzer:
        state = analyzer.stream(has_audio=True)
        silence = np.zeros(int(analyzer.options.window * SR), np.float32)
        for i in range(seconds):
            shots = [(i + (j + 0.5) / 3, frames[0]) for j in range(3)]
            rows = analyzer.step(state, "live", (i, i + 1.0), shots, (silence, int((i - 0.5) * SR)))
            assert rows[0].face is not None
    assert 0 < KeptSpan.widest <= bound
