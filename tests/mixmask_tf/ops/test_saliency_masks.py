"""Tests of mixmask_tf.ops.saliency_masks (docs/algorithms.md, "saliency-guided masking") against
small, independent NumPy references."""

import math

import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf.ops import saliency_masks as saliency
from conftest import assert_xla_equal, int_seed
from np_reference import gaussian_blur_np

# ---------------------------------------------------------------------------
# Independent NumPy references
# ---------------------------------------------------------------------------


def foreground_np(maps, std_factor):
    """Cells >= mean - f * std (population std, float64) of each map [N, gh, gw]."""
    maps = np.asarray(maps, np.float64)
    mean = maps.mean(axis=(1, 2), keepdims=True)
    std = maps.std(axis=(1, 2), keepdims=True)
    return maps >= mean - std_factor * std


def counts_np(ratio, fg_fraction, num_cells, fg_cap):
    """(n_fg, n_bg) in plain Python: round() half to even, int() truncation, then the clamps."""
    share = float(ratio) * float(fg_fraction)
    if fg_cap is not None:
        share = min(share, fg_cap)
    n_fg = round(share * num_cells)
    n_bg = int(num_cells * float(ratio)) - n_fg
    num_fg = round(float(fg_fraction) * num_cells)
    return min(max(n_fg, 0), num_fg), min(max(n_bg, 0), num_cells - num_fg)


def share_np(foreground):
    """Foreground share of one map: count / cells in Python floats (as the authors' FG / 49)."""
    return int(foreground.sum()) / foreground.size


def cell_pixels_np(size, cells):
    """Pixel indices of every cell along one axis: pixel p belongs to cell floor(p * cells / size)."""
    owner = np.arange(size) * cells // size
    return [np.flatnonzero(owner == c) for c in range(cells)]


def read_grid_np(mask, grid_h, grid_w):
    """[H, W] mask -> [gh, gw] cell values, asserting that every cell is constant."""
    rows = cell_pixels_np(mask.shape[0], grid_h)
    cols = cell_pixels_np(mask.shape[1], grid_w)
    grid = np.zeros((grid_h, grid_w), mask.dtype)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            block = mask[np.ix_(r, c)]
            assert block.min() == block.max(), "a cell is not constant"
            grid[i, j] = block[0, 0]
    return grid


def solid_square_side_np(region):
    """Side of the square if the True pixels of a 2-D bool map fill one solid square, else None."""
    ys, xs = np.nonzero(region)
    if ys.size == 0:
        return None
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    if h != w or ys.size != h * w:
        return None
    return int(h)


def random_foreground_np(rng, n, grid_h, grid_w):
    """[n, gh, gw] float32 {0, 1} with a random foreground share per image, plus edge cases."""
    fg = (rng.random((n, grid_h, grid_w)) < rng.random((n, 1, 1))).astype(np.float32)
    fg[0] = 1.0  # all foreground
    fg[1] = 0.0  # all background
    fg[2] = 0.0
    fg[2, 1, 1] = 1.0  # exactly one foreground cell
    return fg


# ---------------------------------------------------------------------------
# saliency_maps, foreground_cells
# ---------------------------------------------------------------------------


def test_saliency_maps_sum_channels():
    x = np.random.default_rng(0).normal(size=(3, 7, 5, 6)).astype(np.float32)
    out = saliency.saliency_maps(x).numpy()
    assert out.shape == (3, 7, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out, x.sum(axis=-1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="g_h, g_w, K"):
        saliency.saliency_maps(x[0])


@pytest.mark.parametrize("std_factor", [0.0, 0.6, 1.5])
def test_foreground_cells_matches_numpy(std_factor):
    rng = np.random.default_rng(1)
    maps = (rng.gamma(2.0, size=(32, 7, 7)) * rng.uniform(0.1, 50.0, size=(32, 1, 1))).astype(np.float32)
    out = saliency.foreground_cells(maps, std_factor).numpy()
    assert out.shape == maps.shape and out.dtype == np.float32 and set(np.unique(out)) <= {0.0, 1.0}
    expected = foreground_np(maps, std_factor)
    m64 = maps.astype(np.float64)
    threshold = m64.mean(axis=(1, 2), keepdims=True) - std_factor * m64.std(axis=(1, 2), keepdims=True)
    clear = np.abs(m64 - threshold) > 1e-4 * np.abs(m64).max(axis=(1, 2), keepdims=True)
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(out.astype(bool)[clear], expected[clear])


def test_foreground_cells_constant_map_and_population_std():
    const = np.full((2, 7, 7), 0.1, np.float32)
    const[1] = 1234.567
    np.testing.assert_array_equal(saliency.foreground_cells(const).numpy(), 1.0)
    # [[0, 0], [0, 1]]: mean 0.25, population std 0.433, sample std 0.5. At f = 0.55 the zeros are
    # foreground only with the sample std (0.25 - 0.275 < 0); the population std keeps them out.
    m = np.array([[[0.0, 0.0], [0.0, 1.0]]], np.float32)
    np.testing.assert_array_equal(saliency.foreground_cells(m, 0.55).numpy(), foreground_np(m, 0.55))
    np.testing.assert_array_equal(saliency.foreground_cells(m, 0.55).numpy()[0], [[0, 0], [0, 1]])
    with pytest.raises(ValueError, match="std_factor"):
        saliency.foreground_cells(m, -1.0)


# ---------------------------------------------------------------------------
# cell_counts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("num_cells", [4, 16, 49])
@pytest.mark.parametrize("fg_cap", [0.55, None, 0.1])
def test_cell_counts_grid(num_cells, fg_cap):
    ratios, fgs = [], []
    for r in np.linspace(0.0, 1.0, 41):
        for k in range(num_cells + 1):
            ratios.append(r)
            fgs.append(k / num_cells)
    n_fg, n_bg = saliency.cell_counts(tf.constant(ratios, tf.float64), tf.constant(fgs, tf.float64),
                                      num_cells, fg_cap)
    assert n_fg.dtype == tf.int32 and n_bg.dtype == tf.int32
    expected = np.array([counts_np(r, f, num_cells, fg_cap) for r, f in zip(ratios, fgs)])
    np.testing.assert_array_equal(n_fg.numpy(), expected[:, 0])
    np.testing.assert_array_equal(n_bg.numpy(), expected[:, 1])


def test_cell_counts_hand_cases():
    cases = [  # (ratio, fg_fraction, cells, cap) -> (n_fg, n_bg)
        ((0.25, 0.5, 49, 0.55), (6, 6)),     # round(6.125), int(12.25) - 6
        ((0.1, 1.0, 49, 0.55), (5, 0)),      # int(4.9) - round(4.9) = -1 -> 0
        ((0.7, 1.0, 49, 0.55), (27, 0)),     # capped: round(26.95); no background cell
        ((0.9, 0.8, 49, 0.55), (27, 10)),    # capped; 44 - 27 = 17 > 10 background cells
        ((0.5, 0.25, 4, None), (0, 2)),      # round(0.5) = 0 (half to even)
        ((0.75, 0.5, 4, None), (2, 1)),      # round(1.5) = 2
        ((0.3, 0.0, 49, 0.55), (0, 14)),     # no foreground
    ]
    for (r, f, cells, cap), want in cases:
        got = saliency.cell_counts(tf.constant([r]), tf.constant([f], tf.float64), cells, cap)
        assert (int(got[0][0]), int(got[1][0])) == want == counts_np(np.float32(r), f, cells, cap)
    with pytest.raises(ValueError, match="num_cells"):
        saliency.cell_counts([0.1], [0.5], 0)
    with pytest.raises(ValueError, match="fg_cap"):
        saliency.cell_counts([0.1], [0.5], 49, fg_cap=1.5)


def _authors_masked_cells(n_fg, n_bg, num_fg, num_cells):
    """Cells the authors mask for raw counts (n_fg, n_bg): Python slices ``idxs[:num]`` of each pool
    (``hp.py`` 103), the background drawn only from a non-empty pool. -> (foreground, background)."""
    fg_pool, bg_pool = list(range(num_fg)), list(range(num_fg, num_cells))
    return len(fg_pool[:n_fg]), (len(bg_pool[:n_bg]) if bg_pool else 0)


def test_cell_counts_docstring_example():
    # 49 cells, 46 foreground, r = 0.1: raw counts round(4.6) = 5 and floor(4.9) - 5 = -1; the
    # authors' bg_idxs[:-1] masks 2 of the 3 background cells, we mask none.
    assert (round(0.1 * 46), math.floor(49 * 0.1) - round(0.1 * 46)) == (5, -1)
    assert _authors_masked_cells(5, -1, 46, 49) == (5, 2)
    n_fg, n_bg = saliency.cell_counts([0.1], [46 / 49], 49)
    assert (n_fg.numpy().tolist(), n_bg.numpy().tolist()) == ([5], [0])
    # Every cell foreground: the background pool is empty, the authors mask no background cell,
    # and neither do we.
    assert _authors_masked_cells(5, -1, 49, 49) == (5, 0)
    n_fg, n_bg = saliency.cell_counts([0.1], [1.0], 49)
    assert (n_fg.numpy().tolist(), n_bg.numpy().tolist()) == ([5], [0])


# ---------------------------------------------------------------------------
# select_cells
# ---------------------------------------------------------------------------


def test_select_cells_exact_counts_inside_pool():
    rng = np.random.default_rng(2)
    pool = (rng.random((64, 6, 5)) < rng.random((64, 1, 1))).astype(np.float32)
    counts = rng.integers(-2, 40, size=64).astype(np.int32)
    out = saliency.select_cells(int_seed(3), pool, counts).numpy()
    assert out.shape == pool.shape and out.dtype == np.float32 and set(np.unique(out)) <= {0.0, 1.0}
    assert not (out * (1 - pool)).any()
    np.testing.assert_array_equal(out.sum(axis=(1, 2)), np.minimum(np.maximum(counts, 0), pool.sum(axis=(1, 2))))
    assert_xla_equal(lambda s: saliency.select_cells(s, pool, counts), int_seed(-5, 9))


def test_select_cells_uniform():
    pool = np.zeros((4000, 4, 4), np.float32)
    pool[:, [0, 0, 1, 2, 3, 3, 3, 2, 1, 0], [0, 3, 1, 2, 0, 1, 3, 0, 3, 1]] = 1.0  # 10 cells
    out = saliency.select_cells(int_seed(11), pool, np.full(4000, 3, np.int32)).numpy()
    freq = out.mean(axis=0)
    assert np.abs(freq[pool[0] == 1] - 0.3).max() < 0.03, freq  # one std is 0.007
    assert freq[pool[0] == 0].max() == 0.0


# ---------------------------------------------------------------------------
# query_masks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.05, 0.15, 0.25, 0.8])
def test_query_masks_spatial_counts(ratio):
    grid_h, grid_w, height, width = 7, 5, 30, 26
    fg = random_foreground_np(np.random.default_rng(4), 24, grid_h, grid_w)
    out, stats = saliency.query_masks(int_seed(5), fg, height, width, 2, ratio_range=(ratio, ratio),
                                      focal_prob=0.0, spatial_prob=1.0)
    out = out.numpy()
    assert out.shape == (24, height, width, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    masked_total = 0
    for i in range(24):
        masked = read_grid_np(out[i, :, :, 0], grid_h, grid_w) == 0
        want = counts_np(ratio, share_np(fg[i]), grid_h * grid_w, 0.55)
        assert (masked & (fg[i] == 1)).sum() == want[0]
        assert (masked & (fg[i] == 0)).sum() == want[1]
        masked_total += (1 - out[i]).sum()
    np.testing.assert_allclose(stats["mask_ratio"].numpy(), masked_total / out.size, rtol=1e-5)
    np.testing.assert_allclose(stats["fg_ratio"].numpy(), fg.mean(), rtol=1e-5)


def test_query_masks_ratio_range_bounds():
    fg = random_foreground_np(np.random.default_rng(6), 64, 7, 7)
    out = saliency.query_masks(int_seed(6), fg, 28, 28, 1, focal_prob=0.0, spatial_prob=1.0)[0].numpy()
    for i in range(64):
        masked = read_grid_np(out[i, :, :, 0], 7, 7) == 0
        n_fg = int((masked & (fg[i] == 1)).sum())
        # Some r in [0.05, 0.25] gives these counts.
        assert any(counts_np(r, share_np(fg[i]), 49, 0.55) == (n_fg, int(masked.sum()) - n_fg)
                   for r in np.linspace(0.05, 0.25, 401))


def test_query_masks_channel_independent():
    fg = random_foreground_np(np.random.default_rng(7), 32, 7, 7)
    out = saliency.query_masks(int_seed(8), fg, 28, 28, 3, ratio_range=(0.2, 0.2), focal_prob=0.0,
                               spatial_prob=0.0)[0].numpy()
    differ = 0
    for i in range(32):
        want = counts_np(0.2, share_np(fg[i]), 49, 0.55)
        grids = [read_grid_np(out[i, :, :, c], 7, 7) == 0 for c in range(3)]
        for masked in grids:
            assert ((masked & (fg[i] == 1)).sum(), (masked & (fg[i] == 0)).sum()) == want
        differ += not (np.array_equal(grids[0], grids[1]) and np.array_equal(grids[0], grids[2]))
    assert differ >= 28


@pytest.mark.parametrize("focal_size,expected_side", [(None, 25), (10, 10)])
def test_query_masks_focal(focal_size, expected_side):
    fg = random_foreground_np(np.random.default_rng(9), 16, 7, 7)
    out = saliency.query_masks(int_seed(10), fg, 28, 28, 3, focal_prob=1.0, focal_size=focal_size)[0].numpy()
    tops = set()
    for i in range(16):
        np.testing.assert_array_equal(out[i, ..., 0], out[i, ..., 2])
        assert solid_square_side_np(out[i, ..., 0] == 1) == expected_side  # round(200 / 224 * 28) = 25
        tops.add(tuple(np.argwhere(out[i, ..., 0] == 1)[0]))
    assert len(tops) > 1


def test_query_masks_probabilities():
    n = 2000
    fg = random_foreground_np(np.random.default_rng(12), n, 7, 7)
    out = saliency.query_masks(int_seed(13), fg, 14, 14, 3, ratio_range=(0.2, 0.25))[0].numpy()
    focal = spatial = 0
    for m in out:
        same = np.array_equal(m[..., 0], m[..., 1]) and np.array_equal(m[..., 0], m[..., 2])
        if same and solid_square_side_np(m[..., 0] == 1) == 12:  # round(200 / 224 * 14)
            focal += 1
        elif same:
            spatial += 1
    assert abs(focal / n - 0.2) < 0.04  # one std is 0.009
    assert abs(spatial / (n - focal) - 0.3) < 0.05


@pytest.mark.slow
def test_query_and_negative_masks_xla_equal_eager():
    fg = random_foreground_np(np.random.default_rng(14), 12, 7, 7)

    def query(s):
        return saliency.query_masks(s, fg, 28, 28, 3, focal_prob=0.4, spatial_prob=0.5)[0]

    def negative(s):
        return saliency.negative_masks(s, fg, 28, 28, 3, focal_prob=0.4, spatial_prob=0.5, fg_cap=0.55)[0]

    for seed in (int_seed(15, 16), tf.constant([2 ** 40, -(2 ** 50)], tf.int64)):
        assert_xla_equal(query, seed)
        assert_xla_equal(negative, seed)
    assert not np.array_equal(query(int_seed(1)).numpy(), query(int_seed(2)).numpy())


def test_query_masks_dynamic_batch():
    fg = random_foreground_np(np.random.default_rng(17), 6, 7, 7)
    expected = saliency.query_masks(int_seed(18), fg, 28, 28, 3)[0].numpy()

    @tf.function(input_signature=[tf.TensorSpec([None, 7, 7], tf.float32)])
    def dynamic(x):
        return saliency.query_masks(int_seed(18), x, 28, 28, 3)[0]

    np.testing.assert_array_equal(dynamic(fg).numpy(), expected)


@pytest.mark.parametrize("kwargs,match", [
    (dict(ratio_range=(0.3, 0.2)), "ratio_range"),
    (dict(ratio_range=0.2), "ratio_range"),
    (dict(focal_prob=1.5), "focal_prob"),
    (dict(spatial_prob=-0.1), "spatial_prob"),
    (dict(fg_cap=2.0), "fg_cap"),
    (dict(channels=0), "channels"),
    (dict(height=6), "saliency grid"),
    (dict(focal_size=40), "focal size"),
])
def test_query_masks_bad_args(kwargs, match):
    args = dict(seed=int_seed(0), foreground=np.ones((2, 7, 7), np.float32), height=28, width=28, channels=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        saliency.query_masks(**args)


# ---------------------------------------------------------------------------
# negative_masks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ratio,fg_cap,spatial_prob", [(0.4, None, 1.0), (0.7, None, 1.0), (0.9, 0.55, 1.0),
                                                       (0.5, None, 0.0)])
def test_negative_masks_foreground_only(ratio, fg_cap, spatial_prob):
    fg = random_foreground_np(np.random.default_rng(19), 24, 7, 7)
    out, stats = saliency.negative_masks(int_seed(20), fg, 30, 30, 3, ratio_range=(ratio, ratio), fg_cap=fg_cap,
                                         spatial_prob=spatial_prob)
    out = out.numpy()
    assert out.shape == (24, 30, 30, 3) and out.dtype == np.float32
    differ = 0
    for i in range(24):
        grids = [read_grid_np(out[i, :, :, c], 7, 7) == 0 for c in range(3)]
        for masked in grids:
            assert not (masked & (fg[i] == 0)).any()
            assert masked.sum() == counts_np(ratio, share_np(fg[i]), 49, fg_cap)[0]
        differ += not (np.array_equal(grids[0], grids[1]) and np.array_equal(grids[0], grids[2]))
    assert differ == 0 if spatial_prob == 1.0 else differ >= 15
    np.testing.assert_allclose(stats["negative_mask_ratio"].numpy(), 1.0 - out.mean(), rtol=1e-5)


def test_negative_masks_focal_masks_a_square():
    fg = random_foreground_np(np.random.default_rng(21), 8, 7, 7)
    out = saliency.negative_masks(int_seed(22), fg, 28, 28, 3, focal_prob=1.0)[0].numpy()
    for m in out:
        np.testing.assert_array_equal(m[..., 0], m[..., 1])
        assert solid_square_side_np(m[..., 0] == 0) == 16  # round(130 / 224 * 28)


# ---------------------------------------------------------------------------
# fill, hard_negative_logits
# ---------------------------------------------------------------------------


def _fill_inputs(shape, mask_channels, seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=shape).astype(np.float32)
    masks = (rng.random(shape[:3] + (mask_channels,)) < 0.5).astype(np.float32)
    return images, masks


def test_fill_blur_matches_numpy():
    images, masks = _fill_inputs((2, 20, 24, 3), 1, 23)
    out = saliency.fill(images, masks, "blur", blur_sigma=2.0, blur_radius=3).numpy()
    np.testing.assert_allclose(out, masks * images + (1 - masks) * gaussian_blur_np(images, 2.0, 3), atol=1e-5)
    # Defaults at 32 px: sigma = 10 * 32 / 224, radius = round(15 * 32 / 224) = 2.
    images, masks = _fill_inputs((2, 32, 40, 3), 3, 24)
    out = saliency.fill(images, masks, "blur").numpy()
    blurred = gaussian_blur_np(images, 10.0 * 32 / 224, 2)
    np.testing.assert_allclose(out, masks * images + (1 - masks) * blurred, atol=1e-5)
    # Only a sigma: radius round(1.5 * sigma).
    out = saliency.fill(images, masks, "blur", blur_sigma=2.0).numpy()
    np.testing.assert_allclose(out, masks * images + (1 - masks) * gaussian_blur_np(images, 2.0, 3), atol=1e-5)
    assert saliency.default_blur(224, 224) == (10.0, 15)


def test_fill_mean_matches_numpy():
    images, masks = _fill_inputs((3, 10, 12, 3), 3, 25)
    out = saliency.fill(images, masks, "mean").numpy()
    mean = images.astype(np.float64).mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out, masks * images + (1 - masks) * mean, atol=1e-6)


def test_fill_highpass_noise():
    images, masks = _fill_inputs((4, 32, 32, 3), 3, 26)
    out = saliency.fill(images, masks, "highpass", seed=int_seed(27), noise_std=0.18).numpy()
    keep = masks == 1
    np.testing.assert_array_equal(out[keep], images[keep])
    noise = out[~keep]
    assert noise.size > 5000
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.18) < 0.01


@pytest.mark.parametrize("kwargs,match", [
    (dict(strategy="zero"), "strategy"),
    (dict(strategy="highpass"), "seed"),
    (dict(strategy="blur", blur_sigma=-1.0), "blur_sigma"),
    (dict(strategy="blur", blur_radius=40), "radius"),
])
def test_fill_bad_args(kwargs, match):
    images, masks = _fill_inputs((1, 16, 16, 3), 1, 28)
    with pytest.raises(ValueError, match=match):
        saliency.fill(images, masks, **kwargs)


def test_hard_negative_logits_matches_numpy():
    rng = np.random.default_rng(29)
    q, n = rng.normal(size=(2, 6, 8)).astype(np.float32)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    nn = n / np.linalg.norm(n, axis=1, keepdims=True)
    expected = 2.0 * (qn * nn).sum(axis=1) / 0.2
    out = saliency.hard_negative_logits(q, n, 0.2, 2.0).numpy()
    assert out.shape == (6,) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(saliency.hard_negative_logits(qn, nn, 0.2, 2.0).numpy(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        saliency.hard_negative_logits(q, n, 0.0, 2.0)
