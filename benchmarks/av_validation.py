"""Audio-visual validation: who speaks, and what fusion buys, on clips the models never saw.

    .venv/bin/python benchmarks/av_validation.py [--speaker] [--faces] [--fusion] [--data /work/shared/data]

--speaker  Side-by-side clips built from the CREMA-D examples (cached in benchmarks/.cache/av):
           a heard face beside a still one, beside one that talks unheard (its own sound
           dropped), on either side; and off-screen voices (RAVDESS speech over still faces and
           over a face that talks another sentence). Runs the pipeline and prints, per kind,
           the share of voiced intervals where the speaker is found, where the silent face
           keeps its own emotion, and where nobody is wrongly made the speaker; with --dump,
           each face's (motion, sync) scores, from which speaker.py's thresholds are read.
--faces    Face emotion per interval on the CREMA-D clips (real video, labelled) and on
           FER2013 validation faces (the train split's held-out 10 %, --split-seed 0, as
           emocli/train/face.py): accuracy of one frame against several pooled, six views
           against one, eyes levelled or not.
--fusion   Audio-visual pairs: FER2013 validation faces x RAVDESS held-out actors 17-20
           (voice windows as the pipeline takes them), paired by label, plus the CREMA-D
           clips; fits fusion.py's confidence-aware weights on half the pairs (by actor and by
           face) and prints face / voice / fixed-weight / fitted accuracy on the other half.
           Re-run after a new voice model (calibrated probabilities) and copy the printed
           constants into emocli/fusion.py.
Nothing from the datasets is written into the repository; the composite clips live in the cache.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import CACHE, CLIPS, ffmpeg  # noqa: E402

from emocli.labels import LABELS  # noqa: E402

AV = CACHE / "av"
CREMA = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
RAVDESS = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry", "06": "fear", "07": "disgust", "08": "surprise"}


def crema(code: str) -> Path:
    return CLIPS / f"1001_DFA_{code}_XX.mp4"


def _make(out: Path, args: list[str]) -> Path:
    if not out.is_file():
        AV.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(".part-" + out.name)
        subprocess.run(
            [
                ffmpeg(),
                "-v",
                "error",
                "-y",
                *args,
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                str(tmp),
            ],
            check=True,
        )
        tmp.replace(out)
    return out


def side_by_side(heard: str, other: str, kind: str, heard_left: bool) -> Path:
    """``heard`` with its sound, beside ``other``: 'still' (its first frame held) or 'talk'
    (moving, its sound dropped)."""
    name = f"pair_{heard}_{other}_{kind}_{'L' if heard_left else 'R'}.mp4"
    still = "trim=end_frame=1,loop=300:1,setpts=N/(30000/1001)/TB," if kind == "still" else ""
    order = "[a][b]" if heard_left else "[b][a]"
    graph = f"[0:v]null[a];[1:v]{still}null[b];{order}hstack=shortest=1[v]"
    return _make(
        AV / name,
        ["-i", str(crema(heard)), "-i", str(crema(other)), "-filter_complex", graph, "-map", "[v]", "-map", "0:a"],
    )


def off_screen(face: str, kind: str, speech: Path) -> Path:
    """A CREMA-D face ('still' or 'talk': its own sound dropped) and a RAVDESS voice nobody on screen speaks."""
    name = f"off_{face}_{kind}_{speech.stem}.mp4"
    still = "trim=end_frame=1,loop=300:1,setpts=N/(30000/1001)/TB," if kind == "still" else ""
    return _make(
        AV / name,
        [
            "-i",
            str(crema(face)),
            "-i",
            str(speech),
            "-filter_complex",
            f"[0:v]{still}null[v];[1:a]atrim=0:2[a]",
            "-map",
            "[v]",
            "-map",
            "[a]",
            "-shortest",
        ],
    )


def ravdess_files(data: Path, actors: range) -> list[Path]:
    files = []
    for a in actors:
        files += sorted((data / "ravdess" / f"Actor_{a:02d}").glob("*.flac"))
    return [f for f in files if f.stem.split("-")[2] in RAVDESS]


def speaker_check(data: Path, interval: float, dump: bool) -> None:
    from emocli.pipeline import Analyzer

    codes = list(CREMA)
    rng = random.Random(0)
    cases = []
    for i, heard in enumerate(codes):
        for other in codes[i + 1 :] + codes[:i][:1]:
            left = rng.random() < 0.5
            cases.append(("still", side_by_side(heard, other, "still", left), left))
            cases.append(("talk", side_by_side(heard, other, "talk", left), left))
    voices = ravdess_files(data, range(17, 21))
    rng.shuffle(voices)
    for code, voice in zip(codes * 2, voices):
        cases.append(("off-still", off_screen(code, "still", voice), None))
        cases.append(("off-talk", off_screen(code, "talk", voice), None))
    from emocli import speaker as sp

    scored: list[dict] = []  # per call of SpeakerDetector.speaking: {face_id: (motion, sync)}
    speaking = sp.SpeakerDetector.speaking

    raw = []

    def recording(self, ids, now):
        scored.append(self.scores(ids, now))
        raw.append((dict(self.loud), {fid: list(self.mouths.get(fid, ())) for fid in ids}))
        return speaking(self, ids, now)

    sp.SpeakerDetector.speaking = recording
    stats: dict[str, list[int]] = {}
    samples = []  # (kind, motion, sync, truth: speaks / silent / off-screen)
    with Analyzer(interval=interval) as analyzer:
        for kind, path, heard_left in cases:
            scored.clear()
            raw.clear()
            timeline = analyzer.timeline(path)
            voiced = [
                rows
                for rows in timeline.by_interval().values()
                if rows[0]["voice_active"] and rows[0].get("face_id") is not None
            ]
            for rows, scores, (loud, mouths) in zip(voiced, scored, raw):
                for r in rows:
                    left = r["face_x"] + r["face_w"] / 2 < timeline.facts["width"] / 2
                    truth = "off" if heard_left is None else ("speaks" if left == heard_left else "silent")
                    samples.append(
                        (kind, *scores[r["face_id"]], truth, *((loud, mouths[r["face_id"]]) if dump else ()))
                    )
            for rows in timeline.by_interval().values():
                faces = [r for r in rows if r.get("face_id") is not None]
                if not faces or not faces[0]["voice_active"]:
                    continue
                s = stats.setdefault(kind, [0, 0, 0, 0])  # voiced intervals, speaker found, silent kept, nobody wrong
                s[0] += 1
                if heard_left is None:
                    s[3] += not any(r["face_speaking"] for r in faces)
                    continue
                half = timeline.facts["width"] / 2
                speaker = [r for r in faces if (r["face_x"] + r["face_w"] / 2 < half) == heard_left]
                silent = [r for r in faces if r not in speaker]
                s[1] += bool(speaker) and bool(speaker[0]["face_speaking"])
                s[2] += all(not r["face_speaking"] and r["fused_emotion"] == r["face_emotion"] for r in silent)
            if dump:
                print(path.name, [(r["t_start"], r.get("face_x"), r.get("face_speaking")) for r in timeline.rows])
    sp.SpeakerDetector.speaking = speaking
    if dump:
        import pickle

        with open(AV / "speaker_scores.pkl", "wb") as f:
            pickle.dump(samples, f)
        print(f"scores: {AV / 'speaker_scores.pkl'}")
    print(f"\nwho speaks (interval {interval} s; voiced intervals with a face)")
    print(f"{'clips':<10}{'intervals':>10}{'speaker found':>15}{'silent kept':>13}{'no false speaker':>18}")
    for kind, (n, found, kept, none) in stats.items():
        row = (
            f"{found / n:>15.3f}{kept / n:>13.3f}{'':>18}"
            if not kind.startswith("off")
            else f"{'':>15}{'':>13}{none / n:>18.3f}"
        )
        print(f"{kind:<10}{n:>10}" + row)


def fer_validation(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """FER2013 validation faces (48x48 grey) and labels: the train split's held-out 10 %, as emocli/train/face.py."""
    from emocli.datasets import stratified_split, training_faces

    faces = training_faces(data / "fer2013")
    _, val = stratified_split(faces.y, 0.1, 0)
    return faces.x[val], faces.y[val]


def jittered(face: np.ndarray, rng: np.random.Generator, shift: float = 0.03, scale: float = 0.03) -> np.ndarray:
    """``face`` framed as the next detection of a moving head might frame it: shifted and
    scaled by a few percent (normal, sd ``shift`` / ``scale`` of its size), edges repeated."""
    import cv2

    n = face.shape[0]
    s = 1.0 + rng.normal(0, scale)
    dx, dy = rng.normal(0, shift * n, 2)
    m = np.float32([[s, 0, (1 - s) * n / 2 + dx], [0, s, (1 - s) * n / 2 + dy]])
    return cv2.warpAffine(face, m, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def faces_check(data: Path, limit: int) -> None:
    import emocli.pipeline as pipeline
    from emocli.faces import crop_face
    from emocli.models import FaceModel, default_model_path

    x, y = fer_validation(data)
    if limit:
        x, y = x[:limit], y[:limit]
    rng = np.random.default_rng(0)
    frames = {n: [[jittered(f, rng) for f in x] for _ in range(n)] for n in (3, 5)}
    frames[1] = [list(x)]
    path = default_model_path("face")
    print(
        f"\nface emotion: FER2013 validation faces ({len(y)}), each seen as 1, 3 or 5 'frames' "
        "(the face, or reframed by 3 % as successive detections would), probabilities pooled"
    )
    print(f"{'frames':>7}{'views':>7}{'passes':>7}{'mean p':>9}{'mean log p':>12}")
    one, six = FaceModel(path, views=False), FaceModel(path, views=True)
    for n in (1, 3, 5):
        for views in (1, 2, 6):  # the crop; it and its mirror image; the model's 3 zooms x mirror
            if views == 2:
                p = np.stack(
                    [one.predict(b) for b in frames[n]] + [one.predict([f[:, ::-1] for f in b]) for b in frames[n]]
                )
            else:
                p = np.stack([(six if views == 6 else one).predict(b) for b in frames[n]])  # (frames, faces, labels)
            mean = (p.mean(axis=0).argmax(axis=1) == y).mean()
            logs = (np.log(p + 1e-6).mean(axis=0).argmax(axis=1) == y).mean()
            print(f"{n:>7}{views:>7}{n * views:>7}{mean:>9.3f}{logs:>12.3f}")

    print("\nface emotion per interval on the CREMA-D clips (real video; interval 0.5 s)")
    print(f"{'frames':>7}{'views':>7}{'levelled':>9}{'accuracy':>10}{'intervals':>10}")
    aligned = pipeline.align_face
    for n, views, level in (
        (1, True, False),
        (1, False, False),
        (3, False, False),
        (3, False, True),
        (5, False, True),
        (3, True, True),
    ):
        pipeline.align_face = aligned if level else crop_face
        right = total = 0
        with pipeline.Analyzer(interval=0.5, face_frames=n, face_views=views, frame_rate=10.0) as analyzer:
            for code, label in CREMA.items():
                rows = [r for r in analyzer.timeline(crema(code)).rows if r.get("face_id") is not None]
                right += sum(r["face_emotion"] == label for r in rows)
                total += len(rows)
        print(f"{n:>7}{6 if views else 1:>7}{level!s:>9}{right / total:>10.3f}{total:>10}")
    pipeline.align_face = aligned


def voice_probs(data: Path, actors: range) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RAVDESS held-out actors: per clip the voice model's probabilities on the window the
    pipeline would take at the clip's middle (window 2 s), its label and its actor."""
    from emocli.media import read_audio
    from emocli.models import VoiceModel, default_model_path

    model = VoiceModel(default_model_path("voice"))
    sr, n = model.sample_rate, int(2.0 * model.sample_rate)
    probs, labels, who = [], [], []
    for f in ravdess_files(data, actors):
        audio = read_audio(f, sr)
        mid = len(audio) // 2
        window = np.zeros(n, np.float32)
        seg = audio[max(0, mid - n // 2) : mid + n // 2]
        window[: len(seg)] = seg
        probs.append(model.predict([window])[0])
        labels.append(LABELS.index(RAVDESS[f.stem.split("-")[2]]))
        who.append(int(f.stem.split("-")[6]))
    return np.array(probs), np.array(labels), np.array(who)


def face_probs(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """FER2013 validation faces: the face model's probabilities as the pipeline pools them
    (``POOLING``: frames reframed as successive detections would, each with its mirror image)."""
    from emocli.models import FaceModel, default_model_path

    x, y = fer_validation(data)
    model = FaceModel(default_model_path("face"), views=False)
    rng = np.random.default_rng(1)
    crops = [[f] + [jittered(f, rng) for _ in range(POOL_FRAMES - 1)] for f in x]
    flat = [c for cs in crops for c in cs]
    flat += [c[:, ::-1] for c in flat]
    p = model.predict(flat).reshape(2, len(x), POOL_FRAMES, -1).mean(axis=(0, 2))
    return p, y


POOL_FRAMES = 3


def rules(face: np.ndarray, voice: np.ndarray):
    """Candidate fusion rules: name, parameters, fused probabilities (rows)."""
    from emocli.fusion import fuse_with

    for w in np.round(np.arange(0.3, 0.96, 0.05), 2):
        yield "linear", {"face_weight": float(w)}, fuse_with(face, voice, "linear", float(w))
    for a in (0.5, 0.75, 1.0, 1.25, 1.5, 2.0):
        for b in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0):
            yield "product", {"face_exponent": a, "voice_exponent": b}, fuse_with(face, voice, "product", a, b)


def fusion_check(data: Path, pairs_per_voice: int = 5) -> None:
    from emocli.fusion import FACE_EXPONENT, RULE, VOICE_EXPONENT, default_face_weight, fuse_with
    from emocli.models import default_model_path, read_info

    # The models' probabilities are cached by the models' contents: refitting is then seconds.
    key = "-".join(
        f"{default_model_path(t).stat().st_size}-{int(default_model_path(t).stat().st_mtime)}"
        for t in ("face", "voice")
    )
    cache = AV / f"fusion-probs-{key}-{POOL_FRAMES}.npz"
    if cache.is_file():
        z = np.load(cache)
        fp, fy, vp, vy, actor = (z[k] for k in ("fp", "fy", "vp", "vy", "actor"))
    else:
        fp, fy = face_probs(data)
        vp, vy, actor = voice_probs(data, range(17, 21))
        AV.mkdir(parents=True, exist_ok=True)
        np.savez(cache, fp=fp, fy=fy, vp=vp, vy=vy, actor=actor)
    rng = np.random.default_rng(0)
    half = rng.permutation(len(fy)) < len(fy) // 2  # faces for fitting; the rest for testing
    sets = {}
    for name, actors, faces in (("fit", (17, 18), half), ("test", (19, 20), ~half)):
        face_rows, voice_rows, labels = [], [], []
        for i in np.flatnonzero(np.isin(actor, actors)):
            pool = np.flatnonzero(faces & (fy == vy[i]))
            for j in rng.choice(pool, pairs_per_voice, replace=False):
                face_rows.append(fp[j])
                voice_rows.append(vp[i])
                labels.append(vy[i])
        sets[name] = (np.array(face_rows), np.array(voice_rows), np.array(labels))

    def acc(p, y):
        return float((p.argmax(axis=1) == y).mean())

    def nll(p, y):
        return float(-np.log(p[np.arange(len(y)), y] + 1e-9).mean())

    f, v, y = sets["fit"]
    best = max(rules(f, v), key=lambda r: (round(acc(r[2], y), 3), -nll(r[2], y)))
    print(
        f"\nfusion: FER2013 validation faces x RAVDESS actors 17-20, paired by label ({pairs_per_voice} faces a voice)"
    )
    print(f"fitted on actors 17-18 and half the faces ({len(y)} pairs): {best[0]} {best[1]}")
    f, v, y = sets["test"]
    print(f"tested on actors 19-20 and the other faces ({len(y)} pairs):")
    print(f"  face alone {acc(f, y):.3f}   voice alone {acc(v, y):.3f}")
    w = default_face_weight(read_info(default_model_path("face")), read_info(default_model_path("voice")))
    print(f"  linear, model-card F1 weight {w:.3f}: {acc(fuse_with(f, v, 'linear', w), y):.3f}")
    print(
        f"  fitted here ({best[0]} {best[1]}): {acc(dict((str(r[1]), r[2]) for r in rules(f, v))[str(best[1])], y):.3f}"
    )
    print(
        f"  shipped in fusion.py ({RULE} {FACE_EXPONENT}, {VOICE_EXPONENT}): "
        f"{acc(fuse_with(f, v, RULE, FACE_EXPONENT, VOICE_EXPONENT), y):.3f}"
    )

    print(
        "\nthe CREMA-D clips through the pipeline (real faces and voices; interval 0.5 s; voiced intervals with a face)"
    )
    from emocli.pipeline import Analyzer

    with Analyzer(interval=0.5) as analyzer:
        hits = {"face": [], "voice": [], "fused": []}
        for code, label in CREMA.items():
            for r in analyzer.timeline(crema(code)).rows:
                if r.get("face_id") is not None and r["voice_active"]:
                    for kind in hits:
                        hits[kind].append(r[f"{kind}_emotion"] == label)
    print(
        "  "
        + "   ".join(f"{kind} {np.mean(h):.3f}" for kind, h in hits.items())
        + f"   ({len(hits['face'])} intervals)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speaker", action="store_true")
    ap.add_argument("--faces", action="store_true")
    ap.add_argument("--fusion", action="store_true")
    ap.add_argument("--dump", action="store_true", help="with --speaker: every row's speaking flag")
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--limit", type=int, default=0, help="at most this many FER2013 validation faces (0: all)")
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    a = ap.parse_args()
    if not (a.speaker or a.faces or a.fusion):
        a.speaker = a.faces = a.fusion = True
    if a.speaker:
        speaker_check(a.data, a.interval, a.dump)
    if a.faces:
        faces_check(a.data, a.limit)
    if a.fusion:
        fusion_check(a.data)


if __name__ == "__main__":
    main()
