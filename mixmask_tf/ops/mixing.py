"""MixMask mixtures of a query batch (docs/algorithms.md, "MixMask"), in pure TensorFlow.

``mixed = M * x + (1 - M) * x[perm]``: a mask value of 1 keeps the image's own
pixels, 0 takes its partner's. Every image ``i`` appears twice among the mixtures:
as the owner of mixture ``i`` (fraction ``λ_i`` = mean of its mask) and as the
filler of the ``(1 - M)`` region of mixture ``j = perm^-1(i)`` (fraction
``1 - λ_j``). The second appearance gives MixMask's switch term for free: its
embedding is ``q_mix[perm^-1(i)]``, which for the default ``perm = rev`` is
``rev(q_mix)`` (rev is its own inverse).

Also here: Un-Mix (:func:`unmix`, a Mixup or CutMix of the batch with one λ per
call, Shen et al. 2022) with the same :class:`Mixture` output, and the erase-based
baseline's fill (:func:`erase`, ``M * x + (1 - M) * fill``).

All functions are pure TF and run under ``tf.function(jit_compile=True)``.
Randomness is stateless: ``seed`` is an int32/int64 tensor of shape [2]. As in
:mod:`mixmask_tf.ops.masks`, every random number is built from stateless *integer*
draws on canonical seeds (uniforms from 24 random bits, normals by Box–Muller on
them, Beta by Marsaglia–Tsang on those), so the same seed gives the same draws with
and without XLA, up to last-bit differences of float math (``sqrt``/``log``/``cos``)
that XLA may round differently.
"""

import math
from typing import NamedTuple

import tensorflow as tf

from mixmask_tf import checks
from mixmask_tf.ops import masks as masks_lib
from mixmask_tf import seeds

PERMUTATIONS = checks.PERMUTATIONS
FILLS = checks.ERASE_FILLS

# Marsaglia–Tsang candidates drawn at once for one Gamma sample (see _sample_gamma).
_GAMMA_CANDIDATES = 16


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
    keys = tf.random.stateless_uniform([n], seed=seeds.canonical(seed),
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


def _image_batch(images):
    """(images as a tensor, static H, static W); ValueError unless [N, H, W, C] with static H, W."""
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4:
        raise ValueError(f"images must have shape [N, H, W, C], got {images.shape}.")
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        raise ValueError(f"images need a static height and width, got {images.shape}.")
    return images, height, width


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
    Masks come from :func:`mixmask_tf.ops.masks.grid_masks` (one for the batch, or one
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
        :func:`mixmask_tf.ops.masks.validate_mask_args`) or an unknown permutation.
    """
    images, height, width = _image_batch(images)
    masks_lib.validate_mask_args(grid_size, ratio, ratio_range, mask_type,
                                 image_size=(height, width))
    if permutation not in PERMUTATIONS:
        raise ValueError(
            f"unknown permutation {permutation!r}; choose one of {PERMUTATIONS}.")
    n = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]
    mask_seed, perm_seed = seeds.split_pair(seed)

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


# ---------------------------------------------------------------------------
# Un-Mix
# ---------------------------------------------------------------------------


def validate_unmix_args(global_prob=0.5, beta=1.0, permutation="reverse"):
    """Checks Un-Mix arguments before tracing; raises a user-facing ValueError.

    Args:
      global_prob: Python number in [0, 1], probability of the global (mixup) mode.
      beta: Python number > 0, λ ~ Beta(beta, beta).
      permutation: one of :data:`PERMUTATIONS`.

    Raises:
      ValueError: naming the invalid argument.
    """
    checks.unmix_args(global_prob, beta, permutation)


def _standard_normal(seed, shape):
    """Stateless N(0, 1) of ``shape`` (float32) by Box–Muller on 24-bit uniforms.

    Built on :func:`mixmask_tf.seeds.portable_uniform` (integer draws) so it gives the same
    values with and without XLA (up to last-bit rounding of ``log``/``cos``).
    ``tf.random.stateless_normal`` is not used: its float draw differs under XLA
    on CPU. The tails are cut at ``sqrt(2 * 24 * ln 2) ≈ 5.8`` standard deviations.

    Args:
      seed: int32/int64 tensor [2].
      shape: list/tuple of ints or scalar int tensors.

    Returns:
      float32 tensor of ``shape``.
    """
    u = seeds.portable_uniform(seed, [2] + list(shape))
    radius = tf.sqrt(-2.0 * tf.math.log(1.0 - u[0]))  # 1 - u in (0, 1]
    return radius * tf.cos((2.0 * math.pi) * u[1])


def _log_gamma_sample(seed, alpha):
    """log of one Gamma(alpha, 1) draw, scalar float32 (Marsaglia & Tsang 2000).

    ``alpha`` is a Python float. For ``alpha < 1`` the boost
    ``Gamma(alpha) = Gamma(alpha + 1) * U ** (1 / alpha)`` is used (in log space, so
    tiny ``alpha`` cannot underflow). The rejection loop is replaced by
    :data:`_GAMMA_CANDIDATES` candidates drawn at once (static shapes, XLA-friendly);
    the first accepted one is returned. The acceptance rate is above 0.95 for the
    boosted shape ``>= 1``, so all candidates are rejected with probability below
    ``0.05 ** 16 ≈ 1.5e-21``; then the mode ``d`` is returned.
    """
    shape = alpha + 1.0 if alpha < 1.0 else alpha
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    k = _GAMMA_CANDIDATES
    normal_seed, uniform_seed = seeds.split_pair(seed)
    z = _standard_normal(normal_seed, [k])
    u = 1.0 - seeds.portable_uniform(uniform_seed, [k + 1])  # (0, 1]
    v = (1.0 + c * z) ** 3
    log_v = tf.math.log(tf.maximum(v, 1e-30))
    accept = (v > 0.0) & (tf.math.log(u[:k]) < 0.5 * z * z + d - d * v + d * log_v)
    first = tf.argmax(tf.cast(accept, tf.int32), output_type=tf.int32)
    log_g = tf.where(tf.reduce_any(accept), math.log(d) + tf.gather(log_v, first),
                     tf.constant(math.log(d), tf.float32))
    if alpha < 1.0:
        log_g = log_g + tf.math.log(u[k]) / alpha
    return log_g


def sample_beta(seed, beta):
    """One stateless draw λ ~ Beta(beta, beta), scalar float32 in [0, 1].

    ``beta == 1`` (Un-Mix's value) is the uniform distribution and is drawn directly
    as a 24-bit uniform ``k * 2**-24``. Otherwise ``λ = G1 / (G1 + G2)`` with two
    independent Gamma(beta, 1) draws (:func:`_log_gamma_sample`), computed as
    ``sigmoid(log G1 - log G2)``.

    Why not ``tf.random.stateless_gamma``: in TF 2.21 its op (``StatelessRandomGammaV3``)
    has no XLA kernel, so it does not compile under ``jit_compile=True`` at all
    (checked on CPU). This sampler uses only the project's integer stateless draws
    and elementary float math: λ = 1 draws are bit-identical with and without XLA;
    other β may differ in the last bit (``log``/``exp`` rounding under XLA).

    Args:
      seed: int32/int64 tensor [2].
      beta: Python float > 0.

    Returns:
      Scalar float32 tensor.
    """
    seed = tf.convert_to_tensor(seed)
    beta = float(beta)
    if beta == 1.0:
        return seeds.portable_uniform(seed, [])
    seed_a, seed_b = seeds.split_pair(seed)
    return tf.sigmoid(_log_gamma_sample(seed_a, beta) - _log_gamma_sample(seed_b, beta))


def unmix_box(center, cut, size):
    """Rows (or columns) ``[start, stop)`` of an Un-Mix box side, clipped to the image.

    A side of ``cut`` pixels around ``center``: ``start = center - cut // 2``,
    ``stop = start + cut``, both clipped to ``[0, size]``. (The CutMix/Un-Mix
    reference code uses ``center ± cut // 2``, i.e. a side of ``2 * (cut // 2)``
    pixels, one fewer when ``cut`` is odd; we keep the side of ``cut`` pixels that
    docs/algorithms.md ("Un-Mix") states. λ is measured on the clipped box either way.)

    Args:
      center: int32 tensor, the centre pixel in ``[0, size)``.
      cut: int32 tensor, the unclipped side in pixels.
      size: Python int, the image side.

    Returns:
      (start, stop) int32 tensors, ``0 <= start <= stop <= size``.
    """
    start = center - cut // 2
    stop = start + cut
    return tf.clip_by_value(start, 0, size), tf.clip_by_value(stop, 0, size)


def unmix(images, seed, global_prob=0.5, beta=1.0, permutation="reverse"):
    """Un-Mix mixture of a query batch (Shen et al. 2022; docs/algorithms.md, "Un-Mix").

    One λ ~ Beta(beta, beta) and one r ~ U(0, 1) per call (shared by the batch):

    * r < ``global_prob`` (global / mixup mode):
      ``mixed = λ * x + (1 - λ) * x[perm]``.
    * otherwise (region / CutMix mode): a box of ``floor(H * sqrt(1 - λ))`` rows and
      ``floor(W * sqrt(1 - λ))`` columns, centre ``(cy, cx)`` uniform over the
      pixels, clipped to the image (:func:`unmix_box`); ``x[perm]`` is pasted inside
      it and λ becomes ``1 - clipped box area / (H * W)``.

    Both modes are computed as ``mix_images(x, M, perm)`` with ``M`` the constant map
    λ (mixup) or the 0/1 map that is 0 inside the box (region), selected with
    ``tf.where`` (graph and XLA compatible, no ``tf.cond``). The λ, mode/centre and
    permutation sub-seeds are split independently from ``seed``.

    Args:
      images: [N, H, W, C] float tensor with static ``H`` and ``W``; ``N`` may be
        dynamic in a plain graph (static under XLA).
      seed: int32/int64 tensor of shape [2].
      global_prob: Python float in [0, 1], probability of the mixup mode (Un-Mix
        CIFAR code: 0.5; ImageNet code: 0.0).
      beta: Python float > 0.
      permutation: ``"reverse"`` (Un-Mix) or ``"random"``.

    Returns:
      :class:`Mixture`: images [N, H, W, C] (input dtype); weights [N] float32, λ
      (the fraction of each image's own pixels, the same for every image);
      switch_index [N] int32 ``inverse_permutation(perm)``; switch_weights [N]
      float32 ``1 - weights[switch_index]``; masks [1, H, W, 1] float32, the map of
      the own-image share (constant λ in mixup mode, 1 outside / 0 inside the box in
      region mode).

    Raises:
      ValueError: for invalid static arguments (:func:`validate_unmix_args`) or
        images without a static height and width.
    """
    images, height, width = _image_batch(images)
    validate_unmix_args(global_prob, beta, permutation)
    n = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]
    sub = seeds.split_canonical(seed, 3)
    lam_seed, mode_seed, perm_seed = sub[0], sub[1], sub[2]

    lam = sample_beta(lam_seed, beta)
    u = seeds.portable_uniform(mode_seed, [3])  # r, centre row, centre column
    is_global = u[0] < float(global_prob)
    cy = tf.minimum(tf.cast(tf.floor(u[1] * float(height)), tf.int32), height - 1)
    cx = tf.minimum(tf.cast(tf.floor(u[2] * float(width)), tf.int32), width - 1)
    side = tf.sqrt(1.0 - lam)
    cut_h = tf.cast(tf.floor(float(height) * side), tf.int32)
    cut_w = tf.cast(tf.floor(float(width) * side), tf.int32)
    y1, y2 = unmix_box(cy, cut_h, height)
    x1, x2 = unmix_box(cx, cut_w, width)
    rows = tf.range(height, dtype=tf.int32)[:, None]
    cols = tf.range(width, dtype=tf.int32)[None, :]
    inside = (rows >= y1) & (rows < y2) & (cols >= x1) & (cols < x2)
    box_mask = 1.0 - tf.cast(inside, tf.float32)
    area = (y2 - y1) * (x2 - x1)
    region_lam = tf.cast(height * width - area, tf.float32) / float(height * width)

    masks = tf.where(is_global, tf.fill([height, width], lam), box_mask)[None, :, :, None]
    lam = tf.where(is_global, lam, region_lam)
    perm = make_permutation(permutation, perm_seed, n)
    mixed = mix_images(images, masks, perm)
    weights = tf.fill([n], lam)
    switch_index = inverse_permutation(perm)
    switch_weights = 1.0 - tf.gather(weights, switch_index)
    return Mixture(images=mixed, weights=weights, switch_index=switch_index,
                   switch_weights=switch_weights, masks=masks)


# ---------------------------------------------------------------------------
# Erase
# ---------------------------------------------------------------------------


def erase(images, masks, fill="zero", seed=None, noise_std=1.0):
    """Erase-based masking: ``M * x + (1 - M) * fill`` (docs/algorithms.md, "erase" and "MSCN").

    Args:
      images: [N, H, W, C] float tensor (any float dtype; the result keeps it).
      masks: float tensor in {0, 1}; 1 keeps the pixel, 0 erases it. Shape
        [1 or N, H, W, 1 or C]: broadcast over the batch when its first axis is 1, and
        over channels when its last axis is 1; [N, H, W, C] masks each channel on its
        own (MSCN's channel-independent masks, :func:`mixmask_tf.ops.mscn_masks.mscn_masks`).
      fill: ``"zero"`` (0, the mean of normalised data) or ``"noise"`` (Gaussian noise
        of standard deviation ``noise_std``, independent per pixel and channel;
        Box–Muller on 24-bit uniforms, see :func:`_standard_normal`).
      seed: int32/int64 tensor [2]; required for ``fill="noise"``, unused for
        ``"zero"``.
      noise_std: Python float > 0 (or a scalar float tensor, not checked), standard
        deviation of the noise fill; unused for ``"zero"``. The default 1.0 gives
        standard normal noise (bit-identical to the results before this argument).

    Returns:
      [N, H, W, C] tensor of ``images.dtype``.

    Raises:
      ValueError: for an unknown ``fill``, a missing seed with ``"noise"``, a
        ``noise_std`` that is not a finite number > 0, or masks whose static last axis
        is neither 1 nor C.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}.")
    if not checks.is_tensor(noise_std):
        checks.positive("noise_std", noise_std)
    images = tf.convert_to_tensor(images)
    m = tf.cast(masks, images.dtype)
    mask_channels, channels = m.shape[-1], images.shape[-1]
    if mask_channels is not None and channels is not None and mask_channels not in (1, channels):
        raise ValueError(
            f"masks must have 1 or {channels} channels (the images' C), got shape {m.shape}.")
    if fill == "zero":
        return m * images
    if seed is None:
        raise ValueError("erase(fill='noise') needs a seed (int tensor of shape [2]).")
    shape = (images.shape.as_list() if images.shape.is_fully_defined()
             else tf.unstack(tf.shape(images), num=4))
    noise = _standard_normal(seed, shape) * tf.cast(noise_std, tf.float32)
    noise = tf.cast(noise, images.dtype)
    return m * images + (1 - m) * noise
