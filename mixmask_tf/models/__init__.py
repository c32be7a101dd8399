"""Framework trainers: one file per framework on `base.SiameseTrainer`."""

from mixmask_tf.models.base import SiameseTrainer
from mixmask_tf.models.moco import MoCo

FRAMEWORKS = ("mocov1", "mocov2")


def build_trainer(framework, backbone, branch=None, seed=0, **options):
    """Builds a trainer by framework name.

    Args:
      framework: "mocov2" or "mocov1".
      backbone: functional Keras model images -> features.
      branch: a `mixmask_tf.branches.Branch` or None.
      seed: base seed.
      **options: the framework's own arguments (e.g. queue_size, temperature).

    Raises:
      ValueError: unknown framework or invalid option.
    """
    if framework in ("mocov1", "mocov2"):
        return MoCo(backbone, branch=branch, version=framework[-2:], seed=seed, **options)
    raise ValueError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")


__all__ = ["SiameseTrainer", "MoCo", "FRAMEWORKS", "build_trainer"]
