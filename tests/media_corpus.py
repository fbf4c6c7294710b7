"""Builders for awkward and broken media: the inputs a batch over a real folder meets.

Every file is small (160x120 or less, 1-3 s, 10 fps) and made with the bundled ffmpeg,
so the whole corpus builds in a few seconds. ``build_corpus`` writes them all into one
folder and returns what each should end as; the robustness tests run one batch over it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from conftest import CLIPS, make_video, scene, tone, write_wav

from emocli.media import ffmpeg

FPS = 10.0
SIZE = (120, 160)  # height, width
FACE_AT = ((5, 40),)  # top-left of the pasted face in a SIZE frame
FACE_SCALE = 0.5  # face_image is ~220 px: ~110 px in the frame


@dataclass(frozen=True)
class Case:
    path: Path
    status: str  # "ok" or "failed"
    error: str = ""  # for failed cases: a fragment the one-line message must contain


def face_frames(face_image: np.ndarray, seconds: float, size=SIZE, at=FACE_AT, scale=FACE_SCALE) -> list[np.ndarray]:
    frame = scene(face_image, size=size, at=at, scale=scale)
    return [frame] * max(1, int(round(seconds * FPS)))


def ffmpeg_run(*args: str) -> None:
    subprocess.run([ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args], check=True)


def clip(path: Path, face_image: np.ndarray, seconds: float = 2.0, audio: bool = True, **kwargs) -> Path:
    """A face on grey, with a tone as its voice: the ordinary healthy input."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_video(path, face_frames(face_image, seconds), FPS, tone(seconds) if audio else None, **kwargs)


def truncated(path: Path, source: Path) -> Path:
    """The first half of ``source``'s bytes, as a download cut short would leave it."""
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def corrupted_middle(path: Path, source: Path, block: int = 2048) -> Path:
    """``source`` with a block of bytes in its middle overwritten (a bad sector, a bad copy)."""
    data = bytearray(source.read_bytes())
    start = len(data) // 2
    data[start : start + block] = np.random.default_rng(0).integers(0, 256, block, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def speech(seconds: float) -> np.ndarray:
    """Real speech (a CREMA-D sentence, 16 kHz), cut or repeated to ``seconds``: what the
    voice-activity detector must hear as speech (a tone is not)."""
    from emocli.media import read_audio

    voice = read_audio(CLIPS / "1001_DFA_ANG_XX.mp4")
    return np.resize(voice, int(seconds * 16_000))


def audio_only(path: Path, seconds: float = 2.0) -> Path:
    wav = write_wav(path.with_suffix(".src.wav"), speech(seconds))
    ffmpeg_run("-i", str(wav), "-c:a", "aac", str(path))
    wav.unlink()
    return path


def rotated(path: Path, face_image: np.ndarray, seconds: float = 1.0) -> Path:
    """A phone video: frames stored landscape, with a display matrix that turns them upright.

    The upright (displayed) frame is portrait with the face at FACE_AT; what is stored is
    that frame turned clockwise, so only a reader that applies the rotation sees a face.
    """
    import cv2

    upright = scene(face_image, size=(SIZE[1], SIZE[0]), at=((20, 5),), scale=FACE_SCALE)  # 120 wide, 160 high
    stored = cv2.rotate(upright, cv2.ROTATE_90_CLOCKWISE)
    plain = make_video(path.with_suffix(".plain.mp4"), [stored] * int(seconds * FPS), FPS, tone(seconds))
    # -display_rotation is an input option: counter-clockwise degrees for the display matrix.
    ffmpeg_run("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(path))
    plain.unlink()
    return path


def odd_sized(path: Path, seconds: float = 1.0) -> Path:
    """33x17 frames: 4:4:4 H.264 keeps odd sizes, where 4:2:0 would force even ones."""
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (17, 33, 3), dtype=np.uint8) for _ in range(int(seconds * FPS))]
    return make_video(path, frames, FPS, speech(seconds), codec=["-c:v", "libx264", "-pix_fmt", "yuv444p"])


def variable_rate(path: Path, face_image: np.ndarray, seconds: float = 3.0) -> Path:
    """Two frames of every five dropped, their timestamps kept: gaps in the frame times."""
    codec = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-vf", "select='lt(mod(n\\,5)\\,3)'", "-fps_mode", "vfr"]
    return make_video(path, face_frames(face_image, seconds), FPS, tone(seconds), codec=codec)


def webm(path: Path, face_image: np.ndarray, seconds: float = 1.0) -> Path:
    frames = face_frames(face_image, seconds)
    wav = write_wav(path.with_suffix(".src.wav"), tone(seconds))
    raw = path.with_suffix(".src.raw")
    raw.write_bytes(b"".join(np.ascontiguousarray(f).tobytes() for f in frames))
    h, w = frames[0].shape[:2]
    ffmpeg_run(
        "-f",
        "rawvideo",
        "-pix_fmt",
        "bgr24",
        "-s",
        f"{w}x{h}",
        "-r",
        str(FPS),
        "-i",
        str(raw),
        "-i",
        str(wav),
        "-c:v",
        "libvpx-vp9",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-c:a",
        "libopus",
        str(path),
    )
    wav.unlink()
    raw.unlink()
    return path


def build_corpus(root: Path, face_image: np.ndarray) -> dict[str, Case]:
    """Every awkward input, under ``root``; keys name the case, values say how it must end."""
    root.mkdir(parents=True, exist_ok=True)
    work = root.parent / f".{root.name}-sources"  # intermediates, outside the batch's input
    work.mkdir(exist_ok=True)
    cases: dict[str, Case] = {}

    def ok(name: str, path: Path) -> None:
        cases[name] = Case(path, "ok")

    def failed(name: str, path: Path, error: str) -> None:
        cases[name] = Case(path, "failed", error)

    (root / "empty.mp4").write_bytes(b"")
    failed("zero bytes", root / "empty.mp4", "empty file")
    (root / "random.mp4").write_bytes(np.random.default_rng(2).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    failed("random bytes", root / "random.mp4", "not a readable media file")
    (root / "notes.mov").write_text("These are my interview notes, not a video.\n" * 20)
    failed("text as .mov", root / "notes.mov", "not a readable media file")

    slow_start = clip(work / "slow_start.mp4", face_image, 2.0)  # moov atom written last
    fast_start = clip(work / "fast_start.mp4", face_image, 2.0, extra=["-movflags", "+faststart"])
    failed("truncated (moov at end)", truncated(root / "truncated.mp4", slow_start), "moov atom not found")
    ok("truncated (faststart)", truncated(root / "truncated_faststart.mp4", fast_start))
    ok("corrupted middle", corrupted_middle(root / "corrupted.mp4", fast_start))

    ok("no audio", clip(root / "silent_film.mp4", face_image, 2.0, audio=False))
    ok("audio only (.m4a)", audio_only(root / "voice_memo.m4a"))
    ok("audio only (.mp4)", audio_only(root / "podcast.mp4"))
    ok("one frame", make_video(root / "one_frame.mp4", face_frames(face_image, 0.1), FPS))
    ok("shorter than an interval", clip(root / "blink.mp4", face_image, 0.4))
    ok("rotated 90", rotated(root / "phone.mp4", face_image))
    ok("33x17 frames", odd_sized(root / "tiny.mp4"))
    ok("variable frame rate", variable_rate(root / "vfr.mp4", face_image))
    ok("VP9/Opus webm", webm(root / "web.webm", face_image))
    shutil.copy(CLIPS / "1001_DFA_HAP_XX.flv", root / "legacy.flv")
    ok("FLV", root / "legacy.flv")
    ok("upper-case extension", clip(root / "CLIP.MP4", face_image, 1.0))
    ok("non-ASCII name with spaces", clip(root / "entrevista café 1.mp4", face_image, 1.0))
    ok("same name in a/", clip(root / "a" / "clip.mp4", face_image, 1.0))
    ok("same name in b/", clip(root / "b" / "clip.mp4", face_image, 1.0))

    os.symlink(root / "gone.mp4", root / "dangling.mp4")
    failed("dangling symlink", root / "dangling.mp4", "broken symbolic link")
    if os.geteuid() != 0:  # root reads a chmod 000 file anyway
        locked = clip(root / "locked.mp4", face_image, 1.0)
        locked.chmod(0)
        failed("no read permission", locked, "permission denied")
    return cases


# ---------------------------------------------------------------- timing: where streams start and end


def _wav(path: Path, signal: np.ndarray) -> Path:
    return write_wav(path.with_suffix(".src.wav"), signal)


def _silent_video(path: Path, face_image: np.ndarray | None, seconds: float, fps: float = FPS) -> Path:
    frames = face_frames(face_image, seconds) if face_image is not None else [scene(None, size=SIZE)]
    frames = frames[:1] * max(1, int(round(seconds * fps)))
    return make_video(path, frames, fps)


def _mux_late(path: Path, video: Path, wav: Path, delay: float, late: str) -> Path:
    """Mux ``video`` and ``wav`` into ``path`` with the ``late`` stream ("audio" or "video")
    starting ``delay`` seconds in (``-itsoffset`` on its input)."""
    offset = ["-itsoffset", str(delay)]
    inputs = ["-i", str(video), *(offset if late == "audio" else []), "-i", str(wav)]
    if late == "video":
        inputs = [*offset, *inputs]
    ffmpeg_run(*inputs, "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(path))
    video.unlink()
    wav.unlink()
    return path


def late_audio(path: Path, face_image: np.ndarray, delay: float = 3.0, speech_s: float = 2.0) -> Path:
    """A face from 0 s; speech that starts ``delay`` seconds in (the audio stream starts late)."""
    video = _silent_video(path.with_suffix(".v.mp4"), face_image, delay)
    return _mux_late(path, video, _wav(path, speech(speech_s)), delay, "audio")


def late_video(path: Path, face_image: np.ndarray, delay: float = 2.0, seconds: float = 5.0) -> Path:
    """Speech from 0 s; the video (a face) starts ``delay`` seconds in: an MP4 edit list places it."""
    video = _silent_video(path.with_suffix(".v.mp4"), face_image, seconds - delay)
    return _mux_late(path, video, _wav(path, speech(seconds)), delay, "video")


def ts_offset(path: Path, face_image: np.ndarray, seconds: float = 3.0, offset: float = 10.0) -> Path:
    """MPEG-TS whose timestamps start ``offset`` seconds (plus the muxer's own 1.4 s) in."""
    plain = make_video(path.with_suffix(".plain.mp4"), face_frames(face_image, seconds), FPS, speech(seconds))
    ffmpeg_run("-i", str(plain), "-c", "copy", "-output_ts_offset", str(offset), "-f", "mpegts", str(path))
    plain.unlink()
    return path


def slide_show(path: Path, face_image: np.ndarray, seconds: float = 10.0, fps: float = 0.5) -> Path:
    """A face in every frame, one frame every 2 s."""
    frame = scene(face_image, size=SIZE, at=FACE_AT, scale=FACE_SCALE)
    return make_video(path, [frame] * int(seconds * fps), fps)


def dv_tape(path: Path, face_image: np.ndarray, seconds: float = 3.0) -> Path:
    """A raw DV capture (NTSC, 29.97 fps) whose header claims 60000 frames a second."""
    frames = face_frames(face_image, seconds, size=(480, 720))
    return make_video(path, frames, 30000 / 1001, codec=["-c:v", "dvvideo", "-pix_fmt", "yuv411p", "-f", "dv"])


def lying_header(path: Path, face_image: np.ndarray, seconds: float = 2.3, claims_s: float = 3600.0) -> Path:
    """A Matroska file whose Segment Duration claims ``claims_s`` over ``seconds`` of media."""
    import struct

    clip(path, face_image, seconds)
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89\x88")  # EBML Duration, an 8-byte float in milliseconds
    assert at > 0, "no Matroska Duration element"
    data[at + 3 : at + 11] = struct.pack(">d", claims_s * 1000.0)
    path.write_bytes(bytes(data))
    return path


def two_audio_tracks(path: Path, face_image: np.ndarray, seconds: float = 2.0) -> Path:
    """A first, non-default track (a tone) and a second, default one (speech)."""
    video = _silent_video(path.with_suffix(".v.mp4"), face_image, seconds)
    tone_wav, speech_wav = _wav(path.with_suffix(".t.mp4"), tone(seconds)), _wav(path, speech(seconds))
    ffmpeg_run(
        "-i",
        str(video),
        "-i",
        str(tone_wav),
        "-i",
        str(speech_wav),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-map",
        "2:a",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-disposition:a:0",
        "0",
        "-disposition:a:1",
        "default",
        str(path),
    )
    for p in (video, tone_wav, speech_wav):
        p.unlink()
    return path


def broken_float_audio(path: Path, face_image: np.ndarray, seconds: float = 3.0) -> Path:
    """Float PCM speech with a stretch of NaN and a few infinite samples (a broken recorder)."""
    samples = speech(seconds).astype("<f4")
    samples[16_000:20_000] = np.nan
    samples[30_000:30_010] = np.inf
    samples[30_010:30_020] = -np.inf
    raw = path.with_suffix(".f32")
    raw.write_bytes(samples.tobytes())
    video = _silent_video(path.with_suffix(".v.mp4"), face_image, seconds)
    ffmpeg_run(
        "-i",
        str(video),
        "-f",
        "f32le",
        "-ar",
        "16000",
        "-ac",
        "1",
        "-i",
        str(raw),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "copy",
        "-c:a",
        "pcm_f32le",
        str(path),
    )
    video.unlink()
    raw.unlink()
    return path
