"""Keras callbacks of the pretraining CLI: checkpoints, kNN monitor, metrics log, summaries."""

import json
import math
import os
import signal
import threading
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from mixmask_tf import checkpoint
from mixmask_tf import encoders
from mixmask_tf import knn
from mixmask_tf import visualize


def interrupted(model):
    """Whether training stopped in the middle of the current epoch on a stop request (its
    epoch-end callbacks then record nothing: the rerun finishes and records that epoch)."""
    return bool(getattr(model, "interrupted_epoch", False))


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, silent for an epoch interrupted by a stop request."""

    def on_epoch_end(self, epoch, logs=None):
        if not interrupted(self.model):
            super().on_epoch_end(epoch, logs)


class StopOnSignal(keras.callbacks.Callback):
    """Turns SIGTERM (how clusters preempt a job) into a stop request at the next step.

    Place it first in the callback list. While training, SIGTERM only sets a flag; before the
    next step the model's stop request is raised (`SiameseTrainer.request_stop`), the step
    reduces it over every worker, and all workers see ``stop_requested`` at the same step;
    :class:`Checkpoint` then saves there and stops training. The key is removed from the logs
    here, so that no other callback records it. The previous SIGTERM handler is restored when
    training ends.

    Attributes:
      signalled: this process received SIGTERM.
      requested: the cluster agreed to stop (any worker was signalled) at the last batch end.
    """

    def __init__(self, signals=(signal.SIGTERM,)):
        super().__init__()
        self.signals = tuple(signals)
        self.signalled = False
        self.requested = False
        self._previous = {}
        self._raised = False

    def _handler(self, signum, frame):
        self.signalled = True
        logging.warning("received signal %d: saving a checkpoint at the next step, then stopping", signum)

    def on_train_begin(self, logs=None):
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handler)

    def on_train_end(self, logs=None):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def on_train_batch_begin(self, batch, logs=None):
        if self.signalled and not self._raised:
            self.model.request_stop()
            self._raised = True

    def on_train_batch_end(self, batch, logs=None):
        if logs is not None and "stop_requested" in logs:
            self.requested = self.requested or float(np.asarray(logs.pop("stop_requested")).reshape(-1)[0]) > 0

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.pop("stop_requested", None)


class Checkpoint(keras.callbacks.Callback):
    """Saves the whole training state after every epoch, and where a stop was requested.

    Every worker calls it (under MultiWorkerMirroredStrategy all workers save together, see
    `checkpoint.TrainingCheckpoint`); the chief also writes `backbone.keras` at epoch ends.
    A non-finite loss stops training and is never checkpointed, so the last good checkpoint
    survives (with steps_per_execution > 1 the logged loss is the epoch's running mean, so a
    NaN at any step of an execution is seen at its end).

    Args:
      saver: a `checkpoint.TrainingCheckpoint`.
      model_dir: the run folder (`backbone.keras` goes there).
      steps_per_epoch: steps of a full epoch.
      stop: the `StopOnSignal` callback whose agreed request ends training here (or None).
      step_offset: steps of the epoch already done before this `fit` (a resumed mid-epoch
        checkpoint; that `fit` then runs only the rest of that one epoch).
      is_chief: whether this worker writes `backbone.keras`.

    Attributes:
      preempted: (epoch, step) of the checkpoint saved on a stop request, or None.
    """

    def __init__(self, saver, model_dir, steps_per_epoch, stop=None, step_offset=0, is_chief=True):
        super().__init__()
        self.saver = saver
        self.model_dir = model_dir
        self.steps_per_epoch = int(steps_per_epoch)
        self.stop = stop
        self.step_offset = int(step_offset)
        self.is_chief = is_chief
        self.preempted = None
        self._epoch = 0
        self._stop_at_epoch_end = False

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(np.asarray(loss).reshape(-1)[0])):
            logging.error("non-finite loss %s at batch %d: stopping without checkpointing", loss, batch)
            self.model.stop_training = True
            self.model.nan_stopped = True
            return
        if self.stop is None or not self.stop.requested or self.preempted or self._stop_at_epoch_end:
            return
        done = self.step_offset + batch + 1
        if done >= self.steps_per_epoch:
            self._stop_at_epoch_end = True  # the end-of-epoch checkpoint comes next
            return
        with checkpoint.writing(f"the checkpoint at epoch {self._epoch} + {done} steps"):
            path = self.saver.save(self._epoch, done)
        self.preempted = (self._epoch, done)
        self.model.stop_training = True
        self.model.interrupted_epoch = True  # the epoch-end callbacks skip this unfinished epoch
        logging.warning("stop requested: saved %s (epoch %d, step %d)", path, self._epoch, done)

    def on_epoch_end(self, epoch, logs=None):
        if interrupted(self.model):
            return
        loss = (logs or {}).get("loss")
        if getattr(self.model, "nan_stopped", False) or (
                loss is not None and not math.isfinite(float(np.asarray(loss).reshape(-1)[0]))):
            return
        with checkpoint.writing(f"the checkpoint of epoch {epoch + 1}"):
            path = self.saver.save(epoch + 1, 0)
        if self.is_chief:
            with checkpoint.writing(f"{os.path.join(self.model_dir, 'backbone.keras')} (epoch {epoch + 1})"):
                checkpoint.atomic_save_keras(self.model.backbone, os.path.join(self.model_dir, "backbone.keras"))
            logging.info("saved %s", path)
        if self._stop_at_epoch_end:
            self.preempted = (epoch + 1, 0)
            self.model.stop_training = True


class KnnMonitor(keras.callbacks.Callback):
    """Weighted kNN top-1 every `every` epochs (and after the last one).

    `feature` is what is scored (`encoders.feature_model`): "backbone" (the pooled backbone output)
    or "head" (the query encoder's output with its projection head, as the MoCo CIFAR demo's
    monitor).
    """

    def __init__(self, train_dataset, test_dataset, num_classes, every, epochs, k=200, temperature=0.1,
                 feature="backbone"):
        super().__init__()
        if feature not in encoders.FEATURES:
            raise ValueError(f"feature must be one of {', '.join(encoders.FEATURES)}, got {feature!r}")
        self.train_dataset = train_dataset
        self.test_dataset = test_dataset
        self.num_classes = num_classes
        self.every = every
        self.epochs = epochs
        self.k = k
        self.temperature = temperature
        self.feature = feature
        self.last = None

    def evaluate(self):
        return knn.evaluate_encoder(encoders.feature_model(self.model, self.feature), self.train_dataset,
                                    self.test_dataset, self.num_classes, self.k, self.temperature)

    def on_epoch_end(self, epoch, logs=None):
        if interrupted(self.model):
            return
        done = epoch + 1
        if (self.every and done % self.every == 0) or done == self.epochs:
            start = time.time()
            self.last = self.evaluate()
            if logs is not None:
                logs["knn_top1"] = self.last
            if logs is not None:
                logs["knn_seconds"] = round(time.time() - start, 2)
            logging.info("epoch %d: kNN top-1 %.2f%% (%s features, k=%d, T=%s, %.1fs)", done, self.last,
                         self.feature, self.k, self.temperature, time.time() - start)


def truncate_metrics_log(model_dir, epochs):
    """Drops rows after `epochs` from metrics.jsonl (rows of an epoch that a resume repeats)."""
    path = os.path.join(model_dir, "metrics.jsonl")
    text = checkpoint.read_text(path)
    if text is None:
        return
    rows = [line + "\n" for line in text.splitlines() if line.strip() and _epoch_of(line) <= epochs]
    checkpoint.atomic_write_text(path, "".join(rows))


def _epoch_of(line):
    try:
        return json.loads(line).get("epoch", 0)
    except (json.JSONDecodeError, AttributeError):
        return 1 << 30  # a half-written line: dropped


class MetricsLog(keras.callbacks.Callback):
    """Appends each epoch's logs (losses, λ, kNN, online probe and its `val_` metrics, lr, time) to
    `<model_dir>/metrics.jsonl` (rewritten atomically through `tf.io.gfile`, so a kill never
    leaves half a line, and a gs:// run folder works).

    Args:
      model_dir: the run folder.
      knn_feature: written as "knn_feature" into every row that holds a `knn_top1` (which feature
        the kNN monitor scored: "backbone" or "head"), or None.

    Attributes:
      note: extra keys for the next row only (e.g. ``{"resumed_at_step": s}`` for an epoch
        that a resumed run finished: its means cover only the steps from s on).
    """

    def __init__(self, model_dir, knn_feature=None):
        super().__init__()
        self.path = os.path.join(model_dir, "metrics.jsonl")
        self.knn_feature = knn_feature
        self.start = None
        self.note = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        if interrupted(self.model):
            return
        row = {"epoch": epoch + 1, "seconds": round(time.time() - self.start, 2)}
        row.update({k: float(np.asarray(v).reshape(-1)[0]) for k, v in (logs or {}).items()})
        lr = self.model.optimizer.learning_rate
        row["learning_rate"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
        if self.knn_feature is not None and "knn_top1" in row:
            row["knn_feature"] = self.knn_feature
        row.update(self.note)
        self.note = {}
        text = checkpoint.read_text(self.path, "")
        if text and not text.endswith("\n"):
            text += "\n"
        with checkpoint.writing(f"{self.path} (epoch {epoch + 1})"):
            checkpoint.atomic_write_text(self.path, text + json.dumps(row) + "\n")


class PlotCurves(keras.callbacks.Callback):
    """After every epoch: `<model_dir>/curves.png` from `<model_dir>/metrics.jsonl`.

    Place it after `MetricsLog` in the callback list so the epoch that just ended is in the
    file. A missing metrics file gives a figure that says "no data" (see
    `visualize.save_curves_png`); the PNG is replaced atomically. A plotting failure is logged
    and never stops training.
    """

    def __init__(self, model_dir, filename="curves.png"):
        super().__init__()
        self.metrics_path = os.path.join(model_dir, "metrics.jsonl")
        self.path = os.path.join(model_dir, filename)

    def on_epoch_end(self, epoch, logs=None):
        if interrupted(self.model):
            return
        try:
            visualize.save_curves_png(self.path, visualize.load_metrics_jsonl(self.metrics_path),
                                      title=f"after epoch {epoch + 1}")
        except Exception:  # a plot must never end a training run
            logging.warning("could not write %s", self.path, exc_info=True)


class LearningRateLogger(keras.callbacks.Callback):
    """Puts the optimizer's current learning rate into `logs["learning_rate"]` at each epoch end.

    Callbacks after it in the list (History, `MetricsLog`, CSVLogger, TensorBoard) see the
    value. "Current" is the rate of the next step: a schedule is evaluated at
    `optimizer.iterations` (the number of steps done). A LossScaleOptimizer is unwrapped.
    """

    @staticmethod
    def current(optimizer):
        """The learning rate (python float) `optimizer` applies at its next step."""
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        lr = optimizer.learning_rate  # Keras 3 evaluates a schedule at `iterations` itself
        if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
            lr = lr(optimizer.iterations)
        return float(keras.ops.convert_to_numpy(lr))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.current(self.model.optimizer)


class MixedViewSummary(keras.callbacks.Callback):
    """TensorBoard images of what the query encoder sees: clean and mixed views of a fixed batch.

    Every `every` epochs (at the end of epochs `every`, `2·every`, ...; step = the 0-based
    epoch, as Keras' TensorBoard epoch scalars) the model's branch is applied to the query
    view `images[:, 0]` exactly as the trainer applies it: `model.branch_outputs`, i.e. the
    branch with replica 0's seed at the current `optimizer.iterations` (the seed of the next
    training step), or with the fixed `seed` if one is given. Written to
    `<log_dir>/images` (its own run, next to TensorBoard's `train`/`validation`):

    * "clean_views": the query view;
    * "network_view<v>" (v = 1, 2, ...; only for a branch that changes the views, MSCN):
      view v as the network is given it, after the branch's `prepare_views` (its input filter and
      view changes: `model.prepared_views`, or the fixed `seed`); high-pass filtered images are shown as
      0.5 + x·std (`visualize.network_display`);
    * "hard_negative<h>" and "saliency_foreground_view<v>" (the saliency branch): its hard negatives
      as the target encoder is given them, and the foreground cells of views 1 and 2;
    * "mixed_views": the branch's first extra query batch (MixMask: the mixtures; Un-Mix:
      its mixtures; erase: the erased images);
    * "mixed_views_<term>": each further batch, named by its first term (MixMask*:
      "mixed_views_unmix"; erase: "mixed_views_erase_complement").

    The "none" branch writes "clean_views" only. Images are un-normalised with `mean`/`std`
    (`x * std + mean`) and clipped to [0, 1]; without them they are only clipped, so pass
    them for normalised data.

    Args:
      log_dir: TensorBoard log folder.
      images: float [B, V, H, W, C] batch as the trainer receives it (normalised; V = 2, or
        2 + the branch's extra views).
      every: Python int >= 1, write every `every` epochs.
      max_outputs: images per summary (at most B).
      mean, std: per-channel normalisation of `images` (scalar or C values), or None.
      seed: None (the trainer's next seed) or an int pair [2] for the same masks every time.
    """

    def __init__(self, log_dir, images, every=1, max_outputs=4, mean=None, std=None, seed=None):
        super().__init__()
        images = np.asarray(images, np.float32)
        if images.ndim != 5 or images.shape[1] < 2:
            raise ValueError(f"images must be a pretraining batch [B, V, H, W, C] with V >= 2, got {images.shape}.")
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}.")
        self.folder = os.path.join(log_dir, "images")
        self.images = images
        self.every = every
        self.max_outputs = int(max_outputs)
        self.mean, self.std = mean, std
        self.seed = None if seed is None else tf.constant(seed, tf.int32)
        self._writer = None

    def _display(self, x):
        return visualize.to_display(np.asarray(x), self.mean, self.std)

    def summaries(self):
        """{name: display images [B, H, W, C] in [0, 1]} that `write` records."""
        x1 = tf.constant(self.images[:, 0])
        result = {"clean_views": self._display(x1)}
        if self.model.branch.changes_views:
            views = tuple(tf.constant(self.images[:, v]) for v in range(self.images.shape[1]))
            out = (self.model.prepared_views(views) if self.seed is None
                   else self.model.branch.prepare_views(views, self.seed))
            networks, negatives, maps = visualize.transformed_displays(
                self.model.branch, views, out, self.mean, self.std, filtered=self.model.input_filter is not None)
            for v, view in enumerate(networks):
                result[f"network_view{v + 1}"] = view
            for h, negative in enumerate(negatives):
                result[f"hard_negative{h + 1}"] = negative
            for label, value in maps.items():  # "foreground (view 1)" -> "saliency_foreground_view1"
                result["saliency_" + label.split(" ")[0] + f"_view{label[-2]}"] = value
            x1 = out.views[0]
        if self.seed is None:
            out = self.model.branch_outputs(x1)
        else:
            out = self.model.branch(x1, self.seed)
        for i, batch in enumerate(out.batches):
            name = "mixed_views" if i == 0 else f"mixed_views_{batch.terms[0].name}"
            result[name] = self._display(batch.images)
        return result

    def write(self, step):
        """Writes the summaries at `step` and flushes."""
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.folder)
        images = self.summaries()
        with self._writer.as_default():
            for name, value in images.items():
                tf.summary.image(name, value, step=step, max_outputs=self.max_outputs)
        self._writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        if interrupted(self.model):
            return
        if (epoch + 1) % self.every == 0:
            self.write(epoch)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
