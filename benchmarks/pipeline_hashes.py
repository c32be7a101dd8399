"""Hashes the first pretraining batches of every augmentation preset for a fixed seed.

    .venv/bin/python -m benchmarks.pipeline_hashes > /tmp/hashes_here.txt

Run it in two checkouts (e.g. before and after a refactoring) and `diff` the outputs: equal lines
mean bit-identical batches. Covers in-memory arrays (1 and 3 channels; a fresh pipeline, epoch 0
and a resumed epoch 2), an image folder (FileSource, read from disk) and the eval transform. It
uses only APIs that have not changed since the augmentation was vectorised
(`augment.TwoViewAugment`, `data.make_pretrain_dataset`, `data.open_source`), so an older checkout
runs it too (copy the file there and run `python pipeline_hashes.py` from that checkout's root).
"""

import hashlib
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.getcwd())  # the checkout it is run from, also when the file is copied elsewhere

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mixmask_tf import augment, data  # noqa: E402

PRESETS = ["fashion_mnist", "cifar", "mocov1", "mocov2", "simclr", "byol"]


def digest(x):
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]


def lines():
    out = []
    for channels, shape in ((1, (28, 28, 1)), (3, (32, 32, 3))):
        images, _ = data.synthetic_dataset(96, shape, seed=3)
        mean, std = (0.5,) * channels, (0.25,) * channels
        for name in PRESETS:
            aug = augment.TwoViewAugment.from_preset(name, shape[:2], channels, mean, std)
            for start in (None, 0, 2):
                ds = data.make_pretrain_dataset(images, 32, aug, seed=7, start_epoch=start, steps_per_epoch=3)
                out.append(f"{name} c={channels} start_epoch={start} " + " ".join(digest(b.numpy()) for b in ds.take(3)))
    root = tempfile.mkdtemp()
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        os.makedirs(os.path.join(root, "train", c))
        for i in range(20):
            img = rng.integers(0, 256, (int(rng.integers(30, 50)), int(rng.integers(30, 50)), 3), dtype=np.uint8)
            tf.io.write_file(os.path.join(root, "train", c, f"{i}.png"), tf.io.encode_png(img))
    source = data.open_source("folder", "train", data_dir=root, image_size=24)
    for name in PRESETS:
        aug = augment.TwoViewAugment.from_preset(name, (24, 24), 3, source.info.mean, source.info.std)
        ds = data.make_pretrain_dataset(source, 8, aug, seed=11, start_epoch=1, steps_per_epoch=3)
        out.append(f"folder {name} " + " ".join(digest(b.numpy()) for b in ds.take(3)))
    img = rng.integers(0, 256, (5, 40, 30, 3), dtype=np.uint8)
    out.append("eval_preprocess " + digest(augment.eval_preprocess(img, (0.4,) * 3, (0.2,) * 3, size=32).numpy()))
    return out


if __name__ == "__main__":
    print("\n".join(lines()))
