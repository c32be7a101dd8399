"""Datasets and input pipelines, one file per kind of source, with :func:`open_source` as the front door.

* ``info.py``: DatasetInfo, the errors, statistics of well-known datasets;
* ``sources.py``: Source, ArraySource (in memory), FileSource (files decoded on the fly),
  StreamSource, and conforming images to one size;
* ``local.py``: Fashion-MNIST (Debian's dataset-fashion-mnist), MNIST, synthetic data, and the
  registry of in-memory datasets;
* ``tfds_source.py``: tensorflow-datasets splits;
* ``image_folder.py``: ``root/<class>/*.jpg`` folders;
* ``pipelines.py``: make_pretrain_dataset (two views per image) and make_eval_dataset;
* ``service.py``: serving a pretraining dataset from a tf.data service (dispatcher and workers).
"""

from __future__ import annotations

from typing import Optional, Sequence

from mixmask_tf.data import image_folder, image_header, service
from mixmask_tf.data.info import (
    FASHION_MNIST_CLASS_NAMES,
    FASHION_MNIST_DIR,
    FASHION_MNIST_INFO,
    KNOWN_STATS,
    LOCAL_DATASETS,
    CorruptDatasetError,
    DatasetInfo,
    DatasetNotFoundError,
)
from mixmask_tf.data.local import (
    DATASETS,
    MNIST_INFO,
    MNIST_NPZ,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    register_dataset,
    synthetic_dataset,
    synthetic_info,
)
from mixmask_tf.data.pipelines import make_eval_dataset, make_pretrain_dataset
from mixmask_tf.data.sources import (
    ArraySource,
    FileSource,
    Source,
    StreamSource,
    array_source,
    as_source,
    check_crop_ratio,
    conform_image,
    estimate_mean_std,
    read_image_file,
    resize_cover_crop,
)
from mixmask_tf.data.tfds_source import open_tfds

__all__ = [
    "DatasetNotFoundError", "CorruptDatasetError", "FASHION_MNIST_DIR", "FASHION_MNIST_CLASS_NAMES",
    "FASHION_MNIST_INFO", "KNOWN_STATS", "DatasetInfo", "read_idx", "load_fashion_mnist", "synthetic_dataset",
    "synthetic_info", "DATASETS", "LOCAL_DATASETS", "register_dataset", "load_dataset", "MNIST_NPZ", "MNIST_INFO",
    "load_mnist", "make_pretrain_dataset", "make_eval_dataset", "check_crop_ratio", "resize_cover_crop", "conform_image",
    "estimate_mean_std", "Source", "ArraySource", "FileSource", "StreamSource", "as_source", "array_source",
    "read_image_file", "open_tfds", "image_folder", "image_header", "service", "open_source",
]


def open_source(name: str, split: str = "train", data_dir: Optional[str] = None,
                limit: Optional[int] = None, image_size: Optional[int] = None,
                channels: Optional[int] = None, download: bool = False,
                manual_dir: Optional[str] = None, verify: bool = True,
                class_names: Optional[Sequence[str]] = None,
                in_memory_bytes: int = 2 ** 30, crop_ratio: float = 0.875,
                max_image_pixels: Optional[int] = None, **options) -> Source:
    """Opens one split of a dataset by name.

    Names:
      * ``fashion_mnist``: Debian's dataset-fashion-mnist (``data_dir`` overrides the folder).
      * ``mnist``: local IDX files or mnist.npz (``data_dir``), see :func:`load_mnist`.
      * ``synthetic``: generated stripes (options ``image_shape``, ``num_classes``; the
        image_size/channels arguments set the generated shape).
      * ``folder``: an image folder at ``data_dir`` (see :func:`mixmask_tf.data.image_folder.open_folder`),
        streamed from disk; ``image_size`` is required. Pretraining crops are drawn on the full
        images (only the window of a JPEG is decoded).
      * anything else: a tfds dataset name (e.g. ``cifar10``, ``cifar100``, ``imagenet2012``),
        read from ``data_dir``; downloaded only if ``download``. Splits that fit in
        ``in_memory_bytes`` once decoded are held in memory, larger ones are streamed.

    Args:
      name: dataset name.
      split: split name ("train", "test", or any split the source has, e.g. "validation").
      data_dir: where the data is.
      limit: keep the first ``limit`` examples.
      image_size: the square size S of every image: in-memory datasets are resized (shorter side)
        and centre-cropped to it once when read; file-based ones (folders, streamed tfds splits)
        give pretraining crops of S x S drawn on the full images and evaluate with the shorter
        side resized to S / crop_ratio and the centre S x S. None/0 keeps the size.
      channels: 1 or 3 to convert; None/0 keeps the dataset's channels.
      download: tfds only: allow downloading and preparing.
      manual_dir: tfds only: folder of manually downloaded files (ImageNet).
      verify: folder only: decode every file once up front to find unreadable ones.
      class_names: folder only: the class list of the train split, to label the test split.
      in_memory_bytes: tfds only: the in-memory threshold.
      crop_ratio: file-based sources: the evaluation centre crop's share of the resized shorter
        side, in (0, 1] (0.875 = torchvision's Resize(256) + CenterCrop(224) at 224 px).
      max_image_pixels: folder only: the pixel budget (None: ``image_header.DEFAULT_MAX_IMAGE_PIXELS``,
        Pillow's 89478485); a file whose header declares more pixels is skipped, never decoded.
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
        if not data_dir:
            raise ValueError("the folder dataset needs data_dir (--data_dir=<root>)")
        return image_folder.open_folder(data_dir, split, image_size, channels or 3, limit,
                                        verify=verify, class_names=class_names, crop_ratio=crop_ratio,
                                        max_pixels=max_image_pixels or image_header.DEFAULT_MAX_IMAGE_PIXELS)
    if name == "mnist":
        images, labels = load_mnist(split, data_dir, limit)
        return array_source(name, split, images, labels, MNIST_INFO, image_size, channels)
    if name == "synthetic" and (image_size or channels):
        shape = tuple(options.pop("image_shape", (32, 32, 3)))
        options["image_shape"] = (image_size or shape[0], image_size or shape[1],
                                  channels or shape[2])
    if name in DATASETS:
        images, labels, info = DATASETS[name](split, data_dir, limit, **options)
        return array_source(name, split, images, labels, info, image_size, channels)
    if options:
        raise ValueError(f"unexpected options for tfds dataset {name!r}: {sorted(options)}")
    return open_tfds(name, split, data_dir, limit, download, manual_dir, image_size or None,
                      channels or None, in_memory_bytes, crop_ratio)
