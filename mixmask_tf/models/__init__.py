"""Framework trainers: one file per framework on `trainer.SiameseTrainer`."""

import inspect

from mixmask_tf.models.trainer import SiameseTrainer
from mixmask_tf.models.byol import BYOL
from mixmask_tf.models.moco import MoCo
from mixmask_tf.models.simclr import SimCLR
from mixmask_tf.models.simsiam import SimSiam

from mixmask_tf import registry

# Name -> trainer class, from the registry (``mixmask_tf.registry.FRAMEWORKS``).
FRAMEWORKS = {name: registry.resolve(registry.FRAMEWORKS, name, "framework") for name in registry.FRAMEWORKS}


def framework_options(framework):
    """Names of the options a framework's trainer accepts (besides backbone, branch, seed).

    The online probe's arguments (`probe_classes`, `probe_optimizer`) belong to every trainer
    (`SiameseTrainer`) and are arguments of `build_trainer`, not framework options.
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")
    params = inspect.signature(FRAMEWORKS[framework].__init__).parameters
    skip = {"self", "backbone", "branch", "seed", "kwargs", "version"}
    return tuple(name for name in params if name not in skip)


def build_trainer(framework, backbone, branch=None, seed=0, probe_classes=0, probe_optimizer=None, device_augment=None,
                  **options):
    """The one way to build a trainer: framework name, backbone, branch and options.

    Args:
      framework: one of FRAMEWORKS ("mocov1", "mocov2", "simclr", "byol", "simsiam").
      backbone: functional Keras model images -> features.
      branch: a `mixmask_tf.branches.Branch` (e.g. `branches.build_branch("mixmask", grid_size=4)`) or None.
      seed: base seed of the step's random draws.
      probe_classes: K > 0 adds an online linear probe with K classes, trained on labeled
        batches (see `SiameseTrainer`); 0: none.
      probe_optimizer: the probe's optimizer (default Adam(1e-3)); only with probe_classes.
      device_augment: an `augment.TwoViewAugment` whose finish stage runs inside the step (the
        dataset then yields its packed host share: `make_pretrain_dataset(..., augment_on="device")`).
      **options: the framework's own arguments (see `framework_options(framework)`).

    Raises:
      ValueError: unknown framework, or an option the framework does not take.
    """
    allowed = framework_options(framework)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"framework {framework!r} does not take {', '.join(unknown)}; "
                         f"its options are: {', '.join(allowed)}")
    if framework.startswith("moco"):
        options["version"] = framework[-2:]
    if probe_classes:
        options.update(probe_classes=probe_classes, probe_optimizer=probe_optimizer)
    elif probe_optimizer is not None:
        raise ValueError("probe_optimizer needs probe_classes > 0")
    return FRAMEWORKS[framework](backbone, branch=branch, seed=seed, device_augment=device_augment, **options)


__all__ = ["SiameseTrainer", "MoCo", "SimCLR", "BYOL", "SimSiam", "FRAMEWORKS", "build_trainer",
           "framework_options"]
