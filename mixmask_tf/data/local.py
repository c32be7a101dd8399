"""Datasets read from local files or generated: Fashion-MNIST (Debian's dataset-fashion-mnist,
gzipped IDX files), MNIST (IDX files or keras' mnist.npz), and synthetic stripes for tests; the
small registry of in-memory datasets (:data:`DATASETS`, :func:`register_dataset`,
:func:`load_dataset`). No network."""

from __future__ import annotations

import gzip
import os
import zlib
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from mixmask_tf.data.info import (
    FASHION_MNIST_CLASS_NAMES,
    FASHION_MNIST_DIR,
    FASHION_MNIST_INFO,
    CorruptDatasetError,
    DatasetInfo,
    DatasetNotFoundError,
)

__all__ = ["read_idx", "load_fashion_mnist", "synthetic_dataset", "synthetic_info", "DATASETS", "register_dataset",
           "load_dataset", "MNIST_NPZ", "MNIST_INFO", "load_mnist"]

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
