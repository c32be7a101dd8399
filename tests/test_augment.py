"""Tests of mixmask_tf.augment against the semantics its docstrings state (NumPy references)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402
import inspect  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from mixmask_tf import augment  # noqa: E402

LUMA = np.array([0.2989, 0.5870, 0.1140], np.float32)


def _map_seeds(fn, n, salt=7):
    """Stacks fn(seed) over n stateless seeds [i, salt], computed in a tf.data graph."""
    ds = tf.data.Dataset.range(n).map(lambda i: fn(tf.stack([i, tf.constant(salt, tf.int64)])))
    return next(iter(ds.batch(n).as_numpy_iterator()))


def _binomial_tol(p, n, sigmas=4.0):
    """``sigmas`` standard deviations of a Binomial(n, p) fraction (0 when p is 0 or 1)."""
    return sigmas * np.sqrt(p * (1.0 - p) / n)


def _changed(outs, ref):
    """[N] bool: which of the N images in ``outs`` differ from ``ref`` (broadcast)."""
    return np.abs(outs - ref).reshape(len(outs), -1).max(axis=1) > 1e-6


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


@pytest.mark.parametrize("strength", [0.4, 0.8])  # cifar / mocov2 / byol; simclr (s = 1)
def test_brightness_factor_range_and_distribution(strength):
    img = np.full((4, 4, 3), 0.5, np.float32)
    outs = _map_seeds(lambda s: augment.color_jitter(img, s, strength, 0.0, 0.0, 0.0, p=1.0),
                      1000)
    factors = outs[:, 0, 0, 0] / 0.5
    np.testing.assert_allclose(outs, np.broadcast_to(factors[:, None, None, None] * 0.5,
                                                     outs.shape), rtol=1e-5)
    lo, hi = 1.0 - strength, 1.0 + strength  # U(max(0, 1 - b), 1 + b); 0.5 * 1.8 < 1: no clip
    assert factors.min() >= lo - 1e-6 and factors.max() <= hi + 1e-6
    margin = 0.04 * (hi - lo)
    assert factors.min() < lo + margin and factors.max() > hi - margin
    # uniform on [lo, hi]: mean 1, std (hi - lo) / sqrt(12); 4 standard errors.
    assert abs(factors.mean() - 1.0) < 4 * (hi - lo) / np.sqrt(12 * 1000)


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


@pytest.mark.parametrize("strength", [0.2, 0.4])  # simclr (0.2 s), mocov1 (0.4)
def test_hue_rotation_delta_range(strength):
    """Hue-only jitter rotates every pixel's HSV hue by one d ~ U(-strength, strength)."""
    # Saturated colours away from 0 and 1: S and V are kept, so no clipping happens.
    img = _rgb(15, lo=0.1, hi=0.9)
    outs = _map_seeds(lambda s: augment.color_jitter(img, s, 0.0, 0.0, 0.0, strength, p=1.0),
                      600)
    h_in = tf.image.rgb_to_hsv(img).numpy()[..., 0]
    h_out = tf.image.rgb_to_hsv(outs).numpy()[..., 0]
    delta = (h_out - h_in[None] + 0.5) % 1.0 - 0.5  # signed rotation in [-0.5, 0.5)
    per_image = np.median(delta.reshape(len(outs), -1), axis=1)
    np.testing.assert_allclose(delta, np.broadcast_to(per_image[:, None, None], delta.shape),
                               atol=2e-3)
    assert np.abs(per_image).max() <= strength + 2e-3
    margin = 0.05 * strength
    assert per_image.min() < -strength + margin and per_image.max() > strength - margin
    # uniform on [-strength, strength]: mean 0 within 4 standard errors.
    assert abs(per_image.mean()) < 4 * 2 * strength / np.sqrt(12 * 600)


def test_color_jitter_p1_always_changes_the_image():
    """MoCo v1's ColorJitter(0.4, 0.4, 0.4, 0.4) without RandomApply changes every image."""
    img = _rgb(16)
    outs = _map_seeds(lambda s: augment.color_jitter(img, s, 0.4, 0.4, 0.4, 0.4, p=1.0), 500)
    changed = _changed(outs, img[None])
    assert changed.all(), f"{(~changed).sum()} of 500 images unchanged"
    assert outs.min() >= 0.0 and outs.max() <= 1.0


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


@pytest.mark.parametrize("p", [0.1, 0.5, 1.0])  # byol view 2, simclr / mocov2, byol view 1
def test_gaussian_blur_probability(p):
    noise = np.random.default_rng(12).uniform(0, 1, (32, 32, 1)).astype(np.float32)
    # sigma >= 1 so that every applied blur is visible: with sigma near 0.1 the 3-tap kernel's
    # side weights (exp(-50)) vanish in float32 and the blur is exactly the identity.
    outs = _map_seeds(lambda s: augment.gaussian_blur(noise, s, sigma=(1.0, 2.0), p=p), 1000)
    blurred = _changed(outs, noise[None])
    assert abs(blurred.mean() - p) <= _binomial_tol(p, 1000), blurred.mean()


def test_solarize():
    img = _rgb(13, lo=0.0, hi=1.0)
    out = augment.solarize(img, tf.constant([1, 2]), threshold=0.5, p=1.0).numpy()
    np.testing.assert_allclose(out, np.where(img >= 0.5, 1.0 - img, img), atol=1e-7)
    same = augment.solarize(img, tf.constant([1, 2]), p=0.0).numpy()
    np.testing.assert_array_equal(same, img)


def test_solarize_probability():
    """BYOL view 2: solarize with p 0.2; an applied solarisation is exactly the inversion."""
    img = _rgb(17, lo=0.0, hi=1.0)
    outs = _map_seeds(lambda s: augment.solarize(img, s, threshold=0.5, p=0.2), 1000)
    solarized = _changed(outs, img[None])
    assert abs(solarized.mean() - 0.2) <= _binomial_tol(0.2, 1000), solarized.mean()
    inverted = np.where(img >= 0.5, 1.0 - img, img)
    np.testing.assert_allclose(outs[solarized],
                               np.broadcast_to(inverted, outs[solarized].shape), atol=1e-7)


# ----------------------------------------------------------------------------- views


_JITTER_04 = dict(brightness=0.4, contrast=0.4, saturation=0.4)
_RATIO = (3 / 4, 4 / 3)
# Reference numbers of every preset for 3-channel images: (view 1, view 2) field values.
_MOCOV1 = dict(crop_scale=(0.2, 1.0), crop_ratio=_RATIO, flip=True, **_JITTER_04, hue=0.4,
               jitter_p=1.0, grayscale_p=0.2, blur_p=0.0, solarize_p=0.0,
               grayscale_before_jitter=True)
_MOCOV2 = dict(crop_scale=(0.2, 1.0), crop_ratio=_RATIO, flip=True, **_JITTER_04, hue=0.1,
               jitter_p=0.8, grayscale_p=0.2, blur_p=0.5, solarize_p=0.0,
               grayscale_before_jitter=False)
_SIMCLR = dict(crop_scale=(0.08, 1.0), crop_ratio=_RATIO, flip=True, brightness=0.8,
               contrast=0.8, saturation=0.8, hue=0.2, jitter_p=0.8, grayscale_p=0.2, blur_p=0.5,
               solarize_p=0.0, grayscale_before_jitter=False)
_CIFAR = dict(crop_scale=(0.08, 1.0), crop_ratio=_RATIO, flip=True, **_JITTER_04, hue=0.1,
              jitter_p=0.8, grayscale_p=0.2, blur_p=0.0, solarize_p=0.0,
              grayscale_before_jitter=False)
_FASHION_MNIST = dict(crop_scale=(0.2, 1.0), crop_ratio=_RATIO, flip=True, brightness=0.4,
                      contrast=0.4, saturation=0.0, hue=0.0, jitter_p=0.8, grayscale_p=0.0,
                      blur_p=0.0, solarize_p=0.0, grayscale_before_jitter=False)
_BYOL = dict(crop_scale=(0.08, 1.0), crop_ratio=_RATIO, flip=True, brightness=0.4, contrast=0.4,
             saturation=0.2, hue=0.1, jitter_p=0.8, grayscale_p=0.2,
             grayscale_before_jitter=False)
REFERENCE_PRESETS = {
    "fashion_mnist": (_FASHION_MNIST, _FASHION_MNIST),
    "cifar": (_CIFAR, _CIFAR),
    "mocov1": (_MOCOV1, _MOCOV1),
    "mocov2": (_MOCOV2, _MOCOV2),
    "simclr": (_SIMCLR, _SIMCLR),
    "byol": (dict(_BYOL, blur_p=1.0, solarize_p=0.0), dict(_BYOL, blur_p=0.1, solarize_p=0.2)),
}
COLOUR_ONLY = ("saturation", "hue", "grayscale_p")


def _fields(config):
    """The ViewConfig's fields other than ``size``, as a dict."""
    out = dataclasses.asdict(config)
    del out["size"]
    return out


def test_preset_names_cover_the_reference_table():
    assert set(augment.PRESET_NAMES) == set(REFERENCE_PRESETS)
    assert set(augment.PRESETS) == set(augment.PRESET_VIEWS) == set(augment.PRESET_NAMES)
    assert len(augment.PRESET_NAMES) == len(set(augment.PRESET_NAMES))


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("name", sorted(REFERENCE_PRESETS))
def test_preset_fields_match_reference(name, channels):
    views = augment.preset_views(name, (32, 24), channels)
    assert len(views) == 2
    for view, ref in zip(views, REFERENCE_PRESETS[name]):
        assert isinstance(view, augment.ViewConfig) and view.size == (32, 24)
        expected = dict(ref)
        if channels == 1:  # colour-only ops are disabled; brightness / contrast are kept
            expected.update({k: 0.0 for k in COLOUR_ONLY})
        assert _fields(view) == expected
    # preset() and PRESETS return the first view.
    assert augment.preset(name, (32, 24), channels) == views[0]
    assert augment.PRESETS[name]((32, 24), channels) == views[0]
    assert augment.preset(name, 20, channels).size == (20, 20)


def test_byol_views_differ_exactly_in_blur_and_solarize():
    for channels in (3, 1):
        view1, view2 = augment.preset_views("byol", 224, channels)
        f1, f2 = _fields(view1), _fields(view2)
        assert {k for k in f1 if f1[k] != f2[k]} == {"blur_p", "solarize_p"}
        assert (view1.blur_p, view1.solarize_p) == (1.0, 0.0)
        assert (view2.blur_p, view2.solarize_p) == (0.1, 0.2)
    for name in ("fashion_mnist", "cifar", "mocov1", "mocov2", "simclr"):
        view1, view2 = augment.preset_views(name, 32, 3)
        assert view1 == view2


def test_preset_errors():
    for get in (augment.preset, augment.preset_views):
        with pytest.raises(ValueError) as err:
            get("imagenet", 32, 3)
        for name in augment.PRESET_NAMES:
            assert name in str(err.value)
    with pytest.raises(ValueError, match="byol.*cifar.*fashion_mnist.*mocov1.*mocov2.*simclr"):
        augment.preset("imagenet", 32, 3)
    with pytest.raises(ValueError, match="channels"):
        augment.preset_views("simclr", 32, 4)


_PRESET_VIEWS = [(name, view) for name in sorted(REFERENCE_PRESETS) for view in (0, 1)]


def _spy_ops(monkeypatch):
    """Replaces the random ops with recorders (identity on the image) and returns the call log.

    Each call is logged as (op name, {argument: value}) with the arguments bound to the real
    op's signature, defaults included, image and seed left out.
    """
    calls = []

    def spy(name):
        signature = inspect.signature(getattr(augment, name))

        def op(image, seed, *args, **kwargs):
            bound = signature.bind(image, seed, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            del arguments["image"], arguments["seed"]
            calls.append((name, arguments))
            if name == "random_resized_crop":
                size = augment._as_size(arguments["size"])
                return tf.zeros(size + (image.shape[-1],), tf.float32)
            return tf.cast(image, tf.float32)
        return op

    for name in ("random_resized_crop", "random_flip", "color_jitter", "random_grayscale",
                 "gaussian_blur", "solarize"):
        monkeypatch.setattr(augment, name, spy(name))
    return calls


def _expected_calls(config):
    """The op calls augment_view(config) must make, with the reference numbers as arguments."""
    crop = ("random_resized_crop", dict(size=config.size, scale=config.crop_scale,
                                        ratio=config.crop_ratio, antialias=False))
    jitter = ("color_jitter", dict(brightness=config.brightness, contrast=config.contrast,
                                   saturation=config.saturation, hue=config.hue,
                                   p=config.jitter_p))
    gray = ("random_grayscale", dict(p=config.grayscale_p))
    colour = [gray, jitter] if config.grayscale_before_jitter else [jitter, gray]
    # SimCLR / MoCo v2 / BYOL blur: sigma ~ U(0.1, 2), kernel 10 % of the side; threshold 0.5.
    blur = ("gaussian_blur", dict(sigma=(0.1, 2.0), kernel_fraction=0.1, p=config.blur_p))
    sol = ("solarize", dict(threshold=0.5, p=config.solarize_p))
    flip = [("random_flip", {})] if config.flip else []
    return [crop] + flip + colour + [blur, sol]


@pytest.mark.parametrize("name,view", _PRESET_VIEWS)
def test_augment_view_passes_each_preset_field_to_its_op(name, view, monkeypatch):
    """augment_view calls each op once, in the reference order, with the config's numbers."""
    config = augment.preset_views(name, 32, 3)[view]
    calls = _spy_ops(monkeypatch)
    augment.augment_view(np.zeros((40, 40, 3), np.uint8), tf.constant([1, 2]), config)
    assert calls == _expected_calls(config)


def test_two_view_augment_from_preset_uses_each_view_config(monkeypatch):
    """TwoViewAugment.from_preset("byol") blurs / solarises its views with different p."""
    aug = augment.TwoViewAugment.from_preset("byol", 32, 3, (0.5,) * 3, (0.25,) * 3)
    calls = _spy_ops(monkeypatch)
    aug(np.zeros((40, 40, 3), np.uint8), tf.constant([3, 4]))
    blur = [args["p"] for name, args in calls if name == "gaussian_blur"]
    sol = [args["p"] for name, args in calls if name == "solarize"]
    assert blur == [1.0, 0.1] and sol == [0.0, 0.2]


def test_mocov1_grayscale_comes_before_jitter():
    """MoCo v1 view = crop, flip, grayscale, jitter (same sub-seeds as augment_view)."""
    config = augment.preset("mocov1", 24, 3)
    img = np.random.default_rng(20).integers(0, 256, (32, 32, 3), dtype=np.uint8)

    def both(seed):
        seeds = augment._split(seed, 6)
        x = augment.random_resized_crop(img, seeds[0], config.size, config.crop_scale,
                                        config.crop_ratio)
        x = augment.random_flip(x, seeds[1])
        x = augment.random_grayscale(x, seeds[3], p=config.grayscale_p)
        x = augment.color_jitter(x, seeds[2], config.brightness, config.contrast,
                                 config.saturation, config.hue, p=config.jitter_p)
        return augment.augment_view(img, seed, config), x

    got, ref = _map_seeds(both, 200, salt=21)
    np.testing.assert_allclose(got, ref, atol=1e-6)
    # A grayscale image stays gray through the jitter (saturation / hue do nothing to it).
    gray = np.ptp(got, axis=-1).max(axis=(1, 2)) < 1e-4
    assert abs(gray.mean() - 0.2) <= _binomial_tol(0.2, 200)


def test_two_view_augment_byol_uses_both_views():
    mean, std = (0.5,) * 3, (0.25,) * 3
    aug = augment.TwoViewAugment.from_preset("byol", 32, 3, mean, std)
    view1, view2 = augment.preset_views("byol", 32, 3)
    assert aug.view1 == view1 and aug.view2 == view2 and aug.view1 != aug.view2
    img = np.random.default_rng(22).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    plain1 = dataclasses.replace(view1, blur_p=0.0)
    plain2 = dataclasses.replace(view2, blur_p=0.0, solarize_p=0.0)
    n = 300

    def run(seed):
        seeds = augment._split(seed, 2)
        unblurred = augment.augment_view(img, seeds[0], plain1)
        blur_seed = augment._split(seeds[0], 6)[4]
        ref1 = augment.gaussian_blur(unblurred, blur_seed, p=1.0)
        plain = tf.stack([unblurred, augment.augment_view(img, seeds[1], plain2)])
        return aug(img, seed), augment.normalize(ref1, mean, std), augment.normalize(plain,
                                                                                       mean, std)

    outs, ref1, plain = _map_seeds(run, n, salt=23)
    # View 1 is always the blurred plain view (blur p = 1, no solarisation) ...
    np.testing.assert_allclose(outs[:, 0], ref1, atol=1e-5)
    # ... and the blur shows: only sigma near 0.1 (side weights exp(-1 / (2 sigma^2)) below
    # float32 resolution, P(sigma < 0.18) ~ 4 %) leaves the image unchanged.
    blurred1 = _changed(outs[:, 0], plain[:, 0])
    assert abs(blurred1.mean() - 0.96) <= _binomial_tol(0.96, n) + 0.01, blurred1.mean()
    # View 2 is blurred (p 0.1) or solarised (p 0.2) independently: changed w.p. 1 - 0.9 * 0.8.
    changed2 = _changed(outs[:, 1], plain[:, 1])
    assert abs(changed2.mean() - 0.28) <= _binomial_tol(0.28, n), changed2.mean()


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
