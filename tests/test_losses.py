"""Losses against independent NumPy references."""

import numpy as np
import tensorflow as tf

from mixmask_tf import losses


def _normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _np_infonce(q, k, queue, t):
    # Written from the MoCo paper: -log(exp(q·k+/T) / (exp(q·k+/T) + Σ_queue exp(q·k-/T))).
    out = []
    for i in range(len(q)):
        pos = np.exp(q[i] @ k[i] / t)
        neg = np.sum(np.exp(queue @ q[i] / t))
        out.append(-np.log(pos / (pos + neg)))
    return np.array(out)


def test_moco_infonce_matches_numpy():
    rng = np.random.default_rng(0)
    q, k, queue = _normalize(rng.normal(size=(6, 5))), _normalize(rng.normal(size=(6, 5))), _normalize(rng.normal(size=(11, 5)))
    for t in (0.07, 0.2, 1.0):
        got = losses.moco_infonce(q, k, queue, t).numpy()
        np.testing.assert_allclose(got, _np_infonce(q, k, queue, t), rtol=1e-5, atol=1e-5)


def test_moco_logits_layout():
    rng = np.random.default_rng(1)
    q, k, queue = _normalize(rng.normal(size=(3, 4))), _normalize(rng.normal(size=(3, 4))), _normalize(rng.normal(size=(7, 4)))
    logits = losses.moco_logits(q, k, queue, 0.5).numpy()
    assert logits.shape == (3, 8)
    np.testing.assert_allclose(logits[:, 0], np.sum(q * k, 1) / 0.5, rtol=1e-5)
    np.testing.assert_allclose(logits[:, 1:], q @ queue.T / 0.5, rtol=1e-5)


def test_infonce_perfect_match_is_small_and_gradient_flows():
    q = _normalize(np.eye(4, 8))
    queue = _normalize(-np.ones((16, 8)))
    per = losses.moco_infonce(q, q, queue, 0.05).numpy()
    assert np.all(per < 1e-3)
    var = tf.Variable(q + 0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(losses.moco_infonce(losses.l2_normalize(var), q, queue, 0.2))
    assert np.all(np.isfinite(tape.gradient(loss, var).numpy()))


def test_mixmask_loss_per_batch_and_per_sample():
    rng = np.random.default_rng(2)
    mix, switch = rng.uniform(1, 3, 8), rng.uniform(1, 3, 8)
    lam = 0.3
    a, b = losses.mixmask_loss(mix, switch, np.full(8, lam), np.full(8, 1 - lam))
    # Paper Eq. 4 with one λ per batch.
    np.testing.assert_allclose(a.numpy() + b.numpy(), lam * mix.mean() + (1 - lam) * switch.mean(), rtol=1e-6)
    lam_i = rng.uniform(0, 1, 8)
    sw_i = rng.uniform(0, 1, 8)
    a, b = losses.mixmask_loss(mix, switch, lam_i, sw_i)
    np.testing.assert_allclose(a.numpy(), np.mean(lam_i * mix), rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), np.mean(sw_i * switch), rtol=1e-6)


def test_weighted_mean_scalar_weight_broadcasts():
    np.testing.assert_allclose(losses.weighted_mean(np.array([1.0, 3.0]), 0.5).numpy(), 1.0)
