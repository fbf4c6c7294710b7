"""Training throughput of the face model under each installed Keras backend.

    python benchmarks/train_backends.py [--width 32] [--images 768] [--batch-size 64]

Each backend runs in its own subprocess (Keras picks its backend once, at import,
from KERAS_BACKEND), on random 48x48 images with the real model from
``emocli.train.face.build_face_model``. Prints images per second and the ratio to
TensorFlow. Measured on the 2-core CPU machine, width 32: tensorflow 168 img/s,
torch 86, jax 23; hence TensorFlow is the default training backend.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

BACKENDS = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}  # backend -> module that provides it


def measure(width: int, images: int, batch_size: int) -> dict:
    """Runs inside the subprocess: one warm-up fit (compilation, tracing), then one timed fit."""
    import keras
    import numpy as np

    from emocli.train.face import build_face_model

    rng = np.random.default_rng(0)
    x = rng.random((images, 48, 48, 1), dtype=np.float32)
    y = rng.integers(0, 7, images)
    model = build_face_model(48, width)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x[: 2 * batch_size], y[: 2 * batch_size], batch_size=batch_size, verbose=0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, verbose=0)
    seconds = time.perf_counter() - start
    return {"backend": keras.backend.backend(), "params": model.count_params(), "img_per_s": images / seconds}


def run_backend(backend: str, args: argparse.Namespace) -> dict | str:
    """The backend's measurement, or why there is none."""
    if importlib.util.find_spec(BACKENDS[backend]) is None:
        return f"not installed (pip install {BACKENDS[backend]})"
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--width",
        str(args.width),
        "--images",
        str(args.images),
        "--batch-size",
        str(args.batch_size),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        # TensorFlow and XLA log at INFO level to stderr; the useful line is the last other one.
        errors = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith(("I0000", "W0000"))]
        return f"failed (exit {done.returncode}: {errors[-1] if errors else 'no error message'})"
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--images", type=int, default=768)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.width, args.images, args.batch_size)), flush=True)
        return

    print(
        f"face model, width {args.width}, {args.images} random 48x48 images, batch {args.batch_size}, {os.cpu_count()} cores"
    )
    results = {}
    for backend in args.backends:
        results[backend] = run_backend(backend, args)
        r = results[backend]
        if isinstance(r, str):
            print(f"{backend:>10}: skipped, {r}", flush=True)
        else:
            print(f"{backend:>10}: {r['img_per_s']:7.1f} img/s ({r['params']:,} parameters)", flush=True)
    base = results.get("tensorflow")
    if isinstance(base, dict):
        print(
            "relative to tensorflow: "
            + ", ".join(
                f"{b} {r['img_per_s'] / base['img_per_s']:.2f}x" for b, r in results.items() if isinstance(r, dict)
            )
        )


if __name__ == "__main__":
    main()
