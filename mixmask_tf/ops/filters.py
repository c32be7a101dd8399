"""Input filters that travel with an encoder: MSCN's high-pass preprocessing.

Masked Siamese ConvNets (Jing et al. 2022, docs/algorithms.md, "MSCN") feed the network
`x − GaussianBlur(x, σ)` of the normalised image, so that zero means "no information" and a
masked cell filled with zeros or noise creates no edge. An encoder trained on filtered images
must see filtered images wherever it is used afterwards: the kNN monitor, `knn_eval`,
`linear_eval`, `finetune` and both serving signatures of the export. A run records its filter in
`config.json` (`"input_filter"`, :meth:`HighPassFilter.as_dict`); every consumer rebuilds it with
:func:`from_config` and puts it in front of the backbone with :func:`with_input_filter`.

The blur: a separable Gaussian kernel of radius `r` (2r + 1 taps, weights exp(−t²/2σ²)
normalised to sum 1) applied per channel with reflect padding (the border pixel is not
repeated: torch's and NumPy's "reflect"), so a constant image blurs to itself and the filter
maps it to exactly zero, borders included.

Defaults [ours]: σ = 5 at 224 px (the paper's best, its Figure 6), scaled with the image's
shorter side, σ = 5 · min(H, W) / 224; radius r = ceil(3σ) (at least 1), the usual truncation
at three standard deviations; the paper gives neither the scaling rule nor the kernel size.
"""

import dataclasses
import math
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from mixmask_tf import checks

__all__ = ["PAPER_SIGMA", "PAPER_SIZE", "default_sigma", "default_radius", "gaussian_kernel", "gaussian_blur",
           "high_pass", "HighPassFilter", "from_config", "HighPassLayer", "with_input_filter"]

PAPER_SIGMA = 5.0  # MSCN's best σ at 224 px (paper Figure 6)
PAPER_SIZE = 224


def default_sigma(image_size: Sequence[int]) -> float:
    """σ = 5 · min(H, W) / 224 (the paper's σ scaled with the image) [ours]."""
    return PAPER_SIGMA * min(int(d) for d in image_size[:2]) / PAPER_SIZE


def default_radius(sigma: float) -> int:
    """r = max(1, ceil(3σ)): the kernel has 2r + 1 taps [ours]."""
    return max(1, int(math.ceil(3.0 * float(sigma) - 1e-9)))


def gaussian_kernel(sigma, radius: int):
    """Normalised Gaussian taps ``exp(−t² / 2σ²)``, ``t = −r..r``.

    A Python number σ: a NumPy float32 [2r + 1], computed in float64 then rounded (the high-pass
    filter's and the saliency blur's constants). A tensor σ [...] (one per image): a float32 tensor
    [..., 2r + 1] computed in float32 in the graph (the augmentation's random σ).
    """
    if not _per_image(sigma):
        t = np.arange(-radius, radius + 1, dtype=np.float64)
        k = np.exp(-(t ** 2) / (2.0 * float(sigma) ** 2))
        return (k / k.sum()).astype(np.float32)
    sigma = tf.cast(sigma, tf.float32)[..., None]
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-tf.square(taps) / (2.0 * tf.square(sigma)))
    return kernel / tf.reduce_sum(kernel, axis=-1, keepdims=True)


_check = checks.high_pass


def _per_image(sigma) -> bool:
    """True for a σ per image (a tensor or an array), False for one Python/NumPy number."""
    return checks.is_tensor(sigma) or np.ndim(sigma) > 0


def _separable(padded, vertical, horizontal):
    """The blur proper: one depthwise VALID pass per axis over reflect-padded images
    (DEPTHWISE_CONV_2D and MIRROR_PAD are TF Lite builtins)."""
    x = tf.nn.depthwise_conv2d(padded, vertical, strides=[1, 1, 1, 1], padding="VALID")
    return tf.nn.depthwise_conv2d(x, horizontal, strides=[1, 1, 1, 1], padding="VALID")


def gaussian_blur(images, sigma, radius: int) -> tf.Tensor:
    """Per-channel separable Gaussian blur with reflect padding: the project's one Gaussian blur
    (MSCN's high-pass filter, the saliency blur fill, the augmentation's random blur).

    Args:
      images: float [N, H, W, C] with static H, W, C and radius < min(H, W).
      sigma: standard deviation in pixels: a Python number (> 0, checked) for the whole batch, or
        a float tensor [N], one per image (SimCLR's random blur; not checked).
      radius: Python int, kernel radius r (2r + 1 taps): >= 1 with a number σ; with σ per image,
        0 or less returns the images unchanged.

    Returns:
      float32 [N, H, W, C].
    """
    if _per_image(sigma):
        return _blur_per_image(images, sigma, radius)
    _check(sigma, radius)
    x = tf.cast(images, tf.float32)
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    _check(sigma, radius, height, width)
    k = tf.constant(gaussian_kernel(sigma, radius))
    x = tf.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    vertical = tf.tile(tf.reshape(k, [-1, 1, 1, 1]), [1, 1, channels, 1])
    horizontal = tf.tile(tf.reshape(k, [1, -1, 1, 1]), [1, 1, channels, 1])
    return _separable(x, vertical, horizontal)


def _blur_per_image(images, sigma, radius: int) -> tf.Tensor:
    """gaussian_blur with a σ per image: every image's channels become channels of one image, so
    one depthwise convolution applies every image's own kernel."""
    if radius <= 0:
        return images
    images = tf.convert_to_tensor(images, tf.float32)
    kernel = gaussian_kernel(sigma, radius)  # [B, 2r + 1]
    channels = images.shape[-1]
    if channels is None:
        raise ValueError("the channel axis of the images must have a static size")
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]

    def blur():
        padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
        # [1, H + 2r, W + 2r, B·C], taps [2r + 1, B·C] (image-major).
        stacked = tf.reshape(tf.transpose(padded, [1, 2, 0, 3]), [1, height + 2 * radius, width + 2 * radius, -1])
        taps = tf.reshape(tf.repeat(tf.transpose(kernel), channels, axis=1), [2 * radius + 1, -1])
        x = _separable(stacked, taps[:, None, :, None], taps[None, :, :, None])
        return tf.transpose(tf.reshape(x, [height, width, batch, channels]), [2, 0, 1, 3])

    # An empty batch (no image of the batch is blurred) has nothing to pad.
    return tf.ensure_shape(tf.cond(batch > 0, blur, lambda: images), images.shape)


def high_pass(images, sigma: float, radius: int) -> tf.Tensor:
    """MSCN's high-pass filter: images − gaussian_blur(images, σ, r), float32 [N, H, W, C]."""
    x = tf.cast(images, tf.float32)
    return x - gaussian_blur(x, sigma, radius)


@dataclasses.dataclass(frozen=True)
class HighPassFilter:
    """The high-pass filter of a run: callable on float images [N, H, W, C] (normalised).

    Attributes:
      sigma: Gaussian σ in pixels.
      radius: kernel radius (2·radius + 1 taps).
    """

    sigma: float
    radius: int

    name = "highpass"

    def __post_init__(self):
        sigma = float(self.sigma) if isinstance(self.sigma, (int, float, np.floating)) and not isinstance(
            self.sigma, bool) else self.sigma
        _check(sigma, self.radius)
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "radius", int(self.radius))

    @classmethod
    def for_images(cls, image_size, sigma: Optional[float] = None, radius: Optional[int] = None) -> "HighPassFilter":
        """The filter for images of `image_size` (H, W[, C]): defaults as the module docstring.

        Raises:
          ValueError: a bad σ or radius, or a radius the images cannot reflect-pad.
        """
        sigma = default_sigma(image_size) if sigma is None else sigma
        _check(sigma, radius if radius is not None else 1)
        radius = default_radius(sigma) if radius is None else radius
        _check(sigma, radius, int(image_size[0]), int(image_size[1]))
        return cls(sigma, radius)

    def validate(self, image_shape):
        """Raises ValueError unless images of `image_shape` (H, W, C) can be filtered."""
        _check(self.sigma, self.radius, int(image_shape[0]), int(image_shape[1]))

    def __call__(self, images) -> tf.Tensor:
        return high_pass(images, self.sigma, self.radius)

    def as_dict(self) -> dict:
        """What `config.json` and the model card record: {"name": "highpass", "sigma", "radius", "formula"}."""
        return {"name": self.name, "sigma": self.sigma, "radius": self.radius,
                "formula": "x - GaussianBlur(x, sigma, 2 * radius + 1 taps, reflect padding) on the normalised image"}


def from_config(config) -> Optional[HighPassFilter]:
    """The filter recorded as `config` (a dict of :meth:`HighPassFilter.as_dict`), or None for None / {}.

    Raises:
      ValueError: an unknown filter name or bad parameters.
    """
    if not config:
        return None
    if isinstance(config, HighPassFilter):
        return config
    if config.get("name") != HighPassFilter.name:
        raise ValueError(f"unknown input filter {config.get('name')!r}; known: {HighPassFilter.name!r}")
    return HighPassFilter(config["sigma"], config["radius"])


@keras.saving.register_keras_serializable(package="mixmask_tf")
class HighPassLayer(keras.layers.Layer):
    """:func:`high_pass` as a weightless Keras layer (float32), so a saved model carries it."""

    def __init__(self, sigma, radius, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.filter = HighPassFilter(sigma, radius)

    def call(self, images):
        return self.filter(images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "sigma": self.filter.sigma, "radius": self.filter.radius}


def with_input_filter(model, input_filter, name=None):
    """`model` with `input_filter` in front of it (a functional Keras model), or `model` itself for None.

    Args:
      model: Keras model, normalised float images [N, H, W, C] -> outputs.
      input_filter: a :class:`HighPassFilter`, its dict, or None.
      name: the wrapper's name (default "<model name>_highpass").

    Returns:
      a Keras model normalised images -> outputs that filters first (weights shared with `model`).
    """
    input_filter = from_config(input_filter)
    if input_filter is None:
        return model
    input_filter.validate(model.input_shape[1:])
    inputs = keras.Input(shape=tuple(model.input_shape[1:]), name="normalised_images")
    filtered = HighPassLayer(input_filter.sigma, input_filter.radius, name="highpass")(inputs)
    return keras.Model(inputs, model(filtered), name=name or f"{model.name}_highpass")
