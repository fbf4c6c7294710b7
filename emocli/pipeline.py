"""One video in, one timeline out: ``emocli.analyze(path) -> pandas.DataFrame``.

Every ``interval`` seconds: the faces found in the frame nearest the interval's middle (a face
of the interval before that the detector missed there, in its other frames) are tracked
(ids), followed through the interval's other sampled frames and classified in a few of them
(pooled); the ``window`` seconds of audio centred on the same instant go
through the voice-activity detector and, if voiced, the voice model; the face whose mouth
moves with the speech is the speaker, and the voice is fused into that face alone.
Frames and audio are each decoded once, as streams.
"""

from __future__ import annotations

import errno
import math
import os
from collections import deque
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from .faces import FaceDetector, FaceFollower, FaceTracker, align_face, distinct, frame_scale
from .fusion import MODES, fuse
from .labels import LABELS
from .media import AudioStream, MediaError, frame_sampler, probe
from .models import FaceModel, ModelError, VoiceModel, default_model_path
from .resources import Plan
from .speaker import SpeakerDetector, loudness, mouth_patch
from .timeline import Emotion, FaceResult, Row, Timeline
from .usage import LIMITS, check, check_count
from .vad import DEFAULT_THRESHOLD, SpeechDetector, SpeechTrack
from .vad import FRAME as VAD_FRAME
from .vad import SAMPLE_RATE as VAD_RATE


@dataclass
class AnalyzeOptions:
    interval: float = 1.0
    window: float = 2.0
    face_model: str | Path | None = None
    voice_model: str | Path | None = None
    fusion: str = "weighted"
    face_weight: float | None = None
    max_faces: int = 8
    min_face: float = 0.05
    min_face_score: float = 0.5
    vad_threshold: float = DEFAULT_THRESHOLD  # speech probability of a 32 ms frame that counts as speech
    # Per classified frame: the crop once (False), or the face model's views (zooms x
    # mirror, True): six times the model time for little more accuracy once frames are
    # pooled (benchmarks/av_validation.py --faces).
    face_views: bool = False
    # Frames sampled per second, for the faces' emotion (face_frames of them) and their mouths
    # (who speaks): each costs its decoding to pixels and following its faces, so three a
    # second keep a CSV run near the cost of decoding the video (benchmarks/floor.py).
    frame_rate: float = 3.0
    face_frames: int = 3  # of an interval's sampled frames, how many are classified and pooled per face
    threads: int = 0  # onnxruntime threads per model; 0: one (the models are small)
    decode_threads: int = 0  # ffmpeg threads decoding the frames; 0: resources.Plan.local()'s

    def __post_init__(self):
        for name in LIMITS:
            if name != "face_weight" or self.face_weight is not None:
                setattr(self, name, check(name, getattr(self, name)))
        if not isinstance(self.face_views, bool):
            raise TypeError(f"face_views must be True or False, not {self.face_views!r}")
        for name in ("threads", "decode_threads"):
            setattr(self, name, check_count(name, getattr(self, name)))
        for name in ("face_model", "voice_model"):
            if not isinstance(getattr(self, name), str | Path | None):
                raise TypeError(f"{name} must be a path to a .onnx file, not {getattr(self, name)!r}")
        if self.fusion not in MODES:
            raise ValueError(f"fusion must be one of {MODES}, not {self.fusion!r}")
        if self.face_weight is not None and self.fusion != "weighted":
            raise ValueError(f"face_weight weighs face against voice: it does not go with fusion={self.fusion!r}")


# How often (seconds) the centre frame's parts are searched for faces the whole frame's pass
# is too coarse for (once found, a face is looked for close up every interval: ``_missed``):
# every 2 s at first and after a search or the whole frame's pass found someone new, twice
# as long after each search that found no one new, up to 16 s; every 30 s in a close-up of
# one person.
PARTS_EVERY_S = 2.0
PARTS_EVERY_MAX_S = 16.0
PARTS_EVERY_CLOSE_UP_S = 30.0
CLOSE_UP = 0.25  # a face this share of the frame's shorter side, or more, alone in it (none other followed)


@dataclass
class StreamState:
    """What one stream carries from interval to interval: its faces' ids, the voice-activity
    detector's memory, and the mouths and loudness that tell who speaks."""

    tracker: FaceTracker
    speech: SpeechTrack
    speakers: SpeakerDetector
    has_audio: bool = True
    parts_searched: float = -math.inf  # when the frame's parts were last searched for faces (FaceDetector.detect_parts)
    parts_every: float = PARTS_EVERY_S  # seconds to the next search


def _model_path(given: str | Path | None, task: str) -> Path:
    if given is not None:
        return Path(given)
    found = default_model_path(task)
    if found is None:
        raise ModelError(f"no {task} model: none is shipped with this install; pass --{task}-model MODEL.onnx")
    return found


class Analyzer:
    """Models and detector loaded once, then any number of videos analysed with them."""

    def __init__(self, options: AnalyzeOptions | None = None, **kwargs):
        """``options``, or the keyword arguments of ``AnalyzeOptions`` (given with ``options``,
        they replace its values)."""
        self.options = replace(options, **kwargs) if options is not None else AnalyzeOptions(**kwargs)
        o = self.options
        self.face_model = FaceModel(_model_path(o.face_model, "face"), o.threads, views=o.face_views)
        self.voice_model = VoiceModel(_model_path(o.voice_model, "voice"), o.threads)
        if self.voice_model.sample_rate != VAD_RATE:
            raise ModelError(
                f"{self.voice_model.info.path}: the voice-activity detector hears {VAD_RATE} Hz audio; "
                f"this model was trained at {self.voice_model.sample_rate} Hz"
            )
        # None: fusion.py's fitted rule, which weighs each interval's two confidences.
        self.face_weight = o.face_weight
        self.speech = SpeechDetector(o.vad_threshold)
        self.detector = FaceDetector(o.min_face_score, None, o.min_face)  # last: it holds native resources

    def close(self) -> None:
        self.detector.close()

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def analyze(self, path: str | Path):
        """The timeline of one video as a pandas DataFrame (see ``emocli.analyze``). A missing
        file raises FileNotFoundError; one that cannot be read as media, MediaError naming it."""
        if not os.path.lexists(path):
            raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
        try:
            return self.timeline(path).to_pandas()
        except MediaError as e:  # the batch names the video beside the message; here the message must
            raise MediaError(f"{path}: {e}") from e

    def timeline(self, path: str | Path, name: str | None = None) -> Timeline:
        """The timeline of one video; its ``video`` column holds ``name`` (default: the path)."""
        # BLAS threads spin between the voice features' small matrix products and take the
        # cores ffmpeg decodes on: one thread halves the CPU time of a video here.
        with threadpool_limits(1, user_api="blas"):
            return self._timeline(Path(path), str(path) if name is None else name)

    def _timeline(self, path: Path, name: str) -> Timeline:
        info = probe(path)
        if not info.has_video and not info.has_audio:
            raise MediaError("no video or audio stream")
        o = self.options
        # The media's own length (its packets), on its presentation timeline: a header that
        # claims more is not believed, and info.note says so.
        duration = info.duration
        if duration <= 0:
            raise MediaError("cannot tell the duration (no readable frames or samples)")
        spans = interval_spans(duration, o.interval)
        centres = [(a + b) / 2 for a, b in spans]
        grid = _frame_times(spans, o.interval, _per_interval(o, info.fps if info.has_video else 0.0))
        times = [t for ts in grid for t in ts]
        threads = o.decode_threads or Plan.local().decode_threads
        # Each stream placed where it starts: a video or audio that begins late is seen or heard then.
        frames = frame_sampler(info, times, threads, reach=o.interval / 2) if info.has_video else None
        audio = (
            AudioStream(path, self.voice_model.sample_rate, info.audio_stream, info.audio_offset, info.audio_channels)
            if info.has_audio
            else None
        )
        stream = self.stream(info.has_audio)
        rows: list[Row] = []
        # A file's intervals wait until the mouths and loudness of the seconds around them
        # are in, then who speaks is decided over those (SpeakerDetector.centred).
        waiting: deque[tuple[float, list[Row]]] = deque()

        def settle(until: float) -> None:
            while waiting and stream.speakers.centred(waiting[0][0], duration)[1] <= until + 1e-6:
                rows.extend(self._speaker_decided(stream.speakers, *waiting.popleft(), duration))
            if waiting:  # no later decision starts before the oldest waiting one's seconds
                stream.speakers.forget(stream.speakers.centred(waiting[0][0], duration)[0])

        def hear_gap(until: int) -> None:
            """Audio between windows (an interval longer than the window) goes to the detector
            alone, in whole frames, so speech_s counts all the speech whatever the interval."""
            start, end = stream.speech.heard_until, math.ceil(until / VAD_FRAME) * VAD_FRAME
            if end > start:
                stream.speech.window(audio.samples(start, end - start), start)

        audio_end = math.ceil(duration * VAD_RATE)  # the stream sample where the media ends
        try:
            sampled = frames.frames_at(times) if frames is not None else ((t, None) for t in times)
            for span, centre, ts in zip(spans, centres, grid):
                shots = [next(sampled) for _ in ts]  # (time, frame or None) of the interval's sampled frames
                heard = None
                if audio is not None:
                    begin = audio.window_start(centre, o.window)
                    hear_gap(begin)
                    heard = (audio.window(centre, o.window), begin)
                waiting.append((centre, self.step(stream, name, span, shots, heard, False, audio_end)))
                settle(ts[-1])
            if audio is not None:
                hear_gap(audio_end)
            settle(math.inf)
        finally:
            if frames is not None:
                frames.close()
            if audio is not None:
                audio.close()
        facts = dict(
            video=name,
            duration_s=round(duration, 3),
            speech_s=round(min(stream.speech.speech_s, duration), 3),  # its last 32 ms slice may pass the end
            has_video=info.has_video,
            has_audio=info.has_audio,
            width=info.width,
            height=info.height,
            fps=info.fps,
            face_weight=self.face_weight,
            fusion=o.fusion,
            note=info.note,
        )
        return Timeline(rows, facts)

    def stream(self, has_audio: bool = True) -> StreamState:
        """A fresh state for one video or live stream, handed to ``step`` interval after interval."""
        return StreamState(FaceTracker(), self.speech.track(), SpeakerDetector(), has_audio)

    def step(
        self,
        stream: StreamState,
        name: str,
        span: tuple[float, float],
        shots: list[tuple[float, np.ndarray | None]],
        audio: tuple[np.ndarray, int] | None = None,
        who_speaks: bool = True,
        audio_end: int | None = None,
    ) -> list[Row]:
        """One interval's timeline rows: ``shots`` are its sampled frames ((time, frame or
        None), in time order), ``audio`` the ``window`` seconds of audio centred on its
        middle and the stream sample that window begins at (None: the stream has no sound),
        ``audio_end`` the stream sample where the media ends, if known: the part of the
        window past it is padding, which does not count against its share of speech.
        Intervals come in time order; ``stream`` carries what one needs from the one before.
        Who speaks is decided over the seconds up to the interval's last frame; with
        ``who_speaks`` False it is left to ``_speaker_decided`` (every face's own emotion
        is its fused one until then)."""
        start, end = span
        centre = (start + end) / 2
        ts = [t for t, _ in shots]
        voice = None
        active = False
        if audio is not None:
            window, begin = audio
            rate = self.voice_model.sample_rate
            inside = len(window) if audio_end is None else max(1, min(len(window), audio_end - begin))
            active = self.speech.is_voiced(stream.speech.window(window[:inside], begin))
            if active:
                voice = self.voice_model.predict([window], stream.speech.speech_level)[0]
            for t, level in zip(ts, loudness(window, begin / rate, ts, rate)):
                stream.speakers.add_loudness(t, level)
        speakers = stream.speakers if audio is not None else None
        faces, ids, probs, tracks = self._faces(shots, centre, stream, speakers)
        speaking = stream.speakers.speaking(ids, ts[-1]) if who_speaks and active and faces else {}
        if who_speaks:  # a stream decides over the history up to now: nothing older is needed again
            stream.speakers.forget(ts[-1] - stream.speakers.history)
        rows = []
        if not faces:
            rows.append(self._row(name, span, None, active, voice))
        for face, face_id, p, track in sorted(zip(faces, ids, probs, tracks), key=lambda f: f[1]):  # by id
            score = round(face.score, 4)
            seen = FaceResult(int(face_id), face.box, score, Emotion.of(p), speaking.get(face_id), tuple(track))
            rows.append(self._row(name, span, seen, active, voice))
        return rows

    def _faces(self, shots: list, centre: float, stream: StreamState, speakers: SpeakerDetector | None):
        """One interval's faces: detected in the sampled frame nearest its centre (in its
        corners too, now and then: ``PARTS_EVERY_S``; a face followed before and missed
        there, close up: ``_missed``), at most ``max_faces`` of them, tracked (ids), followed
        through its other sampled frames (their mouths go to ``speakers``), and classified
        in ``face_frames`` of them, eyes levelled, probabilities averaged. A frame where a
        face is not found (it came or went, a cut) is not its: no crop, no mouth, no place
        on its track."""
        tracker = stream.tracker
        seen = [j for j, (_, frame) in enumerate(shots) if frame is not None]
        if not seen:
            return [], [], np.zeros((0, len(LABELS))), []
        c = min(seen, key=lambda j: abs(shots[j][0] - centre))
        t, frame = shots[c]
        faces = self.detector.detect(frame)
        short = min(frame.shape[:2]) * frame_scale(frame)
        close_up = len(faces) == 1 and faces[0].h >= CLOSE_UP * short and len(tracker.tracks) <= 1
        if not all(tracker.follows(f.box) for f in faces):  # someone new, or a new shot: others may be there
            stream.parts_every = PARTS_EVERY_S
        if t >= stream.parts_searched + (PARTS_EVERY_CLOSE_UP_S if close_up else stream.parts_every):
            stream.parts_searched = t
            more = distinct(self.detector.detect_parts(frame), faces)
            new = not all(tracker.follows(f.box) for f in more)
            stream.parts_every = PARTS_EVERY_S if new else min(2 * stream.parts_every, PARTS_EVERY_MAX_S)
            faces += more
        faces = [faces[i] for i in tracker.preferred([f.box for f in faces], self.options.max_faces)]
        ids = tracker.update([f.box for f in faces])
        origins = [c] * len(faces)  # the frame each face was detected in
        for j, face, face_id in self._missed(shots, seen, c, faces, tracker):
            faces.append(face)
            ids.append(face_id)
            origins.append(j)
        if not faces:
            return faces, ids, np.zeros((0, len(LABELS))), []
        crops: list[list] = [[] for _ in faces]
        tracks: list[list] = [[] for _ in faces]  # (t, x, y, w, h) where each face was followed
        for k, (face, o) in enumerate(zip(faces, origins)):
            classify = _spread(seen, o, self.options.face_frames)
            used = [j for j in seen if j in classify or speakers is not None]
            where = {o: face}
            if len(seen) > 1:
                follower = FaceFollower(shots[o][1], face)
                # Outwards from the detection, each frame searched around the face's place in
                # the one before: a moving head is followed in steps, not one long jump.
                for side in ([j for j in used if j > o], [j for j in reversed(used) if j < o]):
                    before = face
                    for j in side:
                        where[j] = follower.find(shots[j][1], before)
                        before = where[j] or before
            for j in used:
                t, frame = shots[j]
                if where.get(j) is None:
                    continue
                tracks[k].append((round(t, 3), *where[j].box))
                if speakers is not None:
                    speakers.add_mouth(ids[k], t, mouth_patch(frame, where[j]))
                if j in classify:
                    crops[k].append(align_face(frame, where[j], self.face_model.crop_margin))
        probs = self.face_model.predict([crop for per_face in crops for crop in per_face])
        # Each face has its detection frame's crop at least (its origin is always classified).
        ends = np.cumsum([len(per_face) for per_face in crops])
        pooled = np.stack([probs[e - len(per_face) : e].mean(axis=0) for e, per_face in zip(ends, crops)])
        for face_id, track in zip(ids, tracks):
            if len(track) > 1:  # where the face is heading: the next detection is matched against it
                (t0, x0, y0, *_), (t1, x1, y1, w, h) = track[0], track[-1]
                ahead = (centre + self.options.interval - t1) / max(t1 - t0, 1e-3)
                tracker.moved(face_id, (round(x1 + (x1 - x0) * ahead), round(y1 + (y1 - y0) * ahead), w, h))
        return faces, ids, pooled, tracks

    def _missed(self, shots: list, seen: list[int], c: int, faces: list, tracker: FaceTracker):
        """Faces of the interval before that the whole frame's pass missed in the centre frame
        (too small for it, a blink, a passing hand, blur, a half-turned head), looked for
        close up around where each was heading: in the centre frame, then in the interval's
        other sampled frames, nearest the centre first. ``(frame index, face, id)`` each.
        Only a missed track costs detections more, each of a small part of the frame; one
        that has left costs them for one interval."""
        found: list[tuple] = []
        for track_id in tracker.lost():
            for j in sorted(seen, key=lambda j: abs(j - c)):
                if len(faces) + len(found) >= self.options.max_faces:
                    return found
                x, y, w, h = tracker.box(track_id)
                near = self.detector.detect(shots[j][1], (x - w, y - h, 3 * w, 3 * h))
                near = distinct(near, [*faces, *(f for _, f, _ in found)])
                best = max(near, key=lambda f: tracker.affinity(track_id, f.box), default=None)
                if best is not None and tracker.affinity(track_id, best.box) > 0:
                    tracker.found(track_id, best.box)
                    found.append((j, best, track_id))
                    break
        return found

    def _speaker_decided(self, speakers: SpeakerDetector, centre: float, rows: list[Row], duration: float) -> list[Row]:
        """An interval's rows with who speaks decided over the ``history`` seconds centred on
        it (within the video), and the voice fused into the speaker's row."""
        ids = [r.face.id for r in rows if r.face is not None]
        if not ids or not rows[0].voice_active or rows[0].voice is None:
            return rows
        start, end = speakers.centred(centre, duration)
        speaking = speakers.speaking(ids, end, start)
        return [
            self._row(r.video, (r.t_start, r.t_end), replace(r.face, speaking=speaking[r.face.id]), True, r.voice.p)
            for r in rows
        ]

    def _row(self, name: str, span: tuple, face: FaceResult | None, active: bool, voice_p) -> Row:
        # The voice is the speaker's: fused into the face that speaks (or, with no face on
        # screen, standing alone), never into a face that only listens, whatever the mode:
        # with --fusion voice a listener has no fused emotion rather than the speaker's.
        heard = voice_p if face is None or face.speaking else None
        fused = fuse(face.emotion.p if face else None, heard, self.options.fusion, self.face_weight)
        return Row(
            name,
            round(span[0], 3),
            round(span[1], 3),
            face,
            bool(active),
            Emotion.of(voice_p) if voice_p is not None else None,
            Emotion.of(fused) if fused is not None else None,
        )


# A remainder shorter than this share of an interval (streams a few milliseconds apart)
# joins the last interval rather than making a row of its own.
MIN_LAST_SHARE = 0.1


def interval_spans(duration: float, interval: float) -> list[tuple[float, float]]:
    """The ``(start, end)`` of each interval of media ``duration`` seconds long. The last one
    ends at ``duration``: shorter than ``interval``, or longer by less than ``MIN_LAST_SHARE``
    of it."""
    n = max(1, math.ceil(duration / interval - MIN_LAST_SHARE))
    return [(i * interval, (i + 1) * interval if i < n - 1 else duration) for i in range(n)]


def _per_interval(o: AnalyzeOptions, fps: float) -> int:
    """Frames to sample per interval: ``frame_rate`` a second (at least three), at most a quarter of the
    video's rate. The sampler decodes reference frames only: with up to three unreferenced
    B-frames in a row (x264's default) a quarter of the rate is always there, and asking
    for more would return the same frame twice."""
    if fps <= 0:
        return 1
    cap = int(o.interval * fps / 4 + 1e-9)
    # At least three, whatever the rate: who speaks compares a mouth across an interval's frames.
    return max(1, min(max(3, round(o.interval * o.frame_rate)), cap))


def _frame_times(spans: list[tuple[float, float]], interval: float, per_interval: int) -> list[list[float]]:
    """Per interval, the times of its sampled frames: ``per_interval`` evenly spaced across a
    whole interval (an odd count, so one falls on its middle); in a final, shorter one those
    before its end, or its middle where none is. Together they form one even grid (but for
    that middle, which may end it), which FrameSampler decodes in one pass."""
    k = max(1, int(per_interval))
    k -= 1 - k % 2  # odd, never more
    step = interval / k
    out = []
    for start, end in spans:
        ts = [start + (j + 0.5) * step for j in range(k)]
        out.append([t for t in ts if t < end - 1e-9] or [(start + end) / 2])
    return out


def _spread(seen: list[int], centre: int, n: int) -> list[int]:
    """``n`` of the frame indices ``seen``, one in the middle of each n-th of them, the one
    nearest the interval's centre (``centre``, where the face was detected) among them."""
    if n >= len(seen):
        return list(seen)
    picks = [seen[round((q + 0.5) * len(seen) / n - 0.5)] for q in range(n)]
    nearest = min(range(n), key=lambda i: abs(picks[i] - centre))
    picks[nearest] = centre
    return sorted(set(picks))


def analyze(path: str | Path, **options):
    """The emotion timeline of one video as a DataFrame (columns: ``timeline.COLUMNS``).

    Options are ``AnalyzeOptions`` fields, the command line's options of the same names:
    interval, window, face_model, voice_model, fusion, face_weight, max_faces, min_face,
    min_face_score, vad_threshold, face_frames, face_views (and frame_rate, threads,
    decode_threads); a value out of range raises ValueError, one of the wrong type
    TypeError. Video-level facts (duration, speech seconds, distinct faces) are in
    ``DataFrame.attrs``. A missing file raises FileNotFoundError, one that cannot be read as
    media ``emocli.MediaError``, a model that cannot be used ``emocli.ModelError``. For many
    videos, build one ``emocli.Analyzer`` and call its ``analyze`` so the models load once.
    """
    unknown = set(options) - {f.name for f in fields(AnalyzeOptions)}
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    with Analyzer(AnalyzeOptions(**options)) as analyzer:
        return analyzer.analyze(path)
