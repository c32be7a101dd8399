"""The MoCo trainer: fit, state updates, checkpoints, and single-device vs 2-replica equivalence."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from mixmask_tf import backbones, branches, checkpoint, losses, mixing
from mixmask_tf.models import MoCo, build_trainer

SHAPE = (16, 16, 1)


def _batch(n=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 2) + SHAPE).astype("float32")


def _moco(branch=None, seed=0, **kw):
    keras.utils.set_random_seed(seed)
    backbone = backbones.small_convnet(SHAPE, width=4)
    options = dict(embedding_dim=8, queue_size=32, momentum=0.9, temperature=0.2)
    options.update(kw)
    return MoCo(backbone, branch=branch, seed=seed, **options)


def _mixmask(**kw):
    options = dict(grid_size=4, mask_type="blocked", ratio=0.5)
    options.update(kw)
    return branches.MixMaskBranch(**options)


def test_fit_runs_and_updates_state():
    model = _moco(_mixmask())
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    key_before = [w.numpy().copy() for w in model.key_encoder.trainable_weights]
    queue_before = model.queue.numpy().copy()
    ds = tf.data.Dataset.from_tensor_slices(_batch(32)).batch(8, drop_remainder=True)
    history = model.fit(ds, epochs=1, verbose=0)
    logs = {k: v[-1] for k, v in history.history.items()}
    assert set(logs) == {"loss", "loss_clean", "loss_mix", "loss_switch", "lambda"}
    assert all(np.isfinite(v) for v in logs.values())
    np.testing.assert_allclose(logs["loss"], logs["loss_clean"] + logs["loss_mix"] + logs["loss_switch"], rtol=1e-4)
    assert 0.0 < logs["lambda"] < 1.0
    assert int(model.queue_ptr.numpy()) == 32 % 32  # 4 steps x 8 keys into a queue of 32
    assert not np.allclose(model.queue.numpy(), queue_before)
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(key_before, model.key_encoder.trainable_weights))
    # Optimizer state only for the query side (the key encoder gets no gradient).
    assert model.optimizer.built
    assert model.predict(_batch(4)[:, 0], verbose=0).shape == (4, 16)


def test_momentum_update_rule():
    model = _moco(momentum=0.75)
    model.compile(optimizer="sgd")
    for q in model.query_encoder.trainable_weights:
        q.assign(q + 1.0)
    before = [(q.numpy().copy(), k.numpy().copy()) for q, k in model._momentum_pairs]
    model.update_targets()
    for (q, k), (_, k_var) in zip(before, model._momentum_pairs):
        np.testing.assert_allclose(k_var.numpy(), 0.75 * k + 0.25 * q, rtol=1e-6, atol=1e-6)


def test_queue_wraps_around():
    model = _moco(queue_size=12)
    keys = losses.l2_normalize(tf.random.normal((8, 8), seed=1))
    model.queue_ptr.assign(8)
    model.finish_step((keys,))
    q = model.queue.numpy()
    np.testing.assert_allclose(q[8:12], keys.numpy()[:4], rtol=1e-6)
    np.testing.assert_allclose(q[0:4], keys.numpy()[4:], rtol=1e-6)
    assert int(model.queue_ptr.numpy()) == 4


def test_switch_identity_with_batchnorm_in_training_mode():
    """Gathering the mixture embeddings by the switch index equals encoding the switch mixtures."""
    model = _moco()
    x = tf.constant(_batch(8)[:, 0])
    for permutation in ("reverse", "random"):
        mix = mixing.mixmask(x, tf.constant([3, 4]), 4, permutation=permutation)
        q = model.embed_query(mix.images, training=True)
        switched_images = tf.gather(mix.images, mix.switch_index)
        q_switched = model.embed_query(switched_images, training=True)
        np.testing.assert_allclose(tf.gather(q, mix.switch_index).numpy(), q_switched.numpy(), atol=1e-5)


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    model = _moco(_mixmask())
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.fit(tf.data.Dataset.from_tensor_slices(_batch(16)).batch(8), verbose=0)
    path = checkpoint.save(model, str(tmp_path), epoch=3)
    saved = [v.numpy().copy() for v in model.weights + model.optimizer.variables]
    other = _moco(_mixmask(), seed=5)
    other.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    assert checkpoint.restore(other, path) == 3
    for a, b in zip(saved, other.weights + other.optimizer.variables):
        np.testing.assert_array_equal(a, b.numpy())
    assert checkpoint.latest(str(tmp_path)) == path
    bigger = _moco(_mixmask(), embedding_dim=16)
    bigger.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    with pytest.raises(checkpoint.CheckpointMismatchError):
        checkpoint.restore(bigger, path)


def test_checkpoint_keeps_newest(tmp_path):
    model = _moco()
    model.compile(optimizer="sgd")
    for epoch in range(1, 6):
        checkpoint.save(model, str(tmp_path), epoch, keep=2)
    assert [p[-9:] for p in checkpoint.list_checkpoints(str(tmp_path))] == ["00004.npz", "00005.npz"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_build_trainer_errors():
    backbone = backbones.small_convnet(SHAPE, width=4)
    with pytest.raises(ValueError, match="unknown framework"):
        build_trainer("simclr3", backbone)
    with pytest.raises(ValueError, match="larger than"):
        MoCo(backbone, branch=_mixmask(grid_size=32))


class _GroupedMoCo(MoCo):
    """Single-device reference of a 2-replica step: the branch runs per half-batch with
    the seed each replica would use, exactly as the replicas do."""

    groups = 2

    def branch_outputs(self, x1):
        chunks = tf.split(x1, self.groups, axis=0)
        return branches.concat_branch_outputs(
            [self.branch(chunk, self.step_seed(g)) for g, chunk in enumerate(chunks)])


@pytest.fixture(scope="module")
def strategy():
    # One strategy per process: a second MirroredStrategy over the same devices reuses
    # collective keys and aborts with "Shape mismatch in the collective instance".
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest.py should split the CPU into 2 logical devices"
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])


@pytest.mark.parametrize("branch_kwargs", [None, dict(per_sample=False), dict(per_sample=True, permutation="random")])
def test_mirrored_two_replicas_equals_single_device(strategy, branch_kwargs):
    make_branch = (lambda: None) if branch_kwargs is None else (lambda: _mixmask(**branch_kwargs))
    data = _batch(16, seed=3)  # two global batches of 8 -> 2 steps, 4 images per replica

    def dataset():
        return tf.data.Dataset.from_tensor_slices(data).batch(8, drop_remainder=True)

    single = _GroupedMoCo(backbones.small_convnet(SHAPE, width=4), branch=make_branch(), seed=0,
                          embedding_dim=8, queue_size=32, momentum=0.9, temperature=0.2)
    single.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
    with strategy.scope():
        mirrored = MoCo(backbones.small_convnet(SHAPE, width=4), branch=make_branch(), seed=0,
                        embedding_dim=8, queue_size=32, momentum=0.9, temperature=0.2)
        mirrored.set_weights(single.get_weights())
        mirrored.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
    single.fit(dataset(), verbose=0, shuffle=False)
    mirrored.fit(dataset(), verbose=0, shuffle=False)
    assert int(mirrored.optimizer.iterations.numpy()) == 2
    names = [w.path for w in single.weights]
    for name, a, b in zip(names, single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5, err_msg=name)
    # The replicas themselves agree (no silent drift of the queue, pointer or key encoder).
    for var in [mirrored.queue, mirrored.queue_ptr] + mirrored.key_encoder.weights:
        values = getattr(var.value, "values", None) or getattr(var, "values", None)
        if values:
            for v in values[1:]:
                np.testing.assert_allclose(values[0].numpy(), v.numpy(), atol=1e-6)
