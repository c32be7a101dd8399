"""The MoCo trainer: fit, state updates, and single-device vs 2-replica equivalence."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from mixmask_tf import backbones, branches, losses
from mixmask_tf.ops import mixing
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


def test_build_trainer_errors():
    backbone = backbones.small_convnet(SHAPE, width=4)
    with pytest.raises(ValueError, match="unknown framework"):
        build_trainer("simclr3", backbone)
    with pytest.raises(ValueError, match="larger than"):
        MoCo(backbone, branch=_mixmask(grid_size=32))


@pytest.mark.slow
def test_step_seed_same_with_and_without_xla():
    model = _moco(_mixmask(), seed=123)
    model.compile(optimizer="sgd")
    model.optimizer.iterations.assign(7)
    eager = [model.step_seed(g).numpy().tolist() for g in (0, 1)]
    jitted = [tf.function(lambda g=g: model.step_seed(g), jit_compile=True)().numpy().tolist() for g in (0, 1)]
    assert eager == jitted and eager[0] != eager[1]
    x = tf.constant(_batch(8)[:, 0])
    eager_mix = model.branch(x, model.step_seed(1))
    jit_mix = tf.function(lambda: model.branch(x, model.step_seed(1)).batches[0].images, jit_compile=True)()
    np.testing.assert_allclose(eager_mix.batches[0].images.numpy(), jit_mix.numpy(), atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_step_matches_float32(policy):
    """One SGD step under a mixed policy moves the weights as the float32 step does.

    Under mixed_float16 Keras wraps the optimizer in a LossScaleOptimizer that unscales the
    gradients, so the train step must scale the loss (else the update shrinks by the scale).
    """
    batch = tf.constant(_batch(8))

    def step_delta(policy_name):
        keras.mixed_precision.set_dtype_policy(policy_name)
        try:
            model = _moco(_mixmask())
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            model.train_on_batch(batch)  # builds the optimizer; the first step
            before = np.concatenate([w.numpy().ravel() for w in model.query_encoder.trainable_weights])
            logs = model.train_on_batch(batch, return_dict=True)
            after = np.concatenate([w.numpy().ravel() for w in model.query_encoder.trainable_weights])
        finally:
            keras.mixed_precision.set_dtype_policy("float32")
        assert all(w.dtype == "float32" for w in model.query_encoder.trainable_weights)
        return after - before, logs, model

    ref, ref_logs, _ = step_delta("float32")
    delta, logs, model = step_delta(policy)
    assert model.backbone.layers[1].compute_dtype == policy.split("_")[1]
    assert np.isfinite(logs["loss"])
    np.testing.assert_allclose(logs["loss"], ref_logs["loss"], rtol=0.05)
    cosine = delta @ ref / (np.linalg.norm(delta) * np.linalg.norm(ref))
    assert cosine > 0.95, cosine
    assert 0.8 < np.linalg.norm(delta) / np.linalg.norm(ref) < 1.25
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
