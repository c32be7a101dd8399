"""Semi-supervised and supervised fine-tuning (the paper's Table 6 protocol).

The pretrained backbone and a new linear classifier are trained together on 1 %, 10 % or 100 %
of the training labels, with separate learning rates: 0.001 on the backbone and 1 / 0.1 / 0.01
on the classifier for 1 / 10 / 100 % of the labels (paper Table 6, following Cai et al. 2021;
20 epochs in the BMVC version). The label subset is drawn class-balanced from a seed
(`balanced_subset`).
"""

import numpy as np
import keras
import tensorflow as tf

from mixmask_tf import metrics

# Paper Table 6: classifier learning rate per label fraction; the backbone's is 0.001.
PAPER_CLASSIFIER_LR = {0.01: 1.0, 0.1: 0.1, 1.0: 0.01}
PAPER_BACKBONE_LR = 0.001
PAPER_EPOCHS = 20


def paper_classifier_lr(fraction: float) -> float:
    """Table 6's classifier lr for a label fraction (the nearest of 1 %, 10 %, 100 % on a log scale)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    nearest = min(PAPER_CLASSIFIER_LR, key=lambda f: abs(np.log(f) - np.log(fraction)))
    return PAPER_CLASSIFIER_LR[nearest]


def balanced_subset(labels, fraction: float, seed: int, exclude=None) -> np.ndarray:
    """Indices of a class-balanced, reproducible label subset.

    Class c contributes max(1, round(fraction · n_c)) examples (n_c: its eligible examples),
    the first ones of a permutation drawn from `np.random.default_rng([seed, c])`. So the same
    seed always gives the same subset, and for one seed a smaller fraction's subset is
    contained in a larger one's (1 % ⊂ 10 % ⊂ 100 %).

    Args:
      labels: int [N] labels of the pool (the training split).
      fraction: in (0, 1].
      seed: subset seed.
      exclude: optional indices that must never be drawn (e.g. a held-out validation part).

    Returns:
      int64 [M] sorted indices into `labels`.
    """
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    if labels.size and labels.min() < 0:
        raise ValueError("balanced_subset needs labels >= 0 (the split is unlabeled?)")
    eligible = np.ones(labels.shape[0], bool)
    if exclude is not None:
        eligible[np.asarray(exclude, np.int64)] = False
    chosen = []
    for c in np.unique(labels[eligible]):
        members = np.flatnonzero(eligible & (labels == c))
        order = np.random.default_rng([int(seed), int(c)]).permutation(members.size)
        take = max(1, int(round(fraction * members.size)))
        chosen.append(members[order[:take]])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros((0,), np.int64)


class FineTuner(keras.Model):
    """Backbone + linear classifier trained end to end with one optimizer each.

    `compile(backbone_optimizer=..., head_optimizer=...)` takes the two optimizers (Table 6:
    SGD at 0.001 for the backbone and 1 / 0.1 / 0.01 for the classifier); the backbone's
    BatchNorm runs in training mode during `fit` and in inference mode in `evaluate`.

    Args:
      backbone: Keras model normalised images [N, H, W, C] -> features [N, F].
      num_classes: C.
    """

    def __init__(self, backbone, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.head = keras.layers.Dense(num_classes, name="classifier")
        self.head.build((None, int(backbone.output_shape[-1])))
        self._loss_tracker = keras.metrics.Mean(name="loss")
        self._top1 = keras.metrics.SparseTopKCategoricalAccuracy(k=1, name="top1")
        self._top5 = keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5") if num_classes >= 5 else None
        self.backbone_optimizer = None
        self.head_optimizer = None

    def call(self, images, training=False):
        """Logits [N, C] of normalised images [N, H, W, C]."""
        return self.head(self.backbone(images, training=training))

    @property
    def metrics(self):
        return [m for m in (self._loss_tracker, self._top1, self._top5) if m is not None]

    def compile(self, backbone_optimizer, head_optimizer, **kwargs):
        """Takes one optimizer for the backbone and one for the classifier."""
        super().compile(optimizer=head_optimizer, **kwargs)
        self.backbone_optimizer = backbone_optimizer
        self.head_optimizer = head_optimizer
        self.backbone_optimizer.build(self.backbone.trainable_variables)
        self.head_optimizer.build(self.head.trainable_variables)

    def _update_metrics(self, loss, labels, logits):
        self._loss_tracker.update_state(loss)
        for metric in self.metrics[1:]:
            metric.update_state(labels, logits)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        images, labels = data[0], data[1]  # (images, labels[, sample weights: unused])
        backbone_vars = self.backbone.trainable_variables
        head_vars = self.head.trainable_variables
        with tf.GradientTape() as tape:
            logits = self(images, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        grads = tape.gradient(scaled, backbone_vars + head_vars)
        self.backbone_optimizer.apply(grads[:len(backbone_vars)], backbone_vars)
        self.head_optimizer.apply(grads[len(backbone_vars):], head_vars)
        return self._update_metrics(loss, labels, logits)

    def test_step(self, data):
        images, labels = data[0], data[1]
        logits = self(images, training=False)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        return self._update_metrics(loss, labels, logits)


def predict_scores(model, dataset) -> tuple:
    """(logits [N, C], labels [N]) numpy arrays of a dataset of (images, labels) batches."""
    scores, labels = [], []
    for images, y in dataset:
        scores.append(model(images, training=False).numpy())
        labels.append(np.asarray(y))
    return np.concatenate(scores), np.concatenate(labels).astype(np.int64)


def evaluate_scores(scores, labels) -> dict:
    """Top-1 and top-5 (%, top-5 with >= 5 classes) of class scores."""
    result = {"top1": metrics.top_k_accuracy(scores, labels, 1)}
    if scores.shape[1] >= 5:
        result["top5"] = metrics.top_k_accuracy(scores, labels, 5)
    return result
