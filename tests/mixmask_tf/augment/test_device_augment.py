"""Augmentation on the device (augment_on="device"): the host share packed in one int32 tensor, and
the finish stage run inside a compiled step, against the host path and against NumPy.

* the packing, against a NumPy reference of its layout (bytes four to a little-endian int32 word,
  parameters as float32 bits);
* for every preset (MoCo v1/v2, SimCLR, BYOL, CIFAR, Fashion-MNIST), with and without extra views,
  on decoded and encoded images and on the rows of a shard: the device views equal the host views
  (to float rounding, eagerly and compiled with XLA), and equal the NumPy reference of the finish
  stage;
* the dense (static-shape) colour jitter and blur equal the host's (the jitter per image, the blur
  of the chosen images);
* the pipeline's device mode yields the packed host share of the host mode's batches, and refuses
  what it cannot do.
"""

import sys

import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import augment, data
from mixmask_tf.augment import ops
from np_reference import np_view

PRESETS = [("mocov1", 3), ("mocov2", 3), ("simclr", 3), ("byol", 3), ("cifar", 3), ("fashion_mnist", 1)]
MEAN = {1: (0.3,), 3: (0.45, 0.4, 0.35)}
STD = {1: (0.3,), 3: (0.22, 0.25, 0.27)}


def _images(n, h, w, c, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def np_pack(crops, params):
    """NumPy reference of pack_views: crops [B, V, h, w, C] uint8, params V dicts of numpy arrays."""
    b = crops.shape[0]
    flat = crops.reshape(b, -1)
    flat = np.pad(flat, [(0, 0), (0, -flat.shape[1] % 4)])
    words = np.ascontiguousarray(flat).view("<i4")
    columns = []
    for view in params:
        for name in ("flip", "jitter", "brightness", "contrast", "saturation", "hue", "gray", "blur", "sigma",
                     "solarize"):
            columns.append(np.asarray(view[name], np.float32).reshape(b, 1))
        columns.append(np.asarray(view["order_keys"], np.float32).reshape(b, 4))
    return np.concatenate([words, np.concatenate(columns, axis=1).view("<i4")], axis=1)


def _random_params(b, rng):
    return {"flip": rng.random(b) < 0.5, "jitter": rng.random(b) < 0.5, "gray": rng.random(b) < 0.5,
            "blur": rng.random(b) < 0.5, "solarize": rng.random(b) < 0.5,
            "brightness": rng.uniform(0.6, 1.4, b).astype(np.float32),
            "contrast": rng.uniform(0.6, 1.4, b).astype(np.float32),
            "saturation": rng.uniform(0.6, 1.4, b).astype(np.float32),
            "hue": rng.uniform(-0.1, 0.1, b).astype(np.float32),
            "sigma": rng.uniform(0.1, 2.0, b).astype(np.float32),
            "order_keys": rng.random((b, 4)).astype(np.float32)}


@pytest.mark.skipif(sys.byteorder != "little", reason="the NumPy reference spells out little-endian words")
def test_pack_views_matches_numpy_reference_and_unpacks_exactly():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (4, 3, 5, 7, 3), dtype=np.uint8)  # 315 bytes per image: padded to 316
    params = [_random_params(4, rng) for _ in range(3)]
    packed = augment.pack_views(tf.constant(crops),
                                [{k: tf.constant(v) for k, v in p.items()} for p in params])
    assert packed.dtype == tf.int32 and packed.shape == (4, augment.packed_length(3, (5, 7), 3)) == (4, 79 + 42)
    np.testing.assert_array_equal(packed.numpy(), np_pack(crops, params))
    got_crops, got_params = augment.unpack_views(packed, 3, (5, 7), 3)
    np.testing.assert_array_equal(got_crops.numpy(), crops)
    for got, want in zip(got_params, params):
        assert set(got) == set(augment.FINISH_PARAMS)
        for name, value in want.items():
            np.testing.assert_array_equal(got[name].numpy(), value, err_msg=name)
    with pytest.raises(ValueError, match="121 int32 columns, got shape"):
        augment.unpack_views(packed[:, 1:], 3, (5, 7), 3)


# Every preset with two views; the two-sided BYOL and the 1-channel recipe with MSCN's two extra views.
CASES = [(name, channels, 0) for name, channels in PRESETS] + [("byol", 3, 2), ("fashion_mnist", 1, 2)]


@pytest.mark.parametrize("name, channels, extra_views", CASES)
def test_device_views_equal_host_views_for_every_preset(name, channels, extra_views):
    aug = augment.TwoViewAugment.from_preset(name, 24, channels, MEAN[channels], STD[channels], extra_views)
    images = tf.constant(_images(6, 30, 27, channels, seed=len(name) + extra_views))
    seed = tf.constant([17, 4 + extra_views], tf.int64)
    host = aug.batch(images, seed).numpy()
    packed = aug.batch(images, seed, packed=True)
    assert packed.dtype == tf.int32 and packed.shape == (6, augment.packed_length(2 + extra_views, 24, channels))
    # Eagerly to float rounding: the host compiles its colour ops with XLA (which rounds a few ulps
    # differently) and blurs only the chosen images.
    np.testing.assert_allclose(aug.on_device(packed).numpy(), host, atol=1e-5)
    compiled = tf.function(aug.on_device, jit_compile=True)(packed).numpy()
    np.testing.assert_allclose(compiled, host, atol=2e-5)
    # The finish stage against NumPy, from the unpacked crops and parameters.
    crops, params = augment.unpack_views(packed, 2 + extra_views, 24, channels)
    for v, config in enumerate(aug.configs):
        for b in (0, 5):
            row = {k: t.numpy()[b] for k, t in params[v].items()}
            want = (np_view(crops[b, v].numpy() / 255.0, row, config) - MEAN[channels]) / STD[channels]
            np.testing.assert_allclose(compiled[b, v], want, atol=1e-4, err_msg=f"view {v} image {b}")


def _jpeg(image):
    return tf.io.encode_jpeg(tf.constant(image), quality=90).numpy()


def test_device_views_of_encoded_images_and_of_shard_rows_equal_host_views():
    aug = augment.TwoViewAugment.from_preset("mocov2", 32, 3, MEAN[3], STD[3], extra_views=1)
    rng = np.random.default_rng(4)
    shapes = [(48, 64), (70, 40), (33, 33), (64, 96)]
    contents = tf.constant([_jpeg(rng.integers(0, 256, s + (3,), dtype=np.uint8)) for s in shapes])
    sizes = tf.constant(shapes, tf.int32)
    seed = tf.constant([5, 6])
    host = aug.batch_encoded(contents, sizes, seed, 3).numpy()
    packed = aug.batch_encoded(contents, sizes, seed, 3, packed=True)
    np.testing.assert_allclose(aug.on_device(packed).numpy(), host, atol=1e-5)  # the host's colour ops are compiled (XLA rounding)
    # A shard's rows of the batch pack what those rows pack in the whole batch.
    rows = aug.batch_encoded(contents[2:], sizes[2:], seed, 3, rows=(2, 4), packed=True)
    np.testing.assert_array_equal(rows.numpy(), packed.numpy()[2:])
    images = tf.constant(_images(4, 40, 40, 3, seed=9))
    np.testing.assert_array_equal(aug.batch(images[1:3], seed, rows=(1, 4), packed=True).numpy(),
                                  aug.batch(images, seed, packed=True).numpy()[1:3])


def test_dense_jitter_and_blur_equal_the_hosts():
    """The dense schedule (every op on every image) against the host's: the jitter per image, the
    blur of the chosen images only, eagerly and (the jitter) compiled."""
    rng = np.random.default_rng(1)
    x = tf.constant(rng.random((12, 9, 9, 3)), tf.float32)
    params = {k: tf.constant(v) for k, v in _random_params(12, rng).items()}
    factors = {k: params[k] for k in ops.JITTER_OPS}
    for active in (ops.JITTER_OPS, ("contrast",), ("brightness", "hue")):
        chosen = {k: (v if k in active else None) for k, v in factors.items()}
        per_image = ops.color_jitter(x, params["jitter"], params["order_keys"], chosen)
        dense = ops.color_jitter(x, params["jitter"], params["order_keys"], chosen, dense=True)
        np.testing.assert_allclose(dense.numpy(), per_image.numpy(), atol=1e-6, err_msg=str(active))
        compiled = tf.function(ops.color_jitter, jit_compile=True)(x, params["jitter"], params["order_keys"], chosen)
        np.testing.assert_allclose(compiled.numpy(), per_image.numpy(), atol=1e-6, err_msg=str(active))
    config = augment.ViewConfig(size=(9, 9), blur_p=0.5, solarize_p=0.5, grayscale_p=0.5)
    crops = augment.to_uint8(x)
    np.testing.assert_allclose(augment.finish_view(crops, params, config, dense=True).numpy(),
                               augment.finish_view(crops, params, config).numpy(), atol=2e-6)


def test_pipeline_device_mode_yields_the_packed_host_share():
    images = _images(40, 20, 20, 3, seed=2)
    aug = augment.TwoViewAugment.from_preset("byol", 16, 3, MEAN[3], STD[3])
    kwargs = dict(seed=3, start_epoch=1, steps_per_epoch=4, start_step=1)
    host = [b.numpy() for b in data.make_pretrain_dataset(images, 8, aug, **kwargs).take(3)]
    device = [b for b in data.make_pretrain_dataset(images, 8, aug, augment_on="device", **kwargs).take(3)]
    assert device[0].dtype == tf.int32 and device[0].shape == (8, augment.packed_length(2, 16, 3))
    for h, d in zip(host, device):
        np.testing.assert_allclose(aug.on_device(d).numpy(), h, atol=1e-5)  # the host's colour ops are compiled (XLA rounding)
    # A shard of a distributed run: its rows of every global batch.
    shard = [b.numpy() for b in data.make_pretrain_dataset(images, 8, aug, augment_on="device", shard=(1, 2),
                                                           **kwargs).take(3)]
    for s, d in zip(shard, device):
        np.testing.assert_array_equal(s, d.numpy()[4:])
    # Labels pass through on_device.
    labeled = data.ArraySource(images, np.arange(40) % 4)
    views, labels = next(iter(data.make_pretrain_dataset(labeled, 8, aug, with_labels=True, augment_on="device",
                                                         **kwargs)))
    out, same_labels = aug.on_device((views, labels))
    assert out.shape == (8, 2, 16, 16, 3) and same_labels is labels


def test_device_mode_errors_are_clear():
    images = _images(16, 20, 20, 3, seed=2)
    aug = augment.TwoViewAugment.from_preset("cifar", 16, 3, MEAN[3], STD[3])
    with pytest.raises(ValueError, match="augment_on must be 'host' or 'device'"):
        data.make_pretrain_dataset(images, 8, aug, seed=0, augment_on="gpu")
    with pytest.raises(ValueError, match="cannot be combined with vectorized=False"):
        data.make_pretrain_dataset(images, 8, aug, seed=0, augment_on="device", vectorized=False)
    with pytest.raises(ValueError, match="needs whole batches"):
        data.make_pretrain_dataset(images, 8, lambda image, seed: image, seed=0, augment_on="device")
    with pytest.raises(ValueError, match="on_device takes a packed int32 batch"):
        aug.on_device(tf.zeros([2, 2, 16, 16, 3]))
    with pytest.raises(ValueError, match="not a packed batch of 2 views"):
        aug.on_device(tf.zeros([2, 100], tf.int32))
    from mixmask_tf import backbones, models
    with pytest.raises(ValueError, match="device_augment must have an on_device method"):
        models.build_trainer("simsiam", backbones.small_convnet((16, 16, 3), width=4), device_augment=object())


def test_to_uint8_rounds_to_the_nearest_level_and_clips():
    x = tf.constant([-0.1, 0.0, 0.5 / 255, 0.6 / 255, 1.4 / 255, 254.6 / 255, 1.0, 1.3])
    np.testing.assert_array_equal(augment.to_uint8(x).numpy(), [0, 0, 0, 1, 1, 255, 255, 255])


def test_image_folder_in_device_mode_packs_the_full_image_crops(tmp_path):
    """A folder of JPEGs and PNGs of mixed sizes: the device mode's batches (crop windows decoded
    from the full images) finish into the host mode's views, whole and on a shard."""
    from image_folders import make_folder

    make_folder(str(tmp_path), per_class=4, splits=("train",))
    source = data.open_source("folder", "train", data_dir=str(tmp_path), image_size=16)
    aug = augment.TwoViewAugment.from_preset("simclr", 16, 3, MEAN[3], STD[3])
    kwargs = dict(seed=4, start_epoch=0, steps_per_epoch=2)
    host = [b.numpy() for b in data.make_pretrain_dataset(source, 6, aug, **kwargs).take(2)]
    device = [b for b in data.make_pretrain_dataset(source, 6, aug, augment_on="device", **kwargs).take(2)]
    assert device[0].dtype == tf.int32 and device[0].shape == (6, augment.packed_length(2, 16, 3))
    for h, d in zip(host, device):
        np.testing.assert_allclose(aug.on_device(d).numpy(), h, atol=1e-5)  # the host's colour ops are compiled (XLA rounding)


def test_device_mode_resumed_mid_epoch_sees_the_uninterrupted_batches():
    """A run resumed at (epoch 1, step 2) in device mode gets the packed batches an uninterrupted run
    gets from there on (what a SIGTERM's rerun relies on), on one pipeline and on shards."""
    images = _images(48, 20, 20, 3, seed=5)
    aug = augment.TwoViewAugment.from_preset("mocov2", 16, 3, MEAN[3], STD[3], extra_views=2)
    whole = [b.numpy() for b in data.make_pretrain_dataset(images, 8, aug, seed=9, start_epoch=0, steps_per_epoch=6,
                                                           augment_on="device").take(12)]
    resumed = [b.numpy() for b in data.make_pretrain_dataset(images, 8, aug, seed=9, start_epoch=1, start_step=2,
                                                             steps_per_epoch=6, augment_on="device").take(4)]
    for got, want in zip(resumed, whole[8:]):
        np.testing.assert_array_equal(got, want)
    shard = [b.numpy() for b in data.make_pretrain_dataset(images, 8, aug, seed=9, start_epoch=1, start_step=2,
                                                           steps_per_epoch=6, augment_on="device",
                                                           shard=(0, 2)).take(4)]
    for got, want in zip(shard, whole[8:]):
        np.testing.assert_array_equal(got, want[:4])
