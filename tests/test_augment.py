"""Tests of mixmask_tf.augment against the semantics its docstrings state (NumPy references)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from mixmask_tf import augment  # noqa: E402

LUMA = np.array([0.2989, 0.5870, 0.1140], np.float32)


def _map_seeds(fn, n, salt=7):
    """Stacks fn(seed) over n stateless seeds [i, salt], computed in a tf.data graph."""
    ds = tf.data.Dataset.range(n).map(lambda i: fn(tf.stack([i, tf.constant(salt, tf.int64)])))
    return next(iter(ds.batch(n).as_numpy_iterator()))


def _rgb(seed=0, h=16, w=16, lo=0.25, hi=0.75):
    """A colourful float image with values in [lo, hi] (no clipping under mild jitter)."""
    return np.random.default_rng(seed).uniform(lo, hi, (h, w, 3)).astype(np.float32)


# ----------------------------------------------------------------------------- basic ops


def test_to_float_and_normalize_match_numpy():
    img = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    x = augment.to_float(img).numpy()
    np.testing.assert_allclose(x, img / 255.0, rtol=1e-6)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    got = augment.normalize(x, mean, std).numpy()
    np.testing.assert_allclose(got, (x - np.array(mean)) / np.array(std), rtol=1e-5, atol=1e-6)
    batch = augment.normalize(np.stack([x, x]), mean, std).numpy()
    np.testing.assert_allclose(batch[1], got, rtol=1e-6)


def test_eval_preprocess_shape_and_values():
    img = np.random.default_rng(1).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    out = augment.eval_preprocess(img, (0.3,), (0.4,)).numpy()
    np.testing.assert_allclose(out, (img / 255.0 - 0.3) / 0.4, rtol=1e-5, atol=1e-5)
    resized = augment.eval_preprocess(img[0], (0.3,), (0.4,), size=32)
    assert resized.shape == (32, 32, 1) and resized.dtype == tf.float32


# ----------------------------------------------------------------------------- crop


def _coordinate_image(h, w):
    """Float image whose channel 0 is the row index and channel 1 the column index."""
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.float32)


def test_random_resized_crop_shape_dtype():
    img = np.random.default_rng(0).integers(0, 256, (28, 20, 3), dtype=np.uint8)
    out = augment.random_resized_crop(img, tf.constant([1, 2]), (24, 16))
    assert out.shape == (24, 16, 3) and out.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0


@pytest.mark.parametrize("scale,ratio", [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.2, 0.5), (0.5, 2.0))])
def test_random_resized_crop_box_statistics(scale, ratio):
    """Recovers the box from a coordinate-encoding image; checks area and ratio ranges."""
    h = w = 64
    coords = _coordinate_image(h, w)
    n = 400

    def crop_and_box(seed):
        out = augment.random_resized_crop(coords, seed, (h, w), scale, ratio)
        box = augment._sample_crop_box(h, w, seed, scale, ratio)
        return out, tf.stack(box)

    ds = tf.data.Dataset.range(n).map(
        lambda i: crop_and_box(tf.stack([i, tf.constant(3, tf.int64)]))).batch(n)
    outs, boxes = next(iter(ds.as_numpy_iterator()))
    # The crop is upsampled (box <= output size), so bilinear min/max hit the box edges exactly.
    top, left = outs[..., 0].min(axis=(1, 2)), outs[..., 1].min(axis=(1, 2))
    ch = outs[..., 0].max(axis=(1, 2)) - top + 1
    cw = outs[..., 1].max(axis=(1, 2)) - left + 1
    np.testing.assert_allclose(np.stack([top, left, ch, cw], 1), boxes, atol=1e-3)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= h).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 1] + boxes[:, 3] <= w).all()
    area = ch * cw / (h * w)
    aspect = cw / ch
    # Integer rounding of the sides moves the realised area/ratio slightly outside the ranges.
    assert area.min() >= scale[0] * 0.9 and area.max() <= min(1.0, scale[1] * 1.1)
    assert aspect.min() >= ratio[0] * 0.93 and aspect.max() <= ratio[1] / 0.93
    # The whole ranges are explored.
    assert area.min() < scale[0] + 0.1 * (scale[1] - scale[0])
    assert area.max() > scale[1] - 0.2 * (scale[1] - scale[0])
    assert aspect.min() < ratio[0] * 1.1 and aspect.max() > ratio[1] / 1.1
    # Positions vary.
    assert len(np.unique(boxes[:, 0])) > 10 and len(np.unique(boxes[:, 1])) > 10


def test_random_resized_crop_fallback_is_ratio_clipped_centre_crop():
    # Area = whole image at aspect 2 never fits a square image: torchvision falls back to the
    # centre crop of width W and height round(W / 2).
    box = augment._sample_crop_box(40, 40, tf.constant([5, 6]), scale=(1.0, 1.0),
                                   ratio=(2.0, 2.0))
    assert [int(v) for v in box] == [10, 0, 20, 40]
    box = augment._sample_crop_box(30, 40, tf.constant([5, 6]), scale=(5.0, 6.0))
    assert [int(v) for v in box] == [0, 0, 30, 40]  # in-range ratio: the whole image


def test_random_resized_crop_deterministic_per_seed():
    img = _rgb(2, 32, 32)
    a = augment.random_resized_crop(img, tf.constant([9, 9]), 16)
    b = augment.random_resized_crop(img, tf.constant([9, 9]), 16)
    c = augment.random_resized_crop(img, tf.constant([9, 10]), 16)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())


# ----------------------------------------------------------------------------- flip


def test_random_flip_probability_half():
    img = _rgb(3, 8, 8)
    outs = _map_seeds(lambda s: augment.random_flip(img, s), 2000)
    flipped = np.all(outs == img[:, ::-1][None], axis=(1, 2, 3))
    same = np.all(outs == img[None], axis=(1, 2, 3))
    assert np.all(flipped | same)
    assert abs(flipped.mean() - 0.5) < 0.05


# ----------------------------------------------------------------------------- colour jitter


def test_color_jitter_applied_with_probability_p():
    img = _rgb(4)
    outs = _map_seeds(lambda s: augment.color_jitter(img, s, 0.4, 0.4, 0.4, 0.1, p=0.8), 1000)
    changed = np.abs(outs - img[None]).max(axis=(1, 2, 3)) > 1e-6
    assert abs(changed.mean() - 0.8) < 0.05
    assert np.isfinite(outs).all() and outs.min() >= 0.0 and outs.max() <= 1.0


def test_brightness_factor_range_and_distribution():
    img = np.full((4, 4, 3), 0.5, np.float32)
    outs = _map_seeds(lambda s: augment.color_jitter(img, s, 0.4, 0.0, 0.0, 0.0, p=1.0), 1000)
    factors = outs[:, 0, 0, 0] / 0.5
    np.testing.assert_allclose(outs, np.broadcast_to(factors[:, None, None, None] * 0.5,
                                                     outs.shape), rtol=1e-5)
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6
    assert factors.min() < 0.63 and factors.max() > 1.37
    assert abs(factors.mean() - 1.0) < 0.03  # uniform on [0.6, 1.4]


def test_contrast_blends_with_grayscale_mean():
    img = _rgb(5)
    mean = float((img @ LUMA).mean())
    outs = _map_seeds(lambda s: augment.color_jitter(img, s, 0.0, 0.4, 0.0, 0.0, p=1.0), 300)
    factors = (outs - mean)[:, 0, 0, 0] / (img[0, 0, 0] - mean)
    ref = (img[None] - mean) * factors[:, None, None, None] + mean
    np.testing.assert_allclose(outs, ref, atol=1e-4)
    assert factors.min() >= 0.6 - 1e-3 and factors.max() <= 1.4 + 1e-3


def test_saturation_preserves_luminance_and_hue_preserves_max_min():
    img = _rgb(6, lo=0.35, hi=0.65)
    sat = _map_seeds(lambda s: augment.color_jitter(img, s, 0.0, 0.0, 0.4, 0.0, p=1.0), 100)
    np.testing.assert_allclose(sat @ LUMA, np.broadcast_to(img @ LUMA, sat.shape[:3]),
                               atol=2e-3)
    assert np.abs(sat - img[None]).max() > 0.01
    hue = _map_seeds(lambda s: augment.color_jitter(img, s, 0.0, 0.0, 0.0, 0.1, p=1.0), 100)
    np.testing.assert_allclose(hue.max(-1), np.broadcast_to(img.max(-1), hue.shape[:3]),
                               atol=1e-4)
    np.testing.assert_allclose(hue.min(-1), np.broadcast_to(img.min(-1), hue.shape[:3]),
                               atol=1e-4)
    assert np.abs(hue - img[None]).max() > 0.01


def test_color_jitter_random_order_is_uniform():
    firsts = _map_seeds(lambda s: augment._random_order(s, 4), 2000)
    assert sorted(firsts[0]) == [0, 1, 2, 3]
    counts = np.bincount(firsts[:, 0], minlength=4) / len(firsts)
    np.testing.assert_allclose(counts, 0.25, atol=0.04)
    # With every strength 0 the jitter is the identity.
    img = _rgb(7, lo=0.0, hi=1.0)
    outs = _map_seeds(lambda s: augment.color_jitter(img, s, 0.0, 0.0, 0.0, 0.0, p=1.0), 3)
    np.testing.assert_array_equal(outs, np.broadcast_to(img, outs.shape))  # all ops off


def test_color_jitter_single_channel_only_brightness_contrast():
    img = np.random.default_rng(8).uniform(0.3, 0.7, (8, 8, 1)).astype(np.float32)
    only_sat_hue = _map_seeds(
        lambda s: augment.color_jitter(img, s, 0.0, 0.0, 0.4, 0.1, p=1.0), 10)
    np.testing.assert_array_equal(only_sat_hue, np.broadcast_to(img, only_sat_hue.shape))
    outs = _map_seeds(lambda s: augment.color_jitter(img, s, 0.4, 0.4, 0.4, 0.1, p=1.0), 50)
    assert outs.shape == (50, 8, 8, 1) and np.isfinite(outs).all()
    # brightness and contrast are affine per image: out = a * img + b.
    for o in outs[:10]:
        a, b = np.polyfit(img.ravel(), o.ravel(), 1)
        np.testing.assert_allclose(o, a * img + b, atol=1e-4)


# ----------------------------------------------------------------------------- grayscale


def test_random_grayscale_probability_and_luminance():
    img = _rgb(9)
    outs = _map_seeds(lambda s: augment.random_grayscale(img, s, p=0.2), 1000)
    gray = np.all(np.ptp(outs, axis=-1) < 1e-6, axis=(1, 2))
    assert abs(gray.mean() - 0.2) < 0.04
    np.testing.assert_allclose(outs[gray][..., 0], np.broadcast_to(img @ LUMA,
                                                                   outs[gray].shape[:3]),
                               atol=1e-5)
    np.testing.assert_array_equal(outs[~gray], np.broadcast_to(img, outs[~gray].shape))
    one = img[..., :1]
    np.testing.assert_array_equal(augment.random_grayscale(one, tf.constant([1, 1]), 1.0), one)


# ----------------------------------------------------------------------------- blur


def _np_blur(img, sigma, radius):
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-x ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    pad = np.pad(img, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    rows = sum(k[i] * pad[i:i + img.shape[0]] for i in range(2 * radius + 1))
    return sum(k[i] * rows[:, i:i + img.shape[1]] for i in range(2 * radius + 1))


def test_gaussian_blur_matches_numpy_reference():
    img = _rgb(10, 20, 24)
    got = augment._gaussian_blur_fixed(img, 1.3, 2).numpy()
    np.testing.assert_allclose(got, _np_blur(img, 1.3, 2), atol=1e-5)
    assert augment._blur_radius(32, 0.1) == 1 and augment._blur_radius(224, 0.1) == 11


def test_gaussian_blur_constant_unchanged_and_noise_smoothed():
    const = np.full((32, 32, 3), 0.37, np.float32)
    outs = _map_seeds(lambda s: augment.gaussian_blur(const, s, p=1.0), 20)
    np.testing.assert_allclose(outs, np.broadcast_to(const, outs.shape), atol=1e-6)
    noise = np.random.default_rng(11).normal(0.5, 0.1, (64, 64, 3)).astype(np.float32)
    outs = _map_seeds(lambda s: augment.gaussian_blur(noise, s, sigma=(1.0, 2.0), p=1.0), 20)
    assert (outs.var(axis=(1, 2, 3)) < 0.6 * noise.var()).all()
    np.testing.assert_allclose(outs.mean(axis=(1, 2, 3)), noise.mean(), atol=5e-3)


def test_gaussian_blur_probability():
    noise = np.random.default_rng(12).uniform(0, 1, (32, 32, 1)).astype(np.float32)
    outs = _map_seeds(lambda s: augment.gaussian_blur(noise, s, p=0.5), 1000)
    blurred = np.abs(outs - noise[None]).max(axis=(1, 2, 3)) > 1e-6
    assert abs(blurred.mean() - 0.5) < 0.05


def test_solarize():
    img = _rgb(13, lo=0.0, hi=1.0)
    out = augment.solarize(img, tf.constant([1, 2]), threshold=0.5, p=1.0).numpy()
    np.testing.assert_allclose(out, np.where(img >= 0.5, 1.0 - img, img), atol=1e-7)
    same = augment.solarize(img, tf.constant([1, 2]), p=0.0).numpy()
    np.testing.assert_array_equal(same, img)


# ----------------------------------------------------------------------------- views


def test_presets():
    fm = augment.preset("fashion_mnist", 28, 1)
    assert fm.size == (28, 28) and fm.crop_scale == (0.2, 1.0) and fm.flip
    assert (fm.brightness, fm.contrast, fm.jitter_p) == (0.4, 0.4, 0.8)
    cifar = augment.preset("cifar", (32, 32), 3)
    assert cifar.crop_scale == (0.08, 1.0) and cifar.blur_p == 0.0
    assert (cifar.brightness, cifar.contrast, cifar.saturation, cifar.hue) == (0.4, 0.4, 0.4, 0.1)
    assert cifar.jitter_p == 0.8 and cifar.grayscale_p == 0.2
    moco = augment.preset("mocov2", 224, 3)
    assert moco.crop_scale == (0.2, 1.0) and moco.blur_p == 0.5 and moco.grayscale_p == 0.2
    with pytest.raises(ValueError, match="cifar.*fashion_mnist.*mocov2"):
        augment.preset("imagenet", 32, 3)


@pytest.mark.parametrize("name,shape", [("fashion_mnist", (28, 28, 1)), ("cifar", (32, 32, 3)),
                                        ("mocov2", (40, 40, 3))])
def test_two_view_augment(name, shape):
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
