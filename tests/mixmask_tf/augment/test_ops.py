"""The batched augmentation ops (mixmask_tf.augment.ops) against the semantics their docstrings
state (NumPy references), each op driven through the view pipeline's own parameter draws."""

import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import augment
from mixmask_tf.augment import ops
from np_reference import binomial_tol, changed_images, gaussian_blur_np

LUMA = np.array([0.2989, 0.5870, 0.1140], np.float32)
SEED = tf.constant([7, 1], tf.int64)


def _rgb(seed=0, h=16, w=16, lo=0.25, hi=0.75):
    """A colourful float image with values in [lo, hi] (no clipping under mild jitter)."""
    return np.random.default_rng(seed).uniform(lo, hi, (h, w, 3)).astype(np.float32)


def _config(img, **fields):
    """A view of square ``img``'s size with every op off (the crop is the whole image, which the
    resize leaves exactly unchanged) except ``fields``."""
    base = dict(size=img.shape[:2], crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False,
                brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, jitter_p=0.0, grayscale_p=0.0)
    base.update(fields)
    return augment.ViewConfig(**base)


def _view(img, n, seed=SEED, return_params=False, **fields):
    """n augmentations of one float image [H, W, C] by :func:`_config` (one batch, one seed)."""
    config = _config(img, **fields)
    h, w, c = img.shape
    params = augment.sample_view_params(seed, n, h, w, c, config)
    outs = augment.apply_view_params(tf.constant(np.broadcast_to(img, (n,) + img.shape)), params, config).numpy()
    if return_params:
        return outs, {k: v.numpy() for k, v in params.items()}
    return outs


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


def test_identity_view_leaves_the_image_unchanged():
    """The helper every test below builds on: all ops off and a whole-image crop is the identity."""
    img = _rgb(1)
    np.testing.assert_array_equal(_view(img, 4), np.broadcast_to(img, (4,) + img.shape))


# ----------------------------------------------------------------------------- crop


def _coordinate_image(h, w):
    """Float image whose channel 0 is the row index and channel 1 the column index."""
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.float32)


def test_random_resized_crop_shape_dtype():
    img = np.random.default_rng(0).integers(0, 256, (28, 20, 3), dtype=np.uint8)
    config = augment.ViewConfig(size=(24, 16), flip=False, jitter_p=0.0, grayscale_p=0.0)
    out = augment.augment_image(img, tf.constant([1, 2]), config)
    assert out.shape == (24, 16, 3) and out.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0


@pytest.mark.parametrize("scale,ratio", [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.2, 0.5), (0.5, 2.0))])
def test_random_resized_crop_box_statistics(scale, ratio):
    """Recovers the box from a coordinate-encoding image; checks area and ratio ranges."""
    h = w = 64
    n = 400
    coords = np.broadcast_to(_coordinate_image(h, w), (n, h, w, 3))
    boxes = ops.sample_crop_boxes(tf.constant([3, 3]), n, h, w, scale, ratio)
    outs = ops.resized_crop(tf.constant(coords), *boxes, (h, w)).numpy()
    boxes = np.stack([b.numpy() for b in boxes], 1)
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
    box = ops.sample_crop_boxes(tf.constant([5, 6]), 1, 40, 40, scale=(1.0, 1.0), ratio=(2.0, 2.0))
    assert [int(v[0]) for v in box] == [10, 0, 20, 40]
    box = ops.sample_crop_boxes(tf.constant([5, 6]), 1, 30, 40, scale=(5.0, 6.0))
    assert [int(v[0]) for v in box] == [0, 0, 30, 40]  # in-range ratio: the whole image


def test_random_resized_crop_deterministic_per_seed():
    img = _rgb(2, 32, 32)
    config = augment.ViewConfig(size=(16, 16), flip=False, jitter_p=0.0, grayscale_p=0.0)
    a = augment.augment_image(img, tf.constant([9, 9]), config)
    b = augment.augment_image(img, tf.constant([9, 9]), config)
    c = augment.augment_image(img, tf.constant([9, 10]), config)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())


@pytest.mark.slow
def test_one_image_is_a_batch_of_one_even_of_dynamic_size():
    """augment_image (per-example users) runs the batched ops on [1, H, W, C], H and W unknown."""
    img = np.random.default_rng(3).integers(0, 256, (30, 26, 3), dtype=np.uint8)
    config = augment.preset("mocov2", 16, 3)
    dynamic = tf.function(lambda x: augment.augment_image(x, tf.constant([4, 5]), config),
                          input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    # Same draws; float rounding may differ in the last bit between the static and dynamic graphs.
    np.testing.assert_allclose(dynamic(img).numpy(),
                               augment.augment_batch(img[None], tf.constant([4, 5]), config)[0].numpy(), atol=1e-6)


# ----------------------------------------------------------------------------- flip


def test_random_flip_probability_half():
    img = _rgb(3, 8, 8)
    outs = _view(img, 2000, flip=True)
    flipped = np.all(outs == img[:, ::-1][None], axis=(1, 2, 3))
    same = np.all(outs == img[None], axis=(1, 2, 3))
    assert np.all(flipped | same)
    assert abs(flipped.mean() - 0.5) < 0.05


# ----------------------------------------------------------------------------- colour jitter


def _jitter(img, n, brightness, contrast, saturation, hue, p, **kw):
    return _view(img, n, brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, jitter_p=p,
                 **kw)


def test_color_jitter_applied_with_probability_p():
    img = _rgb(4)
    outs = _jitter(img, 1000, 0.4, 0.4, 0.4, 0.1, p=0.8)
    changed = changed_images(outs, img[None])
    assert abs(changed.mean() - 0.8) < 0.05
    assert np.isfinite(outs).all() and outs.min() >= 0.0 and outs.max() <= 1.0


@pytest.mark.parametrize("strength", [0.4, 0.8])  # cifar / mocov2 / byol; simclr (s = 1)
def test_brightness_factor_range_and_distribution(strength):
    img = np.full((4, 4, 3), 0.5, np.float32)
    outs = _jitter(img, 1000, strength, 0.0, 0.0, 0.0, p=1.0)
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
    outs = _jitter(img, 300, 0.0, 0.4, 0.0, 0.0, p=1.0)
    factors = (outs - mean)[:, 0, 0, 0] / (img[0, 0, 0] - mean)
    ref = (img[None] - mean) * factors[:, None, None, None] + mean
    np.testing.assert_allclose(outs, ref, atol=1e-4)
    assert factors.min() >= 0.6 - 1e-3 and factors.max() <= 1.4 + 1e-3


def test_saturation_preserves_luminance_and_hue_preserves_max_min():
    img = _rgb(6, lo=0.35, hi=0.65)
    sat = _jitter(img, 100, 0.0, 0.0, 0.4, 0.0, p=1.0)
    np.testing.assert_allclose(sat @ LUMA, np.broadcast_to(img @ LUMA, sat.shape[:3]),
                               atol=2e-3)
    assert np.abs(sat - img[None]).max() > 0.01
    hue = _jitter(img, 100, 0.0, 0.0, 0.0, 0.1, p=1.0)
    np.testing.assert_allclose(hue.max(-1), np.broadcast_to(img.max(-1), hue.shape[:3]),
                               atol=1e-4)
    np.testing.assert_allclose(hue.min(-1), np.broadcast_to(img.min(-1), hue.shape[:3]),
                               atol=1e-4)
    assert np.abs(hue - img[None]).max() > 0.01


def test_color_jitter_random_order_is_uniform():
    img = _rgb(7, lo=0.0, hi=1.0)
    _, params = _jitter(img, 2000, 0.4, 0.4, 0.4, 0.1, p=1.0, return_params=True)
    orders = np.argsort(params["order_keys"], axis=1)
    assert sorted(orders[0]) == [0, 1, 2, 3]
    counts = np.bincount(orders[:, 0], minlength=4) / len(orders)
    np.testing.assert_allclose(counts, 0.25, atol=0.04)
    # The order is the one the jitter applies: contrast then brightness differs from the reverse.
    both = np.broadcast_to(np.linspace(0.3, 0.9, 16, dtype=np.float32)[:, None, None], (16, 16, 3))
    factors = {"brightness": tf.constant([2.0, 2.0]), "contrast": tf.constant([0.5, 0.5])}
    keys = tf.constant([[0.1, 0.9, 0.0, 0.0], [0.9, 0.1, 0.0, 0.0]])  # image 0: brightness first
    out = ops.color_jitter(tf.constant(np.stack([both, both])), tf.constant([True, True]), keys, factors).numpy()
    bright_first = ops.adjust_contrast(ops.adjust_brightness(both[None], [2.0]), [0.5]).numpy()[0]
    contrast_first = ops.adjust_brightness(ops.adjust_contrast(both[None], [0.5]), [2.0]).numpy()[0]
    np.testing.assert_allclose(out[0], bright_first, atol=1e-6)
    np.testing.assert_allclose(out[1], contrast_first, atol=1e-6)
    assert not np.allclose(bright_first, contrast_first)
    # With every strength 0 the jitter is the identity.
    outs = _jitter(img, 3, 0.0, 0.0, 0.0, 0.0, p=1.0)
    np.testing.assert_array_equal(outs, np.broadcast_to(img, outs.shape))  # all ops off


def test_hue_rotation_equals_colorsys_hsv_round_trip_and_grayscale_the_luminance():
    """adjust_hue (computed without an HSV image) against Python's colorsys, pixel by pixel: gray
    pixels, ties between channels, pure colours, and shifts up to half a turn either way."""
    import colorsys

    rng = np.random.default_rng(7)
    img = rng.random((4, 6, 7, 3)).astype(np.float32)
    img[0, 0] = 0.5  # gray
    img[1, 1, :, 1] = img[1, 1, :, 0]  # red = green
    img[2, 2, :, 2] = img[2, 2, :, 1]  # green = blue
    img[3, 3, :3] = np.eye(3, dtype=np.float32)  # pure red, green, blue
    img[3, 4, 0] = 0.0  # black
    delta = np.array([-0.5, -0.13, 0.27, 0.5], np.float32)
    got = ops.adjust_hue(tf.constant(img), tf.constant(delta)).numpy()
    want = np.empty_like(img)
    for b, pixel in np.ndindex(img.shape[0], img.shape[1] * img.shape[2]):
        y, x = divmod(pixel, img.shape[2])
        h, s, v = colorsys.rgb_to_hsv(*img[b, y, x].astype(np.float64))
        want[b, y, x] = colorsys.hsv_to_rgb((h + delta[b]) % 1.0, s, v)
    np.testing.assert_allclose(got, want, atol=2e-6)
    luma = ops.grayscale(tf.constant(img)).numpy()
    np.testing.assert_allclose(luma[..., 0], img @ np.array([0.2989, 0.5870, 0.1140]), atol=1e-6)


@pytest.mark.parametrize("strength", [0.2, 0.4])  # simclr (0.2 s), mocov1 (0.4)
def test_hue_rotation_delta_range(strength):
    """Hue-only jitter rotates every pixel's HSV hue by one d ~ U(-strength, strength)."""
    # Saturated colours away from 0 and 1: S and V are kept, so no clipping happens.
    img = _rgb(15, lo=0.1, hi=0.9)
    outs = _jitter(img, 600, 0.0, 0.0, 0.0, strength, p=1.0)
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
    outs = _jitter(img, 500, 0.4, 0.4, 0.4, 0.4, p=1.0)
    changed = changed_images(outs, img[None])
    assert changed.all(), f"{(~changed).sum()} of 500 images unchanged"
    assert outs.min() >= 0.0 and outs.max() <= 1.0


def test_color_jitter_single_channel_only_brightness_contrast():
    img = np.random.default_rng(8).uniform(0.3, 0.7, (8, 8, 1)).astype(np.float32)
    only_sat_hue = _jitter(img, 10, 0.0, 0.0, 0.4, 0.1, p=1.0)
    np.testing.assert_array_equal(only_sat_hue, np.broadcast_to(img, only_sat_hue.shape))
    outs = _jitter(img, 50, 0.4, 0.4, 0.4, 0.1, p=1.0)
    assert outs.shape == (50, 8, 8, 1) and np.isfinite(outs).all()
    # brightness and contrast are affine per image: out = a * img + b.
    for o in outs[:10]:
        a, b = np.polyfit(img.ravel(), o.ravel(), 1)
        np.testing.assert_allclose(o, a * img + b, atol=1e-4)


def test_hue_strength_outside_half_is_an_error():
    with pytest.raises(ValueError, match="hue must lie in"):
        _jitter(_rgb(1), 2, 0.0, 0.0, 0.0, 0.6, p=1.0)


# ----------------------------------------------------------------------------- grayscale


def test_random_grayscale_probability_and_luminance():
    img = _rgb(9)
    outs = _view(img, 1000, grayscale_p=0.2)
    gray = np.all(np.ptp(outs, axis=-1) < 1e-6, axis=(1, 2))
    assert abs(gray.mean() - 0.2) < 0.04
    np.testing.assert_allclose(outs[gray][..., 0], np.broadcast_to(img @ LUMA,
                                                                   outs[gray].shape[:3]),
                               atol=1e-5)
    np.testing.assert_array_equal(outs[~gray], np.broadcast_to(img, outs[~gray].shape))
    one = img[None, ..., :1]
    np.testing.assert_array_equal(ops.to_grayscale(one, tf.constant([True])), one)


# ----------------------------------------------------------------------------- blur


def test_gaussian_blur_matches_numpy_reference():
    images = np.stack([_rgb(10, 20, 24), _rgb(11, 20, 24)])
    got = ops.gaussian_blur(tf.constant(images), tf.constant([1.3, 0.7]), 2).numpy()
    np.testing.assert_allclose(got[0], gaussian_blur_np(images[0], 1.3, 2), atol=1e-5)
    np.testing.assert_allclose(got[1], gaussian_blur_np(images[1], 0.7, 2), atol=1e-5)
    assert ops.blur_radius(32, 0.1) == 1 and ops.blur_radius(224, 0.1) == 11


def test_gaussian_blur_constant_unchanged_and_noise_smoothed():
    const = np.full((32, 32, 3), 0.37, np.float32)
    outs = _view(const, 20, blur_p=1.0)
    np.testing.assert_allclose(outs, np.broadcast_to(const, outs.shape), atol=1e-6)
    noise = np.random.default_rng(11).normal(0.5, 0.1, (64, 64, 3)).astype(np.float32)
    sigma = tf.constant(np.random.default_rng(12).uniform(1.0, 2.0, 20), tf.float32)
    outs = ops.gaussian_blur(tf.constant(np.broadcast_to(noise, (20, 64, 64, 3))), sigma,
                             ops.blur_radius(64)).numpy()
    assert (outs.var(axis=(1, 2, 3)) < 0.6 * noise.var()).all()
    np.testing.assert_allclose(outs.mean(axis=(1, 2, 3)), noise.mean(), atol=5e-3)


@pytest.mark.parametrize("p", [0.1, 0.5, 1.0])  # byol view 2, simclr / mocov2, byol view 1
def test_gaussian_blur_probability(p):
    noise = np.random.default_rng(12).uniform(0, 1, (32, 32, 1)).astype(np.float32)
    outs, params = _view(noise, 1000, blur_p=p, return_params=True)
    blurred = changed_images(outs, noise[None])
    assert abs(params["blur"].mean() - p) <= binomial_tol(p, 1000), params["blur"].mean()
    assert not blurred[~params["blur"]].any()
    # Every applied blur shows, except with sigma near 0.1: the 3-tap kernel's side weights
    # (exp(-1 / (2 sigma^2))) then vanish in float32 and the blur is exactly the identity.
    visible = params["blur"] & (params["sigma"] >= 0.2)
    assert blurred[visible].all()
    assert params["sigma"].min() >= 0.1 and params["sigma"].max() <= 2.0


def test_solarize():
    img = _rgb(13, lo=0.0, hi=1.0)[None]
    out = ops.solarize(img, tf.constant([True]), threshold=0.5).numpy()
    np.testing.assert_allclose(out, np.where(img >= 0.5, 1.0 - img, img), atol=1e-7)
    same = ops.solarize(img, tf.constant([False])).numpy()
    np.testing.assert_array_equal(same, img)


def test_solarize_probability():
    """BYOL view 2: solarize with p 0.2; an applied solarisation is exactly the inversion."""
    img = _rgb(17, lo=0.0, hi=1.0)
    outs = _view(img, 1000, solarize_p=0.2)
    solarized = changed_images(outs, img[None])
    assert abs(solarized.mean() - 0.2) <= binomial_tol(0.2, 1000), solarized.mean()
    inverted = np.where(img >= 0.5, 1.0 - img, img)
    np.testing.assert_allclose(outs[solarized],
                               np.broadcast_to(inverted, outs[solarized].shape), atol=1e-7)
