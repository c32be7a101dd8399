"""The pixel budget's header reader (mixmask_tf.data.image_header): every format's declared size
against Pillow's own header reader (which does not decode either), generated decompression bombs,
and what cannot be measured."""

import io

import numpy as np
import pytest
import tensorflow as tf
from image_folders import bmp_bomb, bombs, gif_bomb, png_bomb
from PIL import Image

from mixmask_tf.data import image_header

FORMATS = [("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {}), ("GIF", {}), ("BMP", {}),
           ("WEBP", {"lossless": True}), ("WEBP", {"quality": 70}), ("WEBP", {"quality": 70, "exif": b"Exif\x00\x00MM"})]


def _encode(array, fmt, **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def _pil_size(contents):
    """(height, width) by Pillow's header parser (Image.open reads headers only)."""
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        width, height = Image.open(io.BytesIO(contents)).size
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return height, width


declared = tf.function(image_header.declared_size)


@pytest.mark.parametrize("fmt,options", FORMATS)
@pytest.mark.parametrize("shape", [(37, 53, 3), (1, 300, 3), (211, 2, 1), (64, 64, 1)])
def test_declared_size_is_the_headers_and_the_decoded_size(fmt, options, shape):
    array = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    if shape[-1] == 1:
        array = array[..., 0]
    contents = _encode(array, fmt, **options)
    h, w, pixels = declared(tf.constant(contents)).numpy().tolist()
    assert (h, w) == _pil_size(contents) == shape[:2] and pixels == h * w
    decoded = tf.io.decode_image(contents, channels=3, expand_animations=False)
    assert tuple(decoded.shape[:2]) == (h, w)


def test_gif_declares_the_canvas_of_its_largest_frames_and_counts_every_frame():
    # Frames of different sizes: TensorFlow's canvas is the largest width x the largest height.
    frames = [Image.fromarray(np.full((h, w), 40 * i, np.uint8)) for i, (h, w) in enumerate([(20, 30), (25, 10), (5, 5)])]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], disposal=1, optimize=False)
    contents = buffer.getvalue()
    h, w, pixels = declared(tf.constant(contents)).numpy().tolist()
    decoded = tf.io.decode_image(contents, expand_animations=True)
    assert (h, w) == tuple(decoded.shape[1:3])
    assert pixels >= h * w
    # Many full frames: the pixel count is the frames' sum (giflib holds them all).
    frames = [Image.fromarray(np.full((30, 40), 10 * i, np.uint8)) for i in range(6)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert declared(tf.constant(buffer.getvalue())).numpy().tolist() == [30, 40, 6 * 30 * 40]
    # Thin frames whose canvas is huge.
    assert declared(tf.constant(gif_bomb(((1000, 1), (1, 2000))))).numpy().tolist() == [2000, 1000, 2_000_000]


@pytest.mark.parametrize("name", ["png", "jpeg", "jpeg_progressive", "gif", "bmp", "webp"])
def test_bombs_declare_their_size_and_are_refused_before_decoding(name):
    contents, (height, width) = bombs()[name]
    assert len(contents) < 1_000_000
    assert declared(tf.constant(contents)).numpy().tolist() == [height, width, height * width]
    if name in ("png", "jpeg", "jpeg_progressive"):  # Pillow reads these headers too
        assert _pil_size(contents) == (height, width)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        tf.function(lambda c: image_header.check_pixel_budget(c, image_header.DEFAULT_MAX_IMAGE_PIXELS, "bomb"))(
            tf.constant(contents))
    assert (f"bomb declares {height} x {width} = {height * width} pixels, beyond the pixel budget of "
            f"89478485 pixels") in error.value.message


def test_budget_boundary_and_bad_budgets():
    contents = tf.constant(png_bomb(300, 200))
    check = tf.function(lambda c, budget: image_header.check_pixel_budget(c, budget), reduce_retracing=False)
    assert check(contents, 60_000).numpy() == contents.numpy()  # exactly the budget: accepted
    with pytest.raises(tf.errors.InvalidArgumentError, match="300 x 200 = 60000 pixels, beyond the pixel budget of 59999"):
        check(contents, 59_999)
    for bad in (0, -5, 1.5, "many", None):
        with pytest.raises(ValueError, match="pixel budget"):
            image_header.check_max_pixels(bad)
    assert image_header.DEFAULT_MAX_IMAGE_PIXELS == 89_478_485 == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize("contents", [
    b"", b"GIF8", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, b"hello world, not an image",
    b"BM" + b"\x00" * 40, b"RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00" + b"\x02" + b"\x00" * 20,  # animated WebP
    b"\xff\x0a\xfa\x7f\x01\x90\x08",  # JPEG XL codestream: decodable by TensorFlow, not measured here
    b"\xff\xd8\xff\xe0" + b"\x00" * 20,  # a JPEG cut before its frame header
    bytes(gif_bomb(((0, 0),))),  # a frame of 0 x 0
    bmp_bomb(10, 0)])
def test_what_cannot_be_measured_is_unreadable(contents):
    with pytest.raises(tf.errors.InvalidArgumentError):
        declared(tf.constant(contents))


def test_gif_walk_is_bounded():
    """A GIF of more blocks than the walk's bound is not measured (unreadable), in bounded time."""
    many = gif_bomb(((1, 1),) * (image_header.GIF_MAX_STEPS + 10))
    with pytest.raises(tf.errors.InvalidArgumentError, match="header"):
        declared(tf.constant(many))
    few = gif_bomb(((2, 3),) * 500)
    assert declared(tf.constant(few)).numpy().tolist() == [3, 2, 3000]
