"""mixmask_tf.torch_io: the PyTorch zip reader (restricted unpickler) and safetensors, without torch.

The zip files here are written by hand in PyTorch's layout (`archive/data.pkl` pickled with
persistent ids for the storages, `archive/data/<key>`, `archive/byteorder`); the tests with
files written by PyTorch itself are in test_torch_import.py.
"""

import argparse
import collections
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from mixmask_tf import torch_io


class _Global:
    """Pickles as a reference to a global `module.name` called with `args` (what a pickle of a
    torch object, or a malicious one, contains)."""

    def __init__(self, module, name, args=()):
        self.module, self.name, self.args = module, name, args


def _fake_global(module, name):
    """A stand-in class that the pickler below writes as the opcode GLOBAL `module name`."""
    return type(name, (), {"__module__": module, "__qualname__": name})


_STORAGE_KINDS = {np.float32: "FloatStorage", np.int64: "LongStorage", np.float16: "HalfStorage",
                  np.uint16: "BFloat16Storage"}


class _RawPickler(pickle._Pickler):
    """Writes torch's pickle with the pure-Python pickler: globals by name (never imported), a
    tensor as `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())` with the
    storage a persistent id ("storage", <torch storage class>, key, "cpu", numel)."""

    def __init__(self, file, storages):
        super().__init__(file, protocol=2)
        self.storages = storages

    def persistent_id(self, obj):
        if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "__storage__":
            array = self.storages[obj[1]]
            return ("storage", _fake_global("torch", _STORAGE_KINDS[array.dtype.type]), obj[1], "cpu", array.size)
        return None

    def reducer_override(self, obj):
        if isinstance(obj, _Global):
            return _fake_global(obj.module, obj.name), obj.args
        return NotImplemented

    def save_global(self, obj, name=None):
        self.write(pickle.GLOBAL + f"{obj.__module__}\n{obj.__qualname__}\n".encode())
        self.memoize(obj)


def _tensor(key, offset, size, stride):
    return _Global("torch._utils", "_rebuild_tensor_v2",
                   (("__storage__", key), offset, tuple(size), tuple(stride), False, collections.OrderedDict()))


def _pickle_bytes(obj, storages=None):
    buffer = io.BytesIO()
    _RawPickler(buffer, storages or {}).dump(obj)
    return buffer.getvalue()


def _zip(path, data_pkl, storages=None, byteorder="little"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", byteorder)
        z.writestr("archive/version", "3\n")
        for key, array in (storages or {}).items():
            z.writestr(f"archive/data/{key}", array.astype(array.dtype.newbyteorder(
                "<" if byteorder == "little" else ">")).tobytes())
    return str(path)


def test_tensors_are_rebuilt_as_strided_views_of_their_storages(tmp_path):
    rng = np.random.default_rng(0)
    flat = rng.standard_normal(30).astype(np.float32)
    longs = np.arange(4, dtype=np.int64)
    # a [3, 4] block at offset 2, a transposed [4, 3] view of it, a scalar, a parameter
    state = collections.OrderedDict([
        ("w", _tensor("0", 2, (3, 4), (4, 1))),
        ("wt", _tensor("0", 2, (4, 3), (1, 4))),
        ("n", _tensor("1", 3, (), ())),
        ("p", _Global("torch._utils", "_rebuild_parameter", (_tensor("0", 0, (5,), (1,)), True, collections.OrderedDict()))),
    ])
    content = {"epoch": 7, "arch": "resnet50", "state_dict": state, "optimizer": {"param_groups": [{"lr": 0.1}]},
               "hparams": _Global("argparse", "Namespace", ())}
    for order in ("little", "big"):
        path = _zip(tmp_path / f"x-{order}.pth", _pickle_bytes(content, {"0": flat, "1": longs}),
                    {"0": flat, "1": longs}, order)
        read, kind = torch_io.read_checkpoint(path)
        assert kind == "zip"
        block = flat[2:14].reshape(3, 4)
        np.testing.assert_array_equal(read["state_dict"]["w"], block)
        np.testing.assert_array_equal(read["state_dict"]["wt"], block.T)
        assert read["state_dict"]["n"].shape == () and read["state_dict"]["n"] == 3
        np.testing.assert_array_equal(read["state_dict"]["p"], flat[:5])
        assert read["state_dict"]["w"].dtype == np.float32 and read["state_dict"]["n"].dtype == np.int64
        assert isinstance(read["hparams"], torch_io.Opaque)
        assert torch_io.plain_values(read) == {"epoch": 7, "arch": "resnet50"}
        assert sorted(torch_io.flatten_tensors(read)) == ["state_dict.n", "state_dict.p", "state_dict.w", "state_dict.wt"]


def test_bfloat16_is_widened_exactly(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 0.0], np.float32)  # representable in bfloat16
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)
    path = _zip(tmp_path / "bf16.pth", _pickle_bytes({"x": _tensor("0", 0, (4,), (1,))}, {"0": bits}), {"0": bits})
    read, _ = torch_io.read_checkpoint(path)
    np.testing.assert_array_equal(read["x"], values)


@pytest.mark.parametrize("module,name", [("posix", "system"), ("os", "system"), ("builtins", "eval"),
                                         ("subprocess", "call")])
def test_a_pickle_that_calls_any_other_global_is_refused_before_anything_runs(tmp_path, module, name):
    marker = tmp_path / "pwned"
    command = f"touch {marker}" if name != "eval" else f"open({str(marker)!r}, 'w')"
    payload = {"state_dict": {"w": _Global(module, name, (command,))}}
    path = _zip(tmp_path / "evil.pth", _pickle_bytes(payload))
    with pytest.raises(torch_io.UnsafeCheckpointError, match=rf"global {module}\.{name}"):
        torch_io.read_checkpoint(path)
    assert not marker.exists()
    # The same payload as a pickle of PyTorch's legacy (non-zip) format.
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(_pickle_bytes(payload))
    with pytest.raises(torch_io.UnsafeCheckpointError, match=rf"global {module}\.{name}"):
        torch_io.read_checkpoint(str(legacy))
    assert not marker.exists()


def test_a_storage_of_the_wrong_size_or_missing_is_refused(tmp_path):
    flat = np.zeros(6, np.float32)
    pkl = _pickle_bytes({"w": _tensor("0", 0, (2, 3), (3, 1))}, {"0": flat})
    with pytest.raises(torch_io.CheckpointError, match="holds 20 bytes"):
        torch_io.read_checkpoint(_zip(tmp_path / "short.pth", pkl, {"0": flat[:5]}))
    with pytest.raises(torch_io.CheckpointError, match="storage archive/data/0 is missing"):
        torch_io.read_checkpoint(_zip(tmp_path / "none.pth", pkl))
    # A view reaching past its storage.
    pkl = _pickle_bytes({"w": _tensor("0", 4, (2, 3), (3, 1))}, {"0": flat})
    with pytest.raises(torch_io.CheckpointError, match="reaches element"):
        torch_io.read_checkpoint(_zip(tmp_path / "past.pth", pkl, {"0": flat}))


def test_truncated_unknown_and_missing_files_are_one_line_errors(tmp_path):
    flat = np.arange(6, dtype=np.float32)
    path = _zip(tmp_path / "ok.pth", _pickle_bytes({"w": _tensor("0", 0, (6,), (1,))}, {"0": flat}), {"0": flat})
    data = open(path, "rb").read()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(torch_io.CheckpointError, match="truncated or corrupt") as e:
        torch_io.read_checkpoint(str(cut))
    assert "\n" not in str(e.value)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(torch_io.CheckpointError, match="neither a PyTorch checkpoint"):
        torch_io.read_checkpoint(str(other))
    with pytest.raises(FileNotFoundError):
        torch_io.read_checkpoint(str(tmp_path / "absent.pth"))


def test_safetensors_round_trip_metadata_and_truncation(tmp_path):
    tensors = {"a.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "n": np.zeros((), np.int64)}
    path = str(tmp_path / "x.safetensors")
    torch_io.write_safetensors(path, tensors, {"backbone": "resnet50", "mean": [0.5]})
    read, kind = torch_io.read_checkpoint(path)
    assert kind == "safetensors" and sorted(read) == sorted(tensors)
    for key in tensors:
        np.testing.assert_array_equal(read[key], tensors[key])
        assert read[key].dtype == tensors[key].dtype
    assert torch_io.read_safetensors_metadata(path) == {"backbone": "resnet50", "mean": "[0.5]"}
    data = open(path, "rb").read()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:-10])
    with pytest.raises(torch_io.CheckpointError, match="not a readable safetensors file"):
        torch_io.read_checkpoint(str(cut))


def test_namespace_hyper_parameters_are_inert(tmp_path):
    # argparse.Namespace pickles with NEWOBJ + BUILD; the reader keeps its state as data.
    buffer = io.BytesIO()
    pickle.Pickler(buffer, protocol=2).dump({"hyper_parameters": argparse.Namespace(lr=0.1, method="simclr")})
    read, _ = torch_io.read_checkpoint(_zip(tmp_path / "ns.ckpt", buffer.getvalue()))
    hp = read["hyper_parameters"]
    assert isinstance(hp, torch_io.Opaque) and hp.opaque_name == "argparse.Namespace"
    assert hp.state == {"lr": 0.1, "method": "simclr"}
    assert not os.path.exists(tmp_path / "pwned")
