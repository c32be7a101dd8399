"""LARS against a NumPy step, and exclusions by variable."""

import keras
import numpy as np
import pytest

from mixmask_tf import backbones
from mixmask_tf.optimizers import LARS, excluded_variables


def _np_lars(w, g, v, lr, momentum, wd, eta, excluded, nesterov=False):
    if not excluded:
        g = g + wd * w
        wn, gn = np.linalg.norm(w), np.linalg.norm(g)
        lr = lr * (eta * wn / gn if wn > 0 and gn > 0 else 1.0)
    v = momentum * v + lr * g
    return (w - (momentum * v + lr * g) if nesterov else w - v), v


@pytest.mark.parametrize("nesterov", [False, True])
def test_lars_matches_numpy_for_three_steps(nesterov):
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)
    w, b = keras.Variable(w0), keras.Variable(b0)
    opt = LARS(learning_rate=0.5, momentum=0.9, weight_decay=1e-2, eta=0.01, nesterov=nesterov, exclude=[b])
    ref = {"w": (w0.astype(np.float64), np.zeros_like(w0, np.float64)),
           "b": (b0.astype(np.float64), np.zeros_like(b0, np.float64))}
    for _ in range(3):
        gw, gb = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)
        opt.apply([gw, gb], [w, b])
        ref["w"] = _np_lars(*ref["w"][:1], gw, ref["w"][1], 0.5, 0.9, 1e-2, 0.01, False, nesterov)
        ref["b"] = _np_lars(*ref["b"][:1], gb, ref["b"][1], 0.5, 0.9, 1e-2, 0.01, True, nesterov)
    np.testing.assert_allclose(np.asarray(w), ref["w"][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(b), ref["b"][0], rtol=1e-5, atol=1e-6)


def test_zero_weights_use_trust_one():
    w = keras.Variable(np.zeros((2, 2), np.float32))
    LARS(learning_rate=0.1, momentum=0.0).apply([np.ones((2, 2), np.float32)], [w])
    np.testing.assert_allclose(np.asarray(w), -0.1 * np.ones((2, 2)), rtol=1e-6)


def test_excluded_variables_are_batchnorm_and_biases():
    model = backbones.small_convnet((8, 8, 1), width=2)
    head = keras.layers.Dense(3)
    inputs = keras.Input((8, 8, 1))
    full = keras.Model(inputs, head(model(inputs)))
    excluded = {id(v) for v in excluded_variables(full)}
    bn = [v for v in full.trainable_weights if "bn" in v.path]
    assert bn and all(id(v) in excluded for v in bn)
    assert id(head.bias) in excluded and id(head.kernel) not in excluded
    assert all(id(layer.kernel) not in excluded for layer in model.layers if hasattr(layer, "kernel"))


def test_exclude_after_build_is_an_error():
    v = keras.Variable(np.ones(2, np.float32))
    opt = LARS()
    opt.build([v])
    with pytest.raises(ValueError, match="before the optimizer is built"):
        opt.exclude([v])


def test_sgd_decay_exclusions_by_variable():
    """With exclusions, a zero gradient leaves BatchNorm/bias untouched while kernels decay."""
    from mixmask_tf.optimizers import with_decay_exclusions

    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, name="fc")(inputs)
    outputs = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, outputs)
    variables = model.trainable_variables
    before = [v.numpy().copy() for v in variables]
    for v in variables:  # nonzero values so decay would show everywhere
        v.assign(np.full(v.shape, 2.0, np.float32))
    opt = with_decay_exclusions(keras.optimizers.SGD(0.1, weight_decay=0.5), model)
    opt.apply([np.zeros(v.shape, np.float32) for v in variables], variables)
    after = {v.path: v.numpy() for v in variables}
    assert before and set(after) == {"fc/kernel", "fc/bias", "bn/gamma", "bn/beta"}
    np.testing.assert_allclose(after["fc/kernel"], 2.0 * (1 - 0.1 * 0.5))  # decoupled decay: w -= lr·wd·w
    for name in ("fc/bias", "bn/gamma", "bn/beta"):
        np.testing.assert_array_equal(after[name], 2.0)
    plain = keras.optimizers.SGD(0.1, weight_decay=0.5)
    for v in variables:
        v.assign(np.full(v.shape, 2.0, np.float32))
    plain.apply([np.zeros(v.shape, np.float32) for v in variables], variables)
    np.testing.assert_allclose(model.get_layer("bn").gamma.numpy(), 1.9)  # decayed without exclusions


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_l2_matches_torch_style_numpy(nesterov):
    """Coupled L2 as torch.optim.SGD: g += l2·w; v = m·v + g; w -= lr·v (Keras' sign convention differs only
    in storing -lr·v, which gives the same weights)."""
    from mixmask_tf.optimizers import SGDL2

    rng = np.random.default_rng(1)
    w0, b0 = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(2,)).astype(np.float32)
    w, b = keras.Variable(w0), keras.Variable(b0)
    opt = SGDL2(learning_rate=0.1, momentum=0.9, nesterov=nesterov, l2=0.05, exclude=[b])
    ref_w, ref_b = w0.astype(np.float64), b0.astype(np.float64)
    vw, vb = np.zeros_like(ref_w), np.zeros_like(ref_b)
    for _ in range(3):
        gw, gb = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(2,)).astype(np.float32)
        opt.apply([gw, gb], [w, b])
        for name in ("w", "b"):
            g = gw if name == "w" else gb
            ref, v = (ref_w, vw) if name == "w" else (ref_b, vb)
            if name == "w":
                g = g + 0.05 * ref
            v[...] = 0.9 * v + g
            ref -= 0.1 * ((g + 0.9 * v) if nesterov else v)
        np.testing.assert_allclose(w.numpy(), ref_w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b.numpy(), ref_b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="l2="):
        SGDL2(0.1, weight_decay=1e-4)
