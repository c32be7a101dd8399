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

The ops fall in two stages, split where torchvision's PIL pipeline holds uint8 pixels:

* the **crop stage** (:func:`crop_view`, :func:`crop_view_encoded`): the random resized crop
  (only the window of a JPEG is decoded), rounded to uint8; it needs the images themselves, so it
  runs on the host, in ``tf.data``;
* the **finish stage** (:func:`finish_view`): flip, colour jitter, grayscale, blur, solarize, then
  the normalisation; per-pixel work on a fixed-size batch, which runs either on the host too
  (``augment_on="host"``) or first thing inside the compiled train step (``augment_on="device"``:
  :meth:`TwoViewAugment.on_device`, static shapes, XLA). The parameters are the same draws in both
  modes, so both give the same views.

In device mode the host share of a batch crosses to the device as one int32 tensor
(:func:`pack_views`): the uint8 crops of every view, four to an int32, and each view's finish
parameters (14 float32 per image and view, their bits in int32), one row per image, so a
distribution strategy splits it across replicas like any batch (and MultiWorkerMirroredStrategy's
``fit``, which cannot take uint8 or tuple elements, takes it).

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

__all__ = ["sample_view_params", "apply_view_params", "crop_view", "crop_view_encoded", "finish_view",
           "to_uint8", "FINISH_PARAMS", "pack_views", "unpack_views", "packed_length", "augment_encoded",
           "augment_batch", "augment_image", "two_views", "view_configs", "TwoViewAugment", "eval_preprocess",
           "AUGMENT_ON"]

# Where the finish stage runs: "host" (in tf.data) or "device" (inside the train step).
AUGMENT_ON = ("host", "device")

# The finish stage's per-image parameters, in their packed order (order_keys is 4 columns).
FINISH_PARAMS = ("flip", "jitter", "brightness", "contrast", "saturation", "hue", "gray", "blur", "sigma",
                 "solarize", "order_keys")
_BOOL_PARAMS = ("flip", "jitter", "gray", "blur", "solarize")
_PARAM_COLUMNS = len(FINISH_PARAMS) - 1 + 4


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


def to_uint8(images) -> tf.Tensor:
    """float images in [0, 1] -> uint8, rounded to the nearest level (clipped first); any shape."""
    return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)


def crop_view(images, params: Dict[str, tf.Tensor], config: ViewConfig) -> tf.Tensor:
    """The crop stage of a view of decoded images: the random resized crop, in the images' precision.

    uint8 images give uint8 crops, rounded to the nearest level (as PIL's resize in torchvision's
    pipeline, and what crosses to the device in device mode); float images give float crops.

    Args:
      images: uint8 (or float in [0, 1]) [B, H, W, C].
      params: dict from :func:`sample_view_params` (``top``, ``left``, ``crop_h``, ``crop_w``).
      config: the view's ViewConfig.

    Returns:
      uint8 (float32 for float images) [B, config.size[0], config.size[1], C].
    """
    images = tf.convert_to_tensor(images)
    x = ops.resized_crop(ops.to_float(images), params["top"], params["left"], params["crop_h"], params["crop_w"],
                         config.size)
    return to_uint8(x) if images.dtype == tf.uint8 else x


def crop_view_encoded(contents, params: Dict[str, tf.Tensor], config: ViewConfig, channels: int) -> tf.Tensor:
    """The crop stage of a view of encoded images: decode each crop window, resize, round to uint8.

    Args:
      contents: string [B], the encoded files.
      params: dict from :func:`sample_view_params` drawn on each image's own size.
      config: the view's ViewConfig.
      channels: 1 or 3, the channels to decode to.

    Returns:
      uint8 [B, config.size[0], config.size[1], channels].
    """
    boxes = [params[k][:, None] for k in ("top", "left", "crop_h", "crop_w")]
    return ops.decode_resized_crops_uint8(contents, *boxes, config.size, channels)[:, 0]


def finish_view(crops, params: Dict[str, tf.Tensor], config: ViewConfig, dense: bool = False) -> tf.Tensor:
    """The finish stage of a view: flip, colour jitter, grayscale, blur, solarize (not normalised).

    Args:
      crops: uint8 (or float in [0, 1]) [B, h, w, C], the crop stage's output.
      params: dict of the view's parameters (:data:`FINISH_PARAMS` at least).
      config: the view's ViewConfig.
      dense: static shapes only, for a caller that compiles the whole stage (the train step,
        ``augment_on="device"``): the blur is computed on every image, then selected per image.
        False (the host, in ``tf.data``): the colour ops (flip, grayscale, jitter) run as one
        XLA-compiled function, which fuses their element-wise chain into a few passes over the
        batch, and only the images that are blurred are blurred (XLA's convolution is slow on a
        CPU). Both give the same result to float rounding.

    Returns:
      float32 [B, h, w, C] in [0, 1].
    """
    colour = {k: params[k] for k in _COLOUR_PARAMS}
    x = _colour_stage(crops, colour, config, True) if dense else _colour_stage_compiled(crops, colour, config, False)
    radius = ops.blur_radius(config.size[0], 0.1)
    if config.blur_p > 0 and radius > 0 and dense:
        x = tf.where(tf.reshape(params["blur"], [-1, 1, 1, 1]), ops.gaussian_blur(x, params["sigma"], radius), x)
    elif config.blur_p > 0 and radius > 0:
        chosen = tf.where(params["blur"])[:, 0]  # only the images that are blurred are computed
        blurred = ops.gaussian_blur(tf.gather(x, chosen), tf.gather(params["sigma"], chosen), radius)
        x = tf.tensor_scatter_nd_update(x, chosen[:, None], blurred)
    if config.solarize_p > 0:
        x = ops.solarize(x, params["solarize"], 0.5)
    return x


# The parameters of the colour ops (flip, grayscale, colour jitter).
_COLOUR_PARAMS = ("flip", "gray", "jitter", "order_keys") + ops.JITTER_OPS


def _colour_stage(crops, params: Dict[str, tf.Tensor], config: ViewConfig, dense: bool) -> tf.Tensor:
    """to float, flip, [grayscale,] colour jitter, [grayscale]: crops uint8 (or float) [B, h, w, C]
    -> float32 [B, h, w, C] in [0, 1]; ``dense``: the jitter's schedule (:func:`ops.color_jitter`)."""
    x = ops.to_float(crops)
    channels = int(x.shape[-1])
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
        x = ops.color_jitter(x, params["jitter"], params["order_keys"], factors, dense=dense)
    if not config.grayscale_before_jitter:
        x = grayscale(x)
    return x


# The host's colour stage, compiled: XLA fuses the element-wise chain of each op into one pass
# over an image. One trace per view config (a frozen dataclass keys tf.function's traces) and
# input signature; one compilation per concrete shape.
_colour_stage_compiled = tf.function(_colour_stage, jit_compile=True)


def apply_view_params(images, params: Dict[str, tf.Tensor], config: ViewConfig,
                      crop: bool = True, dense: bool = False) -> tf.Tensor:
    """Applies one view's augmentation with the given parameters (see sample_view_params).

    Args:
      images: uint8 (or float in [0, 1]) [B, H, W, C], C in {1, 3} and static.
      params: dict from :func:`sample_view_params` for this batch.
      config: the view's ViewConfig.
      crop: apply the crop stage first (:func:`crop_view`: the random resized crop, rounded to
        uint8 for uint8 images); False when the images are the crops already ([B, *config.size, C]).
      dense: see :func:`finish_view`.

    Returns:
      float32 [B, config.size[0], config.size[1], C] in [0, 1] (not normalised).
    """
    if crop:
        images = crop_view(images, params, config)
    return finish_view(images, params, config, dense)


def _augment(images, seed, config: ViewConfig, rows=None) -> tf.Tensor:
    """sample_view_params + apply_view_params for images [B, H, W, C] (H, W may be dynamic).

    ``rows=(offset, total)``: the images are rows [offset, offset + B) of a batch of ``total``;
    the parameters are drawn for all ``total`` images and these rows' are applied, so the
    result equals those rows of the whole batch's augmentation.
    """
    return apply_view_params(images, _image_params(images, seed, config, rows), config)


def _image_params(images, seed, config: ViewConfig, rows=None):
    """The view's parameters for decoded images [B, H, W, C] (H, W may be dynamic); rows as in _augment."""
    shape = tf.shape(images)
    height = images.shape[1] if images.shape[1] is not None else shape[1]
    width = images.shape[2] if images.shape[2] is not None else shape[2]
    return _row_params(seed, shape[0], height, width, ops.static_channels(images), config, rows)


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


def packed_length(num_views: int, size: SizeLike, channels: int) -> int:
    """P, the int32 words per image of :func:`pack_views`: ceil(V·h·w·C / 4) + 14·V."""
    height, width = as_size(size)
    return -(-int(num_views) * height * width * int(channels) // 4) + _PARAM_COLUMNS * int(num_views)


def pack_views(crops, params) -> tf.Tensor:
    """Packs the host share of a batch (every view's uint8 crop and finish parameters) in one int32 tensor.

    Args:
      crops: uint8 [B, V, h, w, C] (static V, h, w, C), the crop stage of each view.
      params: V dicts, each view's parameters (:data:`FINISH_PARAMS` at least: [B] values,
        ``order_keys`` [B, 4]).

    Returns:
      int32 [B, P], P = :func:`packed_length`: per image, its V·h·w·C crop bytes (view-major, then
      row-major pixels) four to a word (zero-padded to a whole word), then each view's 14
      parameters as float32 bits (bools as 0.0 / 1.0; ``order_keys`` last).
    """
    pixels = tf.convert_to_tensor(crops, tf.uint8)
    count = int(np.prod(pixels.shape[1:]))
    flat = tf.reshape(pixels, [-1, count])
    pad = -count % 4
    if pad:
        flat = tf.pad(flat, [[0, 0], [0, pad]])
    words = tf.bitcast(tf.reshape(flat, [-1, (count + pad) // 4, 4]), tf.int32)
    columns = []
    for view in params:
        columns += [tf.reshape(tf.cast(view[name], tf.float32), [-1, 1]) for name in FINISH_PARAMS[:-1]]
        columns.append(tf.reshape(tf.cast(view["order_keys"], tf.float32), [-1, 4]))
    return tf.concat([words, tf.bitcast(tf.concat(columns, axis=1), tf.int32)], axis=1)


def unpack_views(packed, num_views: int, size: SizeLike, channels: int):
    """Inverse of :func:`pack_views` (static shapes only: runs inside a compiled step).

    Args:
      packed: int32 [B, P], P = packed_length(num_views, size, channels).
      num_views: V.
      size: (h, w) of the crops.
      channels: C.

    Returns:
      (crops uint8 [B, V, h, w, C], list of V parameter dicts: bools for the on/off flags,
      float32 [B] values, ``order_keys`` float32 [B, 4]).

    Raises:
      ValueError: a packed width other than P.
    """
    height, width = as_size(size)
    count = int(num_views) * height * width * int(channels)
    words = -(-count // 4)
    if packed.shape[-1] != packed_length(num_views, size, channels):
        raise ValueError(f"a packed batch of {num_views} views of {height}x{width}x{channels} has "
                         f"{packed_length(num_views, size, channels)} int32 columns, got shape {packed.shape}")
    pixels = tf.reshape(tf.bitcast(packed[:, :words], tf.uint8), [-1, words * 4])[:, :count]
    crops = tf.reshape(pixels, [-1, int(num_views), height, width, int(channels)])
    floats = tf.bitcast(packed[:, words:], tf.float32)
    params = []
    for v in range(int(num_views)):
        cols = floats[:, v * _PARAM_COLUMNS:(v + 1) * _PARAM_COLUMNS]
        view = {name: (cols[:, i] > 0.5) if name in _BOOL_PARAMS else cols[:, i]
                for i, name in enumerate(FINISH_PARAMS[:-1])}
        view["order_keys"] = cols[:, len(FINISH_PARAMS) - 1:]
        params.append(view)
    return crops, params


def augment_encoded(contents, sizes, seed, config: ViewConfig, channels: int, rows=None) -> tf.Tensor:
    """One augmented view of a batch of encoded images, the crop drawn on each full image.

    The crop box of image b is drawn with torchvision's sampling on its own (height, width) (the
    same draws :func:`augment_batch` makes), only that window is decoded
    (:func:`ops.decode_resized_crops_uint8`: ``decode_and_crop_jpeg`` for JPEG) and resized to
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
    return finish_view(crop_view_encoded(contents, params, config, channels), params, config)


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
    return TwoViewAugment(view1, view2, mean, std, extra_views).batch(images, seed, rows)


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

    def batch(self, images_uint8, seed, rows=None, packed: bool = False) -> tf.Tensor:
        """Augments a batch at once (or, ``packed``, makes its host share for the device).

        Args:
          images_uint8: uint8 [B, H, W, C], static H, W, C.
          seed: int32/int64 tensor [2].
          rows: None, or (offset, total): the images are those rows of a batch of ``total``
            and are augmented exactly as they are within it (see :func:`augment_batch`).
          packed: return the crop stage and the finish parameters packed for
            :meth:`on_device` (``augment_on="device"``) instead of the finished views.

        Returns:
          float32 [B, V, H', W', C]: view 1, view 2 (then the extra views) of every image,
          normalised; or, ``packed``, int32 [B, P] (:func:`pack_views`).

        Raises:
          ValueError: images without a static height, width or channel count.
        """
        images = tf.convert_to_tensor(images_uint8)
        if None in images.shape[1:]:
            raise ValueError(f"TwoViewAugment.batch needs static image height, width and channels, got "
                             f"{images.shape}")
        self._check_channels(int(images.shape[-1]))
        sub = seeds.split(seed, self.num_views)
        params = [_image_params(images, sub[v], config, rows) for v, config in enumerate(self.configs)]
        crops = tf.stack([crop_view(images, p, config) for p, config in zip(params, self.configs)], axis=1)
        return pack_views(crops, params) if packed else self.finish(crops, params)

    def batch_encoded(self, contents, sizes, seed, channels: int, rows=None, packed: bool = False) -> tf.Tensor:
        """Augments a batch of encoded images, each view's crop drawn on the full image.

        Args:
          contents: string [B], encoded images (JPEG, PNG, BMP, GIF).
          sizes: int32 [B, 2], each image's (height, width).
          seed: int32/int64 tensor [2]; the views use the sub-seeds :meth:`batch` uses.
          channels: 1 or 3.
          rows: None or (offset, total), as in :meth:`batch`.
          packed: as in :meth:`batch`.

        Returns:
          float32 [B, V, H', W', channels]: view 1, view 2 (then the extra views; see
          :func:`augment_encoded`), normalised; or, ``packed``, int32 [B, P].
        """
        self._check_channels(channels)
        contents = tf.convert_to_tensor(contents)
        sizes = tf.cast(sizes, tf.int32)
        sub = seeds.split(seed, self.num_views)
        params = [_row_params(sub[v], tf.shape(contents)[0], sizes[:, 0], sizes[:, 1], channels, config, rows)
                  for v, config in enumerate(self.configs)]
        # Every view's window at once: an image's windows are decoded together (their union once)
        # where that decodes fewer pixels than one decode per window.
        boxes = [tf.stack([p[k] for p in params], axis=1) for k in ("top", "left", "crop_h", "crop_w")]
        crops = ops.decode_resized_crops_uint8(contents, *boxes, self.output_size, channels)
        return pack_views(crops, params) if packed else self.finish(crops, params)

    def finish(self, crops, params, dense: bool = False) -> tf.Tensor:
        """The finish stage of every view, then the normalisation.

        Args:
          crops: uint8 [B, V, h, w, C], each view's crop stage.
          params: V parameter dicts.
          dense: static shapes (see :func:`finish_view`).

        Returns:
          float32 [B, V, h, w, C], normalised.
        """
        views = [finish_view(crops[:, v], p, config, dense) for v, (p, config) in enumerate(zip(params, self.configs))]
        return ops.normalize(tf.stack(views, axis=1), self.mean, self.std)

    def packed_channels(self, packed_width: int) -> int:
        """The channel count C (1 or 3) whose packed batch has ``packed_width`` int32 columns.

        Raises:
          ValueError: no C in {1, 3} gives that width (not a packed batch of these views).
        """
        for channels in (1, 3):
            if packed_length(self.num_views, self.output_size, channels) == packed_width:
                return channels
        raise ValueError(f"not a packed batch of {self.num_views} views of {self.output_size}: {packed_width} "
                         f"int32 columns (1 channel: {packed_length(self.num_views, self.output_size, 1)}, "
                         f"3 channels: {packed_length(self.num_views, self.output_size, 3)}); build the dataset "
                         "with make_pretrain_dataset(..., augment_on='device') and this TwoViewAugment")

    def on_device(self, data):
        """The device half of ``augment_on="device"``: a packed batch -> its finished, normalised views.

        Runs inside the compiled train step (static shapes; XLA): unpacks the uint8 crops and the
        parameters of :meth:`batch` / :meth:`batch_encoded` (``packed=True``) and applies the
        finish stage with them. The views equal those of ``packed=False`` (the same draws) to float
        rounding.

        Args:
          data: int32 [B, P], or a tuple whose first element is (labels etc. pass through).

        Returns:
          float32 [B, V, h, w, C] normalised (a tuple when ``data`` is one).
        """
        if isinstance(data, (tuple, list)):
            return (self.on_device(data[0]),) + tuple(data[1:])
        packed = tf.convert_to_tensor(data)
        if packed.dtype != tf.int32 or packed.shape.rank != 2:
            raise ValueError(f"on_device takes a packed int32 batch [B, P], got {packed.dtype.name} {packed.shape}")
        channels = self.packed_channels(int(packed.shape[-1]))
        self._check_channels(channels)
        crops, params = unpack_views(packed, self.num_views, self.output_size, channels)
        return self.finish(crops, params, dense=True)

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
