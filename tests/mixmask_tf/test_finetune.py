"""Fine-tuning: label subsets and the two-learning-rate step against NumPy."""

import keras
import numpy as np
import pytest

from mixmask_tf import finetune


def test_balanced_subset_is_balanced_reproducible_nested_and_disjoint():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), [200, 300, 100, 400, 150])
    rng.shuffle(labels)
    held_out = np.arange(0, 1150, 7)
    for fraction in (0.01, 0.1, 1.0):
        subset = finetune.balanced_subset(labels, fraction, seed=3, exclude=held_out)
        assert len(np.intersect1d(subset, held_out)) == 0
        assert len(np.unique(subset)) == len(subset)
        eligible = np.setdiff1d(np.arange(len(labels)), held_out)
        for c in range(5):
            n_c = np.sum(labels[eligible] == c)
            assert np.sum(labels[subset] == c) == max(1, round(fraction * n_c))
        np.testing.assert_array_equal(subset, finetune.balanced_subset(labels, fraction, seed=3, exclude=held_out))
    one, ten = (finetune.balanced_subset(labels, f, seed=3) for f in (0.01, 0.1))
    assert set(one) <= set(ten)
    assert not np.array_equal(ten, finetune.balanced_subset(labels, 0.1, seed=4))
    assert len(finetune.balanced_subset(labels, 1.0, seed=0)) == len(labels)
    with pytest.raises(ValueError, match="fraction"):
        finetune.balanced_subset(labels, 0.0, seed=0)
    with pytest.raises(ValueError, match="unlabeled"):
        finetune.balanced_subset(np.full(10, -1), 0.5, seed=0)


def test_paper_learning_rates():
    assert [finetune.paper_classifier_lr(f) for f in (0.01, 0.1, 1.0)] == [1.0, 0.1, 0.01]
    assert finetune.PAPER_BACKBONE_LR == 0.001 and finetune.PAPER_EPOCHS == 20


def test_two_learning_rate_step_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 5)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    inp = keras.Input((5,))
    backbone = keras.Model(inp, keras.layers.Dense(4, name="feat")(inp))
    model = finetune.FineTuner(backbone, 3)
    w1, b1 = (v.numpy().astype(np.float64) for v in backbone.weights)
    w2, b2 = (v.numpy().astype(np.float64) for v in model.head.weights)
    lr_b, lr_h = 0.05, 0.7
    model.compile(backbone_optimizer=keras.optimizers.SGD(lr_b), head_optimizer=keras.optimizers.SGD(lr_h))
    logs = model.train_on_batch(x, y, return_dict=True)
    # NumPy: f = x W1 + b1; logits = f W2 + b2; mean softmax cross-entropy.
    f = x @ w1 + b1
    logits = f @ w2 + b2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(8), y]))
    d = p.copy()
    d[np.arange(8), y] -= 1
    d /= 8
    df = d @ w2.T
    np.testing.assert_allclose(logs["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(model.head.weights[0].numpy(), w2 - lr_h * f.T @ d, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.head.weights[1].numpy(), b2 - lr_h * d.sum(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(backbone.weights[0].numpy(), w1 - lr_b * x.T @ df, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(backbone.weights[1].numpy(), b1 - lr_b * df.sum(0), rtol=1e-4, atol=1e-6)


def test_evaluate_scores_top1_top5():
    scores = np.array([[0.1, 0.9, 0, 0, 0, 0], [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]])
    assert finetune.evaluate_scores(scores, [1, 5]) == {"top1": 50.0, "top5": 50.0}
    assert finetune.evaluate_scores(scores, [0, 4]) == {"top1": 0.0, "top5": 100.0}


@pytest.mark.slow
def test_two_replicas_equal_one_device(two_cpu_strategy):
    """FineTuner under MirroredStrategy (2 logical CPUs, synchronized BatchNorm) on the same global batch
    takes the same steps as on one device (the weights are copied: initial draws differ under a scope)."""
    import tensorflow as tf

    from conftest import assert_replicas_agree
    from mixmask_tf import backbones

    rng = np.random.default_rng(0)
    images = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 3, 32)

    def build():
        model = finetune.FineTuner(backbones.small_convnet((8, 8, 3), width=4), 3)
        model.compile(backbone_optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                      head_optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
        return model

    single = build()
    with two_cpu_strategy.scope():
        mirrored = build()
    mirrored.set_weights(single.get_weights())
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)  # 4 steps of a global batch of 8
    single_loss = single.fit(dataset, verbose=0).history["loss"]
    mirrored_loss = mirrored.fit(dataset, verbose=0).history["loss"]
    np.testing.assert_allclose(mirrored_loss, single_loss, rtol=1e-4)
    for w, a, b in zip(single.weights, single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=2e-5, err_msg=w.path)
    assert_replicas_agree(mirrored.weights)
