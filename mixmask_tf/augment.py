"""Stateless, per-example image augmentations with SimCLR / torchvision semantics.

Every random op takes an explicit stateless seed (an int32 or int64 tensor of shape [2]) and
draws its randomness only with ``tf.random.stateless_*`` / ``tf.image.stateless_*``, so a
(image, seed) pair always gives the same output. Sub-seeds are derived with
``tf.random.experimental.stateless_split``. The ops work on a single image ``[H, W, C]`` (no
batch axis) inside ``tf.data.Dataset.map``; they use no Python loops over images.

Semantics implemented (checked in ``tests/test_augment.py``):

* ``random_resized_crop``: torchvision ``RandomResizedCrop.get_params`` exactly (area fraction
  ~ U(scale), log aspect ratio ~ U(log ratio), ``round`` to integer sides, first of 10 valid
  attempts, otherwise a centre crop clipped to the ratio range), sampled with our own stateless
  draws (the 10 attempts are drawn at once); then a bilinear resize (no antialiasing by default).
* ``color_jitter``: torchvision ``ColorJitter`` inside ``RandomApply(p)`` (the SimCLR v2 and
  MoCo v2 recipe): multiplicative brightness, contrast blended with the mean of the grayscale
  image, saturation blended with the grayscale image, hue rotation in HSV, the active ops in a
  uniformly random order, each result clipped to [0, 1]. One-channel images get only brightness
  and contrast.
* ``random_grayscale``: ITU-R 601 luminance (``tf.image.rgb_to_grayscale``) on all 3 channels.
* ``gaussian_blur``: SimCLR's kernel-size rule (``int(kernel_fraction * height)``, made odd),
  sigma ~ U(sigma), separable convolution with reflect padding.
* ``solarize``: pixels >= threshold become ``1 - x`` (torchvision ``RandomSolarize``).

Named presets (:data:`PRESET_NAMES`, :func:`preset_views`) follow the reference recipes:
``mocov1`` (MoCo v1), ``mocov2`` (MoCo v2), ``simclr`` (SimCLR v1, ImageNet), ``byol`` (BYOL,
asymmetric views), ``cifar`` (SimCLR's CIFAR-10 recipe) and ``fashion_mnist``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

__all__ = [
    "to_float",
    "normalize",
    "random_resized_crop",
    "random_flip",
    "color_jitter",
    "random_grayscale",
    "gaussian_blur",
    "solarize",
    "ViewConfig",
    "PRESETS",
    "PRESET_VIEWS",
    "PRESET_NAMES",
    "preset",
    "preset_views",
    "augment_view",
    "TwoViewAugment",
    "eval_preprocess",
]

SizeLike = Union[int, Sequence[int]]


# ----------------------------------------------------------------------------- helpers


def _split(seed, num: int) -> tf.Tensor:
    """Splits a stateless seed into ``num`` independent seeds.

    Args:
      seed: int32/int64 tensor of shape [2].
      num: number of sub-seeds.

    Returns:
      Tensor [num, 2] of the same integer dtype as ``seed``.
    """
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        seed = tf.cast(seed, tf.int64)
    return tf.random.experimental.stateless_split(seed, num=num)


def _uniform(seed, minval: float = 0.0, maxval: float = 1.0, shape=()) -> tf.Tensor:
    """float32 U(minval, maxval) of ``shape`` from a stateless seed."""
    return tf.random.stateless_uniform(shape, seed=seed, minval=minval, maxval=maxval,
                                       dtype=tf.float32)


def _as_size(size: SizeLike) -> Tuple[int, int]:
    """Normalises an int or (H, W) sequence to a tuple of two ints."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"size must be an int or (height, width), got {size!r}")
    return size


def _channels(image: tf.Tensor) -> int:
    """Static channel count of an image tensor (last axis)."""
    channels = image.shape[-1]
    if channels is None:
        raise ValueError("the channel axis of the image must have a static size")
    return int(channels)


def _grayscale(image: tf.Tensor) -> tf.Tensor:
    """Luminance [..., 1] of a 1- or 3-channel float image."""
    if _channels(image) == 1:
        return image
    return tf.image.rgb_to_grayscale(image)


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

    Args:
      image: float tensor [..., C].
      mean: sequence of C floats (or one float), in the image's units.
      std: sequence of C floats (or one float), all > 0.

    Returns:
      float32 tensor with the shape of ``image``.
    """
    image = tf.cast(image, tf.float32)
    mean = tf.constant(np.asarray(mean, np.float32).reshape(-1))
    std = tf.constant(np.asarray(std, np.float32).reshape(-1))
    return (image - mean) / std


# ----------------------------------------------------------------------------- crop


def _sample_crop_boxes(seed, batch, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
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
      height: int or int32 scalar tensor, image height (the same for the B images).
      width: int or int32 scalar tensor, image width.
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
    seeds = _split(seed, 3)

    target_area = h_f * w_f * _uniform(seeds[0], scale[0], scale[1], [batch, attempts])
    log_ratio = _uniform(seeds[1], math.log(ratio[0]), math.log(ratio[1]), [batch, attempts])
    aspect = tf.exp(log_ratio)
    cand_w = tf.cast(tf.round(tf.sqrt(target_area * aspect)), tf.int32)
    cand_h = tf.cast(tf.round(tf.sqrt(target_area / aspect)), tf.int32)
    valid = (cand_w > 0) & (cand_w <= width) & (cand_h > 0) & (cand_h <= height)
    any_valid = tf.reduce_any(valid, axis=1)
    first = tf.argmax(tf.cast(valid, tf.int32), axis=1, output_type=tf.int32)

    # Fallback: whole image, clipped to the ratio range, centred.
    in_ratio = w_f / h_f
    min_r, max_r = float(min(ratio)), float(max(ratio))
    fb_w = tf.where(in_ratio > max_r, tf.cast(tf.round(h_f * max_r), tf.int32), width)
    fb_h = tf.where(in_ratio < min_r, tf.cast(tf.round(w_f / min_r), tf.int32), height)

    crop_h = tf.where(any_valid, tf.gather(cand_h, first, batch_dims=1), fb_h)
    crop_w = tf.where(any_valid, tf.gather(cand_w, first, batch_dims=1), fb_w)
    u = _uniform(seeds[2], 0.0, 1.0, [batch, 2])
    rand_top = tf.cast(tf.floor(u[:, 0] * tf.cast(height - crop_h + 1, tf.float32)), tf.int32)
    rand_left = tf.cast(tf.floor(u[:, 1] * tf.cast(width - crop_w + 1, tf.float32)), tf.int32)
    top = tf.where(any_valid, rand_top, (height - crop_h) // 2)
    left = tf.where(any_valid, rand_left, (width - crop_w) // 2)
    top = tf.clip_by_value(top, 0, height - crop_h)
    left = tf.clip_by_value(left, 0, width - crop_w)
    return top, left, crop_h, crop_w


def _sample_crop_box(height, width, seed, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                     attempts: int = 10):
    """One box of :func:`_sample_crop_boxes` (batch 1): (top, left, crop_height, crop_width)
    int32 scalar tensors."""
    return tuple(v[0] for v in _sample_crop_boxes(seed, 1, height, width, scale, ratio, attempts))


def random_resized_crop(image, seed, size: SizeLike, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                        antialias: bool = False) -> tf.Tensor:
    """Random resized crop (torchvision ``RandomResizedCrop`` semantics), stateless.

    The box is sampled by :func:`_sample_crop_box` (our own stateless draws reproducing
    torchvision's ``get_params``: 10 attempts, then a ratio-clipped centre crop), cut out with
    ``tf.slice`` and resized bilinearly (half-pixel centres) to ``size``.

    Args:
      image: [H, W, C] image (uint8 or float in [0, 1]); C must be static.
      seed: int32/int64 tensor [2].
      size: output (height, width), or an int for a square output.
      scale: (min, max) fraction of the image area kept.
      ratio: (min, max) aspect ratio (width / height) of the crop.
      antialias: antialias when downsampling (torchvision tensors default to True; off by
        default here because crops are usually upsampled and it is slower).

    Returns:
      float32 tensor [size[0], size[1], C] in [0, 1].
    """
    out_h, out_w = _as_size(size)
    image = to_float(image)
    channels = _channels(image)
    shape = tf.shape(image)
    top, left, crop_h, crop_w = _sample_crop_box(shape[0], shape[1], seed, scale, ratio)
    crop = tf.slice(image, tf.stack([top, left, 0]), tf.stack([crop_h, crop_w, channels]))
    out = tf.image.resize(crop, (out_h, out_w), method="bilinear", antialias=antialias)
    out = tf.ensure_shape(tf.cast(out, tf.float32), [out_h, out_w, channels])
    return out


def random_flip(image, seed) -> tf.Tensor:
    """Horizontal flip with probability 0.5.

    Args:
      image: [H, W, C] tensor.
      seed: int32/int64 tensor [2].

    Returns:
      Tensor like ``image``, flipped left-right or unchanged.
    """
    return tf.image.stateless_random_flip_left_right(image, seed=seed)


# ----------------------------------------------------------------------------- colour


def _adjust_brightness(image, factor):
    """torchvision adjust_brightness: ``clip(image * factor)``."""
    return tf.clip_by_value(image * factor, 0.0, 1.0)


def _adjust_contrast(image, factor):
    """torchvision adjust_contrast: blend with the mean of the grayscale image."""
    mean = tf.reduce_mean(_grayscale(image))
    return tf.clip_by_value((image - mean) * factor + mean, 0.0, 1.0)


def _adjust_saturation(image, factor):
    """torchvision adjust_saturation: blend with the grayscale image (3 channels)."""
    gray = _grayscale(image)
    return tf.clip_by_value((image - gray) * factor + gray, 0.0, 1.0)


def _adjust_hue(image, delta):
    """torchvision adjust_hue: rotate the hue by ``delta`` (fraction of the circle)."""
    return tf.clip_by_value(tf.image.adjust_hue(image, delta), 0.0, 1.0)


def _random_order(seed, n: int) -> tf.Tensor:
    """A uniformly random permutation of range(n), int32 [n] (argsort of uniforms)."""
    return tf.cast(tf.argsort(_uniform(seed, 0.0, 1.0, [n])), tf.int32)


def color_jitter(image, seed, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, hue: float = 0.1, p: float = 0.8) -> tf.Tensor:
    """Random colour jitter (torchvision ``RandomApply([ColorJitter(...)], p)``), stateless.

    With probability ``p`` the active ops are applied in a uniformly random order:
    brightness ``x * f`` with f ~ U(max(0, 1 - brightness), 1 + brightness); contrast
    ``(x - m) * f + m`` with m the mean of the grayscale image and f drawn likewise; saturation
    ``(x - g) * f + g`` with g the grayscale image and f drawn likewise; hue rotation by
    d ~ U(-hue, hue) in HSV. Each op clips to [0, 1]. An op whose strength is 0 is skipped; for
    1-channel images saturation and hue are skipped.

    Args:
      image: float [H, W, C] in [0, 1], C in {1, 3} and static.
      seed: int32/int64 tensor [2].
      brightness: brightness strength b >= 0.
      contrast: contrast strength >= 0.
      saturation: saturation strength >= 0.
      hue: hue strength in [0, 0.5].
      p: probability of applying the jitter at all.

    Returns:
      float32 tensor like ``image``, in [0, 1].
    """
    image = tf.cast(image, tf.float32)
    channels = _channels(image)
    if not 0.0 <= hue <= 0.5:
        raise ValueError(f"hue must lie in [0, 0.5], got {hue}")
    if p <= 0.0:
        return image
    seeds = _split(seed, 6)

    def factor(s, strength):
        return _uniform(s, max(0.0, 1.0 - strength), 1.0 + strength)

    ops = []
    if brightness > 0:
        f_b = factor(seeds[2], brightness)
        ops.append(lambda x: _adjust_brightness(x, f_b))
    if contrast > 0:
        f_c = factor(seeds[3], contrast)
        ops.append(lambda x: _adjust_contrast(x, f_c))
    if channels == 3:
        if saturation > 0:
            f_s = factor(seeds[4], saturation)
            ops.append(lambda x: _adjust_saturation(x, f_s))
        if hue > 0:
            d_h = _uniform(seeds[5], -hue, hue)
            ops.append(lambda x: _adjust_hue(x, d_h))
    if not ops:
        return image

    def jitter():
        x = image
        if len(ops) == 1:
            return ops[0](x)
        order = _random_order(seeds[1], len(ops))
        for k in range(len(ops)):
            x = tf.switch_case(order[k], [(lambda op=op, x=x: op(x)) for op in ops])
            x = tf.ensure_shape(x, image.shape)
        return x

    if p >= 1.0:
        return jitter()
    return tf.cond(_uniform(seeds[0]) < p, jitter, lambda: image)


def random_grayscale(image, seed, p: float = 0.2) -> tf.Tensor:
    """Converts a 3-channel image to grayscale (on 3 channels) with probability ``p``.

    Args:
      image: float [H, W, C] tensor, C static; identity when C == 1.
      seed: int32/int64 tensor [2].
      p: probability of conversion.

    Returns:
      float32 tensor like ``image``.
    """
    image = tf.cast(image, tf.float32)
    channels = _channels(image)
    if channels == 1 or p <= 0.0:
        return image
    gray = lambda: tf.tile(_grayscale(image), [1, 1, channels])  # noqa: E731
    if p >= 1.0:
        return gray()
    return tf.cond(_uniform(seed) < p, gray, lambda: image)


# ----------------------------------------------------------------------------- blur, solarize


def _blur_radius(height: int, kernel_fraction: float) -> int:
    """SimCLR kernel rule: size = int(fraction * height), radius = size // 2 (kernel 2r+1)."""
    return int(height * kernel_fraction) // 2


def _gaussian_kernel(sigma, radius: int) -> tf.Tensor:
    """Normalised 1-D Gaussian taps: sigma float [...] -> float32 [..., 2 * radius + 1]."""
    sigma = tf.cast(sigma, tf.float32)[..., None]
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-tf.square(taps) / (2.0 * tf.square(sigma)))
    return kernel / tf.reduce_sum(kernel, axis=-1, keepdims=True)


def _gaussian_blur_fixed(image, sigma, radius: int) -> tf.Tensor:
    """Separable Gaussian blur with a given sigma and kernel radius, reflect padding.

    Args:
      image: float [H, W, C] tensor, C static, H and W > radius.
      sigma: float scalar (tensor) > 0.
      radius: int, kernel size is 2 * radius + 1.

    Returns:
      float32 tensor like ``image``.
    """
    image = tf.cast(image, tf.float32)
    if radius <= 0:
        return image
    channels = _channels(image)
    kernel = _gaussian_kernel(sigma, radius)
    k_v = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
    k_h = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, channels, 1])
    padded = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]],
                    mode="REFLECT")
    out = tf.nn.depthwise_conv2d(padded, k_v, strides=[1, 1, 1, 1], padding="VALID")
    out = tf.nn.depthwise_conv2d(out, k_h, strides=[1, 1, 1, 1], padding="VALID")
    return tf.ensure_shape(out[0], image.shape)


def gaussian_blur(image, seed, sigma=(0.1, 2.0), kernel_fraction: float = 0.1,
                  p: float = 0.5) -> tf.Tensor:
    """Random Gaussian blur (SimCLR semantics), applied with probability ``p``.

    Kernel size 2 * (int(kernel_fraction * H) // 2) + 1 (about 10 % of the side, odd);
    sigma ~ U(sigma[0], sigma[1]); separable convolution with reflect padding. A kernel of size
    1 (small images) is the identity.

    Args:
      image: float [H, W, C] tensor with static H and C.
      seed: int32/int64 tensor [2].
      sigma: (min, max) standard deviation in pixels.
      kernel_fraction: kernel size as a fraction of the image height.
      p: probability of blurring.

    Returns:
      float32 tensor like ``image``.
    """
    image = tf.cast(image, tf.float32)
    if p <= 0.0:
        return image
    height = image.shape[0]
    if height is None:
        raise ValueError("gaussian_blur needs a static image height")
    radius = _blur_radius(int(height), kernel_fraction)
    if radius <= 0:
        return image
    seeds = _split(seed, 2)
    sig = _uniform(seeds[1], sigma[0], sigma[1])
    blur = lambda: _gaussian_blur_fixed(image, sig, radius)  # noqa: E731
    if p >= 1.0:
        return blur()
    return tf.cond(_uniform(seeds[0]) < p, blur, lambda: image)


def solarize(image, seed, threshold: float = 0.5, p: float = 0.0) -> tf.Tensor:
    """Random solarisation: with probability ``p``, pixels >= threshold become ``1 - x``.

    Args:
      image: float [H, W, C] tensor in [0, 1].
      seed: int32/int64 tensor [2].
      threshold: inversion threshold in [0, 1].
      p: probability of solarising.

    Returns:
      float32 tensor like ``image``.
    """
    image = tf.cast(image, tf.float32)
    if p <= 0.0:
        return image
    sol = lambda: tf.where(image >= threshold, 1.0 - image, image)  # noqa: E731
    if p >= 1.0:
        return sol()
    return tf.cond(_uniform(seed) < p, sol, lambda: image)


# ----------------------------------------------------------------------------- views


@dataclasses.dataclass(frozen=True)
class ViewConfig:
    """Augmentation settings of one view.

    Attributes:
      size: output (height, width).
      crop_scale: random-resized-crop area range.
      crop_ratio: random-resized-crop aspect-ratio range (width / height).
      flip: horizontal flip with probability 0.5.
      brightness: colour-jitter brightness strength.
      contrast: colour-jitter contrast strength.
      saturation: colour-jitter saturation strength (ignored for 1 channel).
      hue: colour-jitter hue strength (ignored for 1 channel).
      jitter_p: probability of applying colour jitter.
      grayscale_p: probability of grayscale conversion (ignored for 1 channel).
      blur_p: probability of Gaussian blur (sigma U(0.1, 2), kernel 10 % of the side).
      solarize_p: probability of solarisation (threshold 0.5).
      grayscale_before_jitter: apply the random grayscale before the colour jitter (MoCo v1's
        order) instead of after it (SimCLR / MoCo v2 / BYOL order).
    """

    size: tuple
    crop_scale: tuple = (0.08, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    flip: bool = True
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    solarize_p: float = 0.0
    grayscale_before_jitter: bool = False

    def __post_init__(self):
        object.__setattr__(self, "size", _as_size(self.size))
        object.__setattr__(self, "crop_scale", tuple(float(v) for v in self.crop_scale))
        object.__setattr__(self, "crop_ratio", tuple(float(v) for v in self.crop_ratio))


def _colour(channels: int, value: float) -> float:
    """``value`` for 3-channel images; 0.0 (op disabled) for 1-channel images."""
    return float(value) if int(channels) == 3 else 0.0


def _fashion_mnist_preset(size: SizeLike, channels: int) -> ViewConfig:
    """Fashion-MNIST (this project's recipe for 28x28 grayscale images).

    RandomResizedCrop scale (0.2, 1), flip, brightness / contrast jitter 0.4 with p 0.8; no
    saturation, hue, grayscale, blur or solarisation (whatever ``channels`` is).
    """
    del channels  # grayscale data: no saturation / hue / grayscale.
    return ViewConfig(size=size, crop_scale=(0.2, 1.0), flip=True, brightness=0.4,
                      contrast=0.4, saturation=0.0, hue=0.0, jitter_p=0.8, grayscale_p=0.0,
                      blur_p=0.0)


def _cifar_preset(size: SizeLike, channels: int) -> ViewConfig:
    """SimCLR's CIFAR-10 recipe (Chen et al. 2020, appendix B.9: colour strength s = 0.5, no blur).

    RandomResizedCrop scale (0.08, 1), flip, RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1),
    p=0.8), RandomGrayscale(p=0.2), no Gaussian blur.
    """
    return ViewConfig(size=size, crop_scale=(0.08, 1.0), flip=True, brightness=0.4,
                      contrast=0.4, saturation=_colour(channels, 0.4),
                      hue=_colour(channels, 0.1), jitter_p=0.8,
                      grayscale_p=_colour(channels, 0.2), blur_p=0.0)


def _mocov1_preset(size: SizeLike, channels: int) -> ViewConfig:
    """MoCo v1 (He et al., CVPR 2020; facebookresearch/moco ``main_moco.py`` without --aug-plus).

    RandomResizedCrop(224, scale=(0.2, 1.)), RandomGrayscale(p=0.2),
    ColorJitter(0.4, 0.4, 0.4, 0.4) applied always (p = 1), RandomHorizontalFlip(); no blur.
    The grayscale comes before the jitter, as in the reference.
    """
    return ViewConfig(size=size, crop_scale=(0.2, 1.0), flip=True, brightness=0.4,
                      contrast=0.4, saturation=_colour(channels, 0.4),
                      hue=_colour(channels, 0.4), jitter_p=1.0,
                      grayscale_p=_colour(channels, 0.2), blur_p=0.0,
                      grayscale_before_jitter=True)


def _mocov2_preset(size: SizeLike, channels: int) -> ViewConfig:
    """MoCo v2 (Chen et al. 2020, arXiv:2003.04297; ``main_moco.py --aug-plus``).

    RandomResizedCrop(224, scale=(0.2, 1.)), RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)],
    p=0.8), RandomGrayscale(p=0.2), RandomApply([GaussianBlur([.1, 2.])], p=0.5),
    RandomHorizontalFlip().
    """
    return ViewConfig(size=size, crop_scale=(0.2, 1.0), flip=True, brightness=0.4,
                      contrast=0.4, saturation=_colour(channels, 0.4),
                      hue=_colour(channels, 0.1), jitter_p=0.8,
                      grayscale_p=_colour(channels, 0.2), blur_p=0.5)


def _simclr_preset(size: SizeLike, channels: int) -> ViewConfig:
    """SimCLR v1 on ImageNet (Chen et al., ICML 2020, appendix A), colour strength s = 1.

    RandomResizedCrop scale (0.08, 1), ratio (3/4, 4/3), flip; RandomApply(ColorJitter(0.8s,
    0.8s, 0.8s, 0.2s), p=0.8); RandomGrayscale(p=0.2); Gaussian blur with p 0.5, kernel 10 % of
    the side, sigma ~ U(0.1, 2.0). (The jitter has torchvision semantics, as in the PyTorch
    ports; the TF reference uses an additive brightness.)
    """
    s = 1.0
    return ViewConfig(size=size, crop_scale=(0.08, 1.0), flip=True, brightness=0.8 * s,
                      contrast=0.8 * s, saturation=_colour(channels, 0.8 * s),
                      hue=_colour(channels, 0.2 * s), jitter_p=0.8,
                      grayscale_p=_colour(channels, 0.2), blur_p=0.5)


def _byol_views(size: SizeLike, channels: int) -> Tuple[ViewConfig, ViewConfig]:
    """BYOL (Grill et al., NeurIPS 2020, appendix B, table 6): two asymmetric views.

    Both views: RandomResizedCrop scale (0.08, 1), ratio (3/4, 4/3), flip;
    RandomApply(ColorJitter(0.4, 0.4, 0.2, 0.1), p=0.8); RandomGrayscale(p=0.2); Gaussian blur
    (kernel 23 for 224, i.e. ~10 % of the side, sigma ~ U(0.1, 2.0)); solarisation threshold 0.5.
    View 1: blur p 1.0, solarize p 0.0. View 2: blur p 0.1, solarize p 0.2.

    Returns:
      (view1, view2) ViewConfigs.
    """
    common = dict(size=size, crop_scale=(0.08, 1.0), flip=True, brightness=0.4, contrast=0.4,
                  saturation=_colour(channels, 0.2), hue=_colour(channels, 0.1), jitter_p=0.8,
                  grayscale_p=_colour(channels, 0.2))
    return (ViewConfig(blur_p=1.0, solarize_p=0.0, **common),
            ViewConfig(blur_p=0.1, solarize_p=0.2, **common))


def _byol_preset(size: SizeLike, channels: int) -> ViewConfig:
    """BYOL's first view (blur p 1.0, no solarisation); see :func:`_byol_views`."""
    return _byol_views(size, channels)[0]


def _symmetric(single: Callable[[SizeLike, int], ViewConfig]
               ) -> Callable[[SizeLike, int], Tuple[ViewConfig, ViewConfig]]:
    """Turns a one-view preset into a (view, view) preset with the same docstring."""

    def views(size: SizeLike, channels: int) -> Tuple[ViewConfig, ViewConfig]:
        config = single(size, channels)
        return config, config

    views.__name__ = single.__name__.replace("_preset", "_views")
    views.__doc__ = single.__doc__
    return views


# One-view presets (the first view of each recipe); kept for :func:`preset` and callers of it.
PRESETS: Dict[str, Callable[[SizeLike, int], ViewConfig]] = {
    "fashion_mnist": _fashion_mnist_preset,
    "cifar": _cifar_preset,
    "mocov1": _mocov1_preset,
    "mocov2": _mocov2_preset,
    "simclr": _simclr_preset,
    "byol": _byol_preset,
}

# Two-view presets: name -> fn(size, channels) -> (view1, view2).
PRESET_VIEWS: Dict[str, Callable[[SizeLike, int], Tuple[ViewConfig, ViewConfig]]] = {
    "fashion_mnist": _symmetric(_fashion_mnist_preset),
    "cifar": _symmetric(_cifar_preset),
    "mocov1": _symmetric(_mocov1_preset),
    "mocov2": _symmetric(_mocov2_preset),
    "simclr": _symmetric(_simclr_preset),
    "byol": _byol_views,
}

# The preset names, e.g. for a command-line flag's choices.
PRESET_NAMES: Tuple[str, ...] = tuple(PRESET_VIEWS)


def preset_views(name: str, size: SizeLike, channels: int) -> Tuple[ViewConfig, ViewConfig]:
    """Returns both views of a named preset.

    Symmetric presets return the same ViewConfig twice; ``byol`` returns its two different
    views.

    Args:
      name: one of :data:`PRESET_NAMES`.
      size: output size, int or (height, width).
      channels: image channels (1 or 3); colour-only ops (saturation, hue, grayscale) are
        disabled for 1 channel.

    Returns:
      (view1, view2) ViewConfigs.

    Raises:
      ValueError: unknown preset name (the message lists the known names), or channels not
        in {1, 3}.
    """
    if name not in PRESET_VIEWS:
        raise ValueError(f"unknown augmentation preset {name!r}; known presets: "
                         f"{', '.join(sorted(PRESET_NAMES))}")
    if int(channels) not in (1, 3):
        raise ValueError(f"augmentation presets need 1 or 3 channels, got {channels}")
    return PRESET_VIEWS[name](size, int(channels))


def preset(name: str, size: SizeLike, channels: int) -> ViewConfig:
    """Returns the first view of a named preset (see :func:`preset_views` for both views).

    Args:
      name: one of :data:`PRESET_NAMES`.
      size: output size, int or (height, width).
      channels: image channels (1 or 3); colour-only ops are disabled for 1 channel.

    Returns:
      ViewConfig (for the asymmetric ``byol``, its first view).

    Raises:
      ValueError: unknown preset name (the message lists the known names).
    """
    return preset_views(name, size, channels)[0]


def augment_view(image, seed, config: ViewConfig) -> tf.Tensor:
    """Applies one view's augmentation pipeline (not normalised).

    Order (MoCo v2 / SimCLR / BYOL): random resized crop, flip, colour jitter, grayscale, blur,
    solarize; with ``config.grayscale_before_jitter`` (MoCo v1) the grayscale comes before the
    jitter. (Flip commutes with the later ops, so its position does not matter.) Each op uses
    its own sub-seed, so toggling one op leaves the others' draws unchanged.

    Args:
      image: [H, W, C] uint8 (or float in [0, 1]) image, C static.
      seed: int32/int64 tensor [2].
      config: the view's ViewConfig.

    Returns:
      float32 [config.size[0], config.size[1], C] in [0, 1].
    """
    seeds = _split(seed, 6)
    x = random_resized_crop(image, seeds[0], config.size, config.crop_scale, config.crop_ratio)
    if config.flip:
        x = random_flip(x, seeds[1])
    if config.grayscale_before_jitter:
        x = random_grayscale(x, seeds[3], p=config.grayscale_p)
    x = color_jitter(x, seeds[2], config.brightness, config.contrast, config.saturation,
                     config.hue, p=config.jitter_p)
    if not config.grayscale_before_jitter:
        x = random_grayscale(x, seeds[3], p=config.grayscale_p)
    x = gaussian_blur(x, seeds[4], p=config.blur_p)
    x = solarize(x, seeds[5], p=config.solarize_p)
    return x


class TwoViewAugment:
    """Makes two independently augmented, normalised views of one image.

    Use as ``view_fn`` of :func:`mixmask_tf.data.make_pretrain_dataset`.

    Args:
      view1: ViewConfig of view 1 (the query view).
      view2: ViewConfig of view 2 (the key view); must have the same output size.
      mean: per-channel mean (sequence of C floats, [0, 1] pixel units).
      std: per-channel std (sequence of C floats).
    """

    def __init__(self, view1: ViewConfig, view2: ViewConfig, mean, std):
        if tuple(view1.size) != tuple(view2.size):
            raise ValueError(f"both views must have the same size, got {view1.size} and "
                             f"{view2.size}")
        self.view1 = view1
        self.view2 = view2
        self.mean = tuple(float(v) for v in np.asarray(mean, np.float64).reshape(-1))
        self.std = tuple(float(v) for v in np.asarray(std, np.float64).reshape(-1))
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")

    @classmethod
    def from_preset(cls, name: str, size: SizeLike, channels: int, mean, std
                    ) -> "TwoViewAugment":
        """Both views of a named preset (see :func:`preset_views`; ``byol`` is asymmetric)."""
        view1, view2 = preset_views(name, size, channels)
        return cls(view1, view2, mean, std)

    @property
    def output_size(self) -> Tuple[int, int]:
        """(height, width) of the views."""
        return tuple(self.view1.size)

    def __call__(self, image_uint8, seed) -> tf.Tensor:
        """Augments one image twice.

        Args:
          image_uint8: uint8 [H, W, C] image, C static and equal to len(mean) (or mean of
            length 1).
          seed: int32/int64 tensor [2]; the views use two independent sub-seeds.

        Returns:
          float32 [2, H', W', C]: view 1 then view 2, normalised.
        """
        channels = _channels(tf.convert_to_tensor(image_uint8))
        if len(self.mean) not in (1, channels) or len(self.std) not in (1, channels):
            raise ValueError(f"mean/std have {len(self.mean)}/{len(self.std)} entries but the "
                             f"image has {channels} channels")
        seeds = _split(seed, 2)
        v1 = augment_view(image_uint8, seeds[0], self.view1)
        v2 = augment_view(image_uint8, seeds[1], self.view2)
        return normalize(tf.stack([v1, v2], axis=0), self.mean, self.std)

    def batch(self, images_uint8, seed) -> tf.Tensor:
        """Augments a batch at once (``batch_augment.two_views``: same recipe, vectorised).

        ``make_pretrain_dataset`` uses this when the images have a static shape: one seed per
        batch, so the draws differ from calling the object per image, but follow the same
        distributions.

        Args:
          images_uint8: uint8 [B, H, W, C], static H, W, C.
          seed: int32/int64 tensor [2].

        Returns:
          float32 [B, 2, H', W', C]: view 1 then view 2 of every image, normalised.
        """
        from mixmask_tf import batch_augment

        return batch_augment.two_views(self.view1, self.view2, self.mean, self.std, images_uint8, seed)


def eval_preprocess(image_uint8, mean, std, size: SizeLike = None) -> tf.Tensor:
    """The deterministic test transform: to float, optional bilinear resize, normalise.

    Args:
      image_uint8: uint8 [H, W, C] or [B, H, W, C].
      mean: per-channel mean ([0, 1] units).
      std: per-channel std.
      size: optional output (height, width) or int; None keeps the input size.

    Returns:
      float32 tensor [..., H', W', C], normalised.
    """
    x = to_float(image_uint8)
    if size is not None:
        x = tf.image.resize(x, _as_size(size), method="bilinear")
    return normalize(x, mean, std)
