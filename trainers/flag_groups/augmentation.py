"""Augmentation flags of pretraining: the two-view preset and its crop scale."""

import dataclasses

from absl import flags

from mixmask_tf import registry

from .data import parse_crop_scale

FLAGS = flags.FLAGS

flags.DEFINE_enum("augment", "fashion_mnist", list(registry.AUGMENT_PRESETS),
                  "Augmentation preset named after its reference (byol: asymmetric views; cifar: no blur).")
flags.DEFINE_enum("augment_on", "auto", ["auto", "host", "device"],
                  "Where the per-pixel augmentation (flip, colour jitter, grayscale, blur, solarise, normalise) "
                  "runs: host (in tf.data, overlapped with the step: right for CPU-only training), device (first "
                  "thing inside the compiled train step, on each replica; the host only decodes, crops and "
                  "resizes to uint8: right for GPUs and TPUs), or auto: device when the strategy's devices are "
                  "GPUs or TPUs, else host. Both give the same views.")
flags.DEFINE_list("crop_scale", None, "Override the preset's random-resized-crop area range of both views: 'a,b' "
                 "with 0 < a <= b <= 1.")


def crop_scale():
    """--crop_scale as (a, b), or None for the preset's; raises UserError when malformed."""
    return None if FLAGS.crop_scale is None else parse_crop_scale(FLAGS.crop_scale)


def validate():
    """Checks the augmentation flags; raises UserError."""
    crop_scale()


def augment_on(strategy):
    """--augment_on resolved for `strategy`: "device" when it is set so, or when auto and the strategy's
    devices are accelerators (GPU, TPU); else "host"."""
    if FLAGS.augment_on != "auto":
        return FLAGS.augment_on
    try:
        devices = strategy.extended.worker_devices
    except (AttributeError, RuntimeError, NotImplementedError):  # the default strategy: TF's visible devices
        import tensorflow as tf

        devices = [device.name for device in tf.config.list_logical_devices()]
    accelerated = any(kind in str(device).upper() for device in devices for kind in ("GPU", "TPU"))
    return "device" if accelerated else "host"


def two_view_augment(image_shape, mean, std, extra_views=0):
    """The TwoViewAugment of --augment (with --crop_scale) for images of `image_shape` (H, W, C),
    with `extra_views` more views (the branch's: MSCN's two extra masked views)."""
    from mixmask_tf import augment

    view1, view2 = augment.preset_views(FLAGS.augment, image_shape[:2], image_shape[2])
    scale = crop_scale()
    if scale is not None:
        view1, view2 = (dataclasses.replace(v, crop_scale=scale) for v in (view1, view2))
    return augment.TwoViewAugment(view1, view2, mean, std, extra_views=extra_views)
