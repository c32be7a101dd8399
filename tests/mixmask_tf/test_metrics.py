"""The one top-k accuracy (mixmask_tf/metrics.py) against a NumPy stable-argsort reference."""

import numpy as np
import tensorflow as tf

from mixmask_tf import metrics


def test_top_k_accuracy_matches_argsort_reference():
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(200, 10))
    labels = rng.integers(0, 10, 200)
    for k in (1, 3, 5, 10):
        ref = np.mean([labels[i] in np.argsort(-scores[i], kind="stable")[:k] for i in range(200)]) * 100
        assert metrics.top_k_accuracy(scores, labels, k) == ref
    # Ties are broken by class index (stable sort): in a row of equal scores only class 0 is top-1.
    assert abs(metrics.top_k_accuracy(np.zeros((3, 4)), [0, 1, 3], 1) - 100.0 / 3) < 1e-9
    assert abs(metrics.top_k_accuracy(np.zeros((3, 4)), [0, 1, 3], 2) - 200.0 / 3) < 1e-9
    assert metrics.top_k_accuracy(np.zeros((0, 4)), [], 1) == 0.0


def test_top_k_percent_per_example_and_ties():
    logits = tf.constant([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])
    labels = tf.constant([1, 0, 1, 2])
    # Row 2: classes 0 and 1 tie at the top; top-1 goes to class 0 (in_top_k would count class 1 too).
    np.testing.assert_array_equal(metrics.top_k_percent(logits, labels, 1).numpy(), [100, 100, 0, 0])
    np.testing.assert_array_equal(metrics.top_k_percent(logits, labels, 2).numpy(), [100, 100, 100, 0])
    assert metrics.top_k_percent(logits, labels, 1).dtype == tf.float32
