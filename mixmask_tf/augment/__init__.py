"""Image augmentation for two-view pretraining, batched.

* :mod:`~mixmask_tf.augment.ops`: the batched ops (crop boxes, resized crop, flip, colour jitter,
  grayscale, blur, solarize, normalise), pure functions of images and per-image parameters;
* :mod:`~mixmask_tf.augment.presets`: :class:`ViewConfig` and the named recipes (MoCo v1/v2,
  SimCLR, BYOL, CIFAR, Fashion-MNIST), no TensorFlow;
* :mod:`~mixmask_tf.augment.views`: the two-view entry point (:class:`TwoViewAugment`), the
  parameter draws and :func:`eval_preprocess`.

The names below are re-exported so ``from mixmask_tf import augment; augment.TwoViewAugment``
reads as one module.
"""

from mixmask_tf.augment.ops import normalize, to_float
from mixmask_tf.augment.presets import (PRESET_NAMES, PRESET_VIEWS, PRESETS, SizeLike, ViewConfig, as_size, preset,
                                        preset_views)
from mixmask_tf.augment.views import (TwoViewAugment, apply_view_params, augment_batch, augment_encoded,
                                      augment_image, eval_preprocess, sample_view_params, two_views,
                                      view_configs)

__all__ = ["to_float", "normalize", "SizeLike", "ViewConfig", "as_size", "PRESET_NAMES", "PRESET_VIEWS",
           "PRESETS", "preset", "preset_views", "TwoViewAugment", "sample_view_params",
           "apply_view_params", "augment_batch", "augment_encoded", "augment_image", "two_views", "view_configs", "eval_preprocess"]
