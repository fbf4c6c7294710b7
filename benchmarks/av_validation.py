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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import CACHE, CLIPS, ffmpeg  # noqa: E402

AV = CACHE / "av"
CREMA = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
RAVDESS = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry", "06": "fear", "07": "disgust", "08": "surprise"}


def crema(code: str) -> Path:
    return CLIPS / f"1001_DFA_{code}_XX.mp4"


def _make(out: Path, args: list[str]) -> Path:
    if not out.is_file():
        AV.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(".part-" + out.name)
        subprocess.run([ffmpeg(), "-v", "error", "-y", *args, "-c:v", "libx264", "-preset", "veryfast",
                        "-pix_fmt", "yuv420p", "-c:a", "aac", str(tmp)], check=True)  # fmt: skip
        tmp.replace(out)
    return out


def side_by_side(heard: str, other: str, kind: str, heard_left: bool) -> Path:
    """``heard`` with its sound, beside ``other``: 'still' (its first frame held) or 'talk'
    (moving, its sound dropped)."""
    name = f"pair_{heard}_{other}_{kind}_{'L' if heard_left else 'R'}.mp4"
    still = "trim=end_frame=1,loop=300:1,setpts=N/(30000/1001)/TB," if kind == "still" else ""
    order = "[a][b]" if heard_left else "[b][a]"
    graph = f"[0:v]null[a];[1:v]{still}null[b];{order}hstack=shortest=1[v]"
    return _make(AV / name, ["-i", str(crema(heard)), "-i", str(crema(other)), "-filter_complex", graph,
                             "-map", "[v]", "-map", "0:a"])  # fmt: skip


def off_screen(face: str, kind: str, speech: Path) -> Path:
    """A CREMA-D face ('still' or 'talk': its own sound dropped) and a RAVDESS voice nobody on screen speaks."""
    name = f"off_{face}_{kind}_{speech.stem}.mp4"
    still = "trim=end_frame=1,loop=300:1,setpts=N/(30000/1001)/TB," if kind == "still" else ""
    return _make(AV / name, ["-i", str(crema(face)), "-i", str(speech), "-filter_complex",
                             f"[0:v]{still}null[v];[1:a]atrim=0:2[a]", "-map", "[v]", "-map", "[a]", "-shortest"])  # fmt: skip


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
        row = (f"{found / n:>15.3f}{kept / n:>13.3f}{'':>18}" if not kind.startswith("off")
               else f"{'':>15}{'':>13}{none / n:>18.3f}")  # fmt: skip
        print(f"{kind:<10}{n:>10}" + row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speaker", action="store_true")
    ap.add_argument("--faces", action="store_true")
    ap.add_argument("--fusion", action="store_true")
    ap.add_argument("--dump", action="store_true", help="with --speaker: every row's speaking flag")
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    a = ap.parse_args()
    if not (a.speaker or a.faces or a.fusion):
        a.speaker = a.faces = a.fusion = True
    if a.speaker:
        speaker_check(a.data, a.interval, a.dump)


if __name__ == "__main__":
    main()
