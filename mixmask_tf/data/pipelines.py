"""The tf.data input pipelines: two augmented views per image for pretraining, and the in-order
evaluation pipeline.

* :func:`make_pretrain_dataset`: each element is ONE float32 tensor [B, 2, H', W', C] (view 1 =
  query, view 2 = key), as MultiWorkerMirroredStrategy's ``fit`` needs (no uint8, no tuples).
  Every epoch is a function of (seed, epoch): a stateless permutation and per-batch seeds.
* :func:`make_eval_dataset`: (float32 [B, H', W', C], int64 [B]) batches, in order.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from mixmask_tf.data.sources import (
    ArraySource,
    FileSource,
    Source,
    as_source,
    check_images,
    permuted_index,
)

__all__ = ["make_pretrain_dataset", "make_eval_dataset"]


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
                index_batches = index_batches.map(lambda i: permuted_index(i, key, n))
            return augment_batches(key, source.load_batches(index_batches))
        if source.indexable:
            indices = tf.data.Dataset.range(n)
            if shuffle:
                indices = indices.map(lambda i: permuted_index(i, key, n))
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
        images = check_images(images)
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
