"""Read a PyTorch checkpoint's tensors into numpy, without PyTorch.

Pretrained weights published for PyTorch (Resemblyzer's speaker encoder, say) become
Keras weights here; installing PyTorch for one file of arrays is not worth its gigabytes.
This reads the legacy serialisation (``torch.save`` before 1.6, and after it with
``_use_new_zipfile_serialization=False``): five pickles and then the raw storages.
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
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """The file is not a checkpoint this reader understands."""


class _Storage:
    def __init__(self, dtype):
        self.dtype, self.data = np.dtype(dtype), None


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def numpy(self) -> np.ndarray:
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if self.storage.data is None or min(self.size, default=1) > 0 and not 0 <= last < len(self.storage.data):
            raise CheckpointError("a tensor reaches outside its storage")
        data = self.storage.data[self.offset :]
        strides = [s * data.itemsize for s in self.stride]
        return np.lib.stride_tricks.as_strided(data, shape=self.size, strides=strides).copy()


class _StorageType:
    def __init__(self, name: str):
        self.name = name


def _rebuild_tensor(storage, offset, size, stride, *_):
    return _Tensor(storage, offset, size, stride)


def read_torch_checkpoint(path: str | Path, member: str | None = None) -> dict:
    """The checkpoint's top-level object with every tensor as a numpy array.

    ``path`` is a ``.pt`` file, or a zip (a wheel, say) holding one: ``member`` names it
    there, and by default the only ``.pt`` inside is read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    raw = path.read_bytes()
    if zipfile.is_zipfile(io.BytesIO(raw)):
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            if any(n.endswith("/data.pkl") for n in z.namelist()):
                raise CheckpointError(f"{path}: a zip-format torch checkpoint; save it with the legacy format")
            found = [n for n in z.namelist() if n.endswith(".pt")] if member is None else [member]
            if len(found) != 1:
                raise CheckpointError(f"{path}: expected one .pt file inside, found {found or 'none'}")
            raw = z.read(found[0])
    return _read_legacy(io.BytesIO(raw), path)


def _read_legacy(f: io.BytesIO, path: Path) -> dict:
    storages: dict[str, _Storage] = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
                return _rebuild_tensor
            if module == "torch" and name in STORAGE_DTYPES:
                return _StorageType(name)
            if module == "collections" and name == "OrderedDict":
                return OrderedDict
            raise CheckpointError(f"{path}: holds a {module}.{name}, which this reader does not build")

        def persistent_load(self, saved_id):
            kind, storage_type, key, _location, _numel, _view = saved_id
            if kind != "storage" or not isinstance(storage_type, _StorageType):
                raise CheckpointError(f"{path}: unexpected persistent id {saved_id!r}")
            return storages.setdefault(key, _Storage(STORAGE_DTYPES[storage_type.name]))

    try:
        # Every pickle goes through the Unpickler, which builds nothing but tensors and
        # containers: a checkpoint from the internet cannot run code here.
        if Unpickler(f).load() != LEGACY_MAGIC:
            raise CheckpointError(f"{path}: not a legacy-format torch checkpoint")
        Unpickler(f).load()  # protocol version
        Unpickler(f).load()  # system info
        result = Unpickler(f).load()
        for key in Unpickler(f).load():
            storage = storages[key]
            (count,) = struct.unpack("<q", f.read(8))
            raw = f.read(count * storage.dtype.itemsize)
            if len(raw) != count * storage.dtype.itemsize:
                raise CheckpointError(f"{path}: not a readable torch checkpoint (it ends inside its data)")
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
    except CheckpointError:
        raise
    except Exception as e:  # garbage makes pickle fail in many ways; each means the same here
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from e
    try:
        return _arrays(result)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None


def _arrays(obj):
    if isinstance(obj, _Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: _arrays(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_arrays(v) for v in obj)
    return obj
