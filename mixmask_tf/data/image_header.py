"""The pixel budget: an encoded image's declared size, read from its header without decoding it.

A compressed file a few hundred KB long can declare tens of thousands of pixels per side (a
"decompression bomb"); decoding it asks for gigabytes. Everything the project decodes that it did
not make -- the exported `serve_bytes` signature, image folders in training and evaluation -- first
reads the size the file declares (:func:`declared_size`) and refuses a file beyond the budget
(:func:`check_pixel_budget`) before any decoder runs.

Formats (those `tf.io.decode_image` dispatches on, by their first bytes, in its order):

* JPEG (``FF D8 FF``): the frame header (SOF), by ``tf.io.extract_jpeg_shape`` (libjpeg's own
  header reader, the one the decoder uses);
* PNG (the 8-byte signature, then the ``IHDR`` chunk): width, height uint32 big endian at
  bytes 16..24;
* GIF (``GIF8``): TensorFlow's decoder (giflib's ``DGifSlurp``) holds every frame of the file
  before it returns the first, and its canvas is the largest frame width x the largest frame
  height (not the logical screen). The header reader walks the block structure (every image
  descriptor; extension and image data sub-blocks are skipped) and declares that canvas; the
  pixel count is the larger of the canvas and the sum of all frames' areas. The walk takes at
  most :data:`GIF_MAX_STEPS` steps (a block, or 256 data sub-blocks): a GIF with more
  (thousands of frames) is not measured and counts as unreadable. Its jump table holds about
  14 bytes per file byte while it runs (measured: 279 MiB for a 20 MB GIF, in 0.75 s);
* BMP (``BM``): width, height int32 little endian at bytes 18..26 (a negative height is a
  top-down bitmap);
* WebP (``RIFF....WEBP``): ``VP8 `` (lossy: 14-bit width, height at bytes 26..30), ``VP8L``
  (lossless: 14-bit width - 1, height - 1 after the 0x2F signature byte at 20) or ``VP8X``
  (extended: 24-bit canvas width - 1, height - 1 at bytes 24..30). Animated WebP is not
  accepted (TensorFlow decodes it only to 4 channels, which no caller here asks for).

Anything else (JPEG XL, which TensorFlow also decodes, included), a header cut short, or a
size of 0 cannot be measured and counts as unreadable: :func:`declared_size` raises
InvalidArgumentError when run, so such a file is refused or skipped like a corrupt one.
"""

from __future__ import annotations

import tensorflow as tf

# Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, 1024**3 // 4 // 3: a 1 GiB
# budget at 3 bytes per pixel and 4x headroom): images up to about 9459 x 9459 pixels pass. A
# bigger image is refused by default; callers change the budget with ``max_image_pixels``.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485

FORMATS = "JPEG, PNG, GIF, BMP or WebP"
UNREADABLE = (f"not a {FORMATS} image whose size can be read from its header "
              f"(unknown format, truncated header or a size of 0)")

# The GIF walk's bound: a step reads one block (an image descriptor or an extension) or skips up
# to 256 data sub-blocks. A GIF needing more steps (over ~4000 frames) is not measured: unreadable.
# It bounds the walk's time (about 30 microseconds a step on a 2-core machine: 0.25 s for the
# longest walk), which a file of many tiny frames (12 bytes each) could otherwise stretch to
# seconds per 100 KB.
GIF_MAX_STEPS = 8192

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEADER_BYTES = 32  # every fixed-offset field read below lies in the first 32 bytes


def check_max_pixels(max_pixels) -> int:
    """``max_pixels`` as a positive int; ValueError otherwise."""
    try:
        value = int(max_pixels)
    except (TypeError, ValueError):
        raise ValueError(f"the pixel budget must be a positive integer, got {max_pixels!r}") from None
    if value != max_pixels or value < 1:
        raise ValueError(f"the pixel budget must be a positive integer, got {max_pixels!r}")
    return value


def _head(contents):
    """The first _HEADER_BYTES bytes of ``contents``, zero-padded: string scalar, int64 [_HEADER_BYTES]."""
    head = tf.strings.join([tf.strings.substr(contents, 0, _HEADER_BYTES), b"\0" * _HEADER_BYTES])
    head = tf.strings.substr(head, 0, _HEADER_BYTES)
    return head, tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)


def _le(b, start, count):
    return sum(b[start + i] * (1 << (8 * i)) for i in range(count))


def _be(b, start, count):
    return sum(b[start + i] * (1 << (8 * (count - 1 - i))) for i in range(count))


def _gif(contents):
    """(height, width, pixels) of a GIF: the canvas of its largest frame sides, and the larger
    of that canvas and the sum of every frame's area (what giflib holds)."""
    data = tf.io.decode_raw(contents, tf.uint8)
    n = tf.size(data)
    padded = tf.concat([data, tf.zeros([16], tf.uint8)], 0)  # reads past the end see zeros

    def at(i):
        return tf.cast(tf.gather(padded, tf.minimum(i, n)), tf.int64)

    def colour_table(packed):  # bytes of a global/local colour table, from its packed field
        return tf.where(tf.bitwise.bitwise_and(packed, 0x80) > 0,
                        3 * tf.bitwise.left_shift(tf.constant(2, packed.dtype), tf.bitwise.bitwise_and(packed, 7)),
                        tf.zeros([], packed.dtype))

    # Data sub-blocks (a length byte, that many bytes; a 0 length ends the chain) are skipped
    # 256 at a time: jump[i] is where 256 sub-blocks starting at i lead, a chain's end (or the
    # file's end, n) staying put. Eight gathers over the file, then a step per 256 sub-blocks.
    positions = tf.range(n + 1)
    lengths = tf.cast(padded[:n + 1], tf.int32)  # the byte at n (past the end) is 0: the end stays put
    jump = tf.where(lengths > 0, tf.minimum(positions + 1 + lengths, n), positions)
    for _ in range(8):
        jump = tf.gather(jump, jump)

    zero = tf.constant(0, tf.int64)
    start = 13 + tf.cast(colour_table(at(10)), tf.int32)

    def cond(pos, in_blocks, done, max_w, max_h, total, steps):
        return tf.logical_and(tf.logical_and(tf.logical_not(done), pos < n), steps < GIF_MAX_STEPS)

    def body(pos, in_blocks, done, max_w, max_h, total, steps):
        # In a chain of sub-blocks: jump; at its end, the next block follows the 0 byte.
        landed = tf.gather(jump, pos)
        ended = tf.equal(tf.gather(lengths, landed), 0)
        sub_pos = tf.where(ended, landed + 1, landed)
        # At a block: 0x2C image descriptor (left, top, width, height LE16, packed fields), 0x21
        # extension (a label byte, then sub-blocks); anything else (0x3B trailer) ends the walk.
        b = at(pos)
        image = tf.equal(b, 0x2C)
        extension = tf.equal(b, 0x21)
        fw = at(pos + 5) + 256 * at(pos + 6)
        fh = at(pos + 7) + 256 * at(pos + 8)
        image_next = pos + 10 + tf.cast(colour_table(at(pos + 9)), tf.int32) + 1  # + LZW code size byte
        block_pos = tf.where(image, image_next, pos + 2)
        counted = tf.logical_and(tf.logical_not(in_blocks), image)
        return (tf.where(in_blocks, sub_pos, block_pos),
                tf.where(in_blocks, tf.logical_not(ended), tf.logical_or(image, extension)),
                tf.logical_and(tf.logical_not(in_blocks), tf.logical_not(tf.logical_or(image, extension))),
                tf.where(counted, tf.maximum(max_w, fw), max_w),
                tf.where(counted, tf.maximum(max_h, fh), max_h),
                tf.where(counted, total + fw * fh, total),
                steps + 1)

    pos, _, done, max_w, max_h, total, _ = tf.while_loop(
        cond, body, (start, tf.constant(False), tf.constant(False), zero, zero, zero, tf.constant(0)),
        parallel_iterations=1)
    # A walk cut short by GIF_MAX_STEPS: the file is not measured (unreadable), not guessed.
    finished = tf.logical_or(done, pos >= n)
    return (tf.where(finished, max_h, zero), tf.where(finished, max_w, zero),
            tf.where(finished, tf.maximum(max_h * max_w, total), zero))


def _read(contents):
    """(height, width, pixels) int64 scalars; (0, 0, 0) when the header cannot be read."""
    contents = tf.convert_to_tensor(contents, tf.string)
    head, b = _head(contents)
    b = [b[i] for i in range(_HEADER_BYTES)]
    length = tf.strings.length(contents)
    zero = tf.constant(0, tf.int64)
    none = (zero, zero, zero)

    def sized(h, w):
        return h, w, h * w

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(contents), tf.int64)
        return sized(shape[0], shape[1])

    def png():
        ok = tf.logical_and(length >= 24, tf.equal(tf.strings.substr(head, 12, 4), b"IHDR"))
        return tf.cond(ok, lambda: sized(_be(b, 20, 4), _be(b, 16, 4)), lambda: none)

    def gif():
        return tf.cond(length >= 13, lambda: _gif(contents), lambda: none)

    def bmp():
        def signed(v):
            return tf.where(v >= 2 ** 31, v - 2 ** 32, v)

        width, height = signed(_le(b, 18, 4)), signed(_le(b, 22, 4))
        ok = tf.logical_and(length >= 32, width > 0)
        return tf.cond(ok, lambda: sized(tf.abs(height), width), lambda: none)

    def webp():
        chunk = tf.strings.substr(head, 12, 4)
        lossy = tf.logical_and(tf.equal(chunk, b"VP8 "), tf.equal(tf.strings.substr(head, 23, 3), b"\x9d\x01\x2a"))
        lossless = tf.logical_and(tf.equal(chunk, b"VP8L"), tf.equal(b[20], 0x2F))
        animated = tf.bitwise.bitwise_and(b[20], 0x02) > 0
        extended = tf.logical_and(tf.equal(chunk, b"VP8X"), tf.logical_not(animated))
        bits = _le(b, 21, 4)
        branches = [
            (tf.logical_and(length >= 30, lossy),
             lambda: sized(tf.bitwise.bitwise_and(_le(b, 28, 2), 0x3FFF), tf.bitwise.bitwise_and(_le(b, 26, 2), 0x3FFF))),
            (tf.logical_and(length >= 25, lossless),
             lambda: sized(tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 14), 0x3FFF) + 1,
                           tf.bitwise.bitwise_and(bits, 0x3FFF) + 1)),
            (tf.logical_and(length >= 30, extended), lambda: sized(_le(b, 27, 3) + 1, _le(b, 24, 3) + 1)),
        ]
        return tf.case(branches, default=lambda: none, exclusive=True)

    formats = [
        (tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff"), jpeg),
        (tf.equal(tf.strings.substr(head, 0, 8), _PNG_SIGNATURE), png),
        (tf.equal(tf.strings.substr(head, 0, 4), b"GIF8"), gif),
        (tf.equal(tf.strings.substr(head, 0, 2), b"BM"), bmp),
        (tf.logical_and(tf.equal(tf.strings.substr(head, 0, 4), b"RIFF"),
                        tf.equal(tf.strings.substr(head, 8, 4), b"WEBP")), webp),
    ]
    return tf.case(formats, default=lambda: none, exclusive=False)  # first match, as decode_image


def declared_size(contents) -> tf.Tensor:
    """The size an encoded image declares in its header, read without decoding the image.

    Args:
      contents: string scalar, the file's bytes (JPEG, PNG, GIF, BMP or WebP; see the module
        docstring for what is read).

    Returns:
      int64 [3]: (height, width, pixels), the size of the image ``tf.io.decode_image(...,
      expand_animations=False)`` returns and the pixels its decoder holds (height * width; for
      GIF, the larger of that and the sum of every frame's area). Raises InvalidArgumentError
      (when run) for a file whose header cannot be read (another format, a truncated header, a
      size of 0).
    """
    height, width, pixels = _read(contents)
    ok = tf.logical_and(tf.minimum(height, width) > 0, pixels > 0)
    check = tf.debugging.Assert(ok, [tf.constant(UNREADABLE)])
    with tf.control_dependencies([check]):
        return tf.identity(tf.stack([height, width, pixels]))


def budget_message(size, max_pixels, what="image") -> tf.Tensor:
    """The refusal, string scalar: '<what> declares H x W = N pixels, beyond the pixel budget of B pixels ...'.

    Args:
      size: int64 [3], :func:`declared_size`.
      max_pixels: the budget (Python int).
      what: the image's name (string or string scalar tensor).
    """
    text = tf.strings.as_string
    return tf.strings.join([
        what, " declares ", text(size[0]), " x ", text(size[1]), " = ", text(size[2]),
        f" pixels, beyond the pixel budget of {int(max_pixels)} pixels (max_image_pixels); "
        f"it is refused without being decoded"])


def budgeted_size(contents, max_pixels, what="image") -> tf.Tensor:
    """:func:`declared_size` of ``contents``, once checked against the pixel budget.

    Args:
      contents: string scalar, an encoded image.
      max_pixels: the pixel budget (Python int): an image whose declared pixel count is larger
        is refused.
      what: how the refusal names the image (string or string scalar tensor).

    Returns:
      int64 [3], (height, width, pixels). Raises InvalidArgumentError (when run) beyond the
      budget ('image declares 30000 x 30000 = 900000000 pixels, beyond the pixel budget of
      89478485 pixels (max_image_pixels); ...') or on an unreadable header.
    """
    max_pixels = check_max_pixels(max_pixels)
    size = declared_size(contents)
    check = tf.debugging.Assert(size[2] <= max_pixels, [budget_message(size, max_pixels, what)], summarize=1)
    with tf.control_dependencies([check]):
        return tf.identity(size)


def check_pixel_budget(contents, max_pixels, what="image") -> tf.Tensor:
    """``contents`` again, with a control dependency on :func:`budgeted_size`: decode the returned
    tensor and the decoder runs only once the header passed the budget (string scalar; raises
    InvalidArgumentError when run, as :func:`budgeted_size`)."""
    size = budgeted_size(contents, max_pixels, what)
    with tf.control_dependencies([size]):
        return tf.identity(contents)
