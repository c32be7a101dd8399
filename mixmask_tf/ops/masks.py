"""Grid masks for MixMask and erase: blocked (BEiT block-wise) and discrete, in pure TensorFlow
(the masks of Masked Siamese ConvNets are in :mod:`mixmask_tf.ops.mscn_masks`).

A mask is a ``G x G`` grid of 0/1 cells (``G`` = grid size), upsampled by nearest
neighbour to the image size (pixel ``p`` of ``H`` takes cell ``floor(p * G / H)``, the
rule of the reference code's ``torch.nn.functional.interpolate(mode="nearest")``; see
:func:`upsample_masks`). A cell value of 1 keeps the image's own pixels in the
mixture, 0 takes the partner image's pixels (see :mod:`mixmask_tf.ops.mixing`).

**Direction of the ratio** (as in the reference code, where it is ``--mask_lam``): the
two mask types read it in opposite directions. A *blocked* mask sets
``floor(ratio * G**2)`` cells to 1 (at most; see :func:`blocked_grid_mask`), so the
image keeps ``λ ≈ ratio`` of its own pixels; a *discrete* mask sets each cell to 1 with
probability ``1 - ratio``, so ``λ ≈ 1 - ratio``. At the default 0.5 both give
``λ ≈ 0.5``, and ratio ``r`` and ``1 - r`` are equivalent under the two-term
(λ, 1 − λ) loss.

Everything here is a pure function built from TensorFlow ops only and runs inside
``tf.function(jit_compile=True)`` (XLA): shapes are static (``grid_size``, ``height``,
``width`` are Python ints), the variable-length block generator is a bounded
``tf.while_loop``, and all randomness is stateless and explicit: every random function
takes ``seed``, an int32/int64 tensor of shape ``[2]``, and derives its sub-seeds with
``tf.random.experimental.stateless_split`` (independent sub-seeds for the ratio and
the mask draws) and, inside loops, one seed per iteration from a hashed base seed
(:func:`mixmask_tf.seeds.stream_seed`).

Same seed, same masks with and without XLA: on CPU, TF's stateless kernels and
their XLA lowerings give the same bits only for *integer* draws and only for seed
components in [0, 2**31). So uniform floats are built from stateless integer draws
(24 random bits scaled by 2**-24; the float32 draw differs under XLA), and every seed
is mapped into [0, 2**31) before use (:func:`mixmask_tf.seeds.canonical`). Results then agree
bit for bit with and without ``jit_compile`` except where XLA rounds float math
differently (last-bit differences in ``sqrt``/``exp`` or a fused multiply-add could
move a value across a rounding boundary: possible in principle, not observed in the
tests).

λ (the fraction of an image's own pixels in its mixture) is *measured* on the
full-resolution mask with :func:`mask_fraction`, never assumed from the ratio.
"""

import math

import tensorflow as tf

from mixmask_tf import checks, seeds

MASK_TYPES = checks.MASK_TYPES

# BEiT block-wise masking constants (beit/masking_generator.py), used by the
# MixMask reference code unchanged.
_BEIT_MIN_BLOCK_CELLS = 4
_BEIT_MIN_ASPECT = 0.3
_BEIT_MAX_ATTEMPTS = 10

# Discrete masks: how many times an all-0 / all-1 grid is redrawn before the
# fallback (flip one random cell) makes it non-degenerate.
_MAX_DISCRETE_REDRAWS = 100



_is_tensor = checks.is_tensor
_is_real = checks.is_real
_is_int = checks.is_int


def validate_mask_args(grid_size, ratio=0.5, ratio_range=None, mask_type="blocked",
                       image_size=None):
    """Checks mask arguments before tracing and raises a user-facing error.

    Pure Python; meant for command-line tools and constructors. Tensor-valued
    ``ratio`` / ``ratio_range`` are not inspected (their values are unknown until
    run time); every Python or NumPy number is.

    Args:
      grid_size: Python int, number of cells per side ``G``; must be ``>= 2``.
      ratio: Python float, the mask ratio; must lie in the open interval (0, 1).
      ratio_range: ``None`` or a pair ``(a, b)`` with ``0 <= a < b <= 1``; when given,
        each mask draws its ratio from ``U(a, b)``.
      mask_type: one of :data:`MASK_TYPES`.
      image_size: ``None`` or ``(height, width)`` of the images; when given the grid
        may not have more cells per side than the image has pixels.

    Returns:
      None.

    Raises:
      ValueError: if any argument is invalid, with a message naming it.
    """
    checks.mask_args(grid_size, ratio, ratio_range, mask_type, image_size)


def default_min_block_cells(grid_size):
    """Minimum block size (in cells) of the blocked generator for a grid size. [ours]

    BEiT's generator places blocks of at least 4 cells with sides strictly smaller
    than the grid (``h < G`` and ``w < G``), so the largest block it can ever place
    covers ``(G - 1) ** 2`` cells. At ``G = 2`` that is a single cell: a 4-cell block
    never fits and the reference generator degenerates (mean realised ratio about
    0.02 at ratio 0.5 instead of 0.5, i.e. λ ≈ 0 and the mixture is almost a copy of
    the partner image; see docs/algorithms.md, "MixMask"). We therefore cap the minimum at
    the largest placeable block: ``min(4, (G - 1) ** 2)``. For ``G >= 3`` this is
    exactly BEiT's 4; only ``G = 2`` changes (minimum 1 cell), which makes the
    blocked generator reach its target there too. Pass ``min_block_cells=4``
    explicitly to reproduce the reference generator bit for bit in behaviour.

    Args:
      grid_size: Python int ``G >= 2``.

    Returns:
      Python int, the minimum number of cells of one block.
    """
    return min(_BEIT_MIN_BLOCK_CELLS, (grid_size - 1) ** 2)






def _as_f64(x):
    """float64 tensor from a Python number (exactly) or a tensor (cast)."""
    if _is_tensor(x):
        return tf.cast(x, tf.float64)
    return tf.convert_to_tensor(x, tf.float64)


def _dim0(x):
    """Static size of axis 0 if known, else the dynamic scalar tensor."""
    return x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]



def _sample_ratios(seed, num, ratio, ratio_range):
    """Per-mask ratios, float64 [num] (float64 so floor(ratio * G**2) matches Python)."""
    if ratio_range is None:
        return tf.fill([num], _as_f64(ratio))
    low = _as_f64(ratio_range[0])
    high = _as_f64(ratio_range[1])
    return low + (high - low) * seeds.portable_uniform(seed, [num], tf.float64)


def sample_ratio(seed, ratio=0.5, ratio_range=None):
    """Draws one mask ratio.

    Args:
      seed: int32/int64 tensor of shape [2] (unused when ``ratio_range`` is None).
      ratio: Python float or scalar tensor, the constant ratio.
      ratio_range: ``None`` or a pair ``(a, b)`` (floats or scalar tensors).

    Returns:
      Scalar float32 tensor: ``ratio`` if ``ratio_range`` is None, else a draw
      from ``U(a, b)``.
    """
    seed = tf.convert_to_tensor(seed)
    return tf.cast(_sample_ratios(seed, 1, ratio, ratio_range)[0], tf.float32)


def _num_targets(ratios, grid_size):
    """floor(ratio * G**2) as int32, from float64 ratios [M]."""
    return tf.cast(tf.floor(ratios * float(grid_size * grid_size)), tf.int32)


def _blocked_masks(seed, targets, grid_size, min_block_cells, min_aspect, max_attempts):
    """Vectorised BEiT block-wise generator for a batch of masks.

    One ``tf.while_loop`` iteration is one block-placement *attempt* for every
    still-active mask. Per mask this is exactly BEiT's nested loop: an attempt that
    commits a block starts a new round (attempt counter reset to 0), a round whose
    ``max_attempts`` attempts all fail stops the mask, and so does reaching the
    target. Each successful round adds at least one cell, so at most
    ``G**2 * max_attempts`` iterations are ever needed (static bound).

    Args:
      seed: int32/int64 tensor [2].
      targets: int32 [M], number of cells to set per mask (``floor(ratio * G**2)``).
      grid_size: Python int ``G``.
      min_block_cells: Python number, lower bound of a block's area draw.
      min_aspect: Python float, aspect ratio drawn log-uniformly in
        ``[min_aspect, 1 / min_aspect]``.
      max_attempts: Python int, attempts per block.

    Returns:
      bool [M, G, G] masks, each with at most ``targets[m]`` cells set.
    """
    g = grid_size
    num = _dim0(targets)
    base = seeds.stream_base(seed)
    log_lo = math.log(min_aspect)
    log_hi = math.log(1.0 / min_aspect)
    cell = tf.range(g, dtype=tf.int32)
    min_area = float(min_block_cells)

    mask0 = tf.zeros([num, g, g], tf.bool)
    count0 = tf.zeros_like(targets)
    attempt0 = tf.zeros_like(targets)
    active0 = targets > 0

    def cond(it, mask, count, attempt, active):
        del it, mask, count, attempt
        return tf.reduce_any(active)

    def body(it, mask, count, attempt, active):
        step_seed = seeds.stream_seed(base, it)
        u = seeds.portable_uniform(step_seed, [num, 4])
        budget = targets - count
        # random.uniform(a, b) = a + (b - a) * U[0, 1): bounds may be inverted.
        area = min_area + (tf.cast(budget, tf.float32) - min_area) * u[:, 0]
        aspect = tf.exp(log_lo + (log_hi - log_lo) * u[:, 1])
        # tf.round rounds half to even, like Python's round().
        h = tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32)
        w = tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32)
        fits = (h < g) & (w < g)
        h = tf.clip_by_value(h, 0, g - 1)
        w = tf.clip_by_value(w, 0, g - 1)
        # random.randint(0, G - h): uniform over G - h + 1 values, inclusive.
        top = tf.minimum(
            tf.cast(tf.floor(u[:, 2] * tf.cast(g - h + 1, tf.float32)), tf.int32), g - h)
        left = tf.minimum(
            tf.cast(tf.floor(u[:, 3] * tf.cast(g - w + 1, tf.float32)), tf.int32), g - w)
        rows = (cell[None, :] >= top[:, None]) & (cell[None, :] < (top + h)[:, None])
        cols = (cell[None, :] >= left[:, None]) & (cell[None, :] < (left + w)[:, None])
        rect = rows[:, :, None] & cols[:, None, :]
        new = tf.reduce_sum(
            tf.cast(rect & tf.logical_not(mask), tf.int32), axis=[1, 2])
        commit = active & fits & (new > 0) & (new <= budget)
        mask = mask | (rect & commit[:, None, None])
        count = count + tf.where(commit, new, 0)
        attempt = tf.where(commit, 0, tf.where(active, attempt + 1, attempt))
        active = active & (count < targets) & (attempt < max_attempts)
        return it + 1, mask, count, attempt, active

    _, mask, _, _, _ = tf.while_loop(
        cond, body,
        (tf.constant(0, tf.int32), mask0, count0, attempt0, active0),
        maximum_iterations=g * g * max_attempts)
    return mask


def blocked_grid_mask(seed, grid_size, ratio, min_block_cells=None, min_aspect=_BEIT_MIN_ASPECT,
                      max_attempts=_BEIT_MAX_ATTEMPTS):
    """One blocked mask from the BEiT block-wise generator (docs/algorithms.md, "MixMask").

    ``target = floor(ratio * G**2)`` cells are set by placing rectangles. While
    fewer than ``target`` cells are set, with ``budget = target - masked``, up to
    ``max_attempts`` attempts draw ``area ~ U(min_block_cells, budget)`` (bounds may
    be inverted), ``aspect = exp(U(log(min_aspect), log(1 / min_aspect)))``,
    ``h = round(sqrt(area * aspect))``, ``w = round(sqrt(area / aspect))``; an
    attempt is valid only if ``h < G`` and ``w < G`` (strict), the block is placed
    at ``top ~ randint[0, G - h]``, ``left ~ randint[0, G - w]`` and is committed if
    it adds between 1 and ``budget`` new cells (which ends the round). A round that
    adds nothing ends the generator, so the realised ratio can fall below the
    target, never above it.

    Args:
      seed: int32/int64 tensor of shape [2].
      grid_size: Python int ``G >= 2``.
      ratio: Python float or scalar float tensor in [0, 1).
      min_block_cells: minimum block area in cells; ``None`` uses
        :func:`default_min_block_cells` (``min(4, (G - 1) ** 2)``, [ours]); ``4``
        is the reference generator (degenerate at ``G = 2``).
      min_aspect: Python float in (0, 1], smallest aspect ratio (largest is its
        inverse). BEiT: 0.3.
      max_attempts: Python int, attempts per block. BEiT: 10.

    Returns:
      float32 tensor [G, G] with values in {0, 1}; 1 marks a block cell (a cell
      that keeps the image's own pixels in MixMask). So ``ratio`` is the fraction of
      cells that *keep* the image: ``λ ≈ ratio`` (never above
      ``floor(ratio * G**2) / G**2`` of the cells), the opposite direction of
      :func:`discrete_grid_mask`.
    """
    if min_block_cells is None:
        min_block_cells = default_min_block_cells(grid_size)
    seed = tf.convert_to_tensor(seed)
    ratios = tf.reshape(_as_f64(ratio), [1])
    mask = _blocked_masks(seed, _num_targets(ratios, grid_size), grid_size,
                          min_block_cells, min_aspect, max_attempts)
    return tf.cast(mask[0], tf.float32)


def _discrete_masks(seed, ratios, grid_size, max_redraws=_MAX_DISCRETE_REDRAWS):
    """Batch of discrete masks, never all-0 or all-1.

    Args:
      seed: int32/int64 tensor [2].
      ratios: float [M], per-mask ratio; each cell is 1 with probability 1 - ratio.
      grid_size: Python int ``G >= 2``.
      max_redraws: Python int, redraws of degenerate grids before the fallback.

    Returns:
      bool [M, G, G].
    """
    g = grid_size
    num = _dim0(ratios)
    base = seeds.stream_base(seed)
    keep_prob = 1.0 - tf.cast(ratios, tf.float32)
    shape = [num, g, g]

    def draw(i):
        u = seeds.portable_uniform(seeds.stream_seed(base, i), shape)
        return u < keep_prob[:, None, None]

    def degenerate(m):
        on = tf.reduce_sum(tf.cast(m, tf.int32), axis=[1, 2])
        return (on == 0) | (on == g * g)

    def cond(i, m):
        del i
        return tf.reduce_any(degenerate(m))

    def body(i, m):
        return i + 1, tf.where(degenerate(m)[:, None, None], draw(i), m)

    mask0 = draw(tf.constant(0, tf.int32))
    _, mask = tf.while_loop(cond, body, (tf.constant(1, tf.int32), mask0),
                            maximum_iterations=max_redraws)
    # Fallback (rare; e.g. ratio 0.01 at G = 2): flip one uniformly chosen cell.
    u = seeds.portable_uniform(seeds.stream_seed(base, max_redraws + 1), [num])
    flip = tf.minimum(tf.cast(tf.floor(u * float(g * g)), tf.int32), g * g - 1)
    flip = tf.reshape(tf.one_hot(flip, g * g, on_value=True, off_value=False,
                                 dtype=tf.bool), shape)
    return tf.where(degenerate(mask)[:, None, None],
                    tf.math.logical_xor(mask, flip), mask)


def discrete_grid_mask(seed, grid_size, ratio):
    """One discrete mask: every cell independently 1 with probability ``1 - ratio``.

    As in the MixMask reference code (``np.random.rand(G, G) > ratio``). All-0 and
    all-1 grids are redrawn (up to 100 times); if still degenerate, one random cell
    is flipped, so the result is never all-0 or all-1 and the loop always ends.

    Direction: ``ratio`` is the expected fraction of cells set to 0 (taken from the
    partner image), so the image keeps ``λ ≈ 1 - ratio`` of its own pixels, the
    opposite of :func:`blocked_grid_mask` (``λ ≈ ratio``); the redraw of degenerate
    grids moves λ slightly towards 0.5 on small grids.

    Args:
      seed: int32/int64 tensor of shape [2].
      grid_size: Python int ``G >= 2``.
      ratio: Python float or scalar float tensor.

    Returns:
      float32 tensor [G, G] with values in {0, 1}, neither all 0 nor all 1.
    """
    seed = tf.convert_to_tensor(seed)
    ratios = tf.reshape(tf.cast(ratio, tf.float32), [1])
    return tf.cast(_discrete_masks(seed, ratios, grid_size)[0], tf.float32)


def grid_masks(seed, num_masks, grid_size, mask_type="blocked", ratio=0.5, ratio_range=None,
               min_block_cells=None):
    """``num_masks`` independent grid masks, vectorised (one ``tf.while_loop`` for all).

    ``num_masks = 1`` is the per-batch mode (one mask shared by the batch, as in the
    reference code), ``num_masks = N`` the per-sample mode [ours]. With a
    ``ratio_range`` each mask draws its own ratio. The fraction of ones (λ, the part
    that keeps the image) is ``≈ ratio`` for ``"blocked"`` and ``≈ 1 - ratio`` for
    ``"discrete"`` masks (module docstring). The ratio and mask sub-seeds are
    split from ``seed``, so ``grid_masks(seed, 1, ...)`` is not the same draw as
    :func:`blocked_grid_mask` with the same seed (same distribution).

    Args:
      seed: int32/int64 tensor of shape [2].
      num_masks: Python int (static) or scalar int32 tensor (dynamic, graph mode only).
      grid_size: Python int ``G >= 2``.
      mask_type: ``"blocked"`` or ``"discrete"``.
      ratio: Python float or scalar float tensor, the constant ratio.
      ratio_range: ``None`` or ``(a, b)``: ratio per mask from ``U(a, b)``.
      min_block_cells: blocked masks only; ``None`` -> :func:`default_min_block_cells`.

    Returns:
      float32 tensor [num_masks, G, G] with values in {0, 1}.

    Raises:
      ValueError: for an unknown ``mask_type`` or a ``grid_size`` below 2.
    """
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}.")
    if not _is_int(grid_size) or grid_size < 2:
        raise ValueError(f"grid_size must be an integer >= 2, got {grid_size!r}.")
    seed = tf.convert_to_tensor(seed)
    ratio_seed, mask_seed = seeds.split_pair(seed)
    ratios = _sample_ratios(ratio_seed, num_masks, ratio, ratio_range)
    if mask_type == "blocked":
        if min_block_cells is None:
            min_block_cells = default_min_block_cells(grid_size)
        masks = _blocked_masks(mask_seed, _num_targets(ratios, grid_size), grid_size,
                               min_block_cells, _BEIT_MIN_ASPECT, _BEIT_MAX_ATTEMPTS)
    else:
        masks = _discrete_masks(mask_seed, ratios, grid_size)
    return tf.cast(masks, tf.float32)


def _nearest_indices(cells, pixels):
    """Source cell of every output pixel: ``floor(p * cells / pixels)`` for pixel ``p``.

    The rule of ``torch.nn.functional.interpolate(mode="nearest")`` (the reference
    code's upsampling), evaluated in exact integer arithmetic.
    """
    return [(p * cells) // pixels for p in range(pixels)]


def upsample_masks(masks, height, width):
    """Nearest-neighbour upsampling of grid masks to the image size.

    Pixel ``(y, x)`` takes cell ``(floor(y * Gh / height), floor(x * Gw / width))``:
    the rule of the MixMask reference code, which upsamples with
    ``torch.nn.functional.interpolate(mode="nearest")`` (PyTorch's legacy "nearest",
    ``floor(dst_index * in / out)``; equivalently
    ``tf.compat.v1.image.resize_nearest_neighbor`` without half-pixel centres). It is
    computed here in exact integer arithmetic. PyTorch evaluates the product in
    float32, which at a few sizes where ``p * G / H`` is exactly an integer gives
    that pixel to the cell below (e.g. ``G = 2, H = 82``, pixel 41); no such pixel
    exists at the paper's sizes (``G = 2`` at 32, 4 at 64, 8 at 224) or whenever
    ``H / G`` is a power of two. When ``G`` divides the size, every cell covers
    ``size / G`` pixels, the same as with half-pixel centres
    (``tf.image.resize(method="nearest")``); otherwise the two rules differ at some
    cell borders (here cell ``c`` covers pixels ``ceil(c * H / G)`` to
    ``ceil((c + 1) * H / G) - 1``; e.g. ``G = 3, H = 28``: 10, 9, 9 pixels, where
    half-pixel centres give 9, 10, 9). ``height`` and ``width`` need not be multiples
    of the grid size, so cells may cover unequal numbers of pixels; measure λ with
    :func:`mask_fraction` on the result (as the reference code does).

    Args:
      masks: float tensor [M, Gh, Gw] (static ``Gh``, ``Gw``).
      height: Python int, output height.
      width: Python int, output width.

    Returns:
      float32 tensor [M, height, width, 1].
    """
    masks = tf.convert_to_tensor(masks)
    gh, gw = masks.shape[1], masks.shape[2]
    if gh is None or gw is None:
        raise ValueError("upsample_masks needs a static grid shape [M, G, G].")
    rows = tf.constant(_nearest_indices(gh, height), tf.int32)
    cols = tf.constant(_nearest_indices(gw, width), tf.int32)
    out = tf.gather(tf.gather(tf.cast(masks, tf.float32), rows, axis=1), cols, axis=2)
    return out[..., None]


def mask_fraction(masks):
    """Fraction of ones of each mask (λ of the image that keeps the 1-region).

    Args:
      masks: float tensor [M, ...] (e.g. the [M, H, W, 1] full-resolution masks).

    Returns:
      float32 tensor [M]: mean over all non-batch axes.
    """
    masks = tf.cast(tf.convert_to_tensor(masks), tf.float32)
    return tf.reduce_mean(masks, axis=list(range(1, masks.shape.rank)))
