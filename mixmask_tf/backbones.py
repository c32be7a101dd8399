"""Image encoders ("backbones"): functional Keras models mapping images to a feature vector.

Every backbone here uses `batchnorm.BatchNorm(synchronized=True)`: on one device it is plain
BatchNorm, trained with TensorFlow's fused kernel; under `tf.distribute` it computes batch
statistics over the global batch, which is this project's replacement for MoCo's shuffle-BN
(TensorFlow has no shuffle-BN; see README).

Any functional Keras model `images [N, H, W, C] -> features [N, F]` can be used as a backbone:
`keras.models.clone_model` must be able to copy it (for momentum / target encoders).
"""

import keras
from keras import layers

from mixmask_tf import registry
from mixmask_tf.batchnorm import BatchNorm, batch_norm

BACKBONES = tuple(registry.BACKBONES)


def _bn(name):
    return batch_norm(name)


def small_convnet(input_shape, width=32, depth=4, pool_grid=1, name="small_convnet"):
    """A small VGG-style ConvNet that trains in minutes on a 2-core CPU.

    Conv-BN-ReLU blocks of width, 2·width, 4·width, 4·width channels (stride-2 3×3 convs
    downsample in the second and third), then with ``depth=5`` a fifth of 8·width channels and
    stride 2; then average pooling: global (``pool_grid=1``) or to a pool_grid × pool_grid grid of
    overlapping windows, flattened.

    Args:
      input_shape: (H, W, C) of the normalised float input.
      width: channels of the first block.
      depth: 4 or 5 blocks.
      pool_grid: 1 (global average pooling) or the side g of the pooled grid (g >= 2; the last
        feature map must be at least g × g).

    Returns:
      keras.Model images [N, H, W, C] -> features [N, F], F = c·g², c = 4·width (depth 4) or
      8·width (depth 5).

    Raises:
      ValueError: depth not 4 or 5, pool_grid < 1, or a grid larger than the last feature map.
    """
    if depth not in (4, 5):
        raise ValueError(f"small_convnet depth must be 4 or 5, got {depth}")
    if pool_grid < 1:
        raise ValueError(f"pool_grid must be >= 1, got {pool_grid}")
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = inputs
    blocks = [(width, 1), (2 * width, 2), (4 * width, 2), (4 * width, 1), (8 * width, 2)][:depth]
    for i, (filters, stride) in enumerate(blocks):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = _bn(f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
    if pool_grid == 1:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    else:
        side = min(int(x.shape[1]), int(x.shape[2]))
        if side < pool_grid:
            raise ValueError(f"pool_grid {pool_grid} exceeds the last feature map ({x.shape[1]}x{x.shape[2]})")
        # g windows of size k with stride s covering the map: k = ceil(side / g), s = (side - k) // (g - 1).
        window = -(-side // pool_grid)
        stride = max(1, (side - window) // (pool_grid - 1))
        x = layers.AveragePooling2D(window, stride, name="pool")(x)
        x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, x, name=name)


def _basic_block(x, filters, stride, name):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = _bn(f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = _bn(f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_down")(x)
        shortcut = _bn(f"{name}_down_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def resnet18_cifar(input_shape, name="resnet18_cifar"):
    """CIFAR ResNet-18: 3×3 stride-1 stem, no max-pool, BasicBlocks [2, 2, 2, 2].

    Args:
      input_shape: (H, W, C), e.g. (32, 32, 3).

    Returns:
      keras.Model images [N, H, W, C] -> features [N, 512].
    """
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = layers.Conv2D(64, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _bn("stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate([64, 128, 256, 512]):
        for block in range(2):
            stride = 2 if (block == 0 and stage > 0) else 1
            x = _basic_block(x, filters, stride, name=f"s{stage}b{block}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name=name)


def _synchronize_batchnorm(model):
    """A copy of a functional model with every BatchNormalization a synchronized `BatchNorm`."""

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, layers.BatchNormalization):
            config["synchronized"] = True
            return BatchNorm.from_config(config)
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone)


def resnet50(input_shape, name="resnet50"):
    """ResNet-50 from `keras.applications` (weights=None: nothing is downloaded).

    Returns:
      keras.Model images [N, H, W, C] -> features [N, 2048], BatchNorm synchronized.
    """
    base = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=tuple(input_shape), pooling="avg"
    )
    model = _synchronize_batchnorm(base)
    return keras.Model(model.inputs, model.outputs, name=name)


def build_backbone(name, input_shape, **kwargs):
    """Builds a backbone by name (one of BACKBONES).

    Raises:
      ValueError: unknown name.
    """
    return registry.resolve(registry.BACKBONES, name, "backbone")(input_shape, **kwargs)


def feature_dim(backbone):
    """Size F of the backbone's output features [N, F]."""
    return int(backbone.output_shape[-1])
