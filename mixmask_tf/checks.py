"""Argument checks, without TensorFlow: one implementation shared by the ops, the branches and the CLI.

Every check raises ``ValueError`` with a message that names the argument, and returns the value
normalised (a Python ``float`` / ``int`` / tuple). Python and NumPy numbers are checked; booleans
are not numbers here. A TensorFlow tensor (which can exist only once TensorFlow is imported, see
:func:`is_tensor`) is left alone where a caller says so: its value is known at run time only.

Importing this module does not import TensorFlow, so the command-line tools check a whole set of
branch options (:func:`branch_options`) before TensorFlow starts: a bad ``--mscn_ratio`` or
``--saliency_alpha`` fails in a fraction of a second. The branch constructors and the ops
(``masks``, ``mixing``, ``filters``, ``saliency``) call the same functions.
"""

import inspect
import math
import numbers
import os
import sys

MASK_TYPES = ("blocked", "discrete")
DEFAULT_GRID_SIZE = 4  # MixMask's G where none is given (``branches.MaskOptions``)
PERMUTATIONS = ("reverse", "random")
ERASE_FILLS = ("zero", "noise")
SALIENCY_FILLS = ("highpass", "blur", "mean")
SALIENCY_LOCALISATIONS = ("target", "resnet50_imagenet")
# The saliency branch's per-side masking options (None: the fill strategy's default).
MASKING_OPTIONS = ("focal_prob", "spatial_prob", "fg_cap", "negative_focal_prob", "negative_spatial_prob",
                   "negative_fg_cap")


# ----------------------------------------------------------------------------- primitives


def is_real(x):
    """True for a Python or NumPy real number (not a bool)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def is_int(x):
    """True for a Python or NumPy integer (not a bool)."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def is_tensor(x):
    """True for a TensorFlow tensor or variable; False whenever TensorFlow is not imported."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(x, (tf.Tensor, tf.Variable))


def probability(name, value):
    """``value`` as a float in [0, 1]; ValueError otherwise."""
    if not is_real(value) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability, a number in [0, 1], got {value!r}.")
    return float(value)


def interval(name, value, low, high, low_open=False, high_open=False, what=""):
    """``value`` as a float in the interval from ``low`` to ``high`` (open where said); ValueError otherwise.

    ``what`` (optional) says what the number is, in the message.
    """
    ok = is_real(value) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        brackets = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name}{f' ({what})' if what else ''} must lie in {brackets}, got {value!r}.")
    return float(value)


def positive(name, value, what=""):
    """``value`` as a finite float > 0; ValueError otherwise."""
    if not is_real(value) or not math.isfinite(float(value)) or float(value) <= 0.0:
        raise ValueError(f"{name}{f' ({what})' if what else ''} must be a finite number > 0, got {value!r}.")
    return float(value)


def integer(name, value, minimum=1):
    """``value`` as an int >= ``minimum``; ValueError otherwise."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def fraction_pair(name, value):
    """``value`` as a pair of floats (a, b) with 0 <= a <= b <= 1; ValueError otherwise."""
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (a, b) with 0 <= a <= b <= 1, got {value!r}.") from None
    if not (is_real(low) and is_real(high)) or not 0.0 <= float(low) <= float(high) <= 1.0:
        raise ValueError(f"{name} must be a pair of numbers (a, b) with 0 <= a <= b <= 1, got {value!r}.")
    return (float(low), float(high))


def choice(name, value, choices):
    """``value`` if it is one of ``choices``; ValueError otherwise."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}.")
    return value


# ----------------------------------------------------------------------------- grids and filters


def grid_fits(grid_size, image_size):
    """ValueError unless ``image_size`` is a pair of positive ints with both sides >= ``grid_size``."""
    try:
        height, width = image_size
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be a pair (height, width), got {image_size!r}.") from None
    if not (is_int(height) and is_int(width)) or height < 1 or width < 1:
        raise ValueError(f"image_size must be a pair of positive integers (height, width), got {image_size!r}.")
    if grid_size > min(height, width):
        raise ValueError(f"grid size {grid_size} is larger than the {height}x{width} image: "
                         f"use a grid size of at most {min(height, width)}.")


def mask_args(grid_size, ratio=0.5, ratio_range=None, mask_type="blocked", image_size=None):
    """The MixMask grid-mask arguments (``masks.validate_mask_args``, which documents them).

    Tensor-valued ``ratio`` / ``ratio_range`` are not inspected.
    """
    if not is_int(grid_size):
        raise ValueError(f"grid_size must be an integer >= 2, got {grid_size!r} ({type(grid_size).__name__}).")
    if grid_size < 2:
        raise ValueError(f"grid_size must be an integer >= 2 (a {grid_size}x{grid_size} grid cannot "
                         f"mix two images), got {grid_size}.")
    if image_size is not None:
        grid_fits(grid_size, image_size)
    if not is_tensor(ratio):
        if not is_real(ratio):
            raise ValueError(f"ratio must be a number in (0, 1), got {ratio!r}.")
        if not 0.0 < float(ratio) < 1.0:
            raise ValueError(f"ratio must be in the open interval (0, 1), got {ratio}: a ratio of 0 "
                             f"or 1 leaves one of the two images out of every mixture.")
    if ratio_range is not None and not is_tensor(ratio_range):
        try:
            low, high = ratio_range
        except (TypeError, ValueError):
            raise ValueError(f"ratio_range must be None or a pair (a, b) with 0 <= a < b <= 1, "
                             f"got {ratio_range!r}.") from None
        if not (is_tensor(low) or is_tensor(high)):
            if not (is_real(low) and is_real(high)):
                raise ValueError(f"ratio_range must be a pair of numbers (a, b) with 0 <= a < b <= 1, "
                                 f"got {ratio_range!r}.")
            if not 0.0 <= float(low) < float(high) <= 1.0:
                raise ValueError(f"ratio_range must satisfy 0 <= a < b <= 1, got {tuple(ratio_range)}.")
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}.")


def unmix_args(global_prob=0.5, beta=1.0, permutation="reverse"):
    """The Un-Mix arguments (``mixing.validate_unmix_args``, which documents them)."""
    if not is_real(global_prob) or not 0.0 <= float(global_prob) <= 1.0:
        raise ValueError(f"global_prob must be a number in [0, 1] (the probability of the global "
                         f"mixup mode; 0 = region/CutMix only), got {global_prob!r}.")
    if not is_real(beta) or not math.isfinite(float(beta)) or float(beta) <= 0.0:
        raise ValueError(f"beta must be a finite number > 0 (λ ~ Beta(beta, beta)), got {beta!r}.")
    if permutation not in PERMUTATIONS:
        raise ValueError(f"unknown permutation {permutation!r}; choose one of {PERMUTATIONS}.")


def high_pass(sigma, radius, height=None, width=None):
    """The high-pass filter's σ (finite > 0) and kernel radius (int >= 1, below the image sides)."""
    if not is_real(sigma) or not math.isfinite(float(sigma)) or sigma <= 0:
        raise ValueError(f"the high-pass sigma must be a positive number, got {sigma!r}")
    if not is_int(radius) or radius < 1:
        raise ValueError(f"the high-pass kernel radius must be an integer >= 1, got {radius!r}")
    for name, size in (("height", height), ("width", width)):
        if size is not None and radius >= size:
            raise ValueError(f"the high-pass kernel radius {radius} needs images larger than it (reflect padding); "
                             f"the image {name} is {size}: use a smaller sigma or radius")


def optional_high_pass(sigma, radius):
    """σ and radius as a branch takes them (None: the default for the image size), checked as far as they are given."""
    if sigma is not None or radius is not None:
        high_pass(1.0 if sigma is None else sigma, 1 if radius is None else radius)
    return (None if sigma is None else float(sigma), None if radius is None else int(radius))


# ----------------------------------------------------------------------------- branch options


def mscn_options(ratio=0.15, key_ratio=None, grid_size=7, noise_std=0.18, focal_prob=0.4, focal_size=0.9,
                 channel_prob=0.7, mask_prob=1.0, key_mask_prob=None, extra_views=2, sigma=None, radius=None,
                 high_pass=True):
    """The options of ``branches.MSCNBranch`` (which documents them), checked and normalised.

    Returns:
      dict of the same names; ``key_ratio`` / ``key_mask_prob`` resolved from ``ratio`` / ``mask_prob``.
    """
    ratio = interval("ratio", ratio, 0.0, 1.0, high_open=True)
    key_ratio = ratio if key_ratio is None else interval("key_ratio", key_ratio, 0.0, 1.0, high_open=True)
    mask_prob = probability("mask_prob", mask_prob)
    sigma, radius = optional_high_pass(sigma, radius)
    return dict(ratio=ratio, key_ratio=key_ratio, grid_size=integer("grid_size", grid_size),
                noise_std=positive("noise_std", noise_std), focal_prob=probability("focal_prob", focal_prob),
                focal_size=interval("focal_size", focal_size, 0.0, 1.0, low_open=True,
                                    what="a fraction of the shorter image side"),
                channel_prob=probability("channel_prob", channel_prob), mask_prob=mask_prob,
                key_mask_prob=mask_prob if key_mask_prob is None else probability("key_mask_prob", key_mask_prob),
                extra_views=integer("extra_views", extra_views, minimum=0), sigma=sigma, radius=radius,
                high_pass=bool(high_pass))


def saliency_masking(prefix, focal_prob=None, spatial_prob=None, fg_cap=None):
    """(focal_prob, spatial_prob, fg_cap) of one side of the saliency branch (``prefix``: "" or "negative_"),
    each checked unless None (probabilities in [0, 1], the cap in (0, 1])."""
    return (None if focal_prob is None else probability(f"{prefix}focal_prob", focal_prob),
            None if spatial_prob is None else probability(f"{prefix}spatial_prob", spatial_prob),
            None if fg_cap is None else interval(f"{prefix}fg_cap", fg_cap, 0.0, 1.0, low_open=True))


def saliency_options(fill="highpass", query_ratio=(0.05, 0.25), negative_ratio=(0.4, 0.7), std_factor=0.6,
                     alpha=2.0, hard_negatives=1, noise_std=0.18, negative_noise_std=0.14, localisation="target",
                     sigma=None, radius=None, **masking):
    """The options of ``branches.SaliencyBranch`` (which documents them), checked and normalised.

    ``masking`` holds the six per-side options (``fg_cap``, ``focal_prob``, ``spatial_prob`` and their
    ``negative_`` forms): a given value is checked here (:func:`saliency_masking`); None stands for the
    fill strategy's default, which the branch resolves.

    Returns:
      dict of the names above (``masking`` included, unchanged).
    """
    choice("fill", fill, SALIENCY_FILLS)
    unknown = sorted(set(masking) - set(MASKING_OPTIONS))
    if unknown:
        raise TypeError(f"saliency_options() got unexpected options {unknown}")
    for prefix in ("", "negative_"):
        saliency_masking(prefix, *(masking.get(f"{prefix}{n}") for n in ("focal_prob", "spatial_prob", "fg_cap")))
    if not (localisation in SALIENCY_LOCALISATIONS or str(localisation).endswith(".keras")):
        raise ValueError(f"localisation must be {', '.join(map(repr, SALIENCY_LOCALISATIONS))} or a path to a "
                         f".keras model, got {localisation!r}")
    if str(localisation).endswith(".keras") and not os.path.isfile(localisation):
        raise ValueError(f"localisation model {localisation} does not exist")
    if fill == "highpass":  # the filter's σ and radius; the other fills do not filter
        sigma, radius = optional_high_pass(sigma, radius)
    return dict(fill=fill, query_ratio=fraction_pair("query_ratio", query_ratio),
                negative_ratio=fraction_pair("negative_ratio", negative_ratio),
                std_factor=interval("std_factor", std_factor, 0.0, math.inf, high_open=True,
                                    what="foreground: map >= mean - std_factor * std"),
                alpha=positive("alpha", alpha, what="the hard negatives' penalty ratio"),
                hard_negatives=integer("hard_negatives", hard_negatives, minimum=0),
                noise_std=positive("noise_std", noise_std),
                negative_noise_std=positive("negative_noise_std", negative_noise_std),
                localisation=str(localisation), sigma=sigma, radius=radius,
                **{name: masking.get(name) for name in MASKING_OPTIONS})


def branch_options(name, options):
    """Checks the options of branch ``name`` without building it (nor importing TensorFlow).

    Args:
      name: a registered branch name (``mixmask_tf.registry.BRANCHES``).
      options: option name -> value; names the branch does not take are ignored (the CLI passes
        the values of every branch flag).

    Only the checks the constructors make through this module (mask, Un-Mix, MSCN and saliency
    options), so the two cannot disagree; MixMask's permutation and erase's fill are checked by
    their constructors (on the CLI they are enum flags).

    Raises:
      ValueError: an unknown branch, or naming the invalid option. What needs the images (a grid
        larger than them, a filter radius they cannot pad) is checked when the branch is validated
        against them.
    """
    from mixmask_tf import registry  # no TensorFlow either

    if name not in registry.BRANCHES:
        raise ValueError(f"unknown branch {name!r}; known: {', '.join(registry.BRANCHES)}")

    def take(*names):
        return {n: options[n] for n in names if n in options}

    if name in ("mixmask", "erase", "mixmask_unmix"):
        mask_args(**{"grid_size": DEFAULT_GRID_SIZE, **take("grid_size", "ratio", "ratio_range", "mask_type")})
    if name in ("unmix", "mixmask_unmix"):
        unmix_args(**take("global_prob", "beta"))
    if name == "mscn":
        mscn_options(**take(*inspect.signature(mscn_options).parameters))
    if name == "saliency":
        saliency_options(**take(*inspect.signature(saliency_options).parameters, *MASKING_OPTIONS))
