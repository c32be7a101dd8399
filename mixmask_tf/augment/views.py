"""The two-view entry point: draws a view's random parameters, applies the ops, normalises.

A view of a batch is two steps, so the random draws and the image arithmetic can be tested
apart:

1. :func:`sample_view_params` draws every random parameter of a batch at once from one
   stateless seed (crop boxes, flips, colour-jitter factors and order, grayscale, blur sigma,
   solarisation), each op from its own sub-seed, so turning one op off leaves the others' draws
   unchanged;
2. :func:`apply_view_params` applies the batched ops of :mod:`mixmask_tf.augment.ops` with them,
   in the reference order: crop + resize, flip, [grayscale,] colour jitter, [grayscale,] blur,
   solarize (the grayscale comes first with ``ViewConfig.grayscale_before_jitter``, MoCo v1).

:class:`TwoViewAugment` is the ``view_fn`` of ``mixmask_tf.data.make_pretrain_dataset``: one
call per batch (``.batch``); a single image is a batch of one (``__call__``).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from mixmask_tf import seeds
from mixmask_tf.augment import ops
from mixmask_tf.augment.presets import SizeLike, ViewConfig, as_size, preset_views

__all__ = ["sample_view_params", "apply_view_params", "augment_encoded", "augment_batch", "augment_image",
           "two_views", "view_configs", "TwoViewAugment", "eval_preprocess"]


def sample_view_params(seed, batch, height, width, channels: int,
                       config: ViewConfig) -> Dict[str, tf.Tensor]:
    """Draws every random parameter of one view for a batch.

    Args:
      seed: int32/int64 tensor [2].
      batch: B (int or int32 scalar tensor).
      height, width: input image size (ints, or int32 scalar tensors).
      channels: static channel count (1 or 3).
      config: the view's ViewConfig.

    Returns:
      dict of [B] tensors: ``top``, ``left``, ``crop_h``, ``crop_w`` (int32); ``flip``,
      ``jitter``, ``gray``, ``blur``, ``solarize`` (bool: apply the op); ``brightness``,
      ``contrast``, ``saturation`` (float32 factors), ``hue`` (float32 delta), ``sigma``
      (float32 blur sigma); and ``order_keys`` float32 [B, 4]: the jitter applies its active ops
      (of brightness, contrast, saturation, hue) in increasing key order, a uniformly random
      order.

    Raises:
      ValueError: a hue strength outside [0, 0.5].
    """
    sub = seeds.split(seed, 6)
    top, left, crop_h, crop_w = ops.sample_crop_boxes(sub[0], batch, height, width, config.crop_scale,
                                                      config.crop_ratio)
    s_jit = seeds.split(sub[2], 6)

    def factor(s, strength):
        return seeds.uniform(s, [batch], max(0.0, 1.0 - strength), 1.0 + strength)

    s_blur = seeds.split(sub[4], 2)
    hue = config.hue
    if not 0.0 <= hue <= 0.5:
        raise ValueError(f"hue must lie in [0, 0.5], got {hue}")
    return {
        "top": top, "left": left, "crop_h": crop_h, "crop_w": crop_w,
        "flip": (seeds.uniform(sub[1], [batch]) < 0.5) & config.flip,
        "jitter": seeds.uniform(s_jit[0], [batch]) < config.jitter_p,
        "order_keys": seeds.uniform(s_jit[1], [batch, 4]),
        "brightness": factor(s_jit[2], config.brightness),
        "contrast": factor(s_jit[3], config.contrast),
        "saturation": factor(s_jit[4], config.saturation),
        "hue": seeds.uniform(s_jit[5], [batch], -hue, hue),
        "gray": (seeds.uniform(sub[3], [batch]) < config.grayscale_p) & (channels == 3),
        "blur": seeds.uniform(s_blur[0], [batch]) < config.blur_p,
        "sigma": seeds.uniform(s_blur[1], [batch], 0.1, 2.0),
        "solarize": seeds.uniform(sub[5], [batch]) < config.solarize_p,
    }


def apply_view_params(images, params: Dict[str, tf.Tensor], config: ViewConfig,
                      crop: bool = True) -> tf.Tensor:
    """Applies one view's augmentation with the given parameters (see sample_view_params).

    Args:
      images: uint8 (or float in [0, 1]) [B, H, W, C], C in {1, 3} and static.
      params: dict from :func:`sample_view_params` for this batch.
      config: the view's ViewConfig.
      crop: apply the random resized crop; False when the images are the crops already
        (decoded from files by :func:`augment_encoded`, then [B, *config.size, C]).

    Returns:
      float32 [B, config.size[0], config.size[1], C] in [0, 1] (not normalised).
    """
    x = ops.to_float(images)
    channels = int(x.shape[-1])
    if crop:
        x = ops.resized_crop(x, params["top"], params["left"], params["crop_h"], params["crop_w"], config.size)
    x = ops.flip(x, params["flip"])

    def grayscale(v):
        if channels == 1 or config.grayscale_p <= 0:
            return v
        return ops.to_grayscale(v, params["gray"])

    if config.grayscale_before_jitter:
        x = grayscale(x)
    if config.jitter_p > 0:
        strengths = {"brightness": config.brightness, "contrast": config.contrast,
                     "saturation": config.saturation, "hue": config.hue}
        factors = {name: params[name] if strengths[name] > 0 else None for name in ops.JITTER_OPS}
        x = ops.color_jitter(x, params["jitter"], params["order_keys"], factors)
    if not config.grayscale_before_jitter:
        x = grayscale(x)
    radius = ops.blur_radius(config.size[0], 0.1)
    if config.blur_p > 0 and radius > 0:
        chosen = tf.where(params["blur"])[:, 0]  # only the images that are blurred are computed
        blurred = ops.gaussian_blur(tf.gather(x, chosen), tf.gather(params["sigma"], chosen), radius)
        x = tf.tensor_scatter_nd_update(x, chosen[:, None], blurred)
    if config.solarize_p > 0:
        x = ops.solarize(x, params["solarize"], 0.5)
    return x


def _augment(images, seed, config: ViewConfig, rows=None) -> tf.Tensor:
    """sample_view_params + apply_view_params for images [B, H, W, C] (H, W may be dynamic).

    ``rows=(offset, total)``: the images are rows [offset, offset + B) of a batch of ``total``;
    the parameters are drawn for all ``total`` images and these rows' are applied, so the
    result equals those rows of the whole batch's augmentation.
    """
    shape = tf.shape(images)
    height = images.shape[1] if images.shape[1] is not None else shape[1]
    width = images.shape[2] if images.shape[2] is not None else shape[2]
    params = _row_params(seed, shape[0], height, width, ops.static_channels(images), config, rows)
    return apply_view_params(images, params, config)


def _row_params(seed, batch, heights, widths, channels, config, rows):
    """sample_view_params for a batch, or (``rows=(offset, total)``) these ``batch`` rows of the
    draws for ``total`` images; per-image [batch] sizes are padded to ``total`` (the other rows'
    sizes do not change these rows' draws)."""
    if rows is None:
        return sample_view_params(seed, batch, heights, widths, channels, config)
    offset, total = rows
    pad = [[offset, total - offset - batch]]
    if tf.convert_to_tensor(heights).shape.rank == 1:
        heights = tf.pad(heights, pad, constant_values=1)
        widths = tf.pad(widths, pad, constant_values=1)
    params = sample_view_params(seed, total, heights, widths, channels, config)
    return {k: v[offset:offset + batch] for k, v in params.items()}


def augment_encoded(contents, sizes, seed, config: ViewConfig, channels: int, rows=None) -> tf.Tensor:
    """One augmented view of a batch of encoded images, the crop drawn on each full image.

    The crop box of image b is drawn with torchvision's sampling on its own (height, width) (the
    same draws :func:`augment_batch` makes), only that window is decoded
    (:func:`ops.decode_resized_crop`: ``decode_and_crop_jpeg`` for JPEG) and resized to
    ``config.size``; the other ops follow as in :func:`augment_batch`. Images of any size mix in
    one batch.

    Args:
      contents: string [B], the encoded files (JPEG, PNG, BMP, GIF).
      sizes: int32 [B, 2], each image's (height, width) (e.g. from the file header).
      seed: int32/int64 tensor [2].
      config: the view's ViewConfig.
      channels: 1 or 3, the channels to decode to.
      rows: None, or (offset, total): these are rows [offset, offset + B) of a batch of
        ``total`` and get what those rows get in the whole batch.

    Returns:
      float32 [B, config.size[0], config.size[1], channels] in [0, 1] (not normalised).
    """
    contents = tf.convert_to_tensor(contents)
    sizes = tf.cast(sizes, tf.int32)
    params = _row_params(seed, tf.shape(contents)[0], sizes[:, 0], sizes[:, 1], channels, config, rows)
    crops = ops.decode_resized_crop(contents, params["top"], params["left"], params["crop_h"],
                                    params["crop_w"], config.size, channels)
    return apply_view_params(crops, params, config, crop=False)


def augment_batch(images, seed, config: ViewConfig, rows=None) -> tf.Tensor:
    """One augmented view of every image of a batch (or of a slice of a larger batch).

    Args:
      images: uint8 [B, H, W, C] with static H, W, C (B may be dynamic).
      seed: int32/int64 tensor [2].
      config: the view's ViewConfig.
      rows: None, or (offset, total): the images are rows [offset, offset + B) of a batch of
        ``total`` images, and get exactly what those rows get when the whole batch is
        augmented with ``seed`` (each input pipeline of a distributed run augments its share).

    Returns:
      float32 [B, config.size[0], config.size[1], C] in [0, 1] (not normalised).

    Raises:
      ValueError: images without a static height, width or channel count.
    """
    images = tf.convert_to_tensor(images)
    _, height, width, channels = images.shape
    if None in (height, width, channels):
        raise ValueError(f"augment_batch needs static image height, width and channels, got {images.shape}")
    return _augment(images, seed, config, rows)


def augment_image(image, seed, config: ViewConfig) -> tf.Tensor:
    """One augmented view of one image: the batched ops on a batch of one.

    Args:
      image: uint8 (or float in [0, 1]) [H, W, C], C static; H and W may be dynamic.
      seed: int32/int64 tensor [2].
      config: the view's ViewConfig.

    Returns:
      float32 [config.size[0], config.size[1], C] in [0, 1] (not normalised).
    """
    return _augment(tf.convert_to_tensor(image)[None], seed, config)[0]


def view_configs(view1: ViewConfig, view2: ViewConfig, extra_views: int = 0):
    """The ViewConfig of every view: view 1, view 2, then `extra_views` more.

    Extra view k (k = 0, 1, ...) takes view 1's config for even k and view 2's for odd k, so
    views alternate between the two sides of an asymmetric preset (`byol`) [ours].
    """
    return (view1, view2) + tuple(view1 if k % 2 == 0 else view2 for k in range(int(extra_views)))


def two_views(view1: ViewConfig, view2: ViewConfig, mean, std, images, seed, rows=None,
              extra_views: int = 0) -> tf.Tensor:
    """Independently augmented, normalised views of every image of a batch.

    Args:
      view1, view2: ViewConfigs of the query and key views (same output size).
      mean, std: per-channel normalisation ([0, 1] pixel units).
      images: uint8 [B, H, W, C], static H, W, C.
      seed: int32/int64 tensor [2]; view v uses sub-seed v of ``seeds.split(seed, V)`` (the
        first two are those of a two-view batch: extra views leave views 1 and 2 unchanged).
      rows: None or (offset, total), as in :func:`augment_batch`.
      extra_views: more views after the two (:func:`view_configs`), e.g. MSCN's two extra
        full-resolution views.

    Returns:
      float32 [B, V, H', W', C], V = 2 + extra_views: view 1, view 2, the extra views; normalised.
    """
    configs = view_configs(view1, view2, extra_views)
    sub = seeds.split(seed, len(configs))
    views = [augment_batch(images, sub[v], config, rows) for v, config in enumerate(configs)]
    return ops.normalize(tf.stack(views, axis=1), mean, std)


class TwoViewAugment:
    """Makes two (or more) independently augmented, normalised views of each image.

    Use as ``view_fn`` of :func:`mixmask_tf.data.make_pretrain_dataset` (which calls
    :meth:`batch`, one call per batch).

    Args:
      view1: ViewConfig of view 1 (the query view).
      view2: ViewConfig of view 2 (the key view); must have the same output size.
      mean: per-channel mean (sequence of C floats, [0, 1] pixel units).
      std: per-channel std (sequence of C floats).
      extra_views: number of extra views after the two (a branch's ``extra_views``, e.g.
        MSCN's 2), each augmented independently with the config :func:`view_configs` gives it.
    """

    def __init__(self, view1: ViewConfig, view2: ViewConfig, mean, std, extra_views: int = 0):
        if tuple(view1.size) != tuple(view2.size):
            raise ValueError(f"both views must have the same size, got {view1.size} and "
                             f"{view2.size}")
        if isinstance(extra_views, bool) or not isinstance(extra_views, int) or extra_views < 0:
            raise ValueError(f"extra_views must be an integer >= 0, got {extra_views!r}")
        self.view1 = view1
        self.view2 = view2
        self.extra_views = extra_views
        self.mean = tuple(float(v) for v in np.asarray(mean, np.float64).reshape(-1))
        self.std = tuple(float(v) for v in np.asarray(std, np.float64).reshape(-1))
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")

    @classmethod
    def from_preset(cls, name: str, size: SizeLike, channels: int, mean, std, extra_views: int = 0
                    ) -> "TwoViewAugment":
        """The views of a named preset (see ``presets.preset_views``; ``byol`` is asymmetric)."""
        view1, view2 = preset_views(name, size, channels)
        return cls(view1, view2, mean, std, extra_views)

    @property
    def num_views(self) -> int:
        """V = 2 + extra_views."""
        return 2 + self.extra_views

    @property
    def configs(self):
        """The ViewConfig of each of the V views (:func:`view_configs`)."""
        return view_configs(self.view1, self.view2, self.extra_views)

    @property
    def output_size(self) -> Tuple[int, int]:
        """(height, width) of the views."""
        return tuple(self.view1.size)

    def _check_channels(self, channels: int):
        if len(self.mean) not in (1, channels) or len(self.std) not in (1, channels):
            raise ValueError(f"mean/std have {len(self.mean)}/{len(self.std)} entries but the "
                             f"image has {channels} channels")

    def batch(self, images_uint8, seed, rows=None) -> tf.Tensor:
        """Augments a batch at once.

        Args:
          images_uint8: uint8 [B, H, W, C], static H, W, C.
          seed: int32/int64 tensor [2].
          rows: None, or (offset, total): the images are those rows of a batch of ``total``
            and are augmented exactly as they are within it (see :func:`augment_batch`).

        Returns:
          float32 [B, V, H', W', C]: view 1, view 2 (then the extra views) of every image, normalised.
        """
        return two_views(self.view1, self.view2, self.mean, self.std, images_uint8, seed, rows, self.extra_views)

    def batch_encoded(self, contents, sizes, seed, channels: int, rows=None) -> tf.Tensor:
        """Augments a batch of encoded images, each view's crop drawn on the full image.

        Args:
          contents: string [B], encoded images (JPEG, PNG, BMP, GIF).
          sizes: int32 [B, 2], each image's (height, width).
          seed: int32/int64 tensor [2]; the views use the sub-seeds :meth:`batch` uses.
          channels: 1 or 3.
          rows: None or (offset, total), as in :meth:`batch`.

        Returns:
          float32 [B, V, H', W', channels]: view 1, view 2 (then the extra views; see
          :func:`augment_encoded`), normalised.
        """
        self._check_channels(channels)
        sub = seeds.split(seed, self.num_views)
        views = [augment_encoded(contents, sizes, sub[v], config, channels, rows)
                 for v, config in enumerate(self.configs)]
        return ops.normalize(tf.stack(views, axis=1), self.mean, self.std)

    def __call__(self, image_uint8, seed) -> tf.Tensor:
        """Augments one image V times (a batch of one; H and W may be dynamic).

        Args:
          image_uint8: uint8 [H, W, C] image, C static and equal to len(mean) (or mean of
            length 1).
          seed: int32/int64 tensor [2]; view v uses sub-seed v.

        Returns:
          float32 [V, H', W', C]: view 1, view 2 (then the extra views), normalised.
        """
        image = tf.convert_to_tensor(image_uint8)
        self._check_channels(ops.static_channels(image))
        sub = seeds.split(seed, self.num_views)
        views = [augment_image(image, sub[v], config) for v, config in enumerate(self.configs)]
        return ops.normalize(tf.stack(views, axis=0), self.mean, self.std)


def eval_preprocess(image_uint8, mean, std, size: Optional[SizeLike] = None) -> tf.Tensor:
    """The deterministic test transform: to float, optional bilinear resize, normalise.

    Args:
      image_uint8: uint8 [H, W, C] or [B, H, W, C].
      mean: per-channel mean ([0, 1] units).
      std: per-channel std.
      size: optional output (height, width) or int; None keeps the input size.

    Returns:
      float32 tensor [..., H', W', C], normalised.
    """
    x = ops.to_float(image_uint8)
    if size is not None:
        x = tf.image.resize(x, as_size(size), method="bilinear")
    return ops.normalize(x, mean, std)
