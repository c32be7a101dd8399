"""Full-image random resized crops of encoded files: crop boxes drawn on each image's own size,
only the window decoded, resized with antialiasing (checked against NumPy), and the two-view
pipeline on image folders (exact per (seed, epoch, step), shards, the left edge of wide images)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import augment, data
from mixmask_tf.augment import ops
from mixmask_tf.data.sources import encoded_image_size
from image_folders import write_image


def np_resize_antialias(img, out_h, out_w):
    """Independent reference: separable triangle filter whose support grows with the downscale
    factor (PIL's / torchvision's bilinear on PIL images), half-pixel centres."""

    def weights(n_in, n_out):
        scale = n_in / n_out
        support = max(scale, 1.0)
        centres = (np.arange(n_out) + 0.5) * scale
        w = np.maximum(0.0, 1.0 - np.abs((np.arange(n_in)[None, :] + 0.5 - centres[:, None]) / support))
        return w / w.sum(1, keepdims=True)

    rows = np.einsum("ij,jkc->ikc", weights(img.shape[0], out_h), img.astype(np.float64))
    return np.einsum("ikc,lk->ilc", rows, weights(img.shape[1], out_w))


def _png(array):
    return tf.io.encode_png(np.asarray(array, np.uint8)).numpy()


def _jpeg(array):
    return tf.io.encode_jpeg(np.asarray(array, np.uint8), quality=95).numpy()


def test_crop_boxes_with_per_image_sizes_equal_per_size_draws():
    """A [B] vector of sizes gives row b what a batch drawn at image b's size gives row b."""
    heights = np.array([30, 375, 64, 500, 12], np.int32)
    widths = np.array([200, 500, 64, 333, 90], np.int32)
    seed = tf.constant([7, 8])
    boxes = np.stack([b.numpy() for b in ops.sample_crop_boxes(seed, 5, heights, widths)], 1)
    for b in range(5):
        alone = np.stack([v.numpy() for v in ops.sample_crop_boxes(seed, 5, int(heights[b]), int(widths[b]))], 1)
        np.testing.assert_array_equal(boxes[b], alone[b])
        top, left, h, w = boxes[b]
        assert 0 <= top and top + h <= heights[b] and 0 <= left and left + w <= widths[b]


@pytest.mark.parametrize("fmt", ["png", "jpeg", "bmp"])
def test_encoded_image_size_reads_the_header(fmt, tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    if fmt == "bmp":
        from PIL import Image

        Image.fromarray(image).save(tmp_path / "x.bmp")
        contents = (tmp_path / "x.bmp").read_bytes()
    else:
        contents = _png(image) if fmt == "png" else _jpeg(image)
    assert encoded_image_size(tf.constant(contents)).numpy().tolist() == [37, 53]
    with pytest.raises(tf.errors.InvalidArgumentError):
        encoded_image_size(tf.constant(b"not an image at all"))


def _crops_uint8(contents, boxes, size, channels):
    """decode_resized_crops_uint8 of one box per image (boxes int [B, 4]): uint8 [B, h, w, C]."""
    boxes = np.asarray(boxes, np.int32)
    return ops.decode_resized_crops_uint8(tf.constant(contents), *[tf.constant(boxes[:, i:i + 1]) for i in range(4)],
                                          size, channels)[:, 0].numpy()


def _assert_rounds(got, want_unit):
    """uint8 ``got`` is ``want_unit`` (in [0, 1]) rounded to the nearest level (ties either way)."""
    assert got.dtype == np.uint8
    assert np.abs(got.astype(np.float64) - want_unit * 255.0).max() <= 0.5 + 1e-3


def test_decode_resized_crop_png_equals_numpy_slice_and_antialiased_resize():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(60, 90), (40, 33), (20, 25)]]
    # A downscale (50x80 -> 16), an upscale (10x7 -> 16) and the whole image.
    boxes = np.array([[5, 3, 50, 80], [30, 20, 10, 7], [0, 0, 20, 25]], np.int32)
    out = _crops_uint8([_png(x) for x in images], boxes, (16, 16), 3)
    assert out.shape == (3, 16, 16, 3)
    for x, (t, l, h, w), got in zip(images, boxes, out):
        _assert_rounds(got, np_resize_antialias(x[t:t + h, l:l + w] / 255.0, 16, 16))


def test_decode_resized_crop_jpeg_decodes_only_the_window_but_equals_decode_then_slice():
    rng = np.random.default_rng(2)
    smooth = tf.image.resize(rng.random((1, 12, 16, 3)), [120, 160]).numpy()[0] * 255
    contents = _jpeg(smooth)
    full = tf.io.decode_jpeg(contents, channels=3).numpy()
    box = [17, 41, 64, 90]
    got = _crops_uint8([contents], [box], (24, 24), 3)[0]
    _assert_rounds(got, np_resize_antialias(full[17:17 + 64, 41:41 + 90] / 255.0, 24, 24))
    # Grayscale decode of a colour JPEG: libjpeg's luma, as decode_image(channels=1).
    gray = _crops_uint8([contents], [box], (24, 24), 1)[0]
    full_gray = tf.io.decode_image(contents, channels=1).numpy()
    _assert_rounds(gray, np_resize_antialias(full_gray[17:17 + 64, 41:41 + 90] / 255.0, 24, 24))


def test_batch_encoded_makes_the_draws_of_the_batched_path():
    """On S x S images every crop is an upscale, where the antialiased resize is plain bilinear: the
    views of the encoded files then equal the in-memory path's views of the same images."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    aug = augment.TwoViewAugment.from_preset("mocov2", 32, 3, (0.4, 0.45, 0.5), (0.2, 0.25, 0.3))
    seed = tf.constant([11, 12])
    contents = tf.constant([_png(x) for x in images])
    sizes = tf.constant([[32, 32]] * 6, tf.int32)
    from_files = aug.batch_encoded(contents, sizes, seed, 3).numpy()
    in_memory = aug.batch(images, seed).numpy()
    assert from_files.shape == (6, 2, 32, 32, 3)
    # The same draws, and crops (rounded to uint8) within one level where the two resizes' float
    # rounding puts a pixel on the other side of a tie.
    crops_f, params_f = augment.unpack_views(aug.batch_encoded(contents, sizes, seed, 3, packed=True), 2, 32, 3)
    crops_m, params_m = augment.unpack_views(aug.batch(images, seed, packed=True), 2, 32, 3)
    for view_f, view_m in zip(params_f, params_m):
        for name in view_f:
            np.testing.assert_array_equal(view_f[name].numpy(), view_m[name].numpy(), err_msg=name)
    level = np.abs(crops_f.numpy().astype(int) - crops_m.numpy())
    assert level.max() <= 1 and (level == 0).mean() > 0.99
    close = np.isclose(from_files, in_memory, atol=2e-4)
    assert close.mean() > 0.98
    np.testing.assert_allclose(from_files, in_memory, atol=2.0 / 255 / 0.2)
    # Rows of a larger batch get what they get in the whole batch, whatever the other rows' sizes.
    rows = aug.batch_encoded(contents[2:4], sizes[2:4], seed, 3, rows=(2, 6)).numpy()
    np.testing.assert_allclose(rows, from_files[2:4], atol=1e-6)


def _wide_folder(root, n=8, edge=16):
    """Wide 32 x 160 images: the left ``edge`` columns red, the rest blue; JPEG and PNG."""
    for c in ("a", "b"):
        for i in range(n):
            image = np.zeros((32, 160, 3), np.uint8)
            image[..., 2] = 255
            image[:, :edge] = (255, 0, 0)
            write_image(os.path.join(root, "train", c, f"{i}.{'png' if i % 2 else 'jpg'}"), image)
    return root


def _red_views(ds, batches):
    count = 0
    for x in ds.take(batches):
        v = x.numpy() * 0.25 + 0.5
        count += int(((v[..., 0] > 0.7) & (v[..., 2] < 0.3)).any(axis=(2, 3)).sum())
    return count


@pytest.mark.slow
def test_pretraining_views_of_a_folder_see_the_left_edge_of_wide_images(tmp_path):
    """Crops are drawn on the full 32 x 160 image: some views show its red left edge, which a
    crop from the centre square (the former pre-shrunk path, ``full_image=False``) never can."""
    source = data.open_source("folder", "train", data_dir=_wide_folder(str(tmp_path)), image_size=32)
    assert source.encoded
    aug = augment.TwoViewAugment.from_preset("cifar", 32, 3, (0.5,) * 3, (0.25,) * 3)
    full = data.make_pretrain_dataset(source, 8, aug, seed=1, start_epoch=0, steps_per_epoch=2)
    centre = data.make_pretrain_dataset(source, 8, aug, seed=1, start_epoch=0, steps_per_epoch=2, full_image=False)
    assert _red_views(full, 8) > 0
    assert _red_views(centre, 8) == 0
    # Evaluation keeps resize + centre crop: no red.
    ev = np.concatenate([x.numpy() for x, _ in data.make_eval_dataset(source, None, 16, lambda im: im)])
    assert ev.shape == (16, 32, 32, 3) and not ((ev[..., 0] > 180) & (ev[..., 2] < 80)).any()


@pytest.mark.slow
def test_full_image_batches_are_exact_per_epoch_step_and_shard(tmp_path):
    source = data.open_source("folder", "train", data_dir=_wide_folder(str(tmp_path)), image_size=32)
    aug = augment.TwoViewAugment.from_preset("mocov2", 32, 3, (0.5,) * 3, (0.25,) * 3)

    def run(**kw):
        ds = data.make_pretrain_dataset(source, 8, aug, seed=3, start_epoch=0, steps_per_epoch=2, **kw)
        return np.concatenate([x.numpy() for x in ds.take(4 - kw.get("start_step", 0))])

    whole = run()
    np.testing.assert_array_equal(run(start_step=1), whole[8:])  # resumed mid-epoch
    shards = [run(shard=(i, 2)) for i in range(2)]
    merged = np.concatenate([np.concatenate([shards[0][4 * j:4 * j + 4], shards[1][4 * j:4 * j + 4]])
                             for j in range(4)])
    # The shards' rows equal the whole batch's to float rounding, not bit for bit: on this 2-core
    # AMD machine one view's channel differed by 2.4e-7 (1 ulp) between a batch of 8 and of 4.
    np.testing.assert_allclose(merged, whole, rtol=0, atol=1e-6)
    assert not np.array_equal(whole[:8], whole[16:24])  # epochs differ


def test_full_image_needs_encoded_images():
    aug = augment.TwoViewAugment.from_preset("cifar", 8, 3, (0.5,) * 3, (0.25,) * 3)
    images = np.zeros((8, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="full_image=True needs a source of encoded images"):
        data.make_pretrain_dataset(images, 4, aug, seed=0, full_image=True)


def test_a_file_that_decodes_badly_costs_its_batch_not_the_run(tmp_path):
    root = _wide_folder(str(tmp_path), n=4)
    source = data.open_source("folder", "train", data_dir=root, image_size=32, verify=False)
    # A valid JPEG header with its data cut: the header reads, the decode fails.
    path = os.path.join(root, "train", "a", "0.jpg")
    with open(path, "rb") as f:
        contents = f.read()
    with open(path, "wb") as f:
        f.write(contents[: len(contents) // 3])
    aug = augment.TwoViewAugment.from_preset("cifar", 32, 3, (0.5,) * 3, (0.25,) * 3)
    batches = list(data.make_pretrain_dataset(source, 4, aug, seed=0, shuffle=False))
    assert len(batches) == 1  # of 2: the batch holding the truncated file is dropped


def test_eval_crop_ratio_is_torchvisions_resize_then_centre_crop():
    """ratio 0.875 at 224 px: shorter side 256, centre 224 (torchvision's evaluation transform)."""
    image = np.random.default_rng(4).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    got = data.conform_image(image, 224, 3, crop_ratio=0.875).numpy().astype(np.float64)
    resized = np_resize_antialias(image, 256, 341)  # 400 * 256 / 300 = 341.3
    top, left = (256 - 224) // 2, (341 - 224) // 2
    np.testing.assert_allclose(got, np.clip(np.round(resized[top:top + 224, left:left + 224]), 0, 255), atol=1.0)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        data.conform_image(image, 224, 3, crop_ratio=1.2)


@pytest.mark.parametrize("decode_once", ["cheaper", "always", "never"])
def test_decode_resized_crops_uint8_is_the_rounded_antialiased_resize_of_each_window(decode_once):
    """Two windows per image: overlapping ones (one decode of their union is cheaper) and two small
    far-apart ones of a larger image (two decodes are): the same pixels whichever way, each the
    rounded NumPy resize of the fully decoded image's window."""
    rng = np.random.default_rng(4)
    smooth = tf.image.resize(rng.random((1, 12, 16, 3)), [120, 160]).numpy()[0] * 255
    # Full-resolution chroma: libjpeg then decodes a window to exactly the full decode's pixels (with
    # subsampled chroma a window's edge rows and columns may differ by a few levels).
    jpeg = tf.io.encode_jpeg(np.asarray(smooth, np.uint8), quality=95, chroma_downsampling=False).numpy()
    png = _png(smooth[:60, :80])
    boxes = np.array([[[10, 20, 90, 120], [25, 5, 80, 100]],  # JPEG: overlapping windows
                      [[0, 0, 12, 14], [100, 140, 20, 20]],  # JPEG: small windows in opposite corners
                      [[3, 4, 50, 70], [20, 30, 9, 11]]], np.int32)  # PNG: a downscale and an upscale
    contents = tf.constant([jpeg, jpeg, png])
    out = ops.decode_resized_crops_uint8(contents, *[tf.constant(boxes[..., i]) for i in range(4)], (16, 16), 3,
                                         decode_once=decode_once).numpy()
    assert out.shape == (3, 2, 16, 16, 3) and out.dtype == np.uint8
    full = [tf.io.decode_jpeg(jpeg, channels=3).numpy()] * 2 + [tf.io.decode_png(png, channels=3).numpy()]
    for image, image_boxes, got in zip(full, boxes, out):
        for (t, l, h, w), view in zip(image_boxes, got):
            exact = np_resize_antialias(image[t:t + h, l:l + w], 16, 16)
            want = np.clip(np.round(exact), 0, 255)
            # A float32 resize against a float64 reference: only a value on a .5 boundary (an
            # upscale's half-way points are exactly .5) may round the other way.
            off = view != want
            assert np.abs(view.astype(np.int32) - want).max() <= 1
            assert np.all(np.abs(exact[off] % 1.0 - 0.5) < 1e-3)


def test_decode_resized_crops_uint8_checks_its_mode_and_decodes_one_channel():
    smooth = tf.image.resize(np.random.default_rng(5).random((1, 6, 8, 3)), [60, 80]).numpy()[0] * 255
    contents = tf.constant([_jpeg(smooth)])
    box = [tf.constant([[v, v]]) for v in (5, 7, 40, 50)]
    with pytest.raises(ValueError, match="decode_once must be"):
        ops.decode_resized_crops_uint8(contents, *box, (8, 8), 3, decode_once="sometimes")
    gray = ops.decode_resized_crops_uint8(contents, *box, (8, 8), 1).numpy()
    full_gray = tf.io.decode_image(_jpeg(smooth), channels=1).numpy()
    want = np.round(np_resize_antialias(full_gray[5:45, 7:57], 8, 8))
    assert gray.shape == (1, 2, 8, 8, 1) and np.abs(gray[0, 0].astype(np.int32) - want).max() <= 1
    np.testing.assert_array_equal(gray[0, 0], gray[0, 1])
