"""The online linear probe of a trainer (optional; as solo-learn's base and the keras-io examples).

A Dense classifier on stop-gradient backbone features of the clean query view, trained on labeled
batches `(views, labels)` by its own optimizer, so the pretraining loss, gradients and optimizer
state are exactly those of a run without it. `SiameseTrainer.test_step` reports it on clean labeled
images (`evaluate`, or `fit(validation_data=...)` as `val_probe_top1`).
"""

import keras
import tensorflow as tf

from mixmask_tf.metrics import top_k_percent


def split_labels(data):
    """The labels of a pretraining batch, or None.

    Args:
      data: float [N, 2, H, W, C], or a tuple/list (views [N, 2, H, W, C], labels int [N], ...).

    Returns:
      int [N] labels, or None when the batch carries none (decided when the step is traced).
    """
    if isinstance(data, (tuple, list)) and len(data) > 1 and data[1] is not None:
        return data[1]
    return None


def build(classes, features, seed):
    """The probe `Dense(classes)` on features [N, features], built; a seeded initializer draws nothing
    from the global generators, so every other weight of the trainer is initialised as without it."""
    probe = keras.layers.Dense(classes, kernel_initializer=keras.initializers.GlorotUniform(seed=seed), name="probe")
    probe.build((None, int(features)))
    return probe


def metric_names(classes):
    """The metrics a probe over `classes` classes reports."""
    return ["probe_loss", "probe_top1"] + (["probe_top5"] if classes >= 5 else [])


def logits_and_loss(probe, features, labels):
    """Logits and mean softmax cross-entropy of a linear probe.

    Args:
      probe: a `keras.layers.Dense(K)`.
      features: float [N, F] (already stop-gradient).
      labels: int [N] in [0, K).

    Returns:
      (logits float32 [N, K], loss float32 scalar: mean over the N examples).
    """
    logits = tf.cast(probe(features), tf.float32)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)
    return logits, tf.reduce_mean(per_example)


def train_step(probe, optimizer, features, labels, replicas):
    """One optimizer step of the probe on stop-gradient features [N, F], labels int [N].

    Touches only the probe and its optimizer. The loss is divided by the number of replicas (Keras
    sums gradients over replicas, as for the main loss).

    Returns:
      dict: probe_loss (this replica's mean cross-entropy), probe_top1 (%).
    """
    variables = probe.trainable_variables
    with tf.GradientTape() as tape:
        logits, loss = logits_and_loss(probe, features, labels)
        scaled = loss / replicas
    optimizer.apply(tape.gradient(scaled, variables), variables)
    return {"probe_loss": loss, "probe_top1": tf.reduce_mean(top_k_percent(logits, labels, 1))}


def evaluate(probe, trackers, features, labels):
    """Updates the running probe metrics in `trackers` on features [N, F], labels [N]; returns them."""
    logits, loss = logits_and_loss(probe, features, labels)
    n = tf.shape(labels)[0]
    # Per-example values so partial batches weigh by their size in the running mean.
    trackers["probe_loss"].update_state(loss, sample_weight=tf.cast(n, tf.float32))
    names = ["probe_loss", "probe_top1"]
    trackers["probe_top1"].update_state(top_k_percent(logits, labels, 1))
    if "probe_top5" in trackers:
        trackers["probe_top5"].update_state(top_k_percent(logits, labels, 5))
        names.append("probe_top5")
    return {name: trackers[name].result() for name in names}
