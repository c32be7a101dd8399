"""The shared siamese trainer: one train step for every framework and every branch.

A framework (one file each, e.g. `moco.py`) subclasses `SiameseTrainer` and supplies only
what is its own: its encoders and heads (`online_variables`, `embed_query`), its clean loss
(`clean_forward`), the per-sample loss of an extra query against the clean targets
(`branch_per_sample_loss`), and its state updates (`update_targets` before the forward pass,
`finish_step` after the gradient step). A branch (`mixmask_tf.branches`) supplies extra query
batches with weighted terms. The step below combines them:

    L = L_clean + Σ_batches Σ_terms mean_i(w_i · L(embed(batch)[index_i], target_i))

Distribution rules (README "Distributed training"): the per-replica mean loss is divided by
the number of replicas inside the tape; each replica draws its masks from its own seed
(base seed, step, replica id); state lives in Keras weights so checkpoints hold it.
"""

import keras
import tensorflow as tf

from mixmask_tf import branches as branches_lib
from mixmask_tf import losses


def split_views(data):
    """Splits a pretraining batch into its two views.

    Args:
      data: float [N, 2, H, W, C] (views stacked on axis 1), or a tuple/list whose first
        element is that tensor (labels, if any, are ignored).

    Returns:
      (x1 [N, H, W, C] query view, x2 [N, H, W, C] key view).
    """
    if isinstance(data, (tuple, list)):
        data = data[0]
    return data[:, 0], data[:, 1]


def replica_id():
    """The replica id in the current replica context (0 outside a strategy), int32 scalar."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None:
        return tf.constant(0, tf.int32)
    return tf.cast(ctx.replica_id_in_sync_group, tf.int32)


def num_replicas():
    """Number of replicas in sync (1 outside a strategy), a python int."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def all_gather(x):
    """Concatenates `x` [n, ...] of every replica along axis 0, in replica order (differentiable)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or num_replicas() == 1:
        return x
    return ctx.all_gather(x, axis=0)


def replica_offset(local_batch):
    """Global index of this replica's first example (replica id · local batch size)."""
    return replica_id() * tf.cast(local_batch, tf.int32)


def momentum_copy(encoder, name):
    """A structural copy of a functional encoder with the same initial weights (EMA target)."""
    copy = keras.models.clone_model(encoder)
    copy.name = name
    copy.set_weights(encoder.get_weights())
    return copy


def momentum_pairs(online, target):
    """(online, target) variable pairs of the parameters an EMA follows.

    Parameters only: BatchNorm moving statistics of the target are its own (updated by its
    forward pass in training mode), as in the MoCo and BYOL reference code. The target stays
    `trainable` (a frozen Keras BatchNorm would use moving statistics in training mode) and is
    kept out of the gradient by the trainer's `online_variables`.
    """
    return [(o, t) for o, t in zip(online.weights, target.weights) if o.trainable]


def ema_update(pairs, momentum):
    """target <- momentum · target + (1 − momentum) · online, for every pair."""
    for online, target in pairs:
        target.assign(momentum * target + (1.0 - momentum) * online)


class SiameseTrainer(keras.Model):
    """Base class of every framework trainer (a `keras.Model`: use `compile` and `fit`).

    Args:
      backbone: functional Keras model images [N, H, W, C] -> features [N, F].
      branch: a `branches.Branch` (None: the plain framework).
      seed: integer base seed of every random draw in the step (masks, permutations).
    """

    def __init__(self, backbone, branch=None, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.branch = branch if branch is not None else branches_lib.Branch()
        self.branch.validate(tuple(backbone.input_shape[1:]))
        self.seed = int(seed)
        names = ["loss", "loss_clean"] + [f"loss_{t}" for t in self.branch.term_names]
        names += list(self.branch.stat_names)
        self._trackers = {name: keras.metrics.Mean(name=name) for name in names}

    # ---- framework hooks -------------------------------------------------------------
    def online_variables(self):
        """The variables that receive gradients (never momentum/target copies)."""
        raise NotImplementedError

    def update_targets(self):
        """State update before the forward pass (MoCo: momentum update of the key encoder)."""

    def clean_forward(self, x1, x2, training):
        """Clean loss of the two views.

        Returns:
          (loss scalar, targets [N, D] for the branch terms (no gradient), extras for finish_step).
        """
        raise NotImplementedError

    def embed_query(self, images, training):
        """Query-side embedding of an extra batch [N, H, W, C] -> [N, D]."""
        raise NotImplementedError

    def branch_per_sample_loss(self, query, targets):
        """Per-sample loss [N] of extra queries [N, D] against the clean targets [N, D]."""
        raise NotImplementedError

    def finish_step(self, extras):
        """State update after the gradient step (MoCo: enqueue the gathered keys)."""

    # ---- shared machinery ------------------------------------------------------------
    @property
    def metrics(self):
        return list(self._trackers.values())

    def compile(self, optimizer="sgd", **kwargs):
        """`keras.Model.compile`, then builds the optimizer on `online_variables()` only."""
        super().compile(optimizer=optimizer, **kwargs)
        if not self.optimizer.built:
            self.optimizer.build(self.online_variables())

    def call(self, images, training=False):
        """Backbone features [N, F] of images [N, H, W, C] (what is exported for serving).

        A pretraining batch [N, 2, H, W, C] is accepted too (Keras traces `call` on one under
        a strategy): its query view is embedded.
        """
        if isinstance(images, (tuple, list)):
            images = images[0]
        if len(images.shape) == 5:
            images = images[:, 0]
        return self.backbone(images, training=training)

    def step_seed(self, group):
        """Stateless seed [2] of `group` (the replica id) at the current optimizer step.

        `[(seed mod 2^18) · 4096 + group, step]`: plain integer arithmetic, so the seed (and
        with it every mask, λ and permutation) is the same with and without XLA
        (`stateless_fold_in` is not), and distinct for every (seed, replica < 4096, step).
        The branches hash it before drawing.
        """
        step = tf.cast(self.optimizer.iterations, tf.int32)
        first = (self.seed % (1 << 18)) * 4096 + tf.cast(group, tf.int32)
        return tf.stack([first, step])

    def branch_outputs(self, x1):
        """The branch applied to this replica's query view with this replica's seed."""
        return self.branch(x1, self.step_seed(replica_id()))

    def compute_losses(self, x1, x2, training=True):
        """Every loss term of one step on this replica's batch.

        Args:
          x1: [N, H, W, C] query view; x2: [N, H, W, C] key view.

        Returns:
          (losses: dict name -> scalar, with "loss" the total; stats: dict; extras).
        """
        clean_loss, targets, extras = self.clean_forward(x1, x2, training)
        result = {"loss_clean": clean_loss}
        out = self.branch_outputs(x1)
        for batch in out.batches:
            query = self.embed_query(batch.images, training)
            for term in batch.terms:
                per_sample = self.branch_per_sample_loss(tf.gather(query, term.index), targets)
                result[f"loss_{term.name}"] = losses.weighted_mean(per_sample, term.weights)
        result["loss"] = tf.add_n(list(result.values()))
        return result, out.stats, extras

    def train_step(self, data):
        x1, x2 = split_views(data)
        self.update_targets()
        variables = self.online_variables()
        with tf.GradientTape() as tape:
            result, stats, extras = self.compute_losses(x1, x2, training=True)
            # Keras sums gradients over replicas: scale each replica's mean loss inside the tape.
            scaled = result["loss"] / num_replicas()
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        self.finish_step(extras)
        for name, value in {**result, **stats}.items():
            self._trackers[name].update_state(value)
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {"seed": self.seed, "branch": self.branch.get_config()}
