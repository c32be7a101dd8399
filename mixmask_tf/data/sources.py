"""Sources: where a split's images come from, in memory (ArraySource), as files decoded on the
fly (FileSource) or as a stream (StreamSource), and the helpers that conform images to one size.

The pipelines (``pipelines.py``) read every source the same way: ``load(indices)`` for indexable
sources, ``load_batches(index_batches)`` for in-memory arrays, ``stream()`` otherwise.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from mixmask_tf.data import image_header
from mixmask_tf.data.info import KNOWN_STATS, DatasetInfo

__all__ = ["check_crop_ratio", "resize_cover_crop", "conform_image", "encoded_image_size", "estimate_mean_std", "Source", "permuted_index", "ArraySource",
           "read_image_file", "FileSource", "StreamSource", "as_source", "check_images", "dataset_stats",
           "conform_array", "array_source"]


# ----------------------------------------------------------------------------- image conforming


def check_crop_ratio(crop_ratio) -> float:
    """``crop_ratio`` as a float in (0, 1]; ValueError otherwise."""
    ratio = float(crop_ratio)
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"the centre-crop ratio must lie in (0, 1], got {crop_ratio}")
    return ratio


def resize_cover_crop(images, height: int, width: int, crop_ratio: float = 1.0) -> tf.Tensor:
    """Scales images to cover (height, width) / crop_ratio, then crops the centre height x width.

    The scale is max(height / h, width / w) / crop_ratio: for a square target S the shorter side
    becomes S / crop_ratio (torchvision's evaluation ``Resize(256), CenterCrop(224)`` is S = 224,
    crop_ratio = 0.875), bilinear with antialiasing, rounded and clipped to uint8. crop_ratio = 1
    keeps the whole shorter side.

    Args:
      images: [h, w, C] or [N, h, w, C] (any dtype of pixel values in [0, 255]); h, w >= 1.
      height, width: the output size.
      crop_ratio: the centre crop's share of the resized shorter side, in (0, 1].

    Returns:
      uint8 [height, width, C] or [N, height, width, C].
    """
    ratio = check_crop_ratio(crop_ratio)
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    h, w = tf.cast(shape[-3], tf.float64), tf.cast(shape[-2], tf.float64)
    scale = tf.maximum(height / h, width / w) / ratio
    new_h = tf.maximum(height, tf.cast(tf.round(h * scale), tf.int32))
    new_w = tf.maximum(width, tf.cast(tf.round(w * scale), tf.int32))
    resized = tf.image.resize(tf.cast(images, tf.float32), tf.stack([new_h, new_w]),
                              method="bilinear", antialias=True)
    top = (new_h - height) // 2
    left = (new_w - width) // 2
    cropped = resized[..., top:top + height, left:left + width, :]
    return tf.cast(tf.clip_by_value(tf.round(cropped), 0.0, 255.0), tf.uint8)


def conform_image(image, size: Optional[int] = None, channels: Optional[int] = None,
                  crop_ratio: float = 1.0) -> tf.Tensor:
    """Brings one decoded image to a fixed channel count and a square size.

    Channels: RGBA drops alpha; 3 -> 1 is ITU-R 601 luma (``tf.image.rgb_to_grayscale``);
    1 -> 3 repeats the channel. Size: the shorter side is resized to ``size / crop_ratio``
    (bilinear with antialiasing), then the centre ``size`` x ``size`` square is cropped (the usual
    "resize + centre crop" of evaluation transforms).

    Args:
      image: uint8 [H, W, C] with C in {1, 3, 4} (C must be static), H and W may be dynamic.
      size: output side S, or None/0 to keep H x W.
      channels: output channels (1 or 3), or None/0 to keep C (RGBA still becomes RGB).
      crop_ratio: see :func:`resize_cover_crop` (1: an S x S image is returned as is).

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
    if static[0] == size and static[1] == size and check_crop_ratio(crop_ratio) == 1.0:
        return image
    out = resize_cover_crop(image, size, size, crop_ratio)
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
    # The evaluation centre crop's share of the resized shorter side (file-based sources).
    crop_ratio = 1.0
    # Whether the source can give its images still encoded (``load_encoded`` / ``stream_encoded``):
    # then the pretraining pipeline draws each crop on the full image and decodes only that window.
    encoded = False

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

    def load_encoded(self, indices: tf.data.Dataset) -> tf.data.Dataset:
        """Maps int64 indices to ((contents string, size int32 [2] = (h, w)), label) examples:
        the images still encoded (sources with ``encoded``)."""
        raise NotImplementedError(f"{type(self).__name__} has no encoded images")

    def _indices(self, shuffle: bool, seed: int, shard) -> tf.data.Dataset:
        indices = tf.data.Dataset.range(self.num_examples)
        if shuffle:
            n = self.num_examples
            key = tf.constant([int(seed), 0], tf.int64)
            indices = indices.map(lambda i: permuted_index(i, key, n))
        if shard is not None and shard[1] > 1:
            indices = indices.shard(shard[1], shard[0])
        return indices

    def stream(self, shuffle: bool, seed: int, shard: Optional[Tuple[int, int]] = None) -> tf.data.Dataset:
        """All examples once, (image, label); shuffled (file order + buffer) if asked.

        ``shard=(index, count)``: only every count-th example from ``index`` on (an indexable
        source loads only those).
        """
        return self.load(self._indices(shuffle, seed, shard))

    def stream_encoded(self, shuffle: bool, seed: int, shard: Optional[Tuple[int, int]] = None) -> tf.data.Dataset:
        """As :meth:`stream`, with the images still encoded: ((contents, (h, w)), label)."""
        return self.load_encoded(self._indices(shuffle, seed, shard))


def permuted_index(i, key, n: int):
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
        images = check_images(images)
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


def encoded_image_size(contents) -> tf.Tensor:
    """(height, width) of an encoded image, read from its header without decoding it.

    :func:`mixmask_tf.data.image_header.declared_size` (JPEG: ``tf.image.extract_jpeg_shape``;
    PNG: the IHDR chunk; GIF: the largest frame sides; BMP, WebP: their headers).

    Args:
      contents: string scalar, the file's bytes.

    Returns:
      int32 [2]. Raises (when run) on data whose header is not a readable image's.
    """
    return tf.cast(image_header.declared_size(contents)[:2], tf.int32)


def read_image_file(path, channels: int, max_pixels: int = image_header.DEFAULT_MAX_IMAGE_PIXELS) -> tf.Tensor:
    """Reads and decodes one JPEG/PNG/BMP/GIF/WebP file (first frame) to uint8 [H, W, channels].

    The file's header is checked against the pixel budget ``max_pixels`` first
    (:func:`mixmask_tf.data.image_header.check_pixel_budget`): a file declaring more pixels is
    never decoded. Raises (when run) on an unreadable or corrupt file, or one beyond the budget.
    """
    contents = image_header.check_pixel_budget(tf.io.read_file(path), max_pixels, path)
    image = tf.io.decode_image(contents, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    return image


class FileSource(Source):
    """Image files decoded on the fly (JPEG, PNG, BMP, GIF), never all held in memory.

    A file that fails to decode at read time, or whose header declares more pixels than
    ``max_pixels`` (checked before decoding), is dropped from the stream (``ignore_errors``,
    with a logged warning) instead of stopping the run; :func:`mixmask_tf.data.image_folder.open_folder` finds such
    files up front and leaves them out, listing them in ``skipped``.

    Pretraining reads the files still encoded (``encoded``, :meth:`load_encoded`): each view's
    random resized crop is drawn on the full image and only that window is decoded. Evaluation
    (:meth:`load`) decodes the whole file, resizes its shorter side to S / ``crop_ratio`` and
    cuts the centre S x S square.

    Args:
      paths: N file paths.
      labels: int [N] (-1 for unlabeled).
      info: DatasetInfo (image_shape = (S, S, C)).
      labeled: whether labels are meaningful.
      description: log line.
      skipped: (path, reason) pairs already left out.
      crop_ratio: the evaluation centre crop's share of the resized shorter side, in (0, 1]
        (0.875: shorter side 256, centre 224 at S = 224).
      max_pixels: the pixel budget (``mixmask_tf.data.image_header``): a file whose header
        declares more pixels is dropped without being decoded.
    """

    encoded = True

    def __init__(self, paths, labels, info: DatasetInfo, labeled: bool, description: str,
                 skipped=(), crop_ratio: float = 1.0, max_pixels: int = image_header.DEFAULT_MAX_IMAGE_PIXELS):
        self.paths = np.asarray([os.fspath(p) for p in paths], dtype=object)
        self.labels = np.asarray(labels, np.int64).reshape(-1)
        self.crop_ratio = check_crop_ratio(crop_ratio)
        self.max_pixels = image_header.check_max_pixels(max_pixels)
        super().__init__(info, len(self.paths), labeled, description, skipped)

    def decode(self, path) -> tf.Tensor:
        """Reads and decodes one file to uint8 [S, S, C] (raises on a corrupt file or one beyond the budget)."""
        size, _, channels = self.info.image_shape
        return conform_image(read_image_file(path, channels, self.max_pixels), size, channels, self.crop_ratio)

    def load_encoded(self, indices):
        paths = tf.constant(self.paths.astype(str))
        labels = tf.constant(self.labels)

        def read(i):
            path = tf.gather(paths, i)
            contents = tf.io.read_file(path)
            # Beyond the pixel budget: an error here, so the file is dropped before any decoding.
            size = image_header.budgeted_size(contents, self.max_pixels, path)
            return (contents, tf.cast(size[:2], tf.int32)), tf.gather(labels, i)

        ds = indices.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.ignore_errors(log_warning=True)

    def load(self, indices):
        paths = tf.constant(self.paths.astype(str))
        labels = tf.constant(self.labels)
        ds = indices.map(lambda i: (self.decode(tf.gather(paths, i)), tf.gather(labels, i)),
                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.ignore_errors(log_warning=True)


class StreamSource(Source):
    """A stream that cannot be indexed (a large tfds split read from its shards).

    Args:
      make: callable (shuffle: bool, seed: int, shard: (index, count) or None) ->
        tf.data.Dataset of (uint8 image, int64 label), one pass; with a shard, only that
        shard's examples (read from its own files where the format allows).
      info, num_examples, labeled, description: as Source.
      make_encoded: None, or a callable like ``make`` whose examples are ((contents string,
        size int32 [2]), label), the images still encoded (tfds image features are stored
        encoded): then pretraining crops from the full images.
      crop_ratio: the centre-crop ratio ``make`` evaluates with (recorded for the export).
    """

    indexable = False

    def __init__(self, make, info, num_examples, labeled, description, make_encoded=None, crop_ratio=1.0):
        self.crop_ratio = check_crop_ratio(crop_ratio)
        self._make = make
        self._make_encoded = make_encoded
        self.encoded = make_encoded is not None
        super().__init__(info, num_examples, labeled, description)

    def stream(self, shuffle, seed, shard=None):
        return self._make(shuffle, seed, shard if shard is not None and shard[1] > 1 else None)

    def stream_encoded(self, shuffle, seed, shard=None):
        if self._make_encoded is None:
            raise NotImplementedError(f"{self.description}: no encoded images")
        return self._make_encoded(shuffle, seed, shard if shard is not None and shard[1] > 1 else None)


def as_source(images_or_source, labels=None) -> Source:
    """A Source as is, or an ArraySource around uint8 [N, H, W, C] arrays."""
    if isinstance(images_or_source, Source):
        return images_or_source
    return ArraySource(images_or_source, labels)


# ----------------------------------------------------------------------------- pipelines


def check_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    return images


def dataset_stats(name: str, channels: int, sample: Callable[[], np.ndarray]):
    """Known statistics of ``name`` when its channel count matches, else measured."""
    base = name.split("/")[0].split(":")[0]
    if base in KNOWN_STATS and len(KNOWN_STATS[base][0]) == channels:
        return KNOWN_STATS[base]
    return estimate_mean_std(sample())


def conform_array(images: np.ndarray, size, channels) -> np.ndarray:
    """conform_image over an in-memory uint8 batch, 1024 images at a time."""
    c = images.shape[-1]
    if (not size or images.shape[1:3] == (size, size)) and (not channels or channels == c) \
            and c != 4:
        return images
    fn = tf.function(lambda x: tf.map_fn(lambda im: conform_image(im, size, channels), x,
                                         fn_output_signature=tf.uint8))
    return np.concatenate([fn(images[i:i + 1024]).numpy()
                           for i in range(0, len(images), 1024)])


def array_source(name, split, images, labels, info, size, channels, labeled=True):
    images = conform_array(images, size, channels)
    if images.shape[1:] != tuple(info.image_shape):
        mean, std = dataset_stats(info.name, images.shape[-1], lambda: images[:1000])
        info = dataclasses.replace(info, image_shape=tuple(images.shape[1:]), mean=mean, std=std)
    h, w, c = images.shape[1:]
    return ArraySource(images, labels if labeled else None, info,
                       f"{name} {split}: {len(images)} images {h}x{w}x{c} (in memory)")
