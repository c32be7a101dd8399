"""export.torch_weights without PyTorch: Detectron2's names, and what it refuses (one line, exit 2).

The exported tensors against PyTorch itself: tests/mixmask_tf/test_torch_import.py and
tests/trainers/test_import_checkpoint.py.
"""

import json
import pickle

import keras
import numpy as np
import pytest

from conftest import run_module
from export import torch_weights
from mixmask_tf import backbones, torch_io


def test_detectron2_names_follow_mocos_conversion_script():
    # MoCo's convert-pretrain-to-detectron2.py, applied by hand to these keys.
    expected = {"conv1.weight": "stem.conv1.weight", "bn1.running_mean": "stem.conv1.norm.running_mean",
                "layer1.0.conv1.weight": "res2.0.conv1.weight", "layer1.0.bn2.bias": "res2.0.conv2.norm.bias",
                "layer2.0.downsample.0.weight": "res3.0.shortcut.weight",
                "layer2.0.downsample.1.running_var": "res3.0.shortcut.norm.running_var",
                "layer4.2.bn3.weight": "res5.2.conv3.norm.weight"}
    state = {k: np.full((1,), i, np.float32) for i, k in enumerate(expected)}
    state.update({"bn1.num_batches_tracked": np.zeros((), np.int64), "fc.weight": np.zeros((2, 2), np.float32)})
    renamed = torch_weights.detectron2_names(state)
    assert {v: float(renamed[v][0]) for v in expected.values()} == {v: float(i) for i, v in enumerate(expected.values())}
    assert len(renamed) == len(expected)


def test_detectron2_file_holds_every_backbone_tensor(tmp_path):
    keras.utils.set_random_seed(0)
    model = backbones.resnet18_cifar((32, 32, 3))
    path = str(tmp_path / "r18.keras")
    model.save(path)
    torch_weights.export_weights(path, str(tmp_path / "r18.pkl"), fmt="detectron2")
    with open(tmp_path / "r18.pkl", "rb") as f:
        payload = pickle.load(f)  # our own file
    assert payload["matching_heuristics"] is True
    conv = model.get_layer("s1b0_down").kernel.numpy()
    np.testing.assert_array_equal(payload["model"]["res3.0.shortcut.weight"], conv.transpose(3, 2, 0, 1))
    # 20 convs (1 stem + 16 + 3 shortcuts) and 20 BatchNorms of 4 tensors each
    assert len(payload["model"]) == 20 + 20 * 4
    # .safetensors: a zero 1000-way fc by default (the stock model loads it strictly), none with fc="none".
    for fc, expected in (("zeros", {"fc.weight", "fc.bias"}), ("none", set())):
        torch_weights.export_weights(path, str(tmp_path / f"{fc}.safetensors"), fc=fc)
        tensors, _ = torch_io.read_checkpoint(str(tmp_path / f"{fc}.safetensors"))
        assert {k for k in tensors if k.startswith("fc")} == expected
        assert len(tensors) == len(expected) + 20 + 20 * 5  # + num_batches_tracked per BatchNorm


def test_other_backbones_and_missing_encoders_are_refused(tmp_path):
    model = backbones.small_convnet((28, 28, 1), width=4)
    path = str(tmp_path / "small.keras")
    model.save(path)
    with pytest.raises(ValueError, match="not one of the torchvision layouts"):
        torch_weights.export_weights(path, str(tmp_path / "x.safetensors"))
    result = run_module("export.torch_weights", f"--encoder={path}", f"--out={tmp_path}/x.safetensors")
    lines = [l for l in result.stderr.splitlines() if l.startswith("export.torch_weights: error:")]
    assert result.returncode == 2 and len(lines) == 1 and "not one of the torchvision layouts" in lines[0]
    result = run_module("export.torch_weights", f"--encoder={tmp_path}/nothing", f"--out={tmp_path}/x.safetensors")
    assert result.returncode == 2 and "is neither a run folder" in result.stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_a_run_with_an_input_filter_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    backbones.resnet18_cifar((32, 32, 3)).save(str(run / "backbone.keras"))
    (run / "config.json").write_text(json.dumps({"input_filter": {"sigma": 5.0, "radius": 15}, "mean": [0.5] * 3,
                                                 "std": [0.25] * 3}))
    with pytest.raises(ValueError, match="applies an input filter"):
        torch_weights.export_weights(str(run), str(tmp_path / "x.safetensors"))
