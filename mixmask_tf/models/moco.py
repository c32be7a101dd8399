"""MoCo v1/v2 (He et al. 2020; Chen et al. 2020) on the shared siamese trainer.

Query encoder = backbone + head; key encoder = its momentum copy; a queue of K keys.
BatchNorm is synchronized across replicas instead of MoCo's shuffle-BN (none in TF).
"""

import keras
import tensorflow as tf

from mixmask_tf import losses
from mixmask_tf.models import base


def projection_head(input_dim, embedding_dim, hidden_dim=None, name="head"):
    """MoCo head: v1 Dense(D); v2 Dense(hidden)-ReLU-Dense(D) (hidden=None -> linear, v1).

    Returns:
      keras.Model features [N, input_dim] -> embeddings [N, D] (not normalised).
    """
    inputs = keras.Input(shape=(input_dim,), name="features")
    x = inputs
    if hidden_dim:
        x = keras.layers.Dense(hidden_dim, name="hidden")(x)
        x = keras.layers.ReLU(name="hidden_relu")(x)
    x = keras.layers.Dense(embedding_dim, name="out")(x)
    return keras.Model(inputs, x, name=name)


def _encoder(backbone, head, name):
    inputs = keras.Input(shape=backbone.input_shape[1:], name="images")
    return keras.Model(inputs, head(backbone(inputs)), name=name)


class MoCo(base.SiameseTrainer):
    """MoCo trainer (asymmetric: view 1 is the query, view 2 the key).

    Args:
      backbone: functional Keras model images -> features [N, F].
      branch: a `branches.Branch` or None.
      version: "v2" (MLP head, default) or "v1" (linear head).
      embedding_dim: D of the normalised embedding (128).
      hidden_dim: v2 head's hidden size (None = the backbone's feature size, as MoCo v2).
      queue_size: K negatives (must be >= the global batch size).
      momentum: m of the key encoder update k <- m·k + (1 − m)·q.
      temperature: T of every InfoNCE term (the clean and the branch terms).
      seed: base seed.
    """

    def __init__(self, backbone, branch=None, version="v2", embedding_dim=128, hidden_dim=None,
                 queue_size=4096, momentum=0.99, temperature=0.2, seed=0, **kwargs):
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
        features = int(backbone.output_shape[-1])
        hidden = (hidden_dim or features) if version == "v2" else None
        self.hidden_dim = hidden
        self.query_encoder = _encoder(backbone, projection_head(features, embedding_dim, hidden, "head"),
                                      "query_encoder")
        key_backbone = keras.models.clone_model(backbone)
        key_backbone.name = "key_backbone"
        self.key_encoder = _encoder(key_backbone, projection_head(features, embedding_dim, hidden, "key_head"),
                                    "key_encoder")
        self.key_encoder.set_weights(self.query_encoder.get_weights())
        # Momentum pairs: parameters only. BatchNorm moving statistics of the key encoder are
        # its own (updated by its forward pass in training mode), as in the reference code.
        self._momentum_pairs = [
            (q, k) for q, k in zip(self.query_encoder.weights, self.key_encoder.weights) if q.trainable]
        queue_seed = seed

        def init_queue(shape, dtype=None):
            values = keras.random.normal(shape, seed=queue_seed)
            return losses.l2_normalize(values, axis=1)

        # aggregation="only_first_replica": one logical value, written from gathered keys.
        self.queue = self.add_weight(shape=(self.queue_size, self.embedding_dim), initializer=init_queue,
                                     trainable=False, aggregation="only_first_replica", name="queue")
        self.queue_ptr = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False,
                                         aggregation="only_first_replica", name="queue_ptr")

    def online_variables(self):
        return self.query_encoder.trainable_variables

    def update_targets(self):
        m = self.momentum
        for q, k in self._momentum_pairs:
            k.assign(m * k + (1.0 - m) * q)

    def embed_query(self, images, training):
        return losses.l2_normalize(self.query_encoder(images, training=training))

    def embed_key(self, images, training):
        return tf.stop_gradient(losses.l2_normalize(self.key_encoder(images, training=training)))

    def clean_forward(self, x1, x2, training):
        query = self.embed_query(x1, training)  # N x D
        key = self.embed_key(x2, training)  # N x D
        loss = tf.reduce_mean(losses.moco_infonce(query, key, self.queue, self.temperature))
        return loss, key, key

    def branch_per_sample_loss(self, query, targets):
        return losses.moco_infonce(query, targets, self.queue, self.temperature)

    def finish_step(self, keys):
        """Enqueues the clean keys of every replica (global batch order), once per step."""
        keys = base.all_gather(keys)  # B_global x D
        n = tf.shape(keys)[0]
        index = tf.math.floormod(self.queue_ptr + tf.range(n, dtype=tf.int32), self.queue_size)
        self.queue.assign(tf.tensor_scatter_nd_update(self.queue, index[:, None], keys))
        self.queue_ptr.assign(tf.math.floormod(self.queue_ptr + n, self.queue_size))

    def get_config(self):
        return {**super().get_config(), "framework": f"moco{self.version}", "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim, "queue_size": self.queue_size, "momentum": self.momentum,
                "temperature": self.temperature}
