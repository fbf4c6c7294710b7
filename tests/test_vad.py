"""The voice-activity detector: speech is speech, noise, music, hum and tones are not."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CLIPS, make_video, tone, write_wav

import emocli
from emocli.media import read_audio
from emocli.vad import FRAME, SpeechDetector

SR = 16_000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Two real sentences (CREMA-D), end to end: about 4.5 s with pauses."""
    return np.concatenate([read_audio(CLIPS / f"1001_DFA_{e}_XX.mp4", SR) for e in ("NEU", "HAP")])


def coloured_noise(seconds: float, exponent: float, seed: int = 0) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent: 0 white, 1 pink, 2 brown."""
    n = int(seconds * SR)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.maximum(np.arange(len(spectrum)), 1.0)
    y = np.fft.irfft(spectrum / f ** (exponent / 2), n)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def chord(seconds: float) -> np.ndarray:
    """A C major synth chord with harmonics and a slow tremolo: music, not speech."""
    t = np.arange(int(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * f * k * t) / k for f in (261.63, 329.63, 392.0) for k in (1, 2, 3))
    y *= 0.8 + 0.2 * np.sin(2 * np.pi * 4 * t)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def hum(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * np.sin(2 * np.pi * 50 * t) + 0.1 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)


NOT_SPEECH = {
    "silence": lambda s: np.zeros(int(s * SR), np.float32),
    "white noise": lambda s: coloured_noise(s, 0),
    "pink noise": lambda s: coloured_noise(s, 1),
    "brown noise": lambda s: coloured_noise(s, 2),
    "440 Hz sine": lambda s: tone(s, 440.0),
    "mains hum": hum,
    "synth chord": chord,
}


@pytest.mark.parametrize("kind", NOT_SPEECH)
def test_noise_music_and_tones_are_not_speech(detector, kind):
    probs = detector.probabilities(NOT_SPEECH[kind](4.0))
    assert len(probs) == 4 * SR // FRAME
    assert not detector.is_voiced(probs), f"{kind}: {np.mean(probs >= detector.threshold):.2f} of frames voiced"


def test_speech_is_speech_even_under_noise(detector, speech):
    assert detector.is_voiced(detector.probabilities(speech))
    noise = coloured_noise(len(speech) / SR, 1, seed=1)[: len(speech)]
    gain = np.sqrt(np.mean(speech**2) / np.mean(noise**2)) / 10 ** (10 / 20)  # 10 dB SNR
    noisy = detector.probabilities(speech + gain * noise)
    assert detector.is_voiced(noisy)
    # Not just any frame: most of what was speech in the clean clip is still speech.
    clean = detector.probabilities(speech) >= detector.threshold
    assert np.mean(noisy[clean] >= detector.threshold) > 0.7


def test_windows_moving_forward_score_each_frame_once_and_agree_with_the_whole(detector, speech):
    whole = detector.probabilities(speech)
    track, seen = detector.track(), {}
    n = 2 * SR
    for centre in np.arange(0.5, len(speech) / SR, 0.5):
        begin = int(round(centre * SR)) - n // 2
        window = np.zeros(n, np.float32)
        lo, hi = max(begin, 0), min(begin + n, len(speech))
        window[lo - begin : hi - begin] = speech[lo:hi]
        first = -(-max(begin, 0) // FRAME)
        for k, p in enumerate(track.window(window, begin)):
            seen.setdefault(first + k, p)
    frames = sorted(k for k in seen if k < len(whole))
    np.testing.assert_allclose([seen[k] for k in frames], whole[frames], atol=1e-5)
    assert track.speech_s == pytest.approx(np.sum(whole >= detector.threshold) * FRAME / SR, abs=0.1)


def test_non_finite_samples_are_silence(detector):
    y = coloured_noise(2.0, 1)
    y[::7] = np.nan
    y[::11] = np.inf
    probs = detector.probabilities(y)
    assert np.all(np.isfinite(probs)) and not detector.is_voiced(probs)


def test_threshold_is_validated():
    with pytest.raises(ValueError, match="threshold"):
        SpeechDetector(threshold=1.5)


def test_noise_soundtrack_gives_no_voice_and_no_speech_seconds(tmp_path, models, face_image):
    """A video whose sound is pink noise: no interval is voiced, and speech_s is 0."""
    from emocli.pipeline import Analyzer

    frames = [face_image] * 30
    video = make_video(tmp_path / "noise.mp4", frames, fps=10.0, audio=coloured_noise(3.0, 1))
    with Analyzer(**models) as analyzer:
        timeline = analyzer.timeline(video)
    assert len(timeline.rows) >= 3
    assert not any(r.voice_active or r.voice for r in timeline.rows)
    assert timeline.speech_s == 0.0


def test_speech_seconds_count_all_the_speech_whatever_the_interval(tmp_path, models, speech):
    """Intervals longer than the audio window leave audio between windows: the detector hears
    it too, so speech_s is the same at 0.5 s and at 5 s intervals (and is the whole track's)."""
    from emocli.pipeline import Analyzer

    sound = np.concatenate([np.zeros(SR), speech, np.zeros(SR), speech])[: 12 * SR]
    video = make_video(tmp_path / "talk.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 120, 10.0, sound)
    whole = SpeechDetector().track().window(read_audio(video), 0)
    seconds = []
    for interval in (0.5, 5.0, 12.0):
        with Analyzer(interval=interval, **models) as analyzer:
            seconds.append(analyzer.timeline(video).speech_s)
    assert seconds[0] > 4.0 and max(seconds) - min(seconds) < 0.05, seconds
    assert seconds[1] == pytest.approx(np.sum(whole >= 0.5) * FRAME / SR, abs=0.1)


def test_a_window_past_the_media_counts_only_its_part_within(tmp_path, models, speech):
    """A 10 s window on a 2 s clip half of which is speech: the 8 s past the media are not
    silence, so the intervals are voiced (a fifth of what the window holds is speech)."""
    sound = np.concatenate([speech[:SR], np.zeros(SR)])
    video = make_video(tmp_path / "short.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 20, 10.0, sound)
    df = emocli.analyze(video, window=10.0, **models)
    assert len(df) == 2 and df["voice_active"].all()


def test_a_stereo_pair_with_one_side_wired_backwards_is_heard(tmp_path, models, speech):
    """Speech on the left, the same speech inverted on the right: mixed down to mono, as
    ffmpeg does, it cancels out; the louder side is heard instead. A pair in phase is mixed
    exactly as ffmpeg mixes it."""
    import subprocess

    from emocli.media.audio import AudioStream, DCBlocker, _audio_command

    pair = write_wav(tmp_path / "inverted.wav", np.stack([speech, -speech], axis=1))
    mono = write_wav(tmp_path / "mono.wav", speech)
    with emocli.Analyzer(**models) as analyzer:
        heard = [analyzer.timeline(p).facts["speech_s"] for p in (pair, mono)]
    assert heard[0] == heard[1] > 1.0
    normal = write_wav(tmp_path / "normal.wav", np.stack([speech, 0.5 * speech], axis=1))
    ffmpeg_mix = np.frombuffer(subprocess.run(_audio_command(normal, 16_000), capture_output=True).stdout, np.float32)
    ffmpeg_mix = DCBlocker(16_000)(ffmpeg_mix)  # as every track read is
    with AudioStream(normal, channels=2) as stream:
        assert np.abs(stream.samples(0, len(ffmpeg_mix)) - ffmpeg_mix).max() < 1e-6


def test_live_hears_a_stereo_pair_as_a_file_is_heard(tmp_path, speech):
    """emocli live's reader mixes a stereo pair as `emocli process` does: a side wired
    backwards is heard, a pair in phase is mixed as ffmpeg mixes it, and 5.1 comes down to
    sound too."""
    import subprocess

    from emocli.media import ffmpeg
    from emocli.media.audio import AudioStream
    from emocli.media.stream import Arrivals, AudioBuffer, FrameBuffer, LiveSource, Source

    def live_samples(path) -> np.ndarray:
        audio = AudioBuffer(SR, 10 * SR)
        arrivals = {"video": Arrivals(), "audio": Arrivals()}
        reader = LiveSource(Source(("-i", str(path)), path.name, "file"), FrameBuffer(4, 4), audio, arrivals)
        assert reader.ended.wait(30), "the reader did not finish"
        reader.close()
        return audio.window(0, len(speech))

    pairs = {"inverted": np.stack([speech, -speech], axis=1), "in phase": np.stack([speech, 0.5 * speech], axis=1)}
    heard = {name: live_samples(write_wav(tmp_path / f"{i}.wav", pair)) for i, (name, pair) in enumerate(pairs.items())}
    level = np.sqrt(np.mean(speech**2))
    assert np.sqrt(np.mean(heard["inverted"] ** 2)) > 0.9 * level
    with AudioStream(tmp_path / "1.wav", channels=2) as stream:  # the in-phase pair, as process reads it
        assert np.abs(heard["in phase"] - stream.samples(0, len(speech))).max() < 1e-4
    surround = tmp_path / "surround.wav"
    pan = "pan=5.1|FL=c0|FR=c0|FC=c0|LFE=c0|BL=c0|BR=c0"
    subprocess.run(
        [ffmpeg(), "-v", "error", "-i", str(write_wav(tmp_path / "m.wav", speech)), "-af", pan, str(surround)]
    )
    assert np.sqrt(np.mean(live_samples(surround) ** 2)) > 0.5 * level


def test_a_gap_in_the_audio_packets_is_silence_and_later_speech_keeps_its_time(tmp_path, models, speech):
    """A recording that lost its audio packets from 4 to 6 s (its timestamps jump): the speech
    at 7 s is heard at 7 s, not moved 2 s earlier into the gap, and intervals there are voiced."""
    from fractions import Fraction

    import av

    sound = np.zeros(12 * SR, np.float32)
    sound[7 * SR : 7 * SR + len(speech)] = speech[: 5 * SR]
    pcm = (np.clip(sound, -1, 1) * 32767).astype(np.int16)
    path = tmp_path / "gap.mka"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=SR)
        stream.layout = "mono"
        for k in range(0, len(pcm), 1024):
            if 4 * SR <= k < 6 * SR:
                continue  # lost packets
            frame = av.AudioFrame.from_ndarray(pcm[None, k : k + 1024].copy(), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SR, k, Fraction(1, SR)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    heard = read_audio(path, SR)
    assert abs(len(heard) - len(sound)) < SR // 10
    onset = np.argmax(np.abs(heard) > 0.5 * np.abs(speech).max()) / SR
    assert abs(onset - (7 + np.argmax(np.abs(speech) > 0.5 * np.abs(speech).max()) / SR)) < 0.05
    voiced = emocli.analyze(path, **models).query("voice_active").t_start.tolist()
    assert 7.0 in voiced and 5.0 not in voiced, voiced


def test_a_direct_current_offset_does_not_move_the_voice(tmp_path, speech):
    """The same speech with a DC offset (a cheap microphone) gives the shipped voice model the
    same windows: the offset is blocked where the audio is read."""
    from conftest import ROOT

    from emocli.models import VoiceModel

    model = VoiceModel(ROOT / "export" / "voice.onnx")
    n = model.spec.window_samples
    probs = []
    for offset in (0.0, 0.05):
        heard = read_audio(write_wav(tmp_path / f"dc{offset}.wav", speech + np.float32(offset)), SR)
        assert abs(float(np.mean(heard[SR:]))) < 1e-3
        # from 0.5 s on: the offset starts with the file, and so does the blocker's transient
        probs.append(model.predict([heard[k : k + n] for k in range(SR // 2, len(heard) - n, n // 2)]))
    assert np.abs(probs[0] - probs[1]).max() < 0.01


def test_broken_float_samples_are_silence_and_the_speech_after_them_is_heard(tmp_path, speech):
    """A float track with NaN and infinite samples in a pause (a broken recorder): those
    samples are silence, and the speech after them comes through as it would without them."""
    import subprocess

    from emocli.media import ffmpeg

    sound = np.zeros(10 * SR, np.float32)
    sound[6 * SR : 6 * SR + len(speech[: 4 * SR])] = speech[: 4 * SR]
    broken = sound.copy()
    broken[4 * SR : 4 * SR + SR // 2] = np.nan
    broken[5 * SR : 5 * SR + 10] = np.inf
    heard = []
    for name, samples in (("clean", sound), ("broken", broken)):
        path = tmp_path / f"{name}.wav"
        cmd = [ffmpeg(), "-v", "error", "-f", "f32le", "-ar", str(SR), "-ac", "1", "-i", "-", "-c:a", "pcm_f32le"]
        subprocess.run([*cmd, str(path)], input=samples.tobytes(), check=True)
        heard.append(read_audio(path, SR))
    assert np.isfinite(heard[1]).all() and np.abs(heard[1][4 * SR : 5 * SR]).max() == 0
    assert np.abs(heard[1][6 * SR :] - heard[0][6 * SR :]).max() < 1e-4
