"""Tests of mixmask_tf.ops.mixing against small, independent NumPy references."""

import itertools
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf.ops import masks, mixing
from np_reference import normal_images


def mix_np(x, m, perm):
    """NumPy reference: m * x + (1 - m) * x[perm]; m is [1 or N, H, W, 1]."""
    return m * x + (1.0 - m) * x[perm]


def images_np(n=8, h=12, w=10, c=3, seed=0):
    return normal_images((n, h, w, c), seed)


# ---------------------------------------------------------------------------
# Permutations
# ---------------------------------------------------------------------------


def test_reverse_permutation():
    for n in (1, 2, 7, 8):
        p = mixing.reverse_permutation(n)
        assert p.dtype == tf.int32
        np.testing.assert_array_equal(p.numpy(), np.arange(n)[::-1])
        np.testing.assert_array_equal(mixing.inverse_permutation(p).numpy(), p.numpy())


@pytest.mark.parametrize("n", [1, 5, 64, 513])
def test_random_permutation_is_permutation_and_inverse(n):
    p = mixing.random_permutation(tf.constant([3, n]), n)
    assert p.dtype == tf.int32 and p.shape == (n,)
    np.testing.assert_array_equal(np.sort(p.numpy()), np.arange(n))
    inv = mixing.inverse_permutation(p).numpy()
    np.testing.assert_array_equal(p.numpy()[inv], np.arange(n))
    np.testing.assert_array_equal(inv[p.numpy()], np.arange(n))
    np.testing.assert_array_equal(inv, np.argsort(p.numpy()))


def test_random_permutation_seeded_and_uniform():
    a = mixing.random_permutation(tf.constant([1, 2]), 16).numpy()
    np.testing.assert_array_equal(a, mixing.random_permutation(tf.constant([1, 2]), 16).numpy())
    assert not np.array_equal(a, mixing.random_permutation(tf.constant([1, 3]), 16).numpy())
    fn = tf.function(lambda s: mixing.random_permutation(s, 3))
    counts = Counter(tuple(fn(tf.constant([i, 5])).numpy()) for i in range(1200))
    assert set(counts) == set(itertools.permutations(range(3)))
    assert min(counts.values()) > 140 and max(counts.values()) < 260  # expected 200 each


def test_make_permutation():
    seed = tf.constant([4, 2])
    np.testing.assert_array_equal(mixing.make_permutation("reverse", seed, 4).numpy(), [3, 2, 1, 0])
    np.testing.assert_array_equal(mixing.make_permutation("random", seed, 9).numpy(),
                                  mixing.random_permutation(seed, 9).numpy())
    with pytest.raises(ValueError, match="unknown permutation"):
        mixing.make_permutation("shift", seed, 4)


# ---------------------------------------------------------------------------
# mix_images
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("num_masks", [1, 8])
def test_mix_images_matches_numpy(num_masks):
    x = images_np()
    m = (np.random.default_rng(1).random((num_masks, 12, 10, 1)) > 0.5).astype(np.float32)
    perm = np.random.default_rng(2).permutation(8).astype(np.int32)
    out = mixing.mix_images(tf.constant(x), tf.constant(m), tf.constant(perm))
    np.testing.assert_allclose(out.numpy(), mix_np(x, m, perm), rtol=0, atol=1e-6)
    # M = 1 keeps the image's own pixels.
    ones = mixing.mix_images(x, np.ones((1, 12, 10, 1), np.float32), perm)
    np.testing.assert_array_equal(ones.numpy(), x)


def test_mix_images_keeps_dtype():
    x = tf.cast(images_np(n=4), tf.bfloat16)
    out = mixing.mix_images(x, tf.ones([1, 12, 10, 1]), mixing.reverse_permutation(4))
    assert out.dtype == tf.bfloat16


# ---------------------------------------------------------------------------
# mixmask: the switch identity
# ---------------------------------------------------------------------------


def check_mixture(x, mix, per_sample):
    """Checks a Mixture against NumPy, from its masks and switch_index only."""
    n = x.shape[0]
    images = mix.images.numpy()
    m = mix.masks.numpy()
    w = mix.weights.numpy()
    sw_idx = mix.switch_index.numpy()
    sw_w = mix.switch_weights.numpy()
    assert images.shape == x.shape
    assert m.shape == ((n if per_sample else 1),) + x.shape[1:3] + (1,)
    assert mix.weights.dtype == tf.float32 and mix.switch_weights.dtype == tf.float32
    assert mix.switch_index.dtype == tf.int32
    assert set(np.unique(m)) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.sort(sw_idx), np.arange(n))
    mask_of = (lambda j: m[j]) if per_sample else (lambda j: m[0])
    for i in range(n):
        # Mixture i: fraction λ_i of image i's own pixels (the M = 1 region).
        np.testing.assert_allclose(w[i], mask_of(i).mean(), rtol=0, atol=1e-6)
        # Image i filled the (1 - M) region of mixture j = switch_index[i].
        j = sw_idx[i]
        mj = mask_of(j)
        np.testing.assert_allclose(images[j], mj * x[j] + (1.0 - mj) * x[i], rtol=0, atol=1e-6)
        np.testing.assert_allclose(sw_w[i], (1.0 - mj).mean(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(sw_w[i], 1.0 - w[j], rtol=0, atol=1e-6)
    if not per_sample:
        assert np.all(w == w[0])


@pytest.mark.parametrize("mask_type", masks.MASK_TYPES)
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("permutation", mixing.PERMUTATIONS)
def test_mixmask_switch_identity(mask_type, per_sample, permutation):
    for n in (8, 7):  # odd batch: "reverse" has a fixed point
        x = images_np(n=n, seed=n)
        mix = mixing.mixmask(tf.constant(x), tf.constant([5, n]), 3, mask_type=mask_type,
                             per_sample=per_sample, permutation=permutation)
        check_mixture(x, mix, per_sample)
        if permutation == "reverse":
            np.testing.assert_array_equal(mix.switch_index.numpy(), np.arange(n)[::-1])


def test_mixmask_lambda_measured_not_assumed():
    # G = 3 on 32x28 pixels: cells cover unequal pixel counts, so λ differs from the
    # grid fraction; it must be the full-resolution mean.
    x = np.zeros((16, 32, 28, 1), np.float32)
    mix = mixing.mixmask(x, tf.constant([1, 1]), 3, mask_type="discrete", per_sample=True)
    full = mix.masks.numpy().reshape(16, -1).mean(axis=1)
    np.testing.assert_allclose(mix.weights.numpy(), full, atol=1e-6)


def test_mixmask_ratio_range_and_reference_rule():
    x = images_np(n=16, h=16, w=16, seed=3)
    mix = mixing.mixmask(x, tf.constant([2, 2]), 4, ratio_range=(0.25, 0.75), per_sample=True,
                         permutation="random")
    check_mixture(x, mix, per_sample=True)
    assert mix.weights.numpy().max() <= 0.75
    # G = 2 with the reference block rule degenerates: λ ≈ 0 on average.
    fn = tf.function(lambda s: mixing.mixmask(x, s, 2, per_sample=True, min_block_cells=4).weights)
    lam = np.mean([fn(tf.constant([i, 0])).numpy().mean() for i in range(8)])
    assert lam < 0.1


def test_mixmask_determinism_and_independent_subseeds():
    x = images_np(n=8, seed=4)
    a = mixing.mixmask(x, tf.constant([9, 9]), 4, per_sample=True, permutation="random")
    b = mixing.mixmask(x, tf.constant([9, 9]), 4, per_sample=True, permutation="random")
    c = mixing.mixmask(x, tf.constant([9, 8]), 4, per_sample=True, permutation="random")
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u.numpy(), v.numpy())
    assert not np.array_equal(a.masks.numpy(), c.masks.numpy())
    # The permutation does not reuse the mask seed.
    perm = mixing.inverse_permutation(a.switch_index).numpy()
    assert not np.array_equal(perm, mixing.random_permutation(tf.constant([9, 9]), 8).numpy())


def test_mixmask_validation():
    x = tf.zeros([2, 32, 32, 3])
    with pytest.raises(ValueError, match="grid size 64 is larger than the 32x32 image"):
        mixing.mixmask(x, tf.constant([1, 2]), 64)
    with pytest.raises(ValueError, match="unknown permutation"):
        mixing.mixmask(x, tf.constant([1, 2]), 4, permutation="shift")
    with pytest.raises(ValueError, match="mask_type"):
        mixing.mixmask(x, tf.constant([1, 2]), 4, mask_type="grid")


def test_mixmask_dynamic_batch_graph():
    @tf.function(input_signature=[tf.TensorSpec([None, 12, 10, 3], tf.float32)])
    def fn(x):
        return mixing.mixmask(x, tf.constant([6, 6]), 3, per_sample=True, permutation="random")

    x = images_np(n=6, seed=6)
    mix = fn(tf.constant(x))
    check_mixture(x, mix, per_sample=True)
    fn_b = tf.function(
        lambda x: mixing.mixmask(x, tf.constant([6, 6]), 3, per_sample=False),
        input_signature=[tf.TensorSpec([None, 12, 10, 3], tf.float32)])
    check_mixture(x, fn_b(tf.constant(x)), per_sample=False)


# ---------------------------------------------------------------------------
# XLA
# ---------------------------------------------------------------------------

CONFIGS = list(itertools.product(masks.MASK_TYPES, [False, True], mixing.PERMUTATIONS))


def _all_configs(x, seed):
    return [mixing.mixmask(x, seed, 4, mask_type=mt, per_sample=ps, permutation=pm)
            for mt, ps, pm in CONFIGS]


@pytest.mark.slow
def test_mixmask_xla_compiles_and_equals_non_xla():
    # All 8 configurations in one compiled function (one XLA compilation).
    x = images_np(n=8, h=32, w=32, seed=8)
    seed = tf.constant([2024, 7], tf.int32)
    xla_out = tf.function(_all_configs, jit_compile=True)(tf.constant(x), seed)
    eager_out = _all_configs(tf.constant(x), seed)
    for (mt, ps, pm), mx, me in zip(CONFIGS, xla_out, eager_out):
        check_mixture(x, mx, ps)
        # Stateless integer draws with non-negative seeds give the same bits with and
        # without XLA, so the mixtures are identical, not merely valid.
        for field, u, v in zip(mixing.Mixture._fields, mx, me):
            np.testing.assert_array_equal(u.numpy(), v.numpy(), err_msg=f"{mt} {ps} {pm} {field}")
