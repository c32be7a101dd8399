"""SimCLR (Chen et al. 2020) on the shared siamese trainer.

One encoder (backbone + MLP projector) for both views; NT-Xent over the 2N views of the
global batch, negatives gathered across replicas (`all_gather` is differentiable, so every
replica's loss reaches every embedding it used).

More than two views (MSCN): the MSCN paper's setting, "the siamese loss on every pair" of the
views: the NT-Xent of each pair (its 2N views, in-batch negatives from that pair) averaged over
the pairs [ours: the mean rather than the sum].

Branch terms [ours, docs/algorithms.md, "losses"]: an extra query q[i] is scored against z2[i] as
the positive and the other gathered z2 as negatives (InfoNCE over the global batch);
`mix_target="view1"` pairs mixtures with z1 instead, as Un-Mix's maintainers describe.

Gradient of the targets: the branch terms backpropagate into the clean target embeddings
(z2, or z1 with `mix_target="view1"`, every replica's through the differentiable gather), as
into the query q_mix; there is no stop-gradient. SimCLR has no momentum or stop-gradient
branch: its clean views are ordinary members of the NT-Xent batch, and no reference code puts
a stop-gradient on them when they are scored against a mixture (the MixMask code is MoCo-only,
where the key encoder is gradient-free anyway; the SimCLR loss of the W-MSE code base, whose
CIFAR settings the paper's Table 8 uses, backpropagates into both embeddings of a pair, and
Un-Mix's maintainers give SimCLR's mixed loss as `lam · criterion(ori, mixed) + (1 − lam) ·
criterion(ori, mixed_flip)` on the same, non-detached embeddings). MoCo, BYOL and SimSiam keep
their targets gradient-free. `tests/mixmask_tf/models/test_target_gradients.py` checks both.
"""

import tensorflow as tf

from mixmask_tf import losses
from mixmask_tf.models import heads, trainer


class SimCLR(trainer.SiameseTrainer):
    """SimCLR trainer.

    Args:
      backbone: functional Keras model images -> features [N, F].
      branch: a `branches.Branch` or None.
      embedding_dim: D of the projection (64 CIFAR, 128 Tiny-ImageNet in the paper's Table 8).
      hidden_dim: projector hidden width (1024 in Table 8; None = the feature size).
      projector_layers: Dense layers of the projector (2).
      temperature: NT-Xent temperature (0.2).
      mix_target: "view2" (default) or "view1": which clean view the branch terms score against
        (with gradient into that view's embeddings, see the module docstring).
      seed: base seed.
    """

    def __init__(self, backbone, branch=None, embedding_dim=128, hidden_dim=None, projector_layers=2,
                 temperature=0.2, mix_target="view2", seed=0, **kwargs):
        super().__init__(backbone, branch=branch, seed=seed, **kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if mix_target not in ("view1", "view2"):
            raise ValueError(f"mix_target must be 'view1' or 'view2', got {mix_target!r}")
        features = int(backbone.output_shape[-1])
        self.embedding_dim = int(embedding_dim)
        self.hidden_dim = int(hidden_dim or features)
        self.projector_layers = int(projector_layers)
        self.temperature = float(temperature)
        self.mix_target = mix_target
        projector = heads.mlp_head(features, self.hidden_dim, embedding_dim, num_layers=projector_layers,
                                   name="projector")
        self.encoder = heads.stack(backbone.input_shape[1:], backbone, projector, name="encoder")

    def online_variables(self):
        return self.encoder.trainable_variables

    def embed_query(self, images, training):
        return losses.l2_normalize(self.encoder(images, training=training))

    def embed_views(self, views, training):
        """Per view (z [n, D], z gathered over replicas [N, D], this replica's offset)."""
        zs = [self.embed_query(v, training) for v in views]  # n x D each
        gathered = [trainer.all_gather(z) for z in zs]  # N x D, differentiable
        offset = trainer.replica_offset(tf.shape(zs[0])[0])
        return [(z, z_all, offset) for z, z_all in zip(zs, gathered)]

    supports_negatives = True

    def embed_negative(self, images, training):
        """Hard negatives through the one encoder, gradient stopped [ours: SimCLR has no momentum
        encoder; a negative is a constant of the loss, as MoCo's keys]."""
        return tf.stop_gradient(self.embed_query(images, training))

    def negative_logits(self, a, negative, scale):
        return losses.hard_negative_logits(a[0], negative, self.temperature, scale)

    def pair_loss(self, a, b, extra_logits=None):
        """NT-Xent of the pair over its 2N views: ½ (mean ℓ(z_a → z_b) + mean ℓ(z_b → z_a)).
        `extra_logits` [n, E] join the logits of view a's anchors only (one hard negative per
        query-view anchor; the view-b anchors keep the 2N − 2 in-batch negatives) [ours]."""
        (z1, z1_all, offset), (z2, z2_all, _) = a, b
        loss_a = losses.nt_xent(z1, z2_all, z1_all, offset, self.temperature, extra_logits)
        loss_b = losses.nt_xent(z2, z1_all, z2_all, offset, self.temperature)
        return 0.5 * (tf.reduce_mean(loss_a) + tf.reduce_mean(loss_b))

    def pair_targets(self, a, b):
        keys = b[1] if self.mix_target == "view2" else a[1]
        return (keys, a[2]), None

    def branch_per_sample_loss(self, query, targets):
        keys, offset = targets
        return losses.info_nce_in_batch(query, keys, offset, self.temperature)

    def get_config(self):
        return {**super().get_config(), "framework": "simclr", "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim, "projector_layers": self.projector_layers,
                "temperature": self.temperature, "mix_target": self.mix_target}
