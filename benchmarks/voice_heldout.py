"""Voice models side by side on the held-out groups of the training protocol.

    .venv/bin/python benchmarks/voice_heldout.py MODEL.onnx [MODEL.onnx ...] \
        --data ravdess/ tess/ urdu/ ... --holdout-corpus urdu,emotiontts_open_db

Builds the same split `emocli train voice` makes from the same options (whole corpora and
held-out speakers) and scores every model on each group at clip level (softmax averaged
over 2 s windows, 50 % overlap), through onnxruntime, each with its own preprocessing and
calibration. Prints accuracy and macro-F1 per group, the chance level, and the mean; with
--temperature also the softmax temperature that calibrates each model on all held-out
windows (an ensemble's, for `emocli export --temperature`); with --level-range the speech
levels of the training clips that `emocli train voice` stores (for `emocli export --level-range`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _common import require


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--holdout-corpus", default="", help="comma-separated corpus names, as `train voice` takes them")
    ap.add_argument("--holdout-fraction", type=float, default=0.2)
    ap.add_argument("--json", type=Path, help="also write the table here")
    ap.add_argument(
        "--metrics-json",
        type=Path,
        help="write the first model's figures here as a model card's metrics (for `emocli export --metrics-json`)",
    )
    ap.add_argument(
        "--temperature",
        action="store_true",
        help="fit each model's softmax temperature on all held-out windows (for `emocli export --temperature`)",
    )
    ap.add_argument(
        "--level-range",
        action="store_true",
        help="print the quartiles of the training clips' speech levels (for `emocli export --level-range`)",
    )
    a = ap.parse_args()
    require(*map(Path, a.data), what="the speech corpora --data names")

    from emocli.datasets import find_audio, load_waveforms
    from emocli.evaluate import clip_probabilities, clip_windows
    from emocli.labels import LABELS
    from emocli.metrics import classification_report
    from emocli.models import VoiceModel
    from emocli.train.voice import VoiceConfig, _split, expected_calibration_error, fit_temperature, speech_level_range

    corpora = [c for c in a.holdout_corpus.split(",") if c]
    config = VoiceConfig(a.data, holdout_corpora=corpora, holdout_fraction=a.holdout_fraction)
    items = find_audio(a.data)
    waves, items = load_waveforms(items, 16_000)
    train, groups = _split(items, config)
    if a.level_range:
        low, high = speech_level_range([waves[i] for i in train])
        print(f"the training clips' speech levels, quartiles: --level-range {low:g},{high:g}")
    table: dict[str, dict[str, dict]] = {}
    for path in a.models:
        model = VoiceModel(path)
        spec = model.spec
        for name, idx in groups.items():
            clips = [waves[i].astype(np.float32) / 32767.0 for i in idx]
            probs = clip_probabilities(clips, spec, model.run)
            y = np.asarray([LABELS.index(items[i].label) for i in idx])
            report = classification_report(y, probs.argmax(1))
            chance = 1 / len(set(y.tolist()))
            table.setdefault(name, {})[str(path)] = {
                "accuracy": round(report["accuracy"], 4),
                "macro_f1": round(report["macro_f1"], 4),
                "n": report["n"],
                "chance": round(chance, 4),
            }
    print(f"{'group':<36} {'n':>5} {'chance':>7}  " + "  ".join(f"{p.name[:22]:>22}" for p in a.models))
    for name, row in table.items():
        first = next(iter(row.values()))
        cells = "  ".join(f"{row[str(p)]['accuracy']:>10.3f} / {row[str(p)]['macro_f1']:.3f}" for p in a.models)
        print(f"{name:<36} {first['n']:>5} {first['chance']:>7.3f}  {cells}")
    means = "  ".join(
        f"{np.mean([row[str(p)]['accuracy'] for row in table.values()]):>10.3f} / "
        f"{np.mean([row[str(p)]['macro_f1'] for row in table.values()]):.3f}"
        for p in a.models
    )
    print(f"{'mean over groups (accuracy / macro-F1)':<50}  {means}")
    if a.json:
        a.json.write_text(json.dumps(table, indent=1))
    if a.metrics_json:
        first = {name: row[str(a.models[0])] for name, row in table.items()}
        card = {
            "accuracy": round(float(np.mean([r["accuracy"] for r in first.values()])), 4),
            "macro_f1": round(float(np.mean([r["macro_f1"] for r in first.values()])), 4),
            "n": sum(r["n"] for r in first.values()),
            "per_group": first,
            "dataset": "+".join(Path(d).name for d in a.data),
            "split": f"held out: corpora {', '.join(corpora) or 'none'} and the speakers `emocli train voice` holds out "
            "with the same options; clip level, 2 s windows, 50% overlap; score: mean accuracy over the held-out groups",
        }
        a.metrics_json.write_text(json.dumps(card, indent=1))
    if a.temperature:
        held = [i for idx in groups.values() for i in idx]
        for path in a.models:
            model = VoiceModel(path)
            windows = [clip_windows(waves[i].astype(np.float32) / 32767.0, model.spec) for i in held]
            probs = np.concatenate([model.run(w) for w in windows])
            y = np.concatenate([[LABELS.index(items[i].label)] * len(w) for i, w in zip(held, windows)])
            t = fit_temperature(probs, y)
            tempered = probs ** (1 / t) / (probs ** (1 / t)).sum(1, keepdims=True)
            print(
                f"{path.name}: on top of its stored temperature, T = {t} fits its {len(y)} held-out windows "
                f"(expected calibration error {expected_calibration_error(probs, y):.3f} -> "
                f"{expected_calibration_error(tempered, y):.3f})"
            )


if __name__ == "__main__":
    main()
