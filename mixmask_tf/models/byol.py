"""BYOL (Grill et al. 2020) on the shared siamese trainer.

Online = backbone + projector + predictor; target = EMA of backbone + projector, updated
after each optimizer step with τ (constant, or cosine-scheduled from τ_base to 1).
Clean loss: 2 − 2·cos(p, sg(z_target)), symmetrised over the two views.
Branch terms [ours]: online(mixed) → predictor → p_mix scored against sg(z2_target).
More than two views (MSCN) [ours]: the symmetrised loss averaged over every pair of views.
"""

import math

import tensorflow as tf

from mixmask_tf import losses
from mixmask_tf.models import heads, trainer


class BYOL(trainer.SiameseTrainer):
    """BYOL trainer.

    Args:
      backbone: functional Keras model images -> features [N, F].
      branch: a `branches.Branch` or None.
      embedding_dim: D of projector and predictor outputs (64 CIFAR / 128 Tiny in Table 8).
      hidden_dim: hidden width of projector and predictor (1024 in Table 8; None = feature size).
      tau: base EMA coefficient τ (0.99 on CIFAR).
      tau_schedule: "constant" or "cosine" (τ_k = 1 − (1 − τ)(cos(πk/K) + 1)/2, reaching 1).
      total_steps: K of the cosine schedule (required for "cosine").
      seed: base seed.
    """

    def __init__(self, backbone, branch=None, embedding_dim=128, hidden_dim=None, tau=0.99,
                 tau_schedule="constant", total_steps=None, seed=0, **kwargs):
        super().__init__(backbone, branch=branch, seed=seed, **kwargs)
        if not 0.0 <= tau < 1.0:
            raise ValueError(f"tau must be in [0, 1), got {tau}")
        if tau_schedule not in ("constant", "cosine"):
            raise ValueError(f"tau_schedule must be 'constant' or 'cosine', got {tau_schedule!r}")
        if tau_schedule == "cosine" and not total_steps:
            raise ValueError("tau_schedule='cosine' needs total_steps (epochs x steps per epoch)")
        features = int(backbone.output_shape[-1])
        self.embedding_dim = int(embedding_dim)
        self.hidden_dim = int(hidden_dim or features)
        self.tau = float(tau)
        self.tau_schedule = tau_schedule
        self.total_steps = int(total_steps or 0)
        projector = heads.mlp_head(features, self.hidden_dim, embedding_dim, name="projector")
        self.predictor = heads.mlp_head(embedding_dim, self.hidden_dim, embedding_dim, name="predictor")
        self.online_encoder = heads.stack(backbone.input_shape[1:], backbone, projector, name="online_encoder")
        self.target_encoder = trainer.momentum_copy(self.online_encoder, "target_encoder")
        self._momentum_pairs = trainer.momentum_pairs(self.online_encoder, self.target_encoder)

    def target_backbone(self):
        """The backbone inside the target_encoder (its EMA copy of the online backbone)."""
        return self.target_encoder.get_layer(self.backbone.name)

    def online_variables(self):
        return self.online_encoder.trainable_variables + self.predictor.trainable_variables

    def current_tau(self):
        """τ at the current optimizer step (the step just taken, when called from finish_step)."""
        if self.tau_schedule == "constant":
            return tf.constant(self.tau, tf.float32)
        progress = tf.minimum(tf.cast(self.optimizer.iterations, tf.float32) / self.total_steps, 1.0)
        return 1.0 - (1.0 - self.tau) * (tf.cos(math.pi * progress) + 1.0) / 2.0

    def embed_query(self, images, training):
        return self.predictor(self.online_encoder(images, training=training), training=training)

    def embed_target(self, images, training):
        return tf.stop_gradient(self.target_encoder(images, training=training))

    def embed_views(self, views, training):
        """Per view (p online prediction, sg(z) target projection)."""
        predictions = [self.embed_query(v, training) for v in views]
        targets = [self.embed_target(v, training) for v in views]
        return list(zip(predictions, targets))

    def pair_loss(self, a, b):
        """Symmetrised: mean byol(p_a, z_b) + mean byol(p_b, z_a)."""
        return tf.reduce_mean(losses.byol_regression(a[0], b[1])) + tf.reduce_mean(losses.byol_regression(b[0], a[1]))

    def pair_targets(self, a, b):
        return b[1], None

    def branch_per_sample_loss(self, query, targets):
        return losses.byol_regression(query, targets)

    def finish_step(self, extras):
        trainer.ema_update(self._momentum_pairs, self.current_tau())

    def get_config(self):
        return {**super().get_config(), "framework": "byol", "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim, "tau": self.tau, "tau_schedule": self.tau_schedule,
                "total_steps": self.total_steps}
