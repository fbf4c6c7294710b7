"""A voice model on the held-out groups under recording conditions a user's files have.

    .venv/bin/python benchmarks/voice_conditions.py [MODEL.onnx] [--data ../shared/data] [--per-group 250]

The groups are `voice_heldout.py`'s (the shipped recipe's held-out corpora and speakers,
BAVED left out: it scores one label), each cut to ``--per-group`` clips (seed 0). Each clip
is scored clean and with a direct-current offset of 0.05, 50 Hz mains hum at -20 dBFS (with
its third harmonic), 60 Hz hum at -32 dBFS a little off its nominal frequency (with its
second and third harmonics), a telephone call (8 kHz, 300-3400 Hz, 8-bit mu-law), hiss at
-60 dBFS, pink noise at 10 dB SNR, recorded 20 dB quieter and 10 dB hotter, twice: as stored
(the samples straight to the model) and as `emocli process` reads a track
(`emocli.media.read_audio`: gaps filled, the offset blocked, mains hum subtracted). Clip
accuracy (windows averaged) per group and the mean.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from _common import ROOT, ffmpeg, require

CORPORA = ("ravdess", "tess", "nemo", "ased", "turev-db", "indian-emospeech", "urdu", "korean-emotiontts")
SR = 16_000


def condition(x: np.ndarray, kind: str, seed: int) -> np.ndarray:
    t = np.arange(len(x)) / SR
    if kind == "dc":
        return x + 0.05
    if kind == "hum":  # -20 dBFS: a ground loop
        return x + 0.137 * np.sin(2 * np.pi * 50 * t) + 0.04 * np.sin(2 * np.pi * 150 * t)
    if kind == "hum60":  # -32 dBFS: a grid running 0.05 Hz slow
        hum = sum(a * np.sin(2 * np.pi * 59.95 * k * t + k) for k, a in ((1, 0.03), (2, 0.015), (3, 0.01)))
        return x + hum
    if kind == "phone":  # a telephone call: 8 kHz, 300-3400 Hz, 8-bit mu-law
        from scipy.signal import butter, resample_poly, sosfilt

        y = sosfilt(butter(4, [300, 3400], btype="band", fs=SR // 2, output="sos"), resample_poly(x, 1, 2))
        mu = np.log1p(255.0)
        coded = np.round(np.sign(y) * np.log1p(255.0 * np.minimum(np.abs(y), 1)) / mu * 127) / 127
        return resample_poly(np.sign(coded) * np.expm1(np.abs(coded) * mu) / 255.0, 2, 1)[: len(x)]
    if kind == "hiss":  # -60 dBFS: inaudible
        return x + 0.001 * np.random.default_rng(seed).standard_normal(len(x))
    if kind == "quiet20":  # a distant microphone, a low input gain
        return x * 0.1
    if kind == "hot10":  # a close microphone, a high input gain (peaks may pass full scale: float)
        return x * 3.16
    if kind == "pink10":
        spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(len(x)))
        pink = np.fft.irfft(spectrum / np.sqrt(np.maximum(np.arange(len(spectrum)), 1.0)), len(x))
        level = np.sqrt(np.mean(x**2)) / np.sqrt(np.mean(pink**2) + 1e-12) / 10 ** (10 / 20)
        return x + level * pink
    return x


def as_read(x: np.ndarray, folder: Path) -> np.ndarray:
    """``x`` as `emocli process` reads a track: written as float WAV, read by ``read_audio``."""
    from emocli.media import read_audio

    path = folder / "clip.wav"
    cmd = [ffmpeg(), "-v", "error", "-y", "-f", "f32le", "-ar", str(SR), "-ac", "1", "-i", "-", "-c:a", "pcm_f32le"]
    subprocess.run([*cmd, str(path)], input=x.astype(np.float32).tobytes(), check=True)
    return read_audio(path, SR)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", type=Path, default=ROOT / "export" / "voice.onnx")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--per-group", type=int, default=250)
    ap.add_argument("--conditions", default="clean,dc,hum,hum60,phone,hiss,pink10,quiet20,hot10")
    a = ap.parse_args()
    dirs = [a.data / c for c in CORPORA]
    require(*dirs, what="the speech corpora (../shared/data)")

    from emocli.datasets import find_audio, load_waveforms
    from emocli.evaluate import clip_probabilities
    from emocli.labels import LABELS
    from emocli.models import VoiceModel
    from emocli.train.voice import VoiceConfig, _split

    config = VoiceConfig([str(d) for d in dirs], holdout_corpora=["urdu", "emotiontts_open_db"], holdout_fraction=0.2)
    waves, items = load_waveforms(find_audio([str(d) for d in dirs]), SR)
    _, groups = _split(items, config)
    rng = np.random.default_rng(0)
    groups = {k: sorted(rng.choice(v, min(len(v), a.per_group), replace=False)) for k, v in groups.items()}
    model = VoiceModel(a.model)
    print(f"{a.model}; clips per group: {', '.join(f'{k} {len(v)}' for k, v in groups.items())}")
    print(f"{'condition':<10} {'read':<9} " + " ".join(f"{k[:12]:>12}" for k in groups) + f" {'mean':>7}")
    for kind in a.conditions.split(","):
        for reading in ("as stored", "by emocli"):
            accs = []
            for idx in groups.values():
                clips = [condition(waves[i].astype(np.float32) / 32767.0, kind, i) for i in idx]
                if reading == "by emocli":
                    with tempfile.TemporaryDirectory() as folder:
                        clips = [as_read(c, Path(folder)) for c in clips]
                probs = clip_probabilities([c.astype(np.float32) for c in clips], model.spec, model.run)
                y = np.asarray([LABELS.index(items[i].label) for i in idx])
                accs.append(float((probs.argmax(1) == y).mean()))
            cells = " ".join(f"{v:>12.3f}" for v in accs)
            print(f"{kind:<10} {reading:<9} {cells} {np.mean(accs):>7.3f}", flush=True)


if __name__ == "__main__":
    main()
