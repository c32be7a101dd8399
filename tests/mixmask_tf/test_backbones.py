"""Backbones: shapes, the CIFAR ResNet-18 stem, torchvision's ResNet-50, synchronized BatchNorm, no downloads."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import backbones
from mixmask_tf.batchnorm import BatchNorm


def _bns(model):
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out += _bns(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            out.append(layer)
    return out


def _conv3x3_same_np(x, kernel, stride=1):
    """NumPy 3x3 convolution (cross-correlation), "same" padding as TF (stride 1: one pixel each side)."""
    n, h, w, _ = x.shape
    padded = np.pad(x.astype(np.float64), [(0, 0), (1, 1), (1, 1), (0, 0)])
    out = np.zeros((n, h, w, kernel.shape[-1]))
    for dy in range(3):
        for dx in range(3):
            out += padded[:, dy:dy + h, dx:dx + w, :] @ kernel[dy, dx].astype(np.float64)
    return out[:, ::stride, ::stride]


def test_small_convnet():
    model = backbones.small_convnet((28, 28, 1), width=8)
    assert model(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 32)
    assert backbones.feature_dim(model) == 32
    assert all(bn.synchronized for bn in _bns(model))
    # Parameters: 3x3 convs without bias 1->8->16->32->32, and 4 per channel of each BatchNorm
    # (gamma, beta trainable; moving mean and variance not).
    convs = 9 * (1 * 8 + 8 * 16 + 16 * 32 + 32 * 32)
    bn_channels = 8 + 16 + 32 + 32
    assert convs == 15_048
    assert _count(model.trainable_weights) == convs + 2 * bn_channels == 15_224
    assert _count(model.non_trainable_weights) == 2 * bn_channels == 176
    # The first block against NumPy (inference BatchNorm of a fresh layer: x / sqrt(1 + eps)).
    x = np.random.default_rng(1).normal(size=(2, 28, 28, 1)).astype(np.float32)
    block = keras.Model(model.inputs, model.get_layer("relu0").output)
    eps = model.get_layer("bn0").epsilon
    want = np.maximum(_conv3x3_same_np(x, model.get_layer("conv0").kernel.numpy()) / np.sqrt(1.0 + eps), 0.0)
    np.testing.assert_allclose(block(x, training=False).numpy(), want, rtol=1e-5, atol=1e-5)


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
    # torchvision's ResNet-18 (11,689,512 parameters) minus its fc (512 * 1000 + 1000) and its 7x7
    # stem (7 * 7 * 3 * 64), plus the 3x3 stem (3 * 3 * 3 * 64); Keras also counts BatchNorm's
    # moving mean and variance: 2 per channel of the 20 BatchNorms (4,800 channels).
    trainable = 11_689_512 - (512 * 1000 + 1000) - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64
    assert _count(model.trainable_weights) == trainable == 11_168_832
    assert _count(model.non_trainable_weights) == 2 * sum(bn.gamma.shape[0] for bn in _bns(model)) == 9_600
    assert all(bn.synchronized for bn in _bns(model))


@pytest.fixture(scope="module")
def resnet50_224():
    # Building ResNet-50 takes a few seconds: once for the module.
    keras.utils.set_random_seed(0)
    return backbones.resnet50((224, 224, 3))


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def test_resnet50_parameter_count_is_torchvisions(resnet50_224):
    """torchvision's resnet50 has 25,557,032 parameters, 23,508,032 without its fc (2048·1000 + 1000).

    torchvision counts `model.parameters()`: conv kernels and BN weight/bias, not the BN running
    mean/var (buffers). Those are Keras' trainable weights; Keras' non-trainable weights are the BN
    moving mean/variance, 2 per channel of the 53 BNs (26,560 channels), and count_params() counts both.
    """
    model = resnet50_224
    assert 25_557_032 - (2048 * 1000 + 1000) == 23_508_032
    assert _count(model.trainable_weights) == 23_508_032
    bns = _bns(model)
    assert _count(model.non_trainable_weights) == 2 * sum(bn.gamma.shape[0] for bn in bns) == 53_120
    assert model.count_params() == 23_508_032 + 53_120


def test_resnet50_layout_is_torchvision_v1_5(resnet50_224):
    model = resnet50_224
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 53 and not any(c.use_bias for c in convs)
    assert all(c.padding == "valid" for c in convs)
    stem = model.get_layer("conv1")
    assert stem.kernel_size == (7, 7) and stem.strides == (2, 2) and stem.filters == 64
    assert model.get_layer("conv1_pad").padding == ((3, 3), (3, 3))
    assert model.get_layer("maxpool_pad").padding == ((1, 1), (1, 1))
    pool = model.get_layer("maxpool")
    assert pool.pool_size == (3, 3) and pool.strides == (2, 2) and pool.padding == "valid"
    # Bottlenecks [3, 4, 6, 3], widths 64..512, expansion 4; the stride on the 3x3 conv (v1.5) of
    # the first block of layer2-layer4, a downsample branch where the shape changes.
    names = {l.name for l in model.layers}
    for stage, (width, blocks) in enumerate(zip([64, 128, 256, 512], [3, 4, 6, 3]), start=1):
        for block in range(blocks):
            name = f"layer{stage}_{block}"
            stride = (2, 2) if (stage > 1 and block == 0) else (1, 1)
            c1, c2, c3 = (model.get_layer(f"{name}_conv{i}") for i in (1, 2, 3))
            assert (c1.kernel_size, c1.strides, c1.filters) == ((1, 1), (1, 1), width)
            assert (c2.kernel_size, c2.strides, c2.filters) == ((3, 3), stride, width)
            assert (c3.kernel_size, c3.strides, c3.filters) == ((1, 1), (1, 1), 4 * width)
            assert model.get_layer(f"{name}_pad2").padding == ((1, 1), (1, 1))
            if block == 0:
                down = model.get_layer(f"{name}_downsample_conv")
                assert (down.kernel_size, down.strides, down.filters) == ((1, 1), stride, 4 * width)
                assert f"{name}_downsample_bn" in names
            else:
                assert f"{name}_downsample_conv" not in names
        assert f"layer{stage}_{blocks}_conv1" not in names
    # torchvision's init: kaiming normal, fan_out, ReLU gain (std sqrt(2 / (k·k·out))).
    for conv in convs:
        init = conv.kernel_initializer.get_config()
        assert type(conv.kernel_initializer).__name__ == "VarianceScaling"
        assert (init["scale"], init["mode"], init["distribution"]) == (2.0, "fan_out", "untruncated_normal")
    kernel = np.asarray(model.get_layer("layer4_0_conv2").kernel)
    np.testing.assert_allclose(kernel.std(), np.sqrt(2.0 / (3 * 3 * 512)), rtol=0.02)


def test_resnet50_batchnorm_is_torchvisions(resnet50_224):
    bns = _bns(resnet50_224)
    assert len(bns) == 53
    for bn in bns:
        assert isinstance(bn, BatchNorm) and bn.synchronized
        assert bn.momentum == 0.9 and bn.epsilon == 1e-5  # PyTorch momentum 0.1, eps 1e-5
        np.testing.assert_array_equal(np.asarray(bn.gamma), 1.0)
        np.testing.assert_array_equal(np.asarray(bn.beta), 0.0)  # zero_init_residual=False


def test_resnet50_shapes_and_symmetric_padding(resnet50_224):
    model = resnet50_224
    assert model.output_shape == (None, 2048) and backbones.feature_dim(model) == 2048
    x = np.random.default_rng(0).normal(size=(2, 224, 224, 3)).astype(np.float32)
    assert model(x[:1], training=False).shape == (1, 2048)
    small = backbones.resnet50((64, 64, 3))
    stem = keras.Model(small.inputs, [small.get_layer(n).output for n in ("conv1", "relu", "maxpool")])
    conv, relu, pooled = (np.asarray(t) for t in stem(x[:, :64, :64], training=False))
    assert small(x[:, :64, :64]).shape == (2, 2048)
    assert [small.get_layer(f"layer{i}_0_out").output.shape[1] for i in (1, 2, 3, 4)] == [16, 8, 4, 2]
    # torchvision's padding: 3 on every side of the 7x7/2 conv, -inf padding of 1 for the max-pool.
    kernel = small.get_layer("conv1").kernel
    expected = tf.nn.conv2d(x[:, :64, :64], kernel, strides=2, padding=[[0, 0], [3, 3], [3, 3], [0, 0]])
    np.testing.assert_allclose(conv, expected.numpy(), rtol=1e-4, atol=1e-4)
    padded = tf.pad(relu, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=-np.inf)
    np.testing.assert_array_equal(pooled, tf.nn.max_pool2d(padded, 3, 2, "VALID").numpy())
    with pytest.raises(ValueError, match="input_shape must be"):
        backbones.resnet50((64, 64))


def test_resnet50_keras_still_builds():
    """keras.applications' ResNet50 (v1: stride in the first 1x1 conv, conv biases, BN momentum 0.99)."""
    model = backbones.build_backbone("resnet50_keras", (64, 64, 3))
    assert model.output_shape == (None, 2048)
    assert model.count_params() == 23_587_712
    assert model.get_layer("conv3_block1_1_conv").strides == (2, 2)
    bns = _bns(model)
    assert len(bns) == 53 and all(bn.synchronized for bn in bns)


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone"):
        backbones.build_backbone("vit", (32, 32, 3))


def test_clone_for_momentum_encoder():
    model = backbones.small_convnet((16, 16, 3), width=4)
    clone = keras.models.clone_model(model)
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    # Its own variables: equal outputs once the weights are copied, and training the clone (here:
    # changing its weights) leaves the model alone.
    x = np.random.default_rng(2).normal(size=(2, 16, 16, 3)).astype(np.float32)
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone(x, training=False).numpy(), model(x, training=False).numpy())
    before = [w.numpy().copy() for w in model.weights]
    clone.get_layer("conv0").kernel.assign(clone.get_layer("conv0").kernel * 2.0)
    assert not np.allclose(clone(x, training=False).numpy(), model(x, training=False).numpy())
    for w, b in zip(model.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
