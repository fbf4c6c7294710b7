"""The speaker-encoder voice member's parts: torch checkpoints read without torch, the torch
LSTM carried into Keras gate for gate, and the features mapped to the encoder's mel bands."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest
from torch_checkpoints import LEGACY_MAGIC, Tensor, encoder_checkpoint, legacy_bytes

from emocli.train.torch_checkpoint import CheckpointError, read_torch_checkpoint


def test_a_legacy_checkpoint_reads_back_as_its_arrays_views_included(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(3, 5)).astype(np.float32)
    flat = matrix.reshape(-1)
    transposed = Tensor(flat, 0, (5, 3), (1, 5))  # a view over the same storage, not contiguous
    row = Tensor(flat, 5, (5,), (1,))  # the second row, from an offset
    ids = Tensor.of(np.arange(4, dtype=np.int64))
    path = tmp_path / "model.pt"
    path.write_bytes(
        legacy_bytes({"state": {"w": Tensor.of(matrix), "wt": transposed, "row": row}, "ids": ids, "n": 7})
    )

    read = read_torch_checkpoint(path)
    assert read["n"] == 7
    np.testing.assert_array_equal(read["state"]["w"], matrix)
    np.testing.assert_array_equal(read["state"]["wt"], matrix.T)
    np.testing.assert_array_equal(read["state"]["row"], matrix[1])
    np.testing.assert_array_equal(read["ids"], np.arange(4))
    assert read["ids"].dtype == np.int64


def test_a_checkpoint_is_found_inside_a_wheel(tmp_path):
    state = encoder_checkpoint(tmp_path / "encoder.whl")
    read = read_torch_checkpoint(tmp_path / "encoder.whl")["model_state"]
    assert set(read) == set(state)
    for key, value in state.items():
        np.testing.assert_array_equal(read[key], value)


def test_files_that_are_not_legacy_checkpoints_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            import os

            return os.system, (f"touch {marker}",)

    hostile = tmp_path / "hostile.pt"
    hostile.write_bytes(pickle.dumps(Payload()))
    hostile_body = tmp_path / "hostile_body.pt"
    hostile_body.write_bytes(
        pickle.dumps(LEGACY_MAGIC) + pickle.dumps(1001) + pickle.dumps({}) + pickle.dumps(Payload())
    )
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(legacy_bytes({"w": Tensor.of(np.ones(100, np.float32))})[:-40])
    zipped = tmp_path / "new_format.pt"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("archive/data.pkl", b"")
    two = tmp_path / "two.whl"
    with zipfile.ZipFile(two, "w") as z:
        z.writestr("a.pt", b"")
        z.writestr("b.pt", b"")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")

    for path, says in (
        (hostile, "not a readable torch checkpoint|does not build"),
        (hostile_body, "does not build"),
        (truncated, "not a readable torch checkpoint"),
        (zipped, "zip-format"),
        (two, "expected one .pt"),
        (text, "not a readable torch checkpoint"),
    ):
        with pytest.raises(CheckpointError, match=says):
            read_torch_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(FileNotFoundError):
        read_torch_checkpoint(tmp_path / "absent.pt")


def _torch_lstm(x: np.ndarray, w_ih, w_hh, b_ih, b_hh) -> np.ndarray:
    """torch.nn.LSTM's equations, one sequence: gates i, f, g, o stacked in that order."""
    hidden = w_hh.shape[1]
    h, c, out = np.zeros(hidden), np.zeros(hidden), []

    def sigmoid(v):
        return 0.5 * (1 + np.tanh(v / 2))

    for frame in x:
        z = w_ih @ frame + b_ih + w_hh @ h + b_hh
        i, f, g, o = (
            sigmoid(z[:hidden]),
            sigmoid(z[hidden : 2 * hidden]),
            np.tanh(z[2 * hidden : 3 * hidden]),
            sigmoid(z[3 * hidden :]),
        )
        c = f * c + i * g
        h = o * np.tanh(c)
        out.append(h)
    return np.asarray(out)


def test_the_encoder_computes_what_the_torch_lstm_does(tmp_path):
    pytest.importorskip("keras")
    from emocli.features import FeatureSpec, audio_features, mel_power
    from emocli.train.voice_encoder import ENCODER_SPEC, FRAME_STRIDE, build_encoder, encoder_state

    encoder_checkpoint(tmp_path / "encoder.pt", hidden=8)
    state = encoder_state(str(tmp_path / "encoder.pt"))
    spec = FeatureSpec()
    rng = np.random.default_rng(1)
    mapping = np.abs(rng.normal(0, 0.05, (spec.n_mels, ENCODER_SPEC.n_mels))).astype(np.float32)
    t = np.arange(spec.window_samples) / spec.sample_rate
    signal = (0.2 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + rng.normal(0, 0.01, t.size)).astype(
        np.float32
    )
    features = audio_features(signal, spec)
    reference = 1e9  # far above the window's level: the gain is capped at MAX_GAIN
    stats = build_encoder(state, spec, mapping, reference)(features[None]).numpy()[0]

    from emocli.train.voice_encoder import MAX_GAIN

    x = (np.maximum(mel_power(signal, spec), 1e-10) @ mapping)[::FRAME_STRIDE] * MAX_GAIN
    expected, h = [], x
    for layer in range(2):
        weights = [state[f"lstm.{k}_l{layer}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h = _torch_lstm(h, *weights)
        expected += [h.mean(0), h.std(0)]
    np.testing.assert_allclose(stats, np.concatenate(expected), atol=2e-4)


def test_a_checkpoint_without_the_encoder_layers_is_refused(tmp_path):
    pytest.importorskip("keras")
    from emocli.train.voice_encoder import encoder_state

    path = tmp_path / "other.pt"
    path.write_bytes(legacy_bytes({"model_state": {"fc.weight": Tensor.of(np.ones((2, 2), np.float32))}}))
    with pytest.raises(ValueError, match="not a speaker encoder checkpoint"):
        encoder_state(str(path))
