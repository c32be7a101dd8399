"""What a dataset is: its description (DatasetInfo), the errors opening one raises, and the
statistics of well-known datasets. No TensorFlow."""

from __future__ import annotations

import dataclasses

__all__ = ["DatasetNotFoundError", "CorruptDatasetError", "DatasetInfo", "FASHION_MNIST_DIR",
           "FASHION_MNIST_CLASS_NAMES", "FASHION_MNIST_INFO", "KNOWN_STATS", "LOCAL_DATASETS"]


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
# pixels): mean 0.286041, std 0.353024 (tests/mixmask_tf/data/test_data.py recomputes them).
FASHION_MNIST_INFO = DatasetInfo(
    name="fashion_mnist",
    image_shape=(28, 28, 1),
    num_classes=10,
    mean=(0.2860,),
    std=(0.3530,),
    class_names=FASHION_MNIST_CLASS_NAMES,
)


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

# The datasets open_source reads without tensorflow-datasets.
LOCAL_DATASETS = ("fashion_mnist", "mnist", "synthetic", "folder")
