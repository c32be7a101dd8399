"""Weighted kNN against a direct NumPy implementation."""

import numpy as np

from mixmask_tf import knn


def _np_knn(query, bank, labels, classes, k, t):
    scores = np.zeros((len(query), classes))
    for i, q in enumerate(query):
        sim = bank @ q
        top = np.argsort(-sim)[:k]
        for j in top:
            scores[i, labels[j]] += np.exp(sim[j] / t)
    return scores


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_knn_predict_matches_numpy_with_chunks():
    rng = np.random.default_rng(0)
    bank, query = _unit(rng.normal(size=(300, 6))), _unit(rng.normal(size=(37, 6)))
    labels = rng.integers(0, 5, 300)
    got = knn.knn_predict(query, bank, labels, 5, k=20, temperature=0.1, chunk_size=8)
    np.testing.assert_allclose(got, _np_knn(query, bank, labels, 5, 20, 0.1), rtol=1e-4)


def test_knn_accuracy_separable_clusters_and_k_clipped():
    rng = np.random.default_rng(1)
    centers = _unit(rng.normal(size=(3, 16)) * 5)
    labels = rng.integers(0, 3, 200)
    bank = _unit(centers[labels] + 0.05 * rng.normal(size=(200, 16)))
    test_labels = rng.integers(0, 3, 50)
    test = _unit(centers[test_labels] + 0.05 * rng.normal(size=(50, 16)))
    assert knn.knn_accuracy(bank, labels, test, test_labels, 3, k=5) == 100.0
    # k larger than the bank is clipped to the bank size rather than failing.
    acc = knn.knn_accuracy(bank[:10], labels[:10], test, test_labels, 3, k=200)
    assert 0.0 <= acc <= 100.0


def test_extract_features_normalised():
    import tensorflow as tf

    images = np.random.default_rng(2).normal(size=(10, 4)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((images, np.arange(10))).batch(4)
    feats, labels = knn.extract_features(lambda x, training=False: x * 3.0, ds)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(feats, _unit(images), rtol=1e-5)
    assert labels.tolist() == list(range(10))


def test_knn_bank_blocks_match_numpy_when_blocks_are_smaller_than_k():
    # Running top-k over bank blocks of 7 entries (k = 20 spans several blocks, the last one partial).
    rng = np.random.default_rng(3)
    bank, query = _unit(rng.normal(size=(123, 5))), _unit(rng.normal(size=(19, 5)))
    labels = rng.integers(0, 4, 123)
    got = knn.knn_predict(query, bank, labels, 4, k=20, temperature=0.07, chunk_size=6, bank_chunk_size=7)
    np.testing.assert_allclose(got, _np_knn(query, bank, labels, 4, 20, 0.07), rtol=1e-4)
    whole = knn.knn_predict(query, bank, labels, 4, k=20, temperature=0.07)
    np.testing.assert_allclose(got, whole, rtol=1e-5)



def test_knn_evaluate_reports_top1_and_top5():
    rng = np.random.default_rng(5)
    bank, query = _unit(rng.normal(size=(80, 6))), _unit(rng.normal(size=(30, 6)))
    labels, qlabels = rng.integers(0, 6, 80), rng.integers(0, 6, 30)
    result = knn.knn_evaluate(bank, labels, query, qlabels, 6, k=10, temperature=0.1)
    scores = _np_knn(query, bank, labels, 6, 10, 0.1)
    assert result["top1"] == np.mean(np.argmax(scores, 1) == qlabels) * 100
    assert abs(result["top5"] - np.mean([qlabels[i] in np.argsort(-scores[i], kind="stable")[:5] for i in range(30)]) * 100) < 1e-9
    assert "top5" not in knn.knn_evaluate(bank, labels % 3, query, qlabels % 3, 3, k=10)
