"""Weighted cosine kNN classification (the InstDisc / MoCo-demo monitor).

Features are L2-normalised; each of the k nearest bank entries votes exp(sim / T) for its
class. Queries are processed in chunks, so memory is O(chunk · bank), never O(N · N).
"""

import numpy as np
import tensorflow as tf

from mixmask_tf import metrics


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
def _chunk_top_k(query, bank, bank_labels, k):
    """The k most similar entries of one bank block: (sim [n, k'], labels [n, k'])."""
    sim = tf.matmul(query, bank, transpose_b=True)  # n x M_block
    top_sim, top_idx = tf.math.top_k(sim, k=tf.minimum(k, tf.shape(bank)[0]))
    return top_sim, tf.gather(bank_labels, top_idx)


@tf.function(reduce_retracing=True)
def _merge_top_k(sim_a, labels_a, sim_b, labels_b, k):
    """Running top-k: the k largest of two candidate sets [n, ka] and [n, kb]."""
    sim = tf.concat([sim_a, sim_b], axis=1)
    labels = tf.concat([labels_a, labels_b], axis=1)
    top_sim, pos = tf.math.top_k(sim, k=tf.minimum(k, tf.shape(sim)[1]))
    return top_sim, tf.gather(labels, pos, batch_dims=1)


@tf.function(reduce_retracing=True)
def _votes(top_sim, top_labels, num_classes, temperature):
    weights = tf.exp(top_sim / temperature)
    return tf.reduce_sum(tf.one_hot(top_labels, num_classes) * weights[..., None], axis=1)  # n x classes


def knn_predict(query, bank, bank_labels, num_classes, k=200, temperature=0.1, chunk_size=512,
                bank_chunk_size=65536):
    """Weighted kNN class scores, blockwise: memory O(chunk_size · (bank_chunk_size + k)).

    Queries are processed `chunk_size` at a time; the bank `bank_chunk_size` entries at a time,
    keeping a running top-k per query, so neither an N × M nor a chunk × M similarity matrix
    is ever held when the bank is large (ImageNet: 1.28 M entries).

    Args:
      query: [N, F] L2-normalised query features.
      bank: [M, F] L2-normalised bank features.
      bank_labels: [M] int labels in [0, num_classes).
      num_classes: number of classes.
      k: neighbours (clipped to M).
      temperature: T of the exp(sim / T) vote.
      chunk_size: queries per block.
      bank_chunk_size: bank entries per block.

    Returns:
      [N, num_classes] float32 vote totals (argmax = prediction).
    """
    if k < 1 or temperature <= 0:
        raise ValueError(f"need k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    bank = np.asarray(bank, np.float32)
    bank_labels = np.asarray(bank_labels, np.int64)
    if bank.shape[0] == 0:
        raise ValueError("the kNN bank is empty")
    if bank.shape[0] != bank_labels.shape[0]:
        raise ValueError(f"{bank.shape[0]} bank features but {bank_labels.shape[0]} labels")
    k = int(min(k, bank.shape[0]))
    blocks = [(tf.constant(bank[s:s + bank_chunk_size]), tf.constant(bank_labels[s:s + bank_chunk_size]))
              for s in range(0, bank.shape[0], bank_chunk_size)]
    out = []
    for start in range(0, len(query), chunk_size):
        chunk = tf.convert_to_tensor(np.asarray(query[start:start + chunk_size], np.float32))
        top_sim, top_labels = _chunk_top_k(chunk, *blocks[0], k)
        for block in blocks[1:]:
            top_sim, top_labels = _merge_top_k(top_sim, top_labels, *_chunk_top_k(chunk, *block, k), k)
        out.append(_votes(top_sim, top_labels, num_classes, float(temperature)).numpy())
    return np.concatenate(out) if out else np.zeros((0, num_classes), np.float32)


def knn_accuracy(train_features, train_labels, test_features, test_labels, num_classes, k=200, temperature=0.1):
    """Top-1 accuracy (in %) of the weighted kNN classifier with the train set as bank."""
    scores = knn_predict(test_features, train_features, train_labels, num_classes, k, temperature)
    return metrics.top_k_accuracy(scores, test_labels, 1)


def knn_evaluate(train_features, train_labels, test_features, test_labels, num_classes, k=200, temperature=0.1,
                 bank_chunk_size=65536):
    """kNN top-1 and top-5 (in %, top-5 only with >= 5 classes) of L2-normalised features."""
    scores = knn_predict(test_features, train_features, train_labels, num_classes, k, temperature,
                         bank_chunk_size=bank_chunk_size)
    result = {"top1": metrics.top_k_accuracy(scores, test_labels, 1)}
    if num_classes >= 5:
        result["top5"] = metrics.top_k_accuracy(scores, test_labels, 5)
    return result


def evaluate_encoder(encoder, train_dataset, test_dataset, num_classes, k=200, temperature=0.1):
    """kNN top-1 (%) of an encoder: bank = train set (test transform), queries = test set."""
    train_f, train_y = extract_features(encoder, train_dataset)
    test_f, test_y = extract_features(encoder, test_dataset)
    return knn_accuracy(train_f, train_y, test_f, test_y, num_classes, k, temperature)
