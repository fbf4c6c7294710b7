"""Classification reports and confusion plots: shared by training and `emocli evaluate`.

Kept free of TensorFlow/Keras so that evaluation (an inference-side command) can use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .labels import LABELS
from .outputs import atomic_path


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels=LABELS) -> dict:
    """Accuracy, macro-F1 over the classes the truth has (a class only predicted costs the
    others' recall; it is not averaged in as an F1 of 0), and the confusion matrix (rows: truth)."""
    k = len(labels)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    tp = np.diag(confusion).astype(float)
    support, predicted = confusion.sum(1), confusion.sum(0)
    present = support > 0
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    return {
        "accuracy": float(tp.sum() / max(confusion.sum(), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "n": int(confusion.sum()),
        "labels": list(labels),
        "confusion": confusion.tolist(),
        "per_class_f1": {label: round(float(v), 4) for label, v, p in zip(labels, f1, present, strict=True) if p},
    }


def plot_confusion(report: dict, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(report["confusion"], dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    labels = report["labels"]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(
        xlabel="predicted",
        ylabel="true",
        title=title or f"accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f} (n={report['n']})",
    )
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
