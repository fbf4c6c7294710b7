"""One video in, one timeline out: ``emocli.analyze(path) -> pandas.DataFrame``.

Every ``interval`` seconds: the frame at the interval's middle goes through the face
detector, the tracker and the face model; the ``window`` seconds of audio centred on
the same instant go through the voice-activity gate and the voice model; the two
distributions are fused. Frames and audio are each decoded once, as streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from .faces import FaceDetector, FaceTracker, crop_face
from .features import voice_active
from .fusion import MODES, default_face_weight, fuse
from .labels import LABELS
from .media import AudioStream, FrameReader, MediaError, decoder_threads, frame_sampler, probe
from .models import FaceModel, ModelError, VoiceModel, default_model_path
from .timeline import Timeline


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
    face_views: bool = True  # average the face model's views (zooms x mirror); False: the crop once
    threads: int = 0  # onnxruntime threads per model; 0: one (the models are small)
    decode_threads: int = 0  # ffmpeg threads decoding the frames; 0: media.decoder_threads()

    def __post_init__(self):
        if self.interval <= 0 or self.window <= 0:
            raise ValueError("interval and window must be positive")
        if self.fusion not in MODES:
            raise ValueError(f"fusion must be one of {MODES}, not {self.fusion!r}")
        if self.face_weight is not None and not 0.0 <= self.face_weight <= 1.0:
            raise ValueError("face_weight must be within [0, 1]")


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
        self.options = options or AnalyzeOptions(**kwargs)
        o = self.options
        self.face_model = FaceModel(_model_path(o.face_model, "face"), o.threads, views=o.face_views)
        self.voice_model = VoiceModel(_model_path(o.voice_model, "voice"), o.threads)
        self.face_weight = (
            o.face_weight
            if o.face_weight is not None
            else default_face_weight(self.face_model.info, self.voice_model.info)
        )
        self.detector = FaceDetector(o.min_face_score, o.max_faces, o.min_face)

    def close(self) -> None:
        self.detector.close()

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def analyze(self, path: str | Path):
        """The timeline of one video as a pandas DataFrame (see ``emocli.analyze``)."""
        return self.timeline(path).to_pandas()

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
        duration = info.duration
        if info.has_video and duration <= 0:  # the container does not say: OpenCV counts the frames
            with FrameReader(path) as reader:
                if reader.fps > 0:
                    duration = reader.cap.get(7) / reader.fps  # CAP_PROP_FRAME_COUNT
        if duration <= 0:
            raise MediaError("cannot tell the duration (no readable frames or samples)")
        n = max(1, math.ceil(duration / o.interval - 1e-6))
        spans = [(i * o.interval, min((i + 1) * o.interval, duration)) for i in range(n)]
        centres = [(a + b) / 2 for a, b in spans]
        frames = frame_sampler(info, centres, o.decode_threads or decoder_threads()) if info.has_video else None
        audio = AudioStream(path, self.voice_model.sample_rate) if info.has_audio else None
        tracker = FaceTracker()
        rows: list[dict] = []
        try:
            sampled = frames.frames_at(centres) if frames is not None else ((t, None) for t in centres)
            for (start, end), (centre, frame) in zip(spans, sampled):
                voice = None
                active = False
                if audio is not None:
                    window = audio.window(centre, o.window)
                    active = voice_active(window)
                    if active:
                        voice = self.voice_model.predict([window])[0]
                faces = self.detector.detect(frame) if frame is not None else []
                ids = tracker.update([f.box for f in faces])
                probs = self.face_model.predict([crop_face(frame, f, self.face_model.crop_margin) for f in faces])
                base = {"video": name, "t_start": round(start, 3), "t_end": round(end, 3)}
                if not faces:
                    rows.append(self._row(base, None, None, None, active, voice))
                for face, face_id, p in zip(faces, ids, probs):
                    rows.append(self._row(base, face, face_id, p, active, voice))
        finally:
            if frames is not None:
                frames.close()
            if audio is not None:
                audio.close()
        facts = dict(video=name, duration_s=round(duration, 3), has_video=info.has_video, has_audio=info.has_audio,
                     width=info.width, height=info.height, fps=info.fps, face_weight=self.face_weight, fusion=o.fusion)  # fmt: skip
        return Timeline(rows, facts)

    def _row(self, base: dict, face, face_id, face_p, active: bool, voice_p) -> dict:
        row = dict(base)
        if face is not None:
            row.update(face_id=face_id, face_x=face.x, face_y=face.y, face_w=face.w, face_h=face.h,
                       face_score=round(face.score, 4), **_summary("face", face_p))  # fmt: skip
        row["voice_active"] = active
        if voice_p is not None:
            row.update(_summary("voice", voice_p))
        fused = fuse(face_p, voice_p, self.options.fusion, self.face_weight)
        if fused is not None:
            row.update(_summary("fused", fused))
        return row


def _summary(prefix: str, p: np.ndarray) -> dict:
    k = int(np.argmax(p))
    out = {f"{prefix}_emotion": LABELS[k], f"{prefix}_confidence": float(p[k])}
    out.update({f"{prefix}_p_{label}": float(v) for label, v in zip(LABELS, p)})
    return out


def analyze(path: str | Path, **options):
    """The emotion timeline of one video as a DataFrame (columns: ``timeline.COLUMNS``).

    Options are ``AnalyzeOptions`` fields: interval, window, face_model, voice_model,
    fusion, face_weight, max_faces, min_face, face_views. Video-level facts (duration, speech
    seconds, distinct faces) are in ``DataFrame.attrs``. For many videos, build one
    ``Analyzer`` and call its ``analyze`` so the models load once.
    """
    unknown = set(options) - {f.name for f in fields(AnalyzeOptions)}
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    with Analyzer(AnalyzeOptions(**options)) as analyzer:
        return analyzer.analyze(path)
