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
