"""Legacy-format torch checkpoints written without torch, byte for byte as ``torch.save`` lays
them out (five pickles, then each storage as its element count and raw little-endian data),
with tensors referring to ``torch._utils._rebuild_tensor_v2`` and ``torch.FloatStorage`` by name.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}


class Global:
    """Pickles as a reference to ``module.name`` that nothing here needs to import."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle requires a reduce's function to be callable
        raise TypeError("a placeholder")


class Tensor:
    """A tensor over ``storage`` (a flat array) from ``offset``, with torch's ``size`` and ``stride``."""

    def __init__(self, storage: np.ndarray, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    @classmethod
    def of(cls, array: np.ndarray) -> Tensor:
        array = np.ascontiguousarray(array)
        stride = tuple(s // array.itemsize for s in array.strides)
        return cls(array.reshape(-1), 0, array.shape, stride)

    def __reduce__(self):
        rebuild = Global("torch._utils", "_rebuild_tensor_v2")
        return rebuild, (self.storage, self.offset, self.size, self.stride, False, OrderedDict())


class _Pickler(pickle._Pickler):
    def __init__(self, file, storages: dict):
        super().__init__(file, protocol=2)
        self.storages = storages
        self.dispatch = {**pickle._Pickler.dispatch, Global: _Pickler.save_reference}

    def save_reference(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    def persistent_id(self, obj):
        if not isinstance(obj, np.ndarray):
            return None
        key = str(id(obj))
        self.storages[key] = obj
        return ("storage", Global("torch", STORAGE_NAMES[obj.dtype]), key, "cpu", obj.size, None)


def legacy_bytes(obj) -> bytes:
    """``obj`` (dicts, lists, numbers and ``Tensor``s) as ``torch.save`` writes it in the legacy format."""
    f = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, f, protocol=2)
    storages: dict[str, np.ndarray] = {}
    _Pickler(f, storages).dump(obj)
    pickle.dump(list(storages), f, protocol=2)
    for storage in storages.values():
        f.write(struct.pack("<q", storage.size))
        f.write(storage.astype(storage.dtype.newbyteorder("<")).tobytes())
    return f.getvalue()


def encoder_checkpoint(path: Path, hidden: int = 8, layers: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """A Resemblyzer-shaped checkpoint (``{"model_state": ...}``: an LSTM over 40 mel bands, a
    projection) with random weights, at ``path`` (a ``.pt``, or a ``.whl`` holding one); returns its state."""
    rng = np.random.default_rng(seed)
    state = {}
    for i in range(layers):
        inputs = 40 if i == 0 else hidden
        state[f"lstm.weight_ih_l{i}"] = rng.normal(0, 0.3, (4 * hidden, inputs)).astype(np.float32)
        state[f"lstm.weight_hh_l{i}"] = rng.normal(0, 0.3, (4 * hidden, hidden)).astype(np.float32)
        state[f"lstm.bias_ih_l{i}"] = rng.normal(0, 0.1, 4 * hidden).astype(np.float32)
        state[f"lstm.bias_hh_l{i}"] = rng.normal(0, 0.1, 4 * hidden).astype(np.float32)
    state["linear.weight"] = rng.normal(0, 0.3, (4, hidden)).astype(np.float32)
    payload = legacy_bytes({"step": 1, "model_state": OrderedDict((k, Tensor.of(v)) for k, v in state.items())})
    if path.suffix == ".whl":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("resemblyzer/__init__.py", "")
            z.writestr("resemblyzer/pretrained.pt", payload)
    else:
        path.write_bytes(payload)
    return state
