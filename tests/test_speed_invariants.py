"""The speed-ups change nothing users see: same sampled frames, boxes within a few pixels.

Timings live in benchmarks/; these tests only pin the behaviour the fast paths must keep.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import CLIPS, make_video, scene, tone

from emocli.media import FrameReader, FrameSampler, frame_sampler, probe


def centres(duration: float, interval: float) -> list[float]:
    n = max(1, math.ceil(duration / interval - 1e-6))
    return [(i * interval + min((i + 1) * interval, duration)) / 2 for i in range(n)]


def both(path, interval: float, skip: str = "none"):
    info = probe(path)
    times = centres(info.duration, interval)
    with FrameReader(path, info.video_offset, end=info.duration) as reader:  # placed as the sampler places it
        fps = reader.fps
        expected = list(reader.frames_at(times))
    with FrameSampler(path, info, fps, skip=skip) as sampler:
        got = list(sampler.frames_at(times))
    return expected, got


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, face_image):
    from emocli.media import ffmpeg

    root = tmp_path_factory.mktemp("sampler")
    clip = CLIPS / "1001_DFA_ANG_XX.mp4"  # starts at 0.033 s: frame times count from the stream's start
    rotated = root / "rotated.mp4"
    subprocess.run(
        [ffmpeg(), "-v", "error", "-display_rotation", "90", "-i", str(clip), "-c", "copy", str(rotated)], check=True
    )
    ts = root / "offset.ts"  # MPEG-TS: the stream starts at 1.4 s
    subprocess.run([ffmpeg(), "-v", "error", "-i", str(clip), "-c", "copy", "-f", "mpegts", str(ts)], check=True)
    vfr = root / "vfr.mp4"  # 10 fps, then one frame every 0.3 s
    frames = [scene(face_image, scale=0.5, at=((20 + i, 40 + 2 * i),)) for i in range(30)]
    make_video(
        vfr, frames, 10, tone(6.0), extra=["-vf", "setpts='if(lt(N,15),N*0.1,1.5+(N-15)*0.3)/TB'", "-fps_mode", "vfr"]
    )
    b_frames = root / "b_frames.mp4"  # x264 with 3 B-frames and no B-pyramid: most frames unreferenced
    subprocess.run(
        [
            ffmpeg(),
            "-v",
            "error",
            "-i",
            str(clip),
            "-c:v",
            "libx264",
            "-bf",
            "3",
            "-x264-params",
            "b-pyramid=none",
            "-an",
            str(b_frames),
        ],
        check=True,
    )
    return {
        "clip": clip,
        "rotated": rotated,
        "ts": ts,
        "vfr": vfr,
        "flv": CLIPS / "1001_DFA_HAP_XX.flv",
        "b_frames": b_frames,
    }


@pytest.mark.parametrize("name", ["clip", "rotated", "ts", "vfr", "flv"])
@pytest.mark.parametrize("interval", [1.0, 0.3, 0.05])
def test_sampler_picks_frame_reader_frames(corpus, name, interval):
    expected, got = both(corpus[name], interval)
    assert [t for t, _ in got] == [t for t, _ in expected]
    for (_, a), (_, b) in zip(expected, got, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("name", ["clip", "b_frames"])
def test_skipping_unreferenced_frames_samples_a_frame_at_most_a_few_later(corpus, name):
    """The default sampler does not decode frames nothing refers to: each sampled frame
    is FrameReader's or one of the next three, and the frames taken are never repeated."""
    path = corpus[name]
    info = probe(path)
    times = centres(info.duration, 0.5)
    with FrameReader(path) as reader:
        fps = reader.fps
    candidates = []
    for k in range(4):
        with FrameReader(path, info.video_offset, end=info.duration) as reader:
            candidates.append([f for _, f in reader.frames_at([t + k / fps for t in times])])
    with FrameSampler(path, info, fps) as sampler:
        got = [f for _, f in sampler.frames_at(times)]
    assert len(got) == len(times)
    exact = 0
    for i, frame in enumerate(got[:-1]):  # the last time may fall past the end
        matches = [k for k in range(4) if candidates[k][i] is not None and np.array_equal(candidates[k][i], frame)]
        assert matches, f"frame {i} at {times[i]:.2f} s is none of the four next frames"
        exact += matches[0] == 0
    if name == "b_frames":  # unreferenced B-frames exist here, so some samples moved
        assert exact < len(got) - 1


def test_sampler_is_chosen_only_for_even_grids(corpus):
    info = probe(corpus["clip"])
    assert isinstance(frame_sampler(info, centres(info.duration, 1.0)), FrameSampler)
    uneven = frame_sampler(info, [0.1, 0.5, 0.6, 1.5])
    assert isinstance(uneven, FrameReader)
    uneven.close()
    seeking = frame_sampler(info, [3.0, 9.0, 15.0])  # long steps: OpenCV seeks
    assert isinstance(seeking, FrameReader)
    seeking.close()


def test_downscaled_detection_keeps_boxes(face_image):
    import cv2

    from emocli.faces import FaceDetector

    frame = cv2.resize(scene(face_image, size=(360, 640), at=((60, 200),)), (1280, 720))
    with FaceDetector() as det:
        fast = det.detect(frame)
        det.DOWNSCALE_ABOVE = 10_000  # full resolution, as before
        full = det.detect(frame)
    assert len(fast) == len(full) == 1
    assert max(abs(a - b) for a, b in zip(fast[0].box, full[0].box, strict=True)) <= 6
    assert abs(fast[0].score - full[0].score) < 0.08


def test_mediapipe_import_leaves_matplotlib_alone():
    code = (
        "import sys; from emocli.faces import _import_mediapipe; mp, vision, _ = _import_mediapipe(); "
        "assert 'matplotlib' not in sys.modules; vision.drawing_utils.DrawingSpec; assert 'matplotlib.pyplot' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_analysis_runs_on_one_blas_thread_and_gives_the_others_back(models, speech, tmp_path, monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    from emocli.models import VoiceModel
    from emocli.pipeline import Analyzer

    def blas_threads() -> dict[str, int]:  # NumPy's BLAS and any other loaded before the analysis
        return {pool["filepath"]: pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    seen: list[dict[str, int]] = []
    predict = VoiceModel.predict
    monkeypatch.setattr(
        VoiceModel, "predict", lambda self, w, level=None: seen.append(blas_threads()) or predict(self, w, level)
    )
    video = make_video(tmp_path / "v.mp4", [np.full((64, 64, 3), 90, np.uint8)] * 30, audio=speech[:48_000])
    with threadpool_limits(2, user_api="blas"):  # as on a 2-core machine, whatever this one has
        before = blas_threads()
        with Analyzer(**models) as analyzer:
            timeline = analyzer.analyze(video)
        after = blas_threads()
    assert before and set(before.values()) == {2} and all(after[lib] == 2 for lib in before)
    assert timeline["voice_active"].sum() >= 2 and len(seen) == timeline["voice_active"].sum()
    assert all(threads[lib] == 1 for threads in seen for lib in before)


@pytest.mark.parametrize("name", ["clip", "rotated", "ts", "vfr", "flv", "b_frames"])
def test_probe_rate_is_opencv_rate(corpus, name):
    """The sampler takes its half-frame tolerance from probe's rate, without opening OpenCV."""
    with FrameReader(corpus[name]) as reader:
        assert probe(corpus[name]).fps == pytest.approx(reader.fps, rel=0.01)


def test_decoding_leaves_a_core_to_the_analysis(models, tmp_path, monkeypatch):
    """By default the frames' ffmpeg decodes on the usable cores less one; decode_threads overrides it."""
    import emocli.resources
    from emocli.pipeline import Analyzer

    seen = []
    real = subprocess.Popen

    def spy(cmd, *a, **k):
        seen.append(cmd)
        return real(cmd, *a, **k)

    monkeypatch.setattr(subprocess, "Popen", spy)
    monkeypatch.setattr(emocli.resources, "usable_cores", lambda: 2)
    video = make_video(tmp_path / "v.mp4", [np.full((64, 64, 3), 90, np.uint8)] * 30, audio=tone(3.0))

    def threads(**options) -> list[str]:
        seen.clear()
        with Analyzer(**models, **options) as analyzer:
            assert len(analyzer.analyze(video)) == 3
        (cmd,) = [c for c in seen if "rawvideo" in c]
        head = cmd[: cmd.index("-i")]
        return head[head.index("-threads") :][:2]

    assert threads() == ["-threads", "1"]
    assert threads(decode_threads=3) == ["-threads", "3"]


@pytest.mark.parametrize("name", ["clip", "b_frames"])
def test_sampled_frames_bring_the_frames_decoded_between_them(corpus, name):
    """Each sampled frame knows its presentation time and brings the grey frames decoded
    since the one before, at their own times: about as many a second as who speaks needs."""
    path = corpus[name]
    info = probe(path)
    times = [(k + 0.5) / 3 for k in range(int(info.duration * 3))]
    with FrameReader(path, info.video_offset, end=info.duration) as reader:
        all_times = [k / reader.fps for k in range(int(info.duration * reader.fps))]
        decoded = np.array([t for t, _ in reader._candidates(all_times, 0.5 / reader.fps)])
    with FrameSampler(path, info, info.fps) as sampler:
        got = list(sampler.frames_at(times))
    between = [b for _, f in got for b in f.recent]
    stamps = [b.pts for b in between]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert all(b.pts <= f.pts + 1e-6 for _, f in got for b in f.recent)
    assert all(np.abs(decoded - t).min() < 0.002 for t in stamps)  # real frames, at their own times
    gaps = np.diff(stamps)
    assert gaps.min() >= 1 / FrameSampler.BETWEEN_RATE - 0.5 / info.fps - 1e-6
    assert len(stamps) >= 0.6 * FrameSampler.BETWEEN_RATE * (stamps[-1] - stamps[0])
    assert all(b.image.shape == (info.height, info.width) and b.scale == 1.0 for b in between)


class _Slow:
    """A pipe whose reads each wait ``delay`` seconds first: a grey-stream reader running late."""

    def __init__(self, f, delay: float):
        self.f, self.delay = f, delay

    def read(self, n: int) -> bytes:
        time.sleep(self.delay)
        return self.f.read(n)

    def close(self) -> None:
        self.f.close()


@pytest.mark.parametrize("per_second", [3, 30])
def test_grey_frames_go_with_the_sampled_frames_by_time_alone(corpus, monkeypatch, per_second):
    """Which grey frames a sampled frame brings depends on the presentation times, not on how
    far the thread reading the grey stream has got: a reader that starts late and reads slowly
    gives each sampled frame the same grey frames, all those since the frame before."""
    path = corpus["clip"]
    info = probe(path)
    times = [(k + 0.5) / per_second for k in range(int(info.duration * per_second))]

    def brought() -> list[tuple[float, list[float]]]:
        with FrameSampler(path, info, info.fps) as sampler:
            frames = [f for _, f in sampler.frames_at(times)]
        handed = [f for k, f in enumerate(frames) if k == 0 or f is not frames[k - 1]]
        return [(f.pts, [b.pts for b in f.recent]) for f in handed]

    on_time = brought()
    real = FrameSampler._read_between

    def late(self, *args):
        time.sleep(0.3)
        self._side_files[0] = _Slow(self._side_files[0], 0.003)
        real(self, *args)

    monkeypatch.setattr(FrameSampler, "_read_between", late)
    assert brought() == on_time
    previous = -math.inf
    for pts, recent in on_time:
        assert all(previous < t <= pts + 1e-6 for t in recent)  # since the frame before, up to its own
        assert recent or per_second > FrameSampler.BETWEEN_RATE
        previous = pts
    # None lost on the way: no holes, and the last come up to the last sampled frame.
    stamps = [t for _, recent in on_time for t in recent]
    most = 1 / FrameSampler.BETWEEN_RATE + 1 / info.fps + 1e-3
    assert np.diff(stamps).max() < most and on_time[-1][0] - stamps[-1] < most


def test_grey_frames_past_the_last_time_are_not_kept(corpus):
    """Asked for the start of a video only, the sampler keeps none of the grey frames ffmpeg
    decodes after it: nothing would ever take them."""
    path = corpus["clip"]
    info = probe(path)
    times = [0.2, 0.4, 0.6]
    with FrameSampler(path, info, info.fps) as sampler:
        got = [f for _, f in sampler.frames_at(times)]
        sampler._side.join(timeout=30)  # the grey stream read to the video's end
        assert not sampler._side.is_alive()
        left = [b.pts for b in sampler._recent]
    assert info.duration > 1.5 and got[-1].recent
    assert all(t <= times[-1] + 0.2 for t in left)


def test_large_frames_come_shrunk_and_faces_stay_in_decoded_pixels(face_image, tmp_path):
    from emocli.faces import FaceDetector, FaceFollower, align_face
    from emocli.speaker import mouth_patch

    frames = [scene(face_image, size=(720, 1280), at=((200 + 2 * i, 500 + 4 * i),), scale=1.6) for i in range(20)]
    path = make_video(tmp_path / "hd.mp4", frames, 10, tone(2.0))
    info = probe(path)
    times = [0.25, 0.75, 1.25, 1.75]
    with FrameReader(path, info.video_offset, end=info.duration) as reader:
        full = [f for _, f in reader.frames_at(times)]
    with FrameSampler(path, info, info.fps, skip="none") as sampler:
        small = [f for _, f in sampler.frames_at(times)]
    assert small[0].shape == (360, 640, 3) and small[0].scale == 2.0
    assert all(b.image.shape == (360, 640) and b.scale == 2.0 for f in small for b in f.recent)
    with FaceDetector() as det:
        for a, b in zip(full, small, strict=True):
            (fa,), (fb,) = det.detect(a), det.detect(b)
            assert max(abs(p - q) for p, q in zip(fa.box, fb.box, strict=True)) <= 6
            # the same crop, framed alike, from either frame
            ca, cb = align_face(a, fa, 0.1), align_face(b, fa, 0.1)
            assert abs(ca.shape[0] / cb.shape[0] - 2.0) < 0.05
        first, second = det.detect(small[0])[0], det.detect(small[1])[0]
    followed = FaceFollower(small[0], first).find(small[1])
    assert second.x - first.x >= 10 and abs(followed.x - second.x) <= 4  # followed, in decoded pixels
    assert mouth_patch(small[1], followed).recent  # the mouth comes from the grey frames between
