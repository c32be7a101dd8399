"""The pretraining CLI's one-line epoch summary."""

import sys
import time

import keras

from .callbacks import interrupted


class EpochSummary(keras.callbacks.Callback):
    """Prints one line per epoch: every loss term, λ, learning rate, kNN, probe and the time.

    Placed after the callbacks that add to ``logs`` (KnnMonitor, LearningRateLogger), e.g.
    ``epoch 3/10  41.2s  loss 5.1234  loss_clean 5.0012  loss_mixmask 5.3011  lambda 0.500
    lr 0.05812  kNN 75.12% (3.1s)``; the epoch time excludes nothing (kNN included). With an
    online linear probe it ends with ``probe 61.30% (loss 1.0512)  val probe 63.20% (top-5
    97.10%)`` (train batches, then the validation set at the epochs that have one).
    """

    def __init__(self, epochs, stream=None):
        super().__init__()
        self.epochs = epochs
        self.stream = stream
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    @staticmethod
    def format(epoch, epochs, seconds, logs):
        parts = [f"epoch {epoch + 1}/{epochs}", f"{seconds:.1f}s"]
        keys = sorted(k for k in logs if k.startswith("loss"))
        keys += [k for k in ("lambda", "learning_rate", "knn_top1") if k in logs]
        for key in keys:
            value = float(logs[key])
            if key == "knn_top1":
                parts.append(f"kNN {value:.2f}%" + (f" ({float(logs['knn_seconds']):.1f}s)"
                                                     if "knn_seconds" in logs else ""))
            elif key == "learning_rate":
                parts.append(f"lr {value:.5g}")
            elif key == "lambda":
                parts.append(f"λ {value:.3f}")
            else:
                parts.append(f"{key} {value:.4f}")
        if "probe_top1" in logs:
            parts.append(f"probe {float(logs['probe_top1']):.2f}%"
                         + (f" (loss {float(logs['probe_loss']):.4f})" if "probe_loss" in logs else ""))
        if "val_probe_top1" in logs:
            parts.append(f"val probe {float(logs['val_probe_top1']):.2f}%"
                         + (f" (top-5 {float(logs['val_probe_top5']):.2f}%)" if "val_probe_top5" in logs else ""))
        return "  ".join(parts)

    def on_epoch_end(self, epoch, logs=None):
        if interrupted(self.model):  # stopped mid-epoch: the rerun reports that epoch
            return
        seconds = time.time() - (self._start or time.time())
        print(self.format(epoch, self.epochs, seconds, logs or {}), file=self.stream or sys.stdout, flush=True)
