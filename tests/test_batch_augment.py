"""The vectorised augmentation (mixmask_tf.batch_augment) against NumPy references."""

import colorsys

import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import augment, batch_augment, data

GRAY = np.array([0.2989, 0.5870, 0.1140])  # tf.image.rgb_to_grayscale's weights


def _images(n=12, h=20, w=24, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


# ----------------------------------------------------------------------------- NumPy reference


def np_resize(img, out_h, out_w):
    """Bilinear resize with half-pixel centres, sample positions clamped to the image."""
    def axis(n_in, n_out):
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        lo = np.floor(pos)
        return (np.maximum(lo, 0).astype(int), np.minimum(np.ceil(pos), n_in - 1).astype(int), pos - lo)

    y0, y1, wy = axis(img.shape[0], out_h)
    x0, x1, wx = axis(img.shape[1], out_w)
    top = img[y0][:, x0] * (1 - wx)[None, :, None] + img[y0][:, x1] * wx[None, :, None]
    bottom = img[y1][:, x0] * (1 - wx)[None, :, None] + img[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]


def np_gray(x):
    return x if x.shape[-1] == 1 else (x @ GRAY)[..., None]


def np_hue(x, delta):
    flat = x.reshape(-1, 3)
    out = np.array([colorsys.hsv_to_rgb((h + delta) % 1.0, s, v)
                    for h, s, v in (colorsys.rgb_to_hsv(*p) for p in flat)])
    return np.clip(out.reshape(x.shape), 0, 1)


def np_blur(x, sigma, radius):
    taps = np.arange(-radius, radius + 1)
    k = np.exp(-taps ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    p = np.pad(x, [(radius, radius), (radius, radius), (0, 0)], mode="reflect")
    rows = sum(k[i] * p[i:i + x.shape[0]] for i in range(len(k)))
    return sum(k[i] * rows[:, i:i + x.shape[1]] for i in range(len(k)))


def np_view(img, p, config):
    """One image through config's ops with the parameters p (numpy values of one row)."""
    x = img.astype(np.float64) / 255.0
    x = np_resize(x[p["top"]:p["top"] + p["crop_h"], p["left"]:p["left"] + p["crop_w"]], *config.size)
    if p["flip"]:
        x = x[:, ::-1]
    c = x.shape[-1]

    def gray(v):
        if c == 3 and config.grayscale_p > 0 and p["gray"]:
            return np.repeat(np_gray(v), 3, axis=-1)
        return v

    ops = []
    if config.brightness > 0:
        ops.append((0, lambda v: np.clip(v * p["brightness"], 0, 1)))
    if config.contrast > 0:
        ops.append((1, lambda v: np.clip((v - np_gray(v).mean()) * p["contrast"] + np_gray(v).mean(), 0, 1)))
    if c == 3 and config.saturation > 0:
        ops.append((2, lambda v: np.clip((v - np_gray(v)) * p["saturation"] + np_gray(v), 0, 1)))
    if c == 3 and config.hue > 0:
        ops.append((3, lambda v: np_hue(v, p["hue"])))
    if config.grayscale_before_jitter:
        x = gray(x)
    if p["jitter"] and config.jitter_p > 0:
        for i, op in sorted(ops, key=lambda o: p["order_keys"][o[0]]):
            x = op(x)
    if not config.grayscale_before_jitter:
        x = gray(x)
    radius = int(config.size[0] * 0.1) // 2
    if config.blur_p > 0 and radius > 0 and p["blur"]:
        x = np_blur(x, p["sigma"], radius)
    if config.solarize_p > 0 and p["solarize"]:
        x = np.where(x >= 0.5, 1 - x, x)
    return x


def _row(params, b):
    return {k: v.numpy()[b] for k, v in params.items()}


# ----------------------------------------------------------------------------- tests


def test_resized_crop_matches_numpy_and_tf_image_resize():
    images = _images(16).astype(np.float32) / 255.0
    top, left, h, w = batch_augment.sample_crop_boxes(tf.constant([1, 2]), 16, 20, 24, (0.08, 1.0))
    out = batch_augment.resized_crop(tf.constant(images), top, left, h, w, (18, 22)).numpy()
    for b in range(16):
        crop = images[b, top[b]:top[b] + h[b], left[b]:left[b] + w[b]]
        np.testing.assert_allclose(out[b], np_resize(crop.astype(np.float64), 18, 22), atol=2e-6)
        np.testing.assert_allclose(out[b], tf.image.resize(crop, (18, 22)).numpy(), atol=2e-6)


def test_crop_boxes_follow_the_scale_and_ratio_rule():
    n = 2000
    top, left, h, w = (t.numpy() for t in batch_augment.sample_crop_boxes(
        tf.constant([3, 4]), n, 32, 32, scale=(0.2, 0.6), ratio=(0.75, 4 / 3)))
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    area = h * w / 1024.0
    # Rounding w and h moves the area by at most about a side's worth of pixels.
    assert area.min() > 0.2 - 0.06 and area.max() < 0.6 + 0.06
    assert 0.35 < area.mean() < 0.45  # U(0.2, 0.6) has mean 0.4
    assert (w / h).min() > 0.75 - 0.1 and (w / h).max() < 4 / 3 + 0.15
    # Placement is uniform: the mean offset is close to half the free room.
    assert abs(np.mean(top / np.maximum(32 - h, 1)) - 0.5) < 0.05


def test_crop_fallback_is_the_per_example_fallback():
    """No candidate fits (scale 1, ratio >= 2 on a square image): the ratio-clipped centre crop."""
    boxes = batch_augment.sample_crop_boxes(tf.constant([0, 1]), 5, 20, 20, scale=(1.0, 1.0), ratio=(2.0, 3.0))
    single = augment._sample_crop_box(20, 20, tf.constant([0, 1]), (1.0, 1.0), (2.0, 3.0))
    for batch_value, single_value in zip(boxes, single):
        assert (batch_value.numpy() == int(single_value)).all()


@pytest.mark.parametrize("name, channels", [("cifar", 3), ("byol", 3), ("mocov1", 3), ("fashion_mnist", 1)])
def test_apply_view_params_matches_numpy_reference(name, channels):
    images = _images(10, 20, 20, channels, seed=1)
    for config in augment.preset_views(name, (16, 16), channels):
        # Force every random op on for half the images so each path is exercised.
        params = batch_augment.sample_view_params(tf.constant([5, 6]), 10, 20, 20, channels, config)
        for key in ("flip", "jitter", "gray", "blur", "solarize"):
            params[key] = tf.constant([b % 2 == 0 for b in range(10)]) ^ (key == "flip")
        out = batch_augment.apply_view_params(tf.constant(images), params, config).numpy()
        assert out.shape == (10, 16, 16, channels) and out.dtype == np.float32
        for b in range(10):
            np.testing.assert_allclose(out[b], np_view(images[b], _row(params, b), config), atol=2e-5,
                                       err_msg=f"{name} image {b}")


def test_params_follow_the_view_config():
    n = 4000
    config = augment.ViewConfig(size=(16, 16), brightness=0.4, contrast=0.2, saturation=0.3, hue=0.1,
                                jitter_p=0.8, grayscale_p=0.2, blur_p=0.3, solarize_p=0.1)
    p = {k: v.numpy() for k, v in batch_augment.sample_view_params(tf.constant([7, 8]), n, 20, 20, 3, config).items()}
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
    gray1 = batch_augment.sample_view_params(tf.constant([7, 8]), 100, 20, 20, 1, config)["gray"].numpy()
    assert not gray1.any()
    no_flip = augment.ViewConfig(size=(16, 16), flip=False)
    assert not batch_augment.sample_view_params(tf.constant([7, 8]), 100, 20, 20, 1, no_flip)["flip"].numpy().any()


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
        lambda x: batch_augment.augment_batch(x, tf.constant([0, 0]), augment.ViewConfig(size=(8, 8))),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    with pytest.raises(ValueError, match="static image height"):
        unknown_size.get_concrete_function()


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
