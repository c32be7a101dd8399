"""The masks of Masked Siamese ConvNets (MSCN, Jing et al. 2022; docs/algorithms.md, "MSCN"):
random grid, focal and channel-independent masks (:func:`mscn_masks`), in pure TensorFlow.

Same convention as the grid masks of :mod:`mixmask_tf.ops.masks`: 1 keeps the pixel, 0 masks it
(MSCN fills the 0-region with noise, :func:`mixmask_tf.ops.mixing.erase`). Here ``ratio`` is the
fraction of cells *masked* (set to 0), the direction of the discrete masks. Every random draw is
a portable 24-bit integer draw (:mod:`mixmask_tf.seeds`), so the same seed gives the same masks
with and without ``tf.function(jit_compile=True)``.
"""

import math

import tensorflow as tf

from mixmask_tf import checks, seeds
from mixmask_tf.ops.masks import upsample_masks

_is_tensor = checks.is_tensor
_is_real = checks.is_real
_is_int = checks.is_int

_check_positive_int = checks.integer


def _check_num_masks(num_masks):
    """ValueError for a negative or non-integer Python ``num_masks`` (tensors are not inspected)."""
    if not _is_tensor(num_masks):
        _check_positive_int("num_masks", num_masks, minimum=0)


def _check_grid_ratio(grid_size, ratio):
    """ValueError unless ``grid_size`` is an int >= 1 and ``ratio`` a number in [0, 1)."""
    _check_positive_int("grid_size", grid_size)
    if not _is_real(ratio) or not 0.0 <= float(ratio) < 1.0:
        raise ValueError(
            f"ratio (the fraction of masked cells) must be a number in [0, 1), got {ratio!r}.")


def _check_focal_size(size, height, width):
    """ValueError unless ``1 <= size <= min(height, width)`` (all Python ints)."""
    _check_positive_int("height", height)
    _check_positive_int("width", width)
    if not _is_int(size) or not 1 <= size <= min(height, width):
        raise ValueError(
            f"focal size must be an integer number of pixels in [1, {min(height, width)}] "
            f"for a {height}x{width} image, got {size!r}.")


def num_masked_cells(grid_size, ratio):
    """Masked cells of a random grid mask: ``floor(ratio * G**2 + 0.5)`` (round half up).

    Python's ``round`` (half to even) is deliberately not used: ``ratio * G**2 = 2.5``
    masks 3 cells, not 2.
    """
    return int(math.floor(float(ratio) * grid_size * grid_size + 0.5))


def _uniform_ints(u, n):
    """Integers uniform in ``[0, n)`` (``n`` a Python int >= 1) from float64 portable uniforms.

    ``floor(u * n)`` with ``u = k * 2**-24`` (:func:`mixmask_tf.seeds.portable_uniform` in
    float64), where the product is exact: the same values with and without XLA. int32.
    """
    return tf.cast(tf.floor(u * float(n)), tf.int32)


def random_grid_masks(seed, num_masks, grid_size, ratio):
    """MSCN random grid masks: a fixed number of random cells masked per grid.

    Each mask independently has exactly ``floor(ratio * G**2 + 0.5)`` cells set to 0
    (:func:`num_masked_cells`), chosen uniformly at random without replacement; the
    other cells are 1. [ours] MSCN (Jing et al. 2022) gives only "a ratio of the
    cells"; a fixed count per mask (rather than an independent draw per cell) makes
    the masked fraction exactly the ratio on every image.

    What is drawn: ``G**2`` portable 24-bit uniforms per mask; the masked cells are the
    ``k`` smallest, ties broken by the cell index (an int64 key ``bits * G**2 + index``
    unique within a mask), so no tie can resolve differently with and without XLA and the
    result is bit-identical under ``jit_compile``.

    Args:
      seed: int32/int64 tensor of shape [2].
      num_masks: Python int (static shape) or scalar int tensor (dynamic, graph mode).
      grid_size: Python int ``G >= 1``.
      ratio: Python float in [0, 1), the fraction of cells masked (set to 0).

    Returns:
      float32 tensor [num_masks, G, G] with values in {0, 1}.

    Raises:
      ValueError: for ``G < 1``, a ratio outside [0, 1) or a negative ``num_masks``.
    """
    _check_grid_ratio(grid_size, ratio)
    _check_num_masks(num_masks)
    cells = grid_size * grid_size
    masked = num_masked_cells(grid_size, ratio)
    u = seeds.portable_uniform(seed, [num_masks, cells], tf.float64)
    keys = (tf.cast(u * float(2 ** seeds.UNIFORM_BITS), tf.int64) * cells
            + tf.range(cells, dtype=tf.int64)[None, :])
    # Rank of each cell among the unique keys of its mask (argsort of the argsort).
    rank = tf.argsort(tf.argsort(keys, axis=1), axis=1)
    keep = tf.cast(rank >= masked, tf.float32)
    return tf.reshape(keep, [num_masks, grid_size, grid_size])


def focal_masks(seed, num_masks, height, width, size):
    """MSCN focal masks: keep one square of ``size`` pixels, mask the rest.

    The square's top-left corner is drawn uniformly over the integer positions
    ``top`` in ``[0, height - size]`` and ``left`` in ``[0, width - size]`` (inclusive),
    independently per mask. [ours] MSCN does not say how the square is placed; a uniform
    position keeps the square inside the image.

    Args:
      seed: int32/int64 tensor of shape [2].
      num_masks: Python int (static shape) or scalar int tensor (dynamic, graph mode).
      height: Python int, image height.
      width: Python int, image width.
      size: Python int, side of the kept square in pixels, ``1 <= size <= min(H, W)``.

    Returns:
      float32 tensor [num_masks, height, width, 1]: 1 inside the square, 0 outside.

    Raises:
      ValueError: for a ``size`` out of range, non-positive sides or a negative ``num_masks``.
    """
    _check_focal_size(size, height, width)
    _check_num_masks(num_masks)
    u = seeds.portable_uniform(seed, [2, num_masks], tf.float64)
    top = _uniform_ints(u[0], height - size + 1)
    left = _uniform_ints(u[1], width - size + 1)
    rows = tf.range(height, dtype=tf.int32)[None, :]
    cols = tf.range(width, dtype=tf.int32)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size)
    inside = in_rows[:, :, None] & in_cols[:, None, :]
    return tf.cast(inside, tf.float32)[..., None]


def validate_mscn_args(height, width, channels, grid_size, ratio, focal_prob, focal_size,
                       channel_prob, mask_prob=1.0):
    """Checks the arguments of :func:`mscn_masks` before tracing; raises a user-facing ValueError.

    Args:
      height, width, channels: Python ints >= 1.
      grid_size: Python int ``G >= 1``, at most ``min(height, width)``.
      ratio: Python float in [0, 1).
      focal_prob, channel_prob, mask_prob: Python floats in [0, 1].
      focal_size: Python int in ``[1, min(height, width)]``.

    Raises:
      ValueError: naming the invalid argument.
    """
    _check_positive_int("channels", channels)
    _check_grid_ratio(grid_size, ratio)
    _check_focal_size(focal_size, height, width)
    checks.grid_fits(grid_size, (height, width))
    for name, value in (("focal_prob", focal_prob), ("channel_prob", channel_prob),
                        ("mask_prob", mask_prob)):
        checks.probability(name, value)


def mscn_masks(seed, num_masks, height, width, channels, grid_size, ratio, focal_prob, focal_size,
               channel_prob, mask_prob=1.0):
    """Masks of Masked Siamese ConvNets (Jing et al. 2022; docs/algorithms.md, "MSCN").

    Per image, independently:

    * with probability ``1 - mask_prob``: no mask (all ones);
    * otherwise, with probability ``focal_prob``: a focal mask (:func:`focal_masks`, one
      kept square of ``focal_size`` pixels), the same on every channel;
    * otherwise a random grid mask (:func:`random_grid_masks`, exactly
      ``floor(ratio * G**2 + 0.5)`` masked cells [ours]) upsampled by
      :func:`upsample_masks` (pixel ``p`` takes cell ``floor(p * G / H)``); with
      probability ``channel_prob`` channel-independent (each channel its own independent
      grid), otherwise the same grid on every channel.

    What is drawn: ``seed`` is split into three independent sub-seeds: the per-image
    decisions (one portable uniform per image and decision: masked, focal,
    channel-independent; three rows of one draw, so independent values, drawn at once
    because every separate random op adds to the XLA compile time), the focal squares and
    the grids. ``num_masks * channels`` grids are drawn; an image whose grid is
    shared by its channels uses its channel-0 grid (independent of the decisions, so the
    distribution is the one above). Every mask type is computed for every image and
    selected with ``tf.where`` (static shapes, XLA-clean); all draws are integer-based
    (:func:`mixmask_tf.seeds.portable_uniform`), so the result is bit-identical with and
    without ``jit_compile``.

    Args:
      seed: int32/int64 tensor of shape [2].
      num_masks: Python int (static shape) or scalar int tensor (dynamic, graph mode).
      height, width: Python ints, the image size.
      channels: Python int ``C >= 1``.
      grid_size: Python int ``G``, ``1 <= G <= min(height, width)`` (MSCN: 32-px cells,
        ``G = 7`` at 224 px).
      ratio: Python float in [0, 1), fraction of grid cells masked (MSCN: about 0.15).
      focal_prob: Python float in [0, 1] (MSCN: about 0.4).
      focal_size: Python int, side in pixels of the kept focal square.
      channel_prob: Python float in [0, 1], probability that a grid mask is
        channel-independent (MSCN: "high").
      mask_prob: Python float in [0, 1], probability that an image is masked at all.

    Returns:
      float32 tensor [num_masks, height, width, channels] with values in {0, 1}; 1 keeps
      the pixel.

    Raises:
      ValueError: for invalid arguments (:func:`validate_mscn_args`).
    """
    validate_mscn_args(height, width, channels, grid_size, ratio, focal_prob, focal_size,
                       channel_prob, mask_prob)
    _check_num_masks(num_masks)
    decision_seed, focal_seed, grid_seed = tf.unstack(seeds.split_canonical(seed, 3))
    u = seeds.portable_uniform(decision_seed, [3, num_masks])
    masked = u[0] < float(mask_prob)
    focal = u[1] < float(focal_prob)
    per_channel = u[2] < float(channel_prob)
    squares = focal_masks(focal_seed, num_masks, height, width, focal_size)
    grids = random_grid_masks(grid_seed, num_masks * channels, grid_size, ratio)
    grids = tf.reshape(upsample_masks(grids, height, width),
                       [num_masks, channels, height, width])
    grids = tf.transpose(grids, [0, 2, 3, 1])
    grids = tf.where(per_channel[:, None, None, None], grids, grids[..., :1])
    out = tf.where(focal[:, None, None, None], squares, grids)
    return tf.where(masked[:, None, None, None], out, tf.ones_like(out))


def mscn_mask_stats(masks):
    """Statistics of a batch of MSCN masks, for logging.

    Args:
      masks: float tensor [N, H, W, C] (1 keeps, 0 masks).

    Returns:
      dict of float32 scalars: ``"mask_ratio"``, the mean fraction of masked
      pixel-channels over the batch (mean of ``1 - masks``).
    """
    masks = tf.cast(tf.convert_to_tensor(masks), tf.float32)
    return {"mask_ratio": tf.reduce_mean(1.0 - masks)}
