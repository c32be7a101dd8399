"""MixMask mixtures of a query batch (ALGORITHMS.md section 2), in pure TensorFlow.

``mixed = M * x + (1 - M) * x[perm]``: a mask value of 1 keeps the image's own
pixels, 0 takes its partner's. Every image ``i`` appears twice among the mixtures:
as the owner of mixture ``i`` (fraction ``λ_i`` = mean of its mask) and as the
filler of the ``(1 - M)`` region of mixture ``j = perm^-1(i)`` (fraction
``1 - λ_j``). The second appearance gives MixMask's switch term for free: its
embedding is ``q_mix[perm^-1(i)]``, which for the default ``perm = rev`` is
``rev(q_mix)`` (rev is its own inverse).

All functions are pure TF and run under ``tf.function(jit_compile=True)``.
Randomness is stateless: ``seed`` is an int32/int64 tensor of shape [2].
"""

from typing import NamedTuple

import tensorflow as tf

from mixmask_tf import masks as masks_lib

PERMUTATIONS = ("reverse", "random")


class Mixture(NamedTuple):
    """A mixed query batch and what is needed to weight its loss terms.

    Attributes:
      images: [N, H, W, C] tensor (dtype of the input images), the mixed batch.
      weights: [N] float32, ``λ_i``: fraction of image ``i``'s own pixels in
        ``images[i]`` (the mean of its full-resolution mask).
      switch_index: [N] int32; ``images[switch_index[i]]`` is the mixture in which
        image ``i`` filled the ``(1 - M)`` region (``inverse_permutation(perm)``).
      switch_weights: [N] float32, fraction of image ``i``'s pixels contributed to
        ``images[switch_index[i]]`` through its ``(1 - M)`` region,
        ``1 - weights[switch_index[i]]``. (When ``perm`` has a fixed point ``i``,
        e.g. the middle image of an odd batch under "reverse", mixture ``i`` is
        ``x_i`` itself and the two terms of image ``i`` together weigh 1.)
      masks: [M, H, W, 1] float32 full-resolution masks used; ``M = 1`` per-batch,
        ``M = N`` per-sample.
    """

    images: tf.Tensor
    weights: tf.Tensor
    switch_index: tf.Tensor
    switch_weights: tf.Tensor
    masks: tf.Tensor


def reverse_permutation(n):
    """The reverse permutation ``i -> n - 1 - i`` (its own inverse).

    Args:
      n: Python int or scalar int32 tensor, the batch size.

    Returns:
      int32 tensor [n].
    """
    return tf.range(n - 1, -1, -1, dtype=tf.int32)


def random_permutation(seed, n):
    """A uniformly random permutation of ``0..n-1``, stateless.

    Sorts ``n`` random 64-bit keys (ties have probability ~ n**2 / 2**65 and still
    give a permutation). The same seed gives the same permutation with and without
    XLA.

    Args:
      seed: int32/int64 tensor of shape [2].
      n: Python int or scalar int32 tensor.

    Returns:
      int32 tensor [n].
    """
    keys = tf.random.stateless_uniform([n], seed=masks_lib._canonical_seed(seed),
                                       minval=None, maxval=None,
                                       dtype=tf.int64)
    return tf.cast(tf.argsort(keys, stable=True), tf.int32)


def inverse_permutation(perm):
    """Inverse of a permutation: ``inv[perm[j]] = j``.

    Args:
      perm: int32 tensor [n], a permutation of ``0..n-1``.

    Returns:
      int32 tensor [n].
    """
    return tf.math.invert_permutation(tf.cast(perm, tf.int32))


def make_permutation(kind, seed, n):
    """Permutation by name.

    Args:
      kind: ``"reverse"`` (default of MixMask; ``seed`` unused) or ``"random"``.
      seed: int32/int64 tensor of shape [2].
      n: Python int or scalar int32 tensor.

    Returns:
      int32 tensor [n].

    Raises:
      ValueError: if ``kind`` is not in :data:`PERMUTATIONS`.
    """
    if kind == "reverse":
        return reverse_permutation(n)
    if kind == "random":
        return random_permutation(seed, n)
    raise ValueError(f"unknown permutation {kind!r}; choose one of {PERMUTATIONS}.")


def mix_images(images, masks, perm):
    """``mixed = M * images + (1 - M) * images[perm]``.

    Args:
      images: [N, H, W, C] float tensor (any float dtype; the result keeps it).
      masks: [1 or N, H, W, 1] float tensor in {0, 1} (broadcast over the batch
        when its first axis is 1, and over channels). 1 keeps the image's own pixel.
      perm: int32 tensor [N]; image ``i`` is mixed with image ``perm[i]``.

    Returns:
      [N, H, W, C] tensor of ``images.dtype``.
    """
    images = tf.convert_to_tensor(images)
    m = tf.cast(masks, images.dtype)
    return m * images + (1 - m) * tf.gather(images, perm)


def mixmask(images, seed, grid_size, mask_type="blocked", ratio=0.5, ratio_range=None,
            per_sample=False, permutation="reverse", min_block_cells=None):
    """Builds the MixMask mixture of a query batch.

    The mask and permutation sub-seeds are split independently from ``seed``.
    Masks come from :func:`mixmask_tf.masks.grid_masks` (one for the batch, or one
    per image if ``per_sample``), are upsampled to the images' ``H x W`` and λ is
    measured on them.

    Args:
      images: [N, H, W, C] float tensor with static ``H`` and ``W``; ``N`` may be
        dynamic in a plain graph (static under XLA).
      seed: int32/int64 tensor of shape [2].
      grid_size: Python int ``G``, 2 <= G <= min(H, W).
      mask_type: ``"blocked"`` or ``"discrete"``.
      ratio: Python float or scalar tensor, constant mask ratio.
      ratio_range: ``None`` or ``(a, b)``: ratio per mask from ``U(a, b)``.
      per_sample: Python bool; False: one mask shared by the batch (reference code);
        True: a mask per image [ours].
      permutation: ``"reverse"`` or ``"random"``.
      min_block_cells: blocked masks only; ``None`` -> ``min(4, (G - 1) ** 2)``.

    Returns:
      :class:`Mixture` (images [N, H, W, C]; weights, switch_weights [N] float32;
      switch_index [N] int32; masks [1 or N, H, W, 1] float32).

    Raises:
      ValueError: for invalid static arguments (see
        :func:`mixmask_tf.masks.validate_mask_args`) or an unknown permutation.
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4:
        raise ValueError(f"images must have shape [N, H, W, C], got {images.shape}.")
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        raise ValueError(f"images need a static height and width, got {images.shape}.")
    masks_lib.validate_mask_args(grid_size, ratio, ratio_range, mask_type,
                                 image_size=(height, width))
    if permutation not in PERMUTATIONS:
        raise ValueError(
            f"unknown permutation {permutation!r}; choose one of {PERMUTATIONS}.")
    n = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]
    mask_seed, perm_seed = masks_lib._split2(seed)

    grids = masks_lib.grid_masks(mask_seed, n if per_sample else 1, grid_size,
                                 mask_type=mask_type, ratio=ratio, ratio_range=ratio_range,
                                 min_block_cells=min_block_cells)
    masks = masks_lib.upsample_masks(grids, height, width)
    perm = make_permutation(permutation, perm_seed, n)
    mixed = mix_images(images, masks, perm)

    weights = masks_lib.mask_fraction(masks)
    if not per_sample:
        weights = tf.fill([n], weights[0])
    switch_index = inverse_permutation(perm)
    switch_weights = 1.0 - tf.gather(weights, switch_index)
    return Mixture(images=mixed, weights=weights, switch_index=switch_index,
                   switch_weights=switch_weights, masks=masks)
