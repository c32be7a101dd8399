"""The online linear probe: a NumPy reference step, a pretraining left untouched, validation,
checkpoints and the CLI flag."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_replicas_agree, run_pretrain
from mixmask_tf import augment, backbones, branches, checkpoint, data
from mixmask_tf.models import build_trainer

SHAPE = (16, 16, 1)
CLASSES = 4
INFO = data.synthetic_info(SHAPE, CLASSES)


def _trainer(probe_classes=0, probe_optimizer=None, branch="mixmask"):
    """MoCo v2 (+ MixMask) on the tiny ConvNet, every weight a function of the seed."""
    keras.utils.set_random_seed(0)
    trainer = build_trainer("mocov2", backbones.small_convnet(SHAPE, width=4),
                            branch=branches.build_branch(branch, **({"grid_size": 4} if branch == "mixmask" else {})),
                            seed=0, queue_size=64, embedding_dim=16, probe_classes=probe_classes,
                            probe_optimizer=probe_optimizer)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    return trainer


def _train_source(n=256):
    images, labels = data.synthetic_dataset(n, SHAPE, CLASSES, seed=0)
    return data.ArraySource(images, labels, INFO)


def _test_dataset(n=128):
    images, labels = data.synthetic_dataset(n, SHAPE, CLASSES, seed=1)
    return data.make_eval_dataset(images, labels, 64, lambda im: augment.eval_preprocess(im, INFO.mean, INFO.std))


def _pretrain_dataset(with_labels):
    views = augment.TwoViewAugment.from_preset("cifar", SHAPE[:2], SHAPE[2], INFO.mean, INFO.std)
    return data.make_pretrain_dataset(_train_source(), 32, views, seed=0, with_labels=with_labels)


def _softmax_ce_sgd_step(features, labels, kernel, bias, lr):
    """NumPy reference: one SGD step on mean softmax cross-entropy of features @ kernel + bias."""
    logits = features @ kernel + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    g = (p - np.eye(kernel.shape[1])[labels]) / len(labels)  # dL/dlogits, N x K
    return kernel - lr * features.T @ g, bias - lr * g.sum(axis=0)


@pytest.mark.parametrize("replicas", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_probe_step_matches_numpy_softmax_ce_sgd(replicas, two_cpu_strategy):
    """One probe step (1 device, or the same global batch split over 2 replicas) = NumPy SGD."""
    rng = np.random.default_rng(0)
    views = rng.normal(size=(8, 2) + SHAPE).astype(np.float32)
    labels = rng.integers(0, CLASSES, size=8).astype(np.int64)
    lr = 0.5
    strategy = two_cpu_strategy if replicas == 2 else tf.distribute.get_strategy()
    with strategy.scope():
        model = _trainer(CLASSES, keras.optimizers.SGD(lr), branch="none")
    kernel = rng.normal(size=model.probe.kernel.shape).astype(np.float32)
    bias = rng.normal(size=model.probe.bias.shape).astype(np.float32)
    model.probe.set_weights([kernel, bias])
    # The probe trains on inference-mode features of the backbone before this step's update.
    features = model.backbone(views[:, 0], training=False).numpy().astype(np.float64)
    history = model.fit(tf.data.Dataset.from_tensors((views, labels)), verbose=0)
    want_kernel, want_bias = _softmax_ce_sgd_step(features, labels, kernel, bias, lr)
    np.testing.assert_allclose(model.probe.kernel.numpy(), want_kernel, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.probe.bias.numpy(), want_bias, rtol=1e-4, atol=1e-5)
    logits = features @ kernel + bias
    want_top1 = 100.0 * np.mean(logits.argmax(axis=1) == labels)
    np.testing.assert_allclose(history.history["probe_top1"][0], want_top1, atol=1e-3)
    assert int(model.probe_optimizer.iterations.numpy()) == 1 and int(model.optimizer.iterations.numpy()) == 1
    if replicas == 2:
        assert_replicas_agree(model.probe.weights)


def test_evaluate_reports_top1_and_top5_over_partial_batches():
    model = _trainer(probe_classes=6, branch="none")
    rng = np.random.default_rng(1)
    images = rng.normal(size=(10,) + SHAPE).astype(np.float32)
    labels = rng.integers(0, 6, size=10).astype(np.int64)
    model.probe.set_weights([rng.normal(size=(16, 6)).astype(np.float32), rng.normal(size=6).astype(np.float32)])
    logits = model.backbone(images, training=False).numpy() @ model.probe.kernel.numpy() + model.probe.bias.numpy()
    ranks = (logits > logits[np.arange(10), labels][:, None]).sum(axis=1)  # classes scored above the label
    shifted = logits - logits.max(axis=1, keepdims=True)
    ce = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(10), labels]
    got = model.evaluate(tf.data.Dataset.from_tensor_slices((images, labels)).batch(4), verbose=0,
                         return_dict=True)  # batches of 4, 4, 2
    assert set(got) == {"probe_loss", "probe_top1", "probe_top5"}
    np.testing.assert_allclose(got["probe_top1"], 100 * np.mean(ranks < 1), atol=1e-3)
    np.testing.assert_allclose(got["probe_top5"], 100 * np.mean(ranks < 5), atol=1e-3)
    np.testing.assert_allclose(got["probe_loss"], ce.mean(), rtol=1e-4)
    with pytest.raises(ValueError, match="no labels"):
        model.test_step(images)


@pytest.fixture(scope="module")
def trained():
    """The same pretraining (2 epochs of 8 steps) without and with a probe, validated."""
    plain = _trainer()
    plain_history = plain.fit(_pretrain_dataset(with_labels=False), epochs=2, verbose=0).history
    probed = _trainer(CLASSES, keras.optimizers.Adam(1e-2))
    before = probed.evaluate(_test_dataset(), verbose=0, return_dict=True)
    history = probed.fit(_pretrain_dataset(with_labels=True), epochs=2, verbose=0, validation_data=_test_dataset())
    return plain, probed, before, history.history, plain_history


@pytest.mark.slow
def test_probe_leaves_pretraining_exactly_unchanged(trained):
    plain, probed, _, history, plain_history = trained
    assert int(plain.optimizer.iterations.numpy()) == int(probed.optimizer.iterations.numpy()) == 16
    assert int(probed.probe_optimizer.iterations.numpy()) == 16
    for a, b in zip(plain.backbone.weights, probed.backbone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # Every other weight (head, key encoder, queue) and every main optimizer variable too.
    probe_ids = {id(v) for v in probed.probe.weights}
    rest = [v for v in probed.weights if id(v) not in probe_ids]
    assert len(rest) == len(plain.weights)
    for a, b in zip(plain.weights + plain.optimizer.variables, rest + probed.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert history["loss"] == plain_history["loss"]
    assert set(history) == set(plain_history) | {"probe_loss", "probe_top1", "val_probe_loss", "val_probe_top1"}


def test_probe_learns_separable_classes(trained):
    _, _, before, history, _ = trained
    # 4 balanced classes (chance 25%); the untrained probe scored 34%, after 16 steps 48%.
    assert history["val_probe_top1"][-1] > max(40.0, before["probe_top1"] + 10), (before, history["val_probe_top1"])
    assert history["probe_loss"][-1] < history["probe_loss"][0]


def test_checkpoint_round_trip_includes_the_probe(trained, tmp_path):
    _, probed, _, _, _ = trained
    path = checkpoint.TrainingCheckpoint(probed, str(tmp_path)).save(2)
    names = checkpoint.read_checkpoint(path)[0]
    assert names[-8:-6] == ["probe/kernel", "probe/bias"]
    assert "probe_optimizer/iteration" in names and "probe_optimizer/probe_kernel_velocity" in names
    fresh = _trainer(CLASSES, keras.optimizers.Adam(1e-2))
    assert not np.array_equal(fresh.probe.kernel.numpy(), probed.probe.kernel.numpy())
    assert checkpoint.TrainingCheckpoint(fresh, str(tmp_path)).restore(path) == (2, 0)
    variables, _ = checkpoint.state_variables(probed)
    restored, _ = checkpoint.state_variables(fresh)
    for a, b in zip(variables, restored):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert int(fresh.probe_optimizer.iterations.numpy()) == 16
    # Without a probe the checkpoint holds exactly what it held before probes existed.
    plain = _trainer()
    _, plain_names = checkpoint.state_variables(plain)
    assert len(plain_names) == len(plain.weights) + len(plain.optimizer.variables)
    assert not any(n.startswith("probe") for n in plain_names)
    with pytest.raises(checkpoint.CheckpointMismatchError, match="probe"):
        checkpoint.TrainingCheckpoint(plain, str(tmp_path)).restore(path)


def _identity_views(image, seed):
    """Two un-augmented copies, float32 [2, H, W, C] (so a view shows which image it came from)."""
    del seed
    return tf.stack([tf.cast(image, tf.float32)] * 2)


def test_make_pretrain_dataset_with_labels():
    source = _train_source(64)
    plain = list(data.make_pretrain_dataset(source, 16, _identity_views, seed=3, start_epoch=0).take(4))
    labeled = list(data.make_pretrain_dataset(source, 16, _identity_views, seed=3, start_epoch=0,
                                              with_labels=True).take(4))
    flat = source.images.reshape(64, -1).astype(np.float32)
    for views, (batch, labels) in zip(plain, labeled):
        np.testing.assert_array_equal(batch.numpy(), views.numpy())  # the same views as without labels
        assert labels.dtype == tf.int64 and labels.shape == (16,)
        # Every label is its own image's label.
        index = [int(np.flatnonzero((flat == v.reshape(-1)).all(axis=1))[0]) for v in batch.numpy()[:, 0]]
        np.testing.assert_array_equal(labels.numpy(), source.labels[index])
    with pytest.raises(ValueError, match="labeled source"):
        data.make_pretrain_dataset(source.images, 16, _identity_views, seed=0, with_labels=True)


def test_build_trainer_probe_arguments():
    backbone = backbones.small_convnet(SHAPE, width=4)
    with pytest.raises(ValueError, match="probe_classes"):
        build_trainer("simclr", backbone, probe_optimizer=keras.optimizers.Adam())
    model = build_trainer("simsiam", backbone, probe_classes=3)
    assert model.probe.kernel.shape == (16, 3) and isinstance(model.probe_optimizer, keras.optimizers.Adam)
    assert model.get_config()["probe_classes"] == 3


CLI_ARGS = ["--dataset=synthetic", "--image_size=16", "--train_limit=256", "--test_limit=64", "--width=4",
            "--batch_size=32", "--queue_size=64", "--embedding_dim=16", "--steps_per_epoch=4", "--knn_every=1",
            "--knn_k=10", "--random_init_knn=false", "--export=false", "--tensorboard=false", "--plots=false",
            "--augment=cifar", "--verbose=0", "--online_probe", "--probe_learning_rate=0.01"]


@pytest.mark.slow
def test_cli_online_probe_logs_and_checkpoints(tmp_path):
    model_dir = str(tmp_path / "run")
    run = run_pretrain(*CLI_ARGS, f"--model_dir={model_dir}", "--epochs=2")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("val probe") == 2 and "online linear probe top-1" in run.stdout
    rows = [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl"))]
    assert [r["epoch"] for r in rows] == [1, 2]
    for row in rows:
        assert 0 <= row["probe_top1"] <= 100 and 0 <= row["val_probe_top1"] <= 100 and row["probe_loss"] > 0
    results = json.load(open(os.path.join(model_dir, "results.json")))
    assert results["probe_top1"] == pytest.approx(rows[-1]["val_probe_top1"])
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    names, _, epoch, _ = checkpoint.read_checkpoint(latest)
    assert epoch == 2
    assert "probe/kernel" in names and "probe_optimizer/iteration" in names


def test_cli_online_probe_needs_labels(tmp_path):
    root = tmp_path / "unlabeled" / "train"
    root.mkdir(parents=True)
    for i in range(4):
        tf.io.write_file(str(root / f"{i}.png"), tf.io.encode_png(np.full((8, 8, 3), 40 * i, np.uint8)))
    result = run_pretrain("--dataset=folder", f"--data_dir={tmp_path / 'unlabeled'}", "--image_size=8",
                          "--batch_size=2", f"--model_dir={tmp_path / 'run'}", "--online_probe")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--online_probe needs a labeled train split" in result.stderr and "Traceback" not in result.stderr
