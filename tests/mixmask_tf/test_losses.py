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


def _mixmask_terms(mix, switch, weights, switch_weights):
    # The MixMask objective of the paper's Eq. 4/6, λ·L↑ + (1 − λ)·L↓, as the trainer sums its two terms.
    return losses.weighted_mean(mix, weights), losses.weighted_mean(switch, switch_weights)


def test_mixmask_terms_per_batch_and_per_sample():
    rng = np.random.default_rng(2)
    mix, switch = rng.uniform(1, 3, 8), rng.uniform(1, 3, 8)
    lam = 0.3
    a, b = _mixmask_terms(mix, switch, np.full(8, lam), np.full(8, 1 - lam))
    # Paper Eq. 4 with one λ per batch.
    np.testing.assert_allclose(a.numpy() + b.numpy(), lam * mix.mean() + (1 - lam) * switch.mean(), rtol=1e-6)
    lam_i = rng.uniform(0, 1, 8)
    sw_i = rng.uniform(0, 1, 8)
    a, b = _mixmask_terms(mix, switch, lam_i, sw_i)
    np.testing.assert_allclose(a.numpy(), np.mean(lam_i * mix), rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), np.mean(sw_i * switch), rtol=1e-6)


def test_weighted_mean_scalar_weight_broadcasts():
    np.testing.assert_allclose(losses.weighted_mean(np.array([1.0, 3.0]), 0.5).numpy(), 1.0)


def _np_nt_xent(za, zb, t):
    # SimCLR written from the paper: for anchor a_i over the 2N views, the positive is b_i and
    # the denominator runs over all 2N − 1 other views.
    views = np.concatenate([za, zb])
    n = len(za)
    out = []
    for i in range(n):
        sims = views @ za[i] / t
        denom = np.sum(np.exp(np.delete(sims, i)))
        out.append(-np.log(np.exp(sims[n + i]) / denom))
    return np.array(out)


def test_nt_xent_matches_numpy_full_batch():
    rng = np.random.default_rng(3)
    za, zb = _normalize(rng.normal(size=(5, 4))), _normalize(rng.normal(size=(5, 4)))
    got = losses.nt_xent(za, zb, za, 0, 0.5).numpy()
    np.testing.assert_allclose(got, _np_nt_xent(za, zb, 0.5), rtol=1e-5, atol=1e-5)


def test_nt_xent_replica_slice_equals_full_batch_rows():
    """A replica holding rows 3..5 of the global batch gets exactly those rows' losses."""
    rng = np.random.default_rng(4)
    za, zb = _normalize(rng.normal(size=(6, 4))), _normalize(rng.normal(size=(6, 4)))
    full = losses.nt_xent(za, zb, za, 0, 0.2).numpy()
    part = losses.nt_xent(za[3:], zb, za, 3, 0.2).numpy()
    np.testing.assert_allclose(part, full[3:], rtol=1e-5)


def test_info_nce_in_batch_matches_numpy():
    rng = np.random.default_rng(5)
    q, keys = _normalize(rng.normal(size=(3, 4))), _normalize(rng.normal(size=(6, 4)))
    got = losses.info_nce_in_batch(q, keys, 2, 0.3).numpy()
    expected = [-(q[i] @ keys[2 + i] / 0.3) + np.log(np.sum(np.exp(keys @ q[i] / 0.3))) for i in range(3)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_byol_and_simsiam_losses_match_numpy():
    rng = np.random.default_rng(6)
    p, z = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    cos = np.sum(p * z, 1) / np.linalg.norm(p, axis=1) / np.linalg.norm(z, axis=1)
    np.testing.assert_allclose(losses.byol_regression(p, z).numpy(), 2 - 2 * cos, rtol=1e-5)
    pn, zn = _normalize(p), _normalize(z)
    np.testing.assert_allclose(losses.byol_regression(p, z).numpy(), np.sum((pn - zn) ** 2, 1), rtol=1e-5)
    np.testing.assert_allclose(losses.negative_cosine(p, z).numpy(), -cos, rtol=1e-5)
