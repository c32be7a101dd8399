"""Datasets and tf.data input pipelines for MixMask pretraining and evaluation.

Sources (a small registry, :data:`DATASETS`, easy to extend with :func:`register_dataset`):

* ``fashion_mnist``: read from Debian's ``dataset-fashion-mnist`` package (gzipped IDX files in
  :data:`FASHION_MNIST_DIR`), no network.
* ``synthetic``: generated, learnable toy data for tests (:func:`synthetic_dataset`).

Pipelines:

* :func:`make_pretrain_dataset`: each element is ONE float32 tensor [B, 2, H', W', C] (view 1 =
  query, view 2 = key), as MultiWorkerMirroredStrategy's ``fit`` needs (no uint8, no tuples).
  Per-example augmentation seeds come from ``tf.data.Dataset.random(seed,
  rerandomize_each_iteration=True)``: they differ per example and per epoch and are reproducible
  for a fixed ``seed``.
* :func:`make_eval_dataset`: (float32 [B, H', W', C], int64 [B]) batches, in order.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import zlib
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

__all__ = [
    "DatasetNotFoundError",
    "CorruptDatasetError",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASS_NAMES",
    "FASHION_MNIST_INFO",
    "DatasetInfo",
    "read_idx",
    "load_fashion_mnist",
    "synthetic_dataset",
    "synthetic_info",
    "DATASETS",
    "register_dataset",
    "load_dataset",
    "make_pretrain_dataset",
    "make_eval_dataset",
    "conform_image",
    "estimate_mean_std",
    "Source",
    "ArraySource",
    "FileSource",
    "StreamSource",
    "as_source",
    "load_mnist",
    "open_source",
]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where they were looked for (the message names the fix)."""


class CorruptDatasetError(ValueError):
    """A dataset file is malformed (bad magic number, truncated, inconsistent)."""


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                             "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset.

    Attributes:
      name: registry name.
      image_shape: (H, W, C) of the stored images.
      num_classes: number of labels.
      mean: per-channel mean of the train split, [0, 1] pixel units (tuple of C floats).
      std: per-channel standard deviation of the train split, [0, 1] pixel units.
      class_names: optional tuple of num_classes names.
    """

    name: str
    image_shape: tuple
    num_classes: int
    mean: tuple
    std: tuple
    class_names: tuple = ()


# Measured on the 60,000 train images of Debian's dataset-fashion-mnist (pixels / 255, over all
# pixels): mean 0.286041, std 0.353024 (tests/test_data.py recomputes them).
FASHION_MNIST_INFO = DatasetInfo(
    name="fashion_mnist",
    image_shape=(28, 28, 1),
    num_classes=10,
    mean=(0.2860,),
    std=(0.3530,),
    class_names=FASHION_MNIST_CLASS_NAMES,
)

# ----------------------------------------------------------------------------- IDX files

# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzipped or raw.

    Gzip is detected by the magic bytes 0x1f 0x8b, not by the file name. The header (two zero
    bytes, a type code, the number of dimensions, then one big-endian uint32 per dimension) is
    validated, and the payload must have exactly prod(dims) items.

    Args:
      path: file path (str or os.PathLike).

    Returns:
      np.ndarray with the stored shape, in native byte order (uint8 for MNIST-style files).

    Raises:
      FileNotFoundError: the file does not exist.
      CorruptDatasetError: bad gzip stream, bad magic number / type code, truncated or
        oversized payload. The message names the file.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise CorruptDatasetError(f"{path}: corrupt or truncated gzip stream ({e})") from e
    if len(raw) < 4:
        raise CorruptDatasetError(f"{path}: file too short for an IDX header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise CorruptDatasetError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000TTNN with type TT "
            f"in {sorted(hex(k) for k in _IDX_DTYPES)} and NN >= 1 dimensions)")
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise CorruptDatasetError(f"{path}: truncated IDX header ({len(raw)} bytes, "
                                  f"{header_len} needed for {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_len
    if actual != expected:
        kind = "truncated" if actual < expected else "has trailing bytes"
        raise CorruptDatasetError(f"{path}: IDX payload {kind}: {actual} bytes for shape {dims} "
                                  f"of {dtype.name} ({expected} bytes expected)")
    data = np.frombuffer(raw, dtype, offset=header_len).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True)


# ----------------------------------------------------------------------------- Fashion-MNIST

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_file(data_dir: str, stem: str) -> str:
    """Returns data_dir/stem.gz or data_dir/stem, or raises DatasetNotFoundError."""
    for name in (stem + ".gz", stem):
        candidate = os.path.join(data_dir, name)
        if os.path.isfile(candidate):
            return candidate
    raise DatasetNotFoundError(
        f"Fashion-MNIST file {stem}.gz not found in {data_dir!r} (looked for "
        f"{os.path.join(data_dir, stem + '.gz')}). Install Debian's package with "
        f"`sudo apt-get install dataset-fashion-mnist` (files go to {FASHION_MNIST_DIR}), "
        f"or pass data_dir= a directory holding the four IDX files.")


def load_fashion_mnist(split: str = "train", data_dir: Optional[str] = None,
                       limit: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Loads Fashion-MNIST from IDX files (Debian's dataset-fashion-mnist layout).

    Args:
      split: "train" (60,000 images) or "test" (10,000 images).
      data_dir: directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]; None means
        FASHION_MNIST_DIR.
      limit: if given, only the first ``limit`` examples are returned.

    Returns:
      (images, labels): uint8 [N, 28, 28, 1] and int64 [N] with labels in [0, 10).

    Raises:
      ValueError: unknown split or negative limit.
      DatasetNotFoundError: a file is missing (the message names the apt-get fix).
      CorruptDatasetError: a file is malformed or images and labels disagree.
    """
    if split not in _FASHION_FILES:
        raise ValueError(f"unknown split {split!r}; known splits: {', '.join(_FASHION_FILES)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    data_dir = FASHION_MNIST_DIR if data_dir is None else os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise DatasetNotFoundError(
            f"Fashion-MNIST directory {data_dir!r} does not exist. Install Debian's package "
            f"with `sudo apt-get install dataset-fashion-mnist` (files go to "
            f"{FASHION_MNIST_DIR}), or pass data_dir= a directory holding the four IDX files.")
    image_path = _find_file(data_dir, _FASHION_FILES[split][0])
    label_path = _find_file(data_dir, _FASHION_FILES[split][1])
    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise CorruptDatasetError(f"{image_path}: expected uint8 images [N, 28, 28], got "
                                  f"{images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise CorruptDatasetError(f"{label_path}: expected {images.shape[0]} labels, got shape "
                                  f"{labels.shape}")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASS_NAMES):
        raise CorruptDatasetError(f"{label_path}: label {int(labels.max())} out of range [0, 10)")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return np.ascontiguousarray(images[..., None]), labels.astype(np.int64)


# ----------------------------------------------------------------------------- synthetic


def _class_parameters(num_classes: int, channels: int):
    """Fixed (seed-independent) per-class stripe angle, frequency and colour."""
    rng = np.random.default_rng(20240601)  # fixed: classes look the same in every split.
    # Angles in [0, pi/2): a horizontal flip maps angle a to pi - a, never onto another class.
    angles = np.arange(num_classes) * (np.pi / 2) / num_classes
    cycles = 2.0 + (np.arange(num_classes) % 3) * 1.5  # stripe periods per image side
    if channels == 1:
        colours = np.linspace(0.45, 1.0, num_classes)[rng.permutation(num_classes)][:, None]
    else:
        hues = (np.arange(num_classes) / num_classes + rng.uniform(0, 0.05)) % 1.0
        colours = np.stack([_hue_to_rgb(h) for h in hues]) * 0.7 + 0.3
        if channels != 3:
            colours = np.tile(colours.mean(axis=1, keepdims=True), (1, channels))
    return angles, cycles, colours.astype(np.float32)


def _hue_to_rgb(hue: float) -> np.ndarray:
    """Fully saturated RGB colour of a hue in [0, 1)."""
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    return 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def synthetic_dataset(num_examples: int, image_shape: Sequence[int] = (32, 32, 3),
                      num_classes: int = 4, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Generates learnable toy images: class-specific oriented stripes and colour, plus noise.

    Class k has a fixed stripe orientation (k * 90 / num_classes degrees), a fixed stripe
    frequency (2, 3.5 or 5 periods per side) and a fixed colour (an intensity for 1 channel);
    these do not depend on ``seed``, so different seeds give different samples of the same
    classes (use e.g. seed 0 for train and seed 1 for test). Each example has a random phase,
    a small random angle/frequency/contrast perturbation and Gaussian pixel noise (std 0.06).
    Labels are balanced (num_examples // num_classes each, remainder to the first classes) and
    shuffled.

    Args:
      num_examples: N >= 0.
      image_shape: (H, W, C).
      num_classes: number of classes, >= 1.
      seed: numpy seed of the per-example randomness.

    Returns:
      (images, labels): uint8 [N, H, W, C] and int64 [N].
    """
    height, width, channels = (int(v) for v in image_shape)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_examples) % num_classes).astype(np.int64)
    angles, cycles, colours = _class_parameters(num_classes, channels)
    yy, xx = np.meshgrid(np.arange(height, dtype=np.float32) / height,
                         np.arange(width, dtype=np.float32) / width, indexing="ij")
    images = np.empty((num_examples, height, width, channels), np.uint8)
    chunk = 1024
    for start in range(0, num_examples, chunk):
        lab = labels[start:start + chunk]
        n = lab.shape[0]
        angle = angles[lab] + rng.uniform(-0.08, 0.08, n)
        freq = cycles[lab] * rng.uniform(0.9, 1.1, n)
        phase = rng.uniform(0, 2 * np.pi, n)
        amp = rng.uniform(0.6, 0.9, n)
        proj = (np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy)
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq[:, None, None] * proj
                                     + phase[:, None, None])
        img = 0.1 + amp[:, None, None, None] * stripes[..., None] * colours[lab][:, None, None]
        img = img + rng.normal(0.0, 0.06, img.shape)
        images[start:start + n] = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    return images, labels


def synthetic_info(image_shape: Sequence[int] = (32, 32, 3), num_classes: int = 4
                   ) -> DatasetInfo:
    """DatasetInfo of the synthetic data; mean/std measured on 1024 examples of seed 0.

    Args:
      image_shape: (H, W, C).
      num_classes: number of classes.

    Returns:
      DatasetInfo named "synthetic".
    """
    image_shape = tuple(int(v) for v in image_shape)
    sample, _ = synthetic_dataset(1024, image_shape, num_classes, seed=0)
    pixels = sample.reshape(-1, image_shape[-1]).astype(np.float64) / 255.0
    return DatasetInfo(
        name="synthetic",
        image_shape=image_shape,
        num_classes=int(num_classes),
        mean=tuple(round(float(v), 4) for v in pixels.mean(axis=0)),
        std=tuple(round(float(v), 4) for v in pixels.std(axis=0)),
        class_names=tuple(f"class_{k}" for k in range(num_classes)),
    )


# ----------------------------------------------------------------------------- registry

# A loader takes (split, data_dir, limit, **options) and returns (images, labels, DatasetInfo).
Loader = Callable[..., Tuple[np.ndarray, np.ndarray, DatasetInfo]]


def _fashion_mnist_loader(split, data_dir, limit):
    images, labels = load_fashion_mnist(split, data_dir, limit)
    return images, labels, FASHION_MNIST_INFO


_SYNTHETIC_SIZES = {"train": 2048, "test": 512}
_SYNTHETIC_SEEDS = {"train": 0, "test": 1}


def _synthetic_loader(split, data_dir, limit, image_shape=(32, 32, 3), num_classes=4):
    """Synthetic split: train = 2048 examples of seed 0, test = 512 of seed 1 (limit overrides)."""
    del data_dir
    if split not in _SYNTHETIC_SIZES:
        raise ValueError(f"unknown split {split!r}; known splits: {', '.join(_SYNTHETIC_SIZES)}")
    n = _SYNTHETIC_SIZES[split] if limit is None else int(limit)
    images, labels = synthetic_dataset(n, image_shape, num_classes, _SYNTHETIC_SEEDS[split])
    return images, labels, synthetic_info(image_shape, num_classes)


DATASETS: Dict[str, Loader] = {
    "fashion_mnist": _fashion_mnist_loader,
    "synthetic": _synthetic_loader,
}


def register_dataset(name: str, loader: Loader) -> None:
    """Adds a dataset to the registry used by :func:`load_dataset`.

    Args:
      name: registry name.
      loader: callable ``(split, data_dir, limit, **options) -> (images uint8 [N, H, W, C],
        labels int64 [N], DatasetInfo)``.
    """
    DATASETS[name] = loader


def load_dataset(name: str, split: str = "train", data_dir: Optional[str] = None,
                 limit: Optional[int] = None, **options
                 ) -> Tuple[np.ndarray, np.ndarray, DatasetInfo]:
    """Loads a registered dataset into memory.

    Args:
      name: registry name ("fashion_mnist", "synthetic", or one added with register_dataset).
      split: "train" or "test".
      data_dir: dataset directory (None: the dataset's default location).
      limit: keep only the first ``limit`` examples (synthetic: generate that many).
      **options: dataset-specific options, e.g. ``image_shape`` and ``num_classes`` for
        "synthetic".

    Returns:
      (images, labels, info): uint8 [N, H, W, C], int64 [N], DatasetInfo.

    Raises:
      ValueError: unknown dataset name (the message lists the known names) or split.
      DatasetNotFoundError / CorruptDatasetError: from the loader.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: "
                         f"{', '.join(sorted(DATASETS))}")
    return DATASETS[name](split, data_dir, limit, **options)


# ----------------------------------------------------------------------------- image conforming


def resize_cover_crop(images, height: int, width: int) -> tf.Tensor:
    """Scales images to cover height x width, then crops the centre window (uint8 out).

    The scale is max(height / h, width / w) (for a square target: the shorter side becomes the
    target size), bilinear with antialiasing, rounded and clipped to uint8.

    Args:
      images: [h, w, C] or [N, h, w, C] (any dtype of pixel values in [0, 255]); h, w >= 1.
      height, width: the output size.

    Returns:
      uint8 [height, width, C] or [N, height, width, C].
    """
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    h, w = tf.cast(shape[-3], tf.float64), tf.cast(shape[-2], tf.float64)
    scale = tf.maximum(height / h, width / w)
    new_h = tf.maximum(height, tf.cast(tf.round(h * scale), tf.int32))
    new_w = tf.maximum(width, tf.cast(tf.round(w * scale), tf.int32))
    resized = tf.image.resize(tf.cast(images, tf.float32), tf.stack([new_h, new_w]),
                              method="bilinear", antialias=True)
    top = (new_h - height) // 2
    left = (new_w - width) // 2
    cropped = resized[..., top:top + height, left:left + width, :]
    return tf.cast(tf.clip_by_value(tf.round(cropped), 0.0, 255.0), tf.uint8)


def conform_image(image, size: Optional[int] = None, channels: Optional[int] = None) -> tf.Tensor:
    """Brings one decoded image to a fixed channel count and a square size.

    Channels: RGBA drops alpha; 3 -> 1 is ITU-R 601 luma (``tf.image.rgb_to_grayscale``);
    1 -> 3 repeats the channel. Size: the shorter side is resized to ``size`` (bilinear with
    antialiasing), then the centre ``size`` x ``size`` square is cropped (the usual "resize +
    centre crop" of evaluation transforms, applied once when a dataset is read).

    Args:
      image: uint8 [H, W, C] with C in {1, 3, 4} (C must be static), H and W may be dynamic.
      size: output side S, or None/0 to keep H x W.
      channels: output channels (1 or 3), or None/0 to keep C (RGBA still becomes RGB).

    Returns:
      uint8 [S, S, C'] (or [H, W, C']).
    """
    image = tf.convert_to_tensor(image)
    c = image.shape[-1]
    if c not in (1, 3, 4):
        raise ValueError(f"images must have 1, 3 or 4 channels, got shape {image.shape}")
    if c == 4:
        image, c = image[..., :3], 3
    if channels and channels != c:
        if channels == 1:
            image = tf.image.rgb_to_grayscale(image)
        elif channels == 3:
            image = tf.image.grayscale_to_rgb(image)
        else:
            raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not size:
        return image
    size = int(size)
    static = image.shape[:2]
    if static[0] == size and static[1] == size:
        return image
    out = resize_cover_crop(image, size, size)
    return tf.ensure_shape(out, [size, size, image.shape[-1]])


def estimate_mean_std(images) -> Tuple[tuple, tuple]:
    """Per-channel mean and std of uint8 images, in [0, 1] pixel units.

    Args:
      images: uint8 [N, H, W, C] array (N >= 1).

    Returns:
      (mean, std): tuples of C floats rounded to 4 decimals (std floored at 1e-3).
    """
    images = np.asarray(images)
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    mean = tuple(round(float(v), 4) for v in pixels.mean(axis=0))
    std = tuple(round(max(float(v), 1e-3), 4) for v in pixels.std(axis=0))
    return mean, std


# ----------------------------------------------------------------------------- sources


class Source:
    """One split of a dataset: a stream of (uint8 image [H, W, C], int64 label) examples.

    Labels are -1 when the source is unlabeled. Indexable sources (in-memory arrays, files)
    can produce any permutation of their examples, so the pretraining pipeline can rebuild
    the exact order of any epoch (exact resume); streaming sources (large tfds datasets)
    cannot.

    Attributes:
      info: DatasetInfo (image_shape is the shape every example has).
      num_examples: N.
      labeled: whether labels are meaningful.
      description: one line for logs ("fashion_mnist train: 60000 images 28x28x1").
      skipped: tuple of (path, reason) of examples found unreadable and left out.
    """

    indexable = True

    def __init__(self, info: DatasetInfo, num_examples: int, labeled: bool, description: str,
                 skipped: Sequence[Tuple[str, str]] = ()):
        self.info = info
        self.num_examples = int(num_examples)
        self.labeled = bool(labeled)
        self.description = description
        self.skipped = tuple(skipped)

    def load(self, indices: tf.data.Dataset) -> tf.data.Dataset:
        """Maps a dataset of int64 indices to (image, label) examples (indexable sources)."""
        raise NotImplementedError

    def stream(self, shuffle: bool, seed: int) -> tf.data.Dataset:
        """All examples once, (image, label); shuffled (file order + buffer) if asked."""
        indices = tf.data.Dataset.range(self.num_examples)
        if shuffle:
            n = self.num_examples
            key = tf.constant([int(seed), 0], tf.int64)
            indices = indices.map(lambda i: _permuted_index(i, key, n))
        return self.load(indices)


def _permuted_index(i, key, n: int):
    """Position i of a stateless random permutation of range(n) keyed by int64 [2] ``key``."""
    if n == 1:
        return tf.zeros_like(i)
    return tf.random.experimental.index_shuffle(i, key, tf.constant(n - 1, tf.int64))


class ArraySource(Source):
    """Examples held in memory as numpy arrays.

    Args:
      images: uint8 [N, H, W, C].
      labels: int [N], or None (unlabeled: labels -1).
      info: DatasetInfo; None derives one (mean/std estimated from up to 512 images).
      description: log line; default from info.
    """

    def __init__(self, images, labels=None, info: Optional[DatasetInfo] = None,
                 description: Optional[str] = None):
        images = _check_images(images)
        n = images.shape[0]
        labeled = labels is not None
        labels = (np.full([n], -1, np.int64) if labels is None
                  else np.asarray(labels).astype(np.int64).reshape(-1))
        if labels.shape[0] != n:
            raise ValueError(f"{n} images but {labels.shape[0]} labels")
        if info is None:
            mean, std = estimate_mean_std(images[:512]) if n else ((0.5,), (0.25,))
            info = DatasetInfo("arrays", tuple(images.shape[1:]),
                               int(labels.max()) + 1 if labeled and n else 0, mean, std)
        self.images = images
        self.labels = labels
        h, w, c = images.shape[1:]
        super().__init__(info, n, labeled,
                         description or f"{info.name}: {n} images {h}x{w}x{c} (in memory)")

    def load(self, indices):
        images = tf.constant(self.images)
        labels = tf.constant(self.labels)
        return indices.map(lambda i: (tf.gather(images, i), tf.gather(labels, i)))

    def load_batches(self, index_batches: tf.data.Dataset) -> tf.data.Dataset:
        """Maps a dataset of int64 [B] index batches to (images [B, H, W, C], labels [B]) batches."""
        return self.load(index_batches)  # tf.gather takes a vector of indices as well


def read_image_file(path, channels: int) -> tf.Tensor:
    """Reads and decodes one JPEG/PNG/BMP/GIF file (first frame) to uint8 [H, W, channels].

    Raises (when run) on an unreadable or corrupt file.
    """
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    return image


class FileSource(Source):
    """Image files decoded on the fly (JPEG, PNG, BMP, GIF), never all held in memory.

    A file that fails to decode at read time is dropped from the stream (``ignore_errors``,
    with a logged warning) instead of stopping the run; :func:`open_image_folder` finds such
    files up front and leaves them out, listing them in ``skipped``.

    Args:
      paths: N file paths.
      labels: int [N] (-1 for unlabeled).
      info: DatasetInfo (image_shape = (S, S, C)).
      labeled: whether labels are meaningful.
      description: log line.
      skipped: (path, reason) pairs already left out.
    """

    def __init__(self, paths, labels, info: DatasetInfo, labeled: bool, description: str,
                 skipped=()):
        self.paths = np.asarray([os.fspath(p) for p in paths], dtype=object)
        self.labels = np.asarray(labels, np.int64).reshape(-1)
        super().__init__(info, len(self.paths), labeled, description, skipped)

    def decode(self, path) -> tf.Tensor:
        """Reads and decodes one file to uint8 [S, S, C] (raises on a corrupt file)."""
        size, _, channels = self.info.image_shape
        return conform_image(read_image_file(path, channels), size, channels)

    def load(self, indices):
        paths = tf.constant(self.paths.astype(str))
        labels = tf.constant(self.labels)
        ds = indices.map(lambda i: (self.decode(tf.gather(paths, i)), tf.gather(labels, i)),
                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.ignore_errors(log_warning=True)


class StreamSource(Source):
    """A stream that cannot be indexed (a large tfds split read from its shards).

    Args:
      make: callable (shuffle: bool, seed: int) -> tf.data.Dataset of (uint8 image, int64
        label), one pass.
      info, num_examples, labeled, description: as Source.
    """

    indexable = False

    def __init__(self, make, info, num_examples, labeled, description):
        self._make = make
        super().__init__(info, num_examples, labeled, description)

    def stream(self, shuffle, seed):
        return self._make(shuffle, seed)


def as_source(images_or_source, labels=None) -> Source:
    """A Source as is, or an ArraySource around uint8 [N, H, W, C] arrays."""
    if isinstance(images_or_source, Source):
        return images_or_source
    return ArraySource(images_or_source, labels)


# ----------------------------------------------------------------------------- pipelines


def _check_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    return images


def make_pretrain_dataset(images, batch_size: int, view_fn, seed: int, shuffle: bool = True,
                          drop_remainder: bool = True, start_epoch: Optional[int] = None,
                          steps_per_epoch: Optional[int] = None,
                          shuffle_buffer: int = 10_000, with_labels: bool = False,
                          vectorized: Optional[bool] = None) -> tf.data.Dataset:
    """Two-view pretraining pipeline: one float32 [B, 2, H', W', C] tensor per element.

    With ``with_labels=True`` each element is instead ``(views float32 [B, 2, H', W', C],
    labels int64 [B])`` (for a trainer with an online probe); the views are the same.

    Every epoch is a function of (seed, epoch key) alone: the example order is a stateless
    permutation (``tf.random.experimental.index_shuffle``) and example i of the epoch is
    augmented with the seed ``stateless_fold_in([seed, key], i)``; on the vectorised path (see
    ``vectorized``) batch j is augmented at once with ``stateless_fold_in([seed, key], j)``. Two
    ways to run:

    * ``start_epoch=None`` (default): a finite dataset of one epoch per iteration; each new
      iterator (each Keras epoch) draws a fresh key from ``tf.data.Dataset.random(seed,
      rerandomize_each_iteration=True)``, so epochs differ and the sequence is reproducible.
    * ``start_epoch=e``: an infinite dataset of the epochs e, e + 1, ..., keyed by the epoch
      number and cut to exactly ``steps_per_epoch`` batches each; use it with
      ``fit(initial_epoch=e, steps_per_epoch=...)``: a run resumed at epoch e sees exactly
      the batches an uninterrupted run would have seen (for indexable sources).

    Streaming sources (large tfds splits) shuffle their files and a ``shuffle_buffer`` instead,
    and are exact only up to that order.

    Args:
      images: a Source, or uint8 [N, H, W, C] numpy array.
      batch_size: B, examples per batch.
      view_fn: callable (image uint8 [H, W, C], seed int64 [2]) -> float32 [2, H', W', C],
        e.g. an ``augment.TwoViewAugment``.
      seed: Python int seeding order and augmentation.
      shuffle: shuffle the examples every epoch.
      drop_remainder: drop the last incomplete batch (gives a static batch dimension).
      start_epoch: see above.
      steps_per_epoch: batches per epoch (default and maximum: N // B, or ceil(N / B) without
        drop_remainder).
      shuffle_buffer: buffer of streaming sources.
      with_labels: also yield the source's labels (the source must be labeled). A
        tuple element does not suit MultiWorkerMirroredStrategy's ``fit`` (see above).
      vectorized: augment whole batches with ``view_fn.batch(images [B, H, W, C], seed [2])``
        (``augment.TwoViewAugment.batch``: same recipe, ~100 ops per batch instead of ~80
        per image) instead of calling ``view_fn`` per image. None (default): when ``view_fn``
        has a ``batch`` method and the images have a static shape. True where that is not so
        is an error.

    Returns:
      tf.data.Dataset of float32 [B, 2, H', W', C] tensors (view 1 = query, view 2 = key),
      or of (that, int64 [B]) pairs with ``with_labels``.

    Raises:
      ValueError: bad images, no complete batch with drop_remainder, or ``with_labels`` for
        an unlabeled source (or plain arrays, which carry no labels).
    """
    source = as_source(images)
    if with_labels and not source.labeled:
        raise ValueError(f"with_labels=True needs a labeled source; {source.description} has no labels "
                         f"(pass a Source such as ArraySource(images, labels))")
    n = source.num_examples
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if drop_remainder and n < batch_size:
        raise ValueError(f"{n} examples give no complete batch of {batch_size}")
    full = n // batch_size if drop_remainder else -(-n // batch_size)
    steps = full if steps_per_epoch is None else min(int(steps_per_epoch), full)
    seed = int(seed)

    def augment(position, example, key):
        example_seed = tf.random.experimental.stateless_fold_in(key, position)
        views = tf.cast(view_fn(example[0], example_seed), tf.float32)
        return (views, tf.cast(example[1], tf.int64)) if with_labels else views

    def use_batches(image_shape):
        possible = callable(getattr(view_fn, "batch", None)) and image_shape.is_fully_defined()
        if vectorized and not possible:
            raise ValueError("vectorized=True needs a view_fn with a batch(images, seed) method and images "
                             f"of a static shape (got {type(view_fn).__name__}, image shape {image_shape})")
        return possible if vectorized is None else bool(vectorized)

    def augment_batches(key, batches):
        def augment_batch(j, batch):
            views = view_fn.batch(batch[0], tf.random.experimental.stateless_fold_in(key, j))
            return (views, tf.cast(batch[1], tf.int64)) if with_labels else views

        return tf.data.Dataset.zip(tf.data.Dataset.range(steps), batches).map(
            augment_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def epoch(key):
        key = tf.stack([tf.constant(seed, tf.int64), tf.cast(key, tf.int64)])
        if callable(getattr(source, "load_batches", None)) and use_batches(tf.TensorShape(source.info.image_shape)):
            # In-memory arrays: permute and gather whole batches of indices (no per-example op).
            index_batches = tf.data.Dataset.range(n).batch(batch_size, drop_remainder=drop_remainder).take(steps)
            if shuffle:
                index_batches = index_batches.map(lambda i: _permuted_index(i, key, n))
            return augment_batches(key, source.load_batches(index_batches))
        if source.indexable:
            indices = tf.data.Dataset.range(n)
            if shuffle:
                indices = indices.map(lambda i: _permuted_index(i, key, n))
            examples = source.load(indices)
        else:
            examples = source.stream(shuffle, seed)
            if shuffle:
                examples = examples.shuffle(shuffle_buffer, seed=seed)
        if use_batches(examples.element_spec[0].shape):
            return augment_batches(key, examples.batch(batch_size, drop_remainder=drop_remainder).take(steps))
        views = tf.data.Dataset.zip(tf.data.Dataset.range(n), examples).map(
            lambda i, ex: augment(i, ex, key), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True)
        return views.batch(batch_size, drop_remainder=drop_remainder).take(steps)

    if start_epoch is None:
        keys = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).take(1)
        cardinality = steps
    else:
        keys = tf.data.Dataset.range(int(start_epoch), np.iinfo(np.int64).max)
        cardinality = tf.data.INFINITE_CARDINALITY
    ds = keys.flat_map(epoch)
    if source.indexable and not isinstance(source, FileSource):
        # Known lengths let Keras size its epochs (files may drop unreadable ones).
        ds = ds.apply(tf.data.experimental.assert_cardinality(cardinality))
    elif start_epoch is not None:
        ds = ds.repeat()  # never runs dry, even if a stream is shorter than announced
    return ds.prefetch(tf.data.AUTOTUNE)


def make_eval_dataset(images, labels, batch_size: int, preprocess_fn) -> tf.data.Dataset:
    """Evaluation pipeline: in order, no shuffling, last partial batch kept, prefetched.

    Args:
      images: a Source (then ``labels`` must be None) or a uint8 [N, H, W, C] numpy array.
      labels: integer [N] array (arrays only).
      batch_size: B.
      preprocess_fn: callable (image uint8 [H, W, C]) -> float32 [H', W', C], applied per
        example (e.g. ``functools.partial(augment.eval_preprocess, mean=..., std=...)``).

    Returns:
      tf.data.Dataset of (float32 [B, H', W', C], int64 [B]); the last batch may be smaller.
    """
    if isinstance(images, Source):
        if labels is not None:
            raise ValueError("pass labels=None with a Source (it carries its labels)")
        source = images
    else:
        images = _check_images(images)
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        source = ArraySource(images, labels)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ds = source.stream(shuffle=False, seed=0)
    ds = ds.map(lambda image, label: (tf.cast(preprocess_fn(image), tf.float32), label),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=False)
    return ds.prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------- opening sources

# Per-channel train-set statistics of well-known datasets, [0, 1] pixel units (the values the
# reference implementations use). Anything else is measured on up to 1000 train images.
KNOWN_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": (FASHION_MNIST_INFO.mean, FASHION_MNIST_INFO.std),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet2012": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "imagenet2012_subset": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

LOCAL_DATASETS = ("fashion_mnist", "mnist", "synthetic", "folder")


def _stats(name: str, channels: int, sample: Callable[[], np.ndarray]):
    """Known statistics of ``name`` when its channel count matches, else measured."""
    base = name.split("/")[0].split(":")[0]
    if base in KNOWN_STATS and len(KNOWN_STATS[base][0]) == channels:
        return KNOWN_STATS[base]
    return estimate_mean_std(sample())


def _conform_array(images: np.ndarray, size, channels) -> np.ndarray:
    """conform_image over an in-memory uint8 batch, 1024 images at a time."""
    c = images.shape[-1]
    if (not size or images.shape[1:3] == (size, size)) and (not channels or channels == c) \
            and c != 4:
        return images
    fn = tf.function(lambda x: tf.map_fn(lambda im: conform_image(im, size, channels), x,
                                         fn_output_signature=tf.uint8))
    return np.concatenate([fn(images[i:i + 1024]).numpy()
                           for i in range(0, len(images), 1024)])


def _array_source(name, split, images, labels, info, size, channels, labeled=True):
    images = _conform_array(images, size, channels)
    if images.shape[1:] != tuple(info.image_shape):
        mean, std = _stats(info.name, images.shape[-1], lambda: images[:1000])
        info = dataclasses.replace(info, image_shape=tuple(images.shape[1:]), mean=mean, std=std)
    h, w, c = images.shape[1:]
    return ArraySource(images, labels if labeled else None, info,
                       f"{name} {split}: {len(images)} images {h}x{w}x{c} (in memory)")


# MNIST (digits) from local files: IDX files as published (same names as Fashion-MNIST's) or the
# mnist.npz that keras.datasets.mnist keeps in ~/.keras/datasets/.
MNIST_NPZ = os.path.join(os.path.expanduser("~"), ".keras", "datasets", "mnist.npz")
MNIST_INFO = DatasetInfo("mnist", (28, 28, 1), 10, (0.1307,), (0.3081,),
                         tuple(str(d) for d in range(10)))


def load_mnist(split: str = "train", path: Optional[str] = None,
               limit: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Loads MNIST digits from a local file; nothing is downloaded.

    Args:
      split: "train" or "test".
      path: a folder with the four IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte,
        optionally .gz), or an ``mnist.npz`` (keys x_train, y_train, x_test, y_test); None
        means ``~/.keras/datasets/mnist.npz``.
      limit: keep the first ``limit`` examples.

    Returns:
      (images uint8 [N, 28, 28, 1], labels int64 [N]).

    Raises:
      DatasetNotFoundError: nothing at ``path`` (the message says where to put the files).
      CorruptDatasetError: malformed files.
    """
    if split not in _FASHION_FILES:
        raise ValueError(f"unknown split {split!r}; known splits: {', '.join(_FASHION_FILES)}")
    path = MNIST_NPZ if path is None else os.fspath(path)
    if os.path.isdir(path):
        try:
            images, labels = load_fashion_mnist(split, path, limit)
        except DatasetNotFoundError as e:
            raise DatasetNotFoundError(
                f"MNIST IDX files not found in {path!r} ({e.args[0].split('(')[0].strip()}); "
                f"put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                f"t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz there, or pass an "
                f"mnist.npz") from None
        return images, labels
    if not os.path.isfile(path):
        raise DatasetNotFoundError(
            f"MNIST not found at {path!r}: pass --data_dir= a folder with the four MNIST IDX "
            f"files or the path of an mnist.npz (keras.datasets.mnist's file); nothing is "
            f"downloaded")
    try:
        with np.load(path) as npz:
            x, y = npz[f"x_{split}"], npz[f"y_{split}"]
    except (OSError, ValueError, KeyError, zlib.error) as e:
        raise CorruptDatasetError(f"{path}: not a readable mnist.npz ({e})") from e
    if x.ndim != 3 or x.dtype != np.uint8 or len(x) != len(y):
        raise CorruptDatasetError(f"{path}: expected uint8 x_{split} [N, 28, 28] and N labels, "
                                  f"got {x.dtype} {x.shape} and {np.shape(y)}")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return np.ascontiguousarray(x[..., None]), np.asarray(y).astype(np.int64)


def _open_tfds(name, split, data_dir, limit, download, manual_dir, size, channels,
               in_memory_bytes):
    """A tfds split: in memory when its conformed images fit ``in_memory_bytes``, else streamed."""
    import tensorflow_datasets as tfds  # an optional dependency at import time

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DatasetNotFoundError(
            f"unknown dataset {name!r}: not one of the local datasets "
            f"({', '.join(LOCAL_DATASETS)}) and not a tfds dataset name "
            f"(see `tfds.list_builders()`)") from e
    if download:
        config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
        builder.download_and_prepare(download_config=config)
    read = lambda shuffle, seed: builder.as_dataset(  # noqa: E731
        split=split, shuffle_files=shuffle,
        read_config=tfds.ReadConfig(shuffle_seed=seed, shuffle_reshuffle_each_iteration=True))
    try:
        raw = read(False, 0)
    except AssertionError as e:
        hint = (" ImageNet needs its tar files in --manual_dir (default "
                "<data_dir>/downloads/manual) and --download." if "imagenet" in name else "")
        raise DatasetNotFoundError(
            f"tfds dataset {name!r} is not prepared in {builder.data_dir!r} and --download is "
            f"off. Pass --data_dir= the folder that holds it (layout <data_dir>/{name}/"
            f"<version>/), or --download to download and prepare it (needs the internet)."
            + hint) from e
    except ValueError as e:
        raise ValueError(f"tfds dataset {name!r}: {e}") from e
    features = builder.info.features
    image_key = next((k for k in ("image",) if k in features), None) or next(
        (k for k, f in features.items() if isinstance(f, tfds.features.Image)), None)
    if image_key is None:
        raise ValueError(f"tfds dataset {name!r} has no image feature ({list(features)})")
    label_key = "label" if "label" in features else None
    num_classes = features[label_key].num_classes if label_key else 0
    class_names = tuple(features[label_key].names) if label_key else ()
    native = tuple(features[image_key].shape)
    native_channels = native[-1] or 3
    out_channels = channels or (3 if native_channels == 4 else native_channels)
    out_size = size or None
    if out_size is None and (native[0] is None or native[1] is None or native[0] != native[1]):
        raise ValueError(f"tfds dataset {name!r} has images of shape {native}: pass "
                         f"--image_size to resize them to a fixed square size")

    def to_example(ex):
        image = ex[image_key]
        if image.shape[-1] is None:
            image.set_shape(image.shape[:-1].concatenate([native_channels]))
        label = tf.cast(ex[label_key], tf.int64) if label_key else tf.constant(-1, tf.int64)
        return conform_image(image, out_size, out_channels), label

    def make(shuffle, seed):
        ds = read(shuffle, seed)
        if limit is not None:
            ds = ds.take(limit)
        return ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    n = int(raw.cardinality())
    if n < 0:
        n = builder.info.splits[split].num_examples
    if limit is not None:
        n = min(n, int(limit))
    side = out_size or native[0]
    shape = (side, side, out_channels)
    if n * side * side * out_channels <= in_memory_bytes:
        images, labels = [], []
        for x, y in make(False, 0).batch(1024):
            images.append(x.numpy())
            labels.append(y.numpy())
        images = np.concatenate(images) if images else np.zeros((0,) + shape, np.uint8)
        labels = np.concatenate(labels) if labels else np.zeros([0], np.int64)
        mean, std = _stats(name, out_channels, lambda: images[:1000])
        info = DatasetInfo(name, shape, num_classes, mean, std, class_names)
        return ArraySource(images, labels if label_key else None, info,
                           f"{name} {split} (tfds): {len(images)} images "
                           f"{side}x{side}x{out_channels} (in memory)")

    def sample():
        return np.stack([x.numpy() for x, _ in make(False, 0).take(1000)])

    mean, std = _stats(name, out_channels, sample)
    info = DatasetInfo(name, shape, num_classes, mean, std, class_names)
    return StreamSource(make, info, n, bool(label_key),
                        f"{name} {split} (tfds): {n} images {side}x{side}x{out_channels} "
                        f"(streamed)")


def open_source(name: str, split: str = "train", data_dir: Optional[str] = None,
                limit: Optional[int] = None, image_size: Optional[int] = None,
                channels: Optional[int] = None, download: bool = False,
                manual_dir: Optional[str] = None, verify: bool = True,
                class_names: Optional[Sequence[str]] = None,
                in_memory_bytes: int = 2 ** 30, **options) -> Source:
    """Opens one split of a dataset by name.

    Names:
      * ``fashion_mnist``: Debian's dataset-fashion-mnist (``data_dir`` overrides the folder).
      * ``mnist``: local IDX files or mnist.npz (``data_dir``), see :func:`load_mnist`.
      * ``synthetic``: generated stripes (options ``image_shape``, ``num_classes``; the
        image_size/channels arguments set the generated shape).
      * ``folder``: an image folder at ``data_dir`` (see :func:`mixmask_tf.image_folder.open`),
        streamed from disk; ``image_size`` is required.
      * anything else: a tfds dataset name (e.g. ``cifar10``, ``cifar100``, ``imagenet2012``),
        read from ``data_dir``; downloaded only if ``download``. Splits that fit in
        ``in_memory_bytes`` once decoded are held in memory, larger ones are streamed.

    Args:
      name: dataset name.
      split: split name ("train", "test", or any split the source has, e.g. "validation").
      data_dir: where the data is.
      limit: keep the first ``limit`` examples.
      image_size: resize (shorter side) + centre crop to this square size; None/0 keeps it.
      channels: 1 or 3 to convert; None/0 keeps the dataset's channels.
      download: tfds only: allow downloading and preparing.
      manual_dir: tfds only: folder of manually downloaded files (ImageNet).
      verify: folder only: decode every file once up front to find unreadable ones.
      class_names: folder only: the class list of the train split, to label the test split.
      in_memory_bytes: tfds only: the in-memory threshold.
      **options: dataset-specific options (synthetic: image_shape, num_classes).

    Returns:
      Source.

    Raises:
      DatasetNotFoundError, CorruptDatasetError, ValueError: with a message naming the fix.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if channels not in (None, 0, 1, 3):
        raise ValueError(f"channels must be 1 or 3 (or 0 to keep), got {channels}")
    if image_size is not None and image_size < 0:
        raise ValueError(f"image_size must be positive (or 0 to keep), got {image_size}")
    if name == "folder":
        from mixmask_tf import image_folder

        if not data_dir:
            raise ValueError("the folder dataset needs data_dir (--data_dir=<root>)")
        return image_folder.open_folder(data_dir, split, image_size, channels or 3, limit,
                                        verify=verify, class_names=class_names)
    if name == "mnist":
        images, labels = load_mnist(split, data_dir, limit)
        return _array_source(name, split, images, labels, MNIST_INFO, image_size, channels)
    if name == "synthetic" and (image_size or channels):
        shape = tuple(options.pop("image_shape", (32, 32, 3)))
        options["image_shape"] = (image_size or shape[0], image_size or shape[1],
                                  channels or shape[2])
    if name in DATASETS:
        images, labels, info = DATASETS[name](split, data_dir, limit, **options)
        return _array_source(name, split, images, labels, info, image_size, channels)
    if options:
        raise ValueError(f"unexpected options for tfds dataset {name!r}: {sorted(options)}")
    return _open_tfds(name, split, data_dir, limit, download, manual_dir, image_size or None,
                      channels or None, in_memory_bytes)
