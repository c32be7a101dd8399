"""Augmentation settings: :class:`ViewConfig` (one view's recipe) and the named presets.

Pure Python (no TensorFlow), so the command-line flags can list the presets before TensorFlow is
imported. The names are the registry's (``mixmask_tf.registry.AUGMENT_PRESETS``); each preset is
a function ``(size, channels) -> (view1, view2)``:

``mocov1`` (MoCo v1), ``mocov2`` (MoCo v2), ``simclr`` (SimCLR v1, ImageNet), ``byol`` (BYOL,
asymmetric views), ``cifar`` (SimCLR's CIFAR-10 recipe) and ``fashion_mnist`` (this project's
recipe for 28x28 grayscale images). For 1-channel images the colour-only ops (saturation, hue,
grayscale) are disabled.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Callable, Dict, Sequence, Tuple, Union

from mixmask_tf import registry

__all__ = ["SizeLike", "as_size", "ViewConfig", "PRESET_NAMES", "preset_views", "preset",
           "fashion_mnist_views", "cifar_views", "mocov1_views", "mocov2_views", "simclr_views",
           "byol_views"]

SizeLike = Union[int, Sequence[int]]

# The preset names, e.g. for a command-line flag's choices.
PRESET_NAMES: Tuple[str, ...] = tuple(registry.AUGMENT_PRESETS)


def as_size(size: SizeLike) -> Tuple[int, int]:
    """Normalises an int or (H, W) sequence to a tuple of two ints."""
    if isinstance(size, numbers.Integral):
        return int(size), int(size)
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"size must be an int or (height, width), got {size!r}")
    return size


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
      hue: colour-jitter hue strength, in [0, 0.5] (ignored for 1 channel).
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
        object.__setattr__(self, "size", as_size(self.size))
        object.__setattr__(self, "crop_scale", tuple(float(v) for v in self.crop_scale))
        object.__setattr__(self, "crop_ratio", tuple(float(v) for v in self.crop_ratio))


def _colour(channels: int, value: float) -> float:
    """``value`` for 3-channel images; 0.0 (op disabled) for 1-channel images."""
    return float(value) if int(channels) == 3 else 0.0


def _fashion_mnist(size: SizeLike, channels: int) -> ViewConfig:
    del channels  # grayscale data: no saturation / hue / grayscale.
    return ViewConfig(size=size, crop_scale=(0.2, 1.0), flip=True, brightness=0.4,
                      contrast=0.4, saturation=0.0, hue=0.0, jitter_p=0.8, grayscale_p=0.0,
                      blur_p=0.0)


def fashion_mnist_views(size: SizeLike, channels: int) -> Tuple[ViewConfig, ViewConfig]:
    """Fashion-MNIST (this project's recipe for 28x28 grayscale images), both views alike.

    RandomResizedCrop scale (0.2, 1), flip, brightness / contrast jitter 0.4 with p 0.8; no
    saturation, hue, grayscale, blur or solarisation (whatever ``channels`` is).
    """
    view = _fashion_mnist(size, channels)
    return view, view


def cifar_views(size: SizeLike, channels: int) -> Tuple[ViewConfig, ViewConfig]:
    """SimCLR's CIFAR-10 recipe (Chen et al. 2020, appendix B.9: colour strength s = 0.5, no blur).

    RandomResizedCrop scale (0.08, 1), flip, RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1),
    p=0.8), RandomGrayscale(p=0.2), no Gaussian blur. Both views alike.
    """
    view = ViewConfig(size=size, crop_scale=(0.08, 1.0), flip=True, brightness=0.4,
                      contrast=0.4, saturation=_colour(channels, 0.4),
                      hue=_colour(channels, 0.1), jitter_p=0.8,
                      grayscale_p=_colour(channels, 0.2), blur_p=0.0)
    return view, view


def mocov1_views(size: SizeLike, channels: int) -> Tuple[ViewConfig, ViewConfig]:
    """MoCo v1 (He et al., CVPR 2020; facebookresearch/moco ``main_moco.py`` without --aug-plus).

    RandomResizedCrop(224, scale=(0.2, 1.)), RandomGrayscale(p=0.2),
    ColorJitter(0.4, 0.4, 0.4, 0.4) applied always (p = 1), RandomHorizontalFlip(); no blur.
    The grayscale comes before the jitter, as in the reference. Both views alike.
    """
    view = ViewConfig(size=size, crop_scale=(0.2, 1.0), flip=True, brightness=0.4,
                      contrast=0.4, saturation=_colour(channels, 0.4),
                      hue=_colour(channels, 0.4), jitter_p=1.0,
                      grayscale_p=_colour(channels, 0.2), blur_p=0.0,
                      grayscale_before_jitter=True)
    return view, view


def mocov2_views(size: SizeLike, channels: int) -> Tuple[ViewConfig, ViewConfig]:
    """MoCo v2 (Chen et al. 2020, arXiv:2003.04297; ``main_moco.py --aug-plus``).

    RandomResizedCrop(224, scale=(0.2, 1.)), RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)],
    p=0.8), RandomGrayscale(p=0.2), RandomApply([GaussianBlur([.1, 2.])], p=0.5),
    RandomHorizontalFlip(). Both views alike.
    """
    view = ViewConfig(size=size, crop_scale=(0.2, 1.0), flip=True, brightness=0.4,
                      contrast=0.4, saturation=_colour(channels, 0.4),
                      hue=_colour(channels, 0.1), jitter_p=0.8,
                      grayscale_p=_colour(channels, 0.2), blur_p=0.5)
    return view, view


def simclr_views(size: SizeLike, channels: int) -> Tuple[ViewConfig, ViewConfig]:
    """SimCLR v1 on ImageNet (Chen et al., ICML 2020, appendix A), colour strength s = 1.

    RandomResizedCrop scale (0.08, 1), ratio (3/4, 4/3), flip; RandomApply(ColorJitter(0.8s,
    0.8s, 0.8s, 0.2s), p=0.8); RandomGrayscale(p=0.2); Gaussian blur with p 0.5, kernel 10 % of
    the side, sigma ~ U(0.1, 2.0). (The jitter has torchvision semantics, as in the PyTorch
    ports; the TF reference uses an additive brightness.) Both views alike.
    """
    s = 1.0
    view = ViewConfig(size=size, crop_scale=(0.08, 1.0), flip=True, brightness=0.8 * s,
                      contrast=0.8 * s, saturation=_colour(channels, 0.8 * s),
                      hue=_colour(channels, 0.2 * s), jitter_p=0.8,
                      grayscale_p=_colour(channels, 0.2), blur_p=0.5)
    return view, view


def byol_views(size: SizeLike, channels: int) -> Tuple[ViewConfig, ViewConfig]:
    """BYOL (Grill et al., NeurIPS 2020, appendix B, table 6): two asymmetric views.

    Both views: RandomResizedCrop scale (0.08, 1), ratio (3/4, 4/3), flip;
    RandomApply(ColorJitter(0.4, 0.4, 0.2, 0.1), p=0.8); RandomGrayscale(p=0.2); Gaussian blur
    (kernel 23 for 224, i.e. ~10 % of the side, sigma ~ U(0.1, 2.0)); solarisation threshold 0.5.
    View 1: blur p 1.0, solarize p 0.0. View 2: blur p 0.1, solarize p 0.2.
    """
    common = dict(size=size, crop_scale=(0.08, 1.0), flip=True, brightness=0.4, contrast=0.4,
                  saturation=_colour(channels, 0.2), hue=_colour(channels, 0.1), jitter_p=0.8,
                  grayscale_p=_colour(channels, 0.2))
    return (ViewConfig(blur_p=1.0, solarize_p=0.0, **common),
            ViewConfig(blur_p=0.1, solarize_p=0.2, **common))


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
    if name not in registry.AUGMENT_PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; known presets: "
                         f"{', '.join(sorted(PRESET_NAMES))}")
    if int(channels) not in (1, 3):
        raise ValueError(f"augmentation presets need 1 or 3 channels, got {channels}")
    return registry.resolve(registry.AUGMENT_PRESETS, name, "augmentation preset")(size, int(channels))


def preset(name: str, size: SizeLike, channels: int) -> ViewConfig:
    """Returns the first view of a named preset (see :func:`preset_views` for both views).

    Raises:
      ValueError: unknown preset name (the message lists the known names).
    """
    return preset_views(name, size, channels)[0]


# name -> fn(size, channels) -> (view1, view2), and the first view alone (fn -> ViewConfig).
PRESET_VIEWS: Dict[str, Callable[[SizeLike, int], Tuple[ViewConfig, ViewConfig]]] = {
    name: (lambda size, channels, name=name: preset_views(name, size, channels)) for name in PRESET_NAMES}
PRESETS: Dict[str, Callable[[SizeLike, int], ViewConfig]] = {
    name: (lambda size, channels, name=name: preset(name, size, channels)) for name in PRESET_NAMES}
