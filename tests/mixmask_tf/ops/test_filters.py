"""MSCN's high-pass input filter (mixmask_tf/ops/filters.py) against an independent NumPy reference:
the kernel, the blur with reflect padding, constant images, defaults and errors, the config
round trip, the serialisable Keras layer and XLA."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf.ops import filters
from np_reference import gaussian_blur_np, gaussian_kernel_np, normal_images


def _images(seed=0, shape=(2, 9, 11, 3)):
    return normal_images(shape, seed)


@pytest.mark.parametrize("sigma, radius", [(0.625, 2), (1.5, 4), (3.0, 1)])
def test_gaussian_kernel_matches_formula(sigma, radius):
    k = filters.gaussian_kernel(sigma, radius)
    assert k.dtype == np.float32 and k.shape == (2 * radius + 1,)
    np.testing.assert_allclose(k, gaussian_kernel_np(sigma, radius), rtol=1e-6, atol=1e-8)
    assert k.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(k, k[::-1])


@pytest.mark.parametrize("sigma, radius", [(0.625, 2), (1.5, 4)])
def test_blur_and_high_pass_match_numpy_reference(sigma, radius):
    images = _images()
    blurred = filters.gaussian_blur(images, sigma, radius).numpy()
    reference = gaussian_blur_np(images, sigma, radius)
    assert blurred.shape == images.shape and blurred.dtype == np.float32
    np.testing.assert_allclose(blurred, reference, rtol=1e-5, atol=1e-5)
    high = filters.high_pass(images, sigma, radius).numpy()
    np.testing.assert_allclose(high, images - reference, rtol=1e-5, atol=1e-5)
    # The callable filter is the same function.
    np.testing.assert_array_equal(filters.HighPassFilter(sigma, radius)(images).numpy(), high)
    # Reflect padding, not edge repetition: the border pixel is not counted twice.
    assert not np.allclose(blurred[:, 0], gaussian_blur_np(images, sigma, radius, mode="edge")[:, 0], atol=1e-3)


def test_constant_image_maps_to_zero_including_borders():
    for value in (-2.5, 0.0, 7.0):
        images = np.full((2, 9, 11, 3), value, np.float32)
        for sigma, radius in ((0.625, 2), (2.0, 6)):
            out = filters.high_pass(images, sigma, radius).numpy()
            assert np.abs(out).max() <= 1e-6, (value, sigma, radius)


def test_for_images_defaults():
    small = filters.HighPassFilter.for_images((28, 28, 1))
    assert small == filters.HighPassFilter(0.625, 2) and isinstance(small.radius, int)
    assert filters.HighPassFilter.for_images((224, 224, 3)) == filters.HighPassFilter(5.0, 15)
    assert filters.HighPassFilter.for_images((32, 64)).sigma == pytest.approx(5.0 * 32 / 224)
    assert filters.HighPassFilter.for_images((28, 28), sigma=1.0) == filters.HighPassFilter(1.0, 3)
    assert filters.HighPassFilter.for_images((28, 28), sigma=1.0, radius=5) == filters.HighPassFilter(1.0, 5)


def test_errors_have_clear_messages():
    with pytest.raises(ValueError, match=r"radius 9 needs images larger than it.*height is 9"):
        filters.HighPassFilter.for_images((9, 20), sigma=1.0, radius=9)
    with pytest.raises(ValueError, match=r"radius 15 needs images larger than it.*height is 8"):
        filters.HighPassFilter.for_images((8, 8), sigma=5.0)
    with pytest.raises(ValueError, match="sigma must be a positive number, got 0"):
        filters.HighPassFilter.for_images((28, 28), sigma=0)
    with pytest.raises(ValueError, match="sigma must be a positive number, got -1.0"):
        filters.HighPassFilter(-1.0, 2)
    with pytest.raises(ValueError, match="radius must be an integer >= 1, got 0"):
        filters.HighPassFilter.for_images((28, 28), sigma=1.0, radius=0)
    with pytest.raises(ValueError, match="radius must be an integer >= 1, got 0"):
        filters.HighPassFilter(1.0, 0)
    with pytest.raises(ValueError, match="radius 4 needs images larger than it.*width is 4"):
        filters.gaussian_blur(np.zeros((1, 8, 4, 1), np.float32), 1.0, 4)
    with pytest.raises(ValueError, match="radius 3 needs images larger than it.*width is 3"):
        filters.HighPassFilter(1.0, 3).validate((28, 3, 1))


def test_from_config_round_trip_and_unknown_name():
    f = filters.HighPassFilter.for_images((32, 32, 3))
    d = f.as_dict()
    assert d["name"] == "highpass" and d["sigma"] == f.sigma and d["radius"] == f.radius and "formula" in d
    assert filters.from_config(d) == f
    assert filters.from_config(f) is f
    assert filters.from_config(None) is None and filters.from_config({}) is None
    with pytest.raises(ValueError, match="unknown input filter 'lowpass'; known: 'highpass'"):
        filters.from_config({"name": "lowpass", "sigma": 1.0, "radius": 2})


def test_layer_saves_and_loads_in_a_keras_model(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 10, 3))
    x = filters.HighPassLayer(1.0, 3, name="highpass")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(x))
    path = os.path.join(str(tmp_path), "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    layer = loaded.get_layer("highpass")
    assert isinstance(layer, filters.HighPassLayer) and layer.filter == filters.HighPassFilter(1.0, 3)
    assert not layer.weights
    images = _images(1, (3, 12, 10, 3))
    np.testing.assert_array_equal(loaded(images).numpy(), model(images).numpy())


def test_with_input_filter():
    model = keras.Sequential([keras.Input((9, 11, 3)), keras.layers.GlobalAveragePooling2D()])
    assert filters.with_input_filter(model, None) is model
    assert filters.with_input_filter(model, {}) is model
    f = filters.HighPassFilter(0.625, 2)
    wrapped = filters.with_input_filter(model, f.as_dict())
    assert wrapped.name == f"{model.name}_highpass"
    images = _images(2)
    np.testing.assert_allclose(wrapped(images).numpy(), model(f(images)).numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="needs images larger than it"):
        filters.with_input_filter(model, filters.HighPassFilter(1.0, 9))


def test_xla_equals_eager():
    images = _images(3, (2, 16, 16, 3))
    for sigma, radius in ((0.625, 2), (2.0, 6)):
        eager = filters.high_pass(images, sigma, radius).numpy()
        compiled = tf.function(lambda x: filters.high_pass(x, sigma, radius), jit_compile=True)(images).numpy()
        np.testing.assert_allclose(compiled, eager, rtol=1e-6, atol=1e-6)


def test_one_gaussian_blur_for_one_sigma_and_a_sigma_per_image():
    from mixmask_tf.augment import ops as augment_ops

    assert augment_ops.gaussian_blur is filters.gaussian_blur  # the views' blur is this one
    images = normal_images((3, 9, 11, 2), seed=5)
    sigmas = [0.7, 1.3, 2.0]
    per_image = filters.gaussian_blur(tf.constant(images), tf.constant(sigmas), 2).numpy()
    assert per_image.shape == images.shape and per_image.dtype == np.float32
    for i, sigma in enumerate(sigmas):
        one = filters.gaussian_blur(images[i:i + 1], sigma, 2).numpy()[0]
        np.testing.assert_allclose(per_image[i], one, atol=1e-6)
        np.testing.assert_allclose(per_image[i], gaussian_blur_np(images[i], sigma, 2), atol=1e-5)
    # A σ per image: radius 0 is the identity and an empty batch stays empty; one σ is checked.
    np.testing.assert_array_equal(filters.gaussian_blur(images, tf.constant(sigmas), 0), images)
    assert filters.gaussian_blur(tf.zeros([0, 9, 11, 2]), tf.zeros([0]), 2).shape == (0, 9, 11, 2)
    with pytest.raises(ValueError, match="radius"):
        filters.gaussian_blur(images, 1.0, 0)
