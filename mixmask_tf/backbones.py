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
    """torchvision's BasicBlock: 3x3 conv (with the stride, padding 1 on every side), BN, ReLU,
    3x3 conv, BN, plus the shortcut (1x1 conv with the stride + BN where the shape changes), ReLU."""
    shortcut = x
    if stride == 1:
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    else:
        # Keras' "same" pads bottom/right only for a stride-2 conv on an even size; PyTorch pads 1
        # on every side: pad explicitly, as torchvision (and the papers' CIFAR code) does.
        y = layers.ZeroPadding2D(1, name=f"{name}_pad1")(x)
        y = layers.Conv2D(filters, 3, strides=stride, padding="valid", use_bias=False, name=f"{name}_conv1")(y)
    y = _bn(f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = _bn(f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_down")(x)
        shortcut = _bn(f"{name}_down_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def resnet18_cifar(input_shape, name="resnet18_cifar", stem_padding=1):
    """CIFAR ResNet-18: 3×3 stride-1 stem, no max-pool, BasicBlocks [2, 2, 2, 2].

    torchvision's ResNet-18 with `conv1` a 3×3 stride-1 conv and `maxpool` removed, as solo-learn's
    and Un-Mix's CIFAR code build it, padded as PyTorch pads (1 on every side of each 3×3 conv):
    the same function of the same weights (`mixmask_tf.torch_resnet` maps the names).

    Args:
      input_shape: (H, W, C), e.g. (32, 32, 3).
      stem_padding: zero padding of the 3×3 stem on every side: 1 (default; "same") or, e.g., 2 as
        solo-learn's CIFAR ResNet (`Conv2d(3, 64, 3, stride=1, padding=2)`: 34×34 maps from 32×32).

    Returns:
      keras.Model images [N, H, W, C] -> features [N, 512].
    """
    if int(stem_padding) < 0:
        raise ValueError(f"stem_padding must be >= 0, got {stem_padding}")
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    if int(stem_padding) == 1:
        x = layers.Conv2D(64, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    else:
        x = layers.ZeroPadding2D(int(stem_padding), name="stem_pad")(inputs)
        x = layers.Conv2D(64, 3, padding="valid", use_bias=False, name="stem_conv")(x)
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


def resnet50_keras(input_shape, name="resnet50_keras"):
    """ResNet-50 from `keras.applications` (weights=None: nothing is downloaded).

    Keras' layout, not torchvision's: the stride of a downsampling bottleneck sits in its first
    1×1 conv (ResNet v1), convolutions have biases, BatchNorm momentum 0.99 (PyTorch 0.01) and
    epsilon 1.001e-5; 23,587,712 weights (23,534,592 trainable). See `resnet50` for the papers'.

    Returns:
      keras.Model images [N, H, W, C] -> features [N, 2048], BatchNorm synchronized.
    """
    base = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=tuple(input_shape), pooling="avg"
    )
    model = _synchronize_batchnorm(base)
    return keras.Model(model.inputs, model.outputs, name=name)


# torchvision's BatchNorm2d: PyTorch momentum 0.1 is Keras momentum 0.9 (the weight of the old
# moving statistic), epsilon 1e-5.
_TORCH_BN = {"momentum": 0.9, "epsilon": 1e-5}


def _torch_bn(name):
    return batch_norm(name, **_TORCH_BN)


def _torch_conv(filters, kernel_size, stride, name):
    """A bias-free conv with torchvision's init: kaiming normal, mode fan_out, ReLU gain.

    padding="valid": the callers pad explicitly where torchvision pads (Keras' "same" pads
    asymmetrically, bottom/right first, when the stride is 2).
    """
    return layers.Conv2D(
        filters, kernel_size, strides=stride, padding="valid", use_bias=False,
        kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal"),
        name=name)


def _torch_bottleneck(x, width, stride, name):
    """torchvision's Bottleneck (v1.5): 1×1 → 3×3 with the stride → 1×1 (4·width), + shortcut."""
    out_channels = 4 * width
    y = _torch_conv(width, 1, 1, f"{name}_conv1")(x)
    y = _torch_bn(f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.ZeroPadding2D(1, name=f"{name}_pad2")(y)
    y = _torch_conv(width, 3, stride, f"{name}_conv2")(y)
    y = _torch_bn(f"{name}_bn2")(y)
    y = layers.ReLU(name=f"{name}_relu2")(y)
    y = _torch_conv(out_channels, 1, 1, f"{name}_conv3")(y)
    y = _torch_bn(f"{name}_bn3")(y)
    shortcut = x
    if stride != 1 or x.shape[-1] != out_channels:
        shortcut = _torch_conv(out_channels, 1, stride, f"{name}_downsample_conv")(x)
        shortcut = _torch_bn(f"{name}_downsample_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def resnet50(input_shape, name="resnet50"):
    """ResNet-50 in torchvision's layout (`torchvision.models.resnet50`, the MoCo v2 / MixMask one).

    Layout (torchvision's, padding as torchvision's, explicit):
      conv1 7×7/2 (64, pad 3) → bn1 → relu → maxpool 3×3/2 (pad 1): [N, H/4, W/4, 64];
      layer1-layer4: [3, 4, 6, 3] bottlenecks of width 64/128/256/512, expansion 4, i.e.
      [N, H/4, W/4, 256], [N, H/8, W/8, 512], [N, H/16, W/16, 1024], [N, H/32, W/32, 2048]
      (sizes rounded up); each bottleneck is 1×1 conv, BN, ReLU, 3×3 conv carrying the stride
      (ResNet v1.5; the first block of layer2-layer4 has stride 2), pad 1, BN, ReLU, 1×1 conv, BN,
      plus the shortcut (1×1 conv with the stride + BN where the shape changes), then ReLU;
      global average pooling → [N, 2048].
    No convolution has a bias. BatchNorm: the project's synchronized `BatchNorm`, momentum 0.9
    and epsilon 1e-5 in Keras terms (PyTorch momentum 0.1), gamma 1, beta 0 (torchvision's
    default, zero_init_residual=False). Conv kernels: kaiming normal, fan_out, ReLU gain.
    23,508,032 trainable weights (torchvision's 25,557,032 without its 2048×1000 + 1000 fc), plus
    53,120 BatchNorm moving statistics (non-trainable; torchvision's running-stat buffers).
    Layer names follow torchvision's modules with "_" for ".": `conv1`, `bn1`,
    `layer1_0_conv1`, `layer2_0_downsample_conv` (torchvision `layer2.0.downsample.0`), ...

    Args:
      input_shape: (H, W, C), e.g. (224, 224, 3); any H, W >= 1.

    Returns:
      keras.Model images [N, H, W, C] -> features [N, 2048].

    Raises:
      ValueError: input_shape not (H, W, C) with positive sizes.
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or any(d is not None and int(d) < 1 for d in input_shape):
        raise ValueError(f"resnet50 input_shape must be (H, W, C) with positive sizes, got {input_shape}")
    inputs = keras.Input(shape=input_shape, name="images")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = _torch_conv(64, 7, 2, "conv1")(x)
    x = _torch_bn("bn1")(x)
    x = layers.ReLU(name="relu")(x)
    # torchvision's max-pool pads with -inf; after the ReLU every input is >= 0, so padding with
    # zeros gives the same maxima (every 3×3 window holds at least one real pixel).
    x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="maxpool")(x)
    for stage, (width, blocks) in enumerate(zip([64, 128, 256, 512], [3, 4, 6, 3]), start=1):
        for block in range(blocks):
            stride = 2 if (block == 0 and stage > 1) else 1
            x = _torch_bottleneck(x, width, stride, name=f"layer{stage}_{block}")
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    return keras.Model(inputs, x, name=name)


def build_backbone(name, input_shape, **kwargs):
    """Builds a backbone by name (one of BACKBONES).

    Raises:
      ValueError: unknown name.
    """
    return registry.resolve(registry.BACKBONES, name, "backbone")(input_shape, **kwargs)


def feature_dim(backbone):
    """Size F of the backbone's output features [N, F]."""
    return int(backbone.output_shape[-1])


def feature_map_model(backbone):
    """The backbone up to its last spatial feature map: a Keras model images [N, H, W, C] ->
    [N, g_h, g_w, K] sharing the backbone's weights (the saliency branch's localisation map).

    The map is the output of the last layer whose output has rank 4 and that is not a pooling
    layer: ResNet-50 at 224 px gives its 7 x 7 x 2048 map before the global average pool; the
    small ConvNet its last 7 x 7 block at 28 px (before the `--pool_grid` pooling).

    Raises:
      ValueError: the backbone has no such layer.
    """
    for layer in reversed(backbone.layers):
        output = getattr(layer, "output", None)
        if output is None or len(output.shape) != 4 or "Pooling" in type(layer).__name__:
            continue
        return keras.Model(backbone.inputs, output, name=f"{backbone.name}_feature_map")
    raise ValueError(f"backbone {backbone.name!r} has no spatial (rank-4) feature map to localise with")
