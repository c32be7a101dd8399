"""Linear probe against an independent NumPy replay of torch-style SGD softmax regression."""

import numpy as np
import pytest

from mixmask_tf import data, encoders, linear_probe
from np_reference import np_softmax_regression


@pytest.mark.parametrize("name", ["fast", "moco"])
def test_training_matches_numpy_replay(name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 6)).astype(np.float32) * 3 + 1
    y = rng.integers(0, 4, 70)
    # Small enough to replay: the real protocols' optimizer settings, 5 epochs, odd batch (last one partial).
    config = linear_probe.protocol(name, epochs=5, batch_size=16, milestones=(2, 4),
                                   learning_rate=0.5 if name == "moco" else None)
    classifier = linear_probe.train_on_features(x, y, 4, config, seed=3)
    w, b, logits = np_softmax_regression(x.astype(np.float64), y, 4, config, seed=3)
    np.testing.assert_allclose(classifier.kernel.numpy(), w, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(classifier.bias.numpy(), b, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(classifier.predict(x), logits, rtol=2e-4, atol=2e-4)


def test_evaluate_top1_top5_and_learns_separable_features():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(6, 8)) * 4
    y = rng.integers(0, 6, 300)
    x = centers[y] + rng.normal(size=(300, 8))
    classifier = linear_probe.train_on_features(x[:200], y[:200], 6, linear_probe.protocol("fast", epochs=20))
    result = linear_probe.evaluate(classifier, x[200:], y[200:])
    scores = classifier.predict(x[200:])
    assert result["top1"] == pytest.approx(np.mean(scores.argmax(1) == y[200:]) * 100)
    assert result["top1"] > 90 and result["top5"] >= result["top1"]


def test_protocols_and_bad_input():
    moco = linear_probe.PROTOCOLS["moco"]
    assert (moco.learning_rate, moco.epochs, tuple(moco.milestones), moco.weight_decay, moco.augment) == \
        (30.0, 100, (60, 80), 0.0, True)
    assert [moco.lr_at(e) for e in (0, 59, 60, 80, 99)] == pytest.approx([30, 30, 3, 0.3, 0.3])
    with pytest.raises(ValueError, match="unknown linear-probe protocol"):
        linear_probe.protocol("imagenet")
    with pytest.raises(ValueError, match="labels must lie"):
        linear_probe.train_on_features(np.zeros((4, 2)), [0, 1, 2, 5], 3)
    with pytest.raises(ValueError, match="crop_scale"):
        linear_probe.protocol("moco", crop_scale=(0.5, 0.2))
    # The same seed gives the same classifier; another seed another one.
    x, y = np.random.default_rng(2).normal(size=(40, 3)), np.arange(40) % 2
    cfg = linear_probe.protocol("fast", epochs=2)
    a, b, c = (linear_probe.train_on_features(x, y, 2, cfg, seed=s).kernel.numpy() for s in (0, 0, 1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.slow
def test_augmented_probe_runs_encoder_every_step():
    import keras

    from mixmask_tf import backbones

    keras.utils.set_random_seed(0)
    images, labels = data.synthetic_dataset(64, (16, 16, 1), num_classes=2, seed=0)
    encoder = encoders.from_keras(backbones.small_convnet((16, 16, 1), width=4), (0.5,), (0.25,))
    calls = []
    original = encoder._fn
    encoder._fn = lambda x: (calls.append(int(x.shape[0])), original(x))[1]
    config = linear_probe.protocol("moco", epochs=2, batch_size=24, learning_rate=0.1)
    classifier = linear_probe.train_augmented(encoder, data.ArraySource(images, labels), 2, config, seed=0)
    assert calls == [24, 24, 16] * 2  # every batch of every epoch re-encoded (augmented anew)
    assert np.isfinite(classifier.kernel.numpy()).all()
    with pytest.raises(ValueError, match="standardize"):
        linear_probe.train_augmented(encoder, data.ArraySource(images, labels), 2, linear_probe.protocol("fast"))
