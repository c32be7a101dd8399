"""torchvision's ResNet key names <-> this project's Keras ResNets, both ways, and layout detection.

One name mapping serves the import (:func:`assign_state`, a PyTorch state dict into a Keras model)
and the export (:func:`state_dict`, a Keras model to a torchvision state dict):

* `resnet50` (`mixmask_tf.backbones.resnet50`, torchvision's ResNet-50): Keras layer `conv1` is
  torchvision's `conv1`, `bn1` is `bn1`, `layer2_0_conv2` is `layer2.0.conv2`,
  `layer2_0_downsample_conv` / `_bn` are `layer2.0.downsample.0` / `.1`;
* `resnet18_cifar` (`mixmask_tf.backbones.resnet18_cifar`: torchvision's ResNet-18 with a 3x3
  stride-1 `conv1` and no max-pool, as solo-learn's and Un-Mix's CIFAR code build it): `stem_conv`
  is `conv1`, `stem_bn` is `bn1`, `s1b0_conv1` is `layer2.0.conv1`, `s1b0_down` / `s1b0_down_bn`
  are `layer2.0.downsample.0` / `.1`;
* the MoCo heads (`mixmask_tf.models.heads.mlp_head`, inside a run's `head` model): v2's
  `hidden0` / `out` are MoCo's `fc.0` / `fc.2` (Linear, ReLU, Linear), v1's `out` is `fc`.

Tensors: a conv kernel HWIO [kh, kw, in, out] is PyTorch's OIHW weight transposed (3, 2, 0, 1); a
Dense kernel [in, out] is a Linear weight [out, in] transposed; BatchNorm gamma / beta /
moving_mean / moving_variance are weight / bias / running_mean / running_var. BatchNorm's
epsilon and momentum are not in a state dict: both sides use torchvision's (epsilon 1e-5, PyTorch
momentum 0.1 = Keras momentum 0.9), which :func:`assign_state` checks. `num_batches_tracked` is
ignored on import and written as 0 on export (torchvision's strict `load_state_dict` wants it).
"""

import re

import numpy as np

from mixmask_tf.torch_io import CheckpointError

BACKBONES = ("resnet50", "resnet18_cifar")
# Bottlenecks / basic blocks per stage.
_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet18_cifar": (2, 2, 2, 2)}
# Where the encoder's keys start, tried in this order when the prefix is "auto": MoCo's query
# encoder (MixMask, Un-Mix, MoCo v1/v2 `.pth.tar`), solo-learn's backbone, DataParallel, plain.
AUTO_PREFIXES = ("module.encoder_q.", "encoder_q.", "module.backbone.", "backbone.", "module.", "")
_BN_VARS = (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"), ("moving_variance", "running_var"))
_TORCH_BN = {"epsilon": 1e-5, "momentum": 0.9}


def torch_module_name(backbone, layer_name):
    """torchvision's module name of a Keras layer of `backbone` ("resnet50" or "resnet18_cifar").

    Raises:
      ValueError: a layer name outside the layout.
    """
    if backbone == "resnet50":
        if layer_name in ("conv1", "bn1"):
            return layer_name
        m = re.fullmatch(r"layer(\d)_(\d+)_(conv\d|bn\d|downsample_conv|downsample_bn)", layer_name)
        if m:
            part = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(m[3], m[3])
            return f"layer{m[1]}.{m[2]}.{part}"
    elif backbone == "resnet18_cifar":
        if layer_name in ("stem_conv", "stem_bn"):
            return {"stem_conv": "conv1", "stem_bn": "bn1"}[layer_name]
        m = re.fullmatch(r"s(\d)b(\d+)_(conv1|bn1|conv2|bn2|down|down_bn)", layer_name)
        if m:
            part = {"down": "downsample.0", "down_bn": "downsample.1"}.get(m[3], m[3])
            return f"layer{int(m[1]) + 1}.{m[2]}.{part}"
    raise ValueError(f"{backbone} layer {layer_name!r} has no torchvision name")


def _head_module_name(version, layer_name):
    names = {"v2": {"hidden0": "fc.0", "out": "fc.2"}, "v1": {"out": "fc"}}[version]
    if layer_name not in names:
        raise ValueError(f"MoCo {version} head layer {layer_name!r} has no torch name")
    return names[layer_name]


def _entries(model, module_name):
    """[(torch key, Keras variable, to_torch, to_keras)] of every weight of a Keras model, in
    layer order; `module_name(layer_name)` names the torch module of a layer."""
    entries = []
    for layer in model.layers:
        if not layer.weights:
            continue
        module = module_name(layer.name)
        kind = type(layer).__name__
        if kind == "Conv2D":
            entries.append((f"{module}.weight", layer.kernel, lambda a: a.transpose(3, 2, 0, 1),
                            lambda a: a.transpose(2, 3, 1, 0)))
        elif kind == "Dense":
            entries.append((f"{module}.weight", layer.kernel, lambda a: a.T, lambda a: a.T))
            if layer.bias is not None:
                entries.append((f"{module}.bias", layer.bias, None, None))
        elif "BatchNorm" in kind:
            for keras_name, torch_name in _BN_VARS:
                entries.append((f"{module}.{torch_name}", getattr(layer, keras_name), None, None))
        else:
            raise ValueError(f"layer {layer.name} ({kind}) has no torch counterpart")
        if kind == "Conv2D" and layer.use_bias:
            entries.append((f"{module}.bias", layer.bias, None, None))
    return entries


def backbone_entries(backbone, name):
    """`_entries` of a Keras backbone `name` ("resnet50" or "resnet18_cifar")."""
    return _entries(backbone, lambda layer_name: torch_module_name(name, layer_name))


def head_entries(head, version):
    """`_entries` of a MoCo head model (`hidden0`, `out`; version "v1" or "v2")."""
    return _entries(head, lambda layer_name: _head_module_name(version, layer_name))


def bn_modules(backbone, name):
    """torch module names of the backbone's BatchNorm layers (they get `num_batches_tracked`)."""
    return [torch_module_name(name, l.name) for l in backbone.layers if "BatchNorm" in type(l).__name__]


def state_dict(backbone, name, head=None, head_version=None):
    """The torchvision state dict {key: array} of a Keras backbone (and a MoCo head).

    Args:
      backbone: a Keras `resnet50` or `resnet18_cifar`.
      name: its builder's name.
      head: None, or a MoCo head model (`fc.*` keys, MoCo's layout).
      head_version: "v1" or "v2" with a head.

    Returns:
      {torch key: float32 array in torch layout}, plus `<bn>.num_batches_tracked` int64 0.
    """
    out = {}
    entries = backbone_entries(backbone, name) + (head_entries(head, head_version) if head is not None else [])
    for key, variable, to_torch, _ in entries:
        value = np.asarray(variable.numpy(), np.float32)
        out[key] = np.ascontiguousarray(to_torch(value) if to_torch else value)
    for module in bn_modules(backbone, name):
        out[f"{module}.num_batches_tracked"] = np.zeros((), np.int64)
    return out


def check_torch_batchnorm(model):
    """Raises ValueError unless every BatchNorm of `model` has torchvision's epsilon and momentum."""
    for layer in model.layers:
        if "BatchNorm" in type(layer).__name__:
            if not (np.isclose(layer.epsilon, _TORCH_BN["epsilon"]) and np.isclose(layer.momentum, _TORCH_BN["momentum"])):
                raise ValueError(f"{layer.name}: epsilon {layer.epsilon}, momentum {layer.momentum}; torchvision's "
                                 "BatchNorm2d has epsilon 1e-5 and momentum 0.1 (Keras 0.9)")


def assign_state(entries, tensors, prefix, source):
    """Copies `tensors[prefix + key]` into every Keras variable of `entries`, after checking all.

    Args:
      entries: `backbone_entries` / `head_entries` output.
      tensors: {key: array} of the checkpoint.
      prefix: the key prefix of the encoder ("module.encoder_q.", "backbone.", "").
      source: the checkpoint's name, for messages.

    Raises:
      CheckpointError: the first missing key, or the first key of another shape.
    """
    values = []
    for key, variable, _, to_keras in entries:
        full = prefix + key
        if full not in tensors:
            raise CheckpointError(f"{source}: missing key {full}")
        value = np.asarray(tensors[full])
        expected = tuple(variable.shape)
        converted = to_keras(value) if (to_keras and value.ndim == len(expected)) else value
        if tuple(converted.shape) != expected:
            raise CheckpointError(f"{source}: key {full} has shape {list(value.shape)}, this project's "
                                  f"{variable.path} needs {list(_torch_shape(expected))}")
        values.append(np.asarray(converted, np.float32))
    for (_, variable, _, _), value in zip(entries, values):
        variable.assign(value)


def _torch_shape(keras_shape):
    """The torch shape of a Keras variable's shape (conv HWIO -> OIHW, Dense [in, out] -> [out, in])."""
    if len(keras_shape) == 4:
        h, w, i, o = keras_shape
        return (o, i, h, w)
    if len(keras_shape) == 2:
        return tuple(reversed(keras_shape))
    return keras_shape


def check_no_extra(entries, tensors, prefix, source, allowed=()):
    """Raises CheckpointError naming the first key under `prefix` that `entries` do not take
    (`num_batches_tracked` and the `allowed` keys aside)."""
    expected = {prefix + key for key, *_ in entries} | {prefix + key for key in allowed}
    for key in tensors:
        if key.startswith(prefix) and key not in expected and not key.endswith(".num_batches_tracked"):
            raise CheckpointError(f"{source}: unexpected key {key} (not part of the {describe_prefix(prefix)})")


def describe_prefix(prefix):
    return f"encoder under {prefix!r}" if prefix else "encoder"


def find_prefix(tensors, prefix, source):
    """The key prefix of the encoder: `prefix` itself, or with "auto" the first of
    AUTO_PREFIXES under which `conv1.weight` exists.

    Raises:
      CheckpointError: no known layout (names the first keys).
    """
    if prefix != "auto":
        if f"{prefix}conv1.weight" not in tensors:
            raise CheckpointError(f"{source}: no key {prefix}conv1.weight: --key_prefix={prefix!r} does not hold a "
                                  "torchvision-style ResNet")
        return prefix
    for candidate in AUTO_PREFIXES:
        if f"{candidate}conv1.weight" in tensors:
            return candidate
    first = ", ".join(list(tensors)[:4]) or "no tensors at all"
    raise CheckpointError(f"{source}: unknown layout: no torchvision-style ResNet (conv1.weight) under any of the "
                          f"prefixes {', '.join(repr(p) for p in AUTO_PREFIXES)}; its first keys are {first}")


def _blocks_per_stage(tensors, prefix):
    counts = []
    for stage in range(1, 5):
        indices = {int(m[1]) for k in tensors for m in [re.match(re.escape(f"{prefix}layer{stage}.") + r"(\d+)\.", k)] if m}
        counts.append(max(indices) + 1 if indices else 0)
    return tuple(counts)


def detect_backbone(tensors, prefix, source):
    """"resnet50" or "resnet18_cifar": which of this project's backbones the keys under `prefix` are.

    Raises:
      CheckpointError: another architecture (says which, as far as the keys tell).
    """
    stem = np.asarray(tensors[f"{prefix}conv1.weight"])
    bottleneck = f"{prefix}layer1.0.conv3.weight" in tensors
    blocks = _blocks_per_stage(tensors, prefix)
    kernel = tuple(stem.shape[2:]) if stem.ndim == 4 else tuple(stem.shape)
    if kernel == (7, 7) and bottleneck:
        name = "resnet50"
    elif kernel == (3, 3) and not bottleneck:
        name = "resnet18_cifar"
    else:
        block = "bottleneck" if bottleneck else "basic"
        raise CheckpointError(f"{source}: wrong architecture: a ResNet with a {'x'.join(map(str, kernel))} stem "
                              f"and {block} blocks {list(blocks)}, not one of this project's backbones (resnet50: "
                              "7x7 stem, bottlenecks [3, 4, 6, 3]; resnet18_cifar: 3x3 stem, basic blocks [2, 2, 2, 2])")
    if blocks != _BLOCKS[name]:
        raise CheckpointError(f"{source}: wrong architecture: {list(blocks)} blocks per stage, {name} has "
                              f"{list(_BLOCKS[name])}")
    return name


def detect_head(tensors, prefix):
    """(version, hidden_dim, embedding_dim) of a MoCo projection head under `{prefix}fc.`, or None.

    Only a MoCo encoder (a prefix with `encoder_q` / `encoder_k`) has a projection head as `fc`;
    elsewhere `fc` is a classifier (torchvision's) and is not read.
    """
    if "encoder_q" not in prefix and "encoder_k" not in prefix:
        return None
    if f"{prefix}fc.0.weight" in tensors and f"{prefix}fc.2.weight" in tensors:
        return "v2", int(np.shape(tensors[f"{prefix}fc.0.weight"])[0]), int(np.shape(tensors[f"{prefix}fc.2.weight"])[0])
    if f"{prefix}fc.weight" in tensors:
        return "v1", None, int(np.shape(tensors[f"{prefix}fc.weight"])[0])
    return None


def ignored_classifier(tensors, prefix, head):
    """The `fc.weight` / `fc.bias` keys of a classifier that the import leaves out (no head read)."""
    if head is not None:
        return []
    return [k for k in (f"{prefix}fc.weight", f"{prefix}fc.bias") if k in tensors]
