"""Saliency-guided masking for ConvNets (paper 004; docs/algorithms.md, "saliency-guided masking"), in pure TensorFlow.

The authors' code is joycenerd/Saliency-Guided-Masking-for-ConvNets (cited below as
``localize.py`` = ``Dataset/localize.py``, ``hp.py`` / ``blur.py`` / ``mean.py`` =
``Dataset/random_mask_{hp,blur,mean}.py``, ``loader.py`` = ``moco/loader.py``, ``builder.py`` =
``moco/builder.py``, ``main_moco.py``). This module follows it where docs/algorithms.md agrees and
follows docs/algorithms.md where they differ; every difference is noted where it applies.

Pipeline (the caller's part in brackets):

1. [a frozen localisation network gives each *unfiltered, normalised* view's last feature map
   ``[N, g_h, g_w, K]``; ``main_moco.py`` 287-292, 343-344] :func:`saliency_maps` sums it over
   channels; :func:`foreground_cells` thresholds each map at ``mean - 0.6 * std``.
2. :func:`query_masks` masks ``r ~ U(0.05, 0.25)`` of the cells of the query view, split between
   foreground and background (:func:`cell_counts`, :func:`select_cells`), or a focal mask;
   :func:`negative_masks` masks only foreground cells of the key view's copy (the hard negative).
3. :func:`fill` fills the masked pixels: noise (on high-pass filtered images), a strong blur, or
   the image's per-channel mean.
4. [the momentum encoder encodes the hard negative] :func:`hard_negative_logits` gives its
   logit ``alpha * q.n / T``, appended to the query's logits as one extra negative.

**From the saliency grid to pixels.** The saliency map is a ``g_h x g_w`` grid (7 x 7 at 224 px
from ResNet-50's stride 32: the authors' 32-px cells, ``hp.py`` 78). Pixel row ``p`` of an image of
height ``H`` belongs to cell row ``floor(p * g_h / H)``, column ``q`` of width ``W`` to cell column
``floor(q * g_w / W)``: the nearest upsampling of :func:`mixmask_tf.ops.masks.upsample_masks`, for any
size (at 224 px with a 7 x 7 grid, cell ``c`` is pixels ``32c .. 32c + 31``, as the authors'
slices). ``g_h <= H`` and ``g_w <= W`` are required, so every cell covers at least one pixel;
where ``g`` does not divide the size, cells cover ``floor`` or ``ceil`` of ``H / g`` pixels.

Conventions: a mask value of 1 keeps the pixel, 0 masks it; masks are float32. Every random
function takes ``seed``, an int32/int64 tensor [2], and draws only with the XLA-portable family of
:mod:`mixmask_tf.seeds` (24-bit integer draws on canonical seeds), so the same seed gives bit-identical
masks with and without ``tf.function(jit_compile=True)``; shapes are static except the batch
size, which may be dynamic in a plain graph.
"""

import math

import tensorflow as tf

from mixmask_tf import checks, seeds
from mixmask_tf.losses import hard_negative_logits  # noqa: F401  (the op lives in losses; re-exported)
from mixmask_tf.ops import filters, mixing, mscn_masks
from mixmask_tf.ops import masks as masks_lib

__all__ = ["FILL_STRATEGIES", "QUERY_FOCAL_PX", "NEGATIVE_FOCAL_PX", "BLUR_SIGMA_PX", "BLUR_RADIUS_PX",
           "saliency_maps", "foreground_cells", "cell_counts", "select_cells", "default_focal_size",
           "query_masks", "negative_masks", "default_blur", "fill", "hard_negative_logits"]

FILL_STRATEGIES = checks.SALIENCY_FILLS

# Sizes at the authors' 224 px (main_moco.py 295-296, loader.py 17), scaled with min(H, W).
QUERY_FOCAL_PX = 200     # side of the square a query focal mask keeps
NEGATIVE_FOCAL_PX = 130  # side of the square a focal negative masks
BLUR_SIGMA_PX = 10.0     # strong-blur sigma
BLUR_RADIUS_PX = 15      # strong-blur radius (kernel 31)


# ----------------------------------------------------------------------------- argument checks


def _check_cap(fg_cap):
    if fg_cap is not None:
        checks.probability("fg_cap", fg_cap)


def _grid_input(foreground, height, width, channels):
    """(foreground as float32 {0, 1}, g_h, g_w) after checking the shapes; ValueError otherwise."""
    for name, value in (("height", height), ("width", width), ("channels", channels)):
        checks.integer(name, value)
    foreground = tf.convert_to_tensor(foreground)
    if foreground.shape.rank != 3 or foreground.shape[1] is None or foreground.shape[2] is None:
        raise ValueError(f"foreground must have shape [N, g_h, g_w] with a static grid, got {foreground.shape}.")
    grid_h, grid_w = foreground.shape[1], foreground.shape[2]
    if grid_h > height or grid_w > width:
        raise ValueError(f"the {grid_h}x{grid_w} saliency grid has more cells per side than the "
                         f"{height}x{width} image has pixels.")
    return tf.cast(foreground > 0.5, tf.float32), grid_h, grid_w


def _batch_size(x):
    return x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]


# ----------------------------------------------------------------------------- saliency


def saliency_maps(feature_maps):
    """Saliency maps: the localisation network's last feature map summed over channels.

    As ``localize.py`` 33 (``np.sum(vis, axis=3)`` of the NHWC map).

    Args:
      feature_maps: float [N, g_h, g_w, K] (ResNet-50 at 224 px: [N, 7, 7, 2048]).

    Returns:
      float32 [N, g_h, g_w].

    Raises:
      ValueError: a rank other than 4.
    """
    feature_maps = tf.convert_to_tensor(feature_maps)
    if feature_maps.shape.rank != 4:
        raise ValueError(f"feature_maps must have shape [N, g_h, g_w, K], got {feature_maps.shape}.")
    return tf.reduce_sum(tf.cast(feature_maps, tf.float32), axis=-1)


def foreground_cells(saliency, std_factor=0.6):
    """Foreground cells: value ``>= mean - std_factor * std`` of the image's own map.

    ``std`` is the *population* standard deviation (``np.std``, ddof 0: ``localize.py`` 53-54),
    ``mean`` and ``std`` over the ``g_h * g_w`` cells of one image. The authors' test
    (``localize.py`` 57-60: ``>= mean``, or ``< mean`` within ``0.6 * std`` of it) is the same
    threshold. The statistics are taken of the map minus its minimum (the same threshold,
    mathematically), so a constant map is exactly all foreground.

    Departure (docs/algorithms.md): ``localize.py`` 85-87 tests ``np.sort(mask)[i, j]`` -- the map with
    each *row* sorted -- for cell ``(i, j)``, so each row keeps its number of foreground cells but
    they land in the row's last columns. We test each cell's own value, as docs/algorithms.md states.

    Args:
      saliency: float [N, g_h, g_w].
      std_factor: Python float >= 0 (paper: 0.6).

    Returns:
      float32 [N, g_h, g_w] in {0, 1}; 1 marks a foreground cell.

    Raises:
      ValueError: a negative or non-numeric ``std_factor`` or a rank other than 3.
    """
    checks.interval("std_factor", std_factor, 0.0, math.inf, high_open=True)
    saliency = tf.cast(tf.convert_to_tensor(saliency), tf.float32)
    if saliency.shape.rank != 3:
        raise ValueError(f"saliency must have shape [N, g_h, g_w], got {saliency.shape}.")
    shifted = saliency - tf.reduce_min(saliency, axis=[1, 2], keepdims=True)
    mean = tf.reduce_mean(shifted, axis=[1, 2], keepdims=True)
    std = tf.sqrt(tf.reduce_mean(tf.square(shifted - mean), axis=[1, 2], keepdims=True))
    return tf.cast(shifted >= mean - float(std_factor) * std, tf.float32)


# ----------------------------------------------------------------------------- cell counts and draws


def cell_counts(ratio, fg_fraction, num_cells, fg_cap=0.55):
    """Masked foreground and background cells of an image.

    ``n_fg = round(min(ratio * fg_fraction, fg_cap) * num_cells)`` (round half to even, Python's
    ``round``), ``n_bg = floor(num_cells * ratio) - n_fg`` (``hp.py`` 55-60; ``blur.py`` and
    ``mean.py`` 8-9 have no cap: ``fg_cap=None``), computed in float64 like the authors' Python
    floats. Then clamped [ours]: ``0 <= n_fg <= F`` and ``0 <= n_bg <= num_cells - F``, where
    ``F = round(fg_fraction * num_cells)`` is the number of foreground cells. The authors' slices
    ``idxs[:num]`` (``hp.py`` 103) truncate at the pool size as the upper clamps do, but a negative
    ``n_bg`` slices off the pool's *last* cells. Example, 49 cells of which 46 are foreground and
    ``r = 0.1``: ``n_fg = round(0.1 * 46) = 5``, ``n_bg = floor(4.9) - 5 = -1``, and the authors'
    ``bg_idxs[:-1]`` masks 2 of the 3 background cells (all but one); we mask none:
    ``cell_counts([0.1], [46 / 49], 49) == ([5], [0])``. With every cell foreground the background
    pool is empty and the authors mask no background cell, as we do:
    ``cell_counts([0.1], [1.0], 49) == ([5], [0])``.

    The cap: docs/algorithms.md's ``min(r * FG, 0.55)``; ``hp.py`` 55 caps only from 0.56 on (values in
    [0.55, 0.56) pass unchanged), which gives the same counts at 49 cells (``round(x * 49) = 27``
    on all of [0.55, 0.56)).

    Args:
      ratio: float [N], the fraction of all cells to mask (``r``).
      fg_fraction: float [N], the share of the map's cells that are foreground (``F / num_cells``).
      num_cells: Python int ``g_h * g_w`` (49 at 224 px).
      fg_cap: Python float in [0, 1], or None for no cap.

    Returns:
      (n_fg int32 [N], n_bg int32 [N]).

    Raises:
      ValueError: a ``num_cells`` below 1 or a cap outside [0, 1].
    """
    checks.integer("num_cells", num_cells)
    _check_cap(fg_cap)
    ratio = tf.cast(ratio, tf.float64)
    fg_fraction = tf.cast(fg_fraction, tf.float64)
    cells = float(num_cells)
    share = ratio * fg_fraction
    if fg_cap is not None:
        share = tf.minimum(share, float(fg_cap))
    n_fg = tf.cast(tf.round(share * cells), tf.int32)
    n_bg = tf.cast(tf.floor(cells * ratio), tf.int32) - n_fg
    num_fg = tf.cast(tf.round(fg_fraction * cells), tf.int32)
    n_fg = tf.clip_by_value(n_fg, 0, num_fg)
    n_bg = tf.clip_by_value(n_bg, 0, num_cells - num_fg)
    return n_fg, n_bg


def select_cells(seed, pool, counts):
    """Draws ``counts[i]`` cells uniformly without replacement among the pool cells of image ``i``.

    What is drawn: ``g_h * g_w`` portable 24-bit uniforms per image
    (:func:`mixmask_tf.seeds.portable_uniform`); a cell's int64 key is
    ``bits * cells + index``, plus ``2**24 * cells`` outside the pool, so keys are unique and
    every pool cell ranks before every other cell; the ``min(counts[i], pool size)`` lowest ranks
    are chosen (the tie-free ranking of :func:`mixmask_tf.ops.mscn_masks.random_grid_masks`). Bit-identical
    under XLA. The authors' ``torch.randperm`` of the pool then ``[:num]`` (``hp.py`` 100-106) is
    the same distribution.

    Args:
      seed: int32/int64 tensor [2].
      pool: float [N, g_h, g_w] in {0, 1} (static grid); 1 marks a cell that may be chosen.
      counts: int [N], cells to choose (negative counts choose none).

    Returns:
      float32 [N, g_h, g_w] in {0, 1}: 1 at exactly ``min(max(counts[i], 0), pool[i].sum())``
      chosen cells, all inside the pool.
    """
    pool = tf.convert_to_tensor(pool)
    if pool.shape.rank != 3 or pool.shape[1] is None or pool.shape[2] is None:
        raise ValueError(f"pool must have shape [N, g_h, g_w] with a static grid, got {pool.shape}.")
    grid_h, grid_w = pool.shape[1], pool.shape[2]
    cells = grid_h * grid_w
    n = _batch_size(pool)
    in_pool = tf.reshape(tf.cast(pool, tf.float32) > 0.5, [-1, cells])
    u = seeds.portable_uniform(seed, [n, cells], tf.float64)
    keys = (tf.cast(u * float(2 ** seeds.UNIFORM_BITS), tf.int64) * cells
            + tf.range(cells, dtype=tf.int64)[None, :]
            + tf.where(in_pool, tf.constant(0, tf.int64), tf.constant(2 ** seeds.UNIFORM_BITS * cells, tf.int64)))
    rank = tf.argsort(tf.argsort(keys, axis=1), axis=1)
    chosen = in_pool & (rank < tf.cast(counts, tf.int32)[:, None])
    return tf.reshape(tf.cast(chosen, tf.float32), [-1, grid_h, grid_w])


def _grid_keep_masks(seed, pools, counts, channels, per_channel, height, width):
    """Keep-masks [N, H, W, C] that mask ``counts[k]`` cells of each disjoint pool ``pools[k]``.

    ``N * C`` grids are drawn (each channel of each image its own draw in every pool); an image
    whose grid is shared by its channels (``per_channel`` False) uses its channel-0 grid.
    """
    num_pools = len(pools)
    grid_h, grid_w = pools[0].shape[1], pools[0].shape[2]
    pool = tf.tile(tf.stack(pools)[:, :, None], [1, 1, channels, 1, 1])  # [P, N, C, g_h, g_w]
    count = tf.tile(tf.stack(counts)[:, :, None], [1, 1, channels])  # [P, N, C]
    chosen = select_cells(seed, tf.reshape(pool, [-1, grid_h, grid_w]), tf.reshape(count, [-1]))
    masked = tf.reduce_sum(tf.reshape(chosen, [num_pools, -1, channels, grid_h, grid_w]), axis=0)
    keep = 1.0 - masked  # [N, C, g_h, g_w]
    keep = tf.where(per_channel[:, None, None, None], keep, keep[:, :1])
    up = masks_lib.upsample_masks(tf.reshape(keep, [-1, grid_h, grid_w]), height, width)
    return tf.transpose(tf.reshape(up, [-1, channels, height, width]), [0, 2, 3, 1])


def default_focal_size(height, width, pixels_at_224):
    """``max(1, round(pixels_at_224 / 224 * min(H, W)))``: a focal side scaled with the image [ours].

    200 (query) and 130 (negative) at 224 px, as the authors (``main_moco.py`` 295-296).
    """
    return max(1, int(round(pixels_at_224 / filters.PAPER_SIZE * min(height, width))))


def _saliency_masks(seed, foreground, height, width, channels, ratio_range, fg_cap, focal_prob,
                    spatial_prob, focal_size, negative):
    """The draw shared by :func:`query_masks` and :func:`negative_masks`: (masks, fg_fraction)."""
    checks.fraction_pair("ratio_range", ratio_range)
    _check_cap(fg_cap)
    checks.probability("focal_prob", focal_prob)
    checks.probability("spatial_prob", spatial_prob)
    foreground, grid_h, grid_w = _grid_input(foreground, height, width, channels)
    if focal_size is None:
        focal_size = default_focal_size(height, width, NEGATIVE_FOCAL_PX if negative else QUERY_FOCAL_PX)
    n = _batch_size(foreground)
    decision_seed, focal_seed, cell_seed = tf.unstack(seeds.split_canonical(seed, 3))
    # One draw, three independent rows: the ratio, the focal and the spatial decision.
    u = seeds.portable_uniform(decision_seed, [3, n], tf.float64)
    low, high = float(ratio_range[0]), float(ratio_range[1])
    ratio = low + (high - low) * u[0]
    fg_fraction = tf.reduce_mean(tf.cast(foreground, tf.float64), axis=[1, 2])
    n_fg, n_bg = cell_counts(ratio, fg_fraction, grid_h * grid_w, fg_cap)
    pools, counts = [foreground], [n_fg]
    if not negative:
        pools, counts = pools + [1.0 - foreground], counts + [n_bg]
    out = _grid_keep_masks(cell_seed, pools, counts, channels, u[2] >= float(spatial_prob), height, width)
    if float(focal_prob) > 0.0:
        square = mscn_masks.focal_masks(focal_seed, n, height, width, focal_size)
        if negative:
            square = 1.0 - square
        out = tf.where((u[1] < float(focal_prob))[:, None, None, None], square, out)
    return out, fg_fraction


def query_masks(seed, foreground, height, width, channels, ratio_range=(0.05, 0.25), fg_cap=0.55,
                focal_prob=0.2, spatial_prob=0.3, focal_size=None):
    """Saliency-guided masks of the query view (docs/algorithms.md, "saliency-guided masking"; ``hp.py`` 109-138).

    Per image, independently:

    * with probability ``focal_prob``: a focal mask, :func:`mixmask_tf.ops.mscn_masks.focal_masks` (keep
      one uniformly placed square of ``focal_size`` pixels, mask the rest), the same on every
      channel;
    * otherwise ``r ~ U(ratio_range)``; ``n_fg`` foreground and ``n_bg`` background cells
      (:func:`cell_counts` of ``r`` and the image's foreground share) are masked, each set drawn
      uniformly without replacement within its pool (:func:`select_cells`), and the grid is
      upsampled to ``H x W`` (module docstring). With probability ``spatial_prob`` the same cells
      on every channel, otherwise channel-independent: each channel its own draw of ``n_fg`` and
      ``n_bg`` cells (``hp.py`` 79-96).

    The authors use these probabilities (focal 0.2 with a 200-px square, spatial 0.3) only with
    the high-pass strategy; their blur and mean strategies mask spatial grids only, uncapped
    (``blur.py``, ``mean.py``): ``focal_prob=0, spatial_prob=1, fg_cap=None``. Their ratio is drawn
    for grid masks only; drawing it for every image here changes nothing (independent sub-seeds).

    Departures: a pool of exactly one cell is masked when counted (the authors' ``.squeeze()``
    gives a 0-d index there and the cell is skipped: ``hp.py`` 63, 69, 125-126); any grid size
    works (``localize.py`` 65-67, 92 and the masking code hard-code 7 x 7 = 49 cells).

    What is drawn: ``seed`` splits into three sub-seeds: one portable uniform per image for each
    of the ratio, the focal and the spatial decision; the focal squares; the cells
    (``2 * N * C`` grids, :func:`select_cells`). Bit-identical under XLA.

    Args:
      seed: int32/int64 tensor [2].
      foreground: float [N, g_h, g_w] in {0, 1} (:func:`foreground_cells`), static grid,
        ``g_h <= height``, ``g_w <= width``.
      height, width, channels: Python ints >= 1, the image shape.
      ratio_range: (a, b), ``0 <= a <= b <= 1``: the fraction of all cells masked, ``U(a, b)``.
      fg_cap: Python float in [0, 1] or None (no cap), cap of the foreground share.
      focal_prob: Python float in [0, 1].
      spatial_prob: Python float in [0, 1], probability that a grid mask is the same on all
        channels.
      focal_size: Python int in ``[1, min(H, W)]``, the kept square's side; None:
        ``round(200 / 224 * min(H, W))`` (:func:`default_focal_size`).

    Returns:
      (masks float32 [N, H, W, C] in {0, 1}, 1 keeps; stats: dict of float32 scalars,
      ``"mask_ratio"`` the mean masked fraction of the pixel-channels, ``"fg_ratio"`` the mean
      foreground share of the maps).

    Raises:
      ValueError: invalid Python arguments or shapes.
    """
    out, fg_fraction = _saliency_masks(seed, foreground, height, width, channels, ratio_range, fg_cap,
                                       focal_prob, spatial_prob, focal_size, negative=False)
    return out, {"mask_ratio": tf.reduce_mean(1.0 - out),
                 "fg_ratio": tf.cast(tf.reduce_mean(fg_fraction), tf.float32)}


def negative_masks(seed, foreground, height, width, channels, ratio_range=(0.4, 0.7), focal_prob=0.0,
                   focal_size=None, spatial_prob=1.0, fg_cap=None):
    """Masks of the hard negative: only foreground cells masked (docs/algorithms.md, "saliency-guided masking").

    Per image: ``r ~ U(ratio_range)`` and ``n = round(min(r * fg_fraction, fg_cap) * g_h * g_w)``
    foreground cells masked, i.e. ``round(r * F)`` of the ``F`` foreground cells without a cap
    (the ``n_fg`` of :func:`cell_counts`; no background cell is masked: ``mode="neg"`` in
    ``hp.py`` 69 and ``blur.py`` / ``mean.py`` 17); with probability ``spatial_prob`` the same
    cells on every channel, otherwise each channel its own draw; with probability ``focal_prob``
    a focal negative instead: a uniformly placed square of ``focal_size`` pixels is *masked*
    (replaced by the fill), the rest kept -- the opposite of a query focal mask (``hp.py`` 37-38).

    Defaults: spatial, no focal negatives, no cap (the authors' blur and mean strategies). Their
    high-pass strategy runs the query's ``Masking`` class in ``mode="neg"`` (``main_moco.py`` 296):
    ``focal_prob=0.2, spatial_prob=0.3, fg_cap=0.55`` and a 130-px square at 224, noise std 0.14.

    What is drawn: as :func:`query_masks` (one pool instead of two).

    Args:
      seed: int32/int64 tensor [2].
      foreground: float [N, g_h, g_w] in {0, 1}, static grid no finer than the image.
      height, width, channels: Python ints >= 1.
      ratio_range: (a, b), ``0 <= a <= b <= 1``: the fraction of the *foreground* cells masked.
      focal_prob: Python float in [0, 1].
      focal_size: Python int in ``[1, min(H, W)]``, the masked square's side; None:
        ``round(130 / 224 * min(H, W))``.
      spatial_prob: Python float in [0, 1].
      fg_cap: None (no cap) or a Python float in [0, 1], cap of ``r * fg_fraction``.

    Returns:
      (masks float32 [N, H, W, C] in {0, 1}, 1 keeps; stats: ``{"negative_mask_ratio"}``, the mean
      masked fraction, float32 scalar).

    Raises:
      ValueError: invalid Python arguments or shapes.
    """
    out, _ = _saliency_masks(seed, foreground, height, width, channels, ratio_range, fg_cap,
                             focal_prob, spatial_prob, focal_size, negative=True)
    return out, {"negative_mask_ratio": tf.reduce_mean(1.0 - out)}


# ----------------------------------------------------------------------------- fills and logits


def default_blur(height, width):
    """(sigma, radius) of the strong blur for ``H x W`` images [ours: the scaling rule].

    The authors' kernel 31 (radius 15), sigma 10 at 224 px (``loader.py`` 17), scaled by
    ``s = min(H, W) / 224``: ``sigma = 10 s``, ``radius = round(15 s)`` clamped to
    ``[1, min(H, W) - 1]`` (reflect padding needs a radius below the size).
    """
    scale = min(height, width) / filters.PAPER_SIZE
    return BLUR_SIGMA_PX * scale, min(max(1, int(round(BLUR_RADIUS_PX * scale))), max(1, min(height, width) - 1))


def fill(images, masks, strategy, seed=None, noise_std=0.18, blur_sigma=None, blur_radius=None):
    """Fills the masked pixels (mask 0) by one of the paper's three strategies.

    * ``"highpass"``: Gaussian noise of std ``noise_std``, independent per pixel and channel
      (:func:`mixmask_tf.ops.mixing.erase` with ``fill="noise"``). The images must already be
      high-pass filtered by the caller (:mod:`mixmask_tf.ops.filters`; ``loader.py`` 27-34); the
      authors use std 0.18 for the query and 0.14 for the negative (``main_moco.py`` 295-296).
      Departure: the authors draw one noise patch per cell shape and batch and paste it into
      every masked cell (``hp.py`` 122, 140-148); we draw fresh noise per pixel.
    * ``"blur"``: masked pixels take ``filters.gaussian_blur(images, sigma, radius)`` (reflect
      padding) of the same, unmasked images (``blur.py`` 27 with ``loader.py`` 16-19). Defaults:
      :func:`default_blur`; with only ``blur_sigma`` given, the radius is
      ``round(1.5 * sigma)`` (the same 15 / 10 ratio), clamped to ``[1, min(H, W) - 1]``. The
      authors blur before normalising; the same result, since a blur whose weights sum to 1
      with reflect padding commutes with per-channel normalisation.
    * ``"mean"``: masked pixels take the image's own per-channel mean over all its pixels, masked
      or not (``mean.py`` 53: ``torch.mean(imgs, dim=[2, 3])`` before masking).

    Args:
      images: float [N, H, W, C], static H, W, C.
      masks: float {0, 1} [1 or N, H, W, 1 or C]; 1 keeps the pixel.
      strategy: one of :data:`FILL_STRATEGIES`.
      seed: int32/int64 tensor [2], required for ``"highpass"``, unused otherwise.
      noise_std: Python float > 0 (``"highpass"`` only).
      blur_sigma: Python float > 0 or None (``"blur"`` only).
      blur_radius: Python int >= 1, below ``min(H, W)``, or None (``"blur"`` only).

    Returns:
      [N, H, W, C] of ``images.dtype``.

    Raises:
      ValueError: an unknown strategy, a missing seed for ``"highpass"``, bad noise or blur
        parameters.
    """
    if strategy not in FILL_STRATEGIES:
        raise ValueError(f"strategy must be one of {FILL_STRATEGIES}, got {strategy!r}.")
    if strategy == "highpass":
        return mixing.erase(images, masks, "noise", seed, noise_std)
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or not images.shape[1:].is_fully_defined():
        raise ValueError(f"images must have shape [N, H, W, C] with static H, W, C, got {images.shape}.")
    x = tf.cast(images, tf.float32)
    if strategy == "blur":
        height, width = images.shape[1], images.shape[2]
        sigma, radius = default_blur(height, width)
        if blur_sigma is not None:
            sigma = checks.positive("blur_sigma", blur_sigma)
            radius = min(max(1, int(round(1.5 * float(sigma)))), max(1, min(height, width) - 1))
        if blur_radius is not None:
            radius = blur_radius
        filler = filters.gaussian_blur(x, sigma, radius)
    else:
        filler = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    m = tf.cast(masks, tf.float32)
    return tf.cast(m * x + (1.0 - m) * filler, images.dtype)
