"""What every training run shares: its folder, resumable checkpoints, progress, reports.

A run folder holds ``model.keras`` (the best model, no optimizer), ``checkpoint.keras``
plus ``state.json`` (the last epoch, with optimizer state, to resume from),
``history.csv``, ``curves.png``, ``confusion.png``, ``metrics.json`` and ``config.json``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
from dataclasses import asdict, fields
from pathlib import Path

import keras
import numpy as np

from ..metrics import classification_report, plot_confusion  # noqa: F401  (TF-free, shared with evaluate)
from ..outputs import atomic_path


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def state(self) -> dict:
        p = self / "state.json"
        return json.loads(p.read_text()) if p.is_file() else {"epoch": 0, "best": -1.0}

    def write_json(self, name: str, obj) -> None:
        with atomic_path(self / name) as tmp:
            tmp.write_text(json.dumps(obj, indent=2))

    def history(self) -> list[dict]:
        p = self / "history.csv"
        if not p.is_file():
            return []
        with open(p, newline="") as f:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]

    def resumable(self) -> bool:
        return (self / "checkpoint.keras").is_file() and self.state["epoch"] > 0


RESUMABLE_CHANGES = ("epochs", "keep")  # options a resumed run may change (resume_schedule)


def check_resume(run: RunDir, config, hint: str = "") -> None:
    """A rerun into a run folder resumes it, and only with the options it was started with
    (but for RESUMABLE_CHANGES): its checkpoint holds that net, trained on that data with
    that loss. Another option refuses the rerun before anything is written, naming each
    difference."""
    saved = run / "config.json"
    if not run.resumable() or not saved.is_file():
        return
    old = json.loads(saved.read_text())
    with contextlib.suppress(TypeError, ValueError):  # read as this emocli reads options (17 is ravdess:17)
        names = {f.name for f in fields(config)}
        old |= asdict(type(config)(**{k: v for k, v in old.items() if k in names}))
    old = json.loads(json.dumps(old, default=str))
    new = json.loads(json.dumps(asdict(config), default=str))
    changed = [
        f"{k} {old[k]} (now {v})" for k, v in new.items() if k in old and old[k] != v and k not in RESUMABLE_CHANGES
    ]
    if changed:
        raise ValueError(
            f"{run.path} holds a run started with other options: {'; '.join(changed)}. Rerun with its "
            f"options to resume it, or train into another folder{hint}"
        )


KEEP = ("best", "last")  # which epoch a run's model.keras is


class Checkpoint(keras.callbacks.Callback):
    """After every epoch: history row, resumable checkpoint, and the model to keep (the best
    by ``monitor``, or with ``keep="last"`` the latest: for a run whose held-out groups must
    stay unselected on, to be reported as they are); all atomic."""

    def __init__(self, run: RunDir, core: keras.Model, monitor: str = "val_accuracy", keep: str = "best"):
        super().__init__()
        self.run, self.core, self.monitor, self.keep = run, core, monitor, keep

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        state = self.run.state
        rows = [{**r, "epoch": int(r["epoch"])} for r in self.run.history() if r["epoch"] < epoch + 1]
        rows.append({"epoch": epoch + 1, **logs})
        keys = ["epoch"] + sorted({k for r in rows for k in r} - {"epoch"})
        with atomic_path(self.run / "history.csv") as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            w.writerows(rows)
        score = float(logs.get(self.monitor, -1.0))
        if score > state["best"] or self.keep == "last":
            state["best"] = score
            state["best_epoch"] = epoch + 1
            with atomic_path(self.run / "model.keras") as tmp:
                self.core.save(tmp)
        with atomic_path(self.run / "checkpoint.keras") as tmp:
            self.model.save(tmp)
        state["epoch"] = epoch + 1
        self.run.write_json("state.json", state)
        plot_curves(self.run)


class RichProgress(keras.callbacks.Callback):
    """One rich progress bar per epoch with the running loss and accuracy."""

    def __init__(self, epochs: int, steps: int):
        super().__init__()
        self.epochs, self.steps = epochs, steps

    def on_train_begin(self, logs=None):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        )
        self.progress.start()

    def on_epoch_begin(self, epoch, logs=None):
        self.task = self.progress.add_task(f"epoch {epoch + 1}/{self.epochs}", total=self.steps, info="")
        self.t0 = time.time()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        info = f"loss {logs.get('loss', 0):.3f} acc {logs.get('accuracy', 0):.3f}"
        self.progress.update(self.task, completed=batch + 1, info=info)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        info = " ".join(
            f"{k} {v:.3f}" for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")
        )
        self.progress.update(self.task, completed=self.steps, info=info + f" ({time.time() - self.t0:.0f}s)")

    def on_train_end(self, logs=None):
        self.progress.stop()


def plot_curves(run: RunDir) -> None:
    """Accuracy and loss against epoch, train and validation (as the seed drew them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = run.history()
    if not rows:
        return
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("accuracy", "loss")):
        for prefix, name in (("", "train"), ("val_", "validation")):
            if prefix + key in rows[0]:
                ax.plot(epochs, [r[prefix + key] for r in rows], marker="o", ms=3, label=name)
        ax.set(xlabel="epoch", ylabel=key, title=f"model {key}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(run / "curves.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def cosine_schedule(lr: float, epochs: int, steps: int):
    """From a tenth of ``lr`` up to it over the first epoch, then down to 0 at the last step."""
    return keras.optimizers.schedules.CosineDecay(
        lr * 0.1, decay_steps=max(1, steps * epochs - steps), warmup_target=lr, warmup_steps=steps
    )


def resume_schedule(model: keras.Model, lr: float, epochs: int, steps: int) -> None:
    """A resumed checkpoint's schedule made for ``epochs``: a rerun with more epochs (the only
    option ``check_resume`` lets change that shapes it) stretches the cosine to the new end
    rather than carry on at its old end, a learning rate of 0."""
    model.optimizer.learning_rate = cosine_schedule(lr, epochs, steps)


def compile_for_training(
    model: keras.Model, lr: float, epochs: int, steps: int, label_smoothing: float, loss=None, metrics=None
) -> None:
    """AdamW on a cosine schedule with one warm-up epoch; the schedule lives in the optimizer,
    so a resumed checkpoint carries on where it stopped. ``loss`` defaults to cross-entropy
    with accuracy as its metric."""
    model.compile(
        optimizer=keras.optimizers.AdamW(cosine_schedule(lr, epochs, steps), weight_decay=1e-4),
        loss=loss or keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=metrics if loss else ["accuracy"],
    )


def resolve_precision(precision: str) -> str:
    """``auto``: bfloat16 compute where the CPU has native bfloat16 (AVX512-BF16/AMX), which
    roughly doubles convolution throughput here; float32 elsewhere. Weights stay float32."""
    if precision != "auto":
        return precision
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    return "mixed_bfloat16" if native and keras.backend.backend() == "tensorflow" else "float32"


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras's global dtype policy set to ``name`` for the block, then put back, so one
    run's precision never leaks into the next run in the same process."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def set_seed(seed: int) -> None:
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    keras.utils.set_random_seed(seed)


def class_weights(y: np.ndarray, n_classes: int, power: float = 0.5) -> dict[int, float]:
    """Inverse-frequency weights tempered by ``power`` (0.5: square root), mean 1 over samples."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    w = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1) / n_classes) ** power, 0.0)
    w /= (w[y]).mean()
    return {i: float(v) for i, v in enumerate(w)}
