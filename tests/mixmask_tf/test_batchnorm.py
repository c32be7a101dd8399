"""The fused-kernel BatchNorm against Keras' own BatchNormalization and a NumPy reference."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import batchnorm


def _pair(shape, **kwargs):
    ours = batchnorm.BatchNorm(momentum=0.9, epsilon=1e-5, **kwargs)
    ref = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, **kwargs)
    ours.build(shape)
    ref.build(shape)
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=w.shape).astype("float32") if i < len(ours.trainable_weights) else
               np.abs(rng.normal(size=w.shape)).astype("float32") for i, w in enumerate(ours.weights)]
    ours.set_weights(weights)
    ref.set_weights(weights)
    return ours, ref


@pytest.mark.parametrize("shape,kwargs", [((8, 5, 6, 3), {}), ((16, 7), {}),
                                          ((16, 7), {"center": False, "scale": False}),
                                          ((4, 3, 3, 2), {"synchronized": True})])
def test_training_step_matches_keras_and_numpy(shape, kwargs):
    ours, ref = _pair(shape, **kwargs)
    initial = {v.path.split("/")[-1]: v.numpy() for v in ref.weights}
    x = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, size=shape).astype("float32"))
    upstream = tf.constant(np.random.default_rng(2).normal(size=shape).astype("float32"))
    results = []
    for layer in (ours, ref):
        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(y * upstream)
            return y, tape.gradient(loss, [x] + layer.trainable_weights)

        y, grads = step(x)
        results.append((y.numpy(), [g.numpy() for g in grads], [w.numpy() for w in layer.non_trainable_weights]))
    (y1, g1, s1), (y2, g2, s2) = results
    np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    for a, b in zip(s1, s2):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # NumPy: normalisation and moving statistics with the biased batch variance.
    xn = x.numpy().reshape(-1, shape[-1])
    mean, var = xn.mean(0), xn.var(0)
    gamma, beta = initial.get("gamma", 1.0), initial.get("beta", 0.0)
    np.testing.assert_allclose(y1, ((xn - mean) / np.sqrt(var + 1e-5) * gamma + beta).reshape(shape),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s1[0], 0.9 * initial["moving_mean"] + 0.1 * mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s1[1], 0.9 * initial["moving_variance"] + 0.1 * var, rtol=1e-5, atol=1e-5)


def test_inference_and_config_round_trip(tmp_path):
    ours, ref = _pair((4, 3, 3, 2))
    x = tf.constant(np.random.default_rng(3).normal(size=(4, 3, 3, 2)).astype("float32"))
    np.testing.assert_allclose(ours(x, training=False), ref(x, training=False), rtol=1e-6)
    inputs = keras.Input((3, 3, 2))
    model = keras.Model(inputs, batchnorm.batch_norm("bn")(inputs))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("bn"), batchnorm.BatchNorm)
    assert loaded.get_layer("bn").synchronized


def test_mixed_precision_output_dtype():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        layer = batchnorm.BatchNorm()
        y = layer(tf.ones((4, 2, 2, 3), tf.bfloat16) * tf.reshape(tf.range(4, dtype=tf.bfloat16), (4, 1, 1, 1)),
                  training=True)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert y.dtype == tf.bfloat16
    assert layer.moving_mean.dtype == "float32"


def _traced_ops(layer, x):
    fn = tf.function(lambda x: layer(x, training=True))
    return {op.type for op in fn.get_concrete_function(x).graph.get_operations()}


def test_fused_kernel_switch():
    x = tf.ones((4, 3, 3, 2))
    assert "FusedBatchNormV3" in _traced_ops(batchnorm.BatchNorm(), x)
    batchnorm.BatchNorm.fused_kernel = False
    try:
        assert "FusedBatchNormV3" not in _traced_ops(batchnorm.BatchNorm(), x)
    finally:
        batchnorm.BatchNorm.fused_kernel = True
