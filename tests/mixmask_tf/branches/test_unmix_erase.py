"""Tests of mixing.unmix and mixing.erase against small, independent NumPy references."""

import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf.ops import mixing
from conftest import int_seed
from np_reference import normal_images


def images_np(n=8, h=12, w=20, c=3, seed=0):
    return normal_images((n, h, w, c), seed)


def recover_box(out, x, partner):
    """NumPy: the pixels of `out` taken from `partner` (and not equal to `x`), per batch.

    Returns the bool [H, W] region shared by every image whose partner differs from it.
    """
    regions = []
    for i in range(x.shape[0]):
        if partner[i] is None:
            continue
        own = np.all(out[i] == x[i], axis=-1)
        other = np.all(out[i] == x[partner[i]], axis=-1)
        assert np.all(own | other), "every pixel comes from the image or its partner"
        assert not np.any(own & other)
        regions.append(other)
    for r in regions[1:]:
        np.testing.assert_array_equal(r, regions[0])
    return regions[0]


def bbox(region):
    """(y1, y2, x1, x2) of the smallest rectangle holding `region` (None if empty)."""
    if not region.any():
        return None
    rows = np.where(region.any(axis=1))[0]
    cols = np.where(region.any(axis=0))[0]
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def region_lambda_np(rng, h, w, num):
    """Independent NumPy simulation of the Un-Mix region rule with λ ~ U(0, 1)."""
    lam = rng.random(num)
    cut_h = np.floor(h * np.sqrt(1 - lam)).astype(int)
    cut_w = np.floor(w * np.sqrt(1 - lam)).astype(int)
    cy = rng.integers(0, h, num)
    cx = rng.integers(0, w, num)
    y1 = np.clip(cy - cut_h // 2, 0, h)
    y2 = np.clip(cy - cut_h // 2 + cut_h, 0, h)
    x1 = np.clip(cx - cut_w // 2, 0, w)
    x2 = np.clip(cx - cut_w // 2 + cut_w, 0, w)
    return 1 - (y2 - y1) * (x2 - x1) / (h * w)


def check_switch(x, mix):
    """images[switch_index[i]] is the mixture where image i fills the (1 - M) share."""
    n = x.shape[0]
    images, m = mix.images.numpy(), mix.masks.numpy()
    w, sw_idx, sw_w = mix.weights.numpy(), mix.switch_index.numpy(), mix.switch_weights.numpy()
    assert mix.switch_index.dtype == tf.int32
    assert mix.weights.dtype == tf.float32 and mix.switch_weights.dtype == tf.float32
    np.testing.assert_array_equal(np.sort(sw_idx), np.arange(n))
    assert np.all(w == w[0])
    for i in range(n):
        j = sw_idx[i]
        np.testing.assert_allclose(images[j], m[0] * x[j] + (1 - m[0]) * x[i], rtol=0, atol=1e-6)
        np.testing.assert_allclose(sw_w[i], 1.0 - w[j], rtol=0, atol=1e-7)


# ---------------------------------------------------------------------------
# Un-Mix
# ---------------------------------------------------------------------------


def test_unmix_mixup_mode_matches_numpy():
    x = images_np()
    for s in range(5):
        mix = mixing.unmix(tf.constant(x), int_seed(s), global_prob=1.0)
        lam = float(mix.weights.numpy()[0])
        assert 0.0 <= lam <= 1.0
        assert mix.masks.shape == (1, 12, 20, 1)
        np.testing.assert_array_equal(mix.masks.numpy(), np.full((1, 12, 20, 1), lam, np.float32))
        np.testing.assert_allclose(mix.images.numpy(), lam * x + (1 - lam) * x[::-1],
                                   rtol=0, atol=1e-6)
        np.testing.assert_array_equal(mix.weights.numpy(), np.full(8, lam, np.float32))
        np.testing.assert_array_equal(mix.switch_index.numpy(), np.arange(8)[::-1])
        np.testing.assert_allclose(mix.switch_weights.numpy(), 1 - lam, rtol=0, atol=1e-7)


def test_unmix_region_mode_box():
    h, w = 12, 20
    x = images_np(h=h, w=w, seed=1)
    fn = tf.function(lambda s: mixing.unmix(x, s, global_prob=0.0))
    clipped = 0
    for s in range(40):
        mix = fn(int_seed(s, 1))
        out, lam = mix.images.numpy(), float(mix.weights.numpy()[0])
        inside = recover_box(out, x, [7 - i for i in range(8)])
        # Outside the box the image's own pixels, inside its partner's: exactly.
        np.testing.assert_array_equal(out[:, ~inside], x[:, ~inside])
        np.testing.assert_array_equal(out[:, inside], x[::-1][:, inside])
        np.testing.assert_array_equal(mix.masks.numpy()[0, :, :, 0], 1.0 - inside)
        box = bbox(inside)
        area = 0
        if box is not None:
            y1, y2, x1, x2 = box
            assert inside[y1:y2, x1:x2].all(), "the region is an axis-aligned rectangle"
            area = (y2 - y1) * (x2 - x1)
            hb, wb = y2 - y1, x2 - x1
            if y1 > 0 and y2 < h and x1 > 0 and x2 < w:
                # Unclipped: sides floor(H s) and floor(W s) for one s = sqrt(1 - λ0).
                assert max(hb / h, wb / w) < min((hb + 1) / h, (wb + 1) / w) + 1e-6, (hb, wb)
            else:
                clipped += 1
        assert inside.sum() == area
        np.testing.assert_allclose(lam, 1.0 - area / (h * w), rtol=0, atol=1e-7)
        np.testing.assert_array_equal(mix.weights.numpy(), np.full(8, lam, np.float32))
        np.testing.assert_allclose(mix.switch_weights.numpy(), 1 - lam, rtol=0, atol=1e-7)
    assert clipped > 0


@pytest.mark.parametrize("global_prob", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("permutation", mixing.PERMUTATIONS)
def test_unmix_switch_identity(global_prob, permutation):
    for n in (8, 7):  # odd batch: "reverse" has a fixed point
        x = images_np(n=n, seed=n)
        mix = mixing.unmix(tf.constant(x), int_seed(3, n), global_prob=global_prob,
                           permutation=permutation)
        check_switch(x, mix)
        if permutation == "reverse":
            np.testing.assert_array_equal(mix.switch_index.numpy(), np.arange(n)[::-1])


def _draws(global_prob, beta, num, h=12, w=20):
    x = np.zeros((2, h, w, 1), np.float32)

    @tf.function
    def fn(s):
        mix = mixing.unmix(x, s, global_prob=global_prob, beta=beta)
        return mix.weights, mix.masks

    lam, is_global = [], []
    for s in range(num):
        weights, masks = fn(int_seed(s, 11))
        m = masks.numpy()
        lam.append(weights.numpy()[0])
        is_global.append(not np.all((m == 0) | (m == 1)))
    return np.array(lam), np.array(is_global)


@pytest.mark.parametrize("beta", [1.0, 2.0, 0.5])
def test_unmix_lambda_is_beta(beta):
    lam, is_global = _draws(1.0, beta, 600)
    assert is_global.all()
    assert np.all((lam >= 0) & (lam <= 1))
    var = 1.0 / (4 * (2 * beta + 1))  # Beta(β, β)
    assert abs(lam.mean() - 0.5) < 0.05
    assert abs(lam.var() - var) < 0.25 * var
    # Compare the distribution with NumPy's Beta sampler (two-sample KS distance).
    ref = np.sort(np.random.default_rng(0).beta(beta, beta, 20000))
    grid = np.linspace(0, 1, 101)
    ks = np.max(np.abs(np.searchsorted(np.sort(lam), grid) / lam.size
                       - np.searchsorted(ref, grid) / ref.size))
    assert ks < 0.08


def test_unmix_mode_frequency_and_region_lambda():
    lam, is_global = _draws(0.3, 1.0, 600)
    assert abs(is_global.mean() - 0.3) < 0.07
    # Region mode: λ re-measured on the clipped box, same law as an independent simulation.
    ref = region_lambda_np(np.random.default_rng(1), 12, 20, 100000)
    region = lam[~is_global]
    assert abs(region.mean() - ref.mean()) < 0.04
    assert region.mean() > 0.55  # clipping only shrinks the box
    assert abs(lam[is_global].mean() - 0.5) < 0.07


@pytest.mark.slow
def test_unmix_determinism_seeds_and_xla():
    x = images_np(seed=4)

    def all_modes(x, seed):
        return [mixing.unmix(x, seed, global_prob=p, beta=b, permutation=pm)
                for p, b, pm in [(0.0, 1.0, "reverse"), (1.0, 2.0, "random"),
                                 (0.5, 0.5, "reverse")]]

    seed = tf.constant([2024, 7], tf.int32)
    eager = all_modes(tf.constant(x), seed)
    again = all_modes(tf.constant(x), seed)
    compiled = tf.function(all_modes, jit_compile=True)(tf.constant(x), seed)
    for a, b, c in zip(eager, again, compiled):
        check_switch(x, c)
        for field, u, v, z in zip(mixing.Mixture._fields, a, b, c):
            np.testing.assert_array_equal(u.numpy(), v.numpy(), err_msg=field)
            np.testing.assert_allclose(u.numpy(), z.numpy(), rtol=0, atol=1e-6, err_msg=field)
    other = mixing.unmix(tf.constant(x), tf.constant([2024, 8]), global_prob=1.0)
    assert other.weights.numpy()[0] != compiled[1].weights.numpy()[0]


def test_unmix_dynamic_batch_and_dtype():
    x = images_np(n=6, seed=6)
    fn = tf.function(lambda x: mixing.unmix(x, int_seed(6), global_prob=0.5),
                     input_signature=[tf.TensorSpec([None, 12, 20, 3], tf.float32)])
    check_switch(x, fn(tf.constant(x)))
    out = mixing.unmix(tf.cast(x, tf.bfloat16), int_seed(1))
    assert out.images.dtype == tf.bfloat16 and out.weights.dtype == tf.float32


def test_unmix_validation():
    x = tf.zeros([2, 8, 8, 3])
    for prob in (-0.1, 1.5, "0.5", None):
        with pytest.raises(ValueError, match="global_prob"):
            mixing.unmix(x, int_seed(0), global_prob=prob)
    for beta in (0, -1.0, float("inf"), "1"):
        with pytest.raises(ValueError, match="beta"):
            mixing.unmix(x, int_seed(0), beta=beta)
    with pytest.raises(ValueError, match="unknown permutation"):
        mixing.unmix(x, int_seed(0), permutation="shift")
    with pytest.raises(ValueError, match="static height"):
        tf.function(lambda x: mixing.unmix(x, int_seed(0)),
                    input_signature=[tf.TensorSpec([2, None, None, 3])]).get_concrete_function()


# ---------------------------------------------------------------------------
# Erase
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("num_masks", [1, 8])
def test_erase_zero_matches_numpy(num_masks):
    x = images_np()
    m = (np.random.default_rng(2).random((num_masks, 12, 20, 1)) > 0.5).astype(np.float32)
    out = mixing.erase(tf.constant(x), tf.constant(m), fill="zero")
    np.testing.assert_array_equal(out.numpy(), m * x)
    out16 = mixing.erase(tf.cast(x, tf.bfloat16), m)
    assert out16.dtype == tf.bfloat16


@pytest.mark.parametrize("num_masks", [1, 8])
def test_erase_noise(num_masks):
    x = images_np(h=32, w=32, seed=3) + 10.0  # far from the noise, to tell them apart
    m = (np.random.default_rng(4).random((num_masks, 32, 32, 1)) > 0.5).astype(np.float32)
    out = mixing.erase(tf.constant(x), tf.constant(m), fill="noise", seed=int_seed(5)).numpy()
    keep = np.broadcast_to(m, x.shape) == 1
    np.testing.assert_array_equal(out[keep], x[keep])  # untouched elsewhere
    noise = out[~keep]
    assert noise.size > 10000
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1.0) < 0.05
    assert abs(np.mean(noise ** 3)) < 0.1 and abs(np.mean(noise ** 4) - 3.0) < 0.3
    assert abs(np.mean(np.abs(noise) > 1.96) - 0.05) < 0.01
    # Seeded: same seed same noise (whatever the image), another seed other noise.
    again = mixing.erase(tf.constant(x) * 2, tf.constant(m), fill="noise", seed=int_seed(5)).numpy()
    np.testing.assert_array_equal(again[~keep], noise)
    other = mixing.erase(tf.constant(x), tf.constant(m), fill="noise", seed=int_seed(6)).numpy()
    assert np.mean(other[~keep] == noise) < 0.01
    compiled = tf.function(lambda x, s: mixing.erase(x, m, fill="noise", seed=s),
                           jit_compile=True)(tf.constant(x), int_seed(5)).numpy()
    np.testing.assert_allclose(compiled, out, rtol=0, atol=1e-5)


def test_erase_validation():
    x = tf.zeros([2, 4, 4, 1])
    with pytest.raises(ValueError, match="fill must be one of"):
        mixing.erase(x, tf.ones([1, 4, 4, 1]), fill="mean")
    with pytest.raises(ValueError, match="needs a seed"):
        mixing.erase(x, tf.ones([1, 4, 4, 1]), fill="noise")
