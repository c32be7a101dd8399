"""Image augmentation for two-view pretraining, batched.

* :mod:`~mixmask_tf.augment.ops`: the batched ops (crop boxes, resized crop, flip, colour jitter,
  grayscale, blur, solarize, normalise), pure functions of images and per-image parameters;
* :mod:`~mixmask_tf.augment.presets`: :class:`ViewConfig` and the named recipes (MoCo v1/v2,
  SimCLR, BYOL, CIFAR, Fashion-MNIST), no TensorFlow;
* :mod:`~mixmask_tf.augment.views`: the two-view entry point (:class:`TwoViewAugment`), the
  parameter draws, the crop and finish stages (the finish stage runs on the host or inside the
  train step: ``augment_on``), the packing of the host share, and :func:`eval_preprocess`.

The names below are re-exported so ``from mixmask_tf import augment; augment.TwoViewAugment``
reads as one module.
"""

from mixmask_tf.augment.ops import normalize, to_float
from mixmask_tf.augment.presets import (PRESET_NAMES, PRESET_VIEWS, PRESETS, SizeLike, ViewConfig, as_size, preset,
                                        preset_views)
from mixmask_tf.augment.views import (AUGMENT_ON, FINISH_PARAMS, TwoViewAugment, apply_view_params, augment_batch,
                                      augment_encoded, augment_image, crop_view, crop_view_encoded, eval_preprocess,
                                      finish_view, pack_views, packed_length, sample_view_params, to_uint8, two_views,
                                      unpack_views, view_configs)

__all__ = ["to_float", "normalize", "SizeLike", "ViewConfig", "as_size", "PRESET_NAMES", "PRESET_VIEWS",
           "PRESETS", "preset", "preset_views", "TwoViewAugment", "sample_view_params",
           "apply_view_params", "augment_batch", "augment_encoded", "augment_image", "two_views", "view_configs", "eval_preprocess", "AUGMENT_ON", "FINISH_PARAMS",
           "crop_view", "crop_view_encoded", "finish_view", "to_uint8", "pack_views", "unpack_views", "packed_length"]
