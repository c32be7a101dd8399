"""The two-view entry point (mixmask_tf.augment.views): parameter draws, the ops applied in the
reference order against a NumPy reference, TwoViewAugment and the pipeline that calls it."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import augment, data, seeds
from mixmask_tf.augment import ops
from np_reference import binomial_tol, changed_images, np_crop, np_resize, np_view

def _images(n=12, h=20, w=24, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def _row(params, b):
    return {k: v.numpy()[b] for k, v in params.items()}


# ----------------------------------------------------------------------------- tests


def test_resized_crop_matches_numpy_and_tf_image_resize():
    images = _images(16).astype(np.float32) / 255.0
    top, left, h, w = ops.sample_crop_boxes(tf.constant([1, 2]), 16, 20, 24, (0.08, 1.0))
    out = ops.resized_crop(tf.constant(images), top, left, h, w, (18, 22)).numpy()
    for b in range(16):
        crop = images[b, top[b]:top[b] + h[b], left[b]:left[b] + w[b]]
        np.testing.assert_allclose(out[b], np_resize(crop.astype(np.float64), 18, 22), atol=2e-6)
        np.testing.assert_allclose(out[b], tf.image.resize(crop, (18, 22)).numpy(), atol=2e-6)


def test_crop_boxes_follow_the_scale_and_ratio_rule():
    n = 2000
    top, left, h, w = (t.numpy() for t in ops.sample_crop_boxes(
        tf.constant([3, 4]), n, 32, 32, scale=(0.2, 0.6), ratio=(0.75, 4 / 3)))
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    area = h * w / 1024.0
    # Rounding w and h moves the area by at most about a side's worth of pixels.
    assert area.min() > 0.2 - 0.06 and area.max() < 0.6 + 0.06
    assert 0.35 < area.mean() < 0.45  # U(0.2, 0.6) has mean 0.4
    assert (w / h).min() > 0.75 - 0.1 and (w / h).max() < 4 / 3 + 0.15
    # Placement is uniform: the mean offset is close to half the free room.
    assert abs(np.mean(top / np.maximum(32 - h, 1)) - 0.5) < 0.05


def test_crop_fallback_is_the_same_for_every_image():
    """No candidate fits (scale 1, ratio >= 2 on a square image): the ratio-clipped centre crop,
    whatever the batch size (a single image is a batch of one)."""
    boxes = ops.sample_crop_boxes(tf.constant([0, 1]), 5, 20, 20, scale=(1.0, 1.0), ratio=(2.0, 3.0))
    single = ops.sample_crop_boxes(tf.constant([0, 1]), 1, 20, 20, (1.0, 1.0), (2.0, 3.0))
    for batch_value, single_value in zip(boxes, single):
        assert (batch_value.numpy() == int(single_value[0])).all()
    assert [int(v[0]) for v in single] == [5, 0, 10, 20]


@pytest.mark.parametrize("name, channels", [("cifar", 3), ("byol", 3), ("mocov1", 3), ("fashion_mnist", 1)])
def test_apply_view_params_matches_numpy_reference(name, channels):
    images = _images(10, 20, 20, channels, seed=1)
    for config in augment.preset_views(name, (16, 16), channels):
        # Force every random op on for half the images so each path is exercised.
        params = augment.sample_view_params(tf.constant([5, 6]), 10, 20, 20, channels, config)
        for key in ("flip", "jitter", "gray", "blur", "solarize"):
            params[key] = tf.constant([b % 2 == 0 for b in range(10)]) ^ (key == "flip")
        out = augment.apply_view_params(tf.constant(images), params, config).numpy()
        assert out.shape == (10, 16, 16, channels) and out.dtype == np.float32
        # The crop stage of uint8 images: the resized crop rounded to uint8 (as PIL), to within one level
        # where float32 and float64 round a tie differently.
        crops = augment.crop_view(tf.constant(images), params, config).numpy()
        assert crops.dtype == np.uint8
        reference = np.stack([np.round(np_crop(images[b], _row(params, b), config) * 255) for b in range(10)])
        assert np.abs(crops.astype(int) - reference).max() <= 1
        assert (crops == reference).mean() > 0.99
        for b in range(10):
            np.testing.assert_allclose(out[b], np_view(crops[b] / 255.0, _row(params, b), config), atol=2e-5,
                                       err_msg=f"{name} image {b}")


def test_params_follow_the_view_config():
    n = 4000
    config = augment.ViewConfig(size=(16, 16), brightness=0.4, contrast=0.2, saturation=0.3, hue=0.1,
                                jitter_p=0.8, grayscale_p=0.2, blur_p=0.3, solarize_p=0.1)
    p = {k: v.numpy() for k, v in augment.sample_view_params(tf.constant([7, 8]), n, 20, 20, 3, config).items()}
    tol = 4 * np.sqrt(0.25 / n)
    for key, rate in [("flip", 0.5), ("jitter", 0.8), ("gray", 0.2), ("blur", 0.3), ("solarize", 0.1)]:
        assert abs(p[key].mean() - rate) < tol, key
    for key, strength in [("brightness", 0.4), ("contrast", 0.2), ("saturation", 0.3)]:
        assert p[key].min() >= 1 - strength and p[key].max() <= 1 + strength
        assert abs(p[key].mean() - 1.0) < 0.02
    assert np.abs(p["hue"]).max() <= 0.1 and abs(p["hue"].mean()) < 0.01
    assert p["sigma"].min() >= 0.1 and p["sigma"].max() <= 2.0
    # Every order of the 4 jitter ops is about equally likely.
    orders = {tuple(np.argsort(k)) for k in p["order_keys"]}
    assert len(orders) == 24
    # One channel: no grayscale draw turns on; a config with flip off never flips.
    gray1 = augment.sample_view_params(tf.constant([7, 8]), 100, 20, 20, 1, config)["gray"].numpy()
    assert not gray1.any()
    no_flip = augment.ViewConfig(size=(16, 16), flip=False)
    assert not augment.sample_view_params(tf.constant([7, 8]), 100, 20, 20, 1, no_flip)["flip"].numpy().any()


def test_two_views_normalised_deterministic_and_distinct():
    images = _images(8, 20, 20, 3)
    aug = augment.TwoViewAugment.from_preset("cifar", (16, 16), 3, (0.5,) * 3, (0.25,) * 3)
    a = aug.batch(tf.constant(images), tf.constant([1, 2], tf.int64)).numpy()
    b = aug.batch(tf.constant(images), tf.constant([1, 2], tf.int64)).numpy()
    c = aug.batch(tf.constant(images), tf.constant([1, 3], tf.int64)).numpy()
    assert a.shape == (8, 2, 16, 16, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a[:, 0], a[:, 1])
    # Normalised [0, 1] values: (x - 0.5) / 0.25 lies in [-2, 2].
    assert a.min() >= -2 - 1e-5 and a.max() <= 2 + 1e-5
    unknown_size = tf.function(
        lambda x: augment.augment_batch(x, tf.constant([0, 0]), augment.ViewConfig(size=(8, 8))),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    with pytest.raises(ValueError, match="static image height"):
        unknown_size.get_concrete_function()


@pytest.mark.slow
def test_pretrain_dataset_is_vectorised_for_two_view_augment():
    x, _ = data.synthetic_dataset(40, (20, 20, 3), num_classes=4, seed=0)
    aug = augment.TwoViewAugment.from_preset("cifar", (16, 16), 3, (0.5,) * 3, (0.25,) * 3)
    fast = list(data.make_pretrain_dataset(x, 8, aug, seed=3, shuffle=False, start_epoch=2).take(5))
    # Batch j of epoch e is aug.batch(images of batch j, fold_in([seed, e], j)).
    key = tf.constant([3, 2], tf.int64)
    expected = aug.batch(tf.constant(x[8:16]), tf.random.experimental.stateless_fold_in(key, tf.constant(1, tf.int64))).numpy()
    np.testing.assert_allclose(fast[1].numpy(), expected, atol=1e-6)
    slow = list(data.make_pretrain_dataset(x, 8, aug, seed=3, shuffle=False, start_epoch=2,
                                           vectorized=False).take(5))
    assert fast[0].shape == slow[0].shape and not np.allclose(fast[0], slow[0])
    with pytest.raises(ValueError, match="vectorized=True needs"):
        data.make_pretrain_dataset(x, 8, lambda image, seed: tf.stack([image, image]), seed=0, vectorized=True)


# ----------------------------------------------------------------------------- views of presets


_PRESET_VIEWS = [(name, view) for name in sorted(augment.PRESET_NAMES) for view in (0, 1)]


def _spy_ops(monkeypatch):
    """Replaces the image ops of a view with recorders (identity on the image); returns the log."""
    calls = []

    def spy(name):
        real = getattr(ops, name)

        def op(images, *args, **kwargs):
            calls.append(name)
            if name == "resized_crop":
                return real(images, *args, **kwargs)
            return images
        return op

    for name in ("resized_crop", "flip", "color_jitter", "to_grayscale", "gaussian_blur", "solarize"):
        monkeypatch.setattr(ops, name, spy(name))
    # The host compiles its colour ops (one trace per config and shape, which an earlier test may
    # have made with the real ops): run the same Python function uncompiled, so that it calls the spies.
    monkeypatch.setattr(augment.views, "_colour_stage_compiled", augment.views._colour_stage)
    return calls


def _expected_calls(config, channels):
    """The ops a view of ``config`` applies, in the reference order."""
    jitter = ["color_jitter"] if config.jitter_p > 0 else []
    gray = ["to_grayscale"] if channels == 3 and config.grayscale_p > 0 else []
    colour = gray + jitter if config.grayscale_before_jitter else jitter + gray
    blur = ["gaussian_blur"] if config.blur_p > 0 and ops.blur_radius(config.size[0]) > 0 else []
    sol = ["solarize"] if config.solarize_p > 0 else []
    return ["resized_crop", "flip"] + colour + blur + sol


@pytest.mark.parametrize("name,view", _PRESET_VIEWS)
def test_view_applies_each_op_of_its_preset_in_the_reference_order(name, view, monkeypatch):
    config = augment.preset_views(name, 32, 3)[view]
    calls = _spy_ops(monkeypatch)
    augment.augment_batch(np.zeros((2, 40, 40, 3), np.uint8), tf.constant([1, 2]), config)
    assert calls == _expected_calls(config, 3)


def test_two_view_augment_from_preset_uses_each_view_config(monkeypatch):
    """TwoViewAugment.from_preset("byol") blurs / solarises its views with different p."""
    aug = augment.TwoViewAugment.from_preset("byol", 32, 3, (0.5,) * 3, (0.25,) * 3)
    seen = []
    real = augment.views.sample_view_params

    def spy(seed, batch, height, width, channels, config):
        seen.append(config)
        return real(seed, batch, height, width, channels, config)

    monkeypatch.setattr(augment.views, "sample_view_params", spy)
    aug.batch(np.zeros((2, 40, 40, 3), np.uint8), tf.constant([3, 4]))
    aug(np.zeros((40, 40, 3), np.uint8), tf.constant([3, 4]))
    assert [c.blur_p for c in seen] == [1.0, 0.1] * 2 and [c.solarize_p for c in seen] == [0.0, 0.2] * 2


def test_mocov1_grayscale_comes_before_jitter():
    """MoCo v1 view = crop, flip, grayscale, jitter (the same parameters as the view's draws)."""
    config = augment.preset("mocov1", 24, 3)
    n = 200
    img = np.random.default_rng(20).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    images = tf.constant(np.broadcast_to(img, (n, 32, 32, 3)))
    seed = tf.constant([21, 0])
    got = augment.augment_batch(images, seed, config).numpy()
    p = augment.sample_view_params(seed, n, 32, 32, 3, config)
    x = ops.to_float(augment.crop_view(images, p, config))
    x = ops.flip(x, p["flip"])
    x = ops.to_grayscale(x, p["gray"])
    x = ops.color_jitter(x, p["jitter"], p["order_keys"], {k: p[k] for k in ops.JITTER_OPS})
    np.testing.assert_allclose(got, x.numpy(), atol=1e-6)
    # A grayscale image stays gray through the jitter (saturation / hue do nothing to it).
    gray = np.ptp(got, axis=-1).max(axis=(1, 2)) < 1e-4
    assert abs(gray.mean() - 0.2) <= binomial_tol(0.2, n)


def test_two_view_augment_byol_uses_both_views():
    mean, std = (0.5,) * 3, (0.25,) * 3
    aug = augment.TwoViewAugment.from_preset("byol", 32, 3, mean, std)
    view1, view2 = augment.preset_views("byol", 32, 3)
    assert aug.view1 == view1 and aug.view2 == view2 and aug.view1 != aug.view2
    n = 300
    img = np.random.default_rng(22).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    images = tf.constant(np.broadcast_to(img, (n, 40, 40, 3)))
    seed = tf.constant([23, 0])
    outs = aug.batch(images, seed).numpy()
    sub = seeds.split(seed, 2)
    plain1 = dataclasses.replace(view1, blur_p=0.0)
    plain2 = dataclasses.replace(view2, blur_p=0.0, solarize_p=0.0)
    p1 = augment.sample_view_params(sub[0], n, 40, 40, 3, view1)
    unblurred = augment.apply_view_params(images, p1, plain1)
    ref1 = augment.normalize(ops.gaussian_blur(unblurred, p1["sigma"], ops.blur_radius(32)), mean, std).numpy()
    plain = augment.normalize(tf.stack([unblurred, augment.augment_batch(images, sub[1], plain2)], 1),
                              mean, std).numpy()
    # View 1 is always the blurred plain view (blur p = 1, no solarisation) ...
    np.testing.assert_allclose(outs[:, 0], ref1, atol=1e-5)
    # ... and the blur shows: only sigma near 0.1 (side weights exp(-1 / (2 sigma^2)) below
    # float32 resolution, P(sigma < 0.18) ~ 4 %) leaves the image unchanged.
    blurred1 = changed_images(outs[:, 0], plain[:, 0])
    assert abs(blurred1.mean() - 0.96) <= binomial_tol(0.96, n) + 0.01, blurred1.mean()
    # View 2 is blurred (p 0.1) or solarised (p 0.2) independently: changed w.p. 1 - 0.9 * 0.8.
    changed2 = changed_images(outs[:, 1], plain[:, 1])
    assert abs(changed2.mean() - 0.28) <= binomial_tol(0.28, n), changed2.mean()


def _map_seeds(fn, n, salt=7):
    """Stacks fn(seed) over n stateless seeds [i, salt], computed in a tf.data graph."""
    ds = tf.data.Dataset.range(n).map(lambda i: fn(tf.stack([i, tf.constant(salt, tf.int64)])))
    return next(iter(ds.batch(n).as_numpy_iterator()))


@pytest.mark.slow
@pytest.mark.parametrize("name,shape", [("fashion_mnist", (28, 28, 1)), ("cifar", (32, 32, 3)),
                                        ("mocov2", (40, 40, 3))])
def test_two_view_augment(name, shape):
    """One image at a time (a batch of one per call), as make_pretrain_dataset(vectorized=False) uses it."""
    img = np.random.default_rng(14).integers(0, 256, shape, dtype=np.uint8)
    mean, std = (0.5,) * shape[-1], (0.25,) * shape[-1]
    aug = augment.TwoViewAugment.from_preset(name, (24, 20), shape[-1], mean, std)
    outs = _map_seeds(lambda s: aug(img, s), 16)
    assert outs.shape == (16, 2, 24, 20, shape[-1]) and outs.dtype == np.float32
    assert np.isfinite(outs).all()
    # normalised: pixels lie in [(0 - m) / s, (1 - m) / s]
    assert outs.min() >= -2.0 - 1e-5 and outs.max() <= 2.0 + 1e-5
    assert not np.allclose(outs[:, 0], outs[:, 1])
    again = _map_seeds(lambda s: aug(img, s), 16)
    np.testing.assert_array_equal(outs, again)
    # The same draws as the batched call on a batch of one.
    seed = tf.constant([3, 7], tf.int64)
    np.testing.assert_allclose(aug(img, seed).numpy(), aug.batch(img[None], seed)[0].numpy(), atol=1e-6)


def test_eval_preprocess_shape_and_values():
    img = np.random.default_rng(1).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    out = augment.eval_preprocess(img, (0.3,), (0.4,)).numpy()
    np.testing.assert_allclose(out, (img / 255.0 - 0.3) / 0.4, rtol=1e-5, atol=1e-5)
    resized = augment.eval_preprocess(img[0], (0.3,), (0.4,), size=32)
    assert resized.shape == (32, 32, 1) and resized.dtype == tf.float32
