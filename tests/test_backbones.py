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
