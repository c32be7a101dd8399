"""tensorflow-datasets splits (cifar10, cifar100, imagenet2012, ...), read from ``data_dir``:
held in memory when they fit, streamed otherwise. Downloads only when asked to."""

from __future__ import annotations

import numpy as np
from absl import logging
import tensorflow as tf

from mixmask_tf.data.info import LOCAL_DATASETS, DatasetInfo, DatasetNotFoundError
from mixmask_tf.data.sources import (
    ArraySource,
    StreamSource,
    check_crop_ratio,
    conform_image,
    dataset_stats,
    encoded_image_size,
)

__all__ = ["open_tfds"]


def open_tfds(name, split, data_dir, limit, download, manual_dir, size, channels,
               in_memory_bytes, crop_ratio=0.875):
    """A tfds split: in memory when its conformed images fit ``in_memory_bytes``, else streamed.

    A streamed split keeps its images encoded for pretraining (``StreamSource.stream_encoded``:
    crops drawn on the full images) and evaluates with the shorter side resized to
    size / ``crop_ratio`` and the centre size x size square; an in-memory split is conformed once
    (shorter side to ``size``, centre square) when read.
    """
    crop_ratio = check_crop_ratio(crop_ratio)
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
    def read(shuffle, seed, context=None, decoders=None):
        return builder.as_dataset(split=split, shuffle_files=shuffle, decoders=decoders, read_config=tfds.ReadConfig(
            shuffle_seed=seed, shuffle_reshuffle_each_iteration=True, input_context=context))
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

    def label_of(ex):
        return tf.cast(ex[label_key], tf.int64) if label_key else tf.constant(-1, tf.int64)

    def to_example(ex, ratio=1.0):
        image = ex[image_key]
        if image.shape[-1] is None:
            image.set_shape(image.shape[:-1].concatenate([native_channels]))
        return conform_image(image, out_size, out_channels, ratio), label_of(ex)

    def to_encoded(ex):
        contents = ex[image_key]
        return (contents, encoded_image_size(contents)), label_of(ex)

    def examples(shuffle, seed, shard, decoders=None):
        ds = None
        if shard is not None and limit is None:
            # Each input pipeline reads only its own files (tfds shards by file).
            try:
                ds = read(shuffle, seed, tf.distribute.InputContext(shard[1], shard[0], 1), decoders)
            except ValueError as e:  # fewer files than pipelines
                logging.warning("tfds %s %s: %s; every pipeline reads all files and keeps its share", name, split, e)
        if ds is None:
            ds = read(shuffle, seed, decoders=decoders)
            if limit is not None:
                ds = ds.take(limit)
            if shard is not None:
                ds = ds.shard(shard[1], shard[0])
        return ds

    def make(shuffle, seed, shard=None, ratio=1.0):
        return examples(shuffle, seed, shard).map(lambda ex: to_example(ex, ratio),
                                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def make_streamed(shuffle, seed, shard=None):
        return make(shuffle, seed, shard, crop_ratio)

    def make_encoded(shuffle, seed, shard=None):
        ds = examples(shuffle, seed, shard, {image_key: tfds.decode.SkipDecoding()})
        return ds.map(to_encoded, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors(
            log_warning=True)

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
        mean, std = dataset_stats(name, out_channels, lambda: images[:1000])
        info = DatasetInfo(name, shape, num_classes, mean, std, class_names)
        return ArraySource(images, labels if label_key else None, info,
                           f"{name} {split} (tfds): {len(images)} images "
                           f"{side}x{side}x{out_channels} (in memory)")

    def sample():
        return np.stack([x.numpy() for x, _ in make_streamed(False, 0).take(1000)])

    mean, std = dataset_stats(name, out_channels, sample)
    info = DatasetInfo(name, shape, num_classes, mean, std, class_names)
    encoded = isinstance(features[image_key], tfds.features.Image)
    return StreamSource(make_streamed, info, n, bool(label_key),
                        f"{name} {split} (tfds): {n} images, "
                        + (f"{side}x{side}x{out_channels} crops of the full images (evaluation: centre crop ratio "
                           f"{crop_ratio:g}), streamed" if encoded else
                           f"{side}x{side}x{out_channels} (streamed)"),
                        make_encoded=make_encoded if encoded else None, crop_ratio=crop_ratio)
