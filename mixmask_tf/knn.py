"""Weighted cosine kNN classification (the InstDisc / MoCo-demo monitor).

Features are L2-normalised; each of the k nearest bank entries votes exp(sim / T) for its
class. Queries are processed in chunks, so memory is O(chunk · bank), never O(N · N).
"""

import numpy as np
import tensorflow as tf


def extract_features(encoder, dataset):
    """Runs `encoder` (inference mode) over a dataset of (images, labels) batches.

    Args:
      encoder: callable images [B, H, W, C] -> features [B, F] (e.g. a backbone).
      dataset: tf.data.Dataset of (float images, int labels).

    Returns:
      (features float32 [N, F] L2-normalised, labels int64 [N]) as numpy arrays.
    """

    feats, labels = [], []
    for images, y in dataset:
        feats.append(_embed(encoder, images).numpy())
        labels.append(np.asarray(y))
    return np.concatenate(feats), np.concatenate(labels).astype(np.int64)


@tf.function(reduce_retracing=True)
def _embed(encoder, images):
    # One trace per encoder object (and one more for a smaller last batch).
    return tf.math.l2_normalize(tf.cast(encoder(images, training=False), tf.float32), axis=1)


@tf.function(reduce_retracing=True)
def _knn_votes(query, bank, bank_labels, num_classes, k, temperature):
    sim = tf.matmul(query, bank, transpose_b=True)  # chunk x M
    top_sim, top_idx = tf.math.top_k(sim, k=k)  # chunk x k
    top_labels = tf.gather(bank_labels, top_idx)  # chunk x k
    weights = tf.exp(top_sim / temperature)
    return tf.reduce_sum(tf.one_hot(top_labels, num_classes) * weights[..., None], axis=1)  # chunk x classes


def knn_predict(query, bank, bank_labels, num_classes, k=200, temperature=0.1, chunk_size=512):
    """Weighted kNN class scores.

    Args:
      query: [N, F] L2-normalised query features.
      bank: [M, F] L2-normalised bank features.
      bank_labels: [M] int labels in [0, num_classes).
      num_classes: number of classes.
      k: neighbours (clipped to M).
      temperature: T of the exp(sim / T) vote.
      chunk_size: queries per similarity block.

    Returns:
      [N, num_classes] float32 vote totals (argmax = prediction).
    """
    bank = tf.convert_to_tensor(bank, tf.float32)
    bank_labels = tf.convert_to_tensor(bank_labels, tf.int64)
    k = int(min(k, bank.shape[0]))
    out = []
    for start in range(0, len(query), chunk_size):
        chunk = tf.convert_to_tensor(query[start:start + chunk_size], tf.float32)
        out.append(_knn_votes(chunk, bank, bank_labels, num_classes, k, float(temperature)).numpy())
    return np.concatenate(out) if out else np.zeros((0, num_classes), np.float32)


def knn_accuracy(train_features, train_labels, test_features, test_labels, num_classes, k=200, temperature=0.1):
    """Top-1 accuracy (in %) of the weighted kNN classifier with the train set as bank."""
    scores = knn_predict(test_features, train_features, train_labels, num_classes, k, temperature)
    return float(np.mean(np.argmax(scores, axis=1) == np.asarray(test_labels)) * 100.0)


def evaluate_encoder(encoder, train_dataset, test_dataset, num_classes, k=200, temperature=0.1):
    """kNN top-1 (%) of an encoder: bank = train set (test transform), queries = test set."""
    train_f, train_y = extract_features(encoder, train_dataset)
    test_f, test_y = extract_features(encoder, test_dataset)
    return knn_accuracy(train_f, train_y, test_f, test_y, num_classes, k, temperature)
