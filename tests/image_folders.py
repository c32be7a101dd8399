"""Image folders written for tests (tests/mixmask_tf/data and tests/trainers use them)."""

import os

import numpy as np
import tensorflow as tf


def write_image(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    array = np.asarray(array, np.uint8)
    encoded = tf.io.encode_png(array) if path.endswith(".png") else tf.io.encode_jpeg(array, quality=95)
    tf.io.write_file(path, encoded)


def make_folder(root, classes=("cat", "dog", "emu"), per_class=4, splits=("train", "test"), seed=0):
    """root/<split>/<class>/img_<i>.{png,jpg}, sizes varying, class = a constant colour."""
    rng = np.random.default_rng(seed)
    colours = {c: rng.integers(0, 256, 3) for c in classes}
    for split in splits:
        for c in classes:
            for i in range(per_class):
                h, w = int(rng.integers(20, 40)), int(rng.integers(20, 40))
                image = np.broadcast_to(colours[c], (h, w, 3)).copy()
                ext = ".png" if i % 2 else ".jpg"
                write_image(os.path.join(root, split, c, f"img_{i}{ext}") if split else
                             os.path.join(root, c, f"img_{i}{ext}"), image)
    return colours


def plant_bad_files(folder):
    good = np.full((12, 12, 3), 100, np.uint8)
    jpeg = tf.io.encode_jpeg(good).numpy()
    with open(os.path.join(folder, "truncated.jpg"), "wb") as f:
        f.write(jpeg[: len(jpeg) // 2])
    open(os.path.join(folder, "empty.png"), "wb").close()
    with open(os.path.join(folder, "notes.png"), "w") as f:
        f.write("this is not an image")
    return 3


# ----------------------------------------------------------------------------- decompression bombs
# Files a few hundred KB long (or less) whose headers declare far more pixels than the pixel
# budget; decoding any of them would ask for gigabytes. Built byte by byte (the formats'
# specifications), so no test depends on an encoder that refuses to write such files.


def png_bomb(height=20_000, width=20_000):
    """A valid 8-bit greyscale PNG of zeros: IHDR height x width, the rows zlib-compressed
    (about 1 KB per MB of pixels: 20000 x 20000 is ~390 KB and decodes to 400 MB, 1.2 GB as RGB;
    TensorFlow's PNG decoder itself refuses only from 2**29 pixels on)."""
    import struct
    import zlib

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + width)  # filter byte 0, then the row
    rows_per_piece = max(1, (1 << 22) // len(row))
    idat = []
    for start in range(0, height, rows_per_piece):
        idat.append(compressor.compress(row * min(rows_per_piece, height - start)))
    idat.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(idat)) + chunk(b"IEND", b"")


def jpeg_bomb(height=65_000, width=65_000, progressive=False):
    """A small real JPEG (TensorFlow's encoder) whose frame header (SOF0, or SOF2 when
    progressive) is patched to declare height x width (65000 x 65000: 12.7 GB as RGB)."""
    import struct

    image = np.full((16, 16, 3), 128, np.uint8)
    jpeg = bytearray(tf.io.encode_jpeg(image, progressive=progressive).numpy())
    marker = b"\xff\xc2" if progressive else b"\xff\xc0"
    sof = jpeg.index(marker)
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(jpeg)


def gif_bomb(frames=((60_000, 1), (1, 60_000)), screen=(16, 16)):
    """A GIF whose frames are (width, height) pairs: TensorFlow's decoder holds every frame and
    draws them on a canvas of the largest frame width x the largest frame height (the default's
    two thin frames make a 60000 x 60000 canvas, 10.8 GB as RGB, from a file of ~100 bytes)."""
    import struct

    out = [b"GIF89a", struct.pack("<HH", *screen), b"\x80\x00\x00", b"\x00\x00\x00\xff\xff\xff"]
    for width, height in frames:
        out += [b"\x2c", struct.pack("<HHHH", 0, 0, width, height), b"\x00", b"\x02",
                b"\x02\x4c\x01", b"\x00"]  # LZW data sub-block, then the chain's end
    out.append(b"\x3b")
    return b"".join(out)


def bmp_bomb(height=50_000, width=50_000):
    """A 24-bit BMP header declaring height x width (bottom-up), with only a few pixels of data."""
    import struct

    pixels = b"\x00" * 64
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


def webp_bomb(height=16_000, width=16_000):
    """An extended (VP8X) WebP whose canvas is patched to height x width (a small lossy image inside)."""
    import io
    import struct

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buffer, "WEBP", quality=80, exif=b"Exif\x00\x00MM")
    webp = bytearray(buffer.getvalue())
    assert webp[12:16] == b"VP8X"
    webp[24:30] = struct.pack("<I", width - 1)[:3] + struct.pack("<I", height - 1)[:3]
    return bytes(webp)


def bombs():
    """{name: (bytes, declared (height, width))} of one bomb of each kind above."""
    return {"png": (png_bomb(), (20_000, 20_000)), "jpeg": (jpeg_bomb(), (65_000, 65_000)),
            "jpeg_progressive": (jpeg_bomb(40_000, 30_000, progressive=True), (40_000, 30_000)),
            "gif": (gif_bomb(), (60_000, 60_000)), "bmp": (bmp_bomb(), (50_000, 50_000)),
            "webp": (webp_bomb(), (16_000, 16_000))}
