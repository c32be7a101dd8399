"""`python -m trainers.import_checkpoint` and `python -m export.torch_weights` from the command line.

Refusals (fast: they exit before TensorFlow starts): a malicious pickle, a truncated file, an
unknown layout, a wrong architecture, a missing key: one line on stderr, exit status 2, nothing
written. The slow case imports a MoCo-format checkpoint written by PyTorch (tests/torch_side.py),
evaluates it with knn_eval (backbone and head), exports it (SavedModel: the same features;
safetensors: PyTorch computes the same head outputs).
"""

import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from conftest import run_module
from mixmask_tf import encoders, torch_io
from torch_env import torch_side


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("torch"))
    torch_side("make", "--layout=moco_resnet18_cifar,solo_resnet18", f"--out={out}", "--seed=2")
    return out


def _file(files, layout):
    folder = os.path.join(files, layout)
    (name,) = [f for f in os.listdir(folder) if not f.endswith(".npy")]
    return os.path.join(folder, name)


def _refused(checkpoint, model_dir, *flags):
    result = run_module("trainers.import_checkpoint", f"--checkpoint={checkpoint}", f"--model_dir={model_dir}", *flags)
    lines = [l for l in result.stderr.splitlines() if l.startswith("import_checkpoint: error:")]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert not os.path.exists(model_dir)
    return lines[0]


class _System:
    """Pickles as a call of os.system (posix.system on Linux), as a malicious checkpoint would."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint_0199.pth.tar"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"state_dict": {"conv1.weight": _System(f"touch {marker}")}}))
        z.writestr("archive/version", "3\n")
    line = _refused(path, tmp_path / "run")
    assert "refusing to unpickle the global posix.system" in line
    assert not marker.exists()


def test_truncated_file_is_refused(tmp_path, files):
    data = open(_file(files, "solo_resnet18"), "rb").read()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[:len(data) * 2 // 3])
    assert "truncated or corrupt PyTorch checkpoint" in _refused(cut, tmp_path / "run")


def _write(path, tensors):
    torch_io.write_safetensors(str(path), {k: np.asarray(v, np.float32) for k, v in tensors.items()})
    return path


def test_unknown_layout_wrong_architecture_and_missing_key_are_refused(tmp_path, files):
    unknown = _write(tmp_path / "vit.safetensors", {"blocks.0.attn.qkv.weight": np.zeros((6, 2))})
    assert "unknown layout: no torchvision-style ResNet" in _refused(unknown, tmp_path / "run")
    # torchvision's ResNet-18: 7x7 stem, basic blocks.
    r18 = {"conv1.weight": np.zeros((64, 3, 7, 7)), **{f"layer{s}.{b}.conv2.weight": np.zeros((1,))
                                                      for s in range(1, 5) for b in range(2)}}
    line = _refused(_write(tmp_path / "r18.safetensors", r18), tmp_path / "run")
    assert "wrong architecture: a ResNet with a 7x7 stem and basic blocks [2, 2, 2, 2]" in line
    solo = _file(files, "solo_resnet18")
    assert "wrong architecture: the checkpoint holds a resnet18_cifar" in _refused(solo, tmp_path / "run",
                                                                                   "--backbone=resnet50")
    tensors, _ = torch_io.read_checkpoint(solo)
    backbone = {k: v for k, v in torch_io.flatten_tensors(tensors["state_dict"]).items() if k.startswith("backbone.")}
    del backbone["backbone.layer4.1.bn2.weight"]
    line = _refused(_write(tmp_path / "solo.safetensors", backbone), tmp_path / "run")
    assert line.endswith("missing key backbone.layer4.1.bn2.weight")


@pytest.mark.slow
def test_moco_checkpoint_imported_evaluated_and_exported(tmp_path, files):
    run = str(tmp_path / "run")
    source = _file(files, "moco_resnet18_cifar")
    result = run_module("trainers.import_checkpoint", f"--checkpoint={source}", f"--model_dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported resnet18_cifar + MoCo v2 head" in result.stdout
    card = json.load(open(os.path.join(run, "import.json")))
    assert card["sha256"] == torch_io.sha256(source) and card["key_prefix"] == "module.encoder_q."
    assert card["key_encoder"] == "module.encoder_k." and card["entries"] == {"epoch": 200, "arch": "resnet18_cifar"}
    # A few images: the test checks the command runs on the imported ResNet-18 (bank >= k), not accuracy.
    limits = ["--dataset=fashion_mnist", "--train_limit=64", "--test_limit=32", "--k=10"]
    for args in ([f"--encoder={run}"], [f"--encoder={run}", "--feature=head"]):
        out = run_module("trainers.knn_eval", *args, *limits)
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"imported from {os.path.basename(source)}, moco layout" in out.stdout
    for name in ("knn", "knn-head"):
        result = json.load(open(f"{run}/eval/{name}.json"))
        assert 0 <= result["knn_top1"] <= 100 and result["encoder"]["imported"]["sha256"] == card["sha256"]
    out = run_module("export.saved_model", f"--model_dir={run}")
    assert out.returncode == 0, out.stderr[-3000:]
    exported = json.load(open(os.path.join(run, "export", "1", "assets.extra", "export.json")))
    assert exported["imported"]["sha256"] == card["sha256"]
    # The served graph computes the run's features.
    pixels = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    served = encoders.load_encoder(os.path.join(run, "export"))(pixels).numpy()
    np.testing.assert_allclose(served, encoders.load_encoder(run)(pixels).numpy(), rtol=1e-4, atol=1e-4)
    # The head back to PyTorch: MoCo's encoder_q (fc = Linear, ReLU, Linear) loads it strictly.
    weights = str(tmp_path / "q.safetensors")
    out = run_module("export.torch_weights", f"--encoder={run}", f"--out={weights}", "--head")
    assert out.returncode == 0, out.stderr[-3000:]
    folder = os.path.join(files, "moco_resnet18_cifar")
    torch_side("forward", "--arch=resnet18_cifar", "--head=v2", f"--state={weights}",
               f"--images={folder}/images.npy", f"--out={tmp_path}/head.npy")
    expected = np.load(os.path.join(folder, "head.npy"))
    assert np.max(np.abs(np.load(f"{tmp_path}/head.npy") - expected)) <= 1e-4 * np.max(np.abs(expected))
