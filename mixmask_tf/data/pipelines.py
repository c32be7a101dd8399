"""The tf.data input pipelines: two augmented views per image for pretraining, and the in-order
evaluation pipeline.

* :func:`make_pretrain_dataset`: each element is ONE float32 tensor [B, 2, H', W', C] (view 1 =
  query, view 2 = key), as MultiWorkerMirroredStrategy's ``fit`` needs (no uint8, no tuples).
  Every epoch is a function of (seed, epoch): a stateless permutation and per-batch seeds.
* :func:`make_eval_dataset`: (float32 [B, H', W', C], int64 [B]) batches, in order.
"""

from __future__ import annotations

from typing import Optional, Tuple

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
                          vectorized: Optional[bool] = None, shard: Optional[Tuple[int, int]] = None,
                          start_step: int = 0, full_image: Optional[bool] = None,
                          augment_on: str = "host", split_batches: bool = False) -> tf.data.Dataset:
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
      the batches an uninterrupted run would have seen (for indexable sources). With
      ``start_step=s`` the first epoch starts at its batch s (a run resumed mid-epoch).

    **Shards** (``shard=(index, count)``, one per input pipeline of a distributed run): the
    pipeline yields rows [index·b, (index + 1)·b) of every global batch, b = B / count, and
    reads, decodes and augments only those rows: the global batches are those of
    ``shard=None``, bit for bit (the augmentation parameters of the whole batch are drawn from
    its seed and each shard applies its rows'), whatever the number of workers. Streaming
    sources read only their own files where tfds can split them, and augment with seeds
    folded with the shard index.

    Streaming sources (large tfds splits) shuffle their files and a ``shuffle_buffer`` instead,
    and are exact only up to that order.

    **Split by batch** (``split_batches=True``, for a tf.data service with dynamic sharding,
    :mod:`mixmask_tf.data.service`): the same batches as ``start_epoch`` (and ``start_step``)
    give, but the dataset's only source is the range of global batch numbers g = e·steps + j
    from ``start_epoch``·steps + ``start_step`` on, each turned into batch j of epoch e inside a
    ``flat_map``. A dispatcher that hands out the source's elements then hands out whole
    batches, each to one worker. Needs an indexable source and no shard; image files are read
    as shards read them (an unreadable file loses its batch).

    **Full-image crops** (``full_image``): sources that hold encoded images (image files, tfds
    splits streamed from their record files: ``source.encoded``) are read still encoded, with
    each image's size from its header; the batch's crop boxes are drawn on every image's own
    full size and only those windows are decoded (``decode_and_crop_jpeg`` for JPEG), then
    resized to the view size (``view_fn.batch_encoded``). The draws are those of the batched
    path, so batches stay a function of (seed, epoch, step) and shards get their rows. In-memory
    sources keep the batched path on their (already conformed) arrays.

    **Augmentation on the device** (``augment_on="device"``): the pipeline makes only the host
    share of each batch (the parameter draws and the crops, rounded to uint8) and yields it packed
    in one int32 [B / count, P] tensor per element (``view_fn.batch(..., packed=True)``); the
    trainer finishes the views inside its compiled step (``view_fn.on_device``: pass the same
    ``view_fn`` as the trainer's ``device_augment``). The views are those of ``"host"``, to float
    rounding; the order, seeds, shards and resumption are unchanged.

    Args:
      images: a Source, or uint8 [N, H, W, C] numpy array.
      batch_size: B, examples per (global) batch.
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
        is an error. With shards, ``view_fn.batch`` must take ``rows=(offset, total)``.
      shard: None, or (index, count) with count dividing B: see above (needs drop_remainder).
      start_step: with ``start_epoch``, the first epoch's first batch (0 <= s < steps).
      split_batches: see above (needs ``start_epoch``).
      full_image: crop from the full encoded images (see above). None (default): when the
        source has encoded images and ``view_fn`` a ``batch_encoded(contents, sizes, seed,
        channels, rows=None)`` method (``augment.TwoViewAugment``); True where that is not so
        is an error; False decodes and conforms every image to the source's square size first.
      augment_on: "host" (default: finished, normalised views) or "device" (the packed host share,
        see above; needs the batched or full-image path, i.e. a ``view_fn`` with ``batch`` /
        ``batch_encoded`` taking ``packed``, such as ``augment.TwoViewAugment``).

    Returns:
      tf.data.Dataset of float32 [B / count, 2, H', W', C] tensors (view 1 = query, view 2 =
      key), or of (that, int64 [B / count]) pairs with ``with_labels``; with
      ``augment_on="device"``, int32 [B / count, P] in place of the views.

    Raises:
      ValueError: bad images, no complete batch with drop_remainder, ``with_labels`` for
        an unlabeled source (or plain arrays, which carry no labels), a bad shard or start.
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
    index, count = (0, 1) if shard is None else (int(shard[0]), int(shard[1]))
    if count < 1 or not 0 <= index < count or batch_size % count:
        raise ValueError(f"shard {shard} must be (index, count) with 0 <= index < count and count dividing "
                         f"batch_size {batch_size}")
    if count > 1 and not drop_remainder:
        raise ValueError("shards need drop_remainder=True (every global batch splits evenly)")
    local = batch_size // count
    offset = index * local
    if augment_on not in ("host", "device"):
        raise ValueError(f"augment_on must be 'host' or 'device', got {augment_on!r}")
    device = augment_on == "device"
    if device and vectorized is False:
        raise ValueError("augment_on='device' augments whole batches: it cannot be combined with vectorized=False")
    start_step = int(start_step)
    if start_step and (start_epoch is None or not 0 <= start_step < steps):
        raise ValueError(f"start_step {start_step} needs start_epoch and must lie in [0, {steps})")
    if split_batches and (start_epoch is None or count > 1 or not source.indexable):
        raise ValueError(f"split_batches needs start_epoch, no shard and an indexable source (arrays, files), "
                         f"got start_epoch={start_epoch}, shard={shard}, {source.description}")

    def augment(position, example, key):
        example_seed = tf.random.experimental.stateless_fold_in(key, position)
        views = tf.cast(view_fn(example[0], example_seed), tf.float32)
        return (views, tf.cast(example[1], tf.int64)) if with_labels else views

    channels = int(source.info.image_shape[-1])
    encoded = callable(getattr(view_fn, "batch_encoded", None)) and source.encoded
    if full_image and not encoded:
        raise ValueError(f"full_image=True needs a source of encoded images (files, streamed tfds) and a view_fn "
                         f"with a batch_encoded method; got {source.description} and {type(view_fn).__name__}")
    encoded = encoded if full_image is None else bool(full_image)

    def use_batches(image_shape):
        possible = callable(getattr(view_fn, "batch", None)) and image_shape.is_fully_defined()
        if device and not possible:
            raise ValueError("augment_on='device' needs whole batches of one image size (a view_fn with a "
                             f"batch method, e.g. augment.TwoViewAugment, and images of a static shape); got "
                             f"{type(view_fn).__name__}, image shape {image_shape}")
        if vectorized and not possible:
            raise ValueError("vectorized=True needs a view_fn with a batch(images, seed) method and images "
                             f"of a static shape (got {type(view_fn).__name__}, image shape {image_shape})")
        return possible if vectorized is None else bool(vectorized)

    def augment_batches(key, numbered, rows):
        def augment_batch(j, batch):
            batch_seed = tf.random.experimental.stateless_fold_in(key, j)
            extra = {"rows": rows} if rows else {}
            if device:
                extra["packed"] = True
            if encoded:
                contents, sizes = batch[0]
                views = view_fn.batch_encoded(contents, sizes, batch_seed, channels, **extra)
            else:
                views = view_fn.batch(batch[0], batch_seed, **extra)
            return (views, tf.cast(batch[1], tf.int64)) if with_labels else views

        views = numbered.map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        # A file whose header reads but whose data does not decode loses its batch, not the run
        # (open_folder(verify=True) leaves such files out up front).
        return views.ignore_errors(log_warning=True) if encoded else views

    def views_in_order(examples, key, skip):
        """Augmented batches of an example stream: batch j is its examples [j·b, (j + 1)·b)."""
        if encoded or use_batches(examples.element_spec[0].shape):
            batches = examples.batch(local, drop_remainder=drop_remainder).take(steps)
            return augment_batches(key, tf.data.Dataset.zip(tf.data.Dataset.range(steps), batches).skip(skip), None)
        views = tf.data.Dataset.zip(tf.data.Dataset.range(n), examples).map(
            lambda i, ex: augment(i, ex, key), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return views.batch(local, drop_remainder=drop_remainder).take(steps).skip(skip)

    def first_step(epoch_key):
        if not start_step:
            return tf.constant(0, tf.int64)
        return tf.where(tf.equal(epoch_key, int(start_epoch)), tf.constant(start_step, tf.int64), 0)

    def numbered_positions(first, stop):
        """(j, positions [j·B, (j + 1)·B) of the permutation) of the epoch's batches first <= j < stop."""
        def positions(j):
            if drop_remainder:
                return j * batch_size + tf.range(batch_size, dtype=tf.int64)
            return tf.range(j * batch_size, tf.minimum((j + 1) * batch_size, n), dtype=tf.int64)
        return tf.data.Dataset.range(first, stop).map(lambda j: (j, positions(j)))

    def epoch(epoch_key, first=None, stop=steps):
        """The epoch's batches from `first` (default: first_step) to `stop`."""
        key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch_key, tf.int64)])
        skip = first_step(epoch_key) if first is None else first
        if (source.indexable and count == 1 and not callable(getattr(source, "load_batches", None))
                and not split_batches):
            # Files: load the permuted indices in order and batch what decodes (an unreadable file is
            # dropped and the next one takes its place).
            indices = tf.data.Dataset.range(n)
            if shuffle:
                indices = indices.map(lambda i: permuted_index(i, key, n))
            return views_in_order(source.load_encoded(indices) if encoded else source.load(indices), key, skip)
        if source.indexable:
            # Batch j of the epoch holds positions [j·B, (j + 1)·B) of the permutation; this
            # shard takes its rows of each.
            numbered = numbered_positions(skip, stop)
            if count > 1:
                numbered = numbered.map(lambda j, p: (j, p[offset:offset + local]))
            if shuffle:
                numbered = numbered.map(lambda j, p: (j, p, permuted_index(p, key, n)))
            else:
                numbered = numbered.map(lambda j, p: (j, p, p))
            if callable(getattr(source, "load_batches", None)) and use_batches(tf.TensorShape(source.info.image_shape)):
                # In-memory arrays: gather whole batches of indices (no per-example op).
                loaded = source.load_batches(numbered.map(lambda j, p, i: i))
                numbered = tf.data.Dataset.zip(numbered.map(lambda j, p, i: j), loaded)
                return augment_batches(key, numbered, (offset, batch_size) if count > 1 else None)
            load = source.load_encoded if encoded else source.load
            examples = load(numbered.map(lambda j, p, i: i).unbatch())
            if encoded or use_batches(examples.element_spec[0].shape):
                batches = examples.batch(local, drop_remainder=drop_remainder)
                numbered = tf.data.Dataset.zip(numbered.map(lambda j, p, i: j), batches)
                return augment_batches(key, numbered, (offset, batch_size) if count > 1 else None)
            views = tf.data.Dataset.zip(numbered.map(lambda j, p, i: p).unbatch(), examples).map(
                lambda pos, ex: augment(pos, ex, key), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            return views.batch(local, drop_remainder=drop_remainder)
        stream = source.stream_encoded if encoded else source.stream
        examples = stream(shuffle, seed, shard=shard if count > 1 else None)
        if shuffle:
            examples = examples.shuffle(shuffle_buffer, seed=seed + index)
        if count > 1:  # another shard, other images: other seeds
            key = tf.random.experimental.stateless_fold_in(key, index)
        return views_in_order(examples, key, skip)

    if split_batches:  # no prefetch: a service worker buffers (and a lost worker loses) what it holds
        batches = tf.data.Dataset.range(int(start_epoch) * steps + start_step, np.iinfo(np.int64).max)
        return batches.flat_map(lambda g: epoch(g // steps, g % steps, g % steps + 1))
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
