"""Strategy selection, TF_CONFIG checks, global batch rules and sharded input (no cluster needed)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import augment, data, distribute


def _config(**task):
    return json.dumps({"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]},
                       "task": task or {"type": "worker", "index": 0}})


def test_parse_tf_config():
    parsed = distribute.parse_tf_config(_config(type="worker", index=1))
    assert parsed["task"] == {"type": "worker", "index": 1} and len(parsed["cluster"]["worker"]) == 2
    for bad, message in [(None, "needs TF_CONFIG"), ("{", "not valid JSON"), ("[]", "JSON object"),
                         ('{"task": {"type": "worker"}}', "no 'cluster'"),
                         ('{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker"}}', "host:port"),
                         ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps"}}', "needs 'worker'"),
                         (_config(type="worker", index=2), "not in the cluster"),
                         (json.dumps({"cluster": {"worker": ["a:1"]}}), "no 'task'")]:
        with pytest.raises(distribute.StrategyError, match=message):
            distribute.parse_tf_config(bad)


def test_make_strategy_choices_and_errors():
    assert distribute.make_strategy("auto").num_replicas_in_sync == 1  # no GPU here
    assert isinstance(distribute.make_strategy("one_device"), tf.distribute.OneDeviceStrategy)
    with pytest.raises(distribute.StrategyError, match="unknown strategy"):
        distribute.make_strategy("horovod")
    with pytest.raises(distribute.StrategyError, match="needs TF_CONFIG"):
        distribute.make_strategy("multi_worker", environ={})
    with pytest.raises(distribute.StrategyError, match="--strategy=tpu: no TPU"):
        distribute.make_strategy("tpu")
    with pytest.raises(distribute.StrategyError, match="does not apply"):
        distribute.make_strategy("one_device", cpu_devices=2)
    assert distribute.worker_of(tf.distribute.get_strategy()) == distribute.WorkerInfo()


def test_mirrored_on_logical_cpus(two_cpu_strategy):
    # conftest split the CPU in two at start-up; asking for the same split again is accepted.
    assert len(distribute.split_cpu(2)) == 2
    with pytest.raises(distribute.StrategyError, match="already set up 2"):
        distribute.split_cpu(3)


def test_global_batch_and_learning_rate_scaling():
    assert distribute.check_global_batch(256, 8) == 32
    with pytest.raises(distribute.StrategyError, match="does not divide over the 3 replicas"):
        distribute.check_global_batch(256, 3)
    assert distribute.scaled_learning_rate(0.03, 1024) == pytest.approx(0.12)


def _augment():
    return augment.TwoViewAugment.from_preset("mocov2", (8, 8), 3, (0.5,) * 3, (0.25,) * 3)


@pytest.mark.slow
def test_shards_build_exactly_the_rows_of_the_global_batch():
    images = np.random.default_rng(0).integers(0, 256, (24, 12, 12, 3)).astype(np.uint8)
    for vectorized, shards in ((True, 4), (False, 2)):
        def make(shard=None, start_step=0):
            return list(data.make_pretrain_dataset(images, 8, _augment(), seed=3, start_epoch=1, steps_per_epoch=3,
                                                   vectorized=vectorized, shard=shard, start_step=start_step).take(5))
        full = make()
        parts = [make(shard=(k, shards)) for k in range(shards)]
        assert parts[0][0].shape == (8 // shards, 2, 8, 8, 3)
        for j in range(5):  # across an epoch boundary too
            np.testing.assert_array_equal(np.concatenate([p[j] for p in parts]), full[j])
        resumed = make(start_step=2)
        for j in range(3):
            np.testing.assert_array_equal(resumed[j], full[2 + j])
    with pytest.raises(ValueError, match="count dividing"):
        data.make_pretrain_dataset(images, 8, _augment(), seed=0, shard=(0, 3))
    with pytest.raises(ValueError, match="start_step"):
        data.make_pretrain_dataset(images, 8, _augment(), seed=0, start_step=2)


@pytest.mark.slow
def test_distributed_dataset_gives_each_replica_its_rows(two_cpu_strategy):
    images = np.random.default_rng(1).integers(0, 256, (32, 12, 12, 3)).astype(np.uint8)

    def make(index, count):
        return data.make_pretrain_dataset(images, 8, _augment(), seed=0, start_epoch=0, steps_per_epoch=4,
                                          shard=(index, count) if count > 1 else None)

    full = list(make(0, 1).take(2))
    dist = distribute.distribute_pretrain_dataset(two_cpu_strategy, make, 8)
    iterator = iter(dist)
    for j in range(2):
        per_replica = two_cpu_strategy.experimental_local_results(next(iterator))
        assert [tuple(x.shape) for x in per_replica] == [(4, 2, 8, 8, 3)] * 2  # static: what TPUs need
        np.testing.assert_array_equal(np.concatenate([x.numpy() for x in per_replica]), full[j])
    with pytest.raises(distribute.StrategyError, match="does not divide"):
        distribute.distribute_pretrain_dataset(two_cpu_strategy, make, 9)
