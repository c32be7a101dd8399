"""Backbones: shapes, the CIFAR ResNet-18 stem, synchronized BatchNorm, no downloads."""

import keras
import numpy as np
import pytest

from mixmask_tf import backbones


def _bns(model):
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out += _bns(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            out.append(layer)
    return out


def test_small_convnet():
    model = backbones.small_convnet((28, 28, 1), width=8)
    assert model(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 32)
    assert backbones.feature_dim(model) == 32
    assert all(bn.synchronized for bn in _bns(model))


def test_small_convnet_depth_and_pool_grid_match_numpy():
    """depth=5 adds a stride-2 block of 8·width channels; pool_grid=g averages g x g windows."""
    x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
    deep = backbones.small_convnet((28, 28, 1), width=4, depth=5)
    assert deep.output_shape == (None, 32) and deep.get_layer("conv4").strides == (2, 2)
    grid = backbones.small_convnet((28, 28, 1), width=4, pool_grid=2)
    assert grid.output_shape == (None, 2 * 2 * 16)
    # NumPy reference of the pooling: windows of 4 at stride 3 on the 7 x 7 map (rows 0-3, 3-6).
    last = keras.Model(grid.inputs, grid.get_layer("relu3").output)(x).numpy()
    assert last.shape == (2, 7, 7, 16)
    cells = [last[:, r:r + 4, c:c + 4].mean(axis=(1, 2)) for r in (0, 3) for c in (0, 3)]
    np.testing.assert_allclose(grid(x).numpy(), np.stack(cells, axis=1).reshape(2, -1), rtol=1e-5, atol=1e-6)
    # The default architecture keeps its layer names (checkpoints of older runs still load).
    assert [l.name for l in backbones.small_convnet((28, 28, 1), width=4).layers][-1] == "pool"
    with pytest.raises(ValueError, match="depth must be 4 or 5"):
        backbones.small_convnet((28, 28, 1), depth=3)
    with pytest.raises(ValueError, match="exceeds the last feature map"):
        backbones.small_convnet((28, 28, 1), depth=5, pool_grid=5)


def test_resnet18_cifar_stem_and_size():
    model = backbones.resnet18_cifar((32, 32, 3))
    assert model(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 512)
    stem = model.get_layer("stem_conv")
    assert stem.kernel_size == (3, 3) and stem.strides == (1, 1)
    assert not any(isinstance(l, keras.layers.MaxPooling2D) for l in model.layers)
    # 11.2M parameters: the CIFAR ResNet-18 (torchvision's ResNet-18 minus its 7x7 stem and fc).
    assert 11.0e6 < model.count_params() < 11.3e6
    assert all(bn.synchronized for bn in _bns(model))


def test_resnet50_no_weights_synchronized():
    model = backbones.resnet50((64, 64, 3))
    assert model.output_shape == (None, 2048)
    bns = _bns(model)
    assert len(bns) == 53 and all(bn.synchronized for bn in bns)


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone"):
        backbones.build_backbone("vit", (32, 32, 3))


def test_clone_for_momentum_encoder():
    model = backbones.small_convnet((16, 16, 3), width=4)
    clone = keras.models.clone_model(model)
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
