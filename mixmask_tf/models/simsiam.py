"""SimSiam (Chen & He 2021) on the shared siamese trainer.

Backbone + projector (BN after every layer, the last without affine) + bottleneck predictor;
loss −cos(p, sg(z)), symmetrised (½ per direction); no momentum encoder.
Branch terms [ours]: predictor(projector(mixed)) scored against sg(z2).
More than two views (MSCN) [ours]: the symmetrised loss averaged over every pair of views.
"""

import tensorflow as tf

from mixmask_tf import losses
from mixmask_tf.models import heads, trainer


class SimSiam(trainer.SiameseTrainer):
    """SimSiam trainer.

    Args:
      backbone: functional Keras model images -> features [N, F].
      branch: a `branches.Branch` or None.
      embedding_dim: D (128 in Table 8; 2048 on ImageNet).
      hidden_dim: projector hidden width (None = the feature size).
      predictor_hidden_dim: predictor bottleneck (None = D / 4, as SimSiam).
      projector_layers: Dense layers of the projector (2 in Table 8 for CIFAR, 3 on ImageNet).
      seed: base seed.
    """

    def __init__(self, backbone, branch=None, embedding_dim=128, hidden_dim=None, predictor_hidden_dim=None,
                 projector_layers=2, seed=0, **kwargs):
        super().__init__(backbone, branch=branch, seed=seed, **kwargs)
        features = int(backbone.output_shape[-1])
        self.embedding_dim = int(embedding_dim)
        self.hidden_dim = int(hidden_dim or features)
        self.predictor_hidden_dim = int(predictor_hidden_dim or max(embedding_dim // 4, 1))
        self.projector_layers = int(projector_layers)
        projector = heads.mlp_head(features, self.hidden_dim, embedding_dim, num_layers=projector_layers,
                                   last_batch_norm=True, name="projector")
        self.predictor = heads.mlp_head(embedding_dim, self.predictor_hidden_dim, embedding_dim, name="predictor")
        self.encoder = heads.stack(backbone.input_shape[1:], backbone, projector, name="encoder")

    def online_variables(self):
        return self.encoder.trainable_variables + self.predictor.trainable_variables

    def embed_query(self, images, training):
        return self.predictor(self.encoder(images, training=training), training=training)

    def embed_views(self, views, training):
        """Per view (p prediction, sg(z) projection)."""
        zs = [self.encoder(v, training=training) for v in views]
        ps = [self.predictor(z, training=training) for z in zs]
        return [(p, tf.stop_gradient(z)) for p, z in zip(ps, zs)]

    def pair_loss(self, a, b):
        """½ (mean −cos(p_a, z_b) + mean −cos(p_b, z_a))."""
        return 0.5 * (tf.reduce_mean(losses.negative_cosine(a[0], b[1]))
                      + tf.reduce_mean(losses.negative_cosine(b[0], a[1])))

    def pair_targets(self, a, b):
        return b[1], None

    def branch_per_sample_loss(self, query, targets):
        return losses.negative_cosine(query, targets)

    def get_config(self):
        return {**super().get_config(), "framework": "simsiam", "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim, "predictor_hidden_dim": self.predictor_hidden_dim,
                "projector_layers": self.projector_layers}
