"""Top-k accuracy, the project's one implementation: the probe's running metrics during
pretraining (`models`), and the kNN, linear-probe and fine-tuning evaluations.

A tie at the k-th place goes to the lower class index (``tf.math.top_k`` is stable), so a class
that merely ties with the label (e.g. two classes with no kNN votes) never counts as a hit;
``tf.math.in_top_k`` would count every tied class as a hit.
"""

import numpy as np
import tensorflow as tf

__all__ = ["top_k_percent", "top_k_accuracy"]


def top_k_percent(logits, labels, k):
    """Per-example top-k hit in percent, float32 [N] of 0 or 100 (mean it for the accuracy).

    Args:
      logits: float [N, K]; labels: int [N]; k: python int <= K.
    """
    _, top = tf.math.top_k(logits, k=k)
    hit = tf.reduce_any(tf.equal(top, tf.cast(labels, top.dtype)[:, None]), axis=1)
    return tf.cast(hit, tf.float32) * 100.0


def top_k_accuracy(scores, labels, k=1):
    """Top-k accuracy in % of a whole set (eagerly, on NumPy arrays or tensors).

    Args:
      scores: [N, C] class scores (logits, probabilities or kNN votes).
      labels: [N] int labels.
      k: k (clipped to C).

    Returns:
      float, in [0, 100] (0 for N = 0).
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if scores.shape[0] == 0:
        return 0.0
    hits = top_k_percent(scores, labels, min(int(k), scores.shape[1])).numpy() > 0
    return float(np.mean(hits) * 100.0)
