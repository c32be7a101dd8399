"""SimSiam (Chen & He 2021) on the shared siamese trainer.

Backbone + projector (BN after every layer, the last without affine) + bottleneck predictor;
loss −cos(p, sg(z)), symmetrised (½ per direction); no momentum encoder.
Branch terms [ours]: predictor(projector(mixed)) scored against sg(z2).
"""

import tensorflow as tf

from mixmask_tf import losses
from mixmask_tf.models import base, heads


class SimSiam(base.SiameseTrainer):
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

    def clean_forward(self, x1, x2, training):
        z1, z2 = self.encoder(x1, training=training), self.encoder(x2, training=training)
        p1, p2 = self.predictor(z1, training=training), self.predictor(z2, training=training)
        z1, z2 = tf.stop_gradient(z1), tf.stop_gradient(z2)
        loss = 0.5 * (tf.reduce_mean(losses.negative_cosine(p1, z2)) + tf.reduce_mean(losses.negative_cosine(p2, z1)))
        return loss, z2, None

    def branch_per_sample_loss(self, query, targets):
        return losses.negative_cosine(query, targets)

    def get_config(self):
        return {**super().get_config(), "framework": "simsiam", "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim, "predictor_hidden_dim": self.predictor_hidden_dim,
                "projector_layers": self.projector_layers}
