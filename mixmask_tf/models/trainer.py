"""The shared siamese trainer: one train step for every framework and every branch.

A framework (one file each, e.g. `moco.py`) subclasses `SiameseTrainer` and supplies only
what is its own: its encoders and heads (`online_variables`, `embed_query`), its clean loss of
two views as three hooks (`embed_views`: what it computes per view; `pair_loss`: the loss of
two views' embeddings; `pair_targets`: the targets and state of the main pair), the per-sample
loss of an extra query against the clean targets (`branch_per_sample_loss`), and its state
updates (`update_targets` before the forward pass, `finish_step` after the gradient step). A
branch (`mixmask_tf.branches`) prepares the views in one call (`prepare_views`: its input filter,
view transforms, extra views and hard negatives), and supplies extra query batches with weighted
terms. The step (`train_step`, `compute_losses`) combines them, for V views v_1 (query), v_2
(key), v_3, ...:

    L = mean_{i<j} pair_loss(v_i, v_j) + Σ_batches Σ_terms mean_i(w_i · L(embed(batch)[index_i], target_i))

computed in one path (`views_forward`) for any V >= 2: with two views the first sum is the
framework's own clean loss; with more (MSCN's extra views) it is its loss averaged over every
pair [ours: the mean, so the loss scale and learning rate do not depend on V]. The branch targets
and the framework's state (MoCo's enqueued keys) come from the main pair (v_1, v_2) only.

The targets are what the framework's `pair_targets` returns, with the gradient the framework
itself gives them: MoCo's keys (momentum encoder), BYOL's target projections (EMA encoder) and
SimSiam's z2 are stop-gradient, so a branch term trains only through its extra query; SimCLR's
targets are the clean embeddings of its NT-Xent batch, which carry gradient there, and so they
do in the branch terms too (`simclr.py`, README "Decisions where papers and code leave room").

Distribution rules (README "Distributed training"): the per-replica mean loss is divided by
the number of replicas inside the tape; each replica draws its masks from its own seed
(base seed, step, replica id); state lives in Keras weights so checkpoints hold it.

Beside the step, in their own modules: the optional online linear probe (`probe.py`), stop
requests on preemption (`preemption.py`) and the Keras workarounds (`keras_compat.py`).
"""

import keras
import tensorflow as tf

from mixmask_tf import branches as branches_lib
from mixmask_tf import losses
from mixmask_tf.models import keras_compat, preemption
from mixmask_tf.models import probe as probe_lib


def split_views(data):
    """Splits a pretraining batch into its views.

    Args:
      data: float [N, V, H, W, C] (views stacked on axis 1, V >= 2, static), or a tuple/list
        whose first element is that tensor (labels, if any, are ignored).

    Returns:
      tuple of V float [N, H, W, C]: x1 the query view, x2 the key view, then any extra views.
    """
    if isinstance(data, (tuple, list)):
        data = data[0]
    num_views = data.shape[1]
    if num_views is None or num_views < 2:
        raise ValueError(f"a pretraining batch stacks at least two views on axis 1, got shape {data.shape}")
    return tuple(data[:, v] for v in range(num_views))


def view_pairs(num_views):
    """The pairs (i, j), i < j, of V views, in order: (0, 1) first."""
    return [(i, j) for i in range(num_views) for j in range(i + 1, num_views)]


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


class SiameseTrainer(preemption.StopRequests, keras.Model):
    """Base class of every framework trainer (a `keras.Model`: use `compile` and `fit`).

    Args:
      backbone: functional Keras model images [N, H, W, C] -> features [N, F].
      branch: a `branches.Branch` (None: the plain framework).
      seed: integer base seed of every random draw in the step (masks, permutations).
      probe_classes: K > 0 adds an online linear probe `Dense(K)` on stop-gradient backbone
        features of the clean query view (0: none; the model, its weights and checkpoints are
        then exactly as without this argument). It trains on batches that carry labels,
        `(views [N, 2, H, W, C], labels int [N])`, and is reported as `probe_loss` and
        `probe_top1` (%, running mean over the epoch's train batches); `evaluate((images
        [N, H, W, C], labels [N]))` reports `probe_loss`, `probe_top1` and, for K >= 5,
        `probe_top5`. Cost: one extra inference forward of the backbone on the query view
        per labeled step (plus a K x F matrix product), no extra backward pass through it.
        Labeled (views, labels) tuples work under MirroredStrategy; MultiWorkerMirroredStrategy's
        `fit` cannot take tuple elements (it reduces the first batch across workers to build the
        model, and that collective fails on an (x, y) tuple).
      probe_optimizer: the probe's own optimizer (default `keras.optimizers.Adam(1e-3)`, no
        weight decay), built in `compile` on the probe's variables only.
      device_augment: an `augment.TwoViewAugment` to finish the views inside the step
        (augmentation on the device): the batches are then the packed host share of
        `data.make_pretrain_dataset(..., view_fn=<the same object>, augment_on="device")`, int32
        [N, P], and the first thing the step does is `device_augment.on_device` (flip, colour
        jitter, grayscale, blur, solarize, normalise: static shapes, compiled with the step, on
        each replica's rows). None (default): the batches are finished views.
    """

    def __init__(self, backbone, branch=None, seed=0, probe_classes=0, probe_optimizer=None, device_augment=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        if device_augment is not None and not callable(getattr(device_augment, "on_device", None)):
            raise ValueError(f"device_augment must have an on_device method (augment.TwoViewAugment), got "
                             f"{type(device_augment).__name__}")
        self.device_augment = device_augment
        self.branch = branch if branch is not None else branches_lib.Branch()
        image_shape = tuple(backbone.input_shape[1:])
        self.branch.validate(image_shape)
        self._branch_bound = False  # `branch.bind(self)` runs once every encoder exists (compile, or first use)
        # The branch's input filter (MSCN's high-pass): what every image the encoder sees goes through.
        self.input_filter = self.branch.input_filter_for(image_shape)
        self.num_views = 2 + int(self.branch.extra_views)
        if self.branch.uses_negatives and not self.supports_negatives:
            raise ValueError(f"branch {self.branch.name!r} adds hard negatives, and {type(self).__name__} has no "
                             "negatives to add them to (BYOL and SimSiam); turn the branch's hard negatives off "
                             "to train with its view transforms only")
        self.seed = int(seed)
        names = ["loss", "loss_clean"] + [f"loss_{t}" for t in self.branch.term_names]
        names += list(self.branch.stat_names)
        self.probe_classes = int(probe_classes)
        if self.probe_classes < 0:
            raise ValueError(f"probe_classes must be >= 0, got {probe_classes}")
        if self.probe_classes == 0 and probe_optimizer is not None:
            raise ValueError("probe_optimizer needs probe_classes > 0")
        self.probe = self.probe_optimizer = None
        if self.probe_classes:
            self.probe = probe_lib.build(self.probe_classes, backbone.output_shape[-1], self.seed)
            self.probe_optimizer = probe_optimizer if probe_optimizer is not None else keras.optimizers.Adam(1e-3)
            names += probe_lib.metric_names(self.probe_classes)
        self._trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self._init_stop_requests()

    # ---- the step ----------------------------------------------------------------------
    def finish_views(self, data):
        """The batch as views: `device_augment.on_device(data)` when augmenting on the device, else `data`."""
        return data if self.device_augment is None else self.device_augment.on_device(data)

    def train_step(self, data):
        data = self.finish_views(data)
        views = split_views(data)
        labels = probe_lib.split_labels(data) if self.probe is not None else None
        probe_logs = {}
        if labels is not None:
            # Before the pretraining update: the features of the weights that make this step's loss
            # (of the filtered, untransformed query view: what the encoder sees in evaluation).
            probe_logs = probe_lib.train_step(self.probe, self.probe_optimizer,
                                              self.probe_features(self.filter_images(views[0])), labels,
                                              num_replicas())
        self.update_targets()
        variables = self.online_variables()
        with tf.GradientTape() as tape:
            result, stats, extras = self.compute_losses(*views, training=True)
            # Keras sums gradients over replicas: scale each replica's mean loss inside the tape.
            scaled = result["loss"] / num_replicas()
            # Under "mixed_float16" Keras' compile wraps the optimizer in a LossScaleOptimizer,
            # whose apply() unscales (and skips steps with non-finite gradients); else identity.
            scaled = self.optimizer.scale_loss(scaled)
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        self.finish_step(extras)
        for name, value in {**result, **stats, **probe_logs}.items():
            self._trackers[name].update_state(value)
        # Probe metrics only when this step trained the probe (never a meaningless 0).
        skip = {"probe_top5"} | ({"probe_loss", "probe_top1"} if not probe_logs else set())
        logs = {m.name: m.result() for m in self.metrics if m.name not in skip}
        if self.watch_stop_requests:
            logs["stop_requested"] = self.stop_requested(all_gather)
        return keras_compat.for_keras_reduction(logs)

    def compute_losses(self, *views, training=True):
        """Every loss term of one step on this replica's views.

        Args:
          views: the pipeline's views [N, H, W, C]: x1 (query), x2 (key), then the branch's
            extra views (as many as ``branch.extra_views``).

        Returns:
          (losses: dict name -> scalar, with "loss" the total; stats: dict; extras for `finish_step`).
        """
        if len(views) != self.num_views:
            raise ValueError(f"branch {self.branch.name!r} takes {self.num_views} views per image (2 + its "
                             f"{self.branch.extra_views} extra views), the batch has {len(views)}: build the "
                             f"dataset with augment.TwoViewAugment(..., extra_views={self.branch.extra_views})")
        prepared = self.prepared_views(views)
        clean_loss, targets, extras, negative_stats = self.views_forward(prepared.views, training, prepared.negatives)
        result = {"loss_clean": clean_loss}
        out = self.branch_outputs(prepared.views[0])
        for batch in out.batches:
            query = self.embed_query(batch.images, training)
            for term in batch.terms:
                per_sample = self.branch_per_sample_loss(tf.gather(query, term.index), targets)
                result[f"loss_{term.name}"] = losses.weighted_mean(per_sample, term.weights)
        result["loss"] = tf.add_n(list(result.values()))
        return result, {**prepared.stats, **negative_stats, **out.stats}, extras

    def views_forward(self, views, training, negatives=()):
        """Clean loss of V >= 2 views: the mean of `pair_loss` over every pair (i < j).

        Args:
          views: tuple of V float [N, H, W, C] (as the branch prepared them).
          negatives: tuple of `branches.NegativeBatch`: extra negatives of view 1's queries, one per
            sample, added to the main pair's loss (frameworks with `supports_negatives`).

        Returns:
          (loss scalar, targets, extras, stats) with the targets and extras of the main pair
          (`pair_targets(view 1, view 2)`) and the stats `<name>_logit` (mean scaled logit) of each
          negative batch. With two views and no negatives: the framework's own clean loss.
        """
        records = self.embed_views(tuple(views), training)
        extra, stats = None, {}
        if negatives:
            if not self.supports_negatives:
                raise ValueError(f"{type(self).__name__} has no negatives to add hard negatives to")
            columns = []
            for negative in negatives:
                logits = self.negative_logits(records[0], self.embed_negative(negative.images, training),
                                              negative.scale)
                columns.append(logits[:, None])
                stats[f"{negative.name}_logit"] = tf.reduce_mean(logits)
            extra = tf.concat(columns, axis=1)
        pair_losses = [self.pair_loss(records[i], records[j]) if extra is None or (i, j) != (0, 1)
                       else self.pair_loss(records[i], records[j], extra_logits=extra)
                       for i, j in view_pairs(len(views))]
        loss = pair_losses[0] if len(pair_losses) == 1 else tf.add_n(pair_losses) / float(len(pair_losses))
        targets, extras = self.pair_targets(records[0], records[1])
        return loss, targets, extras, stats

    def prepared_views(self, views):
        """The branch's `prepare_views` of this replica's views with this replica's seed (a `ViewsOutput`)."""
        self.bind_branch()
        return self.branch.prepare_views(tuple(views), self.step_seed(replica_id()))

    def branch_outputs(self, x1):
        """The branch applied to this replica's (prepared) query view with this replica's seed."""
        return self.branch(x1, self.step_seed(replica_id()))

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

    def bind_branch(self):
        """Calls `branch.bind(self)` once (a branch that reads the trainer's encoders, e.g. the saliency
        branch's default localisation network, the target backbone's last feature map)."""
        if not self._branch_bound:
            self._branch_bound = True
            self.branch.bind(self)

    # ---- framework hooks -------------------------------------------------------------
    def online_variables(self):
        """The variables that receive gradients (never momentum/target copies)."""
        raise NotImplementedError

    def update_targets(self):
        """State update before the forward pass (MoCo: momentum update of the key encoder)."""

    def embed_views(self, views, training):
        """What the framework computes per view for its clean loss (e.g. MoCo: query and key).

        Args:
          views: tuple of V float [N, H, W, C].

        Returns:
          a list of V per-view records (any structure), read by `pair_loss` and `pair_targets`.
        """
        raise NotImplementedError

    def pair_loss(self, a, b):
        """The framework's clean loss (scalar) of two views, from their `embed_views` records
        (a: the earlier view, in the query role where the framework is asymmetric)."""
        raise NotImplementedError

    def pair_targets(self, a, b):
        """(targets for the branch terms, extras for finish_step) of the main pair (view 1, view 2).

        The targets keep the gradient the framework gives them in its clean loss: none for
        momentum / stop-gradient targets (MoCo, BYOL, SimSiam), the full gradient for SimCLR's
        in-batch embeddings; the trainer adds no stop-gradient of its own.
        """
        raise NotImplementedError

    # Frameworks with negatives (MoCo, SimCLR) set this and define `embed_negative` and
    # `negative_logits`; their `pair_loss(a, b, extra_logits=None)` appends `extra_logits` [N, E]
    # to the logits of view a's queries.
    supports_negatives = False

    def embed_negative(self, images, training):
        """Target-side embedding [N, D] of extra negatives [N, H, W, C] (gradient-free)."""
        raise NotImplementedError

    def negative_logits(self, a, negative, scale):
        """Logits [N]: scale · similarity of view a's queries with `negative` [N, D] / T
        (`losses.hard_negative_logits`)."""
        raise NotImplementedError

    def embed_query(self, images, training):
        """Query-side embedding of an extra batch [N, H, W, C] -> [N, D]."""
        raise NotImplementedError

    def branch_per_sample_loss(self, query, targets):
        """Per-sample loss [N] of extra queries [N, D] against the clean targets of `pair_targets`.

        Differentiable in `query`; in `targets` as far as the targets themselves carry gradient.
        """
        raise NotImplementedError

    def finish_step(self, extras):
        """State update after the gradient step (MoCo: enqueue the gathered keys)."""

    def target_backbone(self):
        """The backbone of the target side: MoCo's key encoder, BYOL's EMA target, else the online
        backbone (SimCLR, SimSiam). What a branch's default localisation network reads."""
        return self.backbone

    # ---- Keras plumbing ----------------------------------------------------------------
    @property
    def metrics(self):
        return list(self._trackers.values())

    def compile(self, optimizer="sgd", **kwargs):
        """`keras.Model.compile`, then builds the optimizer on `online_variables()` only.

        With a probe, its optimizer is built on the probe's variables only.
        """
        super().compile(optimizer=optimizer, **kwargs)
        self.bind_branch()
        if not self.optimizer.built:
            self.optimizer.build(self.online_variables())
        if self.probe_optimizer is not None and not self.probe_optimizer.built:
            self.probe_optimizer.build(self.probe.trainable_variables)

    def make_train_function(self, force=False):
        """Keras' train function, except for ``steps_per_execution`` > 1: a plain unrolled loop
        (`keras_compat.unrolled_train_function`)."""
        if self.train_function is not None and not force:
            return self.train_function
        if self.steps_per_execution == 1:
            return super().make_train_function(force=force)
        self.train_function = keras_compat.unrolled_train_function(self)
        return self.train_function

    def call(self, images, training=False):
        """Backbone features [N, F] of normalised images [N, H, W, C], through the input filter
        (what is exported for serving).

        A pretraining batch [N, V, H, W, C] is accepted too (Keras traces `call` on one under
        a strategy): its query view is embedded; so is a packed batch int32 [N, P] of augmentation
        on the device (Keras builds the model with a float copy of it: zeros of the view's shape
        stand in for it then).
        """
        if isinstance(images, (tuple, list)):
            images = images[0]
        if self.device_augment is not None and len(images.shape) == 2:  # a packed pretraining batch
            if images.dtype == tf.int32:
                images = self.device_augment.on_device(images)
            else:  # Keras' float copy, to build the model under a strategy: the bits are gone, the shape is kept
                height, width = self.device_augment.output_size
                images = tf.zeros([tf.shape(images)[0], height, width, int(self.backbone.input_shape[-1])])
        if len(images.shape) == 5:
            images = images[:, 0]
        return self.backbone(self.filter_images(images), training=training)

    def filter_images(self, images):
        """The branch's input filter applied to images [N, H, W, C] (identity without one)."""
        return images if self.input_filter is None else self.input_filter(images)

    def probe_features(self, images):
        """Stop-gradient backbone features [N, F] of images [N, H, W, C] (inference mode)."""
        return tf.stop_gradient(self.backbone(images, training=False))

    def test_step(self, data):
        """Probe metrics on clean labeled images (without a probe: `keras.Model.test_step`).

        Args:
          data: (images float [N, H, W, C] normalised as the views, labels int [N]), e.g. a
            batch of `data.make_eval_dataset`; a two-view batch [N, 2, H, W, C] uses view 1.

        Returns:
          running probe_loss, probe_top1 (%) and, for probe_classes >= 5, probe_top5 (%) since
          the last metric reset (Keras resets them at the start of `evaluate`; `fit` logs
          them as `val_probe_*`).
        """
        if self.probe is None:
            return super().test_step(data)
        labels = probe_lib.split_labels(data)
        if labels is None:
            raise ValueError("the online probe evaluates on (images, labels) batches; got no labels")
        images = data[0]
        if len(images.shape) == 5:
            images = images[:, 0]
        return probe_lib.evaluate(self.probe, self._trackers, self.probe_features(self.filter_images(images)), labels)

    def get_config(self):
        config = {"seed": self.seed, "branch": self.branch.get_config()}
        if self.probe_classes:
            config["probe_classes"] = self.probe_classes
        return config
