"""mixmask_tf.torch_import / torch_resnet against PyTorch itself.

tests/torch_side.py (run with PyTorch, tests/torch_env.py) writes checkpoints in the papers'
layouts from random weights and random BatchNorm statistics, with the eval-mode outputs of those
models on random images; the imported Keras encoders must give the same outputs (<= 1e-4 of
the largest output, in float32). The other way, Keras weights exported to .safetensors are loaded
by PyTorch with `load_state_dict(strict=True)` and must give the Keras outputs.
"""

import dataclasses
import os

import keras
import numpy as np
import pytest

from export import torch_weights
from mixmask_tf import backbones, torch_import, torch_io
from torch_env import torch_side

LAYOUTS = ("torchvision_resnet50", "moco_resnet50", "solo_resnet18", "safetensors_resnet18", "mocov1_resnet18_cifar",
           "moco_resnet18_cifar_legacy")
SIZE = {"resnet50": 64, "resnet18_cifar": 32}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("torch"))
    torch_side("make", f"--layout={','.join(LAYOUTS)}", f"--out={out}", "--size=64", "--seed=1")
    return out


def _checkpoint(folder):
    (name,) = [f for f in os.listdir(folder) if not f.endswith(".npy")]
    return os.path.join(folder, name)


def _relative_error(actual, expected):
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_imported_encoder_equals_pytorch(files, layout):
    folder = os.path.join(files, layout)
    source = torch_import.read_source(_checkpoint(folder))
    assert source.file_format == ("legacy" if layout.endswith("_legacy") else
                                  "safetensors" if layout.startswith("safetensors") else "zip")
    expected_prefix = {"torchvision": "", "moco": "module.encoder_q.", "solo": "backbone.", "safetensors": "backbone.",
                       "mocov1": "module.encoder_q."}[layout.split("_")[0]]
    assert source.prefix == expected_prefix
    assert source.backbone == ("resnet50" if layout.endswith("resnet50") else "resnet18_cifar")
    # solo-learn's CIFAR stem pads 2 (tests/torch_side.py writes it so), MoCo's CIFAR demo 1.
    if source.backbone == "resnet50":
        assert source.stem_padding is None
    else:
        assert source.stem_padding == (2 if layout.startswith(("solo", "safetensors")) else 1)
    images = np.load(os.path.join(folder, "images.npy"))
    backbone, head = torch_import.build_encoder(source, SIZE[source.backbone])
    features = backbone(images, training=False).numpy()
    assert _relative_error(features, np.load(os.path.join(folder, "features.npy"))) <= 1e-4
    if layout.startswith("moco"):
        assert source.head[0] == ("v1" if layout.startswith("mocov1") else "v2")
        assert _relative_error(head(features).numpy(), np.load(os.path.join(folder, "head.npy"))) <= 1e-4
        assert source.entries["epoch"] == 200
    else:
        assert head is None and source.head is None
    if layout == "torchvision_resnet50":  # its fc is a 1000-way classifier, left out
        assert torch_import.torch_resnet.ignored_classifier(source.tensors, "", None) == ["fc.weight", "fc.bias"]


def test_the_stem_padding_matters(files):
    """A state dict does not record conv1's padding: solo-learn's file read as padding 1 computes
    other features (the reason for the solo-learn default and --stem_padding)."""
    folder = os.path.join(files, "solo_resnet18")
    source = torch_import.read_source(_checkpoint(folder), stem_padding=1)
    backbone, _ = torch_import.build_encoder(source, 32)
    features = backbone(np.load(os.path.join(folder, "images.npy")), training=False).numpy()
    assert _relative_error(features, np.load(os.path.join(folder, "features.npy"))) > 1e-2


def test_moco_key_encoder_by_prefix(files):
    folder = os.path.join(files, "moco_resnet50")
    source = torch_import.read_source(_checkpoint(folder), prefix="module.encoder_k.")
    backbone, head = torch_import.build_encoder(source, 64)
    images = np.load(os.path.join(folder, "images.npy"))
    key = np.load(os.path.join(folder, "key_features.npy"))
    assert _relative_error(backbone(images, training=False).numpy(), key) <= 1e-4
    assert _relative_error(key, np.load(os.path.join(folder, "features.npy"))) > 0.1  # another encoder


def _random_batchnorm_statistics(model, rng):
    for layer in model.layers:
        if "BatchNorm" in type(layer).__name__:
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n),
                               rng.uniform(0.5, 1.5, n)])


@pytest.mark.parametrize("name,padding", [("resnet50", 3), ("resnet18_cifar", 1), ("resnet18_cifar", 2)])
def test_keras_to_safetensors_to_pytorch_equals_keras(tmp_path, name, padding):
    keras.utils.set_random_seed(3)
    options = {"stem_padding": padding} if name == "resnet18_cifar" else {}
    model = backbones.build_backbone(name, (SIZE[name], SIZE[name], 3), **options)
    _random_batchnorm_statistics(model, np.random.default_rng(3))
    keras_path = str(tmp_path / "backbone.keras")
    model.save(keras_path)
    out = str(tmp_path / "weights.safetensors")
    summary = torch_weights.export_weights(keras_path, out)
    assert summary["backbone"] == name and summary["conv1_padding"] == padding
    assert torch_io.read_safetensors_metadata(out)["conv1_padding"] == str(padding)
    images = np.random.default_rng(4).standard_normal((2, SIZE[name], SIZE[name], 3)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    torch_side("forward", f"--arch={name}", f"--state={out}", f"--images={tmp_path / 'images.npy'}",
               f"--out={tmp_path / 'torch.npy'}", f"--stem_padding={padding}")
    assert _relative_error(np.load(tmp_path / "torch.npy"), model(images, training=False).numpy()) <= 1e-4
    # The file itself: torchvision's keys, torch layouts, every BatchNorm's num_batches_tracked.
    tensors, _ = torch_io.read_checkpoint(out)
    assert tensors["conv1.weight"].shape == ((64, 3, 7, 7) if name == "resnet50" else (64, 3, 3, 3))
    assert "layer2.0.downsample.0.weight" in tensors and "layer2.0.downsample.1.running_var" in tensors
    # torchvision's 1000-way fc as zeros, so that the stock model loads the file strictly (torch_side does).
    assert tensors["fc.weight"].shape == (1000, model.output_shape[-1]) and not tensors["fc.weight"].any()
    assert tensors["bn1.num_batches_tracked"].dtype == np.int64


def test_a_key_missing_extra_or_of_another_shape_names_the_first(files):
    path = _checkpoint(os.path.join(files, "solo_resnet18"))
    good = torch_import.read_source(path)

    def build(change):
        tensors = dict(good.tensors)
        change(tensors)
        return torch_import.build_encoder(dataclasses.replace(good, tensors=tensors))

    def drop(t):
        del t["backbone.layer3.1.conv2.weight"]
        del t["backbone.layer1.0.bn1.running_var"]

    with pytest.raises(torch_io.CheckpointError, match=r"missing key backbone\.layer1\.0\.bn1\.running_var$"):
        build(drop)
    with pytest.raises(torch_io.CheckpointError, match=r"unexpected key backbone\.layer2\.0\.extra\.weight"):
        build(lambda t: t.update({"backbone.layer2.0.extra.weight": np.zeros(3, np.float32)}))

    def reshape(t):
        t["backbone.layer2.0.conv1.weight"] = np.zeros((128, 64, 1, 1), np.float32)

    with pytest.raises(torch_io.CheckpointError, match=r"key backbone\.layer2\.0\.conv1\.weight has shape "
                                                       r"\[128, 64, 1, 1\].*needs \[128, 64, 3, 3\]"):
        build(reshape)
    # The projector beside the backbone is outside the prefix: not read, not an error.
    assert any(k.startswith("projector.") for k in good.tensors)
