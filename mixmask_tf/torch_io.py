"""Reads PyTorch checkpoints and `.safetensors` files as NumPy arrays, without PyTorch, safely.

A checkpoint is untrusted input. A PyTorch `.pth` / `.pth.tar` / Lightning `.ckpt` file (the zip
format of `torch.save` since PyTorch 1.6: `<name>/data.pkl`, `<name>/data/<key>` storages,
`<name>/byteorder`) is a pickle, and unpickling can call any Python function the file names.
:func:`read_checkpoint` unpickles with a restricted `pickle.Unpickler` whose `find_class` returns
only this module's own tensor rebuilders (for `torch._utils._rebuild_tensor_v2` and
`torch._utils._rebuild_parameter`), NumPy dtypes for the storage classes (`torch.FloatStorage`...)
and `collections.OrderedDict`; a few data-only classes that training frameworks put beside the
weights (`argparse.Namespace`, OmegaConf's configs, Lightning's and solo-learn's hyper-parameter
classes, `pathlib` paths, NumPy scalars, builtin types) become inert :class:`Opaque` records that
hold their arguments and never call anything (not even the real class). Any other global
(`os.system`, `builtins.eval`, `posix.system`, a class of the file's own project) is refused
before anything is executed: :class:`UnsafeCheckpointError` names it. Storages are read from the
zip entries only after checking that each entry holds exactly the bytes its tensor needs.

The legacy format of PyTorch < 1.6 (still written with `_use_new_zipfile_serialization=False`;
MoCo's 2020 releases use it) is read the same way: its pickles (magic number, protocol, system
info, the object, the storage keys) go through the same restricted unpickler, then each storage's
element count and bytes follow in the file. `.safetensors` files (Hugging Face's format, no code at
all) are read with the `safetensors` package's NumPy API.

bfloat16 tensors (NumPy has no bfloat16) are widened to float32 exactly.
"""

import collections
import hashlib
import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np

# torch's storage classes -> NumPy dtype ("bfloat16" is widened to float32 after reading).
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
# Globals that data-only objects beside the weights use: read as inert `Opaque` records.
# (Lightning's and solo-learn's own classes appear in a checkpoint's hyper-parameters and
# callback states; OmegaConf's configs record `builtins.dict`-like types as their element types.)
_INERT_MODULES = ("argparse", "omegaconf", "pathlib", "typing", "enum", "datetime", "numpy", "torch.torch_version",
                  "pytorch_lightning", "lightning", "lightning_fabric", "solo")
_INERT_GLOBALS = {("builtins", n) for n in ("set", "frozenset", "slice", "dict", "list", "tuple", "int", "float",
                                             "str", "bool", "bytes", "object", "complex")} | {
    ("torch", n) for n in ("device", "Size", "dtype", "float32", "float16", "bfloat16", "float64", "int64", "int32",
                           "uint8", "bool")}
# What `safetensors` writes first: an 8-byte little-endian header size, then a JSON header.
_MAX_SAFETENSORS_HEADER = 100_000_000


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: corrupt, truncated, of an unknown format or layout."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that would call a global that is not needed to rebuild tensors."""


class Opaque:
    """An inert stand-in for a data-only object of the checkpoint (e.g. an `argparse.Namespace` of
    hyper-parameters): its class name (`opaque_name`), constructor arguments and state, never
    interpreted. `find_class` returns a subclass per name (pickle's NEWOBJ needs a type)."""

    opaque_name = "?"
    args = ()
    state = None

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"Opaque({self.opaque_name})"


def _opaque_type(name):
    """A subclass of `Opaque` standing for the global `name` (a type: pickle's NEWOBJ needs one)."""
    return type("Opaque", (Opaque,), {"opaque_name": name})


class _Storage:
    """A storage reference: a flat NumPy array, or (legacy format) None until its bytes are read."""

    def __init__(self, array, dtype=None, numel=None):
        self.array, self.dtype, self.numel = array, dtype, numel


class _LazyTensor:
    """A tensor of a storage whose bytes come after the pickle (legacy format)."""

    def __init__(self, storage, args):
        self.storage, self.args = storage, args


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None):
    """`torch._utils._rebuild_tensor_v2` in NumPy: a strided view of the storage, copied."""
    if not isinstance(storage, _Storage):
        raise CheckpointError("a tensor without a storage")
    if storage.array is None:
        return _LazyTensor(storage, (storage_offset, size, stride))
    flat = storage.array
    size, stride, offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(storage_offset)
    if any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
        raise CheckpointError("a tensor has a negative size, stride or offset")
    if int(np.prod(size)) == 0:
        return np.zeros(size, flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        raise CheckpointError(f"a tensor of size {list(size)} reaches element {last} of a storage of {flat.size}")
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                           strides=tuple(s * flat.itemsize for s in stride), writeable=False)
    return np.array(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, load_storage, legacy=False):
        super().__init__(file)
        self._load_storage = load_storage
        self._legacy = legacy

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) in _INERT_GLOBALS or module.split(".")[0] in _INERT_MODULES:
            return _opaque_type(f"{module}.{name}")
        raise UnsafeCheckpointError(f"refusing to unpickle the global {module}.{name}: only tensors, containers "
                                    "and plain values are read from a checkpoint (nothing in it is executed)")

    def persistent_load(self, pid):
        size = 6 if self._legacy else 5  # legacy: + view metadata (None unless a storage view)
        if not (isinstance(pid, tuple) and len(pid) == size and pid[0] == "storage"):
            raise CheckpointError(f"unknown persistent reference {str(pid)[:60]}")
        if self._legacy and pid[5] is not None:
            raise CheckpointError("storage views (PyTorch < 0.4 files) are not read")
        _, dtype, key, _location, numel = pid[:5]
        if not (dtype == "bfloat16" or (isinstance(dtype, type) and not issubclass(dtype, Opaque))):
            raise CheckpointError(f"storage {key} has an unsupported type")
        found = self._load_storage(str(key), dtype, int(numel))
        return found if isinstance(found, _Storage) else _Storage(found)


def _widen_bfloat16(raw):
    """bfloat16 bytes -> float32 (the upper 16 bits of a float32)."""
    return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)


def _read_zip(path, archive):
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
        raise CheckpointError(f"{path}: a zip file but not a PyTorch checkpoint (no single data.pkl)")
    root = pickles[0][:-len("data.pkl")]
    byteorder = "little"
    if f"{root}byteorder" in names:
        byteorder = archive.read(f"{root}byteorder").decode("ascii", "replace").strip()
    if byteorder not in ("little", "big"):
        raise CheckpointError(f"{path}: unknown byte order {byteorder!r}")
    cache = {}

    def load_storage(key, dtype, numel):
        if key in cache:
            return cache[key]
        entry = f"{root}data/{key}"
        try:
            info = archive.getinfo(entry)
        except KeyError:
            raise CheckpointError(f"{path}: storage {entry} is missing (truncated file?)") from None
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if numel < 0 or info.file_size != numel * itemsize:
            raise CheckpointError(f"{path}: storage {entry} holds {info.file_size} bytes, its tensor needs "
                                  f"{numel} x {itemsize}")
        raw = archive.read(entry)
        if dtype == "bfloat16":
            array = _widen_bfloat16(raw if byteorder == "little" else np.frombuffer(raw, ">u2").astype("<u2").tobytes())
        else:
            array = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">"))
            array = array.astype(np.dtype(dtype), copy=False)
        cache[key] = array
        return array

    return _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), load_storage).load()


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _materialize(obj):
    """`obj` with every `_LazyTensor` rebuilt (its storage now read), in dicts, lists and tuples."""
    if isinstance(obj, _LazyTensor):
        return _rebuild_tensor(obj.storage, *obj.args)
    if isinstance(obj, dict):
        for key in list(obj):
            obj[key] = _materialize(obj[key])
        return obj
    if isinstance(obj, list):
        obj[:] = [_materialize(v) for v in obj]
        return obj
    if isinstance(obj, tuple):
        return tuple(_materialize(v) for v in obj)
    return obj


def _read_legacy(path, f):
    """PyTorch's format before 1.6: pickles of the magic number, protocol, system info, the
    object (storages as persistent ids) and the storage keys; then per key its element count
    (int64) and bytes."""
    storages = {}

    def no_storage(key, dtype, numel):
        raise CheckpointError(f"{path}: a storage outside the checkpoint's object")

    def lazy_storage(key, dtype, numel):
        if key not in storages:
            storages[key] = _Storage(None, dtype, numel)
        return storages[key]

    def header():
        return _RestrictedUnpickler(f, no_storage, legacy=True).load()

    if header() != _LEGACY_MAGIC or header() != _LEGACY_PROTOCOL:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (wrong magic number or protocol)")
    info = header()
    if not (isinstance(info, dict) and info.get("little_endian") is True):
        raise CheckpointError(f"{path}: a big-endian legacy PyTorch checkpoint is not read")
    content = _RestrictedUnpickler(f, lazy_storage, legacy=True).load()
    keys = header()
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise CheckpointError(f"{path}: the storage list does not match the tensors")
    for key in map(str, keys):
        storage = storages[key]
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path}: truncated legacy PyTorch checkpoint (storage {key} missing)")
        (numel,) = struct.unpack("<q", raw)
        if numel != storage.numel:
            raise CheckpointError(f"{path}: storage {key} holds {numel} elements, its tensor needs {storage.numel}")
        itemsize = 2 if storage.dtype == "bfloat16" else np.dtype(storage.dtype).itemsize
        data = f.read(numel * itemsize)
        if len(data) != numel * itemsize:
            raise CheckpointError(f"{path}: truncated legacy PyTorch checkpoint (storage {key} cut short)")
        storage.array = _widen_bfloat16(data) if storage.dtype == "bfloat16" else np.frombuffer(
            data, np.dtype(storage.dtype).newbyteorder("<")).astype(np.dtype(storage.dtype), copy=False)
    return _materialize(content)


def _read_safetensors(path):
    from safetensors import SafetensorError
    from safetensors import numpy as st_numpy

    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{path}: truncated safetensors file")
    try:
        return dict(st_numpy.load_file(path))
    except (SafetensorError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None


def file_format(path):
    """"zip" (PyTorch >= 1.6), "legacy" (an older PyTorch pickle), "safetensors", or None, from the bytes."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:1] == b"\x80":
        return "legacy"
    if len(head) >= 9:
        (size,) = struct.unpack("<Q", head[:8])
        if 0 < size < _MAX_SAFETENSORS_HEADER and head[8:9] == b"{":
            return "safetensors"
    return None


def read_checkpoint(path):
    """The content of a PyTorch checkpoint or `.safetensors` file, with tensors as NumPy arrays.

    Args:
      path: a `.pth`, `.pth.tar`, `.pt`, `.ckpt` (zip or legacy format) or `.safetensors` file.

    Returns:
      (content, format): the unpickled object (dicts, lists, plain values, NumPy arrays for the
      tensors, `Opaque` for inert data objects) or, for safetensors, {name: array}; and "zip",
      "legacy" (PyTorch < 1.6) or "safetensors".

    Raises:
      FileNotFoundError: no such file.
      UnsafeCheckpointError: the pickle names a global other than the tensor rebuilders (nothing
        was executed).
      CheckpointError: truncated, corrupt or unknown format.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist")
    kind = file_format(path)
    if kind == "safetensors":
        return _read_safetensors(path), kind
    if kind not in ("zip", "legacy"):
        raise CheckpointError(f"{path} is neither a PyTorch checkpoint nor a .safetensors file")
    try:
        if kind == "legacy":
            with open(path, "rb") as f:
                return _read_legacy(path, f), kind
        with zipfile.ZipFile(path) as archive:
            return _read_zip(path, archive), kind
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"{path}: truncated or corrupt PyTorch checkpoint ({e})") from None
    except (pickle.UnpicklingError, EOFError, struct.error, zipfile.LargeZipFile) as e:
        raise CheckpointError(f"{path}: truncated or corrupt PyTorch checkpoint ({type(e).__name__}: {e})") from None
    except (TypeError, AttributeError, IndexError, RecursionError) as e:
        raise CheckpointError(f"{path}: a pickle this reader does not understand ({type(e).__name__}: {e})") from None


def flatten_tensors(content, prefix=""):
    """{dotted key: array} of every NumPy array in nested dicts (a torch state dict is already flat;
    a MoCo `.pth.tar` holds it under "state_dict", a Lightning `.ckpt` too)."""
    found = {}
    if isinstance(content, np.ndarray):
        found[prefix[:-1]] = content
    elif isinstance(content, dict):
        for key, value in content.items():
            if isinstance(key, str):
                found.update(flatten_tensors(value, f"{prefix}{key}."))
    return found


def plain_values(content):
    """The top-level entries of a checkpoint that are plain ints, floats or strings (MoCo's
    "epoch" and "arch", Lightning's "epoch" and "global_step")."""
    if not isinstance(content, dict):
        return {}
    return {k: v for k, v in content.items() if isinstance(k, str) and isinstance(v, (int, float, str))
            and not isinstance(v, bool)}


def sha256(path):
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: array} as a `.safetensors` file (atomically; any `tf.io.gfile` path).

    `metadata`: {str: str} stored in the header (safetensors' `__metadata__`).
    """
    from safetensors import numpy as st_numpy

    from mixmask_tf import checkpoint

    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    checkpoint.atomic_save_file(path, lambda tmp: st_numpy.save_file(arrays, tmp, metadata=meta), ".safetensors")


def read_safetensors_metadata(path):
    """The `__metadata__` {str: str} of a `.safetensors` file ({} when it has none)."""
    from safetensors import safe_open

    with safe_open(path, framework="np") as f:
        return dict(f.metadata() or {})
