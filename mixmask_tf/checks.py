"""Argument checks, without TensorFlow: one implementation shared by the ops, the branches and the CLI.

Every check raises ``ValueError`` with a message that names the argument, and returns the value
normalised (a Python ``float`` / ``int`` / tuple). Python and NumPy numbers are checked; booleans
are not numbers here. A TensorFlow tensor (which can exist only once TensorFlow is imported, see
:func:`is_tensor`) is left alone where a caller says so: its value is known at run time only.

Importing this module does not import TensorFlow, so the command-line tools check a whole set of
branch options (declared with these checks in :mod:`mixmask_tf.options`) before TensorFlow starts: a
bad ``--mscn_ratio`` or ``--saliency_alpha`` fails in a fraction of a second. The branch constructors and the ops
(``masks``, ``mixing``, ``filters``, ``saliency``) call the same functions.
"""

import math
import numbers
import sys

MASK_TYPES = ("blocked", "discrete")
DEFAULT_GRID_SIZE = 4  # MixMask's G where none is given (``branches.MaskOptions``)
PERMUTATIONS = ("reverse", "random")
ERASE_FILLS = ("zero", "noise")
SALIENCY_FILLS = ("highpass", "blur", "mean")
SALIENCY_LOCALISATIONS = ("target", "resnet50_imagenet")


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


def service_address(name, value):
    """A tf.data service dispatcher address ``grpc://host:port`` as (host, port); ValueError otherwise."""
    text = value if isinstance(value, str) else ""
    host, _, port = text[len("grpc://"):].rpartition(":") if text.startswith("grpc://") else ("", "", "")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{name} must be a tf.data service dispatcher's address, grpc://host:port, got {value!r}")
    return host.strip("[]"), int(port)


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
