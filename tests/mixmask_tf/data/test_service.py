"""mixmask_tf.data.service and make_pretrain_dataset(split_batches=True), in one process.

The served batches are the local pipeline's, bit for bit; a dispatcher with two workers started in
this process hands out every batch exactly once (the separate-process cluster, a killed worker and
a whole pretraining run are in tests/trainers/test_data_service.py).
"""

import socket
import time

import numpy as np
import pytest
import tensorflow as tf

from image_folders import make_folder
from mixmask_tf import augment, checks, data
from mixmask_tf.data import service

N, BATCH = 48, 8
STEPS = N // BATCH


def _per_example(image, seed):
    """A view_fn without a batch method (the per-example path): two noisy copies."""
    noise = tf.random.stateless_uniform([2, *image.shape], seed)
    return tf.cast(tf.stack([image, image]), tf.float32) + noise


def _sources(kind, tmp_path):
    if kind == "files":
        make_folder(str(tmp_path), per_class=N // 3, splits=("train",))
        source = data.image_folder.open_folder(str(tmp_path), "train", image_size=16)
        return source, augment.TwoViewAugment.from_preset("cifar", (16, 16), 3, (0.5,) * 3, (0.25,) * 3)
    images, labels = data.synthetic_dataset(N, (16, 16, 3), num_classes=4, seed=0)
    source = data.ArraySource(images, labels)
    if kind == "arrays, per example":
        return source, _per_example
    return source, augment.TwoViewAugment.from_preset("cifar", (12, 12), 3, (0.5,) * 3, (0.25,) * 3)


@pytest.mark.parametrize("kind", ["arrays, batched", "arrays, per example", "files"])
def test_split_batches_are_the_local_batches_across_epochs(kind, tmp_path):
    source, view_fn = _sources(kind, tmp_path)
    args = dict(batch_size=BATCH, view_fn=view_fn, seed=7, start_epoch=1, start_step=2, with_labels=True)
    count = 2 * STEPS - 2  # the rest of epoch 1, then epoch 2
    local = list(data.make_pretrain_dataset(source, **args).take(count).as_numpy_iterator())
    served = list(data.make_pretrain_dataset(source, split_batches=True, **args).take(count).as_numpy_iterator())
    whole = list(data.make_pretrain_dataset(source, **{**args, "start_step": 0}).skip(2).take(count)
                 .as_numpy_iterator())  # the uninterrupted epoch 1, less its first two batches
    assert len(served) == len(local) == len(whole) == count
    for (views, labels), (want_views, want_labels), (whole_views, _) in zip(served, local, whole):
        np.testing.assert_array_equal(labels, want_labels)
        np.testing.assert_array_equal(views, want_views)
        np.testing.assert_array_equal(whole_views, want_views)


def test_split_batches_needs_start_epoch_and_no_shard():
    images, labels = data.synthetic_dataset(N, (16, 16, 3), num_classes=4, seed=0)
    with pytest.raises(ValueError, match="split_batches needs start_epoch"):
        data.make_pretrain_dataset(images, BATCH, _per_example, seed=0, split_batches=True)
    with pytest.raises(ValueError, match="split_batches needs start_epoch"):
        data.make_pretrain_dataset(images, BATCH, _per_example, seed=0, start_epoch=0, shard=(0, 2),
                                   split_batches=True)


def test_addresses_and_an_unreachable_dispatcher():
    assert service.parse_address("grpc://127.0.0.1:5050") == ("127.0.0.1", 5050)
    for bad in ("127.0.0.1:5050", "grpc://host", "grpc://host:0", "grpc://:1", "http://h:1", ""):
        with pytest.raises(service.ServiceError, match="grpc://host:port"):
            service.parse_address(bad)
    with pytest.raises(ValueError, match="--data_service must be"):
        checks.service_address("--data_service", "localhost:1")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.time()
    with pytest.raises(service.ServiceError, match=f"no tf.data service dispatcher answers at grpc://127.0.0.1:{port}"):
        service.check_reachable(f"grpc://127.0.0.1:{port}", timeout_s=2)
    assert 1 <= time.time() - start < 4  # it tried for the timeout, then gave up


def test_two_in_process_workers_hand_out_every_batch_once():
    """Dynamic sharding of the batch-number source: two epochs, each batch exactly once, and
    each the batch the local pipeline builds."""
    dispatcher = service.start_dispatcher(0)
    workers = [service.start_worker(dispatcher.target, host="127.0.0.1") for _ in range(2)]
    try:
        images = np.zeros([N, 4, 4, 1], np.uint8)
        source = data.ArraySource(images, np.arange(N))  # label = the example's index
        args = dict(batch_size=BATCH, view_fn=_per_example, seed=3, start_epoch=0, with_labels=True)
        local = list(data.make_pretrain_dataset(source, **args).take(100 * STEPS).as_numpy_iterator())
        number = {tuple(labels): g for g, (_, labels) in enumerate(local)}
        served = service.distribute(data.make_pretrain_dataset(source, split_batches=True, **args),
                                    dispatcher.target)
        got = []  # global batch numbers, in the order they arrive (workers finish them in any order)
        for views, labels in served.take(100 * STEPS).as_numpy_iterator():
            g = number.get(tuple(labels))
            assert g is not None, f"a batch not among the first {100 * STEPS} batches: labels {labels}, after {got}"
            np.testing.assert_array_equal(views, local[g][0])
            got.append(g)
            if set(range(2 * STEPS)) <= set(got):
                break
        assert len(got) == len(set(got))  # no batch twice
        assert set(range(2 * STEPS)) <= set(got), got  # every batch of epochs 0 and 1
        examples = [sorted(np.concatenate([local[g][1] for g in range(e * STEPS, (e + 1) * STEPS)]))
                    for e in range(2)]
        assert examples == [list(range(N))] * 2  # each epoch: every example once
        assert sum(w._num_tasks() for w in workers) >= 2  # both took part
    finally:
        for worker in workers:
            worker._stop()
        dispatcher._stop()
