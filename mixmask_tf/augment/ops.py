"""Batched image augmentation ops with torchvision / SimCLR semantics.

Every op works on a batch ``[B, H, W, C]`` (C in {1, 3} and static) and takes its per-image
parameters explicitly (a crop box, a factor, an on/off flag per image), so an op is a pure
function; the random parameters are drawn in one place, :func:`mixmask_tf.augment.views.
sample_view_params` (and :func:`sample_crop_boxes` here). Something that needs one image uses
the same ops with a batch of one. The ops are ~100 TensorFlow ops per *batch*, which is what
makes the two-view pipeline cheap on small images.

Semantics (checked against NumPy in ``tests/mixmask_tf/augment/``):

* crop: torchvision ``RandomResizedCrop.get_params`` (area ~ U(scale), log aspect ~ U(log ratio),
  ``round`` to integer sides, first of 10 valid attempts, else a ratio-clipped centre crop), then a
  bilinear resize with half-pixel centres (what ``tf.image.resize`` of the slice gives);
* colour jitter: torchvision ``ColorJitter``: multiplicative brightness, contrast blended with the
  mean of the grayscale image, saturation blended with the grayscale image, hue rotation in HSV,
  the active ops in a per-image random order, each result clipped to [0, 1]; 1-channel images get
  only brightness and contrast;
* grayscale: ITU-R 601 luminance (``tf.image.rgb_to_grayscale``) on all 3 channels;
* blur: SimCLR's kernel rule (``int(0.1 * height)``, made odd), per-image sigma, separable
  convolution with reflect padding;
* solarize: pixels >= threshold become ``1 - x``.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from mixmask_tf import seeds
# The blur of the views is the project's one Gaussian blur (with a σ per image).
from mixmask_tf.ops.filters import gaussian_blur  # noqa: F401

__all__ = ["to_float", "normalize", "static_channels", "grayscale", "sample_crop_boxes", "resized_crop", "decode_resized_crops_uint8", "flip",
           "to_grayscale", "adjust_brightness", "adjust_contrast", "adjust_saturation",
           "adjust_hue", "color_jitter", "JITTER_OPS", "blur_radius",
           "gaussian_blur", "solarize"]

# decode_resized_crops_uint8(decode_once="cheaper"): what reading a JPEG file costs beyond the pixels it
# computes, as a fraction of the image's pixels (the entropy decoding of the whole scan).
JPEG_FILE_COST = 0.5

# The colour-jitter ops, in the order of their columns in the ``order_keys`` of color_jitter.
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


def _per_image(values) -> tf.Tensor:
    """[B] -> [B, 1, 1, 1] for broadcasting against images."""
    return tf.reshape(values, [-1, 1, 1, 1])


def static_channels(images) -> int:
    """Static channel count (last axis)."""
    channels = images.shape[-1]
    if channels is None:
        raise ValueError("the channel axis of the images must have a static size")
    return int(channels)


# ----------------------------------------------------------------------------- basic ops


def to_float(image_uint8) -> tf.Tensor:
    """Converts a uint8 image to float32 in [0, 1].

    Args:
      image_uint8: uint8 tensor of any shape (e.g. [H, W, C] or [B, H, W, C]). A float input is
        only cast to float32 (assumed to be in [0, 1] already).

    Returns:
      float32 tensor of the same shape, values in [0, 1].
    """
    image = tf.convert_to_tensor(image_uint8)
    if image.dtype == tf.uint8:
        return tf.cast(image, tf.float32) / 255.0
    return tf.cast(image, tf.float32)


def normalize(image, mean, std) -> tf.Tensor:
    """Per-channel standardisation ``(image - mean) / std``.

    Computed as ``image * (1 / std) + (-mean / std)``: a 1x1 convolution with a diagonal kernel
    and a bias (oneDNN's kernels; a per-channel broadcast is several times slower on the CPU),
    equal to the formula to float rounding.

    Args:
      image: float tensor [..., C], C static.
      mean: sequence of C floats (or one float), in the image's units.
      std: sequence of C floats (or one float), all > 0.

    Returns:
      float32 tensor with the shape of ``image``.
    """
    image = tf.cast(image, tf.float32)
    channels = static_channels(image)
    mean = np.broadcast_to(np.asarray(mean, np.float64).reshape(-1), [channels])
    std = np.broadcast_to(np.asarray(std, np.float64).reshape(-1), [channels])
    return _per_channel_affine(image, np.diag(1.0 / std), -mean / std)


def _per_channel_affine(image, matrix, bias) -> tf.Tensor:
    """``image @ matrix + bias`` over the channel axis: float32 [..., C] -> [..., D] for a constant
    float matrix [C, D] and bias [D], as one 1x1 convolution and a bias add (oneDNN's kernels on
    the CPU; a per-channel broadcast is several times slower there)."""
    matrix = np.asarray(matrix, np.float32)
    shape = tf.shape(image)
    flat = tf.reshape(image, [1, -1, 1, matrix.shape[0]])
    # Conv2D hands an empty input back unchanged, whatever its kernel's output channels: the
    # reshape gives an empty result its channel count.
    out = tf.reshape(tf.nn.conv2d(flat, tf.constant(matrix[None, None]), 1, "VALID"), [1, -1, 1, matrix.shape[1]])
    out = tf.nn.bias_add(out, tf.constant(np.asarray(bias, np.float32)))
    return tf.reshape(out, tf.concat([shape[:-1], [matrix.shape[1]]], 0))


# ITU-R 601 luminance weights, those of tf.image.rgb_to_grayscale.
_LUMA = np.array([0.2989, 0.5870, 0.1140], np.float32)


def grayscale(images) -> tf.Tensor:
    """Luminance [..., 1] of 1- or 3-channel float images (1 channel: unchanged): the
    ``tf.image.rgb_to_grayscale`` weights, as a sum of the weighted channels (to float rounding)."""
    if static_channels(images) == 1:
        return images
    images = tf.convert_to_tensor(images)
    return (images[..., 0:1] * _LUMA[0] + images[..., 1:2] * _LUMA[1]) + images[..., 2:3] * _LUMA[2]


def _mean_luminance(images) -> tf.Tensor:
    """Mean luminance of each image [B, H, W, C] -> [B, 1, 1, 1] (of the channel means: the same
    number as the mean of ``grayscale``, to float rounding, in one pass over the images)."""
    means = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    if static_channels(images) == 1:
        return means
    return tf.reduce_sum(means * _LUMA, axis=-1, keepdims=True)


def _select(apply, yes, no) -> tf.Tensor:
    """Image b of ``yes`` where ``apply[b]``, else of ``no``: a row select (bool [B], [B, ...]),
    which copies whole images, unlike an element-wise ``tf.where`` with a broadcast condition."""
    return tf.raw_ops.Select(condition=tf.convert_to_tensor(apply, tf.bool), x=yes, y=no)


# ----------------------------------------------------------------------------- crop, flip


def sample_crop_boxes(seed, batch, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                      attempts: int = 10):
    """Samples one crop box per image with torchvision ``RandomResizedCrop.get_params`` semantics.

    Per image, ``attempts`` candidates are drawn at once: target area = H*W*U(scale), aspect
    ratio = exp(U(log ratio[0], log ratio[1])), w = round(sqrt(area*aspect)),
    h = round(sqrt(area/aspect)). The first candidate with 0 < w <= W and 0 < h <= H is kept and
    placed uniformly at random (top ~ randint[0, H-h], left ~ randint[0, W-w]). If none fits, the
    centre crop of the largest box whose aspect ratio is clipped to the ratio range is used.

    Args:
      seed: int32/int64 tensor [2].
      batch: B, boxes to draw (int or int32 scalar tensor).
      height: int or int32 tensor, image height: a scalar (the same for the B images) or [B]
        (one per image, for images of different sizes).
      width: int or int32 tensor, image width: a scalar or [B].
      scale: (min, max) fraction of the image area.
      ratio: (min, max) aspect ratio width / height.
      attempts: number of candidate boxes (torchvision uses 10).

    Returns:
      (top, left, crop_height, crop_width): int32 [B] tensors.
    """
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    h_f = tf.cast(height, tf.float32)
    w_f = tf.cast(width, tf.float32)
    sub = seeds.split(seed, 3)

    # [1, 1] or [B, 1]: broadcast against the [B, attempts] candidates.
    area = tf.reshape(h_f * w_f, [-1, 1])
    target_area = area * seeds.uniform(sub[0], [batch, attempts], scale[0], scale[1])
    log_ratio = seeds.uniform(sub[1], [batch, attempts], math.log(ratio[0]), math.log(ratio[1]))
    aspect = tf.exp(log_ratio)
    cand_w = tf.cast(tf.round(tf.sqrt(target_area * aspect)), tf.int32)
    cand_h = tf.cast(tf.round(tf.sqrt(target_area / aspect)), tf.int32)
    valid = ((cand_w > 0) & (cand_w <= tf.reshape(width, [-1, 1])) & (cand_h > 0)
             & (cand_h <= tf.reshape(height, [-1, 1])))
    any_valid = tf.reduce_any(valid, axis=1)
    first = tf.argmax(tf.cast(valid, tf.int32), axis=1, output_type=tf.int32)

    # Fallback: whole image, clipped to the ratio range, centred.
    in_ratio = w_f / h_f
    min_r, max_r = float(min(ratio)), float(max(ratio))
    fb_w = tf.where(in_ratio > max_r, tf.cast(tf.round(h_f * max_r), tf.int32), width)
    fb_h = tf.where(in_ratio < min_r, tf.cast(tf.round(w_f / min_r), tf.int32), height)

    crop_h = tf.where(any_valid, tf.gather(cand_h, first, batch_dims=1), fb_h)
    crop_w = tf.where(any_valid, tf.gather(cand_w, first, batch_dims=1), fb_w)
    u = seeds.uniform(sub[2], [batch, 2])
    rand_top = tf.cast(tf.floor(u[:, 0] * tf.cast(height - crop_h + 1, tf.float32)), tf.int32)
    rand_left = tf.cast(tf.floor(u[:, 1] * tf.cast(width - crop_w + 1, tf.float32)), tf.int32)
    top = tf.where(any_valid, rand_top, (height - crop_h) // 2)
    left = tf.where(any_valid, rand_left, (width - crop_w) // 2)
    top = tf.clip_by_value(top, 0, height - crop_h)
    left = tf.clip_by_value(left, 0, width - crop_w)
    return top, left, crop_h, crop_w


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

    Equal (to float rounding) to ``tf.image.resize(tf.slice(image, box), size)`` per image. H and
    W may be dynamic.

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


def _decode_window(data, box, channels: int):
    """Decodes the window ``box`` = int32 [4] (top, left, height, width) of one encoded image: uint8
    [height, width, channels]. JPEG: ``decode_and_crop_jpeg`` (only the window's pixels are
    computed); other formats decode whole and are sliced."""

    def jpeg():
        return tf.image.decode_and_crop_jpeg(data, box, channels=channels)

    def other():
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        return tf.slice(image, tf.concat([box[:2], [0]], 0), tf.concat([box[2:], [channels]], 0))

    return tf.ensure_shape(tf.cond(tf.io.is_jpeg(data), jpeg, other), [None, None, channels])


def decode_resized_crops_uint8(contents, top, left, crop_h, crop_w, size, channels: int,
                               decode_once: str = "cheaper") -> tf.Tensor:
    """Several resized crops of every encoded image, rounded to uint8: the host's share of the views.

    Crop v of image b is the box ``(top[b, v], left[b, v], crop_h[b, v], crop_w[b, v])``: the
    full-image random resized crop. JPEG files decode only a window (``decode_and_crop_jpeg``: the
    rest of the image is never decompressed to pixels); other formats (PNG, BMP, GIF: first frame)
    decode whole and are sliced. The window is resized to ``size`` bilinearly with antialiasing
    (``tf.image.resize``, what torchvision's ``RandomResizedCrop`` does on PIL images: a downscale
    averages over the source pixels, an upscale is plain bilinear with half-pixel centres) and
    rounded to the nearest integer (PIL's uint8 pixels). A window is decoded one of two ways (the
    same pixels, except that libjpeg upsamples subsampled chroma at the edge of a decoded window
    from the edge itself: pixels on a window's border may differ by a few levels from those of a
    larger decode):

    * ``decode_once="never"``: every window decoded on its own (``decode_and_crop_jpeg``);
    * ``"always"``: the smallest box that holds image b's V windows decoded once (at most the
      whole image), the windows sliced from it;
    * ``"cheaper"`` (default): per image, whichever of the two decodes fewer pixels, counting a
      whole file's entropy decoding, which every JPEG decode pays, as ``JPEG_FILE_COST`` of the
      image's pixels (measured: :mod:`benchmarks.input_pipeline`).

    Args:
      contents: string [B], encoded images (JPEG, PNG, BMP, GIF).
      top, left, crop_h, crop_w: int32 [B, V], boxes inside the images.
      size: (out_h, out_w).
      channels: 1 or 3 (static).
      decode_once: "cheaper", "always" or "never".

    Returns:
      uint8 [B, V, out_h, out_w, channels].

    Raises:
      ValueError: an unknown ``decode_once``; (when run) a corrupt file or a box outside its image.
    """
    if decode_once not in ("cheaper", "always", "never"):
        raise ValueError(f"decode_once must be cheaper, always or never, got {decode_once!r}")
    out_h, out_w = int(size[0]), int(size[1])
    boxes = tf.stack([tf.cast(v, tf.int32) for v in (top, left, crop_h, crop_w)], axis=-1)  # [B, V, 4]
    views = boxes.shape[1]
    if views is None:
        raise ValueError("the number of crops per image (axis 1 of the boxes) must be static")

    def resize(window):
        resized = tf.image.resize(window, [out_h, out_w], method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

    def separately(data, image_boxes):
        return tf.stack([resize(_decode_window(data, image_boxes[v], channels)) for v in range(views)])

    def union_box(image_boxes):
        """(corner, extent) int32 [2] each: the smallest box holding the image's V windows."""
        corner = tf.reduce_min(image_boxes[:, :2], axis=0)
        return corner, tf.reduce_max(image_boxes[:, :2] + image_boxes[:, 2:], axis=0) - corner

    def once(data, image_boxes, corner, extent):
        union = _decode_window(data, tf.concat([corner, extent], 0), channels)
        return tf.stack([resize(tf.slice(union, tf.concat([image_boxes[v, :2] - corner, [0]], 0),
                                         tf.concat([image_boxes[v, 2:], [channels]], 0))) for v in range(views)])

    def one(args):
        data, image_boxes = args
        if decode_once == "never" or views == 1:
            return separately(data, image_boxes)
        corner, extent = union_box(image_boxes)
        if decode_once == "always":
            return once(data, image_boxes, corner, extent)
        union_area = tf.cast(tf.reduce_prod(extent), tf.float32)
        areas = tf.cast(tf.reduce_sum(tf.reduce_prod(image_boxes[:, 2:], axis=1)), tf.float32)

        def jpeg_cheaper():
            # Each decode also reads the file: about JPEG_FILE_COST of the whole image's pixels.
            whole = tf.cast(tf.reduce_prod(tf.image.extract_jpeg_shape(data)[:2]), tf.float32)
            return union_area <= areas + (views - 1) * JPEG_FILE_COST * whole

        # Other formats decode the whole image every time: once is always cheaper.
        cheaper = tf.cond(tf.io.is_jpeg(data), jpeg_cheaper, lambda: tf.constant(True))
        return tf.cond(cheaper, lambda: once(data, image_boxes, corner, extent), lambda: separately(data, image_boxes))

    return tf.map_fn(one, (tf.convert_to_tensor(contents), boxes),
                     fn_output_signature=tf.TensorSpec([views, out_h, out_w, channels], tf.uint8))


def flip(images, apply) -> tf.Tensor:
    """Flips image b left-right where ``apply[b]``: images [B, H, W, C], apply bool [B]."""
    return _select(apply, tf.reverse(images, axis=[2]), images)


# ----------------------------------------------------------------------------- colour


def to_grayscale(images, apply) -> tf.Tensor:
    """Replaces image b by its luminance on every channel where ``apply[b]`` (1 channel: identity).

    Args:
      images: float32 [B, H, W, C], C in {1, 3}.
      apply: bool [B].

    Returns:
      float32 [B, H, W, C].
    """
    channels = static_channels(images)
    if channels == 1:
        return images
    return _select(apply, tf.tile(grayscale(images), [1, 1, 1, channels]), images)


def adjust_brightness(images, factor) -> tf.Tensor:
    """torchvision adjust_brightness: ``clip(x * f)``; images [B, H, W, C], factor [B]."""
    return tf.clip_by_value(images * _per_image(factor), 0.0, 1.0)


def adjust_contrast(images, factor) -> tf.Tensor:
    """torchvision adjust_contrast: blend with the mean m of each grayscale image, ``clip((x - m) * f + m)``."""
    mean = _mean_luminance(images)
    return tf.clip_by_value((images - mean) * _per_image(factor) + mean, 0.0, 1.0)


def adjust_saturation(images, factor) -> tf.Tensor:
    """torchvision adjust_saturation: blend with the grayscale image g, ``clip((x - g) * f + g)`` (3 channels)."""
    gray = grayscale(images)
    return tf.clip_by_value((images - gray) * _per_image(factor) + gray, 0.0, 1.0)


def adjust_hue(images, delta) -> tf.Tensor:
    """torchvision adjust_hue: rotates each image's HSV hue by ``delta[b]`` (fraction of the circle), clipped.

    Computed without the HSV round trip: a hue rotation keeps each pixel's max ``v`` and min
    ``m`` (so ``c = v - m``), and ``hsv_to_rgb`` of the rotated hue ``h`` (in sixths of the circle,
    in [0, 6)) is ``m + c * clip(|h - 3| - 1, 0, 1)``, ``m + c * clip(2 - |h - 2|, 0, 1)``,
    ``m + c * clip(2 - |h - 4|, 0, 1)`` for R, G, B: the result of ``tf.image.rgb_to_hsv`` /
    ``hsv_to_rgb`` to float rounding.

    Args:
      images: float32 [B, H, W, 3] in [0, 1].
      delta: float32 [B], hue shifts in turns.

    Returns:
      float32 [B, H, W, 3] in [0, 1].
    """
    r, g, b = tf.unstack(images, axis=-1)
    v = tf.maximum(tf.maximum(r, g), b)
    m = tf.minimum(tf.minimum(r, g), b)
    c = v - m
    inverse = 1.0 / tf.where(c > 0, c, 1.0)
    # rgb_to_hsv's hue in sixths (0 for a gray pixel, whose c = 0 makes its hue irrelevant).
    hue = tf.where(r == v, (g - b) * inverse, tf.where(g == v, (b - r) * inverse + 2.0, (r - g) * inverse + 4.0))
    hue = hue + 6.0 * tf.reshape(tf.cast(delta, tf.float32), [-1, 1, 1])
    hue = hue - 6.0 * tf.floor(hue * (1.0 / 6.0))
    red = tf.abs(hue - 3.0) - 1.0
    green = 2.0 - tf.abs(hue - 2.0)
    blue = 2.0 - tf.abs(hue - 4.0)
    rgb = tf.clip_by_value(tf.stack([red, green, blue], axis=-1), 0.0, 1.0)
    return tf.clip_by_value(m[..., None] + c[..., None] * rgb, 0.0, 1.0)


_ADJUST = {"brightness": adjust_brightness, "contrast": adjust_contrast,
           "saturation": adjust_saturation, "hue": adjust_hue}


def color_jitter(images, apply, order_keys, factors: Dict[str, Optional[tf.Tensor]],
                 dense: bool = False) -> tf.Tensor:
    """Colour jitter with per-image factors and a per-image random order of the active ops.

    Two schedules of the same arithmetic, equal to float rounding:

    * ``dense=False`` (the host's): a loop over the images; each image applies only its own ops, in
      its order (``tf.switch_case`` per step). Under XLA on a CPU (the host's finish stage compiles
      it) this is about 3x faster than the dense schedule, and uncompiled it costs what one pass
      of each op over the jittered images costs.
    * ``dense=True`` (a train step's, ``augment_on="device"``): static, batch-wide shapes; at each
      of the (at most 4) steps every active op is computed on every image and each image keeps the
      one of its order: what an accelerator runs well.

    Args:
      images: float32 [B, H, W, C] in [0, 1], C in {1, 3} and static.
      apply: bool [B], jitter image b at all.
      order_keys: float32 [B, 4]; image b applies its active ops in increasing key order (keys
        drawn uniformly give a uniformly random order). Columns follow :data:`JITTER_OPS`.
      factors: name in :data:`JITTER_OPS` -> float32 [B] (brightness, contrast, saturation
        factors; the hue delta), or None for an inactive op. Saturation and hue are skipped for
        1-channel images.
      dense: the schedule (above).

    Returns:
      float32 [B, H, W, C] in [0, 1].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    channels = static_channels(images)
    ops = [(i, name) for i, name in enumerate(JITTER_OPS) if factors.get(name) is not None
           and (channels == 3 or name in ("brightness", "contrast"))]
    if not ops:
        return images
    # position[b, k]: the active op image b applies k-th (increasing order key).
    ids = tf.constant([i for i, _ in ops], tf.int32)
    position = tf.argsort(tf.gather(order_keys, ids, axis=1), axis=1)
    if dense:
        out = images
        for k in range(len(ops)):
            adjusted = [_ADJUST[name](out, factors[name]) for _, name in ops]
            which = position[:, k]
            step = adjusted[0]
            for j in range(1, len(ops)):
                step = tf.where(_per_image(tf.equal(which, j)), adjusted[j], step)
            out = step
        return tf.where(_per_image(apply), out, images)

    per_op = tf.stack([tf.cast(factors[name], tf.float32) for _, name in ops], axis=1)  # [B, K]

    def one(args):
        image, order, values, jittered = args

        def step(k, x):
            branches = [lambda j=j, name=name: _ADJUST[name](x, values[j][None]) for j, (_, name) in enumerate(ops)]
            return k + 1, tf.switch_case(order[k], branches)

        def jitter():
            return tf.while_loop(lambda k, x: k < len(ops), step, (tf.constant(0), image[None]))[1][0]

        return tf.cond(jittered, jitter, lambda: image)

    return tf.map_fn(one, (images, position, per_op, tf.convert_to_tensor(apply, tf.bool)),
                     fn_output_signature=tf.TensorSpec(images.shape[1:], tf.float32))


# ----------------------------------------------------------------------------- blur, solarize


def blur_radius(height: int, kernel_fraction: float = 0.1) -> int:
    """SimCLR kernel rule: size = int(fraction * height), radius = size // 2 (kernel 2r+1)."""
    return int(height * kernel_fraction) // 2


def solarize(images, apply, threshold: float = 0.5) -> tf.Tensor:
    """Where ``apply[b]``, pixels >= threshold of image b become ``1 - x``; images [B, H, W, C] in [0, 1]."""
    return tf.where(_per_image(apply) & (images >= threshold), 1.0 - images, images)
