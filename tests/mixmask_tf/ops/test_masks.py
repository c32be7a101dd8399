"""Tests of mixmask_tf.ops.masks against small, independent NumPy references."""

import math

import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import seeds
from mixmask_tf.ops import masks

# ---------------------------------------------------------------------------
# Independent NumPy references
# ---------------------------------------------------------------------------


def beit_mask_np(rng, grid_size, ratio, min_block_cells=4, min_aspect=0.3, max_attempts=10):
    """The BEiT block-wise generator (beit/masking_generator.py), written out in NumPy."""
    g = grid_size
    target = int(ratio * g * g)
    log_aspect = (math.log(min_aspect), math.log(1.0 / min_aspect))
    mask = np.zeros((g, g), dtype=np.int64)
    count = 0
    while count < target:
        budget = target - count
        delta = 0
        for _ in range(max_attempts):
            # Python's random.uniform(a, b) = a + (b - a) * random(): b < a is allowed.
            area = min_block_cells + (budget - min_block_cells) * rng.random()
            aspect = math.exp(rng.uniform(*log_aspect))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if w < g and h < g:
                top = int(rng.integers(0, g - h + 1))
                left = int(rng.integers(0, g - w + 1))
                already = mask[top:top + h, left:left + w].sum()
                if 0 < h * w - already <= budget:
                    delta = h * w - already
                    mask[top:top + h, left:left + w] = 1
            if delta > 0:
                break
        if delta == 0:
            break
        count += delta
    return mask


def discrete_mask_np(rng, grid_size, ratio):
    """Reference discrete mask: cell = 1 with probability 1 - ratio, redraw degenerate."""
    while True:
        m = (rng.random((grid_size, grid_size)) > ratio).astype(np.int64)
        if 0 < m.sum() < grid_size * grid_size:
            return m


def nearest_np(grid, height, width):
    """Nearest upsampling of the reference code (``F.interpolate(mode="nearest")``):
    pixel p takes cell floor(p * G / H) (float64 maths: p * G and its quotient by H are
    exact or correctly rounded, so the floor is exact)."""
    gh, gw = grid.shape[-2:]
    ys = np.floor(np.arange(height) * gh / height).astype(int)
    xs = np.floor(np.arange(width) * gw / width).astype(int)
    return grid[..., ys[:, None], xs[None, :]]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

NUM_TF = 1024
NUM_NP = 400


@tf.function
def _graph_grid_masks(seed, num, grid_size, mask_type, ratio, ratio_range, min_block_cells):
    return masks.grid_masks(seed, num, grid_size, mask_type=mask_type, ratio=ratio,
                            ratio_range=ratio_range, min_block_cells=min_block_cells)


def tf_masks(grid_size, num=NUM_TF, mask_type="blocked", ratio=0.5, ratio_range=None,
             min_block_cells=None, seed=(7, 11)):
    out = _graph_grid_masks(tf.constant(seed, tf.int32), num, grid_size, mask_type, ratio,
                            ratio_range, min_block_cells)
    return out.numpy()


_REALISED_CACHE = {}


def realised(grid_size, min_block_cells):
    """(TF per-mask ratios, NumPy reference per-mask ratios) at ratio 0.5."""
    key = (grid_size, min_block_cells)
    if key not in _REALISED_CACHE:
        tf_m = tf_masks(grid_size, min_block_cells=min_block_cells)
        mb = masks.default_min_block_cells(grid_size) if min_block_cells is None else min_block_cells
        rng = np.random.default_rng(1000 + grid_size)
        np_m = np.stack([beit_mask_np(rng, grid_size, 0.5, mb) for _ in range(NUM_NP)])
        _REALISED_CACHE[key] = (tf_m, np_m)
    tf_m, np_m = _REALISED_CACHE[key]
    return tf_m.mean(axis=(1, 2)), np_m.mean(axis=(1, 2)), tf_m


def _solid_rectangle(m):
    """(h, w) if the set cells of m form one solid rectangle, else None."""
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return None
    h = rows[-1] - rows[0] + 1
    w = cols[-1] - cols[0] + 1
    return (int(h), int(w)) if m.sum() == h * w else None


def _shape_feasible(h, w, area_lo, area_hi, min_aspect=0.3):
    """Could h = round(sqrt(A*a)), w = round(sqrt(A/a)) for some A in range, a in bounds?"""
    for area in np.linspace(area_lo, area_hi, 81):
        for log_a in np.linspace(math.log(min_aspect), -math.log(min_aspect), 161):
            a = math.exp(log_a)
            if round(math.sqrt(area * a)) == h and round(math.sqrt(area / a)) == w:
                return True
    return False


# ---------------------------------------------------------------------------
# Blocked masks
# ---------------------------------------------------------------------------


def test_default_min_block_cells():
    assert masks.default_min_block_cells(2) == 1
    for g in range(3, 17):
        assert masks.default_min_block_cells(g) == 4


@pytest.mark.parametrize("grid_size", list(range(2, 17)))
def test_blocked_default_rule_matches_reference_and_reaches_target(grid_size):
    tf_r, np_r, tf_m = realised(grid_size, None)
    target = (grid_size * grid_size // 2) / grid_size ** 2
    # Values are binary; never more than the target number of cells.
    assert set(np.unique(tf_m)) <= {0.0, 1.0}
    assert tf_m.sum(axis=(1, 2)).max() <= grid_size * grid_size // 2
    # Same distribution as the NumPy reference of the same rule (means within 4 SE).
    se = math.sqrt(tf_r.var() / tf_r.size + np_r.var() / np_r.size)
    assert abs(tf_r.mean() - np_r.mean()) <= max(0.01, 4 * se), (tf_r.mean(), np_r.mean())
    # The default rule never degenerates: >= 0.9 of the target on average, every G.
    assert tf_r.mean() >= 0.9 * target, (grid_size, tf_r.mean(), target)


@pytest.mark.parametrize("grid_size", [2, 3, 4])
def test_blocked_reference_rule_min4_matches_reference(grid_size):
    tf_r, np_r, tf_m = realised(grid_size, 4)
    se = math.sqrt(tf_r.var() / tf_r.size + np_r.var() / np_r.size)
    assert abs(tf_r.mean() - np_r.mean()) <= max(0.01, 4 * se), (tf_r.mean(), np_r.mean())
    assert tf_m.sum(axis=(1, 2)).max() <= grid_size * grid_size // 2


def test_blocked_reference_rule_degenerates_at_grid_2():
    # Documents the reference generator: a 4-cell block never fits a 2x2 grid with h, w < 2.
    tf_r, np_r, _ = realised(2, 4)
    assert tf_r.mean() < 0.1
    assert np_r.mean() < 0.1
    # ... while the default rule (min block 1 cell at G = 2) reaches the target.
    assert realised(2, None)[0].mean() > 0.45


def test_blocked_never_exceeds_target():
    for g, ratio in [(2, 0.75), (3, 0.9), (4, 0.8), (5, 0.3), (8, 0.95)]:
        m = tf_masks(g, num=256, ratio=ratio)
        assert set(np.unique(m)) <= {0.0, 1.0}
        assert m.sum(axis=(1, 2)).max() <= int(ratio * g * g)


def test_single_block_shapes_respect_aspect_bounds_and_match_reference():
    # Target 4 cells on a 16x16 grid: the first block has area U(4, 4) = 4 and most
    # masks are that one block (2x2, 1x4, 4x1, or 1x3 / 3x1 when no 1-cell block follows).
    g, target = 16, 4
    ratio = target / g ** 2
    tf_m = tf_masks(g, num=1024, ratio=ratio, min_block_cells=4)
    rng = np.random.default_rng(3)
    np_m = [beit_mask_np(rng, g, ratio) for _ in range(1024)]
    tf_shapes = [s for s in map(_solid_rectangle, tf_m) if s is not None]
    assert len(tf_shapes) > 450
    for h, w in set(tf_shapes):
        assert h < g and w < g and h * w <= target
        # A common solid shape is a single block whose area is in [1, 4]: it must come
        # from an aspect ratio in [0.3, 1/0.3] after rounding. (A rare shape may be
        # two adjacent blocks and is not checked.)
        if tf_shapes.count((h, w)) >= 0.01 * len(tf_shapes):
            assert _shape_feasible(h, w, 1, target), (h, w)
    # Shape histogram (including "not one rectangle") close to the reference's.
    tf_all = [_solid_rectangle(m) for m in tf_m]
    np_all = [_solid_rectangle(m) for m in np_m]
    keys = set(tf_all) | set(np_all)
    p = np.array([tf_all.count(k) / len(tf_all) for k in keys])
    q = np.array([np_all.count(k) / len(np_all) for k in keys])
    assert 0.5 * np.abs(p - q).sum() < 0.08


def test_blocked_aspect_parameter():
    # min_aspect = 1: every block is a square round(sqrt(area)) x round(sqrt(area)).
    fn = tf.function(lambda s: masks.blocked_grid_mask(s, 8, 9 / 64, min_block_cells=9,
                                                       min_aspect=1.0))
    for i in range(20):
        m = fn(tf.constant([i, 1])).numpy()
        assert _solid_rectangle(m) == (3, 3)


def test_blocked_grid_mask_single():
    seed = tf.constant([1, 2], tf.int32)
    m = masks.blocked_grid_mask(seed, 8, 0.5)
    assert m.shape == (8, 8) and m.dtype == tf.float32
    assert set(np.unique(m.numpy())) <= {0.0, 1.0}
    assert m.numpy().sum() <= 32
    # ratio as a tensor; explicit reference rule.
    m4 = masks.blocked_grid_mask(seed, 6, tf.constant(0.25), min_block_cells=4)
    assert m4.numpy().sum() <= 9
    np.testing.assert_array_equal(masks.blocked_grid_mask(seed, 8, 0.5).numpy(), m.numpy())


def test_exact_python_floor_of_target():
    # floor(ratio * G^2) with Python float semantics: 0.7 * 100 = 70 (not 69).
    m = tf_masks(10, num=64, ratio=0.7)
    rng = np.random.default_rng(0)
    np_counts = [beit_mask_np(rng, 10, 0.7).sum() for _ in range(64)]
    assert m.sum(axis=(1, 2)).max() == max(np_counts) == 70


# ---------------------------------------------------------------------------
# Discrete masks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("grid_size,ratio", [(8, 0.5), (8, 0.3), (4, 0.75), (2, 0.25)])
def test_discrete_fraction_matches_reference(grid_size, ratio):
    m = tf_masks(grid_size, mask_type="discrete", ratio=ratio)
    assert set(np.unique(m)) <= {0.0, 1.0}
    rng = np.random.default_rng(5)
    ref = np.mean([discrete_mask_np(rng, grid_size, ratio).mean() for _ in range(4000)])
    assert abs(m.mean() - ref) < 0.02, (m.mean(), ref)
    if grid_size >= 4:
        assert abs(m.mean() - (1 - ratio)) < 0.02


@pytest.mark.parametrize("ratio", [0.01, 0.5, 0.99])
def test_discrete_never_degenerate(ratio):
    for g in (2, 3):
        m = tf_masks(g, num=512, mask_type="discrete", ratio=ratio)
        s = m.sum(axis=(1, 2))
        assert s.min() >= 1 and s.max() <= g * g - 1


def discrete_replay_np(seed, grid_size, ratio, max_redraws=100):
    """NumPy replay of one discrete mask on the library's own portable uniforms (seeds): draw ``i``
    keeps a cell where ``u < 1 - ratio`` (float32); a degenerate grid (all 0 or all 1) takes draws
    1, 2, ... up to ``max_redraws``; if still degenerate, cell ``floor(u * G**2)`` of draw
    ``max_redraws + 1`` is flipped. -> (int [G, G], whether the fallback flipped a cell)."""
    g = grid_size
    base = seeds.stream_base(tf.constant(seed))
    keep = np.float32(1.0) - np.float32(ratio)

    def draw(i):
        return (seeds.portable_uniform(seeds.stream_seed(base, tf.constant(i, tf.int32)), [1, g, g])
                .numpy()[0] < keep).astype(np.int64)

    mask, i = draw(0), 1
    while mask.sum() in (0, g * g) and i <= max_redraws:
        mask, i = draw(i), i + 1
    if mask.sum() not in (0, g * g):
        return mask, False
    u = seeds.portable_uniform(seeds.stream_seed(base, tf.constant(max_redraws + 1, tf.int32)), [1]).numpy()[0]
    flat = mask.reshape(-1)
    flat[min(int(np.floor(u * g * g)), g * g - 1)] ^= 1
    return flat.reshape(g, g), True


def test_discrete_grid_mask_single_matches_the_replay():
    # ratio 0.999 at G = 2: a cell is kept with probability 0.001, so nearly every draw is all 0 and
    # the mask keeps exactly one cell (the fallback's, or the one cell of a rare good draw).
    fallbacks = 0
    for i in range(6):
        seed = [4 + i, 4]
        got = masks.discrete_grid_mask(tf.constant(seed), 2, 0.999).numpy()
        want, fell_back = discrete_replay_np(seed, 2, 0.999)
        np.testing.assert_array_equal(got, want.astype(np.float32))
        assert got.sum() == 1.0
        fallbacks += fell_back
    assert fallbacks > 0  # the fallback path is exercised (P(fallback) = 0.999**400 ≈ 0.67 per mask)
    for ratio in (0.25, 0.5):
        for i in range(5):
            got = masks.discrete_grid_mask(tf.constant([i, 7]), 3, ratio).numpy()
            np.testing.assert_array_equal(got, discrete_replay_np([i, 7], 3, ratio)[0].astype(np.float32))


# ---------------------------------------------------------------------------
# Ratios
# ---------------------------------------------------------------------------


def test_sample_ratio_constant_and_range():
    assert masks.sample_ratio(tf.constant([1, 2]), 0.3).numpy() == pytest.approx(0.3)
    assert masks.sample_ratio(tf.constant([1, 2]), 0.3).dtype == tf.float32
    draws = np.array([masks.sample_ratio(tf.constant([i, 9]), ratio_range=(0.25, 0.75)).numpy()
                      for i in range(300)])
    assert draws.min() >= 0.25 and draws.max() <= 0.75
    assert abs(draws.mean() - 0.5) < 0.03
    assert draws.std() > 0.1


def test_grid_masks_ratio_range_per_mask():
    g = 8
    m = tf_masks(g, num=1024, ratio_range=(0.25, 0.75))
    counts = m.sum(axis=(1, 2))
    assert counts.max() <= 48  # at most floor(b G^2) cells (may fall below floor(a G^2))
    assert counts.std() > 5  # a ratio per mask, not one shared ratio
    # E[floor(U(16, 48))] / 64 = (0.5 * 64 - 0.5) / 64.
    assert abs(m.mean() - 31.5 / 64) < 0.02
    d = tf_masks(g, num=1024, mask_type="discrete", ratio_range=(0.0, 1.0))
    assert abs(d.mean() - 0.5) < 0.03 and d.mean(axis=(1, 2)).std() > 0.2


# ---------------------------------------------------------------------------
# Upsampling and λ
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("grid_size,height,width", [(3, 32, 28), (7, 28, 28), (2, 32, 32),
                                                    (5, 7, 13), (4, 10, 6)])
def test_upsample_matches_numpy_nearest(grid_size, height, width):
    grids = tf_masks(grid_size, num=6, mask_type="discrete")
    up = masks.upsample_masks(tf.constant(grids), height, width)
    assert up.shape == (6, height, width, 1) and up.dtype == tf.float32
    ref = nearest_np(grids, height, width)
    np.testing.assert_array_equal(up.numpy()[..., 0], ref)
    # Same as TF's legacy nearest resize without half-pixel centres (floor(p * in / out),
    # PyTorch's rule; float32 there, exact at these sizes).
    resized = tf.compat.v1.image.resize_nearest_neighbor(
        tf.constant(grids)[..., None], [height, width], align_corners=False, half_pixel_centers=False)
    np.testing.assert_array_equal(up.numpy(), resized.numpy())
    lam = masks.mask_fraction(up)
    assert lam.shape == (6,) and lam.dtype == tf.float32
    np.testing.assert_allclose(lam.numpy(), ref.reshape(6, -1).mean(axis=1), rtol=0, atol=1e-6)


# The cell of each pixel as torch.nn.functional.interpolate(mode="nearest") gives it (the
# reference code's upsampling; printed with torch 2.13: interpolate of arange(G) to size H):
# the first pixel of every cell.
TORCH_CELL_STARTS = {(3, 28): [0, 10, 19], (4, 30): [0, 8, 15, 23], (3, 32): [0, 11, 22], (7, 28): list(range(0, 28, 4))}


@pytest.mark.parametrize("grid_size,size", sorted(TORCH_CELL_STARTS))
def test_upsample_cell_of_every_pixel_is_floor_p_g_over_h(grid_size, size):
    # A grid whose cell (i, j) holds i * G + j: the upsampled value names the cell of the pixel.
    ids = np.arange(grid_size * grid_size, dtype=np.float32).reshape(1, grid_size, grid_size)
    up = masks.upsample_masks(tf.constant(ids), size, size + 2).numpy()[0, ..., 0].astype(int)
    rows, cols = up // grid_size, up % grid_size
    expected_rows = np.array([p * grid_size // size for p in range(size)])
    expected_cols = np.array([p * grid_size // (size + 2) for p in range(size + 2)])
    np.testing.assert_array_equal(rows, np.broadcast_to(expected_rows[:, None], rows.shape))
    np.testing.assert_array_equal(cols, np.broadcast_to(expected_cols[None, :], cols.shape))
    # ... which is the reference code's rule, and not half-pixel centres where G does not divide H.
    starts = [int(np.flatnonzero(expected_rows == c)[0]) for c in range(grid_size)]
    assert starts == TORCH_CELL_STARTS[(grid_size, size)]
    half_pixel = np.array([((2 * p + 1) * grid_size) // (2 * size) for p in range(size)])
    assert np.array_equal(expected_rows, half_pixel) == (size % grid_size == 0)


def test_mask_fraction_is_measured_on_the_upsampled_mask():
    # G = 3 on 28 x 30: cell (0, 0) covers 10 x 10 pixels (floor rule), not 1/9 of the image.
    grid = np.zeros((1, 3, 3), np.float32)
    grid[0, 0, 0] = 1.0
    up = masks.upsample_masks(tf.constant(grid), 28, 30)
    assert masks.mask_fraction(up).numpy()[0] == pytest.approx(10 * 10 / (28 * 30), abs=1e-7)
    grid = np.zeros((1, 4, 4), np.float32)
    grid[0, 1, :] = 1.0  # row cell 1 of G = 4 on H = 30: pixels 8..14
    up = masks.upsample_masks(tf.constant(grid), 30, 30)
    assert masks.mask_fraction(up).numpy()[0] == pytest.approx(7 / 30, abs=1e-7)


def test_upsample_xla_equals_eager_when_grid_does_not_divide():
    grids = tf.constant(tf_masks(4, num=3, mask_type="discrete"))
    def fn(g):
        up = masks.upsample_masks(g, 30, 29)
        return up, masks.mask_fraction(up)

    for a, b in zip(fn(grids), tf.function(fn, jit_compile=True)(grids)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ---------------------------------------------------------------------------
# Direction of the ratio: λ ≈ ratio (blocked), λ ≈ 1 − ratio (discrete)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.25, 0.75])
@pytest.mark.parametrize("mask_type", masks.MASK_TYPES)
def test_measured_lambda_direction(mask_type, ratio):
    # λ as the loss uses it: the fraction of ones of the upsampled mask (G = 8 on 30 x 30, so
    # cells are unequal), averaged over 512 independent masks.
    grids = tf_masks(8, num=512, mask_type=mask_type, ratio=ratio)
    lam = masks.mask_fraction(masks.upsample_masks(tf.constant(grids), 30, 30)).numpy()
    expected = ratio if mask_type == "blocked" else 1.0 - ratio
    # A wrong direction is off by 0.5; the tolerance is a few standard errors (and the blocked
    # generator may fall a little short of its target, never above it).
    tol = max(0.03, 5 * lam.std() / math.sqrt(lam.size))
    assert abs(lam.mean() - expected) < tol, (mask_type, ratio, lam.mean())
    assert abs(lam.mean() - (1.0 - expected)) > 0.4
    if mask_type == "blocked":
        # At most floor(ratio * G^2) cells of 64; cells cover 3 or 4 rows/columns of the 30.
        assert grids.sum(axis=(1, 2)).max() <= int(ratio * 64)


def test_mask_fraction_any_rank():
    x = np.random.default_rng(0).integers(0, 2, size=(3, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(masks.mask_fraction(x).numpy(), x.mean(axis=(1, 2)), atol=1e-7)


# ---------------------------------------------------------------------------
# Determinism and seeds
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mask_type", masks.MASK_TYPES)
def test_determinism(mask_type):
    a = tf_masks(8, num=16, mask_type=mask_type, seed=(1, 2))
    b = tf_masks(8, num=16, mask_type=mask_type, seed=(1, 2))
    c = tf_masks(8, num=16, mask_type=mask_type, seed=(1, 3))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Masks within a call are independent draws.
    assert len({m.tobytes() for m in a}) > 8


def test_int64_and_negative_seeds_same_with_xla():
    fn = lambda s: masks.grid_masks(s, 32, 6, mask_type="blocked", ratio_range=(0.2, 0.8))
    xla = tf.function(fn, jit_compile=True)
    for seed in (tf.constant([-5, 3], tf.int64), tf.constant([2 ** 40, -(2 ** 50)], tf.int64)):
        np.testing.assert_array_equal(fn(seed).numpy(), xla(seed).numpy())


# ---------------------------------------------------------------------------
# Argument validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,match", [
    (dict(grid_size=1), "grid_size must be an integer >= 2"),
    (dict(grid_size=0), "grid_size must be an integer >= 2"),
    (dict(grid_size=2.0), "grid_size must be an integer"),
    (dict(grid_size=64, image_size=(32, 32)), "grid size 64 is larger than the 32x32 image"),
    (dict(grid_size=4, ratio=0.0), r"ratio must be in the open interval \(0, 1\)"),
    (dict(grid_size=4, ratio=1.0), r"ratio must be in the open interval \(0, 1\)"),
    (dict(grid_size=4, ratio=1.5), r"ratio must be in the open interval \(0, 1\)"),
    (dict(grid_size=4, ratio="half"), "ratio must be a number"),
    (dict(grid_size=4, ratio_range=(0.6, 0.4)), "0 <= a < b <= 1"),
    (dict(grid_size=4, ratio_range=(-0.1, 0.5)), "0 <= a < b <= 1"),
    (dict(grid_size=4, ratio_range=(0.5, 1.2)), "0 <= a < b <= 1"),
    (dict(grid_size=4, ratio_range=(0.5,)), "pair"),
    (dict(grid_size=4, mask_type="random"), "mask_type must be one of"),
])
def test_validate_mask_args_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        masks.validate_mask_args(**kwargs)


def test_validate_mask_args_ok():
    masks.validate_mask_args(2)
    masks.validate_mask_args(32, 0.25, (0.0, 1.0), "discrete", image_size=(32, 32))
    masks.validate_mask_args(np.int64(8), np.float32(0.5), image_size=(224, 224))
    masks.validate_mask_args(4, tf.constant(0.5))  # tensors are not inspected


def test_grid_masks_bad_mask_type():
    with pytest.raises(ValueError, match="mask_type"):
        masks.grid_masks(tf.constant([1, 2]), 2, 4, mask_type="checkerboard")


# ---------------------------------------------------------------------------
# XLA and dynamic shapes
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_grid_masks_xla_equals_graph_and_dynamic_count():
    seed = tf.constant([-12, 34], tf.int32)
    for mask_type in masks.MASK_TYPES:
        fn = lambda s, mt=mask_type: masks.grid_masks(s, 64, 8, mask_type=mt)
        np.testing.assert_array_equal(tf.function(fn, jit_compile=True)(seed).numpy(),
                                      fn(seed).numpy())

        # Dynamic number of masks in a plain graph (per-sample mode with an unknown batch).
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def dyn(x, mt=mask_type):
            return masks.grid_masks(seed, tf.shape(x)[0], 5, mask_type=mt)

        out = dyn(tf.zeros([9, 3]))
        assert out.shape == (9, 5, 5)
        np.testing.assert_array_equal(out.numpy(), masks.grid_masks(seed, 9, 5, mask_type=mask_type))
