"""Loss functions: pure TF, no project imports.

Shapes follow the MoCo code's notes: N queries of dimension D, a queue of K negatives.
Every function returns a *per-sample* loss vector so that a caller can weight each sample
(the λ-weighted MixMask terms, per-sample masks) before averaging.
"""

import math
import numbers

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


def moco_infonce(query, key, queue, temperature, extra_logits=None):
    """Per-sample MoCo InfoNCE: `CE([q·k, q·queue] / T, label 0)`.

    `extra_logits` [N, E] (already scaled, e.g. a hard negative's α·q·n / T) are appended to each
    query's logits as E more negatives (None: none).

    Args:
      query: [N, D] L2-normalised queries.
      key: [N, D] L2-normalised keys (treated as constants by the caller).
      queue: [K, D] L2-normalised negatives.
      temperature: T.

    Returns:
      [N] float32 per-sample losses.
    """
    logits = moco_logits(query, key, queue, temperature)
    if extra_logits is not None:
        logits = tf.concat([logits, tf.cast(extra_logits, tf.float32)], axis=1)
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


def nt_xent_logits(anchors, positives_all, anchors_all, offset, temperature):
    """NT-Xent logits of local anchors against the global batch (SimCLR, Chen et al. 2020).

    For anchor i (global index offset + i) the candidates are every global view-b embedding
    (the positive at column offset + i) and every global view-a embedding except itself.

    Args:
      anchors: [n, D] L2-normalised local anchors (view a).
      positives_all: [N, D] L2-normalised view-b embeddings of the global batch.
      anchors_all: [N, D] L2-normalised view-a embeddings of the global batch (may be the
        anchors themselves when n == N).
      offset: int scalar, global index of the first local anchor (replica_id · n).
      temperature: T.

    Returns:
      (logits [n, 2N] float32, labels [n] int32): the positive of row i is column offset + i.
    """
    anchors = tf.cast(anchors, tf.float32)
    n = tf.shape(anchors)[0]
    big_n = tf.shape(positives_all)[0]
    labels = tf.range(n, dtype=tf.int32) + tf.cast(offset, tf.int32)
    logits_ab = tf.matmul(anchors, tf.cast(positives_all, tf.float32), transpose_b=True) / temperature
    logits_aa = tf.matmul(anchors, tf.cast(anchors_all, tf.float32), transpose_b=True) / temperature
    logits_aa -= tf.one_hot(labels, big_n) * 1e9  # an anchor is not its own negative
    return tf.concat([logits_ab, logits_aa], axis=1), labels


def nt_xent(anchors, positives_all, anchors_all, offset, temperature, extra_logits=None):
    """Per-anchor NT-Xent loss [n] (see `nt_xent_logits`): cross-entropy with label offset + i.

    `extra_logits` [n, E] (already scaled) are appended to each anchor's logits as E more
    negatives (None: none).
    """
    logits, labels = nt_xent_logits(anchors, positives_all, anchors_all, offset, temperature)
    if extra_logits is not None:
        logits = tf.concat([logits, tf.cast(extra_logits, tf.float32)], axis=1)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def info_nce_in_batch(query, keys_all, offset, temperature):
    """Per-sample InfoNCE of queries against the global keys, positive = own index.

    The SimCLR branch term [ours]: q_mix[i] against z2[i], the other gathered z2 as negatives.

    Args:
      query: [n, D] L2-normalised queries; keys_all: [N, D] L2-normalised global keys;
      offset: global index of query 0; temperature: T.

    Returns:
      [n] float32 losses.
    """
    logits = tf.matmul(tf.cast(query, tf.float32), tf.cast(keys_all, tf.float32), transpose_b=True) / temperature
    labels = tf.range(tf.shape(query)[0], dtype=tf.int32) + tf.cast(offset, tf.int32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def byol_regression(prediction, target):
    """Per-sample BYOL loss 2 − 2·cos(p, z) = ‖p̂ − ẑ‖² (Grill et al. 2020).

    Args:
      prediction: [n, D] online predictions (any norm).
      target: [n, D] target projections (any norm; the caller stops their gradient).

    Returns:
      [n] float32.
    """
    p = l2_normalize(prediction)
    z = l2_normalize(target)
    return 2.0 - 2.0 * tf.reduce_sum(p * z, axis=-1)


def negative_cosine(prediction, target):
    """Per-sample SimSiam loss −cos(p, z) (Chen & He 2021); the caller stops z's gradient."""
    return -tf.reduce_sum(l2_normalize(prediction) * l2_normalize(target), axis=-1)


def hard_negative_logits(query, negative, temperature, alpha):
    """Logit of each query's own hard negative: ``alpha * (q . n) / T`` (``builder.py`` 156, 163).

    The authors' ``einsum('nc,nc->n', q, t) * alpha``, divided by ``T`` with the other logits: one
    hard negative per query, to append as one more column of its logits (e.g. ``extra_logits`` of
    :func:`moco_infonce`). ``q`` and ``n`` are L2-normalised here
    (``builder.py`` 127, 146); already normalised inputs pass unchanged up to rounding. The paper
    uses ``alpha = 2`` (the code's default is 1).

    Args:
      query: float [N, D], the query embeddings.
      negative: float [N, D], the hard negatives' embeddings (momentum encoder, no gradient is
        the caller's choice).
      temperature: Python float > 0 or scalar tensor.
      alpha: Python float or scalar tensor (the "penalty ratio").

    Returns:
      float32 [N].

    Raises:
      ValueError: a Python temperature that is not a finite number > 0.
    """
    python_number = isinstance(temperature, numbers.Real) and not isinstance(temperature, bool)
    if python_number and (not math.isfinite(float(temperature)) or float(temperature) <= 0.0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}.")
    q = l2_normalize(query)
    n = l2_normalize(negative)
    return tf.cast(alpha, tf.float32) * tf.reduce_sum(q * n, axis=-1) / tf.cast(temperature, tf.float32)
