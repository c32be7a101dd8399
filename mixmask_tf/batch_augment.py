"""Vectorised two-view augmentation: one batch of images per call instead of one image.

The per-example ops of :mod:`mixmask_tf.augment` run ~80 small TensorFlow ops per image inside
``tf.data``'s map; on small images (28x28 Fashion-MNIST, 32x32 CIFAR) the op overhead, not the
arithmetic, is the cost, and the pipeline takes about as much CPU as the train step it feeds.
Here the same recipe (:class:`augment.ViewConfig`, same order of ops, same parameter
distributions) runs as ~100 ops per *batch*:

1. :func:`sample_view_params` draws every random parameter of a batch at once from one stateless
   seed (crop boxes with torchvision's ``RandomResizedCrop.get_params`` rule, flips, colour
   jitter factors and order, grayscale, blur sigma, solarisation);
2. :func:`apply_view_params` applies them: crop + bilinear resize by gathers (half-pixel
   centres, clamped to the crop: what ``tf.image.resize`` of ``tf.slice`` gives), then
   per-example ``tf.where`` selections for the random ops.

Draws differ from the per-example path (one seed per batch instead of one per image), so the two
paths give different but identically distributed views. ``tests/test_batch_augment.py`` checks
:func:`apply_view_params` against a NumPy reference and the per-example ops, and the parameter
distributions against the ViewConfig.
"""

from __future__ import annotations

from typing import Dict

import tensorflow as tf

from mixmask_tf.augment import (ViewConfig, _blur_radius, _gaussian_kernel, _grayscale, _split, normalize,
                                to_float)
# One random-resized-crop box per image: (top, left, crop_h, crop_w) int32 [B] each, torchvision's
# get_params rule (the per-example random_resized_crop draws its box with batch 1).
from mixmask_tf.augment import _sample_crop_boxes as sample_crop_boxes

__all__ = ["sample_crop_boxes", "sample_view_params", "apply_view_params", "augment_batch", "two_views"]


def _u(seed, shape, minval=0.0, maxval=1.0) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed=seed, minval=minval, maxval=maxval, dtype=tf.float32)


def sample_view_params(seed, batch, height: int, width: int, channels: int,
                       config: ViewConfig) -> Dict[str, tf.Tensor]:
    """Draws every random parameter of one view for a batch.

    Args:
      seed: int32/int64 tensor [2].
      batch: B (int or int32 scalar tensor).
      height, width, channels: static input image size.
      config: the view's ViewConfig.

    Returns:
      dict of [B] tensors: ``top``, ``left``, ``crop_h``, ``crop_w`` (int32); ``flip``,
      ``jitter``, ``gray``, ``blur``, ``solarize`` (bool: apply the op); ``brightness``,
      ``contrast``, ``saturation`` (float32 factors), ``hue`` (float32 delta), ``sigma``
      (float32 blur sigma); and ``order_keys`` float32 [B, 4]: the jitter applies its active ops
      (of brightness, contrast, saturation, hue) in increasing key order, a uniformly random
      order.
    """
    seeds = _split(seed, 6)
    top, left, crop_h, crop_w = sample_crop_boxes(seeds[0], batch, height, width, config.crop_scale,
                                                  config.crop_ratio)
    s_jit = _split(seeds[2], 6)

    def factor(s, strength):
        return _u(s, [batch], max(0.0, 1.0 - strength), 1.0 + strength)

    s_blur = _split(seeds[4], 2)
    hue = config.hue
    if not 0.0 <= hue <= 0.5:
        raise ValueError(f"hue must lie in [0, 0.5], got {hue}")
    return {
        "top": top, "left": left, "crop_h": crop_h, "crop_w": crop_w,
        "flip": (_u(seeds[1], [batch]) < 0.5) & config.flip,
        "jitter": _u(s_jit[0], [batch]) < config.jitter_p,
        "order_keys": _u(s_jit[1], [batch, 4]),
        "brightness": factor(s_jit[2], config.brightness),
        "contrast": factor(s_jit[3], config.contrast),
        "saturation": factor(s_jit[4], config.saturation),
        "hue": _u(s_jit[5], [batch], -hue, hue),
        "gray": (_u(seeds[3], [batch]) < config.grayscale_p) & (channels == 3),
        "blur": _u(s_blur[0], [batch]) < config.blur_p,
        "sigma": _u(s_blur[1], [batch], 0.1, 2.0),
        "solarize": _u(seeds[5], [batch]) < config.solarize_p,
    }


def _resize_axis(start, length, out_size: int):
    """Half-pixel bilinear sample positions of a crop along one axis (tf.image.resize's rule).

    Args:
      start, length: int32 [B], the crop's first index and size along the axis.
      out_size: output size along the axis.

    Returns:
      (lower, upper) int32 [B, out] absolute indices and lerp float32 [B, out].
    """
    scale = tf.cast(length, tf.float32)[:, None] / float(out_size)
    pos = (tf.range(out_size, dtype=tf.float32)[None, :] + 0.5) * scale - 0.5
    floor = tf.floor(pos)
    lower = tf.maximum(tf.cast(floor, tf.int32), 0)
    upper = tf.minimum(tf.cast(tf.math.ceil(pos), tf.int32), length[:, None] - 1)
    return start[:, None] + lower, start[:, None] + upper, pos - floor


def resized_crop(images, top, left, crop_h, crop_w, size) -> tf.Tensor:
    """Crops box b of image b and resizes it bilinearly to ``size`` (half-pixel centres).

    Equal (to float rounding) to ``tf.image.resize(tf.slice(image, box), size)`` per image.

    Args:
      images: float32 [B, H, W, C].
      top, left, crop_h, crop_w: int32 [B] boxes inside the images.
      size: (out_h, out_w).

    Returns:
      float32 [B, out_h, out_w, C].
    """
    out_h, out_w = size
    y0, y1, wy = _resize_axis(top, crop_h, out_h)
    x0, x1, wx = _resize_axis(left, crop_w, out_w)
    rows0 = tf.gather(images, y0, axis=1, batch_dims=1)  # [B, out_h, W, C]
    rows1 = tf.gather(images, y1, axis=1, batch_dims=1)
    wx = wx[:, None, :, None]

    def cols(rows):
        a = tf.gather(rows, x0, axis=2, batch_dims=1)
        b = tf.gather(rows, x1, axis=2, batch_dims=1)
        return a + (b - a) * wx

    top_row, bottom_row = cols(rows0), cols(rows1)
    return top_row + (bottom_row - top_row) * wy[:, :, None, None]


def _per_image(values):
    """[B] -> [B, 1, 1, 1] for broadcasting against images."""
    return tf.reshape(values, [-1, 1, 1, 1])


def _jitter(x, params, config: ViewConfig, channels: int):
    """Colour jitter with per-image factors and random order (augment.color_jitter's ops)."""
    ops = []
    if config.brightness > 0:
        ops.append((0, lambda v: tf.clip_by_value(v * _per_image(params["brightness"]), 0.0, 1.0)))
    if config.contrast > 0:
        def contrast(v):
            mean = tf.reduce_mean(_grayscale(v), axis=[1, 2, 3], keepdims=True)
            return tf.clip_by_value((v - mean) * _per_image(params["contrast"]) + mean, 0.0, 1.0)
        ops.append((1, contrast))
    if channels == 3 and config.saturation > 0:
        def saturation(v):
            gray = _grayscale(v)
            return tf.clip_by_value((v - gray) * _per_image(params["saturation"]) + gray, 0.0, 1.0)
        ops.append((2, saturation))
    if channels == 3 and config.hue > 0:
        def hue(v):
            hsv = tf.image.rgb_to_hsv(v)
            h = hsv[..., :1] + _per_image(params["hue"])
            h = h - tf.floor(h)
            return tf.clip_by_value(tf.image.hsv_to_rgb(tf.concat([h, hsv[..., 1:]], -1)), 0.0, 1.0)
        ops.append((3, hue))
    if not ops or config.jitter_p <= 0:
        return x
    out = x
    if len(ops) == 1:
        out = ops[0][1](out)
    else:
        # position[b, k]: the active op image b applies k-th (increasing order key).
        ids = tf.constant([i for i, _ in ops], tf.int32)
        position = tf.argsort(tf.gather(params["order_keys"], ids, axis=1), axis=1)
        for k in range(len(ops)):
            candidates = [op(out) for _, op in ops]
            chosen = candidates[0]
            for j in range(1, len(ops)):
                chosen = tf.where(_per_image(position[:, k] == j), candidates[j], chosen)
            out = chosen
    return tf.where(_per_image(params["jitter"]), out, x)


def _blur(x, sigma, radius: int):
    """Separable Gaussian blur, per-image sigma [B], reflect padding (augment.gaussian_blur's op)."""
    kernel = _gaussian_kernel(sigma, radius)  # [B, 2r + 1]
    height, width = x.shape[1], x.shape[2]
    padded = tf.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    rows = sum(_per_image(kernel[:, k]) * padded[:, k:k + height] for k in range(2 * radius + 1))
    return sum(_per_image(kernel[:, k]) * rows[:, :, k:k + width] for k in range(2 * radius + 1))


def apply_view_params(images, params: Dict[str, tf.Tensor], config: ViewConfig) -> tf.Tensor:
    """Applies one view's augmentation with the given parameters (see sample_view_params).

    Order as ``augment.augment_view``: crop + resize, flip, [grayscale,] colour jitter,
    [grayscale,] blur, solarize.

    Args:
      images: uint8 (or float in [0, 1]) [B, H, W, C], C in {1, 3} and static.
      params: dict from :func:`sample_view_params` for this batch.
      config: the view's ViewConfig.

    Returns:
      float32 [B, config.size[0], config.size[1], C] in [0, 1] (not normalised).
    """
    x = to_float(images)
    channels = int(x.shape[-1])
    x = resized_crop(x, params["top"], params["left"], params["crop_h"], params["crop_w"], config.size)
    x = tf.where(_per_image(params["flip"]), tf.reverse(x, axis=[2]), x)

    def grayscale(v):
        if channels == 1 or config.grayscale_p <= 0:
            return v
        return tf.where(_per_image(params["gray"]), tf.tile(_grayscale(v), [1, 1, 1, channels]), v)

    if config.grayscale_before_jitter:
        x = grayscale(x)
    x = _jitter(x, params, config, channels)
    if not config.grayscale_before_jitter:
        x = grayscale(x)
    radius = _blur_radius(config.size[0], 0.1)
    if config.blur_p > 0 and radius > 0:
        x = tf.where(_per_image(params["blur"]), _blur(x, params["sigma"], radius), x)
    if config.solarize_p > 0:
        x = tf.where(_per_image(params["solarize"]) & (x >= 0.5), 1.0 - x, x)
    return x


def augment_batch(images, seed, config: ViewConfig) -> tf.Tensor:
    """One augmented view of every image of a batch.

    Args:
      images: uint8 [B, H, W, C] with static H, W, C (B may be dynamic).
      seed: int32/int64 tensor [2].
      config: the view's ViewConfig.

    Returns:
      float32 [B, config.size[0], config.size[1], C] in [0, 1] (not normalised).
    """
    images = tf.convert_to_tensor(images)
    _, height, width, channels = images.shape
    if None in (height, width, channels):
        raise ValueError(f"augment_batch needs static image height, width and channels, got {images.shape}")
    params = sample_view_params(seed, tf.shape(images)[0], int(height), int(width), int(channels), config)
    return apply_view_params(images, params, config)


def two_views(view1: ViewConfig, view2: ViewConfig, mean, std, images, seed) -> tf.Tensor:
    """Two independently augmented, normalised views of every image of a batch.

    Args:
      view1, view2: ViewConfigs of the query and key views (same output size).
      mean, std: per-channel normalisation ([0, 1] pixel units).
      images: uint8 [B, H, W, C], static H, W, C.
      seed: int32/int64 tensor [2]; the views use two independent sub-seeds.

    Returns:
      float32 [B, 2, H', W', C]: view 1 then view 2, normalised.
    """
    seeds = _split(seed, 2)
    v1 = augment_batch(images, seeds[0], view1)
    v2 = augment_batch(images, seeds[1], view2)
    return normalize(tf.stack([v1, v2], axis=1), mean, std)
