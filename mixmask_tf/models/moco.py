"""MoCo v1/v2 (He et al. 2020; Chen et al. 2020) on the shared siamese trainer.

Query encoder = backbone + head; key encoder = its momentum copy; a queue of K keys.
BatchNorm is synchronized across replicas instead of MoCo's shuffle-BN (none in TF).
Asymmetric by default (view 1 → query, view 2 → key); `symmetric=True` is Un-Mix's CIFAR
mode: L(q1, k2) + L(q2, k1), branch mixtures of view 1 scored against k2 and k1 (a plain
sum), and both key sets enqueued.

More than two views (MSCN's extra views) [ours]: the loss is the mean over the pairs i < j of
the pair loss above with view i as the query side (L(q_i, k_j); symmetric: + L(q_j, k_i)), all
against the same queue; only the main pair's keys (k2; symmetric k1 and k2) are enqueued, so the
queue turns over at the same rate whatever the number of views.
"""

import keras
import tensorflow as tf

from mixmask_tf import losses
from mixmask_tf.models import heads, trainer


class MoCo(trainer.SiameseTrainer):
    """MoCo trainer.

    Args:
      backbone: functional Keras model images -> features [N, F].
      branch: a `branches.Branch` or None.
      version: "v2" (MLP head, default) or "v1" (linear head).
      embedding_dim: D of the normalised embedding (128).
      hidden_dim: v2 head's hidden size (None = the backbone's feature size, as MoCo v2).
      queue_size: K negatives (>= the global batch size; >= twice it when symmetric).
      momentum: m of the key encoder update k <- m·k + (1 − m)·q.
      temperature: T of every InfoNCE term (the clean and the branch terms).
      symmetric: the symmetric loss of Un-Mix's CIFAR code.
      seed: base seed.
    """

    def __init__(self, backbone, branch=None, version="v2", embedding_dim=128, hidden_dim=None,
                 queue_size=4096, momentum=0.99, temperature=0.2, symmetric=False, seed=0, **kwargs):
        super().__init__(backbone, branch=branch, seed=seed, **kwargs)
        if version not in ("v1", "v2"):
            raise ValueError(f"MoCo version must be 'v1' or 'v2', got {version!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.version = version
        self.embedding_dim = int(embedding_dim)
        self.queue_size = int(queue_size)
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.symmetric = bool(symmetric)
        features = int(backbone.output_shape[-1])
        self.hidden_dim = (hidden_dim or features) if version == "v2" else None
        head = heads.mlp_head(features, self.hidden_dim, embedding_dim, num_layers=2 if version == "v2" else 1,
                              batch_norm=False, name="head")
        self.query_encoder = heads.stack(backbone.input_shape[1:], backbone, head, name="query_encoder")
        self.key_encoder = trainer.momentum_copy(self.query_encoder, "key_encoder")
        self._momentum_pairs = trainer.momentum_pairs(self.query_encoder, self.key_encoder)

        def init_queue(shape, dtype=None):
            return losses.l2_normalize(keras.random.normal(shape, seed=seed), axis=1)

        # aggregation="only_first_replica": one logical value, written from gathered keys.
        self.queue = self.add_weight(shape=(self.queue_size, self.embedding_dim), initializer=init_queue,
                                     trainable=False, aggregation="only_first_replica", name="queue")
        self.queue_ptr = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False,
                                         aggregation="only_first_replica", name="queue_ptr")

    def target_backbone(self):
        """The backbone inside the key_encoder (its EMA copy of the online backbone)."""
        return self.key_encoder.get_layer(self.backbone.name)

    def online_variables(self):
        return self.query_encoder.trainable_variables

    def update_targets(self):
        trainer.ema_update(self._momentum_pairs, self.momentum)  # before the keys are encoded

    def embed_query(self, images, training):
        return losses.l2_normalize(self.query_encoder(images, training=training))

    def embed_key(self, images, training):
        return tf.stop_gradient(losses.l2_normalize(self.key_encoder(images, training=training)))

    supports_negatives = True

    def _infonce(self, query, key, extra_logits=None):
        return losses.moco_infonce(query, key, self.queue, self.temperature, extra_logits)  # N

    def embed_negative(self, images, training):
        """Hard negatives are keys: the momentum encoder, L2-normalised, no gradient."""
        return self.embed_key(images, training)

    def negative_logits(self, a, negative, scale):
        return losses.hard_negative_logits(a[0], negative, self.temperature, scale)

    def embed_views(self, views, training):
        """Per view (q, k): the query embedding (None for the last view when asymmetric: it is
        never a query) and the key (None for the first view when asymmetric: never a key).

        Queries are computed first in view order, then keys from the last view to the first
        (with two views: q1, k2 (asymmetric) or q1, q2, k2, k1 (symmetric)).
        """
        last = len(views) - 1
        queries = [self.embed_query(v, training) if self.symmetric or i < last else None for i, v in enumerate(views)]
        keys = [None] * len(views)
        for i in reversed(range(len(views))):
            if self.symmetric or i > 0:
                keys[i] = self.embed_key(views[i], training)
        return list(zip(queries, keys))

    def pair_loss(self, a, b, extra_logits=None):
        """Asymmetric: InfoNCE(q_a, k_b) (the earlier view is the query); symmetric: + InfoNCE(q_b, k_a).
        `extra_logits` [N, E] join q_a's logits as more negatives."""
        loss = tf.reduce_mean(self._infonce(a[0], b[1], extra_logits))
        if self.symmetric:
            loss = loss + tf.reduce_mean(self._infonce(b[0], a[1]))
        return loss

    def pair_targets(self, a, b):
        """Targets: k2 (symmetric: (k2, k1)); enqueued: the main pair's keys only, whatever V."""
        if not self.symmetric:
            return b[1], (b[1],)
        return (b[1], a[1]), (a[1], b[1])

    def branch_per_sample_loss(self, query, targets):
        if not self.symmetric:
            return self._infonce(query, targets)
        k2, k1 = targets
        return self._infonce(query, k2) + self._infonce(query, k1)

    def finish_step(self, key_sets):
        """Enqueues the clean keys of every replica (global batch order), once per step."""
        keys = tf.concat([trainer.all_gather(k) for k in key_sets], axis=0)  # (B_global · sets) x D
        n = tf.shape(keys)[0]
        index = tf.math.floormod(self.queue_ptr + tf.range(n, dtype=tf.int32), self.queue_size)
        self.queue.assign(tf.tensor_scatter_nd_update(self.queue, index[:, None], keys))
        self.queue_ptr.assign(tf.math.floormod(self.queue_ptr + n, self.queue_size))

    def get_config(self):
        return {**super().get_config(), "framework": f"moco{self.version}", "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim, "queue_size": self.queue_size, "momentum": self.momentum,
                "temperature": self.temperature, "symmetric": self.symmetric}
