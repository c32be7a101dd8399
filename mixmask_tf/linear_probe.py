"""Linear probe: a softmax classifier on frozen encoder features.

Two protocols (`PROTOCOLS`):
  * "moco": the MoCo linear-classification protocol (He et al. 2020, `main_lincls.py`): SGD
    momentum 0.9, lr 30, weight decay 0, batch 256, 100 epochs, lr × 0.1 at epochs 60 and 80;
    the training images are augmented (random resized crop + horizontal flip) and encoded
    anew every step; test images use the deterministic transform.
  * "fast" (default): no augmentation, so each image is encoded exactly once and the features
    are cached; the features are standardised (train mean / std) and the classifier is
    trained by SGD with Nesterov momentum on a cosine schedule. Seconds instead of hours on
    small datasets, within a point of the slower protocol on Fashion-MNIST
    (README "Evaluation").

The encoder is frozen and run in inference mode (BatchNorm uses its moving statistics) in both.
The optimizer is torch.optim.SGD's (v ← m·v + g + wd·w; w ← w − lr·v, or w − lr·(g + m·v) with
Nesterov), the learning rate is set per epoch, and the batch order of epoch e is
`np.random.default_rng([seed, e]).permutation(N)` (the last partial batch is kept), so a run is
reproducible and `tests/mixmask_tf/test_linear_probe.py` replays it in NumPy.
"""

import dataclasses
import math
from typing import Sequence

import numpy as np
import tensorflow as tf

from mixmask_tf import augment, metrics


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Hyper-parameters of a linear probe.

    Attributes:
      epochs: passes over the training set.
      batch_size: examples per step.
      learning_rate: base lr.
      momentum: SGD momentum.
      nesterov: Nesterov momentum.
      weight_decay: L2 coefficient added to the gradient (torch-style), on weights and bias.
      schedule: "step" (× gamma at each milestone epoch) or "cosine" (per epoch, to 0).
      milestones: epochs at which a step schedule multiplies the lr by gamma.
      gamma: step factor.
      augment: random resized crop + flip on training images (features recomputed every step).
      crop_scale: (min, max) area fraction of the random resized crop.
      standardize: standardise features with the training mean / std before the classifier.
      init_std: std of the normal initial weights (bias 0).
    """

    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    milestones: Sequence[int] = ()
    gamma: float = 0.1
    augment: bool = False
    crop_scale: Sequence[float] = (0.08, 1.0)
    standardize: bool = True
    init_std: float = 0.01

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.learning_rate <= 0 or not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ValueError("need learning_rate > 0, momentum in [0, 1) and weight_decay >= 0")
        if self.schedule not in ("step", "cosine", "constant"):
            raise ValueError(f"schedule must be 'step', 'cosine' or 'constant', got {self.schedule!r}")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {tuple(self.crop_scale)}")

    def lr_at(self, epoch: int) -> float:
        """Learning rate of (0-based) epoch `epoch`."""
        if self.schedule == "step":
            return self.learning_rate * self.gamma ** sum(epoch >= m for m in self.milestones)
        if self.schedule == "cosine":
            return self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))
        return self.learning_rate


PROTOCOLS = {
    "moco": ProbeConfig(epochs=100, batch_size=256, learning_rate=30.0, momentum=0.9, nesterov=False,
                        weight_decay=0.0, schedule="step", milestones=(60, 80), augment=True, standardize=False),
    "fast": ProbeConfig(),
}


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch: a permutation of range(n) determined by (seed, epoch)."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


class LinearClassifier:
    """Softmax classifier logits = ((f − mean) / std) · W + b, trained by torch-style SGD.

    Args:
      num_features: F.
      num_classes: C.
      config: ProbeConfig.
      seed: seed of the initial weights.
    """

    def __init__(self, num_features: int, num_classes: int, config: ProbeConfig, seed: int = 0):
        rng = np.random.default_rng([int(seed), 1 << 20])
        self.config = config
        self.num_classes = int(num_classes)
        self.kernel = tf.Variable(rng.normal(0.0, config.init_std, (num_features, num_classes)).astype(np.float32))
        self.bias = tf.Variable(np.zeros([num_classes], np.float32))
        self.mean = tf.Variable(np.zeros([num_features], np.float32), trainable=False)
        self.std = tf.Variable(np.ones([num_features], np.float32), trainable=False)
        self._velocity = [tf.Variable(tf.zeros_like(v)) for v in (self.kernel, self.bias)]
        self._momentum = float(config.momentum)
        self._nesterov = bool(config.nesterov)
        self._weight_decay = float(config.weight_decay)

    def set_standardization(self, train_features):
        """Uses the training features' mean and std (std floored at 1e-6)."""
        f = np.asarray(train_features, np.float64)
        self.mean.assign(f.mean(axis=0).astype(np.float32))
        self.std.assign(np.maximum(f.std(axis=0), 1e-6).astype(np.float32))

    @tf.function(reduce_retracing=True)
    def logits(self, features):
        """[N, F] features -> [N, C] logits."""
        x = (tf.cast(features, tf.float32) - self.mean) / self.std
        return tf.matmul(x, self.kernel) + self.bias

    @tf.function(reduce_retracing=True)
    def train_step(self, features, labels, learning_rate):
        """One SGD step on a batch; returns the mean cross-entropy before the step."""
        params = [self.kernel, self.bias]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(labels, tf.int32), logits=self.logits(features)))
        grads = tape.gradient(loss, params)
        for param, grad, velocity in zip(params, grads, self._velocity):
            grad = grad + self._weight_decay * param
            velocity.assign(self._momentum * velocity + grad)
            update = grad + self._momentum * velocity if self._nesterov else velocity
            param.assign_sub(learning_rate * update)
        return loss

    def predict(self, features, batch_size: int = 4096) -> np.ndarray:
        """Logits [N, C] (numpy) of features [N, F], in batches."""
        features = np.asarray(features, np.float32)
        out = [self.logits(tf.constant(features[s:s + batch_size])).numpy()
               for s in range(0, len(features), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)


def train_on_features(train_features, train_labels, num_classes: int, config: ProbeConfig = PROTOCOLS["fast"],
                      seed: int = 0, log_fn=None) -> LinearClassifier:
    """Trains a linear classifier on cached features.

    Args:
      train_features: float [N, F].
      train_labels: int [N] in [0, num_classes).
      num_classes: C.
      config: ProbeConfig (its `augment` is ignored: cached features are not augmented).
      seed: seed of the initial weights and of the batch order.
      log_fn: optional callable(epoch (1-based), mean loss, lr) called after every epoch.

    Returns:
      the trained LinearClassifier.
    """
    features = np.asarray(train_features, np.float32)
    labels = np.asarray(train_labels).astype(np.int64).reshape(-1)
    if features.ndim != 2 or features.shape[0] != labels.shape[0] or features.shape[0] == 0:
        raise ValueError(f"need features [N, F] and labels [N] with N > 0, got {features.shape} and {labels.shape}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    classifier = LinearClassifier(features.shape[1], num_classes, config, seed)
    if config.standardize:
        classifier.set_standardization(features)
    n = features.shape[0]
    for epoch in range(config.epochs):
        lr = tf.constant(config.lr_at(epoch), tf.float32)
        order = epoch_order(n, seed, epoch)
        total = 0.0
        for start in range(0, n, config.batch_size):
            idx = order[start:start + config.batch_size]
            total += float(classifier.train_step(tf.constant(features[idx]), tf.constant(labels[idx]), lr)) * len(idx)
        if log_fn is not None:
            log_fn(epoch + 1, total / n, float(lr))
    return classifier


def augment_train_image(image, seed, size, crop_scale=(0.08, 1.0)):
    """The probe's training transform: random resized crop + horizontal flip, raw pixels out.

    The pretraining augmentation's ops on a batch of one (``augment.augment_image``) with every
    op but the crop and the flip turned off.

    Args:
      image: uint8 [H, W, C].
      seed: int tensor [2] (stateless).
      size: (H, W) of the output.
      crop_scale: (min, max) area fraction kept.

    Returns:
      float32 [H, W, C] in [0, 255] (encoders normalise themselves).
    """
    config = augment.ViewConfig(size=size, crop_scale=tuple(crop_scale), flip=True, brightness=0.0, contrast=0.0,
                                saturation=0.0, hue=0.0, jitter_p=0.0, grayscale_p=0.0)
    return augment.augment_image(image, tf.cast(seed, tf.int64), config) * 255.0


def train_augmented(encoder, source, num_classes: int, config: ProbeConfig = PROTOCOLS["moco"], seed: int = 0,
                    log_fn=None) -> LinearClassifier:
    """Trains a linear classifier on features of augmented images, encoded every step.

    Args:
      encoder: `mixmask_tf.encoders.Encoder` (frozen, inference mode).
      source: labeled `mixmask_tf.data.Source` with images of the encoder's shape (indexable).
      num_classes: C.
      config: ProbeConfig (augment is applied regardless of `config.augment`).
      seed: seed of the initial weights, the batch order and the augmentation.
      log_fn: optional callable(epoch, mean loss, lr).
    """
    if not source.indexable:
        raise ValueError("the augmented probe needs an indexable source (in-memory arrays or files)")
    classifier = LinearClassifier(encoder.embedding_dim, num_classes, config, seed)
    size = encoder.image_shape[:2]
    n = source.num_examples
    if config.standardize:
        raise ValueError("standardize needs cached features; use standardize=False with augmentation")
    for epoch in range(config.epochs):
        order = epoch_order(n, seed, epoch)
        ds = source.load(tf.data.Dataset.from_tensor_slices(order.astype(np.int64)))
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.range(n)))
        ds = ds.map(lambda example, p, epoch=epoch: (
            augment_train_image(example[0], tf.stack([tf.cast(seed * 1000003 + epoch, tf.int64), p]), size,
                                config.crop_scale), example[1]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)
        lr = tf.constant(config.lr_at(epoch), tf.float32)
        total, count = 0.0, 0
        for images, labels in ds:
            features = encoder(images)
            total += float(classifier.train_step(features, labels, lr)) * int(labels.shape[0])
            count += int(labels.shape[0])
        if log_fn is not None:
            log_fn(epoch + 1, total / max(count, 1), float(lr))
    return classifier


def evaluate(classifier: LinearClassifier, features, labels) -> dict:
    """Top-1 and top-5 accuracy (%) of a classifier on features; top-5 only with >= 5 classes."""
    scores = classifier.predict(features)
    result = {"top1": metrics.top_k_accuracy(scores, labels, 1)}
    if classifier.num_classes >= 5:
        result["top5"] = metrics.top_k_accuracy(scores, labels, 5)
    return result


def protocol(name: str, **overrides) -> ProbeConfig:
    """A named protocol with some fields replaced (None values are ignored)."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown linear-probe protocol {name!r}; choose from {sorted(PROTOCOLS)}")
    return dataclasses.replace(PROTOCOLS[name], **{k: v for k, v in overrides.items() if v is not None})
