"""Tests of the MSCN masks (mixmask_tf.ops.masks) and the noise_std of mixing.erase, against small,
independent NumPy references."""

import math

import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf.ops import mixing
from mixmask_tf.ops import mscn_masks as masks
from conftest import assert_xla_equal, int_seed

# ---------------------------------------------------------------------------
# Independent NumPy references
# ---------------------------------------------------------------------------


def masked_count_np(grid_size, ratio):
    """round(ratio * G^2), halves rounded up (not Python's half-to-even)."""
    return int(np.floor(np.float64(ratio) * grid_size * grid_size + 0.5))


def upsample_np(grid, height, width):
    """Nearest upsampling [..., G, G] -> [..., H, W]: pixel p takes cell floor(p * G / H)."""
    g = grid.shape[-1]
    ys = np.arange(height) * g // height
    xs = np.arange(width) * g // width
    return grid[..., ys[:, None], xs[None, :]]


def grid_from_pixels_np(mask, grid_size):
    """[..., H, W] -> [..., G, G]: the value at the first pixel of every nearest cell."""
    height, width = mask.shape[-2:]
    ys = [-(-c * height // grid_size) for c in range(grid_size)]  # ceil(c * H / G)
    xs = [-(-c * width // grid_size) for c in range(grid_size)]
    return mask[..., ys, :][..., xs]


def square_np(mask):
    """(top, left, side) if the ones of the 2-D mask form one solid square, else None."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    if h != w or mask.sum() != h * w or not mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all():
        return None
    return int(rows[0]), int(cols[0]), int(h)


def classify_np(mask, focal_size):
    """One [H, W, C] MSCN mask -> "none", "focal", "grid_shared" or "grid_channel"."""
    if mask.all():
        return "none"
    same = all(np.array_equal(mask[..., 0], mask[..., c]) for c in range(mask.shape[-1]))
    if same:
        sq = square_np(mask[..., 0])
        if sq is not None and sq[2] == focal_size:
            return "focal"
        return "grid_shared"
    return "grid_channel"


# ---------------------------------------------------------------------------
# random_grid_masks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("grid_size,ratio", [
    (1, 0.0), (1, 0.4), (1, 0.5), (2, 0.625), (4, 0.0), (4, 0.15), (4, 0.5), (7, 0.15), (7, 0.99),
    (14, 0.3),
])
def test_random_grid_exact_masked_count(grid_size, ratio):
    out = masks.random_grid_masks(int_seed(grid_size, 5), 64, grid_size, ratio).numpy()
    assert out.shape == (64, grid_size, grid_size) and out.dtype == np.float32
    assert set(np.unique(out)) <= {0.0, 1.0}
    expected = masked_count_np(grid_size, ratio)
    np.testing.assert_array_equal((out == 0).sum(axis=(1, 2)), expected)


def test_random_grid_rounds_half_up():
    # 0.625 * 4 = 2.5 and 0.5 * 1 = 0.5 exactly: half up gives 3 and 1 (half to even: 2 and 0).
    assert masks.num_masked_cells(2, 0.625) == 3 == masked_count_np(2, 0.625)
    assert masks.num_masked_cells(1, 0.5) == 1
    assert masks.num_masked_cells(7, 0.15) == 7  # 7.35


def test_random_grid_cells_uniform():
    # Every cell masked with frequency r (k = 4 of 16), over a batch and over several seeds.
    batch = np.concatenate([masks.random_grid_masks(int_seed(s, 9), 500, 4, 0.25).numpy()
                            for s in range(8)])
    freq = (batch == 0).mean(axis=0)
    assert np.abs(freq - 0.25).max() < 0.04, freq  # 4000 masks: one std is 0.007
    # Pairs of cells are (nearly) exchangeable: P(both masked) = C(14, 2) / C(16, 4) = 0.05.
    flat = (batch == 0).reshape(len(batch), 16)
    both = (flat[:, :, None] & flat[:, None, :]).mean(axis=0)[~np.eye(16, dtype=bool)]
    assert np.abs(both - 0.05).max() < 0.03


def test_random_grid_determinism_and_xla():
    a = masks.random_grid_masks(int_seed(1, 2), 32, 7, 0.3).numpy()
    np.testing.assert_array_equal(a, masks.random_grid_masks(int_seed(1, 2), 32, 7, 0.3).numpy())
    assert not np.array_equal(a, masks.random_grid_masks(int_seed(1, 3), 32, 7, 0.3).numpy())
    assert len({m.tobytes() for m in a}) > 28  # independent within a call
    fn = lambda s: masks.random_grid_masks(s, 256, 7, 0.3)
    for seed in (int_seed(-4, 7), tf.constant([2 ** 40, -(2 ** 50)], tf.int64)):
        assert_xla_equal(fn, seed)


def test_random_grid_tensor_num_masks():
    seed = int_seed(3, 3)
    expected = masks.random_grid_masks(seed, 9, 5, 0.4).numpy()
    np.testing.assert_array_equal(masks.random_grid_masks(seed, tf.constant(9), 5, 0.4).numpy(),
                                  expected)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def dynamic(x):
        return masks.random_grid_masks(seed, tf.shape(x)[0], 5, 0.4)

    np.testing.assert_array_equal(dynamic(tf.zeros([9])).numpy(), expected)


@pytest.mark.parametrize("kwargs,match", [
    (dict(ratio=1.0), r"ratio .* \[0, 1\)"),
    (dict(ratio=-0.1), r"ratio .* \[0, 1\)"),
    (dict(ratio="0.5"), r"ratio .* \[0, 1\)"),
    (dict(grid_size=0), "grid_size must be an integer >= 1"),
    (dict(grid_size=4.0), "grid_size must be an integer >= 1"),
    (dict(num_masks=-1), "num_masks must be an integer >= 0"),
])
def test_random_grid_bad_args(kwargs, match):
    args = dict(num_masks=2, grid_size=4, ratio=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        masks.random_grid_masks(int_seed(0), **args)


# ---------------------------------------------------------------------------
# focal_masks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("height,width,size", [(12, 9, 5), (8, 8, 8), (7, 10, 1)])
def test_focal_masks_one_square(height, width, size):
    out = masks.focal_masks(int_seed(height, size), 600, height, width, size).numpy()
    assert out.shape == (600, height, width, 1) and out.dtype == np.float32
    assert set(np.unique(out)) <= {0.0, 1.0}
    tops, lefts = [], []
    for m in out[..., 0]:
        sq = square_np(m)
        assert sq is not None and sq[2] == size
        top, left, _ = sq
        assert 0 <= top <= height - size and 0 <= left <= width - size
        tops.append(top)
        lefts.append(left)
    # Every position reachable: the full inclusive range is seen (600 draws, at most 8 values).
    assert set(tops) == set(range(height - size + 1))
    assert set(lefts) == set(range(width - size + 1))


def test_focal_masks_xla_and_seeds():
    fn = lambda s: masks.focal_masks(s, 128, 32, 30, 13)
    assert_xla_equal(fn, int_seed(-8, 1))
    assert not np.array_equal(fn(int_seed(1)).numpy(), fn(int_seed(2)).numpy())


@pytest.mark.parametrize("size", [0, 9, 2.0])
def test_focal_masks_bad_size(size):
    with pytest.raises(ValueError, match="focal size"):
        masks.focal_masks(int_seed(0), 2, 8, 10, size)


# ---------------------------------------------------------------------------
# mscn_masks
# ---------------------------------------------------------------------------

H, W, C, G = 16, 12, 3, 4
ARGS = dict(height=H, width=W, channels=C, grid_size=G, ratio=0.3, focal_size=7)


def mscn(seed, num, **kwargs):
    return masks.mscn_masks(int_seed(*seed), num, **{**ARGS, **kwargs}).numpy()


def test_mscn_all_focal():
    out = mscn((1, 1), 200, focal_prob=1.0, channel_prob=0.5)
    assert out.shape == (200, H, W, C) and out.dtype == np.float32
    assert all(classify_np(m, 7) == "focal" for m in out)


def test_mscn_grid_shared_matches_nearest_reference():
    out = mscn((2, 1), 200, focal_prob=0.0, channel_prob=0.0)
    np.testing.assert_array_equal(out, np.repeat(out[..., :1], C, axis=-1))
    pixels = np.moveaxis(out, -1, 1)  # [N, C, H, W]
    grids = grid_from_pixels_np(pixels, G)
    np.testing.assert_array_equal(upsample_np(grids, H, W), pixels)
    np.testing.assert_array_equal((grids == 0).sum(axis=(-2, -1)), masked_count_np(G, 0.3))
    assert len({g.tobytes() for g in grids[:, 0]}) > 150


def test_mscn_grid_channel_independent():
    out = mscn((3, 1), 200, focal_prob=0.0, channel_prob=1.0)
    pixels = np.moveaxis(out, -1, 1)
    grids = grid_from_pixels_np(pixels, G)
    np.testing.assert_array_equal(upsample_np(grids, H, W), pixels)
    np.testing.assert_array_equal((grids == 0).sum(axis=(-2, -1)), masked_count_np(G, 0.3))
    differ = [not (np.array_equal(g[0], g[1]) and np.array_equal(g[0], g[2])) for g in grids]
    assert np.mean(differ) > 0.95


def test_mscn_mask_prob_zero_all_ones():
    out = mscn((4, 1), 50, focal_prob=0.5, channel_prob=0.5, mask_prob=0.0)
    np.testing.assert_array_equal(out, 1.0)
    assert float(masks.mscn_mask_stats(out)["mask_ratio"]) == 0.0


def test_mscn_frequencies_and_stats():
    n = 2000
    out = mscn((5, 1), n, focal_prob=0.4, channel_prob=0.7, mask_prob=0.8)
    kinds = [classify_np(m, 7) for m in out]
    freq = {k: kinds.count(k) / n for k in ("none", "focal", "grid_shared", "grid_channel")}
    expected = {"none": 0.2, "focal": 0.8 * 0.4, "grid_shared": 0.8 * 0.6 * 0.3,
                "grid_channel": 0.8 * 0.6 * 0.7}
    for k, p in expected.items():
        assert abs(freq[k] - p) < 0.05, (k, freq)  # one std is at most 0.011
    stats = masks.mscn_mask_stats(tf.constant(out))
    assert stats["mask_ratio"].dtype == tf.float32
    np.testing.assert_allclose(float(stats["mask_ratio"]), (1.0 - out).mean(), rtol=1e-5)


def test_mscn_xla_static_and_dynamic():
    fn = lambda s: masks.mscn_masks(s, 64, focal_prob=0.4, channel_prob=0.7, mask_prob=0.9, **ARGS)
    seed = tf.constant([-3, 2 ** 40], tf.int64)
    assert_xla_equal(fn, seed)
    a = fn(seed).numpy()
    np.testing.assert_array_equal(a, fn(seed).numpy())
    assert not np.array_equal(a, fn(seed + 1).numpy())
    graph = tf.function(fn).get_concrete_function(tf.TensorSpec([2], tf.int64))
    assert graph.structured_outputs.shape == (64, H, W, C)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def dynamic(x):
        return masks.mscn_masks(seed, tf.shape(x)[0], focal_prob=0.4, channel_prob=0.7,
                                mask_prob=0.9, **ARGS)

    np.testing.assert_array_equal(dynamic(tf.zeros([64])).numpy(), a)


@pytest.mark.parametrize("kwargs,match", [
    (dict(ratio=1.5), "ratio"),
    (dict(focal_size=0), "focal size"),
    (dict(focal_size=H + 1), "focal size"),
    (dict(focal_prob=-0.1), "focal_prob must be a probability"),
    (dict(channel_prob=1.1), "channel_prob must be a probability"),
    (dict(mask_prob=-0.1), "mask_prob must be a probability"),
    (dict(grid_size=13), "grid size 13 is larger than the 16x12 image"),
    (dict(channels=0), "channels must be an integer >= 1"),
])
def test_mscn_bad_args(kwargs, match):
    args = {**ARGS, "focal_prob": 0.4, "channel_prob": 0.7, **kwargs}
    with pytest.raises(ValueError, match=match):
        masks.mscn_masks(int_seed(0), 2, **args)


# ---------------------------------------------------------------------------
# erase: noise_std and per-channel masks
# ---------------------------------------------------------------------------


def _erase_inputs(n=4, h=16, w=16, c=3):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(n, h, w, c)).astype(np.float32)
    per_channel = (rng.random((n, h, w, c)) < 0.6).astype(np.float32)
    return images, per_channel


def test_erase_per_channel_noise_reference():
    images, m = _erase_inputs()
    seed = int_seed(6, 6)
    # The noise itself: everything erased, standard deviation 1.
    z = mixing.erase(np.zeros_like(images), np.zeros_like(m), "noise", seed).numpy()
    for std in (1.0, 0.18):
        out = mixing.erase(images, m, "noise", seed, noise_std=std).numpy()
        np.testing.assert_allclose(out, m * images + (1 - m) * (std * z), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(mixing.erase(images, m, "zero").numpy(), m * images)


def test_erase_noise_std_scales():
    images, _ = _erase_inputs(n=8, h=32, w=32)
    holes = np.zeros((1, 32, 32, 1), np.float32)
    for std in (0.18, 1.0, 3.0):
        out = mixing.erase(images, holes, "noise", int_seed(7), noise_std=std).numpy()
        assert abs(out.std() / std - 1.0) < 0.05 and abs(out.mean()) < 0.05 * std


def test_erase_default_noise_std_unchanged():
    images, m = _erase_inputs()
    for masks_ in (m, m[..., :1], m[:1, ..., :1]):
        a = mixing.erase(images, masks_, "noise", int_seed(8))
        b = mixing.erase(images, masks_, "noise", int_seed(8), noise_std=1.0)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    fn = lambda s: mixing.erase(images, m, "noise", s, noise_std=0.18)
    # Box–Muller float math may round differently under XLA: compared with a tolerance.
    np.testing.assert_allclose(tf.function(fn, jit_compile=True)(int_seed(8)).numpy(),
                               fn(int_seed(8)).numpy(), atol=1e-5)


@pytest.mark.parametrize("noise_std", [0.0, -1.0, math.inf, math.nan, "1"])
def test_erase_bad_noise_std(noise_std):
    images, m = _erase_inputs(n=1)
    with pytest.raises(ValueError, match="noise_std"):
        mixing.erase(images, m, "noise", int_seed(1), noise_std=noise_std)


def test_erase_bad_mask_channels():
    images, m = _erase_inputs(n=1)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        mixing.erase(images, m[..., :2], "zero")
