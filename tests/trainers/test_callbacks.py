"""Callbacks of the pretraining CLI."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import backbones, checkpoint
from mixmask_tf.models import MoCo
from trainers import callbacks


def test_truncate_metrics_log_drops_repeated_epochs(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"epoch": e, "loss": 1.0}) + "\n" for e in (1, 2, 3)))
    callbacks.truncate_metrics_log(str(tmp_path), 2)
    assert [json.loads(line)["epoch"] for line in path.read_text().splitlines()] == [1, 2]
    callbacks.truncate_metrics_log(str(tmp_path / "missing"), 1)  # no file: nothing to do


class _DivergingMoCo(MoCo):
    """MoCo whose loss becomes NaN from step 4 on (the second epoch of 4 steps)."""

    def views_forward(self, views, training, negatives=()):
        loss, targets, extras, stats = super().views_forward(views, training, negatives)
        poison = tf.where(self.optimizer.iterations >= 4, float("nan"), 0.0)
        return loss + poison, targets, extras, stats


@pytest.mark.parametrize("steps_per_execution", [1, 2])
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, steps_per_execution):
    keras.utils.set_random_seed(0)
    model = _DivergingMoCo(backbones.small_convnet((8, 8, 1), width=2), embedding_dim=4, queue_size=16)
    model.compile(optimizer=keras.optimizers.SGD(0.1), steps_per_execution=steps_per_execution)
    data = np.random.default_rng(0).normal(size=(16, 2, 8, 8, 1)).astype(np.float32)
    saver = checkpoint.TrainingCheckpoint(model, str(tmp_path / "checkpoints"))
    ckpt = callbacks.Checkpoint(saver, str(tmp_path), steps_per_epoch=4)
    history = model.fit(tf.data.Dataset.from_tensor_slices(data).batch(4), epochs=3, verbose=0, callbacks=[ckpt])
    assert len(history.history["loss"]) == 2 and math.isnan(history.history["loss"][1])
    assert model.nan_stopped
    assert [p.rsplit("/", 1)[1] for p in saver.checkpoints()] == ["ckpt-4"]  # epoch 1 only
    # The kept checkpoint holds finite weights (a NaN state is refused: tests/mixmask_tf/test_checkpoint.py).
    _, arrays, epoch, step = checkpoint.read_checkpoint(saver.latest())
    assert (epoch, step) == (1, 0) and all(np.all(np.isfinite(a)) for a in arrays if a.dtype.kind == "f")


def test_knn_monitor_scores_the_head_and_the_log_says_so(tmp_path, monkeypatch):
    from mixmask_tf import knn

    keras.utils.set_random_seed(0)
    model = MoCo(backbones.small_convnet((8, 8, 1), width=2), embedding_dim=4, queue_size=16)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    rng = np.random.default_rng(0)
    views = rng.normal(size=(16, 2, 8, 8, 1)).astype(np.float32)
    labeled = tf.data.Dataset.from_tensor_slices((rng.normal(size=(24, 8, 8, 1)).astype(np.float32),
                                                  rng.integers(0, 3, 24))).batch(8)
    scored = []
    evaluate = knn.evaluate_encoder
    monitor_evaluate = lambda encoder, *args: scored.append(encoder) or evaluate(encoder, *args)  # noqa: E731
    monitor = callbacks.KnnMonitor(labeled, labeled, 3, every=1, epochs=2, k=5, feature="head")
    log = callbacks.MetricsLog(str(tmp_path), knn_feature="head")
    monkeypatch.setattr(knn, "evaluate_encoder", monitor_evaluate)
    model.fit(tf.data.Dataset.from_tensor_slices(views).batch(8), epochs=2, verbose=0, callbacks=[monitor, log])
    monkeypatch.undo()
    # Each epoch the monitor scored the query encoder (backbone + its 4-d head), not the backbone.
    assert scored == [model.query_encoder, model.query_encoder]
    assert knn.extract_features(model.query_encoder, labeled)[0].shape == (24, 4)
    assert monitor.last == knn.evaluate_encoder(model.query_encoder, labeled, labeled, 3, k=5)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["knn_feature"]) for r in rows] == [(1, "head"), (2, "head")]
    assert rows[-1]["knn_top1"] == pytest.approx(monitor.last)
    # The default is the backbone; a row without a kNN result carries no knn_feature.
    assert callbacks.KnnMonitor(labeled, labeled, 3, every=1, epochs=2).feature == "backbone"
    plain = callbacks.MetricsLog(str(tmp_path / "plain"), knn_feature="head")
    model.fit(tf.data.Dataset.from_tensor_slices(views).batch(8), epochs=1, verbose=0, callbacks=[plain])
    assert "knn_feature" not in json.loads((tmp_path / "plain" / "metrics.jsonl").read_text())
    with pytest.raises(ValueError, match="feature must be one of backbone, head"):
        callbacks.KnnMonitor(labeled, labeled, 3, every=1, epochs=2, feature="predictor")
