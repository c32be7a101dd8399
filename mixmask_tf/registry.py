"""The registries: every name a user can choose (framework, branch, backbone, augmentation preset).

Each registry maps a name to ``"module:attribute"``, the place that implements it, so that the
names can be read without importing TensorFlow (the command-line flags take their choices from
here before TensorFlow is imported, see ``trainers/flag_groups``), and a new framework, branch,
backbone or preset is one line here plus its own file. :func:`resolve` imports the implementation.

This module imports nothing (neither TensorFlow nor the rest of the project).
"""

import importlib

__all__ = ["FRAMEWORKS", "BRANCHES", "BACKBONES", "AUGMENT_PRESETS", "resolve"]

# Framework name -> trainer class (``mixmask_tf.models``). MoCo v1 and v2 share one trainer; the
# version is the name (v2 adds the MLP head).
FRAMEWORKS = {
    "mocov2": "mixmask_tf.models.moco:MoCo",
    "mocov1": "mixmask_tf.models.moco:MoCo",
    "simclr": "mixmask_tf.models.simclr:SimCLR",
    "byol": "mixmask_tf.models.byol:BYOL",
    "simsiam": "mixmask_tf.models.simsiam:SimSiam",
}

# Branch name -> branch class (``mixmask_tf.branches``, one file per branch).
BRANCHES = {
    "none": "mixmask_tf.branches.base:Branch",
    "mixmask": "mixmask_tf.branches.mixmask:MixMaskBranch",
    "unmix": "mixmask_tf.branches.unmix:UnMixBranch",
    "mixmask_unmix": "mixmask_tf.branches.mixmask_unmix:MixMaskUnMixBranch",
    "erase": "mixmask_tf.branches.erase:EraseBranch",
    "mscn": "mixmask_tf.branches.mscn:MSCNBranch",
    "saliency": "mixmask_tf.branches.saliency:SaliencyBranch",
}

# Backbone name -> builder ``fn(input_shape, **kwargs) -> keras.Model``.
BACKBONES = {
    "small_convnet": "mixmask_tf.backbones:small_convnet",
    "resnet18_cifar": "mixmask_tf.backbones:resnet18_cifar",
    "resnet50": "mixmask_tf.backbones:resnet50",  # torchvision's layout (the papers')
    "resnet50_keras": "mixmask_tf.backbones:resnet50_keras",  # keras.applications.ResNet50
}

# Augmentation preset name -> ``fn(size, channels) -> (view1, view2)`` ViewConfigs.
AUGMENT_PRESETS = {
    "fashion_mnist": "mixmask_tf.augment.presets:fashion_mnist_views",
    "cifar": "mixmask_tf.augment.presets:cifar_views",
    "mocov1": "mixmask_tf.augment.presets:mocov1_views",
    "mocov2": "mixmask_tf.augment.presets:mocov2_views",
    "simclr": "mixmask_tf.augment.presets:simclr_views",
    "byol": "mixmask_tf.augment.presets:byol_views",
}


def resolve(registry, name, kind="name"):
    """The object registered under ``name`` (imports its module).

    Args:
      registry: one of the dicts of this module.
      name: a key of ``registry``.
      kind: what the names are, for the error message ("framework", "branch", ...).

    Raises:
      ValueError: an unknown name; the message lists the known ones.
    """
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(registry)}")
    module, _, attribute = registry[name].partition(":")
    return getattr(importlib.import_module(module), attribute)
