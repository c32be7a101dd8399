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

    def clean_forward(self, x1, x2, training):
        loss, targets, extras = super().clean_forward(x1, x2, training)
        poison = tf.where(self.optimizer.iterations >= 4, float("nan"), 0.0)
        return loss + poison, targets, extras


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
