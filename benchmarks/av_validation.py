"""Audio-visual validation: who speaks, and what fusion buys, on clips the models never saw.

    .venv/bin/python benchmarks/av_validation.py [--speaker] [--faces] [--fusion] [--data ../shared/data]

--speaker  Side-by-side clips built from the CREMA-D examples (cached in benchmarks/.cache/av):
           a heard face beside a still one, beside one that talks unheard (its own sound
           dropped), on either side; off-screen voices (RAVDESS speech over a still face and
           over a face that talks); and long pairs (--pairs per seed): each side the six clips
           one after another in its own random order, started up to a second apart, both
           talking all along, with the sound of one side ('long') or of RAVDESS speakers
           nobody on screen is ('off-long'). Seed 1 tunes speaker.py's thresholds (--seeds
           1), other seeds validate them. Runs the pipeline and prints, per kind, the share of
           voiced intervals where the speaker is found, where the silent face keeps its own
           emotion, and where nobody is wrongly made the speaker; with --dump, each face's
           (motion, sync, samples) scores, from which speaker.py's thresholds are read.
           With --live, the long pairs go through `emocli live` instead, each file played
           at its own pace as a stream: who speaks from the seconds before each interval.
--faces    Face emotion per interval on the CREMA-D clips (real video, labelled) and on
           FER2013 validation faces (the train split's held-out 10 %, --split-seed 0, as
           emocli/train/face.py): accuracy of one frame against several pooled, six views
           against one, eyes levelled or not.
--fusion   Fusion on voices the voice model never heard: FER2013 validation faces paired by
           label with RAVDESS held-out actors 17-20 and with whole corpora (--corpora, their
           labels.csv), each fitted on half its speakers and tested on the rest, plus the
           CREMA-D clips' intervals through the pipeline (fitted and reported). Picks the
           product rule with the largest mean gain over the better single modality among
           those that lose at most three points on any set, and prints face / voice /
           model-card linear / fitted / shipped accuracy per set. Re-run after a new face or
           voice model (calibrated probabilities) and copy the printed exponents into
           emocli/fusion.py; with a voice model trained on a corpus, leave it out of --corpora.
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

from _common import CACHE, CLIPS, ffmpeg, require  # noqa: E402

from emocli.features import fit_window  # noqa: E402
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


def sequence(order: list[str]) -> Path:
    """The CREMA-D clips in ``order``, one after another, with their sound."""
    n = len(order)
    graph = "".join(
        f"[{i}:v]setsar=1[v{i}];[{i}:a]aresample=44100,aformat=channel_layouts=mono[a{i}];" for i in range(n)
    )
    graph += "".join(f"[v{i}][a{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=1[v][a]"
    inputs = [a for code in order for a in ("-i", str(crema(code)))]
    return _make(AV / f"seq_{'-'.join(order)}.mp4", [*inputs, "-filter_complex", graph, "-map", "[v]", "-map", "[a]"])


def long_pair(rng: random.Random, voices: list[Path] | None) -> tuple[Path, bool | None]:
    """Two talking sequences side by side (each its own order, each started up to a second
    late, its first frame held): the sound of one (returned: whether it is the left one), or
    with ``voices`` (RAVDESS files) a voice of neither (None)."""
    a, b = list(CREMA), list(CREMA)
    rng.shuffle(a)
    rng.shuffle(b)
    da, db = rng.uniform(0, 1.0), rng.uniform(0, 1.0)
    left = rng.random() < 0.5
    order = "[a][b]" if left else "[b][a]"
    graph = (
        f"[0:v]tpad=start_duration={da:.3f}:start_mode=clone[a];[1:v]tpad=start_duration={db:.3f}:start_mode=clone[b];"
        f"{order}hstack=shortest=1[v];"
    )
    inputs = ["-i", str(sequence(a)), "-i", str(sequence(b))]
    if voices is None:
        graph += f"[0:a]adelay={int(da * 1000)}:all=1[au]"
        name = f"long_{'-'.join(a)}_{da:.3f}_{'-'.join(b)}_{db:.3f}_{'L' if left else 'R'}.mp4"
    else:
        picked = rng.sample(voices, 7)
        inputs += [x for f in picked for x in ("-i", str(f))]
        graph += "".join(f"[{k + 2}:a]aresample=44100,aformat=channel_layouts=mono[r{k}];" for k in range(7))
        graph += "".join(f"[r{k}]" for k in range(7)) + "concat=n=7:v=0:a=1[au]"
        name = f"offlong_{'-'.join(a)}_{da:.3f}_{'-'.join(b)}_{db:.3f}_{'-'.join(f.stem for f in picked)}.mp4"
        left = None
    return _make(AV / name, [*inputs, "-filter_complex", graph, "-map", "[v]", "-map", "[au]", "-shortest"]), left


def live_speaker_check(interval: float, seeds: list[int], pairs: int) -> None:
    """The long pairs through ``emocli live`` (the file played at its own pace): the share of
    voiced intervals with a face where the heard face speaks and where the silent one keeps
    its own emotion, as ``speaker_check`` counts them; intervals skipped to stay live are left out."""
    import csv
    import tempfile

    from emocli.live import LiveOptions, run_live
    from emocli.media.probing import probe
    from emocli.pipeline import AnalyzeOptions

    stats: dict[str, list[int]] = {}
    skipped = 0
    with tempfile.TemporaryDirectory() as out:
        for seed in seeds:
            drawn = random.Random(seed)
            for k in range(pairs):
                path, heard_left = long_pair(drawn, None)
                half = probe(path).width / 2
                summary = run_live(
                    str(path),
                    Path(out),
                    AnalyzeOptions(interval=interval),
                    LiveOptions(name=f"s{seed}-{k}", quiet=True),
                )
                skipped += summary["skipped"]
                with open(summary["csv"], newline="", encoding="utf-8") as f:
                    rows = [r for r in csv.DictReader(f) if r["face_id"] and r["voice_active"] == "true"]
                s = stats.setdefault(f"live long s{seed}", [0, 0, 0])
                for t in sorted({r["t_start"] for r in rows}):
                    faces = [r for r in rows if r["t_start"] == t]
                    speaker = [r for r in faces if (float(r["face_x"]) + float(r["face_w"]) / 2 < half) == heard_left]
                    silent = [r for r in faces if r not in speaker]
                    s[0] += 1
                    s[1] += bool(speaker) and speaker[0]["face_speaking"] == "true"
                    s[2] += all(
                        r["face_speaking"] != "true" and r["fused_emotion"] == r["face_emotion"] for r in silent
                    )
    print(f"\nwho speaks, live (interval {interval} s; voiced intervals with a face; {skipped} intervals skipped)")
    print(f"{'clips':<16}{'intervals':>10}{'speaker found':>15}{'silent kept':>13}")
    for kind, (n, found, kept) in stats.items():
        print(f"{kind:<16}{n:>10}{found / n:>15.3f}{kept / n:>13.3f}")


def centre_x(row) -> float:
    """The middle of a row's face box, in pixels from the left."""
    x, _, w, _ = row.face.box
    return x + w / 2


def ravdess_files(data: Path, actors: range) -> list[Path]:
    files = []
    for a in actors:
        files += sorted((data / "ravdess" / f"Actor_{a:02d}").glob("*.flac"))
    return [f for f in files if f.stem.split("-")[2] in RAVDESS]


def speaker_check(data: Path, interval: float, dump: bool, seeds: list[int], pairs: int, short: bool) -> None:
    from emocli.pipeline import Analyzer

    codes = list(CREMA)
    rng = random.Random(0)
    cases = []
    voices = ravdess_files(data, range(17, 21))
    if short:
        for i, heard in enumerate(codes):
            for other in codes[i + 1 :] + codes[:i][:1]:
                left = rng.random() < 0.5
                cases.append(("still", side_by_side(heard, other, "still", left), left))
                cases.append(("talk", side_by_side(heard, other, "talk", left), left))
        shuffled = list(voices)
        rng.shuffle(shuffled)
        for code, voice in zip(codes * 2, shuffled):
            cases.append(("off-still", off_screen(code, "still", voice), None))
            cases.append(("off-talk", off_screen(code, "talk", voice), None))
    for seed in seeds:
        drawn = random.Random(seed)
        for _ in range(pairs):
            cases.append((f"long s{seed}", *long_pair(drawn, None)))
        for _ in range(max(1, pairs // 3)):
            cases.append((f"off-long s{seed}", *long_pair(drawn, voices)))
    from emocli import speaker as sp

    scored: list[dict] = []  # per call of SpeakerDetector.speaking: {face_id: (motion, sync)}
    speaking = sp.SpeakerDetector.speaking

    def recording(self, ids, now, start=None):
        scored.append(self.scores(ids, now, start))
        return speaking(self, ids, now, start)

    sp.SpeakerDetector.speaking = recording
    stats: dict[str, list[int]] = {}
    samples = []  # (kind, clip, t_start, motion, sync, samples, truth: speaks / silent / off-screen)
    with Analyzer(interval=interval) as analyzer:
        for kind, path, heard_left in cases:
            scored.clear()
            timeline = analyzer.timeline(path)
            voiced = [
                rows for rows in timeline.by_interval().values() if rows[0].voice_active and rows[0].face is not None
            ]
            for rows, scores in zip(voiced, scored):
                for r in rows:
                    left = centre_x(r) < timeline.facts["width"] / 2
                    truth = "off" if heard_left is None else ("speaks" if left == heard_left else "silent")
                    samples.append((kind, path.name, r.t_start, *scores[r.face.id], truth))
            for rows in timeline.by_interval().values():
                faces = [r for r in rows if r.face is not None]
                if not faces or not faces[0].voice_active:
                    continue
                s = stats.setdefault(kind, [0, 0, 0, 0])  # voiced intervals, speaker found, silent kept, nobody wrong
                s[0] += 1
                if heard_left is None:
                    s[3] += not any(r.face.speaking for r in faces)
                    continue
                half = timeline.facts["width"] / 2
                speaker = [r for r in faces if (centre_x(r) < half) == heard_left]
                silent = [r for r in faces if r not in speaker]
                s[1] += bool(speaker) and bool(speaker[0].face.speaking)
                s[2] += all(not r.face.speaking and r.fused.label == r.face.emotion.label for r in silent)
    sp.SpeakerDetector.speaking = speaking
    if dump:
        import pickle

        with open(AV / "speaker_scores.pkl", "wb") as f:
            pickle.dump(samples, f)
        print(f"scores: {AV / 'speaker_scores.pkl'}")
    print(f"\nwho speaks (interval {interval} s; voiced intervals with a face)")
    print(f"{'clips':<12}{'intervals':>10}{'speaker found':>15}{'silent kept':>13}{'no false speaker':>18}")
    for kind, (n, found, kept, none) in stats.items():
        row = (
            f"{found / n:>15.3f}{kept / n:>13.3f}{'':>18}"
            if not kind.startswith("off")
            else f"{'':>15}{'':>13}{none / n:>18.3f}"
        )
        print(f"{kind:<12}{n:>10}" + row)


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
                rows = [r for r in analyzer.timeline(crema(code)).rows if r.face is not None]
                right += sum(r.face.emotion.label == label for r in rows)
                total += len(rows)
        print(f"{n:>7}{6 if views else 1:>7}{level!s:>9}{right / total:>10.3f}{total:>10}")
    pipeline.align_face = aligned


def heard(model, audio: np.ndarray, size: int) -> np.ndarray:
    """The voice model's probabilities on a clip's middle ``size`` samples, its speech heard
    at the level of the whole clip's (as a video's, over its speech so far)."""
    from emocli.vad import default_detector

    return model.predict([fit_window(audio, size)], default_detector().speech_level(audio))[0]


def voice_probs(data: Path, actors: range) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RAVDESS held-out actors: per clip the voice model's probabilities on the window the
    pipeline would take at the clip's middle (window 2 s), its label and its actor."""
    from emocli.media import read_audio
    from emocli.models import VoiceModel, default_model_path

    model = VoiceModel(default_model_path("voice"))
    sr, n = model.sample_rate, int(2.0 * model.sample_rate)
    probs, labels, who = [], [], []
    for f in ravdess_files(data, actors):
        probs.append(heard(model, read_audio(f, sr), n))
        labels.append(LABELS.index(RAVDESS[f.stem.split("-")[2]]))
        who.append(int(f.stem.split("-")[6]))
    return np.array(probs), np.array(labels), np.array(who)


def face_probs(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """FER2013 validation faces: the face model's probabilities as the pipeline pools them
    (``POOL_FRAMES`` frames reframed as successive detections would, each classified once)."""
    from emocli.models import FaceModel, default_model_path

    x, y = fer_validation(data)
    model = FaceModel(default_model_path("face"), views=False)
    rng = np.random.default_rng(1)
    crops = [[f] + [jittered(f, rng) for _ in range(POOL_FRAMES - 1)] for f in x]
    flat = [c for cs in crops for c in cs]
    p = model.predict(flat).reshape(len(x), POOL_FRAMES, -1).mean(axis=1)
    return p, y


POOL_FRAMES = 3


def rules(face: np.ndarray, voice: np.ndarray):
    """Candidate fusion rules: name, parameters, fused probabilities (rows)."""
    from emocli.fusion import fuse_with

    # Products only: each interval the sharper distribution leads (a fixed weighted mean would
    # not look at the interval's confidences); a=1, b=0 is the face alone.
    for a in (0.5, 0.75, 1.0, 1.25, 1.5, 2.0):
        for b in (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0):
            yield "product", {"face_exponent": a, "voice_exponent": b}, fuse_with(face, voice, "product", a, b)


def corpus_probs(root: Path, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A corpus the voice model never saw (its labels.csv): ``n`` clips of our labels, drawn
    at random; the voice model's probabilities on each clip's middle 2 s, the labels and
    the speakers."""
    import csv

    from emocli.labels import canonical
    from emocli.media import read_audio
    from emocli.models import VoiceModel, default_model_path

    model = VoiceModel(default_model_path("voice"))
    sr, size = model.sample_rate, int(2.0 * model.sample_rate)
    with open(root / "labels.csv", newline="") as f:
        rows = [(root / r["path"], canonical(r["emotion"], warn=False), r["speaker"]) for r in csv.DictReader(f)]
    rows = [row for row in rows if row[1] in LABELS]
    random.Random(0).shuffle(rows)
    probs, labels, speakers = [], [], []
    for path, label, speaker in rows[:n]:
        probs.append(heard(model, read_audio(path, sr), size))
        labels.append(LABELS.index(label))
        speakers.append(speaker)
    return np.array(probs), np.array(labels), np.array(speakers)


def fusion_check(data: Path, corpora: tuple = (), per_corpus: int = 300) -> None:
    """Fit the fusion rule where it must hold: the voice model's held-out RAVDESS actors,
    where it is good, and whole corpora it never saw, where it is weak. The rule kept is the
    one with the largest mean gain over the better single modality across those sets among
    those that lose at most three points on any; each set is fitted on half its speakers and
    tested on the rest."""
    from emocli.fusion import FACE_EXPONENT, RULE, VOICE_EXPONENT, default_face_weight, fuse_with
    from emocli.models import default_model_path, read_info

    # The models' probabilities are cached by the models' files: refitting is then seconds.
    key = "-".join(
        f"{default_model_path(t).stat().st_size}-{int(default_model_path(t).stat().st_mtime)}"
        for t in ("face", "voice")
    )
    cache = AV / f"fusion-probs-{key}-{POOL_FRAMES}-{'-'.join(corpora)}-{per_corpus}.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=True)
        fp, fy, voices = z["fp"], z["fy"], z["voices"].item()
    else:
        fp, fy = face_probs(data)
        vp, vy, actor = voice_probs(data, range(17, 21))
        voices = {"RAVDESS 17-20": (vp, vy, actor.astype(str))}
        voices.update({c: corpus_probs(data / c, per_corpus) for c in corpora})
        AV.mkdir(parents=True, exist_ok=True)
        np.savez(cache, fp=fp, fy=fy, voices=np.array(voices, dtype=object))
    rng = np.random.default_rng(0)
    half = rng.permutation(len(fy)) < len(fy) // 2  # faces for fitting; the rest for testing
    sets: dict[str, dict] = {"fit": {}, "test": {}}
    for name, (vp, vy, who) in voices.items():
        speakers = sorted(set(who))
        fit_speakers = set(speakers[::2])
        for part, faces in (("fit", half), ("test", ~half)):
            keep = np.array([(w in fit_speakers) == (part == "fit") for w in who])
            f = np.array([fp[rng.choice(np.flatnonzero(faces & (fy == label)))] for label in vy[keep]])
            sets[part][name] = (f, vp[keep], vy[keep])

    # The CREMA-D clips: real faces with their own voices (one actor, so fitted and reported,
    # not held out): each voiced interval's face and voice probabilities from the pipeline.
    from emocli.pipeline import Analyzer

    rows = []
    for interval in (0.5, 1.0):
        with Analyzer(interval=interval) as analyzer:
            for code, label in CREMA.items():
                rows += [
                    (r, label) for r in analyzer.timeline(crema(code)).rows if r.face is not None and r.voice_active
                ]
    crema_set = tuple(
        np.array(x)
        for x in (
            [list(r.face.emotion.p) for r, _ in rows],
            [list(r.voice.p) for r, _ in rows],
            [LABELS.index(label) for _, label in rows],
        )
    )
    sets["fit"]["CREMA-D"] = sets["test"]["CREMA-D (fitted)"] = crema_set

    def acc(p, y):
        return float((p.argmax(axis=1) == y).mean())

    def gains(rule_of):
        return [acc(rule_of(f, v), y) - max(acc(f, y), acc(v, y)) for f, v, y in sets["fit"].values()]

    candidates = {str(params): (name, params) for name, params, _ in rules(*next(iter(sets["fit"].values()))[:2])}
    scored = []
    for name, params in candidates.values():
        a, b = params["face_exponent"], params["voice_exponent"]
        g = gains(lambda f, v, name=name, a=a, b=b: fuse_with(f, v, name, a, b))
        scored.append((round(min(g), 3), round(float(np.mean(g)), 3), name, a, b))
    # No set may lose more than three points (the sampling noise of a hundred-odd clips); of
    # those rules, the one with the largest mean gain.
    safe = [r for r in scored if r[0] >= -0.03] or [max(scored)]
    # Rules that differ only by a common power make the same decisions: of those, the one
    # that leaves the face's probabilities on their own scale (face exponent 1).
    worst, mean, name, a, b = max(safe, key=lambda r: (r[1], r[0], r[3] == 1.0))
    w = default_face_weight(read_info(default_model_path("face")), read_info(default_model_path("voice")))
    print("\nfusion: FER2013 validation faces paired by label with voices the voice model never heard")
    print(
        f"fitted on half the speakers of {', '.join(sets['fit'])}: {name} {a}, {b} "
        f"(worst gain over the better modality {worst:+.3f}, mean {mean:+.3f})"
    )
    print("tested on the other speakers and faces:")
    for set_name, (f, v, y) in sets["test"].items():
        print(
            f"  {set_name:<14} n={len(y):<4} face {acc(f, y):.3f}  voice {acc(v, y):.3f}  "
            f"linear {w:.2f} {acc(fuse_with(f, v, 'linear', w), y):.3f}  "
            f"fitted {acc(fuse_with(f, v, name, a, b), y):.3f}  "
            f"shipped ({RULE} {FACE_EXPONENT}, {VOICE_EXPONENT}) {acc(fuse_with(f, v, RULE, FACE_EXPONENT, VOICE_EXPONENT), y):.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speaker", action="store_true")
    ap.add_argument("--faces", action="store_true")
    ap.add_argument("--fusion", action="store_true")
    ap.add_argument("--dump", action="store_true", help="with --speaker: every row's speaking flag")
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument(
        "--seeds", type=int, nargs="*", default=[1, 2], help="with --speaker: long pairs drawn with these seeds"
    )
    ap.add_argument("--pairs", type=int, default=12, help="with --speaker: long pairs per seed")
    ap.add_argument("--long-only", action="store_true", help="with --speaker: the long pairs alone")
    ap.add_argument("--live", action="store_true", help="with --speaker: the long pairs through emocli live")
    ap.add_argument(
        "--corpora",
        nargs="*",
        default=["nemo", "ased", "urdu"],
        help="with --fusion: speech corpora the voice model never saw (folders of --data with a labels.csv)",
    )
    ap.add_argument("--limit", type=int, default=0, help="at most this many FER2013 validation faces (0: all)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    a = ap.parse_args()
    if not (a.speaker or a.faces or a.fusion):
        a.speaker = a.faces = a.fusion = True
    if a.faces or a.fusion:
        require(a.data / "fer2013", what="FER2013 under --data (for --faces and --fusion)")
    if a.fusion:
        corpora = [a.data / c for c in ("ravdess", *a.corpora)]
        require(*corpora, what="RAVDESS and the --corpora under --data (for --fusion)")
    if a.speaker and not a.live and not (a.data / "ravdess").is_dir():
        print(f"note: no {a.data / 'ravdess'}: the off-screen voices are left out", file=sys.stderr)
    if a.speaker and a.live:
        live_speaker_check(a.interval, a.seeds, a.pairs)
    elif a.speaker:
        speaker_check(a.data, a.interval, a.dump, a.seeds, a.pairs, not a.long_only)
    if a.faces:
        faces_check(a.data, a.limit)
    if a.fusion:
        fusion_check(a.data, corpora=tuple(a.corpora))


if __name__ == "__main__":
    main()
