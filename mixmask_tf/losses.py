"""Loss functions: pure TF, no project imports.

Shapes follow the MoCo code's notes: N queries of dimension D, a queue of K negatives.
Every function returns a *per-sample* loss vector so that a caller can weight each sample
(the λ-weighted MixMask terms, per-sample masks) before averaging.
"""

import tensorflow as tf


def l2_normalize(x, axis=-1):
    """L2-normalises `x` along `axis` (float32 result, safe at zero)."""
    return tf.math.l2_normalize(tf.cast(x, tf.float32), axis=axis, epsilon=1e-12)


def moco_logits(query, key, queue, temperature):
    """MoCo logits: the positive first, then the queue's negatives.

    Args:
      query: [N, D] float, L2-normalised queries.
      key: [N, D] float, L2-normalised keys; key[i] is the positive of query[i].
      queue: [K, D] float, L2-normalised negatives.
      temperature: python float or scalar tensor T.

    Returns:
      [N, 1 + K] float32 logits `[q·k, q·queue] / T`; the label of every row is 0.
    """
    query = tf.cast(query, tf.float32)
    positive = tf.reduce_sum(query * tf.cast(key, tf.float32), axis=-1, keepdims=True)  # N x 1
    negative = tf.matmul(query, tf.cast(queue, tf.float32), transpose_b=True)  # N x K
    return tf.concat([positive, negative], axis=1) / temperature


def moco_infonce(query, key, queue, temperature):
    """Per-sample MoCo InfoNCE: `CE([q·k, q·queue] / T, label 0)`.

    Args:
      query: [N, D] L2-normalised queries.
      key: [N, D] L2-normalised keys (treated as constants by the caller).
      queue: [K, D] L2-normalised negatives.
      temperature: T.

    Returns:
      [N] float32 per-sample losses.
    """
    logits = moco_logits(query, key, queue, temperature)
    return tf.reduce_logsumexp(logits, axis=1) - logits[:, 0]


def weighted_mean(per_sample, weights):
    """mean_i(weights_i · per_sample_i).

    Args:
      per_sample: [N] per-sample losses.
      weights: [N] or scalar weights (λ_i, 1 − λ_i).

    Returns:
      scalar float32. With a constant weight λ this equals λ · mean(per_sample), the
      per-batch form of the paper's Eq. 4; with per-sample λ_i it is the per-sample form.
    """
    per_sample = tf.cast(per_sample, tf.float32)
    weights = tf.broadcast_to(tf.cast(weights, tf.float32), tf.shape(per_sample))
    return tf.reduce_mean(weights * per_sample)


def mixmask_loss(per_sample_mix, per_sample_switch, weights, switch_weights):
    """The MixMask objective of the paper's Eq. 4/6: λ·L↑ + (1 − λ)·L↓.

    Args:
      per_sample_mix: [N] loss of each mixed query q_mix[i] against its own clean key k_i.
      per_sample_switch: [N] loss of each switch query q_mix[switch_index[i]] against k_i.
      weights: [N] λ_i (fraction of image i's own pixels in its mixture).
      switch_weights: [N] fraction of image i's pixels in its switch mixture (1 − λ per batch).

    Returns:
      (mix_term, switch_term): two scalars whose sum is the MixMask loss.
    """
    return weighted_mean(per_sample_mix, weights), weighted_mean(per_sample_switch, switch_weights)
