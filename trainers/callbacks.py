"""Keras callbacks of the pretraining CLI: checkpoints, kNN monitor, metrics log."""

import json
import math
import os
import time

import keras
from absl import logging

from mixmask_tf import checkpoint
from mixmask_tf import knn


class Checkpoint(keras.callbacks.Callback):
    """After every epoch: the training state (atomic .npz) and the backbone (.keras).

    A non-finite loss stops training and is never checkpointed, so the last good
    checkpoint survives.
    """

    def __init__(self, model_dir, keep=3):
        super().__init__()
        self.model_dir = model_dir
        self.folder = os.path.join(model_dir, "checkpoints")
        self.keep = keep

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            logging.error("non-finite loss %s at batch %d: stopping without checkpointing", loss, batch)
            self.model.stop_training = True
            self.model.nan_stopped = True

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if getattr(self.model, "nan_stopped", False) or (loss is not None and not math.isfinite(float(loss))):
            return
        path = checkpoint.save(self.model, self.folder, epoch + 1, keep=self.keep)
        checkpoint.atomic_save_keras(self.model.backbone, os.path.join(self.model_dir, "backbone.keras"))
        logging.info("saved %s", path)


class KnnMonitor(keras.callbacks.Callback):
    """Weighted kNN top-1 of the backbone every `every` epochs (and after the last one)."""

    def __init__(self, train_dataset, test_dataset, num_classes, every, epochs, k=200, temperature=0.1):
        super().__init__()
        self.train_dataset = train_dataset
        self.test_dataset = test_dataset
        self.num_classes = num_classes
        self.every = every
        self.epochs = epochs
        self.k = k
        self.temperature = temperature
        self.last = None

    def evaluate(self):
        return knn.evaluate_encoder(self.model.backbone, self.train_dataset, self.test_dataset,
                                    self.num_classes, self.k, self.temperature)

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if (self.every and done % self.every == 0) or done == self.epochs:
            start = time.time()
            self.last = self.evaluate()
            if logs is not None:
                logs["knn_top1"] = self.last
            print(f"epoch {done}: kNN top-1 {self.last:.2f}% (k={self.k}, T={self.temperature}, "
                  f"{time.time() - start:.1f}s)", flush=True)


def truncate_metrics_log(model_dir, epochs):
    """Drops rows after `epochs` from metrics.jsonl (rows of an epoch that a resume repeats)."""
    path = os.path.join(model_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return
    with open(path) as f:
        rows = [line for line in f if line.strip() and json.loads(line).get("epoch", 0) <= epochs]
    checkpoint.atomic_write_text(path, "".join(rows))


class MetricsLog(keras.callbacks.Callback):
    """Appends each epoch's logs (losses, λ, kNN, lr, time) to `<model_dir>/metrics.jsonl`."""

    def __init__(self, model_dir):
        super().__init__()
        self.path = os.path.join(model_dir, "metrics.jsonl")
        self.start = None

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "seconds": round(time.time() - self.start, 2)}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        lr = self.model.optimizer.learning_rate
        row["learning_rate"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
