"""The MSCN branch: options, the input filter it carries, and what prepare_views does to each view
(its input filter, then `mask_views`)."""

import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import branches
from mixmask_tf.ops import filters

SHAPE = (28, 28, 3)


def _views(num=3, n=64, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(tf.constant(rng.normal(size=(n,) + SHAPE).astype(np.float32)) for _ in range(num))


def _built(**options):
    branch = branches.build_branch("mscn", **options)
    branch.validate(SHAPE)
    return branch


def test_defaults_filter_and_config_round_trip():
    branch = _built()
    assert branch.extra_views == 2 and branch.term_names == () and branch.changes_views
    assert branch.input_filter_for(SHAPE) == filters.HighPassFilter(0.625, 2)  # 5 · 28 / 224, ceil(3σ)
    config = branch.get_config()
    assert config["ratio"] == 0.15 and config["grid_size"] == 7 and config["focal_prob"] == 0.4
    rebuilt = branches.build_branch(**config)
    rebuilt.validate(SHAPE)
    assert rebuilt.get_config() == config and rebuilt.input_filter_for(SHAPE) == branch.input_filter_for(SHAPE)
    assert _built(high_pass=False).input_filter_for(SHAPE) is None
    assert _built(sigma=2.0).input_filter_for(SHAPE) == filters.HighPassFilter(2.0, 6)
    assert not branches.build_branch("mixmask").changes_views and not branches.Branch().changes_views


@pytest.mark.parametrize("options, message", [
    (dict(ratio=1.0), "ratio must lie in"),
    (dict(key_ratio=-0.1), "key_ratio must lie in"),
    (dict(focal_prob=1.5), "focal_prob must be a probability"),
    (dict(focal_size=0.0), "focal_size"),
    (dict(noise_std=0.0), "noise_std"),
    (dict(extra_views=-1), "extra_views"),
    (dict(sigma=-1.0), "sigma"),
    (dict(grid_size=0), "grid_size"),
])
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        branches.build_branch("mscn", **options)


def test_options_that_do_not_fit_the_images_fail_in_validate():
    with pytest.raises(ValueError, match="radius"):
        _built(sigma=20.0)  # radius 60 >= 28
    with pytest.raises(ValueError):
        _built(grid_size=64)


def test_each_view_is_masked_with_noise_and_its_own_draw():
    branch = _built(ratio=0.3, focal_prob=0.0, channel_prob=0.0, noise_std=0.18)
    views = _views()
    out = branch.mask_views(views, tf.constant([3, 7]))
    assert len(out.views) == 3
    changed = [np.asarray(o) != np.asarray(v) for o, v in zip(out.views, views)]
    for c in changed:
        # channel_prob 0: the same cells on every channel; the grid is 7 x 7 of 4-px cells.
        assert np.array_equal(c[..., 0], c[..., 1]) and np.array_equal(c[..., 0], c[..., 2])
        cells = c[..., 0].reshape(-1, 7, 4, 7, 4).any(axis=(2, 4))
        # round(0.3 · 49) = 15 masked cells per image (a noise pixel equal to the input is impossible).
        assert np.all(cells.sum(axis=(1, 2)) == 15)
    assert not np.array_equal(changed[0], changed[1])  # each view its own masks
    noise = np.asarray(out.views[0])[changed[0]]
    assert abs(noise.std() - 0.18) < 0.01 and abs(noise.mean()) < 0.01
    np.testing.assert_array_equal(np.asarray(out.views[0])[~changed[0]], np.asarray(views[0])[~changed[0]])
    np.testing.assert_allclose(float(out.stats["mask_ratio_query"]), 15 / 49, atol=1e-6)
    again = branch.mask_views(views, tf.constant([3, 7]))
    for a, b in zip(out.views, again.views):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # a function of the seed


def test_query_and_key_sides_have_their_own_strength():
    branch = _built(ratio=0.0, key_ratio=0.5, focal_prob=0.0, key_mask_prob=1.0)
    views = _views(num=4)
    out = branch.mask_views(views, tf.constant([1, 2]))
    for v in (0, 2):  # query side: ratio 0 -> unchanged
        np.testing.assert_array_equal(np.asarray(out.views[v]), np.asarray(views[v]))
    assert float(out.stats["mask_ratio_query"]) == 0.0
    assert abs(float(out.stats["mask_ratio_key"]) - 25 / 49) < 1e-6  # round(0.5 · 49) = 25 cells
    unmasked = _built(mask_prob=0.0, key_mask_prob=0.0).mask_views(views, tf.constant([1, 2]))
    for a, b in zip(unmasked.views, views):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_channel_independent_and_focal_masks_reach_the_views():
    views = _views(num=2, n=200)
    independent = _built(ratio=0.3, focal_prob=0.0, channel_prob=1.0).mask_views(views, tf.constant([5, 5]))
    c = np.asarray(independent.views[0]) != np.asarray(views[0])
    assert np.mean([not np.array_equal(c[i, ..., 0], c[i, ..., 1]) for i in range(200)]) > 0.9
    focal = _built(focal_prob=1.0, focal_size=0.5).mask_views(views, tf.constant([5, 6]))
    kept = np.asarray(focal.views[1]) == np.asarray(views[1])
    # A kept 14 x 14 square (0.5 · 28), noise elsewhere: 196 of 784 pixels kept on every channel.
    assert np.all(kept.all(axis=-1).sum(axis=(1, 2)) == 196)
    np.testing.assert_allclose(float(focal.stats["mask_ratio_key"]), 1 - 196 / 784, atol=1e-6)


@pytest.mark.slow
def test_transform_compiles_under_xla():
    branch = _built()
    views = _views(num=4, n=8)
    seed = tf.constant([4, 2])
    eager = branch.prepare_views(views, seed)
    compiled = tf.function(lambda *v: branch.prepare_views(v, seed), jit_compile=True)(*views)
    for a, b in zip(eager.views, compiled.views):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
